"""Rewrite a results folder's findings table from the study JSON files already in it, under the current rules.

    python scripts/refresh_findings.py                        # docs/results/paper, profile paper-cpu
    python scripts/refresh_findings.py docs/results/paper --profile paper-cpu

``tpv reproduce`` writes ``findings.md``/``findings.json`` itself; this script is for when the verdict rules
(``tpv.experiments.findings``) change but the studies have not been rerun. It reads the run folder key the
study files were written under (they must all share one). When that key is not the profile's current one, the
settings have changed since (a protocol fix, a new tpv version), and the page says so: its verdicts are the
current rules applied to results that predate those changes, and ``tpv reproduce <profile>`` recomputes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tpv.core.errors import TPVError
from tpv.experiments import load_config
from tpv.experiments.findings import CLAIMS_PER_STUDY, write_findings
from tpv.experiments.paper_numbers import SIGNIFICANCE_NOTE

# Changes to a profile's settings since which older study files are stale, named on the page.
STALE_BECAUSE = (
    "the paper protocol's official label words and templates (tpv.data.paper_tasks, from "
    "kinit-sk/task-prompt-vectors@3866c35) and its λ search by generated exact match (issue 25; "
    "[docs/protocol.md](../../protocol.md))"
)


def study_keys(folder: Path) -> dict[str, tuple[str, str]]:
    """``{study: (run folder key, commit)}`` of the study JSON files in ``folder``."""
    found = {}
    for study in CLAIMS_PER_STUDY:
        path = folder / f"{study}.json"
        if path.is_file():
            payload = json.loads(path.read_text(encoding="utf-8"))
            found[study] = (payload["fingerprint"], payload.get("commit", "unknown"))
    return found


def stale_note(profile: str, key: str, commit: str, current: str) -> str:
    return (
        f"**These results predate the current settings of `{profile}`.** The study files beside this page were "
        f"computed under run folder key `{key}` (tpv commit `{commit[:7]}`), before {STALE_BECAUSE}; the "
        f"profile's key is now `{current}`. The verdicts below are the current rules applied to those older "
        f"results (every study: origin independence, similarity, pairwise sums, initialisation and few-shot); "
        f"`tpv reproduce {profile}` recomputes them. The study pages were written by that run too, before this "
        f"note joined the Table 1 and Table 2 pages: {SIGNIFICANCE_NOTE}"
    )


def refresh(folder: Path, profile: str) -> list[Path]:
    keys = study_keys(folder)
    if not keys:
        raise TPVError(f"no study JSON files in {folder}; run `tpv reproduce {profile}` first")
    if len({key for key, _ in keys.values()}) != 1:
        raise TPVError(f"the study files in {folder} come from several runs ({keys}); rerun `tpv reproduce {profile}`")
    key, commit = next(iter(keys.values()))
    config = load_config(profile)
    current = config.fingerprint()
    notes = () if key == current else (stale_note(profile, key, commit, current),)
    return write_findings(folder, config, fingerprint=key, notes=notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", default="docs/results/paper", type=Path)
    parser.add_argument("--profile", default="paper-cpu")
    args = parser.parse_args(argv)
    for path in refresh(args.folder, args.profile):
        print(path)


if __name__ == "__main__":
    main()

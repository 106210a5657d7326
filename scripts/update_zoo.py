"""Bring vectors rebuilt with larger budgets into a zoo, keeping every run tried on record.

A vector from ``--from`` (a folder ``tpv zoo build`` wrote, from the same origin and base model) replaces the zoo's
vector of its task when it left chance and the zoo's did not, or when both left chance and it scores higher on the
held validation examples; otherwise the zoo keeps its vector. Either way the other run is kept in the entry's
``tried`` list (budget, learning rate, held score, p-value, chance verdict, machine, commit), so a vector that
stays at chance is reported with the largest budget tried. Entries written before the manifest recorded
provenance per entry get the manifest's top-level ``dtype``/``cpu``/``torch``/``commit`` copied in first.

    python scripts/update_zoo.py --from /path/to/rebuild            # into the shipped zoo
    python scripts/update_zoo.py --from rebuild --zoo my_zoo --dry-run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from datetime import date
from pathlib import Path

from tpv.core._io import atomic_target, atomic_write_text
from tpv.core.errors import TPVError

SHIPPED = Path(__file__).resolve().parents[1] / "tpv" / "compose" / "zoo"
PROVENANCE = ("dtype", "cpu", "torch", "commit")
TRIED_FIELDS = (
    "budget",
    "steps",
    "learning_rate",
    "max_length",
    "validation",
    "origin_validation",
    "chance_level",
    "p_value",
    "margin_over_chance",
    "at_chance",
    "test",
    *PROVENANCE,
)


def update(zoo: Path, rebuilt: Path, tasks: list[str] | None = None, dry_run: bool = False) -> list[str]:
    """Merge ``rebuilt``'s entries into ``zoo``; returns one line per task saying what was kept and why."""
    manifest, fresh = _read(zoo), _read(rebuilt)
    _check_same_start(manifest, fresh, zoo, rebuilt)
    _fill_provenance(manifest)
    _fill_provenance(fresh)
    names = tasks or sorted(fresh["tasks"])
    missing = sorted(set(names) - set(fresh["tasks"]))
    if missing:
        raise TPVError(f"'{rebuilt}' has no entry for {missing}; it has {sorted(fresh['tasks'])}")
    lines = []
    for name in names:
        new, old = fresh["tasks"][name], manifest["tasks"].get(name)
        if old is None or _better(new, old):
            kept, other, verb = new, old, "replaced by the rebuilt vector"
            if not dry_run:
                with atomic_target(zoo / new["file"]) as tmp:
                    shutil.copyfile(rebuilt / new["file"], tmp)
        else:
            kept, other, verb = old, new, "kept the zoo's vector"
        entry = {**kept, "tried": _tried(kept, other)}
        manifest["tasks"][name] = entry
        lines.append(
            f"{name}: {verb} ({_summary(kept)}; other: {_summary(other) if other else 'none'})"
            + (", still AT CHANCE at the largest budget tried" if kept["at_chance"] else "")
        )
    manifest["tasks"] = dict(sorted(manifest["tasks"].items()))
    manifest["total_bytes"] = sum((zoo / e["file"]).stat().st_size for e in manifest["tasks"].values())
    manifest.setdefault("updates", []).append(
        {
            "date": date.today().isoformat(),
            "tasks": names,
            "from": fresh.get("command", "tpv zoo build"),
            "rule": "a rebuilt vector replaces the zoo's when it left chance and the zoo's did not, or both left "
            "chance and it scores higher on the held validation examples (scripts/update_zoo.py)",
        }
    )
    if not dry_run:
        _check_files(zoo, manifest)
        atomic_write_text(zoo / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return lines


def _read(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise TPVError(f"'{folder}' has no manifest.json; pass a folder tpv zoo build wrote")
    return json.loads(path.read_text(encoding="utf-8"))


def _check_same_start(manifest: dict, fresh: dict, zoo: Path, rebuilt: Path) -> None:
    if manifest["base_model"] != fresh["base_model"]:
        raise TPVError(
            f"'{rebuilt}' holds vectors of {fresh['base_model']!r}, the zoo '{zoo}' of {manifest['base_model']!r}"
        )
    from tpv.core.origin import Origin

    ours = Origin.load(zoo / manifest["origin"]["file"]).tensor
    theirs = Origin.load(rebuilt / fresh["origin"]["file"]).tensor
    if ours.shape != theirs.shape or not bool((ours == theirs).all()):
        raise TPVError(
            f"'{rebuilt}' was built from another origin than '{zoo}'; rebuild with "
            f"origin=tpv.Origin.load('{zoo / manifest['origin']['file']}')"
        )


def _fill_provenance(manifest: dict) -> None:
    for entry in manifest["tasks"].values():
        for key in PROVENANCE:
            entry.setdefault(key, manifest.get(key, "unknown"))


def _better(new: dict, old: dict) -> bool:
    if new["at_chance"] != old["at_chance"]:
        return not new["at_chance"]
    return not new["at_chance"] and new["validation"] > old["validation"]


def _tried(kept: dict, other: dict | None) -> list[dict]:
    runs = [*kept.get("tried", []), *(other.get("tried", []) if other else [])]
    for entry in (kept, other):
        if entry:
            runs.append({key: entry.get(key) for key in TRIED_FIELDS})
    unique = {json.dumps(run, sort_keys=True): run for run in runs}
    return sorted(unique.values(), key=lambda run: (run["budget"], run["learning_rate"]))


def _summary(entry: dict) -> str:
    verdict = "at chance" if entry["at_chance"] else "left chance"
    return (
        f"{entry['budget']} steps at lr {entry['learning_rate']:g}, held {entry['validation']:.3f}, "
        f"p {entry['p_value']:.4f}, {verdict}"
    )


def _check_files(zoo: Path, manifest: dict) -> None:
    for name, entry in manifest["tasks"].items():
        digest = hashlib.sha256((zoo / entry["file"]).read_bytes()).hexdigest()
        if digest != entry["file_sha256"]:
            raise TPVError(f"{entry['file']} does not match the manifest's sha256 for {name}; nothing was written")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="rebuilt", required=True, type=Path, help="a folder tpv zoo build wrote")
    parser.add_argument("--zoo", type=Path, default=SHIPPED, help="the zoo to update (default: the shipped one)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: every task in --from)")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    args = parser.parse_args(argv)
    try:
        for line in update(args.zoo, args.rebuilt, args.tasks, args.dry_run):
            print(line)
    except TPVError as error:
        print(f"update_zoo: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

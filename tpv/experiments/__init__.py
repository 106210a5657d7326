"""Re-running the paper's studies on any model and data: ``reproduce(profile)`` (the ``tpv reproduce`` command).

Profiles are TOML files (``tpv/experiments/profiles/{smoke,cpu,gpu}.toml`` run tpv's protocol, their
``paper-`` twins the paper's official code's; copy one and pass its path). A run
lives in ``<run_dir>/<name>-<fingerprint>/``: trained prompts under ``prompts/`` (cached and resumed by
``train_prompt``), scores and λs in ``scores.json``; a killed run resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile  # noqa: F401  (used by the doctest below)
import time
from pathlib import Path

from tpv.core._io import atomic_write_text
from tpv.core._version import git_commit
from tpv.core.errors import TPVError
from tpv.engine.run_folder import RunLock
from tpv.experiments.config import ALL_STUDIES, PROFILES, STUDIES, TINY_MODEL, ExperimentConfig, load_config
from tpv.experiments.findings import write_findings
from tpv.experiments.lab import Lab
from tpv.experiments.result import StudyResult, scale_note

__all__ = ["PROFILES", "STUDIES", "ExperimentConfig", "StudyResult", "load_config", "reproduce"]

DEFAULT_RUN_ROOT = "runs"


def reproduce(
    profile: str | os.PathLike | ExperimentConfig,
    studies=None,
    run_dir=None,
    dry_run: bool = False,
    progress: bool = True,
    measure: bool = True,
    shard: str | tuple[int, int] | None = None,
) -> dict:
    """Run (or plan) the paper's studies under a profile.

    Args:
        profile: a name from ``PROFILES`` (``"smoke"``, ``"cpu"``, ``"gpu"``, ``"paper-smoke"``, ``"paper-cpu"``,
            ``"paper-gpu"``), the path of a TOML profile, or an ``ExperimentConfig``.
        studies: names from ``STUDIES`` to run (default: the profile's list).
        run_dir: folder that holds run folders (default ``$TPV_RUN_DIR`` or ``./runs``); the run itself goes
            to ``<run_dir>/<profile name>-<config fingerprint>``.
        dry_run: print the plan and its estimated cost, and run nothing.
        progress: show tqdm progress bars and print what is written.
        measure: price the plan by a few steps measured on this machine (seconds) rather than by the profile's
            ``seconds_per_step`` / ``seconds_per_example``.
        shard: ``"i/n"`` (or ``(i, n)``): compute only the i-th of n interleaved parts of the work into the run
            folder's cache and write no page, so n processes can share the machine (``OMP_NUM_THREADS=1`` each on
            a small CPU, where they do more in all than one process with n threads); a run without ``shard``
            afterwards finds it all cached and writes the pages. Each study splits its own units: the paper's
            studies by (task, origin) vector, (pair, origin) and (target, initialisation, origin); ``transfer`` by
            target. A prompt two shards need (a source vector) is tuned by the first, the other waits for it.

    Returns:
        ``{"profile", "run_dir", "output_dir", "fingerprint", "commit", "plan"(dry run), "studies": {name:
        {"seconds", "table", "files", "trained"}}, "trained": n, "estimated_seconds"}``.

    Example:
        >>> summary = reproduce("smoke", dry_run=True, progress=False, run_dir=tempfile.mkdtemp())
        >>> summary["estimated_seconds"] > 0
        True
    """
    config = profile if isinstance(profile, ExperimentConfig) else load_config(profile)
    if studies is not None:
        studies = [studies] if isinstance(studies, str) else list(studies)
        unknown = [s for s in studies if s not in ALL_STUDIES]
        if unknown or not studies:
            raise TPVError(f"unknown studies {unknown or studies}; choose from {list(ALL_STUDIES)}")
        config.studies = [s for s in ALL_STUDIES if s in studies]
    part = _shard(shard)
    root = Path(run_dir or os.environ.get("TPV_RUN_DIR") or DEFAULT_RUN_ROOT)
    folder = root / f"{config.name}-{config.fingerprint()}"
    lab = Lab(config, folder, progress=progress)
    lab.output_dir = Path(config.output_dir) if config.output_dir else folder / "results"
    from tpv.experiments.plan import build_plan, format_plan, measure_speed

    # The smoke profile's tiny random model says nothing about real speeds, and building it would write into
    # the run folder, which a dry run must not touch.
    speed = measure_speed(lab) if measure and config.model.name != TINY_MODEL else None
    items = build_plan(lab, speed)
    plan_text = format_plan(lab, items, speed)
    summary: dict = {
        "profile": config.name,
        "run_dir": str(folder),
        "output_dir": str(lab.output_dir),
        "fingerprint": config.fingerprint(),
        "commit": git_commit(),
        "estimated_seconds": sum(item.seconds for item in items),
        "studies": {},
    }
    if dry_run:
        if progress:
            print(plan_text)
        summary["plan"] = plan_text
        return summary
    if part is not None:
        return _run_shard(lab, config, summary, part, progress)
    # A second reproduce into this run folder is refused rather than interleaved with the first (scores.json).
    with RunLock(folder, elsewhere="pass another --run-dir (run_dir= in Python) to run a second copy"):
        return _run_studies(lab, config, summary, plan_text, progress)


def _shard(shard) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        index, count = (int(x) for x in (shard.split("/") if isinstance(shard, str) else shard))
    except (TypeError, ValueError):
        index = count = 0
    if not 1 <= index <= count:
        raise TPVError(f"shard must be 'i/n' with 1 ≤ i ≤ n, e.g. '1/2', got {shard!r}")
    return index, count


def _run_shard(lab: Lab, config: ExperimentConfig, summary: dict, part: tuple[int, int], progress: bool) -> dict:
    """One shard's share of the work into the cache; no page (the run without a shard writes them)."""
    from tpv.experiments.studies import STUDY_MODULES

    index, count = part
    # One shard's own lock: the same shard twice is refused, other shards and their store writes interleave.
    lock_folder = lab.run_dir / "shards" / f"{index}-of-{count}"
    with RunLock(lock_folder, elsewhere="run another shard, or wait for this one"):
        atomic_write_text(lab.run_dir / "config.json", json.dumps(config.to_dict(), indent=1))
        _record_machine(lab)
        for name in config.studies:
            start = time.perf_counter()
            done = STUDY_MODULES[name].run_shard(lab, index, count, progress=progress)
            summary["studies"][name] = {"seconds": time.perf_counter() - start, "shard": f"{index}/{count}", **done}
    summary["trained"] = lab.trained
    if progress:
        print(
            f"shard {index}/{count} done; when every shard is, `tpv reproduce {config.name}` (no --shard) writes "
            "the pages from the cache",
            file=sys.stderr,
        )
    return summary


def _record_machine(lab: Lab) -> None:
    lab.store.machine = {"commit": git_commit(), "device": lab.device, "hardware": lab.hardware, "dtype": lab.dtype}


def _run_studies(lab: Lab, config: ExperimentConfig, summary: dict, plan_text: str, progress: bool) -> dict:
    folder = lab.run_dir
    atomic_write_text(folder / "config.json", json.dumps(config.to_dict(), indent=1))
    if progress:
        print(plan_text, file=sys.stderr)
    from tpv.experiments.studies import STUDY_MODULES

    # Every score computed from here on records where: a run folder resumed on another machine (a GPU's work
    # finished on a CPU) names both in its pages.
    _record_machine(lab)
    for name in config.studies:
        start, trained = time.perf_counter(), lab.trained
        lab.store.touched.clear()
        result = STUDY_MODULES[name].run(lab, progress=progress)
        seconds = time.perf_counter() - start
        files = write_outputs(result, lab, seconds, computed_by=lab.store.computed_by(lab.store.touched))
        summary["studies"][name] = {
            "seconds": seconds,
            "table": result.table,
            "files": [str(f) for f in files],
            "trained": lab.trained - trained,
        }
        if progress:
            print(f"{name}: {seconds:.1f} s, wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    # The verdicts read every study page of this run folder key in the output folder, including ones an earlier
    # `--study` run wrote, so a run split by study still ends with one findings table.
    summary["findings"] = [str(f) for f in write_findings(lab.output_dir, config)]
    summary["trained"] = lab.trained
    return summary


def reproduce_command(profile: str, study: str | None = None) -> str:
    """The ``tpv reproduce`` command line that results pages name as their source."""
    return f"tpv reproduce {profile}" + (f" --study {study}" if study else "")


def write_outputs(result: StudyResult, lab: Lab, seconds: float, computed_by: list[dict] | None = None) -> list[Path]:
    """Markdown table, JSON (config, commit, summary, raw rows) and CSV of raw rows; figures are already written.

    ``computed_by`` (``ScoreStore.computed_by`` of the study's scores) names the machines that computed them, in
    the page and the JSON; the commit, device and hardware beside it are those of the run that wrote the page."""
    out = lab.output_dir
    config = lab.config
    command = reproduce_command(config.name, result.name if len(config.studies) == 1 else None)
    header = [
        f"# {result.title}",
        "",
        f"Produced by `{command}` (profile `{config.name}`, protocol `{config.protocol.name}`, model "
        f"`{config.model.name}` in {lab.dtype} on {lab.device}: {lab.hardware}; git commit `{git_commit()}`, "
        f"run folder key `{config.fingerprint()}`), wall-clock time of this study "
        f"{seconds:.1f} s (cached work excluded). Raw per-origin scores: `{result.name}.csv` / "
        f"`{result.name}.json`.",
        "",
        scale_note(config, result.name),
        "",
    ]
    if computed_by:
        header += [
            "Scores computed by: "
            + "; ".join(
                f"{m['entries']} on {m['device']} ({m['hardware']}, {m['dtype']}) at commit `{m['commit'][:12]}`"
                if "device" in m
                else f"{m['entries']} {m['machine']}"
                for m in computed_by
            )
            + ".",
            "",
        ]
    figures = [f"![{f.stem}]({f.name})" for f in result.figures]
    markdown = "\n".join(header + [result.table, "", *result.notes, "", *figures]) + "\n"
    paths = [atomic_write_text(out / f"{result.name}.md", markdown)]
    payload = {
        "study": result.name,
        "title": result.title,
        "config": config.to_dict(),
        "commit": git_commit(),
        "device": lab.device,
        "hardware": lab.hardware,
        "dtype": lab.dtype,
        "fingerprint": config.fingerprint(),
        "seconds": seconds,
        "computed_by": computed_by or [],
        "summary": result.summary,
        "rows": result.rows,
    }
    paths.append(atomic_write_text(out / f"{result.name}.json", json.dumps(payload, indent=1, default=str)))
    if result.rows:
        buffer = io.StringIO()
        keys = list(dict.fromkeys(k for row in result.rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(result.rows)
        paths.append(atomic_write_text(out / f"{result.name}.csv", buffer.getvalue()))
    return paths + list(result.figures)

"""Training steps per second on this CPU: one process with every core's thread, or one one-thread process per core.

    python benchmarks/shard_throughput.py                      # mnli, 12 steps per run, batch 8, the default model
    python benchmarks/shard_throughput.py --task sst2 --steps 20 --json runs/benchmarks/shard_throughput.json

Why: `tpv reproduce … --shard i/n` runs n processes side by side; on a small CPU, a 135M-parameter model's
matrices are too small to keep two threads busy, so two one-thread processes may do more in all. Each run is a
fresh process that loads the default model and times prompt-tuning steps (the first two are warm-up and not
counted); the one-process run is measured before and after the side-by-side runs, and their mean is the
baseline, so the ratio does not depend on how fast the machine is, only on how busy it is. Prints a Markdown
block with the CPU named.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

WARM_UP = 2


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mnli", help="task whose training examples are used")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run (after 2 warm-up steps)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="side-by-side processes")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.task, args.steps)
    cores = args.processes
    alone_before = _run([_spawn(args, threads=cores)])[0]
    side_by_side = _run([_spawn(args, threads=1) for _ in range(cores)])
    alone_after = _run([_spawn(args, threads=cores)])[0]
    baseline = (alone_before["seconds_per_step"] + alone_after["seconds_per_step"]) / 2
    each = [run["seconds_per_step"] for run in side_by_side]
    figures = {
        "task": args.task,
        "steps": args.steps,
        "processes": cores,
        "one_process_seconds_per_step": [alone_before["seconds_per_step"], alone_after["seconds_per_step"]],
        "side_by_side_seconds_per_step": each,
        # Steps per second in all: n processes each at its own pace, against the one process's.
        "throughput_ratio": round(sum(1 / s for s in each) * baseline, 2),
        "cpu": alone_before["cpu"],
        "command": "python benchmarks/shard_throughput.py " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    print(_markdown(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def _spawn(args, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--worker", "--task", args.task, "--steps", str(args.steps)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def _run(processes: list[subprocess.Popen]) -> list[dict]:
    outputs = [process.communicate()[0] for process in processes]
    if any(process.returncode for process in processes):
        raise SystemExit("a worker failed; its error is above")
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def _worker(task: str, steps: int) -> dict:
    import torch

    from tpv import init_prompt_tuning, load_model, make_origin
    from tpv.bridge.precision import hardware_summary
    from tpv.compose.tuning import tune_prompt
    from tpv.data import load_split

    model, tokenizer = load_model()
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 20))
    train = load_split(task, "train")[: 8 * (steps + WARM_UP)]
    stamps: list[float] = []
    tune_prompt(
        peft_model, tokenizer, task, train, steps=steps + WARM_UP, on_step=lambda _: stamps.append(time.perf_counter())
    )
    timed = [later - earlier for earlier, later in zip(stamps[WARM_UP - 1 :], stamps[WARM_UP:])]
    found = {
        "seconds_per_step": round(statistics.mean(timed), 3),
        "threads": torch.get_num_threads(),
        "cpu": hardware_summary(model.dtype),
    }
    print(json.dumps(found), flush=True)
    return found


def _markdown(f: dict) -> str:
    one = " / ".join(f"{s:.2f}" for s in f["one_process_seconds_per_step"])
    each = ", ".join(f"{s:.2f}" for s in f["side_by_side_seconds_per_step"])
    return "\n".join(
        [
            f"Prompt-tuning steps of the default model on {f['task']} (batch 8; `{f['command']}`; {f['cpu']}):",
            "",
            "| | seconds per step | steps per second in all, × one process |",
            "| --- | --- | --- |",
            f"| one process, {f['processes']} threads (before / after) | {one} | 1 |",
            f"| {f['processes']} processes side by side, 1 thread each | {each} | {f['throughput_ratio']} |",
        ]
    )


if __name__ == "__main__":
    main()

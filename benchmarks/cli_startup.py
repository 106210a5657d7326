"""How long `tpv --help` takes, against a bare Python start and `import torch` measured in the same run.

    python benchmarks/cli_startup.py [--repeats 5]

Prints the best of N runs of each (the best, because other processes on a shared machine only ever add time)
and the CPU it ran on. The help must not import torch or transformers (tests/test_cli.py checks that).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "tpv --help": [sys.executable, "-m", "tpv", "--help"],
    "tpv train --help": [sys.executable, "-m", "tpv", "train", "--help"],
    "python -c 'import torch' (what the help avoids)": [sys.executable, "-c", "import torch"],
}


def _best_of(command: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command; the best is kept (default: 5)")
    args = parser.parse_args(argv)
    from tpv.bridge.precision import (
        cpu_model,
    )  # reads /proc/cpuinfo only; imports torch in this process, not the timed ones

    times = {label: _best_of(command, args.repeats) for label, command in COMMANDS.items()}
    baseline = times["python -c pass (baseline)"]
    print(f"CPU: {cpu_model()}; best of {args.repeats} runs each")
    for label, seconds in times.items():
        print(f"{label:50s} {seconds:6.2f} s  ({seconds / baseline:5.1f}× bare python)")


if __name__ == "__main__":
    main()

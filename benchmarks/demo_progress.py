"""Time the demo and the longest pause in its output: ``python benchmarks/demo_progress.py [demo args]``.

Runs ``examples/demo.py`` in a subprocess, timestamps every chunk it writes (progress bars included) and prints
the wall time and the longest gap between two chunks, with the CPU it ran on. State the machine's load beside
the figure: on a shared machine both numbers grow with it.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from tpv.bridge.precision import hardware_summary

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def main() -> None:
    start = last = time.perf_counter()
    longest = 0.0
    process = subprocess.Popen(
        [sys.executable, str(DEMO), *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    while chunk := os.read(process.stdout.fileno(), 4096):
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    process.wait()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\ndemo exit {process.returncode}: {time.perf_counter() - start:.0f} s wall, longest pause between "
        f"outputs {longest:.1f} s, load average {load:.1f}; {hardware_summary()}"
    )


if __name__ == "__main__":
    main()

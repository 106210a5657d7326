"""The version of tpv and the commit it runs from, in the core so that every layer may record them (vector
files, run folders, stores, zoo manifests)."""

import subprocess
from pathlib import Path

__version__ = "0.1.0"


def git_commit() -> str:
    """``git rev-parse HEAD`` of the working copy tpv runs from, or ``"unknown"`` outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"

"""What every ``tpv`` command shares: the parser class, exit statuses, the usage-error block, small checks.

Nothing heavy is imported at the top, so building the parser (``tpv --help``) does not import torch.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager

from tpv.core.errors import TPVError

EXIT_FAILURE = 1  # the work failed: loading the model, training, scoring, writing
EXIT_USAGE = 2  # the command line is wrong, found before any work started (argparse's status for usage errors)
EXIT_ERROR = EXIT_USAGE  # the name before exit statuses were split; kept for scripts that import it
EXIT_STATUSES = (
    "exit status: 0 done; 1 the work failed (loading the model, training, scoring, writing);\n"
    "  2 the command line is wrong (an unknown option, a bad value, an unknown task, an input file or Hub\n"
    "  repo that is missing or unreadable), found before any model loads or anything is written;\n"
    "  130 interrupted."
)


# tpv.compose.merge.MERGE_METHODS' names, spelled out so that building the parser does not import torch
# (tests/test_cli.py checks that the two agree).
MERGE_METHOD_NAMES = ("dare_linear", "dare_ties", "magnitude_prune", "mean", "sum", "ties")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at ``--help`` instead of a usage dump."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class UsageError(TPVError):
    """A bad command line, found before any work started: exit status 2 (:data:`EXIT_USAGE`)."""


@contextmanager
def checking_arguments() -> Iterator[None]:
    """Inside, a :class:`TPVError` means the command line is wrong, so it leaves as a :class:`UsageError`.

    Each command checks its options and reads its inputs (tasks, data, vector files) in this block, before it
    loads a model or writes anything; what fails after it is a failure of the work (exit status 1).
    """
    try:
        yield
    except UsageError:
        raise
    except TPVError as error:
        raise UsageError(str(error)) from error


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def examples_epilog(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def check_positive(value: int | None, option: str, example: str) -> None:
    if value is not None and value < 1:
        raise TPVError(f"{option} must be ≥ 1, got {value}; pass {example}")


def check_finite(value: float, option: str) -> None:
    if not math.isfinite(value):
        raise TPVError(f"{option} must be a finite number, got {value}")


def print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def check_batch_size(batch_size: int) -> None:
    # Checked before the model loads, so the mistake costs no waiting.
    if batch_size < 1:
        raise TPVError(f"--batch-size must be ≥ 1, got {batch_size}")


def parse_grid(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TPVError(f"bad --grid {text!r}; write comma-separated numbers, e.g. 0,0.25,0.5,0.75,1") from None

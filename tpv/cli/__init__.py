"""The ``tpv`` command: train prompts, inspect and combine vectors, initialise, evaluate, search λ, reproduce.

Every subcommand is a thin layer over the library; a :class:`tpv.TPVError` (or a missing file) becomes one
line ``tpv: error: …`` on stderr, with no traceback, and exit status 2 when the command line is wrong (found
before any model loads or anything is written) or 1 when the work fails.

This package imports nothing heavy at the top: torch, transformers and peft are imported inside the command
handlers, so ``tpv --help`` and usage errors answer at once (``python benchmarks/cli_startup.py`` measures it).
One module per command group (``train``, ``vector``, ``init``, ``eval``, ``search``, ``zoo``, ``reproduce``);
what every command shares (exit statuses, the usage-error block) in ``common``, the model, Hub, data and vector
options and readers in ``inputs``, and the entry point in ``app``.
"""

from tpv.cli.app import build_parser, main
from tpv.cli.common import EXIT_ERROR, EXIT_FAILURE, EXIT_USAGE, MERGE_METHOD_NAMES
from tpv.cli.inputs import read_vector
from tpv.cli.vector import vector_info

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "MERGE_METHOD_NAMES",
    "build_parser",
    "main",
    "read_vector",
    "vector_info",
]

"""The ``tpv`` entry point: :func:`main` parses the command line and turns failures into one-line errors."""

from __future__ import annotations

import argparse
import pickle
import sys

from tpv.cli.common import EXIT_FAILURE, EXIT_STATUSES, EXIT_USAGE, Parser, UsageError, examples_epilog, formatter
from tpv.cli.eval import add_eval
from tpv.cli.init import add_init
from tpv.cli.reproduce import add_reproduce
from tpv.cli.search import add_search
from tpv.cli.train import add_train
from tpv.cli.vector import add_vector
from tpv.cli.zoo import add_zoo
from tpv.core.errors import TPVError, describe_os_error


def main(argv: list[str] | None = None) -> int:
    """Run the ``tpv`` command with ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    Example:
        >>> main(["vector", "info", "missing.tpv.safetensors"])  # a usage error: the input is missing
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help and usage errors; returned, so in-process callers keep running
        return int(stop.code or 0)
    try:
        return int(args.run(args) or 0)
    except UsageError as error:
        return _fail(str(error), EXIT_USAGE)
    except TPVError as error:
        return _fail(str(error))
    except OSError as error:  # the library maps its own; this catches those raised inside other libraries
        return _fail(describe_os_error(error, getattr(error, "filename", None)))
    except UnicodeDecodeError as error:
        return _fail(f"a file is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8")
    except pickle.UnpicklingError as error:  # e.g. a tampered Trainer checkpoint; weights_only refused it
        return _fail(
            f"refused to unpickle a file ({' '.join(str(error).split())[:200]}); tpv and transformers "
            "load checkpoints with weights_only=True: delete the run folder's checkpoint-* and rerun"
        )
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume (finished runs are cached)")
        return 130


def _fail(message: str, status: int = EXIT_FAILURE) -> int:
    print(f"tpv: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The ``tpv`` argument parser with every subcommand."""
    parser = Parser(
        prog="tpv",
        formatter_class=formatter,
        description="Task prompt vectors for Hugging Face PEFT: τ = θ_tuned − θ_origin, θ = θ_origin' + λ·Σ τ.",
        epilog=examples_epilog(
            "tpv train sst2 --steps 200 --output-dir runs/sst2",
            "tpv vector info runs/sst2/sst2.tpv.safetensors",
            "tpv vector combine runs/sst2/sst2.tpv.safetensors runs/yelp/yelp_polarity.tpv.safetensors:0.5 "
            "-o combo.tpv.safetensors",
            "tpv init combo.tpv.safetensors --origin-seed 7 --scale 0.8 -o runs/imdb-init",
            "tpv eval --adapter runs/sst2 --task sst2 --split test --json",
            "tpv zoo build --model HuggingFaceTB/SmolLM2-360M-Instruct --tasks sst2 imdb --output-dir zoo-360m",
            "tpv reproduce smoke --dry-run",
        )
        + "\n\n"
        + EXIT_STATUSES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True, parser_class=Parser)
    for add in (add_train, add_vector, add_init, add_eval, add_search, add_zoo, add_reproduce):
        add(commands)
    return parser


def _version() -> str:
    from tpv.core._version import __version__

    return __version__

"""What the ``tpv`` commands share: the parser class, option groups, and helpers that read vectors and data.

Nothing heavy is imported at the top, so building the parser (``tpv --help``) does not import torch.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tpv.core.errors import TPVError

EXIT_FAILURE = 1  # the work failed: training, scoring, writing, a file's contents
EXIT_USAGE = 2  # the command line is wrong, found before any work started (argparse's status for usage errors)
EXIT_ERROR = EXIT_USAGE  # the name before exit statuses were split; kept for scripts that import it
EXIT_STATUSES = (
    "exit status: 0 done; 1 the work failed (training, scoring, writing, a file it could not read);\n"
    "  2 the command line is wrong (an unknown option, a bad value, a missing input, an unknown task),\n"
    "  found before any model loads or anything is written; 130 interrupted."
)
DTYPES = ("auto", "float32", "bfloat16")
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


def model_options(parser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        metavar="ID_OR_FOLDER",
        help="Hugging Face model id or local folder (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="model dtype; auto: bfloat16 where this machine multiplies it faster than float32 "
        "(measured once, cached), else float32; $TPV_DTYPE sets the default "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="where the model runs, e.g. cuda, cuda:1, cpu, mps; --dtype auto is judged for it "
        "(default: CUDA where available, else the CPU)",
    )


def check_model_options(args) -> None:
    """Refuse a ``--device`` this machine does not have, before anything loads."""
    if args.device is None:
        return
    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise TPVError(f"--device {args.device!r} is not a device; pass e.g. cuda, cuda:1, cpu or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TPVError(
            f"--device {args.device} but torch sees no CUDA device here (torch.cuda.is_available() is False); "
            "pass --device cpu, or install a CUDA build of torch on a machine with a GPU"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TPVError(
            f"--device {args.device} but this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"numbered from 0; pass --device cuda:0"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TPVError(f"--device {args.device} but torch sees no Apple MPS device here; pass --device cpu")


def data_options(parser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding <task>/<split>.jsonl (default: $TPV_DATA_DIR, else the Hugging Face Hub)",
    )
    user_data_options(parser)


def user_data_options(parser) -> None:
    group = parser.add_argument_group("your own data (instead of a registered task; see tpv.data.Task.from_files)")
    group.add_argument(
        "--data",
        default=None,
        metavar="DIR_OR_FILE",
        help="a folder of train/validation/test .jsonl/.csv/.tsv files, or one such file",
    )
    group.add_argument(
        "--text-field",
        action="append",
        default=None,
        metavar="FIELD",
        help="an input field (repeatable, in template order; default: every text field)",
    )
    group.add_argument("--label-field", default="label", metavar="FIELD", help="the label field (default: label)")
    group.add_argument(
        "--labels",
        default=None,
        metavar="W0,W1,...",
        help="label words for integer labels 0, 1, … (string labels are their own words)",
    )


def user_task(args, name: str | None = None) -> str | None:
    """Register the task of ``--data`` (if given) and return its name; else return ``name``."""
    if not getattr(args, "data", None):
        return name
    from tpv.data.files import from_files

    labels = [word.strip() for word in args.labels.split(",")] if args.labels else None
    return from_files(
        args.data, text_fields=args.text_field, label_field=args.label_field, labels=labels, name=name
    ).name


def origin_options(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--origin-seed",
        type=int,
        default=None,
        metavar="N",
        help="make the origin with tpv.make_origin(model, tokens, seed=N) (default: 0)",
    )
    group.add_argument("--origin", default=None, metavar="FILE", help="an *.origin.safetensors file")
    parser.add_argument(
        "--origin-method",
        choices=("sample_vocab", "paper", "normal"),
        default="sample_vocab",
        help="how --origin-seed draws the origin (default: %(default)s; 'paper' is the official code's recipe)",
    )


def model_from_args(args):
    from tpv.bridge.models import load_model

    # Without --device, load_model's own default decides (CUDA where available).
    device = {"device": args.device} if args.device else {}
    return load_model(args.model, dtype=args.dtype, **device)


def check_positive(value: int | None, option: str, example: str) -> None:
    if value is not None and value < 1:
        raise TPVError(f"{option} must be ≥ 1, got {value}; pass {example}")


def check_finite(value: float, option: str) -> None:
    if not math.isfinite(value):
        raise TPVError(f"{option} must be a finite number, got {value}")


def vector_specs(specs: list[str]):
    """``FILE[:WEIGHT]`` strings → ``[(label, vector, weight)]``."""
    items = []
    for spec in specs:
        path, weight = split_weight(spec)
        vector = read_vector(path)
        items.append((_label(path, vector), vector, weight))
    return items


def read_vector(path: str):
    """A vector file, or the vector of a PEFT adapter folder (the one ``tpv train`` saved there, else ``from_peft``)."""
    from tpv.bridge.vector import TaskPromptVector

    folder = Path(path)
    if not folder.is_dir():
        return TaskPromptVector.load(path)
    saved = sorted(folder.glob("*.tpv.safetensors"))
    if len(saved) == 1:
        return TaskPromptVector.load(saved[0])
    if (folder / "adapter_config.json").is_file():
        return TaskPromptVector.from_peft(folder)
    raise TPVError(
        f"'{path}' is a folder, not a vector file, and holds no PEFT adapter (adapter_config.json)"
        + (
            f" but {len(saved)} vector files; pass one of them"
            if saved
            else "; pass a *.tpv.safetensors file or a prompt-tuning adapter folder"
        )
    )


def split_weight(spec: str) -> tuple[str, float]:
    path, sep, tail = spec.rpartition(":")
    # A ':' inside a path (or a Windows drive letter) is not a weight; only a final ':<number>' is.
    if not sep or "/" in tail or "\\" in tail or not tail:
        return spec, 1.0
    try:
        weight = float(tail)
    except ValueError:
        raise TPVError(
            f"bad weight {tail!r} in {spec!r}; write FILE or FILE:WEIGHT, e.g. yelp.tpv.safetensors:0.5"
        ) from None
    if not math.isfinite(weight):
        raise TPVError(f"bad weight {tail!r} in {spec!r}; the weight must be a finite number")
    return path, weight


def _label(path: str, vector) -> str:
    if len(vector.tasks) == 1 and next(iter(vector.tasks.values())) == 1.0:
        return next(iter(vector.tasks))
    return Path(path).name.removesuffix(".safetensors").removesuffix(".tpv")


def combination(specs: list[str]):
    from tpv.core.vector import combine

    return combine([(vector, weight) for _, vector, weight in vector_specs(specs)])


def read_origin(args):
    """The ``--origin`` file's origin, read before the model loads; ``None`` for a seeded origin."""
    from tpv.core.origin import Origin

    return Origin.load(args.origin) if args.origin else None


def make_origin(args, model, num_virtual_tokens: int):
    from tpv.core.origin import Origin, make_origin

    if args.origin:
        return Origin.load(args.origin)
    seed = 0 if args.origin_seed is None else args.origin_seed
    return make_origin(model, num_virtual_tokens, seed=seed, method=args.origin_method)


def examples_of(task: str, split: str, limit: int | None, data_dir, option: str = "--limit") -> list[dict]:
    from tpv.data import load_split

    if limit is not None and limit < 1:
        raise TPVError(f"{option} must be a positive number of examples, got {limit}")
    examples = load_split(task, split, data_dir)
    return examples[:limit] if limit else examples


def print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def require_task(args, task: str | None) -> str:
    if not task:
        raise TPVError(
            "no task: name a registered task (e.g. sst2, see docs/tasks.md) or pass --data DIR with your own examples"
        )
    return task


def check_batch_size(batch_size: int) -> None:
    # Checked before the model loads, so the mistake costs no waiting.
    if batch_size < 1:
        raise TPVError(f"--batch-size must be ≥ 1, got {batch_size}")


def task_metric(task: str) -> str:
    from tpv.data import get_task

    return get_task(task).metric


def parse_grid(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TPVError(f"bad --grid {text!r}; write comma-separated numbers, e.g. 0,0.25,0.5,0.75,1") from None

"""What the model commands read before any work: the model, Hub and data options, vectors, origins, tasks.

Each reader runs inside :func:`tpv.cli.common.checking_arguments`, so a bad value is a usage error (exit 2).
Nothing heavy is imported at the top, so building the parser (``tpv --help``) does not import torch.
"""

from __future__ import annotations

import math
from pathlib import Path

from tpv.core.errors import TPVError

DTYPES = ("auto", "checkpoint", "float32", "bfloat16", "float16")


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
        help="model dtype; auto: the fastest on the device that runs the model (bfloat16 on a GPU that has "
        "it; on a CPU only where measured faster than float32), not transformers' 'auto'; checkpoint: the "
        "checkpoint's own dtype (transformers' 'auto'); $TPV_DTYPE sets the default (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="where the model runs, e.g. cuda, cuda:1, cpu, mps; --dtype auto is judged for it "
        "(default: CUDA where available, else the CPU)",
    )
    hub_options(parser)


def check_model_options(args) -> None:
    """Refuse a ``--model`` folder that is not there and a ``--device`` this machine lacks, before anything loads."""
    model = args.model or ""
    # Hub ids are "name" or "owner/name"; anything else that names no folder is a mistyped path.
    is_path = model.startswith((".", "~", "/")) or model.count("/") > 1 or model.endswith("/")
    if is_path and not Path(model).expanduser().exists():
        raise TPVError(f"--model {model}: no such folder; pass a model folder or a Hugging Face model id")
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
    group = parser.add_argument_group(
        "your own data (instead of a registered task; see tpv.Task.from_files and tpv.Task.from_dataset)"
    )
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        default=None,
        metavar="DIR_OR_FILE",
        help="a folder of train/validation/test .jsonl/.csv/.tsv files, or one such file",
    )
    source.add_argument(
        "--dataset",
        default=None,
        metavar="ID_OR_FOLDER",
        help="a Hugging Face dataset: a Hub id (e.g. stanfordnlp/imdb) or a save_to_disk folder; its ClassLabel "
        "names are the label words, unlabelled splits are left out (needs pip install 'tpv[hub]')",
    )
    group.add_argument(
        "--dataset-config", default=None, metavar="NAME", help="the --dataset's configuration, e.g. sst2 for glue"
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
        help="label words for integer labels 0, 1, … (string labels are their own words; --dataset: default "
        "its ClassLabel names)",
    )


def user_task(args, name: str | None = None) -> str | None:
    """Register the task of ``--data`` or ``--dataset`` (if given) and return its name; else return ``name``."""
    if getattr(args, "dataset_config", None) and not getattr(args, "dataset", None):
        raise TPVError(f"--dataset-config {args.dataset_config} needs --dataset ID; add it or drop --dataset-config")
    if not getattr(args, "data", None) and not getattr(args, "dataset", None):
        return name
    from tpv.data.task import Task

    options = {
        "text_fields": args.text_field,
        "label_field": args.label_field,
        "labels": [word.strip() for word in args.labels.split(",")] if args.labels else None,
        "name": name,
    }
    if args.data:
        return Task.from_files(args.data, **options).name
    # datasets reads offline from its cache by $HF_DATASETS_OFFLINE, not by a keyword.
    dataset_hub = {key: value for key, value in hub(args).items() if key != "local_files_only"}
    try:
        return Task.from_dataset(args.dataset, args.dataset_config, **options, **dataset_hub).name
    except TPVError as error:  # the library names its keyword; the user names the task on the command line
        raise TPVError(
            str(error).replace("pass name= another name", "name the task yourself (TASK or --task)")
        ) from None


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

    return load_model(args.model, device=args.device, dtype=args.dtype, **hub(args))


def hub_options(parser) -> None:
    group = parser.add_argument_group(
        "Hugging Face Hub (a repo id goes wherever a path does: --model, vectors, --sources, --adapter, --dataset)"
    )
    group.add_argument(
        "--revision",
        default=None,
        metavar="REV",
        help="branch, tag or commit of every Hub id on this command line (default: the repo's main branch)",
    )
    group.add_argument(
        "--token",
        default=None,
        help="Hub token for private repos (default: $HF_TOKEN, or what `hf auth login` saved)",
    )
    group.add_argument("--cache-dir", default=None, metavar="DIR", help="Hub cache folder (default: huggingface_hub's)")
    group.add_argument(
        "--local-files-only",
        action="store_true",
        help="use only the Hub cache, never the network",
    )


def hub(args) -> dict:
    """``from_pretrained``'s Hub keywords from the options given (none when the command has no Hub options)."""
    options = {
        "revision": getattr(args, "revision", None),
        "token": getattr(args, "token", None),
        "cache_dir": getattr(args, "cache_dir", None),
        "local_files_only": getattr(args, "local_files_only", False) or None,
    }
    return {key: value for key, value in options.items() if value is not None}


def vector_specs(specs: list[str], **hub_options):
    """``FILE[:WEIGHT]`` strings → ``[(label, vector, weight)]``; ``hub_options`` as for :func:`read_vector`."""
    items = []
    for spec in specs:
        path, weight = split_weight(spec)
        vector = read_vector(path, **hub_options)
        items.append((_label(path, vector), vector, weight))
    return items


def read_vector(path: str, **hub_options):
    """A vector file, or the vector of a PEFT adapter folder (the one ``tpv train`` saved there, else ``from_peft``).

    A Hub repo id ``owner/name`` that is no local path is downloaded first (a vector shared with ``push_to_hub``
    or a PEFT adapter); ``hub_options`` are ``revision``, ``token``, ``cache_dir``, ``local_files_only``.
    """
    from tpv.bridge.vector import TaskPromptVector

    folder = local_or_hub(path, "the vector", **hub_options)
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


def combination(specs: list[str], **hub_options):
    from tpv.core.vector import combine

    return combine([(vector, weight) for _, vector, weight in vector_specs(specs, **hub_options)])


def local_or_hub(path: str, what: str, **hub_options) -> Path:
    """``path`` itself, or the local snapshot of the Hub repo it names when it is no local path."""
    if not _hub_id(path):
        return Path(path)
    from tpv.bridge.hub import SOURCE_PATTERNS, local_or_hub

    return local_or_hub(path, what, allow_patterns=SOURCE_PATTERNS, **hub_options)


def _hub_id(path: str) -> bool:
    # Vectors are shared as owner/name repos; a missing file name (…/x.tpv.safetensors) or a relative path such
    # as ./runs/x stays a path, so that its error says "no such file" and not "no such repo".
    return (
        not Path(path).exists()
        and path.count("/") == 1
        and not path.startswith((".", "/", "~"))
        and not path.endswith((".safetensors", ".json", ".bin"))
    )


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


def require_task(args, task: str | None) -> str:
    if not task:
        raise TPVError(
            "no task: name a registered task (e.g. sst2, see docs/tasks.md) or pass --data DIR with your own examples"
        )
    return task


def task_metric(task: str) -> str:
    from tpv.data import get_task

    return get_task(task).metric

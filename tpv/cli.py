"""The ``tpv`` command: train prompts, inspect and combine vectors, initialise, evaluate, search λ, reproduce.

Every subcommand is a thin layer over the library; a :class:`tpv.TPVError` (or a missing file) becomes one
line ``tpv: error: …`` on stderr and exit status 2, with no traceback.

This module imports nothing heavy at the top: torch, transformers and peft are imported inside the command
handlers, so ``tpv --help`` and usage errors answer at once (``python benchmarks/cli_startup.py`` measures it).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from pathlib import Path

from tpv.core.errors import TPVError, describe_os_error

EXIT_ERROR = 2
_DTYPES = ("auto", "float32", "bfloat16")
# tpv.compose.merge.MERGE_METHODS' names, spelled out so that building the parser does not import torch
# (tests/test_cli.py checks that the two agree).
MERGE_METHOD_NAMES = ("dare_linear", "dare_ties", "magnitude_prune", "mean", "sum", "ties")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at ``--help`` instead of a usage dump."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def main(argv: list[str] | None = None) -> int:
    """Run the ``tpv`` command with ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    Example:
        >>> main(["vector", "info", "missing.tpv.safetensors"])
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help and usage errors; returned, so in-process callers keep running
        return int(stop.code or 0)
    try:
        return int(args.run(args) or 0)
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


def _fail(message: str) -> int:
    print(f"tpv: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The ``tpv`` argument parser with every subcommand."""
    parser = _Parser(
        prog="tpv",
        formatter_class=_formatter,
        description="Task prompt vectors for Hugging Face PEFT: τ = θ_tuned − θ_origin, θ = θ_origin' + λ·Σ τ.",
        epilog=_examples(
            "tpv train sst2 --steps 200 --output-dir runs/sst2",
            "tpv vector info runs/sst2/sst2.tpv.safetensors",
            "tpv vector combine runs/sst2/sst2.tpv.safetensors runs/yelp/yelp_polarity.tpv.safetensors:0.5 "
            "-o combo.tpv.safetensors",
            "tpv init combo.tpv.safetensors --origin-seed 7 --scale 0.8 -o runs/imdb-init",
            "tpv eval --adapter runs/sst2 --task sst2 --split test --json",
            "tpv reproduce smoke --dry-run",
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True, parser_class=_Parser)
    _add_train(commands)
    _add_vector(commands)
    _add_init(commands)
    _add_eval(commands)
    _add_search(commands)
    _add_reproduce(commands)
    return parser


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _version() -> str:
    from tpv.core._version import __version__

    return __version__


# ---- shared options ---------------------------------------------------------------------------------------


def _model_options(parser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        metavar="ID_OR_FOLDER",
        help="Hugging Face model id or local folder (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--dtype",
        choices=_DTYPES,
        default="auto",
        help="model dtype; auto: bfloat16 where this machine multiplies it faster than float32 "
        "(measured once, cached), else float32; $TPV_DTYPE sets the default "
        "(default: %(default)s)",
    )


def _data_options(parser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding <task>/<split>.jsonl (default: $TPV_DATA_DIR, else the Hugging Face Hub)",
    )
    _user_data_options(parser)


def _user_data_options(parser) -> None:
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


def _user_task(args, name: str | None = None) -> str | None:
    """Register the task of ``--data`` (if given) and return its name; else return ``name``."""
    if not getattr(args, "data", None):
        return name
    from tpv.data.files import from_files

    labels = [word.strip() for word in args.labels.split(",")] if args.labels else None
    return from_files(
        args.data, text_fields=args.text_field, label_field=args.label_field, labels=labels, name=name
    ).name


def _origin_options(parser) -> None:
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


def _load_model(args):
    from tpv.bridge.models import load_model

    return load_model(args.model, dtype=args.dtype)


def _vector_specs(specs: list[str]):
    """``FILE[:WEIGHT]`` strings → ``[(label, vector, weight)]``."""
    items = []
    for spec in specs:
        path, weight = _split_weight(spec)
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


def _split_weight(spec: str) -> tuple[str, float]:
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


def _combination(specs: list[str]):
    from tpv.core.vector import combine

    return combine([(vector, weight) for _, vector, weight in _vector_specs(specs)])


def _make_origin(args, model, num_virtual_tokens: int):
    from tpv.core.origin import Origin, make_origin

    if args.origin:
        return Origin.load(args.origin)
    seed = 0 if args.origin_seed is None else args.origin_seed
    return make_origin(model, num_virtual_tokens, seed=seed, method=args.origin_method)


def _examples_of(task: str, split: str, limit: int | None, data_dir, option: str = "--limit") -> list[dict]:
    from tpv.data import load_split

    if limit is not None and limit < 1:
        raise TPVError(f"{option} must be a positive number of examples, got {limit}")
    examples = load_split(task, split, data_dir)
    return examples[:limit] if limit else examples


def _print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


# ---- tpv train --------------------------------------------------------------------------------------------


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="prompt-tune one task and write its vector",
        formatter_class=_formatter,
        description="Prompt-tune TASK from a seeded random origin (optionally moved by --init vectors) with "
        "transformers.Trainer. The run folder holds the PEFT adapter, its origin, the vector "
        "<task>.tpv.safetensors and tpv_train.json; rerunning the same command reuses a finished run "
        "and resumes a killed one. A folder holding a run with other settings is refused unless "
        "--overwrite; one folder takes one run at a time.",
        epilog=_examples(
            "tpv train sst2 --output-dir runs/sst2",
            "tpv train imdb --init runs/sst2/sst2.tpv.safetensors runs/yelp/yelp_polarity.tpv.safetensors "
            "--scale 0.8 --origin-seed 7 --output-dir runs/imdb",
            "tpv train --data my_reviews/ --text-field review --label-field stars --output-dir runs/mine",
            "tpv train sst2 --batch-size 4 --training-arg gradient_accumulation_steps=4 "
            "--training-arg report_to=tensorboard --output-dir runs/sst2",
            "accelerate launch -m tpv.cli train sst2 --output-dir runs/sst2   # many GPUs",
        ),
    )
    parser.add_argument(
        "task",
        nargs="?",
        default=None,
        help="a registered task name, e.g. sst2 (see docs/tasks.md), or a name for --data",
    )
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="the run folder (cached, resumable)")
    parser.add_argument("--origin-seed", type=int, default=0, metavar="N", help="seed of the origin (default: 0)")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.3, help="learning rate (default: %(default)s, the paper's)")
    parser.add_argument("--batch-size", type=int, default=16, help="per-device batch size (default: %(default)s)")
    parser.add_argument("--virtual-tokens", type=int, default=20, help="soft-prompt length (default: %(default)s)")
    parser.add_argument(
        "--init",
        nargs="+",
        default=None,
        metavar="FILE[:WEIGHT]",
        help="start from origin + scale·Σ weight·vector instead of the origin",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="λ for --init (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N training examples")
    parser.add_argument(
        "--eval-limit",
        type=int,
        default=200,
        metavar="N",
        help="validation examples for picking the best checkpoint; 0 turns it off (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-method",
        choices=("rank", "generate"),
        default="rank",
        help="how validation examples are scored: rank the label words (fast) or generate and "
        "parse the answer (the paper's; needed for tasks without label words) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also print Trainer's raw log records ({'loss': …}) every few steps"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the run already in --output-dir (needed when its settings differ)",
    )
    parser.add_argument(
        "--training-arg",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        dest="training_arg",
        help="any transformers.TrainingArguments field, e.g. gradient_accumulation_steps=4, "
        "report_to=tensorboard, bf16=true, logging_steps=5 (repeatable; overrides tpv's "
        "choice of that field)",
    )
    _model_options(parser)
    _data_options(parser)
    parser.set_defaults(run=_run_train)


# TrainingArguments fields that tpv train sets from its own options; --training-arg names the option instead.
_TRAIN_OPTIONS_OF_FIELDS = {
    "output_dir": "--output-dir",
    "max_steps": "--steps",
    "learning_rate": "--lr",
    "per_device_train_batch_size": "--batch-size",
}


def _run_train(args) -> int:
    from tpv.engine.evaluation import format_scores
    from tpv.engine.training import check_training_inputs, parse_training_args, train_prompt

    args.task = _require_task(args, _user_task(args, args.task))
    train_data = _examples_of(args.task, "train", args.limit, args.data_dir)
    # Before the model loads: a bad number should cost no wait, and the message names the option.
    try:
        check_training_inputs(args.task, train_data, args.steps, args.batch_size, learning_rate=args.lr)
    except TPVError as error:
        message = str(error)
        for name, option in (("max_steps", "--steps"), ("batch_size", "--batch-size"), ("learning_rate", "--lr")):
            message = message.replace(f"{name}={1}", f"{option} 1").replace(name, option)
        raise TPVError(message) from None
    if args.eval_limit is not None and args.eval_limit < 0:
        raise TPVError(f"--eval-limit must be ≥ 0 (0 turns validation off), got {args.eval_limit}")
    training_args = parse_training_args(args.training_arg or [], owned=_TRAIN_OPTIONS_OF_FIELDS)
    eval_data = (
        _examples_of(args.task, "validation", args.eval_limit, args.data_dir, "--eval-limit")
        if args.eval_limit
        else None
    )
    init = [(vector, weight) for _, vector, weight in _vector_specs(args.init)] if args.init else None
    model, tokenizer = _load_model(args)
    result = train_prompt(
        model,
        tokenizer,
        args.task,
        args.origin_seed,
        train_data,
        output_dir=args.output_dir,
        eval_data=eval_data,
        max_steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        num_virtual_tokens=args.virtual_tokens,
        init_vector=init,
        init_scale=args.scale,
        eval_method=args.eval_method,
        log_records=args.verbose,
        overwrite=args.overwrite,
        training_args=training_args or None,
    )
    scores = {k: v for k, v in result.metrics.items() if k.startswith("eval_")}
    print(f"vector  {result.vector_path}  {result.vector!r}")
    print(f"adapter {result.adapter_dir}")
    if scores:
        print("scores  " + format_scores(scores, _task_metric(args.task)))
    return 0


# ---- tpv vector ... ---------------------------------------------------------------------------------------


def _add_vector(commands) -> None:
    vector = commands.add_parser(
        "vector",
        help="inspect, combine and compare vector files",
        formatter_class=_formatter,
        description="Work on *.tpv.safetensors files without loading a model.",
        epilog=_examples(
            "tpv vector info sst2.tpv.safetensors --json",
            "tpv vector combine sst2.tpv.safetensors yelp.tpv.safetensors:0.5 -o combo.tpv.safetensors",
            "tpv vector similarity runs/*/*.tpv.safetensors --plot similarity.png",
        ),
    )
    sub = vector.add_subparsers(title="vector commands", metavar="COMMAND", required=True, parser_class=_Parser)

    info = sub.add_parser(
        "info",
        help="print what a vector file holds",
        formatter_class=_formatter,
        description="Print the tasks, shape, norm, base model and origin recipe of vector files "
        "(or of the vector of a PEFT prompt-tuning adapter folder, e.g. a tpv train run "
        "folder).",
        epilog=_examples("tpv vector info sst2.tpv.safetensors", "tpv vector info combo.tpv.safetensors --json"),
    )
    info.add_argument(
        "files",
        nargs="+",
        metavar="FILE_OR_FOLDER",
        help="*.tpv.safetensors files, or PEFT adapter folders (their vector is read)",
    )
    info.add_argument("--json", action="store_true", help="print JSON (a list, one object per file)")
    info.set_defaults(run=_run_info)

    comb = sub.add_parser(
        "combine",
        help="weighted sum (or TIES, DARE, …) of vectors",
        formatter_class=_formatter,
        description="Merge vectors, each given as FILE or FILE:WEIGHT, and write the result (paper eq. 4).",
        epilog=_examples(
            "tpv vector combine sst2.tpv.safetensors yelp.tpv.safetensors -o sum.tpv.safetensors",
            "tpv vector combine a.tpv.safetensors b.tpv.safetensors:-1 -o a_minus_b.tpv.safetensors",
            "tpv vector combine a.tpv.safetensors b.tpv.safetensors --method ties --density 0.3 -o t.tpv.safetensors",
        ),
    )
    comb.add_argument(
        "files",
        nargs="+",
        metavar="FILE[:WEIGHT]",
        help="vector files, each with an optional weight (default 1), e.g. yelp.tpv.safetensors:0.5",
    )
    comb.add_argument("-o", "--output", required=True, metavar="FILE", help="the *.tpv.safetensors to write")
    comb.add_argument("--method", choices=MERGE_METHOD_NAMES, default="sum", help="merge method (default: sum)")
    comb.add_argument("--density", type=float, default=None, help="fraction of entries kept (ties, dare, prune)")
    comb.add_argument("--seed", type=int, default=None, help="seed of DARE's random drop")
    comb.add_argument(
        "--majority-sign-method",
        choices=("total", "frequency"),
        default=None,
        help="how ties and dare_ties elect each entry's sign (default: total)",
    )
    comb.set_defaults(run=_run_combine)

    sim = sub.add_parser(
        "similarity",
        help="pairwise cosine similarities",
        formatter_class=_formatter,
        description="Print the cosine similarity matrix of vectors (mean pooling is the paper's).",
        epilog=_examples(
            "tpv vector similarity a.tpv.safetensors b.tpv.safetensors c.tpv.safetensors",
            "tpv vector similarity runs/*/*.tpv.safetensors --plot similarity.png --json",
        ),
    )
    sim.add_argument("files", nargs="+", metavar="FILE", help="vector files (no weights)")
    sim.add_argument(
        "--pooling",
        choices=("mean", "flat", "per_token"),
        default="mean",
        help="mean over virtual tokens (the paper's), the flattened prompt, or token by token (default: %(default)s)",
    )
    sim.add_argument("--plot", default=None, metavar="PNG", help="also write a heatmap (needs matplotlib)")
    sim.add_argument("--json", action="store_true", help='print {"names": [...], "matrix": [[...]]}')
    sim.set_defaults(run=_run_similarity)


def vector_info(path: str) -> dict:
    """What ``tpv vector info`` reports for one file, as a dict."""
    from tpv.core.provenance import merge_record

    vector = read_vector(path)
    return {
        "file": str(path),
        "repr": repr(vector),
        "tasks": vector.tasks,
        "shape": list(vector.shape),
        "num_virtual_tokens": vector.num_virtual_tokens,
        "num_transformer_submodules": vector.num_transformer_submodules,
        "token_dim": vector.token_dim,
        "norm": vector.norm(),
        "base_model": vector.base_model,
        "task_type": vector.task_type,
        "origin": vector.origin,
        "merge": merge_record(vector),
    }


def _run_info(args) -> int:
    infos = [vector_info(path) for path in args.files]
    if args.json:
        _print_json(infos)
        return 0
    for number, info in enumerate(infos):
        if number:
            print()
        print(info["repr"])
        for key in ("file", "shape", "tasks", "norm", "base_model", "task_type", "origin", "merge"):
            value = info[key]
            if key == "norm":
                value = f"{value:.4f}"
            elif key == "shape":
                value = f"{value[0]}×{value[1]} ({info['num_virtual_tokens']} virtual tokens × "
                value += f"{info['num_transformer_submodules']} submodule(s), token_dim {info['token_dim']})"
            print(f"  {key:10s} {value if value not in (None, {}) else '-'}")
    return 0


def _run_combine(args) -> int:
    from tpv.compose.merge import merge

    items = _vector_specs(args.files)
    labels = [label for label, _, _ in items]
    # Names key the merge record saved in the file; positions stand in when two files share a name.
    names = labels if len(set(labels)) == len(labels) else [f"{i}:{label}" for i, label in enumerate(labels)]
    options = {
        k: v
        for k, v in (
            ("density", args.density),
            ("seed", args.seed),
            ("majority_sign_method", args.majority_sign_method),
        )
        if v is not None
    }
    vectors = {name: vector for name, (_, vector, _) in zip(names, items)}
    weights = {name: weight for name, (_, _, weight) in zip(names, items)}
    result = merge(vectors, method=args.method, weights=weights, **options)
    path = result.save(args.output)
    print(f"wrote {path}  {result!r}  norm {result.norm():.4f}")
    return 0


def _run_similarity(args) -> int:
    from tpv.core.similarity import similarity_matrix

    items = _vector_specs([_no_weight(spec) for spec in args.files])
    labels = [label for label, _, _ in items]
    if len(set(labels)) != len(labels):
        labels = [Path(spec).name.removesuffix(".tpv.safetensors") for spec in args.files]
    if len(set(labels)) != len(labels):
        labels = [f"{i}:{label}" for i, label in enumerate(labels)]
    names, matrix = similarity_matrix({label: vector for label, (_, vector, _) in zip(labels, items)}, args.pooling)
    if args.plot:
        from tpv.experiments.plots import plot_similarity

        plot_similarity(names, matrix, args.plot, title=f"cosine similarity ({args.pooling} pooling)")
    if args.json:
        _print_json({"names": names, "matrix": matrix.tolist(), "pooling": args.pooling, "plot": args.plot})
        return 0
    width = max(8, *(len(name) for name in names))
    print(" " * width + "".join(f" {name:>{width}s}" for name in names))
    for name, row in zip(names, matrix.tolist()):
        print(f"{name:{width}s}" + "".join(f" {value:>{width}.3f}" for value in row))
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _no_weight(spec: str) -> str:
    path, weight = _split_weight(spec)
    if weight != 1.0 or path != spec:
        raise TPVError(f"similarity takes plain files, got {spec!r}; cosine similarity ignores weights, drop ':'")
    return path


# ---- tpv init ---------------------------------------------------------------------------------------------


def _add_init(commands) -> None:
    parser = commands.add_parser(
        "init",
        help="write a ready-to-train PEFT adapter folder from vectors and an origin (--auto: chosen for you)",
        formatter_class=_formatter,
        description="Write PEFT's adapter_config.json + adapter_model.safetensors (and tpv_origin.safetensors) "
        "whose soft prompt is origin + scale·Σ weight·vector (paper eq. 3). Train it with any loop after "
        "peft_model = get_peft_model(model, PeftConfig.from_pretrained(DIR)) and "
        "set_peft_model_state_dict(peft_model, load_peft_weights(DIR)) (PEFT loads saved prompts "
        "frozen), or score it with tpv eval --adapter DIR.",
        epilog=_examples(
            "tpv init sst2.tpv.safetensors yelp_polarity.tpv.safetensors --origin-seed 7 -o runs/imdb-init",
            "tpv init combo.tpv.safetensors --origin my.origin.safetensors --scale 0.5 -o runs/x",
            "tpv init --auto --task imdb --sources zoo --exclude imdb --output-dir runs/imdb-auto",
            "tpv init --auto --task rte --sources runs/ --limit 64 --json --output-dir runs/rte-auto",
            "tpv init --auto --data my_reviews/ --text-field review --label-field stars -o runs/mine-init",
        )
        + "\n\n--auto scores every source (origin + vector, zero shots) on the task's validation examples, tries\n"
        "the sum of the best k (1..--max-k) at each λ of --grid on the same examples (never on test), and writes\n"
        "the best start, or the random origin itself when no combination beats it. tpv_auto_init.json in the\n"
        "output folder records the ranked table.",
    )
    parser.add_argument("vectors", nargs="*", metavar="FILE[:WEIGHT]", help="vectors to add (none: the origin alone)")
    parser.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="the adapter folder to write")
    parser.add_argument("--scale", type=float, default=1.0, help="λ (default: %(default)s)")
    parser.add_argument(
        "--virtual-tokens", type=int, default=None, help="soft-prompt length when no vector gives it (default: 20)"
    )
    auto = parser.add_argument_group("automatic initialisation (--auto)")
    auto.add_argument("--auto", action="store_true", help="choose the sources and λ on validation data")
    auto.add_argument("--task", default=None, help="the target task (a registered name, or a name for --data)")
    auto.add_argument(
        "--sources",
        nargs="+",
        default=["zoo"],
        metavar="zoo|DIR|FILE",
        help="candidate vectors: 'zoo' (shipped with tpv), a folder of *.tpv.safetensors, vector "
        "files or PEFT adapter folders (default: zoo)",
    )
    auto.add_argument("--exclude", nargs="+", default=(), metavar="NAME", help="sources to leave out")
    auto.add_argument("--k", type=int, default=None, help="sum exactly the best K sources (default: chosen)")
    auto.add_argument("--max-k", type=int, default=3, help="largest k tried (default: %(default)s)")
    auto.add_argument("--grid", default=None, metavar="L1,L2,...", help="λ values tried (default: 0.25,0.5,0.75,1)")
    auto.add_argument(
        "--limit", type=int, default=200, metavar="N", help="validation examples scored (default: %(default)s)"
    )
    auto.add_argument(
        "--merge-method",
        default="sum",
        metavar="METHOD",
        help="how the best k are combined: sum (the paper's), ties, dare_ties, … (default: sum)",
    )
    auto.add_argument(
        "--max-length",
        type=int,
        default=None,
        metavar="N",
        help="tokens kept per input while scoring (default: 256); fewer make long texts cheaper",
    )
    auto.add_argument("--json", action="store_true", help="print the plan as JSON")
    _origin_options(parser)
    _model_options(parser)
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding <task>/<split>.jsonl (default: $TPV_DATA_DIR, else the Hugging Face Hub)",
    )
    _user_data_options(parser)
    parser.set_defaults(run=_run_init)


def _run_init(args) -> int:
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise TPVError(f"-o {args.output_dir!r} is a file; pass a folder for the adapter (it is created if missing)")
    if args.auto:
        return _run_auto_init(args)
    if args.task or args.data:
        raise TPVError("--task and --data choose sources automatically; add --auto (or drop them)")
    from tpv.bridge.peft_io import init_prompt_tuning

    combo = _combination(args.vectors) if args.vectors else None
    tokens = combo.num_virtual_tokens if combo is not None else (args.virtual_tokens or 20)
    if combo is not None and args.virtual_tokens not in (None, tokens):
        raise TPVError(f"--virtual-tokens {args.virtual_tokens} but the vectors have {tokens}; drop --virtual-tokens")
    model, _ = _load_model(args)
    origin = _make_origin(args, model, tokens)
    peft_model = init_prompt_tuning(model, combo, origin=origin, scale=args.scale)
    peft_model.save_pretrained(args.output_dir)
    what = f"{origin!r}" + (f" + {args.scale:g}·({combo.name})" if combo is not None else "")
    print(f"wrote {args.output_dir}: a PEFT prompt-tuning adapter starting at {what}")
    return 0


def _run_auto_init(args) -> int:
    from tpv.compose.auto_init import DEFAULT_GRID, auto_init, load_sources

    if args.vectors:
        raise TPVError(f"--auto chooses the vectors itself; pass them as --sources {' '.join(args.vectors)}")
    if args.origin:
        raise TPVError("--auto builds on a seeded origin; use --origin-seed N instead of --origin")
    task = _require_task(args, _user_task(args, args.task))
    from tpv.data import get_task

    get_task(task)  # an unknown task fails before anything loads
    sources = "zoo" if args.sources == ["zoo"] else args.sources[0] if len(args.sources) == 1 else args.sources
    if "zoo" in args.sources and sources != "zoo":
        raise TPVError("--sources zoo cannot be mixed with files; give zoo alone, or files and folders")
    load_sources(sources, exclude=args.exclude, target=task)  # bad sources fail before the model loads
    grid = _grid(args.grid) if args.grid else DEFAULT_GRID
    model, tokenizer = _load_model(args)
    plan = auto_init(
        model,
        tokenizer,
        task,
        sources,
        exclude=args.exclude,
        k=args.k,
        max_k=args.max_k,
        grid=grid,
        origin=args.origin_seed,
        max_validation=args.limit,
        max_length=args.max_length,
        merge_method=args.merge_method,
        data_dir=args.data_dir,
        progress=True,
    )
    plan.save_pretrained(args.output_dir)
    if args.json:
        _print_json({**plan.to_dict(), "output_dir": args.output_dir})
        return 0
    print(plan)
    print(f"wrote {args.output_dir}: a ready-to-train PEFT adapter and the table (tpv_auto_init.json)")
    if plan.chosen and sources == "zoo":
        from tpv.compose.zoo import ZOO_DIR

        files = " ".join(str(ZOO_DIR / f"{name}.tpv.safetensors") for name in plan.chosen)
        print(
            f"train from this start:  tpv train {task} --init {files} --scale {plan.scale:g} "
            f"--origin-seed {args.origin_seed or 0} --output-dir runs/{task}"
        )
    return 0


# ---- tpv eval ---------------------------------------------------------------------------------------------


def _add_eval(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="score an adapter, or vectors applied to an origin, on a task",
        formatter_class=_formatter,
        description="Evaluate a saved PEFT prompt-tuning adapter (--adapter) or origin + scale·Σ vectors on "
        "a task split; prints the task's metric and accuracy.",
        epilog=_examples(
            "tpv eval --adapter runs/sst2 --task sst2 --split test",
            "tpv eval --vector sst2.tpv.safetensors yelp_polarity.tpv.safetensors --origin-seed 1 "
            "--task imdb --limit 200 --json",
            "tpv eval --adapter runs/mine --data my_reviews/ --text-field review --label-field stars",
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--adapter", metavar="DIR", help="a folder written by save_pretrained (PEFT prompt tuning)")
    source.add_argument("--vector", nargs="+", metavar="FILE[:WEIGHT]", help="vectors summed and applied to the origin")
    parser.add_argument(
        "--task",
        default=None,
        help="the registered task to score on, e.g. sst2 (see docs/tasks.md), or a name for --data",
    )
    parser.add_argument("--split", default="test", help="data split (default: %(default)s)")
    parser.add_argument(
        "--method",
        choices=("rank", "generate"),
        default="rank",
        help="rank label words (fast) or generate and parse (the paper's) (default: %(default)s)",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="score the first N examples")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="examples scored per forward pass; lower it if memory runs out (default: %(default)s)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        metavar="N",
        help="tokens kept per example; longer inputs are truncated (default: 256)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="λ for --vector (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    _origin_options(parser)
    _model_options(parser)
    _data_options(parser)
    parser.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    from tpv.engine.evaluation import evaluate, format_scores

    if args.max_length is not None and args.max_length < 1:
        raise TPVError(f"--max-length must be a positive number of tokens, got {args.max_length}")
    _check_batch_size(args.batch_size)
    args.task = _require_task(args, _user_task(args, args.task))
    data = _examples_of(args.task, args.split, args.limit, args.data_dir)
    combo = _combination(args.vector) if args.vector else None
    if args.adapter and not Path(args.adapter, "adapter_config.json").is_file():
        raise TPVError(f"'{args.adapter}' has no adapter_config.json; pass the folder given to save_pretrained")
    if args.adapter:
        from tpv.bridge.peft_io import read_adapter_config

        read_adapter_config(args.adapter)  # a LoRA or broken folder fails here, before the model loads
    model, tokenizer = _load_model(args)
    if args.adapter:
        from tpv.bridge.peft_io import load_prompt_adapter

        peft_model = load_prompt_adapter(model, args.adapter)
        source = args.adapter
    else:
        from tpv.bridge.peft_io import init_prompt_tuning

        assert combo is not None  # --adapter or --vector is required
        origin = _make_origin(args, model, combo.num_virtual_tokens)
        peft_model = init_prompt_tuning(model, combo, origin=origin, scale=args.scale)
        source = f"{origin!r} + {args.scale:g}·({combo.name})"
    lengths = {"max_length": args.max_length} if args.max_length else {}
    result = evaluate(
        peft_model, tokenizer, args.task, data, method=args.method, batch_size=args.batch_size, progress=True, **lengths
    )
    result = {"task": args.task, "split": args.split, "source": source, **result}
    if args.json:
        _print_json(result)
        return 0
    metric = _task_metric(args.task)
    print(f"{args.task} {args.split}: {format_scores(result, metric)}  [{source}]")
    return 0


def _require_task(args, task: str | None) -> str:
    if not task:
        raise TPVError(
            "no task: name a registered task (e.g. sst2, see docs/tasks.md) or pass --data DIR with your own examples"
        )
    return task


def _check_batch_size(batch_size: int) -> None:
    # Checked before the model loads, so the mistake costs no waiting.
    if batch_size < 1:
        raise TPVError(f"--batch-size must be ≥ 1, got {batch_size}")


def _task_metric(task: str) -> str:
    from tpv.data import get_task

    return get_task(task).metric


# ---- tpv search -------------------------------------------------------------------------------------------


def _add_search(commands) -> None:
    parser = commands.add_parser(
        "search",
        help="pick λ for a combination on validation data",
        formatter_class=_formatter,
        description="Try origin + λ·Σ vectors for every λ of a grid on the validation split of each task and "
        "report the best λ (paper §3.4). Test data is never read.",
        epilog=_examples(
            "tpv search sst2.tpv.safetensors yelp_polarity.tpv.safetensors --origin-seed 1 --limit 100",
            "tpv search combo.tpv.safetensors --task sst2 --grid 0,0.25,0.5,0.75,1 --json",
            "tpv search sst2.tpv.safetensors --data my_reviews/ --text-field review --label-field stars",
        ),
    )
    parser.add_argument(
        "vectors", nargs="+", metavar="FILE[:WEIGHT]", help="vectors whose weighted sum is scaled by each λ"
    )
    parser.add_argument(
        "--task",
        action="append",
        default=None,
        help="task to score (repeatable; default: the tasks the vectors express)",
    )
    parser.add_argument(
        "--grid", default=None, metavar="L1,L2,...", help="λ values, comma-separated (default: 0, 0.05, …, 1)"
    )
    parser.add_argument(
        "--aggregate",
        choices=("mean", "min"),
        default="mean",
        help="how the tasks' scores combine into one per λ (default: %(default)s)",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="validation examples per task")
    parser.add_argument(
        "--method",
        choices=("rank", "generate"),
        default="rank",
        help="rank label words (fast) or generate and parse (the paper's) (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="examples scored per forward pass (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print the result and the whole curve as JSON")
    _origin_options(parser)
    _model_options(parser)
    _data_options(parser)
    parser.set_defaults(run=_run_search)


def _run_search(args) -> int:
    from tpv.bridge.peft_io import init_prompt_tuning
    from tpv.compose.search import evaluation_score_fn, search_scale

    _check_batch_size(args.batch_size)
    combo = _combination(args.vectors)
    if args.data:
        if args.task and len(args.task) > 1:
            raise TPVError(f"--data gives one task, but --task was given {len(args.task)} times; give it once")
        args.task = [_user_task(args, args.task[0] if args.task else None)]
    tasks = args.task or [task for task, coef in combo.tasks.items() if coef > 0]
    if not tasks:
        raise TPVError(
            f"the vectors express no task with a positive coefficient ({combo.name}), so there is "
            "nothing to score by default; name the tasks to score with --task TASK"
        )
    grid = _grid(args.grid) if args.grid else None
    data = {task: _examples_of(task, "validation", args.limit, args.data_dir) for task in tasks}
    model, tokenizer = _load_model(args)
    origin = _make_origin(args, model, combo.num_virtual_tokens)
    peft_model = init_prompt_tuning(model, origin=origin)
    score_fn = evaluation_score_fn(
        peft_model,
        tokenizer,
        data,
        method=args.method,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        progress=True,
    )
    result = search_scale(combo, origin, score_fn, grid=grid, aggregate=args.aggregate, progress=True)
    if args.json:
        _print_json(
            {
                "best_scale": result.best_scale,
                "best_score": result.best_score,
                "aggregate": args.aggregate,
                "tasks": tasks,
                "vector": combo.name,
                "curve": [{"scale": s, "score": a, "scores": per} for s, a, per in result.curve],
            }
        )
        return 0
    print(f"{'λ':>6s} {args.aggregate:>8s} " + " ".join(f"{task:>10s}" for task in tasks))
    for scale, score, per_task in result.curve:
        print(f"{scale:6.2f} {score:8.4f} " + " ".join(f"{per_task[t]:10.4f}" for t in tasks))
    print(f"best λ = {result.best_scale:g} ({args.aggregate} validation score {result.best_score:.4f})")
    return 0


def _grid(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TPVError(f"bad --grid {text!r}; write comma-separated numbers, e.g. 0,0.25,0.5,0.75,1") from None


# ---- tpv reproduce ----------------------------------------------------------------------------------------


def _add_reproduce(commands) -> None:
    parser = commands.add_parser(
        "reproduce",
        help="run the paper's studies (tpv.experiments)",
        formatter_class=_formatter,
        description="Run the paper's studies with a profile: smoke (minutes, checks the pipeline), cpu (hours "
        "on a laptop), gpu (the paper's scale), their paper-smoke/paper-cpu/paper-gpu twins that follow "
        "the paper's official code (docs/protocol.md), or a path to a profile file. Runs are cached in "
        "--run-dir, so a rerun resumes.",
        epilog=_examples(
            "tpv reproduce smoke --dry-run",
            "tpv reproduce paper-cpu --dry-run",
            "tpv reproduce cpu --study origin_independence",
            "tpv reproduce gpu --run-dir /scratch/tpv-runs",
        ),
    )
    profiles = "smoke|cpu|gpu|paper-smoke|paper-cpu|paper-gpu|PATH"
    parser.add_argument("profile", nargs="?", default=None, metavar="PROFILE", help=f"{profiles} (default: smoke)")
    parser.add_argument(
        "--profile",
        dest="profile_option",
        default=None,
        metavar=profiles,
        help="the same as PROFILE, for scripts written before PROFILE was positional",
    )
    parser.add_argument(
        "--study",
        "--studies",
        dest="study",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this study (repeatable)",
    )
    parser.add_argument("--run-dir", default=None, metavar="DIR", help="where runs and results go")
    parser.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=_run_reproduce)


def _run_reproduce(args) -> int:
    try:
        from tpv.experiments import reproduce
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if isinstance(error, ModuleNotFoundError) and missing and not missing.startswith("tpv"):
            raise TPVError(
                f"tpv reproduce needs the package {missing!r}; install it with pip install 'tpv[all]'"
            ) from None
        # Also the case while tpv.experiments is only a half-built folder without reproduce().
        raise TPVError(
            f"tpv reproduce needs tpv.experiments.reproduce, which this installation of tpv does not "
            f"provide ({error}); update tpv (pip install -U tpv, or git pull in a clone)"
        ) from None
    if args.profile and args.profile_option and args.profile != args.profile_option:
        raise TPVError(
            f"tpv reproduce got two profiles, {args.profile!r} and --profile {args.profile_option!r}; "
            "give one, e.g. tpv reproduce smoke"
        )
    profile = args.profile or args.profile_option or "smoke"
    result = reproduce(profile, studies=args.study, run_dir=args.run_dir, dry_run=args.dry_run, progress=not args.quiet)
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

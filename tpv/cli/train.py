"""``tpv train``: prompt-tune one task from an origin (optionally moved by vectors) and write its vector."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tpv.cli import common, inputs
from tpv.core.errors import TPVError


def add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="prompt-tune one task and write its vector",
        formatter_class=common.formatter,
        description="Prompt-tune TASK from a seeded random origin (optionally moved by --init vectors) with "
        "transformers.Trainer. The run folder holds the PEFT adapter, its origin, the vector "
        "<task>.tpv.safetensors and tpv_train.json; rerunning the same command reuses a finished run "
        "and resumes a killed one. A folder holding a run with other settings is refused unless "
        "--overwrite; one folder takes one run at a time.",
        epilog=common.examples_epilog(
            "tpv train sst2 --output-dir runs/sst2",
            "tpv train imdb --init runs/sst2/sst2.tpv.safetensors runs/yelp/yelp_polarity.tpv.safetensors "
            "--scale 0.8 --origin-seed 7 --output-dir runs/imdb",
            "tpv train --data my_reviews/ --text-field review --label-field stars --output-dir runs/mine",
            "tpv train my_imdb --dataset stanfordnlp/imdb --device cuda --output-dir runs/my_imdb",
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
    inputs.model_options(parser)
    inputs.data_options(parser)
    parser.set_defaults(run=_run_train)


# TrainingArguments fields that tpv train sets from its own options; --training-arg names the option instead.
_TRAIN_OPTIONS_OF_FIELDS = {
    "output_dir": "--output-dir",
    "max_steps": "--steps",
    "learning_rate": "--lr",
    "per_device_train_batch_size": "--batch-size",
}


def _run_train(args) -> int:
    from tpv.engine.training import train_prompt

    with common.checking_arguments():
        checked = _checked_inputs(args)
    model, tokenizer = inputs.model_from_args(args)
    result = train_prompt(
        model,
        tokenizer,
        args.task,
        checked.train_data,
        origin=args.origin_seed,
        output_dir=args.output_dir,
        eval_dataset=checked.eval_data,
        max_steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        num_virtual_tokens=args.virtual_tokens,
        init_vector=checked.init,
        init_scale=args.scale,
        eval_method=args.eval_method,
        log_records=args.verbose,
        overwrite=args.overwrite,
        args=checked.training_args or None,
    )
    _report(result, args.task)
    return 0


@dataclass
class _Inputs:
    train_data: list[dict]
    eval_data: list[dict] | None
    init: list | None
    training_args: dict


def _checked_inputs(args) -> _Inputs:
    from tpv.engine.training import check_training_inputs, parse_training_args

    common.check_positive(args.virtual_tokens, "--virtual-tokens", "a number of soft-prompt tokens such as 20")
    common.check_finite(args.scale, "--scale")
    inputs.check_model_options(args)
    _check_output_dir(args.output_dir)
    args.task = inputs.require_task(args, inputs.user_task(args, args.task))
    train_data = inputs.examples_of(args.task, "train", args.limit, args.data_dir)
    try:
        check_training_inputs(args.task, train_data, args.steps, args.batch_size, learning_rate=args.lr)
    except TPVError as error:  # the library names its arguments; the user typed options
        message = str(error)
        for name, option in (("max_steps", "--steps"), ("batch_size", "--batch-size"), ("learning_rate", "--lr")):
            message = message.replace(f"{name}={1}", f"{option} 1").replace(name, option)
        raise TPVError(message) from None
    if args.eval_limit is not None and args.eval_limit < 0:
        raise TPVError(f"--eval-limit must be ≥ 0 (0 turns validation off), got {args.eval_limit}")
    training_args = parse_training_args(args.training_arg or [], owned=_TRAIN_OPTIONS_OF_FIELDS)
    eval_data = (
        inputs.examples_of(args.task, "validation", args.eval_limit, args.data_dir, "--eval-limit")
        if args.eval_limit
        else None
    )
    init = None
    if args.init:
        init = [(vector, weight) for _, vector, weight in inputs.vector_specs(args.init, **inputs.hub(args))]
    return _Inputs(train_data, eval_data, init, training_args)


def _check_output_dir(output_dir: str) -> None:
    existing = next(folder for folder in (Path(output_dir), *Path(output_dir).absolute().parents) if folder.exists())
    if not existing.is_dir():
        where = "it is a file" if existing == Path(output_dir) else f"a file is in the way at '{existing}'"
        raise TPVError(f"--output-dir '{output_dir}': {where}; pass a folder for the run (created if missing)")


def _report(result, task: str) -> None:
    from tpv.engine.evaluation import format_scores

    scores = {k: v for k, v in result.metrics.items() if k.startswith("eval_")}
    print(f"vector  {result.vector_path}  {result.vector!r}")
    print(f"adapter {result.adapter_dir}")
    if scores:
        print("scores  " + format_scores(scores, inputs.task_metric(task)))

"""``tpv eval``: score an adapter, or vectors applied to an origin, on a task split."""

from __future__ import annotations

from tpv.cli import common, inputs
from tpv.core.errors import TPVError


def add_eval(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="score an adapter, or vectors applied to an origin, on a task",
        formatter_class=common.formatter,
        description="Evaluate a saved PEFT prompt-tuning adapter (--adapter) or origin + scale·Σ vectors on "
        "a task split; prints the task's metric and accuracy.",
        epilog=common.examples_epilog(
            "tpv eval --adapter runs/sst2 --task sst2 --split test",
            "tpv eval --vector sst2.tpv.safetensors yelp_polarity.tpv.safetensors --origin-seed 1 "
            "--task imdb --limit 200 --json",
            "tpv eval --adapter runs/mine --data my_reviews/ --text-field review --label-field stars",
            "tpv eval --vector you/sst2-tpv --revision v1 --task sst2 --model HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--adapter", metavar="DIR", help="a folder written by save_pretrained (PEFT prompt tuning), or a Hub repo id"
    )
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
    inputs.origin_options(parser)
    inputs.model_options(parser)
    inputs.data_options(parser)
    parser.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    from tpv.engine.evaluation import evaluate, format_scores

    with common.checking_arguments():
        data, combo, origin, adapter = _checked_inputs(args)
    model, tokenizer = inputs.model_from_args(args)
    if adapter is not None:
        from tpv.bridge.peft_io import load_prompt_adapter

        peft_model = load_prompt_adapter(model, adapter)
        source = args.adapter
    else:
        from tpv.bridge.peft_io import init_prompt_tuning

        assert combo is not None  # --adapter or --vector is required
        origin = origin or inputs.make_origin(args, model, combo.num_virtual_tokens)
        peft_model = init_prompt_tuning(model, combo, origin=origin, scale=args.scale)
        source = f"{origin!r} + {args.scale:g}·({combo.name})"
    lengths = {"max_length": args.max_length} if args.max_length else {}
    result = evaluate(
        peft_model, tokenizer, args.task, data, method=args.method, batch_size=args.batch_size, progress=True, **lengths
    )
    result = {"task": args.task, "split": args.split, "source": source, **result}
    if args.json:
        common.print_json(result)
        return 0
    metric = inputs.task_metric(args.task)
    print(f"{args.task} {args.split}: {format_scores(result, metric)}  [{source}]")
    return 0


def _checked_inputs(args):
    if args.max_length is not None and args.max_length < 1:
        raise TPVError(f"--max-length must be a positive number of tokens, got {args.max_length}")
    common.check_batch_size(args.batch_size)
    common.check_finite(args.scale, "--scale")
    inputs.check_model_options(args)
    args.task = inputs.require_task(args, inputs.user_task(args, args.task))
    data = inputs.examples_of(args.task, args.split, args.limit, args.data_dir)
    combo = inputs.combination(args.vector, **inputs.hub(args)) if args.vector else None
    adapter = inputs.local_or_hub(args.adapter, "the adapter", **inputs.hub(args)) if args.adapter else None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise TPVError(f"'{args.adapter}' has no adapter_config.json; pass the folder given to save_pretrained")
    if adapter is not None:
        from tpv.bridge.peft_io import read_adapter_config

        read_adapter_config(adapter)  # a LoRA or broken folder fails here, before the model loads
    return data, combo, inputs.read_origin(args), adapter

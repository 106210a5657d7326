"""``tpv search``: pick λ for a combination of vectors on validation data (paper §3.4)."""

from __future__ import annotations

from tpv.cli import common, inputs
from tpv.core.errors import TPVError


def add_search(commands) -> None:
    parser = commands.add_parser(
        "search",
        help="pick λ for a combination on validation data",
        formatter_class=common.formatter,
        description="Try origin + λ·Σ vectors for every λ of a grid on the validation split of each task and "
        "report the best λ (paper §3.4). Test data is never read.",
        epilog=common.examples_epilog(
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
    inputs.origin_options(parser)
    inputs.model_options(parser)
    inputs.data_options(parser)
    parser.set_defaults(run=_run_search)


def _run_search(args) -> int:
    from tpv.bridge.peft_io import init_prompt_tuning
    from tpv.compose.search import evaluation_score_fn, search_scale

    with common.checking_arguments():
        combo, tasks, grid, data, origin = _checked_inputs(args)
    model, tokenizer = inputs.model_from_args(args)
    origin = origin or inputs.make_origin(args, model, combo.num_virtual_tokens)
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
        common.print_json(
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


def _checked_inputs(args):
    common.check_batch_size(args.batch_size)
    inputs.check_model_options(args)
    combo = inputs.combination(args.vectors, **inputs.hub(args))
    if args.data or args.dataset:
        option = "--data" if args.data else "--dataset"
        if args.task and len(args.task) > 1:
            raise TPVError(f"{option} gives one task, but --task was given {len(args.task)} times; give it once")
        args.task = [inputs.user_task(args, args.task[0] if args.task else None)]
    tasks = args.task or [task for task, coef in combo.tasks.items() if coef > 0]
    if not tasks:
        raise TPVError(
            f"the vectors express no task with a positive coefficient ({combo.name}), so there is "
            "nothing to score by default; name the tasks to score with --task TASK"
        )
    grid = common.parse_grid(args.grid) if args.grid else None
    data = {task: inputs.examples_of(task, "validation", args.limit, args.data_dir) for task in tasks}
    return combo, tasks, grid, data, inputs.read_origin(args)

"""``tpv zoo build|list``: build a vector zoo for any model (:func:`tpv.build_zoo`), list a zoo's vectors."""

from __future__ import annotations

from pathlib import Path

from tpv.cli import common, inputs
from tpv.core.errors import TPVError


def add_zoo(commands) -> None:
    zoo = commands.add_parser(
        "zoo",
        help="build a vector zoo for your model, or list a zoo's vectors",
        formatter_class=common.formatter,
        description="A zoo is a folder of task prompt vectors tuned from one origin, with a manifest of how each "
        "was built and how it scores; tpv init --auto --sources FOLDER (auto_init(sources=FOLDER)) starts new "
        "tasks from it.",
        epilog=common.examples_epilog(
            "tpv zoo list",
            "tpv zoo build --model HuggingFaceTB/SmolLM2-360M-Instruct --tasks sst2 imdb rte --output-dir zoo-360m",
            "tpv zoo build --model my/model --tasks sst2 imdb --output-dir my-zoo --dry-run",
            "tpv init --auto --task yelp_polarity --sources my-zoo --model my/model --output-dir runs/yelp",
        ),
    )
    sub = zoo.add_subparsers(title="zoo commands", metavar="COMMAND", required=True, parser_class=common.Parser)
    _add_build(sub)
    _add_list(sub)


def _add_build(sub) -> None:
    build = sub.add_parser(
        "build",
        help="tune one vector per task on a model and write them with a manifest",
        formatter_class=common.formatter,
        description="Tune one prompt per task from one recorded origin (the paper's origin 0), keep the best "
        "checkpoint on the first validation examples, score it against the origin on the next ones and on test, "
        "and mark vectors that never left chance. Budgets per task are the learnability study's "
        "(tpv.compose.zoo.build.budget_for) unless --steps/--lr/--batch-size set them. The manifest is "
        "rewritten after each task: a rerun keeps the tasks built with the same settings.",
        epilog=common.examples_epilog(
            "tpv zoo build --model HuggingFaceTB/SmolLM2-360M-Instruct --tasks sst2 imdb --output-dir zoo-360m",
            "tpv zoo build --tasks sst2 --steps 50 --output-dir my-zoo --device cuda",
        ),
    )
    build.add_argument("--tasks", nargs="+", required=True, metavar="TASK", help="registered task names to build")
    build.add_argument("--output-dir", required=True, metavar="DIR", help="the zoo folder (resumable)")
    build.add_argument("--virtual-tokens", type=int, default=20, help="prompt length of every vector (default: 20)")
    build.add_argument("--steps", type=int, default=None, help="optimizer steps for every task (default: per task)")
    build.add_argument("--lr", type=float, default=None, help="learning rate for every task (default: per task)")
    build.add_argument("--batch-size", type=int, default=None, help="batch size for every task (default: per task)")
    build.add_argument(
        "--selection-examples",
        type=int,
        default=100,
        metavar="N",
        help="validation examples that choose the best checkpoint (default: %(default)s)",
    )
    build.add_argument(
        "--held-examples",
        type=int,
        default=300,
        metavar="N",
        help="the validation examples after those, that score the vector and test it against chance "
        "(default: %(default)s)",
    )
    build.add_argument(
        "--test-examples", type=int, default=200, metavar="N", help="test examples scored, 0: none (default: 200)"
    )
    build.add_argument(
        "--eval-every", type=int, default=50, metavar="N", help="steps between selection scores (default: 50)"
    )
    build.add_argument("--seed", type=int, default=0, help="seed of the data order (default: %(default)s)")
    build.add_argument("--dry-run", action="store_true", help="print the tasks and their budgets, train nothing")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    inputs.model_options(build)
    build.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding <task>/<split>.jsonl (default: $TPV_DATA_DIR, else the Hugging Face Hub)",
    )
    build.set_defaults(run=_run_build)


def _add_list(sub) -> None:
    listing = sub.add_parser(
        "list",
        help="print a zoo's vectors and scores",
        formatter_class=common.formatter,
        description="Print the manifest table of tpv's own zoo (the default model's) or of a zoo folder.",
        epilog=common.examples_epilog("tpv zoo list", "tpv zoo list my-zoo --json"),
    )
    listing.add_argument("folder", nargs="?", default=None, metavar="FOLDER", help="a zoo folder (default: tpv's own)")
    listing.add_argument("--json", action="store_true", help="print the manifest as JSON")
    listing.set_defaults(run=_run_list)


def _run_build(args) -> int:
    from tpv.compose.zoo.build import build_zoo

    with common.checking_arguments():
        budgets = _checked_budgets(args)
    if args.dry_run:
        for task, budget in budgets.items():
            print(f"{task:15s} {budget.steps:4d} steps × batch {budget.batch_size}, lr {budget.learning_rate:g}")
        return 0
    model, tokenizer = inputs.model_from_args(args)
    manifest = build_zoo(
        model,
        list(budgets),
        args.output_dir,
        tokenizer=tokenizer,
        budgets=budgets,
        num_virtual_tokens=args.virtual_tokens,
        data_dir=args.data_dir,
        selection_examples=args.selection_examples,
        held_examples=args.held_examples,
        test_examples=args.test_examples,
        eval_every=args.eval_every,
        seed=args.seed,
        progress=not args.quiet,
    )
    at_chance = sorted(name for name, entry in manifest["tasks"].items() if entry.get("at_chance"))
    print(f"wrote {args.output_dir}: {len(manifest['tasks'])} vectors of {manifest.get('base_model') or 'the model'}")
    if at_chance:
        print(f"at chance (left out by auto_init unless --include-at-chance): {' '.join(at_chance)}")
    print(f"start a task from it:  tpv init --auto --task TASK --sources {args.output_dir} --output-dir runs/TASK")
    return 0


def _checked_budgets(args) -> dict:
    from dataclasses import replace

    from tpv.compose.zoo.build import budget_for
    from tpv.data import get_task

    for value, option in (
        (args.virtual_tokens, "--virtual-tokens"),
        (args.steps, "--steps"),
        (args.batch_size, "--batch-size"),
        (args.selection_examples, "--selection-examples"),
        (args.held_examples, "--held-examples"),
        (args.eval_every, "--eval-every"),
    ):
        common.check_positive(value, option, "a whole number")
    if args.test_examples < 0:
        raise TPVError(f"--test-examples must be ≥ 0 (0 scores no test examples), got {args.test_examples}")
    if args.lr is not None and not args.lr > 0:
        raise TPVError(f"--lr must be a positive number such as 0.3, got {args.lr}")
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise TPVError(f"--output-dir '{args.output_dir}' is a file; pass a folder for the zoo")
    inputs.check_model_options(args)
    budgets = {}
    for task in dict.fromkeys(args.tasks):  # a task named twice is built once
        get_task(task)  # an unknown task fails here, with the registered names
        overrides = {"steps": args.steps, "learning_rate": args.lr, "batch_size": args.batch_size}
        budgets[task] = replace(
            budget_for(task, args.virtual_tokens), **{key: value for key, value in overrides.items() if value}
        )
    return budgets


def _run_list(args) -> int:
    from tpv.compose.zoo import ZOO_DIR, ZooTable, read_manifest

    with common.checking_arguments():
        manifest = read_manifest(args.folder or ZOO_DIR)
    if args.json:
        common.print_json(manifest)
        return 0
    print(f"{args.folder or 'tpv zoo'}: base model {manifest.get('base_model', '?')}")
    print(ZooTable({"task": name, **entry} for name, entry in sorted(manifest["tasks"].items())))
    return 0

"""``tpv init``: write a ready-to-train PEFT adapter from vectors and an origin; ``--auto`` chooses them."""

from __future__ import annotations

from pathlib import Path

from tpv.cli import common, inputs
from tpv.core.errors import TPVError


def add_init(commands) -> None:
    parser = commands.add_parser(
        "init",
        help="write a ready-to-train PEFT adapter folder from vectors and an origin (--auto: chosen for you)",
        formatter_class=common.formatter,
        description="Write PEFT's adapter_config.json + adapter_model.safetensors (and tpv_origin.safetensors) "
        "whose soft prompt is origin + scale·Σ weight·vector (paper eq. 3). Train it with any loop after "
        "peft_model = get_peft_model(model, PeftConfig.from_pretrained(DIR)) and "
        "set_peft_model_state_dict(peft_model, load_peft_weights(DIR)) (PEFT loads saved prompts "
        "frozen), or score it with tpv eval --adapter DIR.",
        epilog=common.examples_epilog(
            "tpv init sst2.tpv.safetensors yelp_polarity.tpv.safetensors --origin-seed 7 -o runs/imdb-init",
            "tpv init combo.tpv.safetensors --origin my.origin.safetensors --scale 0.5 -o runs/x",
            "tpv init --auto --task imdb --sources zoo --exclude imdb --output-dir runs/imdb-auto",
            "tpv init --auto --task rte --sources runs/ --limit 64 --json --output-dir runs/rte-auto",
            "tpv init --auto --task my_imdb --sources you/zoo --dataset stanfordnlp/imdb --output-dir runs/my_imdb",
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
    auto.add_argument(
        "--probe-steps",
        type=int,
        default=0,
        metavar="N",
        help="tune the origin and the best starts N steps on training examples and choose by the scores after "
        "them, not the zero-shot ones (default: 0, zero-shot)",
    )
    auto.add_argument(
        "--include-at-chance",
        action="store_true",
        help="also try zoo vectors whose own prompt never left chance (left out by default)",
    )
    auto.add_argument("--json", action="store_true", help="print the plan as JSON")
    inputs.origin_options(parser)
    inputs.model_options(parser)
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding <task>/<split>.jsonl (default: $TPV_DATA_DIR, else the Hugging Face Hub)",
    )
    inputs.user_data_options(parser)
    parser.set_defaults(run=_run_init)


def _run_init(args) -> int:
    if args.auto:
        return _run_auto_init(args)
    from tpv.bridge.peft_io import init_prompt_tuning

    with common.checking_arguments():
        _check_output_dir(args)
        if args.task or args.data or args.dataset:
            raise TPVError("--task, --data and --dataset choose sources automatically; add --auto (or drop them)")
        common.check_positive(args.virtual_tokens, "--virtual-tokens", "a number of soft-prompt tokens such as 20")
        common.check_finite(args.scale, "--scale")
        inputs.check_model_options(args)
        combo = inputs.combination(args.vectors, **inputs.hub(args)) if args.vectors else None
        tokens = combo.num_virtual_tokens if combo is not None else (args.virtual_tokens or 20)
        if combo is not None and args.virtual_tokens not in (None, tokens):
            raise TPVError(
                f"--virtual-tokens {args.virtual_tokens} but the vectors have {tokens}; drop --virtual-tokens"
            )
        origin = inputs.read_origin(args)
    model, _ = inputs.model_from_args(args)
    origin = origin or inputs.make_origin(args, model, tokens)
    peft_model = init_prompt_tuning(model, combo, origin=origin, scale=args.scale)
    peft_model.save_pretrained(args.output_dir)
    what = f"{origin!r}" + (f" + {args.scale:g}·({combo.name})" if combo is not None else "")
    print(f"wrote {args.output_dir}: a PEFT prompt-tuning adapter starting at {what}")
    return 0


def _check_output_dir(args) -> None:
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise TPVError(f"-o {args.output_dir!r} is a file; pass a folder for the adapter (it is created if missing)")


def _run_auto_init(args) -> int:
    from tpv.compose.auto_init import auto_init

    with common.checking_arguments():
        task, sources, grid, train = _checked_auto_inputs(args)
    model, tokenizer = inputs.model_from_args(args)
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
        include_at_chance=args.include_at_chance,
        probe_steps=args.probe_steps,
        train=train,
        data_dir=args.data_dir,
        progress=True,
    )
    plan.save_pretrained(args.output_dir)
    if args.json:
        common.print_json({**plan.to_dict(), "output_dir": args.output_dir})
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


def _checked_auto_inputs(args):
    from tpv.bridge.hub import resolve_sources
    from tpv.compose.auto_init import DEFAULT_GRID, load_sources
    from tpv.data import get_task

    _check_output_dir(args)
    if args.vectors:
        raise TPVError(f"--auto chooses the vectors itself; pass them as --sources {' '.join(args.vectors)}")
    if args.origin:
        raise TPVError("--auto builds on a seeded origin; use --origin-seed N instead of --origin")
    for value, option in ((args.k, "--k"), (args.max_k, "--max-k"), (args.limit, "--limit")):
        common.check_positive(value, option, "a whole number such as 3")
    if args.max_length is not None and args.max_length < 1:
        raise TPVError(f"--max-length must be a positive number of tokens, got {args.max_length}")
    if args.probe_steps < 0:
        raise TPVError(f"--probe-steps must be ≥ 0 (0 scores zero-shot), got {args.probe_steps}")
    if args.merge_method not in common.MERGE_METHOD_NAMES:
        raise TPVError(f"unknown --merge-method {args.merge_method!r}; use one of {list(common.MERGE_METHOD_NAMES)}")
    inputs.check_model_options(args)
    task = inputs.require_task(args, inputs.user_task(args, args.task))
    get_task(task)  # an unknown task fails before anything loads
    sources = "zoo" if args.sources == ["zoo"] else args.sources[0] if len(args.sources) == 1 else args.sources
    if "zoo" in args.sources and sources != "zoo":
        raise TPVError("--sources zoo cannot be mixed with files; give zoo alone, or files and folders")
    sources = resolve_sources(sources, **inputs.hub(args))  # Hub repo ids → their local snapshots
    # Bad sources fail here, before the model loads.
    load_sources(sources, exclude=args.exclude, target=task, include_at_chance=args.include_at_chance)
    grid = common.parse_grid(args.grid) if args.grid else DEFAULT_GRID
    train = inputs.examples_of(task, "train", None, args.data_dir) if args.probe_steps else None
    return task, sources, grid, train

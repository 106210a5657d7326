"""``tpv vector info|combine|similarity``: work on vector files without loading a model."""

from __future__ import annotations

from pathlib import Path

from tpv.cli import common, inputs
from tpv.core.errors import TPVError


def add_vector(commands) -> None:
    vector = commands.add_parser(
        "vector",
        help="inspect, combine and compare vector files",
        formatter_class=common.formatter,
        description="Work on *.tpv.safetensors files without loading a model.",
        epilog=common.examples_epilog(
            "tpv vector info sst2.tpv.safetensors --json",
            "tpv vector combine sst2.tpv.safetensors yelp.tpv.safetensors:0.5 -o combo.tpv.safetensors",
            "tpv vector similarity runs/*/*.tpv.safetensors --plot similarity.png",
        ),
    )
    sub = vector.add_subparsers(title="vector commands", metavar="COMMAND", required=True, parser_class=common.Parser)

    info = sub.add_parser(
        "info",
        help="print what a vector file holds",
        formatter_class=common.formatter,
        description="Print the tasks, shape, norm, base model and origin recipe of vector files "
        "(or of the vector of a PEFT prompt-tuning adapter folder, e.g. a tpv train run "
        "folder).",
        epilog=common.examples_epilog(
            "tpv vector info sst2.tpv.safetensors", "tpv vector info combo.tpv.safetensors --json"
        ),
    )
    info.add_argument(
        "files",
        nargs="+",
        metavar="FILE_OR_FOLDER",
        help="*.tpv.safetensors files, or PEFT adapter folders (their vector is read)",
    )
    info.add_argument("--json", action="store_true", help="print JSON (a list, one object per file)")
    inputs.hub_options(info)
    info.set_defaults(run=_run_info)

    comb = sub.add_parser(
        "combine",
        help="weighted sum (or TIES, DARE, …) of vectors",
        formatter_class=common.formatter,
        description="Merge vectors, each given as FILE or FILE:WEIGHT, and write the result (paper eq. 4).",
        epilog=common.examples_epilog(
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
    comb.add_argument("--method", choices=common.MERGE_METHOD_NAMES, default="sum", help="merge method (default: sum)")
    comb.add_argument("--density", type=float, default=None, help="fraction of entries kept (ties, dare, prune)")
    comb.add_argument("--seed", type=int, default=None, help="seed of DARE's random drop")
    comb.add_argument(
        "--majority-sign-method",
        choices=("total", "frequency"),
        default=None,
        help="how ties and dare_ties elect each entry's sign (default: total)",
    )
    inputs.hub_options(comb)
    comb.set_defaults(run=_run_combine)

    sim = sub.add_parser(
        "similarity",
        help="pairwise cosine similarities",
        formatter_class=common.formatter,
        description="Print the cosine similarity matrix of vectors (mean pooling is the paper's).",
        epilog=common.examples_epilog(
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
    inputs.hub_options(sim)
    sim.set_defaults(run=_run_similarity)


def vector_info(path: str, **hub_options) -> dict:
    """What ``tpv vector info`` reports for one file (or adapter folder, or Hub repo id), as a dict."""
    from tpv.core.provenance import merge_record

    vector = inputs.read_vector(path, **hub_options)
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
    with common.checking_arguments():
        infos = [vector_info(path, **inputs.hub(args)) for path in args.files]
    if args.json:
        common.print_json(infos)
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

    with common.checking_arguments():
        if Path(args.output).is_dir():
            raise TPVError(f"cannot use '{args.output}': it is a folder; pass -o FILE, e.g. -o combo.tpv.safetensors")
        items = inputs.vector_specs(args.files, **inputs.hub(args))
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

    with common.checking_arguments():
        items = inputs.vector_specs([_no_weight(spec) for spec in args.files], **inputs.hub(args))
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
        common.print_json({"names": names, "matrix": matrix.tolist(), "pooling": args.pooling, "plot": args.plot})
        return 0
    width = max(8, *(len(name) for name in names))
    print(" " * width + "".join(f" {name:>{width}s}" for name in names))
    for name, row in zip(names, matrix.tolist()):
        print(f"{name:{width}s}" + "".join(f" {value:>{width}.3f}" for value in row))
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _no_weight(spec: str) -> str:
    path, weight = inputs.split_weight(spec)
    if weight != 1.0 or path != spec:
        raise TPVError(f"similarity takes plain files, got {spec!r}; cosine similarity ignores weights, drop ':'")
    return path

"""How good a prompt the engine trains on the default model: SST-2 test macro-F1 from a seeded origin.

    python benchmarks/sst2_quality.py                 # ~15 minutes here; prints a Markdown block

Also reports the zero-shot score of the origin itself (the untrained random prompt), on the same test set.
The run folder is cached: rerunning reprints the results without training.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from tpv import init_prompt_tuning, make_origin
from tpv.bridge.models import load_model
from tpv.bridge.precision import hardware_summary
from tpv.data import load_split
from tpv.engine.evaluation import evaluate
from tpv.engine.training import train_prompt


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.3)
    parser.add_argument("--virtual-tokens", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-examples", type=int, default=200)
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="float32",
        help="float32 by default, so every figure runs the same arithmetic (default: %(default)s)",
    )
    parser.add_argument("--run-dir", type=Path, default=Path("runs/benchmarks/sst2_quality"))
    args = parser.parse_args(argv)

    model, tokenizer = load_model(dtype=args.dtype)
    train = load_split("sst2", "train")
    val = load_split("sst2", "validation")[: args.val_examples]
    test = load_split("sst2", "test")
    origin = make_origin(model, args.virtual_tokens, seed=args.seed)
    start = time.perf_counter()
    zero_shot = evaluate(init_prompt_tuning(model, origin=origin), tokenizer, "sst2", test)
    result = train_prompt(
        model,
        tokenizer,
        "sst2",
        origin,
        train,
        eval_data=val,
        output_dir=args.run_dir,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
    )
    tuned = evaluate(init_prompt_tuning(model, result.vector, origin=origin), tokenizer, "sst2", test)
    wall = time.perf_counter() - start
    command = "python benchmarks/sst2_quality.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(
        f"\n## SST-2 quality on the default model\n\nProduced by `{command.strip()}` "
        f"({hardware_summary(model.dtype)}; {args.steps} steps × batch {args.batch_size}, lr {args.learning_rate}, "
        f"{args.virtual_tokens} virtual tokens, origin sample_vocab(seed={args.seed}), best checkpoint of "
        f"{args.val_examples} validation examples); training {result.metrics.get('train_runtime', 0):.0f} s, "
        f"whole script {wall:.0f} s.\n"
    )
    print("| prompt | test macro-F1 | test accuracy | invalid |\n| --- | ---: | ---: | ---: |")
    print(
        f"| origin (zero-shot, untrained) | {zero_shot['macro_f1']:.3f} | {zero_shot['accuracy']:.3f} | "
        f"{zero_shot['invalid']} |"
    )
    print(f"| tuned | {tuned['macro_f1']:.3f} | {tuned['accuracy']:.3f} | {tuned['invalid']} |")
    return {"zero_shot": zero_shot, "tuned": tuned, "train": result.metrics}


if __name__ == "__main__":
    main()

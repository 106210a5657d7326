"""Start a new task from the vector zoo: rank the zoo's vectors on the target's validation data, pick k and λ,
and compare the chosen start with the random origin on the target's test data (read only for this report).

    python examples/start_from_zoo.py                 # imdb, the zoo without imdb (docs/howto/start-from-zoo.md)
    python examples/start_from_zoo.py --target rte --validation 64

No training: the zoo's vectors ship with tpv. The output of this script is what docs/howto/start-from-zoo.md shows.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tpv import auto_init, evaluate, get_task, hardware_summary, load_model, load_split, zoo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="imdb", help="the new task (left out of the candidates)")
    parser.add_argument("--validation", type=int, default=32, help="validation examples that rank and choose")
    parser.add_argument("--test", type=int, default=100, help="test examples for the final comparison")
    parser.add_argument("--max-length", type=int, default=128, help="tokens kept per input (long reviews cost more)")
    parser.add_argument("--output-dir", default=None, help="also write the ready-to-train adapter there")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1):
        torch.set_num_threads(1)  # busy cores: torch's threads would wait on each other (see examples/demo.py)

    print(zoo.available(), end="\n\n")
    model, tokenizer = load_model()
    plan = auto_init(
        model,
        tokenizer,
        args.target,
        "zoo",
        exclude=[args.target],
        max_validation=args.validation,
        max_length=args.max_length,
        max_k=2,
        grid=[0.5, 1.0],
    )
    print(plan, end="\n\n")
    if args.output_dir:
        plan.save_pretrained(args.output_dir)
        print(f"wrote {args.output_dir}")

    # Test data only now, after every choice was made on validation data.
    metric = get_task(args.target).metric
    test = load_split(args.target, "test")[: args.test]
    peft_model = plan.peft_model()
    rows = [("random origin", plan.origin.tensor), ("chosen start", plan.prompt)]
    print(f"{args.target} test, 0 shots, {len(test)} examples")
    for label, prompt in rows:
        result = evaluate(peft_model, tokenizer, args.target, test, prompt=prompt, max_length=args.max_length)
        print(f"  {label:14s} {metric} {result[metric]:.3f}  accuracy {result['accuracy']:.3f}")
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
    print(f"\n{hardware_summary(model.dtype)}; {time.perf_counter() - start:.0f} s in all{load}")


if __name__ == "__main__":
    main()

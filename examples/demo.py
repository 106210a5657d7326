"""The tpv demo: start a new task from the vector zoo that ships with tpv, with no training at all.

On the embedded default model (SmolLM2-135M-Instruct, in the dtype this machine runs fastest):

1. list the zoo: one task prompt vector per task of the benchmark subsets, tuned by ``scripts/build_zoo.py``;
2. compare two of them (cosine similarity) and add them, as plain vectors;
3. let :func:`tpv.auto_init` rank every zoo vector except imdb's own on imdb's *validation* examples and
   choose how many to add (k) and how much to scale them (λ) there;
4. score imdb's test examples at 0 shots from the random origin, from the hand-made sum, and from the
   chosen start.

Training sources stays one call away (``tpv train sst2 --output-dir runs/sst2``); this demo needs none. Progress
bars (stderr) show the scoring; results go to stdout. Data comes from ``TPV_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tpv import auto_init, evaluate, hardware_summary, load_model, load_split, zoo

TARGET = "imdb"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validation", type=int, default=32, help="imdb validation examples that rank and choose")
    parser.add_argument("--test", type=int, default=100, help="imdb test examples scored at the end")
    parser.add_argument(
        "--max-length",
        type=int,
        default=64,
        help="tokens kept per review; reviews are long, and short inputs keep the demo fast",
    )
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="auto: bfloat16 where this CPU multiplies it faster than float32 (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        default="auto",
        help="torch threads; auto: 1 when other jobs already keep every core busy (load average ≥ "
        "cores), else torch's default (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    _set_threads(args.threads)

    print(zoo.available(), end="\n\n")
    sst2, yelp = zoo.load("sst2"), zoo.load("yelp_polarity")
    print(f"cosine(τ_sst2, τ_yelp_polarity) = {sst2.cosine(yelp):.3f}")
    handmade = sst2 + yelp
    print(f"hand-made sum: {handmade!r}\n")

    model, tokenizer = load_model(dtype=args.dtype)
    print(
        f"model {model.name_or_path} in {str(model.dtype).removeprefix('torch.')} on {hardware_summary()}", flush=True
    )
    plan = auto_init(
        model,
        tokenizer,
        TARGET,
        "zoo",
        exclude=[TARGET],
        max_validation=args.validation,
        max_length=args.max_length,
        max_k=2,
        grid=[0.5, 1.0],
    )
    print(plan, end="\n\n", flush=True)

    # Test data only now, after every choice was made on validation data.
    test = load_split(TARGET, "test")[: args.test]
    peft_model = plan.peft_model()
    rows = [
        ("random origin", plan.origin.tensor),
        ("origin + 0.5·(τ_sst2 + τ_yelp)", handmade.apply_to(plan.origin, 0.5)),
        ("auto_init's start", plan.prompt),
    ]
    print(f"{TARGET} test, 0 shots, {len(test)} examples (first {args.max_length} tokens of each review)")
    print(f"{'initialisation':32s} {'macro-F1':>9s} {'accuracy':>9s}")
    for label, prompt in rows:
        result = evaluate(peft_model, tokenizer, TARGET, test, prompt=prompt, max_length=args.max_length, progress=True)
        print(f"{label:32s} {result['macro_f1']:9.3f} {result['accuracy']:9.3f}", flush=True)
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
    print(f"\ndone in {time.perf_counter() - start:.0f} s{load}")


def _set_threads(choice: str) -> None:
    # On a CPU that other jobs keep busy, torch's threads (one per core) wait for each other whenever one is
    # descheduled: here, under a load average of 8-14 on 2 cores, a training step took 60-75 s with 2 threads
    # and 7-14 s with 1 (scripts/build_zoo.py's note). On a quiet machine all cores help.
    if choice == "auto":
        busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1)
        threads = 1 if busy else torch.get_num_threads()
    else:
        threads = int(choice)
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()

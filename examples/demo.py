"""The tpv demo: two source prompts → their vectors → similarity → sum → a better start for a new task.

On the embedded default model (SmolLM2-135M-Instruct, in the dtype this machine runs fastest), in a few minutes
on a laptop CPU:

1. prompt-tune sst2 and yelp_polarity for a few dozen steps each, from the same seeded random origin;
2. turn each tuned prompt into a task prompt vector (tuned − origin) and print their cosine similarity;
3. add them, apply the sum to a *fresh* random origin (λ = 1, and λ chosen on imdb's validation data as the
   paper does), and score the target task imdb at 0 shots against that random origin alone.

Runs are cached in ``--output-dir`` (default ``runs/demo``): a second call reuses the trained prompts, and a
killed call resumes from its last checkpoint. Progress bars (stderr) show every step, evaluation batch and λ;
results go to stdout. Data comes from ``TPV_DATA_DIR`` (or the Hugging Face Hub when
unset and ``datasets`` is installed).
"""

from __future__ import annotations

import argparse
import time

import torch

from tpv import TaskPromptVector, init_prompt_tuning, make_origin, similarity_matrix
from tpv.evaluation import evaluate
from tpv.models import load_model
from tpv.precision import hardware_summary
from tpv.search import evaluation_score_fn, search_scale
from tpv.tasks import load_split
from tpv.training import train_prompt

SOURCES = ("sst2", "yelp_polarity")
TARGET = "imdb"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/demo", help="where the runs are cached (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per source task")
    parser.add_argument("--train-examples", type=int, default=320, help="training examples per source task")
    parser.add_argument("--eval-examples", type=int, default=100, help="validation/test examples scored per task")
    parser.add_argument("--max-length", type=int, default=128,
                        help="tokens kept per example; reviews are long, and short sequences keep the demo fast")
    parser.add_argument("--model", default=None, help="model id or folder (default: the embedded SmolLM2-135M)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="auto: bfloat16 where this CPU multiplies it faster than float32, else float32 "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(0)

    vectors: dict[str, TaskPromptVector] = {}
    for task in SOURCES:
        # A fresh base model per run: PEFT wraps (and so changes) the model it is given.
        model, tokenizer = load_model(args.model, dtype=args.dtype)
        if not vectors:
            print(f"model {model.name_or_path} in {str(model.dtype).removeprefix('torch.')} on "
                  f"{hardware_summary()}", flush=True)
        result = train_prompt(
            model, tokenizer, task, 0, load_split(task, "train")[: args.train_examples],
            eval_data=load_split(task, "validation")[: args.eval_examples], output_dir=f"{args.output_dir}/{task}",
            max_steps=args.steps, batch_size=8, num_virtual_tokens=20, eval_batch_size=50, max_length=args.max_length,
            # The demo's few steps need no mid-run evaluations; one at the end picks nothing but costs time.
            eval_steps=args.steps,
        )
        vectors[task] = result.vector  # train_prompt printed its one-line summary

    names, matrix = similarity_matrix(vectors)
    print(f"\ncosine similarity of the two task prompt vectors: {matrix[0, 1].item():.3f}")
    combo = sum(vectors.values())
    print(f"combination: {combo!r}\n")

    model, tokenizer = load_model(args.model, dtype=args.dtype)
    # A new seed: the vectors were tuned from seed 0's origin, and they carry over to any other origin.
    origin = make_origin(model, 20, seed=1)
    peft_model = init_prompt_tuning(model, origin=origin)
    test = load_split(TARGET, "test")[: args.eval_examples]
    rows = [("random origin (seed 1)", origin.tensor)]
    rows += [(f"origin + τ_{task}", vectors[task].apply_to(origin)) for task in SOURCES]
    rows += [("origin + (τ_sst2 + τ_yelp)", combo.apply_to(origin))]
    # tpv's extra row, not the paper's: λ picked on the target's validation data. The official code initialises
    # a new task with the sum at λ = 1 (the row above), and searches λ only on the source tasks' validation data.
    validation = {TARGET: load_split(TARGET, "validation")[: args.eval_examples]}
    score_fn = evaluation_score_fn(peft_model, tokenizer, validation, batch_size=25, max_length=args.max_length,
                                   progress=True)
    search = search_scale(combo, origin, score_fn, grid=[0.2, 0.4, 0.6, 0.8, 1.0], progress=True)
    rows += [(f"origin + {search.best_scale:.1f}·(τ_sst2 + τ_yelp)", combo.apply_to(origin, search.best_scale))]
    print(f"{TARGET} test, 0 shots, {len(test)} examples")
    print(f"{'initialisation':30s} {'macro-F1':>9s} {'accuracy':>9s}")
    for label, prompt in rows:
        result = evaluate(peft_model, tokenizer, TARGET, test, prompt=prompt.to(model.dtype), batch_size=25,
                          max_length=args.max_length, progress=True)
        print(f"{label:30s} {result['macro_f1']:9.3f} {result['accuracy']:9.3f}", flush=True)
    print(f"\ndone in {time.perf_counter() - start:.0f} s; runs cached in {args.output_dir}/")


if __name__ == "__main__":
    main()

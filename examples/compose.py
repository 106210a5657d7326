"""Compose task prompt vectors on the default model: similarity, a λ-searched sum, and negation.

Trains short prompts for three tasks from one seeded origin — two related (sst2, yelp_polarity: both
binary sentiment) and one not (trec: question types) — then:

1. prints the cosine-similarity matrix of their vectors (mean-pooled, the paper's measure) and checks that the
   related pair is the most similar;
2. searches λ for ``τ_sst2 + τ_yelp`` on validation data and scores the sum on both tasks;
3. builds a two-task prompt ``origin + λ(τ_sst2 + τ_trec)`` and forgets trec by adding ``−μ·τ_trec``, showing
   trec's score fall while sst2's stays.

    TPV_DATA_DIR=../shared/data python examples/compose.py          # ~15 min on 2 CPU cores (bfloat16)

Runs are cached under ``runs/compose`` so a second call only re-scores. What it printed here is in
docs/results/compose.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tpv import (
    evaluate,
    evaluation_score_fn,
    forget,
    hardware_summary,
    init_prompt_tuning,
    load_model,
    load_split,
    make_origin,
    search_scale,
    similarity_matrix,
    train_prompt,
)

TASKS = ("sst2", "yelp_polarity", "trec")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--val-examples", type=int, default=100)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/compose"))
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    model, tokenizer = load_model(dtype=args.dtype)
    origin = make_origin(model, 20, seed=0)
    val = {task: load_split(task, "validation")[: args.val_examples] for task in TASKS}
    vectors = {}
    for task in TASKS:
        result = train_prompt(
            model,
            tokenizer,
            task,
            train_dataset=load_split(task, "train"),
            origin=origin,
            eval_dataset=val[task],
            output_dir=args.run_dir / task,
            max_steps=args.steps,
            batch_size=16,
            max_length=128,
        )
        vectors[task] = result.vector

    lines = ["## Similarity of the task prompt vectors (cosine of mean-pooled weights)", ""]
    names, matrix = similarity_matrix(vectors)
    lines += ["| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    lines += [
        f"| {a} | " + " | ".join(f"{matrix[i, j]:.2f}" for j in range(len(names))) + " |" for i, a in enumerate(names)
    ]
    pairs = {(a, b): float(matrix[i, j]) for i, a in enumerate(names) for j, b in enumerate(names) if i < j}
    best_pair = max(pairs, key=pairs.get)
    lines += ["", f"Most similar pair: {best_pair[0]} + {best_pair[1]} ({pairs[best_pair]:.2f})."]

    peft_model = init_prompt_tuning(model, origin=origin)
    own = {
        task: evaluate(peft_model, tokenizer, task, val[task], prompt=vectors[task].apply_to(origin))["macro_f1"]
        for task in TASKS
    }
    grid = np.round(np.arange(0.0, 1.01, 0.1), 2)
    related = vectors["sst2"] + vectors["yelp_polarity"]
    scorer = evaluation_score_fn(peft_model, tokenizer, {"sst2": val["sst2"], "yelp_polarity": val["yelp_polarity"]})
    search = search_scale(related, origin, scorer, grid=grid)
    lines += [
        "",
        "## λ search for τ_sst2 + τ_yelp_polarity (validation macro-F1)",
        "",
        "| λ | sst2 | yelp_polarity | mean |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {scale:.1f} | {scores['sst2']:.3f} | {scores['yelp_polarity']:.3f} | {mean:.3f} |"
        for scale, mean, scores in search.curve
    ]
    lines += [
        "",
        f"Best λ = {search.best_scale:.1f}: mean {search.best_score:.3f}; each task's own prompt: "
        f"sst2 {own['sst2']:.3f}, yelp_polarity {own['yelp_polarity']:.3f}.",
    ]

    two_task = vectors["sst2"] + vectors["trec"]
    scale = search_scale(
        two_task,
        origin,
        evaluation_score_fn(peft_model, tokenizer, {"sst2": val["sst2"], "trec": val["trec"]}),
        grid=grid,
        progress=False,
    ).best_scale
    multi_prompt = two_task.apply_to(origin, scale)
    lines += [
        "",
        f"## Negation: forgetting trec from the two-task prompt origin + {scale:.1f}·(τ_sst2 + τ_trec)",
        "",
        "| μ in −μ·τ_trec | sst2 macro-F1 | trec macro-F1 |",
        "| ---: | ---: | ---: |",
    ]
    for mu in (0.0, 0.5, 1.0, 1.5):
        prompt = forget(multi_prompt, vectors["trec"], scale=mu)
        scores = {t: evaluate(peft_model, tokenizer, t, val[t], prompt=prompt)["macro_f1"] for t in ("sst2", "trec")}
        lines.append(f"| {mu:.1f} | {scores['sst2']:.3f} | {scores['trec']:.3f} |")
    lines += [
        "",
        f"Own prompts: sst2 {own['sst2']:.3f}, trec {own['trec']:.3f}; "
        f"{args.steps} steps per task, {args.val_examples} validation examples per task; "
        f"{hardware_summary(model.dtype)}; "
        f"whole run {time.perf_counter() - start:.0f} s.",
    ]
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()

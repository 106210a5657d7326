"""Learnability curves: validation macro-F1 of a soft prompt against training steps, per task, on the default model.

    python scripts/learnability.py                                  # the source tasks, 20 and 50 virtual tokens
    python scripts/learnability.py --tasks sst2 imdb --tokens 20 --max-steps 150
    python scripts/learnability.py --report-only                    # redraw CSV/PNG/budgets from finished runs
    python scripts/learnability.py --smoke --run-dir /tmp/l --out /tmp/l/out   # tiny random model, seconds

Every run is ``train_prompt`` from the paper's origin 0 (``make_origin(method="paper", seed=0)``) with the
paper-cpu profile's batch, learning rate and input length, evaluated by rank scoring every ``--eval-every``
steps on the first ``--selection-examples`` validation examples (the curve; the best of these checkpoints is
kept). The kept prompt and the untrained origin are then scored on the *held* validation examples after those
(never seen by checkpoint selection), and a one-sided permutation test (labels shuffled ``PERMUTATIONS`` times
against the fixed predictions) asks whether the prompt's predictions carry any information about the labels.

A run **leaves chance** when, on the held examples, p < ``ALPHA`` and its macro-F1 exceeds the permutation mean
(the no-skill level for exactly these predictions' label frequencies) by at least ``MIN_MARGIN``. Its **budget**
is the step of its kept checkpoint; a task whose runs all stay at chance is reported ``at_chance`` at the
largest budget tried.

Runs live in ``--run-dir`` (``train_prompt``'s resumable folders plus a ``scores.json`` each): kill and rerun
the command at any time; finished runs are reused. ``--out`` receives ``curves.csv`` (one row per evaluation),
``runs.csv`` and ``runs.json`` (one row per run, with its verdict), ``budgets.json`` (the per-task budgets
the profiles use) and ``curves.png``, rewritten after every run.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tpv import make_origin  # noqa: E402
from tpv.bridge.precision import hardware_summary  # noqa: E402
from tpv.compose.zoo.build import metric_rows  # noqa: E402
from tpv.core._io import atomic_write_text  # noqa: E402
from tpv.data import get_task, load_split  # noqa: E402
from tpv.engine.evaluation import evaluate  # noqa: E402
from tpv.engine.training import train_prompt  # noqa: E402

SOURCE_TASKS = ["mnli", "qnli", "rte", "mrpc", "cola", "qqp", "trec"]
ORIGIN = {"method": "paper", "seed": 0}
PERMUTATIONS = 2000
ALPHA = 0.01
MIN_MARGIN = 0.05  # macro-F1 above the no-skill level, on the held validation examples
BOOTSTRAP = 1000
ANSWER_TOKENS = 8  # generation budget (regression tasks); classification stops once its label is decided


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=SOURCE_TASKS)
    parser.add_argument("--tokens", nargs="+", type=int, default=[20, 50], help="virtual token counts")
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[0.3])
    parser.add_argument("--max-steps", type=int, default=300, help="the largest budget tried")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8, help="the paper-cpu profile's batch")
    parser.add_argument("--max-length", type=int, default=256, help="the paper-cpu profile's input length")
    parser.add_argument("--selection-examples", type=int, default=100)
    parser.add_argument("--held-examples", type=int, default=300)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "learnability")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "learnability")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the outputs from finished runs")
    parser.add_argument("--smoke", action="store_true", help="tiny random model and tiny budgets (CI)")
    args = parser.parse_args(argv)
    _commit_at_start()
    if args.smoke:
        args.max_steps, args.eval_every = min(args.max_steps, 4), min(args.eval_every, 2)
        args.selection_examples, args.held_examples = min(args.selection_examples, 8), min(args.held_examples, 16)

    if not args.report_only:
        model, tokenizer = _load(args)
        settings = [(task, tokens, lr) for tokens in args.tokens for task in args.tasks for lr in args.learning_rates]
        for number, (task, tokens, lr) in enumerate(settings, 1):
            print(f"[{number}/{len(settings)}] {task}, {tokens} virtual tokens, learning rate {lr}", flush=True)
            run(model, tokenizer, task, tokens, lr, args)
            write_outputs(args)
    write_outputs(args)


def _load(args):
    if args.smoke:
        from tpv.experiments.tiny import build_tiny_model  # noqa: PLC0415  (only the smoke run needs it)

        tasks = [get_task(t) for t in args.tasks]
        sample = [example for t in tasks for example in load_split(t.name, "train")[:64]]
        from tpv.bridge.models import load_model

        folder = build_tiny_model(args.run_dir / "tiny-model", tasks, sample)
        return load_model(folder, dtype="float32")
    from tpv.bridge.models import load_model

    return load_model(dtype=args.dtype)


def run_folder(args, task: str, tokens: int, lr: float) -> Path:
    return args.run_dir / task / f"vt{tokens}_lr{lr:g}_steps{args.max_steps}"


def run(model, tokenizer, task_name: str, tokens: int, lr: float, args) -> dict:
    """Train (or reuse) one run and score its kept prompt and its origin on the held examples."""
    folder = run_folder(args, task_name, tokens, lr)
    scores_path = folder / "scores.json"
    task = get_task(task_name)
    validation = load_split(task_name, "validation")
    selection = validation[: args.selection_examples]
    held = validation[args.selection_examples : args.selection_examples + args.held_examples]
    origin = make_origin(model, tokens, **ORIGIN)
    started = time.perf_counter()
    # PEFT's wrapping changes the model it wraps; every run gets its own copy of the base model.
    result = train_prompt(
        copy.deepcopy(model),
        tokenizer,
        task,
        origin,
        load_split(task_name, "train"),
        output_dir=folder,
        eval_data=selection,
        eval_steps=args.eval_every,
        max_steps=args.max_steps,
        learning_rate=lr,
        batch_size=args.batch_size,
        num_virtual_tokens=tokens,
        max_length=args.max_length,
        seed=0,
        progress=True,
    )
    train_seconds = time.perf_counter() - started
    if scores_path.is_file():
        scores = json.loads(scores_path.read_text())
        if scores.get("vector_sha") == _sha(result.vector_path):
            return scores
    peft_model = result.peft_model
    # Regression answers are a number such as "3.2": a few tokens; an untrained prompt may never end its text.
    scoring = dict(max_length=args.max_length, max_new_tokens=ANSWER_TOKENS)
    tuned = evaluate(peft_model, tokenizer, task, held, return_predictions=True, **scoring)
    untrained = evaluate(
        peft_model,
        tokenizer,
        task,
        held,
        prompt=origin.tensor.to(_dtype(peft_model)),
        return_predictions=True,
        **scoring,
    )
    step0 = evaluate(peft_model, tokenizer, task, selection, prompt=origin.tensor.to(_dtype(peft_model)), **scoring)
    statistic = metric_of(task)
    gold = [task.label_id(e[task.label_key]) if task.is_classification else float(e[task.label_key]) for e in held]
    predicted = _numeric(tuned["predictions"])
    test = permutation_test(statistic, predicted, gold)
    margin = tuned[task.metric] - test["null_mean"]
    # train_prompt scores the kept checkpoint once more at the end, under the last step's number: keep the first.
    by_step = {0: step0[task.metric]}
    for record in result.history:
        if f"eval_{task.metric}" in record:
            by_step.setdefault(int(record["step"]), record[f"eval_{task.metric}"])
    history = [{"step": step, "validation_score": score} for step, score in by_step.items()]
    losses = [{"step": int(r["step"]), "train_loss": r["loss"]} for r in result.history if "loss" in r]
    best_step = _best_step(history)
    scores = {
        "task": task_name,
        "family": task.family,
        "num_labels": task.num_labels,
        "virtual_tokens": tokens,
        "learning_rate": lr,
        "max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "origin": ORIGIN,
        "selection_examples": len(selection),
        "held_examples": len(held),
        "metric": task.metric,
        "best_step": best_step,
        "held_score": tuned[task.metric],
        "held_accuracy": tuned.get("accuracy"),
        "held_score_se": bootstrap_se(statistic, predicted, gold),
        "origin_held_score": untrained[task.metric],
        "invalid": tuned["invalid"],
        "null_mean": test["null_mean"],
        "null_p95": test["null_p95"],
        "p_value": test["p_value"],
        "margin": margin,
        "left_chance": bool(test["p_value"] < ALPHA and margin >= MIN_MARGIN),
        "curve": history,
        "train_loss": losses,
        "engine": result.engine,
        "train_seconds_this_call": round(train_seconds, 1),
        "vector_sha": _sha(result.vector_path),
        # Kept so that later comparisons (scripts/build_zoo.py's margin over the origin) pair the same examples.
        "held_predictions": predicted,
        "origin_held_predictions": _numeric(untrained["predictions"]),
        "vector_file": str(result.vector_path.relative_to(args.run_dir)),
        "device": _device_line(),
        "commit": _commit_at_start(),
        "dtype": str(_dtype(peft_model)).removeprefix("torch."),
    }
    atomic_write_text(scores_path, json.dumps(scores, indent=1) + "\n")
    return scores


def _best_step(history) -> int:
    # Trainer keeps the first evaluation that reaches the best score (it replaces the best only on a strict gain).
    best = max(history[1:], key=lambda r: r["validation_score"], default=None)
    return best["step"] if best else 0


def metric_of(task):
    """The task's metric as a function of one prediction vector and a matrix of gold rows (one score per row)."""
    return metric_rows(task)  # the one build_zoo tests its vectors for chance with


def permutation_test(statistic, predictions, gold, permutations: int = PERMUTATIONS, seed: int = 0) -> dict:
    """One-sided: how often does shuffling the labels against fixed predictions score as well as the real pairing?"""
    predictions, gold = np.asarray(predictions), np.asarray(gold)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(gold) for _ in range(permutations)])
    observed = statistic(predictions, gold[None, :])[0]
    null = statistic(predictions, shuffled)
    return {
        "observed": float(observed),
        "null_mean": float(null.mean()),
        "null_p95": float(np.quantile(null, 0.95)),
        "p_value": float((1 + (null >= observed - 1e-12).sum()) / (1 + permutations)),
    }


def bootstrap_se(statistic, predictions, gold, resamples: int = BOOTSTRAP, seed: int = 0) -> float:
    predictions, gold = np.asarray(predictions), np.asarray(gold)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(gold), (resamples, len(gold)))
    scores = [statistic(predictions[r], gold[r][None, :])[0] for r in rows]
    return float(np.std(scores, ddof=1))


def _numeric(predictions) -> list:
    # As tpv.engine.evaluation: an unparseable regression answer (NaN) counts as 0, the bottom of the scale.
    return [0.0 if isinstance(p, float) and math.isnan(p) else p for p in predictions]


def write_outputs(args) -> None:
    runs = sorted(
        (json.loads(p.read_text()) for p in args.run_dir.glob("*/*/scores.json")),
        key=lambda s: (s["task"], s["virtual_tokens"], s["learning_rate"]),
    )
    if not runs:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    curve_rows = [
        {
            "task": s["task"],
            "virtual_tokens": s["virtual_tokens"],
            "learning_rate": s["learning_rate"],
            "metric": s["metric"],
            "step": point["step"],
            "selection_score": round(point["validation_score"], 4),
        }
        for s in runs
        for point in s["curve"]
    ]
    _write_csv(args.out / "curves.csv", curve_rows)
    columns = [
        "task",
        "family",
        "num_labels",
        "metric",
        "virtual_tokens",
        "learning_rate",
        "max_steps",
        "max_length",
        "best_step",
        "held_examples",
        "held_score",
        "held_score_se",
        "origin_held_score",
        "null_mean",
        "p_value",
        "margin",
        "left_chance",
        "invalid",
        "engine",
        "dtype",
        "device",
        "commit",
    ]
    _write_csv(args.out / "runs.csv", [{c: _round(s[c]) for c in columns} for s in runs])
    atomic_write_text(
        args.out / "runs.json",
        json.dumps(
            {
                "settings": {
                    "origin": ORIGIN,
                    "alpha": ALPHA,
                    "min_margin": MIN_MARGIN,
                    "permutations": PERMUTATIONS,
                    "rule": LEAVES_CHANCE_RULE,
                },
                "runs": [
                    {
                        k: v
                        for k, v in s.items()
                        if k not in ("train_loss", "held_predictions", "origin_held_predictions")
                    }
                    for s in runs
                ],
            },
            indent=1,
        )
        + "\n",
    )
    atomic_write_text(args.out / "budgets.json", json.dumps(budgets(runs), indent=1) + "\n")
    _plot(runs, args.out / "curves.png")
    atomic_write_text(args.out / "README.md", report(runs))


def report(runs: list[dict]) -> str:
    """The results page: every number in it is a cell of runs.csv (rounded)."""
    lines = [
        "# Learnability: does a soft prompt of the default model leave chance, and after how many steps?",
        "",
        "The rows come from five commands over one run folder (`--run-dir`; each row's settings, commit and CPU are",
        "in `runs.csv`/`runs.json`):",
        "",
        "- `python scripts/build_zoo.py`: every local task at 20 virtual tokens and learning rate 0.3 (150 steps for",
        "  the paper's source tasks, 100 for the others); the zoo's vectors are these runs' kept prompts;",
        "- `python scripts/learnability.py --tasks mnli --tokens 20 --learning-rates 0.03 0.3 --max-steps 300`: the",
        "  second learning rate, on MNLI (its 0.3 run was stopped for CPU time, so MNLI at 0.3 is the zoo's "
        "150-step run);",
        "- `python scripts/learnability.py --tokens 50 --max-steps 150`: the paper's prompt length (the",
        "  `paper-cpu` profile's), for the seven source tasks;",
        "- `python scripts/learnability.py --tokens 50 --tasks sst2 yelp_polarity dbpedia --max-steps 100`: the",
        "  `paper-cpu` profile's other source tasks at its prompt length;",
        "- `python scripts/learnability.py --tokens 50 --learning-rates 0.03 --tasks mnli rte cola --max-steps 300`:",
        "  the second learning rate at 50 tokens, for the tasks still at chance at 0.3.",
        "",
        "`python scripts/learnability.py --report-only` rewrites this page, `curves.csv`, `runs.csv`, `runs.json`,",
        "`budgets.json` and `curves.png` from the finished runs. Model: SmolLM2-135M-Instruct (dequantised GGUF), one",
        "thread per run on a 2-core Intel Xeon with AMX, bfloat16.",
        "",
        '**Protocol.** `train_prompt` from the paper\'s origin 0 (`make_origin(method="paper", seed=0)`), AdamW at',
        "the learning rate shown, linear decay after 10 % warm-up, batch 8; every 50 steps the prompt is "
        "rank-scored on",
        "the first 100 validation examples (the *selection* set, plotted) and the best checkpoint is kept. The kept",
        "prompt and the untrained origin are then scored on the next 300 validation examples (*held*: never used for",
        "selection). "
        + LEAVES_CHANCE_RULE[0].upper()
        + LEAVES_CHANCE_RULE[1:]
        + "; the shuffles' mean is the no-skill",
        "level for these predictions' label frequencies (about 1/classes for macro-F1). The *budget* is the step of",
        "the kept checkpoint.",
        "",
        "**Where this differs from the paper.** The paper tunes T5-base for 10 epochs of the full training sets",
        "(tens of thousands of steps at batch 32); here at most 300 steps at batch 8 (2,400 examples, about one",
        "epoch of the 2,000-example subsets), on a 135M decoder-only model, scored by ranking the label words rather",
        "than by generation. A task at chance here is unlearnable *at this budget on this model*, not in general.",
        "Steps are those of one run with a linear schedule over its whole budget: the score at step 100 of a",
        "300-step run is not what a 100-step run would reach.",
        "",
        "| task | classes | tokens | lr | budget tried | kept step | held score (± SE) | origin held | no-skill | "
        "p | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for s in runs:
        verdict = (
            f"left chance (+{s['margin']:.3f})"
            if s["left_chance"]
            else f"**at chance** at {s['max_steps']} steps (margin {s['margin']:+.3f})"
        )
        lines.append(
            f"| {s['task']} | {s['num_labels'] or 'regression'} | {s['virtual_tokens']} | {s['learning_rate']:g} | "
            f"{s['max_steps']} | {s['best_step']} | {s['metric']} {s['held_score']:.3f} ± {s['held_score_se']:.3f} | "
            f"{s['origin_held_score']:.3f} | {s['null_mean']:.3f} | {s['p_value']:.4f} | {verdict} |"
        )
    left = sorted({s["task"] for s in runs if s["left_chance"]})
    never = sorted({s["task"] for s in runs} - set(left))
    lines += [
        "",
        f"Left chance in at least one run: {', '.join(left) or 'none'}.",
        f"At chance in every run tried: {', '.join(never) or 'none'}; their rows in later studies are not "
        "evidence for or against a finding.",
        "",
        "`budgets.json` keeps, per task and prompt length, the best run (one that left chance, if any). The",
        "`paper-cpu` profile (50 virtual tokens) trains each source task for that run's `schedule_steps` at its",
        "learning rate (`[source] task_steps`, `task_learning_rates`) and leaves out the tasks whose best run",
        "stayed at chance (a profile that keeps one lists it in `[source] at_chance`, and every page marks its",
        "rows); `tests/test_experiments.py` checks the profile against this file.",
        "",
        "![curves](curves.png)",
        "",
    ]
    return "\n".join(lines)


LEAVES_CHANCE_RULE = (
    f"left chance: on the held validation examples, one-sided permutation p < {ALPHA} "
    f"({PERMUTATIONS} label shuffles) and macro-F1 at least {MIN_MARGIN} above the shuffles' mean"
)


def budgets(runs: list[dict]) -> dict:
    """Per task and prompt length: the best run (one that left chance, if any, then the higher held score).

    A profile uses, for a task whose best run left chance, that run's ``schedule_steps`` and ``learning_rate``
    (``[source] task_steps`` / ``task_learning_rates``); a task whose best run did not is listed in ``[source]
    at_chance``. ``tests/test_experiments.py`` checks the shipped paper profiles against this file."""
    table: dict = {}
    for s in runs:
        entry = table.setdefault(s["task"], {}).setdefault(str(s["virtual_tokens"]), None)
        candidate = {
            "steps": max(s["best_step"], s["eval_every"]),
            # The run's whole budget: its learning rate decays over these steps, so a profile that keeps the best
            # checkpoint trains this long to see the run's curve.
            "schedule_steps": s["max_steps"],
            "learning_rate": s["learning_rate"],
            "held_score": round(s["held_score"], 4),
            "metric": s["metric"],
            "margin": round(s["margin"], 4),
            "left_chance": s["left_chance"],
            "largest_budget_tried": s["max_steps"],
        }
        better = entry is None or (candidate["left_chance"], candidate["held_score"]) > (
            entry["left_chance"],
            entry["held_score"],
        )
        if better:
            table[s["task"]][str(s["virtual_tokens"])] = candidate
    for s in runs:  # over every run of the task at this length, whichever was kept
        entry = table[s["task"]][str(s["virtual_tokens"])]
        entry["largest_budget_tried"] = max(entry["largest_budget_tried"], s["max_steps"])
    return {"rule": LEAVES_CHANCE_RULE, "budgets": table}


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (an optional extra; the CSVs do not need it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    tasks = sorted({s["task"] for s in runs})
    columns = min(4, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.8 * rows), squeeze=False)
    for axis, task in zip(axes.flat, tasks):
        for s in (s for s in runs if s["task"] == task):
            steps = [p["step"] for p in s["curve"]]
            scores = [p["validation_score"] for p in s["curve"]]
            marker = "o" if s["left_chance"] else "x"
            axis.plot(steps, scores, marker=marker, label=f"{s['virtual_tokens']} tok, lr {s['learning_rate']:g}")
        first = next(r for r in runs if r["task"] == task)
        if first["num_labels"]:
            axis.axhline(1 / first["num_labels"], color="grey", ls=":", lw=1)
        axis.set_title(task)
        axis.set_xlabel("step")
        axis.set_ylabel(f"selection {first['metric']}")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(tasks) :]:
        axis.axis("off")
    figure.suptitle(
        "Selection-set score vs steps (o: left chance on held examples, x: did not; dotted: 1/classes)", fontsize=9
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _round(value):
    return round(value, 4) if isinstance(value, float) else value


def _dtype(peft_model) -> torch.dtype:
    return next(peft_model.parameters()).dtype


def _sha(path) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _device_line() -> str:
    return f"{hardware_summary()}, {platform.machine()}"


def _commit_at_start() -> str:
    # The code that trains is the code the process started with: read the commit once, not when a run ends.
    global _COMMIT
    if _COMMIT is None:
        _COMMIT = _commit()
    return _COMMIT


_COMMIT: str | None = None


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "tpv", "scripts"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


if __name__ == "__main__":
    main()

"""Build the vector zoo shipped in ``tpv/compose/zoo``: one task prompt vector of the default model per local task.

    nice -n 10 python scripts/build_zoo.py              # every task of $TPV_DATA_DIR; resumable
    python scripts/build_zoo.py --tasks sst2 imdb       # some tasks only (the manifest keeps the others)
    python scripts/build_zoo.py --plan                  # print the budgets and exit

Each task is prompt-tuned with the library's own ``train_prompt`` from one recorded origin
(``sample_vocab(seed=0)``, 20 virtual tokens: the length docs/benchmarks.md recommends on a CPU), the best
checkpoint picked on the first ``SELECT_EXAMPLES`` validation examples. The tuned prompt and the untrained
origin are then scored on the whole validation split (up to ``SCORE_EXAMPLES``) and the prompt on the test
split; ``tpv/compose/zoo/<task>.tpv.safetensors`` and ``tpv/compose/zoo/manifest.json`` are written after every task, so a
killed build keeps what it finished. Run folders live in ``runs/zoo/<task>``: a rerun reuses finished runs
and resumes a killed one from its last checkpoint (``train_prompt``'s cache), and the scores are cached
beside them, so a rerun of a finished build only rewrites the manifest.

Budgets: the steps per task (``STEPS``) were set so the whole build fits about an hour on a 2-core CPU
shared with several other jobs (under a load of 8, a step of sst2 took 7 s with one thread and 60-75 s
with torch's default two threads, which wait on each other when the cores are oversubscribed: run it with
``OMP_NUM_THREADS=1`` on a busy machine; step time grows with the task's text length). They are a first guess, not the budgets that learn each
task best; a task whose tuned prompt does not beat both the origin and the majority class on validation by
two standard errors is marked ``at_chance`` in the manifest (``AT_CHANCE_RULE``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
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

from tpv import init_prompt_tuning, make_origin  # noqa: E402
from tpv.core._io import atomic_write_text  # noqa: E402
from tpv.engine.evaluation import evaluate  # noqa: E402
from tpv.bridge.models import DEFAULT_MODEL, load_model  # noqa: E402
from tpv.bridge.peft_io import set_prompt  # noqa: E402
from tpv.data import TASKS, get_task, load_split  # noqa: E402
from tpv.engine.training import train_prompt  # noqa: E402

NUM_VIRTUAL_TOKENS = 20
ORIGIN_SEED = 0
ORIGIN_METHOD = "sample_vocab"
BATCH_SIZE = 16
LEARNING_RATE = 0.3
SELECT_EXAMPLES = 32  # validation examples the best checkpoint is picked on
SCORE_EXAMPLES = 100  # validation / test examples the manifest's scores are measured on
MAX_LENGTH = 128  # tokens per input; cuts only long reviews/abstracts (imdb, yelp, dbpedia, rte), halving their cost
BOOTSTRAP = 1000
GENERATE_TOKENS = 6  # stsb's answers are a number such as "3.2"; longer output is wrong anyway

# Optimizer steps per task. Long-text tasks (imdb, yelp, rte, dbpedia) cost 3-8x a short task's step.
STEPS = {
    "sst2": 20, "yelp_polarity": 12, "imdb": 12, "cola": 12, "trec": 12, "sst5": 12, "snli": 12, "stsb": 8,
    "qqp": 10, "mnli": 10, "yahoo_answers": 10, "qnli": 10, "ag_news": 10, "mrpc": 10, "rte": 8, "dbpedia": 8,
}
BUDGET_NOTE = ("first-guess budgets sized so the whole build fits ~1 h on a shared 2-core CPU, not tuned per "
               "task; issue 15 will search better budgets")
AT_CHANCE_RULE = ("at_chance when the tuned prompt's validation score minus that of the untrained origin, or of "
                  "always predicting the training split's majority class, is below 2 paired-bootstrap standard "
                  f"errors ({BOOTSTRAP} resamples of the validation examples)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to build (default: every local task)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TPV_DATA_DIR", REPO.parent / "shared/data")))
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "zoo")
    parser.add_argument("--zoo-dir", type=Path, default=REPO / "tpv" / "zoo")
    parser.add_argument("--dtype", default="auto", help="auto (tpv's choice for this CPU), bfloat16 or float32")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no training progress bars")
    parser.add_argument("--plan", action="store_true", help="print the tasks and budgets, train nothing")
    args = parser.parse_args(argv)

    local = {p.name for p in args.data_dir.iterdir() if p.is_dir() and p.name in TASKS}
    # Dict order: the vectors the demo and docs use first, so a build cut short still serves them.
    tasks = args.tasks or [t for t in STEPS if t in local] + sorted(local - set(STEPS))
    unknown = [t for t in tasks if t not in STEPS]
    if unknown:
        parser.error(f"no budget for {unknown}; add them to STEPS")
    if args.plan:
        for task in tasks:
            print(f"{task:15s} {STEPS[task]:4d} steps × batch {BATCH_SIZE}")
        return 0
    dtype = _dtype(args.dtype)
    manifest_path = args.zoo_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"tasks": {}}
    model, tokenizer = load_model(dtype=dtype)
    origin = make_origin(model, NUM_VIRTUAL_TOKENS, seed=ORIGIN_SEED, method=ORIGIN_METHOD)
    args.zoo_dir.mkdir(parents=True, exist_ok=True)
    _save_origin(origin, args.zoo_dir / "origin.safetensors")
    manifest.update(_header(dtype, origin))
    for number, task in enumerate(tasks, start=1):
        print(f"[{number}/{len(tasks)}] {task}: {STEPS[task]} steps", flush=True)
        entry = build_task(task, args, dtype, origin)
        # Re-read before writing: two builds on disjoint task lists may share the manifest.
        if manifest_path.is_file():
            manifest["tasks"] = json.loads(manifest_path.read_text())["tasks"]
        manifest["tasks"][task] = entry
        manifest["tasks"] = dict(sorted(manifest["tasks"].items()))
        manifest["total_bytes"] = sum((args.zoo_dir / e["file"]).stat().st_size for e in manifest["tasks"].values())
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
        print(f"    {entry['metric']} validation {entry['validation']:.3f} (origin {entry['origin_validation']:.3f}, "
              f"majority {entry['majority_validation']:.3f}), test {entry['test']:.3f}"
              f"{', AT CHANCE' if entry['at_chance'] else ''}", flush=True)
    return 0


def _save_origin(origin, path: Path) -> None:
    from tpv import Origin

    # Rewritten only when it differs: safetensors' metadata order varies, which would churn the file in git.
    if path.is_file() and torch.equal(Origin.load(path).tensor, origin.tensor.cpu()):
        return
    origin.save(path)


def build_task(task_name: str, args, dtype, origin) -> dict:
    task = get_task(task_name)
    train = load_split(task, "train", args.data_dir)
    validation = load_split(task, "validation", args.data_dir)[:SCORE_EXAMPLES]
    test = load_split(task, "test", args.data_dir)[:SCORE_EXAMPLES]
    run_dir = args.run_dir / task_name
    steps = STEPS[task_name]
    # Generation (stsb) from an untrained prompt runs to the token limit; pick the last checkpoint instead.
    select = validation[:SELECT_EXAMPLES] if task.is_classification else None
    started = time.perf_counter()
    model, tokenizer = load_model(dtype=dtype)
    result = train_prompt(model, tokenizer, task, origin, train, output_dir=run_dir, eval_data=select,
                          max_steps=steps, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, max_length=MAX_LENGTH,
                          num_virtual_tokens=NUM_VIRTUAL_TOKENS, eval_steps=max(1, steps // 2), seed=0,
                          progress=args.progress)
    train_seconds = time.perf_counter() - started
    file_name = f"{task_name}.tpv.safetensors"
    result.vector.save(args.zoo_dir / file_name)
    scores = _cached_scores(run_dir, result.vector, task, validation, test, origin, dtype)
    data_sha = {split: _sha256(_split_file(args.data_dir, task_name, split)) for split in ("train", "validation", "test")}
    return {
        "task": task_name, "family": task.family, "metric": task.metric, "file": file_name,
        "dtype": str(dtype).removeprefix("torch."),
        "steps": steps, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "max_length": MAX_LENGTH,
        "train_examples": len(train), "selection_examples": len(select or []),
        "validation_examples": len(validation), "test_examples": len(test),
        "norm": result.vector.norm(), "file_sha256": _sha256(args.zoo_dir / file_name), "data_sha256": data_sha,
        # Trainer's runtime of the (last, if resumed) training session; 0-ish when the run came from the cache.
        "train_seconds": round(float(result.metrics.get("train_runtime", train_seconds)), 1), **scores["scores"],
    }


def _cached_scores(run_dir: Path, vector, task, validation, test, origin, dtype) -> dict:
    """Scores of a run's vector, cached in the run folder under a key of the vector and the data."""
    key = hashlib.sha256(vector.tensor.numpy().tobytes() + json.dumps([validation, test, str(dtype)],
                                                                        sort_keys=True).encode()).hexdigest()
    path = run_dir / "zoo_scores.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    model, tokenizer = load_model(dtype=dtype)
    peft_model = init_prompt_tuning(model, origin=origin)
    options = dict(batch_size=32, max_new_tokens=GENERATE_TOKENS, max_length=MAX_LENGTH, return_predictions=True,
                   progress=True)
    origin_val = evaluate(peft_model, tokenizer, task, validation, **options)
    set_prompt(peft_model, vector.apply_to(origin))
    tuned_val = evaluate(peft_model, tokenizer, task, validation, **options)
    tuned_test = evaluate(peft_model, tokenizer, task, test, **options)
    references = [example[task.label_key] for example in validation]
    margin = _margins(task, tuned_val["predictions"], origin_val["predictions"], references)
    scores = {
        "validation": tuned_val[task.metric], "origin_validation": origin_val[task.metric],
        "majority_validation": margin["majority_score"], "test": tuned_test[task.metric],
        "validation_accuracy": tuned_val.get("accuracy"), "test_accuracy": tuned_test.get("accuracy"),
        "margin_over_origin": margin["origin"], "margin_over_majority": margin["majority"],
        "at_chance": margin["at_chance"],
    }
    record = {"key": key, "scores": scores}
    atomic_write_text(path, json.dumps(record, indent=1))
    return record


def _margins(task, tuned, origin, references) -> dict:
    """Paired-bootstrap margins of the tuned prompt over the origin and over the majority class."""
    rng = np.random.default_rng(0)
    n = len(references)
    samples = rng.integers(0, n, size=(BOOTSTRAP, n))
    if task.is_classification:
        gold = np.array([task.label_id(r) for r in references])
        majority = np.full(n, np.bincount(gold, minlength=task.num_labels).argmax())
        metric = lambda pred, idx: _macro_f1(np.asarray(pred)[idx], gold[idx], task.num_labels)  # noqa: E731
    else:
        gold = np.array(references, dtype=float)
        majority = np.full(n, gold.mean())
        metric = lambda pred, idx: _pearson(np.nan_to_num(np.asarray(pred, dtype=float))[idx], gold[idx])  # noqa: E731
    full = np.arange(n)
    out = {"majority_score": float(metric(majority, full))}
    at_chance = False
    for name, baseline in (("origin", origin), ("majority", majority)):
        difference = metric(tuned, full) - metric(baseline, full)
        spread = np.std([metric(tuned, idx) - metric(baseline, idx) for idx in samples], ddof=1)
        out[name] = {"difference": float(difference), "se": float(spread)}
        at_chance = at_chance or difference < 2 * spread or difference <= 0
    out["at_chance"] = bool(at_chance)
    return out


def _macro_f1(pred, gold, num_labels: int) -> float:
    scores = []
    for label in range(num_labels):
        tp = np.sum((pred == label) & (gold == label))
        fp = np.sum((pred == label) & (gold != label))
        fn = np.sum((pred != label) & (gold == label))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def _pearson(pred, gold) -> float:
    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0  # a constant prediction carries no correlation (and the metric module agrees)
    return float(np.corrcoef(pred, gold)[0, 1])


def _header(dtype, origin) -> dict:
    return {
        "format": "tpv-zoo/1", "base_model": DEFAULT_MODEL, "commit": _commit(), "dtype": str(dtype).removeprefix("torch."),
        "cpu": _cpu(), "torch": torch.__version__, "origin": {
            "recipe": origin.recipe, "seed": ORIGIN_SEED, "method": ORIGIN_METHOD,
            "num_virtual_tokens": NUM_VIRTUAL_TOKENS, "file": "origin.safetensors"},
        "command": "python scripts/build_zoo.py", "budget_note": BUDGET_NOTE, "at_chance_rule": AT_CHANCE_RULE,
        "planned": sorted(STEPS),
        "selection": f"best of 2 checkpoints on the first {SELECT_EXAMPLES} validation examples (classification); "
                     "the last checkpoint for regression",
    }


def _dtype(name: str) -> torch.dtype:
    # tpv's own choice: bfloat16 only where this CPU multiplies it faster (avx512_bf16/AMX), measured and cached.
    from tpv.bridge.precision import resolve_dtype

    return resolve_dtype(name)


def _cpu() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores (shared with other jobs)"


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "tpv"], cwd=REPO, capture_output=True, text=True)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _split_file(data_dir: Path, task: str, split: str) -> Path:
    for suffix in (".jsonl", ".csv", ".tsv"):
        path = data_dir / task / f"{split}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(data_dir / task / split)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())

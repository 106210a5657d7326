"""Build the vector zoo shipped in ``tpv/zoo``: one task prompt vector of the default model per local task.

    nice -n 10 python scripts/build_zoo.py              # every task of $TPV_DATA_DIR; resumable
    python scripts/build_zoo.py --tasks sst2 imdb       # some tasks only (the manifest keeps the others)
    python scripts/build_zoo.py --plan                  # print the budgets and exit

Each task's prompt is one run of ``scripts/learnability.py`` (``train_prompt`` from the paper's origin 0 at 20
virtual tokens, the length docs/benchmarks.md recommends on a CPU; batch 8, learning rate 0.3; rank-scored
every 50 steps on the first 100 validation examples, the best checkpoint kept), in the same run folders
(``runs/learnability/<task>/vt20_lr0.3_steps<budget>``), so the zoo and the learnability curves are the same
runs. The learnability script scores the kept prompt and the untrained origin on the held validation examples
(the 300 after the selection set) and decides with a permutation test whether the prompt left chance; this
script adds the test split's score, a paired-bootstrap margin over the origin, and writes
``tpv/compose/zoo/<task>.tpv.safetensors`` and ``tpv/compose/zoo/manifest.json`` after every task, so a killed
build keeps what it finished; a rerun reuses finished runs and resumes a killed one from its last checkpoint.

Budgets (``STEPS``): the source tasks of the paper's studies get 150 steps (1,200 examples, 60 % of an epoch
of the 2,000-example subsets); the others 100 steps with inputs cut at 128 tokens (long reviews and abstracts
cost 3-8x a short input's step). Sized so the whole build fits about 1.5 h of one core of a 2-core Xeon
(AMX, bfloat16): a budget this machine can afford, not the paper's (10 epochs of the full data sets). A vector
whose run did not leave chance is kept but marked ``at_chance`` (``AT_CHANCE_RULE``) and left out of
``tpv.zoo.vectors()`` unless asked for.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import learnability  # noqa: E402

from tpv import TaskPromptVector, make_origin  # noqa: E402
from tpv.bridge.models import DEFAULT_MODEL, load_model  # noqa: E402
from tpv.bridge.peft_io import init_prompt_tuning  # noqa: E402
from tpv.core._io import atomic_write_text  # noqa: E402
from tpv.data import TASKS, get_task, load_split  # noqa: E402
from tpv.engine.evaluation import evaluate  # noqa: E402

NUM_VIRTUAL_TOKENS = 20
LEARNING_RATE = 0.3
TEST_EXAMPLES = 200
BOOTSTRAP = 1000
GENERATE_TOKENS = 6  # stsb's answers are a number such as "3.2"; longer output is wrong anyway
SOURCE_BUDGET = (150, 256)  # (steps, max input tokens)
OTHER_BUDGET = (100, 128)
OTHER_TASKS = ("sst2", "yelp_polarity", "imdb", "sst5", "snli", "ag_news", "dbpedia", "yahoo_answers", "stsb")
STEPS = dict.fromkeys(learnability.SOURCE_TASKS, SOURCE_BUDGET) | dict.fromkeys(OTHER_TASKS, OTHER_BUDGET)
BUDGET_NOTE = (
    "150 steps at batch 8 for the paper's source tasks, 100 steps (inputs cut at 128 tokens) for the rest; "
    "best checkpoint every 50 steps on 100 validation examples; budgets a 2-core CPU affords, not the "
    "paper's 10 epochs"
)
AT_CHANCE_RULE = "at_chance unless the run " + learnability.LEAVES_CHANCE_RULE.removeprefix("left chance: ")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to build (default: every local task)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("TPV_DATA_DIR", REPO.parent / "shared/data"))
    )
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "learnability")
    parser.add_argument("--zoo-dir", type=Path, default=REPO / "tpv" / "compose" / "zoo")
    parser.add_argument("--dtype", default="auto", help="auto (tpv's choice for this CPU), bfloat16 or float32")
    parser.add_argument("--plan", action="store_true", help="print the tasks and budgets, train nothing")
    args = parser.parse_args(argv)
    learnability._commit_at_start()

    local = {p.name for p in args.data_dir.iterdir() if p.is_dir() and p.name in TASKS}
    tasks = args.tasks or [t for t in STEPS if t in local] + sorted(local - set(STEPS))
    unknown = [t for t in tasks if t not in STEPS]
    if unknown:
        parser.error(f"no budget for {unknown}; add them to STEPS")
    if args.plan:
        for task in tasks:
            print(f"{task:15s} {STEPS[task][0]:4d} steps × batch 8, inputs ≤ {STEPS[task][1]} tokens")
        return 0
    dtype = _dtype(args.dtype)
    manifest_path = args.zoo_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"tasks": {}}
    model, tokenizer = load_model(dtype=dtype)
    origin = make_origin(model, NUM_VIRTUAL_TOKENS, **learnability.ORIGIN)
    args.zoo_dir.mkdir(parents=True, exist_ok=True)
    _save_origin(origin, args.zoo_dir / "origin.safetensors")
    manifest.update(_header(dtype, origin))
    for number, task in enumerate(tasks, start=1):
        print(f"[{number}/{len(tasks)}] {task}: {STEPS[task][0]} steps", flush=True)
        entry = build_task(task, args, model, tokenizer, origin)
        # Re-read before writing: two builds on disjoint task lists may share the manifest.
        if manifest_path.is_file():
            manifest["tasks"] = json.loads(manifest_path.read_text())["tasks"]
        manifest["tasks"][task] = entry
        manifest["tasks"] = dict(sorted(manifest["tasks"].items()))
        manifest["total_bytes"] = sum((args.zoo_dir / e["file"]).stat().st_size for e in manifest["tasks"].values())
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
        print(
            f"    {entry['metric']} validation {entry['validation']:.3f} (origin {entry['origin_validation']:.3f}), "
            f"test {entry['test']:.3f}{', AT CHANCE' if entry['at_chance'] else ''}",
            flush=True,
        )
    return 0


def _save_origin(origin, path: Path) -> None:
    from tpv import Origin

    # Rewritten only when it differs: safetensors' metadata order varies, which would churn the file in git.
    if path.is_file() and torch.equal(Origin.load(path).tensor, origin.tensor.cpu()):
        return
    origin.save(path)


def learnability_settings(task: str, run_dir: Path) -> SimpleNamespace:
    steps, max_length = STEPS[task]
    return SimpleNamespace(
        run_dir=run_dir,
        max_steps=steps,
        eval_every=50,
        batch_size=8,
        max_length=max_length,
        selection_examples=100,
        held_examples=300,
    )


def build_task(task_name: str, args, model, tokenizer, origin) -> dict:
    task = get_task(task_name)
    settings = learnability_settings(task_name, args.run_dir)
    run = learnability.run(model, tokenizer, task_name, NUM_VIRTUAL_TOKENS, LEARNING_RATE, settings)
    folder = learnability.run_folder(settings, task_name, NUM_VIRTUAL_TOKENS, LEARNING_RATE)
    vector = TaskPromptVector.load(args.run_dir / run["vector_file"])
    file_name = f"{task_name}.tpv.safetensors"
    vector.save(args.zoo_dir / file_name)
    test = load_split(task, "test", args.data_dir)[:TEST_EXAMPLES]
    test_scores = _cached_test_scores(folder, vector, task, test, origin, model, tokenizer, settings.max_length)
    held = load_split(task, "validation", args.data_dir)[100:400]
    gold = [task.label_id(e[task.label_key]) if task.is_classification else float(e[task.label_key]) for e in held]
    data_sha = {
        split: _sha256(_split_file(args.data_dir, task_name, split)) for split in ("train", "validation", "test")
    }
    return {
        "task": task_name,
        "family": task.family,
        "metric": task.metric,
        "file": file_name,
        "dtype": run["dtype"],
        "steps": run["best_step"],
        "budget": settings.max_steps,
        "batch_size": 8,
        "learning_rate": LEARNING_RATE,
        "max_length": settings.max_length,
        "train_examples": len(load_split(task, "train", args.data_dir)),
        "selection_examples": run["selection_examples"],
        "validation_examples": run["held_examples"],
        "test_examples": len(test),
        "norm": vector.norm(),
        "file_sha256": _sha256(args.zoo_dir / file_name),
        "data_sha256": data_sha,
        "run": str(folder.relative_to(args.run_dir)),
        "validation": run["held_score"],
        "origin_validation": run["origin_held_score"],
        "chance_level": run["null_mean"],
        "p_value": run["p_value"],
        "margin_over_chance": run["margin"],
        "margin_over_origin": _paired_margin(task, run["held_predictions"], run["origin_held_predictions"], gold),
        "at_chance": not run["left_chance"],
        **test_scores,
    }


def _cached_test_scores(folder: Path, vector, task, test, origin, model, tokenizer, max_length) -> dict:
    """The test split's scores of a run's vector, cached in the run folder under a key of the vector and data."""
    key = hashlib.sha256(
        vector.tensor.float().numpy().tobytes() + json.dumps([test, max_length], sort_keys=True).encode()
    ).hexdigest()
    path = folder / "zoo_test_scores.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["scores"]
    peft_model = init_prompt_tuning(copy.deepcopy(model), vector, origin=origin)
    tuned = evaluate(
        peft_model,
        tokenizer,
        task,
        test,
        batch_size=32,
        max_new_tokens=GENERATE_TOKENS,
        max_length=max_length,
        progress=True,
    )
    scores = {"test": tuned[task.metric], "test_accuracy": tuned.get("accuracy")}
    atomic_write_text(path, json.dumps({"key": key, "scores": scores}, indent=1))
    return scores


def _paired_margin(task, tuned, origin, gold) -> dict:
    """The tuned prompt's score minus the origin's on the same held examples, with a paired-bootstrap SE."""
    statistic = learnability.metric_of(task)
    tuned, origin, gold = np.asarray(tuned), np.asarray(origin), np.asarray(gold)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(gold), (BOOTSTRAP, len(gold)))
    difference = statistic(tuned, gold[None, :])[0] - statistic(origin, gold[None, :])[0]
    spread = np.std(
        [statistic(tuned[r], gold[r][None, :])[0] - statistic(origin[r], gold[r][None, :])[0] for r in rows], ddof=1
    )
    return {"difference": float(difference), "se": float(spread)}


def _header(dtype, origin) -> dict:
    return {
        "format": "tpv-zoo/1",
        "base_model": DEFAULT_MODEL,
        "commit": learnability._commit_at_start(),
        "dtype": str(dtype).removeprefix("torch."),
        "cpu": _cpu(),
        "torch": torch.__version__,
        "origin": {
            "recipe": origin.recipe,
            "seed": learnability.ORIGIN["seed"],
            "method": learnability.ORIGIN["method"],
            "num_virtual_tokens": NUM_VIRTUAL_TOKENS,
            "file": "origin.safetensors",
        },
        "command": "python scripts/build_zoo.py",
        "budget_note": BUDGET_NOTE,
        "at_chance_rule": AT_CHANCE_RULE,
        "planned": sorted(STEPS),
        "selection": "best checkpoint every 50 steps on the first 100 validation examples; every score below "
        "(validation = the 300 held validation examples after those, and the test split) is on "
        "examples the selection never saw",
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

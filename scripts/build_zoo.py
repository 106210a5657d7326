"""Build a vector zoo: one task prompt vector per task, for any model (``tpv.compose.zoo.build.build_zoo``).

    python scripts/build_zoo.py --output-dir my_zoo                       # default model, every local task
    python scripts/build_zoo.py --tasks sst2 imdb --output-dir my_zoo     # some tasks (the manifest keeps others)
    python scripts/build_zoo.py --model HuggingFaceTB/SmolLM2-360M-Instruct --output-dir zoo-360m
    python scripts/build_zoo.py --plan                                    # print the budgets and exit

Each task's budget (steps, learning rate) is the learnability study's (docs/results/learnability/budgets.json,
``tpv.compose.zoo.build.budget_for``); ``--steps`` overrides it for every task. The manifest is rewritten after
every task and a rerun keeps the tasks built with the same settings, so a killed build resumes task by task.
Then ``auto_init(model, tokenizer, task, sources="my_zoo")`` starts a new task from it.

The zoo shipped in ``tpv/compose/zoo`` was built by this script's earlier version (runs of
``scripts/learnability.py``, see its manifest's ``command``); ``--output-dir tpv/compose/zoo`` rebuilds it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tpv.compose.zoo.build import TaskBudget, budget_for, build_zoo  # noqa: E402
from tpv.data import TASKS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model id or folder (default: tpv's default model)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to build (default: every local task)")
    parser.add_argument("--output-dir", type=Path, default=None, help="the zoo folder (required unless --plan)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("TPV_DATA_DIR", REPO.parent / "shared/data"))
    )
    parser.add_argument("--virtual-tokens", type=int, default=20)
    parser.add_argument("--steps", type=int, default=None, help="one budget for every task instead of the study's")
    parser.add_argument("--dtype", default="auto", help="auto (tpv's choice for this machine), bfloat16 or float32")
    parser.add_argument("--plan", action="store_true", help="print the tasks and budgets, train nothing")
    args = parser.parse_args(argv)

    local = sorted(p.name for p in args.data_dir.iterdir() if p.is_dir() and p.name in TASKS)
    tasks = args.tasks or local
    budgets = {
        task: budget_for(task, args.virtual_tokens) if args.steps is None else TaskBudget(steps=args.steps)
        for task in tasks
    }
    if args.plan:
        for task, budget in budgets.items():
            print(f"{task:15s} {budget.steps:4d} steps × batch {budget.batch_size}, lr {budget.learning_rate:g}")
        return 0
    if args.output_dir is None:
        parser.error("--output-dir is required: the folder the zoo is written to")
    build_zoo(
        args.model,
        tasks,
        args.output_dir,
        budgets=budgets,
        num_virtual_tokens=args.virtual_tokens,
        data_dir=args.data_dir,
        dtype=args.dtype,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

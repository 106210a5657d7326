"""What one ``auto_init(sources="zoo")`` call costs, against one ``evaluate`` of the same validation examples.

    python benchmarks/auto_init_cost.py                          # sst2 (left out of the zoo), 200 examples
    python benchmarks/auto_init_cost.py --task trec --examples 200 --json runs/benchmarks/auto_init_cost.json

Both run in the same process on the default model (float32), on the same examples, so the ratio does not
depend on how fast this machine is, only on how busy it is: ``evaluate`` is timed before and after
``auto_init`` and the mean is the baseline. The deterministic cost (``plan.scored_examples`` ÷ examples: how
many evaluations' worth of examples were scored) is printed beside the wall-clock ratio; the issue's bound is
6 (the rule before successive halving scored every candidate on every example: 1 origin + 15 sources + 12
(k, λ) = 28 passes). Prints a Markdown block with the CPU named.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from tpv import auto_init, init_prompt_tuning, make_origin, zoo
from tpv.bridge.models import load_model
from tpv.bridge.precision import hardware_summary
from tpv.data import load_split
from tpv.engine.evaluation import evaluate

OLD_PASSES = 1 + 15 + 3 * 4  # origin, every zoo source, k ≤ 3 × 4 λ: each on every example


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2", help="target task; its own zoo vector is left out")
    parser.add_argument("--examples", type=int, default=200, help="validation examples (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens kept per input (engine default)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="float32")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    model, tokenizer = load_model(dtype=args.dtype)
    validation = load_split(args.task, "validation")[: args.examples]
    length = {} if args.max_length is None else {"max_length": args.max_length}
    peft_model = init_prompt_tuning(model, origin=make_origin(model, zoo.manifest()["origin"]["num_virtual_tokens"]))
    evaluate(peft_model, tokenizer, args.task, validation[:8], **length)  # warm-up: first-call set-up is not scoring

    before = _timed(lambda: evaluate(peft_model, tokenizer, args.task, validation, **length))
    started = time.perf_counter()
    plan = auto_init(
        model,
        tokenizer,
        args.task,
        "zoo",
        validation=validation,
        exclude=[args.task],
        max_validation=None,
        progress=False,
        **length,
    )
    auto_seconds = time.perf_counter() - started
    after = _timed(lambda: evaluate(peft_model, tokenizer, args.task, validation, **length))
    baseline = (before + after) / 2
    figures = {
        "task": args.task,
        "examples": len(validation),
        "sources": len(plan.table),
        "evaluate_seconds": [round(before, 2), round(after, 2)],
        "auto_init_seconds": round(auto_seconds, 2),
        "wall_clock_ratio": round(auto_seconds / baseline, 2),
        "scored_examples": plan.scored_examples,
        "cost_in_evaluations": round(plan.cost, 2),
        "old_rule_evaluations": OLD_PASSES,
        "decision": plan.decision.reason if plan.decision else "",
        "cpu": hardware_summary(model.dtype),
        "command": "python benchmarks/auto_init_cost.py " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    print(_markdown(figures))
    print(plan)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _markdown(f: dict) -> str:
    return "\n".join(
        [
            f"auto_init(sources='zoo') on {f['task']} ({f['examples']} validation examples, {f['sources']} sources; "
            f"`{f['command']}`; {f['cpu']}):",
            "",
            "| | seconds | × one evaluate |",
            "| --- | --- | --- |",
            f"| evaluate (before / after) | {f['evaluate_seconds'][0]} / {f['evaluate_seconds'][1]} | 1 |",
            f"| auto_init, wall clock | {f['auto_init_seconds']} | {f['wall_clock_ratio']} |",
            f"| auto_init, scored examples ({f['scored_examples']}) | — | {f['cost_in_evaluations']} |",
            f"| the rule before (every candidate on every example) | — | {f['old_rule_evaluations']} |",
        ]
    )


if __name__ == "__main__":
    main()

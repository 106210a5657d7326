"""Checks benchmarks/gpu_check.sh runs on a GPU, each printing what it measured (one line per fact).

    python benchmarks/gpu_smoke.py generate [--device cuda] [--examples 64]
    torchrun --standalone --nproc_per_node 1 benchmarks/gpu_smoke.py train OUTPUT_DIR [--steps 20] [--eval-examples 64]

``generate``: ``load_model(dtype="auto")`` on the device (the dtype it picks and why are printed), then
``evaluate(method="generate")`` on SST-2 validation examples with the shared prefix and with the full forward,
timed in the same run (full first, then shared, then full again; the time of the two full runs is averaged),
with the share of identical predictions. ``train``: ``train_prompt`` on the default model under ``torchrun``, the
engine it ran, its validation score and the vector's norm; it fails when the run record lacks the engine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def generate(device: str, examples: int) -> None:
    from tpv import init_prompt_tuning, make_origin
    from tpv.bridge.models import load_model
    from tpv.data import get_task, load_split
    from tpv.engine.evaluation import evaluate

    model, tokenizer = load_model(device=device, dtype="auto")
    print(f"load_model(dtype='auto') on {model.device}: {model.dtype}")
    task = get_task("sst2")
    data = load_split("sst2", "validation")[:examples]
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 20, seed=0))
    runs: dict = {}
    for name, shared in (("full", False), ("shared_prefix", True), ("full", False)):
        start = _clock(model)
        scored = evaluate(
            peft_model, tokenizer, task, data, method="generate", shared_prefix=shared, return_predictions=True
        )
        runs.setdefault(name, []).append((_clock(model) - start, scored))
    full = sum(seconds for seconds, _ in runs["full"]) / 2
    shared_seconds, shared = runs["shared_prefix"][0]
    same = sum(a == b for a, b in zip(shared["predictions"], runs["full"][0][1]["predictions"], strict=True))
    print(
        f"generate on {len(data)} examples: shared prefix {shared_seconds:.2f} s, full forward {full:.2f} s "
        f"(ratio {shared_seconds / full:.2f}); identical predictions {same}/{len(data)}; "
        f"macro-F1 {shared['macro_f1']:.3f} vs {runs['full'][0][1]['macro_f1']:.3f}; invalid {shared['invalid']}"
    )


def train(output_dir: Path, steps: int, eval_examples: int) -> None:
    from tpv.bridge.models import load_model
    from tpv.data import load_split
    from tpv.engine.training import train_prompt

    model, tokenizer = load_model(dtype="auto")
    result = train_prompt(
        model,
        tokenizer,
        "sst2",
        load_split("sst2", "train")[: steps * 16],
        origin=0,
        eval_dataset=load_split("sst2", "validation")[:eval_examples],
        output_dir=output_dir,
        max_steps=steps,
        batch_size=16,
        progress=False,
    )
    record = json.loads((output_dir / "tpv_train.json").read_text())
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    print(
        f"train_prompt under torchrun on {model.device} ({model.dtype}): engine per rank {record['engine_per_rank']}, "
        f"validation macro-F1 {result.metrics.get('eval_macro_f1', float('nan')):.3f} after {steps} steps, "
        f"|τ| {result.vector.norm():.2f}, {result.metrics['train_runtime']:.1f} s"
    )


def _clock(model) -> float:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return time.perf_counter()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    generating = commands.add_parser("generate")
    generating.add_argument("--device", default="cuda")
    generating.add_argument("--examples", type=int, default=64)
    training = commands.add_parser("train")
    training.add_argument("output_dir", type=Path)
    training.add_argument("--steps", type=int, default=20)
    training.add_argument("--eval-examples", type=int, default=64)
    args = parser.parse_args(argv)
    if args.command == "generate":
        generate(args.device, args.examples)
    else:
        train(args.output_dir, args.steps, args.eval_examples)
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

"""The shared-prefix engine under DDP: 2 processes × 1 thread, shared prefix vs full forward, in the same run.

    python benchmarks/ddp_engine.py                      # default model, sst2, global batch 16, 20 and 50 tokens
    python benchmarks/ddp_engine.py --smoke              # tiny random model, seconds

It relaunches itself under ``torch.distributed.run`` (gloo, ``--nproc-per-node`` processes, one thread each). Every
process wraps the prompt-tuned model in ``DistributedDataParallel`` as Trainer does and times, on the same global
batches (each process takes every n-th example), one training step of each engine: the loss run as the wrapped
forward (what ``train_prompt`` runs under DDP), its backward, and the reducer's all-reduce of the prompt's gradient.
A step's time is the slowest process's; the engines alternate which goes first. Rank 0 prints a Markdown table
with the command, the CPU and the ratio shared ÷ full, and the largest relative difference between the two
engines' losses (they compute the same loss).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

ENGINES = ("shared_prefix", "full")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny random model (seconds)")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--steps", type=int, default=8, help="global batches timed per setting")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (split across the processes)")
    parser.add_argument("--virtual-token-counts", nargs="+", type=int, default=[20, 50])
    parser.add_argument("--nproc-per-node", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here (rank 0)")
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        _launch(args, argv if argv is not None else sys.argv[1:])
        return
    _measure(args)


def _launch(args, argv) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    command += [str(args.nproc_per_node), __file__, *argv]
    print("$ OMP_NUM_THREADS=1", shlex.join(["python", *command[1:]]), file=sys.stderr, flush=True)
    raise SystemExit(subprocess.run(command, env=env).returncode)


def _measure(args) -> None:
    import engine as engine_benchmark
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from tpv import init_prompt_tuning, make_origin
    from tpv.bridge.precision import hardware_summary
    from tpv.data import get_task, load_split
    from tpv.data.encoding import collate, pad_token_id
    from tpv.engine.prefix import as_forward
    from tpv.engine.scoring import prompt_tuning_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, tokenizer = engine_benchmark._load(args)
    task = get_task(args.task)
    train = load_split(task.name, "train")
    batches = engine_benchmark._engine_batches(tokenizer, task, train, args)
    pad = pad_token_id(tokenizer)
    rows = []
    for virtual in args.virtual_token_counts:
        peft_model = init_prompt_tuning(model, origin=make_origin(model, virtual, seed=0))
        wrapper = DistributedDataParallel(peft_model)
        prompt = peft_model.prompt_encoder["default"].embedding.weight
        times: dict[str, list[float]] = {name: [] for name in ENGINES}
        losses: dict[str, list[float]] = {name: [] for name in ENGINES}
        for step, examples in enumerate([batches[0], *batches]):  # the first is a warm-up, off the clock
            batch = collate(examples[rank::world], pad, seq2seq=False)
            for name in ENGINES[step % 2 :] + ENGINES[: step % 2]:
                dist.barrier()
                start = time.perf_counter()
                compute = _loss_of(peft_model, prompt_tuning_loss, shared_prefix=name == "shared_prefix")
                with as_forward(peft_model, compute):
                    loss = wrapper(**batch)
                loss.backward()  # the reducer all-reduces the prompt's gradient here
                elapsed = torch.tensor(time.perf_counter() - start, dtype=torch.float64)
                dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
                prompt.grad = None
                if step > 0:
                    times[name].append(float(elapsed))
                    losses[name].append(loss.item())
        medians = {name: statistics.median(values) for name, values in times.items()}
        difference = max(abs(a - b) / abs(b) for a, b in zip(losses["shared_prefix"], losses["full"], strict=True))
        rows.append({"virtual_tokens": virtual, **medians, "loss_rel_difference": difference})
    if rank == 0:
        _report(args, rows, world, hardware_summary(next(model.parameters()).dtype))
    # Leave together and without destroy_process_group: a rank tearing gloo down while its peer had already left
    # hung there (twice, once with the barrier before it), so after the barrier each rank ends its process at once.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _loss_of(peft_model, loss, shared_prefix: bool):
    return lambda **inputs: loss(peft_model, inputs, shared_prefix=shared_prefix)


def _report(args, rows, world: int, hardware: str) -> None:
    model = "tiny random Llama" if args.smoke else "SmolLM2-135M-Instruct"
    per_process = args.batch_size // world
    print(
        f"\n{model}, task `{args.task}`, global batch {args.batch_size} ({world} processes × {per_process}), "
        f"median of {args.steps} batches; {hardware}; {world} processes × 1 thread, gloo"
    )
    print("\n| virtual tokens | step: shared prefix (s) | step: full (s) | shared ÷ full | loss rel. difference |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        ratio = row["shared_prefix"] / row["full"]
        print(
            f"| {row['virtual_tokens']} | {row['shared_prefix']:.3f} | {row['full']:.3f} | **{ratio:.2f}×** | "
            f"{row['loss_rel_difference']:.1e} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""bfloat16 against float32 on this machine: the micro-benchmark behind dtype="auto", and whole training steps.

    python benchmarks/dtype_speed.py [--steps 3] [--batch-size 8] [--length 128]

1. ``tpv.bridge.precision``'s matmul micro-benchmark (SmolLM2-135M's MLP shape), measured afresh (the cache is not
   read);
2. ``--steps`` forward+backward steps of tpv's training loss on the default model in each dtype, interleaved so
   that both see the same load on a shared machine (0 skips this part).

Prints the CPU, its ISA and the ratio bfloat16 / float32 for each; what ``dtype="auto"`` picks is on the last line.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tpv.bridge.precision import choose_dtype, hardware_summary, measure_gflops


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per dtype (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (default: %(default)s)")
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence (default: %(default)s)")
    args = parser.parse_args(argv)
    print(f"hardware: {hardware_summary()}")
    bf16, fp32 = measure_gflops(torch.bfloat16), measure_gflops(torch.float32)
    print(
        f"matmul 256×576 @ 576×1536: bfloat16 {bf16:.0f} GFLOP/s, float32 {fp32:.0f} GFLOP/s, ratio {bf16 / fp32:.2f}×"
    )
    if args.steps > 0:
        seconds = _train_steps(args.steps, args.batch_size, args.length)
        median = {dtype: statistics.median(times) for dtype, times in seconds.items()}
        print(
            f"training step ({args.batch_size}×{args.length} tokens, 20 virtual tokens, median of {args.steps}): "
            f"bfloat16 {median['bfloat16']:.2f} s, float32 {median['float32']:.2f} s, "
            f"speed ratio {median['float32'] / median['bfloat16']:.2f}×"
        )
    print(f"dtype='auto' picks: {choose_dtype('cpu', announce=False).reason}")


def _train_steps(steps: int, batch_size: int, length: int) -> dict[str, list[float]]:
    from tpv import init_prompt_tuning, make_origin
    from tpv.bridge.models import load_model
    from tpv.data.encoding import Encoded, collate
    from tpv.engine.scoring import prompt_tuning_loss

    models = {}
    for dtype in ("bfloat16", "float32"):
        model, tokenizer = load_model(dtype=dtype)
        models[dtype] = init_prompt_tuning(model, origin=make_origin(model, 20, seed=0))
    vocab = models["float32"].get_input_embeddings().num_embeddings
    rows = torch.randint(3, vocab, (batch_size, length), generator=torch.Generator().manual_seed(0)).tolist()
    batch = collate([Encoded(tuple(row[:-1]), (row[-1],)) for row in rows], tokenizer.pad_token_id, seq2seq=False)
    seconds: dict[str, list[float]] = {dtype: [] for dtype in models}
    for step in range(steps + 1):  # step 0 warms up and is not counted
        for dtype, peft_model in models.items():
            start = time.perf_counter()
            prompt_tuning_loss(peft_model, batch).backward()
            peft_model.zero_grad(set_to_none=True)
            if step:
                seconds[dtype].append(time.perf_counter() - start)
    return seconds


if __name__ == "__main__":
    main()

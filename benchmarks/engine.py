"""Engine benchmark: tpv's training and scoring against PEFT's prompt-tuning recipe and against a bare floor.

One run, one model, one data set, one set of settings; every figure is reported with a ratio to a baseline
measured in the same run, because this machine is noisy.

    python benchmarks/engine.py                       # default model, sst2, writes docs/benchmarks.md
    python benchmarks/engine.py --smoke --out /tmp/b.md   # tiny random model, seconds (CI runs this)

(1) Training examples/s of ``train_prompt`` vs the PEFT recipe for causal LMs (inputs and labels padded to a
    fixed max length, logits at every position, a plain ``transformers.Trainer``) and vs the floor (a bare
    forward+backward over the very same batches, each padded only to its own longest member, projecting onto
    the vocabulary only where a target token is scored), plus the validation macro-F1 after the same steps.
(2) ``evaluate(method="rank")`` vs ``method="generate"`` (greedy, stop at EOS, up to 128 new tokens), and rank
    vs its floor (a bare forward over the same batches, projecting only the label words' rows).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tpv import init_prompt_tuning, make_origin
from tpv.encoding import collate, encode_examples, length_sorted_batches
from tpv.evaluation import evaluate, label_token_ids
from tpv.precision import hardware_summary
from tpv.tasks import get_task, load_split
from tpv import training as tpv_training

REPO = Path(__file__).resolve().parents[1]
NOTES_MARKER = "<!-- notes: kept across reruns -->"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny random model, a few steps (CI)")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--virtual-tokens", type=int, default=20)
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="float32",
                        help="float32 by default, so every figure runs the same arithmetic (default: %(default)s)")
    parser.add_argument("--recipe-max-length", type=int, default=64,
                        help="fixed padded length of PEFT's recipe (its causal-LM example uses 64)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="generate's budget (the paper's 128)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    model, tokenizer = _load(args)
    task = get_task(args.task)
    train = load_split(task.name, "train")
    val = load_split(task.name, "validation")[: args.eval_examples]
    if args.smoke:
        train, val = train[:64], val[:24]
    origin = make_origin(model, args.virtual_tokens, seed=0)
    _warm_up(model, tokenizer, task, origin, train)
    results: dict = {"settings": vars(args) | {"out": str(args.out)}, "n_val": len(val)}

    with tempfile.TemporaryDirectory() as tmp:
        ours = _time_ours(model, tokenizer, task, origin, train, val, args, Path(tmp))
    recipe = _time_recipe(model, tokenizer, task, origin, train, val, args)
    floor = _time_training_floor(model, origin, ours.pop("batches"), args)
    results["train"] = {"ours": ours, "recipe": recipe, "floor": floor}

    trained = init_prompt_tuning(model, ours.pop("vector"), origin=origin)
    results["eval"] = _time_scoring(trained, tokenizer, task, val, args)
    report = _markdown(results, args)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Hand-written notes below the marker survive a rerun; everything above it is regenerated.
    notes = args.out.read_text().partition(NOTES_MARKER)[2] if args.out.is_file() else ""
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(report + (f"\n{NOTES_MARKER}{notes}" if notes else ""))
    os.replace(tmp_out, args.out)
    return results


def _load(args):
    if not args.smoke:
        from tpv.models import load_model

        return load_model(dtype=args.dtype)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import TINY_MODELS  # the test fixtures double as the smoke model
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # Characters as tokens: real text stays meaningful without training a tokenizer, and fits the tiny vocab.
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{chr(c): c - 28 for c in range(32, 127)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    return TINY_MODELS["llama"](), tokenizer


def _warm_up(model, tokenizer, task, origin, train) -> None:
    # The first forward/backward of a process pays for thread pools and kernel selection; keep it off the clock.
    peft_model = init_prompt_tuning(model, origin=origin)
    batch = collate(encode_examples(tokenizer, task, train[:4], seq2seq=False), 0, seq2seq=False)
    peft_model(**batch).loss.backward()


def _time_ours(model, tokenizer, task, origin, train, val, args, tmp: Path) -> dict:
    recorded: list = []
    original_call = tpv_training._Collator.__call__

    def recording_call(self, items):
        recorded.append([item["encoded"] for item in items])
        return original_call(self, items)

    tpv_training._Collator.__call__ = recording_call
    try:
        start = time.perf_counter()
        result = tpv_training.train_prompt(
            model, tokenizer, task, origin, train, output_dir=tmp / "ours", max_steps=args.steps,
            batch_size=args.batch_size, progress=False, training_args={"save_strategy": "no", "logging_steps": args.steps})
        elapsed = time.perf_counter() - start
    finally:
        tpv_training._Collator.__call__ = original_call
    train_seconds = result.metrics["train_runtime"]
    peft_model = init_prompt_tuning(model, result.vector, origin=origin)
    score = evaluate(peft_model, tokenizer, task, val, batch_size=32)[task.metric]
    tokens = sum(len(e) + args.virtual_tokens for batch in recorded for e in batch)
    padded = sum((max(len(e) for e in batch) + args.virtual_tokens) * len(batch) for batch in recorded)
    return {"seconds": train_seconds, "wall_seconds": elapsed, "examples": args.steps * args.batch_size,
            "examples_per_s": args.steps * args.batch_size / train_seconds, "val_score": score,
            "padding_fraction": 1 - tokens / padded, "vector": result.vector, "batches": recorded}


def _time_recipe(model, tokenizer, task, origin, train, val, args) -> dict:
    """PEFT's causal-LM prompt-tuning recipe: fixed-length left padding, full logits, a plain Trainer."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    max_length = args.recipe_max_length
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for example in encode_examples(tokenizer, task, train, seq2seq=False, max_length=max_length):
        ids = list(example.input_ids + example.target_ids)[-max_length:]
        labels = ([-100] * len(example.input_ids) + list(example.target_ids))[-max_length:]
        fill = max_length - len(ids)
        rows.append({"input_ids": torch.tensor([pad] * fill + ids),
                     "attention_mask": torch.tensor([0] * fill + [1] * len(ids)),
                     "labels": torch.tensor([-100] * fill + labels)})
    peft_model = init_prompt_tuning(model, origin=origin)
    trainer = Trainer(
        model=peft_model, train_dataset=rows, data_collator=default_data_collator,
        args=TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=args.steps,
                               per_device_train_batch_size=args.batch_size, learning_rate=0.3, weight_decay=1e-5,
                               warmup_steps=int(0.1 * args.steps), lr_scheduler_type="linear", save_strategy="no",
                               report_to=[], logging_steps=args.steps, disable_tqdm=True, seed=0, data_seed=0,
                               use_cpu=not torch.cuda.is_available()),
    )
    output = trainer.train()
    seconds = output.metrics["train_runtime"]
    score = evaluate(peft_model, tokenizer, task, val, batch_size=32)[task.metric]
    return {"seconds": seconds, "examples": args.steps * args.batch_size,
            "examples_per_s": args.steps * args.batch_size / seconds, "val_score": score,
            "max_length": max_length}


def _time_training_floor(model, origin, batches, args) -> dict:
    """A bare forward+backward over ours' exact batches: no Trainer, no optimizer, no data pipeline."""
    base = model
    prompt = origin.tensor[: origin.num_virtual_tokens].clone().requires_grad_(True)
    embed, body, head = base.get_input_embeddings(), base.base_model, base.get_output_embeddings()
    pad = 0
    tensors = [collate(batch, pad, seq2seq=False) for batch in batches]
    start = time.perf_counter()
    for batch in tensors:
        embeds = embed(batch["input_ids"])
        n = embeds.shape[0]
        x = torch.cat([prompt.to(embeds.dtype).unsqueeze(0).expand(n, -1, -1), embeds], 1)
        mask = torch.cat([batch["attention_mask"].new_ones(n, prompt.shape[0]), batch["attention_mask"]], 1)
        hidden = body(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
        rows, cols = (batch["labels"][:, 1:] != -100).nonzero(as_tuple=True)
        logits = head(hidden[rows, prompt.shape[0] + cols])
        F.cross_entropy(logits.float(), batch["labels"][rows, cols + 1]).backward()
        prompt.grad = None
    seconds = time.perf_counter() - start
    examples = sum(len(b) for b in batches)
    return {"seconds": seconds, "examples": examples, "examples_per_s": examples / seconds}


def _time_scoring(peft_model, tokenizer, task, val, args) -> dict:
    evaluate(peft_model, tokenizer, task, val[:8], batch_size=32)  # warm-up: first call pays one-off costs
    out = {}
    for method in ("rank", "generate"):
        start = time.perf_counter()
        result = evaluate(peft_model, tokenizer, task, val, method=method, batch_size=32,
                          max_new_tokens=args.max_new_tokens)
        seconds = time.perf_counter() - start
        out[method] = {"seconds": seconds, "examples_per_s": len(val) / seconds, "score": result[task.metric],
                       "invalid": result["invalid"]}
    out["rank_floor"] = _time_rank_floor(peft_model, tokenizer, task, val)
    return out


def _time_rank_floor(peft_model, tokenizer, task, val) -> dict:
    """One bare forward over the same batches as rank, projecting only the label words' rows."""
    base = peft_model.get_base_model()
    virtual = peft_model.peft_config["default"].num_virtual_tokens
    prompt = peft_model.prompt_encoder["default"].embedding.weight[:virtual].detach()
    encoded = encode_examples(tokenizer, task, val, seq2seq=False)
    first = torch.tensor([ids[0] for ids in label_token_ids(tokenizer, task, False)])
    head_rows = base.get_output_embeddings().weight[first]
    batches = [collate([encoded[i] for i in b], 0, seq2seq=False, with_targets=False)
               for b in length_sorted_batches([len(e.input_ids) for e in encoded], 32)]
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            embeds = base.get_input_embeddings()(batch["input_ids"])
            n = embeds.shape[0]
            x = torch.cat([prompt.to(embeds.dtype).unsqueeze(0).expand(n, -1, -1), embeds], 1)
            mask = torch.cat([batch["attention_mask"].new_ones(n, virtual), batch["attention_mask"]], 1)
            hidden = base.base_model(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
            last = virtual + batch["attention_mask"].sum(1) - 1
            (hidden[torch.arange(n), last] @ head_rows.T).argmax(1)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples_per_s": len(val) / seconds}


def _markdown(results: dict, args) -> str:
    train, ev = results["train"], results["eval"]
    ours, recipe, floor = train["ours"], train["recipe"], train["floor"]
    command = "python benchmarks/engine.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    model = "tiny random Llama (smoke)" if args.smoke else f"SmolLM2-135M-Instruct ({args.dtype})"
    lines = [
        "# Engine benchmark",
        "",
        f"Produced by `{command.strip()}` on {hardware_summary()}, {time.strftime('%Y-%m-%d')}.",
        f"Model: {model}; task `{args.task}`; {args.steps} steps × batch {args.batch_size}; "
        f"{args.virtual_tokens} virtual tokens; {results['n_val']} validation examples.",
        "",
        "## Training",
        "",
        "| run | examples/s | ratio to PEFT recipe | time ÷ floor time | validation macro-F1 after the same steps |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| tpv `train_prompt` | {ours['examples_per_s']:.2f} | {ours['examples_per_s'] / recipe['examples_per_s']:.2f}× "
        f"| {ours['seconds'] / floor['seconds']:.2f} | {ours['val_score']:.3f} |",
        f"| PEFT recipe (pad to {recipe['max_length']}, full logits, plain Trainer) | {recipe['examples_per_s']:.2f} "
        f"| 1.00× | {recipe['seconds'] / floor['seconds']:.2f} | {recipe['val_score']:.3f} |",
        f"| floor (bare forward+backward, same batches) | {floor['examples_per_s']:.2f} "
        f"| {floor['examples_per_s'] / recipe['examples_per_s']:.2f}× | 1.00 | — |",
        "",
        f"Padding in tpv's length-grouped batches: {100 * ours['padding_fraction']:.1f}% of positions "
        "(the floor uses the same batches).",
        "",
        "## Scoring",
        "",
        "| method | examples/s | ratio to generate | time ÷ rank floor time | macro-F1 | invalid outputs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method in ("rank", "generate"):
        row = ev[method]
        lines.append(f"| `evaluate(method=\"{method}\")` | {row['examples_per_s']:.2f} | "
                     f"{row['examples_per_s'] / ev['generate']['examples_per_s']:.2f}× | "
                     f"{row['seconds'] / ev['rank_floor']['seconds']:.2f} | {row['score']:.3f} | {row['invalid']} |")
    lines.append(f"| rank floor (bare forward, label rows only) | {ev['rank_floor']['examples_per_s']:.2f} | "
                 f"{ev['rank_floor']['examples_per_s'] / ev['generate']['examples_per_s']:.2f}× | 1.00 | — | — |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

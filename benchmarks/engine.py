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
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tpv import init_prompt_tuning, make_origin
from tpv.bridge.precision import hardware_summary
from tpv.data import get_task, load_split
from tpv.data.encoding import collate, encode_examples, length_sorted_batches, pad_token_id
from tpv.engine.evaluation import evaluate, label_token_ids
from tpv.engine.training import train_prompt
from tpv.experiments.tiny import tiny_llama

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
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="float32",
        help="float32 by default, so every figure runs the same arithmetic (default: %(default)s)",
    )
    parser.add_argument(
        "--recipe-max-length",
        type=int,
        default=64,
        help="fixed padded length of PEFT's recipe (its causal-LM example uses 64)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="generate's budget (the paper's 128)")
    parser.add_argument(
        "--device", default="cpu", help="with --engines: where the model runs, e.g. cuda (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--engines",
        action="store_true",
        help="compare the shared-prefix engine with today's full forward, PEFT's recipe and the "
        "floor at each --dtypes × --virtual-token-counts (writes its own section of --out)",
    )
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="with --engines")
    parser.add_argument("--virtual-token-counts", nargs="+", type=int, default=[20, 50], help="with --engines")
    parser.add_argument("--rank-repeats", type=int, default=2, help="with --engines: timed rank passes per run")
    parser.add_argument(
        "--quality-steps",
        type=int,
        default=40,
        help="with --engines: train_prompt steps per engine before scoring (0: skip)",
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.engines:
        return engine_comparison(args)

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
        from tpv.bridge.models import load_model

        return load_model(dtype=args.dtype, device=getattr(args, "device", "cpu"))
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # Characters as tokens: real text stays meaningful without training a tokenizer, and fits the tiny vocab.
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{chr(c): c - 28 for c in range(32, 127)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    # The test suite's tiny Llama, random, so the smoke run takes seconds.
    return tiny_llama(), tokenizer


def _warm_up(model, tokenizer, task, origin, train) -> None:
    # The first forward/backward of a process pays for thread pools and kernel selection; keep it off the clock.
    peft_model = init_prompt_tuning(model, origin=origin)
    batch = _on(model, collate(encode_examples(tokenizer, task, train[:4], seq2seq=False), 0, seq2seq=False))
    peft_model(**batch).loss.backward()


class _BatchRecorder:
    """The examples of every batch ``train_prompt`` trains on, read off the token ids the model embeds (a PyTorch
    forward pre-hook on the input embeddings, so train_prompt itself runs untouched)."""

    def __init__(self, model, encoded, pad: int):
        self.by_tokens: dict = {}
        for example in encoded:
            self.by_tokens.setdefault(example.input_ids + example.target_ids, example)
        self.pad, self.batches = pad, []
        self.handle = model.get_input_embeddings().register_forward_pre_hook(self._record)

    def _record(self, module, args) -> None:
        self.batches.append([self._example(row) for row in args[0].tolist()])

    def _example(self, row: list[int]):
        # Rows are right-padded; where pad is EOS the real sequence ends in one, so try the lengths from the
        # unpadded one up.
        end = len(row)
        while end and row[end - 1] == self.pad:
            end -= 1
        for length in range(end, len(row) + 1):
            example = self.by_tokens.get(tuple(row[:length]))
            if example is not None:
                return example
        raise RuntimeError(f"a training row matches no training example: {row}")


def _time_ours(model, tokenizer, task, origin, train, val, args, tmp: Path) -> dict:
    recorder = _BatchRecorder(model, encode_examples(tokenizer, task, train, seq2seq=False), pad_token_id(tokenizer))
    try:
        start = time.perf_counter()
        result = train_prompt(
            model,
            tokenizer,
            task,
            origin,
            train,
            output_dir=tmp / "ours",
            max_steps=args.steps,
            batch_size=args.batch_size,
            progress=False,
            training_args={"save_strategy": "no", "logging_steps": args.steps},
        )
        elapsed = time.perf_counter() - start
    finally:
        recorder.handle.remove()
    recorded = recorder.batches
    train_seconds = result.metrics["train_runtime"]
    peft_model = init_prompt_tuning(model, result.vector, origin=origin)
    score = evaluate(peft_model, tokenizer, task, val, batch_size=32)[task.metric]
    tokens = sum(len(e) + args.virtual_tokens for batch in recorded for e in batch)
    padded = sum((max(len(e) for e in batch) + args.virtual_tokens) * len(batch) for batch in recorded)
    return {
        "seconds": train_seconds,
        "wall_seconds": elapsed,
        "examples": args.steps * args.batch_size,
        "examples_per_s": args.steps * args.batch_size / train_seconds,
        "val_score": score,
        "padding_fraction": 1 - tokens / padded,
        "vector": result.vector,
        "batches": recorded,
    }


def _time_recipe(model, tokenizer, task, origin, train, val, args) -> dict:
    """PEFT's causal-LM prompt-tuning recipe: fixed-length left padding, full logits, a plain Trainer."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    max_length = args.recipe_max_length
    pad = pad_token_id(tokenizer)
    rows = []
    for example in encode_examples(tokenizer, task, train, seq2seq=False, max_length=max_length):
        ids = list(example.input_ids + example.target_ids)[-max_length:]
        labels = ([-100] * len(example.input_ids) + list(example.target_ids))[-max_length:]
        fill = max_length - len(ids)
        rows.append(
            {
                "input_ids": torch.tensor([pad] * fill + ids),
                "attention_mask": torch.tensor([0] * fill + [1] * len(ids)),
                "labels": torch.tensor([-100] * fill + labels),
            }
        )
    peft_model = init_prompt_tuning(model, origin=origin)
    trainer = Trainer(
        model=peft_model,
        train_dataset=rows,
        data_collator=default_data_collator,
        args=TrainingArguments(
            output_dir=tempfile.mkdtemp(),
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=0.3,
            weight_decay=1e-5,
            warmup_steps=int(0.1 * args.steps),
            lr_scheduler_type="linear",
            save_strategy="no",
            report_to=[],
            logging_steps=args.steps,
            disable_tqdm=True,
            seed=0,
            data_seed=0,
            use_cpu=not torch.cuda.is_available(),
        ),
    )
    output = trainer.train()
    seconds = output.metrics["train_runtime"]
    score = evaluate(peft_model, tokenizer, task, val, batch_size=32)[task.metric]
    return {
        "seconds": seconds,
        "examples": args.steps * args.batch_size,
        "examples_per_s": args.steps * args.batch_size / seconds,
        "val_score": score,
        "max_length": max_length,
    }


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
        result = evaluate(
            peft_model, tokenizer, task, val, method=method, batch_size=32, max_new_tokens=args.max_new_tokens
        )
        seconds = time.perf_counter() - start
        out[method] = {
            "seconds": seconds,
            "examples_per_s": len(val) / seconds,
            "score": result[task.metric],
            "invalid": result["invalid"],
        }
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
    batches = [
        _on(base, collate([encoded[i] for i in b], 0, seq2seq=False, with_targets=False))
        for b in length_sorted_batches([len(e.input_ids) for e in encoded], 32)
    ]
    start = _clock(base)
    with torch.inference_mode():
        for batch in batches:
            embeds = base.get_input_embeddings()(batch["input_ids"])
            n = embeds.shape[0]
            x = torch.cat([prompt.to(embeds.dtype).unsqueeze(0).expand(n, -1, -1), embeds], 1)
            mask = torch.cat([batch["attention_mask"].new_ones(n, virtual), batch["attention_mask"]], 1)
            hidden = base.base_model(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
            last = virtual + batch["attention_mask"].sum(1) - 1
            (hidden[torch.arange(n, device=hidden.device), last] @ head_rows.T).argmax(1)
    seconds = _clock(base) - start
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
        f"| tpv `train_prompt` | {ours['examples_per_s']:.2f} | "
        f"{ours['examples_per_s'] / recipe['examples_per_s']:.2f}× "
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
        lines.append(
            f'| `evaluate(method="{method}")` | {row["examples_per_s"]:.2f} | '
            f"{row['examples_per_s'] / ev['generate']['examples_per_s']:.2f}× | "
            f"{row['seconds'] / ev['rank_floor']['seconds']:.2f} | {row['score']:.3f} | {row['invalid']} |"
        )
    lines.append(
        f"| rank floor (bare forward, label rows only) | {ev['rank_floor']['examples_per_s']:.2f} | "
        f"{ev['rank_floor']['examples_per_s'] / ev['generate']['examples_per_s']:.2f}× | 1.00 | — | — |"
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Shared prefix vs today's full forward (the engine issue's comparison), selected with --engines.

PREFIX_BEGIN = "<!-- shared-prefix comparison: regenerated by --engines -->"
PREFIX_END = "<!-- end of shared-prefix comparison -->"


def engine_comparison(args) -> dict:
    """Per dtype × prompt length: a training step and rank scoring on the shared prefix, today's full forward,
    PEFT's recipe and the padded floor, timed interleaved on the same batches, plus validation macro-F1 (with a
    bootstrap standard error) after the same number of training steps on each engine."""
    task = get_task(args.task)
    train = load_split(task.name, "train")
    val = load_split(task.name, "validation")[: args.eval_examples]
    if args.smoke:
        train, val = train[:64], val[:24]
    results: dict = {"settings": vars(args) | {"out": str(args.out)}, "n_val": len(val), "runs": []}
    for dtype in args.dtypes:
        args.dtype = dtype
        model, tokenizer = _load(args)
        for virtual in args.virtual_token_counts:
            print(f"[engines] {dtype}, {virtual} virtual tokens", file=sys.stderr, flush=True)
            origin = make_origin(model, virtual, seed=0)
            _warm_up(model, tokenizer, task, origin, train)
            run = {"dtype": dtype, "virtual": virtual, "hardware": hardware_summary(dtype)}
            run["step"] = _time_engine_steps(model, tokenizer, task, origin, train, args)
            print(f"[engines] {dtype}, {virtual}: step seconds {run['step']}", file=sys.stderr, flush=True)
            run["rank"] = _time_engine_rank(model, tokenizer, task, origin, val, args)
            if args.quality_steps:
                run["quality"] = _engine_quality(model, tokenizer, task, origin, train, val, args)
            results["runs"].append(run)
            print(_engine_rows([run])[-1], file=sys.stderr, flush=True)
    report = _engine_markdown(results, args)
    print(report)
    text = args.out.read_text() if args.out.is_file() else ""
    before, found, rest = text.partition(PREFIX_BEGIN)
    after = rest.partition(PREFIX_END)[2] if found else ""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(
        before.rstrip("\n")
        + ("\n\n" if before else "")
        + PREFIX_BEGIN
        + "\n"
        + report
        + PREFIX_END
        + (after if after.strip() else "\n")
    )
    os.replace(tmp_out, args.out)
    return results


def _engine_batches(tokenizer, task, train, args):
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=generator)[: args.steps * args.batch_size].tolist()
    encoded = encode_examples(tokenizer, task, [train[i] for i in order], seq2seq=False)
    return [encoded[i : i + args.batch_size] for i in range(0, len(encoded), args.batch_size)]


def _time_engine_steps(model, tokenizer, task, origin, train, args) -> dict:
    """Forward+backward of one batch (no optimizer, which costs the same everywhere), median over the steps."""
    from tpv.engine.scoring import prompt_tuning_loss

    peft_model = init_prompt_tuning(model, origin=origin)
    pad = pad_token_id(tokenizer)
    prompt = peft_model.prompt_encoder["default"].embedding.weight

    def shared(batch):
        prompt_tuning_loss(peft_model, batch["tpv"], shared_prefix=True).backward()

    def full(batch):
        prompt_tuning_loss(peft_model, batch["tpv"], shared_prefix=False).backward()

    def recipe(batch):
        peft_model(**batch["recipe"]).loss.backward()

    def floor(batch):
        _floor_step(model, prompt, batch["tpv"])

    runs = {"shared_prefix": shared, "full": full, "recipe": recipe, "floor": floor}
    times: dict = {name: [] for name in runs}
    names = list(runs)
    for step, examples in enumerate(_engine_batches(tokenizer, task, train, args)):
        batch = {
            "tpv": _on(model, collate(examples, pad, seq2seq=False)),
            "recipe": _on(model, _recipe_batch(examples, pad, args)),
        }
        # Rotate the order every step, so no run always follows another (caches, thermal, neighbours' load).
        for name in names[step % len(names) :] + names[: step % len(names)]:
            start = _clock(model)
            runs[name](batch)
            times[name].append(_clock(model) - start)
            prompt.grad = None
    return {name: statistics.median(values) for name, values in times.items()}


def _floor_step(model, prompt, batch) -> None:
    embed, body, head = model.get_input_embeddings(), model.base_model, model.get_output_embeddings()
    embeds = embed(batch["input_ids"])
    n, virtual = embeds.shape[0], prompt.shape[0]
    x = torch.cat([prompt.to(embeds.dtype).unsqueeze(0).expand(n, -1, -1), embeds], 1)
    mask = torch.cat([batch["attention_mask"].new_ones(n, virtual), batch["attention_mask"]], 1)
    hidden = body(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
    rows, cols = (batch["labels"][:, 1:] != -100).nonzero(as_tuple=True)
    logits = head(hidden[rows, virtual + cols])
    F.cross_entropy(logits.float(), batch["labels"][rows, cols + 1]).backward()


def _on(model, batch: dict) -> dict:
    return {key: value.to(model.device) for key, value in batch.items()}


def _clock(model) -> float:
    # CUDA runs kernels asynchronously: a time read before they finish would measure only their launch.
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return time.perf_counter()


def _recipe_batch(examples, pad, args) -> dict:
    length = args.recipe_max_length
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for example in examples:
        ids = list(example.input_ids + example.target_ids)[-length:]
        labels = ([-100] * len(example.input_ids) + list(example.target_ids))[-length:]
        fill = length - len(ids)
        rows["input_ids"].append([pad] * fill + ids)
        rows["attention_mask"].append([0] * fill + [1] * len(ids))
        rows["labels"].append([-100] * fill + labels)
    return {key: torch.tensor(value) for key, value in rows.items()}


def _time_engine_rank(model, tokenizer, task, origin, val, args) -> dict:
    """``evaluate(method="rank")`` on each engine, PEFT's full-logit forward, and the bare floor; best of the
    repeats, interleaved."""
    peft_model = init_prompt_tuning(model, origin=origin)
    evaluate(peft_model, tokenizer, task, val[:8], batch_size=args.batch_size)  # one-off costs off the clock
    first = torch.tensor([ids[0] for ids in label_token_ids(tokenizer, task, False)])
    encoded = encode_examples(tokenizer, task, val, seq2seq=False)
    pad = pad_token_id(tokenizer)
    batches = [
        _on(model, collate([encoded[i] for i in b], pad, seq2seq=False, with_targets=False))
        for b in length_sorted_batches([len(e.input_ids) for e in encoded], args.batch_size)
    ]
    predictions = {}

    def shared():
        predictions["shared_prefix"] = evaluate(
            peft_model, tokenizer, task, val, batch_size=args.batch_size, shared_prefix=True, return_predictions=True
        )["predictions"]

    def full():
        predictions["full"] = evaluate(
            peft_model, tokenizer, task, val, batch_size=args.batch_size, shared_prefix=False, return_predictions=True
        )["predictions"]

    def recipe():
        with torch.inference_mode():
            for batch in batches:
                logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                last = logits.shape[1] - batch["input_ids"].shape[1] + batch["attention_mask"].sum(1) - 1
                logits[torch.arange(logits.shape[0], device=logits.device), last][:, first].argmax(1)

    def floor():
        _time_rank_floor(peft_model, tokenizer, task, val)

    runs = {"shared_prefix": shared, "full": full, "recipe": recipe, "floor": floor}
    times: dict = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.rank_repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            start = _clock(model)
            runs[name]()
            times[name].append(_clock(model) - start)
    out = {name: min(values) for name, values in times.items()}
    out["same_predictions"] = predictions["shared_prefix"] == predictions["full"]
    return out


def _engine_quality(model, tokenizer, task, origin, train, val, args) -> dict:
    """Validation macro-F1 after ``--quality-steps`` steps of ``train_prompt`` on each engine."""
    out = {}
    for name, flag in (("shared_prefix", True), ("full", False)):
        with tempfile.TemporaryDirectory() as tmp:
            result = train_prompt(
                model,
                tokenizer,
                task,
                origin,
                train,
                output_dir=Path(tmp) / name,
                max_steps=args.quality_steps,
                batch_size=args.batch_size,
                num_virtual_tokens=origin.num_virtual_tokens,
                progress=False,
                shared_prefix=flag,
                training_args={"save_strategy": "no", "logging_steps": args.quality_steps},
            )
        peft_model = init_prompt_tuning(model, result.vector, origin=origin)
        scored = evaluate(peft_model, tokenizer, task, val, batch_size=args.batch_size, return_predictions=True)
        gold = [task.label_id(example[task.label_key]) for example in val]
        out[name] = {
            "score": scored[task.metric],
            "se": _bootstrap_se(task, scored["predictions"], gold),
            "train_seconds": result.metrics["train_runtime"],
            "engine": result.engine,
        }
    return out


def _bootstrap_se(task, predictions, gold, resamples: int = 200) -> float:
    from tpv.engine.metrics import compute_metric

    generator = torch.Generator().manual_seed(0)
    labels = list(range(task.num_labels))
    scores = []
    for _ in range(resamples):
        index = torch.randint(len(gold), (len(gold),), generator=generator).tolist()
        scores.append(
            compute_metric(task.metric, [predictions[i] for i in index], [gold[i] for i in index], labels=labels)
        )
    return statistics.stdev(scores)


def _engine_rows(runs) -> list[str]:
    rows = []
    for run in runs:
        step, rank = run["step"], run["rank"]
        quality = run.get("quality")
        f1 = (
            "—"
            if not quality
            else " vs ".join(
                f"{quality[name]['score']:.3f} ± {quality[name]['se']:.3f}" for name in ("shared_prefix", "full")
            )
        )
        rows.append(
            f"| {run['dtype']} | {run['virtual']} | {step['shared_prefix']:.3f} | {step['full']:.3f} | "
            f"**{step['shared_prefix'] / step['full']:.2f}×** | {step['recipe'] / step['full']:.2f}× | "
            f"{step['floor'] / step['full']:.2f}× | {rank['shared_prefix']:.2f} | {rank['full']:.2f} | "
            f"**{rank['shared_prefix'] / rank['full']:.2f}×** | {rank['recipe'] / rank['full']:.2f}× | "
            f"{rank['floor'] / rank['full']:.2f}× | {'yes' if rank['same_predictions'] else 'no'} | {f1} |"
        )
    return rows


def _engine_markdown(results: dict, args) -> str:
    command = "python benchmarks/engine.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    model = "tiny random Llama (smoke)" if args.smoke else "SmolLM2-135M-Instruct"
    hardware = {run["hardware"] for run in results["runs"]}
    lines = [
        "## Shared prefix vs today's full forward",
        "",
        f"Produced by `{command.strip()}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, on "
        + "; ".join(sorted(hardware))
        + ".",
        f"Model: {model}; task `{args.task}`; batch {args.batch_size}; training step = forward+backward of one "
        f"batch (median of {args.steps} random training batches, the four runs interleaved on the same batch); "
        f'rank = `evaluate(method="rank")` over {results["n_val"]} validation examples (best of '
        f"{args.rank_repeats}, interleaved); F1 = validation macro-F1 ± bootstrap standard error after "
        f"{args.quality_steps} `train_prompt` steps on each engine (shared prefix vs full).",
        "",
        "Times are seconds; ratios divide by today's full forward of the same row (target: shared ≤ 0.6× at 50 "
        "virtual tokens, ≤ 0.8× at 20).",
        "",
        "| dtype | virtual tokens | step: shared | step: full | step shared ÷ full | recipe ÷ full | "
        "floor ÷ full | rank: shared | rank: full | rank shared ÷ full | recipe ÷ full | floor ÷ full | "
        "same predictions | macro-F1 shared vs full |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        *_engine_rows(results["runs"]),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""The dry-run plan: every unit of work of a run, what is already cached, and the estimated time left.

Cost = training steps × seconds per step + scored examples × seconds per example, both scaled per task by its
mean sequence length relative to 64 tokens (estimated from characters, ≈4 per token, capped at
``prompt.max_length``): long-text tasks (imdb, yelp) cost several times what short ones (sst2) do.

The two speeds are measured on the machine at hand (:func:`measure_speed`: a few steps of the profile's model,
dtype and batch size, seconds in all); the profile's ``model.seconds_per_step`` / ``seconds_per_example`` are
only the fallback when measuring is turned off, since a constant written on one machine is wrong on the next.
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass

import torch

from tpv.data import get_task
from tpv.experiments.config import ExperimentConfig

REFERENCE_TOKENS = 64
CHARS_PER_TOKEN = 4
# Copying the model and building a Trainer costs about this much per training run, whatever its length.
RUN_OVERHEAD_S = 2.0
# Greedy generation costs one prefill (≈ a rank pass) plus a cheap cached step per new token.
GENERATED_TOKEN_COST = 0.1


def scoring_factor(config: ExperimentConfig) -> float:
    """Cost of scoring an example under every ``protocol.scoring`` method, in rank passes."""
    return sum(
        1.0 if m == "rank" else 1.0 + GENERATED_TOKEN_COST * config.protocol.max_new_tokens
        for m in config.protocol.scoring
    )


@dataclass
class PlanItem:
    study: str
    what: str
    count: int
    steps: int
    examples: int
    seconds: float


@dataclass(frozen=True)
class Speed:
    """Seconds per training step (``prompt.batch_size`` sequences of 64 tokens) and per scored example."""

    seconds_per_step: float
    seconds_per_example: float
    source: str  # where the figures come from, printed with the plan


def profile_speed(config: ExperimentConfig) -> Speed:
    """The profile's own constants, for when nothing is measured."""
    return Speed(
        config.model.seconds_per_step, config.model.seconds_per_example, "the profile's constants, not measured here"
    )


def measure_speed(lab, repeats: int = 3) -> Speed:
    """Time ``repeats`` training steps and scoring passes of the profile's model on this machine (median of each).

    The batch is ``prompt.batch_size`` random sequences of 64 tokens, soft prompt included: the reference length
    that :func:`build_plan` scales per task.
    """
    from tpv.bridge.peft_io import init_prompt_tuning
    from tpv.data.encoding import Encoded, collate, is_seq2seq_model, pad_token_id
    from tpv.engine.scoring import prompt_tuning_loss

    config = lab.config
    model, tokenizer = lab.load()
    peft_model = init_prompt_tuning(lab.fresh_model(), origin=lab.origin(config.seeds[0]))
    length = max(2, REFERENCE_TOKENS - config.prompt.num_virtual_tokens)
    vocab = model.get_input_embeddings().num_embeddings
    rows = torch.randint(3, vocab, (config.prompt.batch_size, length), generator=torch.Generator().manual_seed(0))
    batch = collate(
        [Encoded(tuple(r[:-1]), (r[-1],)) for r in rows.tolist()],
        pad_token_id(tokenizer),
        seq2seq=is_seq2seq_model(peft_model),
    )
    batch = {k: v.to(model.device) for k, v in batch.items()}

    def train_step():
        prompt_tuning_loss(peft_model, batch).backward()
        peft_model.zero_grad(set_to_none=True)

    def score_batch():
        with torch.no_grad():
            prompt_tuning_loss(peft_model, batch)

    step, score = _median_seconds(train_step, repeats), _median_seconds(score_batch, repeats)
    from tpv.bridge.precision import hardware_summary

    where = torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else hardware_summary()
    return Speed(
        step,
        score / config.prompt.batch_size,
        f"measured here: median of {repeats} steps of {config.prompt.batch_size} × {REFERENCE_TOKENS} "
        f"tokens on {where}, {str(model.dtype).removeprefix('torch.')}",
    )


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up: the first call pays for kernel selection and allocation
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _length_factor(lab, task: str) -> float:
    config = lab.config
    sample = lab.data(task, "train")[:200]
    t = get_task(task)
    chars = sum(len(t.input_text(e)) for e in sample) / max(1, len(sample))
    tokens = min(chars / CHARS_PER_TOKEN, config.prompt.max_length) + config.prompt.num_virtual_tokens
    return max(0.25, tokens / REFERENCE_TOKENS)


def build_plan(lab, speed: Speed | None = None) -> list[PlanItem]:
    """Enumerate the work of ``lab.config``'s studies, counting each shared unit once (under its first study).

    ``speed`` prices it (default: the profile's constants; see :func:`measure_speed`).
    """
    config: ExperimentConfig = lab.config
    speed = speed or profile_speed(config)
    prompt, transfer = config.prompt, config.transfer
    seeds, studies = config.seeds, config.studies
    factor = {t: _length_factor(lab, t) for t in sorted(lab.all_tasks())}
    items: list[PlanItem] = []
    done_sources: set = set()

    def cost(task, steps, examples, batch=prompt.batch_size):
        per_step = speed.seconds_per_step * batch / prompt.batch_size
        return factor[task] * (steps * per_step + examples * speed.seconds_per_example)

    def add(study, what, units):
        units = list(units)
        if units:
            overhead = RUN_OVERHEAD_S * sum(1 for u in units if u[1])
            items.append(
                PlanItem(
                    study,
                    what,
                    len(units),
                    sum(u[1] for u in units),
                    sum(u[2] for u in units),
                    overhead + sum(cost(*u) for u in units),
                )
            )

    def sources(study, tasks):
        new = [(t, i) for t in tasks for i in seeds if (t, i) not in done_sources]
        done_sources.update(new)
        # 5 evaluations during training + the final one; by loss, one every tenth of training, each scoring twice.
        by_loss = config.source.checkpoint_metric == "loss"
        checkpoints = config.source.checkpoint_examples * (22 if by_loss else 6)
        add(study, "tune source prompts", [(t, config.source.steps_for(t), checkpoints) for t, _ in new])

    tasks = config.source.tasks
    val = config.data.validation_examples
    test = round(config.data.test_examples * scoring_factor(config))
    grid = len(transfer.scale_grid)
    if {"origin_independence", "similarity", "pairwise_sums"} & set(studies):
        sources(studies[0], tasks)
    if "origin_independence" in studies:
        add(
            "origin_independence",
            "score vectors on every origin (test)",
            [(t, 0, _scored(lab, t, test)) for t in tasks for _ in seeds for _ in seeds],
        )
    if "pairwise_sums" in studies:
        pairs = list(itertools.combinations(config.source.pairs_of, 2))
        sources("pairwise_sums", config.source.pairs_of)
        add(
            "pairwise_sums",
            "λ search on both tasks' validation sets",
            [(t, 0, grid * min(val, _split_size(lab, t, "validation"))) for p in pairs for t in p for _ in seeds],
        )
        add(
            "pairwise_sums",
            "score sums on both tasks (test)",
            [(t, 0, _scored(lab, t, test)) for p in pairs for t in p for _ in seeds],
        )
    shot_counts = config.shot_counts
    if shot_counts:
        study = "initialisation" if "initialisation" in studies else "few_shot"
        families = transfer.families
        sources(study, sorted({s for f in families for s in f.sources}))
        methods = transfer.methods
        if "spot_multi" in methods:
            add(
                study,
                "tune SPoT-multi source prompts",
                [(f.sources[0], transfer.multi_steps, 0) for f in families for _ in seeds],
            )
        if "attempt" in methods and config.protocol.attempt == "tpv":
            # ATTEMPT's forward also runs the attention module; it costs about the same as prompt tuning.
            add(
                study,
                "train ATTEMPT on the sources' mixture",
                [(f.sources[0], transfer.multi_steps, 0) for f in families for _ in seeds],
            )
        targets = [t for f in families for t in f.targets]
        per_target = {
            t: sum(len(f.sources) if m == "spot" else 1 for m in methods) for f in families for t in f.targets
        }
        if "sum_search" in methods:
            add(
                study,
                "λ search for the sum on the target's validation set",
                [(t, 0, grid * min(val, _split_size(lab, t, "validation"))) for t in targets for _ in seeds],
            )
        positive = {t: [k for k in config.shots_for(t) if k > 0] for t in targets}
        # Each checkpoint evaluation scores the held examples by rank and, for the loss, once more.
        evaluations = transfer.steps // transfer.checkpoint_every + 1 if transfer.checkpoint_examples else 0
        held = evaluations * transfer.checkpoint_examples * (2 if transfer.checkpoint_metric == "loss" else 1)
        add(
            study,
            f"k-shot prompt tuning (k in {[k for k in shot_counts if k > 0]}, {transfer.steps} steps each)",
            [
                (t, transfer.steps, held, min(prompt.batch_size, k))
                for t in targets
                for _ in seeds
                for _ in range(per_target[t])
                for k in positive[t]
            ],
        )
        add(
            study,
            f"score initialisations on targets (test, shots {shot_counts})",
            [
                (t, 0, _scored(lab, t, test))
                for t in targets
                for _ in seeds
                for _ in range(per_target[t])
                for _ in config.shots_for(t)
            ],
        )
    if "transfer" in studies:
        from tpv.experiments.studies.left_out import plan_units

        for what, units in plan_units(lab):
            add("transfer", what, units)
    return items


def _split_size(lab, task: str, split: str) -> int:
    return len(lab.data(task, split))


def _scored(lab, task: str, weighted_test: int) -> int:
    # weighted_test = test_examples × scoring_factor; a test split smaller than test_examples scales down.
    size = _split_size(lab, task, "test")
    return round(weighted_test * min(1.0, size / lab.config.data.test_examples))


def format_plan(lab, items: list[PlanItem], speed: Speed | None = None) -> str:
    config = lab.config
    speed = speed or profile_speed(config)
    lines = [
        f"Plan for profile {config.name!r} (protocol {config.protocol.name!r}: origins "
        f"{config.protocol.origin_method}, scoring {'+'.join(config.protocol.scoring)}, k-shot draw "
        f"{config.protocol.shot_draw}, ATTEMPT {config.protocol.attempt}; model {config.model.name}, dtype "
        f"{config.model.dtype}, device {config.model.device}; origins {config.seeds}); run folder {lab.run_dir}",
        f"studies: {', '.join(config.studies)}",
        "",
    ]
    lines.append(f"{'study':<22} {'work':<62} {'units':>6} {'steps':>8} {'scored':>8} {'est. time':>10}")
    for item in items:
        lines.append(
            f"{item.study:<22} {item.what[:62]:<62} {item.count:>6} {item.steps:>8} {item.examples:>8} "
            f"{_duration(item.seconds):>10}"
        )
    total = sum(item.seconds for item in items)
    steps = sum(item.steps for item in items)
    lines += [
        "",
        f"total: {steps} training steps, {sum(i.examples for i in items)} scored examples, estimated "
        f"{_duration(total)} at {speed.seconds_per_step:.3g} s/step and "
        f"{speed.seconds_per_example:.3g} s/example "
        f"for 64-token sequences ({speed.source})",
        f"already cached in the run folder: {len(lab.store)} scores (cached work is skipped and costs ~0)",
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"

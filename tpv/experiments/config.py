"""Experiment configuration: dataclasses validated in ``__post_init__``, read from TOML profiles.

A profile is a TOML file (the shipped ones live in ``tpv/experiments/profiles/``; copy one and edit it). The run
folder is keyed by :meth:`ExperimentConfig.fingerprint`, which covers only the settings that change a trained
prompt or a score (model, data sizes, training budgets, λ grid); task lists, origins, shot counts and the
studies to run are left out, because every cached item is keyed by its own task, origin and shots. So adding a
task or an origin to a profile reuses everything already computed.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from tpv.core._io import read_text
from tpv.core.errors import TPVError
from tpv.data import get_task
from tpv.data.paper_tasks import OFFICIAL_SOURCE

if sys.version_info >= (3, 11):
    import tomllib
else:  # the standard library's TOML reader, as it was published before 3.11; pyproject requires it on 3.10
    import tomli as tomllib

PROFILE_DIR = Path(__file__).parent / "profiles"
PROFILES = ("smoke", "cpu", "gpu", "paper-smoke", "paper-cpu", "paper-gpu", "transfer-smoke", "transfer-cpu")
STUDIES = ("origin_independence", "similarity", "pairwise_sums", "initialisation", "few_shot")
# Studies of tpv's own questions, beyond the paper's five: run only by the profiles that list them.
EXTRA_STUDIES = ("transfer",)
ALL_STUDIES = STUDIES + EXTRA_STUDIES
# The starts the transfer study compares on a left-out target (tpv.experiments.studies.left_out).
LEFT_OUT_STARTS = ("origin", "zoo_origin", "auto_init", "family_sum", "best_single")
LEFT_OUT_FACTORS = ("origin", "quality", "length", "template", "scale", "merge")
LEFT_OUT_MERGES = ("sum", "mean", "ties", "norm_matched")
METHODS = ("random", "spot", "spot_multi", "attempt", "sum", "sum_search")
SCORING = ("rank", "generate")
PROTOCOLS = ("tpv", "paper")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda", "auto")
TINY_MODEL = "tiny"  # a random tiny Llama with a word-level tokenizer, built in the run folder (smoke profile)


def _fail(key: str, value, fix: str):
    raise TPVError(f"config key {key!r} = {value!r} is invalid: {fix}")


def _positive_int(key: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(key, value, f"use an integer ≥ {minimum}")


def _positive_float(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        _fail(key, value, "use a finite number > 0")


def _tasks(key: str, value, minimum: int = 1) -> None:
    if (
        not isinstance(value, list)
        or len(value) < minimum
        or not all(isinstance(v, str) for v in value)
        or len(set(value)) != len(value)
    ):
        _fail(key, value, f"use a list of {minimum} or more distinct task names")
    for name in value:
        try:
            get_task(name)
        except TPVError as err:
            raise TPVError(f"config key {key!r} names an unknown task: {err}") from None


@dataclass
class ModelConfig:
    """Which model to tune prompts for, and how fast it is (for the dry-run estimate).

    Attributes:
        name: ``"default"`` (SmolLM2-135M-Instruct), ``"tiny"`` (random tiny Llama, smoke tests), or any
            Hugging Face model id or folder.
        seconds_per_step: seconds of one training step at ``prompt.batch_size`` sequences of 64 tokens
            (soft prompt included); scaled per task by its mean length.
        seconds_per_example: seconds to score one 64-token example.
    """

    name: str = "default"
    dtype: str = "auto"
    device: str = "auto"
    seconds_per_step: float = 0.7
    seconds_per_example: float = 0.015

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            _fail("model.name", self.name, "use 'default', 'tiny' or a Hugging Face model id / folder")
        if self.dtype not in DTYPES:
            _fail("model.dtype", self.dtype, f"use one of {list(DTYPES)}")
        if self.device not in DEVICES:
            _fail("model.device", self.device, f"use one of {list(DEVICES)}")
        _positive_float("model.seconds_per_step", self.seconds_per_step)
        _positive_float("model.seconds_per_example", self.seconds_per_example)

    def resolved_device(self) -> str:
        """The device the run uses here: ``"auto"`` is CUDA when one is visible, else the CPU."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise TPVError("config key 'model.device' = 'cuda' but no CUDA device is visible; use 'cpu' or 'auto'")
        return self.device

    def resolved_dtype(self) -> str:
        """The dtype name the run uses here: ``"auto"`` resolved for this machine's device
        (``tpv.bridge.precision``)."""
        from tpv.bridge.precision import resolve_dtype

        return str(resolve_dtype(self.dtype, self.resolved_device())).removeprefix("torch.")


@dataclass
class DataConfig:
    """Where the data is and how much of each split is used (a stratified subset when smaller than the split).

    Attributes:
        data_dir: folder of ``<task>/<split>.jsonl``; ``""`` uses ``TPV_DATA_DIR``.
        train_examples, validation_examples, test_examples: per task and split.
    """

    data_dir: str = ""
    train_examples: int = 2000
    validation_examples: int = 100
    test_examples: int = 500

    def __post_init__(self):
        if not isinstance(self.data_dir, str):
            _fail("data.data_dir", self.data_dir, "use a folder path as a string, or '' for TPV_DATA_DIR")
        for name in ("train_examples", "validation_examples", "test_examples"):
            _positive_int(f"data.{name}", getattr(self, name))

    def resolved_dir(self) -> str | None:
        return self.data_dir or os.environ.get("TPV_DATA_DIR") or None


@dataclass
class PromptConfig:
    """Prompt-tuning settings shared by every run."""

    num_virtual_tokens: int = 20
    learning_rate: float = 0.3
    batch_size: int = 16
    max_length: int = 256
    eval_batch_size: int = 32

    def __post_init__(self):
        for name in ("num_virtual_tokens", "batch_size", "max_length", "eval_batch_size"):
            _positive_int(f"prompt.{name}", getattr(self, name))
        _positive_float("prompt.learning_rate", self.learning_rate)


@dataclass
class ProtocolConfig:
    """How prompts are initialised, drawn, trained and scored: tpv's own protocol or the paper's official code.

    Attributes:
        name: ``"tpv"`` or ``"paper"``, printed with every table. ``"paper"`` also words every task as the
            official code does (its templates and label words, ``tpv.data.paper_tasks``); the settings below
            decide the rest.
        origin_method: ``make_origin`` method: ``"sample_vocab"`` (tpv) or ``"paper"`` (the official
            ``create_origin.py``: ids without replacement from the first 5000, one NumPy stream seeded 1024).
        scoring: scoring methods, the first one fills the tables: ``"rank"`` (label words ranked, tpv) and/or
            ``"generate"`` (greedy generation, the paper's).
        answer_match: ``"exact"`` (the official code's exact match: only the bare label word is valid) or
            ``"prefix"`` (text starting with a label word) for generated answers.
        max_new_tokens: tokens generated per answer (label words are a few tokens; the rest is never valid).
        shot_draw: ``"per_origin"`` (tpv: the k shots are drawn with each origin's seed) or ``"per_target"``
            (the paper: one seeded draw per target and k, the same examples for every origin).
        attempt: ``"reference"`` (ATTEMPT's code: no multi-task training, untrained attention at 0 shots,
            k-shot training on the target's shots only) or ``"tpv"`` (tpv's first variant, trained on the
            sources' mixture first); see ``tpv.compose.baselines.attempt``.
    """

    name: str = "tpv"
    origin_method: str = "sample_vocab"
    scoring: list = field(default_factory=lambda: ["rank"])
    answer_match: str = "prefix"
    max_new_tokens: int = 16
    shot_draw: str = "per_origin"
    attempt: str = "tpv"

    def __post_init__(self):
        choices = {
            "name": PROTOCOLS,
            "origin_method": ("sample_vocab", "paper"),
            "answer_match": ("prefix", "exact"),
            "shot_draw": ("per_origin", "per_target"),
            "attempt": ("reference", "tpv"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                _fail(f"protocol.{key}", getattr(self, key), f"use one of {list(allowed)}")
        if (
            not isinstance(self.scoring, list)
            or not self.scoring
            or any(m not in SCORING for m in self.scoring)
            or len(set(self.scoring)) != len(self.scoring)
        ):
            _fail(
                "protocol.scoring",
                self.scoring,
                f"use a non-empty list from {list(SCORING)}; the first fills the tables",
            )
        _positive_int("protocol.max_new_tokens", self.max_new_tokens)


@dataclass
class SourceConfig:
    """Source task prompts (studies 1–3 and the sources of studies 4–5).

    Attributes:
        tasks: tasks of studies 1–3 (origin independence, similarity, pairwise sums).
        pairwise_tasks: the tasks whose pairs study 3 sums; empty means all of ``tasks``.
        steps: training steps of a source prompt whose task has no entry in ``task_steps``.
        task_steps: per-task budgets (``{task: steps}``), e.g. the ones ``scripts/learnability.py`` found to
            leave chance (docs/results/learnability/budgets.json).
        task_learning_rates: per-task learning rates (``{task: rate}``) for the source prompts whose task left
            chance only at another rate than ``prompt.learning_rate`` (MNLI on the default model).
        at_chance: source tasks whose prompts stayed at chance at this profile's budget in the learnability
            study (docs/results/learnability/budgets.json). Their rows are marked † on every page: a prompt with
            no skill is no evidence for or against a finding. Not part of the run key (it changes no number).
        early_stopping_patience: stop a source prompt after this many checkpoint evaluations without a better
            checkpoint metric (0: train the whole budget); needs ``checkpoint_examples``.
        checkpoint_examples: validation examples used to keep the best checkpoint (0: keep the last).
        checkpoint_metric: ``"score"`` (the task's metric, tpv) or ``"loss"`` (validation loss every tenth of
            training, as the official configs' ``load_best_model_at_end`` with no metric).
    """

    tasks: list = field(default_factory=lambda: ["mnli", "qnli", "dbpedia", "trec", "sst2", "yelp_polarity"])
    pairwise_tasks: list = field(default_factory=list)
    steps: int = 100
    task_steps: dict = field(default_factory=dict)
    task_learning_rates: dict = field(default_factory=dict)
    at_chance: list = field(default_factory=list)
    early_stopping_patience: int = 0
    checkpoint_examples: int = 0
    checkpoint_metric: str = "score"

    def __post_init__(self):
        _tasks("source.tasks", self.tasks, minimum=2)
        if self.pairwise_tasks:
            _tasks("source.pairwise_tasks", self.pairwise_tasks, minimum=2)
        _positive_int("source.steps", self.steps)
        if not isinstance(self.task_steps, dict):
            _fail("source.task_steps", self.task_steps, "use a table of task = steps, e.g. { mnli = 300 }")
        for name, steps in self.task_steps.items():
            _tasks("source.task_steps", [name])
            _positive_int(f"source.task_steps.{name}", steps)
        if not isinstance(self.task_learning_rates, dict):
            _fail(
                "source.task_learning_rates",
                self.task_learning_rates,
                "use a table of task = learning rate, e.g. { mnli = 0.03 }",
            )
        for name, rate in self.task_learning_rates.items():
            _tasks("source.task_learning_rates", [name])
            _positive_float(f"source.task_learning_rates.{name}", rate)
        if self.at_chance:
            _tasks("source.at_chance", self.at_chance)
            strangers = [t for t in self.at_chance if t not in self.tasks]
            if strangers:
                _fail(
                    "source.at_chance", self.at_chance, f"{strangers} are not in source.tasks; list source tasks only"
                )
        _positive_int("source.early_stopping_patience", self.early_stopping_patience, minimum=0)
        if self.early_stopping_patience and not self.checkpoint_examples:
            _fail(
                "source.early_stopping_patience",
                self.early_stopping_patience,
                "early stopping judges checkpoints: set source.checkpoint_examples > 0 too, or use 0",
            )
        _positive_int("source.checkpoint_examples", self.checkpoint_examples, minimum=0)
        if self.checkpoint_metric not in ("loss", "score"):
            _fail("source.checkpoint_metric", self.checkpoint_metric, "use 'loss' or 'score'")

    @property
    def pairs_of(self) -> list:
        return self.pairwise_tasks or self.tasks

    def steps_for(self, task: str) -> int:
        """The training budget of ``task``'s source prompt."""
        return self.task_steps.get(task, self.steps)

    def learning_rate_for(self, task: str, default: float) -> float:
        """The learning rate of ``task``'s source prompt: its entry in ``task_learning_rates``, else ``default``
        (the profile's ``prompt.learning_rate``)."""
        return float(self.task_learning_rates.get(task, default))


@dataclass
class Family:
    """Source tasks and the target tasks they initialise (paper §4.3)."""

    name: str
    sources: list
    targets: list

    def __post_init__(self):
        key = f"transfer.families[{self.name!r}]"
        if not isinstance(self.name, str) or not self.name:
            _fail("transfer.families.name", self.name, "give every family a non-empty name")
        _tasks(f"{key}.sources", self.sources, minimum=2)
        _tasks(f"{key}.targets", self.targets)
        overlap = set(self.sources) & set(self.targets)
        if overlap:
            _fail(f"{key}.targets", self.targets, f"a target cannot also be a source ({sorted(overlap)})")


@dataclass
class TransferConfig:
    """Initialising new tasks (studies 4 and 5).

    Attributes:
        families: source → target groups.
        methods: initialisations compared (``spot`` means one SPoT run per single source; ``sum`` is origin +
            Σ τ at λ = 1, as the official code; ``sum_search`` picks λ on the target's validation data).
        shots: shot counts of study 4 (0 evaluates the initialisation directly).
        curve_shots: shot counts of study 5.
        curve_targets: the targets study 5 draws curves for (empty: every family's targets); a CPU profile can
            afford the curve's extra k-shot runs for a few targets only. Not part of the run key: it changes
            which runs are made, not what any run computes.
        steps: training steps of every k-shot run (a fixed budget whatever k is).
        checkpoint_examples: held validation examples on which k-shot runs keep their best checkpoint (0: keep
            the last step); ``checkpoint_every`` steps apart, judged by ``checkpoint_metric`` (``"loss"``, the
            official few-shot configs, or ``"score"``, the task's metric by rank scoring).
        multi_steps: training steps of SPoT-multi's source prompt and of ATTEMPT's multi-task training.
        proportions: how SPoT-multi / ATTEMPT mix the sources' data: ``equal``, or ``size`` (in proportion to
            the full training sets' sizes, as the paper).
        attention_learning_rate: ATTEMPT's attention-module learning rate; 0 gives it the prompt's (ATTEMPT's
            reference code trains everything at one learning rate).
        scale_grid: the λ values searched on validation data (studies 3 and 4).
    """

    families: list = field(default_factory=list)
    methods: list = field(default_factory=lambda: list(METHODS))
    shots: list = field(default_factory=lambda: [0, 100])
    curve_shots: list = field(default_factory=lambda: [5, 10, 25, 100, 250, 500])
    curve_targets: list = field(default_factory=list)
    steps: int = 30
    checkpoint_examples: int = 0
    checkpoint_every: int = 10
    checkpoint_metric: str = "loss"
    multi_steps: int = 100
    proportions: str = "equal"
    attention_learning_rate: float = 1e-3
    scale_grid: list = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8, 1.0])

    def __post_init__(self):
        families = []
        if not isinstance(self.families, list):
            _fail("transfer.families", self.families, "use a list of tables {name=..., sources=[...], targets=[...]}")
        for i, item in enumerate(self.families):
            if isinstance(item, Family):
                families.append(item)
            elif isinstance(item, dict):
                families.append(_build(Family, item, f"transfer.families[{i}]"))
            else:
                _fail(f"transfer.families[{i}]", item, "use a table {name=..., sources=[...], targets=[...]}")
        self.families = families
        if self.curve_targets:
            _tasks("transfer.curve_targets", self.curve_targets)
            targets = [t for family in families for t in family.targets]
            strangers = [t for t in self.curve_targets if t not in targets]
            if strangers:
                _fail(
                    "transfer.curve_targets", self.curve_targets, f"{strangers} are no family's target; use {targets}"
                )
        if not isinstance(self.methods, list) or not self.methods or any(m not in METHODS for m in self.methods):
            _fail("transfer.methods", self.methods, f"use a non-empty list from {list(METHODS)}")
        for key in ("shots", "curve_shots"):
            value = getattr(self, key)
            if (
                not isinstance(value, list)
                or not value
                or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in value)
            ):
                _fail(f"transfer.{key}", value, "use a non-empty list of integers ≥ 0")
        _positive_int("transfer.steps", self.steps)
        _positive_int("transfer.checkpoint_examples", self.checkpoint_examples, minimum=0)
        _positive_int("transfer.checkpoint_every", self.checkpoint_every)
        if self.checkpoint_metric not in ("loss", "score"):
            _fail("transfer.checkpoint_metric", self.checkpoint_metric, "use 'loss' or 'score'")
        _positive_int("transfer.multi_steps", self.multi_steps)
        if self.proportions not in ("equal", "size"):
            _fail("transfer.proportions", self.proportions, "use 'equal' or 'size'")
        if self.attention_learning_rate != 0:
            _positive_float("transfer.attention_learning_rate", self.attention_learning_rate)
        if (
            not isinstance(self.scale_grid, list)
            or not self.scale_grid
            or any(
                isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in self.scale_grid
            )
        ):
            _fail("transfer.scale_grid", self.scale_grid, "use a non-empty list of finite numbers, e.g. [0.5, 1.0]")


@dataclass
class LeftOutConfig:
    """The transfer study: each target is left out of the candidate vectors, and starts are compared on it.

    Attributes:
        sources: ``"zoo"`` (the vectors shipped in ``tpv.compose.zoo``, default model, 20 virtual tokens) or
            ``"tuned"`` (a zoo of ``candidates`` tuned in the run folder from the paper's origin 0 for
            ``source.steps`` steps: any model, e.g. the smoke profile's tiny one).
        candidates: the tuned zoo's tasks (``sources = "tuned"`` only; the shipped zoo has its own list).
        targets: the tasks left out one at a time.
        shots: k of the k-shot runs (the same k examples for every start of a target and seed).
        steps: training steps of every k-shot run.
        eval_every: validation every this many steps (the curve; the best checkpoint on it is kept).
        eval_examples: validation examples of the curve and of the checkpoint choice.
        selection_examples: validation examples the best single source is chosen on.
        auto_validation: validation example counts ``auto_init`` is called with (0-shot, on test).
        kshot_auto_validation: which of them gives the ``auto_init`` start of the k-shot runs.
        kshot_starts: the starts that are prompt-tuned (every start is scored at 0 shots).
        factors: part 2's measured tables (0 shots, test); see :data:`LEFT_OUT_FACTORS`.
        scales: λ values of the ``scale`` factor.
        merges: combinations of the ``merge`` factor (:data:`LEFT_OUT_MERGES`).
    """

    sources: str = "zoo"
    candidates: list = field(default_factory=list)
    targets: list = field(default_factory=lambda: ["sst2", "trec"])
    shots: list = field(default_factory=lambda: [64])
    steps: int = 80
    eval_every: int = 10
    eval_examples: int = 50
    selection_examples: int = 64
    auto_validation: list = field(default_factory=lambda: [32, 64, 200])
    kshot_auto_validation: int = 64
    kshot_starts: list = field(default_factory=lambda: ["origin", "auto_init", "family_sum", "best_single"])
    factors: list = field(default_factory=lambda: list(LEFT_OUT_FACTORS))
    scales: list = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    merges: list = field(default_factory=lambda: list(LEFT_OUT_MERGES))

    def __post_init__(self):
        if self.sources not in ("zoo", "tuned"):
            _fail("left_out.sources", self.sources, "use 'zoo' (the shipped vectors) or 'tuned' (tuned in the run)")
        if self.sources == "tuned":
            _tasks("left_out.candidates", self.candidates, minimum=2)
            strangers = [t for t in self.targets if t not in self.candidates]
            if strangers:
                _fail("left_out.targets", self.targets, f"{strangers} are not candidates; list them in candidates")
        elif self.candidates:
            _fail("left_out.candidates", self.candidates, "the shipped zoo has its own tasks: leave candidates empty")
        _tasks("left_out.targets", self.targets)
        for key in ("steps", "eval_every", "eval_examples", "selection_examples", "kshot_auto_validation"):
            _positive_int(f"left_out.{key}", getattr(self, key))
        for key in ("shots", "auto_validation"):
            value = getattr(self, key)
            if not isinstance(value, list) or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in value
            ):
                _fail(f"left_out.{key}", value, "use a list of integers ≥ 1")
        if self.kshot_auto_validation not in self.auto_validation:
            _fail(
                "left_out.kshot_auto_validation",
                self.kshot_auto_validation,
                f"use one of left_out.auto_validation {self.auto_validation}",
            )
        for key, allowed in (
            ("kshot_starts", LEFT_OUT_STARTS),
            ("factors", LEFT_OUT_FACTORS),
            ("merges", LEFT_OUT_MERGES),
        ):
            value = getattr(self, key)
            if not isinstance(value, list) or any(v not in allowed for v in value) or len(set(value)) != len(value):
                _fail(f"left_out.{key}", value, f"use distinct names from {list(allowed)}")
        if self.kshot_starts and "origin" not in self.kshot_starts:
            _fail("left_out.kshot_starts", self.kshot_starts, "include 'origin': every run is compared with its run")
        if (
            not isinstance(self.scales, list)
            or not self.scales
            or any(
                isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0
                for x in self.scales
            )
        ):
            _fail("left_out.scales", self.scales, "use a non-empty list of positive λ values, e.g. [0.1, 0.5, 1.0]")


@dataclass
class ExperimentConfig:
    """One reproduction: model, data, budgets and the studies to run.

    Attributes:
        name: the profile's name (names the run folder).
        seeds: origin seeds; two or more, because every result is a mean ± std over origins.
        studies: which of ``STUDIES`` to run.
        output_dir: where tables and figures go; ``""`` writes them into the run folder's ``results/``.
    """

    name: str = "custom"
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    studies: list = field(default_factory=lambda: list(STUDIES))
    output_dir: str = ""
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    left_out: LeftOutConfig = field(default_factory=LeftOutConfig)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\ "):
            _fail("name", self.name, "use a short name without spaces or slashes")
        if (
            not isinstance(self.seeds, list)
            or len(self.seeds) < 2
            or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds)
            or len(set(self.seeds)) != len(self.seeds)
        ):
            _fail("seeds", self.seeds, "use two or more distinct integer seeds (results are mean ± std over origins)")
        if not isinstance(self.studies, list) or not self.studies or any(s not in ALL_STUDIES for s in self.studies):
            _fail("studies", self.studies, f"use a non-empty list from {list(ALL_STUDIES)}")
        if not isinstance(self.output_dir, str):
            _fail("output_dir", self.output_dir, "use a folder path as a string, or '' for the run folder")
        for key, cls in (
            ("protocol", ProtocolConfig),
            ("model", ModelConfig),
            ("data", DataConfig),
            ("prompt", PromptConfig),
            ("source", SourceConfig),
            ("transfer", TransferConfig),
            ("left_out", LeftOutConfig),
        ):
            value = getattr(self, key)
            if isinstance(value, dict):
                setattr(self, key, _build(cls, value, key))
            elif not isinstance(value, cls):
                _fail(key, value, f"use a [{key}] table")
        if "transfer" in self.studies and self.protocol.name == "paper":
            # auto_init searches its λ by rank scoring with prefix matching, not by the paper protocol's scoring;
            # every λ search under protocol "paper" must score as its tables do (issue 25).
            _fail(
                "studies",
                self.studies,
                'the transfer study runs under protocol.name = "tpv" only (its auto_init ranks label words); '
                "run it in a profile of its own, as transfer-cpu",
            )
        if "transfer" in self.studies and self.left_out.shots and max(self.left_out.shots) > self.data.train_examples:
            _fail(
                "left_out.shots",
                max(self.left_out.shots),
                f"shots cannot exceed data.train_examples = {self.data.train_examples}; lower them or raise it",
            )
        largest = max(self.transfer.shots + self.transfer.curve_shots)
        # Only studies 4 and 5 tune at those shots (a profile of the transfer study alone does not).
        if {"initialisation", "few_shot"} & set(self.studies) and largest > self.data.train_examples:
            _fail(
                "transfer.curve_shots",
                largest,
                f"shots cannot exceed data.train_examples = {self.data.train_examples}; lower them or raise it",
            )

    @property
    def shot_counts(self) -> list[int]:
        """Every shot count some target is tuned or scored at."""
        return sorted({k for f in self.transfer.families for t in f.targets for k in self.shots_for(t)})

    def curve_targets(self) -> list[str]:
        """The targets study 5 draws curves for."""
        every = [t for f in self.transfer.families for t in f.targets]
        return [t for t in every if t in self.transfer.curve_targets] if self.transfer.curve_targets else every

    def shots_for(self, target: str) -> list[int]:
        """The shot counts ``target`` is tuned or scored at, by studies 4 and 5."""
        wanted = set()
        if "initialisation" in self.studies:
            wanted |= set(self.transfer.shots)
        if "few_shot" in self.studies and target in self.curve_targets():
            wanted |= set(self.transfer.curve_shots)
        return sorted(wanted)

    def fingerprint(self) -> str:
        """A hash of the settings that change results (see the module docstring), of the tpv version and of
        the model's files, so a code or model change never reuses stale scores."""
        from tpv.core._version import __version__
        from tpv.engine.run_folder import fingerprint_of
        from tpv.experiments.store import model_fingerprint

        # Hashed by fingerprint_of like every run of tpv; the version and the model keep the names this key has
        # always had ("tpv", "model"), so existing run folders keep their key.
        keyed = {
            "tpv": __version__,
            "protocol": {
                **{k: v for k, v in asdict(self.protocol).items() if k != "name"},
                # The paper protocol words every task as the official code (tpv.data.paper_tasks): runs from
                # before that table, which used tpv's words, must not share its cached prompts and scores.
                **({"task_words": OFFICIAL_SOURCE} if self.protocol.name == "paper" else {}),
            },
            # "auto" is keyed as what it resolves to here: bfloat16 and float32 runs give different scores, so a
            # run folder carried between machines that choose differently must not share cached results.
            "model": {
                "name": self.model.name,
                "dtype": self.model.resolved_dtype(),
                "files": model_fingerprint(self.model.name),
            },
            "data": {k: v for k, v in asdict(self.data).items() if k != "data_dir"},
            "prompt": asdict(self.prompt),
            "source": {
                "steps": self.source.steps,
                "checkpoint_examples": self.source.checkpoint_examples,
                "checkpoint_metric": self.source.checkpoint_metric,
                # Only when set, so that profiles without them keep their cache key.
                **({"task_steps": self.source.task_steps} if self.source.task_steps else {}),
                **({"task_learning_rates": self.source.task_learning_rates} if self.source.task_learning_rates else {}),
                **(
                    {"early_stopping_patience": self.source.early_stopping_patience}
                    if self.source.early_stopping_patience
                    else {}
                ),
            },
            "transfer": {
                k: getattr(self.transfer, k)
                for k in (
                    "steps",
                    "checkpoint_examples",
                    "checkpoint_every",
                    "checkpoint_metric",
                    "multi_steps",
                    "proportions",
                    "attention_learning_rate",
                    "scale_grid",
                )
            },
        }
        if "transfer" in self.studies:
            # Only for profiles that run the transfer study, so that every other profile keeps its key; the
            # shipped zoo's manifest is keyed too, since a rebuilt zoo changes every start built from it.
            keyed["left_out"] = {
                **{
                    k: getattr(self.left_out, k)
                    for k in ("sources", "steps", "eval_every", "eval_examples", "selection_examples")
                },
                "zoo": _zoo_digest() if self.left_out.sources == "zoo" else None,
            }
        return fingerprint_of(keyed)[:12]

    def to_dict(self) -> dict:
        return asdict(self)


def _zoo_digest() -> str:
    import hashlib

    from tpv.compose.zoo import ZOO_DIR

    return hashlib.sha256((ZOO_DIR / "manifest.json").read_bytes()).hexdigest()[:16]


def _build(cls, table: dict, section: str):
    if not isinstance(table, dict):
        _fail(section, table, f"use a [{section}] table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        prefix = f"{section}." if section else ""
        raise TPVError(
            f"unknown config key {prefix}{unknown[0]!r}; known keys of [{section or 'top level'}]: {sorted(known)}"
        )
    return cls(**table)


def load_config(profile: str | os.PathLike) -> ExperimentConfig:
    """Read a profile: a shipped name (``PROFILES``: ``"smoke"``, ``"cpu"``, ``"gpu"`` and their ``paper-``
    twins, which follow the paper's official code) or the path of a TOML file.

    Example:
        >>> load_config("smoke").model.name
        'tiny'
    """
    path = PROFILE_DIR / f"{profile}.toml" if str(profile) in PROFILES else Path(profile)
    if not path.is_file():
        raise TPVError(
            f"no profile {str(profile)!r}: use one of {list(PROFILES)} or the path of a TOML file "
            f"(copy one from {PROFILE_DIR})"
        )
    try:
        table = tomllib.loads(read_text(path, "the profile", "save the profile as UTF-8"))
    except tomllib.TOMLDecodeError as err:
        raise TPVError(f"profile '{path}' is not valid TOML: {err}; fix the file") from None
    return _build(ExperimentConfig, table, "")

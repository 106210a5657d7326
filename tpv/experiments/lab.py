"""`Lab`: what every study shares: the model, origins, data subsets, cached prompts and cached scores.

Each trained prompt has its own folder under ``<run>/prompts/`` (``train_prompt`` caches and resumes it); each
score and λ is an entry of ``<run>/scores.json``. Keys name the task, origin seed and shots, so studies that
need the same prompt or score (e.g. study 4's 100-shot runs and study 5's curve) share one computation.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from tpv.data import get_task, load_split
from tpv.data.paper_tasks import paper_task
from tpv.data.shots import few_shot
from tpv.experiments.config import TINY_MODEL, ExperimentConfig
from tpv.experiments.store import ScoreStore

# Training-set sizes of the full datasets (Hugging Face versions the paper used), for mixing in proportion to
# size as the paper does: the local subsets are capped at 2000 examples, so their own sizes say nothing.
FULL_TRAIN_SIZES = {
    "mnli": 392702,
    "qnli": 104743,
    "rte": 2490,
    "mrpc": 3668,
    "cola": 8551,
    "qqp": 363846,
    "stsb": 5749,
    "sst2": 67349,
    "yelp_polarity": 560000,
    "dbpedia": 560000,
    "trec": 5452,
    "snli": 550152,
    "ag_news": 120000,
    "yahoo_answers": 1400000,
    "imdb": 25000,
    "sst5": 8544,
}


class Lab:
    """Shared, lazily loaded state of one run folder."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, progress: bool = True):
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.store = ScoreStore(self.run_dir / "scores.json")
        self.trained = 0  # training runs actually executed (not loaded from cache) in this process
        self.output_dir = self.run_dir / "results"  # where results pages go; reproduce() may point elsewhere
        self._model = self._tokenizer = self._eval_model = self._attempt_base = None
        self._origins: dict = {}
        self._data: dict = {}
        self._vectors: dict = {}

    # ---- data -------------------------------------------------------------------------------------------
    def data(self, task: str, split: str) -> list[dict]:
        """A split of ``task``, cut to the configured size by a stratified (seed 0) sample."""
        key = (task, split)
        if key not in self._data:
            examples = load_split(task, split, self.config.data.resolved_dir())
            limit = getattr(self.config.data, f"{split}_examples")
            if len(examples) > limit:
                label_key = get_task(task).label_key if get_task(task).is_classification else None
                examples = few_shot(examples, limit, seed=0, label_key=label_key)
            self._data[key] = examples
        return self._data[key]

    def shots(self, task: str, k: int, seed: int) -> list[dict]:
        """The k training examples of a k-shot run from origin ``seed``: drawn with that seed (tpv), or one draw
        per target and k shared by every origin (``protocol.shot_draw = "per_target"``, the paper's)."""
        # Nested in k for a fixed seed (few_shot's guarantee), so curves compare like with like.
        draw_seed = seed if self.config.protocol.shot_draw == "per_origin" else 0
        return few_shot(self.data(task, "train"), k, seed=draw_seed)

    # ---- model ------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.config.model.resolved_device()

    @property
    def dtype(self) -> str:
        """The model's dtype as loaded (``model.dtype = "auto"`` resolved on this machine), e.g. ``"bfloat16"``."""
        return str(self.load()[0].dtype).removeprefix("torch.")

    @property
    def hardware(self) -> str:
        """What the timings of this run were measured on: the GPU's name, or the CPU's model and ISA."""
        if self.device.startswith("cuda"):
            return torch.cuda.get_device_name(self.device)
        from tpv.bridge.precision import hardware_summary

        return hardware_summary()

    def load(self):
        if self._model is None:
            from tpv.bridge.models import load_model

            name = self.config.model.name
            if name == TINY_MODEL:
                from tpv.engine.run_folder import RunLock
                from tpv.experiments.tiny import build_tiny_model

                tasks = {self.task(t) for t in self.all_tasks()}
                sample = [e for t in sorted(self.all_tasks()) for e in self.data(t, "train")[:20]]
                # Shards of one run share the folder: one builds the model, the others wait and load it.
                with RunLock(self.run_dir / "model", wait=True):
                    source = build_tiny_model(self.run_dir / "model", sorted(tasks, key=lambda t: t.name), sample)
            else:
                source = None if name == "default" else name
            self._model, self._tokenizer = load_model(source, dtype=self.config.model.dtype, device=self.device)
            if name == TINY_MODEL:
                # Vectors record their base model; a path inside the run folder would break a moved run folder.
                self._model.config._name_or_path = self._model.name_or_path = "tpv/tiny-llama"
        return self._model, self._tokenizer

    @property
    def tokenizer(self):
        return self.load()[1]

    def fresh_model(self):
        """A copy of the base model: PEFT wrapping changes the model it wraps, and every run needs a clean one."""
        return copy.deepcopy(self.load()[0])

    def task(self, task):
        """``task`` (a name or ``Task``) as this protocol words it: under ``protocol.name = "paper"`` the official
        code's template and label words (``tpv.data.paper_tasks``), else the registry's. Every training,
        evaluation and λ search goes through here, so one protocol never mixes two wordings."""
        return paper_task(task) if self.config.protocol.name == "paper" else get_task(task)

    def mixture_task(self, sources: list[str]):
        """The SPoT-multi / ATTEMPT mixture of ``sources``, each worded as :meth:`task` words it."""
        from tpv.compose.baselines.spot import mixture_task

        return mixture_task([self.task(s) for s in sources])

    def all_tasks(self) -> set[str]:
        tasks = set(self.config.source.tasks)
        for family in self.config.transfer.families:
            tasks |= set(family.sources) | set(family.targets)
        if "transfer" in self.config.studies:
            tasks |= set(self.config.left_out.targets) | set(self.config.left_out.candidates)
        return tasks

    def origin(self, seed: int):
        if seed not in self._origins:
            from tpv.core.origin import make_origin

            self._origins[seed] = make_origin(
                self.load()[0],
                self.config.prompt.num_virtual_tokens,
                seed=seed,
                method=self.config.protocol.origin_method,
            )
        return self._origins[seed]

    @property
    def eval_model(self):
        """One prompt-tuning model for every evaluation; each call swaps its prompt in."""
        if self._eval_model is None:
            from tpv.bridge.peft_io import init_prompt_tuning

            self._eval_model = init_prompt_tuning(self.fresh_model(), origin=self.origin(self.config.seeds[0]))
        return self._eval_model

    @property
    def attempt_base(self):
        """A frozen copy of the base model shared by every ATTEMPT module (they never change it)."""
        if self._attempt_base is None:
            self._attempt_base = self.fresh_model()
        return self._attempt_base

    # ---- prompts ----------------------------------------------------------------------------------------
    def train(
        self,
        task,
        origin_seed: int,
        train_data: list[dict],
        folder: str,
        *,
        steps: int,
        init_vector=None,
        init_scale: float = 1.0,
        checkpoint=None,
        early_stopping_patience: int = 0,
        learning_rate: float | None = None,
        origin=None,
        full_result: bool = False,
    ):
        """``train_prompt`` into ``<run>/prompts/<folder>`` (cached there), returning its vector. ``checkpoint``
        = ``(held validation examples, every n steps, "loss" | "score")`` keeps the best checkpoint on the
        task's first validation examples (``None``: the last step); ``early_stopping_patience`` > 0 stops after
        that many evaluations without a better one; ``learning_rate`` replaces the profile's; ``origin`` (an
        :class:`~tpv.core.origin.Origin`) replaces ``origin_seed``'s (which still seeds the run); ``full_result``
        returns the whole ``TrainResult`` (its ``history`` holds the validation curve)."""
        from tpv.engine.training import RESULT_FILENAME, train_prompt

        task = self.task(task)
        prompt = self.config.prompt
        extra_args: dict[str, object] = {"save_total_limit": 1}
        callbacks: list = []
        eval_data, eval_steps = None, None
        if checkpoint and checkpoint[0]:
            examples, every, metric = checkpoint
            eval_data = self.data(task.name, "validation")[:examples]
            eval_steps = min(every, steps) if every else None
            if metric == "loss":
                from tpv.experiments.checkpoint import LOSS_CHECKPOINT_ARGS, ValidationLossCallback

                extra_args.update(LOSS_CHECKPOINT_ARGS)
                callbacks.append(
                    ValidationLossCallback(self.tokenizer, task, eval_data, prompt.eval_batch_size, prompt.max_length)
                )
            if early_stopping_patience:
                from transformers import EarlyStoppingCallback

                # After the validation-loss callback, which adds the metric that this one reads.
                callbacks.append(EarlyStoppingCallback(early_stopping_patience=early_stopping_patience))
        output_dir = self.run_dir / "prompts" / folder
        with self._claimed(folder):
            if not (output_dir / RESULT_FILENAME).is_file():
                self.trained += 1
            result = train_prompt(
                self.fresh_model(),
                self.tokenizer,
                task,
                train_data,
                origin=self.origin(origin_seed) if origin is None else origin,
                output_dir=output_dir,
                eval_dataset=eval_data,
                max_steps=steps,
                learning_rate=prompt.learning_rate if learning_rate is None else learning_rate,
                batch_size=min(prompt.batch_size, len(train_data)),
                num_virtual_tokens=prompt.num_virtual_tokens,
                init_vector=init_vector,
                init_scale=init_scale,
                eval_batch_size=prompt.eval_batch_size,
                max_length=prompt.max_length,
                seed=origin_seed,
                progress=self.progress,
                eval_steps=eval_steps,
                args=extra_args,
                callbacks=callbacks,
            )
        return result if full_result else result.vector

    def source_vector(self, task: str, seed: int):
        """The task prompt vector of source ``task`` tuned from origin ``seed``."""
        key = ("source", task, seed)
        if key not in self._vectors:
            source = self.config.source
            # Every tenth of training, as the official configs' eval_steps = 0.1.
            steps = source.steps_for(task)
            checkpoint = (
                source.checkpoint_examples,
                max(1, steps // 10) if source.checkpoint_metric == "loss" else None,
                source.checkpoint_metric,
            )
            self._vectors[key] = self.train(
                task,
                seed,
                self.data(task, "train"),
                f"source/{task}/seed{seed}",
                steps=steps,
                checkpoint=checkpoint,
                early_stopping_patience=source.early_stopping_patience,
                learning_rate=source.learning_rate_for(task, self.config.prompt.learning_rate),
            )
        return self._vectors[key]

    def multi_vector(self, sources: list[str], seed: int):
        """SPoT-multi: one prompt tuned on the mixture of the sources' training data."""
        key = ("multi", tuple(sources), seed)
        if key not in self._vectors:
            data = self.mixture(sources, seed)
            folder = f"spot_multi/{'+'.join(sources)}/seed{seed}"
            self._vectors[key] = self.train(
                self.mixture_task(sources), seed, data, folder, steps=self.config.transfer.multi_steps
            )
        return self._vectors[key]

    def mixture(self, sources: list[str], seed: int) -> list[dict]:
        """The sources' training data mixed for SPoT-multi / ATTEMPT: equal shares, or in proportion to the full
        training sets' sizes (``FULL_TRAIN_SIZES``, the paper's), cut to the subsets at hand."""
        from tpv.compose.baselines.spot import mix_tasks

        proportions = self.config.transfer.proportions
        weights = (
            {s: FULL_TRAIN_SIZES.get(s, len(self.data(s, "train"))) for s in sources} if proportions == "size" else None
        )
        return mix_tasks({s: self.data(s, "train") for s in sources}, proportions, seed, weights=weights)

    def attempt(self, sources: list[str], seed: int):
        """A fresh ATTEMPT module over the sources' prompts from origin ``seed``: untrained, its target prompt
        the first source prompt (``protocol.attempt = "reference"``), or trained on the sources' mixture from
        the origin (``"tpv"``)."""
        from tpv.compose.baselines.attempt import Attempt

        origin = self.origin(seed)
        rows = self.config.prompt.num_virtual_tokens  # ATTEMPT prompts the encoder only: its rows come first
        prompts = {s: self.source_vector(s, seed).apply_to(origin)[:rows] for s in sources}
        if self.config.protocol.attempt == "reference":
            return Attempt(self.attempt_base, prompts, variant="reference", seed=seed)
        module = Attempt(self.attempt_base, prompts, origin.tensor[:rows], variant="tpv", seed=seed)
        self.train_attempt(
            module,
            self.mixture_task(sources),
            self.mixture(sources, seed),
            f"attempt/{'+'.join(sources)}/seed{seed}",
            self.config.transfer.multi_steps,
            seed,
        )
        return module

    def train_attempt(self, module, task, data, folder: str, steps: int, seed: int) -> None:
        """``train_attempt`` of ``module`` on ``data`` into ``<run>/prompts/<folder>`` (cached there)."""
        from tpv.compose.baselines.attempt import RESULT_FILENAME, train_attempt

        prompt = self.config.prompt
        output_dir = self.run_dir / "prompts" / folder
        with self._claimed(folder):
            if not (output_dir / RESULT_FILENAME).is_file():
                self.trained += 1
            train_attempt(
                module,
                self.tokenizer,
                self.task(task),
                data,
                output_dir=output_dir,
                max_steps=steps,
                learning_rate=prompt.learning_rate,
                attention_learning_rate=self.config.transfer.attention_learning_rate or None,
                batch_size=min(prompt.batch_size, len(data)),
                max_length=prompt.max_length,
                seed=seed,
                progress=self.progress,
            )

    def _claimed(self, folder: str):
        # Shards of one run (reproduce's shard=) can need the same prompt (a source vector both use): the first
        # trains it, the other waits here and then finds it finished in its folder. Not the prompt folder's own
        # lock, which train_prompt takes and which a second handle in this process would conflict with.
        from tpv.engine.run_folder import RunLock

        return RunLock(self.run_dir / "locks" / folder, wait=True)

    # ---- scores -----------------------------------------------------------------------------------------
    def evaluated(self, task: str, key: str, run, split: str = "test") -> dict:
        """Score fields of one prompt (or module) under every ``protocol.scoring`` method, each cached by key.

        ``run(method)`` returns ``tpv.engine.evaluation.evaluate``'s dict. The first method fills ``score``,
        ``invalid`` (answers that match no label: counted wrong), ``n`` and, for binary tasks, ``binary_f1``
        (the official code's metric); every further method adds ``<method>_score`` and ``<method>_invalid``.
        """
        metric = get_task(task).metric
        fields = {}
        for i, method in enumerate(self.config.protocol.scoring):

            def compute(method=method):
                result = run(method)
                return {
                    "score": float(result[metric]),
                    "invalid": int(result.get("invalid", 0)),
                    "n": result["n"],
                    "binary_f1": result.get("binary_f1"),
                }

            record = self.store.cached(f"{split}/{task}/{key}#{method}", compute)
            if i == 0:
                fields.update({"scoring": method, **record})
            else:
                fields.update({f"{method}_score": record["score"], f"{method}_invalid": record["invalid"]})
        return fields

    def score_fields(self, task: str, prompt_id: str, prompt_fn, split: str = "test", limit: int | None = None) -> dict:
        """:meth:`evaluated` for the soft prompt that ``prompt_fn()`` builds (built once, only when not cached), on
        ``split`` or its first ``limit`` examples (cached apart, as ``<split><limit>``)."""
        built: list = []

        def run(method):
            from tpv.engine.evaluation import evaluate

            if not built:
                built.append(prompt_fn())
            protocol = self.config.protocol
            return evaluate(
                self.eval_model,
                self.tokenizer,
                self.task(task),
                self.data(task, split)[:limit],
                prompt=built[0],
                method=method,
                batch_size=self.config.prompt.eval_batch_size,
                max_length=self.config.prompt.max_length,
                max_new_tokens=protocol.max_new_tokens,
                answer_match=protocol.answer_match,
            )

        return self.evaluated(task, prompt_id, run, split if limit is None else f"{split}{limit}")

    def score(self, task: str, prompt_id: str, prompt_fn, split: str = "test") -> float:
        """The main metric of ``task`` on ``split`` under the first scoring method (see :meth:`score_fields`)."""
        return self.score_fields(task, prompt_id, prompt_fn, split)["score"]

    def search_scale(self, key: str, vectors_fn, seed: int, tasks: list[str]) -> float:
        """λ for ``sum(vectors_fn())`` on origin ``seed``, chosen on the tasks' validation data (cached; the
        vectors are only built, and so trained or loaded, when the search runs). Candidates are scored as the
        tables are: the protocol's first scoring method and answer matching, each task worded by :meth:`task`
        (the official evaluator picks λ by generated exact match)."""

        def compute():
            from tpv.compose.search import evaluation_score_fn, search_scale

            protocol = self.config.protocol
            score_fn = evaluation_score_fn(
                self.eval_model,
                self.tokenizer,
                {self.task(t): self.data(t, "validation") for t in tasks},
                method=protocol.scoring[0],
                batch_size=self.config.prompt.eval_batch_size,
                data_dir=self.config.data.resolved_dir(),
                max_length=self.config.prompt.max_length,
                max_new_tokens=protocol.max_new_tokens,
                answer_match=protocol.answer_match,
            )
            found = search_scale(
                vectors_fn(), self.origin(seed), score_fn, grid=self.config.transfer.scale_grid, progress=self.progress
            )
            return {
                "scale": found.best_scale,
                "score": found.best_score,
                "curve": [[scale, score] for scale, score, _ in found.curve],
            }

        return self.store.cached(f"lambda/{key}/seed{seed}/val:{','.join(tasks)}", compute)["scale"]

"""`Lab`: what every study shares: the model, origins, data subsets, cached prompts and cached scores.

Each trained prompt has its own folder under ``<run>/prompts/`` (``train_prompt`` caches and resumes it); each
score and λ is an entry of ``<run>/scores.json``. Keys name the task, origin seed and shots, so studies that
need the same prompt or score (e.g. study 4's 100-shot runs and study 5's curve) share one computation.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from tpv.errors import TPVError
from tpv.experiments.config import TINY_MODEL, ExperimentConfig
from tpv.experiments.store import ScoreStore
from tpv.tasks import get_task, load_split
from tpv.tasks.shots import few_shot

class Lab:
    """Shared, lazily loaded state of one run folder."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, progress: bool = True):
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.store = ScoreStore(self.run_dir / "scores.json")
        self.trained = 0  # training runs actually executed (not loaded from cache) in this process
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
        # Nested in k for a fixed seed (few_shot's guarantee), so curves compare like with like.
        return few_shot(self.data(task, "train"), k, seed=seed)

    # ---- model ------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        wanted = self.config.model.device
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if wanted == "cuda" and not torch.cuda.is_available():
            raise TPVError("config key 'model.device' = 'cuda' but no CUDA device is visible; use 'cpu' or 'auto'")
        return wanted

    @property
    def dtype(self) -> str:
        """The model's dtype as loaded (``model.dtype = "auto"`` resolved on this machine), e.g. ``"bfloat16"``."""
        return str(self.load()[0].dtype).removeprefix("torch.")

    @property
    def hardware(self) -> str:
        """What the timings of this run were measured on: the GPU's name, or the CPU's model and ISA."""
        if self.device.startswith("cuda"):
            return torch.cuda.get_device_name(self.device)
        from tpv.precision import hardware_summary

        return hardware_summary()

    def load(self):
        if self._model is None:
            from tpv.models import load_model

            name = self.config.model.name
            if name == TINY_MODEL:
                from tpv.experiments.tiny import build_tiny_model

                tasks = {get_task(t) for t in self.all_tasks()}
                sample = [e for t in sorted(self.all_tasks()) for e in self.data(t, "train")[:20]]
                source = build_tiny_model(self.run_dir / "model", sorted(tasks, key=lambda t: t.name), sample)
            else:
                source = None if name == "default" else name
            self._model, self._tokenizer = load_model(source, dtype=self.config.model.dtype,
                                                      device=self.device)
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

    def all_tasks(self) -> set[str]:
        tasks = set(self.config.source.tasks)
        for family in self.config.transfer.families:
            tasks |= set(family.sources) | set(family.targets)
        return tasks

    def origin(self, seed: int):
        if seed not in self._origins:
            from tpv.origin import make_origin

            self._origins[seed] = make_origin(self.load()[0], self.config.prompt.num_virtual_tokens, seed=seed)
        return self._origins[seed]

    @property
    def eval_model(self):
        """One prompt-tuning model for every evaluation; each call swaps its prompt in."""
        if self._eval_model is None:
            from tpv.peft_io import init_prompt_tuning

            self._eval_model = init_prompt_tuning(self.fresh_model(), origin=self.origin(self.config.seeds[0]))
        return self._eval_model

    @property
    def attempt_base(self):
        """A frozen copy of the base model shared by every ATTEMPT module (they never change it)."""
        if self._attempt_base is None:
            self._attempt_base = self.fresh_model()
        return self._attempt_base

    # ---- prompts ----------------------------------------------------------------------------------------
    def train(self, task, origin_seed: int, train_data: list[dict], folder: str, *, steps: int,
              init_vector=None, init_scale: float = 1.0, eval_data=None):
        """``train_prompt`` into ``<run>/prompts/<folder>`` (cached there), returning its vector."""
        from tpv.training import RESULT_FILENAME, train_prompt

        prompt = self.config.prompt
        output_dir = self.run_dir / "prompts" / folder
        if not (output_dir / RESULT_FILENAME).is_file():
            self.trained += 1
        result = train_prompt(
            self.fresh_model(), self.tokenizer, task, self.origin(origin_seed), train_data, output_dir=output_dir,
            eval_data=eval_data, max_steps=steps, learning_rate=prompt.learning_rate,
            batch_size=min(prompt.batch_size, len(train_data)), num_virtual_tokens=prompt.num_virtual_tokens,
            init_vector=init_vector, init_scale=init_scale, eval_batch_size=prompt.eval_batch_size,
            max_length=prompt.max_length, seed=origin_seed, progress=self.progress,
            training_args={"save_total_limit": 1},
        )
        return result.vector

    def source_vector(self, task: str, seed: int):
        """The task prompt vector of source ``task`` tuned from origin ``seed``."""
        key = ("source", task, seed)
        if key not in self._vectors:
            checkpoint = self.config.source.checkpoint_examples
            eval_data = self.data(task, "validation")[:checkpoint] if checkpoint else None
            self._vectors[key] = self.train(task, seed, self.data(task, "train"), f"source/{task}/seed{seed}",
                                            steps=self.config.source.steps, eval_data=eval_data)
        return self._vectors[key]

    def multi_vector(self, sources: list[str], seed: int):
        """SPoT-multi: one prompt tuned on the mixture of the sources' training data."""
        from tpv.baselines.spot import mix_tasks, mixture_task

        key = ("multi", tuple(sources), seed)
        if key not in self._vectors:
            data = mix_tasks({s: self.data(s, "train") for s in sources}, self.config.transfer.proportions, seed)
            self._vectors[key] = self.train(mixture_task(sources), seed, data, f"spot_multi/{'+'.join(sources)}/seed{seed}",
                                            steps=self.config.transfer.multi_steps)
        return self._vectors[key]

    def attempt(self, sources: list[str], seed: int):
        """ATTEMPT trained on the mixture of the sources' data, from origin ``seed`` (a fresh module each call)."""
        from tpv.baselines.attempt import Attempt
        from tpv.baselines.spot import mix_tasks, mixture_task

        origin = self.origin(seed)
        module = Attempt(self.attempt_base, {s: self.source_vector(s, seed).apply_to(origin) for s in sources},
                         origin.tensor, seed=seed)
        data = mix_tasks({s: self.data(s, "train") for s in sources}, self.config.transfer.proportions, seed)
        self._train_attempt(module, mixture_task(sources), data, f"attempt/{'+'.join(sources)}/seed{seed}",
                            self.config.transfer.multi_steps, seed)
        return module

    def _train_attempt(self, module, task, data, folder, steps, seed):
        from tpv.baselines.attempt import RESULT_FILENAME, train_attempt

        prompt = self.config.prompt
        output_dir = self.run_dir / "prompts" / folder
        if not (output_dir / RESULT_FILENAME).is_file():
            self.trained += 1
        train_attempt(module, self.tokenizer, task, data, output_dir=output_dir, max_steps=steps,
                      learning_rate=prompt.learning_rate,
                      attention_learning_rate=self.config.transfer.attention_learning_rate,
                      batch_size=min(prompt.batch_size, len(data)), max_length=prompt.max_length, seed=seed,
                      progress=self.progress)

    # ---- scores -----------------------------------------------------------------------------------------
    def score(self, task: str, prompt_id: str, prompt_fn, split: str = "test") -> float:
        """The main metric of ``task`` on ``split`` for the prompt that ``prompt_fn()`` builds (cached by id)."""
        def compute():
            from tpv.evaluation import evaluate

            result = evaluate(self.eval_model, self.tokenizer, task, self.data(task, split), prompt=prompt_fn(),
                              batch_size=self.config.prompt.eval_batch_size, max_length=self.config.prompt.max_length)
            return float(result[get_task(task).metric])

        return self.store.cached(f"{split}/{task}/{prompt_id}", compute)

    def search_scale(self, key: str, vectors_fn, seed: int, tasks: list[str]) -> float:
        """λ for ``sum(vectors_fn())`` on origin ``seed``, chosen on the tasks' validation data (cached; the
        vectors are only built, and so trained or loaded, when the search runs)."""
        def compute():
            from tpv.search import evaluation_score_fn, search_scale

            score_fn = evaluation_score_fn(self.eval_model, self.tokenizer,
                                           {t: self.data(t, "validation") for t in tasks},
                                           batch_size=self.config.prompt.eval_batch_size,
                                           data_dir=self.config.data.resolved_dir())
            found = search_scale(vectors_fn(), self.origin(seed), score_fn, grid=self.config.transfer.scale_grid,
                                 progress=self.progress)
            return {"scale": found.best_scale, "score": found.best_score,
                    "curve": [[scale, score] for scale, score, _ in found.curve]}

        return self.store.cached(f"lambda/{key}/seed{seed}/val:{','.join(tasks)}", compute)["scale"]

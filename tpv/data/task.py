"""`Task`: how one dataset becomes (input text, target text) pairs for a text-to-text model."""

from __future__ import annotations

import decimal
import math
import numbers
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from tpv.core.errors import TPVError

__all__ = ["Task", "FAMILIES", "METRIC_NAMES", "NO_ANSWER"]

FAMILIES = ("nli", "topic", "sentiment", "paraphrase", "grammar", "similarity", "qa", "math")
# Names of the metrics in tpv.engine.metrics.METRICS; spelled out here because the data layer must not import the
# engine layer (tests check both lists agree).
METRIC_NAMES = ("macro_f1", "accuracy", "binary_f1", "pearson", "squad_f1", "exact_match", "rouge_l")
# SQuAD v2's unanswerable questions need a target text; a word rather than "" so the model emits something.
NO_ANSWER = "unanswerable"
_NUMBER = re.compile(r"[-+]?\d*\.?\d+")


@dataclass(frozen=True)
class Task:
    """One dataset in text-to-text form.

    Attributes:
        name: registry key, e.g. ``"mnli"``.
        family: a family name: one of ``FAMILIES`` (the paper's) or any other.
        template: a ``str.format`` template over the example's fields; the text ends where the answer begins.
        label_words: the target word of each integer label (index = label id); ``None`` for regression
            (``regression=True``) and generation tasks.
        fields: input fields the template needs; derived from the template when left empty.
        label_key: the example key holding the label (or the answer, for generation).
        metric: the task's main metric (a name in ``tpv.engine.metrics.METRICS``).
        extra_metrics: further metrics reported beside it.
        regression: targets are numbers, written as text rounded to ``regression_step``.
        regression_step: rounding step of regression targets (0.2 for STS-B, as T5 does).
        hub_id, hub_config, hub_splits: where the Hugging Face Hub loader finds the data; ``hub_splits``
            maps tpv's split names to ``datasets`` split strings (slices such as ``"validation[:50%]"`` work).

    Example:
        >>> task = Task("demo", "sentiment", "review: {text}\\nsentiment:", ("negative", "positive"))
        >>> task.format({"text": "great fun", "label": 1})
        ('review: great fun\\nsentiment:', 'positive')
    """

    name: str
    family: str
    template: str
    label_words: tuple[str, ...] | None = None
    fields: tuple[str, ...] = ()
    label_key: str = "label"
    metric: str = "macro_f1"
    extra_metrics: tuple[str, ...] = ()
    regression: bool = False
    regression_step: float = 0.2
    hub_id: str | None = None
    hub_config: str | None = None
    # hash=False: a dict cannot be hashed, and tasks are used as dict keys and in sets.
    hub_splits: Mapping[str, str] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}, hash=False
    )

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise TPVError(f"task name must be a non-empty string, got {self.name!r}")
        # Families are open: FAMILIES lists the paper's, and a user's task may name one tpv has never seen.
        if not isinstance(self.family, str) or not self.family.strip():
            raise TPVError(
                f"task {self.name!r}: family must be a non-empty name such as one of {list(FAMILIES)} or your own, "
                f"got {self.family!r}"
            )
        for metric in (self.metric, *self.extra_metrics):
            if metric not in METRIC_NAMES:
                raise TPVError(f"task {self.name!r}: unknown metric {metric!r}; use one of {list(METRIC_NAMES)}")
        try:
            placeholders = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
        except ValueError as err:
            raise TPVError(f"task {self.name!r}: bad template {self.template!r}: {err}") from err
        if any(not f.isidentifier() for f in placeholders):
            raise TPVError(
                f"task {self.name!r}: template {self.template!r} has placeholders {placeholders}; use named "
                "fields only, such as '{premise}'"
            )
        derived = tuple(dict.fromkeys(placeholders))
        if not self.fields:
            object.__setattr__(self, "fields", derived)
        elif set(self.fields) != set(derived):
            raise TPVError(
                f"task {self.name!r}: fields {list(self.fields)} differ from the template's placeholders "
                f"{list(derived)}; make them equal or leave fields empty"
            )
        if self.label_words is not None:
            words = tuple(self.label_words)
            object.__setattr__(self, "label_words", words)
            if self.regression:
                raise TPVError(f"task {self.name!r}: a regression task takes no label_words, got {words!r}")
            if len(words) < 2 or any(not isinstance(w, str) or not w.strip() for w in words):
                raise TPVError(f"task {self.name!r}: label_words must be two or more non-empty words, got {words!r}")
            if len({w.strip().lower() for w in words}) != len(words):
                raise TPVError(f"task {self.name!r}: label_words {words!r} repeat a word; make each label distinct")
        if self.regression and not (self.regression_step > 0):
            raise TPVError(f"task {self.name!r}: regression_step must be > 0, got {self.regression_step!r}")
        object.__setattr__(self, "hub_splits", dict(self.hub_splits))

    @classmethod
    def from_files(cls, source, **options) -> Task:
        """A registered task from the user's own data files; see :func:`tpv.data.files.from_files`.

        A ``datasets`` Dataset or DatasetDict goes to :meth:`from_dataset`, which reads its label names.

        Example:
            >>> task = Task.from_files("my_reviews/", text_fields="review", label_field="stars")  # doctest: +SKIP
        """
        if _is_dataset(source):
            return cls.from_dataset(source, **options)
        from tpv.data.files import from_files

        return from_files(source, **options)

    @classmethod
    def from_dataset(cls, dataset_or_id, config: str | None = None, **options) -> Task:
        """A registered task from a Hugging Face dataset; see :func:`tpv.data.dataset_task.from_dataset`.

        ``dataset_or_id`` is a ``datasets.Dataset`` or ``DatasetDict``, a ``save_to_disk`` folder or a Hub
        dataset id; the label words are the label column's ``ClassLabel`` names, the name the dataset's own, and
        unlabelled splits (imdb's ``unsupervised``) are left out with a warning. Needs ``pip install 'tpv[hub]'``.

        Example:
            >>> task = Task.from_dataset("stanfordnlp/imdb", splits=["train", "test"])  # doctest: +SKIP
        """
        from tpv.data.dataset_task import from_dataset

        return from_dataset(dataset_or_id, config, **options)

    @property
    def is_classification(self) -> bool:
        """True when targets are label words."""
        return self.label_words is not None

    @property
    def num_labels(self) -> int | None:
        """Number of classes, or ``None`` for regression and generation."""
        return None if self.label_words is None else len(self.label_words)

    def format(self, example: Mapping) -> tuple[str, str]:
        """Turn one example into ``(input_text, target_text)``.

        Raises ``TPVError`` when a template field or the label is missing, or the label is outside the label set.

        Example:
            >>> from tpv.data import get_task
            >>> get_task("stsb").format({"sentence1": "a", "sentence2": "b", "label": 3.77})[1]
            '3.8'
        """
        return self.input_text(example), self.target_text(example)

    def input_text(self, example: Mapping) -> str:
        """The model input of one example (the template filled in)."""
        if not isinstance(example, Mapping):
            raise TPVError(f"task {self.name!r}: an example must be a dict of fields, got {example!r}")
        missing = [f for f in self.fields if f not in example]
        if missing:
            raise TPVError(
                f"task {self.name!r}: example lacks field(s) {missing} that the template {self.template!r} "
                f"needs; it has keys {sorted(example)}"
            )
        return self.template.format(**{f: _as_text(example[f], self.name, f) for f in self.fields})

    def target_text(self, example: Mapping) -> str:
        """The target text of one example: a label word, a rounded score, or the reference answer."""
        if self.label_key not in example:
            raise TPVError(
                f"task {self.name!r}: example lacks its label key {self.label_key!r}; it has keys {sorted(example)}"
            )
        value = example[self.label_key]
        if self.label_words is not None:
            return self.label_words[self.label_id(value)]
        if self.regression:
            return self.score_text(value)
        return _answer_text(self.name, value)

    def label_id(self, value) -> int:
        """Validate a classification label and return it as an int id."""
        words = self.label_words or ()
        ids = range(len(words))
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) in ids:
            return int(value)
        raise TPVError(
            f"task {self.name!r}: label {value!r} is outside the label set {list(ids)} "
            f"({', '.join(f'{i}={w}' for i, w in enumerate(words))}); fix the data or the task's label_words"
        )

    def score_text(self, value) -> str:
        """A regression score as target text, rounded to ``regression_step`` (``3.77`` → ``"3.8"``)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise TPVError(f"task {self.name!r}: regression label {value!r} is not a finite number; fix the data")
        # As many decimals as the step has (0.2 -> 1), so targets read "3.8", not "3.8000000000000003".
        decimals = max(0, -int(decimal.Decimal(str(self.regression_step)).as_tuple().exponent))
        rounded = round(float(value) / self.regression_step) * self.regression_step
        return f"{rounded:.{decimals}f}"

    def parse_prediction(self, text: str, exact: bool = False):
        """Map generated text back to a label: a label id (-1 when no label word matches), a float for
        regression (NaN when no number is found), or the stripped text for generation tasks.

        With ``exact`` a label must be the whole stripped text (the official code's exact match, where
        "positive." or "positive review" is an invalid answer); otherwise the text need only start with it.

        Example:
            >>> from tpv.data import get_task
            >>> get_task("rte").parse_prediction(" not entailment\\n"), get_task("stsb").parse_prediction("3.8")
            (1, 3.8)
        """
        text = text.strip()
        words = self.label_words
        if words is not None:
            if exact:
                return next((i for i, word in enumerate(words) if text == word), -1)
            lowered = text.lower()
            # Longest word first, so "not entailment" is not read as "entailment" and vice versa.
            for i in sorted(range(len(words)), key=lambda i: -len(words[i])):
                if lowered.startswith(words[i].lower()):
                    return i
            return -1
        if self.regression:
            match = _NUMBER.search(text)
            return float(match.group()) if match else math.nan
        return text


def _is_dataset(source) -> bool:
    # By type name, so a folder or file path never imports datasets.
    return type(source).__name__ in ("Dataset", "DatasetDict") and hasattr(source, "column_names")


def _as_text(value, task_name: str, field_name: str) -> str:
    # Numbers read from CSV or JSON are text enough; a null or a list would be formatted as "None" or "['a']".
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(value)
    raise TPVError(
        f"task {task_name!r}: field {field_name!r} is {value!r}, not text; fix the data (drop the "
        "example or fill in the field)"
    )


def _answer_text(task_name: str, value) -> str:
    # SQuAD keeps answers as {"text": [...], "answer_start": [...]}; the first reference is the target, and an
    # empty list means the question is unanswerable.
    if isinstance(value, Mapping):
        value = value.get("text", [])
    if isinstance(value, (list, tuple)):
        return _as_text(value[0], task_name, "answer") if value else NO_ANSWER
    if isinstance(value, str):
        return value if value.strip() else NO_ANSWER
    raise TPVError(
        f"task {task_name!r}: answer {value!r} is neither text, a list of texts nor SQuAD's "
        "{'text': [...]} mapping; fix the data"
    )

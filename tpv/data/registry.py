"""The task registry: the paper's 19 datasets, plus any the user registers.

Label words are the paper's textual labels ("entailment", "positive", ...), lower-cased and short. Each
task's words start with distinct first tokens under the default SmolLM2 tokenizer (checked by
``tests/test_tasks.py``), so the engine can score a label by the log-likelihood of its first token alone.
SST-5's "very negative"/"very positive" would share the first token " very", so SST-5 uses the five
one-token words terrible/bad/neutral/good/great instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from tpv.core.errors import TPVError
from tpv.data.task import Task

__all__ = ["TASKS", "get_task", "list_tasks", "register_task"]

# GLUE hides its test labels, so (as in the paper's setup, after Asai et al.) the labelled validation split
# is halved into validation and test when reading from the Hub.
_GLUE_SPLITS = {"train": "train", "validation": "validation[:50%]", "test": "validation[50%:]"}
_NO_VALIDATION = {"train": "train[:95%]", "validation": "train[95%:]", "test": "test"}

_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not entailment")
_SENTIMENT2 = ("negative", "positive")


def _builtin_tasks() -> list[Task]:
    pair = "premise: {premise}\nhypothesis: {hypothesis}\nanswer:"
    glue = "nyu-mll/glue"
    return [
        # NLI
        Task(
            "mnli",
            "nli",
            pair,
            _NLI3,
            hub_id=glue,
            hub_config="mnli",
            hub_splits={"train": "train", "validation": "validation_matched", "test": "validation_mismatched"},
        ),
        Task(
            "qnli",
            "nli",
            "question: {question}\nsentence: {sentence}\nanswer:",
            _NLI2,
            hub_id=glue,
            hub_config="qnli",
            hub_splits=_GLUE_SPLITS,
        ),
        Task(
            "rte",
            "nli",
            "premise: {sentence1}\nhypothesis: {sentence2}\nanswer:",
            _NLI2,
            hub_id=glue,
            hub_config="rte",
            hub_splits=_GLUE_SPLITS,
        ),
        # SciTail's labels are "entails"/"neutral" (strings on the Hub, mapped to 0/1 by tpv.data.hub).
        Task("scitail", "nli", pair, ("entailment", "neutral"), hub_id="allenai/scitail", hub_config="tsv_format"),
        Task("snli", "nli", pair, _NLI3, hub_id="stanfordnlp/snli"),
        # Topic
        Task(
            "dbpedia",
            "topic",
            "title: {title}\ncontent: {content}\ntopic:",
            (
                "company",
                "educational institution",
                "artist",
                "athlete",
                "office holder",
                "transportation",
                "building",
                "natural place",
                "village",
                "animal",
                "plant",
                "album",
                "film",
                "written work",
            ),
            hub_id="fancyzhx/dbpedia_14",
            hub_splits=_NO_VALIDATION,
        ),
        Task(
            "trec",
            "topic",
            "question: {text}\ntype:",
            ("abbreviation", "entity", "description", "human", "location", "number"),
            hub_id="CogComp/trec",
            hub_splits=_NO_VALIDATION,
        ),
        Task(
            "ag_news",
            "topic",
            "article: {text}\ntopic:",
            ("world", "sports", "business", "science"),
            hub_id="fancyzhx/ag_news",
            hub_splits=_NO_VALIDATION,
        ),
        Task(
            "yahoo_answers",
            "topic",
            "question: {text}\ntopic:",
            (
                "society",
                "science",
                "health",
                "education",
                "computers",
                "sports",
                "business",
                "entertainment",
                "family",
                "politics",
            ),
            hub_id="community-datasets/yahoo_answers_topics",
            hub_splits=_NO_VALIDATION,
        ),
        # Sentiment
        Task(
            "sst2",
            "sentiment",
            "sentence: {sentence}\nsentiment:",
            _SENTIMENT2,
            hub_id=glue,
            hub_config="sst2",
            hub_splits=_GLUE_SPLITS,
        ),
        Task(
            "yelp_polarity",
            "sentiment",
            "review: {text}\nsentiment:",
            _SENTIMENT2,
            hub_id="fancyzhx/yelp_polarity",
            hub_splits=_NO_VALIDATION,
        ),
        Task(
            "sst5",
            "sentiment",
            "sentence: {sentence}\nsentiment:",
            ("terrible", "bad", "neutral", "good", "great"),
            hub_id="SetFit/sst5",
        ),
        Task(
            "imdb",
            "sentiment",
            "review: {text}\nsentiment:",
            _SENTIMENT2,
            hub_id="stanfordnlp/imdb",
            hub_splits=_NO_VALIDATION,
        ),
        # Paraphrase
        Task(
            "qqp",
            "paraphrase",
            "question1: {question1}\nquestion2: {question2}\nanswer:",
            ("not duplicate", "duplicate"),
            hub_id=glue,
            hub_config="qqp",
            hub_splits=_GLUE_SPLITS,
        ),
        Task(
            "mrpc",
            "paraphrase",
            "sentence1: {sentence1}\nsentence2: {sentence2}\nanswer:",
            ("not equivalent", "equivalent"),
            hub_id=glue,
            hub_config="mrpc",
            hub_splits=_GLUE_SPLITS,
        ),
        # Grammar
        Task(
            "cola",
            "grammar",
            "sentence: {sentence}\ngrammar:",
            ("unacceptable", "acceptable"),
            hub_id=glue,
            hub_config="cola",
            hub_splits=_GLUE_SPLITS,
        ),
        # Similarity: the score, rounded to 0.2, is the target text, as in T5.
        Task(
            "stsb",
            "similarity",
            "sentence1: {sentence1}\nsentence2: {sentence2}\nsimilarity:",
            metric="pearson",
            regression=True,
            hub_id=glue,
            hub_config="stsb",
            hub_splits=_GLUE_SPLITS,
        ),
        # Generation
        Task(
            "squad_v2",
            "qa",
            "context: {context}\nquestion: {question}\nanswer:",
            label_key="answers",
            metric="squad_f1",
            extra_metrics=("exact_match",),
            hub_id="rajpurkar/squad_v2",
            hub_splits={"train": "train[:95%]", "validation": "train[95%:]", "test": "validation"},
        ),
        Task(
            "math",
            "math",
            "problem: {problem}\nsolution:",
            label_key="solution",
            metric="rouge_l",
            hub_id="DigitalLearningGmbH/MATH-lighteval",
            hub_config="default",
            hub_splits=_NO_VALIDATION,
        ),
    ]


TASKS: dict[str, Task] = {task.name: task for task in _builtin_tasks()}


def get_task(name: str | Task) -> Task:
    """The registered task called ``name`` (a ``Task`` is returned as is).

    Example:
        >>> get_task("rte").label_words
        ('entailment', 'not entailment')
    """
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise TPVError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}; "
            "or add your own with tpv.data.register_task"
        ) from None


def list_tasks(family: str | None = None) -> list[str]:
    """Names of the registered tasks (of one family, if given), sorted.

    Example:
        >>> list_tasks("paraphrase")
        ['mrpc', 'qqp']
    """
    return sorted(name for name, task in TASKS.items() if family is None or task.family == family)


_CLASS_METRICS = ("macro_f1", "accuracy", "binary_f1")


def register_task(task: Task | Mapping, *, overwrite: bool = False) -> Task:
    """Add a task to the registry, from a ``Task`` or the keyword arguments of one.

    Args:
        task: a ``Task``, or a mapping such as ``{"name": ..., "family": ..., "template": ..., "label_words": ...}``.
            With ``label_words`` it is a classification task scored by ranking those words; without them, a
            generation task (the model writes the text of ``label_key``), which needs a generation metric
            (``exact_match``, ``squad_f1``, ``rouge_l``), or a regression task (``regression=True``).
        overwrite: replace a task already registered under the same name.

    Returns:
        The registered ``Task``.

    Example:
        >>> t = register_task({"name": "my_reviews", "family": "sentiment",
        ...                    "template": "review: {text}\\nsentiment:", "label_words": ("bad", "good")})
        >>> get_task("my_reviews") is t
        True
        >>> _ = TASKS.pop("my_reviews")
    """
    if isinstance(task, Mapping):
        fields = dict(task)
        try:
            task = Task(**fields)
        except TypeError as err:
            raise TPVError(f"cannot build a Task from {fields!r}: {err}") from err
    if not isinstance(task, Task):
        raise TPVError(f"register_task takes a Task or a mapping of its fields, got {type(task).__name__}")
    if task.name in TASKS and not overwrite:
        raise TPVError(f"task {task.name!r} is already registered; pick another name or pass overwrite=True")
    if task.label_words is None and not task.regression and task.metric in _CLASS_METRICS:
        # Without label words a task is a generation task whose label field holds the answer text; with a
        # class metric that is almost always a forgotten label_words, which would only fail at data loading
        # ("answer 0 is neither text …"), far from its cause.
        raise TPVError(
            f"task {task.name!r} has no label_words, so tpv would treat it as a generation task (the model writes "
            f"the text in {task.label_key!r}), but its metric {task.metric!r} scores classes; for classification "
            "pass label_words, one word per label id, e.g. label_words=('negative', 'positive'); for generation "
            "pass metric='exact_match', 'squad_f1' or 'rouge_l'"
        )
    TASKS[task.name] = task
    return task

"""The official code's templates and label words, which ``protocol="paper"`` uses for every task.

Transcribed (read, not copied) from ``tasks/tasks.py`` and ``tasks/type.py`` of kinit-sk/task-prompt-vectors at
commit ``OFFICIAL_COMMIT``: the ``*Text`` classes (the paper's textual labels; the plain classes train on the digits
"0", "1", ...). Each template is what the official ``CausalLM.formater`` builds with ``add_prefix=True`` (the
default of the official T5 configs): the task's name without ``_text``, the input pieces joined by spaces, then
``" label: "``. tpv writes the answer after one space of its own (``tpv.data.encoding``), so the templates here
end in ``"label:"``: the same text. Field names are tpv's data files' (the official SciTail reads ``sentence1``
where tpv's files say ``premise``; the text around them is the official one). Exceptions, each said in
docs/protocol.md: tpv's Yahoo Answers files hold one ``text`` field where the official code joins title, content
and best answer; SQuAD v2 and MATH have only instruction-model classes there and keep tpv's own template; SST-5
takes the words of the official ``SST5Text`` class, although the official name table sends ``sst5_text`` to
``SST2Text`` (so the official SST-5 runs read SST-2; see docs/protocol.md).

Label words keep the official spelling and case ("not_entailment", "Sci/Tech", "very negative"); an answer is
right under the paper protocol's exact match only when it is that word.
"""

from __future__ import annotations

from dataclasses import replace

from tpv.core.errors import TPVError
from tpv.data.task import Task

__all__ = ["OFFICIAL_COMMIT", "OFFICIAL_TASKS", "paper_task"]

OFFICIAL_COMMIT = "3866c35"
OFFICIAL_SOURCE = f"kinit-sk/task-prompt-vectors@{OFFICIAL_COMMIT}:tasks/tasks.py"

_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")
_SENTIMENT2 = ("negative", "positive")

# tpv task name -> (template, label words; None for a regression task). The official class is named per row.
OFFICIAL_TASKS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    # MNLIText
    "mnli": ("mnli premise: {premise} hypothesis: {hypothesis} label:", _NLI3),
    # QNLIText
    "qnli": ("qnli question: {question} sentence: {sentence} label:", _NLI2),
    # RTEText
    "rte": ("rte sentence1: {sentence1} sentence2: {sentence2} label:", _NLI2),
    # SciTailText (official fields sentence1/sentence2; tpv's files name them premise/hypothesis)
    "scitail": ("scitail premise: {premise} hypothesis: {hypothesis} label:", ("entailment", "neutral")),
    # SNLIText
    "snli": ("snli premise: {premise} hypothesis: {hypothesis} label:", _NLI3),
    # DBPEDIAText
    "dbpedia": (
        "dbpedia What is the category for following text: title: {title} content: {content} label:",
        (
            "Company",
            "Educational Institution",
            "Artist",
            "Athlete",
            "Office Holder",
            "Mean Of Transportation",
            "Building",
            "Natural Place",
            "Village",
            "Animal",
            "Plant",
            "Album",
            "Film",
            "Written Work",
        ),
    ),
    # TRECCoarseText (named trec_coarse_text, so its prefix is "trec_coarse")
    "trec": (
        "trec_coarse What is this question asking for: {text} label:",
        ("Abbreviation", "Entity", "Description", "Person", "Location", "Quantity"),
    ),
    # AGNewsText
    "ag_news": (
        "ag_news What is the category for following text: {text} label:",
        ("World", "Sports", "Business", "Sci/Tech"),
    ),
    # YahooText (named yahoo_text; its title/content/answer pieces are one "text" field in tpv's files)
    "yahoo_answers": (
        "yahoo What is the category for following text: {text} label:",
        (
            "Society",
            "Science",
            "Health",
            "Education",
            "Computers",
            "Sports",
            "Business",
            "Entertainment",
            "Family",
            "Politics",
        ),
    ),
    # SST2Text
    "sst2": ("sst2 sentence: {sentence} label:", _SENTIMENT2),
    # YelpPolarityText ("sentence:" before the review, as the official class)
    "yelp_polarity": ("yelp_polarity sentence: {text} label:", _SENTIMENT2),
    # SST5Text ("sentence" without a colon, as the official class; the official TASK_MAPPING maps "sst5_text" to
    # SST2Text, but a five-class task needs the five-class words)
    "sst5": (
        "sst5 sentence {sentence} label:",
        ("very negative", "negative", "neutral", "positive", "very positive"),
    ),
    # IMDBText
    "imdb": ("imdb sentence: {text} label:", _SENTIMENT2),
    # QQPText
    "qqp": ("qqp question1: {question1} question2: {question2} label:", ("not_duplicate", "duplicate")),
    # MRPCText
    "mrpc": ("mrpc sentence1: {sentence1} sentence2: {sentence2} label:", ("not_equivalent", "equivalent")),
    # COLAText
    "cola": ("cola sentence: {sentence} label:", ("unacceptable", "acceptable")),
    # STSBText (targets are the score rounded to 0.2, as tpv's)
    "stsb": ("stsb sentence1: {sentence1} sentence2: {sentence2} label:", None),
}


def paper_task(task: Task | str) -> Task:
    """``task`` with the official code's template and label words (``OFFICIAL_TASKS``), for ``protocol="paper"``.

    A task the official code has no class for (SQuAD v2, MATH, a user's own task) comes back unchanged: the
    paper protocol has nothing to say about its wording.

    Example:
        >>> paper_task("sst5").label_words[0], paper_task("qnli").template
        ('very negative', 'qnli question: {question} sentence: {sentence} label:')
    """
    from tpv.data.registry import get_task

    resolved = get_task(task)
    if resolved.name not in OFFICIAL_TASKS:
        return resolved
    template, words = OFFICIAL_TASKS[resolved.name]
    if (words is None) != (resolved.label_words is None) or (words and len(words) != resolved.num_labels):
        raise TPVError(
            f"task {resolved.name!r} has {resolved.num_labels} labels but the official table "
            f"({OFFICIAL_SOURCE}) lists {words!r}; a task registered over a built-in one cannot take the paper's "
            "words: register it under another name"
        )
    return replace(resolved, template=template, label_words=words, fields=())

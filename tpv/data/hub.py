"""Read a task split from the Hugging Face Hub with the optional ``datasets`` package.

Kept apart from the local loader because it cannot run offline (tests use ``TPV_DATA_DIR``). The Hub copies
differ from the local files in a few column names and label encodings; ``_ADAPT`` maps them to the local form.
"""

from __future__ import annotations

from tpv.core.errors import TPVError
from tpv.data.task import Task

__all__ = ["load_hub_split"]


def _rename(old: str, new: str):
    return lambda ex: {**{k: v for k, v in ex.items() if k != old}, new: ex[old]}


_ADAPT = {
    "trec": _rename("coarse_label", "label"),
    "sst5": _rename("text", "sentence"),
    # The local yahoo_answers text is the question title and content joined, without the best answer.
    "yahoo_answers": lambda ex: {
        "text": f"{ex['question_title']} {ex['question_content']}".strip(),
        "label": ex["topic"],
    },
    "scitail": lambda ex: {**ex, "label": {"entails": 0, "neutral": 1}.get(ex["label"], ex["label"])},
}


def load_hub_split(task: Task, split: str) -> list[dict]:
    """Load one split of ``task`` from the Hub, in the same form as the local files.

    Example:
        >>> from tpv.data import get_task
        >>> load_hub_split(get_task("rte"), "train")[0]  # doctest: +SKIP
        {'sentence1': ..., 'sentence2': ..., 'label': 1, 'idx': 0}
    """
    try:
        import datasets  # optional dependency: tpv[hub]
    except ImportError:
        raise TPVError(
            f"reading task {task.name!r} from the Hugging Face Hub needs the optional package 'datasets'; install "
            "it with pip install 'tpv[hub]', or pass data_dir= a folder of local files"
        ) from None

    if task.hub_id is None:
        raise TPVError(f"task {task.name!r} names no Hub dataset; pass data_dir= with local files instead")
    if split not in task.hub_splits:
        raise TPVError(f"task {task.name!r} has no Hub split {split!r}; use one of {sorted(task.hub_splits)}")
    dataset = datasets.load_dataset(task.hub_id, task.hub_config, split=task.hub_splits[split])
    adapt = _ADAPT.get(task.name, dict)
    examples = [adapt(dict(ex)) for ex in dataset]
    # SNLI and GLUE mark unlabelled pairs with -1; they cannot be trained or scored on.
    return [ex for ex in examples if ex.get(task.label_key) != -1]

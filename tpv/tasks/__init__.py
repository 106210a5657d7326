"""Tasks: the paper's datasets in text-to-text form, their loaders and few-shot sampling."""

from tpv.tasks.files import FileTask
from tpv.tasks.loading import SPLITS, load_split
from tpv.tasks.registry import TASKS, get_task, list_tasks, register_task
from tpv.tasks.shots import few_shot
from tpv.tasks.task import FAMILIES, METRIC_NAMES, NO_ANSWER, Task

__all__ = [
    "FAMILIES", "FileTask", "METRIC_NAMES", "NO_ANSWER", "SPLITS", "TASKS", "Task",
    "few_shot", "get_task", "list_tasks", "load_split", "register_task",
]

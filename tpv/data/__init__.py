"""Layer 3, data: the paper's tasks in text-to-text form, their loaders, few-shot draws and encoding to token ids."""

from tpv.data.files import FileTask
from tpv.data.loading import SPLITS, load_split
from tpv.data.registry import TASKS, get_task, list_tasks, register_task
from tpv.data.shots import few_shot
from tpv.data.task import FAMILIES, METRIC_NAMES, NO_ANSWER, Task

__all__ = [
    "FAMILIES",
    "FileTask",
    "METRIC_NAMES",
    "NO_ANSWER",
    "SPLITS",
    "TASKS",
    "Task",
    "few_shot",
    "get_task",
    "list_tasks",
    "load_split",
    "register_task",
]

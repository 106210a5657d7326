"""Deprecated alias of the previous layout's ``tpv.tasks`` (tasks and their data): use ``from tpv import Task, …``."""

from tpv import data as _target
from tpv.core._moved import moved_module, public_names
from tpv.data import doc, files, hub, loading, mixture, registry, shots, task

__getattr__, __dir__ = moved_module(
    __name__,
    _target,
    "from tpv import Task, get_task, list_tasks, load_split, few_shot",
    # The old package's submodules, so that `from tpv.tasks.files import from_files` keeps working.
    submodules={
        "doc": doc,
        "files": files,
        "hub": hub,
        "loading": loading,
        "mixture": mixture,
        "registry": registry,
        "shots": shots,
        "task": task,
    },
)
__all__ = public_names(_target)

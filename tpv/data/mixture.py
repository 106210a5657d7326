"""`MixtureTask`: several tasks trained as one, each example formatted by the task it is tagged with.

SPoT's multi-task source prompt and ATTEMPT's multi-task training need one prompt to see examples of several
tasks. The engine formats every example through ``task.format``, so a task that dispatches on a per-example
tag keeps each example's own template and label words without any change to the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tpv.core.errors import TPVError
from tpv.data.registry import get_task
from tpv.data.task import Task

__all__ = ["MixtureTask", "TASK_TAG"]

# The key that names an example's task; prefixed so it never collides with a dataset's own fields.
TASK_TAG = "tpv_task"


@dataclass(frozen=True)
class MixtureTask(Task):
    """A task whose examples come from ``members``; each example carries its task's name under ``TASK_TAG``.

    It formats examples for training only: scoring needs one label set, so evaluate each member on its own data.

    Example:
        >>> mix = MixtureTask.of(["sst2", "rte"])
        >>> mix.format({"tpv_task": "sst2", "sentence": "fine", "label": 1})
        ('sentence: fine\\nsentiment:', 'positive')
    """

    members: tuple[Task, ...] = ()

    @classmethod
    def of(cls, tasks) -> MixtureTask:
        """The mixture of ``tasks`` (names or ``Task``s), named ``a+b``."""
        members = tuple(get_task(t) for t in tasks)
        if len(members) < 2 or len({t.name for t in members}) != len(members):
            raise TPVError(f"a task mixture needs two or more distinct tasks, got {[t.name for t in members]}")
        family = members[0].family if len({t.family for t in members}) == 1 else "nli"
        # The template is never used (format dispatches to the members); Task only requires a valid one.
        return cls(
            name="+".join(t.name for t in members), family=family, template="{" + TASK_TAG + "}", members=members
        )

    def member(self, example: Mapping) -> Task:
        name = example.get(TASK_TAG)
        for task in self.members:
            if task.name == name:
                return task
        raise TPVError(
            f"example has {TASK_TAG}={name!r}, not one of the mixture's tasks {[t.name for t in self.members]}; "
            "build the data with tpv.compose.baselines.spot.mix_tasks"
        )

    def input_text(self, example: Mapping) -> str:
        return self.member(example).input_text(example)

    def target_text(self, example: Mapping) -> str:
        return self.member(example).target_text(example)

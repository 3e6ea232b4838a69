"""Tasks: classify, detect, instance, segment, siamese, video. ``build_task(config)`` picks one by name.

The tasks are registered in ``cvzoo.config.tasks.TASKS``; each spec names its ``Task`` subclass as
``"module:Class"``, imported here on demand.
"""

from __future__ import annotations

import importlib

from cvzoo.config import TASKS, Config
from cvzoo.tasks.base import Evaluator, Task


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    module_name, class_name = TASKS[name].implementation.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise ValueError(f"task {name!r} is not available in this version of cvzoo") from None
        raise
    return getattr(module, class_name)


def build_task(config: Config) -> Task:
    return task_class(config.task)(config)


__all__ = ["Evaluator", "Task", "build_task", "task_class"]

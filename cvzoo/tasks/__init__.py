"""Tasks: classify, detect, segment, siamese. ``build_task(config)`` picks one by name."""

from __future__ import annotations

import importlib

from cvzoo.config import Config
from cvzoo.tasks.base import Evaluator, Task

# task name -> "module:Class"; modules are imported on demand.
TASKS = {
    "classify": "cvzoo.tasks.classification:ClassificationTask",
    "detect": "cvzoo.tasks.detection:DetectionTask",
    "segment": "cvzoo.tasks.segmentation:SegmentationTask",
    "siamese": "cvzoo.tasks.siamese:SiameseTask",
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    module_name, class_name = TASKS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise ValueError(f"task {name!r} is not available in this version of cvzoo") from None
        raise
    return getattr(module, class_name)


def build_task(config: Config) -> Task:
    return task_class(config.task)(config)


__all__ = ["Evaluator", "Task", "TASKS", "build_task", "task_class"]

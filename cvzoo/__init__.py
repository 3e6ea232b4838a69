"""cvzoo: the classic networks of deep learning for image processing, one engine, verified.

Public API (imported lazily so that ``import cvzoo`` does no work):
    create_model, list_models, load_weights, Trainer, tasks, __version__
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": ("cvzoo.models.registry", "create_model"),
    "list_models": ("cvzoo.models.registry", "list_models"),
    "load_weights": ("cvzoo.models.weights", "load_weights"),
    "Trainer": ("cvzoo.engine.trainer", "Trainer"),
    "tasks": ("cvzoo.tasks", None),
    "evaluate": ("cvzoo.api", "evaluate"),
    "predict": ("cvzoo.api", "predict"),
    "train": ("cvzoo.api", "train"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cvzoo' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)

"""What an exported file needs to be predicted on its own: the task, its config and its extras (class
names, input size, normalisation), recorded in the ONNX file's metadata.

``cvzoo export`` writes them; ``cvzoo predict model.onnx`` rebuilds the task from them, so an exported file
works without the checkpoint it came from. Besides the JSON that cvzoo reads back (``cvzoo_task``,
``cvzoo_config``, ``cvzoo_extras``), the plain keys other tools look for are written too: ``task``,
``names`` (the class names in label order, a JSON list), ``imgsz`` and, where the task normalises,
``mean`` and ``std``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TASK, CONFIG, EXTRAS = "cvzoo_task", "cvzoo_config", "cvzoo_extras"


def task_metadata(task: str, config: Mapping[str, Any], extras: Mapping[str, Any]) -> dict[str, str]:
    """The metadata entries of an export of a ``task`` model trained with ``config`` (a checkpoint's)."""
    names = extras.get("class_names", extras.get("classes"))
    entries = {TASK: task, CONFIG: json.dumps(config, default=list), EXTRAS: json.dumps(extras, default=list),
               "task": task}
    if names is not None:
        entries["names"] = json.dumps(list(names))
    if extras.get("img_size"):
        entries["imgsz"] = str(extras["img_size"])
    for key in ("mean", "std"):
        if extras.get(key) is not None:
            entries[key] = json.dumps(list(extras[key]))
    return entries


def read_task_metadata(metadata: Mapping[str, str], path: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(task, config dict, extras)`` recorded by :func:`task_metadata` in the file at ``path``."""
    missing = [key for key in (TASK, CONFIG, EXTRAS) if key not in metadata]
    if missing:
        raise ValueError(f"{path} records no cvzoo task ({', '.join(missing)} missing: exported by an older cvzoo or "
                         "another tool); predict it with its checkpoint: cvzoo predict CHECKPOINT.pt IMAGES "
                         f"--backend onnxruntime --onnx {path}")
    return metadata[TASK], json.loads(metadata[CONFIG]), json.loads(metadata[EXTRAS])

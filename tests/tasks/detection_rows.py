"""The detections of one ``api.predict`` result (its JSON-style rows) as a ``Detections``: the e2e tests of the
detector families compare PyTorch's and onnxruntime's predictions through it."""

from __future__ import annotations

import torch

from cvzoo.models.detection.base import Detections


def detections_of(result: dict) -> Detections:
    rows = result["detections"]
    return Detections(torch.tensor([d["box"] for d in rows]).reshape(-1, 4), torch.tensor([d["score"] for d in rows]),
                      torch.tensor([d["label"] for d in rows]))

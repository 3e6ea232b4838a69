"""Random valid xyxy boxes for the ops tests."""

from __future__ import annotations

import torch


def random_boxes(n: int, seed: int, size: float = 100.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[n, 4]`` xyxy boxes with positive width and height inside ``[0, size + size/2]``."""
    generator = torch.Generator().manual_seed(seed)
    top_left = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size / 2 + 1
    return torch.cat((top_left, top_left + wh), dim=1).to(dtype)

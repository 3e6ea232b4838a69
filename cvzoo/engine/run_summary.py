"""The first lines of a training run: what it will do, before it does it.

Device and threads, AMP, the model with its size and cost, the data with its splits and classes, and
where each setting came from (task defaults, recipe file, flags, ``--set``): a person reading a log
knows what ran without opening args.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cvzoo.analysis.flops import count_flops
from cvzoo.config import Config
from cvzoo.config.core import get_value


def describe_device(device: torch.device, config: Config, workers: int, world_size: int) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = f"{device} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
        amp = "fp16 + GradScaler" if config.train.amp else "off"
    else:
        where = f"{device} ({torch.get_num_threads()} threads)"
        amp = "bf16" if config.train.amp else "off"
    parts = [f"device {where}", f"AMP {amp}", f"data workers {workers}"]
    if config.train.channels_last:
        parts.append("channels-last")
    if world_size > 1:
        parts.append(f"DDP over {world_size} processes")
    return ", ".join(parts)


def describe_model(name: str, model: nn.Module, example: torch.Tensor | None) -> str:
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    text = f"model {name}: {params:,} parameters"
    if trainable != params:
        text += f" ({trainable:,} trainable)"
    if example is None:
        return text
    shape = "x".join(str(v) for v in example.shape[1:])
    try:
        # fork_rng: counting runs a forward pass, which must not move the training run's random streams.
        with torch.random.fork_rng(devices=[]):
            gflops = count_flops(model, example).gflops
    except Exception as err:  # a model the counter cannot trace still trains; say why the figure is missing
        return f"{text}, GFLOPs not counted ({type(err).__name__}: {err})"
    cost = f"{gflops:.3g} GFLOPs" if gflops >= 0.01 else f"{gflops * 1e3:.3g} MFLOPs"
    return f"{text}, {cost} at {shape} (2 per multiply-add)"


def describe_data(source: str, train_size: int, val_size: int | None, classes: Sequence[str],
                  cache: str | None = None) -> str:
    """``data SOURCE: train N, val M; K classes (...); image cache ...`` (``cache``: the words of
    ``engine.image_cache.CacheReport.describe``, None for data that decodes no image files)."""
    split = f"train {train_size:,}" + (f", val {val_size:,}" if val_size is not None else ", no validation split")
    text = f"data {source}: {split}"
    if classes:
        shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
        text += f"; {len(classes)} classes ({shown})"
    if cache:
        text += f"; {cache}"
    return text


def describe_sources(config: Config, sources: Mapping[str, str]) -> str:
    """``settings: detect task defaults (18) < recipe r.yaml: a=1, b=2 < flags: epochs=3``.

    ``sources`` maps each dotted key the user or a default set to the layer that set it last; layers are
    listed in the order they were applied, the defaults counted, every other value shown.
    """
    if not sources:
        return "settings: Config defaults and the values given in Python"
    layers: dict[str, list[str]] = {}
    for key, layer in sources.items():
        layers.setdefault(layer, []).append(key)
    parts = []
    for layer, keys in layers.items():
        if "defaults" in layer:
            parts.append(f"{layer} ({len(keys)})")
        else:
            parts.append(f"{layer}: " + ", ".join(f"{k}={_short(get_value(config, k))}" for k in keys))
    return "settings: " + " < ".join(parts)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def class_names(extras: Mapping[str, Any]) -> list[str]:
    """The class names a task keeps in its checkpoint extras (``classes`` or ``class_names``)."""
    return list(extras.get("classes") or extras.get("class_names") or [])

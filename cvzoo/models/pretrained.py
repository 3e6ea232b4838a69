"""Published weights by name: ``create_model("resnet50.tv_in1k")`` or ``create_model("resnet50", pretrained=True)``.

A *weight set* is one published checkpoint of an architecture: its URL, the sha256 (or the 8-digit
prefix torchvision and timm put in their file names), the class count it was trained for and where it
comes from. The table of the sets torchvision and timm publish for cvzoo's architectures is data
(``pretrained_table.py``, written by ``tools/gen_pretrained_table.py`` from the installed references and
checked against them by the tests); users add their own with ``register_weights``.

Nothing downloads at import time: ``fetch`` runs when a model is created with a tag (or
``pretrained=True``), downloads the file once into the cache (``$CVZOO_HOME/weights``, else
``~/.cache/cvzoo/weights``), checks its hash, and on a machine without network says which file to place
where.
"""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from cvzoo.models.weights import WeightsError, default_cache_dir, download_weights


@dataclass(frozen=True)
class WeightSet:
    """One published checkpoint of architecture ``arch``, named ``arch.tag``."""

    arch: str
    tag: str
    url: str
    sha256: str  # the full hex digest or a prefix of at least 8 digits
    num_classes: int
    source: str  # "torchvision", "timm" or "user"

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    @property
    def filename(self) -> str:
        return self.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


class UnknownWeightsError(WeightsError, ValueError):
    """A tag (or ``pretrained=True``) that names no weight set of the architecture."""


_SETS: dict[str, dict[str, WeightSet]] = {}
_DEFAULT: dict[str, str] = {}
_TABLE_LOADED = False


def _ensure_table() -> None:
    global _TABLE_LOADED
    if _TABLE_LOADED:
        return
    _TABLE_LOADED = True
    from cvzoo.models.pretrained_table import DEFAULT_TAGS, WEIGHT_SETS

    for arch, tag, url, sha256, num_classes, source in WEIGHT_SETS:
        _add(WeightSet(arch, tag, url, sha256, num_classes, source), default=DEFAULT_TAGS.get(arch) == tag)


def _add(weight_set: WeightSet, default: bool) -> None:
    tags = _SETS.setdefault(weight_set.arch, {})
    if weight_set.tag in tags:
        raise ValueError(f"weight set {weight_set.name} is already registered")
    tags[weight_set.tag] = weight_set
    if default or weight_set.arch not in _DEFAULT:
        _DEFAULT[weight_set.arch] = weight_set.tag


def register_weights(
    arch: str, tag: str, url: str, sha256: str, num_classes: int, *, default: bool = False
) -> WeightSet:
    """Add a weight set of your own (a checkpoint on your server or disk: ``https://``, ``http://`` or
    ``file://`` URL) so ``create_model(f"{arch}.{tag}")`` loads it like a published one."""
    _ensure_table()
    if not tag or "." in tag:
        raise ValueError(f"a weight tag is a non-empty name without dots, got {tag!r}")
    weight_set = WeightSet(arch, tag, url, sha256.lower(), int(num_classes), "user")
    _add(weight_set, default)
    return weight_set


def weight_sets(arch: str) -> dict[str, WeightSet]:
    """The weight sets of ``arch`` by tag (empty when none is published)."""
    _ensure_table()
    return dict(_SETS.get(arch, {}))


def default_tag(arch: str) -> str | None:
    """The tag ``pretrained=True`` picks (torchvision's ``DEFAULT`` where torchvision has the model)."""
    _ensure_table()
    return _DEFAULT.get(arch)


def resolve(arch: str, tag: str) -> WeightSet:
    """The weight set ``arch.tag``; an unknown tag is an error listing the known ones."""
    sets = weight_sets(arch)
    if tag not in sets:
        known = ", ".join(f"{arch}.{t}" for t in sorted(sets)) or "none are published"
        raise UnknownWeightsError(f"no weight set {arch}.{tag}; known weight sets of {arch}: {known}")
    return sets[tag]


def resolve_default(arch: str) -> WeightSet:
    tag = default_tag(arch)
    if tag is None:
        raise UnknownWeightsError(
            f"{arch} has no published weights (pretrained=True); train it, or pass weights=PATH to a "
            "checkpoint, or register_weights() one of your own"
        )
    return resolve(arch, tag)


def fetch(weight_set: WeightSet, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local path of ``weight_set``'s checkpoint: the cached file, else downloaded once and verified.

    Raises:
        WeightsError: the download failed (no network, server error); the message names the file to
            place by hand and where.
        WeightsHashError: the file's sha256 differs from the published one.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        return download_weights(weight_set.url, weight_set.sha256, cache_dir=folder, filename=weight_set.filename)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise WeightsError(
            f"could not download the weights {weight_set.name} from {weight_set.url} ({reason}). On a machine "
            f"without network, copy that file to {folder / weight_set.filename} (its sha256 starts with "
            f"{weight_set.sha256[:8]}) or set CVZOO_HOME to a folder whose weights/ holds it"
        ) from err


__all__ = [
    "UnknownWeightsError", "WeightSet", "default_tag", "fetch", "register_weights", "resolve",
    "resolve_default", "weight_sets",
]

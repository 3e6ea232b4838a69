"""Local checkpoint loading with key remapping, partial loading by shape, and hashed downloads.

    report = load_weights(model, "resnet18-f37072fd.pth")              # torchvision file, exact
    report = load_weights(model, "best.pt", strict=False)              # other num_classes: head skipped

A checkpoint is a raw state dict or a dict holding one under ``model`` / ``state_dict`` / ``ema``
(DDP's ``module.`` and ``torch.compile``'s ``_orig_mod.`` prefixes are stripped). A *remap* turns the
keys of another layout (torchvision, timm, the notes' ``model.py``) into cvzoo's; model files register
theirs with ``register_remap``, and ``remap="auto"`` picks the one that matches the most keys by name
and shape. Nothing here touches the network except ``download_weights``, which runs only when called.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
RemapFn = Callable[[StateDict], StateDict]

_CHECKPOINT_KEYS = ("model", "state_dict", "ema", "model_ema", "state_dict_ema")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED = 20


class WeightsError(ValueError):
    """Base class of the weight-loading errors."""


class WeightsFileError(WeightsError):
    """The file cannot be read or holds no state dict."""


class WeightsMismatchError(WeightsError):
    """A strict load found missing, unexpected or differently shaped keys (all listed in the message)."""


class WeightsHashError(WeightsError):
    """A downloaded file's sha256 differs from the expected one."""


@dataclass
class LoadReport:
    """What a load did: keys loaded, keys the model lacks in the file, extra and mis-shaped file keys.

    Attributes:
        loaded: model keys that received a tensor from the checkpoint.
        missing: model keys the checkpoint has no tensor for (kept at their current values).
        unexpected: checkpoint keys the model has no parameter/buffer for.
        mismatched_shapes: ``(key, checkpoint_shape, model_shape)`` for same-named keys whose shapes
            differ (e.g. a classifier for another number of classes).
        remap: name of the key remap that was applied.
        source_model: model name recorded in the checkpoint (``model_name``), if any.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched_shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    remap: str = "identity"
    source_model: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched_shapes)

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors (remap: {self.remap})"]
        if self.mismatched_shapes:
            parts.append(f"{len(self.mismatched_shapes)} shape mismatches: " + _listing(
                [f"{k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched_shapes]
            ))
        if self.missing:
            parts.append(f"{len(self.missing)} missing: " + _listing(self.missing))
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected: " + _listing(self.unexpected))
        return "; ".join(parts)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


# --------------------------------------------------------------------------------------------------
# Remap registry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remap:
    name: str
    arch_prefix: str
    fn: RemapFn


_REMAPS: dict[str, Remap] = {}


def register_remap(arch_prefix: str, fn: RemapFn, name: str | None = None) -> RemapFn:
    """Register ``fn`` (state dict -> state dict) as a candidate layout conversion for a family.

    Args:
        arch_prefix: lower-case prefix of the model class name it applies to (``"vgg"`` matches
            ``VGG``), or ``""`` for every model.
        fn: returns a new state dict with cvzoo keys (and tensors reshaped where layouts differ).
        name: unique name, ``"<arch_prefix>:<fn name>"`` by default; pass it as ``remap=`` to force it.
    """
    name = name or f"{arch_prefix}:{fn.__name__}"
    if name in _REMAPS:
        raise ValueError(f"remap {name!r} is already registered")
    _REMAPS[name] = Remap(name, arch_prefix.lower(), fn)
    return fn


def _arch_key(model: nn.Module) -> str:
    return str(getattr(model, "arch_name", type(model).__name__)).lower()


def _candidate_remaps(model: nn.Module) -> list[Remap]:
    arch = _arch_key(model)
    return [r for r in _REMAPS.values() if arch.startswith(r.arch_prefix)]


def _match_count(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> int:
    # BatchNorm's num_batches_tracked counters are not weights and a remap may drop them (a live BN fills
    # its own): counted, they let a layout with many BNs "match" a model it does not fit.
    return sum(1 for k, v in state.items()
               if k in target and tuple(v.shape) == tuple(target[k].shape) and not k.endswith("num_batches_tracked"))


def _apply_remap(
    model: nn.Module, state: StateDict, target: StateDict, remap: str | RemapFn | None
) -> tuple[StateDict, str]:
    if remap is None or remap == "identity":
        return state, "identity"
    if callable(remap):
        return remap(dict(state)), getattr(remap, "__name__", "custom")
    if remap != "auto":
        if remap not in _REMAPS:
            raise WeightsError(f"unknown remap {remap!r}; registered: {', '.join(sorted(_REMAPS)) or 'none'}")
        return _REMAPS[remap].fn(dict(state)), remap
    # "auto": keep the layout under which most checkpoint tensors land on a model key of equal shape.
    # Identity goes first so that it wins ties: a cvzoo checkpoint is never rewritten needlessly.
    best, best_name, best_score = state, "identity", _match_count(state, target)
    for candidate in _candidate_remaps(model):
        try:
            converted = candidate.fn(dict(state))
        except (KeyError, ValueError, RuntimeError) as err:  # a remap for another layout may not apply
            logger.debug("remap %s does not apply: %s", candidate.name, err)
            continue
        score = _match_count(converted, target)
        if score > best_score:
            best, best_name, best_score = converted, candidate.name, score
    return best, best_name


# --------------------------------------------------------------------------------------------------
# Reading checkpoints
# --------------------------------------------------------------------------------------------------


def _numpy_safe_globals() -> list[Any]:
    # Training checkpoints carry numpy RNG states; rebuilding a numpy array runs no user code, so we
    # allow exactly the globals an ndarray pickle needs and keep weights_only=True for everything else.
    reconstruct = np.zeros(1).__reduce__()[0]
    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.int32,
                                           np.uint32, np.int64, np.uint64, np.float16, np.float32, np.float64)]
    return [reconstruct, np.ndarray, np.dtype, *dtypes]


def read_checkpoint(path: str | os.PathLike[str], trusted: bool = False) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (unless ``trusted``); clear errors on failure."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {path}")
    try:
        if trusted:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or pickled-object files
        hint = ""
        if "weights_only" in str(err).lower() or "unsupported global" in str(err).lower():
            hint = " (it pickles Python objects; if you trust the file, pass trusted=True)"
        raise WeightsFileError(f"cannot read weights file {path}{hint}: {err}") from err


def extract_state_dict(checkpoint: Any, source: str = "checkpoint") -> tuple[StateDict, str | None]:
    """Find the state dict inside a checkpoint and strip wrapper prefixes.

    Returns:
        ``(state_dict, model_name)``, where ``model_name`` is what the checkpoint records
        (``model_name`` / ``arch`` key), or None.
    """
    if not isinstance(checkpoint, Mapping):
        raise WeightsFileError(f"{source}: expected a state dict or a checkpoint dict, got {type(checkpoint).__name__}")
    model_name = checkpoint.get("model_name", checkpoint.get("arch"))
    model_name = model_name if isinstance(model_name, str) else None
    state: Any = checkpoint
    for key in _CHECKPOINT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    if isinstance(state, nn.Module):
        state = state.state_dict()
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(map(str, list(checkpoint)[:10]))
        raise WeightsFileError(f"{source}: no tensors found (top-level keys: {keys})")
    for prefix in _STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors, model_name


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def compare_state_dicts(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> LoadReport:
    """Classify every key of ``state`` (checkpoint) against ``target`` (model) by name and shape."""
    report = LoadReport()
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.mismatched_shapes.append((key, tuple(value.shape), tuple(target[key].shape)))
        else:
            report.loaded.append(key)
    # BatchNorm fills a missing num_batches_tracked itself; old torchvision files lack it.
    report.missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    return report


def _rgb_kernel_for_other_channels(value: torch.Tensor, target: torch.Tensor | None) -> bool:
    return (
        target is not None and value.ndim == 4 and target.ndim == 4 and value.shape[1] == 3
        and target.shape[1] != 3 and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]
    )


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An RGB kernel ``[O, 3, kh, kw]`` for ``in_channels`` inputs: summed over RGB for one channel (a grey
    image then gives the response an RGB image of equal channels gave), else RGB repeated cyclically and
    scaled by ``3 / in_channels`` so the response to an input of equal channels keeps its size."""
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    repeats = -(-in_channels // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (3 / in_channels)


def load_weights(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
    strict: bool = True,
    remap: str | RemapFn | None = "auto",
    trusted: bool = False,
    adapt_input_channels: bool = False,
) -> LoadReport:
    """Load a checkpoint into ``model`` (in place) and report what matched.

    Args:
        model: the model to fill.
        path_or_state_dict: a local file (``torch.save`` of a state dict or a checkpoint dict) or an
            in-memory state dict / checkpoint dict.
        strict: require every key and shape to match, else raise ``WeightsMismatchError``. With
            ``strict=False`` every tensor whose name and shape match is loaded and the rest reported
            (transfer learning: the backbone loads, a head for other classes is reported and skipped).
        remap: ``"auto"`` (best-matching registered layout), a registered remap name, a callable, or
            None / ``"identity"``.
        trusted: load the file with ``weights_only=False`` (arbitrary pickles; only for trusted files).
        adapt_input_channels: fit RGB convolution kernels to a model built for another channel count
            (``adapt_input_conv``), as timm does for ``in_chans`` with pretrained weights.

    Returns:
        The ``LoadReport`` (also logged).

    Raises:
        WeightsFileError: unreadable file or no tensors in it.
        WeightsMismatchError: ``strict`` and the keys or shapes differ; the message lists them.
    """
    if isinstance(path_or_state_dict, Mapping):
        source = "state dict"
        checkpoint: Any = path_or_state_dict
    else:
        source = str(path_or_state_dict)
        checkpoint = read_checkpoint(path_or_state_dict, trusted=trusted)
    state, source_model = extract_state_dict(checkpoint, source)
    target = model.state_dict()
    state, remap_name = _apply_remap(model, state, target, remap)
    if adapt_input_channels:
        state = {key: adapt_input_conv(value, target[key].shape[1]) if _rgb_kernel_for_other_channels(
            value, target.get(key)) else value for key, value in state.items()}
    report = compare_state_dicts(state, target)
    report.remap, report.source_model = remap_name, source_model

    model_desc = type(model).__name__
    if strict and not report.ok:
        recorded = (
            f"the checkpoint says it is for {source_model!r}"
            if source_model
            else "the checkpoint does not record its model name"
        )
        raise WeightsMismatchError(
            f"{source} does not fit {model_desc} ({recorded}): {report.summary()}. "
            "Pass strict=False to load the matching tensors only."
        )
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    log = logger.info if report.ok else logger.warning
    log("%s -> %s: %s", source, model_desc, report.summary())
    return report


# --------------------------------------------------------------------------------------------------
# Hashes and explicit downloads
# --------------------------------------------------------------------------------------------------


def sha256sum(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$CVZOO_HOME/weights``, else ``~/.cache/cvzoo/weights``."""
    home = os.environ.get("CVZOO_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "cvzoo") / "weights"


def _check_hash_spec(sha256: str) -> str:
    sha256 = sha256.lower().strip()
    if not 8 <= len(sha256) <= 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise WeightsHashError(f"sha256 must be 8 to 64 hex digits (a full hash or a prefix), got {sha256!r}")
    return sha256


def download_weights(
    url: str, sha256: str, cache_dir: str | os.PathLike[str] | None = None, filename: str | None = None
) -> Path:
    """Download ``url`` once into the cache, verify its sha256, and return the cached path.

    Runs only when called: nothing in cvzoo downloads implicitly. A cached file is re-hashed before
    use; a file whose hash differs is never kept.

    Args:
        url: ``https://...`` or ``file://...``.
        sha256: the expected hex digest, or a prefix of at least 8 digits (torchvision file names carry
            one, e.g. ``resnet18-f37072fd.pth``).
        cache_dir: folder for the file (default ``default_cache_dir()``).
        filename: cached name (default: the last part of the URL).

    Raises:
        WeightsHashError: the file's hash does not start with ``sha256``.
    """
    expected = _check_hash_spec(sha256)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = filename or Path(urllib.request.url2pathname(url.split("?")[0])).name
    if not name:
        raise WeightsError(f"cannot derive a file name from {url!r}; pass filename=")
    target = folder / name
    if target.is_file():
        if sha256sum(target).startswith(expected):
            return target
        logger.warning("cached %s has a different sha256; downloading it again", target)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if not actual.startswith(expected):
            raise WeightsHashError(f"sha256 mismatch for {url}: expected {expected}, got {actual}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("downloaded %s -> %s", url, target)
    return target

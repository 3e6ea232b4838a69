"""Transfer learning helpers: freeze stages, keep frozen BatchNorm in eval, optimizer parameter groups.

    model = create_model("resnet50", weights="resnet50-0676ba61.pth")
    replace_head(model, num_classes=5)            # new, randomly initialised classifier
    freeze(model, 3)                              # stem + layer1 + layer2: weights and BN statistics fixed
    optimizer = torch.optim.SGD(param_groups(model, lr=0.01), momentum=0.9)
    model.train(); keep_frozen_bn_eval(model)     # after every model.train()

Stages are the entries of ``model.feature_info`` (the stem counts as one); "the first N stages" is
everything the model registers up to and including the N-th stage module, in registration order, so
a stage also takes the unnamed layers before it (e.g. ResNet's max-pool before ``layer1``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from typing import Any

from torch import nn

# BatchNorm running statistics are buffers, not parameters: requires_grad=False does not stop them
# from moving in train mode, so frozen norms are flagged and put back into eval after model.train().
_FROZEN_FLAG = "_cvzoo_frozen"
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)


class FreezeError(ValueError):
    """Bad ``freeze`` / ``unfreeze`` argument: unknown module name or stage count out of range."""


def _stage_prefixes(model: nn.Module, count: int) -> list[str]:
    """Names of the modules (top-level or nested) that make up the first ``count`` stages."""
    infos = list(getattr(model, "feature_info", []))
    if not infos:
        raise FreezeError(f"{type(model).__name__} has no feature_info; freeze by module names instead")
    if not 0 <= count <= len(infos):
        raise FreezeError(f"cannot freeze {count} stages: {type(model).__name__} has {len(infos)} (0..{len(infos)})")
    if count == 0:
        return []
    last = infos[count - 1].module
    names = [name for name, _ in model.named_modules() if name]
    if last not in names:
        raise FreezeError(f"feature_info names module {last!r}, which {type(model).__name__} does not have")
    # Every module registered before the stage's last module, plus that module's own subtree;
    # named_modules is a pre-order walk, so a subtree directly follows its root. Ancestors of the
    # stage module (``features`` for ``features.4``) also hold later layers and are left out.
    end = names.index(last)
    selected = [n for n in names[:end] if not last.startswith(n + ".")]
    selected += [last] + [n for n in names[end + 1 :] if n.startswith(last + ".")]
    outermost: list[str] = []
    for name in selected:  # keep roots only: their subtrees are frozen whole
        if not outermost or not name.startswith(outermost[-1] + "."):
            outermost.append(name)
    return outermost


def _resolve(model: nn.Module, stages: int | str | Sequence[str]) -> list[str]:
    if isinstance(stages, bool):
        raise FreezeError("stages must be a stage count or module names, not a bool")
    if isinstance(stages, int):
        return _stage_prefixes(model, stages)
    names = [stages] if isinstance(stages, str) else list(stages)
    known = dict(model.named_modules())
    for name in names:
        if name not in known or not name:
            close = difflib.get_close_matches(name, [n for n in known if n], n=5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise FreezeError(f"{type(model).__name__} has no module {name!r}{hint}")
    return names


def _modules_under(model: nn.Module, names: Sequence[str]) -> Iterator[nn.Module]:
    for name in names:
        yield from model.get_submodule(name).modules()


def freeze(model: nn.Module, stages: int | str | Sequence[str]) -> list[str]:
    """Stop training the first ``stages`` stages (an int) or the named modules (a list of names).

    Parameters get ``requires_grad=False``; norm layers inside go to eval mode and are flagged so
    that ``keep_frozen_bn_eval`` can put them back after ``model.train()``.

    Returns:
        The names of the frozen modules.

    Raises:
        FreezeError: a count outside ``0..len(feature_info)`` or an unknown module name.
    """
    names = _resolve(model, stages)
    for module in _modules_under(model, names):
        for param in module.parameters(recurse=False):
            param.requires_grad_(False)
        if isinstance(module, NORM_TYPES):
            setattr(module, _FROZEN_FLAG, True)
            module.eval()
    return names


def unfreeze(model: nn.Module, stages: int | str | Sequence[str] | None = None) -> list[str]:
    """Undo ``freeze`` for the given stages / names (all of the model when None)."""
    names = [""] if stages is None else _resolve(model, stages)
    for module in _modules_under(model, names):
        for param in module.parameters(recurse=False):
            param.requires_grad_(True)
        if getattr(module, _FROZEN_FLAG, False):
            delattr(module, _FROZEN_FLAG)
            module.train(model.training)
    return names


def keep_frozen_bn_eval(model: nn.Module) -> nn.Module:
    """Put frozen norm layers back into eval mode; call after every ``model.train()``."""
    for module in model.modules():
        if getattr(module, _FROZEN_FLAG, False):
            module.eval()
    return model


def is_no_decay(module: nn.Module, param: nn.Parameter) -> bool:
    """Norm weights/biases and every 1-D parameter (biases, scales) are exempt from weight decay.

    Decaying them pulls normalisation scales towards zero without regularising the function the
    network computes (Goyal et al., 2017, §5; He et al., 2019, "Bag of Tricks", §3.1).
    """
    return isinstance(module, NORM_TYPES) or param.ndim <= 1


def param_groups(
    model: nn.Module,
    lr: float,
    backbone_lr_mult: float = 0.1,
    weight_decay: float = 1e-4,
    no_decay_norm_bias: bool = True,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head at ``lr``, the rest at ``lr * backbone_lr_mult``.

    Args:
        model: a classifier (its head is ``model.get_classifier()``; models without one are all
            backbone).
        lr: head learning rate.
        backbone_lr_mult: factor for every other trainable parameter (1.0 trains all at ``lr``).
        weight_decay: decay for conv/linear weights.
        no_decay_norm_bias: give norm parameters and 1-D parameters (biases) zero weight decay.

    Returns:
        Non-empty groups, each ``{"name", "params", "lr", "weight_decay"}`` (optimizers keep the extra
        ``name`` key, which makes schedules and logs readable). Frozen parameters are left out.
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {
        (part, decay): [] for part in ("head", "backbone") for decay in (True, False)
    }
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            part = "head" if id(param) in head_ids else "backbone"
            decay = not (no_decay_norm_bias and is_no_decay(module, param))
            groups[(part, decay)].append(param)
    out = []
    for (part, decay), params in groups.items():
        if params:
            out.append({
                "name": f"{part}{'' if decay else '_no_decay'}",
                "params": params,
                "lr": lr if part == "head" else lr * backbone_lr_mult,
                "weight_decay": weight_decay if decay else 0.0,
            })
    return out


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the classifier for a fresh one with ``num_classes`` outputs on the old head's device/dtype.

    Returns:
        The new head module (``nn.Identity`` for ``num_classes=0``).
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    old = next(model.get_classifier().parameters(), None)
    if old is None:
        old = next(model.parameters(), None)
    model.reset_classifier(num_classes)
    head = model.get_classifier()
    if old is not None:
        head.to(device=old.device, dtype=old.dtype)
    return head

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
from typing import Any, Literal

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
    *,
    split: Literal["head", "backbone", "none"] = "head",
    split_bias: bool = False,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the one builder every task uses.

    Parameters are sorted by *part* and by *kind*. Parts (``split``): ``"head"`` takes the classifier
    head (``model.get_classifier()``) at ``lr`` and everything else as the backbone at
    ``lr * backbone_lr_mult`` (a model without a classifier is all backbone); ``"backbone"`` takes
    ``model.backbone`` as the backbone and everything else (decoder, heads) as the head (segmentation);
    ``"none"`` keeps one part at ``lr``. Kinds: decayed conv/linear weights and, with
    ``no_decay_norm_bias``, the undecayed norm and 1-D parameters (``is_no_decay``); with ``split_bias``
    YOLOv5's three kinds instead: weights, norm weights, biases (the group named ``bias`` is the one
    the warm-up starts at ``scheduler.warmup_bias_lr``).

    Args:
        model: the model; frozen parameters are left out, shared ones listed once.
        lr: the head's (or the only part's) learning rate.
        backbone_lr_mult: the backbone's learning-rate factor (1.0 trains all at ``lr``).
        weight_decay: decay of the decayed kinds.
        no_decay_norm_bias: give norm and 1-D parameters zero weight decay.
        split: which parts, see above.
        split_bias: YOLO's weights / norm / bias kinds.

    Returns:
        Non-empty groups ``{"name", "params", "lr", "weight_decay"}``, parts in the order head, backbone
        for ``"head"`` and backbone, head for ``"backbone"``; names are ``<part>`` and
        ``<part>_no_decay`` (``weights``, ``no_decay`` / ``weights``, ``norm``, ``bias`` with one part).
    """
    if split == "backbone":
        backbone = getattr(model, "backbone", None)
        backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
        parts = ("backbone", "head")

        def part_of(param: nn.Parameter) -> str:
            return "backbone" if id(param) in backbone_ids else "head"
    elif split == "head":
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        parts = ("head", "backbone")

        def part_of(param: nn.Parameter) -> str:
            return "head" if id(param) in head_ids else "backbone"
    else:
        parts = ("",)

        def part_of(param: nn.Parameter) -> str:
            return ""

    def kind_of(module: nn.Module, name: str, param: nn.Parameter) -> str:
        if split_bias:
            return "bias" if name == "bias" else "norm" if isinstance(module, NORM_TYPES) else "weights"
        return "no_decay" if no_decay_norm_bias and is_no_decay(module, param) else "weights"

    kinds = ("weights", "norm", "bias") if split_bias else ("weights", "no_decay")
    groups: dict[tuple[str, str], list[nn.Parameter]] = {(p, k): [] for p in parts for k in kinds}
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            groups[(part_of(param), kind_of(module, name, param))].append(param)
    out = []
    for (part, kind), params in groups.items():
        if params:
            out.append({
                "name": _group_name(part, kind),
                "params": params,
                "lr": lr * backbone_lr_mult if part == "backbone" else lr,
                "weight_decay": weight_decay if kind == "weights" else 0.0,
            })
    return out


def _group_name(part: str, kind: str) -> str:
    if not part:
        return kind
    return part if kind == "weights" else f"{part}_{kind}"


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

"""Model registry: every variant is one line of data.

    register_model("resnet50", ResNet, block=Bottleneck, layers=(3, 4, 6, 3), task="classify")
    model = create_model("resnet50", num_classes=10)

Names are snake_case; an optional ``.tag`` suffix names a weight set (``resnet50.tv_in1k``): the
architecture is the part before it, and ``create_model`` loads the set (``cvzoo.models.pretrained``).
Registering a name twice is an error, so two files can never silently shadow each other.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """One registered variant: a builder plus the keyword arguments that make the variant."""

    name: str
    builder: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    task: str = "classify"
    # Name of the reference implementation (e.g. "torchvision:resnet50", "timm:repvgg_a0") used by the
    # parity tests and benchmarks; empty when no reference library has the model.
    reference: str = ""
    # Input size the model was designed for (used by `cvzoo models` and `cvzoo info`).
    input_size: tuple[int, int, int] = (3, 224, 224)
    # timm's name for the same architecture where ``reference`` is another library's and timm's name is not
    # ``name`` (cvzoo's ``mobilenet_v2`` is torchvision's layout and timm's ``mobilenetv2_100``), so that the
    # weight-set table (tools/gen_pretrained_table.py) also lists timm's files for it.
    timm_name: str = ""

    @property
    def timm_arch(self) -> str:
        """The timm architecture whose weight sets may fit: ``reference``'s when it is timm's, else
        ``timm_name``, else ``name``."""
        if self.reference.startswith("timm:"):
            return self.reference.split(":", 1)[1]
        return self.timm_name or self.name

    def build(self, **overrides: Any) -> nn.Module:
        kwargs = {**self.defaults, **overrides}
        return self.builder(**kwargs)


class UnknownModelError(KeyError, ValueError):
    """Raised for a model name that is not registered; the message lists close matches.

    A KeyError (a failed lookup) and a ValueError (bad user input), so either ``except`` catches it.
    """

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable.
        return str(self.args[0])


class ModelArgumentError(TypeError, ValueError):
    """A constructor keyword that the registered model does not take; the message lists those it does.

    A TypeError (what calling the constructor would raise) and a ValueError (bad user input, reported
    by the CLI in one line). ``unexpected`` holds the offending keywords.
    """

    def __init__(self, message: str, unexpected: list[str]) -> None:
        super().__init__(message)
        self.unexpected = unexpected


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    task: str = "classify",
    reference: str = "",
    input_size: tuple[int, int, int] = (3, 224, 224),
    timm_name: str = "",
    **defaults: Any,
) -> ModelEntry:
    """Register ``name`` as ``builder(**defaults)``. Duplicate names are rejected."""
    if name != name.lower() or " " in name or "." in name:
        raise ValueError(f"model names are snake_case without a tag: {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder!r})")
    entry = ModelEntry(name, builder, dict(defaults), task, reference, tuple(input_size), timm_name)
    _REGISTRY[name] = entry
    return entry


def _ensure_populated() -> None:
    # Model files register on import; importing the families here (not at cvzoo import time) keeps
    # `import cvzoo` cheap and free of work.
    from cvzoo.models import _families  # noqa: F401


def split_name(name: str) -> tuple[str, str]:
    """``"resnet50.tv_in1k" -> ("resnet50", "tv_in1k")``."""
    arch, _, tag = name.partition(".")
    return arch, tag


def get_entry(name: str) -> ModelEntry:
    _ensure_populated()
    arch, _ = split_name(name)
    if arch not in _REGISTRY:
        close = difflib.get_close_matches(arch, _REGISTRY.keys(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `cvzoo models` for the list"
        raise UnknownModelError(f"unknown model {arch!r}{hint}")
    return _REGISTRY[arch]


def model_recipe(name: str, task: str) -> tuple[str, dict[str, Any]]:
    """The default training recipe of registered model ``name`` for ``task``: a few words naming it and
    its dotted config keys (the model class's ``recipe_name`` and ``default_recipe``, with ``data.img_size``
    from the registered ``input_size`` unless the recipe sets it; empty for a model
    without one, an unknown name or another task's model, which the config check reports later)."""
    try:
        entry = get_entry(name)
    except UnknownModelError:
        return "", {}
    recipe = getattr(entry.builder, "default_recipe", None)
    if entry.task != task or not recipe:
        return "", {}
    # The variant's registered input size is its default image size (a family recipe is shared by variants
    # designed for different sizes, e.g. the 320 px mobile R-CNN).
    recipe = {"data.img_size": max(entry.input_size[1:]), **recipe}
    return getattr(entry.builder, "recipe_name", "") or split_name(name)[0], recipe


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``, optionally of one ``task``."""
    _ensure_populated()
    return sorted(
        name
        for name, entry in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern) and (task is None or entry.task == task)
    )


def accepted_keywords(builder: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments ``builder`` takes, or None when it takes ``**kwargs`` we cannot follow.

    A builder that passes its ``**kwargs`` on to a class names it in a ``forwards_kwargs_to``
    attribute, so that its models are checked like the others.
    """
    parameters = inspect.signature(builder).parameters.values()
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        return names
    target = getattr(builder, "forwards_kwargs_to", None)
    inner = accepted_keywords(target) if target is not None else None
    return None if inner is None else names | inner


def check_model_kwargs(name: str, kwargs: Mapping[str, Any] | Iterable[str]) -> None:
    """Raise ModelArgumentError when registered model ``name`` does not take one of ``kwargs``' names.

    Checked against the constructor's signature before calling it, so that a TypeError raised inside
    the constructor for another reason is not mistaken for a wrong keyword.
    """
    entry = get_entry(name)
    accepted = accepted_keywords(entry.builder)
    if accepted is None:
        return
    unexpected = sorted(set(kwargs) - accepted)
    if unexpected:
        raise ModelArgumentError(
            f"model {entry.name!r} takes no argument {', '.join(map(repr, unexpected))}; "
            f"it accepts: {', '.join(sorted(accepted))}",
            unexpected,
        )


# timm's keyword names for what cvzoo's constructors call otherwise.
_TIMM_ALIASES = {"in_chans": "in_channels"}


def create_model(
    name: str,
    *,
    weights: str | None = None,
    strict: bool = True,
    pretrained: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    global_pool: str | None = None,
    cache_dir: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with published or local weights.

    ``create_model("resnet50.tv_in1k")`` (a tag) or ``create_model("resnet50", pretrained=True)`` (the
    default tag) downloads the published checkpoint once, checks its sha256, caches it and loads it
    through the remaps (``cvzoo.models.pretrained``); ``weights=PATH`` loads a local file instead.
    timm's keywords mean what they mean in timm: ``pretrained``, ``in_chans`` (with published weights the
    first convolution is adapted: summed for one channel, repeated and rescaled for more),
    ``features_only`` + ``out_indices`` (a backbone returning the stage maps), ``global_pool``.

    Args:
        name: registered name, optionally with a ``.tag`` naming a weight set.
        weights: path to a state dict / checkpoint (torchvision, timm or cvzoo layout).
        strict: when loading weights, require every key to match (otherwise load what fits by shape
            and report the rest).
        pretrained: load the architecture's default weight set (the tag, when one is given, wins).
        features_only: return ``FeatureExtractor(model, out_indices)`` (classification models).
        out_indices: the stages ``features_only`` keeps (default all).
        global_pool: "avg", "max" or "avgmax" for the classifier head.
        cache_dir: where published weights are cached (default ``$CVZOO_HOME/weights``).
        **kwargs: constructor overrides (``num_classes``, ``in_channels``, ...).
    """
    for alias, own in _TIMM_ALIASES.items():
        if alias in kwargs:
            if own in kwargs:
                raise ModelArgumentError(f"pass either {alias} or {own}, not both", [alias])
            kwargs[own] = kwargs.pop(alias)
    check_model_kwargs(name, kwargs)
    entry = get_entry(name)
    arch, tag = split_name(name)
    weight_set = None
    if tag or pretrained:
        if weights is not None:
            raise ValueError(f"{name}: pass either weights=PATH or a weight tag / pretrained=True, not both")
        from cvzoo.models import pretrained as published

        weight_set = published.resolve(arch, tag) if tag else published.resolve_default(arch)
        weights = str(published.fetch(weight_set, cache_dir))
    builder_keywords = accepted_keywords(entry.builder) or ()
    if weights is not None and "fine_tune" in builder_keywords:
        # A model built differently for fine-tuning (R-CNN's frozen batch norm) is told it gets weights.
        kwargs.setdefault("fine_tune", True)
    wanted_classes = kwargs.get("num_classes")
    new_head = weight_set is not None and wanted_classes is not None and wanted_classes != weight_set.num_classes
    # Published weights for another class count: a classifier loads them whole, then replaces its last layer;
    # another model is built for the wanted classes and loads every tensor whose shape fits (the head's do not).
    reset_after_load = new_head and hasattr(entry.builder, "reset_classifier")
    if weight_set is not None and (wanted_classes is None or reset_after_load) and "num_classes" in builder_keywords:
        kwargs["num_classes"] = weight_set.num_classes
    model = entry.build(**kwargs)
    if weights is not None:
        from cvzoo.models.weights import load_weights

        load_weights(model, weights, strict=strict and not (new_head and not reset_after_load),
                     adapt_input_channels=weight_set is not None)
    if reset_after_load:
        model.reset_classifier(wanted_classes)
    if global_pool is not None:
        if not hasattr(model, "set_global_pool"):
            raise ValueError(f"global_pool is for classification models; {arch} has no global pooling to choose")
        model.set_global_pool(global_pool)
    if features_only:
        from cvzoo.models.features import FeatureExtractor

        if not hasattr(model, "forward_features"):
            raise ValueError(f"features_only is for classification models; {arch} has no forward_features")
        model = FeatureExtractor(model, out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices goes with features_only=True")
    return model

"""Map nested dicts (YAML) and dotted overrides onto nested dataclasses, rejecting unknown keys."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cvzoo.config.moved import moved_hint

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value that does not fit the dataclass schema."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key_error(key: str, path: str, cls: type, written: list[str] | None = None) -> ConfigError:
    """The error for ``path + key``; ``written``: the full dotted keys given at or under it, so that a
    key of the old layout is answered with its new place (``cvzoo.config.moved``)."""
    moved = [hint for hint in dict.fromkeys(moved_hint(k) for k in written or [path + key]) if hint]
    if moved:
        return ConfigError(f"unknown config key {path + key!r}: {'; '.join(moved)}")
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else f" (valid keys: {', '.join(names)})"
    return ConfigError(f"unknown config key {path + key!r}{hint}")


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to ``annotation``; raise ConfigError if impossible."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{path}: {value!r} fits none of {annotation}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, path + ".")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{path}: expected a boolean (true/false), got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected an integer, got {value!r}") from None
        if as_float != int(as_float):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return int(as_float)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise ConfigError naming the dotted key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            written = list(flatten(value, f"{path}{key}.")) if isinstance(value, dict) and value else None
            raise _unknown_key_error(key, path, cls, written)
        kwargs[key] = _coerce(value, hints[key], path + key)
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for ``yaml.safe_dump``."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def apply_overrides(config: T, overrides: list[str] | dict[str, Any]) -> T:
    """Return a copy of ``config`` with dotted overrides (``["optim.lr=0.1", "train.amp=false"]``) applied."""
    items = overrides.items() if isinstance(overrides, dict) else (_split_override(o) for o in overrides)
    for dotted, raw in items:
        config = _set_path(config, dotted.split("."), raw, "")
    return config


def get_value(config: Any, dotted: str) -> Any:
    """The value at a dotted key (``get_value(cfg, "optim.lr")``)."""
    node = config
    for key in dotted.split("."):
        node = getattr(node, key)
    return node


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _set_path(node: Any, keys: list[str], raw: Any, path: str) -> Any:
    key = keys[0]
    if not dataclasses.is_dataclass(node):
        raise ConfigError(f"{path.rstrip('.')} is not a section; cannot set {path + '.'.join(keys)}")
    if key not in {f.name for f in dataclasses.fields(node)}:
        raise _unknown_key_error(key, path, type(node), [path + ".".join(keys)])
    annotation = _field_types(type(node))[key]
    if len(keys) == 1:
        if isinstance(raw, str) and not _is_str_annotation(annotation):
            parsed = yaml.safe_load(raw) if raw != "" else raw
            if isinstance(parsed, (dict, list)) or typing.get_origin(annotation) is None or parsed is None:
                raw = parsed if not isinstance(parsed, str) else raw
        value = _coerce(raw, annotation, path + key)
    else:
        value = _set_path(getattr(node, key), keys[1:], raw, path + key + ".")
    return dataclasses.replace(node, **{key: value})


def _is_str_annotation(annotation: Any) -> bool:
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and str in args and len(
        [a for a in args if a is not type(None)]
    ) == 1


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}``; free-form dict fields (``kwargs``) stay whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("kwargs",) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file (optional) then apply dotted overrides."""
    if path is not None:
        data = read_yaml(path)
        try:
            config = from_dict(cls, data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    else:
        config = cls()
    return apply_overrides(config, overrides or [])

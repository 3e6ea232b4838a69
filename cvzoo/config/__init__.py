"""Typed configuration: dataclasses are the source of truth, YAML and ``--set a.b=c`` map onto them."""

from cvzoo.config.core import ConfigError, apply_overrides, config_to_dict, from_dict, load_config

__all__ = ["ConfigError", "apply_overrides", "config_to_dict", "from_dict", "load_config"]

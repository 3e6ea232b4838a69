"""Typed configuration: dataclasses are the source of truth, YAML and ``--set a.b=c`` map onto them."""

from cvzoo.config.core import ConfigError, apply_overrides, config_to_dict, from_dict, load_config
from cvzoo.config.schema import (
    AugmentConfig,
    Config,
    DataConfig,
    MetricLearningConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SchedulerConfig,
    TrainConfig,
)
from cvzoo.config.validate import validate_config

__all__ = [
    "AugmentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "MetricLearningConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "SchedulerConfig",
    "TrainConfig",
    "apply_overrides",
    "config_to_dict",
    "from_dict",
    "load_config",
    "validate_config",
]

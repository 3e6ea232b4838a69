"""Typed configuration: dataclasses are the source of truth, YAML and ``--set a.b=c`` map onto them."""

from cvzoo.config.core import ConfigError, apply_overrides, config_to_dict, from_dict, load_config
from cvzoo.config.schema import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SchedulerConfig,
    TrainConfig,
)
from cvzoo.config.tasks import (
    TASKS,
    ClassifyAugment,
    ClassifyConfig,
    DetectAugment,
    DetectConfig,
    SegmentAugment,
    SegmentConfig,
    SiameseAugment,
    SiameseConfig,
    TaskSpec,
)
from cvzoo.config.validate import validate_config

__all__ = [
    "TASKS",
    "ClassifyAugment",
    "ClassifyConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DetectAugment",
    "DetectConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "SchedulerConfig",
    "SegmentAugment",
    "SegmentConfig",
    "SiameseAugment",
    "SiameseConfig",
    "TaskSpec",
    "TrainConfig",
    "apply_overrides",
    "config_to_dict",
    "from_dict",
    "load_config",
    "validate_config",
]

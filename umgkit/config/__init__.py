"""Run configuration: YAML with ``_base_`` inheritance, dotted overrides, typed validation."""

from .loader import apply_overrides, config_from_dict, load_config, load_yaml_tree, save_config
from .options import Option, parse_options
from .schema import DataConfig, FewShotConfig, ModelConfig, RunConfig, SynthConfig, TrainConfig
from .validate import ConfigError, from_dict, to_dict

__all__ = [
    "ConfigError",
    "DataConfig",
    "FewShotConfig",
    "ModelConfig",
    "Option",
    "RunConfig",
    "SynthConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "from_dict",
    "load_config",
    "load_yaml_tree",
    "parse_options",
    "save_config",
    "to_dict",
]

"""An RL experiment's configuration: `schema` (which key lives where, RL key checks, defaults),
`yaml_format` (reading and writing YAML), `loader` (the five files or a monolithic one, with
`base_config` and overrides) and `experiment` (`ExperimentConfig` and its typed params per scenario).
"""

from src.rl.config.experiment import (
    ExperimentConfig,
    build_env_params_for_scenario,
    eval_scenario_entries,
    network_params,
    network_params_string,
    scenario_params,
    shared_params,
    validate_experiment,
)
from src.rl.config.loader import load_experiment, load_modular_config, save_experiment
from src.rl.config.schema import ConfigError

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "build_env_params_for_scenario",
    "eval_scenario_entries",
    "load_experiment",
    "load_modular_config",
    "network_params",
    "network_params_string",
    "save_experiment",
    "scenario_params",
    "shared_params",
    "validate_experiment",
]

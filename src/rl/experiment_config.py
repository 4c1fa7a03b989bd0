"""Old import path of `src.rl.config`, kept while `src/orchestration/evaluate.py` imports it.

Everything else imports `src.rl.config`; delete this file once evaluate.py does too.
"""

from src.rl.config import (  # noqa: F401
    ConfigError,
    ExperimentConfig,
    build_env_params_for_scenario,
    eval_scenario_entries,
    load_experiment,
    load_modular_config,
    network_params_string,
    save_experiment,
    validate_experiment,
)

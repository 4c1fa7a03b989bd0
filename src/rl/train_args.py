"""The command line the training scripts share: the five config files, the overrides that win
over them, and where a run resumes from, is tracked and is stored.

`rl/local/train.py`, `rl/server/train.py` and `scripts/train_rl_production.py` add their own
few options to `add_common_arguments`; `overrides_from` hands the override values to the
config loader, which checks them like the files' values.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict

#: Exit codes of the training scripts (the SLURM script and chains rely on them). 4: trained
#: and saved, but the tracking server was unreachable at the end: `rl/sync.py` delivers the run.
EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_UNDELIVERED = 0, 1, 2, 3, 4

CONFIG_ROLES = ("network", "scenarios", "algorithm", "reward", "execution")
DEFAULT_CONFIGS = {
    "network": "rl/configs/network/grid3_small.yaml",
    "scenarios": "rl/configs/scenarios/small_mixed.yaml",
    "algorithm": "rl/configs/algorithm/ppo_small.yaml",
    "reward": "rl/configs/reward/empirical.yaml",
    "execution": "rl/configs/execution/laptop.yaml",
}

#: CLI flag -> ExperimentConfig field for the overrides both scripts accept.
OVERRIDE_FLAGS = {
    "timesteps": "total_timesteps",
    "parallel_envs": "parallel_envs",
    "begin": "begin",
    "end_time": "end_time",
    "checkpoint_freq": "checkpoint_freq",
    "eval_freq": "eval_freq",
    "n_steps": "n_steps",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "seed": "seed",
    "control_mode": "control_mode",
    "decision_interval": "decision_interval",
    "policy_sharing": "policy_sharing",
    "eval_scenarios": "eval_scenarios",
    "env_backend": "env_backend",
    "ray_address": "ray_address",
    "torch_threads": "torch_threads",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line (no usage block), exit 2."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(EXIT_USER_ERROR, f"error: {message} (see --help)\n")


def optional(kind):
    """Parse a value, or None for an empty string (how `mlflow run` passes an unset param)."""

    def parse(text: str):
        return None if str(text).strip() in ("", "None", "none") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _flag(parser, name: str, **kwargs) -> None:
    """An option spelt both `--end-time` and `--end_time` (how `mlflow run -P end_time=...` passes it)."""
    spellings = [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])
    parser.add_argument(*spellings, dest=name.replace("-", "_"), **kwargs)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    for role in CONFIG_ROLES:
        parser.add_argument(f"--{role}", default=DEFAULT_CONFIGS[role], help=f"{role} config YAML (default {DEFAULT_CONFIGS[role]})")
    over = parser.add_argument_group("overrides (win over the YAML files)")
    _flag(over, "timesteps", type=optional(int), help="total PPO steps of this invocation")
    _flag(over, "parallel-envs", type=optional(int))
    _flag(over, "begin", type=optional(int), help="simulation time each episode begins at (default 0, or a study's own)")
    _flag(over, "end-time", type=optional(int), help="simulation time each episode ends at (default: a study's own end, "
          "else begin + 3600)")
    _flag(over, "checkpoint-freq", type=optional(int))
    _flag(over, "eval-freq", type=optional(int), help="0 disables evaluation and early stopping")
    _flag(over, "n-steps", type=optional(int))
    _flag(over, "batch-size", type=optional(int))
    _flag(over, "learning-rate", type=optional(float))
    _flag(over, "seed", type=optional(int))
    _flag(over, "control-mode", type=optional(str), help="cycle_splits or phase_select (README 'Control modes')")
    _flag(over, "decision-interval", type=optional(int), help="s between phase choices (phase_select)")
    _flag(over, "policy-sharing", type=optional(str), help="junction (one policy per junction view) or network")
    _flag(over, "eval-scenarios", type=optional(str), help="scenarios file evaluated every eval_freq steps (validation)")
    _flag(over, "env-backend", type=optional(str), help="where the envs run: subprocess (this node) or ray (a Ray "
          "cluster's nodes; needs pip install -e '.[cluster]')")
    _flag(over, "ray-address", type=optional(str), help="the Ray cluster of --env-backend ray: auto or HOST:PORT "
          "(default: $RAY_ADDRESS, else a new local Ray)")
    _flag(over, "torch-threads", type=optional(int), help="torch threads of the training process (default 1: the "
          "policy is small, and the SUMO envs need the cores)")
    _flag(parser, "resume-from", type=optional(str), default=None,
          help="continue a model: a .zip path, runs:/<run_id>/<path>, models:/<name>/<version|latest> or models:/<name>@<alias>")
    _flag(parser, "model-name", type=optional(str), default=None, help="model folder prefix and registered model name")
    _flag(parser, "experiment-name", type=optional(str), default=None, help="MLflow experiment (default: network file name)")
    _flag(parser, "batch-name", type=optional(str), default=None, help="tag for this batch (default: scenarios file name)")
    _flag(parser, "chain-id", type=optional(str), default=None,
          help="this run is one batch of a chain: tags, the chain-<id> alias, and where it resumes from (see README)")
    _flag(parser, "batch-index", type=optional(int), default=None,
          help="position of this batch in its chain (0 first); batch K resumes from batch K-1's complete version")
    _flag(parser, "tracking-uri", type=optional(str), default=None,
          help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    parser.add_argument("--no-mlflow", dest="no_mlflow", action="store_true", help="train without tracking")
    _flag(parser, "models-dir", type=optional(str), default=None, help="where model folders go (default rl/models)")


def overrides_from(args: argparse.Namespace) -> Dict[str, Any]:
    return {field_name: getattr(args, flag) for flag, field_name in OVERRIDE_FLAGS.items()
            if getattr(args, flag, None) is not None}

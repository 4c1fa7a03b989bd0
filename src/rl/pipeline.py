"""The training pipeline behind `rl/local/train.py`, `rl/server/train.py` and the MLproject.

Config -> model folder -> MLflow run -> PPO training (one env per scenario) -> final model,
registered version. Both scripts are thin argument parsers over `run_training`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

from src.params import ParameterError
from src.tracking.store import REPO_ROOT

logger = logging.getLogger(__name__)

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
    "end_time": "end_time",
    "checkpoint_freq": "checkpoint_freq",
    "eval_freq": "eval_freq",
    "n_steps": "n_steps",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "seed": "seed",
}


class UserError(Exception):
    """A mistake the user can fix (config, path, URI, incompatible model): printed as one line."""


def optional(kind):
    """Parse a value, or None for an empty string (how `mlflow run` passes an unset param)."""

    def parse(text: str):
        return None if str(text).strip() in ("", "None", "none") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    for role in CONFIG_ROLES:
        parser.add_argument(f"--{role}", default=DEFAULT_CONFIGS[role], help=f"{role} config YAML (default {DEFAULT_CONFIGS[role]})")
    over = parser.add_argument_group("overrides (win over the YAML files)")
    over.add_argument("--timesteps", type=optional(int), help="total PPO steps of this invocation")
    over.add_argument("--parallel-envs", dest="parallel_envs", type=optional(int))
    over.add_argument("--end-time", dest="end_time", type=optional(int), help="simulated seconds per episode")
    over.add_argument("--checkpoint-freq", dest="checkpoint_freq", type=optional(int))
    over.add_argument("--eval-freq", dest="eval_freq", type=optional(int), help="0 disables evaluation and early stopping")
    over.add_argument("--n-steps", dest="n_steps", type=optional(int))
    over.add_argument("--batch-size", dest="batch_size", type=optional(int))
    over.add_argument("--learning-rate", dest="learning_rate", type=optional(float))
    over.add_argument("--seed", type=optional(int))
    parser.add_argument("--resume-from", dest="resume_from", type=optional(str), default=None,
                        help="continue a model: a .zip path, runs:/<run_id>/<path>, models:/<name>/<version|latest> or models:/<name>@<alias>")
    parser.add_argument("--model-name", dest="model_name", type=optional(str), default=None, help="model folder prefix and registered model name")
    parser.add_argument("--experiment-name", dest="experiment_name", type=optional(str), default=None, help="MLflow experiment (default: network file name)")
    parser.add_argument("--batch-name", dest="batch_name", type=optional(str), default=None, help="tag for this batch (default: scenarios file name)")
    parser.add_argument("--tracking-uri", dest="tracking_uri", type=optional(str), default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    parser.add_argument("--no-mlflow", dest="no_mlflow", action="store_true", help="train without tracking")
    parser.add_argument("--models-dir", dest="models_dir", default=None, help="where model folders go (default rl/models)")


def overrides_from(args: argparse.Namespace) -> Dict[str, Any]:
    return {field_name: getattr(args, flag) for flag, field_name in OVERRIDE_FLAGS.items()
            if getattr(args, flag, None) is not None}


@dataclass
class TrainingOutcome:
    model_dir: Path
    model_path: Path
    run_id: Optional[str]
    registered_version: Optional[str]
    num_timesteps: int
    start_timesteps: int
    interrupted: bool
    results: List[Any] = field(default_factory=list)


class _SigtermFlag:
    """SLURM sends SIGTERM before the time limit: finish the step, checkpoint, close the run."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> "_SigtermFlag":
        def handler(signum, frame):
            logger.warning("SIGTERM received: stopping after this step, saving a checkpoint")
            self.raised = True

        self._previous = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)

    def __call__(self) -> bool:
        return self.raised


def _resolve_paths(args: argparse.Namespace) -> Dict[str, Path]:
    paths = {}
    for role in CONFIG_ROLES:
        value = Path(getattr(args, role))
        if not value.is_absolute() and not value.exists() and (REPO_ROOT / value).exists():
            value = REPO_ROOT / value
        paths[role] = value
    return paths


def load_config(args: argparse.Namespace):
    """The five config files of `args` merged with its overrides; UserError on any config mistake."""
    from src.rl.experiment_config import ConfigError, load_modular_config

    paths = _resolve_paths(args)
    try:
        config = load_modular_config(*(paths[r] for r in CONFIG_ROLES), overrides=overrides_from(args))
    except (ConfigError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    return config, {role: str(path) for role, path in paths.items()}


def run_training(args: argparse.Namespace, mode: str, config=None, source_files: Optional[Dict[str, str]] = None) -> TrainingOutcome:
    """Run one training invocation. `mode` is "local" (one env by default) or "server".

    `config` (with its `source_files`) replaces the five files of `args` (the legacy
    monolithic experiment files use this).
    """
    from src.rl.environment import network_dimensions
    from src.rl.experiment_config import network_params_string, save_experiment
    from src.rl.training import build_shared_network, train_rl_policy
    from src.rl.utils import IncompatibleModelError, check_compatible, read_model_metadata
    from src.tracking.registry import ModelResolutionError, resolve_model_uri

    if config is None:
        config, source_files = load_config(args)
    source_files = dict(source_files or {})
    first_source = Path(next(iter(source_files.values()), "experiment"))
    network_name = Path(source_files.get("network", first_source)).stem
    batch_default = Path(source_files.get("scenarios", first_source)).stem

    scenarios = list(config.scenarios)
    if mode == "local" and not getattr(args, "all_scenarios", False):
        scenarios = scenarios[:1]
    names = [s["name"] for s in scenarios]
    single_env = bool(getattr(args, "single_env", False) or (mode == "local" and config.single_env))

    model_name = args.model_name or config.model_name or network_name
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    models_dir = Path(args.models_dir or config.models_dir)
    if not models_dir.is_absolute():
        models_dir = REPO_ROOT / models_dir
    model_dir = models_dir / f"{model_name}_{stamp}"
    model_dir.mkdir(parents=True, exist_ok=True)
    save_experiment(replace(config, scenarios=scenarios), model_dir / "resolved_config.yaml")
    file_log = _add_file_logging(model_dir / "train.log")
    try:
        logger.info("model folder: %s", model_dir)

        # One network for every group of this run; a resumed model must fit it before anything starts.
        try:
            network_dir = build_shared_network(network_params_string(config), model_dir / "network", config.cycle_lengths)
        except ParameterError as err:
            raise UserError(str(err)) from None
        resume_path = None
        resumed = None
        if args.resume_from:
            try:
                resumed = resolve_model_uri(args.resume_from, args.tracking_uri)
                dims = network_dimensions(network_dir, config.features or None)
                check_compatible(read_model_metadata(resumed.local_path), dims["observation"], dims["action"],
                                 f"--resume-from {args.resume_from}")
            except (ModelResolutionError, FileNotFoundError, IncompatibleModelError) as err:
                raise UserError(str(err)) from None
            resume_path = resumed.local_path
            logger.info("resuming from %s (%s)", args.resume_from, resume_path)

        run = None
        if not args.no_mlflow:
            from src.tracking.run import TrainingRun, flatten, git_commit

            run = TrainingRun(args.experiment_name or config.experiment_name or network_name,
                              run_name=f"{model_name}_{stamp}", tracking_uri=args.tracking_uri)
            run.log_params(flatten({k: v for k, v in config.to_dict().items() if k not in ("scenarios", "source_files")}))
            run.log_params({"scenario_names": ",".join(names), "num_scenarios": len(names), "mode": mode})
            run.set_tags({
                "batch": args.batch_name or batch_default,
                "scenarios": ",".join(names),
                "git_commit": git_commit(),
                "mode": mode,
                "model_dir": str(model_dir),
                "resumed_from": args.resume_from,
                "resumed_from_run_id": resumed.run_id if resumed else None,
                "resumed_from_model_version": f"{resumed.registered_name}/{resumed.version}" if resumed and resumed.version else None,
            })
            run.log_config(model_dir / "resolved_config.yaml", scenarios, source_files, model_dir)

        groups = [scenarios]
        if mode == "server" and not single_env and len(scenarios) > int(config.parallel_envs):
            slots = int(config.parallel_envs)
            groups = [scenarios[k:k + slots] for k in range(0, len(scenarios), slots)]
            logger.warning("%d scenarios exceed %d parallel slots: training in %d consecutive groups of at most %d envs "
                           "(%d steps each), one model", len(scenarios), slots, len(groups), slots,
                           int(config.total_timesteps) // len(groups))
        status = "FAILED"
        results = []
        try:
            with _SigtermFlag() as sigterm:
                current = resume_path
                for k, group in enumerate(groups):
                    group_config = replace(config, scenarios=group,
                                           total_timesteps=max(int(config.total_timesteps) // len(groups), 1))
                    group_dir = model_dir if len(groups) == 1 else model_dir / f"group_{k}"
                    try:
                        result = train_rl_policy(
                            group_config, group_dir, resume_from=current,
                            metrics_sink=run.metrics if run else None,
                            on_checkpoint=(lambda p: run.log_artifact(p, "checkpoints")) if run else None,
                            output_formats=_output_formats(group_dir, run),
                            stop_flag=sigterm, in_process=single_env, network_dir=network_dir,
                        )
                    except IncompatibleModelError as err:
                        raise UserError(str(err)) from None
                    results.append(result)
                    current = result.model_path
                    if sigterm.raised:
                        break
                final_path = model_dir / "final_model.zip"
                if current != final_path:
                    shutil.copy2(current, final_path)
            version = None
            if run is not None:
                run.log_artifacts(model_dir / "network", "network")
                run.metrics.add(results[-1].num_timesteps, {"final/num_timesteps": results[-1].num_timesteps})
                version, model_uri = run.log_policy(final_path, model_name)
                run.set_tags({"registered_model": model_name, "registered_version": version,
                              "interrupted": sigterm.raised, "policy_model_uri": model_uri})
            status = "KILLED" if sigterm.raised else "FINISHED"
            outcome = TrainingOutcome(model_dir, final_path, run.run_id if run else None, version,
                                      results[-1].num_timesteps, results[0].start_timesteps, sigterm.raised, results)
            _print_summary(outcome, model_name, run)
            return outcome
        finally:
            if run is not None:
                run.end(status)
    finally:
        logging.getLogger().removeHandler(file_log)
        file_log.close()


def _output_formats(folder: Path, run) -> list:
    from stable_baselines3.common.logger import make_output_format

    formats = [make_output_format("stdout", str(folder)), make_output_format("csv", str(folder))]
    if run is not None:
        from src.tracking.run import MLflowOutputFormat

        formats.append(MLflowOutputFormat(run.metrics))
    return formats


def _add_file_logging(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _print_summary(outcome: TrainingOutcome, model_name: str, run) -> None:
    print(f"\nfinal model: {outcome.model_path}  (steps {outcome.start_timesteps} -> {outcome.num_timesteps})")
    if run is not None:
        print(f"MLflow run {outcome.run_id}; registered model {model_name!r} version {outcome.registered_version}")
        print(f"resume later with: --resume-from models:/{model_name}/{outcome.registered_version}")
        print(f"open the UI with: mlflow ui --backend-store-uri {run.tracking_uri}")


def main(args: argparse.Namespace, mode: str) -> int:
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        run_training(args, mode)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0

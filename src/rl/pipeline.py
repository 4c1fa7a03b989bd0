"""The training pipeline behind `rl/local/train.py`, `rl/server/train.py` and the MLproject.

Config -> model folder -> MLflow run -> PPO training (one env per scenario) -> final model,
registered version. Both scripts are thin argument parsers over `run_training`.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat

from src.locations import LocationError, check_writable_dir
from src.params import ParameterError
from src.rl.config import ConfigError, load_modular_config, save_experiment, scenario_params
from src.rl.config.experiment import effective_cycle_lengths, source_of
from src.rl.learning_curve import write_learning_curve
from src.rl.junction_observation import PhaseSlotError
from src.rl.route_logging import RouteFileCallback
from src.rl import constants as C
from src.rl.train_args import (CONFIG_ROLES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNDELIVERED, EXIT_USER_ERROR,
                               overrides_from)
from src.rl.training import TrainingResult, build_shared_network, policy_dimensions, policy_kwargs_from, train_rl_policy
from src.rl.utils import IncompatibleModelError, load_checked_model, read_model_metadata
from src.rl.vec_env import EnvWorkerError
from src.tracking.lineage import (BatchPlan, LineageError, chain_alias, new_chain_id, plan_chain_batch,
                                  version_tags)
from src.tracking.datasets import route_file_datasets, scenario_list_dataset
from src.tracking.delivery import is_outage, since, use_short_http_budget
from src.tracking.registry import ModelResolutionError, resolve_model_uri
from src.tracking.route_records import log_route_files
from src.tracking.run import NOTE_TAG, TrainingRun, flatten, git_commit
from src.tracking.store import REPO_ROOT, check_artifact_location, ensure_store, resolve_tracking_uri
from src.tracking.tracker import NullTracker, Tracker

logger = logging.getLogger(__name__)

class UserError(Exception):
    """A mistake the user can fix (config, path, URI, incompatible model): printed as one line."""


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived before training started: nothing was trained, nothing to save."""


class TrainingFailed(Exception):
    """Training ended with an error after saving what it had (one-line message)."""


@dataclass
class TrainingOutcome:
    model_dir: Optional[Path]
    model_path: Optional[Path]
    run_id: Optional[str]
    registered_version: Optional[str]
    num_timesteps: int
    start_timesteps: int
    interrupted: bool
    results: List[Any] = field(default_factory=list)
    already_complete: bool = False
    undelivered: Optional[str] = None  # why the run's tracking records still wait (rl/sync.py)


class StopSignals:
    """SIGTERM (scancel, preemption, SLURM's time-limit warning) and SIGINT (Ctrl-C) set a flag.

    Installed before anything else, so a signal at any moment ends the run the same way:
    training stops at the next step, the model in memory is saved and registered, and the
    MLflow run ends KILLED. Env workers ignore both signals (see `src.rl.vec_env`).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.raised: Optional[str] = None
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        def handler(signum, frame):
            if self.raised is None:
                logger.warning("%s received: stopping after this step and saving a checkpoint",
                               signal.Signals(signum).name)
            self.raised = signal.Signals(signum).name

        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)

    def __call__(self) -> bool:
        return self.raised is not None

    def check(self, where: str) -> None:
        if self.raised:
            raise TrainingInterrupted(f"{self.raised} {where}")


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
    paths = _resolve_paths(args)
    try:
        config = load_modular_config(*(paths[r] for r in CONFIG_ROLES), overrides=overrides_from(args))
    except (ConfigError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    return config, {role: str(path) for role, path in paths.items()}


def open_store(tracking_uri: Optional[str], experiment: str) -> str:
    """The MLflow store's URI once it answers and `experiment`'s artifacts can be written; UserError if not."""
    try:
        store = ensure_store(tracking_uri)
        check_artifact_location(store, experiment)
        return store
    except LocationError as err:
        raise UserError(str(err)) from None
    except MlflowException as err:
        uri = resolve_tracking_uri(tracking_uri)
        if is_outage(err):
            raise UserError(f"MLflow tracking server {uri} is unreachable, nothing was started: start it, point "
                            f"MLFLOW_TRACKING_URI elsewhere or train with --no-mlflow ({_first_line(err)[:160]})") from None
        raise UserError(f"MLflow store {uri}: {_first_line(err)}") from None


def _unique_model_dir(models_dir: Path, model_name: str) -> Path:
    """`<models_dir>/<name>_<stamp>_<hex>`: runs started in the same second never share a folder."""
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    while True:
        candidate = models_dir / f"{model_name}_{stamp}_{secrets.token_hex(3)}"
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue


@dataclass
class TrialHooks:
    """What a sweep (`rl/sweep.py`) adds to one training run: the sweep's run it nests under,
    tags naming the trial, and the listener of every evaluation (False stops: pruned)."""

    parent_run_id: Optional[str] = None
    tags: Dict[str, Any] = field(default_factory=dict)
    on_evaluation: Optional[Callable[[int, float], bool]] = None


@dataclass
class _Plan:
    """Everything decided and checked before a run starts."""

    config: Any
    source_files: Dict[str, str]
    scenarios: List[Dict[str, Any]]
    single_env: bool
    model_name: str
    batch: str
    experiment: str
    store: Optional[str]
    models_dir: Path
    chain: Optional[BatchPlan] = None
    resume_uri: Optional[str] = None
    resumed: Any = None
    trial: TrialHooks = field(default_factory=TrialHooks)


def _prepare(args: argparse.Namespace, mode: str, config, source_files) -> _Plan:
    """Read and check everything a user can get wrong; UserError (one line) before any side effect."""
    if config is None:
        config, source_files = load_config(args)
    source_files = dict(source_files or {})
    first_source = Path(next(iter(source_files.values()), "experiment"))
    network_name = Path(source_files.get("network", first_source)).stem
    scenarios = list(config.scenarios)
    if mode == "local" and not getattr(args, "all_scenarios", False):
        scenarios = scenarios[:1]
    single_env = bool(getattr(args, "single_env", False) or (mode == "local" and config.single_env))
    if len(scenarios) == 1 and config.env_backend != "ray":
        single_env = True  # one env always runs in this process (on Ray it is an actor like any other)
    model_name = args.model_name or config.model_name or network_name
    models_dir = Path(args.models_dir or config.models_dir)
    if not models_dir.is_absolute():
        models_dir = REPO_ROOT / models_dir
    # The run's params are the config: it must hold what the command line chose.
    config = replace(config, model_name=model_name, models_dir=str(models_dir),
                     experiment_name=args.experiment_name or config.experiment_name or network_name)
    plan = _Plan(config, source_files, scenarios, single_env, model_name,
                 args.batch_name or Path(source_files.get("scenarios", first_source)).stem,
                 config.experiment_name, None, models_dir)
    if config.env_backend == "ray" and not single_env:
        at_once = len(scenarios) if mode != "server" else min(len(scenarios), int(config.parallel_envs))
        _join_ray(config, at_once)
    try:
        check_writable_dir(models_dir, "the models folder")
    except LocationError as err:
        raise UserError(str(err)) from None
    if not args.no_mlflow:
        plan.store = open_store(args.tracking_uri, plan.experiment)

    plan.resume_uri = args.resume_from
    chain_id = getattr(args, "chain_id", None)
    if getattr(args, "batch_index", None) is not None and args.batch_index < 0:
        raise UserError(f"--batch-index {args.batch_index}: must be 0 (the first batch of a chain) or more")
    if getattr(args, "batch_index", None) is not None and not chain_id:
        raise UserError("--batch-index needs --chain-id (the chain the batch belongs to)")
    if chain_id:
        if plan.store is None:
            raise UserError("--chain-id needs MLflow tracking (the chain lives in the model registry); drop --no-mlflow")
        client = MlflowClient(tracking_uri=plan.store, registry_uri=plan.store)
        try:
            plan.chain = plan_chain_batch(client, model_name, chain_id, int(args.batch_index or 0), args.resume_from)
        except LineageError as err:
            raise UserError(str(err)) from None
        plan.resume_uri = plan.chain.resume_uri
    if plan.resume_uri and not (plan.chain and plan.chain.complete_version):
        try:
            plan.resumed = resolve_model_uri(plan.resume_uri, plan.store or args.tracking_uri)
        except (ModelResolutionError, LocationError) as err:
            raise UserError(str(err)) from None
    return plan


def _join_ray(config, envs_at_once: int) -> None:
    """Join the Ray cluster before anything is written: no Ray, no cluster, or a cluster with
    fewer CPUs than envs running at once is a one-line error."""
    from src.rl.ray_vec_env import RayUnavailable, cluster_shortfall, connect

    try:
        ray = connect(config.ray_address)
    except RayUnavailable as err:
        raise UserError(f"{source_of(config, 'env_backend')}: {err}") from None
    shortfall = cluster_shortfall(ray, envs_at_once)
    if shortfall:
        raise UserError(f"{source_of(config, 'parallel_envs')}: {shortfall}")


def _check_resumed_model(plan: _Plan, network_dir: Path) -> Dict[str, Any]:
    """Load the whole resumed model and check it fits the network and the config's policy."""
    dims = policy_dimensions(plan.config, network_dir)
    policy = policy_kwargs_from(plan.config.net_arch, plan.config.activation, plan.config.log_std_init)
    control = {"control_mode": plan.config.control_mode, "policy_sharing": plan.config.sharing}
    try:
        metadata = load_checked_model(plan.resumed.local_path, dims["observation"], dims["action"],
                                      f"--resume-from {plan.resume_uri}", policy,
                                      bool(plan.config.normalize_observations), control)
    except (IncompatibleModelError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    return metadata


def run_training(args: argparse.Namespace, mode: str, config=None, source_files: Optional[Dict[str, str]] = None,
                 trial: Optional[TrialHooks] = None) -> TrainingOutcome:
    """Run one training invocation. `mode` is "local" (one env by default) or "server".

    `config` (with its `source_files`) replaces the five files of `args` (the legacy
    monolithic experiment files and a sweep's trials use this); `trial` makes the run a
    sweep's trial. Raises UserError before anything is written,
    TrainingInterrupted when stopped before training, TrainingFailed after saving what it had.
    """
    with StopSignals() as stop:
        plan = _prepare(args, mode, config, source_files)
        plan.trial = trial or TrialHooks()
        if plan.chain and plan.chain.complete_version:
            print(f"chain {plan.chain.chain_id!r} batch {plan.chain.batch_index} is already complete "
                  f"(model {plan.model_name!r} version {plan.chain.complete_version}); nothing to train")
            return TrainingOutcome(None, None, None, plan.chain.complete_version, 0, 0, False, already_complete=True)
        stop.check("before the run started")
        model_dir = _unique_model_dir(plan.models_dir, plan.model_name)
        try:
            network_dir = build_shared_network(scenario_params(plan.config, plan.config.scenarios[0]),
                                               model_dir / "network", effective_cycle_lengths(plan.config))
            metadata = _check_resumed_model(plan, network_dir) if plan.resumed else {}
            policy_dimensions(plan.config, network_dir)  # the junction input fits every signal (phase_slots)
            stop.check("before the run started")
        except PhaseSlotError as err:
            shutil.rmtree(model_dir, ignore_errors=True)
            raise UserError(f"{source_of(plan.config, 'phase_slots')}: key 'phase_slots': {err}") from None
        except ParameterError as err:
            shutil.rmtree(model_dir, ignore_errors=True)
            raise UserError(str(err)) from None
        except BaseException:
            shutil.rmtree(model_dir, ignore_errors=True)
            raise
        return _train(mode, plan, model_dir, network_dir, metadata, stop)


def _train(mode: str, plan: _Plan, model_dir: Path, network_dir: Path, resumed_metadata: Dict[str, Any],
           stop: StopSignals) -> TrainingOutcome:
    config = plan.config
    chain_id = (plan.chain.chain_id if plan.chain else None) or resumed_metadata.get("chain_id") \
        or new_chain_id(plan.model_name)
    if plan.chain:
        batch_index = plan.chain.batch_index
    else:
        batch_index = int(resumed_metadata["batch_index"]) + 1 if "batch_index" in resumed_metadata else 0
    start_steps = int(resumed_metadata.get("num_timesteps", 0))
    target_steps = start_steps + int(config.total_timesteps)
    if plan.chain and plan.chain.target_steps:  # a requeued batch trains only what is left
        target_steps = plan.chain.target_steps
        config = replace(config, total_timesteps=max(target_steps - start_steps, 1))
    parent_version = plan.chain.parent_version if plan.chain else (plan.resumed.version if plan.resumed else None)
    names = [s["name"] for s in plan.scenarios]
    save_experiment(replace(config, scenarios=plan.scenarios, single_env=plan.single_env), model_dir / "resolved_config.yaml")
    file_log = _add_file_logging(model_dir / "train.log")
    run: Tracker = NullTracker()
    status = "FAILED"
    try:
        logger.info("model folder: %s", model_dir)
        if plan.resumed:
            logger.info("resuming from %s (%s) at step %d", plan.resume_uri, plan.resumed.local_path, start_steps)
        dims = policy_dimensions(config, network_dir)
        description = (f"PPO traffic-signal policy on network {Path(plan.source_files.get('network', plan.experiment)).stem}"
                       f" ({dims['signals']} signals, up to {dims['max_phases']} phases): {config.control_mode} control, "
                       f"{config.sharing} policy, observation size {dims['observation']}, action size {dims['action']}")
        if plan.store is not None:
            run = TrainingRun(plan.experiment, run_name=f"{plan.batch}_b{batch_index}_{start_steps}-{target_steps}",
                              tracking_uri=plan.store, journal_dir=model_dir / "tracking", description=description,
                              parent_run_id=plan.trial.parent_run_id, tags=plan.trial.tags)
        ran = replace(config, single_env=plan.single_env)
        run.log_params(flatten({k: v for k, v in ran.to_dict().items() if k not in ("scenarios", "source_files")}))
        run.log_params({"scenario_names": ",".join(names), "num_scenarios": len(names), "mode": mode})
        run.set_tags({
            "batch": plan.batch, "scenarios": ",".join(names), "git_commit": git_commit(), "mode": mode,
            "model_dir": str(model_dir), "chain_id": chain_id, "batch_index": batch_index,
            "start_steps": start_steps, "batch_target_steps": target_steps,
            "resumed_from": plan.resume_uri,
            "resumed_from_run_id": plan.resumed.run_id if plan.resumed else None,
            "resumed_from_model_version": f"{plan.resumed.registered_name}/{plan.resumed.version}"
            if plan.resumed and plan.resumed.version else None,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            NOTE_TAG: f"Batch {plan.batch} (index {batch_index}) on {', '.join(names)}: steps {start_steps} -> "
                      f"{target_steps}" + (f", resumed from {plan.resume_uri}" if plan.resume_uri else "")
                      + f". {description}.",
        })  # a sweep's trial tags (plan.trial.tags) were given to the run at its creation
        run.log_config(model_dir / "resolved_config.yaml", plan.scenarios, plan.source_files, model_dir)
        route_records = log_route_files(run, plan.scenarios, model_dir)  # recorded demand: checksums, small files whole
        run.log_datasets([scenario_list_dataset(plan.scenarios, plan.source_files.get("scenarios")),
                          *route_file_datasets(route_records)])
        stop.check("before training started")
        lineage = {"chain_id": chain_id, "batch_index": batch_index}
        results, failure = _train_groups(mode, plan, config, model_dir, network_dir, run, stop, lineage)
        final_path = model_dir / "final_model.zip"
        if results and results[-1].model_path != final_path:
            shutil.copy2(results[-1].model_path, final_path)
        steps = results[-1].num_timesteps if results else start_steps
        interrupted = stop() or failure is not None
        run.log_artifacts(model_dir / "network", "network")
        episodes = [e for r in results for e in r.episodes]
        for path in write_learning_curve(episodes, [e for r in results for e in r.evaluations], model_dir / "learning"):
            run.log_artifact(path, "learning")
        # what ran: PPO trains whole rollouts, so possibly more than total_timesteps
        run.log_metrics(steps, {"final/num_timesteps": steps, "final/trained_timesteps": steps - start_steps})
        tags = version_tags(chain_id, batch_index, plan.batch, steps, start_steps, target_steps, interrupted,
                            parent_version, failure)
        alias = None if interrupted else chain_alias(chain_id)
        run.log_policy(final_path, plan.model_name, tags, alias, description)
        run.set_tags({"interrupted": interrupted, "mlflow.runName": f"{plan.batch}_b{batch_index}_{start_steps}-{steps}"})
        status = "FAILED" if failure is not None else "KILLED" if stop() else "FINISHED"
        undelivered = _end_run(run, status, config, stop)
        version = run.results.get("registered_version")
        outcome = TrainingOutcome(model_dir, final_path, run.run_id, version, steps, start_steps, interrupted, results,
                                  undelivered=undelivered)
        _print_summary(outcome, plan.model_name, run)
        if failure is not None:
            raise TrainingFailed(f"{failure}; the model at the failure is saved as {final_path}"
                                 + (f" and registered as version {version}" if version else "")
                                 + (f"; {undelivered}: deliver them with rl/sync.py {model_dir}" if undelivered else ""))
        return outcome
    except TrainingInterrupted:
        status = "KILLED"
        raise
    finally:
        try:
            _end_run(run, status, config, stop)
        finally:
            logging.getLogger().removeHandler(file_log)
            file_log.close()


def _train_groups(mode: str, plan: _Plan, config, model_dir: Path, network_dir: Path, run: Tracker,
                  stop: StopSignals, lineage: Dict[str, Any]):
    """Train the scenario groups one after another on one model. Returns (results, failure or None)."""
    groups = [plan.scenarios]
    if mode == "server" and not plan.single_env and len(plan.scenarios) > int(config.parallel_envs):
        slots = int(config.parallel_envs)
        groups = [plan.scenarios[k:k + slots] for k in range(0, len(plan.scenarios), slots)]
        logger.warning("%d scenarios exceed %d parallel slots: training in %d consecutive groups of at most %d envs "
                       "(%d steps each), one model", len(plan.scenarios), slots, len(groups), slots,
                       int(config.total_timesteps) // len(groups))
    results: List[Any] = []
    current = plan.resumed.local_path if plan.resumed else None
    for k, group in enumerate(groups):
        group_config = replace(config, scenarios=group, total_timesteps=max(int(config.total_timesteps) // len(groups), 1))
        group_dir = model_dir if len(groups) == 1 else model_dir / f"group_{k}"
        try:
            result = train_rl_policy(
                group_config, group_dir, resume_from=current,
                metrics_sink=run.log_metrics,
                on_checkpoint=lambda p: run.log_artifact(p, "checkpoints"),
                output_formats=_output_formats(group_dir, run),
                stop_flag=stop, in_process=plan.single_env, network_dir=network_dir, extra_metadata=lineage,
                extra_callbacks=[RouteFileCallback(group, run.log_metrics)], on_evaluation=plan.trial.on_evaluation,
            )
        except IncompatibleModelError as err:
            raise UserError(str(err)) from None
        except EnvWorkerError as err:
            logger.error("%s", err)
            checkpoint = getattr(err, "checkpoint", None)
            if checkpoint is not None:
                results.append(TrainingResult(model_path=checkpoint, model_dir=group_dir,
                                              num_timesteps=int(read_model_metadata(checkpoint).get("num_timesteps", 0)),
                                              start_timesteps=0, stopped_early=False))
                run.log_artifact(checkpoint, "checkpoints")
            return results, str(err)
        results.append(result)
        current = result.model_path
        if stop():
            break
    return results, None


#: Longest key the console table prints whole (SB3 cuts at 36 and fails on clashes).
CONSOLE_KEY_LENGTH = 120


def _output_formats(folder: Path, run: Tracker) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    return [HumanOutputFormat(sys.stdout, max_length=CONSOLE_KEY_LENGTH),
            CSVOutputFormat(str(folder / "progress.csv")), *run.output_formats()]


def _add_file_logging(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _end_run(run: Tracker, status: str, config: Any, stop: StopSignals) -> Optional[str]:
    """End the run, waiting for the tracking server (less after SIGTERM). None when every
    record was delivered, else why not, with the command that delivers the rest."""
    patience = float(config.tracking_wait_s)
    if stop():
        patience = min(patience, C.TRACKING_WAIT_AFTER_STOP_S)
    if run.end(status, patience):
        return None
    down = getattr(run, "unreachable_since", None)
    why = f"unreachable since {since(down)}" if down else f"delivered nothing for {patience:g} s"
    return f"tracking server {run.tracking_uri} {why}: {run.pending()} records of the run wait"


def _print_summary(outcome: TrainingOutcome, model_name: str, run: Tracker) -> None:
    what = "model at the interruption" if outcome.interrupted else "final model"
    print(f"\n{what}: {outcome.model_path}  (steps {outcome.start_timesteps} -> {outcome.num_timesteps})")
    if run.run_id is None:
        return
    if outcome.undelivered:
        print(f"MLflow run {outcome.run_id}: NOT COMPLETE in the store; {outcome.undelivered} in "
              f"{outcome.model_dir / 'tracking'} (params, metrics, artifacts, model registration)")
        print(f"deliver them when the server is back with: {Path(sys.executable).name} rl/sync.py {outcome.model_dir}")
        return
    if outcome.registered_version is None:
        print(f"MLflow run {outcome.run_id}; the model was NOT registered (see the warning above)")
    else:
        print(f"MLflow run {outcome.run_id}; registered model {model_name!r} version {outcome.registered_version}")
        print(f"resume later with: --resume-from models:/{model_name}/{outcome.registered_version}")
    page = f"#/experiments/{getattr(run, 'experiment_id', '')}?workflowType=machine_learning"
    if str(run.tracking_uri).startswith(("http://", "https://")):
        print(f"open the UI at: {run.tracking_uri}/{page}")
    else:
        print(f"open the UI with: mlflow ui --backend-store-uri {run.tracking_uri}  then http://127.0.0.1:5000/{page}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def main(args: argparse.Namespace, mode: str, config=None, source_files: Optional[Dict[str, str]] = None) -> int:
    """Run the pipeline; exit 0 done, 1 failed (saved what it had), 2 user error, 3 interrupted,
    4 done but the tracking server was unreachable at the end (rl/sync.py delivers the run)."""
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    use_short_http_budget()
    try:
        outcome = run_training(args, mode, config, source_files)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingInterrupted as err:
        print(f"interrupted: {err}; nothing had been trained yet", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.undelivered:
        print(f"error: trained and saved in {outcome.model_dir}, but {outcome.undelivered}; "
              f"deliver them with: rl/sync.py {outcome.model_dir}", file=sys.stderr)
        return EXIT_UNDELIVERED
    return EXIT_OK

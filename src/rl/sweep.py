"""Hyperparameter sweeps: an Optuna study whose trials are real training runs of the pipeline.

A search space file maps config keys (of the network, algorithm, reward or execution file,
`reward_params.<name>` for one reward weight) to distributions. Each trial's values are
command-line overrides of the five files, checked by the one config parser; the trial trains
through `src.rl.pipeline.run_training` as an MLflow child of the sweep's parent run, reports
every held-out evaluation to Optuna (whose pruner may stop it) and is scored by its best
all-trips travel time (lower is better). Workers on one storage share a budget of `N` trials.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import re
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from src.rl import constants as C
from src.rl.config import ConfigError, load_modular_config
from src.rl.config import schema as S
from src.rl.config.experiment import ExperimentConfig, group_of_field
from src.rl.config.yaml_format import dump_mapping, read_mapping
from src.rl.pipeline import (StopSignals, TrainingFailed, TrainingInterrupted, TrialHooks, UserError, load_config,
                             open_store, run_training)
from src.rl.train_args import CONFIG_ROLES, EXIT_INTERRUPTED, EXIT_OK, overrides_from
from src.tracking.delivery import is_outage
from src.tracking.run import PARENT_TAG, start_run
from src.tracking.store import REPO_ROOT, sqlite_file
from src.validation import got, is_int, is_number, suggest

logger = logging.getLogger(__name__)

DISTRIBUTIONS = ("float", "int", "categorical")
#: Fields each distribution takes (`type` names the distribution).
SPEC_FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}
#: The searchable keys: every key of the network, algorithm, reward and execution files.
SEARCHABLE = frozenset().union(*(S.GROUP_KEYS[g] for g in ("network", "algorithm", "reward", "execution")))
REWARD_PARAM_PREFIX = "reward_params."
#: Trials that use up the budget: finished ones, running ones, and failures that were not
#: interruptions (an interrupted trial's values are queued again: the next ask runs them).
SPENT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
OBJECTIVE = "eval/mean_travel_time_all"


class SweepError(UserError):
    """A mistake in the sweep's input (space file, storage, options): one line, exit 2."""


# --- the search space ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One searched key and its distribution. Categorical choices Optuna cannot store (lists,
    mappings) are offered to it as their YAML text and mapped back (`value_of`)."""

    key: str
    distribution: optuna.distributions.BaseDistribution
    values: Tuple[Tuple[Any, Any], ...] = ()  # categorical: (label Optuna sees, config value)

    def value_of(self, label: Any) -> Any:
        for shown, value in self.values:
            if shown == label:
                return copy.deepcopy(value)
        return label

    def candidates(self) -> List[Any]:
        """The values that bound the search (low and high, or every choice): checked before any trial."""
        if self.values:
            return [value for _, value in self.values]
        return [self.distribution.low, self.distribution.high]


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _label(value: Any) -> Any:
    return value if _plain(value) else dump_mapping({"v": value})[3:].strip()


def _distribution(key: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, Mapping):
        raise SweepError(f"{where}: key {key!r}: expected a mapping like {{type: float, low: 1e-5, high: 1e-3, "
                         f"log: true}}, {got(spec)}")
    kind = spec.get("type")
    if kind not in DISTRIBUTIONS:
        raise SweepError(f"{where}: key {key!r}: unknown distribution {kind!r}{suggest(str(kind), DISTRIBUTIONS)}; "
                         f"allowed types: {', '.join(DISTRIBUTIONS)}")
    extra = sorted(set(spec) - SPEC_FIELDS[kind] - {"type"})
    if extra:
        raise SweepError(f"{where}: key {key!r}: {kind} takes {', '.join(sorted(SPEC_FIELDS[kind]))}, not {extra[0]!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SweepError(f"{where}: key {key!r}: categorical needs a non-empty list 'choices', {got(choices)}")
        labels = [_label(c) for c in choices]
        if len(set(map(repr, labels))) != len(labels):
            raise SweepError(f"{where}: key {key!r}: a choice is listed twice in {choices}")
        return Param(key, optuna.distributions.CategoricalDistribution(labels), tuple(zip(labels, choices)))
    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    number = is_int if kind == "int" else is_number
    wanted = "integers" if kind == "int" else "numbers"
    if not number(low) or not number(high):
        raise SweepError(f"{where}: key {key!r}: {kind} needs 'low' and 'high' as {wanted}, got low {low!r} high {high!r}")
    if not low < high:
        raise SweepError(f"{where}: key {key!r}: low {low!r} must be below high {high!r}")
    if not isinstance(log, bool):
        raise SweepError(f"{where}: key {key!r}: 'log' is true or false, {got(log)}")
    if log and low <= 0:
        raise SweepError(f"{where}: key {key!r}: a log scale needs low > 0, got low {low!r}")
    if step is not None and (not number(step) or step <= 0 or log):
        raise SweepError(f"{where}: key {key!r}: 'step' must be a positive {wanted[:-1]} and cannot go with log, "
                         f"got step {step!r}")
    if kind == "int":
        return Param(key, optuna.distributions.IntDistribution(int(low), int(high), log=log, step=int(step or 1)))
    return Param(key, optuna.distributions.FloatDistribution(float(low), float(high), log=log,
                                                             step=None if step is None else float(step)))


def _check_key(key: str, where: str) -> None:
    if key.startswith(REWARD_PARAM_PREFIX) and key != REWARD_PARAM_PREFIX:
        return  # the reward's own parameter list checks the name (`check_space`)
    if key in SEARCHABLE:
        return
    if key == "scenarios" or key in S.SCENARIO_KEYS:
        raise SweepError(f"{where}: key {key!r} belongs to the scenarios file, which a sweep trains on and does not "
                         f"search; searchable: the keys of the network, algorithm, reward and execution files")
    raise SweepError(f"{where}: unknown key {key!r}{suggest(key, SEARCHABLE)}; searchable: the keys of the network, "
                     f"algorithm, reward and execution files, and reward_params.<name>")


def read_space(path: Path) -> List[Param]:
    """The space file's keys and distributions, checked for shape (values: `check_space`)."""
    where = f"sweep space file {path}"
    try:
        data = read_mapping(path, "sweep space")
    except ConfigError as err:
        raise SweepError(str(err)) from None
    if not data:
        raise SweepError(f"{where}: no keys; give at least one like 'learning_rate: {{type: float, low: 1e-5, "
                         f"high: 1e-3, log: true}}'")
    params = []
    for key, spec in data.items():
        _check_key(key, where)
        params.append(_distribution(key, spec, where))
    return params


def config_overrides(values: Mapping[str, Any], base: ExperimentConfig) -> Dict[str, Any]:
    """A trial's values as overrides of the config keys: `reward_params.<name>` merged into the
    base config's reward parameters."""
    overrides: Dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith(REWARD_PARAM_PREFIX):
            weights = overrides.setdefault("reward_params", dict(base.reward_params))
            weights[key[len(REWARD_PARAM_PREFIX):]] = value
        else:
            overrides[key] = value
    return overrides


@dataclass
class Experiment:
    """The sweep's five files, its command-line overrides and the config they make."""

    paths: Dict[str, str]
    cli_overrides: Dict[str, Any]
    base: ExperimentConfig

    def config(self, values: Mapping[str, Any]) -> ExperimentConfig:
        """The config one trial trains: the files, the command line, then the trial's values."""
        overrides = {**self.cli_overrides, **config_overrides(values, self.base)}
        return load_modular_config(*(self.paths[r] for r in CONFIG_ROLES), overrides=overrides)


def check_space(space: Sequence[Param], experiment: Experiment, where: str) -> None:
    """Every bound and choice through the training config parser, before any trial runs."""
    given = set(experiment.cli_overrides)
    for param in space:
        if param.key in given or (param.key.startswith(REWARD_PARAM_PREFIX) and "reward_params" in given):
            raise SweepError(f"{where}: key {param.key!r} is searched and also given on the command line; drop one")
        for value in param.candidates():
            try:
                experiment.config({param.key: value})
            except ConfigError as err:
                problem = str(err).replace("command-line overrides: ", "")
                raise SweepError(f"{where}: key {param.key!r}: value {value!r} is refused by training: {problem}") from None
    if not experiment.base.eval_freq:
        raise SweepError(f"{experiment.base.key_sources.get('eval_freq', 'the execution file')}: key 'eval_freq' is 0; "
                         f"a sweep scores trials by their evaluations: set eval_freq (or --eval-freq) > 0")


# --- the study -----------------------------------------------------------------------------------


def hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def storage_file(url: str) -> Optional[Path]:
    """The file of a `journal://<path>` or `sqlite:///<path>` storage (its folder must exist);
    None for a database server."""
    path = Path(url[len("journal://"):]) if url.startswith("journal://") else sqlite_file(url)
    if path is not None and not path.parent.is_dir():
        raise SweepError(f"--storage {url}: folder {path.parent} does not exist")
    return path


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The study storage of `url`: `journal://<path>` is Optuna's journal file (for a shared
    file system), anything else a database URL (sqlite:///<path> for one machine).
    SweepError when it cannot open."""
    path = storage_file(url)
    try:
        if url.startswith("journal://"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        kwargs = {"connect_args": {"timeout": 60}} if path is not None else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as err:  # noqa: BLE001 - a driver, URL or server problem: all one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SweepError(f"--storage {hide_password(url)}: cannot open the study storage: {first[:200]}") from None


class BudgetLock:
    """Serialises 'count the trials, then ask for one' between workers, so that N is N.

    A lock file next to a SQLite or journal storage (O_EXCL, works on NFS; a lock older than
    `SWEEP_LOCK_GRACE_S` is broken). A database server has none: two workers asking at the
    same millisecond may then run one trial more than the budget.
    """

    def __init__(self, storage_file: Optional[Path]) -> None:
        self.lock = None
        if storage_file is not None:
            from optuna.storages.journal import JournalFileOpenLock

            self.lock = JournalFileOpenLock(f"{storage_file}.budget", grace_period=C.SWEEP_LOCK_GRACE_S)

    def __enter__(self) -> "BudgetLock":
        if self.lock is not None:
            self.lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        if self.lock is not None:
            self.lock.release()


def spent(study: optuna.Study) -> int:
    """Trials that count against the budget (see `SPENT_STATES`)."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in SPENT_STATES or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")))


def make_pruner(name: str, prune_above: Optional[float]) -> optuna.pruners.BasePruner:
    """The pruner of `--pruner`. Trials report at steps 0, 1, 2, ... (their evaluations), so
    trials whose rollouts round the evaluation steps differently are still compared."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=C.SWEEP_MEDIAN_STARTUP_TRIALS,
                                           n_warmup_steps=C.SWEEP_WARMUP_EVALUATIONS)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "threshold":
        return optuna.pruners.ThresholdPruner(upper=float(prune_above))
    return optuna.pruners.NopPruner()


# --- one worker ----------------------------------------------------------------------------------

HEARTBEAT = "heartbeat"  # the trial's user attribute: time.time() of its worker's last sign of life


def last_sign_of_life(trial: optuna.trial.FrozenTrial) -> float:
    """When the trial's worker last marked it alive (its start, for a trial asked before heartbeats)."""
    if HEARTBEAT in trial.user_attrs:
        return float(trial.user_attrs[HEARTBEAT])
    return trial.datetime_start.timestamp() if trial.datetime_start else time.time()


class TrialHeartbeat:
    """Marks a running trial alive every `interval` seconds from a thread, so that a worker that
    dies without a word (SIGKILL, a lost node) is noticed by the others (`Sweep.fail_lost_trials`)."""

    def __init__(self, trial: optuna.trial.Trial, interval: float) -> None:
        self.trial, self.interval = trial, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-trial-{trial.number}", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.trial.set_user_attr(HEARTBEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                logger.warning("trial %d was failed by another worker (no sign of life for too long): its "
                               "result will not count", self.trial.number)
                return
            except Exception as err:  # noqa: BLE001 - a busy storage: the next beat tries again
                logger.debug("heartbeat of trial %d not written: %s", self.trial.number, err)

    def __enter__(self) -> "TrialHeartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)



def _retried(call: Callable[[], Any], attempts: int = 5) -> Any:
    """`call()`, again after 0.5, 1, 2, 4 s when the store is busy or briefly away: workers
    sharing a SQLite MLflow store meet 'database is locked' (training runs go through their
    courier, which retries on its own)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - anything else, or the last attempt, is raised
            if attempt == attempts - 1 or not ("database is locked" in str(err) or is_outage(err)):
                raise
            logger.debug("MLflow call failed (%s); again in %.1f s", err, 0.5 * 2 ** attempt)
            time.sleep(0.5 * 2 ** attempt)


class PatientClient:
    """An `MlflowClient` whose every call is `_retried`."""

    def __init__(self, tracking_uri: str) -> None:
        self._client = MlflowClient(tracking_uri=tracking_uri)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: _retried(lambda: method(*args, **kwargs))


@dataclass
class Sweep:
    """One worker's view of the sweep: its study, budget, MLflow parent run and output folder."""

    args: argparse.Namespace
    experiment: Experiment
    space: List[Param]
    study: optuna.Study
    lock: BudgetLock
    trials: int
    output: Path
    store: str
    experiment_name: str
    parent_run_id: str = ""
    client: PatientClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = PatientClient(self.store)

    def open_parent(self) -> None:
        """The study's parent run (made by the first worker, reopened by later ones)."""
        with self.lock:
            known = self.study.user_attrs.get("mlflow_parent_run_id")
            if known:
                try:
                    run = self.client.get_run(known)
                    if run.info.lifecycle_stage == "active":
                        if run.info.status != "RUNNING":
                            self.client.update_run(known, status="RUNNING")
                        self.parent_run_id = known
                        return
                except Exception:  # noqa: BLE001 - another store, or deleted: a new parent run
                    pass
            run_id, _, _ = _retried(lambda: start_run(self.experiment_name, f"sweep_{self.study.study_name}", self.store))
            self.client.log_batch(run_id, params=[_mlflow_param(k, v) for k, v in self.parent_params().items()])
            for role, path in {"space": self.args.space, **self.experiment.paths}.items():
                self.client.log_artifact(run_id, str(Path(path).resolve()), f"config/{role}")
            self.study.set_user_attr("mlflow_parent_run_id", run_id)
            self.parent_run_id = run_id

    def parent_params(self) -> Dict[str, Any]:
        return {"study": self.study.study_name, "storage": hide_password(self.args.storage),
                "sampler": type(self.study.sampler).__name__, "pruner": type(self.study.pruner).__name__,
                "objective": f"{OBJECTIVE} (minimize, best evaluation of a trial)",
                "searched": ",".join(p.key for p in self.space), "space_file": str(self.args.space),
                **{f"config.{role}": path for role, path in self.experiment.paths.items()}}

    def next_trial(self) -> Optional[optuna.trial.Trial]:
        with self.lock:
            self.fail_lost_trials()
            if spent(self.study) >= self.trials:
                return None
            trial = self.study.ask({p.key: p.distribution for p in self.space})
            trial.set_user_attr(HEARTBEAT, time.time())
            return trial

    def fail_lost_trials(self) -> None:
        """Fail the RUNNING trials whose worker gave no sign of life for `--stale-after` seconds
        (SIGKILL, a lost node): their MLflow runs end KILLED and their values are queued again,
        as after a SIGTERM, so the budget counts only trials that can still finish."""
        now = time.time()
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            silent = now - last_sign_of_life(frozen)
            if silent > self.args.stale_after:
                why = f"its worker gave no sign of life for {silent:.0f} s (killed, or its node lost)"
                logger.warning("trial %d: %s; failed, its values queued again", frozen.number, why)
                self.finish(optuna.trial.Trial(self.study, frozen._trial_id), None, TrialState.FAIL, why,
                            interrupted=True, lost=True)

    def run(self) -> int:
        """Trials until the budget is spent or a stop signal; 3 when stopped, else 0."""
        with StopSignals() as stop:
            self.open_parent()
            interrupted = False
            while not stop():
                trial = self.next_trial()
                if trial is None:
                    break
                if stop():
                    self.finish(trial, None, TrialState.FAIL, "stopped before it started", interrupted=True)
                    break
                interrupted = self.run_trial(trial)
                if interrupted:
                    break
            interrupted = interrupted or stop()
            self.summarise(interrupted)
        return EXIT_INTERRUPTED if interrupted else EXIT_OK

    def run_trial(self, trial: optuna.trial.Trial) -> bool:
        """Train one trial and tell Optuna how it ended; True when a stop signal ended it."""
        values = {p.key: p.value_of(trial.params[p.key]) for p in self.space}
        logger.info("trial %d of study %r: %s", trial.number, self.study.study_name,
                    ", ".join(f"{k}={v}" for k, v in values.items()))
        scores: List[float] = []
        pruned: List[int] = []

        def on_evaluation(step: int, score: float) -> bool:
            if not math.isfinite(score):
                return True
            trial.report(score, len(scores))
            scores.append(score)
            if trial.should_prune():
                pruned.append(step)
                return False
            return True

        args = copy.copy(self.args)
        args.model_name = self.args.model_name or self.study.study_name
        args.models_dir = str(self.output / "trials")
        args.batch_name = f"trial_{trial.number:03d}"
        args.experiment_name = self.experiment_name
        hooks = TrialHooks(self.parent_run_id, {"sweep.study": self.study.study_name, "sweep.trial": trial.number},
                           on_evaluation)
        try:
            config = self.experiment.config(values)
            with TrialHeartbeat(trial, self.args.stale_after / C.SWEEP_HEARTBEATS_PER_STALE):
                outcome = run_training(args, "server", config, self.experiment.paths, hooks)
        except ConfigError as err:
            self.finish(trial, None, TrialState.FAIL, str(err))
            return False
        except TrainingInterrupted as err:
            self.finish(trial, None, TrialState.FAIL, str(err), interrupted=True)
            return True
        except (UserError, TrainingFailed) as err:
            self.finish(trial, None, TrialState.FAIL, str(err))
            return False
        if outcome.interrupted:
            self.finish(trial, None, TrialState.FAIL, "stopped by a signal", interrupted=True)
            return True
        if pruned:
            self.finish(trial, None, TrialState.PRUNED, f"pruned at step {pruned[0]}")
        elif not scores:
            self.finish(trial, None, TrialState.FAIL, f"no evaluation ran (eval_freq {config.eval_freq} > the "
                                                      f"{outcome.num_timesteps} steps trained)")
        else:
            self.finish(trial, min(scores), TrialState.COMPLETE, "")
        return False

    def finish(self, trial: optuna.trial.Trial, value: Optional[float], state: TrialState, why: str,
               interrupted: bool = False, lost: bool = False) -> None:
        """Tell Optuna, tag the trial's MLflow run, and queue an interrupted trial's values again.
        `lost`: another worker's trial, whose MLflow run nobody else will end."""
        if self.study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
            print(f"trial {trial.number} ended {state.name} here, but another worker had failed it for lack of a "
                  f"sign of life (--stale-after {self.args.stale_after:.0f} s) and queued its values again: "
                  f"this result is not counted", flush=True)
            return
        run_id = self.trial_run_id(trial.number)
        if run_id:
            trial.set_user_attr("mlflow_run_id", run_id)
            self.client.set_tag(run_id, "sweep.state", state.name)
            if value is not None:
                self.client.set_tag(run_id, "sweep.value", f"{value:.3f}")
            if lost and self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, "KILLED")
        if why:
            trial.set_user_attr("note", why[:500])
        if interrupted:
            trial.set_user_attr("interrupted", True)
        self.study.tell(trial, value, state=state)
        if interrupted:
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        shown = f"{value:.1f} s" if value is not None else why
        logger.info("trial %d %s: %s", trial.number, state.name, shown)
        print(f"trial {trial.number} {state.name}: {shown}", flush=True)

    def trial_run_id(self, number: int) -> Optional[str]:
        runs = self.client.search_runs([self.client.get_run(self.parent_run_id).info.experiment_id],
                                       filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' "
                                                     f"and tags.`sweep.trial` = '{number}'", max_results=1)
        return runs[0].info.run_id if runs else None

    # --- what the parent run shows -------------------------------------------------------------

    def summarise(self, interrupted: bool) -> None:
        """Trials table, best values and files, plots: to the output folder and the parent run.
        The parent ends when the budget is spent and no trial runs (KILLED: stopped, nothing runs)."""
        trials = self.study.get_trials(deepcopy=False)
        running = any(t.state == TrialState.RUNNING for t in trials)
        done = spent(self.study) >= self.trials and not running
        if trials and not interrupted:  # after a stop signal: out quickly, the files of the last summary stay
            with tempfile.TemporaryDirectory(dir=self.output, prefix=".summary_") as folder:
                files = write_summary(self.study, self.space, self.experiment, Path(folder))
                for path in files:
                    self.client.log_artifact(self.parent_run_id, str(path), _artifact_folder(path))
                    path.replace(self.output / path.name)
        best = _best(self.study)
        tags = {"sweep.trials": str(self.trials), "sweep.finished": str(len(
            [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]))}
        if best is not None:
            tags.update({"sweep.best_trial": str(best.number), "sweep.best_value": f"{best.value:.3f}"})
            self.client.log_metric(self.parent_run_id, f"best/{OBJECTIVE.split('/')[-1]}", best.value,
                                   step=len(trials))
        for key, value in tags.items():
            self.client.set_tag(self.parent_run_id, key, value)
        if done:
            self.client.set_terminated(self.parent_run_id, "FINISHED")
        elif interrupted and not running:
            self.client.set_terminated(self.parent_run_id, "KILLED")
        print(f"study {self.study.study_name!r}: {len(trials)} trials in storage, budget {self.trials}"
              + (f"; best trial {best.number}: {best.value:.1f} s" if best is not None else "")
              + f"; summary in {self.output}; MLflow parent run {self.parent_run_id}", flush=True)
        for trial in trials:
            if trial.state == TrialState.RUNNING and not interrupted:
                print(f"trial {trial.number} is RUNNING elsewhere (last sign of life {time.time() - last_sign_of_life(trial):.0f} s "
                      f"ago); if its worker is dead, a worker started after --stale-after {self.args.stale_after:.0f} s "
                      f"runs its values again", flush=True)


def _mlflow_param(key: str, value: Any):
    from mlflow.entities import Param as MlflowParam

    return MlflowParam(key, str(value)[:6000])


def _artifact_folder(path: Path) -> str:
    return "plots" if path.suffix == ".png" else "best" if path.name.startswith("best") else "trials"


def _best(study: optuna.Study) -> Optional[optuna.trial.FrozenTrial]:
    try:
        return study.best_trial
    except ValueError:
        return None


def write_summary(study: optuna.Study, space: Sequence[Param], experiment: Experiment, folder: Path) -> List[Path]:
    """trials.csv, the best values and files (`write_best_files`) and Optuna's plots into `folder`."""
    files = [folder / "trials.csv"]
    study.trials_dataframe().to_csv(files[0], index=False)
    best = _best(study)
    if best is not None:
        values = {p.key: p.value_of(best.params[p.key]) for p in space}
        path = folder / "best_values.yaml"
        path.write_text(f"# best trial {best.number} of study {study.study_name}: {OBJECTIVE} {best.value:.3f} s\n"
                        + dump_mapping({"trial": best.number, "value": float(best.value), "values": values}))
        files += [path, *write_best_files(values, experiment, folder, best.number, study.study_name)]
    files += write_plots(study, folder)
    return files


def write_best_files(values: Mapping[str, Any], experiment: Experiment, folder: Path, number: int,
                     study_name: str) -> List[Path]:
    """`best_<file>.yaml` for the algorithm file and every other file a searched key lives in:
    the original file with the best values in. A key goes to the file that set it (its own
    group's when none did), so the best files with the others reproduce the best trial."""
    by_role: Dict[str, Dict[str, Any]] = {"algorithm": {}}
    for key, value in config_overrides(values, experiment.base).items():
        source = experiment.base.key_sources.get(key, "")
        role = next((r for r in CONFIG_ROLES if source.startswith(f"{r} file")), group_of_field(key))
        by_role.setdefault(role, {})[key] = value
    written = []
    for role, changes in by_role.items():
        original = Path(experiment.paths[role])
        data = read_mapping(original, role)
        if data.get("net_file") and not Path(data["net_file"]).is_absolute():
            data["net_file"] = str((original.parent / data["net_file"]).resolve())  # relative to the original
        data.update(changes)
        path = folder / f"best_{original.stem}.yaml"
        path.write_text(f"# {original.name} with the values of trial {number} of sweep {study_name} "
                        f"(rl/sweep.py): {', '.join(changes) or 'nothing searched here'}\n" + dump_mapping(data))
        written.append(path)
    return written


def write_plots(study: optuna.Study, folder: Path) -> List[Path]:
    """Optimisation history, parameter importances and parallel coordinates as PNG files; a
    plot Optuna cannot draw yet (importances before 2 complete trials) is left out with a note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as plots

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    wanted = {"history": lambda: plots.plot_optimization_history(study),
              "parallel_coordinates": lambda: plots.plot_parallel_coordinate(study)}
    if complete >= 2:
        wanted["param_importances"] = lambda: plots.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    else:
        logger.info("parameter importances need 2 complete trials (%d so far): not drawn", complete)
    written = []
    for name, draw in wanted.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw()
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            written.append(folder / f"{name}.png")
        except Exception as err:  # noqa: BLE001 - a plot is a convenience: the sweep goes on
            logger.warning("plot %s not drawn: %s", name, err)
    return written


# --- the command ---------------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> Sweep:
    """Everything checked before any trial: the files, the space, the storage and the MLflow store."""
    for option in ("resume_from", "chain_id", "batch_index"):
        if getattr(args, option, None) is not None:
            raise SweepError(f"--{option.replace('_', '-')} does not apply to a sweep (every trial trains from scratch)")
    if args.no_mlflow:
        raise SweepError("--no-mlflow: a sweep tracks its trials as MLflow runs; drop it")
    if args.trials < 1:
        raise SweepError(f"--trials {args.trials}: the study's budget must be 1 or more")
    if args.pruner == "threshold" and args.prune_above is None:
        raise SweepError("--pruner threshold needs --prune-above SECONDS")
    if not args.stale_after > 0:
        raise SweepError(f"--stale-after {args.stale_after}: seconds, above 0")
    space_file = Path(args.space)
    if not space_file.exists() and (REPO_ROOT / space_file).exists():
        space_file = REPO_ROOT / space_file
    args.space = str(space_file)
    space = read_space(space_file)
    base, paths = load_config(args)
    experiment = Experiment(paths, overrides_from(args), base)
    check_space(space, experiment, f"sweep space file {space_file}")
    study_name = args.study or space_file.stem
    if not re.fullmatch(S.NAME_PATTERN, study_name):
        raise SweepError(f"study name {study_name!r} (--study, else the space file's name): use letters, digits, "
                         f"'_', '.', '-'")
    output = Path(args.output) if args.output else REPO_ROOT / C.DEFAULT_SWEEPS_DIR / study_name
    output.mkdir(parents=True, exist_ok=True)
    args.storage = args.storage or f"sqlite:///{(output / 'study.db').resolve()}"
    lock = BudgetLock(storage_file(args.storage))
    experiment_name = args.experiment_name or base.experiment_name or Path(paths["network"]).stem
    store = open_store(args.tracking_uri, experiment_name)
    with lock:  # workers starting together on a new storage: one makes its tables and the study
        study = optuna.create_study(storage=open_storage(args.storage), study_name=study_name, direction="minimize",
                                    load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=args.sampler_seed),
                                    pruner=make_pruner(args.pruner, args.prune_above))
    return Sweep(args, experiment, space, study, lock, int(args.trials), output, store, experiment_name)

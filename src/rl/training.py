"""Multi-scenario PPO training: one policy, one SUMO environment per scenario.

The network is built once from the network-only parameters and shared by path; each env
generates its own scenario's routes on it. Schedules, checkpoints, evaluation and early
stopping are SB3 callbacks driven by the global step counter, so a resumed run continues
them where the previous batch stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from src.argv import parse_simulation_params
from src.params import SimulationParams
from src.control.actuator import check_cycle_fits, plan_timing
from src.network import build_network
from src.network.artifacts import NetworkArtifacts
from src.network.phases import read_phase_plans
from src.rl import constants as C
from src.rl.callbacks import (CheckpointWithMetadataCallback, EpisodeMetricsCallback, HeldOutEvaluation,
                              ProgressCallback, RolloutStartCallback, ScheduleCallback, StopFlagCallback)
from src.rl.config import eval_scenario_entries, scenario_params, shared_params
from src.rl.config.experiment import effective_cycle_lengths, keeps_own_cycle, scenario_env_options
from src.rl.environment import TrafficControlEnv, network_dimensions
from src.rl.junction_observation import phase_select_dimensions, slot_exists_columns
from src.rl.junction_vec_env import JunctionVecEnv
from src.rl.normalization import read_normalization, saved_raw_columns, wrap_normalized
from src.rl.phase_env import PhaseSelectEnv
from src.rl.traffic_analysis import resolved_features
from src.rl.utils import (check_compatible, check_normalization_matches, control_of, read_model_metadata,
                          save_model_atomically)
from src.rl.vec_env import EnvWorkerError, ResilientSubprocVecEnv, StepAborted, ignore_stop_signals

logger = logging.getLogger(__name__)



# --- environments -------------------------------------------------------------------------


def build_shared_network(network_params: Union[SimulationParams, str], out_dir: Path,
                         cycle_lengths: Sequence[int] = ()) -> Path:
    """Build the network of a batch once; every env gets this folder's path.

    `network_params`: typed params (their network and signal timing) or a replay string.
    Raises ParameterError when a cycle length (of `network_params` or `cycle_lengths`) is too
    short for the phases of the network's junctions, before any env starts.
    """
    params = network_params if isinstance(network_params, SimulationParams) else parse_simulation_params(network_params)
    c = params.control
    network = build_network(params.network, Path(out_dir), yellow_time=c.yellow_time, min_green=c.min_green,
                            cycle_length=c.cycle_length_or_default)
    plans = read_phase_plans(network.net_file)
    for cycle in {c.cycle_length, *cycle_lengths}:
        check_cycle_fits(plans, plan_timing(plans, cycle, c.yellow_time, c.min_green))
    return Path(out_dir)


def make_env_factory(
    env_params: Union[SimulationParams, str],
    network_path: Path,
    work_dir: Path,
    scenario_name: str,
    env_kwargs: Optional[Mapping[str, Any]] = None,
    in_worker: bool = False,
    control_mode: str = "cycle_splits",
) -> Callable[[], Monitor]:
    """A picklable constructor: SubprocVecEnv workers build their env (and SUMO) themselves.

    `in_worker`: the env gets its own process, which leaves SIGTERM/SIGINT to the trainer.
    `control_mode` picks the env: `TrafficControlEnv` (cycle_splits) or `PhaseSelectEnv`.
    """
    kwargs = dict(env_kwargs or {})
    env_class = ENV_CLASSES[control_mode]

    def _init() -> Monitor:
        if in_worker:
            ignore_stop_signals()
        env = env_class(env_params, network_path, work_dir=work_dir, scenario_name=scenario_name, **kwargs)
        return Monitor(env)

    return _init


def create_vectorized_env(
    env_params_list: Union[SimulationParams, str, Sequence[Union[SimulationParams, str]]],
    network_path: Path,
    cycle_lengths: Optional[Sequence[int]] = None,
    cycle_strategy: str = "fixed",
    network_dimensions: Optional[Mapping[str, int]] = None,
    work_root: Optional[Path] = None,
    scenario_names: Optional[Sequence[str]] = None,
    n_envs: int = 1,
    in_process: bool = False,
    own_process: bool = False,
    step_timeout_s: float = C.DEFAULT_ENV_STEP_TIMEOUT_S,
    max_restarts: int = C.DEFAULT_MAX_ENV_RESTARTS,
    stop_flag: Optional[Callable[[], bool]] = None,
    control_mode: str = "cycle_splits",
    per_env_kwargs: Optional[Sequence[Mapping[str, Any]]] = None,
    env_backend: str = C.DEFAULT_ENV_BACKEND,
    ray_address: Optional[str] = C.DEFAULT_RAY_ADDRESS,
    ray_cpus_per_env: float = C.RAY_CPUS_PER_ENV,
    **env_kwargs: Any,
) -> VecEnv:
    """One env per params string (a single string is replicated `n_envs` times).

    `env_backend` "subprocess": one env runs in this process (`DummyVecEnv`); several run in
    their own processes (`ResilientSubprocVecEnv`: each with its own libsumo, a step timeout
    and restarts of dead or stuck workers). "ray": every env is an actor of the Ray cluster at
    `ray_address` (`RayVecEnv`, the same fault contract, `ray_cpus_per_env` CPUs reserved per
    actor), one env included. `in_process` keeps every env in this process whatever the backend
    (the first uses libsumo, the others TraCI); `own_process` puts the envs in a worker process
    even then (an evaluation env beside a training env that holds this process's libsumo: on
    TraCI, reading every lane every second, it ran about twice as slow).
    """
    if isinstance(env_params_list, (str, SimulationParams)):
        env_params_list = [env_params_list] * max(int(n_envs), 1)
    env_params_list = list(env_params_list)
    if not env_params_list:
        raise ValueError("no env-params strings given")
    names = list(scenario_names or [f"scenario{k}" for k in range(len(env_params_list))])
    if len(names) != len(env_params_list):
        raise ValueError(f"{len(names)} scenario names for {len(env_params_list)} env-params strings")
    root = Path(work_root) if work_root else Path("outputs") / "envs"
    kwargs = dict(env_kwargs, network_dimensions=network_dimensions)
    if control_mode == "cycle_splits":
        kwargs.update(cycle_lengths=cycle_lengths, cycle_strategy=cycle_strategy)
    use_ray = env_backend == "ray" and not in_process
    in_worker = use_ray or own_process or not (len(env_params_list) == 1 or in_process)
    own = list(per_env_kwargs or [{}] * len(env_params_list))  # e.g. a route-file scenario's rotation
    factories = [
        make_env_factory(p, Path(network_path), root / f"{k:02d}_{name}", name, {**kwargs, **own[k]}, in_worker,
                         control_mode)
        for k, (p, name) in enumerate(zip(env_params_list, names))
    ]
    if not in_worker:
        return DummyVecEnv(factories)
    if use_ray:
        from src.rl.ray_vec_env import RayVecEnv, connect

        connect(ray_address)
        return RayVecEnv(factories, step_timeout_s, max_restarts, stop_flag, names=names, cpus_per_env=ray_cpus_per_env)
    return ResilientSubprocVecEnv(factories, step_timeout_s, max_restarts, stop_flag, names=names)


#: The env class of each control mode (`control_mode` of the network file).
ENV_CLASSES = {"cycle_splits": TrafficControlEnv, "phase_select": PhaseSelectEnv}


def model_dimensions(metadata: Mapping[str, Any], network_dir: Path) -> Dict[str, int]:
    """The policy sizes this network gives for a model's control mode, sharing and features.

    Under junction sharing they depend only on the most phases a junction has, so a model runs
    on any network with that phase count.
    """
    control = control_of(metadata)
    if control["control_mode"] == "cycle_splits":
        return network_dimensions(Path(network_dir), metadata.get("features"), bool(metadata.get("cycle_action")))
    junction = control["policy_sharing"] == "junction"
    # a junction-shared model's input has its own phase slots (padded): networks with fewer phases fit
    slots = metadata.get("phase_slots") or metadata.get("max_phases") if junction else None
    dims = phase_select_dimensions(read_phase_plans(NetworkArtifacts.load(Path(network_dir)).net_file),
                                   int(slots) if slots else None)
    if junction:
        return {**dims, "observation": dims["junction_observation"], "action": dims["max_phases"]}
    return dims


def phase_counts(network_dir: Path) -> Dict[str, int]:
    """Green phases of every signal: the phase structure a model is tied to."""
    return {tls: plan.num_phases for tls, plan in sorted(read_phase_plans(NetworkArtifacts.load(network_dir).net_file).items())}


def policy_dimensions(config: Any, network_dir: Path) -> Dict[str, int]:
    """Sizes of the policy `config` trains on this network (see `model_dimensions`)."""
    return model_dimensions({"control_mode": config.control_mode, "policy_sharing": config.sharing,
                             "features": config.features or None, "cycle_action": config.cycle_action,
                             "phase_slots": config.phase_slots}, network_dir)


def cycle_lengths_on(config: Any, network_dir: Path) -> List[int]:
    """The cycles a cycle_splits policy works in: `cycle_lengths`, or the kept programs' own
    cycle when none was chosen (as `fixed` runs them)."""
    if not keeps_own_cycle(config):
        return [int(c) for c in config.cycle_lengths]
    plans = read_phase_plans(NetworkArtifacts.load(network_dir).net_file)
    return [int(round(plan_timing(plans, None, config.yellow_time, config.min_green).cycle_length))]


def scenario_envs(config: Any, env_params_list: Sequence[str], names: Sequence[str], network_dir: Path,
                  dims: Mapping[str, int], work_root: Path, entries: Optional[Sequence[Mapping[str, Any]]] = None,
                  **options: Any) -> VecEnv:
    """The VecEnv PPO sees for these scenarios: one env each, junction entries under sharing.
    A route-file scenario's env rotates all its files (`entries`, default the config's, by name)."""
    by_name = {s["name"]: s for s in (entries if entries is not None else config.scenarios)}
    per_env = [scenario_env_options(by_name.get(name)) for name in names]
    if config.control_mode == "phase_select":
        env_kwargs = dict(decision_interval=float(config.decision_interval), reward_function=config.reward_function,
                          reward_params=config.reward_params, flatten=config.sharing == "network",
                          phase_slots=config.phase_slots)
    else:
        env_kwargs = dict(features=config.features or None, reward_function=config.reward_function,
                          reward_params=config.reward_params, cycle_lengths=cycle_lengths_on(config, network_dir),
                          cycle_strategy=config.cycle_strategy, cycle_action=config.cycle_action)
    venv = create_vectorized_env(list(env_params_list), network_dir, network_dimensions=dims, work_root=work_root,
                                 scenario_names=list(names), control_mode=config.control_mode,
                                 step_timeout_s=float(config.env_step_timeout_s),
                                 max_restarts=int(config.max_env_restarts), per_env_kwargs=per_env,
                                 env_backend=config.env_backend, ray_address=config.ray_address,
                                 **options, **env_kwargs)
    return JunctionVecEnv(venv) if config.control_mode == "phase_select" and config.sharing == "junction" else venv


# --- schedules ----------------------------------------------------------------------------


def learning_rate_at(step: int, initial: float, schedule: str, final: float, decay_rate: float, total_steps: int) -> float:
    """Learning rate after `step` environment steps (the global counter, resumes included)."""
    if schedule == "constant":
        return initial
    if schedule == "linear":
        fraction = min(step / max(total_steps, 1), 1.0)
        return initial + (final - initial) * fraction
    if schedule == "exponential":
        return max(final, initial * decay_rate ** step)
    raise ValueError(f"lr_schedule {schedule!r}; allowed: constant, linear, exponential")


def entropy_at(step: int, initial: float, final: float, decay_steps: int) -> float:
    """Entropy coefficient, linear from `initial` to `final` over `decay_steps`, then flat."""
    fraction = min(step / max(decay_steps, 1), 1.0)
    return initial + (final - initial) * fraction


# --- training -----------------------------------------------------------------------------


def rollout_budget(total_timesteps: int, rollout_steps: int) -> int:
    """The steps PPO really trains for `total_timesteps`: SB3 collects whole rollouts of
    `rollout_steps` (n_steps x envs) until the budget is reached, so it rounds up."""
    rollouts = -(-int(total_timesteps) // max(int(rollout_steps), 1))
    return rollouts * int(rollout_steps)


@dataclass
class TrainingResult:
    model_path: Path
    model_dir: Path
    num_timesteps: int
    start_timesteps: int
    stopped_early: bool
    episodes: List[Dict[str, Any]] = field(default_factory=list)
    checkpoints: List[Path] = field(default_factory=list)
    schedule_history: List[tuple] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    #: One record per evaluation (step, `eval/...` metrics), when `eval_freq` > 0.
    evaluations: List[Dict[str, Any]] = field(default_factory=list)


def policy_kwargs_from(net_arch: Any, activation: str, log_std_init: float) -> Dict[str, Any]:
    import torch.nn as nn

    activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}
    if activation not in activations:
        raise ValueError(f"activation {activation!r}; allowed: {', '.join(activations)}")
    arch = dict(net_arch) if isinstance(net_arch, Mapping) else {"pi": list(net_arch), "vf": list(net_arch)}
    return {"net_arch": arch, "activation_fn": activations[activation], "log_std_init": float(log_std_init)}


def policy_for(config: Any, dims: Mapping[str, int]) -> Tuple[Any, Dict[str, Any]]:
    """The policy class and kwargs a new model of `config` gets: a junction-shared phase_select
    policy masks the phase slots each junction lacks (`SlotMaskedPolicy`), others are MlpPolicy."""
    kwargs = policy_kwargs_from(config.net_arch, config.activation, config.log_std_init)
    if config.control_mode == "phase_select" and config.sharing == "junction":
        from src.rl.policy import SlotMaskedPolicy

        return SlotMaskedPolicy, {**kwargs, "slot_columns": slot_exists_columns(int(dims["max_phases"]))}
    return "MlpPolicy", kwargs


def train_rl_policy(
    config: Any,
    model_dir: Path,
    resume_from: Optional[Path] = None,
    metrics_sink: Optional[Callable[[int, Dict[str, float]], None]] = None,
    on_checkpoint: Optional[Callable[[Path], None]] = None,
    output_formats: Optional[Sequence[Any]] = None,
    stop_flag: Optional[Callable[[], bool]] = None,
    in_process: bool = False,
    network_dir: Optional[Path] = None,
    extra_metadata: Optional[Mapping[str, Any]] = None,
    extra_callbacks: Sequence[BaseCallback] = (),
    on_evaluation: Optional[Callable[[int, float], bool]] = None,
) -> TrainingResult:
    """Train (or continue) one PPO policy on the scenarios of `config` (an `ExperimentConfig`),
    one env per scenario, each handed its typed params (`scenario_params`): nothing is
    re-parsed on the way. `stop_flag()` returning True ends training at the next step with a
    checkpoint (SIGTERM). `network_dir` reuses a network already built from `config` (else it
    is built in `model_dir/network`). Evaluations run when `config.eval_freq` > 0; each one's
    score goes to `on_evaluation(step, score)`, whose False stops training (a sweep's pruner).
    """
    started = time.perf_counter()
    torch.set_num_threads(int(config.torch_threads))
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    shared = shared_params(config)  # typed, checked once; pickled as they are into the workers
    env_params_list = [scenario_params(config, s, shared) for s in config.scenarios]
    scenario_names = [s["name"] for s in config.scenarios]

    if network_dir is None:
        network_dir = build_shared_network(scenario_params(config, config.scenarios[0]), model_dir / "network",
                                           effective_cycle_lengths(config))
    features = config.features or None
    dims = policy_dimensions(config, network_dir)
    logger.info("network: %d signals, up to %d phases; %s control, %s policy: observation size %d, action size %d",
                dims["signals"], dims["max_phases"], config.control_mode, config.sharing, dims["observation"],
                dims["action"])
    logger.info("scenarios (%d envs): %s", len(env_params_list), ", ".join(scenario_names))
    vec_env = scenario_envs(config, env_params_list, scenario_names, network_dir, dims, model_dir / "envs",
                            in_process=in_process, stop_flag=stop_flag)
    eval_env = None
    callbacks: List[BaseCallback] = []
    try:
        n = vec_env.num_envs
        rollout = int(config.n_steps) * n
        batch_size = min(int(config.batch_size), rollout)
        if batch_size != int(config.batch_size):
            logger.info("batch_size %d > n_steps x envs = %d: using %d", config.batch_size, rollout, batch_size)
        # Schedules run on the global step: a resumed batch continues where the last one stopped
        # (linear decay spans the first batch's total_timesteps, then stays at lr_final).
        total_horizon = metadata_total_horizon(resume_from, int(config.total_timesteps))
        metadata = {
            "lr_horizon": total_horizon,
            "features": resolved_features(features),
            "cycle_lengths": cycle_lengths_on(config, network_dir),
            "cycle_strategy": config.cycle_strategy,
            "min_green": config.min_green,
            "yellow_time": config.yellow_time,
            "observation_size": dims["observation"],
            "action_size": dims["action"],
            "signals": dims["signals"],
            "max_phases": dims["max_phases"],
            "phase_slots": config.phase_slots,
            "reward_function": config.reward_function,
            "scenarios": scenario_names,
            "control_mode": config.control_mode,
            "cycle_action": bool(config.cycle_action),
            "policy_sharing": config.sharing,
            "decision_interval": int(config.decision_interval),
            "phase_counts": phase_counts(network_dir),
            **dict(extra_metadata or {}),
        }
        start_steps = 0
        saved_stats = None
        if resume_from is not None:
            previous = read_model_metadata(Path(resume_from))
            check_compatible(previous, dims["observation"], dims["action"], f"--resume-from {resume_from}",
                             {"control_mode": config.control_mode, "policy_sharing": config.sharing},
                             phase_counts(network_dir))
            saved_stats = read_normalization(Path(resume_from))
            check_normalization_matches(saved_stats, bool(config.normalize_observations), f"--resume-from {resume_from}")
        # Normalisation wraps the workers' envs; its statistics are saved inside every model zip
        # (save_model_atomically) and continue from the resumed model's.
        policy_class, policy_kwargs = policy_for(config, dims)
        # the phase-slot flags stay raw for the mask; a resumed model keeps its own choice
        raw_columns = saved_raw_columns(saved_stats) if resume_from is not None else policy_kwargs.get("slot_columns")
        vec_env = wrap_normalized(vec_env, bool(config.normalize_observations), bool(config.normalize_reward),
                                  float(config.gamma), float(C.DEFAULT_NORMALIZATION_CLIP), saved_stats,
                                  raw_columns=raw_columns)
        metadata["normalize_observations"] = bool(config.normalize_observations)
        metadata["normalize_reward"] = bool(config.normalize_reward)
        if resume_from is not None:
            # What may change between batches takes this config's value (logged as the run's
            # params); net_arch and activation cannot, and were checked before the run started.
            model = PPO.load(str(resume_from), env=vec_env, device=config.device,
                             custom_objects=resumable_settings(config, batch_size))
            start_steps = int(model.num_timesteps)
            logger.info("resumed from %s at step %d", resume_from, start_steps)
        else:
            model = PPO(
                policy_class,
                vec_env,
                learning_rate=float(config.learning_rate),
                n_steps=int(config.n_steps),
                batch_size=batch_size,
                n_epochs=int(config.n_epochs),
                gamma=float(config.gamma),
                gae_lambda=float(config.gae_lambda),
                clip_range=float(config.clip_range),
                ent_coef=float(config.ent_coef),
                vf_coef=float(config.vf_coef),
                max_grad_norm=float(config.max_grad_norm),
                policy_kwargs=policy_kwargs,
                seed=int(config.seed),
                device=config.device,
                verbose=0,
            )
        if output_formats is not None:
            from stable_baselines3.common.logger import Logger

            model.set_logger(Logger(folder=str(model_dir), output_formats=list(output_formats)))

        total = rollout_budget(int(config.total_timesteps), rollout)
        if total != int(config.total_timesteps):
            logger.info("training %d steps: total_timesteps %d rounded up to whole rollouts of %d steps "
                        "(n_steps %d x %d envs)", total, config.total_timesteps, rollout, config.n_steps, n)
        lr_fn = lambda step: learning_rate_at(step, float(config.learning_rate), config.lr_schedule,  # noqa: E731
                                              float(config.lr_final), float(config.lr_decay_rate), total_horizon)
        ent_fn = None
        if config.ent_schedule:
            ent_fn = lambda step: entropy_at(step, float(config.ent_initial), float(config.ent_final),  # noqa: E731
                                             int(config.ent_decay_steps))
        schedule_cb = ScheduleCallback(lr_fn, ent_fn)
        metrics_cb = EpisodeMetricsCallback(metrics_sink)
        metadata_fn = lambda: {**metadata, "num_timesteps": int(model.num_timesteps)}  # noqa: E731
        checkpoint_cb = CheckpointWithMetadataCallback(config.checkpoint_freq, model_dir / "checkpoints", metadata_fn, on_checkpoint)
        rollout_cb = RolloutStartCallback()
        callbacks = [rollout_cb, schedule_cb, metrics_cb, ProgressCallback(total), checkpoint_cb]
        evaluation = None
        if config.eval_freq and config.eval_freq > 0:
            held_out = eval_scenario_entries(config)
            eval_params = [scenario_params(config, s) for s in held_out] or env_params_list
            if config.eval_sumo_seed is not None:  # validation on SUMO seeds of its own
                eval_params = [replace(p, sumo_seed=int(config.eval_sumo_seed)) for p in eval_params]
            eval_names = [s["name"] for s in held_out] or scenario_names
            # on Ray the evaluation actors reserve no CPU: they run while the training envs wait;
            # beside a training env in this process (its libsumo) they get a process of their own
            training_here = in_process or (len(env_params_list) == 1 and config.env_backend != "ray")
            eval_env = scenario_envs(config, eval_params, eval_names, network_dir, dims, model_dir / "eval_envs",
                                     held_out or None, in_process=in_process, ray_cpus_per_env=0,
                                     own_process=training_here)
            # Frozen copy of the training statistics (synced before each evaluation), raw rewards.
            eval_env = wrap_normalized(eval_env, bool(config.normalize_observations), bool(config.normalize_reward),
                                       float(config.gamma), float(C.DEFAULT_NORMALIZATION_CLIP), training=False,
                                       raw_columns=raw_columns)
            evaluation = HeldOutEvaluation(eval_env, int(config.eval_freq), int(config.n_eval_episodes),
                                           model_dir / "best" / "best_model.zip", metadata_fn, metrics_sink,
                                           int(config.early_stopping_patience), float(config.early_stopping_min_delta),
                                           on_evaluation)
            callbacks.append(evaluation)
        if stop_flag is not None:
            callbacks.append(StopFlagCallback(stop_flag))
        callbacks.extend(extra_callbacks)  # e.g. the pipeline's route-file logging
        stopped = lambda: stop_flag is not None and stop_flag()  # noqa: E731
        try:
            model.learn(total_timesteps=total, callback=CallbackList(callbacks),
                        reset_num_timesteps=resume_from is None, log_interval=int(config.log_interval))
        except (StepAborted, EnvWorkerError) as err:
            # Keep what was trained: the counter goes back to the last update (the partial
            # rollout was never trained on), then an emergency checkpoint.
            rollout_cb.roll_back()
            err.checkpoint = checkpoint_cb.save_now()
            if isinstance(err, EnvWorkerError):
                raise
            logger.warning("%s", err)
        if stopped():
            rollout_cb.roll_back()
            if not checkpoint_cb.saved or checkpoint_cb.saved[-1].name != f"model_{model.num_timesteps}_steps.zip":
                checkpoint_cb.save_now()  # interrupted (SIGTERM): the state at the stop, as a checkpoint
        final = save_model_atomically(model, model_dir / "final_model.zip", metadata_fn())
        return TrainingResult(
            model_path=final,
            model_dir=model_dir,
            num_timesteps=int(model.num_timesteps),
            start_timesteps=start_steps,
            stopped_early=bool(evaluation and evaluation.stopped),
            episodes=metrics_cb.episodes,
            checkpoints=checkpoint_cb.saved,
            schedule_history=schedule_cb.history,
            metadata=metadata_fn(),
            wall_time_s=time.perf_counter() - started,
            evaluations=evaluation.history if evaluation else [],
        )
    finally:
        vec_env.close()
        if eval_env is not None:
            eval_env.close()


def metadata_total_horizon(resume_from: Optional[Path], total_timesteps: int) -> int:
    """Steps over which a linear learning rate decays: set by the first batch, kept by resumes."""
    if resume_from is not None:
        horizon = read_model_metadata(Path(resume_from)).get("lr_horizon")
        if horizon:
            return int(horizon)
    return int(total_timesteps)


def resumable_settings(config: Any, batch_size: int) -> Dict[str, Any]:
    """PPO settings a resumed model takes from the new config (SB3 `custom_objects`)."""
    return {
        "n_steps": int(config.n_steps), "batch_size": int(batch_size), "n_epochs": int(config.n_epochs),
        "gamma": float(config.gamma), "gae_lambda": float(config.gae_lambda),
        "clip_range": float(config.clip_range), "ent_coef": float(config.ent_coef),
        "vf_coef": float(config.vf_coef), "max_grad_norm": float(config.max_grad_norm),
    }

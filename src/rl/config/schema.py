"""What an experiment's YAML may hold: which key lives in which file, each RL key's check,
the defaults of a scenario's traffic keys, and the names the reward and feature registries know.

The five files hold disjoint keys (network, scenarios, algorithm, reward, execution);
`ALGORITHM_EXECUTION_SHARED_KEYS` may appear in both algorithm and execution (execution
wins), so a quick test can shrink the rollout without its own algorithm file. Keys that are
simulation parameters (`SIMULATION_KEYS`) are checked by `src/params.py` when the config's
params are made (`src/rl/config/experiment.py`); the RL keys are checked here. Every problem
is a `ConfigError` whose one-line message names the file, the key and what is allowed.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Union

from src import params as P
from src.rl import constants as C
from src.rl.config.errors import ConfigError  # noqa: F401 (raised here, imported from here by callers)
from src.rl.config.scenarios import check_sumocfg_scenario
from src.rl.reward import REWARD_FUNCTIONS
from src.rl.traffic_analysis import EDGE_FEATURES, JUNCTION_FEATURES, NETWORK_FEATURES
from src.traffic.route_files import ROTATION_ORDERS, RouteFileError, resolve_route_files
from src.validation import ValueProblem, choice, flag, got, integer, is_int, is_number, number, suggest, text


# --- which key lives in which file --------------------------------------------------------------

CONFIG_GROUPS = ("network", "scenarios", "algorithm", "reward", "execution")

NETWORK_KEYS: FrozenSet[str] = frozenset({
    "network_seed", "grid_dimension", "junctions_to_remove", "block_size_m", "lane_count",
    "step_length", "land_use_block_size_m", "attractiveness", "signal_programs",
    "net_file", "cycle_lengths", "cycle_strategy", "min_green", "yellow_time",
    "control_mode", "decision_interval", "cycle_action",
})
# Traffic values a scenario leaves out: the engine's defaults.
DEFAULT_SCENARIO: Dict[str, Any] = {f.name: f.default for f in P.group_fields("traffic")
                                    if f.name not in ("begin", "end_time", "route_file")}
# Keys of one scenario entry (the scenarios file itself holds only `scenarios: [...]`).
SCENARIO_TRAFFIC_KEYS: FrozenSet[str] = frozenset(DEFAULT_SCENARIO)
# Recorded demand instead of generated traffic (one file, a list or a glob, rotated per episode;
# or a study's `.sumocfg`: its route file and run options, see `src/rl/config/scenarios.py`).
ROUTE_KEYS: FrozenSet[str] = frozenset({"route_files", "route_order", "route_seed", "sumocfg"})
DEFAULT_ROUTE_OPTIONS: Dict[str, Any] = {"route_order": "sequential", "route_seed": 0}
SCENARIO_KEYS: FrozenSet[str] = SCENARIO_TRAFFIC_KEYS | ROUTE_KEYS | {"name"}
SCENARIOS_FILE_KEYS: FrozenSet[str] = frozenset({"scenarios"})
ALGORITHM_EXECUTION_SHARED_KEYS: FrozenSet[str] = frozenset({"n_steps", "batch_size", "n_epochs", "seed"})
ALGORITHM_KEYS: FrozenSet[str] = frozenset({
    "learning_rate", "clip_range", "batch_size", "n_steps", "n_epochs", "gamma", "gae_lambda",
    "max_grad_norm", "ent_coef", "vf_coef", "log_std_init", "lr_schedule", "lr_final",
    "lr_decay_rate", "ent_schedule", "ent_initial", "ent_final", "ent_decay_steps", "net_arch",
    "activation", "features", "seed", "normalize_observations", "normalize_reward",
    "policy_sharing", "phase_slots",
})
REWARD_KEYS: FrozenSet[str] = frozenset({"reward_function", "reward_params"})
EXECUTION_KEYS: FrozenSet[str] = frozenset({
    "total_timesteps", "checkpoint_freq", "eval_freq", "n_eval_episodes",
    "early_stopping_patience", "early_stopping_min_delta", "begin", "end_time", "parallel_envs",
    "single_env", "experiment_name", "model_name", "models_dir", "device", "torch_threads", "log_interval",
    "sumo_seed", "env_step_timeout_s", "max_env_restarts", "eval_scenarios", "eval_sumo_seed", "tracking_wait_s",
    "env_backend", "ray_address",
}) | ALGORITHM_EXECUTION_SHARED_KEYS
# Top-level keys each file may hold.
GROUP_KEYS: Dict[str, FrozenSet[str]] = {
    "network": NETWORK_KEYS,
    "scenarios": SCENARIOS_FILE_KEYS,
    "algorithm": ALGORITHM_KEYS,
    "reward": REWARD_KEYS,
    "execution": EXECUTION_KEYS,
}
# A monolithic experiment file (experiments/*.yaml) holds every group's keys at top level.
EXPERIMENT_FILE_KEYS: FrozenSet[str] = frozenset().union(*GROUP_KEYS.values())
BASE_CONFIG_KEY = "base_config"
# Keys that are simulation parameters: checked by `src/params.py` (the key is the field name).
SIMULATION_KEYS: FrozenSet[str] = frozenset(P.FIELDS) & (EXPERIMENT_FILE_KEYS | SCENARIO_KEYS)


# --- checks of the RL keys ------------------------------------------------------------------------


def _positive_int_list(value: Any) -> List[int]:
    wanted = "expected a non-empty list of integers > 0 like [90]"
    if not isinstance(value, list) or not value:
        raise ValueProblem(wanted, got(value))
    for item in value:
        if not is_int(item) or item <= 0:
            raise ValueProblem(wanted, f"found {item!r}")
    return [int(v) for v in value]


def _layers(value: Any, where: str) -> List[int]:
    if not isinstance(value, list) or any(not is_int(v) or v <= 0 for v in value):
        raise ValueProblem(f"{where}expected a list of layer sizes (integers > 0) like [256, 256]", got(value))
    return [int(v) for v in value]


def _net_arch(value: Any) -> Union[List[int], Dict[str, List[int]]]:
    if isinstance(value, dict):
        if not value:
            raise ValueProblem("expected a list like [256, 256] or a mapping {pi: [...], vf: [...]}, got an empty mapping")
        unknown = [k for k in value if k not in C.NET_ARCH_KEYS]
        if unknown:
            raise ValueProblem(f"unknown part {unknown[0]!r}; allowed: {', '.join(C.NET_ARCH_KEYS)}")
        return {k: _layers(value[k], f"{k}: ") for k in C.NET_ARCH_KEYS if k in value}
    return _layers(value, "")


def _ent_schedule(value: Any) -> Union[bool, str]:
    if isinstance(value, bool) or value in C.ENT_SCHEDULES:
        return value
    raise ValueProblem(f"allowed: true, false, {', '.join(C.ENT_SCHEDULES)}", detail=f"{got(value)}; allowed: true, "
                       f"false, {', '.join(C.ENT_SCHEDULES)}")


def known_features() -> Dict[str, FrozenSet[str]]:
    """Feature names per group, from `src/rl/traffic_analysis.py`'s registries."""
    return {"edge": frozenset(EDGE_FEATURES), "junction": frozenset(JUNCTION_FEATURES),
            "network": frozenset(NETWORK_FEATURES)}


def known_rewards() -> Dict[str, FrozenSet[str]]:
    """Reward names of `src/rl/reward.py` with the names of their parameters."""
    return {name: frozenset(entry.params) for name, entry in REWARD_FUNCTIONS.items()}


def _features(value: Any) -> Dict[str, List[str]]:
    if not isinstance(value, dict):
        raise ValueProblem(f"expected a mapping of {', '.join(C.FEATURE_GROUPS)} to lists of feature names", got(value))
    for group in value:
        if group not in C.FEATURE_GROUPS:
            raise ValueProblem(f"unknown feature group {group!r}{suggest(group, C.FEATURE_GROUPS)}; "
                               f"allowed: {', '.join(C.FEATURE_GROUPS)}")
    registries = known_features()
    result: Dict[str, List[str]] = {}
    for group in C.FEATURE_GROUPS:
        names = value.get(group, list(C.DEFAULT_FEATURES[group]))
        names = [] if names is None else names
        if not isinstance(names, list) or any(not isinstance(n, str) for n in names):
            raise ValueProblem(f"{group}: expected a list of feature names", got(names))
        if len(set(names)) != len(names):
            raise ValueProblem(f"{group}: a feature is listed twice in {names}")
        for name in names:
            if name not in registries[group]:
                raise ValueProblem(f"unknown {group} feature {name!r}{suggest(name, registries[group])}; "
                                   f"allowed: {', '.join(sorted(registries[group]))}")
        result[group] = list(names)
    if not any(result.values()):
        raise ValueProblem("the feature lists are all empty; choose at least one feature")
    return result


def _reward_params(value: Any) -> Dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueProblem("expected a mapping of parameter names to numbers", got(value))
    result: Dict[str, float] = {}
    for name, amount in value.items():
        if not isinstance(name, str):
            raise ValueProblem(f"parameter name {name!r} is not a string")
        if not is_number(amount):
            raise ValueProblem(f"parameter {name!r}: expected a number", got(amount))
        result[name] = float(amount)
    return result


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

# How each RL key's value is checked and normalised (ints -> floats where a number is expected).
KEY_CHECKS: Dict[str, Callable[[Any], Any]] = {
    # network
    "cycle_lengths": _positive_int_list,
    "cycle_strategy": choice(C.CYCLE_STRATEGIES),
    "control_mode": choice(C.CONTROL_MODES),
    "cycle_action": flag,
    # algorithm
    "learning_rate": number(0, low_open=True),
    "clip_range": number(0, low_open=True),
    "batch_size": integer(1),
    "n_steps": integer(1),
    "n_epochs": integer(1),
    "gamma": number(0, 1, low_open=True),
    "gae_lambda": number(0, 1),
    "max_grad_norm": number(0, low_open=True),
    "ent_coef": number(0),
    "vf_coef": number(0),
    "log_std_init": number(),
    "lr_schedule": choice(C.LR_SCHEDULES),
    "lr_final": number(0, low_open=True),
    "lr_decay_rate": number(0, 1, low_open=True),
    "ent_schedule": _ent_schedule,
    "ent_initial": number(0),
    "ent_final": number(0),
    "ent_decay_steps": integer(1),
    "net_arch": _net_arch,
    "activation": choice(C.ACTIVATIONS),
    "features": _features,
    "seed": integer(0),
    "normalize_observations": flag,
    "normalize_reward": flag,
    "policy_sharing": choice(C.POLICY_SHARING_MODES, optional=True),
    "phase_slots": integer(2, C.MAX_PHASE_SLOTS, optional=True),
    # reward (names and parameters against the registry: `check_reward`)
    "reward_function": text(what="a reward function name"),
    "reward_params": _reward_params,
    # execution
    "total_timesteps": integer(1),
    "checkpoint_freq": integer(1),
    "eval_freq": integer(0),
    "n_eval_episodes": integer(1),
    "early_stopping_patience": integer(0),
    "early_stopping_min_delta": number(0),
    "parallel_envs": integer(1),
    "single_env": flag,
    "experiment_name": text(optional=True, what="an MLflow experiment name"),
    "model_name": text(optional=True, pattern=NAME_PATTERN, what="a model name of letters, digits, '_', '.', '-'"),
    "models_dir": text(what="a directory path"),
    "device": text(pattern=C.DEVICE_PATTERN, what="a torch device: cpu, cuda, cuda:N, mps or auto"),
    "torch_threads": integer(1),
    "log_interval": integer(1),
    "env_step_timeout_s": number(0, low_open=True),
    "max_env_restarts": integer(0),
    "tracking_wait_s": number(0),
    "eval_scenarios": text(optional=True, what="a path to a scenarios file"),
    "eval_sumo_seed": integer(0, optional=True),
    "env_backend": choice(C.ENV_BACKENDS),
    "ray_address": text(optional=True, what="a Ray cluster address: auto or HOST:PORT"),
}
SCENARIO_NAME_CHECK = text(pattern=NAME_PATTERN, what="a scenario name of letters, digits, '_', '.', '-'")

assert set(KEY_CHECKS) | SIMULATION_KEYS == EXPERIMENT_FILE_KEYS - SCENARIOS_FILE_KEYS | SCENARIO_TRAFFIC_KEYS
assert not set(KEY_CHECKS) & SIMULATION_KEYS


def groups_of(key: str) -> List[str]:
    return [g for g in CONFIG_GROUPS if g != "scenarios" and key in GROUP_KEYS[g]]


def check_value(key: str, value: Any, source: str, prefix: str = "") -> Any:
    """An RL key's value checked and normalised; a simulation key's as given (params check it)."""
    check = KEY_CHECKS.get(key)
    if check is None:
        return value
    try:
        return check(value)
    except ValueProblem as problem:
        raise ConfigError(f"{source}: {prefix}key {key!r}: {problem}") from None


def check_reward(name: str, params: Mapping[str, float], source: str) -> None:
    rewards = known_rewards()
    if name not in rewards:
        raise ConfigError(f"{source}: key 'reward_function': unknown reward {name!r}{suggest(name, rewards)}; "
                          f"allowed: {', '.join(rewards)}")
    for param in params:
        if param not in rewards[name]:
            raise ConfigError(
                f"{source}: key 'reward_params': reward {name!r} has no parameter {param!r}"
                f"{suggest(param, rewards[name])}; allowed: {', '.join(sorted(rewards[name])) or 'none'}")


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], source: str, where: str) -> None:
    """Wrong-file and unknown keys; `where` names the place the keys are in ("the network file")."""
    allowed = frozenset(allowed)
    for key in data:
        if key in allowed:
            continue
        owners = groups_of(key)
        if owners:
            files = " or ".join(f"the {g} file" for g in owners)
            raise ConfigError(f"{source}: key {key!r} belongs in {files}, not {where}")
        if key in SCENARIO_KEYS:
            raise ConfigError(f"{source}: key {key!r} is a scenario key; it belongs inside an entry of the "
                              f"'scenarios:' list, not at the top level of {where}")
        if key == "scenarios":
            raise ConfigError(f"{source}: key 'scenarios' belongs in the scenarios file, not {where}")
        everything = sorted(EXPERIMENT_FILE_KEYS | SCENARIO_KEYS)
        raise ConfigError(f"{source}: unknown key {key!r}{suggest(key, everything)}; "
                          f"allowed in {where}: {', '.join(sorted(allowed))}")


def is_route_scenario(entry: Mapping[str, Any]) -> bool:
    return "route_files" in entry


def check_route_scenario(entry: Mapping[str, Any], source: str, base_dir: Any = None) -> Dict[str, Any]:
    """A route-file scenario: its files found (absolute, natural order), its rotation checked.

    Generator keys are refused: with recorded demand they would silently do nothing.
    Relative paths and globs are relative to `base_dir` (the scenarios file's folder).
    """
    if "sumocfg" in entry:  # a study folder names its demand itself
        return check_sumocfg_scenario(entry, source, base_dir, SCENARIO_TRAFFIC_KEYS)
    name = entry.get("name", "?")
    label = f"{source}: scenario {name!r}"
    mixed = sorted(k for k in entry if k in SCENARIO_TRAFFIC_KEYS)
    if mixed:
        raise ConfigError(f"{label}: route_files replaces the traffic generator; remove the generator key(s) "
                          f"{', '.join(mixed)} or route_files")
    if "route_files" not in entry:
        raise ConfigError(f"{label}: key {sorted(k for k in entry if k in ROUTE_KEYS)[0]!r} needs route_files")
    try:
        files = resolve_route_files(entry["route_files"], base_dir if base_dir is not None else ".", str(name))
    except RouteFileError as err:
        raise ConfigError(f"{source}: {err}") from None
    checked = {"name": name, "route_files": [str(f) for f in files]}
    for key, check in (("route_order", choice(ROTATION_ORDERS)), ("route_seed", integer(0))):
        try:
            checked[key] = check(entry.get(key, DEFAULT_ROUTE_OPTIONS[key]))
        except ValueProblem as problem:
            raise ConfigError(f"{label}: key {key!r}: {problem}") from None
    return checked


def check_scenarios(value: Any, source: str, base_dir: Any = None) -> List[Dict[str, Any]]:
    """Scenario entries with unique names and scenario keys only, completed with the default traffic
    (a route-file scenario: with its files and rotation instead, see `check_route_scenario`).

    Their traffic values are checked when their params are made (`scenario_params`).
    """
    if value is None or (isinstance(value, list) and not value):
        raise ConfigError(f"{source}: key 'scenarios': the scenario list is empty; give at least one "
                          "entry like {name: s1, num_vehicles: 500}")
    if not isinstance(value, list):
        raise ConfigError(f"{source}: key 'scenarios': expected a list of scenario mappings, {got(value)}")
    result: List[Dict[str, Any]] = []
    seen: Dict[str, int] = {}
    for index, entry in enumerate(value):
        label = f"scenario #{index + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {label}: expected a mapping with 'name' and traffic keys, {got(entry)}")
        if "name" not in entry:
            raise ConfigError(f"{source}: {label}: key 'name' is missing; every scenario needs a unique name")
        try:
            name = SCENARIO_NAME_CHECK(entry["name"])
        except ValueProblem as problem:
            raise ConfigError(f"{source}: {label}: key 'name': {problem}") from None
        label = f"scenario {name!r}"
        if name in seen:
            raise ConfigError(f"{source}: {label}: key 'name': duplicate scenario name (also scenario "
                              f"#{seen[name] + 1}); scenario names must be unique")
        seen[name] = index
        for key in entry:
            if key not in SCENARIO_KEYS:
                raise ConfigError(f"{source}: {label}: {_misplaced(key)}")
        if any(key in ROUTE_KEYS for key in entry):
            result.append(check_route_scenario(entry, source, base_dir))
            continue
        result.append({"name": name, **{key: entry.get(key, default) for key, default in DEFAULT_SCENARIO.items()}})
    return result


def _misplaced(key: Any) -> str:
    scenario_keys = ", ".join(sorted(SCENARIO_KEYS))
    if not isinstance(key, str):
        return f"key {key!r} is not a name"
    if key in NETWORK_KEYS:
        return (f"key {key!r} is a network key; all scenarios share one network, set it in the network file; "
                f"scenario keys: {scenario_keys}")
    owners = groups_of(key)
    if owners:
        return f"key {key!r} belongs in the {' or '.join(owners)} file, not in a scenario; scenario keys: {scenario_keys}"
    return f"unknown key {key!r}{suggest(key, SCENARIO_KEYS)}; scenario keys: {scenario_keys}"


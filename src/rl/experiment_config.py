"""Experiment configuration: five YAML files (or one monolithic file) -> a validated `ExperimentConfig`.

The five files hold disjoint keys (see `src.rl.constants` for the key sets and defaults):

    network    topology and signal timing, shared by every scenario
    scenarios  `scenarios: [{name: ..., <traffic keys>}, ...]`
    algorithm  PPO, policy network, schedules, observation features
    reward     `reward_function`, `reward_params`
    execution  timesteps, checkpoints, evaluation, early stopping, `end_time`, where to run

Precedence: command-line overrides > execution > algorithm > defaults (only `n_steps`,
`batch_size`, `n_epochs` and `seed` may be in both algorithm and execution). Everything is
checked before a config is returned, and every problem a user can cause is a `ConfigError`
whose one-line message names the file, the key and what is allowed. Each scenario becomes an
env-params string for `src.cli`, parsed by the same parser as a plain simulation run.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import yaml

from src import params as P
from src.rl import constants as C


class ConfigError(ValueError):
    """A user-caused configuration problem; the message is one line naming file, key and what is allowed."""


# --- YAML: 1e-4 is a float, duplicate keys are errors ---------------------------------------

# YAML 1.1 (PyYAML) reads `1e-4` (no dot) as a string; configs write learning rates that way.
_FLOAT_RE = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_FLOAT_FIRST = list("-+0123456789.")


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, _FLOAT_FIRST)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
    loader.flatten_mapping(node)
    result: Dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _represent_list(dumper: _Dumper, data: list) -> yaml.SequenceNode:
    """Lists of plain values on one line ([256, 256]), lists of mappings as blocks."""
    flow = all(not isinstance(item, (list, dict)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _read_mapping(path: Union[str, Path], what: str) -> Dict[str, Any]:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        detail = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(f"{what} file {path} {detail}; give the path of a YAML file")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read {what} file: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} file must be a mapping of keys to values, not a {_type_name(data)}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {key!r} is not a name; keys are strings like 'learning_rate'")
    return data


# --- value checks -----------------------------------------------------------------------------


class _Invalid(Exception):
    """A value problem without its place; the caller adds file and key."""


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping",
            type(None): "null"}.get(type(value), type(value).__name__)


def _got(value: Any) -> str:
    return f"got {_type_name(value)} {value!r}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(minimum: Optional[int] = None) -> Callable[[Any], int]:
    wanted = "an integer" if minimum is None else f"an integer >= {minimum}"

    def check(value: Any) -> int:
        if not _is_int(value):
            raise _Invalid(f"expected {wanted}, {_got(value)}")
        if minimum is not None and value < minimum:
            raise _Invalid(f"expected {wanted}, got {value}")
        return int(value)

    return check


def _float(low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
           high_open: bool = False) -> Callable[[Any], float]:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    wanted = "a number" + (f" {' and '.join(parts)}" if parts else "")

    def check(value: Any) -> float:
        if not _is_number(value):
            raise _Invalid(f"expected {wanted}, {_got(value)}")
        number = float(value)
        if number != number or (low is not None and (number <= low if low_open else number < low)) or \
                (high is not None and (number >= high if high_open else number > high)):
            raise _Invalid(f"expected {wanted}, got {value!r}")
        return number

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, {_got(value)}")
    return value


def _choice(allowed: Iterable[str], optional: bool = False) -> Callable[[Any], Optional[str]]:
    allowed = tuple(allowed)

    def check(value: Any) -> Optional[str]:
        if value is None and optional:
            return None
        if not isinstance(value, str) or value not in allowed:
            hint = _suggest(value, allowed) if isinstance(value, str) else ""
            raise _Invalid(f"{_got(value)}{hint}; allowed: {', '.join(allowed)}")
        return value

    return check


def _text(optional: bool = False, pattern: Optional[str] = None, what: str = "a non-empty string") -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise _Invalid(f"expected {what}{' or null' if optional else ''}, {_got(value)}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise _Invalid(f"expected {what}, got {value!r}")
        return value

    return check


def _lane_count(value: Any) -> Union[str, int]:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Invalid(f"expected {', '.join(P.LANE_COUNT_MODES)} or an integer 1-5, {_got(value)}")
    try:
        return P.parse_lane_count(value)
    except P.ParameterError:
        raise _Invalid(f"expected {', '.join(P.LANE_COUNT_MODES)} or an integer 1-5, got {value!r}") from None


def _junctions(value: Any) -> Union[int, str]:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Invalid(f"expected a count >= 0 or a comma list of junction IDs like 'B1,C2', {_got(value)}")
    try:
        parsed = P.parse_junctions_to_remove(value)
    except P.ParameterError:
        raise _Invalid(f"expected a count >= 0 or a comma list of junction IDs like 'B1,C2', got {value!r}") from None
    return parsed if isinstance(parsed, int) else ",".join(parsed)


def _positive_int_list(value: Any) -> List[int]:
    if not isinstance(value, list) or not value:
        raise _Invalid(f"expected a non-empty list of integers > 0 like [90], {_got(value)}")
    for item in value:
        if not _is_int(item) or item <= 0:
            raise _Invalid(f"expected a non-empty list of integers > 0 like [90], found {item!r}")
    return [int(v) for v in value]


def _layers(value: Any, where: str) -> List[int]:
    if not isinstance(value, list) or any(not _is_int(v) or v <= 0 for v in value):
        raise _Invalid(f"{where}expected a list of layer sizes (integers > 0) like [256, 256], {_got(value)}")
    return [int(v) for v in value]


def _net_arch(value: Any) -> Union[List[int], Dict[str, List[int]]]:
    if isinstance(value, dict):
        if not value:
            raise _Invalid("expected a list like [256, 256] or a mapping {pi: [...], vf: [...]}, got an empty mapping")
        unknown = [k for k in value if k not in C.NET_ARCH_KEYS]
        if unknown:
            raise _Invalid(f"unknown part {unknown[0]!r}; allowed: {', '.join(C.NET_ARCH_KEYS)}")
        return {k: _layers(value[k], f"{k}: ") for k in C.NET_ARCH_KEYS if k in value}
    return _layers(value, "")


def _ent_schedule(value: Any) -> Union[bool, str]:
    if isinstance(value, bool) or value in C.ENT_SCHEDULES:
        return value
    raise _Invalid(f"{_got(value)}; allowed: true, false, {', '.join(C.ENT_SCHEDULES)}")


def _features(value: Any) -> Dict[str, List[str]]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a mapping of {', '.join(C.FEATURE_GROUPS)} to lists of feature names, {_got(value)}")
    result: Dict[str, List[str]] = {}
    for group in value:
        if group not in C.FEATURE_GROUPS:
            raise _Invalid(f"unknown feature group {group!r}{_suggest(group, C.FEATURE_GROUPS)}; allowed: {', '.join(C.FEATURE_GROUPS)}")
    for group in C.FEATURE_GROUPS:
        names = value.get(group, list(C.DEFAULT_FEATURES[group]))
        if names is None:
            names = []
        if not isinstance(names, list) or any(not isinstance(n, str) for n in names):
            raise _Invalid(f"{group}: expected a list of feature names, {_got(names)}")
        if len(set(names)) != len(names):
            raise _Invalid(f"{group}: a feature is listed twice in {names}")
        result[group] = list(names)
    if not any(result.values()):
        raise _Invalid("the feature lists are all empty; choose at least one feature")
    return result


def _reward_params(value: Any) -> Dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(f"expected a mapping of parameter names to numbers, {_got(value)}")
    result: Dict[str, float] = {}
    for name, number in value.items():
        if not isinstance(name, str):
            raise _Invalid(f"parameter name {name!r} is not a string")
        if not _is_number(number):
            raise _Invalid(f"parameter {name!r}: expected a number, {_got(number)}")
        result[name] = float(number)
    return result


def _mix(option: str, allowed: Tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"expected a string of 'NAME PERCENT' pairs summing to 100 (names: {', '.join(allowed)}), {_got(value)}")
        try:
            P.parse_percentage_mix(value, option, allowed)
        except P.ParameterError as err:
            raise _Invalid(str(err).split(": ", 1)[-1]) from None
        return value

    return check


def _departure(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected {', '.join(P.DEPARTURE_PATTERNS)} or custom:HH:MM-HH:MM,PCT;..., {_got(value)}")
    return value  # checked against end_time in validate_experiment


_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

# How each key's value is checked and normalised (ints -> floats where a number is expected).
KEY_CHECKS: Dict[str, Callable[[Any], Any]] = {
    # network
    "network_seed": _int(0),
    "grid_dimension": _int(1),
    "junctions_to_remove": _junctions,
    "block_size_m": _float(0, low_open=True),
    "lane_count": _lane_count,
    "step_length": _float(0, low_open=True),
    "land_use_block_size_m": _float(0, low_open=True),
    "attractiveness": _choice(P.ATTRACTIVENESS_METHODS, optional=True),
    "signal_programs": _choice(P.SIGNAL_PROGRAMS, optional=True),
    "net_file": _text(optional=True, what="a path to a SUMO .net.xml"),
    "cycle_lengths": _positive_int_list,
    "cycle_strategy": _choice(C.CYCLE_STRATEGIES),
    "min_green": _int(1),
    "yellow_time": _int(1),
    "control_mode": _choice(C.CONTROL_MODES),
    "decision_interval": _int(1),
    # algorithm
    "learning_rate": _float(0, low_open=True),
    "clip_range": _float(0, low_open=True),
    "batch_size": _int(1),
    "n_steps": _int(1),
    "n_epochs": _int(1),
    "gamma": _float(0, 1, low_open=True),
    "gae_lambda": _float(0, 1),
    "max_grad_norm": _float(0, low_open=True),
    "ent_coef": _float(0),
    "vf_coef": _float(0),
    "log_std_init": _float(),
    "lr_schedule": _choice(C.LR_SCHEDULES),
    "lr_final": _float(0, low_open=True),
    "lr_decay_rate": _float(0, 1, low_open=True),
    "ent_schedule": _ent_schedule,
    "ent_initial": _float(0),
    "ent_final": _float(0),
    "ent_decay_steps": _int(1),
    "net_arch": _net_arch,
    "activation": _choice(C.ACTIVATIONS),
    "features": _features,
    "seed": _int(0),
    "normalize_observations": _bool,
    "normalize_reward": _bool,
    "policy_sharing": _choice(C.POLICY_SHARING_MODES, optional=True),
    # reward
    "reward_function": _text(what="a reward function name"),
    "reward_params": _reward_params,
    # execution
    "total_timesteps": _int(1),
    "checkpoint_freq": _int(1),
    "eval_freq": _int(0),
    "n_eval_episodes": _int(1),
    "early_stopping_patience": _int(0),
    "early_stopping_min_delta": _float(0),
    "end_time": _int(1),
    "parallel_envs": _int(1),
    "single_env": _bool,
    "experiment_name": _text(optional=True, what="an MLflow experiment name"),
    "model_name": _text(optional=True, pattern=_NAME_PATTERN, what="a model name of letters, digits, '_', '.', '-'"),
    "models_dir": _text(what="a directory path"),
    "device": _text(pattern=C.DEVICE_PATTERN, what="a torch device: cpu, cuda, cuda:N, mps or auto"),
    "log_interval": _int(1),
    "sumo_seed": _int(0),
    "env_step_timeout_s": _float(0, low_open=True),
    "max_env_restarts": _int(0),
    "eval_scenarios": _text(optional=True, what="a path to a scenarios file"),
}

SCENARIO_CHECKS: Dict[str, Callable[[Any], Any]] = {
    "name": _text(pattern=_NAME_PATTERN, what="a scenario name of letters, digits, '_', '.', '-'"),
    "num_vehicles": _int(1),
    "private_traffic_seed": _int(0),
    "public_traffic_seed": _int(0),
    "routing_strategy": _mix("--routing_strategy", P.ROUTING_STRATEGIES),
    "vehicle_types": _mix("--vehicle_types", P.VEHICLE_TYPES),
    "passenger_routes": _mix("--passenger-routes", P.PASSENGER_ROUTE_KINDS),
    "departure_pattern": _departure,
    "start_time_hour": _float(0, 24, high_open=True),
}

assert set(KEY_CHECKS) == C.EXPERIMENT_FILE_KEYS - C.SCENARIOS_FILE_KEYS
assert set(SCENARIO_CHECKS) == C.SCENARIO_KEYS


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _groups_of(key: str) -> List[str]:
    return [g for g in C.CONFIG_GROUPS if g != "scenarios" and key in C.GROUP_KEYS[g]]


def _check_value(key: str, value: Any, source: str, checks: Mapping[str, Callable[[Any], Any]] = KEY_CHECKS,
                 prefix: str = "") -> Any:
    try:
        return checks[key](value)
    except _Invalid as err:
        raise ConfigError(f"{source}: {prefix}key {key!r}: {err}") from None


def _check_keys(data: Mapping[str, Any], allowed: Iterable[str], source: str, where: str) -> None:
    """Wrong-file and unknown keys; `where` names the place the keys are in ("the network file")."""
    allowed = frozenset(allowed)
    for key in data:
        if key in allowed:
            continue
        owners = _groups_of(key)
        if owners:
            files = " or ".join(f"the {g} file" for g in owners)
            raise ConfigError(f"{source}: key {key!r} belongs in {files}, not {where}")
        if key in C.SCENARIO_KEYS:
            raise ConfigError(f"{source}: key {key!r} is a scenario key; it belongs inside an entry of the "
                              f"'scenarios:' list, not at the top level of {where}")
        if key == "scenarios":
            raise ConfigError(f"{source}: key 'scenarios' belongs in the scenarios file, not {where}")
        everything = sorted(C.EXPERIMENT_FILE_KEYS | C.SCENARIO_KEYS)
        raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key, everything)}; "
                          f"allowed in {where}: {', '.join(sorted(allowed))}")


# --- the config --------------------------------------------------------------------------------


def _default_features() -> Dict[str, List[str]]:
    return {group: list(names) for group, names in C.DEFAULT_FEATURES.items()}


@dataclass
class ExperimentConfig:
    """Every parameter of one training run; the defaults are those of `src.rl.constants`."""

    # network file
    network_seed: int = C.DEFAULT_NETWORK_SEED
    grid_dimension: int = C.DEFAULT_GRID_DIMENSION
    junctions_to_remove: Union[int, str] = C.DEFAULT_JUNCTIONS_TO_REMOVE
    block_size_m: float = C.DEFAULT_BLOCK_SIZE_M
    lane_count: Union[str, int] = C.DEFAULT_LANE_COUNT
    step_length: float = C.DEFAULT_STEP_LENGTH
    land_use_block_size_m: float = C.DEFAULT_LAND_USE_BLOCK_SIZE_M
    attractiveness: Optional[str] = C.DEFAULT_ATTRACTIVENESS
    signal_programs: Optional[str] = C.DEFAULT_SIGNAL_PROGRAMS
    net_file: Optional[str] = C.DEFAULT_NET_FILE
    cycle_lengths: List[int] = field(default_factory=lambda: list(C.DEFAULT_CYCLE_LENGTHS))
    cycle_strategy: str = C.DEFAULT_CYCLE_STRATEGY
    min_green: int = C.DEFAULT_MIN_GREEN
    yellow_time: int = C.DEFAULT_YELLOW_TIME
    control_mode: str = C.DEFAULT_CONTROL_MODE
    decision_interval: int = C.DEFAULT_DECISION_INTERVAL
    # scenarios file: complete entries (name + every traffic key)
    scenarios: List[Dict[str, Any]] = field(default_factory=list)
    # algorithm file
    learning_rate: float = C.DEFAULT_LEARNING_RATE
    clip_range: float = C.DEFAULT_CLIP_RANGE
    batch_size: int = C.DEFAULT_BATCH_SIZE
    n_steps: int = C.DEFAULT_N_STEPS
    n_epochs: int = C.DEFAULT_N_EPOCHS
    gamma: float = C.DEFAULT_GAMMA
    gae_lambda: float = C.DEFAULT_GAE_LAMBDA
    max_grad_norm: float = C.DEFAULT_MAX_GRAD_NORM
    ent_coef: float = C.DEFAULT_ENT_COEF
    vf_coef: float = C.DEFAULT_VF_COEF
    log_std_init: float = C.DEFAULT_LOG_STD_INIT
    lr_schedule: str = C.DEFAULT_LR_SCHEDULE
    lr_final: float = C.DEFAULT_LR_FINAL
    lr_decay_rate: float = C.DEFAULT_LR_DECAY_RATE
    ent_schedule: Union[bool, str] = C.DEFAULT_ENT_SCHEDULE
    ent_initial: float = C.DEFAULT_ENT_INITIAL
    ent_final: float = C.DEFAULT_ENT_FINAL
    ent_decay_steps: int = C.DEFAULT_ENT_DECAY_STEPS
    net_arch: Union[List[int], Dict[str, List[int]]] = field(default_factory=lambda: list(C.DEFAULT_NET_ARCH))
    activation: str = C.DEFAULT_ACTIVATION
    features: Dict[str, List[str]] = field(default_factory=_default_features)
    seed: int = C.DEFAULT_SEED
    normalize_observations: bool = C.DEFAULT_NORMALIZE_OBSERVATIONS
    normalize_reward: bool = C.DEFAULT_NORMALIZE_REWARD
    policy_sharing: Optional[str] = C.DEFAULT_POLICY_SHARING
    # reward file
    reward_function: str = C.DEFAULT_REWARD_FUNCTION
    reward_params: Dict[str, float] = field(default_factory=lambda: dict(C.DEFAULT_REWARD_PARAMS))
    # execution file
    total_timesteps: int = C.DEFAULT_TOTAL_TIMESTEPS
    checkpoint_freq: int = C.DEFAULT_CHECKPOINT_FREQ
    eval_freq: int = C.DEFAULT_EVAL_FREQ
    n_eval_episodes: int = C.DEFAULT_N_EVAL_EPISODES
    early_stopping_patience: int = C.DEFAULT_EARLY_STOPPING_PATIENCE
    early_stopping_min_delta: float = C.DEFAULT_EARLY_STOPPING_MIN_DELTA
    end_time: int = C.DEFAULT_END_TIME
    parallel_envs: int = C.DEFAULT_PARALLEL_ENVS
    single_env: bool = C.DEFAULT_SINGLE_ENV
    experiment_name: Optional[str] = C.DEFAULT_EXPERIMENT_NAME
    model_name: Optional[str] = C.DEFAULT_MODEL_NAME
    models_dir: str = C.DEFAULT_MODELS_DIR
    device: str = C.DEFAULT_DEVICE
    log_interval: int = C.DEFAULT_LOG_INTERVAL
    sumo_seed: int = C.DEFAULT_SUMO_SEED
    env_step_timeout_s: float = C.DEFAULT_ENV_STEP_TIMEOUT_S
    max_env_restarts: int = C.DEFAULT_MAX_ENV_RESTARTS
    eval_scenarios: Optional[str] = C.DEFAULT_EVAL_SCENARIOS
    # provenance (not compared, not saved as keys): the files read, and which one set each key
    source_files: Dict[str, str] = field(default_factory=dict, compare=False)
    key_sources: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    # -- views ------------------------------------------------------------------------------

    @property
    def sharing(self) -> str:
        """`policy_sharing` resolved: junction-shared for phase_select unless set, network for cycle_splits."""
        if self.policy_sharing:
            return self.policy_sharing
        return "junction" if self.control_mode == "phase_select" else "network"

    @property
    def scenario_names(self) -> List[str]:
        return [str(s.get("name")) for s in self.scenarios]

    def to_dict(self) -> Dict[str, Any]:
        """Every setting (no provenance), in file order: the keys of a monolithic experiment file."""
        return {name: copy.deepcopy(getattr(self, name)) for name in _SETTING_FIELDS}

    def to_grouped_dict(self) -> Dict[str, Dict[str, Any]]:
        """The settings split by file: {'network': {...}, 'scenarios': {'scenarios': [...]}, ...}."""
        grouped: Dict[str, Dict[str, Any]] = {g: {} for g in C.CONFIG_GROUPS}
        for name, value in self.to_dict().items():
            grouped[_group_of_field(name)][name] = value
        return grouped

    def flatten(self) -> Dict[str, Any]:
        """Dotted keys for MLflow params: 'learning_rate', 'scenarios.0.name', 'features.edge', ...

        Mappings and lists of mappings are expanded; lists of plain values (net_arch,
        cycle_lengths, feature lists) stay one value written like "[256, 256]".
        """
        flat: Dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                if not value:
                    flat[prefix] = "{}"
                for key, item in value.items():
                    walk(f"{prefix}.{key}", item)
            elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
                for index, item in enumerate(value):
                    walk(f"{prefix}.{index}", item)
            elif isinstance(value, list):
                flat[prefix] = "[" + ", ".join(str(v) for v in value) + "]"
            else:
                flat[prefix] = value

        for name, value in self.to_dict().items():
            walk(name, value)
        return flat

    def network_params_string(self) -> str:
        return network_params_string(self)

    def env_params_strings(self) -> List[str]:
        """One env-params string per scenario, in scenario order."""
        return [build_env_params_for_scenario(self, s) for s in self.scenarios]


_META_FIELDS = ("source_files", "key_sources")
_SETTING_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name not in _META_FIELDS)
assert set(_SETTING_FIELDS) == C.EXPERIMENT_FILE_KEYS


def _group_of_field(name: str) -> str:
    for group in C.CONFIG_GROUPS:  # shared keys fall to the algorithm group (listed first)
        if name in C.GROUP_KEYS[group]:
            return group
    raise KeyError(name)


# --- validation ----------------------------------------------------------------------------


def _source_of(config: ExperimentConfig, key: str) -> str:
    if key in config.key_sources:
        return config.key_sources[key]
    group = _group_of_field(key)
    if group in config.source_files:
        return f"{group} file {config.source_files[group]}"
    if "experiment" in config.source_files:
        return f"experiment file {config.source_files['experiment']}"
    return "config"


def _scenario_source(config: ExperimentConfig) -> str:
    return _source_of(config, "scenarios")


def _check_scenarios(value: Any, source: str, end_time: Optional[int] = None) -> List[Dict[str, Any]]:
    """Complete, checked scenario entries (missing traffic keys take their defaults)."""
    if value is None or (isinstance(value, list) and not value):
        raise ConfigError(f"{source}: key 'scenarios': the scenario list is empty; give at least one "
                          "entry like {name: s1, num_vehicles: 500}")
    if not isinstance(value, list):
        raise ConfigError(f"{source}: key 'scenarios': expected a list of scenario mappings, {_got(value)}")
    result: List[Dict[str, Any]] = []
    seen: Dict[str, int] = {}
    for index, entry in enumerate(value):
        label = f"scenario #{index + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {label}: expected a mapping with 'name' and traffic keys, {_got(entry)}")
        if "name" not in entry:
            raise ConfigError(f"{source}: {label}: key 'name' is missing; every scenario needs a unique name")
        name = _check_value("name", entry["name"], source, SCENARIO_CHECKS, f"{label}: ")
        label = f"scenario {name!r}"
        if name in seen:
            raise ConfigError(f"{source}: {label}: key 'name': duplicate scenario name (also scenario "
                              f"#{seen[name] + 1}); scenario names must be unique")
        seen[name] = index
        for key in entry:
            if key in C.SCENARIO_KEYS:
                continue
            if not isinstance(key, str):
                raise ConfigError(f"{source}: {label}: key {key!r} is not a name")
            if key in C.NETWORK_KEYS:
                raise ConfigError(f"{source}: {label}: key {key!r} is a network key; all scenarios share one "
                                  "network, set it in the network file; scenario keys: "
                                  f"{', '.join(sorted(C.SCENARIO_KEYS))}")
            owners = _groups_of(key)
            if owners:
                raise ConfigError(f"{source}: {label}: key {key!r} belongs in the {' or '.join(owners)} file, not "
                                  f"in a scenario; scenario keys: {', '.join(sorted(C.SCENARIO_KEYS))}")
            raise ConfigError(f"{source}: {label}: unknown key {key!r}{_suggest(key, C.SCENARIO_KEYS)}; "
                              f"scenario keys: {', '.join(sorted(C.SCENARIO_KEYS))}")
        complete: Dict[str, Any] = {"name": name}
        for key, default in C.DEFAULT_SCENARIO.items():
            complete[key] = _check_value(key, entry.get(key, default), source, SCENARIO_CHECKS, f"{label}: ")
        if end_time is not None:
            try:
                P.parse_departure_pattern(complete["departure_pattern"], end_time)
            except P.ParameterError as err:
                raise ConfigError(f"{source}: {label}: key 'departure_pattern': {str(err).split(': ', 1)[-1]} "
                                  f"(end_time is {end_time})") from None
        result.append(complete)
    return result


def validate_experiment(config: ExperimentConfig) -> None:
    """Check every setting and every scenario of `config`; raise `ConfigError` on the first problem.

    Values are normalised in place (an integer where a number is expected becomes a float,
    scenarios are completed with default traffic keys, feature groups left out take defaults).
    Every scenario's env-params string is built and parsed by `src.cli`'s parser, so a
    config that passes here cannot fail later on a parameter.
    """
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(f"expected an ExperimentConfig, got {type(config).__name__}")
    for key in _SETTING_FIELDS:
        if key == "scenarios":
            continue
        setattr(config, key, _check_value(key, getattr(config, key), _source_of(config, key)))
    config.scenarios = _check_scenarios(config.scenarios, _scenario_source(config), config.end_time)

    # reward
    rewards = C._known_rewards()
    if rewards is not None:
        source = _source_of(config, "reward_function")
        if config.reward_function not in rewards:
            raise ConfigError(f"{source}: key 'reward_function': unknown reward {config.reward_function!r}"
                              f"{_suggest(config.reward_function, rewards)}; allowed: {', '.join(rewards)}")
        allowed = rewards[config.reward_function]
        if allowed is not None:
            for name in config.reward_params:
                if name not in allowed:
                    raise ConfigError(
                        f"{_source_of(config, 'reward_params')}: key 'reward_params': reward "
                        f"{config.reward_function!r} has no parameter {name!r}{_suggest(name, allowed)}; "
                        f"allowed: {', '.join(sorted(allowed)) or 'none'}")

    # features
    registries = C._known_features()
    if registries is not None:
        for group, names in config.features.items():
            for name in names:
                if name not in registries[group]:
                    raise ConfigError(
                        f"{_source_of(config, 'features')}: key 'features': unknown {group} feature {name!r}"
                        f"{_suggest(name, registries[group])}; allowed: {', '.join(sorted(registries[group]))}")

    # cross-key checks
    shortest_phases = 2 * (config.min_green + config.yellow_time)
    for cycle in config.cycle_lengths:
        if cycle < shortest_phases:
            raise ConfigError(f"{_source_of(config, 'cycle_lengths')}: key 'cycle_lengths': cycle length {cycle} s "
                              f"is shorter than two phases of min_green + yellow_time ({shortest_phases} s)")
        if cycle > config.end_time:
            raise ConfigError(f"{_source_of(config, 'cycle_lengths')}: key 'cycle_lengths': cycle length {cycle} s "
                              f"is longer than end_time {config.end_time} s; an episode needs at least one cycle")
    if config.control_mode == "cycle_splits" and config.policy_sharing == "junction":
        raise ConfigError(f"{_source_of(config, 'policy_sharing')}: key 'policy_sharing': 'junction' needs "
                          "control_mode: phase_select (cycle_splits has only the network-wide policy)")
    if config.early_stopping_patience > 0 and config.eval_freq <= 0:
        raise ConfigError(f"{_source_of(config, 'early_stopping_patience')}: key 'early_stopping_patience': early "
                          "stopping acts on evaluations; set eval_freq > 0 or early_stopping_patience: 0")

    # the engine's parser has the last word on every simulation value
    network_params_string(config)
    for scenario in [*config.scenarios, *eval_scenario_entries(config)]:
        build_env_params_for_scenario(config, scenario)


def eval_scenario_entries(config: ExperimentConfig) -> List[Dict[str, Any]]:
    """The checked scenarios of `eval_scenarios` (a scenarios file), or [] when none is set.

    A relative path is taken from the working folder, as the five config files are.
    """
    if not config.eval_scenarios:
        return []
    source = _source_of(config, "eval_scenarios")
    path = Path(config.eval_scenarios)
    if not path.is_file():
        raise ConfigError(f"{source}: key 'eval_scenarios': file {path} does not exist (a scenarios file, "
                          "relative to the working folder)")
    data = _read_mapping(path, "scenarios")
    _check_keys(data, C.SCENARIOS_FILE_KEYS, f"scenarios file {path}", "the scenarios file")
    return _check_scenarios(data.get("scenarios"), f"scenarios file {path} (eval_scenarios)", config.end_time)


# --- env-params strings ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _cli_options() -> Dict[str, str]:
    """Option spelling per parameter, as `src.cli` declares it (e.g. 'end_time' -> '--end-time')."""
    from src.cli import create_argument_parser

    parser = create_argument_parser()
    return {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _options(pairs: Iterable[Tuple[str, Any]]) -> str:
    options = _cli_options()
    return " ".join(f"{options[key]} {shlex.quote(_format(value))}" for key, value in pairs if value is not None)


_NETWORK_OPTION_KEYS = ("network_seed", "grid_dimension", "junctions_to_remove", "block_size_m", "lane_count",
                        "step_length", "land_use_block_size_m", "attractiveness", "signal_programs", "net_file")
_SCENARIO_OPTION_KEYS = ("num_vehicles", "private_traffic_seed", "public_traffic_seed", "routing_strategy",
                         "vehicle_types", "passenger_routes", "departure_pattern", "start_time_hour")


def _network_pairs(config: ExperimentConfig) -> List[Tuple[str, Any]]:
    return [(k, getattr(config, k)) for k in _NETWORK_OPTION_KEYS]


def _timing_pairs(config: ExperimentConfig) -> List[Tuple[str, Any]]:
    return [("cycle_length", config.cycle_lengths[0]), ("min_green", config.min_green), ("yellow_time", config.yellow_time)]


def _parse(text: str) -> None:
    from src.cli import parse_simulation_params

    parse_simulation_params(text)


def network_params_string(config: ExperimentConfig) -> str:
    """The network part of the config as `src.cli` options (to build the shared network once).

    Holds the network keys and the signal timing the network's programs are built with
    (`--cycle-length` is the first of `cycle_lengths`).
    """
    text = _options(_network_pairs(config) + _timing_pairs(config))
    try:
        _parse(text)
    except P.ParameterError as err:
        raise ConfigError(f"{_source_of(config, 'network_seed')}: network parameters rejected by src.cli: {err}") from None
    return text


def build_env_params_for_scenario(config: ExperimentConfig, scenario: Mapping[str, Any]) -> str:
    """A complete `src.cli` command line for one scenario of `config`.

    Network keys and timing come from `config`, traffic keys from `scenario` (missing ones
    take their defaults), `--end-time` from `config.end_time`, `--sumo-seed` from
    `config.sumo_seed`. `--traffic_control tree_method` is fixed: the RL env ignores it, and
    it names the baseline a replay of the string (`python -m src.cli <string>`) runs.
    The string is parsed here; a rejected value is a `ConfigError` naming the scenario.
    """
    if not isinstance(scenario, Mapping):
        raise ConfigError(f"{_scenario_source(config)}: a scenario must be a mapping, {_got(scenario)}")
    name = scenario.get("name", "?")
    unknown = [k for k in scenario if k not in C.SCENARIO_KEYS]
    if unknown:
        raise ConfigError(f"{_scenario_source(config)}: scenario {name!r}: key {unknown[0]!r} is not a scenario key; "
                          f"scenario keys: {', '.join(sorted(C.SCENARIO_KEYS))}")
    traffic = [(k, scenario.get(k, C.DEFAULT_SCENARIO[k])) for k in _SCENARIO_OPTION_KEYS]
    text = _options(
        _network_pairs(config)
        + traffic
        + [("end_time", config.end_time), ("traffic_control", "tree_method")]
        + _timing_pairs(config)
        + [("sumo_seed", config.sumo_seed)]
    )
    try:
        _parse(text)
    except P.ParameterError as err:
        raise ConfigError(f"{_scenario_source(config)}: scenario {name!r}: env-params rejected by src.cli: {err}") from None
    return text


# --- loading -----------------------------------------------------------------------------------


def _resolve_net_file(value: Any, base_dir: Path) -> Any:
    """A relative `net_file` is relative to the YAML file that sets it."""
    if isinstance(value, str) and value.strip() and not Path(value).is_absolute():
        return str((base_dir / value).resolve())
    return value


def _apply_overrides(values: Dict[str, Any], origins: Dict[str, str], overrides: Optional[Mapping[str, Any]]) -> None:
    """Command-line values win over every file; a None value means 'not given'."""
    source = "command-line overrides"
    if not overrides:
        return
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys to values, {_got(overrides)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    allowed = C.EXPERIMENT_FILE_KEYS - C.SCENARIOS_FILE_KEYS
    for key in given:
        if key in allowed:
            continue
        if key == "scenarios" or key in C.SCENARIO_KEYS:
            raise ConfigError(f"{source}: key {key!r} cannot be overridden; scenarios come from the scenarios file")
        raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key, allowed)}; allowed: {', '.join(sorted(allowed))}")
    for key, value in given.items():
        values[key] = _check_value(key, value, source)
        origins[key] = source


def _finish(values: Dict[str, Any], scenarios: Any, scenario_source: str, origins: Dict[str, str],
            source_files: Dict[str, str]) -> ExperimentConfig:
    origins = dict(origins, scenarios=scenario_source)
    end_time = values.get("end_time", C.DEFAULT_END_TIME)
    checked = _check_scenarios(scenarios, scenario_source, end_time)
    config = ExperimentConfig(**values, scenarios=checked, source_files=source_files, key_sources=origins)
    validate_experiment(config)
    return config


def load_modular_config(
    network: Union[str, Path],
    scenarios: Union[str, Path],
    algorithm: Union[str, Path],
    reward: Union[str, Path],
    execution: Union[str, Path],
    overrides: Optional[Mapping[str, Any]] = None,
) -> ExperimentConfig:
    """Read the five files into one validated config (overrides > execution > algorithm > defaults).

    `overrides` are command-line values for any non-scenario key; keys whose value is None
    are ignored. Raises `ConfigError` (one line: file, key, what is allowed) on any problem.
    """
    paths = {"network": network, "scenarios": scenarios, "algorithm": algorithm, "reward": reward, "execution": execution}
    data: Dict[str, Dict[str, Any]] = {}
    for group, path in paths.items():
        if path is None:
            raise ConfigError(f"no {group} file given; all five files (network, scenarios, algorithm, reward, execution) are needed")
        data[group] = _read_mapping(path, group)
        _check_keys(data[group], C.GROUP_KEYS[group], f"{group} file {path}", f"the {group} file")

    values: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    for group in ("network", "algorithm", "reward", "execution"):  # later groups win
        source = f"{group} file {paths[group]}"
        for key, value in data[group].items():
            if key == "net_file":
                value = _resolve_net_file(value, Path(paths[group]).parent)
            values[key] = _check_value(key, value, source)
            origins[key] = source
    _apply_overrides(values, origins, overrides)
    if "scenarios" not in data["scenarios"]:
        raise ConfigError(f"scenarios file {paths['scenarios']}: key 'scenarios' is missing; a scenarios file holds "
                          "'scenarios: [{name: ..., num_vehicles: ...}, ...]'")
    source_files = {group: str(path) for group, path in paths.items()}
    return _finish(values, data["scenarios"]["scenarios"], f"scenarios file {paths['scenarios']}", origins, source_files)


def _load_chain(path: Path, chain: Tuple[Path, ...]) -> Tuple[Dict[str, Any], Dict[str, str], List[Path]]:
    """Merged keys of `path` and its base_config ancestors, which file set each, and the files read."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in chain + (resolved,))
        raise ConfigError(f"experiment file {chain[-1]}: key 'base_config': inheritance cycle {cycle}")
    data = _read_mapping(path, "experiment")
    source = f"experiment file {path}"
    _check_keys(data, C.EXPERIMENT_FILE_KEYS | {C.BASE_CONFIG_KEY}, source, "an experiment file")
    merged: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    files: List[Path] = [path]
    base = data.pop(C.BASE_CONFIG_KEY, None)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{source}: key 'base_config': expected a path to another experiment file, {_got(base)}")
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{source}: key 'base_config': file {base_path} does not exist "
                              "(a relative path is relative to this file)")
        merged, origins, base_files = _load_chain(base_path, chain + (resolved,))
        files += base_files
    for key, value in data.items():
        if key == "net_file":
            value = _resolve_net_file(value, path.parent)
        merged[key] = value if key == "scenarios" else _check_value(key, value, source)
        origins[key] = source
    return merged, origins, files


def load_experiment(path: Union[str, Path], overrides: Optional[Mapping[str, Any]] = None) -> ExperimentConfig:
    """Read a monolithic experiment file (every group's keys at top level, plus `scenarios`).

    `base_config: other.yaml` (relative to the file) is read first and the file's own keys
    replace its keys whole (a child's `scenarios` or `reward_params` replaces the base's).
    Works for the snapshots `save_experiment` writes.
    """
    path = Path(path)
    merged, origins, files = _load_chain(path, ())
    scenario_source = origins.pop("scenarios", f"experiment file {path}")
    scenarios = merged.pop("scenarios", None)
    if scenarios is None:
        raise ConfigError(f"experiment file {path}: key 'scenarios' is missing (also in its base_config files); "
                          "give 'scenarios: [{name: ..., num_vehicles: ...}, ...]'")
    _apply_overrides(merged, origins, overrides)
    source_files = {"experiment": str(path)}
    source_files.update({f"base_config_{i}": str(p) for i, p in enumerate(files[1:], start=1)})
    return _finish(merged, scenarios, scenario_source, origins, source_files)


def save_experiment(config: ExperimentConfig, path: Union[str, Path]) -> Path:
    """Write the resolved config as one experiment file that `load_experiment` reads back equal."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Resolved experiment configuration (all five groups merged; load with",
        "# src.rl.experiment_config.load_experiment). Source files:",
    ]
    lines += [f"#   {group}: {source}" for group, source in config.source_files.items()] or ["#   (none)"]
    for group, values in config.to_grouped_dict().items():
        lines.append("")
        lines.append(f"# --- {group} ---")
        text = yaml.dump(values, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
        lines.append(text.rstrip("\n"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = [
    "ConfigError",
    "eval_scenario_entries",
    "ExperimentConfig",
    "build_env_params_for_scenario",
    "load_experiment",
    "load_modular_config",
    "network_params_string",
    "save_experiment",
    "validate_experiment",
]

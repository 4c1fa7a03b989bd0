"""`ExperimentConfig`: every setting of one training run, and its simulation params per scenario.

A config holds its values in their YAML form; `network_params(config)` and
`scenario_params(config, scenario)` make the typed `SimulationParams` of `src/params.py`
from them, which is where simulation values are checked (once, when made).
`validate_experiment` checks everything and turns each problem into a `ConfigError` naming
the file and key (and the matching `python -m src.cli` option).
`build_env_params_for_scenario` writes a scenario's params as `src.cli` arguments
(`src/argv.py`): pasted after `python -m src.cli`, the same scenario runs.
"""

from __future__ import annotations

import copy
import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from src import params as P
from src.argv import to_command_line
from src.network import validate_network_params
from src.rl import constants as C
from src.rl.config import scenarios as SC
from src.rl.config import schema as S
from src.rl.config.schema import ConfigError
from src.rl.config.yaml_format import read_mapping
from src.rl.reward import check_junction_reward
from src.traffic.route_files import validate_route_files
from src.validation import got, is_number


def _default_features() -> Dict[str, List[str]]:
    return {group: list(names) for group, names in C.DEFAULT_FEATURES.items()}


@dataclass
class ExperimentConfig:
    """Every parameter of one training run: simulation defaults from `src.params`, RL ones from `src.rl.constants`."""

    # network file
    network_seed: int = P.DEFAULT_NETWORK_SEED
    grid_dimension: int = P.DEFAULT_GRID_DIMENSION
    junctions_to_remove: Union[int, str] = P.DEFAULT_JUNCTIONS_TO_REMOVE  # a count or "B1,C2"
    block_size_m: float = P.DEFAULT_BLOCK_SIZE_M
    lane_count: Union[str, int] = P.DEFAULT_LANE_COUNT
    step_length: float = P.DEFAULT_STEP_LENGTH
    land_use_block_size_m: float = P.DEFAULT_LAND_USE_BLOCK_SIZE_M
    attractiveness: Optional[str] = None  # the engine's: land_use on a grid, uniform on a net file
    signal_programs: Optional[str] = None  # the engine's: keep a net file's own, opposites on a grid
    net_file: Optional[str] = None
    cycle_lengths: List[int] = field(default_factory=lambda: list(C.DEFAULT_CYCLE_LENGTHS))
    cycle_strategy: str = C.DEFAULT_CYCLE_STRATEGY
    min_green: int = P.DEFAULT_MIN_GREEN
    yellow_time: int = P.DEFAULT_YELLOW_TIME
    control_mode: str = C.DEFAULT_CONTROL_MODE
    decision_interval: int = P.DEFAULT_DECISION_INTERVAL
    cycle_action: bool = C.DEFAULT_CYCLE_ACTION
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
    phase_slots: Optional[int] = C.DEFAULT_PHASE_SLOTS
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
    #: None: 0, or a study scenario's own begin (see `episode_span`)
    begin: Optional[int] = None
    #: None: a study scenario's own end, else `begin` + the default run length
    end_time: Optional[int] = None
    parallel_envs: int = C.DEFAULT_PARALLEL_ENVS
    single_env: bool = C.DEFAULT_SINGLE_ENV
    experiment_name: Optional[str] = C.DEFAULT_EXPERIMENT_NAME
    model_name: Optional[str] = C.DEFAULT_MODEL_NAME
    models_dir: str = C.DEFAULT_MODELS_DIR
    device: str = C.DEFAULT_DEVICE
    torch_threads: int = C.DEFAULT_TORCH_THREADS
    log_interval: int = C.DEFAULT_LOG_INTERVAL
    sumo_seed: int = P.DEFAULT_SUMO_SEED
    env_step_timeout_s: float = C.DEFAULT_ENV_STEP_TIMEOUT_S
    max_env_restarts: int = C.DEFAULT_MAX_ENV_RESTARTS
    env_backend: str = C.DEFAULT_ENV_BACKEND
    ray_address: Optional[str] = C.DEFAULT_RAY_ADDRESS
    tracking_wait_s: float = C.DEFAULT_TRACKING_WAIT_S
    eval_scenarios: Optional[str] = C.DEFAULT_EVAL_SCENARIOS
    eval_sumo_seed: Optional[int] = C.DEFAULT_EVAL_SUMO_SEED
    # provenance (not compared, not saved as keys): the files read, and which one set each key
    source_files: Dict[str, str] = field(default_factory=dict, compare=False)
    key_sources: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

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
        return {name: copy.deepcopy(getattr(self, name)) for name in SETTING_FIELDS}

    def to_grouped_dict(self) -> Dict[str, Dict[str, Any]]:
        """The settings split by file: {'network': {...}, 'scenarios': {'scenarios': [...]}, ...}."""
        grouped: Dict[str, Dict[str, Any]] = {g: {} for g in S.CONFIG_GROUPS}
        for name, value in self.to_dict().items():
            grouped[group_of_field(name)][name] = value
        return grouped

    def network_params_string(self) -> str:
        return network_params_string(self)

    def env_params_strings(self) -> List[str]:
        """One env-params string per scenario, in scenario order."""
        shared = shared_params(self)
        return [build_env_params_for_scenario(self, s, shared) for s in self.scenarios]


_META_FIELDS = ("source_files", "key_sources")
SETTING_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name not in _META_FIELDS)
assert set(SETTING_FIELDS) == S.EXPERIMENT_FILE_KEYS


def group_of_field(name: str) -> str:
    for group in S.CONFIG_GROUPS:  # shared keys fall to the algorithm group (listed first)
        if name in S.GROUP_KEYS[group]:
            return group
    raise KeyError(name)


def source_of(config: ExperimentConfig, key: str) -> str:
    """The file (or "command-line overrides") that set `key`, as error messages name it."""
    if key in config.key_sources:
        return config.key_sources[key]
    group = group_of_field(key)
    if group in config.source_files:
        return f"{group} file {config.source_files[group]}"
    if "experiment" in config.source_files:
        return f"experiment file {config.source_files['experiment']}"
    return "config"


# --- config -> typed simulation params ------------------------------------------------------------

#: Params fields whose config key has another name.
_KEY_OF_FIELD = {"cycle_length": "cycle_lengths"}
_NETWORK_FIELDS = tuple(f.name for f in P.group_fields("network"))


def _config_error(config: ExperimentConfig, err: P.ParameterError, scenario: Optional[Mapping[str, Any]] = None,
                  scenario_source: Optional[str] = None) -> ConfigError:
    """A params error as the config names it: file, scenario, key and the `src.cli` option."""
    key = _KEY_OF_FIELD.get(err.field or "", err.field)
    in_scenario = scenario is not None and key in S.SCENARIO_KEYS
    source = (scenario_source or source_of(config, "scenarios")) if in_scenario else \
        source_of(config, key if key in S.EXPERIMENT_FILE_KEYS else "network_seed")
    label = f"scenario {scenario.get('name', '?')!r}: " if scenario is not None and (in_scenario or key is None) else ""
    if key is None:
        return ConfigError(f"{source}: {label}{err}")
    note = "; windows are relative to begin" if key == "departure_pattern" else ""
    return ConfigError(f"{source}: {label}key {key!r}: {err.problem} ({P.FIELDS[err.field].option}{note})")


def network_params(config: ExperimentConfig) -> P.NetworkParams:
    """The network of `config` (shared by every scenario); ConfigError naming file and key."""
    try:
        return P.NetworkParams(**{name: getattr(config, name) for name in _NETWORK_FIELDS})
    except P.ParameterError as err:
        raise _config_error(config, err) from None


def keeps_own_cycle(config: ExperimentConfig) -> bool:
    """A net file whose programs are kept, and no `cycle_lengths` chosen (in a file, on the
    command line or in code): the programs run on their own cycle, so `fixed` is the network's
    own program and not the equal split of a 90 s cycle."""
    keeps = config.net_file is not None and config.signal_programs in (None, "keep")
    chosen = "cycle_lengths" in config.key_sources or list(config.cycle_lengths) != list(C.DEFAULT_CYCLE_LENGTHS)
    return keeps and not chosen


def effective_cycle_lengths(config: ExperimentConfig) -> List[int]:
    """The cycle lengths the network is checked against: none when the programs keep their own."""
    return [] if keeps_own_cycle(config) else list(config.cycle_lengths)


def _signal_timing(config: ExperimentConfig) -> P.ControlParams:
    """The network file's timing (programs built on the first cycle length, or the kept
    programs' own cycle: `keeps_own_cycle`), Tree Method for a replay."""
    cycle = None if keeps_own_cycle(config) else config.cycle_lengths[0]
    return P.ControlParams(traffic_control="tree_method", cycle_length=cycle,
                           min_green=config.min_green, yellow_time=config.yellow_time,
                           decision_interval=config.decision_interval)


def _complete_scenario(config: ExperimentConfig, scenario: Any, source: str) -> Dict[str, Any]:
    """A scenario entry with scenario keys only, missing traffic keys filled with their defaults."""
    if not isinstance(scenario, Mapping):
        raise ConfigError(f"{source}: a scenario must be a mapping, {got(scenario)}")
    name = scenario.get("name", "?")
    unknown = [k for k in scenario if k not in S.SCENARIO_KEYS]
    if unknown:
        raise ConfigError(f"{source}: scenario {name!r}: key {unknown[0]!r} is not a scenario key; "
                          f"scenario keys: {', '.join(sorted(S.SCENARIO_KEYS))}")
    if any(k in S.ROUTE_KEYS for k in scenario):
        return S.check_route_scenario(scenario, source)
    return {"name": name, **{k: scenario.get(k, default) for k, default in S.DEFAULT_SCENARIO.items()}}


Shared = Tuple[P.NetworkParams, P.ControlParams]


def shared_params(config: ExperimentConfig) -> Shared:
    """The network and the signal timing every scenario of `config` shares, made (checked) once."""
    network = network_params(config)
    try:
        return network, _signal_timing(config)
    except P.ParameterError as err:
        raise _config_error(config, err) from None


def episode_span(config: ExperimentConfig, scenario: Mapping[str, Any], source: Optional[str] = None) -> Tuple[Any, Any]:
    """(begin, end) in simulation seconds of a scenario's episodes: the execution file's `begin`
    and `end_time` where set, else a study scenario's own (a RESCO map runs its hour of the day),
    else 0 and one default run length after the begin. Checked when the params are made."""
    study = SC.read_study(scenario, source or source_of(config, "scenarios")) if SC.is_study_scenario(scenario) else None
    begin = config.begin if config.begin is not None else (study.begin if study else P.DEFAULT_BEGIN)
    if config.end_time is not None:
        if study is not None and config.begin is None and is_number(config.end_time) and config.end_time <= begin:
            raise ConfigError(f"{source_of(config, 'end_time')}: key 'end_time': {config.end_time} is not after the "
                              f"begin {begin:g} s of scenario {scenario.get('name', '?')!r} (its sumocfg); leave "
                              f"end_time out to run the study's own span, or set it after the begin")
        return begin, config.end_time
    if study is not None and study.end is not None:
        return begin, study.end
    return begin, P.default_end_time(begin) if is_number(begin) else P.DEFAULT_END_TIME


def scenario_params(config: ExperimentConfig, scenario: Mapping[str, Any], shared: Optional[Shared] = None,
                    source: Optional[str] = None) -> P.SimulationParams:
    """The typed params of one scenario of `config`: the shared network, the scenario's traffic,
    its `episode_span`, `sumo_seed` of the execution file, the network file's signal timing, and
    `tree_method` as the controller a replay runs (the RL env ignores it).

    Missing traffic keys take the engine's defaults. ConfigError names the scenario and key.
    `shared` (from `shared_params`) saves making the network's params again for each scenario.
    """
    source = source or source_of(config, "scenarios")
    entry = _complete_scenario(config, scenario, source)
    network, control = shared or shared_params(config)
    if S.is_route_scenario(entry):
        if config.net_file is None:
            raise ConfigError(f"{source}: scenario {entry['name']!r}: route_files need a network given as a net file; "
                              f"set net_file in {source_of(config, 'net_file')} (a generated grid has other edges)")
        begin, end = episode_span(config, entry, source)
        try:
            traffic = P.TrafficParams(begin=begin, end_time=end, route_file=Path(entry["route_files"][0]))
        except P.ParameterError as err:
            raise _config_error(config, err, entry, source) from None
        study = SC.read_study(entry, source) if SC.is_study_scenario(entry) else None
        return P.SimulationParams(network, traffic, control, sumo_seed=config.sumo_seed,
                                  sumo_options=study.options if study else (),  # the study's run options
                                  additional_files=study.additional_files if study else ())
    try:
        begin, end = episode_span(config, entry, source)
        traffic = P.TrafficParams(begin=begin, end_time=end, **{k: entry[k] for k in S.DEFAULT_SCENARIO})
        return P.SimulationParams(network, traffic, control, sumo_seed=config.sumo_seed)
    except P.ParameterError as err:
        raise _config_error(config, err, entry, source) from None


def network_params_string(config: ExperimentConfig) -> str:
    """The network of `config` and its signal timing as `src.cli` options (to build it once).

    `--cycle-length` is the first of `cycle_lengths`, none when the kept programs run on their
    own cycle (`keeps_own_cycle`).
    """
    network, timing = shared_params(config)
    params = P.SimulationParams(network, P.TrafficParams(), timing)  # traffic is not written out
    return to_command_line(params, (*_NETWORK_FIELDS, "cycle_length", "min_green", "yellow_time"))


#: Fields a route-file scenario's replay string leaves out: the generator's, which it does not use.
_REPLAY_FIELDS_WITH_ROUTES = tuple(name for name in P.FIELDS if name not in S.SCENARIO_TRAFFIC_KEYS)


def build_env_params_for_scenario(config: ExperimentConfig, scenario: Mapping[str, Any],
                                  shared: Optional[Shared] = None) -> str:
    """A complete `src.cli` command line for one scenario of `config` (see `scenario_params`):
    `python -m src.cli <string>` replays the scenario with the `tree_method` baseline.

    A route-file scenario replays its first file (`--route-file`), without generator options;
    training rotates all of them (`scenario_env_options`)."""
    params = scenario_params(config, scenario, shared)
    if SC.is_study_scenario(scenario):  # its run options replay only through the study itself
        plain = dataclasses.replace(params, sumo_options=(), additional_files=())
        fields = [f for f in _REPLAY_FIELDS_WITH_ROUTES if f not in ("net_file", "route_file")]
        return f"--sumocfg {shlex.quote(scenario['sumocfg'])} " + to_command_line(plain, fields)
    if S.is_route_scenario(scenario):
        return to_command_line(params, _REPLAY_FIELDS_WITH_ROUTES)
    return to_command_line(params)


def scenario_env_options(scenario: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """What the env of `scenario` takes beyond its params string: a route-file scenario's rotation."""
    if not scenario or not S.is_route_scenario(scenario):
        return {}
    return {"route_files": list(scenario["route_files"]), "route_order": scenario.get("route_order", "sequential"),
            "route_seed": int(scenario.get("route_seed", 0))}


# --- validation ----------------------------------------------------------------------------------


def _as_config_value(given: Any, typed: Any) -> Any:
    """The config keeps a value's YAML form, but a number takes the type its params gave it (150 -> 150.0)."""
    return typed if is_number(typed) else given


def eval_scenario_entries(config: ExperimentConfig) -> List[Dict[str, Any]]:
    """The scenarios of `eval_scenarios` (a scenarios file, relative to the working folder), or []."""
    if not config.eval_scenarios:
        return []
    path = Path(config.eval_scenarios)
    if not path.is_file():
        raise ConfigError(f"{source_of(config, 'eval_scenarios')}: key 'eval_scenarios': file {path} does not exist "
                          "(a scenarios file, relative to the working folder)")
    data = read_mapping(path, "scenarios")
    S.check_keys(data, S.SCENARIOS_FILE_KEYS, f"scenarios file {path}", "the scenarios file")
    source = f"scenarios file {path} (eval_scenarios)"
    scenarios = S.check_scenarios(data.get("scenarios"), source, path.parent)
    shared = shared_params(config)
    for scenario in scenarios:
        scenario_params(config, scenario, shared, source)
        _check_route_files(config, scenario, source)
    return scenarios


def _check_route_files(config: ExperimentConfig, scenario: Mapping[str, Any], source: str) -> None:
    """Every route file of a route-file scenario against the net file and the episode (before any run)."""
    if not S.is_route_scenario(scenario):
        return
    begin, end = episode_span(config, scenario, source)
    if SC.is_study_scenario(scenario):
        SC.check_study_against(scenario, config.net_file, float(begin), float(end), float(config.step_length), source)
        return
    try:
        validate_route_files(scenario["route_files"], config.net_file, end, begin=begin, scenario=scenario["name"])
    except P.ParameterError as err:  # RouteFileError, or a net file sumolib cannot read
        raise ConfigError(f"{source}: {err}") from None


def _check_scenarios_params(config: ExperimentConfig, shared: Shared) -> None:
    source = source_of(config, "scenarios")
    for scenario in config.scenarios:
        traffic = scenario_params(config, scenario, shared, source).traffic
        if S.is_route_scenario(scenario):
            _check_route_files(config, scenario, source)
            continue
        for key in S.SCENARIO_TRAFFIC_KEYS:
            scenario[key] = _as_config_value(scenario[key], getattr(traffic, key))


def _check_cross_keys(config: ExperimentConfig) -> None:
    shortest_phases = 2 * (config.min_green + config.yellow_time)
    for cycle in effective_cycle_lengths(config):
        if cycle < shortest_phases:
            raise ConfigError(f"{source_of(config, 'cycle_lengths')}: key 'cycle_lengths': cycle length {cycle} s "
                              f"is shorter than two phases of min_green + yellow_time ({shortest_phases} s)")
        shortest = min((end - begin for begin, end in map(lambda s: episode_span(config, s), config.scenarios)),
                       default=cycle)
        if cycle > shortest:
            raise ConfigError(f"{source_of(config, 'cycle_lengths')}: key 'cycle_lengths': cycle length {cycle} s "
                              f"is longer than an episode ({shortest:g} s from begin to end_time); an episode needs "
                              "at least one cycle")
    if config.cycle_action and (config.control_mode != "cycle_splits" or len(set(config.cycle_lengths)) < 2):
        raise ConfigError(f"{source_of(config, 'cycle_action')}: key 'cycle_action': the cycle length as an action "
                          "needs control_mode: cycle_splits and at least two cycle_lengths to choose from")
    if config.control_mode == "cycle_splits" and config.policy_sharing == "junction":
        raise ConfigError(f"{source_of(config, 'policy_sharing')}: key 'policy_sharing': 'junction' needs "
                          "control_mode: phase_select (cycle_splits has only the network-wide policy)")
    if config.phase_slots is not None and (config.control_mode != "phase_select" or config.sharing != "junction"):
        raise ConfigError(f"{source_of(config, 'phase_slots')}: key 'phase_slots': a padded junction input needs "
                          "control_mode: phase_select and policy_sharing: junction")
    if config.control_mode == "phase_select":
        try:
            check_junction_reward(config.reward_function)
        except ValueError as err:
            raise ConfigError(f"{source_of(config, 'reward_function')}: key 'reward_function': {err}") from None
    if config.early_stopping_patience > 0 and config.eval_freq <= 0:
        raise ConfigError(f"{source_of(config, 'early_stopping_patience')}: key 'early_stopping_patience': early "
                          "stopping acts on evaluations; set eval_freq > 0 or early_stopping_patience: 0")


def validate_experiment(config: ExperimentConfig) -> None:
    """Check every setting and every scenario of `config`; raise `ConfigError` on the first problem.

    Values are normalised in place (an integer where a number is expected becomes a float,
    scenarios are completed with default traffic keys, feature groups left out take defaults).
    The RL keys are checked by the schema, the simulation keys by making the params of the
    network and of every scenario (and of `eval_scenarios`), and the grid by the network
    builder's own check, so a config that passes here cannot fail later on a parameter.
    """
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(f"expected an ExperimentConfig, got {type(config).__name__}")
    for key in S.KEY_CHECKS:
        setattr(config, key, S.check_value(key, getattr(config, key), source_of(config, key)))
    config.scenarios = S.check_scenarios(config.scenarios, source_of(config, "scenarios"))
    check_combination(config)


def check_combination(config: ExperimentConfig) -> None:
    """What `validate_experiment` checks beyond each RL key and the scenario list's shape (which
    the loader checks where it reads them): the simulation params of the network and of every
    scenario, the grid, the reward's parameters and the keys that depend on each other."""
    network, timing = shared = shared_params(config)
    for name in _NETWORK_FIELDS:
        setattr(config, name, _as_config_value(getattr(config, name), getattr(network, name)))
    try:
        validate_network_params(network, timing.yellow_time, timing.min_green, timing.cycle_length_or_default)
    except P.ParameterError as err:  # without a field: the grid refused the junctions to remove
        err.field = err.field or "junctions_to_remove"
        raise _config_error(config, err) from None
    _check_scenarios_params(config, shared)
    S.check_reward(config.reward_function, config.reward_params, source_of(config, "reward_function"))
    _check_cross_keys(config)
    eval_scenario_entries(config)


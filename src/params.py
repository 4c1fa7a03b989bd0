"""Simulation parameters: the one place that knows their names, defaults, bounds and checks.

`FIELDS` says, for every parameter, its group, command-line option, default and check; the
dataclasses run those checks when they are made, so a `SimulationParams` that exists is
valid and nothing downstream checks its values again. `src/argv.py` builds the command line
from `FIELDS`, and the RL config (`src/rl/config/`) makes its per-scenario params here, so a
training scenario and a plain `python -m src.cli` run are checked by the same code.
Checks needing a built network (junction IDs, bus lines) stay in `src/network`/`src/traffic`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

# ParameterError and invalid_value are imported from here by the engine modules as well.
from src.validation import (
    JUNCTIONS_EXPECTED,
    Check,
    ParameterError,
    ValueProblem,
    choice,
    flag,
    from_parser,
    got,
    integer,
    invalid_value,
    mix,
    number,
    parse_junctions_to_remove,
    path,
    text,
)

# --- allowed values -----------------------------------------------------------------------
ROUTING_STRATEGIES = ("shortest", "realtime", "fastest", "attractiveness")
VEHICLE_TYPES = ("passenger", "public")
PASSENGER_ROUTE_KINDS = ("in", "out", "inner", "pass")
DEPARTURE_PATTERNS = ("uniform", "six_periods")  # plus "custom:HH:MM-HH:MM,pct;..."
ATTRACTIVENESS_METHODS = ("land_use", "poisson", "uniform")
TRAFFIC_LIGHT_STRATEGIES = ("opposites", "incoming", "partial_opposites")  # generated programs
KEEP_PROGRAMS = "keep"  # a given net file's own tlLogics, untouched
SIGNAL_PROGRAMS = (KEEP_PROGRAMS,) + TRAFFIC_LIGHT_STRATEGIES
LANE_COUNT_MODES = ("realistic", "random")  # or an integer 1-5
MAX_GRID_DIMENSION = 26  # junction IDs use one column letter
MAX_LAND_USE_CELLS = 4_000_000

# --- defaults -----------------------------------------------------------------------------
DEFAULT_NETWORK_SEED = 42
DEFAULT_GRID_DIMENSION = 5
DEFAULT_BLOCK_SIZE_M = 200.0
DEFAULT_JUNCTIONS_TO_REMOVE = 0
DEFAULT_LANE_COUNT = "realistic"
DEFAULT_STEP_LENGTH = 1.0
DEFAULT_LAND_USE_BLOCK_SIZE_M = 25.0
DEFAULT_ATTRACTIVENESS = "land_use"
DEFAULT_TRAFFIC_LIGHT_STRATEGY = "opposites"
DEFAULT_NUM_VEHICLES = 1000
DEFAULT_PRIVATE_TRAFFIC_SEED = 1
DEFAULT_PUBLIC_TRAFFIC_SEED = 2
DEFAULT_ROUTING_STRATEGY = "shortest 100"
DEFAULT_VEHICLE_TYPES = "passenger 100"
DEFAULT_PASSENGER_ROUTES = "in 0 out 0 inner 100 pass 0"
DEFAULT_DEPARTURE_PATTERN = "uniform"
DEFAULT_START_TIME_HOUR = 8.0
DEFAULT_BEGIN = 0
DEFAULT_END_TIME = 3600
DEFAULT_TRAFFIC_CONTROL = "fixed"
DEFAULT_CYCLE_LENGTH = 90  # of generated programs; kept programs bring their own
DEFAULT_MIN_GREEN = 5
DEFAULT_YELLOW_TIME = 3  # of generated programs; kept programs bring their own transitions
DEFAULT_DECISION_INTERVAL = 5  # s between phase choices of acyclic controllers (max_pressure)
DEFAULT_SUMO_SEED = 0
DEFAULT_TREE_METHOD_SPEED_FACTOR = 1.0  # a link is loaded below this x its speed of maximum flow (authors: 1)

# Reference values of the vehicle classes (length m, max speed m/s).
PASSENGER_LENGTH_M, PASSENGER_MAX_SPEED = 5.0, 13.9
BUS_LENGTH_M, BUS_MAX_SPEED = 10.0, 11.1
REALTIME_REROUTING_PERIOD_S = 30

# The day profile of `six_periods`: (name, start hour, end hour, share of the day's trips %).
# Morning rush lies inside the morning window; its share is taken first.
SIX_PERIODS: Tuple[Tuple[str, float, float, float], ...] = (
    ("morning", 6.0, 12.0, 20.0),
    ("morning_rush", 7.5, 9.5, 30.0),
    ("noon", 12.0, 17.0, 25.0),
    ("evening_rush", 17.0, 19.0, 20.0),
    ("evening", 19.0, 22.0, 4.0),
    ("night", 22.0, 30.0, 1.0),  # 22:00 to 06:00 next day
)
PERIOD_NAMES: Tuple[str, ...] = tuple(p[0] for p in SIX_PERIODS)


# --- text forms: departure windows, lane count -----------------------------------------


@dataclass(frozen=True)
class DepartureWindow:
    start_s: float
    end_s: float
    share_pct: float


def parse_departure_pattern(text: str, end_time: float) -> Union[str, Tuple[DepartureWindow, ...]]:
    """Return 'uniform', 'six_periods' or the windows of 'custom:HH:MM-HH:MM,pct;...'.

    Custom windows are clock times relative to the run's begin (00:00 = the begin), must lie
    inside [0, end_time] (`end_time`: the run's length) and must not overlap; their shares may sum to at most
    100, the rest is spread uniformly over the gaps.
    """
    option = "--departure_pattern"

    def bad(allowed: str) -> ParameterError:
        return invalid_value(option, text, allowed, "departure_pattern")

    if text in DEPARTURE_PATTERNS:
        return text
    if not str(text).startswith("custom:"):
        raise bad(f"allowed: {', '.join(DEPARTURE_PATTERNS)} or custom:HH:MM-HH:MM,PCT;...")
    windows: List[DepartureWindow] = []
    body = text[len("custom:"):].strip().strip(";")
    if not body:
        raise bad("a custom pattern needs at least one window HH:MM-HH:MM,PCT")
    for part in body.split(";"):
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*,\s*([0-9.]+)\s*", part)
        if not m:
            raise bad(f"window {part!r} is not of the form HH:MM-HH:MM,PCT")
        h1, m1, h2, m2 = (int(g) for g in m.groups()[:4])
        start, end, pct = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60, float(m.group(5))
        if end <= start:
            raise bad(f"window {part!r} ends before it starts")
        if end > end_time:
            raise bad(f"window {part!r} ends after the run ({end_time:g} s from --begin to --end-time)")
        windows.append(DepartureWindow(start, end, pct))
    windows.sort(key=lambda w: w.start_s)
    for a, b in zip(windows, windows[1:]):
        if b.start_s < a.end_s:
            raise bad("windows must not overlap")
    total = sum(w.share_pct for w in windows)
    if total > 100.0 + 1e-6:
        raise bad(f"window shares sum to {total:g}, at most 100 allowed")
    covered = sum(w.end_s - w.start_s for w in windows)
    if total < 100.0 - 1e-6 and covered >= end_time:
        raise bad("shares sum to less than 100 but the windows leave no gap for the rest")
    return tuple(windows)


LANE_COUNT_EXPECTED = f"{', '.join(LANE_COUNT_MODES)} or an integer 1-5"
DEPARTURE_EXPECTED = f"{', '.join(DEPARTURE_PATTERNS)} or custom:HH:MM-HH:MM,PCT;..."


def parse_lane_count(text: Union[str, int]) -> Union[str, int]:
    value = str(text).strip()
    if value in LANE_COUNT_MODES:
        return value
    if not re.fullmatch(r"[+-]?\d+", value) or not 1 <= int(value) <= 5:
        raise invalid_value("--lane_count", text, f"expected {LANE_COUNT_EXPECTED}")
    return int(value)


def _departure(value: Any) -> Union[str, Tuple[DepartureWindow, ...]]:
    """The form only; `TrafficParams` checks the windows against its end time."""
    if isinstance(value, str) or (isinstance(value, tuple) and value and all(isinstance(w, DepartureWindow) for w in value)):
        return value
    raise ValueProblem(f"expected {DEPARTURE_EXPECTED}", got(value))


def default_end_time(begin: float) -> int:
    """The end of a run given no end: one default run length after its begin."""
    return int(begin) + DEFAULT_END_TIME


def grid_junction_ids(grid_dimension: int) -> List[str]:
    """IDs netgenerate gives the junctions of a square grid: column letter + row number."""
    letters = [chr(ord("A") + i) for i in range(grid_dimension)]
    return [f"{c}{r}" for c in letters for r in range(grid_dimension)]


# --- the field table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One parameter: where it lives, how the command line spells it, its default and its check.

    `kind` is how a command-line token becomes a value before the check (int, float, str,
    Path, or bool for a flag); the check then takes the same value a YAML file would give.
    """

    name: str
    group: str  # network, traffic, control or run
    option: str
    check: Check
    default: Any = None
    kind: type = str
    help: str = ""
    aliases: Tuple[str, ...] = ()


def _f(group: str, name: str, option: str, check: Check, default: Any = None, kind: type = str, help: str = "",
       aliases: Tuple[str, ...] = ()) -> Field:
    return Field(name, group, option, check, default, kind, help, aliases)


FIELDS: Dict[str, Field] = {f.name: f for f in (
    _f("network", "network_seed", "--network-seed", integer(0), DEFAULT_NETWORK_SEED, int),
    _f("network", "grid_dimension", "--grid_dimension", integer(2, MAX_GRID_DIMENSION), DEFAULT_GRID_DIMENSION, int,
       "junctions per side of the square grid"),
    _f("network", "junctions_to_remove", "--junctions_to_remove",
       from_parser(parse_junctions_to_remove, JUNCTIONS_EXPECTED, (str, int, np.integer, tuple, list)),
       DEFAULT_JUNCTIONS_TO_REMOVE, str, "a count (random, from the network seed) or a comma list of IDs like B1,C2"),
    _f("network", "block_size_m", "--block_size_m", number(0, low_open=True), DEFAULT_BLOCK_SIZE_M, float),
    _f("network", "lane_count", "--lane_count", from_parser(parse_lane_count, LANE_COUNT_EXPECTED, (str, int, np.integer)),
       DEFAULT_LANE_COUNT, str, "realistic (from land-use demand), random (1-3) or an integer 1-5"),
    _f("network", "step_length", "--step-length", number(0, low_open=True), DEFAULT_STEP_LENGTH, float),
    _f("network", "land_use_block_size_m", "--land_use_block_size_m", number(0, low_open=True),
       DEFAULT_LAND_USE_BLOCK_SIZE_M, float),
    _f("network", "attractiveness", "--attractiveness", choice(ATTRACTIVENESS_METHODS, optional=True), None, str,
       f"default: {DEFAULT_ATTRACTIVENESS} on a grid, uniform on --net-file (no land use)"),
    _f("network", "signal_programs", "--signal-programs", choice(SIGNAL_PROGRAMS, optional=True), None, str,
       f"{KEEP_PROGRAMS}: the net file's own programs (default with --net-file); or generated programs of a "
       f"strategy (default on a grid: {DEFAULT_TRAFFIC_LIGHT_STRATEGY})", ("--traffic_light_strategy",)),
    _f("network", "net_file", "--net-file", path(must_exist=True), None, Path, "a SUMO .net.xml replacing the synthetic grid"),
    _f("traffic", "num_vehicles", "--num_vehicles", integer(1), DEFAULT_NUM_VEHICLES, int),
    _f("traffic", "private_traffic_seed", "--private-traffic-seed", integer(0), DEFAULT_PRIVATE_TRAFFIC_SEED, int),
    _f("traffic", "public_traffic_seed", "--public-traffic-seed", integer(0), DEFAULT_PUBLIC_TRAFFIC_SEED, int),
    _f("traffic", "routing_strategy", "--routing_strategy", mix("--routing_strategy", ROUTING_STRATEGIES),
       DEFAULT_ROUTING_STRATEGY, str, 'e.g. "shortest 70 realtime 30"'),
    _f("traffic", "vehicle_types", "--vehicle_types", mix("--vehicle_types", VEHICLE_TYPES), DEFAULT_VEHICLE_TYPES, str,
       'e.g. "passenger 90 public 10"'),
    _f("traffic", "passenger_routes", "--passenger-routes", mix("--passenger-routes", PASSENGER_ROUTE_KINDS),
       DEFAULT_PASSENGER_ROUTES, str, 'e.g. "in 10 out 10 inner 70 pass 10"'),
    _f("traffic", "departure_pattern", "--departure_pattern", _departure, DEFAULT_DEPARTURE_PATTERN, str,
       "uniform, six_periods or custom:HH:MM-HH:MM,PCT;..."),
    _f("traffic", "start_time_hour", "--start_time_hour", number(0, 24, high_open=True), DEFAULT_START_TIME_HOUR, float,
       "clock hour at the run's begin (selects the time-of-day period of generated traffic)"),
    _f("traffic", "begin", "--begin", integer(0, whole_floats=True), DEFAULT_BEGIN, int,
       f"simulation time the run starts at, s (default: the --sumocfg begin, else {DEFAULT_BEGIN}); "
       "generated traffic departs from it, every controller's clock starts at it"),
    _f("traffic", "end_time", "--end-time", integer(1, whole_floats=True), DEFAULT_END_TIME, int,
       f"simulation time the run ends at, s (default: the --sumocfg end, else --begin + {DEFAULT_END_TIME})"),
    _f("traffic", "route_file", "--route-file", path(must_exist=True), None, Path,
       "a SUMO route/trip file replacing generated traffic"),
    _f("control", "traffic_control", "--traffic_control", text(what="a controller name"), DEFAULT_TRAFFIC_CONTROL),
    _f("control", "cycle_length", "--cycle-length", integer(1, optional=True), None, int,
       f"default: the kept programs' own cycle, else {DEFAULT_CYCLE_LENGTH}; "
       "fixed with a cycle length on kept programs splits their green equally (Uniform)"),
    _f("control", "min_green", "--min-green", integer(1), DEFAULT_MIN_GREEN, int),
    _f("control", "yellow_time", "--yellow-time", integer(0), DEFAULT_YELLOW_TIME, int,
       "yellow of generated programs (>= 1); kept programs use their own transitions"),
    _f("control", "model_path", "--model-path", text(optional=True, what="a model path or URI"), None, str,
       "trained policy for --traffic_control rl: a .zip path, runs:/ or models:/ URI"),
    _f("control", "tree_method_speed_factor", "--tree-method-speed-factor", number(0, low_open=True),
       DEFAULT_TREE_METHOD_SPEED_FACTOR, float, "Tree Method: a link is loaded below this factor x its speed of maximum flow"),
    _f("control", "decision_interval", "--decision-interval", integer(1), DEFAULT_DECISION_INTERVAL, int,
       "max_pressure: seconds between phase choices after the minimum green"),
    _f("run", "sumo_seed", "--sumo-seed", integer(0), DEFAULT_SUMO_SEED, int),
    _f("run", "output_dir", "--output-dir", path(), None, Path,
       "where network, routes, trip records and metrics go (default outputs/<timestamp>)"),
    _f("run", "gui", "--gui", flag, False, bool, "run sumo-gui (through TraCI)"),
)}
GROUPS: Tuple[str, ...] = ("network", "traffic", "control", "run")


def group_fields(group: str) -> List[Field]:
    return [f for f in FIELDS.values() if f.group == group]


def field_error(name: str, value: Any, problem: ValueProblem) -> ParameterError:
    spec = FIELDS[name]
    return ParameterError(f"{spec.option}: invalid value {value!r}; {problem.allowed}", name, str(problem))


def _check_fields(obj: Any, group: str) -> None:
    """Run each field's check once and keep the normalised value (frozen dataclasses)."""
    for spec in group_fields(group):
        value = getattr(obj, spec.name)
        try:
            object.__setattr__(obj, spec.name, spec.check(value))
        except ValueProblem as problem:
            raise field_error(spec.name, value, problem) from None


def _default_mix(name: str) -> Callable[[], Dict[str, float]]:
    return lambda: FIELDS[name].check(FIELDS[name].default)


# --- the parameters -------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkParams:
    """Everything that decides the road network and its signal programs (checked when made)."""

    network_seed: int = DEFAULT_NETWORK_SEED
    grid_dimension: int = DEFAULT_GRID_DIMENSION
    junctions_to_remove: Union[int, Tuple[str, ...]] = DEFAULT_JUNCTIONS_TO_REMOVE
    block_size_m: float = DEFAULT_BLOCK_SIZE_M
    lane_count: Union[str, int] = DEFAULT_LANE_COUNT
    step_length: float = DEFAULT_STEP_LENGTH
    land_use_block_size_m: float = DEFAULT_LAND_USE_BLOCK_SIZE_M
    attractiveness: Optional[str] = None  # see `resolved_attractiveness`
    signal_programs: Optional[str] = None  # see `resolved_signal_programs`
    net_file: Optional[Path] = None

    def __post_init__(self) -> None:
        _check_fields(self, "network")
        programs = resolved_signal_programs(self)
        if programs == KEEP_PROGRAMS and self.net_file is None:
            raise invalid_value("--signal-programs", programs, "keeping programs needs --net-file; a grid gets generated ones",
                                "signal_programs")
        if self.net_file is not None:
            if self.junctions_to_remove not in (0, ()):
                raise invalid_value("--junctions_to_remove", self.junctions_to_remove, "junctions can only be removed "
                                    "from a generated grid, not from --net-file (use 0)", "junctions_to_remove")
            return
        cells = math.ceil((self.grid_dimension * self.block_size_m) / self.land_use_block_size_m) ** 2
        if cells > MAX_LAND_USE_CELLS:
            raise invalid_value("--land_use_block_size_m", self.land_use_block_size_m,
                                f"gives {cells} cells over a {self.grid_dimension * self.block_size_m:g} m network; "
                                f"at most {MAX_LAND_USE_CELLS}, use larger cells", "land_use_block_size_m")
        if programs == "partial_opposites" and self.lane_count == 1:
            raise invalid_value("--lane_count", self.lane_count, "--signal-programs partial_opposites needs 2+ lanes "
                                "(separate left-turn lane); use 2-5, random or realistic", "lane_count")


def resolved_signal_programs(params: NetworkParams) -> str:
    """A given net file keeps its own programs unless a strategy is asked for; a grid gets opposites."""
    if params.signal_programs is not None:
        return params.signal_programs
    return KEEP_PROGRAMS if params.net_file is not None else DEFAULT_TRAFFIC_LIGHT_STRATEGY


def resolved_attractiveness(params: NetworkParams) -> str:
    """A grid draws trip ends from its synthetic land use; a given net file only when asked."""
    if params.attractiveness is not None:
        return params.attractiveness
    return "uniform" if params.net_file is not None else DEFAULT_ATTRACTIVENESS


@dataclass(frozen=True)
class TrafficParams:
    """Everything that decides the demand of one scenario (checked when made).

    The mixes may be given as text ("shortest 70 realtime 30") or mappings and are kept as
    mappings; a custom departure pattern is kept as its windows.
    """

    num_vehicles: int = DEFAULT_NUM_VEHICLES
    private_traffic_seed: int = DEFAULT_PRIVATE_TRAFFIC_SEED
    public_traffic_seed: int = DEFAULT_PUBLIC_TRAFFIC_SEED
    routing_strategy: Dict[str, float] = field(default_factory=_default_mix("routing_strategy"))
    vehicle_types: Dict[str, float] = field(default_factory=_default_mix("vehicle_types"))
    passenger_routes: Dict[str, float] = field(default_factory=_default_mix("passenger_routes"))
    departure_pattern: Union[str, Tuple[DepartureWindow, ...]] = DEFAULT_DEPARTURE_PATTERN
    start_time_hour: float = DEFAULT_START_TIME_HOUR
    begin: int = DEFAULT_BEGIN  # whole seconds of simulation time
    end_time: int = DEFAULT_END_TIME  # whole seconds of simulation time
    route_file: Optional[Path] = None

    def __post_init__(self) -> None:
        _check_fields(self, "traffic")
        if self.begin >= self.end_time:
            raise invalid_value("--begin", self.begin, f"the run must begin before its end ({self.end_time} s, "
                                "--end-time)", "begin")
        pattern = self.departure_pattern
        if isinstance(pattern, str):
            object.__setattr__(self, "departure_pattern", parse_departure_pattern(pattern, self.duration))
        elif not all(0 <= w.start_s < w.end_s <= self.duration for w in pattern):
            raise invalid_value("--departure_pattern", pattern, f"a window must lie inside [0, {self.duration:g}] s",
                                "departure_pattern")

    @property
    def duration(self) -> int:
        """Simulated seconds from begin to end: generated departures and windows are relative to the begin."""
        return self.end_time - self.begin


@dataclass(frozen=True)
class ControlParams:
    """`cycle_length` None: the kept programs' own cycle, else `DEFAULT_CYCLE_LENGTH`."""

    traffic_control: str = DEFAULT_TRAFFIC_CONTROL
    cycle_length: Optional[int] = None
    min_green: int = DEFAULT_MIN_GREEN
    yellow_time: int = DEFAULT_YELLOW_TIME
    model_path: Optional[str] = None
    tree_method_speed_factor: float = DEFAULT_TREE_METHOD_SPEED_FACTOR
    decision_interval: int = DEFAULT_DECISION_INTERVAL

    def __post_init__(self) -> None:
        _check_fields(self, "control")
        model = self.model_path
        if self.traffic_control == "rl" and not model:
            raise ParameterError("--traffic_control: rl needs --model-path (a .zip, runs:/ or models:/ URI)", "model_path")
        if model and not str(model).startswith(("runs:/", "models:/")) \
                and not Path(model).exists() and not Path(f"{model}.zip").exists():
            raise ParameterError(f"--model-path: file {model!r} does not exist", "model_path")

    @property
    def cycle_length_or_default(self) -> int:
        return int(self.cycle_length) if self.cycle_length is not None else DEFAULT_CYCLE_LENGTH


def check_generated_yellow(network: NetworkParams, yellow_time: int) -> None:
    """Generated programs need a yellow of at least 1 s; kept programs bring their own transitions."""
    if yellow_time < 1 and resolved_signal_programs(network) != KEEP_PROGRAMS:
        raise field_error("yellow_time", yellow_time, ValueProblem("expected an integer >= 1 (generated programs)",
                                                                   f"got {yellow_time}"))


def check_signal_timing(network: NetworkParams, yellow_time: Any, min_green: Any, cycle_length: Any) -> None:
    """Signal timing given as plain values (the network builder's arguments), checked as
    `ControlParams` checks them, plus the yellow of generated programs."""
    for name, value in (("yellow_time", yellow_time), ("min_green", min_green), ("cycle_length", cycle_length)):
        try:
            if value is None:
                raise ValueProblem("a value is needed to build the programs")
            FIELDS[name].check(value)
        except ValueProblem as problem:
            raise field_error(name, value, problem) from None
    check_generated_yellow(network, yellow_time)


@dataclass(frozen=True)
class SimulationParams:
    network: NetworkParams
    traffic: TrafficParams
    control: ControlParams
    sumo_seed: int = DEFAULT_SUMO_SEED
    output_dir: Optional[Path] = None
    gui: bool = False
    #: SUMO options a study's .sumocfg sets (name without dashes, value), passed to every run.
    sumo_options: Tuple[Tuple[str, str], ...] = ()
    #: Additional files the .sumocfg loads (absolute paths).
    additional_files: Tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        _check_fields(self, "run")
        check_generated_yellow(self.network, self.control.yellow_time)


def period_of_hour(hour_of_day: float) -> str:
    """Name of the `six_periods` period a clock hour falls in (morning rush wins over morning)."""
    h = hour_of_day % 24.0
    if 7.5 <= h < 9.5:
        return "morning_rush"
    if 6.0 <= h < 12.0:
        return "morning"
    if 12.0 <= h < 17.0:
        return "noon"
    if 17.0 <= h < 19.0:
        return "evening_rush"
    if 19.0 <= h < 22.0:
        return "evening"
    return "night"

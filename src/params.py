"""Simulation parameters: the one place that knows their names, defaults and valid values.

`src.cli.create_argument_parser()` is built from this module, and so are the env-params
strings of RL training, so a scenario validated for training is valid for a plain run.
Every check here runs before any SUMO process starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

# --- allowed values -----------------------------------------------------------------------
ROUTING_STRATEGIES = ("shortest", "realtime", "fastest", "attractiveness")
VEHICLE_TYPES = ("passenger", "public")
PASSENGER_ROUTE_KINDS = ("in", "out", "inner", "pass")
DEPARTURE_PATTERNS = ("uniform", "six_periods")  # plus "custom:HH:MM-HH:MM,pct;..."
ATTRACTIVENESS_METHODS = ("land_use", "poisson", "uniform")
TRAFFIC_LIGHT_STRATEGIES = ("opposites", "incoming", "partial_opposites")  # generated programs
KEEP_PROGRAMS = "keep"  # a given net file's own tlLogics, untouched
SIGNAL_PROGRAMS = (KEEP_PROGRAMS,) + TRAFFIC_LIGHT_STRATEGIES
LANE_COUNT_MODES = ("realistic", "random")  # or a positive integer

# --- defaults (engine) --------------------------------------------------------------------
DEFAULT_NETWORK_SEED = 42
DEFAULT_GRID_DIMENSION = 5
DEFAULT_BLOCK_SIZE_M = 200.0
DEFAULT_JUNCTIONS_TO_REMOVE = "0"
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


class ParameterError(ValueError):
    """A user-caused bad value: the message is one line naming option, value and what is allowed."""


def invalid_value(option: str, value: object, allowed: str) -> "ParameterError":
    return ParameterError(f"{option}: invalid value {value!r}; {allowed}")


def parse_percentage_mix(text: str, option: str, allowed: Tuple[str, ...]) -> Dict[str, float]:
    """Parse "name pct name pct ..." into {name: pct}; the shares must sum to 100."""
    tokens = str(text).replace(",", " ").split()
    if not tokens or len(tokens) % 2:
        raise invalid_value(option, text, f"expected pairs 'NAME PERCENT', names from {', '.join(allowed)}")
    mix: Dict[str, float] = {}
    for name, pct_text in zip(tokens[::2], tokens[1::2]):
        if name not in allowed:
            raise invalid_value(option, text, f"unknown name {name!r}; allowed: {', '.join(allowed)}")
        if name in mix:
            raise invalid_value(option, text, f"{name!r} given twice")
        try:
            pct = float(pct_text)
        except ValueError:
            raise invalid_value(option, text, f"percentage {pct_text!r} is not a number") from None
        if pct < 0:
            raise invalid_value(option, text, "percentages must be >= 0")
        mix[name] = pct
    total = sum(mix.values())
    if abs(total - 100.0) > 1e-6:
        raise invalid_value(option, text, f"percentages sum to {total:g}, they must sum to 100")
    return mix


@dataclass(frozen=True)
class DepartureWindow:
    start_s: float
    end_s: float
    share_pct: float


def parse_departure_pattern(text: str, end_time: float) -> Union[str, Tuple[DepartureWindow, ...]]:
    """Return 'uniform', 'six_periods' or the windows of 'custom:HH:MM-HH:MM,pct;...'.

    Custom windows are clock times relative to the start of the simulation (00:00 = t 0),
    must lie inside [0, end_time] and must not overlap; their shares may sum to at most
    100, the rest is spread uniformly over the gaps.
    """
    option = "--departure_pattern"
    if text in DEPARTURE_PATTERNS:
        return text
    if not str(text).startswith("custom:"):
        raise invalid_value(option, text, f"allowed: {', '.join(DEPARTURE_PATTERNS)} or custom:HH:MM-HH:MM,PCT;...")
    windows: List[DepartureWindow] = []
    body = text[len("custom:"):].strip().strip(";")
    if not body:
        raise invalid_value(option, text, "a custom pattern needs at least one window HH:MM-HH:MM,PCT")
    for part in body.split(";"):
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*,\s*([0-9.]+)\s*", part)
        if not m:
            raise invalid_value(option, text, f"window {part!r} is not of the form HH:MM-HH:MM,PCT")
        h1, m1, h2, m2 = (int(g) for g in m.groups()[:4])
        start, end, pct = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60, float(m.group(5))
        if end <= start:
            raise invalid_value(option, text, f"window {part!r} ends before it starts")
        if end > end_time:
            raise invalid_value(option, text, f"window {part!r} ends after --end-time {end_time:g} s")
        windows.append(DepartureWindow(start, end, pct))
    windows.sort(key=lambda w: w.start_s)
    for a, b in zip(windows, windows[1:]):
        if b.start_s < a.end_s:
            raise invalid_value(option, text, "windows must not overlap")
    total = sum(w.share_pct for w in windows)
    if total > 100.0 + 1e-6:
        raise invalid_value(option, text, f"window shares sum to {total:g}, at most 100 allowed")
    covered = sum(w.end_s - w.start_s for w in windows)
    if total < 100.0 - 1e-6 and covered >= end_time:
        raise invalid_value(option, text, "shares sum to less than 100 but the windows leave no gap for the rest")
    return tuple(windows)


def parse_lane_count(text: Union[str, int]) -> Union[str, int]:
    value = str(text).strip()
    if value in LANE_COUNT_MODES:
        return value
    try:
        count = int(value)
    except ValueError:
        raise invalid_value("--lane_count", text, f"allowed: {', '.join(LANE_COUNT_MODES)} or an integer 1-5") from None
    if not 1 <= count <= 5:
        raise invalid_value("--lane_count", text, "an integer lane count must be 1-5")
    return count


def parse_junctions_to_remove(text: Union[str, int]) -> Union[int, Tuple[str, ...]]:
    """A count (removed at random) or a comma list of junction IDs."""
    value = str(text).strip()
    if re.fullmatch(r"\d+", value):
        return int(value)
    if re.fullmatch(r"-\d+", value):
        raise invalid_value("--junctions_to_remove", text, "a count must be >= 0")
    ids = tuple(part.strip() for part in value.split(",") if part.strip())
    if not ids:
        raise invalid_value("--junctions_to_remove", text, "a count or a comma list of junction IDs like B1,C2")
    return ids


def grid_junction_ids(grid_dimension: int) -> List[str]:
    """IDs netgenerate gives the junctions of a square grid: column letter + row number."""
    letters = [chr(ord("A") + i) for i in range(grid_dimension)]
    return [f"{c}{r}" for c in letters for r in range(grid_dimension)]


@dataclass(frozen=True)
class NetworkParams:
    """Everything that decides the road network and its signal programs."""

    network_seed: int = DEFAULT_NETWORK_SEED
    grid_dimension: int = DEFAULT_GRID_DIMENSION
    junctions_to_remove: Union[int, Tuple[str, ...]] = 0
    block_size_m: float = DEFAULT_BLOCK_SIZE_M
    lane_count: Union[str, int] = DEFAULT_LANE_COUNT
    step_length: float = DEFAULT_STEP_LENGTH
    land_use_block_size_m: float = DEFAULT_LAND_USE_BLOCK_SIZE_M
    attractiveness: Optional[str] = None  # see `resolved_attractiveness`
    signal_programs: Optional[str] = None  # see `resolved_signal_programs`
    net_file: Optional[Path] = None


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
    """Everything that decides the demand of one scenario."""

    num_vehicles: int = DEFAULT_NUM_VEHICLES
    private_traffic_seed: int = DEFAULT_PRIVATE_TRAFFIC_SEED
    public_traffic_seed: int = DEFAULT_PUBLIC_TRAFFIC_SEED
    routing_strategy: Dict[str, float] = field(default_factory=lambda: {"shortest": 100.0})
    vehicle_types: Dict[str, float] = field(default_factory=lambda: {"passenger": 100.0})
    passenger_routes: Dict[str, float] = field(default_factory=lambda: {"inner": 100.0})
    departure_pattern: Union[str, Tuple[DepartureWindow, ...]] = DEFAULT_DEPARTURE_PATTERN
    start_time_hour: float = DEFAULT_START_TIME_HOUR
    end_time: float = DEFAULT_END_TIME
    route_file: Optional[Path] = None


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

    @property
    def cycle_length_or_default(self) -> int:
        return int(self.cycle_length) if self.cycle_length is not None else DEFAULT_CYCLE_LENGTH


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


PERIOD_NAMES: Tuple[str, ...] = tuple(p[0] for p in SIX_PERIODS)

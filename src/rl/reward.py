"""Reward functions, chosen by name with parameters.

Every reward is computed once per cycle from the cycle's `CycleMeasurement`, the
`JunctionView` of the feature extractor and the cycle's entry backlog (vehicles due to depart
that SUMO could not insert yet, averaged over the cycle). Rewards are scaled per signalised
junction so their size does not grow with the network.

Which to use (trade-offs):

- `delay` (start here): minus the vehicle-seconds spent halting on the signals' lanes plus
  those spent waiting to enter the network. Counting the entry backlog matters: without it
  (`waiting_time`) a policy scores better by keeping vehicles out of the network. It measures
  what control changes; its size grows with demand, which reward normalisation absorbs.
- `pressure`: minus |sum over a junction's movements of incoming minus outgoing queue|,
  averaged over junctions (PressLight/MPLight). Local and dense, so it trains fast and per
  junction; minimising it is throughput-optimal in theory (max-pressure), but it ignores the
  entry backlog and does not see delay directly.
- `empirical` (the seed's): arrivals + halting + speed. Arrivals depend mostly on demand, not
  on control, so most of its variance is noise to the policy; kept for comparison with older
  runs.
- `throughput`, `waiting_time`, `queue`, `speed`, `multi_objective`: single terms and their
  weighted sum. Throughput shares empirical's problem; `waiting_time`/`queue` see only
  vehicles already on signal lanes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional

import numpy as np

from src.control.base import CycleMeasurement
from src.rl.traffic_analysis import JunctionView


@dataclass(frozen=True)
class RewardFunction:
    name: str
    compute: Callable[[CycleMeasurement, JunctionView, Dict[str, float], float], float]
    params: Dict[str, float] = field(default_factory=dict)
    doc: str = ""


def _n_tls(j: JunctionView) -> float:
    return float(max(j.durations.shape[0], 1))


def _throughput(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    return p["scale"] * m.arrived / _n_tls(j)


def _waiting_time(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    """Minus the vehicle-seconds spent halting on the signals' lanes during the cycle, per junction."""
    return -p["scale"] * float(m.mean_halting.sum()) * m.cycle_length / _n_tls(j) / 100.0


def _queue(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    return -p["scale"] * float(m.last_halting.sum()) / _n_tls(j)


def _pressure(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    """Minus |incoming minus outgoing queue over a junction's movements|, mean over junctions.

    The intersection pressure of PressLight (Wei et al., 2019): a junction whose queues drain
    into free lanes has pressure near zero.
    """
    return -p["scale"] * float(np.abs(j.movement_pressure).sum()) / _n_tls(j)


def _delay(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    """Minus vehicle-seconds halting on signal lanes and waiting to enter, per junction (/100)."""
    waiting = float(m.mean_halting.sum()) + p["backlog_weight"] * float(backlog)
    return -p["scale"] * waiting * m.cycle_length / _n_tls(j) / 100.0


def _speed(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    limits = np.maximum(m.lanes.speed_limits, 0.1)
    occupied = m.mean_vehicles > 0
    if not occupied.any():
        return p["scale"]
    return p["scale"] * float(np.average(m.mean_speed[occupied] / limits[occupied], weights=m.mean_vehicles[occupied]))


def _empirical(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    """Arrivals rewarded, halting punished, with a bonus for keeping speeds up.

    The mix that worked for heavy grid scenarios: throughput keeps the policy from
    holding traffic back, the halting term spreads green to long queues.
    """
    unit = {"scale": 1.0}
    return (
        p["throughput_weight"] * _throughput(m, j, unit, backlog)
        + p["waiting_weight"] * _waiting_time(m, j, unit, backlog)
        + p["speed_weight"] * _speed(m, j, unit, backlog)
    )


_TERMS = {
    "throughput": _throughput,
    "waiting_time": _waiting_time,
    "queue": _queue,
    "pressure": _pressure,
    "speed": _speed,
}


def _multi_objective(m: CycleMeasurement, j: JunctionView, p: Dict[str, float], backlog: float = 0.0) -> float:
    """Weighted sum of the single terms: weights named `<term>_weight`."""
    unit = {"scale": 1.0}
    return sum(p[f"{term}_weight"] * fn(m, j, unit, backlog) for term, fn in _TERMS.items())


REWARD_FUNCTIONS: Dict[str, RewardFunction] = {
    "delay": RewardFunction("delay", _delay, {"scale": 1.0, "backlog_weight": 1.0}),
    "empirical": RewardFunction("empirical", _empirical, {"throughput_weight": 1.0, "waiting_weight": 0.5, "speed_weight": 1.0}),
    "throughput": RewardFunction("throughput", _throughput, {"scale": 1.0}),
    "waiting_time": RewardFunction("waiting_time", _waiting_time, {"scale": 1.0}),
    "queue": RewardFunction("queue", _queue, {"scale": 0.1}),
    "pressure": RewardFunction("pressure", _pressure, {"scale": 0.1}),
    "speed": RewardFunction("speed", _speed, {"scale": 1.0}),
    "multi_objective": RewardFunction(
        "multi_objective",
        _multi_objective,
        {"throughput_weight": 1.0, "waiting_time_weight": 0.5, "queue_weight": 0.0, "pressure_weight": 0.0, "speed_weight": 0.5},
    ),
}


def resolve_reward_params(name: str, params: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
    """Defaults of reward `name` updated with `params`; ValueError names what exists."""
    if name not in REWARD_FUNCTIONS:
        raise ValueError(f"unknown reward function {name!r}; allowed: {', '.join(REWARD_FUNCTIONS)}")
    spec = REWARD_FUNCTIONS[name]
    resolved = dict(spec.params)
    for key, value in (params or {}).items():
        if key not in spec.params:
            raise ValueError(f"reward {name!r} has no parameter {key!r}; allowed: {', '.join(spec.params) or 'none'}")
        resolved[key] = float(value)
    return resolved


def compute_reward(name: str, params: Mapping[str, float], m: CycleMeasurement, j: JunctionView,
                   backlog: float = 0.0) -> float:
    """Reward `name` of one cycle; `backlog`: mean vehicles waiting to enter the network."""
    return float(REWARD_FUNCTIONS[name].compute(m, j, dict(params), float(backlog)))


# --- phase_select: one reward per junction per decision ------------------------------------

#: Rewards defined per junction, for `phase_select` control (each junction's own value is its
#: entry's reward under parameter sharing; the env's scalar reward is their mean).
JUNCTION_REWARDS = ("delay", "waiting_time", "queue", "pressure")


def check_junction_reward(name: str) -> None:
    """ValueError unless `name` is defined per junction (what phase_select control needs)."""
    if name not in JUNCTION_REWARDS:
        raise ValueError(f"reward {name!r} is defined per cycle; control_mode: phase_select takes one of: "
                         f"{', '.join(JUNCTION_REWARDS)}")


def junction_rewards(name: str, params: Mapping[str, float], halting_seconds: np.ndarray, queue: np.ndarray,
                     pressure: np.ndarray, backlog_seconds: np.ndarray) -> np.ndarray:
    """Per junction, over one decision interval.

    `halting_seconds`: vehicle-seconds halting on the junction's incoming lanes; `queue`: its
    halting vehicles at the decision; `pressure`: its movement pressure (see
    `JunctionObserver.pressure`); `backlog_seconds`: vehicle-seconds spent waiting to enter the
    network on the junction's incoming edges (`delay` only): the junction that holds an
    entry red pays for the vehicles it keeps out. Units as in the cycle rewards.
    """
    check_junction_reward(name)
    scale = float(params["scale"])
    if name in ("delay", "waiting_time"):
        backlog = float(params.get("backlog_weight", 0.0)) * np.asarray(backlog_seconds, dtype=float)
        return -scale * (np.asarray(halting_seconds, dtype=float) + backlog) / 100.0
    if name == "queue":
        return -scale * np.asarray(queue, dtype=float)
    return -scale * np.abs(np.asarray(pressure, dtype=float))

"""Reward functions, chosen by name with parameters.

Every reward is computed once per cycle from the cycle's `CycleMeasurement` and the
`JunctionView` of the feature extractor. Throughput counts every vehicle that arrived during
the whole cycle (summed step by step in `run_cycle`), not only in its last second.
Rewards are scaled per signalised junction so their size does not grow with the network.
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
    compute: Callable[[CycleMeasurement, JunctionView, Dict[str, float]], float]
    params: Dict[str, float] = field(default_factory=dict)
    doc: str = ""


def _n_tls(j: JunctionView) -> float:
    return float(max(j.durations.shape[0], 1))


def _throughput(m: CycleMeasurement, j: JunctionView, p: Dict[str, float]) -> float:
    return p["scale"] * m.arrived / _n_tls(j)


def _waiting_time(m: CycleMeasurement, j: JunctionView, p: Dict[str, float]) -> float:
    """Minus the vehicle-seconds spent halting on the signals' lanes during the cycle, per junction."""
    return -p["scale"] * float(m.mean_halting.sum()) * m.cycle_length / _n_tls(j) / 100.0


def _queue(m: CycleMeasurement, j: JunctionView, p: Dict[str, float]) -> float:
    return -p["scale"] * float(m.last_halting.sum()) / _n_tls(j)


def _pressure(m: CycleMeasurement, j: JunctionView, p: Dict[str, float]) -> float:
    """Minus the absolute pressure summed over all phases of all junctions (the max-pressure objective)."""
    return -p["scale"] * float(np.abs(j.pressure[j.phase_mask]).sum()) / _n_tls(j)


def _speed(m: CycleMeasurement, j: JunctionView, p: Dict[str, float]) -> float:
    limits = np.maximum(m.lanes.speed_limits, 0.1)
    occupied = m.mean_vehicles > 0
    if not occupied.any():
        return p["scale"]
    return p["scale"] * float(np.average(m.mean_speed[occupied] / limits[occupied], weights=m.mean_vehicles[occupied]))


def _empirical(m: CycleMeasurement, j: JunctionView, p: Dict[str, float]) -> float:
    """Arrivals rewarded, halting punished, with a bonus for keeping speeds up.

    The mix that worked for heavy grid scenarios: throughput keeps the policy from
    holding traffic back, the halting term spreads green to long queues.
    """
    unit = {"scale": 1.0}
    return (
        p["throughput_weight"] * _throughput(m, j, unit)
        + p["waiting_weight"] * _waiting_time(m, j, unit)
        + p["speed_weight"] * _speed(m, j, unit)
    )


_TERMS = {
    "throughput": _throughput,
    "waiting_time": _waiting_time,
    "queue": _queue,
    "pressure": _pressure,
    "speed": _speed,
}


def _multi_objective(m: CycleMeasurement, j: JunctionView, p: Dict[str, float]) -> float:
    """Weighted sum of the single terms: weights named `<term>_weight`."""
    unit = {"scale": 1.0}
    return sum(p[f"{term}_weight"] * fn(m, j, unit) for term, fn in _TERMS.items())


REWARD_FUNCTIONS: Dict[str, RewardFunction] = {
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


def compute_reward(name: str, params: Mapping[str, float], m: CycleMeasurement, j: JunctionView) -> float:
    return float(REWARD_FUNCTIONS[name].compute(m, j, dict(params)))

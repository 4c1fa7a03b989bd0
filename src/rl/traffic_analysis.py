"""Observation features, chosen by name from three registries.

Features are computed from one `CycleMeasurement` (lane readings over the cycle that just
ended) and are normalised to roughly [0, 1]. Their count depends on the network only
(edges around signals, signalised junctions, phases), so every scenario on one network
shares the observation space. Training and `RLController` both build their observation
with `FeatureExtractor`, from the feature lists stored with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from src.control.base import CycleMeasurement, LaneInfo, phase_lane_indices
from src.network.phases import PhasePlan
from src.rl.constants import DEFAULT_FEATURES

#: Bound of each action value; softmax of values in [-ACTION_BOUND, ACTION_BOUND] spans
#: shares from near-zero (minimum green) to nearly the whole spare green.
ACTION_BOUND = 3.0


def cycle_from_action(value: float, cycle_lengths) -> int:
    """The cycle length an action value in [-ACTION_BOUND, ACTION_BOUND] picks (`cycle_action`):
    the range is cut into equal parts, shortest cycle first; 0 (the untrained policy) is the middle."""
    lengths = sorted(int(c) for c in cycle_lengths)
    share = (float(np.clip(value, -ACTION_BOUND, ACTION_BOUND)) + ACTION_BOUND) / (2 * ACTION_BOUND)
    return lengths[int(round(share * (len(lengths) - 1)))]

#: Metres of lane one stopped vehicle occupies (length + gap); turns counts into densities.
JAM_SPACING_M = 7.5


@dataclass
class EdgeView:
    """Lane readings of one cycle aggregated to edges."""

    speed_ratio: np.ndarray
    density: np.ndarray
    halting_ratio: np.ndarray
    inflow_ratio: np.ndarray
    previous_density: np.ndarray


@dataclass
class JunctionView:
    durations: np.ndarray  # (n_tls, max_phases), seconds, 0 where a junction has fewer phases
    pressure: np.ndarray  # (n_tls, max_phases)
    phase_mask: np.ndarray  # (n_tls, max_phases) bool
    cycle_length: float
    #: (n_tls,) per junction: sum over its movements (incoming, outgoing lane) of the mean
    #: halting count in minus out over the cycle (the max-pressure literature's pressure).
    movement_pressure: Optional[np.ndarray] = None


def _edge_speed_ratio(v: EdgeView, j: JunctionView) -> np.ndarray:
    return v.speed_ratio


def _edge_density(v: EdgeView, j: JunctionView) -> np.ndarray:
    return v.density


def _edge_halting(v: EdgeView, j: JunctionView) -> np.ndarray:
    return v.halting_ratio


def _edge_congestion(v: EdgeView, j: JunctionView) -> np.ndarray:
    """Share of the free-flow speed lost, weighted by how full the edge is."""
    return np.clip((1.0 - v.speed_ratio) * np.sqrt(v.density), 0.0, 1.0)


def _edge_time_loss(v: EdgeView, j: JunctionView) -> np.ndarray:
    """Extra travel time over free flow, as a share of the travel time (0 free, ->1 jammed)."""
    return np.clip(1.0 - v.speed_ratio, 0.0, 1.0)


def _edge_trend(v: EdgeView, j: JunctionView) -> np.ndarray:
    """Change of density since the previous cycle, mapped from [-1, 1] to [0, 1]."""
    return np.clip((v.density - v.previous_density + 1.0) / 2.0, 0.0, 1.0)


def _edge_inflow(v: EdgeView, j: JunctionView) -> np.ndarray:
    return v.inflow_ratio


def _junction_durations(v: EdgeView, j: JunctionView) -> np.ndarray:
    return (j.durations / j.cycle_length).ravel()


def _junction_pressure(v: EdgeView, j: JunctionView) -> np.ndarray:
    return (np.tanh(j.pressure / 20.0) * 0.5 + 0.5).ravel() * j.phase_mask.ravel()


def _junction_phase_mask(v: EdgeView, j: JunctionView) -> np.ndarray:
    return j.phase_mask.astype(float).ravel()


EDGE_FEATURES: Dict[str, Callable[[EdgeView, JunctionView], np.ndarray]] = {
    "speed_ratio": _edge_speed_ratio,
    "density": _edge_density,
    "halting_ratio": _edge_halting,
    "congestion": _edge_congestion,
    "time_loss": _edge_time_loss,
    "trend": _edge_trend,
    "inflow": _edge_inflow,
}

JUNCTION_FEATURES: Dict[str, Callable[[EdgeView, JunctionView], np.ndarray]] = {
    "phase_durations": _junction_durations,
    "phase_pressure": _junction_pressure,
    "phase_mask": _junction_phase_mask,
}


def _net_vehicles(v: EdgeView, j: JunctionView, m: CycleMeasurement, scale: float) -> float:
    return min(m.running / scale, 1.0)


def _net_mean_speed(v: EdgeView, j: JunctionView, m: CycleMeasurement, scale: float) -> float:
    return float(np.mean(v.speed_ratio)) if v.speed_ratio.size else 1.0


def _net_congestion_ratio(v: EdgeView, j: JunctionView, m: CycleMeasurement, scale: float) -> float:
    return float(np.mean(v.speed_ratio < 0.5)) if v.speed_ratio.size else 0.0


def _net_cost(v: EdgeView, j: JunctionView, m: CycleMeasurement, scale: float) -> float:
    """Mean halting share over all edges: the network's waiting load."""
    return float(np.mean(v.halting_ratio)) if v.halting_ratio.size else 0.0


def _net_throughput(v: EdgeView, j: JunctionView, m: CycleMeasurement, scale: float) -> float:
    return min(m.arrived / max(scale * 0.1, 1.0), 1.0)


NETWORK_FEATURES: Dict[str, Callable[..., float]] = {
    "vehicles": _net_vehicles,
    "mean_speed_ratio": _net_mean_speed,
    "congestion_ratio": _net_congestion_ratio,
    "cost": _net_cost,
    "throughput": _net_throughput,
}



def resolved_features(features: Optional[Mapping[str, Sequence[str]]] = None) -> Dict[str, List[str]]:
    """The three feature lists actually observed (defaults where none are given)."""
    chosen = features or DEFAULT_FEATURES
    return {g: list(chosen.get(g, [])) for g in ("edge", "junction", "network")}


def check_feature_names(features: Mapping[str, Sequence[str]]) -> None:
    """Raise ValueError naming an unknown feature group or feature and what exists."""
    registries = {"edge": EDGE_FEATURES, "junction": JUNCTION_FEATURES, "network": NETWORK_FEATURES}
    for group, names in features.items():
        if group not in registries:
            raise ValueError(f"unknown feature group {group!r}; allowed: {', '.join(registries)}")
        for name in names:
            if name not in registries[group]:
                raise ValueError(f"unknown {group} feature {name!r}; allowed: {', '.join(registries[group])}")
    if not any(features.get(g) for g in registries):
        raise ValueError("the feature lists are all empty; choose at least one feature")


def movement_pressure(phase_links: Sequence[Sequence[Sequence[tuple]]], queues: np.ndarray) -> np.ndarray:
    """Per junction (its phases' (incoming, outgoing) lane-index pairs): the sum over its
    distinct movements of incoming minus outgoing queue (PressLight's intersection pressure)."""
    return np.array([sum(queues[i] - queues[o] for i, o in sorted({m for links in phases for m in links}))
                     for phases in phase_links], dtype=float)


class FeatureExtractor:
    """Builds the observation vector of one network from cycle measurements."""

    def __init__(
        self,
        plans: Mapping[str, PhasePlan],
        features: Optional[Mapping[str, Sequence[str]]] = None,
        vehicle_scale: Optional[float] = None,
    ) -> None:
        check_feature_names(features or DEFAULT_FEATURES)
        self.features = resolved_features(features)
        self.plans = dict(sorted(plans.items()))
        self.tls_ids = list(self.plans)
        self.max_phases = max((p.num_phases for p in self.plans.values()), default=1)
        lanes = sorted({lane for p in self.plans.values() for i, o, _ in p.links for lane in (i, o)})
        self.edge_ids = sorted({lane.rsplit("_", 1)[0] for lane in lanes})
        # Normaliser of vehicle counts: the jam capacity of the observed lanes unless given.
        self.vehicle_scale = float(vehicle_scale) if vehicle_scale else None
        self.phase_mask = np.zeros((len(self.tls_ids), self.max_phases), dtype=bool)
        for k, tls in enumerate(self.tls_ids):
            self.phase_mask[k, : self.plans[tls].num_phases] = True
        self._edge_of_lane: Optional[np.ndarray] = None
        self._phase_links: Optional[List[List[Sequence[tuple]]]] = None
        #: The junction view of the last observed cycle (rewards read it instead of recomputing).
        self.last_junction_view: Optional[JunctionView] = None
        self._prev_density = np.zeros(len(self.edge_ids))

    @property
    def size(self) -> int:
        return (
            len(self.features["edge"]) * len(self.edge_ids)
            + len(self.features["junction"]) * len(self.tls_ids) * self.max_phases
            + len(self.features["network"])
        )

    @property
    def needs_entered(self) -> bool:
        """Whether the lane sampler must count newly entered vehicles (the `inflow` feature)."""
        return "inflow" in self.features["edge"]

    @property
    def action_size(self) -> int:
        return len(self.tls_ids) * self.max_phases

    def reset(self) -> None:
        self._prev_density = np.zeros(len(self.edge_ids))

    def _edge_view(self, m: CycleMeasurement) -> EdgeView:
        lanes: LaneInfo = m.lanes
        if self._edge_of_lane is None:
            index = {e: k for k, e in enumerate(self.edge_ids)}
            self._edge_of_lane = np.array([index[l.rsplit("_", 1)[0]] for l in lanes.lane_ids])
        n = len(self.edge_ids)
        e = self._edge_of_lane

        def total(values: np.ndarray) -> np.ndarray:
            return np.bincount(e, weights=values, minlength=n)

        capacity = np.maximum(total(lanes.lengths) / JAM_SPACING_M, 1.0)
        vehicles = total(m.mean_vehicles)
        weighted_speed = total(m.mean_speed * np.maximum(m.mean_vehicles, 1e-3))
        weights = total(np.maximum(m.mean_vehicles, 1e-3))
        limit = total(lanes.speed_limits) / np.maximum(np.bincount(e, minlength=n), 1)
        speed_ratio = np.clip(weighted_speed / weights / np.maximum(limit, 0.1), 0.0, 1.0)
        density = np.clip(vehicles / capacity, 0.0, 1.0)
        halting = np.clip(total(m.mean_halting) / capacity, 0.0, 1.0)
        inflow = np.clip(total(m.entered) / capacity, 0.0, 1.0)
        view = EdgeView(speed_ratio, density, halting, inflow, self._prev_density)
        self._prev_density = density
        return view

    def junction_view(self, m: CycleMeasurement) -> JunctionView:
        durations = np.zeros((len(self.tls_ids), self.max_phases))
        pressure = np.zeros_like(durations)
        queue = m.last_vehicles
        if self._phase_links is None:  # lane indices are fixed by the network: resolve once
            self._phase_links = [phase_lane_indices(self.plans[tls], m.lanes) for tls in self.tls_ids]
        for k, tls in enumerate(self.tls_ids):
            d = m.last_durations.get(tls)
            if d is not None:
                durations[k, : len(d)] = d
            for p, links in enumerate(self._phase_links[k]):
                pressure[k, p] = sum(queue[i] - queue[o] for i, o in links)
        halting = m.mean_halting
        return JunctionView(durations, pressure, self.phase_mask, m.cycle_length,
                            movement_pressure(self._phase_links, halting))

    def observe(self, m: CycleMeasurement) -> np.ndarray:
        if self.vehicle_scale is None:
            self.vehicle_scale = max(float(m.lanes.lengths.sum()) / JAM_SPACING_M, 1.0)
        edges = self._edge_view(m)
        junctions = self.junction_view(m)
        self.last_junction_view = junctions
        parts = [EDGE_FEATURES[f](edges, junctions) for f in self.features["edge"]]
        parts += [JUNCTION_FEATURES[f](edges, junctions) for f in self.features["junction"]]
        parts.append(np.array([NETWORK_FEATURES[f](edges, junctions, m, self.vehicle_scale) for f in self.features["network"]]))
        obs = np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in parts])
        return np.nan_to_num(obs, nan=0.0, posinf=1.0, neginf=0.0).astype(np.float32)

    def empty_observation(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.float32)

    def action_to_proportions(self, action: np.ndarray) -> Dict[str, np.ndarray]:
        """Per junction: softmax over its own phases only (extra action slots are ignored).

        The same function serves training and `RLController`, so a junction with fewer
        phases than the action width is treated identically in both.
        """
        values = np.clip(np.asarray(action, dtype=float), -ACTION_BOUND, ACTION_BOUND)
        values = values.reshape(len(self.tls_ids), self.max_phases)
        result = {}
        for k, tls in enumerate(self.tls_ids):
            n = self.plans[tls].num_phases
            x = values[k, :n]
            x = x - x.max()
            e = np.exp(x)
            result[tls] = e / e.sum()
        return result

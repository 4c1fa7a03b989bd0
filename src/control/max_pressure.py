"""Max-pressure control, the standard acyclic form and the earlier cycle-split form.

Pressure of a phase = sum over the movements (incoming lane -> outgoing lane) it gives green
of (queue on the incoming lane - queue on the outgoing lane); a queue is the number of
halting vehicles on the lane.

`max_pressure` (Varaiya 2013; RESCO's and LibSignal's baseline): every decision interval,
once a green has lasted the minimum green, each junction keeps or switches to the phase of
maximal pressure (the current phase wins ties); `PhaseActuator` runs the program's yellow
on every switch. Phases are chosen in any order (acyclic).

`max_pressure_cycle`: the same pressures once per cycle on the fixed-cycle actuator: every
phase keeps the minimum green, half of the spare green is shared equally and half in
proportion to positive pressure. (Measured on a 3x3 and a 5x5 grid: giving all spare green
by pressure starves phases whose queues build up during the next cycle.)
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from src.control.actuator import proportions_to_durations
from src.control.base import CycleMeasurement, LaneInfo, PhaseSelectController, SignalController, phase_lane_indices

Movements = Dict[str, List[Sequence[Tuple[int, int]]]]


def phase_pressures(movements: Sequence[Sequence[Tuple[int, int]]], queues: np.ndarray) -> np.ndarray:
    """Pressure of each phase of one junction: sum of (incoming - outgoing queue) of its movements."""
    return np.array([sum(queues[i] - queues[o] for i, o in links) for links in movements], dtype=float)


def max_pressure_phase(pressures: np.ndarray, current: int) -> int:
    """The phase of maximal pressure; the current one when it is among the maximal."""
    best = float(pressures.max())
    return current if pressures[current] >= best - 1e-9 else int(np.argmax(pressures))


class MaxPressureController(PhaseSelectController):
    name = "max_pressure"

    def __init__(self, plans, timing) -> None:
        super().__init__(plans, timing)
        self._movements: Optional[Movements] = None

    def select(self, queues: np.ndarray, lanes: LaneInfo, current: Mapping[str, int],
               ready: Sequence[str]) -> Dict[str, int]:
        if self._movements is None:
            self._movements = {t: phase_lane_indices(p, lanes) for t, p in self.plans.items()}
        return {tls: max_pressure_phase(phase_pressures(self._movements[tls], queues), current[tls]) for tls in ready}


class MaxPressureCycleController(SignalController):
    name = "max_pressure_cycle"

    def __init__(self, plans, timing) -> None:
        super().__init__(plans, timing)
        self._movements: Optional[Movements] = None

    def pressures(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        if self._movements is None:
            self._movements = {t: phase_lane_indices(p, measurement.lanes) for t, p in self.plans.items()}
        return {tls: phase_pressures(links, measurement.last_vehicles) for tls, links in self._movements.items()}

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        durations = {}
        for tls, pressure in self.pressures(measurement).items():
            positive = np.clip(pressure, 0.0, None)
            weights = positive + positive.mean() if positive.sum() > 0 else np.ones_like(positive)
            durations[tls] = proportions_to_durations(weights, self.timing)
        return durations

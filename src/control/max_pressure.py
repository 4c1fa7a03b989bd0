"""Max-pressure control in cycle form.

Pressure of a phase = sum over the links it serves of (vehicles on the incoming lane -
vehicles on the outgoing lane), read at the end of the cycle. Classic max-pressure gives
the whole next slot to the phase of highest pressure; here every phase keeps the minimum
green and the rest of the cycle goes to phases in proportion to their positive pressure,
so the method runs on the same fixed-cycle actuator as every other controller.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from src.control.actuator import proportions_to_durations
from src.control.base import CycleMeasurement, SignalController, phase_lane_indices


class MaxPressureController(SignalController):
    name = "max_pressure"

    def __init__(self, plans, timing) -> None:
        super().__init__(plans, timing)
        self._links = None

    def pressures(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        if self._links is None:
            self._links = {t: phase_lane_indices(p, measurement.lanes) for t, p in self.plans.items()}
        queue = measurement.last_vehicles
        result = {}
        for tls, phases in self._links.items():
            result[tls] = np.array([sum(queue[i] - queue[o] for i, o in links) for links in phases], dtype=float)
        return result

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        durations = {}
        for tls, pressure in self.pressures(measurement).items():
            positive = np.clip(pressure, 0.0, None)
            if positive.sum() <= 0:
                positive = np.ones_like(positive)
            durations[tls] = proportions_to_durations(positive, self.timing)
        return durations

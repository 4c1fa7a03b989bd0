"""Fixed-time control: the equal-split program written into the network, never changed."""

from __future__ import annotations

from typing import Dict

import numpy as np

from src.control.base import CycleMeasurement, SignalController


class FixedTimeController(SignalController):
    """Equal green split every cycle. The network's own static program already encodes it,
    so the runner does not touch SUMO at all (`adaptive = False`)."""

    name = "fixed"
    adaptive = False

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return self.initial_durations()

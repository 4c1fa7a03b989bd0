"""SUMO's own gap-based actuated control on the same phases as every other controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from src.control.actuator import CycleTiming
from src.control.base import CycleMeasurement, SignalController, keeps_programs
from src.control.programs import write_programs_file
from src.network.phases import PhasePlan

#: Longest green an actuated phase may extend to, as a multiple of its starting green
#: (where the program gives no maxDur).
MAX_GREEN_FACTOR = 2.5


def runs_own_actuated(plan: PhasePlan) -> bool:
    """A kept actuated program with its own bounds: SUMO runs it as it is (plain `sumo`)."""
    bounds = [*(plan.min_durations or []), *(plan.max_durations or [])]
    return plan.program_type == "actuated" and len(bounds) == 2 * plan.num_phases and None not in bounds


class ActuatedController(SignalController):
    """SUMO extends each green between its minimum and maximum while vehicles keep arriving.

    A kept actuated program runs untouched (its own minDur/maxDur and detector settings);
    any other program is loaded as `type="actuated"` (SUMO adds the induction loops) with the
    program's minDur/maxDur where it has them, else `min_green` and `MAX_GREEN_FACTOR`."""

    name = "actuated"
    adaptive = False

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming, kept_programs: bool = True) -> None:
        super().__init__(plans, timing)
        self.kept_programs = kept_programs

    @classmethod
    def run_options(cls, params: Any, network: Any) -> Dict[str, Any]:
        return {"kept_programs": keeps_programs(params)}

    def _written(self) -> Dict[str, np.ndarray]:
        """Greens of the signals this controller loads as actuated (all but kept actuated programs)."""
        return {tls: d for tls, d in self.initial_durations().items() if not runs_own_actuated(self.plans[tls])}

    def programs_from_begin(self) -> List[str]:
        return list(self._written()) if self.kept_programs else list(self.plans)

    def _bounds(self, plan: PhasePlan, greens: np.ndarray) -> List[Tuple[float, float]]:
        bounds = []
        for i, green in enumerate(greens):
            low = (plan.min_durations or [None] * len(greens))[i]
            high = (plan.max_durations or [None] * len(greens))[i]
            low = float(self.timing.min_green) if low is None else low
            high = max(float(green) * MAX_GREEN_FACTOR, low + 1) if high is None else high
            bounds.append((low, high))
        return bounds

    def additional_files(self, out_dir: Path) -> List[Path]:
        durations = self._written()
        if not durations:
            return []
        bounds = {tls: self._bounds(self.plans[tls], d) for tls, d in durations.items()}
        path = write_programs_file(Path(out_dir) / "actuated_programs.add.xml", self.plans, durations,
                                   self.timing.yellow_time, program_type="actuated", program_id="actuated",
                                   bounds=bounds)
        return [path]

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return self.initial_durations()

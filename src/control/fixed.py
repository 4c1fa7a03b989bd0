"""Fixed-time control: the signal programs' own durations (or an equal split), never changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np

from src.control.actuator import CycleTiming, equal_durations
from src.control.base import CycleMeasurement, SignalController, keeps_programs
from src.control.programs import write_programs_file
from src.network.phases import PhasePlan


class FixedTimeController(SignalController):
    """Runs each program's own greens as a static program; with `uniform` (a cycle length was
    asked for) the equal split of its greens over that cycle, the Tree Method study's
    "Uniform". A program that is already static with these greens is left alone, so on
    generated programs the runner does not touch SUMO at all (`adaptive = False`)."""

    name = "fixed"
    adaptive = False

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming, uniform: bool = False,
                 kept_programs: bool = True) -> None:
        super().__init__(plans, timing)
        self.uniform = uniform
        self.kept_programs = kept_programs

    @classmethod
    def run_options(cls, params: Any, network: Any) -> Dict[str, Any]:
        """A cycle length given on the command line asks for the equal split (the study's Uniform)."""
        return {"uniform": params.control.cycle_length is not None, "kept_programs": keeps_programs(params)}

    def initial_durations(self) -> Dict[str, np.ndarray]:
        """The equal split (`uniform`), else each program's own greens on its own cycle: signals
        whose cycles differ keep them (plain `sumo` on a city map), unlike the cycle-based
        controllers, which share one cycle."""
        if self.uniform:
            return {tls: equal_durations(p.num_phases, self.timing) for tls, p in self.plans.items()}
        own = super().initial_durations()
        return {tls: np.asarray(p.green_durations, dtype=float) if p.green_durations is not None else own[tls]
                for tls, p in self.plans.items()}

    def _changed(self) -> Dict[str, np.ndarray]:
        """The signals whose program differs from the static one this controller runs."""
        return {tls: d for tls, d in self.initial_durations().items()
                if self.plans[tls].program_type != "static" or self.plans[tls].green_durations != [float(v) for v in d]}

    def programs_from_begin(self) -> List[str]:
        return list(self._changed()) if self.kept_programs else list(self.plans)

    def additional_files(self, out_dir: Path) -> List[Path]:
        changed = self._changed()
        if not changed:
            return []
        path = Path(out_dir) / "fixed_programs.add.xml"
        write_programs_file(path, {tls: self.plans[tls] for tls in changed}, changed, self.timing.yellow_time,
                            program_type="static", program_id="fixed")
        return [path]

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return self.initial_durations()

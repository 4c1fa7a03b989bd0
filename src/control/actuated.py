"""SUMO's own gap-based actuated control on the same phases as every other controller."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List
from xml.sax.saxutils import quoteattr

import numpy as np

from src.control.base import CycleMeasurement, SignalController

#: Longest green an actuated phase may extend to, as a multiple of its equal-split green.
MAX_GREEN_FACTOR = 2.5


class ActuatedController(SignalController):
    """Loads a `type="actuated"` program per junction (SUMO adds the induction loops);
    SUMO extends each green between `min_green` and a maximum while vehicles keep arriving."""

    name = "actuated"
    adaptive = False

    def additional_files(self, out_dir: Path) -> List[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "actuated_programs.add.xml"
        lines = ["<additional>"]
        for tls_id, plan in sorted(self.plans.items()):
            equal = self.initial_durations()[tls_id]
            lines.append(f'    <tlLogic id={quoteattr(tls_id)} type="actuated" programID="actuated" offset="0">')
            for green, g_state, y_state in zip(equal, plan.green_states, plan.yellow_states):
                max_green = max(float(green) * MAX_GREEN_FACTOR, self.timing.min_green + 1)
                lines.append(
                    f'        <phase duration="{float(green):g}" minDur="{self.timing.min_green:g}" '
                    f'maxDur="{max_green:g}" state="{g_state}"/>'
                )
                lines.append(f'        <phase duration="{self.timing.yellow_time:g}" state="{y_state}"/>')
            lines.append("    </tlLogic>")
        lines.append("</additional>")
        path.write_text("\n".join(lines) + "\n")
        return [path]

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return self.initial_durations()

"""Signal programs as SUMO additional files: one writer for the controllers that hand a whole
program to SUMO (fixed on kept programs, actuated) instead of driving it step by step."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple
from xml.sax.saxutils import quoteattr

from src.network.phases import PhasePlan

#: (minDur, maxDur) of each green of one signal.
GreenBounds = Sequence[Tuple[float, float]]


def write_programs_file(
    path: Path,
    plans: Mapping[str, PhasePlan],
    durations: Mapping[str, Sequence[float]],
    yellow_time: float,
    program_type: str,
    program_id: str,
    bounds: Optional[Mapping[str, GreenBounds]] = None,
) -> Path:
    """A tlLogic per signal: its greens with `durations`, each followed by the plan's transition.

    SUMO switches a signal to the last program loaded for it, so loading the file is enough.
    """
    lines = ["<additional>"]
    for tls_id in sorted(durations):
        plan = plans[tls_id]
        lines.append(f'    <tlLogic id={quoteattr(tls_id)} type="{program_type}" programID="{program_id}" offset="0">')
        for i, green in enumerate(durations[tls_id]):
            extra = ""
            if bounds is not None:
                low, high = bounds[tls_id][i]
                extra = f' minDur="{low:g}" maxDur="{high:g}"'
            lines.append(f'        <phase duration="{float(green):g}"{extra} state="{plan.green_states[i]}"/>')
            for d, state in plan.transition(i, yellow_time):
                lines.append(f'        <phase duration="{d:g}" state="{state}"/>')
        lines.append("    </tlLogic>")
    lines.append("</additional>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path

"""Signal phase plans as the controllers see them.

Every signal program the project writes alternates green and yellow phases:
G0, y0, G1, y1, ... A `PhasePlan` gives the green states in cycle order, the yellow state
that follows each, and the links (incoming lane, outgoing lane, link index) of the signal,
so a controller can tell which lanes each phase serves.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple


@dataclass
class PhasePlan:
    tls_id: str
    green_states: List[str]
    yellow_states: List[str]
    links: List[Tuple[str, str, int]] = field(default_factory=list)
    #: The program's own duration of each green [s] (empty when the plan was built by hand).
    green_durations: List[float] = field(default_factory=list)

    @property
    def num_phases(self) -> int:
        return len(self.green_states)

    def served_links(self, phase: int) -> List[Tuple[str, str]]:
        """(incoming lane, outgoing lane) pairs that have green ('G' or 'g') in `phase`."""
        state = self.green_states[phase]
        return [(i, o) for i, o, idx in self.links if state[idx] in "Gg"]

    def served_incoming_lanes(self, phase: int) -> List[str]:
        return sorted({i for i, _ in self.served_links(phase)})


def read_phase_plans(net_file: Path) -> Dict[str, PhasePlan]:
    """Read the green/yellow plans of every signal in a network written by `build_network`.

    One streaming pass (no sumolib network object), so every environment can afford it.
    A phase with a 'y' is yellow and belongs to the green before it; any other phase is a
    green. A green not followed by a yellow (a single-phase program) gets itself as its
    yellow state, so `green_states` and `yellow_states` always have equal length. Of several
    programs of one signal, programID "0" (else the first) is read. Each green keeps the
    program's duration (`green_durations`), where a controller may start from.
    """
    phases: Dict[str, List[Tuple[str, float]]] = {}
    program_of: Dict[str, str] = {}
    links: Dict[str, List[Tuple[str, str, int]]] = {}
    current: Optional[str] = None
    for event, elem in ET.iterparse(str(net_file), events=("start", "end")):
        tag = elem.tag
        if event == "start":
            if tag == "tlLogic":
                tl, pid = elem.attrib["id"], elem.attrib.get("programID", "0")
                if tl not in program_of or (pid == "0" and program_of[tl] != "0"):
                    program_of[tl] = pid
                    phases[tl] = []
                    current = tl
                else:
                    current = None
            continue
        if tag == "phase":
            if current is not None:
                phases[current].append((elem.attrib["state"], float(elem.attrib.get("duration", 0.0))))
        elif tag == "tlLogic":
            current = None
            elem.clear()
        elif tag == "connection":
            a = elem.attrib
            tl = a.get("tl")
            if tl is not None and "linkIndex" in a and not a["from"].startswith(":"):
                links.setdefault(tl, []).append(
                    (f"{a['from']}_{a['fromLane']}", f"{a['to']}_{a['toLane']}", int(a["linkIndex"]))
                )
            elem.clear()
        elif tag in ("edge", "junction"):
            elem.clear()
    plans: Dict[str, PhasePlan] = {}
    for tl in sorted(phases):
        greens: List[str] = []
        yellows: List[Optional[str]] = []
        durations: List[float] = []
        for state, duration in phases[tl]:
            if "y" in state:
                if greens and yellows[-1] is None:
                    yellows[-1] = state
            else:
                greens.append(state)
                yellows.append(None)
                durations.append(duration)
        plans[tl] = PhasePlan(
            tls_id=tl,
            green_states=greens,
            yellow_states=[y if y is not None else g for g, y in zip(greens, yellows)],
            links=sorted(links.get(tl, []), key=lambda link: link[2]),
            green_durations=durations,
        )
    return plans

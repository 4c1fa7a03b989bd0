"""Signal phase plans as the controllers see them.

A signal program is a ring of green phases, each followed by its transition: the yellow
and all-red phases up to the next green (none in programs without yellow). A `PhasePlan`
gives the green states in ring order, their transitions and their own durations, and the
links (incoming lane, outgoing lane, link index) of the signal, so a controller can tell
which lanes each phase serves and can keep a network's own program as it was written.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

GREEN_CHARS = "Gg"
Transition = List[Tuple[float, str]]  # (duration s, state) of each phase between two greens


def is_green_phase(state: str) -> bool:
    """A phase that lets some link go and shows no yellow; yellow and all-red phases are transitions."""
    return any(c in GREEN_CHARS for c in state) and not any(c in "yY" for c in state)


def yellow_between(green: str, following: str) -> str:
    """Yellow state from `green` to `following`: links that lose green go yellow, links keeping it stay."""
    return "".join(
        (c if n in GREEN_CHARS else "y") if c in GREEN_CHARS else "r" for c, n in zip(green, following)
    )


@dataclass
class PhasePlan:
    """The phases of one signal. `transitions[i]` follow green i (the program's own yellow and
    all-red phases); `green_durations`, `min_durations`, `max_durations` are the program's
    (None where it gives none). Built by hand (tests) without them, a plan's transition is
    one yellow of the controller's yellow time (see `transition`)."""

    tls_id: str
    green_states: List[str]
    yellow_states: List[str]
    links: List[Tuple[str, str, int]] = field(default_factory=list)
    transitions: Optional[List[Transition]] = None
    green_durations: Optional[List[float]] = None
    min_durations: Optional[List[Optional[float]]] = None
    max_durations: Optional[List[Optional[float]]] = None
    program_type: str = "static"

    @property
    def num_phases(self) -> int:
        return len(self.green_states)

    def served_links(self, phase: int) -> List[Tuple[str, str]]:
        """(incoming lane, outgoing lane) pairs that have green ('G' or 'g') in `phase`."""
        state = self.green_states[phase]
        return [(i, o) for i, o, idx in self.links if state[idx] in GREEN_CHARS]

    def served_incoming_lanes(self, phase: int) -> List[str]:
        return sorted({i for i, _ in self.served_links(phase)})

    def transition(self, phase: int, yellow_time: float, following: Optional[int] = None) -> Transition:
        """Phases between green `phase` and green `following` (default: the next in the ring).

        The program's own transition, with each yellow state recomputed for the green that
        really follows (a controller may skip phases); a hand-built plan without transitions
        gets one yellow of `yellow_time`. Zero-length phases are left out.
        """
        nxt = (phase + 1) % self.num_phases if following is None else following
        if self.transitions is None:
            own = [(float(yellow_time), self.yellow_states[phase])] if self.num_phases > 1 else []
        else:
            own = self.transitions[phase]
        if following is None or following == (phase + 1) % self.num_phases:
            return [(d, s) for d, s in own if d > 0]
        green, target = self.green_states[phase], self.green_states[nxt]
        return [(d, yellow_between(green, target) if "y" in s else s) for d, s in own if d > 0]

    def transition_time(self, phase: int, yellow_time: float) -> float:
        """Seconds of transition after green `phase` in ring order."""
        return sum(d for d, _ in self.transition(phase, yellow_time))

    @property
    def cycle_s(self) -> Optional[float]:
        """The program's own cycle length (None for a hand-built plan)."""
        if self.green_durations is None or self.transitions is None:
            return None
        return float(sum(self.green_durations) + sum(d for t in self.transitions for d, _ in t))


def _optional_float(text: Optional[str]) -> Optional[float]:
    return float(text) if text is not None else None


def _plan_from_phases(tl: str, phases: List[Dict[str, str]], program_type: str,
                      links: List[Tuple[str, str, int]]) -> PhasePlan:
    """Group a program's phases into greens and the transitions after each (a ring:
    transitions before the first green belong to the last)."""
    greens = [k for k, ph in enumerate(phases) if is_green_phase(ph["state"])]
    if not greens:  # nothing ever gets green: treat every phase as a green of its own
        greens = list(range(len(phases)))
    transitions: List[Transition] = []
    for n, k in enumerate(greens):
        stop = greens[n + 1] if n + 1 < len(greens) else len(phases) + greens[0]
        transitions.append([(float(phases[j % len(phases)]["duration"]), phases[j % len(phases)]["state"])
                            for j in range(k + 1, stop)])
    states = [phases[k]["state"] for k in greens]
    yellows = [next((s for _, s in t if "y" in s), g) for g, t in zip(states, transitions)]
    return PhasePlan(
        tls_id=tl,
        green_states=states,
        yellow_states=yellows,
        links=sorted(links, key=lambda link: link[2]),
        transitions=transitions,
        green_durations=[float(phases[k]["duration"]) for k in greens],
        min_durations=[_optional_float(phases[k].get("minDur")) for k in greens],
        max_durations=[_optional_float(phases[k].get("maxDur")) for k in greens],
        program_type=program_type,
    )


def read_phase_plans(net_file: Path) -> Dict[str, PhasePlan]:
    """Read the phase plan of every signal of a net file (its own programs or the builder's).

    One streaming pass (no sumolib network object), so every environment can afford it.
    A phase with green and no yellow is a green phase; the yellow and all-red phases after
    it are its transition. `yellow_states[i]` is the first yellow state after green i (the
    green itself when there is none), so `green_states` and `yellow_states` always have
    equal length. Of several programs of one signal, programID "0" (else the first) is read.
    """
    phases: Dict[str, List[Dict[str, str]]] = {}
    program_of: Dict[str, str] = {}
    type_of: Dict[str, str] = {}
    links: Dict[str, List[Tuple[str, str, int]]] = {}
    current: Optional[str] = None
    for event, elem in ET.iterparse(str(net_file), events=("start", "end")):
        tag = elem.tag
        if event == "start":
            if tag == "tlLogic":
                tl, pid = elem.attrib["id"], elem.attrib.get("programID", "0")
                if tl not in program_of or (pid == "0" and program_of[tl] != "0"):
                    program_of[tl] = pid
                    type_of[tl] = elem.attrib.get("type", "static")
                    phases[tl] = []
                    current = tl
                else:
                    current = None
            continue
        if tag == "phase":
            if current is not None:
                phases[current].append(dict(elem.attrib))
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
    return {tl: _plan_from_phases(tl, phases[tl], type_of[tl], links.get(tl, [])) for tl in sorted(phases) if phases[tl]}

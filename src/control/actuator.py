"""The one actuator every controller drives.

A decision is, for each signalised junction, the green duration of each of its phases for
the next cycle. Phases keep their fixed order, each green is followed by its program's
transition (yellow, all-red; none where the program has none), every green lasts at least
`min_green`, and the cycle length stays constant, so controllers are compared on their
decisions only. `CycleTiming.yellow_time` is the transition time per green phase: the
`--yellow-time` of generated programs, the program's own for kept ones (`plan_timing`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from src.network.phases import PhasePlan
from src.params import DEFAULT_CYCLE_LENGTH, ParameterError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleTiming:
    cycle_length: float = 90.0
    yellow_time: float = 3.0
    min_green: float = 5.0

    def green_budget(self, num_phases: int) -> float:
        """Seconds of green a junction with `num_phases` phases shares in one cycle."""
        return self.cycle_length - num_phases * self.yellow_time

    def check(self, max_phases: int) -> None:
        """Raise ParameterError when the network's busiest junction cannot fit in the cycle."""
        if self.green_budget(max_phases) < max_phases * self.min_green:
            needed = max_phases * (self.yellow_time + self.min_green)
            raise ParameterError(
                f"--cycle-length: invalid value {self.cycle_length:g}; this network has junctions with "
                f"{max_phases} phases, which need at least {needed:g} s with {self.yellow_time:g} s yellow "
                f"and {self.min_green:g} s minimum green"
            )


def check_cycle_fits(plans: Mapping[str, PhasePlan], timing: CycleTiming) -> None:
    """Every junction's phases, yellows and minimum greens fit in the cycle (ParameterError if not)."""
    if plans:
        timing.check(max(p.num_phases for p in plans.values()))


def proportions_to_durations(proportions: Sequence[float], timing: CycleTiming) -> np.ndarray:
    """Turn per-phase shares of a cycle into green durations (whole seconds).

    Each phase first gets the minimum green; the rest of the green budget is shared in
    proportion to `proportions`. Rounding keeps the sum equal to the budget.
    """
    shares = np.clip(np.asarray(proportions, dtype=float), 0.0, None)
    n = len(shares)
    if n == 0:
        return np.zeros(0)
    total = shares.sum()
    shares = shares / total if total > 0 and np.isfinite(total) else np.full(n, 1.0 / n)
    budget = timing.green_budget(n)
    spare = max(budget - n * timing.min_green, 0.0)
    raw = timing.min_green + spare * shares
    durations = np.floor(raw)
    remainder = int(round(budget - durations.sum()))
    if remainder > 0:  # largest remainders get the leftover seconds
        order = np.argsort(-(raw - durations), kind="stable")
        durations[order[:remainder]] += 1
    return durations


def softmax(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    x = x - x.max()
    e = np.exp(x)
    return e / e.sum()


def equal_durations(num_phases: int, timing: CycleTiming) -> np.ndarray:
    return proportions_to_durations(np.ones(num_phases), timing)


def _common(values: Sequence[float], what: str) -> Optional[float]:
    """The value all junctions share; the largest (with a warning) when they differ."""
    distinct = sorted({round(float(v), 6) for v in values})
    if len(distinct) > 1:
        logger.warning("signal programs differ in %s (%s); cycle-based controllers use %g s",
                       what, ", ".join(f"{v:g}" for v in distinct), distinct[-1])
    return distinct[-1] if distinct else None


def plan_timing(plans: Mapping[str, PhasePlan], cycle_length: Optional[float], yellow_time: float,
                min_green: float) -> CycleTiming:
    """The cycle the controllers work in: the programs' transitions and (unless given) their cycle.

    Generated programs were built with `yellow_time` and the cycle length, so nothing
    changes for them; kept programs bring their own (the Tree Method study's have no yellow
    and a 90 s cycle).
    """
    ring = [p for p in plans.values() if p.num_phases > 1 and p.transitions is not None]
    per_phase = _common([sum(p.transition_time(i, yellow_time) for i in range(p.num_phases)) / p.num_phases
                         for p in ring], "transition time per phase")
    cycle = cycle_length
    if cycle is None:
        cycle = _common([p.cycle_s for p in ring if p.cycle_s], "cycle length") or DEFAULT_CYCLE_LENGTH
    return CycleTiming(float(cycle), float(yellow_time if per_phase is None else per_phase), float(min_green))


def program_durations(plan: PhasePlan, timing: CycleTiming) -> np.ndarray:
    """The program's own green durations where they fill this cycle, else scaled to fill it.

    Controllers start from what the network's engineers (or the builder) wrote.
    """
    n = plan.num_phases
    if plan.green_durations is None:
        return equal_durations(n, timing)
    own = np.asarray(plan.green_durations, dtype=float)
    budget = timing.green_budget(n)
    if abs(own.sum() - budget) < 1e-6 and (own >= timing.min_green - 1e-9).all():
        return own
    scaled = own * budget / own.sum() if own.sum() > 0 else np.full(n, budget / n)
    return proportions_to_durations(np.clip(scaled - timing.min_green, 0.0, None), timing)


class SignalActuator:
    """Writes green durations into the running simulation, once per junction per cycle."""

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming) -> None:
        self.plans = dict(plans)
        self.timing = timing
        check_cycle_fits(plans, timing)

    def apply(self, api, durations: Mapping[str, Sequence[float]]) -> None:
        """Install one cycle of G0,T0,G1,T1,... (T: the transition) per junction, start at phase 0."""
        tl = api.trafficlight
        for tls_id, greens in durations.items():
            plan = self.plans[tls_id]
            if len(greens) != plan.num_phases:
                raise ValueError(f"{tls_id}: {len(greens)} durations for {plan.num_phases} phases")
            greens = self._fill_cycle(plan, greens)
            phases = []
            for i, green in enumerate(greens):
                phases.append(tl.Phase(float(green), plan.green_states[i], float(green), float(green)))
                phases += [tl.Phase(d, state, d, d) for d, state in plan.transition(i, self.timing.yellow_time)]
            logic = tl.Logic("cycle", 0, 0, phases)
            tl.setProgramLogic(tls_id, logic)
            tl.setPhase(tls_id, 0)

    def _fill_cycle(self, plan: PhasePlan, greens: Sequence[float]) -> np.ndarray:
        """`greens` lengthened in proportion where the program's own transitions are shorter than
        the common one (`plan_timing` takes the longest), so every junction's cycle lasts the
        cycle and each cycle starts with its first green."""
        greens = np.asarray(greens, dtype=float)
        own = sum(plan.transition_time(i, self.timing.yellow_time) for i in range(plan.num_phases))
        spare = self.timing.cycle_length - own - greens.sum()
        if spare < 1 or greens.sum() <= 0:
            return greens
        raw = greens + spare * greens / greens.sum()
        out = np.floor(raw + 1e-9)
        left = int(round(self.timing.cycle_length - own - out.sum()))
        out[np.argsort(-(raw - out), kind="stable")[:max(left, 0)]] += 1
        return out

    def durations_from_proportions(self, proportions: Mapping[str, Sequence[float]]) -> Dict[str, np.ndarray]:
        return {tls: proportions_to_durations(p, self.timing) for tls, p in proportions.items()}


#: How long a held green lasts in the installed program: until the controller switches away.
HOLD_S = 1e6


@dataclass(frozen=True)
class SelectProgram:
    """One junction's program for acyclic control, installed once per run: every green (held),
    then the transition of every ordered pair of greens, whose last step leads (`next`) into
    the green it serves. A switch is then one `setPhase`, with nothing for SUMO to re-parse."""

    #: (duration, state, next phase indices) of every program step.
    steps: tuple
    #: (from green, to green) -> (index of the transition's first step, its seconds); index
    #: None when the program has no transition between the two (the green follows at once).
    transitions: Dict[tuple, tuple]

    @classmethod
    def of(cls, plan: PhasePlan, yellow_time: float) -> "SelectProgram":
        n = plan.num_phases
        steps: list = [None] * n
        transitions: Dict[tuple, tuple] = {}
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                transition = plan.transition(i, yellow_time, following=j)
                if not transition:
                    transitions[i, j] = (None, 0.0)
                    continue
                transitions[i, j] = (len(steps), sum(d for d, _ in transition))
                for k, (duration, state) in enumerate(transition):
                    steps.append((float(duration), state, (j,) if k == len(transition) - 1 else ()))
        for i in range(n):
            # a held green never ends; its successor only tells SUMO which transition leaves it,
            # so the program check finds every green followed by its yellow
            first, _ = transitions.get((i, (i + 1) % n), (None, 0.0))
            steps[i] = (HOLD_S, plan.green_states[i], (first if first is not None else (i + 1) % n,) if n > 1 else ())
        return cls(tuple(steps), transitions)

    def install(self, tl, tls: str) -> None:
        phases = [tl.Phase(d, state, d, d, list(nxt)) for d, state, nxt in self.steps]
        tl.setProgramLogic(tls, tl.Logic("select", 0, 0, phases))


class PhaseActuator:
    """Acyclic control (`phase_select`): each junction holds one green until a controller picks
    another. Every switch runs the program's transition from the current green to the chosen
    one (its yellow recomputed for that pair, its all-red as written; none where the program
    has none), and a green may only be left after `min_green` seconds, so the timing rules
    live here and any controller (max-pressure, later RL) just names phases."""

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming) -> None:
        self.plans = dict(plans)
        self.timing = timing
        self.programs = {tls: SelectProgram.of(plan, timing.yellow_time) for tls, plan in self.plans.items()}
        self.current: Dict[str, int] = {}
        self.green_since: Dict[str, float] = {}
        self.switches = 0

    def start(self, api, now: float) -> None:
        """Install every junction's program once; each starts in its first green."""
        tl = api.trafficlight
        for tls, program in self.programs.items():
            self.current[tls] = 0
            self.green_since[tls] = now
            program.install(tl, tls)
            tl.setPhase(tls, 0)

    def ready(self, now: float) -> list:
        """Junctions whose green has lasted `min_green`: they may switch now."""
        return [tls for tls, since in self.green_since.items() if now - since >= self.timing.min_green - 1e-9]

    def switch(self, api, tls: str, phase: int, now: float) -> None:
        """Keep the green (same phase) or run the transition into green `phase`."""
        current = self.current[tls]
        if phase == current:
            return
        first, seconds = self.programs[tls].transitions[current, phase]
        api.trafficlight.setPhase(tls, phase if first is None else first)
        self.current[tls] = phase
        self.green_since[tls] = now + seconds
        self.switches += 1

"""The one actuator every controller drives.

A decision is, for each signalised junction, the green duration of each of its phases for
the next cycle. Phases keep their fixed order, a yellow phase follows every green, every
green lasts at least `min_green`, and the cycle length stays constant, so controllers are
compared on their decisions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Sequence

import numpy as np

from src.network.phases import PhasePlan
from src.params import ParameterError


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


class SignalActuator:
    """Writes green durations into the running simulation, once per junction per cycle."""

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming) -> None:
        self.plans = dict(plans)
        self.timing = timing
        check_cycle_fits(plans, timing)

    def apply(self, api, durations: Mapping[str, Sequence[float]]) -> None:
        """Install one cycle of G0,y0,G1,y1,... for each junction and start it at phase 0."""
        tl = api.trafficlight
        for tls_id, greens in durations.items():
            plan = self.plans[tls_id]
            if len(greens) != plan.num_phases:
                raise ValueError(f"{tls_id}: {len(greens)} durations for {plan.num_phases} phases")
            phases = []
            for green, g_state, y_state in zip(greens, plan.green_states, plan.yellow_states):
                phases.append(tl.Phase(float(green), g_state, float(green), float(green)))
                phases.append(tl.Phase(self.timing.yellow_time, y_state, self.timing.yellow_time, self.timing.yellow_time))
            logic = tl.Logic("cycle", 0, 0, phases)
            tl.setProgramLogic(tls_id, logic)
            tl.setPhase(tls_id, 0)

    def durations_from_proportions(self, proportions: Mapping[str, Sequence[float]]) -> Dict[str, np.ndarray]:
        return {tls: proportions_to_durations(p, self.timing) for tls, p in proportions.items()}

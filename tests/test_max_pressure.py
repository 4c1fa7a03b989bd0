"""Standard (acyclic) max-pressure: the phase choice on a hand-made junction state, the timing
rules of `PhaseActuator` (minimum green, a yellow on every switch), and in real SUMO on a small
grid against fixed time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import List, Tuple

import numpy as np
import pytest

from src.control import CycleTiming, LaneInfo, PhaseActuator
from src.control.max_pressure import MaxPressureController, max_pressure_phase
from src.network.phases import PhasePlan

# One junction, three phases over four movements: a->x (phase 0), b->y (phase 1), c->x and
# d->z (phase 2). Queues below give pressures 0: 6-1=5, 1: 4-0=4, 2: (3-1)+(5-0)=7.
LANES = ["a", "b", "c", "d", "x", "y", "z"]
QUEUES = {"a": 6, "b": 4, "c": 3, "d": 5, "x": 1, "y": 0, "z": 0}
LINKS = [("a", "x", 0), ("b", "y", 1), ("c", "x", 2), ("d", "z", 3)]
GREENS = ["Grrr", "rGrr", "rrGG"]
TIMING = CycleTiming(cycle_length=90, yellow_time=3, min_green=5)


def _plan() -> PhasePlan:
    return PhasePlan("J", GREENS, ["yrrr", "ryrr", "rryy"], LINKS)


def _lanes() -> LaneInfo:
    return LaneInfo(LANES, np.full(len(LANES), 100.0), np.full(len(LANES), 13.9), {l: k for k, l in enumerate(LANES)})


def _queues() -> np.ndarray:
    return np.array([QUEUES[l] for l in LANES], dtype=float)


def test_picks_the_phase_of_maximal_pressure():
    controller = MaxPressureController({"J": _plan()}, TIMING)
    assert controller.select(_queues(), _lanes(), {"J": 0}, ["J"]) == {"J": 2}
    # the current phase wins a tie; a junction not ready is not decided
    assert max_pressure_phase(np.array([7.0, 4.0, 7.0]), current=2) == 2
    assert max_pressure_phase(np.array([7.0, 4.0, 7.0]), current=1) == 0
    assert controller.select(_queues(), _lanes(), {"J": 0}, []) == {}


class _FakeTrafficLight:
    """Keeps the program installed and the phase set, and plays them as SUMO's static logic
    does: a step lasts its duration, then goes to its `next` step (else the following one)."""

    Phase = staticmethod(lambda duration, state, min_dur, max_dur, nxt=(): (float(duration), state, tuple(nxt)))
    Logic = staticmethod(lambda program_id, kind, index, phases: list(phases))

    def __init__(self) -> None:
        self.installed: List[List[Tuple[float, str, tuple]]] = []
        self.phase_set: List[int] = []

    def setProgramLogic(self, tls, logic) -> None:  # noqa: N802 - the TraCI name
        self.installed.append(logic)

    def setPhase(self, tls, index) -> None:  # noqa: N802
        self.phase_set.append(index)

    def played(self) -> List[Tuple[float, str]]:
        """The steps SUMO runs from the last phase set up to the green it holds."""
        program, index, run = self.installed[-1], self.phase_set[-1], []
        while True:
            duration, state, nxt = program[index]
            run.append((duration, state))
            if duration >= 1e6:
                return run
            index = nxt[0] if nxt else index + 1


def test_actuator_respects_min_green_and_inserts_yellow():
    api = SimpleNamespace(trafficlight=_FakeTrafficLight())
    actuator = PhaseActuator({"J": _plan()}, TIMING)
    actuator.start(api, now=0.0)
    assert api.trafficlight.played() == [(1e6, "Grrr")]
    # the program holds every green, so SUMO sees every link served; it is installed once
    assert {state for d, state, _ in api.trafficlight.installed[-1] if d >= 1e6} == {"Grrr", "rGrr", "rrGG"}
    assert actuator.ready(4.0) == [] and actuator.ready(5.0) == ["J"]  # minimum green 5 s
    actuator.switch(api, "J", 2, now=5.0)
    assert api.trafficlight.played() == [(3.0, "yrrr"), (1e6, "rrGG")]  # the links losing green go yellow
    assert actuator.ready(12.0) == [] and actuator.ready(13.0) == ["J"]  # 3 s yellow + 5 s green
    actuator.switch(api, "J", 2, now=13.0)  # keeping the phase sets nothing
    assert len(api.trafficlight.phase_set) == 2
    actuator.switch(api, "J", 1, now=13.0)  # a skip in the ring: yellow for this pair of greens
    assert api.trafficlight.played() == [(3.0, "rryy"), (1e6, "rGrr")]
    assert len(api.trafficlight.installed) == 1


def test_no_yellow_where_the_program_has_none():
    plan = PhasePlan("J", GREENS, GREENS, LINKS, transitions=[[], [], []], green_durations=[30, 30, 30])
    api = SimpleNamespace(trafficlight=_FakeTrafficLight())
    actuator = PhaseActuator({"J": plan}, CycleTiming(90, 0, 10))
    actuator.start(api, 0.0)
    actuator.switch(api, "J", 1, now=10.0)
    assert api.trafficlight.played() == [(1e6, "rGrr")]
    assert actuator.green_since["J"] == 10.0


@pytest.mark.parametrize("vehicles", [900])
def test_beats_fixed_time_on_delay_on_a_small_grid(tmp_path, vehicles):
    from src.argv import parse_simulation_params
    from src.orchestration.simulation import run_simulation

    base = ("--network-seed 3 --grid_dimension 3 --block_size_m 150 --lane_count 2 --signal-programs opposites "
            f"--num_vehicles {vehicles} --end-time 900 --private-traffic-seed 5 --cycle-length 60 --yellow-time 3")
    delay = {}
    for controller in ("fixed", "max_pressure"):
        params = parse_simulation_params(f"{base} --traffic_control {controller} --output-dir {tmp_path / controller}")
        delay[controller] = run_simulation(params, progress=False, network_dir=tmp_path / "network").metrics["mean_time_loss_all"]
    assert delay["max_pressure"] < 0.9 * delay["fixed"]

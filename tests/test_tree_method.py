"""Tree Method controller: each rule of the authors' reference implementation on a small
hand-made case worked out by hand, and real SUMO runs (the tiny network fixture, a street
through an unsignalised junction, a netgenerate grid, the project's runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

from src.control import CycleTiming, create_controller
from src.control.base import CycleMeasurement, LaneInfo
from src.control.tree_method import (
    MIN_PHASE_S,
    TreeMethodController,
    Topology,
    baby_step,
    density_from_speed,
    fit_to_budget,
    link_cost_veh_min,
    link_of_edge,
    speed_at_density_kmh,
    speed_at_max_flow_kmh,
    step_for_cost,
)
from src.network.phases import PhasePlan
from src.sumo_integration.tools import run_tool

STUDY = CycleTiming(cycle_length=90.0, yellow_time=0.0, min_green=5.0)  # the study: 90 s, no yellow
VF = 50.0 / 3.6  # speed limit of every hand-built lane: 50 km/h [m/s]
LENGTH = 200.0  # [m]
KMH = 1.0 / 3.6  # m/s per km/h


# --- hand-built networks ------------------------------------------------------------------


def make_plan(tls: str, phases: Sequence[Sequence[Tuple[str, str]]], durations: Sequence[float] = ()) -> PhasePlan:
    """A plan whose phase p gives green ('G') to exactly the (in, out) links listed for it."""
    links: List[Tuple[str, str]] = []
    for served in phases:
        for link in served:
            if link not in links:
                links.append(link)
    greens = ["".join("G" if l in served else "r" for l in links) for served in phases]
    yellows = [s.replace("G", "y") for s in greens]
    return PhasePlan(tls, greens, yellows, [(i, o, k) for k, (i, o) in enumerate(links)],
                     green_durations=list(durations) or None)


def lane_info(lane_ids: Sequence[str], lengths: Dict[str, float] = {}) -> LaneInfo:
    lanes = sorted(set(lane_ids))
    return LaneInfo(lanes, np.array([lengths.get(l, LENGTH) for l in lanes]), np.full(len(lanes), VF),
                    {l: k for k, l in enumerate(lanes)})


def plan_lanes(plans: Dict[str, PhasePlan]) -> List[str]:
    return [lane for p in plans.values() for i, o, _ in p.links for lane in (i, o)]


def measurement(lanes: LaneInfo, traffic: Dict[str, Tuple[float, float]], last: Dict[str, Sequence[float]],
                interval: float = 90.0) -> CycleMeasurement:
    """traffic: lane -> (mean vehicles, mean speed m/s); other lanes empty at the speed limit."""
    n = len(lanes.lane_ids)
    veh, speed = np.zeros(n), lanes.speed_limits.copy()
    for lane, (count, v) in traffic.items():
        veh[lanes.index[lane]], speed[lanes.index[lane]] = count, v
    return CycleMeasurement(
        time=900.0, cycle_length=interval, lanes=lanes, mean_vehicles=veh, mean_halting=np.zeros(n),
        mean_speed=speed, last_vehicles=veh.copy(), last_halting=np.zeros(n), entered=veh.copy(),
        arrived=0, running=int(veh.sum()),
        last_durations={k: np.asarray(v, dtype=float) for k, v in last.items()},
    )


def cross_and_feeder() -> Dict[str, PhasePlan]:
    """Junction C: four one-lane approaches, phase 0 = N-S, phase 1 = E-W.
    Junction N (north of C): A2N feeds N2C (phase 0 of N), B2N crosses to N2D (phase 1)."""
    c = make_plan("C", [[("N2C_0", "C2S_0"), ("S2C_0", "C2N_0")],
                        [("E2C_0", "C2W_0"), ("W2C_0", "C2E_0")]])
    n = make_plan("N", [[("A2N_0", "N2C_0")], [("B2N_0", "N2D_0")]])
    return {"C": c, "N": n}


# --- 1. the fundamental diagram and the congestion test -------------------------------------


def test_speed_of_maximum_flow_on_whole_densities():
    # u(k) = round(50 (1 - (k/150)^1.8)^5) km/h near the peak, q = u k:
    #   k=40: 31 -> 1240, k=41: 30 -> 1230, k=42: 29 -> 1218, k=43: 29 -> 1247,
    #   k=44: 28 -> 1232, k=46: 27 -> 1242 (rounding makes q bumpy); the largest is k=43, u=29
    for k, u in [(40, 31), (41, 30), (42, 29), (43, 29), (44, 28), (46, 27)]:
        assert speed_at_density_kmh(k, 50.0) == u
    assert speed_at_max_flow_kmh(50.0) == 29
    assert speed_at_density_kmh(0, 50.0) == 50 and speed_at_density_kmh(150, 50.0) == 3  # floor 3 km/h
    # density from speed, the authors' formula 150 ((1 - v/u_f)^0.2)^(1/1.8):
    #   v = 3:  0.94^0.2 = 0.98770, ^(1/1.8) = 0.99315 -> 148.97 -> 149
    #   v = 10: 0.80^0.2 = 0.95635, ^(1/1.8) = 0.97551 -> 146.33 -> 146
    assert density_from_speed(3, 50.0) == 149 and density_from_speed(10, 50.0) == 146
    assert density_from_speed(50, 50.0) == 0


def test_loaded_exactly_below_q_max_u():
    plans = cross_and_feeder()
    lanes = lane_info(plan_lanes(plans))
    last = {"C": [45, 45], "N": [45, 45]}
    ctrl = TreeMethodController(plans, STUDY)
    # measured speeds are whole km/h: 28.6 -> 29 = q_max_u is not loaded, 28.4 -> 28 is
    for kmh, loaded in [(29.0, False), (28.6, False), (28.4, True), (28.0, True), (40.0, False)]:
        ctrl.decide(measurement(lanes, {"N2C_0": (10, kmh * KMH)}, last))
        assert ctrl.last_state.is_loaded("N2C") is loaded, kmh
    # the named variant: speed_factor 1.2 moves the threshold to 34.8 km/h
    loose = create_controller("tree_method", plans, STUDY, speed_factor=1.2, unrelated_option=3)
    loose.decide(measurement(lanes, {"N2C_0": (10, 34.0 * KMH)}, last))
    assert loose.last_state.is_loaded("N2C")


# --- 2. the cost ---------------------------------------------------------------------------


def test_cost_from_the_fundamental_diagram_with_3_kmh_floor_in_vehicle_minutes():
    # standing queue: v = 0 -> floor 3 km/h, k = 149, one lane, 200 m, interval 90 s
    #   flow = 3 * 149 * 1 * 90 / 3600 = 11.175 veh
    #   driven in 90 s: at 3 km/h 75 m; at q_max_u = 29 km/h 725 m, capped at the link: 200 m
    #   loss = (0.075 km / 3 - 0.200 km / 29) h * 60 = (0.025 - 0.0068966) * 60 = 1.08621 min
    #   cost = round(11.175 * 1.08621) = round(12.138) = 12 veh*min
    assert link_cost_veh_min(3, 50.0, 200.0, 1, 90.0) == 12
    # 10 km/h, two lanes, 500 m: flow = 10 * 146 * 2 * 90 / 3600 = 73 veh
    #   driven: 250 m at 10 km/h, 500 m (capped) at 29 km/h
    #   loss = (0.25 / 10 - 0.5 / 29) * 60 = (0.025 - 0.0172414) * 60 = 0.465517 min
    #   cost = round(73 * 0.465517) = round(33.98) = 34 veh*min
    assert link_cost_veh_min(10, 50.0, 500.0, 2, 90.0) == 34
    # the same on 1000 m: both speeds drive the whole interval inside the link, nothing lost
    assert link_cost_veh_min(10, 50.0, 1000.0, 2, 90.0) == 0

    plans = cross_and_feeder()
    lanes = lane_info(plan_lanes(plans))
    ctrl = TreeMethodController(plans, STUDY)
    # in the controller: a standing queue on N2C costs 12, the free S2C nothing
    ctrl.decide(measurement(lanes, {"N2C_0": (20, 0.0), "S2C_0": (8, 40 * KMH)}, {"C": [45, 45], "N": [45, 45]}))
    state = ctrl.last_state
    assert state.cost_of("N2C") == 12 and state.cost_of("S2C") == 0
    assert int(state.speed_kmh[state.link_ids.index("N2C")]) == 3


# --- 3. trunks and trees ---------------------------------------------------------------------


def test_trunks_at_signals_and_where_nothing_downstream_is_loaded_including_spillback():
    plans = cross_and_feeder()
    lanes = lane_info(plan_lanes(plans))
    # N2C queues into junction C and its exit C2S is congested too (spillback); A2N feeds N2C.
    # All three stand still: 12 veh*min each (test above).
    traffic = {"N2C_0": (30, 0.0), "A2N_0": (30, 0.0), "C2S_0": (30, 0.0)}
    ctrl = TreeMethodController(plans, STUDY)
    durations = ctrl.decide(measurement(lanes, traffic, {"C": [45, 45], "N": [45, 45]}))
    state = ctrl.last_state
    # trunks: N2C and A2N lead to a signal (whatever is downstream); C2S has nothing loaded
    # downstream. Trees grow upstream through loaded links:
    assert state.trees == {"N2C": ["A2N", "N2C"], "A2N": ["A2N"], "C2S": ["A2N", "C2S", "N2C"]}
    # A2N is in 3 trees (weight round(1/3, 2) = 0.33 -> 3.96 each), N2C in 2 (6 each), C2S in 1
    assert state.tree_cost["C2S"] == pytest.approx(12 + 6 + 3.96)
    assert state.tree_cost["N2C"] == pytest.approx(6 + 3.96)
    assert state.tree_cost["A2N"] == pytest.approx(3.96)
    # N2C's tree goes to the phase serving N2C_0 (phase 0 of C), A2N's to phase 0 of N; C2S
    # leads to no signal: its tree prices nothing. (Before: no trunk at C at all.)
    np.testing.assert_allclose(state.phase_cost["C"], [9.96, 0.0])
    np.testing.assert_allclose(state.phase_cost["N"], [3.96, 0.0])
    # 9.96 < 10 veh*min -> step 2 s: cut to (43, 43), the 4 s freed all go to phase 0 (cost
    # share 1), capped at 45 + 2 = 47 -> (47, 43), nothing left over.
    assert state.step["C"] == 2
    np.testing.assert_array_equal(durations["C"], [47, 43])
    np.testing.assert_array_equal(durations["N"], [47, 43])


def test_link_in_two_trees_shares_its_cost_and_heads_split_by_vehicles():
    # U feeds P and Q at junction J; P ends at JP, Q at JQ, each discharging into a free street.
    plans = {
        "J": make_plan("J", [[("U_0", "P_0")], [("U_0", "Q_0")]]),
        "JP": make_plan("JP", [[("P_0", "P2_0")], [("R_0", "S_0")]]),
        "JQ": make_plan("JQ", [[("Q_0", "Q2_0"), ("Q_1", "Q3_0")], [("T_0", "W_0")]]),
    }
    lanes = lane_info(plan_lanes(plans))
    traffic = {"U_0": (30, 0.0), "P_0": (20, 0.0), "Q_0": (15, 0.0), "Q_1": (5, 0.0)}
    ctrl = TreeMethodController(plans, STUDY)
    ctrl.decide(measurement(lanes, traffic, {t: [45, 45] for t in plans}))
    state = ctrl.last_state
    # U leads to signal J: a trunk itself, and a branch of P's and Q's trees (3 trees: 0.33 each)
    assert state.trees == {"P": ["P", "U"], "Q": ["Q", "U"], "U": ["U"]}
    assert state.tree_cost["P"] == pytest.approx(12 + 3.96)
    # Q has two lanes (a 2-lane link, v = 3 km/h): flow 22.35 veh, cost round(24.28) = 24
    assert state.cost_of("Q") == 24
    assert state.tree_cost["Q"] == pytest.approx(24 + 3.96)
    # U's own tree: its heads U_0 serve both phases of J -> half each
    np.testing.assert_allclose(state.phase_cost["J"], [1.98, 1.98])
    # Q's tree over its head lanes by vehicles 15:5, both served by phase 0 of JQ
    np.testing.assert_allclose(state.phase_cost["JQ"], [27.96, 0.0])


def test_trees_cross_unsignalised_junctions():
    # W2M -> (unsignalised M) -> M2C -> signal C (phase 0: M2C east, phase 1: S2C north).
    plans = {"C": make_plan("C", [[("M2C_0", "C2E_0")], [("S2C_0", "C2N_0")]])}
    roads = Topology({"W2M": ["W2M_0"], "M2C": ["M2C_0"], "S2C": ["S2C_0"], "C2E": ["C2E_0"], "C2N": ["C2N_0"]},
                     {("W2M", "M2C"), ("M2C", "C2E"), ("S2C", "C2N")})
    traffic = {"M2C_0": (30, 0.0), "W2M_0": (30, 0.0)}  # 12 veh*min each
    last = {"C": [45, 45]}

    whole = TreeMethodController(plans, STUDY, topology=roads)
    assert "W2M_0" in whole.extra_lanes()
    lanes = lane_info(whole.extra_lanes())
    whole.decide(measurement(lanes, traffic, last))
    assert whole.last_state.trees == {"M2C": ["M2C", "W2M"]}
    np.testing.assert_allclose(whole.last_state.phase_cost["C"], [24.0, 0.0])

    signals_only = TreeMethodController(plans, STUDY)  # only the signals' own links
    signals_only.decide(measurement(lanes, traffic, last))
    assert signals_only.last_state.trees == {"M2C": ["M2C"]}
    np.testing.assert_allclose(signals_only.last_state.phase_cost["C"], [12.0, 0.0])


def test_study_split_streets_are_one_link():
    edges = {"E1_T", "E1", "E1_H_s", "E1_H_l", "X_T2", "Y_H_r"}
    assert [link_of_edge(e, edges) for e in ("E1_T", "E1", "E1_H_s", "E1_H_l")] == ["E1"] * 4
    assert link_of_edge("Y_H_r", edges) == "Y_H_r"  # no body "Y": a street of its own
    # tail -> body -> two heads at signal J; the body's lanes are measured, the heads split the cost
    plans = {"J": make_plan("J", [[("E1_H_s_0", "F_0")], [("E1_H_l_0", "G_0")]])}
    roads = Topology({"E1_T": ["E1_T_0"], "E1": ["E1_0"], "E1_H_s": ["E1_H_s_0"], "E1_H_l": ["E1_H_l_0"],
                      "F": ["F_0"], "G": ["G_0"]},
                     {("E1_T", "E1"), ("E1", "E1_H_s"), ("E1", "E1_H_l"), ("E1_H_s", "F"), ("E1_H_l", "G")})
    ctrl = TreeMethodController(plans, STUDY, topology=roads)
    lanes = lane_info(ctrl.extra_lanes())
    ctrl.decide(measurement(lanes, {"E1_0": (30, 0.0), "E1_H_s_0": (3, 0.0), "E1_H_l_0": (1, 0.0)}, {"J": [45, 45]}))
    state = ctrl.last_state
    assert state.link_ids == ["E1", "F", "G"]
    assert state.trees == {"E1": ["E1"]}
    np.testing.assert_allclose(state.phase_cost["J"], [9.0, 3.0])  # 12 split 3:1


# --- 4. baby steps and the minimum phase -----------------------------------------------------


def test_step_thresholds_in_vehicle_minutes():
    for veh_min, step in [(0, 2), (9.9, 2), (10, 4), (29.9, 4), (30, 6), (99, 6), (100, 10),
                          (299, 10), (300, 15), (999, 15), (1000, 20), (1e6, 20)]:
        assert step_for_cost(veh_min) == step


def test_baby_step_cuts_every_phase_and_redistributes_by_cost_capped_at_plus_step():
    # costs (50, 10, 0) veh*min, total 60 -> step 6 s; greens (30, 30, 30) of 90 s
    #   cut: (24, 24, 24), freed 18 s
    #   back by share: 24 + 18*50/60 = 39 -> capped at 30 + 6 = 36; 24 + 18*10/60 = 27; 24
    #   left over 90 - 87 = 3 s, spread evenly: +1 each -> (37, 28, 25)
    new, step = baby_step([30, 30, 30], [50, 10, 0], 90, 10)
    assert step == 6
    np.testing.assert_array_equal(new, [37, 28, 25])
    # costs (60, 0, 0): 24 + 18 = 42 -> cap 36; (36, 24, 24) + 6 left over, 2 each -> (38, 26, 26)
    np.testing.assert_array_equal(baby_step([30, 30, 30], [60, 0, 0], 90, 10)[0], [38, 26, 26])
    # no cost: step 2, cut (78, 10) -> freed 2 s, nothing by cost, spread 1 + 1 -> (79, 11)
    np.testing.assert_array_equal(baby_step([80, 10], [0, 0], 90, 10)[0], [79, 11])
    # an uneven leftover goes to the first phases: (70, 10, 10), no cost -> cut (68, 10, 10),
    # 2 s left over for 3 phases -> +1, +1, +0 -> (69, 11, 10)
    np.testing.assert_array_equal(baby_step([70, 10, 10], [0, 0, 0], 90, 10)[0], [69, 11, 10])
    # rounding can overshoot: (40, 40, 10), costs (1, 2, 2), step 2 -> cut (38, 38, 10), 4 s back:
    # 38 + 0.8 -> 39, 38 + 1.6 -> 40, 10 + 1.6 -> 12 = 91 s; the last phase gives 1 s back
    np.testing.assert_array_equal(baby_step([40, 40, 10], [1, 2, 2], 90, 10)[0], [39, 40, 11])


def test_minimum_phase_is_10_s():
    assert MIN_PHASE_S == 10
    # (12, 78), all cost on phase 1, step 6: phase 0 is cut to 10 (not 6), freed 2 + 6 = 8 s,
    # phase 1 gets 72 + 8 = 80 (cap 84): (10, 80); again: cut (10, 74), freed 6 -> (10, 80)
    cur = np.array([12.0, 78.0])
    for _ in range(3):
        cur, _ = baby_step(cur, [0, 50], 90, 10)
        np.testing.assert_array_equal(cur, [10, 80])
    plans = cross_and_feeder()
    # the controller's minimum: 10 s even where the CLI's --min-green is 5 ...
    assert TreeMethodController(plans, STUDY).min_phase(2) == 10
    # ... the CLI's when larger, the named variant when asked for, and what fits the cycle
    assert TreeMethodController(plans, CycleTiming(90, 0, 12)).min_phase(2) == 12
    assert TreeMethodController(plans, STUDY, min_phase_s=5).min_phase(2) == 5
    assert TreeMethodController(plans, CycleTiming(40, 3, 5)).min_phase(4) == 7  # 28 s of green / 4


def test_starts_from_the_programs_own_durations():
    plan = make_plan("J", [[("a_0", "x_0")], [("b_0", "x_0")], [("c_0", "x_0")]], durations=[35, 30, 25])
    ctrl = TreeMethodController({"J": plan}, STUDY)  # 90 s, no yellow: the program as it is
    np.testing.assert_array_equal(ctrl.initial_durations()["J"], [35, 30, 25])
    # with 3 s yellows the 81 s of green are shared like the program shares 90: 31.5, 27, 22.5
    # -> floors (31, 27, 22), the one second left to the first largest remainder
    yellow = TreeMethodController({"J": plan}, CycleTiming(90, 3, 5))
    np.testing.assert_array_equal(yellow.initial_durations()["J"], [32, 27, 22])
    np.testing.assert_array_equal(fit_to_budget([1, 1], 84, 10), [42, 42])  # no durations: equal


def test_invariants_over_random_traffic():
    rng = np.random.default_rng(5)
    four = make_plan("J", [[("a_0", "x_0")], [("b_0", "x_0")], [("c_0", "x_0")], [("d_0", "x_0")]])
    plans = {"J": four, **cross_and_feeder()}
    lanes = lane_info(plan_lanes(plans))
    timing = CycleTiming(90, 3, 5)
    ctrl = TreeMethodController(plans, timing)
    last = ctrl.initial_durations()
    moved = False
    for _ in range(300):
        traffic = {l: (float(rng.integers(0, 60)), float(rng.uniform(0, VF))) for l in lanes.lane_ids}
        out = ctrl.decide(measurement(lanes, traffic, last))
        for tls, d in out.items():
            assert d.sum() == timing.green_budget(plans[tls].num_phases)
            assert (d >= 10).all() and np.array_equal(d, np.round(d))
            moved |= not np.array_equal(d, last[tls])
        last = out
    assert moved


# --- 5. real SUMO ----------------------------------------------------------------------------


def _drive(net_file: Path, routes: Path, out: Path, ctrl: TreeMethodController, end: float):
    """The project's runner (`src.orchestration.simulation`'s cycle loop, lanes read every
    `ctrl.sample_interval_s` = 1 s) on these files. Per decision: (the cycle's measurement,
    the state decided from it, the durations that ran in it, the durations decided)."""
    from src.orchestration.simulation import _drive as runner_loop
    from src.sumo_integration.simulation import SumoSimulation

    seen = []  # (measurement, the controller's state decided from the measurement before it)
    sim = SumoSimulation(net_file, [routes], out, end).start()
    try:
        runner_loop(sim, ctrl, ctrl.plans, ctrl.timing, end, False, lambda m: seen.append((m, ctrl.last_state)), None)
    finally:
        sim.close()
    return [(m, state, m.last_durations, after.last_durations) for (m, _), (after, state) in zip(seen, seen[1:])]


def _expected_cost(m: CycleMeasurement, edge: str) -> int:
    """A street's cost from the raw lane readings, written out independently of the module:
    the tiny network's 150 m streets are shorter than the 725 m driven at 29 km/h."""
    idx = [k for k, lane in enumerate(m.lanes.lane_ids) if lane.rsplit("_", 1)[0] == edge]
    n, v = m.mean_vehicles[idx], m.mean_speed[idx]
    v_kmh = max(round((n * v).sum() / n.sum() * 3.6), 3) if n.sum() > 0 else 50
    u_f = float(m.lanes.speed_limits[idx].mean()) * 3.6
    k = round(150 * ((1 - v_kmh / u_f) ** 0.2) ** (1 / 1.8))
    flow = v_kmh * k * len(idx) * m.cycle_length / 3600
    length = float(m.lanes.lengths[idx].mean())
    driven = min(round(v_kmh * m.cycle_length / 3.6), length)
    loss_min = (driven / 1000 / v_kmh - length / 1000 / speed_at_max_flow_kmh(u_f)) * 60
    return round(flow * loss_min)


def test_tiny_network_in_sumo_without_yellow(tiny_network, tmp_path):
    """The tiny fixture (3x3 signals, 150 m streets) under a heavy northbound column, with
    the study's setting: no yellow, 10 s minimum phase; values checked against the readings."""
    from src.network.phases import read_phase_plans

    net_file = tiny_network / "network.net.xml"
    plans = read_phase_plans(net_file)
    routes = tmp_path / "routes.rou.xml"
    routes.write_text("""<routes>
    <vType id="car" length="5" maxSpeed="13.9"/>
    <route id="north" edges="bottom1B0 B0B1 B1B2 B2top1"/>
    <route id="east" edges="left1A1 A1B1 B1C1 C1right1"/>
    <flow id="n" type="car" route="north" begin="0" end="900" vehsPerHour="1200" departLane="best"/>
    <flow id="e" type="car" route="east" begin="0" end="900" vehsPerHour="300" departLane="best"/>
</routes>
""")
    timing = CycleTiming(60.0, 0.0, 5.0)
    ctrl = TreeMethodController(plans, timing, net_file=net_file)
    # the fixture's programs: 27 s + 3 s yellow per phase; without yellow 60 s are shared alike
    assert all(p.green_durations == [27.0, 27.0] for p in plans.values())
    assert all(np.array_equal(d, [30, 30]) for d in ctrl.initial_durations().values())
    assert ctrl.sample_interval_s == 1.0  # the authors' runner reads every link after each step
    history = _drive(net_file, routes, tmp_path / "out", ctrl, 900.0)
    assert len(history) == 14
    checked = 0
    for m, state, previous, durations in history:
        for link, loaded in zip(state.link_ids, state.loaded):
            if loaded:
                assert state.cost_of(link) == _expected_cost(m, link), (m.time, link)
                checked += 1
        for tls, d in durations.items():
            assert d.sum() == 60 and d.min() >= 10
            np.testing.assert_array_equal(d, baby_step(previous[tls], state.phase_cost[tls], 60, 10)[0])
    assert checked > 10
    assert any("B0B1" in members for state in (h[1] for h in history) for members in state.trees.values())
    # the column's junctions end with more green for the northbound phase
    final = history[-1][3]
    for tls, approach in (("B0", "bottom1B0_0"), ("B1", "B0B1_0")):
        north = next(p for p in range(2) if approach in plans[tls].served_incoming_lanes(p))
        assert final[tls][north] > 30, (tls, final[tls])


def _street_with_unsignalised_junction(tmp_path: Path) -> Path:
    """W -> M (priority, a side street joins) -> C (signal, crossed by S-N) -> E; 200 m each."""
    nod, edg = tmp_path / "n.nod.xml", tmp_path / "n.edg.xml"
    nod.write_text("""<nodes>
    <node id="W" x="0" y="0"/><node id="M" x="200" y="0" type="priority"/>
    <node id="C" x="400" y="0" type="traffic_light"/><node id="E" x="600" y="0"/>
    <node id="S" x="400" y="-200"/><node id="N" x="400" y="200"/><node id="X" x="200" y="-200"/>
</nodes>
""")
    edg.write_text("""<edges>
    <edge id="WM" from="W" to="M" numLanes="1" speed="13.89"/>
    <edge id="XM" from="X" to="M" numLanes="1" speed="13.89"/>
    <edge id="MC" from="M" to="C" numLanes="1" speed="13.89"/>
    <edge id="CE" from="C" to="E" numLanes="1" speed="13.89"/>
    <edge id="SC" from="S" to="C" numLanes="1" speed="13.89"/>
    <edge id="CN" from="C" to="N" numLanes="1" speed="13.89"/>
</edges>
""")
    net = tmp_path / "street.net.xml"
    run_tool("netconvert", ["-n", str(nod), "-e", str(edg), "-o", str(net), "--no-turnarounds",
                            "--tls.default-type", "static"])
    return net


def test_trees_cross_an_unsignalised_junction_in_sumo(tmp_path):
    from src.network.phases import read_phase_plans

    net = _street_with_unsignalised_junction(tmp_path)
    plans = read_phase_plans(net)
    assert list(plans) == ["C"]
    routes = tmp_path / "r.rou.xml"
    routes.write_text("""<routes>
    <vType id="car" length="5" maxSpeed="13.9"/>
    <flow id="e" type="car" from="WM" to="CE" begin="0" end="900" vehsPerHour="1200"/>
    <flow id="n" type="car" from="SC" to="CN" begin="0" end="900" vehsPerHour="900"/>
</routes>
""")
    whole = _drive(net, routes, tmp_path / "whole", TreeMethodController(plans, STUDY, net_file=net), 900.0)
    assert "WM" in whole[0][1].link_ids  # measured although no signal touches it
    crossing = [s.trees["MC"] for _, s, _, _ in whole if "WM" in s.trees.get("MC", [])]
    assert crossing, [s.trees for _, s, _, _ in whole]
    signals_only = _drive(net, routes, tmp_path / "own", TreeMethodController(plans, STUDY), 900.0)
    assert all("WM" not in s.link_ids for _, s, _, _ in signals_only)


def test_tree_method_through_run_simulation(tmp_path):
    """End to end through the project's runner (net file passed, extra lanes measured)."""
    from src.orchestration.simulation import run_simulation
    from src.params import ControlParams, NetworkParams, SimulationParams, TrafficParams

    params = SimulationParams(
        network=NetworkParams(grid_dimension=3, block_size_m=150, lane_count=2),
        traffic=TrafficParams(num_vehicles=2500, end_time=1800, passenger_routes={"pass": 50.0, "inner": 50.0}),
        control=ControlParams(traffic_control="tree_method"),
        output_dir=tmp_path / "run",
    )
    applied: List[Dict[str, np.ndarray]] = []
    result = run_simulation(params, progress=False, on_cycle=lambda m: applied.append(m.last_durations))
    assert result.metrics
    first = applied[0]
    changed = [d for cycle in applied[1:] for tls, d in cycle.items() if not np.array_equal(d, first[tls])]
    assert changed, "Tree Method never left the program's split under heavy demand"
    assert all(np.asarray(d).min() >= 10 for cycle in applied for d in cycle.values())

#!/usr/bin/env python
"""Tree Method decision cost per cycle, as a share of the time SUMO needs to simulate that cycle.

One Tree Method run with the runner's own pieces (prepare_scenario, SumoSimulation,
SignalActuator, LaneSampler, run_cycle, TreeMethodController.decide), in the order of
`src.orchestration.simulation._drive`. Per cycle it times separately:

* SUMO stepping: the `simulationStep` calls of `run_cycle` (the plain simulation of those
  cycle_length seconds, in this same run);
* lane sampling (`LaneSampler.sample`) and signal updates (`SignalActuator.apply`);
* `controller.decide(measurement)`.

Prints mean and max of decide / stepping over the cycles (no target in the brief: these are
informative), plus the whole-run shares.

    .venv/bin/python bench/bench_tree_method.py [--quick] [--vehicles V] [--end-time T]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (finish, Ratio, Report, add_size_arguments, base_parser, heavy_scenario, quick_scenario,  # noqa: E402
                    TimedApi, stderr_to_file, work_dir)


def main() -> int:
    parser = base_parser(__doc__.split("\n\n")[0], default_reps=1, quick_reps=1)
    add_size_arguments(parser)
    args = parser.parse_args()
    scenario = (quick_scenario if args.quick else heavy_scenario)(args.vehicles, args.end_time)
    report = Report("bench_tree_method", args.quick, sizes={"scenario": scenario.describe()})
    print(f"[bench_tree_method] {scenario.label}", flush=True)
    tmp = work_dir("tree_method", args.keep)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from src.argv import parse_simulation_params
    from src.control import LaneInfo, LaneSampler, SignalActuator, create_controller, run_cycle
    from src.control.actuator import plan_timing
    from src.network.phases import read_phase_plans
    from src.orchestration.simulation import prepare_scenario
    from src.sumo_integration.simulation import SumoSimulation

    class TimedSampler(LaneSampler):
        sample_s = 0.0

        def sample(self) -> None:
            t0 = time.perf_counter()
            super().sample()
            self.sample_s += time.perf_counter() - t0

    params = parse_simulation_params(scenario.params() + " --traffic_control tree_method")
    t0 = time.perf_counter()
    network, traffic = prepare_scenario(params, tmp)
    prepare_s = time.perf_counter() - t0
    plans = read_phase_plans(network.net_file)
    c = params.control
    timing = plan_timing(plans, c.cycle_length, c.yellow_time, c.min_green)  # as the runner does
    controller = create_controller("tree_method", plans, timing, speed_factor=c.tree_method_speed_factor,
                                   net_file=network.net_file)
    end_time = float(params.traffic.end_time)
    sim = SumoSimulation(network.net_file, [traffic.route_file], tmp / "sim", end_time,
                         step_length=params.network.step_length, seed=params.sumo_seed,
                         additional_files=controller.additional_files(tmp))
    cycles = []
    quiet = stderr_to_file(tmp / "sumo_stderr.log")  # SUMO's warnings (also in its --log file)
    quiet.__enter__()
    try:
        sim.start()
        api = TimedApi(sim.api)
        actuator = SignalActuator(plans, controller.timing)
        lanes = LaneInfo.from_plans(sim.api, plans, controller.extra_lanes())
        sampler = TimedSampler(api, lanes)
        controller.reset()
        durations = controller.initial_durations()
        run_start = time.perf_counter()
        while sim.time < end_time - 1e-9:
            a0 = time.perf_counter()
            actuator.apply(api, durations)
            a1 = time.perf_counter()
            step0, sample0 = api.step_s, sampler.sample_s
            m = run_cycle(api, sampler, controller.timing.cycle_length, controller.sample_interval_s, durations, end_time)
            a2 = time.perf_counter()
            record = {"time": m.time, "running": m.running, "apply_s": a1 - a0, "run_cycle_s": a2 - a1,
                      "step_s": api.step_s - step0, "sample_s": sampler.sample_s - sample0, "decide_s": None}
            if sim.time < end_time - 1e-9:
                d0 = time.perf_counter()
                durations = controller.decide(m)
                record["decide_s"] = time.perf_counter() - d0
                state = controller.last_state
                record["trees"] = len(state.trees) if state else 0
                record["loaded_links"] = int(state.loaded.sum()) if state else 0
            cycles.append(record)
        run_s = time.perf_counter() - run_start
    finally:
        sim.close()
        quiet.__exit__()

    decided = [r for r in cycles if r["decide_s"] is not None]
    ratios = [r["decide_s"] / r["step_s"] for r in decided if r["step_s"] > 0]
    worst = max(range(len(decided)), key=lambda k: decided[k]["decide_s"] / max(decided[k]["step_s"], 1e-12))
    later = [r["decide_s"] / r["step_s"] for r in decided[1:] if r["step_s"] > 0]
    step_total = sum(r["step_s"] for r in cycles)
    decide_total = sum(r["decide_s"] for r in decided)
    sample_total = sum(r["sample_s"] for r in cycles)
    apply_total = sum(r["apply_s"] for r in cycles)
    report.sizes.update({"cycles": len(cycles), "cycle_length_s": float(controller.timing.cycle_length),
                         "signals": len(plans), "lanes_sampled": len(lanes.lane_ids)})
    report.samples = {"prepare_s": prepare_s, "run_s": run_s, "step_total_s": step_total, "decide_total_s": decide_total,
                      "sample_total_s": sample_total, "apply_total_s": apply_total, "cycles": cycles}
    print(f"  {len(cycles)} cycles of {controller.timing.cycle_length:g} s, {len(plans)} signals, {len(lanes.lane_ids)} lanes; "
          f"stepping {step_total:.2f} s, decide {decide_total * 1000:.1f} ms in all", flush=True)
    report.add(Ratio("tree-method decide / SUMO stepping per cycle, mean", sum(ratios) / len(ratios), None,
                     f"{len(ratios)} cycles; mean decide {1000 * decide_total / len(decided):.2f} ms"))
    w = decided[worst]
    report.add(Ratio("tree-method decide / SUMO stepping per cycle, max", max(ratios), None,
                     f"cycle {worst + 1} at t={w['time']:.0f} s: {1000 * w['decide_s']:.2f} ms / {1000 * w['step_s']:.1f} ms, "
                     f"{w['running']} vehicles"))
    if later:
        report.add(Ratio("tree-method decide / SUMO stepping per cycle, max after the first", max(later), None,
                         f"the first decide also builds the link graph ({1000 * decided[0]['decide_s']:.2f} ms)"))
    report.add(Ratio("tree-method decide / SUMO stepping, whole run", decide_total / step_total, None))
    report.add(Ratio("lane sampling + signal updates / SUMO stepping, whole run", (sample_total + apply_total) / step_total, None,
                     f"sampling {sample_total:.2f} s, signal updates {apply_total:.2f} s"))
    report.add(Ratio("tree-method run loop / SUMO stepping, whole run", run_s / step_total, None,
                     f"{run_s:.2f} s / {step_total:.2f} s"))
    return finish(report, tmp, args.keep)


if __name__ == "__main__":
    sys.exit(main())

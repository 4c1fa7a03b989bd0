"""Run one scenario with one controller, end to end, and collect its trip metrics."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from src.control import LaneInfo, LaneSampler, PhaseActuator, SignalActuator, controller_class, plan_timing, run_cycle
from src.control.actuator import check_cycle_fits
from src.control.base import warn_if_fixed
from src.locations import LocationError, check_writable_dir
from src.metrics import METRIC_NAMES, compute_trip_metrics
from src.network import build_network
from src.network.artifacts import NetworkArtifacts
from src.network.phases import read_phase_plans
from src.params import ParameterError, SimulationParams
from src.sumo_integration.simulation import SumoSimulation, lane_getter
from src.sumo_integration.sumocfg import option_args
from src.traffic import generate_traffic

logger = logging.getLogger(__name__)

#: Simulated seconds between progress lines / non-adaptive stepping chunks.
PROGRESS_CHUNK_S = 300


class SimulationError(RuntimeError):
    """SUMO failed on a scenario (message says where its log is)."""


@dataclass
class SimulationResult:
    controller: str
    metrics: Dict[str, float]
    output_dir: Path
    metrics_file: Path
    wall_time_s: float
    timings: Dict[str, float] = field(default_factory=dict)

    def format_table(self) -> str:
        lines = [f"metrics ({self.controller}, {self.output_dir}):"]
        for name in METRIC_NAMES:
            value = self.metrics.get(name)
            if value is not None:
                lines.append(f"  {name:<24} {value:12.2f}")
        return "\n".join(lines)


def default_output_dir(controller: str) -> Path:
    return Path("outputs") / f"{controller}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"


def prepare_scenario(params: SimulationParams, out_dir: Path, network_dir: Optional[Path] = None):
    """Build (or reuse) the network and write the scenario's route file."""
    if network_dir is not None and (Path(network_dir) / "network.json").is_file():
        network = NetworkArtifacts.load(network_dir)
    else:
        network = build_network(
            params.network,
            Path(network_dir or out_dir / "network"),
            yellow_time=params.control.yellow_time,
            min_green=params.control.min_green,
            cycle_length=params.control.cycle_length_or_default,
        )
    traffic = generate_traffic(params.traffic, network, out_dir / "routes.rou.xml")
    return network, traffic


def run_simulation(
    params: SimulationParams,
    progress: bool = True,
    network_dir: Optional[Path] = None,
    controller_options: Optional[dict] = None,
    on_cycle: Optional[Callable] = None,
) -> SimulationResult:
    """Build network and routes, run SUMO with the chosen controller to the end time, compute metrics."""
    started = time.perf_counter()
    control = params.control
    out_dir = Path(params.output_dir or default_output_dir(control.traffic_control))
    try:
        check_writable_dir(out_dir, "the output folder (--output-dir)")
    except LocationError as err:
        raise SimulationError(str(err)) from None
    network, traffic = prepare_scenario(params, out_dir, network_dir)
    prepared = time.perf_counter()

    plans = read_phase_plans(network.net_file)
    timing = plan_timing(plans, control.cycle_length, control.yellow_time, control.min_green)
    check_cycle_fits(plans, timing)
    try:
        controller_type = controller_class(control.traffic_control)
        options = {**controller_type.run_options(params, network), **(controller_options or {})}
        controller = controller_type(plans, timing, **options)
    except (OSError, ValueError) as err:  # a model that cannot be found, read or run on this network
        if isinstance(err, ParameterError):
            raise
        raise SimulationError(f"--traffic_control {control.traffic_control}: {err}") from None
    warn_if_fixed(controller)
    begin, end_time = float(params.traffic.begin), float(params.traffic.end_time)
    sim = SumoSimulation(
        network.net_file,
        [traffic.route_file],
        out_dir,
        end_time,
        step_length=params.network.step_length,
        seed=params.sumo_seed,
        additional_files=[*params.additional_files, *controller.additional_files(out_dir)],
        gui=params.gui,
        extra_args=option_args(params.sumo_options),
        begin=begin,
    )
    try:
        sim.start()
    except Exception as err:  # SUMO refuses the input: point at its log
        raise SimulationError(f"SUMO did not start ({err}); see {sim.log_file}") from err
    try:
        # a trained phase_select policy acts at the interval it was trained with
        interval = getattr(controller, "decision_interval", None) or control.decision_interval
        _drive(sim, controller, plans, controller.timing, end_time, progress, on_cycle, interval)
    finally:
        sim.close()
    simulated = time.perf_counter()

    metrics = compute_trip_metrics(sim.tripinfo_file, traffic.departures, end_time, sim.statistics_file, begin)
    metrics_file = out_dir / "metrics.json"
    metrics_file.write_text(json.dumps({"controller": control.traffic_control, **metrics}, indent=1))
    finished = time.perf_counter()
    timings = {"prepare_s": prepared - started, "simulate_s": simulated - prepared, "metrics_s": finished - simulated}
    logger.info("done in %.1f s (prepare %.1f s, simulate %.1f s)", finished - started, timings["prepare_s"], timings["simulate_s"])
    return SimulationResult(control.traffic_control, metrics, out_dir, metrics_file, finished - started, timings)


def _drive(sim, controller, plans, timing, end_time, progress, on_cycle, decision_interval) -> None:
    """Run from the simulation's begin to `end_time`; every clock starts at the begin."""
    api = sim.api
    wall_start = time.perf_counter()
    begin = sim.time
    next_report = begin + PROGRESS_CHUNK_S

    def report(t: float) -> None:
        nonlocal next_report
        if progress and t >= next_report - 1e-9:
            elapsed = time.perf_counter() - wall_start
            eta = elapsed / (t - begin) * (end_time - t) if t > begin else 0.0
            logger.info("  t=%5.0f/%.0f s  running=%d  elapsed %.1f s  eta %.1f s",
                        t, end_time, api.simulation.getMinExpectedNumber(), elapsed, eta)
            next_report = begin + ((t - begin) // PROGRESS_CHUNK_S + 1) * PROGRESS_CHUNK_S

    if not controller.adaptive:
        for tls in controller.programs_from_begin():  # their cycle starts now, as in a run from 0
            api.trafficlight.setPhase(tls, 0)
        t = begin
        while t < end_time - 1e-9:
            t = min(t + PROGRESS_CHUNK_S, end_time)
            sim.step(t)
            report(t)
        return
    if controller.mode == "phase_select":
        _drive_phases(sim, controller, plans, timing, end_time, decision_interval, report)
        return
    actuator = SignalActuator(plans, timing)
    lanes = LaneInfo.from_plans(api, plans, controller.extra_lanes())
    sampler = LaneSampler(api, lanes, track_entered=controller.track_entered)
    controller.reset()
    durations = controller.initial_durations()
    while sim.time < end_time - 1e-9:
        actuator.apply(api, durations)
        # a controller may choose each cycle's length (a policy with `cycle_action`)
        measurement = run_cycle(api, sampler, controller.timing.cycle_length, controller.sample_interval_s, durations,
                                end_time)
        if on_cycle is not None:
            on_cycle(measurement)
        if sim.time >= end_time - 1e-9:
            break
        durations = controller.decide(measurement)
        report(sim.time)


def _drive_phases(sim, controller, plans, timing, end_time: float, interval: float, report) -> None:
    """Acyclic control: every `interval` s the junctions past their minimum green get a phase."""
    api = sim.api
    actuator = PhaseActuator(plans, timing)
    lanes = LaneInfo.from_plans(api, plans)
    controller.reset()
    controller.bind(api, actuator, lanes)
    actuator.start(api, sim.time)
    halting = lane_getter(api, "getLastStepHaltingNumber")
    while sim.time < end_time - 1e-9:
        sim.step(min(sim.time + interval, end_time))
        now = sim.time
        ready = actuator.ready(now)
        if ready:
            queues = np.fromiter(map(halting, lanes.lane_ids), dtype=float, count=len(lanes.lane_ids))
            for tls, phase in controller.select(queues, lanes, actuator.current, ready).items():
                actuator.switch(api, tls, phase, now)
        report(now)

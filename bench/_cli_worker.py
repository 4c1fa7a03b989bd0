"""Worker of bench_simulation: one `python -m src.cli` run in a fresh process, timings as JSON.

Argument: a JSON object {"argv": [...]} with the CLI arguments. Prints one JSON line with
`SimulationResult.timings` and the SUMO command line the run used.
"""

from __future__ import annotations

import json
import logging
import sys
import time


def main() -> int:
    started = time.perf_counter()
    payload = json.loads(sys.argv[1])
    from src.argv import create_argument_parser, params_from_args
    import src.orchestration.simulation as orchestration

    captured = {}
    original_start = orchestration.SumoSimulation.start

    def start(self):
        captured.update(net_file=str(self.net_file), route_files=[str(p) for p in self.route_files],
                        end_time=self.end_time, step_length=self.step_length, seed=self.seed,
                        additional_files=[str(p) for p in self.additional_files], extra_args=list(self.extra_args),
                        command=self.command())
        out = original_start(self)
        captured["backend"] = self.backend
        return out

    orchestration.SumoSimulation.start = start

    # CPU time of the simulate phase: from the end of prepare_scenario to the start of the metrics.
    def cpu_now() -> float:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + usage.ru_utime + usage.ru_stime

    marks = {}
    original_prepare, original_metrics = orchestration.prepare_scenario, orchestration.compute_trip_metrics

    def prepare(*a, **k):
        out = original_prepare(*a, **k)
        marks["prepared"] = cpu_now()
        return out

    def metrics(*a, **k):
        marks["simulated"] = cpu_now()
        return original_metrics(*a, **k)

    orchestration.prepare_scenario, orchestration.compute_trip_metrics = prepare, metrics
    ns = create_argument_parser().parse_args(payload["argv"])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    params = params_from_args(ns)
    imported = time.perf_counter()
    result = orchestration.run_simulation(params, progress=False)
    finished = time.perf_counter()
    print(json.dumps({
        "timings": result.timings,
        "simulate_cpu_s": marks["simulated"] - marks["prepared"],
        "run_simulation_s": finished - imported,
        "imports_s": imported - started,
        "output_dir": str(result.output_dir),
        "tripinfo": str(result.output_dir / "tripinfo.xml"),
        "metrics": result.metrics,
        "sim": captured,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m src.cli ...`: build a network and traffic, run one simulation, report trip metrics.

Entry point only: the options come from `src/argv.py` (built from `src/params.py`), the run
from `src/orchestration/simulation.py`. Nothing imports this module.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from src.argv import create_argument_parser, params_from_args
from src.orchestration.simulation import SimulationError, run_simulation
from src.params import ParameterError


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = create_argument_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if ns.quiet else logging.INFO, format="%(message)s")
    try:
        params = params_from_args(ns)
        result = run_simulation(params, progress=not ns.quiet)
    except (ParameterError, SimulationError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(result.format_table())
    print(f"metrics written to {result.metrics_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

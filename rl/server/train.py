#!/usr/bin/env python
"""HPC training: one SUMO env per scenario in its own process, one shared PPO model.

Chain batches of scenarios into one model with --resume-from (a file, runs:/ or models:/ URI).
SIGTERM (scancel, preemption, or train_rl.slurm at the time-limit warning) saves a checkpoint,
registers it and ends the MLflow run KILLED (exit code 3; see README, When things go wrong).
"""

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # works without the package installed (conda env, any cwd)
    sys.path.insert(0, str(REPO_ROOT))

from src.rl.pipeline import main  # noqa: E402
from src.rl.train_args import OneLineParser, add_common_arguments  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--single-env", dest="single_env", action="store_true",
                        help="run all envs in this process instead of one process per scenario")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args(), mode="server"))

#!/usr/bin/env python
"""Laptop training: one env on the first scenario by default, verbose, easy to debug.

    python rl/local/train.py --network rl/configs/network/grid3_small.yaml \
        --scenarios rl/configs/scenarios/small_mixed.yaml --algorithm rl/configs/algorithm/ppo_small.yaml \
        --reward rl/configs/reward/empirical.yaml --execution rl/configs/execution/quick_test.yaml --timesteps 100
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
    parser.add_argument("--all-scenarios", dest="all_scenarios", action="store_true",
                        help="train on every scenario of the file (one env each) instead of the first")
    parser.add_argument("--single-env", dest="single_env", action="store_true",
                        help="keep every env in this process (no subprocesses; breakpoints work)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args(), mode="local"))

#!/usr/bin/env python
"""Hyperparameter sweep: an Optuna study whose trials are real training runs, compared in MLflow.

    python rl/sweep.py rl/configs/sweep/ppo_quick.yaml --trials 6 \\
        --network rl/configs/network/grid3_small.yaml --scenarios rl/configs/scenarios/small_mixed.yaml \\
        --algorithm rl/configs/algorithm/ppo_small.yaml --reward rl/configs/reward/empirical.yaml \\
        --execution rl/configs/execution/quick_test.yaml --eval-freq 64

Every worker started with the same --storage and --study shares the budget of --trials
(README "Sweeps"). Exit codes: 0 done, 2 bad input (nothing ran), 3 stopped by SIGTERM/SIGINT
(the running trial is FAIL and queued again; run the same command to continue).
"""

import argparse
import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # works without the package installed (conda env, any cwd)
    sys.path.insert(0, str(REPO_ROOT))

from src.rl import constants as C  # noqa: E402
from src.rl.pipeline import UserError  # noqa: E402
from src.rl.train_args import EXIT_USER_ERROR, OneLineParser, add_common_arguments, optional  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space", help="search space YAML (rl/configs/sweep/*.yaml): config key -> distribution")
    parser.add_argument("--trials", type=int, required=True,
                        help="the study's budget: trials in total over every worker and resubmission")
    parser.add_argument("--storage", type=optional(str), default=None,
                        help="Optuna storage: sqlite:///<file> (one machine), journal://<file> (a shared file "
                             "system), or a database URL (default sqlite:///<output>/study.db)")
    parser.add_argument("--study", type=optional(str), default=None, help="study name (default: the space file's name)")
    parser.add_argument("--output", type=optional(str), default=None,
                        help=f"trials' model folders and the summary (default {C.DEFAULT_SWEEPS_DIR}/<study>)")
    parser.add_argument("--pruner", choices=C.SWEEP_PRUNERS, default=C.DEFAULT_SWEEP_PRUNER,
                        help="stops hopeless trials at an evaluation (README 'Sweeps')")
    parser.add_argument("--prune-above", dest="prune_above", type=float, default=None,
                        help="--pruner threshold: prune a trial whose evaluation is above this many seconds")
    parser.add_argument("--stale-after", dest="stale_after", type=float, default=C.SWEEP_STALE_AFTER_S,
                        help="seconds without a sign of life after which another worker fails a RUNNING trial "
                             "(its worker was SIGKILLed or its node lost) and queues its values again "
                             f"(default {C.SWEEP_STALE_AFTER_S})")
    parser.add_argument("--sampler-seed", dest="sampler_seed", type=optional(int), default=None,
                        help="seed of Optuna's sampler (default: random; give each worker its own)")
    add_common_arguments(parser)
    parser.add_argument("--single-env", dest="single_env", action="store_true",
                        help="run every env of a trial in this process")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from src.rl.sweep import prepare  # optuna, torch and SB3 load after the arguments are read
    from src.tracking.delivery import use_short_http_budget

    use_short_http_budget()
    try:
        sweep = prepare(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    return sweep.run()


if __name__ == "__main__":
    sys.exit(main())

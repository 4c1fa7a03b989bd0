#!/usr/bin/env python
"""Legacy entry point: train from one monolithic experiment file (experiments/*.yaml).

    python scripts/train_rl_production.py --experiment experiments/throughput_focused.yaml

Experiment files hold every key of the five modular files at top level and may inherit
with `base_config: other.yaml`. New work should use rl/local/train.py or rl/server/train.py
with the five config files; this script runs the same pipeline (server mode, MLflow
tracking, registered model) so old experiments stay reproducible.
"""

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # works without the package installed (conda env, any cwd)
    sys.path.insert(0, str(REPO_ROOT))

from src.rl.config import ConfigError, load_experiment  # noqa: E402
from src.rl.pipeline import main  # noqa: E402
from src.rl.train_args import EXIT_USER_ERROR, OneLineParser, add_common_arguments, overrides_from  # noqa: E402


def run() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, help="monolithic experiment YAML")
    add_common_arguments(parser)
    parser.add_argument("--single-env", dest="single_env", action="store_true", help="all envs in this process")
    args = parser.parse_args()
    try:
        config = load_experiment(args.experiment, overrides=overrides_from(args))
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    return main(args, mode="server", config=config, source_files=config.source_files)


if __name__ == "__main__":
    sys.exit(run())

#!/usr/bin/env python
"""Deliver a training run that the tracking server missed: params, metrics with their steps,
artifacts, the registered model version and the run's end, in the order training logged them.

    python rl/sync.py rl/models/grid6_realistic_20260101_120000_a1b2c3
    python rl/sync.py rl/models/*          # every run of the folder; delivered ones are skipped

A training that could not reach its tracking server at the end exits with code 4 and names
this command. The records wait in `<model folder>/tracking/journal.jsonl`; running it again
after it delivered everything does nothing. Exit codes (the worst over the folders): 0
delivered (or nothing to do), 2 not a model folder of a tracked run or its training still
runs, 4 the server is still unreachable (what got through stays delivered; run it again later).
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # works without the package installed (conda env, any cwd)
    sys.path.insert(0, str(REPO_ROOT))

from src.rl.train_args import EXIT_OK, EXIT_UNDELIVERED, EXIT_USER_ERROR, OneLineParser  # noqa: E402
from src.tracking.delivery import JOURNAL_FILE, RUN_FILE, Journal, Unreachable, use_short_http_budget  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_folders", nargs="+", metavar="model_folder",
                        help="the model folder of a training run (rl/models/<name>_<stamp>_<hex>)")
    parser.add_argument("--tracking-uri", dest="tracking_uri", default=None,
                        help="deliver to this store instead of the one the run was started on (the run must exist there)")
    return parser


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    codes = [sync(Path(folder), args.tracking_uri) for folder in args.model_folders]
    return EXIT_UNDELIVERED if EXIT_UNDELIVERED in codes else max(codes)


def sync(model_folder: Path, tracking_uri: Optional[str]) -> int:
    """Deliver what one model folder's run still holds back; returns the exit code."""
    folder = model_folder / "tracking"
    if not (folder / RUN_FILE).is_file() or not (folder / JOURNAL_FILE).is_file():
        print(f"error: {model_folder} is not the model folder of a tracked training run "
              f"(no tracking/{RUN_FILE} and tracking/{JOURNAL_FILE})", file=sys.stderr)
        return EXIT_USER_ERROR
    journal = Journal(folder)
    lock = journal.lock(wait=False)
    if lock is None:
        print(f"error: the training of {model_folder} is still running and delivers its own records",
              file=sys.stderr)
        return EXIT_USER_ERROR
    info = journal.run_info()
    uri = tracking_uri or info["tracking_uri"]
    pending = journal.pending()
    if pending == 0:
        print(f"run {info['run_id']}: every record is delivered ({uri})")
        return EXIT_OK
    use_short_http_budget()
    import mlflow
    from mlflow import MlflowClient

    from src.tracking.delivery import deliver_pending

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    print(f"run {info['run_id']} in experiment {info['experiment']!r}: delivering {pending} records to {uri}")
    try:
        count, results, skipped = deliver_pending(client, info["run_id"], journal)
    except Unreachable as err:
        print(f"error: {uri} is unreachable ({err}); {journal.pending()} records still wait; run this again later",
              file=sys.stderr)
        return EXIT_UNDELIVERED
    print(f"delivered {count} records" + (f", {len(skipped)} refused by the server: " + "; ".join(skipped) if skipped else ""))
    if results.get("registered_version"):
        run = client.get_run(info["run_id"])
        name = run.data.tags.get("registered_model")
        print(f"registered model {name!r} version {results['registered_version']}; "
              f"resume with: --resume-from models:/{name}/{results['registered_version']}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))

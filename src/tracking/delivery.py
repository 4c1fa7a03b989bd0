"""Tracking that never stops training: every record of a run goes through an on-disk journal.

A training run writes what it logs (params, tags, metric batches, artifacts, the policy,
the end of the run) as one JSON line per record to `<model folder>/tracking/journal.jsonl`
and a background `Courier` delivers the lines in order. When the tracking server cannot be
reached, the records wait in the journal (on disk, so memory stays flat whatever the outage
lasts), one warning line says since when, and delivery resumes where it stopped once the
server answers. `delivered` holds how many lines reached the server, so `rl/sync.py <model
folder>` can deliver the rest after the job ended (`deliver_pending`).

Connection errors, timeouts and 5xx answers are an outage: the record is retried until it
gets through. A record the server refuses (a 4xx answer) or that cannot be made (a file that
is gone, an error of ours) is skipped with a warning, so one bad record never holds back the
ones behind it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

logger = logging.getLogger(__name__)

JOURNAL_FILE, DELIVERED_FILE, RUN_FILE, LOCK_FILE = "journal.jsonl", "delivered", "run.json", "lock"
#: Seconds between two delivery attempts while the server is unreachable (each failed attempt
#: is one refused connection, or ~10 s of MLflow's own retries; short, so a server that is back
#: is used at once).
RETRY_S = 2.0
#: MLflow's own HTTP settings for our processes, unless the user set them: a call to a dead
#: server gives up after ~10 s instead of MLflow's ~4 minutes (7 retries, factor 2, 120 s
#: timeout); the courier retries on its own, so nothing is lost by giving up early.
HTTP_BUDGET = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def use_short_http_budget() -> None:
    """`HTTP_BUDGET`, and no urllib3 warning per retried request: an outage is reported once,
    by the courier, not once per call."""
    for key, value in HTTP_BUDGET.items():
        os.environ.setdefault(key, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


class Unreachable(Exception):
    """The tracking server did not answer (the record stays pending)."""


def is_outage(err: BaseException) -> bool:
    """True when `err` means "try again later" rather than "this record is wrong"."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        return err.get_http_status_code() >= 500
    # connection refused, timeouts (requests' errors are OSErrors too); a missing file is not
    return isinstance(err, OSError) and not isinstance(err, FileNotFoundError)


class Journal:
    """The records of one run in `folder` (`<model folder>/tracking`), and how many were delivered."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_FILE

    @classmethod
    def create(cls, folder: Path, tracking_uri: str, run_id: str, experiment: str) -> "Journal":
        journal = cls(folder)
        journal.folder.mkdir(parents=True, exist_ok=True)
        (journal.folder / RUN_FILE).write_text(json.dumps(
            {"tracking_uri": tracking_uri, "run_id": run_id, "experiment": experiment}, indent=1))
        journal.path.touch()
        return journal

    def run_info(self) -> Dict[str, str]:
        return json.loads((self.folder / RUN_FILE).read_text())

    def append(self, record: Mapping[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def records(self) -> List[Dict[str, Any]]:
        """Every complete line (a line cut by a crash mid-write is not a record)."""
        text = self.path.read_text() if self.path.is_file() else ""
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def delivered(self) -> int:
        path = self.folder / DELIVERED_FILE
        return int(path.read_text().strip() or 0) if path.is_file() else 0

    def mark_delivered(self, count: int) -> None:
        handle, tmp = tempfile.mkstemp(dir=self.folder, prefix=".delivered")
        with os.fdopen(handle, "w") as out:
            out.write(str(count))
        os.replace(tmp, self.folder / DELIVERED_FILE)

    def pending(self) -> int:
        return len(self.records()) - self.delivered()

    def lock(self, wait: bool = True) -> Optional[Any]:
        """An exclusive lock held while one process delivers (the training, or rl/sync.py);
        None when `wait` is False and another process holds it."""
        handle = open(self.folder / LOCK_FILE, "a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return None
        return handle


# --- delivering one record -------------------------------------------------------------------

def _params(ctx: "Delivery", record: Mapping[str, Any]) -> None:
    """A key the run already holds (a `mlflow run` parameter) with another text is logged
    again as `ran.<key>`, so the record never shows only the launcher's spelling of a value."""
    from mlflow.entities import Param

    existing = ctx.client.get_run(ctx.run_id).data.params
    entries = []
    for key, text in record["params"].items():
        if key not in existing:
            entries.append(Param(key, text))
        elif existing[key] != text:
            entries.append(Param(f"ran.{key}"[:250], text))
    for start in range(0, len(entries), 100):
        ctx.client.log_batch(ctx.run_id, params=entries[start:start + 100])


def _tags(ctx: "Delivery", record: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    entries = [RunTag(k, v) for k, v in record["tags"].items()]
    if entries:
        ctx.client.log_batch(ctx.run_id, tags=entries)


#: MLflow's limit of entities per log_batch call.
BATCH_LIMIT = 900


def _metrics(ctx: "Delivery", record: Mapping[str, Any]) -> None:
    """A batch retried after a failure (or by rl/sync.py) may have reached the server already:
    points the run holds are not sent twice."""
    from mlflow.entities import Metric

    points = [tuple(p) for p in record["metrics"]]
    if ctx.recheck:
        held = set()
        for key in {p[0] for p in points}:
            held |= {(m.key, m.value, m.timestamp, m.step) for m in ctx.client.get_metric_history(ctx.run_id, key)}
        points = [p for p in points if (p[0], float(p[1]), int(p[2]), int(p[3])) not in held]
    metrics = [Metric(key, float(value), int(ts), int(step)) for key, value, ts, step in points]
    for start in range(0, len(metrics), BATCH_LIMIT):
        ctx.client.log_batch(ctx.run_id, metrics=metrics[start:start + BATCH_LIMIT])


def _artifact(ctx: "Delivery", record: Mapping[str, Any]) -> None:
    path = Path(record["path"])
    if not path.exists():
        raise FileNotFoundError(f"{path} is gone")
    if path.is_dir():
        ctx.client.log_artifacts(ctx.run_id, str(path), record.get("artifact_path"))
    else:
        ctx.client.log_artifact(ctx.run_id, str(path), record.get("artifact_path"))


def _inputs(ctx: "Delivery", record: Mapping[str, Any]) -> None:
    from src.tracking.datasets import log_dataset_inputs

    log_dataset_inputs(ctx.client, ctx.run_id, record["datasets"])


def _policy(ctx: "Delivery", record: Mapping[str, Any]) -> None:
    from src.tracking.pyfunc import log_policy_model

    version, uri = log_policy_model(ctx.client, ctx.run_id, Path(record["model_zip"]), record.get("model_name"),
                                    record.get("version_tags") or {}, record.get("alias"),
                                    record.get("description"))
    ctx.results["registered_version"], ctx.results["policy_model_uri"] = version, uri


def _end(ctx: "Delivery", record: Mapping[str, Any]) -> None:
    ctx.client.set_terminated(ctx.run_id, record["status"])


DELIVER: Dict[str, Callable[["Delivery", Mapping[str, Any]], None]] = {
    "params": _params, "tags": _tags, "metrics": _metrics, "artifact": _artifact, "inputs": _inputs,
    "policy": _policy, "end": _end,
}


def describe(record: Mapping[str, Any]) -> str:
    kind = record.get("op")
    if kind == "metrics":
        return f"{len(record['metrics'])} metric points"
    if kind == "artifact":
        return f"artifact {record['path']}"
    return f"{kind} record"


class Delivery:
    """Delivers the journal's records to one run, in order (used by the courier and rl/sync.py)."""

    def __init__(self, client: Any, run_id: str, journal: Optional[Journal]) -> None:
        self.client = client
        self.run_id = run_id
        self.journal = journal
        self.recheck = False
        self.results: Dict[str, Any] = {}
        self.skipped: List[str] = []

    def deliver(self, record: Mapping[str, Any]) -> None:
        """One record; Unreachable when the server did not answer (the record stays pending)."""
        try:
            DELIVER[record["op"]](self, record)
        except Exception as err:  # noqa: BLE001 - sorted into outage / refused below
            if is_outage(err):
                self.recheck = True  # the failed call may have been half done
                raise Unreachable(_first_line(err)) from err
            self.skipped.append(f"{describe(record)}: {_first_line(err)}")
            logger.warning("tracking: %s was refused and is skipped (%s)", describe(record), _first_line(err))
        self.recheck = False

    def pending(self) -> Iterator[Tuple[int, Dict[str, Any]]]:
        records = self.journal.records()
        for index in range(self.journal.delivered(), len(records)):
            yield index, records[index]


def deliver_pending(client: Any, run_id: str, journal: Journal) -> Tuple[int, Dict[str, Any], List[str]]:
    """Deliver every record not delivered yet (rl/sync.py). Returns (count, results, skipped);
    raises Unreachable when the server does not answer (what was delivered stays delivered)."""
    delivery = Delivery(client, run_id, journal)
    delivery.recheck = True  # the training may have stopped while delivering the first pending record
    count = 0
    for index, record in delivery.pending():
        delivery.deliver(record)
        journal.mark_delivered(index + 1)
        count += 1
    return count, delivery.results, delivery.skipped


class Courier:
    """The background thread that delivers a training run's journal while it trains.

    `send` appends a record and returns at once; training never waits for the server. The
    first failed delivery logs one warning (unreachable since when); the courier then
    retries every `RETRY_S` seconds and says once when the server is back.
    """

    def __init__(self, client: Any, run_id: str, journal: Journal, tracking_uri: str) -> None:
        self.delivery = Delivery(client, run_id, journal)
        self.journal = journal
        self.tracking_uri = tracking_uri
        self.unreachable_since: Optional[float] = None
        self._lock_handle = journal.lock()
        self._written = len(journal.records())
        self._done = journal.delivered()
        self._reader = open(journal.path)
        for _ in range(self._done):
            self._reader.readline()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="tracking-courier", daemon=True)
        self._thread.start()

    @property
    def results(self) -> Dict[str, Any]:
        return self.delivery.results

    def send(self, record: Mapping[str, Any]) -> None:
        with self._cond:
            self.journal.append(record)
            self._written += 1
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return self._written - self._done

    def _next(self) -> Optional[Tuple[int, Dict[str, Any]]]:
        with self._cond:
            while self._done >= self._written and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            return self._done, json.loads(self._reader.readline())  # a whole line: written under this lock

    def _run(self) -> None:
        item = None
        while True:
            item = item or self._next()
            if item is None:
                return
            index, record = item
            attempted = time.time()
            try:
                self.delivery.deliver(record)
            except Unreachable as err:
                self._outage(str(err), attempted)
                with self._cond:
                    if self._cond.wait_for(lambda: self._stopped, timeout=RETRY_S):
                        return
                continue
            self.journal.mark_delivered(index + 1)
            item = None
            with self._cond:
                self._done = index + 1
                self._cond.notify_all()
            if self.unreachable_since is not None:
                logger.warning("tracking server %s is back after %.0f s unreachable: delivering the %d waiting records",
                               self.tracking_uri, time.time() - self.unreachable_since, self.pending())
                self.unreachable_since = None

    def _outage(self, reason: str, attempted: float) -> None:
        """`attempted`: when the failed call began (a call to a hung server fails only at its timeout)."""
        if self.unreachable_since is None:
            self.unreachable_since = attempted
            logger.warning("tracking server %s unreachable since %s (%s); training goes on, its records wait in %s "
                           "and are delivered when the server is back", self.tracking_uri, since(self.unreachable_since),
                           reason[:200], self.journal.path)

    def wait(self, patience_s: float) -> bool:
        """Wait until every record is delivered; give up after `patience_s` seconds without
        a delivery (the server is down or hangs). True when nothing is pending."""
        with self._cond:
            done, last_progress = self._done, time.monotonic()
            while self._done < self._written:
                if self._done != done:
                    done, last_progress = self._done, time.monotonic()
                left = last_progress + patience_s - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
            return True

    def stop(self) -> None:
        """No new delivery starts (one under way finishes or dies with the process)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():  # else the process is about to end and closes them
            self._reader.close()
            self._lock_handle.close()


def since(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

"""Trip metrics from SUMO's own trip records: the one function every part of the project uses.

Two families of means:
- `mean_travel_time`, `mean_waiting_time`, `mean_time_loss`: completed trips only, read
  from tripinfo `duration`, `waitingTime`, `timeLoss`, so they match SUMO's end-of-run
  statistics.
- `*_all`: every trip planned to depart inside the run, at or after its begin and before its
  end (SUMO inserts no other). A trip still driving at
  the end counts its time so far (from its *planned* departure, so insertion delay
  counts); a trip never inserted counts from its planned departure to the end of the run.
  A controller cannot look better by finishing, or inserting, fewer trips.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Mapping, Optional

METRIC_NAMES = (
    "mean_travel_time",
    "mean_waiting_time",
    "mean_time_loss",
    "mean_travel_time_all",
    "mean_waiting_time_all",
    "mean_time_loss_all",
    "vehicles_planned",
    "vehicles_inserted",
    "vehicles_arrived",
    "completion_rate",
    "throughput_per_hour",
    "teleports",
    "mean_reroutes",
)


def _teleports(statistics_file: Optional[Path]) -> float:
    if statistics_file is None or not Path(statistics_file).is_file():
        return float("nan")
    try:
        root = ET.parse(statistics_file).getroot()
    except ET.ParseError:
        return float("nan")
    node = root.find("teleports")
    return float(node.get("total", 0)) if node is not None else 0.0


def compute_trip_metrics(
    tripinfo_file: Path,
    planned_departures: Mapping[str, float],
    end_time: float,
    statistics_file: Optional[Path] = None,
    begin: float = 0.0,
) -> Dict[str, float]:
    """Metrics of one run from `begin` to `end_time`, keyed by the names in `METRIC_NAMES`.

    `planned_departures` maps every vehicle id of the route file to its planned depart
    time; vehicles planned before `begin` or at or after `end_time` are not part of the run.
    """
    planned = {vid: float(t) for vid, t in planned_departures.items() if begin <= float(t) < end_time}
    done_tt = done_wait = done_loss = 0.0
    all_tt = all_wait = all_loss = 0.0
    arrived = inserted = 0
    reroutes = 0.0
    seen = set()
    for _, elem in ET.iterparse(str(tripinfo_file), events=("end",)):
        if elem.tag != "tripinfo":
            continue
        vid = elem.get("id")
        if vid not in planned:
            elem.clear()
            continue
        seen.add(vid)
        depart = float(elem.get("depart", "-1"))
        arrival = float(elem.get("arrival", "-1"))
        duration = float(elem.get("duration", "0"))
        waiting = float(elem.get("waitingTime", "0"))
        loss = float(elem.get("timeLoss", "0"))
        reroutes += float(elem.get("rerouteNo", "0"))
        planned_depart = planned[vid]
        if depart < 0:  # written as unfinished but never inserted
            span = max(end_time - planned_depart, 0.0)
            all_tt += span
            all_wait += span
            all_loss += span
        else:
            inserted += 1
            delay = max(depart - planned_depart, 0.0)
            if arrival >= 0:
                arrived += 1
                done_tt += duration
                done_wait += waiting
                done_loss += loss
                all_tt += duration + delay
            else:
                all_tt += max(end_time - planned_depart, 0.0)
            all_wait += waiting + delay
            all_loss += loss + delay
        elem.clear()
    for vid, planned_depart in planned.items():  # never appeared in the trip records
        if vid not in seen:
            span = max(end_time - planned_depart, 0.0)
            all_tt += span
            all_wait += span
            all_loss += span
    n_planned = len(planned)

    def mean(total: float, count: int) -> float:
        return total / count if count else math.nan

    return {
        "mean_travel_time": mean(done_tt, arrived),
        "mean_waiting_time": mean(done_wait, arrived),
        "mean_time_loss": mean(done_loss, arrived),
        "mean_travel_time_all": mean(all_tt, n_planned),
        "mean_waiting_time_all": mean(all_wait, n_planned),
        "mean_time_loss_all": mean(all_loss, n_planned),
        "vehicles_planned": float(n_planned),
        "vehicles_inserted": float(inserted),
        "vehicles_arrived": float(arrived),
        "completion_rate": arrived / n_planned if n_planned else math.nan,
        "throughput_per_hour": arrived / ((end_time - begin) / 3600.0) if end_time > begin else math.nan,
        "teleports": _teleports(statistics_file),
        "mean_reroutes": mean(reroutes, len(seen)),
    }


"""Reading route files back: planned departures (for trip metrics) and a summary.

Works on generated files and on user-supplied ones (`--route-file`), so metrics can count
trips that were planned but never inserted, whichever file a run used.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

log = logging.getLogger(__name__)

# Bookkeeping params the generator writes on each vehicle; SUMO ignores them.
ROUTING_PARAM = "traffic.routing"
KIND_PARAM = "traffic.kind"
LINE_PARAM = "traffic.line"


@dataclass
class TrafficSummary:
    """What a route file holds, counted; `departures` maps vehicle id -> planned depart (s).

    `by_routing_strategy` and `by_route_kind` count passenger (non-bus) vehicles only;
    vehicles of a foreign route file without the generator's params count as "unknown".
    """

    route_file: Path
    num_vehicles: int
    by_vehicle_type: Dict[str, int] = field(default_factory=dict)
    by_routing_strategy: Dict[str, int] = field(default_factory=dict)
    by_route_kind: Dict[str, int] = field(default_factory=dict)
    departures: Dict[str, float] = field(default_factory=dict)
    copied: bool = False


def parse_sumo_time(text: Optional[str]) -> Optional[float]:
    """Seconds of a SUMO time value ("12.5", "01:30:00", "1:00:00:00"); None if symbolic."""
    if text is None:
        return None
    value = text.strip()
    if value == "begin":
        return 0.0
    try:
        if ":" in value:
            parts = [float(p) for p in value.split(":")]
            if len(parts) == 3:
                return parts[0] * 3600 + parts[1] * 60 + parts[2]
            if len(parts) == 4:
                return parts[0] * 86400 + parts[1] * 3600 + parts[2] * 60 + parts[3]
            return None
        return float(value)
    except ValueError:
        return None  # "triggered", "now", ...


def flow_spacing(elem: ET.Element) -> Optional[Tuple[float, Optional[float], float, float]]:
    """(begin, end, period, number) of a flow whose vehicles are known ahead; None for random
    spacing (`probability`, `exp(...)` periods) or an open end (neither `end` nor `number`)."""
    begin = parse_sumo_time(elem.get("begin", "0")) or 0.0
    end = parse_sumo_time(elem.get("end"))
    number = elem.get("number")
    per_hour = elem.get("vehsPerHour", elem.get("perHour"))
    period: Optional[float] = None
    random_spacing = elem.get("probability") is not None or elem.get("period", "").startswith("exp(")
    if not random_spacing:
        if elem.get("period"):
            period = parse_sumo_time(elem.get("period"))
        elif per_hour and float(per_hour) > 0:
            period = 3600.0 / float(per_hour)
        elif number is not None and end is not None and float(number) > 0:
            period = (end - begin) / float(number)
    limit = int(float(number)) if number is not None else math.inf
    if period is None or period <= 0 or (end is None and limit == math.inf):
        return None
    return begin, end, period, limit


def flow_departures(elem: ET.Element) -> Iterator[Tuple[str, float]]:
    """Planned vehicles of a flow with a fixed spacing; random flows cannot be known ahead."""
    fid = elem.get("id", "")
    spacing = flow_spacing(elem)
    if spacing is None:
        log.warning("flow %r has random or open-ended spacing: its vehicles are not in the planned departures", fid)
        return
    begin, end, period, limit = spacing
    i = 0
    t = begin
    while i < limit and (end is None or t < end - 1e-9):
        yield f"{fid}.{i}", t
        i += 1
        t = begin + i * period


def _scan(route_file: Path, with_details: bool) -> TrafficSummary:
    departures: Dict[str, float] = {}
    types: Counter = Counter()
    routing: Counter = Counter()
    kinds: Counter = Counter()
    current: Optional[Dict[str, str]] = None
    params: Dict[str, str] = {}
    root = None
    for event, elem in ET.iterparse(str(route_file), events=("start", "end")):
        if root is None:
            root = elem
        tag = elem.tag
        if event == "start":
            if tag in ("vehicle", "trip") and current is None:
                current = dict(elem.attrib)
                params = {}
            elif tag == "flow" and current is None:
                for vid, t in flow_departures(elem):
                    departures[vid] = t
                    types[elem.get("type", "DEFAULT_VEHTYPE")] += 1
            continue
        if tag == "param" and current is not None and with_details:
            params[elem.get("key", "")] = elem.get("value", "")
        elif tag in ("vehicle", "trip") and current is not None:
            t = parse_sumo_time(current.get("depart"))
            if t is not None:
                departures[current.get("id", "")] = t
                if with_details:
                    types[current.get("type", "DEFAULT_VEHTYPE")] += 1
                    if LINE_PARAM not in params:
                        routing[params.get(ROUTING_PARAM, "unknown")] += 1
                        kinds[params.get(KIND_PARAM, "unknown")] += 1
            current = None
            root.clear()  # keep memory flat on large files
    return TrafficSummary(
        route_file=Path(route_file),
        num_vehicles=len(departures),
        by_vehicle_type=dict(types),
        by_routing_strategy=dict(routing),
        by_route_kind=dict(kinds),
        departures=departures,
    )


def read_planned_departures(route_file: Path) -> Dict[str, float]:
    """Vehicle id -> planned depart time (s) of every vehicle and trip in a route file."""
    return _scan(Path(route_file), with_details=False).departures


def summarize_route_file(route_file: Path) -> TrafficSummary:
    """Counts by vehicle type, routing strategy and route kind, plus planned departures."""
    return _scan(Path(route_file), with_details=True)

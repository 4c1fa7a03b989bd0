"""Recorded demand as training scenarios: find route files, check them, fingerprint them, rotate them.

A scenario may bring its own demand instead of generator keys: `route_files` (one path, a list
or glob patterns) or a study's `.sumocfg`. Everything here runs before any SUMO process or
MLflow run starts, so a bad file stops training with one line naming the scenario and the file
(`RouteFileError`, a `ParameterError`, so the existing one-line handlers print it).

Departure rule: every vehicle must depart inside the episode, at or after its begin and before
its end (SUMO never inserts a vehicle planned at or after the end). By default a file with any
vehicle outside is refused: such a file silently trains on less demand than it describes. A file
of which no vehicle departs inside the episode (7:00-8:00 written as 25200-28800 s, run from 0)
is always refused. Cutting a file to a shorter episode on purpose, or running a study's file as
`sumo -c` runs it (vehicles before its begin or after its end are not inserted), is
`allow_late=True`. A flow without `end` and `number` runs until the
simulation ends by design and is not counted as late.

Rotation: with several files, episode k uses `route_file_for_episode(files, k, order, seed)`,
a pure function of its arguments, so restarted, resumed and parallel envs agree on it.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

from src.params import ParameterError
from src.sumo_integration.sumocfg import StudyConfig, read_sumocfg
from src.traffic.route_file import flow_departures, flow_spacing, parse_sumo_time

PathLike = Union[str, os.PathLike]

#: Orders in which a scenario's route files follow each other, one file per episode.
ROTATION_ORDERS: Tuple[str, ...] = ("sequential", "random")

#: Root elements SUMO loads route files from (a route file may also be given as additional).
_ROOTS = frozenset({"routes", "additional"})
_VEHICLES = frozenset({"vehicle", "trip", "flow"})
_PERSONS = frozenset({"person", "personFlow", "container", "containerFlow"})
_FLOWS = frozenset({"flow", "personFlow", "containerFlow"})
#: Elements whose attributes name edges, and those attributes.
_EDGE_TAGS = frozenset({"route", "vehicle", "trip", "flow", "stop", "walk", "ride", "personTrip",
                        "transport", "tranship"})
_EDGE_ATTRS = ("from", "to", "edge")
_EDGE_LIST_ATTRS = ("edges", "via")
_JUNCTION_ATTRS = ("fromJunction", "toJunction")
#: Depart values SUMO accepts that are not a time.
_SYMBOLIC_DEPARTS = frozenset({"triggered", "containerTriggered", "now", "split"})
_GLOB_CHARS = re.compile(r"[*?\[]")


class RouteFileError(ParameterError):
    """A route file (or a scenario's route-file value) that cannot be used; one line naming it."""


# --- finding the files ---------------------------------------------------------------------------


def _natural_key(path: Path) -> List[Any]:
    """map_2 before map_10: digit runs compare as numbers, so numbered files rotate in order."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(path))]


def resolve_route_files(value: Any, base_dir: PathLike, scenario: str) -> List[Path]:
    """The existing files a scenario's `route_files` names, absolute, sorted, without duplicates.

    `value` is one path, a list of paths, or glob patterns among them (`*`, `?`, `[...]`,
    `**` for sub-folders); relative ones are relative to `base_dir` (the scenarios file's
    folder). Every entry must match a file, so a typo in a list is not silently dropped. The
    result is in natural order (`map_2` before `map_10`), whatever order the list gives:
    the same files always rotate the same way.
    """
    entries = list(value) if isinstance(value, (list, tuple)) else [value]
    if not entries:
        raise RouteFileError(f"scenario {scenario!r}: route_files is an empty list; name a file, a list or a glob")
    base = Path(base_dir)
    found: Dict[Path, None] = {}
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike)) or not str(entry).strip():
            raise RouteFileError(f"scenario {scenario!r}: route_files entry {entry!r} is not a path; "
                                 "give a path, a list of paths or a glob pattern")
        text = os.path.expanduser(str(entry).strip())
        full = text if os.path.isabs(text) else str(base / text)
        if _GLOB_CHARS.search(text):
            matches = [Path(m) for m in glob.glob(full, recursive=True) if Path(m).is_file()]
            if not matches:
                raise RouteFileError(f"scenario {scenario!r}: route_files pattern {text!r} matches no file "
                                     f"(relative to {base})")
        else:
            if not Path(full).is_file():
                where = "" if os.path.isabs(text) else f" (relative to {base})"
                kind = "is a folder, not a file" if Path(full).is_dir() else "does not exist"
                raise RouteFileError(f"scenario {scenario!r}: route file {text!r} {kind}{where}")
            matches = [Path(full)]
        for match in matches:
            found[match.resolve()] = None
    return sorted(found, key=_natural_key)


def read_scenario_sumocfg(value: PathLike, base_dir: PathLike, scenario: str) -> StudyConfig:
    """A scenario's study folder (`sumocfg:`): net, route files, begin/end and run options.

    Relative to `base_dir` like `route_files`; errors name the scenario. Its route files are
    loaded together in every episode, as `sumo -c` does (no rotation).
    """
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = Path(base_dir) / path
    return read_sumocfg(path, label=f"scenario {scenario!r}: sumocfg")


# --- checking one file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteFileRecord:
    """What identifies one route file in a run's record (MLflow): where, which bytes, what demand.

    `vehicles` counts vehicles, trips and the planned vehicles of flows with a fixed spacing
    (random or open-ended flows cannot be counted ahead); `persons` counts persons and
    containers. Departures in seconds; None when the file plans no timed departure.
    """

    path: str
    sha256: str
    size: int
    vehicles: int
    first_departure: Optional[float]
    last_departure: Optional[float]
    persons: int = 0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def file_checksum(path: PathLike) -> str:
    """Hex sha256 of the file's bytes (as `sha256sum` prints), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _net_ids(path: str, mtime_ns: int, size: int) -> Tuple[FrozenSet[str], FrozenSet[str]]:
    import sumolib

    net = sumolib.net.readNet(path)
    edges = frozenset(e.getID() for e in net.getEdges(withInternal=False))
    if not edges:  # sumolib reads any XML, a route file too, as an empty network
        raise ValueError("it has no edges")
    return edges, frozenset(n.getID() for n in net.getNodes())


def network_ids(net_file: PathLike) -> Tuple[FrozenSet[str], FrozenSet[str]]:
    """(edge ids, junction ids) of a net file, read once by sumolib and cached while it is unchanged."""
    path = Path(net_file).resolve()
    try:
        stat = path.stat()
        return _net_ids(str(path), stat.st_mtime_ns, stat.st_size)
    except Exception as err:  # sumolib raises SAX, OSError or its own errors on a broken file
        raise ParameterError(f"network {net_file}: not a readable SUMO net file "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


@dataclass
class _Scan:
    root: str = ""
    vehicles: int = 0
    persons: int = 0
    departures: int = 0  # timed departures seen
    first: Tuple[float, str] = (math.inf, "")
    last: Tuple[float, str] = (-math.inf, "")
    late: int = 0  # at or after the end
    first_late: Tuple[float, str] = (math.inf, "")
    early: int = 0  # before the begin
    first_early: Tuple[float, str] = (math.inf, "")
    unknown_edges: Optional[Dict[str, str]] = None  # edge -> first element using it
    unknown_junctions: Optional[Dict[str, str]] = None
    bad_depart: str = ""


def _label(elem: ET.Element) -> str:
    return f"{elem.tag} {elem.get('id', '?')!r}"


def _note_departure(scan: _Scan, t: float, who: str, begin: float, end: Optional[float]) -> None:
    scan.departures += 1
    scan.first = min(scan.first, (t, who))
    scan.last = max(scan.last, (t, who))
    if end is not None and t >= end:
        scan.late += 1
        scan.first_late = min(scan.first_late, (t, who))
    if t < begin:
        scan.early += 1
        scan.first_early = min(scan.first_early, (t, who))


def _scan_demand(elem: ET.Element, scan: _Scan, begin: float, end: Optional[float]) -> None:
    """Count one vehicle/trip/flow/person and check its departure(s) against [begin, end)."""
    tag, who = elem.tag, _label(elem)
    if tag in _FLOWS:
        start = parse_sumo_time(elem.get("begin", "0"))
        stop = parse_sumo_time(elem.get("end")) if elem.get("end") is not None else None
        if start is None:
            scan.bad_depart = scan.bad_depart or f"{who} has begin {elem.get('begin')!r}, which is not a time"
            return
        planned = 0
        if tag == "flow" and flow_spacing(elem) is not None:  # fixed spacing: every vehicle is known
            for vid, t in flow_departures(elem):
                planned += 1
                _note_departure(scan, t, f"{who} (vehicle {vid!r})", begin, end)
            scan.vehicles += planned
        elif tag != "flow":
            scan.persons += int(float(elem.get("number", 0) or 0))
        if not planned:  # random or open-ended spacing: the ends of its interval stand for it
            _note_departure(scan, start, who, begin, end)
            if stop is not None and stop > start:
                _note_departure(scan, math.nextafter(stop, -math.inf), who, begin, end)
        return
    if tag in _VEHICLES:
        scan.vehicles += 1
    else:
        scan.persons += 1
    depart = elem.get("depart")
    if depart is None:
        scan.bad_depart = scan.bad_depart or f"{who} has no depart time"
        return
    t = parse_sumo_time(depart)
    if t is None:
        if depart.strip() not in _SYMBOLIC_DEPARTS:
            scan.bad_depart = scan.bad_depart or f"{who} has depart {depart!r}, which is not a time"
        return
    _note_departure(scan, t, who, begin, end)


def _check_references(elem: ET.Element, owner: str, edges: FrozenSet[str], junctions: FrozenSet[str],
                      scan: _Scan) -> None:
    """Note every edge and junction `elem` names that the network lacks (SUMO would refuse them)."""
    assert scan.unknown_edges is not None and scan.unknown_junctions is not None
    names: List[str] = [elem.get(a) for a in _EDGE_ATTRS if elem.get(a)]  # type: ignore[misc]
    for attr in _EDGE_LIST_ATTRS:
        names += (elem.get(attr) or "").split()
    if elem.tag == "stop" and elem.get("lane"):
        names.append(elem.get("lane", "").rsplit("_", 1)[0])
    for name in names:
        if name not in edges and name not in scan.unknown_edges:
            scan.unknown_edges[name] = owner
    for attr in _JUNCTION_ATTRS:
        name = elem.get(attr)
        if name and name not in junctions and name not in scan.unknown_junctions:
            scan.unknown_junctions[name] = owner
    for name in (elem.get("viaJunctions") or "").split():
        if name not in junctions and name not in scan.unknown_junctions:
            scan.unknown_junctions[name] = owner


def _scan_file(path: Path, edges: Optional[FrozenSet[str]], junctions: FrozenSet[str], begin: float,
               end: Optional[float]) -> _Scan:
    """One streaming pass over the file; raises ET.ParseError if it is not XML."""
    scan = _Scan(unknown_edges={}, unknown_junctions={})
    owners: List[str] = []  # per open element: the top-level element it belongs to (for messages)
    root: Optional[ET.Element] = None
    for event, elem in ET.iterparse(str(path), events=("start", "end")):
        if event == "start":
            if root is None:
                root, scan.root = elem, elem.tag
                if elem.tag not in _ROOTS:
                    return scan
                owners.append("")
            else:
                owners.append(owners[-1] or _label(elem))
            continue
        owner = owners.pop()
        if edges is not None and elem.tag in _EDGE_TAGS:
            _check_references(elem, owner, edges, junctions, scan)
        if len(owners) == 1:  # a top-level element is complete
            if elem.tag in _VEHICLES or elem.tag in _PERSONS:
                _scan_demand(elem, scan, begin, end)
            root.clear()  # type: ignore[union-attr]  # memory stays flat on long files
    return scan


def _fmt(t: float) -> str:
    return f"{t:g} s"


def _check_scan(scan: _Scan, path: Path, where: str, net_file: Optional[PathLike], begin: float,
                end: Optional[float], allow_late: bool, require_demand: bool) -> None:
    if scan.root not in _ROOTS:
        raise RouteFileError(f"{where}: root element <{scan.root}>, not <routes>: not a route file")
    if scan.bad_depart:
        raise RouteFileError(f"{where}: {scan.bad_depart}")
    if require_demand and scan.vehicles + scan.persons == 0 and scan.departures == 0:
        raise RouteFileError(f"{where}: no vehicle, trip, flow or person: nothing to simulate")
    if scan.unknown_edges:
        edge, user = next(iter(scan.unknown_edges.items()))
        more = len(scan.unknown_edges) - 1
        raise RouteFileError(f"{where}: edge {edge!r} ({user}) is not in the network {net_file}"
                             + (f"; {more} more unknown edge{'s' if more > 1 else ''}" if more else ""))
    if scan.unknown_junctions:
        node, user = next(iter(scan.unknown_junctions.items()))
        raise RouteFileError(f"{where}: junction {node!r} ({user}) is not in the network {net_file}")
    if scan.departures and scan.early + scan.late == scan.departures:
        span = f"[{_fmt(begin)}, {_fmt(end)})" if end is not None else f"from {_fmt(begin)}"
        raise RouteFileError(f"{where}: no vehicle departs inside the episode {span} (departures "
                             f"{_fmt(scan.first[0])} to {_fmt(scan.last[0])}); set begin and end_time to the "
                             "file's time span or shift its departures")
    if scan.early and not allow_late:
        t, who = scan.first_early
        raise RouteFileError(f"{where}: {scan.early} departure{'s' if scan.early > 1 else ''} before the episode "
                             f"begin {_fmt(begin)} (first: {who} at {_fmt(t)})")
    if end is not None and scan.late:
        if not allow_late:
            t, who = scan.first_late
            raise RouteFileError(f"{where}: {scan.late} of {scan.departures} departures at or after the episode end "
                                 f"{_fmt(end)} (first: {who} at {_fmt(t)}, last at {_fmt(scan.last[0])}); "
                                 "vehicles must depart within the episode: raise end_time or cut the file")


def validate_route_file(
    path: PathLike,
    net_file: Optional[PathLike],
    end_time: Optional[float],
    *,
    begin: float = 0.0,
    scenario: Optional[str] = None,
    allow_late: bool = False,
    require_demand: bool = True,
) -> RouteFileRecord:
    """Check `path` against the network and the episode; its record, or RouteFileError (one line).

    Refused: a missing file, not XML, a root other than <routes>/<additional>, no vehicle,
    trip, flow or person (unless `require_demand` is False: `route_file_record` only
    describes a file), an edge or junction the network `net_file` lacks (None skips this),
    a depart that is no time, departures before `begin` or at/after `end_time` (see the
    module's departure rule; None skips the end check). The message names the scenario when
    given, and the file.
    """
    path = Path(path)
    where = (f"scenario {scenario!r}: " if scenario else "") + f"route file {path}"
    if not path.is_file():
        raise RouteFileError(f"{where}: does not exist")
    if path.stat().st_size == 0:
        raise RouteFileError(f"{where}: empty file (0 bytes): nothing to simulate")
    edges, junctions = network_ids(net_file) if net_file is not None else (None, frozenset())
    end = float(end_time) if end_time is not None else None
    try:
        scan = _scan_file(path, edges, junctions, float(begin), end)
    except ET.ParseError as err:
        raise RouteFileError(f"{where}: not XML ({err})") from None
    _check_scan(scan, path, where, net_file, float(begin), end, allow_late, require_demand)
    return RouteFileRecord(
        path=str(path.resolve()),
        sha256=file_checksum(path),
        size=path.stat().st_size,
        vehicles=scan.vehicles,
        first_departure=scan.first[0] if scan.departures else None,
        last_departure=scan.last[0] if scan.departures else None,
        persons=scan.persons,
    )


def validate_route_files(files: Iterable[PathLike], net_file: Optional[PathLike], end_time: Optional[float], *,
                         begin: float = 0.0, scenario: Optional[str] = None,
                         allow_late: bool = False) -> List[RouteFileRecord]:
    """`validate_route_file` for each file of a rotation (each must hold demand of its own)."""
    return [validate_route_file(f, net_file, end_time, begin=begin, scenario=scenario, allow_late=allow_late)
            for f in files]


def route_file_record(path: PathLike) -> RouteFileRecord:
    """The record of a file without checking it against a network or an episode (for logging)."""
    return validate_route_file(path, None, None, require_demand=False)


# --- rotation ------------------------------------------------------------------------------------


def _shuffled(n: int, seed: int, block: int) -> List[int]:
    """A permutation of range(n) that depends on (seed, block) only: sha256 ranks, any platform."""
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{block}:{i}".encode()).digest())


def route_file_for_episode(files: Sequence[PathLike], episode: int, order: str = "sequential",
                           seed: int = 0) -> Path:
    """The route file of episode `episode` (0-based) of a rotation over `files`.

    `sequential`: files[episode % n]. `random`: episodes come in blocks of n; each block
    uses every file once, in an order shuffled by (seed, block), so all files are used
    equally and no state is kept: any process computes the same file for the same episode.
    """
    if order not in ROTATION_ORDERS:
        raise ParameterError(f"route file order {order!r}; allowed: {', '.join(ROTATION_ORDERS)}")
    if not files:
        raise ValueError("no route files to rotate")
    if isinstance(episode, bool) or int(episode) != episode or episode < 0:
        raise ValueError(f"episode must be an integer >= 0, got {episode!r}")
    n, k = len(files), int(episode)
    if order == "sequential" or n == 1:
        return Path(files[k % n])
    return Path(files[_shuffled(n, int(seed), k // n)[k % n]])

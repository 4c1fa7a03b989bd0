"""Build a network folder (net file, signal programs, edge roles, attractiveness) from parameters.

Everything random is drawn from `network_seed` through separate streams, and the files
carry no dates or paths, so the same parameters always give byte-identical files. All
parameter checks run before the first SUMO tool starts.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from src.network import grid as grid_mod
from src.network.artifacts import NET_FILE_NAME, NetworkArtifacts
from src.network.land_use import LandUse, edge_land_use_weights, generate_land_use
from src.network.netfile import NetInfo, edge_roles, read_net, shortest_edge_path, successor_map
from src.network.signals import Program, build_programs, strip_header, write_programs, write_tll_file
from src.params import (
    DEFAULT_CYCLE_LENGTH,
    DEFAULT_MIN_GREEN,
    DEFAULT_YELLOW_TIME,
    KEEP_PROGRAMS,
    MAX_LAND_USE_CELLS,
    PERIOD_NAMES,
    NetworkParams,
    check_signal_timing,
    invalid_value,
    resolved_attractiveness,
    resolved_signal_programs,
)

logger = logging.getLogger(__name__)

LAND_USE_FILE = "land_use.json"
LAND_USE_POLY_FILE = "land_use.poly.xml"
POISSON_LAMBDA = 5.0  # mean of the per-edge weights of `--attractiveness poisson` (plus 1)
MIN_WEIGHT = 1e-3  # floor of every attractiveness weight: all edges stay possible ends

# Independent random streams drawn from network_seed (removal uses network_seed itself).
_STREAM_LAND_USE, _STREAM_POISSON, _STREAM_LANES = 1, 2, 3


@dataclass(frozen=True)
class _Checked:
    """Parameters after validation, normalised to their parsed types."""

    lane_count: Union[str, int]
    removal: Union[int, Tuple[str, ...]]
    net_file: Optional[Path]


def validate_network_params(
    params: NetworkParams, yellow_time: int = DEFAULT_YELLOW_TIME, min_green: int = DEFAULT_MIN_GREEN,
    cycle_length: int = DEFAULT_CYCLE_LENGTH,
) -> _Checked:
    """The checks that need the grid itself (which junctions exist and can go) and the signal
    timing the programs are built with; `params` checked its own values when it was made."""
    check_signal_timing(params, yellow_time, min_green, cycle_length)
    if params.net_file is not None:
        return _Checked(lane_count=params.lane_count, removal=0, net_file=Path(params.net_file))
    removal = params.junctions_to_remove
    grid_mod.choose_removed_junctions(int(params.grid_dimension), removal, int(params.network_seed))
    return _Checked(lane_count=params.lane_count, removal=removal, net_file=None)


# --- shared steps ----------------------------------------------------------------------------


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _attractiveness(
    method: str, edges: Sequence[str], land_weights: Dict[str, Dict[str, np.ndarray]], seed: int
) -> Dict[str, Dict[str, List[float]]]:
    """depart/arrive weight per period for every edge, all > 0."""
    periods = len(PERIOD_NAMES)
    ids = sorted(edges)
    result: Dict[str, Dict[str, List[float]]] = {}
    if method == "land_use":
        for e in ids:
            w = land_weights[e]
            result[e] = {k: [round(max(float(v), MIN_WEIGHT), 4) for v in w[k]] for k in ("depart", "arrive")}
    elif method == "poisson":
        draws = _rng(seed, _STREAM_POISSON).poisson(POISSON_LAMBDA, size=(len(ids), 2)) + 1
        for e, (dep, arr) in zip(ids, draws):
            result[e] = {"depart": [float(dep)] * periods, "arrive": [float(arr)] * periods}
    else:
        for e in ids:
            result[e] = {"depart": [1.0] * periods, "arrive": [1.0] * periods}
    return result


def _check_route(info: NetInfo, route: List[str]) -> bool:
    pairs = {(c.from_edge, c.to_edge) for c in info.connections}
    return all((a, b) in pairs for a, b in zip(route, route[1:]))


def _route_lines(info: NetInfo, roads: Sequence[str], ends: Sequence[Tuple[str, str]]) -> List[List[str]]:
    """Shortest edge paths for (start, goal) pairs; pairs without a path are skipped."""
    succ = successor_map(info, roads)
    lines: List[List[str]] = []
    for start, goal in ends:
        path = shortest_edge_path(info, succ, start, goal)
        if path and len(path) >= 2 and _check_route(info, path):
            lines.append(path)
        else:
            logger.warning("bus line %s -> %s has no route; skipped", start, goal)
    return lines


def _grid_bus_lines(info: NetInfo, roads: Sequence[str], dim: int) -> List[List[str]]:
    """Both directions along a few evenly spaced rows and columns, fringe to fringe."""
    k = max(1, dim // 3)
    picks = sorted({int(round((i + 1) * (dim - 1) / (k + 1))) for i in range(k)})
    by_ends = {(info.edges[e].from_node, info.edges[e].to_node): e for e in roads}
    last = chr(ord("A") + dim - 1)
    ends: List[Tuple[str, str]] = []
    for idx in picks:
        col = chr(ord("A") + idx)
        streets = [  # (entry fringe, first junction, last junction, exit fringe)
            (f"left{idx}", f"A{idx}", f"{last}{idx}", f"right{idx}"),
            (f"right{idx}", f"{last}{idx}", f"A{idx}", f"left{idx}"),
            (f"bottom{idx}", f"{col}0", f"{col}{dim - 1}", f"top{idx}"),
            (f"top{idx}", f"{col}{dim - 1}", f"{col}0", f"bottom{idx}"),
        ]
        for f_in, j_in, j_out, f_out in streets:
            start, goal = by_ends.get((f_in, j_in)), by_ends.get((j_out, f_out))
            if start and goal:
                ends.append((start, goal))
            else:
                logger.info("no bus line from %s to %s: its end junction was removed", f_in, f_out)
    return _route_lines(info, roads, ends)


def _generic_bus_lines(info: NetInfo, ins: Sequence[str], outs: Sequence[str], roads: Sequence[str]) -> List[List[str]]:
    """Up to four lines from entries spread around the network to the farthest exit."""
    if not ins or not outs:
        return []
    xmin, ymin, xmax, ymax = info.bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2

    def xy(node: str) -> Tuple[float, float]:
        j = info.junctions.get(node)
        return (j[1], j[2]) if j else (cx, cy)

    by_angle = sorted(ins, key=lambda e: (math.atan2(xy(info.edges[e].from_node)[1] - cy,
                                                     xy(info.edges[e].from_node)[0] - cx), e))
    count = min(4, len(by_angle))
    starts = [by_angle[int(i * len(by_angle) / count)] for i in range(count)]
    ends = []
    for s in starts:
        sx, sy = xy(info.edges[s].from_node)
        goal = max(outs, key=lambda e: (round(math.hypot(xy(info.edges[e].to_node)[0] - sx,
                                                         xy(info.edges[e].to_node)[1] - sy), 3), e))
        ends.append((s, goal))
    return _route_lines(info, roads, ends)


def bus_lines_of(network: NetworkArtifacts) -> List[List[str]]:
    """The network's bus lines; a given net file's are drawn here, from entries to far exits."""
    if network.bus_lines or not network.bus_lines_on_demand:
        return [list(line) for line in network.bus_lines]
    info = read_net(network.net_file)
    return _generic_bus_lines(info, network.boundary_in_edges, network.boundary_out_edges, info.road_edges())


def _install_programs(
    source: Path, target: Path, strategy: str, timings: Tuple[int, int, int], work_dir: Path
) -> Tuple[NetInfo, Dict[str, Program]]:
    """Write `target` = `source` with programs of `strategy`, junction logic rebuilt to match.

    netconvert recomputes which links yield to which from the programs it is given; a
    program pasted into a net built for another program can leave two green links each
    waiting for the other (SUMO warns of "mutual conflict"). So the net is passed through
    netconvert once more with our programs; should that fail or renumber the signal links,
    the programs are written into a copy of `source` instead.
    """
    yellow_time, min_green, cycle_length = timings
    info = read_net(source)
    programs = build_programs(info, strategy, yellow_time, min_green, cycle_length)
    tll = work_dir / "signals.tll.xml"
    write_tll_file(tll, programs)
    try:
        grid_mod.run_tool("netconvert", [
            "--sumo-net-file", str(source), "--tllogic-files", str(tll), "--output-file", str(target),
        ])
        strip_header(target)
        new_info = read_net(target)
        if build_programs(new_info, strategy, yellow_time, min_green, cycle_length) == programs:
            return new_info, programs
        logger.warning("netconvert renumbered the signal links of %s; writing the programs directly", source)
    except RuntimeError as exc:
        logger.warning("netconvert could not rebuild %s with new programs (%s); writing them directly", source, exc)
    shutil.copyfile(source, target)
    write_programs(target, programs)
    return read_net(target), programs


def _write_land_use(land: LandUse, out_dir: Path) -> None:
    land.write_json(out_dir / LAND_USE_FILE)
    land.write_polygons(out_dir / LAND_USE_POLY_FILE)


# --- the two ways of building ----------------------------------------------------------------


def _build_grid(
    params: NetworkParams, checked: _Checked, out_dir: Path, yellow_time: int, min_green: int, cycle_length: int
) -> NetworkArtifacts:
    dim, block, seed = int(params.grid_dimension), float(params.block_size_m), int(params.network_seed)
    removed = grid_mod.choose_removed_junctions(dim, checked.removal, seed)
    plain_dir = out_dir / "plain"
    plain_dir.mkdir(parents=True, exist_ok=True)
    grid = grid_mod.generate_grid(dim, block, plain_dir, removed)
    xs = [p[0] for p in grid.nodes.values()]
    ys = [p[1] for p in grid.nodes.values()]
    full = dim * block  # the whole grid incl. attach edges, also if border junctions are gone
    bounds = (0.0, 0.0, max(full, max(xs)), max(full, max(ys)))
    land = generate_land_use(bounds, float(params.land_use_block_size_m), _rng(seed, _STREAM_LAND_USE))
    land_weights = edge_land_use_weights(land, grid.polylines(), radius=block / 2.0)

    strategy = resolved_signal_programs(params)
    minimum = 2 if strategy == "partial_opposites" else 1
    if isinstance(checked.lane_count, int):
        grid.lanes = {e: checked.lane_count for e in grid.edges}
    elif checked.lane_count == "random":
        grid.lanes = grid_mod.lane_counts_random(list(grid.edges), _rng(seed, _STREAM_LANES), minimum)
    else:  # realistic: always from the land-use demand, whatever the attractiveness method
        totals = {e: float(w["depart"].sum() + w["arrive"].sum()) for e, w in land_weights.items()}
        grid.lanes = grid_mod.lane_counts_realistic(totals, minimum)

    nod, edg, con = grid_mod.write_plain(grid, plain_dir)
    base_net = plain_dir / "base.net.xml"
    grid_mod.run_netconvert(nod, edg, con, base_net)
    info, programs = _install_programs(base_net, out_dir / NET_FILE_NAME, strategy,
                                       (yellow_time, min_green, cycle_length), plain_dir)
    base_net.unlink()

    roads = info.road_edges()
    ins, outs, inner = edge_roles(info, roads, fringe=grid.fringe)
    _write_land_use(land, out_dir)
    return NetworkArtifacts(
        directory=out_dir,
        boundary_in_edges=ins,
        boundary_out_edges=outs,
        inner_edges=inner,
        attractiveness=_attractiveness(resolved_attractiveness(params), roads, land_weights, seed),
        signalized_junctions=sorted(programs),
        removed_junctions=list(removed),
        lane_counts={e: info.edges[e].num_lanes for e in roads},
        bus_lines=_grid_bus_lines(info, roads, dim),
        bounds=tuple(float(v) for v in info.bounds),  # type: ignore[arg-type]
    )


def _file_land_use(params: NetworkParams, info: NetInfo, roads: List[str], inner: List[str],
                   out_dir: Path) -> Dict[str, Dict[str, np.ndarray]]:
    """Synthetic land use over a given net's area (only when trip ends are asked to follow it)."""
    lengths = [info.edges[e].length for e in (inner or roads)]
    cell = float(params.land_use_block_size_m)
    xmin, ymin, xmax, ymax = info.bounds
    cells = math.ceil(max(xmax - xmin, cell) / cell) * math.ceil(max(ymax - ymin, cell) / cell)
    if cells > MAX_LAND_USE_CELLS:
        raise invalid_value("--land_use_block_size_m", params.land_use_block_size_m,
                    f"gives {cells} cells over the --net-file area; at most {MAX_LAND_USE_CELLS}, use larger cells")
    radius = max(cell, float(np.median(lengths)) / 2.0)
    land = generate_land_use(info.bounds, cell, _rng(int(params.network_seed), _STREAM_LAND_USE))
    _write_land_use(land, out_dir)
    return edge_land_use_weights(land, {e: info.edges[e].shape for e in roads}, radius)


def _build_from_file(
    params: NetworkParams, checked: _Checked, out_dir: Path, yellow_time: int, min_green: int, cycle_length: int,
    synthetic_demand: Optional[bool] = None,
) -> NetworkArtifacts:
    assert checked.net_file is not None
    seed = int(params.network_seed)
    net_file = out_dir / NET_FILE_NAME
    work_dir = out_dir / "plain"
    work_dir.mkdir(parents=True, exist_ok=True)
    source = work_dir / "source.net.xml"
    shutil.copyfile(checked.net_file, source)
    try:
        info = read_net(source)
    except ET.ParseError as exc:
        raise invalid_value("--net-file", str(checked.net_file), f"not a readable SUMO net file ({exc})") from None
    roads = info.road_edges()
    if not roads:
        raise invalid_value("--net-file", str(checked.net_file), "the network has no edges open to passenger cars")
    if params.lane_count != "realistic":
        logger.info("--lane_count is ignored with --net-file: its lanes are kept")
    ins, outs, inner = edge_roles(info, roads)
    attractiveness = resolved_attractiveness(params)
    if synthetic_demand and params.attractiveness is None:
        attractiveness = "land_use"  # asked for synthetic demand: trip ends follow its land use
    land_weights = _file_land_use(params, info, roads, inner, out_dir) if attractiveness == "land_use" else {}
    strategy = resolved_signal_programs(params)
    if strategy == KEEP_PROGRAMS:  # the file as given: its own programs, byte for byte
        shutil.copyfile(checked.net_file, net_file)
        signals = info.tl_ids
    else:
        info, programs = _install_programs(source, net_file, strategy, (yellow_time, min_green, cycle_length), work_dir)
        signals = sorted(programs)
    source.unlink()
    if not any(work_dir.iterdir()):  # kept programs need no work files
        work_dir.rmdir()
    return NetworkArtifacts(
        directory=out_dir,
        boundary_in_edges=ins,
        boundary_out_edges=outs,
        inner_edges=inner,
        # no weights at all without synthetic demand: a generated scenario would draw trip ends uniformly
        attractiveness={} if synthetic_demand is False else _attractiveness(attractiveness, roads, land_weights, seed),
        signalized_junctions=signals,
        removed_junctions=[],
        lane_counts={e: info.edges[e].num_lanes for e in roads},
        bus_lines=_generic_bus_lines(info, ins, outs, roads) if synthetic_demand else [],
        bus_lines_on_demand=synthetic_demand is None,  # default: drawn only when a scenario asks for buses
        bounds=tuple(float(v) for v in info.bounds),  # type: ignore[arg-type]
    )


def build_network(
    params: NetworkParams,
    out_dir: Path,
    yellow_time: int = DEFAULT_YELLOW_TIME,
    min_green: int = DEFAULT_MIN_GREEN,
    cycle_length: int = DEFAULT_CYCLE_LENGTH,
    synthetic_demand: Optional[bool] = None,
) -> NetworkArtifacts:
    """Build (or adopt, with `params.net_file`) a network into `out_dir` and save its artifacts.

    The grid path runs netgenerate, edits the plain XML (removed junctions, lanes, lane
    connections), runs netconvert and writes the signal programs of the traffic-light
    strategy. `out_dir` gets network.net.xml, network.json, land_use.json,
    land_use.poly.xml and the plain XML under plain/.

    Choices worth knowing: with `partial_opposites` the random and realistic lane counts
    start at 2 (left turns need their own lane); a grid junction left with at most two
    neighbours after removal is a plain priority junction, not a signal; signals allow no
    U-turns (vehicles go round a block) unless the streets need one to stay connected;
    `realistic` lanes
    follow the land-use demand whatever the attractiveness method. With `net_file` the
    file is kept as given (`signal_programs` keep, the default) or only its signal
    programs are rebuilt (a strategy).

    `synthetic_demand` says whether a given net file gets what only the traffic generator
    uses: synthetic land use and bus lines. None (default): only what is asked for (land use
    with attractiveness land_use; bus lines drawn when a scenario asks for buses). False:
    none of it, for networks fed by route files: no land use, no attractiveness weights,
    no bus lines (a scenario asking for buses is refused; attractiveness land_use too).
    True: both at build time (attractiveness land_use unless another is set, the bus lines
    saved with the network). A generated grid always has both, its lanes follow the land use.
    """
    started = time.perf_counter()
    if synthetic_demand not in (None, True, False):
        raise TypeError(f"synthetic_demand must be None, True or False, not {synthetic_demand!r}")
    checked = validate_network_params(params, yellow_time, min_green, cycle_length)
    if checked.net_file is None and synthetic_demand is False:
        raise ValueError("synthetic_demand=False is for a given net file; a generated grid always has land use "
                         "and bus lines (its lane counts follow the land use)")
    if synthetic_demand is False and params.attractiveness == "land_use":
        raise invalid_value("--attractiveness", params.attractiveness,
                            "this network is built without synthetic demand (route files), so it has no land use")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if checked.net_file is not None:
        artifacts = _build_from_file(params, checked, out_dir, yellow_time, min_green, cycle_length, synthetic_demand)
    else:
        artifacts = _build_grid(params, checked, out_dir, yellow_time, min_green, cycle_length)
    artifacts.save()
    logger.info(
        "network built in %.2f s: %d edges, %d signals, %d removed junctions, %s -> %s",
        time.perf_counter() - started, len(artifacts.lane_counts), len(artifacts.signalized_junctions),
        len(artifacts.removed_junctions),
        "bus lines on demand" if artifacts.bus_lines_on_demand else f"{len(artifacts.bus_lines)} bus lines", out_dir,
    )
    return artifacts

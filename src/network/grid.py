"""The synthetic grid: junction removal, netgenerate, and the edited plain XML for netconvert.

Removal is decided on an abstract model of the grid netgenerate will produce (junctions
A0.., fringe nodes left0/right0/bottom0/top0..), so invalid requests fail before any SUMO
tool runs. netgenerate's plain output is then edited in Python: removed junctions and
dangling fringe nodes go, junction types, lane counts and lane-to-lane connections are set
explicitly (left turns get the left-most lane to themselves once an edge has 2+ lanes, no
U-turns at signals unless the streets need one to stay connected).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Set, Tuple, Union

import numpy as np

from src.params import ParameterError, grid_junction_ids
from src.sumo_integration.tools import run_tool

logger = logging.getLogger(__name__)


# --- abstract grid ---------------------------------------------------------------------------


def _letter(col: int) -> str:
    return chr(ord("A") + col)


def grid_adjacency(dim: int) -> Dict[str, List[str]]:
    """Undirected neighbours of every node netgenerate makes for a dim x dim grid."""
    adj: Dict[str, Set[str]] = {}

    def link(a: str, b: str) -> None:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)

    for c in range(dim):
        for r in range(dim):
            node = f"{_letter(c)}{r}"
            adj.setdefault(node, set())
            if c + 1 < dim:
                link(node, f"{_letter(c + 1)}{r}")
            if r + 1 < dim:
                link(node, f"{_letter(c)}{r + 1}")
        link(f"{_letter(c)}0", f"bottom{c}")
        link(f"{_letter(c)}{dim - 1}", f"top{c}")
    for r in range(dim):
        link(f"A{r}", f"left{r}")
        link(f"{_letter(dim - 1)}{r}", f"right{r}")
    return {k: sorted(v) for k, v in adj.items()}


def interior_junctions(dim: int) -> List[str]:
    """Grid junctions off the border: the candidates of a random removal."""
    return [f"{_letter(c)}{r}" for c in range(1, dim - 1) for r in range(1, dim - 1)]


def remaining_nodes(adj: Dict[str, List[str]], removed: Iterable[str], junctions: Set[str]) -> Set[str]:
    """Junctions left after removal plus the fringe nodes still attached to one of them."""
    gone = set(removed)
    keep = {j for j in junctions if j not in gone}
    fringe = {n for n in adj if n not in junctions and any(nb in keep for nb in adj[n])}
    return keep | fringe


def _is_connected(adj: Dict[str, List[str]], nodes: Set[str]) -> bool:
    """Two-way streets everywhere, so strong connectivity is plain connectivity."""
    if not nodes:
        return False
    start = min(nodes)
    seen = {start}
    queue = deque([start])
    while queue:
        n = queue.popleft()
        for nb in adj[n]:
            if nb in nodes and nb not in seen:
                seen.add(nb)
                queue.append(nb)
    return len(seen) == len(nodes)


def choose_removed_junctions(dim: int, spec: Union[int, Tuple[str, ...]], seed: int) -> List[str]:
    """Validate and resolve --junctions_to_remove to a sorted list of junction IDs."""
    option = "--junctions_to_remove"
    adj = grid_adjacency(dim)
    junctions = set(grid_junction_ids(dim))
    if isinstance(spec, int):
        candidates = interior_junctions(dim)
        if spec < 0 or spec > len(candidates):
            raise ParameterError(
                f"{option}: invalid value {spec!r}; a {dim}x{dim} grid has {len(candidates)} removable "
                f"(non-border) junctions, give a count 0-{len(candidates)}"
            )
        if spec == 0:
            return []
        rng = np.random.default_rng(seed)
        for _attempt in range(50):
            removed: List[str] = []
            for cand in rng.permutation(candidates):
                if len(removed) == spec:
                    break
                trial = removed + [str(cand)]
                if _is_connected(adj, remaining_nodes(adj, trial, junctions)):
                    removed = trial
            if len(removed) == spec:
                return sorted(removed)
        raise ParameterError(
            f"{option}: invalid value {spec!r}; cannot remove that many junctions of a {dim}x{dim} grid "
            "and keep it connected, give a smaller count"
        )
    ids = list(dict.fromkeys(spec))
    valid = grid_junction_ids(dim)
    unknown = [j for j in ids if j not in junctions]
    if unknown:
        examples = ", ".join(valid[:3] + valid[-1:])
        raise ParameterError(
            f"{option}: invalid value {','.join(spec)!r}; unknown junction(s) {', '.join(unknown)}; "
            f"a {dim}x{dim} grid has {valid[0]}..{valid[-1]} (e.g. {examples})"
        )
    if not _is_connected(adj, remaining_nodes(adj, ids, junctions)):
        raise ParameterError(
            f"{option}: invalid value {','.join(spec)!r}; removing these junctions disconnects the grid, "
            "choose junctions whose removal leaves every junction reachable"
        )
    return sorted(ids)


# --- netgenerate and plain XML ---------------------------------------------------------------


@dataclass
class PlainGrid:
    """Nodes and edges of the grid after removal, ready to be written as plain XML."""

    nodes: Dict[str, Tuple[float, float]]  # id -> (x, y)
    node_types: Dict[str, str]
    edges: Dict[str, Tuple[str, str]]  # id -> (from, to)
    fringe: Set[str]
    speed: float = 13.89
    lanes: Dict[str, int] = field(default_factory=dict)

    def polylines(self) -> Dict[str, np.ndarray]:
        return {e: np.array([self.nodes[a], self.nodes[b]]) for e, (a, b) in self.edges.items()}


def generate_grid(dim: int, block: float, out_dir: Path, removed: Sequence[str]) -> PlainGrid:
    """Run netgenerate and return its grid minus the removed junctions and dangling fringe."""
    prefix = out_dir / "grid_raw"
    run_tool("netgenerate", [
        "--grid", "--grid.number", str(dim), "--grid.length", f"{block:g}",
        "--grid.attach-length", f"{block / 2.0:g}", "--plain-output-prefix", str(prefix),
        "--output-file", os.devnull,
    ])
    nodes: Dict[str, Tuple[float, float]] = {}
    for elem in ET.parse(f"{prefix}.nod.xml").getroot().iter("node"):
        nodes[elem.attrib["id"]] = (float(elem.attrib["x"]), float(elem.attrib["y"]))
    edges: Dict[str, Tuple[str, str]] = {}
    speed = 13.89
    for elem in ET.parse(f"{prefix}.edg.xml").getroot().iter("edge"):
        edges[elem.attrib["id"]] = (elem.attrib["from"], elem.attrib["to"])
        speed = float(elem.attrib.get("speed", speed))
    for suffix in ("nod", "edg", "con", "tll"):
        Path(f"{prefix}.{suffix}.xml").unlink(missing_ok=True)
    expected = grid_adjacency(dim)
    if set(nodes) != set(expected):
        raise RuntimeError("netgenerate produced unexpected node IDs; the grid model is out of date")
    junctions = set(grid_junction_ids(dim))
    keep = remaining_nodes(expected, removed, junctions)
    nodes = {n: xy for n, xy in nodes.items() if n in keep}
    edges = {e: ft for e, ft in edges.items() if ft[0] in keep and ft[1] in keep}
    fringe = {n for n in nodes if n not in junctions}
    degree: Dict[str, Set[str]] = {n: set() for n in nodes}
    for a, b in edges.values():
        degree[a].add(b)
        degree[b].add(a)
    types = {}
    for n in nodes:
        if n in fringe:
            types[n] = "dead_end"
        else:  # a bend or a dead end has no conflicts to signal
            types[n] = "traffic_light" if len(degree[n]) >= 3 else "priority"
    return PlainGrid(nodes=nodes, node_types=types, edges=edges, fringe=fringe, speed=speed)


def _turn(p_from: Tuple[float, float], p_via: Tuple[float, float], p_to: Tuple[float, float]) -> str:
    """Movement class of from->via->to: 's', 'r', 'l' or 't' (U-turn), right-hand traffic."""
    ax, ay = p_via[0] - p_from[0], p_via[1] - p_from[1]
    bx, by = p_to[0] - p_via[0], p_to[1] - p_via[1]
    cross, dot = ax * by - ay * bx, ax * bx + ay * by
    norm = max(np.hypot(ax, ay) * np.hypot(bx, by), 1e-9)
    if abs(cross) / norm < 0.3:
        return "s" if dot > 0 else "t"
    return "l" if cross > 0 else "r"


def _lane_map(from_lanes: List[int], target_lanes: int, align_left: bool) -> List[Tuple[int, int]]:
    """Pair source lanes with target lanes, right-aligned (or left-aligned for left turns)."""
    if align_left:
        return [(fl, max(target_lanes - 1 - j, 0)) for j, fl in enumerate(reversed(from_lanes))]
    return [(fl, min(j, target_lanes - 1)) for j, fl in enumerate(from_lanes)]


def _inner_neighbours(grid: PlainGrid) -> Dict[str, Set[str]]:
    """Non-fringe neighbours of every non-fringe node (the street graph trips move on)."""
    nb: Dict[str, Set[str]] = {n: set() for n in grid.nodes if n not in grid.fringe}
    for a, b in grid.edges.values():
        if a not in grid.fringe and b not in grid.fringe:
            nb[a].add(b)
            nb[b].add(a)
    return nb


def _movements(grid: PlainGrid) -> Dict[str, Dict[str, List[str]]]:
    """Edge -> movement class ('r', 's', 'l', 't') -> outgoing edges at its end node."""
    outgoing: Dict[str, List[str]] = {}
    for eid, (a, _b) in sorted(grid.edges.items()):
        outgoing.setdefault(a, []).append(eid)
    result: Dict[str, Dict[str, List[str]]] = {}
    for eid, (a, b) in sorted(grid.edges.items()):
        if b in grid.fringe:
            continue
        moves: Dict[str, List[str]] = {"r": [], "s": [], "l": [], "t": []}
        for out in outgoing.get(b, []):
            moves[_turn(grid.nodes[a], grid.nodes[b], grid.nodes[grid.edges[out][1]])].append(out)
        result[eid] = moves
    return result


def _strongly_connected(nodes: Sequence[str], succ: Dict[str, Set[str]]) -> bool:
    """True if every node of `nodes` reaches every other through `succ` (restricted to nodes)."""
    if not nodes:
        return True
    allowed = set(nodes)
    pred: Dict[str, Set[str]] = {n: set() for n in allowed}
    for a in allowed:
        for b in succ.get(a, ()):
            if b in allowed:
                pred[b].add(a)
    for graph in (succ, pred):
        start = min(allowed)
        seen = {start}
        queue = deque([start])
        while queue:
            n = queue.popleft()
            for m in graph.get(n, ()):
                if m in allowed and m not in seen:
                    seen.add(m)
                    queue.append(m)
        if seen != allowed:
            return False
    return True


def turnaround_nodes(grid: PlainGrid) -> Set[str]:
    """Junctions where vehicles may turn back onto the street they came from.

    A U-turn at a signal crosses every other movement of the junction and blocks the
    left-turn lane while it waits, a classic source of deadlocks. So turning back is kept
    only where nothing is signalled (bends, junctions that lost most neighbours) and
    where the street graph needs it: at a junction with a single non-fringe neighbour,
    and, should the streets still not all reach each other (e.g. a ring), at as few
    signals as it takes, chosen in a fixed order. On a grid every street is otherwise
    reached by going round a block.
    """
    nb = _inner_neighbours(grid)
    allowed = {n for n in nb if grid.node_types.get(n) != "traffic_light" or len(nb[n]) <= 1}
    moves = _movements(grid)
    inner = sorted(e for e, (a, b) in grid.edges.items() if a not in grid.fringe and b not in grid.fringe)

    def successors(turn_at: Set[str]) -> Dict[str, Set[str]]:
        succ: Dict[str, Set[str]] = {}
        for eid, m in moves.items():
            node = grid.edges[eid][1]
            outs = m["r"] + m["s"] + m["l"] + (m["t"] if node in turn_at else [])
            succ[eid] = set(outs)
        return succ

    if _strongly_connected(inner, successors(allowed)):
        return allowed
    for node in sorted((n for n in nb if n not in allowed), key=lambda n: (len(nb[n]), n)):
        allowed.add(node)
        if _strongly_connected(inner, successors(allowed)):
            break
    return allowed


def connections(grid: PlainGrid) -> List[Tuple[str, str, int, int]]:
    """Lane-to-lane connections (from, to, fromLane, toLane) at every non-fringe node.

    Right, straight and left movements are allowed everywhere; U-turns only at the nodes
    of `turnaround_nodes` (not at signals, unless connectivity needs them), which keeps
    every edge reachable from every other once the junction graph is connected. With 2+
    lanes, left turns use only the left-most lane and straight/right the remaining lanes,
    right turns the right-most of these; where the street ahead has fewer lanes, the
    surplus lanes on the right turn right only (the next one right or straight) instead
    of merging inside the junction. U-turns leave from the left-most lane.
    """
    turn_at = turnaround_nodes(grid)
    result: List[Tuple[str, str, int, int]] = []
    for eid, moves in _movements(grid).items():
        if grid.edges[eid][1] not in turn_at:
            moves = dict(moves, t=[])
        n = grid.lanes[eid]
        lanes = list(range(n))
        other_group = moves["s"] + moves["r"]
        if n >= 2 and moves["l"] and other_group:
            left_lanes, other_lanes = [n - 1], lanes[:-1]
        else:
            left_lanes, other_lanes = lanes, lanes
        straight_lanes, right_lanes = other_lanes, other_lanes[:1] if moves["s"] else other_lanes
        if moves["s"] and moves["r"]:
            # more lanes than the street ahead has: the surplus on the right turns right only,
            # rather than two lanes merging into one in the middle of the junction
            surplus = len(other_lanes) - min(grid.lanes[out] for out in moves["s"])
            if surplus > 0:
                straight_lanes = other_lanes[surplus:]
                # the next lane turns right too if the street to the right has room for it
                shared = 1 if min(grid.lanes[out] for out in moves["r"]) > surplus else 0
                right_lanes = other_lanes[:surplus + shared]
        for out in moves["s"]:
            for fl, tl in _lane_map(straight_lanes, grid.lanes[out], align_left=False):
                result.append((eid, out, fl, tl))
        for out in moves["r"]:
            for fl, tl in _lane_map(right_lanes, grid.lanes[out], align_left=False):
                result.append((eid, out, fl, tl))
        for out in moves["l"]:
            for fl, tl in _lane_map(left_lanes, grid.lanes[out], align_left=True):
                result.append((eid, out, fl, tl))
        for out in moves["t"]:
            src = lanes[-1:] if moves["l"] or other_group else lanes
            for fl, tl in _lane_map(src, grid.lanes[out], align_left=True):
                result.append((eid, out, fl, tl))
    return _feed_every_lane(grid, result)


def _feed_every_lane(grid: PlainGrid, conns: List[Tuple[str, str, int, int]]) -> List[Tuple[str, str, int, int]]:
    """Give every lane leaving a junction an incoming connection (no 'lane not connected').

    A lane nobody drives onto only fills by lane changes; the connection that ends
    nearest to it is widened to reach it too.
    """
    into: Dict[str, List[Tuple[str, str, int, int]]] = {}
    for c in conns:
        into.setdefault(c[1], []).append(c)
    extra: List[Tuple[str, str, int, int]] = []
    for out, feeders in sorted(into.items()):
        covered = {c[3] for c in feeders}
        for lane in range(grid.lanes[out]):
            if lane not in covered:
                best = min(feeders, key=lambda c: (abs(c[3] - lane), c))
                extra.append((best[0], out, best[2], lane))
    return sorted(set(conns + extra), key=lambda c: (c[0], c[1], c[2], c[3]))


def write_plain(grid: PlainGrid, out_dir: Path, name: str = "network") -> Tuple[Path, Path, Path]:
    """Write the .nod/.edg/.con plain XML files netconvert reads (stable order, no dates)."""
    nod = out_dir / f"{name}.nod.xml"
    edg = out_dir / f"{name}.edg.xml"
    con = out_dir / f"{name}.con.xml"
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<nodes>"]
    for n in sorted(grid.nodes):
        x, y = grid.nodes[n]
        lines.append(f'    <node id="{n}" x="{x:.2f}" y="{y:.2f}" type="{grid.node_types[n]}"/>')
    lines.append("</nodes>\n")
    nod.write_text("\n".join(lines))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<edges>"]
    for e in sorted(grid.edges):
        a, b = grid.edges[e]
        lines.append(
            f'    <edge id="{e}" from="{a}" to="{b}" priority="-1" numLanes="{grid.lanes[e]}" speed="{grid.speed:.2f}"/>'
        )
    lines.append("</edges>\n")
    edg.write_text("\n".join(lines))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<connections>"]
    for f, t, fl, tl in connections(grid):
        lines.append(f'    <connection from="{f}" to="{t}" fromLane="{fl}" toLane="{tl}"/>')
    lines.append("</connections>\n")
    con.write_text("\n".join(lines))
    return nod, edg, con


def run_netconvert(nod: Path, edg: Path, con: Path, net_file: Path) -> None:
    """Build the net; tlLogic elements are replaced afterwards by our own programs."""
    run_tool("netconvert", [
        "--node-files", str(nod), "--edge-files", str(edg), "--connection-files", str(con),
        "--output-file", str(net_file), "--tls.default-type", "static",
    ])


def lane_counts_random(edges: Sequence[str], rng: np.random.Generator, minimum: int) -> Dict[str, int]:
    """1-3 lanes per edge (at least `minimum`), drawn per edge in sorted order."""
    ids = sorted(edges)
    values = rng.integers(minimum, 4, size=len(ids))
    return {e: int(v) for e, v in zip(ids, values)}


def lane_counts_realistic(totals: Dict[str, float], minimum: int) -> Dict[str, int]:
    """Map the demand rank of each edge to lanes: the busiest edges get the most lanes.

    With a minimum of 1: lower 40 % -> 1, next 40 % -> 2, top 20 % -> 3 lanes.
    With a minimum of 2 (partial_opposites needs a left lane): lower 65 % -> 2, rest -> 3.
    Ties (e.g. both directions of a street) share the same rank and so the same count.
    """
    ids = sorted(totals)
    if not ids:
        return {}
    values = np.array([round(totals[e], 6) for e in ids])
    # average rank of ties, as a quantile in (0, 1)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(ids))
    ranks[order] = np.arange(len(ids))
    uniq, inverse = np.unique(values, return_inverse=True)
    mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    q = (mean_rank[inverse] + 0.5) / len(ids)
    if minimum >= 2:
        lanes = np.where(q < 0.65, 2, 3)
    else:
        lanes = np.where(q < 0.4, 1, np.where(q < 0.8, 2, 3))
    return {e: int(v) for e, v in zip(ids, lanes)}

"""A light reader of SUMO `.net.xml` files and the graph facts the builder derives from them.

sumolib's full network object is slow to build and far more than the builder needs, so a
single `iterparse` pass collects junctions, normal edges, connections and signal ids.
"""

from __future__ import annotations

import heapq
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

import numpy as np

logger = logging.getLogger(__name__)

NORMAL_FUNCTIONS = ("", "normal")


@dataclass
class EdgeInfo:
    id: str
    from_node: str
    to_node: str
    num_lanes: int
    length: float
    shape: np.ndarray  # (k, 2) polyline of the edge (its first lane)
    function: str = ""
    allows_passenger: bool = True


@dataclass
class ConnectionInfo:
    from_edge: str
    to_edge: str
    from_lane: int
    to_lane: int
    direction: str
    tl: str = ""
    link_index: int = -1


@dataclass
class NetInfo:
    junctions: Dict[str, Tuple[str, float, float]] = field(default_factory=dict)  # id -> (type, x, y)
    edges: Dict[str, EdgeInfo] = field(default_factory=dict)  # non-internal edges only
    connections: List[ConnectionInfo] = field(default_factory=list)  # between non-internal edges
    tl_ids: List[str] = field(default_factory=list)
    bounds: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def road_edges(self) -> List[str]:
        """Normal edges open to passenger cars, sorted: the edges trips may use."""
        return sorted(e.id for e in self.edges.values() if e.function in NORMAL_FUNCTIONS and e.allows_passenger)


def _parse_shape(text: str) -> np.ndarray:
    pts = [tuple(float(v) for v in p.split(",")[:2]) for p in text.split()]
    return np.asarray(pts, dtype=float).reshape(-1, 2)


def _lane_allows_passenger(attrib: Dict[str, str]) -> bool:
    allow = attrib.get("allow")
    if allow is not None:
        classes = allow.split()
        return "all" in classes or "passenger" in classes
    disallow = attrib.get("disallow")
    if disallow is not None:
        classes = disallow.split()
        return "all" not in classes and "passenger" not in classes
    return True


def read_net(net_file: Path) -> NetInfo:
    """Collect what the builder needs from a net file in one streaming pass."""
    info = NetInfo()
    edge: Optional[EdgeInfo] = None
    tl_ids: Set[str] = set()
    for event, elem in ET.iterparse(str(net_file), events=("start", "end")):
        tag = elem.tag
        if event == "start":
            if tag == "edge":
                a = elem.attrib
                function = a.get("function", "")
                edge = EdgeInfo(
                    id=a["id"], from_node=a.get("from", ""), to_node=a.get("to", ""), num_lanes=0,
                    length=0.0, shape=np.zeros((0, 2)), function=function, allows_passenger=False,
                )
                if "shape" in a:
                    edge.shape = _parse_shape(a["shape"])
            continue
        # end events
        if tag == "lane" and edge is not None:
            a = elem.attrib
            edge.num_lanes += 1
            if edge.num_lanes == 1:
                edge.length = float(a.get("length", 0.0))
                if edge.shape.shape[0] == 0 and "shape" in a:
                    edge.shape = _parse_shape(a["shape"])
            edge.allows_passenger = edge.allows_passenger or _lane_allows_passenger(a)
        elif tag == "edge" and edge is not None:
            if edge.function != "internal":
                info.edges[edge.id] = edge
            edge = None
            elem.clear()
        elif tag == "junction":
            a = elem.attrib
            if a.get("type") != "internal":
                info.junctions[a["id"]] = (a.get("type", ""), float(a.get("x", 0.0)), float(a.get("y", 0.0)))
            elem.clear()
        elif tag == "connection":
            a = elem.attrib
            if not a["from"].startswith(":"):
                conn = ConnectionInfo(
                    from_edge=a["from"], to_edge=a["to"], from_lane=int(a["fromLane"]), to_lane=int(a["toLane"]),
                    direction=a.get("dir", ""), tl=a.get("tl", ""), link_index=int(a.get("linkIndex", -1)),
                )
                info.connections.append(conn)
            elem.clear()
        elif tag == "tlLogic":
            tl_ids.add(elem.attrib["id"])
            elem.clear()
        elif tag == "location":
            box = [float(v) for v in elem.attrib.get("convBoundary", "0,0,0,0").split(",")]
            info.bounds = (box[0], box[1], box[2], box[3])
    for e in info.edges.values():
        if e.shape.shape[0] < 2:  # fall back to the straight line between its junctions
            a, b = info.junctions.get(e.from_node), info.junctions.get(e.to_node)
            if a and b:
                e.shape = np.array([[a[1], a[2]], [b[1], b[2]]])
    info.tl_ids = sorted(tl_ids)
    return info


# --- edge roles ----------------------------------------------------------------------------


def boundary_nodes(info: NetInfo, edges: Iterable[str]) -> Set[str]:
    """Dead ends and nodes with a single neighbour: where trips enter and leave the network."""
    neighbours: Dict[str, Set[str]] = {}
    for eid in edges:
        e = info.edges[eid]
        neighbours.setdefault(e.from_node, set()).add(e.to_node)
        neighbours.setdefault(e.to_node, set()).add(e.from_node)
    return {
        n for n, nb in neighbours.items()
        if len(nb) <= 1 or info.junctions.get(n, ("",))[0] == "dead_end"
    }


def edge_roles(
    info: NetInfo, edges: List[str], fringe: Optional[Set[str]] = None
) -> Tuple[List[str], List[str], List[str]]:
    """(boundary_in, boundary_out, inner) edges, each sorted; `fringe` defaults to `boundary_nodes`."""
    if fringe is None:
        fringe = boundary_nodes(info, edges)
    ins, outs, inner = [], [], []
    for eid in sorted(edges):
        e = info.edges[eid]
        if e.from_node in fringe:
            ins.append(eid)
        elif e.to_node in fringe:
            outs.append(eid)
        else:
            inner.append(eid)
    return ins, outs, inner


# --- routing on the edge graph -------------------------------------------------------------


def successor_map(info: NetInfo, edges: Optional[Iterable[str]] = None) -> Dict[str, List[str]]:
    """Edge -> sorted edges reachable through one connection (the graph vehicles drive on)."""
    allowed = set(edges) if edges is not None else set(info.edges)
    succ: Dict[str, Set[str]] = {e: set() for e in allowed}
    for c in info.connections:
        if c.from_edge in allowed and c.to_edge in allowed:
            succ[c.from_edge].add(c.to_edge)
    return {e: sorted(s) for e, s in succ.items()}


def shortest_edge_path(info: NetInfo, succ: Dict[str, List[str]], start: str, goal: str) -> Optional[List[str]]:
    """Dijkstra over edges (cost = length of the edge left); ties broken by edge id."""
    dist = {start: 0.0}
    prev: Dict[str, str] = {}
    heap = [(0.0, start)]
    while heap:
        d, e = heapq.heappop(heap)
        if e == goal:
            path = [e]
            while path[-1] != start:
                path.append(prev[path[-1]])
            return path[::-1]
        if d > dist.get(e, float("inf")):
            continue
        for nxt in succ.get(e, ()):
            nd = d + info.edges[e].length
            if nd < dist.get(nxt, float("inf")) - 1e-9:
                dist[nxt] = nd
                prev[nxt] = e
                heapq.heappush(heap, (nd, nxt))
    return None

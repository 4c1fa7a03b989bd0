"""Edge-to-edge routing on a SUMO network, precomputed once per cost function.

Routes are searched on the graph whose nodes are the network's edges and whose arcs are
its lane connections, so every route found is drivable by the vehicle class as built.
All-pairs trees from `scipy.sparse.csgraph.dijkstra` make each of thousands of route
look-ups a short predecessor walk instead of a search.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

import numpy as np
import sumolib
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

log = logging.getLogger(__name__)

# SUMO's routers add `--weights.turnaround-penalty` (default 5 s) to a U-turn; length
# routing charges the distance driven in that time, so ties and near-ties avoid U-turns.
TURNAROUND_PENALTY_S = 5.0


def read_net(net_file: Path) -> "sumolib.net.Net":
    """The network without internal edges: routes only name normal edges."""
    return sumolib.net.readNet(str(net_file))


class EdgeGraph:
    """The connection graph of one vehicle class: edge ids, lengths, end nodes, arcs."""

    def __init__(self, net: "sumolib.net.Net", vclass: str = "passenger") -> None:
        edges = [e for e in net.getEdges() if e.getFunction() != "internal" and e.allows(vclass)]
        self.ids: List[str] = [e.getID() for e in edges]
        self.index: Dict[str, int] = {eid: i for i, eid in enumerate(self.ids)}
        self.lengths = np.array([e.getLength() for e in edges], dtype=float)
        self.from_node: List[str] = [e.getFromNode().getID() for e in edges]
        self.to_node: List[str] = [e.getToNode().getID() for e in edges]
        rows: List[int] = []
        cols: List[int] = []
        penalty: List[float] = []
        for i, e in enumerate(edges):
            for target, conns in e.getAllowedOutgoing(vclass).items():
                j = self.index.get(target.getID())
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    # only turning back is possible here: charge it like SUMO's own routers do
                    u_turn = all(c.getDirection() in ("t", "T") for c in conns)
                    penalty.append(TURNAROUND_PENALTY_S * target.getSpeed() if u_turn else 0.0)
        self.arc_from = np.array(rows, dtype=np.int64)
        self.arc_to = np.array(cols, dtype=np.int64)
        self.arc_penalty = np.array(penalty, dtype=float)
        self.vclass = vclass

    def __len__(self) -> int:
        return len(self.ids)

    def is_connected_route(self, edge_ids: Sequence[str]) -> bool:
        """True if each edge exists and connects to the next (a valid explicit route)."""
        if not edge_ids or any(e not in self.index for e in edge_ids):
            return False
        arcs = set(zip(self.arc_from.tolist(), self.arc_to.tolist()))
        idx = [self.index[e] for e in edge_ids]
        return all((a, b) in arcs for a, b in zip(idx, idx[1:]))


class Router:
    """Least-cost routes for one cost per edge (the cost of driving along that edge).

    The cost of a route excludes its first edge (every route starting there pays it), so
    the arc cost is the cost of the edge entered (plus the U-turn penalty, if any).
    """

    def __init__(self, graph: EdgeGraph, edge_cost: np.ndarray, origins: Optional[Sequence[int]] = None) -> None:
        self.graph = graph
        n = len(graph)
        if origins is None:
            origins = range(n)
        self.origins = np.array(sorted(set(int(o) for o in origins)), dtype=np.int64)
        self.row_of = {int(o): r for r, o in enumerate(self.origins)}
        weights = edge_cost[graph.arc_to] + graph.arc_penalty
        matrix = csr_matrix((weights, (graph.arc_from, graph.arc_to)), shape=(n, n))
        if len(self.origins):
            self.dist, self.pred = dijkstra(matrix, directed=True, indices=self.origins, return_predecessors=True)
        else:
            self.dist = np.zeros((0, n))
            self.pred = np.zeros((0, n), dtype=np.int64)
        self._cache: Dict[Tuple[int, int], str] = {}

    def reachable(self, origin: int, dest: int) -> bool:
        return origin != dest and bool(np.isfinite(self.dist[self.row_of[origin], dest]))

    def route_text(self, origin: int, dest: int) -> str:
        """Space-separated edge ids of the least-cost route, XML-escaped for an attribute."""
        key = (origin, dest)
        text = self._cache.get(key)
        if text is None:
            pred = self.pred[self.row_of[origin]]
            path = [dest]
            node = dest
            while node != origin:
                node = int(pred[node])
                if node < 0:
                    raise ValueError(f"no route from {self.graph.ids[origin]} to {self.graph.ids[dest]}")
                path.append(node)
            ids = self.graph.ids
            text = escape(" ".join(ids[i] for i in reversed(path)), {'"': "&quot;"})
            self._cache[key] = text
        return text

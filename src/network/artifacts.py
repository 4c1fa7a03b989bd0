"""What a built network leaves on disk, and how every other part finds it.

A network folder holds `network.net.xml` (roads and signal programs) and `network.json`
(edge roles and attractiveness). Traffic generation, simulation and RL environments only
ever receive the folder path, so N environments share one network built once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

NET_FILE_NAME = "network.net.xml"
INFO_FILE_NAME = "network.json"


@dataclass
class NetworkArtifacts:
    """Paths and edge facts of one built network.

    `attractiveness[edge_id]["depart"|"arrive"]` is a list of weights, one per period of
    `src.params.PERIOD_NAMES`, used to draw trip origins and destinations.
    `boundary_in_edges` enter the network from its fringe, `boundary_out_edges` leave it,
    `inner_edges` are all others (both ends inside). `bus_lines` are edge lists of fixed lines;
    with `bus_lines_on_demand` (a given net file) they are drawn only when a scenario asks
    for buses (`src.network.builder.bus_lines_of`).
    """

    directory: Path
    boundary_in_edges: List[str] = field(default_factory=list)
    boundary_out_edges: List[str] = field(default_factory=list)
    inner_edges: List[str] = field(default_factory=list)
    attractiveness: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    signalized_junctions: List[str] = field(default_factory=list)
    removed_junctions: List[str] = field(default_factory=list)
    lane_counts: Dict[str, int] = field(default_factory=dict)
    bus_lines: List[List[str]] = field(default_factory=list)
    bus_lines_on_demand: bool = False
    bounds: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def net_file(self) -> Path:
        return Path(self.directory) / NET_FILE_NAME

    def save(self) -> Path:
        data = asdict(self)
        data["directory"] = None
        path = Path(self.directory) / INFO_FILE_NAME
        path.write_text(json.dumps(data, indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: Path) -> "NetworkArtifacts":
        directory = Path(directory)
        info = directory / INFO_FILE_NAME
        if not info.is_file():
            raise FileNotFoundError(f"{directory}: not a built network folder (no {INFO_FILE_NAME})")
        data = json.loads(info.read_text())
        data["directory"] = directory
        data["bounds"] = tuple(data.get("bounds", (0, 0, 0, 0)))
        return cls(**data)

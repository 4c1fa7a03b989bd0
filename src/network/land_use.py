"""Land-use zones and the trip attraction they give to the edges next to them.

The network's bounding box is cut into square cells; each cell gets one of six zone
types. Types come in clusters (a few seed points per type, every cell takes the type of
its nearest seed), as real districts do. `ZONE_ATTRACTION` says how strongly a zone of each
type produces (departures) and receives (arrivals) trips in each period of the day, which
is what makes morning traffic flow from homes to offices and evening traffic back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

from src.params import PERIOD_NAMES

logger = logging.getLogger(__name__)

ZONE_TYPES: Tuple[str, ...] = (
    "residential",
    "employment",
    "public_buildings",
    "mixed",
    "entertainment_retail",
    "open_space",
)

# Share of the district seeds each zone type gets (how common the type is).
ZONE_SHARE: Dict[str, float] = {
    "residential": 0.32,
    "employment": 0.18,
    "public_buildings": 0.10,
    "mixed": 0.16,
    "entertainment_retail": 0.10,
    "open_space": 0.14,
}

# Zone types whose districts lean towards the centre of the network (a downtown).
CENTRAL_ZONES = ("employment", "entertainment_retail", "public_buildings")

# Trip attraction of one hectare of each zone type, per period of `src.params.PERIOD_NAMES`
# (morning, morning_rush, noon, evening_rush, evening, night), separately for trips that
# depart from the zone and trips that arrive in it. Relative weights, not trip counts:
# homes send people out in the morning rush and take them back in the evening rush,
# workplaces the reverse, shops and entertainment peak at noon and in the evening,
# open space attracts little at any time.
ZONE_ATTRACTION: Dict[str, Dict[str, Tuple[float, ...]]] = {
    "residential": {
        "depart": (1.0, 3.0, 0.8, 0.6, 0.6, 0.2),
        "arrive": (0.4, 0.3, 0.7, 2.5, 1.5, 0.5),
    },
    "employment": {
        "depart": (0.4, 0.3, 0.8, 3.0, 0.5, 0.1),
        "arrive": (1.0, 3.0, 0.8, 0.3, 0.2, 0.1),
    },
    "public_buildings": {
        "depart": (0.6, 0.4, 1.0, 1.2, 0.3, 0.05),
        "arrive": (1.2, 1.5, 1.0, 0.4, 0.2, 0.05),
    },
    "mixed": {
        "depart": (0.8, 1.5, 1.0, 1.5, 0.8, 0.3),
        "arrive": (0.8, 1.5, 1.0, 1.5, 0.8, 0.3),
    },
    "entertainment_retail": {
        "depart": (0.3, 0.2, 1.2, 1.0, 1.5, 0.6),
        "arrive": (0.5, 0.2, 1.5, 1.2, 2.5, 0.4),
    },
    "open_space": {
        "depart": (0.1, 0.05, 0.2, 0.1, 0.1, 0.02),
        "arrive": (0.2, 0.05, 0.3, 0.1, 0.1, 0.02),
    },
}
assert all(len(v[k]) == len(PERIOD_NAMES) for v in ZONE_ATTRACTION.values() for k in v)

# GUI colours (r,g,b,a) of the land-use polygons.
ZONE_COLORS: Dict[str, str] = {
    "residential": "255,224,130,110",
    "employment": "120,150,230,110",
    "public_buildings": "200,120,200,110",
    "mixed": "240,160,90,110",
    "entertainment_retail": "230,90,90,110",
    "open_space": "110,200,110,110",
}

# Typical edge of one district (m); decides how many seed points the map gets.
DISTRICT_SIZE_M = 350.0


@dataclass
class LandUse:
    cell_size: float
    origin: Tuple[float, float]
    types: np.ndarray  # (rows, cols) int indices into ZONE_TYPES; row 0 at the bottom (min y)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.types.shape  # type: ignore[return-value]

    def cell_centres(self) -> np.ndarray:
        rows, cols = self.types.shape
        xs = self.origin[0] + (np.arange(cols) + 0.5) * self.cell_size
        ys = self.origin[1] + (np.arange(rows) + 0.5) * self.cell_size
        gx, gy = np.meshgrid(xs, ys)
        return np.column_stack([gx.ravel(), gy.ravel()])

    def attraction_matrix(self, kind: str) -> np.ndarray:
        """(cells, periods) attraction of every cell, scaled by cell area in hectares."""
        table = np.array([ZONE_ATTRACTION[t][kind] for t in ZONE_TYPES])
        return table[self.types.ravel()] * (self.cell_size ** 2 / 10000.0)

    def write_json(self, path: Path) -> None:
        data = {
            "cell_size_m": self.cell_size,
            "origin": list(self.origin),
            "rows": int(self.types.shape[0]),
            "cols": int(self.types.shape[1]),
            "zone_types": list(ZONE_TYPES),
            "periods": list(PERIOD_NAMES),
            "attraction": ZONE_ATTRACTION,
            "types": self.types.tolist(),  # types[row][col], row 0 at the bottom
        }
        Path(path).write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))

    def write_polygons(self, path: Path) -> None:
        """SUMO additional file with one rectangle per run of equal cells in a row (for sumo-gui)."""
        lines = ["<additional>"]
        rows, cols = self.types.shape
        s = self.cell_size
        x0, y0 = self.origin
        for r in range(rows):
            row = self.types[r]
            start = 0
            for c in range(1, cols + 1):
                if c == cols or row[c] != row[start]:
                    name = ZONE_TYPES[int(row[start])]
                    xa, xb, ya, yb = x0 + start * s, x0 + c * s, y0 + r * s, y0 + (r + 1) * s
                    shape = f"{xa:.2f},{ya:.2f} {xb:.2f},{ya:.2f} {xb:.2f},{yb:.2f} {xa:.2f},{yb:.2f}"
                    lines.append(
                        f'    <poly id="lu_{r}_{start}" type="{name}" color="{ZONE_COLORS[name]}" '
                        f'fill="1" layer="-10" shape="{shape}"/>'
                    )
                    start = c
        lines.append("</additional>\n")
        Path(path).write_text("\n".join(lines))


def generate_land_use(bounds: Sequence[float], cell_size: float, rng: np.random.Generator) -> LandUse:
    """Clustered zone types over `bounds` (xmin, ymin, xmax, ymax): nearest-seed districts."""
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    width, height = max(xmax - xmin, cell_size), max(ymax - ymin, cell_size)
    cols, rows = int(np.ceil(width / cell_size)), int(np.ceil(height / cell_size))
    n_seeds = int(np.clip(round(width * height / DISTRICT_SIZE_M ** 2), len(ZONE_TYPES), 400))
    shares = np.array([ZONE_SHARE[t] for t in ZONE_TYPES])
    seed_types = np.concatenate([
        np.arange(len(ZONE_TYPES)),  # every type appears at least once
        rng.choice(len(ZONE_TYPES), size=n_seeds - len(ZONE_TYPES), p=shares / shares.sum()),
    ])
    central = np.isin(seed_types, [ZONE_TYPES.index(t) for t in CENTRAL_ZONES])
    fx = np.where(central, rng.beta(2.5, 2.5, n_seeds), rng.random(n_seeds))
    fy = np.where(central, rng.beta(2.5, 2.5, n_seeds), rng.random(n_seeds))
    seeds = np.column_stack([xmin + fx * width, ymin + fy * height])
    land = LandUse(cell_size=float(cell_size), origin=(xmin, ymin), types=np.zeros((rows, cols), dtype=np.int64))
    centres = land.cell_centres()
    d2 = ((centres[:, None, :] - seeds[None, :, :]) ** 2).sum(axis=2)
    land.types = seed_types[np.argmin(d2, axis=1)].reshape(rows, cols).astype(np.int64)
    logger.debug("land use: %dx%d cells of %.0f m, %d districts", rows, cols, cell_size, n_seeds)
    return land


def _segment_distances(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(segments, points) distance of every point to every segment a->b."""
    ab = b - a  # (S, 2)
    ap = points[None, :, :] - a[:, None, :]  # (S, P, 2)
    denom = np.maximum((ab ** 2).sum(axis=1), 1e-12)[:, None]
    t = np.clip((ap * ab[:, None, :]).sum(axis=2) / denom, 0.0, 1.0)
    closest = a[:, None, :] + t[..., None] * ab[:, None, :]
    return np.sqrt(((points[None, :, :] - closest) ** 2).sum(axis=2))


def edge_land_use_weights(
    land: LandUse, polylines: Dict[str, np.ndarray], radius: float
) -> Dict[str, Dict[str, np.ndarray]]:
    """Per edge and period: summed departure/arrival attraction of the cells within `radius`.

    Only the cells in the edge's bounding box grown by `radius` are measured, so the cost
    grows with the number of edges, not edges x cells. A cell counts once per edge even
    if several segments of a bent edge pass it.
    """
    rows, cols = land.types.shape
    s, (ox, oy) = land.cell_size, land.origin
    xs = ox + (np.arange(cols) + 0.5) * s
    ys = oy + (np.arange(rows) + 0.5) * s
    depart = land.attraction_matrix("depart").reshape(rows, cols, -1)
    arrive = land.attraction_matrix("arrive").reshape(rows, cols, -1)
    result: Dict[str, Dict[str, np.ndarray]] = {}
    for eid in sorted(polylines):
        pts = np.asarray(polylines[eid], dtype=float).reshape(-1, 2)
        if pts.shape[0] == 1:
            pts = np.vstack([pts, pts])
        lo, hi = pts.min(axis=0) - radius, pts.max(axis=0) + radius
        c0, c1 = max(int(np.floor((lo[0] - ox) / s)), 0), min(int(np.ceil((hi[0] - ox) / s)), cols)
        r0, r1 = max(int(np.floor((lo[1] - oy) / s)), 0), min(int(np.ceil((hi[1] - oy) / s)), rows)
        dep = np.zeros(len(PERIOD_NAMES))
        arr = np.zeros(len(PERIOD_NAMES))
        if c1 > c0 and r1 > r0:
            gx, gy = np.meshgrid(xs[c0:c1], ys[r0:r1])
            centres = np.column_stack([gx.ravel(), gy.ravel()])
            near = (_segment_distances(centres, pts[:-1], pts[1:]).min(axis=0) <= radius)
            near = near.reshape(r1 - r0, c1 - c0)
            dep = depart[r0:r1, c0:c1][near].sum(axis=0)
            arr = arrive[r0:r1, c0:c1][near].sum(axis=0)
        result[eid] = {"depart": dep, "arrive": arr}
    return result

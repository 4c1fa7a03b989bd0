"""Fixed-time signal programs built from the connections of a net file.

Every program alternates green and yellow phases (G0, y0, G1, y1, ...), the layout
`src.network.phases.read_phase_plans` and the controllers rely on. Which movements share a
green follows the traffic-light strategy:

* `opposites`: one green per axis (N-S, E-W); straight and right turns 'G', left turns and
  U-turns yield ('g') to oncoming traffic.
* `incoming`: one green per incoming edge, all its movements protected ('G').
* `partial_opposites`: per axis first straight+right of both opposing approaches, then
  left+U-turn of both, all protected ('G'). An axis with a single approach (the stem of a
  T junction) gets one green for all its movements, which never cross each other.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from src.network.netfile import ConnectionInfo, NetInfo
from src.network.phases import yellow_between

logger = logging.getLogger(__name__)

Program = List[Tuple[int, str]]  # (duration s, state) per phase

LEFT_DIRS = ("l", "L", "t")  # left, partially left, U-turn


def _travel_bearing(shape: np.ndarray) -> float:
    """Direction of travel (degrees, math convention) on the last segment of an edge."""
    if shape.shape[0] < 2:
        return 0.0
    d = shape[-1] - shape[-2]
    if not np.any(d):
        d = shape[-1] - shape[0]
    return math.degrees(math.atan2(d[1], d[0])) % 360.0


def _axis_classes(bearings: Dict[str, float]) -> List[List[str]]:
    """Split approaches into two axes (approaches within 45 degrees of a line), N-S axis first."""
    if not bearings:
        return []
    ids = sorted(bearings)
    ref = bearings[ids[0]] % 180.0
    classes: Dict[int, List[str]] = {0: [], 1: []}
    for eid in ids:
        diff = abs(bearings[eid] % 180.0 - ref) % 180.0
        classes[0 if min(diff, 180.0 - diff) < 45.0 else 1].append(eid)

    def north_southness(edges: List[str]) -> float:
        return float(np.mean([abs(math.sin(math.radians(bearings[e]))) for e in edges]))

    axes = [c for c in classes.values() if c]
    axes.sort(key=lambda c: (-round(north_southness(c), 6), c[0]))
    return axes


def _clockwise_from_north(bearings: Dict[str, float]) -> List[str]:
    """Approaches ordered clockwise by the compass side they come from, starting north."""

    def key(eid: str) -> Tuple[float, str]:
        came_from = (bearings[eid] + 180.0) % 360.0  # math angle of the side it comes from
        compass = (90.0 - came_from) % 360.0
        return (round(compass, 6), eid)

    return sorted(bearings, key=key)


def _green_durations(n: int, yellow_time: int, min_green: int, cycle_length: int) -> List[int]:
    """Equal split of the cycle minus yellows, never below min_green; leftover seconds go first."""
    if n <= 1:
        return [max(cycle_length, min_green)]
    available = cycle_length - n * yellow_time
    base, rest = divmod(max(available, 0), n)
    if base < min_green:
        return [min_green] * n
    return [base + (1 if i < rest else 0) for i in range(n)]


def tls_groups(links: Dict[int, ConnectionInfo], info: NetInfo, strategy: str) -> List[Dict[int, str]]:
    """The green groups of one signal: link index -> 'G'/'g', one dict per green phase."""
    by_edge: Dict[str, List[ConnectionInfo]] = {}
    for c in links.values():
        by_edge.setdefault(c.from_edge, []).append(c)
    bearings = {e: _travel_bearing(info.edges[e].shape) for e in by_edge if e in info.edges}
    groups: List[Dict[int, str]] = []
    if strategy == "incoming":
        for e in _clockwise_from_north(bearings):
            groups.append({c.link_index: "G" for c in by_edge[e]})
    elif strategy == "opposites":
        for axis in _axis_classes(bearings):
            groups.append({
                c.link_index: ("g" if c.direction in LEFT_DIRS else "G") for e in axis for c in by_edge[e]
            })
    elif strategy == "partial_opposites":
        for axis in _axis_classes(bearings):
            conns = [c for e in axis for c in by_edge[e]]
            if len(axis) == 1:
                # no opposing approach (the stem of a T): the movements of one approach
                # fan out without crossing, so they share one protected green
                groups.append({c.link_index: "G" for c in conns})
                continue
            groups.append({c.link_index: "G" for c in conns if c.direction not in LEFT_DIRS})
            groups.append({c.link_index: "G" for c in conns if c.direction in LEFT_DIRS})
    else:
        raise ValueError(f"unknown traffic light strategy {strategy!r}")
    return [g for g in groups if g]


_DIR_RANK = {"s": 0, "r": 1, "R": 1, "l": 2, "L": 2, "t": 3}


def _yield_on_merges(group: Dict[int, str], links: Dict[int, ConnectionInfo]) -> Dict[int, str]:
    """Of several 'G' links into the same lane, one keeps 'G' (straight first), the rest yield.

    SUMO rejects two prioritised streams merging into one lane as unsafe.
    """
    by_target: Dict[Tuple[str, int], List[int]] = {}
    for idx, ch in group.items():
        if ch == "G":
            c = links[idx]
            by_target.setdefault((c.to_edge, c.to_lane), []).append(idx)
    result = dict(group)
    for idxs in by_target.values():
        if len(idxs) > 1:
            keep = min(idxs, key=lambda i: (_DIR_RANK.get(links[i].direction, 4), i))
            for i in idxs:
                if i != keep:
                    result[i] = "g"
    return result


def build_programs(
    info: NetInfo, strategy: str, yellow_time: int, min_green: int, cycle_length: int
) -> Dict[str, Program]:
    """A green/yellow program for every signal of `info`, keyed by tls id."""
    per_tl: Dict[str, Dict[int, ConnectionInfo]] = {}
    for c in info.connections:
        if c.tl and c.link_index >= 0:
            per_tl.setdefault(c.tl, {})[c.link_index] = c
    programs: Dict[str, Program] = {}
    for tl in sorted(per_tl):
        links = per_tl[tl]
        size = max(links) + 1
        if len(links) < size:
            logger.warning("signal %s: %d link(s) of non-road lanes (e.g. crossings) stay red",
                           tl, size - len(links))
        groups = tls_groups(links, info, strategy)
        if not groups:
            continue
        greens = []
        for g in groups:
            state = ["r"] * size
            for idx, ch in _yield_on_merges(g, links).items():
                state[idx] = ch
            greens.append("".join(state))
        durations = _green_durations(len(greens), yellow_time, min_green, cycle_length)
        program: Program = []
        for i, green in enumerate(greens):
            program.append((durations[i], green))
            if len(greens) == 1:
                break
            nxt = greens[(i + 1) % len(greens)]
            program.append((yellow_time, yellow_between(green, nxt)))
        programs[tl] = program
    return programs


_TL_BLOCK = re.compile(r"[ \t]*<tlLogic\b[^>]*?(?:/>|>.*?</tlLogic>)[ \t]*\r?\n?", re.S)
_TL_ID = re.compile(r'\bid="([^"]*)"')
_HEADER_COMMENT = re.compile(r"^(<\?xml[^>]*\?>\s*)<!--.*?-->\s*", re.S)


def _program_xml(tl: str, program: Program) -> str:
    lines = [f'    <tlLogic id="{tl}" type="static" programID="0" offset="0">']
    lines += [f'        <phase duration="{d}" state="{s}"/>' for d, s in program]
    lines.append("    </tlLogic>")
    return "\n".join(lines) + "\n"


def write_tll_file(path: Path, programs: Dict[str, Program]) -> None:
    """The programs as a tlLogic additional file (netconvert --tllogic-files, sumo -a)."""
    body = "".join(_program_xml(tl, programs[tl]) for tl in sorted(programs))
    Path(path).write_text(f"<additional>\n{body}</additional>\n")


def strip_header(net_file: Path) -> None:
    """Drop the comment SUMO tools write after the XML prolog (date, paths, options)."""
    text = Path(net_file).read_text()
    Path(net_file).write_text(_HEADER_COMMENT.sub(lambda m: m.group(1).rstrip() + "\n\n", text, count=1))


def write_programs(net_file: Path, programs: Dict[str, Program]) -> None:
    """Replace the tlLogic elements of `programs`' signals in place; drop the dated header.

    Text editing keeps the rest of the file byte-for-byte as netconvert wrote it, and
    without the header (date, paths) equal inputs give identical files.
    """
    text = Path(net_file).read_text()
    text = _HEADER_COMMENT.sub(lambda m: m.group(1).rstrip() + "\n\n", text, count=1)
    done = set()

    def replace(match: "re.Match[str]") -> str:
        id_match = _TL_ID.search(match.group(0))
        tl = id_match.group(1) if id_match else ""
        if tl not in programs:
            return match.group(0)
        if tl in done:
            return ""
        done.add(tl)
        return _program_xml(tl, programs[tl])

    text = _TL_BLOCK.sub(replace, text)
    missing = sorted(set(programs) - done)
    if missing:  # signals without a tlLogic element: add theirs before the first junction
        block = "".join(_program_xml(tl, programs[tl]) for tl in missing)
        pos = text.find("    <junction ")
        text = text[:pos] + block + "\n" + text[pos:] if pos >= 0 else text
    Path(net_file).write_text(text)

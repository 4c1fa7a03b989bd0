"""A small real network with hand-written signal programs and hand-written route files.

Shared by the route-file tests and the route-file training test of issue 10: two signalised
junctions on an east-west street (J1, J2), each with a north-south cross street. Every
approach has two lanes; each junction runs its own four-phase program (through with a
permitted left, then a protected left, for each axis, each followed by 3 s of yellow), with
other green splits at each junction in the same 60 s cycle, so a test can tell a kept program from a generated one.
Two route files hold different vehicles (ids `a*` and `b*`), so SUMO's trip records tell
which file an episode ran. Built by netconvert from plain XML, in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from src.network.netfile import read_net
from src.sumo_integration.tools import run_tool

END_TIME = 300  # s: every vehicle of both route files departs before it
YELLOW = 3
#: Green durations of the four phases: NS through, NS left, EW through, EW left. One 60 s
#: cycle (greens + 4 yellows) at both junctions, as cycle-based controllers share one cycle.
GREENS: Dict[str, Tuple[int, ...]] = {"J1": (20, 6, 16, 6), "J2": (14, 8, 20, 6)}
CYCLE = 60

NODES = {"J1": (0, 0), "J2": (200, 0), "W": (-200, 0), "E": (400, 0),
         "N1": (0, 200), "S1": (0, -200), "N2": (200, 200), "S2": (200, -200)}
STREETS = [("W", "J1"), ("J1", "J2"), ("J2", "E"), ("N1", "J1"), ("J1", "S1"), ("N2", "J2"), ("J2", "S2")]

#: Routes of file a (explicit edge lists) and the OD pairs of file b (trips SUMO routes itself).
ROUTES_A = [["W_J1", "J1_J2", "J2_E"], ["E_J2", "J2_J1", "J1_W"], ["N1_J1", "J1_S1"], ["S2_J2", "J2_N2"],
            ["N1_J1", "J1_J2", "J2_E"], ["W_J1", "J1_N1"]]
TRIPS_B = [("S1_J1", "J1_N1"), ("N2_J2", "J2_S2"), ("E_J2", "J2_J1"), ("W_J1", "J1_S1"), ("S2_J2", "J2_J1"),
           ("J1_J2", "J2_N2")]
COUNT_A, SPACING_A = 40, 5.0  # departures 0 .. 195 s
COUNT_B, SPACING_B = 25, 8.0  # departures 3 .. 195 s
OFFSET_B = 3.0


@dataclass
class RouteFixture:
    folder: Path
    net_file: Path
    route_files: List[Path]  # [routes_a, routes_b]
    vehicle_ids: Dict[str, List[str]]  # file name -> its vehicle ids
    sumocfg: Path  # a study folder: net, routes_a, 0-END_TIME, run options
    greens: Dict[str, Tuple[int, ...]] = field(default_factory=lambda: dict(GREENS))
    cycle: int = CYCLE
    end_time: int = END_TIME


def _write_plain(folder: Path) -> Tuple[Path, Path]:
    nodes = [f'    <node id="{n}" x="{x}" y="{y}" type="{"traffic_light" if n.startswith("J") else "priority"}"/>'
             for n, (x, y) in NODES.items()]
    edges = [f'    <edge id="{a}_{b}" from="{a}" to="{b}" numLanes="2" speed="13.9"/>\n'
             f'    <edge id="{b}_{a}" from="{b}" to="{a}" numLanes="2" speed="13.9"/>' for a, b in STREETS]
    nod, edg = folder / "corridor.nod.xml", folder / "corridor.edg.xml"
    nod.write_text("<nodes>\n" + "\n".join(nodes) + "\n</nodes>\n")
    edg.write_text("<edges>\n" + "\n".join(edges) + "\n</edges>\n")
    return nod, edg


def _programs(base: Path) -> str:
    """tlLogics written by hand from the signal links netconvert numbered: 4 greens, 4 yellows."""
    links: Dict[str, Dict[int, Tuple[str, str]]] = {}
    for c in read_net(base).connections:
        if c.tl:
            start = c.from_edge.split("_")[0]  # the node the approach comes from
            axis = "NS" if NODES[start][0] == NODES[c.tl][0] else "EW"
            links.setdefault(c.tl, {})[c.link_index] = (axis, c.direction)
    logics = []
    for tls, by_index in sorted(links.items()):
        size = max(by_index) + 1

        def state(axis: str, left_only: bool) -> str:
            chars = []
            for i in range(size):
                a, d = by_index.get(i, ("", ""))
                if a != axis:
                    chars.append("r")
                elif left_only:
                    chars.append("G" if d == "l" else "r")
                else:
                    chars.append("g" if d == "l" else "G")
            return "".join(chars)

        greens = [state("NS", False), state("NS", True), state("EW", False), state("EW", True)]
        phases = []
        for green, duration in zip(greens, GREENS[tls]):
            phases.append(f'        <phase duration="{duration}" state="{green}"/>')
            yellow = "".join("y" if ch in "Gg" else "r" for ch in green)
            phases.append(f'        <phase duration="{YELLOW}" state="{yellow}"/>')
        logics.append(f'    <tlLogic id="{tls}" type="static" programID="0" offset="0">\n'
                      + "\n".join(phases) + "\n    </tlLogic>")
    return "<additional>\n" + "\n".join(logics) + "\n</additional>\n"


def write_network(folder: Path) -> Path:
    """netconvert the plain files, then once more with the hand-written programs."""
    nod, edg = _write_plain(folder)
    base = folder / "base.net.xml"
    run_tool("netconvert", ["--node-files", str(nod), "--edge-files", str(edg), "--no-turnarounds",
                            "--output-file", str(base)])
    tll = folder / "own.tll.xml"
    tll.write_text(_programs(base))
    net = folder / "corridor.net.xml"
    run_tool("netconvert", ["--sumo-net-file", str(base), "--tllogic-files", str(tll), "--output-file", str(net)])
    base.unlink()
    return net


def write_routes_a(path: Path) -> List[str]:
    """Vehicles with explicit routes (named routes, referenced by id); ids a0, a1, ..."""
    lines = ['<routes>', '    <vType id="car" length="5" maxSpeed="13.9"/>']
    lines += [f'    <route id="ra{i}" edges="{" ".join(r)}"/>' for i, r in enumerate(ROUTES_A)]
    ids = [f"a{k}" for k in range(COUNT_A)]
    lines += [f'    <vehicle id="{vid}" type="car" route="ra{k % len(ROUTES_A)}" depart="{k * SPACING_A:.1f}"/>'
              for k, vid in enumerate(ids)]
    path.write_text("\n".join(lines + ["</routes>"]) + "\n")
    return ids


def write_routes_b(path: Path) -> List[str]:
    """Trips SUMO routes itself, other origins and times; ids b0, b1, ..."""
    ids = [f"b{k}" for k in range(COUNT_B)]
    lines = ["<routes>"] + [
        f'    <trip id="{vid}" depart="{OFFSET_B + k * SPACING_B:.1f}" from="{TRIPS_B[k % len(TRIPS_B)][0]}" '
        f'to="{TRIPS_B[k % len(TRIPS_B)][1]}"/>' for k, vid in enumerate(ids)]
    path.write_text("\n".join(lines + ["</routes>"]) + "\n")
    return ids


def write_sumocfg(path: Path, net: Path, routes: Path) -> Path:
    path.write_text(
        '<configuration>\n    <input>\n'
        f'        <net-file value="{net.name}"/>\n        <route-files value="{routes.name}"/>\n    </input>\n'
        f'    <time>\n        <begin value="0"/>\n        <end value="0:05:00"/>\n    </time>\n'
        '    <processing>\n        <ignore-route-errors value="true"/>\n'
        '        <time-to-teleport value="120"/>\n    </processing>\n'
        '    <report>\n        <no-step-log value="true"/>\n    </report>\n</configuration>\n')
    return path


def build_route_fixture(folder: Path) -> RouteFixture:
    """The network, both route files and a study .sumocfg in `folder` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = write_network(folder)
    a, b = folder / "routes_a.rou.xml", folder / "routes_b.rou.xml"
    ids = {a.name: write_routes_a(a), b.name: write_routes_b(b)}
    cfg = write_sumocfg(folder / "study.sumocfg", net, a)
    assert all(sum(g) + 4 * YELLOW == CYCLE for g in GREENS.values())
    return RouteFixture(folder=folder, net_file=net, route_files=[a, b], vehicle_ids=ids, sumocfg=cfg)


def write_bad_route_files(folder: Path) -> Dict[str, Path]:
    """One file per refusal (for the fixture's network, END_TIME): what is wrong -> file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {
        "unknown_edge": '<routes>\n    <vehicle id="x0" depart="0"><route edges="W_J1 J1_J2 J2_nowhere"/></vehicle>\n'
                        '</routes>\n',
        "empty": '<routes>\n    <vType id="car"/>\n</routes>\n',
        "not_xml": 'id,depart,from,to\nx0,0,W_J1,J1_S1\n',
        "late": '<routes>\n' + "".join(f'    <trip id="x{k}" depart="{k * 100}" from="W_J1" to="J2_E"/>\n'
                                        for k in range(5)) + '</routes>\n',  # 300 and 400 s: at/after END_TIME
    }
    files = {}
    for name, text in texts.items():
        files[name] = folder / f"{name}.rou.xml"
        files[name].write_text(text)
    return files

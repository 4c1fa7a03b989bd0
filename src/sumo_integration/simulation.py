"""Starting and stepping one SUMO simulation.

libsumo runs SUMO inside this process and is as fast as the plain `sumo` binary, but
allows one simulation per process. The first simulation of a process takes libsumo; any
further simulation open at the same time (or a GUI run) goes through TraCI with its own
label. Callers see one object with the same domain modules either way.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from src.sumo_integration.tools import sumo_binary

logger = logging.getLogger(__name__)

_libsumo_in_use = False
_label_counter = itertools.count()


def _import_libsumo():
    """Import libsumo, turning its pyarrow version banner into a debug log line."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        import libsumo  # noqa: WPS433
    if buffer.getvalue().strip():
        logger.debug("libsumo: %s", buffer.getvalue().strip())
    return libsumo


#: How long a TraCI client waits for a starting SUMO to open its port (a big network loads first).
TRACI_CONNECT_TIMEOUT_S = 120.0


def _start_traci(cmd: List[str], label: str):
    """`traci.start`, but asking SUMO's port every 50 ms instead of every second (and without
    its "Retrying" lines): a second simulation in a process is ready about a second sooner."""
    import traci
    from sumolib.miscutils import getFreeSocketPort

    port = getFreeSocketPort()
    proc = subprocess.Popen(cmd + ["--remote-port", str(port)])
    deadline = time.monotonic() + TRACI_CONNECT_TIMEOUT_S
    while True:
        try:
            return traci.connect(port, numRetries=0, proc=proc, label=label)
        except traci.exceptions.FatalTraCIError:  # nothing listens yet
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def lane_getter(api, name: str) -> Callable[[str], Any]:
    """`api.lane.<name>`, for reading every lane every second: under libsumo its compiled
    function itself (the Python wrapper around it costs a third of each call), under TraCI
    the connection's method."""
    raw = getattr(sys.modules.get("libsumo._libsumo"), f"lane_{name}", None) if api is sys.modules.get("libsumo") else None
    return raw or getattr(api.lane, name)


class SumoSimulation:
    """One running SUMO simulation from `begin` to `end_time` writing trip records to `output_dir`.

    `api` is libsumo or a TraCI connection: both offer `.simulation`, `.trafficlight`,
    `.lane`, `.edge`, `.vehicle` with the same calls.
    """

    def __init__(
        self,
        net_file: Path,
        route_files: Sequence[Path],
        output_dir: Path,
        end_time: float,
        step_length: float = 1.0,
        seed: int = 0,
        additional_files: Sequence[Path] = (),
        gui: bool = False,
        extra_args: Sequence[str] = (),
        force_traci: bool = False,
        begin: float = 0.0,
    ) -> None:
        self.net_file = Path(net_file)
        self.route_files = [Path(p) for p in route_files]
        self.output_dir = Path(output_dir)
        self.begin = float(begin)
        self.end_time = float(end_time)
        self.step_length = float(step_length)
        self.seed = int(seed)
        self.additional_files = [Path(p) for p in additional_files]
        self.gui = gui
        self.extra_args = list(extra_args)
        self.force_traci = force_traci
        self.api = None
        self._uses_libsumo = False
        self._traci_label: Optional[str] = None

    @property
    def tripinfo_file(self) -> Path:
        return self.output_dir / "tripinfo.xml"

    @property
    def statistics_file(self) -> Path:
        return self.output_dir / "statistics.xml"

    @property
    def log_file(self) -> Path:
        return self.output_dir / "sumo.log"

    def command(self) -> List[str]:
        """The SUMO command line; also what a user runs to replay this simulation alone."""
        cmd = [
            sumo_binary("sumo-gui" if self.gui else "sumo"),
            "--net-file", str(self.net_file),
            "--route-files", ",".join(str(p) for p in self.route_files),
            "--begin", f"{self.begin:g}",
            "--end", f"{self.end_time:g}",
            "--step-length", f"{self.step_length:g}",
            "--seed", str(self.seed),
            "--tripinfo-output", str(self.tripinfo_file),
            "--tripinfo-output.write-unfinished", "true",
            "--statistic-output", str(self.statistics_file),
            "--duration-log.statistics", "true",
            "--log", str(self.log_file),
            "--no-step-log", "true",
            "--verbose", "false",
        ]
        if self.additional_files:
            cmd += ["--additional-files", ",".join(str(p) for p in self.additional_files)]
        return cmd + self.extra_args

    def start(self) -> "SumoSimulation":
        global _libsumo_in_use
        self.output_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        if not self.gui and not self.force_traci and not _libsumo_in_use:
            libsumo = _import_libsumo()
            libsumo.start(cmd)
            _libsumo_in_use = True
            self._uses_libsumo = True
            self.api = libsumo
        else:
            self._traci_label = f"sim{next(_label_counter)}_{os.getpid()}"
            self.api = _start_traci(cmd, self._traci_label)
        logger.debug("started SUMO (%s): %s", "libsumo" if self._uses_libsumo else "traci", " ".join(cmd))
        return self

    @property
    def backend(self) -> str:
        return "libsumo" if self._uses_libsumo else "traci"

    @property
    def time(self) -> float:
        return float(self.api.simulation.getTime())

    def step(self, until: float = 0.0) -> None:
        """Advance one step, or up to time `until` in one call when given."""
        self.api.simulationStep(until)

    def close(self) -> None:
        global _libsumo_in_use
        if self.api is None:
            return
        try:
            self.api.close()
        finally:
            if self._uses_libsumo:
                _libsumo_in_use = False
            self.api = None

    def __enter__(self) -> "SumoSimulation":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

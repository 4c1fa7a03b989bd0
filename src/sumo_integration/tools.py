"""Finding and running SUMO's command-line tools (sumo, netgenerate, netconvert, ...)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import List, Sequence

logger = logging.getLogger(__name__)

def sumo_binary(name: str) -> str:
    """Path of a SUMO tool: $SUMO_HOME/bin, the eclipse-sumo wheel's bin, or PATH."""
    homes: List[str] = []
    if os.environ.get("SUMO_HOME"):
        homes.append(os.environ["SUMO_HOME"])
    try:
        import sumo  # the eclipse-sumo wheel

        homes.append(str(sumo.SUMO_HOME))
    except (ImportError, AttributeError):
        pass
    for home in homes:
        for candidate in (os.path.join(home, "bin", name), os.path.join(home, "bin", name + ".exe")):
            if os.path.isfile(candidate):
                return candidate
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"SUMO tool {name!r} not found (SUMO_HOME, eclipse-sumo wheel, PATH)")

def run_tool(name: str, args: Sequence[str]) -> str:
    """Run a SUMO tool, log its warnings, raise with its stderr if it fails."""
    cmd = [sumo_binary(name), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    messages = (proc.stderr or "").strip()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {messages[-2000:]}")
    for line in messages.splitlines():
        if line.strip():
            logger.debug("%s: %s", name, line.strip())
    return messages

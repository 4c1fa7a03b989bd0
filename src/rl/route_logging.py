"""Which route file each training episode ran, as a metric: `scenario/<name>/route_file_index`
(the file's position in the scenario's `route_files`, as logged in `route_files/<name>.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from stable_baselines3.common.callbacks import BaseCallback


class RouteFileCallback(BaseCallback):
    """Reads the episode's `route_file` from the final-step infos (no change to the envs)."""

    def __init__(self, scenarios: Sequence[Mapping[str, Any]],
                 sink: Optional[Callable[[int, Dict[str, float]], None]] = None) -> None:
        super().__init__()
        self.sink = sink
        self.index = {str(s["name"]): {Path(f).name: k for k, f in enumerate(s["route_files"])}
                      for s in scenarios if s.get("route_files")}
        #: (step, scenario, route file name) per finished episode, in order.
        self.episodes: List[tuple] = []

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            name, route_file = info.get("scenario"), info.get("route_file")
            if "episode_metrics" not in info or route_file is None or name not in self.index:
                continue
            self.episodes.append((self.num_timesteps, name, route_file))
            if self.sink is not None and route_file in self.index[name]:
                self.sink(self.num_timesteps, {f"scenario/{name}/route_file_index": float(self.index[name][route_file])})
        return True

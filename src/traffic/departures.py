"""Departure times and exact category counts, drawn only from a caller's numpy Generator.

Kept apart from route building so the departure profile can be tested (and reused for
buses) without a network.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from src.params import SIX_PERIODS, DepartureWindow, period_of_hour

DeparturePattern = Union[str, Tuple[DepartureWindow, ...]]

# Hours per day a period's share is spread over. Morning rush lies inside the morning
# window, so the morning share belongs to the part of 06-12 outside 07:30-09:30.
_PERIOD_HOURS: Dict[str, float] = {name: end - start for name, start, end, _ in SIX_PERIODS}
_PERIOD_HOURS["morning"] -= _PERIOD_HOURS["morning_rush"]
_PERIOD_SHARE: Dict[str, float] = {name: share for name, _, _, share in SIX_PERIODS}
# Clock hours where the six-period density may change (within one day).
_DAY_BREAKS: Tuple[float, ...] = (0.0, 6.0, 7.5, 9.5, 12.0, 17.0, 19.0, 22.0, 24.0)


def largest_remainder_counts(total: int, mix: Mapping[str, float], order: Sequence[str]) -> Dict[str, int]:
    """Split `total` items over percentage `mix` so counts are exact and sum to `total`.

    Ties of the fractional parts go to the name that comes first in `order`, which keeps
    the split independent of dict ordering.
    """
    names = [n for n in order if n in mix]
    quotas = np.array([total * float(mix[n]) / 100.0 for n in names], dtype=float)
    floors = np.floor(quotas + 1e-9).astype(int)
    left = total - int(floors.sum())
    if left > 0:
        frac = quotas - floors
        # stable sort on -frac keeps `order` for equal remainders
        winners = np.argsort(-frac, kind="stable")[:left]
        floors[winners] += 1
    return {n: int(c) for n, c in zip(names, floors)}


def shuffled_labels(counts: Mapping[str, int], order: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """An array with each name repeated its count times, in a seeded random order."""
    labels: List[str] = []
    for name in order:
        labels.extend([name] * counts.get(name, 0))
    arr = np.array(labels, dtype=object)
    rng.shuffle(arr)
    return arr


def six_period_density(hour_of_day: float) -> float:
    """Share of the day's trips per hour at a clock hour (any real; taken modulo 24)."""
    name = period_of_hour(hour_of_day)
    return _PERIOD_SHARE[name] / _PERIOD_HOURS[name]


def _six_period_segments(start_hour: float, span_s: float) -> Tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant segments of the day profile over the simulated span.

    Returns segment edges in simulation seconds (len k+1) and the mass of each segment.
    """
    end_hour = start_hour + span_s / 3600.0
    first_day = math.floor(start_hour / 24.0)
    last_day = math.floor(end_hour / 24.0)
    cuts = {start_hour, end_hour}
    for day in range(first_day, last_day + 1):
        for b in _DAY_BREAKS:
            h = day * 24.0 + b
            if start_hour < h < end_hour:
                cuts.add(h)
    hours = np.array(sorted(cuts))
    mids = (hours[:-1] + hours[1:]) / 2.0
    density = np.array([six_period_density(m) for m in mids])
    mass = density * np.diff(hours)
    return (hours - start_hour) * 3600.0, mass


def _sample_piecewise(edges_s: np.ndarray, mass: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF draws from a piecewise-uniform density (segments `edges_s`, weights `mass`)."""
    cdf = np.concatenate(([0.0], np.cumsum(mass)))
    cdf /= cdf[-1]
    u = rng.random(n)
    seg = np.searchsorted(cdf, u, side="right") - 1
    seg = np.clip(seg, 0, len(mass) - 1)
    width = cdf[seg + 1] - cdf[seg]
    frac = np.where(width > 0, (u - cdf[seg]) / np.where(width > 0, width, 1.0), 0.0)
    return edges_s[seg] + frac * (edges_s[seg + 1] - edges_s[seg])


def _window_gaps(windows: Sequence[DepartureWindow], end_time: float) -> List[Tuple[float, float]]:
    gaps: List[Tuple[float, float]] = []
    cursor = 0.0
    for w in sorted(windows, key=lambda w: w.start_s):
        if w.start_s > cursor:
            gaps.append((cursor, w.start_s))
        cursor = max(cursor, w.end_s)
    if cursor < end_time:
        gaps.append((cursor, end_time))
    return gaps


def _sample_custom(windows: Sequence[DepartureWindow], end_time: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each window gets its exact share of `n`, uniform inside it; the rest fills the gaps."""
    names = [f"w{i}" for i in range(len(windows))]
    mix = {name: w.share_pct for name, w in zip(names, windows)}
    rest = max(0.0, 100.0 - sum(mix.values()))
    order = names + ["rest"]
    mix["rest"] = rest
    counts = largest_remainder_counts(n, mix, order)
    parts: List[np.ndarray] = []
    for name, w in zip(names, windows):
        parts.append(rng.uniform(w.start_s, w.end_s, counts[name]))
    n_rest = counts.get("rest", 0)
    if n_rest:
        gaps = _window_gaps(windows, end_time)
        # gaps are not contiguous: sample over their concatenated length, then map back
        lengths = np.array([b - a for a, b in gaps])
        offsets = np.concatenate(([0.0], np.cumsum(lengths)))
        x = rng.uniform(0.0, offsets[-1], n_rest)
        idx = np.clip(np.searchsorted(offsets, x, side="right") - 1, 0, len(gaps) - 1)
        starts = np.array([a for a, _ in gaps])
        parts.append(starts[idx] + (x - offsets[idx]))
    return np.concatenate(parts) if parts else np.zeros(0)


def sample_departures(
    pattern: DeparturePattern,
    n: int,
    end_time: float,
    start_time_hour: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """`n` departure times in [0, end_time), rounded down to 0.1 s, in draw order (not sorted)."""
    if n <= 0:
        return np.zeros(0)
    if isinstance(pattern, tuple):
        t = _sample_custom(pattern, end_time, n, rng)
    elif pattern == "six_periods":
        edges_s, mass = _six_period_segments(start_time_hour, end_time)
        t = _sample_piecewise(edges_s, mass, n, rng)
    elif pattern == "uniform":
        t = rng.uniform(0.0, end_time, n)
    else:  # validated before; keep the failure loud
        raise ValueError(f"unknown departure pattern {pattern!r}")
    # down to 0.1 s: a time stays inside its window and below end_time
    t = np.floor(t * 10.0) / 10.0
    last = math.ceil(end_time * 10.0 - 1e-6) / 10.0 - 0.1  # largest 0.1 multiple < end_time
    return np.round(np.clip(t, 0.0, max(0.0, last)), 1)

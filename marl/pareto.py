"""Pareto analysis of objectives that are all minimised: the non-dominated set, the exact hypervolume, and
how balanced a trade-off is.

Plain Python on small point sets (a front has tens of members, not millions), exact, no dependencies:

- `dominates(a, b)`: a is no worse than b in every objective and strictly better in at least one.
- `non_dominated(points)`: indices of the points no other point dominates (equal points are both kept).
- `hypervolume(points, reference)`: the measure of the region dominated by `points` and bounded by
  `reference` (points that do not strictly beat the reference in every objective add nothing). Exact, by
  slicing along the last objective (O(n^d); 2-D is a sort and a sum).
- `balance(points, ideal, nadir)`: the Chebyshev distance of each point to the ideal point after scaling each
  objective to [0, 1] between `ideal` and `nadir`: 0 is best at everything, and the front member with the
  smallest value is the most balanced trade-off (no objective sacrificed much).
- `front_distance(points, ideal, nadir)`: how far each point is from the front: the smallest improvement, as
  one share of every objective's range, that leaves no point dominating it (0 on the front).
- `front_ranks(points)`: each point's non-domination layer (1: the front; 2: the front once it is removed...).
- `contributions(points, reference)`: each point's exclusive hypervolume (what the set loses without it).
- `interval(values, lower)`: mean and 95% interval over seeds that never leaves `[lower, inf)` (a
  Student-t interval on the log scale of `value - lower`), for objectives such as a time or an idleness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from marl.intervals import mean_interval

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """Whether `a` Pareto-dominates `b` (minimisation)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indices (in input order) of the points that no other point dominates."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Exact hypervolume of `points` (minimisation) against `reference`."""
    dims = len(reference)
    if any(len(p) != dims for p in points):
        raise ValueError(f"Every point needs {dims} objectives, like the reference point {list(reference)}.")
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    front = [inside[i] for i in non_dominated(inside)]
    return _slice_volume(sorted(set(front), key=lambda p: p[-1]), tuple(reference))


def _slice_volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """Hypervolume of `points` sorted by their last objective: the slab between consecutive last-objective
    values is covered by the (d-1)-dimensional hypervolume of the points below it."""
    if not points:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    volume = 0.0
    for i, point in enumerate(points):
        upper = points[i + 1][-1] if i + 1 < len(points) else reference[-1]
        if upper > point[-1]:
            below = sorted((p[:-1] for p in points[: i + 1]), key=lambda p: p[-1])
            volume += (upper - point[-1]) * _slice_volume(below, reference[:-1])
    return volume


def balance(points: Sequence[Point], ideal: Point, nadir: Point) -> list[float]:
    """Chebyshev distance of each point to `ideal`, each objective scaled to [0, 1] between `ideal` and
    `nadir` (objectives where they coincide are left out)."""
    spans = [(lo, hi - lo) for lo, hi in zip(ideal, nadir, strict=True)]
    return [
        max(((x - lo) / span for x, (lo, span) in zip(p, spans, strict=True) if span > 0), default=0.0)
        for p in points
    ]


def front_distance(points: Sequence[Point], ideal: Point, nadir: Point) -> list[float]:
    """Each point's distance to the front of `points`: the smallest share of every objective's range (`ideal`
    to `nadir`) by which it must improve in all objectives at once for no point to dominate it any more (the
    additive epsilon indicator on scaled objectives; objectives where ideal and nadir coincide are left
    out). 0 on the front; 0.1 means 10% of each range away."""
    spans = [hi - lo for lo, hi in zip(ideal, nadir, strict=True)]

    def escape(p: Point, q: Point) -> float:  # the shift after which q no longer dominates p
        return min(((x - y) / span for x, y, span in zip(p, q, spans, strict=True) if span > 0), default=0.0)

    return [max((escape(p, q) for q in points if dominates(q, p)), default=0.0) for p in points]


def front_ranks(points: Sequence[Point]) -> list[int]:
    """Each point's non-domination layer: 1 for the front, 2 for the front of the rest, and so on."""
    ranks = [0] * len(points)
    left = list(range(len(points)))
    layer = 0
    while left:
        layer += 1
        front = [left[i] for i in non_dominated([points[j] for j in left])]
        for i in front:
            ranks[i] = layer
        left = [i for i in left if i not in front]
    return ranks


def contributions(points: Sequence[Point], reference: Point) -> list[float]:
    """Each point's exclusive hypervolume: the hypervolume of all points minus that of the others (0 for a
    dominated point or a duplicate)."""
    total = hypervolume(points, reference)
    return [
        total - hypervolume([q for j, q in enumerate(points) if j != i], reference)
        for i in range(len(points))
    ]


def with_interval(stat: dict, digits: int) -> str:
    """A seed statistic (`mean`, `low`, `high`, `per_seed`) as "mean [low, high]", or the mean alone when it
    comes from one seed, which gives no interval (its ends would only repeat the mean)."""
    text = f"{stat['mean']:.{digits}f}"
    if len(stat.get("per_seed", ())) == 1:
        return text
    return f"{text} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def seeds_description(seeds: list[int], intervals: str) -> str:
    """What a table's or figure's numbers are: "mean [interval] over seeds [0, 1, 2]", or one seed's value."""
    if len(seeds) == 1:
        return f"the values of seed {seeds[0]} (one seed: no interval)"
    return f"mean [{intervals}] over seeds {seeds}"


def interval(
    values: Sequence[float], low: float | None = None, high: float | None = None
) -> tuple[float, float, float]:
    """Mean and 95% interval over seeds of a quantity that lies in [low, high] (None: unbounded on that
    side): -> (mean, lower end, upper end).

    Unbounded, it is the Student-t interval mean +- t * s / sqrt(n), which over 2-3 seeds easily reaches
    impossible values (a negative time). With bounds, the same interval is built on a scale where the range
    is unbounded and mapped back (delta method, centred on the mean): log(x - low) with a lower bound,
    -log(high - x) with an upper one, the logit log((x - low) / (high - x)) with both. It is close to the
    t-interval while the spread is small against the distance to the bounds, grows lopsided near a bound,
    and never leaves the range (with 2 widely spread seeds it can span nearly all of it, as it should)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("An interval needs at least one value.")
    if (low is not None and min(values) < low) or (high is not None and max(values) > high):
        raise ValueError(f"Values {values} fall outside the quantity's range [{low}, {high}].")
    mean, t_low, t_high = mean_interval(values)
    if len(values) < 2:  # no interval from one seed: the plots draw the point without error bars
        return mean, mean, mean
    if (low is None and high is None) or t_high == mean:
        return mean, t_low, t_high
    half = t_high - mean  # on the natural scale; > 0, so mean lies strictly inside the range
    slope = (1 / (mean - low) if low is not None else 0.0) + (1 / (high - mean) if high is not None else 0.0)
    ends = []
    for sign in (-1.0, 1.0):
        shift = sign * min(half * slope, 700.0)  # the half-width on the transformed scale (exp-safe)
        if high is None:
            ends.append(low + (mean - low) * math.exp(shift))
        elif low is None:
            ends.append(high - (high - mean) * math.exp(-shift))
        else:  # the logit of (x - low) / (high - low), shifted and mapped back
            logit = math.log((mean - low) / (high - mean)) + shift
            share = 1 / (1 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1 + math.exp(logit))
            ends.append(low + (high - low) * share)
    return mean, ends[0], ends[1]

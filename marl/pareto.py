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
"""

from __future__ import annotations

from collections.abc import Sequence

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

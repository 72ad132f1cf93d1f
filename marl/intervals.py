"""Intervals over seeds: the 95% Student-t interval that the tables, curves and fronts build on (the fronts
map it onto a bounded objective's range: `marl.pareto.interval`)."""

from __future__ import annotations

import math

# two-sided 95% Student-t quantiles by degrees of freedom (1.96 beyond the table)
T_975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval bounds over seeds: -> (mean, low, high); one seed has no interval (NaN
    bounds), so nothing is called separated or significant on a single seed."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = (T_975[n - 2] if n - 2 < len(T_975) else 1.96) * std / math.sqrt(n)
    return mean, mean - half, mean + half

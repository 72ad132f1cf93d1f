"""Bias-aware intervals for MI estimators: subsampling, extrapolation to infinite data, a linearity check.

A finite-sample MI estimator is biased, and the bias shrinks with the sample size; a bootstrap or
half-sampling interval measures only the noise around the biased value, so it is narrow and wrong exactly
where the bias is large. The protocol here (after Holmes & Nemenman, Phys. Rev. E 100, 022404, 2019, and
Abdelaleem, Martini & Nemenman, "Accurate Estimation of Mutual Information in High Dimensional Data", 2025):

1. For each gamma in ``gammas`` (default 1..10) the N samples are randomly split into gamma disjoint
   subsamples of N // gamma points; the estimator runs on every one of them (all gammas' subsamples in one
   batch when the estimator can batch them, as the neural critics do). ``m_gamma`` is their mean and
   ``s2_gamma`` their variance (gamma >= 2).
2. **Fit.** To first order the bias is proportional to 1 / (subsample size), i.e. to gamma, so
   ``m_gamma = I + b gamma``: a weighted least-squares line whose intercept (gamma -> 0, infinite data) is
   the bias-corrected estimate.
3. **Error bar.** Each subsample estimate is I + bias + (1/n) sum_i phi(z_i) + r: a term linear in the
   samples (variance V / n) and a remainder. The linear terms of all gammas' subsamples add up to the same
   sum over all N samples, so they shift every m_gamma alike (a common error of variance A = V / N that no
   fit can average away), while the remainders are independent between subsamples (their mean over gamma
   subsamples has a variance B gamma for a second-order remainder). Then ``s2_gamma / gamma = A + B gamma``:
   a line fitted to the measured spreads (A, B >= 0) gives both parts, and the intercept's variance is
   ``A + sum_gamma w_gamma^2 v_gamma`` (w the fit's weights for the intercept, v_gamma = B gamma the
   independent part, the fit's weights 1 / v_gamma). A residual chi-square per degree of freedom above 1
   inflates the second term.
4. **Linearity (curvature) check.** While the line does not fit (residual chi-square test at level
   ``alpha``, or a quadratic term significant at that level), the largest gamma is dropped (small
   subsamples are where 1/N stops describing the bias); when fewer than ``min_gammas`` remain the result is
   **not reliable**: the bias is not in its 1/N regime even for subsamples of N / min_gammas points, so no
   extrapolation can be trusted.
5. The estimator may add its own verdicts (an InfoNCE estimate close to its log-batch ceiling, a critic
   that never beat a constant): see the ``checks`` argument of :func:`subsample_interval`.

The interval is ``estimate -+ z sqrt(var)`` (clipped below at 0: MI is never negative).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

DEFAULT_GAMMAS = tuple(range(1, 11))
MIN_GAMMAS = 5  # fewer gammas left after the curvature check: not reliable (all of them, if fewer given)
ALPHA = 0.01  # significance of the linearity (curvature) tests
TOLERANCE = 0.1  # nats: a possible bias beyond the interval larger than this makes the estimate not reliable

# Estimates on subsamples: one index tensor [gamma, N // gamma] per gamma in, one [gamma] tensor each out.
SubsampleEstimator = Callable[[list[Tensor]], list[Tensor]]


@dataclass(frozen=True)
class MIInterval:
    """A bias-corrected MI estimate (nats) with its interval and a reliability verdict."""

    estimate: float  # bias-corrected (extrapolated) estimate
    low: float
    high: float
    reliable: bool
    reason: str  # why it is not reliable ("" when it is)
    estimator: str  # e.g. "ksg(k=5, copula)"
    raw: float  # the estimator on all N samples (gamma = 1)
    n: int
    level: float = 0.95
    gammas: tuple[int, ...] = ()  # the gammas the final fit used
    means: dict[int, float] = field(default_factory=dict)  # m_gamma for every gamma computed
    sds: dict[int, float] = field(default_factory=dict)  # spread of the gamma subsample estimates
    slope: float = 0.0  # d m_gamma / d gamma: the bias at N / gamma is about slope * gamma
    seconds: float = 0.0
    candidates: tuple[MIInterval, ...] = ()  # estimator "auto": every estimator that ran

    @property
    def verdict(self) -> str:
        return "reliable" if self.reliable else f"not reliable, because {self.reason}"

    def as_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "reliable": self.reliable,
            "reason": self.reason,
            "verdict": self.verdict,
            "estimator": self.estimator,
            "raw": self.raw,
            "n": self.n,
            "level": self.level,
            "gammas": list(self.gammas),
            "means": {str(g): v for g, v in self.means.items()},
            "sds": {str(g): v for g, v in self.sds.items()},
            "slope": self.slope,
            "seconds": self.seconds,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def subsample_groups(
    n: int,
    gammas: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> list[Tensor]:
    """For each gamma, a random split of range(n) into gamma disjoint blocks of n // gamma points: index
    tensors [gamma, n // gamma]."""
    groups = []
    gen_device = generator.device if generator is not None else torch.device("cpu")
    for g in gammas:
        size = n // g
        perm = torch.randperm(n, generator=generator, device=gen_device)[: g * size]
        groups.append(perm.reshape(g, size).to(device))
    return groups


@dataclass(frozen=True)
class _Fit:
    intercept: float
    slope: float
    var: float
    gammas: tuple[int, ...]
    linear: bool


def _polyfit(g: Tensor, m: Tensor, degree: int) -> tuple[Tensor, Tensor, float]:
    """Least-squares fit m ~ sum_j c_j g^j: coefficients, (X^T X)^-1 (the coefficients' covariance per unit
    noise variance) and the residual sum of squares."""
    design = torch.stack([g**j for j in range(degree + 1)], 1)
    unscaled = torch.linalg.inv(design.T @ design)
    coef = unscaled @ (design.T @ m)
    return coef, unscaled, float((m - design @ coef).square().sum())


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), by its continued fraction (modified Lentz), with the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = (
        a * math.log(x)
        + b * math.log1p(-x)
        - math.log(a)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return math.exp(log_front) * fraction


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        return 1.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def _pooled_spread(spreads: dict[int, float]) -> float:
    """The variance of an estimate on all N samples, from the spread of the gamma-subsample estimates:
    s2_gamma / gamma, averaged with weights gamma - 1 (the degrees of freedom of each spread)."""
    if not spreads:
        return 0.0
    total = sum((g - 1) * s / g for g, s in spreads.items())
    return total / sum(g - 1 for g in spreads)


def _fit(means: dict[int, float], spreads: dict[int, float], min_gammas: int, alpha: float) -> _Fit:
    gammas = sorted(means)
    total = _pooled_spread(spreads)
    if len(gammas) < 3:  # no residual to judge the fit by
        m = means[gammas[0]]
        return _Fit(m, 0.0, total, tuple(gammas), False)
    while True:
        g = torch.tensor(gammas, dtype=torch.float64)
        m = torch.tensor([means[k] for k in gammas], dtype=torch.float64)
        coef, unscaled, rss = _polyfit(g, m, 1)
        straight = True
        if len(gammas) >= 4:  # curvature: is the quadratic coefficient significant?
            coef2, unscaled2, rss2 = _polyfit(g, m, 2)
            noise2 = rss2 / (len(gammas) - 3)
            se = math.sqrt(max(float(unscaled2[2, 2]) * noise2, 1e-300))
            straight = t_two_sided_p(float(coef2[2]) / se, len(gammas) - 3) >= alpha
        if straight or len(gammas) <= min_gammas:
            break
        gammas = gammas[:-1]
    jitter = rss / (len(gammas) - 2)  # independent scatter of the m_gamma around the line
    common = max(0.0, total - jitter)  # the part all m_gamma share (the terms linear in the samples)
    var = common + float(unscaled[0, 0]) * jitter
    return _Fit(float(coef[0]), float(coef[1]), var, tuple(gammas), straight and len(gammas) >= min_gammas)


def extrapolate(
    estimates: dict[int, Tensor],
    n: int,
    *,
    level: float = 0.95,
    min_gammas: int = MIN_GAMMAS,
    alpha: float = ALPHA,
    estimator: str = "",
    checks: Sequence[tuple[bool, str]] = (),
    drift_exponent: float | None = None,
    tolerance: float = TOLERANCE,
) -> MIInterval:
    """The fit of steps 2-4 (module doc) on subsample estimates ``{gamma: [gamma] tensor}``.

    ``drift_exponent`` (alpha_min, for estimators whose bias may decay more slowly than 1/N, as N^-alpha):
    the bias left at N is then not known to be the line's slope but could be up to ``D / (G^alpha_min - 1)``
    (D = the drift of m_gamma from gamma = 1 to G, the mean of the two largest gammas kept: a power law
    c gamma^alpha_min through the same drift), so the interval is widened to ``m_1 - that`` on the side the
    bias points to, and the estimate is not reliable when it lies more than ``tolerance`` nats beyond the
    line's intercept (step 5).
    """
    if not estimates:
        raise ValueError("no subsample estimates")
    means = {g: float(e.double().mean()) for g, e in sorted(estimates.items())}
    spreads = {g: float(e.double().var()) for g, e in sorted(estimates.items()) if g >= 2}
    if not all(math.isfinite(v) for v in [*means.values(), *spreads.values()]):
        raise ValueError(f"non-finite subsample estimates: {means}")
    fit = _fit(means, spreads, min(min_gammas, len(means)), alpha)
    z = float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    half = z * math.sqrt(max(fit.var, 0.0))
    low, high = fit.intercept - half, fit.intercept + half
    reasons = []
    if drift_exponent is not None and len(fit.gammas) >= 2:
        # A power law I + c gamma^alpha through the same drift, from the raw m_1 (a line fitted to a concave
        # curve lies below it at gamma = 1): the truth could be m_1 - c instead of the intercept.
        top = fit.gammas[-1]
        ends = fit.gammas[-2:]
        position = sum(ends) / len(ends)
        drift = sum(means[g] for g in ends) / len(ends) - means[fit.gammas[0]]
        first = means[fit.gammas[0]]
        power = first - drift / (position**drift_exponent - 1) if position > 1 else fit.intercept
        extra = power - fit.intercept  # signed: where the truth may be
        low, high = low + min(0.0, extra), high + max(0.0, extra)
        if abs(extra) > tolerance:
            reasons.append(
                f"the estimate still drifts with the sample size ({means[1]:.3f} nats on all {n} samples, "
                f"{means[top]:.3f} on {n // top}): if its bias decays more slowly than 1/N, up to "
                f"{abs(extra):.2f} nats more {'are missing' if extra > 0 else 'are spurious'}"
            )
    if not fit.linear:
        kept = f"gamma <= {fit.gammas[-1]}" if fit.gammas else "no gamma"
        reasons.append(
            f"the estimate is not linear in 1/N over the subsamples (curvature even for {kept}): its bias is "
            "not in the regime where extrapolation works"
        )
    reasons += [reason for failed, reason in checks if failed]
    return MIInterval(
        estimate=fit.intercept,
        low=max(0.0, low),
        high=max(0.0, high),
        reliable=not reasons,
        reason="; ".join(reasons),
        estimator=estimator,
        raw=means.get(1, float("nan")),
        n=n,
        level=level,
        gammas=fit.gammas,
        means=means,
        sds={g: math.sqrt(s) for g, s in spreads.items()},
        slope=fit.slope,
    )


def subsample_interval(
    estimate_subsamples: SubsampleEstimator,
    n: int,
    *,
    gammas: Sequence[int] = DEFAULT_GAMMAS,
    level: float = 0.95,
    min_gammas: int = MIN_GAMMAS,
    alpha: float = ALPHA,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    estimator: str = "",
    checks: Callable[[dict[int, Tensor]], Sequence[tuple[bool, str]]] | None = None,
    drift_exponent: float | None = None,
    tolerance: float = TOLERANCE,
) -> MIInterval:
    """Run ``estimate_subsamples`` on the random splits for every gamma and extrapolate (module doc).

    ``checks(estimates)`` may return extra ``(failed, reason)`` verdicts of the estimator itself.
    """
    gammas = sorted(set(int(g) for g in gammas))
    if not gammas or gammas[0] < 1:
        raise ValueError(f"gammas must be positive integers, got {gammas}")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    start = time.perf_counter()
    groups = subsample_groups(n, gammas, generator, device)
    results = estimate_subsamples(groups)
    estimates = {g: r.detach().to("cpu", torch.float64).reshape(-1) for g, r in zip(gammas, results)}
    extra = checks(estimates) if checks is not None else ()
    result = extrapolate(
        estimates,
        n,
        level=level,
        min_gammas=min_gammas,
        alpha=alpha,
        estimator=estimator,
        checks=extra,
        drift_exponent=drift_exponent,
        tolerance=tolerance,
    )
    return _with_seconds(result, time.perf_counter() - start)


def _with_seconds(result: MIInterval, seconds: float) -> MIInterval:
    from dataclasses import replace

    return replace(result, seconds=seconds)

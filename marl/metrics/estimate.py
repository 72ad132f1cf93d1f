"""Mutual information of continuous (or label-vs-continuous) data with a bias-aware interval and a verdict.

``mutual_information_interval(x, y)`` returns an :class:`~marl.metrics.extrapolation.MIInterval`: the
bias-corrected estimate, its interval, and ``reliable`` / ``reason`` (``verdict`` reads "reliable" or "not
reliable, because ..."). Every estimator runs the subsampling-extrapolation protocol of
marl/metrics/extrapolation.py on the data after a per-coordinate transform (marl/metrics/transforms.py,
default the Gaussian copula). Estimators (``estimator=``):

* ``"ksg"``: Kraskov-Stögbauer-Grassberger (marl/metrics/knn.py). Rule for k (``k="auto"``): the
  estimate is k = 3, the least biased of k = 3, 5, 10, 20 on every task of the calibration suite (its
  larger noise is in the interval); k = 5 and 10 run on the same subsamples (one neighbour search serves
  all three above 4 joint dims) as a consistency check: KSG's bias grows with k, so the difference
  between k = 3 and k = 10 is added to the interval on the side it points to, and more than ``K_SPREAD``
  nats of it makes the estimate not reliable. Its bias can decay much more slowly than 1/N: the
  neighbourhoods shrink like (k/N)^(1/d) in d joint dimensions, so the drift allowance assumes a decay as
  slow as N^(-1/d) (``drift_exponent`` max(0.1, 1/d)).
* ``"gaussian"``: the best linear-Gaussian critic in closed form (marl/metrics/gaussian.py), unbiased for
  Gaussian data; on the copula's normal scores exact for any Gaussian copula. It cannot see non-Gaussian
  dependence, so its verdict is "not reliable" when the normal scores are not jointly Gaussian (Mardia's
  multivariate kurtosis of the paired samples differs from that of shuffled pairs by more than
  ``3.5`` standard errors: a shared scale, a spiral, bounded noise all change it).
* ``"critic"``: a neural critic (marl/metrics/critics.py, default separable + SMILE on top of the Gaussian
  critic), one per subsample, all trained as one batched model. With the Gaussian base the estimate is
  the Gaussian estimate of the same subsample plus what the critic adds on held-out data over the Gaussian
  base alone. Subsamples of N / gamma for gamma = 1..4 (a critic on fewer points learns little).
* ``"classifier"``: integer X: the classifier bound of marl/metrics/variational.py per subsample;
  continuous X: a classifier of paired vs shuffled (x, y) (the concat critic trained with the cross-entropy
  of that classification, evaluated with the SMILE bound).
* ``"auto"`` (the default): the Gaussian estimate, plus KSG up to ``KSG_MAX_DIM`` joint dims, or above that
  the critic when the Gaussian check finds non-Gaussian dependence. All of them estimate I from below in
  practice (the critics' test-set bounds are lower bounds, the Gaussian misses non-Gaussian dependence,
  KSG underestimates strong dependence), so the largest estimate is kept, with its interval and verdict;
  except that a reliable Gaussian estimate is kept unless another is significantly above it (beyond their
  combined error: it is unbiased and tighter). With non-Gaussian dependence the result is reliable only if
  a nonparametric estimator found significantly more than the Gaussian one. ``candidates`` holds them all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor

from marl.metrics.critics import CriticConfig, critic_estimates
from marl.metrics.extrapolation import (
    DEFAULT_GAMMAS,
    TOLERANCE,
    MIInterval,
    extrapolate,
    subsample_groups,
    subsample_interval,
)
from marl.metrics.gaussian import gaussian_mutual_information
from marl.metrics.knn import ksg_estimates
from marl.metrics.transforms import Transform, apply_transform

Estimator = Literal["auto", "ksg", "gaussian", "critic", "classifier"]
ESTIMATORS = ("auto", "ksg", "gaussian", "critic", "classifier")
KSG_MAX_DIM = 10  # "auto" runs KSG up to this many joint dims, the critic above
KSG_KS = (3, 5, 10)  # k = 3 is the estimate, 5 and 10 the consistency check
K_SPREAD = 0.05  # nats between k = 3 and k = 10 beyond which KSG is not reliable
CRITIC_GAMMAS = (1, 2, 3, 4)
DRIFT_EXPONENT = 0.25  # the slowest bias decay N^-alpha allowed for (critics; KSG: 1 / joint dims)
KURTOSIS_Z = 3.5  # Gaussian estimator: normal scores non-Gaussian beyond this many standard errors


def _points(v: Tensor, name: str) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.dim() == 1:
        v = v.unsqueeze(1)
    if v.dim() != 2 or v.shape[1] == 0 or v.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N] or [N, d], got {tuple(v.shape)}")
    if v.is_floating_point() and not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return v


def _check_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    if y.device != x.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
    if not y.is_floating_point():
        raise TypeError(f"y must be floating point, got {y.dtype}")
    return x, y


def _float(x: Tensor) -> Tensor:
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point for this estimator, got {x.dtype} (labels: 'classifier')")
    return x


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _z(level: float) -> float:
    return float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))


def _above(result: MIInterval, other: MIInterval) -> bool:
    """Is ``result`` significantly above ``other`` (their interval half-widths taken as standard errors)?"""
    z = _z(result.level)
    sd = math.hypot(result.high - result.low, other.high - other.low) / (2 * z)
    return result.estimate - other.estimate > z * sd


def _flag(result: MIInterval, reason: str) -> MIInterval:
    reasons = [r for r in (result.reason, reason) if r]
    return replace(result, reliable=False, reason="; ".join(reasons))


def _cross_check(result: MIInterval, gauss: MIInterval, nonparametric: bool) -> MIInterval:
    """The Gaussian estimate of the same data as a reference. Every estimator here sits below the truth
    when it errs, so one significantly below the Gaussian estimate is missing dependence. And a critic's
    bound on non-Gaussian dependence can be loose by an unknown margin (``nonparametric=False``: no
    consistency to lean on, unlike KSG in few dimensions)."""
    if result is gauss:
        return result
    if _above(gauss, result):
        return _flag(
            result,
            f"the Gaussian estimate of the same data is higher ({gauss.estimate:.3f} nats): this estimator "
            "misses dependence (spread over many dimensions, or too few samples for it)",
        )
    if not nonparametric and not gauss.reliable:
        return _flag(
            result,
            "the dependence is not Gaussian, and a critic's bound on it can be loose by an unknown margin "
            f"({result.estimate - gauss.estimate:+.3f} nats beyond the Gaussian estimate)",
        )
    return result


# --------------------------------------------------------------------------------------------------------
# KSG
# --------------------------------------------------------------------------------------------------------


def ksg_interval(
    x: Tensor,
    y: Tensor,
    *,
    k: int | Literal["auto"] = "auto",
    transform: Transform = "copula",
    gammas: Sequence[int] = DEFAULT_GAMMAS,
    level: float = 0.95,
    seed: int = 0,
    jitter: float = 0.0,
    cross_check: bool = True,
) -> MIInterval:
    """KSG with the subsampling-extrapolation interval (see the module doc for ``k="auto"``). ``jitter``:
    Gaussian noise of this std added after the transform, to break ties (discrete-valued data).
    ``cross_check``: not reliable when the Gaussian estimate of the same data is significantly higher."""
    x, y = _check_pair(x, y)
    x = _float(x)
    ks = KSG_KS if k == "auto" else (k,)
    if any(not isinstance(v, int) or v < 1 for v in ks):
        raise ValueError(f"k must be a positive int or 'auto', got {k!r}")
    n = x.shape[0]
    gen = _generator(seed)
    groups = subsample_groups(n, gammas, gen, x.device)
    if n // max(gammas) <= max(ks):
        raise ValueError(f"{n} samples are too few for k = {max(ks)} on subsamples of 1/{max(gammas)}")
    start = time.perf_counter()
    per_group = []
    for idx in groups:
        rows = []
        for block in idx:
            xb = apply_transform(x[block], transform, "x")
            yb = apply_transform(y[block], transform, "y")
            if jitter > 0:
                xb = xb + jitter * torch.randn(xb.shape, generator=gen, dtype=xb.dtype).to(xb.device)
                yb = yb + jitter * torch.randn(yb.shape, generator=gen, dtype=yb.dtype).to(yb.device)
            rows.append(ksg_estimates(xb, yb, list(ks)))
        per_group.append(torch.stack(rows))  # [gamma, len(ks)]
    results = [
        extrapolate(
            {idx.shape[0]: values[:, j] for idx, values in zip(groups, per_group)},
            n,
            level=level,
            estimator=f"ksg(k={kk}, {transform})",
            drift_exponent=max(0.1, 1.0 / (x.shape[1] + y.shape[1])),
        )
        for j, kk in enumerate(ks)
    ]
    best = results[0]
    if len(results) > 1:  # k-consistency: KSG's bias grows with k, so the spread over k shows its size
        shift = best.estimate - results[-1].estimate  # k = 3 minus k = 10: the bias points this way
        low, high = best.low + min(0.0, shift), best.high + max(0.0, shift)
        reasons = [best.reason] if best.reason else []
        if abs(shift) > K_SPREAD:
            reasons.append(
                f"the estimate depends on k ({best.estimate:.3f} nats at k = {ks[0]}, "
                f"{results[-1].estimate:.3f} at k = {ks[-1]}): the neighbourhoods are coarse for the data"
            )
        best = replace(best, low=max(0.0, low), high=high, reliable=not reasons, reason="; ".join(reasons))
    if cross_check and x.shape[0] // max(gammas) > x.shape[1] + y.shape[1] + 1:
        gauss = gaussian_interval(x, y, transform=transform, gammas=gammas, level=level, seed=seed)
        best = _cross_check(best, gauss, True)
    return replace(best, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------------
# Gaussian
# --------------------------------------------------------------------------------------------------------


def _kurtosis_excess(x: Tensor, y: Tensor, gen: torch.Generator) -> float:
    """Mardia's multivariate kurtosis of the paired samples minus that of shuffled pairs, in standard errors.

    Gaussian dependence adds no kurtosis beyond the margins' (under the null, both are about d (d + 2),
    each with variance 8 d (d + 2) / N); a shared scale, a spiral or bounded noise change it."""
    n = x.shape[0]
    shuffled = y[torch.randperm(n, generator=gen).to(y.device)]

    def kurtosis(z: Tensor) -> float:
        z = z - z.mean(0)
        cov = z.T @ z / n
        m = (torch.linalg.solve(cov, z.T).T * z).sum(1)
        return float(m.square().mean())

    d = x.shape[1] + y.shape[1]
    joint = kurtosis(torch.cat([x, y], 1))
    product = kurtosis(torch.cat([x, shuffled], 1))
    return (joint - product) / math.sqrt(2 * 8 * d * (d + 2) / n)


def gaussian_interval(
    x: Tensor,
    y: Tensor,
    *,
    transform: Transform = "copula",
    gammas: Sequence[int] = DEFAULT_GAMMAS,
    level: float = 0.95,
    seed: int = 0,
) -> MIInterval:
    """The closed-form Gaussian (variational linear-Gaussian critic) estimate with the extrapolation interval
    and a check that the (transformed) dependence is Gaussian (module doc)."""
    x, y = _check_pair(x, y)
    x = _float(x)
    n, d = x.shape[0], x.shape[1] + y.shape[1]
    if n // max(gammas) <= d + 1:
        raise ValueError(f"{n} samples are too few for {d} dims on subsamples of 1/{max(gammas)}")
    gen = _generator(seed)

    def estimate(groups: list[Tensor]) -> list[Tensor]:
        out = []
        for idx in groups:  # all gamma subsamples of one size in one batched call
            xb = apply_transform(x[idx], transform, "x")
            yb = apply_transform(y[idx], transform, "y")
            out.append(gaussian_mutual_information(xb, yb))
        return out

    def checks(_estimates: dict[int, Tensor]) -> list[tuple[bool, str]]:
        xt, yt = apply_transform(x, transform, "x"), apply_transform(y, transform, "y")
        z = _kurtosis_excess(xt, yt, gen)
        return [
            (
                abs(z) > KURTOSIS_Z,
                f"the dependence is not Gaussian (Mardia kurtosis of the pairs {z:+.1f} standard errors from "
                "that of shuffled pairs), and the Gaussian estimate cannot see non-Gaussian dependence",
            )
        ]

    return subsample_interval(
        estimate,
        n,
        gammas=gammas,
        level=level,
        generator=gen,
        device=x.device,
        estimator=f"gaussian({transform})",
        checks=checks,
    )


# --------------------------------------------------------------------------------------------------------
# Neural critics and the classifier
# --------------------------------------------------------------------------------------------------------


def critic_interval(
    x: Tensor,
    y: Tensor,
    *,
    config: CriticConfig | None = None,
    transform: Transform = "copula",
    gammas: Sequence[int] = CRITIC_GAMMAS,
    level: float = 0.95,
    seed: int = 0,
    device: torch.device | str | None = None,
    cross_check: bool = True,
) -> MIInterval:
    """A neural critic (default separable + SMILE on the Gaussian base) on every subsample, trained as one
    batched model on ``device`` (default: the data's), with the extrapolation interval. ``cross_check``:
    not reliable when the Gaussian estimate is significantly higher, or when the dependence is not
    Gaussian (then a critic's bound may be loose by an unknown margin)."""
    x, y = _check_pair(x, y)
    x = _float(x)
    cfg = config or CriticConfig(objective="smile")
    dev = torch.device(device) if device is not None else x.device
    n = x.shape[0]
    gen = _generator(seed)
    ceiling: list[float] = []

    def estimate(groups: list[Tensor]) -> list[Tensor]:
        xs, ys = [], []
        for idx in groups:
            xb = apply_transform(x[idx], transform, "x").to(dev)
            yb = apply_transform(y[idx], transform, "y").to(dev)
            xs += list(xb.unbind(0))
            ys += list(yb.unbind(0))
        run = critic_estimates(xs, ys, cfg, seed=seed)
        values = run.estimate
        if cfg.gaussian_base:  # Gaussian part in closed form (unbiased), plus what the critic adds to it
            gauss = torch.stack([gaussian_mutual_information(a, b) for a, b in zip(xs, ys)])
            values = gauss.cpu() + (run.estimate - run.base)
        ceiling.append(math.log(float(run.n_test[0])))
        sizes = [idx.shape[0] for idx in groups]
        return list(values.split(sizes))

    def checks(estimates: dict[int, Tensor]) -> list[tuple[bool, str]]:
        near = cfg.objective == "infonce" and estimates[min(estimates)].mean() > ceiling[0] - 1.0
        return [(bool(near), f"InfoNCE is within 1 nat of its ceiling log(test samples) = {ceiling[0]:.2f}")]

    start = time.perf_counter()
    result = subsample_interval(
        estimate,
        n,
        gammas=gammas,
        level=level,
        generator=gen,
        device=x.device,
        estimator=f"critic({cfg.name}{'+gaussian' if cfg.gaussian_base else ''}, {transform})",
        checks=checks,
        drift_exponent=DRIFT_EXPONENT,
    )
    if cross_check and n // max(gammas) > x.shape[1] + y.shape[1] + 1:
        gauss = gaussian_interval(x, y, transform=transform, gammas=gammas, level=level, seed=seed)
        result = _cross_check(result, gauss, False)
    return replace(result, seconds=time.perf_counter() - start)


def classifier_interval(
    x: Tensor,
    y: Tensor,
    *,
    transform: Transform = "copula",
    gammas: Sequence[int] = CRITIC_GAMMAS,
    level: float = 0.95,
    seed: int = 0,
    device: torch.device | str | None = None,
    config: CriticConfig | None = None,
) -> MIInterval:
    """The classifier estimator with the extrapolation interval. Integer ``x`` (labels): the classifier bound
    I >= H(X) + E log q(x | y) (marl/metrics/variational.py) on every subsample. Float ``x``: a classifier
    of paired vs shuffled samples (concat critic, cross-entropy training, SMILE bound; ``config``)."""
    x, y = _check_pair(x, y)
    if x.is_floating_point():
        cfg = config or CriticConfig(
            critic="concat",
            objective="smile",
            batch_size=32,
            max_steps=1000,
            negatives=64,
            gaussian_base=False,
        )
        return critic_interval(
            x, y, config=cfg, transform=transform, gammas=gammas, level=level, seed=seed, device=device
        )
    from marl.metrics.variational import classifier_mi_lower_bound

    labels = x.reshape(-1)
    n = labels.shape[0]
    gen = _generator(seed)

    def estimate(groups: list[Tensor]) -> list[Tensor]:
        out = []
        for idx in groups:
            values = []
            for j, block in enumerate(idx):
                yb = apply_transform(y[block], transform, "y") if transform != "none" else y[block]
                result = classifier_mi_lower_bound(
                    labels[block], yb.float(), n_boot=1, seed=seed + 7919 * j + idx.shape[0], device=device
                )
                values.append(result.estimate)
            out.append(torch.tensor(values, dtype=torch.float64))
        return out

    return subsample_interval(
        estimate,
        n,
        gammas=gammas,
        level=level,
        generator=gen,
        device=x.device,
        estimator=f"classifier(labels, {transform})",
        drift_exponent=DRIFT_EXPONENT,
    )


# --------------------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------------------


def mutual_information_interval(
    x: Tensor,
    y: Tensor,
    *,
    estimator: Estimator = "auto",
    transform: Transform = "copula",
    level: float = 0.95,
    seed: int = 0,
    k: int | Literal["auto"] = "auto",
    critic: CriticConfig | None = None,
    device: torch.device | str | None = None,
) -> MIInterval:
    """I(X; Y) in nats with a bias-aware ``level`` interval and a reliability verdict (see the module doc).

    ``x``: ``[N]`` or ``[N, dx]`` (float; integer labels only for ``"classifier"``), ``y``: ``[N]`` or
    ``[N, dy]`` float, on any device. Deterministic for a given ``seed`` (on one device and thread count).
    For ``"auto"`` the chosen estimator's result is returned and ``candidates`` lists every one that ran.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    x, y = _check_pair(x, y)
    common = {"transform": transform, "level": level, "seed": seed}
    if estimator == "ksg":
        return ksg_interval(x, y, k=k, **common)
    if estimator == "gaussian":
        return gaussian_interval(x, y, **common)
    if estimator == "critic":
        return critic_interval(x, y, config=critic, device=device, **common)
    if estimator == "classifier":
        return classifier_interval(x, y, device=device, **common)
    x = _float(x)
    start = time.perf_counter()
    gauss = gaussian_interval(x, y, **common)
    candidates = [gauss]
    if x.shape[1] + y.shape[1] <= KSG_MAX_DIM:
        candidates.append(_cross_check(ksg_interval(x, y, k=k, cross_check=False, **common), gauss, True))
    elif not gauss.reliable:  # above KSG's range the (slower) critic runs only for non-Gaussian dependence
        result = critic_interval(x, y, config=critic, device=device, cross_check=False, **common)
        candidates.append(_cross_check(result, gauss, False))
    best = max(candidates, key=lambda r: r.estimate)
    if gauss.reliable and not _above(best, gauss):  # Gaussian dependence, nothing clearly above it: the
        best = gauss  # unbiased, tighter Gaussian estimate
    # The dependence is not Gaussian: a nonparametric estimate is believed only if it saw more than the
    # Gaussian one did (else it missed the non-Gaussian part too).
    if not gauss.reliable and best.reliable and not _above(best, gauss):
        best = replace(best, reliable=False, reason=f"{gauss.reason} ({best.estimator} found no more)")
    return replace(best, seconds=time.perf_counter() - start, candidates=tuple(candidates))


__all__ = [
    "ESTIMATORS",
    "KSG_MAX_DIM",
    "TOLERANCE",
    "classifier_interval",
    "critic_interval",
    "gaussian_interval",
    "ksg_interval",
    "mutual_information_interval",
]

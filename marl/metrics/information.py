"""Discrete plug-in entropy / mutual information (nats) with Miller-Madow correction, and a bootstrap CI.

All estimators accept integer labels of shape ``[..., N]`` (samples on the last dim); leading dims are
independent batches (e.g. bootstrap replicates) and are handled with one ``torch.bincount`` call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _check_labels(x: Tensor) -> None:
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"expected integer labels, got dtype {x.dtype}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"expected non-empty labels of shape [..., N], got {tuple(x.shape)}")


DENSE_LIMIT = 1 << 22  # labels in [0, DENSE_LIMIT) are binned as they are, without sorting them


def _compact(x: Tensor) -> tuple[Tensor, int]:
    """Map integer labels to codes 0..k-1. Small non-negative labels are their own codes (k = max + 1; empty
    bins change no entropy); others are ranked among the distinct values with ``torch.unique`` (a sort,
    ~10x slower on 1M samples)."""
    low, high = torch.aminmax(x)
    if low >= 0 and high < DENSE_LIMIT:
        return x, int(high) + 1
    uniq, codes = torch.unique(x, return_inverse=True)
    return codes.reshape(x.shape), uniq.numel()


def _counts(codes: Tensor, k: int) -> Tensor:
    """Histogram of codes in [0, k) along the last dim: ``[..., N] -> [rows, k]``, one offset bincount."""
    n = codes.shape[-1]
    flat = codes.reshape(-1, n)
    rows = flat.shape[0]
    offsets = torch.arange(rows, device=codes.device).unsqueeze(1) * k
    return torch.bincount((flat + offsets).reshape(-1), minlength=rows * k).reshape(rows, k)


def _entropy_counts(counts: Tensor, n: int, miller_madow: bool) -> Tensor:
    """Entropy of each row of a histogram ``[rows, k]`` of n samples (Miller-Madow corrected if asked)."""
    p = counts.to(torch.float64) / n
    h = -torch.special.xlogy(p, p).sum(-1)
    if miller_madow:
        h = h + ((counts > 0).sum(-1) - 1).to(torch.float64) / (2 * n)
    return h


def _entropy_codes(codes: Tensor, k: int, miller_madow: bool) -> Tensor:
    """Entropy of codes in [0, k) along the last dim, for all leading dims at once."""
    return _entropy_counts(_counts(codes, k), codes.shape[-1], miller_madow).reshape(codes.shape[:-1])


def entropy_discrete(y: Tensor, miller_madow: bool = True) -> Tensor:
    """Plug-in entropy in nats: H = -sum_k p_k log p_k, p_k = c_k / N.

    Miller-Madow: H_MM = H + (m - 1) / (2N), m = number of non-empty bins.
    ``y``: integer labels ``[..., N]`` -> float64 ``[...]``.
    """
    _check_labels(y)
    codes, k = _compact(y)
    return _entropy_codes(codes, k, miller_madow)


def mutual_information_discrete(x: Tensor, y: Tensor, miller_madow: bool = True) -> Tensor:
    """Plug-in mutual information in nats: I(X; Y) = H(X) + H(Y) - H(X, Y).

    Each entropy is Miller-Madow corrected when ``miller_madow`` (so the estimate can be slightly negative).
    The joint is binned via the index ``cx * k_y + cy`` and one ``torch.bincount``; the marginal histograms
    are its row and column sums.
    ``x``, ``y``: integer labels of the same shape ``[..., N]`` -> float64 ``[...]``.
    """
    _check_labels(x)
    _check_labels(y)
    if x.shape != y.shape:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have the same shape")
    cx, kx = _compact(x)
    cy, ky = _compact(y)
    n = x.shape[-1]
    if kx * ky < DENSE_LIMIT:  # one joint histogram; the marginals are its row and column sums
        joint = _counts(cx * ky + cy, kx * ky).reshape(-1, kx, ky)
        hxy = _entropy_counts(joint.flatten(1), n, miller_madow)
        hx = _entropy_counts(joint.sum(2), n, miller_madow)
        hy = _entropy_counts(joint.sum(1), n, miller_madow)
        return (hx + hy - hxy).reshape(x.shape[:-1])
    cxy, kxy = _compact(cx * ky + cy)  # many labels: bin only the pairs that occur
    hx = _entropy_codes(cx, kx, miller_madow)
    hy = _entropy_codes(cy, ky, miller_madow)
    hxy = _entropy_codes(cxy, kxy, miller_madow)
    return hx + hy - hxy


def bootstrap_ci(
    statistic_fn: Callable[..., Tensor],
    *arrays: Tensor,
    n_boot: int = 200,
    level: float = 0.95,
    generator: torch.Generator | None = None,
    vectorized: bool = False,
    max_elements: int = 1 << 24,
) -> tuple[Tensor, Tensor, Tensor]:
    """Percentile bootstrap: resample rows (dim 0, shared across ``arrays``) with replacement.

    Returns ``(statistic_fn(*arrays), q_{(1-level)/2}, q_{(1+level)/2})`` of the ``n_boot`` replicates.
    ``vectorized=True``: ``statistic_fn`` gets arrays of shape ``[b, N, ...]`` and returns ``[b]`` (the
    estimators in this module do), called once per block of replicates with at most ``max_elements``
    resampled indices; otherwise it is called once per replicate on ``[N, ...]`` arrays.
    """
    if not arrays:
        raise ValueError("need at least one array")
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays) or n == 0:
        raise ValueError("arrays must be non-empty and share their first dimension")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")

    device = arrays[0].device
    gen_device = generator.device if generator is not None else device
    estimate = statistic_fn(*arrays)
    block = max(1, max_elements // n)
    stats = []
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = torch.randint(n, (b, n), generator=generator, device=gen_device).to(device)
        if vectorized:
            stats.append(statistic_fn(*(a[idx] for a in arrays)).reshape(b))
        else:
            stats.extend(torch.as_tensor(statistic_fn(*(a[row] for a in arrays))).reshape(()) for row in idx)
    boot = torch.cat(stats) if vectorized else torch.stack(stats)
    alpha = (1.0 - level) / 2
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64, device=boot.device)
    low, high = torch.quantile(boot.to(torch.float64), q)
    return torch.as_tensor(estimate), low, high

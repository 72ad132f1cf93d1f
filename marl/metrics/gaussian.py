"""Gaussian (canonical-correlation) mutual information, with the exact finite-sample bias of log-dets removed.

For a joint Gaussian, I(X; Y) = (log det S_xx + log det S_yy - log det S) / 2. It is the optimum of the
variational (Barber-Agakov / difference-of-entropies) bound when q(y | x) and q(y) are Gaussian, i.e. the
best linear-Gaussian critic, found in closed form. On the normal scores of the data (the Gaussian copula,
marl/metrics/transforms.py) it is exact for every distribution whose copula is Gaussian, whatever its
margins (any per-coordinate monotone transform of a Gaussian); for other dependence (shared scales as in a
Student-t, spirals, noise with edges) it misses the non-Gaussian part, and then sits below the truth.

Bias: with S the sample covariance of n points (nu = n - 1 degrees of freedom), nu S ~ Wishart(nu, Sigma)
and E[log det S] = log det Sigma + sum_{i=1..d} psi((nu - i + 1) / 2) + d log(2 / nu) exactly, so the
plug-in log-dets are corrected term by term; the estimate is then unbiased for Gaussian data at any n > d
(the plug-in overstates I by about dx dy / (2n): 0.06 nats for 25 x 25 dims on 5,000 samples).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _logdet_bias(d: int, nu: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    i = torch.arange(1, d + 1, dtype=dtype, device=device)
    return torch.special.digamma((nu - i + 1) / 2).sum() + d * math.log(2.0 / nu)


def gaussian_mutual_information(x: Tensor, y: Tensor, *, bias_correct: bool = True) -> Tensor:
    """Gaussian MI of ``x`` ``[..., n, dx]`` and ``y`` ``[..., n, dy]`` (nats, float64 ``[...]``), batched
    over leading dims. Needs n > dx + dy + 1."""
    if x.shape[:-1] != y.shape[:-1] or x.dim() < 2:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must be [..., n, d] with the same n")
    n, dx, dy = x.shape[-2], x.shape[-1], y.shape[-1]
    if n <= dx + dy + 1:
        raise ValueError(f"need more than dx + dy + 1 = {dx + dy + 1} samples, got {n}")
    z = torch.cat([x, y], -1).to(torch.float64)
    z = z - z.mean(-2, keepdim=True)
    cov = z.transpose(-1, -2) @ z / (n - 1)
    parts = [cov[..., :dx, :dx], cov[..., dx:, dx:], cov]
    logdets = [torch.linalg.slogdet(c)[1] for c in parts]
    if bias_correct:
        logdets = [ld - _logdet_bias(c.shape[-1], n - 1, z.dtype, z.device) for ld, c in zip(logdets, parts)]
    return 0.5 * (logdets[0] + logdets[1] - logdets[2])

"""Per-coordinate transforms applied before continuous MI estimators: standardisation and Gaussian copula.

Mutual information is unchanged by an invertible map of X alone or of Y alone, so an estimator may look at
any such map of the data. Two are offered (``transform=`` in marl/metrics/estimate.py):

* ``"standardize"``: each column shifted and scaled to mean 0 and unit (population) standard deviation.
  k-NN estimators need it (the max-norm compares coordinates), neural critics train better with it.
* ``"copula"``: each column replaced by its normal scores ``Phi^-1((rank - 1/2) / N)`` (ties share their
  average rank). The margins become exactly standard normal whatever they were, so heavy tails
  (Student-t, log-normal, cubes) no longer leave most points in a tiny core with a few far outliers, which
  is what breaks k-NN estimators there; and a Gaussian with any per-coordinate monotone transform becomes a
  Gaussian again. It is monotone per coordinate, hence MI-preserving for the population, but the ranks
  are a function of the whole sample, so it is applied to each subsample separately when subsampling.

Both are batched over leading dims: ``[..., N, d] -> [..., N, d]``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Transform = Literal["none", "standardize", "copula"]
TRANSFORMS = ("none", "standardize", "copula")


def standardize(v: Tensor, name: str = "data") -> Tensor:
    """Columns to mean 0 and unit population std: ``[..., N, d]``. Raises on a constant column."""
    std = v.std(-2, correction=0, keepdim=True)
    if bool((std == 0).any()):
        raise ValueError(f"{name} has a constant column: no continuous density, MI estimators are undefined")
    return (v - v.mean(-2, keepdim=True)) / std


def average_ranks(v: Tensor) -> Tensor:
    """Ranks 1..N of each column along dim -2, ties sharing their average rank (float64, same shape)."""
    n = v.shape[-2]
    order = v.argsort(dim=-2, stable=True)
    sorted_v = v.gather(-2, order)
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    positions = positions.view(*([1] * (v.dim() - 2)), n, 1).expand(sorted_v.shape)
    new_run = torch.ones_like(sorted_v, dtype=torch.bool)
    new_run[..., 1:, :] = sorted_v[..., 1:, :] != sorted_v[..., :-1, :]
    if bool(new_run.all()):  # no ties: the rank is the sorted position
        ranked = positions
    else:  # average the positions over each run of equal values
        run_id = new_run.long().cumsum(-2) - 1
        sums = torch.zeros_like(positions).scatter_add_(-2, run_id, positions)
        counts = torch.zeros_like(positions).scatter_add_(-2, run_id, torch.ones_like(positions))
        ranked = (sums / counts.clamp_min(1)).gather(-2, run_id)
    return torch.empty_like(ranked).scatter_(-2, order, ranked)


def copula_normal(v: Tensor) -> Tensor:
    """Normal scores ``Phi^-1((rank - 1/2) / N)`` of each column (float64)."""
    n = v.shape[-2]
    return torch.special.ndtri((average_ranks(v) - 0.5) / n)


def apply_transform(v: Tensor, transform: Transform, name: str = "data") -> Tensor:
    """``v`` ``[..., N, d]`` float -> float64 after ``transform`` (see the module doc)."""
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {TRANSFORMS}")
    v = v.to(torch.float64)
    if transform == "standardize":
        return standardize(v, name)
    if transform == "copula":
        if bool((v.amax(-2) == v.amin(-2)).any()):
            raise ValueError(
                f"{name} has a constant column: no continuous density, MI estimators are undefined"
            )
        return copula_normal(v)
    return v

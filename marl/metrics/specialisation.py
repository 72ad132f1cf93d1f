"""Diversity and specialisation of (identity, behaviour) samples: H(Y), H(Y|X), I(X;Y), normalised.

One definition serves agents in a team and partners in a population. X is who acted (an agent index, or a
partner in a population); Y is a discrete label of what it did (the grid cell an agent is in, the recipe
or goal an episode completed, a behaviour cluster). From N paired samples (x_n, y_n):

- **diversity**        H(Y) = -sum_y p(y) log p(y): how many different behaviours the team/population
  covers in total. Normalised: H(Y) / log K, with K the number of possible behaviours (given, or the
  number observed), in [0, 1].
- **consistency gap**  H(Y|X) = sum_x p(x) H(Y|X=x): how varied each individual is; H(Y|X=x) is the
  per-agent (per-partner) *role entropy* (0 = that agent always does the same thing).
- **specialisation**   I(X;Y) = H(Y) - H(Y|X): how much knowing who acted tells you about what was
  done. Normalised: I(X;Y) / H(Y) in [0, 1] (Theil's uncertainty coefficient): 1 when each individual
  is deterministic (a pure specialist), 0 when all individuals behave alike.

A population can be diverse but not specialised (every partner does everything: high H(Y), high H(Y|X))
or specialised but not diverse (each partner sticks to one behaviour, but they all pick the same one: then
H(Y) = I = 0). All entropies are in nats, Grassberger's estimates (far less biased than plug-in or
Miller-Madow when many behaviours have few samples); H(Y) and I(X;Y) come with bias-aware half-sampling
intervals (marl/metrics/information.py: ``discrete_information``), which cover the truth from ~200 samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from marl.metrics.information import _grassberger_counts, discrete_information


@dataclass(frozen=True)
class SpecialisationReport:
    """Diversity and specialisation of behaviours Y across identities X (nats; see the module docstring)."""

    behaviour_entropy: float  # H(Y): diversity
    conditional_entropy: float  # H(Y|X)
    mutual_information: float  # I(X;Y): specialisation
    mi_low: float  # interval of I(X;Y)
    mi_high: float
    diversity: float  # H(Y) / log K
    specialisation: float  # I(X;Y) / H(Y)
    role_entropy: tuple[float, ...]  # H(Y | X=x) for each identity x = 0..n_identities-1
    num_behaviours: int  # K used to normalise the diversity
    entropy_low: float = math.nan  # interval of H(Y)
    entropy_high: float = math.nan
    reliable: bool = True  # verdict on I(X;Y) (marl/metrics/information.py: discrete_information)
    reason: str = ""  # why it is not reliable

    @property
    def verdict(self) -> str:
        return "reliable" if self.reliable else f"not reliable, because {self.reason}"

    def as_dict(self, prefix: str = "", names: list[str] | None = None) -> dict[str, float]:
        """Flat scalars for logging; role entropies are keyed by `names` (default: the identity index)."""
        names = names or [str(i) for i in range(len(self.role_entropy))]
        out = {
            f"{prefix}behaviour_entropy": self.behaviour_entropy,
            f"{prefix}behaviour_entropy_low": self.entropy_low,
            f"{prefix}behaviour_entropy_high": self.entropy_high,
            f"{prefix}conditional_entropy": self.conditional_entropy,
            f"{prefix}mutual_information": self.mutual_information,
            f"{prefix}mutual_information_low": self.mi_low,
            f"{prefix}mutual_information_high": self.mi_high,
            f"{prefix}mutual_information_reliable": float(self.reliable),
            f"{prefix}diversity": self.diversity,
            f"{prefix}specialisation": self.specialisation,
        }
        out.update({f"{prefix}role_entropy/{n}": h for n, h in zip(names, self.role_entropy, strict=True)})
        return out


def role_entropies(identity: Tensor, behaviour: Tensor, n_identities: int) -> Tensor:
    """H(Y | X=x) for x = 0..n_identities-1 (Grassberger, nats); NaN for an identity with no samples."""
    if identity.shape != behaviour.shape or identity.dim() != 1:
        raise ValueError(
            f"identity {tuple(identity.shape)} and behaviour {tuple(behaviour.shape)} must be 1-D, same shape"
        )
    if identity.numel() and (identity.min() < 0 or identity.max() >= n_identities):
        raise ValueError(
            f"identities must lie in [0, {n_identities}), got {int(identity.min())}..{int(identity.max())}"
        )
    _, y = torch.unique(behaviour, return_inverse=True)
    k = int(y.max()) + 1 if y.numel() else 1
    counts = torch.bincount(identity * k + y, minlength=n_identities * k).reshape(n_identities, k)
    n_x = counts.sum(-1).to(torch.float64)
    h = _grassberger_counts(counts, n_x.clamp_min(1))
    return torch.where(n_x > 0, h.clamp_min(0.0), torch.full_like(h, float("nan")))


def specialisation_report(
    identity: Tensor,
    behaviour: Tensor,
    *,
    n_identities: int | None = None,
    num_behaviours: int | None = None,
    n_boot: int = 200,
    level: float = 0.95,
    generator: torch.Generator | None = None,
) -> SpecialisationReport:
    """Diversity H(Y), H(Y|X), specialisation I(X;Y) with intervals, normalised versions, role entropies.

    ``identity``: integer X in [0, n_identities) per sample; ``behaviour``: integer labels Y, same shape
    (any leading dims are flattened). ``num_behaviours``: K for the diversity normalisation H(Y) / log K
    (default: the number of distinct behaviours observed, so the normalised diversity says how evenly the
    observed behaviours are used). ``n_boot``: half-samples for the intervals (``discrete_information``).
    """
    x, y = identity.reshape(-1).long(), behaviour.reshape(-1).long()
    if x.shape != y.shape:
        raise ValueError(f"identity {tuple(identity.shape)} and behaviour {tuple(behaviour.shape)} differ")
    if x.numel() < 2:
        raise ValueError("need at least 2 (identity, behaviour) samples")
    n_identities = n_identities if n_identities is not None else int(x.max()) + 1
    observed = int(torch.unique(y).numel())
    if num_behaviours is not None and num_behaviours < observed:
        raise ValueError(f"num_behaviours={num_behaviours} but {observed} distinct behaviours were observed")
    k = num_behaviours or observed

    info = discrete_information(
        x, y, n_half=max(2, n_boot), level=level, generator=generator, num_behaviours=num_behaviours
    )
    h_y, h_low, h_high = info.entropy
    mi, low, high = info.mutual_information
    return SpecialisationReport(
        behaviour_entropy=h_y,
        conditional_entropy=h_y - mi,
        mutual_information=mi,
        mi_low=float(low),
        mi_high=float(high),
        diversity=min(1.0, max(0.0, h_y / math.log(k))) if k > 1 else 0.0,
        specialisation=min(1.0, max(0.0, mi / h_y)) if h_y > 0 else 0.0,
        role_entropy=tuple(role_entropies(x, y, n_identities).tolist()),
        num_behaviours=k,
        entropy_low=h_low,
        entropy_high=h_high,
        reliable=info.reliable,
        reason=info.reason,
    )

"""Team specialisation from the agents' policies and trajectories.

**I(agent; action | observation)**, counterfactual: every agent's policy is evaluated on the same
observation o (as SND does), the agent identity I is uniform over the n agents, and

    I(I; A | O) = E_o[ H( (1/n) sum_i pi_i(.|o) ) - (1/n) sum_i H(pi_i(.|o)) ]
                = E_o[ (1/n) sum_i KL(pi_i(.|o) || m(.|o)) ],   m = (1/n) sum_j pi_j,

the generalised Jensen-Shannon divergence of the agents' action distributions, in [0, log n] nats: 0 when
all agents act alike in every situation, log n when their actions never overlap. The counterfactual form is
deliberate: under the natural joint (each agent on its own observations) an observation often reveals who
sees it (its own goal, its own position), and then I(I; A | O) is 0 whatever the policies do.

For categorical policies it is exact; for Gaussian policies the mixture entropy has no closed form, so it is
estimated by Monte Carlo: a ~ pi_i(.|o), term log pi_i(a|o) - log m(a|o) (unbiased for the KL). For
tanh-squashed Gaussians the squashing is the same bijection for every agent, so the value is the same in
the sample space and the action space.

**Where agents spend their time**: `cell_labels` turns positions into grid-cell labels; pass
(agent index, cell) to `marl.metrics.specialisation_report` for I(agent; cell) and per-agent role entropy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_CHUNK = 4096


def categorical_identity_information(probs: Tensor) -> Tensor:
    """Per-observation I(agent; action | o) for categorical policies: ``probs [B, n, A] -> [B]`` (nats)."""
    if probs.dim() != 3 or probs.shape[1] < 2:
        raise ValueError(f"expected probs [batch, n_agents >= 2, n_actions], got {tuple(probs.shape)}")
    p = probs.to(torch.float64)
    mix = p.mean(1)
    h_mix = -torch.special.xlogy(mix, mix).sum(-1)
    h_agents = -torch.special.xlogy(p, p).sum(-1).mean(-1)
    return (h_mix - h_agents).clamp_min(0)


def gaussian_identity_information(
    mu: Tensor,
    sigma: Tensor,
    *,
    samples: int = 16,
    generator: torch.Generator | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """Per-observation Monte Carlo I(agent; action | o) for diagonal Gaussian policies (nats).

    ``mu``, ``sigma``: ``[B, n, action_dim]`` -> ``[B]``. ``samples`` draws per observation and agent;
    memory is O(chunk_size * n^2 * samples * action_dim).
    """
    if mu.shape != sigma.shape or mu.dim() != 3 or mu.shape[1] < 2:
        raise ValueError(
            f"expected mu and sigma [batch, n_agents >= 2, action_dim] of the same shape, got "
            f"{tuple(mu.shape)} and {tuple(sigma.shape)}"
        )
    if samples < 1:
        raise ValueError("samples must be >= 1")
    n = mu.shape[1]
    out = []
    for start in range(0, mu.shape[0], chunk_size):
        m = mu[start : start + chunk_size].to(torch.float64)
        s = sigma[start : start + chunk_size].to(torch.float64)
        b, _, d = m.shape
        noise = torch.randn((b, n, samples, d), generator=generator, dtype=torch.float64, device="cpu")
        a = m.unsqueeze(2) + s.unsqueeze(2) * noise.to(m.device)  # [b, i, S, d]: samples of agent i
        # log N(a; mu_j, sigma_j) for every agent j: [b, i, S, j] (the 2*pi constant cancels)
        z = (a.unsqueeze(3) - m[:, None, None]) / s[:, None, None]
        log_p = (-0.5 * z.square() - s[:, None, None].log()).sum(-1)
        own = log_p.diagonal(dim1=1, dim2=3).permute(0, 2, 1)  # [b, i, S]: log pi_i(a)
        log_mix = log_p.logsumexp(-1) - math.log(n)
        out.append((own - log_mix).mean((1, 2)))
    return torch.cat(out).clamp_min(0)


def cell_labels(positions: Tensor, cell_size: float, origin: Tensor | None = None) -> Tensor:
    """Grid-cell label of each position: ``[..., dim] -> [...]`` integer labels (equal cell <=> equal label).

    Cells are axis-aligned cubes of side ``cell_size`` anchored at ``origin`` (default: the origin of the
    coordinates, so labels are comparable across calls).
    """
    if cell_size <= 0:
        raise ValueError(f"cell_size must be > 0, got {cell_size}")
    if not positions.is_floating_point():
        raise ValueError(f"positions must be floating point, got {positions.dtype}")
    shifted = positions if origin is None else positions - origin
    cells = torch.floor(shifted / cell_size).long().reshape(-1, positions.shape[-1])
    _, labels = torch.unique(cells, dim=0, return_inverse=True)
    return labels.reshape(positions.shape[:-1])

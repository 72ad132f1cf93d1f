"""Diversity and specialisation of a trained team, measured on traced evaluation episodes.

Used by the training loop (every `metrics.every` iterations, logged under `team/`) and by `marl metrics`.
Per agent group with at least two agents:

- `team/<group>/snd`: System Neural Diversity of the actors (W2 between Gaussians, Hellinger between
  categoricals; marl/metrics/snd.py) over the group's observations pooled across agents, and its n x n matrix;
- `team/<group>/action_identity_mi`: I(agent; action | observation) (marl/metrics/team.py), with its
  bootstrap CI and normalised by its maximum log n;

and, where the env has agent positions (VMAS), for the whole team, with Y = the grid cell an agent is in:
- `team/visits/...`: H(Y) (diversity), H(Y|X), I(agent; cell) (specialisation) with its CI, normalised
  versions, and each agent's role entropy H(Y | agent) (marl/metrics/specialisation.py);
- with `metrics.position_mi`, `team/positions/mutual_information(_low, _high, _reliable)`: I(agent;
  position) on the continuous positions (classifier estimator, marl/metrics/estimate.py), no binning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from marl.agents.policy import ActorCritic
from marl.config import MetricsConfig
from marl.envs.factory import EnvInfo
from marl.metrics import (
    MIInterval,
    bootstrap_ci,
    categorical_identity_information,
    cell_labels,
    classifier_interval,
    gaussian_identity_information,
    snd_matrix,
    specialisation_report,
)
from marl.metrics.specialisation import SpecialisationReport

FORWARD_CHUNK = 4096  # observations per batched forward pass of all agents' actors (at most)
CHUNK_BYTES = 256 * 2**20  # and at most about this much memory per pass (image observations are large)


@dataclass
class TeamMetrics:
    scalars: dict[str, float] = field(default_factory=dict)  # flat `team/...` scalars for logging
    snd_matrices: dict[str, torch.Tensor] = field(default_factory=dict)  # group -> [n, n]
    visits: SpecialisationReport | None = None
    positions: MIInterval | None = None  # I(agent; position), with `metrics.position_mi`


@torch.no_grad()
def team_metrics(model: ActorCritic, env_info: EnvInfo, trace: dict, cfg: MetricsConfig) -> TeamMetrics:
    """All team metrics from a `run_episodes(..., trace=True)` trace. Deterministic given `cfg.seed`; uses
    its own generator, never the global RNG."""
    generator = torch.Generator().manual_seed(cfg.seed)
    valid = trace["valid"]
    result = TeamMetrics()
    for group in env_info.groups:
        if group.n_agents < 2:
            continue
        # observations pooled over agents, subsampled to max_observations, and gathered from the trace one
        # chunk at a time: never all of them at once (an image env's trace holds GBs as floats)
        trace_obs = trace[f"{group.name}/observation"]
        trace_mask = trace.get(f"{group.name}/action_mask")
        steps = valid.nonzero()  # [K, 2]: (env, time) of every valid step
        rows = torch.arange(steps.shape[0] * group.n_agents, device=steps.device)
        if rows.numel() > cfg.max_observations:
            keep = torch.randperm(rows.numel(), generator=generator)[: cfg.max_observations]
            rows = rows[keep.to(rows.device)]
        actor = model.actors[group.name]
        chunks = []
        for part in rows.split(_chunk_rows(group.n_agents, group.obs_dim)):
            step, agent = steps[part // group.n_agents], part % group.n_agents
            obs = trace_obs[step[:, 0], step[:, 1], agent.to(trace_obs.device)]
            mask = None if trace_mask is None else trace_mask[step[:, 0], step[:, 1], agent]
            chunks.append(actor.counterfactual_params(obs, mask))
        if group.discrete:
            probs = torch.cat([c[0] for c in chunks])
            matrix = snd_matrix(probs, kind="categorical")
            per_obs = categorical_identity_information(probs)
        else:
            loc, scale = torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])
            matrix = snd_matrix(loc, scale)
            per_obs = gaussian_identity_information(
                loc, scale, samples=cfg.action_samples, generator=generator
            )
        mi, low, high = bootstrap_ci(
            _mean, per_obs, n_boot=cfg.bootstrap, generator=generator, vectorized=True
        )
        n = group.n_agents
        pairs = torch.triu_indices(n, n, offset=1)
        prefix = f"team/{group.name}/"
        result.snd_matrices[group.name] = matrix.cpu()
        result.scalars.update(
            {
                f"{prefix}snd": matrix[pairs[0], pairs[1]].mean().item(),
                f"{prefix}action_identity_mi": float(mi),
                f"{prefix}action_identity_mi_low": float(low),
                f"{prefix}action_identity_mi_high": float(high),
                f"{prefix}action_identity_mi_normalised": float(mi) / math.log(n),
            }
        )

    positions = trace.get("positions")
    if positions is not None and env_info.n_agents >= 2:
        pos = positions[valid]  # [samples, n_agents, dim]
        cells = cell_labels(pos, cfg.cell_size)
        agent = torch.arange(env_info.n_agents, device=cells.device).expand_as(cells)
        result.visits = specialisation_report(
            agent, cells, n_identities=env_info.n_agents, n_boot=cfg.bootstrap, generator=generator
        )
        result.scalars.update(result.visits.as_dict("team/visits/", names=env_info.agent_names))
        if cfg.position_mi:
            mi = classifier_interval(agent.reshape(-1), pos.reshape(-1, pos.shape[-1]).float(), seed=cfg.seed)
            result.positions = mi
            result.scalars.update(
                {
                    "team/positions/mutual_information": mi.estimate,
                    "team/positions/mutual_information_low": mi.low,
                    "team/positions/mutual_information_high": mi.high,
                    "team/positions/mutual_information_reliable": float(mi.reliable),
                }
            )
    return result


def _chunk_rows(n_agents: int, obs_dim: int) -> int:
    """Observations per forward pass: every agent's network sees each one (n_agents copies of it, as
    float32, plus an encoder's activations: about 3x), within `CHUNK_BYTES`."""
    per_row = 3 * 4 * n_agents * obs_dim
    return max(1, min(FORWARD_CHUNK, CHUNK_BYTES // per_row))


def _mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean(-1)


def snd_heatmap(matrix: torch.Tensor, names: list[str], title: str):
    """A matplotlib figure of a pairwise policy-distance matrix (for TensorBoard and reports)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n), dpi=100)
    image = ax.imshow(matrix.numpy(), cmap="viridis", vmin=0)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ink = _ink(matrix[i, j], matrix.max())
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8, color=ink)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _ink(value: torch.Tensor, top: torch.Tensor) -> str:
    """Black text on the light (high) end of viridis, white on the dark end."""
    return "black" if top > 0 and value > 0.6 * top else "white"

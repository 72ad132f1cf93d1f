"""`marl eval` and `marl metrics`: load a run or checkpoint, run evaluation episodes, print a table."""

from __future__ import annotations

from pathlib import Path

import torch

from envs.factory import EnvInfo
from marl.checkpoint import load_checkpoint, resolve_checkpoint
from marl.config import config_from_dict
from marl.team_metrics import TeamMetrics, snd_heatmap
from marl.training import (
    Trainer,
    build_trainer,
    episode_metrics,
    evaluation_episodes,
    measure_team,
    resolve_device,
)


def load_trained(run: str | Path, device: str = "auto") -> tuple[Trainer, dict, Path]:
    """A run's (or checkpoint's) trainer with the saved weights, for evaluation: -> (trainer, state, path)."""
    path = resolve_checkpoint(run)
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    cfg.experiment.device = str(resolve_device(device))
    cfg.env.device = "auto"
    cfg.env.num_envs = cfg.experiment.frames_per_batch = 1  # the training collector is unused here
    cfg.collector.num_workers = 0
    trainer = build_trainer(cfg)
    trainer.model.load_state_dict(state["model"])
    return trainer, state, path


def evaluate_checkpoint(
    run: str | Path,
    episodes: int,
    render: str | None = None,
    deterministic: bool = True,
    device: str = "auto",
) -> dict[str, float]:
    """Evaluate the policy saved in `run` on the same held-out starts as the run's own evaluations;
    prints a per-agent table and returns the metrics."""
    trainer, state, path = load_trained(run, device)

    frames = []
    record = None
    if render:
        from envs.render import render_frame, save_animation

        def record():
            frames.append(render_frame(trainer.eval_env, env_index=0))

    result = evaluation_episodes(trainer, episodes, deterministic, record)
    metrics = episode_metrics(result, trainer.env_info, prefix="")
    _print_table(path, state, result, trainer.env_info, metrics, deterministic)
    if render:
        out = save_animation(frames, render)
        print(f"Rendered {len(frames)} frames of env 0 to {out}")
    return metrics


def _print_table(path, state, result, env_info, metrics, deterministic) -> None:
    per_agent = torch.cat([result[f"{g.name}/return"] for g in env_info.groups], dim=-1)
    mode = "deterministic" if deterministic else "stochastic"
    print(f"{path}  (iteration {state['iteration']}, {state['frames']:,} frames)")
    print(f"{per_agent.shape[0]} {mode} episodes of {env_info.name}\n")
    print(f"{'agent':<16}{'mean return':>14}{'std':>10}{'min':>10}{'max':>10}")
    for i, name in enumerate(env_info.agent_names):
        column = per_agent[:, i]
        print(
            f"{name:<16}{column.mean():>14.3f}{column.std():>10.3f}{column.min():>10.3f}{column.max():>10.3f}"
        )
    team = per_agent.mean(-1)
    print(f"{'team (mean)':<16}{team.mean():>14.3f}{team.std():>10.3f}{team.min():>10.3f}{team.max():>10.3f}")
    print(f"\nmean episode length {metrics['episode_length']:.1f} steps")


def measure_checkpoint(
    run: str | Path,
    episodes: int | None = None,
    deterministic: bool = True,
    device: str = "auto",
    cell_size: float | None = None,
    heatmap: str | None = None,
) -> dict[str, float]:
    """Diversity and specialisation metrics of the policy saved in `run` (marl/team_metrics.py) on the
    held-out evaluation starts; prints a table and returns the `team/...` scalars."""
    trainer, state, path = load_trained(run, device)
    cfg = trainer.cfg.metrics
    cfg.episodes = episodes or cfg.episodes
    cfg.cell_size = cell_size or cfg.cell_size
    team = measure_team(trainer, deterministic)
    mode = "deterministic" if deterministic else "stochastic"
    print(f"{path}  (iteration {state['iteration']}, {state['frames']:,} frames)")
    print(f"{cfg.episodes} {mode} episodes of {trainer.env_info.name}")
    print(format_team_metrics(team, trainer.env_info, cfg.cell_size))
    if heatmap:
        _save_heatmaps(team, trainer.env_info, heatmap)
    return team.scalars


def format_team_metrics(team: TeamMetrics, env_info: EnvInfo, cell_size: float) -> str:
    """A plain-text report of `TeamMetrics` (nats throughout)."""
    lines = []
    for group in env_info.groups:
        if group.name not in team.snd_matrices:
            lines.append(f"\ngroup {group.name}: a single agent, no pairwise diversity")
            continue
        s, prefix = team.scalars, f"team/{group.name}/"
        low, high = s[prefix + "action_identity_mi_low"], s[prefix + "action_identity_mi_high"]
        distance = "Hellinger" if group.discrete else "Wasserstein-2"
        lines += [
            f"\nPolicy diversity, group {group.name} ({group.n_agents} agents)",
            f"  {'SND (mean ' + distance + ' over pairs)':<36}{s[prefix + 'snd']:>9.4f}",
            f"  {'I(agent; action | observation)':<36}{s[prefix + 'action_identity_mi']:>9.4f} nats  "
            f"95% CI [{low:.4f}, {high:.4f}]"
            f"  ({s[prefix + 'action_identity_mi_normalised']:.1%} of log {group.n_agents})",
            "  pairwise distances:",
            "  " + " " * 12 + "".join(f"{name[:10]:>11}" for name in group.agent_names),
        ]
        matrix = team.snd_matrices[group.name]
        for i, name in enumerate(group.agent_names):
            lines.append(f"  {name[:12]:<12}" + "".join(f"{v:>11.4f}" for v in matrix[i].tolist()))
    visits = team.visits
    if visits is None:
        lines.append("\nThe environment reports no agent positions: no visited-cell metrics.")
        return "\n".join(lines)
    lines += [
        f"\nWhere agents spend their time (Y = grid cell of side {cell_size}, X = agent)",
        f"  {'diversity H(Y)':<36}{visits.behaviour_entropy:>9.4f} nats  "
        f"({visits.diversity:.1%} of log {visits.num_behaviours} cells visited)",
        f"  {'H(Y | X)':<36}{visits.conditional_entropy:>9.4f} nats",
        f"  {'specialisation I(X; Y)':<36}{visits.mutual_information:>9.4f} nats  "
        f"95% CI [{visits.mi_low:.4f}, {visits.mi_high:.4f}]  ({visits.specialisation:.1%} of H(Y))",
        "  role entropy H(Y | agent):",
    ]
    for name, h in zip(env_info.agent_names, visits.role_entropy, strict=True):
        lines.append(f"    {name:<34}{h:>9.4f} nats")
    return "\n".join(lines)


def _save_heatmaps(team: TeamMetrics, env_info: EnvInfo, path: str) -> None:
    target = Path(path)
    for group in env_info.groups:
        if group.name not in team.snd_matrices:
            continue
        out = target if len(team.snd_matrices) == 1 else target.with_stem(f"{target.stem}-{group.name}")
        figure = snd_heatmap(team.snd_matrices[group.name], list(group.agent_names), f"SND {group.name}")
        figure.savefig(out)
        print(f"SND heatmap of group {group.name}: {out}")

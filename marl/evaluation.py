"""`marl eval` and `marl metrics`: load a run or checkpoint, run evaluation episodes, print a table."""

from __future__ import annotations

from pathlib import Path

import torch

from marl.checkpoint import load_checkpoint, resolve_checkpoint
from marl.config import config_from_dict
from marl.envs.factory import EnvInfo
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

    recorder = FrameRecorder(lambda: trainer.eval_env) if render else None  # the eval env is built lazily
    record = recorder.record if recorder else None

    result = evaluation_episodes(trainer, episodes, deterministic, record)
    metrics = episode_metrics(result, trainer.env_info, prefix="")
    mode = "deterministic" if deterministic else "stochastic"
    print(f"{path}  (iteration {state['iteration']}, {state['frames']:,} frames)")
    print(f"{len(result['length'])} {mode} episodes of {trainer.env_info.name}\n")
    print(format_returns(result, trainer.env_info, metrics))
    if recorder:
        recorder.save(render)
    return metrics


def evaluate_heuristic(
    spec: str, overrides: list[str], episodes: int, seed: int = 0, render: str | None = None
) -> dict[str, float]:
    """Evaluate a hand-designed policy (`heuristic:<team>[/<search>]`, agents/heuristics.py) in the env the
    overrides configure, on the held-out starts a trained run with the same experiment.seed is evaluated
    on; prints the same table as for a trained run and returns the metrics."""
    from marl.agents.heuristics import make_heuristic
    from marl.collector import heldout_episodes
    from marl.config import load_config
    from marl.envs.factory import describe_env, make_env
    from marl.runs import untouched_rng
    from marl.training import EVAL_SEED_OFFSET

    cfg = load_config(overrides)
    eval_seed = cfg.experiment.seed + EVAL_SEED_OFFSET
    with untouched_rng("cpu"):
        env = make_env(cfg.env, "cpu", eval_seed, num_envs=episodes, global_state=False)
    env_info = describe_env(env, cfg.env.name, cfg.env.max_steps, cfg.env.kwargs)
    policy = make_heuristic(spec, env_info, seed)
    recorder = FrameRecorder(lambda: env) if render else None
    record = recorder.record if recorder else None

    result = heldout_episodes(env, env_info, policy, eval_seed, record)
    metrics = episode_metrics(result, env_info, prefix="")
    print(f"{spec} (seed {seed})\n{episodes} episodes of {env_info.name}\n")
    print(format_returns(result, env_info, metrics))
    if recorder:
        recorder.save(render)
    env.close()
    return metrics


class FrameRecorder:
    """Frames of env 0 of the env `get_env()` returns, one per `record()` call, saved as an animation."""

    def __init__(self, get_env):
        self.get_env = get_env
        self.frames = []

    def record(self) -> None:
        from marl.envs.render import render_frame

        self.frames.append(render_frame(self.get_env(), env_index=0))

    def save(self, path: str) -> None:
        from marl.envs.render import save_animation

        out = save_animation(self.frames, path)
        print(f"Rendered {len(self.frames)} frames of env 0 to {out}")


def format_returns(result: dict, env_info: EnvInfo, metrics: dict[str, float]) -> str:
    """Per-agent returns (mean, std, min, max over episodes), the team's, and what the env reported at the
    episodes' end (`info/...`)."""
    per_agent = torch.cat([result[f"{g.name}/return"] for g in env_info.groups], dim=-1)
    lines = [f"{'agent':<16}{'mean return':>14}{'std':>10}{'min':>10}{'max':>10}"]
    team = per_agent.mean(-1)
    columns = [*zip(env_info.agent_names, per_agent.T, strict=True), ("team (mean)", team)]
    for name, column in columns:
        lines.append(
            f"{name:<16}{column.mean():>14.3f}{column.std():>10.3f}{column.min():>10.3f}{column.max():>10.3f}"
        )
    lines.append(f"\nmean episode length {metrics['episode_length']:.1f} steps")
    reported = {k: v for k, v in metrics.items() if k.startswith("info/")}
    if reported:
        lines.append("at the end of an episode (mean over episodes):")
        lines += [f"  {key[len('info/') :]:<24}{value:>12.3f}" for key, value in reported.items()]
    return "\n".join(lines)


def measure_checkpoint(
    run: str | Path,
    episodes: int | None = None,
    deterministic: bool = True,
    device: str = "auto",
    cell_size: float | None = None,
    heatmap: str | None = None,
    position_mi: bool = False,
) -> dict[str, float]:
    """Diversity and specialisation metrics of the policy saved in `run` (marl/team_metrics.py) on the
    held-out evaluation starts; prints a table and returns the `team/...` scalars."""
    trainer, state, path = load_trained(run, device)
    cfg = trainer.cfg.metrics
    cfg.episodes = episodes or cfg.episodes
    cfg.cell_size = cell_size or cfg.cell_size
    cfg.position_mi = position_mi or cfg.position_mi
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
        f"  {'':<36}{visits.verdict}",
        "  role entropy H(Y | agent):",
    ]
    for name, h in zip(env_info.agent_names, visits.role_entropy, strict=True):
        lines.append(f"    {name:<34}{h:>9.4f} nats")
    if team.positions is not None:
        mi = team.positions
        lines += [
            f"\nI(agent; position), continuous positions ({mi.estimator})",
            f"  {'I(X; position)':<36}{mi.estimate:>9.4f} nats  95% interval [{mi.low:.4f}, {mi.high:.4f}]",
            f"  {'':<36}{mi.verdict}",
        ]
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

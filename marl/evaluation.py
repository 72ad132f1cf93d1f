"""`marl eval`: load a run or checkpoint, run evaluation episodes, print a table, optionally render."""

from __future__ import annotations

from pathlib import Path

import torch

from marl.checkpoint import load_checkpoint, resolve_checkpoint
from marl.config import config_from_dict
from marl.training import build_trainer, episode_metrics, evaluation_episodes, resolve_device


def evaluate_checkpoint(
    run: str | Path,
    episodes: int,
    render: str | None = None,
    deterministic: bool = True,
    device: str = "auto",
) -> dict[str, float]:
    """Evaluate the policy saved in `run` on the same held-out starts as the run's own evaluations;
    prints a per-agent table and returns the metrics."""
    path = resolve_checkpoint(run)
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    cfg.experiment.device = str(resolve_device(device))
    cfg.env.device = "auto"
    cfg.env.num_envs = cfg.experiment.frames_per_batch = 1  # the training collector is unused here
    trainer = build_trainer(cfg)
    trainer.model.load_state_dict(state["model"])

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

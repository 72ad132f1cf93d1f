"""The training loop: collect a batch, compute advantages, PPO epochs, log, evaluate, checkpoint.

Read `train()` top to bottom; everything it calls is a small function in this file or a named module:
envs/factory.py (env), agents/policy.py (networks), marl/collector.py (rollouts), marl/ppo.py (losses),
marl/checkpoint.py and marl/run_logger.py (files).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from marl.agents.policy import ActorCritic
from marl.agents.seats import SeatPolicy, build_frozen, frozen_actor_state, frozen_by_source
from marl.checkpoint import (
    clone_tree,
    load_checkpoint,
    restore_trainer_state,
    run_directory,
    trainer_state,
)
from marl.collector import Collector, LocalCollector, heldout_episodes
from marl.config import Config, config_from_dict, config_to_dict, config_to_yaml
from marl.envs.factory import EnvInfo, describe_env, make_env, needs_global_state
from marl.errors import MarlError
from marl.health import check_health
from marl.memory import reuse_freed_memory
from marl.optim import ActorCriticAdam, build_optimizer
from marl.ppo import RunningMeanStd, compute_advantages, ppo_update
from marl.ray_collector import RayRolloutCollector
from marl.run_logger import RunLogger, flatten
from marl.run_loop import RunPlan, count_iteration, due, run_plan
from marl.runs import hardware_summary, new_run_dir, resolve_device, untouched_rng
from marl.team_metrics import TeamMetrics, snd_heatmap, team_metrics

EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes use their own seed: the same held-out starts every time


@dataclass
class Trainer:
    """Everything a run holds in memory. Built by `build_trainer`, driven by `train`."""

    cfg: Config
    device: torch.device
    env_info: EnvInfo
    model: ActorCritic
    optimizer: ActorCriticAdam
    value_norms: nn.ModuleDict | None
    collector: Collector  # LocalCollector or RayRolloutCollector
    seat_policy: SeatPolicy | None = None  # frozen partners in some seats (collector.frozen)
    eval_env: object = None  # built on first evaluation
    iteration: int = 0
    frames: int = 0
    wall_time: float = 0.0

    def policy(self, td):
        return self.seat_policy.act(td) if self.seat_policy else self.model.act(td)

    def collect(self):
        """One batch from the collector: in-process it runs `policy`, Ray workers get the actors' weights."""
        return self.collector.collect(self.policy, self.model.actors)

    def close(self) -> None:
        """Stop rollout workers (and the Ray instance this run started)."""
        self.collector.close()

    def state_dict(self) -> dict:
        """A checkpoint: tensors, numbers and strings only, so it loads with weights_only=True."""
        return trainer_state(
            self,
            config_to_dict(self.cfg),
            model=clone_tree(self.model.state_dict()),
            optimizer=clone_tree(self.optimizer.state_dict()),
            value_norms=None if self.value_norms is None else clone_tree(self.value_norms.state_dict()),
            collector=self.collector.state_dict(),
        )

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value_norms is not None:
            self.value_norms.load_state_dict(state["value_norms"])
        self.collector.load_state_dict(state["collector"])
        restore_trainer_state(self, state)


def build_trainer(cfg: Config) -> Trainer:
    """Seed, then build env, networks, optimizer and collector from a validated config."""
    device = resolve_device(cfg.experiment.device)
    env_device = device if cfg.env.device == "auto" else resolve_device(cfg.env.device)
    if cfg.experiment.threads:
        torch.set_num_threads(cfg.experiment.threads)
    reuse_freed_memory()
    torch.manual_seed(cfg.experiment.seed)
    workers = cfg.collector.num_workers
    # With Ray workers the learner's own env only describes the spaces: one env is enough.
    env = make_env(
        cfg.env,
        env_device,
        cfg.experiment.seed,
        num_envs=1 if workers else None,
        global_state=needs_global_state(cfg),
    )
    env_info = describe_env(env, cfg.env.name, cfg.env.max_steps, cfg.env.kwargs)
    if workers:
        env_info = dataclasses.replace(env_info, num_envs=cfg.env.num_envs)
    if env_device != device:
        raise MarlError(
            f"env.device={cfg.env.device} differs from the learner's device {device}; in-process collection "
            f"runs the policy where the env is. Set env.device=auto (same device) for now."
        )
    model = ActorCritic(env_info, cfg).to(device)
    optimizer = build_optimizer(model, cfg.algorithm, device)
    value_norms = None
    if cfg.algorithm.value_normalization:
        value_norms = nn.ModuleDict({g.name: RunningMeanStd() for g in env_info.groups}).to(device)
    seats = frozen_by_source(cfg.collector.frozen)
    saved = {source: frozen_actor_state(source) for source in seats}
    seat_policy = SeatPolicy(model, build_frozen(env_info, seats, saved, device)) if seats else None
    if workers:
        collector = RayRolloutCollector(cfg, env_info, device, frozen=saved)
    else:
        collector = LocalCollector(env, env_info, cfg.experiment.frames_per_batch)
    return Trainer(cfg, device, env_info, model, optimizer, value_norms, collector, seat_policy)


DEFAULT_RUN_NAMES = ("quickstart", "default")  # experiment.name of the built-in default config


def run_name(cfg: Config) -> str:
    """experiment.name, except that a PettingZoo run left with the default name is named after its entry
    point (`mpe2.simple_spread_v3:parallel_env` -> `simple_spread_v3-parallel_env`)."""
    name = cfg.experiment.name
    if cfg.env.name == "pettingzoo" and cfg.env.entry_point and name in DEFAULT_RUN_NAMES:
        module, _, factory = cfg.env.entry_point.partition(":")
        name = re.sub(r"[^\w.-]", "_", f"{module.rsplit('.', 1)[-1]}-{factory}")
    return name


def evaluation_episodes(
    trainer: Trainer,
    episodes: int,
    deterministic: bool = True,
    record=None,
    trace: bool = False,
    seed: int | None = None,
) -> dict[str, torch.Tensor]:
    """One episode in each of `episodes` envs from held-out starts (the same every time, from their own
    seed: the run's seed + EVAL_SEED_OFFSET, or `seed`); -> per-group returns and lengths (and, with
    `trace`, the observations and positions, see `run_episodes`). `record` is called after the reset and
    every step. The RNG streams of training are left untouched (see `heldout_episodes`)."""
    cfg = trainer.cfg
    seed = cfg.experiment.seed + EVAL_SEED_OFFSET if seed is None else seed
    if trainer.eval_env is None or trainer.eval_env.batch_size[0] != episodes:
        with untouched_rng(trainer.device):
            trainer.eval_env = make_env(
                cfg.env, trainer.device, seed, num_envs=episodes, global_state=needs_global_state(cfg)
            )
    actor = trainer.seat_policy or trainer.model
    policy = lambda td: actor.act(td, deterministic=deterministic)  # noqa: E731
    return heldout_episodes(trainer.eval_env, trainer.env_info, policy, seed, record, trace)


def measure_team(trainer: Trainer, deterministic: bool = True) -> TeamMetrics:
    """Diversity and specialisation metrics (marl/team_metrics.py) on traced evaluation episodes."""
    cfg = trainer.cfg.metrics
    episodes = evaluation_episodes(trainer, cfg.episodes, deterministic, trace=True)
    return team_metrics(trainer.model, trainer.env_info, episodes["trace"], cfg)


def log_team_metrics(logger: RunLogger, trainer: Trainer, team: TeamMetrics) -> None:
    """The SND heatmap of every group as a TensorBoard image (the scalars go with the iteration's row)."""
    for group in trainer.env_info.groups:
        if group.name in team.snd_matrices:
            title = f"SND {group.name}, iteration {trainer.iteration}"
            figure = snd_heatmap(team.snd_matrices[group.name], list(group.agent_names), title)
            logger.log_figure(f"team/{group.name}/snd_matrix", figure, trainer.frames)


def episode_metrics(episodes: dict[str, torch.Tensor], env_info: EnvInfo, prefix: str) -> dict[str, float]:
    """Mean/min/max of the team return (mean over agents), per-agent mean returns, episode length, and the
    mean over episodes of each `info/<key>` the env reported at their end."""
    if episodes["length"].numel() == 0:
        return {}
    per_agent = torch.cat(
        [episodes[f"{g.name}/return"] for g in env_info.groups], dim=-1
    )  # [episodes, agents]
    team = per_agent.mean(-1)
    metrics = {
        f"{prefix}return_mean": team.mean().item(),
        f"{prefix}return_min": team.min().item(),
        f"{prefix}return_max": team.max().item(),
        f"{prefix}episode_length": episodes["length"].float().mean().item(),
        f"{prefix}episodes": float(team.numel()),
    }
    for name, value in zip(env_info.agent_names, per_agent.mean(0).tolist(), strict=True):
        metrics[f"{prefix}return/{name}"] = value
    if len(env_info.groups) > 1:  # competing teams: each group's own return (the team mean may cancel out)
        for g in env_info.groups:
            metrics[f"{prefix}group_return/{g.name}"] = episodes[f"{g.name}/return"].mean().item()
    for key, value in episodes.items():  # what the env reports at the end of an episode, e.g. time_to_find
        if key.startswith("info/"):
            metrics[f"{prefix}{key}"] = value.float().mean().item()
    return metrics


def train(cfg: Config, resume: str | Path | None = None, stop_after: int | None = None) -> Path:
    """Train (or continue) a run; returns its directory. `stop_after` ends early after that many iterations
    of this call (tests use it to simulate an interruption)."""
    exp = cfg.experiment
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        run_dir = run_directory(resume)
        saved = config_from_dict(state["config"])
        retuned = _check_resume_compatible(saved, cfg)
    trainer = build_trainer(cfg)
    if state is not None:
        trainer.load_state_dict(state)
        # the restored optimizer holds the saved lr and eps: apply this config's (they may have changed)
        for group in trainer.optimizer.param_groups:
            group.update(lr=learning_rate(cfg, trainer.frames), eps=cfg.algorithm.adam_eps)
        if retuned:
            print(
                f"Resuming with changed optimiser settings ({'; '.join(retuned)}): from here on the run "
                "differs from one that was never stopped."
            )
    else:
        run_dir = new_run_dir(cfg.experiment.runs_dir, run_name(cfg))
    n_iterations = math.ceil(exp.total_frames / trainer.collector.frames_per_batch)

    def one_iteration(logger: RunLogger) -> dict[str, float]:
        metrics = train_iteration(trainer)
        traced = None
        if due(trainer.iteration, cfg.metrics.every, n_iterations):
            traced = evaluation_episodes(trainer, cfg.metrics.episodes, trace=True)
            team = team_metrics(trainer.model, trainer.env_info, traced["trace"], cfg.metrics)
            metrics.update(team.scalars)
            log_team_metrics(logger, trainer, team)
        if due(trainer.iteration, exp.eval_every, n_iterations):
            # the same deterministic episodes from the same starts: reuse them when the counts agree
            same = traced is not None and cfg.metrics.episodes == exp.eval_episodes
            episodes = traced if same else evaluation_episodes(trainer, exp.eval_episodes)
            metrics.update(episode_metrics(episodes, trainer.env_info, prefix="eval/"))
        return metrics

    def postfix(metrics: dict[str, float]) -> dict[str, str]:
        ret = metrics.get("train/return_mean", float("nan"))
        shown = {"fps": f"{metrics['perf/total_fps']:.0f}", "ret": f"{ret:.3g}"}
        groups = {k.rsplit("/", 1)[1]: v for k, v in metrics.items() if k.startswith("train/group_return/")}
        if groups and min(groups.values()) < 0 < max(groups.values()):  # opposing teams: the mean hides them
            del shown["ret"]
            shown.update({f"ret_{name}": f"{value:.3g}" for name, value in groups.items()})
        return shown

    plan = RunPlan(
        trainer=trainer,
        run_dir=run_dir,
        settings=exp,
        n_iterations=n_iterations,
        name=run_name(cfg),
        resume_command=f"marl train resume={run_dir}",
        config_yaml=config_to_yaml(cfg),
        hparams=flatten(config_to_dict(cfg)),
        one_iteration=one_iteration,
        final_metric=lambda key: "return" in key or key == "eval/episode_length",
        write_summary=lambda: _write_summary(run_dir, trainer),
        header=lambda logger: _log_run_header(logger, trainer),
        description=describe_run(trainer, run_dir),
        postfix=postfix,
        close=trainer.close,
    )
    return run_plan(plan, resumed=state, stop_after=stop_after)


def train_iteration(trainer: Trainer) -> dict[str, float]:
    """One iteration: collect, advantages, PPO epochs. Returns this iteration's metrics."""
    cfg = trainer.cfg
    start = time.perf_counter()
    trainer.model.eval()
    batch, episodes = trainer.collect()
    collected = time.perf_counter()
    trainer.model.train()
    set_learning_rate(trainer.optimizer, learning_rate(cfg, trainer.frames))
    stats = compute_advantages(
        batch, trainer.model, cfg.algorithm.gamma, cfg.algorithm.gae_lambda, trainer.value_norms
    )
    stats.update(ppo_update(batch, trainer.model, trainer.optimizer, cfg.algorithm, trainer.value_norms))
    check_health(trainer, batch, stats)  # diverged (not only NaN): stop at the last good iteration
    trained = time.perf_counter()

    speed = count_iteration(trainer, batch.numel(), start, collected, trained)
    metrics = episode_metrics(episodes, trainer.env_info, prefix="train/")
    metrics.update({f"train/{k}": v for k, v in stats.items()})
    metrics["train/lr"] = trainer.optimizer.param_groups[0]["lr"]
    metrics.update(speed)
    metrics.update(getattr(trainer.collector, "last_stats", {}))  # Ray: per-worker frames/s, waits
    return metrics


def learning_rate(cfg: Config, frames: int) -> float:
    """The learning rate of the iteration that starts after `frames`: constant, or annealed linearly to
    zero over experiment.total_frames (`algorithm.lr_schedule=linear`, as in CleanRL's PPO)."""
    lr = cfg.algorithm.lr
    if cfg.algorithm.lr_schedule == "linear":
        lr *= max(0.0, 1.0 - frames / cfg.experiment.total_frames)
    return lr


def set_learning_rate(optimizer: ActorCriticAdam, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


SUMMARY_FILE = "summary.json"


def _write_summary(run_dir: Path, trainer: Trainer) -> None:
    """`summary.json` marks a finished run: its length, training wall-clock time (collection and updates,
    without evaluation) and hardware. The metrics themselves are in metrics.jsonl."""
    summary = {
        "iterations": trainer.iteration,
        "frames": trainer.frames,
        "wall_time_s": trainer.wall_time,
        "hardware": hardware_summary(trainer.device),
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _check_resume_compatible(saved: Config, cfg: Config) -> list[str]:
    """A resumed run may change how long it trains (and logging niceties) and its optimiser settings
    (`retunable`: the fix after a NaN or divergence stop), not what it trains. -> the optimiser settings
    that changed, as 'key: old -> new'."""
    retunable = (
        "algorithm.lr",
        "algorithm.lr_schedule",
        "algorithm.adam_eps",
        "algorithm.max_grad_norm",
        "algorithm.entropy_coef",
        "algorithm.value_coef",
        "algorithm.clip_epsilon",
    )
    changed, retuned = [], []
    a, b = flatten(config_to_dict(saved)), flatten(config_to_dict(cfg))
    allowed = {
        "experiment.threads",
        "experiment.total_frames",
        "experiment.progress",
        "experiment.keep_checkpoints",
        "experiment.checkpoint_every",
        "collector.worker_threads",
        "ray.address",
        "ray.num_cpus",
    }
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key) or key in allowed or key.startswith("metrics."):
            continue
        (retuned if key in retunable else changed).append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    if changed:
        raise MarlError(
            "A resumed run must train the same thing it started with, but these settings differ from the "
            f"run's saved config: {'; '.join(changed)}. Only {', '.join(sorted(allowed))}, the optimiser "
            f"settings {', '.join(retunable)} and metrics.* may change on resume; start a new run "
            "for anything else."
        )
    return retuned


def _log_run_header(logger: RunLogger, trainer: Trainer) -> None:
    counts = trainer.model.parameter_counts()
    lines = [f"| {name} | {count:,} |" for name, count in counts.items()]
    logger.log_text("model/parameters", "| network | parameters |\n|---|---|\n" + "\n".join(lines))
    for name, count in counts.items():
        logger.writer.add_scalar(f"model/parameters/{name}", count, 0)
    logger.log_text("run/config", "```\n" + config_to_yaml(trainer.cfg) + "\n```")


def describe_run(trainer: Trainer, run_dir: Path) -> str:
    """Two lines saying what trains where, with parameter counts, and where the logs go."""
    cfg, info = trainer.cfg, trainer.env_info
    counts = trainer.model.parameter_counts()
    actor = sum(v for k, v in counts.items() if k.endswith("/actor"))
    critic = sum(v for k, v in counts.items() if k.endswith("/critic"))
    return (
        f"{cfg.algorithm.name.upper()} on {info.name} ({info.n_agents} agents, {info.num_envs} envs) on "
        f"{trainer.device}: actor {cfg.sharing.actor.scheme} ({actor:,} params), critic "
        f"{cfg.sharing.critic.scheme} ({critic:,} params), {frames_trained(trainer)}\n"
        f"Logs: {run_dir}  (tensorboard --logdir {run_dir})"
    )


def frames_trained(trainer: Trainer) -> str:
    """The frames the run will train: experiment.total_frames rounded up to whole batches."""
    batch, total = trainer.collector.frames_per_batch, trainer.cfg.experiment.total_frames
    frames = math.ceil(total / batch) * batch
    if frames == total:
        return f"{frames:,} frames"
    return f"{frames:,} frames (experiment.total_frames={total:,} rounded up to whole batches of {batch:,})"

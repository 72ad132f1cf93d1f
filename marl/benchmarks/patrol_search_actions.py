"""Why learned patrol/search teams were slower than hand-designed ones: memory, or action strength?

    python -m marl.benchmarks.patrol_search_actions [--run RUN_DIR ...] [--seeds 0 1 2] [--out DIR]

Every row is a team evaluated on the held-out episodes of the patrol/search Pareto studies (128 episodes
from eval seed 20261124, deterministic actions unless the row says otherwise), as mean idleness and time to
find, averaged over --seeds (the hand-designed controllers' random streams):

- memory: fixed-roles teams (3 searchers) whose E. coli / PSO searchers compare readings every step
  (run_steps=1: what a feed-forward actor sees) against every third step (the default);
- strength: the three-PSO-searcher and all-patrol teams with their actions scaled by 1.0, 0.8 and 0.6
  (among rooms, every agent sensing), and the norm of their actions;
- action mode: hand-designed teams under env.action_mode velocity and heading;
- with --run (a `marl train` run of experiment=patrol_search_fast): that team deterministic, stochastic,
  and deterministic with each action pushed to full strength in the same direction, with the quantiles of
  its action norms (before the env's heading normalisation, if any).

Action norms are the policy's own, before any scaling or pushing (a hand-designed row: its first seed's).

Writes <out>/action_strength.json and prints each row as it comes (about 5 s a row on one core).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from tensordict import TensorDictBase

from marl.benchmarks.machine import hardware

EPISODES, EVAL_SEED = 128, 20261124  # the Pareto studies' held-out episodes
BASE = ["experiment=patrol_search_fast", "env.action_mode=velocity"]
QUANTILES = (0.1, 0.5, 0.9)

Transform = Callable[[torch.Tensor], torch.Tensor]  # env actions [envs, agents, 2] -> what the env gets


def with_actions(policy, env_info, transform: Transform, norms: list[torch.Tensor]):
    """`policy`, its actions recorded (their norms into `norms`) and then changed by `transform`."""

    def changed(td: TensorDictBase) -> TensorDictBase:
        td = policy(td)
        for group in env_info.groups:
            action = td[group.name, "action"]
            norms.append(torch.linalg.vector_norm(action, dim=-1).flatten())
            td[group.name, "action"] = transform(action)
        return td

    return changed


def full_strength(action: torch.Tensor) -> torch.Tensor:
    """The same direction, pushed until its largest component is at the action bound (1)."""
    return action / action.abs().amax(-1, keepdim=True).clamp(min=1e-6)


def evaluate(env, env_info, policy, transform: Transform = lambda a: a) -> dict:
    """Mean idleness and time to find on the held-out episodes, and the quantiles of the action norms."""
    from marl.collector import heldout_episodes
    from marl.training import episode_metrics

    norms: list[torch.Tensor] = []
    result = heldout_episodes(env, env_info, with_actions(policy, env_info, transform, norms), EVAL_SEED)
    metrics = episode_metrics(result, env_info, prefix="")
    norm = torch.cat(norms)
    sample = norm[torch.randperm(norm.numel(), generator=torch.Generator().manual_seed(0))[:100_000]]
    return {
        "mean_idleness": metrics["info/mean_idleness"],
        "time_to_find": metrics["info/time_to_find"],
        "action_norm_mean": norm.mean().item(),
        "action_norm_quantiles": dict(
            zip(map(str, QUANTILES), torch.quantile(sample, torch.tensor(QUANTILES)).tolist())
        ),
    }


def hand_designed(overrides: list[str], spec: str, seeds: list[int], scale: float = 1.0, **tuning) -> dict:
    """A hand-designed team's row, averaged over `seeds`."""
    from marl.agents.heuristics import make_heuristic
    from marl.config import load_config
    from marl.envs.factory import describe_env, make_env

    cfg = load_config([*BASE, *overrides])
    env = make_env(cfg.env, "cpu", EVAL_SEED, num_envs=EPISODES, global_state=False)
    env_info = describe_env(env, cfg.env.name, cfg.env.max_steps, cfg.env.kwargs)
    rows = [
        evaluate(env, env_info, make_heuristic(spec, env_info, seed, **tuning), lambda a: a * scale)
        for seed in seeds
    ]
    env.close()
    return {
        "team": spec,
        "overrides": overrides,
        "tuning": tuning,
        "action_scale": scale,
        **{key: sum(r[key] for r in rows) / len(rows) for key in ("mean_idleness", "time_to_find")},
        "action_norm_mean": rows[0]["action_norm_mean"],
        "action_norm_quantiles": rows[0]["action_norm_quantiles"],
    }


def learned(run: str) -> list[dict]:
    """A trained team's rows: deterministic, stochastic, deterministic at full strength."""
    from marl.envs.factory import make_env, needs_global_state
    from marl.evaluation import load_trained

    trainer, state, _ = load_trained(run, device="cpu")
    cfg = trainer.cfg
    env = make_env(cfg.env, "cpu", EVAL_SEED, num_envs=EPISODES, global_state=needs_global_state(cfg))
    rows = []
    for label, deterministic, transform in (
        ("deterministic", True, lambda a: a),
        ("stochastic", False, lambda a: a),
        ("deterministic, full strength", True, full_strength),
    ):
        policy = lambda td, d=deterministic: trainer.model.act(td, deterministic=d)  # noqa: E731
        row = evaluate(env, trainer.env_info, policy, transform)
        rows.append({"run": str(run), "frames": state["frames"], "actions": label, **row})
    env.close()
    return rows


def rows_to_compute(seeds: list[int]) -> list[tuple[str, Callable[[], dict]]]:
    """(section, row) for every hand-designed row, in the order they print."""
    all_rooms = ["env.map=rooms", "env.n_sensing=6"]
    rows = []
    for panel in (all_rooms, ["env.map=open", "env.n_sensing=6"], ["env.map=rooms", "env.n_sensing=3"]):
        for spec in ("heuristic:fixed_roles/pso", "heuristic:fixed_roles/ecoli"):
            for run_steps in (1, 3):
                overrides = [*panel, "env.n_searchers=3"]
                rows.append(
                    (
                        "memory",
                        lambda o=overrides, s=spec, r=run_steps: hand_designed(o, s, seeds, run_steps=r),
                    )
                )
    for scale in (1.0, 0.8, 0.6):
        for spec, searchers in (("heuristic:fixed_roles/pso", 3), ("heuristic:patrol", 0)):
            overrides = [*all_rooms, f"env.n_searchers={searchers}"]
            rows.append(
                ("strength", lambda o=overrides, s=spec, c=scale: hand_designed(o, s, seeds, scale=c))
            )
    for mode in ("velocity", "heading"):
        for spec, searchers in (
            ("heuristic:fixed_roles/pso", 3),
            ("heuristic:patrol", 0),
            ("heuristic:switch/pso", 0),
            ("heuristic:fixed_roles/ecoli", 1),
        ):
            overrides = [*all_rooms, f"env.n_searchers={searchers}", f"env.action_mode={mode}"]
            rows.append(("action mode", lambda o=overrides, s=spec: hand_designed(o, s, seeds)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", nargs="*", default=[], help="trained patrol/search runs to add")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="results/patrol_search")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {
        "benchmark": "patrol_search_actions",
        "hardware": hardware(),
        "episodes": EPISODES,
        "eval_seed": EVAL_SEED,
        "seeds": args.seeds,
        "rows": {"memory": [], "strength": [], "action mode": [], "learned": []},
    }
    for section, row in rows_to_compute(args.seeds):
        report["rows"][section].append(row())
        print(section, json.dumps(report["rows"][section][-1]), flush=True)
    for run in args.run:
        for row in learned(run):
            report["rows"]["learned"].append(row)
            print("learned", json.dumps(row), flush=True)
    out = Path(args.out) / "action_strength.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()

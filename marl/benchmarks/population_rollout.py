"""Population rollouts: all pairs in one batched rollout against a Python loop over pairs.

    python -m marl.benchmarks.population_rollout [--members 4 8 16] [--envs-per-pair 8] [--steps 50]
                                                 [--repeats 3] [--threads 1] [--device cpu] [--out results]

On the cooking env (configs/env/native/cooking.yaml settings), with a population of N members (scheme
independent, the cooking presets' [128, 128] MLPs, random init), for N in `--members`, every ordered pair
(N*N, self-play included) plays `--envs-per-pair` kitchens, sampling actions:

- `batched`: one env of N*N*envs_per_pair kitchens; each step, one Population.act over all seats of all
  slots (member-major layout) and one env step (marl/population/xpmin.py's PairCollector, as in training);
- `loop`: one env of envs_per_pair kitchens per pair, stepped pair after pair; each pair's actions come from
  its two members' networks run alone (`Population.member_logits`, plain matmuls on that member's weights).

frames/s = steps x kitchens / seconds (one frame = one kitchen step, both cooks), best of `--repeats`, after
a warm-up. Also timed: the policy alone on the N*N*envs_per_pair*2 seats, member-major layout
(`Population.act`) against gathering every sample's member weights then `bmm` (`per_sample_logits`).
Writes <out>/population_rollout.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from marl.agents.population import Population, sample_categorical, seat_layout
from marl.benchmarks.machine import hardware, write_json
from marl.envs.native import CookingEnv
from marl.population.pairs import all_pairs, assign_slots
from marl.population.rollout import PairCollector

HIDDEN = [128, 128]
MAX_STEPS = 200


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run, repeats: int, device: torch.device) -> float:
    """Best wall time of `repeats` calls of `run` (after one warm-up call)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def batched_rollout(population: Population, envs_per_pair: int, steps: int, device: torch.device):
    """A closure running `steps` steps of all pairs in one env (the training collector)."""
    assignment = assign_slots(all_pairs(population.n_members, device), envs_per_pair)
    env = CookingEnv(num_envs=assignment.num_envs, max_steps=MAX_STEPS, device=device, seed=0)
    collector = PairCollector([env], assignment, population.n_members, "recipe")
    return lambda: collector.collect(population, steps)


def looped_rollout(population: Population, envs_per_pair: int, steps: int, device: torch.device):
    """A closure running `steps` steps of every pair alone: its own env, its two members' own networks."""
    pairs = all_pairs(population.n_members).tolist()
    envs = [
        CookingEnv(num_envs=envs_per_pair, max_steps=MAX_STEPS, device=device, seed=p)
        for p in range(len(pairs))
    ]
    tds = [env.reset() for env in envs]

    @torch.no_grad()
    def run() -> None:
        for _ in range(steps):
            for p, (first, second) in enumerate(pairs):
                obs = tds[p]["agents", "observation"]
                logits = torch.stack(
                    [population.member_logits(first, obs[:, 0]), population.member_logits(second, obs[:, 1])],
                    dim=1,
                )
                action, _ = sample_categorical(logits.log_softmax(-1))
                tds[p]["agents", "action"] = action
                _, tds[p] = envs[p].step_and_maybe_reset(tds[p])

    return run


def policy_only(population: Population, envs_per_pair: int, device: torch.device) -> dict[str, float]:
    """Seats per second of the policy alone: member-major layout vs per-sample weight gather."""
    member = assign_slots(all_pairs(population.n_members, device), envs_per_pair).member
    obs = torch.randn(*member.shape, population.obs_dim, device=device)
    layout = seat_layout(member, population.n_members)
    flat_obs, flat_member = obs.reshape(-1, population.obs_dim), member.reshape(-1)

    @torch.no_grad()
    def gather() -> None:
        sample_categorical(population.per_sample_logits(flat_obs, flat_member).log_softmax(-1))

    seats = member.numel()
    layout_s = _timed(lambda: [population.act(obs, member, layout=layout) for _ in range(10)], 3, device) / 10
    gather_s = _timed(lambda: [gather() for _ in range(10)], 3, device) / 10
    return {"layout_seats_per_s": seats / layout_s, "gather_seats_per_s": seats / gather_s}


def measure(members: int, envs_per_pair: int, steps: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    probe = CookingEnv(num_envs=1, device=device)
    obs_dim = probe.full_observation_spec["agents", "observation"].shape[-1]
    n_actions = probe.full_action_spec["agents", "action"].space.n
    population = Population(members, obs_dim, n_actions, hidden_sizes=HIDDEN).to(device)
    kitchens = members * members * envs_per_pair
    batched_s = _timed(batched_rollout(population, envs_per_pair, steps, device), repeats, device)
    loop_s = _timed(looped_rollout(population, envs_per_pair, steps, device), repeats, device)
    row = {
        "members": members,
        "pairs": members * members,
        "envs_per_pair": envs_per_pair,
        "kitchens": kitchens,
        "steps": steps,
        "batched_frames_per_s": steps * kitchens / batched_s,
        "loop_frames_per_s": steps * kitchens / loop_s,
    }
    row["speedup"] = row["batched_frames_per_s"] / row["loop_frames_per_s"]
    row.update(policy_only(population, envs_per_pair, device))
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--envs-per-pair", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50, help="rollout steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"{'N':>3} {'pairs':>5} {'kitchens':>8} {'batched frames/s':>17} {'loop frames/s':>14} "
        f"{'speedup':>8} {'policy: layout seats/s':>23} {'gather seats/s':>15}"
    )
    rows = []
    for members in args.members:
        row = measure(members, args.envs_per_pair, args.steps, args.repeats, device)
        rows.append(row)
        print(
            f"{members:>3} {row['pairs']:>5} {row['kitchens']:>8} {row['batched_frames_per_s']:>17,.0f} "
            f"{row['loop_frames_per_s']:>14,.0f} {row['speedup']:>7.1f}x {row['layout_seats_per_s']:>23,.0f} "
            f"{row['gather_seats_per_s']:>15,.0f}"
        )
    result = {
        "benchmark": "population rollout on native/cooking: all ordered pairs batched vs a loop over pairs",
        "settings": {
            "envs_per_pair": args.envs_per_pair,
            "steps": args.steps,
            "repeats": args.repeats,
            "hidden_sizes": HIDDEN,
            "scheme": "independent",
            "max_steps": MAX_STEPS,
            "actions": "sampled",
        },
        "hardware": hardware(device, ("torch", "torchrl", "tensordict")),
        "rows": rows,
    }
    out = Path(args.out)
    write_json(out / "population_rollout.json", result)
    print(f"Hardware: {result['hardware']}\nWrote {out / 'population_rollout.json'}")


if __name__ == "__main__":
    main()

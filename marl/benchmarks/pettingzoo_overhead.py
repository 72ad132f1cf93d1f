"""Overhead of the PettingZoo adapter: env steps/s through `BatchedPettingZooEnv` against the raw env loop.

    python -m marl.benchmarks.pettingzoo_overhead [--copies 1 4 16 64] [--steps 4000] [--out results]

Both sides step `copies` instances of MPE2 `simple_spread_v3` (3 agents, discrete actions, 25-step
episodes) with the same pre-drawn random actions for the same number of env steps:
- raw: a plain Python loop, `env.step({agent: action})` per instance, `reset()` when an episode ends;
- adapter: `BatchedPettingZooEnv.step_and_maybe_reset` on a batched action tensor, which also flattens
  observations, builds the TensorDict (observations, rewards, alive flags, done flags) and resets finished
  instances. That is what training uses by default; "with state()" also calls the env's `state()` every
  step, as a MAPPO critic with `algorithm.critic_input=state` needs (simple_spread's `state()` recomputes
  every agent's observation, so that column includes env work the raw loop does not do).
Steps/s counts instance-steps (copies x batched steps). Overhead = raw steps/s / adapter steps/s - 1.
Best of `--repeats` after a warm-up. The target is at most 20% at the batch sizes used for training (16+).
Writes <out>/pettingzoo_overhead.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from marl.benchmarks.machine import hardware, write_json
from marl.envs.pettingzoo_env import BatchedPettingZooEnv, load_factory

ENTRY_POINT = "mpe2.simple_spread_v3:parallel_env"
KWARGS = {"N": 3, "max_cycles": 25, "continuous_actions": False}
TARGET = 0.20


def raw_steps_per_second(copies: int, steps: int, actions: np.ndarray) -> float:
    factory = load_factory(ENTRY_POINT)
    envs = [factory(**KWARGS) for _ in range(copies)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    names = envs[0].possible_agents
    start = time.perf_counter()
    for t in range(steps):
        row = actions[t % len(actions)]
        for i, env in enumerate(envs):
            env.step({a: int(row[i, j]) for j, a in enumerate(names)})
            if not env.agents:
                env.reset()
    return steps * copies / (time.perf_counter() - start)


def adapter_steps_per_second(
    copies: int, steps: int, actions: np.ndarray, global_state: bool = False
) -> float:
    env = BatchedPettingZooEnv(
        load_factory(ENTRY_POINT), KWARGS, num_envs=copies, max_steps=25, seed=0, global_state=global_state
    )
    td = env.reset()
    batched = [torch.as_tensor(a) for a in actions]
    start = time.perf_counter()
    for t in range(steps):
        td.set(("agent", "action"), batched[t % len(batched)])
        _, td = env.step_and_maybe_reset(td)
    return steps * copies / (time.perf_counter() - start)


def measure(copies: int, total_steps: int, repeats: int) -> dict:
    steps = max(20, total_steps // copies)
    actions = np.random.default_rng(0).integers(0, 5, size=(100, copies, 3))
    raw_steps_per_second(copies, 20, actions)  # warm-up: imports, first resets
    adapter_steps_per_second(copies, 20, actions)
    raw = max(raw_steps_per_second(copies, steps, actions) for _ in range(repeats))
    adapter = max(adapter_steps_per_second(copies, steps, actions) for _ in range(repeats))
    with_state = max(adapter_steps_per_second(copies, steps, actions, True) for _ in range(repeats))
    return {
        "copies": copies,
        "batched_steps": steps,
        "raw_steps_per_s": raw,
        "adapter_steps_per_s": adapter,
        "overhead": raw / adapter - 1.0,
        "adapter_with_state_steps_per_s": with_state,
        "overhead_with_state": raw / with_state - 1.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--steps", type=int, default=8000, help="instance-steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print(f"{'copies':>6} {'raw steps/s':>12} {'adapter steps/s':>16} {'overhead':>9} {'with state()':>13}")
    for copies in args.copies:
        row = measure(copies, args.steps, args.repeats)
        rows.append(row)
        print(
            f"{copies:>6} {row['raw_steps_per_s']:>12,.0f} {row['adapter_steps_per_s']:>16,.0f} "
            f"{row['overhead']:>8.1%} {row['overhead_with_state']:>12.1%}"
        )
    result = {
        "benchmark": "PettingZoo adapter overhead",
        "env": {"entry_point": ENTRY_POINT, "kwargs": KWARGS},
        "target_max_overhead": TARGET,
        "hardware": hardware(torch.device("cpu"), ("torch", "torchrl", "tensordict", "pettingzoo", "mpe2")),
        "rows": rows,
    }
    out = Path(args.out)
    write_json(out / "pettingzoo_overhead.json", result)
    print(f"Hardware: {result['hardware']}\nWrote {out / 'pettingzoo_overhead.json'}")


if __name__ == "__main__":
    main()

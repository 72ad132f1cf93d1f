"""Speed of the patrol/search scenario: env steps per second at 1, 64 and 1,024 parallel environments.

    python -m marl.benchmarks.patrol_search_speed [--envs 1 64 1024] [--device cpu] [--out results]

Steps the env the way training does (`make_env` -> TorchRL `VmasEnv`, `step_and_maybe_reset`) with
uniformly random actions, on both maps, with the default team (6 agents, 3 searchers, 16x16 idleness grid,
200-step episodes, so resets are included). Env steps/s = batched steps x environments; each env step
moves 6 agents. Each size runs for about `--seconds` after a warm-up, best of `--repeats`. Writes
<out>/patrol_search_speed.json (and prints a table with the hardware).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware
from marl.config import load_config
from marl.envs.factory import make_env


def steps_per_second(num_envs: int, map_name: str, device: str, seconds: float, repeats: int) -> float:
    """Env steps/s (batched steps x environments) with random actions."""
    cfg = load_config(["env=vmas/patrol_search", f"env.map={map_name}"])
    env = make_env(cfg.env, device, seed=0, num_envs=num_envs)
    td = env.reset()
    for _ in range(5):  # warm-up
        td, td_next = env.step_and_maybe_reset(env.rand_action(td))
        td = td_next
    best = 0.0
    for _ in range(repeats):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            td, td_next = env.step_and_maybe_reset(env.rand_action(td))
            td = td_next
            steps += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, steps * num_envs / (time.perf_counter() - start))
    env.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--maps", nargs="+", default=["open", "rooms"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    machine = hardware(torch.device(args.device), packages=("vmas", "torchrl"))
    print(f"patrol_search env speed on {machine['cpu']}, {args.threads} threads, GPU: {machine['gpu']}")
    print(f"{'map':<8}{'envs':>8}{'env steps/s':>14}{'agent steps/s':>16}")
    rows = []
    for map_name in args.maps:
        for num_envs in args.envs:
            rate = steps_per_second(num_envs, map_name, args.device, args.seconds, args.repeats)
            rows.append({"map": map_name, "num_envs": num_envs, "env_steps_per_s": rate})
            print(f"{map_name:<8}{num_envs:>8}{rate:>14,.0f}{6 * rate:>16,.0f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "patrol_search_speed",
        "hardware": machine,
        "device": args.device,
        "config": "env=vmas/patrol_search defaults: 6 agents (3 searchers), 16x16 grid, 200-step episodes, "
        "random actions, step_and_maybe_reset",
        "seconds_per_measurement": args.seconds,
        "repeats": args.repeats,
        "rows": rows,
    }
    name = "patrol_search_speed.json" if args.device == "cpu" else f"patrol_search_speed_{args.device}.json"
    (out / name).write_text(json.dumps(record, indent=2) + "\n")
    print(f"Wrote {out / name}")


if __name__ == "__main__":
    main()

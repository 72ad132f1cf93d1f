"""Population training end to end: env steps per second of `marl population train`'s iteration.

    python -m marl.benchmarks.population_training [--members 8] [--envs-per-pair 16 64]
        [--minibatch-size 16384] [--precisions float32 bfloat16] [--iterations 4] [--threads 2]
        [--out results]

XP-min on the cooking env (`preset=cooking_xpmin` with all N*N ordered pairs every iteration, its [128, 128]
MLPs), for every kitchens-per-pair count and update precision given: a few training iterations, each
rollout, GAE and the PPO update of all members (`marl.population.xpmin.train_iteration`, exactly as a run
does, without evaluations or checkpoints). Env steps per second (one step of one kitchen, both cooks) is
the mean over the iterations after the first (warm-up), split into collection and update.
Writes <out>/population_training.json. `--quick`: a tiny population, for tests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware, write_json
from marl.population.config import load_population_config
from marl.population.xpmin import build_trainer, train_iteration

SPEEDS = ("perf/collection_fps", "perf/training_fps", "perf/total_fps")


def measure(members: int, envs_per_pair: int, minibatch_size: int, precision: str, iterations: int) -> dict:
    """Mean frames/s of `iterations` training iterations after a warm-up one."""
    cfg = load_population_config(
        [
            "preset=cooking_xpmin",
            "population.pairs=all",
            f"population.size={members}",
            f"population.envs_per_pair={envs_per_pair}",
            f"algorithm.minibatch_size={minibatch_size}",
            f"algorithm.precision={precision}",
            "experiment.progress=false",
            f"experiment.threads={torch.get_num_threads()}",
        ]
    )
    trainer = build_trainer(cfg)
    train_iteration(trainer)  # warm-up
    rows = [train_iteration(trainer) for _ in range(iterations)]
    speeds = {key.removeprefix("perf/"): sum(row[key] for row in rows) / len(rows) for key in SPEEDS}
    frames = members * members * envs_per_pair * cfg.algorithm.rollout_steps
    return {"members": members, "envs_per_pair": envs_per_pair, "frames_per_iteration": frames,
            "minibatch_size": minibatch_size, "precision": precision, **speeds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--envs-per-pair", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--minibatch-size", type=int, default=16384, help="frames per gradient step")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--iterations", type=int, default=4, help="measured iterations (after a warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a population of 2, 2 kitchens per pair")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.envs_per_pair, args.iterations, args.minibatch_size = 2, [2], 1, 256
    torch.set_num_threads(args.threads)
    header = ("precision", 9), ("kitchens/pair", 13), ("frames/iter", 11), ("collect/s", 10), ("update/s", 9)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'total/s':>8}")
    rows = []
    for precision in args.precisions:
        for envs_per_pair in args.envs_per_pair:
            row = measure(args.members, envs_per_pair, args.minibatch_size, precision, args.iterations)
            rows.append(row)
            print(
                f"{precision:>9} {envs_per_pair:>13} {row['frames_per_iteration']:>11,} "
                f"{row['collection_fps']:>10,.0f} {row['training_fps']:>9,.0f} {row['total_fps']:>8,.0f}"
            )
    result = {
        "benchmark": "XP-min population training on native/cooking, all pairs, end to end (env steps/s)",
        "settings": {
            "members": args.members,
            "iterations": args.iterations,
            "threads": args.threads,
            "preset": "cooking_xpmin",
            "pairs": "all",
            "quick": args.quick,
        },  # fmt: skip
        "hardware": hardware(torch.device("cpu"), ("torch", "torchrl", "tensordict")),
        "rows": rows,
    }
    out = Path(args.out)
    write_json(out / "population_training.json", result)
    print(f"Hardware: {result['hardware']}\nWrote {out / 'population_training.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

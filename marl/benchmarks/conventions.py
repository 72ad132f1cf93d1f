"""Conventions discovered against population size: XP-min against independent self-play.

    python -m marl.benchmarks.conventions [--k 8] [--sizes 2 4 8] [--seeds 0 1 2] [--iterations 150]

On the one-shot matrix game with K conventions (block-diagonal payoff), trains a population of N members
with `method=xpmin` and with `method=selfplay` for every N and seed (the `matrix_game_*` presets, with
env.k = K), and counts the distinct conventions the members play in self-play at the end (the final
deterministic all-pairs evaluation, `population.json`). Independent self-play members each settle on a
convention at random; XP-min members are pushed apart by the cross-play penalty, so they should cover
min(N, K) conventions. The chance level for N independent uniform picks, K(1 - (1 - 1/K)^N), is printed
beside them. Writes <out>/population_conventions.{json,png,md}; runs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware, write_json
from marl.intervals import mean_interval
from marl.population.config import apply_overrides, load_population_config, rollout_frames
from marl.population.xpmin import train

METHODS = ("xpmin", "selfplay")
MINIBATCHES = 4  # PPO minibatches per rollout, whatever the population size


def distinct_conventions(method: str, size: int, k: int, seed: int, iterations: int, runs: Path) -> int:
    """Train one population; -> the number of distinct conventions its members play in self-play."""
    cfg = load_population_config(
        [
            f"preset=matrix_game_{method}",
            f"population.size={size}",
            f"env.k={k}",
            f"experiment.seed={seed}",
            f"experiment.iterations={iterations}",
            "experiment.eval_every=0",
            "experiment.progress=false",
            f"experiment.runs_dir={runs}",
        ]
    )
    # the same 4 minibatches per rollout at every size (the presets' 4 of N = 4): a fixed minibatch size would
    # give an N = 8 population 4 times the gradient steps per iteration of N = 4, and N = 2 a quarter
    per_step = rollout_frames(cfg) // MINIBATCHES
    run_dir = train(apply_overrides(cfg, [("algorithm.minibatch_size", per_step)]))
    return int(json.loads((run_dir / "population.json").read_text())["sp_distinct_labels"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--k", type=int, default=8, help="conventions in the game")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for size in args.sizes:
            for method in METHODS:
                started = time.time()
                found = [
                    distinct_conventions(method, size, args.k, s, args.iterations, Path(runs))
                    for s in args.seeds
                ]
                mean, low, high = mean_interval([float(f) for f in found])
                rows.append(
                    {
                        "size": size,
                        "method": method,
                        "per_seed": found,
                        "mean": mean,
                        "low": low,
                        "high": high,
                        "seconds_per_run": (time.time() - started) / len(args.seeds),
                    }
                )
                print(f"N={size:<3} {method:<9} conventions {found}  mean {mean:.2f} [{low:.2f}, {high:.2f}]")
    chance = {n: args.k * (1 - (1 - 1 / args.k) ** n) for n in args.sizes}
    record = {
        "benchmark": "conventions discovered against population size, one-shot matrix game",
        "k": args.k,
        "seeds": args.seeds,
        "iterations": args.iterations,
        "chance_level": chance,
        "hardware": hardware(),
        "rows": rows,
    }
    out = Path(args.out)
    write_json(out / "population_conventions.json", record)
    lines = [
        f"Distinct conventions played in self-play after {args.iterations} iterations, one-shot matrix game "
        f"with K = {args.k}; mean [95% t-interval] over seeds {args.seeds}.",
        "",
        "| members N | XP-min | self-play | chance level of N independent picks | most possible |",
        "|---|---|---|---|---|",
    ]
    for size in args.sizes:
        cells = [
            f"{r['mean']:.2f} [{r['low']:.2f}, {r['high']:.2f}]; {r['per_seed']}"
            for m in METHODS
            for r in rows
            if r["size"] == size and r["method"] == m
        ]
        lines.append(f"| {size} | {cells[0]} | {cells[1]} | {chance[size]:.2f} | {min(size, args.k)} |")
    (out / "population_conventions.md").write_text("\n".join(lines) + "\n")
    _plot(rows, chance, args, out / "population_conventions.png")
    print(f"Wrote {out}/population_conventions.json, .md and .png")


def _plot(rows: list[dict], chance: dict[int, float], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.2))
    for method, colour in zip(METHODS, ("tab:orange", "tab:blue"), strict=True):
        mine = [r for r in rows if r["method"] == method]
        sizes = [r["size"] for r in mine]
        axis.errorbar(
            sizes,
            [r["mean"] for r in mine],
            yerr=[[r["mean"] - r["low"] for r in mine], [r["high"] - r["mean"] for r in mine]],
            marker="o",
            capsize=3,
            color=colour,
            label=method,
        )
    axis.plot(args.sizes, [chance[n] for n in args.sizes], "k:", label="chance (independent uniform picks)")
    axis.plot(args.sizes, [min(n, args.k) for n in args.sizes], "k--", lw=0.8, label="min(N, K)")
    axis.set_xlabel("population size N")
    axis.set_ylabel("distinct conventions in self-play")
    axis.set_xticks(args.sizes)
    axis.set_title(f"One-shot matrix game, K = {args.k}: mean and 95% interval over {len(args.seeds)} seeds")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

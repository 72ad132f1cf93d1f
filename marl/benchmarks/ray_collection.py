"""Collection frames/s against the number of Ray rollout workers, for a vectorised and a plain env.

    python -m marl.benchmarks.ray_collection [--workers 0 1 2] [--batches 6] [--out results]

Two environments, the same batch whatever the worker count:
- VMAS navigation (3 agents), 60 envs x 100 steps per batch: one vectorised env, batched in torch;
- PettingZoo MPE2 simple_spread (3 agents, discrete), 16 copies x 100 steps per batch, through the adapter:
  a plain Python env, one instance stepped at a time.
For each worker count (0 = in-process, no Ray) it builds a trainer with the MAPPO defaults, collects one
warm-up batch (not counted; it also starts the workers), then times `--batches` batches with the policy's
weights broadcast each time, as in training. frames/s = frames / collection time. Ray is started once
with num_cpus = the largest worker count. Writes <out>/ray_collection.json and <out>/ray_collection.png.
Targets: 1 worker at most 15% slower than in-process; 2 workers at least 1.6x one worker on the
plain env, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware, write_json
from marl.config import load_config
from marl.training import build_trainer

ENVS = {
    "vmas_navigation": [
        "env=vmas/navigation",
        "env.num_envs=60",
        "experiment.frames_per_batch=6000",
    ],
    "pettingzoo_simple_spread": [
        "env=pettingzoo",
        "env.entry_point=mpe2.simple_spread_v3:parallel_env",
        "env.num_envs=16",
        "env.max_steps=25",
        "experiment.frames_per_batch=1600",
        "algorithm.minibatch_size=800",
    ],
}
TARGETS = {"one_worker_max_loss": 0.15, "two_over_one_min": 1.6}


def collection_fps(overrides: list[str], workers: int, batches: int) -> dict:
    cfg = load_config(
        [*overrides, f"collector.num_workers={workers}", "experiment.progress=false", "experiment.threads=1"]
    )
    trainer = build_trainer(cfg)
    try:
        trainer.collect()  # warm-up: worker start-up, first resets, lazy imports
        start = time.perf_counter()
        frames = 0
        for _ in range(batches):
            batch, _ = trainer.collect()
            frames += batch.numel()
        seconds = time.perf_counter() - start
    finally:
        trainer.close()
    return {"workers": workers, "frames": frames, "seconds": seconds, "fps": frames / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import ray

    from marl.ray_runtime import start_local

    start_local(max(max(args.workers), 1), logging_level="ERROR")
    results: dict[str, list[dict]] = {}
    try:
        for env in args.envs:
            results[env] = []
            for workers in args.workers:
                row = collection_fps(ENVS[env], workers, args.batches)
                results[env].append(row)
                print(f"{env:<26} workers={workers}  {row['fps']:>9,.0f} frames/s", flush=True)
    finally:
        ray.shutdown()

    summary = {}
    for env, rows in results.items():
        fps = {r["workers"]: r["fps"] for r in rows}
        entry = {}
        if 0 in fps and 1 in fps:
            entry["one_worker_vs_in_process"] = fps[1] / fps[0]
        if 1 in fps and 2 in fps:
            entry["two_workers_vs_one"] = fps[2] / fps[1]
        summary[env] = entry
        print(f"{env}: " + ", ".join(f"{k} {v:.2f}x" for k, v in entry.items()))
    packages = ("torch", "torchrl", "vmas", "pettingzoo", "mpe2", "ray")
    result = {
        "benchmark": "collection frames/s vs Ray rollout workers",
        "configs": ENVS,
        "batches_timed": args.batches,
        "targets": TARGETS,
        "hardware": hardware(torch.device("cpu"), packages),
        "results": results,
        "summary": summary,
    }
    out = Path(args.out)
    write_json(out / "ray_collection.json", result)
    _plot(results, out / "ray_collection.png", result["hardware"])
    print(f"Wrote {out / 'ray_collection.json'} and {out / 'ray_collection.png'}")


def _plot(results: dict[str, list[dict]], path: Path, machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    for ax, (env, rows) in zip(axes[0], results.items()):
        labels = [
            "in-process" if r["workers"] == 0 else f"{r['workers']} worker{'s' * (r['workers'] > 1)}"
            for r in rows
        ]
        bars = ax.bar(labels, [r["fps"] for r in rows], color=["#888"] + ["#3a7"] * (len(rows) - 1))
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=8)
        ax.set_title(env.replace("_", " "), fontsize=10)
        ax.set_ylabel("collection frames/s")
    fig.suptitle(f"Ray rollout workers, {machine['cpu']} ({machine['usable_cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

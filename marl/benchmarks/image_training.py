"""Training speed and memory on image observations: a 4-agent PettingZoo env with 84x84 RGB observations.

    python -m marl.benchmarks.image_training [--schemes shared independent grouped hyper] [--frames 16000]

`ImageTeam` (below) is a plain PettingZoo `ParallelEnv`: every step each camera sees a black 84x84 RGB image
(uint8) with a square of its own colour in one of the four quadrants, and is paid 1 for naming that
quadrant (Discrete(4)); random play earns 0.25 per step and agent, a policy that reads the image 1. It
trains through the normal `marl train` path (the PettingZoo adapter, the convolutional encoder that
`model.encoder=auto` picks for image observations, MAPPO) with one torch thread, once per sharing scheme
of the actor and critic, each in a fresh process so that its peak memory (max RSS) is its own.
Frames/s = frames trained / wall time of collection and PPO updates (marl train's own clock; the
diversity metrics run once at the end, outside it). On a shared machine the wall clock also counts other
processes' time, so the run also reports frames per second of its own CPU time (the whole `train` call:
setup and the final metrics included) and the load average around it. Writes <out>/image_training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

ENTRY_POINT = "marl.benchmarks.image_training:image_team"
TARGET_FPS = 200
TARGET_MEMORY_GB = 4.0
SETTINGS = [  # the config measured (the sharing scheme is added per run)
    "env=pettingzoo",
    f"env.entry_point={ENTRY_POINT}",
    "env.num_envs=16",
    "env.max_steps=25",
    "algorithm=mappo",
    "experiment.frames_per_batch=1600",
    "algorithm.minibatch_size=800",
    "algorithm.epochs=4",
    "algorithm.lr=1e-3",
    "model.hidden_sizes=[64]",
    "model.encoder=auto",
    "experiment.threads=1",
    "experiment.eval_every=0",
    "experiment.checkpoint_every=0",
    "experiment.progress=false",
    "metrics.every=1000",  # i.e. only at the last iteration: the metrics must fit in memory too
    "metrics.episodes=8",
]
COLOURS = [(255, 64, 64), (64, 255, 64), (64, 64, 255), (255, 255, 64), (255, 64, 255), (64, 255, 255)]


class ImageTeam(ParallelEnv):
    """`n_agents` cameras, each observing a `size` x `size` RGB image: name the quadrant of your square."""

    metadata = {"name": "image_team_v0", "is_parallelizable": True}

    def __init__(self, n_agents: int = 4, size: int = 84, episode_length: int = 25):
        self.possible_agents = [f"camera_{i}" for i in range(n_agents)]
        self.size, self.episode_length = size, episode_length
        self._observation = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self._action = spaces.Discrete(4)
        self.rng = np.random.default_rng(0)
        # pre-drawn images: [agent, quadrant, position] (the square at 3 places inside each quadrant)
        side, half = max(2, size // 6), size // 2
        self._images = np.zeros((n_agents, 4, 3, size, size, 3), np.uint8)
        for a in range(n_agents):
            for q in range(4):
                for p, offset in enumerate((1, (half - side) // 2, half - side - 1)):
                    y, x = (q // 2) * half + offset, (q % 2) * half + (half - side - offset)
                    self._images[a, q, p, y : y + side, x : x + side] = COLOURS[a % len(COLOURS)]

    def observation_space(self, agent):
        return self._observation

    def action_space(self, agent):
        return self._action

    def _observe(self):
        self.quadrant = self.rng.integers(0, 4, len(self.possible_agents))
        place = self.rng.integers(0, 3, len(self.possible_agents))
        return {a: self._images[i, self.quadrant[i], place[i]] for i, a in enumerate(self.agents)}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        rewards = {a: float(int(actions[a]) == self.quadrant[i]) for i, a in enumerate(self.agents)}
        self.t += 1
        done = self.t >= self.episode_length
        agents = self.agents
        observations = self._observe()
        if done:
            self.agents = []
        return (
            observations,
            rewards,
            {a: False for a in agents},
            {a: done for a in agents},
            {a: {} for a in agents},
        )


def image_team(n_agents: int = 4, size: int = 84, episode_length: int = 25) -> ImageTeam:
    return ImageTeam(n_agents, size, episode_length)


def run_one(scheme: str, frames: int) -> dict:
    """Train one config in this process; -> its measurements."""
    from marl.config import load_config
    from marl.run_logger import read_metrics
    from marl.training import build_trainer, train

    with tempfile.TemporaryDirectory() as runs:
        overrides = [
            *SETTINGS,
            f"sharing.actor.scheme={scheme}",
            f"sharing.critic.scheme={scheme}",
            f"experiment.total_frames={frames}",
            f"experiment.runs_dir={runs}",
        ]
        if scheme == "grouped":
            overrides.append("sharing.roles={pair_a: [0, 1], pair_b: [2, 3]}")
        cfg = load_config(overrides)
        counts = build_trainer(cfg).model.parameter_counts()
        load_before, cpu = os.getloadavg()[0], time.process_time()
        run_dir = train(cfg)
        cpu, load_after = time.process_time() - cpu, os.getloadavg()[0]
        rows = read_metrics(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
    returns = [r["train/return_mean"] for r in rows if "train/return_mean" in r]
    return {
        "scheme": scheme,
        "frames": summary["frames"],
        "train_wall_s": summary["wall_time_s"],
        "frames_per_s": summary["frames"] / summary["wall_time_s"],
        "cpu_s": cpu,
        "frames_per_cpu_s": summary["frames"] / cpu,
        "load_average_1min": [load_before, load_after],
        "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "actor_parameters": sum(v for k, v in counts.items() if k.endswith("/actor")),
        "critic_parameters": sum(v for k, v in counts.items() if k.endswith("/critic")),
        "return_first": returns[0],
        "return_last": returns[-1],
        "random_play_return": 0.25 * 25,
        "snd_measured": any(k.startswith("team/") for k in rows[-1]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schemes", nargs="+", default=["shared", "independent", "grouped", "hyper"])
    parser.add_argument("--frames", type=int, default=16_000)
    parser.add_argument("--out", default="results")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one scheme, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.frames)))
        return
    import torch

    from marl.benchmarks.machine import hardware, write_json

    torch.set_num_threads(1)  # as each run (experiment.threads=1), so the hardware record says so
    rows = []
    print(
        f"{'scheme':>12} {'frames/s':>9} {'per CPU s':>9} {'load':>5} {'max RSS GB':>11} {'actor':>9} "
        f"{'critic':>9} {'return':>14}"
    )
    for scheme in args.schemes:
        command = [sys.executable, "-m", "marl.benchmarks.image_training", "--one", scheme]
        done = subprocess.run([*command, "--frames", str(args.frames)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{scheme} failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{scheme:>12} {row['frames_per_s']:>9.0f} {row['frames_per_cpu_s']:>9.0f} "
            f"{max(row['load_average_1min']):>5.1f} {row['max_rss_gb']:>11.2f} {row['actor_parameters']:>9,} "
            f"{row['critic_parameters']:>9,} {row['return_first']:>6.2f} -> {row['return_last']:<6.2f}"
        )
    result = {
        "benchmark": "training on 84x84 RGB observations (4 agents), MAPPO with the conv encoder",
        "env": {"entry_point": ENTRY_POINT, "agents": 4, "observation": [84, 84, 3], "dtype": "uint8"},
        "config": SETTINGS,
        "targets": {"frames_per_s": TARGET_FPS, "max_rss_gb": TARGET_MEMORY_GB},
        "hardware": hardware(torch.device("cpu"), ("torch", "torchrl", "tensordict", "pettingzoo")),
        "rows": rows,
    }
    out = Path(args.out)
    write_json(out / "image_training.json", result)
    print(f"Hardware: {result['hardware']}\nWrote {out / 'image_training.json'}")


if __name__ == "__main__":
    main()

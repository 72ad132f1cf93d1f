"""A new environment, checked and trained end to end: two robots must go through different doors.

Both robots see the same thing (the step counter), so a policy shared without agent IDs can only split
them up by chance (a return of about 5 of 10), while agent IDs or separate networks let them specialise
(10 of 10). From the repository root:

    marl check-env examples.custom_env:make_doors                       1. does the platform understand it?
    marl train env=pettingzoo env.entry_point=examples.custom_env:make_doors sharing=shared_id   2. train
    python -m examples.custom_env                                       or both sharing schemes from Python
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class Doors(ParallelEnv):
    """Each step both robots pick door 0 or 1; each earns 1 if they picked different doors."""

    metadata = {"name": "doors_v0"}

    def __init__(self, episode_length: int = 10):
        self.possible_agents = ["robot_0", "robot_1"]
        self.episode_length = episode_length
        self._observation = spaces.Box(0.0, 1.0, (1,), np.float32)
        self._action = spaces.Discrete(2)

    def observation_space(self, agent):
        return self._observation

    def action_space(self, agent):
        return self._action

    def _observe(self):
        progress = np.array([self.t / self.episode_length], np.float32)
        return {agent: progress for agent in self.agents}

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._observe(), {agent: {} for agent in self.agents}

    def step(self, actions):
        reward = float(actions["robot_0"] != actions["robot_1"])
        self.t += 1
        done = self.t >= self.episode_length
        observations = self._observe()
        rewards = {agent: reward for agent in self.agents}
        terminations = {agent: False for agent in self.agents}
        truncations = {agent: done for agent in self.agents}
        infos = {agent: {} for agent in self.agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos


def make_doors(episode_length: int = 10) -> Doors:
    return Doors(episode_length)


if __name__ == "__main__":
    from marl.envs.check import check_env

    from marl.config import load_config
    from marl.run_logger import read_metrics
    from marl.training import train

    print(check_env("examples.custom_env:make_doors").format(), "\n")
    for sharing in ("shared", "shared_id"):
        cfg = load_config(
            [
                "env=pettingzoo",
                "env.entry_point=examples.custom_env:make_doors",
                f"sharing={sharing}",
                "experiment.total_frames=20000",
                "experiment.frames_per_batch=960",
                "algorithm.minibatch_size=480",
                "experiment.progress=false",
            ]
        )
        final = read_metrics(train(cfg))[-1]["train/return_mean"]
        print(f"sharing={sharing}: final return {final:.1f} of 10")

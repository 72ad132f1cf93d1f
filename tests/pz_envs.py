"""Small PettingZoo environments for the adapter's tests: one heterogeneous team, and broken variants.

`HeteroTeam` has three kinds of agent: two scouts (Box(4) observation, Discrete(3) action with a mask in
`info`), a carrier (Dict observation with a Discrete entry, Box(2) action) and a drone (MultiDiscrete
action). Scout 1 leaves the episode at step `leave_at`. Rewards are easy to learn: a scout is paid for
action 1 when its first observation feature is positive and action 2 otherwise; the carrier for pushing its
action towards its target; the drone for matching its two sub-actions to its observation.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv


class HeteroTeam(ParallelEnv):
    metadata = {"name": "hetero_team_v0", "is_parallelizable": True}

    def __init__(self, episode_length: int = 12, leave_at: int = 5):
        self.possible_agents = ["scout_0", "scout_1", "carrier", "drone"]
        self.episode_length, self.leave_at = episode_length, leave_at
        self._obs_spaces = {
            "scout_0": spaces.Box(-1, 1, (4,), np.float32),
            "scout_1": spaces.Box(-1, 1, (4,), np.float32),
            "carrier": spaces.Dict(
                {"target": spaces.Box(-1, 1, (2,), np.float32), "load": spaces.Discrete(3)}
            ),
            "drone": spaces.Box(0, 1, (2,), np.float32),
        }
        self._action_spaces = {
            "scout_0": spaces.Discrete(3),
            "scout_1": spaces.Discrete(3),
            "carrier": spaces.Box(-1, 1, (2,), np.float32),
            "drone": spaces.MultiDiscrete([2, 2]),
        }
        self.rng = np.random.default_rng(0)
        self.masked_actions_taken = 0  # scouts may never take action 0 (their info mask forbids it)

    def observation_space(self, agent):
        return self._obs_spaces[agent]

    def action_space(self, agent):
        return self._action_spaces[agent]

    def _observe(self):
        obs = {}
        for agent in self.agents:
            if agent.startswith("scout"):
                obs[agent] = self.rng.uniform(-1, 1, 4).astype(np.float32)
            elif agent == "carrier":
                obs[agent] = {"target": self.target.astype(np.float32), "load": int(self.t % 3)}
            else:
                obs[agent] = self.rng.integers(0, 2, 2).astype(np.float32)
        self.last_obs = obs
        return obs

    def _infos(self):
        # scouts may never take action 0
        return {
            a: ({"action_mask": np.array([0, 1, 1], np.int8)} if a.startswith("scout") else {})
            for a in self.agents
        }

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        self.target = self.rng.uniform(-1, 1, 2)
        return self._observe(), self._infos()

    def step(self, actions):
        rewards = {}
        for agent, action in actions.items():
            obs = self.last_obs[agent]
            if agent.startswith("scout"):
                self.masked_actions_taken += int(action == 0)
                rewards[agent] = np.float32(1.0 if action == (1 if obs[0] > 0 else 2) else 0.0)
            elif agent == "carrier":
                rewards[agent] = np.float32(-np.abs(np.asarray(action) - self.target).sum())
            else:
                rewards[agent] = np.float32((np.asarray(action) == obs.astype(int)).sum())
        self.t += 1
        terminations = {a: a == "scout_1" and self.t >= self.leave_at for a in self.agents}
        truncations = {a: self.t >= self.episode_length for a in self.agents}
        observations, infos = self._observe(), self._infos()
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return observations, rewards, terminations, truncations, infos


class SpacesAsAttributes(HeteroTeam):
    """API deviation with a clear intent: spaces given as dicts instead of methods, no `state`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.observation_spaces = self._obs_spaces
        self.action_spaces = self._action_spaces

    observation_space = None  # type: ignore[assignment]
    action_space = None  # type: ignore[assignment]


class NoAgents(HeteroTeam):
    def __init__(self):
        super().__init__()
        self.possible_agents = []


class VectorReward(HeteroTeam):
    def step(self, actions):
        observations, rewards, terminations, truncations, infos = super().step(actions)
        return (
            observations,
            {a: np.array([r, r]) for a, r in rewards.items()},
            terminations,
            truncations,
            infos,
        )


class BadMaskSize(HeteroTeam):
    def _infos(self):
        return {
            a: ({"action_mask": np.ones(5, np.int8)} if a.startswith("scout") else {}) for a in self.agents
        }


class OldResetAPI(HeteroTeam):
    def reset(self, seed=None, options=None):
        return super().reset(seed, options)[0]


class TextObservation(HeteroTeam):
    def observation_space(self, agent):
        return spaces.Text(8) if agent == "drone" else super().observation_space(agent)


class UnboundedBoxAction(HeteroTeam):
    def action_space(self, agent):
        return spaces.Box(-np.inf, np.inf, (2,)) if agent == "carrier" else super().action_space(agent)


def hetero_team(**kwargs) -> HeteroTeam:
    return HeteroTeam(**kwargs)


def not_an_env():
    return object()


class TakeTurns(AECEnv):
    """A two-player AEC game: each player picks one of 4 numbers, but only numbers not yet taken this round
    (masked); the reward goes to the player who picks the larger. 4 rounds."""

    metadata = {"name": "take_turns_v0"}

    def __init__(self):
        super().__init__()
        self.possible_agents = ["first", "second"]
        self._obs = spaces.Dict(
            {
                "observation": spaces.Box(0, 1, (4,), np.float32),
                "action_mask": spaces.Box(0, 1, (4,), np.int8),
            }
        )
        self._action = spaces.Discrete(4)
        self.masked_actions_taken = 0

    def observation_space(self, agent):
        return self._obs

    def action_space(self, agent):
        return self._action

    def observe(self, agent):
        taken = np.zeros(4, np.float32)
        for choice in self.choices.values():
            taken[choice] = 1
        mask = (1 - taken).astype(np.int8) if agent == self.agent_selection else np.zeros(4, np.int8)
        return {"observation": taken, "action_mask": mask}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self.agent_selection = "first"
        self.choices, self.round = {}, 0

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self.masked_actions_taken += int(action in self.choices.values())
        self.choices[agent] = int(action)
        self.rewards = {a: 0.0 for a in self.agents}
        if agent == "second":
            winner = max(self.choices, key=self.choices.get)
            self.rewards = {a: (1.0 if a == winner else -1.0) for a in self.agents}
            self.choices, self.round = {}, self.round + 1
            if self.round >= 4:
                self.terminations = {a: True for a in self.agents}
        self._accumulate_rewards()
        self.agent_selection = "second" if agent == "first" else "first"


class ConventionGame(ParallelEnv):
    """Two players, one step: both pick one of `k` actions and are paid 1 when they pick the same one (and it
    is in `conventions`). Every info reports `convention` (the action they agreed on, -1 if none) and
    `success`: a two-seat env with behaviour labels, for partner populations through the plug-in."""

    metadata = {"name": "convention_game_v0", "is_parallelizable": True}

    def __init__(self, k: int = 4, conventions: list[int] | None = None):
        self.possible_agents = ["left", "right"]
        self.k, self.paying = k, set(range(k) if conventions is None else conventions)

    def observation_space(self, agent):
        return spaces.Box(0, 1, (1,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(self.k)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        blank = {"convention": -1, "success": 0.0}
        return {a: np.zeros(1, np.float32) for a in self.agents}, {a: dict(blank) for a in self.agents}

    def step(self, actions):
        left, right = int(actions["left"]), int(actions["right"])
        paid = left == right and left in self.paying
        info = {"convention": left if left == right else -1, "success": float(paid)}
        agents, self.agents = self.agents, []
        return (
            {a: np.zeros(1, np.float32) for a in agents},
            {a: float(paid) for a in agents},
            {a: True for a in agents},
            {a: False for a in agents},
            {a: dict(info) for a in agents},
        )


def convention_game(**kwargs) -> ConventionGame:
    return ConventionGame(**kwargs)

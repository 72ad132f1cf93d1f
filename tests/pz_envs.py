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


# ---------------------------------------------------------------------------------------------------------
# Third-party envs as they come: ids that are not strings, spaces built late or never, state() that breaks
# when agents leave, images, competing teams, and faults the adapter must name.


class Guess(ParallelEnv):
    """Agents `ids` (any hashables) each see 3 random numbers and are paid 1 for action 1 when the first is
    positive, action 0 otherwise: random play earns 0.5 per step, a learned policy 1."""

    metadata = {"name": "guess_v0", "is_parallelizable": True}

    def __init__(self, ids=(0, 1), episode_length: int = 10):
        self.possible_agents = list(ids)
        self.episode_length = episode_length
        self._obs = spaces.Box(-1, 1, (3,), np.float32)
        self._act = spaces.Discrete(2)
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent):
        return self._obs

    def action_space(self, agent):
        return self._act

    def _observe(self):
        self.last_obs = {a: self.rng.uniform(-1, 1, 3).astype(np.float32) for a in self.agents}
        return self.last_obs

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return self._observe(), {a: {} for a in self.agents}

    def _rewards(self, actions):
        return {a: float(int(actions[a]) == int(self.last_obs[a][0] > 0)) for a in self.agents}

    def step(self, actions):
        rewards = self._rewards(actions)
        self.t += 1
        done = self.t >= self.episode_length
        agents = list(self.agents)
        observations = self._observe()
        if done:
            self.agents = []
        infos = {a: {} for a in agents}
        return observations, rewards, {a: False for a in agents}, {a: done for a in agents}, infos


def int_ids(**kwargs) -> Guess:
    return Guess(ids=(0, 1), **kwargs)


def tuple_ids(**kwargs) -> Guess:
    return Guess(ids=(("red", 0), ("red", 1), ("blue", 0), ("blue", 1)), **kwargs)


class LazySpaces(Guess):
    """Builds its spaces in reset() and reads them from a dict that does not exist before (PettingZoo's
    default `observation_space(agent)` does exactly that)."""

    def __init__(self, **kwargs):
        super().__init__(ids=("a_0", "a_1"), **kwargs)

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def reset(self, seed=None, options=None):
        self.observation_spaces = {a: self._obs for a in self.possible_agents}
        self.action_spaces = {a: self._act for a in self.possible_agents}
        return super().reset(seed, options)


class NoObservationSpaces(Guess):
    """Declares action spaces only: the observation space has to be inferred from the observations."""

    def observation_space(self, agent):
        return self.observation_spaces[agent]  # a dict this env never sets


class NoActionSpaces(Guess):
    def action_space(self, agent):
        raise NotImplementedError


class StateWhileRunning(HeteroTeam):
    """state() only works while the episode runs (it reads the live agents)."""

    def state(self):
        if not self.agents:
            raise RuntimeError("no agents: the episode is over")
        return np.concatenate([self.target, [self.t / self.episode_length]]).astype(np.float32)


class StateNeedsEveryone(HeteroTeam):
    """state() reads every scout's last observation: it fails once scout_1 has left (step `leave_at`)."""

    def state(self):
        return np.concatenate([self.last_obs["scout_0"], self.last_obs["scout_1"]])


class WrongObservationShape(HeteroTeam):
    def _observe(self):
        obs = super()._observe()
        if getattr(self, "t", 0) >= 2 and "scout_0" in obs:
            obs["scout_0"] = np.zeros(5, np.float32)
        return obs


class ImageTransposed(ParallelEnv):
    """Declares [H, W, C] images but returns [C, H, W]: the same number of values, the wrong layout."""

    metadata = {"name": "image_transposed_v0"}
    possible_agents = ["cam_0"]

    def observation_space(self, agent):
        return spaces.Box(0, 255, (16, 16, 3), np.uint8)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        return {"cam_0": np.zeros((3, 16, 16), np.uint8)}, {"cam_0": {}}

    def step(self, actions):
        return {"cam_0": np.zeros((3, 16, 16), np.uint8)}, {"cam_0": 0.0}, {"cam_0": False}, {}, {}


class Newcomer(HeteroTeam):
    """An agent that is not in possible_agents joins at step 2."""

    def step(self, actions):
        observations, rewards, terminations, truncations, infos = super().step(actions)
        if self.t == 2:
            observations["scout_2"] = np.zeros(4, np.float32)
            rewards["scout_2"] = 0.0
        return observations, rewards, terminations, truncations, infos


class OldStepAPI(HeteroTeam):
    def step(self, actions):
        observations, rewards, terminations, truncations, infos = super().step(actions)
        dones = {a: terminations[a] or truncations[a] for a in terminations}
        return observations, rewards, dones, infos


class NaNReward(HeteroTeam):
    def step(self, actions):
        observations, rewards, terminations, truncations, infos = super().step(actions)
        if self.t == 3:
            rewards["carrier"] = float("nan")
        return observations, rewards, terminations, truncations, infos


class InfiniteObservation(HeteroTeam):
    def _observe(self):
        obs = super()._observe()
        if getattr(self, "t", 0) == 2 and "drone" in obs:
            obs["drone"] = np.array([np.inf, 0.0], np.float32)
        return obs


def factory_raises(**kwargs):
    raise RuntimeError("cannot open the simulator window")


class TugOfWar(Guess):
    """Two teams of two with identical spaces, zero-sum: each agent sees a random bit and scores for its
    team when it plays that bit; red is paid (red score - blue score), blue the negative."""

    def __init__(self, **kwargs):
        super().__init__(ids=("red_0", "red_1", "blue_0", "blue_1"), **kwargs)

    def _rewards(self, actions):
        scored = {a: float(int(actions[a]) == int(self.last_obs[a][0] > 0)) for a in self.agents}
        margin = sum(v for a, v in scored.items() if a.startswith("red")) - sum(
            v for a, v in scored.items() if a.startswith("blue")
        )
        return {a: margin if a.startswith("red") else -margin for a in self.agents}


class ImagesInADict(ParallelEnv):
    """[C, H, W] float images in [0, 1] next to a battery level, in a Dict observation, for 2 agents: the
    reward is for action 1 when the image's first channel is bright."""

    metadata = {"name": "images_in_a_dict_v0"}
    possible_agents = ["rover_0", "rover_1"]

    def __init__(self, size: int = 16):
        self.size = size
        self._obs = spaces.Dict(
            {
                "camera": spaces.Box(0, 1, (3, size, size), np.float32),
                "battery": spaces.Box(0, 1, (1,), np.float32),
            }
        )
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent):
        return self._obs

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _observe(self):
        self.bright = {a: bool(self.rng.integers(0, 2)) for a in self.agents}
        out = {}
        for a in self.agents:
            image = np.zeros((3, self.size, self.size), np.float32)
            image[0] = 1.0 if self.bright[a] else 0.0
            out[a] = {"camera": image, "battery": np.ones(1, np.float32)}
        return out

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        rewards = {a: float(int(actions[a]) == int(self.bright[a])) for a in self.agents}
        self.t += 1
        agents = list(self.agents)
        observations = self._observe()
        if self.t >= 10:
            self.agents = []
        return observations, rewards, {a: False for a in agents}, {a: self.t >= 10 for a in agents}, {}

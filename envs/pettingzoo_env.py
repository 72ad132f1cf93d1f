"""Any PettingZoo environment (parallel or AEC) as the platform's batched TorchRL env.

`env=pettingzoo env.entry_point=package.module:factory env.kwargs={...}`: the factory returns a PettingZoo
`ParallelEnv` or `AECEnv`. `PettingZooEnv` steps `num_envs` copies of it side by side and exchanges
TensorDicts with the same multi-agent key layout as VMAS, so the learner cannot tell them apart:

    (group, "observation")  [envs, agents, features]  flattened (Dict/Tuple/one-hot; `ObservationLayout`)
    (group, "action_mask")  [envs, agents, actions]   where the env gives masks (obs["action_mask"] or info)
    (group, "alive")        [envs, agents]            False once an agent has left the episode
    (group, "acting")       [envs, agents]            AEC only: the agent whose turn it is
    (group, "reward")       [envs, agents, 1]
    "state"                 [envs, state]             where the env implements `state()` (MAPPO critic input)
    "done", "terminated", "truncated"  [envs, 1]
    (group, "info", key)    [envs, agents, 1]         with `info_keys`: that number from each agent's info

Agents are grouped by identical observation layout and action space (or by `env.groups`); agents with
different spaces are never padded into one group. An agent that leaves early keeps its slot: after
its final observation (on the step it leaves) its observation is zeros, its reward 0 and `alive` False,
and the learner masks those steps out of the loss and cuts its advantages there.
An AEC env becomes one batched step per turn: only the acting agent's action is used, every live agent
receives the reward of that turn, so returns add up exactly as the env pays them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from marl.envs.spaces import (
    MASK_KEY,
    ActionHead,
    ObservationLayout,
    action_head,
    flatten_into,
    observation_layout,
)
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, MultiCategorical, Unbounded
from torchrl.envs import EnvBase

from marl.errors import ConfigError

PETTINGZOO = "pettingzoo"


def load_factory(entry_point: str | None) -> Callable:
    """Import `package.module:callable`; every way this can go wrong gets a message with the fix."""
    if not entry_point:
        raise ConfigError(
            "env=pettingzoo needs env.entry_point: the 'package.module:factory' that returns your PettingZoo "
            "env, e.g. env.entry_point=mpe2.simple_spread_v3:parallel_env (marl check-env tests one)."
        )
    module_name, sep, attribute = entry_point.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(
            f"env.entry_point={entry_point!r} is not of the form 'package.module:factory' (a colon between "
            f"the module and the callable), e.g. mpe2.simple_spread_v3:parallel_env."
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the working directory are found
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"Cannot import {module_name!r} from env.entry_point={entry_point!r}: {error}. Install the "
            f"package that provides it, or put its folder on PYTHONPATH."
        ) from error
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            raise ConfigError(
                f"Module {module_name!r} has no {attribute!r} (from env.entry_point={entry_point!r}). "
                f"Callables it defines: {', '.join(public[:12]) or 'none'}."
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(
            f"env.entry_point={entry_point!r} names a {type(factory).__name__}, not a callable."
        )
    return factory


def is_aec(env) -> bool:
    """AEC envs take turns (`observe`, `last`, `agent_selection`); parallel envs step all agents at once."""
    from pettingzoo.utils.env import AECEnv, ParallelEnv

    if isinstance(env, (AECEnv, ParallelEnv)):
        return isinstance(env, AECEnv)
    return hasattr(env, "observe") and hasattr(env, "last")


def _space(env, kind: str, agent: str) -> spaces.Space:
    """`env.observation_space(agent)` with the common deviations accepted: the space as a dict attribute,
    a `<kind>_spaces` dict, or one shared space as a plain attribute."""
    method = getattr(env, f"{kind}_space", None)
    try:
        if callable(method) and not isinstance(method, spaces.Space):
            return method(agent)
    except (KeyError, AttributeError, NotImplementedError, TypeError):
        pass
    with warnings.catch_warnings():  # PettingZoo deprecates the dict, but some envs only have it
        warnings.simplefilter("ignore")
        plural = getattr(env, f"{kind}_spaces", None)
    for candidate in (method, plural):
        if isinstance(candidate, dict) and agent in candidate:
            return candidate[agent]
    if isinstance(method, spaces.Space):
        return method
    raise ConfigError(
        f"Cannot read the {kind} space of agent {agent!r}: the env has neither a working "
        f"{kind}_space(agent) method nor a {kind}_spaces dict with that agent. Define "
        f"`def {kind}_space(self, agent): return self.{kind}_spaces[agent]` in the env."
    )


def _possible_agents(env) -> list[str]:
    agents = getattr(env, "possible_agents", None) or getattr(env, "agents", None)
    if not agents:
        raise ConfigError(
            "The env lists no agents: set `self.possible_agents` (every agent that can ever appear) in its "
            "__init__, as the PettingZoo API requires."
        )
    return list(agents)


def _reward(value, agent: str) -> float:
    """Rewards as Python floats; numpy scalars and one-element arrays are accepted."""
    if isinstance(value, (float, int, np.floating, np.integer)):
        return float(value)
    array = np.asarray(value, dtype=np.float64)
    if array.size != 1:
        raise ConfigError(
            f"Agent {agent!r} received a reward of shape {array.shape}; rewards must be scalars. Sum or pick "
            f"the reward component to optimise inside the env."
        )
    return float(array.reshape(-1)[0])


@dataclass(frozen=True)
class Group:
    """Agents that share observation layout and action head, in slot order."""

    name: str
    agents: tuple[str, ...]
    layout: ObservationLayout
    head: ActionHead
    has_mask: bool


@dataclass(frozen=True)
class EnvDescription:
    """Everything the adapter learned by inspecting one copy of the env."""

    agents: tuple[str, ...]
    groups: tuple[Group, ...]
    aec: bool
    state_dim: int | None


def describe_pettingzoo(env, groups: dict[str, list[str]] | None = None, seed: int = 0) -> EnvDescription:
    """Inspect spaces, masks and state of a raw env (reset once with `seed`) and group its agents."""
    aec = is_aec(env)
    agents = _possible_agents(env)
    layouts = {a: observation_layout(_space(env, "observation", a), a) for a in agents}
    heads = {a: action_head(_space(env, "action", a), a) for a in agents}
    infos = _reset_raw(env, seed, aec)[1]
    in_info = {a: isinstance(infos.get(a), dict) and MASK_KEY in infos[a] for a in agents}
    has_mask = {a: layouts[a].mask_in_observation or in_info[a] for a in agents}
    for a in agents:
        if has_mask[a] and heads[a].kind == "continuous":
            raise ConfigError(
                f"Agent {a!r} has an action mask but a continuous (Box) action space; masks apply "
                f"to Discrete/MultiDiscrete actions only. Remove the mask or make the action discrete."
            )
    state_dim = _state_dim(env)

    def signature(a: str) -> tuple:
        return (tuple((f.kind, f.size, f.shape) for f in layouts[a].fields), heads[a].signature, has_mask[a])

    if groups:
        members = _configured_groups(groups, agents)
        for name, names in members.items():
            first = names[0]
            for other in names[1:]:
                if signature(other) != signature(first):
                    raise ConfigError(
                        f"env.groups.{name} puts {first!r} and {other!r} together, but their spaces differ: "
                        f"{first!r} observes {layouts[first].describe()} and acts {heads[first].kind}"
                        f"({heads[first].size}); {other!r} observes {layouts[other].describe()} and acts "
                        f"{heads[other].kind}({heads[other].size}). A group shares one network input and "
                        f"output, so it needs identical spaces; put them in different groups."
                    )
    else:
        by_signature: dict[tuple, list[str]] = {}
        for a in agents:
            by_signature.setdefault(signature(a), []).append(a)
        members = _name_groups(list(by_signature.values()))
    result = tuple(
        Group(name, tuple(names), layouts[names[0]], heads[names[0]], has_mask[names[0]])
        for name, names in members.items()
    )
    return EnvDescription(tuple(agents), result, aec, state_dim)


def _configured_groups(groups: dict[str, list], agents: list[str]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for name, listed in groups.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", str(name)):
            raise ConfigError(f"env.groups has a group named {name!r}; use letters, digits and '_'.")
        members[name] = []
        for entry in listed:
            agent = agents[entry] if isinstance(entry, int) and 0 <= entry < len(agents) else entry
            if agent not in agents:
                raise ConfigError(
                    f"env.groups.{name} lists {entry!r}, which is not an agent of this env. Agents: "
                    f"{', '.join(agents)} (names, or indices 0..{len(agents) - 1})."
                )
            if agent in seen:
                raise ConfigError(
                    f"Agent {agent!r} is in both env.groups.{seen[agent]} and env.groups.{name}."
                )
            seen[agent] = name
            members[name].append(agent)
    missing = [a for a in agents if a not in seen]
    if missing:
        raise ConfigError(
            f"env.groups leaves agents {missing} without a group; list every agent once "
            f"(or drop env.groups to group agents by their spaces automatically)."
        )
    return {name: names for name, names in members.items() if names}


def _name_groups(member_lists: list[list[str]]) -> dict[str, list[str]]:
    """Name each group after its agents' common prefix ("adversary_0", "adversary_1" -> "adversary")."""
    prefixes = [{re.sub(r"[_\-]?\d+$", "", a) for a in names} for names in member_lists]
    names = [p.pop() if len(p) == 1 and p != {""} else "" for p in prefixes]
    if len(set(names)) != len(names) or "" in names:
        names = ["agents"] if len(member_lists) == 1 else [f"group_{i}" for i in range(len(member_lists))]
    return {re.sub(r"\W", "_", name): members for name, members in zip(names, member_lists)}


def _state_dim(env) -> int | None:
    try:
        state = env.state()
    except (NotImplementedError, AttributeError):
        return None
    return int(np.asarray(state).size) if state is not None else None


def _reset_raw(env, seed: int | None, aec: bool) -> tuple[dict, dict]:
    """Reset a raw env -> (observations, infos) of the live agents, for both APIs."""
    if aec:
        env.reset(seed=seed)
        return {a: env.observe(a) for a in env.agents}, {a: env.infos.get(a, {}) for a in env.agents}
    result = env.reset(seed=seed)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ConfigError(
            "The parallel env's reset() must return (observations, infos) (PettingZoo >= 1.23); it returned "
            f"{type(result).__name__}. Return `observations, infos` from reset."
        )
    return result


class PettingZooEnv(EnvBase):
    """`num_envs` copies of a PettingZoo env, stepped in a loop and batched into one TensorDict."""

    def __init__(
        self,
        factory: Callable,
        kwargs: dict | None = None,
        num_envs: int = 1,
        max_steps: int = 100,
        seed: int = 0,
        device: torch.device | str = "cpu",
        groups: dict[str, list] | None = None,
        global_state: bool = True,
        name: str = PETTINGZOO,
        info_keys: list[str] | None = None,
    ):
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.name = name
        self.max_steps = max_steps
        # numeric entries of the agents' infos to expose (labels, success, ...): the last value an agent's
        # info reported in the current episode, -1 until it reports one
        self.info_keys = list(info_keys or [])
        self.copies = [self._build(factory, kwargs or {}) for _ in range(num_envs)]
        self.description = describe_pettingzoo(self.copies[0], groups, seed)
        self.global_state = global_state and self.description.state_dim is not None
        self.aec = self.description.aec
        self.group_map = {g.name: list(g.agents) for g in self.description.groups}
        self._slot = {
            a: (gi, j) for gi, g in enumerate(self.description.groups) for j, a in enumerate(g.agents)
        }
        self._seed, self._seed_pending = seed, True
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._plain_box = {  # groups whose observation is one 1-D Box: written without flattening
            gi
            for gi, g in enumerate(self.description.groups)
            if len(g.layout.fields) == 1
            and g.layout.fields[0].kind == "box"
            and len(g.layout.fields[0].shape) == 1
            and not g.layout.mask_in_observation
        }
        self._allocate_buffers()
        self._make_specs()

    @staticmethod
    def _build(factory: Callable, kwargs: dict):
        try:
            env = factory(**kwargs)
        except TypeError as error:
            raise ConfigError(f"The env factory rejected env.kwargs {kwargs}: {error}.") from error
        if not (hasattr(env, "step") and hasattr(env, "reset")):
            raise ConfigError(
                f"The env factory returned a {type(env).__name__}, which is not a PettingZoo env (no "
                f"step/reset). Return a pettingzoo ParallelEnv or AECEnv."
            )
        return env

    # ------------------------------------------------------------------------------------------- buffers
    def _allocate_buffers(self) -> None:
        n = len(self.copies)
        groups = self.description.groups
        self._obs = [np.zeros((n, len(g.agents), g.layout.size), np.float32) for g in groups]
        self._mask = [np.ones((n, len(g.agents), g.head.size), bool) if g.has_mask else None for g in groups]
        self._reward = [np.zeros((n, len(g.agents), 1), np.float32) for g in groups]
        self._alive = [np.zeros((n, len(g.agents)), bool) for g in groups]
        self._acting = [np.zeros((n, len(g.agents)), bool) for g in groups]
        self._info = [np.full((n, len(g.agents), len(self.info_keys)), -1.0, np.float32) for g in groups]
        self._done = np.zeros((n, 3), bool)  # done, terminated, truncated
        sd = self.description.state_dim
        self._state = np.zeros((n, sd), np.float32) if self.global_state else None

    def _make_specs(self) -> None:
        n = len(self.copies)
        obs, actions, rewards = {}, {}, {}
        for g in self.description.groups:
            shape = (n, len(g.agents))
            entries = {
                "observation": Unbounded((*shape, g.layout.size), device=self.device),
                "alive": Categorical(2, shape, dtype=torch.bool, device=self.device),
            }
            if g.has_mask:
                entries["action_mask"] = Categorical(
                    2, (*shape, g.head.size), dtype=torch.bool, device=self.device
                )
            if self.aec:
                entries["acting"] = Categorical(2, shape, dtype=torch.bool, device=self.device)
            if self.info_keys:
                info = {key: Unbounded((*shape, 1), device=self.device) for key in self.info_keys}
                entries["info"] = Composite(info, shape=shape, device=self.device)
            obs[g.name] = Composite(entries, shape=shape, device=self.device)
            head = g.head
            if head.kind == "discrete":
                action = Categorical(head.size, shape, dtype=torch.long, device=self.device)
            elif head.kind == "multi_discrete":
                action = MultiCategorical(
                    head.nvec, (*shape, len(head.nvec)), dtype=torch.long, device=self.device
                )
            else:
                low = torch.tensor(head.low, dtype=torch.float32).expand(*shape, head.size)
                high = torch.tensor(head.high, dtype=torch.float32).expand(*shape, head.size)
                action = Bounded(low, high, (*shape, head.size), device=self.device)
            actions[g.name] = Composite({"action": action}, shape=shape, device=self.device)
            rewards[g.name] = Composite({"reward": Unbounded((*shape, 1), device=self.device)}, shape=shape)
        if self._state is not None:
            obs["state"] = Unbounded((n, self._state.shape[1]), device=self.device)
        self.observation_spec = Composite(obs, shape=(n,), device=self.device)
        self.action_spec = Composite(actions, shape=(n,), device=self.device)
        self.reward_spec = Composite(rewards, shape=(n,), device=self.device)
        flag = Categorical(2, (n, 1), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(
            {"done": flag.clone(), "terminated": flag.clone(), "truncated": flag.clone()}, shape=(n,)
        )

    def _output(self, with_reward: bool) -> TensorDictBase:
        """The buffers as one TensorDict (copies: the buffers are reused on the next step)."""
        out = {}
        for gi, g in enumerate(self.description.groups):
            entry = {
                "observation": torch.tensor(self._obs[gi]),
                "alive": torch.tensor(self._alive[gi]),
            }
            if self._mask[gi] is not None:
                entry["action_mask"] = torch.tensor(self._mask[gi])
            if self.aec:
                entry["acting"] = torch.tensor(self._acting[gi])
            if self.info_keys:
                values = torch.tensor(self._info[gi])
                entry["info"] = {key: values[..., k : k + 1] for k, key in enumerate(self.info_keys)}
            if with_reward:
                entry["reward"] = torch.tensor(self._reward[gi])
            out[g.name] = entry
        if self._state is not None:
            out["state"] = torch.tensor(self._state)
        done = torch.tensor(self._done)
        out["done"], out["terminated"], out["truncated"] = done[:, 0:1], done[:, 1:2], done[:, 2:3]
        td = TensorDict(out, batch_size=self.batch_size)
        return td if self.device.type == "cpu" else td.to(self.device, non_blocking=True)

    # ------------------------------------------------------------------------------------------ write
    def _clear(self, i: int) -> None:
        for gi in range(len(self.description.groups)):
            self._obs[gi][i] = 0.0
            self._alive[gi][i] = False
            self._acting[gi][i] = False
            self._info[gi][i] = -1.0
            if self._mask[gi] is not None:
                self._mask[gi][i] = True

    def _write_agent(self, i: int, agent: str, observation, info, alive: bool) -> None:
        gi, j = self._slot[agent]
        layout = self.description.groups[gi].layout
        if gi in self._plain_box:  # the common case, one Box: numpy copies it in place
            self._obs[gi][i, j] = observation
        else:
            flatten_into(observation, layout, self._obs[gi][i, j])
        self._alive[gi][i, j] = alive
        if self.info_keys and isinstance(info, dict):
            for k, key in enumerate(self.info_keys):
                value = info.get(key)
                if value is not None:
                    self._info[gi][i, j, k] = float(value)
        mask_row = self._mask[gi]
        if mask_row is not None:
            mask = None
            if layout.mask_in_observation:
                mask = observation[MASK_KEY]
            elif isinstance(info, dict):
                mask = info.get(MASK_KEY)
            if mask is not None and alive:
                row = np.asarray(mask, dtype=bool).reshape(-1)
                if row.size != mask_row.shape[-1]:
                    raise ConfigError(
                        f"Agent {agent!r}: its action_mask has {row.size} entries, but its action space has "
                        f"{mask_row.shape[-1]} choices. The mask needs one entry per action."
                    )
                # An agent with no legal action (it is not its turn) keeps an all-True mask: its action
                # is not used, and an all-False row would make the policy's distribution undefined.
                mask_row[i, j] = row if row.any() else True
            else:
                mask_row[i, j] = True

    def _write_state(self, i: int) -> None:
        if self._state is not None:
            self._state[i] = np.asarray(self.copies[i].state(), dtype=np.float32).reshape(-1)

    # ------------------------------------------------------------------------------------------ reset
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        which = range(len(self.copies))
        if tensordict is not None and "_reset" in tensordict:
            which = np.flatnonzero(tensordict["_reset"].reshape(-1).cpu().numpy())
        for i in which:
            seed = self._seed + int(i) if self._seed_pending else None
            self._reset_copy(int(i), seed)
        self._seed_pending = False
        self._done[:] = False
        return self._output(with_reward=False)

    def _reset_copy(self, i: int, seed: int | None) -> None:
        env = self.copies[i]
        observations, infos = _reset_raw(env, seed, self.aec)
        self._clear(i)
        self._steps[i] = 0
        for agent, observation in observations.items():
            self._write_agent(i, agent, observation, infos.get(agent), alive=True)
        if self.aec:
            self._mark_acting(i)
        self._write_state(i)

    def _mark_acting(self, i: int) -> None:
        selected = self.copies[i].agent_selection
        if selected in self._slot:
            gi, j = self._slot[selected]
            self._acting[gi][i, j] = self._alive[gi][i, j]

    # ------------------------------------------------------------------------------------------- step
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = []  # per group: [copy][agent] -> a Python int (Discrete) or a numpy row
        for g in self.description.groups:
            array = tensordict[g.name, "action"].detach().cpu().numpy()
            if g.head.kind != "continuous" and any(g.head.start):
                array = array + np.asarray(g.head.start)
            actions.append(array.tolist() if g.head.kind == "discrete" else array)
        for r in self._reward:
            r[:] = 0.0
        step_copy = self._step_aec if self.aec else self._step_parallel
        for i in range(len(self.copies)):
            step_copy(i, actions)
        return self._output(with_reward=True)

    def _action(self, actions: list, i: int, agent: str):
        gi, j = self._slot[agent]
        return actions[gi][i][j]

    def _step_parallel(self, i: int, actions: list) -> None:
        env = self.copies[i]
        joint = {agent: self._action(actions, i, agent) for agent in env.agents}
        observations, rewards, terminations, truncations, infos = env.step(joint)
        self._steps[i] += 1
        if len(observations) != len(self._slot):  # someone is missing: their slots go back to zeros
            self._clear(i)
        still_here = env.agents
        any_truncated = anyone_alive = False
        for agent, observation in observations.items():
            truncated = bool(truncations.get(agent, False))
            alive = agent in still_here and not (truncated or terminations.get(agent, False))
            any_truncated |= truncated
            anyone_alive |= alive
            self._write_agent(i, agent, observation, infos.get(agent), alive)
        for agent, reward in rewards.items():
            gi, j = self._slot[agent]
            self._reward[gi][i, j, 0] = _reward(reward, agent)
        self._write_state(i)
        self._finish(i, any_truncated, anyone_alive)

    def _step_aec(self, i: int, actions: list) -> None:
        env = self.copies[i]
        env.step(self._action(actions, i, env.agent_selection))
        self._steps[i] += 1
        for agent in env.agents:
            gi, j = self._slot[agent]
            self._reward[gi][i, j, 0] = _reward(env.rewards.get(agent, 0.0), agent)
        # Agents that ended take one "dead step" each when their turn comes (the AEC protocol).
        while env.agents and not self._all_ended(env) and self._ended(env, env.agent_selection):
            env.step(None)
        self._clear(i)
        any_truncated = any(bool(env.truncations.get(a, False)) for a in env.agents)
        for agent in env.agents:
            self._write_agent(i, agent, env.observe(agent), env.infos.get(agent), not self._ended(env, agent))
        self._mark_acting(i)
        self._write_state(i)
        self._finish(i, any_truncated)

    @staticmethod
    def _ended(env, agent: str) -> bool:
        return bool(env.terminations.get(agent, False)) or bool(env.truncations.get(agent, False))

    def _all_ended(self, env) -> bool:
        return all(self._ended(env, a) for a in env.agents)

    def _finish(self, i: int, any_truncated: bool, anyone_alive: bool | None = None) -> None:
        if anyone_alive is None:
            anyone_alive = any(alive[i].any() for alive in self._alive)
        out_of_time = self._steps[i] >= self.max_steps
        done = not anyone_alive or out_of_time
        truncated = done and (any_truncated or (out_of_time and anyone_alive))
        self._done[i] = (done, done and not truncated, truncated)

    def _set_seed(self, seed: int | None) -> None:
        self._seed, self._seed_pending = int(seed or 0), True

    # ------------------------------------------------------------------------------------ save / load
    def snapshot(self) -> bytes | None:
        """The copies and buffers, pickled into bytes (checkpoints load with `weights_only`), for an exact
        resume; None (with a warning) if the env cannot be pickled: a resumed run then starts new episodes."""
        state = {
            "copies": self.copies,
            "buffers": {name: getattr(self, name) for name in self._buffer_names},
            "steps": self._steps,
            "done": self._done,
            "state": self._state,
            "seed_pending": self._seed_pending,
        }
        try:
            return pickle.dumps(state)
        except Exception as error:  # noqa: BLE001 - any pickling failure means "not resumable exactly"
            warnings.warn(
                f"The PettingZoo env cannot be pickled ({type(error).__name__}: {error}); a resumed run will "
                f"start new episodes instead of continuing the interrupted ones.",
                stacklevel=2,
            )
            return None

    _buffer_names = ("_obs", "_mask", "_reward", "_alive", "_acting", "_info")

    def restore(self, state: bytes | None) -> None:
        if state is None:
            self._seed_pending = False
            self._reset()
            return
        saved = pickle.loads(state)
        self.copies = saved["copies"]
        for name in self._buffer_names:  # (a snapshot from before info_keys has no "_info": keep ours)
            setattr(self, name, saved["buffers"].get(name, getattr(self, name)))
        self._steps, self._done, self._state = saved["steps"], saved["done"], saved["state"]
        self._seed_pending = saved["seed_pending"]

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self.copies:
            with contextlib.suppress(Exception):  # closing must not mask the real error
                env.close()
        super().close(raise_if_closed=raise_if_closed)

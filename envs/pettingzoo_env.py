"""Any PettingZoo environment (parallel or AEC) as the platform's batched TorchRL env.

`env=pettingzoo env.entry_point=package.module:factory env.kwargs={...}`: the factory returns a PettingZoo
`ParallelEnv` or `AECEnv`. `BatchedPettingZooEnv` steps `num_envs` copies of it side by side and exchanges
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
import difflib
import importlib
import inspect
import math
import os
import pickle
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium import spaces
from marl.envs.spaces import (
    MASK_KEY,
    ActionHead,
    ObservationLayout,
    action_head,
    flatten_into,
    image_fields,
    infer_space,
    observation_layout,
)
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, MultiCategorical, Unbounded
from torchrl.envs import EnvBase

from marl.errors import ConfigError
from marl.trust import sign, verify

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
    except Exception as error:  # noqa: BLE001 - the module's own code failed while importing
        raise ConfigError(
            f"Importing {module_name!r} (from env.entry_point={entry_point!r}) raised {_error_text(error)}"
            f"{_where(error)}. Fix that module; `python -c 'import {module_name}'` shows the traceback."
        ) from error
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ConfigError(
                f"Module {module_name!r} has no {attribute!r} (from env.entry_point={entry_point!r}). "
                f"{_callables_hint(module, module_name, attribute)}"
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(
            f"env.entry_point={entry_point!r} names a {type(factory).__name__}, not a callable."
        )
    return factory


def _callables_hint(module, module_name: str, wanted: str) -> str:
    """The callables a module defines itself (all of them, so the factory is never cut off), the closest
    name first, then how many it merely imports."""
    callables = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
    own = [n for n in callables if getattr(getattr(module, n), "__module__", None) == module_name]
    imported = len(callables) - len(own)
    close = difflib.get_close_matches(wanted, callables, n=1)
    hint = f"Did you mean {module_name}:{close[0]}? " if close else ""
    listed = ", ".join(own) if own else "none"
    more = f" (and {imported} it imports)" if imported else ""
    return f"{hint}Callables it defines: {listed}{more}."


def _error_text(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _where(error: BaseException) -> str:
    """' (at file.py:12 in func)' for the innermost frame of an exception's traceback, or ''."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {os.path.basename(frame.filename)}:{frame.lineno} in {frame.name})"


def is_aec(env) -> bool:
    """AEC envs take turns (`observe`, `last`, `agent_selection`); parallel envs step all agents at once."""
    from pettingzoo.utils.env import AECEnv, ParallelEnv

    if isinstance(env, (AECEnv, ParallelEnv)):
        return isinstance(env, AECEnv)
    return hasattr(env, "observe") and hasattr(env, "last")


# ----------------------------------------------------------------------------------------------- agents
# Agent ids may be any hashable (strings, ints, tuples...). Internally the adapter keys everything by the
# id itself; what it shows (group maps, logs, metric names) is a string label: the id if it is a string,
# tuples joined by "_" (("red", 0) -> "red_0"), anything else str(id).

# Keys the platform writes at the root of a step's TensorDict: a group cannot take these names.
RESERVED_GROUP_NAMES = frozenset(
    {"done", "terminated", "truncated", "state", "next", "_reset", "episode_start", "reward", "info"}
)


def agent_label(agent) -> str:
    if isinstance(agent, str):
        return agent
    if isinstance(agent, tuple):
        return "_".join(agent_label(part) for part in agent)
    return str(agent)


def agent_labels(agents: list) -> dict:
    """{agent id: label}, the labels unique (falling back to repr() where two ids print alike)."""
    labels = {a: agent_label(a) for a in agents}
    if len(set(labels.values())) != len(labels):
        labels = {a: a if isinstance(a, str) else repr(a) for a in agents}
    return labels


_NUMBERED = re.compile(r"(.*?[A-Za-z].*?)[_\-]?(\d+)")


def _prefix(label: str) -> tuple[str, bool]:
    """("adversary", True) for "adversary_0"; (label, False) for names without a numeric suffix."""
    match = _NUMBERED.fullmatch(label)
    return (match.group(1), True) if match else (label, False)


def _safe_group_name(name: str) -> str:
    """A group name that is a plain identifier and no root key of the platform's TensorDicts."""
    name = re.sub(r"\W", "_", name)
    if not name or name[0].isdigit():
        name = f"agent_{name}"
    return f"{name}_group" if name in RESERVED_GROUP_NAMES else name


def default_groups(agents: list, labels: dict, signature: Callable) -> tuple[dict[str, list], str]:
    """Group agents by name prefix, then by spaces; -> ({group name: agents}, how they were grouped).

    Numbered names form teams: `red_0, red_1, blue_0, blue_1` are two groups even with identical spaces
    (opponents must not silently share one network). Names without numbers (`first`, `second`) or plain
    numbers (0, 1) say nothing about teams: those agents are grouped by their spaces only."""
    prefixes = {a: _prefix(labels[a]) for a in agents}
    by_prefix = len({p for p, _ in prefixes.values()}) > 1 and any(n for _, n in prefixes.values())
    keyed: dict[tuple, list] = {}
    for a in agents:
        keyed.setdefault((prefixes[a][0] if by_prefix else None, signature(a)), []).append(a)
    members = list(keyed.values())
    names = []
    for group in members:
        common = {prefixes[a][0] for a in group}
        name = common.pop() if len(common) == 1 else ""
        if name and not re.search(r"[A-Za-z]", name):
            name = ""
        names.append(name)
    if "" in names:
        names = ["agents"] if len(members) == 1 else [n or f"group_{i}" for i, n in enumerate(names)]
    names = [_safe_group_name(n) for n in names]
    for name in set(names):  # the same prefix with different spaces: number the groups
        if names.count(name) > 1:
            k = iter(range(len(names)))
            names = [f"{n}_{next(k)}" if n == name else n for n in names]
    how = "by name prefix, then by spaces" if by_prefix else "by spaces"
    return dict(zip(names, members)), how


# ----------------------------------------------------------------------------------------------- spaces
def _try_space(env, kind: str, agent) -> tuple[spaces.Space | None, str | None]:
    """`env.observation_space(agent)` with the common deviations accepted (a `<kind>_spaces` dict, one
    shared space as a plain attribute); -> (space, None) or (None, why not)."""
    method = getattr(env, f"{kind}_space", None)
    problem = None
    if callable(method) and not isinstance(method, spaces.Space):
        try:
            space = method(agent)
        except Exception as error:  # noqa: BLE001 - any failure means "not available (yet)"
            problem = f"{kind}_space({agent!r}) raised {_error_text(error)}"
        else:
            if isinstance(space, spaces.Space):
                return space, None
            problem = f"{kind}_space({agent!r}) returned {type(space).__name__}, not a gymnasium space"
    try:
        with warnings.catch_warnings():  # PettingZoo deprecates the dict, but some envs only have it
            warnings.simplefilter("ignore")
            plural = getattr(env, f"{kind}_spaces", None)
    except Exception:  # noqa: BLE001 - a property that fails is a missing dict
        plural = None
    if isinstance(plural, dict) and agent in plural and isinstance(plural[agent], spaces.Space):
        return plural[agent], None
    if isinstance(method, spaces.Space):
        return method, None
    return None, problem or f"it has no {kind}_space(agent) method and no {kind}_spaces dict with {agent!r}"


def _read_spaces(env, agents: list, labels: dict, early: dict, observations: dict, notes: list) -> tuple:
    """Observation and action space of every agent: as the env declares them (before or, for envs that
    build them in reset(), after the first reset), or, for observations, inferred from the first ones."""
    found: dict[str, dict] = {"observation": {}, "action": {}}
    late: dict[str, list] = {"observation": [], "action": []}
    for kind in found:
        for a in agents:
            space = early.get((kind, a))
            if space is None:
                space, problem = _try_space(env, kind, a)
                if space is not None and early:
                    late[kind].append(labels[a])
            if space is None and kind == "observation" and a in observations:
                space = infer_space(observations[a], labels[a])
                notes.append(
                    f"agent {labels[a]}: no observation space ({problem}); inferred {space} from its first "
                    f"observation"
                )
            if space is None:
                raise ConfigError(_missing_space_message(kind, labels[a], problem, a in observations))
            found[kind][a] = space
        if late[kind]:
            notes.append(
                f"{kind} spaces of {', '.join(late[kind])} exist only after reset(): read after the first "
                f"reset"
            )
    return found["observation"], found["action"]


def _missing_space_message(kind: str, label: str, problem: str | None, observed: bool) -> str:
    why = (
        "actions cannot be inferred from observations"
        if kind == "action"
        else "the agent is not in the first reset's observations, so its space cannot be inferred"
    )
    example = "gymnasium.spaces.Discrete(5)" if kind == "action" else "gymnasium.spaces.Box(-1, 1, (8,))"
    return (
        f"Cannot read the {kind} space of agent {label!r}: {problem}, also after reset(), and {why}. Declare "
        f"it in your own code: subclass the env and define `def {kind}_space(self, agent): return "
        f"{example}` (or set `self.{kind}_spaces = {{agent: space, ...}}` in a factory function), and point "
        f"env.entry_point at that."
    )


def _possible_agents(env) -> list:
    agents = getattr(env, "possible_agents", None) or getattr(env, "agents", None)
    if not agents:
        raise ConfigError(
            "The env lists no agents: set `self.possible_agents` (every agent that can ever appear) in its "
            "__init__, as the PettingZoo API requires."
        )
    return list(agents)


def _reward(value, agent) -> float:
    """Rewards as Python floats; numpy scalars and one-element arrays are accepted, NaN and inf are not."""
    if isinstance(value, (float, int, np.floating, np.integer)):
        result = float(value)
    else:
        array = np.asarray(value, dtype=np.float64)
        if array.size != 1:
            raise ConfigError(
                f"Agent {agent!r} received a reward of shape {array.shape}; rewards must be scalars. Sum or "
                f"pick the reward component to optimise inside the env."
            )
        result = float(array.reshape(-1)[0])
    if not math.isfinite(result):
        raise ConfigError(
            f"Agent {agent!r} received a reward of {result}. A NaN or infinite reward poisons the value "
            f"targets (training would then fail with a NaN loss). In your own code, wrap the env (a subclass "
            f"whose step() returns np.nan_to_num of the rewards, or clips them) and point env.entry_point at "
            f"it; if the env is yours, guard the divisions and logs in its reward."
        )
    return result


@dataclass(frozen=True)
class Group:
    """Agents that share observation layout and action head, in slot order."""

    name: str
    agents: tuple  # agent ids (any hashable)
    layout: ObservationLayout
    head: ActionHead
    has_mask: bool
    labels: tuple[str, ...] = ()  # the agents' labels, same order


@dataclass(frozen=True)
class EnvDescription:
    """Everything the adapter learned by inspecting one copy of the env."""

    agents: tuple
    groups: tuple[Group, ...]
    aec: bool
    state_dim: int | None
    labels: dict = field(default_factory=dict)  # agent id -> label
    notes: tuple[str, ...] = ()  # what the adapter did about each deviation from the PettingZoo API
    grouping: str = "by spaces"  # how the groups were formed ("by env.groups", "by name prefix, then ...")


def describe_pettingzoo(env, groups: dict[str, list] | None = None, seed: int = 0) -> EnvDescription:
    """Inspect spaces, masks and state of a raw env (reset once with `seed`) and group its agents."""
    aec = is_aec(env)
    notes: list[str] = []
    early_agents = list(getattr(env, "possible_agents", None) or [])
    early = {}
    for a in early_agents:  # spaces as declared before any reset (most envs)
        for kind in ("observation", "action"):
            early[(kind, a)] = _try_space(env, kind, a)[0]
    observations, infos = _reset_raw(env, seed, aec)
    agents = _possible_agents(env)
    if not early_agents:
        notes.append("possible_agents is set only by reset(): read after the first reset")
    labels = agent_labels(agents)
    if any(not isinstance(a, str) for a in agents):
        notes.append(
            f"agent ids are {', '.join(sorted({type(a).__name__ for a in agents}))}, not strings: shown and "
            f"logged as {', '.join(labels[a] for a in agents[:6])}{', ...' if len(agents) > 6 else ''}"
        )
    obs_spaces, act_spaces = _read_spaces(env, agents, labels, early, observations, notes)
    layouts = {a: observation_layout(obs_spaces[a], labels[a]) for a in agents}
    heads = {a: action_head(act_spaces[a], labels[a]) for a in agents}
    infos = infos or {}
    in_info = {a: isinstance(infos.get(a), dict) and MASK_KEY in infos[a] for a in agents}
    has_mask = {a: layouts[a].mask_in_observation or in_info[a] for a in agents}
    for a in agents:
        if has_mask[a] and heads[a].kind == "continuous":
            raise ConfigError(
                f"Agent {labels[a]!r} has an action mask but a continuous (Box) action space; masks apply "
                f"to Discrete/MultiDiscrete actions only. Remove the mask or make the action discrete."
            )
    state_dim = _state_dim(env, notes)

    def signature(a) -> tuple:
        return (tuple((f.kind, f.size, f.shape) for f in layouts[a].fields), heads[a].signature, has_mask[a])

    if groups:
        members = _configured_groups(groups, agents, labels)
        grouping = "by env.groups"
        for name, names in members.items():
            first = names[0]
            for other in names[1:]:
                if signature(other) != signature(first):
                    raise ConfigError(
                        f"env.groups.{name} puts {labels[first]!r} and {labels[other]!r} together, but their "
                        f"spaces differ: {labels[first]!r} observes {layouts[first].describe()} and acts "
                        f"{heads[first].kind}({heads[first].size}); {labels[other]!r} observes "
                        f"{layouts[other].describe()} and acts {heads[other].kind}({heads[other].size}). A "
                        f"group shares one network input and output, so it needs identical spaces; put them "
                        f"in different groups."
                    )
    else:
        members, grouping = default_groups(agents, labels, signature)
    result = tuple(
        Group(
            name,
            tuple(names),
            layouts[names[0]],
            heads[names[0]],
            has_mask[names[0]],
            tuple(labels[a] for a in names),
        )  # fmt: skip
        for name, names in members.items()
    )
    return EnvDescription(tuple(agents), result, aec, state_dim, labels, tuple(notes), grouping)


def _find_agent(entry, agents: list, labels: dict):
    """An `env.groups` entry -> agent id: the id itself, its label, or an index into possible_agents."""
    if isinstance(entry, list):
        entry = tuple(entry)
    with contextlib.suppress(TypeError):
        if entry in labels:
            return entry
    by_label = [a for a in agents if labels[a] == str(entry)]
    if by_label:
        return by_label[0]
    if isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry < len(agents):
        return agents[entry]
    return None


def _configured_groups(groups: dict[str, list], agents: list, labels: dict) -> dict[str, list]:
    members: dict[str, list] = {}
    seen: dict = {}
    for name, listed in groups.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", str(name)) or name in RESERVED_GROUP_NAMES:
            reserved = f" (not one of {', '.join(sorted(RESERVED_GROUP_NAMES))})"
            raise ConfigError(
                f"env.groups has a group named {name!r}; use letters, digits and '_'{reserved}."
            )
        members[name] = []
        for entry in listed:
            agent = _find_agent(entry, agents, labels)
            if agent is None:
                raise ConfigError(
                    f"env.groups.{name} lists {entry!r}, which is not an agent of this env. Agents: "
                    f"{', '.join(labels[a] for a in agents)} (names, or indices 0..{len(agents) - 1})."
                )
            if agent in seen:
                raise ConfigError(
                    f"Agent {labels[agent]!r} is in both env.groups.{seen[agent]} and env.groups.{name}."
                )
            seen[agent] = name
            members[name].append(agent)
    missing = [labels[a] for a in agents if a not in seen]
    if missing:
        raise ConfigError(
            f"env.groups leaves agents {missing} without a group; list every agent once "
            f"(or drop env.groups to group agents by their names and spaces automatically)."
        )
    return {name: names for name, names in members.items() if names}


def _state_dim(env, notes: list) -> int | None:
    try:
        state = env.state()
    except (NotImplementedError, AttributeError):
        return None
    except Exception as error:  # noqa: BLE001 - a broken state() means "no global state", said so
        notes.append(f"state() raised {_error_text(error)} after reset(): used without a global state")
        return None
    if state is None:
        return None
    try:
        return int(np.asarray(state, dtype=np.float32).size)
    except (TypeError, ValueError):
        notes.append(f"state() returned a {type(state).__name__}, not numbers: no global state")
        return None


def _reset_raw(env, seed: int | None, aec: bool) -> tuple[dict, dict]:
    """Reset a raw env -> (observations, infos) of the live agents, for both APIs."""
    if aec:
        env.reset(seed=seed)
        infos = getattr(env, "infos", None) or {}
        return {a: env.observe(a) for a in env.agents}, {a: infos.get(a, {}) for a in env.agents}
    result = env.reset(seed=seed)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ConfigError(
            "The parallel env's reset() must return (observations, infos) (PettingZoo >= 1.23); it returned "
            f"{type(result).__name__}. Return `observations, infos` from reset."
        )
    return result


class BatchedPettingZooEnv(EnvBase):
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
        self.labels = self.description.labels
        # what TorchRL and the learner see: group -> agent labels (strings, whatever the env's ids are)
        self.group_map = {g.name: list(g.labels) for g in self.description.groups}
        self.image_fields = {g.name: image_fields(g.layout) for g in self.description.groups}
        self._slot = {
            a: (gi, j) for gi, g in enumerate(self.description.groups) for j, a in enumerate(g.agents)
        }
        self._seed, self._seed_pending = seed, True
        self._restart_seeds: list[int] | None = None  # set when a restore could not continue the episodes
        self._restart_pending = False
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._episodes = np.zeros(num_envs, dtype=np.int64)  # resets per copy (restart seeds derive from it)
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
        """Call the user's factory; its own failures come back as a ConfigError naming it and where."""
        name = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as error:
            raise ConfigError(
                f"The env factory {name} rejected env.kwargs {kwargs}: {error}. Pass only the arguments it "
                f"takes (env.kwargs.<name>=value)."
            ) from error
        except ValueError:  # no signature to check (a builtin): let the call decide
            pass
        try:
            env = factory(**kwargs)
        except Exception as error:  # noqa: BLE001 - the user's code failed: say where, and how to see it
            module, _, attribute = name.partition(":")
            raise ConfigError(
                f"The env factory {name} raised {_error_text(error)}{_where(error)} when called with "
                f"env.kwargs {kwargs}. Check env.kwargs and what the factory needs (a display, a file, a "
                f"dependency), or point env.entry_point at a factory of your own; the full traceback: "
                f"python -c 'from {module} import {attribute.split('.')[0]} as f; f(**{kwargs!r})'"
            ) from error
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
        self._obs = [np.zeros((n, len(g.agents), g.layout.size), self._obs_dtype(g)) for g in groups]
        self._mask = [np.ones((n, len(g.agents), g.head.size), bool) if g.has_mask else None for g in groups]
        self._reward = [np.zeros((n, len(g.agents), 1), np.float32) for g in groups]
        self._alive = [np.zeros((n, len(g.agents)), bool) for g in groups]
        self._acting = [np.zeros((n, len(g.agents)), bool) for g in groups]
        self._info = [np.full((n, len(g.agents), len(self.info_keys)), -1.0, np.float32) for g in groups]
        self._done = np.zeros((n, 3), bool)  # done, terminated, truncated
        sd = self.description.state_dim
        self._state = np.zeros((n, sd), np.float32) if self.global_state else None

    @staticmethod
    def _obs_dtype(group: Group):
        """uint8 for a group whose observation is one 8-bit image (4x less memory and copying than
        float32; the policy's encoder scales it to [0, 1]); float32 for everything else."""
        fields = group.layout.fields
        pixels = (
            len(fields) == 1
            and fields[0].dtype == "uint8"
            and len(fields[0].shape) in (2, 3)
            and not group.layout.mask_in_observation
        )
        return np.uint8 if pixels else np.float32

    def _make_specs(self) -> None:
        n = len(self.copies)
        obs, actions, rewards = {}, {}, {}
        for gi, g in enumerate(self.description.groups):
            shape = (n, len(g.agents))
            if self._obs[gi].dtype == np.uint8:
                observation = Bounded(0, 255, (*shape, g.layout.size), dtype=torch.uint8, device=self.device)
            else:
                observation = Unbounded((*shape, g.layout.size), device=self.device)
            entries = {
                "observation": observation,
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
            self._obs[gi][i] = 0
            self._alive[gi][i] = False
            self._acting[gi][i] = False
            self._info[gi][i] = -1.0
            if self._mask[gi] is not None:
                self._mask[gi][i] = True

    def _slot_of(self, agent, i: int) -> tuple[int, int]:
        try:
            return self._slot[agent]
        except (KeyError, TypeError):
            known = ", ".join(self.labels.values())
            raise ConfigError(
                f"Agent {agent!r} appeared in copy {i} at step {self._steps[i]}, but it is not in the env's "
                f"possible_agents ({known}), read when the env was first reset. Every agent gets a fixed "
                f"slot, so possible_agents must list every agent that can ever appear, also those that join "
                f"mid-episode. In your own code, subclass the env, set self.possible_agents to all of them "
                f"in its __init__ (after super().__init__()), and point env.entry_point at a factory for it."
            ) from None

    def _write_agent(self, i: int, agent, observation, info, alive: bool) -> None:
        gi, j = self._slot_of(agent, i)
        layout = self.description.groups[gi].layout
        try:
            if gi in self._plain_box:  # the common case, one Box: numpy copies it in place
                self._obs[gi][i, j] = observation
            else:
                flatten_into(observation, layout, self._obs[gi][i, j])
        except (ValueError, TypeError, KeyError, IndexError) as error:
            raise self._observation_error(i, agent, observation, layout, error) from None
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
                        f"Agent {self.labels[agent]!r}: its action_mask has {row.size} entries, but its "
                        f"action space has {mask_row.shape[-1]} choices. The mask needs one entry per action."
                    )
                # An agent with no legal action (it is not its turn) keeps an all-True mask: its action
                # is not used, and an all-False row would make the policy's distribution undefined.
                mask_row[i, j] = row if row.any() else True
            else:
                mask_row[i, j] = True

    def _observation_error(self, i: int, agent, observation, layout: ObservationLayout, error) -> ConfigError:
        label = self.labels[agent]
        if len(layout.fields) == 1 and not layout.fields[0].path and not layout.mask_in_observation:
            expected = layout.fields[0].shape
            got = np.shape(observation) if not isinstance(observation, dict) else "a dict"
            what = f"has shape {got}, but its observation space says {expected}"
        else:
            what = f"does not match its observation space ({layout.describe()}): {_error_text(error)}"
        return ConfigError(
            f"Agent {label!r}'s observation (copy {i}, step {self._steps[i]}) {what}. The adapter sizes its "
            f"buffers from observation_space({label!r}). In your own code, subclass the env and override "
            f"observation_space(agent) to return the space the observations really have (or reshape them in "
            f"step() and reset()), and point env.entry_point at it."
        )

    def _write_state(self, i: int) -> None:
        """The global state of copy `i`, read only while its episode runs: after it has ended, `state()` of
        many envs fails (their agents are gone), and the last state is kept (no learner reads it: the
        next step starts a new episode)."""
        if self._state is None or not self.copies[i].agents:
            return
        try:
            value = np.asarray(self.copies[i].state(), dtype=np.float32).reshape(-1)
            self._state[i] = value
        except Exception as error:  # noqa: BLE001 - any failure of state() gets the same explanation
            raise self._state_error(i, error) from error

    def _state_error(self, i: int, error: BaseException) -> ConfigError:
        env = self.copies[i]
        gone = [self.labels[a] for a in self.description.agents if a not in env.agents]
        when = f" after {', '.join(gone)} left the episode" if gone else ""
        return ConfigError(
            f"The env's state() raised {_error_text(error)}{_where(error)} in copy {i} at step "
            f"{self._steps[i]}{when}. algorithm.critic_input=state reads state() after every step, so it "
            f"must work while agents are removed. Either train with algorithm.critic_input=observations (the "
            f"MAPPO critic then reads every agent's observation, zeros for removed ones), or make state() "
            f"cope in your own code: subclass the env and override state() to fill removed agents' parts "
            f"with zeros (keeping its size {self.description.state_dim})."
        )

    # ------------------------------------------------------------------------------------------ reset
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        which = range(len(self.copies))
        if tensordict is not None and "_reset" in tensordict:
            which = np.flatnonzero(tensordict["_reset"].reshape(-1).cpu().numpy())
        for i in which:
            if self._restart_seeds is not None:
                seed = self._restart_seeds[int(i)]
            else:
                seed = self._seed + int(i) if self._seed_pending else None
            self._reset_copy(int(i), seed)
        self._seed_pending, self._restart_seeds, self._restart_pending = False, None, False
        self._done[:] = False
        return self._output(with_reward=False)

    def _reset_copy(self, i: int, seed: int | None) -> None:
        env = self.copies[i]
        observations, infos = _reset_raw(env, seed, self.aec)
        self._clear(i)
        self._steps[i] = 0
        self._episodes[i] += 1
        for agent, observation in observations.items():
            self._write_agent(i, agent, observation, (infos or {}).get(agent), alive=True)
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
        if self._restart_pending:
            return self._end_interrupted_episodes(tensordict)
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

    def _action(self, actions: list, i: int, agent):
        gi, j = self._slot_of(agent, i)
        return actions[gi][i][j]

    def _step_parallel(self, i: int, actions: list) -> None:
        env = self.copies[i]
        joint = {agent: self._action(actions, i, agent) for agent in env.agents}  # live agents only
        result = env.step(joint)
        if not (isinstance(result, tuple) and len(result) == 5):
            raise self._step_result_error(result)
        observations, rewards, terminations, truncations, infos = result
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
            gi, j = self._slot_of(agent, i)
            self._reward[gi][i, j, 0] = _reward(reward, self.labels[agent])
        self._write_state(i)
        self._finish(i, any_truncated, anyone_alive)

    @staticmethod
    def _step_result_error(result) -> ConfigError:
        count = len(result) if isinstance(result, tuple) else None
        if count == 4:
            return ConfigError(
                "The parallel env's step() returned 4 values (observations, rewards, dones, infos): the API "
                "before PettingZoo 1.22. It must return 5: observations, rewards, terminations, truncations, "
                "infos, with `dones` split into terminations (the agent's episode ended) and truncations "
                "(it was cut short, e.g. by a time limit). In your own code, subclass the env with `def "
                "step(self, a): obs, rew, dones, infos = super().step(a); return obs, rew, dones, "
                "{k: False for k in dones}, infos` and point env.entry_point at it."
            )
        what = f"{count} values" if count is not None else f"a {type(result).__name__}"
        return ConfigError(
            f"The parallel env's step() returned {what}; it must return the tuple (observations, rewards, "
            f"terminations, truncations, infos), each a dict keyed by agent."
        )

    def _step_aec(self, i: int, actions: list) -> None:
        env = self.copies[i]
        env.step(self._action(actions, i, env.agent_selection))
        self._steps[i] += 1
        for agent in env.agents:
            gi, j = self._slot_of(agent, i)
            self._reward[gi][i, j, 0] = _reward(env.rewards.get(agent, 0.0), self.labels[agent])
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
    def _ended(env, agent) -> bool:
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
    def snapshot(self) -> dict:
        """The copies and buffers for an exact resume: pickled (checkpoints load with `weights_only`, so the
        env's state travels as bytes) and signed with this user's key (marl/trust.py), plus the seeds to
        restart the episodes from when the pickle cannot or may not be used. An env that cannot be pickled
        is saved without it (with a warning): a resumed run then starts new episodes."""
        seeds = [self._seed + 10_007 * (int(n) + 1) + i for i, n in enumerate(self._episodes)]
        state = {
            "copies": self.copies,
            "buffers": {name: getattr(self, name) for name in self._buffer_names},
            "steps": self._steps,
            "episodes": self._episodes,
            "done": self._done,
            "state": self._state,
            "seed_pending": self._seed_pending,
        }
        try:
            data = pickle.dumps(state)
        except Exception as error:  # noqa: BLE001 - any pickling failure means "not resumable exactly"
            warnings.warn(
                f"The PettingZoo env cannot be pickled ({type(error).__name__}: {error}); a resumed run will "
                f"start new episodes instead of continuing the interrupted ones.",
                stacklevel=2,
            )
            return {"pickle": None, "signature": None, "restart_seeds": seeds}
        return {"pickle": data, "signature": sign(data), "restart_seeds": seeds}

    _buffer_names = ("_obs", "_mask", "_reward", "_alive", "_acting", "_info")

    def restore(self, state: dict | bytes | None) -> None:
        """Continue from a `snapshot`. The pickled copies are only loaded when this user's key signed them
        (a run of their own) or when they trust everything (`--trust`, MARL_TRUST=1): unpickling runs code,
        and a run folder can come from anywhere. Otherwise (or when the env could not be pickled) the
        interrupted episodes end at the next step and new ones start from the recorded seeds."""
        if state is None:  # a checkpoint from before snapshots were dicts, of an env that could not pickle
            self._seed_pending = False
            self._reset()
            return
        if isinstance(state, (bytes, bytearray)):  # older checkpoints: unsigned bytes
            data, signature, seeds = bytes(state), None, None
        else:
            data, signature, seeds = state.get("pickle"), state.get("signature"), state.get("restart_seeds")
        if data is not None and verify(data, signature):
            self._load_pickled(data)
            return
        if data is not None:
            warnings.warn(
                "The checkpoint's PettingZoo env state is not signed by you (the run comes from elsewhere, "
                "or was saved before runs were signed), so it was not unpickled: unpickling can run any "
                "code. The interrupted episodes end now and new ones start from the seeds the checkpoint "
                "recorded. "
                "If you trust this run, resume it with --trust (or MARL_TRUST=1) to continue them exactly.",
                stacklevel=2,
            )
        self._restart(seeds)

    def _load_pickled(self, data: bytes) -> None:
        saved = pickle.loads(data)
        self.copies = saved["copies"]
        for name in self._buffer_names:  # (a snapshot from before info_keys has no "_info": keep ours)
            setattr(self, name, saved["buffers"].get(name, getattr(self, name)))
        self._steps, self._done, self._state = saved["steps"], saved["done"], saved["state"]
        self._episodes = saved.get("episodes", self._episodes)
        self._seed_pending = saved["seed_pending"]
        self._restart_seeds, self._restart_pending = None, False

    def _restart(self, seeds: list[int] | None) -> None:
        n = len(self.copies)
        if not seeds or len(seeds) != n:
            seeds = [self._seed + 10_007 * (int(k) + 1) + i for i, k in enumerate(self._episodes)]
        self._restart_seeds, self._restart_pending = [int(s) for s in seeds], True

    def _end_interrupted_episodes(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The first step after a restore that could not continue the saved episodes: every copy reports
        its episode truncated here, with no reward and the observation it was given unchanged, so the
        collector closes the interrupted episodes cleanly and resets every copy (from the restart seeds)."""
        self._restart_pending = False
        for gi, g in enumerate(self.description.groups):
            for key, buffer in (
                ("observation", self._obs[gi]),
                ("alive", self._alive[gi]),
                ("action_mask", self._mask[gi]),
                ("acting", self._acting[gi]),
            ):
                value = tensordict.get((g.name, key), None)
                if buffer is not None and value is not None:
                    buffer[:] = value.detach().cpu().numpy()
            self._reward[gi][:] = 0.0
        if self._state is not None and tensordict.get("state", None) is not None:
            self._state[:] = tensordict["state"].detach().cpu().numpy()
        self._done[:] = (True, False, True)
        return self._output(with_reward=True)

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self.copies:
            with contextlib.suppress(Exception):  # closing must not mask the real error
                env.close()
        super().close(raise_if_closed=raise_if_closed)

"""Environment factory: config -> batched TorchRL env, plus a plain description of its agent groups.

The engine (`marl/`) never looks inside an environment: it reads the `EnvInfo` built here (groups, agent
counts, observation sizes, action spaces) and exchanges TensorDicts with TorchRL's multi-agent key layout,
`(group, "observation")`, `(group, "action")`, `(group, "reward")`, with `done`/`terminated` at the root.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from dataclasses import dataclass, field

import torch
from marl.envs.spaces import ImageField
from torchrl.envs import EnvBase

from marl.errors import ConfigError

VMAS_PREFIX = "vmas/"
NATIVE_PREFIX = "native/"
PETTINGZOO = "pettingzoo"


@dataclass(frozen=True)
class GroupInfo:
    """One group of agents that share observation and action spaces (TorchRL's notion of a group)."""

    name: str
    agent_names: tuple[str, ...]
    obs_dim: int
    discrete: bool
    action_dim: int  # continuous: action dimensions; discrete: number of choices
    action_low: torch.Tensor | None = None  # continuous bounds, [action_dim]
    action_high: torch.Tensor | None = None
    action_nvec: tuple[int, ...] | None = None  # multi-discrete: choices per sub-action (sum = action_dim)
    images: tuple[ImageField, ...] = ()  # slices of the observation that are images (envs/spaces.py)

    @property
    def n_agents(self) -> int:
        return len(self.agent_names)


@dataclass(frozen=True)
class EnvInfo:
    """What the learner needs to know about an environment, independent of where it came from."""

    name: str
    num_envs: int
    max_steps: int
    groups: tuple[GroupInfo, ...]
    state_dim: int | None = None  # size of a global state, if the env provides one
    kwargs: dict = field(default_factory=dict)

    @property
    def n_agents(self) -> int:
        return sum(g.n_agents for g in self.groups)

    @property
    def agent_names(self) -> list[str]:
        return [name for g in self.groups for name in g.agent_names]


def make_env(
    env_cfg,
    device: torch.device | str,
    seed: int,
    num_envs: int | None = None,
    global_state: bool = True,
) -> EnvBase:
    """Build the batched TorchRL env described by `env_cfg` (an `EnvConfig`).

    `num_envs` overrides the configured batch size (evaluation uses its own). `global_state=False` skips
    computing a PettingZoo env's `state()` every step when nothing reads it (see `needs_global_state`).
    """
    if env_cfg.name == PETTINGZOO:
        from marl.envs.pettingzoo_env import BatchedPettingZooEnv, load_factory

        return BatchedPettingZooEnv(
            load_factory(env_cfg.entry_point),
            env_cfg.kwargs,
            num_envs=num_envs or env_cfg.num_envs,
            max_steps=env_cfg.max_steps,
            seed=seed,
            device=device,
            groups=env_cfg.groups,
            global_state=global_state,
            info_keys=env_cfg.info_keys,
        )
    if env_cfg.name.startswith(NATIVE_PREFIX):
        return _make_native(env_cfg, device, seed, num_envs or env_cfg.num_envs)
    if not env_cfg.name.startswith(VMAS_PREFIX):
        raise ConfigError(
            f"Unknown environment family in env.name={env_cfg.name!r}. Environments are named "
            f"'vmas/<scenario>' (for example env=vmas/navigation), 'native/<name>' (env=native/cooking) or "
            f"'pettingzoo' (env=pettingzoo env.entry_point=package.module:factory). Fix env.name or pick a "
            f"preset (marl config show lists the resolved config)."
        )
    return _make_vmas(env_cfg, device, seed, num_envs or env_cfg.num_envs)


def needs_global_state(cfg) -> bool:
    """Only a MAPPO critic with `algorithm.critic_input=state` reads the env's global state."""
    return cfg.algorithm.name == "mappo" and cfg.algorithm.critic_input == "state"


def _make_native(env_cfg, device, seed: int, num_envs: int) -> EnvBase:
    """`native/<name>`: one of our batched torch envs (envs/native/), scenario kwargs checked by name."""
    from marl.envs.native import NATIVE_ENVS

    name = env_cfg.name[len(NATIVE_PREFIX) :]
    if name not in NATIVE_ENVS:
        close = difflib.get_close_matches(name, NATIVE_ENVS, n=1)
        hint = f" Did you mean 'native/{close[0]}'?" if close else ""
        raise ConfigError(
            f"There is no native env {name!r} (from env.name={env_cfg.name!r}).{hint} "
            f"Available: {', '.join(NATIVE_PREFIX + n for n in NATIVE_ENVS)}."
        )
    if env_cfg.continuous_actions:
        raise ConfigError(
            f"{env_cfg.name} has discrete actions only, but env.continuous_actions=true. Set "
            f"env.continuous_actions=false (the preset env={env_cfg.name} does)."
        )
    env_class = NATIVE_ENVS[name]
    settings = {"num_envs", "max_steps", "device", "seed"}
    accepted = [p for p in inspect.signature(env_class.__init__).parameters if p not in {"self", *settings}]
    unknown = [key for key in env_cfg.kwargs if key not in accepted]
    if unknown:
        close = [m for key in unknown for m in difflib.get_close_matches(key, accepted, n=1)]
        hint = f" Did you mean {', '.join('env.' + m for m in close)}?" if close else ""
        raise ConfigError(
            f"{env_cfg.name} has no argument {', '.join('env.' + k for k in unknown)}.{hint} It accepts: "
            f"{', '.join(accepted)} (see the docstring of envs/native/{name}.py)."
        )
    return env_class(
        num_envs=num_envs, max_steps=env_cfg.max_steps, device=device, seed=seed, **env_cfg.kwargs
    )


def vmas_scenarios() -> list[str]:
    """Every scenario VMAS ships (its main, MPE and debug sets), then ours (envs/scenarios/)."""
    import vmas
    from marl.envs.scenarios import SCENARIOS

    names = [*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios]
    return [*dict.fromkeys([*names, *SCENARIOS])]


def _make_vmas(env_cfg, device, seed: int, num_envs: int) -> EnvBase:
    from marl.envs.scenarios import SCENARIOS
    from torchrl.envs.libs.vmas import VmasEnv

    scenario = env_cfg.name[len(VMAS_PREFIX) :]
    family, _, short = scenario.rpartition("/")
    if family in ("mpe", "debug"):  # vmas/mpe/simple_spread names the same scenario as vmas/simple_spread
        scenario = short
    available = vmas_scenarios()
    if scenario not in available:
        close = difflib.get_close_matches(scenario, available, n=1)
        hint = f" Did you mean 'vmas/{close[0]}'?" if close else ""
        raise ConfigError(
            f"VMAS has no scenario {scenario!r} (from env.name={env_cfg.name!r}).{hint} "
            f"Available scenarios: {', '.join(available)}."
        )

    def build_env(n: int, group_map=None) -> EnvBase:
        return VmasEnv(
            SCENARIOS[scenario]() if scenario in SCENARIOS else scenario,
            num_envs=n,
            continuous_actions=env_cfg.continuous_actions,
            categorical_actions=True,
            max_steps=env_cfg.max_steps,
            device=str(device),
            seed=seed,
            group_map=group_map,
            **env_cfg.kwargs,
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group_map = None
        if env_cfg.groups:  # agent names are known once the scenario is built: build a one-env copy first
            probe = build_env(1)
            names = [a.name for a in probe.agents]
            probe.close()
            group_map = vmas_group_map(env_cfg.groups, names, env_cfg.name)
        env = build_env(num_envs, group_map)
        if group_map is None and env.het_specs:  # agents with different spaces in one group: split it
            group_map = group_by_space(env)
            env.close()
            env = build_env(num_envs, group_map)
    for warning in caught:
        if "passed but not used by the scenario" in str(warning.message):
            env.close()
            raise ConfigError(
                f"VMAS scenario {scenario!r} does not use these env keys: "
                f"{str(warning.message).split(':', 1)[1]}"
                f" They were taken as scenario arguments because they are not env settings "
                f"(env settings are: name, num_envs, max_steps, continuous_actions, device). Check the "
                f"spelling against the scenario's make_world arguments in "
                f"{'envs' if scenario in SCENARIOS else 'vmas'}/scenarios/{scenario}.py."
            )
    return env


def vmas_group_map(groups: dict[str, list], agent_names: list[str], env_name: str) -> dict[str, list[str]]:
    """`env.groups` ({group: [agent names or indices]}) as a VMAS group map; every agent in exactly one."""
    group_map, seen = {}, []
    for group, members in groups.items():
        resolved = []
        for member in members:
            if isinstance(member, int) and 0 <= member < len(agent_names):
                member = agent_names[member]
            if member not in agent_names:
                raise ConfigError(
                    f"env.groups.{group} lists {member!r}, which is not an agent of {env_name}; its agents "
                    f"are {', '.join(agent_names)} (or their indices 0..{len(agent_names) - 1})."
                )
            resolved.append(member)
        group_map[group] = resolved
        seen += resolved
    if sorted(seen) != sorted(agent_names):
        missing = [a for a in agent_names if a not in seen]
        twice = sorted({a for a in seen if seen.count(a) > 1})
        raise ConfigError(
            f"env.groups must put every agent of {env_name} in exactly one group; "
            f"missing: {missing or 'none'}, in several groups: {twice or 'none'}."
        )
    return group_map


def group_by_space(env) -> dict[str, list[str]]:
    """A VMAS env's agents grouped as the PettingZoo adapter groups them: by name prefix, then by identical
    observation and action spaces (TorchRL's default puts agents with different spaces in one group)."""
    from marl.envs.pettingzoo_env import default_groups

    world = env._env  # the VMAS environment inside TorchRL's wrapper
    agents = [agent.name for agent in world.agents]
    observation_spaces, action_spaces = world.observation_space, world.action_space
    spaces = {a: (repr(observation_spaces[i]), repr(action_spaces[i])) for i, a in enumerate(agents)}
    groups, _ = default_groups(agents, {a: a for a in agents}, spaces.__getitem__)
    return groups


def describe_env(env: EnvBase, name: str, max_steps: int, kwargs: dict | None = None) -> EnvInfo:
    """Read groups, observation sizes and action spaces off a TorchRL multi-agent env's specs."""
    groups = []
    for group, agent_names in env.group_map.items():
        obs_spec = env.full_observation_spec[group, "observation"]
        if len(obs_spec.shape) != len(env.batch_size) + 2:
            raise ConfigError(
                f"Group {group!r} has observation shape {tuple(obs_spec.shape)}; the platform expects flat "
                f"vector observations [envs, agents, features]. Flatten the observation in the scenario."
            )
        action_spec = env.full_action_spec[group, "action"]
        discrete = action_spec.domain == "discrete"
        nvec = None
        if discrete and hasattr(action_spec, "nvec"):  # multi-discrete: one categorical per entry
            nvec = tuple(int(n) for n in action_spec.nvec.reshape(-1, action_spec.shape[-1])[0])
            action_dim, low, high = sum(nvec), None, None
        elif discrete:
            action_dim, low, high = int(action_spec.space.n), None, None
        else:
            action_dim = int(action_spec.shape[-1])
            low = action_spec.space.low.reshape(-1, action_dim)[0].clone()
            high = action_spec.space.high.reshape(-1, action_dim)[0].clone()
        groups.append(
            GroupInfo(
                name=group,
                agent_names=tuple(agent_names),
                obs_dim=int(obs_spec.shape[-1]),
                discrete=discrete,
                action_dim=action_dim,
                action_low=low,
                action_high=high,
                action_nvec=nvec,
                images=tuple(getattr(env, "image_fields", {}).get(group, ())),
            )
        )
    state_dim = None
    if "state" in env.full_observation_spec:
        state_dim = int(env.full_observation_spec["state"].shape[-1])
    return EnvInfo(
        name=name,
        num_envs=int(env.batch_size[0]),
        max_steps=max_steps,
        groups=tuple(groups),
        state_dim=state_dim,
        kwargs=dict(kwargs or {}),
    )


def agent_positions(env: EnvBase, env_info: EnvInfo) -> torch.Tensor | None:
    """Positions of all agents `[num_envs, n_agents, dim]` in `env_info.agent_names` order, or None when
    the environment has no notion of position (used for where-agents-spend-their-time metrics)."""
    world_agents = getattr(getattr(env, "_env", None), "agents", None)  # VMAS: the simulator's agents
    if not world_agents:
        return None
    by_name = {agent.name: agent for agent in world_agents}
    if any(name not in by_name for name in env_info.agent_names):
        return None
    return torch.stack([by_name[name].state.pos.clone() for name in env_info.agent_names], dim=1)

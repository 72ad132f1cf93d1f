"""Environment factory: VMAS scenarios by name, spec description, clear errors."""

import pytest
import torch
from marl.envs.factory import describe_env, make_env

from marl.config import load_config
from marl.errors import ConfigError


def _env_cfg(*overrides):
    return load_config(list(overrides)).env


def test_continuous_navigation_is_described_from_specs():
    cfg = _env_cfg("env.num_envs=4", "env.n_agents=3")
    env = make_env(cfg, "cpu", seed=0)
    info = describe_env(env, cfg.name, cfg.max_steps)
    (group,) = info.groups
    assert (info.num_envs, info.n_agents, group.discrete, group.action_dim) == (4, 3, False, 2)
    assert group.obs_dim == env.reset()["agents", "observation"].shape[-1]
    assert torch.all(group.action_high > 0) and torch.all(group.action_low == -group.action_high)


def test_discrete_dispersion_uses_categorical_actions():
    cfg = _env_cfg("env=vmas/dispersion", "env.num_envs=2")
    info = describe_env(make_env(cfg, "cpu", seed=0), cfg.name, cfg.max_steps)
    assert info.groups[0].discrete and info.groups[0].action_dim == 9 and info.n_agents == 4


def test_unknown_scenario_suggests_the_closest():
    cfg = _env_cfg()
    cfg.name = "vmas/dispersal"
    with pytest.raises(ConfigError, match="vmas/dispersion"):
        make_env(cfg, "cpu", seed=0)


def test_unused_scenario_kwarg_is_rejected():
    cfg = _env_cfg("env.num_envs=2", "env.n_agent=3")
    with pytest.raises(ConfigError, match="n_agent"):
        make_env(cfg, "cpu", seed=0)

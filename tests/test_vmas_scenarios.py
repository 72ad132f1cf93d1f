"""Every scenario VMAS ships trains by name (`env=vmas/<scenario>`), heterogeneous teams included.

The scenario list comes from VMAS itself (its main, MPE and debug sets); each trains for one tiny
iteration with continuous actions (about 25 s for all of them on 2 CPUs, so they stay in the default run),
and the scenarios whose agents have different observation and action spaces also with discrete actions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import vmas
from marl.envs.scenarios import SCENARIOS
from vmas.simulator.core import Agent, World
from vmas.simulator.scenario import BaseScenario

from marl.config import load_config
from marl.errors import ConfigError
from marl.training import build_trainer, train_iteration

pytestmark = pytest.mark.usefixtures("one_thread")

ALL = [*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios]
FAST = ["simple_crypto", "simple_world_comm", "kinematic_bicycle", "simple_speaker_listener", "balance"]


def _one_iteration(scenario: str, *overrides) -> tuple[list[str], dict]:
    cfg = load_config(
        [
            f"env=vmas/{scenario}",
            "env.num_envs=2",
            "env.max_steps=10",
            "experiment.frames_per_batch=20",
            "algorithm.minibatch_size=10",
            "algorithm.epochs=1",
            "model.hidden_sizes=[16]",
            "experiment.progress=false",
            *overrides,
        ]
    )
    trainer = build_trainer(cfg)
    metrics = train_iteration(trainer)
    assert all(np.isfinite(v) for k, v in metrics.items() if "loss" in k), metrics
    return [g.name for g in trainer.env_info.groups], metrics


def test_the_fast_subset_is_shipped_by_vmas():
    assert set(FAST) <= set(ALL) and len(ALL) > 21


@pytest.mark.parametrize("scenario", ALL)
def test_every_vmas_scenario_trains_by_name(scenario):
    assert _one_iteration(scenario)[0]


@pytest.mark.parametrize("scenario", FAST)
def test_heterogeneous_vmas_scenarios_train_with_discrete_actions(scenario):
    assert _one_iteration(scenario, "env.continuous_actions=false")[0]


def test_mpe_and_debug_prefixes_name_the_same_scenarios():
    assert _one_iteration("mpe/simple_crypto")[0] == ["eve", "bob", "alice"]
    assert _one_iteration("debug/diff_drive")[0] == ["diff_drive", "holo_rot"]
    with pytest.raises(ConfigError, match="Did you mean 'vmas/simple_spread'"):
        build_trainer(load_config(["env=vmas/simple_spred", "experiment.progress=false"]))


class Mixed(BaseScenario):
    """Two agents whose names share no numbered prefix (TorchRL puts them in one group) but whose
    observations differ in size: a fast one sees its position, a slow one also its velocity."""

    def make_world(self, batch_dim, device, **kwargs):
        world = World(batch_dim, device)
        for name in ("fast", "slow"):
            world.add_agent(Agent(name=name))
        return world

    def reset_world_at(self, env_index=None):
        for agent in self.world.agents:
            agent.set_pos(torch.zeros(self.world.batch_dim, 2), batch_index=env_index)

    def observation(self, agent):
        pos = agent.state.pos
        return pos if agent.name == "fast" else torch.cat([pos, agent.state.vel], -1)

    def reward(self, agent):
        return -agent.state.pos.norm(dim=-1)


def test_agents_with_different_spaces_are_split_into_groups(monkeypatch):
    monkeypatch.setitem(SCENARIOS, "mixed_probe", Mixed)
    groups, _ = _one_iteration("mixed_probe")
    assert groups == ["fast", "slow"]
    groups, _ = _one_iteration("mixed_probe", "env.groups={a: [fast], b: [slow]}")
    assert groups == ["a", "b"]

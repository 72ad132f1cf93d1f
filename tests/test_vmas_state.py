"""Exact snapshot / restore of VMAS environments (envs/vmas_state.py)."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from marl.envs.vmas_state import get_env_state, isolated_vmas_rng, set_env_state
from tensordict import TensorDictBase
from torchrl.envs.libs.vmas import VmasEnv

warnings.filterwarnings("ignore", module="vmas")

NUM_ENVS = 8
MAX_STEPS = 10  # short horizon: the 20 replayed steps cross auto-resets
WARMUP_STEPS = 7
REPLAY_STEPS = 20

SCENARIOS = {
    "navigation": dict(continuous_actions=True, n_agents=3),
    "dispersion": dict(continuous_actions=False, categorical_actions=True, n_agents=4, n_food=4),
    "balance": dict(continuous_actions=True),
}


def make_env(scenario: str) -> VmasEnv:
    return VmasEnv(
        scenario, num_envs=NUM_ENVS, max_steps=MAX_STEPS, device="cpu", seed=0, **SCENARIOS[scenario]
    )


def random_actions(env: VmasEnv, n: int) -> list[torch.Tensor]:
    return [env.full_action_spec["agents", "action"].rand() for _ in range(n)]


def rollout(env: VmasEnv, td: TensorDictBase, actions: list[torch.Tensor]) -> list[TensorDictBase]:
    """Step with auto-reset; record each transition and the (possibly reset) next input."""
    records = []
    for action in actions:
        td = td.clone()
        td["agents", "action"] = action
        td_out, td = env.step_and_maybe_reset(td)
        records += [td_out["next"].clone(), td.clone()]
    return records


def assert_identical(expected: list[TensorDictBase], actual: list[TensorDictBase]) -> None:
    assert len(expected) == len(actual)
    for step, (a, b) in enumerate(zip(expected, actual)):
        assert set(a.keys(True, True)) == set(b.keys(True, True))
        for key in a.keys(True, True):
            assert torch.equal(a[key], b[key]), f"record {step}: {key} differs"


def warm_up(scenario: str):
    """Env A after WARMUP_STEPS random steps, its snapshot, RNG state, last td and the replay actions."""
    torch.manual_seed(0)
    env = make_env(scenario)
    td = rollout(env, env.reset(), random_actions(env, WARMUP_STEPS))[-1]
    state, rng = get_env_state(env), torch.get_rng_state()
    replay = random_actions(env, REPLAY_STEPS)
    return env, state, rng, td, replay


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_restore_into_fresh_env_is_bit_identical(scenario):
    env_a, state, rng, td, replay = warm_up(scenario)
    expected = rollout(env_a, td, replay)
    assert any(r["done"].any() for r in expected[::2]), "replay should cross an auto-reset"

    env_b = make_env(scenario)
    env_b.reset()
    set_env_state(env_b, state)
    torch.set_rng_state(rng)
    assert_identical(expected, rollout(env_b, td, replay))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_restore_after_torch_save_load_weights_only(scenario):
    env_a, state, rng, td, replay = warm_up(scenario)
    expected = rollout(env_a, td, replay)

    buffer = io.BytesIO()
    torch.save({"env": state, "rng": rng}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)

    env_b = make_env(scenario)
    set_env_state(env_b, loaded["env"])
    torch.set_rng_state(loaded["rng"])
    assert_identical(expected, rollout(env_b, td, replay))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_restore_into_same_env_after_it_advanced(scenario):
    env_a, state, rng, td, replay = warm_up(scenario)
    expected = rollout(env_a, td, replay)

    set_env_state(env_a, state)
    torch.set_rng_state(rng)
    assert_identical(expected, rollout(env_a, td, replay))
    # the snapshot is not consumed: restoring twice works
    set_env_state(env_a, state)
    assert_identical(expected, rollout(env_a, td, replay))


def test_snapshot_is_cloned_and_has_step_counter():
    env, state, _, td, replay = warm_up("navigation")
    before = [s["bytes"].clone() for s in state["storages"]]
    rollout(env, td, replay[:3])
    assert all(torch.equal(a, s["bytes"]) for a, s in zip(before, state["storages"]))
    assert ["steps"] in [path for kind, path, _ in state["slots"] if kind == "tensor"]
    assert set(state["vmas_rng"]) == {"torch", "numpy", "python"}


def test_isolated_vmas_rng_shields_the_shared_vmas_rng():
    """vmas envs share one private RNG: building / stepping another env inside the block leaves it as is."""
    env_a, _, rng, td, replay = warm_up("navigation")
    state = get_env_state(env_a)
    expected = rollout(env_a, td, replay)

    set_env_state(env_a, state)
    with isolated_vmas_rng():
        other = VmasEnv("dispersion", num_envs=2, device="cpu", seed=123)
        rollout(other, other.reset(), random_actions(other, 12))
    torch.set_rng_state(rng)
    assert_identical(expected, rollout(env_a, td, replay))


def make_reference_env() -> VmasEnv:
    return VmasEnv("simple_reference", num_envs=4, max_steps=3, device="cpu", seed=0)


def goal_index(env: VmasEnv) -> int:
    world = env._env.world
    return world.landmarks.index(world.agents[0].goal_b)


def shares_memory(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()


def test_aliasing_and_object_references_are_restored():
    """simple_reference: after a step agent.state.c *is* agent.action.c and state.force is a view of
    action.u; agent.goal_b is a landmark redrawn at every full reset."""
    torch.manual_seed(0)
    fresh_goal = goal_index(make_reference_env())
    env_a = make_reference_env()
    td = env_a.reset()
    while goal_index(env_a) == fresh_goal:
        td = rollout(env_a, td, random_actions(env_a, 3))[-1]  # max_steps=3: ends with a full reset
    rollout(env_a, td, random_actions(env_a, 1))  # one step into the episode: creates the aliases

    env_b = make_reference_env()
    set_env_state(env_b, get_env_state(env_a))
    assert goal_index(env_b) == goal_index(env_a) != fresh_goal
    for agent in env_b._env.agents:
        assert agent.state.c is agent.action.c
        assert shares_memory(agent.state.force, agent.action.u)


def test_rejects_other_objects_and_versions():
    with pytest.raises(TypeError):
        get_env_state(object())
    env = make_env("navigation")
    state = get_env_state(env)
    with pytest.raises(ValueError, match="version"):
        set_env_state(env, {**state, "version": 999})
    with pytest.raises(ValueError, match="num_envs"):
        set_env_state(VmasEnv("navigation", num_envs=2, device="cpu", seed=0), state)

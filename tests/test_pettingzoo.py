"""PettingZoo adapter: parallel and AEC envs, masks, heterogeneous groups, agents that leave, errors."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from marl.envs.check import check_env
from marl.envs.factory import describe_env
from marl.envs.pettingzoo_env import BatchedPettingZooEnv, load_factory
from marl.envs.spaces import flatten_into, observation_layout

from marl.cli import main
from marl.config import load_config
from marl.errors import ConfigError
from marl.ppo import _minibatch_loss, compute_advantages, ppo_update
from marl.run_logger import read_metrics
from marl.training import build_trainer, train, train_iteration
from tests.helpers import pettingzoo_config, without_timing

SPREAD = "mpe2.simple_spread_v3:parallel_env"
HETERO = "pz_envs:hetero_team"


def _cfg(tmp_path, entry_point, *overrides):
    return pettingzoo_config(tmp_path, entry_point, *overrides)


def _small(frames_per_batch=400, envs=4, total=800):
    return [
        f"experiment.frames_per_batch={frames_per_batch}",
        f"experiment.total_frames={total}",
        f"env.num_envs={envs}",
        f"algorithm.minibatch_size={frames_per_batch // 2}",
        "algorithm.epochs=2",
        "model.hidden_sizes=[32]",
    ]


@pytest.mark.parametrize("continuous", [False, True])
def test_simple_spread_batches_have_platform_layout(continuous):
    env = BatchedPettingZooEnv(load_factory(SPREAD), {"continuous_actions": continuous}, num_envs=3, seed=0)
    info = describe_env(env, "pettingzoo", 100)
    (group,) = info.groups
    assert group.name == "agent" and group.n_agents == 3 and group.obs_dim == 18
    assert group.discrete is not continuous and group.action_dim == 5
    assert info.state_dim == 54
    td = env.reset()
    assert td["agent", "observation"].shape == (3, 3, 18) and td["state"].shape == (3, 54)
    td = env.rand_action(td)
    td, _ = env.step_and_maybe_reset(td)
    assert td["next", "agent", "reward"].shape == (3, 3, 1)
    assert td["next", "agent", "alive"].all() and not td["next", "done"].any()


def test_copies_are_seeded_apart_and_reproducibly():
    factory = load_factory(SPREAD)
    first = BatchedPettingZooEnv(factory, num_envs=2, seed=5).reset()["agent", "observation"]
    again = BatchedPettingZooEnv(factory, num_envs=2, seed=5).reset()["agent", "observation"]
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])


def test_simple_spread_mappo_improves_return_with_fixed_seed(tmp_path):
    cfg = _cfg(
        tmp_path,
        SPREAD,
        "algorithm=mappo",
        "experiment.seed=0",
        "experiment.total_frames=40000",
        "experiment.frames_per_batch=2000",
        "env.num_envs=16",
        "env.max_steps=25",
        "algorithm.minibatch_size=500",
        "algorithm.epochs=5",
        "algorithm.lr=1e-3",
        "model.hidden_sizes=[64,64]",
    )
    returns = [row["train/return_mean"] for row in read_metrics(train(cfg))]
    assert np.mean(returns[-4:]) > np.mean(returns[:2]) + 2.0, returns


def test_simple_spread_mappo_with_global_state_trains(tmp_path):
    cfg = _cfg(tmp_path, SPREAD, "algorithm=mappo", "algorithm.critic_input=state", *_small())
    trainer = build_trainer(cfg)
    assert trainer.env_info.state_dim == 54
    metrics = train_iteration(trainer)
    assert np.isfinite(metrics["train/value_loss"])


def test_aec_game_never_takes_a_masked_action(tmp_path):
    """connect_four (AEC, masks in the observation dict): only the player to move acts, legally."""
    cfg = _cfg(tmp_path, "pettingzoo.classic.connect_four_v3:env", *_small(frames_per_batch=256, envs=4))
    trainer = build_trainer(cfg)
    for _ in range(2):
        batch, _ = trainer.collect()
        acting, mask = batch["player", "acting"], batch["player", "action_mask"]
        chosen = mask.gather(-1, batch["player", "action"].unsqueeze(-1)).squeeze(-1)
        assert acting.sum(-1).le(1).all()  # at most one player moves per step
        assert acting.any()
        assert chosen[acting].all()
        compute_advantages(batch, trainer.model, 0.99, 0.95)
        stats = ppo_update(batch, trainer.model, trainer.optimizer, cfg.algorithm)
        assert np.isfinite(stats["policy_loss"])


def test_aec_rewards_reach_every_player_and_masks_hold(tmp_path):
    cfg = _cfg(tmp_path, "pz_envs:TakeTurns", *_small(frames_per_batch=200, envs=4))
    trainer = build_trainer(cfg)
    batch, episodes = trainer.collect()
    assert all(e.masked_actions_taken == 0 for e in trainer.collector.env.copies)
    rewards = batch["next", "agents", "reward"].squeeze(-1)
    assert torch.equal(rewards.sum(-1), torch.zeros_like(rewards.sum(-1)))  # zero-sum rounds, paid to both
    assert episodes["agents/return"].abs().sum() > 0


def test_heterogeneous_team_groups_by_space_and_trains(tmp_path):
    cfg = _cfg(tmp_path, HETERO, "algorithm=mappo", *_small())
    trainer = build_trainer(cfg)
    groups = {g.name: g for g in trainer.env_info.groups}
    assert list(groups) == ["scout", "carrier", "drone"]
    assert groups["scout"].n_agents == 2 and groups["scout"].action_dim == 3
    assert (
        groups["carrier"].obs_dim == 5 and not groups["carrier"].discrete
    )  # Dict{load: one-hot 3, target: 2}
    assert groups["drone"].action_nvec == (2, 2)
    for _ in range(2):
        metrics = train_iteration(trainer)
    assert all(np.isfinite(v) for k, v in metrics.items() if "loss" in k)
    assert all(e.masked_actions_taken == 0 for e in trainer.collector.env.copies)


def test_agent_that_leaves_keeps_its_slot_and_is_masked(tmp_path):
    cfg = _cfg(tmp_path, HETERO, "env.kwargs.leave_at=3", "env.kwargs.episode_length=6", *_small(envs=2))
    trainer = build_trainer(cfg)
    batch, _ = trainer.collect()
    alive = batch["scout", "alive"]  # [E, T, 2]
    assert alive[:, :3, 1].all() and not alive[:, 3:6, 1].any()  # scout_1 gone after its 3rd step
    assert alive[:, :6, 0].all()
    dead = ~alive
    assert (batch["scout", "observation"][:, 4:6, 1] == 0).all()  # after its final observation: zeros
    assert (batch["next", "scout", "reward"][dead] == 0).all()
    assert batch["scout", "observation"].shape[:3] == alive.shape  # fixed shape throughout


def test_dead_agent_steps_do_not_change_the_loss(tmp_path):
    """Corrupting everything a left agent 'observes' after leaving changes neither its advantages at live
    steps nor the PPO loss. (IPPO: a MAPPO critic legitimately reads the zeros a left agent contributes to
    the joint observation.)"""
    cfg = _cfg(
        tmp_path,
        HETERO,
        "algorithm=ippo",
        "env.kwargs.leave_at=3",
        "env.kwargs.episode_length=8",
        *_small(envs=2),
    )
    trainer = build_trainer(cfg)
    batch, _ = trainer.collect()
    corrupted = batch.clone()
    dead = ~batch["scout", "alive"]
    next_dead = ~batch["next", "scout", "alive"] & dead
    corrupted["scout", "observation"][dead] = 100.0
    corrupted["next", "scout", "observation"][next_dead] = -100.0
    corrupted["scout", "sample"][dead] = 2
    corrupted["scout", "log_prob"][dead] = -50.0
    for b in (batch, corrupted):
        compute_advantages(b, trainer.model, 0.99, 0.95)
    alive = ~dead
    assert torch.allclose(batch["scout", "advantage"][alive], corrupted["scout", "advantage"][alive])

    def loss(b):
        flat = b.reshape(-1)
        inputs = trainer.model.critic_inputs(flat)
        data = {
            name: {
                "obs": flat[name, "observation"],
                "sample": flat[name, "sample"],
                "log_prob": flat[name, "log_prob"],
                "advantage": flat[name, "advantage"],
                "target": flat[name, "value_target"],
                "critic_input": inputs[name],
                "mask": flat.get((name, "action_mask"), None),
                "acting": flat.get((name, "alive"), None),
                "alive": flat.get((name, "alive"), None),
            }
            for name in trainer.model.group_names
        }
        for d in data.values():  # dead steps' targets and advantages are garbage by construction
            if d["alive"] is not None:
                d["advantage"] = torch.where(d["alive"], d["advantage"], torch.full_like(d["advantage"], 7.0))
                d["target"] = torch.where(d["alive"], d["target"], torch.full_like(d["target"], 7.0))
        return _minibatch_loss(trainer.model, data, cfg.algorithm)[0]

    assert torch.allclose(loss(batch), loss(corrupted))


def test_configured_groups_override_space_grouping(tmp_path):
    groups = "env.groups={lead: [scout_0], rest: [scout_1], carrier: [carrier], drone: [3]}"
    trainer = build_trainer(_cfg(tmp_path, HETERO, groups, *_small()))
    assert [g.name for g in trainer.env_info.groups] == ["lead", "rest", "carrier", "drone"]


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ("{team: [scout_0, carrier], others: [scout_1, drone]}", "spaces differ"),
        ("{scouts: [scout_0, scout_1], carrier: [carrier]}", "without a group"),
        ("{scouts: [scout_0, scout_9], carrier: [carrier], drone: [drone], x: [scout_1]}", "not an agent"),
    ],
)
def test_bad_groups_are_explained(tmp_path, groups, message):
    with pytest.raises(ConfigError, match=message):
        build_trainer(_cfg(tmp_path, HETERO, f"env.groups={groups}", *_small()))


def test_spaces_as_attributes_are_accepted():
    env = BatchedPettingZooEnv(load_factory("pz_envs:SpacesAsAttributes"), num_envs=2)
    assert [g.name for g in env.description.groups] == ["scout", "carrier", "drone"]


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("pz_envs", "not of the form"),
        ("no_such_module_xyz:make", "Cannot import 'no_such_module_xyz'"),
        ("pz_envs:missing_factory", "has no 'missing_factory'"),
        ("pz_envs:not_an_env", "not a PettingZoo env"),
        ("pz_envs:NoAgents", "possible_agents"),
        ("pz_envs:OldResetAPI", r"must return \(observations, infos\)"),
        ("pz_envs:TextObservation", "Agent 'drone' has an observation space of type Text"),
        ("pz_envs:UnboundedBoxAction", "Agent 'carrier' has an unbounded Box action space"),
    ],
)
def test_broken_envs_get_clear_errors(entry_point, message):
    with pytest.raises(ConfigError, match=message):
        BatchedPettingZooEnv(load_factory(entry_point), num_envs=1)


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("pz_envs:VectorReward", "Agent 'scout_0' received a reward of shape"),
        ("pz_envs:BadMaskSize", "Agent 'scout_0': its action_mask has 5 entries"),
    ],
)
def test_faults_found_while_stepping_are_clear(entry_point, message):
    env = BatchedPettingZooEnv(load_factory(entry_point), num_envs=1)
    with pytest.raises(ConfigError, match=message):
        td = env.rand_action(env.reset())
        env.step(td)


def test_pettingzoo_settings_need_env_pettingzoo():
    with pytest.raises(ConfigError, match="PettingZoo setting"):
        load_config([f"env.entry_point={SPREAD}"])
    with pytest.raises(ConfigError, match="env.entry_point"):
        build_trainer(load_config(["env=pettingzoo"]))


def test_flattening_records_layout_and_values():
    space = spaces.Dict(
        {
            "pos": spaces.Box(-1, 1, (2, 2)),
            "kind": spaces.Discrete(3, start=1),
            "flags": spaces.MultiBinary(2),
            "parts": spaces.Tuple((spaces.MultiDiscrete([2, 3]), spaces.Box(0, 1, (1,)))),
            "action_mask": spaces.MultiBinary(4),
        }
    )
    layout = observation_layout(space, "a")
    assert [f.path for f in layout.fields] == ["flags", "kind", "parts/0", "parts/1", "pos"]
    assert layout.size == 2 + 3 + 5 + 1 + 4 and layout.mask_in_observation
    out = np.zeros(layout.size, np.float32)
    value = {
        "pos": np.array([[1, 2], [3, 4]]),
        "kind": 2,
        "flags": np.array([1, 0]),
        "parts": (np.array([1, 2]), np.array([0.5])),
        "action_mask": np.ones(4),
    }
    flatten_into(value, layout, out)
    assert out.tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0.5, 1, 2, 3, 4]


def test_snapshot_and_restore_continue_exactly():
    factory = load_factory(HETERO)
    env = BatchedPettingZooEnv(factory, num_envs=2, seed=3)
    td = env.reset()
    actions = [env.rand_action(td.clone()) for _ in range(10)]
    for a in actions[:4]:
        _, td = env.step_and_maybe_reset(a)
    state = env.snapshot()
    tail = [env.step_and_maybe_reset(a.clone())[0] for a in actions[4:]]
    restored = BatchedPettingZooEnv(factory, num_envs=2, seed=99)
    restored.reset()
    restored.restore(state)
    again = [restored.step_and_maybe_reset(a.clone())[0] for a in actions[4:]]
    for x, y in zip(tail, again):
        assert torch.equal(x["next", "scout", "observation"], y["next", "scout", "observation"])
        assert torch.equal(x["next", "carrier", "reward"], y["next", "carrier", "reward"])


def test_check_env_reports_and_fails(capsys):
    assert main(["check-env", HETERO, "leave_at=3", "--steps", "20"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "group 'scout': scout_0, scout_1",
        "MultiDiscrete[2, 2]",
        "action_mask",
        "agent exits before the episode end",
        "[ok] pettingzoo api_test",
        "env.kwargs.leave_at=3",
    ):
        assert expected in out, out
    assert main(["check-env", "pz_envs:VectorReward", "--steps", "5"]) == 1
    assert "rewards must be scalars" in capsys.readouterr().out


def test_example_environment_passes_its_check():
    report = check_env("examples.custom_env:make_doors", steps=20)
    assert report.ok, report.format()


def test_stop_and_resume_equals_uninterrupted(tmp_path):
    overrides = [*_small(total=2000), "experiment.checkpoint_every=2"]
    full = train(_cfg(tmp_path / "full", HETERO, *overrides))
    part = train(_cfg(tmp_path / "part", HETERO, *overrides), stop_after=2)
    train(_cfg(tmp_path / "part", HETERO, *overrides), resume=part)

    assert without_timing(read_metrics(full)) == without_timing(read_metrics(part))

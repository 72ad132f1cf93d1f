"""Third-party envs onboard as they are: any agent ids, lazy or missing spaces, removed agents and state(),
faults named with agent and fix, competing teams, and what training shows about them (tests/pz_envs.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from marl.envs.check import check_env
from marl.envs.pettingzoo_env import BatchedPettingZooEnv, load_factory

from marl.cli import main
from marl.errors import ConfigError
from marl.run_logger import read_metrics
from marl.training import build_trainer, describe_run, run_name, train, train_iteration
from tests.helpers import pettingzoo_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(tmp_path, entry_point, *overrides):
    small = ["experiment.frames_per_batch=200", "experiment.total_frames=400", "env.num_envs=4"]
    small += ["algorithm.minibatch_size=100", "algorithm.epochs=2", "model.hidden_sizes=[32]"]
    return pettingzoo_config(tmp_path, entry_point, *small, *overrides)


# ------------------------------------------------------------------------------------------- agent ids
def test_integer_agent_ids_check_and_train(tmp_path):
    report = check_env("pz_envs:int_ids", steps=20)
    assert report.ok, report.format()
    text = report.format()
    assert "group 'agents': 0, 1" in text and "agent ids are int" in text
    trainer = build_trainer(_cfg(tmp_path, "pz_envs:int_ids"))
    assert trainer.env_info.groups[0].agent_names == ("0", "1")
    metrics = train_iteration(trainer)
    assert np.isfinite(metrics["train/policy_loss"]) and "train/return/0" in metrics


def test_tuple_agent_ids_group_by_their_team(tmp_path):
    env = BatchedPettingZooEnv(load_factory("pz_envs:tuple_ids"), num_envs=2)
    assert env.group_map == {"red": ["red_0", "red_1"], "blue": ["blue_0", "blue_1"]}
    assert env.description.grouping == "by name prefix, then by spaces"
    train_iteration(build_trainer(_cfg(tmp_path, "pz_envs:tuple_ids")))


def test_groups_of_integer_ids_in_training_and_check_env(tmp_path, capsys):
    trainer = build_trainer(_cfg(tmp_path, "pz_envs:int_ids", "env.groups={first: [0], second: [1]}"))
    assert [g.name for g in trainer.env_info.groups] == ["first", "second"]
    assert main(["check-env", "pz_envs:int_ids", "--steps", "5", "--groups", "{a: [0], b: [1]}"]) == 0
    out = capsys.readouterr().out
    assert "group 'a': 0" in out and "grouped by env.groups" in out
    assert 'env.groups={a: [0], b: [1]}"' in out  # the suggested command keeps them
    with pytest.raises(ConfigError, match="use letters"):
        BatchedPettingZooEnv(load_factory("pz_envs:int_ids"), groups={"state": [0], "b": [1]})


# ------------------------------------------------------------------------------------------------ spaces
def test_spaces_built_in_reset_are_read_after_it(tmp_path):
    report = check_env("pz_envs:LazySpaces", steps=10)
    assert report.ok, report.format()
    assert "exist only after reset()" in report.format()
    train_iteration(build_trainer(_cfg(tmp_path, "pz_envs:LazySpaces")))


def test_missing_observation_spaces_are_inferred_and_said(tmp_path):
    report = check_env("pz_envs:NoObservationSpaces", steps=10)
    assert report.ok, report.format()
    assert "[note] adapted: agent 0: no observation space" in report.format()
    assert "inferred Box(-inf, inf, (3,), float32)" in report.format()
    train_iteration(build_trainer(_cfg(tmp_path, "pz_envs:NoObservationSpaces")))


def test_missing_action_spaces_name_a_fix_in_user_code():
    report = check_env("pz_envs:NoActionSpaces", steps=5)
    assert not report.ok
    assert "Cannot read the action space of agent '0'" in report.format()
    assert "subclass the env and define `def action_space(self, agent)" in report.format()


# ---------------------------------------------------------------------------------------- state, removal
def test_state_is_read_only_while_the_episode_runs(tmp_path):
    report = check_env("pz_envs:StateWhileRunning", {"leave_at": 3}, steps=40)
    assert report.ok and "[warn] global state" not in report.format(), report.format()
    cfg = _cfg(tmp_path, "pz_envs:StateWhileRunning", "algorithm.critic_input=state")
    metrics = train_iteration(build_trainer(cfg))
    assert all(np.isfinite(v) for k, v in metrics.items() if k.endswith("value_loss"))


def test_state_that_fails_after_an_agent_left_is_explained(tmp_path):
    report = check_env("pz_envs:StateNeedsEveryone", {"leave_at": 3}, steps=20)
    text = report.format()
    assert report.ok, text  # training with the default critic input does not need state()
    assert "[warn] global state" in text and "algorithm.critic_input=observations" in text
    assert "after scout_1 left the episode" in text
    train_iteration(build_trainer(_cfg(tmp_path, "pz_envs:StateNeedsEveryone", "env.kwargs.leave_at=3")))
    cfg = _cfg(
        tmp_path, "pz_envs:StateNeedsEveryone", "env.kwargs.leave_at=3", "algorithm.critic_input=state"
    )
    with pytest.raises(ConfigError, match=r"state\(\) raised KeyError.*override state\(\)"):
        train_iteration(build_trainer(cfg))


def test_actions_go_only_to_live_agents():
    env = BatchedPettingZooEnv(load_factory("pz_envs:hetero_team"), {"leave_at": 2}, num_envs=1)
    sent = []
    original = env.copies[0].step
    env.copies[0].step = lambda actions: (sent.append(set(actions)), original(actions))[1]
    td = env.reset()
    for _ in range(4):
        td, _ = env.step_and_maybe_reset(env.rand_action(td))
        td = td["next"]
    assert sent[0] == {"scout_0", "scout_1", "carrier", "drone"} and "scout_1" not in sent[2]


# ---------------------------------------------------------------------------------------- faults, named
@pytest.mark.parametrize(
    ("entry_point", "expected"),
    [
        ("pz_envs:WrongObservationShape", ["Agent 'scout_0'", "has shape (5,)", "says (4,)"]),
        ("pz_envs:ImageTransposed", ["agent 'cam_0'", "expected shape (16, 16, 3), got (3, 16, 16)"]),
        ("pz_envs:Newcomer", ["Agent 'scout_2' appeared", "possible_agents"]),
        ("pz_envs:OldStepAPI", ["returned 4 values", "terminations", "truncations"]),
        ("pz_envs:NaNReward", ["Agent 'carrier' received a reward of nan", "np.nan_to_num"]),
        ("pz_envs:InfiniteObservation", ["Agent 'drone' got an observation with NaN or infinite values"]),
        (
            "pz_envs:factory_raises",
            ["RuntimeError: cannot open the simulator window", "pz_envs.py", "python -c"],
        ),
    ],
)
def test_check_env_names_the_agent_and_the_fix(entry_point, expected):
    report = check_env(entry_point, steps=10)  # never raises for the env's faults
    text = report.format()
    assert not report.ok and "fix the failures above" in text
    for part in expected:
        assert part in text, text


def test_factory_hint_lists_every_callable_the_module_defines():
    with pytest.raises(ConfigError) as info:
        load_factory("pz_envs:tuple_idz")
    message = str(info.value)
    assert "Did you mean pz_envs:tuple_ids?" in message
    for name in ("TugOfWar", "factory_raises", "int_ids", "tuple_ids", "hetero_team"):
        assert name in message


# --------------------------------------------------------------------------------------- competing teams
def test_competing_teams_get_their_own_groups_and_returns(tmp_path, capsys):
    assert main(["check-env", "pz_envs:TugOfWar", "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "group 'red': red_0, red_1" in out and "group 'blue': blue_0, blue_1" in out
    assert "grouped by name prefix, then by spaces" in out
    rows = read_metrics(train(_cfg(tmp_path, "pz_envs:TugOfWar")))
    last = rows[-1]
    assert {"train/group_return/red", "train/group_return/blue"} <= set(last)
    assert last["train/group_return/red"] == pytest.approx(-last["train/group_return/blue"])


def test_aec_players_without_numbers_still_share_a_group():
    env = BatchedPettingZooEnv(load_factory("pz_envs:TakeTurns"), num_envs=1)
    assert env.group_map == {"agents": ["first", "second"]}


# ------------------------------------------------------------------------------------ run bookkeeping
def test_run_header_name_and_failed_first_step(tmp_path):
    cfg = _cfg(tmp_path, "pz_envs:int_ids", "experiment.total_frames=500")
    trainer = build_trainer(cfg)
    header = describe_run(trainer, tmp_path)
    assert "600 frames (experiment.total_frames=500 rounded up to whole batches of 200)" in header
    assert run_name(cfg) == "pz_envs-int_ids"
    assert run_name(_cfg(tmp_path, "pz_envs:int_ids", "experiment.name=mine")) == "mine"
    broken = tmp_path / "broken"
    with pytest.raises(ConfigError, match="reward of nan"):
        train(_cfg(broken, "pz_envs:NaNReward"))
    assert not broken.exists() or not any(broken.iterdir())


def test_learnable_third_party_envs_improve(tmp_path):
    """Integer ids, inferred spaces: a short run beats random play (0.5 per step and agent)."""
    for entry_point in ("pz_envs:int_ids", "pz_envs:NoObservationSpaces"):
        cfg = _cfg(
            tmp_path / entry_point.split(":")[1],
            entry_point,
            "experiment.total_frames=4000",
            "experiment.frames_per_batch=400",
            "algorithm.minibatch_size=200",
            "algorithm.epochs=4",
            "algorithm.lr=3e-3",
        )
        returns = [r["train/return_mean"] for r in read_metrics(train(cfg))]
        assert np.mean(returns[-3:]) > np.mean(returns[:2]) + 1.0, returns


def test_observations_are_left_unscaled_for_vectors():
    env = BatchedPettingZooEnv(load_factory("pz_envs:int_ids"), num_envs=1)
    assert env.reset()["agents", "observation"].dtype == torch.float32

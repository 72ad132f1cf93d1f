"""Frozen partners in some seats (collector.frozen): who acts where, and what PPO trains on."""

import pytest
import torch

from marl.config import load_config
from marl.errors import ConfigError
from marl.optim import build_optimizer
from marl.ppo import compute_advantages, ppo_update
from marl.training import build_trainer, train

SMOKE = ["experiment=smoke", "experiment.progress=false", "experiment.eval_every=0", "metrics.every=0"]


@pytest.fixture(scope="module")
def partner_run(tmp_path_factory):
    """A short run whose actors become the frozen partner (independent nets: every seat its own)."""
    runs = tmp_path_factory.mktemp("partner")
    return train(load_config([*SMOKE, f"experiment.runs_dir={runs}", "sharing=independent"]))


def _trainer(tmp_path, partner, *extra):
    frozen = f"collector.frozen={{agent_2: {partner}}}"
    return build_trainer(load_config([*SMOKE, f"experiment.runs_dir={tmp_path}", frozen, *extra]))


def test_frozen_seat_acts_with_the_partner_and_the_rest_with_the_learner(tmp_path, partner_run):
    trainer = _trainer(tmp_path, partner_run)
    partner = trainer.seat_policy.frozen[0].model
    td = trainer.collector.env.reset()
    mixed = trainer.seat_policy.act(td.clone(), deterministic=True)
    own = trainer.model.act(td.clone(), deterministic=True)
    theirs = partner.act(td.clone(), deterministic=True)
    action = mixed["agents", "action"]  # [envs, 3 agents, 2]
    assert torch.equal(action[:, :2], own["agents", "action"][:, :2])
    assert torch.equal(action[:, 2], theirs["agents", "action"][:, 2])
    assert not torch.equal(own["agents", "action"][:, 2], theirs["agents", "action"][:, 2])
    assert mixed["agents", "learner"].tolist() == [[True, True, False]] * td.batch_size[0]


def test_ppo_ignores_the_frozen_seat(tmp_path, partner_run):
    """Corrupting what the partner's seat did changes neither the loss nor the learner's update."""
    trainer = _trainer(tmp_path, partner_run)
    batch, _ = trainer.collect()
    corrupted = batch.clone()
    corrupted["agents", "sample"][..., 2, :] = 3.0
    corrupted["agents", "log_prob"][..., 2] = -40.0
    results = []
    for b in (batch, corrupted):
        model = trainer.model
        state = {k: v.clone() for k, v in model.state_dict().items()}
        torch.manual_seed(0)
        compute_advantages(b, model, 0.99, 0.95)
        b["agents", "advantage"][..., 2] = 5.0  # the partner's advantages are never used either
        optimizer = build_optimizer(model, trainer.cfg.algorithm, torch.device("cpu"))
        stats = ppo_update(b, model, optimizer, trainer.cfg.algorithm)
        results.append((stats["policy_loss"], {k: v.clone() for k, v in model.state_dict().items()}))
        model.load_state_dict(state)
    assert results[0][0] == pytest.approx(results[1][0])
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


def test_training_beside_a_frozen_partner_runs(tmp_path, partner_run):
    run = train(
        load_config([*SMOKE, f"experiment.runs_dir={tmp_path}", f"collector.frozen={{'2': {partner_run}}}"])
    )
    assert (run / "summary.json").exists()


@pytest.mark.parametrize(
    ("frozen", "message"),
    [
        ("{agent_7: PARTNER}", "does not have"),
        ("{agent_0: PARTNER, agent_1: PARTNER, agent_2: PARTNER}", "at least one seat"),
    ],
)
def test_bad_seats_are_explained(tmp_path, partner_run, frozen, message):
    with pytest.raises(ConfigError, match=message):
        build_trainer(
            load_config(
                [
                    *SMOKE,
                    f"experiment.runs_dir={tmp_path}",
                    "collector.frozen=" + frozen.replace("PARTNER", str(partner_run)),
                ]
            )
        )


def test_a_partner_from_another_env_is_rejected(tmp_path, partner_run):
    with pytest.raises(ConfigError, match="does not fit this env"):
        _trainer(tmp_path, partner_run, "env.n_agents=4", "env.kwargs.agents_with_same_goal=1")

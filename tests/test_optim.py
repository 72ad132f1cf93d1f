"""marl/optim.py: per-network clipping folded into fused Adam equals clip_grad_norm_ + Adam."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from marl.optim import ActorCriticAdam


def _nets():
    torch.manual_seed(0)
    return nn.Linear(5, 3), nn.Linear(5, 1)


def _loss(actor, critic, x):
    return 100.0 * actor(x).square().sum() + 0.001 * critic(x).square().sum()  # actor clipped, critic not


@pytest.mark.parametrize("fused", [True, False])
def test_clip_and_step_equals_clip_grad_norm_then_adam(fused):
    actor, critic = _nets()
    ref_actor, ref_critic = copy.deepcopy(actor), copy.deepcopy(critic)
    params = {"actor": list(actor.parameters()), "critic": list(critic.parameters())}
    optimizer = ActorCriticAdam(params, 1e-2, 1e-8, fused=fused)
    references = [torch.optim.Adam(net.parameters(), lr=1e-2, eps=1e-8) for net in (ref_actor, ref_critic)]
    for _ in range(5):
        x = torch.randn(16, 5)
        optimizer.zero_grad()
        _loss(actor, critic, x).backward()
        norms = optimizer.clip_and_step(0.5)
        for ref in references:
            ref.zero_grad()
        _loss(ref_actor, ref_critic, x).backward()
        expected = [nn.utils.clip_grad_norm_(net.parameters(), 0.5) for net in (ref_actor, ref_critic)]
        for ref in references:
            ref.step()
        torch.testing.assert_close(norms["actor"], expected[0])
        torch.testing.assert_close(norms["critic"], expected[1])
        assert norms["actor"] > 0.5 > norms["critic"]  # one network clipped, the other not
        for ours, theirs in zip([*actor.parameters(), *critic.parameters()],
                                [*ref_actor.parameters(), *ref_critic.parameters()]):  # fmt: skip
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_loads_a_checkpoint_of_one_adam_over_all_parameters():
    """Checkpoints written before the split held one Adam over the actor's then the critic's parameters."""
    actor, critic = _nets()
    single = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=1e-2)
    _loss(actor, critic, torch.randn(4, 5)).backward()
    single.step()
    optimizer = ActorCriticAdam(
        {"actor": list(actor.parameters()), "critic": list(critic.parameters())}, 1e-2, 1e-8
    )
    optimizer.load_state_dict(single.state_dict())
    old = single.state_dict()["state"]
    torch.testing.assert_close(
        optimizer.adams["actor"].state_dict()["state"][1]["exp_avg"], old[1]["exp_avg"]
    )
    torch.testing.assert_close(
        optimizer.adams["critic"].state_dict()["state"][0]["exp_avg"], old[2]["exp_avg"]
    )
    round_trip = ActorCriticAdam(
        {"actor": list(actor.parameters()), "critic": list(critic.parameters())}, 1e-2, 1e-8
    )
    round_trip.load_state_dict(optimizer.state_dict())
    assert round_trip.param_groups[0]["lr"] == 1e-2 and len(round_trip.param_groups) == 2

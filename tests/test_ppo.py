"""PPO pieces on hand-computed cases: GAE, the clipped objective, value normalisation, policy heads."""

import math
from types import SimpleNamespace

import pytest
import torch
from marl.agents.policy import Actor
from marl.envs.factory import GroupInfo
from tensordict import TensorDict
from torch import distributions as D

from marl.ppo import RunningMeanStd, compute_advantages, explained_variance, ppo_loss


class FixedValues:
    """Stands in for ActorCritic: fixed values for the current and next observations (of the steps the
    TensorDict holds: compute_advantages asks for the next values of only some steps)."""

    group_names = ["agents"]

    def __init__(self, values, next_values):
        self._values, self._next = values, next_values

    def values(self, td):
        if td.get("is_next", None) is None:
            return {"agents": self._values}
        return {"agents": self._next[0, td["step"]]}


def _batch(rewards, done, terminated):
    T = len(rewards)
    reward = torch.tensor(rewards, dtype=torch.float32).reshape(1, T, 1, 1)
    flag = lambda xs: torch.tensor(xs).reshape(1, T, 1)  # noqa: E731
    nxt = TensorDict(
        {
            "agents": TensorDict({"reward": reward}, [1, T, 1]),
            "done": flag(done),
            "terminated": flag(terminated),
            "is_next": torch.ones(1, T),
            "step": torch.arange(T).reshape(1, T),
        },
        [1, T],
    )
    return TensorDict({"next": nxt}, [1, T])


# gamma = lambda = 0.5; values V = [0.5, 1.0, 1.5], next values V' = [1.0, 1.5, 2.0], rewards [1, 2, 3]:
# deltas r + gamma V' - V = [1.0, 1.75, 2.5]; A_t = delta_t + 0.25 A_{t+1}.
@pytest.mark.parametrize(
    "done, terminated, expected",
    [
        ([False, False, False], [False, False, False], [1.59375, 2.375, 2.5]),
        # terminated at t=1: no bootstrap there (delta_1 = 2 - 1 = 1) and the recursion is cut
        ([False, True, False], [False, True, False], [1.25, 1.0, 2.5]),
        # truncated at t=1 (time limit): still bootstraps from V'(s_2), but the recursion is cut
        ([False, True, False], [False, False, False], [1.4375, 1.75, 2.5]),
    ],
)
def test_gae_matches_hand_computation(done, terminated, expected):
    values = torch.tensor([0.5, 1.0, 1.5]).reshape(1, 3, 1)
    next_values = torch.tensor([1.0, 1.5, 2.0]).reshape(1, 3, 1)
    batch = _batch([1.0, 2.0, 3.0], done, terminated)
    compute_advantages(batch, FixedValues(values, next_values), gamma=0.5, lmbda=0.5)
    advantage = batch["agents", "advantage"].flatten()
    torch.testing.assert_close(advantage, torch.tensor(expected))
    torch.testing.assert_close(batch["agents", "value_target"].flatten(), advantage + values.flatten())


POLICY_ONLY = SimpleNamespace(clip_epsilon=0.2, value_coef=0.0, entropy_coef=0.0)


def clipped_surrogate_loss(log_prob, old_log_prob, advantage):
    """ppo_loss with only its policy term: (loss, approx KL, clip fraction)."""
    zeros = torch.zeros_like(log_prob)
    loss, terms = ppo_loss(log_prob, old_log_prob, advantage, zeros, zeros, zeros, POLICY_ONLY)
    return loss, terms["approx_kl"], terms["clip_fraction"]


def test_clipped_surrogate_on_hand_cases():
    old = torch.zeros(4)
    ratios = torch.tensor([1.5, 0.5, 0.5, 1.1])
    advantage = torch.tensor([1.0, 1.0, -1.0, 2.0])
    loss, kl, clip_fraction = clipped_surrogate_loss(ratios.log(), old, advantage)
    # min(rA, clip(r)A): 1.5 -> 1.2 (clipped); 0.5 -> 0.5 (pessimistic side); 0.5, A<0 -> -0.8; 1.1 -> 2.2
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 0.8 + 2.2) / 4)
    assert clip_fraction.item() == pytest.approx(0.75)
    expected_kl = ((ratios - 1) - ratios.log()).mean()
    assert kl.item() == pytest.approx(expected_kl.item())


def test_clipped_surrogate_gradient_vanishes_outside_trust_region():
    log_prob = torch.tensor([math.log(1.5)], requires_grad=True)
    loss, _, _ = clipped_surrogate_loss(log_prob, torch.zeros(1), torch.ones(1))
    loss.backward()
    assert log_prob.grad.item() == 0.0


def test_running_mean_std_matches_full_data():
    torch.manual_seed(0)
    norm = RunningMeanStd()
    chunks = [torch.randn(100) * 3 + 2, torch.randn(50) * 0.5 - 1, torch.randn(7)]
    for chunk in chunks:
        norm.update(chunk)
    data = torch.cat(chunks).double()
    assert norm.mean.item() == pytest.approx(data.mean().item(), rel=1e-9)
    assert norm.var.item() == pytest.approx(data.var(unbiased=False).item(), rel=1e-9)
    x = torch.randn(10)
    torch.testing.assert_close(norm.denormalise(norm.normalise(x)), x)


def test_explained_variance():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(target, 2.5), target) == pytest.approx(0.0)


def _continuous_group(n_agents=2, action_dim=2):
    return GroupInfo(
        "agents",
        tuple(f"a{i}" for i in range(n_agents)),
        obs_dim=5,
        discrete=False,
        action_dim=action_dim,
        action_low=-torch.ones(action_dim) * 2,
        action_high=torch.ones(action_dim) * 2,
    )


NET = dict(hidden_sizes=[16], activation="tanh", scheme="independent")


def test_gaussian_actor_log_prob_and_entropy_match_torch():
    torch.manual_seed(0)
    actor = Actor(_continuous_group(), "gaussian", initial_std=0.7, **NET)
    obs = torch.randn(32, 2, 5)
    action, sample, log_prob, _ = actor.sample(obs)
    loc, scale = actor._params(obs)
    reference = D.Normal(loc, scale)
    torch.testing.assert_close(log_prob, reference.log_prob(sample).sum(-1))
    _, entropy, _ = actor.evaluate(obs, sample)
    torch.testing.assert_close(entropy, reference.entropy().sum(-1))
    assert (action.abs() <= 2).all()  # clipped to the env's bounds
    assert scale.mean().item() == pytest.approx(0.7, rel=0.05)  # starts at initial_std


def test_tanh_gaussian_log_prob_matches_torch_transformed_distribution():
    torch.manual_seed(0)
    actor = Actor(_continuous_group(), "tanh_gaussian", initial_std=1.0, **NET)
    obs = torch.randn(64, 2, 5)
    action, sample, log_prob, _ = actor.sample(obs)
    loc, scale = actor._params(obs)
    squashed = D.TransformedDistribution(
        D.Normal(loc, scale), [D.TanhTransform(), D.AffineTransform(torch.zeros(2), 2 * torch.ones(2))]
    )
    torch.testing.assert_close(log_prob, squashed.log_prob(action).sum(-1), rtol=1e-4, atol=1e-3)
    re_log_prob, _, _ = actor.evaluate(obs, sample)
    torch.testing.assert_close(re_log_prob, log_prob)
    assert (action.abs() < 2).all()
    deterministic, _, _, _ = actor.sample(obs, deterministic=True)
    torch.testing.assert_close(deterministic, 2 * torch.tanh(loc))


def test_categorical_actor_respects_masks_and_matches_torch():
    torch.manual_seed(0)
    group = GroupInfo("agents", ("a0", "a1", "a2"), obs_dim=5, discrete=True, action_dim=4)
    actor = Actor(group, "tanh_gaussian", initial_std=1.0, **NET)
    obs = torch.randn(500, 3, 5)
    mask = torch.tensor([True, False, True, False]).expand(500, 3, 4)
    action, sample, log_prob, _ = actor.sample(obs, mask=mask)
    assert set(action.unique().tolist()) <= {0, 2}
    logits, _ = actor._params(obs)
    reference = D.Categorical(logits=logits.masked_fill(~mask, float("-inf")))
    torch.testing.assert_close(log_prob, reference.log_prob(action))
    _, entropy, _ = actor.evaluate(obs, sample, mask)
    torch.testing.assert_close(entropy, reference.entropy())
    unmasked, _, _, _ = actor.sample(obs)
    assert len(unmasked.unique()) == 4


@pytest.mark.parametrize("algorithm", ["ippo", "mappo"])
def test_next_values_reuse_the_following_steps_values(algorithm):
    """compute_advantages runs the critic on next observations only where an episode ended (and at the
    batch's last step); everywhere else the next value is the following step's value. On a real rollout
    with many resets the result equals running the critic on every next observation."""
    from marl.config import load_config
    from marl.ppo import _next_values
    from marl.training import build_trainer

    cfg = load_config(
        [f"algorithm={algorithm}", "env=vmas/dispersion", "env.num_envs=6", "env.max_steps=7",
         "experiment.frames_per_batch=120", "algorithm.minibatch_size=60", "model.hidden_sizes=[8]"]
    )  # fmt: skip
    trainer = build_trainer(cfg)
    batch, _ = trainer.collector.collect(trainer.policy)
    assert batch["next", "done"].sum() >= 12  # every env reset at least twice inside the batch
    with torch.no_grad():
        values = trainer.model.values(batch)
        every = trainer.model.values(batch["next"])
        fast = _next_values(trainer.model, batch, values)
    for name in every:  # equal up to float rounding: a matmul over another batch may round differently
        torch.testing.assert_close(fast[name], every[name], rtol=1e-5, atol=1e-6)

"""PPO for many agents at once (MAPPO and IPPO differ only in the critic's input, see agents/policy.py).

Advantages come from torchrl's vectorised GAE. The clipped surrogate loss is written out here on plain
tensors instead of torchrl's `ClipPPOLoss`: a PPO iteration is hundreds of small minibatch steps, and the
per-call TensorDict and distribution-object overhead of the generic loss dominated their cost (it is most of
BenchMARL's iteration time). Every term below is the textbook one, visible in one place.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate

from marl.agents.policy import EPISODE_START, RNN_STATE, ActorCritic
from marl.errors import DivergenceError
from marl.optim import ActorCriticAdam


class RunningMeanStd(nn.Module):
    """Running mean and variance of value targets (MAPPO's value normalisation); state in buffers."""

    def __init__(self, epsilon: float = 1e-5):
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Chan et al.'s parallel update with the batch mean and variance of `x`."""
        x = x.detach().double()
        batch_mean, batch_var, batch_count = x.mean(), x.var(unbiased=False), x.numel()
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean += delta * batch_count / total
        self.var = (
            self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        ) / total
        self.count = total

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / (self.var + self.epsilon).sqrt()).to(x.dtype)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x * (self.var + self.epsilon).sqrt() + self.mean).to(x.dtype)


def explained_variance(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - prediction] / Var[target]; 1 is perfect, 0 is no better than the mean."""
    var = target.var()
    return float(1.0 - (target - prediction).var() / var) if var > 0 else float("nan")


@torch.no_grad()
def compute_advantages(
    batch: TensorDictBase,
    model: ActorCritic,
    gamma: float,
    lmbda: float,
    value_norms: nn.ModuleDict | None = None,
) -> dict[str, float]:
    """Add `(group, "advantage")` and `(group, "value_target")` [envs, time, agents] to a rollout batch.

    Bootstraps from the value of the next observation unless the episode *terminated* (a time-limit
    truncation still bootstraps); GAE's recursion is cut wherever the episode is done.
    """
    values = model.values(batch)
    next_values = _next_values(model, batch, values)
    done, terminated = batch["next", "done"], batch["next", "terminated"]  # [E, T, 1]
    stats = {}
    for name, value in values.items():
        next_value = next_values[name]
        if value_norms is not None:
            value, next_value = (
                value_norms[name].denormalise(value),
                value_norms[name].denormalise(next_value),
            )
        reward = batch["next", name, "reward"]  # [E, T, n, 1]
        shape = reward.shape
        agent_done, agent_terminated = (
            done.unsqueeze(-1).expand(shape),
            terminated.unsqueeze(-1).expand(shape),
        )
        alive = batch.get((name, "alive"), None)
        if alive is not None:  # an agent that leaves mid-episode: its own terminal step, no bootstrap
            left = (alive & ~batch["next", name, "alive"]).unsqueeze(-1)
            agent_done, agent_terminated = agent_done | left, agent_terminated | left
        advantage, target = vec_generalized_advantage_estimate(
            gamma,
            lmbda,
            value.unsqueeze(-1),
            next_value.unsqueeze(-1),
            reward,
            agent_done,
            agent_terminated,
            time_dim=-3,
        )
        batch.set((name, "advantage"), advantage.squeeze(-1))
        batch.set((name, "value_target"), target.squeeze(-1))
        stats[f"{name}/explained_variance"] = explained_variance(value, target.squeeze(-1))
        if value_norms is not None:
            value_norms[name].update(target if alive is None else target.squeeze(-1)[alive])
    return stats


def _next_values(
    model: ActorCritic, batch: TensorDictBase, values: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """V(next observation) [envs, time, agents] of every group, with the critic run only where needed.

    A step's next observation is the following step's observation, unless the episode ended there and the
    env was reset in between: so the values of steps t + 1 serve as next values of steps t, and the critic
    runs again only on the next observations of the last step and of the steps that ended an episode
    (about half the critic's work of evaluating every next observation)."""
    ended = batch["next", "done"].reshape(batch.shape).clone()
    ended[:, -1] = True
    fresh = model.values(batch["next"][ended])  # [K, agents]
    next_values = {}
    for name, value in values.items():
        shifted = torch.empty_like(value)
        shifted[:, :-1] = value[:, 1:]
        shifted[ended] = fresh[name]
        next_values[name] = shifted
    return next_values


def ppo_update(
    batch: TensorDictBase,
    model: ActorCritic,
    optimizer: ActorCriticAdam,
    algo,
    value_norms: nn.ModuleDict | None = None,
) -> dict[str, float]:
    """Run `algo.epochs` epochs of clipped-PPO minibatch steps over a batch with advantages.

    Samples are (env, time) pairs: all agents of a step stay together, so one minibatch of 400 holds
    400 x n_agents agent-steps, as in BenchMARL/TorchRL's multi-agent PPO. A recurrent model's samples are
    chunks of `algo.chunk_length` consecutive steps of one env (truncated BPTT): each minibatch holds
    minibatch_size / chunk_length shuffled chunks, replayed from the GRU states stored at their starts.
    """
    if model.recurrent:
        envs, steps = batch.shape
        length = algo.chunk_length
        flat = batch.reshape(envs * steps // length, length)  # [chunks, L]: consecutive steps of one env
        minibatch = max(1, min(algo.minibatch_size // length, flat.shape[0]))
    else:
        flat = batch.reshape(-1)
        minibatch = min(algo.minibatch_size, flat.shape[0])
    n_samples = flat.shape[0]
    # Pull everything the loss needs into plain tensors once: indexing tensors is far cheaper than
    # indexing a nested TensorDict hundreds of times per iteration.
    critic_inputs = model.critic_inputs(flat)
    data = {
        name: {
            "obs": flat[name, "observation"],
            "sample": flat[name, "sample"],
            "log_prob": flat[name, "log_prob"],
            "advantage": flat[name, "advantage"],
            "target": flat[name, "value_target"]
            if value_norms is None
            else value_norms[name].normalise(flat[name, "value_target"]),
            "critic_input": critic_inputs[name],
            "mask": flat.get((name, "action_mask"), None),
            # Steps that count: the policy learns where the agent acted (AEC: its turn), the critic
            # wherever it was alive. Absent keys mean every step counts (VMAS).
            "acting": _all_of(flat, name, ("acting", "alive", "learner")),
            "alive": _all_of(flat, name, ("alive", "learner")),
            # recurrent actors: the GRU state before each chunk, and where episodes start inside it
            "rnn_state": flat[:, 0][name, RNN_STATE] if model.actors[name].recurrent else None,
            "starts": flat[EPISODE_START] if model.actors[name].recurrent else None,
        }
        for name in model.group_names
    }
    totals: dict[str, torch.Tensor] = {}
    losses = []  # checked once after the update: no host-device sync per minibatch
    for _ in range(algo.epochs):
        # Shuffle every tensor once per epoch; minibatches are then contiguous slices (views, no copies).
        shuffled = _take(data, torch.randperm(n_samples, device=flat.device))
        for start in range(0, n_samples - minibatch + 1, minibatch):
            loss, step_stats = _minibatch_loss(model, shuffled, slice(start, start + minibatch), algo)
            optimizer.zero_grad()
            loss.backward()
            norms = optimizer.clip_and_step(algo.max_grad_norm)  # each network clipped to its own norm
            step_stats.update({f"{name}_grad_norm": norm for name, norm in norms.items()})
            for key, value in step_stats.items():
                totals[key] = totals.get(key, 0.0) + value.detach()
            losses.append(loss.detach())
    check_finite_losses(torch.stack(losses), algo.lr)
    return {key: float(value) / max(len(losses), 1) for key, value in totals.items()}


def _take(data: dict, order: torch.Tensor) -> dict:
    """Every tensor of `data` (per group, per field; None stays None) reordered along dim 0 by `order`."""

    def take(value):
        if value is None:
            return None
        return value.index_select(0, order) if isinstance(value, torch.Tensor) else value[order]

    return {name: {key: take(value) for key, value in fields.items()} for name, fields in data.items()}


def check_finite_losses(
    losses: torch.Tensor, lr: float, lr_key: str = "algorithm.lr", what: str = "PPO"
) -> None:
    """Stop with a clear message if any minibatch loss of an update (`losses`, one per step, checked once
    after the update: no host-device sync per minibatch) was NaN or infinite. The parameters after such a
    step are garbage, but nothing is lost: the trainer saves the last good iteration when this raises."""
    bad = ~torch.isfinite(losses)
    if not bad.any():
        return
    step = int(bad.nonzero()[0, 0])
    raise DivergenceError(
        f"The {what} loss became {losses[step].item()} (not finite) at minibatch step {step} of this "
        f"iteration. Usual causes: a learning rate too high for this task ({lr_key}={lr}), rewards of very "
        "large magnitude (try algorithm.value_normalization=true), or NaN observations from the env. "
        f"Training stopped at the last good iteration; resume from its checkpoint with a smaller {lr_key}."
    )


def _all_of(batch: TensorDictBase, group: str, keys: tuple[str, ...]) -> torch.Tensor | None:
    """The AND of the group's step flags among `keys` that the batch has; None if it has none. `acting`
    (AEC: the agent's turn) implies `alive`, so the first of those two present stands for both."""
    flags = [batch.get((group, key), None) for key in keys]
    if keys[0] == "acting" and flags[0] is not None:
        flags[1] = None
    flags = [f for f in flags if f is not None]
    if not flags:
        return None
    result = flags[0]
    for flag in flags[1:]:
        result = result & flag
    return result


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `x` over the entries where `mask` is True (all entries without a mask)."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp_min(1)


def clipped_surrogate_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantage: torch.Tensor,
    clip_epsilon: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped objective, negated: -E[min(r A, clip(r, 1-eps, 1+eps) A)], r = pi/pi_old, averaged
    over the entries where `mask` is True.

    Returns (loss, approximate KL (Schulman's k3 estimator), fraction of clipped ratios).
    """
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon)
    loss = -masked_mean(torch.min(ratio * advantage, clipped * advantage), mask)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_epsilon).float(), mask)
    return loss, approx_kl, clip_fraction


def _minibatch_loss(
    model: ActorCritic, data: dict, idx: slice | torch.Tensor, algo
) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate + value loss - entropy bonus, summed over groups, for one minibatch."""
    loss = 0.0
    stats: dict[str, torch.Tensor] = {}
    for name in model.group_names:
        d = data[name]
        mask = None if d["mask"] is None else d["mask"][idx]
        acting = None if d["acting"] is None else d["acting"][idx]
        alive = None if d["alive"] is None else d["alive"][idx]
        recurrent = d.get("rnn_state") is not None  # feed-forward data may leave the recurrent keys out
        hidden, starts = (d["rnn_state"][idx], d["starts"][idx]) if recurrent else (None, None)
        log_prob, entropy, dist_stats = model.actors[name].evaluate(
            d["obs"][idx], d["sample"][idx], mask, hidden, starts
        )
        advantage = d["advantage"][idx]
        if algo.normalize_advantage:
            counted = advantage if acting is None else advantage[acting]
            if counted.numel() > 1:
                advantage = (advantage - counted.mean()) / (counted.std() + 1e-8)
        policy_loss, approx_kl, clip_fraction = clipped_surrogate_loss(
            log_prob, d["log_prob"][idx], advantage, algo.clip_epsilon, acting
        )
        value = model.critics[name](d["critic_input"][idx])
        value_loss = masked_mean((value - d["target"][idx]).pow(2), alive)
        entropy_mean = masked_mean(entropy, acting)
        loss = loss + policy_loss + algo.value_coef * value_loss - algo.entropy_coef * entropy_mean
        with torch.no_grad():
            prefix = "" if len(model.group_names) == 1 else f"{name}/"
            stats[prefix + "policy_loss"] = policy_loss
            stats[prefix + "value_loss"] = value_loss
            stats[prefix + "entropy"] = entropy_mean
            stats[prefix + "approx_kl"] = approx_kl
            stats[prefix + "clip_fraction"] = clip_fraction
            for key, value_ in dist_stats.items():
                stats[prefix + key] = value_
    return loss, stats

"""PPO for many agents at once (MAPPO and IPPO differ only in the critic's input, see agents/policy.py).

Every update (this team's `ppo_update`, and marl/population/'s) is built from `generalized_advantages`
(torchrl's GAE), `minibatch_epochs` (epochs x shuffled minibatches around any loss) and `ppo_loss`.

The clipped surrogate loss is written out on plain tensors instead of torchrl's `ClipPPOLoss`: a PPO
iteration is hundreds of small minibatch steps, and the per-call TensorDict and distribution-object overhead
of the generic loss dominated their cost (it is most of BenchMARL's iteration time). Every term below is
the textbook one, visible in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from tensordict import TensorDictBase
from torch import Tensor, nn
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


def generalized_advantages(
    gamma: float,
    lmbda: float,
    value: Tensor,
    next_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor,
    time_dim: int = 1,
) -> tuple[Tensor, Tensor]:
    """GAE advantages and value targets (torchrl's vectorised GAE), both shaped like `value`.

    `value`, `next_value` (the value of each step's next observation) and `reward` share one shape with time
    on `time_dim`, e.g. [envs, time] or [envs, time, agents]; the bool `done` and `terminated` broadcast to
    it. A terminated step does not bootstrap (a truncated one does); the recursion is cut wherever `done`.
    """
    columns = [x.expand(value.shape).unsqueeze(-1) for x in (value, next_value, reward, done, terminated)]
    from_end = time_dim % value.dim() - value.dim() - 1  # time's place counted from the end of a column
    advantage, target = vec_generalized_advantage_estimate(gamma, lmbda, *columns, time_dim=from_end)
    return advantage.squeeze(-1), target.squeeze(-1)


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
        reward = batch["next", name, "reward"].squeeze(-1)  # [E, T, n]
        agent_done, agent_terminated = done, terminated
        alive = batch.get((name, "alive"), None)
        if alive is not None:  # an agent that leaves mid-episode: its own terminal step, no bootstrap
            left = alive & ~batch["next", name, "alive"]
            agent_done, agent_terminated = agent_done | left, agent_terminated | left
        advantage, target = generalized_advantages(
            gamma, lmbda, value, next_value, reward, agent_done, agent_terminated
        )
        batch.set((name, "advantage"), advantage)
        batch.set((name, "value_target"), target)
        stats[f"{name}/explained_variance"] = explained_variance(value, target)
        if value_norms is not None:
            value_norms[name].update(target if alive is None else target[alive])
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
        minibatch = algo.minibatch_size // length
    else:
        flat = batch.reshape(-1)
        minibatch = algo.minibatch_size
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

    def clip_and_step() -> dict[str, Tensor]:  # each network clipped to its own norm
        norms = optimizer.clip_and_step(algo.max_grad_norm)
        return {f"{name}_grad_norm": norm for name, norm in norms.items()}

    loss_of = partial(_minibatch_loss, model, algo=algo)
    return minibatch_epochs(data, loss_of, optimizer, clip_and_step, algo, minibatch, drop_last=True)


def minibatch_epochs(
    data: dict,
    loss_of: Callable[[dict], tuple[Tensor, dict[str, Tensor]]],
    optimizer,
    clip_and_step: Callable[[], dict[str, Tensor]],
    algo,
    minibatch_size: int,
    per_member: bool = False,
    drop_last: bool = False,
    lr_key: str = "algorithm.lr",
    what: str = "PPO",
) -> dict[str, float]:
    """`algo.epochs` passes of minibatch steps over `data`; returns each stat averaged over the steps.

    `data`: a nested dict of tensors (or None) with the samples on dim 0, or with `per_member` on dim 1 of
    the member-major layout [members, samples, ...], each member shuffled on its own. Every epoch shuffles
    once and cuts contiguous minibatches (the last, shorter one dropped with `drop_last`). A step:
    `loss_of(minibatch)` -> (loss, stats), backward, `clip_and_step()` -> grad-norm stats. Stats are summed
    as tensors and the losses checked once at the end: no host-device sync per minibatch. With
    `algo.precision="bfloat16"` the loss runs under autocast (bfloat16 matmuls, float32 weights and steps).
    """
    dim, tensors = int(per_member), []
    _map(data, tensors.append)  # every tensor: the first gives the sample count and the device
    first, n_samples = tensors[0], tensors[0].shape[dim]
    bfloat16 = getattr(algo, "precision", "float32") == "bfloat16"
    minibatch_size = max(1, min(minibatch_size, n_samples))
    totals: dict[str, Tensor] = {}
    losses = []
    for _ in range(algo.epochs):
        order = shuffled_order(n_samples, first.shape[0] if per_member else None, first.device)
        shuffled = _map(data, lambda x, order=order: _reorder(x, order))
        for start in range(0, n_samples - (minibatch_size if drop_last else 1) + 1, minibatch_size):
            window = (slice(None),) * dim + (slice(start, start + minibatch_size),)
            with torch.autocast(first.device.type, dtype=torch.bfloat16, enabled=bfloat16):
                loss, stats = loss_of(_map(shuffled, lambda x, window=window: x[window]))
            optimizer.zero_grad()
            loss.backward()
            stats.update(clip_and_step())
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value.detach()
            losses.append(loss.detach())
    check_finite_losses(torch.stack(losses), algo.lr, lr_key, what)
    means = torch.stack([value.to(first.device, torch.float64) for value in totals.values()]) / len(losses)
    return dict(zip(totals, means.tolist()))


def shuffled_order(n_samples: int, n_members: int | None, device: torch.device) -> Tensor:
    """A random order of the samples: [n_samples], or per member [n_members, n_samples] (one per row)."""
    if n_members is None:
        return torch.randperm(n_samples, device=device)
    return torch.rand(n_members, n_samples, device=device).argsort(-1)


def _reorder(x, order: Tensor):
    """`x` (tensor or TensorDict) with its samples put in `order` (dim 0, or per row of a 2-d order)."""
    if order.dim() == 2:
        return x[torch.arange(order.shape[0], device=order.device).unsqueeze(-1), order]
    return x.index_select(0, order) if isinstance(x, Tensor) else x[order]


def _map(data, fn):
    """`fn` applied to every leaf of a nested dict (None leaves stay None)."""
    if isinstance(data, dict):
        return {key: _map(value, fn) for key, value in data.items()}
    return None if data is None else fn(data)


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


def masked_mean(x: Tensor, mask: Tensor | None, dim: int | None = None) -> Tensor:
    """Mean of `x` over the entries where `mask` is True (all entries without a mask); along `dim` only,
    if given: `member_mean` is one mean per member of member-major [N, L] data (0 where the mask is empty)."""
    if mask is None:
        return x.mean(dim)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1)


member_mean = partial(masked_mean, dim=-1)


def scale_to_self_play(advantage: Tensor, learn: Tensor, self_play: Tensor, normalise: bool = True) -> Tensor:
    """Each member's advantages [N, L] on the scale of its own objective, wherever else it learns.

    XP-min's member learns from its self-play seats (weight +1) and from the seats where it meets its best
    partner (weight -lambda/2, already applied); PPO averages its surrogate over all `learn` samples. Two
    things would then shrink the self-play term when the cross-play term starts: the mean over more samples,
    and a normalising std taken over the mixture. So with `normalise` the self-play samples are
    centred and every sample is divided by the self-play samples' std; then all are multiplied by
    n_learn / n_self_play, which turns the mean over `learn` into a sum over `learn` / n_self_play. Member
    i's surrogate gradient is then ``grad J_SP - lambda * grad J_XP`` at the scale self-play alone gives, so
    switching the cross-play term on changes the objective, not the step size of its self-play part or
    the weight of the entropy bonus against it. Where every learning sample is self-play (self-play,
    specialists, XP-min's warm-up) this is plain per-member normalisation.
    """
    own = torch.where(self_play.any(-1, keepdim=True), self_play, learn)  # a member without self-play: all
    if normalise:
        mean = member_mean(advantage, own).unsqueeze(-1)
        std = member_mean((advantage - mean) ** 2, own).sqrt().unsqueeze(-1)
        advantage = torch.where(own, advantage - mean, advantage) / (std + 1e-8)
    dilution = learn.sum(-1, keepdim=True) / own.sum(-1, keepdim=True).clamp_min(1)
    return advantage * dilution * learn


def ppo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantage: Tensor,
    entropy: Tensor,
    value: Tensor,
    target: Tensor,
    algo,
    acting: Tensor | None = None,
    alive: Tensor | None = None,
    mean: Callable[[Tensor, Tensor | None], Tensor] = masked_mean,
    normalise: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's loss: the clipped surrogate -E[min(r A, clip(r, 1-eps, 1+eps) A)], r = pi/pi_old and
    eps = `algo.clip_epsilon`, + `algo.value_coef` x squared value error - `algo.entropy_coef` x entropy.

    The policy terms are averaged over the `acting` samples, the value error over the `alive` ones, by `mean`:
    `masked_mean` (one team) or `member_mean` (each member its own mean; the losses are summed). With
    `normalise`, the advantages are first scaled to mean 0, std 1 over the `acting` samples. Returns
    (loss, {term: detached, averaged over members}), approx KL (Schulman's k3) and clip fraction included.
    """
    if normalise:  # over this minibatch (a masked one syncs with the host for the count)
        counted = advantage if acting is None else advantage[acting]
        if counted.numel() > 1:
            advantage = (advantage - counted.mean()) / (counted.std() + 1e-8)
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1.0 - algo.clip_epsilon, 1.0 + algo.clip_epsilon)
    policy_loss = -mean(torch.min(ratio * advantage, clipped * advantage), acting)
    value_loss, entropy = mean((value - target).pow(2), alive), mean(entropy, acting)
    loss = (policy_loss + algo.value_coef * value_loss - algo.entropy_coef * entropy).sum()
    with torch.no_grad():
        approx_kl = mean((ratio - 1.0) - log_ratio, acting)
        clip_fraction = mean(((ratio - 1.0).abs() > algo.clip_epsilon).float(), acting)
    terms = dict(policy_loss=policy_loss, value_loss=value_loss, entropy=entropy)
    terms.update(approx_kl=approx_kl, clip_fraction=clip_fraction)
    return loss, {key: term.detach().mean() for key, term in terms.items()}


def _minibatch_loss(model: ActorCritic, data: dict, algo) -> tuple[torch.Tensor, dict]:
    """The PPO loss summed over groups, and its terms, for one minibatch `data`."""
    loss = 0.0
    stats: dict[str, torch.Tensor] = {}
    for name in model.group_names:
        d = data[name]
        # a feed-forward actor's data has no recurrent keys (GRU state at chunk starts, episode starts)
        log_prob, entropy, dist_stats = model.actors[name].evaluate(
            d["obs"], d["sample"], d["mask"], d.get("rnn_state"), d.get("starts")
        )
        value = model.critics[name](d["critic_input"])
        options = dict(acting=d["acting"], alive=d["alive"], normalise=algo.normalize_advantage)
        group_loss, terms = ppo_loss(
            log_prob, d["log_prob"], d["advantage"], entropy, value, d["target"], algo, **options
        )
        loss = loss + group_loss
        prefix = "" if len(model.group_names) == 1 else f"{name}/"
        stats.update({prefix + key: value_ for key, value_ in (terms | dist_stats).items()})
    return loss, stats

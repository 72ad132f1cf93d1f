"""A population of N two-seat partners as ONE batched module (XP-min, specialists, extraction).

Every member has its own actor and critic, but the N actors are a single ``TeamMLP`` with
``n_agents=N`` (and so are the N critics): scheme ``independent`` stacks the members' weights
``[N, in, out]``, scheme ``hyper`` generates them from member embeddings with a hypernetwork
(agents/sharing.py, reused as is).

Pairs play in a batched env of two-seat slots: ``member [envs, 2]`` says which member sits in each seat of
each slot. Running all of them at once without a Python loop over members or pairs uses the *member-major
layout*: the ``envs * 2`` seat samples are reordered once per assignment into ``[N, C, ...]`` (member ``m``'s
samples in row ``m``, padded to the largest count ``C``; with all ordered pairs every member has exactly
``C`` samples and nothing is padded), pushed through the stacked networks with one batched matmul per layer,
and put back in seat order. ``MemberLayout`` holds that permutation. (The alternative, gathering each
sample's member weights ``[S, in, out]`` and running ``bmm``, is ``per_sample_logits``; it copies a whole
weight matrix per sample and measured several times slower, see marl/benchmarks/population_rollout.py.)

The critic gives separate self-play and cross-play value estimates: member ``m``'s critic sees its
observation plus a one-hot of its partner's id (its own id in self-play), so ``V_m(o | partner j)`` is the
expected return of pair ``(m, j)``, one estimate per partner from one network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from marl.agents.sharing import TeamMLP
from torch import Tensor, nn

POPULATION_SCHEMES = ("independent", "hyper")


@dataclass(frozen=True)
class MemberLayout:
    """A permutation of ``S`` samples, each owned by one member, into the member-major ``[N, C]`` layout.

    ``index [N, C]``: which sample sits at each place (0 where padded); ``valid [N, C]``: not padding;
    ``position [S]``: each sample's flat place ``m * C + rank`` in the layout.
    """

    index: Tensor
    valid: Tensor
    position: Tensor

    @classmethod
    def build(cls, member: Tensor, n_members: int) -> MemberLayout:
        """Layout of the samples whose owners are ``member [S]`` (ids in ``0..n_members-1``), stable order."""
        member = member.reshape(-1).long()
        count = torch.bincount(member, minlength=n_members)
        width = max(int(count.max()), 1)  # one sync per assignment, not per step
        order = torch.argsort(member, stable=True)
        first = torch.cumsum(count, 0) - count  # where each member's run starts in `order`
        owner = member[order]
        rank = torch.arange(member.numel(), device=member.device) - first[owner]
        position = torch.empty_like(member)
        position[order] = owner * width + rank
        index = torch.zeros(n_members * width, dtype=torch.long, device=member.device)
        index[position] = torch.arange(member.numel(), device=member.device)
        valid = torch.zeros(n_members * width, dtype=torch.bool, device=member.device)
        valid[position] = True
        return cls(index.view(n_members, width), valid.view(n_members, width), position)

    @property
    def n_members(self) -> int:
        return self.index.shape[0]

    def to_members(self, x: Tensor) -> Tensor:
        """``[S, ...]`` in sample order -> ``[N, C, ...]`` (padding repeats sample 0: mask with ``valid``)."""
        return x[self.index]

    def from_members(self, y: Tensor) -> Tensor:
        """``[N, C, ...]`` -> ``[S, ...]`` in sample order (padding dropped)."""
        return y.flatten(0, 1)[self.position]


def seat_layout(member: Tensor, n_members: int) -> MemberLayout:
    """The layout of a pair assignment ``member [envs, 2]``: samples are the seats, flattened env-major."""
    return MemberLayout.build(member.reshape(-1), n_members)


class Population(nn.Module):
    """N members' categorical actors and partner-conditioned critics, each one batched ``TeamMLP``.

    Args:
        n_members: population size N.
        obs_dim, n_actions: one seat's observation size and number of discrete actions.
        hidden_sizes, activation: every member network's MLP.
        scheme: ``"independent"`` (stacked ``[N, ...]`` weights) or ``"hyper"`` (hypernetwork over member
            embeddings); actor and critic use the same scheme.
        hyper_variant, hyper_embedding_dim, hyper_hidden: see ``TeamMLP`` (``hyper`` only).
    """

    def __init__(
        self,
        n_members: int,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        scheme: str = "independent",
        hyper_variant: str = "mlp",
        hyper_embedding_dim: int = 8,
        hyper_hidden: int = 64,
    ) -> None:
        super().__init__()
        if scheme not in POPULATION_SCHEMES:
            raise ValueError(
                f"Population: scheme must be one of {', '.join(POPULATION_SCHEMES)} (a population's members "
                f"each have their own weights), got {scheme!r}."
            )
        self.n_members, self.obs_dim, self.n_actions, self.scheme = n_members, obs_dim, n_actions, scheme
        common = dict(
            n_agents=n_members,
            hidden_sizes=list(hidden_sizes),
            activation=activation,
            scheme=scheme,
            hyper_variant=hyper_variant,
            hyper_embedding_dim=hyper_embedding_dim,
            hyper_hidden=hyper_hidden,
        )
        self.actor = TeamMLP(obs_dim, n_actions, output_gain=0.01, **common)
        self.critic = TeamMLP(obs_dim + n_members, 1, output_gain=1.0, **common)

    # -- member-major layout: x[m] holds member m's samples -----------------------------------------------

    def logits(self, obs: Tensor) -> Tensor:
        """``obs [N, B, obs_dim]`` (member-major) -> action logits ``[N, B, n_actions]``."""
        return _members_forward(self.actor, obs)

    def values(self, obs: Tensor, partner: Tensor) -> Tensor:
        """``obs [N, B, obs_dim]``, partner ids ``[N, B]`` -> ``V_m(o | partner)`` ``[N, B]``."""
        partner_id = F.one_hot(partner.long(), self.n_members).to(obs.dtype)
        return _members_forward(self.critic, torch.cat([obs, partner_id], dim=-1)).squeeze(-1)

    def evaluate(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """``obs [N, B, obs_dim]``, ``action [N, B]`` -> (log-prob of the action, entropy) ``[N, B]``."""
        log_p = self.logits(obs).log_softmax(-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return log_p.gather(-1, action.long().unsqueeze(-1)).squeeze(-1), entropy

    # -- seat layout: a batch of two-seat slots --------------------------------------------------------------

    @torch.no_grad()
    def act(
        self,
        obs: Tensor,
        member: Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        layout: MemberLayout | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Each seat's action from its own member's actor, all seats of all slots in one pass.

        Args:
            obs: ``[envs, 2, obs_dim]``.  member: ``[envs, 2]`` member id per seat.
            deterministic: take the most likely action instead of sampling.
            generator: RNG of the sampling noise (default: torch's global one). The noise is drawn in seat
                order ``[envs, 2, n_actions]`` (Gumbel-max), so a slot's draw does not depend on the others.
            layout: ``seat_layout(member, N)``, if already built (it only changes with the assignment).
        Returns:
            (actions ``[envs, 2]`` long, their log-probabilities ``[envs, 2]``).
        """
        layout = layout or seat_layout(member, self.n_members)
        flat = obs.reshape(-1, self.obs_dim)
        log_p = layout.from_members(self.logits(layout.to_members(flat))).log_softmax(-1)
        log_p = log_p.view(*obs.shape[:-1], self.n_actions)
        return sample_categorical(log_p, deterministic, generator)

    def seat_values(self, obs: Tensor, member: Tensor, layout: MemberLayout | None = None) -> Tensor:
        """``obs [envs, T, 2, obs_dim]`` (a rollout; the assignment is fixed over it), ``member [envs, 2]``
        -> values ``[envs, T, 2]`` of each seat's member given its partner (the other seat's member)."""
        layout = layout or seat_layout(member, self.n_members)
        envs, steps = obs.shape[:2]
        by_seat = obs.transpose(1, 2).reshape(envs * 2, steps, self.obs_dim)  # [S, T, D]
        partner = member.flip(-1).reshape(-1, 1).expand(-1, steps)  # [S, T]
        x = layout.to_members(by_seat).flatten(1, 2)  # [N, C*T, D]
        p = layout.to_members(partner).flatten(1, 2)
        v = self.values(x, p).view(self.n_members, -1, steps)  # [N, C, T]
        return layout.from_members(v).view(envs, 2, steps).transpose(1, 2)

    # -- one member alone (references, extraction, looping baselines) ----------------------------------------

    def member_parameters(self, member: int, network: str = "actor") -> list[tuple[Tensor, Tensor]]:
        """Member ``member``'s own ``(weight [in, out], bias [out])`` per layer of its actor or critic."""
        net = self.actor if network == "actor" else self.critic
        weights, biases = net.agent_parameters()
        return [(w[member], b[member]) for w, b in zip(weights, biases)]

    def member_logits(self, member: int, obs: Tensor) -> Tensor:
        """Member ``member``'s actor alone on any batch ``obs [..., obs_dim]`` -> ``[..., n_actions]``
        (plain matmuls with its own weights: an independent reference for the batched paths)."""
        layers = self.member_parameters(member)
        x = obs
        for i, (w, b) in enumerate(layers):
            x = x @ w + b
            if i < len(layers) - 1:
                x = self.actor.activation(x)
        return x

    def per_sample_logits(self, obs: Tensor, member: Tensor) -> Tensor:
        """The gather alternative to the member-major layout: each sample ``obs [S, obs_dim]`` gathers its
        member's weights ``[S, in, out]`` (``member [S]``) and runs through ``bmm``. Same result, slower."""
        weights, biases = self.actor.agent_parameters()
        x = obs.unsqueeze(1)  # [S, 1, in]
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = torch.baddbmm(b[member].unsqueeze(1), x, w[member])
            if i < len(weights) - 1:
                x = self.actor.activation(x)
        return x.squeeze(1)


def sample_categorical(
    log_p: Tensor, deterministic: bool = False, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Gumbel-max draw (or the mode) from log-probabilities ``[..., A]`` -> (choice ``[...]``, log-prob)."""
    if deterministic:
        choice = log_p.argmax(-1)
    else:
        noise = torch.empty_like(log_p).exponential_(generator=generator)
        choice = (log_p - noise.log()).argmax(-1)
    return choice, log_p.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


def _members_forward(net: TeamMLP, x: Tensor) -> Tensor:
    """Member-major ``[N, B, in]`` through a ``TeamMLP`` with ``n_agents=N`` -> ``[N, B, out]``."""
    return net(x.transpose(0, 1)).transpose(0, 1)

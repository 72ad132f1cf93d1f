"""Who plays with whom: pair schedules, env-slot assignment, cross-play returns, best partners, reward signs.

A *pair* is an ordered ``(seat_0 member, seat_1 member)``; ``(i, i)`` is self-play (SP), ``(i, j)`` with
``i != j`` cross-play (XP). A schedule is a ``[P, 2]`` long tensor of pairs. ``assign_slots`` gives every pair
``envs_per_pair`` consecutive env slots, so one batched rollout plays all of them (agents/population.py).

XP-min needs, per member ``i``, its best other partner
``j*(i) = argmax_{j != i} (R[i, j] + R[j, i]) / 2`` with ``R[a, b]`` the mean return of pair ``(a, b)``, and a
per-seat weight on the advantages: ``+1`` where the member plays itself, ``-lambda`` where it plays ``j*``
(in either seat), ``0`` with any other partner (``seat_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PAIR_MODES = ("all", "self_play", "sampled")
PARTNER_SAMPLING = ("uniform", "bandit")


def self_play_pairs(n_members: int, device: torch.device | str = "cpu") -> Tensor:
    """``[N, 2]``: every member with itself."""
    members = torch.arange(n_members, device=device)
    return torch.stack([members, members], dim=-1)


def all_pairs(n_members: int, device: torch.device | str = "cpu") -> Tensor:
    """``[N*N, 2]``: every ordered pair, SP included; pair ``i * N + j`` is ``(i, j)``."""
    members = torch.arange(n_members, device=device)
    return torch.cartesian_prod(members, members)


def sampled_pairs(
    n_members: int,
    partners_per_member: int,
    strategy: str,
    xp_estimate: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SP pairs plus, for each member ``i``, ``k = partners_per_member`` partners ``j != i`` in both seat
    orders ``(i, j)`` and ``(j, i)``: ``[N + 2 * N * k, 2]`` (a pair may appear twice when ``i`` draws ``j``
    and ``j`` draws ``i``).

    ``strategy``: ``"uniform"`` draws the ``k`` partners uniformly without replacement. ``"bandit"`` is an
    epsilon-greedy bandit over partners whose value is the estimated XP return (``xp_estimate [N, N]``, see
    ``symmetric_returns``): one of the ``k`` is the current best-partner estimate ``j*(i)`` (exploit, so the
    partner that XP-min penalises is always played), the others are uniform among the rest (explore, so a
    partner whose XP return rose is noticed). Without an estimate yet, bandit falls back to uniform.
    """
    if not 1 <= partners_per_member <= n_members - 1:
        raise ValueError(f"partners_per_member must be in 1..{n_members - 1}, got {partners_per_member}.")
    scores = torch.rand(n_members, n_members, generator=generator).fill_diagonal_(-1.0)  # never oneself
    if strategy == "bandit" and xp_estimate is not None:
        greedy = best_partners(xp_estimate.cpu())
        scores[torch.arange(n_members), greedy] = 2.0  # above every uniform score: always chosen
    elif strategy not in PARTNER_SAMPLING:
        raise ValueError(f"partner sampling must be one of {', '.join(PARTNER_SAMPLING)}, got {strategy!r}.")
    partners = scores.topk(partners_per_member, dim=-1).indices  # [N, k]
    members = torch.arange(n_members).unsqueeze(-1).expand_as(partners)
    forward = torch.stack([members, partners], dim=-1).reshape(-1, 2)
    return torch.cat([self_play_pairs(n_members), forward, forward.flip(-1)])


@dataclass(frozen=True)
class SlotAssignment:
    """Pairs on env slots: pair ``p`` holds the ``envs_per_pair`` slots from ``p * envs_per_pair`` on."""

    pairs: Tensor  # [P, 2]
    member: Tensor  # [envs, 2] member id per seat
    pair_index: Tensor  # [envs] which pair each slot plays

    @property
    def num_envs(self) -> int:
        return self.member.shape[0]


def assign_slots(pairs: Tensor, envs_per_pair: int) -> SlotAssignment:
    """Give every pair ``envs_per_pair`` consecutive env slots."""
    pair_index = torch.arange(pairs.shape[0], device=pairs.device).repeat_interleave(envs_per_pair)
    return SlotAssignment(pairs, pairs[pair_index], pair_index)


def pair_matrix(pairs: Tensor, values: Tensor, counts: Tensor, n_members: int) -> tuple[Tensor, Tensor]:
    """Per-pair sums ``values [P]`` over ``counts [P]`` items -> (mean matrix ``[N, N]``, count matrix); pairs
    listed twice are pooled, entries with no items are NaN."""
    flat = pairs[:, 0] * n_members + pairs[:, 1]
    total = torch.zeros(n_members * n_members, dtype=values.dtype, device=values.device)
    number = torch.zeros(n_members * n_members, dtype=counts.dtype, device=counts.device)
    total.index_add_(0, flat, values)
    number.index_add_(0, flat, counts)
    mean = total / number.clamp_min(1)
    mean[number == 0] = float("nan")
    return mean.view(n_members, n_members), number.view(n_members, n_members)


def symmetric_returns(matrix: Tensor) -> Tensor:
    """``(R[i, j] + R[j, i]) / 2``: a pair's mean return over both seat orders (one order alone where the
    other is NaN)."""
    return torch.stack([matrix, matrix.T]).nanmean(0)


def best_partners(xp_estimate: Tensor) -> Tensor:
    """``j*(i) = argmax_{j != i}`` of the seat-symmetric XP return ``[N]`` (NaN entries never win unless a
    member has no estimate at all, then the lowest other index)."""
    scores = symmetric_returns(xp_estimate).nan_to_num(nan=torch.finfo(xp_estimate.dtype).min)
    scores.fill_diagonal_(-torch.inf)
    return scores.argmax(-1)


def gated_lambda(xp_estimate: Tensor, best_partner: Tensor, xp_lambda: float, margin: float = 0.0) -> Tensor:
    """XP-min's cross-play weight per member ``[N]``, switched off for a member that does clearly worse with
    itself than with its best partner (``R[i, i] < X - margin * |X|`` with ``X = (R[i, j*] + R[j*, i]) / 2``,
    or ``R[i, i]`` never seen).

    Why: a member that cannot yet succeed with itself meets partners that can. Whatever its one seat starts
    to do right succeeds with them first (the partner is reliable, its own other seat not yet), so the
    cross-play term pushes it off every behaviour it tries before self-play can reward one, and it can end
    doing nothing (cooks that cook nothing, results/cooking_populations). Gated, such a member learns from
    self-play alone until it does about as well with itself as with its best partner; from then on it has
    XP-min's objective, as every member that does.

    Why a margin: members that behave alike have the same true returns, and ``X`` is the largest of N-1
    noisy estimates, so it is above the member's own noisy ``R[i, i]`` most of the time. Without a margin
    the gate spares about half of a group of identical members at any time, exactly those XP-min must push
    apart (results/cooking_populations, "A kitchen with orders")."""
    self_play = xp_estimate.diagonal()
    cross_play = symmetric_returns(xp_estimate).gather(1, best_partner.unsqueeze(1)).squeeze(1)
    threshold = (cross_play - margin * cross_play.abs()).nan_to_num(nan=-torch.inf)
    capable = self_play >= threshold  # NaN self-play: not capable
    return capable.to(xp_estimate.dtype) * xp_lambda


def seat_weights(member: Tensor, best_partner: Tensor | None, xp_lambda: float | Tensor) -> Tensor:
    """Per-seat advantage weights ``[envs, 2]`` of an assignment ``member [envs, 2]`` for XP-min's objective
    ``J_SP(i) - xp_lambda * J_XP(i, j*)``, ``J_XP`` the mean over the seat orders played.

    Self-play seats get ``+1``; a seat where member ``i`` plays its best partner ``j* = best_partner[i]`` gets
    ``-xp_lambda * n_sp(i) / (n_orders * n_order)``, with ``n_sp(i)`` the number of slots of pair ``(i, i)``,
    ``n_order`` that of the seat's ordered pair, ``n_orders`` how many of ``(i, j*)``, ``(j*, i)`` are played;
    every other seat gets 0. Why these numbers: in a self-play slot both seats' score terms belong to
    member ``i`` (together they are one sample of ``grad J_SP``), in a cross-play slot only one seat is
    ``i``'s. So member ``i``'s summed policy gradient estimates ``n_sp(i) * grad[J_SP - lambda * J_XP]``
    exactly; with all pairs and equal slots per pair the XP weight is ``-lambda / 2`` (a plain ``-lambda``
    per seat would optimise ``J_SP - lambda * (J_XP(i, j*) + J_XP(j*, i))``, twice the cross-play weight).
    ``xp_lambda`` is one weight for all, or one per member ``[N]`` (``gated_lambda``).
    Without ``best_partner`` (self-play training) only the self-play weights are set.
    """
    partner = member.flip(-1)
    weight = (partner == member).float()
    if best_partner is None:
        return weight
    n = best_partner.shape[0]
    slots = torch.bincount(member[:, 0] * n + member[:, 1], minlength=n * n).view(n, n).float()
    best = best_partner[member]  # [E, 2]: the best partner of each seat's member
    plays_best = (partner == best) & (partner != member)
    n_sp = slots[member, member]
    own_order = slots[member[:, 0], member[:, 1]].unsqueeze(-1)  # both seats play the slot's ordered pair
    n_orders = (slots[member, best] > 0).float() + (slots[best, member] > 0).float()
    lam = xp_lambda[member] if isinstance(xp_lambda, Tensor) else xp_lambda
    xp = lam * n_sp / (n_orders.clamp_min(1) * own_order)
    return torch.where(plays_best, -xp, weight)

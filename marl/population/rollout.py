"""Rollouts of many partner pairs at once: every env slot plays one ordered pair of population members.

`PairCollector` is marl train's in-process collector (marl/collector.py) with a `PairPolicy` in every seat
(a `Population`, agents/population.py: one batched forward pass for every seat of every slot): it steps the
slots of a pair assignment (marl/population/pairs.py) and returns a `Rollout` in seat layout
``[envs, T, 2, ...]`` with the episodes that ended in it. Specialists play in env instances whose paying set
is restricted to their target label (`build_shards`), stepped as one batch. The trainers
(xpmin.py, extract.py, and generalist.py through its own policy), the Ray pair workers (ray_pairs.py) and
the rollout benchmark use these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.envs import EnvBase

from marl.agents.population import MemberLayout, seat_layout
from marl.collector import EnvShards, LocalCollector
from marl.envs.factory import describe_env, make_env
from marl.errors import MarlError
from marl.population.config import GROUP, NO_LABEL, PopulationConfig, specialist_targets
from marl.population.pairs import (
    SlotAssignment,
    all_pairs,
    assign_slots,
    sampled_pairs,
    self_play_pairs,
)

SHARD_SEED_STRIDE = 7919  # env seeds of the specialists' per-label env instances: seed + k * stride


@dataclass
class Rollout:
    """One iteration's data in seat layout ``[envs, T, 2, ...]``, plus the episodes that ended in it."""

    obs: Tensor  # [E, T, 2, D]
    next_obs: Tensor  # [E, T, 2, D]
    action: Tensor  # [E, T, 2]
    log_prob: Tensor  # [E, T, 2]
    reward: Tensor  # [E, T, 2]
    done: Tensor  # [E, T]
    terminated: Tensor  # [E, T]
    episode_slot: Tensor  # [M] the slot each ended episode ran in
    episode_return: Tensor  # [M] team return (mean over seats)
    episode_label: Tensor  # [M] the env's behaviour label at the episode's end (-1: none)

    @property
    def frames(self) -> int:
        return self.done.numel()

    def slots(self, keep: Tensor) -> Rollout:
        """The per-step data of the slots where ``keep [E]`` is True (the ended episodes are left out)."""
        steps = [self.obs, self.next_obs, self.action, self.log_prob, self.reward, self.done, self.terminated]
        empty = self.episode_slot[:0]
        return Rollout(*(x[keep] for x in steps), empty, self.episode_return[:0], self.episode_label[:0])


class PairPolicy(Protocol):
    """What the pair collector steps: both seats' actions of every slot. A `Population`, extraction's
    `TeacherMixture` and the generalist's `GeneralistPairs` are one; a policy may also have an
    ``observe(step)`` hook (see `PairCollector.collect`)."""

    def act(
        self, obs: Tensor, member: Tensor, deterministic: bool = False, layout: MemberLayout | None = None
    ) -> tuple[Tensor, Tensor]:
        """``obs [envs, 2, D]``, each seat's member ``[envs, 2]`` -> (actions, log-probs) ``[envs, 2]``."""
        ...


class PairCollector(LocalCollector):
    """Steps the slots of a pair assignment with a `PairPolicy`; episodes run across iterations.

    marl/collector.py's `LocalCollector` over the population's env instances (one, or for specialists one
    per target label: `EnvShards`), with a `PairPolicy` seated in every slot: it adds which pair each slot
    plays and the behaviour label of every episode that ended, and hands the batch on as a `Rollout`.
    ``reset(assignment)`` starts new episodes everywhere (a new assignment must not finish episodes another
    pair began).
    """

    def __init__(self, envs: list[EnvBase], assignment: SlotAssignment, n_members: int, label_key: str):
        env = envs[0] if len(envs) == 1 else EnvShards(envs)
        # the collector reads only the agent groups and the slot count (not the env's name or horizon)
        info = dataclasses.replace(
            describe_env(envs[0], type(envs[0]).__name__, 0), num_envs=int(env.batch_size[0])
        )
        super().__init__(env, info, frames_per_batch=info.num_envs)
        self.n_members, self.label_key, self.device = n_members, label_key, env.device
        self._assign(assignment)
        self._check_label(self.current)

    def _assign(self, assignment: SlotAssignment) -> None:
        self.assignment = assignment
        self.layout = seat_layout(assignment.member, self.n_members)

    def reset(self, assignment: SlotAssignment) -> None:
        self._assign(assignment)
        self.restart()

    def _check_label(self, td: TensorDictBase) -> None:
        info = td[GROUP, "info"]
        if self.label_key not in info.keys():  # noqa: SIM118 - a TensorDict's keys
            raise MarlError(
                f"population.label_key={self.label_key!r} is not in the env's info (it reports "
                f"{', '.join(info.keys())}). Set population.label_key to the key that labels an episode's "
                f"behaviour (native/matrix_game: convention, native/cooking: recipe)."
            )

    @torch.no_grad()
    def collect(self, policy: PairPolicy, steps: int, deterministic: bool = False) -> Rollout:
        """``steps`` steps of every slot (actions sampled with torch's global RNG, or the most likely).

        ``policy`` has `Population.act`'s signature: observations ``[envs, 2, D]`` and the assignment's
        members -> both seats' actions and log-probs. A policy with an ``observe(step)`` hook (the
        generalist's, which tracks its own partners) sees each step's outcome, the env's ``"next"``
        TensorDict ``[envs]``, before the next step."""
        member, layout = self.assignment.member, self.layout

        def seated(td: TensorDictBase) -> TensorDictBase:
            action, log_prob = policy.act(td[GROUP, "observation"], member, deterministic, layout=layout)
            td.set((GROUP, "action"), action)
            td.set((GROUP, "log_prob"), log_prob)
            return td

        observe = getattr(policy, "observe", None)
        after_step = None if observe is None else lambda td: observe(td["next"])
        batch, episodes = super().collect(seated, steps=steps, after_step=after_step)
        outcome = batch["next"]
        done = outcome["done"].squeeze(-1)
        slot, step = done.nonzero(as_tuple=True)  # the order of the episodes' returns too
        return Rollout(
            obs=batch[GROUP, "observation"],
            next_obs=outcome[GROUP, "observation"],
            action=batch[GROUP, "action"],
            log_prob=batch[GROUP, "log_prob"],
            reward=outcome[GROUP, "reward"].squeeze(-1),
            done=done,
            terminated=outcome["terminated"].squeeze(-1),
            episode_slot=slot,
            episode_return=episodes[f"{GROUP}/return"].mean(-1),  # the team's: mean over seats
            episode_label=outcome[GROUP, "info", self.label_key][slot, step, 0, 0].long(),
        )

    def observation(self) -> Tensor:
        """The observations ``[envs, 2, D]`` the next step acts on."""
        return self.current[GROUP, "observation"]

    @property
    def envs_per_pair(self) -> int:
        return self.assignment.num_envs // self.assignment.pairs.shape[0]

    def state_dict(self) -> dict:
        """Env states, current observations and running returns (`LocalCollector`'s) and the pairs."""
        return {**super().state_dict(), "pairs": self.assignment.pairs.clone()}

    def load_state_dict(self, state: dict) -> None:
        if "workers" in state:
            raise MarlError(
                f"The checkpoint's rollouts were collected by {len(state['workers'])} Ray workers; resume "
                f"with the same collector.num_workers={len(state['workers'])}."
            )
        self.reset(assign_slots(state["pairs"].to(self.device), self.envs_per_pair))
        super().load_state_dict(_from_shards(state) if "shards" in state else state)


def _from_shards(state: dict) -> dict:
    """A checkpoint of the former pair collector (per env instance: its state and step TensorDict; the
    team's running return per slot) in `LocalCollector`'s layout."""
    shards, team_return = state["shards"], state["episode_return"]
    envs = [shard["env"] for shard in shards]
    return {
        "env": envs[0] if len(envs) == 1 else envs,
        "td": {key: torch.cat([shard["td"][key] for shard in shards]) for key in shards[0]["td"]},
        "episode_return": {GROUP: team_return.unsqueeze(-1).expand(-1, 2).clone()},  # each seat: the mean
        "episode_length": torch.zeros(team_return.shape, dtype=torch.long),
    }


def training_pairs(cfg: PopulationConfig, xp_estimate: Tensor | None = None) -> Tensor:
    """The ordered pairs of one training rollout ``[P, 2]`` (sampled ones draw from torch's global RNG)."""
    pop, n = cfg.population, cfg.population.size
    if pop.method == "selfplay":
        return self_play_pairs(n)
    if pop.method == "specialists":  # members that share a target label sit next to each other (one shard)
        order = torch.argsort(torch.tensor(specialist_targets(cfg)), stable=True)
        return self_play_pairs(n)[order]
    if pop.pairs == "all":
        return all_pairs(n)
    return sampled_pairs(n, pop.partners_per_member, pop.partner_sampling, xp_estimate)


def build_shards(cfg: PopulationConfig, pairs: Tensor, device: torch.device) -> list[EnvBase]:
    """The env instances of the slots, in slot order: one for all of them; for specialists, one per target
    label (its paying set restricted)."""
    per_pair = cfg.population.envs_per_pair
    seed = cfg.experiment.seed
    if cfg.population.method != "specialists":
        return [make_env(cfg.env_config(pairs.shape[0] * per_pair), device, seed)]
    targets = torch.tensor(specialist_targets(cfg))[pairs[:, 0]]  # label of each pair, grouped
    shards = []
    for k, label in enumerate(torch.unique_consecutive(targets).tolist()):
        env_cfg = cfg.env_config(int((targets == label).sum()) * per_pair)
        env_cfg.kwargs[cfg.population.restrict_kwarg] = [] if label == NO_LABEL else [label]
        shards.append(make_env(env_cfg, device, seed + k * SHARD_SEED_STRIDE))
    return shards

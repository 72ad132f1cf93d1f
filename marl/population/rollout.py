"""Rollouts of many partner pairs at once: every env slot plays one ordered pair of population members.

`PairCollector` steps the slots of a pair assignment (marl/population/pairs.py) with a `PairPolicy` (a
`Population`, agents/population.py: one batched forward pass for every seat of every slot), and returns a
`Rollout` in seat layout ``[envs, T, 2, ...]`` with the episodes that ended in it. Specialists play in env
instances whose paying set is restricted to their target label ("shards", `build_shards`). The trainers
(xpmin.py, extract.py, and generalist.py through its own policy), the Ray pair workers (ray_pairs.py) and
the rollout benchmark use these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.envs import EnvBase

from marl.agents.population import MemberLayout, seat_layout
from marl.collector import td_restored, td_state
from marl.envs.factory import make_env
from marl.errors import MarlError
from marl.population.config import GROUP, PopulationConfig, specialist_targets
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


class PairPolicy(Protocol):
    """What the pair collector steps: both seats' actions of every slot. A `Population`, extraction's
    `TeacherMixture` and the generalist's `GeneralistPairs` are one; a policy may also have an
    ``observe(step)`` hook (see `PairCollector.collect`)."""

    def act(
        self, obs: Tensor, member: Tensor, deterministic: bool = False, layout: MemberLayout | None = None
    ) -> tuple[Tensor, Tensor]:
        """``obs [envs, 2, D]``, each seat's member ``[envs, 2]`` -> (actions, log-probs) ``[envs, 2]``."""
        ...


@dataclass
class Shard:
    """One env instance holding the consecutive slots ``start:stop`` of the population's slots."""

    env: EnvBase
    start: int
    stop: int
    td: TensorDictBase | None = None


class PairCollector:
    """Steps the slots of a pair assignment with a `PairPolicy`; episodes run across iterations.

    Like marl/collector.py's LocalCollector (whose step machinery it follows), but it knows which pair each
    slot plays, keeps per-slot episode returns and labels, and may spread slots over several env instances
    (specialists). ``reset(assignment)`` starts new episodes everywhere (a new assignment must not finish
    episodes another pair began).
    """

    def __init__(self, shards: list[Shard], assignment: SlotAssignment, n_members: int, label_key: str):
        self.shards, self.n_members, self.label_key = shards, n_members, label_key
        self.device = shards[0].env.device
        self.reset(assignment)

    def reset(self, assignment: SlotAssignment) -> None:
        self.assignment = assignment
        self.layout = seat_layout(assignment.member, self.n_members)
        for shard in self.shards:
            shard.td = shard.env.reset()
        self._check_label(self.shards[0].td)
        n = assignment.num_envs
        self.episode_return = torch.zeros(n, device=self.device)

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
        observe = getattr(policy, "observe", None)
        columns: dict[str, list[Tensor]] = {
            k: [] for k in ("obs", "next_obs", "action", "log_prob", "reward")
        }
        columns.update(done=[], terminated=[], ended_return=[], label=[])
        for _ in range(steps):
            obs = self.observation()
            action, log_prob = policy.act(obs, member, deterministic, layout=layout)
            stepped = []
            for shard in self.shards:
                shard.td[GROUP, "action"] = action[shard.start : shard.stop]
                out, shard.td = shard.env.step_and_maybe_reset(shard.td)
                stepped.append(out["next"])
            if observe is not None:
                observe(stepped[0] if len(stepped) == 1 else torch.cat(stepped))
            nxt = {
                "next_obs": self._cat([s[GROUP, "observation"] for s in stepped]),
                "reward": self._cat([s[GROUP, "reward"] for s in stepped]).squeeze(-1),
                "done": self._cat([s["done"] for s in stepped]).squeeze(-1),
                "terminated": self._cat([s["terminated"] for s in stepped]).squeeze(-1),
                "label": self._cat([s[GROUP, "info", self.label_key][:, 0, 0] for s in stepped]).long(),
            }
            self.episode_return += nxt["reward"].mean(-1)
            ended = nxt.pop("done")
            columns["ended_return"].append(self.episode_return * ended)
            self.episode_return = self.episode_return * ~ended
            for key, value in dict(nxt, obs=obs, action=action, log_prob=log_prob, done=ended).items():
                columns[key].append(value)
        data = {key: torch.stack(values, dim=1) for key, values in columns.items()}
        slot, step = data["done"].nonzero(as_tuple=True)
        return Rollout(
            obs=data["obs"],
            next_obs=data["next_obs"],
            action=data["action"],
            log_prob=data["log_prob"],
            reward=data["reward"],
            done=data["done"],
            terminated=data["terminated"],
            episode_slot=slot,
            episode_return=data["ended_return"][slot, step],
            episode_label=data["label"][slot, step],
        )

    def observation(self) -> Tensor:
        """The observations ``[envs, 2, D]`` the next step acts on."""
        return self._cat([s.td[GROUP, "observation"] for s in self.shards])

    @staticmethod
    def _cat(parts: list[Tensor]) -> Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def state_dict(self) -> dict:
        """Env states, current observations and running returns: enough to continue exactly."""
        return {
            "pairs": self.assignment.pairs.clone(),
            "episode_return": self.episode_return.clone(),
            "shards": [{"env": shard.env.snapshot(), "td": td_state(shard.td)} for shard in self.shards],
        }

    @property
    def envs_per_pair(self) -> int:
        return self.assignment.num_envs // self.assignment.pairs.shape[0]

    def load_state_dict(self, state: dict) -> None:
        if "workers" in state:
            raise MarlError(
                f"The checkpoint's rollouts were collected by {len(state['workers'])} Ray workers; resume "
                f"with the same collector.num_workers={len(state['workers'])}."
            )
        self.reset(assign_slots(state["pairs"].to(self.device), self.envs_per_pair))
        self.episode_return = state["episode_return"].to(self.device).clone()
        for shard, saved in zip(self.shards, state["shards"], strict=True):
            shard.env.restore(saved["env"])
            shard.td = td_restored(shard.td, saved["td"])

    def close(self) -> None:
        """In-process envs need no closing (Ray's pair collector releases its workers here)."""


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


def build_shards(cfg: PopulationConfig, pairs: Tensor, device: torch.device) -> list[Shard]:
    """One env instance for all slots; for specialists, one per target label (its paying set restricted)."""
    per_pair = cfg.population.envs_per_pair
    seed = cfg.experiment.seed
    if cfg.population.method != "specialists":
        n = pairs.shape[0] * per_pair
        return [Shard(make_env(cfg.env_config(n), device, seed), 0, n)]
    targets = torch.tensor(specialist_targets(cfg))[pairs[:, 0]]  # label of each pair, grouped
    shards, start = [], 0
    for k, label in enumerate(torch.unique_consecutive(targets).tolist()):
        n = int((targets == label).sum()) * per_pair
        env_cfg = cfg.env_config(n)
        env_cfg.kwargs[cfg.population.restrict_kwarg] = [label]
        shards.append(Shard(make_env(env_cfg, device, seed + k * SHARD_SEED_STRIDE), start, start + n))
        start += n
    return shards

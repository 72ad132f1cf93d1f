"""Different policies in different seats: the learner on its own agents, frozen partners on the others.

`collector.frozen={agent_2: results/runs/partner}` seats a frozen copy of another run's actors in agent 2's
place (in-process and on every Ray worker). `SeatPolicy.act` runs the learner and each frozen policy over
the whole batch (one vectorised pass each) and takes each seat's action from its owner; it marks the
learner's seats with `(group, "learner")`, so PPO trains only on the steps the learner acted in. Partner
populations (several frozen partners, resampled per episode) build on the same piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from marl.agents.policy import ActorCritic
from marl.envs.factory import EnvInfo
from tensordict import TensorDictBase

from marl.errors import ConfigError


@dataclass
class FrozenSeats:
    """One frozen policy and the seats it occupies: per group, a bool mask over the group's agents."""

    source: str
    model: ActorCritic
    seats: dict[str, torch.Tensor]


def seat_masks(env_info: EnvInfo, agents: list, key: str) -> dict[str, torch.Tensor]:
    """Per group, which of its agents are named in `agents` (agent names or global indices)."""
    names = env_info.agent_names
    chosen = set()
    for agent in agents:
        if isinstance(agent, int) and 0 <= agent < len(names):
            chosen.add(names[agent])
        elif isinstance(agent, str) and agent in names:
            chosen.add(agent)
        elif isinstance(agent, str) and agent.isdigit() and int(agent) < len(names):
            chosen.add(names[int(agent)])
        else:
            raise ConfigError(
                f"{key} names agent {agent!r}, which this env does not have. Agents: {', '.join(names)} "
                f"(names, or indices 0..{len(names) - 1})."
            )
    return {g.name: torch.tensor([a in chosen for a in g.agent_names]) for g in env_info.groups}


def frozen_actor_state(source: str) -> tuple[dict, dict]:
    """-> (the saved config as a dict, its actors' weights) from a run directory or checkpoint file."""
    from marl.checkpoint import load_checkpoint, resolve_checkpoint

    state = load_checkpoint(resolve_checkpoint(source))
    actors = {k.removeprefix("actors."): v for k, v in state["model"].items() if k.startswith("actors.")}
    return state["config"], actors


def build_frozen(
    env_info: EnvInfo, seats: dict[str, list], saved: dict[str, tuple[dict, dict]], device
) -> list[FrozenSeats]:
    """Frozen policies for `seats` ({source: agents}), from `saved` ({source: (config, actor weights)})."""
    from marl.config import config_from_dict

    frozen, taken = [], {}
    for source, agents in seats.items():
        masks = seat_masks(env_info, agents, f"collector.frozen[{source!r}]")
        for group, mask in masks.items():
            for j in mask.nonzero().flatten().tolist():
                agent = next(g for g in env_info.groups if g.name == group).agent_names[j]
                if agent in taken:
                    raise ConfigError(f"Agent {agent!r} is seated twice in collector.frozen.")
                taken[agent] = source
        config, actors = saved[source]
        if config.get("model", {}).get("recurrent", False):
            raise ConfigError(
                f"The frozen policy {source} is recurrent (model.recurrent=true); frozen seats take "
                "feed-forward policies only (their GRU states would not be carried). Freeze a feed-forward "
                "run."
            )
        model = ActorCritic(env_info, config_from_dict(config))
        try:
            model.actors.load_state_dict(actors)
        except RuntimeError as error:
            raise ConfigError(
                f"The frozen policy {source} does not fit this env: {str(error).splitlines()[0]}. It must "
                f"come from a run on the same env (same agents, observation and action sizes)."
            ) from None
        model = model.to(device).eval().requires_grad_(False)
        frozen.append(FrozenSeats(source, model, {g: m.to(device) for g, m in masks.items()}))
    if len(taken) == env_info.n_agents:
        raise ConfigError(
            "collector.frozen seats every agent; the learner needs at least one seat of its own."
        )
    return frozen


def frozen_by_source(frozen_cfg: dict[str, str] | None) -> dict[str, list]:
    """Invert the config's {agent: source} into {source: [agents]}."""
    seats: dict[str, list] = {}
    for agent, source in (frozen_cfg or {}).items():
        seats.setdefault(str(source), []).append(agent)
    return seats


class SeatPolicy:
    """The learner's `act` on its seats and frozen policies' on theirs; a drop-in collector policy."""

    def __init__(self, learner: ActorCritic, frozen: list[FrozenSeats]):
        self.learner = learner
        self.frozen = frozen
        self.learner_seats = {
            name: ~torch.stack([f.seats[name] for f in frozen]).any(0) for name in learner.group_names
        }

    @torch.no_grad()
    def act(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        self.learner.act(td, deterministic)
        for partner in self.frozen:
            inputs = [
                (name, key) for name in self.learner.group_names for key in ("observation", "action_mask")
            ]
            theirs = partner.model.act(td.select(*inputs, strict=False), deterministic)
            for name, seats in partner.seats.items():
                if seats.any():
                    action = td[name, "action"]
                    mask = seats.reshape(seats.shape + (1,) * (action.dim() - td.batch_dims - 1))
                    td.set((name, "action"), torch.where(mask, theirs[name, "action"], action))
        for name, seats in self.learner_seats.items():
            td.set((name, "learner"), seats.expand(*td.batch_size, seats.numel()))
        return td

    __call__ = act

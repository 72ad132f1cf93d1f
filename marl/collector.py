"""In-process rollout collection: step a batched env with a policy, return a [envs, time] TensorDict.

A policy is any callable `td -> td` that writes each group's `(group, "action")` (and, for the learner's
own policy, `"sample"` and `"log_prob"`). The collector never looks inside it, so a policy that serves
different seats from different networks (a frozen partner beside a learner) plugs in unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.envs import EnvBase

from marl.agents.policy import EPISODE_START, RNN_STATE, RNN_STATE_NEXT
from marl.envs.factory import EnvInfo
from marl.runs import untouched_rng

Policy = Callable[[TensorDictBase], TensorDictBase]


class Collector(Protocol):
    """What a trainer needs from a rollout collector: `LocalCollector` (in-process) and
    `marl.ray_collector.RayRolloutCollector` (Ray workers) both are one."""

    @property
    def frames_per_batch(self) -> int: ...

    def collect(self, policy: Policy, actors: nn.Module) -> tuple[TensorDictBase, dict[str, torch.Tensor]]:
        """-> (batch [envs, time], finished episodes). In-process `policy` acts; remote workers get the
        weights of `actors` and act with their own copy of it."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> None: ...


def carry_recurrent_state(step: TensorDictBase, next_td: TensorDictBase) -> None:
    """Hand a recurrent policy's new GRU states (``(group, RNN_STATE_NEXT)`` in ``step``) to the next step's
    input ``next_td`` as ``(group, RNN_STATE)``, and mark where an episode starts (``EPISODE_START``: the
    step just ended one, so that state is reset). A feed-forward policy writes no state: nothing happens."""
    carried = False
    for group, entry in step.items():
        if isinstance(entry, TensorDictBase) and RNN_STATE_NEXT in entry.keys():  # noqa: SIM118
            next_td.set((group, RNN_STATE), entry[RNN_STATE_NEXT])
            carried = True
    if carried:
        next_td.set(EPISODE_START, step["next", "done"].reshape(step.batch_size))


def td_state(td: TensorDictBase) -> dict[str, torch.Tensor]:
    """A step's TensorDict as a checkpoint holds it: {dotted key: a copy of the tensor}."""
    return {key: value.clone() for key, value in td.flatten_keys(".").items()}


def td_restored(td: TensorDictBase, saved: dict[str, torch.Tensor]) -> TensorDictBase:
    """A copy of ``td`` with the tensors of a `td_state` put back (on ``td``'s device)."""
    td = td.clone()
    for key, value in saved.items():
        td.set(tuple(key.split(".")), value.to(td.device))
    return td


class LocalCollector:
    """Collects `frames_per_batch` env steps per call, carrying env state across calls.

    Episodes run across batch boundaries (the env is reset only when an episode ends), and the return
    and length of every episode that ends inside a batch are reported with it.
    """

    def __init__(self, env: EnvBase, env_info: EnvInfo, frames_per_batch: int):
        self.env = env
        self.info = env_info
        self.steps_per_batch = frames_per_batch // env_info.num_envs
        self._td = env.reset()
        n_envs, device = env_info.num_envs, env.device
        self._episode_return = {
            g.name: torch.zeros(n_envs, g.n_agents, device=device) for g in env_info.groups
        }
        self._episode_length = torch.zeros(n_envs, dtype=torch.long, device=device)

    @property
    def frames_per_batch(self) -> int:
        return self.steps_per_batch * self.info.num_envs

    @property
    def current(self) -> TensorDictBase:
        """The TensorDict [envs] the next step acts on (its observations)."""
        return self._td

    def restart(self) -> None:
        """New episodes in every env, from a reset."""
        self._td = self.env.reset()
        for running in self._episode_return.values():
            running.zero_()
        self._episode_length.zero_()

    @torch.no_grad()
    def collect(
        self,
        policy: Policy,
        actors: nn.Module | None = None,
        steps: int | None = None,
        after_step: Callable[[TensorDictBase], None] | None = None,
    ) -> tuple[TensorDictBase, dict[str, torch.Tensor]]:
        """-> (batch [envs, time], finished episodes: per-group returns [episodes, agents] and lengths).
        `actors` is not needed here: `policy` runs in this process. `steps` per env (default: a batch's);
        `after_step`, if given, sees every step's TensorDict (with its `"next"` outcome) before the next."""
        batch_steps = []
        for _ in range(steps or self.steps_per_batch):
            td = policy(self._td)
            td, self._td = self.env.step_and_maybe_reset(td)
            carry_recurrent_state(td, self._td)
            if after_step is not None:
                after_step(td)
            batch_steps.append(td)
        batch = torch.stack(batch_steps, dim=1)
        return batch, self._finished_episodes(batch)

    def _finished_episodes(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """Returns and lengths of the episodes that ended in `batch`, continuing the running sums."""
        done = batch["next", "done"].squeeze(-1)  # [E, T]
        rewards = {name: batch["next", name, "reward"].squeeze(-1) for name in self._episode_return}
        ended_returns = {name: torch.zeros_like(r) for name, r in rewards.items()}
        ended_lengths = torch.zeros_like(done, dtype=torch.long)
        for t in range(done.shape[1]):  # a loop over time only; every op covers all envs and agents
            self._episode_length += 1
            ended = done[:, t]
            ended_lengths[:, t] = self._episode_length * ended
            self._episode_length *= ~ended
            for name, running in self._episode_return.items():
                running += rewards[name][:, t]
                ended_returns[name][:, t] = running * ended.unsqueeze(-1)
                running *= ~ended.unsqueeze(-1)
        result = {f"{name}/return": ended_returns[name][done] for name in ended_returns}
        result["length"] = ended_lengths[done]
        return result

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this collector is (env state included)."""
        from marl.envs.vmas_state import get_env_state

        # Envs that carry their own state (PettingZoo copies) save it themselves; VMAS is read off its world.
        env_state = self.env.snapshot() if hasattr(self.env, "snapshot") else get_env_state(self.env)
        return {
            "td": td_state(self._td),
            "episode_return": {k: v.clone() for k, v in self._episode_return.items()},
            "episode_length": self._episode_length.clone(),
            "env": env_state,
        }

    def close(self) -> None:
        """Nothing to release: the env belongs to the caller."""

    def load_state_dict(self, state: dict) -> None:
        from marl.envs.vmas_state import set_env_state

        if hasattr(self.env, "restore"):
            self.env.restore(state["env"])
            if state["env"] is None:  # the env could not be saved: it restarted its episodes
                self._td = self.env.reset()
                return
        else:
            set_env_state(self.env, state["env"])
        self._td = td_restored(self._td, state["td"])
        for name, value in state["episode_return"].items():
            self._episode_return[name] = value.to(self.env.device).clone()
        self._episode_length = state["episode_length"].to(self.env.device).clone()


class EnvShards:
    """Several env instances stepped as one batch, their envs concatenated in order (a population's
    specialists each play in kitchens that pay only their own recipe): the part of a TorchRL env that
    `LocalCollector` uses."""

    def __init__(self, envs: list[EnvBase]):
        self.envs = envs
        self.sizes = [int(env.batch_size[0]) for env in envs]
        self.device = envs[0].device
        self.batch_size = torch.Size([sum(self.sizes)])

    def reset(self) -> TensorDictBase:
        return torch.cat([env.reset() for env in self.envs])

    def step_and_maybe_reset(self, td: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        parts = [env.step_and_maybe_reset(part) for env, part in zip(self.envs, td.split(self.sizes))]
        return torch.cat([out for out, _ in parts]), torch.cat([following for _, following in parts])

    def snapshot(self) -> list:
        return [env.snapshot() for env in self.envs]

    def restore(self, states: list) -> None:
        for env, state in zip(self.envs, states, strict=True):
            env.restore(state)


@torch.no_grad()
def run_episodes(
    env: EnvBase,
    env_info: EnvInfo,
    policy: Policy,
    record: Callable | None = None,
    trace: bool = False,
    after_step: Callable[[TensorDictBase], None] | None = None,
) -> dict:
    """Run one episode in every env of the batch (from a fresh reset); -> per-group returns and lengths.

    Envs that finish early stop accumulating (their auto-reset continuation is ignored). `record`, if
    given, is called after the reset and after every step of env 0's episode (to render frames). With
    `trace`, the result also holds `"trace"`: per step, each group's observations (and action masks)
    `[envs, time, agents, ...]`, the agents' positions `[envs, time, n_agents, dim]` where the env has
    them, and `valid [envs, time]` (False after an env's episode ended).

    Per-agent scalars the env reports under `(group, "info")` (VMAS scenarios' `info()`, e.g. patrol_search's
    mean_idleness and time_to_find) are read at each env's last step, averaged over agents: `"info/<key>"
    [envs]`. `after_step`, if given, sees every step's TensorDict (with its `"next"` outcome) of all envs (a
    recurrent partner's hook for its rewards).
    """
    from marl.envs.factory import agent_positions

    td = env.reset()
    n_envs = env.batch_size[0]  # may differ from the training env's batch
    returns = {g.name: torch.zeros(n_envs, g.n_agents, device=env.device) for g in env_info.groups}
    lengths = torch.zeros(n_envs, dtype=torch.long, device=env.device)
    running = torch.ones(n_envs, dtype=torch.bool, device=env.device)
    final_info: dict[str, torch.Tensor] = {}
    steps: list[dict[str, torch.Tensor]] = []
    if record is not None:
        record()
    for _ in range(env_info.max_steps):
        if trace:
            step = {"valid": running.clone()}
            for g in env_info.groups:
                step[f"{g.name}/observation"] = td[g.name, "observation"].clone()
                if (g.name, "action_mask") in td.keys(include_nested=True):
                    step[f"{g.name}/action_mask"] = td[g.name, "action_mask"].clone()
            positions = agent_positions(env, env_info)
            if positions is not None:
                step["positions"] = positions
            steps.append(step)
        td = policy(td)
        td, next_td = env.step_and_maybe_reset(td)
        carry_recurrent_state(td, next_td)
        if after_step is not None:
            after_step(td)
        if record is not None and running[0] and not td["next", "done"][0]:
            record()  # env 0's world, unless it just ended (then it already shows the next episode)
        for name in returns:
            returns[name] += td["next", name, "reward"].squeeze(-1) * running.unsqueeze(-1)
        for key, value in _agent_info(td["next"], env_info).items():
            final_info[key] = torch.where(running, value, final_info.get(key, value))
        lengths += running
        running &= ~td["next", "done"].squeeze(-1)
        td = next_td
        if not running.any():
            break
    result = {**{f"{name}/return": r for name, r in returns.items()}, "length": lengths}
    result.update({f"info/{key}": value for key, value in final_info.items()})
    if trace:
        result["trace"] = {key: torch.stack([step[key] for step in steps], dim=1) for key in steps[0]}
    return result


def heldout_episodes(
    env: EnvBase,
    env_info: EnvInfo,
    policy: Policy,
    seed: int,
    record=None,
    trace: bool = False,
    after_step=None,
) -> dict[str, torch.Tensor]:
    """`run_episodes` from the starts that `seed` fixes: the same episodes for every policy given the same
    seed (a learned team and a hand-designed one meet the same sources at the same times; a population's
    pairs and its generalist meet the same kitchens).

    Runs inside `untouched_rng`: VMAS keeps one private RNG for all its envs, and seeding the evaluation
    env would otherwise reseed training's, so runs with and without evaluation, or resumed, train
    identically."""
    with untouched_rng(env.device):
        env.set_seed(seed)
        torch.manual_seed(seed)
        return run_episodes(env, env_info, policy, record, trace, after_step)


def _agent_info(step: TensorDictBase, env_info: EnvInfo) -> dict[str, torch.Tensor]:
    """{key: [envs]}: each per-agent scalar under `(group, "info")`, averaged over the agents reporting it."""
    values: dict[str, list[torch.Tensor]] = {}
    for group in env_info.groups:
        if (group.name, "info") not in step.keys(include_nested=True):
            continue
        info = step[group.name, "info"]
        for key in info.keys():  # noqa: SIM118 - iterating a TensorDict walks its batch, not its keys
            value = info[key]
            if isinstance(value, torch.Tensor) and value[0, 0].numel() == 1:
                values.setdefault(key, []).append(value.reshape(value.shape[0], -1).float())
    return {key: torch.cat(parts, dim=-1).mean(-1) for key, parts in values.items()}

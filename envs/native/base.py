"""Shared machinery of the native (pure batched torch) environments.

`NativeEnv` is a TorchRL `EnvBase` whose whole state is a handful of tensors with the env batch as first
dimension, stepped with tensor ops over all environments at once (CPU or CUDA, no Python loop over
environments). Subclasses only describe their game:

- `state_names`: the attributes holding state tensors (saved by `snapshot`, put back by `restore`);
- `_reset_envs(mask)`: start new episodes where `mask [envs]` is True, leave the others untouched;
- `_advance(actions)`: apply the actions `[envs, agents]` -> (shared reward `[envs]`, terminated `[envs]`);
- `_observe()`: observations `[envs, agents, obs_dim]`; `_info()`: `{key: [envs]}` episode information.

It writes TorchRL's multi-agent key layout with one group of agents (`group_map`):

    (group, "observation")      [envs, agents, obs_dim] float
    (group, "action")           [envs, agents] long, categorical with `n_actions` choices
    (group, "reward")           [envs, agents, 1] float (the shared team reward, repeated per agent)
    (group, "info", key)        [envs, agents, 1] float (the same value for every agent, like VmasEnv)
    "done", "terminated", "truncated"   [envs, 1] bool

An episode is truncated when it reaches `max_steps` without terminating. Randomness comes from a private
`torch.Generator` on the env's device, seeded by `seed` and by `set_seed`, so the global RNG streams of
the caller are never touched.
"""

from __future__ import annotations

import io

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from marl.errors import ConfigError


class NativeEnv(EnvBase):
    """Base class of the batched torch environments in `envs/native/` (see the module docstring)."""

    group_name: str = "agents"
    agent_names: tuple[str, ...] = ()
    info_keys: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()

    def __init__(self, num_envs: int, max_steps: int, device: torch.device | str, seed: int) -> None:
        if num_envs < 1 or max_steps < 1:
            raise ConfigError(
                f"{type(self).__name__} needs num_envs >= 1 and max_steps >= 1, got num_envs={num_envs}, "
                f"max_steps={max_steps}."
            )
        super().__init__(device=torch.device(device), batch_size=torch.Size([num_envs]))
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.group_map = {self.group_name: list(self.agent_names)}
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.step_count = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------------------------- subclass API
    def _reset_envs(self, mask: torch.Tensor) -> None:
        raise NotImplementedError

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _observe(self) -> torch.Tensor:
        raise NotImplementedError

    def _info(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- specs
    def _make_specs(self, obs_dim: int, n_actions: int) -> None:
        """Observation (with info), categorical action, reward and done specs for one group of agents."""
        n, device = self.num_envs, self.device
        shape = (n, len(self.agent_names))
        info = Composite(
            {key: Unbounded((*shape, 1), device=device) for key in self.info_keys}, shape=shape, device=device
        )
        group_obs = Composite(
            {"observation": Unbounded((*shape, obs_dim), device=device), "info": info},
            shape=shape,
            device=device,
        )
        self.observation_spec = Composite({self.group_name: group_obs}, shape=(n,), device=device)
        action = Categorical(n_actions, shape, dtype=torch.long, device=device)
        self.action_spec = Composite(
            {self.group_name: Composite({"action": action}, shape=shape, device=device)},
            shape=(n,),
            device=device,
        )
        reward = Composite({"reward": Unbounded((*shape, 1), device=device)}, shape=shape, device=device)
        self.reward_spec = Composite({self.group_name: reward}, shape=(n,), device=device)
        flag = Categorical(2, (n, 1), dtype=torch.bool, device=device)
        self.done_spec = Composite(
            {"done": flag.clone(), "terminated": flag.clone(), "truncated": flag.clone()},
            shape=(n,),
            device=device,
        )

    # ------------------------------------------------------------------------------------ reset / step
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        """New episodes where `tensordict["_reset"]` is True (everywhere without one)."""
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        if tensordict is not None and "_reset" in tensordict.keys():  # noqa: SIM118 - keys, not batch
            mask = tensordict["_reset"].reshape(self.num_envs).to(self.device)
        self.step_count.masked_fill_(mask, 0)
        self._reset_envs(mask)
        no = torch.zeros(self.num_envs, 1, dtype=torch.bool, device=self.device)
        return self._output(None, no, no)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = tensordict[self.group_name, "action"].to(self.device)
        self.step_count += 1
        reward, terminated = self._advance(actions.long())
        truncated = (self.step_count >= self.max_steps) & ~terminated
        return self._output(reward, terminated.unsqueeze(-1), truncated.unsqueeze(-1))

    def _output(
        self, reward: torch.Tensor | None, terminated: torch.Tensor, truncated: torch.Tensor
    ) -> TensorDictBase:
        n_agents = len(self.agent_names)
        # Repeated, not expanded: TorchRL writes partial resets into these tensors in place.
        info = {
            key: value.float().view(-1, 1, 1).repeat(1, n_agents, 1) for key, value in self._info().items()
        }
        group = {"observation": self._observe(), "info": info}
        if reward is not None:
            group["reward"] = reward.float().view(-1, 1, 1).repeat(1, n_agents, 1)
        return TensorDict(
            {
                self.group_name: TensorDict(group, batch_size=(self.num_envs, n_agents)),
                "done": terminated | truncated,
                "terminated": terminated.clone(),
                "truncated": truncated.clone(),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _set_seed(self, seed: int | None) -> None:
        self.generator.manual_seed(int(seed or 0))

    # ------------------------------------------------------------------------------------ save / load
    def snapshot(self) -> bytes:
        """The state tensors and the generator state as bytes (loadable with `weights_only`), for an
        exact resume with `restore`."""
        state = {
            "generator": self.generator.get_state(),
            "tensors": {name: getattr(self, name).cpu() for name in ("step_count", *self.state_names)},
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def restore(self, state: bytes | None) -> None:
        """Put back a `snapshot`; None (nothing was saved) starts new episodes everywhere."""
        if state is None:
            self._reset()
            return
        saved = torch.load(io.BytesIO(state), weights_only=True)
        for name, value in saved["tensors"].items():
            setattr(self, name, value.to(self.device))
        self.generator.set_state(saved["generator"])


def index_mask(subset: list[int] | None, size: int, name: str, device: torch.device) -> torch.Tensor:
    """Bool mask [size] of the indices in `subset` (all True for None, all False for an empty list: e.g. a
    paying set where nothing pays); out-of-range indices are an error."""
    if subset is None:
        return torch.ones(size, dtype=torch.bool, device=device)
    indices = [subset] if isinstance(subset, int) else list(subset)
    bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < size]
    if bad:
        raise ConfigError(f"{name}={subset!r} must be a list of indices in 0..{size - 1}; invalid: {bad}.")
    mask = torch.zeros(size, dtype=torch.bool, device=device)
    mask[indices] = True
    return mask

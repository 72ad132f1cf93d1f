"""A cooperative two-seat matrix game with K incompatible conventions (block-diagonal payoff).

Both seats pick an action in `0 .. k * actions_per_convention - 1`; action `a` belongs to convention
(block) `a // actions_per_convention`. The payoff is 1 when both actions lie in the same block, whatever
the actions inside it (the payoff matrix is block-diagonal with all-ones blocks of size m x m), else 0.
So every block is an equally good convention, and two partners that settled on different ones earn
nothing together: the textbook setting for cross-play, XP-min populations and specialist partners.
`conventions` restricts which blocks pay (a specialist is trained on one block; agreeing on another
block then pays 0, and `success` is 0).

`horizon` T = 1 is the one-shot game. With T > 1 the game is repeated T times and, by default, only the
final step pays (`reward_every_step=False`): the earlier steps are free signalling, so a seat can show its
convention before both commit. With `reward_every_step=True` every step pays payoff / T (return in [0, 1]).
The episode terminates after T steps (`max_steps` must be at least T).

Observation of a seat, `2 * n_actions + 1` floats: one-hot of the partner's previous action, one-hot of
its own previous action (both zeros at the first step), and the step counter `t / T` (0 at the first step).
Actions are categorical, `n_actions = k * actions_per_convention`. Both seats `seat_0`, `seat_1` form
the group "agents" and share the team reward.

Info (`("agents", "info", key)`, same value for both seats), describing the **last step played** (before
the first step: -1 and 0), so at the episode's final step it is the episode's outcome:
    convention  the block both chose at the last step, -1 if they chose different blocks
                (reported even when that block does not pay under `conventions`: it labels behaviour)
    success     1.0 if the last step paid (same block, and that block is in `conventions`), else 0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from marl.envs.native.base import NativeEnv, index_mask

from marl.errors import ConfigError


class MatrixGameEnv(NativeEnv):
    """K-convention coordination game for two seats, batched over `num_envs` (see the module docstring)."""

    agent_names = ("seat_0", "seat_1")
    info_keys = ("convention", "success")
    state_names = ("previous_action", "last_convention", "last_success")

    def __init__(
        self,
        k: int = 3,
        horizon: int = 1,
        actions_per_convention: int = 1,
        conventions: list[int] | None = None,
        reward_every_step: bool = False,
        num_envs: int = 1,
        max_steps: int | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        max_steps = horizon if max_steps is None else max_steps
        if k < 1 or horizon < 1 or actions_per_convention < 1:
            raise ConfigError(
                f"MatrixGameEnv needs k >= 1, horizon >= 1 and actions_per_convention >= 1, got k={k}, "
                f"horizon={horizon}, actions_per_convention={actions_per_convention}."
            )
        if max_steps < horizon:
            raise ConfigError(
                f"The matrix game lasts horizon={horizon} steps but env.max_steps={max_steps} would cut it "
                f"short. Set env.max_steps={horizon} (or more)."
            )
        super().__init__(num_envs, max_steps, device, seed)
        self.k, self.horizon, self.block_size = k, horizon, actions_per_convention
        self.n_actions = k * actions_per_convention
        self.reward_every_step = reward_every_step
        self.paying_conventions = index_mask(conventions, k, "conventions", self.device)
        n = num_envs
        self.previous_action = torch.full((n, 2), -1, dtype=torch.long, device=self.device)
        self.last_convention = torch.full((n,), -1, dtype=torch.long, device=self.device)
        self.last_success = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._make_specs(obs_dim=2 * self.n_actions + 1, n_actions=self.n_actions)

    def _reset_envs(self, mask: torch.Tensor) -> None:
        self.previous_action.masked_fill_(mask.unsqueeze(-1), -1)
        self.last_convention.masked_fill_(mask, -1)
        self.last_success.masked_fill_(mask, False)

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        block = actions // self.block_size  # [envs, 2]
        agree = block[:, 0] == block[:, 1]
        paid = agree & self.paying_conventions[block[:, 0]]
        self.last_convention = torch.where(agree, block[:, 0], -1)
        self.last_success = paid
        self.previous_action = actions.clone()
        final = self.step_count >= self.horizon
        reward = paid.float() / self.horizon if self.reward_every_step else (paid & final).float()
        return reward, final

    def _observe(self) -> torch.Tensor:
        played = self.previous_action >= 0
        own = F.one_hot(self.previous_action.clamp(min=0), self.n_actions) * played.unsqueeze(-1)
        partner = own.flip(1)  # seat 0's partner is seat 1 and vice versa
        step = (self.step_count.float() / self.horizon).view(-1, 1, 1).expand(-1, 2, 1)
        return torch.cat([partner.float(), own.float(), step], dim=-1)

    def _info(self) -> dict[str, torch.Tensor]:
        return {"convention": self.last_convention, "success": self.last_success}

"""A recurrent (GRU) actor-critic for categorical actions, stepped online and replayed over sequence chunks.

Each step the network reads the observation, its own previous action (one-hot) and the previous reward, so
its hidden state can carry what it learned about its partner during an episode (the population's generalist):

    [obs, one_hot(prev_action), prev_reward] -> encoder MLP -> GRU cell -> policy logits, value

Where an episode starts, the hidden state is reset to zeros and the previous action and reward are masked
(a step never sees the last episode). Two ways through the same cell:

- ``step``: one step of a batch of envs (rollouts), carrying the hidden state from call to call;
- ``evaluate_chunks``: PPO's replay of fixed-length chunks from the hidden states stored at the chunk starts
  during the rollout (truncated backpropagation through time). The encoder and the heads run on all
  ``chunks * length`` samples at once; only the GRU cell loops over the chunk's time steps.

Leading batch dimensions are free (``[envs]``, ``[envs, agents]``, ...): a caller batching several agents
through one shared network flattens nothing itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from marl.agents.sharing import ACTIVATIONS
from torch import Tensor, nn

HIDDEN_GAIN = math.sqrt(2.0)  # the platform's orthogonal init: sqrt(2) hidden, 0.01 policy, 1.0 value


class RecurrentActorCritic(nn.Module):
    """Encoder MLP -> GRU cell -> categorical policy logits and a value, over any leading batch shape.

    Args:
        obs_dim: observation size.  n_actions: number of discrete actions.
        hidden_size: the GRU's hidden state size.
        encoder_sizes: hidden layer sizes of the MLP in front of the GRU (empty: the GRU reads the inputs).
        activation: one of ``agents.sharing.ACTIVATIONS``.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_size: int = 64,
        encoder_sizes: Sequence[int] = (64,),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}.")
        self.obs_dim, self.n_actions, self.hidden_size = obs_dim, n_actions, hidden_size
        self.encoder_sizes, self.activation_name = list(encoder_sizes), activation
        self.activation = ACTIVATIONS[activation]
        sizes = [obs_dim + n_actions + 1, *encoder_sizes]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.gru = nn.GRUCell(sizes[-1], hidden_size)
        self.policy_head = nn.Linear(hidden_size, n_actions)
        self.value_head = nn.Linear(hidden_size, 1)
        for layer, gain in [*((layer, HIDDEN_GAIN) for layer in self.encoder), (self.policy_head, 0.01)]:
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
        nn.init.orthogonal_(self.value_head.weight, 1.0)
        nn.init.zeros_(self.value_head.bias)

    def spec(self) -> dict:
        """The constructor arguments, to save next to the weights: ``RecurrentActorCritic(**spec)``."""
        return {
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "hidden_size": self.hidden_size,
            "encoder_sizes": list(self.encoder_sizes),
            "activation": self.activation_name,
        }

    def initial_state(self, batch: int | Sequence[int]) -> Tensor:
        """Zero hidden states ``[*batch, hidden_size]`` on the parameters' device."""
        shape = (batch,) if isinstance(batch, int) else tuple(batch)
        return torch.zeros(*shape, self.hidden_size, device=self.value_head.weight.device)

    def step(
        self, obs: Tensor, prev_action: Tensor, prev_reward: Tensor, hidden: Tensor, done_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step of a batch.

        Args:
            obs: ``[..., obs_dim]``.  prev_action: ``[...]`` long, the previous step's action (-1: none).
            prev_reward: ``[...]``.  hidden: ``[..., hidden_size]``, the state after the previous step.
            done_mask: ``[...]`` bool, True where the previous step ended an episode (this step starts a new
                one): the hidden state is reset and the previous action and reward are ignored there.
        Returns:
            (logits ``[..., n_actions]``, value ``[...]``, new hidden ``[..., hidden_size]``).
        """
        hidden = hidden * (~done_mask).unsqueeze(-1).to(hidden.dtype)
        new_hidden = gru_cell(self.gru, self._encode(obs, prev_action, prev_reward, done_mask), hidden)
        return self.policy_head(new_hidden), self.value_head(new_hidden).squeeze(-1), new_hidden

    def evaluate_chunks(
        self,
        obs_seq: Tensor,
        prev_action_seq: Tensor,
        prev_reward_seq: Tensor,
        start_hidden: Tensor,
        resets: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Replay chunks of ``L`` consecutive steps from the hidden states stored at their starts.

        Args:
            obs_seq: ``[B, L, ..., obs_dim]``; prev_action_seq, prev_reward_seq, resets: ``[B, L, ...]``
                (``resets`` is ``step``'s ``done_mask`` at every step, so episodes may start inside a chunk).
            start_hidden: ``[B, ..., hidden_size]``, the hidden state before each chunk's first step.
        Returns:
            (logits ``[B, L, ..., n_actions]``, values ``[B, L, ...]``), as ``step`` gives them step by step.
        """
        x = self._encode(obs_seq, prev_action_seq, prev_reward_seq, resets)  # all steps at once
        features = gru_replay(self.gru, x, start_hidden, resets)
        return self.policy_head(features), self.value_head(features).squeeze(-1)

    def _encode(self, obs: Tensor, prev_action: Tensor, prev_reward: Tensor, start: Tensor) -> Tensor:
        """The GRU's input: the encoder on ``[obs, one_hot(prev_action), prev_reward]`` (masked at starts)."""
        seen = ((prev_action >= 0) & ~start).unsqueeze(-1)
        action = F.one_hot(prev_action.long().clamp(min=0), self.n_actions).to(obs.dtype) * seen
        reward = (prev_reward.to(obs.dtype) * ~start).unsqueeze(-1)
        x = torch.cat([obs, action, reward], dim=-1)
        for layer in self.encoder:
            x = self.activation(layer(x))
        return x


def gru_cell(cell: nn.GRUCell, x: Tensor, hidden: Tensor) -> Tensor:
    """A GRU cell on any leading batch shape: ``x [..., in]``, ``hidden [..., H]`` -> ``[..., H]``."""
    flat = cell(x.reshape(-1, x.shape[-1]), hidden.reshape(-1, hidden.shape[-1]))
    return flat.view(hidden.shape)


def gru_replay(cell: nn.GRUCell, x: Tensor, hidden: Tensor, resets: Tensor) -> Tensor:
    """Replay chunks of ``L`` steps through a GRU cell (truncated BPTT): ``x [B, L, *batch, in]`` from the
    states before each chunk ``hidden [B, *batch, H]``; the state is zeroed before a step where ``resets``
    (``[B, L]`` or ``[B, L, *batch]``) is True. -> the state after every step ``[B, L, *batch, H]``. The
    recurrence is the only loop, over the chunk's steps."""
    keep = (~resets).to(x.dtype)
    keep = keep.reshape(*keep.shape, *([1] * (x.dim() - keep.dim())))  # broadcast over the rest
    states = []
    for t in range(x.shape[1]):
        hidden = gru_cell(cell, x[:, t], hidden * keep[:, t])
        states.append(hidden)
    return torch.stack(states, dim=1)


__all__ = ["RecurrentActorCritic", "gru_cell", "gru_replay"]

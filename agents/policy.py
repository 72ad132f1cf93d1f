"""Actor and critic for every agent group: a parameter-sharing scheme (agents/sharing.py) plus a head.

`ActorCritic.act(td)` is the policy the collector calls: it reads `(group, "observation")` and writes
`(group, "action")` (what the env receives), `(group, "sample")` (what the distribution produced, e.g. the
pre-tanh Gaussian sample) and `(group, "log_prob")`. Anything with that signature can drive a collector, so
a different policy per seat (a frozen partner beside a learner) is just another callable.

With `model.recurrent`, each actor is MLP -> GRU cell -> linear head: the MLP and the head follow the sharing
scheme, the GRU cell is shared within a group, and the critic stays feed-forward. Its state travels in the
step's TensorDict (the RNN_STATE keys below), carried from step to step by the collector, and PPO replays
whole chunks of steps from the stored states (marl/ppo.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from marl.agents.encoders import check_encoder, critic_encoder, observation_encoder, with_encoder
from marl.agents.recurrent import gru_cell, gru_replay
from marl.agents.sharing import ACTIVATIONS, TeamMLP
from marl.envs.factory import EnvInfo, GroupInfo
from tensordict import TensorDictBase
from torch import nn

from marl.errors import ConfigError

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# Recurrent actors (model.recurrent): keys of the GRU state in a step's TensorDict. The policy reads
# (group, RNN_STATE) and EPISODE_START [envs] and writes (group, RNN_STATE_NEXT); the collector carries
# RNN_STATE_NEXT into the next step's RNN_STATE and sets EPISODE_START where the step ended an episode.
RNN_STATE, RNN_STATE_NEXT, EPISODE_START = "rnn_state", "rnn_state_next", "episode_start"
MIN_STD = 1e-4


def _gaussian_log_prob(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((x - loc) / scale) ** 2 - scale.log() - LOG_SQRT_2PI).sum(-1)


def _gaussian_entropy(scale: torch.Tensor) -> torch.Tensor:
    return (0.5 + LOG_SQRT_2PI + scale.log()).sum(-1)


def _log_one_minus_tanh_sq(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2), computed stably (no tanh saturation)."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def log_softmax_last(x: torch.Tensor) -> torch.Tensor:
    """``x.log_softmax(-1)``, fast for a few actions on CPU: PyTorch's CPU kernel over a short last dim is
    about 20x slower (forward and backward) than over a leading one, so the dim is moved in front first."""
    if x.device.type != "cpu" or x.shape[-1] > 64:
        return x.log_softmax(-1)
    return x.movedim(-1, 0).contiguous().log_softmax(0).movedim(0, -1)


def _categorical_log_probs(
    logits: torch.Tensor, mask: torch.Tensor | None, nvec: tuple[int, ...] | None
) -> list[torch.Tensor]:
    """Log-probabilities of each categorical head (one for Discrete, one per entry for MultiDiscrete),
    with masked-out actions at -inf."""
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    if nvec is None:
        return [log_softmax_last(logits)]
    return [log_softmax_last(part) for part in logits.split(list(nvec), dim=-1)]


def _categorical_entropy(log_p: torch.Tensor) -> torch.Tensor:
    return -(log_p.exp() * log_p.clamp_min(torch.finfo(log_p.dtype).min)).sum(-1)


class Actor(nn.Module):
    """Policy of one group: categorical for discrete actions, (tanh-)Gaussian for continuous ones.

    Continuous policies output a state-dependent mean and scale per agent; the scale is
    softplus(raw + b) with b chosen so that it starts at `initial_std`. `tanh_gaussian` squashes the
    sample into the action bounds (log-prob with the change-of-variables term; the entropy bonus uses the
    base Gaussian's entropy, which has a closed form). `gaussian` clips the sample to the bounds when it is
    sent to the env and scores the unclipped sample.
    """

    def __init__(
        self,
        group: GroupInfo,
        distribution: str,
        initial_std: float,
        recurrent_size: int = 0,
        encoder: str = "auto",
        **net_kwargs,
    ):
        super().__init__()
        # image observations: a conv encoder in front of the MLP (agents/encoders.py), else obs as they are
        obs_encoder, obs_dim = observation_encoder(group, encoder, **net_kwargs)
        self.discrete = group.discrete
        self.nvec = group.action_nvec  # multi-discrete: one categorical head per entry
        self.distribution = "categorical" if group.discrete else distribution
        self.n_agents, self.recurrent_size = group.n_agents, recurrent_size
        out_dim = group.action_dim if group.discrete else 2 * group.action_dim
        if recurrent_size:  # obs -> MLP (the scheme) -> GRU cell (shared in the group) -> linear head
            self.net = with_encoder(
                obs_encoder,
                TeamMLP(obs_dim, recurrent_size, group.n_agents, output_gain=math.sqrt(2.0), **net_kwargs),
            )
            self.activation = ACTIVATIONS[net_kwargs.get("activation", "tanh")]
            self.gru = nn.GRUCell(recurrent_size, recurrent_size)
            head_kwargs = dict(net_kwargs, hidden_sizes=[], agent_id=False)
            self.head = TeamMLP(recurrent_size, out_dim, group.n_agents, output_gain=0.01, **head_kwargs)
        else:
            net = TeamMLP(obs_dim, out_dim, group.n_agents, output_gain=0.01, **net_kwargs)
            self.net = with_encoder(obs_encoder, net)
        if not group.discrete:
            self.register_buffer("low", group.action_low.clone().float())
            self.register_buffer("high", group.action_high.clone().float())
            self.scale_bias = math.log(math.expm1(initial_std))

    @property
    def recurrent(self) -> bool:
        return self.recurrent_size > 0

    def initial_state(self, batch_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Zero GRU states ``[*batch_shape, n_agents, recurrent_size]``."""
        return torch.zeros(*batch_shape, self.n_agents, self.recurrent_size, device=device)

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.discrete:
            return out, None
        loc, raw_scale = out.chunk(2, dim=-1)
        return loc, F.softplus(raw_scale + self.scale_bias) + MIN_STD

    def _params(
        self, obs: torch.Tensor, hidden: torch.Tensor | None = None, start: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Distribution parameters of one step (recurrent: from ``hidden``, zeroed where ``start``)."""
        if not self.recurrent:
            return self._split(self.net(obs))
        return self._split(self.head(self._step(obs, hidden, start)))

    def _step(
        self, obs: torch.Tensor, hidden: torch.Tensor | None, start: torch.Tensor | None
    ) -> torch.Tensor:
        """The GRU state after one step ``[..., n_agents, recurrent_size]``; no state (or ``start`` [...]
        True) means the episode starts here."""
        if hidden is None:
            hidden = self.initial_state(obs.shape[:-2], obs.device)
        elif start is not None:
            hidden = hidden * (~start).unsqueeze(-1).unsqueeze(-1).to(hidden.dtype)
        return gru_cell(self.gru, self.activation(self.net(obs)), hidden)

    def _sequence_params(
        self, obs: torch.Tensor, hidden: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Replay chunks ``obs [B, L, n, D]`` from the states before their first steps ``hidden [B, n, H]``,
        resetting where ``starts [B, L]``: the parameters ``step`` gave at every step, ``[B, L, n, ...]``.
        The MLP and the head see all steps at once; only the GRU cell loops over the chunk's steps."""
        return self._split(self.head(gru_replay(self.gru, self.activation(self.net(obs)), hidden, starts)))

    def counterfactual_params(
        self, obs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every agent's policy on each of the observations `obs [B, obs_dim]` (the same observation for
        all agents, as SND compares them): -> (probs [B, n, actions], None) for categorical policies, or
        (loc, scale) [B, n, action_dim] of the (pre-squash) Gaussian. `mask [B, actions]` applies to all."""
        n = self.net.n_agents
        out, scale = self._params(obs.unsqueeze(-2).expand(*obs.shape[:-1], n, obs.shape[-1]))
        if not self.discrete:
            return out, scale
        heads = _categorical_log_probs(out, None if mask is None else mask.unsqueeze(-2), self.nvec)
        probs = heads[0].exp()
        for head in heads[1:]:  # multi-discrete: the joint distribution of the independent heads
            probs = (probs.unsqueeze(-1) * head.exp().unsqueeze(-2)).flatten(-2)
        return probs, None

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(u) + 1.0) * 0.5 * (self.high - self.low)

    def _to_env_action(self, sample: torch.Tensor) -> torch.Tensor:
        if self.distribution == "tanh_gaussian":
            return self._squash(sample)
        return torch.maximum(torch.minimum(sample, self.high), self.low)

    def sample(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        mask: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        start: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> (env action, raw sample, log-prob of the sample [..., n_agents], new GRU state or None). A
        recurrent actor reads its state ``hidden`` (none, or ``start`` [...] True: an episode starts)."""
        state = self._step(obs, hidden, start) if self.recurrent else None
        loc, scale = self._params(obs) if state is None else self._split(self.head(state))
        if self.discrete:
            samples, log_prob = [], 0.0
            for log_p in _categorical_log_probs(loc, mask, self.nvec):
                if deterministic:
                    sample = log_p.argmax(-1)
                else:  # Gumbel-max: one vectorised draw for every env and agent
                    gumbel = -torch.empty_like(log_p).exponential_().log()
                    sample = (log_p + gumbel).argmax(-1)
                samples.append(sample)
                log_prob = log_prob + log_p.gather(-1, sample.unsqueeze(-1)).squeeze(-1)
            sample = samples[0] if self.nvec is None else torch.stack(samples, dim=-1)
            return sample, sample, log_prob, state
        sample = loc if deterministic else loc + scale * torch.randn_like(loc)
        return self._to_env_action(sample), sample, self._log_prob(sample, loc, scale), state

    def _log_prob(self, sample: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        log_prob = _gaussian_log_prob(sample, loc, scale)
        if self.distribution == "tanh_gaussian":
            half_range = 0.5 * (self.high - self.low)
            log_prob = log_prob - (_log_one_minus_tanh_sq(sample) + half_range.log()).sum(-1)
        return log_prob

    def evaluate(
        self,
        obs: torch.Tensor,
        sample: torch.Tensor,
        mask: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        starts: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """-> (log-prob of `sample`, entropy, distribution stats) under the current parameters. A recurrent
        actor takes chunks: ``obs [B, L, n, D]``, the states before them ``hidden [B, n, H]`` and where
        episodes start ``starts [B, L]``."""
        loc, scale = self._params(obs) if not self.recurrent else self._sequence_params(obs, hidden, starts)
        if self.discrete:
            heads = _categorical_log_probs(loc, mask, self.nvec)
            choices = [sample.long()] if self.nvec is None else sample.long().unbind(-1)
            log_prob = sum(log_p.gather(-1, c.unsqueeze(-1)).squeeze(-1) for log_p, c in zip(heads, choices))
            return log_prob, sum(_categorical_entropy(log_p) for log_p in heads), {}
        return self._log_prob(sample, loc, scale), _gaussian_entropy(scale), {"std": scale.detach().mean()}


class Critic(nn.Module):
    """Value function of one group: per-agent observations (IPPO) or one global input (MAPPO)."""

    def __init__(
        self,
        group: GroupInfo,
        input_dim: int,
        centralised: bool,
        encoder: str = "auto",
        groups: tuple[GroupInfo, ...] | None = None,
        **net_kwargs,
    ):
        super().__init__()
        self.centralised = centralised
        # images: encoded per agent (IPPO), or each agent's once and concatenated (MAPPO, from `groups`)
        input_encoder, input_dim = critic_encoder(
            group, input_dim, centralised, groups, encoder, **net_kwargs
        )
        net = TeamMLP(input_dim, 1, group.n_agents, output_gain=1.0, **net_kwargs)
        self.net = with_encoder(input_encoder, net)

    def forward(self, critic_input: torch.Tensor) -> torch.Tensor:
        """critic_input [..., n_agents, obs] (IPPO) or [..., global] (MAPPO) -> values [..., n_agents]."""
        return self.net(critic_input, shared_input=self.centralised).squeeze(-1)


def role_indices(env_info: EnvInfo, roles: dict[str, list[int]] | None) -> dict[str, list[int] | None]:
    """Map the config's roles ({role: [global agent indices]}) to a role id per agent of each group."""
    if roles is None:
        return {g.name: None for g in env_info.groups}
    n = env_info.n_agents
    role_of = [-1] * n
    for role_id, (role, members) in enumerate(roles.items()):
        for agent in members:
            if not 0 <= agent < n:
                raise ConfigError(
                    f"sharing.roles.{role} lists agent {agent}, but the env has {n} agents "
                    f"(indices 0..{n - 1}: "
                    f"{', '.join(env_info.agent_names)}). Fix the role's agent indices."
                )
            role_of[agent] = role_id
    missing = [i for i, r in enumerate(role_of) if r < 0]
    if missing:
        raise ConfigError(
            f"sharing.roles does not assign agents {missing} to any role; every one of the env's {n} agents "
            f"needs exactly one role (for example roles: {{a: [0, 1], b: [2, 3]}})."
        )
    result, start = {}, 0
    for g in env_info.groups:
        ids = role_of[start : start + g.n_agents]
        start += g.n_agents
        used = sorted(set(ids))  # the grouped scheme expects contiguous role ids 0..R-1 within the group
        result[g.name] = [used.index(r) for r in ids]
    return result


def _net_kwargs(common: dict, net_sharing, group_roles: list[int] | None) -> dict:
    """TeamMLP arguments of one network: shared settings plus its scheme, agent ID and roles."""
    roles = group_roles if net_sharing.scheme == "grouped" else None
    return dict(common, scheme=net_sharing.scheme, agent_id=net_sharing.agent_id, roles=roles)


class ActorCritic(nn.Module):
    """Actors and critics of every group, built from the config; the single object the learner trains."""

    def __init__(self, env_info: EnvInfo, cfg):
        super().__init__()
        algo, sharing = cfg.algorithm, cfg.sharing
        self.group_names = [g.name for g in env_info.groups]
        self.centralised = algo.name == "mappo"
        self.use_state = self.centralised and algo.critic_input == "state"
        if self.use_state and env_info.state_dim is None:
            raise ConfigError(
                f"algorithm.critic_input=state, but {env_info.name} provides no global state. "
                f"Use algorithm.critic_input=observations (the MAPPO critic then sees all agents' "
                f"observations)."
            )
        global_dim = (
            env_info.state_dim if self.use_state else sum(g.n_agents * g.obs_dim for g in env_info.groups)
        )
        roles = role_indices(env_info, sharing.roles)
        check_encoder(env_info, cfg.model.encoder)
        common = dict(
            hidden_sizes=list(cfg.model.hidden_sizes),
            activation=cfg.model.activation,
            hyper_variant=sharing.hyper.variant,
            hyper_embedding_dim=sharing.hyper.embedding_dim,
            hyper_hidden=sharing.hyper.hidden_size,
        )
        self.actors = nn.ModuleDict()
        self.critics = nn.ModuleDict()
        for g in env_info.groups:
            actor_net = _net_kwargs(common, sharing.actor, roles[g.name])
            critic_net = _net_kwargs(common, sharing.critic, roles[g.name])
            recurrent_size = cfg.model.recurrent_size if cfg.model.recurrent else 0
            self.actors[g.name] = Actor(
                g, algo.action_distribution, algo.initial_std, recurrent_size, cfg.model.encoder, **actor_net
            )
            critic_dim = global_dim if self.centralised else g.obs_dim
            observed = None if self.use_state else env_info.groups  # what a MAPPO critic encodes
            self.critics[g.name] = Critic(
                g, critic_dim, self.centralised, cfg.model.encoder, observed, **critic_net
            )

    @torch.no_grad()
    def act(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """Write every group's actions (and raw samples and log-probs) into `td`."""
        for name, actor in self.actors.items():
            mask = td.get((name, "action_mask"), None)
            hidden, start = None, None
            if actor.recurrent:  # the state the collector carried over (marl/collector.py), or a fresh one
                hidden = td.get((name, RNN_STATE), None)
                if hidden is None:
                    hidden = actor.initial_state(td.batch_size, td.device)
                    td.set(EPISODE_START, torch.ones(td.batch_size, dtype=torch.bool, device=td.device))
                start = td[EPISODE_START]
            action, sample, log_prob, state = actor.sample(
                td[name, "observation"], deterministic, mask, hidden, start
            )
            td.set((name, "action"), action)
            td.set((name, "sample"), sample)
            td.set((name, "log_prob"), log_prob)
            if state is not None:
                td.set((name, RNN_STATE), hidden)  # the state this step started from (PPO replays from it)
                td.set((name, RNN_STATE_NEXT), state)
        return td

    @property
    def recurrent(self) -> bool:
        return any(actor.recurrent for actor in self.actors.values())

    def critic_inputs(self, td: TensorDictBase) -> dict[str, torch.Tensor]:
        """Per-group critic input: the group's observations (IPPO), or one global vector (MAPPO)."""
        if not self.centralised:
            return {name: td[name, "observation"] for name in self.group_names}
        if self.use_state:
            shared = td["state"]
        else:
            parts = [td[name, "observation"].flatten(-2) for name in self.group_names]
            shared = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return {name: shared for name in self.group_names}

    def values(self, td: TensorDictBase) -> dict[str, torch.Tensor]:
        """Values [..., n_agents] of every group for the observations in `td`."""
        inputs = self.critic_inputs(td)
        return {name: self.critics[name](inputs[name]) for name in self.group_names}

    def parameter_counts(self) -> dict[str, int]:
        counts = {}
        for name in self.group_names:
            counts[f"{name}/actor"] = sum(p.numel() for p in self.actors[name].parameters())
            counts[f"{name}/critic"] = sum(p.numel() for p in self.critics[name].parameters())
        return counts

"""Parameter-sharing schemes for multi-agent MLPs, behind one interface.

``TeamMLP`` maps per-agent inputs ``[..., n_agents, in_dim]`` to per-agent outputs
``[..., n_agents, out_dim]``. How the agents' parameters relate is the ``scheme``:

- ``"shared"`` (FuPS): one ordinary MLP for every agent, optionally with a one-hot agent ID appended.
- ``"independent"`` (NoPS): each agent has its own weights, stacked ``[n_agents, in, out]``.
- ``"grouped"``: one set of weights per role, stacked ``[n_roles, in, out]``; agents gather their role's.
- ``"hyper"`` (HyperMARL): a hypernetwork maps an agent embedding to all weights and biases of that
  agent's MLP. Variants: ``linear`` (one-hot ID), ``mlp`` (learned embedding) and ``mip`` (Magnitude
  Invariant Parametrization: constant-norm input encoding, output added to a learned base network).

Everything is batched: the three non-shared schemes build per-agent weight stacks once per forward pass
and run them through ``_per_agent_mlp`` (``torch.baddbmm`` on an ``[n_agents, batch, features]`` layout),
so each agent's weights only ever touch that agent's own samples and there is no Python loop over agents.
Without gradients (rollouts, evaluation) the generated or gathered stacks are cached and rebuilt only when
a parameter has changed (an optimizer step, a loaded checkpoint): a rollout of T steps runs the
hypernetwork once, not T times.

Every agent network starts orthogonally initialised (gain sqrt(2) for hidden layers, whatever the
activation, ``output_gain`` for the last layer, biases zero), however its weights are produced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) computed as 2 sigmoid(2x) - 1, with tanh's own backward, grad (1 - y^2)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor) -> Tensor:
        y = x.mul(2.0).sigmoid_().mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: Tensor) -> Tensor:
    """The hidden layers' tanh. On CPU it goes through ``sigmoid``, whose PyTorch kernel is far faster than
    ``tanh``'s: 4 against 15 ms for one [6, 8192, 128] float32 tensor on one core of an AMD EPYC (AVX-512),
    where ``torch.tanh`` took a fifth of a patrol/search training iteration. The result differs from
    ``torch.tanh`` by at most 2e-7 (float32 rounding near +-1, and a dead zone of 3e-8 around 0); the
    gradient is tanh's. On a GPU, whose tanh is one instruction, it is ``torch.tanh``.
    """
    if x.device.type != "cpu":
        return torch.tanh(x)
    return _SigmoidTanh.apply(x)


SCHEMES = ("shared", "independent", "grouped", "hyper")
HYPER_VARIANTS = ("linear", "mlp", "mip")
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": tanh,
    "relu": F.relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
}
HIDDEN_GAIN = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


def _layer_dims(in_dim: int, hidden_sizes: Sequence[int], out_dim: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every linear layer, input to output."""
    sizes = [in_dim, *hidden_sizes, out_dim]
    return list(zip(sizes[:-1], sizes[1:]))


def _layer_gains(n_layers: int, output_gain: float) -> list[float]:
    """Orthogonal gain of every layer: sqrt(2) for hidden layers, ``output_gain`` for the last."""
    return [HIDDEN_GAIN] * (n_layers - 1) + [output_gain]


def _orthogonal_stack(n: int, fan_in: int, fan_out: int, gain: float) -> Tensor:
    """``n`` independent orthogonal matrices, ``[n, fan_in, fan_out]``, for the ``x @ W`` convention.

    Each slice is drawn exactly as ``nn.init.orthogonal_`` draws an ``nn.Linear`` weight ``[out, in]``
    and then transposed, so a slice is initialised like one ordinary layer. (A loop at init time only.)
    """
    out = torch.empty(n, fan_in, fan_out)
    for i in range(n):
        out[i] = nn.init.orthogonal_(torch.empty(fan_out, fan_in), gain=gain).T
    return out


def _per_agent_mlp(
    x: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    activation: Callable[[Tensor], Tensor],
    shared_input: bool = False,
) -> Tensor:
    """Apply one MLP per agent, all agents at once.

    Args:
        x: ``[n, B, in]``, agent ``a``'s samples in ``x[a]``; or, with ``shared_input``, ``[B, in]``
            seen by every agent.
        weights: per layer ``[n, fan_in, fan_out]``.  biases: per layer ``[n, fan_out]``.
    Returns:
        ``[n, B, out]``.
    """
    n_layers = len(weights)
    for layer, (w, b) in enumerate(zip(weights, biases)):
        if layer == 0 and shared_input:
            # One matmul for all agents instead of copying x n times: [B, in] @ [in, n*out].
            n, fan_in, fan_out = w.shape
            y = x @ w.permute(1, 0, 2).reshape(fan_in, n * fan_out)
            x = y.reshape(-1, n, fan_out).transpose(0, 1) + b.unsqueeze(1)
        else:
            x = torch.baddbmm(b.unsqueeze(1), x, w)
        if layer < n_layers - 1:
            x = activation(x)
    return x


def _split_flat(flat: Tensor, dims: Sequence[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor]]:
    """Cut generated parameters ``[n, P]`` into per-layer weights ``[n, in, out]`` and biases ``[n, out]``.

    Layout of P, layer after layer: the weight (``in * out``, row-major ``[in, out]``), then the bias.
    """
    sizes = [s for fan_in, fan_out in dims for s in (fan_in * fan_out, fan_out)]
    chunks = torch.split(flat, sizes, dim=-1)
    n = flat.shape[0]
    weights = [chunks[2 * i].reshape(n, fan_in, fan_out) for i, (fan_in, fan_out) in enumerate(dims)]
    biases = list(chunks[1::2])
    return weights, biases


def _flat_orthogonal_init(n: int, dims: Sequence[tuple[int, int]], gains: Sequence[float]) -> Tensor:
    """Target parameters ``[n, P]`` (layout of ``_split_flat``): each agent its own orthogonal init."""
    parts = []
    for (fan_in, fan_out), gain in zip(dims, gains):
        parts.append(_orthogonal_stack(n, fan_in, fan_out, gain).reshape(n, -1))
        parts.append(torch.zeros(n, fan_out))
    return torch.cat(parts, dim=-1)


def magnitude_invariant_encoding(z: Tensor) -> Tensor:
    """MIP's input encoding (Ortiz et al., ICLR 2024): each entry of ``z`` in [0, 1] becomes
    ``[cos(pi z / 2), sin(pi z / 2)]``, so every encoded vector has norm sqrt(dim) whatever its value, and
    the hypernetwork's output scale no longer follows its input's. ``[..., d] -> [..., 2d]``."""
    angle = 0.5 * math.pi * z
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


def _fit_output_layer(layer: nn.Linear, features: Tensor, target: Tensor) -> None:
    """Set ``layer`` (bias 0) so that ``layer(features) = target`` for every row: the minimum-norm
    least-squares solution (singular values below 1% of the largest dropped, which keeps it bounded)."""
    with torch.no_grad():
        k = torch.linalg.pinv(features.double(), rtol=1e-2) @ target.double()  # [hidden, P]
        layer.weight.copy_(k.T)
        layer.bias.zero_()


def _bad(message: str) -> ValueError:
    return ValueError(f"TeamMLP: {message}")


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"{name} must be a positive int, got {value!r}. Pass e.g. {name}=4.")


# ---------------------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------------------


class TeamMLP(nn.Module):
    """An MLP per agent whose parameters are shared, independent, role-grouped or hypernetwork-generated.

    Args:
        in_dim, out_dim: per-agent input and output features.
        n_agents: number of agents (the ``-2`` dim of the input).
        hidden_sizes: hidden layer widths, e.g. ``(64, 64)``; empty means a single linear layer.
        activation: one of ``ACTIVATIONS`` (``"tanh"``, ``"relu"``, ``"elu"``, ``"gelu"``, ``"silu"``).
        scheme: one of ``SCHEMES`` (``"shared"``, ``"independent"``, ``"grouped"``, ``"hyper"``).
        output_gain: orthogonal gain of the output layer (0.01 for actors, 1.0 for critics).
        agent_id: ``"shared"`` only: append a one-hot agent ID to the input.
        roles: ``"grouped"`` only: role index of each agent, ids ``0..R-1``, e.g. ``[0, 0, 1, 1]``.
        hyper_variant: ``"hyper"`` only: ``"linear"`` (one-hot ID -> all weights, one Linear), ``"mlp"``
            (learned embedding -> Linear -> ReLU -> Linear -> all weights) or ``"mip"`` (learned embedding
            squashed to [0, 1] -> ``magnitude_invariant_encoding`` -> Linear -> ReLU -> Linear -> a change
            added to a learned base network: theta_i = theta_0 + delta(E(z_i))).
        hyper_embedding_dim, hyper_hidden: size of the learned embedding and hypernet hidden layer
            (``"mlp"`` variant).

    Initialisation of ``"hyper"`` (every generated agent MLP starts like an orthogonally initialised one):

    - ``"linear"``: generated params = ``W_h @ onehot(i) + b_h``, i.e. column ``i`` of ``W_h``. Column ``i``
      is set to agent ``i``'s own orthogonal init (flattened) and ``b_h = 0``, so at init each agent's
      generated network *is* an orthogonal init, and agents differ.
    - ``"mlp"``: the embeddings ``E [n, d]`` are orthogonal (gain 1), the hidden Linear is orthogonal
      (gain sqrt(2), bias 0). With ``H = relu(E A^T)`` the agents' hidden features, the output Linear's
      weight is the minimum-norm solution of ``H K = T`` (pseudo-inverse), where row ``i`` of ``T`` is an
      independent orthogonal init for agent ``i``; its bias is 0. Hence generated params equal ``T``
      (exactly up to float error while ``H`` is well-conditioned, typically ``n_agents`` up to a few times
      ``d``; otherwise singular values below 1% of the largest are dropped, a least-squares fit that keeps
      ``K`` bounded). Generated biases start at zero; gradients reach ``K``, ``A`` and ``E`` because
      nothing is frozen or zero on the path. (The reference HyperMARL code instead fills each hidden
      unit's output row with a random orthogonal matrix, so generated weights are a ReLU-weighted mix of
      orthogonal matrices whose scale depends on ``|H|``; the exact fit avoids that scale drift.)
    - ``"mip"``: the base theta_0 is an ordinary orthogonal init (shared by all agents, so its gradient is
      the sum of theirs, as for a shared network); the exact fit is as for ``"mlp"`` with the target
      ``T - theta_0``, so theta_0 + delta_i starts as agent ``i``'s own orthogonal init and all three
      variants start from the same kind of agent networks. The encoded inputs all lie in the positive
      orthant (cos and sin of angles in [0, pi/2]), so two things keep the agents' hidden features apart:
      the embeddings start with z = sigmoid(e) spread uniformly over (0.02, 0.98) (orthogonal embeddings
      squash to z near 0.5 for every agent), and the hidden layer's bias starts at minus its weight times
      the agents' mean encoding (centred pre-activations). Without them the features shared one dominant
      direction (condition number 18 for 4 agents, against 2-3 with them) and the fit needed weights
      twice as large.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        n_agents: int,
        hidden_sizes: Sequence[int],
        activation: str,
        scheme: str,
        output_gain: float,
        agent_id: bool = False,
        roles: Sequence[int] | None = None,
        hyper_variant: str = "mlp",
        hyper_embedding_dim: int = 8,
        hyper_hidden: int = 64,
    ) -> None:
        super().__init__()
        self._validate(
            in_dim, out_dim, n_agents, hidden_sizes, activation, scheme, output_gain,
            agent_id, roles, hyper_variant, hyper_embedding_dim, hyper_hidden,
        )  # fmt: skip
        self.in_dim, self.out_dim, self.n_agents = in_dim, out_dim, n_agents
        self.scheme, self.agent_id, self.activation_name = scheme, bool(agent_id), activation
        self.activation = ACTIVATIONS[activation]
        self.hyper_variant = hyper_variant if scheme == "hyper" else None
        self.dims = _layer_dims(in_dim, hidden_sizes, out_dim)
        gains = _layer_gains(len(self.dims), output_gain)

        if scheme == "shared":
            first_in = in_dim + (n_agents if agent_id else 0)
            dims = [(first_in, self.dims[0][1]), *self.dims[1:]]
            self.layers = nn.ModuleList(nn.Linear(fan_in, fan_out) for fan_in, fan_out in dims)
            for layer, gain in zip(self.layers, gains):
                nn.init.orthogonal_(layer.weight, gain=gain)
                nn.init.zeros_(layer.bias)

        elif scheme in ("independent", "grouped"):
            n_sets = n_agents if scheme == "independent" else max(roles) + 1  # type: ignore[arg-type]
            self.weights = nn.ParameterList(
                nn.Parameter(_orthogonal_stack(n_sets, fan_in, fan_out, gain))
                for (fan_in, fan_out), gain in zip(self.dims, gains)
            )
            self.biases = nn.ParameterList(
                nn.Parameter(torch.zeros(n_sets, fan_out)) for _, fan_out in self.dims
            )
            if scheme == "grouped":
                self.register_buffer("role_index", torch.as_tensor(list(roles), dtype=torch.long))  # type: ignore[arg-type]

        else:  # hyper
            target = _flat_orthogonal_init(n_agents, self.dims, gains)  # [n, P]
            n_params = target.shape[1]
            if hyper_variant == "linear":
                self.hypernet = nn.Linear(n_agents, n_params)
                with torch.no_grad():
                    self.hypernet.weight.copy_(target.T)
                    self.hypernet.bias.zero_()
            else:
                if hyper_variant == "mip":  # z = sigmoid(e) spread over (0.02, 0.98) in every dimension
                    embeddings = torch.logit(0.02 + 0.96 * torch.rand(n_agents, hyper_embedding_dim))
                else:
                    embeddings = nn.init.orthogonal_(torch.empty(n_agents, hyper_embedding_dim))
                self.embeddings = nn.Parameter(embeddings)
                in_features = hyper_embedding_dim * (2 if hyper_variant == "mip" else 1)
                self.hypernet = nn.Sequential(
                    nn.Linear(in_features, hyper_hidden), nn.ReLU(), nn.Linear(hyper_hidden, n_params)
                )
                hidden_layer, out_layer = self.hypernet[0], self.hypernet[2]
                nn.init.orthogonal_(hidden_layer.weight, gain=HIDDEN_GAIN)
                nn.init.zeros_(hidden_layer.bias)
                if hyper_variant == "mip":
                    self.base = nn.Parameter(_flat_orthogonal_init(1, self.dims, gains)[0])  # theta_0 [P]
                    target = target - self.base.detach()
                    with torch.no_grad():  # centre the hidden pre-activations over the agents (see class doc)
                        hidden_layer.bias.copy_(-hidden_layer.weight @ self._hyper_input().mean(0))
                with torch.no_grad():
                    _fit_output_layer(out_layer, torch.relu(hidden_layer(self._hyper_input())), target)
        # (parameters, their versions, the stacks built from them): see agent_parameters
        self._rollout_cache: tuple[tuple, tuple, tuple[list[Tensor], list[Tensor]]] | None = None

    # -- construction-time checks ------------------------------------------------------------------------

    @staticmethod
    def _validate(
        in_dim: int, out_dim: int, n_agents: int, hidden_sizes: Sequence[int], activation: str, scheme: str,
        output_gain: float, agent_id: bool, roles: Sequence[int] | None, hyper_variant: str,
        hyper_embedding_dim: int, hyper_hidden: int,
    ) -> None:  # fmt: skip
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("n_agents", n_agents)):
            _check_positive_int(name, value)
        if isinstance(hidden_sizes, (str, int)) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden_sizes
        ):
            raise _bad(
                f"hidden_sizes must be a sequence of positive ints, got {hidden_sizes!r}. "
                "Pass e.g. hidden_sizes=[64, 64] (or [] for a single linear layer)."
            )
        if scheme not in SCHEMES:
            raise _bad(f"unknown scheme {scheme!r}. Allowed schemes: {', '.join(SCHEMES)}.")
        if activation not in ACTIVATIONS:
            raise _bad(f"unknown activation {activation!r}. Allowed activations: {', '.join(ACTIVATIONS)}.")
        if (
            isinstance(output_gain, bool)
            or not isinstance(output_gain, (int, float))
            or not (math.isfinite(output_gain) and output_gain >= 0)
        ):
            raise _bad(
                f"output_gain must be a finite number >= 0, got {output_gain!r}. "
                "Use 0.01 for an actor's output layer and 1.0 for a critic's."
            )
        if agent_id and scheme != "shared":
            raise _bad(
                f"agent_id=True only applies to scheme 'shared', but scheme is {scheme!r}. The other schemes "
                "already tell agents apart through their parameters; set agent_id=False or scheme='shared'."
            )
        if scheme == "grouped":
            if roles is None:
                raise _bad(
                    "scheme 'grouped' needs roles, the role index of each agent (ids 0..R-1), "
                    f"e.g. roles=[0, 0, 1, 1] for {n_agents} agents in two roles."
                )
            roles = list(roles)
            if len(roles) != n_agents:
                raise _bad(
                    f"roles={roles!r} has {len(roles)} entries but n_agents is {n_agents}; give one role "
                    "index per agent."
                )
            if not all(isinstance(r, int) and not isinstance(r, bool) for r in roles) or set(roles) != set(
                range(max(roles) + 1)
            ):
                raise _bad(
                    f"roles={roles!r} must use every role id 0..R-1 with no gaps (ints). "
                    f"Renumber them, e.g. [0, 0, 1, 1] instead of [1, 1, 3, 3]."
                )
        elif roles is not None:
            raise _bad(
                f"roles is only used by scheme 'grouped', but scheme is {scheme!r}. "
                "Drop roles or set scheme='grouped'."
            )
        if scheme == "hyper":
            if hyper_variant not in HYPER_VARIANTS:
                raise _bad(
                    f"unknown hyper_variant {hyper_variant!r}. Allowed hyper variants: "
                    f"{', '.join(HYPER_VARIANTS)}."
                )
            _check_positive_int("hyper_embedding_dim", hyper_embedding_dim)
            _check_positive_int("hyper_hidden", hyper_hidden)

    # -- forward -------------------------------------------------------------------------------------------

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _hyper_input(self) -> Tensor:
        """What the hypernetwork reads for every agent, ``[n, features]``: the learned embeddings (``mlp``),
        their constant-norm encoding after a sigmoid to [0, 1] (``mip``)."""
        if self.hyper_variant == "mip":
            return magnitude_invariant_encoding(torch.sigmoid(self.embeddings))
        return self.embeddings

    def _generate_parameters(self) -> tuple[list[Tensor], list[Tensor]]:
        """Per-agent stacks built from the module's parameters (gathered, or generated by the hypernetwork
        once for all agents)."""
        if self.scheme == "grouped":
            return [w[self.role_index] for w in self.weights], [b[self.role_index] for b in self.biases]
        if self.hyper_variant == "linear":
            # hypernet(one-hot IDs) for all agents; eye is [n, n] so this is tiny.
            w = self.hypernet.weight
            flat = self.hypernet(torch.eye(self.n_agents, device=w.device, dtype=w.dtype))
        else:
            flat = self.hypernet(self._hyper_input())
            if self.hyper_variant == "mip":
                flat = self.base + flat  # theta_i = theta_0 + delta(E(z_i))
        return _split_flat(flat, self.dims)

    def agent_parameters(self) -> tuple[list[Tensor], list[Tensor]]:
        """Per-agent weights ``[n, in, out]`` and biases ``[n, out]`` of every layer (not for ``shared``).

        For ``hyper`` this runs the hypernetwork once for all agents. Without gradients the result is
        cached until a parameter changes (its version counter moves, or it is replaced), so a rollout's
        many forward passes share one generation; with gradients it is always rebuilt, so the hypernetwork
        is part of the graph.
        """
        if self.scheme == "independent":
            return list(self.weights), list(self.biases)
        if self.scheme == "shared":
            raise RuntimeError("scheme 'shared' has no per-agent parameter stacks; use self.layers.")
        if torch.is_grad_enabled():
            self._rollout_cache = None
            return self._generate_parameters()
        params = tuple(self.parameters())
        versions = tuple(p._version for p in params)
        cached = self._rollout_cache
        fresh = (
            cached is not None
            and cached[1] == versions
            and all(a is b for a, b in zip(cached[0], params, strict=True))
        )
        if not fresh:
            self._rollout_cache = (params, versions, self._generate_parameters())
        return self._rollout_cache[2]

    def forward(self, x: Tensor, shared_input: bool = False) -> Tensor:
        """``[..., n_agents, in_dim] -> [..., n_agents, out_dim]``.

        With ``shared_input=True``, ``x`` is ``[..., in_dim]``, the same input for every agent (e.g. a
        centralised critic's global state); the output is still ``[..., n_agents, out_dim]``.
        """
        self._check_input(x, shared_input)
        if self.scheme == "shared":
            return self._shared_forward(x, shared_input)
        n = self.n_agents
        if shared_input and self.scheme == "grouped":
            # The agents of a role all compute the same: once per role, then each agent takes its role's.
            lead = x.shape[:-1]
            flat = x.reshape(-1, self.in_dim)
            y = _per_agent_mlp(flat, self.weights, self.biases, self.activation, shared_input=True)
            return y[self.role_index].transpose(0, 1).reshape(*lead, n, self.out_dim)
        weights, biases = self.agent_parameters()
        if shared_input:
            lead = x.shape[:-1]
            y = _per_agent_mlp(
                x.reshape(-1, self.in_dim), weights, biases, self.activation, shared_input=True
            )
        else:
            lead = x.shape[:-2]
            x = x.reshape(-1, n, self.in_dim).transpose(0, 1)  # [n, B, in]
            y = _per_agent_mlp(x, weights, biases, self.activation)
        return y.transpose(0, 1).reshape(*lead, n, self.out_dim)

    def _shared_forward(self, x: Tensor, shared_input: bool) -> Tensor:
        n = self.n_agents
        if shared_input and not self.agent_id:
            # Same input and same net for everyone: compute once, then broadcast (a view, no copy).
            y = self._mlp(x)
            return y.unsqueeze(-2).expand(*y.shape[:-1], n, self.out_dim)
        if shared_input:
            x = x.unsqueeze(-2).expand(*x.shape[:-1], n, self.in_dim)
        if self.agent_id:
            ids = torch.eye(n, device=x.device, dtype=x.dtype).expand(*x.shape[:-2], n, n)
            x = torch.cat([x, ids], dim=-1)
        return self._mlp(x)

    def _mlp(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x

    def _check_input(self, x: Tensor, shared_input: bool) -> None:
        if shared_input:
            if x.dim() < 1 or x.shape[-1] != self.in_dim:
                raise _bad(
                    f"with shared_input=True the input must be [..., in_dim={self.in_dim}] (one input seen "
                    f"by all agents), got shape {tuple(x.shape)}."
                )
        elif x.dim() < 2 or tuple(x.shape[-2:]) != (self.n_agents, self.in_dim):
            raise _bad(
                f"input must be [..., n_agents={self.n_agents}, in_dim={self.in_dim}], got shape "
                f"{tuple(x.shape)}. For one input shared by all agents call forward(x, shared_input=True)."
            )

    def extra_repr(self) -> str:
        extra = f", variant={self.hyper_variant}" if self.scheme == "hyper" else ""
        return (
            f"scheme={self.scheme}{extra}, n_agents={self.n_agents}, dims={self.dims}, "
            f"activation={self.activation_name}, agent_id={self.agent_id}"
        )

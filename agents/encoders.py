"""Observation encoders in front of the agents' MLPs: convolutions for image observations.

An image flattened into an MLP's input makes a huge first layer (84x84x3 inputs x 256 units is 5.4M weights
per network) that learns slowly and runs out of memory. `model.encoder` chooses what sits in front of the
MLP of each actor and critic:

- ``auto`` (default): a small convolutional encoder for every image-shaped observation (a 2-D ``[H, W]`` or
  3-D ``[H, W, C]`` / ``[C, H, W]`` Box, at least 16x16); other observations go to the MLP as they are;
- ``cnn``: the same, for every image-shaped observation of at least 3x3;
- ``mlp``: no convolutions (images only scaled to [0, 1] and fed flat).

The encoder follows the network's sharing scheme, batched like the MLPs in agents/sharing.py (no Python
loop over agents): ``shared`` runs one conv stack on every agent's image; ``independent`` stacks each
agent's filters ``[n_agents, out, in, k, k]`` and runs them as one grouped convolution (agent ``a``'s
filters only ever see agent ``a``'s images); ``grouped`` gathers each agent's role's filters into that
stack; ``hyper`` has a hypernetwork generate each agent's filters (once per forward pass, from the agent's
embedding, as HyperMARL does for the MLP) and runs the same grouped convolution. A centralised (MAPPO)
critic encodes each agent's image once, with one conv stack per agent group, and concatenates the features,
so its size does not grow with the number of agents times the image.

The conv stack (channels 16, 32, 32; ReLU) first cuts the image into non-overlapping patches (kernel =
stride, about 14x14 of them), then two 3x3 convolutions, then average-pools to at most 4x4: at most 512
features, about 15k parameters per agent, ~1M multiply-adds per 84x84 image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from marl.agents.sharing import magnitude_invariant_encoding
from marl.envs.factory import EnvInfo, GroupInfo
from marl.envs.spaces import ImageField
from torch import Tensor, nn

from marl.errors import ConfigError

ENCODERS = ("auto", "mlp", "cnn")
AUTO_MIN_SIDE = 16  # `auto` convolves images at least this large (both sides)
CNN_MIN_SIDE = 3  # `cnn` convolves anything a 3x3 kernel fits in
CHANNELS = (16, 32, 32)
PATCHES = 14  # the first layer cuts the image into about this many patches per side
POOL = 4  # the last feature map is average-pooled to at most POOL x POOL
HIDDEN_GAIN = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------- choices
def convolved(group: GroupInfo, mode: str) -> tuple[ImageField, ...]:
    """The image fields of `group` that `mode` puts through a conv stack."""
    if mode == "mlp":
        return ()
    side = AUTO_MIN_SIDE if mode == "auto" else CNN_MIN_SIDE
    return tuple(f for f in group.images if min(f.height, f.width) >= side)


def check_encoder(env_info: EnvInfo, mode: str) -> None:
    """`model.encoder=cnn` needs at least one image-shaped observation somewhere in the env."""
    if mode not in ENCODERS:
        raise ConfigError(f"model.encoder={mode!r}; choose one of {', '.join(ENCODERS)}.")
    if mode == "cnn" and not any(convolved(g, mode) for g in env_info.groups):
        shapes = "; ".join(f"{g.name}: {g.obs_dim} features" for g in env_info.groups)
        raise ConfigError(
            f"model.encoder=cnn, but no observation of {env_info.name} is shaped like an image ({shapes}). "
            f"A convolutional encoder needs a Box observation of shape [H, W], [H, W, C] or [C, H, W] (C <= "
            f"16, H and W >= {CNN_MIN_SIDE}). Use model.encoder=auto (or mlp), or return images unflattened."
        )


# ---------------------------------------------------------------------------------------------- conv stack
def conv_layers(field: ImageField) -> tuple[list[tuple[int, int, int, int, int]], int, int]:
    """The conv stack for one image: [(in, out, kernel, stride, padding)], and its output height, width
    (after the final pooling)."""
    h, w = field.height, field.width
    stride = max(1, round(min(h, w) / PATCHES))
    c = field.channels
    first = (c, CHANNELS[0], stride, stride, 0) if stride > 1 else (c, CHANNELS[0], 3, 1, 1)
    layers = [first]
    h, w = _out(h, first), _out(w, first)
    for k, (cin, cout) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:])):
        layer = (cin, cout, 3, 2 if k == 0 else 1, 0)
        if min(_out(h, layer), _out(w, layer)) < 1:
            break
        layers.append(layer)
        h, w = _out(h, layer), _out(w, layer)
    return layers, min(h, POOL), min(w, POOL)


def _out(side: int, layer: tuple[int, int, int, int, int]) -> int:
    _, _, k, s, p = layer
    return (side + 2 * p - k) // s + 1


def _orthogonal_filters(n: int, layers: Sequence[tuple]) -> Tensor:
    """Every agent's filters and biases, flattened ``[n, P]`` layer after layer (weight, then bias): each
    agent's filters orthogonally initialised (gain sqrt(2)), biases zero. (A loop at init time only.)"""
    parts = []
    for cin, cout, k, _, _ in layers:
        init = [nn.init.orthogonal_(torch.empty(cout, cin, k, k), HIDDEN_GAIN) for _ in range(n)]
        weights = torch.stack(init)
        parts += [weights.reshape(n, -1), torch.zeros(n, cout)]
    return torch.cat(parts, dim=-1)


class HyperFilters(nn.Module):
    """A hypernetwork that maps each agent's embedding to all of its filters and biases ``[n, P]``.

    Variants as for the MLPs (agents/sharing.py): ``linear`` (one-hot ID -> one Linear), ``mlp`` (learned
    embedding -> Linear -> ReLU -> Linear), ``mip`` (the embedding squashed to [0, 1] and encoded with
    constant norm, the output added to a learned base: theta_i = theta_0 + delta(z_i)). Each starts out
    generating an independent orthogonal initialisation per agent: the linear variant holds it in its
    weight columns, the others fit their output layer to it by least squares."""

    def __init__(
        self, target: Tensor, variant: str, embedding_dim: int, hidden: int, base: Tensor | None = None
    ):
        super().__init__()
        n, n_params = target.shape
        self.n_agents, self.variant = n, variant
        if variant == "linear":
            self.net = nn.Linear(n, n_params)
            with torch.no_grad():
                self.net.weight.copy_(target.T)
                self.net.bias.zero_()
            return
        self.embeddings = nn.Parameter(nn.init.orthogonal_(torch.empty(n, embedding_dim)))
        width = embedding_dim * (2 if variant == "mip" else 1)
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_params))
        nn.init.orthogonal_(self.net[0].weight, HIDDEN_GAIN)
        nn.init.zeros_(self.net[0].bias)
        if variant == "mip":
            self.base = nn.Parameter(base.clone())  # theta_0: one more orthogonal initialisation
            target = target - self.base.detach()
        with torch.no_grad():
            features = torch.relu(self.net[0](self._input())).double()
            fit = torch.linalg.pinv(features, rtol=1e-2) @ target.double()  # [hidden, P], minimum norm
            self.net[2].weight.copy_(fit.T)
            self.net[2].bias.zero_()

    def _input(self) -> Tensor:
        if self.variant == "mip":
            return magnitude_invariant_encoding(torch.sigmoid(self.embeddings))
        return self.embeddings

    def forward(self) -> Tensor:
        if self.variant == "linear":
            w = self.net.weight
            return self.net(torch.eye(self.n_agents, device=w.device, dtype=w.dtype))
        flat = self.net(self._input())
        return self.base + flat if self.variant == "mip" else flat


class MultiAgentConv(nn.Module):
    """One conv stack per agent over images ``[B, n, C, H, W]`` -> features ``[B, n, out_dim]``, with the
    parameters shared, independent, role-grouped or hypernetwork-generated (see the module docstring)."""

    def __init__(
        self,
        field: ImageField,
        n_agents: int,
        scheme: str,
        roles: Sequence[int] | None = None,
        hyper_variant: str = "mlp",
        hyper_embedding_dim: int = 8,
        hyper_hidden: int = 64,
    ):
        super().__init__()
        self.layers, h, w = conv_layers(field)
        self.pool = (h, w)
        self.out_dim = self.layers[-1][1] * h * w
        self.n_agents, self.scheme = n_agents, scheme
        self.scale = field.scale
        if scheme == "shared":
            self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for i, o, k, s, p in self.layers)
            for conv in self.convs:
                nn.init.orthogonal_(conv.weight, HIDDEN_GAIN)
                nn.init.zeros_(conv.bias)
        elif scheme in ("independent", "grouped"):
            sets = n_agents if scheme == "independent" else max(roles) + 1
            flat = _orthogonal_filters(sets, self.layers)
            self.weights = nn.ParameterList(nn.Parameter(w) for w in self._split(flat)[0])
            self.biases = nn.ParameterList(nn.Parameter(b) for b in self._split(flat)[1])
            if scheme == "grouped":
                self.register_buffer("role_index", torch.as_tensor(list(roles), dtype=torch.long))
        elif scheme == "hyper":
            target = _orthogonal_filters(n_agents, self.layers)
            base = _orthogonal_filters(1, self.layers)[0] if hyper_variant == "mip" else None
            self.hypernet = HyperFilters(target, hyper_variant, hyper_embedding_dim, hyper_hidden, base)
        else:
            raise ConfigError(f"No convolutional encoder for sharing scheme {scheme!r}.")

    def _split(self, flat: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``[n, P]`` -> per layer filters ``[n, out, in, k, k]`` and biases ``[n, out]``."""
        sizes = [s for i, o, k, _, _ in self.layers for s in (o * i * k * k, o)]
        chunks = torch.split(flat, sizes, dim=-1)
        n = flat.shape[0]
        weights = [chunks[2 * j].reshape(n, o, i, k, k) for j, (i, o, k, _, _) in enumerate(self.layers)]
        return weights, list(chunks[1::2])

    def agent_filters(self) -> tuple[list[Tensor], list[Tensor]]:
        """Per-agent filter and bias stacks (not for ``shared``): stacked, gathered by role, or generated
        by the hypernetwork once for all agents."""
        if self.scheme == "independent":
            return list(self.weights), list(self.biases)
        if self.scheme == "grouped":
            return [w[self.role_index] for w in self.weights], [b[self.role_index] for b in self.biases]
        return self._split(self.hypernet())

    def forward(self, images: Tensor) -> Tensor:
        """``images [B, n, C, H, W]`` (float, unscaled) -> ``[B, n, out_dim]``."""
        b, n = images.shape[:2]
        if self.scheme == "shared":
            x = images.reshape(b * n, *images.shape[2:])
            for j, (conv, (_, _, _, s, p)) in enumerate(zip(self.convs, self.layers)):
                weight = conv.weight * self.scale if j == 0 else conv.weight  # scale folded into the filters
                x = F.relu_(F.conv2d(x, weight, conv.bias, s, p))
        else:
            # all agents in one grouped convolution: channels [agent 0's, agent 1's, ...], groups = agents
            x = images.reshape(b, n * images.shape[2], *images.shape[3:])
            weights, biases = self.agent_filters()
            for j, (w, bias, (_, o, _, s, p)) in enumerate(zip(weights, biases, self.layers)):
                w = w.reshape(n * o, *w.shape[2:])
                x = F.relu_(F.conv2d(x, w * self.scale if j == 0 else w, bias.reshape(-1), s, p, groups=n))
        if tuple(x.shape[-2:]) != self.pool:
            x = F.adaptive_avg_pool2d(x, self.pool)
        return x.reshape(b, n, self.out_dim)


# ---------------------------------------------------------------------------------------------- encoders
class ObservationEncoder(nn.Module):
    """Per-agent observations ``[..., n, obs_dim]`` -> features ``[..., n, out_dim]``: each convolved image
    field through its `MultiAgentConv`, the rest of the vector (other fields, small images) passed on as
    floats (8-bit pixels scaled to [0, 1]), in that order."""

    def __init__(self, group: GroupInfo, images: tuple[ImageField, ...], **scheme):
        super().__init__()
        self.n_agents, self.in_dim = group.n_agents, group.obs_dim
        self.images = images
        self.convs = nn.ModuleList(MultiAgentConv(f, group.n_agents, **scheme) for f in images)
        inside = torch.zeros(group.obs_dim, dtype=torch.bool)
        for f in images:
            inside[f.start : f.start + f.size] = True
        rest = torch.nonzero(~inside).flatten()
        scale = torch.ones(group.obs_dim)
        for f in group.images:  # images left flat are scaled here
            scale[f.start : f.start + f.size] = f.scale
        self.register_buffer("rest", rest, persistent=False)
        self.register_buffer("rest_scale", scale[rest], persistent=False)
        self.plain_rest = bool((scale[rest] == 1).all())
        self.out_dim = sum(c.out_dim for c in self.convs) + rest.numel()

    def forward(self, x: Tensor) -> Tensor:
        lead, n = x.shape[:-2], x.shape[-2]
        x = x.reshape(-1, n, x.shape[-1])
        parts = [conv(_image(x, f, conv.scheme == "shared")) for conv, f in zip(self.convs, self.images)]
        if self.rest.numel():
            rest = x.index_select(-1, self.rest).float()
            parts.append(rest if self.plain_rest else rest * self.rest_scale)
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return out.reshape(*lead, n, self.out_dim)


def _image(x: Tensor, field: ImageField, keep_layout: bool) -> Tensor:
    """The field's images out of flat observations ``[B, n, D]`` as floats ``[B, n, C, H, W]``. With
    `keep_layout`, [H, W, C] images stay channels-last in memory (convolutions take that layout directly, and
    the conversion is one contiguous pass); otherwise they are made contiguous [C, H, W] (what a grouped
    convolution over agents needs)."""
    flat = x[..., field.start : field.start + field.size]
    if field.channels_last:
        image = flat.reshape(*x.shape[:2], field.height, field.width, field.channels).permute(0, 1, 4, 2, 3)
    else:
        image = flat.reshape(*x.shape[:2], field.channels, field.height, field.width)
    if keep_layout:
        return image.float()
    return image.to(torch.float32, memory_format=torch.contiguous_format)


JOINT_FEATURES = 64  # a centralised critic's features per agent image (after the shared conv stack)


class JointEncoder(nn.Module):
    """A centralised critic's input, every group's observations concatenated ``[..., sum n_g * D_g]``, ->
    ``[..., sum n_g * F_g]``: each agent's observation encoded once (one shared encoder per group, its
    conv features projected to `JOINT_FEATURES`, so the critic's size does not scale with agents x pixels),
    then concatenated in the same order."""

    def __init__(self, groups: Sequence[GroupInfo], mode: str):
        super().__init__()
        self.sizes = [g.n_agents * g.obs_dim for g in groups]
        self.shapes = [(g.n_agents, g.obs_dim) for g in groups]
        self.encoders = nn.ModuleList()
        self.out_dim = 0
        for g in groups:
            images = convolved(g, mode)
            if not g.images:
                self.encoders.append(nn.Identity())
                self.out_dim += g.n_agents * g.obs_dim
            elif not images:  # images left flat: only scaled
                encoder = ObservationEncoder(g, images, scheme="shared")
                self.encoders.append(encoder)
                self.out_dim += g.n_agents * encoder.out_dim
            else:
                encoder = ObservationEncoder(g, images, scheme="shared")
                projection = nn.Linear(encoder.out_dim, JOINT_FEATURES)
                nn.init.orthogonal_(projection.weight, HIDDEN_GAIN)
                nn.init.zeros_(projection.bias)
                self.encoders.append(nn.Sequential(encoder, projection, nn.ReLU()))
                self.out_dim += g.n_agents * JOINT_FEATURES

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        parts = []
        for part, (n, d), encoder in zip(x.split(self.sizes, dim=-1), self.shapes, self.encoders):
            if not isinstance(encoder, nn.Identity):
                part = encoder(part.reshape(*lead, n, d)).flatten(-2)
            parts.append(part.float())
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class Encoded(nn.Module):
    """``net(encoder(x))``: a network with an encoder in front, standing in for the bare network (its
    other attributes, e.g. ``n_agents``, are the network's)."""

    def __init__(self, encoder: nn.Module, net: nn.Module):
        super().__init__()
        self.encoder, self.net = encoder, net

    def forward(self, x: Tensor, shared_input: bool = False) -> Tensor:
        return self.net(self.encoder(x), shared_input=shared_input)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)


def with_encoder(encoder: nn.Module | None, net: nn.Module) -> nn.Module:
    """`net` alone when there is nothing to encode, else `Encoded(encoder, net)`."""
    return net if encoder is None else Encoded(encoder, net)


# ---------------------------------------------------------------------------------------------- builders
def _scheme(net_kwargs: dict) -> dict:
    scheme = net_kwargs.get("scheme", "shared")
    out = {"scheme": scheme, "roles": net_kwargs.get("roles") if scheme == "grouped" else None}
    if scheme == "hyper":
        out.update(
            hyper_variant=net_kwargs.get("hyper_variant", "mlp"),
            hyper_embedding_dim=net_kwargs.get("hyper_embedding_dim", 8),
            hyper_hidden=net_kwargs.get("hyper_hidden", 64),
        )
    return out


def observation_encoder(group: GroupInfo, mode: str, **net_kwargs) -> tuple[nn.Module | None, int]:
    """The encoder for a network that reads each agent's own observation (an actor, an IPPO critic), with
    the network's sharing scheme, and the feature size the MLP behind it takes. (None, obs_dim) when the
    group has no images: the MLP reads the observation as it is."""
    if not group.images:
        return None, group.obs_dim
    encoder = ObservationEncoder(group, convolved(group, mode), **_scheme(net_kwargs))
    return encoder, encoder.out_dim


def critic_encoder(
    group: GroupInfo,
    input_dim: int,
    centralised: bool,
    groups: Sequence[GroupInfo] | None,
    mode: str,
    **net_kwargs,
) -> tuple[nn.Module | None, int]:
    """The encoder in front of a critic: per agent (IPPO), or over every group's concatenated observations
    (MAPPO, `groups` given); none for a global state input (`groups` None) or observations without
    images."""
    if not centralised:
        return observation_encoder(group, mode, **net_kwargs)
    if groups is None or not any(g.images for g in groups):
        return None, input_dim
    encoder = JointEncoder(groups, mode)
    return encoder, encoder.out_dim

"""Gymnasium spaces -> flat float vectors and policy action heads, with the layout recorded.

An observation of any nesting (Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple) becomes one float32
vector: Boxes and MultiBinary are flattened, Discrete and MultiDiscrete are one-hot encoded, Dict keys are
taken in sorted order (as Gymnasium's own `flatten` does) and Tuples in order. `ObservationLayout.fields`
says which slice of the vector holds which part, so a user can always find "where did my key go".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from marl.errors import ConfigError

MASK_KEY = "action_mask"


@dataclass(frozen=True)
class Field:
    """One leaf of a flattened observation: its path in the nested space and its slice of the vector."""

    path: str  # "" for a plain Box; "position", "sensors/0" for nested ones
    kind: str  # "box", "one_hot", "multi_one_hot", "binary"
    start: int
    size: int
    shape: tuple[int, ...]  # the leaf's own shape (Box/MultiBinary) or its numbers of choices (one-hot)
    scale: float = 1.0  # Box: 1/255 for 8-bit pixel values (uint8, or bounds [0, 255]), else 1
    dtype: str = "float32"  # Box: the space's dtype (uint8 images are stored as uint8)


@dataclass(frozen=True)
class ObservationLayout:
    """How one agent's observation space maps onto a flat vector (the `action_mask` entry excluded)."""

    fields: tuple[Field, ...]
    size: int
    mask_in_observation: bool  # the observation is a Dict with an `action_mask` entry

    def describe(self) -> str:
        return ", ".join(
            f"{f.path or '<obs>'}[{f.start}:{f.start + f.size}] {f.kind}{f.shape}" for f in self.fields
        )


def observation_layout(space: spaces.Space, agent: str) -> ObservationLayout:
    """The flat layout of `space`; raises ConfigError for spaces that cannot become a vector."""
    fields: list[Field] = []
    mask_in_observation = isinstance(space, spaces.Dict) and MASK_KEY in space.spaces
    _collect(space, "", fields, agent, skip_mask=mask_in_observation)
    size = sum(f.size for f in fields)
    if size == 0:
        raise ConfigError(
            f"Agent {agent!r} has an empty observation space {space}; the policy needs at least one feature. "
            f"Give the agent an observation (a constant Box(0, 1, (1,)) will do)."
        )
    return ObservationLayout(tuple(fields), size, mask_in_observation)


def infer_space(value, agent) -> spaces.Space:
    """The observation space an observation `value` implies, for envs that declare none: arrays and numbers
    become Boxes of their shape (uint8 arrays keep [0, 255], everything else is unbounded float32), dicts
    and tuples nest. Raises ConfigError for values that are not numbers."""
    if isinstance(value, dict):
        return spaces.Dict({key: infer_space(item, agent) for key, item in value.items()})
    if isinstance(value, tuple):
        return spaces.Tuple(tuple(infer_space(item, agent) for item in value))
    array = np.asarray(value)
    if array.dtype == np.uint8:
        return spaces.Box(0, 255, array.shape, np.uint8)
    if array.dtype.kind not in "biuf":
        raise ConfigError(
            f"Agent {agent!r} has no observation space, and its first observation (a {type(value).__name__}) "
            f"is not numeric, so none can be inferred. Give the env an observation_space(agent) method that "
            f"returns a gymnasium space (in a subclass of the env, in your own code)."
        )
    return spaces.Box(-np.inf, np.inf, array.shape, np.float32)


def _collect(space: spaces.Space, path: str, out: list[Field], agent: str, skip_mask: bool = False) -> None:
    start = sum(f.size for f in out)
    if isinstance(space, spaces.Box):
        size, shape = int(np.prod(space.shape, dtype=int)), tuple(int(n) for n in space.shape)
        out.append(Field(path, "box", start, size, shape, _pixel_scale(space), str(space.dtype)))
    elif isinstance(space, spaces.Discrete):
        out.append(Field(path, "one_hot", start, int(space.n), (int(space.n), int(space.start))))
    elif isinstance(space, spaces.MultiDiscrete):
        nvec = tuple(int(n) for n in np.asarray(space.nvec).reshape(-1))
        out.append(Field(path, "multi_one_hot", start, sum(nvec), nvec))
    elif isinstance(space, spaces.MultiBinary):
        shape = (int(space.n),) if np.isscalar(space.n) else tuple(int(n) for n in space.n)
        out.append(Field(path, "binary", start, int(np.prod(shape, dtype=int)), shape))
    elif isinstance(space, spaces.Dict):
        for key in sorted(space.spaces):
            if skip_mask and key == MASK_KEY:
                continue
            _collect(space.spaces[key], f"{path}/{key}" if path else str(key), out, agent)
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            _collect(sub, f"{path}/{i}" if path else str(i), out, agent)
    else:
        raise ConfigError(
            f"Agent {agent!r} has an observation space of type {type(space).__name__} at "
            f"{path or 'the top level'}, which cannot be flattened into a vector. Supported: Box, Discrete, "
            f"MultiDiscrete, MultiBinary, and Dict/Tuple of those. Wrap the env to encode it (e.g. a "
            f"Text or Graph observation as a fixed-size Box)."
        )


def _pixel_scale(box: spaces.Box) -> float:
    """1/255 for 8-bit pixels (so the network sees values in [0, 1]), 1 for everything else."""
    if box.dtype == np.uint8:
        return 1.0 / 255.0
    low, high = np.asarray(box.low), np.asarray(box.high)
    return 1.0 / 255.0 if low.size and (low == 0).all() and (high == 255).all() else 1.0


@dataclass(frozen=True)
class ImageField:
    """A slice of a flat observation that holds an image: ``start`` and the image's own layout, so a
    convolutional encoder can cut it out and reshape it (``[H, W, C]`` if ``channels_last``, else
    ``[C, H, W]``; a 2-D Box is one channel)."""

    path: str
    start: int
    height: int
    width: int
    channels: int
    channels_last: bool
    scale: float  # multiply the stored values by this (1/255 for 8-bit pixels)

    @property
    def size(self) -> int:
        return self.height * self.width * self.channels

    def describe(self) -> str:
        order = (
            f"{self.height}x{self.width}x{self.channels}"
            if self.channels_last
            else (f"{self.channels}x{self.height}x{self.width}")
        )
        return f"{self.path or '<obs>'} {order} image"


MAX_IMAGE_CHANNELS = 16  # a 3-D Box is an image when one end has at most this many channels


def image_fields(layout: ObservationLayout) -> tuple[ImageField, ...]:
    """The Box fields of `layout` that are shaped like images: 2-D ``[H, W]``, or 3-D with a channel dim
    of at most `MAX_IMAGE_CHANNELS` at either end (``[H, W, C]`` preferred when both ends qualify)."""
    found = []
    for f in layout.fields:
        if f.kind != "box" or len(f.shape) not in (2, 3):
            continue
        if len(f.shape) == 2:
            found.append(ImageField(f.path, f.start, f.shape[0], f.shape[1], 1, True, f.scale))
        elif f.shape[2] <= MAX_IMAGE_CHANNELS and f.shape[2] <= f.shape[0]:
            found.append(ImageField(f.path, f.start, f.shape[0], f.shape[1], f.shape[2], True, f.scale))
        elif f.shape[0] <= MAX_IMAGE_CHANNELS:
            found.append(ImageField(f.path, f.start, f.shape[1], f.shape[2], f.shape[0], False, f.scale))
    return tuple(found)


def flatten_into(observation, layout: ObservationLayout, out: np.ndarray) -> None:
    """Write one agent's observation into the float vector `out` (length `layout.size`)."""
    if len(layout.fields) == 1 and layout.fields[0].kind == "box" and not layout.mask_in_observation:
        out[:] = np.asarray(observation).reshape(-1)  # the common case: one Box, no lookup
        return
    for field in layout.fields:
        value = _leaf(observation, field.path)
        view = out[field.start : field.start + field.size]
        if field.kind in ("box", "binary"):
            view[:] = np.asarray(value).reshape(-1)
        elif field.kind == "one_hot":
            view[:] = 0.0
            view[int(value) - field.shape[1]] = 1.0
        else:  # multi_one_hot
            view[:] = 0.0
            offset = 0
            for n, v in zip(field.shape, np.asarray(value).reshape(-1)):
                view[offset + int(v)] = 1.0
                offset += n


def _leaf(observation, path: str):
    if not path:
        return observation
    for key in path.split("/"):
        observation = observation[int(key)] if isinstance(observation, (tuple, list)) else observation[key]
    return observation


@dataclass(frozen=True)
class ActionHead:
    """What the policy must output for one agent's action space."""

    kind: str  # "discrete", "multi_discrete" or "continuous"
    size: int  # discrete: choices; multi_discrete: sum of choices; continuous: dimensions
    nvec: tuple[int, ...] = ()  # multi_discrete: choices per sub-action
    start: tuple[int, ...] = ()  # Discrete.start / MultiDiscrete.start offsets added when sent to the env
    low: tuple[float, ...] = ()  # continuous bounds
    high: tuple[float, ...] = ()

    @property
    def signature(self) -> tuple:
        return (self.kind, self.size, self.nvec, self.start, self.low, self.high)


def action_head(space: spaces.Space, agent: str) -> ActionHead:
    """The policy head for `space`; raises ConfigError for action spaces the policies cannot produce."""
    if isinstance(space, spaces.Discrete):
        return ActionHead("discrete", int(space.n), start=(int(space.start),))
    if isinstance(space, spaces.MultiDiscrete):
        nvec = tuple(int(n) for n in np.asarray(space.nvec).reshape(-1))
        start = tuple(int(s) for s in np.asarray(getattr(space, "start", np.zeros(len(nvec)))).reshape(-1))
        return ActionHead("multi_discrete", sum(nvec), nvec=nvec, start=start)
    if isinstance(space, spaces.Box):
        if len(space.shape) != 1:
            raise ConfigError(
                f"Agent {agent!r} has a Box action space of shape {space.shape}; policies produce flat "
                f"action vectors. Give the env a 1-D Box (reshape inside the env's step)."
            )
        low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError(
                f"Agent {agent!r} has an unbounded Box action space ({space}); the policy squashes actions "
                f"into [low, high], so both must be finite. Give the action space finite bounds."
            )
        return ActionHead(
            "continuous", int(space.shape[0]), low=tuple(low.tolist()), high=tuple(high.tolist())
        )
    raise ConfigError(
        f"Agent {agent!r} has an action space of type {type(space).__name__} ({space}). Supported: Discrete, "
        f"MultiDiscrete and 1-D Box. Wrap the env to map a Dict/Tuple action onto one of these."
    )

"""Exact snapshot / restore of a batched VMAS environment.

``get_env_state(env)`` returns a plain nested structure (dicts, lists, tuples, tensors, python scalars)
that survives ``torch.save`` / ``torch.load(weights_only=True)``; ``set_env_state(env, state)`` puts it
back into an env built with the same arguments (scenario, num_envs, kwargs, seed), fresh or advanced.

How it works: a breadth-first walk over the vmas ``Environment`` object graph (env, scenario, world,
agents, landmarks, their ``state``/``action``/``dynamics``/sensors, nested lists and dicts) records
every slot (attribute, list item, dict value) in walk order:

* ``tensor``: the slot holds a tensor. Tensors are stored once per *storage* (as raw bytes) plus
  ``(dtype, size, stride, offset)``, so restore rebuilds the same aliasing: the same tensor object at
  two paths stays one object, and views sharing memory (vmas makes ``state.force`` a view of
  ``action.u``) keep sharing it.
* ``value``: a python scalar / str / None, or a tuple of those.
* ``ref``: an object first met at another path (e.g. ``agent.goal`` pointing at a landmark the
  scenario picked at random). Restore re-points the slot at the object found at that path.
* ``obj`` / ``dict`` / ``list``: an object met here first. Restore keeps the target's object but drops
  attributes / keys the snapshot did not have and resizes lists.

Objects are never created: the target must have the same object structure, which holds for an env
built with the same arguments. Callables, classes, modules, enums, devices, numpy / gym / pyglet
objects (spaces, the viewer) and items inside tuples mixing objects and tensors are constant
configuration and are skipped.

RNG: vmas 1.5 does *not* draw from torch's global CPU generator. Every public ``Environment`` method
swaps in a private, class-level ``Environment.vmas_random_state`` (torch CPU, numpy and python
``random`` states), shared by *all* vmas envs of the process. It is part of the snapshot (key
``"vmas_rng"``) and restored in place; ``isolated_vmas_rng()`` shields it from, e.g., an eval env.
Consequences: (1) snapshot all envs of a process at the same
moment (they share this state); (2) the caller still saves ``torch.get_rng_state()`` for its own
sampling (policies, exploration); (3) on CUDA, draws on the device use the global CUDA generator, which
vmas does not swap: save ``torch.cuda.get_rng_state_all()`` too. The torchrl ``VmasEnv`` wrapper only
holds specs and caches, so nothing of it is saved. The last output tensordict (the current
observation fed to the policy) is not env state either: keep it in the checkpoint yourself.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import random
import types
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

STATE_VERSION = 1

_PRIMITIVES = (bool, int, float, str, type(None))
_SKIPPED_TYPES = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.ModuleType,
    functools.partial,
    type,
    enum.Enum,
    torch.device,
    torch.dtype,
    torch.Generator,
    torch.nn.Module,
    np.ndarray,
    np.generic,
    set,
    frozenset,
)
_SKIPPED_MODULES = ("gym", "gymnasium", "pyglet", "numpy", "vmas.simulator.rendering")


class _KeyRef:
    """Placeholder path token for a dict key that is an object (resolved once all paths are known)."""

    def __init__(self, obj: Any):
        self.obj = obj


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def get_env_state(env) -> dict:
    """Snapshot everything that determines the future dynamics of ``env`` (tensors are cloned)."""
    walker = _Walker()
    root = vmas_environment(env)
    walker.walk(root)
    return {
        "version": STATE_VERSION,
        "num_envs": root.num_envs,
        "n_agents": root.n_agents,
        "storages": walker.storages,
        "tensors": walker.tensors,
        "slots": walker.encoded_slots(),
        "vmas_rng": _get_vmas_rng(),
    }


def set_env_state(env, state: dict) -> None:
    """Restore a snapshot from :func:`get_env_state` into ``env`` (built with the same arguments)."""
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"Unsupported env state version {state.get('version')!r}, expected {STATE_VERSION}")
    root = vmas_environment(env)
    for key in ("num_envs", "n_agents"):
        if state[key] != getattr(root, key):
            raise ValueError(f"Env state has {key}={state[key]}, the target env {getattr(root, key)}")
    tensors = _rebuild_tensors(state["storages"], state["tensors"], root.device)
    for kind, path, payload in state["slots"]:
        if kind == "tensor":
            _assign(root, path, tensors[payload])
        elif kind == "value":
            _assign(root, path, payload)
        elif kind == "ref":
            _assign(root, path, _resolve(root, payload))
        else:
            _reshape(root, kind, path, payload)
    _set_vmas_rng(state["vmas_rng"])


@contextlib.contextmanager
def isolated_vmas_rng() -> Iterator[None]:
    """Run vmas code (build, seed or step another env) without touching the RNG all vmas envs share."""
    saved = _get_vmas_rng()
    try:
        yield
    finally:
        _set_vmas_rng(saved)


# ----------------------------------------------------------------------------------------------------
# Snapshot: walk the object graph
# ----------------------------------------------------------------------------------------------------


def vmas_environment(env):
    """The vmas ``Environment`` behind a torchrl ``VmasEnv`` (possibly transformed) or itself."""
    from vmas.simulator.environment import Environment

    env = getattr(env, "base_env", env)  # TransformedEnv -> VmasEnv
    env = getattr(env, "_env", env)  # VmasEnv -> vmas Environment
    if not isinstance(env, Environment):
        raise TypeError(f"Expected a VmasEnv or vmas Environment, got {type(env).__name__}")
    return env


def _is_skipped(value: Any) -> bool:
    """Constant configuration, rendering objects and anything that cannot be walked."""
    if isinstance(value, _SKIPPED_TYPES):
        return True
    if not isinstance(value, (list, tuple, dict)) and not hasattr(value, "__dict__"):
        return True
    module = type(value).__module__ or ""
    return any(module == name or module.startswith(name + ".") for name in _SKIPPED_MODULES)


def _is_value(value: Any) -> bool:
    """Python scalars / str / None and tuples of them (exact types: ``torch.load`` must rebuild them)."""
    if type(value) in (tuple, torch.Size):
        return all(type(v) in _PRIMITIVES for v in value)
    return type(value) in _PRIMITIVES


def _is_plain_key(key: Any) -> bool:
    return _is_value(key) and type(key) is not torch.Size


class _Walker:
    """Breadth-first walk recording slots in visiting order, plus deduplicated tensor storages."""

    def __init__(self):
        self.slots: list[tuple[str, tuple, Any]] = []
        self.storages: list[dict] = []
        self.tensors: list[dict] = []
        self._paths: dict[int, tuple] = {}  # id(object) -> path where it was first met
        self._objects: list[Any] = []  # keeps walked objects alive so ids stay unique
        self._tensor_index: dict[int, int] = {}
        self._storage_index: dict[tuple, int] = {}

    def walk(self, root: Any) -> None:
        self._paths[id(root)] = ()
        queue = deque([(root, ())])
        while queue:
            obj, path = queue.popleft()
            for token, value in self._children(obj, path):
                self._visit(value, path + (token,), queue)

    def _children(self, obj: Any, path: tuple):
        """(token, value) pairs of a container / object; records its keys or length for restore."""
        if isinstance(obj, tuple):  # read-only: only objects inside are walked
            return [(i, v) for i, v in enumerate(obj) if not _is_value(v) and not torch.is_tensor(v)]
        if isinstance(obj, list):
            self.slots.append(("list", path, len(obj)))
            return list(enumerate(obj))
        if isinstance(obj, dict):
            plain = all(_is_plain_key(k) for k in obj)
            self.slots.append(("dict", path, list(obj) if plain else None))
            return [(k if _is_plain_key(k) else _KeyRef(k), v) for k, v in obj.items()]
        attrs = vars(obj)
        self.slots.append(("obj", path, list(attrs)))
        return list(attrs.items())

    def _visit(self, value: Any, path: tuple, queue: deque) -> None:
        if torch.is_tensor(value):
            self.slots.append(("tensor", path, self._add_tensor(value)))
        elif _is_value(value):
            self.slots.append(("value", path, value))
        elif _is_skipped(value):
            return
        elif id(value) in self._paths:
            self.slots.append(("ref", path, self._paths[id(value)]))
        else:
            self._paths[id(value)] = path
            self._objects.append(value)
            queue.append((value, path))

    def _add_tensor(self, tensor: torch.Tensor) -> int:
        """Index of ``tensor`` in ``self.tensors``; its storage's bytes are saved once."""
        if id(tensor) in self._tensor_index:
            return self._tensor_index[id(tensor)]
        self._objects.append(tensor)
        self._tensor_index[id(tensor)] = len(self.tensors)
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr()) if storage.nbytes() else ("empty", len(self.tensors))
        if key not in self._storage_index:
            raw = torch.empty(0, dtype=torch.uint8, device=tensor.device).set_(storage).detach()
            self._storage_index[key] = len(self.storages)
            self.storages.append({"bytes": raw.clone(), "device": str(tensor.device)})
        self.tensors.append(
            {
                "storage": self._storage_index[key],
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "size": list(tensor.size()),
                "stride": list(tensor.stride()),
                "offset": tensor.storage_offset(),
            }
        )
        return len(self.tensors) - 1

    def encoded_slots(self) -> list[list]:
        """Slots with object dict keys turned into ``{"ref": path}`` tokens (dropped if unreachable)."""
        encoded = []
        for kind, path, payload in self.slots:
            path = self._encode_path(path)
            if kind == "ref":
                payload = self._encode_path(payload)
                if payload is None:
                    continue
            if path is not None:
                encoded.append([kind, path, payload])
        return encoded

    def _encode_path(self, path: tuple) -> list | None:
        out = []
        for token in path:
            if isinstance(token, _KeyRef):
                key_path = self._paths.get(id(token.obj))
                token = None if key_path is None else {"ref": self._encode_path(key_path)}
                if token is None or token["ref"] is None:
                    return None
            out.append(token)
        return out


# ----------------------------------------------------------------------------------------------------
# Restore
# ----------------------------------------------------------------------------------------------------


def _rebuild_tensors(storages: list[dict], specs: list[dict], env_device: torch.device) -> list[torch.Tensor]:
    """Fresh tensors sharing memory exactly like the snapshotted ones did."""
    bases = []
    for storage in storages:
        saved = storage["bytes"]
        device = env_device if torch.device(storage["device"]).type == env_device.type else storage["device"]
        bases.append(saved.to(device, copy=True))
    tensors = []
    for spec in specs:
        base = bases[spec["storage"]]
        tensor = torch.empty(0, dtype=getattr(torch, spec["dtype"]), device=base.device)
        tensors.append(tensor.set_(base.untyped_storage(), spec["offset"], spec["size"], spec["stride"]))
    return tensors


def _missing(path: list) -> ValueError:
    return ValueError(f"Env state path {path} not found in the target env: build it with the same arguments")


def _decode_key(root: Any, token: Any) -> Any:
    return _resolve(root, token["ref"]) if isinstance(token, dict) else token


def _child(root: Any, obj: Any, token: Any, path: list) -> Any:
    try:
        if isinstance(obj, (list, tuple)):
            return obj[token]
        if isinstance(obj, dict):
            return obj[_decode_key(root, token)]
        return vars(obj)[token]
    except (IndexError, KeyError, TypeError) as err:
        raise _missing(path) from err


def _resolve(root: Any, path: list) -> Any:
    obj = root
    for token in path:
        obj = _child(root, obj, token, path)
    return obj


def _assign(root: Any, path: list, value: Any) -> None:
    parent, token = _resolve(root, path[:-1]), path[-1]
    if isinstance(parent, tuple):  # immutable: its items were fixed at construction
        return
    if isinstance(parent, list):
        parent[token] = value
    elif isinstance(parent, dict):
        parent[_decode_key(root, token)] = value
    else:
        vars(parent)[token] = value  # bypass property setters: they may validate or copy


def _reshape(root: Any, kind: str, path: list, payload: Any) -> None:
    """Make a container match the snapshot: list length, dict keys / object attributes present.

    Lists and dicts the target lacks (created lazily by vmas, e.g. ``world.forces_dict``) are created.
    """
    try:
        obj = _resolve(root, path)
    except ValueError:
        obj = None
    if kind in ("list", "dict") and not isinstance(obj, list if kind == "list" else dict):
        obj = [] if kind == "list" else {}
        _assign(root, path, obj)
    elif obj is None:
        raise _missing(path)
    if kind == "list":
        del obj[payload:]
        obj.extend([None] * (payload - len(obj)))
        return
    if payload is None:  # dict with keys we cannot name: leave extra keys alone
        return
    container = obj if kind == "dict" else vars(obj)
    for key in set(container) - set(payload):
        del container[key]


# ----------------------------------------------------------------------------------------------------
# vmas' private RNG state (class attribute shared by all vmas environments)
# ----------------------------------------------------------------------------------------------------


def _get_vmas_rng() -> dict:
    from vmas.simulator.environment import Environment

    torch_state, np_state, py_state = Environment.vmas_random_state
    name, keys, pos, has_gauss, cached_gaussian = np_state
    version, internal, gauss_next = py_state
    return {
        "torch": torch_state.clone(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def _set_vmas_rng(rng: dict) -> None:
    """Write in place: vmas' decorators hold a reference to this very list."""
    from vmas.simulator.environment import Environment

    np_rng = rng["numpy"]
    py_rng = rng["python"]
    state = Environment.vmas_random_state
    state[0] = rng["torch"].clone()
    state[1] = (
        np_rng["name"],
        np_rng["keys"].numpy().astype(np.uint32),
        np_rng["pos"],
        np_rng["has_gauss"],
        np_rng["cached_gaussian"],
    )
    state[2] = (py_rng["version"], tuple(py_rng["state"].tolist()), py_rng["gauss_next"])
    random.Random().setstate(state[2])  # validate early rather than inside the next vmas call

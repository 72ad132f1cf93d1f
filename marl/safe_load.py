"""What a saved run could make a command execute, and the refusal when the run is not the user's own.

A checkpoint loads with `torch.load(weights_only=True)`, so its bytes cannot run code. Its saved config
can: `env.entry_point` names a function that building the env imports and calls (with `env.kwargs`), and
`ray.address` makes the learner join that Ray cluster, whose replies it unpickles. Such *code references*
anywhere in a checkpoint (the run's config, an extraction's teacher config, a generalist's partner config)
are signed with this user's key when the checkpoint is written (`sign_references`), and honoured on load
only when that signature verifies or the user said `--trust` / MARL_TRUST=1 (`check_references`).
Configs without code references (VMAS and native envs on a local Ray instance) load from anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from marl import trust
from marl.errors import MarlError

SIGNATURE_KEY = "code_signature"  # where a checkpoint keeps the signature of its code references
_MAX_NODES = 1_000_000  # a walk over a checkpoint's plain data stops here (it never gets near)


class UntrustedRunError(MarlError):
    """A run from someone else (or edited) names code to run; the message says what and how to allow it."""


@dataclass(frozen=True)
class CodeReference:
    """One setting that would execute code: where it sits in the checkpoint and what it would do."""

    where: str  # e.g. "config.env.entry_point"
    what: str  # e.g. "import and call os:system(**{'command': 'touch /tmp/x'})"
    data: Any  # what is signed: the setting and its arguments


def code_references(state: Any) -> list[CodeReference]:
    """Every code reference in a checkpoint's plain data (tensors are skipped), in a stable order."""
    found: list[CodeReference] = []
    stack: list[tuple[str, Any]] = [("", state)]
    visited = 0
    while stack and visited < _MAX_NODES:
        where, node = stack.pop()
        visited += 1
        if isinstance(node, dict):
            entry_point = node.get("entry_point")
            if isinstance(entry_point, str) and entry_point:
                kwargs = node.get("kwargs") or {}
                found.append(
                    CodeReference(
                        f"{where}entry_point",
                        f"import and call {entry_point}(**{_short(kwargs)})",
                        {"entry_point": entry_point, "kwargs": kwargs},
                    )
                )
            ray = node.get("ray")
            if isinstance(ray, dict) and ray.get("address"):
                address = ray["address"]
                found.append(
                    CodeReference(
                        f"{where}ray.address",
                        f"join the Ray cluster at {address!r} and unpickle what it sends",
                        {"ray.address": address},
                    )
                )
            stack.extend((f"{where}{key}.", value) for key, value in node.items() if _walkable(value))
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{where}{i}.", value) for i, value in enumerate(node) if _walkable(value))
    return sorted(found, key=lambda ref: ref.where)


def sign_references(state: dict) -> dict:
    """`state` with the signature of its code references under SIGNATURE_KEY (none when it has none)."""
    state = {k: v for k, v in state.items() if k != SIGNATURE_KEY}
    references = code_references(state)
    if references:
        state[SIGNATURE_KEY] = trust.sign(_signed_bytes(references))
    return state


def check_references(state: dict, path: str | Path) -> None:
    """Refuse a checkpoint whose code references are not signed by this user (unless trusted)."""
    references = code_references(state)
    if not references or trust.verify(_signed_bytes(references), state.get(SIGNATURE_KEY)):
        return
    listed = "; ".join(f"{ref.where} would {ref.what}" for ref in references)
    raise UntrustedRunError(
        f"Refusing to load {path}: it was not written by you on this machine (its signature does not match "
        f"your key in {trust.key_path()}), and its saved config names code that loading it would run: "
        f"{listed}. Weights alone are safe to load, these settings are not. If you trust whoever made this "
        "run, repeat the command with --trust (or set MARL_TRUST=1); otherwise ask them for a run without "
        "these settings, or retrain it yourself."
    )


def _signed_bytes(references: list[CodeReference]) -> bytes:
    return trust.canonical([[ref.where, ref.data] for ref in references])


def _walkable(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple)) and not isinstance(value, torch.Tensor)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

"""Trust in what a command loads: runs made on this machine are signed, anything else is data only.

A run folder can come from anywhere (a colleague, a download). Loading its weights is safe
(`torch.load(weights_only=True)`), but two things in a run could execute code: bytes that would be
unpickled (a PettingZoo env's saved state) and config values that name code to import and call
(`env.entry_point`). Both are signed when they are written, with an HMAC under a key that only this user
can read (`~/.config/marl/trust_key`, or `$MARL_TRUST_KEY`), and honoured on load only when the signature
matches. A user who trusts a foreign run says so once for the whole command (`--trust`, or
`MARL_TRUST=1`), which `trust_everything()` records.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

_TRUST_ALL = False


def key_path() -> Path:
    return Path(os.environ.get("MARL_TRUST_KEY") or "~/.config/marl/trust_key").expanduser()


def _key() -> bytes:
    """This user's signing key, created on first use with permissions 0600 (owner only)."""
    path = key_path()
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    try:
        os.link(tmp, path)  # atomic and never overwrites: two processes creating the key agree on one
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def sign(data: bytes) -> str:
    """HMAC-SHA256 of `data` under this user's key (hex)."""
    return hmac.new(_key(), data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str | None) -> bool:
    """Whether `signature` is this user's signature of `data` (or the user trusts everything)."""
    if trusting_everything():
        return True
    return isinstance(signature, str) and hmac.compare_digest(sign(data), signature)


def canonical(value) -> bytes:
    """A stable byte form of plain data (dicts, lists, numbers, strings) to sign."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def trust_everything(enabled: bool = True) -> None:
    """Honour unsigned or foreign pickles and code references for the rest of this process (`--trust`)."""
    global _TRUST_ALL
    _TRUST_ALL = enabled


def trusting_everything() -> bool:
    return _TRUST_ALL or os.environ.get("MARL_TRUST", "") in ("1", "true", "yes")

"""marl/trust.py: signatures under a private per-user key, and the explicit trust switch."""

from __future__ import annotations

import stat

import pytest

from marl import trust


@pytest.fixture(autouse=True)
def private_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MARL_TRUST_KEY", str(tmp_path / "cfg" / "trust_key"))
    monkeypatch.delenv("MARL_TRUST", raising=False)
    trust.trust_everything(False)
    yield
    trust.trust_everything(False)


def test_key_is_created_private_and_reused(tmp_path):
    signature = trust.sign(b"payload")
    path = trust.key_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert trust.sign(b"payload") == signature  # same key on the next call


def test_only_this_users_signature_verifies(tmp_path, monkeypatch):
    signature = trust.sign(b"payload")
    assert trust.verify(b"payload", signature)
    assert not trust.verify(b"payload!", signature)
    assert not trust.verify(b"payload", None)
    monkeypatch.setenv("MARL_TRUST_KEY", str(tmp_path / "other_user_key"))
    assert not trust.verify(b"payload", signature)  # another key: another user's run


def test_trust_switch_accepts_anything(monkeypatch):
    assert not trust.verify(b"x", "forged")
    trust.trust_everything()
    assert trust.verify(b"x", "forged")
    trust.trust_everything(False)
    monkeypatch.setenv("MARL_TRUST", "1")
    assert trust.verify(b"x", None)


def test_canonical_form_ignores_key_order():
    assert trust.canonical({"b": 1, "a": [1, 2]}) == trust.canonical({"a": [1, 2], "b": 1})

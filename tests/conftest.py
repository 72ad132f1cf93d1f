"""Fixtures shared by the test modules."""

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def private_trust_key(tmp_path_factory):
    """Runs written by the tests are signed with a key of their own, not the user's (marl/trust.py);
    subprocesses inherit it through the environment."""
    saved = {name: os.environ.get(name) for name in ("MARL_TRUST_KEY", "MARL_TRUST")}
    os.environ["MARL_TRUST_KEY"] = str(tmp_path_factory.mktemp("trust") / "trust_key")
    os.environ.pop("MARL_TRUST", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is faster, and on a busy machine much faster (no spinning threads).
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

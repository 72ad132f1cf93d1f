"""A PettingZoo run's env state in a checkpoint is signed: a planted pickle never runs on resume.

The copies of a PettingZoo env are pickled into checkpoints for an exact resume; unpickling runs code. They
are only unpickled when this user's key signed them (marl/trust.py) or trust is switched on; otherwise the
interrupted episodes end and new ones start from the seeds the checkpoint recorded.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from marl.envs.pettingzoo_env import BatchedPettingZooEnv, load_factory

from marl import trust
from marl.checkpoint import list_checkpoints
from marl.config import config_to_dict, load_config
from marl.ray_collector import RolloutWorker
from marl.run_logger import read_metrics
from marl.training import build_trainer, train

HETERO = "pz_envs:hetero_team"


@pytest.fixture(autouse=True)
def private_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MARL_TRUST_KEY", str(tmp_path / "key" / "trust_key"))
    monkeypatch.delenv("MARL_TRUST", raising=False)
    trust.trust_everything(False)
    yield
    trust.trust_everything(False)


class Payload:
    """Unpickling this creates `marker`: proof that code from the checkpoint ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _planted(snapshot: dict, marker, signature="0" * 64) -> dict:
    return dict(snapshot, pickle=pickle.dumps({"copies": Payload(marker)}), signature=signature)


def _cfg(tmp_path, *overrides):
    return load_config(
        [
            "env=pettingzoo",
            f"env.entry_point={HETERO}",
            f"experiment.runs_dir={tmp_path}",
            "experiment.progress=false",
            "experiment.eval_every=0",
            "metrics.every=0",
            "experiment.frames_per_batch=80",
            "experiment.total_frames=320",
            "experiment.checkpoint_every=1",
            "env.num_envs=4",
            "algorithm.minibatch_size=40",
            "algorithm.epochs=1",
            "model.hidden_sizes=[16]",
            *overrides,
        ]
    )


def test_own_snapshot_is_signed_and_restores_exactly():
    env = BatchedPettingZooEnv(load_factory(HETERO), num_envs=2, seed=3)
    td = env.reset()
    for _ in range(3):
        _, td = env.step_and_maybe_reset(env.rand_action(td))
    state = env.snapshot()
    assert trust.verify(state["pickle"], state["signature"])
    again = BatchedPettingZooEnv(load_factory(HETERO), num_envs=2, seed=99)
    again.reset()
    again.restore(state)
    assert again._steps.tolist() == env._steps.tolist()


@pytest.mark.parametrize("signature", [None, "0" * 64, "bytes"])
def test_planted_payload_does_not_run_and_episodes_restart_from_recorded_seeds(tmp_path, signature):
    marker = tmp_path / "ran"
    env = BatchedPettingZooEnv(load_factory(HETERO), num_envs=2, seed=3)
    td = env.reset()
    for _ in range(3):
        _, td = env.step_and_maybe_reset(env.rand_action(td))
    state = _planted(env.snapshot(), marker, signature)
    if signature == "bytes":  # a checkpoint from before signing: bare pickled bytes
        state = state["pickle"]
    restored = BatchedPettingZooEnv(load_factory(HETERO), num_envs=2, seed=3)
    current = restored.reset()
    with pytest.warns(UserWarning, match=r"not signed by you.*--trust \(or MARL_TRUST=1\)"):
        restored.restore(state)
    assert not marker.exists()
    # the next step ends the interrupted episodes (truncated, no reward, observation unchanged) ...
    step, next_td = restored.step_and_maybe_reset(restored.rand_action(current))
    assert step["next", "truncated"].all() and not step["next", "terminated"].any()
    assert (step["next", "carrier", "reward"] == 0).all()
    assert torch.equal(step["next", "scout", "observation"], current["scout", "observation"])
    # ... and new ones start from the seeds the checkpoint recorded
    seeds = env.snapshot()["restart_seeds"] if signature != "bytes" else None
    if seeds is not None:
        fresh = BatchedPettingZooEnv(load_factory(HETERO), num_envs=2, seed=0)
        fresh._restart_seeds = seeds
        assert torch.equal(fresh.reset()["scout", "observation"], next_td["scout", "observation"])


def test_with_trust_on_the_pickle_is_loaded(tmp_path):
    """The same planted bytes do run when the user says they trust the run: the test above can fail."""
    marker = tmp_path / "ran"
    env = BatchedPettingZooEnv(load_factory(HETERO), num_envs=1)
    trust.trust_everything(True)
    with pytest.raises(KeyError):  # the payload is not a real snapshot, but it ran while loading
        env.restore(_planted(env.snapshot(), marker))
    assert marker.exists()


def test_resume_from_a_checkpoint_with_a_planted_payload(tmp_path):
    marker = tmp_path / "ran"
    run = train(_cfg(tmp_path), stop_after=2)
    path = list_checkpoints(run)[-1]
    state = torch.load(path, weights_only=True)
    state["collector"]["env"] = _planted(state["collector"]["env"], marker)
    torch.save(state, path)
    with pytest.warns(UserWarning, match="not signed by you"):
        train(_cfg(tmp_path), resume=run)
    assert not marker.exists()
    assert len(read_metrics(run)) == 4  # the run finished its iterations with restarted episodes


def test_in_process_collector_and_ray_worker_restore_safely(tmp_path):
    marker = tmp_path / "ran"
    cfg = _cfg(tmp_path)
    trainer = build_trainer(cfg)
    trainer.collect()
    state = trainer.state_dict()
    state["collector"]["env"] = _planted(state["collector"]["env"], marker)
    other = build_trainer(cfg)
    with pytest.warns(UserWarning, match="not signed by you"):
        other.load_state_dict(state)
    batch, _ = other.collect()
    assert batch["next", "truncated"][:, 0].all()  # the interrupted episodes ended at the first step
    assert not marker.exists()

    # A Ray rollout worker restores through the same call (built here without Ray: it is a plain class)
    worker = RolloutWorker(config_to_dict(cfg), num_envs=2, steps=10, seed=1, threads=1)
    worker.collect({k: v for k, v in trainer.model.actors.state_dict().items()})
    saved = worker.state_dict()
    saved["collector"]["env"] = _planted(saved["collector"]["env"], marker)
    with pytest.warns(UserWarning, match="not signed by you"):
        worker.load_state_dict(saved)
    worker.collect({k: v for k, v in trainer.model.actors.state_dict().items()})
    assert not marker.exists()

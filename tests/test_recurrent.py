"""`model.recurrent` in `marl train`: GRU actors, their state carried by the collector, replayed by PPO."""

import pytest
import torch
from marl.agents.policy import EPISODE_START, RNN_STATE
from marl.envs.native import NATIVE_ENVS, NativeEnv

from marl.checkpoint import load_checkpoint
from marl.config import load_config
from marl.errors import ConfigError
from marl.run_logger import read_metrics
from marl.training import build_trainer, train, train_iteration


class CueRecallEnv(NativeEnv):
    """A memory probe: a cue (0 or 1) is shown only at the first step; at the last step (the third) each
    agent is paid 1 for naming it. Without memory the best is 0.5 per agent; with memory it is 1."""

    state_names = ("cue",)

    def __init__(self, n_agents: int = 2, num_envs: int = 1, max_steps: int = 3, device="cpu", seed: int = 0):
        self.agent_names = tuple(f"agent_{i}" for i in range(n_agents))
        super().__init__(num_envs, max_steps, device, seed)
        self.cue = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._make_specs(obs_dim=3, n_actions=2)

    def _reset_envs(self, mask):
        draw = torch.randint(0, 2, (self.num_envs,), generator=self.generator, device=self.device)
        self.cue = torch.where(mask, draw, self.cue)

    def _advance(self, actions):
        last = self.step_count >= self.max_steps
        reward = (actions == self.cue.unsqueeze(-1)).float().mean(-1) * last
        return reward, last

    def _observe(self):
        shown = (self.step_count == 0).float().unsqueeze(-1)
        cue = torch.nn.functional.one_hot(self.cue, 2).float() * shown
        time = (self.step_count.float() / self.max_steps).unsqueeze(-1)
        return torch.cat([cue, time], -1).unsqueeze(1).expand(-1, len(self.agent_names), -1)

    def _info(self):
        return {}


@pytest.fixture
def cue_recall(monkeypatch):
    monkeypatch.setitem(NATIVE_ENVS, "cue_recall", CueRecallEnv)


def _cfg(tmp_path, *overrides):
    return load_config(
        [
            "experiment=smoke",
            f"experiment.runs_dir={tmp_path}",
            "experiment.progress=false",
            "model.recurrent=true",
            "algorithm.chunk_length=4",
            *overrides,
        ]
    )


@pytest.mark.parametrize("env", ["vmas", "native"])
def test_chunk_replay_gives_the_rollout_log_probs(tmp_path, env):
    """PPO's chunked replay from the stored GRU states reproduces every step's log-prob of the rollout,
    episodes starting inside chunks included (VMAS: continuous actions; cooking: categorical, random ends)."""
    extra = [] if env == "vmas" else ["env=native/cooking", "env.max_steps=7", "env.num_envs=8"]
    trainer = build_trainer(_cfg(tmp_path, *extra, "experiment.frames_per_batch=960"))
    batch, _ = trainer.collect()
    starts = batch[EPISODE_START]
    assert starts[:, 0].all() and starts[:, 1:].any()  # fresh states first, then episodes restart mid-batch
    envs, steps = batch.shape
    chunks = batch.reshape(envs * steps // 4, 4)
    for name, actor in trainer.model.actors.items():
        stored = chunks[:, 0][name, RNN_STATE]
        log_prob, _, _ = actor.evaluate(
            chunks[name, "observation"], chunks[name, "sample"], None, stored, starts.reshape(-1, 4)
        )
        torch.testing.assert_close(log_prob, chunks[name, "log_prob"], atol=1e-5, rtol=0)
        # the state is really used: replaying every chunk from zeros gives other log-probs
        zeros = torch.zeros_like(stored)
        from_zeros, _, _ = actor.evaluate(
            chunks[name, "observation"], chunks[name, "sample"], None, zeros, starts.reshape(-1, 4)
        )
        assert not torch.allclose(from_zeros, chunks[name, "log_prob"], atol=1e-5)


def test_recurrent_actor_learns_what_a_feed_forward_one_cannot(tmp_path, cue_recall):
    """The cue is visible only at the first step: a GRU actor learns to recall it (return near 1 per agent),
    the feed-forward actor stays near chance (0.5). Same seed, data and PPO settings."""
    common = [
        "env.name=native/cue_recall",
        "env.continuous_actions=false",
        "env.n_agents=2",
        "env.max_steps=3",
        "env.num_envs=64",
        "experiment.frames_per_batch=768",
        "experiment.total_frames=46080",
        "experiment.eval_every=0",
        "experiment.seed=0",
        "algorithm=ippo",
        "algorithm.lr=3e-3",
        "algorithm.epochs=4",
        "algorithm.minibatch_size=192",
        "algorithm.chunk_length=3",
        "algorithm.entropy_coef=0.0",
        "metrics.every=0",
        "model.hidden_sizes=[32]",
        "model.recurrent_size=16",
    ]
    final = {}
    for recurrent in (True, False):
        rows = read_metrics(train(_cfg(tmp_path / str(recurrent), *common, f"model.recurrent={recurrent}")))
        final[recurrent] = sum(row["train/return_mean"] for row in rows[-5:]) / 5
    assert final[True] > 0.9, final
    assert final[False] < 0.65, final


def test_recurrent_stop_and_resume_equals_uninterrupted(tmp_path):
    """The GRU states in flight are part of the checkpoint: a resumed run equals an uninterrupted one."""
    overrides = ["experiment.total_frames=2400", "experiment.checkpoint_every=1", "experiment.eval_every=0"]
    overrides.append("metrics.every=0")
    full = train(_cfg(tmp_path / "full", *overrides))
    part = train(_cfg(tmp_path / "part", *overrides), stop_after=2)
    resumed = train(_cfg(tmp_path / "part", *overrides), resume=part)
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_recurrent_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="chunk_length=7.*divisor of 100"):
        _cfg(tmp_path, "algorithm.chunk_length=7")
    with pytest.raises(ConfigError, match="recurrent_size"):
        _cfg(tmp_path, "model.recurrent_size=0")


def test_feed_forward_batches_carry_no_state(tmp_path):
    trainer = build_trainer(_cfg(tmp_path, "model.recurrent=false"))
    batch, _ = trainer.collect()
    assert EPISODE_START not in batch.keys()  # noqa: SIM118 - a TensorDict's keys
    assert RNN_STATE not in batch["agents"].keys()  # noqa: SIM118
    assert train_iteration(trainer)["train/episodes"] > 0

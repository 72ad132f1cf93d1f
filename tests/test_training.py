"""The training loop end to end: learning, exact resume, Ctrl-C, every sharing scheme, failures."""

import pytest
import torch

from marl.checkpoint import list_checkpoints, load_checkpoint
from marl.config import load_config
from marl.errors import MarlError
from marl.run_logger import read_metrics
from marl.training import build_trainer, train, train_iteration
from tests.helpers import without_timing


def _cfg(tmp_path, *overrides):
    return load_config(
        ["experiment=smoke", f"experiment.runs_dir={tmp_path}", "experiment.progress=false", *overrides]
    )


def test_short_run_improves_return_with_fixed_seed(tmp_path):
    """MAPPO on VMAS navigation (2 agents) learns to approach its goals within 60k frames."""
    cfg = load_config(
        [
            f"experiment.runs_dir={tmp_path}",
            "experiment.progress=false",
            "experiment.seed=0",
            "experiment.total_frames=60000",
            "experiment.eval_every=0",
            "env.n_agents=2",
            "algorithm.lr=3e-4",
            "algorithm.epochs=10",
            "algorithm.minibatch_size=1000",
            "model.hidden_sizes=[64,64]",
        ]
    )
    rows = read_metrics(train(cfg))
    returns = [row["train/return_mean"] for row in rows]
    assert len(returns) == 10
    assert sum(returns[-3:]) / 3 > returns[0] + 0.5, returns


@pytest.mark.parametrize("checkpoint_every", [1, 3])
def test_stop_and_resume_equals_uninterrupted(tmp_path, checkpoint_every):
    overrides = [
        "experiment.total_frames=2400",
        f"experiment.checkpoint_every={checkpoint_every}",
        "algorithm.value_normalization=true",
    ]
    full = train(_cfg(tmp_path / "full", *overrides))
    part = train(_cfg(tmp_path / "part", *overrides), stop_after=2)
    assert load_checkpoint(part)["iteration"] == 2
    resumed = train(_cfg(tmp_path / "part", *overrides), resume=part)
    assert resumed == part

    a, b = load_checkpoint(full), load_checkpoint(resumed)
    assert a["iteration"] == b["iteration"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert without_timing(read_metrics(full)) == without_timing(read_metrics(resumed))
    assert torch.equal(a["rng"]["cpu"], b["rng"]["cpu"])


def test_ctrl_c_mid_iteration_checkpoints_last_complete_iteration_and_resumes_exactly(tmp_path, monkeypatch):
    overrides = ["experiment.total_frames=2400", "experiment.checkpoint_every=10"]
    full = train(_cfg(tmp_path / "full", *overrides))

    from marl import collector as collector_module

    original, calls = collector_module.LocalCollector.collect, {"n": 0}

    def interrupted_collect(self, policy, actors=None):
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C during the third iteration's rollout, after some env steps
            original(self, policy, actors)
            raise KeyboardInterrupt
        return original(self, policy, actors)

    monkeypatch.setattr(collector_module.LocalCollector, "collect", interrupted_collect)
    with pytest.raises(SystemExit) as stopped:
        train(_cfg(tmp_path / "part", *overrides))
    assert stopped.value.code == 130
    monkeypatch.setattr(collector_module.LocalCollector, "collect", original)
    run_dir = next((tmp_path / "part").iterdir())
    assert load_checkpoint(run_dir)["iteration"] == 2

    resumed = train(_cfg(tmp_path / "part", *overrides), resume=run_dir)
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert without_timing(read_metrics(full)) == without_timing(read_metrics(resumed))


def test_checkpoints_are_weights_only_and_pruned(tmp_path):
    run_dir = train(
        _cfg(
            tmp_path,
            "experiment.total_frames=3000",
            "experiment.checkpoint_every=1",
            "experiment.keep_checkpoints=2",
        )
    )
    checkpoints = list_checkpoints(run_dir)
    assert [p.name for p in checkpoints] == ["iter_0000004.pt", "iter_0000005.pt"]
    state = torch.load(checkpoints[-1], weights_only=True)  # no pickled code objects inside
    assert state["frames"] == 3000


def test_resume_refuses_a_changed_setup(tmp_path):
    run_dir = train(_cfg(tmp_path, "experiment.total_frames=600"))
    with pytest.raises(MarlError, match="algorithm.gamma"):
        train(_cfg(tmp_path, "experiment.total_frames=1200", "algorithm.gamma=0.5"), resume=run_dir)


@pytest.mark.parametrize(
    "overrides",
    [
        ["sharing=shared"],
        ["sharing=shared_id", "algorithm=ippo"],
        ["sharing=independent", "algorithm.action_distribution=gaussian"],
        ["sharing=grouped", "env.n_agents=3", "sharing.roles={a: [0, 2], b: [1]}"],
        ["sharing=hyper"],
        ["sharing=hyper_linear", "algorithm=ippo"],
        ["sharing.actor.scheme=hyper", "sharing.critic.scheme=independent"],
        ["env=vmas/dispersion", "env.num_envs=6", "sharing=independent"],  # discrete actions
        ["env=vmas/balance", "env.num_envs=6", "sharing=hyper", "algorithm.value_normalization=true"],
    ],
)
def test_every_scheme_trains_an_iteration(tmp_path, overrides):
    trainer = build_trainer(_cfg(tmp_path, *overrides))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    metrics = train_iteration(trainer)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if "loss" in k)
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)]
    assert all(changed), "every parameter tensor should receive a gradient step"


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    from marl import collector as collector_module

    original = collector_module.LocalCollector.collect

    def poisoned(self, policy, actors=None):
        batch, episodes = original(self, policy, actors)
        if self.calls_seen:
            batch["next", "agents", "reward"] = torch.full_like(
                batch["next", "agents", "reward"], float("nan")
            )
        self.calls_seen += 1
        return batch, episodes

    monkeypatch.setattr(collector_module.LocalCollector, "calls_seen", 0, raising=False)
    monkeypatch.setattr(collector_module.LocalCollector, "collect", poisoned)
    with pytest.raises(MarlError, match="not finite"):
        train(_cfg(tmp_path, "experiment.total_frames=2400", "experiment.checkpoint_every=10"))
    run_dir = next(tmp_path.iterdir())
    assert load_checkpoint(run_dir)["iteration"] == 1


def test_threads_setting_is_applied_and_validated(tmp_path):
    before = torch.get_num_threads()
    try:
        build_trainer(_cfg(tmp_path, "experiment.threads=1"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    from marl.errors import ConfigError

    with pytest.raises(ConfigError, match="experiment.threads"):
        _cfg(tmp_path, "experiment.threads=-1")

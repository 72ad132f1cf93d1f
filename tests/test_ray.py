"""Ray rollout workers: same batches as in-process collection, reproducible, survive a killed worker."""

import os
import signal

import pytest
import torch

ray = pytest.importorskip("ray")

from marl.config import load_config  # noqa: E402
from marl.run_logger import read_metrics  # noqa: E402
from marl.training import build_trainer, train  # noqa: E402

SMOKE = ["experiment=smoke", "experiment.progress=false"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module (workers then reuse it), shut down at the end."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _trainer(workers: int, *extra: str):
    return build_trainer(load_config([*SMOKE, f"collector.num_workers={workers}", *extra]))


def test_worker_batches_have_the_in_process_layout():
    local, remote = _trainer(0), _trainer(2)
    try:
        (batch, episodes), (reference, reference_episodes) = remote.collect(), local.collect()
        assert batch.batch_size == reference.batch_size  # [envs, time]: 2 workers x 3 envs, 100 steps
        keys = set(reference.keys(True, True))
        assert set(batch.keys(True, True)) == keys
        for key in keys:
            assert batch[key].shape == reference[key].shape and batch[key].dtype == reference[key].dtype
        assert set(episodes) == set(reference_episodes)
        assert remote.collector.frames_per_batch == local.collector.frames_per_batch
        # each worker steps its own envs: the two halves of the batch differ
        obs = batch["agents", "observation"]
        assert not torch.equal(obs[:3], obs[3:])
    finally:
        remote.close()


def test_same_seed_and_worker_count_give_the_same_batches():
    batches = []
    for _ in range(2):  # one after the other: the instance has CPUs for 2 workers
        trainer = _trainer(2)
        try:
            batches.append(trainer.collect()[0])
        finally:
            trainer.close()
    a, b = batches
    assert torch.equal(a["agents", "observation"], b["agents", "observation"])
    assert torch.equal(a["agents", "action"], b["agents", "action"])


def test_a_killed_worker_is_replaced_and_its_share_collected_again():
    trainer = _trainer(2)
    try:
        trainer.collect()
        pid = ray.get(trainer.collector.workers[0].pid.remote())
        os.kill(pid, signal.SIGKILL)
        with pytest.warns(RuntimeWarning, match="Rollout worker 0 died"):
            batch, _ = trainer.collect()
        assert batch.numel() == trainer.collector.frames_per_batch
        assert ray.get(trainer.collector.workers[0].pid.remote()) != pid
    finally:
        trainer.close()


def test_training_with_workers_completes_and_logs_worker_speed(tmp_path):
    run = train(load_config([*SMOKE, "collector.num_workers=2", f"experiment.runs_dir={tmp_path}"]))
    rows = read_metrics(run)
    assert rows[-1]["frames"] == 1200
    assert rows[-1]["perf/worker_0_fps"] > 0 and rows[-1]["perf/worker_wait_s"] >= 0
    assert ray.is_initialized()  # the run joined the fixture's instance and left it running


def test_bad_worker_count_is_a_config_error():
    with pytest.raises(Exception, match="must split evenly over 'collector.num_workers=4'"):
        load_config([*SMOKE, "collector.num_workers=4"])


def test_workers_seat_a_frozen_partner(tmp_path):
    """Each worker builds the frozen partner from weights sent once; batches mark the learner's seats."""
    partner = train(load_config([*SMOKE, f"experiment.runs_dir={tmp_path}", "experiment.eval_every=0"]))
    remote = _trainer(2, f"collector.frozen={{agent_0: {partner}}}")
    try:
        batch, _ = remote.collect()
        learner = batch["agents", "learner"]
        assert not learner[..., 0].any() and learner[..., 1:].all()
    finally:
        remote.close()


def test_stop_and_resume_with_workers_equals_uninterrupted(tmp_path):
    """Worker env states and RNGs go into the checkpoint: a resumed run logs exactly what one run logs."""
    overrides = [*SMOKE, "collector.num_workers=2", "experiment.total_frames=2400", "experiment.eval_every=0"]
    full = train(load_config([*overrides, f"experiment.runs_dir={tmp_path / 'full'}"]))
    part = train(load_config([*overrides, f"experiment.runs_dir={tmp_path / 'part'}"]), stop_after=2)
    train(load_config([*overrides, f"experiment.runs_dir={tmp_path / 'part'}"]), resume=part)

    def comparable(run):
        return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in read_metrics(run)]

    assert comparable(full) == comparable(part)


def test_sigterm_stops_workers_and_learner_with_a_checkpoint(tmp_path):
    """Ctrl-C or SIGTERM with workers running: checkpoint, workers and the run's Ray instance stopped."""
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "marl",
        "train",
        *SMOKE,
        "experiment.total_frames=600000",
        "collector.num_workers=2",
        "metrics.every=0",
        f"experiment.runs_dir={tmp_path}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not list(tmp_path.glob("*/metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 130, output
    assert "Continue with: marl train resume=" in output
    run = next(tmp_path.iterdir())
    (checkpoint,) = list((run / "checkpoints").glob("*.pt"))[-1:]
    from marl.checkpoint import load_checkpoint

    assert len(load_checkpoint(checkpoint)["collector"]["workers"]) == 2


def test_pettingzoo_copies_spread_over_workers():
    """A plain PettingZoo env: each worker steps its share of the copies; same batch layout as in-process."""
    spread = [
        "env=pettingzoo",
        "env.entry_point=mpe2.simple_spread_v3:parallel_env",
        "env.max_steps=25",
        "env.num_envs=4",
        "experiment.frames_per_batch=400",
    ]
    local, remote = _trainer(0, *spread), _trainer(2, *spread)
    try:
        (batch, _), (reference, _) = remote.collect(), local.collect()
        assert batch.batch_size == reference.batch_size == (4, 100)
        for key in reference.keys(True, True):
            assert batch[key].shape == reference[key].shape, key
        assert batch["next", "done"].sum() == reference["next", "done"].sum() == 16  # 4 episodes per env
    finally:
        remote.close()

"""Ray rollout workers: same batches as in-process collection, reproducible, survive a killed worker."""

import os
import signal
import subprocess
import sys

import pytest
import torch

ray = pytest.importorskip("ray")

from marl.config import load_config  # noqa: E402
from marl.ray_runtime import start_local  # noqa: E402
from marl.run_logger import read_metrics  # noqa: E402
from marl.training import build_trainer, train  # noqa: E402
from tests.helpers import without_timing  # noqa: E402

SMOKE = ["experiment=smoke", "experiment.progress=false"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module (workers then reuse it), shut down at the end."""
    start_local(2, logging_level="ERROR")
    yield
    ray.shutdown()


def test_workers_run_at_the_drivers_priority():
    """Ray's default (nice 15) would let any other process on the machine starve the rollout workers."""

    @ray.remote
    def niceness() -> int:
        return os.nice(0)

    assert ray.get(niceness.remote()) == os.nice(0)


def test_workers_of_a_lowered_driver_keep_its_priority(tmp_path):
    """Started at nice +3 (a study run with `nice`), the workers run at +3 too, not pushed to +19."""
    script = (
        "import os, ray\n"
        "from marl.ray_runtime import start_local\n"
        "os.nice(3)\n"
        "start_local(1, logging_level='ERROR')\n"
        "print(os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    driver, worker = done.stdout.split()[-2:]
    assert int(worker) == int(driver) == os.nice(0) + 3


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

    assert without_timing(read_metrics(full)) == without_timing(read_metrics(part))


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


# ---------------------------------------------------------------------------------------------------------
# Population rollouts on workers (marl/population/ray_pairs.py) and recurrent actors on workers
# ---------------------------------------------------------------------------------------------------------

POPULATION = [
    "preset=matrix_game_xpmin",
    "population.pairs=sampled",
    "population.partners_per_member=1",
    "population.envs_per_pair=4",
    "experiment.progress=false",
    "experiment.eval_every=0",
]


def test_population_pairs_spread_over_workers_slot_for_slot():
    """Two workers step the assignment's pairs; the joined rollout has the in-process layout, and each
    worker's part is exactly what its pairs give in-process with its seed (new sampled pairs included)."""
    from marl.population.config import load_population_config, population_config_to_dict
    from marl.population.pairs import assign_slots
    from marl.population.ray_pairs import PairWorker, split_pairs
    from marl.population.rollout import training_pairs
    from marl.population.xpmin import build_trainer as build_population_trainer
    from marl.ray_collector import worker_seed

    cfg = load_population_config([*POPULATION, "collector.num_workers=2"])
    trainer = build_population_trainer(cfg)
    collector, population = trainer.collector, trainer.population
    first_pairs = collector.assignment.pairs.clone()
    try:
        first = collector.collect(population, 6)
        new_pairs = training_pairs(cfg)  # a new draw: the workers restart their slots with their shares
        collector.reset(assign_slots(new_pairs, cfg.population.envs_per_pair))
        second = collector.collect(population, 6)
        assert collector.last_stats["perf/worker_1_fps"] > 0
    finally:
        collector.close()
    assert first.action.shape == second.action.shape == (collector.assignment.num_envs, 6, 2)

    weights = {k: v.clone() for k, v in population.state_dict().items()}
    offset = 0
    shares = zip(split_pairs(first_pairs, 2), split_pairs(new_pairs, 2), strict=True)
    for w, (first_share, new_share) in enumerate(shares):
        seed = worker_seed(cfg.experiment.seed, w)
        alone = PairWorker(population_config_to_dict(cfg), first_share, seed, 1)  # in-process, no Ray
        part_one = alone.collect(weights, 6, None)[0]
        part_two = alone.collect(weights, 6, new_share)[0]
        slots = part_one["action"].shape[0]
        assert torch.equal(part_one["action"], first.action[offset : offset + slots])
        assert torch.equal(part_two["action"], second.action[offset : offset + slots])
        ended = (second.episode_slot >= offset) & (second.episode_slot < offset + slots)
        assert torch.equal(part_two["episode_slot"] + offset, second.episode_slot[ended])
        offset += slots
    assert offset == second.action.shape[0]


def test_a_killed_pair_worker_is_replaced_and_its_pairs_collected_again():
    from marl.population.config import load_population_config
    from marl.population.xpmin import build_trainer as build_population_trainer

    trainer = build_population_trainer(load_population_config([*POPULATION, "collector.num_workers=2"]))
    collector, population = trainer.collector, trainer.population
    try:
        before = collector.collect(population, 6)
        pid = ray.get(collector.workers[1].pid.remote())
        os.kill(pid, signal.SIGKILL)
        with pytest.warns(RuntimeWarning, match="Pair rollout worker 1 died"):
            after = collector.collect(population, 6)
        assert after.action.shape == before.action.shape == (collector.assignment.num_envs, 6, 2)
        assert ray.get(collector.workers[1].pid.remote()) != pid
        assert collector.collect(population, 6).action.shape == before.action.shape  # and it goes on
    finally:
        collector.close()


def test_population_stop_and_resume_with_workers_equals_uninterrupted(tmp_path):
    from marl.checkpoint import load_checkpoint
    from marl.population.config import load_population_config
    from marl.population.xpmin import train as train_population

    def config(folder):
        extra = ["collector.num_workers=2", "experiment.iterations=4", "experiment.checkpoint_every=1"]
        return load_population_config([*POPULATION, *extra, f"experiment.runs_dir={tmp_path / folder}"])

    full = train_population(config("full"))
    part = train_population(config("part"), stop_after=2)
    resumed = train_population(config("part"), resume=part)
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    assert a["iteration"] == b["iteration"] == 4
    for key in a["population"]:
        assert torch.equal(a["population"][key], b["population"][key]), key
    with pytest.raises(Exception, match="collector.num_workers: 2 -> 0"):
        in_process = load_population_config([*POPULATION, "experiment.iterations=5"])
        train_population(in_process, resume=resumed)


def test_recurrent_actors_on_workers_carry_their_states():
    """Each worker carries its envs' GRU states: the joined batch replays to its own log-probs."""
    from marl.agents.policy import EPISODE_START, RNN_STATE

    trainer = _trainer(2, "model.recurrent=true", "algorithm.chunk_length=4")
    try:
        batch, _ = trainer.collect()
        batch, _ = trainer.collect()  # the second batch starts from carried (non-zero) states
    finally:
        trainer.close()
    envs, steps = batch.shape
    chunks = batch.reshape(envs * steps // 4, 4)
    actor = trainer.model.actors["agents"]
    stored = chunks[:, 0]["agents", RNN_STATE]
    assert stored[0].abs().sum() > 0
    log_prob, _, _ = actor.evaluate(
        chunks["agents", "observation"], chunks["agents", "sample"], None, stored, chunks[EPISODE_START]
    )
    torch.testing.assert_close(log_prob, chunks["agents", "log_prob"], atol=1e-5, rtol=0)

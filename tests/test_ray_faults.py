"""Losing the local Ray instance's raylet or GCS mid-run: exit status 2, a checkpoint of the last finished
iteration, the resume command, and a resume that finishes the run. (A killed rollout worker, by contrast,
is replaced: tests/test_ray.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from marl.checkpoint import list_checkpoints, load_checkpoint  # noqa: E402
from tests.test_ray_exposure import descendants  # noqa: E402

pytestmark = [
    pytest.mark.slow,  # a Ray instance, a run until it has checkpoints, a kill, a resume: about a minute
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's processes in /proc"),
]

TRAIN = [
    sys.executable,
    "-m",
    "marl",
    "train",
    "experiment=smoke",
    "experiment.progress=false",
    "experiment.threads=1",
    "experiment.eval_every=0",
    "metrics.every=0",
    "collector.num_workers=2",
]


def _named(pids: set[int], name: str) -> list[int]:
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                found.append(pid)
    return found


@pytest.mark.parametrize("victim, part", [("raylet", "the raylet"), ("gcs_server", "the GCS server")])
def test_losing_the_ray_head_stops_with_a_checkpoint_and_resumes(tmp_path, victim, part):
    runs = tmp_path / "runs"
    command = [*TRAIN, "experiment.total_frames=600000", f"experiment.runs_dir={runs}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    family: set[int] = set()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:  # wait for two finished iterations
            found = list(runs.glob("*/checkpoints/iter_*.pt"))
            if len(found) >= 2:
                break
            time.sleep(0.5)
        assert process.poll() is None, process.communicate()[1][-3000:]
        family = descendants(process.pid)
        (pid,) = _named(family, victim)
        os.kill(pid, signal.SIGKILL)
        _, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for leftover in family - {process.pid}:  # this test's Ray processes only
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)

    (run,) = runs.iterdir()
    message = " ".join(err.split())
    assert process.returncode == 2, err[-3000:]
    assert f"lost {part}" in message and "Traceback" not in err
    assert f"Continue with: marl train resume={run}" in message
    saved = load_checkpoint(run)["iteration"]
    assert saved >= 2 and f"Saved iteration {saved}" in message
    assert not [p for p in run.rglob("*.tmp")]

    frames = load_checkpoint(run)["frames"] + 1200  # two more iterations on a fresh Ray instance
    resumed = subprocess.run(
        [sys.executable, "-m", "marl", "train", f"resume={run}", f"experiment.total_frames={frames}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(list_checkpoints(run)[-1])["iteration"] == saved + 2


PARETO = """\
name: interrupted
out: {out}
runs_dir: {runs}
base: [experiment=smoke, experiment.checkpoint_every=100000, experiment.eval_every=0, metrics.every=0,
       experiment.total_frames=50000000]
grid:
  - sharing: [shared]
    policy: [learned]
seeds: [0]
episodes: 4
eval_seed: 1
objectives: [return_mean, episode_length]
reference: [0, 1000]
workers: {workers}
"""


@pytest.mark.parametrize("workers", [1, 0], ids=["ray", "in_process"])
def test_a_pareto_sweep_started_in_the_background_stops_with_a_checkpoint_and_continues(tmp_path, workers):
    """SIGTERM to a `marl pareto` whose SIGINT is ignored (nohup ... &, which its Ray workers inherit): the
    training member still saves its last iteration, the sweep exits with one paragraph and its Ray
    processes, and the same command continues that run."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(PARETO.format(out=tmp_path / "out", runs=tmp_path / "pareto", workers=workers))
    runs = tmp_path / "pareto" / "interrupted" / "runs"
    command = [sys.executable, "-m", "marl", "pareto", str(sweep)]

    def start() -> subprocess.Popen:
        ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
        pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return subprocess.Popen(command, **pipes, text=True, preexec_fn=ignore_sigint)

    def stop_after(process: subprocess.Popen, iterations: int) -> tuple[str, set[int]]:
        deadline, family, out, err = time.time() + 240, set(), "", ""
        while time.time() < deadline and process.poll() is None:
            logs = list(runs.glob("*/metrics.jsonl"))
            if logs and len(logs[0].read_text().splitlines()) >= iterations:
                break
            time.sleep(0.5)
        try:
            assert process.poll() is None, process.communicate()[1][-3000:]
            family = descendants(process.pid)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        return out + err, family

    err, family = stop_after(start(), iterations=3)
    assert process_gone(family), "the sweep left Ray processes running"
    assert "interrupted" in err and "saved a checkpoint" in err and "Traceback" not in err
    assert "unrecoverable failure" not in err  # Ray's report of a worker that exited: the member returns
    (run,) = runs.iterdir()
    saved = load_checkpoint(run)["iteration"]
    assert saved >= 3  # the interrupt's own checkpoint: the periodic ones are 100,000 iterations apart

    err, family = stop_after(start(), iterations=saved + 2)  # the same command continues the same run
    assert process_gone(family)
    assert [run] == list(runs.iterdir()) and load_checkpoint(run)["iteration"] >= saved + 2


def process_gone(pids: set[int], wait_s: float = 30.0) -> bool:
    """Whether every process in `pids` has ended (within `wait_s`)."""
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.5)
    return False


def test_a_pareto_member_that_fails_on_a_ray_worker_leaves_the_others_running(tmp_path):
    """A learned member whose run cannot continue (its checkpoint is unreadable) fails on its Ray worker; the
    other member still trains and is cached, and the sweep ends with an error naming the failed one."""
    from marl.errors import MarlError
    from marl.pareto_sweep import load_pareto, run_pareto

    sweep = tmp_path / "sweep.yaml"
    text = PARETO.format(out=tmp_path / "out", runs=tmp_path / "pareto", workers=1)
    text = text.replace("experiment.total_frames=50000000", "experiment.total_frames=600")
    sweep.write_text(text.replace("sharing: [shared]", "sharing: [shared, independent]"))
    runs = tmp_path / "pareto" / "interrupted" / "runs"
    broken = runs / "sharing=shared,policy=learned,seed=0-20260101-000000"  # a partial run to continue
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "checkpoints" / "iter_0000001.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MarlError, match="1 member task\\(s\\) failed") as failed:
        run_pareto(load_pareto(sweep))
    assert "sharing=shared,policy=learned seed 0:" in str(failed.value)
    ledger = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [(json.loads(line)["member"], json.loads(line)["seed"]) for line in ledger] == [
        ("sharing=independent,policy=learned", 0)
    ]

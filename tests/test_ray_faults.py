"""Losing the local Ray instance's raylet or GCS mid-run: exit status 2, a checkpoint of the last finished
iteration, the resume command, and a resume that finishes the run. (A killed rollout worker, by contrast,
is replaced: tests/test_ray.py.)"""

from __future__ import annotations

import contextlib
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

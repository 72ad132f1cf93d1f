"""A real two-node Ray cluster on loopback, with token authentication, joined through `ray.address`."""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


TRAIN = [
    sys.executable,
    "-m",
    "marl",
    "train",
    "experiment=smoke",
    "experiment.progress=false",
    "collector.num_workers=2",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _processes_naming(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _stop_cluster(temp_dir: str) -> None:
    """Stop this test's cluster only: its processes name its temp dir. (`ray stop` would stop every Ray
    instance on the machine, a user's running jobs included.)"""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _processes_naming(temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + 10
        while _processes_naming(temp_dir) and time.time() < deadline:
            time.sleep(0.2)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow  # two Ray nodes started from the CLI and a training run on them: over a minute
@pytest.mark.skipif(RAY is None, reason="the ray CLI is not installed")
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="stopping only this test's cluster reads /proc")
def test_training_on_a_two_node_cluster_with_token_auth(tmp_path):
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--disable-usage-stats"]
    temp_dir = tempfile.mkdtemp(prefix="marl-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    try:
        head = _run(
            [
                RAY,
                "start",
                "--head",
                f"--port={port}",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=false",
                f"--temp-dir={temp_dir}",
                *common,
            ],
            env,
        )
        assert head.returncode == 0, head.stdout + head.stderr
        second = _run([RAY, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common], env)
        assert second.returncode == 0, second.stdout + second.stderr

        # a driver without the cluster's token is refused, with a message that says what to export
        tokenless = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")}
        refused = _run(
            [*TRAIN, f"experiment.runs_dir={tmp_path / 'refused'}", f"ray.address={address}"], tokenless
        )
        assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
        assert "RAY_AUTH_TOKEN_PATH" in refused.stderr

        train = _run(
            [
                sys.executable,
                "-m",
                "marl",
                "train",
                "experiment=smoke",
                "experiment.progress=false",
                f"experiment.runs_dir={tmp_path / 'runs'}",
                "collector.num_workers=2",
                f"ray.address={address}",
            ],
            env,
            timeout=300,
        )
        assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
        (run,) = (tmp_path / "runs").iterdir()
        assert (run / "summary.json").exists()
        # one worker per node: the cluster had two nodes with one CPU each
        status = _run([RAY, "status", f"--address={address}"], env)
        assert status.stdout.count("node_") >= 2, status.stdout + status.stderr
    finally:
        _stop_cluster(temp_dir)
    assert not _processes_naming(temp_dir)

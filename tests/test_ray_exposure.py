"""A local Ray instance started by the platform is reachable from this machine only, and its token is
private: every listening socket of its processes is on loopback, and ~/.ray/auth_token is 0600.

Listening sockets are read from /proc (each process's socket inodes, matched against /proc/net/tcp and
tcp6), so the test needs Linux but no extra package.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from marl.config import RayConfig  # noqa: E402
from marl.ray_runtime import private_token_file, start_ray, stop_ray  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")


def descendants(root: int) -> set[int]:
    """`root` and every process below it (Ray's GCS, raylet, agents and workers are started from here)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int, str]]:
    """(address, port, pid, process name) of every TCP socket in LISTEN state owned by `pids`."""
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in owner:  # 0A = LISTEN
                continue
            address, port = _decode(fields[1], family)
            pid = owner[fields[9]]
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                name = "?"
            found.append((address, port, pid, name))
    return found


def _decode(field: str, family: int) -> tuple[str, int]:
    """/proc/net/tcp's hex `address:port` (little-endian 32-bit words) as text."""
    hex_address, hex_port = field.split(":")
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw), int(hex_port, 16)


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_decoder_and_loopback_rule():
    assert _decode("0100007F:1F90", socket.AF_INET) == ("127.0.0.1", 8080)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")


def probe() -> None:
    """Start a local instance through the platform, give it a task and an actor (worker processes with
    servers of their own), and print as JSON every listening socket of its processes, the address its
    workers report, and the token file's and folder's modes; then stop it. Run in a fresh process
    (`test_a_local_instance_...`), so no Ray state of this one (a cached token) leaks in."""
    import json

    started = start_ray(RayConfig(address=None, num_cpus=2), num_workers=2)
    try:

        @ray.remote
        def where() -> str:
            return ray.util.get_node_ip_address()

        @ray.remote
        class Probe:
            def ping(self) -> int:
                return os.getpid()

        probe_actor = Probe.remote()
        address, pid = ray.get([where.remote(), probe_actor.ping.remote()])
        deadline, sockets = time.time() + 30, []
        while time.time() < deadline:  # agents and metrics exporters come up a little after init
            sockets = listening_sockets(descendants(os.getpid()))
            names = {name for *_, name in sockets}
            if {"gcs_server", "raylet"} <= names and len(sockets) >= 8:
                break
            time.sleep(1)
        token = Path.home() / ".ray" / "auth_token"
        report = {
            "started": started,
            "worker_address": address,
            "sockets": sockets,
            "token_mode": stat.S_IMODE(token.stat().st_mode),
            "folder_mode": stat.S_IMODE(token.parent.stat().st_mode),
        }
    finally:
        stop_ray([], True)
    print(json.dumps(report))


def test_a_local_instance_listens_on_loopback_only_and_keeps_its_token_private(tmp_path):
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # Ray's token file is this test's own
    repo = Path(__file__).resolve().parents[1]
    code = "from tests.test_ray_exposure import probe; probe()"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["started"] and report["worker_address"] == "127.0.0.1"
    sockets = report["sockets"]
    exposed = [s for s in sockets if not is_loopback(s[0])]
    assert sockets and not exposed, f"listening beyond loopback: {exposed}"
    assert {"gcs_server", "raylet"} <= {name for *_, name in sockets}  # the check saw Ray's own servers
    assert report["token_mode"] == 0o600 and report["folder_mode"] == 0o700
    assert (tmp_path / ".ray" / "auth_token").exists()


def test_an_existing_world_readable_token_is_made_private(tmp_path):
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("ab" * 32)
    token.chmod(0o644)
    private_token_file(token)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == "ab" * 32
    fresh = tmp_path / "new" / "auth_token"
    private_token_file(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600 and len(fresh.read_text()) == 64

"""Starting, joining, watching and stopping Ray: the one place the platform calls `ray.init`.

**A local instance** (`ray.address: null`) is for this machine only. Every port Ray opens (GCS, raylet,
object manager, workers, dashboard agent, runtime-env agent, metrics exporters) listens on 127.0.0.1, the
dashboard is off, and the token Ray authenticates with (2.60 turns token authentication on by default) is
kept in a file only the user can read (~/.ray/auth_token, 0600). Ray binds its servers to the node's IP,
and `ray.init` replaces a node IP of 127.0.0.1 with the machine's routable address unless Ray's cluster
mode is off, so `start_local` turns it off while the instance starts (the switch Ray itself uses on
Windows and macOS laptops) and names 127.0.0.1 as the node IP. tests/test_ray_exposure.py checks that no
process of the instance listens anywhere else.

**A cluster** (`ray.address: auto` or `host:port`) is joined as it is; its ports and who may reach them are
the cluster's business (README, "Rollout workers (Ray)"). A token given through RAY_AUTH_TOKEN or
RAY_AUTH_TOKEN_PATH turns token authentication on.

**Losing Ray.** When the head's processes of a local instance die (the raylet or the GCS killed, or out of
memory), any further call into Ray can hang or make Ray's core end the whole process. `check_alive` looks at
those processes without calling Ray and raises `RayLostError`, so a trainer stops while it still can: it
saves its last finished iteration and prints the resume command (marl/checkpoint.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from marl.errors import MarlError

LOOPBACK = "127.0.0.1"
_lost = False  # set once the local instance is found dead: no more calls into Ray from this process


class RayLostError(MarlError):
    """The Ray instance the run depends on is gone; the message says which part died and what to do."""


def start_ray(ray_cfg, num_workers: int) -> bool:
    """Start a local Ray instance on loopback or join a cluster, unless Ray is already up; -> whether this
    call started or joined it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    with _keep_signal_handlers():
        if ray_cfg.address is None:
            start_local(ray_cfg.num_cpus or num_workers)
        else:
            join_cluster(ray_cfg.address)
    return True


def start_local(num_cpus: int, **options) -> None:
    """`ray.init` of a local instance whose every port listens on 127.0.0.1, with a private token file."""
    import ray

    try:
        from ray._private import ray_constants
    except ImportError:  # a Ray without the switch: its node IP is what we ask for
        ray_constants = None
    global _lost
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to Ray's servers
    # Ray runs its workers 15 nice levels below the raylet (which has this process's priority); here they
    # are the job itself (rollouts, a sweep's training runs), so they add none: a test run or a second study
    # beside them would otherwise take all the CPU they need. (The value is added to the niceness a worker
    # inherits, so "0" is this process's priority, whatever it is.)
    os.environ.setdefault("RAY_worker_niceness", "0")
    if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
        private_token_file(Path.home() / ".ray" / "auth_token")
    settings = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    # With cluster mode on, ray.init swaps a node IP of 127.0.0.1 for the machine's routable address (and
    # every server then listens there); off while the instance starts, it keeps 127.0.0.1. The processes
    # it starts are handed that address, so nothing else needs the switch.
    cluster_mode = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if cluster_mode is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=num_cpus, _node_ip_address=LOOPBACK, **{**settings, **options})
    finally:
        if cluster_mode is not None:
            ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
    _lost = False


def join_cluster(address: str) -> None:
    """`ray.init(address=...)` with a clear error when the cluster cannot be reached or refuses us."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"  # a token was given: use it (Ray ignores it otherwise)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError) as error:
        raise MarlError(
            f"Could not join the Ray cluster at ray.address={address!r}: {str(error).splitlines()[0]} "
            "Check that the head node is running (ray status) and reachable. Ray 2.60 clusters use token "
            "authentication by default: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<the cluster's "
            "token file> (or RAY_AUTH_TOKEN) before marl train, as on every node."
        ) from None


def private_token_file(path: Path) -> None:
    """Make Ray's default token file readable by its owner only: create it (0600, in a 0700 folder) with a
    fresh token if it is missing, tighten it to 0600 if it exists (Ray itself writes it 0644)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))  # Ray's own format: 256 random bits as hex


def check_alive() -> None:
    """Raise `RayLostError` if a head process of the local instance this process started has died
    (looked up in the process table: no call into Ray, which could hang or end the process)."""
    global _lost
    dead = _dead_head_processes()
    if not dead and not _lost:
        return
    _lost = True
    which = ", ".join(dead) or "the Ray head"
    raise RayLostError(
        f"The local Ray instance lost {which} (killed, or out of memory?), so its rollout workers are gone "
        "with it. Training stopped before calling into the dead instance. Check the machine's memory and "
        "the Ray logs (/tmp/ray/session_latest/logs), then resume: a new Ray instance starts with the run."
    )


def is_lost() -> bool:
    """Whether `check_alive` found the local instance dead in this process."""
    return _lost


def _dead_head_processes() -> list[str]:
    """The head processes (GCS server, raylet) of the local instance started here that are no longer
    running; [] for a joined cluster or when Ray is not up."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or not ray.is_initialized():
        return []
    watched = {"gcs_server": "the GCS server", "raylet": "the raylet"}
    dead = []
    for kind, infos in getattr(node, "all_processes", {}).items():
        if kind in watched:
            dead += [watched[kind] for info in infos if info.process.poll() is not None]
    return sorted(set(dead))


def stop_ray(workers: list, started: bool) -> None:
    """Kill rollout workers and shut Ray down if this process started it (a joined instance stays up).
    After the local instance was lost, its remaining processes are killed without calling into Ray."""
    import ray

    if _lost:
        node = getattr(ray._private.worker, "_global_node", None)
        for infos in getattr(node, "all_processes", {}).values():
            for info in infos:
                with contextlib.suppress(OSError):
                    info.process.kill()
        return
    for worker in workers:
        ray.kill(worker)
    if started:
        ray.shutdown()


@contextmanager
def _keep_signal_handlers():
    """Ray's core installs its own SIGTERM handler (it aborts the process) on init; put ours back, so a
    SIGTERM or Ctrl-C still checkpoints the run and stops the workers cleanly."""
    watched = (signal.SIGINT, signal.SIGTERM)
    in_main_thread = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in watched} if in_main_thread else {}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)

"""What every run needs around its training loop, whatever it trains: the device, a fresh run folder,
RNG isolation for evaluations, a hardware line for the logs, and stop signals that end it like Ctrl-C.

Every trainer (`marl train`, populations, extraction, the generalist) and command uses these; they import
nothing from the trainers, so no module has to reach back up into the single-team loop for them.
"""

from __future__ import annotations

import platform
import signal
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

from marl.envs.vmas_state import isolated_vmas_rng
from marl.errors import MarlError


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU; anything else as given (validated)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MarlError(
            f"experiment.device={name}, but this machine has no CUDA GPU. Use device=auto or cpu."
        )
    return device


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """A new folder `<runs_dir>/<name>-<date>-<time>` (with a suffix if that exists already)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(runs_dir) / f"{name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = Path(runs_dir) / f"{name}-{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


@contextmanager
def untouched_rng(device: torch.device):
    """Torch's RNG (CPU and `device`) and VMAS's are restored on exit, whatever ran inside."""
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices), isolated_vmas_rng():
        yield


def hardware_summary(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"GPU: {gpu}, torch {torch.__version__}, Python {platform.python_version()}"
    )


@contextmanager
def stop_signals_interrupt():
    """SIGTERM (a scheduler, `kill`, `marl sweep` stopping) and SIGINT stop a run like Ctrl-C: it saves a
    checkpoint and exits with 130. Also works where SIGINT was ignored (background jobs). Further signals
    while it saves are ignored, so a second one cannot cut the checkpoint short."""

    def stop(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

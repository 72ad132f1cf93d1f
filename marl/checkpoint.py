"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded with weights_only=True.

A checkpoint holds everything to continue a run bit-exactly: model, optimizer, value normalisers, the
collector's env state and running episode sums, RNG states, counters, and the run's config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from marl.errors import MarlError

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"iter_(\d+)\.pt$")


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"iter_{iteration:07d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [p for p in folder.glob("iter_*.pt") if _NAME.search(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def save_checkpoint(run_dir: Path, state: dict, keep: int) -> Path:
    """Write `state` for iteration `state['iteration']`, then delete all but the newest `keep`."""
    path = checkpoint_path(run_dir, state["iteration"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-write never leaves a truncated checkpoint
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (-> its newest checkpoint)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = list_checkpoints(path)
        if found:
            return found[-1]
        raise MarlError(
            f"No checkpoint in {path}/{CHECKPOINT_DIR}/. A run writes one every experiment.checkpoint_every "
            f"iterations, at the end and on Ctrl-C; pass a run directory that has one, or a .pt file."
        )
    raise MarlError(
        f"{path} does not exist. Pass a run directory (results/runs/<name>-<time>) or a checkpoint .pt file."
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (no code execution: weights_only=True)."""
    path = resolve_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # corrupt file, or written by something else
        raise MarlError(
            f"Could not read checkpoint {path}: {error}. If the run was killed while writing, use an older "
            f"checkpoint from the same folder."
        ) from error

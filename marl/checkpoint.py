"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded with weights_only=True.

A checkpoint holds everything to continue a run bit-exactly: model, optimizer, value normalisers, the
collector's env state and running episode sums, RNG states, counters, and the run's config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

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


def clone_tree(tree):
    """A deep copy of nested dicts, lists and tuples whose tensors are detached clones (a state dict to
    keep as the last good checkpoint while training goes on)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: clone_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(clone_tree(v) for v in tree)
    return tree


def rng_state() -> dict:
    """Torch's CPU and CUDA RNG states, for a checkpoint."""
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Put back what `rng_state` saved (CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainer_state(trainer, config: dict, kind: str | None = None, **parts) -> dict:
    """A trainer's checkpoint: format, ``kind`` (what wrote it), progress counters (``iteration``,
    ``frames``, ``wall_time``), its config, its own ``parts`` (as given: clone what training keeps
    changing) and the RNG states. Every trainer (marl train, populations, extraction, generalist) saves
    this shape, so resume, `last good` copies and loaders read them alike."""
    state = {"format": 1} | ({"kind": kind} if kind else {})
    state |= {"iteration": trainer.iteration, "frames": trainer.frames, "wall_time": trainer.wall_time}
    return state | {"config": config, **parts, "rng": rng_state()}


def restore_trainer_state(trainer, state: dict) -> None:
    """Put back what `trainer_state` saved of every trainer: progress counters and RNG states (the parts
    are the trainer's own to load)."""
    trainer.iteration, trainer.frames = state["iteration"], state["frames"]
    trainer.wall_time = state["wall_time"]
    restore_rng_state(state["rng"])


def checkpointed_iterations(
    trainer,
    run_dir: Path,
    n_iterations: int,
    one_iteration: Callable[[], dict[str, float]],
    show_progress: bool,
    name: str,
    postfix: Callable[[dict[str, float]], dict[str, str]],
    checkpoint_every: int,
    keep: int,
    resume_command: str,
    close: Callable[[], None],
    stop_after: int | None = None,
    last_good: dict | None = None,
) -> None:
    """Run `one_iteration` (train, evaluate, log; -> its metrics) until `trainer.iteration` reaches
    `n_iterations` (or `stop_after` iterations of this call), with a progress bar named `name` (its
    postfix, e.g. frames/s, from `postfix(metrics)`), so that nothing a user ran is lost:

    - every `checkpoint_every` iterations (0: never) and at the last one, `trainer.state_dict()` is saved;
    - Ctrl-C or SIGTERM (KeyboardInterrupt) saves the last completed iteration, prints `resume_command`
      and exits with status 130; any other error saves it too and is re-raised;
    - on those two ways out, `close()` releases the logger, envs and workers first; a normal end (also one
      cut short by `stop_after`) saves a final checkpoint and leaves closing to the caller."""
    last_good = trainer.state_dict() if last_good is None else last_good
    progress = tqdm(
        total=n_iterations,
        initial=trainer.iteration,
        disable=not show_progress,
        unit="it",
        dynamic_ncols=True,
        desc=name,
    )
    try:
        while trainer.iteration < n_iterations and (stop_after is None or stop_after > 0):
            metrics = one_iteration()
            last_good = trainer.state_dict()
            due = checkpoint_every and trainer.iteration % checkpoint_every == 0
            if due or trainer.iteration == n_iterations:
                save_checkpoint(run_dir, last_good, keep)
            progress.update(1)
            progress.set_postfix(**postfix(metrics))
            if stop_after is not None:
                stop_after -= 1
    except KeyboardInterrupt:
        path = save_checkpoint(run_dir, last_good, keep)
        progress.close()
        close()
        print(f"\nInterrupted. Saved iteration {last_good['iteration']} to {path}.")
        print(f"Continue with: {resume_command}")
        raise SystemExit(130) from None
    except Exception:
        save_checkpoint(run_dir, last_good, keep)  # nothing is lost, whatever broke
        progress.close()
        close()
        raise
    progress.close()
    save_checkpoint(run_dir, last_good, keep)

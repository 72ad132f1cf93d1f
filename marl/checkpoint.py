"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded with weights_only=True.

A checkpoint holds everything to continue a run bit-exactly: model, optimizer, value normalisers, the
collector's env state and running episode sums, RNG states, counters, and the run's config. Settings in
it that would execute code on load (`env.entry_point`, `ray.address`) are signed with this user's key when
it is written, and a checkpoint whose signature does not verify is refused on load (marl/safe_load.py).
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from marl.errors import MarlError
from marl.safe_load import check_references, sign_references
from marl.storage import StorageError, storage_error, write_atomic

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
    """Write `state` for iteration `state['iteration']` (its code references signed), then delete all but
    the newest `keep`. Atomic: a crash or a full disk never leaves a truncated or temporary file; a write
    the disk refuses raises a `StorageError` that names the cause and the fix."""
    path = checkpoint_path(run_dir, state["iteration"])
    buffer = io.BytesIO()
    torch.save(sign_references(state), buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, path.parent) from None
    write_atomic(path, buffer.getbuffer())
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


def run_directory(path: str | Path) -> Path:
    """The run directory of a run directory or of one of its checkpoint files (<run>/checkpoints/<file>)."""
    path = Path(path)
    return resolve_checkpoint(path).parent.parent if path.is_file() else path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely: no code execution while reading (weights_only=True), and none later from
    its settings unless this user wrote it or trusts it (`safe_load.check_references`)."""
    path = resolve_checkpoint(path)
    if not zipfile.is_zipfile(path):
        raise MarlError(
            f"{path} is not a checkpoint: checkpoints are PyTorch files (checkpoints/iter_NNNNNNN.pt in a "
            "run folder). Pass a run directory (results/runs/<name>-<time>) or one of its .pt files."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # corrupt file, or written by something else
        raise MarlError(
            f"Could not read checkpoint {path}: {str(error).splitlines()[0][:300]}. If the run was killed "
            "while writing, use an older checkpoint from the same folder."
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "iteration" not in state:
        raise MarlError(
            f"{path} is a PyTorch file but not a marl checkpoint (no saved config and iteration). Pass a "
            "run directory or a checkpoints/iter_NNNNNNN.pt file written by marl."
        )
    check_references(state, path)
    return state


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


class Trainable(Protocol):
    """What the checkpoint helpers need of any trainer (marl train's, a population's, an extraction's, the
    generalist's): its progress counters and a checkpoint of itself."""

    iteration: int
    frames: int
    wall_time: float
    device: torch.device

    def state_dict(self) -> dict: ...


def trainer_state(trainer: Trainable, config: dict, kind: str | None = None, **parts) -> dict:
    """A trainer's checkpoint: format, ``kind`` (what wrote it), progress counters (``iteration``,
    ``frames``, ``wall_time``), its config, its own ``parts`` (as given: clone what training keeps
    changing) and the RNG states. Every trainer (marl train, populations, extraction, generalist) saves
    this shape, so resume, `last good` copies and loaders read them alike."""
    state = {"format": 1} | ({"kind": kind} if kind else {})
    state |= {"iteration": trainer.iteration, "frames": trainer.frames, "wall_time": trainer.wall_time}
    return state | {"config": config, **parts, "rng": rng_state()}


def restore_trainer_state(trainer: Trainable, state: dict) -> None:
    """Put back what `trainer_state` saved of every trainer: progress counters and RNG states (the parts
    are the trainer's own to load)."""
    trainer.iteration, trainer.frames = state["iteration"], state["frames"]
    trainer.wall_time = state["wall_time"]
    restore_rng_state(state["rng"])


class LoopSettings(Protocol):
    """The config section that says how a training loop checkpoints and shows progress (`experiment` of
    marl train and of a population, the extraction and generalist configs)."""

    checkpoint_every: int
    keep_checkpoints: int
    progress: bool


def checkpointed_iterations(
    trainer: Trainable,
    run_dir: Path,
    one_iteration: Callable[[], dict[str, float]],
    *,
    settings: LoopSettings,
    n_iterations: int,
    name: str,
    resume_command: str,
    close: Callable[[], None],
    postfix: Callable[[dict[str, float]], dict[str, str]] = lambda metrics: {},
    stop_after: int | None = None,
    last_good: dict | None = None,
) -> None:
    """Run `one_iteration` (train, evaluate, log; -> its metrics) until `trainer.iteration` reaches
    `n_iterations` (or `stop_after` iterations of this call), with a progress bar named `name` (its
    postfix, e.g. frames/s, from `postfix(metrics)`; shown if `settings.progress`), so that nothing a user
    ran is lost:

    - every `settings.checkpoint_every` iterations (0: never) and at the last one, `trainer.state_dict()` is
      saved (the newest `settings.keep_checkpoints` are kept);
    - Ctrl-C or SIGTERM (KeyboardInterrupt) saves the last completed iteration, prints `resume_command`
      and exits with status 130; any other error saves it too and is re-raised: a `MarlError` (a NaN
      loss, divergence, a lost Ray instance, a full disk) with what was saved and `resume_command`
      appended, an OSError as a `StorageError`, a bug as itself;
    - on those two ways out, `close()` releases the logger, envs and workers first; a normal end (also one
      cut short by `stop_after`) saves a final checkpoint and leaves closing to the caller."""
    checkpoint_every, keep = settings.checkpoint_every, settings.keep_checkpoints
    last_good = trainer.state_dict() if last_good is None else last_good
    progress = tqdm(
        total=n_iterations,
        initial=trainer.iteration,
        disable=not settings.progress,
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
        saved = _save_after_stop(run_dir, last_good, keep)
        progress.close()
        _quietly(close)
        print(f"\nInterrupted. {saved}")
        print(f"Continue with: {resume_command}")
        raise SystemExit(130) from None
    except Exception as error:
        saved = _save_after_stop(run_dir, last_good, keep)  # nothing is lost, whatever broke
        progress.close()
        _quietly(close)
        if isinstance(error, OSError):
            error = storage_error(error)
        if isinstance(error, MarlError):
            raise type(error)(f"{error} {saved} Continue with: {resume_command}") from None
        raise
    progress.close()
    save_checkpoint(run_dir, last_good, keep)


def _save_after_stop(run_dir: Path, state: dict, keep: int) -> str:
    """Save the last good iteration after a stop; -> a sentence saying what was saved (or why not, and
    which checkpoint on disk is the newest)."""
    try:
        path = save_checkpoint(run_dir, state, keep)
        return f"Saved iteration {state['iteration']} to {path}."
    except (StorageError, OSError) as error:
        newest = list_checkpoints(run_dir)
        on_disk = f"the newest checkpoint is {newest[-1]}" if newest else "there is no checkpoint yet"
        reason = str(error) if isinstance(error, StorageError) else error.strerror
        return f"Iteration {state['iteration']} could not be saved ({reason}); {on_disk}."


def _quietly(close: Callable[[], None]) -> None:
    """Run `close` after a failure; a second failure while closing (e.g. the disk is still full when the
    logger flushes) must not hide the first."""
    with contextlib.suppress(Exception):
        close()

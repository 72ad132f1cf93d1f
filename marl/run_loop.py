"""The training loop every trainer runs: `marl train`, populations, extraction and the generalist.

A trainer brings a `RunPlan`: its state (`trainer`), what one iteration does (train, and evaluate when due),
and what to write at the start and the end. `run_plan` does the rest the same way for all of them: the
run's config.yaml, TensorBoard and metrics.jsonl logging (cut back to the checkpoint on resume), the
progress bar, checkpoints and a clean stop on Ctrl-C or an error (`checkpointed_iterations`), HParams and the
summary file when the run is complete, and releasing envs and workers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marl.checkpoint import LoopSettings, Trainable, checkpointed_iterations
from marl.errors import DivergenceError
from marl.run_logger import RunLogger
from marl.runs import hardware_summary


@dataclass
class RunPlan:
    """What one trainer brings to the shared loop."""

    trainer: Trainable  # .iteration, .frames, .device and state_dict(): the checkpoint
    run_dir: Path
    settings: LoopSettings  # checkpoint_every, keep_checkpoints, progress
    n_iterations: int
    name: str  # the progress bar's label
    resume_command: str  # printed after a stop, e.g. "marl train resume=<run dir>"
    config_yaml: str  # written to <run dir>/config.yaml
    hparams: dict[str, Any]  # flat settings shown in TensorBoard's HParams beside the final metrics
    one_iteration: Callable[[RunLogger], dict[str, float]]  # train (and evaluate when due) -> metrics
    final_metric: Callable[[str], bool]  # which metric names HParams shows (their last values)
    write_summary: Callable[[], object]  # the run's summary file, once it is complete
    header: Callable[[RunLogger], None] = lambda logger: None  # what a new run logs once besides hardware
    description: str = ""  # printed at the start when progress is on
    postfix: Callable[[dict[str, float]], dict[str, str]] = lambda metrics: {}  # progress bar extras
    close: Callable[[], None] = lambda: None  # releases the trainer's envs and Ray workers


def due(iteration: int, every: int, n_iterations: int) -> bool:
    """Whether something done `every` iterations (0: never) is due after `iteration`; the last is always."""
    return bool(every) and (iteration % every == 0 or iteration == n_iterations)


def run_plan(plan: RunPlan, resumed: dict | None = None, stop_after: int | None = None) -> Path:
    """Run `plan` until its trainer reaches `plan.n_iterations` (or for `stop_after` iterations of this call);
    `resumed` is the checkpoint a resumed run continues from (None: a new run). Returns the run directory.

    A new run that fails before its first iteration leaves no folder behind, except when it diverged: the
    advised fix is a resume with a smaller learning rate, from the iteration 0 saved there."""
    trainer, run_dir = plan.trainer, plan.run_dir
    (run_dir / "config.yaml").write_text(plan.config_yaml)
    logger = RunLogger(run_dir, resume_frames=None if resumed is None else trainer.frames)
    if resumed is None:
        logger.log_text("run/hardware", hardware_summary(trainer.device))
        plan.header(logger)
    if plan.settings.progress and plan.description:
        print(plan.description)
    start_iteration = trainer.iteration
    final: dict[str, float] = {}

    def one_iteration() -> dict[str, float]:
        metrics = plan.one_iteration(logger)
        logger.log(trainer.iteration, trainer.frames, metrics)
        final.update({key: value for key, value in metrics.items() if plan.final_metric(key)})
        return metrics

    def close() -> None:
        logger.close()
        plan.close()

    try:
        checkpointed_iterations(
            trainer,
            run_dir,
            one_iteration,
            settings=plan.settings,
            n_iterations=plan.n_iterations,
            name=plan.name,
            resume_command=plan.resume_command,
            close=close,
            postfix=plan.postfix,
            stop_after=stop_after,
            last_good=resumed,
        )
    except DivergenceError:
        raise
    except Exception:
        if resumed is None and trainer.iteration == 0:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if trainer.iteration >= plan.n_iterations:
        if trainer.iteration > start_iteration:  # finished in this call
            logger.log_hparams(plan.hparams, final)
        plan.write_summary()
    close()
    return run_dir


def count_iteration(
    trainer: Any, frames: int, start: float, collected: float, trained: float
) -> dict[str, float]:
    """Advance ``trainer``'s counters by one iteration of ``frames`` frames that started collecting at
    ``start``, and began its update at ``collected`` and ended at ``trained`` (``time.perf_counter()``);
    -> the iteration's speed: frames/s and seconds of collection and update, and frames/s in all."""
    trainer.iteration += 1
    trainer.frames += frames
    trainer.wall_time += trained - start
    return {
        "perf/collection_fps": frames / (collected - start),
        "perf/training_fps": frames / (trained - collected),
        "perf/total_fps": frames / (trained - start),
        "perf/collection_s": collected - start,
        "perf/training_s": trained - collected,
    }

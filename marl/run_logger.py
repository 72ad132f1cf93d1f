"""Run logging: TensorBoard scalars and HParams, plus `metrics.jsonl` (one JSON object per iteration).

The x-axis everywhere is environment frames, so runs with different batch sizes line up. On resume, rows
and TensorBoard events after the checkpoint are dropped (TensorBoard's purge_step), so a resumed run's
logs equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from marl.storage import write_atomic

METRICS_FILE = "metrics.jsonl"


class RunLogger:
    def __init__(self, run_dir: Path, resume_frames: int | None = None):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        if resume_frames is not None:
            self._truncate_after(resume_frames)
        purge = None if resume_frames is None else resume_frames + 1
        self.writer = SummaryWriter(str(self.run_dir), purge_step=purge)

    def _truncate_after(self, frames: int) -> None:
        """Keep the rows up to `frames` (the checkpoint's): a resumed run logs the later ones again. A row
        cut short by a kill mid-write is dropped with a warning."""
        if not self.metrics_path.exists():
            return
        kept = [row for row in _parse_rows(self.metrics_path) if row.get("frames", 0) <= frames]
        write_atomic(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept).encode())

    def log(self, iteration: int, frames: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, frames)
        row = {"iteration": iteration, "frames": frames, **{k: _json_number(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def log_text(self, tag: str, text: str, frames: int = 0) -> None:
        self.writer.add_text(tag, text, frames)

    def log_figure(self, tag: str, figure, frames: int) -> None:
        """A matplotlib figure as a TensorBoard image (the figure is closed)."""
        self.writer.add_figure(tag, figure, frames, close=True)

    def log_hparams(self, hparams: dict, final_metrics: dict[str, float]) -> None:
        """The run's hyperparameters and final metrics, for TensorBoard's HParams dashboard."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        metrics = {f"hparam/{k}": v for k, v in final_metrics.items() if math.isfinite(v)}
        experiment, start, end = hparams_summary(clean, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def read_metrics(run_dir: Path) -> list[dict]:
    """All rows of a run's metrics.jsonl (a torn or garbled row is skipped with a warning)."""
    path = Path(run_dir) / METRICS_FILE
    return _parse_rows(path) if path.exists() else []


def _parse_rows(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file. A process killed while appending leaves a torn last line; any
    line that is not a JSON object is dropped with a warning that says which."""
    rows, dropped = [], []
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            dropped.append(number)
    if dropped:
        where = "its last line" if dropped == [len(lines)] else f"lines {dropped[:10]}"
        warnings.warn(
            f"{path}: dropped {where}, which is not a complete JSON row (a process killed while writing "
            "leaves a torn last line); the other rows are kept.",
            RuntimeWarning,
            stacklevel=3,
        )
    return rows


def _json_number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out

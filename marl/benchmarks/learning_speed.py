"""How fast each run of a sweep learned: frames to reach given evaluation returns, final return, speed.

    python -m marl.benchmarks.learning_speed results/sweeps/dispersion [--levels 3.0 3.9] [--window 3]
        [--out results/dispersion/learning_speed.md]

For every finished run under the folder (one with summary.json): the first frame at which the trailing
mean of its last `--window` deterministic evaluations (`eval/return_mean`) reaches each level ("never" if
it does not), its final value (mean of the last 5 evaluations, as `marl compare --window 5`), its training
frames/s (frames / wall time, so time other work took from the run counts against it) and wall minutes.
Rows are grouped by the run's settings other than the seed, in folder order. Prints a markdown table and
writes it to `--out` when given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from marl.compare import group_runs, load_runs

METRIC = "eval/return_mean"
FINAL_WINDOW = 5


def first_frame_at(points: list[tuple[int, float]], level: float, window: int) -> int | None:
    """The first frame whose trailing mean of `window` values reaches `level` (None if none does)."""
    for i, (frame, _) in enumerate(points):
        recent = [value for _, value in points[max(0, i - window + 1) : i + 1]]
        if sum(recent) / len(recent) >= level:
            return frame
    return None


def table(runs_dir: Path, levels: list[float], window: int) -> str:
    """The markdown table of the module doc for the finished runs under `runs_dir`."""
    runs = [run for run in load_runs(runs_dir) if run.summary is not None]
    reach = " | ".join(f"reaches {level:g} at" for level in levels)
    lines = [
        f"| run | seed | final {METRIC} | {reach} | frames/s | minutes |",
        "|---|---|---|" + "---|" * len(levels) + "---|---|",
    ]
    for label, members in group_runs(runs).items():
        for run in members:
            lines.extend(_row(label, run, levels, window))
    return "\n".join(lines) + "\n"


def _row(label: str, run, levels: list[float], window: int) -> list[str]:
    """The table row of one run (none if it never evaluated)."""
    points = [(row["frames"], row[METRIC]) for row in run.rows if METRIC in row]
    if not points:
        return []
    final = sum(value for _, value in points[-FINAL_WINDOW:]) / len(points[-FINAL_WINDOW:])
    frames = [first_frame_at(points, level, window) for level in levels]
    shown = " | ".join("never" if f is None else f"{f / 1e6:.1f}M" for f in frames)
    seconds = run.summary["wall_time_s"]
    fps = run.summary["frames"] / seconds
    return [f"| {label} | {run.seed} | {final:.2f} | {shown} | {fps:,.0f} | {seconds / 60:.1f} |"]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder holding the runs (searched recursively)")
    parser.add_argument("--levels", type=float, nargs="+", default=[3.0, 3.9])
    parser.add_argument("--window", type=int, default=3, help="trailing mean over this many evaluations")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be at least 1")
    text = table(args.runs, args.levels, args.window)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()

"""`marl compare`: turn a folder of runs (a sweep) into learning curves, SND curves and a results table.

Runs are grouped by everything in their config except the seed (and bookkeeping like the run name); each
group's curves are the mean over seeds, with a 95% t-interval band from 3 seeds on, against environment
frames. Outputs, in `--out`: `curves.png` (one row per metric, one column per algorithm or per combination
of the `facet` settings; a group that is one team family has the front figures' colour of that family),
`table.md` and `summary.json` (final values per seed, mean and interval, training wall-clock time, hardware).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from marl.errors import MarlError
from marl.intervals import mean_interval
from marl.pareto_plot import family_style, member_family
from marl.run_logger import flatten, read_metrics

IGNORED_KEYS = {
    "experiment.seed",
    "experiment.name",
    "experiment.runs_dir",
    "experiment.threads",
    "experiment.progress",
    "experiment.keep_checkpoints",
    "experiment.checkpoint_every",
}
# Curves get an interval band from this many seeds on: two seeds' t-interval is 12.7 standard errors wide
# (t at one degree of freedom), wider than it tells anything.
BAND_MIN_SEEDS = 3


@dataclass
class Run:
    path: Path
    config: dict  # flattened
    rows: list[dict]
    summary: dict | None

    @property
    def seed(self) -> int:
        return int(self.config["experiment.seed"])


def load_runs(directory: str | Path) -> list[Run]:
    """Every run (a folder with config.yaml and metrics.jsonl) below `directory`."""
    runs = []
    for config_path in sorted(Path(directory).rglob("config.yaml")):
        run_dir = config_path.parent
        rows = read_metrics(run_dir)
        if not rows:
            continue
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        runs.append(Run(run_dir, flatten(yaml.safe_load(config_path.read_text())), rows, summary))
    if not runs:
        raise MarlError(f"No runs (folders with config.yaml and metrics.jsonl) found under {directory}.")
    return runs


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs that differ only in their seed form one group, named by the settings that tell groups apart."""
    keys = sorted({k for run in runs for k in run.config} - IGNORED_KEYS)
    signature = lambda run: tuple(_hashable(run.config.get(k)) for k in keys)  # noqa: E731
    by_signature: dict[tuple, list[Run]] = {}
    for run in runs:
        by_signature.setdefault(signature(run), []).append(run)
    varying = _varying_keys(runs)
    groups = {}
    for sig, members in by_signature.items():
        values = dict(zip(keys, sig, strict=True))
        label = _sweep_label(members) or ", ".join(f"{_short(k)}={values[k]}" for k in varying) or "all runs"
        groups[label] = sorted(members, key=lambda r: r.seed)
    return groups


def _varying_keys(runs: list[Run]) -> list[str]:
    """The settings (seed and bookkeeping aside) whose values differ between `runs`."""
    keys = sorted({k for run in runs for k in run.config} - IGNORED_KEYS)
    return [k for k in keys if len({_hashable(run.config.get(k)) for run in runs}) > 1]


def _sweep_label(members: list[Run]) -> str | None:
    """`marl sweep` names runs by their grid choices ("seed=0,algorithm=ippo,sharing=hyper"); without the
    seed that is the group's shortest faithful name ("algorithm=ippo,sharing=hyper")."""
    names = {
        ",".join(p for p in str(r.config.get("experiment.name", "")).split(",") if not p.startswith("seed="))
        for r in members
    }
    name = names.pop() if len(names) == 1 else None
    return name if name and "=" in name else None


def curve(
    runs: list[Run], metric: str, smooth: int = 1
) -> tuple[list[int], list[tuple[float, float, float]]]:
    """(frames, [(mean, low, high)]) of `metric` over seeds, at the frames every run logged it. With
    `smooth` > 1, each run's values are first averaged over its last `smooth` logged points (a trailing
    window, so a curve never looks ahead), and the interval is over those per-seed averages."""
    series = []
    for run in runs:
        points = [(row["frames"], row[metric]) for row in run.rows if row.get(metric) is not None]
        values = [v for _, v in points]
        series.append(
            {
                f: sum(values[max(0, i - smooth + 1) : i + 1]) / len(values[max(0, i - smooth + 1) : i + 1])
                for i, (f, _) in enumerate(points)
            }
        )
    frames = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return frames, [mean_interval([s[f] for s in series]) for f in frames]


def final_value(run: Run, metric: str, window: int) -> float | None:
    """Mean of the last `window` logged values of `metric` in a run."""
    values = [row[metric] for row in run.rows if row.get(metric) is not None]
    return sum(values[-window:]) / len(values[-window:]) if values else None


def compare(
    directory: str | Path,
    out: str | Path,
    metrics: tuple[str, ...] = ("eval/return_mean", "team/*/snd"),
    facet: str | tuple[str, ...] | None = None,
    window: int = 3,
    title: str | None = None,
    baseline: str | None = None,
    smooth: int = 1,
    finished_only: bool = False,
) -> dict:
    """Write curves.png, table.md and summary.json for the runs under `directory`; returns the summary.

    `baseline` ("sharing=shared"): for every group, also report from which frame on its first metric stays
    clearly above (95% intervals apart) the group that differs from it only in that setting. `smooth`: the
    curves (and that separation) use a trailing mean over each run's last `smooth` logged points. `facet`: the
    setting (or settings) whose every value (or combination) gets its own column of curves; by default the
    algorithm's name. `finished_only`: leave out runs still training (no summary.json), whose shorter curves
    would cut their group's short (a group's curve runs as far as all its runs logged)."""
    runs = load_runs(directory)
    if finished_only:
        runs = [run for run in runs if run.summary is not None]
        if not runs:
            raise MarlError(f"No run under {directory} has finished (written summary.json) yet.")
    if facet is None:
        facet = ("algorithm.name",) if any("algorithm.name" in run.config for run in runs) else ()
    facet = (facet,) if isinstance(facet, str) else tuple(facet)
    missing = [key for key in facet if all(key not in run.config for run in runs)]
    if missing:
        raise MarlError(
            f"No run under {directory} has the setting {', '.join(missing)} to split the curves by. Settings "
            f"that differ between these runs: {', '.join(_varying_keys(runs)) or 'none'}."
        )
    groups = group_runs(runs)
    metrics = tuple(_resolve(m, runs) for m in metrics)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    summary = {"source": str(directory), "final_window": window, "curve_smoothing": smooth, "groups": {}}
    for label, members in groups.items():
        entry = {
            "seeds": [r.seed for r in members],
            "frames": [r.rows[-1]["frames"] for r in members],
            "finished": [r.summary is not None for r in members],
            "wall_time_s": [r.summary["wall_time_s"] if r.summary else None for r in members],
            "hardware": next((r.summary["hardware"] for r in members if r.summary), None),
        }
        for metric in metrics:
            finals = [final_value(r, metric, window) for r in members]
            finals = [v for v in finals if v is not None]
            if finals:
                mean, low, high = mean_interval(finals)
                entry[metric] = {"per_seed": finals, "mean": mean, "low": low, "high": high}
        summary["groups"][label] = entry
    if baseline is not None:
        for label, frame in separation_frames(groups, baseline, metrics[0], smooth).items():
            summary["groups"][label]["separated_from_baseline_at"] = frame
        for label, diffs in paired_differences(groups, baseline, metrics[0], window).items():
            summary["groups"][label]["minus_baseline"] = diffs
        summary["baseline"] = baseline
    (out / "summary.json").write_text(json.dumps(_no_nan(summary), indent=2) + "\n")
    (out / "table.md").write_text(_table(summary, metrics))
    _plot(groups, metrics, facet, out / "curves.png", title, smooth)
    return summary


def separation_frames(
    groups: dict[str, list[Run]], baseline: str, metric: str, smooth: int = 1
) -> dict[str, int | None]:
    """For each group, the first frame from which its 95% interval of `metric` lies above its baseline's
    at every later evaluation (None if it never does; groups with fewer than 2 seeds on either side are left
    out, a single seed has no interval). A group's baseline is the group whose sweep label
    is the same but with `baseline`'s setting ("sharing=shared") in place of its own."""
    result = {}
    for label, reference in _baselines(groups, baseline).items():
        if min(len(groups[label]), len(groups[reference])) < 2:  # no interval from a single seed
            continue
        frames, ours = curve(groups[label], metric, smooth)
        base_frames, theirs = curve(groups[reference], metric, smooth)
        base = dict(zip(base_frames, theirs, strict=True))
        common = [(f, s) for f, s in zip(frames, ours, strict=True) if f in base]
        first = None
        for frame, (_, low, _) in reversed(common):  # walk back while it stays above
            if low <= base[frame][2]:
                break
            first = frame
        result[label] = first
    return result


def paired_differences(
    groups: dict[str, list[Run]], baseline: str, metric: str, window: int
) -> dict[str, dict[str, dict]]:
    """For each group, `metric` minus its baseline's, paired by seed (a seed fixes the evaluation episodes
    too, so pairing removes their difficulty from the comparison), as mean [95% interval] over the seeds
    both have: "final" (mean of the last `window` values) and "training_mean" (the mean over every logged
    value, i.e. the normalised area under the learning curve, which rewards learning sooner)."""
    result = {}
    for label, reference in _baselines(groups, baseline).items():
        ours = {r.seed: r for r in groups[label]}
        theirs = {r.seed: r for r in groups[reference]}
        seeds = sorted(ours.keys() & theirs.keys())
        entry = {}
        for name, window_of in (("final", lambda _: window), ("training_mean", lambda run: len(run.rows))):
            diffs = []
            for seed in seeds:
                a = final_value(ours[seed], metric, window_of(ours[seed]))
                b = final_value(theirs[seed], metric, window_of(theirs[seed]))
                if a is not None and b is not None:
                    diffs.append(a - b)
            if diffs:
                mean, low, high = mean_interval(diffs)
                entry[name] = {"per_seed": diffs, "mean": mean, "low": low, "high": high}
        if entry:
            result[label] = entry
    return result


def _baselines(groups: dict[str, list[Run]], baseline: str) -> dict[str, str]:
    """{group: its baseline group}: the group whose label is the same but with `baseline`'s setting
    ("sharing=shared") in place of its own; groups without one (and the baselines themselves) are left out."""
    key = baseline.split("=", 1)[0]
    result = {}
    for label in groups:
        reference = ",".join(baseline if p.split("=", 1)[0] == key else p for p in label.split(","))
        if reference != label and reference in groups:
            result[label] = reference
    return result


def _table(summary: dict, metrics: tuple[str, ...]) -> str:
    header = (
        "| runs | seeds | frames | "
        + " | ".join(f"final {m} (mean [95% CI]; per seed)" for m in metrics)
        + " | training time (min, mean) |"
    )
    separation = "baseline" in summary
    if separation:
        header += (
            f" minus {summary['baseline']}, paired by seed: final; mean over training |"
            f" above {summary['baseline']} from frame |"
        )
    lines = [header, "|" + "---|" * (4 + len(metrics) + 2 * separation)]
    for label, entry in summary["groups"].items():
        cells = []
        for metric in metrics:
            stats = entry.get(metric)
            if stats is None:
                cells.append("-")
                continue
            per_seed = ", ".join(f"{v:.3f}" for v in stats["per_seed"])
            cells.append(f"{stats['mean']:.3f} {_interval(stats)}; {per_seed}")
        times = [t for t in entry["wall_time_s"] if t is not None]
        minutes = f"{sum(times) / len(times) / 60:.1f}" if times else "-"
        frames = f"{min(entry['frames']):,}"
        seeds = ",".join(map(str, entry["seeds"]))
        row = f"| {label} | {seeds} | {frames} | " + " | ".join(cells) + f" | {minutes} |"
        if separation:
            diffs = entry.get("minus_baseline", {})
            cell = "; ".join(_signed(diffs[k]) for k in ("final", "training_mean") if k in diffs)
            row += f" {cell or '-'} |"
            at = entry.get("separated_from_baseline_at", "-")
            row += f" {'never' if at is None else (f'{at:,}' if isinstance(at, int) else at)} |"
        lines.append(row)
    note = (
        f"Final value = mean of the last {summary['final_window']} logged values of each run; "
        "intervals are 95% Student-t over seeds."
    )
    if separation:
        note += (
            " Paired differences are per seed (same seed, same evaluation episodes); an interval that"
            " excludes 0 is marked *."
        )
    return note + "\n\n" + "\n".join(lines) + "\n"


def _signed(stats: dict) -> str:
    """ "+0.123 [+0.050, +0.200]*": a paired difference, starred when its interval excludes 0."""
    clear = "*" if stats["low"] > 0 or stats["high"] < 0 else ""
    return f"{stats['mean']:+.3f} {_interval(stats, '+')}{clear}"


def _interval(stats: dict, sign: str = "") -> str:
    """ "[low, high]", or "(1 seed, no interval)" where there is none."""
    if math.isnan(stats["low"]):
        return "(1 seed, no interval)"
    return f"[{stats['low']:{sign}.3f}, {stats['high']:{sign}.3f}]"


def _no_nan(value):
    """`value` with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _plot(
    groups: dict[str, list[Run]],
    metrics: tuple[str, ...],
    facet: tuple[str, ...],
    path: Path,
    title: str | None,
    smooth: int = 1,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def facet_of(run: Run) -> str:
        return ", ".join(f"{_facet_name(key)}={run.config.get(key)}" for key in facet) or "all runs"

    facets = sorted({facet_of(r) for members in groups.values() for r in members})
    fig, axes = plt.subplots(
        len(metrics), len(facets), figsize=(5.5 * len(facets), 3.6 * len(metrics)), squeeze=False, dpi=110
    )
    colours = plt.get_cmap("tab10")
    # The same setting gets the same colour in every panel: labels without the facet's own settings (by
    # their full or short name, or their last part, as `marl sweep` and `marl pareto` name runs), and
    # without what every group has in common.
    facet_names = {name for key in facet for name in (key, _short(key), key.split(".")[-1])}
    parts = {
        label: [p for p in label.split(",") if p.split("=")[0].strip() not in facet_names] for label in groups
    }
    common = set.intersection(*(set(p) for p in parts.values())) if len(parts) > 1 else set()
    legend = {label: ",".join(p for p in parts[label] if p not in common) or label for label in groups}
    colour_of = _family_colours(groups, legend) or {
        name: colours(i % 10) for i, name in enumerate(dict.fromkeys(legend.values()))
    }
    # A metric no run ever logged below 0 (a time, a count, an idleness) keeps its band at or above 0.
    rows = [row for members in groups.values() for run in members for row in run.rows]
    floor = {
        metric: 0.0 if all(row[metric] >= 0 for row in rows if row.get(metric) is not None) else -math.inf
        for metric in metrics
    }
    for label, members in groups.items():
        column = facets.index(facet_of(members[0]))
        colour = colour_of[legend[label]]
        for row, metric in enumerate(metrics):
            frames, stats = curve(members, metric, smooth)
            if not frames:
                continue
            ax = axes[row][column]
            mean = [s[0] for s in stats]
            ax.plot(frames, mean, color=colour, label=f"{legend[label]} (n={len(members)})")
            if len(members) >= BAND_MIN_SEEDS:
                low = [max(s[1], floor[metric]) for s in stats]
                ax.fill_between(frames, low, [s[2] for s in stats], color=colour, alpha=0.15)
    for row, metric in enumerate(metrics):
        for column, value in enumerate(facets):
            ax = axes[row][column]
            ax.set_title(f"{metric} ({value})", fontsize=9)
            ax.set_xlabel("environment frames")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    note = f"mean over seeds; band: 95% t-interval, for a group of {BAND_MIN_SEEDS} seeds or more"
    if smooth > 1:
        note += f"; trailing mean of {smooth} points"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _family_colours(groups: dict[str, list[Run]], legend: dict[str, str]) -> dict[str, str] | None:
    """The front figures' colour of each legend name's team family (`learned/hyper`, `learned/shared/team-
    reward`, ...: `marl.pareto_plot.FAMILY_STYLES`), so a team looks the same in every figure; None where two
    names share a family (e.g. two learning rates of one scheme), which the tab10 palette then tells apart."""
    family_of_name: dict[str, str] = {}
    for label, members in groups.items():
        config = members[0].config
        scheme = config.get("sharing.actor.scheme", config.get("sharing.scheme"))  # the actors' sharing
        reward_mode = config.get("env.kwargs.reward_mode", config.get("env.reward_mode"))
        settings = {"sharing": scheme, "env.reward_mode": reward_mode}
        choices = {key: value for key, value in settings.items() if value is not None}
        family_of_name.setdefault(legend[label], member_family(choices, "learned"))
    if len(set(family_of_name.values())) < len(family_of_name):
        return None
    return {name: family_style(family)[0] for name, family in family_of_name.items()}


def _resolve(metric: str, runs: list[Run]) -> str:
    """`team/*/snd` -> the first matching logged key (e.g. team/agents/snd)."""
    if "*" not in metric:
        return metric
    prefix, suffix = metric.split("*", 1)
    for run in runs:
        for row in run.rows:
            for key in row:
                if (
                    key.startswith(prefix)
                    and key.endswith(suffix)
                    and "/" not in key[len(prefix) : -len(suffix)]
                ):
                    return key
    return metric


def _facet_name(key: str) -> str:
    """A facet setting's name in a panel title: its short name, or the last part of its key."""
    return _short(key) if _short(key) != key else key.split(".")[-1]


def _short(key: str) -> str:
    return {
        "algorithm.name": "algorithm",
        "sharing.actor.scheme": "actor",
        "sharing.critic.scheme": "critic",
    }.get(key, key)


def _hashable(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value

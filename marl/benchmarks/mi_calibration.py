"""Calibration of the MI estimators on distributions with a known MI (marl/benchmarks/mi_suite.py).

    python -m marl.benchmarks.mi_calibration [--reps 10] [--n 5000] [--estimators auto,ksg:5,...]
        [--tasks NAME,...] [--threads 2] [--discrete-reps 300] [--out results/mi_calibration.json] [--quick]

Continuous part: every task of the suite (40 distributions), ``--reps`` independent data sets of ``--n``
samples each (seeds 1000 + rep; the estimator's own seed is rep), each estimator's 95% interval
(marl/metrics/estimate.py; ``name:reps`` in ``--estimators`` sets that estimator's repetitions). Per
estimator it reports, over the tasks:

* ``mae``: mean over tasks of the mean absolute error over repetitions (nats);
* ``within_0.1``: tasks whose mean estimate is within 0.1 nats of the truth;
* ``coverage``: mean over tasks of the fraction of repetitions whose interval holds the truth, and
  ``tasks_covered``: tasks where it holds it in at least half of the repetitions;
* ``honest``: of the estimates off by more than 0.1 nats, the fraction whose interval holds the truth or
  whose verdict is "not reliable" (the target is all of them);
* ``width``: mean interval width; ``seconds``: mean and max time per interval, and the max over the
  25-dimensional tasks.

``--baseline`` adds the estimator this replaces: KSG (k = 3, standardised) with its half-sampling interval
(``ksg_mutual_information_ci``, 10 halves to bound the time), on the first 3 repetitions.

Discrete part: 27 joint tables (2 x 2 to 8 x 16 labels), ``--discrete-reps`` samples each of n = 200, 500
and 2,000 pairs: coverage of the 95% interval of I(X; Y) from ``discrete_information`` (Grassberger,
half-sampling) next to the percentile bootstrap of the Miller-Madow estimate it replaces, plus H(Y).

Results (with the hardware, threads and every single estimate) go to ``--out``, a plot of the estimates
against the truth next to it (.png). The continuous runs are saved as they finish: an interrupted run
resumes where it stopped (``--resume``; with ``--discrete-reps 0`` the earlier discrete study is kept).
``--quick``: 4 tasks, 2 repetitions, 1,000 samples, 10 discrete repetitions (a smoke test; its numbers mean
nothing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from marl.benchmarks.machine import hardware
from marl.benchmarks.mi_suite import Task, discrete_tables, suite
from marl.metrics.estimate import ESTIMATORS, mutual_information_interval
from marl.metrics.information import bootstrap_ci, discrete_information, mutual_information_discrete
from marl.metrics.knn import ksg_mutual_information_ci

QUICK_TASKS = ("gauss-1x1-r0.75", "student-1x1-dof1", "gauss-5x5-sparse", "gauss-25x25-dense")
DISCRETE_NS = (200, 500, 2000)
TARGETS = {"mae_max": 0.15, "coverage_min": 0.75, "discrete_coverage_min": 0.9, "seconds_25d_max": 20.0}


# ---------------------------------------------------------------------------------------------------------
# Continuous
# ---------------------------------------------------------------------------------------------------------


def run_one(task: Task, estimator: str, n: int, rep: int) -> dict[str, Any]:
    x, y = task.sample(n, 1000 + rep)
    start = time.perf_counter()
    if estimator == "baseline":
        est, low, high = ksg_mutual_information_ci(
            x, y, k=3, n_boot=10, generator=torch.Generator().manual_seed(rep)
        )
        row = {"estimate": float(est), "low": float(low), "high": float(high), "reliable": True, "reason": ""}
        row["estimator"] = "ksg(k=3, standardize), half-sampling interval"
    else:
        result = mutual_information_interval(x, y, estimator=estimator, seed=rep)
        row = {
            "estimate": result.estimate,
            "low": result.low,
            "high": result.high,
            "reliable": result.reliable,
            "reason": result.reason,
            "estimator": result.estimator,
            "raw": result.raw,
            "candidates": [
                {
                    "estimator": c.estimator,
                    "estimate": c.estimate,
                    "low": c.low,
                    "high": c.high,
                    "reliable": c.reliable,
                }
                for c in result.candidates
            ],
        }
    row.update(
        task=task.name,
        family=task.family,
        dims=[task.dx, task.dy],
        truth=task.mi,
        rep=rep,
        method=estimator,
        seconds=time.perf_counter() - start,
    )
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-estimator summary of the module doc, and a per-task table."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    per_task = {}
    for name, runs in by_task.items():
        truth = runs[0]["truth"]
        errors = [r["estimate"] - truth for r in runs]
        covered = [r["low"] <= truth <= r["high"] for r in runs]
        per_task[name] = {
            "truth": truth,
            "dims": runs[0]["dims"],
            "reps": len(runs),
            "mean_estimate": sum(r["estimate"] for r in runs) / len(runs),
            "mean_abs_error": sum(abs(e) for e in errors) / len(runs),
            "coverage": sum(covered) / len(runs),
            "reliable": sum(r["reliable"] for r in runs) / len(runs),
            "width": sum(r["high"] - r["low"] for r in runs) / len(runs),
            "seconds": sum(r["seconds"] for r in runs) / len(runs),
            "estimators": sorted({r["estimator"] for r in runs}),
        }
    off = [r for r in rows if abs(r["estimate"] - r["truth"]) > 0.1]
    honest = [r for r in off if (r["low"] <= r["truth"] <= r["high"]) or not r["reliable"]]
    tasks = list(per_task.values())
    high_dim = [r["seconds"] for r in rows if max(r["dims"]) >= 25]
    return {
        "tasks": len(tasks),
        "runs": len(rows),
        "mae": sum(t["mean_abs_error"] for t in tasks) / len(tasks),
        "within_0.1": sum(abs(t["mean_estimate"] - t["truth"]) <= 0.1 for t in tasks),
        "coverage": sum(t["coverage"] for t in tasks) / len(tasks),
        "tasks_covered": sum(t["coverage"] >= 0.5 for t in tasks),
        "reliable": sum(r["reliable"] for r in rows) / len(rows),
        "off_by_more_than_0.1": len(off),
        "honest": len(honest) / len(off) if off else 1.0,
        "width": sum(r["high"] - r["low"] for r in rows) / len(rows),
        "seconds_mean": sum(r["seconds"] for r in rows) / len(rows),
        "seconds_max": max(r["seconds"] for r in rows),
        "seconds_25d_max": max(high_dim) if high_dim else None,
        "per_task": per_task,
    }


# ---------------------------------------------------------------------------------------------------------
# Discrete
# ---------------------------------------------------------------------------------------------------------


def discrete_study(reps: int, ns: tuple[int, ...] = DISCRETE_NS, n_half: int = 100) -> dict[str, Any]:
    """Coverage of the 95% intervals of I(X; Y) (and H(Y)) over ``reps`` samples per table and n."""
    gen = torch.Generator().manual_seed(1)
    out: dict[str, Any] = {}
    for n in ns:
        per_table = {}
        for table in discrete_tables():
            xs, ys = table.sample(n, reps, gen)
            hits = {"new": 0, "old": 0, "entropy": 0}
            widths = {"new": 0.0, "old": 0.0}
            errors = {"new": 0.0, "old": 0.0}
            for x, y in zip(xs, ys):
                info = discrete_information(x, y, n_half=n_half, generator=gen)
                est, low, high = info.mutual_information
                old = bootstrap_ci(
                    mutual_information_discrete, x, y, n_boot=200, generator=gen, vectorized=True
                )
                old_est, old_low, old_high = (float(v) for v in old)
                h, h_low, h_high = info.entropy
                hits["new"] += low <= table.mi <= high
                hits["old"] += old_low <= table.mi <= old_high
                hits["entropy"] += h_low <= table.entropy_y <= h_high
                widths["new"] += high - low
                widths["old"] += old_high - old_low
                errors["new"] += est - table.mi
                errors["old"] += old_est - table.mi
            per_table[table.name] = {
                "truth": table.mi,
                "coverage": hits["new"] / reps,
                "coverage_entropy": hits["entropy"] / reps,
                "bias": errors["new"] / reps,
                "width": widths["new"] / reps,
                "old_coverage": hits["old"] / reps,
                "old_bias": errors["old"] / reps,
                "old_width": widths["old"] / reps,
            }
        tables = list(per_table.values())

        def mean(key: str, rows: list[dict[str, float]] = tables) -> float:
            return sum(t[key] for t in rows) / len(rows)

        out[str(n)] = {
            "coverage": mean("coverage"),
            "coverage_min": min(t["coverage"] for t in tables),
            "coverage_entropy": mean("coverage_entropy"),
            "mean_abs_bias": sum(abs(t["bias"]) for t in tables) / len(tables),
            "width": mean("width"),
            "old_coverage": mean("old_coverage"),
            "old_coverage_min": min(t["old_coverage"] for t in tables),
            "old_mean_abs_bias": sum(abs(t["old_bias"]) for t in tables) / len(tables),
            "old_width": mean("old_width"),
            "per_table": per_table,
        }
    return out


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------


def _plot(rows: list[dict[str, Any]], path: Path, method: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["task"] for r in rows if r["method"] == method))
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.5), dpi=100)
    for i, name in enumerate(names):
        runs = [r for r in rows if r["task"] == name and r["method"] == method]
        for j, r in enumerate(runs):
            offset = (j - (len(runs) - 1) / 2) * 0.6 / max(1, len(runs))
            color = "tab:blue" if r["reliable"] else "tab:orange"
            ax.plot([r["low"], r["high"]], [i + offset] * 2, color=color, lw=1)
            ax.plot(r["estimate"], i + offset, "o", color=color, ms=2)
        ax.plot(runs[0]["truth"], i, "k|", ms=10, mew=2)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("I(X; Y), nats (black: truth; blue: reliable, orange: not reliable)")
    ax.set_title(f"{method}: 95% intervals over repetitions", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--estimators", default="auto", help=f"comma-separated, of {ESTIMATORS}")
    parser.add_argument("--baseline", action="store_true", help="also the replaced KSG interval (3 reps)")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--discrete-reps", type=int, default=None, help="default 300 (quick: 10)")
    parser.add_argument("--out", default="results/mi_calibration.json")
    parser.add_argument("--resume", action="store_true", help="keep the finished runs found in --out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.discrete_reps = 300 if args.discrete_reps is None and not args.quick else args.discrete_reps
    if args.quick:
        args.reps, args.n = 2, 1000
        args.discrete_reps = 10 if args.discrete_reps is None else args.discrete_reps
        args.estimators = ",".join(item.partition(":")[0] for item in args.estimators.split(","))
        args.tasks = args.tasks or ",".join(QUICK_TASKS)
    wanted = set(filter(None, args.tasks.split(",")))
    tasks = [t for t in suite() if not wanted or t.name in wanted]
    reps = {}
    for item in filter(None, args.estimators.split(",")):
        name, _, count = item.partition(":")
        reps[name] = int(count) if count else args.reps
    methods = list(reps)
    if any(m not in ESTIMATORS for m in methods):
        raise SystemExit(f"unknown estimator in {methods}; expected {ESTIMATORS}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}
    if args.resume and out.exists():
        previous = json.loads(out.read_text())
        rows = previous.get("runs", [])
    done = {(r["task"], r["method"], r["rep"]) for r in rows}
    config = {
        "mode": "quick" if args.quick else "full",
        "n": args.n,
        "reps": reps,
        "baseline": args.baseline,
        "threads": args.threads,
        "discrete_reps": args.discrete_reps,
        "discrete_ns": list(DISCRETE_NS),
    }
    results: dict[str, Any] = {"hardware": hardware(), "config": config, "targets": TARGETS}

    def save() -> None:
        results["runs"] = rows
        out.write_text(json.dumps(results, indent=1, default=float) + "\n")

    jobs = [(m, r) for m in methods for r in range(reps[m])]
    jobs += [("baseline", r) for r in range(min(3, args.reps))] if args.baseline else []
    for task in tasks:
        for method, rep in jobs:
            if (task.name, method, rep) in done:
                continue
            row = run_one(task, method, args.n, rep)
            rows.append(row)
            print(
                f"{task.name:30s} {method:9s} rep {rep}: {row['estimate']:.3f} [{row['low']:.3f}, "
                f"{row['high']:.3f}] truth {task.mi:.3f} {'' if row['reliable'] else 'NOT RELIABLE '}"
                f"{row['seconds']:.1f}s",
                flush=True,
            )
            save()
    results["summary"] = {
        m: summarise([r for r in rows if r["method"] == m]) for m in dict.fromkeys(r["method"] for r in rows)
    }
    if args.discrete_reps > 0:
        start = time.perf_counter()
        results["discrete"] = discrete_study(args.discrete_reps)
        results["discrete_seconds"] = time.perf_counter() - start
        results["config"]["discrete_reps"] = args.discrete_reps
    elif "discrete" in previous:  # --discrete-reps 0 with --resume: keep the earlier study
        results["discrete"] = previous["discrete"]
        results["config"]["discrete_reps"] = previous["config"]["discrete_reps"]
    save()
    if methods:
        _plot(rows, out.with_suffix(".png"), methods[0])
    for m, s in results["summary"].items():
        print(
            f"{m}: MAE {s['mae']:.3f}, {s['within_0.1']}/{s['tasks']} within 0.1, coverage "
            f"{s['coverage']:.2f} ({s['tasks_covered']} tasks >= 50%), honest {s['honest']:.2f} of "
            f"{s['off_by_more_than_0.1']} off, width {s['width']:.3f}, {s['seconds_mean']:.1f} s mean, "
            f"{s['seconds_max']:.1f} s max"
        )
    for n, d in results.get("discrete", {}).items():
        print(
            f"discrete n={n}: coverage {d['coverage']:.3f} (min {d['coverage_min']:.2f}), bootstrap "
            f"{d['old_coverage']:.3f} (min {d['old_coverage_min']:.2f})"
        )
    return results


if __name__ == "__main__":
    main()

"""Speed and accuracy of the information metrics against reference implementations.

    python -m marl.benchmarks.metrics [--quick] [--out results/metrics_benchmark.json] [--repeats 5]

Cases (sizes of the full run; ``--quick`` shrinks them to a smoke test whose numbers mean nothing):
1. discrete_mi: plug-in MI of 1,000,000 label pairs (16 x 16 labels, y = x + U{0..3} mod 16, so
   I = log 4) vs ``sklearn.metrics.mutual_info_score``; ours plug-in (same value) and Miller-Madow.
   Goal: ours >= 10x faster.
2. ksg: KSG (k = 3) on 50,000 correlated Gaussian pairs (rho = 0.5, I = -log(1 - rho^2) / 2) vs
   ``sklearn.feature_selection.mutual_info_regression(X, y, n_neighbors=3)`` (a KD-tree). Ours is also
   timed on one thread, as scikit-learn's KSG is single-threaded. Goal: ours at least as fast, same value.
3. snd: System Neural Diversity of 1,000,000 observations x 8 agents x 2 action dims (Gaussian policies,
   W2), beside a plain ``torch.cdist`` computation of the same mean pairwise distance. Goal: < 1 s.

Each time is the best of ``--repeats`` runs after one warm-up run. Inputs are built (and converted to NumPy
for scikit-learn) outside the timed region. Writes the JSON to ``--out`` and a bar chart of the times (log
scale) next to it (same name, .png).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from marl.benchmarks.machine import hardware
from marl.metrics.information import mutual_information_discrete
from marl.metrics.knn import ksg_mutual_information
from marl.metrics.snd import snd

FULL = {"discrete_n": 1_000_000, "ksg_n": 50_000, "snd_batch": 1_000_000}
QUICK = {"discrete_n": 20_000, "ksg_n": 2_000, "snd_batch": 10_000}
GOALS = {"discrete_speedup_min": 10.0, "ksg_speedup_min": 1.0, "snd_seconds_max": 1.0}
LABELS, SHIFTS = 16, 4  # discrete case: x ~ U{0..15}, y = x + U{0..3} mod 16
RHO, K = 0.5, 3  # KSG case
SND_AGENTS, SND_DIM = 8, 2


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time (s) of ``repeats`` calls after one warm-up call, and the last result."""
    result = fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _with_threads(n: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def discrete_case(n: int, repeats: int) -> dict[str, Any]:
    from sklearn.metrics import mutual_info_score

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, LABELS, (n,), generator=gen)
    y = (x + torch.randint(0, SHIFTS, (n,), generator=gen)) % LABELS
    x_np, y_np = x.numpy(), y.numpy()
    ours_s, ours = best_time(lambda: mutual_information_discrete(x, y, miller_madow=False), repeats)
    mm_s, mm = best_time(lambda: mutual_information_discrete(x, y, miller_madow=True), repeats)
    ref_s, ref = best_time(lambda: mutual_info_score(x_np, y_np), repeats)
    return {
        "n": n,
        "labels": [LABELS, LABELS],
        "ours_s": ours_s,
        "ours_miller_madow_s": mm_s,
        "reference_s": ref_s,
        "reference": "sklearn.metrics.mutual_info_score",
        "speedup": ref_s / ours_s,
        "ours": float(ours),
        "ours_miller_madow": float(mm),
        "reference_value": float(ref),
        "truth": math.log(SHIFTS),
        "abs_diff_vs_reference": abs(float(ours) - float(ref)),
    }


def ksg_case(n: int, repeats: int) -> dict[str, Any]:
    from sklearn.feature_selection import mutual_info_regression

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    y = RHO * x + math.sqrt(1 - RHO**2) * torch.randn(n, generator=gen, dtype=torch.float64)
    x_np, y_np = x.numpy()[:, None], y.numpy()

    def ours_fn() -> torch.Tensor:
        return ksg_mutual_information(x, y, K)

    ours_s, ours = best_time(ours_fn, repeats)
    one_s, _ = best_time(_with_threads(1, ours_fn), repeats)
    ref_s, ref = best_time(lambda: mutual_info_regression(x_np, y_np, n_neighbors=K, random_state=0), repeats)
    return {
        "n": n,
        "k": K,
        "rho": RHO,
        "ours_s": ours_s,
        "ours_1_thread_s": one_s,
        "reference_s": ref_s,
        "reference": "sklearn.feature_selection.mutual_info_regression",
        "speedup": ref_s / ours_s,
        "speedup_1_thread": ref_s / one_s,
        "ours": float(ours),
        "reference_value": float(ref[0]),
        "truth": -0.5 * math.log(1 - RHO**2),
        "abs_diff_vs_reference": abs(float(ours) - float(ref[0])),
    }


def _snd_cdist(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Reference SND: W2 between diagonal Gaussians = L2 distance of (mu, sigma), all pairs via cdist."""
    z = torch.cat([mu, sigma], -1)
    dist = torch.cdist(z, z).mean(0, dtype=torch.float64)
    n = dist.shape[0]
    i, j = torch.triu_indices(n, n, offset=1)
    return dist[i, j].mean()


def snd_case(batch: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(batch, SND_AGENTS, SND_DIM, generator=gen)
    sigma = torch.rand(batch, SND_AGENTS, SND_DIM, generator=gen) + 0.1
    ours_s, ours = best_time(lambda: snd(mu, sigma), repeats)
    ref_s, ref = best_time(lambda: _snd_cdist(mu, sigma), repeats)
    return {
        "batch": batch,
        "agents": SND_AGENTS,
        "action_dim": SND_DIM,
        "ours_s": ours_s,
        "reference_s": ref_s,
        "reference": "torch.cdist over all agent pairs",
        "speedup": ref_s / ours_s,
        "ours": float(ours),
        "reference_value": float(ref),
        "rel_diff_vs_reference": abs(float(ours) - float(ref)) / abs(float(ref)),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results["cases"]
    names = list(cases)
    ours = [cases[c]["ours_s"] for c in names]
    ref = [cases[c]["reference_s"] for c in names]
    one = [cases[c].get("ours_1_thread_s", math.nan) for c in names]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(
        [i - 0.27 for i in xs],
        ours,
        width=0.27,
        label=f"ours ({results['hardware']['torch_threads']} threads)",
    )
    ax.bar(list(xs), one, width=0.27, label="ours (1 thread)")
    ax.bar([i + 0.27 for i in xs], ref, width=0.27, label="reference")
    ax.set_xticks(list(xs), [f"{c}\n{cases[c]['reference'].split('.')[-1]}" for c in names], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (best of repeats, log scale)")
    ax.set_title(f"metrics benchmark ({results['config']['mode']}, {results['hardware']['cpu']})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    parser.add_argument(
        "--out", default="results/metrics_benchmark.json", help="JSON path (plot: same, .png)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (after a warm-up)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run all cases, print a table, write the JSON and the plot; returns the results."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    hw = hardware(packages=("numpy", "scikit-learn"))
    mode = "quick" if args.quick else "full"
    print(f"metrics benchmark ({mode}) on {hw['cpu']}, torch threads {hw['torch_threads']}")
    cases = {
        "discrete_mi": discrete_case(sizes["discrete_n"], args.repeats),
        "ksg": ksg_case(sizes["ksg_n"], args.repeats),
        "snd": snd_case(sizes["snd_batch"], args.repeats),
    }
    goals = {
        "discrete_speedup": {
            "target": GOALS["discrete_speedup_min"],
            "value": cases["discrete_mi"]["speedup"],
        },
        "ksg_speedup": {"target": GOALS["ksg_speedup_min"], "value": cases["ksg"]["speedup"]},
        "snd_seconds": {"target": GOALS["snd_seconds_max"], "value": cases["snd"]["ours_s"]},
    }
    for name, goal in goals.items():
        goal["pass"] = (
            goal["value"] <= goal["target"] if name == "snd_seconds" else goal["value"] >= goal["target"]
        )
    results = {
        "hardware": hw,
        "config": {"mode": mode, "repeats": args.repeats, "sizes": sizes},
        "cases": cases,
        "goals": goals,
    }
    print(f"{'case':<12} {'size':>10} {'ours s':>10} {'ref s':>10} {'speedup':>8}  ours / reference / truth")
    for name, c in cases.items():
        size = c.get("n", c.get("batch"))
        truth = f"{c['truth']:.6f}" if "truth" in c else "-"
        print(
            f"{name:<12} {size:>10} {c['ours_s']:>10.4f} {c['reference_s']:>10.4f} {c['speedup']:>8.2f}"
            f"  {c['ours']:.6f} / {c['reference_value']:.6f} / {truth}"
        )
    print(f"ksg on 1 thread: {cases['ksg']['ours_1_thread_s']:.4f} s")
    for name, goal in goals.items():
        print(f"goal {name}: {goal['value']:.3f} vs {goal['target']} -> {'pass' if goal['pass'] else 'FAIL'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return results


if __name__ == "__main__":
    main()

"""The cooking study: five partner populations, their D, S, O and capable members, and a
generalist trained with each, tested against held-out specialists.

    python -m marl.benchmarks.cooking_populations [--seeds 0 1 2] [--jobs 2] [--scale 1.0]

For every seed s it trains, on the two-cook kitchen (envs/native/cooking.py, the `cooking_*` presets):

- P_specialists  `method=specialists`: six members, member r rewarded only for recipe r (the oracle);
- P_selfplay     `method=selfplay`: six independent self-play members (the unspecialised baseline);
- P_xpmin        `method=xpmin`: six members, lambda 0.3, each with itself and one sampled partner;
- P_extract-rl, P_extract-dagger: `marl population extract` of that P_xpmin;

then evaluates each population against one held-out specialist set (`method=specialists` with seed
HELD_OUT_SEED, trained once and shared by all seeds: partners none of the populations or generalists ever
played with), giving D, S, capable members and O (docs/metrics.md, "Populations"), and trains a GRU
generalist with each population's members as partners (`marl population generalist`), whose success with
each held-out specialist (both seats) and their harmonic mean is the robustness measure.

Every run is an ordinary run directory under --runs (TensorBoard, checkpoints, config). A ledger
(<runs>/ledger.json) records finished steps, so an interrupted study re-run with the same arguments picks up
where it stopped (an unfinished step starts over). The summary goes to <out>/summary.json, table.md and
summary.png: mean and 95% t-interval over seeds, env steps and wall-clock time of every step.

Sizes: --scale multiplies every step's iterations. The defaults (scale 1) were sized to finish on a 2-core
CPU in about an hour with two jobs; the published XP-min runs used about 1.3 billion env steps per
population, roughly three orders of magnitude more than these.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from marl.benchmarks.machine import hardware

POPULATIONS = ("specialists", "selfplay", "xpmin", "extract-rl", "extract-dagger")
HELD_OUT_SEED = 1000
MEMBERS = 6
# Iterations of each step at --scale 1 (frames per iteration in brackets).
ITERATIONS = {
    "specialists": 250,  # 6 members x 16 kitchens x 64 steps (6,144)
    "selfplay": 250,  # the same
    "xpmin": 200,  # 6 members x (self + 1 sampled partner in both seat orders) x 16 kitchens x 64 (18,432)
    "extract-rl": 150,  # 6 students x 32 kitchens x 16 steps (3,072)
    "extract-dagger": 30,  # the same, plus the teacher's labels and 50 full-batch imitation epochs
    "generalist": 600,  # 64 kitchens x 32 steps (2,048)
}
EVAL_EPISODES = 32  # per ordered pair (populations) and per partner and seat (generalists)


# ---------------------------------------------------------------------------------------------------------
# One step each: run in a worker process, return what the summary needs
# ---------------------------------------------------------------------------------------------------------


def train_population(method: str, seed: int, iterations: int, runs: str) -> dict[str, Any]:
    """`marl population train preset=cooking_<method>` with six members; -> its directory and cost."""
    from marl.population.config import apply_overrides, load_population_config, rollout_frames
    from marl.population.xpmin import train

    cfg = load_population_config(
        [
            f"preset=cooking_{method}",
            f"population.size={MEMBERS}",
            f"experiment.seed={seed}",
            f"experiment.iterations={iterations}",
            f"experiment.name={method}-seed{seed}",
            f"experiment.runs_dir={runs}",
            "experiment.progress=false",
        ]
    )
    # 4 minibatches per epoch as in the presets (which size them for their own population)
    cfg = apply_overrides(cfg, [("algorithm.minibatch_size", rollout_frames(cfg) // 4)])
    return _cost(train(cfg))


def extract_population(method: str, teacher: str, seed: int, iterations: int, runs: str) -> dict[str, Any]:
    """`marl population extract <teacher> method=<method>`; -> the students' directory and cost."""
    from marl.population.extract import extract

    # rl: the label reward (paid only when an episode ends with a recipe) plus a tenth of the kitchen's own
    # reward, so the students get the sub-goal shaping the populations trained with; the teacher's recipe
    # still pays about twice any other (1 + 1 against 1 per delivery).
    # 4 minibatches per epoch of the students' 3,072 frames, as their teacher's PPO takes
    settings = {"env_reward_scale": 0.1, "minibatch_size": MEMBERS * 32 * 16 // 4} if method == "rl" else {}
    run_dir = extract(
        teacher,
        **settings,
        method=method,
        seed=seed,
        iterations=iterations,
        name=f"extract-{method}-seed{seed}",
        runs_dir=runs,
        progress=False,
        eval_every=0,
    )
    return _cost(run_dir)


def evaluate_population(run: str, held_out: str) -> dict[str, Any]:
    """`marl population evaluate <run> --specialists <held_out>`: D, S, capable members, O."""
    from marl.population.evaluate import evaluate_run

    result = evaluate_run(run, held_out, episodes_per_pair=EVAL_EPISODES, device="cpu")
    keys = ("diversity", "specialisation", "capable_members", "overfitness", "sp_label", "sp_success")
    return {key: result.get(key) for key in keys}


def train_generalist(population: str, held_out: str, seed: int, iterations: int, runs: str, name: str):
    """`marl population generalist <population> generalist.test_population=<held_out>`; -> success with each
    held-out specialist (mean over both seats), their harmonic mean, and the cost."""
    from marl.population.generalist import load_generalist_config
    from marl.population.generalist import train_generalist as train

    cfg = load_generalist_config(
        [
            population,
            f"generalist.test_population={held_out}",
            f"experiment.seed={seed}",
            f"experiment.iterations={iterations}",
            f"experiment.name={name}",
            f"experiment.runs_dir={runs}",
            f"experiment.eval_episodes={EVAL_EPISODES}",
            "experiment.eval_every=100",
            "experiment.eval_deterministic=false",
            "experiment.progress=false",
        ]
    )
    run_dir = train(cfg)
    summary = json.loads((run_dir / "generalist.json").read_text())
    test = summary["test_partners"]
    return {
        "run": str(run_dir),
        "frames": summary["frames"],
        "wall_time_s": summary["wall_time_s"],
        "harmonic_mean": test["harmonic_mean"],
        "success_mean": test["success_mean"],
        "success_per_partner": test["success_per_partner"],
        "success_per_seat": [sum(col) / len(col) for col in zip(*test["success"])],
        "train_partner_success": summary["train_partners"]["success_mean"],
    }


def _cost(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((Path(run_dir) / "population.json").read_text())
    return {"run": str(run_dir), "frames": summary["frames"], "wall_time_s": summary["wall_time_s"]}


# ---------------------------------------------------------------------------------------------------------
# The study: steps in dependency order, finished ones kept in a ledger
# ---------------------------------------------------------------------------------------------------------


class Ledger:
    """Finished steps by name, saved after each one (so a re-run skips them)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def run(self, pool: ProcessPoolExecutor, steps: dict[str, tuple]) -> None:
        """Run the unfinished ``steps`` (name -> (function, *args)) in the pool, recording each as it ends."""
        pending = {name: pool.submit(*step) for name, step in steps.items() if name not in self.done}
        for name, future in pending.items():
            started = time.time()
            self.done[name] = future.result()
            self.path.write_text(json.dumps(self.done, indent=2) + "\n")
            print(f"  {name}: done ({time.time() - started:.0f} s after the previous one)", flush=True)


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(runs / "ledger.json")
    iters = {name: max(1, round(n * args.scale)) for name, n in ITERATIONS.items()}
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        print("1/4 populations trained from scratch, and the held-out specialists", flush=True)
        held_out = (train_population, "specialists", HELD_OUT_SEED, iters["specialists"], str(runs))
        steps = {"held-out": held_out}
        for seed in args.seeds:
            for method in ("xpmin", "specialists", "selfplay"):
                steps[f"{method}/{seed}"] = (train_population, method, seed, iters[method], str(runs))
        ledger.run(pool, steps)

        print("2/4 extraction of every XP-min population", flush=True)
        steps = {
            f"extract-{method}/{seed}": (
                extract_population,
                method,
                ledger.done[f"xpmin/{seed}"]["run"],
                seed,
                iters[f"extract-{method}"],
                str(runs),
            )
            for seed in args.seeds
            for method in ("rl", "dagger")
        }
        ledger.run(pool, steps)

        held_out = ledger.done["held-out"]["run"]
        print("3/4 evaluation against the held-out specialists; one generalist per population", flush=True)
        steps = {}
        for seed in args.seeds:
            for population in POPULATIONS:
                run = ledger.done[f"{population}/{seed}"]["run"]
                steps[f"generalist-{population}/{seed}"] = (
                    train_generalist,
                    run,
                    held_out,
                    seed,
                    iters["generalist"],
                    str(runs),
                    f"generalist-{population}-seed{seed}",
                )
                steps[f"evaluate-{population}/{seed}"] = (evaluate_population, run, held_out)
        ledger.run(pool, steps)

    print("4/4 summary", flush=True)
    return summarise(ledger.done, args, iters)


# ---------------------------------------------------------------------------------------------------------
# Summary: mean and 95% interval over seeds; table, JSON and figure
# ---------------------------------------------------------------------------------------------------------

METRICS = (  # (key, where it comes from, table heading)
    ("diversity", "evaluate", "D = H(Y) (nats)"),
    ("specialisation", "evaluate", "S = I(X;Y)/H(Y)"),
    ("capable_members", "evaluate", f"capable members (of {MEMBERS})"),
    ("overfitness", "evaluate", "O"),
    ("xp_success_within", "evaluate", "cross-play success between members"),
    ("harmonic_mean", "generalist", "generalist: harmonic-mean success with held-out specialists"),
    ("success_mean", "generalist", "generalist: mean success"),
)


def summarise(done: dict[str, Any], args: argparse.Namespace, iters: dict[str, int]) -> dict[str, Any]:
    from marl.compare import mean_interval

    for seed in args.seeds:  # members with each other: the mean off-diagonal success of evaluation.json
        for population in POPULATIONS:
            saved = Path(done[f"{population}/{seed}"]["run"]) / "evaluation.json"
            success = json.loads(saved.read_text())["xp_success"]
            n = len(success)
            within = [success[i][j] for i in range(n) for j in range(n) if i != j]
            done[f"evaluate-{population}/{seed}"]["xp_success_within"] = sum(within) / len(within)
    rows = []
    for population in POPULATIONS:
        row: dict[str, Any] = {"population": population}
        for key, source, _ in METRICS:
            values = [done[f"{source}-{population}/{s}"][key] for s in args.seeds]
            finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
            mean, low, high = mean_interval(finite) if finite else (float("nan"),) * 3
            row[key] = {"per_seed": values, "mean": mean, "low": low, "high": high}
        cost = [done[f"{population}/{s}"] for s in args.seeds]
        if population.startswith("extract"):  # the students' cost comes on top of their teacher's
            cost = [
                {k: c[k] + done[f"xpmin/{s}"][k] for k in ("frames", "wall_time_s")}
                for c, s in zip(cost, args.seeds)
            ]
        generalist = [done[f"generalist-{population}/{s}"] for s in args.seeds]
        row["population_frames"] = sum(c["frames"] for c in cost) / len(cost)
        row["population_minutes"] = sum(c["wall_time_s"] for c in cost) / len(cost) / 60
        row["generalist_frames"] = sum(g["frames"] for g in generalist) / len(generalist)
        row["generalist_minutes"] = sum(g["wall_time_s"] for g in generalist) / len(generalist) / 60
        row["generalist_success_per_seat"] = [g["success_per_seat"] for g in generalist]
        row["generalist_success_per_partner"] = [g["success_per_partner"] for g in generalist]
        row["sp_label"] = [done[f"evaluate-{population}/{s}"]["sp_label"] for s in args.seeds]
        rows.append(row)
    summary = {
        "study": "cooking populations: D, S, O, capable members, generalist robustness",
        "seeds": args.seeds,
        "members": MEMBERS,
        "held_out_specialists": done["held-out"]["run"],
        "held_out_cost": {k: done["held-out"][k] for k in ("frames", "wall_time_s")},
        "iterations": iters,
        "eval_episodes": EVAL_EPISODES,
        "hardware": hardware(packages=("torchrl", "tensordict")),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(table(summary))
    plot(summary, out / "summary.png")
    print(table(summary))
    print(f"Wrote {out}/summary.json, table.md and summary.png")
    return summary


def table(summary: dict[str, Any]) -> str:
    def cell(stat: dict) -> str:
        if math.isnan(stat["mean"]):
            return "n/a"
        return f"{stat['mean']:.2f} [{stat['low']:.2f}, {stat['high']:.2f}]"

    seeds = summary["seeds"]
    lines = [
        f"Cooking kitchen, {summary['members']} members per population, seeds {seeds}: mean [95% t-interval "
        "over seeds]. Held-out specialists: one `method=specialists` population (seed "
        f"{HELD_OUT_SEED}) that no population or generalist trained with. Sampled actions in every "
        f"evaluation ({summary['eval_episodes']} episodes per pair, or per partner and seat).",
        "",
        "| population | " + " | ".join(heading for _, _, heading in METRICS) + " | generalist success "
        "cooking (left seat) / carrying (right seat) | population env steps (wall clock) | generalist env "
        "steps (wall clock) |",
        "|---" * (len(METRICS) + 4) + "|",
    ]
    for row in summary["rows"]:
        cells = [cell(row[key]) for key, _, _ in METRICS]
        seats = row["generalist_success_per_seat"]
        left, right = (sum(s[i] for s in seats) / len(seats) for i in (0, 1))
        lines.append(
            f"| P_{row['population']} | "
            + " | ".join(cells)
            + f" | {left:.2f} / {right:.2f}"
            + f" | {row['population_frames'] / 1e6:.2f}M ({row['population_minutes']:.1f} min) | "
            f"{row['generalist_frames'] / 1e6:.2f}M ({row['generalist_minutes']:.1f} min) |"
        )
    lines += [
        "",
        "Self-play recipe of each member (its most frequent; -1: none delivered), per seed:",
        "",
    ]
    for row in summary["rows"]:
        lines.append(f"- P_{row['population']}: {row['sp_label']}")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in METRICS if m[0] != "success_mean"]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.8))
    names = [row["population"] for row in summary["rows"]]
    for axis, (key, _, heading) in zip(axes, panels, strict=True):
        stats = [row[key] for row in summary["rows"]]
        means = [s["mean"] for s in stats]
        errors = [[s["mean"] - s["low"] for s in stats], [s["high"] - s["mean"] for s in stats]]
        axis.bar(range(len(names)), means, yerr=errors, capsize=3, color="tab:blue", alpha=0.8)
        for i, s in enumerate(stats):
            dots = [float(v) for v in s["per_seed"] if v is not None]
            axis.plot([i] * len(dots), dots, "k.", ms=4)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        axis.set_title(textwrap.fill(heading, 32), fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Cooking populations, mean and 95% interval over seeds {summary['seeds']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="steps run at once (one CPU thread each)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every step's iterations")
    parser.add_argument("--runs", default="results/runs/cooking_populations")
    parser.add_argument("--out", default="results/cooking_populations")
    run_study(parser.parse_args())


if __name__ == "__main__":
    main()

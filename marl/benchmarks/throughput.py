"""Training throughput of MAPPO on VMAS navigation, per parameter-sharing scheme and number of agents, beside
the peer library BenchMARL measured in the same run.

    python -m marl.benchmarks.throughput [--quick] [--skip-benchmarl] [--device auto|cpu|cuda] [--out results]

Sections, in the order they run:
1. schemes: shared, independent, grouped, hyper, hyper_linear at 3 agents;
2. scaling: shared, independent, hyper at 3, 8 and 16 agents (3 agents reuses section 1);
3. ippo: shared, independent, hyper with IPPO at the largest agent count;
4. benchmarl: BenchMARL MAPPO shared and independent (its own venv, run as subprocesses), ratios ours/theirs;
5. ratios: time per frame of independent and hyper relative to shared at the largest agent count, for MAPPO
   and IPPO, beside the inherent work ratio (multiply-adds per frame, from parameter counts).

Why both algorithms: MAPPO's shared critic without agent IDs sees one global input, so it runs once per
step, while an independent (or hypernetwork) critic runs one network per agent over that input: n times the
work by definition. IPPO's critics see per-agent inputs under every scheme, so there the ratio measures the
implementation (batched per-agent matmuls against one big matmul), not the algorithm.

Each measurement builds a trainer, runs one warm-up iteration (not counted) and then timed iterations:
frames/s = frames / (collection + training time). The config is BenchMARL's MAPPO defaults on its
navigation task with 60 envs (`base_overrides`). Writes <out>/throughput.json and <out>/throughput.png.
`--quick` uses tiny sizes (a smoke test of the script, well under a minute with --skip-benchmarl; its
numbers mean nothing).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware
from marl.config import load_config
from marl.errors import MarlError
from marl.runs import resolve_device
from marl.training import Trainer, build_trainer, train_iteration

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(os.environ.get("MARL_BENCHMARL_DIR") or REPO.parent / "shared" / "bench")
BENCHMARL_TIMEOUT_S = 1800

SCHEMES = ("shared", "independent", "grouped", "hyper", "hyper_linear")
SCALING_SCHEMES = ("shared", "independent", "hyper")
LARGE_AGENTS = 16  # from this many agents on, measurements use --large-iterations timed iterations
BENCHMARL_ITERATIONS = 4  # BenchMARL's timer covers this many iterations, the first one included
TARGETS = {"independent": 1.25, "hyper": 1.5}  # max time per frame relative to shared, at 16 agents
HYPER_VS_INDEPENDENT = 1.5  # max time per frame of hyper relative to independent, at 16 agents

# BenchMARL 1.5.2 conf/task/vmas/navigation.yaml. VMAS's own defaults differ in n_agents (4) and shared_rew
# (True), and our preset sets neither shared_rew nor the rest, so all of them are passed explicitly.
BENCHMARL_NAVIGATION = {
    "max_steps": 100,
    "n_agents": 3,
    "collisions": True,
    "agents_with_same_goal": 1,
    "split_goals": False,
    "observe_all_goals": False,
    "shared_rew": False,
    "lidar_range": 0.35,
    "agent_radius": 0.1,
}
SCENARIO_KWARGS = {k: v for k, v in BENCHMARL_NAVIGATION.items() if k not in ("max_steps", "n_agents")}
FPS_LINE = re.compile(r"frames/s \((?P<seconds>[\d.]+) s for (?P<frames>\d+) frames\)")


@dataclass(frozen=True)
class Sizes:
    """Batch and network sizes, agent counts and BenchMARL runs of one benchmark mode."""

    num_envs: int
    max_steps: int
    frames_per_batch: int
    epochs: int
    minibatch_size: int
    hidden_sizes: tuple[int, ...]
    scheme_agents: int  # agents in section 1
    scaling_agents: tuple[int, ...]
    benchmarl_runs: tuple[tuple[str, int], ...]  # (scheme, iterations) of BenchMARL's script


FULL = Sizes(60, 100, 6000, 45, 400, (256, 256), 3, (3, 8, 16), (("shared", 4), ("independent", 4)))
QUICK = Sizes(4, 10, 40, 1, 20, (32, 32), 3, (3, 4), (("shared", 1),))


class Progress:
    """Prints progress lines with the elapsed time (the full benchmark runs for many minutes)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:5.0f} s] {message}", flush=True)


# --------------------------------------------------------------------------------------------------------
# Our trainer
# --------------------------------------------------------------------------------------------------------


def base_overrides(sizes: Sizes, n_agents: int, device: str, algorithm: str = "mappo") -> list[str]:
    """load_config arguments: BenchMARL's MAPPO defaults on its navigation task (sharing comes on top)."""
    scenario = [f"env.{key}={json.dumps(value)}" for key, value in SCENARIO_KWARGS.items()]
    return [
        "env=vmas/navigation",
        f"env.n_agents={n_agents}",
        f"env.num_envs={sizes.num_envs}",
        f"env.max_steps={sizes.max_steps}",
        "env.continuous_actions=true",
        *scenario,
        f"experiment.frames_per_batch={sizes.frames_per_batch}",
        f"experiment.device={device}",
        "experiment.progress=false",
        f"algorithm={algorithm}",
        f"algorithm.epochs={sizes.epochs}",
        f"algorithm.minibatch_size={sizes.minibatch_size}",
        "algorithm.lr=5e-5",
        "algorithm.gamma=0.99",
        "algorithm.gae_lambda=0.9",
        "algorithm.clip_epsilon=0.2",
        "algorithm.adam_eps=1e-6",  # BenchMARL's adam_eps and clip_grad_val (no effect on speed)
        "algorithm.max_grad_norm=5.0",
        f"model.hidden_sizes=[{','.join(map(str, sizes.hidden_sizes))}]",
        "model.activation=tanh",
    ]


def sharing_overrides(scheme: str, n_agents: int) -> list[str]:
    """`sharing=<scheme>`; grouped gets two roles, the first half of the agents and the rest."""
    if scheme != "grouped":
        return [f"sharing={scheme}"]
    half = max(1, n_agents // 2)
    first, second = list(range(half)), list(range(half, n_agents))
    return ["sharing=grouped", f"sharing.roles={{a: {first}, b: {second}}}"]


def timed_iteration(trainer: Trainer) -> dict[str, float]:
    """One training iteration with its frames, wall time and the collection/training split."""
    frames_before = trainer.frames
    start = time.perf_counter()
    metrics = train_iteration(trainer)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    wall = time.perf_counter() - start
    frames = trainer.frames - frames_before
    collection, training = metrics["perf/collection_s"], metrics["perf/training_s"]
    return {
        "frames": frames,
        "fps": frames / (collection + training),
        "wall_s": wall,
        "collection_s": collection,
        "training_s": training,
        "overhead_s": wall - collection - training,
    }


def measure(
    sizes: Sizes, scheme: str, n_agents: int, device: str, iterations: int, algorithm: str = "mappo"
) -> dict:
    """Build a trainer, one warm-up iteration, then `iterations` timed ones; frames/s over the timed ones.

    With at least BENCHMARL_ITERATIONS iterations in all, also the number timed as BenchMARL's script times
    itself: the first BENCHMARL_ITERATIONS iterations after building, warm-up included.
    """
    cfg = load_config(
        base_overrides(sizes, n_agents, device, algorithm) + sharing_overrides(scheme, n_agents)
    )
    start = time.perf_counter()
    trainer = build_trainer(cfg)
    build_s = time.perf_counter() - start
    runs = [timed_iteration(trainer) for _ in range(1 + iterations)]
    counts = trainer.model.parameter_counts()
    result_device = str(trainer.device)
    trainer.collector.env.close()
    del trainer
    gc.collect()

    warmup, timed = runs[0], runs[1:]
    frames = sum(r["frames"] for r in timed)
    result = {
        "scheme": scheme,
        "algorithm": algorithm,
        "n_agents": n_agents,
        "device": result_device,
        "fps": frames / sum(r["collection_s"] + r["training_s"] for r in timed),
        "iterations": len(timed),
        "frames_per_iteration": timed[0]["frames"],
        **{key: _mean(timed, key) for key in ("collection_s", "training_s", "overhead_s", "wall_s")},
        "build_s": build_s,
        "parameters": counts,
        "parameters_total": sum(counts.values()),
        "warmup": warmup,
        "per_iteration": timed,
    }
    if len(runs) >= BENCHMARL_ITERATIONS:
        first = runs[:BENCHMARL_ITERATIONS]
        seconds, frames = sum(r["wall_s"] for r in first), sum(r["frames"] for r in first)
        result["benchmarl_style"] = {
            "iterations": BENCHMARL_ITERATIONS,
            "seconds": seconds,
            "fps": frames / seconds,
            "fps_incl_build": frames / (seconds + build_s),
        }
    return result


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def run_measurement(
    progress: Progress, section: str, sizes: Sizes, scheme: str, n_agents: int, device: str, iterations: int,
    algorithm: str = "mappo",
) -> dict:  # fmt: skip
    """`measure`, with a progress line before and after."""
    progress(f"{section}: {scheme}, {n_agents} agents: 1 warm-up + {iterations} timed iteration(s) ...")
    m = measure(sizes, scheme, n_agents, device, iterations, algorithm)
    progress(
        f"{section}: {scheme}, {n_agents} agents: {m['fps']:,.0f} frames/s (per iteration: collect "
        f"{m['collection_s']:.2f} s, train {m['training_s']:.2f} s, overhead {m['overhead_s']:.3f} s)"
    )
    return m


# --------------------------------------------------------------------------------------------------------
# BenchMARL, in its own venv
# --------------------------------------------------------------------------------------------------------


def benchmarl_python() -> tuple[Path | None, str]:
    """The BenchMARL venv's interpreter, or None and why not. Never builds the venv (minutes, network)."""
    script = BENCH_DIR / "benchmarl-venv.sh"
    expected = Path(os.environ.get("BENCHMARL_VENV") or Path.home() / ".cache" / "benchmarl-venv")
    if not script.is_file() or not (BENCH_DIR / "benchmarl_mappo.py").is_file():
        return None, f"BenchMARL scripts not found in {BENCH_DIR} (set MARL_BENCHMARL_DIR)"
    if not (expected / "bin" / "python").is_file():
        return None, f"no BenchMARL venv at {expected}; build it with: bash {script}"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None, f"{script} failed: {_tail(proc.stderr)}"
    return Path(proc.stdout.strip().splitlines()[-1]) / "bin" / "python", ""


def benchmarl_versions(python: Path) -> dict[str, str]:
    """Package versions in the BenchMARL venv (read from metadata, nothing imported)."""
    packages = ("benchmarl", "torch", "torchrl", "vmas")
    code = f"from importlib.metadata import version; print(*(version(p) for p in {packages!r}))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    return dict(zip(packages, proc.stdout.split())) if proc.returncode == 0 else {}


def run_benchmarl(python: Path, scheme: str, iterations: int, threads: int | None) -> dict:
    """BenchMARL's timed script; frames/s parsed from its last line (it times experiment.run())."""
    command = [str(python), str(BENCH_DIR / "benchmarl_mappo.py"), scheme, "navigation", str(iterations)]
    result = {"scheme": scheme, "iterations": iterations, "command": " ".join(command)}
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads, as many as ours
        result["command"] = f"OMP_NUM_THREADS={threads} {result['command']}"
    with tempfile.TemporaryDirectory() as cwd:
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=BENCHMARL_TIMEOUT_S, cwd=cwd, env=env
            )
        except subprocess.TimeoutExpired:
            return {**result, "error": f"timed out after {BENCHMARL_TIMEOUT_S} s"}
    match = FPS_LINE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        return {**result, "error": f"exit {proc.returncode}: {_tail(proc.stdout + proc.stderr)}"}
    seconds, frames = float(match["seconds"]), int(match["frames"])
    return {**result, "fps": frames / seconds, "seconds": seconds, "frames": frames}


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def benchmarl_section(
    progress: Progress, sizes: Sizes, skip: bool, schemes: list[dict], quick: bool, threads: int | None
) -> dict:
    """Run BenchMARL and compare: ours steady state, and ours timed like BenchMARL times itself."""
    caveat = (
        "BenchMARL's frames/s is the wall time of experiment.run() over all its iterations "
        f"({BENCHMARL_ITERATIONS} in the full benchmark; the first one, with its start-up costs, included; "
        "the Experiment's construction excluded) on "
        "its default devices (cpu). 'ratio' compares our steady state (warm-up excluded) with it; "
        "'ratio_4_iterations' compares our first 4 iterations after build_trainer, warm-up included, "
        "timed the same way."
    )
    section: dict = {"caveat": caveat, "device": "cpu", "navigation_task": BENCHMARL_NAVIGATION}
    python, why = (None, "--skip-benchmarl") if skip else benchmarl_python()
    if python is None:
        progress(f"benchmarl: skipped ({why})")
        return {**section, "skipped": True, "reason": why, "runs": {}, "comparison": {}}
    section.update(skipped=False, python=str(python), versions=benchmarl_versions(python), runs={})
    for scheme, iterations in sizes.benchmarl_runs:
        progress(f"benchmarl: {scheme}, {iterations} iteration(s) (subprocess) ...")
        run = section["runs"][scheme] = run_benchmarl(python, scheme, iterations, threads)
        progress(f"benchmarl: {scheme}: " + (f"{run['fps']:,.0f} frames/s" if "fps" in run else run["error"]))

    ours = {m["scheme"]: m for m in schemes}
    ours_device = schemes[0]["device"]
    comparison = {}
    for scheme, run in section["runs"].items():
        if "fps" not in run:
            continue
        style = ours[scheme].get("benchmarl_style", {})
        comparison[scheme] = {
            "benchmarl_fps": run["fps"],
            "ours_fps": ours[scheme]["fps"],
            "ratio": ours[scheme]["fps"] / run["fps"],
            "ours_4_iterations_fps": style.get("fps"),
            "ratio_4_iterations": style["fps"] / run["fps"] if style else None,
        }
    reasons = []
    if quick:
        reasons.append("--quick: our sizes are tiny, BenchMARL's are the full ones")
    if ours_device != "cpu":
        reasons.append(f"ours ran on {ours_device}, BenchMARL on cpu")
    section.update(comparison=comparison, comparable=not reasons, not_comparable_because=reasons)
    return section


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------


def work_per_frame(m: dict) -> int:
    """Multiply-adds per frame of the networks the scheme runs (about one per weight it applies).

    shared: the actor runs once per agent; MAPPO's critic (no IDs) once per step, IPPO's once per agent.
    independent / hyper: every agent's own networks run once, i.e. all the weights they generate or hold
    (hyper: the generated networks, whose weights equal an independent scheme's; the hypernetwork itself
    runs once per minibatch, not per frame, and is left out).
    """
    n, counts = m["n_agents"], m["parameters"]
    actor = sum(v for k, v in counts.items() if k.endswith("/actor"))
    critic = sum(v for k, v in counts.items() if k.endswith("/critic"))
    if m["scheme"] == "shared":
        return n * actor + (critic if m["algorithm"] == "mappo" else n * critic)
    return m["independent_equivalent"] if "independent_equivalent" in m else actor + critic


def ratios(rows: dict[str, dict]) -> dict:
    """Time per frame of independent and hyper relative to shared (one measurement each, same n)."""
    shared = rows["shared"]
    rows = dict(rows)
    if "hyper" in rows and "independent" in rows:  # the networks hyper generates are independent's
        rows["hyper"] = {**rows["hyper"], "independent_equivalent": work_per_frame(rows["independent"])}
    values = {scheme: shared["fps"] / rows[scheme]["fps"] for scheme in TARGETS}
    work = {scheme: work_per_frame(rows[scheme]) / work_per_frame(shared) for scheme in TARGETS}
    return {
        "algorithm": shared["algorithm"],
        "n_agents": shared["n_agents"],
        "target_n_agents": LARGE_AGENTS,
        "time_per_frame_vs_shared": values,
        "work_per_frame_vs_shared": work,
        "targets": TARGETS,
        "pass": {scheme: values[scheme] <= target for scheme, target in TARGETS.items()},
        # the networks hyper generates are independent's: what the hypernetwork costs on top of them
        "hyper_vs_independent": {
            "time_per_frame": rows["independent"]["fps"] / rows["hyper"]["fps"],
            "target": HYPER_VS_INDEPENDENT,
            "pass": rows["independent"]["fps"] / rows["hyper"]["fps"] <= HYPER_VS_INDEPENDENT,
        },
    }


def print_report(results: dict) -> None:
    """The results as readable tables."""
    hw, cfg = results["hardware"], results["config"]
    print(
        f"\nHardware: {hw['cpu']} ({hw['cores']} cores, {hw['torch_threads']} torch threads), "
        f"GPU: {hw['gpu']}, device {hw['device']}; torch {hw['torch']}, torchrl {hw['torchrl']}, "
        f"vmas {hw['vmas']}; {hw['date']}"
    )
    s = cfg["sizes"]
    print(
        f"Config ({cfg['mode']}): MAPPO on VMAS navigation, {s['num_envs']} envs, "
        f"{s['frames_per_batch']} frames/iteration, {s['epochs']} epochs x minibatch {s['minibatch_size']}, "
        f"MLP {list(s['hidden_sizes'])} tanh"
    )
    print(
        f"\n{'scheme':<13}{'agents':>7}{'frames/s':>10}{'collect s':>11}{'train s':>9}"
        f"{'overhead s':>12}{'iters':>7}{'parameters':>12}"
    )
    for m in results["schemes"]:
        print(
            f"{m['scheme']:<13}{m['n_agents']:>7}{m['fps']:>10,.0f}{m['collection_s']:>11.2f}"
            f"{m['training_s']:>9.2f}{m['overhead_s']:>12.3f}{m['iterations']:>7}{m['parameters_total']:>12,}"
        )
    agents = sorted({m["n_agents"] for rows in results["scaling"].values() for m in rows})
    print("\nScaling, frames/s " + "".join(f"{f'n={n}':>10}" for n in agents))
    for scheme, rows in results["scaling"].items():
        by_n = {m["n_agents"]: m["fps"] for m in rows}
        print(f"{scheme:<18}" + "".join(f"{by_n[n]:>10,.0f}" for n in agents))

    bench = results["benchmarl"]
    if bench["skipped"]:
        print(f"\nBenchMARL: skipped ({bench['reason']})")
    else:
        print(f"\nBenchMARL {bench['versions'].get('benchmarl', '?')} (cpu), same run:")
        print(f"{'scheme':<13}{'BenchMARL':>11}{'ours':>9}{'ratio':>7}{'ours 4 its':>12}{'ratio':>7}")
        for scheme, c in bench["comparison"].items():
            four = c["ours_4_iterations_fps"]
            print(
                f"{scheme:<13}{c['benchmarl_fps']:>11,.0f}{c['ours_fps']:>9,.0f}{c['ratio']:>7.2f}"
                + (f"{four:>12,.0f}{c['ratio_4_iterations']:>7.2f}" if four else "")
            )
        for scheme, run in bench["runs"].items():
            if "error" in run:
                print(f"{scheme}: BenchMARL failed: {run['error']}")
        print("Caveat: " + bench["caveat"])
        if not bench["comparable"]:
            print("Not comparable: " + "; ".join(bench["not_comparable_because"]))

    for r in results["ratios"].values():
        print(
            f"\n{r['algorithm'].upper()}: time per frame relative to shared at {r['n_agents']} agents "
            f"(targets at {r['target_n_agents']}), beside the inherent work ratio:"
        )
        for scheme, value in r["time_per_frame_vs_shared"].items():
            verdict = "PASS" if r["pass"][scheme] else "FAIL"
            work = r["work_per_frame_vs_shared"][scheme]
            print(
                f"  {scheme:<12} {value:5.2f}  (work {work:4.2f}; "
                f"target <= {r['targets'][scheme]}: {verdict})"
            )
        h = r["hyper_vs_independent"]
        verdict = "PASS" if h["pass"] else "FAIL"
        print(f"  hyper / independent {h['time_per_frame']:5.2f}  (target <= {h['target']}: {verdict})")


def plot(results: dict, path: Path) -> None:
    """Left: frames/s per scheme at 3 agents, BenchMARL alongside. Right: frames/s against agent count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    schemes = results["schemes"]
    comparison = results["benchmarl"]["comparison"]
    series = [
        ("ours (warm-up excluded)", [(i, m["fps"]) for i, m in enumerate(schemes)]),
        (
            f"ours, first {BENCHMARL_ITERATIONS} iterations",
            [(i, m["benchmarl_style"]["fps"]) for i, m in enumerate(schemes) if "benchmarl_style" in m],
        ),
        (
            "BenchMARL (same run)",
            [
                (i, comparison[m["scheme"]]["benchmarl_fps"])
                for i, m in enumerate(schemes)
                if m["scheme"] in comparison
            ],
        ),
    ]
    width = 0.27
    slots = {i: [k for k, (_, points) in enumerate(series) if i in dict(points)] for i in range(len(schemes))}
    for k, (label, points) in enumerate(series):
        if points:  # each scheme's bars centred on its tick
            xs = [x + (slots[x].index(k) - (len(slots[x]) - 1) / 2) * width for x, _ in points]
            left.bar(xs, [y for _, y in points], width, label=label)
    left.set_xticks(range(len(schemes)), [m["scheme"] for m in schemes])
    left.set_ylabel("training frames/s")
    left.set_title(f"Sharing schemes, {schemes[0]['n_agents']} agents")
    left.legend(fontsize=8)

    for scheme, rows in results["scaling"].items():
        right.plot([m["n_agents"] for m in rows], [m["fps"] for m in rows], marker="o", label=scheme)
    agents = sorted({m["n_agents"] for rows in results["scaling"].values() for m in rows})
    right.set_yscale("log")
    right.set_xticks(agents, [str(n) for n in agents])
    right.set_xlabel("number of agents")
    right.set_ylabel("training frames/s (log)")
    right.set_title("Scaling with the number of agents")
    right.legend(fontsize=8)

    hw, sizes = results["hardware"], results["config"]["sizes"]
    device = hw["gpu"] if hw["gpu"] != "none" else f"{hw['cpu']}, {hw['torch_threads']} threads"
    fig.suptitle(
        f"MAPPO on VMAS navigation, {sizes['frames_per_batch']} frames x {sizes['epochs']} epochs per "
        f"iteration ({results['config']['mode']}) - {device}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m marl.benchmarks.throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    parser.add_argument("--skip-benchmarl", action="store_true", help="do not run BenchMARL")
    parser.add_argument("--out", default="results", help="output directory (default: results)")
    parser.add_argument(
        "--ratios-only",
        action="store_true",
        help=f"only the cost ratios at {LARGE_AGENTS} agents (MAPPO and IPPO: shared, independent, hyper), "
        "written to throughput_ratios.json: a check of the hypernetwork's cost in minutes",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per measurement")
    parser.add_argument(
        "--large-iterations",
        type=int,
        default=1,
        help=f"timed iterations at {LARGE_AGENTS}+ agents (an iteration takes about a minute on a CPU)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads, ours and BenchMARL's (default: torch's default; 1 with --quick, where tiny "
        "ops on a busy machine are much slower with more)",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.large_iterations < 1:
        parser.error("--iterations and --large-iterations must be at least 1")
    if args.threads is None and args.quick:
        args.threads = 1
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run every section, write throughput.json and throughput.png, print the tables; returns the results."""
    args = parse_args(argv)
    default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run_ratios(args) if args.ratios_only else run_benchmark(args)
    finally:
        torch.set_num_threads(default_threads)


def run_benchmark(args: argparse.Namespace) -> dict:
    """The benchmark itself, for parsed command-line arguments."""
    sizes = QUICK if args.quick else FULL
    device = _device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    hw = hardware(device, packages=("torchrl", "tensordict", "vmas"))
    mode = "quick" if args.quick else "full"
    progress(f"{mode} benchmark on {hw['cpu']}, GPU: {hw['gpu']}, device {device}")

    def iterations(scheme: str, n_agents: int) -> int:
        if n_agents >= LARGE_AGENTS:
            return args.large_iterations
        if scheme in ("shared", "independent") and n_agents == sizes.scheme_agents:
            return max(args.iterations, BENCHMARL_ITERATIONS - 1)  # so the BenchMARL-style number exists
        return args.iterations

    def run(section: str, scheme: str, n_agents: int) -> dict:
        count = iterations(scheme, n_agents)
        return run_measurement(progress, section, sizes, scheme, n_agents, args.device, count)

    schemes = [run("schemes", scheme, sizes.scheme_agents) for scheme in SCHEMES]
    scaling = {}
    for scheme in SCALING_SCHEMES:
        reuse = next(m for m in schemes if m["scheme"] == scheme)
        scaling[scheme] = [
            reuse if n == sizes.scheme_agents else run("scaling", scheme, n) for n in sizes.scaling_agents
        ]
    largest = sizes.scaling_agents[-1]
    ippo = {
        scheme: run_measurement(
            progress, "ippo", sizes, scheme, largest, args.device, iterations(scheme, largest), "ippo"
        )
        for scheme in SCALING_SCHEMES
    }
    benchmarl = benchmarl_section(progress, sizes, args.skip_benchmarl, schemes, args.quick, args.threads)

    results = {
        "hardware": hw,
        "config": {
            "mode": mode,
            "device": args.device,
            "sizes": asdict(sizes),
            "warmup_iterations": 1,
            "iterations": args.iterations,
            "large_iterations": args.large_iterations,
            "threads": args.threads or "torch default",
            "env_kwargs": SCENARIO_KWARGS,
            "overrides": base_overrides(sizes, sizes.scheme_agents, args.device),
            "sharing_overrides": {s: sharing_overrides(s, sizes.scheme_agents) for s in SCHEMES},
            "fps_definition": "frames / (collection_s + training_s), summed over the timed iterations",
        },
        "schemes": schemes,
        "scaling": scaling,
        "ippo": ippo,
        "benchmarl": benchmarl,
        "ratios": {
            "mappo": ratios({scheme: rows[-1] for scheme, rows in scaling.items()}),
            "ippo": ratios(ippo),
        },
        "total_s": time.perf_counter() - progress.start,
    }
    (out / "throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "throughput.png")
    print_report(results)
    print(f"\nWrote {out / 'throughput.json'} and {out / 'throughput.png'} ({results['total_s']:.0f} s).")
    return results


def _device(name: str):
    """The device `--device` names, or exit with the reason (no traceback)."""
    try:
        return resolve_device(name)
    except MarlError as err:
        raise SystemExit(f"error: {err}") from None


def run_ratios(args: argparse.Namespace) -> dict:
    """Section 5 alone: shared, independent and hyper at the largest agent count, MAPPO and IPPO."""
    sizes = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    hw = hardware(_device(args.device), packages=("torchrl", "tensordict", "vmas"))
    largest = sizes.scaling_agents[-1]
    rows = {
        algorithm: {
            scheme: run_measurement(
                progress, algorithm, sizes, scheme, largest, args.device, args.large_iterations, algorithm
            )
            for scheme in SCALING_SCHEMES
        }
        for algorithm in ("mappo", "ippo")
    }
    results = {
        "hardware": hw,
        "config": {"mode": "quick" if args.quick else "ratios-only", "sizes": asdict(sizes),
                   "large_iterations": args.large_iterations, "threads": args.threads or "torch default"},
        "measurements": rows,
        "ratios": {algorithm: ratios(by_scheme) for algorithm, by_scheme in rows.items()},
        "total_s": time.perf_counter() - progress.start,
    }  # fmt: skip
    (out / "throughput_ratios.json").write_text(json.dumps(results, indent=2) + "\n")
    for algorithm, r in results["ratios"].items():
        shown = {k: round(v, 2) for k, v in r["time_per_frame_vs_shared"].items()}
        print(
            f"{algorithm} at {largest} agents: time per frame vs shared {shown}; hyper vs independent "
            f"{r['hyper_vs_independent']['time_per_frame']:.2f} (target <= {HYPER_VS_INDEPENDENT})"
        )
    return results


if __name__ == "__main__":
    main()

"""Large-batch training speed on VMAS Dispersion against the number of envs, with where the time goes.

    python -m marl.benchmarks.scale [--envs 16 256 1024 4096] [--schemes shared independent hyper hyper_mip]
                                    [--threads 2] [--skip-benchmarl] [--quick] [--out results]

For every env count and scheme it builds the `dispersion_fast` trainer (IPPO, 4 agents, each env stepped
`--steps` times per batch, 16 minibatches per epoch, 4 epochs), runs one warm-up iteration and then timed
ones, and splits each iteration into its phases:

- env: `step_and_maybe_reset` of the batched VMAS env (TorchRL's VmasEnv);
- policy: the actors choosing actions for every env and agent;
- batch: stacking the steps into the [envs, time] batch and summing finished episodes;
- gae: critic values and GAE; update: the PPO epochs;
- logging: what `marl train` does around an iteration (its metrics row in TensorBoard and metrics.jsonl,
  and the in-memory copy of the state that a Ctrl-C would save).

Beside it, at the same env count: VMAS's own step rate with random actions (`vmas.make_env`, no TorchRL, no
policy: the simulator's ceiling), and BenchMARL 1.5.2 IPPO at the same layout (batch, minibatch, epochs,
network) in its own venv (../shared/bench), shared and independent, as its own timers measure it. Frames/s
= frames / (collection + training) seconds of the timed iterations, for both. Writes <out>/scale.json and
<out>/scale.png. `--quick` is a smoke test of the script (tiny sizes; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware
from marl.benchmarks.throughput import Progress, _tail, benchmarl_python, benchmarl_versions
from marl.config import load_config
from marl.ppo import compute_advantages, ppo_update
from marl.run_logger import RunLogger
from marl.training import build_trainer, episode_metrics

MINIBATCHES = 16  # per epoch, at every env count (the preset's 131,072 / 8,192)
BENCHMARL_SCRIPT = Path(__file__).with_name("benchmarl_large_batch.py")
BENCHMARL_TIMEOUT_S = 3600
PHASES = ("env", "policy", "batch", "gae", "update", "logging")


def overrides(scheme: str, num_envs: int, steps: int) -> list[str]:
    frames = num_envs * steps
    return [
        "experiment=dispersion_fast",
        f"sharing={scheme}",
        f"env.num_envs={num_envs}",
        f"experiment.frames_per_batch={frames}",
        f"algorithm.minibatch_size={max(1, frames // MINIBATCHES)}",
        "experiment.progress=false",
        "experiment.device=cpu",
    ]


def timed_iteration(trainer, logger: RunLogger) -> dict[str, float]:
    """One training iteration of `marl train`, written out phase by phase with a clock around each."""
    cfg, collector, model = trainer.cfg, trainer.collector, trainer.model
    seconds = dict.fromkeys(PHASES, 0.0)
    model.eval()
    steps, td = [], collector._td
    with torch.no_grad():
        for _ in range(collector.steps_per_batch):
            start = time.perf_counter()
            td = model.act(td)
            middle = time.perf_counter()
            step, td = collector.env.step_and_maybe_reset(td)
            steps.append(step)
            seconds["policy"] += middle - start
            seconds["env"] += time.perf_counter() - middle
        start = time.perf_counter()
        batch = torch.stack(steps, dim=1)
        episodes = collector._finished_episodes(batch)
        seconds["batch"] = time.perf_counter() - start
    collector._td = td
    model.train()
    start = time.perf_counter()
    stats = compute_advantages(
        batch, model, cfg.algorithm.gamma, cfg.algorithm.gae_lambda, trainer.value_norms
    )
    seconds["gae"] = time.perf_counter() - start
    start = time.perf_counter()
    stats.update(ppo_update(batch, model, trainer.optimizer, cfg.algorithm, trainer.value_norms))
    seconds["update"] = time.perf_counter() - start
    start = time.perf_counter()
    trainer.iteration += 1
    trainer.frames += batch.numel()
    metrics = episode_metrics(episodes, trainer.env_info, prefix="train/")
    metrics.update({f"train/{k}": v for k, v in stats.items()})
    logger.log(trainer.iteration, trainer.frames, metrics)
    trainer.state_dict()  # the last-good copy marl train keeps after every iteration
    seconds["logging"] = time.perf_counter() - start
    return seconds


def measure_ours(scheme: str, num_envs: int, steps: int, iterations: int) -> dict:
    cfg = load_config(overrides(scheme, num_envs, steps))
    trainer = build_trainer(cfg)
    frames = trainer.collector.frames_per_batch
    with tempfile.TemporaryDirectory() as run_dir:
        logger = RunLogger(Path(run_dir))
        timed_iteration(trainer, logger)  # warm-up
        runs = [timed_iteration(trainer, logger) for _ in range(iterations)]
        logger.close()
    total = {phase: sum(r[phase] for r in runs) / iterations for phase in PHASES}
    seconds = sum(total.values())
    return {
        "scheme": scheme,
        "num_envs": num_envs,
        "frames_per_batch": frames,
        "minibatch_size": cfg.algorithm.minibatch_size,
        "iterations": iterations,
        "fps": frames / seconds,
        "seconds_per_iteration": seconds,
        "phases_s": total,
        "phases_share": {phase: value / seconds for phase, value in total.items()},
    }


def vmas_step_rate(num_envs: int, steps: int) -> float:
    """Frames/s of VMAS Dispersion alone: `vmas.make_env` stepped with random discrete actions."""
    import vmas

    env = vmas.make_env(
        "dispersion", num_envs=num_envs, device="cpu", continuous_actions=False, seed=0,
        n_agents=4, n_food=4, share_reward=True, food_radius=0.02, max_steps=100,
    )  # fmt: skip
    env.reset()
    n_actions = env.action_space[0].n

    def run(count: int) -> None:
        for _ in range(count):
            actions = [torch.randint(n_actions, (num_envs,)) for _ in env.agents]
            _, _, dones, _ = env.step(actions)
            if dones.all():  # the usual case: every episode hits max_steps at the same step
                env.reset()
            else:  # VMAS resets one env per call: only the few that ended early
                for index in dones.nonzero().flatten().tolist():
                    env.reset_at(index)

    run(5)
    start = time.perf_counter()
    run(steps)
    return num_envs * steps / (time.perf_counter() - start)


def run_benchmarl(
    python: Path, scheme: str, num_envs: int, steps: int, iterations: int, threads: int
) -> dict:
    frames = num_envs * steps
    command = [
        str(python), str(BENCHMARL_SCRIPT), scheme, str(num_envs), str(steps),
        str(max(1, frames // MINIBATCHES)), "4", str(iterations + 1), str(threads),
    ]  # fmt: skip
    result = {"scheme": scheme, "num_envs": num_envs, "command": " ".join(command)}
    with tempfile.TemporaryDirectory() as cwd:
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=BENCHMARL_TIMEOUT_S, cwd=cwd
            )
        except subprocess.TimeoutExpired:
            return {**result, "error": f"timed out after {BENCHMARL_TIMEOUT_S} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**result, "error": f"exit {proc.returncode}: {_tail(proc.stdout + proc.stderr)}"}
    timers = json.loads(lines[-1])["iterations"][1:]  # the first iteration is its warm-up
    seconds = sum(t["collection_time"] + t["training_time"] for t in timers) / len(timers)
    return {**result, "fps": frames / seconds, "seconds_per_iteration": seconds, "iterations": len(timers)}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    envs = results["config"]["envs"]
    for scheme in results["config"]["schemes"]:
        rows = [r for r in results["ours"] if r["scheme"] == scheme]
        left.plot([r["num_envs"] for r in rows], [r["fps"] for r in rows], "o-", label=f"marl {scheme}")
    for scheme, rows in results["benchmarl"].get("runs", {}).items():
        ok = [r for r in rows if "fps" in r]
        if ok:
            left.plot([r["num_envs"] for r in ok], [r["fps"] for r in ok], "s--", label=f"BenchMARL {scheme}")
    left.plot(envs, [results["vmas"][str(n)] for n in envs], "k:", label="VMAS alone (random actions)")
    left.set(xscale="log", yscale="log", xlabel="envs", ylabel="frames/s",
             title="IPPO on Dispersion: training frames/s")  # fmt: skip
    left.set_xticks(envs, [str(n) for n in envs])
    left.minorticks_off()
    left.legend(fontsize=8)
    scheme = results["config"]["schemes"][0]
    rows = [r for r in results["ours"] if r["scheme"] == scheme]
    bottom = [0.0] * len(rows)
    labels = [str(r["num_envs"]) for r in rows]
    for phase in PHASES:
        share = [r["phases_share"][phase] for r in rows]
        right.bar(labels, share, bottom=bottom, label=phase)
        bottom = [b + s for b, s in zip(bottom, share)]
    right.set(xlabel="envs", ylabel="share of an iteration", title=f"where the time goes ({scheme})")
    right.legend(fontsize=8)
    fig.suptitle(f"{results['hardware']['cpu']}, {results['config']['threads']} torch threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 256, 1024, 4096])
    parser.add_argument("--schemes", nargs="+", default=["shared", "independent", "hyper", "hyper_mip"])
    parser.add_argument("--steps", type=int, default=128, help="steps per env per batch")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--benchmarl-schemes", nargs="*", default=["shared", "independent"])
    parser.add_argument("--skip-benchmarl", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of this script")
    parser.add_argument(
        "--vmas-only",
        action="store_true",
        help="re-measure only VMAS's own step rate into an existing <out>/scale.json and redraw its plot",
    )
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.vmas_only:
        return remeasure_vmas(Path(args.out), args.threads)
    if args.quick:
        args.envs, args.steps, args.iterations, args.skip_benchmarl = [4, 8], 8, 1, True
    torch.set_num_threads(args.threads)
    progress = Progress()
    results: dict = {
        "hardware": hardware(packages=("torch", "torchrl", "tensordict", "vmas")),
        "config": {
            "experiment": "dispersion_fast",
            "envs": args.envs,
            "schemes": args.schemes,
            "steps_per_env": args.steps,
            "minibatches_per_epoch": MINIBATCHES,
            "epochs": 4,
            "iterations": args.iterations,
            "threads": args.threads,
            "quick": args.quick,
            "fps_definition": "frames / (collection + training seconds) of the timed iterations",
        },  # fmt: skip
        "ours": [],
        "vmas": {},
        "benchmarl": {},
    }
    for num_envs in args.envs:
        results["vmas"][str(num_envs)] = vmas_step_rate(num_envs, max(args.steps, 20))
        progress(f"VMAS alone, {num_envs} envs: {results['vmas'][str(num_envs)]:,.0f} frames/s")
        for scheme in args.schemes:
            row = measure_ours(scheme, num_envs, args.steps, args.iterations)
            results["ours"].append(row)
            shares = ", ".join(f"{k} {v:.0%}" for k, v in row["phases_share"].items())
            progress(f"marl {scheme}, {num_envs} envs: {row['fps']:,.0f} frames/s ({shares})")
    python, why = (None, "--skip-benchmarl") if args.skip_benchmarl else benchmarl_python()
    if python is None:
        results["benchmarl"] = {"skipped": True, "reason": why}
        progress(f"BenchMARL skipped: {why}")
    else:
        runs: dict[str, list] = {}
        for scheme in args.benchmarl_schemes:
            for num_envs in args.envs:
                row = run_benchmarl(python, scheme, num_envs, args.steps, args.iterations, args.threads)
                runs.setdefault(scheme, []).append(row)
                progress(f"BenchMARL {scheme}, {num_envs} envs: {row.get('fps', row.get('error'))}")
        ratios = {}
        for scheme, rows in runs.items():
            for row in rows:
                ours = [
                    r for r in results["ours"] if r["scheme"] == scheme and r["num_envs"] == row["num_envs"]
                ]
                if ours and "fps" in row:
                    ratios[f"{scheme}/{row['num_envs']}"] = ours[0]["fps"] / row["fps"]
        results["benchmarl"] = {
            "versions": benchmarl_versions(python),
            "runs": runs,
            "ratio_ours_to_theirs": ratios,
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out / "scale.png")
    print(f"{'envs':>6} {'scheme':>12} {'frames/s':>10} {'VMAS alone':>11}  phases")
    for row in results["ours"]:
        shares = " ".join(f"{k}={v:.0%}" for k, v in row["phases_share"].items())
        vmas_fps = results["vmas"][str(row["num_envs"])]
        print(f"{row['num_envs']:>6} {row['scheme']:>12} {row['fps']:>10,.0f} {vmas_fps:>11,.0f}  {shares}")
    for key, ratio in results["benchmarl"].get("ratio_ours_to_theirs", {}).items():
        print(f"ours / BenchMARL {key}: {ratio:.2f}x")
    print(f"Wrote {out / 'scale.json'} and {out / 'scale.png'}")
    return 0


def remeasure_vmas(out: Path, threads: int) -> int:
    """Replace the VMAS-alone rates of `out/scale.json` (at its env counts and steps) and redraw the plot."""
    path = out / "scale.json"
    results = json.loads(path.read_text())
    torch.set_num_threads(threads)
    steps = max(results["config"]["steps_per_env"], 20)
    for num_envs in results["config"]["envs"]:
        results["vmas"][str(num_envs)] = vmas_step_rate(num_envs, steps)
        print(f"VMAS alone, {num_envs} envs: {results['vmas'][str(num_envs)]:,.0f} frames/s", flush=True)
    results["vmas_hardware"] = hardware(packages=("torch", "vmas"))
    path.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out / "scale.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

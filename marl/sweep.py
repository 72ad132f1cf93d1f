"""`marl sweep`: train every combination of a grid of config choices, N processes at a time, resumably.

A sweep file (YAML, e.g. configs/sweeps/dispersion.yaml):

    name: dispersion              # runs go to <runs_dir>/<name>/<label>-<timestamp>
    runs_dir: results/sweeps      # optional
    parallel: 2                   # training processes at once (torch threads are split between them)
    base: [experiment=hypermarl_dispersion]     # overrides every run gets
    grid:                         # every combination of these is one run
      algorithm: [ippo, mappo]
      sharing: [shared, independent, hyper]
      experiment.seed: [0, 1, 2]

Every run is an ordinary `marl train` subprocess with its own log file. Running the same sweep again skips
finished runs (they have a summary.json) and resumes unfinished ones from their last checkpoint, so Ctrl-C
(which every run answers by saving a checkpoint) or a lost machine costs at most one checkpoint interval.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from marl.config import config_to_dict, load_config, read_yaml, resolve_config_path
from marl.errors import ConfigError, MarlError

SWEEP_KEYS = {"name", "runs_dir", "parallel", "base", "grid"}


@dataclass
class Sweep:
    name: str
    grid: dict[str, list]
    base: list[str] = field(default_factory=list)
    parallel: int = 1
    runs_dir: str = "results/sweeps"

    @property
    def directory(self) -> Path:
        return Path(self.runs_dir) / self.name


@dataclass
class SweepRun:
    label: str  # e.g. "algorithm=ippo,sharing=hyper,seed=0"
    overrides: list[str]


def load_sweep(path: str | Path, extra: list[str] = ()) -> Sweep:
    """Read and validate a sweep file; `extra` overrides are appended to its `base`."""
    path = resolve_config_path(path, "sweeps")
    data = read_yaml(path)
    unknown = set(data) - SWEEP_KEYS
    if unknown or "name" not in data or "grid" not in data:
        raise ConfigError(
            f"{path}: a sweep file has the keys {sorted(SWEEP_KEYS)} (name and grid required); "
            f"got {sorted(data)}."
        )
    grid = data["grid"]
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: grid must map each config key to a non-empty list of values.")
    sweep = Sweep(
        name=str(data["name"]),
        grid={str(k): list(v) for k, v in grid.items()},
        base=[*map(str, data.get("base") or []), *extra],
        parallel=int(data.get("parallel", 1)),
        runs_dir=str(data.get("runs_dir", "results/sweeps")),
    )
    if sweep.parallel < 1:
        raise ConfigError(f"{path}: parallel must be >= 1, got {sweep.parallel}.")
    configs = {}
    for run in expand(sweep):  # fail before anything starts if any combination is an invalid config
        try:
            configs[run.label] = load_config(run.overrides)
        except ConfigError as error:
            raise ConfigError(f"Sweep {sweep.name}, run {run.label}: {error}") from None
    check_envs_build(sweep.name, configs)
    return sweep


def check_envs_build(name: str, configs: dict) -> None:
    """Build each distinct environment of the sweep `name` once ({label: config}, one env each), so that an
    env setting the scenario rejects stops the sweep now instead of failing every run after it starts."""
    from marl.envs.factory import make_env

    seen = set()
    for label, cfg in configs.items():
        key = repr(sorted(config_to_dict(cfg)["env"].items()))
        if key in seen:
            continue
        seen.add(key)
        try:
            make_env(cfg.env, "cpu", 0, num_envs=1).close()
        except Exception as error:  # noqa: BLE001 - whatever the env raises, say which run and why
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(
                f"Sweep {name}, run {label}: the environment cannot be built with these settings "
                f"({type(error).__name__}: {message}). Fix the env settings in the sweep's base or grid."
            ) from None


def expand(sweep: Sweep) -> list[SweepRun]:
    """Every combination of the grid, in order (the last key varies fastest)."""
    runs = []
    keys = list(sweep.grid)
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        pairs = [(k, _yaml_value(v)) for k, v in zip(keys, values, strict=True)]
        label = ",".join(f"{k.split('.')[-1]}={v.replace('/', '-')}" for k, v in pairs)
        runs.append(SweepRun(label, [*sweep.base, *(f"{k}={v}" for k, v in pairs)]))
    return runs


def run_status(sweep: Sweep, run: SweepRun) -> tuple[str, Path | None]:
    """("done" | "partial" | "new", the run's directory if it has one)."""
    return latest_run(sweep.directory, run.label)


def latest_run(directory: Path, label: str) -> tuple[str, Path | None]:
    """The newest run named `label` under `directory` (runs are `<label>-<timestamp>`): ("done" if it
    finished, "partial" if it has a checkpoint to resume from, else "new"; its directory or None)."""
    dirs = sorted(Path(directory).glob(f"{glob_escape(label)}-*"))
    if not dirs:
        return "new", None
    newest = dirs[-1]
    if (newest / "summary.json").exists():
        return "done", newest
    return ("partial", newest) if any((newest / "checkpoints").glob("*.pt")) else ("new", None)


def run_sweep(sweep: Sweep, dry_run: bool = False) -> int:
    """Train all runs of the sweep that are not finished; returns the number of failed runs."""
    runs = expand(sweep)
    threads = max(1, (os.cpu_count() or 1) // sweep.parallel)
    todo = []
    for run in runs:
        status, directory = run_status(sweep, run)
        command = [sys.executable, "-m", "marl", "train"]
        if status == "partial":
            command += [f"resume={directory}"]
        else:
            command += [*run.overrides, f"experiment.name={run.label}"]
            command += [f"experiment.runs_dir={sweep.directory}"]
        if not any(o.startswith("experiment.threads=") for o in run.overrides):
            command += [f"experiment.threads={threads}", "experiment.progress=false"]
        else:
            command += ["experiment.progress=false"]
        print(f"  {status:<8}{run.label}")
        if status != "done":
            todo.append((run, command))
    print(
        f"Sweep {sweep.name}: {len(runs)} runs, {len(todo)} to train, {sweep.parallel} at a time, "
        f"{threads} torch threads each -> {sweep.directory}"
    )
    if dry_run or not todo:
        return 0

    sweep.directory.mkdir(parents=True, exist_ok=True)
    logs = sweep.directory / "logs"
    logs.mkdir(exist_ok=True)
    running: list[tuple[SweepRun, subprocess.Popen, float]] = []
    failed, finished = [], 0
    from marl.runs import stop_signals_interrupt

    with stop_signals_interrupt():
        return _run_all(todo, running, failed, finished, logs, sweep.parallel)


def _run_all(todo, running, failed, finished, logs, parallel) -> int:
    """Keep `parallel` runs going until all are done; Ctrl-C or SIGTERM stops every run with a checkpoint."""
    try:
        while todo or running:
            while todo and len(running) < parallel:
                run, command = todo.pop(0)
                with open(logs / f"{run.label}.log", "a") as log:
                    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                running.append((run, process, time.time()))
            time.sleep(1.0)
            for item in list(running):
                run, process, started = item
                if process.poll() is None:
                    continue
                running.remove(item)
                finished += 1
                minutes = (time.time() - started) / 60
                if process.returncode in (130, -signal.SIGINT):  # the run was interrupted and checkpointed
                    raise KeyboardInterrupt
                if process.returncode:
                    failed.append(run.label)
                    print(
                        f"[{finished}/{finished + len(todo) + len(running)}] FAILED {run.label} "
                        f"(exit {process.returncode}, {minutes:.1f} min); see {logs / (run.label + '.log')}"
                    )
                else:
                    print(
                        f"[{finished}/{finished + len(todo) + len(running)}] done {run.label} "
                        f"({minutes:.1f} min)"
                    )
    except KeyboardInterrupt:
        for _, process, _ in running:  # each run saves a checkpoint and exits (repeat signals are ignored)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process, _ in running:
            process.wait()
        raise MarlError(
            "Sweep interrupted; every running run saved a checkpoint. Run the same `marl sweep` command "
            "again to continue: finished runs are skipped and the others resume."
        ) from None
    if failed:
        print(f"{len(failed)} runs failed: {', '.join(failed)}")
    return len(failed)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "[]*?" else c for c in text)


def _yaml_value(value) -> str:
    """A grid value as it would be written on the command line (YAML flow style for lists)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()

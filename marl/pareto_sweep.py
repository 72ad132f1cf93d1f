"""`marl pareto`: evaluate a set of teams on two (or more) objectives, all minimised, and report the Pareto
front, its hypervolume with seed intervals, TensorBoard HParams, a figure and a table.

A Pareto file (YAML, e.g. configs/pareto/patrol_search_heuristics.yaml):

    name: patrol_search_heuristics
    out: results/patrol_search/heuristics   # table.md, front.png, summary.json (curated outputs)
    runs_dir: results/pareto                # per-member results, trained runs, TensorBoard logs
    base: [env=vmas/patrol_search]          # overrides every member gets
    grid:                                   # a grid, or a list of grids whose members are pooled
      env.map: [open, rooms]
      env.n_searchers: [0, 1, 2, 3, 4, 5, 6]
      policy: [heuristic:fixed_roles/pso]   # heuristic:<team>[/<search>], or `learned` (marl train first)
    seeds: [0, 1, 2]            # a heuristic's random stream, or a learned member's training seed
    episodes: 64                # held-out evaluation episodes, the same for every member (eval_seed)
    eval_seed: 20261124
    objectives: [info/mean_idleness, info/time_to_find]   # what run_episodes reports, all minimised
    reference: [150, 190]       # hypervolume reference point, one value per objective
    bounds: [[0, null], [0, 190]]   # each objective's range [low, high] (null: unbounded), for intervals
    front_per: [env.map]        # one front per value of these keys (members on different maps never compete)
    compare_by: [policy]        # also the hypervolume of each value's members alone (which family wins)
    workers: 2                  # Ray tasks at once (0: in this process); ray.address joins a cluster

Every (member, seed) is one task: a heuristic is evaluated (first: seconds each); a learned member is
trained with `marl train` (its run goes to `<runs_dir>/<name>/runs`, resumable) and its deterministic policy
then evaluated. Each result joins a ledger beside the outputs as it arrives (`<out>/results.jsonl`, one line
per member and seed: its objectives, team return, frames, seconds and held-out episodes), so running the
command again only does what is missing. The ledger is small and belongs with the results: committed, it
lets a study of many hours go on from a fresh clone on another machine (only the training runs of
unfinished members are lost there).

Intervals (objectives and hypervolumes) are 95% over seeds, built within each objective's `bounds` (a
hypervolume is >= 0), so they never show impossible values (`marl.pareto.interval`). The figure is drawn
by `marl.pareto_plot`.

Without the ledger (an older study that committed only its summary), the analysis, figure, table and
TensorBoard logs can be rebuilt from the per-seed values in an earlier `summary.json`:

    python -m marl.pareto_sweep configs/pareto/patrol_search_learned.yaml --from-summary
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from marl.agents.heuristics import check_heuristic, is_heuristic
from marl.config import load_config, parse_value, read_yaml, resolve_config_path
from marl.errors import ConfigError, MarlError
from marl.pareto import (
    balance,
    contributions,
    front_distance,
    front_ranks,
    hypervolume,
    interval,
    non_dominated,
    seeds_description,
    with_interval,
)
from marl.pareto_plot import member_family
from marl.sweep import check_envs_build

PARETO_KEYS = {
    "name",
    "out",
    "runs_dir",
    "base",
    "grid",
    "seeds",
    "episodes",
    "eval_seed",
    "objectives",
    "reference",
    "front_per",
    "compare_by",
    "workers",
    "title",
    "bounds",
}
LEARNED = "learned"
CANCEL_WAIT_S = 120  # how long an interrupted sweep waits for its training members to checkpoint
HAND_DESIGNED = "hand-designed"  # the hypervolume family of a front group's hand-designed members alone


@dataclass
class ParetoSweep:
    name: str
    grids: list[dict[str, list]]
    objectives: list[str]
    reference: list[float]
    out: str
    base: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    episodes: int = 64
    eval_seed: int = 20261124
    front_per: list[str] = field(default_factory=list)
    compare_by: list[str] = field(default_factory=list)
    workers: int = 0
    runs_dir: str = "results/pareto"
    title: str | None = None
    bounds: list[list[float | None]] | None = None  # per objective [low, high]; None: unbounded
    ledger: str = ""  # finished (member, seed) results, JSON lines; default <out>/results.jsonl

    def __post_init__(self) -> None:
        self.ledger = self.ledger or str(Path(self.out) / "results.jsonl")  # stays there when --out moves out

    @property
    def directory(self) -> Path:
        return Path(self.runs_dir) / self.name


@dataclass
class Member:
    label: str  # e.g. "map=open,n_searchers=2,policy=heuristic:fixed_roles-pso"
    choices: dict  # grid key -> value
    overrides: list[str]  # config overrides (the policy key excluded)
    policy: str  # heuristic:<...> or learned


def load_pareto(path: str | Path, extra: list[str] = ()) -> ParetoSweep:
    """Read and validate a Pareto file; every member's config is checked before anything runs."""
    path = resolve_config_path(path, "pareto")
    data = read_yaml(path)
    unknown = set(data) - PARETO_KEYS
    missing = {"name", "grid", "objectives", "reference", "out"} - set(data)
    if unknown or missing:
        raise ConfigError(
            f"{path}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}. A Pareto file has the "
            f"keys {sorted(PARETO_KEYS)} (see marl/pareto_sweep.py)."
        )
    grids = data["grid"] if isinstance(data["grid"], list) else [data["grid"]]
    for grid in grids:
        if (
            not isinstance(grid, dict)
            or not grid
            or not all(isinstance(v, list) and v for v in grid.values())
        ):
            raise ConfigError(f"{path}: each grid must map config keys to non-empty lists of values.")
    sweep = ParetoSweep(
        name=str(data["name"]),
        grids=grids,
        objectives=[str(o) for o in data["objectives"]],
        reference=[float(r) for r in data["reference"]],
        out=str(data["out"]),
        base=[*map(str, data.get("base") or []), *extra],
        seeds=[int(s) for s in data.get("seeds", [0, 1, 2])],
        episodes=int(data.get("episodes", 64)),
        eval_seed=int(data.get("eval_seed", 20261124)),
        front_per=list(data.get("front_per") or []),
        compare_by=list(data.get("compare_by") or []),
        workers=int(data.get("workers", 0)),
        runs_dir=str(data.get("runs_dir", "results/pareto")),
        title=data.get("title"),
        bounds=_bounds(path, data.get("bounds"), len(data["objectives"])),
    )
    if len(sweep.objectives) < 2 or len(sweep.reference) != len(sweep.objectives):
        raise ConfigError(
            f"{path}: need at least two objectives and one reference value per objective; got objectives "
            f"{sweep.objectives} and reference {sweep.reference}."
        )
    if sweep.episodes < 1 or sweep.workers < 0 or not sweep.seeds:
        raise ConfigError(f"{path}: episodes must be >= 1, workers >= 0 and seeds non-empty.")
    members = check_keys(sweep)
    configs = {}
    for member in members:
        try:
            configs[member.label] = cfg = load_config(member.overrides)
            if is_heuristic(member.policy):
                check_heuristic(member.policy, cfg.env.name)
            elif member.policy != LEARNED:
                raise ConfigError(
                    f"policy must be heuristic:<team>[/<search>] or {LEARNED!r}, got {member.policy!r}."
                )
        except ConfigError as error:
            raise ConfigError(f"Pareto sweep {sweep.name}, member {member.label}: {error}") from None
    check_envs_build(sweep.name, configs)
    return sweep


def _bounds(path, bounds, n_objectives: int) -> list[list[float | None]] | None:
    """Each objective's [low, high] range (either may be null), checked."""
    if bounds is None:
        return None
    if (
        not isinstance(bounds, list)
        or len(bounds) != n_objectives
        or not all(isinstance(b, list) and len(b) == 2 for b in bounds)
        or not all(v is None or isinstance(v, int | float) for b in bounds for v in b)
        or any(b[0] is not None and b[1] is not None and b[0] >= b[1] for b in bounds)
    ):
        raise ConfigError(
            f"{path}: bounds must give one [low, high] range per objective (null for no bound, low < high), "
            f"e.g. [[0, null], [0, 190]] for a non-negative idleness and a time of at most 190 steps; got "
            f"{bounds}."
        )
    return [[None if v is None else float(v) for v in b] for b in bounds]


def check_keys(sweep: ParetoSweep) -> list[Member]:
    """The sweep's members, after checking that front_per and compare_by name grid keys."""
    members = expand(sweep)
    keys = {k for m in members for k in m.choices}
    for key in [*sweep.front_per, *sweep.compare_by]:
        if key not in keys:
            raise ConfigError(
                f"Pareto sweep {sweep.name}: front_per/compare_by key {key!r} is not a grid key "
                f"({sorted(keys)})."
            )
    return members


def expand(sweep: ParetoSweep) -> list[Member]:
    """Every member of every grid, in order (the last key varies fastest); duplicates are dropped."""
    from marl.sweep import _yaml_value

    members: dict[str, Member] = {}
    for grid in sweep.grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            choices = dict(zip(keys, values, strict=True))
            policy = str(choices.get("policy", LEARNED))
            label = ",".join(f"{k.split('.')[-1]}={str(v).replace('/', '-')}" for k, v in choices.items())
            overrides = [*sweep.base, *(f"{k}={_yaml_value(v)}" for k, v in choices.items() if k != "policy")]
            members.setdefault(label, Member(label, choices, overrides, policy))
    return list(members.values())


def run_member(sweep: ParetoSweep, member: Member, seed: int) -> dict:
    """Evaluate (after training, for a learned member) one member with one seed on the held-out episodes;
    -> its objectives, team return, and the frames and seconds it cost (a learned member's seconds: its
    run's collection and update time over every session that trained it, from its checkpoint, so a run
    resumed across sessions counts all of them, plus this evaluation)."""
    import torch

    from marl.agents.heuristics import make_heuristic
    from marl.collector import heldout_episodes
    from marl.envs.factory import describe_env, make_env
    from marl.runs import untouched_rng
    from marl.training import episode_metrics, evaluation_episodes

    torch.set_num_threads(1)
    started = time.time()
    frames = 0
    if member.policy == LEARNED:
        from marl.evaluation import load_trained

        run_dir = train_member(sweep, member, seed)
        trainer, state, _ = load_trained(run_dir, device="cpu")
        frames = state["frames"]
        started = time.time() - state["wall_time"]  # count its training time, not this call's
        result = evaluation_episodes(trainer, sweep.episodes, deterministic=True, seed=sweep.eval_seed)
        env_info = trainer.env_info
    else:
        cfg = load_config(member.overrides)
        with untouched_rng("cpu"):
            env = make_env(cfg.env, "cpu", sweep.eval_seed, num_envs=sweep.episodes, global_state=False)
        env_info = describe_env(env, cfg.env.name, cfg.env.max_steps, cfg.env.kwargs)
        result = heldout_episodes(
            env, env_info, make_heuristic(member.policy, env_info, seed), sweep.eval_seed
        )
        env.close()
    metrics = episode_metrics(result, env_info, prefix="")
    missing = [o for o in sweep.objectives if o not in metrics]
    if missing:
        raise MarlError(
            f"Member {member.label}: the evaluation reports no {missing}; it reports {sorted(metrics)}."
        )
    return {
        "member": member.label,
        "seed": seed,
        "objectives": [metrics[o] for o in sweep.objectives],
        "return_mean": metrics["return_mean"],
        "train_frames": frames,
        "seconds": time.time() - started,
        "episodes": sweep.episodes,
        "eval_seed": sweep.eval_seed,
    }


def train_member(sweep: ParetoSweep, member: Member, seed: int) -> Path:
    """Train a learned member with `marl train` (or finish an interrupted run); -> its run directory."""
    from marl.sweep import latest_run
    from marl.training import train

    runs = sweep.directory / "runs"
    label = f"{member.label},seed={seed}"
    status, directory = latest_run(runs, label)
    if status == "done":
        return directory
    cfg = load_config(
        [
            *member.overrides,
            f"experiment.seed={seed}",
            f"experiment.name={label}",
            f"experiment.runs_dir={runs}",
            "experiment.progress=false",
            "experiment.threads=1",
        ]
    )
    return train(cfg, resume=directory if status == "partial" else None)


def matching(members: list[Member], settings: list[str]) -> set[str]:
    """The labels of the members whose grid choices match every `key=value` of `settings` (a value parsed
    as an override is, or as written: env.n_sensing=3, algorithm.lr=5.0e-4, policy=learned)."""
    keys = {k for m in members for k in m.choices}
    wanted = {}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or key not in keys:
            raise ConfigError(
                f"{setting!r}: give a grid key and one of its values as key=value, e.g. env.map=rooms; the "
                f"grid keys are {sorted(keys)}."
            )
        wanted[key] = (value, parse_value(key, value))  # as written, or as the grid's YAML reads it
    chosen = {
        m.label
        for m in members
        if all(k in m.choices and m.choices[k] in values for k, values in wanted.items())
    }
    if not chosen:
        raise ConfigError(f"No member has all of {settings}: `marl pareto FILE --dry-run` lists the members.")
    return chosen


def seeds_status(sweep: ParetoSweep, member: Member, finished: dict) -> str:
    """Where each seed of a member stands: in the ledger, trained part way (its last checkpoint), or not
    started; e.g. "seed 0 done, seed 1 at 5.3M frames, seed 2 to run"."""
    from marl.run_logger import read_metrics
    from marl.sweep import latest_run

    status = []
    for seed in sweep.seeds:
        if (member.label, seed) in finished:
            status.append(f"seed {seed} done")
            continue
        state, directory = "new", None
        if member.policy == LEARNED:
            state, directory = latest_run(sweep.directory / "runs", f"{member.label},seed={seed}")
        if state != "partial":
            status.append(f"seed {seed} {'to run' if state == 'new' else 'trained, to evaluate'}")
            continue
        iterations = [p.stem.removeprefix("iter_") for p in (directory / "checkpoints").glob("iter_*.pt")]
        saved = max((int(i) for i in iterations if i.isdigit()), default=None)
        frames = next((r["frames"] for r in read_metrics(directory) if r.get("iteration") == saved), None)
        status.append(f"seed {seed} at {f'{frames / 1e6:.1f}M frames' if frames else 'a checkpoint'}")
    return ", ".join(status)


def run_pareto(
    sweep: ParetoSweep,
    ray_address: str | None = None,
    dry_run: bool = False,
    cached_only: bool = False,
    first: list[str] = (),
) -> dict | None:
    """Run every (member, seed) task the ledger lacks, then analyse and write the outputs. `cached_only`:
    run nothing and report the members whose seeds are all in the ledger (an interim look at a long sweep);
    the others are listed in the summary and table as left out. `first` (key=value settings): the learned
    members that match them train all their seeds before the other learned members."""
    members = expand(sweep)
    finished = load_results(sweep)
    prior = matching(members, list(first)) if first else set()
    # hand-designed members first (seconds each: an interim look at a long sweep has their whole front),
    # then the learned ones seed by seed (an interrupted sweep has every member's first seeds before any
    # member's last), those matching `first` before the others
    tasks = [(m, s) for s in sweep.seeds for m in members if (m.label, s) not in finished]
    tasks.sort(key=lambda task: (task[0].policy == LEARNED, task[0].label not in prior))  # stable
    print(
        f"Pareto sweep {sweep.name}: {len(members)} members x {len(sweep.seeds)} seeds, {len(tasks)} to run "
        f"(hand-designed first, then {sum(m.policy == LEARNED for m in members)} learned members train), "
        f"{'nothing run (--cached-only)' if cached_only else f'{sweep.workers or 0} Ray workers'} "
        f"-> {sweep.out}"
    )
    if dry_run:
        for member in members:
            print(f"  {member.label}: {seeds_status(sweep, member, finished)}")
        for number, (member, seed) in enumerate(tasks[: max(sweep.workers, 1)], start=1):
            print(f"next ({number}): {member.label} seed {seed}")
        return None
    if cached_only:
        unfinished = {m.label for m, _ in tasks}
        left_out = [m for m in members if m.label in unfinished]
        members = [m for m in members if m.label not in unfinished]
        if not members:
            raise MarlError(
                f"No member of {sweep.name} has all of seeds {sweep.seeds} in {sweep.ledger}: run "
                "`marl pareto` on the file without --cached-only first (or pick finished seeds with --seeds)."
            )
    else:
        write_ledger(sweep, finished)  # results of an earlier cache (per-member files) join the ledger
        _run_tasks(sweep, tasks, finished, ray_address)
        left_out = []
    results = [finished[m.label, s] for m in members for s in sweep.seeds]
    summary = analyse(sweep, members, results)
    summary["left_out"] = [m.label for m in left_out]
    write_outputs(sweep, members, summary)
    return summary


def load_results(sweep: ParetoSweep) -> dict[tuple[str, int], dict]:
    """The finished (member, seed) results: the ledger's lines, and the per-member JSON files that sweeps
    cached under `<runs_dir>/<name>/results` before the ledger existed. Results evaluated on other held-out
    episodes than the file's are an error (they would not be comparable)."""
    finished: dict[tuple[str, int], dict] = {}
    ledger = Path(sweep.ledger)
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    earlier = sorted((sweep.directory / "results").glob("*.json"))
    for where, text in [
        *((f"{ledger}:{i + 1}", t) for i, t in enumerate(lines)),
        *((str(p), p.read_text()) for p in earlier),
    ]:
        if not text.strip():
            continue
        result = json.loads(text)
        evaluated = (result.get("episodes", sweep.episodes), result.get("eval_seed", sweep.eval_seed))
        if evaluated != (sweep.episodes, sweep.eval_seed):
            raise MarlError(
                f"{where}: {result['member']} seed {result['seed']} was evaluated on {evaluated[0]} episodes "
                f"from seed {evaluated[1]}, the file asks for {sweep.episodes} from {sweep.eval_seed}. Move "
                f"{ledger} away (or give the sweep another name and out) to evaluate every member anew."
            )
        finished.setdefault((result["member"], result["seed"]), result)
    return finished


def write_ledger(sweep: ParetoSweep, finished: dict[tuple[str, int], dict]) -> None:
    """Rewrite the ledger with every finished result, in a stable order (seed, then member)."""
    ledger = Path(sweep.ledger)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(finished.values(), key=lambda r: (r["seed"], r["member"]))
    ledger.write_text("".join(json.dumps(r) + "\n" for r in ordered))


def _run_member_cancellable(sweep: ParetoSweep, member: Member, seed: int) -> dict | None:
    """`run_member` on a Ray worker. Ray cancels a running task by interrupting the worker's main thread,
    which does nothing where SIGINT is ignored (a sweep started in the background hands that on to its
    workers): Python's own handler is put back, so a cancelled member stops like a Ctrl-C and a training one
    saves a checkpoint of its last iteration. Its exit (SystemExit 130, which would end the Ray worker
    process and have Ray report an "unrecoverable failure" per member) becomes an ordinary return of None:
    the worker lives on to be shut down with the others."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_member(sweep, member, seed)
    except (KeyboardInterrupt, SystemExit) as stop:
        if not _stopped(stop):
            raise
        return None


def _stopped(stop: BaseException) -> bool:
    """Whether `stop` is a member stopping on a signal: Ctrl-C itself, or the exit 130 of a training run
    that saved a checkpoint of its last iteration (any other exit is a real failure)."""
    return not isinstance(stop, SystemExit) or stop.code == 130


def _run_tasks(sweep: ParetoSweep, tasks: list, finished: dict, ray_address: str | None) -> None:
    """In this process (workers: 0) or as Ray tasks, one CPU each; each result joins `finished` and the
    ledger as it arrives."""
    from tqdm.auto import tqdm

    # one bar for the learned members (training runs: their pace gives a true time left) and one for the
    # hand-designed ones (seconds each), so that neither's pace sets the other's estimate
    n_learned = sum(member.policy == LEARNED for member, _ in tasks)
    kinds = [(True, "train+evaluate", n_learned), (False, "evaluate", len(tasks) - n_learned)]
    bars = {
        learned: tqdm(total=total, desc=f"{sweep.name} {kind}", unit="run", position=i, disable=not total)
        for i, (learned, kind, total) in enumerate(kinds)
    }

    def save(result: dict, member: Member) -> None:
        finished[member.label, result["seed"]] = result
        with open(sweep.ledger, "a") as ledger:  # one line at a time: an interrupted sweep keeps the rest
            ledger.write(json.dumps(result) + "\n")
        bar = bars[member.policy == LEARNED]
        bar.update(1)
        bar.set_postfix_str(f"{member.label} seed {result['seed']}: {result['seconds']:.0f}s")

    failures: list[str] = []

    def settle(member: Member, seed: int, outcome: Callable[[], dict]) -> None:
        """Cache the member's result. A member that fails (a training run that diverged, a crashed worker)
        is reported at the end and the others go on, so one bad member does not stop a sweep of hours."""
        try:
            result = outcome()
            if result is None:  # stopped on its worker (a signal there): it continues when the sweep is rerun
                raise MarlError("stopped before it finished; rerunning the sweep continues it")
        except Exception as error:
            cause = getattr(error, "cause", None) or error  # a Ray task error carries the member's own
            failures.append(f"{member.label} seed {seed}: {type(cause).__name__}: {cause}")
            bars[member.policy == LEARNED].update(1)
            print(f"\n{sweep.name}: {failures[-1]}\n(the other members go on)", flush=True)
        else:
            save(result, member)

    def close_bars() -> None:
        for bar in bars.values():
            bar.close()

    from marl.runs import stop_signals_interrupt

    if sweep.workers == 0 or not tasks:
        try:
            with stop_signals_interrupt():  # a training member saves its last iteration and exits (130)
                for member, seed in tasks:
                    settle(member, seed, lambda: run_member(sweep, member, seed))  # noqa: B023 - called at once
        except (KeyboardInterrupt, SystemExit) as stop:  # exit 130: a training member saved its checkpoint
            if not _stopped(stop):
                raise
            raise MarlError(_interrupted(sweep)) from None
        finally:
            close_bars()
        _raise_failures(sweep, failures)
        return
    import ray

    from marl.config import RayConfig
    from marl.ray_runtime import start_ray, stop_ray

    started = start_ray(RayConfig(address=ray_address, num_cpus=sweep.workers), sweep.workers)
    pending: dict = {}
    try:
        with stop_signals_interrupt():  # Ctrl-C or SIGTERM: every running member saves a checkpoint
            remote = ray.remote(num_cpus=1)(_run_member_cancellable)
            pending = {remote.remote(sweep, m, s): (m, s) for m, s in tasks}
            while pending:  # short waits: a signal is handled between them, not after the next member
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    member, seed = pending.pop(ref)
                    settle(member, seed, lambda: ray.get(ref))  # noqa: B023 - called at once
    except KeyboardInterrupt:
        for ref in pending:  # a training member stops as on Ctrl-C: it checkpoints its last iteration
            ray.cancel(ref)
        _, late = ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
        lost = (
            f" {len(late)} member(s) did not stop within {CANCEL_WAIT_S} s and continue from their last "
            "periodic checkpoint."
            if late
            else ""
        )
        raise MarlError(_interrupted(sweep, lost)) from None
    finally:
        close_bars()
        stop_ray([], started)
    _raise_failures(sweep, failures)


def _raise_failures(sweep: ParetoSweep, failures: list[str]) -> None:
    if failures:
        shown = failures[:10] + ([f"... and {len(failures) - 10} more"] if len(failures) > 10 else [])
        raise MarlError(
            f"Pareto sweep {sweep.name}: {len(failures)} member task(s) failed, the others are in its "
            "ledger:\n  "
            + "\n  ".join(shown)
            + "\nFix what the messages name (a diverged run: a smaller learning rate for that member in "
            "the file's grid trains it anew) and run the same command to finish; `--cached-only` draws the "
            "fronts of the finished members meanwhile."
        )


def _interrupted(sweep: ParetoSweep, lost: str = "") -> str:
    return (
        f"Pareto sweep {sweep.name} interrupted: finished members are in its ledger, and the learned members "
        f"that were training saved a checkpoint of their last iteration.{lost} Run the same `marl pareto` "
        "command again to continue where it stopped."
    )


def analyse(sweep: ParetoSweep, members: list[Member], results: list[dict]) -> dict:
    """Per member: each objective's mean and 95% interval over seeds (within the objective's bounds). Per
    front (`front_per` values): the non-dominated members (of the seed means), each member's front rank,
    exclusive hypervolume contribution and balance, the most balanced front member, and the hypervolume
    (also for each `compare_by` family alone) as the mean and 95% interval of the per-seed hypervolumes."""
    by_member: dict[str, dict[int, dict]] = {}
    for result in results:
        by_member.setdefault(result["member"], {})[result["seed"]] = result
    bounds = sweep.bounds or [[None, None] for _ in sweep.objectives]
    summary = {
        "name": sweep.name,
        "objectives": sweep.objectives,
        "reference": sweep.reference,
        "bounds": bounds,
        "interval": interval_description(sweep.objectives, bounds),
        "seeds": sweep.seeds,
        "episodes": sweep.episodes,
        "eval_seed": sweep.eval_seed,
        "front_per": [k.split(".")[-1] for k in sweep.front_per],
        "members": {},
        "fronts": {},
    }
    for member in members:
        runs = by_member[member.label]
        entry = {
            "choices": member.choices,
            "policy": member.policy,
            "family": member_family(member.choices, member.policy),
            "objectives": {},
        }
        for k, objective in enumerate(sweep.objectives):
            per_seed = [runs[s]["objectives"][k] for s in sweep.seeds]
            try:
                mean, low, high = interval(per_seed, *bounds[k])
            except ValueError:
                raise MarlError(
                    f"Member {member.label}: {objective} per seed {per_seed} lies outside its bounds "
                    f"{bounds[k]}; correct `bounds` in the Pareto file."
                ) from None
            entry["objectives"][objective] = {"per_seed": per_seed, "mean": mean, "low": low, "high": high}
        # a result recovered from an earlier record may lack its return or seconds (None): averaged without it
        entry["return_per_seed"] = [runs[s]["return_mean"] for s in sweep.seeds]
        entry["return_mean"] = _mean_known(entry["return_per_seed"])
        entry["train_frames"] = max(runs[s]["train_frames"] for s in sweep.seeds)
        entry["seconds"] = _mean_known([runs[s]["seconds"] for s in sweep.seeds])
        summary["members"][member.label] = entry

    for front_name, group in _partition(members, sweep.front_per).items():
        means = [_means(summary, m, sweep) for m in group]
        front = [group[i].label for i in non_dominated(means)]
        ideal = [min(p[k] for p in means) for k in range(len(sweep.objectives))]
        nadir = [max(p[k] for p in means) for k in range(len(sweep.objectives))]
        scores = dict(zip([m.label for m in group], balance(means, ideal, nadir), strict=True))
        distances = front_distance(means, ideal, nadir)
        for member, rank, share, distance in zip(
            group, front_ranks(means), contributions(means, sweep.reference), distances, strict=True
        ):
            entry = summary["members"][member.label]
            if member.label in front:
                entry.setdefault("on_front", []).append(front_name)
            entry["balance"] = scores[member.label]
            entry["rank"] = rank
            entry["contribution"] = share
            entry["front_distance"] = distance
            entry["front_group"] = front_name
        families = (
            {"all": group, **_partition(group, sweep.compare_by)} if sweep.compare_by else {"all": group}
        )
        hand_designed = [m for m in group if m.policy != LEARNED]
        if 0 < len(hand_designed) < len(group):  # learned teams beside hand-designed ones
            families[HAND_DESIGNED] = hand_designed
        hypervolumes = {
            family: _hypervolume_interval(by_member, family_members, sweep)
            for family, family_members in families.items()
        }
        summary["fronts"][front_name] = {
            "members": [m.label for m in group],
            "front": front,
            "most_balanced": min(front, key=lambda label: scores[label]),
            "hypervolume": hypervolumes,
        }
        learned = [m.label for m in group if m.policy == LEARNED]
        if learned:  # the learned team nearest the front (distance 0: on it)
            nearest = min(learned, key=lambda label: summary["members"][label]["front_distance"])
            distance = summary["members"][nearest]["front_distance"]
            summary["fronts"][front_name]["nearest_learned"] = {"member": nearest, "front_distance": distance}
        if HAND_DESIGNED in hypervolumes:  # what the learned teams add, paired by seed (>= 0 on every seed)
            pairs = zip(hypervolumes["all"]["per_seed"], hypervolumes[HAND_DESIGNED]["per_seed"], strict=True)
            gain = [with_learned - without for with_learned, without in pairs]
            mean, low, high = interval(gain)
            summary["fronts"][front_name]["learned_gain"] = {
                "per_seed": gain,
                "mean": mean,
                "low": low,
                "high": high,
            }
    return summary


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _mean_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def interval_description(objectives: list[str], bounds: list[list[float | None]]) -> str:
    """How the intervals were made, for the table and the figure."""
    ranges = []
    for objective, (low, high) in zip(objectives, bounds, strict=True):
        name = objective.split("/")[-1]
        if low is not None and high is not None:
            ranges.append(f"{low:g} <= {name} <= {high:g}")
        elif low is not None or high is not None:
            ranges.append(f"{name} >= {low:g}" if low is not None else f"{name} <= {high:g}")
    if not ranges:
        return "95% Student-t interval over seeds"
    return f"95% t-interval over seeds on the log/logit scale, so within {', '.join(ranges)}"


def _partition(members: list[Member], keys: list[str]) -> dict[str, list[Member]]:
    """Members grouped by their values of `keys` ("map=open"), or one group "all" without keys."""
    groups: dict[str, list[Member]] = {}
    for member in members:
        name = ",".join(f"{k.split('.')[-1]}={member.choices.get(k)}" for k in keys) or "all"
        groups.setdefault(name, []).append(member)
    return groups


def _means(summary: dict, member: Member, sweep: ParetoSweep) -> list[float]:
    return [summary["members"][member.label]["objectives"][o]["mean"] for o in sweep.objectives]


def _hypervolume_interval(by_member: dict, members: list[Member], sweep: ParetoSweep) -> dict:
    """The hypervolume of each seed's points (a member's objectives with that seed), mean and interval
    (a hypervolume is >= 0)."""
    per_seed = [
        hypervolume([by_member[m.label][s]["objectives"] for m in members], sweep.reference)
        for s in sweep.seeds
    ]
    mean, low, high = interval(per_seed, 0.0)
    return {"per_seed": per_seed, "mean": mean, "low": low, "high": high}


def write_outputs(sweep: ParetoSweep, members: list[Member], summary: dict) -> None:
    """summary.json, table.md and front.png in `out`; HParams, the figures and the tables in TensorBoard."""
    from marl.pareto_plot import close, plot_fronts, save

    out = Path(sweep.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_table(summary)
    (out / "table.md").write_text(table)
    title = sweep.title or sweep.name
    if summary.get("left_out"):
        title += f" (interim: {len(summary['left_out'])} unfinished left out)"
    figure = plot_fronts(summary, title)
    save(figure, out / "front.png")
    _log_tensorboard(sweep, members, summary, table, figure)
    close(figure)
    tensorboard = sweep.directory / "tensorboard" / out.name
    print(
        f"Wrote {out}/table.md, front.png and summary.json; TensorBoard: tensorboard --logdir {tensorboard}"
    )


def format_table(summary: dict) -> str:
    """A Markdown table per front: every member's objectives (mean [95% CI]), whether it is on the front and
    how balanced it is, then the hypervolumes."""
    objectives = summary["objectives"]
    intervals = summary.get("interval", "95% Student-t interval over seeds")
    lines = [
        f"Objectives (all minimised): {', '.join(objectives)}; "
        f"{seeds_description(summary['seeds'], intervals)}, each on the same {summary['episodes']} held-out "
        f"episodes (eval seed {summary['eval_seed']}). Front: not dominated by any member of the same front "
        "group (seed means); rank: 1 on the front, 2 on the front of the rest, and so on. Contribution: the "
        "hypervolume the front loses without the member. Balance: Chebyshev distance to the ideal point with "
        "each objective scaled to [0, 1] over the group (0 best). Distance to the front: the share of every "
        "objective's range (over the group) by which a member must improve in all of them to be on the front "
        "(0: on it). "
        f"Hypervolume reference point: {summary['reference']}.",
    ]
    if summary.get("left_out"):
        lines += [
            "",
            f"**Interim report:** {len(summary['left_out'])} member(s) left out, their seeds not all "
            f"finished yet (the fronts below are of the others): {', '.join(summary['left_out'])}.",
        ]
    for name, front in summary["fronts"].items():
        lines += [
            "",
            f"### {name}",
            "",
            "| member | "
            + " | ".join(objectives)
            + " | team return | front | rank | contribution | balance | distance to the front |",
            "|---|" + "---|" * (len(objectives) + 6),
        ]
        for label in front["members"]:
            entry = summary["members"][label]
            cells = [with_interval(entry["objectives"][o], 2) for o in objectives]
            on_front = "**yes**" if label in front["front"] else ""
            if label == front["most_balanced"]:
                on_front += " (most balanced)"
            lines.append(
                f"| {label} | " + " | ".join(cells) + f" | {_number(entry['return_mean'])} | {on_front} | "
                f"{entry['rank']} | {entry['contribution']:.1f} | {entry['balance']:.3f} | "
                f"{entry.get('front_distance', 0.0):.3f} |"
            )
        if "nearest_learned" in front:
            nearest = front["nearest_learned"]
            lines += [
                "",
                f"Nearest learned team to the front: {nearest['member']} (distance "
                f"{nearest['front_distance']:.3f}{', on it' if nearest['front_distance'] == 0 else ''}).",
            ]
        one_seed = len(summary["seeds"]) == 1  # the value is the seed's: no per-seed list to repeat it
        what = f"seed {summary['seeds'][0]}" if one_seed else "mean [95% CI]; per seed"
        lines += ["", f"| members | hypervolume ({what}) |", "|---|---|"]
        for family, hv in hypervolume_rows(front):
            per_seed = "" if one_seed else "; " + ", ".join(f"{v:.1f}" for v in hv["per_seed"])
            lines.append(f"| {family} | {with_interval(hv, 1)}{per_seed} |")
    return "\n".join(lines) + "\n"


def hypervolume_rows(front: dict) -> list[tuple[str, dict]]:
    """A front group's hypervolumes by family, then (with learned teams) what they add, paired by seed."""
    rows = list(front["hypervolume"].items())
    if "learned_gain" in front:
        rows.append((f"learned teams add (all - {HAND_DESIGNED}, paired by seed)", front["learned_gain"]))
    return rows


def hparams_metrics(sweep: ParetoSweep, summary: dict, label: str) -> dict[str, float]:
    """A member's HParams metrics, so the HParams table can sort and filter by each: its objectives, whether
    it is on the front, its balance and the hypervolume of its front group (the first five: TensorBoard
    shows five metric columns until others are ticked), then that hypervolume's interval, the member's
    front rank, hypervolume contribution and distance to the front, its `compare_by` family's hypervolume
    (mean and interval), its objectives' intervals and its team return."""
    entry = summary["members"][label]
    objectives = [(o.split("/")[-1], entry["objectives"][o]) for o in sweep.objectives]
    hypervolumes = summary["fronts"][entry["front_group"]]["hypervolume"]
    family = next((f for f in hypervolumes if f != "all" and label_in_family(sweep, entry, f)), "all")
    metrics = {f"pareto/{name}": stats["mean"] for name, stats in objectives}
    metrics["pareto/on_front"] = float(bool(entry.get("on_front")))
    metrics["pareto/balance"] = entry["balance"]
    metrics["pareto/hypervolume"] = hypervolumes["all"]["mean"]
    metrics["pareto/hypervolume_low"] = hypervolumes["all"]["low"]
    metrics["pareto/hypervolume_high"] = hypervolumes["all"]["high"]
    metrics["pareto/rank"] = float(entry["rank"])
    metrics["pareto/contribution"] = entry["contribution"]
    metrics["pareto/front_distance"] = entry.get("front_distance", 0.0)
    for end in ("mean", "low", "high"):
        metrics["pareto/family_hypervolume" + ("" if end == "mean" else f"_{end}")] = hypervolumes[family][
            end
        ]
    for name, stats in objectives:
        metrics[f"pareto/{name}_low"] = stats["low"]
        metrics[f"pareto/{name}_high"] = stats["high"]
    metrics["pareto/return_mean"] = math.nan if entry["return_mean"] is None else entry["return_mean"]
    return metrics


def label_in_family(sweep: ParetoSweep, entry: dict, family: str) -> bool:
    """Whether a member belongs to a `compare_by` family named like "policy=learned,n_sensing=3"."""
    name = ",".join(f"{k.split('.')[-1]}={entry['choices'].get(k)}" for k in sweep.compare_by)
    return name == family


def _log_tensorboard(sweep: ParetoSweep, members: list[Member], summary: dict, table: str, figure) -> None:
    """Each member's choices and metrics through the HParams plugin (table, parallel coordinates and
    scatter views of the trade-off), and the sweep's front figure (whole and per front group, at the
    resolution of front.png) and tables as Markdown."""
    from torch.utils.tensorboard import SummaryWriter

    from marl.pareto_plot import close, display_name, panel_members, plot_fronts, png_array

    root = sweep.directory / "tensorboard" / Path(sweep.out).name
    shutil.rmtree(root, ignore_errors=True)  # only this analysis's members and figures, none from before
    settings = {}
    for member in members:
        entry = summary["members"][member.label]
        settings[member.label] = {
            k.split(".")[-1]: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in member.choices.items()
        }
        # The policy by its short family name (`fixed_roles/pso`, `learned/hyper`): TensorBoard cuts long
        # values in the table and at the left edge of the parallel coordinates, whose first axis is the
        # first name in alphabetical order: the member's number in front.png's panel, a short number.
        settings[member.label]["policy"] = display_name(entry["family"])
        settings[member.label]["figure_no"] = (
            panel_members(summary, entry["front_group"]).index(member.label) + 1
        )
    # every value of each setting, so the HParams filter pane lists them as check boxes (untick `random`)
    domains = {
        k: sorted({h[k] for h in settings.values() if k in h}, key=str) for h in settings.values() for k in h
    }
    for member in members:
        hparams = settings[member.label]
        with SummaryWriter(root / member.label) as writer:
            writer.add_hparams(
                hparams,
                hparams_metrics(sweep, summary, member.label),
                hparam_domain_discrete={k: domains[k] for k in hparams},
                run_name=".",
            )
    # Tags under `front/`, a group that sorts before the metrics' `pareto/` in the Time Series tab.
    with SummaryWriter(root / "_front") as writer:
        writer.add_image("front/all", png_array(figure), dataformats="HWC")
        if len(summary["fronts"]) > 1:
            for name in summary["fronts"]:
                panel = plot_fronts(summary, sweep.title or sweep.name, fronts=[name])
                writer.add_image(f"front/{name}", png_array(panel), dataformats="HWC")
                close(panel)
        writer.add_text("front/table", table)
        writer.add_text("front/hypervolume", hypervolume_table(summary))


def hypervolume_table(summary: dict) -> str:
    """The hypervolumes of every front group and family as one short Markdown table."""
    lines = [
        f"Hypervolume against {summary['reference']}: "
        f"{seeds_description(summary['seeds'], summary.get('interval', '95% interval'))}.",
        "",
        "| front group | members | hypervolume | per seed |",
        "|---|---|---|---|",
    ]
    for name, front in summary["fronts"].items():
        for family, hv in hypervolume_rows(front):
            per_seed = ", ".join(f"{v:.0f}" for v in hv["per_seed"])
            lines.append(f"| {name} | {family} | {with_interval(hv, 0)} | {per_seed} |")
    return "\n".join(lines) + "\n"


def results_from_summary(summary: dict) -> list[dict]:
    """The per-(member, seed) results an earlier summary.json holds (the objectives and team return per seed;
    the return per seed only in newer summaries, else its mean), to re-analyse without the cache."""
    results = []
    for label, entry in summary["members"].items():
        returns = entry.get("return_per_seed") or [entry["return_mean"]] * len(summary["seeds"])
        for i, seed in enumerate(summary["seeds"]):
            results.append(
                {
                    "member": label,
                    "seed": seed,
                    "objectives": [entry["objectives"][o]["per_seed"][i] for o in summary["objectives"]],
                    "return_mean": returns[i],
                    "train_frames": entry["train_frames"],
                    "seconds": entry["seconds"],
                }
            )
    return results


def rebuild_from_summary(sweep: ParetoSweep, path: str | Path | None = None) -> dict:
    """Re-analyse and rewrite the outputs (summary.json, table.md, front.png, TensorBoard) from the per-seed
    values of `path` (default: the sweep's `out`/summary.json), with the Pareto file's settings."""
    path = Path(path or Path(sweep.out) / "summary.json")
    if not path.exists():
        raise MarlError(f"{path} does not exist: run `marl pareto` on the file first.")
    saved = json.loads(path.read_text())
    members = [m for m in expand(sweep) if m.label not in saved.get("left_out", [])]
    missing = [m.label for m in members if m.label not in saved["members"]]
    if missing or saved["objectives"] != sweep.objectives:
        raise MarlError(
            f"{path} does not hold this sweep's results (objectives {saved['objectives']}, members missing: "
            f"{missing[:3]}{'...' if len(missing) > 3 else ''}); run `marl pareto` on the file instead."
        )
    sweep.seeds = list(saved["seeds"])
    summary = analyse(sweep, members, results_from_summary(saved))
    summary["left_out"] = saved.get("left_out", [])
    write_outputs(sweep, members, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """`python -m marl.pareto_sweep FILE --from-summary [--summary PATH] [--out DIR] [--front-per KEY...]`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m marl.pareto_sweep",
        description="Rebuild a Pareto sweep's summary, table, figure and TensorBoard logs from the per-seed "
        "values of an earlier summary.json (when the cached per-member results are gone).",
    )
    parser.add_argument("file", help="Pareto YAML file (configs/pareto/*.yaml)")
    parser.add_argument("--from-summary", action="store_true", required=True, help="read the per-seed values")
    parser.add_argument("--summary", help="the summary.json to read (default: <out>/summary.json)")
    parser.add_argument("--out", help="write here instead of the file's `out`")
    parser.add_argument("--front-per", nargs="+", metavar="KEY", help="one front per value of these keys")
    args = parser.parse_args(argv)
    sweep = load_pareto(args.file)
    if args.out:
        sweep.out = args.out
    if args.front_per:
        sweep.front_per = args.front_per
        check_keys(sweep)
    rebuild_from_summary(sweep, args.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

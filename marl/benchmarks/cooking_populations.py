"""The cooking study: partner populations at the published size, their D, S, O and capable members, and a
generalist trained with each, tested against held-out specialists.

    python -m marl.benchmarks.cooking_populations [--seeds 0 1 2] [--jobs 2] [--scale 1.0] [--quick]
    python -m marl.benchmarks.cooking_populations --study pairs_even_paying   (the kitchen that answers the
                                                                              paper's claims, `STUDIES`)

For every seed s it trains, on the two-cook kitchen (envs/native/cooking.py, the `cooking_*` presets):

- P_specialists  `method=specialists`: one member per recipe of the kitchen, member r rewarded only for
                 recipe r (the oracle);
- P_selfplay     `method=selfplay`: eight independent self-play members (the unspecialised baseline);
- P_xpmin        `method=xpmin`: eight members, lambda 0.3 after a self-play warm-up, all 64 ordered pairs in
                 every rollout, a critic conditioned on the partner (the published protocol, LIPO's size);
- P_extract-rl, P_extract-dagger: `marl population extract` of that P_xpmin;

then evaluates each population against one held-out specialist set (`method=specialists` with seed
HELD_OUT_SEED, trained once and shared by all seeds: partners none of the populations or generalists ever
played with), giving D, S, capable members and O, each with its 95% interval (docs/metrics.md,
"Populations"), and trains a GRU generalist with each population's members as partners (`marl population
generalist`), whose success with each held-out specialist (both seats) and their harmonic mean is the
robustness measure.

Budgets are env steps (`SIZES`; --scale multiplies them): 100M per XP-min population, 10M for the other
populations and for extraction by RL, 2.5M per generalist. Every rollout is large (about 65k env steps:
many kitchens per pair) and `--precision bfloat16` runs the updates in bfloat16 (see
results/population_training.json for what each buys on a CPU). `--quick` runs the same steps at toy sizes
(seconds each): the test of this script.

Every run is an ordinary run directory under --runs (TensorBoard, checkpoints, config). Each step starts as
soon as the steps it needs are done (`study_steps` gives the order), --jobs at a time. A ledger
(<runs>/ledger.json) records finished steps, so an interrupted study re-run with the same arguments picks up
where it stopped; an unfinished step continues from its run's last checkpoint. Its copy <out>/ledger.json
goes with the results: on a fresh clone the study continues from it. A seed with every step finished keeps
what it measured; a lost run that a step still to run needs (the held-out specialists, a teacher) is trained
again with its seed, and so is what an unfinished seed built on it (one teacher and one set of held-out
specialists per seed). `--summary` writes the
summary of what the ledger holds at any time, the unfinished steps shown as n/a and listed. The ledger
records the git commit each step ran with; `--retrain xpmin` trains a method's populations again (and what
is built on them) after a change to its training, keeping the other steps. The summary goes to
<out>/summary.json, table.md and summary.png: per seed, mean and 95% t-interval over seeds (cut to each
measure's range: a success rate's stays in [0, 1]), paired differences for the paper's claims, env steps
and wall-clock time of every step.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from marl.benchmarks.machine import hardware, write_json

EXTRACTIONS = ("rl", "dagger")  # of every XP-min population
POPULATIONS = ("specialists", "selfplay", "xpmin", *(f"extract-{method}" for method in EXTRACTIONS))
HELD_OUT_SEED = 1000
# the generalist run's metric: its harmonic-mean success with the held-out specialists
HELD_OUT_KEY = "test/harmonic_mean"
MEMBERS = {"selfplay": 8, "xpmin": 8}  # LIPO's population of 8; specialists: one per recipe of the kitchen


@dataclass(frozen=True)
class Size:
    """One step's budget and batch shape."""

    frames: int  # env steps at --scale 1
    slots: int  # env slots per pair (populations), per student (extraction) or in all (generalist)
    rollout_steps: int  # env steps per slot per iteration
    minibatch_size: int  # frames per gradient step (extract-dagger: 0 = its full-batch default)


SIZES = {
    "full": {
        "specialists": Size(10_000_000, 128, 64, 16_384),  # one member per recipe x 128 kitchens x 64 steps
        "selfplay": Size(10_000_000, 128, 64, 16_384),  # 8 x 128 x 64: 65,536 per iteration
        "xpmin": Size(100_000_000, 16, 64, 16_384),  # 64 ordered pairs x 16 x 64: 65,536
        "extract-rl": Size(10_000_000, 128, 64, 16_384),  # 8 students x 128 x 64: 65,536
        "extract-dagger": Size(122_880, 32, 16, 0),  # 30 iterations of 8 x 32 x 16
        "generalist": Size(2_457_600, 64, 32, 512),  # 1,200 iterations of 64 x 32
    },
    "quick": {
        "specialists": Size(1_536, 4, 16, 0),
        "selfplay": Size(1_024, 4, 16, 0),
        "xpmin": Size(4_096, 1, 16, 0),
        "extract-rl": Size(1_024, 4, 16, 0),
        "extract-dagger": Size(1_024, 4, 16, 0),
        "generalist": Size(512, 16, 16, 128),
    },
}
PER_SEED = ("diversity", "specialisation", "overfitness")  # evaluated with their own 95% interval
XP_WARMUP = 0.1  # of XP-min's frames: the self-play objective alone, then the cross-play term
XP_LAMBDA = 0.3  # LIPO's
XP_GATE_MARGIN = 0.25  # population.xp_gate_margin's default
EVAL_EPISODES = {"full": 32, "quick": 2}  # per ordered pair (populations), per partner and seat (generalists)


@dataclass(frozen=True)
class Settings:
    """What every step of one study shares (one picklable object for the worker processes)."""

    runs: str
    mode: str  # full | quick
    scale: float
    precision: str
    threads: int = 1  # torch CPU threads per step
    kitchen: tuple[str, ...] = ()  # env settings of every population, e.g. ("layout=split",)
    xp_warmup: float = XP_WARMUP  # of XP-min's frames
    # kitchen settings changed for the generalists' training and test, e.g. ("retry=true",)
    generalist_kitchen: tuple[str, ...] = ()
    xp_gate: bool = False  # XP-min's population.xp_gate: spare members that do better with a stranger
    # kitchen settings changed for the RL extraction's students only, e.g. ("shaping=paying",)
    extract_kitchen: tuple[str, ...] = ()
    xp_gate_margin: float = XP_GATE_MARGIN  # population.xp_gate_margin: the gate's tolerance

    def size(self, step: str) -> Size:
        return SIZES[self.mode][step]

    def iterations(self, step: str, frames_per_iteration: int) -> int:
        return max(1, round(self.size(step).frames * self.scale / frames_per_iteration))

    @property
    def eval_episodes(self) -> int:
        return EVAL_EPISODES[self.mode]


# ---------------------------------------------------------------------------------------------------------
# One step each: run in a worker process, return what the summary needs
# ---------------------------------------------------------------------------------------------------------


def unfinished_run(runs: str, name: str) -> Path | None:
    """The newest run directory of an interrupted step (``<name>-<time>`` with a checkpoint), if any."""
    started = sorted(p for p in Path(runs).glob(f"{name}-2*") if any((p / "checkpoints").glob("*.pt")))
    return started[-1] if started else None


def train_population(method: str, seed: int, settings: Settings) -> dict[str, Any]:
    """`marl population train preset=cooking_<method>` at this study's size; -> its directory and cost."""
    from marl.population.config import apply_overrides, load_population_config, rollout_frames
    from marl.population.evaluate import label_count
    from marl.population.xpmin import train

    size, name = settings.size(method), f"{method}-seed{seed}"
    cfg = load_population_config(
        [
            f"preset=cooking_{method}",
            f"population.envs_per_pair={size.slots}",
            f"algorithm.rollout_steps={size.rollout_steps}",
            f"algorithm.minibatch_size={size.minibatch_size}",
            f"algorithm.precision={settings.precision}",
            *(f"env.{setting}" for setting in settings.kitchen),
            f"experiment.threads={settings.threads}",
            f"experiment.seed={seed}",
            f"experiment.name={name}",
            f"experiment.runs_dir={settings.runs}",
            f"experiment.eval_envs_per_pair={settings.eval_episodes}",
            "experiment.progress=false",
        ]
    )
    if method == "specialists":  # one per recipe of this kitchen
        recipes = label_count(cfg)
        if recipes is None:
            raise SystemExit(f"{cfg.env.name} does not say how many recipes it has: no specialists to train.")
        cfg = apply_overrides(
            cfg, [("population.size", recipes), ("population.specialist_targets", list(range(recipes)))]
        )
    else:
        cfg = apply_overrides(cfg, [("population.size", MEMBERS[method])])
    if method == "xpmin":
        cfg = apply_overrides(
            cfg,
            [
                ("population.pairs", "all"),
                ("population.xp_lambda", XP_LAMBDA),
                ("population.xp_warmup_frames", round(settings.xp_warmup * size.frames * settings.scale)),
                ("population.xp_gate", settings.xp_gate),
                ("population.xp_gate_margin", settings.xp_gate_margin),
            ],
        )
    iterations = settings.iterations(method, rollout_frames(cfg))
    cfg = apply_overrides(
        cfg, [("experiment.iterations", iterations), ("experiment.eval_every", max(1, iterations // 10))]
    )
    return _cost(train(cfg, resume=unfinished_run(settings.runs, name)))


def extract_population(method: str, teacher: str, seed: int, settings: Settings) -> dict[str, Any]:
    """`marl population extract <teacher> method=<method>`; -> the students' directory and cost."""
    from marl.population.extract import extract

    size, name = settings.size(f"extract-{method}"), f"extract-{method}-seed{seed}"
    iterations = settings.iterations(f"extract-{method}", MEMBERS["xpmin"] * size.slots * size.rollout_steps)
    previous = unfinished_run(settings.runs, name)
    if previous is not None:
        return _cost(extract(resume=previous, iterations=iterations))
    # rl: the label reward (paid only when an episode ends with a recipe) plus a tenth of the kitchen's own
    # reward, so the students get the sub-goal shaping the populations trained with. The students' kitchens
    # pay only their teacher's recipe (extract.restrict_env): its delivery pays 1 + 1, any other 0.
    settings_rl = {"env_reward_scale": 0.1, "student_env": kitchen_settings(settings.extract_kitchen)}
    settings_rl = settings_rl if method == "rl" else {}
    batch = {"minibatch_size": size.minibatch_size} if size.minibatch_size else {}
    run_dir = extract(
        teacher,
        **settings_rl,
        **batch,
        method=method,
        seed=seed,
        iterations=iterations,
        envs_per_member=size.slots,
        rollout_steps=size.rollout_steps,
        eval_episodes=settings.eval_episodes,
        name=name,
        runs_dir=settings.runs,
        progress=False,
        eval_every=0,
    )
    return _cost(run_dir)


def kitchen_settings(settings: tuple[str, ...]) -> dict[str, Any]:
    """``("shaping=paying", "retry=true")`` -> ``{"shaping": "paying", "retry": True}`` (values parsed as
    ``key=value`` overrides are)."""
    from marl.config import parse_value

    pairs = [setting.partition("=") for setting in settings]
    bad = [key for key, equals, _ in pairs if not equals or not key]
    if bad:
        raise SystemExit(f"Kitchen settings are KEY=VALUE, e.g. shaping=paying; got {list(settings)}.")
    return {key: parse_value(key, value) for key, _, value in pairs}


def evaluate_population(run: str, held_out: str, settings: Settings) -> dict[str, Any]:
    """`marl population evaluate <run> --specialists <held_out>`: D, S, capable members, O (intervals)."""
    from marl.population.evaluate import evaluate_run

    result = evaluate_run(run, held_out, episodes_per_pair=settings.eval_episodes, device="cpu")
    keys = ("sp_label", "sp_success", "capable_members", "xp_success", "xp_outcomes")
    keys += tuple(f"{m}{end}" for m in PER_SEED for end in ("", "_low", "_high"))
    return {key: result.get(key) for key in keys}


def train_generalist(population: str, held_out: str, seed: int, settings: Settings, name: str):
    """`marl population generalist <population> generalist.test_population=<held_out>`; -> success with each
    held-out specialist (mean over both seats), their harmonic mean, and the cost."""
    from marl.population.generalist import load_generalist_config
    from marl.population.generalist import train_generalist as train

    size = settings.size("generalist")
    iterations = settings.iterations("generalist", size.slots * size.rollout_steps)
    cfg = load_generalist_config(
        [
            population,
            f"generalist.test_population={held_out}",
            f"env.num_envs={size.slots}",
            f"algorithm.rollout_steps={size.rollout_steps}",
            f"algorithm.minibatch_size={size.minibatch_size}",
            f"experiment.seed={seed}",
            f"experiment.iterations={iterations}",
            f"experiment.name={name}",
            f"experiment.runs_dir={settings.runs}",
            f"experiment.eval_episodes={settings.eval_episodes}",
            f"experiment.eval_every={max(1, iterations // 6)}",
            "experiment.eval_deterministic=false",
            "experiment.progress=false",
        ]
    )
    cfg.env.kwargs.update(generalist_env(settings))
    run_dir = train(cfg, resume=unfinished_run(settings.runs, name))
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
        "harmonic_mean_curve": held_out_curve(run_dir),
    }


def generalist_env(settings: Settings) -> dict[str, Any]:
    """Kitchen settings of every generalist's games (training and held-out test partners alike): the
    study's --generalist-kitchen, and the kitchen's defaults for what --extract-kitchen changed (the RL
    students' own settings were for their training; the generalists play the study's kitchen)."""
    import inspect

    from marl.envs.native.cooking import CookingEnv

    defaults = inspect.signature(CookingEnv.__init__).parameters
    students = {key: defaults[key].default for key in kitchen_settings(settings.extract_kitchen)}
    return {**students, **kitchen_settings(settings.generalist_kitchen)}


def held_out_curve(run_dir: str | Path) -> list[list[float]] | None:
    """The generalist's harmonic-mean success with the held-out specialists at each of its evaluations,
    ``[[env steps, harmonic mean], ...]`` (whether a longer run would have changed it); None if the run's
    metrics are gone."""
    from marl.run_logger import read_metrics

    curve = [[row["frames"], row[HELD_OUT_KEY]] for row in read_metrics(run_dir) if HELD_OUT_KEY in row]
    return curve or None


def _cost(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((Path(run_dir) / "population.json").read_text())
    return {"run": str(run_dir), "frames": summary["frames"], "wall_time_s": summary["wall_time_s"]}


# ---------------------------------------------------------------------------------------------------------
# The study: steps in dependency order, finished ones kept in a ledger
# ---------------------------------------------------------------------------------------------------------


class Ledger:
    """Finished steps by name, saved as each one ends (so a re-run skips them), and the study's settings
    (a re-run with other sizes or precision would mix two studies: refused).

    ``record``: a copy kept with the results (``<out>/ledger.json``, small enough to commit), from which a
    study continues on a machine whose runs folder is empty, e.g. a fresh clone (``retrain_lost``)."""

    def __init__(self, path: Path, settings: Settings, record: Path | None = None):
        self.path, self.record = path, record
        source = path if path.exists() or record is None or not record.exists() else record
        saved = json.loads(source.read_text()) if source.exists() else {}
        wanted = {k: v for k, v in asdict(settings).items() if k not in ("runs", "threads")}
        wanted["kitchen"] = list(settings.kitchen)  # as JSON reads it back
        wanted["generalist_kitchen"] = list(settings.generalist_kitchen)
        wanted["extract_kitchen"] = list(settings.extract_kitchen)
        # a ledger written before a setting existed ran with its default
        defaults = {
            "xp_warmup": XP_WARMUP,
            "generalist_kitchen": [],
            "xp_gate": False,
            "extract_kitchen": [],
            "xp_gate_margin": 0.0,  # the gate had none
        }
        if not settings.xp_gate:  # the gate's margin means nothing without the gate
            wanted.pop("xp_gate_margin")
            defaults.pop("xp_gate_margin")
        if {**defaults, **saved.get("settings", wanted)} != wanted:
            raise SystemExit(
                f"{path} belongs to a study with {saved['settings']}, not {wanted}: give another --runs "
                "folder, or the same settings to continue it."
            )
        self.done: dict[str, Any] = saved.get("steps", {})
        self.replaced: dict[str, Any] = {}  # records of steps trained again because their run was lost
        self.settings = wanted
        self.commit = source_commit()

    def run(self, pool: Executor, steps: dict[str, Step], jobs: int) -> None:
        """Run the unfinished ``steps`` in the pool, at most ``jobs`` at once, each as soon as the steps it
        needs are done, in the order given where several could start; record each as it ends, with the
        commit of the code that ran it."""
        started = time.time()
        waiting = {name: step for name, step in steps.items() if name not in self.done}
        self.retrain_lost(steps, waiting)
        running: dict[Future, str] = {}
        while waiting or running:
            ready = [name for name, step in waiting.items() if all(n in self.done for n in step.needs)]
            for name in ready[: max(1, jobs) - len(running)]:
                step = waiting.pop(name)
                running[pool.submit(*step.call(self.done))] = name
            if not running:
                missing = {
                    name: [n for n in step.needs if n not in self.done] for name, step in waiting.items()
                }
                raise RuntimeError(f"steps that can never start (what they need is not a step): {missing}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                self.record_finished(name, future.result())
                print(f"  {name}: done ({(time.time() - started) / 60:.1f} min in)", flush=True)

    def retrain_lost(self, steps: dict[str, Step], waiting: dict[str, Step]) -> None:
        """Put back in ``waiting`` every finished step whose run directory is not on this machine and that
        a waiting step needs (and so on, for what that one needs), with the finished steps built on it in
        the seeds still open: a seed is measured against one teacher and one set of held-out specialists.
        Seeds with nothing left to run keep every result. A step trained again keeps its old record as
        ``replaced``."""
        open_seeds = {seed_of(name) for name in waiting}

        def lost_needs(step: Step) -> list[tuple[str, str]]:
            return [(n, "its run is not on this machine") for n in step.needs if self._lost(n)]

        redo = [pair for step in waiting.values() for pair in lost_needs(step)]
        while redo:
            name, why = redo.pop()
            if name in waiting or name not in self.done or name not in steps:
                continue
            print(f"  {name}: running it again ({why})", flush=True)
            self.replaced[name] = self.done.pop(name)
            waiting[name] = steps[name]
            redo += lost_needs(steps[name])
            redo += [
                (n, f"built on {name}")
                for n, s in steps.items()
                if name in s.needs and seed_of(n) in open_seeds
            ]

    def _lost(self, name: str) -> bool:
        """A finished step whose run directory is not on this machine."""
        run = self.done.get(name, {}).get("run")
        return run is not None and not Path(run).exists()

    def record_finished(self, name: str, result: dict[str, Any]) -> None:
        self.done[name] = {**result, "commit": self.commit}
        if name in self.replaced:
            self.done[name]["replaced"] = self.replaced.pop(name)
        self.save()

    def save(self) -> None:
        text = json.dumps({"settings": self.settings, "steps": self.done}, indent=2) + "\n"
        for path in (self.path, self.record):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def retrain(self, method: str, seeds: list[int]) -> list[str]:
        """Forget ``method``'s populations of ``seeds`` and every step built on them (XP-min: its
        extractions; each: its evaluation and generalist), so the study trains them again, e.g. after a
        change to that method's training. Their run directories move to ``<runs>/superseded/`` (kept, and
        no longer taken for an interrupted step to continue). -> the names of the forgotten steps."""
        built_on = [method, *(f"extract-{x}" for x in EXTRACTIONS)] if method == "xpmin" else [method]
        kinds = ("", "evaluate-", "generalist-")  # the population, its evaluation, its generalist
        steps = [f"{kind}{population}/{seed}" for seed in seeds for population in built_on for kind in kinds]
        forgotten = [step for step in steps if self.done.pop(step, None) is not None]
        superseded = self.path.parent / "superseded"
        for seed in seeds:
            for population in built_on:
                for run_name in (f"{population}-seed{seed}", f"generalist-{population}-seed{seed}"):
                    for run in self.path.parent.glob(f"{run_name}-2*"):
                        superseded.mkdir(exist_ok=True)
                        shutil.move(run, superseded / run.name)
        self.save()
        return forgotten


def seed_of(step: str) -> str | None:
    """``"generalist-xpmin/2"`` -> ``"2"``; None for the steps every seed shares (``"held-out"``)."""
    return step.rpartition("/")[2] if "/" in step else None


def source_commit() -> str | None:
    """The git commit of this checkout (``-dirty`` with uncommitted changes), or None outside a git
    checkout: which code a study's step ran with."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return described.stdout.strip() or None


class InlinePool(Executor):
    """``--jobs 0``: every step in this process, one after another (tests, debugging)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # handed to the caller through the future, as a process pool does
            future.set_exception(error)
        return future


@dataclass(frozen=True)
class Step:
    """One step of the study: the steps whose results it needs, and how it is called given them."""

    needs: tuple[str, ...]
    function: Callable[..., dict[str, Any]]
    arguments: tuple  # a step name among them stands for that step's run directory

    def call(self, done: dict[str, Any]) -> tuple:
        """``(function, *arguments)`` with every needed step's name replaced by its run directory."""
        return (self.function, *(done[a]["run"] if a in self.needs else a for a in self.arguments))


def study_steps(seeds: list[int], settings: Settings) -> dict[str, Step]:
    """Every step of the study, in the order they start when several could: XP-min first (the longest,
    and the head of the longest chain), then as soon as their inputs exist the steps the paper's claims
    read, in claim order ((a) XP-min's evaluations, which take a minute, then self-play and its
    evaluations, (b) the extractions, (c) the generalists of XP-min and its extractions), and last the
    oracle specialists and the reference generalists."""
    steps: dict[str, Step] = {}

    def train(method: str, seed: int) -> None:
        steps[f"{method}/{seed}"] = Step((), train_population, (method, seed, settings))

    def evaluate(population: str, seed: int) -> None:
        run = f"{population}/{seed}"
        steps[f"evaluate-{run}"] = Step((run, "held-out"), evaluate_population, (run, "held-out", settings))

    def generalist(population: str, seed: int) -> None:
        run, name = f"{population}/{seed}", f"generalist-{population}-seed{seed}"
        arguments = (run, "held-out", seed, settings, name)
        steps[f"generalist-{run}"] = Step((run, "held-out"), train_generalist, arguments)

    extractions = [f"extract-{method}" for method in EXTRACTIONS]
    for seed in seeds:
        train("xpmin", seed)
    steps["held-out"] = Step((), train_population, ("specialists", HELD_OUT_SEED, settings))
    for seed in seeds:  # a minute each: before any population that is waiting to train
        evaluate("xpmin", seed)
    for seed in seeds:
        train("selfplay", seed)
    for seed in seeds:
        evaluate("selfplay", seed)
    for seed in seeds:
        for method in EXTRACTIONS:
            teacher = f"xpmin/{seed}"
            arguments = (method, teacher, seed, settings)
            steps[f"extract-{method}/{seed}"] = Step((teacher,), extract_population, arguments)
        for population in extractions:
            evaluate(population, seed)
    for seed in seeds:
        for population in ("xpmin", *extractions):
            generalist(population, seed)
    for seed in seeds:
        train("specialists", seed)
        evaluate("specialists", seed)
    for seed in seeds:
        generalist("selfplay", seed)
        generalist("specialists", seed)
    return steps


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        str(runs),
        "quick" if args.quick else "full",
        args.scale,
        args.precision,
        args.threads,
        tuple(args.kitchen),
        args.xp_warmup,
        tuple(args.generalist_kitchen),
        args.xp_gate,
        tuple(args.extract_kitchen),
        args.xp_gate_margin,
    )
    ledger = Ledger(runs / "ledger.json", settings, record=Path(args.out) / "ledger.json")
    for method in args.retrain:
        forgotten = ledger.retrain(method, args.seeds)
        print(f"--retrain {method}: forgot {', '.join(forgotten) or 'nothing (not trained yet)'}", flush=True)
    if not args.summary:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(args.jobs, context) if args.jobs > 0 else InlinePool() as pool:
            ledger.run(pool, study_steps(args.seeds, settings), args.jobs)
    print("summary", flush=True)
    return summarise(ledger.done, args, settings)


# ---------------------------------------------------------------------------------------------------------
# Summary: per seed, mean and 95% interval over seeds, the paper's claims; table, JSON and figure
# ---------------------------------------------------------------------------------------------------------

METRICS = (  # (key, where it comes from, table heading)
    ("diversity", "evaluate", "D = H(Y) (nats)"),
    ("specialisation", "evaluate", "S = I(X;Y)/H(Y)"),
    ("capable_members", "evaluate", "capable members"),
    ("overfitness", "evaluate", "O"),
    ("xp_success_within", "evaluate", "cross-play success between members"),
    ("harmonic_mean", "generalist", "generalist: harmonic-mean success with held-out specialists"),
    ("harmonic_mean_covered", "generalist", "generalist: the same over the dishes its population cooks"),
    ("success_mean", "generalist", "generalist: mean success"),
)
# Each measure's range (None: unbounded on that side). A t-interval over three seeds easily reaches past it
# (a success rate of -0.98); the mean it covers lies in the range, so the interval is cut to the range,
# which keeps its coverage. A paired difference of two measures lies in [low - high, high - low].
RANGES: dict[str, tuple[float | None, float | None]] = {
    "diversity": (0.0, None),
    "specialisation": (0.0, 1.0),
    "capable_members": (0.0, None),  # and at most the population's size
    "overfitness": (-1.0, 1.0),  # a member's self-play success minus its success with a stranger
    "xp_success_within": (0.0, 1.0),
    "harmonic_mean": (0.0, 1.0),
    "harmonic_mean_covered": (0.0, 1.0),
    "success_mean": (0.0, 1.0),
}
# Whose dishes count as covered in `harmonic_mean_covered`: an extracted population is judged on its
# teacher's dishes, so that it and raw XP-min are compared, seed by seed, over the same held-out partners.
COVERAGE_OF = {"extract-rl": "xpmin", "extract-dagger": "xpmin"}


def covered_harmonic_mean(success_per_partner: list[float] | None, labels: list[int] | None) -> float | None:
    """The generalist's harmonic-mean success with those held-out specialists whose dish a capable member
    of its population cooks in self-play (``labels``, -1 for a member that cooks none). Held-out
    specialist r cooks recipe r (`method=specialists`). It separates the two reasons a generalist fails a
    stranger: a dish no partner ever showed it (coverage), and conventions it learned that strangers do not
    share (the overfitness extraction removes). None when unfinished or no dish is covered."""
    from marl.population.evaluate import harmonic_mean

    if success_per_partner is None or labels is None:
        return None
    dishes = {label for label in labels if label >= 0}
    covered = [success for dish, success in enumerate(success_per_partner) if dish in dishes]
    return harmonic_mean(covered) if covered else None


def within_range(values: list, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds of the finished seeds' ``values`` (None: unfinished), the
    interval cut to the quantity's range [low, high]. Cut, not rebuilt on a bounded scale as
    ``marl.pareto.interval`` does for the fronts: inside the range it stays the plain t-interval the
    study's verdicts (intervals apart, paired differences excluding 0) are defined on."""
    from marl.intervals import mean_interval

    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    mean, t_low, t_high = mean_interval(finite) if finite else (float("nan"),) * 3
    if low is not None and not math.isnan(t_low):
        t_low = max(t_low, low)
    if high is not None and not math.isnan(t_high):
        t_high = min(t_high, high)
    return {"per_seed": values, "mean": mean, "low": t_low, "high": t_high}


def difference_range(key: str) -> tuple[float | None, float | None]:
    """The range of a paired difference of measure ``key``: [low - high, high - low]."""
    low, high = RANGES[key]
    if low is None or high is None:
        return None, None
    return low - high, high - low


def steps_by_commit(done: dict[str, Any]) -> dict[str, list[str]]:
    """Which code ran which steps: commit -> step names ("unrecorded" for steps of older ledgers)."""
    commits: dict[str, list[str]] = {}
    for name, step in sorted(done.items()):
        commits.setdefault(step.get("commit") or "unrecorded", []).append(name)
    return commits


def summarise(done: dict[str, Any], args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    seeds = args.seeds
    every_step = study_steps(seeds, settings)
    unfinished = [name for name in every_step if name not in done]

    def results(source: str, population: str) -> list[dict | None]:
        """Each seed's result of a step kind (None where that step has not finished)."""
        prefix = "" if source == "population" else f"{source}-"
        return [done.get(f"{prefix}{population}/{s}") for s in seeds]

    for population in POPULATIONS:  # members with each other: the mean off-diagonal success
        for evaluation in filter(None, results("evaluate", population)):
            _, within = self_and_cross(evaluation["xp_success"])
            evaluation["xp_success_within"] = sum(within) / len(within)
    for population in POPULATIONS:
        coverage = results("evaluate", COVERAGE_OF.get(population, population))
        for generalist, evaluation in zip(results("generalist", population), coverage):
            if generalist is not None:
                labels = None if evaluation is None else evaluation["sp_label"]
                generalist["harmonic_mean_covered"] = covered_harmonic_mean(
                    generalist["success_per_partner"], labels
                )
    # the kitchen's recipes, one held-out specialist each: how many dishes an order is drawn from
    recipes = next((len(e["sp_label"]) for e in results("evaluate", "specialists") if e), None)
    rows = []
    for population in POPULATIONS:
        evaluations = results("evaluate", population)
        row: dict[str, Any] = {"population": population}
        row["sp_label"] = [None if e is None else e["sp_label"] for e in evaluations]
        labels = next(filter(None, row["sp_label"]), None)
        row["members"] = len(labels) if labels else MEMBERS.get(population, "n/a")
        for key, source, _ in METRICS:
            low, high = RANGES[key]
            if key == "capable_members" and labels:  # at most every member
                high = len(labels)
            row[key] = within_range(
                [None if r is None else r[key] for r in results(source, population)], low, high
            )
        for key in PER_SEED:  # each seed's own interval (over its evaluation episodes)
            row[key]["seed_intervals"] = [
                [None if e is None else e.get(f"{key}{end}") for end in ("_low", "_high")]
                for e in evaluations
            ]
        cost = [
            (c, t) for c, t in zip(results("population", population), results("population", "xpmin")) if c
        ]
        if population.startswith("extract"):  # the students' cost comes on top of their teacher's
            cost = [({k: c[k] + t[k] for k in ("frames", "wall_time_s")}, t) for c, t in cost]
        generalist = list(filter(None, results("generalist", population)))
        row["population_frames"] = mean_of([c["frames"] for c, _ in cost])
        row["population_minutes"] = mean_of([c["wall_time_s"] / 60 for c, _ in cost])
        row["generalist_frames"] = mean_of([g["frames"] for g in generalist])
        row["generalist_minutes"] = mean_of([g["wall_time_s"] / 60 for g in generalist])
        row["generalist_success_per_seat"] = [g["success_per_seat"] for g in generalist]
        row["generalist_success_per_partner"] = [g["success_per_partner"] for g in generalist]
        row["generalist_curve"] = [
            None if g is None else g.get("harmonic_mean_curve") or held_out_curve(g["run"])
            for g in results("generalist", population)
        ]
        row["stages"] = stages(list(filter(None, evaluations)))
        row["order_following"] = [
            None if e is None else order_following(e, recipes, settings.eval_episodes) for e in evaluations
        ]
        row["cross_play_by_recipe"] = [None if e is None else by_recipe(e) for e in evaluations]
        rows.append(row)
    by_name = {row["population"]: row for row in rows}
    differences = paired_differences(by_name)
    summary = {
        "study": "cooking populations: D, S, O, capable members, generalist robustness",
        "seeds": seeds,
        "members": {row["population"]: row["members"] for row in rows},
        "mode": settings.mode,
        "scale": settings.scale,
        "precision": settings.precision,
        "kitchen": list(settings.kitchen),
        "generalist_kitchen": list(settings.generalist_kitchen),
        "extract_kitchen": list(settings.extract_kitchen),
        "sizes": {step: asdict(size) for step, size in SIZES[settings.mode].items()},
        "xp_lambda": XP_LAMBDA,
        "xp_warmup_fraction": settings.xp_warmup,
        "xp_gate": settings.xp_gate,
        "xp_gate_margin": settings.xp_gate_margin if settings.xp_gate else None,
        "held_out_specialists": done.get("held-out", {}).get("run"),
        "held_out_cost": {k: done.get("held-out", {}).get(k) for k in ("frames", "wall_time_s")},
        "unfinished_steps": unfinished,
        "eval_episodes": settings.eval_episodes,
        "hardware": hardware(packages=("torchrl", "tensordict")),
        "commits": steps_by_commit(done),
        "rows": rows,
        "paired_differences": differences,
        "claims": claims(by_name, differences),
    }
    write_summary(summary, Path(args.out))
    return summary


def paired_differences(by_name: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """The paper's comparisons, each ``a - b`` seed by seed: mean and 95% t-interval of the differences (cut
    to their range)."""

    def paired(key: str, a: str, b: str) -> dict[str, Any]:
        pairs = zip(by_name[a][key]["per_seed"], by_name[b][key]["per_seed"])
        differences = [None if None in (x, y) else x - y for x, y in pairs]
        return within_range(differences, *difference_range(key))

    return {
        "D: xpmin - selfplay": paired("diversity", "xpmin", "selfplay"),
        "S: xpmin - selfplay": paired("specialisation", "xpmin", "selfplay"),
        "O: extract-rl - xpmin": paired("overfitness", "extract-rl", "xpmin"),
        "O: extract-dagger - xpmin": paired("overfitness", "extract-dagger", "xpmin"),
        "generalist HM: extract-rl - xpmin": paired("harmonic_mean", "extract-rl", "xpmin"),
        "generalist HM: extract-dagger - xpmin": paired("harmonic_mean", "extract-dagger", "xpmin"),
        "generalist HM on covered dishes: extract-rl - xpmin": paired(
            "harmonic_mean_covered", "extract-rl", "xpmin"
        ),
        "generalist HM on covered dishes: extract-dagger - xpmin": paired(
            "harmonic_mean_covered", "extract-dagger", "xpmin"
        ),
        # the harmonic mean is 0 for any generalist that fails one held-out specialist, e.g. of a dish its
        # population never cooks; the mean success still ranks the partner sets there
        "generalist mean success: extract-rl - xpmin": paired("success_mean", "extract-rl", "xpmin"),
        "generalist mean success: extract-dagger - xpmin": paired("success_mean", "extract-dagger", "xpmin"),
    }


def write_summary(summary: dict[str, Any], out: Path) -> None:
    write_json(out / "summary.json", summary)
    (out / "table.md").write_text(table(summary))
    plot(summary, out / "summary.png")
    print(table(summary))
    print(f"Wrote {out}/summary.json, table.md and summary.png")


def resummarise(path: Path, out: Path | None = None) -> dict[str, Any]:
    """Judge an earlier study again from the per-seed values its summary.json holds, by this script's
    current rules (intervals cut to each measure's range, claim (a) also paired by seed), and rewrite its
    summary, table and figure (in ``out``, default beside it): for a study whose ledger and runs are gone.
    Only what is computed over seeds changes; every per-seed value stays as measured."""
    summary = json.loads(path.read_text())
    seeds = summary["seeds"]
    by_name = {row["population"]: row for row in summary["rows"]}
    for row in summary["rows"]:  # measures added since: from the per-seed values kept
        if "harmonic_mean_covered" not in row:
            labels = by_name[COVERAGE_OF.get(row["population"], row["population"])]["sp_label"]
            successes = row["generalist_success_per_partner"]  # finished seeds only: align if all are
            successes = successes if len(successes) == len(seeds) else [None] * len(seeds)
            row["harmonic_mean_covered"] = {
                "per_seed": [covered_harmonic_mean(s, lab) for s, lab in zip(successes, labels)]
            }
    for row in summary["rows"]:
        labels = next(filter(None, row["sp_label"]), None)
        for key, _, _ in METRICS:
            low, high = RANGES[key]
            if key == "capable_members" and labels:
                high = len(labels)
            kept = {k: v for k, v in row[key].items() if k not in ("per_seed", "mean", "low", "high")}
            row[key] = {**within_range(row[key]["per_seed"], low, high), **kept}
        # fields older summaries did not have yet
        row.setdefault("members", len(labels) if labels else MEMBERS.get(row["population"], "n/a"))
        row.setdefault("stages", {"self_play": {}, "cross_play": {}})
        row.setdefault("cross_play_by_recipe", [None] * len(seeds))
        for key in PER_SEED:
            row[key].setdefault("seed_intervals", [[None, None]] * len(seeds))
    summary["paired_differences"] = paired_differences(by_name)
    summary["claims"] = claims(by_name, summary["paired_differences"])
    summary.setdefault("unfinished_steps", [])
    summary["resummarised"] = {"by_commit": source_commit(), "date": time.strftime("%Y-%m-%d")}
    write_summary(summary, out or path.parent)
    return summary


def mean_of(values: list[float]) -> float | None:
    """The mean, or None for no values (a step no seed has finished)."""
    return sum(values) / len(values) if values else None


def self_and_cross(matrix: list[list[float]]) -> tuple[list[float], list[float]]:
    """An ordered-pair matrix's self-play entries (the diagonal) and cross-play ones (the rest)."""
    n = len(matrix)
    return [matrix[i][i] for i in range(n)], [matrix[i][j] for i in range(n) for j in range(n) if i != j]


STAGES = ("chopped", "plated", "picked_up", "delivered", "success")  # how far an episode got, in order
LAMP = "signalled"  # a kitchen with lamps (env.signal=true) also says whether a pair lit one


def stages(evaluations: list[dict]) -> dict[str, dict[str, float]]:
    """How far the members' episodes got, in self-play and in cross-play between members: the fraction of
    episodes that reached each of ``STAGES`` (the kitchen's info flags), and in a kitchen with lamps the
    fraction in which a cook lit one, mean over pairs and seeds."""
    out: dict[str, dict[str, float]] = {"self_play": {}, "cross_play": {}}
    for stage in (*STAGES, LAMP):
        sp, xp = [], []
        for evaluation in evaluations:
            matrix = (evaluation.get("xp_outcomes") or {}).get(stage)
            if matrix is None:
                continue
            own, cross = self_and_cross(matrix)
            sp, xp = sp + own, xp + cross
        if sp:
            out["self_play"][stage] = sum(sp) / len(sp)
            out["cross_play"][stage] = sum(xp) / len(xp) if xp else float("nan")
    return out


def order_following(evaluation: dict, recipes: int | None, episodes: int) -> dict[str, Any] | None:
    """In a kitchen with orders: how often each member, with itself, delivers the episode's order, against
    chance for a pair that ignores the order (its success over the recipes the order is drawn from), and
    which members follow the order (one-sided binomial test against that chance, p < 0.01). None in a
    kitchen without orders."""
    on_order = (evaluation.get("xp_outcomes") or {}).get("on_order")
    if on_order is None or not recipes:
        return None
    delivered, _ = self_and_cross(on_order)
    chance = [success / recipes for success in evaluation["sp_success"]]
    followers = [
        member
        for member, (rate, p) in enumerate(zip(delivered, chance))
        if binomial_tail(round(rate * episodes), episodes, p) < 0.01
    ]
    return {"on_order": delivered, "chance": chance, "followers": followers}


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def by_recipe(evaluation: dict) -> dict[str, float | None]:
    """Cross-play success between two members whose self-play recipes are the same, and whose differ
    (members without a recipe left out; None where no pair is of that kind): whether a recipe is a
    convention two cooks can disagree on."""
    label, success = evaluation["sp_label"], evaluation["xp_success"]
    kinds: dict[str, list[float]] = {"same": [], "different": []}
    for i, a in enumerate(label):
        for j, b in enumerate(label):
            if i != j and a >= 0 and b >= 0:
                kinds["same" if a == b else "different"].append(success[i][j])
    return {kind: sum(v) / len(v) if v else None for kind, v in kinds.items()}


def claims(rows: dict[str, dict], differences: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """The paper's claims, each judged on this study's intervals over seeds: ``holds`` is true, false, or
    null where an interval is undefined (fewer than two seeds: read the per-seed intervals instead)."""

    def verdict(*bounds: float, test: bool) -> bool | None:
        return None if any(math.isnan(float(b)) for b in bounds) else bool(test)

    xp, sp = rows["xpmin"], rows["selfplay"]
    d_xp, d_sp, s_xp, s_sp, o_xp = (
        xp["diversity"],
        sp["diversity"],
        xp["specialisation"],
        sp["specialisation"],
        xp["overfitness"],
    )
    d_gain, s_gain = differences["D: xpmin - selfplay"], differences["S: xpmin - selfplay"]
    checks = {
        "(a) XP-min D above self-play's": verdict(d_xp["low"], d_sp["high"], test=d_xp["low"] > d_sp["high"]),
        "(a) XP-min S above self-play's": verdict(s_xp["low"], s_sp["high"], test=s_xp["low"] > s_sp["high"]),
        # the same two on the difference paired by seed: two 95% intervals that touch can still hold a
        # difference whose own interval excludes 0 (non-overlap is a far stricter test than p < 0.05)
        "(a) XP-min D above self-play's (paired by seed)": verdict(d_gain["low"], test=d_gain["low"] > 0),
        "(a) XP-min S above self-play's (paired by seed)": verdict(s_gain["low"], test=s_gain["low"] > 0),
        "(b) XP-min O above 0": verdict(o_xp["low"], test=o_xp["low"] > 0),
    }
    for method in ("extract-rl", "extract-dagger"):
        row, drop = rows[method], differences[f"O: {method} - xpmin"]
        checks[f"(b) {method} lowers O and keeps D and S"] = verdict(
            drop["high"],
            row["diversity"]["high"],
            row["specialisation"]["high"],
            xp["diversity"]["low"],
            xp["specialisation"]["low"],
            test=drop["high"] < 0
            and row["diversity"]["high"] >= xp["diversity"]["low"]
            and row["specialisation"]["high"] >= xp["specialisation"]["low"],
        )
    for method in ("extract-rl", "extract-dagger"):
        gain = differences[f"generalist HM: {method} - xpmin"]
        checks[f"(c) generalist with {method} beats raw XP-min (paired)"] = verdict(
            gain["low"], test=gain["low"] > 0
        )
        gain = differences[f"generalist HM on covered dishes: {method} - xpmin"]
        checks[f"(c) generalist with {method} beats raw XP-min on the covered dishes (paired)"] = verdict(
            gain["low"], test=gain["low"] > 0
        )
    return {name: {"holds": held} for name, held in checks.items()}


def table(summary: dict[str, Any]) -> str:
    def cell(stat: dict) -> str:
        if stat["mean"] is None or math.isnan(stat["mean"]):
            return "n/a"
        if math.isnan(stat["low"]):  # one seed: no interval over seeds
            return f"{stat['mean']:.2f}"
        return f"{stat['mean']:.2f} [{stat['low']:.2f}, {stat['high']:.2f}]"

    def number(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(float(value)) else f"{value:.2f}"

    seeds = summary["seeds"]
    lamps = any(LAMP in row["stages"]["self_play"] for row in summary["rows"])
    columns = (*STAGES, LAMP) if lamps else STAGES
    lines = [
        f"Cooking kitchen{' (' + ', '.join(summary['kitchen']) + ')' if summary['kitchen'] else ''}, seeds "
        f"{seeds}, {summary['mode']} sizes x {summary['scale']}, "
        f"{summary['precision']} updates: mean [95% t-interval over seeds, cut to the measure's range]. "
        "Held-out specialists: one "
        f"`method=specialists` population (seed {HELD_OUT_SEED}) that no population or generalist trained "
        f"with. Sampled actions in every evaluation ({summary['eval_episodes']} episodes per pair, or per "
        "partner and seat)."
        + generalist_kitchen_note(summary.get("generalist_kitchen", []))
        + extract_kitchen_note(summary.get("extract_kitchen", [])),
        "",
        "| population | members | " + " | ".join(heading for _, _, heading in METRICS) + " | generalist "
        "success cooking (left seat) / carrying (right seat) | population env steps (wall clock) | "
        "generalist env steps (wall clock) |",
        "|---" * (len(METRICS) + 5) + "|",
    ]
    for row in summary["rows"]:
        cells = [cell(row[key]) for key, _, _ in METRICS]
        seats = row["generalist_success_per_seat"]
        left, right = (mean_of([s[i] for s in seats]) for i in (0, 1))
        lines.append(
            f"| P_{row['population']} | {row['members']} | "
            + " | ".join(cells)
            + f" | {number(left)} / {number(right)}"
            + f" | {_cost_cell(row['population_frames'], row['population_minutes'])} | "
            f"{_cost_cell(row['generalist_frames'], row['generalist_minutes'])} |"
        )
    lines += [
        "",
        "Per seed (D, S, O with their 95% intervals over the evaluation episodes; the generalist's harmonic "
        "mean):",
        "",
        "| population | seed | D | S | O | generalist HM | HM on covered dishes | self-play recipe of each "
        "member |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        for i, seed in enumerate(seeds):
            stats = []
            for key in PER_SEED:
                low, high = row[key]["seed_intervals"][i]
                stats.append(f"{number(row[key]['per_seed'][i])} [{number(low)}, {number(high)}]")
            lines.append(
                f"| P_{row['population']} | {seed} | "
                + " | ".join(stats)
                + f" | {number(row['harmonic_mean']['per_seed'][i])}"
                + f" | {number(row['harmonic_mean_covered']['per_seed'][i])}"
                + f" | {row['sp_label'][i] or 'n/a'} |"
            )
    lines += per_seed_table(
        summary,
        "The generalist's harmonic mean with the held-out specialists over its training, per seed (first, "
        "middle and last evaluation, at the env steps shown):",
        "generalist_curve",
        _curve_cell,
    )
    lines += [
        "",
        "How far episodes got (fraction that reached each stage; self-play / cross-play between members"
        + ("; signalled: a cook lit its lamp" if lamps else "")
        + "):",
        "",
        "| population | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for row in summary["rows"]:
        sp, xp = row["stages"]["self_play"], row["stages"]["cross_play"]
        cells = [f"{number(sp.get(k))} / {number(xp.get(k))}" for k in columns]
        lines.append(f"| P_{row['population']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cross-play success between members with the same / different self-play recipes, per seed:",
        "",
        "| population | same recipe | different recipes |",
        "|---|---|---|",
    ]
    for row in summary["rows"]:
        kinds = ("same", "different")
        cells = [" / ".join(number(seed and seed[k]) for seed in row["cross_play_by_recipe"]) for k in kinds]
        lines.append(f"| P_{row['population']} | " + " | ".join(cells) + " |")
    if any(any(row.get("order_following") or []) for row in summary["rows"]):  # a kitchen with orders
        lines += per_seed_table(
            summary,
            "Orders: self-play episodes that deliver the episode's order, per seed: the members that follow "
            "it (above chance, one-sided binomial p < 0.01) with their rate / chance (a member that ignores "
            "the order: its success over the recipes), and the mean over members:",
            "order_following",
            _order_cell,
        )
    lines += [
        "",
        "Paired by seed (a - b; mean [95% t-interval, cut to the difference's range], per seed):",
        "",
    ]
    for name, d in summary["paired_differences"].items():
        per_seed = ", ".join(number(v) for v in d["per_seed"])
        lines.append(f"- {name}: {cell(d)} ({per_seed})")
    lines += ["", "The paper's claims on these intervals:", ""]
    words = {
        True: "holds",
        False: "does not hold",
        None: "undecided (no interval over seeds: fewer than two seeds have finished it)",
    }
    for name, verdict in summary["claims"].items():
        lines.append(f"- {name}: {words[verdict['holds']]}")
    if summary["unfinished_steps"]:
        lines += ["", f"Not finished yet (n/a above): {', '.join(summary['unfinished_steps'])}."]
    return "\n".join(lines) + "\n"


def per_seed_table(summary: dict[str, Any], heading: str, key: str, cell: Callable[[Any], str]) -> list[str]:
    """A table of one value per population and seed (``row[key]``, one entry per seed), under ``heading``."""
    seeds = summary["seeds"]
    lines = ["", heading, "", "| population | " + " | ".join(f"seed {seed}" for seed in seeds) + " |"]
    lines.append("|---" * (len(seeds) + 1) + "|")
    for row in summary["rows"]:
        cells = [cell(value) for value in row.get(key) or [None] * len(seeds)]
        lines.append(f"| P_{row['population']} | " + " | ".join(cells) + " |")
    return lines


def generalist_kitchen_note(settings: list[str]) -> str:
    """The table's sentence on kitchen settings the generalists alone played with (none: empty)."""
    if not settings:
        return ""
    return (
        f" The generalists trained and were tested in the kitchen with {', '.join(settings)} as well: their "
        "partners and the held-out specialists, trained without, played with it."
    )


def extract_kitchen_note(settings: list[str]) -> str:
    """The table's sentence on kitchen settings the RL extraction's students alone trained with."""
    if not settings:
        return ""
    return f" The RL extraction's students trained in kitchens with {', '.join(settings)} as well."


def _order_cell(following: dict[str, Any] | None) -> str:
    if following is None:
        return "n/a"
    rate, chance = following["on_order"], following["chance"]
    members = ", ".join(f"member {m}: {rate[m]:.2f} / {chance[m]:.2f}" for m in following["followers"])
    return f"{members or 'none'}; mean {mean_of(rate):.2f} / {mean_of(chance):.2f}"


def _cost_cell(frames: float | None, minutes: float | None) -> str:
    return "n/a" if frames is None else f"{frames / 1e6:.2f}M ({minutes:.1f} min)"


def _curve_cell(curve: list[list[float]] | None) -> str:
    """``0.58 (0.4M) -> 0.67 (1.2M) -> 0.75 (2.0M)``: first, middle and last point of a curve."""
    if not curve:
        return "n/a"
    points = [curve[0], curve[len(curve) // 2], curve[-1]] if len(curve) > 2 else curve
    return " -> ".join(f"{value:.2f} ({frames / 1e6:.1f}M)" for frames, value in points)


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
            for j, value in enumerate(s["per_seed"]):
                if value is None:
                    continue
                low, high = s.get("seed_intervals", [[None, None]] * len(s["per_seed"]))[j]
                whisker = None if low is None else [[value - low], [high - value]]
                axis.errorbar(i + 0.1 * j, value, yerr=whisker, fmt="k.", ms=4, capsize=2, lw=0.8)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        axis.set_title(textwrap.fill(heading, 32), fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(
        f"Cooking populations, seeds {summary['seeds']}: bars mean and 95% interval over seeds; dots each "
        "seed, with its own 95% interval over evaluation episodes (D, S, O)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --study NAME: a study that results/cooking_populations reports, by name instead of its flags. Its settings
# are defaults: a flag given as well still wins.
# four equally far dishes, both cooks blind, a lamp, retries; XP-min gated from the first step; the RL
# students' shaping paying their teacher's dish only (the study that answers the paper's claims)
PAIRS_EVEN_PAYING: dict[str, Any] = dict(
    kitchen=["layout=pairs_even", "blind=true", "observe_partner_cell=false", "signal=true", "retry=true"],
    extract_kitchen=["shaping=paying"],
    xp_warmup=0.0,
    xp_gate=True,
    xp_gate_margin=0.0,  # as it ran: the exact gate, which flickers for members that cook alike
    runs="results/runs/pairs_even_paying",
    out="results/cooking_populations/pairs_even_paying",
)
STUDIES: dict[str, dict[str, Any]] = {
    "pairs_even_paying": PAIRS_EVEN_PAYING,
    # the same, with an order per episode seen by both cooks (its dish pays 5 more): self-play can follow
    # it, so a member's dish may vary between episodes and specialisation (S) can tell populations apart;
    # and the gate with its margin, so it no longer spares members that cook alike
    "pairs_even_orders": PAIRS_EVEN_PAYING
    | dict(
        kitchen=[*PAIRS_EVEN_PAYING["kitchen"], "order_bonus=5.0"],
        xp_gate_margin=XP_GATE_MARGIN,
        runs="results/runs/pairs_even_orders",
        out="results/cooking_populations/pairs_even_orders",
    ),
}


def parse_arguments(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--study",
        choices=sorted(STUDIES),
        help="a study of results/cooking_populations by name: its kitchen, XP-min and extraction settings "
        "and its --runs and --out (flags given as well override them). Without it: the classic kitchen with "
        "the published warm-up",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--jobs", type=int, default=2, help="steps run at once (one CPU thread each); 0 = in this process"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every step's env steps")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per step")
    parser.add_argument(
        "--kitchen",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="kitchen settings of every population (envs/native/cooking.py), e.g. layout=pairs blind=true "
        "observe_partner_cell=false",
    )
    parser.add_argument(
        "--generalist-kitchen",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="kitchen settings changed for the generalists' training and test only, e.g. retry=true: the "
        "populations and held-out specialists trained without them play with them",
    )
    parser.add_argument(
        "--extract-kitchen",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="kitchen settings changed for the RL extraction's students only, e.g. shaping=paying: the "
        "shaping rewards of a student's kitchen (restricted to its teacher's dish) then pay only that "
        "dish's ingredients",
    )
    parser.add_argument(
        "--xp-warmup",
        type=float,
        default=XP_WARMUP,
        metavar="FRACTION",
        help=f"XP-min's self-play warm-up, a fraction of its env steps (default {XP_WARMUP}; 0: the "
        "cross-play term from the start)",
    )
    parser.add_argument(
        "--xp-gate",
        action="store_true",
        help="XP-min's cross-play term only for members that do at least as well with themselves as with "
        "their best partner (population.xp_gate): members that cannot cook yet learn from self-play instead "
        "of being pushed off every dish they try",
    )
    parser.add_argument(
        "--xp-gate-margin",
        type=float,
        default=XP_GATE_MARGIN,
        metavar="FRACTION",
        help="with --xp-gate: the term stays on while a member's self-play return is at least (1 - FRACTION) "
        f"times its return with its best partner (population.xp_gate_margin, default {XP_GATE_MARGIN})",
    )
    parser.add_argument(
        "--retrain",
        nargs="+",
        default=[],
        choices=("xpmin", "selfplay", "specialists", *(f"extract-{method}" for method in EXTRACTIONS)),
        help="train these populations of --seeds again, with every step built on them (XP-min: its "
        "extractions; each: its evaluation and generalist), keeping the rest of the ledger: after a change "
        "to that method's training (extract-rl: the extraction alone, from the same XP-min teachers). The "
        "old runs move to <runs>/superseded/",
    )
    parser.add_argument("--quick", action="store_true", help="toy sizes: every step in seconds (a test)")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="run nothing: write the summary of the steps the ledger holds now (unfinished ones: n/a)",
    )
    parser.add_argument(
        "--from-summary",
        metavar="SUMMARY_JSON",
        help="run nothing: judge an earlier study again from the per-seed values of its summary.json (the "
        "intervals, paired differences and claims by this script's current rules) and rewrite its summary, "
        "table and figure (in --out if given, else beside it)",
    )
    parser.add_argument("--runs", default="results/runs/cooking_populations")
    parser.add_argument("--out", default="results/cooking_populations")
    study = parser.parse_known_args(argv)[0].study
    if study:
        parser.set_defaults(**STUDIES[study])
    return parser, parser.parse_args(argv)


def main() -> None:
    parser, arguments = parse_arguments()
    if arguments.from_summary:
        out = None if arguments.out == parser.get_default("out") else Path(arguments.out)
        resummarise(Path(arguments.from_summary), out)
        return
    try:
        run_study(arguments)
    except KeyboardInterrupt:  # a terminal's Ctrl-C reaches the workers too: each step checkpoints
        raise SystemExit(
            "\nStopped. Finished steps are in the ledger and an interrupted step continues from its last "
            "checkpoint: run the same command to continue (or add --summary to write what is done so far)."
        ) from None


if __name__ == "__main__":
    main()

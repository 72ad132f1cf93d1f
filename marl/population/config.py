"""Typed configuration of `marl population train`: its sections, presets and cross-field checks, on the
config engine of marl/config.py (`Schema`).

Layers, later beating earlier: the dataclass defaults below < a preset (``preset=matrix_game_xpmin`` reads
``configs/population/matrix_game_xpmin.yaml``, or ``preset=path/to/file.yaml``) < command-line overrides
(``population.size=4``, ``algorithm.lr=1e-3``; ``method=xpmin`` is short for ``population.method=xpmin``).
In the ``env`` section, keys that are not fields (``env.k=4``) are the env's own arguments. Errors are
marl train's: a wrong key names the valid keys and the closest spelling, values are type-checked.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from marl.config import (
    EnvConfig,
    HyperConfig,
    RayConfig,
    Schema,
    config_to_dict,
    config_to_yaml,
    did_you_mean,
    find_config_file,
    is_file,
    list_presets,
    move_keys,
    presets_hint,
    read_yaml,
    require,
    split_arguments,
)
from marl.errors import ConfigError

PRESET_DIR = "population"
GROUP = "agents"  # the two seats' agent group (native envs: seat_0, seat_1; PettingZoo: env.seats)
METHODS = ("xpmin", "selfplay", "specialists")
NO_LABEL = -1  # a specialist target for which no label pays


@dataclass
class RunSection:
    """Run bookkeeping shared by the population commands (train, extract, generalist). They count
    iterations; marl train's experiment section counts frames (total_frames) instead."""

    name: str = "population"  # run-name prefix
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 1  # torch CPU threads (small per-step batches: 1 is fastest on CPU); 0 = torch's default
    iterations: int = 300  # training iterations (rollout + update)
    runs_dir: str = "results/runs"
    checkpoint_every: int = 25  # iterations; the last iteration and Ctrl-C always checkpoint
    keep_checkpoints: int = 3
    progress: bool = True  # tqdm progress bar with frames/s
    eval_every: int = 25  # iterations between evaluations; 0 = off


@dataclass
class ExperimentSection(RunSection):
    """Run bookkeeping of a population, and its all-pairs evaluations (XP matrix image, SP labels)."""

    name: str = "population"  # default: the preset's name, else population_<method>
    eval_envs_per_pair: int = 16  # episodes per ordered pair in an evaluation
    eval_deterministic: bool = True  # evaluate the members' most likely actions
    eval_specialists: str | None = None  # a specialists run: O and per-specialist success in each evaluation


@dataclass
class EnvSection:
    """The two-seat env (`native/matrix_game`, `native/cooking`, or `pettingzoo`); unknown keys are the env's
    arguments (a PettingZoo factory's keyword arguments)."""

    name: str = "native/matrix_game"
    max_steps: int = 10
    entry_point: str | None = None  # pettingzoo: "package.module:factory" returning a two-agent env
    seats: list[str] | None = None  # pettingzoo: the agents playing seat 0 and seat 1, in that order
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"merge": True, "extra": True})


@dataclass
class PopulationSection:
    """The population and how its members are paired."""

    method: Literal["xpmin", "selfplay", "specialists"] = "xpmin"
    size: int = 8  # N members
    xp_lambda: float = 0.3  # XP-min: weight of the best other partner's cross-play return
    xp_warmup_frames: int = 0  # XP-min: env steps of self-play objective (lambda 0) before the XP term starts
    # XP-min: the XP term applies to a member only while it does at least as well with itself as with its
    # best partner (pairs.gated_lambda: a member that cannot yet succeed with itself is not pushed off
    # every behaviour it tries)
    xp_gate: bool = False
    # the gate's tolerance, a fraction of the best partner's return: the term stays on while self-play is at
    # least (1 - margin) times it. Members that cook alike have equal returns up to noise, and j* is the best
    # of N-1 noisy estimates, so without a margin the gate flickers shut for about half of them
    xp_gate_margin: float = 0.25
    pairs: Literal["all", "sampled"] = "all"  # xpmin: all N*N ordered pairs, or SP + sampled partners
    partners_per_member: int = 2  # pairs=sampled: XP partners per member per iteration (both seat orders)
    partner_sampling: Literal["uniform", "bandit"] = "bandit"  # pairs=sampled: how partners are drawn
    envs_per_pair: int = 16  # env slots per pair in the training rollout
    xp_estimate_decay: float = 0.0  # j* estimate: new = decay * old + (1 - decay) * this iteration's return
    label_key: str = "convention"  # the env's info key labelling an episode's behaviour (cooking: recipe)
    restrict_kwarg: str = "conventions"  # specialists: env argument restricting what pays (cooking: recipes)
    # specialists: member i's label (-1: no label pays it, e.g. the student of a teacher that never delivers);
    # null = 0..N-1
    specialist_targets: list[int] | None = None


@dataclass
class PPOSection:
    """The PPO settings every population command shares (the defaults of the partner-population study)."""

    lr: float = 5e-4
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.3
    entropy_coef: float = 0.03
    value_coef: float = 0.5
    max_grad_norm: float = 0.5  # populations: per member (independent scheme), or over all of them (hyper)
    epochs: int = 4
    rollout_steps: int = 16  # env steps per slot per iteration
    normalize_advantage: bool = True  # per member, over the samples it learns from
    precision: Literal["float32", "bfloat16"] = "float32"  # the update's, as in marl train


@dataclass
class AlgorithmSection(PPOSection):
    """PPO of all members at once."""

    # frames (env steps of one slot) per gradient step, as in marl train; every minibatch holds the same
    # share of each member's samples; 0 = the whole rollout in one
    minibatch_size: int = 4096


@dataclass
class ModelSection:
    """Every member's actor and critic MLP."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: Literal["tanh", "relu", "elu", "gelu", "silu"] = "tanh"


@dataclass
class SharingSection:
    """How the members' networks are held: stacked weights, or generated by a hypernetwork from member
    embeddings (`hyper`: marl train's HyperMARL settings, sharing.hyper.*)."""

    scheme: Literal["independent", "hyper"] = "independent"
    hyper: HyperConfig = field(default_factory=HyperConfig)


@dataclass
class CollectorSection:
    """Where the training rollouts run (evaluations always run in-process)."""

    num_workers: int = 0  # 0 = in-process; N = N Ray rollout workers, the pairs split over them
    worker_threads: int = 1  # torch CPU threads per worker


@dataclass
class PopulationConfig:
    """The whole `marl population train` configuration."""

    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    env: EnvSection = field(default_factory=EnvSection)
    population: PopulationSection = field(default_factory=PopulationSection)
    algorithm: AlgorithmSection = field(default_factory=AlgorithmSection)
    model: ModelSection = field(default_factory=ModelSection)
    sharing: SharingSection = field(default_factory=SharingSection)
    collector: CollectorSection = field(default_factory=CollectorSection)
    ray: RayConfig = field(default_factory=RayConfig)  # marl train's: address, num_cpus

    def env_config(self, num_envs: int) -> EnvConfig:
        """The main config's `EnvConfig` for `envs.factory.make_env` with `num_envs` slots."""
        pettingzoo = self.env.name == "pettingzoo"  # its two seats form the group "agents", as natively
        return EnvConfig(
            name=self.env.name,
            entry_point=self.env.entry_point,
            groups={GROUP: list(self.env.seats)} if pettingzoo and self.env.seats else None,
            info_keys=[self.population.label_key, "success"] if pettingzoo else None,
            num_envs=num_envs,
            max_steps=self.env.max_steps,
            continuous_actions=False,
            device="auto",
            kwargs=copy.deepcopy(self.env.kwargs),
        )


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------


def parse_population_args(args: list[str]) -> tuple[str | None, list[tuple[str, Any]], str | None]:
    """CLI words -> (preset, dotted overrides with YAML-parsed values, resume run dir)."""
    named, dotted, _ = split_arguments(list(args), ("method", "preset", "resume"), SCHEMA)
    if "method" in named:
        dotted.insert(0, ("population.method", named["method"]))
    return named.get("preset"), dotted, named.get("resume")


def load_population_config(args: list[str] = (), config_dir: Path | None = None) -> PopulationConfig:
    """Defaults < preset < overrides, validated. `resume=` in `args` is ignored here (the CLI handles it)."""
    preset, overrides, _ = parse_population_args(list(args))
    tree = SCHEMA.defaults()
    if preset is not None:
        path = find_preset(preset, config_dir)
        tree["experiment"]["name"] = path.stem
        SCHEMA.merge(tree, read_yaml(path), str(path))
    elif not any(key == "experiment.name" for key, _ in overrides):
        method = dict(overrides).get("population.method", tree["population"]["method"])
        tree["experiment"]["name"] = f"population_{method}"
    for key, value in overrides:
        SCHEMA.set(tree, key, value, "command line")
    return SCHEMA.build(tree)


def find_preset(name: str, config_dir: Path | None = None) -> Path:
    """`name` -> configs/population/<name>.yaml, or `name` itself when it is a .yaml path."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        if not is_file(path):
            raise ConfigError(
                f"Population preset file not found: {name[:200]} (resolved to {path.absolute()})."
            )
        return path
    path = find_config_file(f"{PRESET_DIR}/{name}.yaml", config_dir)
    if path is None:
        raise ConfigError(
            f"Unknown population preset {name!r}. {presets_hint(PRESET_DIR, config_dir)}"
            f"{did_you_mean(name, list_presets(PRESET_DIR, config_dir), prefix='preset=')} Or pass a file: "
            "preset=path/to/file.yaml."
        )
    return path


def check_config(cfg: PopulationConfig) -> None:
    """Value checks that types cannot express; the first failure raises ConfigError."""
    exp, pop, alg = cfg.experiment, cfg.population, cfg.algorithm
    check_run(exp)
    check_ppo(alg)
    check_counts(
        {
            "experiment.eval_envs_per_pair": exp.eval_envs_per_pair,
            "env.max_steps": cfg.env.max_steps,
            "population.envs_per_pair": pop.envs_per_pair,
            "sharing.hyper.embedding_dim": cfg.sharing.hyper.embedding_dim,
            "sharing.hyper.hidden_size": cfg.sharing.hyper.hidden_size,
            "collector.worker_threads": cfg.collector.worker_threads,
            **{f"model.hidden_sizes[{i}]": size for i, size in enumerate(cfg.model.hidden_sizes)},
        },
        {
            "population.xp_lambda": pop.xp_lambda,
            "population.xp_warmup_frames": pop.xp_warmup_frames,
            "algorithm.minibatch_size": alg.minibatch_size,
            "collector.num_workers": cfg.collector.num_workers,
            "ray.num_cpus": cfg.ray.num_cpus,
        },
    )
    require(
        0 <= pop.xp_gate_margin < 1,
        f"'population.xp_gate_margin' must be in [0, 1) (a fraction of the best partner's return), got "
        f"{pop.xp_gate_margin}.",
    )
    require(
        0 <= pop.xp_estimate_decay < 1,
        f"'population.xp_estimate_decay' must be in [0, 1), got {pop.xp_estimate_decay}.",
    )
    require(
        cfg.env.name.startswith("native/") or cfg.env.name == "pettingzoo",
        f"'env.name={cfg.env.name}': populations train on two-seat envs whose info labels each episode's "
        "behaviour: the native ones (native/matrix_game, native/cooking) or a PettingZoo env "
        "(env.name=pettingzoo env.entry_point=package.module:factory env.seats=[agent_a, agent_b]).",
    )
    if cfg.env.name == "pettingzoo":
        require(
            cfg.env.entry_point is not None and cfg.env.seats is not None and len(cfg.env.seats) == 2,
            "A PettingZoo population env needs env.entry_point=package.module:factory and env.seats=[a, b] "
            f"(the env's two agents, seat 0 first); got entry_point={cfg.env.entry_point!r}, "
            f"seats={cfg.env.seats!r}. Its agents' infos must report, at every step, "
            f"'{cfg.population.label_key}' (population.label_key: the behaviour label so far, -1 for none) "
            "and 'success' (0 or 1).",
        )
    else:
        require(
            cfg.env.entry_point is None and cfg.env.seats is None,
            f"env.entry_point and env.seats are PettingZoo settings, but env.name={cfg.env.name!r}. Drop "
            "them.",
        )
    minimum = 2 if pop.method == "xpmin" else 1
    require(
        pop.size >= minimum,
        f"'population.size' must be >= {minimum} for method {pop.method}, got {pop.size}.",
    )
    if pop.method == "xpmin" and pop.pairs == "sampled":
        require(
            1 <= pop.partners_per_member <= pop.size - 1,
            f"'population.partners_per_member={pop.partners_per_member}' must be in 1..{pop.size - 1} "
            f"(population.size - 1) with population.pairs=sampled.",
        )
    if pop.specialist_targets is not None:
        require(
            pop.method == "specialists",
            f"'population.specialist_targets' is only used by method specialists, not {pop.method}. "
            "Drop it or set method=specialists.",
        )
        require(
            len(pop.specialist_targets) == pop.size,
            f"'population.specialist_targets' lists {len(pop.specialist_targets)} labels but population.size="
            f"{pop.size}: give one target label per member (e.g. [0, 1, 2, 3] for 4 members).",
        )
        require(
            all(t >= NO_LABEL for t in pop.specialist_targets),
            f"'population.specialist_targets' must be label indices >= 0 (or {NO_LABEL}: no label pays that "
            f"member), got {pop.specialist_targets}.",
        )


def specialist_targets(cfg: PopulationConfig) -> list[int]:
    """Member i's target label in method specialists (default: i)."""
    targets = cfg.population.specialist_targets
    return list(range(cfg.population.size)) if targets is None else list(targets)


def check_run(exp: RunSection) -> None:
    """The bookkeeping counts of an `experiment` section."""
    check_counts(
        {"experiment.iterations": exp.iterations, "experiment.keep_checkpoints": exp.keep_checkpoints},
        {
            "experiment.seed": exp.seed,
            "experiment.threads": exp.threads,
            "experiment.checkpoint_every": exp.checkpoint_every,
            "experiment.eval_every": exp.eval_every,
        },
    )


def check_ppo(alg: PPOSection) -> None:
    """The ranges of the shared PPO settings of an `algorithm` section."""
    check_counts(
        {"algorithm.epochs": alg.epochs, "algorithm.rollout_steps": alg.rollout_steps},
        {"algorithm.entropy_coef": alg.entropy_coef, "algorithm.value_coef": alg.value_coef},
    )
    for key, value in {
        "algorithm.lr": alg.lr,
        "algorithm.adam_eps": alg.adam_eps,
        "algorithm.clip_epsilon": alg.clip_epsilon,
        "algorithm.max_grad_norm": alg.max_grad_norm,
    }.items():
        require(value > 0, f"'{key}' must be > 0, got {value}.")
    require(0 < alg.gamma <= 1, f"'algorithm.gamma' must be in (0, 1], got {alg.gamma}.")
    require(0 <= alg.gae_lambda <= 1, f"'algorithm.gae_lambda' must be in [0, 1], got {alg.gae_lambda}.")


def check_counts(positive: dict[str, Any], non_negative: dict[str, Any]) -> None:
    """{dotted key: value} that must be positive integers, and numbers that must be >= 0; None (a method's
    default) passes."""
    for key, value in positive.items():
        require(value is None or value > 0, f"'{key}' must be a positive integer, got {value}.")
    for key, value in non_negative.items():
        require(value is None or value >= 0, f"'{key}' must be >= 0, got {value}.")


# What any resumed run may change: its length and bookkeeping (each trainer adds its evaluation settings)
RESUMABLE_RUN = (  # a resumed run stays in its directory, so its name and runs_dir are only a record
    "experiment.name",
    "experiment.runs_dir",
    "experiment.iterations",
    "experiment.threads",
    "experiment.progress",
    "experiment.checkpoint_every",
    "experiment.keep_checkpoints",
    "experiment.eval_every",
)


def check_resume(saved: Any, cfg: Any, may_change: tuple[str, ...], run: str) -> None:
    """A resumed run (`run`: "generalist run", ...) may change only the dotted keys `may_change`."""
    a, b = config_to_dict(saved), config_to_dict(cfg)
    changed = [
        f"{section}.{key}: {a[section][key]!r} -> {b[section][key]!r}"
        for section in a
        for key in a[section]
        if a[section][key] != b[section][key] and f"{section}.{key}" not in may_change
    ]
    require(
        not changed,
        f"A resumed {run} must train what it started with, but these settings differ from its saved ones: "
        f"{'; '.join(changed)}. Only {', '.join(may_change)} may change on resume.",
    )


# Saved configs of earlier versions: knobs that moved to marl train's names
MOVED = {
    "population.scheme": "sharing.scheme",
    "model.hyper_variant": "sharing.hyper.variant",
    "model.hyper_embedding_dim": "sharing.hyper.embedding_dim",
    "model.hyper_hidden": "sharing.hyper.hidden_size",
}


def upgrade(data: dict) -> dict:
    """A saved config of an earlier version in today's keys: `MOVED` keys at their place, and the count of
    minibatches per epoch (``algorithm.minibatches``) as the frames per minibatch it meant."""
    data = move_keys(data, MOVED)
    algorithm = data.get("algorithm") or {}
    if "minibatches" in algorithm:
        tree = SCHEMA.defaults()
        SCHEMA.merge(tree, {k: v for k, v in data.items() if k != "algorithm"}, "saved config")
        frames = rollout_frames(
            SCHEMA.build(tree), algorithm.get("rollout_steps", tree["algorithm"]["rollout_steps"])
        )
        algorithm = dict(algorithm)
        algorithm["minibatch_size"] = -(-frames // algorithm.pop("minibatches"))
        data = {**data, "algorithm": algorithm}
    return data


def rollout_frames(cfg: PopulationConfig, steps: int | None = None) -> int:
    """Frames (slot steps) of one training rollout: pairs x envs per pair x steps."""
    pop, n = cfg.population, cfg.population.size
    if pop.method != "xpmin":
        pairs = n
    elif pop.pairs == "all":
        pairs = n * n
    else:
        pairs = n + 2 * n * pop.partners_per_member
    return pairs * pop.envs_per_pair * (steps or cfg.algorithm.rollout_steps)


SCHEMA = Schema(PopulationConfig, check_config, upgrade=upgrade, moved=MOVED)
# The names the trainers use: a validated config from a saved dict, a copy with dotted overrides, and back
population_config_from_dict = SCHEMA.from_dict
apply_overrides = SCHEMA.with_overrides
population_config_to_dict = config_to_dict
population_config_to_yaml = config_to_yaml

"""Typed, composable YAML configuration.

A run's configuration is built in three steps, all before anything starts:

1. Group choices pick one preset file per group (`algorithm=ippo`, `env=vmas/dispersion`, `sharing=hyper`).
   A group is named after the config section it fills: `configs/<group>/<choice>.yaml` holds that section's
   body. Choices come from `configs/default.yaml`'s `defaults:`, then an experiment file's `defaults:`, then
   the command line, each beating the one before.
2. Section values are layered on top of the schema defaults: preset files < `default.yaml` bodies < the
   experiment file's bodies < command-line dotted overrides (`algorithm.lr=3e-4`).
3. The merged tree is type-checked against the dataclasses below and sanity-checked as a whole.

Every mistake raises `ConfigError` with a message that names the key, what was expected and, where it can,
the closest valid spelling. In the `env` section, keys that are not `EnvConfig` fields are scenario kwargs.
The engine (`Schema`: set a dotted key, merge a layer, build and check) takes any root dataclass; `marl
population train`, `generalist` and `extract` use it with their own sections (marl/population/).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from marl.errors import ConfigError

# Limits on what the config loader accepts, so that no input (a typo, a fuzzer, a hostile file) can make it
# hang, exhaust memory or overflow the stack: every check below costs at most these many steps.
MAX_ARGUMENT_CHARS = 10_000  # one key=value on the command line
MAX_FILE_BYTES = 1_000_000  # one YAML config file
MAX_DEPTH = 16  # nesting of lists and mappings inside one value (or a file)
MAX_ITEMS = 10_000  # scalars, lists and mappings inside one value (YAML aliases count each time used)
MAX_KEY_PARTS = 8  # components of a dotted key (env.kwargs.a.b...)
INT_LIMIT = 2**63  # integers must lie in [-2^63, 2^63): what a torch int64 holds
SEED_LIMIT = 2**31  # seeds must lie in [0, 2^31): numpy, VMAS and PettingZoo accept these (plus offsets)
MAX_COUNT_KWARG = 1024  # scenario counts such as env.n_agents


def _packaged_config_dir() -> Path:
    """The presets that ship with the package: `marl/configs` in an installed wheel, `<repo>/configs` in a
    source checkout (the repository keeps configs/ at the top level; pyproject.toml installs it as
    marl/configs)."""
    here = Path(__file__).resolve().parent
    installed, checkout = here / "configs", here.parent / "configs"
    return installed if (installed / "default.yaml").is_file() else checkout


PACKAGED_CONFIG_DIR: Path = _packaged_config_dir()


def config_dirs(config_dir: Path | str | None = None) -> list[Path]:
    """Where presets are looked up, first match wins: `config_dir` alone when given; otherwise the
    directories in `$MARL_CONFIG_DIR` (a user's own presets, several joined with the path separator),
    then the packaged presets. A user's file of the same name overrides the packaged one; every other
    preset still comes from the package."""
    if config_dir is not None:
        return [Path(config_dir)]
    user = [Path(d).expanduser() for d in os.environ.get("MARL_CONFIG_DIR", "").split(os.pathsep) if d]
    return [*user, PACKAGED_CONFIG_DIR]


def is_file(path: Path) -> bool:
    """`path.is_file()`, False also for paths the OS refuses to look up (too long, NUL, no permission)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def find_config_file(relative: str | Path, config_dir: Path | str | None = None) -> Path | None:
    """The first `<dir>/<relative>` (also tried with .yml for .yaml) that exists in `config_dirs`."""
    relative = Path(relative)
    names = [relative, relative.with_suffix(".yml")] if relative.suffix == ".yaml" else [relative]
    for directory in config_dirs(config_dir):
        for name in names:
            if is_file(directory / name):
                return directory / name
    return None


def resolve_config_path(path: str | Path, kind: str) -> Path:
    """A YAML file named on the command line (a sweep or Pareto file): the path itself when it exists,
    else the same file among the presets (`configs/sweeps/x.yaml`, `sweeps/x.yaml` or just `x` for
    kind "sweeps"), so the README's commands also run from an empty directory with an installed wheel."""
    given = Path(path).expanduser()
    if is_file(given):
        return given
    parts = given.with_suffix(".yaml").parts if given.name and given.suffix != ".yml" else given.parts
    if parts and parts[0] == "configs":
        parts = parts[1:]
    candidates = [Path(*parts)] if parts else []
    if len(parts) == 1:
        candidates.append(Path(kind, *parts))
    for candidate in candidates:
        found = find_config_file(candidate)
        if found is not None:
            return found
    presets = sorted(p.stem for d in config_dirs() if (d / kind).is_dir() for p in (d / kind).glob("*.y*ml"))
    raise ConfigError(
        f"File {path} does not exist (resolved to {_absolute(given)}), and it is none of the packaged {kind} "
        f"files ({', '.join(presets) or 'none'}). Pass an existing YAML file, or a packaged name such as "
        f"{presets[0] if presets else 'name'}."
    )


# --------------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------------


@dataclass
class ExperimentConfig:
    """What to run, for how long, and where to put the results."""

    name: str = "default"  # run-name prefix
    seed: int = 0
    device: str = "auto"  # learner device: auto | cpu | cuda | cuda:N
    total_frames: int = 300_000  # env steps to train for; one frame = one step of one env
    frames_per_batch: int = 6_000  # frames collected per training iteration
    eval_every: int = 10  # iterations between deterministic evaluations; 0 = off
    eval_episodes: int = 16
    checkpoint_every: int = 10  # iterations; the last iteration and Ctrl-C always checkpoint
    keep_checkpoints: int = 3  # most recent checkpoints kept on disk
    runs_dir: str = "results/runs"
    progress: bool = True  # show a progress bar
    threads: int = 0  # torch CPU threads; 0 = torch's default (1 avoids oversubscribing a busy machine)


@dataclass
class EnvConfig:
    """The environment. Keys that are not fields here (e.g. `n_agents`) go to `kwargs`."""

    name: str = "vmas/navigation"  # "vmas/<scenario>", or "pettingzoo" with entry_point
    num_envs: int = 60  # vectorised environments stepped together
    max_steps: int = 100  # episode length limit
    continuous_actions: bool = True
    device: str = "auto"  # auto = the learner device
    entry_point: str | None = None  # pettingzoo: "package.module:factory" returning a Parallel or AEC env
    # {group: [agent names, or indices for VMAS]}; default: PettingZoo by space, VMAS by name prefix
    groups: dict[str, list[Any]] | None = None
    info_keys: list[str] | None = None  # pettingzoo: info numbers to expose as (group, "info", key)
    # scenario kwargs; the section's unknown keys land here
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"merge": True, "extra": True})


@dataclass
class AlgorithmConfig:
    """PPO hyperparameters. MAPPO has a centralised critic, IPPO a per-agent local one."""

    name: Literal["mappo", "ippo"] = "mappo"
    lr: float = 3e-4
    lr_schedule: Literal["constant", "linear"] = "constant"  # linear: lr x (1 - frames / total_frames)
    adam_eps: float = 1e-8
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.9
    clip_epsilon: float = 0.2  # PPO ratio clip
    epochs: int = 10  # passes over each batch
    minibatch_size: int = 1000  # frames per gradient step
    entropy_coef: float = 0.0
    value_coef: float = 1.0
    max_grad_norm: float = 1.0
    normalize_advantage: bool = True
    value_normalization: bool = False
    critic_input: Literal["observations", "state"] = "observations"  # MAPPO centralised critic input
    # policy distribution for continuous actions; discrete actions always use a categorical
    action_distribution: Literal["tanh_gaussian", "gaussian"] = "tanh_gaussian"
    initial_std: float = 1.0  # initial action std of Gaussian policies
    chunk_length: int = 16  # model.recurrent: steps per BPTT chunk (PPO samples whole chunks)
    # bfloat16: the PPO update under autocast (matmuls and activations in bfloat16, losses in float32; about
    # 1.7x faster on CPUs with AMX such as Sapphire Rapids, and on recent GPUs); rollouts stay float32
    precision: Literal["float32", "bfloat16"] = "float32"


@dataclass
class ModelConfig:
    """MLP trunk shared by actor and critic architectures."""

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    activation: Literal["tanh", "relu", "elu", "gelu", "silu"] = "tanh"
    recurrent: bool = False  # actors carry a GRU state through each episode (the critic stays feed-forward)
    recurrent_size: int = 64  # the GRU's state size
    # what reads observations before the MLP: auto = a conv encoder for image-shaped ones (>= 16x16), cnn =
    # for every image-shaped one, mlp = none (agents/encoders.py)
    encoder: Literal["auto", "mlp", "cnn"] = "auto"


@dataclass
class NetworkSharingConfig:
    """How one network (actor or critic) is shared between agents."""

    scheme: Literal["shared", "independent", "grouped", "hyper"] = "shared"
    agent_id: bool = False  # shared only: append a one-hot agent ID to the input


@dataclass
class HyperConfig:
    """HyperMARL: a hypernetwork maps a learned agent embedding to each agent's weights."""

    variant: Literal["linear", "mlp", "mip"] = "mlp"
    embedding_dim: int = 8
    hidden_size: int = 64  # hidden width of the mlp hypernetwork


@dataclass
class SharingConfig:
    """Parameter sharing for actor and critic; `roles` groups agents for the `grouped` scheme."""

    actor: NetworkSharingConfig = field(default_factory=NetworkSharingConfig)
    critic: NetworkSharingConfig = field(default_factory=NetworkSharingConfig)
    roles: dict[str, list[int]] | None = None  # e.g. {patroller: [0, 1, 2], searcher: [3, 4, 5]}
    hyper: HyperConfig = field(default_factory=HyperConfig)


@dataclass
class MetricsConfig:
    """Diversity and specialisation metrics (SND, I(agent; action | obs), I(agent; cell)) during training.

    Every `every` iterations they are computed on deterministic evaluation episodes from the held-out starts
    and logged under `team/` (scalars, and an SND heatmap image). See docs/metrics.md.
    """

    every: int = 10  # iterations between computations; 0 = off
    episodes: int = 16  # evaluation episodes the metrics are computed on
    cell_size: float = 0.25  # side of the grid cells (world units) for I(agent; cell) and role entropy
    action_samples: int = 16  # Monte Carlo draws per observation and agent (Gaussian I(agent; action|obs))
    max_observations: int = 20_000  # observations (pooled over agents) SND and I(agent; action|obs) use
    bootstrap: int = 200  # bootstrap replicates for the confidence intervals
    seed: int = 0  # seed of the metrics' own sampling (never touches the training RNG)
    position_mi: bool = False  # also I(agent; position) on continuous positions, with a verdict (slower)


@dataclass
class CollectorConfig:
    """Where rollouts are collected: in the learner's process, or by Ray rollout workers."""

    num_workers: int = 0  # 0 = in-process (no Ray); N = N Ray actors, each with env.num_envs / N envs
    worker_threads: int = 1  # torch threads per worker
    # seats held by frozen policies: {agent name or index: run dir or checkpoint}, e.g. {agent_2: runs/x}
    frozen: dict[str, str] | None = None


@dataclass
class RayConfig:
    """The Ray instance the rollout workers run on (only used when collector.num_workers > 0)."""

    address: str | None = None  # null = start a local instance; "auto" or "host:port" = join a cluster
    num_cpus: int = 0  # local instance only: CPUs it may use; 0 = one per worker


@dataclass
class Config:
    """The whole configuration. Adding a section is one line here (plus its dataclass)."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    ray: RayConfig = field(default_factory=RayConfig)


@cache
def _fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config dataclass."""
    return get_type_hints(cls)


SECTIONS: tuple[str, ...] = tuple(_fields(Config))
"""Section names; each is also a group name (`experiment=` picks an experiment file instead)."""


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def parse_overrides(args: list[str]) -> tuple[dict[str, str], list[tuple[str, Any]], str | None]:
    """Split CLI arguments into (group choices, dotted overrides with YAML-parsed values, resume dir)."""
    choices: dict[str, str] = {}
    overrides: list[tuple[str, Any]] = []
    resume: str | None = None
    for arg in args:
        check_argument(arg)
        key, sep, raw = arg.partition("=")
        key = key.strip()
        if not sep or not key or " " in key:
            raise ConfigError(
                f"Malformed override {arg!r}: expected the form key=value, e.g. algorithm.lr=3e-4 "
                "(set one value), env=vmas/balance (pick a preset) or resume=<run dir>."
            )
        if key == "resume":
            if not raw.strip():
                raise ConfigError("'resume=' needs a run directory, e.g. resume=results/runs/<run name>.")
            resume = raw.strip()
        elif "." in key:
            overrides.append((key, parse_value(key, raw)))
        elif key in SECTIONS:
            if not raw.strip():
                raise ConfigError(f"'{key}=' needs a preset name. {presets_hint(key, None)}")
            choices[key] = raw.strip()
        else:
            raise ConfigError(
                f"Unknown config group {key!r} in {arg!r}. Groups: {', '.join(SECTIONS)} (pick a preset, "
                f"e.g. algorithm=ippo), plus resume=<run dir>. To set one value write section.key=value, "
                f"e.g. algorithm.lr=3e-4.{did_you_mean(key, [*SECTIONS, 'resume'], suffix='=' + raw)}"
            )
    return choices, overrides, resume


def load_config(args: list[str] = (), config_dir: Path | None = None) -> Config:
    """Compose presets, experiment file and CLI overrides into a validated `Config`.

    `resume=<dir>` in `args` is ignored here; the caller restores that run's config instead.
    """
    cli_choices, overrides, _resume = parse_overrides(list(args))

    default_file = find_config_file("default.yaml", config_dir)
    if default_file is None:
        where = ", ".join(_show(d) for d in config_dirs(config_dir))
        raise ConfigError(
            f"No default.yaml in the config directories ({where}). The package ships one in marl/configs: "
            "reinstall the package (pip install marl-hetero), or unset MARL_CONFIG_DIR / pass a directory "
            "that has default.yaml."
        )
    base_choices, base_body = _split_defaults(read_yaml(default_file), default_file, config_dir)

    exp_file, exp_choices, exp_body = None, {}, {}
    if "experiment" in cli_choices:
        exp_file = _find_experiment(cli_choices.pop("experiment"), config_dir)
        exp_choices, exp_body = _split_defaults(read_yaml(exp_file), exp_file, config_dir)

    tree = TRAIN.defaults()
    for group, choice in {**base_choices, **exp_choices, **cli_choices}.items():
        preset, source = _load_preset(group, choice, config_dir)
        TRAIN.merge(tree, {group: preset}, source)
    TRAIN.merge(tree, base_body, _show(default_file))
    if exp_file is not None:
        tree["experiment"]["name"] = exp_file.stem  # the experiment's name, unless its body sets one
        TRAIN.merge(tree, exp_body, _show(exp_file))
    for key, value in overrides:
        TRAIN.set(tree, key, value, "command line")
    return TRAIN.build(tree)


def config_from_dict(data: dict) -> Config:
    """Validate a plain nested dict (e.g. a run's saved config.yaml); missing keys take schema defaults."""
    return TRAIN.from_dict(data)


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict of builtin types (tuples become lists), safe for `yaml.safe_dump`."""
    return _plain(dataclasses.asdict(cfg))


def config_to_yaml(cfg: Any) -> str:
    """The config as YAML text, sections in schema order."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def apply_overrides(cfg: Config, overrides: list[tuple[str, Any]]) -> Config:
    """A validated copy of `cfg` with dotted overrides applied; `cfg` itself is not changed."""
    return TRAIN.with_overrides(cfg, overrides)


def list_presets(group: str, config_dir: Path | None = None) -> list[str]:
    """Preset names of a group, e.g. ['vmas/balance', 'vmas/dispersion', ...] for 'env', over every
    config directory (see `config_dirs`)."""
    names: set[str] = set()
    for directory in config_dirs(config_dir):
        root = directory / group
        if root.is_dir():
            files = [p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
            names.update(p.relative_to(root).with_suffix("").as_posix() for p in files)
    return sorted(names)


# --------------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------------


def _split_defaults(data: dict, path: Path, config_dir: Path | None) -> tuple[dict[str, str], dict]:
    """Separate a file's `defaults:` (group choices) from its section bodies."""
    body = dict(data)
    choices = body.pop("defaults", None) or {}
    groups = [s for s in SECTIONS if s != "experiment"]
    if not isinstance(choices, dict):
        raise ConfigError(
            f"'defaults' in {_show(path)} must be a mapping of group to preset, e.g. "
            f"{{algorithm: mappo, env: vmas/navigation}}, got {_kind(choices)}."
        )
    for group, choice in choices.items():
        if group not in groups:
            extra = (
                " An experiment is chosen on the command line, not in defaults."
                if group == "experiment"
                else ""
            )
            raise ConfigError(
                f"Unknown group {group!r} in 'defaults' of {_show(path)}. Groups: {', '.join(groups)}.{extra}"
                f"{did_you_mean(str(group), groups)}"
            )
        if not isinstance(choice, str) or not choice:
            raise ConfigError(
                f"'defaults.{group}' in {_show(path)} must be a preset name, got {choice!r}. "
                f"{presets_hint(group, config_dir)}"
            )
    return choices, body


def _find_experiment(choice: str, config_dir: Path | None) -> Path:
    """Resolve `experiment=<name>` to configs/experiment/<name>.yaml; `experiment=<file>.yaml` is a path."""
    if choice.endswith((".yaml", ".yml")):
        path = Path(choice).expanduser()
        if not is_file(path):
            raise ConfigError(f"Experiment file not found: {_clip(choice)} (resolved to {_absolute(path)}).")
        return path
    found = find_config_file(f"experiment/{choice}.yaml", config_dir)
    if found is not None:
        return found
    raise ConfigError(
        f"Unknown experiment {choice!r}. {presets_hint('experiment', config_dir)} Or pass your own file: "
        f"experiment=path/to/file.yaml.{did_you_mean(choice, list_presets('experiment', config_dir))}"
    )


def _load_preset(group: str, choice: str, config_dir: Path | None) -> tuple[Any, str]:
    """Body of preset `choice` of `group` and where it came from. `env=vmas/<any>` needs no file."""
    names = list_presets(group, config_dir)
    path = find_config_file(f"{group}/{choice}.yaml", config_dir) if choice in names else None
    if path is not None:
        body = read_yaml(path, mapping=False)
        if group == "env" and isinstance(body, dict):
            body = {"name": choice, **body}  # the preset's name is the env name unless it says otherwise
        return body, _show(path)
    if group == "env" and re.fullmatch(r"vmas/[\w/]+", choice):
        return {"name": choice}, "command line"
    hint = " Any VMAS scenario also works without a preset: env=vmas/<scenario>." if group == "env" else ""
    raise ConfigError(
        f"Unknown {group} preset {choice!r}. {presets_hint(group, config_dir)}{hint}"
        f"{did_you_mean(choice, names, prefix=group + '=')}"
    )


@dataclass(frozen=True)
class Schema:
    """The engine for one configuration class: `root` is a dataclass whose fields are the sections (each a
    dataclass), `check` the cross-field checks run on every build, and `renames` maps the keys of an old flat
    layout of saved configs to their dotted place (`{"lr": "algorithm.lr"}`). `upgrade` rewrites a saved
    config of an earlier version into today's keys; `moved` ({old dotted key: new}) names, in the error for
    an old key given on the command line, where it went. `TRAIN` is marl train's."""

    root: type
    check: Callable[[Any], None]
    renames: Mapping[str, str] = field(default_factory=dict)
    upgrade: Callable[[dict], dict] = lambda data: data
    moved: Mapping[str, str] = field(default_factory=dict)

    @property
    def sections(self) -> tuple[str, ...]:
        return tuple(_fields(self.root))

    def defaults(self) -> dict:
        """The schema defaults as a plain tree, ready for `set` and `merge`."""
        return config_to_dict(self.root())

    def merge(self, tree: dict, layer: dict, source: str) -> None:
        """Merge a {section: body} mapping into the tree; an empty section body (`env:`) is a no-op."""
        for section, body in layer.items():
            if body is None and section in self.sections:
                continue
            self.set(tree, str(section), body, source)

    def set(self, tree: dict, key: str, value: Any, source: str) -> None:
        """Validate and set one dotted key. Mappings merge into sections; a section's unknown keys go to
        its field marked `extra` (env.n_agents -> env.kwargs.n_agents)."""
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"Malformed key {key!r} ({source}): expected section.key, e.g. algorithm.lr.")
        if key in self.moved:
            raise ConfigError(
                f"'{key}' ({source}) is now '{self.moved[key]}', the name marl train gives the same setting: "
                f"{self.moved[key]}=<value>."
            )
        if len(parts) > MAX_KEY_PARTS:
            raise ConfigError(
                f"The key {_clip(key)!r} ({source}) has {len(parts)} dotted parts; config keys have at most "
                f"{MAX_KEY_PARTS} (e.g. sharing.actor.scheme)."
            )
        node, cls, i = tree, self.root, 0
        while True:
            types_ = _fields(cls)
            # the field that takes the section's unknown keys (EnvConfig.kwargs), marked "extra"
            extra = next((f.name for f in dataclasses.fields(cls) if f.metadata.get("extra")), None)
            if parts[i] not in types_ and extra is not None:
                parts.insert(i, extra)  # e.g. env.n_agents -> env.kwargs.n_agents
            name, rest, path = parts[i], parts[i + 1 :], ".".join(parts[: i + 1])
            if name not in types_:
                raise ConfigError(_unknown_key_message(parts, i, cls, source, self.root))
            tp = types_[name]
            if dataclasses.is_dataclass(tp) and (rest or isinstance(value, dict)):
                if not rest:  # a mapping for a whole section merges key by key
                    for sub_key, sub_value in value.items():
                        self.set(tree, f"{path}.{sub_key}", sub_value, source)
                    return
                node, cls, i = node[name], tp, i + 1
                continue
            if rest:  # a key inside a mapping field, e.g. sharing.roles.patroller
                if get_origin(_strip_optional(tp)) is not dict:
                    raise ConfigError(
                        f"Unknown key {key!r} ({source}): '{path}' is a single value ({_describe(tp)}) "
                        f"and has no sub-keys. Set it directly: {path}=<value>."
                    )
                value = _nested_set(copy.deepcopy(node[name]) or {}, rest, value)
            elif isinstance(value, dict) and _merges(cls, name) and isinstance(node[name], dict):
                value = {**node[name], **value}
            node[name] = coerce_value(value, tp, path, source, example=_default(cls, name))
            return

    def build(self, tree: dict) -> Any:
        """Instantiate the dataclasses from a coerced tree and run the cross-field checks."""

        def build(cls: type, node: dict) -> Any:
            kwargs = {}
            for name, tp in _fields(cls).items():
                kwargs[name] = (
                    build(tp, node[name]) if dataclasses.is_dataclass(tp) else copy.deepcopy(node[name])
                )
            return cls(**kwargs)

        cfg = build(self.root, tree)
        self.check(cfg)
        return cfg

    def from_dict(self, data: Any, source: str = "config") -> Any:
        """Validate a plain nested dict (a saved config); missing keys take the defaults, and the keys of
        the old flat layout (`renames`) are read at their new place."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"A config must be a mapping of sections ({', '.join(self.sections)}), got {_kind(data)}."
            )
        check_plain(data, "config", "saved config")
        data = self.upgrade(data)
        tree = self.defaults()
        self.merge(
            tree, {k if k in self.sections else self.renames.get(k, k): v for k, v in data.items()}, source
        )
        return self.build(tree)

    def with_overrides(self, cfg: Any, overrides: list[tuple[str, Any]]) -> Any:
        """A validated copy of `cfg` with dotted overrides applied; `cfg` itself is not changed."""
        tree = config_to_dict(cfg)
        for key, value in overrides:
            self.set(tree, key, value, "command line")
        return self.build(tree)


def move_keys(data: dict, moves: Mapping[str, str]) -> dict:
    """A copy of the nested ``data`` with each dotted key of ``moves`` found in it set at its new dotted
    place instead (sections created as needed)."""
    data = copy.deepcopy(data)
    for old, new in moves.items():
        *path, name = old.split(".")
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or name not in node:
            continue
        value = node.pop(name)
        *path, name = new.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return data


def split_arguments(
    args: list[str], words: tuple[str, ...], schema: Schema, bare: bool = False
) -> tuple[dict[str, str], list[tuple[str, Any]], list[str]]:
    """Command-line words of a command other than `marl train` -> ({word: value} for its own words such as
    preset= or resume=, dotted overrides with YAML-parsed values, the arguments without '=' if `bare`)."""
    named: dict[str, str] = {}
    dotted: list[tuple[str, Any]] = []
    plain: list[str] = []
    for arg in args:
        check_argument(arg)
        key, sep, raw = arg.partition("=")
        key = key.strip()
        if not sep and bare:
            plain.append(arg.strip())
        elif not sep or not key or " " in key:
            raise ConfigError(
                f"Malformed argument {arg!r}: expected key=value, e.g. {words[0]}=... or a.b=1."
            )
        elif key in words:
            if not raw.strip():
                raise ConfigError(f"'{key}=' needs a value.")
            named[key] = raw.strip()
        elif "." in key:
            dotted.append((key, parse_value(key, raw)))
        else:
            valid = [*words, *(f"{s}.<key>" for s in schema.sections)]
            hint = (
                f" Did you mean '{schema.renames[key]}={_clip(raw)}'?"
                if key in schema.renames
                else did_you_mean(key, [*words, *schema.renames.values()])
            )
            raise ConfigError(f"Unknown argument {key!r} in {_clip(arg)!r}. Valid: {', '.join(valid)}.{hint}")
    return named, dotted, plain


def leaf_keys(root: type) -> dict[str, str]:
    """{field name: its dotted key} for the fields of every section of `root` (a flat layout's keys)."""
    return {name: f"{section}.{name}" for section, cls in _fields(root).items() for name in _fields(cls)}


def _nested_set(mapping: dict, parts: list[str], value: Any) -> dict:
    """mapping with mapping[p0][p1]... = value, creating inner mappings as needed."""
    inner = mapping
    for part in parts[:-1]:
        if not isinstance(inner.get(part), dict):
            inner[part] = {}
        inner = inner[part]
    inner[parts[-1]] = value
    return mapping


def _default(cls: type, name: str) -> Any:
    """The schema default of a field, used as an example in error messages (None if it has none)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return None


def _merges(cls: type, name: str) -> bool:
    """Whether a mapping field merges key by key (env.kwargs) rather than being replaced (sharing.roles)."""
    return any(f.name == name and f.metadata.get("merge") for f in dataclasses.fields(cls))


# --------------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------------


def coerce_value(value: Any, tp: Any, key: str, source: str, example: Any = None) -> Any:
    """`value` checked against type `tp` (ints pass as floats, integral floats as ints), or ConfigError.

    `example` (the field's default) is shown in the message as a valid setting.
    """
    origin, args = get_origin(tp), get_args(tp)

    def bad(note: str = "") -> ConfigError:
        if not note and example is not None and not dataclasses.is_dataclass(example):
            note = f" For example: {key}={_inline(example)}."
        return ConfigError(
            f"Invalid value for '{key}' ({source}): expected {_describe(tp)}, got {_show_value(value)} "
            f"({_kind(value)}).{note}"
        )

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = _strip_optional(tp)
        if get_origin(inner) is dict and not isinstance(value, dict):
            raise bad()
        return coerce_value(value, inner, key, source)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise ConfigError(
            f"Invalid value for '{key}' ({source}): {_show_value(value)} is not allowed. "
            f"Allowed values: {', '.join(args)}.{did_you_mean(str(value), args, prefix=key + '=')}"
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad(f" Write {key}=true or {key}=false.")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not -INT_LIMIT <= value < INT_LIMIT:
                raise bad(" It must lie in [-2^63, 2^63).")
            return value
        raise bad()
    if tp is float:
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise bad() from None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise bad()
        if isinstance(number, int) and not -INT_LIMIT <= number < INT_LIMIT:
            raise bad(" It must lie in [-2^63, 2^63).")
        if not math.isfinite(number):
            raise bad(" The value must be finite.")
        return float(number)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad(f" Write a YAML list in brackets, e.g. {key}={_inline(example or [64, 64])}.")
        return [coerce_value(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        for k in value:
            if not isinstance(k, str):
                raise ConfigError(f"Invalid key {k!r} in '{key}' ({source}): keys must be strings.")
        return {k: coerce_value(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        raise bad(f" Set single values with {key}.<key>=<value>.")
    raise TypeError(f"unsupported type {tp!r} in the config schema at '{key}'")


def _strip_optional(tp: Any) -> Any:
    """X for `X | None`, else tp."""
    if get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp


def _describe(tp: Any) -> str:
    """Human wording of a schema type."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return f"{_describe(_strip_optional(tp))} or null"
    if origin is Literal:
        return "one of " + ", ".join(args)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin is dict:
        return "a mapping" if args[1] is Any else f"a mapping from names to {_describe(args[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(_fields(tp))}"
    names = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, str(tp))


def _kind(value: Any) -> str:
    """Human name of a value's YAML type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "list", tuple: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


# --------------------------------------------------------------------------------------------------------
# Cross-field checks
# --------------------------------------------------------------------------------------------------------

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check(cfg: Config) -> None:
    """Value checks that types alone cannot express; the first failure raises ConfigError."""
    exp, env, alg, sharing = cfg.experiment, cfg.env, cfg.algorithm, cfg.sharing

    positive = {
        "experiment.total_frames": exp.total_frames,
        "experiment.frames_per_batch": exp.frames_per_batch,
        "experiment.eval_episodes": exp.eval_episodes,
        "experiment.keep_checkpoints": exp.keep_checkpoints,
        "env.num_envs": env.num_envs,
        "env.max_steps": env.max_steps,
        "algorithm.epochs": alg.epochs,
        "algorithm.minibatch_size": alg.minibatch_size,
        "sharing.hyper.embedding_dim": sharing.hyper.embedding_dim,
        "sharing.hyper.hidden_size": sharing.hyper.hidden_size,
        "metrics.episodes": cfg.metrics.episodes,
        "metrics.action_samples": cfg.metrics.action_samples,
        "metrics.max_observations": cfg.metrics.max_observations,
        "metrics.bootstrap": cfg.metrics.bootstrap,
        **{f"model.hidden_sizes[{i}]": size for i, size in enumerate(cfg.model.hidden_sizes)},
    }
    for key, value in positive.items():
        require(value > 0, f"'{key}' must be a positive integer, got {value}.")
    for key, value in {
        "experiment.seed": exp.seed,
        "experiment.eval_every": exp.eval_every,
        "experiment.checkpoint_every": exp.checkpoint_every,
        "experiment.threads": exp.threads,
        "metrics.every": cfg.metrics.every,
        "metrics.seed": cfg.metrics.seed,
        "collector.num_workers": cfg.collector.num_workers,
        "ray.num_cpus": cfg.ray.num_cpus,
    }.items():
        require(value >= 0, f"'{key}' must be >= 0, got {value}.")

    for key, value in {"experiment.seed": exp.seed, "metrics.seed": cfg.metrics.seed}.items():
        require(value < SEED_LIMIT, f"'{key}' must be below 2^31 ({SEED_LIMIT:,}), got {value}.")
    check_path_setting("experiment.runs_dir", exp.runs_dir)
    check_name_setting("experiment.name", exp.name)
    for key, value in {"experiment.device": exp.device, "env.device": env.device}.items():
        require(
            _DEVICE.fullmatch(value) is not None,
            f"Invalid value for '{key}': {value!r}. Use auto, cpu, cuda or cuda:N (e.g. cuda:0).",
        )
    require(
        re.fullmatch(r"vmas/[\w/]+|native/\w+", env.name) is not None or env.name == "pettingzoo",
        f"Invalid value for 'env.name': {env.name!r}. Expected vmas/<scenario> (e.g. vmas/navigation), "
        f"native/<name> (e.g. native/cooking) or pettingzoo (with env.entry_point=package.module:factory).",
    )
    require(
        env.name == "pettingzoo" or env.entry_point is None,
        f"env.entry_point is a PettingZoo setting, but env.name={env.name!r}. Use "
        f"env=pettingzoo to plug in a PettingZoo env.",
    )
    require(
        env.name == "pettingzoo" or env.info_keys is None,
        f"env.info_keys is a PettingZoo setting (VMAS and native envs expose their infos already), but "
        f"env.name={env.name!r}. Drop env.info_keys.",
    )
    require(
        not env.name.startswith("native/") or env.groups is None,
        f"env.groups cannot regroup {env.name}: its agents always form one group.",
    )
    if env.entry_point is not None:
        check_entry_point("env.entry_point", env.entry_point)
    check_scenario_counts(env.kwargs)

    require(cfg.metrics.cell_size > 0, f"'metrics.cell_size' must be > 0, got {cfg.metrics.cell_size}.")
    for key, value in {
        "algorithm.lr": alg.lr,
        "algorithm.adam_eps": alg.adam_eps,
        "algorithm.clip_epsilon": alg.clip_epsilon,
        "algorithm.max_grad_norm": alg.max_grad_norm,
        "algorithm.initial_std": alg.initial_std,
    }.items():
        require(value > 0, f"'{key}' must be > 0, got {value}.")
    for key, value in {
        "algorithm.entropy_coef": alg.entropy_coef,
        "algorithm.value_coef": alg.value_coef,
    }.items():
        require(value >= 0, f"'{key}' must be >= 0, got {value}.")
    require(0 < alg.gamma <= 1, f"'algorithm.gamma' must be in (0, 1], got {alg.gamma}.")
    require(0 <= alg.gae_lambda <= 1, f"'algorithm.gae_lambda' must be in [0, 1], got {alg.gae_lambda}.")
    require(
        not (alg.name == "ippo" and alg.critic_input == "state"),
        "'algorithm.critic_input=state' needs a centralised critic, but algorithm.name=ippo uses local "
        "critics. Use algorithm=mappo, or set algorithm.critic_input=observations.",
    )

    require(cfg.collector.worker_threads > 0, "'collector.worker_threads' must be a positive integer.")
    workers = cfg.collector.num_workers
    require(
        workers == 0 or env.num_envs % workers == 0,
        f"'env.num_envs={env.num_envs}' must split evenly over 'collector.num_workers={workers}' (each "
        f"worker steps env.num_envs / num_workers envs). Make env.num_envs a multiple of {workers}.",
    )
    _check_batch(exp.frames_per_batch, env.num_envs, alg.minibatch_size)
    if cfg.model.recurrent:
        _check_recurrent(cfg)
    _check_sharing(sharing, env.kwargs.get("n_agents"))


_DIVISOR_WINDOW = 1_000  # how far from num_envs `_check_batch` looks for a num_envs that would divide


def _check_batch(frames_per_batch: int, num_envs: int, minibatch_size: int) -> None:
    """frames_per_batch must split evenly over the envs and hold at least one minibatch."""
    if frames_per_batch % num_envs:
        lower = frames_per_batch // num_envs * num_envs
        multiples = [m for m in (lower, lower + num_envs) if m > 0]
        # divisors of frames_per_batch near num_envs: a bounded search, whatever the numbers' size
        window = range(max(1, num_envs - _DIVISOR_WINDOW), num_envs + _DIVISOR_WINDOW + 1)
        divisors = [d for d in window if d <= frames_per_batch and frames_per_batch % d == 0]
        near = sorted(divisors, key=lambda d: (abs(d - num_envs), d))[:2]
        other = (
            f", or a num_envs that divides {frames_per_batch}, e.g. "
            + " or ".join(f"env.num_envs={d}" for d in near)
            if near
            else ""
        )
        raise ConfigError(
            f"'experiment.frames_per_batch={frames_per_batch}' is not divisible by "
            f"'env.num_envs={num_envs}': each batch steps every env frames_per_batch / num_envs times. "
            f"Use a multiple of {num_envs}, e.g. "
            + " or ".join(f"experiment.frames_per_batch={m}" for m in multiples)
            + other
            + "."
        )
    require(
        minibatch_size <= frames_per_batch,
        f"'algorithm.minibatch_size={minibatch_size}' is larger than 'experiment.frames_per_batch="
        f"{frames_per_batch}'. Lower algorithm.minibatch_size or raise experiment.frames_per_batch.",
    )


def _check_recurrent(cfg: Config) -> None:
    """A recurrent actor replays whole chunks: each env's steps per batch must split into chunks."""
    steps, chunk = cfg.experiment.frames_per_batch // cfg.env.num_envs, cfg.algorithm.chunk_length
    size = cfg.model.recurrent_size
    require(size > 0, f"'model.recurrent_size' must be > 0, got {size}.")
    require(chunk > 0, f"'algorithm.chunk_length' must be > 0, got {chunk}.")
    require(
        steps % chunk == 0,
        f"'algorithm.chunk_length={chunk}' does not divide the {steps} steps each env takes per batch "
        f"(experiment.frames_per_batch / env.num_envs). Use a divisor of {steps} as algorithm.chunk_length, "
        "or change experiment.frames_per_batch.",
    )


def _check_sharing(sharing: SharingConfig, n_agents: Any) -> None:
    """Roles are non-empty, disjoint and in range; schemes have what they need."""
    for net in ("actor", "critic"):
        scheme, agent_id = getattr(sharing, net).scheme, getattr(sharing, net).agent_id
        require(
            not agent_id or scheme == "shared",
            f"'sharing.{net}.agent_id=true' only applies to scheme shared, but "
            f"sharing.{net}.scheme={scheme}. Set sharing.{net}.agent_id=false.",
        )
        require(
            scheme != "grouped" or sharing.roles is not None,
            f"'sharing.{net}.scheme=grouped' needs sharing.roles (agent indices per role): set it in an "
            'experiment file or on the command line, e.g. "sharing.roles={a: [0, 1], b: [2, 3]}".',
        )
    if sharing.roles is None:
        return
    require(
        bool(sharing.roles),
        "'sharing.roles' is empty: give at least one role, e.g. {a: [0, 1], b: [2, 3]}, or set it to null.",
    )
    owner: dict[int, str] = {}
    for role, agents in sharing.roles.items():
        require(
            bool(agents), f"'sharing.roles.{role}' is empty: list the indices of the agents in this role."
        )
        for agent in agents:
            require(agent >= 0, f"'sharing.roles.{role}' has agent index {agent}; indices start at 0.")
            require(
                agent not in owner,
                f"Agent {agent} is in both 'sharing.roles.{owner.get(agent)}' and 'sharing.roles.{role}': "
                "roles must be disjoint.",
            )
            owner[agent] = role
    if isinstance(n_agents, int) and not isinstance(n_agents, bool):
        outside = sorted(a for a in owner if a >= n_agents)
        require(
            not outside,
            f"'sharing.roles' uses agent indices {outside}, but env.n_agents={n_agents} "
            f"(indices 0..{n_agents - 1}).",
        )
        missing = sorted(set(range(n_agents)) - set(owner))
        grouped = "grouped" in (sharing.actor.scheme, sharing.critic.scheme)
        require(
            not (grouped and missing),
            f"Scheme grouped needs every agent in a role, but agents {missing} are in none of "
            f"'sharing.roles' ({', '.join(sharing.roles)}).",
        )


TRAIN = Schema(Config, _check)
"""`marl train`'s schema."""


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition` holds: the cross-field checks of every schema."""
    if not condition:
        raise ConfigError(message)


_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def check_entry_point(key: str, value: str) -> None:
    """`package.module:factory`, identifiers only (checked before anything is imported)."""
    require(
        _ENTRY_POINT.fullmatch(value) is not None,
        f"Invalid value for '{key}': {_clip(value)!r}. Expected package.module:factory (Python names "
        "separated by dots, a colon before the callable), e.g. mpe2.simple_spread_v3:parallel_env.",
    )


def check_path_setting(key: str, value: str) -> None:
    """A directory setting: non-empty, at most 4,096 characters, no NUL character."""
    require(
        0 < len(value) <= 4096 and "\0" not in value,
        f"Invalid value for '{key}': {_clip(value)!r}. Give a directory path (at most 4,096 characters, no "
        "NUL), e.g. results/runs.",
    )


def check_name_setting(key: str, value: str) -> None:
    """A run-name prefix: 1 to 200 characters, usable in a folder name (no '/', no NUL)."""
    require(
        0 < len(value) <= 200 and "/" not in value and os.sep not in value and "\0" not in value,
        f"Invalid value for '{key}': {_clip(value)!r}. A run name is 1 to 200 characters and becomes part "
        "of a folder name: no '/' and no NUL.",
    )


def check_scenario_counts(kwargs: dict[str, Any], section: str = "env") -> None:
    """Scenario arguments that count things (`n_agents`, `n_food`, ... any key starting with `n_`) must be
    integers in [0, MAX_COUNT_KWARG] (`n_agents` at least 1), checked before the simulator sees them; null
    (the scenario's own default, e.g. patrol_search's n_sensing) is allowed except for n_agents."""
    for name, value in kwargs.items():
        if not (isinstance(name, str) and name.startswith("n_")) or (value is None and name != "n_agents"):
            continue
        low = 1 if name == "n_agents" else 0
        require(
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_COUNT_KWARG,
            f"Invalid value for '{section}.{name}': {_clip(_show_value(value))} ({_kind(value)}). Scenario "
            f"counts are integers from {low} to {MAX_COUNT_KWARG}, e.g. {section}.{name}="
            f"{4 if name == 'n_agents' else low + 1}.",
        )


# --------------------------------------------------------------------------------------------------------
# YAML and messages
# --------------------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `5e-4` and `1e6` as floats (YAML 1.1 wants `5.0e-4`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def check_argument(arg: str) -> None:
    """One command-line word (`key=value`) is short enough and printable enough to be a setting."""
    if len(arg) > MAX_ARGUMENT_CHARS:
        raise ConfigError(
            f"The argument {_clip(arg)!r} is {len(arg):,} characters long; one key=value may hold at most "
            f"{MAX_ARGUMENT_CHARS:,}. Put long settings in an experiment file (experiment=path/to/file.yaml)."
        )
    if "\0" in arg:
        raise ConfigError(f"The argument {_clip(arg)!r} contains a NUL character; remove it.")


def parse_value(key: str, raw: str) -> Any:
    """A CLI value parsed as YAML: `4` -> 4, `true` -> True, `[64,64]` -> list, `null` -> None.

    Plain data only (see `check_plain`); any way the text fails to parse is a `ConfigError`."""
    check_argument(raw)
    try:
        value = _load_yaml(raw)
    except _YamlProblem as err:
        raise ConfigError(
            f"Could not parse the value of '{key}' ({_clip(raw)!r}) as YAML: {err}. Quote strings with "
            f"special characters, e.g. '{key}=\"...\"', and close brackets in lists like [64, 64]."
        ) from None
    check_plain(value, key, "command line")
    return value


def read_yaml(path: Path, mapping: bool = True) -> Any:
    """Parse a YAML file (at most MAX_FILE_BYTES); errors name the file and line. Empty files read as {}."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"Could not read config file {_show(path)}: {err.strerror or err}.") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"Config file {_show(path)} is not UTF-8 text ({err}); save it as UTF-8.") from None
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(
            f"Config file {_show(path)} is larger than {MAX_FILE_BYTES:,} characters; a config file is a "
            "few lines of YAML. Check that the path names the file you meant."
        )
    try:
        data = _load_yaml(text)
    except _YamlProblem as err:
        kind = "YAML syntax error" if err.where else "Invalid YAML"
        raise ConfigError(f"{kind} in {_show(path)}{err.where}: {err}. Fix the file and retry.") from None
    check_plain(data, _show(path), "file")
    data = {} if data is None else data
    if mapping and not isinstance(data, dict):
        raise ConfigError(
            f"Config file {_show(path)} must hold a mapping of keys to values, got {_kind(data)}."
        )
    return data


class _YamlProblem(Exception):
    """Why a text is not a usable YAML value (`where`: ' at line L, column C' when known)."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.where = where


def _load_yaml(text: str) -> Any:
    """`yaml.load` with every way it can fail as a `_YamlProblem`: syntax errors, tags whose constructor
    raises (`!!int abc` is a ValueError inside PyYAML), nesting deeper than the parser's recursion."""
    if _flow_depth(text) > MAX_DEPTH:  # PyYAML's scanner slows down with nesting: refuse before parsing
        raise _YamlProblem(f"brackets nested more than {MAX_DEPTH} levels deep")
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise _YamlProblem(str(problem), where) from None
    except RecursionError:
        raise _YamlProblem(f"nested more than {MAX_DEPTH} levels deep") from None
    except Exception as err:  # noqa: BLE001 - a constructor's own error (ValueError, OverflowError, ...)
        raise _YamlProblem(f"{type(err).__name__}: {_clip(str(err), 200)}") from None


def _flow_depth(text: str) -> int:
    """The deepest nesting of YAML flow brackets ([ and {) outside quoted strings, in one linear pass."""
    depth = deepest = 0
    quote = None
    escaped = False
    for char in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


_SCALARS = (str, int, float, bool, type(None))


def check_plain(value: Any, key: str, source: str) -> None:
    """`value` is plain config data: null, booleans, integers in [-2^63, 2^63), numbers, strings, and lists
    and string-keyed mappings of them, at most MAX_DEPTH deep with at most MAX_ITEMS entries in all. YAML
    can also build dates, bytes, sets and self-referencing aliases; none of those is a setting. Walks the
    value with an explicit stack, so its cost is bounded by MAX_ITEMS whatever the value is."""
    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_ITEMS:
            raise ConfigError(
                f"The value of '{key}' ({source}) has more than {MAX_ITEMS:,} entries (YAML aliases count "
                "each time they are used); a setting is a few values."
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"The value of '{key}' ({source}) is nested more than {MAX_DEPTH} levels deep (or holds a "
                "YAML alias that refers to itself); settings are flat values, lists or mappings."
            )
        if isinstance(item, bool) or item is None or isinstance(item, (str, float)):
            continue
        if isinstance(item, int):
            if not -INT_LIMIT <= item < INT_LIMIT:
                raise ConfigError(
                    f"The value of '{key}' ({source}) holds a {item.bit_length()}-bit integer, outside "
                    f"[-2^63, 2^63); use a smaller number."
                )
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, _SCALARS):
                    raise ConfigError(
                        f"The value of '{key}' ({source}) has a mapping key of type {type(k).__name__}; "
                        "keys are names (strings) or numbers."
                    )
                stack.extend(((k, depth + 1), (v, depth + 1)))
        else:
            raise ConfigError(
                f"The value of '{key}' ({source}) holds a {type(item).__name__} (from a YAML tag such as "
                "!!timestamp, !!binary or !!set); settings are numbers, strings, booleans, null, lists and "
                "mappings. Quote it to pass a string."
            )


def _absolute(path: Path) -> str:
    """`path` made absolute for a message (without touching the file system), clipped."""
    return _clip(str(Path.cwd() / Path(path).expanduser()), 200)


def _clip(text: str, limit: int = 80) -> str:
    """`text`, shortened with '...' beyond `limit` characters (for messages about long inputs)."""
    return text if len(text) <= limit else text[:limit] + "..."


def _unknown_key_message(parts: list[str], i: int, cls: type, source: str, root: type) -> str:
    key, allowed = ".".join(parts), list(_fields(cls))
    prefix = ".".join(parts[:i])
    if cls is root:
        head = f"Unknown config section {parts[0]!r} in {key!r} ({source}). Sections: {', '.join(allowed)}."
    else:
        head = f"Unknown key {key!r} ({source}). Allowed keys of '{prefix}': {', '.join(allowed)}."
    close = difflib.get_close_matches(parts[i], allowed, n=1, cutoff=0.6)
    if close:
        head += f" Did you mean {'.'.join([*parts[:i], close[0], *parts[i + 1 :]])!r}?"
    return head


def did_you_mean(word: str, options: Any, prefix: str = "", suffix: str = "") -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close:  # also compare with the last path component, e.g. 'navigation' ~ 'vmas/navigation'
        tails = {o.rsplit("/", 1)[-1]: o for o in options}
        close = [tails[t] for t in difflib.get_close_matches(word, list(tails), n=1, cutoff=0.6)]
    return f" Did you mean '{prefix}{close[0]}{suffix}'?" if close else ""


def presets_hint(group: str, config_dir: Path | None) -> str:
    names = list_presets(group, config_dir)
    if names:
        return f"Available {group} presets: {', '.join(names)}."
    where = ", ".join(_show(d / group) for d in config_dirs(config_dir))
    return f"There are no {group} presets (in {where}); set values with {group}.<key>=<value>."


def _show(path: Path) -> str:
    """A path relative to the working directory when it is inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _show_value(value: Any) -> str:
    """A value as the user would write it in YAML."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _inline(value: Any) -> str:
    """A value as one line of YAML, as typed on the command line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def _plain(value: Any) -> Any:
    """Nested dicts/lists of builtins; tuples become lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

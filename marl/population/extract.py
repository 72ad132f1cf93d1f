"""`marl population extract <teacher run> method=dagger|rl`: fresh partners that keep each member's specialty
but not its overfitness ("Diversity Is Not All You Need", Charakorn et al., NeurIPS 2024).

An XP-min member (the *teacher*) is specialised: its self-play episodes carry one behaviour label, or a few
(a convention, a recipe). It may also be overfit: XP-min pays it for failing with the other members, so it
can learn to recognise its own self-play partner (a handshake) and to fail on purpose with anyone else.
Extraction trains a new population of the same size from a fresh initialisation (the *students*), student
``i`` from teacher ``i``, only ever in self-play and with no cross-play term:

- ``dagger``: imitation on the students' own self-play states (DAgger, Ross et al. 2011). Iteration ``k``
  rolls every student out with itself, each seat acting as the teacher with probability
  ``beta_k = beta0 * beta_decay ** k``, else as the student (sampled actions, or its most likely one with
  ``student_actions=mode``). Every visited state is labelled with the teacher's action distribution there;
  the labelled states of the last ``window`` iterations (0: all of them, classic DAgger aggregation) form
  the dataset, and each student minimises the forward KL(teacher || student) over its own states for
  ``epochs`` epochs. Only the actors train (the critics keep their initialisation). What this keeps: the
  teacher's behaviour wherever self-play goes. What it drops: the teacher's responses to states that
  self-play does not reach. A handshake-detecting branch is reached only when a seat misses the handshake,
  i.e. through the students' own mistakes (``beta0 = 1`` makes the first iteration pure teacher self-play,
  so the students learn the handshake before they act). Where the students do visit such states, DAgger
  copies the teacher's response there, sabotage included: on a planted handshake (tests/
  test_population_extract.py) a single labelled stranger state sufficed. So the students must fit each
  iteration's data closely before they act (hence ``DAGGER_DEFAULTS``: many full-batch steps), and
  ``student_actions=mode`` avoids the rare sampled mistakes (at the price of following only the students'
  most likely branches once the teacher no longer acts).
- ``rl``: PPO in self-play (``ppo_update_members``, GAE, per-member losses, as ``marl population train``)
  on a reward that pays only for the teacher's behaviour: when an episode ends, both seats get
  ``p_i(label)``, teacher ``i``'s self-play label distribution over its labelled episodes
  (``reward=prob``), or 1 for teacher ``i``'s most frequent label and 0 otherwise (``reward=modal``); no
  label (e.g. disagreement) pays 0. The env's own reward is dropped unless ``env_reward_scale > 0`` adds it
  back (cooking's shaping rewards). Nothing pays for failing with strangers, so nothing teaches the
  students to recognise them. Both rewards make a student concentrate on the teacher's most likely
  label(s); ``prob`` still gives partial credit for the teacher's other labels. The distribution
  ``p_i`` is measured once, before training, from ``label_episodes`` sampled self-play episodes per teacher.
  Where ``env_reward_scale > 0`` adds the env's reward back, ``restrict_env`` (the default) has student
  ``i`` play in envs restricted to teacher ``i``'s most frequent label (``population.restrict_kwarg``, as a
  specialist of that label trains; no label for a teacher that never delivered), so that reward never pays
  a behaviour the teacher does not show. Unrestricted, it pays every label alike: in a kitchen where the
  cooks commit blind, students paid 1 for any dish and 2 for their teacher's all settled on the dish
  found first (results/cooking_populations, the blind kitchen), as self-play does.

Both save a run directory like ``marl population train``'s (checkpoint kind ``population`` with the
students' ``PopulationConfig``, so ``load_population`` and the evaluation tools read it): config.yaml (the
students'), extract.yaml (this extraction's settings and teacher), metrics.jsonl and TensorBoard,
checkpoints (exact resume; Ctrl-C saves), population.json (final cross-play matrix and labels, plus the
teacher's and students' self-play label distributions). The checkpoint also holds the teacher's weights,
so a resumed extraction does not depend on the teacher's run directory staying as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import Tensor

from marl.agents.population import MemberLayout, Population
from marl.checkpoint import (
    clone_tree,
    load_checkpoint,
    run_directory,
)
from marl.config import Schema, config_to_dict, did_you_mean, leaf_keys, require, split_arguments
from marl.errors import ConfigError, MarlError
from marl.population.config import (
    NO_LABEL,
    RESUMABLE_RUN,
    PopulationConfig,
    RunSection,
    check_counts,
    check_resume,
    check_run,
    population_config_from_dict,
    population_config_to_dict,
    population_config_to_yaml,
)
from marl.population.evaluate import label_count, pair_outcomes
from marl.population.members import (
    EVAL_SEED_OFFSET,
    build_population,
    load_population,
    seat_sizes,
)
from marl.population.pairs import self_play_pairs
from marl.population.rollout import Rollout
from marl.population.xpmin import (
    PopulationTrainer,
    build_trainer,
    evaluate_population,
    evaluation_metrics,
    log_xp_matrix,
    member_epochs,
    member_major,
    train_iteration,
    write_summary,
)
from marl.run_logger import RunLogger, flatten
from marl.run_loop import RunPlan, count_iteration, due, run_plan
from marl.runs import new_run_dir, resolve_device

EXTRACT_FILE = "extract.yaml"
TEACHER_SEED_OFFSET = 2_000_003  # the teacher's label-distribution episodes use their own seed


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ExtractExperiment(RunSection):
    """Run bookkeeping; it becomes the students' experiment section."""

    name: str = ""  # run-name prefix; empty = extract_<method>
    iterations: int = 100
    # episodes per ordered pair in an evaluation (the students' experiment.eval_envs_per_pair), and sampled
    # self-play episodes per member for the label distributions
    eval_episodes: int = 64


@dataclass
class ExtractSection:
    """How the students learn from the teacher."""

    method: Literal["dagger", "rl"] = "dagger"
    envs_per_member: int = 32  # self-play env slots per student (its population.envs_per_pair)
    # dagger
    beta0: float = 1.0  # probability that a seat acts as the teacher at iteration 0
    beta_decay: float = 0.8  # beta_k = beta0 * beta_decay ** k
    window: int = 10  # iterations of labelled states kept in the dataset; 0 = all (classic DAgger)
    student_actions: Literal["sample", "mode"] = "sample"  # students' rollout actions: drawn, or their mode
    # rl
    reward: Literal["prob", "modal"] = "prob"  # p_teacher(label), or 1 for the teacher's modal label
    env_reward_scale: float = 0.0  # weight of the env's own reward added to the label reward
    # with env_reward_scale > 0, the students play in envs restricted to their teacher's most frequent label
    # (as a specialist of that label trains), so the env's reward never pays a behaviour the teacher does
    # not show; false: the unrestricted env, whose reward pays every label alike
    restrict_env: bool = True
    label_episodes: int = 128  # sampled teacher self-play episodes per member measuring p_teacher(label)
    # env settings changed for the students only, e.g. {shaping: paying}: the cooking kitchen's shaping
    # rewards then pay only the ingredients of the student's own (restricted) recipe
    student_env: dict[str, Any] = field(default_factory=dict, metadata={"merge": True})


@dataclass
class ExtractAlgorithm:
    """The students' update; null takes the method's default (dagger: ``DAGGER_DEFAULTS``, rl: the teacher
    run's). The PPO settings not listed here are the teacher run's ``algorithm`` section."""

    rollout_steps: int = 16  # env steps per slot per iteration
    lr: float | None = None  # Adam step size
    epochs: int | None = None  # passes over the dataset (dagger) or the rollout (rl) per iteration
    # frames per gradient step, each minibatch the same share of every member's samples; 0 = all of them
    minibatch_size: int | None = None
    entropy_coef: float | None = None  # rl: PPO entropy bonus


@dataclass
class ExtractConfig:
    """Settings of one extraction. The students' env and networks are the teacher run's."""

    experiment: ExtractExperiment = field(default_factory=ExtractExperiment)
    extract: ExtractSection = field(default_factory=ExtractSection)
    algorithm: ExtractAlgorithm = field(default_factory=ExtractAlgorithm)


# Imitation wants each iteration's dataset fitted closely before the students act on it (the students'
# mistakes decide which states get labelled): full-batch steps, many more than PPO's few cautious epochs.
DAGGER_DEFAULTS = {"lr": 1e-2, "epochs": 50, "minibatch_size": 0}

RESUME_MAY_CHANGE = (*RESUMABLE_RUN, "experiment.eval_episodes")  # length, logging and evaluation


def check_config(cfg: ExtractConfig) -> None:
    """Value checks the types cannot express; the first failure raises ConfigError."""
    ext, alg = cfg.extract, cfg.algorithm
    check_run(cfg.experiment)
    positive = {
        "experiment.eval_episodes": cfg.experiment.eval_episodes,
        "extract.envs_per_member": ext.envs_per_member,
        "extract.label_episodes": ext.label_episodes,
        "algorithm.rollout_steps": alg.rollout_steps,
        "algorithm.epochs": alg.epochs,
    }
    non_negative = {"extract.window": ext.window, "extract.env_reward_scale": ext.env_reward_scale}
    non_negative.update(
        {"algorithm.entropy_coef": alg.entropy_coef, "algorithm.minibatch_size": alg.minibatch_size}
    )
    check_counts(positive, non_negative)
    if alg.lr is not None and alg.lr <= 0:
        raise ConfigError(f"'algorithm.lr' must be > 0 (or null), got {alg.lr}.")
    for key in ("beta0", "beta_decay"):
        if not 0 <= getattr(ext, key) <= 1:
            raise ConfigError(f"'extract.{key}' must be in [0, 1], got {getattr(ext, key)}.")


# Settings by their own name (the old flat layout of saved configs, and keyword arguments of `extract`)
RENAMES = leaf_keys(ExtractConfig)


def upgrade(data: dict) -> dict:
    """A saved extraction config of an earlier version: its count of minibatches per epoch
    (``minibatches``, flat or in ``algorithm``) as today's ``minibatch_size`` where that needs no teacher."""
    data = dict(data)
    flat = "minibatches" in data
    algorithm = dict(data if flat else data.get("algorithm") or {})
    if "minibatches" not in algorithm:
        return data
    count = algorithm.pop("minibatches")
    require(
        count in (None, 1),
        f"This extraction was saved with algorithm.minibatches={count}, a count this version no longer "
        "takes: set algorithm.minibatch_size (frames per gradient step) instead.",
    )
    algorithm["minibatch_size"] = None if count is None else 0  # 1 minibatch: all the frames
    return algorithm if flat else {**data, "algorithm": algorithm}


SCHEMA = Schema(ExtractConfig, check_config, RENAMES, upgrade=upgrade)


def extract_config(base: ExtractConfig | Mapping[str, Any] | None = None, **overrides: Any) -> ExtractConfig:
    """A validated ExtractConfig: ``base`` (a config, or a mapping: nested sections, dotted keys or the old
    flat keys) with ``overrides`` on top, by dotted key or by a setting's own name (``beta0=0.5``)."""
    cfg = base if isinstance(base, ExtractConfig) else SCHEMA.from_dict(dict(base or {}))
    for key in overrides:
        if "." not in key and key not in RENAMES and key not in SCHEMA.sections:
            raise ConfigError(
                f"Unknown extraction setting {key!r}. Valid keys: {', '.join(RENAMES)}, or section.key."
                f"{did_you_mean(key, list(RENAMES))}"
            )
    return SCHEMA.with_overrides(cfg, [(RENAMES.get(k, k), v) for k, v in overrides.items()])


def student_config(
    cfg: ExtractConfig, teacher_cfg: PopulationConfig, targets: list[int] | None = None
) -> PopulationConfig:
    """The students' PopulationConfig: the teacher's env and model, self-play, this extraction's settings.
    With ``targets`` (one label per student) the students train as specialists of those labels: in
    self-play, each in envs that pay only its label."""
    tree = population_config_to_dict(teacher_cfg)
    experiment = config_to_dict(cfg.experiment)
    experiment["eval_envs_per_pair"] = experiment.pop("eval_episodes")
    experiment["name"] = cfg.experiment.name or f"extract_{cfg.extract.method}"
    tree["experiment"].update(experiment)
    tree["env"]["kwargs"] = {**tree["env"]["kwargs"], **cfg.extract.student_env}
    tree["population"].update(
        method="selfplay" if targets is None else "specialists",
        envs_per_pair=cfg.extract.envs_per_member,
        specialist_targets=targets,
    )
    defaults = DAGGER_DEFAULTS if cfg.extract.method == "dagger" else {}
    tree["algorithm"]["rollout_steps"] = cfg.algorithm.rollout_steps
    for key in ("lr", "epochs", "minibatch_size", "entropy_coef"):
        value = getattr(cfg.algorithm, key)
        tree["algorithm"][key] = defaults.get(key, tree["algorithm"][key]) if value is None else value
    return population_config_from_dict(tree)


# ---------------------------------------------------------------------------------------------------------
# What a run holds
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Extraction:
    """Everything an extraction run holds in memory; `state_dict` is its checkpoint. The students are a
    population run of their own (``students``: `marl population train`'s trainer, in self-play), which the
    teacher, its label counts and DAgger's dataset come beside."""

    cfg: ExtractConfig
    students: PopulationTrainer  # its cfg: the students' PopulationConfig
    teacher: Population
    teacher_cfg: PopulationConfig
    teacher_run: str
    teacher_labels: Tensor  # [N, n_labels + 1] teacher self-play label counts; column 0 = no label
    dataset: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # dagger: (obs, teacher log-probs)

    # the run's counters and device are the students' (run_loop reads them)
    iteration = property(lambda self: self.students.iteration)
    frames = property(lambda self: self.students.frames)
    wall_time = property(lambda self: self.students.wall_time)
    device = property(lambda self: self.students.device)

    def state_dict(self) -> dict:
        return self.students.state_dict() | {
            "extraction": {
                "config": config_to_dict(self.cfg),
                "teacher_run": self.teacher_run,
                "teacher_config": population_config_to_dict(self.teacher_cfg),
                "teacher": clone_tree(self.teacher.state_dict()),
                "teacher_labels": self.teacher_labels.clone(),
                "dataset": [{"obs": obs.clone(), "target": target.clone()} for obs, target in self.dataset],
            }
        }

    def load_state_dict(self, state: dict) -> None:
        self.students.load_state_dict(state)
        saved, device = state["extraction"], self.device
        self.teacher_labels = saved["teacher_labels"].to(device).clone()
        self.dataset = [(d["obs"].to(device), d["target"].to(device)) for d in saved["dataset"]]


def build_extraction(
    cfg: ExtractConfig,
    teacher: Population,
    teacher_cfg: PopulationConfig,
    teacher_run: str,
    labels: Tensor | None = None,
) -> Extraction:
    """The students as a fresh self-play population run (seeded, with envs, optimizer and collector), and
    the teacher's self-play label counts (measured here, or ``labels`` as a resumed run saved them)."""
    env_sizes = seat_sizes(teacher_cfg)
    if env_sizes != (teacher.obs_dim, teacher.n_actions):
        raise MarlError(
            f"The teacher's networks take {teacher.obs_dim} observations and {teacher.n_actions} actions, "
            f"but its env {teacher_cfg.env.name} now gives {env_sizes[0]} and {env_sizes[1]}."
        )
    teacher = teacher.to(resolve_device(cfg.experiment.device)).eval()
    if labels is None:
        seed = cfg.experiment.seed + TEACHER_SEED_OFFSET
        labels = self_play_label_counts(teacher, teacher_cfg, cfg.extract.label_episodes, seed)
    targets = None
    if cfg.extract.method == "rl" and cfg.extract.restrict_env and cfg.extract.env_reward_scale > 0:
        targets = modal_labels(labels)
        if label_count(teacher_cfg) is None:
            kwarg = teacher_cfg.population.restrict_kwarg
            raise ConfigError(
                f"extract.restrict_env: {teacher_cfg.env.name} has no paying set to restrict (no argument "
                f"population.restrict_kwarg={kwarg}, no attribute paying_{kwarg}), so the env's reward "
                "added back (extract.env_reward_scale) would pay every label. Set extract.restrict_env=false "
                "to accept that, or extract.env_reward_scale=0."
            )
    students = build_trainer(student_config(cfg, teacher_cfg, targets))
    population = students.population
    if cfg.extract.method == "dagger":  # imitation trains the actors only
        alg = students.cfg.algorithm
        students.optimizer = torch.optim.Adam(population.actor.parameters(), lr=alg.lr, eps=alg.adam_eps)
    empty = (labels[:, 1:].sum(-1) == 0).nonzero().flatten().tolist()
    if cfg.extract.method == "rl" and empty:
        message = (
            f"Teacher member(s) {empty} never ended a self-play episode with a label in "
            f"{cfg.extract.label_episodes} episodes (a member that stopped delivering): no label pays their "
            "students"
        )
        if cfg.extract.env_reward_scale == 0:
            raise MarlError(
                f"{message}, and extract.env_reward_scale=0 leaves them no reward at all. Raise "
                "extract.label_episodes, give extract.env_reward_scale > 0, or use extract.method=dagger."
            )
        alone = "the env's reward alone"
        if cfg.extract.restrict_env:
            alone = "the env's reward alone, in envs where no label pays (its shaping, if any)"
        warnings.warn(f"{message}; they learn from extract.env_reward_scale x {alone}.", stacklevel=2)
    return Extraction(cfg, students, teacher, teacher_cfg, teacher_run, labels)


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


def extract(
    teacher_run: str | Path | None = None,
    cfg: ExtractConfig | Mapping[str, Any] | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    **overrides: Any,
) -> Path:
    """Extract a population run's members into fresh students; returns the new run's directory.

    ``cfg`` (an ExtractConfig or a mapping of its keys) and keyword ``overrides`` set the extraction, e.g.
    ``extract(run, method="dagger", iterations=20)``. ``resume`` continues an extraction run from its last
    checkpoint (with its saved teacher and settings; only ``RESUME_MAY_CHANGE`` may be overridden);
    ``stop_after`` ends this call after that many iterations (tests use it to simulate an interruption).
    """
    state = None
    if resume is not None:
        if teacher_run is not None:
            raise MarlError("resume= continues an extraction with its saved teacher; drop the teacher run.")
        state = load_checkpoint(resume)
        if state.get("kind") != "population" or "extraction" not in state:
            raise MarlError(f"{resume} is not an extraction run (written by marl population extract).")
        saved = state["extraction"]
        base = extract_config(saved["config"])
        if not any(key.endswith("restrict_env") for key in flatten(saved["config"])):
            base = extract_config(base, restrict_env=False)  # saved before the option: trained unrestricted
        given = {} if cfg is None or isinstance(cfg, ExtractConfig) else dict(cfg)
        new = extract_config(cfg if isinstance(cfg, ExtractConfig) else base, **{**given, **overrides})
        check_resume(base, new, RESUME_MAY_CHANGE, "extraction")
        cfg = new
        teacher_cfg = population_config_from_dict(saved["teacher_config"])
        teacher = build_population(teacher_cfg, weights=saved["teacher"])
        teacher_run = saved["teacher_run"]
        run_dir = run_directory(resume)
    else:
        if teacher_run is None:
            raise MarlError("marl population extract needs a teacher: a population run directory or a .pt.")
        cfg = extract_config(cfg, **overrides)
        teacher, teacher_cfg = load_population(teacher_run)
    saved_labels = None if state is None else state["extraction"]["teacher_labels"]
    ex = build_extraction(cfg, teacher, teacher_cfg, str(teacher_run), saved_labels)
    if state is not None:
        ex.load_state_dict(state)
    else:
        run_dir = new_run_dir(ex.students.cfg.experiment.runs_dir, ex.students.cfg.experiment.name)
    settings = yaml.safe_dump(
        {"teacher_run": str(teacher_run), "extraction": config_to_dict(cfg)}, sort_keys=False
    )
    (run_dir / EXTRACT_FILE).write_text(settings)
    exp = cfg.experiment
    step = dagger_iteration if cfg.extract.method == "dagger" else rl_iteration

    def one_iteration(logger: RunLogger) -> dict[str, float]:
        metrics = step(ex)
        if due(ex.iteration, exp.eval_every, exp.iterations):
            metrics.update(evaluate_extraction(ex, logger))
        return metrics

    def postfix(metrics: dict[str, float]) -> dict[str, str]:
        shown = {"fps": f"{metrics['perf/total_fps']:.0f}"}
        if cfg.extract.method == "dagger":
            shown.update(beta=f"{metrics['train/beta']:.2f}", kl=f"{metrics['train/imitation_kl']:.3g}")
        else:
            shown.update(label_reward=f"{metrics['train/label_reward_mean']:.3g}")
        return shown

    plan = RunPlan(
        trainer=ex,
        run_dir=run_dir,
        settings=exp,
        n_iterations=exp.iterations,
        name=ex.students.cfg.experiment.name,
        resume_command=f"marl population extract resume={run_dir}",
        config_yaml=population_config_to_yaml(ex.students.cfg),
        hparams=flatten(config_to_dict(cfg)),
        one_iteration=one_iteration,
        final_metric=lambda key: key.endswith(("_mean", "distinct_labels")),
        write_summary=lambda: write_extraction_summary(run_dir, ex),
        header=lambda logger: logger.log_text("run/extraction", f"```\n{settings}\n```"),
        description=describe_run(ex, run_dir),
        postfix=postfix,
    )
    return run_plan(plan, resumed=state, stop_after=stop_after)


def dagger_iteration(ex: Extraction) -> dict[str, float]:
    """Mixed self-play rollout -> teacher labels on every visited state -> KL epochs on the window."""
    cfg, trainer = ex.cfg, ex.students
    students, collector = trainer.population, trainer.collector
    beta = cfg.extract.beta0 * cfg.extract.beta_decay**ex.iteration
    start = time.perf_counter()
    students.eval()
    mixture = TeacherMixture(ex.teacher, students, beta, student_mode=cfg.extract.student_actions == "mode")
    rollout = collector.collect(mixture, cfg.algorithm.rollout_steps)
    obs = member_major(rollout.obs, collector.layout)  # [N, L, D]
    with torch.no_grad():
        target = ex.teacher.logits(obs).log_softmax(-1)
        agreement = (students.logits(obs).argmax(-1) == target.argmax(-1)).float().mean()
    ex.dataset.append((obs, target))
    if cfg.extract.window:  # a recent window only; 0 keeps every iteration's states
        ex.dataset = ex.dataset[-cfg.extract.window :]
    collected = time.perf_counter()
    students.train()
    data_obs = torch.cat([o for o, _ in ex.dataset], dim=1)
    data_target = torch.cat([t for _, t in ex.dataset], dim=1)
    frames = rollout.frames * (data_obs.shape[1] // obs.shape[1])  # the window's rollouts
    stats = imitation_update(
        students, trainer.optimizer, data_obs, data_target, trainer.cfg.algorithm, frames
    )
    trained = time.perf_counter()
    speed = count_iteration(trainer, rollout.frames, start, collected, trained)
    return {
        "train/beta": beta,
        "train/agreement": float(agreement),  # student's mode = teacher's, on the new states, before update
        "train/dataset_samples": float(data_obs.shape[1]),  # per member
        "train/rollout_return_mean": _mean(rollout.episode_return),  # the teacher/student mixture's
        **{f"train/{k}": v for k, v in stats.items()},
        **speed,
    }


def rl_iteration(ex: Extraction) -> dict[str, float]:
    """`marl population train`'s self-play iteration on the students, with the label rewards in place of
    the env's (GAE, PPO update of all students)."""
    table = label_reward_table(ex.teacher_labels, ex.cfg.extract.reward)
    scale, returns = ex.cfg.extract.env_reward_scale, {}

    def relabel(rollout: Rollout) -> Rollout:
        relabelled = with_label_rewards(rollout, table, ex.students.collector.assignment.member, scale)
        returns["train/env_return_mean"] = _mean(rollout.episode_return)
        returns["train/label_reward_mean"] = _mean(relabelled.episode_return - scale * rollout.episode_return)
        return relabelled

    return train_iteration(ex.students, relabel) | returns


# ---------------------------------------------------------------------------------------------------------
# DAgger pieces
# ---------------------------------------------------------------------------------------------------------


class TeacherMixture:
    """``Population.act`` for the collector: every seat of every step acts as the teacher with probability
    ``beta`` (torch's global RNG), else as the student (its most likely action with ``student_mode``); both
    are the seat's own member. The log-probability returned is the one of whoever acted (unused)."""

    def __init__(self, teacher: Population, student: Population, beta: float, student_mode: bool = False):
        self.teacher, self.student, self.beta, self.student_mode = teacher, student, beta, student_mode

    @torch.no_grad()
    def act(
        self, obs: Tensor, member: Tensor, deterministic: bool = False, layout: MemberLayout | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.beta >= 1:
            return self.teacher.act(obs, member, deterministic, layout=layout)
        student = self.student.act(obs, member, deterministic or self.student_mode, layout=layout)
        if self.beta <= 0:
            return student
        teacher = self.teacher.act(obs, member, deterministic, layout=layout)
        use_teacher = torch.rand(member.shape, device=obs.device) < self.beta
        return tuple(torch.where(use_teacher, t, s) for t, s in zip(teacher, student))  # type: ignore[return-value]


def imitation_update(
    students: Population, optimizer: torch.optim.Optimizer, obs: Tensor, target: Tensor, alg, frames: int
) -> dict[str, float]:
    """``alg.epochs`` epochs of KL(teacher || student) on ``obs [N, L, D]`` with the teacher's log-probs
    ``target [N, L, A]`` (``frames`` frames), all members at once (``member_epochs``): the loss is the sum
    of the members' mean KLs, gradients are clipped per member."""

    def loss_of(mb: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        log_q = students.logits(mb["obs"]).log_softmax(-1)
        log_p = mb["target"]
        kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1)  # [N]
        return kl.sum(), {"imitation_kl": kl.detach().mean()}

    data, actor = {"obs": obs, "target": target}, {"actor": students.actor}
    return member_epochs(data, loss_of, optimizer, actor, alg, frames, "extraction's imitation", lr_key="lr")


# ---------------------------------------------------------------------------------------------------------
# RL pieces
# ---------------------------------------------------------------------------------------------------------


def modal_labels(counts: Tensor) -> list[int]:
    """Each member's most frequent label in label counts ``[N, n_labels + 1]`` (column 0: no label), or
    ``NO_LABEL`` for a member with no labelled episode."""
    labelled = counts[:, 1:]
    if labelled.shape[1] == 0:  # no member ended any episode with a label
        return [NO_LABEL] * counts.shape[0]
    modal = torch.where(labelled.sum(-1) > 0, labelled.argmax(-1), NO_LABEL)
    return modal.tolist()


def label_reward_table(counts: Tensor, kind: str) -> Tensor:
    """Reward ``[N, n_labels + 1]`` of ending an episode with each label (column 0: no label, pays 0) from
    the teacher's label counts: ``prob`` = its label distribution over labelled episodes, ``modal`` = 1 for
    its most frequent label."""
    if kind == "prob":
        labelled = counts[:, 1:].float()
        table = labelled / labelled.sum(-1, keepdim=True).clamp_min(1)
        return torch.cat([torch.zeros_like(table[:, :1]), table], dim=-1)
    column = torch.tensor(modal_labels(counts), device=counts.device) + 1  # NO_LABEL -> column 0 (pays 0)
    table = torch.nn.functional.one_hot(column, counts.shape[1]).float()
    table[:, 0] = 0
    return table


def with_label_rewards(rollout: Rollout, table: Tensor, member: Tensor, env_reward_scale: float) -> Rollout:
    """The rollout with its rewards replaced: ``env_reward_scale`` x the env's, plus, at every step where an
    episode ended, ``table[member, label + 1]`` to both seats (labels the table does not know pay 0)."""
    slot, step = rollout.done.nonzero(as_tuple=True)  # the order of rollout.episode_* (see PairCollector)
    column = rollout.episode_label + 1
    known = (column >= 0) & (column < table.shape[1])
    paid = table[member[slot, 0], column.clamp(0, table.shape[1] - 1)] * known
    reward = rollout.reward * env_reward_scale
    reward[slot, step] += paid.unsqueeze(-1)
    episode_return = paid + env_reward_scale * rollout.episode_return
    return dataclasses.replace(rollout, reward=reward, episode_return=episode_return)


# ---------------------------------------------------------------------------------------------------------
# Evaluation and files
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def self_play_label_counts(population: Population, cfg: PopulationConfig, episodes: int, seed: int) -> Tensor:
    """Label counts ``[N, n_labels + 1]`` (column 0: no label) of ``episodes`` sampled self-play episodes
    per member, from held-out starts fixed by ``seed`` (training's RNG is left untouched)."""
    n = population.n_members
    device = next(population.parameters()).device
    result = pair_outcomes(population, cfg, self_play_pairs(n), episodes, seed, device, deterministic=False)
    return result.self_play_counts(n)


def label_distance(a: Tensor, b: Tensor) -> Tensor:
    """Total-variation distance ``[N]`` between two members' label distributions given as counts."""
    width = max(a.shape[1], b.shape[1])
    p, q = (torch.nn.functional.pad(x.float(), (0, width - x.shape[1])) for x in (a, b))
    p, q = p / p.sum(-1, keepdim=True).clamp_min(1), q / q.sum(-1, keepdim=True).clamp_min(1)
    return 0.5 * (p - q).abs().sum(-1)


def evaluate_extraction(ex: Extraction, logger: RunLogger) -> dict[str, float]:
    """All-pairs evaluation of the students (XP matrix image) and the distance of each student's sampled
    self-play label distribution from its teacher's."""
    n = ex.students.cfg.population.size
    evaluation = evaluate_population(ex.students.population, ex.students.cfg, ex.device)
    log_xp_matrix(logger, evaluation, n, ex.iteration, ex.frames)
    seed = ex.cfg.experiment.seed + EVAL_SEED_OFFSET
    distance = label_distance(
        self_play_label_counts(
            ex.students.population, ex.students.cfg, ex.cfg.experiment.eval_episodes, seed
        ),
        ex.teacher_labels,
    )
    metrics = evaluation_metrics(evaluation, n)
    metrics["eval/label_tv_mean"] = float(distance.mean())
    metrics.update({f"eval/label_tv/member_{i}": float(d) for i, d in enumerate(distance.tolist())})
    return metrics


def write_extraction_summary(run_dir: Path, ex: Extraction) -> dict:
    """population.json as `marl population train` writes it, plus the teacher's and the students' sampled
    self-play label distributions (lists per member, entry 0 = no label) and their distance."""
    seed = ex.cfg.experiment.seed + EVAL_SEED_OFFSET
    students = self_play_label_counts(
        ex.students.population, ex.students.cfg, ex.cfg.experiment.eval_episodes, seed
    )

    def distribution(counts: Tensor) -> list[list[float]]:
        return (counts.float() / counts.sum(-1, keepdim=True).clamp_min(1)).cpu().tolist()

    extraction = {
        "method": ex.cfg.extract.method,
        "teacher_run": ex.teacher_run,
        "teacher_sp_label_distribution": distribution(ex.teacher_labels),
        "student_sp_label_distribution": distribution(students),
        "label_tv": label_distance(students, ex.teacher_labels).cpu().tolist(),
    }
    method = f"extract_{ex.cfg.extract.method}"  # not the students' self-play training method
    return write_summary(run_dir, ex.students, method=method, extraction=extraction)


def describe_run(ex: Extraction, run_dir: Path) -> str:
    cfg, n = ex.cfg, ex.students.cfg.population.size
    how = (
        f"DAgger, beta {cfg.extract.beta0} x {cfg.extract.beta_decay}^k, window {cfg.extract.window or 'all'}"
        if cfg.extract.method == "dagger"
        else f"PPO on the teacher's label reward ({cfg.extract.reward})"
    )
    return (
        f"Extracting {n} members of {ex.teacher_run} into fresh students ({how}) on "
        f"{ex.students.cfg.env.name}: {n} x {cfg.extract.envs_per_member} self-play slots, "
        f"{cfg.experiment.iterations} iterations on {ex.device}\n"
        f"Logs: {run_dir}  (tensorboard --logdir {run_dir})"
    )


def _mean(x: Tensor) -> float:
    return float(x.mean()) if x.numel() else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Command line: marl population extract <teacher run> method=dagger|rl [section.key=value ...]
# ---------------------------------------------------------------------------------------------------------


def parse_extract_args(words: list[str]) -> tuple[str | None, dict[str, Any], str | None]:
    """CLI words -> (teacher run, {dotted key: YAML-parsed value}, resume run). A word without ``=`` (or
    ``teacher=``) is the teacher run; ``method=`` is short for ``extract.method=``."""
    named, dotted, bare = split_arguments(words, ("method", "teacher", "resume"), SCHEMA, bare=True)
    if "method" in named:  # method=rl is short for extract.method=rl
        dotted.insert(0, ("extract.method", named["method"]))
    teachers = bare + ([named["teacher"]] if "teacher" in named else [])
    if len(teachers) > 1:
        raise ConfigError(
            f"Two teacher runs given ({teachers[0]!r} and {teachers[1]!r}); extract one at a time. Settings "
            "are section.key=value, e.g. extract.method=dagger experiment.iterations=50."
        )
    return (teachers or [None])[0], dict(dotted), named.get("resume")


def run_extract(args: argparse.Namespace) -> int:
    """`marl population extract ...`; MarlError propagates (marl's main prints it)."""
    from marl.runs import stop_signals_interrupt

    teacher, settings, resume = parse_extract_args(args.words)
    if resume is not None:
        print(f"Resuming {resume}")
    with stop_signals_interrupt():
        run_dir = extract(teacher, settings, resume=resume)
    print(
        f"\nRun saved in {run_dir}\n"
        f"  TensorBoard: tensorboard --logdir {run_dir}\n"
        f"  Summary:     {Path(run_dir) / 'population.json'} (cross-play matrix, teacher and student labels)"
    )
    return 0


__all__ = [
    "ExtractConfig",
    "Extraction",
    "TeacherMixture",
    "extract",
    "extract_config",
    "label_reward_table",
    "parse_extract_args",
    "run_extract",
    "with_label_rewards",
]

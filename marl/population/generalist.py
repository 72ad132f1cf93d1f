"""`marl population generalist <population run>`: a recurrent agent trained with frozen population partners.

The generalist (agents/recurrent.py: GRU over the observation, its previous action and
the previous reward) learns by PPO to cooperate with every member of a trained, frozen partner population,
in either seat, so that it can work with partners it has never met. Read ``train_generalist`` top to bottom;
one iteration is:

1. **Rollout**: the population's pair collector (marl/population/rollout.py) steps every env slot with
   ``GeneralistPairs`` as its policy. Every slot holds one episode of the generalist with a partner member
   drawn uniformly from the population, the generalist in seat 0 or 1 (probability 1/2 each); both are
   drawn anew whenever the slot's episode ends. All partners act in one batched ``Population.act`` (the
   member-major layout, no loop over partners); the generalist steps its GRU for all slots at once, and its
   hidden state is stored at every chunk start (every ``chunk_length`` steps). Episodes run across
   iterations, with their hidden states.
2. **GAE** (torchrl's vectorised GAE) on the generalist's rewards with the values it computed while acting;
   a time-limit truncation bootstraps from the value of the true final observation (one extra GRU step),
   a termination does not.
3. **PPO over chunks**: the ``[envs, T]`` rollout is cut into ``envs * T / chunk_length`` chunks; each
   minibatch replays ``minibatch_size / chunk_length`` of them from their stored hidden states (truncated
   BPTT, the hidden states are those of the policy that acted), clipped surrogate + value loss - entropy
   bonus.

Robustness is measured as in "Diversity Is Not All You Need": success with each partner from held-out starts
(in both seats), and the harmonic mean over partners (``evaluate_generalist``). ``generalist.test_population``
adds a population the generalist never trains with (e.g. specialists from another seed).

The partners' weights and config are copied into every checkpoint: a resumed run, or a later evaluation,
plays exactly the partners it trained with even if the population's run directory moved on.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from torch import Tensor, nn

from marl.agents.population import Population, sample_categorical
from marl.agents.recurrent import RecurrentActorCritic
from marl.checkpoint import (
    clone_tree,
    load_checkpoint,
    resolve_checkpoint,
    restore_trainer_state,
    run_directory,
    trainer_state,
)
from marl.config import Schema, config_to_dict, config_to_yaml, leaf_keys, require, split_arguments
from marl.envs.factory import make_env
from marl.errors import ConfigError, MarlError
from marl.population.config import (
    GROUP,
    RESUMABLE_RUN,
    PopulationConfig,
    PPOSection,
    RunSection,
    check_counts,
    check_ppo,
    check_resume,
    check_run,
    population_config_from_dict,
)
from marl.population.evaluate import robustness
from marl.population.members import EVAL_SEED_OFFSET, build_population, seat_sizes
from marl.population.pairs import assign_slots, self_play_pairs
from marl.population.rollout import PairCollector
from marl.ppo import explained_variance, generalized_advantages, minibatch_epochs, ppo_loss
from marl.run_logger import RunLogger, flatten
from marl.run_loop import RunPlan, count_iteration, due, run_plan
from marl.runs import hardware_summary, new_run_dir, resolve_device

SUMMARY_FILE = "generalist.json"
TEST_SEED_OFFSET = 2_000_003  # held-out starts of the test population's evaluation


# ---------------------------------------------------------------------------------------------------------
# Configuration: sections on the shared config engine, `section.key=value` on the command line
# ---------------------------------------------------------------------------------------------------------


@dataclass
class GeneralistExperiment(RunSection):
    """Run bookkeeping and the held-out evaluations."""

    name: str = "generalist"
    eval_every: int = 25  # iterations between evaluations; 0 = only at the end
    eval_episodes: int = 16  # per partner and seat
    eval_deterministic: bool = True  # generalist and partners take their most likely actions


@dataclass
class GeneralistSection:
    """Whom the generalist plays with."""

    population: str = ""  # the partner population: a `marl population train` run directory or checkpoint
    test_population: str | None = None  # held-out partners, evaluated only (never trained with)
    partner_deterministic: bool = False  # partners take their most likely action (default: they sample)
    success_key: str = "success"  # the env's info key saying an episode succeeded


@dataclass
class GeneralistEnv:
    """How many env slots run; the env itself is the partner population's, with ``kwargs`` changed."""

    num_envs: int = 64  # env slots, each with its own partner and seat
    # env settings changed for the generalist's training and test, e.g. {retry: true}: partners (training
    # and held-out) that learned without them then play with them
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneralistAlgorithm(PPOSection):
    """PPO over sequence chunks (truncated BPTT)."""

    clip_epsilon: float = 0.2
    entropy_coef: float = 0.01
    rollout_steps: int = 32  # env steps per slot per iteration, a multiple of chunk_length
    normalize_advantage: bool = True  # per minibatch
    chunk_length: int = 8  # steps per BPTT chunk
    # frames per PPO minibatch, a multiple of chunk_length (minibatch_size / chunk_length whole chunks, as in
    # marl train's recurrent PPO)
    minibatch_size: int = 512


@dataclass
class GeneralistModel:
    """The GRU actor-critic (agents/recurrent.py)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64])  # the MLP in front of the GRU
    activation: Literal["tanh", "relu", "elu", "gelu", "silu"] = "tanh"
    recurrent_size: int = 64  # the GRU's state size


@dataclass
class GeneralistConfig:
    """`marl population generalist` settings (PPO defaults of the partner-population study)."""

    experiment: GeneralistExperiment = field(default_factory=GeneralistExperiment)
    generalist: GeneralistSection = field(default_factory=GeneralistSection)
    env: GeneralistEnv = field(default_factory=GeneralistEnv)
    algorithm: GeneralistAlgorithm = field(default_factory=GeneralistAlgorithm)
    model: GeneralistModel = field(default_factory=GeneralistModel)


RESUMABLE = (  # what a resumed run may change: its length, logging and evaluation, not what it trains
    "generalist.population",  # the partners come from the checkpoint; the path is only a record
    "generalist.test_population",
    *RESUMABLE_RUN,
    "experiment.eval_episodes",
    "experiment.eval_deterministic",
)


def check_config(cfg: GeneralistConfig) -> None:
    """Value checks the types cannot express; the first failure raises ConfigError."""
    alg, model = cfg.algorithm, cfg.model
    check_run(cfg.experiment)
    check_ppo(alg)
    positive = {
        "experiment.eval_episodes": cfg.experiment.eval_episodes,
        "env.num_envs": cfg.env.num_envs,
        "algorithm.chunk_length": alg.chunk_length,
        "algorithm.minibatch_size": alg.minibatch_size,
        "model.recurrent_size": model.recurrent_size,
        **{f"model.hidden_sizes[{i}]": size for i, size in enumerate(model.hidden_sizes)},
    }
    check_counts(positive, {})
    require(
        alg.rollout_steps % alg.chunk_length == 0,
        f"'algorithm.rollout_steps={alg.rollout_steps}' must be a multiple of 'algorithm.chunk_length="
        f"{alg.chunk_length}' (the rollout is cut into whole chunks), e.g. algorithm.rollout_steps="
        f"{alg.chunk_length * 4}.",
    )
    require(
        alg.minibatch_size % alg.chunk_length == 0,
        f"'algorithm.minibatch_size={alg.minibatch_size}' must be a multiple of 'algorithm.chunk_length="
        f"{alg.chunk_length}' (minibatches hold whole chunks), e.g. algorithm.minibatch_size="
        f"{alg.chunk_length * 64}.",
    )


# The keys of the old flat layout of saved configs: each field's own name, and three renamed ones
RENAMES = leaf_keys(GeneralistConfig)
RENAMES.update(envs="env.num_envs", hidden_size="model.recurrent_size", encoder_sizes="model.hidden_sizes")


def upgrade(data: dict) -> dict:
    """A saved config of an earlier version: chunks per minibatch (``minibatch_chunks``, flat or in
    ``algorithm``) as the frames they hold (``minibatch_size``)."""
    flat = "minibatch_chunks" in data
    algorithm = dict(data if flat else data.get("algorithm") or {})
    if "minibatch_chunks" not in algorithm:
        return data
    length = algorithm.get("chunk_length", GeneralistAlgorithm.chunk_length)
    algorithm["minibatch_size"] = algorithm.pop("minibatch_chunks") * length
    return algorithm if flat else {**data, "algorithm": algorithm}


SCHEMA = Schema(GeneralistConfig, check_config, RENAMES, upgrade=upgrade)


def generalist_config_from_dict(data: dict) -> GeneralistConfig:
    """A validated config from a nested dict (a saved config; the old flat layout also reads)."""
    return SCHEMA.from_dict(data)


def parse_generalist_args(words: list[str]) -> tuple[list[tuple[str, Any]], str | None]:
    """CLI words -> (dotted overrides, resume run dir). A bare word is the partner population run."""
    named, dotted, runs = split_arguments(list(words), ("resume",), SCHEMA, bare=True)
    if len(runs) > 1:
        raise ConfigError(
            f"Two population runs given ({runs[0]!r} and {runs[1]!r}). Give the partner population once; "
            "held-out partners go in generalist.test_population=<run>."
        )
    return [("generalist.population", run) for run in runs] + dotted, named.get("resume")


def load_generalist_config(words: list[str], need_population: bool = True) -> GeneralistConfig:
    """Defaults < the command line (``<population run> section.key=value ...``), validated."""
    dotted, _ = parse_generalist_args(words)
    cfg = SCHEMA.with_overrides(GeneralistConfig(), dotted)
    require(
        bool(cfg.generalist.population) or not need_population,
        "No partner population given: marl population generalist <population run dir> [section.key=value "
        "...] (train one with marl population train, e.g. preset=matrix_game_specialists).",
    )
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Partners
# ---------------------------------------------------------------------------------------------------------


def partner_snapshot(path: str | Path) -> dict:
    """A population run's newest checkpoint reduced to what partners need: its config, weights and file."""
    state = load_checkpoint(path)
    if state.get("kind") != "population":
        raise MarlError(
            f"{path} is not a population run (train one with marl population train, e.g. "
            "preset=matrix_game_specialists); a generalist needs a population of partners."
        )
    return {
        "source": str(resolve_checkpoint(path)),
        "config": state["config"],
        "weights": state["population"],
    }


def partner_config(snapshot: dict, env_kwargs: dict[str, Any] | None = None) -> PopulationConfig:
    """A ``partner_snapshot``'s population config, its env's settings changed by ``env_kwargs`` (the
    generalist's ``env.kwargs``): the game the generalist plays with those partners."""
    cfg = population_config_from_dict(snapshot["config"])
    cfg.env.kwargs = {**cfg.env.kwargs, **(env_kwargs or {})}
    return cfg


def build_partners(
    snapshot: dict, device: torch.device, env_kwargs: dict[str, Any] | None = None
) -> tuple[Population, PopulationConfig]:
    """The frozen partner population (no gradients) from a ``partner_snapshot``, and ``partner_config``."""
    trained = population_config_from_dict(snapshot["config"])
    population = build_population(trained, weights=snapshot["weights"], device=device)
    cfg = partner_config(snapshot, env_kwargs)
    sizes = seat_sizes(cfg) if env_kwargs else (population.obs_dim, population.n_actions)
    if sizes != (population.obs_dim, population.n_actions):
        raise MarlError(
            f"env.kwargs={env_kwargs} change what a seat observes or does ({sizes} observations "
            f"and actions, where the partners of {snapshot['source']} take "
            f"{(population.obs_dim, population.n_actions)}): change only settings the partners can play with "
            "(e.g. retry), or train partners with them."
        )
    return population.requires_grad_(False).eval(), cfg


def same_env(a: PopulationConfig, b: PopulationConfig) -> bool:
    """Whether two populations play the same (unrestricted) env."""
    return (a.env.name, a.env.max_steps, a.env.kwargs) == (b.env.name, b.env.max_steps, b.env.kwargs)


# ---------------------------------------------------------------------------------------------------------
# Rollouts: the generalist in one seat, a frozen population member in the other
# ---------------------------------------------------------------------------------------------------------


@dataclass
class GeneralistRollout:
    """One iteration of the generalist's data ``[envs, T, ...]`` and the episodes that ended in it."""

    obs: Tensor  # [E, T, D] the generalist's own observation
    prev_action: Tensor  # [E, T] long (-1: none)
    prev_reward: Tensor  # [E, T]
    start: Tensor  # [E, T] bool: an episode starts at this step (the GRU resets)
    action: Tensor  # [E, T] long
    log_prob: Tensor  # [E, T]
    value: Tensor  # [E, T]
    reward: Tensor  # [E, T]
    done: Tensor  # [E, T] bool
    terminated: Tensor  # [E, T] bool
    bootstrap: Tensor  # [E, T] value of the true final observation where the episode was truncated, else 0
    last_value: Tensor  # [E] value of the observation after the rollout
    chunk_hidden: Tensor  # [E, T / chunk_length, H] the GRU state before each chunk's first step
    episode_partner: Tensor  # [M] each ended episode's partner member
    episode_seat: Tensor  # [M] the generalist's seat in it
    episode_return: Tensor  # [M]
    episode_success: Tensor  # [M] bool

    @property
    def frames(self) -> int:
        return self.done.numel()


class GeneralistSeats:
    """The recurrent generalist stepping a batch of seats: its GRU state, previous action and previous reward
    per seat, reset before the first step and advanced by every step's outcome. A seat policy of
    ``evaluate.play``, and the generalist's half of ``GeneralistPairs`` in training (which reads what the
    last step took and gave: ``inputs``, ``log_prob``, ``value``)."""

    STATE = ("hidden", "prev_action", "prev_reward", "start")

    def __init__(self, model: RecurrentActorCritic, deterministic: bool = True):
        self.model, self.deterministic = model, deterministic

    def reset(self, n_seats: int) -> None:
        device = self.model.value_head.weight.device
        self.hidden = torch.zeros(n_seats, self.model.hidden_size, device=device)
        self.prev_action = torch.full((n_seats,), -1, dtype=torch.long, device=device)
        self.prev_reward = torch.zeros(n_seats, device=device)
        self.start = torch.ones(n_seats, dtype=torch.bool, device=device)

    def step(self, obs: Tensor, hidden: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, value, next hidden state) of ``obs`` from the current inputs (or ``hidden``)."""
        hidden = self.hidden if hidden is None else hidden
        return self.model.step(obs, self.prev_action, self.prev_reward, hidden, self.start)

    @torch.no_grad()
    def __call__(self, obs: Tensor) -> Tensor:
        self.inputs = {name: getattr(self, name) for name in self.STATE} | {"obs": obs}
        logits, self.value, self.hidden = self.step(obs)
        self.prev_action, self.log_prob = sample_categorical(logits.log_softmax(-1), self.deterministic)
        return self.prev_action

    def observe(self, reward: Tensor, done: Tensor) -> None:
        self.prev_reward, self.start = reward, done


class GeneralistPairs:
    """The generalist in one seat of every slot and a frozen partner member in the other: the policy that
    the pair collector (marl/population/rollout.py) steps. ``act`` steps the generalist's GRU for all slots
    at once and every partner in one batched ``Population.act``; ``observe`` records the generalist's step
    and, where a slot's episode ended, draws its next partner (uniform over members) and seat (0 or 1).
    Episodes run across iterations, with their hidden states. Draws and sampling noise come from torch's
    global RNG (saved in checkpoints)."""

    STATE = ("partner", "seat", "episode_return")

    def __init__(
        self,
        model: RecurrentActorCritic,
        partners: Population,
        num_envs: int,
        success_key: str,
        partner_deterministic: bool = False,
    ):
        self.partners, self.success_key = partners, success_key
        self.partner_deterministic = partner_deterministic
        device = model.value_head.weight.device
        self.slots = torch.arange(num_envs, device=device)
        self.partner = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.seat = torch.zeros_like(self.partner)
        self.resample(torch.ones(num_envs, dtype=torch.bool, device=device))
        self.player = GeneralistSeats(model, deterministic=False)
        self.player.reset(num_envs)
        self.episode_return = torch.zeros(num_envs, device=device)
        self.records: list[dict[str, Tensor]] = []

    def resample(self, mask: Tensor) -> None:
        """New partner (uniform over members) and seat (0 or 1) for the slots where ``mask [envs]`` holds."""
        partner = torch.randint(self.partners.n_members, mask.shape, device=mask.device)
        seat = torch.randint(2, mask.shape, device=mask.device)
        self.partner = torch.where(mask, partner, self.partner)
        self.seat = torch.where(mask, seat, self.seat)

    @torch.no_grad()
    def act(
        self, obs: Tensor, member: Tensor | None = None, deterministic: bool = False, layout: Any = None
    ) -> tuple[Tensor, Tensor]:
        """``obs [envs, 2, D]`` -> both seats' actions ``[envs, 2]``: the generalist samples its own, the
        partners act as ``partner_deterministic`` says. The collector's ``member``, ``deterministic`` and
        ``layout`` are unused (the generalist draws its own partners), and so are the log-probs returned."""
        player = self.player
        action = player(obs[self.slots, self.seat])
        partner_obs = obs[self.slots, 1 - self.seat].unsqueeze(1)  # [E, 1, D]: one seat per slot
        partner = self.partners.act(partner_obs, self.partner.unsqueeze(1), self.partner_deterministic)[0]
        self.acted = player.inputs | {"action": action, "log_prob": player.log_prob, "value": player.value}
        self.acted |= {"partner": self.partner, "seat": self.seat}
        first = (self.seat == 0).unsqueeze(-1)
        joint = torch.where(
            first, torch.stack([action, partner[:, 0]], -1), torch.stack([partner[:, 0], action], -1)
        )
        return joint, torch.zeros_like(joint, dtype=player.value.dtype)

    @torch.no_grad()
    def observe(self, step: TensorDictBase) -> None:
        """Record the step's outcome for the generalist; carry its GRU state; redraw where episodes ended.
        A time-limit truncation bootstraps from the value of the true final observation (one extra GRU
        step), a termination does not."""
        acted, player = self.acted, self.player
        reward = step[GROUP, "reward"][self.slots, self.seat, 0]
        done, terminated = step["done"].squeeze(-1), step["terminated"].squeeze(-1)
        truncated = done & ~terminated
        bootstrap = torch.zeros_like(acted["value"])
        if truncated.any():
            final = step[GROUP, "observation"][self.slots, self.seat]
            start = torch.zeros_like(done)
            _, final_value, _ = player.model.step(final, acted["action"], reward, player.hidden, start)
            bootstrap = torch.where(truncated, final_value, bootstrap)
        self.episode_return += reward
        success = step[GROUP, "info", self.success_key][self.slots, self.seat, 0] > 0.5
        outcome = {"reward": reward, "done": done, "terminated": terminated, "bootstrap": bootstrap}
        self.records.append(
            acted | outcome | {"episode_return": self.episode_return.clone(), "success": success}
        )
        player.observe(reward, done)
        self.episode_return = self.episode_return * ~done
        self.resample(done)

    @torch.no_grad()
    def rollout(self, obs: Tensor, chunk_length: int) -> GeneralistRollout:
        """The steps recorded since the last call; ``obs [envs, 2, D]``: the observations after them."""
        data = {key: torch.stack([r[key] for r in self.records], dim=1) for key in self.records[0]}
        self.records = []
        _, last_value, _ = self.player.step(obs[self.slots, self.seat])
        ended = data["done"]
        return GeneralistRollout(
            **{key: data[key] for key in ("obs", "prev_action", "prev_reward", "start", "action")},
            **{key: data[key] for key in ("log_prob", "value", "reward", "done", "terminated", "bootstrap")},
            last_value=last_value,
            chunk_hidden=data["hidden"][:, ::chunk_length],
            episode_partner=data["partner"][ended],
            episode_seat=data["seat"][ended],
            episode_return=data["episode_return"][ended],
            episode_success=data["success"][ended],
        )

    def state_dict(self) -> dict:
        """Partners, seats, running returns and the generalist's state per slot: an exact resume."""
        owners = ((self, self.STATE), (self.player, self.player.STATE))
        return {name: getattr(owner, name).clone() for owner, names in owners for name in names}

    def load_state_dict(self, state: dict) -> None:
        for owner, names in ((self, self.STATE), (self.player, self.player.STATE)):
            for name in names:
                setattr(owner, name, state[name].to(self.slots.device).clone())


# ---------------------------------------------------------------------------------------------------------
# Building a run
# ---------------------------------------------------------------------------------------------------------


@dataclass
class GeneralistTrainer:
    """Everything a generalist run holds in memory; ``state_dict`` is its checkpoint."""

    cfg: GeneralistConfig
    device: torch.device
    model: RecurrentActorCritic
    optimizer: torch.optim.Optimizer
    partners: Population
    partner_cfg: PopulationConfig
    partner_snapshot: dict
    collector: PairCollector  # every slot plays "pair 0": the generalist with a partner it draws itself
    seats: GeneralistPairs
    test_partners: tuple[Population, PopulationConfig] | None = None
    iteration: int = 0
    frames: int = 0
    wall_time: float = 0.0

    def state_dict(self) -> dict:
        return trainer_state(
            self,
            config_to_dict(self.cfg),
            "generalist",
            model_spec=self.model.spec(),
            model=clone_tree(self.model.state_dict()),
            optimizer=clone_tree(self.optimizer.state_dict()),
            partners=self.partner_snapshot,
            collector=self.collector.state_dict(),
            seats=self.seats.state_dict(),
        )

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        collector = state["collector"]
        if "seats" not in state:  # a checkpoint of the generalist's former own collector
            collector = {"shards": [{"env": collector["env"], "td": collector["td"]}], **collector}
            collector.update(
                pairs=self.collector.assignment.pairs, episode_return=self.collector.episode_return
            )
        self.collector.load_state_dict(collector)
        self.seats.load_state_dict(state.get("seats", state["collector"]))
        restore_trainer_state(self, state)


def build_trainer(cfg: GeneralistConfig, snapshot: dict | None = None) -> GeneralistTrainer:
    """Seed, then load the partners (from ``snapshot``, else the population run) and build the rest."""
    device = resolve_device(cfg.experiment.device)
    if cfg.experiment.threads:
        torch.set_num_threads(cfg.experiment.threads)
    snapshot = snapshot or partner_snapshot(cfg.generalist.population)
    partners, partner_cfg = build_partners(snapshot, device, cfg.env.kwargs)
    torch.manual_seed(cfg.experiment.seed)
    obs_dim, n_actions = seat_sizes(partner_cfg)
    model = RecurrentActorCritic(
        obs_dim, n_actions, cfg.model.recurrent_size, cfg.model.hidden_sizes, cfg.model.activation
    )
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.algorithm.lr, eps=cfg.algorithm.adam_eps)
    n = cfg.env.num_envs
    env = make_env(partner_cfg.env_config(n), device, cfg.experiment.seed)
    one_pair = assign_slots(self_play_pairs(1, device), n)
    collector = PairCollector([env], one_pair, 1, partner_cfg.population.label_key)
    info = collector.current[GROUP, "info"]
    if cfg.generalist.success_key not in info.keys():  # noqa: SIM118 - a TensorDict's keys
        raise MarlError(
            f"generalist.success_key={cfg.generalist.success_key!r} is not in the env's info (it reports "
            f"{', '.join(info.keys())}). Set generalist.success_key to the key that is 1 where an episode "
            "succeeded."
        )
    seats = GeneralistPairs(
        model, partners, n, cfg.generalist.success_key, cfg.generalist.partner_deterministic
    )
    test_partners = None
    if cfg.generalist.test_population:
        test_snapshot = partner_snapshot(cfg.generalist.test_population)
        test_partners = build_partners(test_snapshot, device, cfg.env.kwargs)
        if not same_env(test_partners[1], partner_cfg):
            raise MarlError(
                f"generalist.test_population={cfg.generalist.test_population} plays another env than the "
                "training partners "
                f"({test_partners[1].env} vs {partner_cfg.env}); held-out partners must play the same game."
            )
    return GeneralistTrainer(
        cfg, device, model, optimizer, partners, partner_cfg, snapshot, collector, seats, test_partners
    )


# ---------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------


def train_generalist(
    cfg: GeneralistConfig, resume: str | Path | None = None, stop_after: int | None = None
) -> Path:
    """Train (or continue) a generalist run; returns its directory. ``stop_after`` ends this call after that
    many iterations (tests use it to simulate an interruption)."""
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        if state.get("kind") != "generalist":
            raise MarlError(
                f"{resume} is not a generalist run (its checkpoint is a {state.get('kind')!r} run)."
            )
        run_dir = run_directory(resume)
        check_resume(generalist_config_from_dict(state["config"]), cfg, RESUMABLE, "generalist run")
    trainer = build_trainer(cfg, None if state is None else state["partners"])
    if state is not None:
        trainer.load_state_dict(state)
    else:
        run_dir = new_run_dir(cfg.experiment.runs_dir, cfg.experiment.name)
    exp = cfg.experiment

    def one_iteration(logger: RunLogger) -> dict[str, float]:
        metrics = train_iteration(trainer)
        if trainer.iteration == exp.iterations or due(trainer.iteration, exp.eval_every, exp.iterations):
            metrics.update(evaluation_metrics(trainer))
        return metrics

    plan = RunPlan(
        trainer=trainer,
        run_dir=run_dir,
        settings=exp,
        n_iterations=exp.iterations,
        name=exp.name,
        resume_command=f"marl population generalist resume={run_dir}",
        config_yaml=config_to_yaml(cfg),
        hparams=flatten(config_to_dict(cfg)),
        one_iteration=one_iteration,
        final_metric=lambda key: key.endswith(("_mean", "harmonic_mean")),
        write_summary=lambda: write_summary(run_dir, trainer),
        header=lambda logger: logger.log_text("run/partners", trainer.partner_snapshot["source"]),
        description=describe_run(trainer, run_dir),
        postfix=lambda metrics: {
            "fps": f"{metrics['perf/total_fps']:.0f}",
            "success": f"{metrics.get('train/success_mean', float('nan')):.2f}",
        },
    )
    return run_plan(plan, resumed=state, stop_after=stop_after)


def train_iteration(trainer: GeneralistTrainer) -> dict[str, float]:
    """Rollout with frozen partners -> GAE -> PPO over chunks. Returns the iteration's metrics."""
    cfg, model = trainer.cfg, trainer.model
    start = time.perf_counter()
    trainer.collector.collect(trainer.seats, cfg.algorithm.rollout_steps)
    rollout = trainer.seats.rollout(trainer.collector.observation(), cfg.algorithm.chunk_length)
    collected = time.perf_counter()
    advantage, target = advantages(rollout, cfg.algorithm.gamma, cfg.algorithm.gae_lambda)
    stats = ppo_update_chunks(model, trainer.optimizer, rollout, advantage, target, cfg.algorithm)
    trained = time.perf_counter()

    speed = count_iteration(trainer, rollout.frames, start, collected, trained)
    metrics = episode_metrics(rollout, trainer.partners.n_members)
    metrics.update({f"train/{k}": v for k, v in stats.items()})
    metrics["train/explained_variance"] = explained_variance(rollout.value, target)
    metrics.update(speed)
    return metrics


# ---------------------------------------------------------------------------------------------------------
# GAE and PPO over chunks
# ---------------------------------------------------------------------------------------------------------


def advantages(rollout: GeneralistRollout, gamma: float, lmbda: float) -> tuple[Tensor, Tensor]:
    """GAE advantages and value targets ``[E, T]``. The next value is the next step's value, the one after
    the rollout at its end, and the true final observation's value where an episode was truncated; a
    terminated episode does not bootstrap and the recursion stops at every end."""
    next_value = torch.cat([rollout.value[:, 1:], rollout.last_value.unsqueeze(1)], dim=1)
    next_value = torch.where(rollout.done & ~rollout.terminated, rollout.bootstrap, next_value)
    return generalized_advantages(
        gamma, lmbda, rollout.value, next_value, rollout.reward, rollout.done, rollout.terminated
    )


def ppo_update_chunks(
    model: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: GeneralistRollout,
    advantage: Tensor,
    target: Tensor,
    cfg: GeneralistAlgorithm,
) -> dict[str, float]:
    """``cfg.epochs`` epochs of clipped PPO over chunks of ``cfg.chunk_length`` steps,
    ``cfg.minibatch_size / chunk_length`` chunks per minibatch, each replayed from its stored hidden state
    (truncated BPTT; the states are those of the policy that acted)."""
    length = cfg.chunk_length

    def chunks(x: Tensor) -> Tensor:  # [E, T, ...] -> [E * T / L, L, ...]
        return x.reshape(-1, length, *x.shape[2:])

    names = ("obs", "prev_action", "prev_reward", "start", "action", "log_prob")
    data = {name: chunks(getattr(rollout, name)) for name in names}
    data.update(advantage=chunks(advantage), target=chunks(target))
    data["hidden"] = rollout.chunk_hidden.reshape(-1, rollout.chunk_hidden.shape[-1])

    def loss_of(mb: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logits, value = model.evaluate_chunks(
            mb["obs"], mb["prev_action"], mb["prev_reward"], mb["hidden"], mb["start"]
        )
        log_p = logits.log_softmax(-1)
        log_prob = log_p.gather(-1, mb["action"].unsqueeze(-1)).squeeze(-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        old_log_prob, advantage, target = mb["log_prob"], mb["advantage"], mb["target"]
        return ppo_loss(
            log_prob, old_log_prob, advantage, entropy, value, target, cfg, normalise=cfg.normalize_advantage
        )

    def clip_and_step() -> dict[str, Tensor]:
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        return {"grad_norm": grad_norm}

    chunks_per_minibatch, what = cfg.minibatch_size // length, "generalist's PPO"
    return minibatch_epochs(
        data, loss_of, optimizer, clip_and_step, cfg, chunks_per_minibatch, lr_key="lr", what=what
    )


# ---------------------------------------------------------------------------------------------------------
# Metrics and evaluation
# ---------------------------------------------------------------------------------------------------------


def episode_metrics(rollout: GeneralistRollout, n_members: int) -> dict[str, float]:
    """Success and return of the episodes that ended, overall, per partner member and per seat."""
    if rollout.episode_partner.numel() == 0:
        return {"train/episodes": 0.0}
    success, returns = rollout.episode_success.float(), rollout.episode_return
    metrics = {
        "train/episodes": float(success.numel()),
        "train/success_mean": float(success.mean()),
        "train/return_mean": float(returns.mean()),
    }
    for name, owner, size in (
        ("partner", rollout.episode_partner, n_members),
        ("seat", rollout.episode_seat, 2),
    ):
        counts = torch.bincount(owner, minlength=size)
        for metric, values in (("success", success), ("return", returns)):
            means = torch.zeros(size, device=values.device).index_add_(0, owner, values) / counts.clamp_min(1)
            for i in (counts > 0).nonzero().flatten().tolist():
                metrics[f"train/{metric}/{name}_{i}"] = float(means[i])
    return metrics


def held_out_reports(trainer: GeneralistTrainer) -> dict[str, dict[str, Any]]:
    """`robustness` reports from held-out starts with the training partners (``"train"``) and, if given, the
    test population (``"test"``)."""
    cfg = trainer.cfg
    groups = {"train": (trainer.partners, trainer.partner_cfg, cfg.experiment.seed + EVAL_SEED_OFFSET)}
    if trainer.test_partners is not None:
        groups["test"] = (*trainer.test_partners, cfg.experiment.seed + TEST_SEED_OFFSET)
    exp, player = cfg.experiment, GeneralistSeats(trainer.model, cfg.experiment.eval_deterministic)
    return {
        name: robustness(
            player,
            partners,
            partner_cfg,
            exp.eval_episodes,
            seed,
            trainer.device,
            exp.eval_deterministic,
            cfg.generalist.success_key,
        )  # fmt: skip
        for name, (partners, partner_cfg, seed) in groups.items()
    }


def evaluation_metrics(trainer: GeneralistTrainer) -> dict[str, float]:
    """Held-out evaluation with the training partners (``eval/``) and the test population (``test/``)."""
    metrics = {}
    for name, report in held_out_reports(trainer).items():
        prefix = "eval" if name == "train" else "test"
        metrics[f"{prefix}/success_mean"] = report["success_mean"]
        metrics[f"{prefix}/harmonic_mean"] = report["harmonic_mean"]
        metrics[f"{prefix}/return_mean"] = float(torch.tensor(report["return"]).mean())
        for j, seats in enumerate(report["success"]):
            metrics[f"{prefix}/success/partner_{j}"] = report["success_per_partner"][j]
            for s, value in enumerate(seats):
                metrics[f"{prefix}/success/partner_{j}/seat_{s}"] = value
    return metrics


def load_generalist(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[RecurrentActorCritic, dict]:
    """A trained generalist network and its checkpoint (config, training partners) from a run or file."""
    state = load_checkpoint(path, map_location=device)
    if state.get("kind") != "generalist":
        raise MarlError(f"{path} is not a generalist run (its checkpoint is a {state.get('kind')!r} run).")
    model = RecurrentActorCritic(**state["model_spec"]).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), state


def evaluate_generalist(
    generalist: str | Path | RecurrentActorCritic,
    partners: str | Path | tuple[Population, PopulationConfig] | None = None,
    episodes: int = 16,
    seed: int = EVAL_SEED_OFFSET,
    deterministic: bool = True,
    device: str | torch.device = "cpu",
    success_key: str | None = None,
) -> dict[str, Any]:
    """Success of a generalist (a run directory or checkpoint, or a network) with every member of a partner
    population (a population run, a ``(Population, PopulationConfig)`` pair, or None: the run's own training
    partners), in both seats, ``episodes`` held-out episodes each; -> per partner and seat success and
    return, per partner success, their mean and harmonic mean (the robustness score). ``device`` applies
    to a run; a network is evaluated where its parameters are."""
    trained_env, run_cfg, env_kwargs = None, None, {}
    if isinstance(generalist, RecurrentActorCritic):
        model, device = generalist, generalist.value_head.weight.device
        if partners is None:
            raise MarlError("evaluate_generalist needs partners when given a network instead of a run.")
    else:
        device = torch.device(device)
        model, state = load_generalist(generalist, device)
        run_cfg = generalist_config_from_dict(state["config"])
        env_kwargs = run_cfg.env.kwargs  # partners play the generalist's game
        trained_env = partner_config(state["partners"], env_kwargs)
        if partners is None:
            partners = build_partners(state["partners"], device, env_kwargs)
    if isinstance(partners, (str, Path)):
        partners = build_partners(partner_snapshot(partners), device, env_kwargs)
    population, partner_cfg = partners
    if trained_env is not None and not same_env(trained_env, partner_cfg):
        raise MarlError(
            f"The partners play {partner_cfg.env}, but the generalist trained on {trained_env.env}; evaluate "
            "it with partners of the same game."
        )
    key = success_key or (run_cfg.generalist.success_key if run_cfg is not None else "success")
    player = GeneralistSeats(model, deterministic)
    report = robustness(
        player, population.to(device), partner_cfg, episodes, seed, device, deterministic, key
    )
    return {**report, "episodes": episodes, "seed": seed, "deterministic": deterministic}


# ---------------------------------------------------------------------------------------------------------
# Files and CLI
# ---------------------------------------------------------------------------------------------------------


def write_summary(run_dir: Path, trainer: GeneralistTrainer) -> dict:
    """``generalist.json``: the final held-out evaluation with the training (and test) partners."""
    cfg = trainer.cfg
    summary: dict[str, Any] = {
        "seed": cfg.experiment.seed,
        "iterations": trainer.iteration,
        "frames": trainer.frames,
        "wall_time_s": trainer.wall_time,
        "partners": trainer.partner_snapshot["source"],
        "eval_episodes": cfg.experiment.eval_episodes,
        "eval_deterministic": cfg.experiment.eval_deterministic,
        "hardware": hardware_summary(trainer.device),
    }
    for name, report in held_out_reports(trainer).items():
        summary[f"{name}_partners"] = report
    (Path(run_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def describe_run(trainer: GeneralistTrainer, run_dir: Path) -> str:
    cfg, partners = trainer.cfg, trainer.partners.n_members
    params = sum(p.numel() for p in trainer.model.parameters())
    return (
        f"Generalist (GRU {cfg.model.recurrent_size}, {params:,} params) with {partners} frozen partners "
        f"from {trainer.partner_snapshot['source']} on {trainer.partner_cfg.env.name}: {cfg.env.num_envs} "
        f"slots x {cfg.algorithm.rollout_steps} steps, {cfg.experiment.iterations} iterations on "
        f"{trainer.device}\n"
        f"Logs: {run_dir}  (tensorboard --logdir {run_dir})"
    )


def run_generalist(args: argparse.Namespace) -> int:
    """`marl population generalist ...`: a new run, or ``resume=<run dir>`` with optional overrides."""
    from marl.runs import stop_signals_interrupt

    dotted, resume = parse_generalist_args(args.overrides)
    if resume is not None:
        saved = generalist_config_from_dict(load_checkpoint(resume)["config"])
        cfg = SCHEMA.with_overrides(saved, dotted)
        print(f"Resuming {resume}")
    else:
        cfg = load_generalist_config(args.overrides)
    with stop_signals_interrupt():
        run_dir = train_generalist(cfg, resume=resume)
    summary_path = Path(run_dir) / SUMMARY_FILE
    if summary_path.exists():
        print("\n" + format_summary(json.loads(summary_path.read_text())))
    print(
        f"\nRun saved in {run_dir}\n"
        f"  TensorBoard: tensorboard --logdir {run_dir}\n"
        f"  Summary:     {summary_path} (success per partner and seat, harmonic mean)"
    )
    return 0


def format_summary(summary: dict) -> str:
    """The result of a finished run, as `write_summary` saved it: success with each partner, the mean and
    the harmonic mean, for the training partners and (if any) the test population."""
    mode = "deterministic" if summary.get("eval_deterministic", True) else "stochastic"
    lines = [
        f"Generalist after {summary['iterations']} iterations ({summary['frames']:,} frames), "
        f"{summary['eval_episodes']} {mode} episodes per partner and seat from held-out starts:"
    ]
    for name, title in (("train", "training partners"), ("test", "test partners")):
        report = summary.get(f"{name}_partners")
        if report is None:
            continue
        per_partner = "  ".join(f"p{i} {v:.2f}" for i, v in enumerate(report["success_per_partner"]))
        lines.append(
            f"  {title}: harmonic-mean success {report['harmonic_mean']:.3f}, mean "
            f"{report['success_mean']:.3f}  ({per_partner})"
        )
    return "\n".join(lines)


__all__ = [
    "GeneralistPairs",
    "GeneralistConfig",
    "evaluate_generalist",
    "generalist_config_from_dict",
    "load_generalist",
    "load_generalist_config",
    "run_generalist",
    "train_generalist",
]

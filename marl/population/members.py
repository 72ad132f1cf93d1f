"""A population run's members as data: building the batched networks from a config, loading a trained
population, its all-pairs evaluation (`PairEvaluation`) and the behaviour-label counts that evaluation and
training both report. Shared by the trainers (xpmin.py, extract.py, generalist.py) and evaluate.py, which
therefore never import one another for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torchrl.envs import EnvBase

from marl.agents.population import Population
from marl.checkpoint import load_checkpoint
from marl.envs.factory import describe_env, make_env
from marl.errors import MarlError
from marl.population.config import PopulationConfig, population_config_from_dict
from marl.population.pairs import pair_matrix
from marl.runs import untouched_rng

EVAL_SEED_OFFSET = 1_000_003  # all-pairs evaluations use their own seed: the same episodes every time


def seat_sizes(cfg: PopulationConfig, env: EnvBase | None = None) -> tuple[int, int]:
    """(observation size, number of actions) of one seat of ``cfg``'s env, read off ``env`` or a one-slot
    probe (training's RNG untouched); the env must have two seats with one categorical action each."""
    if env is None:
        with untouched_rng(torch.device("cpu")):
            env = make_env(cfg.env_config(1), "cpu", 0)
    info = describe_env(env, cfg.env.name, cfg.env.max_steps).groups[0]
    if info.n_agents != 2 or not info.discrete or info.action_nvec is not None:
        raise MarlError(
            f"{cfg.env.name} is not a two-seat env with one categorical action per seat (it has "
            f"{info.n_agents} agents, discrete={info.discrete}); populations and their generalists play the "
            "native two-seat envs (native/matrix_game, native/cooking) or a two-agent PettingZoo env."
        )
    return info.obs_dim, info.action_dim


def build_population(
    cfg: PopulationConfig,
    env: EnvBase | None = None,
    weights: dict | None = None,
    device: str | torch.device = "cpu",
    sizes: tuple[int, int] | None = None,
) -> Population:
    """The population's networks from the config, sized for ``env`` (default: a probe of ``cfg``'s env, or
    the given ``(obs_dim, n_actions)``), holding ``weights`` if given, on ``device``."""
    obs_dim, n_actions = sizes or seat_sizes(cfg, env)
    model = cfg.model
    population = Population(
        cfg.population.size,
        obs_dim,
        n_actions,
        hidden_sizes=model.hidden_sizes,
        activation=model.activation,
        scheme=cfg.sharing.scheme,
        hyper_variant=cfg.sharing.hyper.variant,
        hyper_embedding_dim=cfg.sharing.hyper.embedding_dim,
        hyper_hidden=cfg.sharing.hyper.hidden_size,
    ).to(device)
    if weights is not None:
        population.load_state_dict(weights)
    return population


def label_histogram(labels: Tensor, owner: Tensor, n_members: int, n_labels: int) -> Tensor:
    """Counts ``[N, n_labels + 1]`` of episode labels per member; column 0 is label -1 (none)."""
    counts = torch.zeros(n_members * (n_labels + 1), dtype=torch.long, device=labels.device)
    counts.index_add_(0, owner * (n_labels + 1) + labels + 1, torch.ones_like(labels))
    return counts.view(n_members, n_labels + 1)


def modal_labels(histogram: Tensor) -> Tensor:
    """Each member's most frequent label ``[N]`` (-1 where it has none, or -1 is the most frequent)."""
    label = histogram.argmax(-1) - 1
    return torch.where(histogram.sum(-1) > 0, label, -1)


def distinct_labels(labels: Tensor) -> int:
    """How many different real labels (>= 0) the members' modal labels cover."""
    return len({int(x) for x in labels.tolist() if x >= 0})


@dataclass
class PairEvaluation:
    """One episode in each of ``episodes`` slots of every pair: returns, labels, success ``[P, episodes]``."""

    pairs: Tensor  # [P, 2]
    returns: Tensor  # [P, episodes] team return (mean over seats)
    labels: Tensor  # [P, episodes] long, -1 = no label
    success: Tensor  # [P, episodes] 0/1
    outcomes: dict[str, Tensor] = field(default_factory=dict)  # every env info key at the end [P, episodes]

    def return_matrix(self, n_members: int) -> Tensor:
        """Mean return ``[N, N]`` of each ordered pair (rows: seat 0's member)."""
        episodes = self.returns.shape[1]
        counts = torch.full((self.pairs.shape[0],), episodes, device=self.returns.device)
        return pair_matrix(self.pairs, self.returns.sum(-1), counts, n_members)[0]

    def self_play_counts(self, n_members: int, n_labels: int = 0) -> Tensor:
        """Label counts ``[N, L + 1]`` of each member's self-play episodes (column 0: no label), with at
        least ``n_labels`` label columns; needs the SP pairs evaluated."""
        sp = self.pairs[:, 0] == self.pairs[:, 1]
        labels = self.labels[sp]
        owner = self.pairs[sp, 0].unsqueeze(-1).expand_as(labels)
        n_labels = max(n_labels, int(labels.max()) + 1 if labels.numel() else 0)
        return label_histogram(labels.flatten(), owner.flatten(), n_members, n_labels)

    def self_play_labels(self, n_members: int) -> Tensor:
        """Each member's modal label in self-play ``[N]`` (-1: none); needs the SP pairs evaluated."""
        return modal_labels(self.self_play_counts(n_members))


def load_population(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Population, PopulationConfig]:
    """A trained population (and its config) from a run directory or checkpoint, for evaluation/extraction."""
    return population_from_checkpoint(load_checkpoint(path, map_location=device), path, device)


def population_from_checkpoint(
    state: dict, path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Population, PopulationConfig]:
    """`load_population` of an already loaded checkpoint `state` (read from `path`)."""
    if state.get("kind") != "population":
        raise MarlError(f"{path} is not a population run (its checkpoint was written by marl train).")
    cfg = population_config_from_dict(state["config"])
    return build_population(cfg, weights=state["population"], device=device), cfg


def run_method(state: dict) -> str:
    """What trained a population checkpoint: its population.method (xpmin, selfplay, specialists), or
    extract_dagger / extract_rl for an extraction run, whose students train in self-play."""
    extraction = state.get("extraction")
    if isinstance(extraction, dict):
        settings = extraction.get("config", {})  # sections, or the old flat layout
        return f"extract_{settings.get('extract', settings).get('method', 'unknown')}"
    return str(state["config"]["population"]["method"])

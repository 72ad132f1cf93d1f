"""`marl population evaluate`: cross-play matrix, diversity, specialisation and overfitness of a population.

Read top to bottom: seat policies and the one batched rollout they share, then what is played (all ordered
pairs of a population; players against held-out partners), then the metrics computed from counts (pure
functions, testable on hand-made populations), then a whole run (`evaluate_run`) and the command line.

Definitions (docs/metrics.md, "Populations"): X is the member, Y the label (convention, recipe) its
self-play episodes completed; episodes that completed none are left out of Y.

- **diversity** ``D = H(Y)``, **specialisation** ``S = I(X; Y) / H(Y)`` (0 when ``H(Y) = 0``), from the
  platform's discrete estimators (marl/metrics/information.py): Grassberger's entropies with bias-aware
  half-sampling intervals over episodes (``discrete_information``, measured to cover from ~200 labelled
  episodes, where a plug-in bootstrap does not), or the plug-in / Miller-Madow values with percentile
  bootstrap intervals (``estimator=``).
- **capable members**: self-play success rate ``>= 0.5``.
- **overfitness** ``O = mean over capable members i of (SP success of i - success of i with the held-out
  specialist(s) of i's most frequent label, averaged over both seats)``.
- a **generalist**'s robustness: its success with each held-out specialist (mean over both seats) and the
  harmonic mean of those successes (`specialist_robustness`).

Every evaluation plays one episode per env slot from held-out starts fixed by a seed (as marl/training.py's
``heldout_episodes``), all pairs in one env batch.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tensordict import TensorDictBase
from torch import Tensor

from marl.agents.population import MemberLayout, Population, sample_categorical
from marl.checkpoint import load_checkpoint, run_directory
from marl.collector import heldout_episodes
from marl.envs.factory import describe_env, make_env
from marl.errors import MarlError
from marl.metrics import bootstrap_ci, discrete_information, entropy_discrete, mutual_information_discrete
from marl.population.config import GROUP, PopulationConfig, specialist_targets
from marl.population.members import (
    EVAL_SEED_OFFSET,
    PairEvaluation,
    load_population,
    population_from_checkpoint,
    run_method,
)
from marl.population.pairs import all_pairs, assign_slots, self_play_pairs
from marl.runs import resolve_device, untouched_rng

EVALUATION_FILE = "evaluation.json"
MATRIX_FILE = "xp_matrix.png"
CAPABLE_SUCCESS = 0.5  # a member is capable when its self-play success rate is at least this

# ---------------------------------------------------------------------------------------------------------
# Seat policies and the batched core
# ---------------------------------------------------------------------------------------------------------

SeatPolicy = Callable[[Tensor], Tensor]
"""Acts for a fixed set of B seats: observations ``[B, obs_dim]`` -> actions ``[B]`` (long). Called once per
step with the same seats in the same order (slot order); every seat plays one episode from its first step.
A policy with state (a recurrent generalist) may define ``reset(n_seats: int)``, called before the first
step, and ``observe(reward: Tensor, done: Tensor)``, called after every step with its seats' rewards and
episode ends ``[B]``. The seat a policy sits in is only known from its observations (the cooking env's side
bit)."""


class PopulationSeats:
    """Members of a population as one seat policy: seat ``b`` is played by member ``member[b]``, all seats in
    one batched pass (the member-major layout of agents/population.py)."""

    def __init__(self, population: Population, member: Tensor, deterministic: bool = True):
        self.population, self.deterministic = population, deterministic
        self.member = member.reshape(-1, 1)  # [B, 1]: one "slot" of one seat per seat
        self.layout = MemberLayout.build(self.member, population.n_members)

    def __call__(self, obs: Tensor) -> Tensor:
        action, _ = self.population.act(obs.unsqueeze(1), self.member, self.deterministic, layout=self.layout)
        return action.squeeze(1)


class MemberPolicy:
    """One member alone as a seat policy (plain matmuls with its own weights): the simplest "generalist"."""

    def __init__(self, population: Population, member: int, deterministic: bool = True):
        self.population, self.member, self.deterministic = population, member, deterministic

    @torch.no_grad()
    def __call__(self, obs: Tensor) -> Tensor:
        log_p = self.population.member_logits(self.member, obs).log_softmax(-1)
        return sample_categorical(log_p, self.deterministic)[0]


@dataclass
class Episodes:
    """One episode per env slot: team return (mean over seats), success (0/1), label (-1: none), ``[E]``,
    each seat's own return ``[E, 2]`` and every info key the env reports, at the episode's end ``[E]``."""

    returns: Tensor
    success: Tensor
    label: Tensor
    seat_returns: Tensor
    info: dict[str, Tensor]


@torch.no_grad()
def play(
    cfg: PopulationConfig,
    num_envs: int,
    seats: Sequence[tuple[SeatPolicy, Tensor]],
    seed: int,
    device: torch.device,
    success_key: str = "success",
) -> Episodes:
    """One episode in each of ``num_envs`` slots of ``cfg``'s env (unrestricted unless its kwargs restrict
    it), from the held-out starts ``seed`` fixes. ``seats`` lists ``(policy, flat seat ids)``, a flat seat id
    being ``slot * 2 + seat``; together they must fill every seat exactly once.

    The platform's one episode player (marl/collector.py's ``heldout_episodes``, as marl train evaluates:
    same seeding, same episodes, training's RNG streams untouched), with every seat policy acting on its
    seats and a policy's ``observe`` hook seeing its seats' rewards."""
    seats = [(policy, index.reshape(-1).to(device)) for policy, index in seats]
    filled = torch.cat([index for _, index in seats]).sort().values
    if not torch.equal(filled, torch.arange(2 * num_envs, device=device)):
        raise ValueError(f"the seat policies must fill each of the {2 * num_envs} seats exactly once")
    with untouched_rng(device):
        env = make_env(cfg.env_config(num_envs), device, seed)
    for policy, index in seats:
        if hasattr(policy, "reset"):
            policy.reset(index.numel())

    def act(td: TensorDictBase) -> TensorDictBase:
        obs = td[GROUP, "observation"].reshape(2 * num_envs, -1)
        action = torch.zeros(2 * num_envs, dtype=torch.long, device=device)
        for policy, index in seats:  # a generalist and its partners: two policies, never one per pair
            action[index] = policy(obs[index]).long()
        return td.set((GROUP, "action"), action.view(num_envs, 2))

    def observe(td: TensorDictBase) -> None:
        reward, done = td["next", GROUP, "reward"].reshape(-1), td["next", "done"].reshape(num_envs)
        for policy, index in seats:
            if hasattr(policy, "observe"):
                policy.observe(reward[index], done.repeat_interleave(2)[index])

    info = describe_env(env, cfg.env.name, cfg.env.max_steps)
    played = heldout_episodes(env, info, act, seed, after_step=observe)
    label_key = cfg.population.label_key
    reported = [key.removeprefix("info/") for key in played if key.startswith("info/")]
    if label_key not in reported or success_key not in reported:
        raise MarlError(
            f"{cfg.env.name} reports {', '.join(reported)} in its info; population evaluation needs the "
            f"episode's label (population.label_key={label_key}) and its success ({success_key!r})."
        )
    returns = played[f"{GROUP}/return"]
    info = {key: played[f"info/{key}"] for key in reported}
    return Episodes(returns.mean(-1), info[success_key], info[label_key].round().long(), returns, info)


# ---------------------------------------------------------------------------------------------------------
# What is played: pairs of one population, players against partners
# ---------------------------------------------------------------------------------------------------------


def pair_outcomes(
    population: Population,
    cfg: PopulationConfig,
    pairs: Tensor,
    episodes_per_pair: int,
    seed: int,
    device: torch.device,
    deterministic: bool = True,
) -> PairEvaluation:
    """Every pair of ``pairs [P, 2]`` (seat 0's member, seat 1's member) in one env batch: each pair's
    returns, labels and success over ``episodes_per_pair`` episodes."""
    assignment = assign_slots(pairs.to(device), episodes_per_pair)
    seats = PopulationSeats(population, assignment.member.reshape(-1), deterministic)
    played = play(cfg, assignment.num_envs, [(seats, torch.arange(2 * assignment.num_envs))], seed, device)
    shape = (pairs.shape[0], episodes_per_pair)
    return PairEvaluation(
        assignment.pairs,
        played.returns.view(shape),
        played.label.view(shape),
        played.success.view(shape),
        {key: value.view(shape) for key, value in played.info.items()},
    )


def partner_episodes(
    player: Population | SeatPolicy,
    partners: Population,
    cfg: PopulationConfig,
    episodes_per_pair: int,
    seed: int,
    device: torch.device,
    deterministic: bool = True,
    success_key: str = "success",
) -> tuple[Tensor, Tensor]:
    """Success rate and the player's own mean return, ``[P, K, 2]`` each, of each player ``p`` with each
    partner ``k``, the player in seat ``s``.

    ``player``: a population (its P members are the players) or any seat policy (P = 1, e.g. a generalist).
    ``partners``: a population of K members (held-out specialists, a generalist's partners), acting as
    ``deterministic`` says. All ``P * K * 2 * episodes_per_pair`` slots run in one env batch of ``cfg``'s
    env."""
    n_players = player.n_members if isinstance(player, Population) else 1
    n_partners, slots = partners.n_members, n_players * partners.n_members * 2 * episodes_per_pair
    grid = torch.meshgrid(
        *(torch.arange(n) for n in (n_players, n_partners, 2, episodes_per_pair)), indexing="ij"
    )
    p, k, seat = (x.reshape(-1).to(device) for x in grid[:3])
    slot = torch.arange(slots, device=device)
    player_seats, partner_seats = slot * 2 + seat, slot * 2 + 1 - seat
    if isinstance(player, Population):
        player = PopulationSeats(player, p, deterministic)
    seats = [(player, player_seats), (PopulationSeats(partners, k, deterministic), partner_seats)]
    played = play(cfg, slots, seats, seed, device, success_key)
    player_return = played.seat_returns[slot, seat]
    shape = (n_players, n_partners, 2, episodes_per_pair)
    return played.success.view(shape).mean(-1), player_return.view(shape).mean(-1)


def harmonic_mean(values: Tensor | Sequence[float]) -> float:
    """``K / sum_k 1 / v_k`` of non-negative values; 0 when any value is 0 (NaN for none)."""
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if values.numel() == 0:
        return float("nan")
    if (values <= 0).any():
        return 0.0
    return float(values.numel() / values.reciprocal().sum())


def robustness(
    policy: SeatPolicy,
    partners: Population,
    cfg: PopulationConfig,
    episodes_per_pair: int,
    seed: int,
    device: torch.device | str = "cpu",
    deterministic: bool = True,
    success_key: str = "success",
) -> dict:
    """A seat policy's robustness to a population of partners (held-out specialists, a generalist's
    partners) in ``cfg``'s env: its success and own return with each partner in each seat ``[K][seat]``,
    success per partner (mean over both seats), their mean and their harmonic mean (the robustness score)."""
    played = partner_episodes(
        policy, partners, cfg, episodes_per_pair, seed, torch.device(device), deterministic, success_key
    )
    success, returns = (x[0].cpu() for x in played)  # [K, 2] of the one player
    per_partner = success.mean(-1)
    return {
        "success": success.tolist(),
        "return": returns.tolist(),
        "success_per_partner": per_partner.tolist(),
        "success_mean": float(per_partner.mean()),
        "harmonic_mean": harmonic_mean(per_partner),
    }


def specialist_robustness(
    policy: SeatPolicy,
    specialists: Population,
    specialists_cfg: PopulationConfig,
    episodes_per_pair: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict:
    """``robustness`` to held-out specialists (their labels included), in their (unrestricted) env."""
    deterministic = specialists_cfg.experiment.eval_deterministic
    found = robustness(policy, specialists, specialists_cfg, episodes_per_pair, seed, device, deterministic)
    return {"labels": specialist_targets(specialists_cfg), **found}


# ---------------------------------------------------------------------------------------------------------
# Metrics from counts (pure functions)
# ---------------------------------------------------------------------------------------------------------


LabelEstimator = Literal["grassberger", "plugin", "miller_madow"]


def label_information(
    label_counts: Tensor,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    estimator: LabelEstimator = "grassberger",
) -> dict[str, float]:
    """D = H(Y), I(X; Y), H(Y|X) and S = I(X; Y) / H(Y) (nats) of ``label_counts [N, L]`` (how many episodes
    of member x completed label y), each with an interval over episodes (the same resamples for all three).

    ``"grassberger"`` (default): Grassberger's entropies, bias-aware half-sampling intervals (``n_boot``
    halves; D clipped to log L); ``"plugin"`` (the exact values of the episodes' counts) or
    ``"miller_madow"``: percentile bootstrap intervals (``n_boot`` resamples), which miss the estimators'
    small-sample bias. NaN with fewer than 2 episodes."""
    n, n_labels = label_counts.shape
    counts = label_counts.long().reshape(-1)
    x = torch.arange(n).repeat_interleave(n_labels).repeat_interleave(counts)
    y = torch.arange(n_labels).repeat(n).repeat_interleave(counts)
    names = ("diversity", "mutual_information", "specialisation")
    if x.numel() < 2:
        return {f"{name}{end}": float("nan") for name in names for end in ("", "_low", "_high")} | {
            "conditional_entropy": float("nan")
        }

    if estimator == "grassberger":
        info = discrete_information(
            x,
            y,
            n_half=max(2, n_boot),
            level=level,
            generator=torch.Generator().manual_seed(seed),
            num_behaviours=max(1, n_labels),
        )
        out = {
            f"{name}{end}": value
            for name, key in zip(names, ("entropy", "mutual_information", "ratio"))
            for end, value in zip(("", "_low", "_high"), getattr(info, key))
        }
        out["conditional_entropy"] = out["diversity"] - out["mutual_information"]
        return out
    if estimator not in ("plugin", "miller_madow"):
        raise ValueError(
            f"unknown estimator {estimator!r}; expected 'grassberger', 'plugin' or 'miller_madow'"
        )
    miller_madow = estimator == "miller_madow"

    def entropy(x: Tensor, y: Tensor) -> Tensor:
        return entropy_discrete(y, miller_madow)

    def information(x: Tensor, y: Tensor) -> Tensor:
        return mutual_information_discrete(x, y, miller_madow)

    def specialisation(x: Tensor, y: Tensor) -> Tensor:
        h = entropy_discrete(y, miller_madow)
        ratio = mutual_information_discrete(x, y, miller_madow) / h.clamp_min(1e-300)
        return torch.where(h > 0, ratio.clamp(0.0, 1.0), torch.zeros_like(h))

    out: dict[str, float] = {}
    for name, statistic in zip(names, (entropy, information, specialisation)):
        generator = torch.Generator().manual_seed(seed)  # same resamples for every statistic
        value, low, high = bootstrap_ci(
            statistic, x, y, n_boot=n_boot, level=level, generator=generator, vectorized=True
        )
        out.update({name: float(value), f"{name}_low": float(low), f"{name}_high": float(high)})
    out["conditional_entropy"] = out["diversity"] - out["mutual_information"]
    return out


def modal_label(label_counts: Tensor) -> Tensor:
    """Each member's most frequent completed label ``[N]`` (lowest on ties; -1 for a member with none)."""
    return torch.where(label_counts.sum(-1) > 0, label_counts.argmax(-1), -1)


def overfitness(
    sp_success: Tensor,
    label: Tensor,
    capable: Tensor,
    partner_success: Tensor,
    partner_labels: Sequence[int],
    episodes: int | None = None,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Per member: success with the specialist(s) of its label ``label [N]`` (mean over them and both seats
    of ``partner_success [N, K, 2]``), gap = SP success - that; O = mean gap over the capable members whose
    label has a specialist (NaN if none).

    With ``episodes`` (the episodes behind every success rate) O also gets a parametric-bootstrap interval
    (``overfitness_low``/``_high``): each rate redrawn as Binomial(episodes, rate) / episodes, ``n_boot``
    times, the members counted and their labels held fixed; the percentile interval of the redrawn O."""
    labels = torch.as_tensor(list(partner_labels), device=label.device)
    match = label.unsqueeze(-1) == labels  # [N, K]; label -1 matches no specialist
    counted = capable & match.any(-1)

    def gaps(sp: Tensor, partner: Tensor) -> Tensor:  # [..., N]
        with_own = (partner.double().mean(-1) * match).sum(-1) / match.sum(-1)  # NaN: no specialist
        return sp.double() - with_own

    gap = gaps(sp_success, partner_success)
    with_own = sp_success.double() - gap
    out = {
        "own_specialist_success": with_own.tolist(),
        "overfitness_per_member": torch.where(counted, gap, float("nan")).tolist(),
        "overfitness": float(gap[counted].mean()) if counted.any() else float("nan"),
        "overfitness_members": int(counted.sum()),
    }
    if episodes is not None and counted.any():
        generator = torch.Generator().manual_seed(seed)

        def redraw(rate: Tensor) -> Tensor:
            trials = torch.full((n_boot, *rate.shape), float(episodes))
            rates = rate.cpu().float().expand(n_boot, *rate.shape)
            return torch.binomial(trials, rates, generator).double() / episodes

        boot = gaps(redraw(sp_success), redraw(partner_success))[:, counted.cpu()].mean(-1)
        tail = (1 - level) / 2
        low, high = torch.quantile(boot, torch.tensor([tail, 1 - tail], dtype=boot.dtype)).tolist()
        out |= {"overfitness_low": low, "overfitness_high": high}
    return out


def population_metrics(
    label_counts: Tensor,
    sp_success: Tensor,
    partner_success: Tensor | None = None,
    partner_labels: Sequence[int] | None = None,
    *,
    capable_at: float = CAPABLE_SUCCESS,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    estimator: LabelEstimator = "grassberger",
    episodes: int | None = None,
) -> dict:
    """D, S (with intervals), capable members and O of a population, exactly from counts.

    Args:
        label_counts: ``[N, L]`` self-play episodes of member x that completed label y (none: not counted).
        sp_success: ``[N]`` self-play success rate of each member.
        partner_success: ``[N, K, 2]`` success rate of member i with held-out specialist k, i in seat s.
        partner_labels: the label of each specialist ``[K]`` (needed with ``partner_success``).
        capable_at: self-play success a capable member reaches.
        n_boot, level, seed: resamples, interval level and resampling seed.
        estimator: entropies and intervals of D, I and S (``label_information``).
        episodes: the episodes behind each success rate: O gets a parametric-bootstrap interval.
    """
    label = modal_label(label_counts)
    capable = sp_success >= capable_at
    n_labels = label_counts.shape[1]
    result = {
        "members": label_counts.shape[0],
        "labels": n_labels,
        "sp_success": sp_success.tolist(),
        "sp_label": label.tolist(),
        "sp_label_counts": label_counts.long().tolist(),
        "labelled_episodes": int(label_counts.sum()),
        "diversity_max": math.log(n_labels) if n_labels > 0 else float("nan"),
        **label_information(label_counts, n_boot, level, seed, estimator),
        "capable": capable.tolist(),
        "capable_members": int(capable.sum()),
    }
    if partner_success is not None:
        if partner_labels is None or len(partner_labels) != partner_success.shape[1]:
            raise ValueError("partner_labels must give the label of each of the partner_success partners")
        result |= overfitness(
            sp_success, label, capable, partner_success, partner_labels, episodes, n_boot, level, seed
        )
    return result


# ---------------------------------------------------------------------------------------------------------
# During training (marl population train's periodic evaluations, TensorBoard tags eval/...)
# ---------------------------------------------------------------------------------------------------------


def training_metrics(
    population: Population,
    cfg: PopulationConfig,
    evaluation: PairEvaluation,
    device: torch.device,
    specialists: tuple[Population, list] | None = None,
) -> dict[str, float]:
    """D and S (with 95% intervals) of the self-play episodes of a periodic all-pairs ``evaluation`` and,
    with held-out ``specialists`` (population, labels), the capable members, O and each specialist's
    success with the members (mean over members and seats): ``eval/...`` scalars."""
    n = cfg.population.size
    self_play = evaluation.pairs[:, 0] == evaluation.pairs[:, 1]  # all_pairs order: member i's is i-th
    counts = evaluation.self_play_counts(n, label_count(cfg) or 1)[:, 1:].cpu()
    info = label_information(counts, n_boot=100)
    metrics = {
        f"eval/{name}{end}": info[f"{name}{end}"]
        for name in ("diversity", "specialisation")
        for end in ("", "_low", "_high")
    }
    if specialists is None:
        return metrics
    members, labels = specialists
    exp = cfg.experiment
    seed, episodes = exp.seed + EVAL_SEED_OFFSET, exp.eval_envs_per_pair
    deterministic = exp.eval_deterministic
    partners = partner_episodes(population, members, cfg, episodes, seed, device, deterministic)[0].cpu()
    sp_success = evaluation.success[self_play].mean(-1).cpu()
    capable = sp_success >= CAPABLE_SUCCESS
    fit = overfitness(sp_success, modal_label(counts), capable, partners, labels)
    metrics["eval/capable_members"] = float(capable.sum())
    metrics["eval/overfitness"] = fit["overfitness"]
    for label, value in zip(labels, partners.mean((0, 2)).tolist(), strict=True):
        metrics[f"eval/specialist_success/specialist_{label}"] = value
    return metrics


# ---------------------------------------------------------------------------------------------------------
# A run
# ---------------------------------------------------------------------------------------------------------


def load_specialists(
    path: str | Path, cfg: PopulationConfig, device: torch.device
) -> tuple[Population, list]:
    """A `method=specialists` run whose members can sit with ``cfg``'s population; -> (population, labels)."""
    specialists, spec_cfg = load_population(path, device)
    if spec_cfg.population.method != "specialists":
        raise MarlError(
            f"--specialists {path} was trained with method={spec_cfg.population.method}; held-out partners "
            "are a population trained with method=specialists (member k plays label k)."
        )
    if spec_cfg.env.name != cfg.env.name or spec_cfg.population.label_key != cfg.population.label_key:
        raise MarlError(
            f"--specialists {path} played {spec_cfg.env.name} (label {spec_cfg.population.label_key}) but "
            f"the evaluated population played {cfg.env.name} (label {cfg.population.label_key})."
        )
    return specialists, specialist_targets(spec_cfg)


def label_count(cfg: PopulationConfig) -> int | None:
    """How many labels ``cfg``'s env has (the size of its ``paying_<restrict_kwarg>`` set), if known."""
    with untouched_rng(torch.device("cpu")):
        probe = make_env(cfg.env_config(1), "cpu", 0)
    paying = getattr(probe, f"paying_{cfg.population.restrict_kwarg}", None)
    return int(paying.numel()) if isinstance(paying, Tensor) else None


def evaluate_run(
    run_dir: str | Path,
    specialists_run: str | Path | None = None,
    episodes_per_pair: int = 32,
    seed: int | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    tensorboard: bool = True,
    n_boot: int = 200,
) -> dict:
    """Evaluate a population run: all ordered pairs (return and success matrices), D, S, capable members and,
    with ``specialists_run``, O and every member's success with every specialist. Writes `evaluation.json`
    and `xp_matrix.png` into ``out`` (default: the run directory) and logs to the run's TensorBoard.
    ``seed``: the held-out starts (default: the run's all-pairs evaluation seed, so the matrix equals
    population.json's for the same number of episodes)."""
    source, run_dir = run_dir, run_directory(run_dir)
    dev = resolve_device(device)
    state = load_checkpoint(source, map_location=dev)
    population, cfg = population_from_checkpoint(state, source, dev)
    n, deterministic = cfg.population.size, cfg.experiment.eval_deterministic
    seed = cfg.experiment.seed + EVAL_SEED_OFFSET if seed is None else seed

    outcomes = pair_outcomes(population, cfg, all_pairs(n), episodes_per_pair, seed, dev, deterministic)
    n_labels = max(label_count(cfg) or 1, int(outcomes.labels.max()) + 1)  # cross-play labels count too
    counts = outcomes.self_play_counts(n, n_labels)[:, 1:].cpu()
    success = outcomes.success.view(n, n, -1).mean(-1).cpu()

    specialists = labels = partners = None
    if specialists_run is not None:
        specialists, labels = load_specialists(specialists_run, cfg, dev)
        played = partner_episodes(population, specialists, cfg, episodes_per_pair, seed, dev, deterministic)
        partners = played[0].cpu()  # success [N, K, 2]
    metrics = population_metrics(
        counts, success.diagonal(), partners, labels, n_boot=n_boot, seed=seed, episodes=episodes_per_pair
    )

    result = {
        "run": str(run_dir),
        "method": run_method(state),
        "env": cfg.env.name,
        "label_key": cfg.population.label_key,
        "episodes_per_pair": episodes_per_pair,
        "seed": seed,
        "deterministic": deterministic,
        "xp_return": outcomes.returns.view(n, n, -1).mean(-1).tolist(),
        "xp_success": success.tolist(),
        # every info key of the env at the episodes' end, per ordered pair (cooking: how far a pair got)
        "xp_outcomes": {
            key: value.float().view(n, n, -1).mean(-1).tolist()
            for key, value in outcomes.outcomes.items()
            if key != cfg.population.label_key
        },
        **metrics,
    }
    if specialists is not None:
        result["specialists"] = specialists_summary(
            specialists, specialists_run, labels, partners, cfg, episodes_per_pair, seed, dev, deterministic
        )

    target = Path(out) if out is not None else run_dir
    target.mkdir(parents=True, exist_ok=True)
    (target / EVALUATION_FILE).write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    figure = xp_figure(result)
    figure.savefig(target / MATRIX_FILE)
    _close(figure)
    if tensorboard:
        log_evaluation(run_dir, result, int(state.get("frames", 0)))
    return result


def specialists_summary(
    specialists: Population,
    run: str | Path,
    labels: list[int],
    partners: Tensor,
    cfg: PopulationConfig,
    episodes_per_pair: int,
    seed: int,
    device: torch.device,
    deterministic: bool,
) -> dict:
    """The held-out specialists: their own self-play success and label in the evaluation env (a check that
    specialist k does play label k) and every member's success with each of them, per seat."""
    own = pair_outcomes(
        specialists, cfg, self_play_pairs(len(labels)), episodes_per_pair, seed, device, deterministic
    )
    return {
        "run": str(run),
        "labels": labels,
        "sp_success": own.success.mean(-1).tolist(),
        "sp_label": [int(row.mode().values) for row in own.labels],
        "member_success": partners.tolist(),  # [member][specialist][seat of the member]
        "per_partner_success": partners.mean((0, 2)).tolist(),  # mean over members and seats
    }


def log_evaluation(run_dir: Path, result: dict, frames: int) -> None:
    """D, S, O, capable members, per-partner success and the matrix image in the run's TensorBoard at
    ``frames`` (the evaluated checkpoint's), tags ``evaluate/...``."""
    from torch.utils.tensorboard import SummaryWriter

    scalars = {
        key: result[key]
        for key in (
            "diversity",
            "diversity_low",
            "diversity_high",
            "specialisation",
            "specialisation_low",
            "specialisation_high",
            "mutual_information",
            "capable_members",
            "overfitness",
            "overfitness_low",
            "overfitness_high",
        )
        if key in result
    }
    success = torch.tensor(result["xp_success"])
    off = ~torch.eye(success.shape[0], dtype=torch.bool)
    scalars["sp_success_mean"] = float(success.diagonal().mean())
    scalars["xp_success_mean"] = float(success[off].mean()) if off.any() else float("nan")
    if "specialists" in result:
        spec = result["specialists"]
        for label, value in zip(spec["labels"], spec["per_partner_success"]):
            scalars[f"partner_success/specialist_{label}"] = value
        for i, value in enumerate(result["own_specialist_success"]):
            scalars[f"own_specialist_success/member_{i}"] = value
    writer = SummaryWriter(str(run_dir))
    for key, value in scalars.items():
        if value is not None and math.isfinite(value):
            writer.add_scalar(f"evaluate/{key}", value, frames)
    writer.add_figure("evaluate/xp_matrix", xp_figure(result), frames, close=True)
    writer.close()


def xp_figure(result: dict):
    """Two heatmaps side by side: mean return and success rate of every ordered pair (row: seat 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result["xp_success"])
    names = [f"m{i}" for i in range(n)]
    fig, axes = plt.subplots(1, 2, figsize=(2.4 + 1.2 * n, 1.2 + 0.6 * n), dpi=100)
    panels = [("Mean return", result["xp_return"], None), ("Success rate", result["xp_success"], (0, 1))]
    for ax, (title, matrix, limits) in zip(axes, panels):
        values = torch.tensor(matrix)
        image = ax.imshow(
            values.numpy(), cmap="viridis", vmin=limits and limits[0], vmax=limits and limits[1]
        )
        ax.set_xticks(range(n), names)
        ax.set_yticks(range(n), names)
        ax.set_xlabel("seat 1")
        ax.set_ylabel("seat 0")
        if n <= 12:
            middle = (values.max() + values.min()) / 2
            for i in range(n):
                for j in range(n):
                    ink = "black" if values[i, j] > middle else "white"
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8, color=ink)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(
        f"{result['method']} population, {result['episodes_per_pair']} episodes per pair", fontsize=9
    )
    fig.tight_layout()
    return fig


def format_report(result: dict) -> str:
    """A readable summary: the success matrix, one row per member, then D, S, capable members and O."""
    n = result["members"]
    lines = [
        f"{result['method']} population of {n} on {result['env']} ({result['run']}), "
        f"{result['episodes_per_pair']} episodes per pair, seed {result['seed']}",
        "",
        "Success rate, row = seat 0, column = seat 1",
        "      " + "".join(f"{f'm{j}':>7}" for j in range(n)),
    ]
    lines += [
        f"{f'm{i}':<6}" + "".join(f"{v:7.2f}" for v in row) for i, row in enumerate(result["xp_success"])
    ]
    spec = "own_specialist_success" in result
    header = f"{'member':<8}{'SP success':>11}{'SP label':>10}{'capable':>9}"
    lines += ["", header + (f"{'w/ specialist':>15}{'overfit':>9}" if spec else "")]
    for i in range(n):
        row = (
            f"{f'm{i}':<8}{result['sp_success'][i]:>11.2f}{result['sp_label'][i]:>10}"
            f"{'yes' if result['capable'][i] else 'no':>9}"
        )
        if spec:
            row += f"{_number(result['own_specialist_success'][i]):>15}"
            row += f"{_number(result['overfitness_per_member'][i]):>9}"
        lines.append(row)
    lines += [
        "",
        f"Diversity       D = H(Y)        = {_interval(result, 'diversity')} nats "
        f"(max log {result['labels']} = {result['diversity_max']:.3f}; {result['labelled_episodes']} "
        "labelled self-play episodes)",
        f"Specialisation  S = I(X;Y)/H(Y) = {_interval(result, 'specialisation')}",
        f"Capable members (SP success >= {CAPABLE_SUCCESS}): {result['capable_members']} / {n}",
    ]
    if spec:
        specialists = result["specialists"]
        lines.append(
            f"Overfitness     O = {_interval(result, 'overfitness')} (mean over "
            f"{result['overfitness_members']} capable members of SP success - success with their label's "
            "specialist)"
        )
        lines.append(
            "Specialists ("
            + specialists["run"]
            + "): label / SP label / SP success / members' success: "
            + ", ".join(
                f"{lab}/{sp}/{s:.2f}/{p:.2f}"
                for lab, sp, s, p in zip(
                    specialists["labels"],
                    specialists["sp_label"],
                    specialists["sp_success"],
                    specialists["per_partner_success"],
                )
            )
        )
    return "\n".join(lines)


def _close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def _interval(result: dict, name: str) -> str:
    if name + "_low" not in result:
        return _number(result[name])
    return f"{_number(result[name])} [{_number(result[name + '_low'])}, {_number(result[name + '_high'])}]"


def _number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _jsonable(tree):
    """NaN -> None (JSON has no NaN), recursively."""
    if isinstance(tree, float):
        return tree if math.isfinite(tree) else None
    if isinstance(tree, dict):
        return {k: _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(v) for v in tree]
    return tree


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def run_evaluate(args: argparse.Namespace) -> int:
    """Run a parsed `marl population evaluate`; prints the report and where the files are."""
    if args.episodes < 1:
        raise MarlError(f"--episodes must be at least 1, got {args.episodes}.")
    result = evaluate_run(
        args.run,
        args.specialists,
        episodes_per_pair=args.episodes,
        seed=args.seed,
        out=args.out,
        device=args.device,
        tensorboard=not args.no_tensorboard,
    )
    target = Path(args.out) if args.out else Path(result["run"])
    print(format_report(result))
    print(f"\nWrote {target / EVALUATION_FILE} and {target / MATRIX_FILE}")
    return 0


__all__ = [
    "MemberPolicy",
    "PopulationSeats",
    "SeatPolicy",
    "evaluate_run",
    "harmonic_mean",
    "partner_episodes",
    "robustness",
    "population_metrics",
    "run_evaluate",
    "specialist_robustness",
]

"""`marl population train`: XP-min, self-play and specialist populations. Read `train()` top to bottom.

One iteration, for all N members at once (agents/population.py holds them as one batched module):

1. **Rollout.** Every env slot plays one pair ``(seat_0 member, seat_1 member)`` (marl/population/pairs.py):
   xpmin plays all N*N ordered pairs (or SP pairs plus sampled partners), selfplay and specialists only the
   N self-play pairs. Each step, every seat of every slot acts from its own member's network in one pass.
2. **Per-pair returns.** Episodes that ended give the mean return of each ordered pair, ``R [N, N]``
   (NaN where no episode ended); the cross-play estimate is updated where observed.
3. **j\\* per member** (xpmin): ``j*(i) = argmax_{j != i} (R[i, j] + R[j, i]) / 2``, the best other partner on
   this iteration's (stochastic-policy) returns.
4. **GAE, then signed advantages.** The critic estimates the *raw* return of the member's pair
   (``V_i(o | partner j)``, see Population) and GAE runs on raw rewards. Each seat's advantages are then
   multiplied by its weight (``pairs.seat_weights``): ``+1`` in self-play, negative when the seat's member
   plays its ``j*`` (in either seat order), ``0`` with any other partner. The negative weight is
   ``-lambda * n_sp / (n_orders * n_order)`` slot counts, ``-lambda / 2`` with all pairs: a self-play slot
   carries two of the member's seats, a cross-play slot one, so this makes member i's policy gradient an
   unbiased estimate of ``grad[J_SP(i) - lambda * J_XP(i, j*)]``, ``J_XP`` the mean over both seat orders
   (XP-min's objective; a plain ``-lambda`` per seat would double the cross-play term). GAE is linear in
   rewards and values, so weighting advantages is exactly GAE on signed rewards ``w * r`` with signed
   values ``w * V``; but the critic's target stays the pair's true return, which does not flip sign when
   ``j*`` changes from one iteration to the next. Weight-0 seats are left out of GAE and the update: their
   advantages would be multiplied by 0, so the critic learns where the policy does. With all N*N pairs a
   member sits in 2N seats and learns from 4 (its two self-play seats and j*'s pair in each order).
   With ``population.xp_gate`` a member that does clearly worse with itself than with j* (by more than
   ``population.xp_gate_margin``) gets no cross-play weight (``pairs.gated_lambda``): it learns from
   self-play alone until it does about as well with itself.
   Latent variables (the optional ``alpha * I(z; o, a)`` term) are not implemented.
5. **PPO update of all members at once**, in the member-major layout ``[N, samples, ...]``: every member's
   loss is its own PPO loss (per-member means; advantages normalised by the member's self-play samples and
   rescaled so its cross-play samples add ``-lambda grad J_XP`` without shrinking the self-play term, see
   ``ppo.scale_to_self_play``), they are summed, and gradients are clipped per member (independent scheme;
   the hyper scheme shares its hypernetwork, so one global norm).
   With the independent scheme each member therefore trains exactly as a lone PPO learner on its data.

Specialists: member ``i`` only plays itself, in envs whose paying set is restricted to its target label
(``env.<restrict_kwarg> = [target_i]``). An env's paying set is one per env instance, so these slots live in
one env instance per target label ("shards", stepped in a loop over labels; the networks still run once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from marl.agents.population import MemberLayout, Population, seat_layout
from marl.checkpoint import (
    clone_tree,
    load_checkpoint,
    restore_trainer_state,
    run_directory,
    trainer_state,
)
from marl.errors import MarlError
from marl.population.config import (
    RESUMABLE_RUN,
    PopulationConfig,
    check_resume,
    population_config_from_dict,
    population_config_to_dict,
    population_config_to_yaml,
)
from marl.population.members import (
    EVAL_SEED_OFFSET,
    PairEvaluation,
    build_population,
    distinct_labels,
    label_histogram,
    modal_labels,
)
from marl.population.pairs import (
    SlotAssignment,
    all_pairs,
    assign_slots,
    best_partners,
    gated_lambda,
    pair_matrix,
    seat_weights,
    symmetric_returns,
)
from marl.population.rollout import PairCollector, Rollout, build_shards, training_pairs
from marl.ppo import generalized_advantages, member_mean, minibatch_epochs, ppo_loss, scale_to_self_play
from marl.run_logger import RunLogger, flatten
from marl.run_loop import RunPlan, count_iteration, due, run_plan
from marl.runs import hardware_summary, new_run_dir, resolve_device

SUMMARY_FILE = "population.json"
VALUE_CHUNK_FRAMES = 4096  # frames per pass of the critic over a rollout (GAE's values)
RESUMABLE = (  # what a resumed run may change: its length, logging and evaluation, not what it trains
    *RESUMABLE_RUN,
    "experiment.eval_envs_per_pair",
    "experiment.eval_deterministic",
    "experiment.eval_specialists",
)


# ---------------------------------------------------------------------------------------------------------
# Building a run
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PopulationTrainer:
    """Everything a population run holds in memory; `state_dict` is its checkpoint."""

    cfg: PopulationConfig
    device: torch.device
    population: Population
    optimizer: torch.optim.Optimizer
    collector: PairCollector
    xp_estimate: Tensor  # [N, N] running estimate of each ordered pair's return (NaN: never seen)
    iteration: int = 0
    frames: int = 0
    wall_time: float = 0.0

    def state_dict(self) -> dict:
        return trainer_state(
            self,
            population_config_to_dict(self.cfg),
            "population",
            population=clone_tree(self.population.state_dict()),
            optimizer=clone_tree(self.optimizer.state_dict()),
            collector=self.collector.state_dict(),
            xp_estimate=self.xp_estimate.clone(),
        )

    def load_state_dict(self, state: dict) -> None:
        self.population.load_state_dict(state["population"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.collector.load_state_dict(state["collector"])
        estimate = state.get("xp_estimate", self.xp_estimate)  # (extraction checkpoints had none)
        self.xp_estimate = estimate.to(self.device).clone()
        restore_trainer_state(self, state)


def build_trainer(cfg: PopulationConfig) -> PopulationTrainer:
    """Seed, then build envs, population, optimizer and collector."""
    device = resolve_device(cfg.experiment.device)
    if cfg.experiment.threads:
        torch.set_num_threads(cfg.experiment.threads)
    torch.manual_seed(cfg.experiment.seed)
    n = cfg.population.size
    pairs = training_pairs(cfg)
    on_ray = cfg.collector.num_workers > 0  # the workers build the envs; here a one-slot probe suffices
    shards = [] if on_ray else build_shards(cfg, pairs, device)
    population = build_population(cfg, None if on_ray else shards[0], device=device)
    optimizer = torch.optim.Adam(
        population.parameters(), lr=cfg.algorithm.lr, eps=cfg.algorithm.adam_eps, fused=device.type == "cuda"
    )
    assignment = assign_slots(pairs.to(device), cfg.population.envs_per_pair)
    if on_ray:
        from marl.population.ray_pairs import RayPairCollector

        collector = RayPairCollector(cfg, assignment, device)
    else:
        collector = PairCollector(shards, assignment, n, cfg.population.label_key)
    xp_estimate = torch.full((n, n), float("nan"), device=device)
    return PopulationTrainer(cfg, device, population, optimizer, collector, xp_estimate)


# ---------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------


def train(cfg: PopulationConfig, resume: str | Path | None = None, stop_after: int | None = None) -> Path:
    """Train (or continue) a population run; returns its directory. `stop_after` ends this call early after
    that many iterations (tests use it to simulate an interruption)."""
    exp = cfg.experiment
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        if state.get("kind") != "population":
            raise MarlError(f"{resume} is not a population run (its checkpoint was written by marl train).")
        if "extraction" in state:
            raise MarlError(
                f"{resume} is an extraction run: continue it with marl population extract resume={resume}."
            )
        run_dir = run_directory(resume)
        check_resume(population_config_from_dict(state["config"]), cfg, RESUMABLE, "population run")
    trainer = build_trainer(cfg)
    if state is not None:
        trainer.load_state_dict(state)
    else:
        run_dir = new_run_dir(cfg.experiment.runs_dir, cfg.experiment.name)
    from marl.population.evaluate import load_specialists, training_metrics  # (evaluate imports this module)

    specialists = None
    if exp.eval_specialists:
        specialists = load_specialists(exp.eval_specialists, cfg, trainer.device)

    def one_iteration(logger: RunLogger) -> dict[str, float]:
        metrics = train_iteration(trainer)
        if due(trainer.iteration, exp.eval_every, exp.iterations):
            n = cfg.population.size
            evaluation = evaluate_population(trainer.population, cfg, trainer.device)
            metrics.update(evaluation_metrics(evaluation, n))
            metrics.update(training_metrics(trainer.population, cfg, evaluation, trainer.device, specialists))
            log_xp_matrix(logger, evaluation, n, trainer.iteration, trainer.frames)
        return metrics

    def postfix(metrics: dict[str, float]) -> dict[str, str]:
        return {
            "fps": f"{metrics['perf/total_fps']:.0f}",
            "sp": f"{metrics.get('train/sp_return_mean', float('nan')):.3g}",
            "xp": f"{metrics.get('train/xp_return_mean', float('nan')):.3g}",
        }

    plan = RunPlan(
        trainer=trainer,
        run_dir=run_dir,
        settings=exp,
        n_iterations=exp.iterations,
        name=exp.name,
        resume_command=f"marl population train resume={run_dir}",
        config_yaml=population_config_to_yaml(cfg),
        hparams=flatten(population_config_to_dict(cfg)),
        one_iteration=one_iteration,
        final_metric=lambda key: key.endswith(("_mean", "distinct_labels")),
        write_summary=lambda: write_summary(run_dir, trainer),
        header=lambda logger: logger.log_text("run/config", f"```\n{population_config_to_yaml(cfg)}\n```"),
        description=describe_run(trainer, run_dir),
        postfix=postfix,
        close=trainer.collector.close,
    )
    return run_plan(plan, resumed=state, stop_after=stop_after)


def train_iteration(
    trainer: PopulationTrainer, relabel: Callable[[Rollout], Rollout] | None = None
) -> dict[str, float]:
    """Rollout -> per-pair returns -> j* -> signed GAE -> PPO update of all members. Returns metrics.
    ``relabel`` replaces the rollout's rewards before anything learns from them (extraction by RL)."""
    cfg, population, collector = trainer.cfg, trainer.population, trainer.collector
    pop, alg, n = cfg.population, cfg.algorithm, cfg.population.size
    start = time.perf_counter()

    # 1. rollout (sampled partners: a new draw every iteration, so the slots restart their episodes)
    if pop.method == "xpmin" and pop.pairs == "sampled":
        pairs = training_pairs(cfg, trainer.xp_estimate).to(trainer.device)
        collector.reset(assign_slots(pairs, pop.envs_per_pair))
    population.eval()
    rollout = collector.collect(population, alg.rollout_steps)
    if relabel is not None:
        rollout = relabel(rollout)
    collected = time.perf_counter()
    assignment, layout = collector.assignment, collector.layout

    # 2. per-pair mean returns of the episodes that ended, and the running cross-play estimate
    returns, counts = episode_return_matrix(rollout, assignment, n)
    seen = counts > 0
    decay = pop.xp_estimate_decay
    blended = torch.where(
        trainer.xp_estimate.isnan(), returns, decay * trainer.xp_estimate + (1 - decay) * returns
    )
    trainer.xp_estimate = torch.where(seen, blended, trainer.xp_estimate)

    # 3. best other partner j* of every member (xpmin only)
    best = best_partners(trainer.xp_estimate) if pop.method == "xpmin" else None

    # 4. GAE on raw rewards with the partner-conditioned critic, then per-seat signs, in the slots where a
    #    seat learns (weight != 0). With all N*N ordered pairs that is self-play and the pairs with j*:
    #    at most 3N of the N*N slots. The others' advantages would be multiplied by 0, so they are skipped.
    population.train()
    lam = xp_lambda(cfg, trainer.frames)  # frames before this rollout
    gated = pop.xp_gate and best is not None
    member_lam = gated_lambda(trainer.xp_estimate, best, lam, pop.xp_gate_margin) if gated else lam
    weight = seat_weights(assignment.member, best, member_lam)  # [E, 2]
    learning, member = rollout, assignment.member
    active = (weight != 0).any(-1)
    if not bool(active.all()):
        learning, member, weight = rollout.slots(active), member[active], weight[active]
        layout = seat_layout(member, n)
    advantage, target = seat_advantages(population, learning, member, layout, alg)
    signed = advantage * weight.unsqueeze(1)

    # 5. PPO update of all members at once, on the samples each learns from (member-major layout)
    batch = member_batch(learning, member, layout, signed, target, weight)
    stats = ppo_update_members(population, trainer.optimizer, batch, alg, rollout.frames)
    trained = time.perf_counter()

    speed = count_iteration(trainer, rollout.frames, start, collected, trained)
    metrics = rollout_metrics(rollout, assignment, returns, best, n)
    metrics.update({f"train/{k}": v for k, v in stats.items()})
    metrics.update(getattr(collector, "last_stats", {}))  # Ray: per-worker frames/s, waiting time
    metrics.update(speed)
    if pop.method == "xpmin":
        metrics["train/xp_lambda"] = lam
        if isinstance(member_lam, Tensor):  # members the XP term weighs on (the others are still learning)
            metrics["train/xp_gated_open"] = float((member_lam > 0).sum())
    return metrics


# ---------------------------------------------------------------------------------------------------------
# Returns, advantages, PPO
# ---------------------------------------------------------------------------------------------------------


def xp_lambda(cfg: PopulationConfig, frames: int) -> float:
    """XP-min's cross-play weight for a rollout collected after ``frames`` env steps: 0 during the warm-up
    (``population.xp_warmup_frames``: the members first learn to cook in self-play), ``xp_lambda`` after."""
    return cfg.population.xp_lambda if frames >= cfg.population.xp_warmup_frames else 0.0


def episode_return_matrix(
    rollout: Rollout, assignment: SlotAssignment, n_members: int
) -> tuple[Tensor, Tensor]:
    """Mean return ``[N, N]`` of each ordered pair over the episodes that ended in the rollout (NaN where
    none did), and how many ended."""
    pair = assignment.pair_index[rollout.episode_slot]
    n_pairs = assignment.pairs.shape[0]
    totals = torch.zeros(n_pairs, device=pair.device).index_add_(0, pair, rollout.episode_return)
    counts = torch.bincount(pair, minlength=n_pairs)
    return pair_matrix(assignment.pairs, totals, counts, n_members)


@torch.no_grad()
def seat_advantages(
    population: Population, rollout: Rollout, member: Tensor, layout: MemberLayout, alg
) -> tuple[Tensor, Tensor]:
    """GAE advantages and value targets ``[E, T, 2]`` of every seat on raw rewards. Bootstraps from the
    next observation's value unless the episode terminated (a truncation, or the rollout's end, still
    bootstraps); the recursion is cut wherever an episode ended. A step's next observation is the next
    step's observation unless the episode ended in between, so the critic runs again only on the next
    observations of the last step and of the steps that ended an episode (half the work of evaluating
    every next observation). The values are computed a few steps at a time (``VALUE_CHUNK_FRAMES``
    frames): the same numbers as one pass, with activations that stay in cache (2.5x faster for a rollout
    of 262k frames)."""
    envs, steps = rollout.done.shape
    chunk = max(1, VALUE_CHUNK_FRAMES // envs)
    starts = range(0, steps, chunk)
    value = torch.cat(
        [population.seat_values(rollout.obs[:, t : t + chunk], member, layout) for t in starts], 1
    )
    ended = rollout.done.clone()
    ended[:, -1] = True
    env, step = ended.nonzero(as_tuple=True)
    next_value = torch.empty_like(value)
    next_value[:, :-1] = value[:, 1:]
    fresh = population.seat_values(rollout.next_obs[env, step].unsqueeze(1), member[env])  # [K, 1, 2]
    next_value[env, step] = fresh[:, 0]
    done, terminated = rollout.done.unsqueeze(-1), rollout.terminated.unsqueeze(-1)  # [E, T, 1]: both seats
    return generalized_advantages(
        alg.gamma, alg.gae_lambda, value, next_value, rollout.reward, done, terminated
    )


@dataclass
class MemberBatch:
    """PPO data in the member-major layout ``[N, L]`` (L = seats per member x steps)."""

    obs: Tensor  # [N, L, D]
    partner: Tensor  # [N, L]
    action: Tensor
    log_prob: Tensor
    advantage: Tensor  # signed (weighted) advantages
    target: Tensor  # raw value targets
    learn: Tensor  # bool: the policy learns from this sample (weight != 0, not padding)
    self_play: Tensor  # bool: a learning sample of the member's self-play slot (weight > 0)
    valid: Tensor  # bool: not padding (the critic learns from every real sample)

    def learning_samples(self) -> MemberBatch:
        """The batch cut to the samples each member learns from, kept in order and padded to the largest
        count. The others carry weight 0: no policy gradient, and their values enter no advantage that is
        learned from, so the critic learns where the policy does. Nothing moves where every sample learns."""
        if bool(self.learn.eq(self.valid).all()):
            return self
        count = int(self.learn.sum(-1).max())
        order = torch.argsort((~self.learn).to(torch.uint8), dim=-1, stable=True)[:, :count]
        rows = torch.arange(order.shape[0], device=order.device).unsqueeze(-1)
        kept = {name: x[rows, order] for name, x in vars(self).items()}
        return MemberBatch(**(kept | {"valid": kept["learn"]}))


def member_batch(
    rollout: Rollout, member: Tensor, layout: MemberLayout, advantage: Tensor, target: Tensor, weight: Tensor
) -> MemberBatch:
    """Seat-layout tensors ``[E, T, 2, ...]`` -> member-major ``[N, K, ...]`` (``layout`` over seats): each
    member's learning samples (``MemberBatch.learning_samples``)."""
    steps = rollout.done.shape[1]
    members = partial(member_major, layout=layout)
    per_step = lambda x: x.reshape(-1, 1).expand(-1, steps)  # noqa: E731 - [E, 2] -> [E*2, T]
    valid = layout.valid.unsqueeze(-1).expand(-1, -1, steps).flatten(1, 2)
    learn = layout.to_members(per_step(weight != 0)).flatten(1, 2) & valid
    self_play = layout.to_members(per_step(weight > 0)).flatten(1, 2) & valid
    return MemberBatch(
        obs=members(rollout.obs),
        partner=layout.to_members(per_step(member.flip(-1))).flatten(1, 2),
        action=members(rollout.action),
        log_prob=members(rollout.log_prob),
        advantage=members(advantage),
        target=members(target),
        learn=learn,
        self_play=self_play,
        valid=valid,
    ).learning_samples()


def member_major(x: Tensor, layout: MemberLayout) -> Tensor:
    """Seat layout ``[E, T, 2, ...]`` -> member-major ``[N, C * T, ...]`` (padded: mask with ``valid``)."""
    return layout.to_members(x.transpose(1, 2).flatten(0, 1)).flatten(1, 2)


def ppo_update_members(
    population: Population, optimizer: torch.optim.Optimizer, batch: MemberBatch, alg, frames: int
) -> dict[str, float]:
    """``alg.epochs`` epochs of clipped PPO over all members at once, on a rollout of ``frames`` frames.
    Every minibatch takes the same random share of *each* member's samples (``alg.minibatch_size`` frames in
    all), so the stacked networks always run on ``[N, M, ...]``.
    The loss is the sum of the members' own PPO losses (policy surrogate and entropy averaged over the
    samples the member learns from, value loss over the same samples: the batch holds only those)."""
    data = dict(vars(batch))
    data["advantage"] = scale_to_self_play(
        batch.advantage, batch.learn, batch.self_play, alg.normalize_advantage
    )

    def loss_of(mb: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        log_prob, entropy = population.evaluate(mb["obs"], mb["action"])
        value = population.values(mb["obs"], mb["partner"])
        old_log_prob, advantage, target = mb["log_prob"], mb["advantage"], mb["target"]
        options = dict(acting=mb["learn"], alive=mb["valid"], mean=member_mean)
        return ppo_loss(log_prob, old_log_prob, advantage, entropy, value, target, alg, **options)

    networks = {"actor": population.actor, "critic": population.critic}
    return member_epochs(data, loss_of, optimizer, networks, alg, frames, "population's PPO")


def member_epochs(
    data: dict[str, Tensor],
    loss_of: Callable[[dict[str, Tensor]], tuple[Tensor, dict[str, Tensor]]],
    optimizer: torch.optim.Optimizer,
    networks: dict[str, nn.Module],
    alg,
    frames: int,
    what: str,
    lr_key: str = "algorithm.lr",
) -> dict[str, float]:
    """``minibatch_epochs`` over member-major ``data [N, L, ...]`` holding ``frames`` frames, in minibatches
    of ``alg.minibatch_size`` frames (0: all of them), each member shuffled on its own; the ``networks``
    clipped per member (mean norms logged as ``<name>_grad_norm``)."""

    def clip_and_step() -> dict[str, Tensor]:
        norms = [clip_member_grad_norms(net, alg.max_grad_norm).mean() for net in networks.values()]
        optimizer.step()
        return {f"{name}_grad_norm": norm for name, norm in zip(networks, norms)}

    length = next(iter(data.values())).shape[1]
    minibatches = -(-frames // alg.minibatch_size) if alg.minibatch_size else 1
    minibatch = -(-length // minibatches)  # ceil: every sample in exactly one minibatch per epoch
    return minibatch_epochs(
        data, loss_of, optimizer, clip_and_step, alg, minibatch, per_member=True, lr_key=lr_key, what=what
    )


def clip_member_grad_norms(net: nn.Module, max_norm: float) -> Tensor:
    """Clip gradients to ``max_norm``: per member where every parameter is a ``[N, ...]`` stack (scheme
    independent: each member clipped as if trained alone), else over the whole network (hyper: the members
    share the hypernetwork). Returns the norms before clipping (``[N]``, or one)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if getattr(net, "scheme", None) != "independent" or not grads:
        return nn.utils.clip_grad_norm_(list(net.parameters()), max_norm).reshape(1)
    n = grads[0].shape[0]
    norms = torch.stack([g.reshape(n, -1).pow(2).sum(-1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(n, *([1] * (g.dim() - 1))))
    return norms


# ---------------------------------------------------------------------------------------------------------
# Metrics and evaluation
# ---------------------------------------------------------------------------------------------------------


def rollout_metrics(
    rollout: Rollout, assignment: SlotAssignment, returns: Tensor, best: Tensor | None, n_members: int
) -> dict[str, float]:
    """SP return per member, mean XP return, j* and its return, and each member's SP label distribution."""
    metrics: dict[str, float] = {}
    sp = returns.diagonal()
    off = ~torch.eye(n_members, dtype=torch.bool, device=returns.device)
    metrics["train/sp_return_mean"] = float(sp.nanmean())
    if (~returns[off].isnan()).any():
        metrics["train/xp_return_mean"] = float(returns[off].nanmean())
    for i in range(n_members):
        metrics[f"train/sp_return/member_{i}"] = float(sp[i])
    if best is not None:
        symmetric = symmetric_returns(returns)
        for i in range(n_members):
            metrics[f"train/best_partner/member_{i}"] = float(best[i])
            metrics[f"train/best_partner_return/member_{i}"] = float(symmetric[i, best[i]])
    pair = assignment.pairs[assignment.pair_index[rollout.episode_slot]]
    self_play = pair[:, 0] == pair[:, 1]
    labels = rollout.episode_label[self_play]
    if labels.numel():
        n_labels = int(labels.max()) + 1
        histogram = label_histogram(labels, pair[self_play, 0], n_members, max(n_labels, 0))
        fractions = histogram / histogram.sum(-1, keepdim=True).clamp_min(1)
        for i in range(n_members):
            for column in range(histogram.shape[1]):
                if histogram[i].sum() > 0:
                    metrics[f"train/sp_labels/member_{i}/{column - 1}"] = float(fractions[i, column])
        metrics["train/sp_distinct_labels"] = float(distinct_labels(modal_labels(histogram)))
    return metrics


def evaluate_population(
    population: Population, cfg: PopulationConfig, device: torch.device
) -> PairEvaluation:
    """All N*N ordered pairs, ``experiment.eval_envs_per_pair`` episodes each, from held-out starts."""
    from marl.population.evaluate import pair_outcomes  # (evaluate.py imports this module)

    return pair_outcomes(
        population,
        cfg,
        all_pairs(cfg.population.size),
        cfg.experiment.eval_envs_per_pair,
        cfg.experiment.seed + EVAL_SEED_OFFSET,
        device,
        cfg.experiment.eval_deterministic,
    )


def evaluation_metrics(evaluation: PairEvaluation, n_members: int) -> dict[str, float]:
    matrix = evaluation.return_matrix(n_members)
    off = ~torch.eye(n_members, dtype=torch.bool, device=matrix.device)
    labels = evaluation.self_play_labels(n_members)
    metrics = {
        "eval/sp_return_mean": float(matrix.diagonal().mean()),
        "eval/xp_return_mean": float(matrix[off].mean()) if n_members > 1 else float("nan"),
        "eval/sp_distinct_labels": float(distinct_labels(labels)),
    }
    metrics.update({f"eval/sp_label/member_{i}": float(label) for i, label in enumerate(labels.tolist())})
    return metrics


def log_xp_matrix(logger: RunLogger, evaluation: PairEvaluation, n_members: int, iteration: int, frames: int):
    """The N x N cross-play return matrix as a TensorBoard image."""
    from marl.team_metrics import snd_heatmap

    names = [f"m{i}" for i in range(n_members)]
    title = f"Mean return, row = seat 0, col = seat 1 (iteration {iteration})"
    logger.log_figure(
        "population/xp_matrix", snd_heatmap(evaluation.return_matrix(n_members).cpu(), names, title), frames
    )


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def write_summary(
    run_dir: Path, trainer: PopulationTrainer, cfg: PopulationConfig | None = None, **extra
) -> dict:
    """`population.json`: the final all-pairs evaluation (XP matrix, SP labels), length, time, hardware, and
    what a trainer adds (``extra``). ``cfg``: the population's config, if not ``trainer.cfg``."""
    cfg = cfg or trainer.cfg
    n = cfg.population.size
    evaluation = evaluate_population(trainer.population, cfg, trainer.device)
    labels = evaluation.self_play_labels(n)
    summary = {
        "method": cfg.population.method,
        "seed": cfg.experiment.seed,
        "iterations": trainer.iteration,
        "frames": trainer.frames,
        "wall_time_s": trainer.wall_time,
        "xp_matrix": evaluation.return_matrix(n).cpu().tolist(),
        "sp_labels": labels.cpu().tolist(),
        "sp_distinct_labels": distinct_labels(labels),
        "eval_deterministic": cfg.experiment.eval_deterministic,
        "eval_episodes_per_pair": cfg.experiment.eval_envs_per_pair,
        "hardware": hardware_summary(trainer.device),
        **extra,
    }
    (Path(run_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def describe_run(trainer: PopulationTrainer, run_dir: Path) -> str:
    cfg = trainer.cfg
    params = sum(p.numel() for p in trainer.population.parameters())
    envs = trainer.collector.assignment.num_envs
    return (
        f"{cfg.population.method} population of {cfg.population.size} ({cfg.sharing.scheme}, {params:,} "
        f"params) on {cfg.env.name}: {trainer.collector.assignment.pairs.shape[0]} pairs x "
        f"{cfg.population.envs_per_pair} envs = {envs} slots, {cfg.experiment.iterations} iterations on "
        f"{trainer.device}\nLogs: {run_dir}  (tensorboard --logdir {run_dir})"
    )


__all__ = ["PopulationTrainer", "evaluate_population", "train"]

"""Partner populations: batched pair rollouts, XP-min vs self-play conventions, config, resume."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from marl.agents.population import MemberLayout, Population, seat_layout
from marl.envs.native import CookingEnv
from torch import Tensor

from marl.checkpoint import load_checkpoint
from marl.cli import main
from marl.errors import ConfigError
from marl.population.config import (
    apply_overrides,
    load_population_config,
    population_config_from_dict,
    rollout_frames,
)
from marl.population.evaluate import evaluate_run
from marl.population.members import load_population
from marl.population.pairs import (
    all_pairs,
    assign_slots,
    best_partners,
    gated_lambda,
    sampled_pairs,
    seat_weights,
    self_play_pairs,
)
from marl.population.rollout import PairCollector
from marl.population.xpmin import train
from marl.run_logger import read_metrics
from tests.helpers import without_timing

OBS_DIM, N_ACTIONS = 40, 6  # the cooking env's seats


pytestmark = pytest.mark.usefixtures("one_thread")


def _population(scheme: str, n: int = 4) -> Population:
    torch.manual_seed(0)
    return Population(n, OBS_DIM, N_ACTIONS, hidden_sizes=[32, 32], scheme=scheme)


def _run_config(tmp_path, *overrides: str):
    quiet = ["experiment.progress=false", "experiment.threads=1", f"experiment.runs_dir={tmp_path}"]
    return load_population_config([*overrides, *quiet])


# ---------------------------------------------------------------------------------------------------------
# (a) one batched rollout of many pairs = every pair run alone
# ---------------------------------------------------------------------------------------------------------


def test_member_layout_round_trip_with_unequal_counts():
    member = torch.tensor([2, 0, 2, 2, 1, 0, 2])
    layout = MemberLayout.build(member, n_members=4)
    x = torch.arange(7.0).unsqueeze(-1) * torch.ones(1, 3)
    grouped = layout.to_members(x)  # [4, 4, 3]
    assert grouped.shape == (4, 4, 3)
    assert layout.valid.sum(-1).tolist() == [2, 1, 4, 0]
    for m in range(4):  # each member's row holds exactly its samples, in their original order
        assert grouped[m][layout.valid[m], 0].tolist() == (member == m).nonzero().flatten().float().tolist()
    assert torch.equal(layout.from_members(grouped), x)


@pytest.mark.parametrize("scheme", ["independent", "hyper"])
def test_batched_pair_actions_match_each_pair_alone(scheme):
    """All 16 ordered pairs x 3 slots in one `act`; the reference loops over pairs and seats and runs each
    member's own weights alone (plain matmuls), with the same sampling noise (same generator seed)."""
    population = _population(scheme)
    assignment = assign_slots(all_pairs(4), envs_per_pair=3)
    obs = torch.randn(assignment.num_envs, 2, OBS_DIM)
    for deterministic in (True, False):
        action, log_prob = population.act(
            obs, assignment.member, deterministic, generator=torch.Generator().manual_seed(7)
        )
        noise = torch.empty(assignment.num_envs, 2, N_ACTIONS).exponential_(
            generator=torch.Generator().manual_seed(7)
        )
        with torch.no_grad():
            for p, pair in enumerate(assignment.pairs.tolist()):
                slots = (assignment.pair_index == p).nonzero().flatten()
                for seat, member in enumerate(pair):
                    log_p = population.member_logits(member, obs[slots, seat]).log_softmax(-1)
                    score = log_p if deterministic else log_p - noise[slots, seat].log()
                    expected = score.argmax(-1)
                    assert torch.equal(action[slots, seat], expected)
                    assert torch.allclose(log_prob[slots, seat], log_p.gather(-1, expected[:, None])[:, 0])
    # the per-sample weight gather computes the same logits as the member-major layout
    layout = seat_layout(assignment.member, 4)
    with torch.no_grad():
        batched = layout.from_members(population.logits(layout.to_members(obs.reshape(-1, OBS_DIM))))
        gathered = population.per_sample_logits(obs.reshape(-1, OBS_DIM), assignment.member.reshape(-1))
    assert torch.allclose(batched, gathered, atol=1e-6)


def test_batched_rollout_equals_pairs_rolled_out_alone():
    """Kitchens with fixed starts and the members' most likely actions are deterministic: 9 pairs x 2
    kitchens in one env give, step for step, the trajectories of each pair in its own 2-kitchen env."""
    population, steps, per_pair = _population("independent", n=3), 40, 2
    assignment = assign_slots(all_pairs(3), per_pair)

    def rollout(pairs: torch.Tensor):
        slots = assign_slots(pairs, per_pair)
        env = CookingEnv(num_envs=slots.num_envs, random_start=False, seed=0)
        collector = PairCollector([env], slots, 3, "recipe")
        return collector.collect(population, steps, deterministic=True)

    together = rollout(assignment.pairs)
    for p, pair in enumerate(assignment.pairs):
        alone = rollout(pair.unsqueeze(0))
        slots = slice(p * per_pair, (p + 1) * per_pair)
        assert torch.equal(together.action[slots], alone.action)
        assert torch.equal(together.obs[slots], alone.obs)
        assert torch.equal(together.reward[slots], alone.reward)
        assert torch.allclose(together.log_prob[slots], alone.log_prob)
    assert together.action.unique().numel() > 1  # the members do act differently


def test_env_instances_step_as_one_batch_and_an_older_checkpoint_continues():
    """Slots spread over two env instances (as specialists' restricted kitchens are) roll out as each
    instance would alone, and a checkpoint in the former per-instance layout continues exactly."""
    population, per_pair = _population("independent", n=3), 2
    assignment = assign_slots(all_pairs(3), per_pair)  # 18 slots: 10 in one kitchen env, 8 in another
    sizes = (10, 8)

    def collector(seed: int = 0) -> PairCollector:
        envs = [CookingEnv(num_envs=n, max_steps=12, seed=seed + k) for k, n in enumerate(sizes)]
        return PairCollector(envs, assignment, 3, "recipe")

    both = collector().collect(population, 30, deterministic=True)
    first = CookingEnv(num_envs=sizes[0], max_steps=12, seed=0)
    alone = PairCollector([first], assign_slots(assignment.pairs[:5], per_pair), 3, "recipe")
    alone = alone.collect(population, 30, deterministic=True)
    assert torch.equal(both.action[: sizes[0]], alone.action) and torch.equal(both.obs[: sizes[0]], alone.obs)

    running = collector()
    running.collect(population, 7)  # episodes still running, returns accumulated
    state = running.state_dict()
    tds = [
        {k: v[: sizes[0]] for k, v in state["td"].items()},
        {k: v[sizes[0] :] for k, v in state["td"].items()},
    ]
    former = {  # the former pair collector's layout: per env instance its state and step TensorDict
        "pairs": state["pairs"],
        "episode_return": state["episode_return"]["agents"].mean(-1),
        "shards": [{"env": env, "td": td} for env, td in zip(state["env"], tds)],
    }
    restored = collector(seed=5)
    restored.load_state_dict(former)
    torch.manual_seed(3)
    expected = running.collect(population, 12)
    torch.manual_seed(3)
    again = restored.collect(population, 12)
    assert expected.episode_slot.numel() > 0  # episodes that began before the checkpoint ended after it
    for field in ("obs", "action", "reward", "done", "episode_slot", "episode_return", "episode_label"):
        assert torch.equal(getattr(again, field), getattr(expected, field)), field


# ---------------------------------------------------------------------------------------------------------
# pairs and reward signs
# ---------------------------------------------------------------------------------------------------------


def test_pair_schedules_and_xpmin_weights():
    assert all_pairs(3).shape == (9, 2) and torch.equal(self_play_pairs(2), torch.tensor([[0, 0], [1, 1]]))
    returns = torch.tensor([[1.0, 0.6, 0.0], [0.2, 1.0, 0.1], [0.0, 0.5, 1.0]])
    best = best_partners(returns)  # seat-symmetric: (0,1) 0.4, (0,2) 0.0, (1,2) 0.3
    assert best.tolist() == [1, 0, 1]
    slots = assign_slots(all_pairs(3), envs_per_pair=2)
    weights = seat_weights(slots.member, best, xp_lambda=0.3)
    for (first, second), weight in zip(slots.member.tolist(), weights.tolist()):
        for seat, (member, partner) in enumerate([(first, second), (second, first)]):
            # both seat orders of (i, j*) are played equally often: -lambda/2 each (see seat_weights)
            expected = 1.0 if member == partner else -0.15 if partner == best[member] else 0.0
            assert weight[seat] == pytest.approx(expected)
    pairs = sampled_pairs(4, 2, "bandit", torch.rand(4, 4), torch.Generator().manual_seed(0))
    assert pairs.shape == (4 + 2 * 4 * 2, 2)
    assert (pairs[:4, 0] == pairs[:4, 1]).all() and (pairs[4:, 0] != pairs[4:, 1]).all()


def test_gated_lambda_spares_members_that_do_better_with_a_stranger_than_with_themselves():
    """population.xp_gate: the XP term weighs only on members whose self-play return is at least their
    return with their best partner; a member still learning (or never seen in self-play) trains as in
    self-play, and its cross-play seats drop out of the update (weight 0)."""
    nan = float("nan")
    returns = torch.tensor([[1.0, 0.6, 0.0], [0.8, 0.2, 0.1], [0.0, 0.5, nan]])
    best = best_partners(returns)  # (0,1) 0.7, (0,2) 0.0, (1,2) 0.3
    assert best.tolist() == [1, 0, 1]
    lam = gated_lambda(returns, best, 0.3)
    # member 0: 1.0 >= 0.7 (gated in); member 1: 0.2 < 0.7 (spared); member 2: self-play never seen (spared)
    assert lam.tolist() == pytest.approx([0.3, 0.0, 0.0])
    slots = assign_slots(all_pairs(3), envs_per_pair=1)
    weights = seat_weights(slots.member, best, lam)
    for (first, second), weight in zip(slots.member.tolist(), weights.tolist()):
        for seat, (member, partner) in enumerate([(first, second), (second, first)]):
            expected = 1.0 if member == partner else -0.15 if member == 0 and partner == 1 else 0.0
            assert weight[seat] == pytest.approx(expected)


def test_gate_margin_keeps_the_cross_play_term_on_members_that_cook_alike():
    """Eight members that cook alike (true return 12.7 for every pair, estimated with noise): j* is the best
    of seven noisy estimates, so an exact gate spares many of them; a 25% margin keeps XP-min's term on all
    of them, and still spares a member that cannot cook with itself, and does so for negative returns too."""
    generator = torch.Generator().manual_seed(0)
    returns = 12.7 + torch.randn(8, 8, generator=generator)
    best = best_partners(returns)
    exact = gated_lambda(returns, best, 0.3)
    assert int((exact > 0).sum()) <= 4  # the flicker seen in training: about half shut at any time
    assert gated_lambda(returns, best, 0.3, margin=0.25).tolist() == pytest.approx([0.3] * 8)

    returns[2, 2] = 0.5  # member 2 cannot cook with itself yet: spared whatever the margin
    lam = gated_lambda(returns, best_partners(returns), 0.3, margin=0.25)
    assert lam[2] == 0.0 and int((lam > 0).sum()) == 7
    negative = torch.tensor([[-1.1, -1.0], [-1.0, -1.0]])  # costs: within 25% of the partner's -1.0
    assert gated_lambda(negative, best_partners(negative), 0.3, margin=0.25).tolist() == pytest.approx(
        [0.3] * 2
    )
    assert gated_lambda(negative, best_partners(negative), 0.3).tolist() == pytest.approx([0.0, 0.3])


def test_cross_play_samples_leave_the_self_play_term_at_its_own_scale():
    """Switching XP-min's cross-play term on adds -lambda * grad J_XP; it must not shrink the self-play
    term (a mean over more samples, a std over the mixture) or strengthen the entropy bonus against it."""
    from marl.ppo import scale_to_self_play

    torch.manual_seed(0)
    sp_adv = torch.randn(2, 12) * torch.tensor([[1.0], [5.0]]) + 3.0
    xp_adv = -0.15 * torch.randn(2, 12) * 4.0  # weighted cross-play advantages, another spread
    advantage = torch.cat([sp_adv, xp_adv, torch.randn(2, 8)], -1)  # last 8: weight 0, not learned from
    self_play = torch.zeros(2, 32, dtype=torch.bool)
    self_play[:, :12] = True
    learn = self_play.clone()
    learn[:, :24] = True

    alone = scale_to_self_play(
        sp_adv, torch.ones_like(sp_adv, dtype=torch.bool), torch.ones_like(sp_adv, dtype=torch.bool)
    )
    assert torch.allclose(alone.mean(-1), torch.zeros(2), atol=1e-6)  # plain per-member normalisation
    assert torch.allclose(alone.std(-1, unbiased=False), torch.ones(2), atol=1e-5)

    mixed = scale_to_self_play(advantage, learn, self_play)
    # PPO's surrogate is a mean over the 24 learning samples, so each self-play sample must count twice
    # what it counts alone (a mean over 12): then the self-play term equals self-play alone's
    assert torch.allclose(mixed[:, :12] / 2, alone, atol=1e-6)
    std = sp_adv.std(-1, unbiased=False, keepdim=True)
    assert torch.allclose(mixed[:, 12:24], xp_adv / std * 2, atol=1e-5)  # same scale, not centred
    assert (mixed[:, 24:] == 0).all()

    raw = scale_to_self_play(advantage, learn, self_play, normalise=False)
    assert torch.allclose(raw[:, :24], advantage[:, :24] * 2)  # only the mean over more samples undone


def test_gae_reuses_the_next_steps_values_where_no_episode_ended(tmp_path):
    """GAE takes a step's next value from the following step's value, evaluating the critic again only
    where an episode ended or the rollout stops: the same advantages as evaluating every next observation."""
    from marl.population.xpmin import build_trainer, seat_advantages
    from marl.ppo import generalized_advantages

    cfg = _run_config(
        tmp_path,
        "preset=cooking_xpmin",
        "population.size=3",
        "population.pairs=all",
        "population.envs_per_pair=2",
        "env.max_steps=5",  # episodes end inside the rollout, truncated
        "algorithm.rollout_steps=12",
        "model.hidden_sizes=[16]",
    )
    trainer = build_trainer(cfg)
    rollout = trainer.collector.collect(trainer.population, cfg.algorithm.rollout_steps)
    member, layout = trainer.collector.assignment.member, trainer.collector.layout
    carried_on = ~rollout.done[:, :-1]
    assert rollout.done.any() and carried_on.any()
    assert torch.equal(rollout.next_obs[:, :-1][carried_on], rollout.obs[:, 1:][carried_on])

    with torch.no_grad():
        advantage, target = seat_advantages(trainer.population, rollout, member, layout, cfg.algorithm)
        value = trainer.population.seat_values(rollout.obs, member, layout)
        next_value = trainer.population.seat_values(rollout.next_obs, member, layout)
    done, terminated = rollout.done.unsqueeze(-1), rollout.terminated.unsqueeze(-1)
    alg = cfg.algorithm
    expected = generalized_advantages(
        alg.gamma, alg.gae_lambda, value, next_value, rollout.reward, done, terminated
    )
    assert torch.allclose(advantage, expected[0], atol=1e-5)
    assert torch.allclose(target, expected[1], atol=1e-5)


def test_seats_no_member_learns_from_do_not_enter_the_update(tmp_path):
    """With all ordered pairs a member learns only from its self-play seats and the seats where it meets
    its best partner j*; the update skips the others. Whatever those seats hold (rewards, observations)
    must leave every parameter as it was, and scrambling a seat that does learn must move them."""
    import dataclasses

    from marl.population.xpmin import build_trainer, train_iteration

    cfg = _run_config(
        tmp_path, "preset=matrix_game_xpmin", "population.envs_per_pair=4", "algorithm.epochs=2"
    )

    def update(scrambled: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[dict, Tensor, int]:
        """Parameters after one iteration, with the slots where ``scrambled(member, best)`` holds garbage."""
        trainer = build_trainer(cfg)

        def relabel(rollout):
            if scrambled is None:
                return rollout
            slots = scrambled(trainer.collector.assignment.member, best)  # [E]

            def garbage(x: Tensor) -> Tensor:
                where = slots.view(-1, *[1] * (x.dim() - 1))
                noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))  # not torch's RNG
                return torch.where(where, 100 * noise, x)

            return dataclasses.replace(rollout, reward=garbage(rollout.reward), obs=garbage(rollout.obs))

        train_iteration(trainer, relabel)
        j_star = best_partners(trainer.xp_estimate)
        count = int(scrambled(trainer.collector.assignment.member, j_star).sum()) if scrambled else 0
        return {k: v.clone() for k, v in trainer.population.state_dict().items()}, j_star, count

    clean, best, _ = (
        update()
    )  # the j* an iteration on this rollout uses (episode returns are left as they are)

    def no_learner(member: Tensor, best: Tensor) -> Tensor:
        a, b = member.unbind(-1)
        return (a != b) & (best[a] != b) & (best[b] != a)

    def meets_best(member: Tensor, best: Tensor) -> Tensor:
        a, b = member.unbind(-1)
        return (a != b) & (best[a] == b)

    untouched, best_again, n_garbage = update(no_learner)
    assert torch.equal(best_again, best) and n_garbage > 0
    for key, value in clean.items():
        assert torch.equal(value, untouched[key]), key
    moved, _, n_learning = update(meets_best)
    assert n_learning > 0
    assert any(not torch.equal(value, moved[key]) for key, value in clean.items())


# ---------------------------------------------------------------------------------------------------------
# (b) XP-min finds distinct conventions, self-play seeds collapse onto fewer
# ---------------------------------------------------------------------------------------------------------


def test_xpmin_finds_distinct_conventions_where_self_play_collapses(tmp_path):
    """One-shot matrix game, K = 4 conventions, N = 4 members, seed 0.

    XP-min must settle its members on at least K - 1 different conventions, each played perfectly in
    self-play and failing in cross-play. Self-play members never interact (separate losses, per-member
    gradient clipping, element-wise Adam), so a self-play population of 8 x 4 members is 8 independent
    self-play populations of 4. The game and the initial policies are symmetric in the conventions (the
    one-shot observation is all zeros, so every initial policy is exactly uniform), so each self-play member
    picks a uniformly random convention: 4 of them cover K(1 - (1 - 1/K)^N) = 2.73 conventions on average,
    and all 4 only with probability 4!/4^4 = 9%. Their mean over 8 populations must be below XP-min's.
    """
    k, n, groups = 4, 4, 8
    common = ["experiment.iterations=60", "experiment.eval_every=0", "experiment.checkpoint_every=0"]
    xpmin = json.loads(
        (train(_run_config(tmp_path, "preset=matrix_game_xpmin", *common)) / "population.json").read_text()
    )
    selfplay = json.loads(
        (
            train(
                _run_config(tmp_path, "preset=matrix_game_selfplay", f"population.size={n * groups}", *common)
            )
            / "population.json"
        ).read_text()
    )
    xp = torch.tensor(xpmin["xp_matrix"])
    assert xpmin["sp_distinct_labels"] >= k - 1
    assert (xp.diagonal() > 0.95).all() and (xp[~torch.eye(n, dtype=torch.bool)] < 0.05).all()

    sp_labels = torch.tensor(selfplay["sp_labels"]).view(groups, n)
    assert (torch.tensor(selfplay["xp_matrix"]).diagonal() > 0.95).all()  # every self-play member converged
    distinct = [len(set(group.tolist())) for group in sp_labels]
    assert sum(distinct) / groups < xpmin["sp_distinct_labels"], distinct


def test_xpmin_warmup_trains_self_play_first(tmp_path):
    """The cross-play term is off (lambda 0) for the rollouts collected before ``xp_warmup_frames`` env
    steps, on after; the per-pair returns and j* are still measured during the warm-up."""
    cfg = _run_config(
        tmp_path,
        "preset=matrix_game_xpmin",
        "experiment.iterations=4",
        "experiment.eval_every=0",
        "experiment.checkpoint_every=0",
    )
    frames = rollout_frames(cfg)
    cfg = apply_overrides(cfg, [("population.xp_warmup_frames", 2 * frames)])
    rows = read_metrics(train(cfg))
    lam = cfg.population.xp_lambda
    assert [row["train/xp_lambda"] for row in rows] == [0.0, 0.0, lam, lam]
    with pytest.raises(ConfigError, match="xp_warmup_frames"):
        _run_config(tmp_path, "preset=matrix_game_xpmin", "population.xp_warmup_frames=-1")


def test_xp_gate_counts_the_members_the_cross_play_term_weighs_on(tmp_path):
    cfg = _run_config(
        tmp_path,
        "preset=matrix_game_xpmin",
        "population.xp_gate=true",
        "population.xp_gate_margin=0",  # exact: untrained members differ, some do better with others
        "experiment.iterations=3",
        "experiment.eval_every=0",
        "experiment.checkpoint_every=0",
    )
    rows = read_metrics(train(cfg))
    n = cfg.population.size
    assert all(0 <= row["train/xp_gated_open"] <= n for row in rows)
    assert any(row["train/xp_gated_open"] < n for row in rows)  # untrained: some do better with others
    with pytest.raises(ConfigError, match="xp_gate_margin"):
        _run_config(tmp_path, "preset=matrix_game_xpmin", "population.xp_gate_margin=1.5")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_specialists_learn_their_restricted_convention(tmp_path, precision):
    cfg = _run_config(
        tmp_path,
        "preset=matrix_game_specialists",
        "population.size=3",
        "population.specialist_targets=[2, 0, 3]",
        "experiment.iterations=25",
        "experiment.eval_every=0",
        f"algorithm.precision={precision}",
    )
    summary = json.loads((train(cfg) / "population.json").read_text())
    assert summary["sp_labels"] == [2, 0, 3]


# ---------------------------------------------------------------------------------------------------------
# (c) config errors
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["population.siz=3"],
            ["'population.siz'", "Allowed keys of 'population'", "size", "Did you mean 'population.size'"],
        ),
        (["populaton.size=3"], ["'populaton.size'", "Sections", "Did you mean 'population.size'"]),
        (["method=xpmn"], ["population.method", "xpmin, selfplay, specialists"]),
        (["population.size=two"], ["population.size", "expected an integer"]),
        (["foo=1"], ["Unknown argument 'foo'", "method, preset, resume"]),
        (["preset=nope"], ["Unknown population preset 'nope'", "matrix_game_xpmin"]),
        (["method=xpmin", "population.size=1"], ["population.size", ">= 2"]),
        (
            ["method=specialists", "population.size=3", "population.specialist_targets=[0, 1]"],
            ["specialist_targets", "one target label per member"],
        ),
        (
            ["population.pairs=sampled", "population.size=3", "population.partners_per_member=3"],
            ["partners_per_member", "1..2"],
        ),
        (["population.scheme=hyper"], ["'population.scheme'", "is now 'sharing.scheme'"]),
        (["model.hyper_hidden=8"], ["is now 'sharing.hyper.hidden_size'"]),
    ],
)
def test_config_errors_name_the_key_and_the_valid_ones(args, needles):
    with pytest.raises(ConfigError) as error:
        load_population_config(args)
    for needle in needles:
        assert needle in str(error.value)


def test_config_layers_and_cli_error(capsys):
    cfg = load_population_config(["preset=cooking_xpmin", "env.chop_steps=2", "method=selfplay"])
    assert cfg.population.method == "selfplay" and cfg.env.kwargs == {"chop_steps": 2}
    assert cfg.algorithm.lr == 5e-4 and cfg.algorithm.clip_epsilon == 0.3 and cfg.population.xp_lambda == 0.3
    with pytest.raises(ConfigError, match="'algorithm.lrr'"):
        population_config_from_dict({"algorithm": {"lrr": 1.0}})
    assert main(["population", "train", "population.sze=4"]) == 2
    assert "Did you mean 'population.size'" in capsys.readouterr().err


def test_a_config_saved_by_an_earlier_version_loads_with_todays_names():
    """The scheme and hypernetwork knobs moved to marl train's names (sharing.*), and the minibatch count to
    the frames per minibatch it meant (all 16 pairs x 32 envs x 8 steps = 4,096 frames in 4 minibatches)."""
    old = {
        "population": {"method": "xpmin", "size": 4, "scheme": "hyper", "envs_per_pair": 32},
        "algorithm": {"rollout_steps": 8, "minibatches": 4},
        "model": {"hidden_sizes": [32], "hyper_variant": "mip", "hyper_embedding_dim": 4, "hyper_hidden": 16},
    }
    cfg = population_config_from_dict(old)
    assert cfg.sharing.scheme == "hyper" and cfg.algorithm.minibatch_size == 1024
    assert (cfg.sharing.hyper.variant, cfg.sharing.hyper.embedding_dim, cfg.sharing.hyper.hidden_size) == (
        "mip", 4, 16,
    )  # fmt: skip
    assert cfg.model.hidden_sizes == [32]


# ---------------------------------------------------------------------------------------------------------
# (d) exact resume
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ["preset=matrix_game_xpmin"],
        [  # episodes crossing iterations, sampled partners, hyper scheme
            "preset=cooking_xpmin",
            "population.size=3",
            "population.pairs=sampled",
            "population.partners_per_member=1",
            "sharing.scheme=hyper",
            "population.envs_per_pair=2",
            "model.hidden_sizes=[16]",
            "algorithm.rollout_steps=6",
        ],
    ],
    ids=["matrix_game", "cooking_sampled_hyper"],
)
def test_resume_continues_exactly(tmp_path, overrides):
    cfg = _run_config(
        tmp_path,
        *overrides,
        "experiment.iterations=4",
        "experiment.eval_every=2",
        "experiment.eval_envs_per_pair=2",
        "experiment.checkpoint_every=1",
        "algorithm.epochs=2",
    )
    straight = train(cfg)
    interrupted = train(cfg, stop_after=2)
    resumed = train(cfg, resume=interrupted)
    assert resumed == interrupted
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["population"].items():
        assert torch.equal(value, b["population"][key]), key

    assert without_timing(read_metrics(straight)) == without_timing(read_metrics(resumed))
    population, saved = load_population(resumed)
    assert isinstance(population, Population) and saved.population.size == cfg.population.size
    changed = apply_overrides(cfg, [("population.xp_lambda", 0.9), ("experiment.iterations", 6)])
    with pytest.raises(ConfigError, match=r"population.xp_lambda: 0.3 -> 0.9.*experiment.iterations"):
        train(changed, resume=resumed)  # a longer run is fine, another objective is not


# ---------------------------------------------------------------------------------------------------------
# A PettingZoo env through the plug-in
# ---------------------------------------------------------------------------------------------------------


def test_xpmin_on_a_pettingzoo_env_finds_its_conventions(tmp_path):
    """The one-shot convention game written as a PettingZoo ParallelEnv (tests/pz_envs.py): the labels come
    from its infos, the seats from env.seats, and XP-min spreads over at least K - 1 of its K conventions."""
    pettingzoo = [
        "method=xpmin",
        "env.name=pettingzoo",
        "env.entry_point=tests.pz_envs:convention_game",
        "env.seats=[left, right]",
        "env.max_steps=1",
        "env.k=4",
        "population.size=4",
        "population.envs_per_pair=32",
        "algorithm.rollout_steps=8",
        "model.hidden_sizes=[32]",
        "experiment.iterations=60",
        "experiment.eval_every=0",
        "experiment.checkpoint_every=0",
    ]
    run = train(_run_config(tmp_path, *pettingzoo))
    summary = json.loads((run / "population.json").read_text())
    assert summary["sp_distinct_labels"] >= 3
    assert (torch.tensor(summary["xp_matrix"]).diagonal() > 0.95).all()
    evaluation = evaluate_run(run, episodes_per_pair=8, tensorboard=False)  # D, S from the env's infos
    assert evaluation["specialisation"] > 0.95 and evaluation["diversity"] > math.log(2)
    with pytest.raises(ConfigError, match="env.seats"):
        _run_config(tmp_path, *pettingzoo[:3], "env.seats=[left]")
    with pytest.raises(ConfigError, match="PettingZoo settings"):
        _run_config(tmp_path, "preset=matrix_game_xpmin", "env.seats=[left, right]")


def test_member_update_equals_each_member_updated_alone(monkeypatch):
    """Two independent members updated together (losses summed, clipped per member) end exactly where each
    ends when updated alone, as a population of one, on its own samples in the same minibatch order."""
    import marl.ppo
    from marl.population.xpmin import MemberBatch, ppo_update_members

    torch.manual_seed(0)
    n, length, obs_dim, n_actions, epochs = 2, 30, 5, 3, 3
    # member 1 has 10x the advantages of member 0: its gradients are clipped, member 0's are not (SGD: a
    # wrong scale or a shared clipping norm would show)
    alg = SimpleNamespace(
        epochs=epochs, minibatch_size=8, clip_epsilon=0.2, value_coef=0.5, entropy_coef=0.01,
        max_grad_norm=0.5, normalize_advantage=False, lr=0.1,
    )  # fmt: skip
    batch = MemberBatch(
        obs=torch.randn(n, length, obs_dim),
        partner=torch.arange(n).unsqueeze(-1).expand(n, length),  # self-play: each member its own partner
        action=torch.randint(0, n_actions, (n, length)),
        log_prob=-torch.rand(n, length),
        advantage=torch.randn(n, length) * torch.tensor([[1.0], [10.0]]),
        target=torch.randn(n, length),
        learn=(learn := torch.rand(n, length) < 0.7),
        self_play=learn,
        valid=torch.ones(n, length, dtype=torch.bool),
    )
    orders = [torch.rand(n, length).argsort(-1) for _ in range(epochs)]

    def update(population: Population, batch: MemberBatch, rows: slice) -> None:
        draws = iter(orders)
        monkeypatch.setattr(marl.ppo, "shuffled_order", lambda *_: next(draws)[rows])
        optimizer = torch.optim.SGD(population.parameters(), lr=alg.lr)
        ppo_update_members(population, optimizer, batch, alg, frames=length)  # 4 minibatches of 8 frames

    together = Population(n, obs_dim, n_actions, hidden_sizes=(8,))
    alone = []
    for m in range(n):
        member = Population(1, obs_dim, n_actions, hidden_sizes=(8,))
        with torch.no_grad():  # member m's weights; its critic's partner input is its own id, 0 when alone
            for mine, theirs in zip(member.actor.parameters(), together.actor.parameters()):
                mine.copy_(theirs[m : m + 1])
            for mine, theirs in zip([*member.critic.weights[1:], *member.critic.biases],
                                    [*together.critic.weights[1:], *together.critic.biases]):  # fmt: skip
                mine.copy_(theirs[m : m + 1])
            first = together.critic.weights[0][m]
            member.critic.weights[0][0].copy_(torch.cat([first[:obs_dim], first[obs_dim + m :][:1]]))
        own_samples = MemberBatch(**{k: v[m : m + 1] for k, v in vars(batch).items()})
        own_samples.partner = torch.zeros_like(own_samples.partner)
        update(member, own_samples, slice(m, m + 1))
        alone.append(member)
    update(together, batch, slice(None))

    for m, member in enumerate(alone):
        for mine, theirs in zip(member.actor.parameters(), together.actor.parameters()):
            torch.testing.assert_close(mine[0], theirs[m])
        for mine, theirs in zip(member.critic.biases, together.critic.biases):
            torch.testing.assert_close(mine[0], theirs[m])
        first = together.critic.weights[0][m]
        torch.testing.assert_close(member.critic.weights[0][0][:obs_dim], first[:obs_dim])
        torch.testing.assert_close(member.critic.weights[0][0][obs_dim], first[obs_dim + m])
        torch.testing.assert_close(member.critic.weights[1][0], together.critic.weights[1][m])

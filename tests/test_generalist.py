"""The recurrent generalist: chunk replay, learning with frozen partners, config, resume.

Partners are real `marl population train method=specialists` runs, trained here (about 2 s each) on the
repeated matrix game with K = 3 conventions, horizon 3 and a payoff at every step: specialist i plays
convention i at every step. With the default final-step payoff the specialists' first two actions would be
untrained noise, so no agent could tell them apart before the paying step; with every step paying, a partner
shows its convention at step 0 and a generalist can match it from then on.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from marl.agents.recurrent import RecurrentActorCritic
from marl.envs.factory import make_env

from marl.checkpoint import load_checkpoint
from marl.errors import ConfigError, MarlError
from marl.population.cli import add_generalist_parser
from marl.population.config import load_population_config
from marl.population.generalist import (
    TEST_SEED_OFFSET,
    GeneralistPairs,
    GeneralistRollout,
    advantages,
    build_partners,
    build_trainer,
    evaluate_generalist,
    generalist_config_from_dict,
    load_generalist_config,
    partner_snapshot,
    run_generalist,
    train_generalist,
)
from marl.population.pairs import assign_slots, self_play_pairs
from marl.population.rollout import PairCollector
from marl.population.xpmin import train
from marl.run_logger import read_metrics
from tests.helpers import without_timing

K, HORIZON = 3, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _specialists(runs_dir, seed: int) -> str:
    """A trained population of K specialists (member i: convention i) on the repeated matrix game."""
    cfg = load_population_config(
        [
            "preset=matrix_game_specialists",
            f"env.k={K}",
            f"env.horizon={HORIZON}",
            f"env.max_steps={HORIZON}",
            "env.reward_every_step=true",
            f"population.size={K}",
            "experiment.iterations=25",
            "experiment.eval_every=0",
            "experiment.checkpoint_every=0",
            "experiment.progress=false",
            "experiment.threads=1",
            f"experiment.seed={seed}",
            f"experiment.runs_dir={runs_dir}",
        ]
    )
    return str(train(cfg))


@pytest.fixture(scope="module")
def partners(tmp_path_factory) -> str:
    return _specialists(tmp_path_factory.mktemp("partners"), seed=0)


def _config(tmp_path, population: str, **overrides):
    """A small config, given in the old flat layout of saved configs (which still loads)."""
    small = dict(
        population=population,
        envs=32,
        rollout_steps=12,
        chunk_length=6,
        hidden_size=32,
        encoder_sizes=[32],
        minibatch_chunks=16,  # the old layout's chunks per minibatch: 96 frames today
        eval_episodes=4,
        progress=False,
        checkpoint_every=0,
        runs_dir=str(tmp_path),
    )
    return generalist_config_from_dict({**small, **overrides})


# ---------------------------------------------------------------------------------------------------------
# (a) chunk replay = the step-by-step rollout
# ---------------------------------------------------------------------------------------------------------


def test_chunk_replay_matches_step_by_step_with_resets_inside_chunks():
    torch.manual_seed(0)
    envs, steps, length, obs_dim, n_actions = 5, 12, 4, 7, 3
    model = RecurrentActorCritic(obs_dim, n_actions, hidden_size=16, encoder_sizes=[16])
    obs = torch.randn(envs, steps, obs_dim)
    prev_action = torch.randint(-1, n_actions, (envs, steps))
    prev_reward = torch.randn(envs, steps)
    resets = torch.rand(envs, steps) < 0.25
    resets[:, 0] = True
    resets[0, 2] = True  # a reset strictly inside the first chunk
    hidden, logits, values, starts = model.initial_state(envs), [], [], []
    with torch.no_grad():
        for t in range(steps):
            if t % length == 0:
                starts.append(hidden)
            out, value, hidden = model.step(
                obs[:, t], prev_action[:, t], prev_reward[:, t], hidden, resets[:, t]
            )
            logits.append(out)
            values.append(value)
    logits, values = torch.stack(logits, 1), torch.stack(values, 1)

    def chunks(x):
        return x.reshape(envs * steps // length, length, *x.shape[2:])

    replay_logits, replay_values = model.evaluate_chunks(
        chunks(obs),
        chunks(prev_action),
        chunks(prev_reward),
        torch.stack(starts, 1).flatten(0, 1),
        chunks(resets),
    )
    assert torch.allclose(replay_logits, chunks(logits), atol=1e-6)
    assert torch.allclose(replay_values, chunks(values), atol=1e-6)
    assert replay_values.requires_grad  # the replay is what PPO differentiates

    # a reset forgets everything before it: other inputs before step 2 change nothing from step 2 on
    changed = obs.clone()
    changed[0, :2] += 1.0
    again, _ = model.evaluate_chunks(
        changed[:1, :length],
        prev_action[:1, :length],
        prev_reward[:1, :length],
        starts[0][:1],
        resets[:1, :length],
    )
    assert torch.allclose(again[0, 2:], replay_logits[0, 2:], atol=1e-6)
    assert not torch.allclose(again[0, :2], replay_logits[0, :2])


def test_collector_stores_what_the_replay_needs(partners):
    """The log-probs and values of a collected rollout (episodes crossing chunks and partners redrawn at
    their ends) are reproduced exactly by replaying its chunks from the stored hidden states."""
    population, pop_cfg = build_partners(partner_snapshot(partners), torch.device("cpu"))
    torch.manual_seed(1)
    model = RecurrentActorCritic(2 * K + 1, K, hidden_size=8, encoder_sizes=[8])
    one_pair = assign_slots(self_play_pairs(1), 6)
    collector = PairCollector([make_env(pop_cfg.env_config(6), "cpu", 0)], one_pair, 1, "convention")
    seats = GeneralistPairs(model, population, 6, "success")
    collector.collect(seats, 5)  # leave episodes running across the next rollout's start
    seats.rollout(collector.observation(), 5)
    collector.collect(seats, 8)
    rollout = seats.rollout(collector.observation(), 4)
    assert rollout.start[:, 1:].any()  # episodes start inside chunks

    def chunks(x):
        return x.reshape(-1, 4, *x.shape[2:])

    with torch.no_grad():
        logits, values = model.evaluate_chunks(
            chunks(rollout.obs),
            chunks(rollout.prev_action),
            chunks(rollout.prev_reward),
            rollout.chunk_hidden.flatten(0, 1),
            chunks(rollout.start),
        )
    log_prob = logits.log_softmax(-1).gather(-1, chunks(rollout.action).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(log_prob, chunks(rollout.log_prob), atol=1e-6)
    assert torch.allclose(values, chunks(rollout.value), atol=1e-6)
    assert set(rollout.episode_seat.tolist()) == {0, 1} and rollout.episode_partner.numel() > 0


def test_truncation_bootstraps_and_termination_does_not():
    """One slot, 3 steps: an episode truncated at step 0, one terminated at step 1, then a running one."""
    e, t = 1, 3
    zeros = torch.zeros(e, t)
    rollout = GeneralistRollout(
        obs=torch.zeros(e, t, 1),
        prev_action=zeros.long(),
        prev_reward=zeros,
        start=zeros.bool(),
        action=zeros.long(),
        log_prob=zeros,
        value=torch.tensor([[0.5, 0.25, 0.75]]),
        reward=torch.tensor([[1.0, 2.0, 3.0]]),
        done=torch.tensor([[True, True, False]]),
        terminated=torch.tensor([[False, True, False]]),
        bootstrap=torch.tensor([[10.0, 0.0, 0.0]]),
        last_value=torch.tensor([4.0]),
        chunk_hidden=torch.zeros(e, 1, 1),
        episode_partner=torch.zeros(0, dtype=torch.long),
        episode_seat=torch.zeros(0, dtype=torch.long),
        episode_return=torch.zeros(0),
        episode_success=torch.zeros(0, dtype=torch.bool),
    )
    _, target = advantages(rollout, gamma=0.5, lmbda=1.0)
    assert torch.allclose(target, torch.tensor([[1.0 + 0.5 * 10.0, 2.0, 3.0 + 0.5 * 4.0]]))


# ---------------------------------------------------------------------------------------------------------
# (b) the generalist learns to cooperate with frozen specialists, and with specialists it never met
# ---------------------------------------------------------------------------------------------------------


def test_generalist_learns_to_match_frozen_specialists(tmp_path, partners):
    """Seed 0, 30 iterations (about 5 s). An untrained generalist matches a specialist's convention at the
    final step about one time in K. Measured with generalist seeds 0-3 (held-out specialists of seeds 10-13):
    training success of iteration 1 was 0.30-0.38, the mean of iterations 26-30 0.978-0.991, and the final
    held-out evaluation succeeded with every partner in both seats (harmonic mean 1.0) for the training
    specialists and for the held-out ones."""
    held_out = _specialists(tmp_path / "held_out", seed=1)
    cfg = _config(tmp_path, partners, iterations=30, eval_every=0, test_population=held_out)
    run = train_generalist(cfg)
    rows = read_metrics(run)
    first, last = rows[0]["train/success_mean"], sum(r["train/success_mean"] for r in rows[-5:]) / 5
    assert first < 0.5 and last > 0.85, (first, last)
    for name in [*(f"partner_{j}" for j in range(K)), "seat_0", "seat_1"]:  # every partner, both seats
        assert rows[-1][f"train/success/{name}"] > 0.8, name
    summary = json.loads((run / "generalist.json").read_text())
    assert summary["train_partners"]["harmonic_mean"] > 0.9, summary["train_partners"]
    assert summary["test_partners"]["harmonic_mean"] > 0.9, summary["test_partners"]

    # the same numbers from the run directory, and an untrained network fails most partners
    again = evaluate_generalist(run, held_out, episodes=4, seed=cfg.experiment.seed + TEST_SEED_OFFSET)
    assert again["success"] == summary["test_partners"]["success"]
    untrained = RecurrentActorCritic(2 * K + 1, K, cfg.model.recurrent_size, cfg.model.hidden_sizes)
    baseline = evaluate_generalist(untrained, held_out, episodes=4, deterministic=False)
    assert baseline["success_mean"] < 0.6, baseline


# ---------------------------------------------------------------------------------------------------------
# (c) config errors
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "needles"),
    [
        (
            ["pop", "algorithm.chunk_lenght=4"],
            [
                "'algorithm.chunk_lenght'",
                "Allowed keys",
                "minibatch_size",
                "Did you mean 'algorithm.chunk_length'",
            ],
        ),
        (["pop", "env.num_envs=many"], ["'env.num_envs'", "expected an integer"]),
        (
            ["pop", "algorithm.rollout_steps=10", "algorithm.chunk_length=4"],
            ["rollout_steps=10", "multiple of 'algorithm.chunk_length=4'"],
        ),
        (["pop", "algorithm.gamma=1.5"], ["'algorithm.gamma'", "(0, 1]"]),
        (["pop", "model.activation=sigmoid"], ["'model.activation'", "tanh"]),
        (["experiment.iterations=3"], ["No partner population given"]),
        (
            ["pop", "iterations=3"],
            ["Unknown argument 'iterations'", "Did you mean 'experiment.iterations=3'"],
        ),
        (["pop", "other_pop"], ["Two population runs"]),
        (["pop", "=3"], ["Malformed argument"]),
    ],
)
def test_config_errors_name_the_key_and_the_valid_ones(words, needles):
    with pytest.raises(ConfigError) as error:
        load_generalist_config(words)
    for needle in needles:
        assert needle in str(error.value)


def test_a_saved_config_in_the_old_flat_layout_loads_into_the_sections():
    old = {"population": "runs/p", "envs": 8, "hidden_size": 16, "encoder_sizes": [8], "lr": 1e-3}
    old.update(iterations=7, chunk_length=4, rollout_steps=8, name="g", eval_episodes=3, success_key="won")
    old.update(minibatch_chunks=16)  # chunks per minibatch, today frames per minibatch
    cfg = generalist_config_from_dict(old)
    assert cfg == generalist_config_from_dict(
        {
            "experiment": {"iterations": 7, "name": "g", "eval_episodes": 3},
            "generalist": {"population": "runs/p", "success_key": "won"},
            "env": {"num_envs": 8},
            "algorithm": {"lr": 1e-3, "chunk_length": 4, "rollout_steps": 8, "minibatch_size": 64},
            "model": {"recurrent_size": 16, "hidden_sizes": [8]},
        }
    )
    assert (cfg.env.num_envs, cfg.model.recurrent_size, cfg.model.hidden_sizes) == (8, 16, [8])
    with pytest.raises(ConfigError, match="Did you mean 'experiment'"):
        generalist_config_from_dict({"experimnt": {"iterations": 3}})


def test_defaults_cli_and_bad_population(tmp_path, capsys):
    cfg = load_generalist_config(["some/run", "model.recurrent_size=16"])
    alg = cfg.algorithm
    assert (alg.lr, alg.clip_epsilon, alg.entropy_coef, alg.gamma, alg.gae_lambda) == (
        5e-4,
        0.2,
        0.01,
        0.99,
        0.95,
    )
    assert cfg.generalist.population == "some/run" and cfg.model.recurrent_size == 16
    parser = argparse.ArgumentParser()
    add_generalist_parser(parser.add_subparsers(dest="population_command"))
    args = parser.parse_args(["generalist", str(tmp_path / "missing"), "experiment.progress=false"])
    with pytest.raises(MarlError, match="does not exist"):
        run_generalist(args)


def test_the_command_prints_its_result(partners, tmp_path, capsys):
    from marl.cli import main

    words = ["env.num_envs=16", "algorithm.rollout_steps=6", "algorithm.chunk_length=6"]
    words += ["model.recurrent_size=16", "model.hidden_sizes=[16]", "algorithm.minibatch_size=48"]
    words += ["experiment.eval_episodes=2", "experiment.iterations=2", "experiment.progress=false"]
    words.append(f"experiment.runs_dir={tmp_path}")
    assert main(["population", "generalist", partners, *words]) == 0
    out = capsys.readouterr().out
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "generalist.json").read_text())["train_partners"]
    assert "training partners: harmonic-mean success" in out
    assert f"harmonic-mean success {summary['harmonic_mean']:.3f}, mean {summary['success_mean']:.3f}" in out


# ---------------------------------------------------------------------------------------------------------
# (d) exact resume
# ---------------------------------------------------------------------------------------------------------


def _cooking_partners(runs_dir) -> str:
    """Two barely trained cooking specialists: their episodes are truncated at max_steps (GAE bootstraps)."""
    cfg = load_population_config(
        [
            "preset=cooking_specialists",
            "population.size=2",
            "population.specialist_targets=[0, 1]",
            "population.envs_per_pair=2",
            "env.max_steps=10",
            "algorithm.rollout_steps=8",
            "model.hidden_sizes=[16]",
            "experiment.iterations=1",
            "experiment.eval_every=0",
            "experiment.progress=false",
            f"experiment.runs_dir={runs_dir}",
        ]
    )
    return str(train(cfg))


@pytest.mark.parametrize("game", ["matrix_game", "cooking"])
def test_resume_continues_exactly(tmp_path, partners, game):
    """Episodes cross iterations (matrix game: rollouts of 4 steps, episodes of 3; cooking: rollouts of 4,
    truncation after 10) and evaluations run in between."""
    population = partners if game == "matrix_game" else _cooking_partners(tmp_path / "cooking")
    cfg = _config(
        tmp_path,
        population,
        iterations=4,
        envs=8,
        rollout_steps=4,
        chunk_length=2,
        minibatch_chunks=4,
        eval_every=2,
        checkpoint_every=1,
    )
    straight = train_generalist(cfg)
    interrupted = train_generalist(cfg, stop_after=2)
    resumed = train_generalist(cfg, resume=interrupted)
    assert resumed == interrupted
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key

    assert without_timing(read_metrics(straight)) == without_timing(read_metrics(resumed))
    assert len(read_metrics(resumed)) == 4
    with pytest.raises(MarlError, match="model.recurrent_size"):
        train_generalist(_config(tmp_path, population, iterations=6, hidden_size=16), resume=resumed)


def test_env_kwargs_change_the_game_for_training_and_test_partners(tmp_path):
    """env.kwargs={retry: true}: partners (training and held-out) that learned in kitchens without retries
    play the generalist's kitchen with them, in training, in its evaluations and in evaluate_generalist;
    a setting that changes what a seat observes is refused with the reason."""
    population = _cooking_partners(tmp_path / "cooking")
    held_out = _cooking_partners(tmp_path / "held_out")
    words = [population, f"generalist.test_population={held_out}", "env.kwargs={retry: true}"]
    words += ["env.num_envs=4", "algorithm.rollout_steps=8", "algorithm.minibatch_size=16"]
    words += ["experiment.iterations=1", "experiment.eval_episodes=2", "experiment.progress=false"]
    cfg = load_generalist_config([*words, f"experiment.runs_dir={tmp_path}"])
    assert cfg.env.kwargs == {"retry": True}
    trainer = build_trainer(cfg)
    assert trainer.partner_cfg.env.kwargs["retry"] and trainer.test_partners[1].env.kwargs["retry"]
    info = trainer.collector.current["agents", "info"]
    assert "failed_plates" in info.keys()  # noqa: SIM118 - a TensorDict's keys (only with retries)
    run = train_generalist(cfg)
    report = evaluate_generalist(run, held_out, episodes=2)  # the held-out partners with retries as well
    assert len(report["success_per_partner"]) == 2

    with pytest.raises(MarlError, match="change what a seat observes"):
        build_trainer(load_generalist_config([population, "env.kwargs={signal: true}"]))

"""`marl population evaluate`: D, S, capable members, O and the harmonic mean on hand-made populations, then
an end-to-end evaluation of a tiny trained matrix-game population against tiny trained specialists."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from marl.agents.population import seat_layout
from marl.envs.factory import describe_env, make_env

from marl.collector import heldout_episodes
from marl.population.cli import add_evaluate_parser
from marl.population.config import load_population_config
from marl.population.evaluate import (
    EVALUATION_FILE,
    MATRIX_FILE,
    MemberPolicy,
    evaluate_run,
    harmonic_mean,
    pair_outcomes,
    population_metrics,
    run_evaluate,
    specialist_robustness,
)
from marl.population.members import build_population, load_population
from marl.population.pairs import all_pairs, assign_slots
from marl.population.xpmin import train
from marl.run_logger import read_metrics
from marl.runs import untouched_rng

pytestmark = pytest.mark.usefixtures("one_thread")


def _entropy(*p: float) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


# ---------------------------------------------------------------------------------------------------------
# D, S and capable members from hand-made label counts
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 4, 6])
def test_one_label_each_is_fully_specialised_and_log_k_diverse(k):
    counts = torch.eye(k, dtype=torch.long) * 10  # member i completes label i in all its 10 episodes
    metrics = population_metrics(counts, torch.ones(k), estimator="plugin")  # the episodes' exact values
    assert metrics["diversity"] == pytest.approx(math.log(k), abs=1e-12)
    assert metrics["mutual_information"] == pytest.approx(math.log(k), abs=1e-12)
    assert metrics["specialisation"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["conditional_entropy"] == pytest.approx(0.0, abs=1e-12)
    # every resample keeps each member on its one label: S = 1 in all of them
    assert metrics["specialisation_low"] == pytest.approx(1.0) and metrics["specialisation_high"] == 1.0
    assert metrics["diversity_low"] <= metrics["diversity"] + 1e-12 and metrics["diversity_max"] == math.log(
        k
    )
    assert metrics["sp_label"] == list(range(k)) and metrics["labelled_episodes"] == 10 * k
    # the default (Grassberger, bias-aware intervals): D near log k, S = 1, all within [0, log k] / [0, 1]
    default = population_metrics(counts, torch.ones(k))
    assert default["diversity"] == pytest.approx(math.log(k), abs=0.01)
    assert default["specialisation"] == 1.0 and default["specialisation_low"] == 1.0
    assert default["diversity_low"] <= math.log(k) <= default["diversity_high"] <= math.log(k)
    assert default["mutual_information_low"] <= math.log(k) <= default["mutual_information_high"]


def test_members_mixing_labels_uniformly_are_not_specialised():
    counts = torch.full((3, 4), 5)  # 3 members, each completes each of 4 labels 5 times
    metrics = population_metrics(counts, torch.ones(3), estimator="plugin")
    assert metrics["specialisation"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["mutual_information"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["diversity"] == pytest.approx(math.log(4), abs=1e-12)
    assert metrics["specialisation_low"] >= 0.0 and metrics["specialisation_high"] > 0.0  # resampling bias


def test_partial_specialisation_and_shared_labels():
    # member 0 always label 0; member 1 half label 0, half label 1: p(y) = (3/4, 1/4), H(Y|X) = log(2) / 2
    metrics = population_metrics(torch.tensor([[10, 0], [5, 5]]), torch.ones(2), estimator="plugin")
    h_y = _entropy(0.75, 0.25)
    assert metrics["diversity"] == pytest.approx(h_y, abs=1e-12)
    assert metrics["mutual_information"] == pytest.approx(h_y - math.log(2) / 2, abs=1e-12)
    assert metrics["specialisation"] == pytest.approx(1 - math.log(2) / 2 / h_y, abs=1e-12)
    # two members on one label, one on another: specialised (S = 1) but less diverse than log 3
    shared = population_metrics(torch.tensor([[8, 0], [8, 0], [0, 8]]), torch.ones(3), estimator="plugin")
    assert shared["specialisation"] == pytest.approx(1.0, abs=1e-12)
    assert shared["diversity"] == pytest.approx(_entropy(2 / 3, 1 / 3), abs=1e-12)
    # all on one label: H(Y) = 0, S = 0 by convention; episodes with no label (not counted) leave NaN
    assert population_metrics(torch.tensor([[4], [4]]), torch.ones(2))["specialisation"] == 0.0
    empty = population_metrics(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2))
    assert math.isnan(empty["diversity"]) and empty["sp_label"] == [-1, -1]


def test_capable_members_reach_half_self_play_success():
    counts = torch.eye(4, dtype=torch.long) * 4
    metrics = population_metrics(counts, torch.tensor([0.9, 0.5, 0.49, 0.0]))
    assert metrics["capable"] == [True, True, False, False] and metrics["capable_members"] == 2


# ---------------------------------------------------------------------------------------------------------
# O and the harmonic mean
# ---------------------------------------------------------------------------------------------------------


def test_overfitness_on_a_hand_made_population():
    # member 0 plays label 1 (SP success 0.9), with label 1's specialist 0.2 in seat 0 and 0.4 in seat 1
    counts = torch.tensor([[0, 9], [10, 0], [3, 0], [0, 0]])
    sp_success = torch.tensor([0.9, 1.0, 0.3, 0.0])
    partner = torch.zeros(4, 2, 2)  # [member, specialist, member's seat]
    partner[0, 1] = torch.tensor([0.2, 0.4])  # -> 0.3: overfit 0.6
    partner[1, 0] = torch.tensor([1.0, 0.8])  # -> 0.9: overfit 0.1
    partner[2, 0] = torch.tensor([0.0, 0.0])  # not capable: not counted
    metrics = population_metrics(counts, sp_success, partner, [0, 1])
    assert metrics["own_specialist_success"][:3] == pytest.approx([0.3, 0.9, 0.0])
    assert metrics["overfitness_per_member"][:2] == pytest.approx([0.6, 0.1])
    assert math.isnan(metrics["overfitness_per_member"][2]) and math.isnan(
        metrics["overfitness_per_member"][3]
    )
    assert metrics["overfitness"] == pytest.approx(0.35) and metrics["overfitness_members"] == 2

    # the brief's case alone; two specialists of one label are averaged; a label without one is skipped
    alone = population_metrics(torch.tensor([[0, 5]]), torch.tensor([0.9]), torch.tensor([[[0.3, 0.3]]]), [1])
    assert alone["overfitness"] == pytest.approx(0.6)
    two = torch.tensor([[[0.0, 0.0], [0.2, 0.4], [0.3, 0.3]]])  # specialists of labels 0, 1, 1
    assert population_metrics(torch.tensor([[0, 5]]), torch.tensor([0.9]), two, [0, 1, 1])[
        "overfitness"
    ] == pytest.approx(0.6)
    missing = population_metrics(torch.tensor([[0, 0, 5]]), torch.tensor([1.0]), two, [0, 1, 1])
    assert math.isnan(missing["overfitness"]) and missing["overfitness_members"] == 0


def test_harmonic_mean():
    assert harmonic_mean([0.5, 1.0]) == pytest.approx(2 / 3)
    assert harmonic_mean(torch.full((6,), 0.8)) == pytest.approx(0.8)
    assert harmonic_mean([0.9, 0.0, 1.0]) == 0.0  # failing with any partner is not robust
    assert math.isnan(harmonic_mean([]))


def test_batched_core_plays_the_episodes_of_the_platforms_episode_runner():
    """Kitchens with random starts, sampled actions, episodes ending at different steps: the seat-policy core
    of every population evaluation gives the returns, labels and success that marl/training.py's
    ``heldout_episodes`` (marl train's evaluation) gives for the same pairs, policy and seed."""
    cfg = load_population_config(["preset=cooking_xpmin", "population.size=2", "env.max_steps=60"])
    torch.manual_seed(0)
    population = build_population(cfg, sizes=(40, 6))  # the cooking env's observation and action sizes
    device, seed = torch.device("cpu"), 5
    ours = pair_outcomes(population, cfg, all_pairs(2), 3, seed, device, deterministic=False)

    assignment = assign_slots(all_pairs(2), 3)
    with untouched_rng(device):
        env = make_env(cfg.env_config(assignment.num_envs), device, seed)
    layout = seat_layout(assignment.member, 2)

    def policy(td):
        action, _ = population.act(td["agents", "observation"], assignment.member, False, layout=layout)
        return td.set(("agents", "action"), action)

    reference = heldout_episodes(env, describe_env(env, cfg.env.name, cfg.env.max_steps), policy, seed)
    assert torch.equal(ours.returns.flatten(), reference["agents/return"].mean(-1))
    assert torch.equal(ours.labels.flatten(), reference["info/recipe"].round().long())
    assert torch.equal(ours.success.flatten(), reference["info/success"])
    assert ours.returns.unique().numel() > 1  # the episodes do differ


# ---------------------------------------------------------------------------------------------------------
# End to end: a tiny XP-min population and tiny specialists on the matrix game (K = 4)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    quiet = [
        "experiment.progress=false",
        "experiment.threads=1",
        f"experiment.runs_dir={root}",
        "experiment.eval_every=0",
        "experiment.checkpoint_every=0",
        "experiment.eval_envs_per_pair=4",
        "population.envs_per_pair=16",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    xpmin = train(load_population_config(["preset=matrix_game_xpmin", "experiment.iterations=40", *quiet]))
    specialists = train(
        load_population_config(["preset=matrix_game_specialists", "experiment.iterations=20", *quiet])
    )
    torch.set_num_threads(threads)
    return xpmin, specialists


def test_evaluate_run_end_to_end(runs, tmp_path):
    xpmin, specialists = runs
    result = evaluate_run(xpmin, specialists, episodes_per_pair=4, out=tmp_path, n_boot=50)
    saved = json.loads((tmp_path / EVALUATION_FILE).read_text())
    assert (tmp_path / MATRIX_FILE).stat().st_size > 0
    for key in (
        "xp_return",
        "xp_success",
        "sp_success",
        "sp_label",
        "sp_label_counts",
        "diversity",
        "diversity_low",
        "diversity_high",
        "specialisation",
        "specialisation_low",
        "specialisation_high",
        "mutual_information",
        "capable",
        "capable_members",
        "overfitness",
        "overfitness_per_member",
        "own_specialist_success",
        "specialists",
    ):
        assert key in saved, key
    assert torch.tensor(saved["xp_return"]).shape == (4, 4) and torch.tensor(saved["xp_success"]).shape == (
        4,
        4,
    )
    assert torch.tensor(saved["specialists"]["member_success"]).shape == (4, 4, 2)
    assert torch.tensor(saved["sp_label_counts"]).shape == (4, 4)  # K = 4 conventions
    # same held-out episodes as training's final all-pairs evaluation (4 per pair, the run's eval seed)
    summary = json.loads((xpmin / "population.json").read_text())
    assert saved["xp_return"] == summary["xp_matrix"] and saved["sp_label"] == summary["sp_labels"]
    # deterministic members in a one-shot game: each plays one convention, so S = 1 once two are used
    if saved["diversity"] > 0:
        assert saved["specialisation"] == pytest.approx(1.0)
    capable = [o for o, c in zip(saved["overfitness_per_member"], saved["capable"]) if c and o is not None]
    assert saved["overfitness"] == pytest.approx(sum(capable) / len(capable))
    assert saved["specialists"]["sp_label"] == [0, 1, 2, 3]  # specialist k plays convention k
    # the env's other info keys per ordered pair: success again, as a rate
    assert saved["xp_outcomes"]["success"] == saved["xp_success"] and "convention" not in saved["xp_outcomes"]
    assert saved["overfitness_low"] <= saved["overfitness"] <= saved["overfitness_high"]
    assert result["capable_members"] == sum(saved["capable"])

    # a population member as the "generalist": the same successes as in the batched member evaluation
    population, _ = load_population(xpmin)
    spec_population, spec_cfg = load_population(specialists)
    generalist = specialist_robustness(
        MemberPolicy(population, 1), spec_population, spec_cfg, episodes_per_pair=4, seed=saved["seed"]
    )
    assert generalist["success"] == saved["specialists"]["member_success"][1]
    assert generalist["harmonic_mean"] == pytest.approx(harmonic_mean(generalist["success_per_partner"]))
    assert generalist["labels"] == [0, 1, 2, 3]

    class Recorder(
        MemberPolicy
    ):  # a stateful seat policy: reset before the episodes, rewards after each step
        def reset(self, n_seats: int) -> None:
            self.seats, self.rewards = n_seats, []

        def observe(self, reward: torch.Tensor, done: torch.Tensor) -> None:
            self.rewards.append(reward)

    recorder = Recorder(population, 1)
    robustness = specialist_robustness(
        recorder, spec_population, spec_cfg, episodes_per_pair=4, seed=saved["seed"]
    )
    assert recorder.seats == 4 * 2 * 4 and len(recorder.rewards) == 1  # one-shot game: one step
    assert float(recorder.rewards[0].mean()) == pytest.approx(robustness["success_mean"])  # reward = success


def test_evaluate_command_and_tensorboard(runs, tmp_path, capsys):
    xpmin, specialists = runs
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", str(xpmin), "--specialists", str(specialists), "--episodes", "2"])
    assert run_evaluate(args) == 0
    printed = capsys.readouterr().out
    for needle in ("Success rate", "Diversity", "Specialisation", "Capable members", "Overfitness"):
        assert needle in printed
    assert (xpmin / EVALUATION_FILE).exists() and (xpmin / MATRIX_FILE).exists()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(xpmin)).Reload()
    assert {"evaluate/diversity", "evaluate/specialisation", "evaluate/overfitness"} <= set(
        events.Tags()["scalars"]
    )
    assert "evaluate/partner_success/specialist_0" in events.Tags()["scalars"]
    assert "evaluate/xp_matrix" in events.Tags()["images"]


def test_training_logs_d_s_o_and_specialist_success(runs, tmp_path):
    """With experiment.eval_specialists, every periodic evaluation logs D, S (with intervals), the capable
    members, O and each specialist's success; the final one equals `evaluate_run` on the same episodes."""
    _, specialists = runs
    cfg = load_population_config(
        [
            "preset=matrix_game_xpmin",
            "experiment.iterations=6",
            "experiment.eval_every=3",
            "experiment.eval_envs_per_pair=4",
            f"experiment.eval_specialists={specialists}",
            "experiment.progress=false",
            f"experiment.runs_dir={tmp_path}",
            "population.envs_per_pair=16",
        ]
    )
    run = train(cfg)
    rows = [row for row in read_metrics(run) if "eval/diversity" in row]
    assert [row["iteration"] for row in rows] == [3, 6]
    last = rows[-1]
    result = evaluate_run(run, specialists, episodes_per_pair=4, tensorboard=False)
    assert last["eval/diversity"] == pytest.approx(result["diversity"])
    assert last["eval/specialisation"] == pytest.approx(result["specialisation"])
    assert last["eval/capable_members"] == result["capable_members"]
    assert last["eval/overfitness"] == pytest.approx(result["overfitness"], nan_ok=True)
    per_specialist = result["specialists"]["per_partner_success"]
    for label, value in zip(result["specialists"]["labels"], per_specialist, strict=True):
        assert last[f"eval/specialist_success/specialist_{label}"] == pytest.approx(value)
    assert last["eval/diversity_low"] <= last["eval/diversity"] + 1e-9


def test_overfitness_interval_covers_the_sampling_noise_of_its_rates():
    """O's parametric bootstrap: exact rates (0 or 1) give a zero-width interval; rates of few episodes a
    wide one that holds the point value; more episodes narrow it."""
    counts = torch.tensor([[9, 0], [0, 9]])
    exact = population_metrics(counts, torch.ones(2), torch.zeros(2, 2, 2), [0, 1], episodes=16)
    assert exact["overfitness"] == exact["overfitness_low"] == exact["overfitness_high"] == 1.0

    partner = torch.full((2, 2, 2), 0.5)
    sp = torch.tensor([0.75, 0.75])
    few = population_metrics(counts, sp, partner, [0, 1], episodes=8)
    many = population_metrics(counts, sp, partner, [0, 1], episodes=512)
    assert few["overfitness"] == pytest.approx(0.25)
    assert few["overfitness_low"] < 0.25 < few["overfitness_high"]
    assert (
        many["overfitness_high"] - many["overfitness_low"]
        < (few["overfitness_high"] - few["overfitness_low"]) / 4
    )
    assert "overfitness_low" not in population_metrics(counts, sp, partner, [0, 1])  # no episode count given

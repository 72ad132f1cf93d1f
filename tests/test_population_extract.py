"""Extraction: fresh students keep a planted teacher's convention but not its handshake.

The game: the repeated matrix game with K = 3 conventions of 2 actions each (action ``a`` is in block
``a // 2``), horizon T = 2, paying only at the final step (step 0 is free signalling). A seat observes its
partner's and its own previous action (one-hots) and ``t / T``.

The planted teacher (a 2-member population whose weights are set by hand, ``planted_teacher``): member ``i``
plays its handshake action ``h_i`` at step 0; at step 1 it plays its convention action ``c_i`` if the
partner played ``h_i`` at step 0, else a sabotage action ``s_i`` from another block. In self-play it always
succeeds; next to a *convention specialist* that plays ``c_i`` at every step (it knows the convention but
not the handshake) it always fails: the teacher is specialised and overfit, the handshake XP-min can learn.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest
import torch
from marl.agents.population import Population
from torch import Tensor

from marl.checkpoint import load_checkpoint, save_checkpoint
from marl.config import config_to_dict
from marl.errors import ConfigError, MarlError
from marl.population.cli import add_extract_parser
from marl.population.config import load_population_config, population_config_to_dict
from marl.population.evaluate import evaluate_run, format_report, pair_outcomes
from marl.population.extract import (
    extract,
    extract_config,
    label_reward_table,
    parse_extract_args,
    run_extract,
)
from marl.population.members import load_population
from marl.run_logger import read_metrics
from tests.helpers import without_timing

K, BLOCK, T = 3, 2, 2
N_ACTIONS, OBS_DIM = K * BLOCK, 2 * K * BLOCK + 1  # observation: partner one-hot, own one-hot, t / T
STEP = OBS_DIM - 1
PLANTED = [  # (handshake, convention action, sabotage action) per member; blocks: h any, c and s differ
    (5, 0, 2),  # member 0: handshake 5 (block 2), convention block 0, sabotage block 1
    (1, 2, 4),  # member 1: handshake 1 (block 0), convention block 1, sabotage block 2
]
HIDDEN = [32]
BIG = 20.0  # logit gap of the planted choices: the planted members are deterministic up to ~e^-20


pytestmark = pytest.mark.usefixtures("one_thread")


def teacher_config(tmp_path):
    return load_population_config(
        [
            "method=xpmin",
            f"population.size={len(PLANTED)}",
            f"env.k={K}",
            f"env.actions_per_convention={BLOCK}",
            f"env.horizon={T}",
            f"env.max_steps={T}",
            f"model.hidden_sizes={HIDDEN}",
            "experiment.progress=false",
            f"experiment.runs_dir={tmp_path}",
        ]
    )


def blank_population(n: int) -> Population:
    """A population whose actors output all-zero logits (weights and biases zeroed), to plant logic in."""
    population = Population(n, OBS_DIM, N_ACTIONS, hidden_sizes=HIDDEN)
    with torch.no_grad():
        for p in population.actor.parameters():
            p.zero_()
    return population


def planted_teacher() -> Population:
    """Member i = the handshake policy of ``PLANTED[i]``, with two saturated tanh units:
    ``a = tanh(40 (t - 1/4))`` (-1 at step 0, +1 at step 1) and
    ``b = tanh(20 partner_was_h + 20 t - 25)`` (+1 only at step 1 after the partner's handshake);
    logits ``h: BIG/2 (1 - a)``, ``c: BIG/2 (1 + b)``, ``s: BIG/2 (a - b)`` (all others 0)."""
    population = blank_population(len(PLANTED))
    (w0, w1), (b0, b1) = population.actor.weights, population.actor.biases
    with torch.no_grad():
        for i, (h, c, s) in enumerate(PLANTED):
            w0[i, STEP, 0], b0[i, 0] = 40.0, -10.0
            w0[i, h, 1], w0[i, STEP, 1], b0[i, 1] = 20.0, 20.0, -25.0
            w1[i, 0, h], b1[i, h] = -BIG / 2, BIG / 2
            w1[i, 1, c], b1[i, c] = BIG / 2, BIG / 2
            w1[i, 0, s], w1[i, 1, s] = BIG / 2, -BIG / 2
    return population


def merged(*members: tuple[Population, int]) -> Population:
    """One population holding the actors of the given (population, member) pairs, in that order."""
    out = blank_population(len(members))
    with torch.no_grad():
        for name, param in out.actor.named_parameters():
            param.copy_(torch.stack([dict(p.actor.named_parameters())[name][m] for p, m in members]))
    return out


def convention_specialists() -> list[tuple[Population, int]]:
    """Member i plays its teacher's convention action ``c_i`` at every step: no handshake."""
    population = blank_population(len(PLANTED))
    with torch.no_grad():
        for i, (_, c, _) in enumerate(PLANTED):
            population.actor.biases[-1][i, c] = BIG
    return [(population, i) for i in range(len(PLANTED))]


def play(cfg, first: tuple[Population, int], second: tuple[Population, int], episodes: int = 64):
    """Sampled episodes of ``first`` (seat 0) with ``second`` (seat 1), and of the reverse seating:
    -> (mean return, labels of all episodes)."""
    population, pairs = merged(first, second), torch.tensor([[0, 1], [1, 0]])
    result = pair_outcomes(
        population, cfg, pairs, episodes, seed=123, device=torch.device("cpu"), deterministic=False
    )
    return float(result.returns.mean()), result.labels.flatten()


def save_teacher(tmp_path, cfg) -> str:
    """The planted teacher as a population run directory (the checkpoint format `load_population` reads)."""
    run_dir = tmp_path / "planted_teacher"
    state = {
        "format": 1,
        "kind": "population",
        "iteration": 0,
        "config": population_config_to_dict(cfg),
        "population": planted_teacher().state_dict(),
    }
    save_checkpoint(run_dir, state, keep=1)
    return str(run_dir)


QUIET = dict(progress=False, eval_every=0, checkpoint_every=0, envs_per_member=32, rollout_steps=8)


def test_planted_teacher_is_specialised_and_overfit(tmp_path):
    cfg = teacher_config(tmp_path)
    teacher = planted_teacher()
    for i, (_, c, _) in enumerate(PLANTED):
        sp_return, sp_labels = play(cfg, (teacher, i), (teacher, i))
        xp_return, _ = play(cfg, (teacher, i), convention_specialists()[i])
        assert sp_return == 1.0 and (sp_labels == c // BLOCK).all()
        assert xp_return == 0.0  # the specialist plays the same convention, but never the handshake


def stranger_state_policy(population: Population, member: int) -> Tensor:
    """``member``'s action probabilities at step 1 after it handshook and its partner played the convention
    (the state the non-handshaking specialist creates)."""
    h, c, _ = PLANTED[member]
    obs = torch.zeros(OBS_DIM)
    obs[c], obs[N_ACTIONS + h], obs[STEP] = 1.0, 1.0, 1.0 / T
    with torch.no_grad():
        return population.member_logits(member, obs).softmax(-1)


def stranger_states_labelled(run) -> int:
    """How many step-1 states in a DAgger run's aggregated dataset follow a partner's missed handshake."""
    obs = torch.cat([d["obs"] for d in load_checkpoint(run)["extraction"]["dataset"]], dim=1)  # [N, L, D]
    handshake = torch.tensor([h for h, _, _ in PLANTED]).unsqueeze(-1)
    return int(((obs[..., STEP] > 0) & (obs[..., :N_ACTIONS].argmax(-1) != handshake)).sum())


DAGGER = dict(method="dagger", iterations=4, beta_decay=0.5, window=0, **QUIET)
FITS = {  # how closely the students imitate before they act (the defaults: lr 1e-2, 50 full-batch steps)
    "sampled_students_lr3e-2": dict(lr=3e-2),
    "mode_students_defaults": dict(student_actions="mode"),
}


@pytest.mark.parametrize("fit", FITS.values(), ids=FITS.keys())
def test_dagger_extraction_removes_the_sabotage_and_keeps_the_convention(tmp_path, fit):
    """What DAgger does here, precisely.

    DAgger fits the teacher's action distribution on the states the students' (mixed) self-play visits.
    With ``beta0 = 1`` the first iteration is the teacher's own self-play: its only states are step 0 and
    step 1 after a handshake, labelled ``h`` and ``c``. The students fit them closely before they act
    (sampled: their chance of missing the handshake is then ~1e-6; mode: their most likely step-0 action is
    ``h``), so in their self-play a partner never misses the handshake and the states where the teacher
    sabotages are never labelled: we check the dataset holds none. The specialist creates one of those
    states, ``(partner played c, own h, t = 1/2)``. The students were never taught to sabotage there (their
    probability of ``s`` is ~0; the teacher's is 1), and they play what they generalise from the nearby
    states they know: mostly ``c`` (step 1 after a handshake), partly ``h`` (step 0, the only state without
    the partner's handshake). Which share goes to ``c`` is generalisation, not data: over seeds 0-9 it was
    0.67-0.99 (sampled students), hence the loose bound on the cross-play return (the teacher's is 0).

    So the sabotage is not transferred because self-play does not reach it, not because DAgger unlearns it;
    ``test_dagger_copies_the_sabotage_where_students_visit_it`` shows the flip side. With a looser fit
    (sampled students, lr 1e-2, 8 iterations) one to six stranger states got labelled during development,
    and that was enough: those students sabotaged the specialist.
    """
    cfg = teacher_config(tmp_path)
    run = extract(save_teacher(tmp_path, cfg), beta0=1.0, runs_dir=str(tmp_path), **DAGGER, **fit)
    students, student_cfg = load_population(run)
    assert stranger_states_labelled(run) == 0
    for i, (h, c, s) in enumerate(PLANTED):
        sp_return, sp_labels = play(student_cfg, (students, i), (students, i))
        assert sp_return > 0.95 and (sp_labels == c // BLOCK).float().mean() > 0.95  # specialty kept
        probs = stranger_state_policy(students, i)
        assert stranger_state_policy(planted_teacher(), i)[s] > 0.99 and probs[s] < 0.01  # no sabotage
        assert probs[c] > 0.5 and probs[c] + probs[h] > 0.99
        assert play(student_cfg, (students, i), convention_specialists()[i])[0] > 0.5
    summary = json.loads((run / "population.json").read_text())
    assert summary["extraction"]["method"] == "dagger" and max(summary["extraction"]["label_tv"]) < 0.05


def test_dagger_copies_the_sabotage_where_students_visit_it(tmp_path):
    """With ``beta0 = 0`` the untrained students act from the start and miss the handshake 5/6 of the
    time; the teacher labels those states with the sabotage, aggregation (window 0) keeps them, and the
    students copy the overfitness while keeping the convention in self-play."""
    cfg = teacher_config(tmp_path)
    run = extract(save_teacher(tmp_path, cfg), beta0=0.0, runs_dir=str(tmp_path), lr=3e-2, **DAGGER)
    students, student_cfg = load_population(run)
    assert stranger_states_labelled(run) > 100
    for i, (_, _, s) in enumerate(PLANTED):
        assert play(student_cfg, (students, i), (students, i))[0] > 0.95
        assert stranger_state_policy(students, i)[s] > 0.9
        assert play(student_cfg, (students, i), convention_specialists()[i])[0] < 0.1


def test_rl_extraction_rewards_the_teachers_labels_only(tmp_path):
    """PPO from scratch in self-play, paid p_teacher(label) = 1 for the teacher's convention: nothing pays
    for the handshake or for failing with strangers, so the students play their teacher's convention at
    step 1 whatever happened at step 0, and do so with the specialist too."""
    cfg = teacher_config(tmp_path)
    run = extract(
        save_teacher(tmp_path, cfg), method="rl", iterations=25, lr=3e-3, runs_dir=str(tmp_path), **QUIET
    )
    students, student_cfg = load_population(run)
    for i, (_, c, _) in enumerate(PLANTED):
        sp_return, sp_labels = play(student_cfg, (students, i), (students, i))
        xp_return, _ = play(student_cfg, (students, i), convention_specialists()[i])
        assert sp_return > 0.9 and (sp_labels == c // BLOCK).float().mean() > 0.9
        assert xp_return > 0.9
    assert read_metrics(run)[-1]["train/label_reward_mean"] > 0.8


@pytest.mark.parametrize("method", ["dagger", "rl"])
def test_extraction_resumes_exactly(tmp_path, method):
    cfg = teacher_config(tmp_path)
    teacher_run = save_teacher(tmp_path, cfg)
    settings = dict(
        method=method,
        iterations=4,
        runs_dir=str(tmp_path),
        label_episodes=16,
        eval_episodes=8,
        progress=False,
        eval_every=2,
        checkpoint_every=1,
        envs_per_member=4,
        rollout_steps=3,
    )
    straight = extract(teacher_run, settings)
    interrupted = extract(teacher_run, settings, stop_after=2)
    assert extract(resume=interrupted) == interrupted
    a, b = load_checkpoint(straight), load_checkpoint(interrupted)
    assert a["iteration"] == b["iteration"] == 4
    for key in a["population"]:
        assert torch.equal(a["population"][key], b["population"][key]), key

    assert without_timing(read_metrics(straight)) == without_timing(read_metrics(interrupted))
    with pytest.raises(MarlError, match="beta0"):
        extract(resume=interrupted, beta0=0.5, iterations=6)


def test_a_saved_extraction_in_the_old_flat_layout_loads_into_the_sections():
    from marl.population.members import run_method

    old = {"method": "rl", "iterations": 7, "envs_per_member": 4, "lr": None, "epochs": 3, "name": "x"}
    cfg = extract_config(old)
    assert cfg == extract_config(
        {
            "experiment": {"iterations": 7, "name": "x"},
            "extract": {"method": "rl", "envs_per_member": 4},
            "algorithm": {"epochs": 3},
        }
    )
    assert run_method({"extraction": {"config": old}}) == "extract_rl"
    assert run_method({"extraction": {"config": config_to_dict(cfg)}}) == "extract_rl"


def test_settings_errors_and_command_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"'betta0'.*Valid keys: .*beta0.*Did you mean 'beta0'"):
        extract_config(betta0=0.5)
    with pytest.raises(ConfigError, match="dagger, rl"):
        extract_config(method="bc")
    with pytest.raises(ConfigError, match="'extract.beta_decay' must be in"):
        extract_config(beta_decay=1.5)
    parser = argparse.ArgumentParser()
    add_extract_parser(parser.add_subparsers(dest="population_command"))
    words = ["runs/teacher", "extract.method=rl", "experiment.iterations=5", "extract.reward=modal"]
    args = parser.parse_args(["extract", *words])
    teacher, settings, resume = parse_extract_args(args.words)
    assert (teacher, resume) == ("runs/teacher", None)
    assert extract_config(settings) == extract_config(method="rl", iterations=5, reward="modal")
    assert parse_extract_args(["resume=runs/x", "experiment.iterations=9"]) == (
        None,
        {"experiment.iterations": 9},
        "runs/x",
    )
    with pytest.raises(ConfigError, match="Did you mean 'extract.window'"):
        extract_config(parse_extract_args(["runs/teacher", "extract.windw=3"])[1])
    with pytest.raises(ConfigError, match="Did you mean 'extract.window=3'"):
        parse_extract_args(["runs/teacher", "window=3"])  # the old flat spelling

    teacher_run = save_teacher(tmp_path, teacher_config(tmp_path))
    words = [teacher_run, "experiment.iterations=1", f"experiment.runs_dir={tmp_path}"]
    words += ["experiment.progress=false", "extract.label_episodes=4", "experiment.eval_episodes=4"]
    assert run_extract(parser.parse_args(["extract", *words])) == 0
    run_dir = capsys.readouterr().out.split("Run saved in ")[1].split()[0]
    assert load_population(run_dir)[1].population.method == "selfplay"  # what the students trained by
    # ... but the run calls itself an extraction, in its summary and in marl population evaluate
    assert json.loads((Path(run_dir) / "population.json").read_text())["method"] == "extract_dagger"
    evaluation = evaluate_run(run_dir, episodes_per_pair=2, tensorboard=False, n_boot=10)
    assert evaluation["method"] == "extract_dagger"
    assert format_report(evaluation).startswith("extract_dagger population of")


def test_label_reward_table():
    counts = torch.tensor([[4, 6, 0, 2], [0, 0, 0, 0], [1, 1, 1, 1]])  # column 0: episodes with no label
    assert torch.allclose(
        label_reward_table(counts, "prob"),
        torch.tensor([[0, 0.75, 0, 0.25], [0, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3]]),
    )
    assert label_reward_table(counts, "modal").tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]


def test_rl_extraction_of_a_member_that_stopped_delivering(tmp_path, monkeypatch):
    """A teacher member with no labelled self-play episode (one that stopped delivering) pays its student
    no label reward: with some of the env's reward it still trains (with a warning), with none it cannot."""
    import marl.population.extract as extraction

    cfg = teacher_config(tmp_path)
    teacher_run = save_teacher(tmp_path, cfg)
    real = extraction.self_play_label_counts

    def member_0_silent(*args, **kwargs):
        counts = real(*args, **kwargs)
        counts[0, 0], counts[0, 1:] = counts[0].sum(), 0
        return counts

    monkeypatch.setattr(extraction, "self_play_label_counts", member_0_silent)
    settings = dict(method="rl", iterations=1, runs_dir=str(tmp_path), label_episodes=8, progress=False)
    with pytest.warns(UserWarning, match=r"\[0\] never ended"):
        run = extract(teacher_run, settings, env_reward_scale=0.1, eval_every=0)
    assert load_checkpoint(run)["iteration"] == 1
    with pytest.raises(MarlError, match="env_reward_scale"):
        extract(teacher_run, settings, env_reward_scale=0.0)


def test_rl_students_play_where_only_their_teachers_label_pays(tmp_path, monkeypatch):
    """extract.restrict_env (the default for rl with env_reward_scale > 0): student i trains as a
    specialist of teacher i's most frequent label, in envs that pay only that label (none for a teacher
    that never delivered), so the env's reward added back cannot pay a behaviour the teacher does not
    show; unrestricted, without the env's reward, or by DAgger, the students play the teacher's own env;
    an env with no paying set to restrict is an error that names the way out."""
    import marl.population.extract as extraction
    from marl.population.rollout import build_shards, training_pairs

    cfg = teacher_config(tmp_path)
    teacher, teacher_cfg = load_population(save_teacher(tmp_path, cfg))
    counts = torch.tensor([[3, 0, 9, 4], [5, 0, 0, 0]])  # member 0: mostly label 1; member 1: never a label
    assert extraction.modal_labels(counts) == [1, -1]
    assert extraction.modal_labels(torch.tensor([[5], [2]])) == [-1, -1]  # no episode of any member labelled

    settings = dict(method="rl", env_reward_scale=0.1, runs_dir=str(tmp_path), progress=False)
    with pytest.warns(UserWarning, match=r"\[1\] never ended.*where no label pays"):
        ex = extraction.build_extraction(extract_config(settings), teacher, teacher_cfg, "t", counts)
    students = ex.students.cfg
    assert (students.population.method, students.population.specialist_targets) == ("specialists", [1, -1])
    shards = build_shards(students, training_pairs(students), torch.device("cpu"))
    paying = sorted(shard.paying_conventions.tolist() for shard in shards)
    assert paying == [[False, False, False], [False, True, False]]

    delivering = torch.tensor([[3, 0, 9, 4], [5, 0, 0, 2]])  # (no env reward: every teacher must deliver)
    unrestricted = [({**settings, "restrict_env": False}, counts), ({**settings, "method": "dagger"}, counts)]
    unrestricted.append(({**settings, "env_reward_scale": 0.0}, delivering))
    for other, labels in unrestricted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rl's warning about member 1, as above
            ex = extraction.build_extraction(extract_config(other), teacher, teacher_cfg, "t", labels)
        assert (ex.students.cfg.population.method, ex.students.cfg.population.specialist_targets) == (
            "selfplay",
            None,
        )

    # extract.student_env: env settings for the students only, on top of the teacher's
    every_step = {**settings, "student_env": {"reward_every_step": True}}
    with pytest.warns(UserWarning, match="never ended"):
        ex = extraction.build_extraction(extract_config(every_step), teacher, teacher_cfg, "t", counts)
    assert ex.students.cfg.env.kwargs == {**teacher_cfg.env.kwargs, "reward_every_step": True}
    assert not teacher_cfg.env.kwargs.get("reward_every_step")

    monkeypatch.setattr(extraction, "label_count", lambda cfg: None)  # an env with no paying set
    with pytest.raises(ConfigError, match="restrict_env=false"):
        extraction.build_extraction(extract_config(settings), teacher, teacher_cfg, "t", counts)


def test_an_extraction_saved_before_restrict_env_resumes_unrestricted(tmp_path):
    """A run saved before extract.restrict_env existed trained in the teacher's own env: it resumes so."""
    teacher_run = save_teacher(tmp_path, teacher_config(tmp_path))
    settings = dict(method="rl", iterations=2, runs_dir=str(tmp_path), label_episodes=8, progress=False)
    run = extract(teacher_run, settings, restrict_env=False, eval_every=0, stop_after=1)
    state = load_checkpoint(run)
    del state["extraction"]["config"]["extract"]["restrict_env"]
    save_checkpoint(run, state, keep=1)
    assert extract(resume=run) == run
    assert load_population(run)[1].population.method == "selfplay"
    assert load_checkpoint(run)["iteration"] == 2

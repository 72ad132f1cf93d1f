"""Pareto fronts, hypervolume and balance on hand-made point sets, and `marl pareto` end to end."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import time
from pathlib import Path

import pytest

from marl.cli import main
from marl.errors import ConfigError, DivergenceError, MarlError
from marl.pareto import (
    balance,
    contributions,
    dominates,
    front_distance,
    front_ranks,
    hypervolume,
    interval,
    non_dominated,
    seeds_description,
    with_interval,
)
from marl.pareto_plot import (
    FAMILY_STYLES,
    family_style,
    member_family,
    off_scale,
    plot_fronts,
    png_array,
    save,
)
from marl.pareto_sweep import analyse, expand, hparams_metrics, load_pareto, rebuild_from_summary, run_pareto


def test_dominance_and_front():
    assert dominates((1, 2), (1, 3)) and not dominates((1, 3), (1, 3)) and not dominates((1, 3), (2, 1))
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 3), (5, 5)]
    # (3, 4) is dominated by (2, 3), (5, 5) by everything; equal points dominate neither other
    assert non_dominated(points) == [0, 1, 3, 4]


def test_hypervolume_2d_by_hand():
    staircase = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume(staircase, (4, 4)) == 6.0  # rectangles 3 + 4 + 3 with overlaps removed
    # dominated points, duplicates, and points not strictly inside the reference box add nothing
    assert hypervolume([*staircase, (3, 3), (2, 2), (5, 0), (0, 4)], (4, 4)) == 6.0
    assert hypervolume([], (4, 4)) == 0.0
    assert hypervolume([(0, 0)], (2, 3)) == 6.0
    with pytest.raises(ValueError, match="2 objectives"):
        hypervolume([(1, 2, 3)], (4, 4))


def test_hypervolume_3d_matches_inclusion_exclusion():
    assert hypervolume([(0, 0, 0.5), (0, 0.5, 0)], (1, 1, 1)) == pytest.approx(0.75)
    rng = random.Random(0)
    for _ in range(20):
        points = [tuple(rng.random() for _ in range(3)) for _ in range(5)]
        reference = (1.0, 1.0, 1.0)
        exact = 0.0  # the union of boxes [p, reference] by inclusion-exclusion over every subset
        for size in range(1, len(points) + 1):
            for subset in itertools.combinations(points, size):
                corner = [max(p[k] for p in subset) for k in range(3)]
                box = 1.0
                for k in range(3):
                    box *= max(0.0, reference[k] - corner[k])
                exact += (-1) ** (size + 1) * box
        assert hypervolume(points, reference) == pytest.approx(exact)


def test_balance_is_chebyshev_distance_to_the_ideal_point():
    points = [(0, 10), (5, 5), (10, 0), (2, 9)]
    scores = balance(points, ideal=(0, 0), nadir=(10, 10))
    assert scores == [1.0, 0.5, 1.0, 0.9]
    assert balance([(1, 7)], ideal=(1, 0), nadir=(1, 10)) == [0.7]  # a constant objective is ignored


def _pareto_file(tmp_path, grid: str, extra: str = "") -> str:
    path = tmp_path / "front.yaml"
    path.write_text(
        "name: tiny\n"
        f"out: {tmp_path / 'out'}\n"
        f"runs_dir: {tmp_path / 'runs'}\n"
        "base: [env=vmas/patrol_search, env.max_steps=40, env.n_agents=3, env.n_searchers=1, "
        "'env.source_window=[2, 10]', env.share_signal=true]\n"
        f"grid:\n{grid}"
        "seeds: [0, 1]\n"
        "episodes: 6\n"
        "objectives: [info/mean_idleness, info/time_to_find]\n"
        "reference: [60, 60]\n"
        f"{extra}"
    )
    return str(path)


def test_pareto_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pareto(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown keys \\['refrence'\\]"):
        load_pareto(_pareto_file(tmp_path, "  policy: [heuristic:patrol]\n", "refrence: [1, 2]\n"))
    text = Path(_pareto_file(tmp_path, "  policy: [heuristic:patrol]\n")).read_text()
    (tmp_path / "bad.yaml").write_text(text.replace("[60, 60]", "[60]"))
    with pytest.raises(ConfigError, match="one reference value per objective"):
        load_pareto(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="policy must be heuristic"):
        load_pareto(_pareto_file(tmp_path, "  policy: [greedy]\n"))
    with pytest.raises(ConfigError, match="front_per/compare_by key 'env.map'"):
        load_pareto(_pareto_file(tmp_path, "  policy: [heuristic:patrol]\n", "front_per: [env.map]\n"))
    with pytest.raises(ConfigError, match="run n_searchers=5.*n_searchers <= n_agents"):
        load_pareto(_pareto_file(tmp_path, "  env.n_searchers: [5]\n  policy: [heuristic:patrol]\n"))


def test_pareto_heuristics_end_to_end(tmp_path, capsys):
    """Four hand-designed teams on one map: patrol-only cannot be beaten on idleness and random teams are
    dominated; outputs, TensorBoard HParams and the results ledger are written; a rerun runs nothing."""
    grid = (
        "  - {policy: [heuristic:random, heuristic:patrol, heuristic:fixed_roles/ecoli]}\n"
        "  - {env.n_searchers: [3], policy: [heuristic:fixed_roles/pso]}\n"
    )
    path = _pareto_file(tmp_path, grid, "compare_by: [policy]\n")
    sweep = load_pareto(path)
    assert [m.label for m in expand(sweep)][-1] == "n_searchers=3,policy=heuristic:fixed_roles-pso"
    summary = run_pareto(sweep)
    front = summary["fronts"]["all"]
    members = summary["members"]
    idleness = {label: m["objectives"]["info/mean_idleness"]["mean"] for label, m in members.items()}
    assert min(idleness, key=idleness.get) in front["front"]
    assert idleness["policy=heuristic:patrol"] < idleness["policy=heuristic:random"]
    assert "policy=heuristic:random" not in front["front"]
    hv = front["hypervolume"]
    assert hv["all"]["mean"] >= max(v["mean"] for k, v in hv.items() if k != "all") > 0
    assert len(hv["all"]["per_seed"]) == 2
    table = (tmp_path / "out" / "table.md").read_text()
    assert "**yes**" in table and "(most balanced)" in table
    assert (tmp_path / "out" / "front.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["fronts"]["all"]["front"] == front["front"]
    events = list((tmp_path / "runs" / "tiny" / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) >= 5  # one per member (HParams) and the front's figure and table
    # every member's HParams session declares the front's metrics, so the HParams table can sort by them
    wanted = {"hypervolume", "hypervolume_low", "hypervolume_high", "on_front", "balance", "rank"}
    wanted |= {"contribution", "family_hypervolume", "mean_idleness_low", "time_to_find_high"}
    label = "policy=heuristic:random"
    metrics = hparams_metrics(sweep, summary, label)
    assert {f"pareto/{m}" for m in wanted} <= set(metrics)
    assert metrics["pareto/hypervolume_low"] <= metrics["pareto/hypervolume"] == hv["all"]["mean"]
    assert metrics["pareto/on_front"] == 0.0 and metrics["pareto/rank"] > 1
    declared, hparams = _hparams_session(tmp_path / "runs" / "tiny" / "tensorboard" / "out" / label)
    assert {f"pareto/{m}" for m in wanted} <= declared
    assert hparams["policy"] == "random" and hparams["figure_no"] == 4  # short (TensorBoard cuts long ones)
    images = _tags(tmp_path / "runs" / "tiny" / "tensorboard" / "out" / "_front")
    assert {"front/all", "front/table/text_summary", "front/hypervolume/text_summary"} <= images
    capsys.readouterr()
    assert main(["pareto", path]) == 0
    assert "0 to run" in capsys.readouterr().out
    # without the ledger, the same analysis comes back from the summary's per-seed values
    (tmp_path / "out" / "results.jsonl").unlink()
    rebuilt = rebuild_from_summary(load_pareto(path))
    assert rebuilt["fronts"] == summary["fronts"] and rebuilt["members"] == summary["members"]


def test_cached_only_reports_the_finished_members_of_an_unfinished_sweep(tmp_path, capsys):
    """--cached-only runs nothing: members whose seeds are all cached are analysed, the others are named
    as left out in the summary and table; --seeds picks the seeds to run or report; nothing cached is an
    error."""
    grid = "  - {policy: [heuristic:random, heuristic:patrol, heuristic:fixed_roles/pso]}\n"
    path = _pareto_file(tmp_path, grid)
    with pytest.raises(MarlError, match="No member of tiny has all of seeds"):
        run_pareto(load_pareto(path), cached_only=True)
    assert main(["pareto", path, "--seeds", "0"]) == 0  # seed 0 only: 3 tasks
    ledger = tmp_path / "out" / "results.jsonl"
    lines = ledger.read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [0, 0, 0]
    ledger.write_text("".join(line + "\n" for line in lines if "heuristic:patrol" not in line))
    capsys.readouterr()
    assert main(["pareto", path, "--seeds", "0", "--cached-only", "--out", str(tmp_path / "so_far")]) == 0
    assert "nothing run (--cached-only)" in capsys.readouterr().out
    assert (
        len(ledger.read_text().splitlines()) == 2
    )  # nothing was run, and the ledger stays at the file's out
    assert not (tmp_path / "so_far" / "results.jsonl").exists()
    saved = json.loads((tmp_path / "so_far" / "summary.json").read_text())
    assert saved["left_out"] == ["policy=heuristic:patrol"] and saved["seeds"] == [0]
    assert sorted(saved["members"]) == ["policy=heuristic:fixed_roles-pso", "policy=heuristic:random"]
    table = (tmp_path / "so_far" / "table.md").read_text()
    assert "**Interim report:** 1 member(s) left out" in table
    # one seed gives no interval: the table says so instead of repeating each value as its interval's ends
    assert "the values of seed 0 (one seed: no interval)" in table and "95%" not in table
    random_row = next(line for line in table.splitlines() if line.startswith("| policy=heuristic:random"))
    assert "[" not in random_row
    rebuilt = rebuild_from_summary(load_pareto(path), tmp_path / "so_far" / "summary.json")
    assert rebuilt["left_out"] == saved["left_out"] and rebuilt["fronts"] == saved["fronts"]


def test_a_failing_member_is_reported_and_the_others_go_on(tmp_path, monkeypatch):
    """One member's task raises (as a diverged training run does): every other member is still run and
    in the ledger, and the sweep ends with one error naming the failed member and seed and what to do."""
    import marl.pareto_sweep as pareto_sweep

    grid = "  - {policy: [heuristic:random, heuristic:patrol]}\n"
    path = _pareto_file(tmp_path, grid)
    run = pareto_sweep.run_member

    def flaky(sweep, member, seed):
        if member.label == "policy=heuristic:random" and seed == 0:
            raise DivergenceError(
                "Training diverged in iteration 3: the policy moved by an approximate KL of 25."
            )
        return run(sweep, member, seed)

    monkeypatch.setattr(pareto_sweep, "run_member", flaky)
    with pytest.raises(MarlError, match="1 member task\\(s\\) failed") as failed:
        run_pareto(load_pareto(path))
    assert "policy=heuristic:random seed 0: DivergenceError: Training diverged in iteration 3" in str(
        failed.value
    )
    ledger = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["member"], r["seed"]) for r in ledger) == [
        ("policy=heuristic:patrol", 0),
        ("policy=heuristic:patrol", 1),
        ("policy=heuristic:random", 1),
    ]
    monkeypatch.setattr(pareto_sweep, "run_member", run)  # fixed: the same command runs only what failed
    summary = run_pareto(load_pareto(path))
    assert sorted(summary["members"]) == ["policy=heuristic:patrol", "policy=heuristic:random"]


def test_hand_designed_members_run_before_learned_ones(tmp_path, monkeypatch):
    """Seconds each, the hand-designed members come first (an interim look at a long sweep has their whole
    front); the learned members follow seed by seed."""
    import marl.pareto_sweep as pareto_sweep

    grid = "  - {sharing: [shared], policy: [learned]}\n  - {policy: [heuristic:random, heuristic:patrol]}\n"
    sweep = load_pareto(_pareto_file(tmp_path, grid))
    order = []

    def record(sweep, member, seed):
        order.append((member.policy, seed))
        objectives = [10.0 + seed, 20.0]
        return {
            "member": member.label,
            "seed": seed,
            "objectives": objectives,
            "return_mean": 0.0,
            "train_frames": 0,
            "seconds": 1.0,
        }

    monkeypatch.setattr(pareto_sweep, "run_member", record)
    monkeypatch.setattr(pareto_sweep, "write_outputs", lambda *a: None)
    run_pareto(sweep)
    assert order == [
        ("heuristic:random", 0),
        ("heuristic:patrol", 0),
        ("heuristic:random", 1),
        ("heuristic:patrol", 1),
        ("learned", 0),
        ("learned", 1),
    ]


def test_first_trains_the_matching_learned_members_every_seed_before_the_others(
    tmp_path, monkeypatch, capsys
):
    """--first key=value puts the learned members that match it (all their seeds) ahead of the other
    learned members, the hand-designed ones still first; a setting that is no grid key, or that no member
    has, is an error that says what to give. --dry-run lists each member's seeds as done, part-trained or
    to run, and the tasks that run next."""
    import marl.pareto_sweep as pareto_sweep

    grid = (
        "  - {sharing: [shared], algorithm.lr: [1.0e-3, 5.0e-4], policy: [learned]}\n"
        "  - {policy: [heuristic:patrol]}\n"
    )
    path = _pareto_file(tmp_path, grid)
    order = []

    def record(sweep, member, seed):
        order.append((member.choices.get("algorithm.lr", member.policy), seed))
        return {
            "member": member.label,
            "seed": seed,
            "objectives": [10.0 + seed + len(order), 20.0 - len(order)],
            "return_mean": 0.0,
            "train_frames": 0,
            "seconds": 1.0,
        }

    # the dry run says where each seed stands (a run stopped at a checkpoint, by its frames) and what is next
    label = "sharing=shared,lr=0.0005,policy=learned"
    stopped = tmp_path / "runs" / "tiny" / "runs" / f"{label},seed=1-20261207-001500"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / "iter_0000003.pt").touch()
    rows = [{"iteration": i, "frames": 1_100_000 * i} for i in (3, 4)]  # iteration 4 was not checkpointed
    (stopped / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["pareto", path, "--first", "algorithm.lr=0.0005", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert f"  {label}: seed 0 to run, seed 1 at 3.3M frames" in listed
    assert "next (1): policy=heuristic:patrol seed 0" in listed
    shutil.rmtree(stopped)
    monkeypatch.setattr(pareto_sweep, "run_member", record)
    monkeypatch.setattr(pareto_sweep, "write_outputs", lambda *a: None)
    run_pareto(load_pareto(path), first=["algorithm.lr=5.0e-4", "sharing=shared"])
    assert order == [
        ("heuristic:patrol", 0),
        ("heuristic:patrol", 1),
        (5.0e-4, 0),
        (5.0e-4, 1),
        (1.0e-3, 0),
        (1.0e-3, 1),
    ]
    with pytest.raises(ConfigError, match="grid keys are"):
        run_pareto(load_pareto(path), first=["env.map=rooms"])
    with pytest.raises(ConfigError, match="No member has all of"):
        run_pareto(load_pareto(path), first=["sharing=hyper"])
    assert main(["pareto", path, "--dry-run"]) == 0
    assert f"  {label}: seed 0 done, seed 1 done" in capsys.readouterr().out


def test_a_committed_ledger_continues_the_sweep_on_a_fresh_clone(tmp_path, capsys):
    """A clone holds the outputs (the ledger among them) but no runs: the sweep runs only the member the
    ledger lacks. Results cached as files by an earlier version join the ledger; a result recovered without
    its return is analysed (its return averaged without it); results of other held-out episodes are an
    error that says what to do."""
    grid = "  - {policy: [heuristic:random, heuristic:patrol]}\n"
    path = _pareto_file(tmp_path, grid)
    assert main(["pareto", path, "--seeds", "0"]) == 0
    ledger = tmp_path / "out" / "results.jsonl"
    first = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert {(r["member"], r["episodes"], r["eval_seed"]) for r in first} == {
        ("policy=heuristic:random", 6, 20261124),
        ("policy=heuristic:patrol", 6, 20261124),
    }
    shutil.rmtree(tmp_path / "runs")  # the fresh clone: no runs, no TensorBoard
    # the patrol team's seed 1 as an older version cached it, and the random team's without its return
    patrol = next(r for r in first if r["member"] == "policy=heuristic:patrol")
    older = tmp_path / "runs" / "tiny" / "results"
    older.mkdir(parents=True)
    (older / "policy=heuristic:patrol,seed=1.json").write_text(json.dumps({**patrol, "seed": 1}))
    random_team = next(r for r in first if r["member"] == "policy=heuristic:random")
    with ledger.open("a") as file:
        file.write(json.dumps({**random_team, "seed": 1, "return_mean": None, "seconds": None}) + "\n")
    capsys.readouterr()
    summary = run_pareto(load_pareto(path))
    assert "0 to run" in capsys.readouterr().out
    assert len(ledger.read_text().splitlines()) == 4  # the older file joined the ledger
    assert summary["members"]["policy=heuristic:random"]["return_mean"] == random_team["return_mean"]
    patrol_idleness = summary["members"]["policy=heuristic:patrol"]["objectives"]["info/mean_idleness"]
    assert patrol_idleness["per_seed"] == [patrol["objectives"][0]] * 2
    with pytest.raises(MarlError, match="evaluated on 6 episodes from seed 20261124, the file asks for 8"):
        sweep = load_pareto(path)
        sweep.episodes = 8
        run_pareto(sweep)


def _events(directory: Path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for path in sorted(directory.glob("events.out.tfevents.*")):
        yield from EventFileLoader(str(path)).Load()


def _tags(directory: Path) -> set[str]:
    return {value.tag for event in _events(directory) for value in event.summary.value}


def _hparams_session(directory: Path) -> tuple[set[str], dict]:
    """The metric tags a member's HParams experiment declares, and the session's hyperparameter values."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    declared, hparams = set(), {}
    for event in _events(directory):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name != "hparams":
                continue
            data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
            declared |= {info.name.tag for info in data.experiment.metric_infos}
            for key, held in data.session_start_info.hparams.items():
                hparams[key] = held.string_value or held.number_value
    return declared, hparams


def test_eval_runs_a_heuristic_and_reports_episode_info(capsys):
    """`marl eval heuristic:...` prints returns and what the scenario reports at the end of the episodes."""
    args = ["heuristic:fixed_roles/pso", "env=vmas/patrol_search", "env.max_steps=30", "--episodes", "4"]
    assert main(["eval", *args]) == 0
    out = capsys.readouterr().out
    assert "team (mean)" in out and "mean_idleness" in out and "time_to_find" in out
    assert main(["eval", "heuristic:dance", "env=vmas/patrol_search"]) == 2
    assert "Unknown heuristic 'heuristic:dance'" in capsys.readouterr().err
    assert main(["eval", "heuristic:patrol", "env=vmas/navigation"]) == 2
    assert "for env=vmas/patrol_search" in capsys.readouterr().err
    assert main(["eval", "results/runs/some-run", "env.num_envs=3"]) == 2
    assert "takes no overrides" in capsys.readouterr().err


def test_interval_stays_inside_the_objectives_range():
    """Bounded intervals never leave the range (a t-interval over 2 seeds goes below 0), stay close to the
    t-interval when the spread is small, and an unbounded one is the plain t-interval."""
    spread = [3.0, 141.6]  # 2 seeds far apart: the t-interval is about [-807, 952]
    assert interval(spread)[1] < 0
    mean, low, high = interval(spread, 0.0)
    assert mean == pytest.approx(72.3) and 0 < low < mean < high
    mean, low, high = interval(spread, 0.0, 190.0)
    assert 0 < low < mean < high < 190
    _, low, high = interval(spread, None, 150.0)
    assert high < 150
    rng = random.Random(1)
    for _ in range(200):
        values = [rng.choice([0.0, 190.0, rng.uniform(0, 190)]) for _ in range(rng.randint(1, 4))]
        mean, low, high = interval(values, 0.0, 190.0)
        assert 0 <= low <= mean <= high <= 190
        mean, low, high = interval(values, 0.0)
        assert 0 <= low <= mean <= high
    t_mean, t_low, t_high = interval([45.0, 46.0, 47.0])
    assert interval([45.0, 46.0, 47.0], 0.0) == pytest.approx((t_mean, t_low, t_high), abs=0.1)
    assert interval([5.0, 5.0], 0.0) == (5.0, 5.0, 5.0) and interval([3.0], 0.0) == (3.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="outside the quantity's range"):
        interval([-1.0, 2.0], 0.0)


def test_a_statistic_from_one_seed_is_shown_without_an_interval():
    three = {"per_seed": [1.0, 2.0, 3.0], "mean": 2.0, "low": 0.5, "high": 3.5}
    assert with_interval(three, 1) == "2.0 [0.5, 3.5]"
    assert with_interval({"per_seed": [2.0], "mean": 2.0, "low": 2.0, "high": 2.0}, 0) == "2"
    assert seeds_description([0, 1, 2], "95% t-interval") == "mean [95% t-interval] over seeds [0, 1, 2]"
    assert seeds_description([4], "95% t-interval") == "the values of seed 4 (one seed: no interval)"


def test_front_ranks_and_contributions():
    points = [(1, 3), (2, 2), (3, 1), (3, 3), (4, 4)]
    assert front_ranks(points) == [1, 1, 1, 2, 3]
    assert contributions(points, (4, 4)) == [1.0, 1.0, 1.0, 0.0, 0.0]  # (4, 4) is outside the box
    assert contributions([(1, 1), (1, 1)], (2, 2)) == [0.0, 0.0]  # a duplicate loses nothing alone


def test_front_distance_is_the_shared_improvement_that_escapes_every_dominating_point():
    points = [(0.0, 10.0), (10.0, 0.0), (5.0, 5.0), (8.0, 9.0), (9.0, 9.5)]
    ideal, nadir = (0.0, 0.0), (10.0, 10.0)
    distances = front_distance(points, ideal, nadir)
    assert distances[:3] == [0.0, 0.0, 0.0]  # the front
    # (8, 9) is dominated only by (5, 5): improving both by 30% of their range of 10 ties it in idleness
    assert distances[3] == pytest.approx(0.3)
    # (9, 9.5): (5, 5) needs min(4, 4.5) / 10 = 0.4, (8, 9) only 0.05; the larger escapes both
    assert distances[4] == pytest.approx(0.4)
    assert front_distance([(1.0, 2.0), (1.0, 3.0)], (1.0, 2.0), (1.0, 3.0)) == [0.0, pytest.approx(1.0)]


def test_family_styles_are_fixed_and_distinct():
    """The same family gets the same colour and marker in every figure and process; the known families
    are distinct, learned teams by sharing scheme included; a variant takes its base family's style."""
    assert family_style("heuristic:fixed_roles/pso") == FAMILY_STYLES["heuristic:fixed_roles/pso"]
    assert len({style for style in FAMILY_STYLES.values()}) == len(FAMILY_STYLES)
    assert len({colour for colour, _ in FAMILY_STYLES.values()}) == len(FAMILY_STYLES)
    assert family_style("heuristic:patrol/pso") == family_style("heuristic:patrol")
    assert family_style("heuristic:dance") == family_style("heuristic:dance")  # hashed, not per-figure
    assert member_family({"sharing": "hyper"}, "learned") == "learned/hyper"
    assert member_family({"agents.sharing": "grouped"}, "learned") == "learned/grouped"
    assert member_family({}, "learned") == "learned"
    team = {"env.reward_mode": "team", "sharing": "shared", "sharing.critic.scheme": "shared"}
    assert member_family(team, "learned") == "learned/shared/team-reward"
    assert family_style("learned/shared/team-reward") != family_style("learned/shared")
    assert member_family({**team, "env.reward_mode": "role"}, "learned") == "learned/shared"
    assert member_family({"sharing": "hyper"}, "heuristic:patrol") == "heuristic:patrol"


def test_off_scale_only_takes_far_dominated_outliers():
    values = [41.9, 42.3, 43.1, 44.0, 44.5, 45.2, 76.0, 76.2]
    assert off_scale(values, [True] * 8) == {6, 7}
    assert off_scale(values, [True] * 6 + [False, True]) == set()  # a front member is never hidden
    assert off_scale([41.9, 43.6, 44.1, 46.2, 47.1, 48.5, 50.9], [True] * 7) == set()
    assert off_scale([1.0, 2.0], [True, True]) == set() == off_scale([1.0, 1.0, 1.0, 9.0], [True] * 4)
    assert off_scale([1.0, 1.1, 1.2, 9.0], [True] * 4) == {3}


def test_off_scale_takes_dominated_members_far_beyond_a_narrow_front():
    # the front spans 41.9-44.0 (extent 2.1): beyond 44.0 + 1.5 x 2.1 = 47.15 a dominated member is off scale
    values = [41.9, 42.4, 43.1, 44.0, 44.7, 45.4, 48.2, 51.6]
    front = [False, False, False, False, True, True, True, True]
    assert off_scale(values, front) == {6, 7}
    assert off_scale([41.9, 42.4, 43.1, 44.0, 44.7, 45.4, 47.0, 47.1], front) == set()  # near enough
    # a front of one member has no extent to measure by; never more than half the members go off scale
    assert off_scale([41.9, 60.0, 61.0, 62.0], [False, True, True, True]) == set()
    assert off_scale([41.9, 42.0, 50.0, 51.0, 52.0], [False, False, True, True, True]) == set()


def _summary(n_members: int = 6) -> dict:
    """A summary as `analyse` writes it, with two front groups and learned and hand-designed families."""
    members, fronts = {}, {}
    policies = [
        "learned",
        "learned",
        "learned",
        "heuristic:patrol",
        "heuristic:fixed_roles/pso",
        "heuristic:random",
    ]
    for group, shift in (("map=open", 0.0), ("map=rooms", 2.0)):
        labels = []
        for i in range(n_members):
            policy = policies[i % len(policies)]
            choices = {"env.map": group.split("=")[1], "policy": policy}
            if policy == "learned":
                choices["sharing"] = ["shared", "grouped", "hyper"][i % 3]
            label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in choices.items())
            far = policy == "heuristic:random"
            x = 80.0 if far else 42.0 + i + shift
            y = 120.0 if far else 90.0 - 9 * i
            members[label] = {
                "choices": choices,
                "policy": policy,
                "objectives": {
                    "info/mean_idleness": {"per_seed": [x, x], "mean": x, "low": x - 1, "high": x + 1},
                    "info/time_to_find": {
                        "per_seed": [y, y],
                        "mean": y,
                        "low": max(0.0, y - 5),
                        "high": y + 5,
                    },
                },
                "return_mean": 1.0,
                "balance": 0.5,
                "rank": 1,
                "contribution": 0.0,
            }
            labels.append(label)
        fronts[group] = {
            "members": labels,
            "front": labels[:5],
            "most_balanced": labels[2],
            "hypervolume": {"all": {"per_seed": [1.0, 2.0], "mean": 1.5, "low": 0.5, "high": 3.0}},
        }
    return {
        "objectives": ["info/mean_idleness", "info/time_to_find"],
        "bounds": [[0.0, None], [0.0, 190.0]],
        "seeds": [0, 1],
        "front_per": ["map"],
        "members": members,
        "fronts": fronts,
    }


def test_front_figure_names_every_member_in_its_panels_legend(tmp_path):
    summary = _summary()
    figure = plot_fronts(summary, "A title long enough to need wrapping " * 6)
    panels = [axis for axis in figure.axes if axis.get_legend() is not None]
    assert len(panels) == 2
    for axis, front in zip(panels, summary["fronts"].values()):
        texts = [t.get_text() for t in axis.get_legend().get_texts()]
        assert len(texts) == len(front["members"])
        assert any("learned/shared" in t for t in texts) and any("learned/hyper" in t for t in texts)
        assert any("random" in t and "off scale" in t for t in texts)  # the far random team is clipped
        # every member's number is written on the plot; the axis does not stretch to the random team
        numbers = {t.get_text() for t in axis.texts}
        assert {str(i + 1) for i in range(len(front["members"]))} <= numbers
        assert axis.get_xlim()[1] < 80 and axis.get_ylim()[0] >= 0
    # the colour of a family is the same in both panels and follows FAMILY_STYLES
    colour = FAMILY_STYLES["learned/grouped"][0]
    for axis in panels:
        handles = axis.get_legend().legend_handles
        texts = [t.get_text() for t in axis.get_legend().get_texts()]
        assert [h.get_color() for h, t in zip(handles, texts) if "learned/grouped" in t] == [colour]
    # every title, label and legend fits inside the figure as laid out (before any tight cropping)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    width, height = figure.bbox.width, figure.bbox.height
    boxes = [
        t.get_window_extent(renderer)
        for t in figure.findobj(lambda a: hasattr(a, "get_text"))
        if t.get_text()
    ]
    boxes += [axis.get_legend().get_window_extent(renderer) for axis in panels]
    assert all(b.x0 >= -1 and b.y0 >= -1 and b.x1 <= width + 1 and b.y1 <= height + 1 for b in boxes)
    save(figure, tmp_path / "front.png")
    assert png_array(figure).shape[2] == 3 and (tmp_path / "front.png").stat().st_size > 10_000


def test_numbers_keep_off_the_fronts_staircase_when_a_spot_as_near_is_free():
    """A number on a step of the staircase reads as the corner's: given the staircase, none sits on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from marl.pareto_plot import _place_numbers

    points = [(1.0, 9.0), (1.6, 8.7), (2.0, 8.0), (2.2, 7.5), (5.0, 5.0), (8.0, 2.0)]

    def numbers_on_the_staircase(staircase) -> int:
        figure = plt.figure(figsize=(4, 3), dpi=110)
        axis = figure.add_axes((0.1, 0.1, 0.8, 0.8), xlim=(0, 10), ylim=(0, 10))
        _place_numbers(figure, axis, points, [True] * len(points), None, staircase=staircase)
        renderer = figure.canvas.get_renderer()
        steps = [tuple(axis.transData.transform(p)) for p in points]
        hits = 0
        for box in (text.get_window_extent(renderer) for text in axis.texts):
            for (x0, y0), (x1, y1) in zip(steps, steps[1:]):
                hits += box.x0 < max(x0, x1) and box.x1 > min(x0, x1) and box.y0 < y0 < box.y1  # across
                hits += box.y0 < max(y0, y1) and box.y1 > min(y0, y1) and box.x0 < x1 < box.x1  # down
        plt.close(figure)
        return hits

    assert numbers_on_the_staircase(()) > 0  # the layout where numbers fall on it when it is not known
    assert numbers_on_the_staircase(points) == 0


def test_members_on_the_same_spot_share_one_label_that_names_them_all():
    summary = _summary()
    group = next(iter(summary["fronts"]))
    first, second = summary["fronts"][group]["members"][1:3]
    summary["members"][second]["objectives"] = summary["members"][first]["objectives"]  # the same team twice
    figure = plot_fronts(summary, "Two members on one spot", fronts=[group])
    axis = next(axis for axis in figure.axes if axis.get_legend() is not None)
    numbers = [t.get_text() for t in axis.texts if t.get_text()[0].isdigit()]
    joint = [label for label in numbers if "=" in label]
    assert len(joint) == 1 and len(joint[0].split("=")) == 2  # the two members, one label
    named = [int(n) for label in numbers for n in label.split("=")]
    assert sorted(named) == list(range(1, len(summary["fronts"][group]["members"]) + 1))  # each number once


def test_learned_teams_beside_hand_designed_ones_get_their_hypervolume_gain(tmp_path):
    """A front group with learned and hand-designed members reports the hand-designed members' hypervolume
    alone and what the learned ones add, paired by seed: 0 where a learned team is dominated, positive
    where it extends the front."""
    grid = "  - {sharing: [shared, hyper], policy: [learned]}\n  - {policy: [heuristic:patrol]}\n"
    sweep = load_pareto(_pareto_file(tmp_path, grid))
    members = expand(sweep)
    points = {  # per member: (idleness, time to find) on seeds 0 and 1
        "sharing=shared,policy=learned": [(30.0, 50.0), (32.0, 52.0)],  # extends the front: better idleness
        "sharing=hyper,policy=learned": [(50.0, 59.0), (50.0, 59.0)],  # dominated by patrol
        "policy=heuristic:patrol": [(40.0, 40.0), (40.0, 40.0)],
    }
    results = [
        {"member": label, "seed": seed, "objectives": list(points[label][seed]), "return_mean": 0.0,
         "train_frames": 0, "seconds": 1.0}
        for label in points for seed in (0, 1)
    ]  # fmt: skip
    front = analyse(sweep, members, results)["fronts"]["all"]
    hv = front["hypervolume"]
    assert hv["hand-designed"]["per_seed"] == [400.0, 400.0]  # (60 - 40) x (60 - 40)
    # the shared team adds (40 - 30) x (60 - 50) = 100 on seed 0 and (40 - 32) x (60 - 52) = 64 on seed 1
    assert front["learned_gain"]["per_seed"] == [100.0, 64.0]
    assert front["learned_gain"]["low"] < 82.0 < front["learned_gain"]["high"]
    assert front["front"] == ["sharing=shared,policy=learned", "policy=heuristic:patrol"]
    assert front["nearest_learned"] == {"member": "sharing=shared,policy=learned", "front_distance": 0.0}
    hyper = analyse(sweep, members, results)["members"]["sharing=hyper,policy=learned"]
    # (50, 59) against patrol's (40, 40) over ranges 31-50 and 40-59: min(10 / 19, 19 / 19)
    assert hyper["front_distance"] == pytest.approx(10 / 19)


SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "pareto"


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_pareto_file_loads_with_its_members_configs(path):
    """Each study in configs/pareto reads, every member's config validates, and its front keys are grid
    keys: a typo in a study of hours fails here rather than when its first member starts."""
    from marl.pareto_sweep import check_keys, load_pareto

    sweep = load_pareto(path)
    assert len(check_keys(sweep)) > 0 and sweep.objectives


def test_the_heading_study_is_the_velocity_study_under_heading_control():
    """The two 20M patrol/search studies differ in action mode (and in name, output and ledger), and the
    heading study adds the team-reward team on every front."""
    from marl.config import load_config
    from marl.pareto_sweep import expand, load_pareto

    velocity = load_pareto(SHIPPED / "patrol_search_learned_20m.yaml")
    heading = load_pareto(SHIPPED / "patrol_search_heading_20m.yaml")
    velocity_labels = [m.label for m in expand(velocity)]
    heading_members = expand(heading)
    added = [m for m in heading_members if m.label not in velocity_labels]
    assert [m.label for m in heading_members if m.label in velocity_labels] == velocity_labels
    assert len(added) == 4  # one per map and sensing
    for member in added:
        cfg = load_config(member.overrides)
        assert cfg.env.kwargs["reward_mode"] == "team" and cfg.sharing.critic.scheme == "shared"
    assert (velocity.seeds, velocity.episodes, velocity.eval_seed) == (
        heading.seeds,
        heading.episodes,
        heading.eval_seed,
    )
    assert velocity.ledger != heading.ledger
    modes = [
        load_config(expand(sweep)[0].overrides).env.kwargs["action_mode"] for sweep in (velocity, heading)
    ]
    assert modes == ["velocity", "heading"]


def test_the_bfloat16_check_is_the_heading_studys_team_reward_member_with_a_bfloat16_update():
    """patrol_search_heading_bf16.yaml trains one heading-study member again, differing only in the
    update's precision, on the same seeds and held-out episodes: its results compare seed by seed."""
    from marl.config import config_to_dict, load_config
    from marl.pareto_sweep import expand, load_pareto

    heading = load_pareto(SHIPPED / "patrol_search_heading_20m.yaml")
    check = load_pareto(SHIPPED / "patrol_search_heading_bf16.yaml")
    (member,) = expand(check)
    twin = next(
        m
        for m in expand(heading)
        if m.label == "map=open,n_sensing=3,reward_mode=team,sharing=shared,scheme=shared,policy=learned"
    )
    ours, theirs = (config_to_dict(load_config(m.overrides)) for m in (member, twin))
    assert ours["algorithm"].pop("precision") == "bfloat16"
    assert theirs["algorithm"].pop("precision") == "float32"
    assert ours == theirs
    same = ("seeds", "episodes", "eval_seed", "objectives", "reference", "bounds")
    assert [getattr(check, k) for k in same] == [getattr(heading, k) for k in same]
    assert check.ledger != heading.ledger


def test_a_learned_members_seconds_count_every_session_of_its_run(tmp_path, monkeypatch):
    """A learned member's seconds are its run's training time over every session that trained it (from its
    checkpoint) plus its evaluation, so a run interrupted and resumed in a later session is not recorded as
    costing only its last part."""
    import marl.evaluation
    import marl.pareto_sweep as pareto_sweep

    grid = (
        "  - {sharing: [shared], experiment.total_frames: [160], experiment.frames_per_batch: [80], "
        "env.num_envs: [2], algorithm.minibatch_size: [40], experiment.eval_every: [0], policy: [learned]}\n"
    )
    sweep = load_pareto(_pareto_file(tmp_path, grid))
    (member,) = pareto_sweep.expand(sweep)
    first = pareto_sweep.run_member(sweep, member, seed=0)  # trains, then evaluates
    assert first["train_frames"] == 160 and first["seconds"] > 0
    load_trained = marl.evaluation.load_trained

    def after_earlier_sessions(run, device="auto"):  # as if earlier sessions had trained it for 1000 s
        trainer, state, path = load_trained(run, device)
        return trainer, {**state, "wall_time": state["wall_time"] + 1000.0}, path

    monkeypatch.setattr(marl.evaluation, "load_trained", after_earlier_sessions)
    started = time.time()
    again = pareto_sweep.run_member(sweep, member, seed=0)  # finished: evaluated only
    assert again["objectives"] == first["objectives"]
    assert 1000.0 < again["seconds"] < 1000.0 + first["seconds"] + (time.time() - started)

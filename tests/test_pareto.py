"""Pareto fronts, hypervolume and balance on hand-made point sets, and `marl pareto` end to end."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from marl.cli import main
from marl.errors import ConfigError
from marl.pareto import balance, dominates, hypervolume, non_dominated
from marl.pareto_sweep import expand, load_pareto, run_pareto


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
    dominated; outputs, TensorBoard HParams and the result cache are written; a rerun runs nothing."""
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
    capsys.readouterr()
    assert main(["pareto", path]) == 0
    assert "0 to run" in capsys.readouterr().out


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

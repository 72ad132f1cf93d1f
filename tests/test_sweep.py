"""`marl sweep` (a resumable grid of runs) and `marl compare` (curves and tables over seeds)."""

import json
import math

import pytest

from marl.cli import main
from marl.compare import compare, group_runs, load_runs, separation_frames
from marl.errors import ConfigError, MarlError
from marl.intervals import mean_interval
from marl.sweep import expand, load_sweep, run_status, run_sweep


def _sweep_file(tmp_path, grid: str, base: str = "[experiment=smoke, metrics.episodes=2]") -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: tiny\nruns_dir: {tmp_path / 'sweeps'}\nparallel: 2\nbase: {base}\ngrid:\n{grid}")
    return str(path)


def test_sweep_trains_every_combination_once_and_compare_pools_seeds(tmp_path, capsys):
    path = _sweep_file(tmp_path, "  sharing: [shared, independent]\n  experiment.seed: [0, 1]\n")
    sweep = load_sweep(path)
    runs = expand(sweep)
    assert [r.label for r in runs] == [
        "sharing=shared,seed=0",
        "sharing=shared,seed=1",
        "sharing=independent,seed=0",
        "sharing=independent,seed=1",
    ]
    assert run_sweep(sweep) == 0
    assert all(run_status(sweep, r)[0] == "done" for r in runs)

    # a second call trains nothing; a run that lost its summary is resumed, not restarted
    first = sorted(p.name for p in sweep.directory.iterdir())
    (run_status(sweep, runs[0])[1] / "summary.json").unlink()
    assert run_status(sweep, runs[0])[0] == "partial"
    capsys.readouterr()
    assert run_sweep(sweep) == 0
    out = capsys.readouterr().out
    assert "partial sharing=shared,seed=0" in out and "1 to train" in out
    assert sorted(p.name for p in sweep.directory.iterdir()) == first
    assert run_status(sweep, runs[0])[0] == "done"

    summary = compare(sweep.directory, tmp_path / "report", window=1)
    groups = summary["groups"]
    assert set(groups) == {"sharing=shared", "sharing=independent"}  # the sweep's names, seed removed
    for entry in groups.values():
        assert entry["seeds"] == [0, 1] and all(entry["finished"])
        stats = entry["eval/return_mean"]
        assert len(stats["per_seed"]) == 2 and stats["low"] <= stats["mean"] <= stats["high"]
    assert groups["sharing=shared"]["team/agents/snd"]["mean"] < 1e-9  # one network: SND 0
    assert groups["sharing=independent"]["team/agents/snd"]["mean"] > 0
    assert (tmp_path / "report" / "curves.png").stat().st_size > 10_000
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| sharing=independent | 0,1 |" in table


def test_sweep_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "missing.yaml")
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("name: x\ngrid: {sharing: [shared]}\nparalel: 2\n")
    with pytest.raises(ConfigError, match="paralel"):
        load_sweep(bad_key)
    with pytest.raises(ConfigError, match="non-empty list"):
        load_sweep(_sweep_file(tmp_path, "  sharing: []\n"))
    # an invalid combination is reported with its label before anything trains
    with pytest.raises(ConfigError, match="run sharing=grouped.*needs sharing.roles"):
        load_sweep(_sweep_file(tmp_path, "  sharing: [shared, grouped]\n"))


def test_mean_interval():
    mean, low, high = mean_interval([1.0])  # one seed: no interval, so nothing can be called separated
    assert mean == 1.0 and math.isnan(low) and math.isnan(high)
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.303 * 1.0 / 3**0.5)


def test_compare_errors_and_cli(tmp_path, capsys):
    with pytest.raises(MarlError, match="No runs"):
        load_runs(tmp_path)
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "No runs" in capsys.readouterr().err
    assert main(["sweep", _sweep_file(tmp_path, "  sharing: [shared]\n"), "--dry-run"]) == 0
    assert "new     sharing=shared" in capsys.readouterr().out


def test_group_runs_names_groups_by_what_differs(tmp_path):
    for seed in (0, 1):
        for lr in (0.1, 0.2):
            run = tmp_path / f"r{seed}{lr}"
            run.mkdir()
            config = f"experiment: {{seed: {seed}, name: r}}\nalgorithm: {{lr: {lr}}}\n"
            (run / "config.yaml").write_text(config)
            row = {"frames": 10, "eval/return_mean": lr + seed}
            (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    groups = group_runs(load_runs(tmp_path))
    assert sorted(groups) == ["algorithm.lr=0.1", "algorithm.lr=0.2"]
    assert [r.seed for r in groups["algorithm.lr=0.2"]] == [0, 1]


def test_separation_frame_is_where_the_intervals_part_for_good(tmp_path):
    """Group sharing=b is above sharing=a from frame 30 on (after a crossing at 20); sharing=c never is."""
    curves = {"a": [0, 0, 0, 0, 0], "b": [0, 5, 0, 5, 5], "c": [0, 0, 0, 0, -1]}
    for scheme, values in curves.items():
        for seed in (0, 1, 2):
            run = tmp_path / f"{scheme}{seed}"
            run.mkdir()
            name = f"seed={seed},sharing={scheme}"
            config = f"experiment: {{seed: {seed}, name: '{name}'}}\nmodel: {{x: {scheme}}}\n"
            (run / "config.yaml").write_text(config)
            rows = [{"frames": 10 * i, "eval/return_mean": v + 0.1 * seed} for i, v in enumerate(values)]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    groups = group_runs(load_runs(tmp_path))
    assert separation_frames(groups, "sharing=a", "eval/return_mean") == {"sharing=b": 30, "sharing=c": None}
    summary = compare(tmp_path, tmp_path / "out", ("eval/return_mean",), baseline="sharing=a")
    assert summary["groups"]["sharing=b"]["separated_from_baseline_at"] == 30
    assert "| 30 |" in (tmp_path / "out" / "table.md").read_text()


def test_paired_difference_removes_the_seed_effect(tmp_path):
    """Seeds differ by 10 (their evaluation episodes), scheme b is always 1 above a: unpaired intervals
    overlap, the paired difference is exactly +1 with no spread; its mean over training counts the late
    start."""
    curves = {"a": [0, 0, 0, 0], "b": [0, 0, 1, 1]}
    for scheme, values in curves.items():
        for seed in (0, 1, 2):
            run = tmp_path / f"{scheme}{seed}"
            run.mkdir()
            name = f"seed={seed},sharing={scheme}"
            config = f"experiment: {{seed: {seed}, name: '{name}'}}\nm: {{x: {scheme}}}\n"
            (run / "config.yaml").write_text(config)
            rows = [{"frames": 10 * i, "eval/return_mean": v + 10.0 * seed} for i, v in enumerate(values)]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = compare(tmp_path, tmp_path / "out", ("eval/return_mean",), window=2, baseline="sharing=a")
    b = summary["groups"]["sharing=b"]
    assert b["eval/return_mean"]["low"] < summary["groups"]["sharing=a"]["eval/return_mean"]["high"]
    assert b["minus_baseline"]["final"] == {"per_seed": [1.0, 1.0, 1.0], "mean": 1.0, "low": 1.0, "high": 1.0}
    assert b["minus_baseline"]["training_mean"]["mean"] == pytest.approx(0.5)
    assert "minus_baseline" not in summary["groups"]["sharing=a"]
    assert "+1.000 [+1.000, +1.000]*; +0.500" in (tmp_path / "out" / "table.md").read_text()


def test_sigterm_stops_a_run_with_a_checkpoint_and_it_resumes(tmp_path):
    """What a scheduler or `marl sweep` sends: the run checkpoints, exits 130, and `resume=` continues it."""
    import signal
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "marl",
        "train",
        "experiment=smoke",
        "experiment.total_frames=600000",
        "experiment.progress=false",
        "metrics.every=0",
        f"experiment.runs_dir={tmp_path}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Continue with: marl train resume=" in output
    run = next(tmp_path.iterdir())
    assert list((run / "checkpoints").glob("*.pt"))


def test_curve_smoothing_is_a_trailing_mean_per_run():
    from pathlib import Path

    from marl.compare import Run, curve

    def run(values):
        rows = [{"frames": 10 * (i + 1), "m": v} for i, v in enumerate(values)]
        return Run(Path("."), {"experiment.seed": 0}, rows, None)

    frames, stats = curve([run([0.0, 2.0, 4.0, 6.0]), run([2.0, 2.0, 2.0, 2.0])], "m", smooth=2)
    assert frames == [10, 20, 30, 40]
    # run 1 smoothed: 0, 1, 3, 5; run 2: 2, 2, 2, 2 -> means 1, 1.5, 2.5, 3.5
    assert [s[0] for s in stats] == [1.0, 1.5, 2.5, 3.5]


def test_curves_take_the_front_figures_family_colours_where_each_group_is_one_family():
    from pathlib import Path

    from marl.compare import Run, _family_colours
    from marl.pareto_plot import FAMILY_STYLES

    def group(scheme, reward_mode="role", lr=1e-3):
        config = {"sharing.actor.scheme": scheme, "env.kwargs.reward_mode": reward_mode, "algorithm.lr": lr}
        return [Run(Path("."), config, [], None)]

    groups = {"a": group("hyper"), "b": group("grouped"), "c": group("shared"), "d": group("shared", "team")}
    legend = {label: label for label in groups}
    assert _family_colours(groups, legend) == {
        "a": FAMILY_STYLES["learned/hyper"][0],
        "b": FAMILY_STYLES["learned/grouped"][0],
        "c": FAMILY_STYLES["learned/shared"][0],
        "d": FAMILY_STYLES["learned/shared/team-reward"][0],
    }
    # two learning rates of one scheme share a family: no family colours (the palette tells them apart)
    assert _family_colours({"x": group("hyper"), "y": group("hyper", lr=5e-4)}, {"x": "x", "y": "y"}) is None
    # one name over several panels (legend without the facet's setting) is one family, not two
    assert _family_colours({"x1": group("hyper"), "x2": group("hyper")}, {"x1": "x", "x2": "x"}) == {
        "x": FAMILY_STYLES["learned/hyper"][0]
    }


def test_curves_split_into_one_column_per_combination_of_facet_settings(tmp_path):
    import struct

    def png_width(path):
        return struct.unpack(">I", path.read_bytes()[16:20])[0]

    for map_name in ("open", "rooms"):
        for sensing in (3, 6):
            for scheme in ("hyper", "grouped"):
                run = tmp_path / f"{map_name}{sensing}{scheme}"
                run.mkdir()
                name = f"map={map_name},n_sensing={sensing},sharing={scheme},seed=0"
                config = {
                    "experiment": {"seed": 0, "name": name},
                    "env": {"map": map_name, "n_sensing": sensing},
                    "sharing": {"scheme": scheme},
                }
                (run / "config.yaml").write_text(json.dumps(config))
                rows = [{"frames": 10 * i, "eval/return_mean": float(i)} for i in range(3)]
                (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    compare(tmp_path, tmp_path / "out", ("eval/return_mean",), facet=("env.map", "env.n_sensing"))
    assert png_width(tmp_path / "out" / "curves.png") == round(5.5 * 4 * 110)  # open/rooms x 3/6 sensing
    compare(tmp_path, tmp_path / "one", ("eval/return_mean",), facet="env.map")
    assert png_width(tmp_path / "one" / "curves.png") == round(5.5 * 2 * 110)
    with pytest.raises(MarlError, match="setting env.speed to split.*differ between these runs: env.map"):
        compare(tmp_path, tmp_path / "bad", ("eval/return_mean",), facet=("env.map", "env.speed"))
    with pytest.raises(MarlError, match="has finished"):  # none wrote summary.json
        compare(tmp_path, tmp_path / "done", ("eval/return_mean",), finished_only=True)
    (tmp_path / "open3hyper" / "summary.json").write_text(json.dumps({"wall_time_s": 1.0, "hardware": {}}))
    summary = compare(tmp_path, tmp_path / "done", ("eval/return_mean",), finished_only=True)
    assert list(summary["groups"]) == ["map=open,n_sensing=3,sharing=hyper"]


def test_sweep_whose_env_cannot_be_built_fails_before_training(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nbase: [experiment=smoke, env.n_agents=2, env.agents_with_same_goal=2]\n"
        "grid:\n  experiment.seed: [0]\n"
    )
    with pytest.raises(ConfigError, match="run seed=0: the environment cannot be built"):
        load_sweep(bad)


def test_learning_speed_finds_the_first_frame_a_smoothed_curve_reaches_a_level():
    from marl.benchmarks.learning_speed import first_frame_at

    points = [(100, 0.0), (200, 3.0), (300, 3.0), (400, 4.0)]
    assert first_frame_at(points, 3.0, window=1) == 200
    assert first_frame_at(points, 3.0, window=2) == 300  # (3 + 3) / 2 reaches it; (0 + 3) / 2 does not
    assert first_frame_at(points, 3.9, window=3) is None  # (3 + 3 + 4) / 3 < 3.9

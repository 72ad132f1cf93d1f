"""The `marl` command line: help, config errors (exit 2, one paragraph, no traceback), train/eval."""

import contextlib
import io
import subprocess
import sys

import pytest

from marl.cli import main


def test_help_explains_commands(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for word in ("train", "eval", "config", "key=value"):
        assert word in out


def test_train_help_lists_examples_and_groups(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "resume=" in out and "sharing=" in out and "hyper" in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "algorithm.lrr=1"], "Did you mean 'algorithm.lr'"),
        (["train", "sharing=hyperr"], "hyper"),
        (["train", "algorithm.lr=abc"], "algorithm.lr"),
        (["config", "show", "env.num_envs=7"], "frames_per_batch"),
        (["train", "env=vmas/navigaton"], "navigation"),
    ],
)
def test_bad_config_exits_2_with_a_paragraph(capsys, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in " ".join(err.split())  # wrapped to the terminal
    assert "Traceback" not in err


def test_bad_config_from_a_real_process_has_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "marl", "train", "experiment.sed=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "experiment.seed" in result.stderr and "Traceback" not in result.stderr


def test_config_show_prints_resolved_yaml(capsys):
    assert main(["config", "show", "sharing=hyper", "env.n_agents=5"]) == 0
    out = capsys.readouterr().out
    assert "scheme: hyper" in out and "n_agents: 5" in out


def test_config_show_prints_the_population_commands_configs(capsys):
    import yaml

    assert main(["config", "show", "population", "preset=matrix_game_xpmin", "population.size=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["experiment"]["name"] == "matrix_game_xpmin" and shown["population"]["size"] == 3
    assert shown["env"]["kwargs"] == {"k": 4, "horizon": 1}
    assert main(["config", "show", "generalist", "model.recurrent_size=16"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["recurrent_size"] == 16 and shown["algorithm"]["minibatch_size"] == 512
    assert main(["config", "show", "extract", "method=rl"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["extract"]["method"] == "rl" and shown["algorithm"]["lr"] is None
    assert main(["config", "show", "population", "population.sise=4"]) == 2
    err = capsys.readouterr().err
    assert "Allowed keys of 'population'" in err and "Did you mean 'population.size'" in err


def test_unknown_scenario_kwarg_is_a_config_error(capsys, tmp_path):
    assert main(["train", f"experiment.runs_dir={tmp_path}", "env.n_agentz=3"]) == 2
    assert "n_agentz" in capsys.readouterr().err


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One short `marl train experiment=smoke` run shared by the tests below: (run dir, its stdout)."""
    runs = tmp_path_factory.mktemp("runs")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            main(["train", "experiment=smoke", f"experiment.runs_dir={runs}", "experiment.progress=false"])
            == 0
        )
    return next(runs.iterdir()), out.getvalue()


def test_train_prints_where_its_logs_are(smoke_run):
    run_dir, out = smoke_run
    assert f"tensorboard --logdir {run_dir}" in out
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_eval_prints_table_and_renders(smoke_run, capsys, tmp_path):
    run_dir, _ = smoke_run
    gif = tmp_path / "rollout.gif"
    assert main(["eval", str(run_dir), "--episodes", "3", "--render", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "team (mean)" in out and "agent_0" in out and "3 deterministic episodes" in out
    assert gif.stat().st_size > 0


def test_eval_of_missing_run_is_a_clear_error(capsys, tmp_path):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_reproduces_the_runs_own_final_evaluation(smoke_run):
    from marl.evaluation import evaluate_checkpoint
    from marl.run_logger import read_metrics

    run_dir, _ = smoke_run
    last = read_metrics(run_dir)[-1]
    metrics = evaluate_checkpoint(run_dir, int(last["eval/episodes"]))
    assert metrics["return_mean"] == pytest.approx(last["eval/return_mean"], abs=1e-6)

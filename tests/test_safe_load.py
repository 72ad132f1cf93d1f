"""Loading a run never executes code that the run's files name, unless the user wrote the run or trusts it.

A payload (an `env.entry_point` whose module writes a marker file when imported and whose function writes
another when called, or a `ray.address`) is planted in the saved config of otherwise ordinary runs, which
are then re-saved without this user's signature, as a run from someone else would be. Every command that
turns a saved config into an env or a policy must refuse it, say what would have run, and run nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from marl import trust
from marl.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from marl.cli import main
from marl.config import load_config
from marl.population.config import load_population_config
from marl.population.xpmin import train as train_population
from marl.safe_load import SIGNATURE_KEY, UntrustedRunError, code_references
from marl.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = ["experiment.progress=false", "experiment.threads=1"]


@pytest.fixture(autouse=True)
def no_trust(monkeypatch):
    monkeypatch.delenv("MARL_TRUST", raising=False)
    trust.trust_everything(False)
    yield
    trust.trust_everything(False)
    os.environ.pop("MARL_TRUST", None)  # `--trust` sets it for the processes a command starts


@pytest.fixture(scope="module")
def own_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny `marl train` run (VMAS) and a tiny population run, written (and signed) by this user."""
    root = tmp_path_factory.mktemp("own")
    team = train(load_config(["experiment=smoke", "metrics.every=0", f"experiment.runs_dir={root}", *QUIET]))
    population = train_population(
        load_population_config(
            [
                "preset=matrix_game_xpmin",
                "experiment.iterations=2",
                "experiment.eval_every=0",
                "population.size=2",
                f"experiment.runs_dir={root}",
                *QUIET,
            ]
        )
    )
    return {"team": team, "population": population}


@pytest.fixture
def payload(tmp_path, monkeypatch) -> tuple[str, Path]:
    """An importable module whose import and whose `boom` each leave a marker: -> (entry point, folder)."""
    name = f"marl_payload_{tmp_path.name.replace('-', '_')}"
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(markers)!r}, 'imported').write_text('payload module imported')\n"
        "def boom(**kwargs):\n"
        f"    Path({str(markers)!r}, 'called').write_text(repr(kwargs))\n"
        "    raise RuntimeError('payload ran')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:boom", markers
    sys.modules.pop(name, None)


def plant(run: Path, destination: Path, change) -> Path:
    """A copy of `run` whose checkpoints' configs were edited by `change(config)` and saved unsigned."""
    copy = destination / f"foreign-{run.name}"
    shutil.copytree(run, copy)
    for path in list_checkpoints(copy):
        state = torch.load(path, weights_only=True)
        change(state["config"])
        state.pop(SIGNATURE_KEY, None)
        torch.save(state, path)
    return copy


def entry_point_payload(entry_point: str, seats: bool = False):
    def change(config: dict) -> None:
        config["env"].update(name="pettingzoo", entry_point=entry_point, kwargs={"command": "touch /tmp/x"})
        if seats:
            config["env"]["seats"] = ["left", "right"]

    return change


def _refused(capsys, args: list[str], markers: Path, *needles: str) -> str:
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Refusing to load" in err and "--trust" in err and "MARL_TRUST=1" in err, err
    for needle in needles:
        assert needle in err, err
    assert not any(markers.iterdir()), "the payload ran"
    return err


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "{team}"],
        ["eval", "{team}", "--episodes", "2"],
        ["metrics", "{team}", "--episodes", "2"],
        ["train", "resume={team}"],
        ["train", "experiment=smoke", "collector.frozen={{agent_0: {team}}}", "experiment.runs_dir={out}"],
    ],
    ids=["eval", "eval-episodes", "metrics", "resume", "frozen-partner"],
)
def test_team_run_naming_code_is_refused(capsys, own_runs, payload, tmp_path, command):
    entry_point, markers = payload
    foreign = plant(own_runs["team"], tmp_path, entry_point_payload(entry_point))
    args = [word.format(team=foreign, out=tmp_path / "out") for word in command]
    _refused(capsys, args, markers, entry_point, "'command': 'touch /tmp/x'", "config.env.entry_point")


QUICK_RUN = ("experiment.iterations=1", "experiment.runs_dir={out}", "experiment.progress=false")


@pytest.mark.parametrize(
    "command",
    [
        ["population", "evaluate", "{pop}", "--episodes", "2", "--no-tensorboard"],
        ["population", "evaluate", "{own}", "--episodes", "2", "--specialists", "{pop}", "--no-tensorboard"],
        ["population", "extract", "{pop}", *QUICK_RUN],
        ["population", "generalist", "{pop}", *QUICK_RUN],
        ["population", "train", "resume={pop}"],
    ],
    ids=["evaluate", "specialists", "extract", "generalist", "resume"],
)
def test_population_run_naming_code_is_refused(capsys, own_runs, payload, tmp_path, command):
    entry_point, markers = payload
    foreign = plant(own_runs["population"], tmp_path, entry_point_payload(entry_point, seats=True))
    own = own_runs["population"]
    args = [word.format(pop=foreign, own=own, out=tmp_path / "out") for word in command]
    _refused(capsys, args, markers, entry_point)


def test_a_ray_address_in_a_foreign_run_is_refused(capsys, own_runs, tmp_path):
    def change(config: dict) -> None:
        config["ray"]["address"] = "203.0.113.7:6379"

    foreign = plant(own_runs["team"], tmp_path, change)
    markers = tmp_path / "none"
    markers.mkdir()
    _refused(capsys, ["train", f"resume={foreign}"], markers, "203.0.113.7:6379", "join the Ray cluster")


def test_foreign_runs_without_code_references_load(capsys, own_runs, tmp_path):
    foreign = plant(own_runs["team"], tmp_path, lambda config: None)  # unsigned, but only a VMAS env
    assert SIGNATURE_KEY not in torch.load(list_checkpoints(foreign)[-1], weights_only=True)
    assert main(["eval", str(foreign), "--episodes", "2"]) == 0


def test_own_runs_load_without_a_flag_and_trust_allows_foreign_ones(own_runs, payload, tmp_path, monkeypatch):
    entry_point, markers = payload
    foreign = plant(own_runs["team"], tmp_path, entry_point_payload(entry_point))
    with pytest.raises(UntrustedRunError):
        load_checkpoint(foreign)
    # re-saved by this user (what `marl train` does with a run it writes): signed, so it loads
    state = torch.load(list_checkpoints(foreign)[-1], weights_only=True)
    mine = tmp_path / "mine"
    save_checkpoint(mine, state, keep=1)
    assert load_checkpoint(mine)["config"]["env"]["entry_point"] == entry_point
    # another user's key does not verify
    monkeypatch.setenv("MARL_TRUST_KEY", str(tmp_path / "someone_else"))
    with pytest.raises(UntrustedRunError):
        load_checkpoint(mine)
    # --trust: the user vouches for the run, and the entry point is used (here: the payload runs)
    # (the factory's error is reported as a clear env-factory error: exit 2)
    assert main(["eval", str(foreign), "--episodes", "1", "--trust"]) == 2
    assert (markers / "called").exists()


def test_edited_code_references_break_the_signature(own_runs, tmp_path):
    state = load_checkpoint(own_runs["team"])
    state["config"]["env"].update(name="pettingzoo", entry_point="tests.pz_envs:hetero_team")
    save_checkpoint(tmp_path, state, keep=1)
    assert load_checkpoint(tmp_path)["config"]["env"]["entry_point"] == "tests.pz_envs:hetero_team"
    path = list_checkpoints(tmp_path)[-1]
    edited = torch.load(path, weights_only=True)
    edited["config"]["env"]["kwargs"] = {"command": "id"}  # same entry point, other arguments
    torch.save(edited, path)
    with pytest.raises(UntrustedRunError, match="'command': 'id'"):
        load_checkpoint(path)


def test_code_references_are_found_wherever_a_checkpoint_holds_a_config():
    state = {
        "config": {"env": {"entry_point": None}, "ray": {"address": None}},
        "extraction": {"teacher_config": {"env": {"entry_point": "a.b:c", "kwargs": {"x": 1}}}},
        "partners": {"config": {"env": {"entry_point": "d:e"}}, "weights": torch.zeros(3)},
        "more": [{"ray": {"address": "auto"}}],
    }
    found = {ref.where: ref.what for ref in code_references(state)}
    assert found == {
        "extraction.teacher_config.env.entry_point": "import and call a.b:c(**{'x': 1})",
        "partners.config.env.entry_point": "import and call d:e(**{})",
        "more.0.ray.address": "join the Ray cluster at 'auto' and unpickle what it sends",
    }

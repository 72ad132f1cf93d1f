"""Faults end with exit status 2, a paragraph naming cause and fix, no half-written files, and a run that
resumes: unwritable, file-blocked or full disks, torn metrics rows, divergence (not only NaN)."""

from __future__ import annotations

import errno
import math
import warnings
from pathlib import Path

import pytest
import torch

from marl import storage
from marl.checkpoint import list_checkpoints, load_checkpoint
from marl.cli import main
from marl.config import load_config
from marl.health import KL_LIMIT, PARAMETER_LIMIT, DivergenceError, check_health
from marl.run_logger import METRICS_FILE, read_metrics
from marl.training import build_trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = ["experiment=smoke", "experiment.progress=false", "experiment.threads=1", "metrics.every=0"]


def _paragraph(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return " ".join(err.split())


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_runs_dir_that_is_a_file_is_refused_before_anything_starts(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    assert main(["train", *SMOKE, f"experiment.runs_dir={blocker}/runs"]) == 2
    assert "is a file, not a folder" in _paragraph(capsys)
    assert main(["population", "train", "preset=matrix_game_xpmin", f"experiment.runs_dir={blocker}"]) == 2
    assert "is a file, not a folder" in _paragraph(capsys)


def test_an_unwritable_runs_dir_is_refused(tmp_path, capsys, monkeypatch):
    # the tests may run as root, who may write anywhere: the refusal the OS would give is simulated
    monkeypatch.setattr(storage.os, "access", lambda path, mode: False)
    assert main(["train", *SMOKE, f"experiment.runs_dir={tmp_path}"]) == 2
    assert "you may not write to" in _paragraph(capsys)


def test_a_write_refused_by_the_os_mid_command_is_one_paragraph(tmp_path, capsys, monkeypatch):
    """An OSError the pre-check cannot foresee (a read-only mount, a permission changed under the run)."""

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["train", *SMOKE, f"experiment.runs_dir={tmp_path / 'runs'}"]) == 2
    message = _paragraph(capsys)
    assert "you may not write there" in message and "experiment.runs_dir" in message


def test_a_full_disk_stops_with_the_last_checkpoint_and_no_partial_files(tmp_path, capsys, monkeypatch):
    writes = {"n": 0}
    real_write = storage.write_bytes

    def fill_up_after_one_checkpoint(handle, data):
        writes["n"] += 1
        if writes["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(handle, data)

    monkeypatch.setattr(storage, "write_bytes", fill_up_after_one_checkpoint)
    args = [*SMOKE, "experiment.total_frames=2400", f"experiment.runs_dir={tmp_path}"]
    assert main(["train", *args]) == 2
    message = _paragraph(capsys)
    (run,) = tmp_path.iterdir()
    assert "the disk (or your quota) is full" in message and "Free some space" in message
    assert "iteration 2 could not be saved" in message.lower() and "iter_0000001.pt" in message
    assert f"marl train resume={run}" in message
    assert _leftovers(tmp_path) == []
    assert [p.name for p in list_checkpoints(run)] == ["iter_0000001.pt"]

    monkeypatch.setattr(storage, "write_bytes", real_write)  # space freed: the advised resume works
    assert main(["train", f"resume={run}"]) == 0
    assert load_checkpoint(run)["iteration"] == 4
    assert [row["iteration"] for row in read_metrics(run)] == [1, 2, 3, 4]


def test_resume_drops_a_torn_last_metrics_row_with_a_warning(tmp_path):
    cfg = load_config([*SMOKE, "experiment.total_frames=1800", f"experiment.runs_dir={tmp_path}"])
    run = train(cfg, stop_after=2)
    with (run / METRICS_FILE).open("a") as f:
        f.write('{"iteration": 3, "frames": 18')  # killed mid-write
    with pytest.warns(RuntimeWarning, match="torn last line"):
        train(cfg, resume=run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = read_metrics(run)  # the file is whole again
    assert [row["iteration"] for row in rows] == [1, 2, 3]


def test_divergence_without_nan_stops_and_the_advised_smaller_lr_resumes(tmp_path, capsys):
    args = [*SMOKE, "experiment.total_frames=1800", f"experiment.runs_dir={tmp_path}"]
    assert main(["train", *args, "algorithm.lr=1e9"]) == 2
    message = _paragraph(capsys)
    (run,) = tmp_path.iterdir()
    assert "Training diverged in iteration 1" in message and "algorithm.lr=1e+08" in message
    assert "Saved iteration 0" in message and f"marl train resume={run}" in message

    assert main(["train", f"resume={run}", "algorithm.lr=3e-4", "algorithm.max_grad_norm=0.5"]) == 0
    out = capsys.readouterr().out
    assert "algorithm.lr: 1000000000.0 -> 0.0003" in out and "algorithm.max_grad_norm: 1.0 -> 0.5" in out
    state = load_checkpoint(run)
    assert state["iteration"] == 3 and state["config"]["algorithm"]["lr"] == 3e-4
    saved = state["optimizer"]  # one Adam's state dict, or one per network ({"actor": ..., "critic": ...})
    adams = [saved] if "param_groups" in saved else list(saved.values())
    rates = [group["lr"] for adam in adams for group in adam["param_groups"]]
    assert rates and all(rate == pytest.approx(3e-4) for rate in rates)
    assert all(p.abs().max() < PARAMETER_LIMIT for p in state["model"].values() if p.is_floating_point())


def test_resume_still_refuses_changes_to_what_is_trained(tmp_path, capsys):
    run = train(load_config([*SMOKE, f"experiment.runs_dir={tmp_path}"]), stop_after=1)
    assert main(["train", f"resume={run}", "algorithm.gamma=0.5"]) == 2
    message = _paragraph(capsys)
    assert "algorithm.gamma: 0.99 -> 0.5" in message and "algorithm.lr" in message


def _trainer_after_one_update():
    trainer = build_trainer(load_config(SMOKE))
    batch, _ = trainer.collect()
    return trainer, batch


def test_health_check_bounds():
    trainer, batch = _trainer_after_one_update()
    sane = {"value_loss": 0.5, "approx_kl": 0.01, "actor_grad_norm": 3.0, "critic_grad_norm": 2.0}
    check_health(trainer, batch, sane)  # nothing to report

    for stats, needle in [
        ({**sane, "approx_kl": KL_LIMIT * 2}, "approximate KL"),
        ({**sane, "value_loss": 1e18}, "value loss reached 1e\\+18"),
        ({**sane, "actor_grad_norm": math.inf}, "actor grad norm before clipping was inf"),
    ]:
        with pytest.raises(DivergenceError, match=needle):
            check_health(trainer, batch, stats)

    first = next(trainer.model.parameters())
    with torch.no_grad():
        first.mul_(0).add_(6e9)
    with pytest.raises(DivergenceError, match="reached a magnitude of 6e\\+09"):
        check_health(trainer, batch, sane)
    with torch.no_grad():
        first.fill_(math.nan)
    with pytest.raises(DivergenceError, match="no longer finite"):
        check_health(trainer, batch, sane)


def test_value_loss_bound_follows_the_reward_scale():
    """A loss that is enormous for rewards near 1 is ordinary for rewards near 1e6: no false alarm."""
    trainer, batch = _trainer_after_one_update()
    for key in list(batch["next"].keys()):
        if ("next", key, "reward") in batch.keys(True):
            batch["next", key, "reward"] = batch["next", key, "reward"].sign() * 1e6 + 1e6
    check_health(trainer, batch, {"value_loss": 1e18, "approx_kl": 0.01})

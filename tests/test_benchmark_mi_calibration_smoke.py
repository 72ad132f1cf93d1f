"""The MI calibration benchmark end to end in quick mode (two tasks, tiny sizes), in a temporary directory."""

import json

import pytest

from marl.benchmarks import mi_calibration

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_calibration_writes_summary_runs_and_plot(tmp_path):
    out = tmp_path / "mi.json"
    tasks = "gauss-1x1-r0.75,independent-gauss-5x5"
    quick = ["--quick", "--tasks", tasks, "--threads", "1", "--out", str(out)]
    results = mi_calibration.main([*quick, "--discrete-reps", "2"])
    data = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert set(data) >= {"hardware", "config", "runs", "summary", "discrete", "targets"}
    assert data["config"]["mode"] == "quick" and data["hardware"]["torch_threads"] == 1
    runs = data["runs"]
    assert len(runs) == 4 and {r["task"] for r in runs} == set(tasks.split(","))
    for r in runs:
        assert r["low"] <= r["estimate"] <= r["high"] or r["estimate"] < 0 <= r["low"]
        assert r["seconds"] > 0 and r["estimator"] and isinstance(r["reliable"], bool)
    summary = results["summary"]["auto"]
    assert summary["tasks"] == 2 and 0 <= summary["coverage"] <= 1 and summary["mae"] < 0.2
    for n in ("200", "500", "2000"):
        study = data["discrete"][n]
        assert len(study["per_table"]) == 27 and 0 <= study["coverage"] <= 1
        assert study["width"] > 0 and study["old_width"] > 0
    # resuming keeps the finished runs and adds nothing new
    again = mi_calibration.main([*quick, "--resume", "--discrete-reps", "0"])
    assert len(again["runs"]) == 4 and again["discrete"] == data["discrete"]

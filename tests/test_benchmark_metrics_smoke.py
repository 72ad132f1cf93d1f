"""The metrics benchmark end to end in quick mode (tiny sizes), written to a temporary directory."""

import json
import math

import pytest

pytest.importorskip("sklearn")

from marl.benchmarks import metrics  # noqa: E402


def test_quick_metrics_benchmark_writes_sane_json_and_plot(tmp_path):
    out = tmp_path / "bench" / "metrics.json"
    results = metrics.main(["--quick", "--repeats", "1", "--out", str(out)])

    data = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert data == json.loads(json.dumps(results))
    assert set(data) == {"hardware", "config", "cases", "goals"}
    assert data["config"]["mode"] == "quick" and data["config"]["sizes"] == metrics.QUICK
    hw = data["hardware"]
    assert hw["cores"] >= 1 and hw["torch_threads"] >= 1 and hw["torch"] and hw["scikit_learn"] and hw["cpu"]

    cases = data["cases"]
    assert set(cases) == {"discrete_mi", "ksg", "snd"}
    for case in cases.values():
        assert case["ours_s"] > 0 and case["reference_s"] > 0
        assert case["speedup"] == pytest.approx(case["reference_s"] / case["ours_s"])
        assert math.isfinite(case["ours"]) and math.isfinite(case["reference_value"])

    discrete = cases["discrete_mi"]
    assert discrete["n"] == metrics.QUICK["discrete_n"] and discrete["ours_miller_madow_s"] > 0
    assert discrete["abs_diff_vs_reference"] < 1e-9  # plug-in == scikit-learn
    assert discrete["ours"] == pytest.approx(discrete["truth"], abs=0.01)  # log 4
    assert discrete["ours_miller_madow"] < discrete["ours"]

    ksg = cases["ksg"]
    assert ksg["n"] == metrics.QUICK["ksg_n"] and ksg["ours_1_thread_s"] > 0
    assert ksg["abs_diff_vs_reference"] < 1e-6
    assert ksg["ours"] == pytest.approx(ksg["truth"], abs=0.05)

    assert cases["snd"]["rel_diff_vs_reference"] < 1e-4

    assert set(data["goals"]) == {"discrete_speedup", "ksg_speedup", "snd_seconds"}
    assert all(isinstance(goal["pass"], bool) and goal["value"] > 0 for goal in data["goals"].values())

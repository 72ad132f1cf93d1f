"""The throughput benchmark end to end in quick mode (tiny sizes, no BenchMARL)."""

import json

import pytest

from marl.benchmarks import throughput


def test_quick_benchmark_writes_json_and_plot(tmp_path):
    results = throughput.main(["--quick", "--skip-benchmarl", "--out", str(tmp_path)])

    data = json.loads((tmp_path / "throughput.json").read_text())
    assert (tmp_path / "throughput.png").stat().st_size > 0
    assert set(data) >= {"hardware", "config", "schemes", "scaling", "ippo", "benchmarl", "ratios"}
    assert data["config"]["mode"] == "quick"
    assert data["hardware"]["torch"] and data["hardware"]["cores"] >= 1

    assert [m["scheme"] for m in data["schemes"]] == list(throughput.SCHEMES)
    assert set(data["scaling"]) == set(throughput.SCALING_SCHEMES)
    measurements = data["schemes"] + [m for rows in data["scaling"].values() for m in rows]
    for m in measurements:
        assert m["fps"] > 0, m
        assert m["collection_s"] > 0 and m["training_s"] > 0
        assert m["parameters_total"] > 0
    for rows in data["scaling"].values():
        assert [m["n_agents"] for m in rows] == list(throughput.QUICK.scaling_agents)
    for scheme in ("shared", "independent"):  # timed like BenchMARL times itself
        style = next(m for m in data["schemes"] if m["scheme"] == scheme)["benchmarl_style"]
        assert style["iterations"] == 4 and style["fps"] > 0

    assert data["benchmarl"]["skipped"] and data["benchmarl"]["comparison"] == {}
    assert set(data["ratios"]) == {"mappo", "ippo"}
    for ratios in data["ratios"].values():
        assert set(ratios["time_per_frame_vs_shared"]) == {"independent", "hyper"}
        assert all(value > 0 for value in ratios["time_per_frame_vs_shared"].values())
        assert set(ratios["pass"]) == set(ratios["targets"])
    # MAPPO: an independent centralised critic does n times a shared one's work; IPPO: the same work
    mappo, ippo = data["ratios"]["mappo"], data["ratios"]["ippo"]
    assert mappo["work_per_frame_vs_shared"]["independent"] > 1.0
    assert ippo["work_per_frame_vs_shared"]["independent"] == pytest.approx(1.0, rel=0.01)
    assert results["ratios"] == data["ratios"]


def test_quick_scale_benchmark_splits_iterations_into_phases(tmp_path):
    from marl.benchmarks import scale

    args = ["--quick", "--schemes", "shared", "hyper", "--threads", "1", "--out", str(tmp_path)]
    assert scale.main(args) == 0
    data = json.loads((tmp_path / "scale.json").read_text())
    assert (tmp_path / "scale.png").stat().st_size > 0
    assert data["config"]["quick"] and data["benchmarl"]["skipped"]
    assert [(r["scheme"], r["num_envs"]) for r in data["ours"]] == [
        ("shared", 4), ("hyper", 4), ("shared", 8), ("hyper", 8)
    ]  # fmt: skip
    for row in data["ours"]:
        assert set(row["phases_s"]) == set(scale.PHASES)
        assert all(value >= 0 for value in row["phases_s"].values())
        assert sum(row["phases_share"].values()) == pytest.approx(1.0, abs=0.05)
        assert row["frames_per_batch"] == row["num_envs"] * data["config"]["steps_per_env"]
        assert row["fps"] > 0
    assert all(data["vmas"][str(n)] > 0 for n in (4, 8))

    # --vmas-only measures VMAS again into the same file and leaves the training rows alone
    data["vmas"] = {"4": -1.0, "8": -1.0}
    (tmp_path / "scale.json").write_text(json.dumps(data))
    assert scale.main(["--vmas-only", "--threads", "1", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "scale.json").read_text())
    assert all(again["vmas"][str(n)] > 0 for n in (4, 8))
    assert again["ours"] == data["ours"]


def test_quick_population_training_benchmark_measures_both_precisions(tmp_path):
    from marl.benchmarks import population_training

    assert population_training.main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "population_training.json").read_text())
    assert [row["precision"] for row in data["rows"]] == ["float32", "bfloat16"]
    for row in data["rows"]:
        assert row["frames_per_iteration"] == 2 * 2 * 2 * 64  # pairs x kitchens x the preset's 64 steps
        assert 0 < row["total_fps"] <= min(row["collection_fps"], row["training_fps"])
    assert data["hardware"]["cores"] >= 1


def test_cooking_kitchens_benchmark_counts_the_dish_random_cooks_serve_first(tmp_path):
    from marl.benchmarks import cooking_kitchens

    data = cooking_kitchens.main(["--layouts", "pairs_even", "--episodes", "3000", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "cooking_kitchens.json").read_text())["rows"] == data["rows"]
    rates = [row["random_rate"] for row in data["rows"]]
    names = ["tomato+rice", "lettuce+fish", "onion+egg", "carrot+beans"]
    assert [row["name"] for row in data["rows"]] == names
    assert all(0 < rate < 0.05 for rate in rates)  # a few random pairs of cooks in a thousand serve a dish
    assert all(row["random_rate_stderr"] > 0 for row in data["rows"])


@pytest.mark.parametrize("method", ["xpmin", "selfplay"])
def test_conventions_benchmark_keeps_four_minibatches_per_rollout_at_every_size(
    tmp_path, monkeypatch, method
):
    """Populations of 2, 4 and 8 take the same number of gradient steps per iteration (the presets' 4
    minibatches), as the committed numbers were measured: a fixed minibatch size would not."""
    from marl.benchmarks import conventions
    from marl.population.config import rollout_frames

    seen = []

    def fake_train(cfg):
        seen.append((cfg.population.size, rollout_frames(cfg) // cfg.algorithm.minibatch_size))
        (tmp_path / "population.json").write_text(json.dumps({"sp_distinct_labels": 3}))
        return tmp_path

    monkeypatch.setattr(conventions, "train", fake_train)
    for size in (2, 4, 8):
        assert conventions.distinct_conventions(method, size, k=8, seed=0, iterations=2, runs=tmp_path) == 3
    assert seen == [(2, 4), (4, 4), (8, 4)]


def test_hardware_names_the_cpu_generation_and_its_vector_instructions(tmp_path, monkeypatch):
    """Two 'AMD EPYC' machines can differ twice in speed: the record carries family/model and torch's ISA,
    read from the first processor's block of /proc/cpuinfo."""
    import marl.benchmarks.machine as machine

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\n\n"
        "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: other\n"
    )
    real_path = machine.Path
    monkeypatch.setattr(machine, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    record = machine.hardware()
    assert (record["cpu"], record["cpu_family_model"]) == ("AMD EPYC", "26/2")
    assert record["cpu_isa"] in {"DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256"}


def test_quick_activation_benchmark_times_both_tanhs(tmp_path):
    from marl.benchmarks import activation_speed

    args = ["--quick", "--schemes", "shared", "--iterations", "1", "--repeats", "1", "--out", str(tmp_path)]
    record = activation_speed.main(args)
    data = json.loads((tmp_path / "activation_speed.json").read_text())
    assert data == json.loads(json.dumps(record))
    assert [row["implementation"] for row in data["op"]] == list(activation_speed.IMPLEMENTATIONS)
    for row in data["op"]:
        assert row["forward_ms"] > 0 and row["forward_backward_ms"] > 0
        assert row["max_abs_difference_from_torch_tanh"] < 1e-6
    (training,) = data["training"]
    assert training["scheme"] == "shared"
    assert set(training["frames_per_s"]) == set(activation_speed.IMPLEMENTATIONS)
    assert all(fps > 0 for fps in training["frames_per_s"].values())

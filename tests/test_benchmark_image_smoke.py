"""The image-observation training benchmark end to end, at one batch per scheme (slow: ~1 min on 2 CPUs)."""

import json

import pytest

from marl.benchmarks import image_training


@pytest.mark.slow
def test_image_benchmark_writes_json(tmp_path):
    image_training.main(["--schemes", "shared", "hyper", "--frames", "1600", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "image_training.json").read_text())
    assert [row["scheme"] for row in data["rows"]] == ["shared", "hyper"]
    for row in data["rows"]:
        assert row["frames"] == 1600 and row["frames_per_s"] > 0 and row["frames_per_cpu_s"] > 0
        assert 0 < row["max_rss_gb"] < image_training.TARGET_MEMORY_GB
        assert row["snd_measured"]
    assert data["hardware"]["torch_threads"] == 1

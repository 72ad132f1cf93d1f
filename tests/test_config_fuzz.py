"""The config loaders never show a traceback and never hang: seeded fuzzing plus the inputs that once did.

`python -m marl.benchmarks.config_fuzz` runs 10,000 of the same inputs (results/config_fuzz.json).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from marl.benchmarks.config_fuzz import fuzz, run_one
from marl.config import MAX_FILE_BYTES, load_config, read_yaml
from marl.errors import ConfigError
from marl.population.config import load_population_config


def test_fuzzed_override_lists_give_a_config_or_a_config_error_within_a_second():
    report = fuzz(300, seed=17, timeout=5.0)
    assert report["counts"]["traceback"] == 0 and report["counts"]["hang"] == 0, report["failures"][:3]
    assert report["counts"]["accepted"] > 0 and report["counts"]["config_error"] > 0  # both paths exercised
    assert report["slowest"][0]["seconds"] < 1.0, report["slowest"][0]


@pytest.mark.parametrize(
    "words, expected",
    [
        # a divisor search that grew with the value used to hang here
        (["experiment.frames_per_batch=10000000000000001", "env.num_envs=7"], "not divisible"),
        (["experiment.frames_per_batch=1000000000000000000000000000001", "env.num_envs=7"], "2^63"),
        (["algorithm.lr=!!int abc"], "could not parse"),  # a ValueError inside PyYAML
        (["env.x=" + "[" * 5000], "nested"),  # a RecursionError (and a slow scan) inside PyYAML
        (["env.x=" + "- " * 3000 + "1"], "nested"),
        (["env.x=&a [*a]"], "refers to itself"),
        (["env.x=!!timestamp 2001-12-14"], "date"),
        (["env.x=" + "1" * 5000], "could not parse"),  # int() refuses more than 4,300 digits
        (["env.n_agents=abc"], "integers from 1"),
        (["env.n_agents=0"], "integers from 1"),
        (["env.n_agents=-2"], "integers from 1"),
        (["env.n_agents=100000"], "integers from 1"),
        (["env.n_food=-1"], "integers from 0"),
        (["experiment.seed=4294967296"], "below 2^31"),
        (["experiment.name=a/b"], "folder name"),
        (["env=pettingzoo", "env.entry_point=os.system('id')"], "package.module:factory"),
        (["env.a.b.c.d.e.f.g.h=1"], "dotted parts"),
        (["env.x=" + "y" * 20_000], "characters long"),
        (["experiment=" + "a" * 300], "unknown experiment"),  # a file name too long for the OS
        (["experiment=" + "a" * 300 + ".yaml"], "not found"),
        (["env.x=a\0b"], "nul"),
    ],
)
def test_inputs_that_once_broke_the_loader_are_config_errors(words, expected):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_config(words)
    assert expected in str(error.value).lower()
    assert time.perf_counter() - start < 1.0


def test_population_loader_shares_the_limits():
    for words in (["algorithm.lr=!!float x"], ["env.k=" + "{a: " * 40], ["experiment.seed=1e300"]):
        outcome, seconds, error = run_one("population", words, timeout=5.0)
        assert outcome == "config_error", error
        assert seconds < 1.0
    with pytest.raises(ConfigError, match="2\\^63"):
        load_population_config(["experiment.seed=1e300"])


def test_config_files_are_limited_in_size_and_must_be_text(tmp_path: Path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (MAX_FILE_BYTES + 10))
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml(big)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="UTF-8"):
        read_yaml(binary)
    deep = tmp_path / "deep.yaml"
    deep.write_text("experiment:\n  name: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml"):
        load_config([f"experiment={deep}"])
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("algorithm:\n  epochs: !!int ten\n")
    with pytest.raises(ConfigError, match="tagged.yaml"):
        load_config([f"experiment={tagged}"])

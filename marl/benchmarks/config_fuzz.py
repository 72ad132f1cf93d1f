"""Fuzz the config loaders: random override lists must give a config or a `ConfigError`, never a
traceback, and each must be accepted or rejected quickly.

    python -m marl.benchmarks.config_fuzz [--inputs 10000] [--seed 0] [--out results]

Each input is a list of 1 to 6 command-line words for `marl train` (`load_config`) or, one time in five,
`marl population train` (`load_population_config`). Words are built from the schemas' own keys (every
dotted key, the group names, scenario arguments such as env.n_agents, and misspellings) paired with nasty
values: wrong types, huge and negative numbers, YAML tags whose constructors raise (`!!int abc`), deep
nesting, self-referencing aliases, long strings, NUL and control characters, preset names that do not
exist; plus valid values, so that some inputs pass. Any exception other than `ConfigError` is a traceback
a user would see; an input that takes longer than `--timeout` seconds is a hang (interrupted with
SIGALRM). Writes <out>/config_fuzz.json: counts, every traceback (input and error), the slowest inputs
and the machine. tests/test_config_fuzz.py runs a few hundred of the same inputs in the suite.
"""

from __future__ import annotations

import argparse
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from marl.config import Config, config_to_dict, load_config
from marl.errors import ConfigError
from marl.population.config import PopulationConfig, load_population_config, population_config_to_dict
from marl.run_logger import flatten

NASTY_VALUES = [
    "",
    " ",
    "abc",
    "null",
    "~",
    "true",
    "no",
    "on",
    "0",
    "-1",
    "1",
    "7",
    "-0.0",
    "0.5",
    "1e-320",
    "1e400",
    "-1e400",
    ".nan",
    ".inf",
    "-.inf",
    "9223372036854775807",
    "9223372036854775808",
    "1000000000000000000000000000001",
    "-99999999999999999999",
    "2147483648",
    "0x1F",
    "0o17",
    "1_000",
    "1" * 4400,
    "[]",
    "{}",
    "[1, 2",
    "{a: b",
    "[[[]]]",
    "[" * 40,
    "[" * 4000,
    "{a: " * 30,
    "- " * 600 + "1",
    "&a [*a]",
    "&a {b: *a}",
    "*undefined",
    "!!int abc",
    "!!float x",
    "!!bool maybe",
    "!!null x",
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!pairs [a: 1]",
    "!!python/object/apply:os.system ['echo pwned']",
    "!!python/name:os.system",
    "!custom x",
    "%YAML 1.1\n--- 1",
    "---\n---",
    "--- a\n--- b",
    "? [a]\n: b",
    "|\n  block",
    ">\n  folded",
    "'unterminated",
    '"unterminated',
    "'it''s'",
    '"\\x00"',
    "@at",
    "`tick",
    "#comment",
    "key: value",
    "a: [1, {b: 2}]",
    "\t",
    "\x00",
    "\x1b[31m",
    "é",
    "漢字",
    "\U0001f600",
    "a" * 20_000,
    "../../etc/passwd",
    "/dev/zero",
    "auto",
    "cpu",
    "cuda",
    "cuda:99",
    "mappo",
    "ippo",
    "hyper",
    "grouped",
    "shared",
    "independent",
    "linear",
    "mlp",
    "tanh",
    "state",
    "observations",
    "gaussian",
    "constant",
    "pettingzoo",
    "os:system",
    "mpe2.simple_spread_v3:parallel_env",
    "a.b:c",
    "{agent_0: results/runs/none}",
    "{a: [0, 1], b: [2]}",
    "{a: [0, 0]}",
    "{a: []}",
    "[64, 64]",
    "[0]",
    "[-1]",
    "[1e9]",
    "[a]",
    "[true]",
    "[1, 2, 3]",
]
GROUP_CHOICES = [
    "vmas/navigation",
    "vmas/balance",
    "vmas/dispersion",
    "vmas/nonexistent",
    "vmas/../../x",
    "native/cooking",
    "native/matrix_game",
    "native/none",
    "pettingzoo",
    "mappo",
    "ippo",
    "hyper",
    "hyper_linear",
    "grouped",
    "smoke",
    "benchmarl_navigation",
    "nonexistent",
    "missing.yaml",
    "/dev/null.yaml",
    "",
    "a" * 300,
]
SCENARIO_KEYS = [
    "env.n_agents",
    "env.n_food",
    "env.n_searchers",
    "env.n_sensing",
    "env.k",
    "env.x",
    "env.kwargs",
]
JUNK_KEYS = [
    "",
    ".",
    "..",
    "a..b",
    "env.",
    ".env",
    "experiment.seed.x",
    "algorithm.lr.x",
    "sharing.roles.a.b",
    "env.a.b.c.d.e.f.g.h.i.j",
    "envv.x",
    "experimnt.seed",
    "algorithm.lrr",
    "resume",
    "exp",
    "k" * 300,
    "env.kwargs.a.b",
    "collector.frozen.agent_0",
    "sharing.actor",
    "sharing.hyper",
    "metrics",
    "model",
]


def schema_keys(tree: dict) -> list[str]:
    """Every dotted key of a config tree, and every section and sub-section name."""
    keys = list(flatten(tree))
    for key in list(keys):
        parts = key.split(".")
        keys += [".".join(parts[:i]) for i in range(1, len(parts))]
    return sorted(set(keys))


TRAIN_KEYS = schema_keys(config_to_dict(Config())) + SCENARIO_KEYS
POPULATION_KEYS = schema_keys(population_config_to_dict(PopulationConfig()))
TRAIN_GROUPS = ["algorithm", "env", "sharing", "experiment", "model", "metrics", "collector", "ray"]


def random_value(rng: random.Random) -> str:
    """A nasty value, a valid-looking one, or a random mutation of one."""
    roll = rng.random()
    if roll < 0.7:
        return rng.choice(NASTY_VALUES)
    if roll < 0.85:
        return str(rng.choice([0, 1, 2, 3, 4, 6, 8, 16, 64, 100, 600, 1000, 1200, 6000, 10**6]))
    text = rng.choice(NASTY_VALUES)
    chars = list(text[:200]) or ["x"]
    for _ in range(rng.randint(1, 4)):
        chars.insert(rng.randrange(len(chars) + 1), rng.choice("[]{}:,-'\"!&*#|>%@`? \t\n\\x0123456789"))
    return "".join(chars)


def random_word(rng: random.Random, keys: list[str], groups: list[str]) -> str:
    """One command-line word: mostly key=value, sometimes a group choice, junk, or no '=' at all."""
    roll = rng.random()
    if roll < 0.65:
        return f"{rng.choice(keys)}={random_value(rng)}"
    if roll < 0.8:
        return f"{rng.choice(groups)}={rng.choice(GROUP_CHOICES)}"
    if roll < 0.95:
        return f"{rng.choice(JUNK_KEYS)}={random_value(rng)}"
    return rng.choice(["", "=", "==", "novalue", "a b=c", random_value(rng)])


def fuzz_inputs(n: int, seed: int) -> Iterator[tuple[str, list[str]]]:
    """`n` (loader name, word list) pairs, the same for the same seed."""
    rng = random.Random(seed)
    population_groups = ["preset", "method", "resume"]
    for _ in range(n):
        population = rng.random() < 0.2
        keys, groups = (POPULATION_KEYS, population_groups) if population else (TRAIN_KEYS, TRAIN_GROUPS)
        words = [random_word(rng, keys, groups) for _ in range(rng.randint(1, 6))]
        if not population and rng.random() < 0.1:  # the batch arithmetic: huge, indivisible sizes
            words += [
                f"experiment.frames_per_batch={rng.choice(['10000000000000001', '999999999999'])}",
                f"env.num_envs={rng.choice(['7', '13', '1000003'])}",
            ]
        yield ("population" if population else "train"), words


LOADERS: dict[str, Callable[[list[str]], object]] = {
    "train": load_config,
    "population": load_population_config,
}


class Hang(Exception):
    """An input that took longer than the time limit."""


@contextmanager
def time_limit(seconds: float):
    """Raise `Hang` in the main thread after `seconds` (SIGALRM; no limit where it does not exist)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def interrupt(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_one(loader: str, words: list[str], timeout: float) -> tuple[str, float, str | None]:
    """-> (outcome: accepted | config_error | traceback | hang, seconds, error text for the last two)."""
    start = time.perf_counter()
    try:
        with time_limit(timeout):
            LOADERS[loader](words)
        outcome, error = "accepted", None
    except ConfigError:
        outcome, error = "config_error", None
    except Hang as hang:
        outcome, error = "hang", str(hang)
    except Exception:  # noqa: BLE001 - exactly what the fuzzer looks for
        outcome, error = "traceback", traceback.format_exc(limit=-3)
    return outcome, time.perf_counter() - start, error


def fuzz(n: int, seed: int, timeout: float = 5.0) -> dict:
    """Run `n` inputs; -> counts, failures (tracebacks and hangs with their inputs) and the slowest inputs."""
    counts = {"accepted": 0, "config_error": 0, "traceback": 0, "hang": 0}
    failures, timings = [], []
    for index, (loader, words) in enumerate(fuzz_inputs(n, seed)):
        outcome, seconds, error = run_one(loader, words, timeout)
        counts[outcome] += 1
        timings.append((seconds, index, loader, words))
        if error is not None:
            failures.append({"index": index, "loader": loader, "words": _short(words), "error": error})
    timings.sort(reverse=True)
    slowest = [
        {"seconds": round(s, 4), "index": i, "loader": loader, "words": _short(words)}
        for s, i, loader, words in timings[:5]
    ]
    total = sum(s for s, *_ in timings)
    return {
        "inputs": n,
        "seed": seed,
        "timeout_s": timeout,
        "counts": counts,
        "failures": failures,
        "slowest": slowest,
        "mean_s": total / max(n, 1),
        "total_s": total,
    }


def _short(words: list[str]) -> list[str]:
    """Words clipped to 120 characters, for the report."""
    return [w if len(w) <= 120 else f"{w[:120]}... ({len(w):,} chars)" for w in words]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds before an input counts as a hang")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    from marl.benchmarks.machine import hardware, write_json

    report = fuzz(args.inputs, args.seed, args.timeout)
    report["hardware"] = hardware()
    out = Path(args.out)
    write_json(out / "config_fuzz.json", report)
    c = report["counts"]
    print(
        f"{report['inputs']:,} inputs (seed {report['seed']}): {c['accepted']:,} accepted, "
        f"{c['config_error']:,} config errors, {c['traceback']} tracebacks, {c['hang']} hangs; slowest "
        f"{report['slowest'][0]['seconds']:.3f} s, mean {report['mean_s'] * 1000:.1f} ms "
        f"-> {out}/config_fuzz.json"
    )
    for failure in report["failures"][:5]:
        print(f"\n{failure['loader']} {failure['words']}\n{failure['error']}")


if __name__ == "__main__":
    main()

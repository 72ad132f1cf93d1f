"""Small helpers shared by the test modules (import as ``tests.helpers``)."""

from marl.config import Config, load_config


def without_timing(rows: list[dict]) -> list[dict]:
    """Logged metric rows without the wall-clock ``perf/`` entries (two identical runs differ only there)."""
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


def pettingzoo_config(tmp_path, entry_point: str, *overrides: str) -> Config:
    """A quiet `marl train` config of a PettingZoo env: runs under `tmp_path`, no progress bar, no
    evaluation, no diversity metrics; `overrides` on top."""
    return load_config(
        [
            "env=pettingzoo",
            f"env.entry_point={entry_point}",
            f"experiment.runs_dir={tmp_path}",
            "experiment.progress=false",
            "experiment.eval_every=0",
            "metrics.every=0",
            *overrides,
        ]
    )

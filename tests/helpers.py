"""Small helpers shared by the test modules (import as ``tests.helpers``)."""


def without_timing(rows: list[dict]) -> list[dict]:
    """Logged metric rows without the wall-clock ``perf/`` entries (two identical runs differ only there)."""
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]

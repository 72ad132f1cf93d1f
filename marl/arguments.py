"""Command-line argument types shared by every `marl` command (kept apart from marl/cli.py, which
imports the commands: they can use these without importing it back)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

MAX_EPISODES = 1_000_000


def count(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], else a clear usage error (exit status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low:,} to {high:,}" if high is not None else f"at least {low:,}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value:,}")
        return value

    parse.__name__ = "integer"
    return parse


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """`--trust`: honour code named by runs that this user did not write (marl/safe_load.py)."""
    parser.add_argument(
        "--trust",
        action="store_true",
        help="load runs from others even where their saved config names code to run (env.entry_point, "
        "ray.address); only for runs from people you trust (same as MARL_TRUST=1)",
    )

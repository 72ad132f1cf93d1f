"""Packaging: the wheel holds every preset under the one import name `marl`, and no module imports the
repository's folders by their bare names (`envs`, `agents`), which other projects use too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_config_folder_ships_in_the_wheel():
    config = _setuptools()
    folders = {p for p in (REPO / "configs").rglob("*") if p.is_dir()} | {REPO / "configs"}
    for folder in folders:
        name = ".".join(["marl", *folder.relative_to(REPO).parts])
        assert name in config["packages"], f"{name} is missing from [tool.setuptools] packages"
        if any(folder.glob("*.yaml")):
            assert config["package-data"].get(name) == ["*.yaml"], f"{name} has no package-data entry"


def test_repository_folders_install_under_marl():
    mapping = _setuptools()["package-dir"]
    assert mapping == {"marl.envs": "envs", "marl.agents": "agents", "marl.configs": "configs"}


def test_no_module_imports_bare_envs_or_agents():
    bare = re.compile(r"^\s*(from|import)\s+(envs|agents)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("marl", "envs", "agents", "tests", "examples")
        for path in (REPO / folder).rglob("*.py")
        if bare.search(path.read_text())
    ]
    assert not offenders, f"import marl.envs / marl.agents instead of envs / agents in {offenders}"


def test_dash_m_slow_selects_the_slow_tests_that_the_default_run_leaves_out():
    """pyproject's addopts say `-m 'not slow'`; a `-m slow` on the command line comes later and wins."""
    import subprocess
    import sys

    def collected(*args: str) -> str:
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_ray_faults.py", *args]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120).stdout

    slow = re.search(r"(\d+) tests? collected", collected("-m", "slow"))  # every test in that file is slow
    assert slow and int(slow.group(1)) >= 2
    assert f"no tests collected ({slow.group(1)} deselected)" in collected()

"""The platform's own VMAS scenarios, built by `env=vmas/<name>` like VMAS's bundled ones."""

from marl.envs.scenarios.patrol_search import PatrolSearchScenario

SCENARIOS = {"patrol_search": PatrolSearchScenario}

__all__ = ["SCENARIOS", "PatrolSearchScenario"]

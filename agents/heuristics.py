"""Hand-designed policies, run through the same evaluation path as learned ones (`marl eval`, `marl pareto`).

A heuristic is named `heuristic:<team>[/<search>]`, e.g. `heuristic:fixed_roles/pso`. It is a `Policy`
(td -> td writing each group's `(group, "action")`) built for one environment; the controllers themselves
live beside their scenario (`envs/scenarios/patrol_search_heuristics.py`) and read only observations.
"""

from __future__ import annotations

import torch
from marl.envs.factory import EnvInfo
from tensordict import TensorDictBase

from marl.errors import ConfigError

PREFIX = "heuristic:"
PATROL_SEARCH = "vmas/patrol_search"


def is_heuristic(spec: str) -> bool:
    """Whether `spec` names a heuristic policy rather than a run or a checkpoint."""
    return str(spec).startswith(PREFIX)


def check_heuristic(spec: str, env_name: str) -> tuple[str, str]:
    """The (team, search) `spec` names, or a ConfigError saying what exists."""
    from marl.envs.scenarios.patrol_search_heuristics import SEARCHES, TEAMS

    if env_name != PATROL_SEARCH:
        raise ConfigError(f"{spec}: hand-designed policies exist for env={PATROL_SEARCH}, not {env_name}.")
    team, _, search = spec[len(PREFIX) :].partition("/")
    search = search or SEARCHES[0]
    if team not in TEAMS or search not in SEARCHES:
        raise ConfigError(
            f"Unknown heuristic {spec!r}. Use heuristic:<team>[/<search>] with team one of "
            f"{', '.join(TEAMS)} and search one of {', '.join(SEARCHES)} (default {SEARCHES[0]}), "
            "e.g. heuristic:fixed_roles/pso."
        )
    return team, search


def make_heuristic(spec: str, env_info: EnvInfo, seed: int = 0, **tuning):
    """The policy `spec` names, for the env `env_info` describes, with its own seeded random stream;
    `tuning`: the controller's keyword numbers (e.g. run_steps=1, see PatrolSearchHeuristic)."""
    from marl.envs.scenarios.patrol_search_heuristics import ObservationLayout, PatrolSearchHeuristic

    team, search = check_heuristic(spec, env_info.name)
    controller = PatrolSearchHeuristic(
        ObservationLayout.from_kwargs(env_info.kwargs), team=team, search=search, seed=seed, **tuning
    )
    # The scenario numbers patrollers first, then searchers; the env lists agents group by group.
    n_patrollers = sum(name.startswith("patroller_") for name in env_info.agent_names)
    scenario_index = [
        int(name.split("_")[-1]) + (n_patrollers if name.startswith("searcher_") else 0)
        for name in env_info.agent_names
    ]
    to_scenario = torch.argsort(torch.tensor(scenario_index))  # env order -> scenario order
    to_env = torch.tensor(scenario_index)  # scenario order -> env order

    def policy(td: TensorDictBase) -> TensorDictBase:
        observations = torch.cat([td[g.name, "observation"] for g in env_info.groups], dim=1)
        actions = controller(observations[:, to_scenario.to(observations.device)])
        actions = actions[:, to_env.to(actions.device)]
        start = 0
        for group in env_info.groups:
            td[group.name, "action"] = actions[:, start : start + group.n_agents]
            start += group.n_agents
        return td

    return policy

"""Hand-designed controllers for patrol_search: interface, single behaviours on hand-made observations, and
team-level contrasts measured on short batched episodes (fixed seeds)."""

import pytest
import torch
import vmas
from marl.envs.scenarios import PatrolSearchScenario
from marl.envs.scenarios.patrol_search_heuristics import (
    SEARCHES,
    TEAMS,
    ObservationLayout,
    PatrolSearchHeuristic,
)

TEAM = dict(n_agents=6, n_searchers=3, n_sensing=3, share_signal=True)


def policy(kwargs: dict, team: str, search: str = "ecoli", seed: int = 0, **tuning) -> PatrolSearchHeuristic:
    return PatrolSearchHeuristic(ObservationLayout.from_kwargs(kwargs), team, search, seed=seed, **tuning)


def episode(team: str, search: str = "ecoli", seed: int = 0, envs: int = 32, steps: int = 200, **kwargs):
    """Episode-end info averaged over `envs` episodes."""
    kwargs = {**TEAM, **kwargs}
    info = evaluate(policy(kwargs, team, search, seed), kwargs, num_envs=envs, steps=steps, seed=seed)
    return {key: value.mean().item() for key, value in info.items()}


def blank_obs(layout: ObservationLayout, batch: int = 1) -> torch.Tensor:
    """Observations of agents standing still in the arena centre, nothing idle, no signal, nobody near."""
    obs = torch.zeros(batch, layout.n_agents, layout.obs_dim)
    obs[..., layout.pos] = torch.tensor([0.0625, 0.0625])  # a cell centre
    return obs


def test_layout_matches_the_scenario_observation():
    kwargs = dict(n_agents=4, n_searchers=2, n_sensing=1, patch_size=3, grid_size=10, arena_size=2.0)
    env = vmas.make_env(PatrolSearchScenario(), num_envs=2, device="cpu", seed=0, **kwargs)
    obs = torch.stack(env.reset(), dim=1)
    lay = ObservationLayout.from_kwargs({**kwargs, "map": "rooms"})  # keys it does not need are ignored
    assert obs.shape[-1] == lay.obs_dim == 6 + 9 + 3 + 7 * 3
    assert lay.cell_size == pytest.approx(0.4)
    assert torch.equal(obs[0, :, lay.pos], env.scenario.agent_positions()[0])
    assert obs[0, :, lay.is_searcher].tolist() == [0, 0, 1, 1]
    assert obs[0, :, lay.has_sensor].tolist() == [0, 0, 1, 0]
    assert lay.teammates.stop == lay.obs_dim and lay.patch.stop - lay.patch.start == 9
    defaults = ObservationLayout.from_kwargs({})
    assert (defaults.n_agents, defaults.patch_size, defaults.obs_dim) == (6, 5, 69)
    assert defaults.cell_size == pytest.approx(0.125)


def test_actions_are_bounded_reproducible_and_leave_the_global_rng_alone():
    kwargs = {**TEAM, "source_window": (3, 3)}
    env = vmas.make_env(PatrolSearchScenario(), num_envs=8, device="cpu", seed=0, **kwargs)
    obs = [torch.stack(env.reset(), dim=1)]
    driver = policy(kwargs, "switch", "pso", seed=1)
    for _ in range(12):  # a few steps past the source's appearance, so the search runs too
        obs.append(torch.stack(env.step(list(driver(obs[-1]).unbind(1)))[0], dim=1))
    for team in TEAMS:
        for search in SEARCHES:
            first, second, other = (policy(kwargs, team, search, seed=s) for s in (7, 7, 8))
            rng = torch.get_rng_state()
            actions = [first(o) for o in obs]
            assert torch.equal(torch.get_rng_state(), rng)
            assert all(a.shape == (8, 6, 2) and a.abs().max() <= 1 and a.isfinite().all() for a in actions)
            assert all(torch.equal(a, second(o)) for a, o in zip(actions, obs))
            assert any(not torch.equal(a, other(o)) for a, o in zip(actions, obs))


def test_bad_names_and_observation_width_are_rejected_clearly():
    lay = ObservationLayout.from_kwargs({})
    with pytest.raises(ValueError, match="random, patrol, fixed_roles, switch"):
        PatrolSearchHeuristic(lay, team="fixed")
    with pytest.raises(ValueError, match="ecoli, pso"):
        PatrolSearchHeuristic(lay, search="gradient")
    wrong = ObservationLayout.from_kwargs({"n_agents": 6, "patch_size": 3})
    with pytest.raises(ValueError, match=r"obs_dim=53\].*got 69 features.*patch_size"):
        PatrolSearchHeuristic(wrong)(torch.zeros(4, 6, 69))
    with pytest.raises(ValueError, match="n_agents=6"):
        PatrolSearchHeuristic(lay)(torch.zeros(4, 3, 69))  # one group only, not all agents


def test_patrol_heads_for_the_most_idle_reachable_cell():
    lay = ObservationLayout.from_kwargs({})
    pol = PatrolSearchHeuristic(lay, team="patrol", seed=0)
    obs = blank_obs(lay, batch=4)
    patch = obs[..., lay.patch].view(4, 6, 5, 5)  # [row = y, col = x], the agent in the middle
    patch[:, :, 2, 4] = 1.0  # two cells to the right: the most idle, ...
    patch[:, :, 2, 3] = -1.0  # ... but behind a wall cell
    patch[:, :, 0, 2] = 0.5  # two cells below
    patch[:, :, 4, :] = -1.0  # outside the arena above
    obs[..., lay.vel] = torch.tensor([0.0, -0.3])  # already heading down: no sliding term
    actions = pol(obs)
    assert (actions[..., 1] < -0.99).all() and (actions[..., 0].abs() < 0.05).all()


def test_switch_followers_go_to_a_shared_reading_and_fixed_patrollers_do_not():
    lay = ObservationLayout.from_kwargs({})
    obs = blank_obs(lay)
    obs[..., lay.vel] = torch.tensor([0.2, 0.2])  # moving up and right: no sliding term either way
    obs[0, 0, lay.patch.start + 22] = 0.5  # the most idle cell: two cells up (row 4, column 2)
    slot = lay.teammates.start + 7 * 4  # patroller 0's view of agent 5 (a searcher with a reading)
    obs[0, 0, slot : slot + 7] = torch.tensor([1.0, 0.8, 0.0, 1.0, 1.0, -1.0, 1.0])
    follow = PatrolSearchHeuristic(lay, team="switch", seed=0)(obs)[0, 0]
    assert follow[0] > 0.99 and follow[1].abs() < 0.05
    patrol = PatrolSearchHeuristic(lay, team="fixed_roles", seed=0)(obs)[0, 0]
    assert patrol[1] > 0.99 and patrol[0].abs() < 0.05  # ignores the reading and patrols


def test_ecoli_keeps_running_while_the_reading_rises_and_tumbles_when_it_falls():
    lay = ObservationLayout.from_kwargs({})
    pol = PatrolSearchHeuristic(lay, team="fixed_roles", search="ecoli", seed=0, run_steps=2)
    obs = blank_obs(lay, batch=64)
    obs[..., lay.vel] = torch.tensor([0.0, 0.4])  # moving up when the reading arrives
    obs[..., lay.is_searcher] = 1.0
    obs[..., lay.present] = 1.0
    for reading in (-1.0, -0.9, -0.8, -0.7, -0.6):  # rising: the run goes on, up
        obs[..., lay.reading] = reading
        assert (pol(obs)[..., 1] > 0.99).all()
    for reading in (-0.7, -0.8):  # falling: tumble at the next decision, in random directions
        obs[..., lay.reading] = reading
        actions = pol(obs)
    assert (actions[..., 1] > 0.99).float().mean() < 0.5 and actions.std(dim=(0, 1)).min() > 0.3
    obs[..., lay.present] = 0.0  # no reading: the run is forgotten, ...
    pol(obs)
    obs[..., lay.present] = 1.0  # ... so a new reading starts a new run along the velocity
    obs[..., lay.vel] = torch.tensor([0.4, 0.0])
    assert (pol(obs)[..., 0] > 0.99).all()


def test_pso_without_shared_readings_is_ecoli():
    kwargs = {**TEAM, "share_signal": False}
    env = vmas.make_env(
        PatrolSearchScenario(), num_envs=8, device="cpu", seed=0, source_window=(2, 2), **kwargs
    )
    obs = torch.stack(env.reset(), dim=1)
    ecoli, pso = policy(kwargs, "fixed_roles", "ecoli"), policy(kwargs, "fixed_roles", "pso")
    for _ in range(30):
        actions = ecoli(obs)
        assert torch.equal(actions, pso(obs))
        obs = torch.stack(env.step(list(actions.unbind(1)))[0], dim=1)


@pytest.mark.parametrize("map_name", ["open", "rooms"])
def test_patrol_team_keeps_idleness_well_below_random(map_name):
    patrol = episode("patrol", map=map_name)
    random = episode("random", map=map_name)
    assert patrol["mean_idleness"] < 0.7 * random["mean_idleness"]
    assert patrol["max_idleness"] < random["max_idleness"]


def test_agents_do_not_stay_stuck_against_walls():
    # Walls are invisible in the default 16 x 16 patch: agents push into them. Without the sliding term
    # some stand still for 20 to 60 steps; with it, no agent (patrolling or searching) stays still long.
    kwargs = {**TEAM, "map": "rooms"}
    env = vmas.make_env(PatrolSearchScenario(), num_envs=32, device="cpu", seed=0, **kwargs)
    obs = torch.stack(env.reset(), dim=1)
    pol = policy(kwargs, "fixed_roles")
    still = torch.zeros(32, 6)
    longest = torch.zeros(32, 6)
    for _ in range(150):
        obs = torch.stack(env.step(list(pol(obs).unbind(1)))[0], dim=1)
        slow = torch.linalg.vector_norm(obs[..., pol.layout.vel], dim=-1) < 0.05
        still = (still + 1) * slow
        longest = torch.maximum(longest, still)
    assert longest.max() <= 10


@pytest.mark.parametrize("search", ["ecoli", "pso"])
def test_searchers_find_the_source_more_often_than_random(search):
    found = episode("fixed_roles", search)
    random = episode("random")
    assert found["found"] > random["found"] + 0.3
    assert found["time_to_find"] < 0.85 * random["time_to_find"]
    if search == "pso":  # shared readings: nearly always found, faster than E. coli alone, and clearly
        # more often than by the patrol-only team's coverage (its searchers carry sensors too: about 0.7)
        assert found["found"] > 0.85
        assert found["time_to_find"] < 0.75 * episode("fixed_roles", "ecoli")["time_to_find"]
        assert found["found"] > episode("patrol")["found"] + 0.15


@pytest.mark.parametrize("map_name", ["open", "rooms"])
def test_fixed_roles_keep_patrolling_while_the_switch_team_searches(map_name):
    # The homogeneous switch team drops patrol while a source is active; fixed roles keep three patrollers.
    # Measured over seeds 0-4: 44-47 against 49-54.
    fixed = episode("fixed_roles", map=map_name)
    switch = episode("switch", map=map_name)
    assert fixed["mean_idleness"] < switch["mean_idleness"] - 2


def evaluate(  # VMAS directly, without the platform, so a controller is tested on its own
    policy: PatrolSearchHeuristic, scenario_kwargs: dict, num_envs: int = 64, steps: int = 200, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Run `num_envs` episodes of `steps` steps in VMAS directly and return the scenario's episode-end
    info (tensors [num_envs]: mean_idleness, max_idleness, found, time_to_find, ...). `seed` seeds the
    environment (VMAS seeds the global torch RNG with it); the policy draws from its own generator."""
    if ObservationLayout.from_kwargs(scenario_kwargs) != policy.layout:
        raise ValueError(
            f"The policy's layout {policy.layout} does not match scenario_kwargs {scenario_kwargs}; build it "
            f"with ObservationLayout.from_kwargs(scenario_kwargs)."
        )
    env = vmas.make_env(
        PatrolSearchScenario(),
        num_envs=num_envs,
        device=policy.device,
        seed=seed,
        continuous_actions=True,
        **scenario_kwargs,
    )
    obs = env.reset()
    infos = [{}]
    for _ in range(steps):
        actions = policy(torch.stack(obs, dim=1))
        obs, _, _, infos = env.step(list(actions.unbind(1)))
    return infos[0]


def test_action_strength_benchmark_records_norms_and_pushes_to_full_strength():
    """The benchmark's learned rows: actions recorded as they come, then the same direction at the bound."""
    from tensordict import TensorDict

    from marl.benchmarks.patrol_search_actions import full_strength, with_actions

    action = torch.tensor([[[0.3, -0.6], [0.0, 0.2]]])  # [envs, agents, 2]
    pushed = full_strength(action)
    assert torch.allclose(pushed, torch.tensor([[[0.5, -1.0], [0.0, 1.0]]]))
    group = type("Group", (), {"name": "team"})()
    env_info = type("EnvInfo", (), {"groups": [group]})()
    norms: list[torch.Tensor] = []
    policy = lambda td: td.set(("team", "action"), action.clone())  # noqa: E731
    td = with_actions(policy, env_info, full_strength, norms)(TensorDict({}, batch_size=[1]))
    assert torch.allclose(td["team", "action"], pushed)
    assert torch.allclose(norms[0], torch.tensor([0.6708, 0.2]), atol=1e-4)  # before the change

"""Patrollers and searchers scenario: idleness, signal, sensing, composition, find event, registration."""

import math

import pytest
import torch
import vmas
from marl.envs.factory import describe_env, make_env
from marl.envs.scenarios import PatrolSearchScenario

from marl.config import load_config
from marl.errors import ConfigError

CELL = 2.0 / 16  # default arena [-1, 1] with a 16 x 16 grid
PATCH = slice(6, 31)  # observation layout: pos 2, vel 2, role 1, sensor 1, patch 25, signal 3, slots 7 each
SIGNAL = slice(31, 34)


def make(num_envs: int = 1, **kwargs):
    return vmas.make_env(PatrolSearchScenario(), num_envs=num_envs, device="cpu", seed=0, **kwargs)


def centre(row: int, col: int) -> tuple[float, float]:
    return -1 + CELL * (col + 0.5), -1 + CELL * (row + 0.5)


def place(env, i: int, xy, env_index: int | None = None) -> None:
    n = env.num_envs if env_index is None else 1
    agent = env.agents[i]
    agent.set_pos(torch.tensor([xy], dtype=torch.float32).expand(n, 2).clone(), batch_index=env_index)
    agent.set_vel(torch.zeros(n, 2), batch_index=env_index)


def step(env):
    return env.step([torch.zeros(env.num_envs, 2) for _ in env.agents])


def test_composition_sets_roles_names_and_sensors():
    env = make(n_agents=5, n_searchers=2, n_sensing=3)
    obs = env.reset()
    names = [a.name for a in env.agents]
    assert names == ["patroller_0", "patroller_1", "patroller_2", "searcher_0", "searcher_1"]
    # Sensors go to searchers first, then patrollers in order.
    assert [o[0, 4].item() for o in obs] == [0, 0, 0, 1, 1]
    assert [o[0, 5].item() for o in obs] == [1, 0, 0, 1, 1]
    assert env.scenario.has_sensor.tolist() == [True, False, False, True, True]
    assert make(n_agents=4, n_searchers=2, n_sensing=1).scenario.has_sensor.tolist() == [0, 0, 1, 0]
    assert make(n_agents=3, n_searchers=0, n_sensing=2).scenario.has_sensor.tolist() == [1, 1, 0]
    assert all(o.shape == (1, 6 + 25 + 3 + 7 * 4) for o in obs)
    with pytest.raises(ConfigError, match="n_sensing"):
        make(n_agents=2, n_searchers=1, n_sensing=3)


def test_heading_mode_drives_every_non_zero_action_at_full_strength():
    """velocity: a weak action moves the agent slowly; heading: as fast as a full one, in its direction."""

    def distance_after(mode: str, action: tuple[float, float], steps: int = 10) -> torch.Tensor:
        env = make(n_agents=1, n_searchers=0, action_mode=mode)
        env.reset()
        place(env, 0, (-0.5, -0.3))
        for _ in range(steps):
            env.step([torch.tensor([action])])
        return env.agents[0].state.pos[0] - torch.tensor([-0.5, -0.3])

    full, weak = distance_after("velocity", (1.0, 0.0)), distance_after("velocity", (0.2, 0.0))
    assert full[0] > 2 * weak[0] > 0
    heading = distance_after("heading", (0.2, 0.0))
    assert torch.allclose(heading, full, atol=1e-5)  # same direction, full strength
    diagonal = distance_after("heading", (0.1, 0.1))
    assert torch.allclose(diagonal[0], diagonal[1])
    assert diagonal.norm().item() == pytest.approx(full.norm().item(), rel=1e-4)
    assert torch.all(distance_after("heading", (0.0, 0.0)) == 0)  # no action, no motion
    with pytest.raises(ConfigError, match="action_mode='steer' is not one of velocity, heading"):
        make(action_mode="steer")


def test_idleness_grows_and_resets_within_visit_radius():
    env = make(n_agents=2, n_searchers=1, patrol_reward="drop")
    env.reset()
    sc = env.scenario
    place(env, 0, centre(8, 8))
    place(env, 1, centre(2, 3))
    for _ in range(3):
        step(env)
    grid = sc.idleness[0]
    assert grid[8, 8] == 0 and grid[2, 3] == 0
    assert (grid > 0).sum() == 254 and grid.max() == 3  # neighbours are a cell (0.125 > 0.1) away
    info = sc.info(env.agents[0])
    assert info["mean_idleness"].item() == pytest.approx(2 * 254 / 256)  # mean of 1, 2, 3 (x 254 / 256)
    assert info["max_idleness"].item() == 3

    before = sc.mean_idleness_now()
    place(env, 0, centre(0, 15))
    place(env, 1, (-0.5, centre(2, 3)[1]))  # on the border of cells (2, 3) and (2, 4): visits both
    _, rews, _, _ = step(env)
    grid = sc.idleness[0]
    assert grid[8, 8] == 1 and grid[0, 15] == 0 and grid[2, 3] == 0 and grid[2, 4] == 0
    assert (grid == 4).sum() == 252
    now = (1 + 4 * 252) / 256
    assert sc.mean_idleness_now().item() == pytest.approx(now)
    assert sc.patrol_term.item() == pytest.approx(before.item() - now)  # the drop in team idleness
    assert rews[0].item() == pytest.approx(0.5 * (before.item() - now))  # alpha 0.5, no search event
    level = make(n_agents=2, n_searchers=1, patrol_reward="level")  # minus the mean idleness, every step
    level.reset()
    for _ in range(2):
        _, rews, _, _ = step(level)
    assert rews[0].item() == pytest.approx(-0.5 * level.scenario.mean_idleness_now().item() / 50)

    visit = make(n_agents=2, n_searchers=1)  # the default: the idleness the visits cleared this step
    visit.reset()
    assert visit.scenario.patrol_reward == "visit"
    place(visit, 0, centre(8, 8))
    place(visit, 1, centre(2, 3))
    for _ in range(3):
        _, rews, _, _ = step(visit)  # both agents stay on their cells: nothing to clear after the first step
    assert rews[0].item() == 0
    place(visit, 0, centre(0, 15))  # idleness 3 (unvisited for the last 3 steps)
    place(visit, 1, (-0.5, centre(2, 3)[1]))  # cells (2, 3), cleared a step ago, and (2, 4), idle for 3
    _, rews, _, _ = step(visit)
    assert rews[0].item() == pytest.approx(0.5 * (3 + 0 + 3) / (50 * 2))  # alpha 0.5, 2 agents

    # The patch around the corner cell: -1 outside the arena, idleness / 50 inside, row-major from low y.
    patch = env.scenario.observation(env.agents[0])[0, PATCH].reshape(5, 5)
    assert (patch[:2] == -1).all() and (patch[:, 3:] == -1).all()
    assert patch[2, 2] == 0 and patch[2, 1].item() == pytest.approx(4 / 50)


def test_rooms_map_masks_wall_cells_and_spawns_clear_of_walls():
    env = make(num_envs=32, map="rooms", grid_size=15)
    env.reset()
    sc = env.scenario
    assert len(sc.walls) == 5
    # With 15 columns the middle column (x = 0) lies in the vertical wall except at its two doorways,
    # and the middle row's right half in the horizontal wall except at its doorway.
    assert (~sc.free_cells).sum() == 13
    assert (~sc.free_cells[:, 7]).sum() == 9 and (~sc.free_cells[7, 8:]).sum() == 4
    assert not sc.free_cells[0, 7] and not sc.free_cells[7, 13] and sc.free_cells[7, 11]  # (7, 11): doorway
    for _ in range(2):
        step(env)
    assert (sc.idleness[:, ~sc.free_cells] == 0).all()
    pos = sc.agent_positions()
    assert (sc.wall_clearance(pos) > sc.agent_radius).all()
    assert (sc.wall_clearance(sc.source_pos) > sc.agent_radius).all()
    assert (torch.cdist(pos, pos) + 10 * torch.eye(6) > 2 * sc.agent_radius).all()  # no overlap at spawn


def test_signal_follows_path_loss_and_only_carriers_read_it():
    env = make(
        n_agents=3, n_searchers=1, n_sensing=1, shadowing_std=0.0, source_window=(1, 1), share_signal=True
    )
    obs = env.reset()
    sc = env.scenario
    assert sc.path_loss(torch.tensor([0.05, 0.1, 1.0])).tolist() == pytest.approx([-40, -40, -60])
    assert all((o[:, SIGNAL] == 0).all() for o in obs)  # before the source appears
    sc.source_pos[:] = torch.tensor([0.5, 0.5])
    place(env, 0, (-0.5, -0.5))
    place(env, 1, (0.5, -0.5))
    place(env, 2, (0.5, 0.0))  # searcher_0, the only carrier, 0.5 from the source
    obs, _, _, _ = step(env)
    first = (-40 - 20 * math.log10(0.5 / 0.1) + 40) / 10
    assert obs[2][0, SIGNAL].tolist() == pytest.approx([first, 0.0, 1.0])
    assert (obs[0][:, SIGNAL] == 0).all() and (obs[1][:, SIGNAL] == 0).all()
    assert sc.rss_mean[0, 1].item() == pytest.approx(-40 - 20 * math.log10(1.0 / 0.1))  # any agent, no noise

    place(env, 2, (0.5, 0.3))  # 0.2 from the source
    obs, _, _, _ = step(env)
    second = (-40 - 20 * math.log10(0.2 / 0.1) + 40) / 10
    assert obs[2][0, SIGNAL].tolist() == pytest.approx([second, second - first, 1.0])
    # patroller_0 sees searcher_0 (its second teammate slot) and, with share_signal, its reading.
    slot = obs[0][0, 34 + 7 : 34 + 14]
    assert slot.tolist() == pytest.approx([1.0, 1.0, 0.8, 1.0, 1.0, second, 1.0], abs=1e-4)


def test_shadowing_noise_and_restricted_communication():
    env = make(
        num_envs=400,
        n_agents=2,
        n_searchers=1,
        n_sensing=1,
        source_window=(1, 1),
        shadowing_std=2.0,
        comm_range=0.5,
    )
    env.reset()
    obs, _, _, _ = step(env)
    sc = env.scenario
    noise = obs[1][:, 31] - (sc.rss_mean[:, 1] - sc.rss_ref) / sc.signal_scale
    assert noise.std().item() == pytest.approx(0.2, abs=0.03) and abs(noise.mean().item()) < 0.03
    dist = torch.linalg.vector_norm(sc.agent_positions()[:, 0] - sc.agent_positions()[:, 1], dim=-1)
    slot = obs[0][:, 34:41]
    assert (slot[dist > 0.5] == 0).all() and (slot[dist <= 0.5, 0] == 1).all()
    assert (slot[:, 5:] == 0).all()  # no sharing of readings by default


def test_find_event_time_to_find_and_rewards():
    env = make(num_envs=2, n_agents=2, n_searchers=1, n_sensing=1, source_window=(2, 2), shadowing_std=0.0)
    env.reset()
    sc = env.scenario
    sc.source_pos[:] = torch.tensor([0.0, 0.0])
    place(env, 0, (0.0, 0.09))  # patroller_0 (no sensor) within the find radius: does not find it
    place(env, 1, (0.6, 0.6))  # searcher_0, the carrier
    for t in range(1, 4):
        _, rews, _, infos = step(env)
        assert infos[0]["found"].tolist() == [0, 0]
        assert infos[0]["source_appeared"].tolist() == ([0, 0] if t < 2 else [1, 1])
    assert infos[0]["time_to_find"].tolist() == [1, 1]  # censored: steps since appearance

    place(env, 1, (0.0, -0.05), env_index=0)
    _, rews, _, infos = step(env)
    info = infos[1]
    assert info["found"].tolist() == [1, 0] and info["source_active"].tolist() == [0, 1]
    assert info["time_to_find"].tolist() == [2, 2]  # found 2 steps after appearing; env 1 censored at 2
    bonus = rews[0] - 0.5 * sc.patrol_term  # team reward: (1 - alpha) patrol + alpha * find_bonus
    assert bonus.tolist() == pytest.approx([5.0, 0.0])

    obs, _, _, infos = step(env)
    assert infos[0]["time_to_find"].tolist() == [2, 3]
    assert (obs[1][0, SIGNAL] == 0).all() and obs[1][1, 33] == 1  # the source is gone once found

    env.reset_at(0)
    assert sc.t.tolist() == [0, 5] and sc.found.tolist() == [False, False]
    assert (sc.idleness[0] == 0).all() and (sc.idleness[1] > 0).any()
    assert sc.info(env.agents[0])["time_to_find"].tolist() == [0, 3]


def test_role_rewards_pay_patrollers_for_patrol_and_searchers_for_search():
    env = make(
        n_agents=2,
        n_searchers=1,
        n_sensing=1,
        source_window=(1, 1),
        reward_mode="role",
        shadowing_std=0.0,
        shaping_coef=1.0,
    )
    env.reset()
    sc = env.scenario
    sc.source_pos[:] = torch.tensor([0.0, 0.0])
    place(env, 0, (-0.8, -0.8))
    place(env, 1, (0.5, 0.0))
    _, rews, _, _ = step(env)
    assert rews[0].item() == pytest.approx(sc.patrol_term.item()) and rews[1].item() == 0  # no gain yet
    place(env, 1, (0.2, 0.0))
    _, rews, _, _ = step(env)
    assert rews[1].item() == pytest.approx(2 * math.log10(0.5 / 0.2), abs=1e-4)  # shaping: gain / 10 dB
    place(env, 1, (0.05, 0.0))
    _, rews, _, _ = step(env)
    assert rews[1].item() == pytest.approx(10.0 + 2 * math.log10(0.2 / 0.1), abs=1e-4)  # find + gain


def test_platform_builds_it_by_name_with_role_groups():
    cfg = load_config(["env=vmas/patrol_search", "env.num_envs=2", "env.map=rooms"]).env
    env = make_env(cfg, "cpu", seed=0)
    info = describe_env(env, cfg.name, cfg.max_steps)
    groups = [(g.name, g.n_agents, g.obs_dim) for g in info.groups]
    assert groups == [("patroller", 3, 69), ("searcher", 3, 69)]
    td = env.rollout(3)
    assert td["next", "searcher", "info", "time_to_find"].shape == (2, 3, 3, 1)
    bad = load_config(["env=vmas/patrol_search", "env.num_envs=2", "env.n_searcher=2"]).env
    with pytest.raises(ConfigError, match="n_searcher"):
        make_env(bad, "cpu", seed=0)


def test_env_groups_regroup_vmas_agents_by_name_or_index():
    """env.groups puts patrollers and searchers in one group (for fully shared networks across roles)."""
    cfg = load_config(["env=vmas/patrol_search", "env.groups={team: [0, 1, 2, searcher_0, 4, 5]}"])
    env = make_env(cfg.env, "cpu", 0, num_envs=2)
    (group,) = describe_env(env, cfg.env.name, 200).groups
    assert group.name == "team" and group.n_agents == 6 and group.agent_names[3] == "searcher_0"
    assert env.reset()["team", "observation"].shape == (2, 6, 69)
    for groups, message in (
        ("{team: [0, 1, 2, 3, 4]}", "missing: \\['searcher_2'\\]"),
        ("{a: [0, 1, 2, 3, 4, 5], b: [0]}", "in several groups: \\['patroller_0'\\]"),
        ("{team: [0, 1, 2, 3, 4, 5, 6]}", "lists 6, which is not an agent"),
    ):
        with pytest.raises(ConfigError, match=message):
            cfg = load_config(["env=vmas/patrol_search", f"env.groups={groups}"])
            make_env(cfg.env, "cpu", 0, num_envs=1)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_short_learning_run_improves_the_patrol_return(tmp_path, precision):
    """MAPPO with one shared network for a team of 2 on a small arena: within 48k frames the team learns
    to clear idle cells (the return, the idleness its visits clear, rises clearly), with the update in
    float32 or under bfloat16 autocast."""
    from marl.run_logger import read_metrics
    from marl.training import train

    cfg = load_config(
        [
            "experiment=patrol_search",
            f"experiment.runs_dir={tmp_path}",
            "experiment.progress=false",
            "experiment.total_frames=48000",
            "experiment.frames_per_batch=3200",
            "experiment.eval_every=0",
            "env.num_envs=32",
            "env.max_steps=100",
            "env.n_agents=2",
            "env.n_searchers=1",
            "env.n_sensing=1",
            "env.groups={team: [0, 1]}",
            "algorithm.minibatch_size=800",
            "model.hidden_sizes=[64, 64]",
            "sharing.roles={patrollers: [0], searchers: [1]}",
            f"algorithm.precision={precision}",
        ]
    )
    returns = [row["train/return_mean"] for row in read_metrics(train(cfg))]
    assert len(returns) == 15
    assert sum(returns[-3:]) / 3 > returns[0] + 5, returns

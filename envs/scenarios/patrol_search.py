"""Patrollers and searchers: keep an arena patrolled and find a radio source when it appears.

After York et al. (SAC 2026). A batched VMAS scenario: every quantity is a tensor over `world.batch_dim`
environments, updated with torch ops (no loop over environments).

Arena and idleness. The arena is the square [-L, L]^2 (L = `arena_size`), covered by a `grid_size` x
`grid_size` idleness grid. Each step every free cell's idleness grows by one, then every cell whose centre
lies within `visit_radius` of an agent resets to zero. Cells whose centre lies inside a wall are excluded
(masked) from the grid, its metrics and the reward. `map: open` is the empty arena; `map: rooms` splits it
into three rooms with walls and doorways (a vertical wall at x = 0 with two doorways, and a horizontal wall
at y = 0 across the right half with one).

Radio source. At a step drawn uniformly from `source_window` (inclusive, counted from the reset) a source
appears at a random free position. Its received strength at distance d follows the log-distance path-loss
model  RSS(d) = rss_ref - 10 * path_loss_exp * log10(max(d, ref_dist) / ref_dist) + N(0, shadowing_std^2)
(dBm), the noise drawn independently for each reading; walls do not attenuate it. Only sensor carriers read
it. It is found when a carrier comes within `find_radius` of it; it then disappears (one source per episode).

Team composition. Agents `0 .. n_agents - n_searchers - 1` are patrollers (`patroller_<k>`), the rest are
searchers (`searcher_<k>`). `n_sensing` agents (default: n_searchers) carry the sensor: searchers first,
in order, then patrollers, in order. Role and capability are 0/1 features of the observation.

Actions. Each agent's action is a 2-D force in [-1, 1]^2 (times `agent_accel`); its speed is capped at
`agent_speed`. `action_mode: velocity` (default) applies it as it is, so a weak action moves the agent
slowly. `action_mode: heading` keeps only its direction: every non-zero action pushes at the full
`agent_accel` (a robot that always drives at cruising speed and steers). The hand-designed controllers
already push at about unit strength (mean norm 1.00), so for them the two modes nearly coincide; a learned
Gaussian policy's deterministic (mean) action is weaker (median norm about 0.66 for a shared actor trained
3M frames among rooms), and under `velocity` its agents then move at about two thirds of the speed the
hand-designed ones do.

Observation of agent i (flat vector, the same size for every agent):
    pos (2), vel (2), is_searcher (1), has_sensor (1),
    idleness patch (patch_size^2): the cells around the agent's cell, row-major from the lowest y and lowest
        x, each idleness / idleness_scale, or -1 for walls and cells outside the arena,
    signal (3): reading (RSS - rss_ref) / signal_scale, its change since the last step, and 1 if a reading
        is present; all zeros for agents without a sensor or while no source is active,
    teammates, one slot of 7 per other agent in agent order: in_range, relative position (2), is_searcher,
        has_sensor, and with `share_signal` the teammate's signal reading and present flag (else zeros);
        the whole slot is zero when the teammate is beyond `comm_range` (None: unlimited).

Reward. patrol (`patrol_reward`) is one of
    visit (default): the idleness the team's visits cleared this step (the sum over the cells it reset of
        their idleness), / (idleness_scale * n_agents): about 1 per step for a team that keeps finding cells
        idle for idleness_scale steps;
    level: minus the mean idleness over free cells / idleness_scale;
    drop: the drop in mean idleness this step.
The time-averaged mean idleness (the patrol objective) is the sum over steps s of (T - s + 1) times the
growth minus what was cleared at s, so `visit` pays each clearing when it happens, in proportion to the
idleness it removed: an immediate, dense signal for PPO. `level` sums to the objective exactly, but every
step pays for all earlier steps' coverage, and its size grows with the step count (which is not in the
observation): a noisy target for the critic; in a short test run it did not learn where `visit` did.
`drop` telescopes: over an episode it sums to the first step's idleness minus the last's.
search = find_bonus on the step the source is found
+ shaping_coef * the gain in noise-free signal strength (/ signal_scale) of sensor carriers since the last
step. `reward_mode: team`: every agent gets (1 - alpha) * patrol + alpha * search, with the search shaping
averaged over carriers. `reward_mode: role`: patrollers get patrol, searchers get find_bonus on the find step
plus their own shaping (alpha is unused).

Info (the same for every agent, tensors [batch]): mean_idleness (time average, since the reset, of the mean
idleness over free cells), max_idleness (worst cell idleness seen since the reset), found (0/1),
time_to_find (steps from appearance to finding; while not found it is censored: steps since appearance, and
0 before the source appears), source_appeared and source_active (0/1). Read them at the episode's last step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from vmas.simulator.core import Agent, Box, Landmark, Sphere, World
from vmas.simulator.scenario import BaseScenario
from vmas.simulator.utils import Color, ScenarioUtils

from marl.errors import ConfigError

MAPS = ("open", "rooms")
ACTION_MODES = ("velocity", "heading")
PATROL_REWARDS = ("visit", "level", "drop")
REWARD_MODES = ("team", "role")
N_CANDIDATES = 64  # candidate points per free-position draw (rejection sampling, vectorised)


class PatrolSearchScenario(BaseScenario):
    """VMAS scenario: a team patrols an idleness grid and searches for a radio source that appears."""

    def make_world(self, batch_dim: int, device: torch.device, **kwargs) -> World:
        """Read the scenario arguments, build agents, walls and the source, and allocate the state."""
        self.n_agents: int = kwargs.pop("n_agents", 6)
        self.n_searchers: int = kwargs.pop("n_searchers", 3)
        n_sensing = kwargs.pop("n_sensing", None)  # None: the searchers carry the sensors
        self.n_sensing: int = self.n_searchers if n_sensing is None else n_sensing
        self.map_name: str = kwargs.pop("map", "open")
        self.arena_size: float = kwargs.pop("arena_size", 1.0)
        self.grid_size: int = kwargs.pop("grid_size", 16)
        self.visit_radius: float = kwargs.pop("visit_radius", 0.1)
        self.patch_size: int = kwargs.pop("patch_size", 5)
        self.idleness_scale: float = kwargs.pop("idleness_scale", 50.0)
        self.agent_radius: float = kwargs.pop("agent_radius", 0.05)
        self.agent_speed: float = kwargs.pop("agent_speed", 0.5)
        self.agent_accel: float = kwargs.pop("agent_accel", 2.0)
        self.action_mode: str = kwargs.pop("action_mode", "velocity")
        self.wall_thickness: float = kwargs.pop("wall_thickness", 0.05)
        self.door_width: float = kwargs.pop("door_width", 0.4)
        self.comm_range: float | None = kwargs.pop("comm_range", None)
        self.share_signal: bool = kwargs.pop("share_signal", False)
        self.source_window: tuple[int, int] = tuple(kwargs.pop("source_window", (10, 100)))
        self.find_radius: float = kwargs.pop("find_radius", 0.1)
        self.rss_ref: float = kwargs.pop("rss_ref", -40.0)
        self.ref_dist: float = kwargs.pop("ref_dist", 0.1)
        self.path_loss_exp: float = kwargs.pop("path_loss_exp", 2.0)
        self.shadowing_std: float = kwargs.pop("shadowing_std", 2.0)
        self.signal_scale: float = kwargs.pop("signal_scale", 10.0)
        self.alpha: float = kwargs.pop("alpha", 0.5)
        self.reward_mode: str = kwargs.pop("reward_mode", "team")
        self.patrol_reward: str = kwargs.pop("patrol_reward", "visit")
        self.find_bonus: float = kwargs.pop("find_bonus", 10.0)
        self.shaping_coef: float = kwargs.pop("shaping_coef", 0.0)
        ScenarioUtils.check_kwargs_consumed(kwargs)
        self._check_args()

        L = self.arena_size
        world = World(batch_dim, device, x_semidim=L, y_semidim=L)
        self.is_searcher = torch.arange(self.n_agents, device=device) >= self.n_agents - self.n_searchers
        order = torch.cat([torch.nonzero(self.is_searcher), torch.nonzero(~self.is_searcher)]).squeeze(-1)
        self.has_sensor = torch.zeros(self.n_agents, dtype=torch.bool, device=device)
        self.has_sensor[order[: self.n_sensing]] = True
        self.index = {}
        for i in range(self.n_agents):
            searcher = bool(self.is_searcher[i])
            k = i - (self.n_agents - self.n_searchers) if searcher else i
            name = f"searcher_{k}" if searcher else f"patroller_{k}"
            agent = Agent(
                name=name,
                shape=Sphere(radius=self.agent_radius),
                collide=True,
                max_speed=self.agent_speed,
                u_multiplier=self.agent_accel,
                color=Color.RED if searcher else Color.BLUE,
            )
            world.add_agent(agent)
            self.index[name] = i

        self.walls = self._wall_rects(device)  # [n_walls, 4]: centre x, centre y, half width, half height
        for w, (_, _, hw, hh) in enumerate(self.walls.tolist()):
            world.add_landmark(
                Landmark(
                    name=f"wall_{w}",
                    collide=True,
                    movable=False,
                    shape=Box(2 * hw, 2 * hh),
                    color=Color.BLACK,
                )
            )
        self.source = Landmark(
            name="source", collide=False, movable=False, shape=Sphere(radius=0.03), color=Color.GREEN
        )
        world.add_landmark(self.source)

        cell = 2 * L / self.grid_size
        coords = -L + cell * (torch.arange(self.grid_size, device=device, dtype=torch.float32) + 0.5)
        cy, cx = torch.meshgrid(coords, coords, indexing="ij")  # row = y index (from -L), col = x index
        self.cell_size = cell
        self.centres = torch.stack([cx, cy], dim=-1).reshape(-1, 2)  # [cells, 2], row-major
        offset = (self.centres[:, None] - self.walls[:, :2]).abs()  # [cells, walls, 2]
        inside = (offset < self.walls[:, 2:]).all(-1).any(-1)  # cell centre inside a wall
        self.free_cells = ~inside.reshape(self.grid_size, self.grid_size)  # [H, W]
        self.n_free = int(self.free_cells.sum())

        B, N, H = batch_dim, self.n_agents, self.grid_size
        zeros = dict(device=device, dtype=torch.float32)
        self.t = torch.zeros(B, dtype=torch.long, device=device)
        self.idleness = torch.zeros(B, H, H, **zeros)
        self.idle_sum = torch.zeros(B, **zeros)  # sum over steps of the mean idleness
        self.idle_max = torch.zeros(B, **zeros)
        self.appear_step = torch.zeros(B, dtype=torch.long, device=device)
        self.source_pos = torch.zeros(B, 2, **zeros)
        self.appeared = torch.zeros(B, dtype=torch.bool, device=device)
        self.found = torch.zeros(B, dtype=torch.bool, device=device)
        self.found_step = torch.zeros(B, dtype=torch.long, device=device)
        self.reading = torch.zeros(B, N, **zeros)  # normalised signal reading, 0 when not sensing
        self.reading_delta = torch.zeros(B, N, **zeros)
        self.sensing = torch.zeros(B, N, dtype=torch.bool, device=device)  # carrier and source active
        self.rss_mean = torch.zeros(B, N, **zeros)  # noise-free RSS (dBm) at every agent, any capability
        self.patrol_term = torch.zeros(B, **zeros)
        self.found_now = torch.zeros(B, dtype=torch.bool, device=device)
        self.gain = torch.zeros(B, N, **zeros)  # shaping gain of carriers this step
        self._observations: Tensor | None = None  # all agents' observations this step, built on demand
        return world

    def _check_args(self) -> None:
        """Reject inconsistent arguments with a plain message."""
        if not 0 <= self.n_searchers <= self.n_agents or self.n_agents < 1:
            raise ConfigError(
                f"Need 0 <= n_searchers <= n_agents, n_agents >= 1; got {self.n_searchers}, {self.n_agents}."
            )
        if not 0 <= self.n_sensing <= self.n_agents:
            raise ConfigError(f"Need 0 <= n_sensing <= n_agents; got {self.n_sensing}, {self.n_agents}.")
        for key, value, allowed in (
            ("map", self.map_name, MAPS),
            ("action_mode", self.action_mode, ACTION_MODES),
            ("reward_mode", self.reward_mode, REWARD_MODES),
            ("patrol_reward", self.patrol_reward, PATROL_REWARDS),
        ):
            if value not in allowed:
                raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}.")
        lo, hi = self.source_window
        if not 0 < lo <= hi:
            raise ConfigError(f"source_window must be [lo, hi] with 0 < lo <= hi; got {self.source_window}.")
        if self.patch_size % 2 != 1:
            raise ConfigError(f"patch_size must be odd; got {self.patch_size}.")

    def _wall_rects(self, device: torch.device) -> Tensor:
        """Axis-aligned wall rectangles [n_walls, 4] (centre x, centre y, half width, half height)."""
        if self.map_name == "open":
            return torch.zeros(0, 4, device=device)
        L, t, d = self.arena_size, self.wall_thickness / 2, self.door_width / 2
        # A vertical wall at x = 0 (doorways at y = +-L/2) and a horizontal one at y = 0 on the right
        # (doorway at x = L/2): three rooms.
        vertical = [(-L, -L / 2 - d), (-L / 2 + d, L / 2 - d), (L / 2 + d, L)]
        horizontal = [(t, L / 2 - d), (L / 2 + d, L)]
        rects = [(0.0, (a + b) / 2, t, (b - a) / 2) for a, b in vertical]
        rects += [((a + b) / 2, 0.0, (b - a) / 2, t) for a, b in horizontal]
        return torch.tensor(rects, device=device, dtype=torch.float32)

    def wall_clearance(self, points: Tensor) -> Tensor:
        """Distance from each point [..., 2] to the nearest wall (inf on the open map)."""
        if len(self.walls) == 0:
            return torch.full(points.shape[:-1], math.inf, device=points.device)
        gap = ((points[..., None, :] - self.walls[:, :2]).abs() - self.walls[:, 2:]).clamp(min=0)
        return torch.linalg.vector_norm(gap, dim=-1).min(-1).values

    def sample_free(self, n: int, margin: float, avoid: Tensor | None = None, min_sep: float = 0.0) -> Tensor:
        """`n` random points [n, 2] at least `margin` from walls and the border, and more than `min_sep`
        from the points `avoid` [n, m, 2]; vectorised rejection sampling over N_CANDIDATES candidates."""
        half = self.arena_size - margin
        cand = (torch.rand(n, N_CANDIDATES, 2, device=self.world.device) * 2 - 1) * half
        ok = self.wall_clearance(cand) > margin
        if avoid is not None and avoid.shape[1] > 0:
            ok &= (torch.cdist(cand, avoid) > min_sep).all(-1)
        pick = ok.to(torch.float32).argmax(dim=1)  # first valid candidate (the first one if none is)
        return cand[torch.arange(n, device=cand.device), pick]

    def reset_world_at(self, env_index: int | None = None) -> None:
        """Reset walls, agents, grid, source and timers of one environment (or all when None)."""
        world = self.world
        idx = (
            torch.arange(world.batch_dim, device=world.device)
            if env_index is None
            else torch.tensor([env_index], device=world.device)
        )
        n = len(idx)
        for w, wall in enumerate(world.landmarks[: len(self.walls)]):
            wall.set_pos(self.walls[w, :2].expand(n, 2).clone(), batch_index=env_index)
            wall.set_rot(torch.zeros(n, 1, device=world.device), batch_index=env_index)
        placed = torch.zeros(n, 0, 2, device=world.device)
        for agent in world.agents:
            pos = self.sample_free(n, self.agent_radius * 1.5, placed, 2.5 * self.agent_radius)
            agent.set_pos(pos, batch_index=env_index)
            agent.set_vel(torch.zeros(n, 2, device=world.device), batch_index=env_index)
            placed = torch.cat([placed, pos[:, None]], dim=1)

        lo, hi = self.source_window
        self.appear_step[idx] = torch.randint(lo, hi + 1, (n,), device=world.device)
        self.source_pos[idx] = self.sample_free(n, self.agent_radius * 1.5)
        self.source.set_pos(self.source_pos[idx], batch_index=env_index)
        for tensor in (
            self.t,
            self.idleness,
            self.idle_sum,
            self.idle_max,
            self.appeared,
            self.found,
            self.found_step,
            self.reading,
            self.reading_delta,
            self.sensing,
            self.rss_mean,
            self.patrol_term,
            self.found_now,
            self.gain,
        ):
            tensor[idx] = 0
        self.source.is_rendering[idx] = False
        self._observations = None

    def agent_positions(self) -> Tensor:
        """Positions of all agents [batch, n_agents, 2]."""
        return torch.stack([a.state.pos for a in self.world.agents], dim=1)

    def post_step(self) -> None:
        """Advance idleness, the source and the sensors by one step, and compute this step's reward terms."""
        self._observations = None
        pos = self.agent_positions()
        self.t += 1
        free = self.free_cells
        before = self.mean_idleness_now()
        dist = torch.cdist(pos, self.centres.expand(pos.shape[0], -1, -1))  # [B, N, cells]
        visited = (dist <= self.visit_radius).any(1).reshape(self.idleness.shape)
        cleared = (self.idleness * (visited & free)).flatten(1).sum(1)  # idleness the visits removed
        self.idleness = torch.where(visited | ~free, 0.0, self.idleness + 1)
        now = self.mean_idleness_now()
        self.idle_sum += now
        self.idle_max = torch.maximum(self.idle_max, self.idleness.flatten(1).max(1).values)
        if self.patrol_reward == "visit":
            self.patrol_term = cleared / (self.idleness_scale * self.n_agents)
        elif self.patrol_reward == "level":
            self.patrol_term = -now / self.idleness_scale
        else:
            self.patrol_term = before - now

        # The source appears; sensors of carriers read it while it is active.
        was_sensing = self.sensing
        self.appeared |= self.t >= self.appear_step
        active = self.appeared & ~self.found
        d = torch.linalg.vector_norm(pos - self.source_pos[:, None], dim=-1)  # [B, N]
        rss_mean_prev = self.rss_mean
        self.rss_mean = self.path_loss(d)
        rss = self.rss_mean + self.shadowing_std * torch.randn_like(d)
        self.sensing = active[:, None] & self.has_sensor
        reading = torch.where(self.sensing, (rss - self.rss_ref) / self.signal_scale, 0.0)
        both = self.sensing & was_sensing
        self.reading_delta = torch.where(both, reading - self.reading, 0.0)
        self.reading = reading
        self.gain = torch.where(both, (self.rss_mean - rss_mean_prev) / self.signal_scale, 0.0)

        # Found: a carrier within the find radius of an active source.
        self.found_now = active & ((d <= self.find_radius) & self.has_sensor).any(1)
        self.found |= self.found_now
        self.found_step = torch.where(self.found_now, self.t, self.found_step)
        gone = self.found_now[:, None]
        self.sensing = self.sensing & ~gone
        self.reading = torch.where(gone, 0.0, self.reading)
        self.reading_delta = torch.where(gone, 0.0, self.reading_delta)
        self.source.is_rendering[:] = self.appeared & ~self.found

    def path_loss(self, d: Tensor) -> Tensor:
        """Noise-free received strength (dBm) at distance `d` from the source (log-distance model)."""
        ratio = d.clamp(min=self.ref_dist) / self.ref_dist
        return self.rss_ref - 10 * self.path_loss_exp * torch.log10(ratio)

    def mean_idleness_now(self) -> Tensor:
        """Mean idleness over free cells [batch]."""
        return (self.idleness * self.free_cells).flatten(1).sum(1) / max(self.n_free, 1)

    def idleness_patch(self, pos: Tensor) -> Tensor:
        """The patch_size x patch_size grid cells around each of the positions `pos` [batch, agents, 2],
        flattened: [batch, agents, patch^2]."""
        r, H = self.patch_size // 2, self.grid_size
        grid = torch.where(self.free_cells, self.idleness / self.idleness_scale, -1.0)
        padded = torch.nn.functional.pad(grid, (r, r, r, r), value=-1.0)
        cell = ((pos + self.arena_size) / self.cell_size).floor().long().clamp(0, H - 1)  # [B, N, (x, y)]
        offsets = torch.arange(2 * r + 1, device=pos.device)
        rows = (cell[..., 1, None] + offsets)[..., :, None]  # [B, N, patch, 1]
        cols = (cell[..., 0, None] + offsets)[..., None, :]  # [B, N, 1, patch]
        batch = torch.arange(pos.shape[0], device=pos.device)[:, None, None, None]
        return padded[batch, rows, cols].flatten(2)

    def process_action(self, agent: Agent) -> None:
        """`action_mode: heading`: the force keeps its direction at full strength (zero stays zero)."""
        if self.action_mode == "heading":
            u = agent.action.u
            norm = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
            agent.action.u = torch.where(norm > 1e-6, u * (self.agent_accel / norm.clamp(min=1e-6)), u)

    def observation(self, agent: Agent) -> Tensor:
        """The flat observation described in the module docstring. VMAS asks agent by agent; all agents'
        observations are computed together once per step (or reset) and sliced."""
        if self._observations is None:
            self._observations = self.all_observations()
        return self._observations[:, self.index[agent.name]]

    def all_observations(self) -> Tensor:
        """Every agent's observation [batch, n_agents, obs_dim], batched over agents."""
        B, N = self.world.batch_dim, self.n_agents
        pos = self.agent_positions()
        vel = torch.stack([a.state.vel for a in self.world.agents], dim=1)
        caps = torch.stack([self.is_searcher, self.has_sensor], -1).float().expand(B, N, 2)
        patches = self.idleness_patch(pos)
        signal = torch.stack([self.reading, self.reading_delta, self.sensing.float()], -1)
        rel = pos[:, None, :, :] - pos[:, :, None, :]  # [B, i, j, 2]: j relative to i
        in_range = torch.ones(B, N, N, dtype=torch.bool, device=pos.device)
        if self.comm_range is not None:
            in_range = torch.linalg.vector_norm(rel, dim=-1) <= self.comm_range
        shared = torch.stack([self.reading, self.sensing.float()], -1)
        if not self.share_signal:
            shared = torch.zeros_like(shared)
        slots = torch.cat(
            [
                torch.ones(B, N, N, 1, device=pos.device),
                rel,
                caps[:, None].expand(B, N, N, 2),
                shared[:, None].expand(B, N, N, 2),
            ],
            -1,
        )
        slots = slots * in_range[..., None]
        others = ~torch.eye(N, dtype=torch.bool, device=pos.device)  # every agent but i, in agent order
        slots = slots[:, others].reshape(B, N, (N - 1) * slots.shape[-1])
        return torch.cat([pos, vel, caps, patches, signal, slots], -1)

    def search_term(self, i: int | None) -> Tensor:
        """Find bonus plus shaping: for agent `i`'s own gain, or averaged over carriers when `i` is None."""
        bonus = self.find_bonus * self.found_now.float()
        if i is not None:
            return bonus + self.shaping_coef * self.gain[:, i]
        if self.n_sensing == 0:
            return bonus
        return bonus + self.shaping_coef * self.gain[:, self.has_sensor].mean(1)

    def reward(self, agent: Agent) -> Tensor:
        """Team mix (1 - alpha) * patrol + alpha * search, or per role (see the module docstring)."""
        i = self.index[agent.name]
        if self.reward_mode == "team":
            return (1 - self.alpha) * self.patrol_term + self.alpha * self.search_term(None)
        if self.is_searcher[i]:
            return self.search_term(i)
        return self.patrol_term.clone()

    def done(self) -> Tensor:
        """Episodes end only at the horizon (max_steps), never on their own."""
        return torch.zeros(self.world.batch_dim, dtype=torch.bool, device=self.world.device)

    def time_to_find(self) -> Tensor:
        """Steps from appearance to finding; censored (steps since appearance) if not found; 0 before."""
        end = torch.where(self.found, self.found_step, self.t)
        return torch.where(self.appeared, end - self.appear_step, 0).float()

    def info(self, agent: Agent) -> dict[str, Tensor]:
        """Episode metrics so far (the same for every agent); see the module docstring."""
        return {
            "mean_idleness": self.idle_sum / self.t.clamp(min=1),
            "max_idleness": self.idle_max.clone(),
            "found": self.found.float(),
            "time_to_find": self.time_to_find(),
            "source_appeared": self.appeared.float(),
            "source_active": (self.appeared & ~self.found).float(),
        }

    def extra_render(self, env_index: int = 0) -> list:
        """Shade each free cell by its idleness (darker = more idle) under the entities."""
        from vmas.simulator import rendering

        geoms = []
        half = self.cell_size / 2
        level = (self.idleness[env_index] / self.idleness_scale).clamp(max=1).flatten().tolist()
        free = self.free_cells.flatten().tolist()
        for (x, y), shade, is_free in zip(self.centres.tolist(), level, free):
            if not is_free or shade == 0:
                continue
            cell = rendering.FilledPolygon(
                [(x - half, y - half), (x + half, y - half), (x + half, y + half), (x - half, y + half)]
            )
            cell.set_color(1.0, 1.0 - 0.6 * shade, 1.0 - 0.6 * shade, 0.5)
            geoms.append(cell)
        return geoms

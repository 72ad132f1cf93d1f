"""Hand-designed controllers for the patrollers-and-searchers scenario (`patrol_search.py`).

Baselines of the kind the study compares learned teams with. Every controller acts only from the agents'
observation tensor (what a robot has: its position, velocity, role, local idleness patch, its signal
reading and what it sees of its teammates), batched over environments and agents with torch ops.

    layout = ObservationLayout.from_kwargs(scenario_kwargs)
    policy = PatrolSearchHeuristic(layout, team="fixed_roles", search="ecoli", seed=0)
    actions = policy(obs)  # obs [B, n_agents, obs_dim] in agent order -> actions [B, n_agents, 2] in [-1, 1]

Behaviours (each returns a desired direction per agent; the team decides who runs which):
    patrol   go to the most idle reachable cell of the local patch (idleness against distance, a pull
             along the current velocity for persistence, a little noise for ties), pushed away from
             close teammates so the team spreads out.
    ecoli    run and tumble: keep the run's direction while the reading improves (compared every run_steps
             steps, 3 by default, with the reading at the last comparison: the sign of the difference),
             otherwise tumble to a random direction.
    pso      E. coli plus a pull towards the teammate with the best shared reading when it beats one's
             own by a margin (particle-swarm-like). Teammates' readings are in the observation only with
             `share_signal=True`; without it the pull never fires and pso is exactly E. coli.
    follow   (switch team, agents without a sensor) go towards the teammate with the best shared reading.

Teams (`TEAMS`):
    random       uniform random actions (the reference).
    patrol       everyone patrols, nobody searches (the patrol-only reference).
    fixed_roles  heterogeneous: patrollers always patrol (with a sensor too); searchers run the search
                 behaviour while they have a reading and otherwise explore by patrolling (coverage is the
                 exploration: the patrol behaviour heads for the least recently visited cells).
    switch       homogeneous: everyone patrols until a signal is detected (one's own reading, or with
                 `share_signal` any visible teammate's); then sensor carriers search and the others follow
                 the best visible reading (or keep patrolling when none is visible).

Walls and borders. Every behaviour's direction goes through `_unstick`: the arena border is known from the
position (VMAS clamps the position there but keeps the velocity, so the velocity's outward part is ignored),
and an agent that pushes without making progress (a wall or a teammate in the way: the velocity along its
direction is small) slides along the obstacle: it adds the perpendicular on the side it is already moving
(the velocity is the memory), a random side when it is not moving at all. Walls are in the idleness patch
(-1) only where a cell's centre lies inside a wall; with an even `grid_size` (the default 16) the walls
fall between cell centres and are invisible, so this sliding is what gets agents through the doorways.

Memory. Patrol, follow and the team logic are memoryless: they use only the current observation (the
velocity carries what persistence they need). E. coli keeps a small state per agent (a reference reading,
its age and the run direction), because one-step changes are too noisy to climb on: 2 dB shadowing is 0.2
per reading after scaling, while a step of 0.05 m at 1 m from the source gains about 0.04. That state is
cleared whenever an agent has no reading, and every episode starts without a source (source_window starts
at step 1 or later), so it needs no reset between episodes; `reset()` clears it by hand. Randomness comes
from the policy's own `torch.Generator` (seeded), so evaluation is reproducible and the global RNG is left
alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

TEAMS = ("random", "patrol", "fixed_roles", "switch")
SEARCHES = ("ecoli", "pso")

# Teammate slot fields (7 per other agent, in agent order).
SLOT_SIZE = 7
SLOT_IN_RANGE, SLOT_REL, SLOT_SEARCHER, SLOT_SENSOR, SLOT_READING, SLOT_PRESENT = 0, slice(1, 3), 3, 4, 5, 6

# Scenario defaults the layout needs (see PatrolSearchScenario.make_world).
DEFAULTS = dict(n_agents=6, patch_size=5, arena_size=1.0, grid_size=16, agent_speed=0.5)


@dataclass(frozen=True)
class ObservationLayout:
    """Where each field sits in an agent's flat observation, and the geometry needed to act on it."""

    n_agents: int
    patch_size: int
    arena_size: float
    grid_size: int
    cell_size: float  # 2 * arena_size / grid_size
    agent_speed: float  # VMAS max_speed, for "is it moving" tests
    pos: slice
    vel: slice
    is_searcher: int
    has_sensor: int
    patch: slice  # patch_size^2 cells, row-major from the lowest y, then the lowest x
    reading: int  # signal: (RSS - rss_ref) / signal_scale
    change: int  # signal: change of the reading since the last step
    present: int  # signal: 1 while this agent reads an active source
    teammates: slice  # (n_agents - 1) slots of SLOT_SIZE
    obs_dim: int

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> ObservationLayout:
        """The layout of a scenario built with `kwargs` (the scenario's defaults for missing keys; keys the
        layout does not depend on, such as map or share_signal, are ignored)."""
        arg = {key: kwargs.get(key, default) for key, default in DEFAULTS.items()}
        n, p = int(arg["n_agents"]), int(arg["patch_size"])
        arena, grid = float(arg["arena_size"]), int(arg["grid_size"])
        signal = 6 + p * p  # pos 2, vel 2, is_searcher 1, has_sensor 1, patch p^2
        return cls(
            n_agents=n,
            patch_size=p,
            arena_size=arena,
            grid_size=grid,
            cell_size=2 * arena / grid,
            agent_speed=float(arg["agent_speed"]),
            pos=slice(0, 2),
            vel=slice(2, 4),
            is_searcher=4,
            has_sensor=5,
            patch=slice(6, signal),
            reading=signal,
            change=signal + 1,
            present=signal + 2,
            teammates=slice(signal + 3, signal + 3 + SLOT_SIZE * (n - 1)),
            obs_dim=signal + 3 + SLOT_SIZE * (n - 1),
        )


@dataclass
class _View:
    """The observation fields the behaviours read, split out of `obs` [B, N, obs_dim] (M = N - 1 slots)."""

    pos: Tensor  # [B, N, 2]
    vel: Tensor  # [B, N, 2], with its outward part zeroed on the arena border (see _read)
    is_searcher: Tensor  # [B, N] bool
    patch: Tensor  # [B, N, patch^2], idleness / idleness_scale, -1 for walls and outside
    reading: Tensor  # [B, N]
    present: Tensor  # [B, N] bool
    mate_visible: Tensor  # [B, N, M] bool
    mate_rel: Tensor  # [B, N, M, 2], teammate position minus own
    mate_reading: Tensor  # [B, N, M], 0 unless shared
    mate_present: Tensor  # [B, N, M] bool, False unless shared


class PatrolSearchHeuristic:
    """A hand-designed team controller: `actions = policy(obs)`, obs [B, n_agents, obs_dim] in agent order,
    actions [B, n_agents, 2] in [-1, 1] (forces; the scenario scales them by agent_accel).

    `team` picks who runs which behaviour (see the module docstring), `search` the search behaviour of
    sensor carriers with a reading. The keyword-only numbers tune the behaviours:
        distance_cost     patrol: score lost per cell of distance to a candidate cell (in idleness / scale)
        momentum          patrol: score bonus for cells along the current velocity (x cos, at full speed)
        tie_noise         patrol: amplitude of the uniform noise that breaks ties between cells
        repel_radius      patrol/follow: teammates closer than this push the agent away ...
        repel_gain        ... with this weight (linear in the overlap, 1 at contact distance 0)
        blocked_progress  all: below this fraction of agent_speed, progress along the direction counts as
                          blocked and the agent slides (see _unstick)
        run_steps         ecoli/pso: steps between run-or-tumble decisions (1: every step, on the one-step
                          change of the reading)
        tumble_threshold  ecoli/pso: keep running while the reading rose by more than this since the last
                          decision, else tumble
        pso_margin        pso: the best teammate must read this much more than oneself to attract ...
        pso_gain          ... with this weight against the unit E. coli direction
    """

    def __init__(
        self,
        layout: ObservationLayout,
        team: str = "fixed_roles",
        search: str = "ecoli",
        seed: int | None = None,
        device: torch.device | str = "cpu",
        *,
        distance_cost: float = 0.03,
        momentum: float = 0.2,
        tie_noise: float = 1e-3,
        repel_radius: float = 0.3,
        repel_gain: float = 1.0,
        blocked_progress: float = 0.1,
        run_steps: int = 3,
        tumble_threshold: float = 0.0,
        pso_margin: float = 0.1,
        pso_gain: float = 2.0,
    ) -> None:
        if team not in TEAMS:
            raise ValueError(f"team={team!r} is not one of {', '.join(TEAMS)}.")
        if search not in SEARCHES:
            raise ValueError(f"search={search!r} is not one of {', '.join(SEARCHES)}.")
        self.layout, self.team, self.search = layout, team, search
        self.device = torch.device(device)
        self.distance_cost, self.momentum, self.tie_noise = distance_cost, momentum, tie_noise
        self.repel_radius, self.repel_gain = repel_radius, repel_gain
        self.blocked_progress = blocked_progress
        self.run_steps, self.tumble_threshold = run_steps, tumble_threshold
        self.pso_margin, self.pso_gain = pso_margin, pso_gain
        self._run: tuple[Tensor, Tensor, Tensor] | None = None  # E. coli state, see _ecoli and reset
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._offsets, self._on_path = self._patch_geometry()

    def reset(self) -> None:
        """Forget the E. coli state (optional: it clears itself while agents have no reading)."""
        self._run = None

    # ----------------------------------------------------------------------------------------------------
    # Entry point

    def __call__(self, obs: Tensor) -> Tensor:
        """Actions [B, n_agents, 2] in [-1, 1] for observations [B, n_agents, obs_dim]."""
        self._check(obs)
        out_device = obs.device
        obs = obs.to(self.device, torch.float32)
        B, N, _ = obs.shape
        # Every call draws the same random numbers whatever the team, so a seed fixes the whole sequence.
        noise = self._rand(B, N, self.layout.patch_size**2)
        angle = 2 * math.pi * self._rand(B, N)
        coin = self._rand(B, N) < 0.5
        if self.team == "random":
            return (2 * self._rand(B, N, 2) - 1).to(out_device)

        view = self._read(obs)
        patrol = self._patrol(view, noise)
        if self.team == "patrol":
            direction = patrol
        else:
            search = self._ecoli(view, angle) if self.search == "ecoli" else self._pso(view, angle)
            searching = view.present[..., None]
            if self.team == "fixed_roles":
                direction = torch.where(searching & view.is_searcher[..., None], search, patrol)
            else:  # switch: one's own reading first, then the best shared reading, else patrol
                toward_best, seen = self._follow(view)
                direction = torch.where(searching, search, torch.where(seen[..., None], toward_best, patrol))
        action = self._unstick(view, direction, coin)
        return (action / action.abs().amax(-1, keepdim=True).clamp(min=1.0)).to(out_device)

    def _check(self, obs: Tensor) -> None:
        """Reject observations whose shape does not match the layout, naming the likely cause."""
        lay = self.layout
        if obs.dim() != 3 or obs.shape[1] != lay.n_agents or obs.shape[2] != lay.obs_dim:
            raise ValueError(
                f"Observation shape {tuple(obs.shape)} does not match the layout: expected [batch, "
                f"n_agents={lay.n_agents}, obs_dim={lay.obs_dim}] (obs_dim = 6 + patch_size^2 "
                f"({lay.patch_size}^2) + 3 + 7 * (n_agents - 1)), got {obs.shape[-1] if obs.dim() else 0} "
                f"features for {obs.shape[1] if obs.dim() > 1 else '?'} agents. Likely cause: the layout was "
                f"built from other scenario arguments (n_agents, patch_size) than the environment's; build "
                f"it with ObservationLayout.from_kwargs(<the scenario kwargs>), and pass all agents stacked "
                f"in agent order (patrollers then searchers)."
            )

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    # ----------------------------------------------------------------------------------------------------
    # Reading the observation

    def _patch_geometry(self) -> tuple[Tensor, Tensor]:
        """Offsets (x, y) of the patch cells from the agent's cell [P^2, 2], and on_path [P^2, P^2]: cell m
        lies on the straight line from the agent's cell to cell k (k itself excluded)."""
        lay = self.layout
        p, h = lay.patch_size, lay.patch_size // 2
        rows, cols = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        d_row, d_col = (rows - h).flatten(), (cols - h).flatten()
        offsets = torch.stack([d_col, d_row], -1).float() * lay.cell_size
        t = torch.linspace(0, 1, 2 * p + 1)[1:-1]  # sample points along each segment
        on_row = torch.floor(h + t * d_row[:, None] + 0.5).long()
        on_col = torch.floor(h + t * d_col[:, None] + 0.5).long()
        on_path = torch.zeros(p * p, p * p, dtype=torch.bool)
        on_path.scatter_(1, on_row * p + on_col, True)
        on_path.fill_diagonal_(False)
        return offsets.to(self.device), on_path.float().to(self.device)

    def _read(self, obs: Tensor) -> _View:
        """Split the flat observation into the named fields the behaviours use (all but has_sensor and the
        reading's one-step change: a reading is present only for carriers, and E. coli compares readings
        over run_steps itself)."""
        lay = self.layout
        B, N, _ = obs.shape
        pos, vel = obs[..., lay.pos], obs[..., lay.vel]
        # VMAS clamps positions to the arena but keeps the velocity: ignore its outward part there.
        edge = lay.arena_size - 1e-4
        vel = torch.where(((pos >= edge) & (vel > 0)) | ((pos <= -edge) & (vel < 0)), 0.0, vel)
        slots = obs[..., lay.teammates].reshape(B, N, N - 1, SLOT_SIZE)
        return _View(
            pos=pos,
            vel=vel,
            is_searcher=obs[..., lay.is_searcher] > 0.5,
            patch=obs[..., lay.patch],
            reading=obs[..., lay.reading],
            present=obs[..., lay.present] > 0.5,
            mate_visible=slots[..., SLOT_IN_RANGE] > 0.5,
            mate_rel=slots[..., SLOT_REL],
            mate_reading=slots[..., SLOT_READING],
            mate_present=slots[..., SLOT_PRESENT] > 0.5,
        )

    # ----------------------------------------------------------------------------------------------------
    # Behaviours: each returns a direction [B, N, 2] (not necessarily of unit length)

    def _patrol(self, view: _View, noise: Tensor) -> Tensor:
        """Head for the best cell of the idleness patch, pushed away from close teammates.

        Reads pos, vel, the patch and the teammates' in_range and relative positions. A cell's score is its
        idleness - distance_cost * distance (in cells) + momentum * cos(angle to the velocity) * speed
        fraction + tie noise; walls, cells outside the arena, cells behind a visible wall cell and the
        agent's own cell (always just visited) are never chosen.
        """
        lay = self.layout
        cell_index = ((view.pos + lay.arena_size) / lay.cell_size).floor().clamp(0, lay.grid_size - 1)
        to_own_centre = -lay.arena_size + lay.cell_size * (cell_index + 0.5) - view.pos  # [B, N, 2]
        to_cell = to_own_centre[..., None, :] + self._offsets  # [B, N, P^2, 2]
        dist = torch.linalg.vector_norm(to_cell, dim=-1).clamp(min=1e-6)
        wall = (view.patch < 0).float()
        reachable = (view.patch >= 0) & (wall @ self._on_path.T == 0)
        reachable[..., lay.patch_size**2 // 2] = False  # the agent's own cell
        along = (to_cell * view.vel[..., None, :]).sum(-1) / (dist * lay.agent_speed)
        score = view.patch - self.distance_cost * dist / lay.cell_size + self.momentum * along
        score = (score + self.tie_noise * noise).masked_fill(~reachable, -math.inf)
        best = score.argmax(-1)[..., None, None].expand(-1, -1, 1, 2)
        target = to_cell.gather(-2, best).squeeze(-2)
        direction = torch.where(reachable.any(-1, keepdim=True), _unit(target), 0.0)
        return direction + self.repel_gain * self._repulsion(view)

    def _repulsion(self, view: _View) -> Tensor:
        """Push away from visible teammates closer than repel_radius, linear in the overlap."""
        dist = torch.linalg.vector_norm(view.mate_rel, dim=-1)
        weight = ((1 - dist / self.repel_radius).clamp(min=0) * view.mate_visible).unsqueeze(-1)
        return -(weight * _unit(view.mate_rel)).sum(-2)

    def _ecoli(self, view: _View, angle: Tensor) -> Tensor:
        """Run and tumble. Reads vel and the signal (reading, present).

        A run keeps a fixed direction; every run_steps steps the reading is compared with the one at the
        last decision: if it rose by more than tumble_threshold the run goes on, else the agent tumbles to
        a uniformly random direction (held for the next run_steps steps). A run starts along the velocity
        when the agent first gets a reading (a random direction if it is standing still). The state (the
        reference reading, its age and the run direction) is forgotten whenever the agent has no reading.
        """
        B, N = view.reading.shape
        if self._run is None or self._run[0].shape != (B, N):
            zeros = torch.zeros(B, N, device=self.device)
            self._run = (zeros, zeros.long(), torch.zeros(B, N, 2, device=self.device))
        reference, age, heading = self._run
        random_dir = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
        moving = torch.linalg.vector_norm(view.vel, dim=-1, keepdim=True) > 0.1 * self.layout.agent_speed
        start = view.present & (age == 0)
        age = torch.where(view.present, age + 1, 0)
        due = view.present & (age > self.run_steps)
        tumble = due & ((view.reading - reference <= self.tumble_threshold) | ~moving[..., 0])
        heading = torch.where(start[..., None], torch.where(moving, _unit(view.vel), random_dir), heading)
        heading = torch.where(tumble[..., None], random_dir, heading)
        self._run = (torch.where(start | due, view.reading, reference), torch.where(due, 1, age), heading)
        return heading

    def _pso(self, view: _View, angle: Tensor) -> Tensor:
        """E. coli plus a pull towards the teammate with the best visible shared reading when it beats
        one's own by pso_margin. Reads vel, the signal and the teammates' shared readings (zeros without
        share_signal: then this is E. coli)."""
        best_rel, best_reading, seen = self._best_mate(view)
        pull = seen & (best_reading > view.reading + self.pso_margin)
        return self._ecoli(view, angle) + self.pso_gain * pull[..., None] * _unit(best_rel)

    def _follow(self, view: _View) -> tuple[Tensor, Tensor]:
        """Towards the teammate with the best visible shared reading (plus the patrol repulsion, so that
        followers do not pile up), and whether there is one [B, N]."""
        best_rel, _, seen = self._best_mate(view)
        return _unit(best_rel) + self.repel_gain * self._repulsion(view), seen

    def _best_mate(self, view: _View) -> tuple[Tensor, Tensor, Tensor]:
        """The visible teammate with the best shared reading: relative position [B, N, 2], its reading
        [B, N] and whether any teammate shares one [B, N]."""
        valid = view.mate_visible & view.mate_present
        reading = view.mate_reading.masked_fill(~valid, -math.inf)
        best = reading.argmax(-1)
        rel = view.mate_rel.gather(-2, best[..., None, None].expand(-1, -1, 1, 2)).squeeze(-2)
        return rel, reading.gather(-1, best[..., None]).squeeze(-1), valid.any(-1)

    # ----------------------------------------------------------------------------------------------------
    # Walls, teammates in the way, arena border

    def _unstick(self, view: _View, direction: Tensor, coin: Tensor) -> Tensor:
        """Let an agent that pushes without progress slide along what blocks it.

        Reads pos and vel. On the arena border the outward part of the direction is dropped (it cannot
        move there). Progress is the velocity along the direction; below blocked_progress * agent_speed, the
        perpendicular is added, weighted by the shortfall, on the side the agent already moves (so a slide
        goes on, as a wall follower), or on a random side (`coin`) when it barely moves sideways.
        """
        lay = self.layout
        edge = lay.arena_size - 1e-4
        outward = ((view.pos >= edge) & (direction > 0)) | ((view.pos <= -edge) & (direction < 0))
        direction = torch.where(outward, 0.0, direction)
        push = torch.linalg.vector_norm(direction, dim=-1)
        unit = _unit(direction)
        progress = (view.vel * unit).sum(-1)
        speed = torch.linalg.vector_norm(view.vel, dim=-1)
        accelerating = progress > 0.9 * speed  # moving along the direction already, just not fast yet
        blocked = (1 - progress / (self.blocked_progress * lay.agent_speed)).clamp(0, 1)
        shortfall = blocked * (push > 0.1) * ~accelerating
        perp = torch.stack([-unit[..., 1], unit[..., 0]], -1)
        sideways = (view.vel * perp).sum(-1)
        random_side = torch.where(coin, 1.0, -1.0)
        side = torch.where(sideways.abs() > 0.1 * lay.agent_speed, sideways.sign(), random_side)
        return direction + (shortfall * side * push)[..., None] * perp


def _unit(v: Tensor) -> Tensor:
    """v / |v| along the last dimension (zero vectors stay zero)."""
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp(min=1e-8)

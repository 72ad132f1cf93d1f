"""Kraskov-Stögbauer-Grassberger (KSG, algorithm 1) mutual information for continuous variables, in nats.

    I(X; Y) = psi(k) + psi(N) - mean_i[psi(n_x(i) + 1) + psi(n_y(i) + 1)]

eps_i is the max-norm (Chebyshev) distance from z_i = (x_i, y_i) to its k-th nearest neighbour in the joint
space (self excluded), n_x(i) = #{j != i : ||x_j - x_i||_inf < eps_i} (strict) and n_y(i) likewise
(Kraskov, Stögbauer & Grassberger, Phys. Rev. E 69, 066138, 2004).

Neighbour search is exact (bit-identical to brute force) and never needs O(N^2) memory:

* joint k-NN, ``d <= 4`` dims ("grid"): points are bucketed into a uniform grid of cubic cells of side h and
  sorted by cell id. The block of radius a (the (2a+1)^d cells around a point's own) is (2a+1)^(d-1)
  contiguous runs of that order (dim 0 is fastest in the ids), found with a dense prefix-count table (or
  ``torch.searchsorted`` when the grid is too sparse for one). A point's k-th distance among its block's
  points is exact when it is below the block's reach (the distance from the point to the block's border,
  >= a h): every closer point lies in the block. Pass 1 uses radius-1 blocks with h tuned so the median
  point's cell holds ~2 points (O(N log N) work). A point not resolved there knows an upper bound ub on
  its distance, and is redone with the smallest radius (up to 24 cells, or a 24x coarser grid) whose reach
  exceeds ub, so it is resolved for sure; points with fewer than k candidates (sparse regions) get a
  larger block. Tight clusters (crowded pass-1 blocks, e.g. jittered duplicates) are solved recursively
  on their own neighbourhood with a finer grid; the grid window is centred on the median so far
  outliers, not the bulk, are clamped into border cells; a handful of leftovers go to brute force.
* joint k-NN, more dims ("brute"): chunked all-pairs distances + ``topk``; chunks bound the memory. This is
  the GPU-friendly path.
* marginal counts: 1-D by search in the sorted values, settled with the exact predicates (O(N log N));
  more dims by the same grid (a block per point that reaches beyond its radius) or brute force.

Distances are ``max_d |a_d - b_d|`` in float64 everywhere (grid, brute force, counts), the same arithmetic as
scikit-learn's Chebyshev KD-tree. Cell coordinates u = (p - origin) / h are rounded, but a grid spans at most
2^20 cells per dim, so their error is < 1e-9 cells, far below the 1e-6 (relative) safety margin subtracted
from every reach; the reach therefore never overstates which points a block holds, and the grid returns
exactly the brute-force distances and counts.

Ties: KSG assumes a continuous joint density. If k+1 points coincide, eps_i = 0 and the strict counts are 0,
which badly inflates the estimate; this raises a ValueError. Discrete-valued or clipped data (e.g. actions
saturated at a bound) should get ``jitter``: Gaussian noise of std ``jitter * max(1, mean|column|)`` added
after standardisation (scikit-learn adds 1e-10 this way), drawn from ``generator``. A tiny jitter only breaks
exact ties (it does not make tied data continuous: mass on a single value still biases the estimate).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor

from marl.metrics.information import bootstrap_ci

Method = Literal["auto", "grid", "brute"]

DEFAULT_CHUNK = 1 << 22  # (query, candidate) pairs per brute-force block: ~100 MB of float64 temporaries
GRID_BLOCK = 1 << 16  # (query, candidate) pairs per grid block (cache-sized; more blocks cost little)
GRID_MAX_DIM = 4  # "auto" uses the grid up to this many dims (3^d neighbouring cells per query)
BRUTE_BELOW = 2000  # ksg_estimates: "auto" uses brute force up to this many points (faster there)
_RADII = (1, 2, 3, 4, 6, 8, 12, 16, 24)  # block radii (in cells) used on one grid
_MAX_RUNS = 49  # at most this many runs per block: (2a + 1)^(d - 1) <= 49
_MARGIN = 1e-6  # safety margin (in cells) taken off every reach, against rounding of the cell coordinates
_BRUTE_REST = 8  # queries left unresolved by a grid pass go to brute force once this few remain
_CROWDED = 512  # a block with more candidates is solved recursively (tight clusters)
_MAX_DEPTH = 8  # recursion depth for crowded blocks
_TUNE_STEPS = 6  # occupancy measurements to tune the first grid
_TARGET_OCCUPANCY = 2.0  # points in the median point's own cell that the first grid aims at


# --------------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------------


def _as_points(v: Tensor, name: str) -> Tensor:
    """``[N]`` or ``[N, d]`` float -> float64 ``[N, d]``."""
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if not v.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {v.dtype}")
    if v.dim() == 1:
        v = v.unsqueeze(1)
    if v.dim() != 2 or v.shape[1] == 0:
        raise ValueError(f"{name} must have shape [N] or [N, d], got {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return v.to(torch.float64)


def _standardize(v: Tensor, name: str) -> Tensor:
    """Scale each column to unit (population) standard deviation, as scikit-learn's ``scale`` does."""
    std = v.std(0, correction=0)
    if bool((std == 0).any()):
        cols = torch.nonzero(std == 0).flatten().tolist()
        raise ValueError(f"{name} has constant column(s) {cols}: no continuous density, KSG is undefined")
    return v / std


def _prepare(
    x: Tensor,
    y: Tensor,
    k: int,
    standardize: bool,
    jitter: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    if y.device != x.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must have the same number of samples, got {n} and {y.shape[0]}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if n <= k:
        raise ValueError(f"need more samples than k: N={n}, k={k}")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    if standardize:
        x = _standardize(x, "x")
        y = _standardize(y, "y")
    if jitter > 0:
        gen_device = generator.device if generator is not None else x.device
        noisy = []
        for v in (x, y):
            scale = jitter * v.abs().mean(0).clamp_min(1.0)
            noise = torch.randn(v.shape, generator=generator, device=gen_device, dtype=v.dtype)
            noisy.append(v + noise.to(v.device) * scale)
        x, y = noisy
    return x, y


# --------------------------------------------------------------------------------------------------------
# Chebyshev distances
# --------------------------------------------------------------------------------------------------------


def _brute_kth(points: Tensor, queries: Tensor, k: int, chunk_size: int) -> Tensor:
    """Exact k-th neighbour distance (self excluded) of ``points[queries]`` among all points."""
    n = points.shape[0]
    out = torch.empty(queries.numel(), dtype=points.dtype, device=points.device)
    block = max(1, chunk_size // n)
    for start in range(0, queries.numel(), block):
        q = queries[start : start + block]
        dist = torch.cdist(points[q], points, p=math.inf)  # [b, N]: max_d |a_d - b_d|, exact (no matmul)
        dist[torch.arange(q.numel(), device=q.device), q] = torch.inf
        out[start : start + block] = dist.topk(k, dim=1, largest=False).values[:, k - 1]
    return out


def _brute_count(points: Tensor, radii: Tensor, queries: Tensor, chunk_size: int) -> Tensor:
    """#{j != i : ||p_j - p_i||_inf < r_i} for i in ``queries`` (radii per query), by all-pairs blocks."""
    n = points.shape[0]
    out = torch.empty(queries.numel(), dtype=torch.long, device=points.device)
    block = max(1, chunk_size // n)
    for start in range(0, queries.numel(), block):
        q = queries[start : start + block]
        r = radii[start : start + block]
        dist = torch.cdist(points[q], points, p=math.inf)
        out[start : start + block] = (dist < r.unsqueeze(1)).sum(1) - (r > 0).long()  # drop self (0 < r)
    return out


# --------------------------------------------------------------------------------------------------------
# Uniform grid
# --------------------------------------------------------------------------------------------------------


def _cells(points: Tensor, h: float, center: Tensor) -> tuple[Tensor, Tensor, Tensor, list[int], list[int]]:
    """Cell coordinates u = (p - origin) / h, integer cells (clamped, as float), linear ids, padded sides and
    strides.

    A grid spans at most 2^20 cells per dim (so the rounding of u stays far below _MARGIN), from the
    smallest value or, if that would leave the bulk outside, from ``center`` (the median) minus half the
    span: far outliers, not the bulk, get clamped into the border cells. Ids are linear with dim 0 fastest
    and one padding cell on each side of every dim."""
    d = points.shape[1]
    cap = min(2**20, int(2 ** (62 / d)) - 2)
    origin = torch.maximum(points.amin(0), center - (cap // 2) * h)
    u = (points - origin) / h
    sides = (u.amax(0).floor() + 1).clamp(1, cap)
    cells = u.floor().clamp_(min=torch.zeros_like(sides), max=sides - 1)
    padded = (sides.long() + 2).tolist()
    strides = [math.prod(padded[:j]) for j in range(d)]
    cols = (cells.long() + 1).unbind(1)
    ids = cols[0]
    for j in range(1, d):
        ids = ids + cols[j] * strides[j]
    return u, cells, ids, padded, strides


class _Grid:
    """Points bucketed into cubic cells of side ``h`` and stored sorted by cell id.

    The block of radius a (integer) of a query is the (2a+1)^d cells around its own, cut to the grid. As ids
    are linear with dim 0 fastest, a block is (2a+1)^(d-1) contiguous runs of the sorted order, each located
    with two lookups (a dense prefix-count table, or ``torch.searchsorted``). Cell coordinates are clamped
    to the grid; clamping is monotone and 1-Lipschitz, so a block still holds every point its radius
    promises (far cells may merge, which only adds candidates).

    Reach: every point closer than (a + s_i - margin) h to point i lies in i's block of radius a, where
    s_i = min_d min(f_d, 1 - f_d) for i's fractional position f in its cell (0 where clamped) and the
    relative margin covers the rounding of the cell coordinates.
    """

    def __init__(self, points: Tensor, h: float, center: Tensor) -> None:
        n, d = points.shape
        self.h = h
        self.points = points
        u, cells, ids, self.padded, self.strides = _cells(points, h, center)
        self.n_ids = math.prod(self.padded)
        frac = u - cells  # in [0, 1) unless clamped
        slack = torch.minimum(frac, 1 - frac).masked_fill_((frac < 0) | (frac >= 1), 0.0)
        self.sorted_ids, self.order = torch.sort(ids)
        self.slack = functools.reduce(torch.minimum, slack.unbind(1)).index_select(0, self.order)
        inf = points.new_full((1,), torch.inf)  # padding columns point here: distance inf
        self.cols = [torch.cat([c.index_select(0, self.order), inf]) for c in points.unbind(1)]
        self._first: Tensor | None = None
        self._inverse: Tensor | None = None
        self._offsets: dict[int, Tensor] = {}

    @property
    def inverse(self) -> Tensor:
        """Sorted position of each original point."""
        if self._inverse is None:
            self._inverse = torch.empty_like(self.order)
            self._inverse[self.order] = torch.arange(self.order.numel(), device=self.order.device)
        return self._inverse

    def _position(self, ids: Tensor, many: bool) -> Tensor:
        """#points with cell id < ``ids``; a dense prefix-count table when there are many lookups."""
        n = self.order.numel()
        if self._first is None and many and self.n_ids <= 8 * n + 4096:
            self._first = torch.zeros(self.n_ids + 1, dtype=torch.long, device=self.order.device)
            torch.cumsum(torch.bincount(self.sorted_ids, minlength=self.n_ids), 0, out=self._first[1:])
        if self._first is not None:
            return self._first[ids]
        return torch.searchsorted(self.sorted_ids, ids, side="left")

    def reach(self, qpos: Tensor, a: int) -> Tensor:
        return (a + self.slack[qpos] - _MARGIN) * self.h

    def runs(self, qpos: Tensor, a: int) -> tuple[Tensor, Tensor]:
        """[Q, R] start and end (exclusive) sorted positions of the runs of the radius-``a`` blocks.

        Runs are cut to the grid (so they never overlap: no point is a candidate twice); rows outside the
        grid are empty runs."""
        dev = self.order.device
        if a not in self._offsets:
            steps = torch.arange(-a, a + 1, device=dev)
            offs = steps.new_zeros(1, 0)  # offsets of the runs along dims 1..d-1
            for _ in self.strides[1:]:
                offs = torch.cat(
                    [offs.repeat_interleave(2 * a + 1, 0), steps.repeat(len(offs)).unsqueeze(1)], 1
                )
            linear = (offs * torch.tensor(self.strides[1:], device=dev, dtype=torch.long)).sum(1)
            self._offsets[a] = (linear, offs)
        linear, offs = self._offsets[a]
        ids = self.sorted_ids[qpos]
        c0 = ids % self.padded[0]
        row = (ids - c0).unsqueeze(1) + linear
        start = row + (c0 - a).clamp_min(0).unsqueeze(1)
        end = row + (c0 + (a + 1)).clamp_max(self.padded[0]).unsqueeze(1)
        for j in range(1, len(self.strides)):
            cj = (torch.div(ids, self.strides[j], rounding_mode="floor") % self.padded[j]).unsqueeze(1)
            outside = (cj + offs[:, j - 1] < 0) | (cj + offs[:, j - 1] >= self.padded[j])
            start = start.masked_fill_(outside, 0)
            end = end.masked_fill_(outside, 0)
        many = 8 * qpos.numel() >= self.order.numel()
        return self._position(start, many), self._position(end, many)

    def block_distances(
        self,
        qpos: Tensor,
        a: int,
        budget: int,
        min_width: int = 1,
        runs: tuple[Tensor, Tensor] | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yields ``(rows, dist)``: ``dist[i, j]`` is the distance from sorted point ``qpos[rows[i]]`` to its
        j-th candidate in its radius-``a`` block (self included, at 0), inf for padding. Rows are grouped by
        candidate count (widths growing by ~25 %) so padding stays small, and a block holds at most ``budget``
        entries (at least one row): small blocks stay in cache, which on CPU beats one big block. ``runs``:
        the output of :meth:`runs`, if already computed."""
        if qpos.numel() == 0:
            return
        start, end = self.runs(qpos, a) if runs is None else runs
        count = end - start
        sizes, perm = torch.sort(count.sum(1))
        width_class = torch.ceil(torch.log(sizes.clamp_min(min_width).double()) / math.log(1.25)).long()
        bounds = torch.cumsum(torch.unique_consecutive(width_class, return_counts=True)[1], 0).tolist()
        for s_class, e_class in zip([0, *bounds[:-1]], bounds):
            width = max(min_width, int(sizes[e_class - 1]))
            step = max(1, budget // width)
            for s in range(s_class, e_class, step):
                rows = perm[s : min(e_class, s + step)]
                yield rows, self._distances(qpos[rows], start[rows], count[rows], width)

    def _distances(self, q: Tensor, start: Tensor, count: Tensor, width: int) -> Tensor:
        inclusive = torch.cumsum(count, 1)
        shift = start - (inclusive - count)  # sorted position = column + shift[run of the column]
        col = torch.arange(width, device=q.device)
        n_runs = count.shape[1]
        if n_runs == 1:
            pos = shift + col
        else:
            if n_runs <= 4:  # run of a column = number of run ends it is past
                run = (col >= inclusive[:, :1]).long()
                for r in range(1, n_runs - 1):
                    run += col >= inclusive[:, r : r + 1]
            else:
                run = torch.searchsorted(
                    inclusive[:, :-1].contiguous(), col.expand(q.numel(), width).contiguous(), right=True
                )
            pos = shift.gather(1, run).add_(col)
        pos.masked_fill_(col >= inclusive[:, -1:], self.cols[0].numel() - 1)  # padding -> the point at inf
        flat = pos.view(-1)
        dist = self.cols[0].index_select(0, flat).view(pos.shape).sub_(self.cols[0][q].unsqueeze(1)).abs_()
        for c in self.cols[1:]:
            other = c.index_select(0, flat).view(pos.shape).sub_(c[q].unsqueeze(1)).abs_()
            torch.maximum(dist, other, out=dist)
        return dist


class _Levels:
    """Grids of sides h0 * factor^level, built on demand, and the choice of (level, radius a) that gives a
    query a guaranteed reach above a distance: radii up to ``max_a`` cells, so a block has at most
    _MAX_RUNS runs; beyond that the next coarser level."""

    def __init__(self, points: Tensor, h0: float) -> None:
        d = points.shape[1]
        self.points, self.h0 = points, h0
        self.center = points.median(0).values
        self.steps = [a for a in _RADII if (2 * a + 1) ** (d - 1) <= _MAX_RUNS]
        self.max_a = self.steps[-1]
        self.factor = max(2, self.max_a)
        self.grids: dict[int, _Grid] = {}

    def grid(self, level: int) -> _Grid:
        if level not in self.grids:
            self.grids[level] = _Grid(self.points, self.h0 * self.factor**level, self.center)
        return self.grids[level]

    def schedule(self, distance: Tensor) -> tuple[Tensor, Tensor]:
        """(level, a) per entry with (a - margin) h_level > distance, a among the allowed radii."""
        steps = torch.tensor(self.steps, device=distance.device)
        level = torch.zeros_like(distance, dtype=torch.long)
        need = torch.floor(distance / self.h0 + 2 * _MARGIN) + 1
        while True:
            over = need > self.max_a
            if not bool(over.any()):
                break
            level += over.long()
            scale = self.h0 * torch.pow(float(self.factor), level.double())
            need = torch.where(over, torch.floor(distance / scale + 2 * _MARGIN) + 1, need)
        return level, steps[torch.searchsorted(steps, need.long())]


def _group(level: Tensor, a: Tensor, items: Tensor) -> Iterator[tuple[int, int, Tensor]]:
    """Split ``items`` by equal (level, a)."""
    key = level * (_RADII[-1] + 1) + a
    for value in torch.unique(key).tolist():
        yield value // (_RADII[-1] + 1), value % (_RADII[-1] + 1), items[key == value]


def _initial_h(points: Tensor) -> float:
    """Cell side h0 for about _TARGET_OCCUPANCY points in the median point's own cell: a guess from the
    bounding box, corrected (a few times at most) from the measured occupancy, which adapts to correlation
    and clustering (the median ignores tight clusters, which crowded blocks handle). Only the speed depends
    on it, never the result."""
    n, d = points.shape
    center = points.median(0).values
    low = points.kthvalue(max(1, round(0.05 * n)), dim=0).values
    span = points.kthvalue(max(1, round(0.95 * n)), dim=0).values - low  # robust to heavy tails
    span = torch.where(span > 0, span, points.amax(0) - points.amin(0))
    span = span.clamp_min(float(span.max()) * 1e-3 + 1e-300)
    h = float((span.log().mean() + (math.log(_TARGET_OCCUPANCY) - math.log(0.9 * n)) / d).exp())
    for _ in range(_TUNE_STEPS):
        ids = torch.sort(_cells(points, h, center)[2]).values
        counts = torch.unique_consecutive(ids, return_counts=True)[1]
        occupancy = float(torch.repeat_interleave(counts, counts).kthvalue((n + 1) // 2).values)
        if abs(math.log(occupancy / _TARGET_OCCUPANCY)) < 0.4:
            break
        h *= (_TARGET_OCCUPANCY / occupancy) ** (1.0 / d)
    return h


def _isolated_growth(d: int) -> float:
    """Radius factor for a point with fewer than k candidates: about 16x the block volume."""
    return max(2.0, 16.0 ** (1.0 / d))


def _block_members(grid: _Grid, start: Tensor, end: Tensor) -> Tensor:
    """Sorted original indices of the points in the union of the runs [start, end) (flattened)."""
    start, end = start.reshape(-1), end.reshape(-1)
    keep = end > start
    runs = torch.unique(torch.stack([start[keep], end[keep]], 1), dim=0)  # blocks of one cell repeat
    length = runs[:, 1] - runs[:, 0]
    total = int(length.sum())
    first = torch.repeat_interleave(
        runs[:, 0] - (torch.cumsum(length, 0) - length), length, output_size=total
    )
    pos = torch.unique(first + torch.arange(total, device=start.device))
    return torch.sort(grid.order[pos]).values


def _grid_kth(
    points: Tensor, k: int, chunk_size: int, queries: Tensor | None = None, depth: int = 0
) -> Tensor:
    """Exact k-th neighbour distances (self excluded) of ``points[queries]`` (default: all) among all points.

    Pass 1: radius-1 blocks of the tuned grid. A point whose k-th candidate distance ub is not below its
    reach knows its true k-th distance is <= ub, so a block reaching beyond ub resolves it for sure: it is
    scheduled at the (level, radius) that reaches ub. A point with fewer than k candidates (isolated) retries
    with a larger radius. Points whose pass-1 blocks are crowded (more than _CROWDED candidates: tight
    clusters, e.g. jittered duplicates) are solved recursively among the points of those blocks only (if
    at most half of all points), with a grid tuned to them. A handful of points left go to brute force.
    """
    n, d = points.shape
    dev = points.device
    kth = torch.full((n,), torch.nan, dtype=points.dtype, device=dev)
    span = float((points.amax(0) - points.amin(0)).max())
    levels = _Levels(points, _initial_h(points))
    block = min(chunk_size, GRID_BLOCK)
    pending: dict[tuple[int, int], list[Tensor]] = {(0, 1): [] if queries is None else [queries]}
    while pending:
        level, a = min(pending)
        parts = pending.pop((level, a))
        grid = levels.grid(level)
        todo = torch.cat(parts) if parts else grid.order  # empty parts: all points, in grid order
        if todo.numel() <= _BRUTE_REST or (a - 1) * grid.h > span:
            kth[todo] = _brute_kth(points, todo, k, chunk_size)
            continue
        qpos = grid.inverse[todo] if parts else torch.arange(n, device=dev)
        start, end = grid.runs(qpos, a)
        found = torch.empty(todo.numel(), dtype=points.dtype, device=dev)
        crowded = (end - start).sum(1) > _CROWDED
        if (level, a) == (0, 1) and depth < _MAX_DEPTH and bool(crowded.any()):
            members = _block_members(grid, start[crowded], end[crowded])
            if 2 * members.numel() <= n:  # a cluster: solve it among its neighbourhood, with a finer grid
                local = torch.searchsorted(members, todo[crowded])
                found[crowded] = _grid_kth(points[members], k, chunk_size, local, depth + 1)
            else:
                crowded.zero_()
        else:
            crowded.zero_()
        plain = torch.nonzero(~crowded).flatten()
        runs = (start[plain], end[plain])
        for rows, dist in grid.block_distances(qpos[plain], a, block, min_width=k + 1, runs=runs):
            # self is a candidate at distance 0, so the (k+1)-th smallest is the k-th neighbour (ties too)
            found[plain[rows]] = dist.topk(k + 1, dim=1, largest=False, sorted=False).values.amax(1)
        done = found < grid.reach(qpos, a)
        kth[todo[done]] = found[done]
        bound, rest = found[~done], todo[~done]
        if rest.numel():
            bound = torch.where(torch.isinf(bound), _isolated_growth(d) * a * grid.h, bound)  # isolated
            for lv, av, items in _group(*levels.schedule(bound), rest):
                pending.setdefault((lv, av), []).append(items)
    return kth if queries is None else kth[queries]


def _grid_count(points: Tensor, radii: Tensor, chunk_size: int) -> Tensor:
    """#{j != i : ||p_j - p_i||_inf < r_i} for all points: each point's block reaches beyond its radius."""
    n = points.shape[0]
    positive = radii[radii > 0]
    h0 = float(positive.median()) / 2 if positive.numel() else 1.0
    levels = _Levels(points, h0)
    counts = torch.empty(n, dtype=torch.long, device=points.device)
    block = min(chunk_size, GRID_BLOCK)
    for level, a, queries in _group(*levels.schedule(radii), torch.arange(n, device=points.device)):
        grid = levels.grid(level)
        r = radii[queries]
        for rows, dist in grid.block_distances(grid.inverse[queries], a, block):
            counts[queries[rows]] = (dist < r[rows].unsqueeze(1)).sum(1)
    return counts - (radii > 0).long()  # self (a candidate at distance 0) is inside iff 0 < r


def _sort_floats(v: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.sort`` of a float64 vector via an order-preserving int64 key (integer sort is several times
    faster on CPU): the IEEE bits of negative numbers get their 63 low bits flipped."""
    bits = v.view(torch.int64)
    _, perm = torch.sort(bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF))
    return v[perm], perm


def _first_true(
    sorted_values: Tensor,
    pred: Callable[[Tensor, Tensor, Tensor], Tensor],
    v: Tensor,
    r: Tensor,
    guess: Tensor,
) -> Tensor:
    """Per row i, the smallest j in [0, n] with pred(sorted_values[j], v_i, r_i), pred monotone (false ->
    true) in j. ``guess`` is checked exactly; the rows where it is off (rounding, long runs of equal values
    at the boundary) are redone with an exact vectorised binary search."""
    n = sorted_values.numel()
    left_false = (guess == 0) | ~pred(sorted_values[(guess - 1).clamp_min_(0)], v, r)
    right_true = (guess == n) | pred(sorted_values[guess.clamp_max(n - 1)], v, r)
    bad = torch.nonzero(~(left_false & right_true)).flatten()
    if bad.numel() == 0:
        return guess
    v, r = v[bad], r[bad]
    lo = torch.zeros(bad.numel(), dtype=torch.long, device=guess.device)
    hi = torch.full_like(lo, n)
    for _ in range(max(1, math.ceil(math.log2(n + 1)))):
        mid = (lo + hi) // 2
        active = lo < hi
        ok = pred(sorted_values[mid.clamp_max(n - 1)], v, r)
        hi = torch.where(active & ok, mid, hi)
        lo = torch.where(active & ~ok, mid + 1, lo)
    guess = guess.clone()
    guess[bad] = lo
    return guess


def _far_below(sorted_values: Tensor, p: Tensor, r: Tensor) -> Tensor:
    """Per i, #{j : fl(p_i - v_j) >= r_i} (the sorted values at distance >= r_i below p_i)."""
    guess = torch.searchsorted(sorted_values, p - r, side="right")
    return _first_true(sorted_values, lambda c, p, r: p - c < r, p, r, guess)


def _far_above(sorted_values: Tensor, p: Tensor, r: Tensor) -> Tensor:
    """Per i, the first j with fl(v_j - p_i) >= r_i (all values from there on are at distance >= r_i)."""
    guess = torch.searchsorted(sorted_values, p + r, side="left")
    return _first_true(sorted_values, lambda c, p, r: c - p >= r, p, r, guess)


def _sorted_count_1d(values: Tensor, radii: Tensor) -> Tensor:
    """#{j != i : |v_j - v_i| < r_i} for 1-D ``values`` [N], by search in the sorted values.

    ``torch.searchsorted`` on v_i -+ r_i finds the boundaries up to rounding; they are then settled with the
    exact predicates fl(v_i - v_j) >= r_i and fl(v_j - v_i) >= r_i, which are monotone in the sorted position
    (rounding is monotone): the same arithmetic as a Chebyshev KD-tree, no rounding shortcut.
    """
    vs, perm = _sort_floats(values)
    r = radii[perm]  # work in sorted order: neighbouring queries search neighbouring places
    inside = (_far_above(vs, vs, r) - _far_below(vs, vs, r)).clamp_min_(0)  # r = 0: the two sides overlap
    counts = torch.empty_like(inside)
    counts[perm] = inside - (r > 0).long()  # self is inside iff 0 < r
    return counts


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def _pick(method: Method, d: int) -> str:
    if method not in ("auto", "grid", "brute"):
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'grid' or 'brute'")
    if method == "auto":
        return "grid" if d <= GRID_MAX_DIM else "brute"
    return method


def kth_neighbor_distance(
    points: Tensor, k: int = 3, *, method: Method = "auto", chunk_size: int = DEFAULT_CHUNK
) -> Tensor:
    """Exact max-norm distance from each point to its k-th nearest neighbour (self excluded).

    ``points``: ``[N]`` or ``[N, d]`` float -> float64 ``[N]``. ``method``: "grid" (uniform grids, about
    O(N log N) for low d; see the module doc), "brute" (chunked all pairs, O(N^2)) or "auto" (grid for
    d <= 4). Both return bit-identical distances. ``chunk_size`` bounds the (query, candidate) pairs held at
    once. Exact duplicates are fine but a pile of m copies costs O(m^2).
    """
    p = _as_points(points, "points")
    if not isinstance(k, int) or not 0 < k < p.shape[0]:
        raise ValueError(f"k must be an int in [1, N), got {k!r} with N={p.shape[0]}")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if _pick(method, p.shape[1]) == "grid":
        return _grid_kth(p, k, chunk_size)
    return _brute_kth(p, torch.arange(p.shape[0], device=p.device), k, chunk_size)


def count_within(
    points: Tensor, radii: Tensor, *, method: Method = "auto", chunk_size: int = DEFAULT_CHUNK
) -> Tensor:
    """n(i) = #{j != i : ||p_j - p_i||_inf < r_i} (strict), int64 ``[N]``.

    1-D: search in the sorted values, settled exactly (O(N log N)). Otherwise "grid" (each point's block
    reaches beyond its radius; cost grows with the counts) or "brute"; "auto" picks the grid for d <= 4.
    """
    p = _as_points(points, "points")
    if radii.shape != (p.shape[0],):
        raise ValueError(f"radii must have shape [{p.shape[0]}], got {tuple(radii.shape)}")
    if bool((radii < 0).any()) or not bool(torch.isfinite(radii).all()):
        raise ValueError("radii must be finite and >= 0")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    r = radii.to(p.device, torch.float64)
    if p.shape[1] == 1 and method != "brute":
        _pick(method, 1)
        return _sorted_count_1d(p[:, 0], r)
    if _pick(method, p.shape[1]) == "grid":
        return _grid_count(p, r, chunk_size)
    return _brute_count(p, r, torch.arange(p.shape[0], device=p.device), chunk_size)


def _max_copies(points: Tensor, k: int) -> int:
    """How often the most repeated row occurs, exact where it matters (> k): rows are hashed to one float by a
    fixed elementwise linear form (identical rows hash identically); only tied hashes need the exact (and
    slower) ``torch.unique(dim=0)``."""
    weights = (1.0 + 0.6180339887498949 * torch.arange(points.shape[1], dtype=torch.float64)).tolist()
    rows = points + 0.0  # -0.0 -> 0.0
    key = rows[:, 0] * weights[0]
    for j in range(1, points.shape[1]):
        key = key + rows[:, j] * weights[j]
    hashed = int(torch.unique_consecutive(_sort_floats(key)[0], return_counts=True)[1].max())
    if hashed <= k:
        return hashed
    return int(torch.unique(rows, dim=0, return_counts=True)[1].max())


def ksg_local_terms(
    x: Tensor,
    y: Tensor,
    k: int = 3,
    *,
    standardize: bool = True,
    jitter: float = 0.0,
    generator: torch.Generator | None = None,
    method: Method = "auto",
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """Per-sample KSG terms t_i = psi(k) + psi(N) - psi(n_x(i) + 1) - psi(n_y(i) + 1), float64 ``[N]``.

    Their mean is :func:`ksg_mutual_information`. ``x``: ``[N]`` or ``[N, dx]``, ``y``: ``[N]`` or ``[N, dy]``
    (float; computed in float64). ``standardize`` scales each column to unit std first; ``jitter`` adds
    Gaussian noise of std ``jitter * max(1, mean|column|)`` from ``generator`` to break ties (see module doc).
    ``method`` / ``chunk_size``: neighbour search, see :func:`kth_neighbor_distance`.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    x, y = _prepare(x, y, k, standardize, jitter, generator)
    n = x.shape[0]
    joint = torch.cat([x, y], 1)
    copies = _max_copies(joint, k)  # checked first: a big pile of duplicates is slow to search
    eps = kth_neighbor_distance(joint, k, method=method, chunk_size=chunk_size) if copies <= k else None
    ties = n if eps is None else int((eps == 0).sum())
    if ties:
        raise ValueError(
            f"k-th neighbour distance is 0 for {'some' if eps is None else ties} of {n} samples (a point "
            f"repeated {copies} times): duplicate points (ties) break KSG; pass jitter (e.g. 1e-10) with a "
            "generator, or use a discrete estimator"
        )
    nx = count_within(x, eps, method=method, chunk_size=chunk_size)
    ny = count_within(y, eps, method=method, chunk_size=chunk_size)
    digamma = torch.special.digamma
    const = digamma(torch.tensor(float(k), dtype=torch.float64)) + digamma(
        torch.tensor(float(n), dtype=torch.float64)
    )
    return const.to(x.device) - digamma((nx + 1).to(torch.float64)) - digamma((ny + 1).to(torch.float64))


def ksg_mutual_information(
    x: Tensor,
    y: Tensor,
    k: int = 3,
    *,
    standardize: bool = True,
    jitter: float = 0.0,
    generator: torch.Generator | None = None,
    method: Method = "auto",
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """KSG (algorithm 1) estimate of I(X; Y) in nats, float64 scalar:

    I = psi(k) + psi(N) - mean_i[psi(n_x(i) + 1) + psi(n_y(i) + 1)], eps_i = max-norm distance to the k-th
    joint neighbour, n_x(i) = #{j != i : ||x_j - x_i||_inf < eps_i}. Not clipped at 0 (scikit-learn's
    ``mutual_info_regression`` returns max(0, I)); arguments as in :func:`ksg_local_terms`.
    """
    return ksg_local_terms(
        x,
        y,
        k,
        standardize=standardize,
        jitter=jitter,
        generator=generator,
        method=method,
        chunk_size=chunk_size,
    ).mean()


def ksg_estimates(
    x: Tensor,
    y: Tensor,
    ks: list[int] | tuple[int, ...],
    *,
    method: Method = "auto",
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """KSG estimates for several k at once on ``x``, ``y`` as given (not standardised), float64 ``[len(ks)]``.

    Above ``GRID_MAX_DIM`` joint dims, up to ``BRUTE_BELOW`` points or with ``method="brute"``, one chunked
    all-pairs pass serves every k:
    the joint distances give the k-th neighbour distance for each k (one ``topk``), and the marginal
    distances give each k's counts. Otherwise each k is a :func:`ksg_local_terms` call (the grid). The values
    equal ``ksg_mutual_information(x, y, k, standardize=False)`` for each k (up to the rounding of the sum).
    """
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must have the same number of samples, got {n} and {y.shape[0]}")
    if not ks or any(not isinstance(k, int) or not 0 < k < n for k in ks):
        raise ValueError(f"ks must be ints in [1, N), got {ks!r} with N={n}")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    joint = torch.cat([x, y], 1)
    if method == "auto" and n <= BRUTE_BELOW:  # small sets: one all-pairs pass beats the grid's overhead
        method = "brute"
    if _pick(method, joint.shape[1]) == "grid":
        options = {"standardize": False, "method": method, "chunk_size": chunk_size}
        return torch.stack([ksg_local_terms(x, y, k, **options).mean() for k in ks])
    kth = torch.tensor(ks, device=x.device) - 1
    counts = torch.empty(2, len(ks), n, dtype=torch.float64, device=x.device)
    block = max(1, chunk_size // n)
    for start in range(0, n, block):
        end = min(n, start + block)
        rows = torch.arange(end - start, device=x.device)
        dist = torch.cdist(joint[start:end], joint, p=math.inf)
        dist[rows, rows + start] = torch.inf
        eps = dist.topk(max(ks), dim=1, largest=False).values[:, kth]  # [b, len(ks)]
        if bool((eps == 0).any()):
            raise ValueError(
                "k-th neighbour distance is 0 for some samples: duplicate points (ties) break KSG; add "
                "jitter or use a discrete estimator"
            )
        for side, part in enumerate((x, y)):
            dist = torch.cdist(part[start:end], part, p=math.inf)
            dist[rows, rows + start] = torch.inf
            for j in range(len(ks)):
                counts[side, j, start:end] = (dist < eps[:, j : j + 1]).sum(1)
    digamma = torch.special.digamma
    const = digamma(torch.tensor(ks, dtype=torch.float64, device=x.device)) + digamma(
        torch.tensor(float(n), dtype=torch.float64, device=x.device)
    )
    return const - digamma(counts + 1).sum(0).mean(-1)


def ksg_mutual_information_ci(
    x: Tensor,
    y: Tensor,
    k: int = 3,
    *,
    ci: Literal["subsample", "local"] = "subsample",
    n_boot: int | None = None,
    level: float = 0.95,
    generator: torch.Generator | None = None,
    standardize: bool = True,
    jitter: float = 0.0,
    method: Method = "auto",
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[Tensor, Tensor, Tensor]:
    """KSG estimate with a confidence interval: ``(estimate, low, high)``, float64 scalars.

    The points themselves cannot be bootstrapped: resampling with replacement creates duplicates (eps = 0),
    which breaks KSG. Two alternatives:

    * ``ci="subsample"`` (default): half-sampling, i.e. the delete-N/2 jackknife. The estimate is recomputed
      on ``n_boot`` (default 30) random halves drawn *without* replacement (no duplicates); for a statistic
      with variance ~ s^2 / N, the spread of half-sample estimates is (1/(N/2) - 1/N) s^2 = s^2 / N, the
      variance of the full estimate (finite-population correction). CI = estimate -+ z * sd(halves).
      Costs ~n_boot / 2 full estimates. Measured on correlated Gaussians (N = 500 and 2000, 1 and 2 dims,
      rho = 0 / 0.5 / 0.9, 100 datasets each): 94-99 % coverage at nominal 95 % (the half-sample spread
      overstates the sd by ~10-20 %), except where the bias dominates (82 % at N = 500, 2 dims, rho = 0.9).
    * ``ci="local"``: percentile bootstrap (``n_boot`` default 1000) of the mean of the per-sample terms
      (:func:`ksg_local_terms`) with the neighbour counts held fixed. Nearly free, but the terms of
      neighbouring samples are positively correlated, so it is too narrow: 83-91 % coverage at nominal 95 %
      in the same experiment.

    Neither covers the estimator's bias (it grows with the dependence strength and dimension, shrinks with
    N). ``generator`` draws the jitter (if any) and the resampling; other arguments as in
    :func:`ksg_local_terms` (the data are standardised / jittered once, before any resampling).
    """
    if ci not in ("subsample", "local"):
        raise ValueError(f"unknown ci {ci!r}; expected 'subsample' or 'local'")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    n_boot = (30 if ci == "subsample" else 1000) if n_boot is None else n_boot
    if n_boot < 2:
        raise ValueError("n_boot must be >= 2")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    x, y = _prepare(x, y, k, standardize, jitter, generator)

    def terms(xs: Tensor, ys: Tensor) -> Tensor:
        return ksg_local_terms(xs, ys, k, standardize=False, method=method, chunk_size=chunk_size)

    full = terms(x, y)
    if ci == "local":
        return bootstrap_ci(
            lambda t: t.mean(-1), full, n_boot=n_boot, level=level, generator=generator, vectorized=True
        )
    n = x.shape[0]
    half = n // 2
    if half <= k:
        raise ValueError(f"subsample CI needs N // 2 > k, got N={n}, k={k}")
    gen_device = generator.device if generator is not None else x.device
    halves = []
    for _ in range(n_boot):  # one KSG per half-sample (loop over replicates, not samples)
        idx = torch.randperm(n, generator=generator, device=gen_device)[:half].to(x.device)
        halves.append(terms(x[idx], y[idx]).mean())
    estimate = full.mean()
    sd = torch.stack(halves).std()
    z = torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64, device=sd.device))
    return estimate, estimate - z * sd, estimate + z * sd

"""Distributions with a known mutual information, for testing and calibrating the MI estimators.

Every task samples ``(x, y)`` (float64, ``[n, dx]`` and ``[n, dy]``) from a private generator and knows its
true I(X; Y) in nats, in closed form:

* **Gaussian**: ``I = (log det S_xx + log det S_yy - log det S) / 2`` for the joint covariance S.
  "dense": every pair of the dx + dy coordinates has correlation c (one strong canonical direction);
  "sparse": only m pairs (x_i, y_i) are correlated (rho), the other coordinates are distractors.
* **Student-t** (multivariate, nu degrees of freedom, scale S; x and y share the chi-square scale):
  ``I = I_gauss(S) + G(dx) + G(dy) - G(dx + dy)`` with
  ``G(d) = log Gamma(nu / 2) - log Gamma((nu + d) / 2) + (nu + d) / 2 * (psi((nu + d) / 2) - psi(nu / 2))``,
  from the entropy of the multivariate t (its marginals are t with the same nu). With S = identity the
  coordinates are uncorrelated, yet dependent through the shared scale.
* **Invertible transforms** of those (MI is unchanged by an invertible map of x alone or y alone):
  per-coordinate ``half-cube`` t|t|^(1/2), ``asinh``, ``normal CDF`` (uniform margins), ``exp`` (log-normal),
  ``cube``, ``wiggly`` t + 0.4 sin t (x) and t + 0.2 sin 3t (y), and the ``spiral``, which rotates the first
  two coordinates by an angle growing with the squared norm (not per coordinate; norm-preserving).
* **Additive uniform noise**: X ~ U(0, 1), Y = X + N, N ~ U(0, eps), eps <= 1: ``I = eps / 2 - log eps``.
* **Independent** variables (I = 0), Gaussian and heavy-tailed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Sampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Task:
    name: str
    dx: int
    dy: int
    mi: float  # true I(X; Y), nats
    sampler: Sampler
    family: str  # gaussian, student, transformed, other

    def sample(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        return self.sampler(n, torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------------------------------------


def gaussian_mi(cov: Tensor, dx: int) -> float:
    """I(X; Y) of a joint Gaussian with covariance ``cov`` whose first ``dx`` coordinates are X."""
    cov = cov.to(torch.float64)
    return 0.5 * float(torch.logdet(cov[:dx, :dx]) + torch.logdet(cov[dx:, dx:]) - torch.logdet(cov))


def _student_g(nu: float, d: int) -> float:
    a, b = nu / 2, (nu + d) / 2
    return math.lgamma(a) - math.lgamma(b) + b * (_digamma(b) - _digamma(a))


def _digamma(v: float) -> float:
    return float(torch.special.digamma(torch.tensor(v, dtype=torch.float64)))


def student_mi(cov: Tensor, dx: int, nu: float) -> float:
    """I(X; Y) of a multivariate Student-t with scale ``cov`` and ``nu`` degrees of freedom."""
    dy = cov.shape[0] - dx
    return gaussian_mi(cov, dx) + _student_g(nu, dx) + _student_g(nu, dy) - _student_g(nu, dx + dy)


def dense_cov(dx: int, dy: int, c: float) -> Tensor:
    """Unit variances, correlation ``c`` between every two of the dx + dy coordinates."""
    cov = torch.full((dx + dy, dx + dy), c, dtype=torch.float64)
    return cov.fill_diagonal_(1.0)


def sparse_cov(dx: int, dy: int, pairs: int, rho: float) -> Tensor:
    """Identity, except corr(x_i, y_i) = ``rho`` for i < ``pairs``."""
    cov = torch.eye(dx + dy, dtype=torch.float64)
    for i in range(pairs):
        cov[i, dx + i] = cov[dx + i, i] = rho
    return cov


# ---------------------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------------------


def _gaussian(cov: Tensor, dx: int) -> Sampler:
    chol = torch.linalg.cholesky(cov)

    def sample(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        z = torch.randn(n, cov.shape[0], generator=gen, dtype=torch.float64) @ chol.T
        return z[:, :dx], z[:, dx:]

    return sample


def _student(cov: Tensor, dx: int, nu: float) -> Sampler:
    gauss = _gaussian(cov, dx)

    def sample(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = gauss(n, gen)
        chi2 = 2 * torch._standard_gamma(torch.full((n, 1), nu / 2, dtype=torch.float64), generator=gen)
        scale = (chi2 / nu).rsqrt()
        return x * scale, y * scale

    return sample


def _independent_student(dx: int, dy: int, nu: float) -> Sampler:
    def sample(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        out = []
        for d in (dx, dy):
            chi2 = 2 * torch._standard_gamma(torch.full((n, 1), nu / 2, dtype=torch.float64), generator=gen)
            out.append(torch.randn(n, d, generator=gen, dtype=torch.float64) * (chi2 / nu).rsqrt())
        return out[0], out[1]

    return sample


def _additive_uniform(eps: float) -> Sampler:
    def sample(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        return x, x + eps * torch.rand(n, 1, generator=gen, dtype=torch.float64)

    return sample


def half_cube(t: Tensor) -> Tensor:
    return t * t.abs().sqrt()


def normal_cdf(t: Tensor) -> Tensor:
    return torch.special.ndtr(t)


def spiral(t: Tensor, speed: float = 0.5) -> Tensor:
    """Rotate the first two coordinates by ``speed * ||t||^2`` radians: invertible (the norm is kept)."""
    angle = speed * t.square().sum(1)
    c, s = angle.cos(), angle.sin()
    out = t.clone()
    out[:, 0] = c * t[:, 0] - s * t[:, 1]
    out[:, 1] = s * t[:, 0] + c * t[:, 1]
    return out


TRANSFORMS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "halfcube": (half_cube, half_cube),
    "asinh": (torch.asinh, torch.asinh),
    "normalcdf": (normal_cdf, normal_cdf),
    "exp": (torch.exp, torch.exp),
    "cube": (lambda t: t**3, lambda t: t**3),
    "wiggly": (lambda t: t + 0.4 * torch.sin(t), lambda t: t + 0.2 * torch.sin(3 * t)),
    "spiral": (spiral, spiral),
}


def _transformed(base: Sampler, kind: str) -> Sampler:
    fx, fy = TRANSFORMS[kind]

    def sample(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = base(n, gen)
        return fx(x), fy(y) if kind != "spiral" or y.shape[1] >= 2 else y

    return sample


# ---------------------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------------------


def gaussian_task(name: str, cov: Tensor, dx: int) -> Task:
    return Task(name, dx, cov.shape[0] - dx, gaussian_mi(cov, dx), _gaussian(cov, dx), "gaussian")


def student_task(name: str, cov: Tensor, dx: int, nu: float) -> Task:
    return Task(name, dx, cov.shape[0] - dx, student_mi(cov, dx, nu), _student(cov, dx, nu), "student")


def transformed(task: Task, kind: str) -> Task:
    if kind == "spiral" and task.dx < 2:
        raise ValueError("the spiral needs at least 2 dimensions")
    return Task(
        f"{kind}({task.name})", task.dx, task.dy, task.mi, _transformed(task.sampler, kind), "transformed"
    )


def _corr2(rho: float) -> Tensor:
    return torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)


def suite() -> list[Task]:
    """The 40 calibration tasks: 14 Gaussian, 8 Student-t, 14 transformed, 4 others (2 with I = 0)."""
    g = gaussian_task
    t = student_task
    gauss_1_075 = g("gauss-1x1-r0.75", _corr2(0.75), 1)
    dense_2 = g("gauss-2x2-dense", dense_cov(2, 2, 0.5), 2)
    dense_3 = g("gauss-3x3-dense", dense_cov(3, 3, 0.5), 3)
    dense_5 = g("gauss-5x5-dense", dense_cov(5, 5, 0.5), 5)
    dense_25 = g("gauss-25x25-dense", dense_cov(25, 25, 0.5), 25)
    sparse_3 = g("gauss-3x3-sparse", sparse_cov(3, 3, 2, 0.8), 3)
    sparse_5 = g("gauss-5x5-sparse", sparse_cov(5, 5, 2, 0.8), 5)
    sparse_25 = g("gauss-25x25-sparse", sparse_cov(25, 25, 2, 0.8), 25)
    student_1 = t("student-1x1-dof1", torch.eye(2, dtype=torch.float64), 1, 1.0)
    student_3 = t("student-3x3-dof2", torch.eye(6, dtype=torch.float64), 3, 2.0)
    one_by_ten = torch.eye(11, dtype=torch.float64)
    one_by_ten[:10, 10] = one_by_ten[10, :10] = 0.25  # y correlated with all ten x's: |S_xy| = 0.79
    tasks = [
        g("gauss-1x1-r0.5", _corr2(0.5), 1),
        gauss_1_075,
        g("gauss-1x1-r0.9", _corr2(0.9), 1),
        dense_2,
        dense_3,
        dense_5,
        g("gauss-10x10-dense", dense_cov(10, 10, 0.5), 10),
        dense_25,
        sparse_3,
        sparse_5,
        g("gauss-10x10-sparse", sparse_cov(10, 10, 2, 0.8), 10),
        sparse_25,
        g("gauss-25x25-sparse-weak", sparse_cov(25, 25, 5, 0.5), 25),
        g("gauss-10x1", one_by_ten, 10),
        student_1,
        t("student-1x1-dof2-r0.5", _corr2(0.5), 1, 2.0),
        t("student-2x2-dof3-dense", dense_cov(2, 2, 0.5), 2, 3.0),
        student_3,
        t("student-5x5-dof3-sparse", sparse_cov(5, 5, 2, 0.8), 5, 3.0),
        t("student-10x10-dof5", torch.eye(20, dtype=torch.float64), 10, 5.0),
        t("student-25x25-dof10-sparse", sparse_cov(25, 25, 2, 0.8), 25, 10.0),
        t("student-5x5-dof30-dense", dense_cov(5, 5, 0.5), 5, 30.0),
        transformed(gauss_1_075, "halfcube"),
        transformed(sparse_5, "halfcube"),
        transformed(student_1, "asinh"),
        transformed(student_3, "asinh"),
        transformed(dense_2, "normalcdf"),
        transformed(dense_25, "normalcdf"),
        transformed(gauss_1_075, "wiggly"),
        transformed(dense_3, "wiggly"),
        transformed(gauss_1_075, "exp"),
        transformed(sparse_25, "exp"),
        transformed(dense_2, "cube"),
        transformed(dense_3, "spiral"),
        transformed(sparse_5, "spiral"),
        transformed(sparse_3, "spiral"),
        Task("additive-uniform-0.75", 1, 1, 0.375 - math.log(0.75), _additive_uniform(0.75), "other"),
        Task("additive-uniform-0.3", 1, 1, 0.15 - math.log(0.3), _additive_uniform(0.3), "other"),
        g("independent-gauss-5x5", torch.eye(10, dtype=torch.float64), 5),
        Task("independent-student-2x2-dof1", 2, 2, 0.0, _independent_student(2, 2, 1.0), "other"),
    ]
    names = [task.name for task in tasks]
    assert len(set(names)) == len(names), "task names must be unique"
    return tasks


def task(name: str) -> Task:
    """One task of :func:`suite` by name."""
    for candidate in suite():
        if candidate.name == name:
            return candidate
    raise KeyError(f"no task {name!r}; known: {[t.name for t in suite()]}")


# ---------------------------------------------------------------------------------------------------------
# Discrete: joint tables of (identity, behaviour) labels
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    name: str
    p: Tensor  # joint probabilities [kx, ky]

    @property
    def mi(self) -> float:
        px, py = self.p.sum(1, keepdim=True), self.p.sum(0, keepdim=True)
        mask = self.p > 0
        return max(0.0, float((self.p[mask] * (self.p[mask] / (px * py)[mask]).log()).sum()))

    @property
    def entropy_y(self) -> float:
        py = self.p.sum(0)
        py = py[py > 0]
        return float(-(py * py.log()).sum())

    def sample(self, n: int, reps: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """``reps`` samples of n labelled pairs: x, y ``[reps, n]``."""
        ky = self.p.shape[1]
        idx = torch.multinomial(self.p.reshape(-1), n * reps, replacement=True, generator=gen).reshape(
            reps, n
        )
        return idx // ky, idx % ky


def discrete_tables() -> list[Table]:
    """27 joint tables, 2 x 2 to 8 x 16 labels: independent (uniform and skewed margins), specialists (each x
    puts 0.9 on its own y), half-specialists (0.5), random Dirichlet(1/2) tables, and identities."""
    gen = torch.Generator().manual_seed(0)
    tables = []

    def norm(t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        return t / t.sum()

    for kx, ky in [(2, 2), (4, 4), (8, 8), (4, 16), (8, 6)]:
        px = torch.rand(kx, generator=gen, dtype=torch.float64) + 0.2
        py = torch.rand(ky, generator=gen, dtype=torch.float64) + 0.1
        tables += [Table(f"independent-uniform-{kx}x{ky}", norm(torch.ones(kx, ky)))]
        tables += [Table(f"independent-skewed-{kx}x{ky}", norm(px[:, None] * py[None]))]
        for share, label in ((0.9, "specialists"), (0.5, "half-specialists")):
            t = torch.full((kx, ky), (1 - share) / ky, dtype=torch.float64)
            t[torch.arange(kx), torch.arange(kx) % ky] += share
            tables.append(Table(f"{label}-{kx}x{ky}", norm(t)))
        alpha = torch.full((kx * ky,), 0.5, dtype=torch.float64)
        weights = torch._standard_gamma(alpha, generator=gen)
        tables.append(Table(f"dirichlet-{kx}x{ky}", norm(weights.reshape(kx, ky))))
    tables += [Table("identity-4", norm(torch.eye(4))), Table("identity-8", norm(torch.eye(8)))]
    return tables

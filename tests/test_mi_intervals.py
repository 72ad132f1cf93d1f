"""MI estimates you can trust: ground truth in closed form (Gaussian incl. sparse interactions and 25 x 25
dims, Student-t, invariance under invertible per-coordinate maps), the subsampling-extrapolation protocol,
the estimators' errors and interval coverage over repetitions, and the small-sample discrete intervals.

The long coverage study (every family, 5,000 samples, 10 repetitions) is marked slow; the benchmark
``python -m marl.benchmarks.mi_calibration`` runs the whole suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marl.benchmarks.mi_suite import (
    dense_cov,
    discrete_tables,
    gaussian_mi,
    sparse_cov,
    student_mi,
    suite,
    task,
    transformed,
)
from marl.metrics import (
    CriticConfig,
    MIInterval,
    critic_estimates,
    discrete_information,
    entropy_grassberger,
    extrapolate,
    gaussian_interval,
    gaussian_mutual_information,
    ksg_interval,
    mutual_information_grassberger,
    mutual_information_interval,
)
from marl.metrics.extrapolation import t_two_sided_p
from marl.metrics.transforms import apply_transform, average_ranks, copula_normal

pytestmark = pytest.mark.usefixtures("one_thread")


def _covered(result: MIInterval, truth: float) -> bool:
    return result.low <= truth <= result.high


# --------------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------------


def test_gaussian_closed_form_sparse_and_dense():
    # sparse: m independent pairs of correlation rho, whatever the distractor dims
    assert gaussian_mi(sparse_cov(25, 25, 2, 0.8), 25) == pytest.approx(-math.log(1 - 0.64), rel=1e-12)
    assert gaussian_mi(sparse_cov(3, 7, 3, 0.5), 3) == pytest.approx(-1.5 * math.log(0.75), rel=1e-12)
    # dense, all correlations c: one canonical correlation; check against its eigen form
    cov = dense_cov(25, 25, 0.5)
    s_xx, s_yy, s_xy = cov[:25, :25], cov[25:, 25:], cov[:25, 25:]
    whitened = torch.linalg.solve(s_xx, s_xy) @ torch.linalg.solve(s_yy, s_xy.T)
    rho2 = torch.linalg.eigvals(whitened).real.clamp(0, 1)
    assert gaussian_mi(cov, 25) == pytest.approx(float(-0.5 * torch.log1p(-rho2).sum()), rel=1e-9)


@pytest.mark.parametrize(
    "cov, dx, nu",
    [
        (torch.eye(2, dtype=torch.float64), 1, 1.0),
        (dense_cov(2, 2, 0.5), 2, 3.0),
        (sparse_cov(5, 5, 2, 0.8), 5, 3.0),
    ],
)
def test_student_t_closed_form_matches_monte_carlo(cov, dx, nu):
    stats = pytest.importorskip("scipy.stats")
    c, d = cov.numpy(), cov.shape[0]
    joint = stats.multivariate_t(np.zeros(d), c, df=nu)
    mx = stats.multivariate_t(np.zeros(dx), c[:dx, :dx], df=nu)
    my = stats.multivariate_t(np.zeros(d - dx), c[dx:, dx:], df=nu)
    z = joint.rvs(size=200_000, random_state=1)
    log_ratio = joint.logpdf(z) - mx.logpdf(z[:, :dx]) - my.logpdf(z[:, dx:])
    sem = log_ratio.std() / math.sqrt(len(log_ratio))
    assert abs(log_ratio.mean() - student_mi(cov, dx, nu)) < 4 * sem + 1e-3


def test_suite_is_forty_tasks_that_sample_what_they_say():
    tasks = suite()
    assert len(tasks) == 40 and max(max(t.dx, t.dy) for t in tasks) == 25
    assert {t.family for t in tasks} == {"gaussian", "student", "transformed", "other"}
    for t in tasks:
        x, y = t.sample(64, 0)
        assert x.shape == (64, t.dx) and y.shape == (64, t.dy) and x.dtype == torch.float64
        assert bool(torch.isfinite(x).all() and torch.isfinite(y).all()) and t.mi >= 0
    x1, _ = tasks[0].sample(10, 3)
    x2, _ = tasks[0].sample(10, 3)
    assert torch.equal(x1, x2)


# --------------------------------------------------------------------------------------------------------
# Transforms and invariance
# --------------------------------------------------------------------------------------------------------


def test_copula_ranks_with_ties_and_normal_scores():
    v = torch.tensor([[3.0, 1.0], [1.0, 1.0], [2.0, 5.0], [1.0, 0.0]])
    assert average_ranks(v).tolist() == [[4.0, 2.5], [1.5, 2.5], [3.0, 4.0], [1.5, 1.0]]
    scores = copula_normal(torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)))
    assert scores.mean(0).abs().max() < 1e-12 and scores.std(0).sub(1).abs().max() < 0.02
    with pytest.raises(ValueError, match="constant column"):
        apply_transform(torch.ones(10, 2), "copula")
    with pytest.raises(ValueError, match="unknown transform"):
        apply_transform(torch.ones(10, 2), "rank")


@pytest.mark.parametrize("kind", ["halfcube", "asinh", "normalcdf", "exp", "cube", "wiggly"])
def test_copula_estimates_are_invariant_under_increasing_per_coordinate_maps(kind):
    base = task("gauss-3x3-dense")
    changed = transformed(base, kind)
    x, y = base.sample(2000, 7)
    xt, yt = changed.sample(2000, 7)  # the same draw, mapped
    assert not torch.allclose(x, xt)
    a, b = gaussian_interval(x, y, seed=1), gaussian_interval(xt, yt, seed=1)
    assert a.estimate == b.estimate and a.low == b.low and a.high == b.high
    k1 = ksg_interval(x[:600], y[:600], k=3, seed=1, gammas=(1, 2, 3, 4))
    k2 = ksg_interval(xt[:600], yt[:600], k=3, seed=1, gammas=(1, 2, 3, 4))
    assert k1.estimate == pytest.approx(k2.estimate, abs=1e-12)


def test_heavy_tails_break_standardised_knn_but_not_the_copula():
    t = task("student-1x1-dof1")
    x, y = t.sample(3000, 2)
    copula = ksg_interval(x, y, transform="copula", seed=0, gammas=(1, 2, 3, 4, 5))
    standard = ksg_interval(x, y, transform="standardize", seed=0, gammas=(1, 2, 3, 4, 5))
    assert abs(copula.estimate - t.mi) < 0.05
    assert abs(standard.estimate - t.mi) > abs(copula.estimate - t.mi)


# --------------------------------------------------------------------------------------------------------
# The subsampling-extrapolation protocol
# --------------------------------------------------------------------------------------------------------


def _synthetic(bias, sd: float = 0.5, n: int = 5000, seed: int = 0) -> dict[int, torch.Tensor]:
    """Subsample estimates as an estimator gives them: 0.5 + bias(gamma) + the mean of per-sample terms over
    the subsample (sd ``sd`` each; shared by all gammas, as the samples are) + an independent remainder."""
    g = torch.Generator().manual_seed(seed)
    terms = sd * torch.randn(n, generator=g, dtype=torch.float64)
    out = {}
    for gamma in range(1, 11):
        blocks = torch.randperm(n, generator=g)[: n // gamma * gamma].reshape(gamma, -1)
        remainder = 0.5 * sd * math.sqrt(gamma / n) * torch.randn(gamma, generator=g, dtype=torch.float64)
        out[gamma] = 0.5 + bias(gamma) + terms[blocks].mean(1) + remainder
    return out


def test_extrapolation_removes_a_bias_linear_in_one_over_n():
    result = extrapolate(_synthetic(lambda g: 0.05 * g), 5000)
    assert result.estimate == pytest.approx(0.5, abs=0.015) and _covered(result, 0.5)
    assert result.raw == pytest.approx(0.55, abs=0.015) and result.raw > result.high
    assert result.reliable and result.gammas == tuple(range(1, 11))
    assert result.slope == pytest.approx(0.05, abs=0.003)


def test_extrapolation_interval_is_calibrated():
    hits = sum(_covered(extrapolate(_synthetic(lambda g: 0.01 * g, seed=s), 5000), 0.5) for s in range(100))
    assert 90 <= hits <= 99  # nominal 95


def test_curvature_drops_large_gammas_and_too_much_curvature_is_not_reliable():
    mild = extrapolate(_synthetic(lambda g: 0.01 * g + (0.05 * (g - 6) ** 2 if g > 6 else 0.0)), 5000)
    assert mild.reliable and mild.gammas == tuple(range(1, 9)) and _covered(mild, 0.5)
    strong = extrapolate(_synthetic(lambda g: 0.05 * g * g), 5000)
    assert not strong.reliable and "not linear" in strong.reason and strong.gammas == (1, 2, 3, 4, 5)
    assert strong.verdict.startswith("not reliable, because")


def test_drift_allowance_widens_towards_the_missing_bias_and_flags_it():
    slow = extrapolate(_synthetic(lambda g: -0.3 * math.sqrt(g)), 5000, drift_exponent=0.25)
    plain = extrapolate(_synthetic(lambda g: -0.3 * math.sqrt(g)), 5000)
    assert slow.high > plain.high + 0.3 and slow.low == plain.low and _covered(slow, 0.5)
    assert not slow.reliable and "drifts" in slow.reason


def test_t_distribution_tail():
    stats = pytest.importorskip("scipy.stats")
    for t, df in [(0.5, 1), (3.0, 2), (1.5, 5), (10.0, 7), (2.5, 30)]:
        assert t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)


# --------------------------------------------------------------------------------------------------------
# Estimators: errors and coverage over repetitions
# --------------------------------------------------------------------------------------------------------


def test_gaussian_estimate_is_unbiased_up_to_25_dims():
    for name in ("gauss-25x25-sparse", "gauss-25x25-dense", "gauss-10x1"):
        t = task(name)
        estimates = [
            float(gaussian_mutual_information(*(apply_transform(v, "copula") for v in t.sample(3000, s))))
            for s in range(8)
        ]
        assert abs(sum(estimates) / 8 - t.mi) < 0.02, name
    # without the Wishart correction it is biased up by about dx dy / (2 n)
    x, y = task("gauss-25x25-sparse").sample(3000, 0)
    raw = float(gaussian_mutual_information(x, y, bias_correct=False))
    assert raw - float(gaussian_mutual_information(x, y)) == pytest.approx(625 / 6000, rel=0.2)


@pytest.mark.parametrize("name", ["gauss-5x5-sparse", "exp(gauss-25x25-sparse)"])
def test_gaussian_interval_covers_over_repetitions(name):
    t = task(name)
    results = [gaussian_interval(*t.sample(2000, 100 + s), seed=s) for s in range(20)]
    assert sum(_covered(r, t.mi) for r in results) >= 17  # nominal 19 of 20
    assert all(r.reliable for r in results)
    assert sum(r.high - r.low for r in results) / 20 < 0.15


def test_gaussian_verdict_sees_non_gaussian_dependence():
    x, y = task("student-5x5-dof3-sparse").sample(3000, 0)
    result = gaussian_interval(x, y)
    assert not result.reliable and "not Gaussian" in result.reason


def test_ksg_interval_covers_a_heavy_tailed_task_over_repetitions():
    t = task("student-1x1-dof2-r0.5")
    results = [ksg_interval(*t.sample(1500, 200 + s), seed=s) for s in range(8)]
    assert sum(_covered(r, t.mi) for r in results) >= 6
    assert abs(sum(r.estimate for r in results) / 8 - t.mi) < 0.03


def test_ksg_flags_distractor_dimensions():
    t = task("gauss-5x5-sparse")  # KSG is ~0.3 nats low here: it must say so
    result = ksg_interval(*t.sample(2000, 0), seed=0)
    assert t.mi - result.estimate > 0.1 and not result.reliable


def test_batched_critics_estimate_gaussian_information():
    t = task("gauss-2x2-dense")
    xs, ys = [], []
    for s in range(3):
        x, y = t.sample(1500, s)
        xs.append(apply_transform(x, "copula"))
        ys.append(apply_transform(y, "copula"))
    for cfg in (
        CriticConfig(objective="infonce", gaussian_base=False, max_steps=600),
        CriticConfig(critic="variational", objective="smile", gaussian_base=False, max_steps=600),
        CriticConfig(objective="smile", max_steps=300),
    ):
        run = critic_estimates(xs, ys, cfg, seed=0)
        assert run.estimate.shape == (3,) and bool((run.best_step >= 0).all())
        assert (run.estimate - t.mi).abs().max() < 0.12, (cfg.name, run.estimate)
        if cfg.objective == "infonce":
            assert bool((run.estimate <= torch.log(run.n_test.double())).all())
    again = critic_estimates(xs, ys, CriticConfig(objective="smile", max_steps=300), seed=0)
    assert torch.equal(again.estimate, run.estimate)  # deterministic for a seed


def test_concat_critic_and_errors():
    t = task("gauss-1x1-r0.75")
    x, y = t.sample(800, 0)
    run = critic_estimates(
        [x], [y], CriticConfig(critic="concat", objective="smile", batch_size=32, max_steps=150)
    )
    assert abs(float(run.estimate[0]) - t.mi) < 0.25
    with pytest.raises(ValueError, match="unknown critic"):
        CriticConfig(critic="bilinear")
    with pytest.raises(ValueError, match="too small"):
        critic_estimates([x[:5]], [y[:5]])


def test_auto_picks_the_estimator_that_sees_the_dependence():
    student = task("student-1x1-dof1")  # the Gaussian sees nothing here, KSG does
    result = mutual_information_interval(*student.sample(2000, 0))
    assert result.estimator.startswith("ksg") and len(result.candidates) == 2
    assert abs(result.estimate - student.mi) < 0.1  # the sd of KSG here is ~0.04
    gauss = task("gauss-10x10-sparse")  # above KSG's range: the Gaussian, reliable, no critic needed
    result = mutual_information_interval(*gauss.sample(2000, 0))
    assert result.estimator.startswith("gaussian") and result.reliable and _covered(result, gauss.mi)
    assert len(result.candidates) == 1
    assert result.as_dict()["verdict"] == "reliable"


def test_classifier_interval_with_labels():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2000,), generator=g)
    feats = labels.unsqueeze(1).double() + 0.5 * torch.randn(2000, 2, generator=g, dtype=torch.float64)
    result = mutual_information_interval(labels, feats, estimator="classifier")
    assert 0.5 < result.estimate < math.log(4) and result.estimator.startswith("classifier")


def test_interval_api_errors():
    x = torch.randn(100, 2)
    with pytest.raises(ValueError, match="unknown estimator"):
        mutual_information_interval(x, x, estimator="mine")
    with pytest.raises(ValueError, match="same number of samples"):
        mutual_information_interval(x, x[:50])
    with pytest.raises(TypeError, match="floating point"):
        mutual_information_interval(torch.zeros(100, dtype=torch.long), x, estimator="ksg")


# --------------------------------------------------------------------------------------------------------
# Discrete, small samples
# --------------------------------------------------------------------------------------------------------


def test_grassberger_entropy_by_hand():
    special = pytest.importorskip("scipy.special")

    def g(c: int) -> float:
        return special.digamma(c) + 0.5 * (-1) ** c * (special.digamma((c + 1) / 2) - special.digamma(c / 2))

    y = torch.tensor([0, 0, 0, 1, 1, 2])
    expected = math.log(6) - (3 * g(3) + 2 * g(2) + g(1)) / 6
    assert float(entropy_grassberger(y)) == pytest.approx(expected, rel=1e-12)
    assert float(entropy_grassberger(torch.zeros(50, dtype=torch.long))) == 0.0
    x = torch.tensor([0, 0, 1, 1, 0, 1])
    mi = float(entropy_grassberger(x)) + expected - float(entropy_grassberger(x * 3 + y))
    assert float(mutual_information_grassberger(x, y)) == pytest.approx(mi, rel=1e-12)


@pytest.mark.parametrize("name", ["specialists-8x8", "independent-uniform-4x16", "half-specialists-4x4"])
def test_discrete_intervals_cover_at_200_samples(name):
    table = next(t for t in discrete_tables() if t.name == name)
    gen = torch.Generator().manual_seed(3)
    xs, ys = table.sample(200, 100, gen)
    hits = sum(
        lo <= table.mi <= hi
        for x, y in zip(xs, ys)
        for _, lo, hi in [discrete_information(x, y, n_half=50, generator=gen).mutual_information]
    )
    assert hits >= 88  # nominal 95 of 100; the bootstrap it replaces covers specialists-8x8 in ~55


def test_discrete_verdict_on_too_few_samples_per_label():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 8, (60,), generator=gen)
    y = torch.randint(0, 40, (60,), generator=gen)
    info = discrete_information(x, y, generator=gen)
    assert not info.reliable and "too few samples" in info.reason
    ok = discrete_information(torch.arange(4).repeat(100), torch.arange(4).repeat(100), generator=gen)
    assert ok.reliable and ok.verdict == "reliable" and ok.ratio == (1.0, 1.0, 1.0)


# --------------------------------------------------------------------------------------------------------
# The package
# --------------------------------------------------------------------------------------------------------


def test_star_import_names_only_what_exists():
    import marl.metrics

    namespace: dict = {}
    exec("from marl.metrics import *", namespace)
    assert all(name in namespace for name in marl.metrics.__all__)
    assert len(set(marl.metrics.__all__)) == len(marl.metrics.__all__)


# --------------------------------------------------------------------------------------------------------
# The long study
# --------------------------------------------------------------------------------------------------------

SLOW_TASKS = (
    "gauss-1x1-r0.9",
    "gauss-5x5-dense",
    "gauss-25x25-sparse",
    "student-1x1-dof2-r0.5",
    "student-2x2-dof3-dense",
    "halfcube(gauss-5x5-sparse)",
    "normalcdf(gauss-25x25-dense)",
    "additive-uniform-0.75",
    "independent-student-2x2-dof1",
)


@pytest.mark.slow
def test_auto_coverage_and_error_over_repetitions():
    """5,000 samples, 10 repetitions per task: mean absolute error <= 0.15, intervals cover in >= 75% of
    repetitions on average, and every estimate off by more than 0.1 is covered or flagged."""
    errors, covered, honest = [], [], []
    for name in SLOW_TASKS:
        t = task(name)
        for rep in range(10):
            r = mutual_information_interval(*t.sample(5000, 1000 + rep), seed=rep)
            errors.append(abs(r.estimate - t.mi))
            covered.append(_covered(r, t.mi))
            if abs(r.estimate - t.mi) > 0.1:
                honest.append(_covered(r, t.mi) or not r.reliable)
    assert sum(errors) / len(errors) <= 0.15
    assert sum(covered) / len(covered) >= 0.75
    assert all(honest)

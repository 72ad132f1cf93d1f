"""Tests for the continuous and variational MI estimators: KSG (marl.metrics.knn) and the classifier lower
bound (marl.metrics.variational), plus the discrete estimator against scikit-learn."""

import math

import pytest
import torch

from marl.metrics import knn
from marl.metrics.information import mutual_information_discrete
from marl.metrics.knn import (
    count_within,
    ksg_local_terms,
    ksg_mutual_information,
    ksg_mutual_information_ci,
    kth_neighbor_distance,
)
from marl.metrics.variational import ClassifierMIResult, classifier_mi_lower_bound


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: results do not depend on it, and OpenMP thread pools slow to a crawl when tests run
    beside other CPU-heavy processes on a small machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian_pairs(n: int, rho: float, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """x, y with dim independent pairs of correlation rho: I = -dim / 2 * log(1 - rho^2)."""
    g = _gen(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, y, -0.5 * dim * math.log(1 - rho**2)


def _awkward(kind: str, n: int, d: int, seed: int) -> torch.Tensor:
    """Data that forces the grid into extra passes / levels: heavy tails, tight clusters, a thin line."""
    g = _gen(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    if kind == "cauchy":
        return torch.tan(math.pi * (torch.rand(n, d, generator=g, dtype=torch.float64) - 0.5))
    if kind == "lognormal":
        return (3 * z).exp()
    if kind == "clusters":
        centres = 10 * torch.randn(5, d, generator=g, dtype=torch.float64)
        label = torch.randint(0, 5, (n,), generator=g)
        scale = torch.tensor([1e-3, 1e-2, 1.0, 1e-4, 0.3], dtype=torch.float64)[label, None]
        return centres[label] + scale * z
    if kind == "line":
        return z[:, :1].expand(n, d) + 1e-6 * z
    if kind == "piles":  # 40 % of the points on 3 spots (jittered duplicates, e.g. clipped actions)
        spots = torch.randn(3, d, generator=g, dtype=torch.float64)
        pile = torch.rand(n, generator=g) < 0.4
        which = torch.randint(0, 3, (n,), generator=g)
        return torch.where(pile[:, None], spots[which] + 1e-10 * z, z)
    return z


# --------------------------------------------------------------------------------------------------------
# KSG: accuracy and CI
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ksg_gaussian_truth_inside_ci(rho, dim):
    x, y, truth = _gaussian_pairs(2000, rho, dim, seed=1)
    estimate, low, high = ksg_mutual_information_ci(x, y, n_boot=20, generator=_gen(2))
    assert low <= truth <= high, (float(estimate), float(low), float(high), truth)
    assert abs(float(estimate) - truth) < 0.06
    assert low < estimate < high


def test_ksg_independent_ci_contains_zero():
    g = _gen(3)
    x = torch.randn(3000, 2, generator=g)
    y = torch.rand(3000, generator=g) ** 3  # independent, non-Gaussian, float32 input
    estimate, low, high = ksg_mutual_information_ci(x, y, generator=g)
    assert low <= 0.0 <= high
    assert abs(float(estimate)) < 0.03


def test_ksg_local_ci_contains_truth_and_is_narrower():
    x, y, truth = _gaussian_pairs(3000, 0.6, 1, seed=4)
    est, low, high = ksg_mutual_information_ci(x, y, ci="local", generator=_gen(5))
    est2, low2, high2 = ksg_mutual_information_ci(x, y, generator=_gen(5))
    assert est == est2 == ksg_mutual_information(x, y)
    assert low <= truth <= high
    assert high - low < high2 - low2  # the local bootstrap ignores the correlation between terms


def test_ksg_mi_adds_up_over_independent_pairs():
    x, y, truth = _gaussian_pairs(3000, 0.7, 2, seed=6)
    both = float(ksg_mutual_information(x, y))
    assert both == pytest.approx(truth, abs=0.05)
    single = float(ksg_mutual_information(x[:, :1], y[:, :1]))
    assert single == pytest.approx(truth / 2, abs=0.04)


def test_ksg_local_terms_mean_is_estimate():
    x, y, _ = _gaussian_pairs(1000, 0.5, 1, seed=7)
    terms = ksg_local_terms(x, y, k=4)
    assert terms.shape == (1000,) and terms.dtype == torch.float64
    assert torch.equal(terms.mean(), ksg_mutual_information(x, y, k=4))


def test_ksg_subsample_ci_width_matches_spread_across_datasets():
    # Cheap coverage check: the CI's sd (half-width / z) must track the real sd of the estimate, measured
    # over 200 datasets. Offline, 100 datasets per case gave 94-99 % coverage at nominal 95 %; the local
    # bootstrap gets a ratio of ~0.7-0.85 here (83-91 % coverage) and fails, as would a much too wide CI.
    n, rho = 400, 0.5
    estimates = [
        float(ksg_mutual_information(*_gaussian_pairs(n, rho, 1, seed=100 + s)[:2])) for s in range(200)
    ]
    real_sd = torch.tensor(estimates).std().item()
    ci_sd = []
    for seed in range(10):
        x, y, _ = _gaussian_pairs(n, rho, 1, seed=100 + seed)
        _, low, high = ksg_mutual_information_ci(x, y, n_boot=20, generator=_gen(seed))
        ci_sd.append(float(high - low) / (2 * 1.959964))
    ratio = sum(ci_sd) / len(ci_sd) / real_sd
    assert 0.95 < ratio < 1.6, ratio


def test_ksg_matches_sklearn():
    feature_selection = pytest.importorskip("sklearn.feature_selection")
    for seed, rho, k in [(0, 0.3, 3), (1, 0.8, 3), (2, 0.6, 5)]:
        x, y, _ = _gaussian_pairs(3000, rho, 1, seed=seed)
        ours = float(ksg_mutual_information(x, y, k=k))
        ref = feature_selection.mutual_info_regression(
            x.numpy(), y[:, 0].numpy(), n_neighbors=k, random_state=0
        )
        assert ours == pytest.approx(float(ref[0]), abs=1e-6)


def test_ksg_scale_invariant_with_standardize():
    x, y, _ = _gaussian_pairs(1500, 0.6, 2, seed=8)
    base = float(ksg_mutual_information(x, y))
    scaled = float(ksg_mutual_information(x * torch.tensor([1e3, 0.01]), y * 7.5 - 3.0))
    assert scaled == pytest.approx(base, abs=1e-9)
    # without standardisation the metric mixes the scales and the estimate changes
    assert float(ksg_mutual_information(x * 1e3, y, standardize=False)) != pytest.approx(base, abs=1e-3)


# --------------------------------------------------------------------------------------------------------
# KSG: exact neighbour search
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 4])
@pytest.mark.parametrize("kind", ["gauss", "cauchy", "lognormal", "clusters", "line", "piles"])
def test_grid_and_brute_force_agree_exactly(kind, d):
    points = _awkward(kind, 1500, d, seed=d)
    for k in (1, 3):
        grid = kth_neighbor_distance(points, k, method="grid")
        brute = kth_neighbor_distance(points, k, method="brute")
        assert torch.equal(grid, brute)
    assert torch.equal(count_within(points, grid, method="grid"), count_within(points, grid, method="brute"))


def test_grid_uses_extra_passes_on_heavy_tails(monkeypatch):
    calls = []
    block_distances = knn._Grid.block_distances

    def spy(self, qpos, a, budget, min_width=1, runs=None):
        calls.append((self.h, a, qpos.numel()))
        return block_distances(self, qpos, a, budget, min_width, runs)

    monkeypatch.setattr(knn._Grid, "block_distances", spy)
    points = _awkward("lognormal", 4000, 2, seed=0)
    kth = kth_neighbor_distance(points, 3, method="grid")
    assert len({(h, a) for h, a, _ in calls}) >= 3  # several (level, radius) passes
    assert len({h for h, _, _ in calls}) >= 2  # and at least one coarser grid
    assert torch.equal(kth, kth_neighbor_distance(points, 3, method="brute"))


def test_grid_solves_piles_recursively(monkeypatch):
    depths = []
    grid_kth = knn._grid_kth

    def spy(points, k, chunk_size, queries=None, depth=0):
        depths.append(depth)
        return grid_kth(points, k, chunk_size, queries, depth)

    monkeypatch.setattr(knn, "_grid_kth", spy)
    points = _awkward("piles", 6000, 2, seed=1)
    kth = kth_neighbor_distance(points, 3, method="grid")
    assert max(depths) >= 1
    assert torch.equal(kth, kth_neighbor_distance(points, 3, method="brute"))
    x, y = points.unbind(1)
    assert torch.equal(ksg_local_terms(x, y, method="grid"), ksg_local_terms(x, y, method="brute"))


def test_ksg_grid_and_brute_estimates_identical():
    x = _awkward("cauchy", 2000, 1, seed=9)
    y = x + _awkward("clusters", 2000, 1, seed=10)
    assert float(ksg_mutual_information(x, y, method="grid")) == float(
        ksg_mutual_information(x, y, method="brute")
    )
    x2, y2, _ = _gaussian_pairs(1500, 0.5, 2, seed=11)
    assert torch.equal(ksg_local_terms(x2, y2, method="grid"), ksg_local_terms(x2, y2, method="brute"))


def test_count_within_1d_exact_at_boundaries():
    v = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.3, 0.3, 1.0], dtype=torch.float64)
    r = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.0, 1e-9, 0.7], dtype=torch.float64)
    expected = torch.stack([((v - v[i]).abs() < r[i]).sum() - (r[i] > 0).long() for i in range(len(v))])
    assert torch.equal(count_within(v, r), expected)
    assert torch.equal(count_within(v, r, method="brute"), expected)


def test_kth_neighbor_distance_small_hand_case():
    p = torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.2, -2.0], [5.0, 5.0]])
    # Chebyshev distances from point 0: 1.0, 2.0, 5.0 -> k=1: 1.0, k=2: 2.0
    assert kth_neighbor_distance(p, 1)[0] == 1.0
    assert kth_neighbor_distance(p, 2)[0] == 2.0
    assert torch.equal(kth_neighbor_distance(p, 3), torch.tensor([5.0, 4.5, 7.0, 7.0], dtype=torch.float64))


# --------------------------------------------------------------------------------------------------------
# KSG: ties and bad input
# --------------------------------------------------------------------------------------------------------


def test_ksg_duplicates_raise_and_jitter_fixes_them():
    g = _gen(12)
    x = torch.randint(0, 3, (500,), generator=g).double()  # discrete values: massive ties
    y = x + torch.randn(500, generator=g, dtype=torch.float64)
    with pytest.raises(ValueError, match="duplicate points"):
        ksg_mutual_information(x, x.clone())
    value = ksg_mutual_information(x, y, jitter=1e-10, generator=_gen(0))
    assert torch.isfinite(value)
    assert value == ksg_mutual_information(x, y, jitter=1e-10, generator=_gen(0))  # same noise


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "error"),
    [
        (torch.randn(10), torch.randn(9), {}, ValueError),
        (torch.randn(10, 2, 2), torch.randn(10), {}, ValueError),
        (torch.arange(10), torch.randn(10), {}, TypeError),
        (torch.randn(10), torch.randn(10), {"k": 0}, ValueError),
        (torch.randn(4), torch.randn(4), {"k": 4}, ValueError),
        (torch.tensor([1.0, float("nan"), 2.0, 3.0, 4.0]), torch.randn(5), {"k": 1}, ValueError),
        (torch.ones(10), torch.randn(10), {}, ValueError),
        (torch.randn(10), torch.randn(10), {"jitter": -1.0}, ValueError),
        (torch.randn(10), torch.randn(10), {"method": "kdtree"}, ValueError),
        (torch.randn(10), torch.randn(10), {"chunk_size": 0}, ValueError),
    ],
)
def test_ksg_bad_input(x, y, kwargs, error):
    with pytest.raises(error):
        ksg_mutual_information(x, y, **kwargs)


def test_ksg_ci_bad_input():
    x, y, _ = _gaussian_pairs(100, 0.5, 1, seed=0)
    with pytest.raises(ValueError):
        ksg_mutual_information_ci(x, y, ci="bootstrap")
    with pytest.raises(ValueError):
        ksg_mutual_information_ci(x, y, level=1.0)
    with pytest.raises(ValueError):
        ksg_mutual_information_ci(x, y, n_boot=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ksg_cuda_matches_cpu():
    x, y, _ = _gaussian_pairs(5000, 0.5, 1, seed=13)
    cpu = ksg_local_terms(x, y)
    for method in ("grid", "brute"):
        assert torch.equal(ksg_local_terms(x.cuda(), y.cuda(), method=method).cpu(), cpu)
    x2, y2, _ = _gaussian_pairs(3000, 0.5, 2, seed=14)
    assert torch.equal(ksg_local_terms(x2.cuda(), y2.cuda()).cpu(), ksg_local_terms(x2, y2))


# --------------------------------------------------------------------------------------------------------
# Discrete MI vs scikit-learn
# --------------------------------------------------------------------------------------------------------


def test_discrete_mi_plugin_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = _gen(15)
    cases = [
        (torch.randint(0, 5, (1000,), generator=g), torch.randint(0, 7, (1000,), generator=g)),
        (torch.randint(-3, 40, (5000,), generator=g) * 17, torch.randint(0, 3, (5000,), generator=g)),
    ]
    x = torch.randint(0, 8, (20000,), generator=g)
    cases.append((x, (x + torch.randint(0, 2, (20000,), generator=g)) % 8))
    for a, b in cases:
        ours = float(mutual_information_discrete(a, b, miller_madow=False))
        assert ours == pytest.approx(metrics.mutual_info_score(a.numpy(), b.numpy()), abs=1e-9)


# --------------------------------------------------------------------------------------------------------
# Classifier lower bound
# --------------------------------------------------------------------------------------------------------


def _label_features(n: int, m: int, p: float, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """X ~ U{0..m-1}; Y = X with prob. p, else uniform; features = one-hot(Y) and d - m noise dims, rotated
    (an invertible map: I(X; features) = I(X; Y)). Returns the true MI too."""
    g = _gen(seed)
    x = torch.randint(0, m, (n,), generator=g)
    keep = torch.rand(n, generator=g) < p
    y = torch.where(keep, x, torch.randint(0, m, (n,), generator=g))
    feats = torch.cat([torch.nn.functional.one_hot(y, m).float(), torch.randn(n, d - m, generator=g)], 1)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    same, other = p + (1 - p) / m, (1 - p) / m
    truth = math.log(m) + same * math.log(same) + ((m - 1) * other * math.log(other) if other > 0 else 0.0)
    return x, feats @ rotation, truth


def test_classifier_bound_perfect_features_near_entropy():
    x, feats, truth = _label_features(1200, 4, 1.0, 16, seed=0)
    result = classifier_mi_lower_bound(x, feats, seed=0)
    assert isinstance(result, ClassifierMIResult)
    assert truth == pytest.approx(math.log(4))
    assert result.test_accuracy == 1.0
    assert result.entropy == pytest.approx(math.log(4), abs=0.01)
    assert result.estimate == pytest.approx(result.entropy, abs=0.03)
    assert result.estimate <= result.entropy + 1e-12
    assert result.low <= result.estimate <= result.high


def test_classifier_bound_independent_is_not_positive():
    g = _gen(1)
    x = torch.randint(0, 3, (1500,), generator=g)
    feats = torch.randn(1500, 24, generator=g)
    result = classifier_mi_lower_bound(x, feats, seed=1)
    assert result.estimate <= 0.01
    assert result.low <= 0.0


def test_classifier_bound_below_known_mi_and_close():
    x, feats, truth = _label_features(4000, 4, 0.6, 32, seed=2)
    result = classifier_mi_lower_bound(x, feats, seed=2)
    assert 0.3 < truth < 0.6
    assert truth - 0.1 < result.estimate < truth + 0.02
    assert result.low < truth  # the bound sits below the truth


def test_classifier_bound_deterministic_and_leaves_global_rng_alone():
    x, feats, _ = _label_features(600, 3, 0.7, 12, seed=3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = classifier_mi_lower_bound(x, feats, seed=5, epochs=30)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == classifier_mi_lower_bound(x, feats, seed=5, epochs=30)
    assert first != classifier_mi_lower_bound(x, feats, seed=6, epochs=30)
    with torch.inference_mode():  # usable inside evaluation code, inputs included
        inside = classifier_mi_lower_bound(x.clone(), feats.clone(), seed=5, epochs=30)
    assert inside == first


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "error"),
    [
        (torch.randint(0, 2, (50,)), torch.randn(49, 3), {}, ValueError),
        (torch.zeros(50, dtype=torch.long), torch.randn(50, 3), {}, ValueError),
        (torch.randint(0, 2, (10,)), torch.randn(10, 3), {}, ValueError),
        (torch.rand(50), torch.randn(50, 3), {}, TypeError),
        (torch.randint(0, 2, (50,)), torch.randint(0, 5, (50, 3)), {}, TypeError),
        (torch.randint(0, 2, (50, 1)), torch.randn(50, 3), {}, ValueError),
        (torch.randint(0, 2, (50,)), torch.randn(50, 3), {"test_fraction": 1.0}, ValueError),
        (torch.randint(0, 2, (50,)), torch.full((50, 3), float("nan")), {}, ValueError),
    ],
)
def test_classifier_bound_bad_input(x, y, kwargs, error):
    with pytest.raises(error):
        classifier_mi_lower_bound(x, y, **kwargs)

"""Tests for marl.metrics: SND (W2 / Hellinger) and discrete MI with Miller-Madow + bootstrap."""

import math

import pytest
import torch

from marl.metrics import (
    bootstrap_ci,
    categorical_distance,
    entropy_discrete,
    gaussian_w2,
    mutual_information_discrete,
    snd,
    snd_matrix,
)

LOG4 = math.log(4)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- SND


def test_snd_identical_agents_is_exactly_zero():
    g = _gen()
    mu = torch.randn(64, 1, 3, generator=g).expand(64, 5, 3)
    sigma = torch.rand(64, 1, 3, generator=g).expand(64, 5, 3) + 0.1
    assert snd(mu, sigma).item() == 0.0
    assert torch.all(snd_matrix(mu, sigma) == 0)
    probs = torch.softmax(torch.randn(64, 1, 4, generator=g), -1).expand(64, 5, 4)
    assert snd(probs, kind="categorical").item() == 0.0


def test_snd_two_agent_hand_value():
    mu = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])
    sigma = torch.full_like(mu, 0.7)
    assert snd(mu, sigma).item() == pytest.approx(5.0)
    assert torch.allclose(snd_matrix(mu, sigma), torch.tensor([[0.0, 5.0], [5.0, 0.0]]))


def test_snd_three_agent_hand_value_with_sigma_differences():
    # 1-D actions. mu = 0, 0, 3; sigma = 1, 5, 5.
    mu = torch.tensor([[[0.0], [0.0], [3.0]]])
    sigma = torch.tensor([[[1.0], [5.0], [5.0]]])
    # W2(0,1) = sqrt(0 + 16) = 4; W2(0,2) = sqrt(9 + 16) = 5; W2(1,2) = sqrt(9 + 0) = 3.
    expected = torch.tensor([[0.0, 4.0, 5.0], [4.0, 0.0, 3.0], [5.0, 3.0, 0.0]])
    assert torch.allclose(gaussian_w2(mu, sigma)[0], expected)
    assert snd(mu, sigma).item() == pytest.approx(4.0)
    # Averaging over observations: a second observation with all distances doubled -> mean 1.5x.
    mu2 = torch.cat([mu, 2 * mu])
    sigma2 = torch.cat([sigma, 2 * sigma])
    assert snd(mu2, sigma2).item() == pytest.approx(6.0)


def test_snd_matrix_symmetric_zero_diagonal():
    g = _gen(1)
    mu, sigma = torch.randn(200, 6, 2, generator=g), torch.rand(200, 6, 2, generator=g)
    for mat in (snd_matrix(mu, sigma), snd_matrix(torch.softmax(mu, -1), kind="categorical")):
        assert mat.shape == (6, 6)
        assert torch.equal(mat, mat.T)
        assert torch.all(mat.diagonal() == 0)
        assert torch.all(mat[~torch.eye(6, dtype=torch.bool)] > 0)


def test_snd_chunked_equals_unchunked():
    g = _gen(2)
    mu, sigma = torch.randn(1001, 4, 3, generator=g), torch.rand(1001, 4, 3, generator=g)
    full = snd_matrix(mu, sigma, chunk_size=10_000)
    for chunk in (1, 7, 100):
        assert torch.allclose(snd_matrix(mu, sigma, chunk_size=chunk), full, atol=1e-6)
    probs = torch.softmax(mu, -1)
    assert torch.allclose(
        snd(probs, kind="categorical", chunk_size=13), snd(probs, kind="categorical", chunk_size=5000)
    )


def test_categorical_distance_bounds():
    g = _gen(3)
    p = torch.softmax(torch.randn(10, 1, 5, generator=g), -1).expand(10, 3, 5)
    assert torch.all(categorical_distance(p) == 0)
    one_hot = torch.eye(4).unsqueeze(0)  # 4 agents with disjoint supports
    d = categorical_distance(one_hot)[0]
    assert torch.allclose(d, 1.0 - torch.eye(4))  # Hellinger maximum is 1
    assert snd(one_hot, kind="categorical").item() == pytest.approx(1.0)


def test_snd_rejects_bad_arguments():
    mu = torch.zeros(2, 3, 2)
    with pytest.raises(ValueError):
        snd(mu)  # gaussian without sigma
    with pytest.raises(ValueError):
        snd(mu, kind="beta")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        snd(torch.zeros(2, 1, 2), torch.zeros(2, 1, 2))  # one agent


# ------------------------------------------------------------------ information


def test_entropy_and_mi_known_tables_large_sample():
    g = _gen(4)
    n = 1_000_000
    x = torch.randint(4, (n,), generator=g)
    y = torch.randint(4, (n,), generator=g)
    assert entropy_discrete(x).item() == pytest.approx(LOG4, abs=1e-3)
    assert mutual_information_discrete(x, x).item() == pytest.approx(LOG4, abs=1e-3)
    assert abs(mutual_information_discrete(x, y).item()) < 1e-4
    # Arbitrary (negative, sparse) label values are binned the same way.
    assert mutual_information_discrete(x * 1000 - 7, x).item() == pytest.approx(LOG4, abs=1e-3)


def test_batched_estimators_match_rowwise():
    g = _gen(5)
    x = torch.randint(5, (3, 50), generator=g)
    y = (x + torch.randint(2, (3, 50), generator=g)) % 5
    batched = mutual_information_discrete(x, y)
    rowwise = torch.stack([mutual_information_discrete(x[i], y[i]) for i in range(3)])
    assert torch.allclose(batched, rowwise)
    assert torch.allclose(entropy_discrete(x), torch.stack([entropy_discrete(r) for r in x]))


def test_bootstrap_ci_covers_truth():
    # Exactly balanced designs, so the empirical distribution equals the true one.
    n = 4_000
    i = torch.arange(n)
    x = i % 4
    y_indep = (i // 4) % 4  # empirical joint is exactly uniform on 4 x 4 -> I = 0
    est, low, high = bootstrap_ci(mutual_information_discrete, x, y_indep, generator=_gen(6), vectorized=True)
    assert low <= 0.0 <= high and abs(est.item()) < 1e-2
    est, low, high = bootstrap_ci(mutual_information_discrete, x, x, generator=_gen(7), vectorized=True)
    assert low <= LOG4 <= high and est.item() == pytest.approx(LOG4, abs=1e-2)
    # The per-replicate (non-vectorised) path draws the same indices and gives the same interval.
    g = _gen(8)
    xr, yr = torch.randint(4, (n,), generator=g), torch.randint(4, (n,), generator=g)
    vec = bootstrap_ci(mutual_information_discrete, xr, yr, n_boot=50, generator=_gen(9), vectorized=True)
    loop = bootstrap_ci(mutual_information_discrete, xr, yr, n_boot=50, generator=_gen(9))
    assert all(torch.allclose(a, b) for a, b in zip(vec, loop))


def test_miller_madow_reduces_bias():
    n, k, seeds = 60, 8, 30
    plug_h, mm_h, plug_i, mm_i = [], [], [], []
    for seed in range(seeds):
        g = _gen(100 + seed)
        x, y = torch.randint(k, (n,), generator=g), torch.randint(k, (n,), generator=g)
        plug_h.append(entropy_discrete(x, miller_madow=False))
        mm_h.append(entropy_discrete(x))
        plug_i.append(mutual_information_discrete(x, y, miller_madow=False))
        mm_i.append(mutual_information_discrete(x, y))
    true_h, true_i = math.log(k), 0.0
    assert abs(torch.stack(mm_h).mean() - true_h) < abs(torch.stack(plug_h).mean() - true_h)
    assert abs(torch.stack(mm_i).mean() - true_i) < abs(torch.stack(plug_i).mean() - true_i)


def test_information_rejects_bad_input():
    with pytest.raises(TypeError):
        entropy_discrete(torch.rand(10))
    with pytest.raises(ValueError):
        mutual_information_discrete(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long))

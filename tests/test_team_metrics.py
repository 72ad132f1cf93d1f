"""Team and population specialisation metrics: hand-computed values, ground truth, and trained teams."""

import json
import math

import pytest
import torch
from scipy.special import digamma

from marl.cli import main
from marl.config import MetricsConfig, load_config
from marl.metrics import (
    categorical_identity_information,
    cell_labels,
    gaussian_identity_information,
    role_entropies,
    specialisation_report,
)
from marl.run_logger import read_metrics
from marl.training import build_trainer, measure_team, train, train_iteration


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ diversity / specialisation report


def test_report_hand_computed_table():
    # agent 0 does behaviours 0, 0, 1, 1; agent 1 always does behaviour 2.
    x = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    report = specialisation_report(x, y, n_boot=50, generator=_gen())

    def g(c: int) -> float:  # Grassberger's G(c) = psi(c) + (-1)^c (psi((c + 1) / 2) - psi(c / 2)) / 2
        return digamma(c) + 0.5 * (-1) ** c * (digamma((c + 1) / 2) - digamma(c / 2))

    def grassberger(*counts: int) -> float:
        n = sum(counts)
        return math.log(n) - sum(c * g(c) for c in counts) / n

    h_y = grassberger(2, 2, 4)
    h_x = grassberger(4, 4)
    h_xy = h_y  # y determines x here
    assert report.behaviour_entropy == pytest.approx(h_y)
    assert report.mutual_information == pytest.approx(h_x + h_y - h_xy)
    assert report.conditional_entropy == pytest.approx(h_y - report.mutual_information)
    assert report.role_entropy == pytest.approx((grassberger(2, 2), 0.0))  # one behaviour: 0
    assert report.num_behaviours == 3
    assert report.diversity == pytest.approx(min(1.0, h_y / math.log(3)))  # clipped: can exceed log K
    assert report.specialisation == pytest.approx(report.mutual_information / h_y)
    assert report.mi_low <= report.mi_high


def test_pure_specialists_and_generalists():
    g = _gen(1)
    n_agents, samples = 4, 4000
    x = torch.randint(n_agents, (samples,), generator=g)
    specialists = specialisation_report(x, x * 10, n_boot=100, generator=g)  # each agent: one behaviour
    assert specialists.specialisation == pytest.approx(1.0, abs=1e-3)
    assert specialists.role_entropy == (0.0,) * n_agents
    assert specialists.mutual_information == pytest.approx(math.log(n_agents), abs=0.01)

    y = torch.randint(6, (samples,), generator=g)  # everyone does everything, independently of who
    generalists = specialisation_report(x, y, n_boot=200, generator=g)
    assert generalists.mi_low <= 0.0 <= generalists.mi_high
    assert generalists.specialisation < 0.01
    assert generalists.diversity == pytest.approx(1.0, abs=0.01)
    assert all(h == pytest.approx(math.log(6), abs=0.02) for h in generalists.role_entropy)

    same = specialisation_report(x, torch.zeros_like(x), n_boot=20, generator=g)  # specialised alike
    assert (same.behaviour_entropy, same.diversity, same.specialisation) == (0.0, 0.0, 0.0)


def test_report_normalises_by_the_number_of_possible_behaviours():
    x = torch.arange(4).repeat(50)
    report = specialisation_report(x, x, num_behaviours=16, n_boot=10, generator=_gen())
    assert report.diversity == pytest.approx(math.log(4) / math.log(16), abs=0.01)
    with pytest.raises(ValueError, match="num_behaviours=2 but 4 distinct"):
        specialisation_report(x, x, num_behaviours=2)


def test_report_errors():
    with pytest.raises(ValueError, match="differ"):
        specialisation_report(torch.zeros(5, dtype=torch.long), torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2"):
        specialisation_report(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"identities must lie in \[0, 2\)"):
        role_entropies(torch.tensor([0, 3]), torch.tensor([1, 1]), n_identities=2)


def test_role_entropy_of_an_absent_identity_is_nan():
    h = role_entropies(torch.tensor([0, 0, 2]), torch.tensor([1, 2, 1]), n_identities=3)
    grassberger = math.log(2) - (digamma(1) - 0.5 * (digamma(1) - digamma(0.5)))  # two singletons
    assert h[0] == pytest.approx(grassberger) and math.isnan(h[1]) and h[2] == 0


# ------------------------------------------------------------------ I(agent; action | observation)


def test_categorical_identity_information_hand_values():
    same = torch.softmax(torch.randn(10, 1, 5, generator=_gen()), -1).expand(10, 3, 5)
    assert torch.all(categorical_identity_information(same) < 1e-12)  # 0 up to rounding of the mean
    disjoint = torch.eye(4).unsqueeze(0)  # 4 agents, each a different deterministic action
    assert categorical_identity_information(disjoint).item() == pytest.approx(math.log(4))
    # p = (1, 0), q = (1/2, 1/2): H(m) - (H(p) + H(q)) / 2 with m = (3/4, 1/4)
    pq = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    h_m = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert categorical_identity_information(pq).item() == pytest.approx(h_m - math.log(2) / 2)
    with pytest.raises(ValueError, match="n_agents >= 2"):
        categorical_identity_information(torch.ones(3, 1, 2) / 2)


def test_gaussian_identity_information_matches_quadrature():
    mu = torch.tensor([[[0.0], [1.5]], [[0.0], [0.0]]])
    sigma = torch.tensor([[[1.0], [0.5]], [[1.0], [1.0]]])
    estimate = gaussian_identity_information(mu, sigma, samples=20_000, generator=_gen(2))
    # ground truth by quadrature: JSD = H(m) - (H(p) + H(q)) / 2 on a fine grid
    a = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    p = torch.distributions.Normal(0.0, 1.0).log_prob(a).exp()
    q = torch.distributions.Normal(1.5, 0.5).log_prob(a).exp()
    m = (p + q) / 2
    entropy = lambda f: -(torch.special.xlogy(f, f)).sum() * (a[1] - a[0])  # noqa: E731
    truth = entropy(m) - (entropy(p) + entropy(q)) / 2
    assert estimate[0].item() == pytest.approx(truth.item(), abs=0.01)
    assert estimate[1].item() < 1e-12  # identical agents
    far = gaussian_identity_information(
        torch.tensor([[[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]]]), torch.ones(1, 3, 2), samples=64
    )
    assert far.item() == pytest.approx(math.log(3), abs=1e-6)


def test_gaussian_identity_information_chunks_agree():
    g = _gen(3)
    mu, sigma = torch.randn(50, 3, 2, generator=g), torch.rand(50, 3, 2, generator=g) + 0.2
    whole = gaussian_identity_information(mu, sigma, samples=8, generator=_gen(4))
    chunked = gaussian_identity_information(mu, sigma, samples=8, generator=_gen(4), chunk_size=50)
    assert torch.equal(whole, chunked)
    with pytest.raises(ValueError, match="same shape"):
        gaussian_identity_information(mu, sigma[:, :2])


def test_cell_labels():
    pos = torch.tensor([[0.01, 0.01], [0.24, 0.2], [0.26, 0.0], [-0.01, 0.0], [0.1, 0.1]])
    labels = cell_labels(pos, cell_size=0.25)
    assert labels[0] == labels[1] == labels[4]
    assert len({labels[0].item(), labels[2].item(), labels[3].item()}) == 3
    assert cell_labels(pos.reshape(5, 1, 2), 0.25).shape == (5, 1)
    with pytest.raises(ValueError, match="cell_size"):
        cell_labels(pos, 0.0)


# ------------------------------------------------------------------ trained teams


def _dispersion(scheme: str):
    return load_config(
        [
            "env=vmas/dispersion",
            f"sharing={scheme}",
            "experiment.frames_per_batch=3000",
            "env.max_steps=50",
            "algorithm.minibatch_size=500",
            "model.hidden_sizes=[64,64]",
            "metrics.episodes=16",
            "metrics.bootstrap=50",
        ]
    )


def test_shared_agents_have_zero_diversity_and_independent_agents_diversify():
    """Dispersion needs each agent at a different food. After a few iterations the independent agents'
    policies differ clearly; agents sharing one network (no agent ID) stay identical: SND exactly 0."""
    results = {}
    for scheme in ("shared", "independent"):
        trainer = build_trainer(_dispersion(scheme))
        before = measure_team(trainer).scalars
        for _ in range(5):
            train_iteration(trainer)
        results[scheme] = (before, measure_team(trainer).scalars)
    (_, shared), (start, independent) = results["shared"], results["independent"]
    assert shared["team/agents/snd"] == 0.0
    assert shared["team/agents/action_identity_mi"] < 1e-9
    assert independent["team/agents/snd"] > 0.05
    assert independent["team/agents/snd"] > 10 * start["team/agents/snd"]
    assert independent["team/agents/action_identity_mi_low"] > 0.0
    assert independent["team/visits/mutual_information"] > shared["team/visits/mutual_information"] + 0.1


def test_metrics_do_not_change_training(tmp_path):
    """Metrics run on their own RNG streams: a run with them logs the same training as one without."""
    base = ["experiment=smoke", f"experiment.runs_dir={tmp_path}", "experiment.progress=false"]
    with_metrics = train(load_config(base + ["metrics.every=1", "metrics.episodes=2"]))
    without = train(load_config(base + ["metrics.every=0"]))
    rows_with, rows_without = read_metrics(with_metrics), read_metrics(without)
    for a, b in zip(rows_with, rows_without, strict=True):
        training = [k for k in b if k.startswith(("train/", "eval/"))]
        assert len(training) > 5 and all(a[k] == b[k] for k in training)
        assert any(k.startswith("team/") for k in a) and not any(k.startswith("team/") for k in b)
    events = list(with_metrics.glob("events.out.tfevents.*"))
    assert events, "TensorBoard events missing"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(with_metrics))
    acc.Reload()
    assert "team/agents/snd_matrix" in acc.Tags()["images"]
    assert "team/agents/snd" in acc.Tags()["scalars"]


def test_marl_metrics_cli(tmp_path, capsys):
    smoke = ["experiment=smoke", f"experiment.runs_dir={tmp_path}", "experiment.progress=false"]
    run = train(load_config(smoke + ["metrics.every=0"]))
    out_json, heatmap = tmp_path / "m.json", tmp_path / "snd.png"
    code = main(["metrics", str(run), "--episodes", "4", "--json", str(out_json), "--heatmap", str(heatmap)])
    assert code == 0
    text = capsys.readouterr().out
    assert "SND (mean Wasserstein-2 over pairs)" in text and "role entropy" in text
    assert "reliable" in text  # the verdict of I(agent; cell)
    scalars = json.loads(out_json.read_text())
    assert scalars["team/agents/snd"] >= 0 and "team/visits/mutual_information" in scalars
    assert heatmap.stat().st_size > 1000
    # the same numbers twice: the metrics are deterministic
    main(["metrics", str(run), "--episodes", "4", "--json", str(out_json)])
    assert json.loads(out_json.read_text()) == scalars
    with pytest.raises(SystemExit) as refused:  # argparse's usage error: exit status 2
        main(["metrics", str(run), "--episodes", "0"])
    assert refused.value.code == 2
    assert "--episodes: must be an integer from 1" in capsys.readouterr().err
    # I(agent; position) on the continuous positions: an interval and a verdict
    assert main(["metrics", str(run), "--episodes", "4", "--position-mi", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "I(agent; position), continuous positions (classifier" in text
    verdict = text.split("I(X; position)")[1].splitlines()[1].strip()
    assert verdict == "reliable" or verdict.startswith("not reliable, because ")
    positions = json.loads(out_json.read_text())
    low, mi, high = (positions[f"team/positions/mutual_information{end}"] for end in ("_low", "", "_high"))
    assert 0 <= low <= high and math.isfinite(mi)


def test_metrics_config_validation():
    with pytest.raises(Exception, match="metrics.cell_size"):
        load_config(["metrics.cell_size=0"])
    with pytest.raises(Exception, match="metrics.episodes"):
        load_config(["metrics.episodes=0"])
    assert MetricsConfig().every > 0

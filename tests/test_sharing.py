"""Tests for agents/sharing.py: the four parameter-sharing schemes behind TeamMLP."""

from __future__ import annotations

import math

import pytest
import torch
from marl.agents.sharing import ACTIVATIONS, TeamMLP, magnitude_invariant_encoding, tanh

N, IN, OUT, HIDDEN = 4, 6, 3, (16, 16)
ROLES = [0, 0, 1, 1]

# name -> extra constructor kwargs; every scheme/variant the module offers.
CONFIGS = {
    "shared": dict(scheme="shared"),
    "shared_id": dict(scheme="shared", agent_id=True),
    "independent": dict(scheme="independent"),
    "grouped": dict(scheme="grouped", roles=ROLES),
    "hyper_linear": dict(scheme="hyper", hyper_variant="linear"),
    "hyper_mlp": dict(scheme="hyper", hyper_variant="mlp", hyper_embedding_dim=8, hyper_hidden=32),
    "hyper_mip": dict(scheme="hyper", hyper_variant="mip", hyper_embedding_dim=8, hyper_hidden=32),
}
PER_AGENT = ["independent", "grouped", "hyper_linear", "hyper_mlp", "hyper_mip"]
HYPER = ["hyper_linear", "hyper_mlp", "hyper_mip"]


def make(name: str, output_gain: float = 1.0, activation: str = "tanh", **overrides) -> TeamMLP:
    torch.manual_seed(0)
    kwargs = dict(
        in_dim=IN,
        out_dim=OUT,
        n_agents=N,
        hidden_sizes=HIDDEN,
        activation=activation,
        output_gain=output_gain,
    )
    kwargs.update(CONFIGS[name])
    kwargs.update(overrides)
    return TeamMLP(**kwargs)


def mlp_count(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> int:
    """Parameters of one ordinary MLP (weights + biases)."""
    sizes = [in_dim, *hidden, out_dim]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def reference_loop(net: TeamMLP, x: torch.Tensor) -> torch.Tensor:
    """Explicit per-agent loop (lives only here) over the module's per-agent weights."""
    weights, biases = net.agent_parameters()
    outs = []
    for a in range(net.n_agents):
        h = x[..., a, :]
        for layer, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w[a] + b[a]
            if layer < len(weights) - 1:
                h = net.activation(h)
        outs.append(h)
    return torch.stack(outs, dim=-2)


# ---------------------------------------------------------------------------------------------------------
# Shapes, parameter counts, equivalences
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_output_shapes(name):
    net = make(name)
    assert net(torch.randn(5, N, IN)).shape == (5, N, OUT)
    assert net(torch.randn(2, 7, N, IN)).shape == (2, 7, N, OUT)
    assert net(torch.randn(N, IN)).shape == (N, OUT)
    assert net(torch.randn(5, IN), shared_input=True).shape == (5, N, OUT)
    assert net(torch.randn(2, 7, IN), shared_input=True).shape == (2, 7, N, OUT)


def test_parameter_counts():
    one = mlp_count(IN, HIDDEN, OUT)
    n_params = one  # parameters of one generated agent network
    assert make("shared").num_parameters == one
    assert make("shared_id").num_parameters == mlp_count(IN + N, HIDDEN, OUT)
    assert make("independent").num_parameters == N * one
    assert make("grouped").num_parameters == 2 * one
    assert make("grouped", roles=[0, 1, 2, 0]).num_parameters == 3 * one
    assert make("hyper_linear").num_parameters == N * n_params + n_params
    d, h = 8, 32
    assert make("hyper_mlp").num_parameters == N * d + (d * h + h) + (h * n_params + n_params)
    # MIP: the encoding doubles the hypernetwork's input; plus the base network theta_0
    assert make("hyper_mip").num_parameters == N * d + (2 * d * h + h) + (h * n_params + n_params) + n_params
    assert make("shared").num_parameters == sum(p.numel() for p in make("shared").parameters())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_shared_input_equals_expanded_input(name):
    net = make(name)
    x = torch.randn(3, 5, IN)
    y_shared = net(x, shared_input=True)
    y_expanded = net(x.unsqueeze(-2).expand(3, 5, N, IN))
    torch.testing.assert_close(y_shared, y_expanded, rtol=1e-5, atol=1e-6)
    # Gradients through the fast path equal those through the expanded path.
    g_shared = torch.autograd.grad(y_shared.square().sum(), list(net.parameters()))
    g_expanded = torch.autograd.grad(y_expanded.square().sum(), list(net.parameters()))
    for a, b in zip(g_shared, g_expanded):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", PER_AGENT)
def test_batched_path_equals_reference_loop(name):
    net = make(name, activation="gelu")
    x = torch.randn(2, 5, N, IN)
    torch.testing.assert_close(net(x), reference_loop(net, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_runs(activation):
    for name in ("shared", "independent"):
        y = make(name, activation=activation)(torch.randn(5, N, IN))
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_through_sigmoid_matches_torch_tanh(dtype):
    # Saturated, ordinary and tiny inputs, infinities and NaN.
    x = torch.cat([torch.linspace(-20, 20, 4001, dtype=dtype), torch.tensor([1e-9, -1e-9], dtype=dtype)])
    tolerance = 2.5e-7 if dtype == torch.float32 else 1e-15
    torch.testing.assert_close(tanh(x), torch.tanh(x), rtol=0, atol=tolerance)
    special = tanh(torch.tensor([float("inf"), -float("inf"), float("nan")], dtype=dtype))
    assert special[:2].tolist() == [1.0, -1.0] and special[2].isnan()
    assert tanh(x).abs().max() <= 1


def test_tanh_through_sigmoid_has_tanh_gradient():
    x = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tanh, (x,))
    grad_out = torch.randn(64, dtype=torch.float64)
    (grad,) = torch.autograd.grad(tanh(x), x, grad_out)
    torch.testing.assert_close(grad, grad_out * (1 - torch.tanh(x.detach()) ** 2))


def test_no_hidden_layers_is_one_linear_layer():
    net = make("independent", hidden_sizes=[])
    assert net.num_parameters == N * (IN * OUT + OUT)
    x = torch.randn(5, N, IN)
    torch.testing.assert_close(net(x), reference_loop(net, x))


# ---------------------------------------------------------------------------------------------------------
# Isolation between agents and sharing within roles
# ---------------------------------------------------------------------------------------------------------


def _perturb_agent(net: TeamMLP, name: str, agent: int) -> None:
    with torch.no_grad():
        if name == "independent":
            for p in [*net.weights, *net.biases]:
                p[agent] += 0.5 * torch.randn_like(p[agent])
        elif name == "hyper_linear":
            net.hypernet.weight[:, agent] += 0.5 * torch.randn_like(net.hypernet.weight[:, agent])
        else:
            net.embeddings[agent] += 0.5 * torch.randn_like(net.embeddings[agent])


@pytest.mark.parametrize("name", ["independent", *HYPER])
@pytest.mark.parametrize("agent", [0, 2])
def test_perturbing_one_agent_changes_only_that_agent(name, agent):
    net = make(name)
    x = torch.randn(8, N, IN)
    before = net(x)
    _perturb_agent(net, name, agent)
    after = net(x)
    others = [a for a in range(N) if a != agent]
    assert torch.equal(before[:, others], after[:, others])  # bit-identical
    assert not torch.allclose(before[:, agent], after[:, agent])


@pytest.mark.parametrize("name", HYPER)
def test_gradients_reach_hypernetwork_and_embeddings(name):
    net = make(name)
    net(torch.randn(8, N, IN)).square().sum().backward()
    params = dict(net.named_parameters())
    hypernet = {"embeddings", "hypernet.0.weight", "hypernet.0.bias", "hypernet.2.weight", "hypernet.2.bias"}
    if name == "hyper_mlp":
        assert set(params) == hypernet
    if name == "hyper_mip":
        assert set(params) == hypernet | {"base"}
    for pname, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    if name != "hyper_linear":
        assert (net.embeddings.grad.abs().sum(dim=1) > 0).all()  # every agent's embedding gets a gradient


def test_magnitude_invariant_encoding_has_constant_norm():
    z = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.3, 0.9, 0.5]])
    encoded = magnitude_invariant_encoding(z)
    assert encoded.shape == (3, 6)
    torch.testing.assert_close(encoded.norm(dim=-1), torch.full((3,), math.sqrt(3.0)))
    torch.testing.assert_close(encoded[0], torch.tensor([1.0, 1, 1, 0, 0, 0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(encoded[1], torch.tensor([0.0, 0, 0, 1, 1, 1]), atol=1e-6, rtol=0)


def test_mip_is_an_additive_change_on_a_learned_base():
    """theta_i = theta_0 + delta(E(z_i)): moving the base moves every agent's weights by the same amount,
    and the hypernetwork reads inputs of one norm, whatever the embeddings are."""
    net = make("hyper_mip")
    with torch.no_grad():
        before = [w.clone() for w in net.agent_parameters()[0]]
        net.base += 0.1
        after = net.agent_parameters()[0]
        for w0, w1 in zip(before, after):
            torch.testing.assert_close(w1 - w0, torch.full_like(w0, 0.1), atol=1e-5, rtol=0)
        net.embeddings.mul_(100.0)  # huge embeddings still give inputs of norm sqrt(embedding_dim)
        torch.testing.assert_close(net._hyper_input().norm(dim=-1), torch.full((N,), math.sqrt(8.0)))


# ---------------------------------------------------------------------------------------------------------
# The rollout cache: per-agent stacks built once while no gradient is taken
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grouped", *HYPER])
def test_cached_forward_equals_fresh_and_refreshes_after_an_update(name):
    net = make(name)
    x = torch.randn(6, N, IN)
    calls = []
    if name != "grouped":
        net.hypernet.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        first, second = net(x), net(x)
    assert torch.equal(first, second)
    if name != "grouped":
        assert len(calls) == 1  # the second forward used the cached weights
    fresh = net(x)  # with gradients: never cached, always rebuilt from the parameters
    assert torch.equal(first, fresh.detach())

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, fused=True)
    fresh.square().sum().backward()
    optimizer.step()  # in place: the parameters' version counters move
    with torch.no_grad():
        updated = net(x)
    assert not torch.allclose(updated, first)
    torch.testing.assert_close(updated, net(x).detach(), rtol=0, atol=0)  # equals a fresh generation

    other = make(name)
    other.load_state_dict(net.state_dict())  # a loaded checkpoint also refreshes the cache
    with torch.no_grad():
        assert torch.equal(other(x), updated)
        other.load_state_dict(make(name).state_dict())
        assert torch.equal(other(x), first)


def test_hypernetwork_runs_once_per_forward():
    net = make("hyper_mlp")
    calls = []
    net.hypernet.register_forward_hook(lambda *_: calls.append(1))
    net(torch.randn(2, 9, N, IN))
    net(torch.randn(9, IN), shared_input=True)
    assert len(calls) == 2


def test_grouped_shares_exactly_within_roles():
    net = make("grouped")
    x = torch.randn(8, 1, IN).expand(8, N, IN)  # every agent sees the same input
    y = net(x)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 2], y[:, 3])
    assert not torch.allclose(y[:, 0], y[:, 2])

    before = [w.detach().clone() for w in net.agent_parameters()[0]]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(8, N, IN)).square().sum().backward()  # agents see different inputs
    opt.step()
    after = net.agent_parameters()[0]
    for w0, w1 in zip(before, after):
        delta = w1 - w0
        assert torch.equal(delta[0], delta[1]) and torch.equal(delta[2], delta[3])
        assert delta[0].abs().sum() > 0 and delta[2].abs().sum() > 0
    y = net(x)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 2], y[:, 3])


def test_shared_agent_id_tells_agents_apart():
    x = torch.randn(8, 1, IN).expand(8, N, IN)
    y_id = make("shared_id")(x)
    assert not torch.allclose(y_id[:, 0], y_id[:, 1])
    y = make("shared")(x)
    for a in range(1, N):
        assert torch.equal(y[:, 0], y[:, a])


# ---------------------------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------------------------


def assert_orthogonal(w: torch.Tensor, gain: float, atol: float = 1e-4) -> None:
    """``w`` [in, out] is (semi-)orthogonal with scale ``gain``: the smaller Gram matrix is gain^2 I."""
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    eye = torch.eye(gram.shape[0])
    torch.testing.assert_close(gram, gain**2 * eye, atol=atol * max(gain**2, 1e-2), rtol=0)


@pytest.mark.parametrize("name", ["independent", "grouped", *HYPER])
def test_agent_networks_start_orthogonal(name):
    # hidden_sizes (16, 16) covers a wide (6->16), a square (16->16) and a narrow (16->3) layer.
    net = make(name, output_gain=0.01)
    with torch.no_grad():
        weights, biases = net.agent_parameters()
    gains = [math.sqrt(2), math.sqrt(2), 0.01]
    for w, gain in zip(weights, gains):
        for a in range(N):
            assert_orthogonal(w[a], gain)
    assert weights[-1].abs().max() < 0.05  # small actor output layer
    for b in biases:
        assert torch.equal(b, torch.zeros_like(b)) or b.abs().max() < 1e-6


def test_shared_layers_start_orthogonal():
    net = make("shared", output_gain=0.01)
    for layer, gain in zip(net.layers, [math.sqrt(2), math.sqrt(2), 0.01]):
        assert_orthogonal(layer.weight.T.detach(), gain)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


@pytest.mark.parametrize("name", ["independent", *HYPER])
def test_agents_start_different(name):
    with torch.no_grad():
        weights, _ = make(name).agent_parameters()
    for w in weights:
        for a in range(1, N):
            assert not torch.allclose(w[0], w[a], atol=1e-3)


def test_hyper_mlp_init_fit_with_many_agents_stays_bounded():
    # More agents than the embedding can hold orthogonally: the init is a least-squares fit, still sane.
    net = make("hyper_mlp", n_agents=24, hyper_embedding_dim=4, hyper_hidden=32)
    with torch.no_grad():
        weights, biases = net.agent_parameters()
    assert all(torch.isfinite(w).all() for w in weights)
    rms = weights[1].square().mean().sqrt()  # a 16x16 orthogonal layer with gain sqrt(2) has rms sqrt(2/16)
    assert 0.3 * math.sqrt(2 / 16) < rms < 1.5 * math.sqrt(2 / 16)
    y = net(torch.randn(5, 24, IN))
    assert torch.isfinite(y).all()


# ---------------------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(scheme="fups"), r"'fups'.*shared, independent, grouped, hyper"),
        (dict(activation="sigmoid"), r"'sigmoid'.*tanh, relu, elu, gelu, silu"),
        (dict(scheme="hyper", hyper_variant="deep"), r"'deep'.*linear, mlp, mip"),
        (dict(scheme="grouped", roles=None), r"needs roles"),
        (dict(scheme="grouped", roles=[0, 1]), r"\[0, 1\].*2 entries.*n_agents is 4"),
        (dict(scheme="grouped", roles=[0, 0, 2, 2]), r"\[0, 0, 2, 2\].*0\.\.R-1"),
        (dict(scheme="grouped", roles=[1, 1, 2, 2]), r"\[1, 1, 2, 2\].*0\.\.R-1"),
        (dict(scheme="independent", agent_id=True), r"agent_id=True.*'independent'.*scheme='shared'"),
        (dict(scheme="hyper", agent_id=True), r"agent_id=True.*'hyper'"),
        (dict(scheme="shared", roles=[0, 0, 1, 1]), r"roles is only used by scheme 'grouped'"),
        (dict(in_dim=0), r"in_dim.*0"),
        (dict(n_agents=2.5), r"n_agents.*2\.5"),
        (dict(hidden_sizes=[64, -1]), r"hidden_sizes.*\[64, -1\]"),
        (dict(hidden_sizes=64), r"hidden_sizes.*64"),
        (dict(output_gain=float("nan")), r"output_gain.*nan"),
        (dict(scheme="hyper", hyper_embedding_dim=0), r"hyper_embedding_dim.*0"),
    ],
)
def test_bad_arguments_raise_clear_errors(overrides, pattern):
    kwargs = dict(in_dim=IN, out_dim=OUT, n_agents=N, hidden_sizes=HIDDEN, activation="tanh")
    kwargs.update(scheme="shared", output_gain=1.0)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=pattern):
        TeamMLP(**kwargs)


@pytest.mark.parametrize("name", ["shared", "independent"])
def test_wrong_input_shape_raises(name):
    net = make(name)
    with pytest.raises(ValueError, match=r"n_agents=4, in_dim=6.*\(5, 3, 6\).*shared_input=True"):
        net(torch.randn(5, 3, IN))
    with pytest.raises(ValueError, match=r"in_dim=6.*\(5, 7\)"):
        net(torch.randn(5, 7), shared_input=True)


# ---------------------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_runs_on_cuda_and_matches_cpu(name):
    net = make(name)
    x = torch.randn(3, 5, N, IN)
    y_cpu = net(x)
    net_gpu = net.to("cuda")
    y_gpu = net_gpu(x.cuda())
    assert y_gpu.device.type == "cuda"
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-3, atol=1e-4)
    x_gpu = torch.linspace(-5, 5, 101, device="cuda")
    torch.testing.assert_close(tanh(x_gpu), torch.tanh(x_gpu))  # the GPU keeps its own tanh
    y_shared = net_gpu(x[..., 0, :].cuda(), shared_input=True)
    y_shared.sum().backward()
    assert all(p.grad is not None for p in net_gpu.parameters())

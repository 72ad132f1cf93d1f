"""Convolutional encoders for image observations (agents/encoders.py), under every sharing scheme."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from marl.agents.encoders import Encoded, JointEncoder, MultiAgentConv, conv_layers
from marl.envs import check as check_module
from marl.envs.check import check_env
from marl.envs.spaces import ImageField

from marl.errors import ConfigError
from marl.team_metrics import team_metrics
from marl.training import build_trainer, evaluation_episodes, train_iteration
from tests.helpers import pettingzoo_config

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGES = "marl.benchmarks.image_training:image_team"


def _cfg(tmp_path, *overrides, entry_point=IMAGES):
    small = ["experiment.frames_per_batch=64", "env.num_envs=4", "env.max_steps=8"]
    small += ["algorithm.minibatch_size=32", "algorithm.epochs=1", "model.hidden_sizes=[32]"]
    return pettingzoo_config(tmp_path, entry_point, *small, *overrides)


def _field(size=20, channels=3, channels_last=True):
    return ImageField("", 0, size, size, channels, channels_last, 1.0)


def _per_agent_reference(conv: MultiAgentConv, images: torch.Tensor) -> torch.Tensor:
    """Each agent's own filters on its own images, one agent at a time (a loop, for the test only)."""
    weights, biases = conv.agent_filters()
    out = []
    for a in range(images.shape[1]):
        x = images[:, a]
        for j, (w, b, (_, _, _, s, p)) in enumerate(zip(weights, biases, conv.layers)):
            x = F.relu(F.conv2d(x, w[a] * (conv.scale if j == 0 else 1.0), b[a], s, p))
        if tuple(x.shape[-2:]) != conv.pool:
            x = F.adaptive_avg_pool2d(x, conv.pool)
        out.append(x.flatten(1))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize(
    ("scheme", "extra"),
    [
        ("independent", {}),
        ("grouped", {"roles": [0, 1, 1]}),
        ("hyper", {"hyper_variant": "mlp"}),
        ("hyper", {"hyper_variant": "linear"}),
        ("hyper", {"hyper_variant": "mip"}),
    ],
)
def test_batched_per_agent_convolutions_equal_each_agents_own(scheme, extra):
    torch.manual_seed(0)
    conv = MultiAgentConv(_field(), 3, scheme, **extra)
    images = torch.rand(5, 3, 3, 20, 20)
    assert torch.allclose(conv(images), _per_agent_reference(conv, images), atol=1e-5)
    if scheme == "grouped":  # agents 1 and 2 share a role: identical filters, different from agent 0's
        weights, _ = conv.agent_filters()
        assert torch.equal(weights[0][1], weights[0][2]) and not torch.equal(weights[0][0], weights[0][1])
    if scheme == "hyper":  # each generated agent network starts as its own orthogonal initialisation
        weights, _ = conv.agent_filters()
        first = weights[0].reshape(3, weights[0].shape[1], -1)  # [agents, out, in*k*k]
        gram = first @ first.transpose(1, 2)
        assert torch.allclose(gram, 2.0 * torch.eye(first.shape[1]).expand_as(gram), atol=5e-2)
        assert not torch.allclose(first[0], first[1])


def test_hypernetwork_gradients_reach_its_parameters():
    conv = MultiAgentConv(_field(), 2, "hyper")
    conv(torch.rand(3, 2, 3, 20, 20)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())


def test_conv_stack_adapts_to_the_image_size():
    for size, expected in ((84, (14, 4)), (16, (16, 4)), (200, (14, 4))):
        layers, h, w = conv_layers(_field(size))
        first_side = (size + 2 * layers[0][4] - layers[0][2]) // layers[0][3] + 1
        assert (first_side, h) == expected, (size, layers)
    layers, h, w = conv_layers(_field(4, channels=1))  # a tiny image: the layers that still fit
    assert len(layers) == 2 and (h, w) == (1, 1)


@pytest.mark.parametrize("scheme", ["shared", "independent", "grouped", "hyper"])
@pytest.mark.parametrize("algorithm", ["mappo", "ippo"])
def test_image_env_trains_with_every_scheme(tmp_path, scheme, algorithm):
    overrides = [
        "env.kwargs={n_agents: 3, size: 24}",
        f"algorithm={algorithm}",
        f"sharing.actor.scheme={scheme}",
        f"sharing.critic.scheme={scheme}",
    ]
    if scheme == "grouped":
        overrides.append("sharing.roles={a: [0], b: [1, 2]}")
    trainer = build_trainer(_cfg(tmp_path, *overrides))
    (group,) = trainer.env_info.groups
    assert group.images and group.images[0].height == 24
    actor, critic = trainer.model.actors[group.name], trainer.model.critics[group.name]
    assert isinstance(actor.net, Encoded) and isinstance(critic.net, Encoded)
    if algorithm == "mappo":
        assert isinstance(critic.net.encoder, JointEncoder)
    batch, _ = trainer.collect()
    assert batch[group.name, "observation"].dtype == torch.uint8  # 8-bit images are stored as such
    metrics = train_iteration(trainer)
    assert all(np.isfinite(v) for k, v in metrics.items() if "loss" in k)


def test_parameter_counts_stay_small_on_84x84_images(tmp_path):
    """The issue's case: 4 agents, 84x84 RGB. Flat into an MLP: millions of parameters; with the encoder
    (default) a small actor and a MAPPO critic that encodes each image once, then concatenates."""
    cfg = _cfg(tmp_path, "model.hidden_sizes=[256, 256]")
    counts = build_trainer(cfg).model.parameter_counts()
    assert counts["camera/actor"] < 250_000 and counts["camera/critic"] < 250_000, counts
    flat = build_trainer(_cfg(tmp_path, "model.hidden_sizes=[256, 256]", "model.encoder=mlp"))
    assert flat.model.parameter_counts()["camera/critic"] > 20_000_000


def test_encoder_choice(tmp_path):
    small = ["env.kwargs={n_agents: 2, size: 8}"]
    auto = build_trainer(_cfg(tmp_path, *small)).model.actors["camera"].net
    assert not auto.encoder.convs  # 8x8 is below auto's 16x16: scaled and fed flat
    cnn = build_trainer(_cfg(tmp_path, *small, "model.encoder=cnn")).model.actors["camera"].net
    assert len(cnn.encoder.convs) == 1
    with pytest.raises(ConfigError, match="model.encoder=cnn, but no observation"):
        build_trainer(_cfg(tmp_path, "model.encoder=cnn", entry_point="pz_envs:int_ids"))
    plain = build_trainer(_cfg(tmp_path, entry_point="pz_envs:int_ids")).model.actors["agents"].net
    assert not isinstance(plain, Encoded)  # vector observations: the MLP alone, as before


def test_images_inside_a_dict_channels_first(tmp_path):
    trainer = build_trainer(_cfg(tmp_path, entry_point="pz_envs:ImagesInADict"))
    (group,) = trainer.env_info.groups
    (image,) = group.images
    assert (image.path, image.channels, image.height, image.channels_last) == ("camera", 3, 16, False)
    encoder = trainer.model.actors[group.name].net.encoder
    assert encoder.out_dim == encoder.convs[0].out_dim + 1  # conv features + the battery level
    train_iteration(trainer)


def test_check_env_reports_model_memory_and_suggests_a_batch_that_fits(monkeypatch):
    report = check_env(IMAGES, steps=5)
    text = report.format()
    assert report.ok, text
    assert "84x84x3 image" in text and "conv encoder for camera" in text
    assert "memory: a batch of 6,000 frames holds" in text
    monkeypatch.setattr(check_module, "_available_memory", lambda: 1.0 * 2**30)
    report = check_env(IMAGES, steps=5)
    text = report.format()
    assert report.ok and "[warn] memory" in text, text
    frames = int(text.split("experiment.frames_per_batch=")[-1].split()[0])
    assert 32 <= frames < 6000 and frames % 16 == 0


def test_team_metrics_run_in_bounded_chunks_with_the_same_result(tmp_path, monkeypatch):
    from marl import team_metrics as module

    cfg = _cfg(tmp_path, "env.kwargs={n_agents: 3, size: 24}", "metrics.episodes=4")
    trainer = build_trainer(cfg)
    trace = evaluation_episodes(trainer, 4, trace=True)["trace"]
    whole = team_metrics(trainer.model, trainer.env_info, trace, cfg.metrics).scalars
    calls = []
    original = trainer.model.actors["camera"].counterfactual_params

    def spy(obs, mask=None):
        calls.append(obs.shape[0])
        return original(obs, mask)

    monkeypatch.setattr(trainer.model.actors["camera"], "counterfactual_params", spy)
    monkeypatch.setattr(module, "CHUNK_BYTES", 3 * 4 * 3 * 24 * 24 * 3 * 10)  # 10 observations per pass
    chunked = team_metrics(trainer.model, trainer.env_info, trace, cfg.metrics).scalars
    assert max(calls) == 10 and len(calls) > 1
    assert chunked == pytest.approx(whole, rel=1e-5, abs=1e-6)

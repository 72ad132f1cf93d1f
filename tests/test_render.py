"""Headless matplotlib rendering of VMAS worlds and GIF / MP4 export (envs/render.py)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
from marl.envs.render import BACKGROUND, render_frame, save_animation
from PIL import Image
from torchrl.envs.libs.vmas import VmasEnv

warnings.filterwarnings("ignore", module="vmas")


def make_env(scenario: str = "navigation") -> VmasEnv:
    return VmasEnv(scenario, num_envs=2, continuous_actions=True, device="cpu", seed=0)


def step_frames(env: VmasEnv, n: int) -> list[np.ndarray]:
    """Frames of env 0 after each of ``n`` random steps."""
    torch.manual_seed(0)
    td = env.reset()
    frames = []
    for _ in range(n):
        td["agents", "action"] = env.full_action_spec["agents", "action"].rand()
        _, td = env.step_and_maybe_reset(td)
        frames.append(render_frame(env))
    return frames


@pytest.mark.parametrize("scenario", ["navigation", "balance", "joint_passage"])
def test_frame_is_rgb_and_shows_entities(scenario):
    frame = render_frame(make_env(scenario), env_index=1, size=200)
    assert frame.shape == (200, 200, 3) and frame.dtype == np.uint8
    background = np.array([round(255 * c) for c in BACKGROUND], dtype=np.uint8)
    drawn = (frame != background).any(axis=-1).mean()
    assert 0.001 < drawn < 0.9, f"{drawn:.1%} of the pixels differ from the background"


def test_agent_colours_are_drawn():
    env = make_env("navigation")
    frame = render_frame(env).reshape(-1, 3).astype(int)
    for agent in env._env.agents:
        colour = np.array([255 * c for c in agent.color])
        blended = (colour + 255) / 2  # agents are drawn half transparent over white
        assert (np.abs(frame - blended).max(axis=1) <= 3).any(), f"{agent.name} not visible"


def test_frames_change_when_agents_move():
    frames = step_frames(make_env("navigation"), 3)
    assert not np.array_equal(frames[0], frames[-1])


def test_rejects_bad_env_index():
    with pytest.raises(IndexError):
        render_frame(make_env(), env_index=2)


def test_gif_round_trip(tmp_path):
    frames = step_frames(make_env("navigation"), 5)
    path = save_animation(frames, tmp_path / "out" / "rollout.gif", fps=5)
    assert path == tmp_path / "out" / "rollout.gif" and path.exists()
    with Image.open(path) as gif:
        assert gif.n_frames == len(frames)
        assert gif.size == (frames[0].shape[1], frames[0].shape[0])
        assert gif.info["duration"] == 200


def test_bad_extension_is_a_clear_value_error(tmp_path):
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"\.avi.*\.gif or \.mp4"):
        save_animation([frame], tmp_path / "rollout.avi")
    with pytest.raises(ValueError, match="gif or .mp4"):
        save_animation([frame], tmp_path / "rollout")


def test_bad_frames_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="No frames"):
        save_animation([], tmp_path / "a.gif")
    with pytest.raises(ValueError, match="uint8"):
        save_animation([np.zeros((8, 8, 3), dtype=np.float32)], tmp_path / "a.gif")


def test_mp4_without_imageio_ffmpeg_explains_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    with pytest.raises(ImportError, match="pip install imageio-ffmpeg"):
        save_animation([np.zeros((16, 16, 3), dtype=np.uint8)], tmp_path / "rollout.mp4")


def test_mp4_with_imageio_ffmpeg(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    frames = step_frames(make_env("navigation"), 4)
    path = save_animation(frames, tmp_path / "rollout.mp4", fps=4)
    assert path.stat().st_size > 0

"""Headless rendering of VMAS worlds with matplotlib (Agg), and GIF / MP4 export.

vmas' own renderer needs pyglet and a display. Here one frame is drawn on a cached off-screen
matplotlib figure (no pyplot, no global backend switch), so it runs on servers and in workers:

    frames = []
    for _ in range(steps):
        ...step the env...
        frames.append(render_frame(env, env_index=0))
    save_animation(frames, "rollout.gif", fps=10)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from marl.envs.vmas_state import vmas_environment
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Rectangle

BACKGROUND = (1.0, 1.0, 1.0)
BOUNDARY_COLOR = (0.6, 0.6, 0.6)
FIT_MARGIN = 0.1  # extra space around the entities when the world has no semi-dims

_FIGURES: dict[int, tuple[Figure, Axes]] = {}  # frame size in pixels -> reusable figure


def render_frame(env, env_index: int = 0, *, size: int = 400) -> np.ndarray:
    """One RGB frame ``[size, size, 3]`` uint8 of the current world state of env ``env_index``."""
    world = vmas_environment(env).world
    if not 0 <= env_index < world.batch_dim:
        raise IndexError(f"env_index {env_index} out of range for {world.batch_dim} envs")
    fig, ax = _figure(size)
    for artist in [*ax.patches, *ax.lines]:
        artist.remove()

    entities = [e for e in world.entities if bool(e.is_rendering[env_index])]
    for entity in entities:  # landmarks first, then agents on top
        _draw_entity(ax, entity, env_index)
    xlim, ylim = _limits(world, entities, env_index)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    if world.x_semidim is not None or world.y_semidim is not None:
        ax.add_patch(_boundary(world, xlim, ylim))

    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_animation(frames: list[np.ndarray], path: str | Path, fps: int = 10) -> Path:
    """Write ``frames`` (``[H, W, 3]`` uint8) to ``path``: ``.gif`` (Pillow) or ``.mp4`` (imageio-ffmpeg).

    Note: Pillow merges identical consecutive GIF frames (keeping the total duration).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"Unsupported animation format {suffix or path.name!r}: use a .gif or .mp4 path")
    if not frames:
        raise ValueError("No frames to save")
    shape = frames[0].shape
    for frame in frames:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape != shape:
            raise ValueError(
                f"Frames must all be uint8 [H, W, 3] of one shape, got {frame.dtype} {frame.shape}"
            )
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)

    if suffix == ".gif":
        _save_gif(frames, path, fps)
    else:
        _save_mp4(frames, path, fps)
    return path


# ----------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------


def _figure(size: int) -> tuple[Figure, Axes]:
    """A cached off-screen square figure with one axis-less, equal-aspect axes filling it."""
    if size not in _FIGURES:
        dpi = 100
        fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi, facecolor=BACKGROUND)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.set_aspect("equal", adjustable="box")
        ax.set_facecolor(BACKGROUND)
        _FIGURES[size] = (fig, ax)
    return _FIGURES[size]


def _draw_entity(ax: Axes, entity, env_index: int) -> None:
    """Sphere -> circle, Box -> rotated rectangle, Line -> rotated segment; unknown shapes -> circle."""
    x, y = entity.state.pos[env_index].tolist()
    rot = float(entity.state.rot[env_index]) if entity.state.rot is not None else 0.0
    color = _rgb(entity.color, env_index)
    alpha = getattr(entity, "_alpha", 1.0)  # vmas draws agents half transparent
    shape = entity.shape
    kind = type(shape).__name__

    if kind == "Box":
        length, width = shape.length, shape.width
        ax.add_patch(
            Rectangle(
                (x - length / 2, y - width / 2),
                length,
                width,
                angle=math.degrees(rot),
                rotation_point="center",
                fill=not shape.hollow,
                facecolor=color,
                edgecolor=color,
                alpha=alpha,
            )
        )
    elif kind == "Line":
        dx, dy = math.cos(rot) * shape.length / 2, math.sin(rot) * shape.length / 2
        ax.add_line(Line2D([x - dx, x + dx], [y - dy, y + dy], color=color, linewidth=2, alpha=alpha))
    else:
        radius = shape.circumscribed_radius()
        ax.add_patch(Circle((x, y), radius, facecolor=color, edgecolor="none", alpha=alpha))
        if getattr(entity, "rotatable", False) and hasattr(entity, "action"):  # heading of rotating agents
            tip = (x + radius * math.cos(rot), y + radius * math.sin(rot))
            ax.add_line(Line2D([x, tip[0]], [y, tip[1]], color="black", linewidth=1))


def _rgb(color: Any, env_index: int) -> tuple[float, float, float]:
    """vmas colours: a ``Color`` enum value / tuple, or a (possibly per-env) tensor, in [0, 1]."""
    if isinstance(color, torch.Tensor):
        color = (color[env_index] if color.dim() > 1 else color).tolist()
    color = getattr(color, "value", color)
    r, g, b = (min(max(float(c), 0.0), 1.0) for c in list(color)[:3])
    return r, g, b


def _limits(world, entities: list, env_index: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Square view: the world's semi-dims where set, else fitted around the entities."""
    xs, ys, extent = [0.0], [0.0], 0.1
    for entity in entities:
        x, y = entity.state.pos[env_index].tolist()
        xs.append(x)
        ys.append(y)
        extent = max(extent, entity.shape.circumscribed_radius())
    half_x = world.x_semidim + extent if world.x_semidim is not None else None
    half_y = world.y_semidim + extent if world.y_semidim is not None else None
    cx = 0.0 if half_x is not None else (min(xs) + max(xs)) / 2
    cy = 0.0 if half_y is not None else (min(ys) + max(ys)) / 2
    if half_x is None:
        half_x = (max(xs) - min(xs)) / 2 + extent + FIT_MARGIN
    if half_y is None:
        half_y = (max(ys) - min(ys)) / 2 + extent + FIT_MARGIN
    half = max(half_x, half_y)
    return (cx - half, cx + half), (cy - half, cy + half)


def _boundary(world, xlim: tuple[float, float], ylim: tuple[float, float]) -> Rectangle:
    """Dashed rectangle of the world's semi-dims (the view's edge along an unbounded axis)."""
    x0, x1 = (-world.x_semidim, world.x_semidim) if world.x_semidim is not None else xlim
    y0, y1 = (-world.y_semidim, world.y_semidim) if world.y_semidim is not None else ylim
    return Rectangle(
        (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=BOUNDARY_COLOR, linestyle="--", linewidth=1
    )


# ----------------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------------


def _save_gif(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=False
    )


def _save_mp4(frames: list[np.ndarray], path: Path, fps: int) -> None:
    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's ffmpeg plugin needs it)
    except ImportError as err:
        raise ImportError(
            "Saving .mp4 needs imageio-ffmpeg: `pip install imageio-ffmpeg`, or save a .gif instead"
        ) from err
    import imageio.v2 as imageio

    with imageio.get_writer(path, fps=fps, codec="libx264", format="FFMPEG") as writer:
        for frame in frames:
            writer.append_data(frame)

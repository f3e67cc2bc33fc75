"""Watch an agent: render one episode to an inline HTML5/JavaScript animation (lessons 05-06).

Frames come from the environment's ``render_mode="rgb_array"`` and become a player with
matplotlib's ``to_jshtml``: no video tools, nothing to download, and it works in a stored
notebook. To keep notebooks small, only every ``every``-th frame is kept, frames are
shrunk by ``shrink``, at most ``max_frames`` are embedded (thinned evenly), and they are
stored as JPEG. matplotlib draws each frame (~20 ms each), so 60 frames cost about a second.

    html = animate_episode(model, "CartPole-v1", seed=0)
    display(html)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from html import escape

import gymnasium as gym
import matplotlib
import numpy as np
from IPython.display import HTML
from matplotlib import animation
from matplotlib.figure import Figure

from ..validation import check_positive_int


@dataclass
class Episode:
    """One recorded episode: the kept frames, the undiscounted return and the length."""

    frames: list[np.ndarray] = field(default_factory=list)
    episode_return: float = 0.0
    length: int = 0
    actions: list = field(default_factory=list)


def _render_env(env: str | gym.Env) -> tuple[gym.Env, bool]:
    """An env that renders rgb_array frames, and whether we created it (and must close it)."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        # Headless: pygame (classic control) needs no window for rgb_array frames; without
        # this SDL prints "XDG_RUNTIME_DIR is invalid" into the notebook.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if isinstance(env, str):
        return gym.make(env, render_mode="rgb_array"), True
    if getattr(env, "render_mode", None) != "rgb_array":
        raise ValueError(f"env must be an env id or an env made with render_mode='rgb_array', "
                         f"got an env with render_mode={getattr(env, 'render_mode', None)!r}")
    return env, False


def record_episode(model, env: str | gym.Env, seed: int | None = 0, deterministic: bool = True,
                   every: int = 2, shrink: int = 2, max_steps: int = 1000) -> Episode:
    """Play one episode with ``model.predict`` and keep every ``every``-th frame.

    ``model`` is anything with ``predict(obs, deterministic) -> (action, state)`` (a ppo_lib
    or Stable-Baselines3 model); single observations are passed as they come from the env.
    """
    check_positive_int("every", every)
    check_positive_int("shrink", shrink)
    check_positive_int("max_steps", max_steps)
    env, owned = _render_env(env)
    episode = Episode()
    try:
        obs, _ = env.reset(seed=seed)
        for t in range(max_steps):
            if t % every == 0:
                episode.frames.append(np.asarray(env.render())[::shrink, ::shrink])
            action, _ = model.predict(obs, deterministic=deterministic)
            episode.actions.append(np.asarray(action).copy())
            obs, reward, terminated, truncated, _ = env.step(action)
            episode.episode_return += float(reward)
            episode.length += 1
            if terminated or truncated:
                break
        episode.frames.append(np.asarray(env.render())[::shrink, ::shrink])  # the last state
    finally:
        if owned:
            env.close()
    return episode


def frames_to_html(frames: list[np.ndarray], fps: float = 12, max_frames: int = 60,
                   width: float = 3.0, dpi: int = 60, title: str = "") -> str:
    """An HTML5/JavaScript player (``to_jshtml``) for ``frames`` (H x W x 3 uint8 arrays).

    More than ``max_frames`` frames are thinned evenly (the first and last are kept).
    ``title`` is shown as a caption under the player. Works offline (no CDN icons).
    """
    if len(frames) == 0:
        raise ValueError("frames must hold at least one image, got an empty list")
    check_positive_int("max_frames", max_frames)
    if len(frames) > max_frames:
        keep = np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
        frames = [frames[i] for i in keep]
    height, width_px = frames[0].shape[:2]
    # A bare Figure (not pyplot): the inline backend never shows it on its own.
    fig = Figure(figsize=(width, width * height / width_px), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    image = ax.imshow(frames[0])

    def show(i):
        image.set_data(frames[i])
        return (image,)

    anim = animation.FuncAnimation(fig, show, frames=len(frames), interval=1000 / fps,
                                   blit=True)
    with matplotlib.rc_context({"animation.frame_format": "jpeg"}):
        html = anim.to_jshtml(fps=fps, default_mode="once")
    return _offline_buttons(html) + (f"<p><code>{escape(title)}</code></p>" if title else "")


# matplotlib's player draws its buttons with Font Awesome icons loaded from a CDN; the course
# runs offline, so the stylesheet link goes and each icon becomes a plain character.
_ICONS = {"fa fa-minus": "&minus;", "fa fa-fast-backward": "&#x23EE;",
          "fa fa-step-backward": "&#x23F4;&#x2759;", "fa fa-play fa-flip-horizontal": "&#x25C0;",
          "fa fa-pause": "&#x23F8;", "fa fa-play": "&#x25B6;",
          "fa fa-step-forward": "&#x2759;&#x23F5;", "fa fa-fast-forward": "&#x23ED;",
          "fa fa-plus": "+"}


def _offline_buttons(html: str) -> str:
    html = re.sub(r'<link rel="stylesheet"\s+href="[^"]*font-awesome[^"]*">', "", html)
    for icon, text in _ICONS.items():
        html = html.replace(f'<i class="{icon}"></i>', text)
    return html


def animate_episode(model, env: str | gym.Env, seed: int | None = 0, deterministic: bool = True,
                    every: int = 2, shrink: int = 2, max_frames: int = 60, fps: float = 12,
                    max_steps: int = 1000, title: str | None = None) -> HTML:
    """Play one episode and return it as an inline animation (display it, or leave it as
    the last expression of a cell). The title states the return and the length."""
    episode = record_episode(model, env, seed=seed, deterministic=deterministic, every=every,
                             shrink=shrink, max_steps=max_steps)
    if title is None:
        name = env if isinstance(env, str) else env.spec.id if env.spec else "env"
        title = f"{name}: return {episode.episode_return:.1f} in {episode.length} steps"
    html = frames_to_html(episode.frames, fps=fps, max_frames=max_frames, title=title)
    result = HTML(html)
    result.episode = episode  # for asserts in the lessons
    return result

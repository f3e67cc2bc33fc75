"""ppo_lib.lab.animation: an episode becomes a bounded inline HTML/JS player."""

import numpy as np
import pytest

from ppo_lib.lab.animation import animate_episode, frames_to_html, record_episode


class _Balance:
    """A hand-written CartPole controller (no training needed)."""

    def predict(self, obs, deterministic=True):
        return int(obs[2] + 0.5 * obs[3] > 0), None


def test_record_keeps_every_nth_frame_and_the_return():
    episode = record_episode(_Balance(), "CartPole-v1", seed=0, every=10, shrink=4,
                             max_steps=50)
    assert episode.length == 50 and episode.episode_return == 50.0
    assert len(episode.frames) == 50 // 10 + 1  # every 10th plus the last state
    assert episode.frames[0].shape == (100, 150, 3)


def test_html_is_bounded_and_plays_jpeg_frames():
    frames = [np.full((20, 30, 3), i, dtype=np.uint8) for i in range(50)]
    html = frames_to_html(frames, max_frames=5)
    assert "data:image/jpeg;base64" in html
    assert html.count("data:image/jpeg;base64") == 5


def test_animate_episode_titles_with_the_return():
    movie = animate_episode(_Balance(), "CartPole-v1", seed=0, every=25, shrink=4,
                            max_steps=50)
    assert "return 50.0 in 50 steps" in movie.data
    assert movie.episode.length == 50


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="every"):
        record_episode(_Balance(), "CartPole-v1", every=0)
    with pytest.raises(ValueError, match="frames"):
        frames_to_html([])


def test_player_needs_no_network():
    html = frames_to_html([np.zeros((20, 30, 3), dtype=np.uint8)] * 3)
    assert "font-awesome" not in html and "https://" not in html
    assert 'class="fa' not in html

"""Lesson 09's exercises: the reference passes, every registered mistake is rejected, and
each mistake fails with the hint meant for it."""

import numpy as np
import pytest

from ppo_lib import grading
from ppo_lib.atari import cnn_output_size, conv_output_size, preprocess_frame
from ppo_lib.exercises import lesson09  # noqa: F401  (registers the exercises)

IDS = ["conv_output_size", "cnn_output_size", "preprocess_frame"]


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    exercise = grading.EXERCISES[exercise_id]
    assert exercise.lesson == "09"
    assert grading.check(exercise_id, exercise.reference)


@pytest.mark.parametrize("exercise_id,mistake", [
    (ex_id, m) for ex_id in IDS for m in grading.EXERCISES[ex_id].mistakes()],
    ids=lambda v: getattr(v, "description", v))
def test_mistake_rejected(exercise_id, mistake):
    assert not grading.check(exercise_id, mistake.answer)


def test_nature_cnn_sizes():
    assert [conv_output_size(84, 8, 4), conv_output_size(20, 4, 2),
            conv_output_size(9, 3, 1)] == [20, 9, 7]
    assert cnn_output_size(84, 84) == 3136


@pytest.mark.parametrize("mistake,words", [
    ("mean of the three channels", "0.299"),
    ("float in [0, 1] instead of uint8", "uint8"),
    ("cast to uint8 without rounding (truncates)", "np.rint"),
    ("keeps a channel axis, HWC (84, 84, 1)", "no channel axis"),
    ("size taken as (width, height)", "(height, width)"),
])
def test_preprocess_hint_names_the_mistake(capsys, mistake, words):
    wrong = {m.description: m.answer for m in grading.EXERCISES["preprocess_frame"].mistakes()}
    assert not grading.check("preprocess_frame", wrong[mistake])
    assert words in capsys.readouterr().out


def test_equivalent_answer_in_another_order_passes():
    """Resize then grey (both linear) with a different summation order is still right."""
    def other(frame, size=(84, 84)):
        from ppo_lib.atari import area_resize_matrix
        rows = area_resize_matrix(frame.shape[0], size[0])
        cols = area_resize_matrix(frame.shape[1], size[1])
        channels = [rows @ frame[..., c].astype(np.float64) @ cols.T for c in range(3)]
        grey = 0.299 * channels[0] + 0.587 * channels[1] + 0.114 * channels[2]
        return np.rint(grey).astype(np.uint8)
    assert grading.check("preprocess_frame", other)
    assert preprocess_frame(np.zeros((210, 160, 3), np.uint8)).sum() == 0

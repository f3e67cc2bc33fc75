"""Lesson 09's exercises: other right answers pass, and what the cases catch
(tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import math

import numpy as np
import pytest

from ppo_lib.course import grading
from ppo_lib.atari import area_resize_matrix, cnn_output_size, conv_output_size, preprocess_frame
from ppo_lib.course.exercises import lesson09

IDS = ["conv_output_size", "cnn_output_size", "preprocess_frame"]


def test_the_exercises_belong_to_lesson_09():
    assert {grading.EXERCISES[i].lesson for i in IDS} == {"09"}


def test_nature_cnn_sizes():
    assert [conv_output_size(84, 8, 4), conv_output_size(20, 4, 2),
            conv_output_size(9, 3, 1)] == [20, 9, 7]
    assert cnn_output_size(84, 84) == 3136


def test_float_answer_is_told_to_use_floor_division(capsys):
    assert not grading.check("conv_output_size", lambda size, k, s, p=0: (size - k + 2 * p) / s + 1)
    out = capsys.readouterr().out
    assert "floor division" in out and "forget the + 1" not in out


def test_conv_cases_cover_stride_with_padding_and_uneven_sizes():
    cases = grading.EXERCISES["conv_output_size"].cases()
    padded = [c for c in cases if c.kwargs.get("padding")]
    assert any(c.args[2] > 1 for c in padded)            # + 2P before the division matters
    assert any((c.args[0] - c.args[1] + 2 * c.kwargs.get("padding", 0)) % c.args[2]
               for c in cases)                           # floor matters


# right answers written in other ways ------------------------------------------------------

def conv_solution(size, kernel_size, stride, padding=0):
    return (size - kernel_size + 2 * padding) // stride + 1


def conv_math_floor(w, k, s, p=0):
    return math.floor((w + 2 * p - k) / s) + 1


def conv_int_cast(size, kernel_size, stride, padding=0):
    return int((size + 2 * padding - kernel_size) / stride) + 1


def conv_positions(size, kernel_size, stride, padding=0):
    """Counts the kernel's positions one by one."""
    return len(range(0, size + 2 * padding - kernel_size + 1, stride))


@pytest.mark.parametrize("answer", [conv_solution, conv_math_floor, conv_int_cast,
                                    conv_positions], ids=lambda f: f.__name__)
def test_right_conv_output_size_pass(answer, capsys):
    assert grading.check("conv_output_size", answer), capsys.readouterr().out


def cnn_solution(height, width):
    for kernel_size, stride in [(8, 4), (4, 2), (3, 1)]:
        height = conv_output_size(height, kernel_size, stride)
        width = conv_output_size(width, kernel_size, stride)
    return 64 * height * width


def cnn_with_torch(h, w):
    """Runs the Nature CNN's convolutions on a zero image and counts the features."""
    import torch
    from torch import nn
    convs = nn.Sequential(nn.Conv2d(4, 32, 8, 4), nn.Conv2d(32, 64, 4, 2), nn.Conv2d(64, 64, 3, 1))
    with torch.no_grad():
        return convs(torch.zeros(1, 4, h, w)).numel()


@pytest.mark.parametrize("answer", [cnn_solution, cnn_with_torch], ids=lambda f: f.__name__)
def test_right_cnn_output_size_pass(answer, capsys):
    assert grading.check("cnn_output_size", answer), capsys.readouterr().out


def preprocess_solution(frame, size=(84, 84)):
    """The body of solutions/09_atari_and_beyond.ipynb."""
    grey = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    rows = area_resize_matrix(frame.shape[0], size[0])
    cols = area_resize_matrix(frame.shape[1], size[1])
    small = rows @ grey @ cols.T
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def resize_then_grey(frame, size=(84, 84)):
    """Resize then grey (both linear), in float64: the same image up to rounding."""
    rows = area_resize_matrix(frame.shape[0], size[0])
    cols = area_resize_matrix(frame.shape[1], size[1])
    channels = [rows @ frame[..., c].astype(np.float64) @ cols.T for c in range(3)]
    grey = 0.299 * channels[0] + 0.587 * channels[1] + 0.114 * channels[2]
    return np.rint(grey).astype(np.uint8)


def cv2_order(frame, size=(84, 84)):
    """What OpenCV does: cvtColor(RGB2GRAY) to uint8 (fixed-point BT.601 weights), then
    an area resize of the uint8 image, rounded again: within one grey level, no bias."""
    f = frame.astype(np.int64)
    grey = ((f[..., 0] * 4899 + f[..., 1] * 9617 + f[..., 2] * 1868 + 8192) >> 14).astype(np.uint8)
    rows = area_resize_matrix(frame.shape[0], size[0])
    cols = area_resize_matrix(frame.shape[1], size[1])
    return np.clip(np.rint(rows @ grey.astype(np.float32) @ cols.T), 0, 255).astype(np.uint8)


def round_half_up(frame, size=(84, 84)):
    grey = (0.299 * frame[..., 0] + 0.587 * frame[..., 1] + 0.114 * frame[..., 2])
    small = area_resize_matrix(frame.shape[0], size[0]) @ grey @ \
        area_resize_matrix(frame.shape[1], size[1]).T
    return np.floor(small + 0.5).astype(np.uint8)


@pytest.mark.parametrize("answer", [preprocess_solution, resize_then_grey, cv2_order,
                                    round_half_up], ids=lambda f: f.__name__)
def test_right_preprocess_frame_pass(answer, capsys):
    assert grading.check("preprocess_frame", answer), capsys.readouterr().out


def test_cv2_order_differs_from_the_reference():
    """The cv2-order answer is really off by one on some pixels (so its test means
    something), and preprocess_frame of a black frame is black."""
    frame = lesson09._frames()["random"]
    assert (cv2_order(frame) != preprocess_frame(frame)).mean() > 0.05
    assert preprocess_frame(np.zeros((210, 160, 3), np.uint8)).sum() == 0


def test_conv_output_size_is_what_torch_computes():
    import torch
    from torch import nn
    for size in (5, 9, 10, 11, 20, 36, 84, 85):
        for kernel_size, stride, padding in ((3, 1, 0), (3, 2, 1), (4, 2, 0), (8, 4, 0),
                                             (8, 4, 2), (5, 3, 2)):
            if size + 2 * padding < kernel_size:
                continue
            conv = nn.Conv2d(1, 1, kernel_size, stride, padding)
            side = conv(torch.zeros(1, 1, size, size)).shape[-1]
            assert conv_output_size(size, kernel_size, stride, padding) == side


def test_too_small_inputs_raise_instead_of_a_meaningless_size():
    """Before the fix, cnn_output_size(20, 20) returned 64 (sides 20 -> 4 -> 1 -> -1,
    and 64 * -1 * -1 = 64), and conv_output_size(2, 3, 1) returned 0."""
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(2, 3, 1)
    with pytest.raises(ValueError, match="does not fit"):
        cnn_output_size(20, 20)
    assert conv_output_size(3, 3, 1) == 1 and cnn_output_size(36, 36) == 64

"""Lesson 09 exercises: the Nature CNN's sizes and the Atari frame preprocessing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..atari import (GREY_WEIGHTS, area_resize_matrix, cnn_output_size, conv_output_size,
                     preprocess_frame)
from ..grading import Case, Exercise, Mistake, register

# ---------------------------------------------------------------------------------------
# conv_output_size(size, kernel_size, stride, padding=0) = floor((size - K + 2P) / S) + 1


def _int_equal(want: int):
    def verify(got: Any) -> str | None:
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
            return f"expected an int, got {type(got).__name__} {got!r}"
        return None if int(got) == want else f"expected {want}, got {got}"
    return verify


def _conv_cases() -> list[Case]:
    rows = [  # (args, kwargs, hint)
        ((84, 8, 4), {}, "the first Nature conv: (84 - 8) / 4 + 1 = 20; did you forget the "
                         "+ 1, or the stride?"),
        ((20, 4, 2), {}, "the second conv: (20 - 4) / 2 + 1 = 9"),
        ((9, 3, 1), {}, "the third conv: (9 - 3) / 1 + 1 = 7"),
        ((10, 3, 2), {}, "(10 - 3) / 2 = 3.5: a convolution cannot start past the edge, so "
                         "round down (floor, //), not up and not to the nearest"),
        ((85, 8, 4), {}, "(85 - 8) / 4 = 19.25: round down with //; true division / "
                         "gives a float"),
        ((7, 3, 1), {"padding": 1}, "padding P adds P pixels on each side: + 2P, not + P"),
        ((32, 5, 1), {"padding": 2}, "'same' padding: 32 in, 32 out with K=5, P=2, S=1"),
    ]
    return [Case(f"conv_output_size{args}" + (f" padding={kw['padding']}" if kw else ""),
                 args=args, kwargs=kw, hint=hint,
                 verify=_int_equal(conv_output_size(*args, **kw)))
            for args, kw, hint in rows]


def _conv_mistakes() -> list[Mistake]:
    return [
        Mistake("not done yet", _raise_not_implemented),
        Mistake("forgot the + 1", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size + 2 * padding) // stride),
        Mistake("true division (a float, not floored)", lambda size, kernel_size, stride,
                padding=0: (size - kernel_size + 2 * padding) / stride + 1),
        Mistake("ceil instead of floor", lambda size, kernel_size, stride, padding=0:
                math.ceil((size - kernel_size + 2 * padding) / stride) + 1),
        Mistake("round to nearest instead of floor", lambda size, kernel_size, stride,
                padding=0: int(round((size - kernel_size + 2 * padding) / stride + 0.01)) + 1),
        Mistake("padding counted once", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size + padding) // stride + 1),
        Mistake("stride ignored", lambda size, kernel_size, stride, padding=0:
                size - kernel_size + 2 * padding + 1),
        Mistake("+ 1 inside the division", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size + 2 * padding + 1) // stride),
    ]


def _raise_not_implemented(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError()


register(Exercise(
    id="conv_output_size", lesson="09", title="Output size of a convolution",
    cases=_conv_cases, reference=conv_output_size, mistakes=_conv_mistakes))


# ---------------------------------------------------------------------------------------
# cnn_output_size(height, width): the flattened features after the Nature CNN's three convs


def _cnn_cases() -> list[Case]:
    rows = [
        ((84, 84), "84 -> 20 -> 9 -> 7 on each side, times 64 channels: 64 * 7 * 7 = 3136"),
        ((64, 64), "64 -> 15 -> 6 -> 4 on each side; the convs are 8x8/4, 4x4/2, 3x3/1"),
        ((210, 160), "not square: pass height and width through the three convs separately"),
        ((36, 36), "36 -> 8 -> 3 -> 1: the smallest input the Nature CNN accepts"),
        ((100, 84), "not square: height 100 -> 24 -> 11 -> 9, width 84 -> 7"),
    ]
    return [Case(f"cnn_output_size{args}", args=args, hint=hint,
                 verify=_int_equal(cnn_output_size(*args))) for args, hint in rows]


def _cnn_with(convs, channels=64, same_sides=False):
    def wrong(height: int, width: int) -> int:
        for kernel_size, stride in convs:
            height = conv_output_size(height, kernel_size, stride)
            width = height if same_sides else conv_output_size(width, kernel_size, stride)
        return channels * height * width
    return wrong


def _cnn_mistakes() -> list[Mistake]:
    nature = ((8, 4), (4, 2), (3, 1))
    return [
        Mistake("not done yet", _raise_not_implemented),
        Mistake("forgot the 64 channels", _cnn_with(nature, channels=1)),
        Mistake("32 channels (the first conv's) instead of 64", _cnn_with(nature, channels=32)),
        Mistake("strides in the wrong order", _cnn_with(((8, 1), (4, 2), (3, 4)))),
        Mistake("third conv forgotten", _cnn_with(((8, 4), (4, 2)))),
        Mistake("height used for the width too", _cnn_with(nature, same_sides=True)),
        Mistake("missing + 1 in every layer", lambda h, w: 64 * _no_plus_one(h) *
                _no_plus_one(w)),
    ]


def _no_plus_one(side: int) -> int:
    for kernel_size, stride in ((8, 4), (4, 2), (3, 1)):
        side = (side - kernel_size) // stride
    return side


register(Exercise(
    id="cnn_output_size", lesson="09", title="Flattened size after the Nature CNN's convs",
    cases=_cnn_cases, reference=cnn_output_size, mistakes=_cnn_mistakes))


# ---------------------------------------------------------------------------------------
# preprocess_frame(frame, size=(84, 84)): grey scale, area resize, uint8


def _frames() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    pure_red = np.zeros((210, 160, 3), dtype=np.uint8)
    pure_red[..., 0] = 255
    stripes = np.zeros((210, 160, 3), dtype=np.uint8)
    stripes[::2, :, 1] = 200                                  # green rows every other line
    stripes[:, ::3, 2] = 120                                  # blue columns every third
    gradient = np.broadcast_to(np.linspace(0, 255, 160, dtype=np.float32)[None, :, None],
                               (210, 160, 3)).astype(np.uint8).copy()
    gradient[..., 0] = np.linspace(0, 255, 210, dtype=np.float32)[:, None].astype(np.uint8)
    top_white = np.zeros((210, 160, 3), dtype=np.uint8)
    top_white[:105] = 255                                     # the upper half of the screen
    return {"random": rng.integers(0, 256, (210, 160, 3), dtype=np.uint8),
            "pure red": pure_red, "top half white": top_white, "stripes": stripes,
            "gradient": gradient}


def _image_close_to(want: np.ndarray, check_rounding: bool = True):
    """uint8 array of want's shape, every pixel within 1 grey level (float sums may round
    differently at .5), and (check_rounding) on average much closer than 1, so a cast that
    truncates is caught."""
    def verify(got: Any) -> str | None:
        if not isinstance(got, np.ndarray):
            return f"expected a numpy array, got {type(got).__name__}"
        if got.shape != want.shape:
            return f"expected shape {want.shape} (height, width), got shape {got.shape}"
        if got.dtype != np.uint8:
            return f"expected dtype uint8, got {got.dtype}"
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        if diff.max() > 1:
            worst = np.unravel_index(diff.argmax(), diff.shape)
            return (f"pixel {tuple(int(i) for i in worst)} is {got[worst]}, expected "
                    f"{want[worst]} (largest difference {diff.max()})")
        if check_rounding and diff.mean() > 0.05:
            return (f"{(diff > 0).mean():.0%} of the pixels are off by one grey level: "
                    f"round to the nearest integer before the cast")
        return None
    return verify


def _shape_and_dtype(got: Any) -> str | None:
    if not isinstance(got, np.ndarray):
        return f"expected a numpy array, got {type(got).__name__}"
    if got.shape != (84, 84):
        return f"expected shape (84, 84) (height, width), got shape {got.shape}"
    if got.dtype != np.uint8:
        return f"expected dtype uint8, got {got.dtype}"
    return None


def _preprocess_cases() -> list[Case]:
    frames = _frames()
    cases = [Case("one (84, 84) uint8 image", args=(frames["random"],), verify=_shape_and_dtype,
                  hint="return a single grey image: no channel axis (neither HWC (84, 84, 1) "
                       "nor CHW (1, 84, 84)), values 0..255 as uint8, not floats in [0, 1]")]
    hints = {
        "pure red": "a red screen must give 0.299 * 255 = 76: the frame is RGB (channel 0 "
                    "is red), not BGR, and the three weights are not equal",
        "top half white": "the upper half of the screen must stay the upper half: rows "
                          "(height) use area_resize_matrix(210, 84), columns (width) "
                          "area_resize_matrix(160, 84); is the image transposed?",
        "stripes": "area averaging: every output pixel is the mean over the input area it "
                   "covers (rows @ grey @ cols.T), not one sampled input pixel",
        "random": "round to the nearest grey level (np.rint) before .astype(np.uint8): a bare "
                  "cast truncates, making the image darker by half a level on average",
    }
    cases += [Case(f"{name} frame", args=(frames[name],), hint=hint,
                   verify=_image_close_to(preprocess_frame(frames[name]),
                                          check_rounding=name == "random"))
              for name, hint in hints.items()]
    frame = frames["gradient"]
    cases.append(Case("size=(42, 32): (height, width)", args=(frame,),
                      kwargs={"size": (42, 32)},
                      hint="size is (height, width) like numpy shapes (cv2.resize takes "
                           "(width, height): a classic swap)",
                      verify=_image_close_to(preprocess_frame(frame, (42, 32)))))
    return cases


def _grey_with(weights) -> Any:
    def wrong(frame, size=(84, 84)):
        grey = frame.astype(np.float32) @ np.asarray(weights, dtype=np.float32)
        rows, cols = area_resize_matrix(frame.shape[0], size[0]), \
            area_resize_matrix(frame.shape[1], size[1])
        return np.clip(np.rint(rows @ grey @ cols.T), 0, 255).astype(np.uint8)
    return wrong


def _float_frame(frame, size=(84, 84)):
    return preprocess_frame(frame, size).astype(np.float32) / 255.0


def _truncated(frame, size=(84, 84)):
    grey = frame.astype(np.float32) @ GREY_WEIGHTS
    rows, cols = area_resize_matrix(frame.shape[0], size[0]), \
        area_resize_matrix(frame.shape[1], size[1])
    return (rows @ grey @ cols.T).astype(np.uint8)


def _nearest(frame, size=(84, 84)):
    grey = frame.astype(np.float32) @ GREY_WEIGHTS
    rows = (np.arange(size[0]) * frame.shape[0] / size[0]).astype(int)
    cols = (np.arange(size[1]) * frame.shape[1] / size[1]).astype(int)
    return np.rint(grey[rows][:, cols]).astype(np.uint8)


def _size_swapped(frame, size=(84, 84)):
    return preprocess_frame(frame, (size[1], size[0]))


def _preprocess_mistakes() -> list[Mistake]:
    return [
        Mistake("not done yet", _raise_not_implemented),
        Mistake("mean of the three channels", _grey_with([1 / 3, 1 / 3, 1 / 3])),
        Mistake("BGR weights on an RGB frame", _grey_with(GREY_WEIGHTS[::-1].copy())),
        Mistake("float in [0, 1] instead of uint8", _float_frame),
        Mistake("cast to uint8 without rounding (truncates)", _truncated),
        Mistake("nearest-neighbour sampling instead of area averaging", _nearest),
        Mistake("keeps a channel axis, HWC (84, 84, 1)",
                lambda frame, size=(84, 84): preprocess_frame(frame, size)[:, :, None]),
        Mistake("channel first, CHW (1, 84, 84)",
                lambda frame, size=(84, 84): preprocess_frame(frame, size)[None]),
        Mistake("size taken as (width, height)", _size_swapped),
        Mistake("transposed image (width, height)",
                lambda frame, size=(84, 84): preprocess_frame(frame, size).T.copy()),
    ]


register(Exercise(
    id="preprocess_frame", lesson="09", title="Grey scale, resize and uint8 for one frame",
    cases=_preprocess_cases, reference=preprocess_frame, mistakes=_preprocess_mistakes,
    timeout=20.0))

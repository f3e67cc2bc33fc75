"""Lesson 09 exercises: the Nature CNN's sizes and the Atari frame preprocessing."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ...atari import (GREY_WEIGHTS, area_resize_matrix, cnn_output_size, conv_output_size,
                     preprocess_frame)
from ..grading import Case, Exercise, Mistake, register
from .cases import not_done_yet

# ---------------------------------------------------------------------------------------
# conv_output_size(size, kernel_size, stride, padding=0) = floor((size - K + 2P) / S) + 1


def _int_equal(want: int, slips: Callable[[], dict[str, int]] | None = None):
    """``verify``: an int equal to ``want``. A float is told to use floor division; a wrong
    int equal to one of ``slips`` (description -> the value that slip gives) is told which
    slip it looks like."""
    def verify(got: Any) -> str | None:
        if isinstance(got, (float, np.floating)):
            return (f"expected an int, got float {got!r}: a layer's size is a whole number "
                    "(nn.Linear(64 * 7.0 * 7.0, 512) raises): use floor division // instead "
                    "of /, or int(...)")
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
            return f"expected an int, got {type(got).__name__} {got!r}"
        if int(got) == want:
            return None
        matches = [description for description, value in (slips() if slips else {}).items()
                   if int(got) == value]
        if matches:
            return f"expected {want}, got {got}: that is what {' or '.join(matches)} gives"
        return f"expected {want}, got {got}"
    return verify


def _is_int(got: Any) -> str | None:
    """Only the type: a float's first failing case says so, whatever its value."""
    if isinstance(got, (float, np.floating)):
        return (f"expected an int, got float {got!r}: a layer's size is a whole number "
                "(nn.Linear(64 * 7.0 * 7.0, 512) raises)")
    if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
        return f"expected an int, got {type(got).__name__} {got!r}"
    return None


INT_HINT = ("the answer must be an int: use floor division // (true division / gives a "
            "float), or int(...) of a floored value")


def _conv_cases() -> list[Case]:
    type_case = Case("an int, not a float", args=(84, 8, 4), verify=_is_int, hint=INT_HINT)
    rows = [  # (args, kwargs, hint)
        ((9, 3, 1), {}, "the third Nature conv: (9 - 3) / 1 + 1 = 7; did you forget the + 1 "
                        "(the first position of the kernel)?"),
        ((84, 8, 4), {}, "the first Nature conv: (84 - 8) / 4 + 1 = 20: divide "
                         "(size - kernel_size) by the stride, and add the 1 after the division"),
        ((20, 4, 2), {}, "the second conv: (20 - 4) / 2 + 1 = 9"),
        ((10, 3, 2), {}, "(10 - 3) / 2 = 3.5: a convolution cannot start past the edge, so "
                         "round down (floor, //), not up and not to the nearest"),
        ((85, 8, 4), {}, "(85 - 8) / 4 = 19.25: round down with //"),
        ((7, 3, 1), {"padding": 1}, "padding P adds P pixels on each side: + 2P, not + P"),
        ((84, 8, 4), {"padding": 2}, "the padding is added to the input before the division: "
                                     "(84 - 8 + 2 * 2) // 4 + 1 = 21, not (84 - 8) // 4 + 1 "
                                     "+ 2 * 2"),
        ((32, 5, 1), {"padding": 2}, "'same' padding: 32 in, 32 out with K=5, P=2, S=1"),
        ((11, 3, 2), {"padding": 1}, "(11 - 3 + 2) // 2 + 1 = 6: padding before the floor "
                                     "division, + 1 after it"),
        ((12, 4, 3), {"padding": 1}, "(12 - 4 + 2) / 3 = 3.33: round down, then + 1"),
    ]
    return [type_case] + [
        Case(f"conv_output_size{args}" + (f" padding={kw['padding']}" if kw else ""),
             args=args, kwargs=kw, hint=hint, verify=_int_equal(conv_output_size(*args, **kw)))
        for args, kw, hint in rows]


def _conv_mistakes() -> list[Mistake]:
    return [
        Mistake("not done yet", not_done_yet, hint="not done yet"),
        Mistake("forgot the + 1", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size + 2 * padding) // stride, hint="forget the + 1"),
        Mistake("true division (a float, not floored)", lambda size, kernel_size, stride,
                padding=0: (size - kernel_size + 2 * padding) / stride + 1,
                hint="floor division"),
        Mistake("np.floor (a numpy float)", lambda size, kernel_size, stride, padding=0:
                np.floor((size - kernel_size + 2 * padding) / stride) + 1,
                hint="floor division"),
        Mistake("ceil instead of floor", lambda size, kernel_size, stride, padding=0:
                math.ceil((size - kernel_size + 2 * padding) / stride) + 1, hint="round down"),
        Mistake("round to nearest instead of floor", lambda size, kernel_size, stride,
                padding=0: int(round((size - kernel_size + 2 * padding) / stride + 0.01)) + 1,
                hint="round down"),
        Mistake("padding counted once", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size + padding) // stride + 1, hint="each side"),
        Mistake("padding ignored", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size) // stride + 1, hint="each side"),
        Mistake("+ 2P added after the division", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size) // stride + 1 + 2 * padding, hint="before the division"),
        Mistake("stride ignored", lambda size, kernel_size, stride, padding=0:
                size - kernel_size + 2 * padding + 1, hint="by the stride"),
        Mistake("+ 1 inside the division", lambda size, kernel_size, stride, padding=0:
                (size - kernel_size + 2 * padding + 1) // stride, hint="after the division"),
    ]


register(Exercise(
    id="conv_output_size", lesson="09", title="Output size of a convolution",
    cases=_conv_cases, reference=conv_output_size, mistakes=_conv_mistakes))


# ---------------------------------------------------------------------------------------
# cnn_output_size(height, width): the flattened features after the Nature CNN's three convs

NATURE = ((8, 4), (4, 2), (3, 1))


def _sides(side: int, convs=NATURE, plus_one: int = 1) -> list[int]:
    out = [side]
    for kernel_size, stride in convs:
        out.append((out[-1] - kernel_size) // stride + plus_one)
    return out


def _cnn_slips(height: int, width: int) -> Callable[[], dict[str, int]]:
    def slips() -> dict[str, int]:
        h, w = _sides(height), _sides(width)
        wrong_order = ((8, 1), (4, 2), (3, 4))
        return {
            "leaving out the 64 channels (64 * h * w)": h[3] * w[3],
            "32 channels (the first conv's) instead of the last conv's 64": 32 * h[3] * w[3],
            "the 4 input channels instead of the last conv's 64": 4 * h[3] * w[3],
            "leaving out the third conv (3x3, stride 1)": 64 * h[2] * w[2],
            "using the height for the width too": 64 * h[3] * h[3],
            "using the width for the height too": 64 * w[3] * w[3],
            "the strides in the wrong order (the convs are 8x8 stride 4, 4x4 stride 2, "
            "3x3 stride 1)":
                64 * _sides(height, wrong_order)[3] * _sides(width, wrong_order)[3],
            "a missing + 1 in each conv":
                64 * _sides(height, plus_one=0)[3] * _sides(width, plus_one=0)[3],
        }
    return slips


def _cnn_cases() -> list[Case]:
    rows = [
        ((84, 84), "84 -> 20 -> 9 -> 7 on each side, times 64 channels: 64 * 7 * 7 = 3136"),
        ((64, 64), "64 -> 15 -> 6 -> 4 on each side; the convs are 8x8/4, 4x4/2, 3x3/1"),
        ((210, 160), "not square: pass height and width through the three convs separately"),
        ((36, 36), "36 -> 8 -> 3 -> 1: the smallest input the Nature CNN accepts"),
        ((100, 84), "not square: height 100 -> 24 -> 11 -> 9, width 84 -> 7"),
        ((84, 100), "not square: height 84 -> 7, width 100 -> 24 -> 11 -> 9"),
    ]
    return [Case("an int, not a float", args=(84, 84), verify=_is_int, hint=INT_HINT)] + [
        Case(f"cnn_output_size{args}", args=args, hint=hint,
             verify=_int_equal(cnn_output_size(*args), _cnn_slips(*args)))
        for args, hint in rows]


def _cnn_with(convs, channels=64, same_sides=False, conv=conv_output_size):
    def wrong(height: int, width: int) -> int:
        for kernel_size, stride in convs:
            height = conv(height, kernel_size, stride)
            width = height if same_sides else conv(width, kernel_size, stride)
        return channels * height * width
    return wrong


def _cnn_mistakes() -> list[Mistake]:
    return [
        Mistake("not done yet", not_done_yet, hint="not done yet"),
        Mistake("forgot the 64 channels", _cnn_with(NATURE, channels=1),
                hint="leaving out the 64 channels"),
        Mistake("32 channels (the first conv's) instead of 64", _cnn_with(NATURE, channels=32),
                hint="32 channels"),
        Mistake("4 channels (the stacked frames) instead of 64",
                _cnn_with(NATURE, channels=4), hint="4 input channels"),
        Mistake("strides in the wrong order", _cnn_with(((8, 1), (4, 2), (3, 4))),
                hint="wrong order"),
        Mistake("third conv forgotten", _cnn_with(((8, 4), (4, 2))), hint="third conv"),
        Mistake("height used for the width too", _cnn_with(NATURE, same_sides=True),
                hint="height for the width"),
        Mistake("width used for the height too", lambda h, w: _cnn_with(NATURE)(w, w),
                hint="width for the height"),
        Mistake("missing + 1 in every layer", lambda h, w: 64 * _sides(h, plus_one=0)[3] *
                _sides(w, plus_one=0)[3], hint="missing + 1"),
        Mistake("true division in every layer (a float)", _cnn_with(
            NATURE, conv=lambda size, k, s: (size - k) / s + 1), hint="floor division"),
    ]


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


# The tolerance, stated in the hints: every pixel within 1 grey level of the reference, and
# no systematic bias (mean difference at most 0.2 level, at most 25% of the pixels off by
# one). Rounding the grey image to uint8 before the resize (what OpenCV's cvtColor then
# resize do) is off by one on about 10% of the pixels with no bias: it passes; a cast that
# truncates instead of rounding is off on half of them, half a level darker: it fails.
MAX_LEVELS, MAX_BIAS, MAX_SHARE_OFF = 1, 0.2, 0.25
TOLERANCE = ("pixels may differ from the reference by at most 1 grey level without a "
             "systematic bias (rounding the grey image before the resize, as OpenCV does, is "
             "within it)")


def _shape_problem(got: Any, frame: np.ndarray, size: tuple[int, int]) -> str | None:
    if not isinstance(got, np.ndarray):
        return (f"expected a numpy array, got {type(got).__name__}" +
                (" (call .numpy() on a tensor)" if hasattr(got, "numpy") else ""))
    if got.shape != tuple(size):
        if got.shape == frame.shape[:2]:
            return (f"expected shape {tuple(size)}, got the frame's own shape {got.shape}: "
                    "the frame was not resized")
        if got.ndim == 3:
            return (f"expected shape {tuple(size)}, got shape {got.shape}: no channel axis "
                    "(neither HWC (84, 84, 1) nor CHW (1, 84, 84)), one grey image")
        if got.shape == tuple(size)[::-1]:
            return (f"expected shape {tuple(size)} (height, width), got {got.shape}: size is "
                    "(height, width) like numpy shapes (cv2.resize takes (width, height)), "
                    "or the image is transposed")
        return f"expected shape {tuple(size)} (height, width), got shape {got.shape}"
    if got.dtype != np.uint8:
        return (f"expected dtype uint8 (whole grey levels 0..255), got {got.dtype}: round "
                "(np.rint) and .astype(np.uint8); don't scale to floats in [0, 1]")
    return None


def _image_close_to(frame: np.ndarray, size: tuple[int, int] = (84, 84)):
    """uint8 image of shape ``size`` within TOLERANCE of the reference."""
    want = preprocess_frame(frame, size)

    def verify(got: Any) -> str | None:
        problem = _shape_problem(got, frame, size)
        if problem:
            return problem
        diff = got.astype(np.int16) - want.astype(np.int16)
        if np.abs(diff).max() > MAX_LEVELS:
            worst = np.unravel_index(np.abs(diff).argmax(), diff.shape)
            return (f"pixel {tuple(int(i) for i in worst)} is {got[worst]}, expected "
                    f"{want[worst]} (largest difference {np.abs(diff).max()} grey levels; "
                    f"{TOLERANCE})")
        bias, share = float(diff.mean()), float((diff != 0).mean())
        if abs(bias) > MAX_BIAS or share > MAX_SHARE_OFF:
            return (f"{share:.0%} of the pixels are off by one grey level, on average "
                    f"{bias:+.2f} ({TOLERANCE}): round to the nearest integer (np.rint) "
                    "before the cast; a bare .astype(np.uint8) truncates")
        return None
    return verify


def _preprocess_cases() -> list[Case]:
    frames = _frames()
    cases = [Case("one (84, 84) uint8 image", args=(frames["random"],),
                  verify=lambda got: _shape_problem(got, frames["random"], (84, 84)),
                  hint="return a single grey image of shape size, values 0..255 as uint8: "
                       "rows with R_h = area_resize_matrix(H, height), columns with "
                       "R_w = area_resize_matrix(W, width)")]
    hints = {
        "pure red": "a red screen must give 0.299 * 255 = 76: the frame is RGB (channel 0 "
                    "is red), not BGR, and the weights are BT.601's 0.299, 0.587, 0.114",
        "top half white": "the upper half of the screen must stay the upper half: rows "
                          "(height) use area_resize_matrix(210, 84), columns (width) "
                          "area_resize_matrix(160, 84), over the whole screen (no crop); is "
                          "the image transposed?",
        "stripes": "area averaging: every output pixel is the mean over the input area it "
                   "covers (rows @ grey @ cols.T), not one sampled input pixel",
        "random": "round to the nearest grey level (np.rint) before .astype(np.uint8): a bare "
                  "cast truncates, making the image darker by half a level on average. "
                  + TOLERANCE,
    }
    cases += [Case(f"{name} frame", args=(frames[name],), hint=hint,
                   verify=_image_close_to(frames[name]))
              for name, hint in hints.items()]
    frame = frames["gradient"]
    cases.append(Case("size=(42, 32): (height, width)", args=(frame,),
                      kwargs={"size": (42, 32)},
                      hint="size is (height, width) like numpy shapes (cv2.resize takes "
                           "(width, height): a classic swap)",
                      verify=_image_close_to(frame, (42, 32))))
    other = frames["random"][:150, :120].copy()
    cases.append(Case("a frame of another size, (150, 120, 3)", args=(other,),
                      hint="take the input size from the frame (frame.shape[0], "
                           "frame.shape[1]), not 210 and 160",
                      verify=_image_close_to(other)))
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


def _no_resize(frame, size=(84, 84)):
    return np.rint(frame.astype(np.float32) @ GREY_WEIGHTS).astype(np.uint8)


def _hard_coded_atari(frame, size=(84, 84)):
    grey = frame.astype(np.float32) @ GREY_WEIGHTS
    rows, cols = area_resize_matrix(210, size[0]), area_resize_matrix(160, size[1])
    return np.clip(np.rint(rows @ grey @ cols.T), 0, 255).astype(np.uint8)


def _cropped(frame, size=(84, 84)):
    """The score bar cropped first (rows 34:194, an old Pong pipeline), then resized."""
    return preprocess_frame(frame[34:194], size) if len(frame) > 194 else \
        preprocess_frame(frame, size)


def _rows_matrix_for_columns(frame, size=(84, 84)):
    grey = frame.astype(np.float32) @ GREY_WEIGHTS
    rows = area_resize_matrix(frame.shape[0], size[0])
    return np.clip(np.rint(rows @ grey @ rows.T), 0, 255).astype(np.uint8)


def _preprocess_mistakes() -> list[Mistake]:
    return [
        Mistake("not done yet", not_done_yet, hint="not done yet"),
        Mistake("mean of the three channels", _grey_with([1 / 3, 1 / 3, 1 / 3]),
                hint="0.299"),
        Mistake("BT.709 weights (0.2126, 0.7152, 0.0722)",
                _grey_with([0.2126, 0.7152, 0.0722]), hint="BT.601"),
        Mistake("BGR weights on an RGB frame", _grey_with(GREY_WEIGHTS[::-1].copy()),
                hint="not BGR"),
        Mistake("float in [0, 1] instead of uint8", _float_frame, hint="uint8"),
        Mistake("cast to uint8 without rounding (truncates)", _truncated, hint="np.rint"),
        Mistake("nearest-neighbour sampling instead of area averaging", _nearest,
                hint="area averaging"),
        Mistake("not resized", _no_resize, hint="not resized"),
        Mistake("keeps a channel axis, HWC (84, 84, 1)",
                lambda frame, size=(84, 84): preprocess_frame(frame, size)[:, :, None],
                hint="no channel axis"),
        Mistake("channel first, CHW (1, 84, 84)",
                lambda frame, size=(84, 84): preprocess_frame(frame, size)[None],
                hint="no channel axis"),
        Mistake("size taken as (width, height)", _size_swapped, hint="(height, width)"),
        Mistake("transposed image (width, height)",
                lambda frame, size=(84, 84): preprocess_frame(frame, size).T.copy(),
                hint="transposed"),
        Mistake("score bar cropped before the resize", _cropped, hint="no crop"),
        Mistake("the row matrix used for the columns too", _rows_matrix_for_columns, hint="R_w"),
        Mistake("210 and 160 hard-coded", _hard_coded_atari, hint="frame.shape[0]"),
    ]


register(Exercise(
    id="preprocess_frame", lesson="09", title="Grey scale, resize and uint8 for one frame",
    cases=_preprocess_cases, reference=preprocess_frame, mistakes=_preprocess_mistakes,
    timeout=20.0))

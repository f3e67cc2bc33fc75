"""Flat buffers whose slices start at 64-byte boundaries (``ppo_lib.fastpath``'s parameters,
gradients and Adam state live in them): the CPU matrix kernels round by their operands'
addresses, so a slice's start must not depend on where the allocator put the buffer.
"""

from __future__ import annotations

import torch
from torch import Tensor

ALIGN = 16  # floats (64 bytes, a cache line and an AVX-512 register): each slice's start


def raw_buffer(numel: int) -> Tensor:  # the tests replace it: buffers at odd addresses
    return torch.zeros(numel)


def aligned_zeros(numel: int) -> Tensor:
    """``numel`` zeros from a 64-byte boundary, wherever ``raw_buffer``'s memory starts."""
    raw = raw_buffer(numel + ALIGN)
    shift = (-raw.data_ptr() % (4 * ALIGN)) // raw.element_size()
    return raw[shift:shift + numel]


def layout(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of slices of these sizes, each rounded up to ALIGN elements -> (offsets,
    total). The padding holds zeros (no gradient, no Adam update: they stay 0)."""
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // ALIGN) * ALIGN
    return offsets, total


def views(buffer: Tensor, offsets: list[int], params: list[Tensor]) -> list[Tensor]:
    """Each parameter's slice of a flat buffer, in the parameter's shape."""
    return [buffer[o:o + p.numel()].view_as(p) for o, p in zip(offsets, params)]


def flat_copy(tensors: list[Tensor], offsets: list[int], total: int) -> Tensor:
    """A fresh aligned buffer holding copies of ``tensors`` at ``offsets``."""
    buffer = aligned_zeros(total)
    for view, t in zip(views(buffer, offsets, tensors), tensors):
        view.copy_(t.detach())
    return buffer

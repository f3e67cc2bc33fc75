"""One layer of K seeds' MLPs, and the layouts and elementwise operations that give each
seed's slice its lone run's bits (``ppo_lib.seed_batch``; the rules are in its docstring).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .fastpath import ACTIVATIONS, BACKWARD_INTO, tanh

ALIGN = 16        # floats: 64 bytes, the boundary each seed's operands start at
BMM_SMALL = 400   # multiply-adds below which torch's bmm runs a loop of its own, which
#                   rounds unlike addmm (a (3, 64) x (64, 2) head): those run per seed
VECTOR_RUN = 32   # elements torch's elementwise kernels take per vector step (2 x 16 floats)


# --- layouts and elementwise operations, exact per seed -------------------------------------
def aligned_empty(*shape: int) -> Tensor:
    """An uninitialised tensor of ``shape`` starting at a 64-byte boundary."""
    numel = int(np.prod(shape))
    raw = torch.empty(numel + ALIGN)
    shift = (-raw.data_ptr() % (4 * ALIGN)) // 4
    return raw[shift:shift + numel].view(*shape)


def _aligned(x: Tensor) -> bool:
    return x.data_ptr() % (4 * ALIGN) == 0


def seed_aligned_empty(*shape: int) -> Tensor:
    """An uninitialised (K, ...) tensor whose seed slices are each contiguous from a 64-byte
    boundary (padded to multiples of 16 floats), as the lone run's fresh tensors are."""
    per_seed = int(np.prod(shape[1:]))
    stride = -(-per_seed // ALIGN) * ALIGN
    return aligned_empty(shape[0], stride)[:, :per_seed].view(shape)


def seed_aligned(x: Tensor) -> Tensor:
    """x (K, ...) laid out as ``seed_aligned_empty``: x itself, or such a copy."""
    per_seed = x.numel() // x.shape[0]
    if _aligned(x) and x.is_contiguous() and per_seed % ALIGN == 0:
        return x
    out = seed_aligned_empty(*x.shape)
    out.copy_(x)
    return out


def _aligned_copy(x: Tensor) -> Tensor:
    """x, or a copy contiguous from a 64-byte boundary (as the lone run's tensors are)."""
    if _aligned(x) and x.is_contiguous():
        return x
    return x.clone(memory_format=torch.contiguous_format)


def apart_empty(*shape: int) -> Tensor:
    """An uninitialised (K, ...) tensor laid out for ``rowwise``'s rule (there, or to compute
    exp / log in place): contiguous when each seed's slice is whole vector steps, else its
    slices one element apart (each seed's elements in one run, as the lone tensor's)."""
    K, per_seed = shape[0], int(np.prod(shape[1:]))
    if per_seed % VECTOR_RUN == 0:
        return torch.empty(shape)
    return torch.empty(K, per_seed + 1)[:, :per_seed].unflatten(1, shape[1:])


def rowwise(fn, x: Tensor) -> Tensor:
    """``fn`` (an elementwise exp or log) of x (K, ...), each seed's slice split into vector
    steps and rest as the lone tensor is: batched when each slice is whole vector steps,
    else the slices go into rows one element apart, which torch loops over row by row."""
    K = x.shape[0]
    flat = x.reshape(K, -1)
    if flat.is_contiguous() and flat.shape[1] % VECTOR_RUN == 0:
        return fn(x)
    apart = apart_empty(*flat.shape)
    apart.copy_(flat)
    return fn(apart).reshape(x.shape)


def logsumexp(x: Tensor, buffers: dict | None = None) -> Tensor:
    """``torch.logsumexp(x, -1)`` as torch's CPU kernel computes it (max, exp of the
    difference, sum, log, add the max back), its exp and log seed by seed (in ``buffers``'
    ``apart_empty`` tensors for x's shape, reused: made there on the first call)."""
    maxes = torch.amax(x, -1, keepdim=True)  # an infinite max counts as 0 (NaN stays NaN)
    maxes = torch.nan_to_num(maxes, nan=float("nan"), posinf=0.0, neginf=0.0)
    buffers = {} if buffers is None else buffers
    if x.shape not in buffers:
        buffers[x.shape] = apart_empty(*x.shape), apart_empty(*x.shape[:-1])
    difference, total = buffers[x.shape]
    torch.exp(torch.sub(x, maxes, out=difference), out=difference)
    torch.log(torch.sum(difference, -1, out=total), out=total)
    return total + maxes.squeeze(-1)


# --- one layer of K seeds -------------------------------------------------------------------
class Layer:
    """One Linear (+ activation) of the K seeds: weight (K, out, in) and bias (K, out), and
    their gradients, as views of the flat (K, total) buffers."""

    def __init__(self, linears: list[nn.Linear], activation, offsets, flat, grad,
                 pool: dict | None = None, depth: int = 0):
        self.linears = linears
        self.act, self.act_backward = activation
        self.out_features, self.in_features = linears[0].weight.shape
        w_off, b_off = offsets
        out, inp = self.out_features, self.in_features
        self.weight = flat[:, w_off:w_off + out * inp].view(-1, out, inp)
        self.bias = flat[:, b_off:b_off + out]
        self.weight_grad = grad[:, w_off:w_off + out * inp].view(-1, out, inp)
        self.bias_grad = grad[:, b_off:b_off + out]
        # baddbmm rounds a one-output layer's forward unlike addmm (a dot product per row):
        # that runs per seed; its backward, d^T x and an outer product d W, is batched
        self.per_seed = out == 1
        # Elsewhere baddbmm / bmm give each seed addmm / mm's bits on the CPUs we measured;
        # on others they may not: the first call of each shape compares the two and keeps
        # the per-seed products where they differ ({(kind, batch, ...): batched is exact})
        self.exact: dict[tuple, bool] = {}
        self.buffers: dict[tuple, Tensor] = {}
        # the input gradients' buffers, shared by the layers of all K seeds' nets (``pool``),
        # two per shape: layer ``depth`` writes dx into one while it reads its gradient from
        # the other (the dx of the layer above, which the activation's backward overwrites)
        self.pool = {} if pool is None else pool
        self.depth = depth
        # the batched products' operands that do not change (views of the flat buffers)
        self.bias_rows, self.weight_t = self.bias.unsqueeze(1), self.weight.transpose(1, 2)
        self.weights_t = [lin.weight.detach().t() for lin in linears]  # per seed, for addmm
        self.rows: dict[tuple, list[Tensor]] = {}       # seed_rows' buffers, per seed
        self.arrays: dict[tuple, np.ndarray] = {}       # workspace buffers' numpy views

    def workspace(self, name: str, *shape: int) -> Tensor:
        """This layer's buffer ``name`` of ``shape``, the same memory every step (its
        output): a fresh (K, 256, 64) tensor each step would be written cold, outside the
        cache, which costs more than the product that fills it (measured: batched training
        about 15% faster with these). 64-byte aligned, as a fresh tensor."""
        key = (name, shape)
        if key not in self.buffers:
            self.buffers[key] = aligned_empty(*shape)
            self.arrays[key] = self.buffers[key].numpy()
        return self.buffers[key]

    def seed_rows(self, name: str, *shape: int) -> list[Tensor]:
        """This layer's buffer ``name`` (``seed_aligned_empty``, the same memory every step)
        as one tensor per seed, for products that run seed by seed."""
        key = (name, shape)
        if key not in self.buffers:
            self.buffers[key] = seed_aligned_empty(*shape)
            self.rows[key] = list(self.buffers[key])
        return self.rows[key]

    def input_grad_buffer(self, shape: torch.Size) -> Tensor:
        """The pool's buffer for this layer's dL/dx: one of two per shape, by depth's parity
        (a smaller working set than a buffer per layer: it stays in the core's cache)."""
        key = ("dx", self.depth % 2, tuple(shape))
        if key not in self.pool:
            self.pool[key] = aligned_empty(*shape)
        return self.pool[key]

    def small(self, batch: int) -> bool:
        """Whether this layer's products for a batch are under BMM_SMALL multiply-adds."""
        return batch * self.in_features * self.out_features < BMM_SMALL

    def forward(self, x: Tensor) -> Tensor:
        """y = act(x W^T + b) for each seed: x (K, B, in) -> (K, B, out)."""
        def alone():  # each seed's addmm, as the lone run's, into its row of a buffer
            rows = self.seed_rows("alone", *x.shape[:2], self.out_features)
            for x_k, lin, weight_t, row in zip(seed_aligned(x).unbind(0), self.linears,
                                               self.weights_t, rows):
                torch.addmm(lin.bias, x_k, weight_t, out=row)
            return self.buffers[("alone", (*x.shape[:2], self.out_features))]
        key = ("forward", x.shape[1])
        if self.per_seed or self.small(x.shape[1]) or self.exact.get(key) is False:
            y = alone()
        else:
            shape = (*x.shape[:2], self.out_features)
            y = torch.baddbmm(self.bias_rows, seed_aligned(x), self.weight_t,
                              out=self.workspace("y", *shape))
            if key not in self.exact:  # this CPU's kernels: checked once per shape
                reference = alone()
                self.exact[key] = torch.equal(y, reference)
                return self.activate(reference)
            return self.activate(y, self.arrays[("y", shape)])
        return self.activate(y)

    def activate(self, y: Tensor, array: np.ndarray | None = None) -> Tensor:
        """The activation of y, in place (y is this layer's own buffer; ``array``: its numpy
        view, kept with the buffer)."""
        if self.act is tanh and y.dtype is torch.float32:  # fastpath.tanh is numpy's here
            array = y.numpy() if array is None else array
            np.tanh(array, out=array)
            return y
        if self.act is torch.relu:
            return y.relu_()
        return y if self.act is None else self.act(y)

    def backward(self, x: Tensor, y: Tensor, grad: Tensor, input_grad: bool) -> Tensor | None:
        """From dL/dy (K, B, out): .grad of W and b (in place), and dL/dx if ``input_grad``.

            d = dL/dy * act'(.),   dL/dW = d^T x,   dL/db = sum_batch d,   dL/dx = d W
        """
        if self.act_backward in BACKWARD_INTO:  # in place: grad is this step's, spent here
            grad = BACKWARD_INTO[self.act_backward](grad, y, grad_input=grad)
        elif self.act_backward is not None:
            grad = self.act_backward(grad, y)

        def alone():  # each seed as the lone run: dW into its .grad, and dx
            for k, lin in enumerate(self.linears):
                torch.mm(_aligned_copy(grad[k]).t(), _aligned_copy(x[k]), out=lin.weight.grad)
            return torch.stack([_aligned_copy(grad[k]).mm(lin.weight)
                                for k, lin in enumerate(self.linears)]) if input_grad else None
        key = ("backward", x.shape[1], input_grad)
        if self.small(x.shape[1]) or self.exact.get(key) is False:
            dx = alone()
        else:
            grad_aligned = seed_aligned(grad)
            torch.bmm(grad_aligned.transpose(1, 2), seed_aligned(x), out=self.weight_grad)
            dx = torch.bmm(grad_aligned, self.weight,
                           out=self.input_grad_buffer(x.shape)) if input_grad else None
            if key not in self.exact:  # this CPU's kernels: checked once per shape
                batched_dw = self.weight_grad.clone()
                reference = alone()
                self.exact[key] = torch.equal(batched_dw, self.weight_grad) and (
                    dx is None or torch.equal(dx, reference))
                dx = reference
        torch.sum(grad, 1, out=self.bias_grad)
        return dx


def seed_layers(modules_per_seed: list[list[nn.Module]], index: dict, flat: Tensor,
                grad: Tensor, pool: dict | None = None) -> list[Layer]:
    """The K seeds' copies of one mlp() (plus a head) as Layers; ``index``: a parameter's
    id -> its offset in a row of ``flat``; ``pool``: the input gradients' buffers, shared
    with the network's other Layers."""
    layers = []
    first = modules_per_seed[0]
    for i, module in enumerate(first):
        if type(module) is nn.Linear:
            linears = [modules[i] for modules in modules_per_seed]
            activation = (None, None)
            if i + 1 < len(first) and type(first[i + 1]) in ACTIVATIONS:
                activation = ACTIVATIONS[type(first[i + 1])]
            offsets = (index[id(module.weight)], index[id(module.bias)])
            layers.append(Layer(linears, activation, offsets, flat, grad, pool, len(layers)))
    return layers


def run_layers(layers: list[Layer], x: Tensor, saved: list | None = None) -> Tensor:
    """The layers applied to x, each layer's (input, output) appended to ``saved``."""
    for layer in layers:
        y = layer.forward(x)
        if saved is not None:
            saved.append((x, y))
        x = y
    return x


def backward_layers(layers: list[Layer], saved: list, grad: Tensor, need_input_grad: bool):
    """``fastpath._backward`` for K seeds: dL/d(output) -> .grad of each layer (in place),
    dL/d(input) when ``need_input_grad`` or there are layers below. ``grad`` is overwritten;
    the dL/d(input) returned is a pool buffer, valid until the next backward."""
    for i in range(len(layers) - 1, -1, -1):
        x, y = saved[i]
        grad = layers[i].backward(x, y, grad, i > 0 or need_input_grad)
    return grad

"""K seeds' MLP policies as one batched network, each seed's numbers those of its lone run
(the network side of ``ppo_lib.lockstep``; tests/test_lockstep.py).

Every parameter gets a seed axis in front (a weight (K, out, in)); ``SeedPolicy`` runs the
forward pass, the sampling, the loss with its gradient at the heads, and the backward pass,
clip and Adam of ``fastpath.MlpGradientStep``, for all K at once. Each operation gives every
seed's slice the lone run's bits, or runs seed by seed:

* matrix products: ``baddbmm`` / ``bmm`` equal ``addmm`` / ``mm`` per slice for this MLP's
  shapes, but for a one-output layer's forward (the value head, Pendulum's action head) and
  products under BMM_SMALL multiply-adds (torch's bmm loops there), run per seed. The CPU
  kernels round by address (``ppo_lib.fastpath``): ``seed_aligned`` starts each operand's
  seed slices at 64-byte boundaries (Pendulum's (4, 3) observations are copied so);
* exp / log: torch computes the first multiple of VECTOR_RUN elements of a tensor in vector
  steps, the rest one by one (other last bits possible): ``rowwise`` keeps each slice's split;
* reductions: a row of a (K, B) sum, mean or log_softmax is reduced as the lone (B,) tensor
  is; ``Tensor.std()`` of a whole tensor (two passes in float64) differs from ``std(dim)``
  (Welford), so ``normalized_advantages`` writes the former out; gradient norms per seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .distributions import LOG_SQRT_2PI, gaussian_entropy
from .fastpath import ACTIVATIONS, adam_step, norms
from .policies import GaussianActorCritic

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


def seed_aligned(x: Tensor) -> Tensor:
    """x (K, ...) with every seed's slice contiguous from a 64-byte boundary, as the lone run's
    fresh tensors are: x itself, or a copy whose slices are padded to multiples of 16."""
    per_seed = x[0].numel()
    if _aligned(x) and x.is_contiguous() and per_seed % ALIGN == 0:
        return x
    stride = -(-per_seed // ALIGN) * ALIGN
    out = aligned_empty(x.shape[0], stride)[:, :per_seed].view(x.shape)
    out.copy_(x)
    return out


def _aligned_copy(x: Tensor) -> Tensor:
    """x, or a copy contiguous from a 64-byte boundary (as the lone run's tensors are)."""
    if _aligned(x) and x.is_contiguous():
        return x
    return x.clone(memory_format=torch.contiguous_format)


def rowwise(fn, x: Tensor) -> Tensor:
    """``fn`` (an elementwise exp or log) of x (K, ...), each seed's slice split into vector
    steps and rest as the lone tensor is: batched when each slice is whole vector steps,
    else the slices go into rows one element apart, which torch loops over row by row."""
    K = x.shape[0]
    flat = x.reshape(K, -1)
    if flat.is_contiguous() and flat.shape[1] % VECTOR_RUN == 0:
        return fn(x)
    apart = torch.empty(K, flat.shape[1] + 1)[:, :flat.shape[1]]
    apart.copy_(flat)
    return fn(apart).reshape(x.shape)


def logsumexp(x: Tensor) -> Tensor:
    """``torch.logsumexp(x, -1)`` as torch's CPU kernel computes it (max, exp of the
    difference, sum, log, add the max back), its exp and log seed by seed (``rowwise``)."""
    maxes = torch.amax(x, -1, keepdim=True)
    maxes = maxes.masked_fill(maxes.abs() == float("inf"), 0)
    total = rowwise(torch.exp, x - maxes).sum(-1)
    return rowwise(torch.log, total) + maxes.squeeze(-1)


# --- one layer of K seeds -------------------------------------------------------------------
class Layer:
    """One Linear (+ activation) of the K seeds: weight (K, out, in) and bias (K, out), and
    their gradients, as views of the flat (K, total) buffers."""

    def __init__(self, linears: list[nn.Linear], activation, offsets, flat, grad):
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

    def small(self, batch: int) -> bool:
        """Whether this layer's products for a batch are under BMM_SMALL multiply-adds."""
        return batch * self.in_features * self.out_features < BMM_SMALL

    def forward(self, x: Tensor) -> Tensor:
        """y = act(x W^T + b) for each seed: x (K, B, in) -> (K, B, out)."""
        if self.per_seed or self.small(x.shape[1]):
            y = torch.stack([torch.addmm(lin.bias, _aligned_copy(x[k]), lin.weight.t())
                             for k, lin in enumerate(self.linears)])
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), seed_aligned(x),
                              self.weight.transpose(1, 2))
        return y if self.act is None else self.act(y)

    def backward(self, x: Tensor, y: Tensor, grad: Tensor, input_grad: bool) -> Tensor | None:
        """From dL/dy (K, B, out): .grad of W and b (in place), and dL/dx if ``input_grad``.

            d = dL/dy * act'(.),   dL/dW = d^T x,   dL/db = sum_batch d,   dL/dx = d W
        """
        if self.act_backward is not None:
            grad = self.act_backward(grad, y)
        if self.small(x.shape[1]):
            for k, lin in enumerate(self.linears):
                torch.mm(_aligned_copy(grad[k]).t(), _aligned_copy(x[k]), out=lin.weight.grad)
            dx = torch.stack([_aligned_copy(grad[k]).mm(lin.weight)
                              for k, lin in enumerate(self.linears)]) if input_grad else None
        else:
            grad_aligned = seed_aligned(grad)
            torch.bmm(grad_aligned.transpose(1, 2), seed_aligned(x), out=self.weight_grad)
            dx = torch.bmm(grad_aligned, self.weight) if input_grad else None
        torch.sum(grad, 1, out=self.bias_grad)
        return dx


def seed_layers(modules_per_seed: list[list[nn.Module]], index: dict, flat: Tensor,
                grad: Tensor) -> list[Layer]:
    """The K seeds' copies of one mlp() (plus a head) as Layers; ``index``: a parameter's
    id -> its offset in a row of ``flat``."""
    layers = []
    first = modules_per_seed[0]
    for i, module in enumerate(first):
        if type(module) is nn.Linear:
            linears = [modules[i] for modules in modules_per_seed]
            activation = (None, None)
            if i + 1 < len(first) and type(first[i + 1]) in ACTIVATIONS:
                activation = ACTIVATIONS[type(first[i + 1])]
            offsets = (index[id(module.weight)], index[id(module.bias)])
            layers.append(Layer(linears, activation, offsets, flat, grad))
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
    dL/d(input) when ``need_input_grad`` or there are layers below."""
    for i in range(len(layers) - 1, -1, -1):
        x, y = saved[i]
        grad = layers[i].backward(x, y, grad, i > 0 or need_input_grad)
    return grad


# --- the K seeds' network -------------------------------------------------------------------
class SeedPolicy:
    """The MLP policies of K ``PPO`` models (one configuration) as one network.

    Parameters, gradients and Adam's state of all K live in (K, total) buffers, row k laid out
    as ``fastpath`` lays out a lone model's; each model's parameters, .grad and optimizer
    state are views of row k. ``loss`` then ``step``, as ``MlpGradientStep``.
    """

    def __init__(self, models: list):
        self.K = len(models)
        first = models[0]
        self.gaussian = isinstance(first.policy, GaussianActorCritic)
        params = [list(m.policy.parameters()) for m in models]
        offsets, total = [], 0
        for p in params[0]:
            offsets.append(total)
            total += -(-p.numel() // ALIGN) * ALIGN
        self.flat, self.grad, exp_avg, exp_avg_sq = (aligned_empty(self.K, total).zero_()
                                                     for _ in range(4))
        self.steps = torch.zeros(self.K, len(offsets))  # Adam's per parameter, as torch's
        with torch.no_grad():
            for k, model in enumerate(models):
                state = model.optimizer.state
                for j, (p, o) in enumerate(zip(params[k], offsets)):
                    view = self.flat[k, o:o + p.numel()].view_as(p)
                    view.copy_(p.detach())
                    p.data, p.grad = view, self.grad[k, o:o + p.numel()].view_as(p)
                    state[p] = {"step": self.steps[k, j],
                                "exp_avg": exp_avg[k, o:o + p.numel()].view_as(p),
                                "exp_avg_sq": exp_avg_sq[k, o:o + p.numel()].view_as(p)}
                model.optimizer._lists = None
                model._gradient_step = None
        self.group = first.optimizer.param_groups[0]  # lr, betas, eps (lr set by the trainer)
        # fastpath.adam_step's lists: each seed's row, and its first parameter's step count
        self.rows = (list(self.flat), list(self.grad), list(exp_avg), list(exp_avg_sq),
                     list(self.steps[:, 0]))
        index = {id(p): o for p, o in zip(params[0], offsets)}
        policies = [m.policy for m in models]
        ex = [p.mlp_extractor for p in policies]
        self.shared = seed_layers([list(e.shared_net) for e in ex], index, self.flat, self.grad)
        self.pi = seed_layers([list(e.policy_net) + [p.action_net]
                               for e, p in zip(ex, policies)], index, self.flat, self.grad)
        self.vf = seed_layers([list(e.value_net) + [p.value_net]
                               for e, p in zip(ex, policies)], index, self.flat, self.grad)
        if self.gaussian:
            o, n = index[id(first.policy.log_std)], first.policy.log_std.numel()
            self.log_std, self.log_std_grad = self.flat[:, o:o + n], self.grad[:, o:o + n]
        self._saved = None

    def heads(self, obs: Tensor, saved=None) -> tuple[Tensor, Tensor]:
        """obs (K, B, obs_dim) -> logits or mean (K, B, A), values (K, B)."""
        saved_shared, saved_pi, saved_vf = saved or (None, None, None)
        trunk = run_layers(self.shared, obs, saved_shared)
        head = run_layers(self.pi, trunk, saved_pi)
        return head, run_layers(self.vf, trunk, saved_vf).squeeze(-1)

    def sample(self, head: Tensor, generators: list) -> tuple[Tensor, Tensor]:
        """Each seed's actions (K, N, ...) and their log-probabilities (K, N), each seed's
        noise drawn from its own generator in the shape ``policy.forward`` draws it
        (``categorical_sample`` / ``GaussianActorCritic.forward``)."""
        noise = torch.empty(head.shape)
        draw = torch.randn if self.gaussian else torch.rand
        for k, generator in enumerate(generators):
            draw(head.shape[1:], generator=generator, out=noise[k])
        if self.gaussian:  # a = mu + sigma * N(0, 1); log pi(a|s) as gaussian_log_prob
            mean, log_std = head, self.log_std.unsqueeze(1)
            actions = mean + rowwise(torch.exp, log_std) * noise
            log_stds = log_std.expand_as(mean)
            z = (actions - mean) * rowwise(torch.exp, -log_stds)
            return actions, (-0.5 * z * z - log_stds - LOG_SQRT_2PI).sum(-1)
        # Gumbel-max: argmax(z + Gumbel noise); log pi(a|s) = z_a - logsumexp(z)
        u = noise.clamp_(min=1e-20)
        actions = (head - rowwise(torch.log, -rowwise(torch.log, u))).argmax(-1)
        log_pi = head - logsumexp(head).unsqueeze(-1)
        return actions, log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()  # as MlpGradientStep: no graph (and fastpath.tanh is numpy's then)
    def loss(self, obs, actions, old_log_probs, advantages, returns, clip_range, vf_coef,
             ent_coef, old_values, clip_range_vf):
        """``MlpGradientStep.loss`` of each seed's minibatch (K, B, ...) -> total, policy,
        value, entropy (K,) and log_ratio, ratio (K, B); ``step`` follows."""
        saved = ([], [], [])
        head, values = self.heads(obs.float(), saved)
        args = (old_log_probs, advantages, returns, float(clip_range), float(vf_coef),
                float(ent_coef), old_values,
                None if clip_range_vf is None else float(clip_range_vf))
        if self.gaussian:
            (total, policy, value, entropy, log_ratio, ratio, grad_head, grad_log_std,
             grad_values) = gaussian_loss_and_gradients(head, self.log_std, values, actions,
                                                        *args)
        else:
            (total, policy, value, entropy, log_ratio, ratio, grad_head,
             grad_values) = categorical_loss_and_gradients(head, values, actions.long(), *args)
            grad_log_std = None
        self._saved = (saved, grad_head, grad_log_std, grad_values)
        return total, policy, value, entropy, log_ratio, ratio

    @torch.no_grad()
    def step(self, max_grad_norm: float) -> None:
        """Backward pass of the last ``loss``, gradient-norm clip and one Adam step for the K
        seeds (``fastpath.MlpGradientStep.step``)."""
        (saved_shared, saved_pi, saved_vf), grad_head, grad_log_std, grad_values = self._saved
        self._saved = None
        if grad_log_std is not None:
            self.log_std_grad.copy_(grad_log_std)
        has_trunk = len(self.shared) > 0
        d_pi = backward_layers(self.pi, saved_pi, grad_head, has_trunk)
        d_vf = backward_layers(self.vf, saved_vf, grad_values.unsqueeze(-1), has_trunk)
        if has_trunk:
            backward_layers(self.shared, saved_shared, d_pi + d_vf, False)
        # clip_grad_norm_: scale by min(1, max_norm / (||g|| + 1e-6)), ||g|| of each seed's
        # row (vector_norm of the lone run's flat buffer)
        norm = norms(self.rows[1])
        self.grad.mul_(torch.clamp(max_grad_norm / (norm + 1e-6), max=1.0).unsqueeze(1))
        self.steps.add_(1)
        adam_step(*self.rows, self.group)


# --- the loss and its gradient at the heads, K seeds (ppo_lib.gradients, op for op) -------
def clipped_and_value_gradients(log_ratio, advantages, values, returns, clip_range, vf_coef,
                                old_values, clip_range_vf):
    """``gradients.clipped_and_value_gradients`` for K seeds: (K, B) in, means over B."""
    n = values.shape[1]
    ratio = rowwise(torch.exp, log_ratio)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_range, 1 + clip_range) * advantages
    takes_unclipped = unclipped <= clipped
    policy = -torch.where(takes_unclipped, unclipped, clipped).mean(-1)
    predicted, vf_passes = values, None
    if clip_range_vf is not None:
        change = values - old_values
        predicted = old_values + change.clamp(-clip_range_vf, clip_range_vf)
        vf_passes = change.abs() <= clip_range_vf
    error = predicted - returns
    value = error.square().mean(-1)
    g = torch.where(takes_unclipped, (-1.0 / n) * advantages * ratio, 0.0)
    grad_values = (2.0 * vf_coef / n) * error
    if vf_passes is not None:
        grad_values = grad_values * vf_passes
    return policy, value, ratio, g, grad_values


def categorical_loss_and_gradients(logits, values, actions, old_log_probs, advantages,
                                   returns, clip_range, vf_coef, ent_coef, old_values,
                                   clip_range_vf):
    """``gradients.categorical_loss_and_gradients`` for K seeds."""
    n = values.shape[1]
    log_pi = torch.log_softmax(logits, dim=-1)  # row by row: batched is exact
    p = rowwise(torch.exp, log_pi)
    entropy = -(p * log_pi).sum(-1)
    index = actions.unsqueeze(-1)
    log_ratio = log_pi.gather(-1, index).squeeze(-1) - old_log_probs
    policy, value, ratio, g, grad_values = clipped_and_value_gradients(
        log_ratio, advantages, values, returns, clip_range, vf_coef, old_values, clip_range_vf)
    mean_entropy = entropy.mean(-1)
    total = policy + vf_coef * value
    if ent_coef != 0:
        total = total - ent_coef * mean_entropy
    g = g.unsqueeze(-1)
    if ent_coef != 0:
        grad_logits = torch.addcmul(ent_coef / n * p * (log_pi + entropy.unsqueeze(-1)),
                                    g, -p)
    else:  # the same numbers: the entropy term is exactly 0
        grad_logits = (g * p).neg_()
    grad_logits.scatter_add_(-1, index, g)
    return total, policy, value, mean_entropy, log_ratio, ratio, grad_logits, grad_values


def gaussian_loss_and_gradients(mean, log_std, values, actions, old_log_probs, advantages,
                                returns, clip_range, vf_coef, ent_coef, old_values,
                                clip_range_vf):
    """``gradients.gaussian_loss_and_gradients`` for K seeds (log_std (K, A))."""
    n = values.shape[1]
    log_stds = log_std.unsqueeze(1).expand_as(mean)
    inv_std = rowwise(torch.exp, -log_stds)
    z = (actions - mean) * inv_std
    log_prob = (-0.5 * z * z - log_stds - LOG_SQRT_2PI).sum(-1)
    log_ratio = log_prob - old_log_probs
    policy, value, ratio, g, grad_values = clipped_and_value_gradients(
        log_ratio, advantages, values, returns, clip_range, vf_coef, old_values, clip_range_vf)
    # the entropy is one number per seed, its mean over B taken as the lone run takes it
    mean_entropy = torch.stack([gaussian_entropy(row).expand(n).mean() for row in log_std])
    total = policy + vf_coef * value
    if ent_coef != 0:
        total = total - ent_coef * mean_entropy
    g = g.unsqueeze(-1)
    grad_mean = g * z * inv_std
    grad_log_std = (g * (z * z - 1)).sum(1)
    if ent_coef != 0:
        grad_log_std = grad_log_std - ent_coef
    return (total, policy, value, mean_entropy, log_ratio, ratio, grad_mean, grad_log_std,
            grad_values)


def normalized_advantages(advantages: Tensor) -> Tensor:
    """``PPO.normalized_advantages`` of each seed's minibatch (K, B):

        A <- (A - mean A) / (std A + 1e-8)

    std as ``Tensor.std()`` of a whole tensor computes it on the CPU: the float32 mean, in
    float64 the squared deviations summed in order (a cumulative sum's last element) over
    B - 1, its square root rounded to float32."""
    n = advantages.shape[1]
    mean = advantages.mean(-1, keepdim=True)
    deviations = advantages.double() - mean.double()
    variance = torch.cumsum(deviations * deviations, -1)[:, -1:] / (n - 1)
    std = torch.sqrt(variance).float()
    return (advantages - mean) / (std + 1e-8)


def approx_kl(log_ratio: Tensor) -> Tensor:
    """``kl.approx_kl`` per seed: mean((r - 1) - log r) over the last axis."""
    ratio = rowwise(torch.exp, log_ratio)
    return ((ratio - 1) - log_ratio).mean(-1)

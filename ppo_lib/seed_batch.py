"""K seeds' MLP policies as one batched network, each seed's numbers those of its lone run
(the network side of ``ppo_lib.lockstep``; tests/test_lockstep.py).

Every parameter gets a seed axis in front (a weight (K, out, in), ``seed_layers.Layer``);
``SeedPolicy`` runs the forward pass, the sampling, the loss with its gradient at the heads,
and the backward pass, clip and Adam of ``fastpath.MlpGradientStep``, for all K at once.
Each operation gives every seed's slice the lone run's bits, or runs seed by seed:

* matrix products: ``baddbmm`` / ``bmm`` equal ``addmm`` / ``mm`` per slice for this MLP's
  shapes on the CPUs measured (each Layer checks it once per shape on the CPU it runs on and
  keeps per-seed products where it fails), but a one-output layer's forward (the value head,
  Pendulum's action head) and products under BMM_SMALL multiply-adds (torch's bmm loops
  there) run per seed. The CPU kernels round by address (``ppo_lib.fastpath``):
  ``seed_aligned`` starts each operand's seed slices at 64-byte boundaries (Pendulum's (4, 3)
  observations are copied so);
* exp / log: torch computes the first multiple of VECTOR_RUN elements of a tensor in vector
  steps, the rest one by one (other last bits possible): ``rowwise`` keeps each slice's split;
* reductions: a row of a (K, B) sum, mean or log_softmax is reduced as the lone (B,) tensor
  is; ``Tensor.std()`` of a whole tensor (two passes in float64) differs from ``std(dim)``
  (Welford), so ``normalized_advantages`` writes the former out; gradient norms per seed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .distributions import LOG_SQRT_2PI, gaussian_entropy
from .fastpath import adam_step, norms
from .policies import GaussianActorCritic
from .seed_layers import (ALIGN, aligned_empty, apart_empty, backward_layers, logsumexp,
                          rowwise, run_layers, seed_layers)


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
        pool: dict = {}  # the backward's input-gradient buffers, shared by all the layers
        self.shared = seed_layers([list(e.shared_net) for e in ex], index, self.flat,
                                  self.grad, pool)
        self.pi = seed_layers([list(e.policy_net) + [p.action_net]
                               for e, p in zip(ex, policies)], index, self.flat, self.grad, pool)
        self.vf = seed_layers([list(e.value_net) + [p.value_net]
                               for e, p in zip(ex, policies)], index, self.flat, self.grad, pool)
        if self.gaussian:
            o, n = index[id(first.policy.log_std)], first.policy.log_std.numel()
            self.log_std, self.log_std_grad = self.flat[:, o:o + n], self.grad[:, o:o + n]
        self._saved = None
        self._noise_buffers: dict = {}

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
        noise, rows = self._noise(head.shape)
        for row, generator in zip(rows, generators):  # torch.randn / torch.rand's draws
            if self.gaussian:
                row.normal_(generator=generator)
            else:
                row.uniform_(generator=generator)
        if self.gaussian:  # a = mu + sigma * N(0, 1); log pi(a|s) as gaussian_log_prob
            mean, log_std = head, self.log_std.unsqueeze(1)
            actions = mean + rowwise(torch.exp, log_std) * noise
            log_stds = log_std.expand_as(mean)
            z = (actions - mean) * rowwise(torch.exp, -log_stds)
            return actions, (-0.5 * z * z - log_stds - LOG_SQRT_2PI).sum(-1)
        # Gumbel-max: argmax(z + Gumbel noise); log pi(a|s) = z_a - logsumexp(z)
        u = noise.clamp_(min=1e-20)  # -log(-log(u)) in place, each seed's slice as alone
        torch.log(u, out=u).neg_()
        actions = (head - torch.log(u, out=u)).argmax(-1)
        log_pi = head - logsumexp(head, self._noise_buffers).unsqueeze(-1)
        return actions, log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def _noise(self, shape: torch.Size) -> tuple[Tensor, list[Tensor]]:
        """The sampling noise's buffer for heads of ``shape`` (``apart_empty``, reused every
        step) and each seed's slice of it."""
        key = ("noise", shape)
        if key not in self._noise_buffers:
            noise = apart_empty(*shape)
            self._noise_buffers[key] = noise, list(noise)
        return self._noise_buffers[key]

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
        # the value net first: its activations, the last computed, are still in the cache
        has_trunk = len(self.shared) > 0
        d_vf = backward_layers(self.vf, saved_vf, grad_values.unsqueeze(-1), has_trunk)
        if has_trunk:  # a pool buffer, which the policy net's backward reuses
            d_vf = d_vf.clone()
        d_pi = backward_layers(self.pi, saved_pi, grad_head, has_trunk)
        if has_trunk:  # d_pi + d_vf: float addition commutes, the lone run's sum
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


def clip_fractions(ratios: list[Tensor], clip_range: float) -> Tensor:
    """Each minibatch's fraction of |r - 1| > clip_range, per seed: (K, B) ratios -> (M, K);
    one batched pass when the minibatches are of one size."""
    if len({ratio.shape for ratio in ratios}) == 1:
        return (torch.abs(torch.stack(ratios) - 1) > clip_range).float().mean(-1)
    return torch.stack([(torch.abs(ratio - 1) > clip_range).float().mean(-1)
                        for ratio in ratios])

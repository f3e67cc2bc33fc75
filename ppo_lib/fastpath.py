"""The update's fast paths for MLP policies (tests/test_fused.py, test_ppo.py).

``losses.ppo_loss_terms`` on ``CategoricalActorCritic.evaluate_actions``, then
``loss.backward()``, gradient clipping and Adam, is the reference: the form the lessons
show. On a CartPole minibatch each of its small tensor operations costs more in Python,
dispatch and autograd bookkeeping than in arithmetic. Two faster paths give the same numbers
(up to float32 rounding, tested):

1. ``categorical_ppo_loss``: the whole loss from the logits and the values as one
   ``autograd.Function`` whose gradient is written out by hand:

    log pi = log_softmax(z),  p = exp(log pi),  r = exp(log pi_a - log pi_old),  n = batch
    L = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)) + c1 mean((R - V)^2) - c2 mean(H)

    dL/dz = g (onehot(a) - p) + (c2 / n) p (log pi + H),   g = -(1 / n) A r [unclipped <= clipped]
    dL/dV = (2 c1 / n) (V - R)      (times [|V - V_old| <= eps_vf] with value clipping)

   where [unclipped <= clipped] is 1 where min() takes the unclipped term (the clipped term
   passes no gradient outside [1 - eps, 1 + eps]).

2. ``MlpGradientStep``: the whole gradient step of an MLP actor-critic without autograd
   (categorical, or Gaussian with the same clipped loss on its log-density).
   The backward pass of a layer y = act(x W^T + b) is three matrix expressions,

    d = dL/dy * act'(.),   dL/dW = d^T x,   dL/db = sum_batch d,   dL/dx = d W

   then the gradient is clipped to norm max_grad_norm and Adam steps, both on one flat
   buffer that holds every parameter (the parameters, their .grad and Adam's state are
   views into it, so state_dict, save and load see ordinary tensors).

   Every parameter's slice starts at a 64-byte boundary (``ALIGN`` floats), whatever address
   the allocator returns. The CPU matrix kernels round differently when an operand or output
   starts off such a boundary (a (B, 64) x (64, 1) value head at a 4-byte offset: another
   last bit of V(s) on an AMD EPYC), so views at odd offsets would train differently from the
   separate tensors of a fresh or reloaded model: a save / load / learn resume would not
   equal the run without the pause (tests/test_save_load.py, tests/test_fused.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from .distributions import LOG_SQRT_2PI, gaussian_entropy
from .losses import PPOLossTerms
from .policies import _FUNCTIONAL, CategoricalActorCritic, GaussianActorCritic


def _clipped_and_value(log_ratio, advantages, values, returns, clip_range, vf_coef,
                       old_values, clip_range_vf):
    """The clipped surrogate and the value loss, and their gradients with respect to
    log pi(a|s) and V -> policy, value, ratio, dL/dlog_pi (B,), dL/dV (B,)."""
    n = values.shape[0]
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_range, 1 + clip_range) * advantages
    takes_unclipped = unclipped <= clipped
    policy = -torch.where(takes_unclipped, unclipped, clipped).mean()
    predicted, vf_passes = values, None
    if clip_range_vf is not None:
        change = values - old_values
        predicted = old_values + change.clamp(-clip_range_vf, clip_range_vf)
        vf_passes = change.abs() <= clip_range_vf
    error = predicted - returns
    value = error.square().mean()
    g = torch.where(takes_unclipped, (-1.0 / n) * advantages * ratio, 0.0)
    grad_values = (2.0 * vf_coef / n) * error
    if vf_passes is not None:
        grad_values = grad_values * vf_passes
    return policy, value, ratio, g, grad_values


def _loss_and_gradients(logits, values, actions, old_log_probs, advantages, returns,
                        clip_range, vf_coef, ent_coef, old_values, clip_range_vf):
    """Categorical: -> total, policy, value, mean_entropy, log_ratio, ratio, dL/dlogits,
    dL/dvalues."""
    n = values.shape[0]
    log_pi = torch.log_softmax(logits, dim=-1)
    p = log_pi.exp()
    entropy = -(p * log_pi).sum(-1)
    index = actions.unsqueeze(-1)
    log_ratio = log_pi.gather(-1, index).squeeze(-1) - old_log_probs
    policy, value, ratio, g, grad_values = _clipped_and_value(
        log_ratio, advantages, values, returns, clip_range, vf_coef, old_values, clip_range_vf)
    mean_entropy = entropy.mean()
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


def _gaussian_loss_and_gradients(mean, log_std, values, actions, old_log_probs, advantages,
                                 returns, clip_range, vf_coef, ent_coef, old_values,
                                 clip_range_vf):
    """Diagonal Gaussian, sigma = exp(log_std) a parameter: -> total, policy, value,
    mean_entropy, log_ratio, ratio, dL/dmean, dL/dlog_std, dL/dvalues.

    With z = (a - mu) / sigma:  d log pi / d mu = z / sigma,  d log pi / d log sigma = z^2 - 1,
    and the entropy sum_j (1/2 + log sqrt(2 pi) + log sigma_j) has d H / d log sigma = 1.
    """
    n = values.shape[0]
    log_stds = log_std.expand_as(mean)
    inv_std = torch.exp(-log_stds)
    z = (actions - mean) * inv_std          # distributions.gaussian_log_prob, keeping z
    log_prob = (-0.5 * z * z - log_stds - LOG_SQRT_2PI).sum(-1)
    log_ratio = log_prob - old_log_probs
    policy, value, ratio, g, grad_values = _clipped_and_value(
        log_ratio, advantages, values, returns, clip_range, vf_coef, old_values, clip_range_vf)
    mean_entropy = gaussian_entropy(log_std).expand(n).mean()  # as evaluate_actions
    total = policy + vf_coef * value
    if ent_coef != 0:
        total = total - ent_coef * mean_entropy

    g = g.unsqueeze(-1)
    grad_mean = g * z * inv_std
    grad_log_std = (g * (z * z - 1)).sum(0)
    if ent_coef != 0:
        grad_log_std = grad_log_std - ent_coef
    return (total, policy, value, mean_entropy, log_ratio, ratio, grad_mean, grad_log_std,
            grad_values)


class _CategoricalPPOLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *args):
        *outputs, grad_logits, grad_values = _loss_and_gradients(*args)
        ctx.save_for_backward(grad_logits, grad_values)
        ctx.set_materialize_grads(False)  # the logged outputs get no gradient: no zeros
        ctx.mark_non_differentiable(*outputs[1:])
        return tuple(outputs)

    @staticmethod
    def backward(ctx, grad_total, *_unused):
        grad_logits, grad_values = ctx.saved_tensors
        return (grad_total * grad_logits, grad_total * grad_values,
                None, None, None, None, None, None, None, None, None)


def categorical_ppo_loss(logits: Tensor, values: Tensor, actions: Tensor, old_log_probs: Tensor,
                         advantages: Tensor, returns: Tensor, clip_range: float,
                         vf_coef: float = 0.5, ent_coef: float = 0.0,
                         old_values: Tensor | None = None, clip_range_vf: float | None = None,
                         ) -> tuple[Tensor, PPOLossTerms, Tensor, Tensor]:
    """The PPO loss of a categorical policy from its ``logits`` (B, A) and ``values`` (B,)
    -> (loss, terms, log_ratio, ratio), equal to ``ppo_loss_terms`` on ``evaluate_actions``.

    Only ``loss`` carries a gradient (to ``logits`` and ``values``); the terms are for
    logging. Advantages are used as given (normalise them first, as the trainer does).
    """
    total, policy, value, entropy, log_ratio, ratio = _CategoricalPPOLoss.apply(
        logits, values, actions.long().reshape(-1), old_log_probs, advantages, returns,
        float(clip_range), float(vf_coef), float(ent_coef), old_values,
        None if clip_range_vf is None else float(clip_range_vf))
    return total, PPOLossTerms(total, policy, value, entropy), log_ratio, ratio


# --- 2. the whole gradient step ---------------------------------------------------------
ALIGN = 16  # floats (64 bytes, a cache line and an AVX-512 register): each slice's start


def _raw_buffer(numel: int) -> Tensor:
    """A zeroed float32 buffer; the tests replace it to place buffers at odd addresses."""
    return torch.zeros(numel)


def _aligned_zeros(numel: int) -> Tensor:
    """``numel`` zeros starting at a 64-byte boundary, wherever ``_raw_buffer`` puts its
    memory (torch's allocator aligns to 64 bytes today; this does not rely on it)."""
    raw = _raw_buffer(numel + ALIGN)
    shift = (-raw.data_ptr() % (4 * ALIGN)) // raw.element_size()
    return raw[shift:shift + numel]


def _layout(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of slices of these sizes, each rounded up to ALIGN elements -> (offsets,
    total). The padding holds zeros (no gradient, no Adam update: they stay 0)."""
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // ALIGN) * ALIGN
    return offsets, total


def _relu_backward(grad: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(grad, out, 0)


# activation -> its backward, from the gradient at its output and the output itself (the
# forward functions are policies._FUNCTIONAL, which run_mlp uses)
_BACKWARD = {nn.Tanh: torch.ops.aten.tanh_backward, nn.ReLU: _relu_backward}


def _layers(modules: list[nn.Module]) -> list[tuple[nn.Linear, object, object]] | None:
    """An ``mlp()``'s modules as [(linear, activation, activation_backward)], None if they
    are anything else (another layer or activation, a Linear without bias, a hook)."""
    layers = []
    for i, module in enumerate(modules):
        if module._forward_hooks or module._forward_pre_hooks:
            return None
        if type(module) is nn.Linear and module.bias is not None:
            layers.append((module, None, None))
        elif type(module) in _BACKWARD and layers and layers[-1][1] is None \
                and type(modules[i - 1]) is nn.Linear:
            layers[-1] = (layers[-1][0], _FUNCTIONAL[type(module)], _BACKWARD[type(module)])
        else:
            return None
    return layers


class MlpGradientStep:
    """The PPO gradient step of a ``CategoricalActorCritic`` or ``GaussianActorCritic`` MLP
    written out: ``loss`` runs the network forward (keeping each layer's input and output)
    and the loss with its gradient at the heads; ``step`` then runs the backward pass layer
    by layer into a flat gradient buffer, clips its norm and takes one Adam step on the flat
    parameters, as ``LeanAdam`` would.

    Equal to the reference path (``evaluate_actions``, ``ppo_loss_terms``, ``backward``,
    ``clip_grad_norm``, Adam) up to float32 rounding: tests/test_fused.py trains both.
    ``MlpGradientStep.create(policy, optimizer)`` returns None for anything else (other
    layers, weight decay, several parameter groups), and ``bind`` returns False while a
    parameter is frozen (``requires_grad=False``) or a module has a forward hook: the
    trainer then uses autograd, which honours both.
    """

    @classmethod
    def create(cls, policy: nn.Module, optimizer: torch.optim.Optimizer):
        if (type(policy) not in (CategoricalActorCritic, GaussianActorCritic)
                or len(optimizer.param_groups) != 1):
            return None
        group, params = optimizer.param_groups[0], list(policy.parameters())
        if (group["weight_decay"] != 0 or group["amsgrad"] or group["maximize"]
                or len(group["params"]) != len(params)
                or any(a is not b for a, b in zip(group["params"], params))):
            return None
        ex = policy.mlp_extractor
        nets = [_layers(list(net)) for net in (ex.shared_net, ex.policy_net, ex.value_net,
                                               [policy.action_net], [policy.value_net])]
        if any(layers is None for layers in nets):
            return None
        step = cls(policy, optimizer, *nets)
        return None if step._hooked() else step

    def __init__(self, policy, optimizer, shared, pi, vf, action_head, value_head):
        self.policy, self.optimizer = policy, optimizer
        ex = policy.mlp_extractor  # every module whose hooks autograd's path would run
        self._modules = [ex, ex.shared_net, ex.policy_net, ex.value_net, *ex.shared_net,
                         *ex.policy_net, *ex.value_net, policy.action_net, policy.value_net]
        self.shared, self.pi, self.vf = shared, pi + action_head, vf + value_head
        self.gaussian = hasattr(policy, "log_std")  # else categorical
        self.params = list(policy.parameters())
        self._flat = None
        self._saved = None

    # -- the flat buffers -------------------------------------------------------------
    def bind(self) -> bool:
        """Make the parameters, their gradients and Adam's state views into flat buffers
        (again, if something replaced them since: ``load_state_dict`` of the optimizer,
        the reference path's ``p.grad = None``). False if a parameter is frozen or Adam's
        step counts differ."""
        if not all(p.requires_grad for p in self.params) or self._hooked():
            return False
        if self._flat is not None and self._is_bound():
            return True
        params, state = self.params, self.optimizer.state
        offsets, total = _layout([p.numel() for p in params])

        def views(buffer):
            return [buffer[o:o + p.numel()].view_as(p) for o, p in zip(offsets, params)]

        def flat(tensors):  # a fresh aligned buffer holding copies of ``tensors``
            buffer = _aligned_zeros(total)
            for view, t in zip(views(buffer), tensors):
                view.copy_(t.detach())
            return buffer

        with torch.no_grad():
            self._flat = flat(params)
            self._grad = _aligned_zeros(total)
            started = all(p in state and "exp_avg" in state[p] for p in params)
            if started:
                self._steps = torch.stack([state[p]["step"].float() for p in params])
                if not bool((self._steps == self._steps[0]).all()):
                    self._flat = None
                    return False
                self._exp_avg = flat([state[p]["exp_avg"] for p in params])
                self._exp_avg_sq = flat([state[p]["exp_avg_sq"] for p in params])
            else:
                self._steps = torch.zeros(len(params))
                self._exp_avg = _aligned_zeros(total)
                self._exp_avg_sq = _aligned_zeros(total)
            # one step count per parameter, as torch keeps them, advanced by one add_
            steps = list(self._steps.unbind())
            for p, value, grad, avg, avg_sq, step in zip(
                    params, views(self._flat), views(self._grad), views(self._exp_avg),
                    views(self._exp_avg_sq), steps):
                p.data, p.grad = value, grad
                state[p] = {"step": step, "exp_avg": avg, "exp_avg_sq": avg_sq}
        self._views = [(p.grad, state[p]["exp_avg"], state[p]["exp_avg_sq"], state[p]["step"])
                       for p in params]
        self._ptrs = [p.data_ptr() for p in params]
        if hasattr(self.optimizer, "_lists"):
            self.optimizer._lists = None  # LeanAdam's cached state lists are stale now
        return True

    def _hooked(self) -> bool:
        """A forward hook anywhere the reference path would call a module (it would run)."""
        return bool(_global_forward_hooks or _global_forward_pre_hooks) or any(
            m._forward_hooks or m._forward_pre_hooks for m in self._modules)

    def _is_bound(self) -> bool:
        state = self.optimizer.state
        for p, ptr, (grad, avg, avg_sq, step) in zip(self.params, self._ptrs, self._views):
            s = state.get(p)
            if (p.data_ptr() != ptr or p.grad is not grad or s is None
                    or s["exp_avg"] is not avg or s["exp_avg_sq"] is not avg_sq
                    or s["step"] is not step):
                return False
        return True

    # -- forward and loss -------------------------------------------------------------
    @staticmethod
    def _forward(layers, x, saved):
        for linear, act, _ in layers:
            y = torch.addmm(linear.bias, x, linear.weight.t())
            if act is not None:
                y = act(y)
            saved.append((x, y))
            x = y
        return x

    def loss(self, obs, actions, old_log_probs, advantages, returns, clip_range, vf_coef,
             ent_coef, old_values, clip_range_vf):
        """-> (loss, terms, log_ratio, ratio) as ``categorical_ppo_loss`` (or, Gaussian,
        as ``ppo_loss_terms``), without a graph."""
        args = (old_log_probs, advantages, returns, float(clip_range), float(vf_coef),
                float(ent_coef), old_values,
                None if clip_range_vf is None else float(clip_range_vf))
        with torch.no_grad():
            saved_shared, saved_pi, saved_vf = [], [], []
            trunk = self._forward(self.shared, obs.float(), saved_shared)
            head = self._forward(self.pi, trunk, saved_pi)  # logits, or the Gaussian's mean
            values = self._forward(self.vf, trunk, saved_vf).squeeze(-1)
            if self.gaussian:
                (total, policy, value, entropy, log_ratio, ratio, grad_head, grad_log_std,
                 grad_values) = _gaussian_loss_and_gradients(
                    head, self.policy.log_std, values, actions, *args)
            else:
                total, policy, value, entropy, log_ratio, ratio, grad_head, grad_values = \
                    _loss_and_gradients(head, values, actions.long().reshape(-1), *args)
                grad_log_std = None
        self._saved = (saved_shared, saved_pi, saved_vf, grad_head, grad_log_std, grad_values)
        return total, PPOLossTerms(total, policy, value, entropy), log_ratio, ratio

    # -- backward, clip, Adam ---------------------------------------------------------
    @staticmethod
    def _backward(layers, saved, grad, need_input_grad):
        for i in range(len(layers) - 1, -1, -1):
            linear, _, act_backward = layers[i]
            x, y = saved[i]
            if act_backward is not None:
                grad = act_backward(grad, y)
            torch.mm(grad.t(), x, out=linear.weight.grad)       # dL/dW = d^T x
            torch.sum(grad, 0, out=linear.bias.grad)            # dL/db = sum_batch d
            if i > 0 or need_input_grad:
                grad = grad.mm(linear.weight)                   # dL/dx = d W
        return grad

    def step(self, max_grad_norm: float) -> None:
        """Backward pass of the last ``loss()``, gradient clipping, one Adam step."""
        saved_shared, saved_pi, saved_vf, grad_head, grad_log_std, grad_values = self._saved
        self._saved = None
        group = self.optimizer.param_groups[0]
        with torch.no_grad():
            if grad_log_std is not None:
                self.policy.log_std.grad.copy_(grad_log_std)
            has_trunk = len(self.shared) > 0
            d_pi = self._backward(self.pi, saved_pi, grad_head, has_trunk)
            d_vf = self._backward(self.vf, saved_vf, grad_values.unsqueeze(-1), has_trunk)
            if has_trunk:
                self._backward(self.shared, saved_shared, d_pi + d_vf, False)
            # torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (||g|| + 1e-6))
            norm = torch.linalg.vector_norm(self._grad)
            self._grad.mul_(torch.clamp(max_grad_norm / (norm + 1e-6), max=1.0))
            self._steps.add_(1)
            beta1, beta2 = group["betas"]
            torch._fused_adam_([self._flat], [self._grad], [self._exp_avg],
                               [self._exp_avg_sq], [], [self._views[0][3]], lr=group["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"],
                               amsgrad=False, maximize=False)

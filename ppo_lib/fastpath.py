"""The update's fast path for MLP policies: the same step as the reference, less overhead
(tests/test_fastpath.py). The only module that uses torch's internals.

The reference step is lesson 05's ``PPO.train`` (``evaluate_actions``, ``ppo_loss_terms``,
``loss.backward()``, clipping, Adam), where each small tensor operation costs more in Python,
dispatch and autograd bookkeeping than in arithmetic. ``fast_gradient_step(policy, optimizer)``
returns the step written out (``MlpGradientStep``), or None (the reference runs): the forward
pass keeping each layer's input and output, the loss and its gradient at the heads
(``ppo_lib.gradients``), the backward pass of each layer y = act(x W^T + b),

    d = dL/dy * act'(.),   dL/dW = d^T x,   dL/db = sum_batch d,   dL/dx = d W

Clipping and Adam then run on one flat buffer of every parameter (the parameters, their .grad
and Adam's state are views into it: state_dict, save and load see ordinary tensors), each
slice from a 64-byte boundary (``ppo_lib.flat_buffer``): the CPU matrix kernels round otherwise
for operands off one (a value head at a 4-byte offset: another last bit of V(s)), and a save /
load / learn resume must equal the run without the pause (tests/test_save_load.py).

Also here: ``LeanAdam`` (Adam calling torch's fused kernel), ``adam_step``, ``norms``,
``clip_grad_norm``, ``clip_scale``, ``tanh``, ``hook_check``, ``tree_hooked``, ``run_mlp``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from .flat_buffer import aligned_zeros, flat_copy, layout, views
from .gradients import categorical_loss_and_gradients, gaussian_loss_and_gradients
from .losses import PPOLossTerms


def fast_gradient_step(policy: nn.Module, optimizer: torch.optim.Optimizer,
                       step: MlpGradientStep | None = None) -> MlpGradientStep | None:
    """The written-out gradient step for ``policy`` trained by ``optimizer``, ready to use
    (its flat buffers bound), or None: the reference path must run. None for anything but a
    ``CategoricalActorCritic`` / ``GaussianActorCritic`` MLP of Linear, Tanh and ReLU layers
    trained by ``LeanAdam`` (one parameter group, no weight decay), and while a parameter is
    frozen or a forward hook would run (autograd's path honours both). ``step``: the one
    this returned last time, reused while it fits."""
    if type(optimizer) is not LeanAdam:
        return None
    if step is None or step.policy is not policy or step.optimizer is not optimizer:
        step = MlpGradientStep.create(policy, optimizer)
    return step if step is not None and step.bind() else None


# --- calling an mlp() without nn.Module.__call__ ------------------------------------------
def _relu_backward(grad: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(grad, out, 0)


def tanh(x: Tensor) -> Tensor:
    """``torch.tanh(x)``; without autograd numpy's ``np.tanh`` (on AVX-512 a tenth of torch's
    float32 time; both within 1 ulp, a third of the last bits differ). Where autograd records
    (the reference path, TRPO's second derivatives) it is torch's."""
    if torch.is_grad_enabled() and x.requires_grad or x.dtype is not torch.float32:
        return torch.tanh(x)
    out = torch.empty(x.shape, dtype=torch.float32)
    np.tanh(x.numpy(), out=out.numpy())
    return out


def tanh_(x: Tensor) -> Tensor:
    """``tanh(x)`` written into ``x`` (a float32 tensor outside autograd, e.g. a layer's fresh
    output): numpy's numbers, without a new tensor -> x."""
    array = x.numpy()
    np.tanh(array, out=array)
    return x


# activation -> (its function, its backward from the gradient at its output and the output)
ACTIVATIONS = {nn.Tanh: (tanh, torch.ops.aten.tanh_backward),
               nn.ReLU: (torch.relu, _relu_backward)}  # BACKWARD_INTO: written into a tensor
BACKWARD_INTO = {torch.ops.aten.tanh_backward: torch.ops.aten.tanh_backward.grad_input}


def has_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` runs forward hooks, its own or global ones."""
    return bool(_global_forward_hooks or _global_forward_pre_hooks
                or module._forward_hooks or module._forward_pre_hooks)


def tree_hooked(module: nn.Module) -> bool:
    """``any(has_hooks(m) for m in module.modules())`` (whether calling ``module`` may run a
    forward hook) in a fifth of the time: ``PPO.predict`` asks on every call."""
    todo = [module]
    while todo:
        m = todo.pop()
        if m._forward_hooks or m._forward_pre_hooks:
            return True
        todo += [child for child in m._modules.values() if child is not None]
    return bool(_global_forward_hooks or _global_forward_pre_hooks)


def hook_check(modules: list[nn.Module]):
    """``lambda: any(has_hooks(m) for m in modules)``, cheaper per call (the rollout asks every
    vector step): the hook dicts gathered once, their truthiness read (later hooks count)."""
    dicts = [d for m in modules for d in (m._forward_hooks, m._forward_pre_hooks)]
    dicts += [_global_forward_hooks, _global_forward_pre_hooks]
    return lambda: any(dicts)


def run_mlp(net: nn.Sequential, x: Tensor) -> Tensor:
    """``net(x)`` for an ``mlp()``, each Linear and Tanh / ReLU applied as the function it is
    (the same operations and numbers) without ``nn.Module.__call__``, whose bookkeeping costs
    more than a 64-unit layer's arithmetic. Another kind of layer, or a hooked one, is called."""
    hooked = bool(_global_forward_hooks or _global_forward_pre_hooks)
    for layer in net:
        kind = type(layer)
        if hooked or layer._forward_hooks or layer._forward_pre_hooks:
            x = layer(x)
        elif kind is nn.Linear:
            x = F.linear(x, layer.weight, layer.bias)
        elif kind in ACTIVATIONS:
            x = ACTIVATIONS[kind][0](x)
        else:
            x = layer(x)
    return x


# --- Adam and gradient clipping with less overhead ----------------------------------------
class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (same state_dict, same numbers) whose ``step`` calls the fused
    CPU kernel directly. A PPO update on a tiny MLP is thousands of small steps, where
    ``Optimizer.step``'s bookkeeping costs more than the arithmetic."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps, fused=True)
        self._lists = None

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            return super().step(closure)
        self.lean_step()
        return None

    @torch.no_grad()
    def lean_step(self) -> None:
        """``step()`` without the profiling wrapper torch puts around ``Optimizer.step``."""
        if self._lists is None or any(p.grad is None for p in self._lists[0]):
            self._lists = None
            super().step()  # creates the state on the first call
            self._lists = self._state_lists()
            return
        group = self.param_groups[0]
        params, exp_avgs, exp_avg_sqs, steps = self._lists
        grads = [p.grad for p in params]
        torch._foreach_add_(steps, 1)
        adam_step(params, grads, exp_avgs, exp_avg_sqs, steps, group)

    def _state_lists(self):
        if len(self.param_groups) != 1 or self.param_groups[0]["weight_decay"] != 0:
            return None
        params = [p for p in self.param_groups[0]["params"] if p in self.state]
        if len(params) != len(self.param_groups[0]["params"]):
            return None
        return (params, [self.state[p]["exp_avg"] for p in params],
                [self.state[p]["exp_avg_sq"] for p in params],
                [self.state[p]["step"] for p in params])

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._lists = None

    def __setstate__(self, state):  # copy.deepcopy, pickle
        super().__setstate__(state)
        self._lists = None


def adam_step(params, grads, exp_avgs, exp_avg_sqs, steps, group: dict) -> None:
    """One Adam step of torch's fused CPU kernel on lists of tensors (``steps`` already
    advanced), with ``group``'s lr, betas, eps and weight decay (no amsgrad, no maximize)."""
    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"],
                       beta1=group["betas"][0], beta2=group["betas"][1],
                       weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
                       maximize=False)


def norms(tensors: list[Tensor]) -> Tensor:
    """The 2-norm of each tensor, stacked (torch's foreach norm: one call for all)."""
    return torch.stack(torch._foreach_norm(tensors))


def clip_scale(norm: float, max_norm: float) -> float:
    """min(1, max_norm / (norm + 1e-6)), the factor ``clip_grad_norm_`` scales gradients by,
    with the bits of its float32 tensor arithmetic (x + 1e-6, then 1 / x times max_norm, as
    ``max_norm / tensor`` computes) in numpy float32 scalars: four tensor calls fewer."""
    x = np.float32(norm) + np.float32(1e-6)
    return float(min(np.float32(max_norm) * (np.float32(1) / x), np.float32(1)))


def clip_grad_norm(params: list[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` in four tensor calls: scale every gradient by
    min(1, max_norm / (||g||_2 + 1e-6)) (``clip_scale``), ||g|| the norm of all gradients
    together."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(norms(grads)).item()
    torch._foreach_mul_(grads, clip_scale(total, max_norm))


# --- the whole gradient step ------------------------------------------------------------
def mlp_layers(modules: list[nn.Module],
               ) -> list[tuple[Tensor, Tensor, object, object]] | None:
    """An ``mlp()``'s modules as [(weight, bias, activation, activation_backward)], None for
    anything else (another layer or activation, a Linear without bias, a hook)."""
    layers = []
    for i, module in enumerate(modules):
        if module._forward_hooks or module._forward_pre_hooks:
            return None
        if type(module) is nn.Linear and module.bias is not None:
            layers.append((module.weight, module.bias, None, None))
        elif type(module) in ACTIVATIONS and layers and layers[-1][2] is None \
                and type(modules[i - 1]) is nn.Linear:
            layers[-1] = (*layers[-1][:2], *ACTIVATIONS[type(module)])
        else:
            return None
    return layers


def forward_layers(layers, x: Tensor, saved: list | None = None) -> Tensor:
    """``mlp_layers``' layers applied to x without autograd, y = act(x W^T + b) (``F.linear``;
    tanh written into y), each layer's (input, output) appended to ``saved``."""
    for weight, bias, act, _ in layers:
        y = F.linear(x, weight, bias)
        if act is tanh and y.dtype is torch.float32:
            tanh_(y)
        elif act is not None:
            y = act(y)
        if saved is not None:
            saved.append((x, y))
        x = y
    return x


def _backward(layers, saved: list, grad: Tensor, need_input_grad: bool) -> Tensor:
    """From dL/d(output) of the layers, their weights' and biases' .grad (written in
    place) -> dL/d(input) (only when ``need_input_grad`` or there are layers below)."""
    for i in range(len(layers) - 1, -1, -1):
        weight, bias, _, act_backward = layers[i]
        x, y = saved[i]
        if act_backward is not None:
            grad = act_backward(grad, y)
        torch.mm(grad.t(), x, out=weight.grad)              # dL/dW = d^T x
        torch.sum(grad, 0, out=bias.grad)                   # dL/db = sum_batch d
        if i > 0 or need_input_grad:
            grad = grad.mm(weight)                          # dL/dx = d W
    return grad


class MlpGradientStep:
    """The PPO gradient step of a ``CategoricalActorCritic`` or ``GaussianActorCritic`` MLP
    written out: ``loss`` (forward, keeping each layer's input and output; the loss and its
    gradient at the heads), then ``step`` (backward layer by layer into a flat gradient
    buffer, norm clipping, one Adam step on the flat parameters, as ``LeanAdam`` would).
    Equal to the reference path up to float32 rounding (tests/test_fastpath.py trains both).
    ``create`` returns None for other layers, weight decay or several parameter groups, and
    ``bind`` False while a parameter is frozen or a module has a forward hook: autograd then
    runs, which honours both. Use it through ``fast_gradient_step``."""

    @classmethod
    def create(cls, policy: nn.Module, optimizer: torch.optim.Optimizer):
        from .policies import CategoricalActorCritic, GaussianActorCritic  # (imports run_mlp)

        if (type(policy) not in (CategoricalActorCritic, GaussianActorCritic)
                or len(optimizer.param_groups) != 1):
            return None
        group, params = optimizer.param_groups[0], list(policy.parameters())
        if (group["weight_decay"] != 0 or group["amsgrad"] or group["maximize"]
                or len(group["params"]) != len(params)
                or any(a is not b for a, b in zip(group["params"], params))):
            return None
        ex = policy.mlp_extractor
        nets = [mlp_layers(list(net)) for net in (ex.shared_net, ex.policy_net, ex.value_net,
                                                  [policy.action_net], [policy.value_net])]
        if any(layers is None for layers in nets):
            return None
        step = cls(policy, optimizer, *nets)
        return None if step.hooked() else step

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
        """Make the parameters, their gradients and Adam's state views into flat buffers (again
        if something replaced them: the optimizer's ``load_state_dict``, ``p.grad = None``).
        False if a parameter is frozen, a forward hook would run, a method this stands in for
        is replaced on the instance (``policy.heads = f``), or Adam's step counts differ."""
        if (not all(p.requires_grad for p in self.params) or self.hooked()
                or vars(self.policy).keys() & {"evaluate_actions", "heads", "latents"}):
            return False
        if self._flat is not None and self.is_bound():
            return True
        params, state = self.params, self.optimizer.state
        offsets, total = layout([p.numel() for p in params])
        with torch.no_grad():
            self._flat = flat_copy(params, offsets, total)
            self._grad = aligned_zeros(total)
            started = all(p in state and "exp_avg" in state[p] for p in params)
            if started:
                self._steps = torch.stack([state[p]["step"].float() for p in params])
                if not bool((self._steps == self._steps[0]).all()):
                    self._flat = None
                    return False
                self._exp_avg = flat_copy([state[p]["exp_avg"] for p in params], offsets,
                                          total)
                self._exp_avg_sq = flat_copy([state[p]["exp_avg_sq"] for p in params],
                                             offsets, total)
            else:
                self._steps = torch.zeros(len(params))
                self._exp_avg = aligned_zeros(total)
                self._exp_avg_sq = aligned_zeros(total)
            # one step count per parameter, as torch keeps them, advanced by one add_
            steps = list(self._steps.unbind())
            for p, value, grad, avg, avg_sq, step in zip(
                    params, views(self._flat, offsets, params),
                    views(self._grad, offsets, params), views(self._exp_avg, offsets, params),
                    views(self._exp_avg_sq, offsets, params), steps):
                p.data, p.grad = value, grad
                state[p] = {"step": step, "exp_avg": avg, "exp_avg_sq": avg_sq}
        self._views = [(p.grad, state[p]["exp_avg"], state[p]["exp_avg_sq"], state[p]["step"])
                       for p in params]
        self._ptrs = [p.data_ptr() for p in params]
        if isinstance(self.optimizer, LeanAdam):
            self.optimizer._lists = None  # its cached state lists are stale now
        return True

    def hooked(self) -> bool:
        """A forward hook anywhere the reference path would call a module (it would run)."""
        return any(has_hooks(m) for m in self._modules)

    def is_bound(self) -> bool:
        """Whether the parameters, their .grad and Adam's state are still the flat views."""
        state = self.optimizer.state
        for p, ptr, (grad, avg, avg_sq, step) in zip(self.params, self._ptrs, self._views):
            s = state.get(p)
            if (p.data_ptr() != ptr or p.grad is not grad or s is None
                    or s["exp_avg"] is not avg or s["exp_avg_sq"] is not avg_sq
                    or s["step"] is not step):
                return False
        return True

    # -- forward and loss -------------------------------------------------------------
    def loss(self, batch, advantages: Tensor, clip_range: float, vf_coef: float,
             ent_coef: float, clip_range_vf: float | None = None):
        """The loss of a minibatch (``ppo_lib.rollout.Minibatch``) with its (normalised)
        ``advantages`` -> (loss, terms, log_ratio, ratio), as ``PPO.minibatch_loss``,
        without a graph: ``step`` follows."""
        args = (batch.old_log_probs, advantages, batch.returns, float(clip_range),
                float(vf_coef), float(ent_coef), batch.old_values,
                None if clip_range_vf is None else float(clip_range_vf))
        with torch.inference_mode():  # no_grad's numbers, less dispatch per call
            saved_shared, saved_pi, saved_vf = [], [], []
            trunk = forward_layers(self.shared, batch.obs.float(), saved_shared)
            head = forward_layers(self.pi, trunk, saved_pi)  # logits, or the Gaussian's mean
            values = forward_layers(self.vf, trunk, saved_vf).squeeze(-1)
            if self.gaussian:
                (total, policy, value, entropy, log_ratio, ratio, grad_head, grad_log_std,
                 grad_values) = gaussian_loss_and_gradients(
                    head, self.policy.log_std, values, batch.actions, *args)
            else:
                total, policy, value, entropy, log_ratio, ratio, grad_head, grad_values = \
                    categorical_loss_and_gradients(head, values, batch.actions.long().reshape(-1),
                                                   *args)
                grad_log_std = None
        self._saved = (saved_shared, saved_pi, saved_vf, grad_head, grad_log_std, grad_values)
        return total, PPOLossTerms(total, policy, value, entropy), log_ratio, ratio

    # -- backward, clip, Adam ---------------------------------------------------------
    def step(self, max_grad_norm: float) -> None:
        """Backward pass of the last ``loss()``, gradient clipping, one Adam step."""
        saved_shared, saved_pi, saved_vf, grad_head, grad_log_std, grad_values = self._saved
        self._saved = None
        group = self.optimizer.param_groups[0]
        with torch.inference_mode():  # writes into the flat buffers, made outside it
            if grad_log_std is not None:
                self.policy.log_std.grad.copy_(grad_log_std)
            has_trunk = len(self.shared) > 0
            d_pi = _backward(self.pi, saved_pi, grad_head, has_trunk)
            d_vf = _backward(self.vf, saved_vf, grad_values.unsqueeze(-1), has_trunk)
            if has_trunk:
                _backward(self.shared, saved_shared, d_pi + d_vf, False)
            norm = torch.linalg.vector_norm(self._grad).item()
            self._grad.mul_(clip_scale(norm, max_grad_norm))  # clip_grad_norm_
            self._steps.add_(1)
            adam_step([self._flat], [self._grad], [self._exp_avg], [self._exp_avg_sq],
                      [self._views[0][3]], group)  # weight decay 0: create() checked

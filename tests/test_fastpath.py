"""ppo_lib.fastpath and ppo_lib.gradients: the written-out gradient step equals the reference
(autograd on categorical_log_prob_entropy / evaluate_actions + ppo_loss_terms, clipping,
Adam): first the loss and its hand-written gradient at the heads, then whole training runs."""

import math

import pytest
import torch

from ppo_lib.distributions import categorical_log_prob_entropy
from ppo_lib.gradients import categorical_loss_and_gradients
from ppo_lib.kl import approx_kl
from ppo_lib.losses import ppo_loss_terms


def batch(n=64, actions=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, actions, generator=g) * 2
    values = torch.randn(n, generator=g)
    acts = torch.randint(0, actions, (n,), generator=g)
    with torch.no_grad():
        log_probs, _ = categorical_log_prob_entropy(logits, acts)
    old_log_probs = log_probs + 0.4 * torch.randn(n, generator=g)   # ratios far from 1
    advantages = torch.randn(n, generator=g)
    advantages[:4] = 0.0                                              # A = 0 too
    returns = torch.randn(n, generator=g)
    old_values = values + 0.3 * torch.randn(n, generator=g)
    return logits, values, acts, old_log_probs, advantages, returns, old_values


def reference(logits, values, acts, old_log_probs, advantages, returns, clip_range, vf_coef,
              ent_coef, old_values, clip_range_vf):
    """-> loss, (policy, value, entropy), log_ratio, ratio, dL/dlogits, dL/dvalues by autograd."""
    logits, values = logits.clone().requires_grad_(True), values.clone().requires_grad_(True)
    log_probs, entropy = categorical_log_prob_entropy(logits, acts)
    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    terms = ppo_loss_terms(ratio, advantages, values, returns, entropy, clip_range, vf_coef,
                           ent_coef, old_values, clip_range_vf)
    terms.total.backward()
    return (terms.total.detach(), (terms.policy, terms.value, terms.entropy),
            log_ratio.detach(), ratio.detach(), logits.grad, values.grad)


def written_out(logits, values, acts, old_log_probs, advantages, returns, clip_range, vf_coef,
                ent_coef, old_values, clip_range_vf):
    """The same from the written-out step's loss and gradient at the heads."""
    total, policy, value, entropy, log_ratio, ratio, grad_logits, grad_values = \
        categorical_loss_and_gradients(logits, values, acts, old_log_probs, advantages,
                                       returns, clip_range, vf_coef, ent_coef, old_values,
                                       clip_range_vf)
    return total, (policy, value, entropy), log_ratio, ratio, grad_logits, grad_values


@pytest.mark.parametrize("clip_range_vf", [None, 0.1])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
@pytest.mark.parametrize("clip_range", [0.1, 0.2, 0.5])
def test_written_out_loss_and_gradients_equal_the_reference(clip_range, ent_coef,
                                                            clip_range_vf):
    logits, values, acts, old_lp, adv, ret, old_v = batch()
    (ref_loss, ref_terms, ref_lr, ref_r, ref_gz, ref_gv), (loss, terms, lr, r, gz, gv) = (
        fn(logits, values, acts, old_lp, adv, ret, clip_range, 0.7, ent_coef, old_v,
           clip_range_vf) for fn in (reference, written_out))
    clipped = (ref_r - 1).abs() > clip_range
    assert 0.05 < clipped.float().mean() < 0.95, "both clipped and unclipped samples"
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
    for term, ref_term in zip(terms, ref_terms):
        torch.testing.assert_close(term, ref_term.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lr, ref_lr, rtol=0, atol=0)
    torch.testing.assert_close(r, ref_r, rtol=0, atol=0)
    torch.testing.assert_close(gz, ref_gz, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gv, ref_gv, rtol=1e-5, atol=1e-7)
    assert gz.abs().sum() > 0 and gv.abs().sum() > 0
    assert not lr.requires_grad and approx_kl(lr) >= 0


def test_written_out_gradient_at_the_clip_boundaries():
    """Ratios exactly at 1 - eps, 1 and 1 + eps: clamp passes the gradient there (the
    boundary is inside), and min() of two equal terms gives the full A r in total."""
    eps = 0.25  # 1 +- 0.25 are exact in float32
    logits = torch.zeros(6, 2)
    acts = torch.zeros(6, dtype=torch.long)
    ratios = torch.tensor([1 - eps, 1.0, 1 + eps, 1 - eps, 1.0, 1 + eps])
    old_lp = torch.log_softmax(logits, -1)[:, 0] - torch.log(ratios)
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    values, ret = torch.zeros(6), torch.zeros(6)
    grads = [fn(logits, values, acts, old_lp, adv, ret, eps, 0.5, 0.0, None, None)[4]
             for fn in (reference, written_out)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-8)


# --- MlpGradientStep: the whole gradient step written out ------------------------------
import copy  # noqa: E402

import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from ppo_lib.callbacks import BaseCallback  # noqa: E402
from ppo_lib.fastpath import fast_gradient_step  # noqa: E402
from ppo_lib.ppo import PPO  # noqa: E402


def _train(fast: bool, updates: int = 4, switch_at: int | None = None,
           env: str = "CartPole-v1", **kw):
    """PPO on ``env``; fast=False (model.fast_path) is the reference path (autograd on
    ppo_loss_terms).
    With ``switch_at``, the path flips after that many updates."""
    args = dict(n_envs=2, n_steps=32, batch_size=16, n_epochs=3, seed=3)
    args.update(kw)
    model = PPO("MlpPolicy", env, **args)
    model.fast_path = fast
    per_update = args["n_steps"] * args["n_envs"]
    if switch_at is None:
        model.learn(updates * per_update)
    else:
        model.learn(switch_at * per_update)
        model.fast_path = not fast
        model.learn((updates - switch_at) * per_update, reset_num_timesteps=False)
    return model


def _assert_same_training(a, b, rtol=1e-5, atol=1e-6):
    for key in ("train/loss", "train/policy_gradient_loss", "train/value_loss",
                "train/entropy_loss", "train/approx_kl", "train/clip_fraction"):
        np.testing.assert_allclose(a.logger.get(key), b.logger.get(key), rtol=rtol,
                                   atol=atol, err_msg=key)
    for (name, pa), pb in zip(a.policy.named_parameters(), b.policy.parameters()):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("kw", [
    {},
    dict(ent_coef=0.01, clip_range_vf=0.2),
    dict(policy_kwargs=dict(net_arch=dict(shared=[32], pi=[16], vf=[24]),
                            activation_fn=nn.ReLU)),
    dict(policy_kwargs=dict(net_arch=dict(pi=[], vf=[8]))),
    dict(target_kl=0.002, learning_rate=3e-3),
    dict(env="Pendulum-v1"),
    dict(env="Pendulum-v1", ent_coef=0.01, clip_range_vf=0.2, learning_rate=3e-3,
         policy_kwargs=dict(net_arch=dict(shared=[16], pi=[8], vf=[8]), log_std_init=-0.5)),
])
def test_written_out_step_trains_as_the_reference(kw):
    reference, fast = _train(False, **kw), _train(True, **kw)
    assert fast._gradient_step is not None and reference._gradient_step is None
    _assert_same_training(fast, reference)
    # Adam's state stays torch's: one step count per parameter, moments of its shape
    ref_state, fast_state = (m.optimizer.state_dict()["state"] for m in (reference, fast))
    assert len(fast_state) == len(ref_state) == len(list(fast.policy.parameters()))
    for i, p in enumerate(fast.policy.parameters()):
        assert fast_state[i]["step"] == ref_state[i]["step"]
        assert fast_state[i]["exp_avg"].shape == p.shape
        torch.testing.assert_close(fast_state[i]["exp_avg_sq"], ref_state[i]["exp_avg_sq"],
                                   rtol=1e-4, atol=1e-9)


def test_switching_paths_mid_training_keeps_one_optimizer_state():
    """The reference path sets p.grad = None (breaking the flat views); the next written-out
    update must rebuild them from the optimizer's current state, not from stale buffers."""
    reference = _train(False, updates=6)
    _assert_same_training(_train(True, updates=6, switch_at=2), reference)
    _assert_same_training(_train(False, updates=6, switch_at=3), reference)


def test_written_out_update_leaves_no_inference_tensors_behind():
    """The full-batch update runs its loss and step in torch.inference_mode (no_grad's
    numbers, less cost per tensor call). Only temporaries may be inference tensors: were the
    parameters, their .grad, Adam's state or the rollout one, autograd (the reference path)
    and in-place changes outside inference mode would fail after a written-out update."""

    class ZeroGrad(BaseCallback):  # a learner's policy.zero_grad() between rollouts: the
        def _on_rollout_end(self):  # update binds the flat buffers anew
            self.model.policy.zero_grad(set_to_none=True)

    full = dict(batch_size=64)  # one minibatch, the whole rollout: full_batch_update
    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=32, n_epochs=3, seed=3, **full)
    model.learn(2 * 64, callback=ZeroGrad())
    assert model._gradient_step is not None
    params = list(model.policy.parameters())
    kept = [*params, *(p.grad for p in params),
            *(t for s in model.optimizer.state.values() for t in s.values()),
            *(t for t in vars(model.rollout).values() if isinstance(t, torch.Tensor))]
    assert [t.is_inference() for t in kept] == [False] * len(kept)
    model.fast_path = False  # autograd and in-place Adam on what the update left
    model.learn(2 * 64, reset_num_timesteps=False)
    _assert_same_training(model, _train(False, updates=4, **full))


def test_written_out_step_after_optimizer_load_state_dict():
    a, b = _train(True, updates=2), _train(True, updates=2)
    # new state tensors in b (copied: torch's load_state_dict keeps the tensors it is given)
    b.optimizer.load_state_dict(copy.deepcopy(a.optimizer.state_dict()))
    for model in (a, b):
        torch.manual_seed(7)  # the same minibatches and actions for both
        model.learn(128, reset_num_timesteps=False)
    _assert_same_training(a, b, rtol=0, atol=0)


def test_unsupported_policies_take_the_autograd_path():
    def step_for(**kw):
        model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, **kw)
        return fast_gradient_step(model.policy, model.optimizer)

    assert step_for() is not None
    assert step_for(policy_kwargs=dict(activation_fn=nn.ELU)) is None
    hooked = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16)
    hooked.policy.mlp_extractor.policy_net[0].register_forward_hook(lambda *a: None)
    assert fast_gradient_step(hooked.policy, hooked.optimizer) is None
    decayed = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16)
    decayed.optimizer.param_groups[0]["weight_decay"] = 1e-4
    assert fast_gradient_step(decayed.policy, decayed.optimizer) is None
    custom = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, seed=0)
    custom.optimizer = torch.optim.SGD(custom.policy.parameters(), lr=1e-3)
    custom.learn(16)
    assert custom._gradient_step is None


def test_deepcopy_trains_on_its_own_buffers():
    """A deep copy (e.g. "keep the best model so far") continues on copies of the flat
    buffers: training it leaves the original untouched, and both continue alike."""
    model = _train(True, updates=2)
    twin = copy.deepcopy(model)
    before = [p.detach().clone() for p in model.policy.parameters()]
    torch.manual_seed(5)
    twin.learn(128, reset_num_timesteps=False)
    for p, b in zip(model.policy.parameters(), before):
        assert torch.equal(p, b)
    torch.manual_seed(5)
    model.learn(128, reset_num_timesteps=False)
    _assert_same_training(model, twin, rtol=0, atol=0)


def test_frozen_parameters_stay_frozen():
    """A learner freezing the critic's trunk: autograd gives those parameters no gradient and
    Adam skips them; the written-out step must not update them either (it steps aside)."""
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=2, seed=0)
    frozen = model.policy.mlp_extractor.value_net[0].weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    head_before = model.policy.action_net.weight.detach().clone()
    model.learn(64)
    assert torch.equal(frozen, before)
    assert not torch.equal(model.policy.action_net.weight.detach(), head_before)  # trained


def test_a_hook_added_mid_training_runs_in_the_update():
    """Hooks (say, recording activations for a plot) run on autograd's path; the written-out
    step must step aside once one is added, not silently skip it."""
    model = _train(True, updates=1)
    assert model._gradient_step is not None
    seen = []
    model.policy.mlp_extractor.value_net[1].register_forward_hook(
        lambda module, inputs, output: seen.append(output.shape[0]))
    model.learn(64, reset_num_timesteps=False)
    assert 16 in seen  # a minibatch (batch_size 16) went through the hooked layer
    fresh = _train(True, updates=1)
    assert fast_gradient_step(fresh.policy, model.optimizer) is None  # not its optimizer
    assert fast_gradient_step(fresh.policy, fresh.optimizer) is not None
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:  # a global hook (every module's call) too
        assert fast_gradient_step(fresh.policy, fresh.optimizer) is None
    finally:
        handle.remove()


def test_divergence_on_the_written_out_path_stops_with_clear_error():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=32, batch_size=32, n_epochs=2,
                learning_rate=1e30)
    with pytest.raises(FloatingPointError, match="NaN or inf in parameters.*too high"):
        model.learn(2000)
    assert model._gradient_step.is_bound()  # the error came from the written-out path


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_training_does_not_depend_on_where_the_buffers_sit(monkeypatch, env):
    """Every parameter's slice of the flat buffers starts at a 64-byte boundary, wherever
    the memory comes from: buffers placed 4, 8, ..., 60 bytes off a boundary train bit for
    bit as the allocator's own (the matrix kernels round by their operands' addresses)."""
    from ppo_lib import flat_buffer

    reference = _train(True, env=env, updates=3)
    for floats in (1, 2, 3, 4, 5, 8, 13, 15):
        monkeypatch.setattr(flat_buffer, "raw_buffer",
                            lambda numel, k=floats: torch.zeros(numel + k)[k:])
        model = _train(True, env=env, updates=3)
        step = model._gradient_step
        assert step._flat.data_ptr() % 64 == 0, floats
        for buffer in (step._flat, step._grad, step._exp_avg, step._exp_avg_sq):
            assert buffer.storage_offset() == flat_buffer.ALIGN  # k floats in, moved 16 - k on
        for p in model.policy.parameters():
            assert p.data_ptr() % 64 == p.grad.data_ptr() % 64 == 0
            state = model.optimizer.state[p]
            assert state["exp_avg"].data_ptr() % 64 == state["exp_avg_sq"].data_ptr() % 64 == 0
        _assert_same_training(model, reference, rtol=0, atol=0)


def test_flat_layout_pads_each_parameter_to_a_boundary():
    from ppo_lib.flat_buffer import ALIGN, layout

    assert layout([1, 192, 64, 16, 17]) == ([0, 16, 208, 272, 288], 320)
    assert layout([]) == ([], 0)
    assert ALIGN * 4 == 64


def test_tanh_is_numpys_without_autograd_and_torchs_with_it():
    """fastpath.tanh: numpy's np.tanh where no graph is recorded (10x faster than torch's on
    an AVX-512 CPU), within float32 rounding of torch.tanh; torch's own where autograd
    records, so gradients (and TRPO's second derivatives) are autograd's."""
    from ppo_lib.fastpath import tanh

    x = torch.linspace(-6, 6, 4097).reshape(17, 241)[:, ::2]  # a strided view too
    with torch.no_grad():
        y = tanh(x)
    np.testing.assert_array_equal(y.numpy(), np.tanh(x.numpy()))
    torch.testing.assert_close(y, torch.tanh(x), rtol=0, atol=1.2e-7)  # 1 ulp near +-1
    w = x.clone().requires_grad_()
    z = tanh(w)
    assert z.grad_fn is not None and torch.equal(z, torch.tanh(w))
    (g,) = torch.autograd.grad(z.sum(), w, create_graph=True)
    torch.testing.assert_close(g, 1 - torch.tanh(w) ** 2)
    assert g.grad_fn is not None  # twice differentiable
    d = torch.linspace(-2, 2, 9, dtype=torch.float64)
    assert torch.equal(tanh(d), torch.tanh(d))  # other dtypes: torch's


def test_clip_scale_has_the_bits_of_clip_grad_norms_tensor_arithmetic():
    """fastpath.clip_scale (numpy float32 scalars) gives, bit for bit, the factor the
    reference computes with float32 tensors, min(1, max_norm / (||g|| + 1e-6)), for norms
    below, at and above max_norm, tiny and huge, and max_norm values the course uses. A
    float64 version (max_norm / (norm + 1e-6) in Python floats) fails this."""
    from ppo_lib.fastpath import clip_scale

    g = torch.Generator().manual_seed(0)
    norms = torch.cat([torch.rand(20000, generator=g) * 4, torch.rand(2000, generator=g) * 1e-5,
                       10 ** (torch.rand(2000, generator=g) * 12 - 4),
                       torch.tensor([0.0, 0.5, 1.0, 0.4999999, 0.5000001, 3e38])])
    for max_norm in (0.5, 1.0, 0.3, 10.0):
        expected = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
        got = torch.tensor([clip_scale(n, max_norm) for n in norms.tolist()])
        assert torch.equal(got, expected), max_norm
    assert clip_scale(float("inf"), 0.5) == 0.0
    assert math.isnan(clip_scale(float("nan"), 0.5))


def hook_registrations(hooked: nn.Module, pre_hooked: nn.Module) -> list:
    """Ways to make calling a module run a hook, each returning its handle: a forward hook on
    ``hooked``, a pre-hook on ``pre_hooked``, a global forward hook, a global pre-hook."""
    return [lambda: hooked.register_forward_hook(lambda m, a, out: out),
            lambda: pre_hooked.register_forward_pre_hook(lambda m, a: None),
            lambda: nn.modules.module.register_module_forward_hook(lambda m, a, out: out),
            lambda: nn.modules.module.register_module_forward_pre_hook(lambda m, a: None)]


def assert_counts_while_registered(check, agrees, registrations) -> None:
    """``check()`` is False, True while each registration's hook is there, False again once it
    is removed; ``agrees()`` (check against its definition) throughout."""
    assert not check() and agrees()
    for register in registrations:
        handle = register()
        try:
            assert check() and agrees()
        finally:
            handle.remove()
        assert not check() and agrees()


def test_hook_check_sees_hooks_registered_after_it_was_made():
    """fastpath.hook_check(modules)() is has_hooks over the modules at every call: forward
    hooks and pre-hooks registered later, on a module or globally, count; removed, they stop
    counting. (The rollout makes the check once and asks it after every callback.)"""
    from ppo_lib.fastpath import has_hooks, hook_check

    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    modules = list(net.modules())
    check = hook_check(modules)
    assert_counts_while_registered(check, lambda: check() == any(has_hooks(m) for m in modules),
                                   hook_registrations(net[2], net[0]))


def test_tree_hooked_is_has_hooks_over_every_submodule():
    """fastpath.tree_hooked(module) == any(has_hooks(m) for m in module.modules()): a hook or
    pre-hook on the module, on a module nested two levels down, or a global one counts (and
    stops counting once removed); a child set to None is skipped."""
    from ppo_lib.fastpath import has_hooks, tree_hooked

    inner = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    net = nn.Sequential(inner, nn.Linear(3, 1))
    net.register_module("gone", None)
    assert_counts_while_registered(
        lambda: tree_hooked(net),
        lambda: tree_hooked(net) == any(has_hooks(m) for m in net.modules()),
        hook_registrations(net, inner[0]) + hook_registrations(inner[1], net)[:2])


@pytest.mark.parametrize("method", ["evaluate_actions", "heads", "latents"])
def test_a_method_replaced_on_the_policy_takes_the_reference_step(method):
    """The written-out step stands in for evaluate_actions, heads and latents: one of them
    replaced on the policy instance, even after the step was made and bound, sends the update
    through the reference step, which calls it."""
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=16, batch_size=16, n_epochs=2)
    model.learn(16)
    assert fast_gradient_step(model.policy, model.optimizer) is not None
    original, calls = getattr(model.policy, method), []

    def counted(*args, **kwargs):
        calls.append(method)
        return original(*args, **kwargs)

    class InUpdate(BaseCallback):  # the calls between the rollout's end and the update's
        def _on_rollout_end(self):
            self.before = len(calls)

        def _on_update_end(self):
            self.during = len(calls) - self.before

        def _on_step(self):
            return True

    setattr(model.policy, method, counted)
    assert fast_gradient_step(model.policy, model.optimizer) is None
    seen = InUpdate()
    model.learn(16, callback=seen, reset_num_timesteps=False)
    assert seen.during == 2  # two epochs of one minibatch, evaluate_actions once each

"""``PPO.train`` for the common fast case, with less per-minibatch overhead (issue 15).

When the written-out gradient step runs (``ppo_lib.fastpath``) and one minibatch is the
whole rollout (``batch_size >= n_steps * n_envs``, as rl-zoo's CartPole set and the
``cartpole_fast`` preset), every epoch sees the same samples in the same order. The update
is then lesson 05's ``PPO.train`` with the per-epoch work that gives the same numbers every
time done once:

    the flat minibatch (``minibatches``' views)         once per update, not per epoch
    the normalised advantages                           once per update, not per epoch
    the logged terms and clip fractions                 stacked once, at the end
    the check for NaN / inf parameters                  one isfinite over all of them

and the epochs run in ``torch.inference_mode()``: no_grad's kernels and numbers, with less
dispatch work per tensor call (a zoo run about 8% faster). Everything kept after the update
(parameters, .grad, Adam's state, the rollout) was made outside it, so stays an ordinary
tensor for autograd; the flat buffers are bound (``model._fast_step()``) before it.

Every tensor operation of the step itself, every random draw and every logged number are
``PPO.train``'s, bit for bit (tests/test_speed_equality.py trains both ways). The clip
fraction per minibatch is a mean of 0/1 values, exact in any summation order, so the
fractions of all minibatches are taken in one call.
"""

from __future__ import annotations

import math

import torch

from .kl import approx_kl
from .logger import train_row
from .rollout import minibatches
from .validation import check_finite_parameters, check_in_range


def full_batch_update(model, progress_remaining: float = 1.0) -> dict[str, float] | None:
    """``model.train(progress_remaining)`` when the update is one written-out full-batch
    step per epoch -> the row it logs; None (nothing done) otherwise: call ``train``
    (also for a subclass that overrides ``train``)."""
    from .ppo import PPO  # (ppo imports this module)

    if (type(model).train is not PPO.train
            or model.batch_size < model.rollout.rewards.numel() or not model.fast_path
            or model.loss_fn is not None or model.kl_penalty is not None):
        return None
    learning_rate, clip_range, clip_range_vf = model._scheduled(progress_remaining)
    fast = model._fast_step()
    if fast is None:  # a frozen parameter, a hook, another optimizer: the reference step
        return None
    for group in model.optimizer.param_groups:
        group["lr"] = learning_rate
    clip_range = max(clip_range, 1e-8)  # as PPO.train
    check_in_range("clip_range", clip_range, 0.0, 1.0, low_open=True, high_open=True)
    with torch.inference_mode():  # no_grad's numbers with less dispatch per tensor call
        batch = next(minibatches(model.rollout, model.batch_size))  # the whole rollout
        advantages = model.normalized_advantages(batch.advantages)
        target_kl, last_epoch = model.target_kl, model.n_epochs - 1
        terms_seen, ratios, kls, stop = [], [], [], False
        for epoch in range(model.n_epochs):
            kls = []  # SB3 logs the mean over the last epoch's minibatches
            loss, terms, log_ratio, ratio = fast.loss(batch, advantages, clip_range,
                                                      model.vf_coef, model.ent_coef,
                                                      clip_range_vf)
            terms_seen.append(terms)
            ratios.append(ratio)
            if target_kl is not None or epoch == last_epoch:
                kls.append(approx_kl(log_ratio))
            if target_kl is not None and model._kl_stops(kls[-1].item(), epoch):
                stop = True
            else:
                fast.step(model.max_grad_norm)
            model.n_updates += 1
            if stop:
                break
        last_loss = loss.item()
        flat = torch.cat([p.reshape(-1) for p in model.policy.parameters()])
        if not (math.isfinite(last_loss) and bool(torch.isfinite(flat).all())):  # one check
            check_finite_parameters(model.policy, last_loss, model.n_updates,   # (its error)
                                    model.num_timesteps, learning_rate)
        # PPO.train's per-minibatch (policy, value, -entropy, clip share)
        shares = torch.mean((torch.abs(torch.stack(ratios) - 1) > clip_range).float(), 1)
        logged = torch.stack([torch.stack([t.policy for t in terms_seen]),
                              torch.stack([t.value for t in terms_seen]),
                              -torch.stack([t.entropy for t in terms_seen]), shares])
    return train_row(logged, kls, last_loss, model.rollout, model.policy, model.n_updates,
                     learning_rate, clip_range, clip_range_vf)

"""Lesson 11's maths (ppo_lib.rlhf) against TRL's own code, on plain float32 tensors.

Where TRL has a function or a trainer method that runs on tensors, the test calls it:
``selective_log_softmax``, ``nanstd``, the fused LM head GRPOTrainer scores tokens with
(``add_fused_lm_head``), ``GRPOTrainer._compute_loss`` and ``RewardTrainer.compute_loss``. The two
trainer methods are called unbound, on a stand-in ``self`` (types.SimpleNamespace) holding only
the attributes they read, copied from a real GRPOConfig / RewardConfig the way the trainers'
``__init__`` copies them, and a stand-in model whose per-token log-probs (or scores) are given.
Only the 3 advantage lines of GRPO are copied (they sit inline in
``GRPOTrainer._generate_and_score_completions``, behind generation and reward calls), and the
PPO reward lines, since TRL 1.13 shipped no PPOTrainer. trl is a test dependency
(pyproject.toml), imported plainly: a missing trl fails this file, it does not skip it.

These methods are TRL's internals: a TRL release that renames an attribute they read fails
here first (written against trl 1.16.0, transformers 5.24.0).
"""

import contextlib
import copy
import functools
import types
from collections import defaultdict

import pytest
import torch
import trl
from packaging.version import Version
from trl import GRPOConfig, GRPOTrainer, RewardConfig, RewardTrainer
from trl.trainer.utils import add_fused_lm_head, nanstd, selective_log_softmax

from ppo_lib.rlhf import (bradley_terry_loss, group_relative_advantages, grpo_loss,
                          kl_penalized_rewards, per_token_kl, token_logprobs)

# GRPOConfig / RewardConfig (transformers' TrainingArguments) warn about a field TRL sets itself
pytestmark = pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")

# float32 everywhere; TRL and ours add the same terms in a different order, so equal up to rounding
TIGHT = dict(rtol=1e-6, atol=1e-6)


def test_trl_is_the_tested_major_version():
    assert Version(trl.__version__) >= Version("1.16"), trl.__version__


def rng(seed):
    return torch.Generator().manual_seed(seed)


# ---- token log-probs -------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_match_selective_log_softmax(temperature):
    g = rng(0)
    logits = 4 * torch.randn(3, 6, 17, generator=g)
    tokens = torch.randint(0, 17, (3, 6), generator=g)
    ours = token_logprobs(logits / temperature, tokens)
    theirs = selective_log_softmax(logits, tokens, temperature=temperature)
    torch.testing.assert_close(ours, theirs, **TIGHT)


def tiny_lm():
    """A 1-layer Llama built from a config (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=23, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(config).eval()


def test_token_logprobs_match_grpo_trainers_fused_lm_head():
    # TRL 1.16's GRPOTrainer no longer calls selective_log_softmax: it patches the model with
    # add_fused_lm_head(model, temperature=args.temperature) and reads outputs.log_probs, the
    # log-prob of each next token, computed in chunks without the (B, L, V) logits.
    temperature = 0.7
    model = tiny_lm()
    ids = torch.randint(0, 23, (2, 9), generator=rng(1))
    with torch.no_grad():
        logits = model(input_ids=ids).logits              # the plain forward
        add_fused_lm_head(model, temperature=temperature, outputs=("log_probs", "entropy"))
        fused = model(input_ids=ids, labels=ids, fused_lm_head=True)
    ours = token_logprobs(logits[:, :-1] / temperature, ids[:, 1:])   # next-token log-probs
    assert fused.log_probs.shape == ours.shape
    # the fused head multiplies hidden states by the LM head's weight in its own chunks (another
    # matmul than the model's): 2e-7 apart here, 1e-5 leaves room for other CPUs' kernels
    torch.testing.assert_close(ours, fused.log_probs, rtol=1e-5, atol=1e-5)


# ---- GRPO's advantages -----------------------------------------------------------------------

def trl_group_advantages(rewards, num_generations):
    """GRPOTrainer's advantages for scale_rewards="group", multi_objective_aggregation=
    "sum_then_normalize" (the defaults), one reward function. ``rewards`` is flat (P * G,), the
    G completions of a prompt next to each other, as TRL orders them.

    The lines below are copied from trl/trainer/grpo_trainer.py of trl 1.16.0,
    GRPOTrainer._generate_and_score_completions (from
    ``mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)`` to
    ``advantages = advantages / (std_rewards + 1e-4)``): they are inline there, after
    generation and the reward calls, so they cannot be called alone. nanstd is TRL's own.
    """
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
    std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped_rewards
    advantages = advantages / (std_rewards + 1e-4)
    return advantages


def test_nanstd_is_torch_std_with_bessels_correction():
    rewards = torch.randn(5, 4, generator=rng(2))
    torch.testing.assert_close(nanstd(rewards, dim=1), rewards.std(dim=1), **TIGHT)


@pytest.mark.parametrize("group_size", [2, 4, 8])
def test_group_relative_advantages_match_grpo_trainer(group_size):
    rewards = torch.randn(6, group_size, generator=rng(3))
    rewards[1] = 0.5                                     # a group that all scored the same
    rewards[2] = (rewards[2] > 0).float()                # 0/1 rewards, as from a verifier
    ours = group_relative_advantages(rewards)
    theirs = trl_group_advantages(rewards.flatten(), group_size).view(6, group_size)
    torch.testing.assert_close(ours, theirs, **TIGHT)
    assert torch.all(ours[1] == 0)


# ---- GRPO's loss -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grpo_args(tmp_path_factory):
    """A real GRPOConfig, so the attribute names (and the defaults not set here) are TRL's."""
    return GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), report_to="none",
                      use_cpu=True, loss_type="grpo", beta=0.04, epsilon=0.2,
                      use_bias_correction_kl=False)


def trl_grpo_loss(args, logprobs, old_logprobs, ref_logprobs, advantages, prompt_length=3):
    """TRL's GRPOTrainer._compute_loss (with its real _get_per_token_logps_and_entropies) on given
    per-token log-probs of B completions of T tokens, every completion token kept (all-ones
    completion mask). Returns (loss, the trainer's logged metrics)."""
    B, T = logprobs.shape

    def model(input_ids, attention_mask, labels, fused_lm_head, **kwargs):
        # Stand-in for a model patched by add_fused_lm_head: one log-prob per next-token label,
        # (B, L - 1); the trainer keeps the last T (the completion's), the prompt's are never read.
        assert fused_lm_head and input_ids.shape == (B, prompt_length + T)
        assert torch.all(labels[:, -T:] != -100) and torch.all(labels[:, :prompt_length] == -100)
        log_probs = torch.cat([logprobs.new_zeros(B, prompt_length - 1), logprobs], dim=1)
        return types.SimpleNamespace(log_probs=log_probs, entropy=torch.zeros_like(log_probs))

    identity = lambda tensor, *args, **kwargs: tensor  # noqa: E731  (one process: no gather)
    trainer = types.SimpleNamespace(
        args=args,
        # as GRPOTrainer.__init__ copies them from args (trl 1.16.0)
        max_completion_length=args.max_completion_length,
        use_vllm=args.use_vllm,
        vllm_importance_sampling_correction=args.vllm_importance_sampling_correction,
        loss_type=args.loss_type,
        importance_sampling_level=args.importance_sampling_level,
        off_policy_mask_threshold=args.off_policy_mask_threshold,
        top_entropy_quantile=args.top_entropy_quantile,
        entropy_coef=args.entropy_coef,
        _entropy_bonus_enabled=args.entropy_coef != 0.0 or args.use_adaptive_entropy,
        epsilon_low=args.epsilon,
        epsilon_high=args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        beta=args.beta,
        aux_loss_enabled=False,                          # not a mixture-of-experts model
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        # what Trainer / accelerate provide on one CPU process
        model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        accelerator=types.SimpleNamespace(autocast=contextlib.nullcontext, is_main_process=True,
                                          num_processes=1, gather=identity,
                                          gather_for_metrics=identity, reduce=identity),
    )
    trainer._get_per_token_logps_and_entropies = functools.partial(
        GRPOTrainer._get_per_token_logps_and_entropies, trainer)
    g = rng(4)
    inputs = {
        "prompt_ids": torch.randint(0, 50, (B, prompt_length), generator=g),
        "prompt_mask": torch.ones(B, prompt_length, dtype=torch.long),
        "completion_ids": torch.randint(0, 50, (B, T), generator=g),
        "completion_mask": torch.ones(B, T, dtype=torch.long),
        "advantages": advantages,
        "old_per_token_logps": old_logprobs,
        "ref_per_token_logps": ref_logprobs,
        "num_items_in_batch": torch.tensor(float(B * T)),   # loss_type="dapo": tokens in the batch
    }
    loss = GRPOTrainer._compute_loss(trainer, model, inputs)
    return loss, trainer._metrics["train"]


def grpo_batch(seed=5, B=6, T=7, off_policy=0.3):
    """Log-probs with ratios well outside [0.8, 1.2] and advantages of both signs."""
    g = rng(seed)
    logprobs = (-2 + 0.5 * torch.randn(B, T, generator=g)).requires_grad_()
    old_logprobs = logprobs.detach() + off_policy * torch.randn(B, T, generator=g)
    ref_logprobs = logprobs.detach() + 0.2 * torch.randn(B, T, generator=g)
    advantages = group_relative_advantages(torch.randn(B // 2, 2, generator=g)).flatten()
    return logprobs, old_logprobs, ref_logprobs, advantages


@pytest.mark.parametrize("beta", [0.04, 0.0])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_grpo_loss_matches_grpo_trainer_compute_loss(grpo_args, loss_type, beta):
    # Every completion T tokens long and none masked: the four aggregations are then one mean
    # over the B x T tokens (dr_grpo's constant is max_completion_length, set to T here).
    logprobs, old_logprobs, ref_logprobs, advantages = grpo_batch()
    B, T = logprobs.shape
    args = copy.copy(grpo_args)
    args.loss_type, args.beta, args.max_completion_length = loss_type, beta, T
    theirs, metrics = trl_grpo_loss(args, logprobs, old_logprobs, ref_logprobs, advantages)
    ours = grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, clip_range=0.2, beta=beta)
    torch.testing.assert_close(ours, theirs, **TIGHT)
    # the same gradient with respect to every token's log-prob
    (g_ours,) = torch.autograd.grad(ours, logprobs)
    (g_theirs,) = torch.autograd.grad(theirs, logprobs)
    torch.testing.assert_close(g_ours, g_theirs, **TIGHT)
    # the batch exercises clipping on both sides (TRL's own clip metrics)
    assert metrics["clip_ratio/low_mean"][0] > 0 and metrics["clip_ratio/high_mean"][0] > 0


def test_per_token_kl_is_grpo_trainers_k3_term(grpo_args):
    # advantages 0: GRPO's loss is beta * mean k3, and TRL logs the mean k3 as "kl"
    logprobs, old_logprobs, ref_logprobs, _ = grpo_batch(seed=6)
    B, T = logprobs.shape
    theirs, metrics = trl_grpo_loss(grpo_args, logprobs, old_logprobs, ref_logprobs,
                                    torch.zeros(B))
    k3 = per_token_kl(logprobs, ref_logprobs)
    torch.testing.assert_close(grpo_args.beta * k3.mean(), theirs, **TIGHT)
    assert metrics["kl"][0] == pytest.approx(k3.mean().item(), rel=1e-6)
    (g_ours,) = torch.autograd.grad(grpo_args.beta * k3.mean(), logprobs)
    (g_theirs,) = torch.autograd.grad(theirs, logprobs)
    torch.testing.assert_close(g_ours, g_theirs, **TIGHT)


def test_grpo_default_bias_corrected_kl_differs_only_off_policy(grpo_args):
    # TRL 1.16's default use_bias_correction_kl=True weights each token's k3 by the ratio
    # pi_theta / pi_old. On-policy (num_iterations=1: old = current) the value is ours; off
    # policy it is ours + beta * mean((ratio - 1) * k3). (The gradient differs even on-policy:
    # the ratio is differentiable.) Lesson 11's grpo_loss is the unweighted k3 term.
    args = copy.copy(grpo_args)
    args.use_bias_correction_kl = True
    logprobs, old_logprobs, ref_logprobs, advantages = grpo_batch(seed=7)
    ours = grpo_loss(logprobs, logprobs.detach(), ref_logprobs, advantages, 0.2, args.beta)
    on_policy, _ = trl_grpo_loss(args, logprobs, logprobs.detach(), ref_logprobs, advantages)
    torch.testing.assert_close(ours, on_policy, **TIGHT)

    off_policy, _ = trl_grpo_loss(args, logprobs, old_logprobs, ref_logprobs, advantages)
    ours = grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, 0.2, args.beta)
    ratio = torch.exp(logprobs - old_logprobs)
    extra = args.beta * ((ratio - 1) * per_token_kl(logprobs, ref_logprobs)).mean()
    assert abs(extra.item()) > 1e-4
    torch.testing.assert_close(ours + extra, off_policy, **TIGHT)


# ---- the reward model's loss -----------------------------------------------------------------

def trl_reward_loss(args, chosen, rejected):
    """TRL's RewardTrainer.compute_loss on given scores: the stand-in model returns the chosen
    then the rejected scores as (2B, 1) logits, as a num_labels=1 sequence classifier does."""
    def model(**inputs):
        return types.SimpleNamespace(logits=torch.cat([chosen, rejected]).unsqueeze(-1))

    identity = lambda tensor, *args, **kwargs: tensor  # noqa: E731
    trainer = types.SimpleNamespace(
        args=args, model=types.SimpleNamespace(training=True), _total_train_tokens=0,
        _tp_size=1, _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        accelerator=types.SimpleNamespace(gather=identity, gather_for_metrics=identity))
    inputs = {"input_ids": torch.zeros(2 * len(chosen), 4, dtype=torch.long),
              "attention_mask": torch.ones(2 * len(chosen), 4, dtype=torch.long)}
    return RewardTrainer.compute_loss(trainer, model, inputs), trainer._metrics["train"]


@pytest.fixture(scope="module")
def reward_args(tmp_path_factory):
    return RewardConfig(output_dir=str(tmp_path_factory.mktemp("reward")), report_to="none",
                        use_cpu=True)


def test_bradley_terry_loss_matches_reward_trainer_compute_loss(reward_args):
    assert reward_args.center_rewards_coefficient is None        # TRL's default
    g = rng(8)
    chosen = (2 * torch.randn(16, generator=g)).requires_grad_()
    rejected = 2 * torch.randn(16, generator=g)
    rejected[0] = chosen[0].item() + 100     # margin -100: float32 sigmoid is 0, log(0) = -inf
    theirs, metrics = trl_reward_loss(reward_args, chosen, rejected)
    ours = bradley_terry_loss(chosen, rejected)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, theirs, **TIGHT)
    (g_ours,) = torch.autograd.grad(ours, chosen)
    (g_theirs,) = torch.autograd.grad(theirs, chosen)
    torch.testing.assert_close(g_ours, g_theirs, **TIGHT)
    assert metrics["accuracy"][0] == pytest.approx((chosen > rejected).float().mean().item())


def test_reward_trainers_centering_term_is_added_to_bradley_terry(reward_args):
    # center_rewards_coefficient (off by default) adds c * mean((s_chosen + s_rejected)^2)
    args = copy.copy(reward_args)
    args.center_rewards_coefficient = 0.01
    g = rng(9)
    chosen, rejected = torch.randn(8, generator=g), torch.randn(8, generator=g)
    theirs, _ = trl_reward_loss(args, chosen, rejected)
    ours = bradley_terry_loss(chosen, rejected) + 0.01 * ((chosen + rejected) ** 2).mean()
    torch.testing.assert_close(ours, theirs, **TIGHT)


# ---- PPO's per-token rewards (copied: no PPOTrainer in TRL 1.16) -----------------------------

def trl_ppo_rewards(scores, logprobs, ref_logprobs, kl_coef, sequence_lengths):
    """PPOTrainer's rewards, kl_estimator="k1", no whitening. Copied from
    trl/experimental/ppo/ppo_trainer.py of trl 1.12.0, the last release with a PPOTrainer (from
    ``logr = ref_logprobs - logprobs`` to ``rewards[actual_start, actual_end] += scores``).
    ``sequence_lengths`` is the index of each response's last token before padding."""
    sequence_lengths_p1 = sequence_lengths + 1
    logr = ref_logprobs - logprobs
    kl = -logr
    non_score_reward = -kl_coef * kl
    rewards = non_score_reward.clone()
    actual_start = torch.arange(rewards.size(0), device=rewards.device)
    actual_end = torch.where(sequence_lengths_p1 < rewards.size(1), sequence_lengths_p1, sequence_lengths)
    rewards[actual_start, actual_end] += scores
    return rewards


def test_kl_penalized_rewards_match_ppo_trainer_for_full_length_responses():
    # Every response T tokens long (no EOS, no padding): TRL's sequence_lengths is T - 1 and the
    # score lands on the last token, as in ours. (With padding TRL puts it one token after the
    # last real one, index sequence_lengths + 1: the position of the EOS it stopped on.)
    g = rng(10)
    B, T = 4, 6
    scores = torch.randn(B, generator=g)
    logprobs = -2 + 0.5 * torch.randn(B, T, generator=g)
    ref_logprobs = logprobs + 0.2 * torch.randn(B, T, generator=g)
    ours = kl_penalized_rewards(scores, logprobs, ref_logprobs, kl_coef=0.05)
    theirs = trl_ppo_rewards(scores, logprobs, ref_logprobs, 0.05, torch.full((B,), T - 1))
    torch.testing.assert_close(ours, theirs, **TIGHT)

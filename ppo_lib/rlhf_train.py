"""Training language models with reinforcement learning (lesson 11): a reward model from
preference pairs, then RLHF with PPO (critic, per-token KL penalty, GAE over tokens) or GRPO
(groups of completions, no critic, KL as a loss), on the tiny language of ``ppo_lib.lm``.

The pieces a learner writes are arguments: ``loss_fn`` (Bradley-Terry), ``rewards_fn``
(the KL-penalised rewards), ``advantages_fn`` (GRPO's group-relative advantages); the
defaults are ``ppo_lib.rlhf``'s. The episode is one completion: an action is a token, the
state is the prompt plus the tokens so far, and the only reward from outside is the reward
model's score at the end.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import rlhf
from .lm import (NOUNS, TOKEN, ScalarHead, TinyLM, WordRewardModel, completion_logits, generate,
                 is_grammatical, sentiment)
from .grad_mode import trains
from .losses import clipped_surrogate_loss, value_loss
from .returns import gae
from .validation import check_in_range, check_positive_int, check_same_shape

PROMPT_STATE = 3  # a completion of "the NOUN was" starts where the grammar expects an adjective
MAX_PAIR_ROUNDS = 20  # preference_pairs gives up when that many rounds found too few untied pairs
SAMPLES_KEPT = 4      # completions of each update kept in the history, to read as text
HISTORY_KEYS = ("reward", "kl", "sentiment", "grammatical", "seconds", "samples")


def prompts(n: int, generator: torch.Generator) -> Tensor:
    """``n`` prompts "the NOUN was" (n, 3), nouns drawn uniformly."""
    nouns = torch.randint(len(NOUNS), (n,), generator=generator)
    noun_ids = torch.tensor([TOKEN[w] for w in NOUNS])[nouns]
    return torch.stack([torch.full((n,), TOKEN["the"]), noun_ids,
                        torch.full((n,), TOKEN["was"])], dim=1)


def grammatical(completions: Tensor) -> Tensor:
    """1.0 for each completion (B, T) the grammar accepts after its prompt, else 0.0."""
    return torch.tensor([float(is_grammatical(row, PROMPT_STATE)) for row in completions])


def annotator_scores(completions: Tensor) -> Tensor:
    """The rule behind the preferences, the score a careful reader gives: positive minus
    negative adjectives, and any text that is not a review of the language is worse than
    every review (-10)."""
    return torch.where(grammatical(completions).bool(), sentiment(completions),
                       torch.tensor(-10.0))


def preference_pairs(lm: TinyLM, n_pairs: int, n_tokens: int = 10, seed: int = 0
                     ) -> tuple[Tensor, Tensor]:
    """Pairs of completions of the same prompt sampled from ``lm``, ordered by the annotator:
    ``(chosen, rejected)``, each (n_pairs, 3 + n_tokens) (prompt and completion). Ties are
    dropped, as annotators skip pairs they cannot tell apart."""
    check_positive_int("n_pairs", n_pairs)
    check_positive_int("n_tokens", n_tokens)
    generator = torch.Generator().manual_seed(seed)
    chosen, rejected = [], []
    for _round in range(MAX_PAIR_ROUNDS):
        if sum(len(c) for c in chosen) >= n_pairs:
            break
        p = prompts(2 * n_pairs, generator)
        completions, _ = generate(lm, p, n_tokens, generator)
        a, b = completions[:n_pairs], completions[n_pairs:]
        sa, sb = annotator_scores(a), annotator_scores(b)
        keep = sa != sb
        first = torch.where((sa > sb)[:, None], a, b)[keep]
        second = torch.where((sa > sb)[:, None], b, a)[keep]
        chosen.append(torch.cat([p[:n_pairs][keep], first], dim=1))
        rejected.append(torch.cat([p[:n_pairs][keep], second], dim=1))
    found = sum(len(c) for c in chosen)
    if found < n_pairs:  # e.g. an untrained lm: all its texts score -10, every pair is a tie
        raise ValueError(f"lm gave only {found} untied pairs of the n_pairs={n_pairs} asked for "
                         f"in {MAX_PAIR_ROUNDS} rounds of sampling: its completions are almost "
                         f"all tied for the annotator (is it pre-trained?)")
    return torch.cat(chosen)[:n_pairs], torch.cat(rejected)[:n_pairs]


@trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
def train_reward_model(chosen: Tensor, rejected: Tensor, steps: int = 300,
                       batch_size: int = 64, lr: float = 0.05, seed: int = 0,
                       loss_fn: Callable = rlhf.bradley_terry_loss
                       ) -> tuple[WordRewardModel, list]:
    """A reward model fitted so that sigmoid(s(chosen) - s(rejected)) is the probability the
    annotator prefers ``chosen`` (``loss_fn``, Bradley-Terry by default). Returns the model
    (frozen) and the loss of every step."""
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_same_shape("pairs x tokens", chosen=chosen, rejected=rejected)
    if chosen.dim() != 2 or len(chosen) == 0:
        raise ValueError(f"chosen and rejected must be (n_pairs, T) token ids with n_pairs >= 1, "
                         f"got shape {tuple(chosen.shape)}")
    torch.manual_seed(seed)
    model = WordRewardModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(chosen), (batch_size,), generator=generator)
        loss = loss_fn(model.score(chosen[idx]), model.score(rejected[idx]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.requires_grad_(False).eval(), losses


@dataclass
class RLConfig:
    """Settings of RLHF-PPO and GRPO (TRL's names in brackets; lesson 11's table)."""

    n_updates: int = 30          # rollouts, each followed by n_epochs of minibatch updates
    n_completions: int = 64      # completions per rollout [per_device_train_batch_size]
    group_size: int = 8          # GRPO: completions per prompt [num_generations]
    n_tokens: int = 10           # tokens per completion [response_length / max_completion_length]
    n_epochs: int = 4            # [num_ppo_epochs / num_iterations]
    batch_size: int = 32         # completions per minibatch
    learning_rate: float = 3e-4  # [learning_rate]
    clip_range: float = 0.2      # [cliprange / epsilon]
    clip_range_vf: float = 0.2   # PPO's critic [cliprange_value]
    vf_coef: float = 0.5         # [vf_coef]
    gamma: float = 1.0           # [gamma]
    gae_lambda: float = 0.95     # [lam]
    kl_coef: float = 0.2         # PPO: beta of the per-token KL penalty [kl_coef]
    beta: float = 0.4            # GRPO: weight of the k3 KL loss [beta]
    max_grad_norm: float = 1.0   # [max_grad_norm]
    temperature: float = 1.0     # [temperature]

    def __post_init__(self):
        for name in ("n_updates", "n_completions", "group_size", "n_tokens", "n_epochs",
                     "batch_size"):
            check_positive_int(name, getattr(self, name))
        check_in_range("clip_range", self.clip_range, 0.0, 1.0, low_open=True, high_open=True)
        check_in_range("kl_coef", self.kl_coef, 0.0, float("inf"))
        check_in_range("beta", self.beta, 0.0, float("inf"))
        for name in ("learning_rate", "clip_range_vf", "max_grad_norm", "temperature"):
            check_in_range(name, getattr(self, name), 0.0, float("inf"), low_open=True)
        check_in_range("vf_coef", self.vf_coef, 0.0, float("inf"))
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        check_in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        if self.n_completions % self.group_size:
            raise ValueError(f"n_completions={self.n_completions} must be a multiple of "
                             f"group_size={self.group_size}")


class Rollout:
    """What one rollout of completions left to learn from (all detached)."""

    def __init__(self, prompts: Tensor, completions: Tensor, old_logprobs: Tensor,
                 ref_logprobs: Tensor, scores: Tensor):
        self.prompts, self.completions = prompts, completions
        self.old_logprobs, self.ref_logprobs, self.scores = old_logprobs, ref_logprobs, scores


@torch.no_grad()
def collect(policy: TinyLM, ref: TinyLM, reward_model: WordRewardModel, prompt_batch: Tensor,
            config: RLConfig, generator: torch.Generator) -> Rollout:
    """Sample completions and score them. The old log-probabilities are recomputed in one
    forward pass over prompt + completion, as TRL does: the token-by-token pass of sampling
    rounds differently, and the first ratio must be exactly 1."""
    completions, _ = generate(policy, prompt_batch, config.n_tokens, generator,
                              config.temperature)
    old = rlhf.token_logprobs(completion_logits(policy, prompt_batch, completions) /
                              config.temperature, completions)
    ref_lp = rlhf.token_logprobs(completion_logits(ref, prompt_batch, completions) /
                                 config.temperature, completions)
    scores = reward_model.score(torch.cat([prompt_batch, completions], dim=1))
    return Rollout(prompt_batch, completions, old, ref_lp, scores)


def _logprobs(policy: TinyLM, rollout: Rollout, idx: Tensor, temperature: float) -> Tensor:
    completions = rollout.completions[idx]
    logits = completion_logits(policy, rollout.prompts[idx], completions) / temperature
    return rlhf.token_logprobs(logits, completions)


def _record(history: dict, rollout: Rollout, start: float) -> None:
    kl = (rollout.old_logprobs - rollout.ref_logprobs).sum(1)  # KL of a completion (k1)
    history["reward"].append(rollout.scores.mean().item())
    history["kl"].append(kl.mean().item())
    history["sentiment"].append(sentiment(rollout.completions).mean().item())
    history["grammatical"].append(grammatical(rollout.completions).mean().item())
    history["seconds"].append(time.perf_counter() - start)
    history["samples"].append(torch.cat([rollout.prompts, rollout.completions],
                                        dim=1)[:SAMPLES_KEPT].numpy())


def _check_fits(lm: TinyLM, config: RLConfig) -> None:
    block_size = lm.config.block_size
    if 3 + config.n_tokens > block_size:
        raise ValueError(f"n_tokens={config.n_tokens} does not fit: the prompt (3 tokens) plus "
                         f"the completion must be at most the model's block_size={block_size}")


def _step(optimizer: torch.optim.Optimizer, loss: Tensor, params: list, max_norm: float):
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()


def _progress(n: int, desc: str, show: bool):
    if not show:
        return range(n)
    from tqdm.auto import tqdm
    return tqdm(range(n), desc=desc)


@trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
def train_ppo(lm: TinyLM, reward_model: WordRewardModel, config: RLConfig | None = None,
              seed: int = 0, rewards_fn: Callable = rlhf.kl_penalized_rewards,
              progress: bool = False) -> tuple[TinyLM, dict]:
    """RLHF with PPO. The policy starts as a copy of ``lm``, which stays frozen as the
    reference; the critic is a value head on a copy of the pre-trained body. Each
    update: sample ``n_completions``, rewards_fn(scores, logprobs, ref_logprobs, kl_coef)
    per token, GAE over the tokens of each completion (gamma, gae_lambda), advantages
    whitened, then n_epochs of minibatch steps on the clipped loss of ``ppo_lib.losses`` and
    the critic's clipped value loss. Returns the policy and the history of every update
    (reward-model score, KL to the reference per completion, the annotator's sentiment,
    the grammatical share, seconds, and the first SAMPLES_KEPT prompts + completions as
    token ids (n_updates, SAMPLES_KEPT, 3 + n_tokens))."""
    config = config or RLConfig()
    _check_fits(lm, config)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    policy, ref = copy.deepcopy(lm).train(), lm.eval()
    critic = ScalarHead(lm).train()  # a value head on a copy of the pre-trained body
    params = list(policy.parameters()) + list(critic.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, eps=1e-5)
    history = {k: [] for k in HISTORY_KEYS}
    start = time.perf_counter()
    B, T, P = config.n_completions, config.n_tokens, 3
    for _ in _progress(config.n_updates, "PPO", progress):
        rollout = collect(policy, ref, reward_model, prompts(B, generator), config, generator)
        _record(history, rollout, start)
        with torch.no_grad():
            tokens = torch.cat([rollout.prompts, rollout.completions], dim=1)
            values = critic(tokens)[:, P - 1:-1]   # V(state before token t), (B, T)
            rewards = rewards_fn(rollout.scores, rollout.old_logprobs, rollout.ref_logprobs,
                                 config.kl_coef)
            dones = torch.zeros(B, T)
            dones[:, -1] = 1.0                    # the completion's last token ends the episode
            # ppo_lib's GAE is time first: (T, B)
            advantages, returns = gae(rewards.T, values.T, dones.T, torch.zeros(B), config.gamma,
                                      config.gae_lambda)
            advantages, returns = advantages.T, returns.T
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        for _epoch in range(config.n_epochs):
            for idx in torch.randperm(B, generator=generator).split(config.batch_size):
                ratio = torch.exp(_logprobs(policy, rollout, idx, config.temperature)
                                  - rollout.old_logprobs[idx])
                new_values = critic(tokens[idx])[:, P - 1:-1]
                loss = (clipped_surrogate_loss(ratio, advantages[idx], config.clip_range)
                        + config.vf_coef * value_loss(new_values, returns[idx], values[idx],
                                                      config.clip_range_vf))
                _step(optimizer, loss, params, config.max_grad_norm)
    return policy.eval(), _as_arrays(history)


@trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
def train_grpo(lm: TinyLM, reward_model: WordRewardModel, config: RLConfig | None = None,
               seed: int = 0, advantages_fn: Callable = rlhf.group_relative_advantages,
               progress: bool = False) -> tuple[TinyLM, dict]:
    """GRPO (Shao et al. 2024). Each update: n_completions / group_size prompts, group_size
    completions of each; every completion's advantage is its score standardised within its
    group (``advantages_fn`` on (prompts, group_size)); no critic. Then n_epochs of
    minibatch steps on ``rlhf.grpo_loss``: the clipped loss per token plus beta * k3 KL to
    the reference. Returns the policy and the history, as ``train_ppo``."""
    config = config or RLConfig()
    _check_fits(lm, config)
    if config.group_size < 2:
        raise ValueError(f"group_size={config.group_size}: GRPO standardises scores within a "
                         f"group, so group_size must be at least 2")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    policy, ref = copy.deepcopy(lm).train(), lm.eval()
    params = list(policy.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, eps=1e-5)
    history = {k: [] for k in HISTORY_KEYS}
    start = time.perf_counter()
    B, G = config.n_completions, config.group_size
    for _ in _progress(config.n_updates, "GRPO", progress):
        prompt_batch = prompts(B // G, generator).repeat_interleave(G, dim=0)
        rollout = collect(policy, ref, reward_model, prompt_batch, config, generator)
        _record(history, rollout, start)
        advantages = advantages_fn(rollout.scores.view(B // G, G)).reshape(B).detach()
        for _epoch in range(config.n_epochs):
            for idx in torch.randperm(B, generator=generator).split(config.batch_size):
                logprobs = _logprobs(policy, rollout, idx, config.temperature)
                loss = rlhf.grpo_loss(logprobs, rollout.old_logprobs[idx],
                                      rollout.ref_logprobs[idx], advantages[idx],
                                      config.clip_range, config.beta)
                _step(optimizer, loss, params, config.max_grad_norm)
    return policy.eval(), _as_arrays(history)


def _as_arrays(history: dict) -> dict:
    return {k: np.asarray(v) for k, v in history.items()}

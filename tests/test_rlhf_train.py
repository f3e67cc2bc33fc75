"""ppo_lib.rlhf_train: prompts, the annotator, preference pairs, the reward model, RLConfig,
and learning checks of RLHF-PPO and GRPO on lesson 11's tiny language (slow).

The learning tests share one pre-trained TinyLM and one reward model, built as lesson 11
builds them (seed 0). Thresholds come from measurements with RL seeds 0, 1, 2 (and LMs
pre-trained with seeds 1 and 2), each assertion leaving a margin; the numbers are quoted
where they are used ("measured"). Each run's first n updates do not depend on n_updates,
so 25 updates (the lesson runs 40) show what a longer run would.
"""

import functools

import numpy as np
import pytest
import torch

from ppo_lib import rlhf
from ppo_lib.lm import (NEGATIVE, NOUNS, POSITIVE, TOKEN, TinyLM, decode, encode,
                        is_grammatical, pretrain)
from ppo_lib.rlhf_train import (SAMPLES_KEPT, RLConfig, annotator_scores, grammatical,
                                preference_pairs, prompts, train_grpo, train_ppo,
                                train_reward_model)

torch.set_num_threads(1)

N_UPDATES = 25
KEYS = ("reward", "kl", "sentiment", "grammatical", "seconds")


def completions(*texts):
    return torch.tensor([encode(t) for t in texts])


def flipped_bradley_terry(chosen, rejected):   # the classic sign mistake
    return rlhf.bradley_terry_loss(rejected, chosen)


# --- prompts and the annotator (fast) -----------------------------------------------------

def test_prompts_are_the_noun_was():
    p = prompts(600, torch.Generator().manual_seed(0))
    assert p.shape == (600, 3) and p.dtype == torch.int64
    assert (p[:, 0] == TOKEN["the"]).all() and (p[:, 2] == TOKEN["was"]).all()
    nouns = torch.tensor([TOKEN[w] for w in NOUNS])
    counts = (p[:, 1:2] == nouns).sum(0)
    assert counts.sum() == 600 and (counts > 60).all()           # uniform: 100 each
    assert torch.equal(p, prompts(600, torch.Generator().manual_seed(0)))


def test_annotator_scores_sentiment_and_minus_10_for_ungrammatical():
    c = completions("good . the room was good . the food was",   # 2
                    "very nice but the food was bad . the room",  # 0
                    "dull . the movie was awful and the plot was",  # -2
                    " ".join(["good"] * 10),                     # hacking
                    "good and the food was great and the music was",  # 2nd "and"
                    "bad . the movie was good was good . the")  # "was" after "good"
    assert torch.equal(grammatical(c), torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert torch.equal(annotator_scores(c), torch.tensor([2.0, 0, -2, -10, -10, -10]))


# --- RLConfig (fast) ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, pattern", [
    (dict(n_completions=60, group_size=8), r"n_completions=60.*multiple of group_size=8"),
    (dict(clip_range=1.5), r"clip_range.*1\.5"),
    (dict(clip_range=0.0), r"clip_range.*0\.0"),
    (dict(kl_coef=-0.1), r"kl_coef.*-0\.1"),
    (dict(beta=-1.0), r"beta.*-1\.0"),
    (dict(n_updates=0), r"n_updates.*0"),
    (dict(n_tokens=2.5), r"n_tokens.*2\.5"),
    (dict(batch_size=-4), r"batch_size.*-4"),
    (dict(learning_rate=0.0), r"learning_rate.*0\.0"),
    (dict(temperature=-1.0), r"temperature.*-1\.0"),
    (dict(gamma=1.5), r"gamma.*1\.5"),
    (dict(gae_lambda=-0.5), r"gae_lambda.*-0\.5"),
    (dict(clip_range_vf=0.0), r"clip_range_vf.*0\.0"),
    (dict(vf_coef=-0.5), r"vf_coef.*-0\.5"),
    (dict(max_grad_norm=0.0), r"max_grad_norm.*0\.0"),
])
def test_rlconfig_errors_name_the_argument_and_value(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RLConfig(**kwargs)


def test_rlconfig_defaults_are_the_lessons():
    c = RLConfig()
    assert (c.n_updates, c.n_completions, c.group_size, c.n_tokens, c.kl_coef, c.beta) == (
        30, 64, 8, 10, 0.2, 0.4)
    RLConfig(kl_coef=0.0, beta=0.0, n_completions=12, group_size=4)   # the edges are allowed


def test_trainers_reject_what_does_not_fit():
    lm = TinyLM()
    with pytest.raises(ValueError, match=r"n_tokens=14.*block_size=16"):
        train_ppo(lm, None, RLConfig(n_tokens=14))
    with pytest.raises(ValueError, match=r"group_size=1"):
        train_grpo(lm, None, RLConfig(group_size=1))


def test_train_reward_model_argument_errors():
    c = completions("good . the room was", "bad . the room was")
    with pytest.raises(ValueError, match=r"rejected has shape \(1, 5\).*chosen.*\(2, 5\)"):
        train_reward_model(c, c[:1])
    with pytest.raises(ValueError, match=r"n_pairs >= 1.*\(0, 5\)"):
        train_reward_model(c[:0], c[:0])
    with pytest.raises(ValueError, match=r"steps.*0"):
        train_reward_model(c, c, steps=0)


# --- the shared pre-trained LM and reward model ------------------------------------------

@pytest.fixture(scope="module")
def lesson():
    """TinyLM pre-trained and a reward model fitted on 1000 pairs, as lesson 11 does."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lm = TinyLM()
    pretrain(lm, seed=0)
    chosen, rejected = preference_pairs(lm, n_pairs=1000, seed=0)
    reward_model, _ = train_reward_model(chosen, rejected)
    state = {k: v.clone() for k, v in lm.state_dict().items()}
    return dict(lm=lm, reward_model=reward_model, chosen=chosen, rejected=rejected,
                state=state)


@pytest.fixture(scope="module")
def run(lesson):
    """run(algorithm, seed=0, **config) -> history, each distinct run trained once."""
    @functools.cache
    def cached(algorithm, seed, items):
        train = train_ppo if algorithm == "ppo" else train_grpo
        config = RLConfig(**{"n_updates": N_UPDATES, **dict(items)})
        return train(lesson["lm"], lesson["reward_model"], config, seed=seed)[1]

    return lambda algorithm, seed=0, **config: cached(algorithm, seed,
                                                      tuple(sorted(config.items())))


@pytest.mark.slow
def test_preference_pairs(lesson):
    chosen, rejected = lesson["chosen"], lesson["rejected"]
    assert chosen.shape == rejected.shape == (1000, 13)
    assert torch.equal(chosen[:, :3], rejected[:, :3])               # one prompt per pair
    assert (chosen[:, 0] == TOKEN["the"]).all() and (chosen[:, 2] == TOKEN["was"]).all()
    assert (annotator_scores(chosen[:, 3:]) > annotator_scores(rejected[:, 3:])).all()
    short_c, short_r = preference_pairs(lesson["lm"], n_pairs=7, n_tokens=4, seed=3)
    assert short_c.shape == short_r.shape == (7, 7)
    again = preference_pairs(lesson["lm"], n_pairs=7, n_tokens=4, seed=3)
    assert torch.equal(again[0], short_c) and torch.equal(again[1], short_r)
    for kwargs, pattern in ((dict(n_pairs=0), "n_pairs.*0"), (dict(n_pairs=5, n_tokens=0),
                                                               "n_tokens.*0")):
        with pytest.raises(ValueError, match=pattern):
            preference_pairs(lesson["lm"], **kwargs)


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs(lesson):
    # measured: 97.6% of these 500 held-out pairs (the flipped loss: 2.4%); with pre-training
    # and pair seeds 0, 1, 2 and 1000 held-out pairs of seed + 50: 95.8%, 95.9%, 95.5% (the
    # flipped loss 4.2%, 4.1%, 4.5%); every positive adjective >= +9, every negative <= -9.6
    held_c, held_r = preference_pairs(lesson["lm"], n_pairs=500, seed=1)
    model = lesson["reward_model"]
    accuracy = (model.score(held_c) > model.score(held_r)).float().mean().item()
    assert accuracy >= 0.9, f"held-out pairs ranked right: {accuracy:.1%}"
    values = model.word_values()
    assert min(values[w] for w in POSITIVE) > max(values[w] for w in NEGATIVE) + 5
    assert not any(p.requires_grad for p in model.parameters())      # returned frozen
    flipped, _ = train_reward_model(lesson["chosen"], lesson["rejected"],
                                    loss_fn=flipped_bradley_terry)
    wrong = (flipped.score(held_c) > flipped.score(held_r)).float().mean().item()
    assert wrong <= 0.2, f"loss_fn ignored? a sign-flipped loss still ranks {wrong:.1%} right"


# --- RLHF learning checks (slow) ----------------------------------------------------------

def last(history, key, n=5):
    return float(np.mean(history[key][-n:]))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ppo_raises_the_reward_and_stays_grammatical(run):
    h = run("ppo")
    assert all(len(h[k]) == N_UPDATES for k in KEYS)
    # measured (seeds 0, 1, 2): reward 1.79 -> 3.41, 1.75 -> 3.44, 1.93 -> 3.43 (last 5);
    # sentiment -0.16 -> 1.89, -0.20 -> 1.93, 0.02 -> 1.89; median grammatical share of the
    # last 10 updates 0.95, 0.95, 0.93 (single updates dip to 0.8; with other pre-training
    # seeds to 0.05, then recover); KL of the last 5 updates 1.4, 1.5, 1.7 nats
    assert last(h, "reward") >= h["reward"][0] + 1.0, h["reward"]
    assert last(h, "sentiment") >= h["sentiment"][0] + 1.0, h["sentiment"]
    assert np.median(h["grammatical"][-10:]) >= 0.8, h["grammatical"]
    assert last(h, "kl") < 5.0, h["kl"]
    assert h["kl"][0] == 0.0       # the first rollout is the reference's own


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ppo_without_kl_hacks_the_reward_model(run):
    h, kept = run("ppo", kl_coef=0.0), run("ppo")
    # measured (seeds 0, 1, 2): last-5 reward 6.19, 5.13, 4.66 against 3.41, 3.44, 3.43 with
    # the KL penalty; grammatical share of the last 5 updates 0.00 for each ("great great
    # great ..."); KL 47, 22, 17 nats
    assert last(h, "reward") > last(kept, "reward") + 0.5
    assert last(h, "grammatical") <= 0.2, h["grammatical"]
    assert last(h, "kl") > 10.0, h["kl"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_grpo_raises_the_reward_and_stays_grammatical(run):
    h = run("grpo")
    # measured (seeds 0, 1, 2): reward 1.61 -> 3.25, 1.99 -> 3.25, 1.99 -> 3.27; sentiment
    # -0.31 -> 1.70, 0.09 -> 1.67, 0.14 -> 1.68; median grammatical share of the last 10
    # updates 0.92 each (single updates down to 0.77); KL of the last 5: 1.9, 1.3, 1.3
    assert last(h, "reward") >= h["reward"][0] + 0.8, h["reward"]
    assert last(h, "sentiment") >= h["sentiment"][0] + 0.8, h["sentiment"]
    assert np.median(h["grammatical"][-10:]) >= 0.8, h["grammatical"]
    assert last(h, "kl") < 5.0, h["kl"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_grpo_without_kl_hacks_the_reward_model(run):
    h, kept = run("grpo", beta=0.0), run("grpo")
    # measured (seeds 0, 1, 2): last-5 reward 4.74, 4.59, 5.30 against 3.25, 3.25, 3.27;
    # grammatical share of the last 5 updates 0.00; KL 18, 18, 34 nats
    assert last(h, "reward") > last(kept, "reward") + 0.5
    assert last(h, "grammatical") <= 0.2, h["grammatical"]
    assert last(h, "kl") > 10.0, h["kl"]


@pytest.mark.slow
@pytest.mark.parametrize("train", [train_ppo, train_grpo])
def test_training_is_deterministic_and_leaves_the_lm_alone(lesson, train):
    config = RLConfig(n_updates=3)
    lm, rm = lesson["lm"], lesson["reward_model"]
    policy_a, a = train(lm, rm, config, seed=0)
    policy_b, b = train(lm, rm, config, seed=0)
    _, c = train(lm, rm, config, seed=1)
    for key in ("reward", "kl", "sentiment", "grammatical", "samples"):
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["reward"], c["reward"])
    # the samples kept to read: prompt + completion token ids of the first completions
    assert a["samples"].shape == (3, SAMPLES_KEPT, 3 + config.n_tokens)
    rows = a["samples"].reshape(-1, 3 + config.n_tokens)
    assert all(decode(row[[0, 2]]) == "the was" for row in rows)
    for (name, p), q in zip(policy_a.state_dict().items(), policy_b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(policy_a.lm_head.weight, lm.lm_head.weight)   # it learned
    for name, p in lm.state_dict().items():                              # the reference
        assert torch.equal(p, lesson["state"][name]), f"train changed the LM's {name}"


@pytest.mark.slow
def test_rewards_fn_and_advantages_fn_are_called_with_the_shapes(lesson):
    lm, rm = lesson["lm"], lesson["reward_model"]
    config = RLConfig(n_updates=2, n_completions=12, group_size=4, n_tokens=5, n_epochs=1,
                      kl_coef=0.3)
    calls = []

    def rewards_spy(scores, logprobs, ref_logprobs, kl_coef):
        calls.append((tuple(scores.shape), tuple(logprobs.shape), tuple(ref_logprobs.shape),
                      kl_coef))
        return rlhf.kl_penalized_rewards(scores, logprobs, ref_logprobs, kl_coef)

    def advantages_spy(rewards):
        calls.append(tuple(rewards.shape))
        return rlhf.group_relative_advantages(rewards)

    train_ppo(lm, rm, config, rewards_fn=rewards_spy)
    assert calls == [((12,), (12, 5), (12, 5), 0.3)] * 2          # (B,), (B, T) per update
    calls.clear()
    train_grpo(lm, rm, config, advantages_fn=advantages_spy)
    assert calls == [(3, 4)] * 2                                     # (P, G) per update


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_a_sign_flipped_learner_function_lowers_the_reward(lesson, algorithm):
    # the trainers really learn from rewards_fn / advantages_fn: flip the sign and the score
    # falls. measured over 10 updates (seeds 0, 1, 2): last 5 minus first, PPO -1.17, -1.07,
    # -1.18; GRPO -0.78, -1.22, -1.09 (with the real functions it rises by more than 1)
    lm, rm, config = lesson["lm"], lesson["reward_model"], RLConfig(n_updates=10)
    if algorithm == "ppo":
        _, h = train_ppo(lm, rm, config, rewards_fn=lambda s, lp, ref, k:
                         rlhf.kl_penalized_rewards(-s, lp, ref, k))
    else:
        _, h = train_grpo(lm, rm, config,
                          advantages_fn=lambda r: -rlhf.group_relative_advantages(r))
    assert last(h, "reward") < h["reward"][0] - 0.3, h["reward"]


def test_is_grammatical_agrees_with_grammatical():
    c = completions("good . the room was good . the food was", "good " * 9 + "good")
    assert [is_grammatical(row, 3) for row in c] == grammatical(c).bool().tolist()


def test_preference_pairs_gives_up_on_an_lm_whose_pairs_all_tie():
    """An untrained TinyLM writes no reviews: every pair is tied at -10 and dropped."""
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"only \d untied pairs of the n_pairs=8 .*pre-trained"):
        preference_pairs(TinyLM(), n_pairs=8, n_tokens=4)

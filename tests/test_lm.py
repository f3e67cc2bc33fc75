"""ppo_lib.lm: the review language and its grammar machine, TinyLM, sampling with
log-probabilities, the word-value reward model, and pre-training (a slow learning check)."""

import numpy as np
import pytest
import torch

from ppo_lib.lm import (NEGATIVE, NOUNS, POSITIVE, VOCAB, LMConfig, TinyLM, WordRewardModel,
                        completion_logits, corpus, decode, encode, generate, grammar_state,
                        is_grammatical, pretrain, sample_review, sentiment)
from ppo_lib.rlhf import token_logprobs

torch.set_num_threads(1)

GRAMMATICAL = [
    "the movie was good .",
    "the food was very bad .",
    "the movie was good and the food was great .",
    "the plot was dull but the music was very fun .",
    "the staff was nice . the room was slow .",
    # grammatical is about the hard rule only: "and" between opposite sentiments reads
    "the room was good and the food was awful .",
]
UNGRAMMATICAL = [
    "the movie was good and the food was great and the plot was fun .",  # a second clause
    "the movie was good but the food was great but",                     # may only end with "."
    "the movie was very very good .",
    "the movie was .",
    "the was good .",
    "movie was good .",
    "the movie good .",
    "the movie was good the food was bad .",
    "the movie was good and .",
    "the movie was good . .",
    "good good good",
]


def ids(text):
    return torch.tensor(encode(text))


# --- the language -------------------------------------------------------------------------

def test_every_sampled_review_is_grammatical_and_ends_a_review():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        review = sample_review(rng)
        assert is_grammatical(review), decode(review)
        assert grammar_state(review) == 0, decode(review)
        assert decode(review).endswith(" .")


def test_corpus_is_a_grammatical_stream_of_the_requested_length():
    stream = corpus(5000, seed=3)
    assert stream.shape == (5000,) and stream.dtype == torch.int64
    assert is_grammatical(stream)
    assert torch.equal(stream, corpus(5000, seed=3))
    assert not torch.equal(stream, corpus(5000, seed=4))
    with pytest.raises(ValueError, match=r"n_tokens.*0"):
        corpus(0, seed=0)


@pytest.mark.parametrize("text", GRAMMATICAL)
def test_hand_written_grammatical(text):
    assert is_grammatical(encode(text))
    assert grammar_state(encode(text)) == 0


@pytest.mark.parametrize("text", UNGRAMMATICAL)
def test_hand_written_ungrammatical(text):
    assert not is_grammatical(encode(text))
    with pytest.raises(ValueError, match="not grammatical"):
        grammar_state(encode(text))


def test_grammar_state_walks_the_machine():
    expected = {"": 0, "the": 1, "the movie": 2, "the movie was": 3, "the movie was very": 4,
                "the movie was good": 5, "the movie was good and": 7,
                "the movie was good but the": 8, "the movie was good but the food": 9,
                "the movie was good but the food was": 10,
                "the movie was good but the food was very": 11,
                "the movie was good but the food was very bad": 6,
                "the movie was good but the food was very bad .": 0}
    for text, state in expected.items():
        assert grammar_state(encode(text)) == state, text
    with pytest.raises(ValueError, match="'and'"):
        grammar_state(encode("the movie was good but the food was bad and"))


def test_a_completion_is_read_from_the_prompts_state():
    # after "the movie was" the machine is in state 3 (the RLHF prompts' start state)
    assert is_grammatical(encode("good . the room was good"), start_state=3)
    assert is_grammatical(encode("very nice but the food was bad ."), start_state=3)
    assert not is_grammatical(encode("good good good"), start_state=3)
    assert not is_grammatical(encode("the movie was good"), start_state=3)
    # inside a second clause only "." may follow the adjective
    assert is_grammatical(encode("good ."), start_state=10)
    assert not is_grammatical(encode("good and"), start_state=10)


def test_and_keeps_and_but_flips_sentiment_in_the_corpus():
    words = decode(corpus(20_000, seed=1)).split(" . ")[:-1]   # whole reviews only
    agree = {"and": [], "but": []}
    for review in words:
        for joiner in ("and", "but"):
            if f" {joiner} " in review:
                first, second = review.split(f" {joiner} ")
                a, b = (sentiment(torch.tensor(encode(c))).item() for c in (first, second))
                assert abs(a) == 1 and abs(b) == 1, review
                agree[joiner].append(a == b)
    assert len(agree["and"]) > 300 and len(agree["but"]) > 300
    assert all(agree["and"]), "'and' joined two clauses of opposite sentiment"
    assert not any(agree["but"]), "'but' joined two clauses of the same sentiment"


def test_encode_decode_round_trip():
    for text in GRAMMATICAL + UNGRAMMATICAL:
        assert decode(encode(text)) == text
    assert encode(decode(range(len(VOCAB)))) == list(range(len(VOCAB)))
    assert decode(torch.tensor([0, 6, 1, 12])) == "the movie was good"
    assert len(VOCAB) == len(set(VOCAB)) == 6 + len(NOUNS) + len(POSITIVE) + len(NEGATIVE)


def test_unknown_word_error_names_it():
    with pytest.raises(ValueError, match="pizza"):
        encode("the pizza was good")
    with pytest.raises(ValueError, match=r"'Good'"):
        encode("the movie was Good")


def test_sentiment_counts_positive_minus_negative():
    rows = torch.stack([ids("the movie was very good but the food was bad"),
                        ids("the movie was good and the food was great ."),
                        ids(" ".join(["great"] * 10)),
                        ids("the movie was dull and the food was slow .")])
    assert torch.equal(sentiment(rows), torch.tensor([0.0, 2.0, 10.0, -2.0]))
    assert sentiment(rows).dtype == torch.float32
    batched = torch.stack([rows, rows.flip(0)])                       # (..., T)
    assert torch.equal(sentiment(batched), torch.tensor([[0.0, 2, 10, -2], [-2.0, 10, 2, 0]]))


# --- TinyLM -------------------------------------------------------------------------------

@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyLM().eval()


def test_shapes(model):
    tokens = torch.randint(len(VOCAB), (3, 7))
    assert model(tokens).shape == (3, 7, len(VOCAB))
    assert model.hidden(tokens).shape == (3, 7, model.config.n_embd)
    small = TinyLM(LMConfig(block_size=8, n_layer=1, n_head=2, n_embd=16))
    assert small(tokens).shape == (3, 7, len(VOCAB))


def test_causal_changing_a_later_token_leaves_earlier_logits(model):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(len(VOCAB), (4, 12), generator=g)
    logits = model(tokens)
    for t in range(11):
        changed = tokens.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % len(VOCAB)
        new = model(changed)
        torch.testing.assert_close(new[:, :t + 1], logits[:, :t + 1], rtol=0, atol=1e-6)
        assert (new[:, t + 1:] - logits[:, t + 1:]).abs().max() > 1e-4   # it does read it


def test_block_size_and_token_errors(model):
    with pytest.raises(ValueError, match=r"17 positions.*block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    model(torch.zeros(1, 16, dtype=torch.long))                      # the longest context
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 19\].*got ids from 0 to 20"):
        model(torch.tensor([[0, 20]]))
    with pytest.raises(ValueError, match=r"-1"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        model(torch.arange(5))
    with pytest.raises(ValueError, match="float32"):
        model(torch.zeros(1, 3))


def test_completion_logits_are_generates_per_step_logits(model):
    g = torch.Generator().manual_seed(2)
    prompts = torch.tensor([encode("the movie was"), encode("the food was")] * 3)
    for temperature in (1.0, 0.7):
        completions, logprobs = generate(model, prompts, 8, g, temperature)
        assert completions.shape == logprobs.shape == (6, 8)
        assert completions.dtype == torch.int64 and (logprobs <= 0).all()
        logits = completion_logits(model, prompts, completions)
        assert logits.shape == (6, 8, len(VOCAB))
        tokens = torch.cat([prompts, completions], dim=1)
        for k in range(8):   # what generate computed at step k: a forward over the prefix
            step = model(tokens[:, :3 + k])[:, -1]
            torch.testing.assert_close(logits[:, k], step, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(token_logprobs(logits / temperature, completions), logprobs,
                                   rtol=0, atol=1e-5)


def test_generate_is_deterministic_with_a_seeded_generator(model):
    prompts = torch.tensor([encode("the movie was")] * 8)
    a = generate(model, prompts, 10, torch.Generator().manual_seed(5))
    b = generate(model, prompts, 10, torch.Generator().manual_seed(5))
    c = generate(model, prompts, 10, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_generate_argument_errors(model):
    prompts = torch.tensor([encode("the movie was")])
    g = torch.Generator()
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match=rf"temperature.*{temperature}"):
            generate(model, prompts, 3, g, temperature=temperature)
    with pytest.raises(ValueError, match=r"n_tokens.*0"):
        generate(model, prompts, 0, g)
    with pytest.raises(ValueError, match=r"prompts.*\(3,\)"):
        generate(model, prompts[0], 3, g)
    with pytest.raises(ValueError, match=r"prompts.*\(1, 0\)"):
        generate(model, prompts[:, :0], 3, g)


# --- the word-value reward model ----------------------------------------------------------

def test_word_reward_model_scores_the_mean_word_value():
    rm = WordRewardModel()
    assert torch.equal(rm.score(ids("the movie was good").unsqueeze(0)), torch.zeros(1))
    values = torch.linspace(-1.0, 2.0, len(VOCAB))
    with torch.no_grad():
        rm.values.weight.copy_(values.unsqueeze(1))
    tokens = torch.stack([ids("the movie was good"), ids("great great great great")])
    torch.testing.assert_close(rm.score(tokens), values[tokens].mean(dim=1))
    # bag of words: order does not matter, repetition does not dilute
    torch.testing.assert_close(rm.score(tokens.flip(1)), rm.score(tokens))
    word_values = rm.word_values()
    assert list(word_values) == [VOCAB[i] for i in values.argsort(descending=True)]
    assert list(word_values.values()) == sorted(word_values.values(), reverse=True)
    assert word_values["the"] == pytest.approx(-1.0)


# --- pre-training (slow) ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(120)
def test_pretrained_model_writes_grammatical_reviews():
    # measured (500 samples of 10 tokens after "the movie was"): seeds 0, 1, 2 give 97.2%,
    # 97.8%, 97.0% grammatical; final loss 0.99, 1.00, 0.98 nats (lesson 11 uses seed 0)
    torch.manual_seed(0)
    lm = TinyLM()
    losses = pretrain(lm, seed=0)
    assert len(losses) == 500
    assert np.mean(losses[:5]) > 2.5                # about log(20) = 3.0 at the start
    assert np.mean(losses[-20:]) < 1.2
    g = torch.Generator().manual_seed(100)
    completions, _ = generate(lm, torch.tensor([encode("the movie was")] * 500), 10, g)
    share = np.mean([is_grammatical(row, start_state=3) for row in completions])
    assert share >= 0.9, f"only {share:.1%} of the samples are grammatical"

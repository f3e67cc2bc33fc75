"""A tiny language and a tiny causal transformer that learns it (lesson 11).

The language: short restaurant-and-film reviews, one word per token, that anyone can read.

    review := "the" NOUN "was" ADJP [("and" | "but") "the" NOUN "was" ADJP] "."
    ADJP   := ADJ | "very" ADJ

A text is reviews one after another. In the corpus the model is pre-trained on, "and" joins
two clauses of the same sentiment and "but" two of opposite sentiment (a soft rule the model
learns; the grammar above is the hard one). ``is_grammatical`` checks the grammar with a
finite-state machine, ``sentiment`` counts positive minus negative adjectives.

The model: ``TinyLM``, a GPT in the manner of nanoGPT (token + position embeddings, pre-norm
blocks of causal self-attention and an MLP, a final LayerNorm and a linear head), a few tens
of thousands of parameters. ``generate`` samples completions and returns the log-probability
of every sampled token under the sampling policy, what PPO needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .grad_mode import check_trainable, trains
from .validation import check_in_range, check_positive_int, check_tensor

NOUNS = ("movie", "food", "music", "plot", "staff", "room")
POSITIVE = ("good", "great", "nice", "fun")
NEGATIVE = ("bad", "dull", "awful", "slow")
VOCAB = ("the", "was", "and", "but", "very", ".") + NOUNS + POSITIVE + NEGATIVE
TOKEN = {word: i for i, word in enumerate(VOCAB)}
_POS_IDS = [TOKEN[w] for w in POSITIVE]
_NEG_IDS = [TOKEN[w] for w in NEGATIVE]


def encode(text: str) -> list[int]:
    """Token ids of a text of words separated by spaces; an unknown word is a ValueError."""
    unknown = [w for w in text.split() if w not in TOKEN]
    if unknown:
        raise ValueError(f"text has words outside the vocabulary: {unknown}; the vocabulary "
                         f"is {' '.join(VOCAB)}")
    return [TOKEN[w] for w in text.split()]


def decode(tokens) -> str:
    """The text of a sequence of token ids."""
    return " ".join(VOCAB[int(t)] for t in tokens)


def sample_review(rng: np.random.Generator) -> list[int]:
    """One review of the corpus: one or two clauses; a second clause joined by "and" keeps the
    first's sentiment, by "but" flips it."""
    def clause(positive: bool) -> list[str]:
        adjective = rng.choice(POSITIVE if positive else NEGATIVE)
        very = ["very"] if rng.random() < 0.25 else []
        return ["the", rng.choice(NOUNS), "was", *very, adjective]

    positive = bool(rng.random() < 0.5)
    words = clause(positive)
    if rng.random() < 0.5:
        joiner = "and" if rng.random() < 0.5 else "but"
        words += [joiner] + clause(positive if joiner == "and" else not positive)
    return encode(" ".join(words + ["."]))


def corpus(n_tokens: int, seed: int) -> Tensor:
    """A stream of reviews, ``n_tokens`` long (int64), to pre-train on."""
    check_positive_int("n_tokens", n_tokens)
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    while len(stream) < n_tokens:
        stream += sample_review(rng)
    return torch.tensor(stream[:n_tokens])


# The grammar as a finite-state machine: state -> {word class: next state}. States: 0 before
# "the", 1 before a noun, 2 before "was", 3 before an adjective or "very", 4 after "very",
# 5 after the first clause's adjective, 6 after a second clause's adjective; states 7-10
# are 0-3 and 4 inside a second clause (which may only end with ".").
_CLASS = {**{w: w for w in ("the", "was", "and", "but", "very", ".")},
          **{w: "NOUN" for w in NOUNS}, **{w: "ADJ" for w in POSITIVE + NEGATIVE}}
_MACHINE = {0: {"the": 1}, 1: {"NOUN": 2}, 2: {"was": 3}, 3: {"very": 4, "ADJ": 5},
            4: {"ADJ": 5}, 5: {"and": 7, "but": 7, ".": 0},
            7: {"the": 8}, 8: {"NOUN": 9}, 9: {"was": 10}, 10: {"very": 11, "ADJ": 6},
            11: {"ADJ": 6}, 6: {".": 0}}


def is_grammatical(tokens, start_state: int = 0) -> bool:
    """True when ``tokens`` can be read by the grammar, starting in ``start_state`` (0: at the
    start of a review; a completion of the prompt "the movie was" starts in state 3)."""
    state = start_state
    for t in tokens:
        state = _MACHINE[state].get(_CLASS[VOCAB[int(t)]])
        if state is None:
            return False
    return True


def grammar_state(tokens) -> int:
    """The machine's state after reading ``tokens`` from the start of a review (a ValueError
    if they are not grammatical)."""
    state = 0
    for t in tokens:
        nxt = _MACHINE[state].get(_CLASS[VOCAB[int(t)]])
        if nxt is None:
            raise ValueError(f"tokens are not grammatical at {VOCAB[int(t)]!r}: "
                             f"{decode(tokens)!r}")
        state = nxt
    return state


def sentiment(tokens: Tensor) -> Tensor:
    """Positive minus negative adjectives of each row of ``tokens`` (..., T) -> (...,)."""
    positive = torch.isin(tokens, torch.tensor(_POS_IDS)).sum(-1)
    negative = torch.isin(tokens, torch.tensor(_NEG_IDS)).sum(-1)
    return (positive - negative).float()


@dataclass
class LMConfig:
    """The size of a TinyLM."""

    vocab_size: int = len(VOCAB)
    block_size: int = 16   # the longest context it reads (prompt + completion)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: LMConfig):
        super().__init__()
        self.n_head = config.n_head
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd))

    def attention(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # token t sees tokens <= t
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyLM(nn.Module):
    """A causal transformer language model. ``forward(tokens)`` (B, T) -> logits (B, T, V):
    row t predicts token t + 1. ``hidden(tokens)`` gives the last layer's features (B, T, C),
    which a reward model or a value head reads."""

    def __init__(self, config: LMConfig | None = None):
        super().__init__()
        self.config = config = config or LMConfig()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden(self, tokens: Tensor) -> Tensor:
        check_tensor("tokens", tokens)
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be integer token ids of shape (B, T), got shape "
                             f"{tuple(tokens.shape)} and dtype {tokens.dtype}")
        V = self.config.vocab_size
        if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < V):
            raise ValueError(f"tokens must be ids in [0, {self.config.vocab_size - 1}] "
                             f"(vocab_size={self.config.vocab_size}), got ids from "
                             f"{int(tokens.min())} to {int(tokens.max())}")
        T = tokens.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"tokens has {T} positions, more than block_size="
                             f"{self.config.block_size}")
        x = self.wte(tokens) + self.wpe(torch.arange(T))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.lm_head(self.hidden(tokens))


class ScalarHead(nn.Module):
    """A transformer with a scalar head at every position: RLHF-PPO's value model, V(s_t) at
    position t. Built from a TinyLM, whose body it copies."""

    def __init__(self, body: TinyLM):
        super().__init__()
        self.body = TinyLM(body.config)
        self.body.load_state_dict(body.state_dict())
        self.head = nn.Linear(body.config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) -> (B, T): the scalar at every position."""
        return self.head(self.body.hidden(tokens)).squeeze(-1)


class WordRewardModel(nn.Module):
    """A reward model that gives every word a value and scores a text by the mean value of
    its words: s(x, y) = mean_t w[token_t]. Linear in word counts, like a logistic regression
    on a bag of words; it never reads word order, so nothing tells it that "great great
    great" is not a review (lesson 11's reward hacking)."""

    def __init__(self, vocab_size: int = len(VOCAB)):
        super().__init__()
        self.values = nn.Embedding(vocab_size, 1)
        nn.init.zeros_(self.values.weight)

    def score(self, tokens: Tensor) -> Tensor:
        """(B, T) -> (B,)."""
        return self.values(tokens).squeeze(-1).mean(dim=1)

    def word_values(self) -> dict[str, float]:
        """Each word's value, highest first."""
        w = self.values.weight.detach().squeeze(-1).tolist()
        return dict(sorted(zip(VOCAB, w), key=lambda kv: -kv[1]))


@trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
def pretrain(model: TinyLM, steps: int = 500, batch_size: int = 32, lr: float = 3e-3,
             seed: int = 0, progress: bool = False) -> list[float]:
    """Next-token prediction on ``corpus``: cross-entropy of logits[:, t] against token t+1.
    Returns the loss of every step."""
    check_positive_int("steps", steps)
    check_trainable("model", model)
    torch.manual_seed(seed)
    T = model.config.block_size
    data = corpus(200_000, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    steps_iter = range(steps)
    if progress:
        from tqdm.auto import tqdm
        steps_iter = tqdm(steps_iter, desc="pre-training")
    for _ in steps_iter:
        starts = torch.randint(len(data) - T - 1, (batch_size,), generator=generator)
        x = torch.stack([data[s:s + T] for s in starts.tolist()])
        y = torch.stack([data[s + 1:s + T + 1] for s in starts.tolist()])
        loss = F.cross_entropy(model(x).reshape(-1, model.config.vocab_size), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def generate(model: TinyLM, prompts: Tensor, n_tokens: int, generator: torch.Generator,
             temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Sample ``n_tokens`` after each prompt (B, P). Returns ``(completions, logprobs)``, both
    (B, n_tokens): the sampled tokens and log pi(token | everything before it) under
    ``model`` at ``temperature``, the log-probabilities PPO's ratio starts from."""
    check_positive_int("n_tokens", n_tokens)
    check_in_range("temperature", temperature, 0.0, float("inf"), low_open=True)
    check_tensor("prompts", prompts)
    if prompts.dim() != 2 or prompts.shape[1] == 0:
        raise ValueError(f"prompts must be (B, P) token ids with P >= 1, got shape "
                         f"{tuple(prompts.shape)}")
    tokens = prompts
    logprobs = []
    for _ in range(n_tokens):
        logits = model(tokens)[:, -1] / temperature
        log_p = torch.log_softmax(logits, dim=-1)
        nxt = torch.multinomial(log_p.exp(), 1, generator=generator)
        logprobs.append(log_p.gather(-1, nxt))
        tokens = torch.cat([tokens, nxt], dim=1)
    return tokens[:, prompts.shape[1]:], torch.cat(logprobs, dim=1)


def completion_logits(model: TinyLM, prompts: Tensor, completions: Tensor) -> Tensor:
    """The logits that predicted each completion token, (B, T, V): one forward pass over
    prompt + completion, read from the prompt's last position to the one before the end."""
    tokens = torch.cat([prompts, completions], dim=1)
    P = prompts.shape[1]
    return model(tokens)[:, P - 1:-1]

"""Motor ("say X") features: output directions dominated by one word.

A feature's logit-lens vector u = W_U N_final Σ_m d_s^(m) (`loaders.connections`) is
standardized over the vocabulary, z = (u − mean u) / std u. Tokens are grouped into words by
`normalize_token` (casing, leading spaces and byte-level space markers folded), and a word's
score is the largest z among its tokens. With w₁, w₂ the two best-scoring words:

    motor(s) ⇔ z(w₁) ≥ min_z  and  z(w₁) − z(w₂) ≥ min_gap

i.e. the direction singles out one word far above the vocabulary and clearly above every
other word: steering the feature up makes the model say that word. The thresholds are
scale-free (z-scores), so the rule reads the same for any model or dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from loaders.graph.schema import normalize_token


@dataclass(frozen=True)
class MotorRule:
    """Thresholds of the motor rule (module docstring)."""

    min_z: float = 6.0
    """The top word must stand this many standard deviations above the vocabulary mean."""
    min_gap: float = 2.0
    """…and this many above the second word."""

    def __call__(self, top_z: float, gap: float) -> bool:
        return bool(top_z >= self.min_z and gap >= self.min_gap)


def word_groups(token_strings: list[str], special: frozenset[int] = frozenset()) -> tuple[np.ndarray, list[str]]:
    """(group of each token id, the words); tokens that normalize to nothing, and the
    tokenizer's `special` token ids (BOS, EOS, padding: no model "says" them), get group −1."""
    words: dict[str, int] = {}
    groups = np.full(len(token_strings), -1, np.int64)
    for i, text in enumerate(token_strings):
        w = normalize_token(text)
        if w and i not in special:
            groups[i] = words.setdefault(w, len(words))
    return groups, list(words)


def word_scores(logits: Tensor, groups: Tensor, n_words: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per row of `logits` (feature, vocab): best word, its z, and its gap to the next word."""
    z = (logits - logits.mean(-1, keepdim=True)) / logits.std(-1, keepdim=True).clamp_min(1e-12)
    valid = groups >= 0
    per_word = torch.full((z.shape[0], n_words), -torch.inf, dtype=z.dtype, device=z.device)
    idx = groups[valid].expand(z.shape[0], -1)
    per_word = per_word.scatter_reduce(1, idx, z[:, valid], reduce="amax")  # (feature, word)
    top = per_word.topk(min(2, n_words), dim=-1)
    second = top.values[:, 1] if n_words > 1 else torch.full_like(top.values[:, 0], -torch.inf)
    return top.indices[:, 0], top.values[:, 0], top.values[:, 0] - second

"""The logit lens of dictionary features: what each feature's output says in the vocabulary.

A feature's direct effect on the logits, with the final norm's σ frozen at its corpus mean
σ̄_final (DESIGN.md):

    u_s = W_U N_final Σ_{m ≥ l_s} W_m d_s^(m)        (vocab,)

where W_m maps a write at layer m to the residual stream (`loaders.connections.Writes`:
identity, or Gemma-2's post-MLP norm for writes at ``mlp_module_out``). `top_unembeds` keeps
the top and bottom tokens of every u_s and, given the decoded vocabulary, the word scores the
motor rule reads (`loaders.motor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from loaders.connections import Writes, summed_decoder
from loaders.dictionary import Dictionary
from loaders.model import HookedModel


@dataclass(frozen=True)
class Unembeds:
    """Every feature's logit lens, rows in global feature order (layer-major)."""

    top_ids: np.ndarray
    """(feature, k) token ids, largest logit first."""
    top_values: np.ndarray
    """(feature, k) their logits."""
    bottom_ids: np.ndarray
    """(feature, k) token ids, smallest logit first."""
    bottom_values: np.ndarray
    top_word: np.ndarray | None
    """(feature,) index into `words` of the best word (with the vocabulary's strings)."""
    top_word_z: np.ndarray | None
    """(feature,) that word's z-score over the vocabulary."""
    word_gap: np.ndarray | None
    """(feature,) its margin over the next word (the motor rule's score)."""
    words: np.ndarray | None
    """The words tokens fold into (`loaders.motor.word_groups`)."""


def unembed_directions(
    model: HookedModel, d: Dictionary, sigma_final: float, writes: Writes | None = None
) -> dict[int, Tensor]:
    """N_final Σ_{m ≥ l_s} W_m d_s^(m) per dictionary layer: (feature, d_model) float64."""
    norm = model.final_norm()
    out = {}
    for layer in d.layers:
        total = summed_decoder(d, layer, below=10**9, writes=writes)
        assert total is not None
        out[layer] = norm.apply(total, sigma_final)
    return out


def top_unembeds(
    model: HookedModel,
    d: Dictionary,
    sigma_final: float,
    k: int = 10,
    chunk: int = 2048,
    token_strings: list[str] | None = None,
    writes: Writes | None = None,
    special: frozenset[int] = frozenset(),
) -> Unembeds:
    """Logit-lens top and bottom `k` token ids and values of every feature (global order).

    With `token_strings` (the decoded vocabulary) it also returns, per feature, the word
    scores of `loaders.motor`: ``top_word`` (index into ``words``), ``top_word_z``, ``word_gap``;
    `special` token ids (BOS, EOS, padding) are no word.
    """
    from loaders.motor import word_groups, word_scores

    W_U = model.unembed().double()  # (vocab, d_model)
    out: dict[str, list[np.ndarray]] = {
        k_: []
        for k_ in (
            "top_ids",
            "top_values",
            "bottom_ids",
            "bottom_values",
            "top_word",
            "top_word_z",
            "word_gap",
        )
    }
    groups, words = word_groups(token_strings, special) if token_strings is not None else (np.zeros(0), [])
    group_t = torch.from_numpy(groups).to(W_U.device)
    for dirs in unembed_directions(model, d, sigma_final, writes).values():  # on the host, as decoders are
        for start in range(0, d.n_features, chunk):
            # on the model's device, where W_U is; only the top-k and word scores come back
            logits = dirs[start : start + chunk].to(W_U.device) @ W_U.T  # (feature, vocab)
            t, b = logits.topk(k, dim=-1), logits.topk(k, dim=-1, largest=False)
            out["top_ids"].append(t.indices.cpu().numpy())
            out["top_values"].append(t.values.cpu().numpy())
            out["bottom_ids"].append(b.indices.cpu().numpy())
            out["bottom_values"].append(b.values.cpu().numpy())
            if words:
                w, z, gap = word_scores(logits, group_t, len(words))
                out["top_word"].append(w.cpu().numpy())
                out["top_word_z"].append(z.cpu().numpy())
                out["word_gap"].append(gap.cpu().numpy())
    cat = {name: np.concatenate(parts) if parts else None for name, parts in out.items()}
    return Unembeds(
        cat["top_ids"], cat["top_values"], cat["bottom_ids"], cat["bottom_values"],  # type: ignore[arg-type]
        cat["top_word"], cat["top_word_z"], cat["word_gap"], np.asarray(words, dtype=object) if words else None,
    )  # fmt: skip

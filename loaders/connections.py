"""Virtual weights, ERA and TWERA, and each feature's top-k downstream and upstream edges.

Definitions (DESIGN.md), for source s at layer l_s and target t at layer l_t > l_s:

    V_st     = Σ_{l_s ≤ m < l_t} d_s^(m) · ẽ_t      residual-direct, same token
    ERA_st   = I_st · V_st                          I_st = E[1(a_t > 0) a_s]
    TWERA_st = (C_st / μ_t) · V_st                  C_st = E[a_s a_t], 0 when μ_t = 0

ẽ_t is the target's encoder seen from the residual stream. A raw residual read site
(``resid_mid``, ``resid_pre``, ``resid_post``) reads it directly: ẽ_t = e_t. The normalized
MLP input (``mlp_in``) is N(x) = γ ⊙ c(x) / σ with c the centring of LayerNorm (identity
for RMSNorm); freezing σ at σ̄_{l_t}, its corpus mean over the statistics' positions, makes N
linear and ẽ_t = Nᵀ e_t = c(γ ⊙ e_t) / σ̄ (the norm's bias is constant and drops out).

C_st / μ_t = C_sum / sum_t: the token count cancels. Only pairs that co-activate at least
once have non-zero ERA or TWERA, so candidates are the non-zeros of the sparse pair sums.
V is computed block by block (source layer × target layer, source rows in chunks).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from loaders.dictionary import Dictionary
from loaders.model import HookedModel
from loaders.stats import FeatureStats

RAW_SITES = ("resid_mid", "resid_pre", "resid_post")


def residual_encoders(model: HookedModel, d: Dictionary, sigma_mlp: np.ndarray) -> dict[int, Tensor]:
    """ẽ_t for every feature, per dictionary layer: (feature, d_model) float64."""
    out = {}
    for i, layer in enumerate(d.layers):
        e = d.W_enc[layer].double()
        if d.read_site in RAW_SITES:
            out[layer] = e
        elif d.read_site == "mlp_in":
            out[layer] = model.mlp_norm(layer).transpose_apply(e, float(sigma_mlp[i]))
        else:
            raise ValueError(f"virtual weights need a residual or MLP-input read site, not {d.read_site!r}")
    return out


def summed_decoder(d: Dictionary, layer: int, below: int) -> Tensor | None:
    """Σ d_s^(m) over the layers m < `below` that features of `layer` write to: (feature, d_model)."""
    parts = [p for m in d.write_targets(layer) if m < below and (p := d.decoder(layer, m)) is not None]
    if not parts:
        return None
    return torch.stack(parts).double().sum(0)


def virtual_weight_block(
    d: Dictionary,
    enc: dict[int, Tensor],
    source_layer: int,
    target_layer: int,
    rows: slice = slice(None),
) -> Tensor:
    """V for sources `rows` of `source_layer` × all targets of `target_layer`: (src, tgt)."""
    if target_layer <= source_layer:
        return torch.zeros(len(range(d.n_features)[rows]), d.n_features, dtype=torch.float64)
    dec = summed_decoder(d, source_layer, target_layer)
    if dec is None:
        return torch.zeros(len(range(d.n_features)[rows]), d.n_features, dtype=torch.float64)
    return dec[rows] @ enc[target_layer].T


def edges(
    model: HookedModel, d: Dictionary, stats: FeatureStats, top_k: int = 32, chunk: int = 4096
) -> dict[str, np.ndarray]:
    """Kept edges: each source's top-k downstream and each target's top-k upstream by |TWERA|.

    Returns columns source_layer, source_index, target_layer, target_index, virtual_weight,
    era, twera (int64 / float64), one row per distinct (source, target), sorted by source
    then descending |TWERA|.
    """
    F, L = d.n_features, len(d.layers)
    enc = residual_encoders(model, d, stats.sigma_mlp_mean)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("src", "tgt", "v", "era", "twera")}
    for i in range(L - 1):
        C = stats.C[i].tocoo()
        I = stats.I[i].tocsr()
        if C.nnz == 0:
            continue
        later_block = C.col // F  # 0 → layer i+1
        for j in range(i + 1, L):
            sel = later_block == (j - i - 1)
            src, tgt_local = C.row[sel], C.col[sel] - (j - i - 1) * F
            c_sum = C.data[sel]
            i_sum = np.asarray(I[src, C.col[sel]]).ravel()
            v = np.empty(len(src), np.float64)
            for start in range(0, F, chunk):
                in_chunk = (src >= start) & (src < start + chunk)
                if not in_chunk.any():
                    continue
                block = virtual_weight_block(d, enc, d.layers[i], d.layers[j], slice(start, start + chunk))
                v[in_chunk] = block.numpy()[src[in_chunk] - start, tgt_local[in_chunk]]
            t_glob = j * F + tgt_local
            sum_t = stats.sum[t_glob]
            twera = np.where(sum_t > 0, c_sum / np.where(sum_t > 0, sum_t, 1.0), 0.0) * v
            era = i_sum / max(stats.tokens, 1) * v
            cols["src"].append(i * F + src)
            cols["tgt"].append(t_glob)
            cols["v"].append(v)
            cols["era"].append(era)
            cols["twera"].append(twera)
    if not cols["src"]:
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return {
            "source_layer": empty_i,
            "source_index": empty_i,
            "target_layer": empty_i,
            "target_index": empty_i,
            "virtual_weight": empty_f,
            "era": empty_f,
            "twera": empty_f,
        }
    src, tgt = np.concatenate(cols["src"]), np.concatenate(cols["tgt"])
    v, era, twera = (np.concatenate(cols[k]) for k in ("v", "era", "twera"))
    nonzero = twera != 0
    src, tgt, v, era, twera = src[nonzero], tgt[nonzero], v[nonzero], era[nonzero], twera[nonzero]
    keep = _top_k_per_group(src, np.abs(twera), top_k) | _top_k_per_group(tgt, np.abs(twera), top_k)
    src, tgt, v, era, twera = src[keep], tgt[keep], v[keep], era[keep], twera[keep]
    order = np.lexsort((tgt, -np.abs(twera), src))
    layers = np.asarray(d.layers, dtype=np.int64)
    return {
        "source_layer": layers[src[order] // F],
        "source_index": (src[order] % F).astype(np.int64),
        "target_layer": layers[tgt[order] // F],
        "target_index": (tgt[order] % F).astype(np.int64),
        "virtual_weight": v[order],
        "era": era[order],
        "twera": twera[order],
    }


def _top_k_per_group(group: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k highest-scoring rows of each group (ties broken by row order)."""
    order = np.lexsort((np.arange(len(group)), -score, group))
    g = group[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    mask = np.zeros(len(group), bool)
    mask[order[rank < k]] = True
    return mask


def unembed_directions(model: HookedModel, d: Dictionary, sigma_final: float) -> dict[int, Tensor]:
    """N_final Σ_{m ≥ l_s} d_s^(m) per dictionary layer: (feature, d_model) float64."""
    norm = model.final_norm()
    out = {}
    for layer in d.layers:
        total = summed_decoder(d, layer, below=10**9)
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
) -> dict[str, np.ndarray]:
    """Logit-lens top and bottom `k` token ids and values of every feature (global order).

    With `token_strings` (the decoded vocabulary) it also returns, per feature, the word
    scores of `loaders.motor`: ``top_word`` (index into ``words``), ``top_word_z``, ``word_gap``.
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
    groups, words = word_groups(token_strings) if token_strings is not None else (np.zeros(0), [])
    group_t = torch.from_numpy(groups)
    for dirs in unembed_directions(model, d, sigma_final).values():
        for start in range(0, d.n_features, chunk):
            logits = dirs[start : start + chunk] @ W_U.T  # (feature, vocab)
            t, b = logits.topk(k, dim=-1), logits.topk(k, dim=-1, largest=False)
            out["top_ids"].append(t.indices.numpy())
            out["top_values"].append(t.values.numpy())
            out["bottom_ids"].append(b.indices.numpy())
            out["bottom_values"].append(b.values.numpy())
            if words:
                w, z, gap = word_scores(logits, group_t, len(words))
                out["top_word"].append(w.numpy())
                out["top_word_z"].append(z.numpy())
                out["word_gap"].append(gap.numpy())
    result = {name: np.concatenate(parts) for name, parts in out.items() if parts}
    if words:
        result["words"] = np.asarray(words, dtype=object)
    return result

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
The sites before a norm's gain (``ln2_normalized``, ``ln1_normalized``: TransformerLens's
``ln*.hook_normalized``) are the same map with γ = 1: ẽ_t = c(e_t) / σ̄, with σ̄ of the MLP
norm or of the attention norm.

d_s^(m) is written where the dictionary writes. At ``mlp_module_out`` on a family with a
post-MLP norm (Gemma-2's ``post_feedforward_layernorm``, circuit-tracer's ``mlp.hook_out``)
the write passes through that norm before it reaches the residual stream; with its σ frozen
at σ̄_post(m) it adds γ_post ⊙ d_s^(m) / σ̄_post(m) (`residual_writes`).

C_st / μ_t = C_sum / sum_t: the token count cancels. Only pairs that co-activate at least
once have non-zero ERA or TWERA. Edges are chosen in two steps:

1. candidates: from exact sparse sums, every co-active pair (`sparse_candidates`); from dense
   blocks, each block's per-row and per-column top-k, ties kept (`dense_candidates`);
2. `Candidates.prune`: each source's top-k targets ∪ each target's top-k sources under one
   total order (|TWERA| descending, then the other end's id), so both paths keep the same set.

V is computed block by block (source layer × target layer, source rows in chunks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numba
import numpy as np
import torch
from safetensors.numpy import load_file as load_np
from torch import Tensor

from loaders.dictionary import Dictionary
from loaders.files import save_arrays
from loaders.model import HookedModel
from loaders.pairs import DenseBlocks, KeptPairs, PairState, SparsePairs
from loaders.stats import FeatureStats, _share

RAW_SITES = ("resid_mid", "resid_pre", "resid_post")


Writes = dict[int, Callable[[Tensor], Tensor]]
"""target layer → the linear map from the write site to the residual stream (absent: identity)."""


def residual_encoders(
    model: HookedModel, d: Dictionary, sigma_mlp: np.ndarray, sigma_attn: np.ndarray | None = None
) -> dict[int, Tensor]:
    """ẽ_t for every feature, per dictionary layer: (feature, d_model) float64.

    `sigma_mlp` / `sigma_attn`: σ̄ of the MLP / attention norm at each dictionary layer.
    """
    out = {}
    for i, layer in enumerate(d.layers):
        e = d.W_enc[layer].double()
        if d.read_site in RAW_SITES:
            out[layer] = e
        elif d.read_site == "mlp_in":
            out[layer] = model.mlp_norm(layer).transpose_apply(e, float(sigma_mlp[i]))
        elif d.read_site == "ln2_normalized":
            out[layer] = model.mlp_norm(layer).without_gain().transpose_apply(e, float(sigma_mlp[i]))
        elif d.read_site == "ln1_normalized":
            if sigma_attn is None:
                raise ValueError("an ln1_normalized read site needs the attention norm's σ̄ (sigma_attn)")
            out[layer] = model.attn_norm(layer).without_gain().transpose_apply(e, float(sigma_attn[i]))
        else:
            raise ValueError(f"virtual weights need a residual or normalized read site, not {d.read_site!r}")
    return out


def residual_writes(model: HookedModel, d: Dictionary, sigma_post: np.ndarray | None) -> Writes:
    """How each target layer's writes reach the residual stream (see the module docstring)."""
    if d.write_site != "mlp_module_out" or model.family.post_mlp_norm is None:
        return {}
    if sigma_post is None:
        raise ValueError("writes at mlp_module_out pass through the post-MLP norm: its σ̄ (sigma_post) is needed")
    out: Writes = {}
    for i, layer in enumerate(d.layers):
        norm = model.post_mlp_norm(layer)
        assert norm is not None
        out[layer] = partial(norm.apply, sigma=float(sigma_post[i]))
    return out


def summed_decoder(d: Dictionary, layer: int, below: int, writes: Writes | None = None) -> Tensor | None:
    """Σ W_m d_s^(m) over the layers m < `below` that features of `layer` write to, W_m the
    write's map to the residual stream (`residual_writes`): (feature, d_model) float64."""
    writes = writes or {}
    parts = []
    for m in d.write_targets(layer):
        if m < below and (p := d.decoder(layer, m)) is not None:
            p = p.double()
            parts.append(writes[m](p) if m in writes else p)
    if not parts:
        return None
    return torch.stack(parts).sum(0)


def virtual_weight_block(
    d: Dictionary,
    enc: dict[int, Tensor],
    source_layer: int,
    target_layer: int,
    rows: slice = slice(None),
    writes: Writes | None = None,
) -> Tensor:
    """V for sources `rows` of `source_layer` × all targets of `target_layer`: (src, tgt)."""
    if target_layer <= source_layer:
        return torch.zeros(len(range(d.n_features)[rows]), d.n_features, dtype=torch.float64)
    dec = summed_decoder(d, source_layer, target_layer, writes)
    if dec is None:
        return torch.zeros(len(range(d.n_features)[rows]), d.n_features, dtype=torch.float64)
    e = enc[target_layer]
    return dec[rows].to(e.device) @ e.T


@dataclass
class Candidates:
    """Edges that may be in the final top-k: global source and target ids with V, ERA, TWERA."""

    src: np.ndarray  # (edge,) int64
    tgt: np.ndarray  # (edge,) int64
    v: np.ndarray  # (edge,) float64
    era: np.ndarray
    twera: np.ndarray

    @staticmethod
    def empty() -> Candidates:
        i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return Candidates(i, i, f, f, f)

    def __len__(self) -> int:
        return len(self.src)

    def take(self, sel: np.ndarray) -> Candidates:
        return Candidates(self.src[sel], self.tgt[sel], self.v[sel], self.era[sel], self.twera[sel])

    def concat(self, other: Candidates) -> Candidates:
        return Candidates.concat_all([self, other])

    @staticmethod
    def concat_all(parts: list[Candidates]) -> Candidates:
        return Candidates(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def prune(self, k: int) -> Candidates:
        """Each source's top-k targets ∪ each target's top-k sources by |TWERA| (zeros dropped).

        Ties are broken by the other end's global id, lowest first: one total order, so
        pruning early (block by block, pass by pass) keeps exactly what pruning once would.
        """
        nz = self.take(self.twera != 0)
        score = np.abs(nz.twera)
        keep = _top_k_per_group(nz.src, nz.tgt, score, k) | _top_k_per_group(nz.tgt, nz.src, score, k)
        return nz.take(keep)

    def save(self, path: Path) -> None:
        save_arrays({f: getattr(self, f) for f in _FIELDS}, path)

    @staticmethod
    def load(path: Path) -> Candidates:
        a = load_np(str(path))
        return Candidates(*(a[f] for f in _FIELDS))


_FIELDS = ("src", "tgt", "v", "era", "twera")


def _weights(c_sum: np.ndarray, i_sum: np.ndarray | None, v: np.ndarray, sum_t: np.ndarray, tokens: int):
    """(ERA, TWERA) from pair sums, the targets' activation sums and V (DESIGN.md); ERA NaN
    without I (blocks of C alone: `with_era` fills it in after the I pass)."""
    twera = np.where(sum_t > 0, c_sum / np.where(sum_t > 0, sum_t, 1.0), 0.0) * v
    era = np.full(len(v), np.nan) if i_sum is None else _era(i_sum, v, tokens)
    return era, twera


def _era(i_sum: np.ndarray, v: np.ndarray, tokens: int) -> np.ndarray:
    return i_sum / max(tokens, 1) * v


def with_era(c: Candidates, kept: KeptPairs, tokens: int) -> Candidates:
    """`c` with ERA from the I pass's sums (`loaders.pairs.KeptPairs`), which hold every pair of `c`."""
    src, tgt, i_sum = kept.sums()
    G = kept.n_layers * kept.n_features
    keys, wanted = src * G + tgt, c.src * G + c.tgt  # keys ascend: kept pairs are sorted by (source, target)
    at = np.searchsorted(keys, wanted).clip(max=max(len(keys) - 1, 0))
    found = keys[at] == wanted if len(keys) else np.zeros(len(wanted), bool)
    if not found.all():
        raise ValueError(f"{int((~found).sum())} edges have no I sum: the I pass was run for other pairs")
    return Candidates(c.src, c.tgt, c.v, _era(i_sum[at].astype(np.float64), c.v, tokens), c.twera)


def linearized(model: HookedModel, d: Dictionary, stats: FeatureStats) -> tuple[dict[int, Tensor], Writes]:
    """ẽ per layer and the write maps, with the norms' σ frozen at the statistics' means."""
    enc = residual_encoders(model, d, stats.sigma_mlp_mean, stats.sigma_attn_mean)
    return enc, residual_writes(model, d, stats.sigma_post_mean)


def sparse_candidates(
    model: HookedModel, d: Dictionary, stats: FeatureStats, pairs: SparsePairs, chunk: int = 4096
) -> Candidates:
    """Every co-active pair of the exact sparse sums (`--exact-pairs`), with V, ERA and TWERA."""
    F, L = d.n_features, len(d.layers)
    enc, writes = linearized(model, d, stats)
    out = [Candidates.empty()]
    for i in range(L - 1):
        for j in range(i + 1, L):
            C, I = pairs.block(i, j)
            C = C.tocoo()
            if C.nnz == 0:
                continue
            src, tgt = C.row.astype(np.int64), C.col.astype(np.int64)
            i_sum = np.asarray(I.tocsr()[src, tgt]).ravel()
            v = np.empty(len(src), np.float64)
            for start in range(0, F, chunk):
                in_chunk = (src >= start) & (src < start + chunk)
                if in_chunk.any():
                    rows = slice(start, start + chunk)
                    block = virtual_weight_block(d, enc, d.layers[i], d.layers[j], rows, writes)
                    v[in_chunk] = block.cpu().numpy()[src[in_chunk] - start, tgt[in_chunk]]
            era, twera = _weights(C.data, i_sum, v, stats.sum[j * F + tgt], stats.tokens)
            out.append(Candidates(i * F + src, j * F + tgt, v, era, twera))
    return Candidates.concat_all(out)


def dense_candidates(
    model: HookedModel, d: Dictionary, stats: FeatureStats, blocks: DenseBlocks, top_k: int, chunk: int = 4096
) -> Candidates:
    """Top-k candidates of each dense block: per source row and per target column, ties kept.

    A source's (or target's) overall top-k lies in the union of its per-block top-k, so
    `Candidates.prune` of everything gathered over all blocks equals pruning all pairs.
    """
    F = d.n_features
    enc, writes = linearized(model, d, stats)
    kept, pending = Candidates.empty(), []
    for i, j in blocks.blocks:
        C_blk, I_blk = blocks.block(i, j)
        for start in range(0, F, chunk):
            rows = slice(start, start + chunk)
            V = virtual_weight_block(d, enc, d.layers[i], d.layers[j], rows, writes)  # (src, tgt) float64, enc's device
            sum_t = torch.from_numpy(stats.sum[j * F : (j + 1) * F]).to(V.device)
            s_loc, t_loc = _picked(C_blk[rows], V, sum_t, top_k)
            at = (s_loc.to(C_blk.device), t_loc.to(C_blk.device))  # C and I share a device
            c_sum = C_blk[rows][at].double().cpu().numpy()
            i_sum = None if I_blk is None else I_blk[rows][at].double().cpu().numpy()
            v = V[s_loc, t_loc].cpu().numpy()
            src, tgt = s_loc.cpu().numpy().astype(np.int64), t_loc.cpu().numpy().astype(np.int64)
            era, twera = _weights(c_sum, i_sum, v, stats.sum[j * F + tgt], stats.tokens)
            pending.append(Candidates(i * F + start + src, j * F + tgt, v, era, twera))
        # prune once the blocks gathered since the last prune outnumber what it kept: memory
        # stays within ~3× the kept set, and each candidate is sorted a few times, not once a block
        if sum(map(len, pending)) > max(len(kept), _PRUNE_AT_LEAST):
            kept, pending = Candidates.concat_all([kept, *pending]).prune(top_k), []
    return Candidates.concat_all([kept, *pending]).prune(top_k)


def _picked(C: Tensor, V: Tensor, sum_t: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """(source, target) of the pairs of a block's row chunk that are among their source's top-k
    or their target's top-k (over this chunk's sources) by |TWERA|, TWERA > 0, row-major.

    TWERA = (C / Σa_t) · V, 0 where a target never fired, rounded as `_weights` rounds it. On
    the CPU one numba kernel (`_picked_cpu`) reads C and V once (twice where many scores tie)
    and makes nothing of their size; elsewhere (a GPU) `_picked_torch`, which gives the same
    pairs."""
    if V.device.type == "cpu" and C.device.type == "cpu" and C.dtype == torch.float32 and V.dtype == torch.float64:
        parts = numba.get_num_threads()
        cap = _candidate_cap(V.shape[0], V.shape[1], top_k, parts)
        picked = _picked_cpu(C.numpy(), V.numpy(), sum_t.numpy(), top_k, parts, cap)
        return torch.from_numpy(picked[0]), torch.from_numpy(picked[1])
    return _picked_torch(C, V, sum_t, top_k)


def _picked_torch(C: Tensor, V: Tensor, sum_t: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """`_picked` by torch operations on whole (source, target) arrays, on any device."""
    fired = sum_t > 0
    tw = C.to(V.device, torch.float64).div_(torch.where(fired, sum_t, 1.0)).mul_(V)
    tw[:, ~fired] = 0.0
    score = tw.abs()
    row_kth = score.topk(min(top_k, score.shape[1]), dim=1).values[:, -1:]
    # per target over this chunk's sources: along rows of the transpose, which topk reads faster
    col_kth = score.T.contiguous().topk(min(top_k, score.shape[0]), dim=1).values[:, -1][None]
    pick = (score > 0) & ((score >= row_kth) | (score >= col_kth))
    src, tgt = pick.nonzero(as_tuple=True)
    return src, tgt


@numba.njit(cache=True, nogil=True, inline="always")
def _score(c, v, sum_t, r, t):
    """|TWERA| of (r, t), with the torch form's operations in its order."""
    s = sum_t[t]
    if not s > 0:
        return 0.0
    return abs(np.float64(c[r, t]) / s * v[r, t])


@numba.njit(cache=True, nogil=True, inline="always")
def _offer(heap, n, x):
    """Keep the largest values offered to a min-heap of `len(heap)` (n held so far); returns n."""
    k = len(heap)
    if n < k:  # sift up
        i = n
        heap[i] = x
        while i > 0 and heap[(i - 1) // 2] > heap[i]:
            p = (i - 1) // 2
            heap[p], heap[i] = heap[i], heap[p]
            i = p
        return n + 1
    if x > heap[0]:  # replace the smallest, sift down
        heap[0] = x
        i = 0
        while True:
            a, b, m = 2 * i + 1, 2 * i + 2, i
            if a < k and heap[a] < heap[m]:
                m = a
            if b < k and heap[b] < heap[m]:
                m = b
            if m == i:
                break
            heap[m], heap[i] = heap[i], heap[m]
            i = m
    return n


def _candidate_cap(rows: int, cols: int, top_k: int, parts: int) -> int:
    """Scores a thread of `_picked_cpu` keeps for its second look: twice the k·(1 + ln(n/k))
    expected to enter a top-k heap over n scores in random order, for its rows and its columns
    (~60 MB a thread for 4,096 × 8,192 at k 32)."""
    rp = rows // parts + 1
    kr, kc = min(top_k, cols), min(top_k, rp)
    expect = rp * kr * (1 + math.log(max(cols / kr, 1))) + cols * kc * (1 + math.log(max(rp / kc, 1)))
    return int(2 * expect) + 1024


@numba.njit(parallel=True, cache=True, nogil=True)
def _picked_cpu(c, v, sum_t, top_k, parts, cap):
    """`_picked` on the CPU: each row's and each column's k-th largest score by min-heaps of k
    (the value ``topk(k).values[-1]`` is, duplicates counted), then the pairs at or above
    either, row-major.

    One sweep finds both: each of `parts` threads takes a share of the rows and keeps its own
    column heaps, merged after it. A score below its row heap's and its column heap's smallest
    when it is seen stays below both k-th values (a full heap's smallest only rises), so the
    sweep keeps only the others (> 0), up to `cap` a thread, and the picks are taken from them;
    where a thread had more (many equal scores), a second sweep of the block takes them."""
    R, T = v.shape
    k_row, k_col = min(top_k, T), min(top_k, R)
    row_kth = np.empty(R)
    col_heaps, col_held = np.empty((parts, T, k_col)), np.zeros((parts, T), np.int64)
    col_min = np.full((parts, T), -np.inf)  # a full column heap's smallest; −∞ until it is full
    kept_r, kept_t = np.empty((parts, cap), np.int32), np.empty((parts, cap), np.int32)
    kept_x, kept_n = np.empty((parts, cap)), np.zeros(parts, np.int64)
    for part in numba.prange(parts):
        lo, hi = _share(part, parts, R)
        heap = np.empty(k_row)
        heaps, held, least = col_heaps[part], col_held[part], col_min[part]
        m = 0
        for r in range(lo, hi):
            n, row_least = 0, -np.inf
            for t in range(T):
                x = _score(c, v, sum_t, r, t)
                if x > 0 and (x >= row_least or x >= least[t]):
                    if m < cap:
                        kept_r[part, m], kept_t[part, m], kept_x[part, m] = r, t, x
                    m += 1
                if x > row_least:  # most scores enter neither heap: one comparison each
                    n = _offer(heap, n, x)
                    if n == k_row:
                        row_least = heap[0]
                if x > least[t]:
                    held[t] = _offer(heaps[t], held[t], x)
                    if held[t] == k_col:
                        least[t] = heaps[t, 0]
            row_kth[r] = heap[0]
        kept_n[part] = m
    col_kth = np.empty(T)
    for t in numba.prange(T):
        n = col_held[0, t]
        for part in range(1, parts):
            for q in range(col_held[part, t]):
                n = _offer(col_heaps[0, t], n, col_heaps[part, t, q])
        col_kth[t] = col_heaps[0, t, 0]
    if kept_n.max() <= cap:  # the picks among the kept scores, thread by thread: row-major
        ends = np.zeros(parts + 1, np.int64)
        for part in numba.prange(parts):
            for q in range(kept_n[part]):
                r, t, x = kept_r[part, q], kept_t[part, q], kept_x[part, q]
                ends[part + 1] += x >= row_kth[r] or x >= col_kth[t]
        ends = np.cumsum(ends)
        src, tgt = np.empty(ends[-1], np.int64), np.empty(ends[-1], np.int64)
        for part in numba.prange(parts):
            m = ends[part]
            for q in range(kept_n[part]):
                r, t, x = kept_r[part, q], kept_t[part, q], kept_x[part, q]
                if x >= row_kth[r] or x >= col_kth[t]:
                    src[m], tgt[m] = r, t
                    m += 1
        return src, tgt
    ends = np.zeros(R + 1, np.int64)
    for r in numba.prange(R):
        m = 0
        for t in range(T):
            x = _score(c, v, sum_t, r, t)
            m += x > 0 and (x >= row_kth[r] or x >= col_kth[t])
        ends[r + 1] = m
    ends = np.cumsum(ends)
    src, tgt = np.empty(ends[-1], np.int64), np.empty(ends[-1], np.int64)
    for r in numba.prange(R):
        m = ends[r]
        for t in range(T):
            x = _score(c, v, sum_t, r, t)
            if x > 0 and (x >= row_kth[r] or x >= col_kth[t]):
                src[m], tgt[m] = r, t
                m += 1
    return src, tgt


_PRUNE_AT_LEAST = 1 << 20
"""Candidates gathered before the first prune (40 MB)."""


def candidates(model: HookedModel, d: Dictionary, stats: FeatureStats, pairs: PairState, top_k: int) -> Candidates:
    """The pruned candidates of an exact sparse state or of one dense group (ERA NaN for
    blocks of C alone, until `with_era`)."""
    if isinstance(pairs, SparsePairs):
        return sparse_candidates(model, d, stats, pairs).prune(top_k)
    if isinstance(pairs, KeptPairs):
        raise TypeError("kept pairs' I sums complete candidates (with_era); they make none")
    return dense_candidates(model, d, stats, pairs, top_k)


def edges(
    model: HookedModel, d: Dictionary, stats: FeatureStats, pairs: PairState, top_k: int = 32
) -> dict[str, np.ndarray]:
    """Kept edges of one pair state: each source's top-k downstream and each target's top-k
    upstream by |TWERA|. Returns columns source_layer, source_index, target_layer,
    target_index, virtual_weight, era, twera (int64 / float64), one row per distinct (source,
    target), sorted by source then descending |TWERA| (then target)."""
    return edge_table(candidates(model, d, stats, pairs, top_k), d.layers, d.n_features)


def edge_table(c: Candidates, layers: tuple[int, ...], F: int) -> dict[str, np.ndarray]:
    """The connections table of kept candidates (see `edges`)."""
    order = np.lexsort((c.tgt, -np.abs(c.twera), c.src))
    lay = np.asarray(layers, dtype=np.int64)
    src, tgt = c.src[order], c.tgt[order]
    return {
        "source_layer": lay[src // F],
        "source_index": (src % F).astype(np.int64),
        "target_layer": lay[tgt // F],
        "target_index": (tgt % F).astype(np.int64),
        "virtual_weight": c.v[order],
        "era": c.era[order],
        "twera": c.twera[order],
    }


def _top_k_per_group(group: np.ndarray, other: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k highest-scoring rows of each group (ties: lowest `other` first)."""
    order = np.lexsort((other, -score, group))
    g = group[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1] if len(g) else np.zeros(0, np.int64)
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    mask = np.zeros(len(group), bool)
    mask[order[rank < k]] = True
    return mask

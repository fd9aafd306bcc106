"""One streaming pass over a corpus: per-feature statistics, top examples, pair sums.

Features are indexed globally: g = i · n_features + index for the i-th dictionary layer.
Per chunk of windows (`loaders.corpus`), per batch (BOS / position 0 and padding excluded):

1. run the model in its own dtype, capture each dictionary layer's read site and the norm
   inputs; encode one layer at a time (only encoders live on the device);
2. update per-feature count (a > 0), sum, max, a log₂-binned histogram of positive values;
3. merge each feature's top-k windows by its maximum activation in the window (ties go to
   the earlier window in stream order), keeping token ids and activations around the maximum;
4. add the norm denominators σ at each layer's MLP norm and at the final norm, whose corpus
   means freeze the norms for virtual weights and the logit lens;
5. collect the chunk's non-zeros (`loaders.pairs.NonZeros`); at the chunk's end they update
   the pair sums of this pass (`loaders.pairs`).

Steps 2–4 run on the device; only the chunk's sparse non-zeros leave it. On the CPU, the
non-zeros and steps 2–4 are numba kernels (`_Accumulator.cpu_kernels`): steps 2 and 3 the same
bits as the torch code a GPU runs, step 4's float64 sums equal to rounding. A pass over a
later group of pair blocks (`--memory-budget`) skips steps 2–4.

The state is mergeable: `FeatureStats.merge` adds counts, sums, histograms and σ sums, takes
maxima, and merges top-k by (activation descending, window key ascending), so merging the
states of shards A and B equals one pass over A then B (exactly, but for float rounding of
sums). It checkpoints atomically every `checkpoint_every` chunks at a chunk boundary; a pass
that finds a checkpoint resumes from its cursor and ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import torch
from safetensors.numpy import load_file as load_np
from torch import Tensor
from tqdm import tqdm

from loaders.config import StatsConfig
from loaders.corpus import NO_KEY, Batch, Corpus, Cursor, chunks, pack, pad_id
from loaders.dictionary import Dictionary
from loaders.files import save_arrays
from loaders.heap import keep_freed_memory
from loaders.model import HookedModel, NormMap, Site
from loaders.pairs import DenseBlocks, KeptPairs, NonZeros, PairState, SparsePairs

HIST_EDGES = np.exp2(np.arange(-10, 11, 0.5))  # 41 edges → 42 bins incl. under/overflow
"""Histogram bin edges for positive activations (log₂ spaced, 2⁻¹⁰ … 2¹⁰)."""


TOP_FIELDS = ("top_val", "top_key", "top_pos", "top_tok", "top_act")
ARRAYS = ("count", "sum", "max", "hist", "sigma_mlp", "sigma_attn", "sigma_post", *TOP_FIELDS)


@dataclass
class FeatureStats:
    """Accumulated per-feature statistics; arrays are indexed by global feature g."""

    n_layers: int
    n_features: int
    k: int
    window: int
    tokens: int = 0
    documents: int = 0
    windows: int = 0
    sigma_final: float = 0.0  # Σ σ at the final norm
    count: np.ndarray = field(init=False)  # (g,) int64
    sum: np.ndarray = field(init=False)  # (g,) float64
    max: np.ndarray = field(init=False)  # (g,) float32
    hist: np.ndarray = field(init=False)  # (g, bins) int64
    sigma_mlp: np.ndarray = field(init=False)  # (layer,) Σ σ at each dictionary layer's MLP norm
    sigma_attn: np.ndarray = field(init=False)  # (layer,) Σ σ at the attention norm (ln1_normalized reads)
    sigma_post: np.ndarray = field(init=False)  # (layer,) Σ σ at the post-MLP norm (mlp_module_out writes)
    top_val: np.ndarray = field(init=False)  # (k, g) float32, −inf when empty
    top_key: np.ndarray = field(init=False)  # (k, g) int64 window key, NO_KEY when empty
    top_pos: np.ndarray = field(init=False)  # (k, g) int64 position in the window
    top_tok: np.ndarray = field(init=False)  # (k, g, 2w+1) int64, −1 outside the window
    top_act: np.ndarray = field(init=False)  # (k, g, 2w+1) float32

    def __post_init__(self) -> None:
        g, w = self.n_layers * self.n_features, 2 * self.window + 1
        self.count = np.zeros(g, np.int64)
        self.sum = np.zeros(g, np.float64)
        self.max = np.zeros(g, np.float32)
        self.hist = np.zeros((g, len(HIST_EDGES) + 1), np.int64)
        self.sigma_mlp = np.zeros(self.n_layers, np.float64)
        self.sigma_attn = np.zeros(self.n_layers, np.float64)
        self.sigma_post = np.zeros(self.n_layers, np.float64)
        self.top_val = np.full((self.k, g), -np.inf, np.float32)
        self.top_key = np.full((self.k, g), NO_KEY, np.int64)
        self.top_pos = np.full((self.k, g), -1, np.int64)
        self.top_tok = np.full((self.k, g, w), -1, np.int64)
        self.top_act = np.zeros((self.k, g, w), np.float32)

    # -- merging ----------------------------------------------------------------------------
    def merge(self, other: FeatureStats) -> None:
        """Add `other` (a pass over other windows) into this state."""
        if (other.n_layers, other.n_features, other.k, other.window) != (
            self.n_layers,
            self.n_features,
            self.k,
            self.window,
        ):
            raise ValueError("cannot merge statistics made with other dictionaries or options")
        self.tokens += other.tokens
        self.documents += other.documents
        self.windows += other.windows
        self.sigma_final += other.sigma_final
        self.count += other.count
        self.sum += other.sum
        np.maximum(self.max, other.max, out=self.max)
        self.hist += other.hist
        self.sigma_mlp += other.sigma_mlp
        self.sigma_attn += other.sigma_attn
        self.sigma_post += other.sigma_post
        mine = {f: torch.from_numpy(getattr(self, f)) for f in TOP_FIELDS}
        theirs = {f: torch.from_numpy(np.require(getattr(other, f), requirements="W")) for f in TOP_FIELDS}
        merge_top(mine, theirs)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        save_arrays({n: np.ascontiguousarray(getattr(self, n)) for n in ARRAYS}, path / "stats.safetensors")
        meta = {k: getattr(self, k) for k in ("n_layers", "n_features", "k", "window", "tokens", "documents")}
        meta |= {"windows": self.windows, "sigma_final": self.sigma_final}
        (path / "stats.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        meta = json.loads((path / "stats.json").read_text())
        s = cls(meta["n_layers"], meta["n_features"], meta["k"], meta["window"])
        s.tokens, s.documents, s.windows = meta["tokens"], meta["documents"], meta["windows"]
        s.sigma_final = meta["sigma_final"]
        for name, arr in load_np(str(path / "stats.safetensors")).items():
            setattr(s, name, arr)
        return s

    # -- derived ----------------------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.tokens, 1)

    @property
    def density(self) -> np.ndarray:
        return self.count / max(self.tokens, 1)

    @property
    def sigma_mlp_mean(self) -> np.ndarray:
        return self.sigma_mlp / max(self.tokens, 1)

    @property
    def sigma_attn_mean(self) -> np.ndarray:
        return self.sigma_attn / max(self.tokens, 1)

    @property
    def sigma_post_mean(self) -> np.ndarray:
        return self.sigma_post / max(self.tokens, 1)

    @property
    def sigma_final_mean(self) -> float:
        return self.sigma_final / max(self.tokens, 1)


Windows = Callable[[Tensor, Tensor], dict[str, Tensor]]
"""(candidate rows, columns) → the fields of `cand` left out of it, for those candidates only."""


def merge_top(cur: dict[str, Tensor], cand: dict[str, Tensor], windows: Windows | None = None) -> None:
    """Merge candidate examples `cand` (m, g, …) into the top-k `cur` (k, g, …) in place.

    Order: activation descending, then window key ascending (a total order: one entry per
    window), so the result does not depend on the order windows arrive in. Fields of `cur`
    missing from `cand` (a window's tokens and activations) come from `windows`, asked only
    for the candidates that enter the top-k.
    """
    k = cur["top_val"].shape[0]
    real = cand["top_val"] > -np.inf
    cols = ((cand["top_val"] >= cur["top_val"][-1]) & real).any(0).nonzero().squeeze(1)
    if len(cols) == 0:
        return
    val = torch.cat([cur["top_val"][:, cols], cand["top_val"][:, cols]])  # (k + m, cols)
    # an empty candidate sorts with the empty slots, after them (stable): empty slots stay as they are
    cand_key = torch.where(real[:, cols], cand["top_key"][:, cols], NO_KEY)
    key = torch.cat([cur["top_key"][:, cols], cand_key])
    by_key = key.argsort(dim=0, stable=True)
    by_val = val.gather(0, by_key).argsort(dim=0, descending=True, stable=True)
    pick = by_key.gather(0, by_val)[:k]  # (k, cols) rows of the concatenation
    entered = (pick >= k).nonzero(as_tuple=True)  # (slot, column) of each candidate that entered
    rows, at = pick[entered] - k, cols[entered[1]]  # that candidate in `cand`
    new = {n: c[rows, at] for n, c in cand.items()}
    if windows is not None and len(rows):
        new |= windows(rows, at)
    kept = pick.clamp(max=k - 1)  # slots kept from `cur`; those of entered candidates are overwritten
    for name, t in cur.items():
        out = t[:, cols].gather(0, kept.view(*kept.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:]))
        if len(rows):
            out[entered] = new[name].to(t.dtype)
        t[:, cols] = out


@numba.njit(parallel=True, cache=True, nogil=True)
def _counted(v, theta, mask):
    """(row, pos, idx, val) of the counted non-zeros on the CPU, row-major as ``nonzero`` orders
    them, from the activations ``where(v > θ, v, 0)`` (`Activation.gate`): where `mask` and
    a > 0, which is v > max(θ, 0) (a JumpReLU threshold may be negative). On every core: one
    walk counts each position's non-zeros, a second writes them at their offsets."""
    R, T, F = v.shape
    lo = np.maximum(theta, np.float32(0.0))
    ends = np.zeros(R * T + 1, np.int64)
    for q in numba.prange(R * T):
        r, t = q // T, q % T
        if mask[r, t]:
            n = 0
            for f in range(F):
                n += v[r, t, f] > lo[f]
            ends[q + 1] = n
    ends = np.cumsum(ends)
    n = ends[-1]
    row, pos, idx, val = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32)
    for q in numba.prange(R * T):
        r, t = q // T, q % T
        m = ends[q]
        if mask[r, t]:
            for f in range(F):
                if v[r, t, f] > lo[f]:
                    row[m], pos[m], idx[m], val[m] = r, t, f, v[r, t, f]
                    m += 1
    return row, pos, idx, val


@numba.njit(parallel=True, cache=True, nogil=True)
def _sigma_sum(x, mask, eps, centered):
    """Σ σ(x) over the counted positions (`mask`) of x (window, pos, d_model) float32, in
    float64: σ = sqrt(mean(c(x)²) + eps), c centring for LayerNorm (`NormMap.denominator`)
    without a float64 copy of x. Each window's positions are added in order, then the windows
    in order, so the sum is the same bits in any split over threads."""
    R, T, D = x.shape
    rows = np.zeros(R)
    for r in numba.prange(R):
        s = 0.0
        for t in range(T):
            if not mask[r, t]:
                continue
            mu = 0.0
            if centered:
                for k in range(D):
                    mu += np.float64(x[r, t, k])
                mu /= D
            q0 = q1 = q2 = q3 = 0.0  # four running sums of squares: the loop need not wait on one
            for k in range(0, D - D % 4, 4):
                y0, y1 = np.float64(x[r, t, k]) - mu, np.float64(x[r, t, k + 1]) - mu
                y2, y3 = np.float64(x[r, t, k + 2]) - mu, np.float64(x[r, t, k + 3]) - mu
                q0, q1, q2, q3 = q0 + y0 * y0, q1 + y1 * y1, q2 + y2 * y2, q3 + y3 * y3
            for k in range(D - D % 4, D):
                y0 = np.float64(x[r, t, k]) - mu
                q0 += y0 * y0
            s += np.sqrt((q0 + q1 + q2 + q3) / D + eps)
        rows[r] = s
    total = 0.0
    for r in range(R):
        total += rows[r]
    return total


@numba.njit(cache=True, nogil=True)
def _share(part, parts, n):
    """Thread `part`'s features [lo, hi) of `n`, in `parts` contiguous shares: each feature has
    one owner, so the kernels that split by it give the same result in any split."""
    return part * n // parts, (part + 1) * n // parts


@numba.njit(parallel=True, cache=True, nogil=True)
def _add_statistics(count, total, peak, hist, edges, layer, idx, val, parts):
    """Step 2 for one layer's counted non-zeros, in their order (as `_Accumulator._feature_stats`
    adds them: the float64 sums are the same bits). `layer`: (offset, features) of the layer's
    features in the statistics. In `parts` threads, each its own features."""
    offset, n_feat = layer
    for part in numba.prange(parts):
        lo, hi = _share(part, parts, n_feat)
        for e in range(len(idx)):
            f, v = idx[e], val[e]
            if lo <= f < hi:
                g = offset + f
                count[g] += 1
                total[g] += np.float64(v)
                peak[g] = max(peak[g], v)
                hist[g, np.searchsorted(edges, v)] += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def _insert_top(tops, offset, entries, around, parts):
    """`merge_top` of one layer's counted non-zeros of a batch, on the CPU, in place.

    `tops`: the statistics' `TOP_FIELDS` arrays ((k, g) and (k, g, 2w + 1)), the layer's
    features from `offset`. `entries`: (starts, pos, idx, val), window r's entries at
    [starts[r], starts[r + 1]), positions ascending. `around`: the batch's (keys, ids,
    attention mask) and the layer's (x, θ) of `Activation.gate`: the activations are
    ``where(x > θ, x, 0)``, which the torch route reads from (pre, support mask). Per
    (window, feature) the maximum and its first position are found among the entries at least
    the feature's k-th value, then inserted by (activation descending, window key ascending):
    the order `merge_top` sorts by, so the result is the same, bit for bit. In `parts` threads,
    each its own features.
    """
    n_feat = around[3].shape[2]
    for part in numba.prange(parts):
        _insert_top_of(tops, offset, entries, around, *_share(part, parts, n_feat))


@numba.njit(cache=True, nogil=True)
def _insert_top_of(tops, offset, entries, around, lo, hi):
    """`_insert_top` for the layer's features [lo, hi)."""
    top_val, top_key, top_pos, top_tok, top_act = tops
    starts, pos, idx, val = entries
    keys, ids, attn, x, theta = around
    k, n_feat, T = top_val.shape[0], x.shape[2], x.shape[1]
    w = top_tok.shape[2] // 2
    peak = np.empty(n_feat, np.float32)
    first = np.empty(n_feat, np.int64)
    seen = np.full(n_feat, -1, np.int64)  # the window whose candidate peak[f] holds
    touched = np.empty(n_feat, np.int64)
    for r in range(len(starts) - 1):
        n_touched = 0
        for e in range(starts[r], starts[r + 1]):
            f, v = idx[e], val[e]
            if f < lo or f >= hi or v < top_val[k - 1, offset + f]:
                continue
            if seen[f] != r:
                seen[f] = r
                peak[f], first[f] = v, pos[e]
                touched[n_touched] = f
                n_touched += 1
            elif v > peak[f]:
                peak[f], first[f] = v, pos[e]
        key = keys[r]
        for q in range(n_touched):
            f = touched[q]
            g, v = offset + f, peak[f]
            slot = 0
            while slot < k and (top_val[slot, g] > v or (top_val[slot, g] == v and top_key[slot, g] < key)):
                slot += 1
            if slot == k:
                continue
            for s in range(k - 1, slot, -1):
                top_val[s, g], top_key[s, g], top_pos[s, g] = top_val[s - 1, g], top_key[s - 1, g], top_pos[s - 1, g]
                top_tok[s, g, :] = top_tok[s - 1, g, :]
                top_act[s, g, :] = top_act[s - 1, g, :]
            top_val[slot, g], top_key[slot, g], top_pos[slot, g] = v, key, first[f]
            for c in range(2 * w + 1):  # as `_Accumulator._merge_top`'s windows, −0.0 included
                at = first[f] + c - w
                ac = min(max(at, 0), T - 1)
                a = x[r, ac, f] if x[r, ac, f] > theta[f] else np.float32(0.0)
                if at == ac and attn[r, ac] != 0:
                    top_tok[slot, g, c], top_act[slot, g, c] = ids[r, ac], a
                else:
                    top_tok[slot, g, c], top_act[slot, g, c] = -1, a * np.float32(0.0)


@dataclass(frozen=True)
class PassSpec:
    """What a pass accumulates: a recipe for its fresh state, made on the device that runs it."""

    n_layers: int
    n_features: int
    top_k: int
    window: int
    stats: bool
    """Per-feature statistics (the first pass)."""
    exact: bool = False
    """Exact sparse pairs instead of dense blocks."""
    blocks: tuple[tuple[int, int], ...] = ()
    """Dense pair blocks of this pass (unless `exact`)."""
    with_i: bool = True
    """The blocks hold I beside C (else C alone: `loaders.pairs.BlockPlan.i_pass`)."""
    kept: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False)
    """(source, target) global ids whose I this pass sums (the I pass), instead of blocks."""

    def fresh(self, device: str = "cpu") -> PassState:
        L, F = self.n_layers, self.n_features
        stats = FeatureStats(L, F, self.top_k, self.window) if self.stats else None
        pairs: PairState | None = SparsePairs(L, F) if self.exact else None
        if self.kept is not None:
            pairs = KeptPairs(L, F, *self.kept, device=device)
        elif not self.exact and self.blocks:
            pairs = DenseBlocks(L, F, self.blocks, device, with_i=self.with_i)
        return PassState(stats, pairs)


@dataclass
class PassState:
    """What a pass has accumulated and where it stands."""

    stats: FeatureStats | None
    """Per-feature statistics (the first pass only)."""
    pairs: PairState | None
    cursor: Cursor = field(default_factory=Cursor)
    done: bool = False
    shards_done: list[int] | None = None
    """Shards merged so far, when shards run as separate units (`loaders.distributed`)."""
    chunks: int = 0
    """Chunks done in this pass (they name the chunks of a `Replay`)."""
    save_seconds: float = 0.0
    """Time spent writing checkpoints in this process (not saved)."""

    def merge(self, other: PassState) -> None:
        if self.stats is not None and other.stats is not None:
            self.stats.merge(other.stats)
        if self.pairs is not None and other.pairs is not None:
            self.pairs.merge(other.pairs)  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        """Write atomically: into a temporary directory, then rename over `path`."""
        t0 = time.perf_counter()
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.stats is not None:
            self.stats.save(tmp)
        if self.pairs is not None:
            self.pairs.save(tmp)
        c = self.cursor
        meta = {
            "cursor": list(dataclasses.astuple(c)),
            "done": self.done,
            "shards_done": self.shards_done,
            "chunks": self.chunks,
            "pairs": type(self.pairs).__name__,
            "n_layers": None if self.pairs is None else self.pairs.n_layers,
            "n_features": None if self.pairs is None else self.pairs.n_features,
        }
        (tmp / "pass.json").write_text(json.dumps(meta))
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        self.save_seconds += time.perf_counter() - t0

    @staticmethod
    def load(path: Path, device: str = "cpu") -> PassState:
        meta = json.loads((path / "pass.json").read_text())
        stats = FeatureStats.load(path) if (path / "stats.json").exists() else None
        pairs: PairState | None = None
        if meta["pairs"] == "DenseBlocks":
            pairs = DenseBlocks.load(path, meta["n_features"], device)
        elif meta["pairs"] == "SparsePairs":
            pairs = SparsePairs.load(path, meta["n_layers"], meta["n_features"])
        elif meta["pairs"] == "KeptPairs":
            pairs = KeptPairs.load(path, meta["n_layers"], meta["n_features"], device)
        state = PassState(stats, pairs, Cursor(*meta["cursor"]), meta["done"], meta.get("shards_done"))
        state.chunks = meta.get("chunks", 0)
        return state

    @staticmethod
    def exists(path: Path | None) -> bool:
        return path is not None and (path / "pass.json").exists()


class _Accumulator:
    """Applies steps 1–5 of the module docstring, batch by batch, chunk by chunk."""

    cpu_kernels = True
    """On the CPU, the counted non-zeros, their statistics, top-k examples and σ sums by numba
    kernels (`_counted`, `_add_statistics`, `_insert_top`, `_sigma_sum`); else by the torch
    code a GPU runs, which gives the same bits (σ: the same sums to rounding)."""

    def __init__(self, model: HookedModel, d: Dictionary, state: PassState):
        self.model, self.d, self.state = model, d, state
        self.sites: list[tuple[int, Site]] = [(l, d.read_site) for l in d.layers]
        # σ of the norms that virtual weights freeze (connections module docstring)
        self.sigma_sites: list[tuple[str, Site]] = []
        if state.stats is not None:
            self.sigma_sites.append(("sigma_mlp", "resid_mid"))
            if d.read_site == "ln1_normalized":
                self.sigma_sites.append(("sigma_attn", "resid_pre"))
            if d.write_site == "mlp_module_out" and model.family.post_mlp_norm is not None:
                self.sigma_sites.append(("sigma_post", "mlp_module_out"))
        self.sites += [(l, site) for _, site in self.sigma_sites for l in d.layers if site != d.read_site]
        self.final_norm = model.model.get_submodule(model.family.final_norm)
        dev = model.device
        self.edges = torch.tensor(HIST_EDGES, dtype=torch.float32, device=dev)
        s = state.stats
        # device mirrors of the statistics (on the CPU they share the arrays' memory)
        self.dev: dict[str, Tensor] = {} if s is None else {n: torch.from_numpy(getattr(s, n)).to(dev) for n in ARRAYS}
        self.sigma_final = torch.zeros((), dtype=torch.float64, device=dev)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # per batch, token-major
        self.chunk_tokens = 0

    @torch.no_grad()
    def add(self, batch: Batch) -> None:
        d, model, stats = self.d, self.model, self.state.stats
        dev = model.device
        ids, attn = batch.input_ids.to(dev), batch.attention_mask.to(dev)
        store: dict[tuple[int, Site], list[Tensor]] = {k: [] for k in self.sites}
        final_in: list[Tensor] = []
        handle = None
        if stats is not None:
            handle = self.final_norm.register_forward_pre_hook(lambda _m, args: final_in.append(args[0]))
        try:
            with model.hooks(capture=store):
                model.model.base_model(input_ids=ids, attention_mask=attn, use_cache=False)
        finally:
            if handle is not None:
                handle.remove()
        mask = batch.mask.to(dev)  # (batch, pos)
        n = int(mask.sum())
        token_of = torch.full(mask.shape, -1, dtype=torch.long, device=dev)  # (batch, pos) → counted token
        token_of[mask] = torch.arange(n, device=dev)
        F = d.n_features
        parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []
        for i, l in enumerate(d.layers):
            pre = d.pre_activation(l, store[(l, d.read_site)][0])  # (batch, pos, feature)
            # the activations are not made: they are where(gate, pre, 0), or on the CPU's kernels
            # where(pre > gate, pre, 0) with a threshold per feature, which needs no support mask
            if self._kernels(pre):
                pre, gate = d.activation[l].gate(pre)
                row, pos, idx, val = (torch.from_numpy(a) for a in _counted(pre.numpy(), gate.numpy(), mask.numpy()))
            else:
                gate = d.activation[l].support(pre)
                row, pos, idx = gate.nonzero(as_tuple=True)  # row-major: tokens ascending
                val = pre[row, pos, idx].float()  # a = pre there
                counted = mask[row, pos] & (val > 0)  # a > 0 (a JumpReLU threshold may be negative)
                row, pos, idx, val = row[counted], pos[counted], idx[counted], val[counted]
            if stats is not None:
                self._feature_stats(i * F, idx, val)
                self._merge_top(i * F, pre, gate, batch, row, pos, idx, val)
            tok = token_of[row, pos] + self.chunk_tokens
            parts.append((tok.cpu().numpy(), i, idx.int().cpu().numpy(), val.cpu().numpy()))
        self.parts.append(NonZeros.token_major(parts))
        if stats is not None:
            for name, site in self.sigma_sites:
                for i, l in enumerate(d.layers):
                    x = store[(l, site)][0]
                    norm = {"sigma_mlp": model.mlp_norm, "sigma_attn": model.attn_norm}.get(name, model.post_mlp_norm)(
                        l
                    )
                    assert norm is not None
                    self.dev[name][i] += self._sigma_sum(norm, x, mask)
            self.sigma_final += self._sigma_sum(model.final_norm(), final_in[0], mask)
            stats.tokens += n
            stats.windows += len(batch.keys)
        self.chunk_tokens += n

    def _sigma_sum(self, norm: NormMap, x: Tensor, mask: Tensor) -> Tensor | float:
        """Σ over the counted positions of the norm's denominator σ(x), in float64."""
        if self._kernels(x):
            return _sigma_sum(x.numpy(), mask.numpy(), norm.eps, norm.centered)
        return norm.denominator(x)[mask].sum()

    def _kernels(self, x: Tensor) -> bool:
        """Whether a step on `x` runs as a numba kernel (`cpu_kernels`): x is on the CPU, in float32."""
        return self.cpu_kernels and x.device.type == "cpu" and x.dtype == torch.float32

    def _feature_stats(self, offset: int, idx: Tensor, val: Tensor) -> None:
        s, F = self.dev, self.d.n_features
        if self._kernels(val):
            arrays = (s["count"].numpy(), s["sum"].numpy(), s["max"].numpy(), s["hist"].numpy(), self.edges.numpy())
            _add_statistics(*arrays, (offset, F), idx.numpy(), val.numpy(), numba.get_num_threads())
            return
        g = idx + offset
        s["count"].index_add_(0, g, torch.ones_like(g))
        s["sum"].index_add_(0, g, val.double())
        s["max"].scatter_reduce_(0, g, val, "amax")
        n_bins = s["hist"].shape[1]
        bins = torch.bucketize(val, self.edges)
        cells = idx * n_bins + bins
        s["hist"][offset : offset + F].view(-1).index_add_(0, cells, torch.ones_like(cells))

    def _merge_top(
        self, offset: int, pre: Tensor, gate: Tensor, batch: Batch, row: Tensor, pos: Tensor, idx: Tensor, val: Tensor
    ) -> None:
        """Step 3 for one layer's features from its counted non-zeros (row, pos, idx, val); the
        activations are ``where(gate, pre, 0)`` (`Activation.support`), or on the CPU's kernels
        ``where(pre > gate, pre, 0)`` (`Activation.gate`: a threshold per feature).

        Only entries at least the feature's current k-th value can enter; per (window, feature)
        the maximum and its first position are found among those, and merged.
        """
        if self._kernels(pre):
            tops = tuple(self.dev[n].numpy() for n in TOP_FIELDS)  # the statistics' own arrays on the CPU
            starts = np.searchsorted(row.numpy(), np.arange(len(batch.keys) + 1))
            entries = (starts, pos.numpy(), idx.numpy(), val.numpy())
            around = tuple(t.numpy() for t in (batch.keys, batch.input_ids, batch.attention_mask, pre, gate))
            _insert_top(tops, offset, entries, around, numba.get_num_threads())
            return
        F, w = self.d.n_features, self.state.stats.window  # type: ignore[union-attr]
        cur = {n: self.dev[n][:, offset : offset + F] for n in TOP_FIELDS}
        contender = val >= cur["top_val"][-1][idx]
        row, pos, idx, val = row[contender], pos[contender], idx[contender], val[contender]
        if len(val) == 0:
            return
        dev, R, T = pre.device, len(batch.keys), pre.shape[1]
        cell = row * F + idx  # (window, feature) cell of each entry
        peak = torch.full((R * F,), -np.inf, device=dev).scatter_reduce_(0, cell, val, "amax")
        at_peak = val == peak[cell]
        first = torch.full((R * F,), T, dtype=torch.long, device=dev)
        first.scatter_reduce_(0, cell[at_peak], pos[at_peak], "amin")
        cells = cell[at_peak].unique()
        live = idx[at_peak].unique()
        # candidates as (window, live feature) tables; −inf where a window has none
        live_of = torch.full((F,), -1, dtype=torch.long, device=dev)
        live_of[live] = torch.arange(len(live), device=dev)
        c_row, c_feat = cells // F, cells % F
        c_col = live_of[c_feat]
        cand_val = torch.full((R, len(live)), -np.inf, device=dev)
        cand_val[c_row, c_col] = peak[cells]
        p = torch.zeros((R, len(live)), dtype=torch.long, device=dev)
        p[c_row, c_col] = first[cells]
        ids, attn = batch.input_ids.to(dev), batch.attention_mask.to(dev)

        def windows(rows: Tensor, cols: Tensor) -> dict[str, Tensor]:
            """Tokens and activations around the peaks of the candidates that entered."""
            where = p[rows, cols][:, None] + torch.arange(-w, w + 1, device=dev)  # (entered, 2w+1)
            wc, r = where.clamp(0, T - 1), rows[:, None].expand_as(where)
            f = live[cols][:, None].expand_as(wc)
            valid = (where >= 0) & (where < T) & attn[r, wc].bool()
            return {
                "top_tok": torch.where(valid, ids[r, wc], -1),
                "top_act": torch.where(gate[r, wc, f], pre[r, wc, f], 0.0).float() * valid,
            }

        cand = {"top_val": cand_val, "top_key": batch.keys.to(dev)[:, None].expand(-1, len(live)), "top_pos": p}
        sub = {n: t[:, live] for n, t in cur.items()}
        merge_top(sub, cand, windows)
        for n, t in cur.items():
            t[:, live] = sub[n]

    def end_chunk(self, keep: bool) -> NonZeros | None:
        """Step 5: the chunk's non-zeros if `keep` (for the pair sums or a `Replay`); the next
        chunk starts empty."""
        nz = NonZeros.build(self.chunk_tokens, len(self.d.layers), self.parts) if keep else None
        self.parts.clear()
        self.chunk_tokens = 0
        return nz

    def pull(self) -> None:
        """Device statistics into the host arrays (a no-op copy on the CPU)."""
        s = self.state.stats
        if s is None:
            return
        for n, t in self.dev.items():
            host = getattr(s, n)
            if t.device.type != "cpu":
                host[...] = t.cpu().numpy()
        s.sigma_final += float(self.sigma_final)
        self.sigma_final.zero_()


class Replay:
    """A pass's chunks of non-zeros kept on disk, so that later passes over the same windows add
    them to their pair state instead of running the model and encoders again.

    Chunk k is ``chunk-K.safetensors`` (layer_ptr, index, value and the cursor after it), each
    written atomically; ``done.json`` marks the set complete. The pass that writes it may resume
    from a checkpoint: chunks are named by their place in the stream, so it writes again the
    ones after its checkpoint, with the same contents. It stops writing, and drops what it
    wrote, when the disk's free space would fall below `keep_free` bytes; later passes then run
    the model as before.
    """

    def __init__(self, root: Path, keep_free: int = 10 * 2**30):
        self.root, self.keep_free = Path(root), keep_free

    def chunk(self, k: int) -> Path:
        return self.root / f"chunk-{k:08d}.safetensors"

    @property
    def complete(self) -> int | None:
        """The number of chunks, once all are written."""
        done = self.root / "done.json"
        return json.loads(done.read_text())["chunks"] if done.exists() else None

    def write(self, k: int, nz: NonZeros, end: Cursor) -> bool:
        """Keep chunk k; False (and nothing kept) when the disk is too full to go on."""
        self.root.mkdir(parents=True, exist_ok=True)
        size = nz.layer_ptr.nbytes + nz.index.nbytes + nz.value.nbytes
        if shutil.disk_usage(self.root).free - size < self.keep_free:
            self.drop()
            return False
        end_array = np.asarray(dataclasses.astuple(end), np.int64)
        save_arrays({"layer_ptr": nz.layer_ptr, "index": nz.index, "value": nz.value, "end": end_array}, self.chunk(k))
        return True

    def finish(self, chunks: int) -> None:
        """Mark the set complete, if chunks 0 … `chunks` − 1 are all there."""
        if self.root.exists() and all(self.chunk(k).exists() for k in range(chunks)):
            (self.root / "done.json").write_text(json.dumps({"chunks": chunks}))

    def read(self, k: int, n_layers: int) -> tuple[NonZeros, Cursor]:
        a = load_np(str(self.chunk(k)))
        ptr = a["layer_ptr"]  # (token, layer + 1): token τ's entries of layer i start at ptr[τ, i]
        layer = np.repeat(np.tile(np.arange(n_layers), len(ptr)), np.diff(ptr, axis=1).ravel())
        return NonZeros(len(ptr), ptr, layer, a["index"], a["value"]), Cursor(*a["end"].tolist())

    def drop(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


OnChunk = Callable[[int, Cursor], None]
"""Called after each chunk with its counted tokens and the cursor after it."""


def stream_pass(
    model: HookedModel,
    d: Dictionary,
    corpus: Corpus,
    cfg: StatsConfig,
    state: PassState,
    checkpoint: Path | None = None,
    stop_shard: int | None = None,
    stop_at: Cursor | None = None,
    progress: OnChunk | None = None,
    replay: Replay | None = None,
) -> PassState:
    """Continue `state` over `corpus` from its cursor up to shard `stop_shard` (or the end).

    `stop_at`, the cursor where the first pass ended (``max_tokens``), ends later passes at
    the same window: chunks from a chunk boundary are the same in every pass. With a complete
    `replay` (the same windows' chunks, kept by an earlier pass) a pass without statistics adds
    its chunks instead of running the model; an incomplete one is written as this pass goes.
    """
    d.check_model(model.d_model, model.n_layers)
    if state.done:
        return state
    total = None if replay is None or state.stats is not None else replay.complete
    acc, writing = None, replay if total is None else None  # where this pass keeps its chunks, if it does
    source: Chunks
    if replay is not None and total is not None:
        source = _kept_chunks(replay, total, len(d.layers), state.chunks)
    else:
        keep_freed_memory()  # each batch's temporaries reuse the last one's memory
        acc = _Accumulator(model, d, state)
        source = _model_chunks(acc, corpus, cfg, state, stop_shard, stop_at, writing is not None)
    for n_chunks, (nz, end, n, documents) in enumerate(source, 1):
        if nz is not None and state.pairs is not None:
            state.pairs.add(nz)
        if writing is not None and nz is not None and not writing.write(state.chunks, nz, end):
            writing = None  # the disk is too full: later passes run the model
        state.chunks += 1
        if state.stats is not None:
            state.stats.documents += documents
        state.cursor = end
        if progress is not None:
            progress(n, end)
        if checkpoint is not None and n_chunks % cfg.checkpoint_every == 0:
            if acc is not None:
                acc.pull()
            state.save(checkpoint)
    if acc is not None:
        acc.pull()
    state.done = True
    if writing is not None:
        writing.finish(state.chunks)
    if checkpoint is not None:
        state.save(checkpoint)
    return state


Chunks = Iterator[tuple[NonZeros | None, Cursor, int, int]]
"""A pass's chunks: their non-zeros (None when nothing needs them), the cursor after each, its
tokens, and the documents it finished."""


def _model_chunks(
    acc: _Accumulator,
    corpus: Corpus,
    cfg: StatsConfig,
    state: PassState,
    stop_shard: int | None,
    stop_at: Cursor | None,
    keep: bool,
) -> Chunks:
    """Chunks from the corpus through the model and encoders (`_Accumulator`), up to `stop_at`,
    ``max_tokens`` or shard `stop_shard`; non-zeros built when the pass has pairs or `keep`s them."""
    model = acc.model
    context, pad = cfg.context or model.context, pad_id(model.tokenizer)
    tokens = state.stats.tokens if state.stats is not None else 0
    for chunk in chunks(corpus, model.tokenizer, context, cfg.chunk_tokens, state.cursor, stop_shard):
        for batch in pack(chunk.windows, cfg.batch_tokens, pad):
            acc.add(batch)
        n = acc.chunk_tokens
        tokens += n
        yield acc.end_chunk(keep=keep or state.pairs is not None), chunk.end, n, chunk.documents
        if stop_at is not None and chunk.end >= stop_at:
            return
        if stop_at is None and cfg.max_tokens is not None and tokens >= cfg.max_tokens:
            return


def _kept_chunks(replay: Replay, total: int, n_layers: int, start: int) -> Chunks:
    """Chunks `start` … `total` − 1 as an earlier pass kept them: the same non-zeros, bit for
    bit, without the model."""
    for k in range(start, total):
        nz, end = replay.read(k, n_layers)
        yield nz, end, nz.n_tokens, 0


def stream_statistics(
    model: HookedModel,
    d: Dictionary,
    corpus: Corpus,
    cfg: StatsConfig = StatsConfig(),
    pairs: PairState | None = None,
    progress: bool = False,
) -> PassState:
    """One in-memory pass computing per-feature statistics and `pairs` (default: exact sparse
    pairs): tests, benchmarks and small corpora. `graphkit collect` runs `stream_pass` itself."""
    L, F = len(d.layers), d.n_features
    state = PassState(FeatureStats(L, F, cfg.top_k, cfg.window), pairs if pairs is not None else SparsePairs(L, F))
    bar = tqdm(unit="tok", unit_scale=True, disable=not progress, desc="collect")
    try:
        return stream_pass(model, d, corpus, cfg, state, progress=lambda n, _c: bar.update(n))
    finally:
        bar.close()

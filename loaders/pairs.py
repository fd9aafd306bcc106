"""Pair sums behind ERA and TWERA, accumulated over a token stream with fixed memory.

For sources s and targets t on dictionary layers i < j (DESIGN.md):

    C_sum[s, t] = Σ_tokens a_s a_t          I_sum[s, t] = Σ_tokens a_s 1(a_t > 0)

Two states accumulate them from a chunk's non-zero activations (`NonZeros`):

- `DenseBlocks` (the default): one dense float32 (source feature, target feature) block per
  (i, j) in a *group*, C and I side by side (8 B per pair) or C alone (4 B), whatever the
  corpus length. A `BlockPlan` fits the L(L−1)/2 blocks to a memory budget: all of C and I in
  one pass when they fit, else groups of C alone, one pass over the corpus (or one set of
  workers) each, and then one more pass that sums I for the kept edges only (`KeptPairs`):
  TWERA, which picks the edges, needs C on every pair; ERA needs I only where an edge is kept.
  The update is
    - on the CPU, a sparse outer-product scatter (`_scatter`, numba, parallel over source
      features so no two threads touch one row; each row's updates run in token order, so the
      result does not depend on the thread count);
    - on a GPU, a sparse × dense product per block: C_ij += A_iᵀ A_j, I_ij += A_iᵀ 1(A_j > 0)
      with A_iᵀ in CSR (a dense GEMM would do 1/density² times the work: ~10⁴ at real L0).
- `SparsePairs` (``--exact-pairs``): every co-active pair kept in float64 scipy CSR, per source
  layer a (feature, later-layer features) matrix. Exact and small for small dictionaries; its
  size grows with the corpus toward n² pairs, so it is the test oracle, not the scale path.

Both merge by addition (`merge`), so shards processed apart add up to one pass over all.
"""

from __future__ import annotations

import itertools
import json
import mmap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
import torch
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from safetensors import safe_open
from safetensors.numpy import load_file as load_np
from torch import Tensor

from loaders.files import save_arrays

BYTES_PER_PAIR = 8
"""float32 C and float32 I per (source, target)."""

BYTES_PER_PAIR_C = 4
"""float32 C alone, when I is summed for the kept pairs only (`BlockPlan.i_pass`)."""


@dataclass(frozen=True)
class NonZeros:
    """A chunk's non-zero activations, token-major.

    Entries are sorted by (token, layer, feature); `layer_ptr[τ, i]` … `layer_ptr[τ, i + 1]`
    are token τ's entries on dictionary layer i.
    """

    n_tokens: int
    layer_ptr: np.ndarray  # (token, layer + 1) int64
    layer: np.ndarray  # (nnz,) int64 dictionary-layer index i
    index: np.ndarray  # (nnz,) int32 feature index within the layer
    value: np.ndarray  # (nnz,) float32

    @property
    def token(self) -> np.ndarray:
        """(nnz,) token of each entry."""
        counts = np.diff(self.layer_ptr[:, [0, -1]], axis=1).ravel()
        return np.repeat(np.arange(self.n_tokens, dtype=np.int64), counts)

    def on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(token, index, value, layer) of each entry as tensors on `device` (indices int64)."""
        arrays = (self.token, self.index.astype(np.int64), self.value, self.layer)
        tok, idx, val, lay = (torch.from_numpy(a).to(device) for a in arrays)
        return tok, idx, val, lay

    @staticmethod
    def build(
        n_tokens: int, n_layers: int, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    ) -> NonZeros:
        """From (token, layer, index, value) parts already in token-major order, tokens ascending."""
        if parts:
            tok, lay, idx, val = (np.concatenate([p[k] for p in parts]) for k in range(4))
        else:
            tok, lay = np.zeros(0, np.int64), np.zeros(0, np.int16)
            idx, val = np.zeros(0, np.int32), np.zeros(0, np.float32)
        # entries are sorted by (token, layer): each (token, layer)'s first entry by binary search
        key = tok.astype(np.int64) * n_layers + lay
        starts = np.arange(n_tokens)[:, None] * n_layers + np.arange(n_layers + 1)
        ptr = np.searchsorted(key, starts.ravel(), side="left").reshape(n_tokens, n_layers + 1)
        return NonZeros(
            n_tokens,
            ptr.astype(np.int64, copy=False),
            lay.astype(np.int64),
            idx.astype(np.int32, copy=False),
            val.astype(np.float32, copy=False),
        )

    @staticmethod
    def token_major(parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]]):
        """One batch's per-layer (token, layer, index, value) parts, each sorted by token, merged
        into token-major order (token, then layer, then index): a merge, no sort.
        Returns (token int32, layer int16, index, value)."""
        tok, idx, val = (np.concatenate([p[k] for p in parts]) for k in (0, 2, 3))
        bounds = np.cumsum([0] + [len(p[0]) for p in parts])
        layers = np.array([p[1] for p in parts], np.int64)
        return _token_major(tok, idx.astype(np.int32, copy=False), val, bounds, layers)


@numba.njit(cache=True, nogil=True)
def _token_major(tok, idx, val, bounds, layers):
    """`NonZeros.token_major` of the parts concatenated (part k: entries bounds[k] … bounds[k + 1],
    on dictionary layer layers[k], tokens ascending): a merge, token by token, of each part's
    run for that token, the parts in layer order."""
    order = np.argsort(layers, kind="mergesort")
    at = bounds[:-1].copy()  # each part's next entry
    n = len(tok)
    out_tok, out_lay = np.empty(n, np.int32), np.empty(n, np.int16)
    out_idx, out_val = np.empty(n, np.int32), np.empty(n, np.float32)
    d = 0
    for t in range(tok.min(), tok.max() + 1) if n else range(0):
        for k in order:
            e, end = at[k], bounds[k + 1]
            while e < end and tok[e] == t:
                out_tok[d], out_lay[d], out_idx[d], out_val[d] = t, layers[k], idx[e], val[e]
                d += 1
                e += 1
            at[k] = e
    return out_tok, out_lay, out_idx, out_val


# -- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockPlan:
    """Which (source layer, target layer) blocks each pass accumulates, and whether I comes with them.

    TWERA needs C on every pair, ERA needs I only on the kept edges. When every block of C and
    I (8 B a pair) fits the budget, one pass sums both. Otherwise blocks hold C alone (4 B a
    pair: twice the blocks a pass), in as many passes as that takes, and one more pass sums I
    for the kept pairs only (`KeptPairs`). That is never more passes than C and I together
    would take (a group of C alone holds at least twice the blocks), and each pass does less:
    on a GPU the sparse product for I is gone; on the 2-core CPU the scatter of C alone plus
    the I pass took as long as C and I together over the same passes (benchmarks.md).
    """

    n_layers: int
    n_features: int
    groups: tuple[tuple[tuple[int, int], ...], ...]
    """Per block pass, its blocks (i, j), i < j, as dictionary-layer indices."""
    i_pass: bool = False
    """The blocks hold C alone; I is summed for the kept pairs in one more pass."""

    @property
    def block_bytes(self) -> int:
        return self.n_features**2 * (BYTES_PER_PAIR_C if self.i_pass else BYTES_PER_PAIR)

    @property
    def passes(self) -> int:
        """Passes over the corpus: one per group of blocks, and the I pass."""
        return len(self.groups) + self.i_pass

    @staticmethod
    def make(n_layers: int, n_features: int, budget_bytes: int) -> BlockPlan:
        """Blocks in (i, j) order, as many per group as fit `budget_bytes`."""
        blocks = tuple((i, j) for i in range(n_layers) for j in range(i + 1, n_layers))
        if len(blocks) * n_features**2 * BYTES_PER_PAIR <= budget_bytes:
            return BlockPlan(n_layers, n_features, (blocks,) if blocks else ())
        per = n_features**2 * BYTES_PER_PAIR_C
        fit = budget_bytes // per
        if fit < 1:
            raise ValueError(
                f"--memory-budget {budget_bytes / 2**30:.2f} GiB holds no pair block: one block of "
                f"{n_features} × {n_features} features takes {per / 2**30:.2f} GiB (C alone in float32); "
                "raise the budget"
            )
        groups = tuple(blocks[k : k + fit] for k in range(0, len(blocks), fit))
        return BlockPlan(n_layers, n_features, groups, i_pass=True)

    def describe(self) -> dict:
        return {
            "blocks": sum(len(g) for g in self.groups),
            "passes": self.passes,
            "i_pass": self.i_pass,
            "bytes_per_block": self.block_bytes,
            "bytes_per_pass": [len(g) * self.block_bytes for g in self.groups],
        }


# -- dense blocks -------------------------------------------------------------------------------


@intrinsic
def _prefetch(typingctx, array, i):
    """Ask the CPU to bring the cache line holding `array[i]` into L1 (LLVM's prefetch for read)."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        ty = signature.args[0]
        ptr = cgutils.get_item_pointer(
            context, builder, ty, context.make_array(ty)(context, builder, args[0]), [args[1]]
        )
        i32 = ir.IntType(32)
        ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return types.void(array, types.intp), codegen


_LANES = 16  # float32 values in one 512-bit register
_VECTOR = "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")
"""Whether `_scatter` updates several targets of a token at once: where the CPU has AVX-512's
gather and scatter (elsewhere LLVM would emulate them one lane at a time)."""


@intrinsic
def _add_lanes(typingctx, row, index, value, r, a):
    """One vector gather, add and scatter for the targets t = index[k], k = r … (distinct),
    each lane rounded as a scalar loop rounds it:

    - `row` float32 (F,), C alone: row[t] += a · value[k] for 16 lanes;
    - `row` float32 (F, 2), C and I side by side: row[t] += (a · value[k], a) for 8 lanes, one
      64-bit lane a pair, so C and I of a pair are one element of one cache line.
    """
    if not isinstance(row, types.Array) or not isinstance(index, types.Array):
        return None
    pairs = row.ndim == 2

    def codegen(context, builder, signature, args):
        row_ty, index_ty, value_ty = signature.args[:3]
        f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
        n, elem = (_LANES // 2, i64) if pairs else (_LANES, f32)
        vf, vi = ir.VectorType(f32, n), ir.VectorType(i64, n)
        ve, vp = ir.VectorType(elem, n), ir.VectorType(elem.as_pointer(), n)

        def splat(x, vec):
            one = builder.insert_element(ir.Constant(vec, None), x, i32(0))
            return builder.shuffle_vector(one, ir.Constant(vec, None), ir.Constant(ir.VectorType(i32, n), [0] * n))

        def lanes(ty, arr, of):  # n consecutive values from arr[r]
            array = context.make_array(ty)(context, builder, arr)
            ptr = cgutils.get_item_pointer(context, builder, ty, array, [args[3]])
            return builder.load(builder.bitcast(ptr, ir.VectorType(of, n).as_pointer()), align=4)

        shift = ir.Constant(vi, [3 if pairs else 2] * n)  # bytes an element: 8 a pair, 4 a float
        offsets = builder.shl(builder.sext(lanes(index_ty, args[1], i32), vi), shift)
        base = builder.ptrtoint(context.make_array(row_ty)(context, builder, args[0]).data, i64)
        ptrs = builder.inttoptr(builder.add(splat(base, vi), offsets), vp)
        mask = ir.Constant(ir.VectorType(ir.IntType(1), n), [1] * n)
        suffix = f"v{n}{'i64' if pairs else 'f32'}.v{n}p0"
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ve, [vp, i32, mask.type, ve]), f"llvm.masked.gather.{suffix}"
        )
        scatter = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ve, vp, i32, mask.type]), f"llvm.masked.scatter.{suffix}"
        )
        a = splat(args[4], vf)
        add = builder.fmul(a, lanes(value_ty, args[2], f32))
        align = i32(8 if pairs else 4)
        old = builder.call(gather, [ptrs, align, mask, ir.Constant(ve, None)])
        if pairs:  # (a·v₀, a, a·v₁, a, …) onto (C, I) pairs viewed as 16 floats
            both = ir.Constant(ir.VectorType(i32, 2 * n), [x for k in range(n) for x in (k, n + k)])
            add = builder.shuffle_vector(add, a, both)
            new = builder.bitcast(builder.fadd(builder.bitcast(old, ir.VectorType(f32, 2 * n)), add), ve)
        else:
            new = builder.fadd(old, add)
        builder.call(scatter, [new, ptrs, align, mask])
        return context.get_dummy_value()

    return types.void(row, index, value, types.intp, types.float32), codegen


_LINE = 16  # float32 / int32 values per 64-byte cache line
_AHEAD = 8  # tokens ahead whose target lists are prefetched
_ROW_LINES = 8  # lines of the next row prefetched per token of this one


@numba.njit(parallel=True, cache=True, nogil=True)
def _scatter(sums, slot_j, ptr, index, value, src_start, src_end, src_tok, src_val, src_layer, src_index, lanes):
    """For every co-active pair with targets on one dictionary layer j, whose non-zeros are
    layer-major (token τ's are ptr[τ] … ptr[τ + 1]): C[b, s, t] += a_s a_t, and I[b, s, t] += a_s
    where `sums` holds them side by side, (block, source, target, 2); else `sums` is C alone,
    (block, source, target). numba compiles one variant for each.

    `slot_j[i]` is the block of (i, j) or −1; source q's entries are src_tok / src_val
    [src_start[q], src_end[q]) (feature-major, tokens ascending). Each row sums[b, s] has one
    owner, and its updates run in token order whatever the thread count. What keeps the walk
    fast: layer j's target lists alone (a chunk's worth fits in L3) with those of the tokens
    `_AHEAD` prefetched, and the next row prefetched while this one is updated; with `lanes`
    (`_VECTOR`), a token's targets several at a time by AVX-512's gather and scatter
    (`_add_lanes`), C and I of a pair in one 64-bit lane.
    """
    pairs = sums.ndim == 4
    step = _LANES // 2 if pairs else _LANES
    n = len(src_layer)
    flat = sums.reshape(sums.shape[0], sums.shape[1], -1)  # rows as float32 lines, to prefetch
    width = flat.shape[2]
    for q in numba.prange(n):
        b = slot_j[src_layer[q]]
        if b < 0:
            continue
        row = sums[b, src_index[q]]
        nb = slot_j[src_layer[q + 1]] if q + 1 < n else -1
        next_row = flat[max(nb, 0), src_index[min(q + 1, n - 1)]]
        line = 0 if nb >= 0 else width
        lo, hi = src_start[q], src_end[q]
        for p in range(lo, hi):
            for _ in range(_ROW_LINES):
                if line < width:
                    _prefetch(next_row, line)
                    line += _LINE
            if p + _AHEAD < hi:
                ahead = src_tok[p + _AHEAD]
                for r in range(ptr[ahead], ptr[ahead + 1], _LINE):
                    _prefetch(index, r)
                    _prefetch(value, r)
            tok, a = src_tok[p], src_val[p]
            rest, end = ptr[tok], ptr[tok + 1]
            if lanes:  # a token's targets are distinct: a vector of them, the rest one by one
                while rest + step <= end:
                    _add_lanes(row, index, value, rest, a)
                    rest += step
            if pairs:
                for r in range(rest, end):
                    t = index[r]
                    row[t, 0] += a * value[r]
                    row[t, 1] += a
            else:
                for r in range(rest, end):
                    row[index[r]] += a * value[r]


@numba.njit(cache=True, nogil=True)
def _layer_lists(layer_ptr, index, value, j):
    """Layer j's entries of a token-major chunk as their own (ptr, index, value) arrays."""
    n = layer_ptr.shape[0]
    ptr = np.zeros(n + 1, np.int64)
    for tok in range(n):
        ptr[tok + 1] = ptr[tok] + layer_ptr[tok, j + 1] - layer_ptr[tok, j]
    idx, val = np.empty(ptr[n], np.int32), np.empty(ptr[n], np.float32)
    for tok in range(n):
        start, width = layer_ptr[tok, j], layer_ptr[tok, j + 1] - layer_ptr[tok, j]
        idx[ptr[tok] : ptr[tok] + width] = index[start : start + width]
        val[ptr[tok] : ptr[tok] + width] = value[start : start + width]
    return ptr, idx, val


def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 zero array on the CPU in its own anonymous mapping, which asks for transparent
    huge pages (fewer TLB misses on rows of 32–64 KiB) where the kernel offers them."""
    buf = mmap.mmap(-1, int(np.prod(shape)) * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        buf.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(buf, np.float32).reshape(shape)  # the array keeps the mapping alive


@numba.njit(parallel=True, cache=True, nogil=True)
def _touch(a, step):
    """Write a zero every `step` values of `a` (already zero): its pages are mapped now, by
    every thread, not one at a time inside the first chunk's scatter."""
    for k in numba.prange(len(a) // step):
        a[k * step] = 0.0


class DenseBlocks:
    """Dense C and I (or C alone) for one group of blocks: (block, source feature, target feature) float32."""

    def __init__(
        self,
        n_layers: int,
        n_features: int,
        blocks: tuple[tuple[int, int], ...],
        device: str = "cpu",
        with_i: bool = True,
    ):
        self.n_layers, self.n_features, self.blocks = n_layers, n_features, tuple(blocks)
        shape = (len(self.blocks), n_features, n_features)
        t0 = time.perf_counter()
        self._sums: np.ndarray | None = None
        """On the CPU, what the scatter adds to: C and I side by side, (block, source, target, 2),
        so that a pair's two sums are one 8-byte element of one cache line; or C alone. `C` and
        `I` are views of it (made on demand, so that a pickled copy stays one array)."""
        self._on_device: tuple[Tensor, Tensor | None] | None = None
        """On a GPU: C and I (or None)."""
        if device == "cpu":
            self._sums = _zeros((*shape, 2) if with_i else shape)
            # mapping 14 GiB of fresh pages takes ~9 s on the 2 cores here when both map them
            # (and ~15 s more of the first chunk's scatter when its faults do)
            _touch(self._sums.reshape(-1), mmap.PAGESIZE // 4)
        else:
            zeros = [torch.zeros(shape, dtype=torch.float32, device=device) for _ in range(1 + with_i)]
            self._on_device = (zeros[0], zeros[1] if with_i else None)
        self.alloc_seconds = time.perf_counter() - t0  # a cost of the state's size, not of tokens
        self.slot = np.full((n_layers, n_layers), -1, np.int64)
        for b, (i, j) in enumerate(self.blocks):
            self.slot[i, j] = b

    def _views(self) -> tuple[Tensor, Tensor | None]:
        """(C, I): on the CPU, views of the side-by-side sums; on a GPU, its two tensors."""
        if self._on_device is not None:
            return self._on_device
        assert self._sums is not None
        sums = torch.from_numpy(self._sums)
        return (sums[..., 0], sums[..., 1]) if self.with_i else (sums, None)

    @property
    def C(self) -> Tensor:
        """Σ a_s a_t: (block, source feature, target feature) float32."""
        return self._views()[0]

    @property
    def I(self) -> Tensor | None:  # noqa: E743 (the sum's name in DESIGN.md)
        """Σ a_s 1(a_t > 0), like `C`; None when the blocks hold C alone (`BlockPlan.i_pass`)."""
        return self._views()[1]

    @property
    def with_i(self) -> bool:
        """Whether the blocks hold I beside C (read without making views of a read-only state)."""
        if self._on_device is not None:
            return self._on_device[1] is not None
        assert self._sums is not None
        return self._sums.ndim == 4

    def add(self, nz: NonZeros, backend: str = "auto") -> None:
        """Accumulate a chunk (`backend`: ``scatter`` (numba, CPU), ``spmm`` (torch sparse × dense,
        any device), or ``auto``: scatter on the CPU, spmm on a GPU)."""
        if not self.blocks or len(nz.value) == 0:
            return
        if backend == "auto":
            backend = "scatter" if self._sums is not None else "spmm"
        if backend == "scatter":
            self._add_scatter(nz)
        else:
            self._add_spmm(nz)

    def _add_scatter(self, nz: NonZeros) -> None:
        F, L = self.n_features, self.n_layers
        src_layers = np.array(sorted({i for i, _ in self.blocks}), np.int64)
        csc = _feature_major(nz, L, F)
        feats = (src_layers[:, None] * F + np.arange(F)).ravel()  # (source feature,) global ids
        # prange splits its range statically; a fixed shuffle spreads early layers' (costlier)
        # rows over the threads. Each row still has one owner, so the result does not change.
        feats = feats[np.random.default_rng(0).permutation(len(feats))]
        sources = (csc.indptr[feats], csc.indptr[feats + 1], csc.indices, csc.data, feats // F, feats % F)
        assert self._sums is not None, "the scatter adds to blocks on the CPU (`cpu`)"
        for j in sorted({j for _, j in self.blocks}):  # one target layer's lists in cache at a time
            ptr, index, value = _layer_lists(nz.layer_ptr, nz.index, nz.value, j)
            _scatter(self._sums, np.ascontiguousarray(self.slot[:, j]), ptr, index, value, *sources, _VECTOR)

    def _add_spmm(self, nz: NonZeros) -> None:
        """C_ij += A_iᵀ A_j and I_ij += A_iᵀ 1(A_j > 0) (if kept) with A_iᵀ sparse (CSR) and A_j dense:
        nnz(A_i) · F multiply-adds a block, not n · F² as a dense GEMM would (activations are
        ~1% dense). One block at a time, so at most one dense (token, feature) layer is held."""
        dev, F, n = self.C.device, self.n_features, nz.n_tokens
        tok, idx, val, lay = nz.on(dev)
        sources: dict[int, Tensor] = {}
        for b, (i, j) in enumerate(self.blocks):
            if i not in sources:
                m = lay == i
                coo = torch.sparse_coo_tensor(torch.stack([idx[m], tok[m]]), val[m], (F, n), check_invariants=False)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                    sources = {i: coo.coalesce().to_sparse_csr()}  # (feature, token); blocks in (i, j) order
            m = lay == j
            A_j = _dense_layer(tok[m], idx[m], val[m], n, F)  # (token, feature)
            self.C[b] += torch.sparse.mm(sources[i], A_j)
            if self.I is not None:
                self.I[b] += torch.sparse.mm(sources[i], (A_j > 0).float())

    def merge(self, other: DenseBlocks) -> None:
        if other.blocks != self.blocks or other.with_i != self.with_i:
            raise ValueError(f"cannot merge pair blocks {other.blocks} into {self.blocks} (or C alone into C and I)")
        if self._sums is not None and other._sums is not None:
            # C and I at once; `other` may be a Ray worker's state, whose arrays are read-only
            np.add(self._sums, other._sums, out=self._sums)
            return
        self.C.add_(other.C.to(self.C.device))
        if (I := self.I) is not None and other.I is not None:
            I.add_(other.I.to(I.device))

    def block(self, i: int, j: int) -> tuple[Tensor, Tensor | None]:
        """(C_sum, I_sum) of block (i, j): (source feature, target feature); I_sum None with C alone."""
        b = int(self.slot[i, j])
        return self.C[b], None if self.I is None else self.I[b]

    def cpu(self) -> DenseBlocks:
        """The sums moved to host memory (a worker's state on its way to the driver), laid out
        as blocks made on the CPU are; one block at a time."""
        if self._sums is None:
            host = DenseBlocks(self.n_layers, self.n_features, self.blocks, with_i=self.with_i)
            for into, sums in zip(host._views(), self._views(), strict=True):
                if into is not None and sums is not None:
                    for b in range(len(self.blocks)):
                        into[b].copy_(sums[b])
            self._sums, self._on_device = host._sums, None
        return self

    def save(self, path: Path) -> None:
        sums = {"C": self.C.cpu().numpy()} | ({} if self.I is None else {"I": self.I.cpu().numpy()})
        save_arrays(sums, path / "blocks.safetensors")
        meta = {"blocks": self.blocks, "n_layers": self.n_layers, "with_i": self.with_i}
        (path / "blocks.json").write_text(json.dumps(meta))

    @staticmethod
    def load(path: Path, n_features: int, device: str = "cpu") -> DenseBlocks:
        meta = json.loads((path / "blocks.json").read_text())
        blocks = tuple(tuple(b) for b in meta["blocks"])
        out = DenseBlocks(meta["n_layers"], n_features, blocks, device=device, with_i=meta.get("with_i", True))
        with safe_open(str(path / "blocks.safetensors"), framework="numpy") as f:
            for name in ("C", "I")[: 1 + (out.I is not None)]:
                # block by block: the state plus one block in memory, not twice the state
                stored, into = f.get_slice(name), getattr(out, name)
                if tuple(stored.get_shape()) != tuple(into.shape):
                    raise ValueError(
                        f"{path / 'blocks.safetensors'}: {name} is {stored.get_shape()}, expected {tuple(into.shape)}"
                    )
                for b in range(into.shape[0]):
                    into[b].copy_(torch.from_numpy(stored[b]))
        return out


def _feature_major(nz: NonZeros, n_layers: int, n_features: int) -> sp.csc_matrix:
    """The chunk as a (token, global feature) CSC matrix: each feature's tokens ascending, with
    their values (CSR → CSC is a counting sort, so token order is kept)."""
    indptr = np.r_[nz.layer_ptr[:, 0], nz.layer_ptr[-1, -1]] if nz.n_tokens else np.zeros(1, np.int64)
    cols = nz.layer * n_features + nz.index
    return sp.csr_matrix((nz.value, cols, indptr), shape=(nz.n_tokens, n_layers * n_features)).tocsc()


def _dense_layer(rows: Tensor, cols: Tensor, values: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """A float32 (n_rows, n_cols) matrix with `values` at (rows, cols), zeros elsewhere."""
    out = torch.zeros(n_rows, n_cols, device=values.device)
    out[rows, cols] = values
    return out


# -- I for kept pairs -------------------------------------------------------------------------------


@numba.njit(parallel=True, cache=True, nogil=True)
def _kept_sums(I, starts, src, tgt, indptr, tok, val, n_tokens, n_parts):
    """I[p] += a_s at every token where both src[p] and tgt[p] are active, in token order.

    Pairs are sorted by source; source u's are starts[u] … starts[u + 1]. Each part of the
    sources (every n_parts-th, so early and late layers mix) owns a (token,) float32 array
    holding its current source's activations, zero where it is off; a pair then reads it at its
    target's tokens (feature-major lists, tokens ascending) and adds what it finds. Adding the
    zeros leaves a float32 sum as it was, so the sum equals adding a_s at the co-active tokens
    in token order: bit for bit what the dense blocks' scatter adds.
    """
    n_src = len(starts) - 1
    for part in numba.prange(n_parts):
        at = np.zeros(n_tokens, np.float32)
        for u in range(part, n_src, n_parts):
            s = src[starts[u]]
            for r in range(indptr[s], indptr[s + 1]):
                at[tok[r]] = val[r]
            for p in range(starts[u], starts[u + 1]):
                t, acc = tgt[p], I[p]
                for r in range(indptr[t], indptr[t + 1]):
                    acc += at[tok[r]]
                I[p] = acc
            for r in range(indptr[s], indptr[s + 1]):
                at[tok[r]] = 0.0


_PARTS = 256
"""Parts of the sources in `_kept_sums` (threads take them in turn)."""


class KeptPairs:
    """I_sum for a fixed set of (source, target) pairs, by global feature id: the I pass that
    follows block passes of C alone (`BlockPlan.i_pass`), over the same windows.

    Per chunk, on the CPU each pair reads its source's activations at its target's tokens
    (`_kept_sums`): Σ_pairs (tokens of t) reads of an L2-resident array, 0.045 ms a token for
    3.2M pairs on 8 × 8,192 features at L0 104 (a seventh of forward + encode), and float32 sums
    in token order, bit-identical to the dense blocks' I. On a GPU, per block (i, j) with kept
    pairs, a sampled product (A_iᵀ 1(A_j > 0) at the kept pairs only: cuSPARSE's SDDMM).
    """

    def __init__(self, n_layers: int, n_features: int, src: np.ndarray, tgt: np.ndarray, device: str = "cpu"):
        self.n_layers, self.n_features = n_layers, n_features
        order = np.lexsort((tgt, src))
        self.src = np.ascontiguousarray(src[order], np.int64)
        self.tgt = np.ascontiguousarray(tgt[order], np.int64)
        F = n_features
        if len(self.src) and (self.tgt // F <= self.src // F).any():
            raise ValueError("kept pairs need their target on a later dictionary layer than their source")
        self.I = torch.zeros(len(self.src), dtype=torch.float32, device=device)
        self._starts = np.flatnonzero(np.r_[True, self.src[1:] != self.src[:-1], True]).astype(np.int64)
        """Where each source's pairs start, and their end."""
        self._blocks: list[tuple[int, int, Tensor, Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.src)

    def add(self, nz: NonZeros, backend: str = "auto") -> None:
        """Accumulate a chunk (`backend`: ``scatter`` (numba, CPU), ``spmm`` (torch's sampled
        sparse product, any device), or ``auto``: scatter on the CPU, spmm on a GPU)."""
        if not len(self) or len(nz.value) == 0:
            return
        if backend == "auto":
            backend = "scatter" if self.I.device.type == "cpu" else "spmm"
        if backend == "scatter":
            csc = _feature_major(nz, self.n_layers, self.n_features)
            I, data = self.I.numpy(), csc.data
            _kept_sums(I, self._starts, self.src, self.tgt, csc.indptr, csc.indices, data, nz.n_tokens, _PARTS)
        else:
            self._add_sampled(nz)

    def _patterns(self) -> list[tuple[int, int, Tensor, Tensor]]:
        """Per block (i, j) with kept pairs: (i, j, the pairs' positions in `I`, the block's
        sparsity pattern as CSR), made once on `I`'s device and kept for every chunk."""
        if self._blocks is None:
            dev, F = self.I.device, self.n_features
            block = (self.src // F) * self.n_layers + self.tgt // F
            order = np.argsort(block, kind="stable")  # within a block, (source, target) stays ascending: CSR order
            bounds = np.flatnonzero(np.r_[True, np.diff(block[order]) != 0, True])
            self._blocks = []
            for lo, hi in itertools.pairwise(bounds):
                at = order[lo:hi]
                i, j = divmod(int(block[at[0]]), self.n_layers)
                s, t = self.src[at] - i * F, self.tgt[at] - j * F
                crow = torch.from_numpy(np.r_[0, np.cumsum(np.bincount(s, minlength=F))]).to(dev)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                    pattern = torch.sparse_csr_tensor(  # made once: checking it costs nothing per chunk
                        crow,
                        torch.from_numpy(t).to(dev),
                        torch.zeros(len(at), device=dev),
                        (F, F),
                        check_invariants=True,
                    )
                self._blocks.append((i, j, torch.from_numpy(at).to(dev), pattern))
        return self._blocks

    def _add_sampled(self, nz: NonZeros) -> None:
        dev, F, n = self.I.device, self.n_features, nz.n_tokens
        tok, idx, val, lay = nz.on(dev)
        layers: dict[int, Tensor] = {}
        for i, j, at, pattern in self._patterns():  # blocks in (i, j) order
            if i not in layers:
                m = lay == i
                layers = {i: _dense_layer(idx[m], tok[m], val[m], F, n)}  # A_iᵀ: (feature, token)
            m = lay == j
            fired = _dense_layer(tok[m], idx[m], torch.ones_like(val[m]), n, F)  # 1(A_j > 0): (token, feature)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                sampled = torch.sparse.sampled_addmm(pattern, layers[i], fired, beta=0.0)
            self.I[at] += sampled.values()

    def merge(self, other: KeptPairs) -> None:
        if not (np.array_equal(other.src, self.src) and np.array_equal(other.tgt, self.tgt)):
            raise ValueError("cannot merge the I sums of other kept pairs")
        self.I += other.I.to(self.I.device)

    def sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source, target, I_sum) of every kept pair, sorted by (source, target)."""
        return self.src, self.tgt, self.I.cpu().numpy()

    def cpu(self) -> KeptPairs:
        self.I, self._blocks = self.I.cpu(), None
        return self

    def save(self, path: Path) -> None:
        save_arrays({"src": self.src, "tgt": self.tgt, "I": self.I.cpu().numpy()}, path / "kept.safetensors")

    @staticmethod
    def load(path: Path, n_layers: int, n_features: int, device: str = "cpu") -> KeptPairs:
        a = load_np(str(path / "kept.safetensors"))
        out = KeptPairs(n_layers, n_features, a["src"], a["tgt"], device)
        out.I.copy_(torch.from_numpy(a["I"]))
        return out


# -- exact sparse pairs ----------------------------------------------------------------------------


class SparsePairs:
    """Every co-active pair in float64 CSR: per source layer i, (feature, features of layers > i)."""

    def __init__(self, n_layers: int, n_features: int):
        self.n_layers, self.n_features = n_layers, n_features
        F = n_features
        self.C = [sp.csr_matrix((F, (n_layers - 1 - i) * F)) for i in range(n_layers - 1)]
        self.I = [m.copy() for m in self.C]

    def add(self, nz: NonZeros, backend: str = "auto") -> None:
        """One sparse product gives both sums: the later features' matrix holds a_t + i·1(a_t > 0),
        so (sources)ᵀ @ it has C in its real part and I in its imaginary part."""
        F, L, n = self.n_features, self.n_layers, nz.n_tokens
        if len(nz.value) == 0:
            return
        cols = nz.layer * F + nz.index
        indptr = np.r_[nz.layer_ptr[:, 0], nz.layer_ptr[-1, -1]].astype(np.int64)
        vals = nz.value.astype(np.float64)
        targets = sp.csr_matrix((vals + 1j, cols, indptr), shape=(n, L * F))
        sources = sp.csr_matrix((vals.astype(np.complex128), cols, indptr), shape=(n, L * F)).tocsc()
        for i in range(L - 1):
            both = (sources[:, i * F : (i + 1) * F].T @ targets[:, (i + 1) * F :]).tocsr()  # (feature, later)
            self.C[i] = (self.C[i] + both.real).tocsr()
            self.I[i] = (self.I[i] + both.imag).tocsr()

    def merge(self, other: SparsePairs) -> None:
        for i in range(self.n_layers - 1):
            self.C[i] = (self.C[i] + other.C[i]).tocsr()
            self.I[i] = (self.I[i] + other.I[i]).tocsr()

    def block(self, i: int, j: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(C_sum, I_sum) of block (i, j) as CSR (source feature, target feature)."""
        F = self.n_features
        cols = slice((j - i - 1) * F, (j - i) * F)
        return self.C[i][:, cols], self.I[i][:, cols]

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        for name in ("C", "I"):
            for i, m in enumerate(getattr(self, name)):
                m = m.tocsr()
                arrays |= {
                    f"{name}{i}.data": m.data,
                    f"{name}{i}.indices": m.indices.astype(np.int64),
                    f"{name}{i}.indptr": m.indptr.astype(np.int64),
                }
        save_arrays(arrays, path / "pairs.safetensors")

    @staticmethod
    def load(path: Path, n_layers: int, n_features: int) -> SparsePairs:
        out = SparsePairs(n_layers, n_features)
        arrays = load_np(str(path / "pairs.safetensors"))
        F = n_features
        for name in ("C", "I"):
            setattr(
                out,
                name,
                [
                    sp.csr_matrix(
                        (arrays[f"{name}{i}.data"], arrays[f"{name}{i}.indices"], arrays[f"{name}{i}.indptr"]),
                        shape=(F, (n_layers - 1 - i) * F),
                    )
                    for i in range(n_layers - 1)
                ],
            )
        return out


PairState = DenseBlocks | SparsePairs | KeptPairs


def default_budget(device: str) -> int:
    """Half the device's memory: physical RAM on the CPU, total memory of a GPU."""
    if device.startswith("cuda"):
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory * 0.5)
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)

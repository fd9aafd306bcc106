"""Ways to accumulate the dense pair blocks on the CPU, in pair updates per second.

    python benchmarks/bench_scatter.py [--features 8192] [--l0 121] [--tokens 16384]

One chunk of random non-zeros (`--l0` active features per layer and token, values uniform) on
8 layers, as collect's default chunk holds them (`--tokens`), is added to the seven blocks
(0, 1) … (0, 7) (3.5 GiB of C and I at 8,192 features) by:

- ``scatter``: `DenseBlocks.add(backend="scatter")`, what collect runs on the CPU;
- ``scatter, 1 thread``: the same with numba limited to one thread (how far two threads help);
- ``scatter, C alone``: the same into blocks of C without I, as a plan with an I pass keeps them;
- ``…, one lane``: those two with a token's targets updated one at a time, as on a CPU without
  AVX-512 (where the CPU has it, the scatter does 16 at a time: `loaders.pairs._VECTOR`);
- ``previous scatter``: the kernel collect ran before this one, kept here to measure against:
  the same loop over token-major lists of every layer, without prefetches, into C and I
  allocated apart by torch;
- ``sparse x dense``: `DenseBlocks.add(backend="spmm")`, the GPU path, run on the CPU (on the
  chunk's first 2,048 tokens);
- ``dense GEMM``: C_ij += A_iᵀ A_j with dense A, as pair updates done per second.

A pair update is one co-active (source, target) pair of one token: tokens × blocks × l0².
The best of two runs is printed for each, with its ratio to ``scatter``.

Then the I pass's sums (`KeptPairs.add` on the CPU) for `--kept-pairs` random (source, target)
pairs over all 8 layers (the synthetic run at 4 GB kept 3.2M), in milliseconds per token, the
chunk's feature-major lists included.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp
import torch

from loaders import pairs
from loaders.pairs import DenseBlocks, KeptPairs, NonZeros


@numba.njit(parallel=True)
def _previous_scatter(C, I, slot, layer_ptr, index, value, src_start, src_end, src_tok, src_val, src_layer, src_index):
    L = slot.shape[0]
    for q in numba.prange(len(src_layer)):
        i, s = src_layer[q], src_index[q]
        for j in range(i + 1, L):
            b = slot[i, j]
            if b < 0:
                continue
            C_row, I_row = C[b, s], I[b, s]
            for p in range(src_start[q], src_end[q]):
                tok, a = src_tok[p], src_val[p]
                for r in range(layer_ptr[tok, j], layer_ptr[tok, j + 1]):
                    C_row[index[r]] += a * value[r]
                    I_row[index[r]] += a


def random_chunk(n_tokens: int, n_layers: int, n_features: int, l0: int, seed: int = 0) -> NonZeros:
    rng = np.random.default_rng(seed)
    tok = np.repeat(np.arange(n_tokens), n_layers * l0)
    lay = np.tile(np.repeat(np.arange(n_layers), l0), n_tokens)
    idx = np.concatenate([np.sort(rng.choice(n_features, l0, replace=False)) for _ in range(n_tokens * n_layers)])
    val = rng.random(len(idx)).astype(np.float32)
    return NonZeros.build(n_tokens, n_layers, [(tok, lay, idx.astype(np.int32), val)])


def first_tokens(nz: NonZeros, n: int) -> NonZeros:
    end = nz.layer_ptr[n - 1, -1]
    return NonZeros(n, nz.layer_ptr[:n], nz.layer[:end], nz.index[:end], nz.value[:end])


def best_of(fn: Callable[[], None], repeats: int = 2) -> float:
    fn()  # compile / warm up (and, for the state, touch every page)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=8192)
    ap.add_argument("--l0", type=int, default=121)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--kept-pairs", type=int, default=3_200_000)
    args = ap.parse_args()
    L, F, n = 8, args.features, args.tokens
    nz = random_chunk(n, L, F, args.l0)
    blocks = tuple((0, j) for j in range(1, L))
    updates = len(blocks) * args.l0**2
    db = DenseBlocks(L, F, blocks)
    alone = DenseBlocks(L, F, blocks, with_i=False)

    def previous() -> None:
        C, I = torch.zeros(db.C.shape), torch.zeros(db.C.shape)
        indptr = np.r_[nz.layer_ptr[:, 0], nz.layer_ptr[-1, -1]]
        csc = sp.csr_matrix((nz.value, nz.layer * F + nz.index, indptr), shape=(n, L * F)).tocsc()
        feats = np.random.default_rng(0).permutation(F)  # layer 0's rows, shuffled as collect does
        args = (db.slot, nz.layer_ptr, nz.index, nz.value, csc.indptr[feats], csc.indptr[feats + 1])
        rest = (csc.indices, csc.data, feats // F, feats % F)
        _previous_scatter(C.numpy(), I.numpy(), *args, *rest)  # touch the pages, compile
        t = time.perf_counter()
        _previous_scatter(C.numpy(), I.numpy(), *args, *rest)
        previous.seconds = time.perf_counter() - t  # type: ignore[attr-defined]

    def one_thread() -> None:
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            db.add(nz, backend="scatter")
        finally:
            numba.set_num_threads(before)

    def one_lane(blocks: DenseBlocks) -> Callable[[], None]:
        def run() -> None:
            before, pairs._VECTOR = pairs._VECTOR, False
            try:
                blocks.add(nz, backend="scatter")
            finally:
                pairs._VECTOR = before

        return run

    previous()
    spmm_tokens = min(n, 2048)
    head = first_tokens(nz, spmm_tokens)
    gemm_tokens = min(n, 512)
    dense = torch.rand(gemm_tokens, F)
    block = torch.zeros(F, F)
    rows = {  # seconds per token
        "scatter": best_of(lambda: db.add(nz, backend="scatter")) / n,
        "scatter, 1 thread": best_of(one_thread, repeats=1) / n,
        "scatter, C alone": best_of(lambda: alone.add(nz, backend="scatter")) / n,
        "scatter, one lane": best_of(one_lane(db)) / n,
        "C alone, one lane": best_of(one_lane(alone)) / n,
        "previous scatter": previous.seconds / n,  # type: ignore[attr-defined]
        "sparse x dense": best_of(lambda: db.add(head, backend="spmm"), repeats=1) / spmm_tokens,
        "dense GEMM": best_of(lambda: block.addmm_(dense.T, dense), repeats=1) / gemm_tokens * len(blocks),
    }
    print(f"{n} tokens, 8 layers x {F} features, l0 {args.l0}, blocks (0, 1) … (0, 7): {updates * n:,} pair updates; "
          f"{numba.get_num_threads()} numba threads, {torch.get_num_threads()} torch threads")  # fmt: skip
    base = rows["scatter"]
    for name, seconds in rows.items():
        print(f"{name:>18}: {updates / seconds / 1e6:8.1f} M updates/s   ratio to scatter {base / seconds:5.2f}")
    rng = np.random.default_rng(1)
    i = rng.integers(0, L - 1, args.kept_pairs)
    j = i + 1 + (rng.random(args.kept_pairs) * (L - 1 - i)).astype(np.int64)
    kept = KeptPairs(L, F, i * F + rng.integers(0, F, len(i)), j * F + rng.integers(0, F, len(j)))
    seconds = best_of(lambda: kept.add(nz, backend="scatter"))
    print(f"I pass, {len(kept):,} kept pairs: {seconds / n * 1e3:.3f} ms a token ({seconds:.2f} s a chunk)")


if __name__ == "__main__":
    main()

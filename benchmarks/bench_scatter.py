"""Ways to accumulate the dense pair blocks on the CPU, in pair updates per second.

    python benchmarks/bench_scatter.py [--features 8192] [--l0 121] [--tokens 4096]

One chunk of random non-zeros (`--l0` active features per layer and token, values uniform)
over three layers, so three (source, target) blocks, is added to dense C and I by:

- ``scatter``: `DenseBlocks.add(backend="scatter")`, what collect runs on the CPU (C and I);
- ``scatter, 1 thread``: the same with numba limited to one thread (how far two threads help);
- ``C only``: the scatter's loop without I (what computing I in a later pass would save);
- ``sparse x dense``: `DenseBlocks.add(backend="spmm")`, the GPU path, run on the CPU;
- ``dense GEMM``: C_ij += A_iᵀ A_j with dense A, as pair updates done per second.

A pair update is one co-active (source, target) pair of one token: tokens × blocks × l0².
The best of three runs is printed for each, with its ratio to ``scatter``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numba
import numpy as np
import torch

from loaders.pairs import DenseBlocks, NonZeros


@numba.njit(parallel=True, boundscheck=False)
def _scatter_c_only(C, slot, layer_ptr, index, value, src_start, src_end, src_tok, src_val, src_layer, src_index):
    L = slot.shape[0]
    for q in numba.prange(len(src_layer)):
        i, s = src_layer[q], src_index[q]
        for j in range(i + 1, L):
            b = slot[i, j]
            if b < 0:
                continue
            row = C[b, s]
            for p in range(src_start[q], src_end[q]):
                tok, a = src_tok[p], src_val[p]
                for r in range(layer_ptr[tok, j], layer_ptr[tok, j + 1]):
                    row[index[r]] += a * value[r]


def random_chunk(n_tokens: int, n_layers: int, n_features: int, l0: int, seed: int = 0) -> NonZeros:
    rng = np.random.default_rng(seed)
    tok = np.repeat(np.arange(n_tokens), n_layers * l0)
    lay = np.tile(np.repeat(np.arange(n_layers), l0), n_tokens)
    idx = np.concatenate([np.sort(rng.choice(n_features, l0, replace=False)) for _ in range(n_tokens * n_layers)])
    val = rng.random(len(idx)).astype(np.float32)
    return NonZeros.build(n_tokens, n_layers, [(tok, lay, idx.astype(np.int32), val)])


def best_of(fn: Callable[[], None], repeats: int = 3) -> float:
    fn()  # compile / warm up
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
    ap.add_argument("--tokens", type=int, default=4096)
    args = ap.parse_args()
    L, F, n = 3, args.features, args.tokens
    nz = random_chunk(n, L, F, args.l0)
    blocks = ((0, 1), (0, 2), (1, 2))
    updates = n * len(blocks) * args.l0**2
    db = DenseBlocks(L, F, blocks)

    def c_only() -> None:
        import scipy.sparse as sp

        indptr = np.r_[nz.layer_ptr[:, 0], nz.layer_ptr[-1, -1]]
        csc = sp.csr_matrix((nz.value, nz.layer * F + nz.index, indptr), shape=(n, L * F)).tocsc()
        feats = np.random.default_rng(0).permutation(2 * F)  # as collect does: threads share the work
        _scatter_c_only(
            db.C.numpy(), db.slot, nz.layer_ptr, nz.index, nz.value,
            csc.indptr[feats], csc.indptr[feats + 1], csc.indices, csc.data, feats // F, feats % F,
        )  # fmt: skip

    def one_thread() -> None:
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            db.add(nz, backend="scatter")
        finally:
            numba.set_num_threads(before)

    gemm_tokens = min(n, 512)
    dense = torch.rand(gemm_tokens, F)
    block = torch.zeros(F, F)
    gemm_s = best_of(lambda: block.addmm_(dense.T, dense), repeats=1) * n / gemm_tokens * len(blocks)

    rows = {
        "scatter": best_of(lambda: db.add(nz, backend="scatter")),
        "scatter, 1 thread": best_of(one_thread),
        "C only": best_of(c_only),
        "sparse x dense": best_of(lambda: db.add(nz, backend="spmm"), repeats=1),
        "dense GEMM": gemm_s,
    }
    print(f"{n} tokens, 3 layers x {F} features, l0 {args.l0}: {updates:,} pair updates; "
          f"{numba.get_num_threads()} numba threads, {torch.get_num_threads()} torch threads")  # fmt: skip
    base = rows["scatter"]
    for name, seconds in rows.items():
        print(f"{name:>18}: {updates / seconds / 1e6:8.1f} M updates/s   ratio to scatter {base / seconds:5.2f}")


if __name__ == "__main__":
    main()

"""Pair sums: the CPU scatter, the sparse × dense path (a GPU's) and exact sparse sums equal a float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest

from loaders.config import parse_bytes
from loaders.pairs import BlockPlan, DenseBlocks, NonZeros, SparsePairs


def random_chunk(n_tokens: int, n_layers: int, n_features: int, density: float, seed: int):
    """(NonZeros, dense (token, layer, feature) float64 activations)."""
    rng = np.random.default_rng(seed)
    A = rng.random((n_tokens, n_layers, n_features)) * (rng.random((n_tokens, n_layers, n_features)) < density)
    A = A.astype(np.float32).astype(np.float64)
    parts = []
    for i in rng.permutation(n_layers):  # layers in any order
        tok, idx = np.nonzero(A[:, i])
        parts.append((tok, int(i), idx, A[tok, i, idx]))
    return NonZeros.build(n_tokens, n_layers, [NonZeros.token_major(parts, n_layers)]), A


def test_nonzeros_are_token_major() -> None:
    nz, A = random_chunk(7, 3, 5, 0.4, seed=0)
    for t in range(7):
        for i in range(3):
            lo, hi = nz.layer_ptr[t, i], nz.layer_ptr[t, i + 1]
            np.testing.assert_array_equal(nz.index[lo:hi], np.flatnonzero(A[t, i]))
            np.testing.assert_array_equal(nz.value[lo:hi], A[t, i][A[t, i] > 0])
    np.testing.assert_array_equal(nz.token, np.repeat(np.arange(7), (A > 0).reshape(7, -1).sum(1)))


@pytest.mark.parametrize("backend", ["scatter", "spmm"])
def test_dense_blocks_equal_brute_force(backend: str) -> None:
    L, F = 4, 9
    blocks = ((0, 1), (0, 3), (2, 3))  # a group that skips some blocks
    acc = DenseBlocks(L, F, blocks)
    C_ref = {b: np.zeros((F, F)) for b in blocks}
    I_ref = {b: np.zeros((F, F)) for b in blocks}
    for seed in range(3):  # several chunks add up
        nz, A = random_chunk(30, L, F, 0.3, seed)
        acc.add(nz, backend=backend)
        for i, j in blocks:
            C_ref[(i, j)] += A[:, i].T @ A[:, j]
            I_ref[(i, j)] += A[:, i].T @ (A[:, j] > 0)
    for i, j in blocks:
        C, I = acc.block(i, j)
        np.testing.assert_allclose(C.numpy(), C_ref[(i, j)], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(I.numpy(), I_ref[(i, j)], rtol=1e-5, atol=1e-6)
        assert (C_ref[(i, j)] > 0).any()


def test_scatter_is_bit_identical_to_token_order_float32_and_to_one_thread() -> None:
    """Each row's updates run in token order, so the CPU scatter equals a plain float32 loop in that
    order bit for bit, on any thread count (and rows of several cache lines exercise the prefetches)."""
    import numba

    L, F = 3, 70
    blocks = ((0, 1), (0, 2), (1, 2))
    nz, A = random_chunk(60, L, F, 0.2, seed=4)
    A32 = A.astype(np.float32)
    two = DenseBlocks(L, F, blocks)
    two.add(nz, backend="scatter")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = DenseBlocks(L, F, blocks)
        one.add(nz, backend="scatter")
    finally:
        numba.set_num_threads(before)
    for i, j in blocks:
        C_ref, I_ref = np.zeros((F, F), np.float32), np.zeros((F, F), np.float32)
        for tok in range(A.shape[0]):
            t = np.flatnonzero(A32[tok, j])
            for s in np.flatnonzero(A32[tok, i]):
                a = A32[tok, i, s]
                C_ref[s, t] += a * A32[tok, j, t]
                I_ref[s, t] += a
        for acc in (two, one):
            C, I = acc.block(i, j)
            assert np.array_equal(C.numpy(), C_ref) and np.array_equal(I.numpy(), I_ref)
        assert (C_ref > 0).sum() > F


def test_sparse_pairs_equal_brute_force_and_merge() -> None:
    L, F = 3, 6
    a, b = SparsePairs(L, F), SparsePairs(L, F)
    nz1, A1 = random_chunk(20, L, F, 0.4, 1)
    nz2, A2 = random_chunk(20, L, F, 0.4, 2)
    a.add(nz1)
    b.add(nz2)
    a.merge(b)
    A = np.concatenate([A1, A2])
    for i in range(L):
        for j in range(i + 1, L):
            C, I = a.block(i, j)
            np.testing.assert_allclose(C.toarray(), A[:, i].T @ A[:, j], rtol=1e-12)
            np.testing.assert_allclose(I.toarray(), A[:, i].T @ (A[:, j] > 0), rtol=1e-12)


def test_block_plan_fits_the_budget() -> None:
    plan = BlockPlan.make(8, 100, budget_bytes=7 * 100 * 100 * 8)
    assert plan.passes == 4 and [len(g) for g in plan.groups] == [7, 7, 7, 7]
    assert sorted(b for g in plan.groups for b in g) == [(i, j) for i in range(8) for j in range(i + 1, 8)]
    assert BlockPlan.make(8, 100, 10**12).passes == 1
    assert BlockPlan.make(1, 100, 10).passes == 0  # one layer: no pairs, nothing to budget
    with pytest.raises(ValueError, match="raise the budget"):
        BlockPlan.make(3, 100, 1000)
    assert parse_bytes("16GB") == 16 * 2**30 and parse_bytes("512MiB") == 512 * 2**20 and parse_bytes("1e9") == 10**9


def test_dense_blocks_round_trip_through_safetensors(tmp_path) -> None:
    """Blocks written without a copy read back, with the safetensors package's own reader too."""
    from safetensors.numpy import load_file

    acc = DenseBlocks(3, 5, ((0, 1), (1, 2)))
    nz, _ = random_chunk(10, 3, 5, 0.5, seed=4)
    acc.add(nz)
    acc.save(tmp_path)
    back = DenseBlocks.load(tmp_path, 5)
    assert back.blocks == acc.blocks
    assert np.array_equal(back.C.numpy(), acc.C.numpy()) and np.array_equal(back.I.numpy(), acc.I.numpy())
    assert np.array_equal(load_file(str(tmp_path / "blocks.safetensors"))["C"], acc.C.numpy())

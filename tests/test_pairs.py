"""Pair sums: the CPU scatter, the sparse × dense path (a GPU's) and exact sparse sums equal a float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest

from loaders.config import parse_bytes
from loaders.pairs import BlockPlan, DenseBlocks, KeptPairs, NonZeros, SparsePairs


def random_chunk(n_tokens: int, n_layers: int, n_features: int, density: float, seed: int):
    """(NonZeros, dense (token, layer, feature) float64 activations)."""
    rng = np.random.default_rng(seed)
    A = rng.random((n_tokens, n_layers, n_features)) * (rng.random((n_tokens, n_layers, n_features)) < density)
    A = A.astype(np.float32).astype(np.float64)
    parts = []
    for i in rng.permutation(n_layers):  # layers in any order
        tok, idx = np.nonzero(A[:, i])
        parts.append((tok, int(i), idx, A[tok, i, idx]))
    return NonZeros.build(n_tokens, n_layers, [NonZeros.token_major(parts)]), A


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
        assert I is not None
        np.testing.assert_allclose(C.numpy(), C_ref[(i, j)], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(I.numpy(), I_ref[(i, j)], rtol=1e-5, atol=1e-6)
        assert (C_ref[(i, j)] > 0).any()


def test_scatter_is_bit_identical_to_token_order_float32_and_to_one_thread() -> None:
    """Each row's updates run in token order, so the CPU scatter equals a plain float32 loop in that
    order bit for bit, on any thread count (rows of several cache lines exercise the prefetches,
    and tokens' lists of 16 targets and more the vector lanes, where the CPU has them)."""
    import numba

    L, F = 3, 200
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
    assert (A32[:, 1:] > 0).sum(-1).max() > 2 * 16  # lists of two full vectors of targets and a rest


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
    C_and_I, C_alone = 100 * 100 * 8, 100 * 100 * 4  # one 100 × 100 block
    one = BlockPlan.make(8, 100, budget_bytes=28 * C_and_I)  # all 28 blocks of C and I: one pass
    assert not one.i_pass and one.passes == 1 and one.block_bytes == C_and_I
    plan = BlockPlan.make(8, 100, budget_bytes=3 * C_and_I)  # else C alone: 6 blocks a pass, then the I pass
    assert plan.i_pass and plan.passes == 6 and [len(g) for g in plan.groups] == [6, 6, 6, 6, 4]
    assert plan.block_bytes == C_alone and plan.describe()["bytes_per_pass"] == [6 * C_alone] * 4 + [4 * C_alone]
    assert sorted(b for g in plan.groups for b in g) == [(i, j) for i in range(8) for j in range(i + 1, 8)]
    for blocks_of_c_and_i in range(1, 28):  # never more passes than groups of C and I would take
        p = BlockPlan.make(8, 100, blocks_of_c_and_i * C_and_I)
        assert p.passes <= -(-28 // blocks_of_c_and_i)
    assert BlockPlan.make(1, 100, 10).passes == 0  # one layer: no pairs, nothing to budget
    only_c = BlockPlan.make(3, 100, C_alone)  # a block of C and I does not fit, one of C does
    assert only_c.i_pass and only_c.passes == 4
    with pytest.raises(ValueError, match="raise the budget"):
        BlockPlan.make(3, 100, C_alone - 1)
    assert parse_bytes("16GB") == 16 * 2**30 and parse_bytes("512MiB") == 512 * 2**20 and parse_bytes("1e9") == 10**9


@pytest.mark.parametrize("backend", ["scatter", "spmm"])
def test_c_alone_equals_the_c_of_c_and_i(backend: str) -> None:
    L, F = 4, 120
    blocks = ((0, 1), (0, 3), (2, 3))
    both, alone = DenseBlocks(L, F, blocks), DenseBlocks(L, F, blocks, with_i=False)
    for seed in range(3):
        nz, _ = random_chunk(50, L, F, 0.2, seed)
        both.add(nz, backend=backend)
        alone.add(nz, backend=backend)
    assert alone.I is None and alone.block(0, 1)[1] is None
    assert np.array_equal(alone.C.numpy(), both.C.numpy())


def _kept_pairs(L: int, F: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct random (source, target) global ids with the target on a later layer."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, L - 1, 4 * n)
    j = i + 1 + (rng.random(4 * n) * (L - 1 - i)).astype(np.int64)
    src, tgt = i * F + rng.integers(0, F, 4 * n), j * F + rng.integers(0, F, 4 * n)
    key = np.unique(src * L * F + tgt)[:n]
    return key // (L * F), key % (L * F)


@pytest.mark.parametrize("backend", ["scatter", "spmm"])
def test_kept_pairs_equal_the_dense_blocks_i(backend: str, tmp_path) -> None:
    """The I pass's sums at kept pairs equal the I of dense blocks there: bit for bit on the CPU
    (both add in token order in float32), to float32 rounding on the sampled product; they merge
    by addition and round-trip through a checkpoint."""
    L, F = 4, 40
    blocks = tuple((i, j) for i in range(L) for j in range(i + 1, L))
    dense = DenseBlocks(L, F, blocks)
    src, tgt = _kept_pairs(L, F, 300, seed=5)
    order = np.random.default_rng(0).permutation(len(src))  # any order in; sorted inside
    kept, first, second = (KeptPairs(L, F, src[order], tgt[order]) for _ in range(3))
    for seed in range(4):
        nz, _ = random_chunk(60, L, F, 0.15, seed)
        dense.add(nz)
        kept.add(nz, backend=backend)
        (first if seed < 2 else second).add(nz, backend=backend)
    s, t, I = kept.sums()
    assert np.array_equal(s * L * F + t, np.sort(src * L * F + tgt))
    I_dense = dense.I
    assert I_dense is not None
    ref = I_dense[dense.slot[s // F, t // F], s % F, t % F].numpy()
    assert (ref > 0).mean() > 0.5, "most kept pairs co-activate"
    if backend == "scatter":
        assert np.array_equal(I, ref)
    else:
        np.testing.assert_allclose(I, ref, rtol=1e-5, atol=1e-6)
    first.merge(second)
    np.testing.assert_allclose(first.sums()[2], I, rtol=1e-6)
    kept.save(tmp_path)
    back = KeptPairs.load(tmp_path, L, F)
    assert all(np.array_equal(x, y) for x, y in zip(back.sums(), kept.sums(), strict=True))
    with pytest.raises(ValueError, match="other kept pairs"):
        first.merge(KeptPairs(L, F, src[:10], tgt[:10]))
    with pytest.raises(ValueError, match="later dictionary layer"):
        KeptPairs(L, F, np.array([F]), np.array([3]))


def test_dense_blocks_round_trip_through_safetensors(tmp_path) -> None:
    """Blocks written without a copy read back, with the safetensors package's own reader too."""
    from safetensors.numpy import load_file

    acc = DenseBlocks(3, 5, ((0, 1), (1, 2)))
    nz, _ = random_chunk(10, 3, 5, 0.5, seed=4)
    acc.add(nz)
    acc.save(tmp_path)
    back = DenseBlocks.load(tmp_path, 5)
    assert back.blocks == acc.blocks and back.I is not None and acc.I is not None
    assert np.array_equal(back.C.numpy(), acc.C.numpy()) and np.array_equal(back.I.numpy(), acc.I.numpy())
    assert np.array_equal(load_file(str(tmp_path / "blocks.safetensors"))["C"], acc.C.numpy())
    alone = DenseBlocks(3, 5, ((0, 1), (1, 2)), with_i=False)
    alone.add(nz)
    (tmp_path / "alone").mkdir()
    alone.save(tmp_path / "alone")
    back = DenseBlocks.load(tmp_path / "alone", 5)
    assert back.I is None and np.array_equal(back.C.numpy(), acc.C.numpy())


@pytest.mark.parametrize("with_i", [True, False])
def test_dense_blocks_merge_a_read_only_state(with_i: bool) -> None:
    """A Ray worker's state arrives with read-only arrays: merging it adds C and I (each the
    float32 sum of the two) without writing to it or viewing it as a writable tensor."""
    import pickle
    import warnings

    blocks = ((0, 1), (0, 2), (1, 2))
    mine, theirs = DenseBlocks(3, 6, blocks, with_i=with_i), DenseBlocks(3, 6, blocks, with_i=with_i)
    mine.add(random_chunk(12, 3, 6, 0.5, seed=5)[0])
    theirs.add(random_chunk(12, 3, 6, 0.5, seed=6)[0])
    arrived = pickle.loads(pickle.dumps(theirs))  # a pickled copy is still one array, C and I its views
    assert arrived._sums is not None
    arrived._sums.setflags(write=False)
    sums = [(a.C.numpy().copy(), None if a.I is None else a.I.numpy().copy()) for a in (mine, theirs)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine.merge(arrived)
    assert np.array_equal(mine.C.numpy(), sums[0][0] + sums[1][0])
    if with_i:
        assert mine.I is not None and np.array_equal(mine.I.numpy(), sums[0][1] + sums[1][1])
    else:
        assert mine.I is None

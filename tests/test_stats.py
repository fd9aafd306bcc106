"""The streaming pass equals a dense float64 brute force; passes resume and merge exactly."""

from __future__ import annotations

from functools import cmp_to_key
from pathlib import Path

import numpy as np
import pytest
import torch

from loaders.corpus import Corpus, batches, read_documents
from loaders.pairs import DenseBlocks, SparsePairs
from loaders.stats import (
    HIST_EDGES,
    TOP_FIELDS,
    FeatureStats,
    PassState,
    StatsConfig,
    _Accumulator,
    stream_pass,
    stream_statistics,
)
from tests.factories import random_dictionary, tiny_model, write_corpus

RTOL = 1e-5


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * max(abs(a), abs(b))


def _by_value_then_window(x: tuple[int, tuple[float, int]], y: tuple[int, tuple[float, int]]) -> int:
    """Top-k order of (window key, (value, position)): value descending, values within RTOL tied
    and then ordered by window, as the streaming pass orders exact ties."""
    (kx, (vx, _)), (ky, (vy, _)) = x, y
    if _close(vx, vy):
        return int(kx > ky) - int(kx < ky)
    return -1 if vx > vy else 1


CONTEXT = 12  # short windows: most documents span several


def brute_force(model, d, docs, context):
    """Dense float64 statistics of every counted position, one window at a time."""
    rows, key_of, pos_of, sig_mlp, sig_final = [], [], [], [], []
    for b in batches(model.tokenizer, docs, context, batch_tokens=1):  # one window per batch
        sites = [(l, d.read_site) for l in d.layers] + [(l, "resid_mid") for l in d.layers]
        final_in = []
        h = model.model.get_submodule(model.family.final_norm).register_forward_pre_hook(
            lambda _m, a, out=final_in: out.append(a[0])
        )
        _, acts = model.run(b.input_ids, sites)
        h.remove()
        n = b.input_ids.shape[1]
        assert n <= context
        a = torch.cat([d.encode(l, acts[(l, d.read_site)][0]) for l in d.layers], -1).double()
        for p in range(1, n):
            rows.append(a[p].numpy())
            key_of.append(int(b.keys[0]))
            pos_of.append(p)
            x = [acts[(l, "resid_mid")][0, p].double() for l in d.layers]
            sig_mlp.append([model.mlp_norm(l).denominator(xi).item() for l, xi in zip(d.layers, x, strict=True)])
            sig_final.append(model.final_norm().denominator(final_in[0][0, p]).item())
    A = np.array(rows)  # (n, g)
    return A, np.array(key_of), np.array(pos_of), np.array(sig_mlp), np.array(sig_final)


@pytest.mark.parametrize(
    "family,kind,read_site,activation",
    [
        ("llama", "clt", "mlp_in", "relu"),
        ("gpt2", "plt", "mlp_in", "jumprelu"),
        ("qwen2", "sae", "resid_post", "relu"),
        ("llama", "clt", "resid_mid", "topk"),
    ],
)
def test_streaming_equals_brute_force(tmp_path: Path, family, kind, read_site, activation) -> None:
    model = tiny_model(family)
    d = random_dictionary(model, kind, read_site=read_site, activation=activation)
    path = write_corpus(tmp_path / "c.txt", n_docs=30)
    docs = read_documents(path)
    cfg = StatsConfig(batch_tokens=40, chunk_tokens=90, context=CONTEXT, top_k=3, window=2)
    state = stream_statistics(model, d, Corpus(path), cfg)
    s = state.stats
    A, key_of, pos_of, sig_mlp, sig_final = brute_force(model, d, docs, CONTEXT)
    n, G = A.shape
    # nothing truncated: every token of every document is counted once
    doc_tokens = sum(len(ids) for ids in model.tokenizer(docs, add_special_tokens=False).input_ids)
    assert s.tokens == n == doc_tokens
    assert s.documents == len(docs) and s.windows == len(set(key_of)) > len(docs)
    assert 0.05 < (A > 0).mean() < 0.9, "the factory's features should fire on some tokens, not all"
    np.testing.assert_array_equal(s.count, (A > 0).sum(0))
    np.testing.assert_allclose(s.sum, A.sum(0), rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(s.max, A.max(0), rtol=RTOL)
    np.testing.assert_allclose(s.sigma_mlp_mean, sig_mlp.mean(0), rtol=RTOL)
    np.testing.assert_allclose(s.sigma_final_mean, sig_final.mean(), rtol=RTOL)
    hist = np.zeros_like(s.hist)
    for g in range(G):
        vals = A[A[:, g] > 0, g]
        np.add.at(hist[g], np.searchsorted(HIST_EDGES, vals, side="left"), 1)
    np.testing.assert_array_equal(s.hist, hist)

    F, L = d.n_features, len(d.layers)
    C_full, I_full = A.T @ A, A.T @ (A > 0)
    pairs = state.pairs
    assert isinstance(pairs, SparsePairs)
    for i in range(L - 1):
        for j in range(i + 1, L):
            C, I = pairs.block(i, j)
            np.testing.assert_allclose(
                C.toarray(), C_full[i * F : (i + 1) * F, j * F : (j + 1) * F], rtol=RTOL, atol=1e-9
            )
            np.testing.assert_allclose(
                I.toarray(), I_full[i * F : (i + 1) * F, j * F : (j + 1) * F], rtol=RTOL, atol=1e-9
            )
            assert C.nnz > 0

    # top examples: the k largest per-window maxima (ties: earlier window), window around the maximum.
    # Values within RTOL are ties here: the brute force encodes one window per batch, and float32
    # products of other shapes differ in the last bit (identical windows then seem to differ)
    row_at = {(int(k), int(p)): r for r, (k, p) in enumerate(zip(key_of, pos_of, strict=True))}
    for g in range(G):
        per_window: dict[int, tuple[float, int]] = {}
        for r in np.flatnonzero(A[:, g] > 0):
            peak = per_window.get(key_of[r], (0.0, 0))[0]
            if A[r, g] > peak and not _close(A[r, g], peak):
                per_window[key_of[r]] = (A[r, g], pos_of[r])
        best = sorted(per_window.items(), key=cmp_to_key(_by_value_then_window))[:3]
        got = s.top_val[:, g][np.isfinite(s.top_val[:, g])]
        np.testing.assert_allclose(got, [b[1][0] for b in best], rtol=RTOL)
        for slot, (key, (val, pos)) in enumerate(best):
            assert s.top_key[slot, g] == key and s.top_pos[slot, g] == pos
            assert s.top_act[slot, g, 2] == pytest.approx(val, rel=RTOL)
            for o in range(-2, 3):  # the whole window: activations at counted positions, −1 / 0 past its ends
                r = row_at.get((key, pos + o))
                if r is not None:
                    assert s.top_act[slot, g, o + 2] == pytest.approx(A[r, g], rel=RTOL, abs=1e-9)
                    assert s.top_tok[slot, g, o + 2] >= 0
                elif pos + o != 0:  # (position 0 is BOS: shown, not counted)
                    assert s.top_tok[slot, g, o + 2] == -1 and s.top_act[slot, g, o + 2] == 0


def _states_equal(a: PassState, b: PassState, exact_sums: bool = True) -> None:
    assert a.stats is not None and b.stats is not None
    assert (a.stats.tokens, a.stats.documents, a.stats.windows) == (b.stats.tokens, b.stats.documents, b.stats.windows)
    for name in ("count", "max", "hist", *TOP_FIELDS):
        np.testing.assert_array_equal(getattr(a.stats, name), getattr(b.stats, name), err_msg=name)
    for name in ("sum", "sigma_mlp"):
        if exact_sums:
            np.testing.assert_array_equal(getattr(a.stats, name), getattr(b.stats, name), err_msg=name)
        else:
            np.testing.assert_allclose(getattr(a.stats, name), getattr(b.stats, name), rtol=1e-12, err_msg=name)
    assert isinstance(a.pairs, DenseBlocks) and isinstance(b.pairs, DenseBlocks)
    if exact_sums:
        assert torch.equal(a.pairs.C, b.pairs.C) and torch.equal(a.pairs.I, b.pairs.I)
    else:
        torch.testing.assert_close(a.pairs.C, b.pairs.C, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.pairs.I, b.pairs.I, rtol=1e-5, atol=1e-6)


def _fresh(d, cfg: StatsConfig) -> PassState:
    L, F = len(d.layers), d.n_features
    blocks = tuple((i, j) for i in range(L) for j in range(i + 1, L))
    return PassState(FeatureStats(L, F, cfg.top_k, cfg.window), DenseBlocks(L, F, blocks))


def test_resume_after_kill_is_bit_identical(tmp_path: Path) -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, "clt")
    corpus = Corpus(write_corpus(tmp_path / "c.txt", n_docs=60))
    cfg = StatsConfig(batch_tokens=48, chunk_tokens=60, context=CONTEXT, top_k=3, window=2, checkpoint_every=2)
    full = stream_pass(model, d, corpus, cfg, _fresh(d, cfg))

    ckpt = tmp_path / "ckpt"

    class Killed(Exception):
        pass

    calls = {"n": 0}
    original = model.model.base_model.forward

    def dying_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:
            raise Killed
        return original(*args, **kwargs)

    model.model.base_model.forward = dying_forward  # type: ignore[method-assign]
    with pytest.raises(Killed):
        stream_pass(model, d, corpus, cfg, _fresh(d, cfg), checkpoint=ckpt)
    model.model.base_model.forward = original  # type: ignore[method-assign]
    saved = PassState.load(ckpt)
    assert not saved.done and 0 < saved.cursor.record < 60
    resumed = stream_pass(model, d, corpus, cfg, saved, checkpoint=ckpt)
    _states_equal(resumed, full)


def test_merged_shards_equal_one_pass(tmp_path: Path) -> None:
    """States of shards A and B merged equal one pass over A then B (sums to float rounding)."""
    model = tiny_model("llama")
    d = random_dictionary(model, "clt")
    shards = tmp_path / "shards"
    shards.mkdir()
    write_corpus(shards / "a.txt", n_docs=30, seed=1)
    write_corpus(shards / "b.txt", n_docs=30, seed=2)
    corpus = Corpus(shards)
    cfg = StatsConfig(batch_tokens=48, chunk_tokens=80, context=CONTEXT, top_k=4, window=2)
    whole = stream_pass(model, d, corpus, cfg, _fresh(d, cfg))
    a = stream_pass(model, d, corpus, cfg, _fresh(d, cfg), stop_shard=1)
    b_state = _fresh(d, cfg)
    b_state.cursor = type(b_state.cursor)(shard=1)
    b = stream_pass(model, d, corpus, cfg, b_state)
    b.merge(a)  # the other order too: merging commutes
    _states_equal(b, whole, exact_sums=False)
    # ties in the top examples go to the earlier window whichever state held it
    s = FeatureStats(1, 2, 2, 0)
    t = FeatureStats(1, 2, 2, 0)
    s.top_val[:, 0], s.top_key[:, 0] = [3.0, 1.0], [50, 7]
    t.top_val[:, 0], t.top_key[:, 0] = [3.0, 2.0], [10, 9]
    t.merge(s)
    assert t.top_val[:, 0].tolist() == [3.0, 3.0] and t.top_key[:, 0].tolist() == [10, 50]


@pytest.mark.parametrize("activation,window", [("relu", 2), ("jumprelu", 3), ("topk", 0)])
def test_cpu_kernels_equal_the_torch_route(tmp_path: Path, monkeypatch, activation, window) -> None:
    """The CPU's kernels and the torch code a GPU runs give the same non-zeros, statistics and
    top examples, bit for bit (signed zeros past a window's ends included), over a corpus whose
    repeated documents give exact ties that only the window key orders."""
    model = tiny_model("llama")
    d = random_dictionary(model, "clt", activation=activation)
    if activation == "jumprelu":  # thresholds below zero: negative activations inside the windows
        for l in d.layers:
            d.activation[l].threshold.sub_(0.3)  # type: ignore[union-attr]
    path = write_corpus(tmp_path / "c.txt", n_docs=50, seed=1)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + lines[:20] + lines[5:10]) + "\n")
    cfg = StatsConfig(batch_tokens=40, chunk_tokens=90, context=CONTEXT, top_k=3, window=window)
    L, F = len(d.layers), d.n_features
    blocks = tuple((i, j) for i in range(L) for j in range(i + 1, L))
    kernels = stream_statistics(model, d, Corpus(path), cfg, DenseBlocks(L, F, blocks))
    monkeypatch.setattr(_Accumulator, "cpu_kernels", False)
    torch_route = stream_statistics(model, d, Corpus(path), cfg, DenseBlocks(L, F, blocks))
    kernel, other = kernels.stats, torch_route.stats
    assert kernel is not None and other is not None
    for name in ("count", "sum", "max", "hist", *TOP_FIELDS):
        a, b = getattr(kernel, name), getattr(other, name)
        assert a.dtype == b.dtype and np.array_equal(a.view(f"i{a.itemsize}"), b.view(f"i{b.itemsize}")), name
    for name in ("sigma_mlp", "sigma_final"):  # float64 sums in another order: equal to rounding
        np.testing.assert_allclose(getattr(kernel, name), getattr(other, name), rtol=1e-13, err_msg=name)
    assert isinstance(kernels.pairs, DenseBlocks) and isinstance(torch_route.pairs, DenseBlocks)
    assert torch.equal(kernels.pairs.C, torch_route.pairs.C) and torch.equal(kernels.pairs.I, torch_route.pairs.I)
    full = np.isfinite(kernel.top_val).all(0)
    assert full.mean() > 0.5, "most features should have k examples: the merge was exercised"
    top, second = kernel.top_val[0], kernel.top_val[1]
    assert (top[full] == second[full]).any(), "the repeated documents should make exact ties"
    if activation == "jumprelu":
        assert (np.signbit(kernel.top_act) & (kernel.top_act == 0)).any(), "a −0.0 past a window's end"


def test_budget_batches_pad_little(tmp_path: Path) -> None:
    model = tiny_model("llama")
    docs = read_documents(write_corpus(tmp_path / "c.txt", n_docs=80))
    real = padded = 0
    for b in batches(model.tokenizer, docs, 16, batch_tokens=64):
        assert b.input_ids.numel() <= 64 and b.input_ids.shape[1] <= 16
        real += int(b.attention_mask.sum())
        padded += b.input_ids.numel()
    assert real / padded > 0.9


def test_norm_denominators_for_pre_gain_reads_and_post_norm_writes(tmp_path: Path) -> None:
    """σ̄ of the attention norm (ln1_normalized reads) and of Gemma-2's post-MLP norm
    (mlp_module_out writes) are the means over counted positions, as sigma_mlp is."""
    model = tiny_model("gemma2")
    d = random_dictionary(model, "clt", read_site="ln1_normalized", write_site="mlp_module_out")
    path = write_corpus(tmp_path / "c.txt", n_docs=12)
    cfg = StatsConfig(batch_tokens=40, chunk_tokens=90, context=CONTEXT, top_k=3, window=2)
    s = stream_statistics(model, d, Corpus(path), cfg).stats
    attn, post = [], []
    for b in batches(model.tokenizer, read_documents(path), CONTEXT, batch_tokens=1):
        sites = [(l, site) for l in d.layers for site in ("resid_pre", "mlp_module_out")]
        _, acts = model.run(b.input_ids, sites)  # type: ignore[arg-type]
        for p in range(1, b.input_ids.shape[1]):
            attn.append([model.attn_norm(l).denominator(acts[(l, "resid_pre")][0, p]).item() for l in d.layers])
            post.append(
                [model.post_mlp_norm(l).denominator(acts[(l, "mlp_module_out")][0, p]).item() for l in d.layers]
            )  # type: ignore[union-attr]
    assert s.tokens == len(attn)
    np.testing.assert_allclose(s.sigma_attn_mean, np.mean(attn, 0), rtol=RTOL)
    np.testing.assert_allclose(s.sigma_post_mean, np.mean(post, 0), rtol=RTOL)
    assert np.abs(s.sigma_attn_mean - s.sigma_mlp_mean).max() > 1e-3  # different norms, different σ

"""The streaming pass equals a dense float64 brute force; interrupted passes resume exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from loaders.corpus import CorpusError, batches, read_documents
from loaders.stats import HIST_EDGES, StatsConfig, stream_statistics
from tests.factories import random_dictionary, tiny_model, write_corpus

RTOL = 1e-5


def brute_force(model, d, docs, k):
    """Dense float64 statistics of every counted position, straight from the definitions."""
    rows, doc_of, pos_of, sig_mlp, sig_final = [], [], [], [], []
    context = model.model.config.max_position_embeddings
    for b in batches(model.tokenizer, docs, context, batch_size=1):
        sites = [(l, d.read_site) for l in d.layers] + [(l, "resid_mid") for l in d.layers]
        final_in = []
        h = model.model.get_submodule(model.family.final_norm).register_forward_pre_hook(
            lambda _m, a, out=final_in: out.append(a[0])
        )
        _, acts = model.run(b.input_ids, sites)
        h.remove()
        n = b.input_ids.shape[1]
        a = torch.cat([d.encode(l, acts[(l, d.read_site)][0]) for l in d.layers], -1).double()
        for p in range(1, n):
            rows.append(a[p].numpy())
            doc_of.append(int(b.doc_ids[0]))
            pos_of.append(p)
            x = [acts[(l, "resid_mid")][0, p].double() for l in d.layers]
            sig_mlp.append([model.mlp_norm(l).denominator(xi).item() for l, xi in zip(d.layers, x, strict=True)])
            sig_final.append(model.final_norm().denominator(final_in[0][0, p]).item())
    A = np.array(rows)  # (n, g)
    return A, np.array(doc_of), np.array(pos_of), np.array(sig_mlp), np.array(sig_final)


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
    docs = read_documents(write_corpus(tmp_path / "c.txt", n_docs=30))
    s = stream_statistics(model, d, docs, StatsConfig(batch_size=7, top_k=3, window=2, merge_every=2), progress=False)
    A, doc_of, pos_of, sig_mlp, sig_final = brute_force(model, d, docs, 3)
    n, G = A.shape
    assert s.tokens == n
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
    for i in range(L - 1):
        ref_C = C_full[i * F : (i + 1) * F, (i + 1) * F :]
        ref_I = I_full[i * F : (i + 1) * F, (i + 1) * F :]
        np.testing.assert_allclose(s.C[i].toarray(), ref_C, rtol=RTOL, atol=1e-9)
        np.testing.assert_allclose(s.I[i].toarray(), ref_I, rtol=RTOL, atol=1e-9)
        assert s.C[i].nnz > 0

    # top examples: the k largest per-document maxima, with the window around the maximum
    for g in range(G):
        per_doc = {}
        for r in np.flatnonzero(A[:, g] > 0):
            if A[r, g] > per_doc.get(doc_of[r], (0.0, 0))[0]:
                per_doc[doc_of[r]] = (A[r, g], pos_of[r])
        best = sorted(per_doc.values(), key=lambda t: -t[0])[:3]
        got = s.top_val[:, g][np.isfinite(s.top_val[:, g])]
        np.testing.assert_allclose(got, [b[0] for b in best], rtol=RTOL)
        for slot, (val, pos) in enumerate(best):
            assert s.top_pos[slot, g] == pos
            assert s.top_act[slot, g, 2] == pytest.approx(val, rel=RTOL)


def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, "clt")
    docs = read_documents(write_corpus(tmp_path / "c.txt", n_docs=40))
    cfg = StatsConfig(batch_size=4, top_k=3, window=2, checkpoint_every=2, merge_every=1)
    full = stream_statistics(model, d, docs, cfg, progress=False)

    ckpt = tmp_path / "ckpt"

    class Killed(Exception):
        pass

    calls = {"n": 0}
    original = model.model.base_model.forward

    def dying_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise Killed
        return original(*args, **kwargs)

    model.model.base_model.forward = dying_forward  # type: ignore[method-assign]
    with pytest.raises(Killed):
        stream_statistics(model, d, docs, cfg, checkpoint=ckpt, progress=False)
    model.model.base_model.forward = original  # type: ignore[method-assign]
    assert 0 < __import__("json").loads((ckpt / "meta.json").read_text())["docs_done"] < len(docs)
    resumed = stream_statistics(model, d, docs, cfg, checkpoint=ckpt, progress=False)
    assert resumed.tokens == full.tokens
    for name in (
        "count",
        "sum",
        "max",
        "hist",
        "top_val",
        "top_doc",
        "top_pos",
        "top_tok",
        "top_act",
        "sigma_mlp",
    ):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(full, name), err_msg=name)
    for i in range(len(full.C)):
        assert (resumed.C[i] != full.C[i]).nnz == 0 and (resumed.I[i] != full.I[i]).nnz == 0


def test_bad_corpora_give_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="no documents"):
        read_documents(empty)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(CorpusError, match=r"bad.txt:2: not valid UTF-8"):
        read_documents(bad)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(CorpusError, match=r"c.jsonl:2: JSONL record needs a string 'text'"):
        read_documents(jsonl)
    with pytest.raises(CorpusError, match="does not exist"):
        read_documents(tmp_path / "missing.txt")


def test_corpus_formats_agree(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["first doc", "second doc with more", "third"]
    (tmp_path / "c.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    pq.write_table(pa.table({"text": texts}), tmp_path / "c.parquet")
    for name in ("c.txt", "c.jsonl", "c.parquet"):
        assert read_documents(tmp_path / name) == texts

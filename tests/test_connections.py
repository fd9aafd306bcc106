"""Virtual weights equal real interventions; edges follow the definitions of ERA and TWERA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from loaders.connections import edges, residual_encoders, residual_writes, virtual_weight_block
from loaders.corpus import Corpus
from loaders.logit_lens import top_unembeds
from loaders.pairs import BlockPlan, DenseBlocks
from loaders.stats import StatsConfig, stream_statistics
from tests.factories import random_dictionary, tiny_model, write_corpus

ATTN = {
    "gpt2": "attn",
    "llama": "self_attn",
    "qwen2": "self_attn",
    "qwen3": "self_attn",
    "gemma2": "self_attn",
}


NORMALIZED = {"ln1_normalized": ("resid_pre", "attn_norm"), "ln2_normalized": ("resid_mid", "mlp_norm")}
"""Read sites before a norm's gain → (the raw residual they normalize, that norm)."""


@torch.no_grad()
def intervene(model, d, source_layer: int, source_index: int, ids: torch.Tensor, pos: int, delta: float):
    """Target pre-activations at `pos` (per dictionary layer) before and after adding δ·d_s.

    Attention outputs and MLP outputs are frozen at their clean values (so only the residual
    path carries the change), and every norm on the path (the read norms, and the post-MLP
    norm a write at ``mlp_module_out`` passes through) at its clean denominator at `pos`.
    Returns (before, after, σ) with σ = {"mlp" | "attn" | "post": {layer: σ at pos}}.
    """
    f = model.family
    frozen: dict[str, torch.Tensor] = {}
    handles = []

    def save(name):
        def hook(_m, _a, out):
            frozen[name] = (out[0] if isinstance(out, tuple) else out).clone()

        return hook

    def replace(name, add=None):
        def hook(_m, _a, out):
            t = frozen[name].clone()
            if add is not None:
                t = add(t)
            return (t, *out[1:]) if isinstance(out, tuple) else t

        return hook

    through_post = d.write_site == "mlp_module_out" and f.post_mlp_norm is not None
    written = f.mlp if through_post else (f.post_mlp_norm or f.mlp)  # the module whose output d_s adds to
    attn = ATTN[model.model.config.model_type]
    for l in range(model.n_layers):
        handles.append(model.module(l, attn).register_forward_hook(save(f"attn{l}")))
        handles.append(model.module(l, written).register_forward_hook(save(f"mlp{l}")))
    raw = ["resid_mid", "resid_pre", "mlp_module_out"]
    clean_sites = [(l, s) for l in d.layers for s in {d.read_site, *raw}]
    _, clean = model.run(ids, clean_sites)
    for h in handles:
        h.remove()
    sigma: dict[str, dict[int, torch.Tensor]] = {"mlp": {}, "attn": {}, "post": {}}
    for l in d.layers:
        sigma["mlp"][l] = model.mlp_norm(l).denominator(clean[(l, "resid_mid")][0, pos])
        sigma["attn"][l] = model.attn_norm(l).denominator(clean[(l, "resid_pre")][0, pos])
        if f.post_mlp_norm is not None:
            sigma["post"][l] = model.post_mlp_norm(l).denominator(clean[(l, "mlp_module_out")][0, pos])

    def frozen_norm(norm, s):
        def hook(_m, args, _out):
            x = args[0]
            return norm.apply(x.double(), s).to(x.dtype) + (norm.bias if norm.bias is not None else 0)

        return hook

    handles = []
    for l in range(model.n_layers):
        handles.append(model.module(l, attn).register_forward_hook(replace(f"attn{l}")))
        dec = d.decoder(source_layer, l)

        def add(t, dec=dec):
            if dec is not None:
                t[0, pos] += delta * dec[source_index]
            return t

        handles.append(model.module(l, written).register_forward_hook(replace(f"mlp{l}", add)))
        if l in d.layers:
            handles.append(
                model.module(l, f.mlp_norm).register_forward_hook(frozen_norm(model.mlp_norm(l), sigma["mlp"][l]))
            )
            if through_post:
                post = model.post_mlp_norm(l)
                handles.append(
                    model.module(l, f.post_mlp_norm).register_forward_hook(frozen_norm(post, sigma["post"][l]))
                )
    steered_sites = [(l, NORMALIZED[d.read_site][0] if d.read_site in NORMALIZED else d.read_site) for l in d.layers]
    _, steered = model.run(ids, steered_sites)
    for h in handles:
        h.remove()

    def read(run, l):
        if d.read_site not in NORMALIZED:
            return run[(l, d.read_site)][0, pos]
        raw_site, norm_name = NORMALIZED[d.read_site]
        norm = getattr(model, norm_name)(l).without_gain()  # frozen: the clean σ
        return norm.apply(run[(l, raw_site)][0, pos].double(), sigma["attn" if norm_name == "attn_norm" else "mlp"][l])

    before = {l: d.pre_activation(l, read(clean, l).float()).double() for l in d.layers}
    after = {l: d.pre_activation(l, read(steered, l).float()).double() for l in d.layers}
    return before, after, sigma


@pytest.mark.parametrize(
    "family,kind,read_site,write_site",
    [
        ("llama", "clt", "mlp_in", "mlp_out"),  # RMSNorm, normalized read
        ("llama", "clt", "resid_mid", "mlp_out"),  # raw read
        ("gpt2", "clt", "mlp_in", "mlp_out"),  # LayerNorm (centring matters)
        ("gpt2", "plt", "resid_mid", "mlp_out"),
        ("gemma2", "clt", "mlp_in", "mlp_out"),  # 1 + γ gains, post-MLP norm
        ("qwen3", "plt", "mlp_in", "mlp_out"),
        ("gemma2", "clt", "ln2_normalized", "mlp_module_out"),  # before the gain; through the post norm
        ("gpt2", "clt", "ln2_normalized", "mlp_module_out"),  # centred, no post norm
        ("llama", "plt", "ln1_normalized", "mlp_out"),  # the attention norm's σ
        ("gemma2", "plt", "resid_mid", "mlp_module_out"),
    ],
)
def test_virtual_weight_equals_intervention(family: str, kind: str, read_site: str, write_site: str) -> None:
    model = tiny_model(family)
    d = random_dictionary(model, kind, read_site=read_site, write_site=write_site)  # type: ignore[arg-type]
    ids = model.tokenizer("The sky is blue and grass is green.", return_tensors="pt").input_ids
    pos, delta = 4, 0.5
    checked = 0
    for source_layer in d.layers[:-1]:
        for source_index in (0, 5):
            before, after, sigma = intervene(model, d, source_layer, source_index, ids, pos, delta)
            sig = {k: np.array([v[l].item() for l in d.layers]) if v else None for k, v in sigma.items()}
            enc = residual_encoders(model, d, sig["mlp"], sig["attn"])
            writes = residual_writes(model, d, sig["post"])
            for target_layer in d.layers:
                V = virtual_weight_block(d, enc, source_layer, target_layer, writes=writes)[source_index]  # (tgt,)
                change = after[target_layer] - before[target_layer]
                np.testing.assert_allclose(change.numpy(), delta * V.numpy(), rtol=1e-4, atol=1e-5)
                if target_layer > source_layer:
                    assert V.abs().max() > 1e-3
                    checked += 1
    assert checked > 0


def test_edges_follow_definitions(tmp_path: Path) -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, "clt", n_features=16)
    corpus = Corpus(write_corpus(tmp_path / "c.txt", n_docs=30))
    state = stream_statistics(model, d, corpus, StatsConfig(batch_tokens=64, chunk_tokens=128))
    s, pairs = state.stats, state.pairs
    k = 5
    e = edges(model, d, s, pairs, top_k=k)
    F = d.n_features
    enc = residual_encoders(model, d, s.sigma_mlp_mean)
    # dense reference for all pairs with l_s < l_t
    rows = []
    for i, ls in enumerate(d.layers):
        for j, lt in enumerate(d.layers):
            if lt <= ls:
                continue
            V = virtual_weight_block(d, enc, ls, lt).numpy()
            C, I = (m.toarray() for m in pairs.block(i, j))
            mu_sum = s.sum[j * F : (j + 1) * F]
            tw = np.where(mu_sum > 0, C / np.where(mu_sum > 0, mu_sum, 1), 0) * V
            era = I / s.tokens * V
            for a in range(F):
                for b in range(F):
                    if tw[a, b] != 0:
                        rows.append((ls, a, lt, b, V[a, b], era[a, b], tw[a, b]))
    ref = {(r[0], r[1], r[2], r[3]): r[4:] for r in rows}
    got = {
        (
            int(e["source_layer"][n]),
            int(e["source_index"][n]),
            int(e["target_layer"][n]),
            int(e["target_index"][n]),
        ): n
        for n in range(len(e["twera"]))
    }
    assert len(got) == len(e["twera"]), "duplicate edges"
    for key, n in got.items():
        v, era, tw = ref[key]
        assert e["virtual_weight"][n] == pytest.approx(v, rel=1e-9)
        assert e["era"][n] == pytest.approx(era, rel=1e-9)
        assert e["twera"][n] == pytest.approx(tw, rel=1e-9)
    # each source's top-k downstream by |TWERA| is kept, in order
    for src in {(r[0], r[1]) for r in rows}:
        ranked = sorted((abs(r[6]), (r[2], r[3])) for r in rows if (r[0], r[1]) == src)[::-1][:k]
        kept = [
            (int(e["target_layer"][n]), int(e["target_index"][n]))
            for n in range(len(e["twera"]))
            if (e["source_layer"][n], e["source_index"][n]) == src
        ]
        assert [t for _, t in ranked] == kept[:k]
    for tgt in {(r[2], r[3]) for r in rows}:
        ranked = sorted((abs(r[6]), (r[0], r[1])) for r in rows if (r[2], r[3]) == tgt)[::-1][:k]
        for _, src in ranked:
            assert (*src, *tgt) in got


def test_top_unembeds_are_logit_lens(tmp_path: Path) -> None:
    model = tiny_model("gpt2")
    d = random_dictionary(model, "clt")
    sigma = 1.7
    u = top_unembeds(model, d, sigma, k=4)
    norm = model.final_norm()
    W_U = model.unembed().double()
    for g in (0, d.n_features + 3):
        layer, idx = d.layers[g // d.n_features], g % d.n_features
        total = sum(d.decoder(layer, m)[idx].double() for m in d.write_targets(layer))
        centred = total - total.mean()
        logits = W_U @ (centred * norm.gain.double() / sigma)
        assert u.top_ids[g].tolist() == logits.topk(4).indices.tolist()
        np.testing.assert_allclose(u.bottom_values[g], logits.topk(4, largest=False).values.numpy())


@pytest.mark.parametrize(("budget_blocks", "prune_at"), [(3, None), (1, None), (3, 1)])
def test_dense_blocks_give_the_exact_edges(
    tmp_path: Path, budget_blocks: int, prune_at: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dense blocks (one group, or one block per group) keep the same edges as exact sparse sums,
    whether the candidates are pruned once at the end or between blocks (`prune_at` 1)."""
    import loaders.connections

    if prune_at is not None:
        monkeypatch.setattr(loaders.connections, "_PRUNE_AT_LEAST", prune_at)
    model = tiny_model("llama")
    d = random_dictionary(model, "clt", n_features=16)
    corpus = Corpus(write_corpus(tmp_path / "c.txt", n_docs=40))
    cfg = StatsConfig(batch_tokens=64, chunk_tokens=128)
    exact = stream_statistics(model, d, corpus, cfg)
    want = edges(model, d, exact.stats, exact.pairs, top_k=4)
    L, F = len(d.layers), d.n_features
    plan = BlockPlan.make(L, F, budget_blocks * F * F * 8)
    assert [len(g) for g in plan.groups] == ([3] if budget_blocks == 3 else [2, 1])  # 2 blocks of C alone a pass
    found = None
    for group in plan.groups:
        state = stream_statistics(model, d, corpus, cfg, pairs=DenseBlocks(L, F, group))
        from loaders.connections import dense_candidates

        c = dense_candidates(model, d, state.stats, state.pairs, top_k=4)
        found = c if found is None else found.concat(c)
    from loaders.connections import edge_table

    got = edge_table(found.prune(4), d.layers, F)
    keys = ("source_layer", "source_index", "target_layer", "target_index")
    for key in keys:
        np.testing.assert_array_equal(got[key], want[key])
    for col in ("virtual_weight", "era", "twera"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-5)


@pytest.mark.parametrize(("rows", "cols", "top_k"), [(64, 96, 4), (7, 300, 16), (300, 5, 8), (3, 4, 32)])
@pytest.mark.parametrize("grid", [4, 0])
def test_picked_kernel_equals_the_torch_form(rows: int, cols: int, top_k: int, grid: int) -> None:
    """The CPU's kernel and the torch form a GPU runs pick the same pairs of a block's rows, in
    the same order: with exact ties (values on a coarse `grid`) or without (0), zero sums,
    targets that never fired, k above a side's length, C a strided view of the side-by-side C
    and I; in any thread split, and with the kept scores overflowing their cap (the second sweep)."""
    from loaders.connections import _candidate_cap, _picked_cpu, _picked_torch

    g = torch.Generator().manual_seed(rows * cols + top_k + grid)
    if grid:
        sums = torch.randint(0, grid, (rows, cols, 2), generator=g).float() / 2  # C's zeros and ties
        V = torch.randint(-3, 4, (rows, cols), generator=g).double() / 4
    else:
        sums = torch.rand((rows, cols, 2), generator=g) * (torch.rand((rows, cols, 2), generator=g) < 0.7)
        V = torch.randn((rows, cols), generator=g, dtype=torch.float64)
    C = sums[..., 0]
    assert not C.is_contiguous()
    sum_t = torch.randint(0, 3, (cols,), generator=g).double()  # 0: never fired
    want = _picked_torch(C, V, sum_t, top_k)
    assert len(want[0]) > 0
    args = (C.numpy(), V.numpy(), sum_t.numpy(), top_k)
    for parts, cap in ((2, _candidate_cap(rows, cols, top_k, 2)), (1, _candidate_cap(rows, cols, top_k, 1)), (2, 3)):
        got = _picked_cpu(*args, parts, cap)
        for w, x in zip(want, got, strict=True):
            np.testing.assert_array_equal(x, w.numpy(), err_msg=f"{parts} threads, cap {cap}")

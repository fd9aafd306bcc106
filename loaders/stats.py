"""One streaming pass over a corpus: per-feature statistics, top examples, pair sums.

Features are indexed globally: g = i · n_features + index for the i-th dictionary layer.
Per batch of documents (BOS / position 0 and padding excluded, DESIGN.md):

1. run the model, capture each dictionary layer's read site and the norm inputs, encode;
2. update per-feature count (a > 0), sum, max, a log₂-binned histogram of positive values;
3. update the pair sums behind ERA and TWERA for sources s and targets t with l_s < l_t,
   kept sparse (scipy CSR; never a dense n_features × n_features matrix):
       C_sum[s, t] = Σ a_s a_t          I_sum[s, t] = Σ 1(a_t > 0) a_s
   stored per source layer as a (feature, later-layer features) matrix;
4. merge each feature's top-k documents by its maximum activation in the document, keeping a
   window of token ids and per-token activations around the maximum;
5. add the norm denominators σ at each layer's MLP norm and at the final norm, whose corpus
   means freeze the norms for virtual weights and the logit lens.

The state checkpoints atomically every `checkpoint_every` batches; a pass that finds a
checkpoint resumes from its document cursor and ends with the same result.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np
from torch import Tensor
from tqdm import tqdm

from loaders.corpus import Batch, batches
from loaders.dictionary import Dictionary
from loaders.model import HookedModel, Site

HIST_EDGES = np.exp2(np.arange(-10, 11, 0.5))  # 41 edges → 42 bins incl. under/overflow
"""Histogram bin edges for positive activations (log₂ spaced, 2⁻¹⁰ … 2¹⁰)."""


@dataclass(frozen=True)
class StatsConfig:
    """Options of the streaming pass."""

    batch_size: int = 32
    """Documents per batch."""
    top_k: int = 10
    """Top activating examples kept per feature (one per document)."""
    window: int = 8
    """Tokens kept on each side of an example's maximum."""
    max_tokens: int | None = None
    """Stop after this many counted tokens (whole batches)."""
    checkpoint_every: int = 50
    """Batches between checkpoints."""
    merge_every: int = 16
    """Batches whose sparse pair sums are buffered before merging into the totals."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.top_k < 1 or self.window < 0:
            raise ValueError("StatsConfig: batch_size and top_k must be ≥ 1, window ≥ 0")


@dataclass
class FeatureStats:
    """Accumulated statistics; arrays are indexed by global feature g."""

    n_layers: int
    n_features: int
    k: int
    window: int
    tokens: int = 0
    docs_done: int = 0
    count: np.ndarray = field(init=False)  # (g,) int64
    sum: np.ndarray = field(init=False)  # (g,) float64
    max: np.ndarray = field(init=False)  # (g,) float32
    hist: np.ndarray = field(init=False)  # (g, bins) int64
    sigma_mlp: np.ndarray = field(init=False)  # (layer,) Σ σ at each dictionary layer's MLP norm
    sigma_final: float = 0.0  # Σ σ at the final norm
    top_val: np.ndarray = field(init=False)  # (k, g) float32, −inf when empty
    top_doc: np.ndarray = field(init=False)  # (k, g) int64
    top_pos: np.ndarray = field(init=False)  # (k, g) int64
    top_tok: np.ndarray = field(init=False)  # (k, g, 2w+1) int64, −1 outside the document
    top_act: np.ndarray = field(init=False)  # (k, g, 2w+1) float32
    C: list[sp.csr_matrix] = field(init=False)  # per source layer i: (feature, later features)
    I: list[sp.csr_matrix] = field(init=False)

    def __post_init__(self) -> None:
        g, w = self.n_layers * self.n_features, 2 * self.window + 1
        self.count = np.zeros(g, np.int64)
        self.sum = np.zeros(g, np.float64)
        self.max = np.zeros(g, np.float32)
        self.hist = np.zeros((g, len(HIST_EDGES) + 1), np.int64)
        self.sigma_mlp = np.zeros(self.n_layers, np.float64)
        self.top_val = np.full((self.k, g), -np.inf, np.float32)
        self.top_doc = np.full((self.k, g), -1, np.int64)
        self.top_pos = np.full((self.k, g), -1, np.int64)
        self.top_tok = np.full((self.k, g, w), -1, np.int64)
        self.top_act = np.zeros((self.k, g, w), np.float32)
        F = self.n_features
        self.C = [sp.csr_matrix((F, (self.n_layers - 1 - i) * F)) for i in range(self.n_layers - 1)]
        self.I = [m.copy() for m in self.C]

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically: into a temporary directory, then rename over `path`."""
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays = {
            name: getattr(self, name)
            for name in (
                "count",
                "sum",
                "max",
                "hist",
                "sigma_mlp",
                "top_val",
                "top_doc",
                "top_pos",
                "top_tok",
                "top_act",
            )
        }
        for name in ("C", "I"):
            for i, m in enumerate(getattr(self, name)):
                m = m.tocsr()
                arrays |= {
                    f"{name}{i}.data": m.data,
                    f"{name}{i}.indices": m.indices.astype(np.int64),
                    f"{name}{i}.indptr": m.indptr.astype(np.int64),
                }
        save_np({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / "state.safetensors"))
        meta = {
            "n_layers": self.n_layers,
            "n_features": self.n_features,
            "k": self.k,
            "window": self.window,
            "tokens": self.tokens,
            "docs_done": self.docs_done,
            "sigma_final": self.sigma_final,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        meta = json.loads((path / "meta.json").read_text())
        s = cls(meta["n_layers"], meta["n_features"], meta["k"], meta["window"])
        s.tokens, s.docs_done, s.sigma_final = meta["tokens"], meta["docs_done"], meta["sigma_final"]
        arrays = load_np(str(path / "state.safetensors"))
        for name in (
            "count",
            "sum",
            "max",
            "hist",
            "sigma_mlp",
            "top_val",
            "top_doc",
            "top_pos",
            "top_tok",
            "top_act",
        ):
            setattr(s, name, arrays[name])
        F = s.n_features
        for name in ("C", "I"):
            mats = []
            for i in range(s.n_layers - 1):
                shape = (F, (s.n_layers - 1 - i) * F)
                mats.append(
                    sp.csr_matrix(
                        (
                            arrays[f"{name}{i}.data"],
                            arrays[f"{name}{i}.indices"],
                            arrays[f"{name}{i}.indptr"],
                        ),
                        shape=shape,
                    )
                )
            setattr(s, name, mats)
        return s

    # -- derived -------------------------------------------------------------------------
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
    def sigma_final_mean(self) -> float:
        return self.sigma_final / max(self.tokens, 1)


class _Accumulator:
    """Applies steps 1–5 of the module docstring to one batch at a time."""

    def __init__(self, model: HookedModel, d: Dictionary, stats: FeatureStats):
        self.model, self.d, self.s = model, d, stats
        self.sites: list[tuple[int, Site]] = [(l, d.read_site) for l in d.layers]
        self.sites += [(l, "resid_mid") for l in d.layers if d.read_site != "resid_mid"]
        # per source layer, this batch's Σ a_s a_t + i Σ a_s 1(a_t > 0) (complex: see step 3)
        self.pending: list[list[sp.csr_matrix]] = [[] for _ in range(stats.n_layers - 1)]
        self.final_norm = model.model.get_submodule(model.family.final_norm)
        self.edges = torch.tensor(HIST_EDGES, dtype=torch.float32)

    @torch.no_grad()
    def add(self, batch: Batch) -> None:
        s, d, model = self.s, self.d, self.model
        ids = batch.input_ids.to(model.device)
        store: dict[tuple[int, Site], list[Tensor]] = {k: [] for k in self.sites}
        final_in: list[Tensor] = []
        handle = self.final_norm.register_forward_pre_hook(lambda _m, args: final_in.append(args[0]))
        try:
            with model.hooks(capture=store):
                model.model.base_model(input_ids=ids, attention_mask=batch.attention_mask.to(model.device))
        finally:
            handle.remove()
        mask = batch.mask.to(model.device)  # (batch, pos)
        n = int(mask.sum())
        acts = torch.cat([d.encode(l, store[(l, d.read_site)][0]) for l in d.layers], dim=-1)  # (batch, pos, g)
        acts.masked_fill_(~mask[..., None], 0)
        flat = acts[mask].float()  # (n, g)

        # step 2, from the non-zeros only (activations are sparse)
        nz_tok, nz_feat = (flat > 0).nonzero(as_tuple=True)  # row-major order
        nz_val = flat[nz_tok, nz_feat]
        G = s.count.shape[0]
        cols, vals = nz_feat.cpu().numpy(), nz_val.cpu().numpy()
        s.count += np.bincount(cols, minlength=G)
        s.sum += np.bincount(cols, weights=vals.astype(np.float64), minlength=G)
        batch_max = torch.zeros(G, dtype=nz_val.dtype, device=nz_val.device).scatter_reduce_(0, nz_feat, nz_val, "amax")
        np.maximum(s.max, batch_max.cpu().numpy(), out=s.max)
        bins = torch.bucketize(nz_val.cpu(), self.edges).numpy()
        n_bins = s.hist.shape[1]
        s.hist += np.bincount(cols * n_bins + bins, minlength=G * n_bins).reshape(G, n_bins)

        # step 3: one sparse product gives both sums. The later features' matrix holds
        # a_t + i·1(a_t > 0), so (sources)ᵀ @ it has C in its real part and I in its imaginary
        # part: one pass of scipy's sparse product instead of two (measured ≈3× faster).
        F, L = s.n_features, s.n_layers
        rows = nz_tok.cpu().numpy()  # row-major: a valid CSR order
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        targets = sp.csr_matrix(((vals + 1j).astype(np.complex64), cols, indptr), shape=(n, G))
        sources = sp.csr_matrix((vals.astype(np.complex64), cols, indptr), shape=(n, G)).tocsc()
        for i in range(L - 1):
            src = sources[:, i * F : (i + 1) * F].T  # (feature, n), CSR
            self.pending[i].append(src @ targets[:, (i + 1) * F :])  # (feature, later features)

        # step 4
        self._merge_top(acts, batch)

        # step 5
        for i, l in enumerate(d.layers):
            x = store[(l, "resid_mid")][0] if d.read_site != "resid_mid" else store[(l, d.read_site)][0]
            s.sigma_mlp[i] += model.mlp_norm(l).denominator(x)[mask].sum().item()
        s.sigma_final += model.final_norm().denominator(final_in[0])[mask].sum().item()
        s.tokens += n
        s.docs_done = int(batch.doc_ids[-1]) + 1

    def _merge_top(self, acts: Tensor, batch: Batch) -> None:
        s = self.s
        w = s.window
        doc_max, doc_pos = acts.max(dim=1)  # (batch, g)
        doc_max = doc_max.float().cpu()
        cand_val = torch.cat([torch.from_numpy(s.top_val), doc_max.masked_fill(doc_max <= 0, -np.inf)])
        top = cand_val.topk(s.k, dim=0)  # (k, g)
        new = top.indices >= s.k
        slot, feat = new.nonzero(as_tuple=True)
        keep = torch.where(new, torch.zeros_like(top.indices), top.indices).numpy()
        g_idx = np.arange(s.top_val.shape[1])
        for name in ("top_val", "top_doc", "top_pos", "top_tok", "top_act"):
            arr = getattr(s, name)
            setattr(s, name, arr[keep, g_idx])
        if len(slot) == 0:
            return
        rows = top.indices[slot, feat] - s.k  # batch row of each new entry
        p = doc_pos.cpu()[rows, feat]  # (n_new,)
        offsets = torch.arange(-w, w + 1)
        where = p[:, None] + offsets  # (n_new, 2w+1)
        T = batch.input_ids.shape[1]
        valid = (where >= 0) & (where < T) & batch.attention_mask[rows[:, None], where.clamp(0, T - 1)].bool()
        wc = where.clamp(0, T - 1)
        toks = torch.where(valid, batch.input_ids[rows[:, None], wc], -1)
        wact = acts.cpu()[rows[:, None], wc, feat[:, None]].float() * valid
        sl, ft = slot.numpy(), feat.numpy()
        s.top_val[sl, ft] = top.values[slot, feat].numpy()
        s.top_doc[sl, ft] = batch.doc_ids[rows].numpy()
        s.top_pos[sl, ft] = p.numpy()
        s.top_tok[sl, ft] = toks.numpy()
        s.top_act[sl, ft] = wact.numpy()

    def flush(self) -> None:
        for i, mats in enumerate(self.pending):
            if mats:
                coo = [m.tocoo() for m in mats]  # one conversion sums them all (duplicates add up)
                both = sp.csr_matrix(
                    (
                        np.concatenate([c.data for c in coo]),
                        (np.concatenate([c.row for c in coo]), np.concatenate([c.col for c in coo])),
                    ),
                    shape=mats[0].shape,
                )
                self.s.C[i] = (self.s.C[i] + both.real.astype(np.float64)).tocsr()
                self.s.I[i] = (self.s.I[i] + both.imag.astype(np.float64)).tocsr()
                mats.clear()


def stream_statistics(
    model: HookedModel,
    d: Dictionary,
    docs: list[str],
    cfg: StatsConfig = StatsConfig(),
    checkpoint: Path | None = None,
    progress: bool = True,
) -> FeatureStats:
    """Run the pass over `docs` (resuming from `checkpoint` when it holds a state)."""
    d.check_model(model.d_model, model.n_layers)
    if checkpoint is not None and (checkpoint / "meta.json").exists():
        stats = FeatureStats.load(checkpoint)
        if (stats.n_layers, stats.n_features, stats.k, stats.window) != (
            len(d.layers),
            d.n_features,
            cfg.top_k,
            cfg.window,
        ):
            raise ValueError(f"checkpoint {checkpoint} was made with other options; delete it to start over")
    else:
        stats = FeatureStats(len(d.layers), d.n_features, cfg.top_k, cfg.window)
    acc = _Accumulator(model, d, stats)
    context = int(getattr(model.model.config, "max_position_embeddings", 1024) or 1024)
    bar = tqdm(total=len(docs), initial=stats.docs_done, unit="doc", disable=not progress, desc="collect")
    for n_batch, batch in enumerate(batches(model.tokenizer, docs, context, cfg.batch_size, start=stats.docs_done), 1):
        if cfg.max_tokens is not None and stats.tokens >= cfg.max_tokens:
            break
        acc.add(batch)
        bar.update(len(batch.doc_ids))
        if n_batch % cfg.merge_every == 0:
            acc.flush()
        if checkpoint is not None and n_batch % cfg.checkpoint_every == 0:
            acc.flush()
            stats.save(checkpoint)
    acc.flush()
    bar.close()
    if checkpoint is not None:
        stats.save(checkpoint)
    return stats

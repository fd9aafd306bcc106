"""Any residual-stream direction as a node with downstream features (a probe, a steering vector,
a difference of means), computed over a run's corpus with the run's definitions.

A direction at layer L is a vector v (what it writes) with a read vector r (default v/|v|) and
a bias b (default 0):

- its activation at a token is a = max(0, x·r + b), x the dictionary's read site at layer L
  (or another site, `read_site`): with the defaults, the positive part of the projection of
  x onto v's unit vector;
- it writes like a per-layer transcoder feature of layer L whose decoder is v (at the
  dictionary's write site of layer L), so steering it adds (a_new − a_old)·v there and a
  downstream target t (layer l_t > L) sees V_t = (W v)·ẽ_t, W the write's map to the residual
  (`connections.residual_writes`), ẽ_t the target's residual encoder (`residual_encoders`);
- over the run's corpus, windowed and counted exactly as the run was (same context, batch and
  chunk sizes, same token budget, position 0 excluded):
  μ = E[a], C_t = E[a·a_t], I_t = E[1(a_t > 0)·a], and with μ_t the run's own feature means,
  ERA_t = I_t·V_t and TWERA_t = (C_t / μ_t)·V_t (0 when μ_t = 0), as in DESIGN.md.

So a direction given a feature's encoder, bias and one layer's decoder has exactly that
feature's edges to the layer after (`tests/test_direction.py`). One pass over the corpus;
memory is one float64 vector per target layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import Tensor

from loaders.connections import residual_encoders, residual_writes, virtual_weight_block
from loaders.corpus import Corpus, chunks, pack, pad_id
from loaders.dictionary import Activation, Dictionary
from loaders.errors import GraphkitError
from loaders.logit_lens import top_unembeds
from loaders.model import HookedModel, Site
from loaders.stats import HIST_EDGES, FeatureStats


class DirectionError(GraphkitError, ValueError):
    """A direction that does not fit the run (shape, layer, file)."""


@dataclass(frozen=True)
class Direction:
    name: str
    layer: int
    vector: Tensor
    """(d_model,): what it writes."""
    read: Tensor
    """(d_model,): what its activation projects onto."""
    bias: float = 0.0
    read_site: Site | None = None
    """Where its activation reads (docs/hooks.md); None: the dictionary's read site."""

    @classmethod
    def of(
        cls, name: str, layer: int, vector: Tensor, read: Tensor | None = None, bias: float = 0.0,
        read_site: Site | None = None,
    ) -> Direction:  # fmt: skip
        v = vector.detach().double().flatten()
        if not torch.isfinite(v).all() or float(v.norm()) == 0:
            raise DirectionError(f"direction {name!r}: the vector must be finite and non-zero")
        r = v / v.norm() if read is None else read.detach().double().flatten()
        if r.shape != v.shape:
            raise DirectionError(f"direction {name!r}: read vector of {r.numel()} values, vector of {v.numel()}")
        return cls(name, layer, v, r, float(bias), read_site)

    def as_dictionary(self, d: Dictionary) -> Dictionary:
        """A one-feature per-layer transcoder at `layer`, reading and writing where `d` does."""
        L = self.layer
        return Dictionary(
            "plt", (L,), self.read_site or d.read_site, d.write_site,
            {L: self.read.float()[None]}, {L: torch.tensor([self.bias], dtype=torch.float32)},
            {L: self.vector.float()[None, None]}, {L: torch.zeros_like(self.vector, dtype=torch.float32)},
            {L: Activation("relu")}, model_name=d.model_name, name=self.name,
        )  # fmt: skip


@dataclass
class DirectionStats:
    tokens: int
    count: int
    total: float
    max: float
    hist: np.ndarray
    C: dict[int, np.ndarray]
    """Target layer → Σ a·a_t per target feature."""
    I: dict[int, np.ndarray]
    """Target layer → Σ 1(a_t > 0)·a per target feature."""


@dataclass(frozen=True)
class DirectionResult:
    direction: Direction
    count: int
    density: float
    mean: float
    max: float
    hist: tuple[int, ...]
    top_tokens: tuple[str, ...]
    top_values: tuple[float, ...]
    bottom_tokens: tuple[str, ...]
    bottom_values: tuple[float, ...]
    edges: list[dict]
    """The top_k targets (layer > L) by |TWERA| among those with a non-zero TWERA or ERA (all of
    them when top_k is None): target_layer, target_index, virtual_weight, era, twera."""


def check(direction: Direction, model: HookedModel, d: Dictionary) -> None:
    if direction.vector.numel() != model.d_model:
        raise DirectionError(
            f"direction {direction.name!r} has {direction.vector.numel()} values; the model's residual stream has "
            f"{model.d_model}"
        )
    if direction.layer not in d.layers:
        raise DirectionError(
            f"direction {direction.name!r}: layer {direction.layer} is not a dictionary layer ({list(d.layers)})"
        )


@torch.no_grad()
def direction_pass(model: HookedModel, d: Dictionary, direction: Direction, run: Path) -> DirectionStats:
    """The direction's sums over the run's corpus (module docstring)."""
    check(direction, model, d)
    manifest = json.loads((Path(run) / "manifest.json").read_text())
    opts = manifest["options"]["stats"]
    corpus = Corpus(manifest["corpus"]["path"])
    one = direction.as_dictionary(d).encoders_to(model.device)  # read where the model runs
    L, site = direction.layer, d.read_site
    later = [l for l in d.layers if l > L]
    own = (L, one.read_site)
    sites = list(dict.fromkeys([own, *((l, site) for l in later)]))
    C = {l: torch.zeros(d.n_features, dtype=torch.float64) for l in later}
    I = {l: torch.zeros(d.n_features, dtype=torch.float64) for l in later}
    edges = torch.tensor(HIST_EDGES, dtype=torch.float64)
    hist = torch.zeros(len(HIST_EDGES) + 1, dtype=torch.int64)
    tokens = count = 0
    total = peak = 0.0
    pad = pad_id(model.tokenizer)
    for chunk in chunks(corpus, model.tokenizer, opts["context"] or model.context, opts["chunk_tokens"]):
        for batch in pack(chunk.windows, opts["batch_tokens"], pad):
            store: dict = {k: [] for k in sites}
            with model.hooks(capture=store):
                model.model.base_model(
                    input_ids=batch.input_ids.to(model.device), attention_mask=batch.attention_mask.to(model.device)
                )
            mask = batch.mask.to(model.device)
            a = one.encode(L, store[own][0])[..., 0][mask].double().cpu()  # (token,)
            on = a > 0
            tokens += int(mask.sum())
            count += int(on.sum())
            total += float(a.sum())
            peak = max(peak, float(a.max())) if len(a) else peak
            hist += torch.bincount(torch.bucketize(a[on], edges), minlength=len(hist))
            for l in later:
                at = d.encode(l, store[(l, site)][0])[mask].double().cpu()  # (token, feature)
                C[l] += a @ at
                I[l] += a @ (at > 0).double()
        if opts.get("max_tokens") is not None and tokens >= opts["max_tokens"]:
            break  # as the run's pass ends: after the chunk that reaches the budget
    return DirectionStats(
        tokens,
        count,
        total,
        peak,
        hist.numpy(),
        {l: c.numpy() for l, c in C.items()},
        {l: i.numpy() for l, i in I.items()},
    )


def compute_direction(
    model: HookedModel, d: Dictionary, direction: Direction, run: Path, n_unembeds: int = 10,
    top_k: int | None = None,
) -> DirectionResult:  # fmt: skip
    """Statistics, top unembeds and the `top_k` downstream edges (all: None) of `direction` on
    the run `run`."""
    run = Path(run)
    s = direction_pass(model, d, direction, run)
    stats = FeatureStats.load(run / "stats")
    if s.tokens != stats.tokens:
        raise DirectionError(
            f"the direction's pass counted {s.tokens} tokens, the run {stats.tokens}: the run's corpus "
            f"({run / 'manifest.json'}) has changed since it was collected; collect again"
        )
    means = pq.read_table(run / "features.parquet", columns=["layer", "index", "mean"])
    mu = {
        l: means.filter(means.column("layer").to_numpy() == l).sort_by("index").column("mean").to_numpy() for l in s.C
    }
    enc = residual_encoders(model, d, stats.sigma_mlp_mean, stats.sigma_attn_mean)
    writes = residual_writes(model, d, stats.sigma_post_mean)
    one = direction.as_dictionary(d)
    layers, V, twera, era = [], [], [], []  # one entry per target layer, (feature,) each
    for l in s.C:
        v = virtual_weight_block(one, enc, direction.layer, l, writes=writes)[0].cpu().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            twera.append(np.where(mu[l] > 0, (s.C[l] / s.tokens) / np.where(mu[l] > 0, mu[l], 1.0), 0.0) * v)
        era.append(s.I[l] / s.tokens * v)
        layers.append(np.full(len(v), l))
        V.append(v)
    flat = {k: np.concatenate(x) if x else np.zeros(0) for k, x in
            {"layer": layers, "virtual_weight": V, "twera": twera, "era": era}.items()}  # fmt: skip
    index = np.concatenate([np.arange(len(v)) for v in V]) if V else np.zeros(0, np.int64)
    kept = np.nonzero((flat["twera"] != 0) | (flat["era"] != 0))[0]
    kept = kept[np.argsort(-np.abs(flat["twera"][kept]), kind="stable")][:top_k]
    rows = [
        {"target_layer": int(flat["layer"][t]), "target_index": int(index[t]),
         "virtual_weight": float(flat["virtual_weight"][t]), "era": float(flat["era"][t]),
         "twera": float(flat["twera"][t])}
        for t in kept
    ]  # fmt: skip
    u = top_unembeds(model, one, stats.sigma_final_mean, k=n_unembeds, writes=writes)

    def names(ids: np.ndarray) -> tuple[str, ...]:  # the few tokens shown, not the whole vocabulary
        return tuple(str(model.tokenizer.decode([int(i)])) for i in ids)

    return DirectionResult(
        direction, s.count, s.count / max(s.tokens, 1), s.total / max(s.tokens, 1), s.max,
        tuple(int(h) for h in s.hist),
        names(u.top_ids[0]), tuple(float(v) for v in u.top_values[0]),
        names(u.bottom_ids[0]), tuple(float(v) for v in u.bottom_values[0]), rows,
    )  # fmt: skip


@torch.no_grad()
def diff_means(model: HookedModel, d: Dictionary, positive: list[str], negative: list[str], layer: int) -> Tensor:
    """mean(x | positive) − mean(x | negative) at the dictionary's read site of `layer`, over
    every position of every prompt but the first (BOS), prompts tokenized as everywhere."""
    from loaders.model import tokenize_prompt

    if not positive or not negative:
        raise DirectionError("diff-means needs at least one positive and one negative prompt")
    if layer not in d.layers:
        raise DirectionError(f"layer {layer} is not a dictionary layer ({list(d.layers)})")

    def mean(prompts: list[str]) -> Tensor:
        rows = []
        for p in prompts:
            _, sites = model.run(tokenize_prompt(model.tokenizer, p).to(model.device), [(layer, d.read_site)])
            rows.append(sites[(layer, d.read_site)][0, 1:].double().cpu())
        return torch.cat(rows).mean(0)

    return mean(positive) - mean(negative)


def as_record(r: DirectionResult) -> dict:
    """The direction's row for the graph (the vectors as lists)."""
    dr = r.direction
    return {
        "name": dr.name, "layer": dr.layer, "bias": dr.bias, "read_site": dr.read_site,
        "vector": dr.vector.tolist(), "read_vector": dr.read.tolist(),
        "count": r.count, "density": r.density, "mean": r.mean, "max": r.max,
        "top_tokens": list(r.top_tokens), "bottom_tokens": list(r.bottom_tokens),
    }  # fmt: skip

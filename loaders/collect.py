"""``graphkit collect``: model + dictionary + corpus → a run directory.

Stages meet at files (STYLE.md item 9); a stage whose output exists is skipped when the run's
inputs are the same, and the statistics pass resumes from its checkpoint:

1. ``stats/``: the streaming pass (`loaders.stats`), checkpointed, marked done in the manifest;
2. ``features.parquet``: per feature layer, index, count, density, mean, max, histogram,
   logit-lens top/bottom tokens and values;
3. ``examples.parquet``: per feature its top activating examples (token ids, tokens,
   per-token activations, decoded window);
4. ``connections.parquet``: kept edges (`loaders.connections.edges`);
5. ``manifest.json``: model, dictionary, corpus path and hash, tokens seen, options, versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loaders.connections import edges, top_unembeds
from loaders.corpus import file_hash, read_documents
from loaders.dictionary import load_dictionary
from loaders.model import HookedModel
from loaders.stats import HIST_EDGES, FeatureStats, StatsConfig, stream_statistics


@dataclass(frozen=True)
class CollectConfig:
    """Options of ``graphkit collect``."""

    top_k: int = 32
    """Downstream and upstream edges kept per feature."""
    n_unembeds: int = 10
    """Logit-lens top and bottom tokens kept per feature."""
    stats: StatsConfig = field(default_factory=StatsConfig)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.n_unembeds < 1:
            raise ValueError("CollectConfig: top_k and n_unembeds must be ≥ 1")


@dataclass(frozen=True)
class RunFiles:
    """Paths of a run directory."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    @property
    def features(self) -> Path:
        return self.root / "features.parquet"

    @property
    def examples(self) -> Path:
        return self.root / "examples.parquet"

    @property
    def connections(self) -> Path:
        return self.root / "connections.parquet"


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _write_json(data: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def collect(
    model_name: str,
    dictionary_name: str,
    corpus: Path,
    out: Path,
    cfg: CollectConfig = CollectConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> RunFiles:
    """Run every stage into `out` (module docstring) and return its paths."""
    run = RunFiles(Path(out))
    corpus = Path(corpus)
    docs = read_documents(corpus)
    inputs = {
        "model": model_name,
        "dictionary": dictionary_name,
        "corpus": {"path": str(corpus.resolve()), "sha256": file_hash(corpus), "documents": len(docs)},
        "options": asdict(cfg) | {"device": None},
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    manifest = json.loads(run.manifest.read_text()) if run.manifest.exists() else None
    if manifest is not None and manifest.get("inputs_key") != key:
        if not overwrite:
            raise FileExistsError(
                f"{run.root} holds a run of other inputs (model, dictionary, corpus or options differ); "
                "pass --overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(run.root)
        manifest = None
    run.root.mkdir(parents=True, exist_ok=True)
    if manifest is None:
        manifest = {"inputs_key": key, **inputs, "stages": {}}
        _write_json(manifest, run.manifest)

    model = HookedModel.load(model_name, device=cfg.device)
    d = load_dictionary(dictionary_name).to(model.device)
    d.check_model(model.d_model, model.n_layers, where=dictionary_name)

    def done(stage: str, path: Path) -> bool:
        return bool(manifest["stages"].get(stage)) and path.exists()

    def mark(stage: str) -> None:
        manifest["stages"][stage] = True
        _write_json(manifest, run.manifest)

    if done("stats", run.stats):
        stats = FeatureStats.load(run.stats)
    else:
        stats = stream_statistics(model, d, docs, cfg.stats, checkpoint=run.stats, progress=progress)
        manifest["tokens_seen"] = stats.tokens
        manifest["documents_seen"] = stats.docs_done
        manifest["versions"] = {p: version(p) for p in ("graphkit", "torch", "transformers")}
        manifest |= {"dictionary_kind": d.kind, "read_site": d.read_site, "write_site": d.write_site}
        mark("stats")

    vocab = _token_strings(model)
    if not done("features", run.features):
        _write_parquet(_features_table(model, d, stats, vocab, cfg.n_unembeds), run.features)
        mark("features")
    if not done("examples", run.examples):
        _write_parquet(_examples_table(d.layers, stats, vocab, model.tokenizer), run.examples)
        mark("examples")
    if not done("connections", run.connections):
        _write_parquet(pa.table(edges(model, d, stats, top_k=cfg.top_k)), run.connections)
        mark("connections")
    return run


def _token_strings(model: HookedModel) -> list[str]:
    tok = model.tokenizer
    return [str(tok.decode([i])) for i in range(len(tok))]


def _features_table(model: HookedModel, d, stats: FeatureStats, vocab: list[str], n: int) -> pa.Table:
    F = d.n_features
    u = top_unembeds(model, d, stats.sigma_final_mean, k=n, token_strings=vocab)
    layers = np.repeat(np.asarray(d.layers, np.int64), F)
    names = np.asarray(vocab, dtype=object)
    return pa.table(
        {
            "layer": layers,
            "index": np.tile(np.arange(F, dtype=np.int64), len(d.layers)),
            "count": stats.count,
            "density": stats.density,
            "mean": stats.mean,
            "max": stats.max.astype(np.float64),
            "hist": pa.array(list(stats.hist), type=pa.list_(pa.int64())),
            "top_token_ids": pa.array(list(u["top_ids"].astype(np.int64)), type=pa.list_(pa.int64())),
            "top_tokens": pa.array([list(names[r]) for r in u["top_ids"]], type=pa.list_(pa.string())),
            "top_values": pa.array(list(u["top_values"].astype(np.float64)), type=pa.list_(pa.float64())),
            "bottom_token_ids": pa.array(list(u["bottom_ids"].astype(np.int64)), type=pa.list_(pa.int64())),
            "bottom_tokens": pa.array([list(names[r]) for r in u["bottom_ids"]], type=pa.list_(pa.string())),
            "bottom_values": pa.array(list(u["bottom_values"].astype(np.float64)), type=pa.list_(pa.float64())),
            "top_word": u["words"][u["top_word"]].astype(str),
            "top_word_z": u["top_word_z"].astype(np.float64),
            "word_gap": u["word_gap"].astype(np.float64),
        }
    ).replace_schema_metadata({"hist_edges": json.dumps(HIST_EDGES.tolist())})


def _examples_table(layers: tuple[int, ...], stats: FeatureStats, vocab: list[str], tokenizer) -> pa.Table:
    F = stats.n_features
    slot, g = np.nonzero(np.isfinite(stats.top_val))
    order = np.lexsort((slot, g))
    slot, g = slot[order], g[order]
    toks = stats.top_tok[slot, g]  # (n, window)
    acts = stats.top_act[slot, g]
    valid = toks >= 0
    token_ids = [t[v].tolist() for t, v in zip(toks, valid, strict=True)]
    return pa.table(
        {
            "layer": np.asarray(layers, np.int64)[g // F],
            "index": (g % F).astype(np.int64),
            "rank": slot.astype(np.int64),
            "activation": stats.top_val[slot, g].astype(np.float64),
            "doc": stats.top_doc[slot, g],
            "position": stats.top_pos[slot, g],
            "center": (stats.window - (~valid[:, : stats.window]).sum(1)).astype(np.int64),
            "token_ids": pa.array(token_ids, type=pa.list_(pa.int64())),
            "tokens": pa.array([[vocab[i] for i in ids] for ids in token_ids], type=pa.list_(pa.string())),
            "activations": pa.array(
                [a[v].astype(np.float64).tolist() for a, v in zip(acts, valid, strict=True)],
                type=pa.list_(pa.float64()),
            ),
            "text": [tokenizer.decode(ids) for ids in token_ids],
        }
    )

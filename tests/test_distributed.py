"""Distributed collect on a local Ray cluster equals the in-process run; a dead worker's shard is retried."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray  # the optional extra graphkit[ray]; the dev extra includes it

from loaders.collect import CollectConfig, collect
from loaders.distributed import FAULT_ENV
from loaders.stats import StatsConfig
from tests.factories import random_dictionary, save_dictionary, tiny_model, write_corpus


@pytest.mark.slow  # ≥ 15 s: `pytest -m slow` (CI runs it)
@pytest.mark.parametrize("budget", [None, 24 * 24 * 4], ids=["C and I in one pass", "C in three passes, then I"])
def test_ray_collect_equals_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int | None) -> None:
    model = tiny_model("llama")
    model.model.save_pretrained(tmp_path / "model")
    model.tokenizer.save_pretrained(tmp_path / "model")
    save_dictionary(random_dictionary(model, "clt"), tmp_path / "clt")
    shards = tmp_path / "shards"
    shards.mkdir()
    for n in range(3):
        write_corpus(shards / f"part-{n}.txt", n_docs=20, seed=n)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv(FAULT_ENV, f"1:{marks}")  # the worker that first takes shard 1 dies
    stats = StatsConfig(batch_tokens=64, chunk_tokens=100, context=12, top_k=4, window=2)
    cfg = CollectConfig(top_k=3, stats=stats, memory_budget=budget)
    args = (str(tmp_path / "model"), str(tmp_path / "clt"), shards)
    local = collect(*args, tmp_path / "local", cfg, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        import dataclasses

        dist = collect(*args, tmp_path / "ray", dataclasses.replace(cfg, ray="auto", workers=2), progress=False)
    finally:
        ray.shutdown()
    assert (marks / "failed-1").exists(), "the fault was injected, so shard 1 ran twice"

    manifest = json.loads(dist.manifest.read_text())
    assert manifest["pairs"]["passes"] == (1 if budget is None else 4) and manifest["pairs"]["i_pass"] == bool(budget)
    a, b = (pq.read_table(r.features).to_pydict() for r in (local, dist))
    for col in ("layer", "index", "count", "max", "hist", "top_token_ids"):
        assert a[col] == b[col], col
    np.testing.assert_allclose(b["mean"], a["mean"], rtol=1e-6)  # float32 rounding (threads differ)
    ea, eb = (pq.read_table(r.examples).to_pydict() for r in (local, dist))
    for col in ("layer", "index", "rank", "shard", "record", "window", "position", "token_ids"):
        assert ea[col] == eb[col], col
    np.testing.assert_allclose(eb["activation"], ea["activation"], rtol=1e-6)
    ca, cb = (pq.read_table(r.connections).to_pydict() for r in (local, dist))
    for key in ("source_layer", "source_index", "target_layer", "target_index"):
        assert ca[key] == cb[key]
    for col in ("virtual_weight", "era", "twera"):
        np.testing.assert_allclose(cb[col], ca[col], rtol=1e-5)

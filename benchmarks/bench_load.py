"""Load throughput: edges per second into the embedded store and into Neo4j.

    python benchmarks/bench_load.py [--features 65536] [--edges 2000000] [--neo4j-edges 200000]

Writes a synthetic run directory (the files `graphkit collect` writes, with random values:
n_layers × n_features features, each source's edges to later layers) and times
`loaders.graph.load.load_run` end to end — Parquet reading, motor rule, id building, bulk
writes and the final Dictionary node — into a fresh embedded store and into a local Neo4j
started by `graphkit.neo4j_local`, then `graphkit load --bulk` (Neo4j's offline importer,
`graphkit.neo4j_local.bulk_load`) of the big run into a fresh local Neo4j. Prints edges/s and
the ratio to the goals.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GOALS = {"embedded": 300_000, "neo4j": 20_000, "neo4j --bulk": 200_000}


def synthetic_run(root: Path, n_layers: int, per_layer: int, n_edges: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    run = root / "run"
    run.mkdir(parents=True)
    n = n_layers * per_layer
    words = [f"w{i}" for i in range(2000)]
    toks = pa.array([[words[j] for j in rng.integers(0, 2000, 10)] for _ in range(n)], type=pa.list_(pa.string()))
    vals = pa.array(list(rng.normal(size=(n, 10))), type=pa.list_(pa.float64()))
    pq.write_table(
        pa.table(
            {
                "layer": np.repeat(np.arange(n_layers), per_layer),
                "index": np.tile(np.arange(per_layer), n_layers),
                "count": rng.integers(0, 1000, n),
                "density": rng.random(n),
                "mean": rng.random(n),
                "max": rng.random(n),
                "top_tokens": toks,
                "top_values": vals,
                "bottom_tokens": toks,
                "bottom_values": vals,
                "top_word": [words[j] for j in rng.integers(0, 2000, n)],
                "top_word_z": rng.normal(3, 1, n),
                "word_gap": rng.random(n),
            }
        ),
        run / "features.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "layer": np.zeros(0, np.int64),
                "index": np.zeros(0, np.int64),
                "rank": np.zeros(0, np.int64),
                "center": np.zeros(0, np.int64),
                "tokens": pa.array([], type=pa.list_(pa.string())),
            }
        ),
        run / "examples.parquet",
    )
    sl = rng.integers(0, n_layers - 1, n_edges)
    tl = np.minimum(sl + 1 + rng.integers(0, n_layers, n_edges), n_layers - 1)
    si, ti = rng.integers(0, per_layer, n_edges), rng.integers(0, per_layer, n_edges)
    keys = np.unique(np.stack([sl, si, tl, ti], 1), axis=0)
    pq.write_table(
        pa.table(
            {
                "source_layer": keys[:, 0],
                "source_index": keys[:, 1],
                "target_layer": keys[:, 2],
                "target_index": keys[:, 3],
                "virtual_weight": rng.normal(size=len(keys)),
                "era": rng.normal(size=len(keys)),
                "twera": rng.normal(size=len(keys)),
            }
        ),
        run / "connections.parquet",
    )
    manifest = {
        "inputs_key": "bench",
        "model": "bench-model",
        "dictionary": "bench-dict",
        "stages": {"stats": True, "features": True, "examples": True, "connections": True},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def timed_load(run: Path, spec: str, batch_size: int) -> tuple[float, int, dict[str, tuple[int, float]]]:
    """(seconds end to end, FEEDS edges, {bulk stage: (rows, seconds)})."""
    from loaders.graph.load import load_run
    from loaders.graph.store import open_store

    store = open_store(spec)
    stages: dict[str, tuple[int, float]] = {}
    bulk = store.bulk

    def timed(name, table, size, progress=False):
        t = time.perf_counter()
        bulk(name, table, size, progress)
        stages[name] = (table.num_rows, time.perf_counter() - t)

    store.bulk = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    result = load_run(run, store, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - t0
    store.close()
    return seconds, result.edges, stages


def report(name: str, goal: int, seconds: float, edges: int, stages: dict[str, tuple[int, float]]) -> None:
    rows, feeds_s = stages["FEEDS"]
    total_rows = sum(n for n, _ in stages.values())
    print(
        f"{name}: FEEDS {rows} edges in {feeds_s:.2f} s = {rows / feeds_s:,.0f} edges/s "
        f"(goal {goal:,}: ratio {rows / feeds_s / goal:.2f}); whole load {seconds:.2f} s for {total_rows} rows "
        f"({edges / seconds:,.0f} FEEDS edges/s, {total_rows / seconds:,.0f} rows/s end to end)"
    )
    for stage, (n, t) in stages.items():
        print(f"    {stage:10s} {n:9d} rows {t:7.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--features", type=int, default=4096, help="features per layer")
    parser.add_argument("--edges", type=int, default=2_000_000)
    parser.add_argument("--neo4j-edges", type=int, default=200_000)
    parser.add_argument("--skip-neo4j", action="store_true")
    parser.add_argument("--bulk-edges", type=int, default=None, help="edges for --bulk (default: --edges)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = synthetic_run(root / "big", args.layers, args.features, args.edges)
        report("embedded", GOALS["embedded"], *timed_load(run, str(root / "store"), batch_size=100_000))
        if args.skip_neo4j:
            return
        from graphkit import neo4j_local

        small = synthetic_run(root / "small", args.layers, args.features, args.neo4j_edges, seed=1)
        info = neo4j_local.start(root / "neo4j", port=17699, password="bench-password")
        try:
            uri = info.uri.replace("bolt://", "bolt://neo4j:bench-password@")
            result = timed_load(small, uri, batch_size=10_000)
        finally:
            neo4j_local.stop(root / "neo4j")
        report("neo4j", GOALS["neo4j"], *result)

        # the offline importer, into a fresh local Neo4j, on the big run
        bulk_run = (
            run
            if args.bulk_edges is None
            else synthetic_run(root / "bulk", args.layers, args.features, args.bulk_edges, seed=2)
        )
        t0 = time.perf_counter()
        r = neo4j_local.bulk_load(bulk_run, root / "neo4j-bulk", port=17698, password="bench-password")
        whole = time.perf_counter() - t0
        neo4j_local.stop(root / "neo4j-bulk")
        rate = r.edges / r.import_seconds
        goal = GOALS["neo4j --bulk"]
        print(
            f"neo4j --bulk: {r.edges} FEEDS edges ({r.rows} rows) imported in {r.import_seconds:.2f} s = "
            f"{rate:,.0f} edges/s, {r.rows / r.import_seconds:,.0f} rows/s (goal {goal:,}: ratio {rate / goal:.2f}); "
            f"whole bulk load {whole:.1f} s incl. CSV writing and two server starts ({r.edges / whole:,.0f} edges/s)"
        )


if __name__ == "__main__":
    main()

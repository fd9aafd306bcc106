"""``graphkit collect`` on a real GPU against the same run on the CPU: how far the results move.

    python benchmarks/check_device.py [--model tiny] [--dictionary tiny-clt] [--corpus FILE]
        [--tokens 50000] [--dtype fp32] [--device cuda]

The tests check the device's route on a simulated CUDA device (`tests/test_device.py`), which
computes with the CPU's kernels. This runs both for real and compares what they wrote: the
statistics and the top-k examples (CUDA's GEMMs round differently, so activations move in their
last bits and near-ties may swap), the logit lens, and the edges — how many of the CPU's edges
the GPU keeps, and how far their values move. Exits 1 when an edge set differs by more than
`--max-edge-diff` (default 1%) or a statistic by more than its tolerance. Needs a GPU; nothing
else runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--dictionary", default="tiny-clt")
    p.add_argument("--corpus", type=Path, default=None, help="default: the bundled held-out corpus, built here")
    p.add_argument("--tokens", type=int, default=50_000)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--max-edge-diff", type=float, default=0.01)
    a = p.parse_args()

    from loaders.collect import collect
    from loaders.config import CollectConfig
    from loaders.stats import StatsConfig

    with tempfile.TemporaryDirectory() as tmp:
        corpus = a.corpus
        if corpus is None:
            from loaders.zoo.corpus import build_corpus

            build_corpus(Path(tmp) / "corpus")
            corpus = Path(tmp) / "corpus" / "heldout.jsonl"
        cfg = CollectConfig(stats=StatsConfig(max_tokens=a.tokens))
        runs = {}
        for name, c in (("cpu", cfg), ("gpu", dataclasses.replace(cfg, device=a.device, dtype=a.dtype))):
            t0 = time.perf_counter()
            runs[name] = collect(a.model, a.dictionary, corpus, Path(tmp) / name, c, progress=False).root
            print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
        ok = _compare(runs["cpu"], runs["gpu"], a.max_edge_diff, loose=a.dtype != "fp32")
    return 0 if ok else 1


def _compare(cpu: Path, gpu: Path, max_edge_diff: float, loose: bool) -> bool:
    ok = True
    f_cpu, f_gpu = (pq.read_table(r / "features.parquet").to_pydict() for r in (cpu, gpu))
    rtol = 5e-2 if loose else 1e-3  # bf16/fp16 models move activations by their mantissa
    for col in ("count", "density", "mean", "max"):
        x, y = np.asarray(f_cpu[col], float), np.asarray(f_gpu[col], float)
        rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-12)
        bad = rel > rtol
        print(f"features.{col}: max relative difference {rel.max():.2e}, {bad.mean():.2%} beyond {rtol:g}")
        ok &= bool(bad.mean() <= 0.01)
    same_top = np.mean([a[:3] == b[:3] for a, b in zip(f_cpu["top_token_ids"], f_gpu["top_token_ids"], strict=True)])
    print(f"logit lens: {same_top:.2%} of features have the same 3 top tokens")
    e_cpu, e_gpu = (pq.read_table(r / "connections.parquet").to_pydict() for r in (cpu, gpu))
    keys = ("source_layer", "source_index", "target_layer", "target_index")
    k_cpu, k_gpu = (set(zip(*(e[k] for k in keys), strict=True)) for e in (e_cpu, e_gpu))
    diff = len(k_cpu ^ k_gpu) / max(len(k_cpu), 1)
    print(f"edges: {len(k_cpu):,} on the CPU, {len(k_gpu):,} on the GPU, {diff:.3%} in one set only")
    ok &= diff <= max_edge_diff
    at = {k: i for i, k in enumerate(zip(*(e_gpu[k] for k in keys), strict=True))}
    both = [(i, at[k]) for i, k in enumerate(zip(*(e_cpu[k] for k in keys), strict=True)) if k in at]
    for col in ("virtual_weight", "era", "twera"):
        x = np.asarray([e_cpu[col][i] for i, _ in both])
        y = np.asarray([e_gpu[col][j] for _, j in both])
        rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-12)
        print(f"edges.{col} on the shared edges: median relative difference {np.median(rel):.2e}, max {rel.max():.2e}")
    print("OK" if ok else "DIFFERENT beyond the tolerances above")
    return ok


if __name__ == "__main__":
    sys.exit(main())

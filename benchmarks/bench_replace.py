"""A large `--replace` on a local Neo4j: load a synthetic run over Bolt, then replace it.

    python benchmarks/bench_replace.py [--edges 2000000]

Builds `bench_load.synthetic_run` (16 layers × 4,096 features, `--edges` FEEDS edges), starts
a fresh local Neo4j (`graphkit.neo4j_local`, -Xmx1g) in a temporary directory, and prints
the seconds of the first load and of the replace (the new run loaded beside the old under a
staging name, the old renamed away and the new renamed in, then the old deleted in batches:
`loaders.graph.load`). The server is stopped and its directory removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
from pathlib import Path

from bench_load import synthetic_run

from graphkit import neo4j_local
from loaders.graph.load import load_run
from loaders.graph.store import open_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", type=int, default=2_000_000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    run = synthetic_run(root, 16, 4096, args.edges)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = neo4j_local.start(root / "neo4j", port=port)
    try:
        store = open_store(info.uri)
        for what, replace in (("load", False), ("replace", True)):
            t = time.perf_counter()
            r = load_run(run, store, replace=replace, progress=False)
            print(f"{what}: {r.edges:,} FEEDS edges in {time.perf_counter() - t:.0f} s", flush=True)
        store.close()
    finally:
        neo4j_local.stop(root / "neo4j")
        shutil.rmtree(root, ignore_errors=True)  # 15 GB of store and run at 10M edges


if __name__ == "__main__":
    main()

"""How fast `graphkit serve` renders a feature page (goal: under 300 ms on the bundled graph).

    python benchmarks/bench_explorer.py [--store DIR] [--features 40]

Without --store it runs the demo (bundled model and CLT, ~20 s) into a temporary directory
and uses its store. It asks the app for feature pages exactly as a browser does (the router
callback, POST /_dash-update-component, through Flask's test client: everything but the
socket), for --features features drawn at random, after one warm-up page. It prints the
median, 90th percentile and largest time, and each as a ratio of the 300 ms goal.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from graphkit.explorer import Backend, make_app

GOAL_S = 0.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=None)
    ap.add_argument("--features", type=int, default=40)
    args = ap.parse_args()
    store = args.store
    if store is None:
        from graphkit.demo import run_demo

        store = str(run_demo(Path(tempfile.mkdtemp()), progress=False).run / "graph")
    backend = Backend(store)
    client = make_app(backend).server.test_client()
    with backend.graph() as g:
        n_layers, n_features = g.info["n_layers"], g.info["n_features"]
        ids = [g.id(layer, index) for layer in range(n_layers) for index in range(n_features)]
    chosen = random.Random(0).sample(ids, min(args.features, len(ids)))

    def page(fid: str) -> float:
        payload = {
            "output": "page.children",
            "outputs": {"id": "page", "property": "children"},
            "inputs": [
                {"id": "url", "property": "pathname", "value": "/feature"},
                {"id": "url", "property": "search", "value": f"?id={fid}"},
            ],
            "changedPropIds": ["url.search"],
            "state": [],
        }
        t = time.perf_counter()
        r = client.post("/_dash-update-component", json=payload)
        elapsed = time.perf_counter() - t
        assert r.status_code == 200 and b'"type":"H2"' in r.data[:400], r.data[:500]  # the page, not an error
        return elapsed

    page(chosen[0])  # imports and the first open of the store
    times = sorted(page(fid) for fid in chosen)
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"store {store}: {len(times)} feature pages ({n_layers} × {n_features} features)")
    for name, t in (("median", statistics.median(times)), ("p90", p90), ("max", times[-1])):
        print(f"  {name:6s} {t * 1000:6.0f} ms  = {t / GOAL_S:.2f} × the 300 ms goal")


if __name__ == "__main__":
    main()

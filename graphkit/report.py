"""Feature reports: what `graphkit view` and the demo write, assembled from the graph and the run.

The graph answers the neighbourhood, unembeds, downstream list and steering results; the run
directory the graph was loaded from supplies the full top examples (token by token, with
activations) and the activation histogram.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pyarrow.parquet as pq

from graphkit.graph import FeatureGraph
from graphkit.views import feature_card_html, histogram_figure, neighbourhood_figure, write_report
from loaders.graph.schema import mark_peak


def _run(graph: FeatureGraph) -> Path:
    return Path(graph.info["run"])


def examples(graph: FeatureGraph, layer: int, index: int, k: int = 5) -> list[dict[str, Any]]:
    table = pq.read_table(_run(graph) / "examples.parquet", filters=[("layer", "=", layer), ("index", "=", index)])
    rows = table.sort_by("rank").to_pylist()[:k]
    return rows


def marked(example: dict[str, Any]) -> str:
    """An example row of the run (examples.parquet) as text (`schema.mark_peak`)."""
    return mark_peak(example["tokens"], example["center"])


def histogram(graph: FeatureGraph, layer: int, index: int) -> go.Figure:
    table = pq.read_table(
        _run(graph) / "features.parquet",
        columns=["layer", "index", "hist"],
        filters=[("layer", "=", layer), ("index", "=", index)],
    )
    row = table
    edges = json.loads(table.schema.metadata[b"hist_edges"])
    return histogram_figure(row.column("hist")[0].as_py(), edges, f"activation histogram of {layer}/{index}")


def feature_sections(graph: FeatureGraph, layer: int, index: int, hops: int = 2, k: int = 5) -> list[str | go.Figure]:
    """Neighbourhood (down and up), histogram and card of one feature."""
    fid = graph.id(layer, index)
    feature = graph.feature(layer, index)
    down = graph.neighbourhood(layer, index, hops=hops, k=k, direction="down")
    up = graph.neighbourhood(layer, index, hops=1, k=k, direction="up")
    for g in (down, up):
        info = {r["id"]: r for r in graph.run("features_by_id", ids=list(g.nodes))}
        for n in g.nodes:
            g.nodes[n]["example_summary"] = info.get(n, {}).get("example_summary") or ""
    downstream = [e.as_json() | {"id": e.id} for e in graph.downstream(layer, index, k=10)]
    card = feature_card_html(
        feature.as_json(),
        examples(graph, layer, index),
        graph.run("unembeds", id=fid),
        downstream,
        graph.run("feature_steering", id=fid),
    )
    return [
        neighbourhood_figure(down, fid, f"downstream of {fid} ({hops} hops, top {k} per feature, by |TWERA|)"),
        neighbourhood_figure(up, fid, f"upstream of {fid} (top {k} by |TWERA|)"),
        histogram(graph, layer, index),
        card,
    ]


def view_feature(graph: FeatureGraph, layer: int, index: int, out: Path, hops: int = 2, k: int = 5) -> Path:
    return write_report(
        out,
        f"graphkit: feature {graph.id(layer, index)}",
        feature_sections(graph, layer, index, hops=hops, k=k),
    )

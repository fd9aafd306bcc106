"""plotly views as standalone HTML: a feature's neighbourhood and its feature card.

- `neighbourhood_figure`: layers as columns, features as nodes (ordered by |TWERA| within a
  layer), FEEDS edges as lines whose width is |TWERA| and whose colour is its sign (blue
  promotes, red suppresses; both in the legend, with the width scale); motor features are
  stars labelled with their word; hovering a node shows its top unembeds and its top example.
  Labels sit beside their nodes, columns far enough apart and rows tall enough that they do
  not overlap (checked in Chromium by tests/test_views.py).
- `feature_card_html`: top examples with per-token highlighting, top/bottom unembeds, the
  activation histogram, the downstream list and the recorded steering results.
- `write_report`: sections of HTML and figures in one file that needs no network (plotly.js
  is inlined once).
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import plotly.graph_objects as go

POSITIVE, NEGATIVE = "#2166ac", "#b2182b"


def neighbourhood_figure(g: nx.DiGraph, root: str, title: str = "") -> go.Figure:
    """The graph of `FeatureGraph.neighbourhood` as a layered plotly figure."""
    by_layer: dict[int, list[str]] = {}
    weight = {n: max((abs(a["twera"]) for *_, a in g.in_edges(n, data=True)), default=0.0) for n in g}
    weight[root] = float("inf")
    for n, a in g.nodes(data=True):
        by_layer.setdefault(int(a["layer"]), []).append(n)
    pos: dict[str, tuple[float, float]] = {}
    columns = sorted(by_layer)
    for col, layer in enumerate(columns):  # one column per layer present, evenly spaced
        nodes = by_layer[layer]
        nodes.sort(key=lambda n: -weight[n])
        for rank, n in enumerate(nodes):
            pos[n] = (float(col), -float(rank) + (len(nodes) - 1) / 2)
    rows = max(len(v) for v in by_layer.values())
    label_chars = max(len(_label(a)) for _, a in g.nodes(data=True))
    column_px = 40 + 7 * label_chars  # a label (≈7 px a character at 11 px) beside its node
    top = max((abs(a["twera"]) for *_, a in g.edges(data=True)), default=1.0) or 1.0
    fig = go.Figure()
    for u, v, a in g.edges(data=True):
        (x0, y0), (x1, y1) = pos[u], pos[v]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                hoverinfo="text",
                showlegend=False,
                line={
                    "width": 0.5 + 7.5 * abs(a["twera"]) / top,
                    "color": POSITIVE if a["twera"] > 0 else NEGATIVE,
                },
                text=f"{u} → {v}<br>TWERA {a['twera']:+.4g}<br>ERA {a['era']:+.4g}<br>V {a['virtual_weight']:+.4g}",
                opacity=0.75,
            )
        )
    for motor in (False, True):
        nodes = [n for n, a in g.nodes(data=True) if bool(a.get("motor_word")) == motor]
        if not nodes:
            continue
        fig.add_trace(
            go.Scatter(
                x=[pos[n][0] for n in nodes],
                y=[pos[n][1] for n in nodes],
                mode="markers+text",
                name="motor feature" if motor else "feature",
                text=[_label(g.nodes[n]) for n in nodes],
                textposition="middle right",
                textfont={"size": 11},
                marker={
                    "size": [22 if n == root else 14 for n in nodes],
                    "symbol": "star" if motor else "circle",
                    "color": ["#222" if n == root else ("#e08214" if motor else "#999") for n in nodes],
                    "line": {"width": 1, "color": "#333"},
                },
                hovertext=[_hover(n, g.nodes[n]) for n in nodes],
                hoverinfo="text",
                customdata=nodes,
            )
        )
    for name, color, width in (
        ("promotes (TWERA > 0)", POSITIVE, 3.0),
        ("suppresses (TWERA < 0)", NEGATIVE, 3.0),
        (f"width ∝ |TWERA| (thickest {top:.3g})", "#777", 8.0),
    ):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, line={"color": color, "width": width}))
    fig.update_layout(
        title=title or f"neighbourhood of {root}",
        template="plotly_white",
        height=max(420, 160 + 34 * rows),
        width=max(700, 120 + column_px * len(columns)),
        xaxis={
            "title": "layer",
            "tickvals": list(range(len(columns))),
            "ticktext": [str(c) for c in columns],
            "range": [-0.3, len(columns) - 0.3],
        },
        yaxis={"visible": False, "range": [-(rows + 1) / 2, (rows + 1) / 2]},
        hovermode="closest",
        legend={"orientation": "h", "y": -0.12},
        margin={"r": 40},
    )
    return fig


def _label(a: dict[str, Any]) -> str:
    word = f" say {a['motor_word']!r}" if a.get("motor_word") else ""
    return f"{a['layer']}/{a['index']}{word}"


def _hover(node: str, a: dict[str, Any]) -> str:
    toks = ", ".join(repr(t) for t in (a.get("top_tokens") or [])[:6])
    example = html.escape((a.get("example_summary") or "").split(" | ")[0][:90])
    motor = f"<br><b>says {a['motor_word']!r}</b>" if a.get("motor_word") else ""
    return f"<b>{node}</b>{motor}<br>top unembeds: {html.escape(toks)}<br>top example: {example}"


def _highlight(tokens: Sequence[str], acts: Sequence[float], peak: float) -> str:
    spans = []
    for t, a in zip(tokens, acts, strict=True):
        alpha = 0.0 if peak <= 0 else max(0.0, min(1.0, a / peak))
        text = html.escape(t).replace("\n", "⏎")
        spans.append(f'<span title="{a:.3f}" style="background: rgba(255,140,0,{alpha:.2f})">{text}</span>')
    return "".join(spans)


def feature_card_html(
    feature: dict[str, Any],
    examples: Sequence[dict[str, Any]],
    unembeds: Sequence[dict[str, Any]],
    downstream: Sequence[dict[str, Any]],
    steering: Sequence[dict[str, Any]],
) -> str:
    """An HTML fragment: the feature's examples, unembeds, downstream list and steering results."""
    fid = html.escape(feature["id"])
    motor = f" — motor feature, says <b>{html.escape(feature['motor_word'])}</b>" if feature.get("motor_word") else ""
    parts = [
        f'<section class="card" id="card-{fid}"><h2>{fid}{motor}</h2>',
        f"<p class='description'>{html.escape(feature['description'])}</p>" if feature.get("description") else "",
        f"<p>density {feature['density']:.4g} · mean {feature['mean']:.4g} · max {feature['max']:.4g}</p>",
        "<h3>Top activating examples</h3><ol class='examples'>",
    ]
    for ex in examples:
        parts.append(
            f"<li>{_highlight(ex['tokens'], ex['activations'], ex['activation'])} "
            f"<small>({ex['activation']:.3f})</small></li>"
        )
    parts.append("</ol><h3>Top / bottom unembeds</h3><table><tr><th>top</th><th></th><th>bottom</th><th></th></tr>")
    tops = [u for u in unembeds if u["side"] == "top"]
    bottoms = [u for u in unembeds if u["side"] == "bottom"]
    for t, b in zip(sorted(tops, key=lambda u: u["rank"]), sorted(bottoms, key=lambda u: u["rank"]), strict=False):
        parts.append(
            f"<tr><td>{html.escape(repr(t['token']))}</td><td>{t['value']:+.3f}</td>"
            f"<td>{html.escape(repr(b['token']))}</td><td>{b['value']:+.3f}</td></tr>"
        )
    parts.append(
        "</table><h3>Downstream by |TWERA|</h3><table><tr><th>feature</th><th>TWERA</th><th>ERA</th>"
        "<th>V</th><th>top unembeds</th></tr>"
    )
    for e in downstream:
        motor_tag = f" <b>[says {html.escape(e['motor_word'])}]</b>" if e.get("motor_word") else ""
        toks = html.escape(" ".join(repr(t) for t in (e.get("top_tokens") or [])[:5]))
        parts.append(
            f"<tr><td>{e['layer']}/{e['index']}{motor_tag}</td><td>{e['twera']:+.4g}</td>"
            f"<td>{e['era']:+.4g}</td><td>{e['virtual_weight']:+.4g}</td><td>{toks}</td></tr>"
        )
    parts.append("</table><h3>Steering results</h3>")
    if not steering:
        parts.append("<p>none recorded</p>")
    else:
        parts.append(
            "<table><tr><th>prompt</th><th>mode</th><th>value</th><th>answer</th><th>steered</th>"
            "<th>changed</th><th>p(answer) before → after</th></tr>"
        )
        for s in steering:
            parts.append(
                f"<tr><td>{html.escape(s['prompt'])}</td><td>{s['mode']}</td><td>{s['value']:+g}</td>"
                f"<td>{html.escape(s['baseline_answer'])}</td><td>{html.escape(s['steered_answer'])}</td>"
                f"<td>{'yes' if s['changed'] else 'no'}</td>"
                f"<td>{s['prob_before']:.3f} → {s['prob_after']:.3f}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)


def histogram_figure(hist: Sequence[int], edges: Sequence[float], title: str) -> go.Figure:
    """Bar chart of a feature's positive-activation histogram (log₂ bins of `loaders.stats`)."""
    labels = ["<" + f"{edges[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
    labels.append(f"≥{edges[-1]:.3g}")
    nonzero = [i for i, h in enumerate(hist) if h]
    lo, hi = (nonzero[0], nonzero[-1] + 1) if nonzero else (0, len(hist))
    fig = go.Figure(go.Bar(x=labels[lo:hi], y=list(hist)[lo:hi], marker_color="#e08214"))
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=260,
        xaxis={"title": "activation"},
        yaxis={"title": "tokens"},
    )
    return fig


STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { padding: 2px 10px; border-bottom: 1px solid #eee; }
.examples li { font-family: ui-monospace, monospace; white-space: pre-wrap; margin: .3em 0; }
.card { border-top: 2px solid #ccc; margin-top: 2em; } small { color: #777; }
</style>"""


def write_report(path: Path, title: str, parts: Sequence[str | go.Figure]) -> Path:
    """Write `parts` (HTML strings and figures) as one standalone HTML file."""
    body, first = [], True
    for p in parts:
        if isinstance(p, go.Figure):
            body.append(p.to_html(full_html=False, include_plotlyjs="inline" if first else False))
            first = False
        else:
            body.append(p)
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}</head>"
        f"<body><h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "</body></html>"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path

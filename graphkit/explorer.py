"""`graphkit serve`: a local web app over the feature graph, built on Dash (plotly's own app
framework, so the figures of `graphkit.views` render as they do in the static reports).

Every view's state is in its URL, so every feature id is a link and tabs are independent:

- ``/?q=WORD&by=KIND``: search features by id, top-unembed word, example-peak word or motor word;
- ``/feature?id=ID&sort=MEASURE``: a feature's examples (per-token activations), unembeds,
  activation histogram, look-alikes, downstream and upstream edges, motor paths and the
  steering checks stored for it;
- ``/neighbourhood?id=ID&hops=H&k=K&sign=S&direction=D``: the layered neighbourhood; click a
  node to open its page;
- ``/prompt?features=ID,ID``: analyze a prompt (active features per token, optionally on the
  answer context and only look-alikes of a word), select features and steer them; the checks
  are written to the graph;
- ``/cypher``: read-only Cypher, the named queries of ``cypher/`` as presets.

Reads share one read-only handle on the store (`Backend.graph`), so the console has the same
guarantees as ``graphkit cypher``. Analysis and steering write: they take a short-lived
read-write handle (`Backend.workspace`); for the embedded store the reader is closed meanwhile,
since LadybugDB opens a database in one mode per process. A lock makes the two take turns,
which is what lets several tabs share the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from dash import Dash, Input, Output, State, dcc, html, no_update

from graphkit.graph import Edge, FeatureGraph, Measure
from loaders.errors import GraphkitError
from loaders.graph.store import DIALECT, check_read_only, cypher, cypher_names, open_store, query_stores

if TYPE_CHECKING:
    from graphkit.checks import Workspace

SEARCH_BY = {
    "unembed": "top-unembed word",
    "example": "example-peak word",
    "motor": "motor word",
    "id": "feature id",
    "direction": "direction name",
}
SORT_BY = {"twera": "TWERA", "era": "ERA", "virtual_weight": "virtual weight"}
MAX_ROWS = 500
"""Rows a console result shows."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
nav { background: #f3f3f3; padding: .6em 1.5em; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1.5em; font-weight: 600; }
main { margin: 1em auto; max-width: 1200px; padding: 0 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th a { text-decoration: none; } th.sorted { background: #fff3df; }
.example { font-family: ui-monospace, monospace; white-space: pre-wrap; margin: .3em 0; }
.error { color: #b00020; white-space: pre-wrap; } .muted { color: #777; }
.changed { color: #1a7f37; font-weight: 600; }
textarea { font-family: ui-monospace, monospace; }
.controls > * { margin-right: 1em; display: inline-block; vertical-align: middle; }
"""


class Backend:
    """The store behind the explorer, shared by every tab (module docstring)."""

    def __init__(self, store: str, dictionary: str | None = None, device: str = "cpu"):
        self.spec, self.device = store, device
        self._lock = threading.RLock()
        self._graph: FeatureGraph | None = None
        self._inputs: Workspace | None = None
        self.dictionary = dictionary
        with self.graph() as g:  # a wrong store fails at start, not at the first click
            self.dictionary = g.dictionary
            self.shown = g.store.spec
            """The store as pages name it: a Neo4j URI without its credentials."""

    @contextmanager
    def graph(self) -> Iterator[FeatureGraph]:
        with self._lock:
            if self._graph is None:
                self._graph = FeatureGraph(open_store(self.spec, read_only=True), self.dictionary)
            yield self._graph

    @contextmanager
    def workspace(self) -> Iterator[Workspace]:
        """A read-write workspace; the model and dictionary are loaded once, on first use."""
        from graphkit.checks import Workspace

        with self._lock:
            if self._graph is not None and self._graph.store.kind == "embedded":
                self._graph.store.close()
                self._graph = None
            if self._inputs is None:
                ws = Workspace.open(self.spec, self.dictionary, device=self.device)
                self._inputs = ws
            else:
                store = open_store(self.spec, must_exist=True)
                first = self._inputs
                ws = Workspace(
                    store, FeatureGraph(store, self.dictionary), first.model, first.dictionary, first.model_name
                )
            try:
                yield ws
            finally:
                ws.store.close()


# -- small pieces ---------------------------------------------------------------------------
def href(page: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"/{page}?{query}" if query else f"/{page}"


def feature_link(fid: str, text: str | None = None) -> dcc.Link:
    return dcc.Link(text or fid, href=href("feature", id=fid))


def table(header: Sequence[Any], rows: Sequence[Sequence[Any]], **props: Any) -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([h if isinstance(h, html.Th) else html.Th(h) for h in header])),
            html.Tbody([html.Tr([html.Td(c) for c in r]) for r in rows]),
        ],
        **props,
    )


def error(e: BaseException) -> html.Div:
    return html.Div(str(e), className="error")


def tokens(ts: Sequence[str] | None, n: int = 6) -> str:
    return " ".join(repr(t) for t in (ts or [])[:n])


def fmt(x: float | None) -> str:
    return "" if x is None else f"{x:+.4g}"


USER_ERRORS = (GraphkitError, ValueError, KeyError)


# -- search ---------------------------------------------------------------------------------
def search(g: FeatureGraph, by: str, text: str, k: int = 50) -> list[dict[str, Any]]:
    """Feature rows (features_by_id) matching `text`, best first."""
    text = text.strip()
    if not text:
        return []
    if by == "id":
        layer, index = g.resolve(text)
        ids = [g.feature(layer, index).id]
    elif by == "unembed":
        ids = [r["id"] for r in g.by_unembed(text, k=k)]
    elif by == "example":
        ids = [r["id"] for r in g.by_example_token(text, k=k)]
    elif by == "motor":
        ids = [m.id for m in g.motor_features(text)][:k]
    else:
        raise ValueError(f"search by {by!r}: one of {', '.join(SEARCH_BY)}")
    rows = {r["id"]: r for r in g.run("features_by_id", ids=ids)}
    return [rows[i] for i in dict.fromkeys(ids) if i in rows]


def direction_results(g: FeatureGraph, text: str) -> html.Div:
    rows = [r for r in g.run("directions", dictionary=g.dictionary) if text.strip().lower() in r["name"].lower()]
    if not rows:
        return html.Div("no directions found (add one with `graphkit direction add`)", className="muted")
    body = [
        [dcc.Link(r["name"], href=href("direction", name=r["name"])), r["layer"], f"{r['density']:.3g}",
         tokens(r["top_tokens"])]
        for r in rows
    ]  # fmt: skip
    return html.Div([html.P(f"{len(rows)} directions"), table(["direction", "layer", "density", "top unembeds"], body,
                                                                id="search-table")])  # fmt: skip


def direction_page(g: FeatureGraph, name: str, k: int = 10) -> html.Div:
    from graphkit.directions import direction_downstream, get_direction

    node = get_direction(g, name)
    down = direction_downstream(g, name, k)
    checks = g.run("direction_steering", id=node.id)
    return html.Div(
        [
            html.H2(f"direction {node.name}"),
            html.P(f"layer {node.layer} · density {node.density:.4g} · active on {node.count:,} tokens · "
                   f"mean {node.mean:.4g} · max {node.max:.4g} · activation max(0, x·r + {node.direction.bias:g})"),
            html.H3("Top / bottom unembeds"),
            html.P(f"top: {tokens(node.top_tokens, 10)}"),
            html.P(f"bottom: {tokens(node.bottom_tokens, 10)}"),
            html.H3(f"Downstream (top {k} by |TWERA|)"),
            edge_table(down, "twera", node.id, "downstream", sortable=False),
            html.H3("Steering checks stored for it (`graphkit direction steer`)"),
            table(["prompt", "mode", "value", "answer", "steered", "changed"],
                  [[s["prompt"], s["mode"], f"{s['value']:+g}", s["baseline_answer"], s["steered_answer"],
                    "yes" if s["changed"] else "no"] for s in checks], id="steering-table")
            if checks else html.P("none yet", className="muted"),
        ]
    )  # fmt: skip


def search_page(q: str, by: str) -> html.Div:
    return html.Div(
        [
            html.H2("Search features"),
            html.Div(
                [
                    dcc.Input(id="search-text", value=q, placeholder="green, 1/517, …", debounce=True),
                    dcc.Dropdown(
                        id="search-by",
                        options=[{"label": v, "value": k} for k, v in SEARCH_BY.items()],
                        value=by if by in SEARCH_BY else "unembed",
                        clearable=False,
                        style={"width": "14em"},
                    ),
                    html.Button("Search", id="search-go"),
                ],
                className="controls",
            ),
            html.Div(id="search-results"),
        ]
    )


def search_results(rows: Sequence[dict[str, Any]]) -> html.Div:
    if not rows:
        return html.Div("no features found", className="muted")
    body = [
        [
            feature_link(r["id"]),
            r["layer"],
            f"{r['density']:.3g}" if r.get("density") is not None else "",
            tokens(r["top_tokens"]),
            tokens(r["example_tokens"], 4),
            r["motor_word"] or "",
            r.get("description") or (r["example_summary"] or "").split(" | ")[0][:100],
        ]
        for r in rows
    ]
    head = ["feature", "layer", "density", "top unembeds", "example peaks", "says", "description (else top example)"]
    return html.Div([html.P(f"{len(rows)} features"), table(head, body, id="search-table")])


# -- a feature ------------------------------------------------------------------------------
def highlighted(example: dict[str, Any]) -> html.Div:
    """An example's full window, each token shaded by its activation (hover: the value)."""
    peak = example["activation"] or 1.0
    spans = [
        html.Span(
            t.replace("\n", "⏎"),
            title=f"{a:.3f}",
            style={"background": f"rgba(255,140,0,{max(0.0, min(1.0, a / peak)):.2f})"},
        )
        for t, a in zip(example["tokens"], example["activations"], strict=True)
    ]
    return html.Div([*spans, html.Small(f"  ({example['activation']:.3f})", className="muted")], className="example")


def edge_table(edges: Sequence[Edge], sort: str, fid: str, direction: str, sortable: bool = True) -> html.Table:
    """`edges` as the query ranked them (by `sort`); the shaded header says which measure."""
    key = sort if sort in SORT_BY else "twera"
    head: list[Any] = [direction]
    for m, label in SORT_BY.items():
        link = dcc.Link(label, href=href("feature", id=fid, sort=m)) if sortable else label
        head.append(html.Th(link, className="sorted" * (m == key)))
    head.append("top unembeds")
    rows = [
        [
            html.Span([feature_link(e.id), f" says {e.motor_word!r}" if e.motor_word else ""]),
            fmt(e.twera),
            fmt(e.era),
            fmt(e.virtual_weight),
            tokens(e.top_tokens),
        ]
        for e in edges
    ]
    return table(head, rows, id=f"{direction}-table")


def feature_page(g: FeatureGraph, fid: str, sort: str = "twera", k: int = 10) -> html.Div:
    from graphkit import report

    layer, index = g.resolve(fid)
    f = g.feature(layer, index)
    run = Path(g.info["run"])
    by: Measure = sort if sort in SORT_BY else "twera"  # type: ignore[assignment]
    parts: list[Any] = [
        html.H2([f.id, f" — says {f.motor_word!r}" if f.motor_word else ""]),
        html.P(html.Em(f.description), id="description") if f.description else "",
        html.P(
            f"layer {f.layer} · density {f.density:.4g} · active on {f.count:,} tokens · "
            f"mean {f.mean:.4g} · max {f.max:.4g}"
        ),
        html.Div(
            [
                dcc.Link("neighbourhood view", href=href("neighbourhood", id=f.id)),
                dcc.Link("steer it on a prompt", href=href("prompt", features=f.id)),
            ],
            className="controls",
        ),
        html.H3("Top activating examples"),
    ]
    if (run / "examples.parquet").exists():
        parts += [highlighted(ex) for ex in report.examples(g, layer, index, k=10)]
    else:
        parts.append(html.P(f"(the run {run} is not here: examples as stored) {f.example_summary}"))
    unembeds = g.run("unembeds", id=f.id)
    tops = sorted((u for u in unembeds if u["side"] == "top"), key=lambda u: u["rank"])
    bottoms = sorted((u for u in unembeds if u["side"] == "bottom"), key=lambda u: u["rank"])
    parts += [
        html.H3("Top / bottom unembeds"),
        table(
            ["top", "logit", "bottom", "logit"],
            [
                [repr(t["token"]), fmt(t["value"]), repr(b["token"]), fmt(b["value"])]
                for t, b in zip(tops, bottoms, strict=False)
            ],
            id="unembeds-table",
        ),
    ]
    if (run / "features.parquet").exists():
        parts.append(dcc.Graph(figure=report.histogram(g, layer, index), config={"displayModeBar": False}))
    parts += [
        html.H3(f"Downstream (top {k} of the kept edges by the measure whose header is shaded)"),
        edge_table(g.downstream(layer, index, k=k, by=by), sort, f.id, "downstream"),
        html.H3(f"Upstream (top {k} by the same measure)"),
        edge_table(g.upstream(layer, index, k=k, by=by), sort, f.id, "upstream"),
        html.H3("Motor features it reaches"),
    ]
    paths = g.motor_paths(layer, index, k=k)
    parts.append(
        table(
            ["motor feature", "says", "hops", "score", "via"],
            [
                [feature_link(p.id), p.word, p.hops, fmt(p.score), html.Span([feature_link(v) for v in p.via[1:-1]])]
                for p in paths
            ],
            id="motor-table",
        )
        if paths
        else html.P("none within reach", className="muted")
    )
    look = g.lookalikes(layer, index, k=k)
    parts += [
        html.H3("Look-alikes (shared top-unembed and example words, ±1 layer)"),
        table(
            ["feature", "shared words", "top unembeds", "says"],
            [[feature_link(x.id), ", ".join(x.words), tokens(x.top_tokens), x.motor_word or ""] for x in look],
            id="lookalikes-table",
        )
        if look
        else html.P("none", className="muted"),
        html.H3("Steering checks stored for it"),
    ]
    checks = g.run("feature_steering", id=f.id)
    parts.append(
        table(
            ["prompt", "mode", "value", "positions", "answer", "steered", "changed", "p(answer) before → after"],
            [
                [
                    s["prompt"],
                    s["mode"],
                    f"{s['value']:+g}",
                    s["positions"],
                    s["baseline_answer"],
                    s["steered_answer"],
                    html.Span("yes", className="changed") if s["changed"] else "no",
                    f"{s['prob_before']:.3f} → {s['prob_after']:.3f}",
                ]
                for s in checks
            ],
            id="steering-table",
        )
        if checks
        else html.P("none yet", className="muted", id="steering-table")
    )
    return html.Div(parts)


# -- neighbourhood --------------------------------------------------------------------------
def neighbourhood_page(g: FeatureGraph, fid: str, hops: int, k: int, sign: str, direction: str) -> html.Div:
    from graphkit.views import neighbourhood_figure

    layer, index = g.resolve(fid)
    root = g.feature(layer, index).id
    nb = g.neighbourhood(layer, index, hops=hops, k=k, direction=direction, sign=sign)  # type: ignore[arg-type]
    title = f"{'downstream' if direction == 'down' else 'upstream'} of {root} ({hops} hops, top {k}, sign {sign})"
    return html.Div(
        [
            html.H2(["Neighbourhood of ", feature_link(root)]),
            html.Div(
                [
                    html.Label(["hops ", dcc.Input(id="nb-hops", type="number", min=1, max=4, value=hops)]),
                    html.Label(["k ", dcc.Input(id="nb-k", type="number", min=1, max=50, value=k)]),
                    dcc.Dropdown(
                        id="nb-sign", options=["any", "positive", "negative"], value=sign, clearable=False,
                        style={"width": "9em"},
                    ),
                    dcc.Dropdown(
                        id="nb-direction", options=["down", "up"], value=direction, clearable=False,
                        style={"width": "7em"},
                    ),
                    html.Button("Draw", id="nb-go"),
                ],
                className="controls",
            ),
            dcc.Store(id="nb-root", data=root),
            html.P("Click a node to open its page.", className="muted"),
            dcc.Graph(id="nb-graph", figure=neighbourhood_figure(nb, root, title)),
        ]
    )  # fmt: skip


# -- prompt ---------------------------------------------------------------------------------
def prompt_page(features: Sequence[str]) -> html.Div:
    from graphkit.config import ANALYZE_K

    return html.Div(
        [
            html.H2("Prompt"),
            dcc.Textarea(id="prompt-text", style={"width": "100%", "height": "4em"}),
            html.Div(
                [
                    dcc.Checklist(id="prompt-context", options=[{"label": " answer context", "value": "yes"}],
                                  value=[]),
                    html.Label(["look-alikes of ", dcc.Input(id="prompt-word", placeholder="word (optional)")]),
                    html.Label(["features per token ", dcc.Input(id="prompt-k", type="number", min=1,
                                                                  value=ANALYZE_K)]),
                    html.Button("Analyze", id="prompt-analyze"),
                ],
                className="controls",
            ),
            dcc.Loading(html.Div(id="prompt-analysis")),
            html.H3("Steer"),
            dcc.Checklist(
                id="steer-select", options=[{"label": f" {f}", "value": f} for f in features], value=list(features)
            ),
            html.Div(
                [
                    dcc.Dropdown(id="steer-mode", options=["mul", "add", "clamp"], value="mul", clearable=False,
                                 style={"width": "7em"}),
                    html.Label(["value ", dcc.Input(id="steer-value", type="number", value=-1.0, step="any")]),
                    html.Label(["positions ", dcc.Input(id="steer-positions", value="all")]),
                    dcc.Checklist(id="steer-generated", options=[{"label": " generated tokens too", "value": "yes"}],
                                  value=["yes"]),
                    html.Button("Steer each", id="steer-go"),
                ],
                className="controls",
            ),
            dcc.Loading(html.Div(id="steer-results")),
        ]
    )  # fmt: skip


def analysis_view(ws: Workspace, prompt: str, k: int, answer_context: bool, word: str) -> tuple[html.Div, list[str]]:
    """The analysis (written to the graph) and the features offered for steering."""
    result = ws.analyze(prompt, k=k, answer_context=answer_context)
    ids = {(f.layer, f.index): ws.id(f.layer, f.index) for t in result.positions for f in t.features}
    rows = [
        [
            t.position,
            repr(t.token),
            html.Span(
                [html.Span([feature_link(ids[(f.layer, f.index)]), f" {f.activation:.2f}  "]) for f in t.features]
            ),
        ]
        for t in result.positions
    ]
    found = ws.graph.run(
        "prompt_features", prompt=result.prompt_id, dictionary=ws.graph.dictionary, word=word.strip(), k=20
    )
    view = html.Div(
        [
            html.P(f"analyzed: {result.prompt!r} ({result.n_active} activations written to the graph)"),
            table(["position", "token", "features (activation)"], rows, id="analysis-table"),
            html.P(
                f"{len(found)} features on this prompt"
                + (f" that look like {word.strip()!r} (top unembeds or example peaks)" if word.strip() else "")
                + " are offered below, strongest first."
            ),
        ]
    )
    return view, [r["id"] for r in found]


def steering_view(ws: Workspace, ids: Sequence[str], prompt: str, mode: str, value: float, positions: str,
                  on_generated: bool) -> html.Div:  # fmt: skip
    from graphkit.steering import Positions

    results = ws.steer_features(
        [ws.graph.resolve(i) for i in ids], prompt, mode, value,  # type: ignore[arg-type]
        positions=Positions.parse(positions), on_generated=on_generated,
    )  # fmt: skip
    first = results[0]
    rows = [
        [
            html.Span([feature_link(ws.id(i.layer, i.index)) for i in r.interventions]),
            r.steered_answer,
            html.Span("changed", className="changed") if r.changed else "same",
            f"{r.prob_before:.3f} → {r.prob_after:.3f}",
            r.steered,
        ]
        for r in results
    ]
    return html.Div(
        [
            html.P(f"baseline: {first.baseline!r} → answer {first.baseline_answer!r}"),
            table(["feature", "steered answer", "", "p(answer) before → after", "steered continuation"], rows,
                  id="steer-table"),
            html.P(f"{len(results)} checks written to the graph ({mode} {value:+g}, positions {positions}).",
                   className="muted"),
        ]
    )  # fmt: skip


# -- cypher ---------------------------------------------------------------------------------
def read_queries() -> list[str]:
    """The named queries that are reads and run on every store (the presets)."""
    names = []
    for name in cypher_names():
        if query_stores(name) != frozenset(DIALECT):
            continue
        try:
            check_read_only(cypher(name))
        except GraphkitError:
            continue
        names.append(name)
    return names


def cypher_page() -> html.Div:
    return html.Div(
        [
            html.H2("Cypher (read-only)"),
            dcc.Dropdown(id="cypher-preset", options=read_queries(), placeholder="a named query from cypher/"),
            dcc.Textarea(id="cypher-text", style={"width": "100%", "height": "10em"}),
            html.Label("parameters, one key=value per line (feature ids in id/ids may be LAYER/INDEX)"),
            dcc.Textarea(id="cypher-params", style={"width": "100%", "height": "4em"}),
            html.Button("Run", id="cypher-run"),
            html.Div(id="cypher-results"),
        ]
    )


def cypher_results(g: FeatureGraph, statement: str, params: str) -> html.Div:
    from graphkit.text import parse_param

    values = dict(parse_param(line.strip()) for line in params.splitlines() if line.strip())
    if any(k in values for k in ("id", "ids")):
        values = g.full_ids(values)
    rows = g.store.read(statement, values)
    if not rows:
        return html.Div("no rows", className="muted")
    cols = list(rows[0])
    shown = [[_cell(r.get(c)) for c in cols] for r in rows[:MAX_ROWS]]
    more = f" (first {MAX_ROWS} shown)" if len(rows) > MAX_ROWS else ""
    return html.Div([html.P(f"{len(rows)} rows{more}"), table(cols, shown, id="cypher-table")])


def _cell(v: Any) -> Any:
    if isinstance(v, str) and v.count("/") == 2 and v.split("/")[1].isdigit():
        return feature_link(v)
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


# -- the app --------------------------------------------------------------------------------
def _query(search: str | None) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}


def _int(text: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(text))) if text is not None else default
    except ValueError:
        return default


def make_app(backend: Backend) -> Dash:
    app = Dash(__name__, title="graphkit", suppress_callback_exceptions=True, update_title="")
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    app.layout = html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            html.Nav(
                [
                    dcc.Link("Search", href="/"),
                    dcc.Link("Prompt", href="/prompt"),
                    dcc.Link("Cypher", href="/cypher"),
                    html.Span(f"{backend.dictionary} @ {backend.shown}", className="muted"),
                ]
            ),
            html.Main(id="page"),
        ]
    )

    def guarded(render: Callable[[], Any]) -> Any:
        try:
            return render()
        except USER_ERRORS as e:
            return error(e)

    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("url", "search"))
    def route(path: str | None, search: str | None) -> Any:
        q = _query(search)
        page = (path or "/").strip("/")

        def render() -> Any:
            if page == "feature":
                with backend.graph() as g:
                    return feature_page(g, q.get("id", ""), q.get("sort", "twera"))
            if page == "neighbourhood":
                with backend.graph() as g:
                    return neighbourhood_page(
                        g, q.get("id", ""), _int(q.get("hops"), 2, 1, 4), _int(q.get("k"), 5, 1, 50),
                        q.get("sign", "any"), q.get("direction", "down"),
                    )  # fmt: skip
            if page == "prompt":
                return prompt_page([f for f in q.get("features", "").split(",") if f])
            if page == "cypher":
                return cypher_page()
            if page == "direction":
                with backend.graph() as g:
                    return direction_page(g, q.get("name", ""))
            return search_page(q.get("q", ""), q.get("by", "unembed"))

        return guarded(render)

    @app.callback(
        Output("search-results", "children"),
        Input("search-go", "n_clicks"),
        Input("search-text", "value"),
        State("search-by", "value"),
    )
    def do_search(_clicks: int | None, text: str | None, by: str) -> Any:
        def render() -> Any:
            with backend.graph() as g:
                if by == "direction":
                    return direction_results(g, text or "")
                return search_results(search(g, by, text or "")) if (text or "").strip() else ""

        return guarded(render)

    @app.callback(
        Output("url", "search", allow_duplicate=True),
        Input("nb-go", "n_clicks"),
        State("nb-root", "data"),
        State("nb-hops", "value"),
        State("nb-k", "value"),
        State("nb-sign", "value"),
        State("nb-direction", "value"),
        prevent_initial_call=True,
    )
    def redraw(_clicks: int | None, root: str, hops: int, k: int, sign: str, direction: str) -> str:
        return "?" + urlencode({"id": root, "hops": hops or 2, "k": k or 5, "sign": sign, "direction": direction})

    @app.callback(
        Output("url", "href", allow_duplicate=True), Input("nb-graph", "clickData"), prevent_initial_call=True
    )
    def open_node(click: dict[str, Any] | None) -> Any:
        points = (click or {}).get("points") or []
        node = points[0].get("customdata") if points else None
        return href("feature", id=node) if isinstance(node, str) else no_update

    @app.callback(
        Output("prompt-analysis", "children"),
        Output("steer-select", "options"),
        Output("steer-select", "value"),
        Input("prompt-analyze", "n_clicks"),
        State("prompt-text", "value"),
        State("prompt-context", "value"),
        State("prompt-word", "value"),
        State("prompt-k", "value"),
        State("steer-select", "options"),
        State("steer-select", "value"),
        prevent_initial_call=True,
    )
    def analyze(_c: int, prompt: str | None, context: list[str], word: str | None, k: int | None,
                options: list[dict[str, str]], chosen: list[str]) -> Any:  # fmt: skip
        if not (prompt or "").strip():
            return error(ValueError("type a prompt first")), no_update, no_update
        try:
            with backend.workspace() as ws:
                view, found = analysis_view(ws, prompt or "", k or 8, bool(context), word or "")
        except USER_ERRORS as e:
            return error(e), no_update, no_update
        kept = [o["value"] for o in options if o["value"] in chosen]  # features opened from a link stay
        ids = list(dict.fromkeys(kept + found))
        selected = kept + (found if (word or "").strip() else [])
        return view, [{"label": f" {i}", "value": i} for i in ids], selected

    @app.callback(
        Output("steer-results", "children"),
        Input("steer-go", "n_clicks"),
        State("steer-select", "value"),
        State("prompt-text", "value"),
        State("steer-mode", "value"),
        State("steer-value", "value"),
        State("steer-positions", "value"),
        State("steer-generated", "value"),
        prevent_initial_call=True,
    )
    def do_steer(_c: int, ids: list[str], prompt: str | None, mode: str, value: float | None, positions: str | None,
                 generated: list[str]) -> Any:  # fmt: skip
        if not ids:
            return error(ValueError("select at least one feature"))
        if not (prompt or "").strip():
            return error(ValueError("type the prompt to steer first"))

        def render() -> Any:
            with backend.workspace() as ws:
                return steering_view(
                    ws, ids, prompt or "", mode, -1.0 if value is None else float(value), positions or "all",
                    bool(generated),
                )  # fmt: skip

        return guarded(render)

    @app.callback(Output("cypher-text", "value"), Input("cypher-preset", "value"), prevent_initial_call=True)
    def preset(name: str | None) -> Any:
        return cypher(name) if name else no_update

    @app.callback(
        Output("cypher-results", "children"),
        Input("cypher-run", "n_clicks"),
        State("cypher-text", "value"),
        State("cypher-params", "value"),
        prevent_initial_call=True,
    )
    def run_cypher(_c: int, statement: str | None, params: str | None) -> Any:
        def render() -> Any:
            with backend.graph() as g:
                return cypher_results(g, statement or "", params or "")

        return guarded(render)

    return app


def serve(store: str, dictionary: str | None = None, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Run the explorer until interrupted."""
    app = make_app(Backend(store, dictionary))
    app.run(host=host, port=port, debug=False)

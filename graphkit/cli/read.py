"""Commands that read the graph: neighbourhoods, motor features, queries, views, the explorer."""

from __future__ import annotations

import json

import click

from graphkit.cli.options import AS_JSON, DEVICE, DICTIONARY, PARAMS, STORE, by, graph, option, stack
from graphkit.graph import FeatureGraph
from graphkit.report import view_feature

HOP = FeatureGraph.downstream


def _neighbour_command(direction: str, help: str) -> click.Command:
    @click.command("downstream" if direction == "down" else "upstream", help=help)
    @click.argument("feature")
    @stack(STORE, DICTIONARY)
    @option(HOP, "k", help="Edges per feature per hop.")
    @click.option("--hops", default=1, show_default=True, help="Hops to walk (1: a table with each edge's weights).")
    @option(HOP, "sign")
    @by("The measure whose |value| ranks the kept edges (kept by |TWERA| at collect).")
    @AS_JSON
    def command(feature: str, store: str, dictionary: str | None, k: int, hops: int, sign: str, by: str,
                as_json: bool) -> None:  # fmt: skip
        from graphkit import text
        from graphkit.graph import neighbourhood_json

        g = graph(store, dictionary)
        layer, index = g.resolve(feature)
        if hops == 1 and not as_json:
            found = (g.downstream if direction == "down" else g.upstream)(layer, index, k=k, sign=sign, by=by)  # type: ignore[arg-type]
            click.echo(text.edges(g.id(layer, index), direction, found))
            return
        nb = g.neighbourhood(layer, index, hops=hops, k=k, direction=direction, sign=sign, by=by)  # type: ignore[arg-type]
        if as_json:  # one shape for every --hops: {root, nodes, edges}, full ids
            click.echo(json.dumps(neighbourhood_json(g.id(layer, index), nb), indent=2))
        else:
            click.echo(text.neighbourhood(nb))

    return command


downstream = _neighbour_command("down", "Features that FEATURE (LAYER/INDEX) feeds, by |TWERA|.")
upstream = _neighbour_command("up", "Features that feed FEATURE (LAYER/INDEX), by |TWERA|.")


@click.command()
@click.argument("feature", required=False)
@stack(STORE, DICTIONARY)
@option(FeatureGraph.motor_features, "word", help="Only motor features of this word.")
@option(FeatureGraph.motor_paths, "k")
@AS_JSON
def motor(feature: str | None, store: str, dictionary: str | None, word: str, k: int, as_json: bool) -> None:
    """Motor ("say X") features; with FEATURE, the strongest paths from it to them.

    A motor feature's logit lens singles out one word: the word's z-score over the vocabulary is
    ≥ 6 and ≥ 2 above the next word's (`loaders.motor`). `score` is that margin (z of the word −
    z of the next); for paths it is the product of normalized TWERA along the path.
    """
    from graphkit import text

    g = graph(store, dictionary)
    if feature is None:
        found: list = g.motor_features(word)[: k or None]
    else:
        found = g.motor_paths(*g.resolve(feature), k=k)
    click.echo(text.as_json(found) if as_json else text.motor(found, reachable=feature is not None))


def _read_and_print(store: str, statement: str, params: tuple[str, ...], as_json: bool, dictionary: str | None) -> None:
    from graphkit import text
    from loaders.graph.store import open_store

    s = open_store(store, read_only=True)
    values = dict(text.parse_param(p) for p in params)
    if any(k in values for k in ("id", "ids")):  # 1/517 means the store's dictionary's feature
        values = FeatureGraph(s, dictionary).full_ids(values)
    rows = s.read(statement, values)
    click.echo(text.as_json(rows) if as_json else text.rows(rows))


@click.command()
@click.argument("name")
@stack(STORE, DICTIONARY, PARAMS, AS_JSON)
def query(name: str, store: str, dictionary: str | None, params: tuple[str, ...], as_json: bool) -> None:
    """Run cypher/NAME.cypher with parameters (feature ids in id/ids may be LAYER/INDEX)."""
    from loaders.graph.store import cypher

    _read_and_print(store, cypher(name), params, as_json, dictionary)


@click.command("cypher")
@click.argument("statement")
@stack(STORE, DICTIONARY, PARAMS, AS_JSON)
def cypher_cmd(statement: str, store: str, dictionary: str | None, params: tuple[str, ...], as_json: bool) -> None:
    """Run an ad-hoc read-only Cypher STATEMENT, parameters bound as $key (writes are refused)."""
    _read_and_print(store, statement, params, as_json, dictionary)


@click.command()
@click.argument("feature")
@stack(STORE, DICTIONARY)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@option(view_feature, "hops")
@option(view_feature, "k", help="Edges per feature per hop.")
def view(feature: str, store: str, dictionary: str | None, out: str, hops: int, k: int) -> None:
    """Write FEATURE's neighbourhood and feature card as a standalone HTML page."""
    from pathlib import Path

    g = graph(store, dictionary)
    click.echo(view_feature(g, *g.resolve(feature), Path(out), hops=hops, k=k))


@click.command()
@stack(STORE, DICTIONARY, DEVICE)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on (loopback: this machine only)."
)
@click.option("--port", default=8050, show_default=True)
def serve(store: str, dictionary: str | None, device: str, host: str, port: int) -> None:
    """Explore the graph in a browser: search, feature pages, neighbourhoods, prompts and steering, Cypher."""
    from graphkit.explorer import Backend, make_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: listening on {host}: anyone who reaches it can run steering checks that write to the store",
            err=True,
        )
    app = make_app(Backend(store, dictionary, device=device))  # the model loads on the first prompt
    click.echo(
        f"graphkit explorer on http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/ (Ctrl-C stops it)"
    )
    app.run(host=host, port=port, debug=False)


COMMANDS = [downstream, upstream, motor, query, cypher_cmd, view, serve]

"""The ``graphkit`` command line: thin click commands over library functions.

Errors: every command runs under `_Main.invoke`, the one handler. A user error
(`loaders.errors.GraphkitError`, a bad value, a missing or unreadable file, a Neo4j error)
prints one line and exits 1; Ctrl-C exits 130. ``graphkit --debug`` re-raises with the traceback.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from loaders.errors import GraphkitError
from loaders.names import zoo_list, zoo_path

if TYPE_CHECKING:
    from graphkit.graph import FeatureGraph


def _user_error(e: BaseException) -> bool:
    """Errors a user causes and can fix; anything else is a bug and keeps its traceback."""
    return isinstance(e, GraphkitError | ValueError | OSError) or type(e).__module__.startswith("neo4j")


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo(
                "interrupted. Writes are transactional: what finished is kept; rerun the same command to resume.",
                err=True,
            )
            ctx.exit(130)
        except Exception as e:
            if debug or not _user_error(e) or isinstance(e, click.ClickException):
                raise
            where = "Neo4j: " if type(e).__module__.startswith("neo4j") else ""
            raise click.ClickException(f"{where}{e}\n(run `graphkit --debug …` for the traceback)") from e


@click.group(cls=_Main)
@click.version_option(package_name="graphkit")
@click.option("--debug", is_flag=True, envvar="GRAPHKIT_DEBUG", help="Show tracebacks of user errors too.")
def main(debug: bool) -> None:
    """graphkit: dictionary features as a graph, ranked by TWERA."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


@main.group()
def zoo() -> None:
    """The bundled model and dictionaries."""


@zoo.command("list")
def zoo_list_cmd() -> None:
    """List the bundled artifacts."""
    for name, desc, path in zoo_list():
        state = "" if path.is_dir() else "  (not built)"
        click.echo(f"{name:10s} {desc}{state}")


@zoo.command("path")
@click.argument("name")
def zoo_path_cmd(name: str) -> None:
    """Print the directory of bundled artifact NAME."""
    try:
        click.echo(zoo_path(name))
    except (KeyError, FileNotFoundError) as e:
        raise click.ClickException(str(e.args[0])) from e


@zoo.command("corpus")
@click.option("--out", default="corpus", show_default=True, type=click.Path(file_okay=False))
def zoo_corpus_cmd(out: str) -> None:
    """Write the bundled model's corpora (no download): OUT/heldout.jsonl is the held-out analysis
    corpus the demo collects over (~100k tokens), OUT/questions.jsonl the held-out questions."""
    from pathlib import Path

    from loaders.zoo.corpus import build_corpus

    manifest = build_corpus(Path(out))
    for name, n in manifest["records"].items():  # type: ignore[attr-defined]
        click.echo(f"{Path(out) / name}: {n} records")


@zoo.command("build")
@click.option("--work", default="build/zoo", type=click.Path(), help="Corpus, tokenizer and logs.")
@click.option("--force", is_flag=True, help="Rebuild stages whose output exists.")
def zoo_build_cmd(work: str, force: bool) -> None:
    """Rebuild corpus, tokenizer, model and dictionaries from scratch (no download)."""
    from pathlib import Path

    from loaders.zoo.build import build

    build(Path(work), force=force)


@main.command()
@click.option("--model", "model_name", required=True, help="Zoo name, directory or Hub id.")
@click.option("--dictionary", required=True, help="Zoo name, directory or Hub id.")
@click.option(
    "--corpus",
    required=True,
    help="Text (one document per line), JSONL with 'text', or Parquet with a 'text' column: "
    "a file, a directory of shards, or a quoted glob.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--top-k", type=int, default=None, help="Edges kept per feature, each direction.")
@click.option("--max-tokens", type=int, default=None, help="Stop after the chunk that reaches this many tokens.")
@click.option("--context", type=int, default=None, help="Window length incl. BOS (default: the model's).")
@click.option("--batch-tokens", type=int, default=None, help="Padded tokens per model batch.")
@click.option("--window", type=int, default=None, help="Tokens kept each side of a top example's peak (16).")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None, help="The model's dtype.")
@click.option("--memory-budget", default=None, help="Bytes for pair blocks per pass, e.g. 16GB (default: half).")
@click.option("--exact-pairs", is_flag=True, help="Keep every co-active pair (small dictionaries).")
@click.option("--ray", "ray_address", default=None, help="Run on Ray: 'auto', 'local' or a cluster address.")
@click.option("--workers", type=int, default=None, help="Ray workers (one per GPU, or per CPU slot).")
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--overwrite", is_flag=True, help="Replace a run directory made from other inputs.")
def collect(
    model_name: str,
    dictionary: str,
    corpus: str,
    out: str,
    top_k: int | None,
    max_tokens: int | None,
    context: int | None,
    batch_tokens: int | None,
    window: int | None,
    dtype: str | None,
    memory_budget: str | None,
    exact_pairs: bool,
    ray_address: str | None,
    workers: int | None,
    device: str | None,
    overwrite: bool,
) -> None:
    """Compute feature statistics, top examples, unembeds and TWERA edges into a run directory."""
    from pathlib import Path

    from loaders.collect import CollectConfig
    from loaders.collect import collect as run_collect

    cfg = CollectConfig.from_options(
        top_k=top_k, max_tokens=max_tokens, context=context, batch_tokens=batch_tokens, window=window,
        dtype=dtype, memory_budget=memory_budget, exact_pairs=exact_pairs or None, ray=ray_address,
        workers=workers, device=device,
    )  # fmt: skip
    run = run_collect(model_name, dictionary, corpus, Path(out), cfg, overwrite=overwrite)
    m = json.loads(run.manifest.read_text())
    click.echo(
        f"{run.root}: {m['tokens_seen']} tokens in {m['windows_seen']} windows from {m['documents_seen']} documents"
    )
    click.echo("\n".join(f"  {p}" for p in (run.features, run.examples, run.connections)))


STORE = click.option(
    "--store",
    envvar="GRAPHKIT_STORE",
    required=True,
    help="Embedded store directory or bolt:// / neo4j:// URI (env GRAPHKIT_STORE).",
)
DICTIONARY = click.option("--dictionary", default=None, help="Dictionary in the store (needed when it holds several).")


def _options(*decorators: Any) -> Any:
    """Several click decorators as one (applied in the order written)."""

    def apply(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def _selection(verb: str) -> Any:
    """FEATURES, or --select QUERY with its --param values: what a command acts on."""
    return _options(
        click.argument("features", nargs=-1),
        STORE,
        DICTIONARY,
        click.option("--select", "select", default=None, help=f"A query of cypher/ whose rows (column id) are {verb}."),
        click.option("--param", "params", multiple=True, help="key=value for --select."),
    )


def _by(help: str) -> Any:
    """--by: an edge measure (`loaders.graph.schema.MEASURES`)."""
    from loaders.graph.schema import MEASURES

    return click.option("--by", type=click.Choice(MEASURES), default="twera", show_default=True, help=help)


STEERING = _options(
    click.option("--prompt", required=True),
    click.option("--mode", type=click.Choice(["mul", "add", "clamp"]), default="mul", show_default=True),
    click.option("--value", type=float, default=-1.0, show_default=True, help="c (mul), α (add) or v (clamp)."),
    click.option("--positions", default="all", show_default=True, help="all | last | match:WORD | 3,5"),
    click.option(
        "--on-generated/--prompt-only",
        default=True,
        show_default=True,
        help="Steer the generated tokens too (as the research note and the benchmark do), or only the prompt's.",
    ),
    click.option("--max-new-tokens", default=12, show_default=True),
)
"""How a steering check runs (`graphkit.steering.steer`)."""

WRITER = _options(
    click.option("--provider", type=click.Choice(["anthropic", "openai"]), default="anthropic", show_default=True),
    click.option("--judge-model", default="claude-opus-4-7", show_default=True, help="The LLM that answers."),
    click.option("--base-url", default=None, help="Endpoint (default: the provider's; any OpenAI-compatible server)."),
)
"""The LLM behind the judge and `describe` (`graphkit.bench.judge.JudgeConfig`)."""


def _graph(store: str, dictionary: str | None) -> FeatureGraph:
    from graphkit.graph import FeatureGraph
    from loaders.graph.store import open_store

    return FeatureGraph(open_store(store, read_only=True), dictionary)


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--store", default=None, help="Directory or bolt:// URI (default RUN/graph).")
@click.option("--name", default=None, help="Dictionary name in the store (default: the run's dictionary).")
@click.option("--replace", is_flag=True, help="Replace the same-named dictionary loaded from another run.")
@click.option("--batch-size", default=10_000, show_default=True, help="Rows per transaction / COPY chunk.")
@click.option("--bulk", is_flag=True, help="Into a fresh local Neo4j with its offline importer (fast).")
@click.option("--neo4j-dir", default=None, help="The local Neo4j's directory for --bulk (as `graphkit neo4j`).")
def load(
    run: str, store: str | None, name: str | None, replace: bool, batch_size: int, bulk: bool, neo4j_dir: str | None
) -> None:
    """Write a run directory (from `graphkit collect`) into a graph store."""
    from pathlib import Path

    from loaders.graph.load import load_run
    from loaders.graph.store import open_store

    if bulk:
        from graphkit import neo4j_local

        if store is not None or replace:
            raise click.UsageError(
                "--bulk imports into the local Neo4j of --neo4j-dir; it takes no --store or --replace"
            )
        r = neo4j_local.bulk_load(Path(run), Path(neo4j_dir or neo4j_local.DEFAULT_DIR), name=name)
        rate = r.edges / max(r.import_seconds, 1e-9)
        click.echo(
            f"imported {r.dictionary}: {r.features} features, {r.edges} edges ({r.rows} rows) in "
            f"{r.import_seconds:.1f} s ({rate:,.0f} edges/s) → {r.uri}"
        )
        return
    target = open_store(store or Path(run) / "graph")
    result = load_run(Path(run), target, name=name, replace=replace, batch_size=batch_size)
    verb = "already held" if result.skipped else "loaded"
    click.echo(f"{verb} {result.dictionary}: {result.features} features, {result.edges} edges → {target.spec}")


@main.command()
@click.argument("dictionary")
@click.option("--store", envvar="GRAPHKIT_STORE", required=True, help="Embedded store directory or bolt:// URI.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def drop(dictionary: str, store: str, yes: bool) -> None:
    """Remove DICTIONARY (its features, edges, activations and steering links) from a store."""
    from loaders.graph.load import drop_dictionary
    from loaders.graph.store import open_store

    s = open_store(store, must_exist=True)
    if not yes:
        click.confirm(f"remove dictionary {dictionary!r} and everything attached to it from {s.spec}?", abort=True)
    n = drop_dictionary(s, dictionary)
    click.echo(f"dropped {dictionary}: {n} features")


def _neighbours(
    direction: str, feature: str, store: str, dictionary: str | None, k: int, hops: int, sign: str, by: str,
    as_json: bool,
) -> None:  # fmt: skip
    from graphkit import text
    from graphkit.graph import neighbourhood_json

    g = _graph(store, dictionary)
    layer, index = g.resolve(feature)
    if hops == 1 and not as_json:  # one hop as a table with each edge's weights
        found = (g.downstream if direction == "down" else g.upstream)(layer, index, k=k, sign=sign, by=by)  # type: ignore[arg-type]
        click.echo(text.edges(g.id(layer, index), direction, found))
        return
    nb = g.neighbourhood(layer, index, hops=hops, k=k, direction=direction, sign=sign, by=by)  # type: ignore[arg-type]
    if as_json:  # one shape for every --hops: {root, nodes, edges}, full ids
        click.echo(json.dumps(neighbourhood_json(g.id(layer, index), nb), indent=2))
    else:
        click.echo(text.neighbourhood(nb))


def _neighbour_command(direction: str):
    @click.argument("feature")
    @STORE
    @DICTIONARY
    @click.option("--k", default=10, show_default=True, help="Edges per feature per hop.")
    @click.option("--hops", default=1, show_default=True, help="Hops to walk.")
    @click.option("--sign", type=click.Choice(["any", "positive", "negative"]), default="any", show_default=True)
    @_by("The measure whose |value| ranks the kept edges (kept by |TWERA| at collect).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def command(
        feature: str, store: str, dictionary: str | None, k: int, hops: int, sign: str, by: str, as_json: bool
    ) -> None:
        _neighbours(direction, feature, store, dictionary, k, hops, sign, by, as_json)

    return command


main.command("downstream", help="Features that FEATURE (LAYER/INDEX) feeds, by |TWERA|.")(_neighbour_command("down"))
main.command("upstream", help="Features that feed FEATURE (LAYER/INDEX), by |TWERA|.")(_neighbour_command("up"))


@main.command()
@click.argument("feature", required=False)
@STORE
@DICTIONARY
@click.option("--word", default="", help="Only motor features of this word.")
@click.option("--k", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def motor(feature: str | None, store: str, dictionary: str | None, word: str, k: int, as_json: bool) -> None:
    """Motor ("say X") features; with FEATURE, the strongest paths from it to them.

    A motor feature's logit lens singles out one word: the word's z-score over the vocabulary is
    ≥ 6 and ≥ 2 above the next word's (`loaders.motor`). `score` is that margin (z of the word −
    z of the next); for paths it is the product of normalized TWERA along the path.
    """
    from graphkit import text

    g = _graph(store, dictionary)
    if feature is None:
        found: list = g.motor_features(word)
        found = found[:k] if k else found
    else:
        found = g.motor_paths(*g.resolve(feature), k=k)
    click.echo(text.as_json(found) if as_json else text.motor(found, reachable=feature is not None))


def _read_and_print(
    store: str, statement: str, params: tuple[str, ...], as_json: bool, dictionary: str | None = None
) -> None:
    from graphkit import text
    from graphkit.graph import FeatureGraph
    from loaders.graph.store import open_store

    s = open_store(store, read_only=True)
    values = dict(text.parse_param(p) for p in params)
    if any(k in values for k in ("id", "ids")):  # 1/517 means the store's dictionary's feature
        values = FeatureGraph(s, dictionary).full_ids(values)
    rows = s.read(statement, values)
    click.echo(text.as_json(rows) if as_json else text.rows(rows))


@main.command()
@click.argument("name")
@STORE
@DICTIONARY
@click.option("--param", "params", multiple=True, help="key=value (ints, floats, JSON lists, else strings).")
@click.option("--json", "as_json", is_flag=True)
def query(name: str, store: str, dictionary: str | None, params: tuple[str, ...], as_json: bool) -> None:
    """Run cypher/NAME.cypher with parameters (feature ids in id/ids may be LAYER/INDEX)."""
    from loaders.graph.store import cypher

    _read_and_print(store, cypher(name), params, as_json, dictionary)


@main.command("cypher")
@click.argument("statement")
@STORE
@DICTIONARY
@click.option("--param", "params", multiple=True, help="key=value, bound as $key.")
@click.option("--json", "as_json", is_flag=True)
def cypher_cmd(statement: str, store: str, dictionary: str | None, params: tuple[str, ...], as_json: bool) -> None:
    """Run an ad-hoc read-only Cypher STATEMENT (writes are refused)."""
    _read_and_print(store, statement, params, as_json, dictionary)


@main.group()
def neo4j() -> None:
    """A local Neo4j 5 Community server without Docker (Java 17 + Maven Central)."""


NEO4J_DIR = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory (default ~/.graphkit/neo4j or GRAPHKIT_NEO4J_DIR).",
)


@neo4j.command("start")
@NEO4J_DIR
@click.option("--port", default=7687, show_default=True)
def neo4j_start(directory: str | None, port: int) -> None:
    """Start the server on 127.0.0.1 and print its Bolt URI once it answers."""
    from pathlib import Path

    from graphkit import neo4j_local

    where = Path(directory) if directory else neo4j_local.DEFAULT_DIR
    info = neo4j_local.start(where, port=port)
    click.echo(
        f"connect as user neo4j with NEO4J_PASSWORD, or the password in {info.directory / 'password'} "
        "(graphkit finds it for this URI); for example: graphkit load RUN --store URI",
        err=True,
    )
    click.echo(info.uri)


@neo4j.command("stop")
@NEO4J_DIR
def neo4j_stop(directory: str | None) -> None:
    """Stop the server."""
    from pathlib import Path

    from graphkit import neo4j_local

    stopped = neo4j_local.stop(Path(directory) if directory else neo4j_local.DEFAULT_DIR)
    click.echo("stopped" if stopped else "not running")


@neo4j.command("status")
@NEO4J_DIR
def neo4j_status(directory: str | None) -> None:
    """Print the Bolt URI of the running server, or 'not running'."""
    from pathlib import Path

    from graphkit import neo4j_local

    info = neo4j_local.status(Path(directory) if directory else neo4j_local.DEFAULT_DIR)
    click.echo(f"running {info.uri} (pid {info.pid})" if info else "not running")


@main.command()
@click.argument("prompt")
@STORE
@DICTIONARY
@click.option("--k", type=int, default=None, help="Features shown per token (default 8).")
@click.option(
    "--answer-context", is_flag=True, help="Analyze the prompt plus the model's own continuation up to its answer."
)
@click.option("--json", "as_json", is_flag=True)
def analyze(
    prompt: str, store: str, dictionary: str | None, k: int | None, answer_context: bool, as_json: bool
) -> None:
    """List the features active at each token of PROMPT and write them into the graph."""
    from graphkit import text
    from graphkit.checks import ANALYZE_K, Workspace

    ws = Workspace.open(store, dictionary)
    result = ws.analyze(prompt, k=ANALYZE_K if k is None else k, answer_context=answer_context)
    ids = {(f.layer, f.index): ws.id(f.layer, f.index) for t in result.positions for f in t.features}
    click.echo(
        text.analysis_json(result, ids) if as_json else text.analysis(result, ids, ws.top_tokens(list(ids.values())))
    )


@main.command()
@_selection("steered")
@STEERING
@click.option("--together", is_flag=True, help="One check steering all features at once.")
@click.option("--json", "as_json", is_flag=True)
def steer(
    features: tuple[str, ...],
    store: str,
    dictionary: str | None,
    select: str | None,
    params: tuple[str, ...],
    prompt: str,
    mode: str,
    value: float,
    positions: str,
    together: bool,
    on_generated: bool,
    max_new_tokens: int,
    as_json: bool,
) -> None:
    """Steer FEATURES (ids) or what --select returns; print and record the outcomes."""
    from graphkit import text
    from graphkit.checks import Workspace
    from graphkit.steering import Positions

    if bool(features) == bool(select):
        raise click.UsageError("give FEATURES or --select QUERY (one of them)")
    ws = Workspace.open(store, dictionary)
    chosen = (
        ws.select(select, dict(text.parse_param(p) for p in params))
        if select
        else [ws.graph.resolve(f) for f in features]
    )
    results = ws.steer_features(
        chosen, prompt, mode, value, positions=Positions.parse(positions), together=together,  # type: ignore[arg-type]
        on_generated=on_generated, max_new_tokens=max_new_tokens,
    )  # fmt: skip
    ids = {(i.layer, i.index): ws.id(i.layer, i.index) for r in results for i in r.interventions}
    click.echo(text.steering_json(results, ids) if as_json else text.steering(results, ids, ws.store.spec))


@main.command()
@click.argument("feature")
@STORE
@DICTIONARY
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--hops", default=2, show_default=True)
@click.option("--k", default=5, show_default=True, help="Edges per feature per hop.")
def view(feature: str, store: str, dictionary: str | None, out: str, hops: int, k: int) -> None:
    """Write FEATURE's neighbourhood and feature card as a standalone HTML page."""
    from pathlib import Path

    from graphkit.report import view_feature

    g = _graph(store, dictionary)
    path = view_feature(g, *g.resolve(feature), Path(out), hops=hops, k=k)
    click.echo(path)


@main.command()
@_selection("described")
@WRITER
@click.option("--dry-run", is_flag=True, help="Print the exact prompts as JSON lines; call nothing, store nothing.")
def describe(
    features: tuple[str, ...], store: str, dictionary: str | None, select: str | None, params: tuple[str, ...],
    provider: str, judge_model: str, base_url: str | None, dry_run: bool,
) -> None:  # fmt: skip
    """Describe FEATURES (or what --select returns) in one sentence each, from their examples,
    unembeds and TWERA downstream; store it on the Feature node."""
    import dataclasses

    from graphkit import text
    from graphkit.bench.judge import JudgeConfig
    from graphkit.describe import describe_features
    from graphkit.graph import FeatureGraph
    from loaders.graph.store import open_store

    if bool(features) == bool(select):
        raise click.UsageError("give FEATURES or --select QUERY (one of them)")
    s = open_store(store, read_only=dry_run, must_exist=True)
    if not dry_run:
        s.ensure_schema()  # stores made before `description` existed (schema.ADDED)
    g = FeatureGraph(s, dictionary)
    chosen = g.select(select, dict(text.parse_param(p) for p in params)) if select else [g.resolve(f) for f in features]
    judge = JudgeConfig(provider=provider, model=judge_model, base_url=base_url)  # type: ignore[arg-type]
    for d in describe_features(s, chosen, g.dictionary, judge, dry_run=dry_run):
        if dry_run:
            click.echo(json.dumps(dataclasses.asdict(d)))
        else:
            click.echo(
                f"{d.id}: {d.text}" if d.text else f"{d.id}: no description (the replies had no DESCRIPTION line)"
            )


@main.command()
@STORE
@DICTIONARY
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on (loopback: this machine only)."
)
@click.option("--port", default=8050, show_default=True)
def serve(store: str, dictionary: str | None, host: str, port: int) -> None:
    """Explore the graph in a browser: search, feature pages, neighbourhoods, prompts and steering, Cypher."""
    from graphkit.explorer import Backend, make_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: listening on {host}: anyone who reaches it can run steering checks that write to the store",
            err=True,
        )
    app = make_app(Backend(store, dictionary))
    click.echo(
        f"graphkit explorer on http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/ (Ctrl-C stops it)"
    )
    app.run(host=host, port=port, debug=False)


@main.group()
def direction() -> None:
    """Any residual direction (a probe, a steering vector, a difference of means) as a node."""


@direction.command("add")
@click.argument("name")
@STORE
@DICTIONARY
@click.option(
    "--vector", required=True, type=click.Path(exists=True, dir_okay=False), help="safetensors, d_model values."
)
@click.option("--key", default=None, help="The tensor's name in --vector, when it holds several.")
@click.option("--layer", type=int, required=True, help="It is read at this layer's read site and written there.")
@click.option(
    "--read-vector", default=None, type=click.Path(exists=True, dir_okay=False), help="Default: the unit vector."
)
@click.option("--bias", type=float, default=0.0, show_default=True, help="Activation = max(0, x·read + bias).")
@click.option(
    "--read-site",
    type=click.Choice(["resid_pre", "ln1_normalized", "resid_mid", "ln2_normalized", "mlp_in", "resid_post"]),
    default=None,
    help="Where x is read at --layer (default: the dictionary's read site).",
)
@click.option("--k", type=int, default=10, show_default=True, help="Downstream features printed.")
def direction_add(
    name: str, store: str, dictionary: str | None, vector: str, key: str | None, layer: int,
    read_vector: str | None, bias: float, read_site: str | None, k: int,
) -> None:  # fmt: skip
    """Add NAME: its activation statistics on the run's corpus, top unembeds and TWERA downstream."""
    from pathlib import Path

    from graphkit import text
    from graphkit.checks import Workspace
    from graphkit.directions import add_direction, direction_downstream
    from graphkit.directions import read_vector as read
    from loaders.direction import Direction

    ws = Workspace.open(store, dictionary)
    r = read(Path(read_vector)) if read_vector else None
    result = add_direction(ws, Direction.of(name, layer, read(Path(vector), key), r, bias, read_site))  # type: ignore[arg-type]
    click.echo(
        f"{name}: layer {layer}, active on {result.count} tokens (density {result.density:.4g}, max {result.max:.4g}); "
        f"top unembeds {', '.join(repr(t) for t in result.top_tokens[:6])}"
    )
    click.echo(text.edges(f"direction {name}", "down", direction_downstream(ws.graph, name, k)))


@direction.command("diff-means")
@STORE
@DICTIONARY
@click.option("--positive", required=True, type=click.Path(exists=True, dir_okay=False), help="Prompts, one per line.")
@click.option("--negative", required=True, type=click.Path(exists=True, dir_okay=False), help="Prompts, one per line.")
@click.option("--layer", type=int, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="safetensors file to write.")
def direction_diff_means(
    store: str, dictionary: str | None, positive: str, negative: str, layer: int, out: str
) -> None:
    """Mean read-site activation of the positive prompts minus that of the negative ones."""
    from pathlib import Path

    from safetensors.torch import save_file

    from graphkit.checks import Workspace
    from loaders.direction import diff_means

    def lines(path: str) -> list[str]:
        return [x for x in Path(path).read_text().splitlines() if x.strip()]

    ws = Workspace.open(store, dictionary)
    v = diff_means(ws.model, ws.dictionary, lines(positive), lines(negative), layer)
    save_file({"direction": v.float().contiguous()}, out)
    click.echo(f"{out}: |v| = {float(v.norm()):.4g} at layer {layer} ({ws.dictionary.read_site})")


@direction.command("list")
@STORE
@DICTIONARY
def direction_list(store: str, dictionary: str | None) -> None:
    """The directions of the store's dictionary."""
    from graphkit import text

    g = _graph(store, dictionary)
    click.echo(text.rows(g.run("directions", dictionary=g.dictionary)))


@direction.command("show")
@click.argument("name")
@STORE
@DICTIONARY
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def direction_show(name: str, store: str, dictionary: str | None, k: int, as_json: bool) -> None:
    """NAME's statistics, top unembeds and downstream features."""
    from graphkit import text
    from graphkit.directions import direction_downstream, direction_json, get_direction

    g = _graph(store, dictionary)
    node, down = get_direction(g, name), direction_downstream(g, name, k)
    if as_json:
        click.echo(json.dumps(direction_json(node, down), indent=2))
        return
    click.echo(
        f"{node.id}: layer {node.layer}, density {node.density:.4g}, max {node.max:.4g}; "
        f"top unembeds {', '.join(repr(t) for t in node.top_tokens[:6])}"
    )
    click.echo(text.edges(node.id, "down", down))


@direction.command("steer")
@click.argument("name")
@STORE
@DICTIONARY
@STEERING
@click.option("--json", "as_json", is_flag=True)
def direction_steer(
    name: str, store: str, dictionary: str | None, prompt: str, mode: str, value: float, positions: str,
    on_generated: bool, max_new_tokens: int, as_json: bool,
) -> None:  # fmt: skip
    """Steer NAME as a feature; print and record the outcome."""
    import dataclasses

    from graphkit.checks import Workspace
    from graphkit.directions import steer_direction
    from graphkit.steering import Positions

    ws = Workspace.open(store, dictionary)
    r = steer_direction(
        ws,
        name,
        prompt,
        mode,  # type: ignore[arg-type]
        value,
        Positions.parse(positions),
        max_new_tokens,
        on_generated,  # type: ignore[arg-type]
    )
    if as_json:
        click.echo(json.dumps({k: v for k, v in dataclasses.asdict(r).items() if k != "interventions"}, indent=2))
        return
    verb = "CHANGED" if r.changed else "same"
    click.echo(
        f"{name} ({mode} {value:+g}): {r.baseline_answer!r} → {r.steered_answer!r} {verb}; "
        f"p({r.answer_token!r}) {r.prob_before:.3f} → {r.prob_after:.3f} (recorded in {ws.store.spec})"
    )


@main.group()
def bench() -> None:
    """The look-alike benchmark: which descriptor predicts the feature that steers."""


@bench.command("build")
@click.option("--model", "model_name", default="tiny", show_default=True)
@click.option("--dictionary", default="tiny-clt", show_default=True)
@click.option(
    "--prompts",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSONL of {prompt, answer} (default: the corpus builder's held-out questions).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Groups JSONL to write.")
@click.option(
    "--work", default=None, type=click.Path(file_okay=False), help="Where the run and store go (default OUT.work)."
)
@click.option("--max-prompts", type=int, default=None, help="Prompts to try (all held-out questions: hours).")
@click.option(
    "--run", "run_dir", type=click.Path(exists=True, file_okay=False), default=None, help="Reuse a collected run."
)
@click.option("--mode", type=click.Choice(["mul", "add", "clamp"]), default="mul", show_default=True)
@click.option("--value", type=float, default=-1.0, show_default=True, help="c (mul), α (add: try 5) or v (clamp).")
@click.option(
    "--target-from",
    default=None,
    help="With --mode add: 'make it say X' groups, X another answer of this relation (e.g. color).",
)
def bench_build(
    model_name: str,
    dictionary: str,
    prompts: str | None,
    out: str,
    work: str | None,
    max_prompts: int | None,
    run_dir: str | None,
    mode: str,
    value: float,
    target_from: str | None,
) -> None:
    """Discover look-alike groups (exactly one candidate steers) and save them as JSONL."""
    from pathlib import Path
    from typing import cast

    from graphkit.bench.build import build_benchmark
    from graphkit.bench.groups import BuildConfig
    from graphkit.steering import Mode

    if (mode == "add") != (target_from is not None):
        raise click.UsageError("'make it say X' groups take --mode add with --target-from RELATION, together")
    cfg = BuildConfig(mode=cast(Mode, mode), value=value, max_prompts=max_prompts)
    n = build_benchmark(
        model_name,
        dictionary,
        Path(prompts) if prompts else None,
        Path(out),
        Path(work) if work else Path(out + ".work"),
        cfg,
        run=Path(run_dir) if run_dir else None,
        say=click.echo,
        target_from=target_from,
    )
    click.echo(f"{n} groups → {out}")


@bench.command("run")
@click.argument("groups", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--predictor", required=True, help="random, logit, logit-rank, activation, twera, twera+logit, learned, judge"
)
@click.option(
    "--condition", default="", help="For learned and judge: examples, examples+unembeds, examples+downstream, all"
)
@WRITER
@click.option("--seed", default=0, show_default=True)
@_by("For learned: the measure that ranks and weights the downstream features.")
def bench_run(
    groups: str, predictor: str, condition: str, provider: str, judge_model: str, base_url: str | None, seed: int,
    by: str,
) -> None:  # fmt: skip
    """Score one predictor on GROUPS under the protocol; save the result beside them."""
    from pathlib import Path

    from graphkit.bench import report
    from graphkit.bench.judge import JudgeConfig
    from graphkit.bench.predictors import score_predictor
    from graphkit.bench.records import read_groups

    judge = JudgeConfig(provider=provider, model=judge_model, base_url=base_url)  # type: ignore[arg-type]
    name, score = score_predictor(read_groups(Path(groups)), predictor, condition, judge, seed, by)
    path = report.save(Path(groups), name, condition, score)
    click.echo(
        f"{name} {condition}: {score.mean:.3f} [{score.low:.3f}, {score.high:.3f}] over {score.groups} groups "
        f"({score.failures} failures) → {path}"
    )


@bench.command("report")
@click.argument("groups", type=click.Path(exists=True, dir_okay=False))
def bench_report(groups: str) -> None:
    """Print the table of every saved result; write it as Markdown and JSON."""
    import json
    from pathlib import Path

    from graphkit.bench import report

    md, rows = report.table(Path(groups))
    out = report.results_dir(Path(groups))
    (out / "report.md").write_text(md)
    (out / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    click.echo(md)
    click.echo(f"written: {out / 'report.md'}, {out / 'report.json'}")


@main.command()
@click.option(
    "--out",
    default="graphkit-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Work directory: corpus, run, graph store and report.",
)
def demo(out: str) -> None:
    """The research note's green example on the bundled model: collect → load → analyze → steer."""
    from pathlib import Path

    from graphkit import text
    from graphkit.demo import run_demo

    click.echo(text.demo(run_demo(Path(out))))


if __name__ == "__main__":
    main()

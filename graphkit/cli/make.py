"""Commands that make things: the bundled artifacts, a run, a store, a local Neo4j, the demo."""

from __future__ import annotations

import json
from pathlib import Path

import click

from graphkit.cli.options import option, options
from loaders.config import CollectConfig, StatsConfig
from loaders.graph.schema import BATCH_ROWS
from loaders.names import zoo_list, zoo_path


@click.group()
def zoo() -> None:
    """The bundled model and dictionaries."""


@zoo.command("list")
def zoo_list_cmd() -> None:
    """List the bundled artifacts."""
    for name, desc, path in zoo_list():
        click.echo(f"{name:10s} {desc}{'' if path.is_dir() else '  (not built)'}")


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
    from loaders.zoo.corpus import build_corpus

    for name, n in build_corpus(Path(out))["records"].items():  # type: ignore[attr-defined]
        click.echo(f"{Path(out) / name}: {n} records")


@zoo.command("build")
@click.option("--work", default="build/zoo", type=click.Path(), help="Corpus, tokenizer and logs.")
@click.option("--force", is_flag=True, help="Rebuild stages whose output exists.")
def zoo_build_cmd(work: str, force: bool) -> None:
    """Rebuild corpus, tokenizer, model and dictionaries from scratch (no download)."""
    from loaders.zoo.build import build

    build(Path(work), force=force)


@click.command()
@click.option("--model", "model_name", required=True, help="Zoo name, directory or Hub id.")
@click.option("--dictionary", required=True, help="Zoo name, directory or Hub id.")
@click.option(
    "--corpus",
    required=True,
    help="Text (one document per line), JSONL with 'text', or Parquet with a 'text' column: "
    "a file, a directory of shards, or a quoted glob.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@options(CollectConfig, "top_k")
@options(StatsConfig, "max_tokens", "context", "batch_tokens", "window")
@options(CollectConfig, "dtype", "exact_pairs", "replay", "ray", "workers")
@option(CollectConfig, "memory_budget", type=str)
@option(CollectConfig, "device", default=None)
@click.option("--overwrite", is_flag=True, help="Replace a run directory made from other inputs.")
def collect(model_name: str, dictionary: str, corpus: str, out: str, overwrite: bool, **config: object) -> None:
    """Compute feature statistics, top examples, unembeds and TWERA edges into a run directory."""
    from loaders.collect import collect as run_collect

    cfg = CollectConfig.from_options(**config)
    run = run_collect(model_name, dictionary, corpus, Path(out), cfg, overwrite=overwrite)
    m = json.loads(run.manifest.read_text())
    click.echo(
        f"{run.root}: {m['tokens_seen']} tokens in {m['windows_seen']} windows from {m['documents_seen']} documents"
    )
    click.echo("\n".join(f"  {p}" for p in (run.features, run.examples, run.connections)))


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--store", default=None, help="Directory or bolt:// URI (default RUN/graph).")
@click.option("--name", default=None, help="Dictionary name in the store (default: the run's dictionary).")
@click.option("--replace", is_flag=True, help="Replace the same-named dictionary loaded from another run.")
@click.option("--batch-size", default=BATCH_ROWS, show_default=True, help="Rows per transaction / COPY chunk.")
@click.option("--bulk", is_flag=True, help="Into a fresh local Neo4j with its offline importer (fast).")
@click.option("--neo4j-dir", default=None, help="The local Neo4j's directory for --bulk (as `graphkit neo4j`).")
def load(run: str, store: str | None, name: str | None, replace: bool, batch_size: int, bulk: bool,
         neo4j_dir: str | None) -> None:  # fmt: skip
    """Write a run directory (from `graphkit collect`) into a graph store."""
    from loaders.graph.load import load_run
    from loaders.graph.store import open_store

    if bulk:
        from graphkit import neo4j_local

        if store is not None or replace:
            raise click.UsageError(
                "--bulk imports into the local Neo4j of --neo4j-dir; it takes no --store or --replace"
            )
        r = neo4j_local.bulk_load(Path(run), Path(neo4j_dir or neo4j_local.DEFAULT_DIR), name=name)
        click.echo(
            f"imported {r.dictionary}: {r.features} features, {r.edges} edges ({r.rows} rows) in "
            f"{r.import_seconds:.1f} s ({r.edges / max(r.import_seconds, 1e-9):,.0f} edges/s) → {r.uri}"
        )
        return
    target = open_store(store or Path(run) / "graph")
    result = load_run(Path(run), target, name=name, replace=replace, batch_size=batch_size)
    verb = "already held" if result.skipped else "loaded"
    click.echo(f"{verb} {result.dictionary}: {result.features} features, {result.edges} edges → {target.spec}")


@click.command()
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
    click.echo(f"dropped {dictionary}: {drop_dictionary(s, dictionary)} features")


@click.group()
def neo4j() -> None:
    """A local Neo4j 5 Community server without Docker (Java 17 + Maven Central)."""


NEO4J_DIR = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory (default ~/.graphkit/neo4j or GRAPHKIT_NEO4J_DIR).",
)


def _neo4j_dir(directory: str | None) -> Path:
    from graphkit import neo4j_local

    return Path(directory) if directory else neo4j_local.DEFAULT_DIR


@neo4j.command("start")
@NEO4J_DIR
@click.option("--port", default=7687, show_default=True)
def neo4j_start(directory: str | None, port: int) -> None:
    """Start the server on 127.0.0.1 and print its Bolt URI once it answers."""
    from graphkit import neo4j_local

    info = neo4j_local.start(_neo4j_dir(directory), port=port)
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
    from graphkit import neo4j_local

    click.echo("stopped" if neo4j_local.stop(_neo4j_dir(directory)) else "not running")


@neo4j.command("status")
@NEO4J_DIR
def neo4j_status(directory: str | None) -> None:
    """Print the Bolt URI of the running server, or 'not running'."""
    from graphkit import neo4j_local

    info = neo4j_local.status(_neo4j_dir(directory))
    click.echo(f"running {info.uri} (pid {info.pid})" if info else "not running")


@click.command()
@click.option("--out", default="graphkit-demo", show_default=True, type=click.Path(file_okay=False),
              help="Work directory: corpus, run, graph store and report.")  # fmt: skip
def demo(out: str) -> None:
    """The research note's green example on the bundled model: collect → load → analyze → steer."""
    from graphkit import text
    from graphkit.demo import run_demo

    click.echo(text.demo(run_demo(Path(out))))


COMMANDS = [zoo, collect, load, drop, neo4j, demo]

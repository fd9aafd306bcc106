"""The ``graphkit`` command line: thin click commands over library functions."""

from __future__ import annotations

import click

from loaders.zoo import zoo_list, zoo_path


@click.group()
@click.version_option(package_name="graphkit")
def main() -> None:
    """graphkit: dictionary features as a graph, ranked by TWERA."""


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
    type=click.Path(exists=True, dir_okay=False),
    help="Text (one document per line), JSONL with 'text', or Parquet with a 'text' column.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--top-k", type=int, default=None, help="Edges kept per feature, each direction.")
@click.option("--max-tokens", type=int, default=None, help="Stop after about this many tokens.")
@click.option("--batch-size", type=int, default=None, help="Documents per batch.")
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--overwrite", is_flag=True, help="Replace a run directory made from other inputs.")
def collect(
    model_name: str,
    dictionary: str,
    corpus: str,
    out: str,
    top_k: int | None,
    max_tokens: int | None,
    batch_size: int | None,
    device: str | None,
    overwrite: bool,
) -> None:
    """Compute feature statistics, top examples, unembeds and TWERA edges into a run directory."""
    import dataclasses
    from pathlib import Path

    import torch

    from loaders.collect import CollectConfig
    from loaders.collect import collect as run_collect

    base = CollectConfig()
    stats = dataclasses.replace(
        base.stats,
        **{k: v for k, v in {"max_tokens": max_tokens, "batch_size": batch_size}.items() if v is not None},
    )
    cfg = dataclasses.replace(
        base,
        stats=stats,
        top_k=top_k or base.top_k,
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
    )
    try:
        run = run_collect(model_name, dictionary, Path(corpus), Path(out), cfg, overwrite=overwrite)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e
    manifest = __import__("json").loads(run.manifest.read_text())
    click.echo(f"{run.root}: {manifest['tokens_seen']} tokens from {manifest['documents_seen']} documents")
    for path in (run.features, run.examples, run.connections):
        click.echo(f"  {path}")


@main.command()
def demo() -> None:
    """Run the demo on the bundled model and dictionary."""
    from graphkit.demo import run_demo

    for report in run_demo():
        click.echo(f"\nprompt: {report.prompt}")
        click.echo(f"model:  {report.continuation.strip()!r}  → answer {report.answer!r}")
        click.echo("most active tiny-clt features at the last token:")
        for f in report.top_features:
            click.echo(f"  layer {f.layer} feature {f.index:4d}  activation {f.activation:.3f}")


if __name__ == "__main__":
    main()

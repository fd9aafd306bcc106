"""Commands that run the model on prompts: analyze, steer, describe, and residual directions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from graphkit.cli.options import (
    AS_JSON,
    DEVICE,
    DICTIONARY,
    STORE,
    graph,
    judge,
    selected,
    selection,
    stack,
    steering,
    writer,
)
from graphkit.config import ANALYZE_K, SteerConfig


@click.command()
@click.argument("prompt")
@stack(STORE, DICTIONARY, DEVICE)
@click.option("--k", default=ANALYZE_K, show_default=True, help="Features shown per token.")
@click.option(
    "--answer-context", is_flag=True, help="Analyze the prompt plus the model's own continuation up to its answer."
)
@AS_JSON
def analyze(prompt: str, store: str, dictionary: str | None, device: str, k: int, answer_context: bool,
            as_json: bool) -> None:  # fmt: skip
    """List the features active at each token of PROMPT and write them into the graph."""
    from graphkit import text
    from graphkit.checks import Workspace

    ws = Workspace.open(store, dictionary, device=device)
    result = ws.analyze(prompt, k=k, answer_context=answer_context)
    ids = {(f.layer, f.index): ws.id(f.layer, f.index) for t in result.positions for f in t.features}
    if as_json:
        click.echo(text.analysis_json(result, ids))
    else:
        click.echo(text.analysis(result, ids, ws.top_tokens(list(ids.values()))))


@click.command()
@selection("steered")
@steering()
@click.option("--together", is_flag=True, help="One check steering all features at once.")
@DEVICE
@AS_JSON
def steer(features: tuple[str, ...], store: str, dictionary: str | None, select: str | None, params: tuple[str, ...],
          prompt: str, positions: str, together: bool, device: str, as_json: bool, **how: object) -> None:  # fmt: skip
    """Steer FEATURES (ids) or what --select returns; print and record the outcomes."""
    from graphkit import text
    from graphkit.checks import Workspace
    from graphkit.steering import Positions

    ws = Workspace.open(store, dictionary, device=device)
    chosen = selected(ws.graph, features, select, params)
    results = ws.steer_features(chosen, prompt, positions=Positions.parse(positions), together=together, **how)  # type: ignore[arg-type]
    ids = {(i.layer, i.index): ws.id(i.layer, i.index) for r in results for i in r.interventions}
    click.echo(text.steering_json(results, ids) if as_json else text.steering(results, ids, ws.store.spec))


@click.command()
@selection("described")
@writer()
@click.option("--dry-run", is_flag=True, help="Print the exact prompts as JSON lines; call nothing, store nothing.")
def describe(features: tuple[str, ...], store: str, dictionary: str | None, select: str | None,
             params: tuple[str, ...], dry_run: bool, **llm: str) -> None:  # fmt: skip
    """Describe FEATURES (or what --select returns) in one sentence each, from their examples,
    unembeds and TWERA downstream; store it on the Feature node."""
    import dataclasses

    from graphkit.describe import describe_features, open_for_descriptions

    g = open_for_descriptions(store, dictionary, dry_run)
    found = describe_features(g.store, selected(g, features, select, params), g.dictionary, judge(**llm), dry_run)
    for d in found:
        if dry_run:
            click.echo(json.dumps(dataclasses.asdict(d)))
        else:
            click.echo(f"{d.id}: {d.text or 'no description (the replies had no DESCRIPTION line)'}")


@click.group()
def direction() -> None:
    """Any residual direction (a probe, a steering vector, a difference of means) as a node."""


FILE = click.Path(exists=True, dir_okay=False)


@direction.command("add")
@click.argument("name")
@stack(STORE, DICTIONARY, DEVICE)
@click.option("--vector", required=True, type=FILE, help="safetensors, d_model values.")
@click.option("--key", default=None, help="The tensor's name in --vector, when it holds several.")
@click.option("--layer", type=int, required=True, help="It is read at this layer's read site and written there.")
@click.option("--read-vector", default=None, type=FILE, help="Default: the unit vector.")
@click.option("--bias", type=float, default=0.0, show_default=True, help="Activation = max(0, x·read + bias).")
@click.option(
    "--read-site",
    default=None,
    help="Where x is read at --layer: a site or hook name (docs/hooks.md; default: the dictionary's).",
)
@click.option("--k", type=int, default=10, show_default=True, help="Downstream features printed.")
def direction_add(name: str, store: str, dictionary: str | None, device: str, vector: str, key: str | None, layer: int,
                  read_vector: str | None, bias: float, read_site: str | None, k: int) -> None:  # fmt: skip
    """Add NAME: its activation statistics on the run's corpus, top unembeds and TWERA downstream."""
    from graphkit import text
    from graphkit.checks import Workspace
    from graphkit.directions import add_direction, direction_downstream
    from graphkit.directions import read_vector as read
    from loaders.direction import Direction
    from loaders.model import site_from_hook

    at, site = site_from_hook(read_site) if read_site else (None, None)
    if at is not None and at != layer:
        raise click.UsageError(f"--read-site {read_site} names layer {at}, but --layer is {layer}")
    ws = Workspace.open(store, dictionary, device=device)
    r = read(Path(read_vector)) if read_vector else None
    result = add_direction(ws, Direction.of(name, layer, read(Path(vector), key), r, bias, site))
    click.echo(
        f"{name}: layer {layer}, active on {result.count} tokens (density {result.density:.4g}, max {result.max:.4g}); "
        f"top unembeds {', '.join(repr(t) for t in result.top_tokens[:6])}"
    )
    click.echo(text.edges(f"direction {name}", "down", direction_downstream(ws.graph, name, k)))


@direction.command("diff-means")
@stack(STORE, DICTIONARY, DEVICE)
@click.option("--positive", required=True, type=FILE, help="Prompts, one per line.")
@click.option("--negative", required=True, type=FILE, help="Prompts, one per line.")
@click.option("--layer", type=int, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="safetensors file to write.")
def direction_diff_means(
    store: str, dictionary: str | None, device: str, positive: str, negative: str, layer: int, out: str
) -> None:
    """Mean read-site activation of the positive prompts minus that of the negative ones."""
    from safetensors.torch import save_file

    from graphkit.checks import Workspace
    from loaders.direction import diff_means

    def lines(path: str) -> list[str]:
        return [x for x in Path(path).read_text().splitlines() if x.strip()]

    ws = Workspace.open(store, dictionary, device=device)
    v = diff_means(ws.model, ws.dictionary, lines(positive), lines(negative), layer)
    save_file({"direction": v.float().contiguous()}, out)
    click.echo(f"{out}: |v| = {float(v.norm()):.4g} at layer {layer} ({ws.dictionary.read_site})")


@direction.command("list")
@stack(STORE, DICTIONARY)
def direction_list(store: str, dictionary: str | None) -> None:
    """The directions of the store's dictionary."""
    from graphkit import text

    g = graph(store, dictionary)
    click.echo(text.rows(g.run("directions", dictionary=g.dictionary)))


@direction.command("show")
@click.argument("name")
@stack(STORE, DICTIONARY)
@click.option("--k", type=int, default=10, show_default=True, help="Downstream features printed.")
@AS_JSON
def direction_show(name: str, store: str, dictionary: str | None, k: int, as_json: bool) -> None:
    """NAME's statistics, top unembeds and downstream features."""
    from graphkit import text
    from graphkit.directions import direction_downstream, direction_json, get_direction

    g = graph(store, dictionary)
    node, down = get_direction(g, name), direction_downstream(g, name, k)
    if as_json:
        click.echo(json.dumps(direction_json(node, down), indent=2))
        return
    tops = ", ".join(repr(t) for t in node.top_tokens[:6])
    click.echo(f"{node.id}: layer {node.layer}, density {node.density:.4g}, max {node.max:.4g}; top unembeds {tops}")
    click.echo(text.edges(node.id, "down", down))


@direction.command("steer")
@click.argument("name")
@stack(STORE, DICTIONARY, DEVICE)
@steering()
@AS_JSON
def direction_steer(name: str, store: str, dictionary: str | None, device: str, prompt: str, positions: str,
                    as_json: bool, **how: object) -> None:  # fmt: skip
    """Steer NAME as a feature; print and record the outcome."""
    import dataclasses

    from graphkit.checks import Workspace
    from graphkit.directions import steer_direction
    from graphkit.steering import Positions

    ws = Workspace.open(store, dictionary, device=device)
    r = steer_direction(ws, name, prompt, positions=Positions.parse(positions), **how)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps({k: v for k, v in dataclasses.asdict(r).items() if k != "interventions"}, indent=2))
        return
    cfg = SteerConfig(**how)  # type: ignore[arg-type]
    click.echo(
        f"{name} ({cfg.mode} {cfg.value:+g}): {r.baseline_answer!r} → {r.steered_answer!r} "
        f"{'CHANGED' if r.changed else 'same'}; p({r.answer_token!r}) {r.prob_before:.3f} → {r.prob_after:.3f} "
        f"(recorded in {ws.store.spec})"
    )


COMMANDS = [analyze, steer, describe, direction]

"""``graphkit bench``: the look-alike benchmark (build groups, score predictors, report)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from graphkit.cli.options import by, judge, option, writer
from graphkit.config import BuildConfig


@click.group()
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
@option(BuildConfig, "max_prompts")
@click.option(
    "--run", "run_dir", type=click.Path(exists=True, file_okay=False), default=None, help="Reuse a collected run."
)
@option(BuildConfig, "mode")
@option(BuildConfig, "value")
@click.option("--target-from", default=None, help="With --mode add: 'make it say X', X another answer of RELATION.")
def bench_build(model_name: str, dictionary: str, prompts: str | None, out: str, work: str | None, run_dir: str | None,
                target_from: str | None, **config: object) -> None:  # fmt: skip
    """Discover look-alike groups (exactly one candidate steers) and save them as JSONL."""
    from graphkit.bench.build import build_benchmark

    cfg = BuildConfig(**config)  # type: ignore[arg-type]
    if (cfg.mode == "add") != (target_from is not None):
        raise click.UsageError("'make it say X' groups take --mode add with --target-from RELATION, together")
    n = build_benchmark(
        model_name, dictionary, Path(prompts) if prompts else None, Path(out), Path(work or out + ".work"), cfg,
        run=Path(run_dir) if run_dir else None, say=click.echo, target_from=target_from,
    )  # fmt: skip
    click.echo(f"{n} groups → {out}")


@bench.command("run")
@click.argument("groups", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--predictor", required=True, help="random, logit, logit-rank, activation, twera, twera+logit, learned, judge"
)
@click.option(
    "--condition", default="", help="For learned and judge: examples, examples+unembeds, examples+downstream, all"
)
@writer()
@click.option("--seed", default=0, show_default=True)
@by("For learned: the measure that ranks and weights the downstream features.")
def bench_run(groups: str, predictor: str, condition: str, seed: int, by: str, **llm: str) -> None:
    """Score one predictor on GROUPS under the protocol; save the result beside them."""
    from graphkit.bench import report
    from graphkit.bench.predictors import score_predictor
    from graphkit.bench.records import read_groups

    name, score = score_predictor(read_groups(Path(groups)), predictor, condition, judge(**llm), seed, by)
    path = report.save(Path(groups), name, condition, score)
    click.echo(
        f"{name} {condition}: {score.mean:.3f} [{score.low:.3f}, {score.high:.3f}] over {score.groups} groups "
        f"({score.failures} failures) → {path}"
    )


@bench.command("report")
@click.argument("groups", type=click.Path(exists=True, dir_okay=False))
def bench_report(groups: str) -> None:
    """Print the table of every saved result; write it as Markdown and JSON."""
    from graphkit.bench import report

    md, rows = report.table(Path(groups))
    out = report.results_dir(Path(groups))
    (out / "report.md").write_text(md)
    (out / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    click.echo(md)
    click.echo(f"written: {out / 'report.md'}, {out / 'report.json'}")

"""The ``graphkit`` command line: thin click commands over library functions.

Each command reads its options' defaults from the library (`options`) and calls one library
function. The commands live by what they work on: `make` (the bundled artifacts, collect,
load, the local Neo4j, the demo), `read` (the graph's answers and views), `check` (prompts,
steering, descriptions, directions) and `bench` (the look-alike benchmark).

Errors: every command runs under `_Main.invoke`, the one handler. A user error
(`loaders.errors.GraphkitError`, a bad value, a missing or unreadable file, a Neo4j error)
prints one line and exits 1; Ctrl-C exits 130. ``graphkit --debug`` re-raises with the traceback.
"""

from __future__ import annotations

from typing import Any

import click

from graphkit.cli import bench, check, make, read
from loaders.errors import GraphkitError


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


@click.group(cls=_Main, commands=[*make.COMMANDS, *read.COMMANDS, *check.COMMANDS, bench.bench])
@click.version_option(package_name="graphkit")
@click.option("--debug", is_flag=True, envvar="GRAPHKIT_DEBUG", help="Show tracebacks of user errors too.")
def main(debug: bool) -> None:
    """graphkit: dictionary features as a graph, ranked by TWERA."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

"""Click options read from the library: a default, its type and its help are stated once.

`option(source, name)` makes ``--name`` from a config dataclass's field or a function's
parameter: the default is the library's, a ``Literal`` becomes a choice, a bool a flag, and
the help is the field's docstring. The option sets several commands share live here too.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import sys
import textwrap
import types
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import click

if TYPE_CHECKING:
    from graphkit.graph import FeatureGraph

Decorator = Callable[[Any], Any]


@cache
def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` (PEP 257 attribute docstrings); none
    where the source is not shipped (the options then have no help, and still work)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    body = ast.parse(textwrap.dedent(source)).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for a, b in itertools.pairwise(body):
        named = isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
        if named and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
            docs[a.target.id] = " ".join(b.value.value.split())  # type: ignore[union-attr]
    return docs


def _declared(source: Any, name: str) -> tuple[Any, Any]:
    """(default, annotation) of field or parameter `name` of `source`."""
    if dataclasses.is_dataclass(source):
        (f,) = [f for f in dataclasses.fields(source) if f.name == name]
        default, annotation = f.default, f.type
        if default is dataclasses.MISSING:
            raise TypeError(f"{source}.{name} has no default to offer the CLI")
    else:
        p = inspect.signature(source).parameters[name]
        default, annotation = (None if p.default is p.empty else p.default), p.annotation
    if isinstance(annotation, str):  # postponed annotations: evaluate in the defining module
        try:
            annotation = eval(annotation, vars(sys.modules[source.__module__]))
        except Exception:
            annotation = None
    return default, annotation


def _click_type(annotation: Any, default: Any) -> Any:
    """A click type for `annotation` (``X | None`` read as X): a choice for a ``Literal``."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)] or [None]
    if get_origin(annotation) is Literal:
        return click.Choice(get_args(annotation))
    if annotation in (int, float, str):
        return annotation
    return None if default is None else type(default)


def option(source: Any, name: str, *decls: str, **kw: Any) -> Decorator:
    """``--name`` (or `decls`) for `source`'s field or parameter `name`; `kw` goes to click as
    given (``default=None`` where None means "decided later", ``type=str`` for parsed text)."""
    default, annotation = _declared(source, name)
    default = kw.pop("default", default)
    if "help" not in kw and dataclasses.is_dataclass(source):
        kw["help"] = _field_docs(source).get(name)  # type: ignore[arg-type]
    flag = "--" + name.replace("_", "-")
    if isinstance(default, bool) and "type" not in kw:
        decls = decls or ((f"{flag}/--no-{flag[2:]}",) if default else (flag,))
        kw.setdefault("is_flag", True)
    else:
        kw.setdefault("type", _click_type(annotation, default))
    decls = decls or (flag,)
    if not any(d.isidentifier() for d in decls):  # the Python name is the field's unless given
        decls = (*decls, name)
    return click.option(*decls, default=default, show_default=default is not None and default is not False, **kw)


def options(source: Any, *names: str) -> Decorator:
    """`option` for each of `names`, in the order written."""
    return stack(*(option(source, n) for n in names))


def stack(*decorators: Decorator) -> Decorator:
    """Several click decorators as one (options listed in the order written)."""

    def apply(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


STORE = click.option(
    "--store",
    envvar="GRAPHKIT_STORE",
    required=True,
    help="Embedded store directory or bolt:// / neo4j:// URI (env GRAPHKIT_STORE).",
)
DICTIONARY = click.option("--dictionary", default=None, help="Dictionary in the store (needed when it holds several).")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
DEVICE = click.option(
    "--device",
    envvar="GRAPHKIT_DEVICE",
    default="cpu",
    show_default=True,
    help="Where the model and dictionary run: cpu, cuda, cuda:1 … (env GRAPHKIT_DEVICE).",
)
PARAMS = click.option("--param", "params", multiple=True, help="key=value (ints, floats, JSON lists, else strings).")


def selection(verb: str) -> Decorator:
    """FEATURES, or --select QUERY with its --param values: what a command acts on (`selected`)."""
    return stack(
        click.argument("features", nargs=-1),
        STORE,
        DICTIONARY,
        click.option("--select", default=None, help=f"A query of cypher/ whose rows (column id) are {verb}."),
        PARAMS,
    )


def selected(g: FeatureGraph, features: tuple[str, ...], select: str | None, params: tuple[str, ...]) -> list:
    """The (layer, index) pairs that `selection`'s options name."""
    from graphkit import text

    if bool(features) == bool(select):
        raise click.UsageError("give FEATURES or --select QUERY (one of them)")
    if select:
        return g.select(select, dict(text.parse_param(p) for p in params))
    return [g.resolve(f) for f in features]


def by(help: str) -> Decorator:
    """--by: an edge measure (`loaders.graph.schema.MEASURES`)."""
    from loaders.graph.schema import MEASURES

    return click.option("--by", type=click.Choice(MEASURES), default="twera", show_default=True, help=help)


def steering() -> Decorator:
    """How a steering check runs (`graphkit.config.SteerConfig`), and where (--positions)."""
    from graphkit.config import SteerConfig

    return stack(
        click.option("--prompt", required=True),
        options(SteerConfig, "mode", "value"),
        click.option("--positions", default="all", show_default=True, help="all | last | match:WORD | 3,5"),
        option(SteerConfig, "on_generated", "--on-generated/--prompt-only"),
        option(SteerConfig, "max_new_tokens"),
    )


def writer() -> Decorator:
    """The LLM behind the judge and `describe` (`graphkit.bench.judge.JudgeConfig`)."""
    from graphkit.bench.judge import JudgeConfig

    return stack(
        option(JudgeConfig, "provider"),
        option(JudgeConfig, "model", "--judge-model", "judge_model", help="The LLM that answers."),
        option(JudgeConfig, "base_url"),
    )


def judge(provider: str, judge_model: str, base_url: str | None) -> Any:
    from graphkit.bench.judge import JudgeConfig

    return JudgeConfig(provider=provider, model=judge_model, base_url=base_url)  # type: ignore[arg-type]


def graph(store: str, dictionary: str | None) -> FeatureGraph:
    """The store's dictionary, read-only."""
    from graphkit.graph import FeatureGraph
    from loaders.graph.store import open_store

    return FeatureGraph(open_store(store, read_only=True), dictionary)

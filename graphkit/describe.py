"""`graphkit describe`: one sentence on what a feature does, written by an LLM from what a
researcher reads — its top examples, its top unembeds and its TWERA downstream features (the
judge's ``all`` condition, `graphkit.bench.judge.describe`) — and stored on the Feature node
(``description``), where the views and the explorer show it.

The providers, cache and retries are the judge's (`graphkit.bench.judge.Judge`): the official
Anthropic SDK or any OpenAI-compatible endpoint; every reply is cached under a hash of
provider, model and prompt. The reply must end with a line ``DESCRIPTION: …``; a reply
without one is retried, and a feature that never gets one keeps its old description. With
``dry_run`` nothing is called or written: the exact prompts are returned.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from graphkit.bench.judge import PROMPTS, Judge, JudgeConfig
from graphkit.bench.judge import describe as shown
from graphkit.bench.records import Candidate, Downstream
from graphkit.graph import FeatureGraph
from graphkit.report import examples, marked
from loaders.graph.store import EmbeddedStore, Neo4jStore, cypher, open_store

N_EXAMPLES, N_DOWNSTREAM = 5, 8
MAX_CHARS = 400
_LINE = re.compile(r"^\s*DESCRIPTION:\s*(\S.*?)\s*$", re.M)


@dataclass(frozen=True)
class Description:
    id: str
    text: str | None
    """The description, or None when no reply held a ``DESCRIPTION:`` line (or on a dry run)."""
    system: str
    user: str


def seen(graph: FeatureGraph, layer: int, index: int) -> Candidate:
    """The feature as the prompt shows it."""
    f = graph.feature(layer, index)
    if (Path(graph.info["run"]) / "examples.parquet").exists():
        top = tuple(marked(ex) for ex in examples(graph, layer, index, k=N_EXAMPLES))
    else:  # the run is elsewhere: the summary stored in the graph
        top = tuple(x for x in f.example_summary.split(" | ") if x)[:N_EXAMPLES]
    down = tuple(
        Downstream(e.twera, e.top_tokens, feature=e.id, layer=e.layer, index=e.index, motor_word=e.motor_word)
        for e in graph.downstream(layer, index, k=N_DOWNSTREAM)
    )
    return Candidate(f.id, layer, index, top_examples=top, top_unembeds=f.top_tokens, downstream=down)


def prompts(graph: FeatureGraph, layer: int, index: int) -> tuple[str, str]:
    """(system, user) prompts for one feature."""
    c = seen(graph, layer, index)
    system = (PROMPTS / "describe_system.txt").read_text().strip()
    user = (PROMPTS / "describe_user.txt").read_text().format(feature=c.feature, layer=layer, details=shown(c, "all"))
    return system, user.strip()


def parse_description(text: str) -> str | None:
    """The last ``DESCRIPTION:`` line's sentence, at most `MAX_CHARS` characters."""
    found = _LINE.findall(text or "")
    return found[-1][:MAX_CHARS] if found else None


def open_for_descriptions(store: str, dictionary: str | None = None, dry_run: bool = False) -> FeatureGraph:
    """The store `describe_features` writes to: it must exist; read-only on a dry run, and
    given the `description` property when made before it existed (`schema.ADDED`)."""
    s = open_store(store, read_only=dry_run, must_exist=True)
    if not dry_run:
        s.ensure_schema()
    return FeatureGraph(s, dictionary)


def describe_features(
    store: EmbeddedStore | Neo4jStore,
    features: Sequence[tuple[int, int]],
    dictionary: str | None = None,
    judge: JudgeConfig | None = None,
    dry_run: bool = False,
) -> list[Description]:
    """Describe `features` and store each description (none stored on a dry run)."""
    graph = FeatureGraph(store, dictionary)
    client = None if dry_run else Judge(judge or JudgeConfig())
    out = []
    for layer, index in features:
        system, user = prompts(graph, layer, index)
        text = None
        if client is not None:
            for attempt in range(client.cfg.retries + 1):
                again = f"\n\n(Attempt {attempt + 1}: end with one line 'DESCRIPTION: …'.)"
                ask = user + again * (attempt > 0)
                text = parse_description(client.complete(system, ask))
                if text:
                    store.write(cypher("write_description"), {"id": graph.id(layer, index), "description": text})
                    break
        out.append(Description(graph.id(layer, index), text, system, user))
    return out

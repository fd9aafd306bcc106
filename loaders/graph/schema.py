"""The graph's schema: every node and relationship name graphkit uses, in one place.

Nodes (key property ``id`` on every label, unique):

- ``Dictionary`` {id: name, kind, model, n_layers, n_features, read_site, write_site, run,
  inputs_key}: one per loaded dictionary; written last, so it marks a complete load.
- ``Feature`` {id: "dictionary/layer/index", dictionary, layer, idx, count, density, mean,
  max, top_tokens, bottom_tokens, example_tokens, example_summary, motor_word, motor_score}.
  (``index`` is reserved in LadybugDB: ``idx``. The unembed values live on the PROMOTES /
  SUPPRESSES edges: LadybugDB bulk-loads lists of doubles ~10× slower than strings.)
- ``Token`` {id: "model/text", model, text}: a token string normalized (casing and leading
  space folded), so " green", "green" and "Green" are one Token.
- ``Prompt`` {id, model, text, tokens}, ``Steering`` {id, mode, value, positions, ...}.

Relationships:

- ``(Feature)-[:FEEDS {twera, era, virtual_weight, twera_norm}]->(Feature)``: kept edges;
  twera_norm = twera / max |twera| over the source's kept downstream edges, in [−1, 1].
- ``(Feature)-[:PROMOTES {rank, value, token}]->(Token)``: top unembeds (logit lens), one
  edge per rank (two ranks may reach one Token: " green" and "Green");
  ``SUPPRESSES`` likewise for the bottom ones; ``FIRES_ON {rank}`` for the tokens where the
  top activating examples peak.
- ``(Feature)-[:ACTIVE_ON {position, token, activation}]->(Prompt)``,
  ``(Feature)-[:STEERED]->(Steering)-[:ON_PROMPT]->(Prompt)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Measure = Literal["twera", "era", "virtual_weight"]
MEASURES: tuple[Measure, ...] = ("twera", "era", "virtual_weight")
"""The FEEDS properties that rank a feature's kept edges. The edges a run keeps are chosen by
|TWERA| (each source's top-k ∪ each target's top-k); ranking them by ERA or V reorders those,
it does not reach edges the run did not keep."""

BATCH_ROWS = 10_000
"""Rows per write transaction (Neo4j) or COPY chunk (embedded) when loading, replacing or
deleting."""

NODES: dict[str, dict[str, str]] = {
    "Dictionary": {
        "id": "STRING",
        "kind": "STRING",
        "model": "STRING",
        "n_layers": "INT64",
        "n_features": "INT64",
        "read_site": "STRING",
        "write_site": "STRING",
        "run": "STRING",
        "inputs_key": "STRING",
    },
    "Feature": {
        "id": "STRING",
        "dictionary": "STRING",
        "layer": "INT64",
        "idx": "INT64",
        "count": "INT64",
        "density": "DOUBLE",
        "mean": "DOUBLE",
        "max": "DOUBLE",
        "top_tokens": "STRING[]",
        "bottom_tokens": "STRING[]",
        "example_tokens": "STRING[]",
        "example_summary": "STRING",
        "motor_word": "STRING",
        "motor_score": "DOUBLE",
        "description": "STRING",
    },
    "Token": {"id": "STRING", "model": "STRING", "text": "STRING"},
    "Prompt": {"id": "STRING", "model": "STRING", "text": "STRING", "tokens": "STRING[]"},
    "Steering": {
        "id": "STRING",
        "mode": "STRING",
        "value": "DOUBLE",
        "positions": "STRING",
        "baseline": "STRING",
        "steered": "STRING",
        "baseline_answer": "STRING",
        "steered_answer": "STRING",
        "changed": "BOOLEAN",
        "answer_token": "STRING",
        "logit_before": "DOUBLE",
        "logit_after": "DOUBLE",
        "prob_before": "DOUBLE",
        "prob_after": "DOUBLE",
        "on_generated": "BOOLEAN",
        "max_new_tokens": "INT64",
    },
    "Direction": {
        "id": "STRING",
        "dictionary": "STRING",
        "name": "STRING",
        "layer": "INT64",
        "bias": "DOUBLE",
        "read_site": "STRING",
        "vector": "DOUBLE[]",
        "read_vector": "DOUBLE[]",
        "count": "INT64",
        "density": "DOUBLE",
        "mean": "DOUBLE",
        "max": "DOUBLE",
        "top_tokens": "STRING[]",
        "bottom_tokens": "STRING[]",
    },
}

ADDED: dict[str, tuple[str, ...]] = {"Steering": ("on_generated", "max_new_tokens"), "Feature": ("description",)}
"""Properties added after a table's first version: stores made before get them by ALTER."""


@dataclass(frozen=True)
class Rel:
    """A relationship type between two labels, with its properties."""

    source: str
    target: str
    props: dict[str, str]


RELS: dict[str, Rel] = {
    "FEEDS": Rel(
        "Feature",
        "Feature",
        {"twera": "DOUBLE", "era": "DOUBLE", "virtual_weight": "DOUBLE", "twera_norm": "DOUBLE"},
    ),
    "PROMOTES": Rel("Feature", "Token", {"rank": "INT64", "value": "DOUBLE", "token": "STRING"}),
    "SUPPRESSES": Rel("Feature", "Token", {"rank": "INT64", "value": "DOUBLE", "token": "STRING"}),
    "FIRES_ON": Rel("Feature", "Token", {"rank": "INT64"}),
    "ACTIVE_ON": Rel("Feature", "Prompt", {"position": "INT64", "token": "STRING", "activation": "DOUBLE"}),
    "STEERED": Rel("Feature", "Steering", {}),
    "ON_PROMPT": Rel("Steering", "Prompt", {}),
    "DIRECTS": Rel(
        "Direction",
        "Feature",
        {"twera": "DOUBLE", "era": "DOUBLE", "virtual_weight": "DOUBLE", "twera_norm": "DOUBLE"},
    ),
    "DIRECTION_STEERED": Rel("Direction", "Steering", {}),
}


def embedded_ddl() -> list[str]:
    """LadybugDB: typed node tables with primary keys, and relationship tables."""
    out = []
    for label, props in NODES.items():
        cols = ", ".join(f"{k} {t}" for k, t in props.items())
        out.append(f"CREATE NODE TABLE IF NOT EXISTS {label}({cols}, PRIMARY KEY (id))")
    for name, rel in RELS.items():
        cols = "".join(f", {k} {t}" for k, t in rel.props.items())
        out.append(f"CREATE REL TABLE IF NOT EXISTS {name}(FROM {rel.source} TO {rel.target}{cols})")
    for label, props_added in ADDED.items():
        out += [f"ALTER TABLE {label} ADD IF NOT EXISTS {k} {NODES[label][k]}" for k in props_added]
    return out


def neo4j_ddl() -> list[str]:
    """Neo4j 5: a uniqueness constraint on ``id`` for every label, plus lookup indexes."""
    out = [
        f"CREATE CONSTRAINT {label.lower()}_id IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE" for label in NODES
    ]
    out += [
        "CREATE INDEX feature_dictionary IF NOT EXISTS FOR (n:Feature) ON (n.dictionary)",
        "CREATE INDEX feature_motor IF NOT EXISTS FOR (n:Feature) ON (n.motor_word)",
        "CREATE INDEX token_text IF NOT EXISTS FOR (n:Token) ON (n.text)",
    ]
    return out


def feature_id(dictionary: str, layer: int, index: int) -> str:
    return f"{dictionary}/{layer}/{index}"


def token_id(model: str, text: str) -> str:
    return f"{model}/{text}"


def mark_peak(tokens: Sequence[str], center: int) -> str:
    """A top example as text: the peak token marked «like this», newlines as ⏎ (how the
    example summary, the reports, the judge and `describe` show examples)."""
    return "".join(f"«{t}»" if i == center else t for i, t in enumerate(tokens)).replace("\n", "⏎")


def normalize_token(text: str) -> str:
    """The Token a raw token string belongs to: stripped of spaces and byte markers, lowercased."""
    return text.replace("Ġ", " ").replace("▁", " ").strip().lower()

"""A run's tables as CSV files for Neo4j's offline importer (``neo4j-admin database import full``).

One file per node label and relationship type, each with the importer's typed header:
node files start with ``id:ID(Label)`` (one id space per label), relationship files with
``:START_ID(Label)`` and ``:END_ID(Label)``; numeric columns are typed (``layer:long``,
``twera:double``), list columns are ``string[]`` joined by a delimiter no list element holds
(a byte-level tokenizer's tokens can hold any character, control characters included, so it is
chosen per import from a few unusual ones and passed as ``--array-delimiter``), and strings are
quoted where needed (``--multiline-fields`` for tokens that hold a newline).
Types come from `loaders.graph.schema`, so the imported graph has the same properties as one
loaded over Bolt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from loaders.graph import schema

DELIMITERS = ("\x1f", "\x1e", "\x1d", "\x1c", "\ue000", "\ue001", "\ue002", "\ue003")
_TYPES = {"STRING": "string", "INT64": "long", "DOUBLE": "double", "BOOLEAN": "boolean", "STRING[]": "string[]"}


def _delimiter(tables: dict[str, pa.Table]) -> str:
    """The first of `DELIMITERS` that no element of any list column holds."""
    lists = [
        pc.list_flatten(c.combine_chunks()) for t in tables.values() for c in t.columns if pa.types.is_list(c.type)
    ]
    for d in DELIMITERS:
        if not any(len(x) and pc.any(pc.match_substring(x, d)).as_py() for x in lists):
            return d
    raise ValueError("every candidate array delimiter occurs in a list element; load over Bolt instead")


@dataclass(frozen=True)
class ImportFiles:
    """CSV files for the importer, and the array delimiter they use."""

    nodes: dict[str, Path]
    relationships: dict[str, Path]
    delimiter: str

    def args(self, database: str = "neo4j") -> list[str]:
        """Arguments of ``neo4j-admin database import full``."""
        args = ["database", "import", "full", database, "--overwrite-destination=true", "--multiline-fields=true"]
        args += [f"--array-delimiter=U+{ord(self.delimiter):04X}"]
        args += ["--skip-bad-relationships=false", "--skip-duplicate-nodes=false"]
        args += [f"--nodes={label}={path}" for label, path in self.nodes.items()]
        args += [f"--relationships={t}={path}" for t, path in self.relationships.items()]
        return args


def write_import_files(tables: dict[str, pa.Table], out: Path) -> ImportFiles:
    """Write one CSV file per node label and relationship type into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    delimiter = _delimiter(tables)

    def column(table: pa.Table, name: str, kind: str) -> pa.Array:
        col = table.column(name).combine_chunks()
        return pc.binary_join(col, delimiter) if kind == "STRING[]" else col

    nodes, rels = {}, {}
    for label, table in tables.items():
        if label in schema.NODES:
            props = schema.NODES[label]
            cols = {f"id:ID({label})": column(table, "id", "STRING")}
            cols |= {f"{k}:{_TYPES[t]}": column(table, k, t) for k, t in props.items() if k != "id"}
            nodes[label] = path = out / f"{label}.csv"
        else:
            rel = schema.RELS[label]
            cols = {
                f":START_ID({rel.source})": column(table, "source", "STRING"),
                f":END_ID({rel.target})": column(table, "target", "STRING"),
            }
            cols |= {f"{k}:{_TYPES[t]}": column(table, k, t) for k, t in rel.props.items()}
            rels[label] = path = out / f"{label}.csv"
        pacsv.write_csv(pa.table(cols), path)
    return ImportFiles(nodes, rels, delimiter)

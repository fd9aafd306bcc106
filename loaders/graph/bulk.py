"""A run's tables as CSV files for Neo4j's offline importer (``neo4j-admin database import full``).

One file per node label and relationship type, each with the importer's typed header:
node files start with an integer ``:ID`` (a row number, unique over all labels, not stored)
and the ``id:string`` property, relationship files with ``:START_ID`` and ``:END_ID`` as those
numbers (``--id-type=integer``: the importer maps numbers, not strings, ~10% faster at 5M
edges); numeric columns are typed (``layer:long``, ``twera:double``), list columns are
``string[]`` joined by a delimiter no list element holds (a byte-level tokenizer's tokens can
hold any character, control characters included, so it is chosen per import from a few
unusual ones and passed as ``--array-delimiter``), and strings are quoted where needed.
``--multiline-fields`` is on only when some value holds a line break (it stops the importer
from splitting its input between threads: ~20% slower at 5M edges).
Types come from `loaders.graph.schema`, so the imported graph has the same properties as one
loaded over Bolt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


def _line_breaks(col: pa.Array) -> bool:
    """Whether a string or list-of-strings column holds a line break."""
    if pa.types.is_list(col.type):
        col = pc.list_flatten(col)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) or not len(col):
        return False
    return bool(pc.any(pc.match_substring_regex(col, "[\\r\\n]")).as_py())


@dataclass(frozen=True)
class ImportFiles:
    """CSV files for the importer, and the options they need."""

    nodes: dict[str, Path]
    relationships: dict[str, Path]
    delimiter: str
    multiline: bool
    """Whether some value holds a line break."""

    def args(self, database: str = "neo4j") -> list[str]:
        """Arguments of ``neo4j-admin database import full``."""
        args = ["database", "import", "full", database, "--overwrite-destination=true", "--id-type=integer"]
        args += [f"--multiline-fields={str(self.multiline).lower()}", f"--array-delimiter=U+{ord(self.delimiter):04X}"]
        args += ["--skip-bad-relationships=false", "--skip-duplicate-nodes=false"]
        args += [f"--nodes={label}={path}" for label, path in self.nodes.items()]
        args += [f"--relationships={t}={path}" for t, path in self.relationships.items()]
        return args


def write_import_files(tables: dict[str, pa.Table], out: Path) -> ImportFiles:
    """Write one CSV file per node label and relationship type into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    delimiter = _delimiter(tables)
    multiline = False

    def column(table: pa.Table, name: str, kind: str) -> pa.Array:
        nonlocal multiline
        col = table.column(name).combine_chunks()
        multiline = multiline or _line_breaks(col)
        return pc.binary_join(col, delimiter) if kind == "STRING[]" else col

    numbers: dict[str, tuple[pa.Array, int]] = {}  # label → (its ids in row order, the first row's number)
    nodes, rels, first = {}, {}, 0
    for label, table in tables.items():
        if label in schema.NODES:
            ids = column(table, "id", "STRING")
            numbers[label] = (ids, first)
            cols = {":ID": pa.array(np.arange(first, first + len(ids), dtype=np.int64)), "id:string": ids}
            cols |= {f"{k}:{_TYPES[t]}": column(table, k, t) for k, t in schema.NODES[label].items() if k != "id"}
            first += len(ids)
            nodes[label] = path = out / f"{label}.csv"
            pacsv.write_csv(pa.table(cols), path)

    def number(table: pa.Table, end: str, label: str) -> pa.Array:
        ids, offset = numbers[label]
        at = pc.index_in(table.column(end), value_set=ids)
        if at.null_count:
            missing = table.column(end).filter(pc.is_null(at))[0]
            raise ValueError(f"{label} {missing} is named by a relationship but is not among the {label} rows")
        return pc.add(at, offset)

    for label, table in tables.items():
        if label not in schema.NODES:
            rel = schema.RELS[label]
            cols = {":START_ID": number(table, "source", rel.source), ":END_ID": number(table, "target", rel.target)}
            cols |= {f"{k}:{_TYPES[t]}": column(table, k, t) for k, t in rel.props.items()}
            rels[label] = path = out / f"{label}.csv"
            pacsv.write_csv(pa.table(cols), path)
    return ImportFiles(nodes, rels, delimiter, multiline)

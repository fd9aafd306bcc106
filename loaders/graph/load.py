"""``graphkit load``: a run directory (from ``graphkit collect``) into a store.

1. Read the run's manifest and Parquet files; name the dictionary (``--name`` or the
   dictionary the run was collected with) and its model.
2. If the store already holds this dictionary from the same run inputs, stop: loads are
   idempotent. From other inputs, refuse unless ``replace``.
3. Read and check the whole run into the rows the graph will hold (`run_tables`,
   `check_run`): readable files, the columns and types the graph needs, no duplicated
   feature, no edge, example or link naming a feature the run does not have, finite
   numbers. A bad run is refused here, before anything in the store changes.
   Then delete the dictionary's features (in batches) and its node: a load that was killed
   half way leaves no Dictionary node and is cleaned up here.
4. Bulk-load tokens (only new ones), features (with motor annotations by `MotorRule`), FEEDS
   edges (with twera_norm), PROMOTES / SUPPRESSES / FIRES_ON links.
5. Write the Dictionary node last: its presence marks a complete load.

A replace keeps the old dictionary or the new one, never neither. On the embedded store,
steps 3–5 run beside a copy of the database (`EmbeddedStore.begin_replace`). On Neo4j, which
has no such copy, the new features are loaded under a staging name while the old stay as they
are (phase *loading*); then the old are renamed away (*retiring*), the new renamed in and the
Dictionary node updated (*promoting*), and the old deleted (*cleaning*), each in batches. A
`Replacing` node records the phase: a replace cut short in *loading* is undone (the old
dictionary stays), one cut short later is finished, the next time that dictionary is loaded
or dropped (`finish_replace`). Renames touch nodes only, where the deletes touch every
relationship too, so the window in which readers see a mix is the renames' alone (not timed
apart from the whole replace).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loaders.files import file_hash
from loaders.graph import schema
from loaders.graph.store import EmbeddedStore, Neo4jStore, StoreError, cypher
from loaders.motor import MotorRule


@dataclass(frozen=True)
class LoadResult:
    """What a load wrote."""

    dictionary: str
    """Name of the dictionary in the store."""
    features: int
    edges: int
    skipped: bool
    """True when the store already held this run."""


def short_name(name: str) -> str:
    """A zoo or Hub name unchanged; a local path by its last component."""
    p = Path(name)
    return p.name if (p.is_absolute() or name.startswith(".") or p.exists()) else name


def _ids(dictionary: str, layer: pa.Array, index: pa.Array) -> pa.Array:
    """Feature ids "dictionary/layer/index", built column-wise."""
    parts = [pa.scalar(dictionary), pc.cast(layer, pa.string()), pc.cast(index, pa.string())]
    return pc.binary_join_element_wise(*parts, "/")


def _normalize(tokens: pa.Array) -> pa.Array:
    """`schema.normalize_token` column-wise."""
    text = pc.replace_substring(pc.replace_substring(tokens, "Ġ", " "), "▁", " ")
    return pc.utf8_lower(pc.utf8_trim_whitespace(text))


def _flatten(lists: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(row of each element, its position in the row, the elements) of a list column."""
    arr = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    rows = pc.list_parent_indices(arr).to_numpy()
    offsets = arr.offsets.to_numpy()
    pos = np.arange(len(rows)) - (offsets[rows] - offsets[0])
    return rows, pos, pc.list_flatten(arr)


class RunError(StoreError):
    """A run directory the graph cannot hold as it is (nothing was written)."""


COLUMNS: dict[str, dict[str, str]] = {
    "features.parquet": {
        "layer": "integer", "index": "integer", "count": "integer", "density": "floating", "mean": "floating",
        "max": "floating", "top_tokens": "list", "top_values": "list", "bottom_tokens": "list",
        "bottom_values": "list", "top_word": "string", "top_word_z": "floating", "word_gap": "floating",
    },
    "examples.parquet": {
        "layer": "integer", "index": "integer", "rank": "integer", "center": "integer", "tokens": "list",
    },
    "connections.parquet": {
        "source_layer": "integer", "source_index": "integer", "target_layer": "integer", "target_index": "integer",
        "twera": "floating", "era": "floating", "virtual_weight": "floating",
    },
}  # fmt: skip
"""The columns `graphkit load` reads from each run file, by Arrow type family."""

_TYPE_CHECKS = {
    "integer": pa.types.is_integer,
    "floating": pa.types.is_floating,
    "list": lambda t: pa.types.is_list(t) or pa.types.is_large_list(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
}


def _read(run: Path, name: str, columns: list[str] | None = None) -> pa.Table:
    """A run file, or a RunError naming it, when it is missing, unreadable or lacks a column."""
    path = Path(run) / name
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise RunError(
            f"{path}: cannot read it ({e}); the run is incomplete or damaged: rerun `graphkit collect`"
        ) from e
    for col, family in COLUMNS[name].items():
        if columns is not None and col not in columns:
            continue
        if col not in table.column_names:
            raise RunError(f"{path}: no column {col!r}; was it written by `graphkit collect`?")
        if not _TYPE_CHECKS[family](table.schema.field(col).type):
            raise RunError(f"{path}: column {col!r} is {table.schema.field(col).type}, expected {family}")
    return table


def check_run(features: pa.Table, examples: pa.Table, connections: pa.Table, run: Path) -> None:
    """Raise a RunError for a run the graph cannot hold (module docstring, step 3)."""
    keys = features.column("layer").to_numpy().astype(np.int64) * (1 << 32) + features.column("index").to_numpy()
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        k = int(unique[counts > 1][0])
        raise RunError(
            f"{run / 'features.parquet'}: {int((counts > 1).sum())} features appear more than once "
            f"(first: {k >> 32}/{k & 0xFFFFFFFF}); rerun `graphkit collect`"
        )

    def unknown(table: pa.Table, layer: str, index: str) -> np.ndarray:
        k = table.column(layer).to_numpy().astype(np.int64) * (1 << 32) + table.column(index).to_numpy()
        return k[~np.isin(k, unique)]

    for name, table, ends in (
        ("connections.parquet", connections, (("source_layer", "source_index"), ("target_layer", "target_index"))),
        ("examples.parquet", examples, (("layer", "index"),)),
    ):
        for layer, index in ends:
            bad = unknown(table, layer, index)
            if len(bad):
                k = int(bad[0])
                raise RunError(
                    f"{run / name}: {len(bad)} rows name features that features.parquet does not have "
                    f"(first: {k >> 32}/{k & 0xFFFFFFFF} in {layer}/{index}); the run's files do not belong together"
                )
    for col in ("twera", "era", "virtual_weight"):
        values = connections.column(col).to_numpy()
        if not np.isfinite(values).all():
            raise RunError(
                f"{run / 'connections.parquet'}: {int((~np.isfinite(values)).sum())} non-finite {col} values; "
                "are the dictionary's weights finite?"
            )


def _feature_table(f: pa.Table, ex: pa.Table, dictionary: str, rule: MotorRule) -> tuple[pa.Table, pa.Table]:
    """(Feature rows in schema column order, FIRES_ON rows: source, word, rank) from the run's
    features and examples tables."""
    ids = _ids(dictionary, f.column("layer"), f.column("index"))
    position = {
        (a, b): n
        for n, (a, b) in enumerate(zip(f.column("layer").to_pylist(), f.column("index").to_pylist(), strict=True))
    }
    row_of = np.array(
        [position[k] for k in zip(ex.column("layer").to_pylist(), ex.column("index").to_pylist(), strict=True)],
        dtype=np.int64,
    )
    tok_rows, tok_pos, flat = _flatten(ex.column("tokens"))
    center = ex.column("center").to_numpy()
    is_peak = tok_pos == center[tok_rows]
    peak = np.empty(ex.num_rows, dtype=object)
    peak[tok_rows[is_peak]] = flat.filter(pa.array(is_peak)).to_numpy(zero_copy_only=False)
    words = _normalize(pa.array(peak, type=pa.string())).fill_null("")
    ranks = ex.column("rank").to_numpy()
    order = np.lexsort((ranks, row_of))  # by feature, then rank
    sel = order[pc.not_equal(words, "").to_numpy(zero_copy_only=False)[order]]  # examples peaking on a word
    counts = np.bincount(row_of[sel], minlength=f.num_rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    ex_tokens = pa.ListArray.from_arrays(offsets, words.take(pa.array(sel)))
    fires = {
        "source": pc.take(ids, pa.array(row_of[sel])),
        "word": words.take(pa.array(sel)),
        "rank": pa.array(ranks[sel], type=pa.int64()),
    }
    summary = [""] * f.num_rows
    top3 = order[ranks[order] < 3]  # the summary shows at most three examples per feature
    for n, toks in zip(top3, ex.column("tokens").take(pa.array(top3)).to_pylist(), strict=True):
        marked = schema.mark_peak(toks, center[n])
        r = row_of[n]
        summary[r] = f"{summary[r]} | {marked}" if summary[r] else marked
    top_z, gap = f.column("top_word_z").to_numpy(), f.column("word_gap").to_numpy()
    is_motor = np.array([rule(z, g) for z, g in zip(top_z, gap, strict=True)], dtype=bool)
    table = pa.table(
        {
            "id": ids,
            "dictionary": pa.array([dictionary] * f.num_rows),
            "layer": f.column("layer"),
            "idx": f.column("index"),
            "count": f.column("count"),
            "density": f.column("density"),
            "mean": f.column("mean"),
            "max": f.column("max"),
            "top_tokens": f.column("top_tokens"),
            "bottom_tokens": f.column("bottom_tokens"),
            "example_tokens": ex_tokens,
            "example_summary": summary,
            "motor_word": pc.if_else(pa.array(is_motor), f.column("top_word"), pa.scalar(None, pa.string())),
            "motor_score": pc.if_else(pa.array(is_motor), f.column("word_gap"), pa.scalar(None, pa.float64())),
            "description": pa.nulls(f.num_rows, pa.string()),  # `graphkit describe` writes it
        }
    )
    return table, pa.table(fires)


def _edge_table(c: pa.Table, dictionary: str) -> pa.Table:
    sl, si = c.column("source_layer").to_numpy(), c.column("source_index").to_numpy()
    twera = c.column("twera").to_numpy()
    src_key = sl.astype(np.int64) * (int(si.max(initial=0)) + 1) + si
    _, inverse = np.unique(src_key, return_inverse=True)
    scale = np.zeros(inverse.max(initial=-1) + 1)
    np.maximum.at(scale, inverse, np.abs(twera))
    return pa.table(
        {
            "source": _ids(dictionary, c.column("source_layer"), c.column("source_index")),
            "target": _ids(dictionary, c.column("target_layer"), c.column("target_index")),
            "twera": c.column("twera"),
            "era": c.column("era"),
            "virtual_weight": c.column("virtual_weight"),
            "twera_norm": twera / np.where(scale[inverse] > 0, scale[inverse], 1.0),
        }
    )


def _unembed_links(f: pa.Table, ids: pa.Array) -> tuple[pa.Table, pa.Table]:
    """PROMOTES / SUPPRESSES rows (source, word, rank, value, token): one per unembed rank."""
    out = []
    for side in ("top", "bottom"):
        rows, rank, tokens = _flatten(f.column(f"{side}_tokens"))
        _, _, values = _flatten(f.column(f"{side}_values"))
        words = _normalize(tokens)
        keep = pc.not_equal(words, "")
        out.append(
            pa.table(
                {
                    "source": pc.take(ids, pa.array(rows)).filter(keep),
                    "word": words.filter(keep),
                    "rank": pa.array(rank, type=pa.int64()).filter(keep),
                    "value": values.filter(keep),
                    "token": tokens.filter(keep),
                }
            )
        )
    return out[0], out[1]


@dataclass(frozen=True)
class RunTables:
    """A run as the rows of the graph: one table per node label and relationship type."""

    tables: dict[str, pa.Table]
    """Token, Feature (nodes: id first); FEEDS, PROMOTES, SUPPRESSES, FIRES_ON (source, target, …)."""
    dictionary: dict
    """The Dictionary node's properties, written last."""


def read_manifest(run: Path) -> dict:
    """A finished run's manifest, or a StoreError saying what is missing."""
    manifest_path = Path(run) / "manifest.json"
    if not manifest_path.exists():
        raise StoreError(f"{run} is not a run directory (no manifest.json); make one with `graphkit collect`")
    manifest = json.loads(manifest_path.read_text())
    missing = [s for s in ("features", "examples", "connections") if not manifest.get("stages", {}).get(s)]
    if missing:
        raise StoreError(f"{run}: collect has not finished ({', '.join(missing)} missing); rerun `graphkit collect`")
    for name, digest in manifest.get("outputs", {}).items():
        path = Path(run) / name
        if path.exists() and file_hash(path) != digest:
            raise RunError(
                f"{path} is not the file {manifest_path} describes (its SHA-256 differs): the run's files "
                f"come from another run than its manifest (dictionary {manifest.get('dictionary')!r}); "
                "rerun `graphkit collect`"
            )
    return manifest


def run_tables(
    run: Path, manifest: dict, dictionary: str, model: str, rule: MotorRule, present_tokens: set[str]
) -> RunTables:
    """Step 3's rows: tokens not in `present_tokens`, features, edges and links, from the run's
    three files, each read once and checked (`check_run`) before any row is built."""
    f = _read(run, "features.parquet")
    ex = _read(run, "examples.parquet", ["layer", "index", "rank", "center", "tokens"])
    c = _read(run, "connections.parquet")
    check_run(f, ex, c, run)
    features, fires = _feature_table(f, ex, dictionary, rule)
    edges = _edge_table(c, dictionary)
    promotes, suppresses = _unembed_links(f, features.column("id").combine_chunks())
    words = set(
        pc.unique(
            pa.concat_arrays(
                [
                    fires.column("word").combine_chunks().cast(pa.string()),
                    promotes.column("word").combine_chunks(),
                    suppresses.column("word").combine_chunks(),
                ]
            )
        ).to_pylist()
    )
    new = sorted(w for w in words if schema.token_id(model, w) not in present_tokens)
    tokens = pa.table({"id": [schema.token_id(model, w) for w in new], "model": [model] * len(new), "text": new})

    def link(table: pa.Table, cols: list[str]) -> pa.Table:
        target = pc.binary_join_element_wise(pa.scalar(model), table.column("word").cast(pa.string()), "/")
        return pa.table({"source": table.column("source"), "target": target, **{c: table.column(c) for c in cols}})

    d_layers = sorted(set(features.column("layer").to_pylist()))
    return RunTables(
        {
            "Token": tokens,
            "Feature": features,
            "FEEDS": edges,
            "PROMOTES": link(promotes, ["rank", "value", "token"]),
            "SUPPRESSES": link(suppresses, ["rank", "value", "token"]),
            "FIRES_ON": link(fires, ["rank"]),
        },
        {
            "id": dictionary,
            "kind": manifest.get("dictionary_kind", ""),
            "model": model,
            "n_layers": len(d_layers),
            "n_features": features.num_rows // max(len(d_layers), 1),
            "read_site": manifest.get("read_site", ""),
            "write_site": manifest.get("write_site", ""),
            "run": str(Path(run).resolve()),
            "inputs_key": manifest["inputs_key"],
        },
    )


def delete_features(store: EmbeddedStore | Neo4jStore, dictionary: str, batch_size: int = schema.BATCH_ROWS) -> int:
    """Delete a dictionary's features: their relationships first, `batch_size` at a time, then
    the bare nodes, so no transaction grows with a feature's degree (Neo4j's transaction memory
    limit). Returns the features deleted."""
    params = {"dictionary": dictionary, "limit": batch_size}
    while store.write(cypher("delete_dictionary_relationships"), params)[0]["deleted"]:
        pass
    deleted = 0
    while n := store.write(cypher("delete_dictionary_features"), params)[0]["deleted"]:
        deleted += int(n)
    return deleted


def drop_dictionary(store: EmbeddedStore | Neo4jStore, dictionary: str, batch_size: int = schema.BATCH_ROWS) -> int:
    """Remove `dictionary` and its features (with their edges, activations and steering links)
    from `store`; returns the features deleted. Features go first, in batches, and the
    Dictionary node last, so an interrupted drop can simply be run again."""
    finish_replace(store, dictionary, batch_size)
    held = {r["id"] for r in store.read(cypher("dictionaries"))}
    if dictionary not in held:
        raise StoreError(
            f"store {store.spec} holds no dictionary {dictionary!r} (it holds: {', '.join(sorted(held)) or 'none'})"
        )
    deleted = delete_features(store, dictionary, batch_size)
    store.write(cypher("delete_dictionary_directions"), {"dictionary": dictionary})
    store.write(cypher("delete_orphan_steering"))
    store.write(cypher("delete_dictionary"), {"dictionary": dictionary})
    return deleted


@contextmanager
def _old_or_new(store: EmbeddedStore | Neo4jStore, replacing: str | None) -> Iterator[None]:
    """Around the deletes and writes of a replace of `replacing` on the embedded store: a copy
    of the database to go back to if they raise, or if the process dies (the next open rolls
    back). (Neo4j replaces go through `_replace_on_neo4j`.)"""
    if replacing is None or not isinstance(store, EmbeddedStore):
        yield
        return
    store.begin_replace(replacing)
    try:
        yield
    except BaseException:
        store.abort_replace()
        raise
    store.end_replace()


STAGING, RETIRED = "~replacing", "~replaced"
"""Suffixes of the names a Neo4j replace loads the new features and retires the old ones under."""


def _rename(store: Neo4jStore, source: str, target: str, batch_size: int) -> None:
    params = {"from": source, "to": target, "limit": batch_size}
    while store.write(cypher("rename_dictionary_features"), params)[0]["renamed"]:
        pass


def finish_replace(store: EmbeddedStore | Neo4jStore, dictionary: str, batch_size: int = schema.BATCH_ROWS) -> None:
    """Complete or undo a Neo4j replace of `dictionary` that was cut short (module docstring)."""
    if not isinstance(store, Neo4jStore):
        return
    state = store.read(cypher("replace_state"), {"dictionary": dictionary})
    if not state:
        return
    if state[0]["phase"] == "loading":  # the old dictionary is whole: drop what was staged
        delete_features(store, dictionary + STAGING, batch_size)
        store.write(cypher("replace_done"), {"dictionary": dictionary})
        return
    _swap(store, dictionary, json.loads(state[0]["node"]), state[0]["phase"], batch_size)


def _record(store: Neo4jStore, dictionary: str, node: dict, phase: str) -> None:
    """Write the `Replacing` record of a Neo4j replace of `dictionary` at `phase`."""
    store.write(cypher("replace_phase"), {"dictionary": dictionary, "node": json.dumps(node), "phase": phase})


def _swap(store: Neo4jStore, dictionary: str, node: dict, phase: str, batch_size: int) -> None:
    """Phases retiring → promoting → cleaning of a Neo4j replace, from `phase` on; each phase's
    batches can be rerun, so a swap cut short is finished by calling this again."""
    if phase == "retiring":
        _rename(store, dictionary, dictionary + RETIRED, batch_size)
        phase = "promoting"
        _record(store, dictionary, node, phase)
    if phase == "promoting":
        _rename(store, dictionary + STAGING, dictionary, batch_size)
        store.write(cypher("upsert_dictionary"), node)
        phase = "cleaning"
        _record(store, dictionary, node, phase)
    delete_features(store, dictionary + RETIRED, batch_size)
    store.write(cypher("replace_done"), {"dictionary": dictionary})


def _replace_on_neo4j(store: Neo4jStore, t: RunTables, dictionary: str, batch_size: int, progress: bool) -> None:
    """Load `t` (built under the staging name) beside `dictionary`, then swap it in."""
    node = t.dictionary | {"id": dictionary}
    _record(store, dictionary, node, "loading")
    delete_features(store, dictionary + STAGING, batch_size)  # what an attempt cut short before its record left
    for label in ("Token", "Feature", "FEEDS", "PROMOTES", "SUPPRESSES", "FIRES_ON"):
        store.bulk(label, t.tables[label], batch_size, progress)
    _record(store, dictionary, node, "retiring")
    _swap(store, dictionary, node, "retiring", batch_size)


def load_run(
    run: Path,
    store: EmbeddedStore | Neo4jStore,
    name: str | None = None,
    replace: bool = False,
    batch_size: int = schema.BATCH_ROWS,
    rule: MotorRule | None = None,
    progress: bool = True,
) -> LoadResult:
    """Load `run` into `store` (steps of the module docstring)."""
    run = Path(run)
    manifest = read_manifest(run)
    dictionary = name or short_name(manifest["dictionary"])
    model = short_name(manifest["model"])
    store.ensure_schema()
    finish_replace(store, dictionary, batch_size)
    existing = {r["id"]: r for r in store.read(cypher("dictionaries"))}
    if dictionary in existing:
        if existing[dictionary]["inputs_key"] == manifest["inputs_key"] and not replace:
            n = store.read("MATCH (f:Feature) WHERE f.dictionary = $d RETURN count(f) AS n", {"d": dictionary})[0]["n"]
            return LoadResult(dictionary, int(n), 0, skipped=True)
        if not replace:
            raise StoreError(
                f"the store already holds dictionary {dictionary!r} from another run "
                f"({existing[dictionary]['run']}); pass --replace to overwrite it or --name to load beside it"
            )

    present = {r["id"] for r in store.read(cypher("model_tokens"), {"model": model})}
    if isinstance(store, Neo4jStore) and dictionary in existing:
        t = run_tables(run, manifest, dictionary + STAGING, model, rule or MotorRule(), present)  # refuses a bad run
        _replace_on_neo4j(store, t, dictionary, batch_size, progress)
        return LoadResult(dictionary, t.tables["Feature"].num_rows, t.tables["FEEDS"].num_rows, skipped=False)
    t = run_tables(run, manifest, dictionary, model, rule or MotorRule(), present)  # refuses a bad run
    with _old_or_new(store, dictionary if dictionary in existing else None):
        store.write(cypher("delete_dictionary"), {"dictionary": dictionary})
        delete_features(store, dictionary, batch_size)
        for label in ("Token", "Feature", "FEEDS", "PROMOTES", "SUPPRESSES", "FIRES_ON"):
            store.bulk(label, t.tables[label], batch_size, progress)
        store.write(cypher("upsert_dictionary"), t.dictionary)
    features, edges = t.tables["Feature"], t.tables["FEEDS"]
    return LoadResult(dictionary, features.num_rows, edges.num_rows, skipped=False)

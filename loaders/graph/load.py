"""``graphkit load``: a run directory (from ``graphkit collect``) into a store.

1. Read the run's manifest and Parquet files; name the dictionary (``--name`` or the
   dictionary the run was collected with) and its model.
2. If the store already holds this dictionary from the same run inputs, stop: loads are
   idempotent. From other inputs, refuse unless ``replace``.
3. Delete the dictionary's node and features (in batches): a load that was killed half way
   leaves no Dictionary node and is cleaned up here.
4. Bulk-load tokens (only new ones), features (with motor annotations by `MotorRule`), FEEDS
   edges (with twera_norm), PROMOTES / SUPPRESSES / FIRES_ON links.
5. Write the Dictionary node last: its presence marks a complete load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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


def _feature_table(run: Path, dictionary: str, rule: MotorRule) -> tuple[pa.Table, pa.Table]:
    """(Feature rows in schema column order, FIRES_ON rows)."""
    f = pq.read_table(run / "features.parquet")
    ex = pq.read_table(run / "examples.parquet").to_pydict()
    layer, idx = f.column("layer").to_numpy(), f.column("index").to_numpy()
    ids = [schema.feature_id(dictionary, int(a), int(b)) for a, b in zip(layer, idx, strict=True)]
    examples: dict[tuple[int, int], list[tuple[int, str, str]]] = {}
    for n in range(len(ex["layer"])):
        toks, c = ex["tokens"][n], ex["center"][n]
        marked = "".join(f"«{t}»" if i == c else t for i, t in enumerate(toks))
        examples.setdefault((ex["layer"][n], ex["index"][n]), []).append((ex["rank"][n], toks[c], marked))
    ex_tokens, ex_summary, fires_on = [], [], []
    for fid, a, b in zip(ids, layer, idx, strict=True):
        rows = sorted(examples.get((int(a), int(b)), []))
        words = [schema.normalize_token(t) for _, t, _ in rows]
        ex_tokens.append([w for w in words if w])
        ex_summary.append(" | ".join(m.replace("\n", "⏎") for _, _, m in rows[:3]))
        fires_on += [(fid, w, r) for (r, _, _), w in zip(rows, words, strict=True) if w]
    top_z, gap = f.column("top_word_z").to_numpy(), f.column("word_gap").to_numpy()
    motor = [
        w if rule(z, g) else None
        for w, z, g in zip(f.column("top_word").to_pylist(), top_z, gap, strict=True)
    ]
    table = pa.table(
        {
            "id": ids,
            "dictionary": [dictionary] * len(ids),
            "layer": layer,
            "idx": idx,
            "count": f.column("count"),
            "density": f.column("density"),
            "mean": f.column("mean"),
            "max": f.column("max"),
            "top_tokens": f.column("top_tokens"),
            "top_values": f.column("top_values"),
            "bottom_tokens": f.column("bottom_tokens"),
            "bottom_values": f.column("bottom_values"),
            "example_tokens": pa.array(ex_tokens, type=pa.list_(pa.string())),
            "example_summary": ex_summary,
            "motor_word": pa.array(motor, type=pa.string()),
            "motor_score": pa.array(
                [float(g) if m is not None else None for m, g in zip(motor, gap, strict=True)],
                type=pa.float64(),
            ),
        }
    )
    fires = pa.table(
        {
            "source": [r[0] for r in fires_on],
            "word": [r[1] for r in fires_on],
            "rank": pa.array([r[2] for r in fires_on], type=pa.int64()),
        }
    )
    return table, fires


def _edge_table(run: Path, dictionary: str) -> pa.Table:
    c = pq.read_table(run / "connections.parquet")
    sl, si = c.column("source_layer").to_numpy(), c.column("source_index").to_numpy()
    tl, ti = c.column("target_layer").to_numpy(), c.column("target_index").to_numpy()
    twera = c.column("twera").to_numpy()
    src_key = sl.astype(np.int64) * (int(si.max(initial=0)) + 1) + si
    _, inverse = np.unique(src_key, return_inverse=True)
    scale = np.zeros(inverse.max(initial=-1) + 1)
    np.maximum.at(scale, inverse, np.abs(twera))
    return pa.table(
        {
            "source": [schema.feature_id(dictionary, int(a), int(b)) for a, b in zip(sl, si, strict=True)],
            "target": [schema.feature_id(dictionary, int(a), int(b)) for a, b in zip(tl, ti, strict=True)],
            "twera": c.column("twera"),
            "era": c.column("era"),
            "virtual_weight": c.column("virtual_weight"),
            "twera_norm": twera / np.where(scale[inverse] > 0, scale[inverse], 1.0),
        }
    )


def load_run(
    run: Path,
    store: EmbeddedStore | Neo4jStore,
    name: str | None = None,
    replace: bool = False,
    batch_size: int = 10_000,
    rule: MotorRule | None = None,
    progress: bool = True,
) -> LoadResult:
    """Load `run` into `store` (steps of the module docstring)."""
    run = Path(run)
    manifest_path = run / "manifest.json"
    if not manifest_path.exists():
        raise StoreError(f"{run} is not a run directory (no manifest.json); make one with `graphkit collect`")
    manifest = json.loads(manifest_path.read_text())
    missing = [s for s in ("features", "examples", "connections") if not manifest.get("stages", {}).get(s)]
    if missing:
        raise StoreError(
            f"{run}: collect has not finished ({', '.join(missing)} missing); rerun `graphkit collect`"
        )
    dictionary = name or short_name(manifest["dictionary"])
    model = short_name(manifest["model"])
    store.ensure_schema()
    existing = {r["id"]: r for r in store.read(cypher("dictionaries"))}
    if dictionary in existing:
        if existing[dictionary]["inputs_key"] == manifest["inputs_key"] and not replace:
            n = store.read(
                "MATCH (f:Feature) WHERE f.dictionary = $d RETURN count(f) AS n", {"d": dictionary}
            )[0]["n"]
            return LoadResult(dictionary, int(n), 0, skipped=True)
        if not replace:
            raise StoreError(
                f"the store already holds dictionary {dictionary!r} from another run "
                f"({existing[dictionary]['run']}); pass --replace to overwrite it or --name to load beside it"
            )

    store.write(cypher("delete_dictionary"), {"dictionary": dictionary})
    while store.write(cypher("delete_dictionary_features"), {"dictionary": dictionary, "limit": batch_size})[
        0
    ]["deleted"]:
        pass

    features, fires = _feature_table(run, dictionary, rule or MotorRule())
    edges = _edge_table(run, dictionary)
    promotes, suppresses = _unembed_links(features)
    words = set(pc.unique(fires.column("word")).to_pylist())
    words |= set(promotes.column("word").to_pylist()) | set(suppresses.column("word").to_pylist())
    present = {r["id"] for r in store.read(cypher("model_tokens"), {"model": model})}
    new = sorted(w for w in words if schema.token_id(model, w) not in present)
    tokens = pa.table(
        {"id": [schema.token_id(model, w) for w in new], "model": [model] * len(new), "text": new}
    )

    def link(table: pa.Table, cols: list[str]) -> pa.Table:
        target = [schema.token_id(model, w) for w in table.column("word").to_pylist()]
        return pa.table(
            {"source": table.column("source"), "target": target, **{c: table.column(c) for c in cols}}
        )

    store.bulk("Token", tokens, batch_size, progress)
    store.bulk("Feature", features, batch_size, progress)
    store.bulk("FEEDS", edges, batch_size, progress)
    store.bulk("PROMOTES", link(promotes, ["rank", "value", "token"]), batch_size, progress)
    store.bulk("SUPPRESSES", link(suppresses, ["rank", "value", "token"]), batch_size, progress)
    store.bulk("FIRES_ON", link(fires, ["rank"]), batch_size, progress)
    d_layers = sorted(set(features.column("layer").to_pylist()))
    store.write(
        cypher("upsert_dictionary"),
        {
            "id": dictionary,
            "kind": manifest.get("dictionary_kind", ""),
            "model": model,
            "n_layers": len(d_layers),
            "n_features": features.num_rows // max(len(d_layers), 1),
            "read_site": manifest.get("read_site", ""),
            "write_site": manifest.get("write_site", ""),
            "run": str(run.resolve()),
            "inputs_key": manifest["inputs_key"],
        },
    )
    return LoadResult(dictionary, features.num_rows, edges.num_rows, skipped=False)


def _unembed_links(features: pa.Table) -> tuple[pa.Table, pa.Table]:
    """PROMOTES / SUPPRESSES rows: one per (feature, word), at the word's best rank."""
    out = []
    for side in ("top", "bottom"):
        seen: set[tuple[str, str]] = set()
        rows: dict[str, list] = {"source": [], "word": [], "rank": [], "value": [], "token": []}
        for fid, toks, vals in zip(
            features.column("id").to_pylist(),
            features.column(f"{side}_tokens").to_pylist(),
            features.column(f"{side}_values").to_pylist(),
            strict=True,
        ):
            for rank, (tok, val) in enumerate(zip(toks, vals, strict=True)):
                w = schema.normalize_token(tok)
                if w and (fid, w) not in seen:
                    seen.add((fid, w))
                    for k, v in zip(rows, (fid, w, rank, val, tok), strict=True):
                        rows[k].append(v)
        out.append(pa.table({**rows, "rank": pa.array(rows["rank"], type=pa.int64())}))
    return out[0], out[1]

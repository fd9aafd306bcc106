"""`graphkit load --bulk`: Neo4j's offline importer gives the graph a Bolt load gives."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from graphkit import neo4j_local
from loaders.graph.load import load_run
from loaders.graph.store import open_store
from tests.conftest import NEO4J_PASSWORD
from tests.test_graph import dump

pytestmark = pytest.mark.skipif(
    neo4j_local.shutil.which("java") is None or neo4j_local.shutil.which("mvn") is None,
    reason="Java 17 and Maven run the local Neo4j",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _strings(store) -> list:
    """The properties CSV could garble: token lists, summaries, link token strings."""
    feats = store.read(
        "MATCH (f:Feature) RETURN f.id AS id, f.top_tokens AS top, f.bottom_tokens AS bottom, "
        "f.example_tokens AS ex, f.layer AS layer, f.count AS count ORDER BY id"
    )
    links = store.read(
        "MATCH (f:Feature)-[e:PROMOTES]->(t:Token) RETURN f.id AS src, e.rank AS r, e.token AS tok, "
        "e.value AS v, t.text AS text ORDER BY src, r"
    )
    return [feats, links]


@pytest.mark.slow  # ≥ 15 s: `pytest -m slow` (CI runs it)
def test_bulk_import_equals_a_bolt_load(tiny_run: Path, tmp_path: Path) -> None:
    reference = open_store(tmp_path / "embedded")
    load_run(tiny_run, reference, progress=False)
    directory = tmp_path / "neo4j"
    result = neo4j_local.bulk_load(tiny_run, directory, port=_free_port(), password=NEO4J_PASSWORD)
    try:
        store = open_store(result.uri.replace("bolt://", f"bolt://neo4j:{NEO4J_PASSWORD}@"))
        assert dump(store) == dump(reference)
        got, want = _strings(store), _strings(reference)
        for part_got, part_want in zip(got, want, strict=True):
            for g, w in zip(part_got, part_want, strict=True):
                assert g == w, {k: (g[k], w[k]) for k in g if g[k] != w[k]}
        tokens = [t for r in _strings(reference)[0] for t in r["top"]]
        assert any(c in t for t in tokens for c in ',"\n'), "the run exercises CSV quoting"
        assert result.edges > 0 and result.features == len(_strings(reference)[0])
        store.close()
        # a second bulk load would overwrite the database: refused, and nothing changes
        with pytest.raises(neo4j_local.Neo4jLocalError, match="fresh database"):
            neo4j_local.bulk_load(tiny_run, directory, password=NEO4J_PASSWORD)
        store = open_store(result.uri.replace("bolt://", f"bolt://neo4j:{NEO4J_PASSWORD}@"))
        assert dump(store) == dump(reference)
        store.close()
    finally:
        neo4j_local.stop(directory)
        reference.close()


def test_import_files_number_the_nodes_and_ask_for_multiline_fields_only_when_needed(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from loaders.graph import schema
    from loaders.graph.bulk import write_import_files

    def tables(token: str, target: str = "m/b") -> dict[str, pa.Table]:
        types = {"STRING": pa.string(), "INT64": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
        types["STRING[]"] = pa.list_(pa.string())
        feature = {
            k: pa.array([[], []] if t == "STRING[]" else [None, None], types[t])
            for k, t in schema.NODES["Feature"].items()
        }
        feature["id"] = pa.array(["d/0/1", "d/0/2"])
        feature["top_tokens"] = pa.array([[token, "x"], []], types["STRING[]"])
        return {
            "Token": pa.table({"id": ["m/a", "m/b"], "model": ["m", "m"], "text": ["a", "b"]}),
            "Feature": pa.table(feature),
            "FIRES_ON": pa.table({"source": ["d/0/2", "d/0/1"], "target": ["m/a", target], "rank": [0, 1]}),
        }

    plain = write_import_files(tables("plain"), tmp_path / "plain")
    assert not plain.multiline and "--multiline-fields=false" in plain.args() and "--id-type=integer" in plain.args()
    nodes = {label: pacsv.read_csv(path).to_pydict() for label, path in plain.nodes.items()}
    assert nodes["Token"][":ID"] == [0, 1] and nodes["Feature"][":ID"] == [2, 3]
    assert nodes["Feature"]["id:string"] == ["d/0/1", "d/0/2"]
    fires = pacsv.read_csv(plain.relationships["FIRES_ON"]).to_pydict()
    assert (fires[":START_ID"], fires[":END_ID"]) == ([3, 2], [0, 1])  # d/0/2 → m/a, d/0/1 → m/b
    for broken in ("a\nb", "a\rb"):
        assert write_import_files(tables(broken), tmp_path / f"x{len(broken)}{ord(broken[1])}").multiline
    with pytest.raises(ValueError, match="m/zzz"):
        write_import_files(tables("plain", target="m/zzz"), tmp_path / "unknown")

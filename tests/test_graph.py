"""The feature graph on both stores: same rows for every query, safe parameters, clear errors,
idempotent and resumable loads, and the CLI's downstream list equal to connections.parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from graphkit.cli import main
from graphkit.graph import FeatureGraph
from loaders.graph.load import load_run
from loaders.graph.store import CYPHER_DIR, StoreError, open_store, query_stores
from tests.conftest import clear_neo4j

WRITE_QUERIES = {
    "load_token",
    "load_feature",
    "load_feeds",
    "load_promotes",
    "load_suppresses",
    "load_fires_on",
    "delete_dictionary_features",
    "delete_dictionary",
    "upsert_dictionary",
    "fill_empty_lists",  # after a bulk import (tests/test_bulk.py)
    "write_prompt",
    "write_activations",
    "delete_prompt_activations",
    "write_steering",
    "link_steering",
    "delete_orphan_steering",  # tests/test_cli.py (graphkit drop)
    "delete_dictionary_relationships",
    "write_description",  # tests/test_describe.py
    "write_direction",  # tests/test_direction.py
    "delete_direction_edges",
    "write_direction_edges",
    "link_direction_steering",
    "delete_dictionary_directions",
    "replace_phase",  # a Neo4j replace's steps (tests/test_load_safety.py)
    "replace_done",
    "rename_dictionary_features",
}


def write_prompt_and_steering(store) -> None:
    """A prompt with activations and one steering result, through the write queries."""
    from loaders.graph.store import cypher

    ids = [r["id"] for r in store.read("MATCH (f:Feature) RETURN f.id AS id ORDER BY id LIMIT 4")]
    store.write(
        cypher("write_prompt"),
        {"id": "p1", "model": "model", "text": "What is green?", "tokens": ["<|bos|>", "What", " is", " green", "?"]},
    )
    store.write(cypher("delete_prompt_activations"), {"prompt": "p1", "dictionary": "clt"})
    store.write_rows(
        cypher("write_activations"),
        [
            {"feature": fid, "prompt": "p1", "position": p, "token": "x", "activation": 0.5 * (i + 1) + p}
            for i, fid in enumerate(ids)
            for p in (1, 3)
        ],
        batch_size=3,
    )
    store.write(
        cypher("write_steering"),
        {
            "id": "s1",
            "prompt": "p1",
            "mode": "mul",
            "value": -1.0,
            "positions": "all",
            "baseline": " green",
            "steered": " blue",
            "baseline_answer": "green",
            "steered_answer": "blue",
            "changed": True,
            "answer_token": "green",
            "logit_before": 3.0,
            "logit_after": 1.0,
            "prob_before": 0.9,
            "prob_after": 0.2,
            "on_generated": True,
            "max_new_tokens": 12,
        },
    )
    store.write_rows(cypher("link_steering"), [{"feature": ids[0], "steering": "s1"}], batch_size=10)
    did = "clt/direction/d1"  # a direction with three downstream edges, through the write queries
    store.write(
        cypher("write_direction"),
        {"id": did, "dictionary": "clt", "name": "d1", "layer": 0, "bias": 0.0, "read_site": None,
         "vector": [0.5, -1.0], "read_vector": [0.4, -0.8], "count": 3, "density": 0.1, "mean": 0.01, "max": 1.5,
         "top_tokens": ["a", "b"], "bottom_tokens": ["c"]},
    )  # fmt: skip
    store.write(cypher("delete_direction_edges"), {"id": did})
    store.write(cypher("link_direction_steering"), {"direction": did, "steering": "s1"})
    store.write_rows(
        cypher("write_direction_edges"),
        [{"source": did, "target": fid, "twera": 0.3 - 0.2 * i, "era": 0.01 * i, "virtual_weight": 0.5,
          "twera_norm": 1.0}
         for i, fid in enumerate(ids[1:])],
        batch_size=10,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stores(tiny_run: Path, neo4j_uri: str, tmp_path_factory: pytest.TempPathFactory):
    clear_neo4j(neo4j_uri)
    embedded = open_store(tmp_path_factory.mktemp("store") / "graph")
    neo = open_store(neo4j_uri)
    for s in (embedded, neo):
        load_run(tiny_run, s, batch_size=500, progress=False)
        write_prompt_and_steering(s)
    yield {"embedded": embedded, "neo4j": neo}


def canonical(rows: list[dict[str, Any]], ordered: bool) -> list[Any]:
    def norm(v: Any) -> Any:
        if isinstance(v, list):
            return sorted(v) if all(isinstance(x, str) for x in v) else v
        return v

    out = [tuple(sorted((k, norm(v)) for k, v in r.items())) for r in rows]
    return out if ordered else sorted(out, key=repr)


def query_params(g: FeatureGraph) -> dict[str, dict[str, Any]]:
    src = g.store.read(
        "MATCH (f:Feature)-[:FEEDS]->(:Feature)-[:FEEDS]->(:Feature) RETURN f.id AS id ORDER BY id LIMIT 1"
    )[0]["id"]
    tgt = g.store.read("MATCH (:Feature)-[:FEEDS]->(f:Feature) RETURN f.id AS id ORDER BY id LIMIT 1")[0]["id"]
    word = g.store.read(
        "MATCH (:Feature)-[:PROMOTES]->(t:Token) RETURN t.text AS w, count(*) AS n ORDER BY n DESC, w LIMIT 1"
    )[0]["w"]
    fired = g.store.read(
        "MATCH (:Feature)-[:FIRES_ON]->(t:Token) RETURN t.text AS w, count(*) AS n ORDER BY n DESC, w LIMIT 1"
    )[0]["w"]
    window = {"min_layer": -1, "max_layer": 99}
    return {
        "downstream": {"id": src, "k": 8, "sign": 0.0, "by": "era", **window},
        "upstream": {"id": tgt, "k": 8, "sign": -1.0, "by": "twera", **window},
        "motor_paths": {"id": src, "k": 20},
        "motor_features": {"dictionary": g.dictionary, "word": ""},
        "features_by_unembed": {"dictionary": g.dictionary, "word": word, "k": 10},
        "features_by_example_token": {"dictionary": g.dictionary, "word": fired, "k": 10},
        "lookalikes": {"id": src, "window": 1, "k": 10},
        "feature": {"id": src},
        "dictionaries": {},
        "model_tokens": {"model": "model"},
        "features_by_id": {"ids": [src, tgt]},
        "unembeds": {"id": src},
        "prompt_features": {"prompt": "p1", "dictionary": g.dictionary, "word": "", "k": 10},
        "prompt": {"id": "p1"},
        "direction": {"id": f"{g.dictionary}/direction/d1"},
        "directions": {"dictionary": g.dictionary},
        "direction_downstream": {"id": f"{g.dictionary}/direction/d1", "k": 2},
        "direction_steering": {"id": f"{g.dictionary}/direction/d1"},
        "feature_steering": {
            "id": g.store.read("MATCH (f:Feature)-[:STEERED]->(:Steering) RETURN f.id AS id")[0]["id"]
        },
    }


def test_every_query_gives_the_same_rows_on_both_stores(stores) -> None:
    files = {p.stem for p in CYPHER_DIR.glob("*.cypher") if query_stores(p.stem) == set(stores)} - WRITE_QUERIES
    g = FeatureGraph(stores["embedded"])
    params = query_params(g)
    assert files == set(params), "every read query in cypher/ is exercised here"
    for name, p in params.items():
        text = (CYPHER_DIR / f"{name}.cypher").read_text()
        ordered = "ORDER BY" in text
        a = stores["embedded"].read(text, p)
        b = stores["neo4j"].read(text, p)
        if name == "dictionaries":
            for r in a + b:
                r.pop("run")  # absolute path of the run: the same run, spelled the same
        assert canonical(a, ordered) == canonical(b, ordered), name
        if name not in ("motor_paths",):
            assert a, f"{name} returned nothing: the test graph should exercise it"


def test_motor_feature_is_marked_and_reached(stores) -> None:
    for store in stores.values():
        g = FeatureGraph(store)
        motors = g.motor_features()
        assert [m.word for m in motors] == ["green"]
        assert (motors[0].layer, motors[0].index) == (2, 3)
        upstream = g.upstream(2, 3, k=3)
        assert upstream, "the planted motor feature has upstream edges"
        paths = g.motor_paths(upstream[0].layer, upstream[0].index, k=5)
        assert any(p.id == motors[0].id and p.hops == 1 for p in paths)
        for p in paths:
            assert p.via[0] == g.id(upstream[0].layer, upstream[0].index) and p.via[-1] == p.id


def test_cli_downstream_json_equals_connections_parquet(stores, tiny_run: Path) -> None:
    conn = pq.read_table(tiny_run / "connections.parquet").to_pydict()
    src = (0, int(conn["source_index"][0])) if conn["source_layer"][0] == 0 else (0, 0)
    expected = [
        {
            "layer": conn["target_layer"][i],
            "index": conn["target_index"][i],
            "twera": conn["twera"][i],
            "era": conn["era"][i],
            "virtual_weight": conn["virtual_weight"][i],
        }
        for i in range(len(conn["twera"]))
        if (conn["source_layer"][i], conn["source_index"][i]) == src
    ][:5]
    assert expected
    for store in stores.values():
        out = CliRunner().invoke(
            main,
            [
                "downstream",
                f"{src[0]}/{src[1]}",
                "--store",
                store.spec,
                "--k",
                "5",
                "--json",
            ],
            env=_env(store),
        )
        assert out.exit_code == 0, out.output
        nb = json.loads(out.output)
        nodes = {n["id"]: n for n in nb["nodes"]}
        got = [
            {"layer": nodes[e["target"]]["layer"], "index": nodes[e["target"]]["index"]}
            | {k: e[k] for k in ("twera", "era", "virtual_weight")}
            for e in nb["edges"]
        ]
        assert got == expected
        twera = [abs(r["twera"]) for r in got]
        assert twera == sorted(twera, reverse=True)


def _env(store) -> dict[str, str]:
    from tests.conftest import NEO4J_PASSWORD

    return {"NEO4J_USER": "neo4j", "NEO4J_PASSWORD": NEO4J_PASSWORD}


@pytest.mark.parametrize(
    "evil",
    [
        "x'}) DETACH DELETE f //",
        '"}) MATCH (n) DETACH DELETE n //',
        "0/0' OR 1=1 --",
        "}]->(x) CREATE (y:Feature {id: 'pwned'}) //",
    ],
)
def test_injection_through_parameters_changes_nothing(stores, evil: str) -> None:
    for store in stores.values():
        before = store.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
        g = FeatureGraph(store)
        assert g.run("downstream", id=evil, k=5, sign=0.0, min_layer=-1, max_layer=99, by=evil) == []
        assert g.run("features_by_unembed", dictionary=evil, word=evil, k=5) == []
        assert g.run("lookalikes", id=evil, window=1, k=5) == []
        res = CliRunner().invoke(
            main,
            [
                "query",
                "motor_features",
                "--store",
                store.spec,
                "--param",
                f"dictionary={evil}",
                "--param",
                f"word={evil}",
            ],
            env=_env(store),
        )
        assert res.exit_code == 0, res.output
        assert store.read("MATCH (n) RETURN count(n) AS n")[0]["n"] == before
        assert store.read("MATCH (f:Feature {id: 'pwned'}) RETURN count(f) AS n")[0]["n"] == 0


SECRET = Path("/tmp/graphkit-test-secret.txt")
"""A file the statements below try to read (0600) or to write next to."""

REFUSED_STATEMENTS = [
    "CREATE (:Token {id: 'w', model: 'm', text: 'w'})",
    "MATCH (f:Feature) DETACH DELETE f",
    "match (f:Feature) set f.density = 0 return f.id",
    "MATCH (f:Feature) WITH f MERGE (t:Token {id: 'x'}) RETURN count(*)",
    # guard bypasses found before: a quote in a block comment, a backtick name, a bare \r
    "MATCH (n) /* ' */ CREATE (:Token {id: 'c1', model: 'm', text: 'c'}) //'",
    "MATCH (`a'`) CREATE (:Token {id: 'c2', model: 'm', text: 'c'}) RETURN 1 //`",
    "MATCH (f:Feature) RETURN f.id // c\rCREATE (:Token {id: 'c3', model: 'm', text: 'c'})",
    # files, the network, server state
    f"LOAD CSV FROM 'file://{SECRET}' AS l RETURN l",
    "LOAD CSV FROM 'http://127.0.0.1:9/x.csv' AS l RETURN l",
    f"LOAD FROM '{SECRET}' RETURN *",
    f"COPY (MATCH (f:Feature) RETURN f.id) TO '{SECRET}.out.csv'",
    f"EXPORT DATABASE '{SECRET}.export'",
    "CHECKPOINT",
    "SHOW TRANSACTIONS",
    "TERMINATE TRANSACTIONS 'neo4j-transaction-1'",
    "CALL dbms.components()",
]


@pytest.mark.parametrize("statement", REFUSED_STATEMENTS)
def test_cypher_command_refuses_writes(stores, statement: str) -> None:
    SECRET.write_text("secret\n")
    SECRET.chmod(0o600)
    for store in stores.values():
        before = store.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
        res = CliRunner().invoke(main, ["cypher", statement, "--store", store.spec], env=_env(store))
        assert res.exit_code != 0 and "read-only" in res.output, res.output
        assert "secret" not in res.output
        assert store.read("MATCH (n) RETURN count(n) AS n")[0]["n"] == before
    assert not Path(f"{SECRET}.out.csv").exists() and not Path(f"{SECRET}.export").exists()
    # reads pass
    res = CliRunner().invoke(
        main,
        ["cypher", "MATCH (f:Feature) RETURN count(f) AS n", "--store", stores["embedded"].spec, "--json"],
    )
    assert res.exit_code == 0 and json.loads(res.output)[0]["n"] == 72, res.output


@pytest.mark.parametrize(
    "statement",
    [
        # keywords as map keys and properties
        "MATCH (f:Feature) WITH {load: 1, set: 2} AS m RETURN m.load AS l, m.set AS s LIMIT 1",
        "MATCH (f:Feature) /* CREATE */ RETURN count(f) AS n",
        "MATCH (f:Feature) WHERE f.id <> 'CREATE (x)' RETURN count(f) AS n",
    ],
)
def test_reads_that_look_like_writes_pass(stores, statement: str) -> None:
    for store in stores.values():
        res = CliRunner().invoke(main, ["cypher", statement, "--store", store.spec, "--json"], env=_env(store))
        assert res.exit_code == 0, res.output


def test_neo4j_plans_are_checked_before_a_read_runs(stores) -> None:
    from loaders.graph import store as store_module

    neo = open_store(stores["neo4j"].spec.replace("bolt://", "bolt://neo4j:graphkit-test-pw@"), read_only=True)
    original = store_module.check_read_only
    store_module.check_read_only = lambda q: None  # the guard missed it: Neo4j's plan still says 'w'
    try:
        with pytest.raises(StoreError, match="plans this statement as 'w'"):
            neo.read("CREATE (:Token {id: 'planned', model: 'm', text: 'p'})")
    finally:
        store_module.check_read_only = original
    assert stores["neo4j"].read("MATCH (t:Token {id: 'planned'}) RETURN count(t) AS n")[0]["n"] == 0


@pytest.mark.parametrize(
    "statement",
    [
        f"COPY (MATCH (f:Feature) RETURN f.id) TO '{SECRET}.out.csv'",
        f"LOAD FROM '{SECRET}' (file_format='csv') RETURN *",
        "CHECKPOINT",
        "CALL show_tables() RETURN *",
    ],
)
def test_embedded_plans_are_checked_before_a_read_runs(stores, statement: str) -> None:
    from loaders.graph import store as store_module

    SECRET.write_text("secret\n")
    embedded = stores["embedded"]
    original = store_module.check_read_only
    store_module.check_read_only = lambda q: None  # the guard missed it: LadybugDB's plan still refuses
    try:
        with pytest.raises(StoreError, match="LadybugDB plans this statement with"):
            embedded.read(statement)
    finally:
        store_module.check_read_only = original
    assert not Path(f"{SECRET}.out.csv").exists()


def test_query_names_are_names_not_paths(stores) -> None:
    res = CliRunner().invoke(main, ["query", "../cypher/feature", "--store", stores["embedded"].spec])
    assert res.exit_code == 1 and "named by its file's stem" in res.output


def test_neo4j_read_only_session_refuses_writes_the_guard_misses(stores) -> None:
    neo = open_store(stores["neo4j"].spec.replace("bolt://", "bolt://neo4j:graphkit-test-pw@"), read_only=True)
    with pytest.raises(StoreError):
        # a write the keyword guard cannot see: a procedure call that writes is refused by the server
        neo._execute("CREATE (:Token {id: 'sneaky', model: 'm', text: 's'})", None, write=False)
    assert stores["neo4j"].read("MATCH (t:Token {id: 'sneaky'}) RETURN count(t) AS n")[0]["n"] == 0


def test_unreachable_store_wrong_password_and_missing_dictionary(stores, neo4j_uri: str, tmp_path: Path) -> None:
    from tests.conftest import _free_port

    with pytest.raises(StoreError, match="cannot reach Neo4j"):
        open_store(f"bolt://neo4j:whatever1@127.0.0.1:{_free_port()}")
    with pytest.raises(StoreError, match="refused the credentials"):
        open_store(neo4j_uri.replace("graphkit-test-pw", "wrong-password"))
    for store in stores.values():
        with pytest.raises(StoreError, match="no dictionary 'other-clt'"):
            FeatureGraph(store, "other-clt")
    with pytest.raises(StoreError, match="no graph store"):
        open_store(tmp_path / "nothing", read_only=True)
    res = CliRunner().invoke(main, ["downstream", "0/0", "--store", str(tmp_path / "nothing")])
    assert res.exit_code != 0 and "no graph store" in res.output
    res = CliRunner().invoke(main, ["downstream", "9/0", "--store", stores["embedded"].spec])
    assert res.exit_code != 0 and "no feature 9/0" in res.output


def dump(store) -> list[Any]:
    nodes = [
        r | {"l": label}
        for label in ("Dictionary", "Feature", "Token")
        for r in store.read(f"MATCH (n:{label}) RETURN n.id AS id")
    ]
    feats = store.read(
        "MATCH (f:Feature) RETURN f.id AS id, f.density AS d, f.motor_word AS m, f.example_summary AS s ORDER BY id"
    )
    edges = store.read(
        "MATCH (a)-[e:FEEDS]->(b) RETURN a.id AS src, b.id AS tgt, e.twera AS w, e.twera_norm AS n ORDER BY src, tgt"
    )
    links = store.read(
        "MATCH (a:Feature)-[e]->(t:Token) RETURN a.id AS src, t.id AS tok, e.rank AS r ORDER BY src, tok, r"
    )
    labels = sorted((str(r["l"]).strip("[]'"), r["id"]) for r in nodes)
    return [labels, feats, edges, links]


@pytest.mark.parametrize("kind", ["embedded", "neo4j"])
def test_killed_load_then_rerun_gives_the_same_graph(
    tiny_run: Path, neo4j_uri: str, tmp_path: Path, kind: str, stores
) -> None:
    reference = dump(stores[kind])
    if kind == "embedded":
        store = open_store(tmp_path / "g")
    else:
        clear_neo4j(neo4j_uri)
        store = open_store(neo4j_uri)
    original = store.bulk
    calls = {"n": 0}

    def dying_bulk(name, table, batch_size, progress=False):
        calls["n"] += 1
        if name == "PROMOTES":
            original(name, table.slice(0, table.num_rows // 2), batch_size, progress)
            raise KeyboardInterrupt
        return original(name, table, batch_size, progress)

    store.bulk = dying_bulk  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        load_run(tiny_run, store, batch_size=100, progress=False)
    store.bulk = original  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="holds no dictionary"):
        FeatureGraph(store)
    result = load_run(tiny_run, store, batch_size=100, progress=False)
    assert not result.skipped
    assert dump(store) == reference
    again = load_run(tiny_run, store, batch_size=100, progress=False)
    assert again.skipped and dump(store) == reference
    if kind == "neo4j":  # leave the shared server as the module fixture expects
        clear_neo4j(neo4j_uri)
        load_run(tiny_run, stores["neo4j"], batch_size=500, progress=False)
        write_prompt_and_steering(stores["neo4j"])


@pytest.mark.parametrize("by", ["era", "virtual_weight"])
def test_downstream_by_another_measure_reorders_the_kept_edges(stores, tiny_run: Path, by: str) -> None:
    """`--by era|virtual_weight`: the kept edges of connections.parquet, ranked by that measure,
    from both stores."""
    import pyarrow.parquet as pq

    conn = pq.read_table(tiny_run / "connections.parquet").to_pylist()
    g = FeatureGraph(stores["embedded"])
    (src_layer, src_index) = max(
        {(r["source_layer"], r["source_index"]) for r in conn},
        key=lambda s: sum((r["source_layer"], r["source_index"]) == s for r in conn),
    )
    kept = [r for r in conn if (r["source_layer"], r["source_index"]) == (src_layer, src_index)]
    expected = sorted(kept, key=lambda r: (-abs(r[by]), r["target_layer"], r["target_index"]))[:5]
    for s in stores.values():
        got = FeatureGraph(s).downstream(src_layer, src_index, k=5, by=by)  # type: ignore[arg-type]
        assert [(e.layer, e.index) for e in got] == [(r["target_layer"], r["target_index"]) for r in expected]
    with pytest.raises(ValueError, match="rank edges by one of"):
        g.downstream(src_layer, src_index, by="effectiveness")  # type: ignore[arg-type]


def test_many_embedded_stores_can_be_open_at_once(tmp_path: Path) -> None:
    """LadybugDB reserves max_db_size of address space per open database: at its default
    (8 TiB) the 16th open store in a process failed ("Mmap … failed"), which made a read in
    the test suite fail at random. graphkit asks for 1 TiB (loaders.graph.store.MAX_DB_SIZE)."""
    stores = [open_store(tmp_path / f"s{i}") for i in range(40)]
    for s in stores:
        s.ensure_schema()
    assert all(s.read("MATCH (f:Feature) RETURN count(f) AS n")[0]["n"] == 0 for s in stores)
    for s in stores:
        s.close()

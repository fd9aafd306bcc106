"""A bad run never removes a loaded dictionary: `graphkit load --replace` checks the whole run
before it deletes anything, and both stores refuse the same bad runs with a clear message."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from graphkit.cli import main
from loaders.graph.load import load_run
from loaders.graph.store import open_store
from tests.conftest import NEO4J_PASSWORD, loaded_store


def _edit(name: str, change: Callable[[pa.Table], pa.Table], rehash: bool = True) -> Callable[[Path], None]:
    """Rewrite a run file; with `rehash`, its manifest is made to describe the new file (a run
    whose files are consistent with its manifest but wrong), else the manifest is left alone."""

    def apply(run: Path) -> None:
        from loaders.corpus import file_hash

        pq.write_table(change(pq.read_table(run / name)), run / name)
        if rehash:
            manifest = json.loads((run / "manifest.json").read_text())
            manifest["outputs"][name] = file_hash(run / name)
            (run / "manifest.json").write_text(json.dumps(manifest))

    return apply


def _doubled(t: pa.Table) -> pa.Table:
    twera = pc.multiply(t.column("twera"), 2.0)
    return t.set_column(t.schema.get_field_index("twera"), "twera", twera)


def _truncate(run: Path) -> None:
    from loaders.corpus import file_hash

    data = (run / "features.parquet").read_bytes()
    (run / "features.parquet").write_bytes(data[: len(data) // 2])
    manifest = json.loads((run / "manifest.json").read_text())  # as if collect had written it so
    manifest["outputs"]["features.parquet"] = file_hash(run / "features.parquet")
    (run / "manifest.json").write_text(json.dumps(manifest))


def _unknown_target(t: pa.Table) -> pa.Table:
    col = t.column("target_index").to_pylist()
    col[0] = 99_999
    return t.set_column(t.schema.get_field_index("target_index"), "target_index", pa.array(col, pa.int64()))


def _unknown_example(t: pa.Table) -> pa.Table:
    col = t.column("index").to_pylist()
    col[-1] = 88_888
    return t.set_column(t.schema.get_field_index("index"), "index", pa.array(col, t.schema.field("index").type))


def _nan_twera(t: pa.Table) -> pa.Table:
    col = t.column("twera").to_pylist()
    col[3] = float("nan")
    return t.set_column(t.schema.get_field_index("twera"), "twera", pa.array(col, pa.float64()))


BAD_RUNS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated features": (_truncate, "features.parquet: cannot read it"),
    "missing connections": (lambda run: (run / "connections.parquet").unlink(), "connections.parquet: cannot read it"),
    "edge to an unknown feature": (_edit("connections.parquet", _unknown_target), "name features that features"),
    "example of an unknown feature": (_edit("examples.parquet", _unknown_example), "name features that features"),
    "duplicated features": (
        _edit("features.parquet", lambda t: pa.concat_tables([t, t.slice(0, 2)])),
        "more than once",
    ),
    "layer as strings": (
        _edit("features.parquet", lambda t: t.set_column(0, "layer", pc.cast(t.column("layer"), pa.string()))),
        "column 'layer' is string, expected integer",
    ),
    "a NaN edge": (_edit("connections.parquet", _nan_twera), "non-finite twera"),
    "no manifest": (lambda run: (run / "manifest.json").unlink(), "not a run directory"),
    "files of another run": (_edit("connections.parquet", _doubled, rehash=False), "is not the file"),
    "unfinished": (
        lambda run: (run / "manifest.json").write_text(
            json.dumps(json.loads((run / "manifest.json").read_text()) | {"stages": {}, "inputs_key": "x"})
        ),
        "collect has not finished",
    ),
}


@pytest.fixture(params=["embedded", "neo4j"])
def loaded(request, tiny_run: Path, tmp_path: Path) -> tuple[str, dict[str, int]]:
    spec = loaded_store(request.param, request, tiny_run, tmp_path, name="good")
    return spec, counts(spec)


def counts(spec: str) -> dict[str, int]:
    store = open_store(spec, read_only=True)
    out = {
        "features": store.read("MATCH (f:Feature {dictionary: 'good'}) RETURN count(f) AS n")[0]["n"],
        "edges": store.read("MATCH (f:Feature {dictionary: 'good'})-[e:FEEDS]->() RETURN count(e) AS n")[0]["n"],
        "dictionaries": store.read("MATCH (d:Dictionary {id: 'good'}) RETURN count(d) AS n")[0]["n"],
    }
    store.close()
    return out


@pytest.mark.parametrize("bad", list(BAD_RUNS))
def test_a_bad_run_is_refused_and_the_loaded_dictionary_stays(
    loaded: tuple[str, dict[str, int]], tiny_run: Path, tmp_path: Path, bad: str
) -> None:
    spec, before = loaded
    run = tmp_path / "bad-run"
    shutil.copytree(tiny_run, run)
    spoil, message = BAD_RUNS[bad]
    spoil(run)
    res = CliRunner().invoke(
        main, ["load", str(run), "--store", spec, "--name", "good", "--replace"], env={"NEO4J_PASSWORD": NEO4J_PASSWORD}
    )
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output
    assert counts(spec) == before and before["edges"] > 0


def test_a_store_left_mid_checkpoint_is_recovered_for_reading(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed during a checkpoint leaves a store LadybugDB will not open read-only
    (seen in 2 of 16 SIGKILLs of a load: docs/reliability.md). Reads recover it with the
    engine's own recovery (one read-write open) instead of failing."""
    import ladybug

    from loaders.graph.store import PENDING_RECOVERY

    spec = str(tmp_path / "graph")
    s = open_store(spec)
    load_run(tiny_run, s, progress=False)
    s.close()
    real, opened = ladybug.Database, []

    def database(path: str, read_only: bool = False, **options: object):
        opened.append(read_only)
        if read_only and len(opened) == 1:
            raise RuntimeError(f"Runtime exception: Cannot open database in read-only mode while {PENDING_RECOVERY}.")
        return real(path, read_only=read_only, **options)

    monkeypatch.setattr(ladybug, "Database", database)
    res = CliRunner().invoke(main, ["cypher", "MATCH (f:Feature) RETURN count(f) AS n", "--store", spec, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == [{"n": 72}] and opened == [True, False, True]


def _other_good_run(tiny_run: Path, tmp_path: Path) -> Path:
    """A consistent run that differs from tiny_run (every TWERA doubled): a legitimate replace."""
    run = tmp_path / "other-run"
    shutil.copytree(tiny_run, run)
    _edit("connections.parquet", _doubled)(run)
    return run


def _tweras(spec: str) -> list[float]:
    store = open_store(spec, read_only=True)
    rows = store.read("MATCH (:Feature {dictionary: 'good'})-[e:FEEDS]->() RETURN e.twera AS t ORDER BY t")
    store.close()
    return [r["t"] for r in rows]


def _bulk_fails_at(monkeypatch: pytest.MonkeyPatch, store_class: type, label: str) -> Callable[[], None]:
    """Make `store_class.bulk` raise when it reaches `label`'s rows; returns what puts it back."""
    real = store_class.bulk

    def failing(self, name: str, table: pa.Table, batch_size: int, progress: bool = False) -> None:  # type: ignore[no-untyped-def]
        if name == label:
            raise OSError(f"write failed at {label} (injected)")
        real(self, name, table, batch_size, progress)

    monkeypatch.setattr(store_class, "bulk", failing)
    return lambda: monkeypatch.setattr(store_class, "bulk", real)


def test_a_replace_that_fails_midway_leaves_the_old_dictionary(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loaders.graph.store import REPLACE_BACKUP, REPLACE_MARKER, EmbeddedStore

    spec = loaded_store("embedded", None, tiny_run, tmp_path, name="good")  # type: ignore[arg-type]
    before, old = counts(spec), _tweras(spec)
    run = _other_good_run(tiny_run, tmp_path)
    restore = _bulk_fails_at(monkeypatch, EmbeddedStore, "FEEDS")  # old features deleted, new ones written
    store = open_store(spec)
    with pytest.raises(OSError, match="injected"):
        load_run(run, store, name="good", replace=True, progress=False)
    assert store.read("MATCH (f:Feature {dictionary: 'good'}) RETURN count(f) AS n")[0]["n"] == before["features"]
    store.close()
    assert counts(spec) == before and _tweras(spec) == old
    assert not (Path(spec) / REPLACE_BACKUP).exists() and not (Path(spec) / REPLACE_MARKER).exists()
    restore()
    store = open_store(spec)
    load_run(run, store, name="good", replace=True, progress=False)  # and the replace still works
    store.close()
    assert _tweras(spec) == sorted(2 * t for t in old)


def test_a_replace_killed_midway_is_rolled_back_when_the_store_is_next_opened(tiny_run: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    spec = loaded_store("embedded", None, tiny_run, tmp_path, name="good")  # type: ignore[arg-type]
    before, old = counts(spec), _tweras(spec)
    run, ready = _other_good_run(tiny_run, tmp_path), tmp_path / "ready"
    script = f"""
import pathlib, time
from loaders.graph.load import load_run
from loaders.graph.store import EmbeddedStore, open_store
real = EmbeddedStore.bulk
def bulk(self, name, table, batch_size, progress=False):
    real(self, name, table, batch_size, progress)
    if name == "Feature":  # old features deleted, new ones written: die here
        pathlib.Path({str(ready)!r}).write_text("x")
        time.sleep(600)
EmbeddedStore.bulk = bulk
load_run(pathlib.Path({str(run)!r}), open_store({spec!r}), name="good", replace=True, progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.time() + 120
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert ready.exists(), "the replace reached its writes"
    finally:
        proc.kill()
        proc.wait()
    with pytest.warns(UserWarning, match="a replace was interrupted"):
        open_store(spec, read_only=True).close()
    assert counts(spec) == before and _tweras(spec) == old


def _leftovers(spec: str) -> dict[str, int]:
    """What a Neo4j replace leaves behind until it is finished: its record, staged or retired features."""
    store = open_store(spec, read_only=True)
    out = {
        "records": store.read("MATCH (r:Replacing) RETURN count(r) AS n")[0]["n"],
        "other features": store.read("MATCH (f:Feature) WHERE f.dictionary STARTS WITH 'good~' RETURN count(f) AS n")[
            0
        ]["n"],
    }
    store.close()
    return out


def test_a_neo4j_replace_that_fails_while_loading_leaves_the_old_dictionary(
    tiny_run: Path, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No copy of a Neo4j database to go back to: the new features are staged beside the old, and
    a failure (or a kill: nothing is cleaned up on the way out) leaves the old one whole."""
    from loaders.graph.store import Neo4jStore

    spec = loaded_store("neo4j", request, tiny_run, tmp_path, name="good")
    before, old = counts(spec), _tweras(spec)
    run = _other_good_run(tiny_run, tmp_path)
    restore = _bulk_fails_at(monkeypatch, Neo4jStore, "PROMOTES")  # new features and FEEDS edges written
    store = open_store(spec)
    with pytest.raises(OSError, match="injected"):
        load_run(run, store, name="good", replace=True, progress=False)
    store.close()
    assert counts(spec) == before and _tweras(spec) == old  # readers see the old dictionary
    assert _leftovers(spec) == {"records": 1, "other features": before["features"]}
    restore()
    store = open_store(spec)
    load_run(run, store, name="good", replace=True, progress=False, batch_size=97)
    store.close()
    assert _tweras(spec) == sorted(2 * t for t in old) and counts(spec) == before
    assert _leftovers(spec) == {"records": 0, "other features": 0}
    # the graph a replace leaves is the graph a fresh load of the new run gives: ids, properties, links
    from tests.test_graph import dump

    fresh = open_store(tmp_path / "fresh")
    load_run(run, fresh, name="good", progress=False)
    replaced = open_store(spec, read_only=True)
    assert dump(replaced) == dump(fresh)
    replaced.close()
    fresh.close()


@pytest.mark.parametrize("cut", ["retiring", "promoting", "cleaning"])
def test_a_neo4j_replace_cut_short_in_its_swap_is_finished_by_the_next_load(
    tiny_run: Path, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    """Cut after the first batch of a swap phase, the replace is finished by the next load of the
    same run (or a drop): the new dictionary whole, nothing staged or retired left."""
    import loaders.graph.load as load

    spec = loaded_store("neo4j", request, tiny_run, tmp_path, name="good")
    before, old = counts(spec), _tweras(spec)
    run = _other_good_run(tiny_run, tmp_path)
    real_rename, real_delete = load._rename, load.delete_features

    def rename(store, source: str, target: str, batch_size: int) -> None:  # type: ignore[no-untyped-def]
        moving = {"retiring": "good", "promoting": "good~replacing"}.get(cut)
        if source == moving:
            store.write(load.cypher("rename_dictionary_features"), {"from": source, "to": target, "limit": 50})
            raise OSError(f"killed while {cut} (injected)")
        real_rename(store, source, target, batch_size)

    def delete(store, dictionary: str, batch_size: int = 10_000) -> int:  # type: ignore[no-untyped-def]
        if cut == "cleaning" and dictionary == "good~replaced":
            store.write(load.cypher("delete_dictionary_features"), {"dictionary": dictionary, "limit": 50})
            raise OSError("killed while cleaning (injected)")
        return real_delete(store, dictionary, batch_size)

    monkeypatch.setattr(load, "_rename", rename)
    monkeypatch.setattr(load, "delete_features", delete)
    store = open_store(spec)
    with pytest.raises(OSError, match="injected"):
        load_run(run, store, name="good", replace=True, progress=False)
    store.close()
    assert _leftovers(spec)["records"] == 1
    monkeypatch.setattr(load, "_rename", real_rename)
    monkeypatch.setattr(load, "delete_features", real_delete)
    store = open_store(spec)
    result = load_run(run, store, name="good", progress=False)  # no --replace: only the finishing writes
    store.close()
    assert result.skipped
    assert _tweras(spec) == sorted(2 * t for t in old) and counts(spec) == before
    assert _leftovers(spec) == {"records": 0, "other features": 0}

"""Two stores that speak the same Cypher: embedded LadybugDB (default) and Neo4j over Bolt.

`open_store(spec)` takes a directory (embedded; the database file is ``DIR/graph.lbug``) or a
``bolt://`` / ``neo4j://`` URI (credentials from the URI, else ``NEO4J_USER`` /
``NEO4J_PASSWORD``). Both answer:

- ``read(query, params)`` → list of dicts (read-only: a write is refused);
- ``write(query, params)``; ``write_rows(query, rows, batch_size)``: ``UNWIND $rows`` in one
  transaction per batch;
- ``bulk(label_or_rel, table)``: the fastest keyed bulk load each store has (LadybugDB
  ``COPY … FROM`` an Arrow table; Neo4j batched ``UNWIND … MERGE`` from ``cypher/load_*``).

The dialect differences live here and in `schema` (DDL), nowhere else: the query files use
the subset both engines run the same way (no list comprehensions, no null parameters, no
``index`` identifier — reserved in LadybugDB).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
from tqdm import tqdm

from loaders.errors import GraphkitError
from loaders.graph import schema


def _cypher_dir() -> Path:
    """cypher/ of the source tree, or its copy inside an installed wheel (loaders/graph/cypher)."""
    packaged = Path(__file__).resolve().parent / "cypher"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "cypher"


CYPHER_DIR = _cypher_dir()
REFUSED = re.compile(
    r"(?<![.\w$])(?:(CREATE|MERGE|DELETE|DETACH|SET|REMOVE|DROP|COPY|ALTER|LOAD|INSTALL|ATTACH|IMPORT|EXPORT|"
    r"CHECKPOINT|FOREACH|TERMINATE|SHOW|GRANT|DENY|REVOKE)(?![\w$])(?!\s*:)|(CALL)\s+(?=[A-Za-z_`]))",
    re.I,
)
"""Clauses a read never needs: writes, file and network I/O (LOAD CSV, LadybugDB's LOAD FROM /
COPY TO / EXPORT / IMPORT / ATTACH), server state (CHECKPOINT, TERMINATE / SHOW TRANSACTIONS,
security, databases) and procedures (CALL name; ``CALL { … }`` subqueries stay). A keyword
after a dot is a property (``n.load``), before a colon a map key (``{load: 1}``)."""


# The one place where the dialects differ in query text: two path functions the query files
# may call, spelled per engine. Everything else in cypher/ runs unchanged on both.
DIALECT: dict[str, dict[str, str]] = {
    "embedded": {
        r"path_score\((\w+)\)": r"list_product(properties(rels(\1), 'twera_norm'))",
        r"path_ids\((\w+)\)": r"properties(nodes(\1), 'id')",
    },
    "neo4j": {
        r"path_score\((\w+)\)": r"reduce(acc = 1.0, r IN relationships(\1) | acc * r.twera_norm)",
        r"path_ids\((\w+)\)": r"[n IN nodes(\1) | n.id]",
    },
}


def translate(query: str, kind: str) -> str:
    """`query` in the dialect of store `kind` (see `DIALECT`)."""
    for pattern, replacement in DIALECT[kind].items():
        query = re.sub(pattern, replacement, query)
    return query


class StoreError(GraphkitError, RuntimeError):
    """A store that cannot be reached or used, with what to do about it."""


def cypher(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise StoreError(f"query {name!r}: a query is named by its file's stem in cypher/ (letters, digits, _)")
    return _cypher_file(name)


def cypher_names() -> list[str]:
    """The names of the queries in cypher/, sorted."""
    return sorted(p.stem for p in CYPHER_DIR.glob("*.cypher"))


def query_stores(name: str) -> frozenset[str]:
    """The store kinds query `name` runs on: both, unless its comments have a line
    ``// Stores: KIND[, KIND]``."""
    declared = re.search(r"^//\s*Stores:\s*([a-z0-9, ]+?)\s*(?:\(|$)", _cypher_file(name), re.M)
    if declared is None:
        return frozenset(DIALECT)
    return frozenset(k.strip() for k in declared.group(1).split(","))


def _cypher_file(name: str) -> str:
    """The text of ``cypher/NAME.cypher``."""
    path = CYPHER_DIR / f"{name}.cypher"
    if not path.exists():
        known = ", ".join(cypher_names())
        raise StoreError(f"no query {name!r} in {CYPHER_DIR}; known: {known}")
    return path.read_text()


def code_only(query: str) -> str:
    """`query` with comments removed and string literals and backtick names blanked, so that
    only Cypher keywords and names remain (a quote in a comment or a keyword in a name hides
    nothing). Line comments end at ``\n`` or ``\r``."""
    out, i, n = [], 0, len(query)
    while i < n:
        c = query[i]
        if query.startswith("//", i):
            while i < n and query[i] not in "\r\n":
                i += 1
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif c in "'\"`":
            i += 1
            while i < n and query[i] != c:
                i += 2 if query[i] == "\\" and c != "`" else 1
            i += 1
            out.append(" _ ")  # a literal or a name: never a keyword
        else:
            out.append(c)
            i += 1
    return "".join(out)


def check_read_only(query: str) -> None:
    """Refuse what a read never needs (`REFUSED`), the friendly first line; the engines enforce
    read-only themselves (a read-only LadybugDB; a READ session and EXPLAIN's query type on Neo4j)."""
    m = REFUSED.search(code_only(query))
    if m:
        word = (m.group(1) or m.group(2)).upper() + (" (a procedure)" if m.group(2) else "")
        raise StoreError(f"read-only: the statement contains {word!r}, which a read does not need; refused")


def _batches(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


class _StoreBase:
    """What both stores share: read-only guard, dialect translation, batching."""

    kind: str
    spec: str
    read_only: bool

    def _execute(self, query: str, params: dict[str, Any] | None, write: bool) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _write_batch(self, query: str, rows: list[dict[str, Any]]) -> None:
        """One batch of ``UNWIND $rows`` in one transaction."""
        self.write(query, {"rows": rows})

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        check_read_only(query)
        return self._execute(translate(query, self.kind), params, write=False)

    def write(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if self.read_only:
            raise StoreError(f"{self.kind} store {self.spec} is open read-only")
        return self._execute(query, params, write=True)

    def write_rows(
        self, query: str, rows: Sequence[dict[str, Any]], batch_size: int, desc: str = "", progress: bool = False
    ) -> None:
        with tqdm(total=len(rows), desc=desc, disable=not progress, unit="row") as bar:
            for batch in _batches(rows, batch_size):
                self._write_batch(query, list(batch))
                bar.update(len(batch))


EMBEDDED_REFUSED = {
    "COPY_TO", "COPY_FROM", "EXPORT_DATABASE", "IMPORT_DATABASE", "TRANSACTION",
    "ATTACH_DATABASE", "DETACH_DATABASE", "INSTALL_EXTENSION", "LOAD_EXTENSION",
}  # fmt: skip
"""LadybugDB plan operators a read never needs: file I/O (COPY), database export and import,
transactions and checkpoints, extensions."""

EMBEDDED_TABLE_FUNCTIONS = {"READ_FTABLE"}
"""Table functions a read may plan: only the engine's internal scan of an intermediate table.
Every other (``LOAD FROM``'s READ_CSV / READ_PARQUET …, ``CALL show_tables()`` …) is refused."""

PENDING_RECOVERY = "checkpoint recovery is pending"
"""LadybugDB's words for a store whose writer was killed during a checkpoint."""


MAX_DB_SIZE = int(os.environ.get("GRAPHKIT_MAX_DB_SIZE", 1 << 40))
"""Largest embedded store, in bytes (1 TiB; GRAPHKIT_MAX_DB_SIZE to change it, a power of 2).
LadybugDB reserves this much address space for every open database; at its default (8 TiB)
about fifteen open stores exhaust a process's 128 TiB, and the next open fails with "Mmap …
failed" (seen in the test suite, where many stores are open at once)."""


def _open_database(path: Path, read_only: bool) -> Any:
    """The LadybugDB database at `path`. A read-only open of a store whose writer was killed in
    the middle of a checkpoint is refused by the engine; one read-write open finishes the
    checkpoint (the engine's own recovery), after which the read-only open succeeds."""
    import ladybug

    try:
        return ladybug.Database(str(path), read_only=read_only, max_db_size=MAX_DB_SIZE)
    except RuntimeError as e:
        if not (read_only and PENDING_RECOVERY in str(e)):
            raise StoreError(f"cannot open the embedded store {path.parent}: {e}") from e
    try:
        ladybug.Database(str(path), max_db_size=MAX_DB_SIZE).close()
    except RuntimeError as e:
        raise StoreError(
            f"the embedded store {path.parent} was interrupted during a checkpoint and cannot be recovered now "
            f"({e}); if another graphkit process is writing to it, retry when it has finished"
        ) from e
    return ladybug.Database(str(path), read_only=True, max_db_size=MAX_DB_SIZE)


REPLACE_BACKUP, REPLACE_MARKER = "replace-backup.lbug", "replace.json"
"""A copy of the database taken before a ``--replace`` and the file that says one is under way."""


def _restore_before_replace(directory: Path) -> bool:
    """Put back the database as it was before an unfinished replace (`EmbeddedStore.begin_replace`);
    True when there was one. Safe to repeat if it is itself interrupted."""
    marker, backup = directory / REPLACE_MARKER, directory / REPLACE_BACKUP
    if not marker.exists():
        return False
    for p in directory.glob("graph.lbug.*"):  # the write-ahead log of the unfinished replace
        p.unlink()
    if backup.exists():
        os.replace(backup, directory / "graph.lbug")
    marker.unlink()
    return True


class EmbeddedStore(_StoreBase):
    """LadybugDB in-process; the database lives in ``DIR/graph.lbug``.

    A ``--replace`` leaves the old dictionary or the new one, never neither: `begin_replace`
    checkpoints and copies the database file, `end_replace` drops the copy, and a replace that
    raises (`abort_replace`) or is killed (the next open of the store) is rolled back to it.
    """

    kind = "embedded"

    def __init__(self, directory: Path, read_only: bool = False):
        import ladybug

        self.spec = str(directory)
        if Path(directory).exists() and not Path(directory).is_dir():
            raise StoreError(
                f"store {directory} is a file; an embedded store is a directory (graphkit load makes one), "
                "a Neo4j store a bolt:// or neo4j:// URI"
            )
        path = Path(directory) / "graph.lbug"
        if read_only and not path.exists():
            raise StoreError(f"no graph store at {directory}; write one with `graphkit load RUN --store {directory}`")
        Path(directory).mkdir(parents=True, exist_ok=True)
        if _restore_before_replace(Path(directory)):
            warnings.warn(
                f"{directory}: a replace was interrupted; the store is back as it was before it", stacklevel=2
            )
        self.read_only = read_only
        self.db = _open_database(path, read_only)
        self.conn = ladybug.Connection(self.db)

    def begin_replace(self, what: str) -> None:
        """Keep a copy of the database to go back to (class docstring)."""
        import shutil

        directory = Path(self.spec)
        self.write("CHECKPOINT")  # everything in graph.lbug, nothing in the log
        tmp = directory / (REPLACE_BACKUP + ".tmp")
        shutil.copyfile(directory / "graph.lbug", tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, directory / REPLACE_BACKUP)
        marker = directory / (REPLACE_MARKER + ".tmp")
        marker.write_text(json.dumps({"replacing": what}))
        os.replace(marker, directory / REPLACE_MARKER)

    def end_replace(self) -> None:
        directory = Path(self.spec)
        (directory / REPLACE_MARKER).unlink()  # from here on the new dictionary stands
        (directory / REPLACE_BACKUP).unlink(missing_ok=True)

    def abort_replace(self) -> None:
        """Back to the copy; the store stays open."""
        import ladybug

        self.close()
        _restore_before_replace(Path(self.spec))
        self.db = _open_database(Path(self.spec) / "graph.lbug", self.read_only)
        self.conn = ladybug.Connection(self.db)

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A read, checked three ways: the keyword guard, LadybugDB's own plan (no operator that
        reads or writes files, calls a table function or starts a transaction), and a database
        opened read-only (`graphkit cypher` and `query` open it so). The guard must come first:
        planning ``EXPORT DATABASE`` alone creates its directory, even read-only."""
        check_read_only(query)
        query = translate(query, self.kind)
        rows = self._execute("EXPLAIN " + query, params, write=False)
        plan = " ".join(str(v) for r in rows for v in r.values())
        found = sorted(set(re.findall(r"([A-Z][A-Z_]{2,})\[", plan)) & EMBEDDED_REFUSED)
        found += sorted(set(re.findall(r"Function: (\w+)", plan)) - EMBEDDED_TABLE_FUNCTIONS)
        if found:
            raise StoreError(
                f"read-only: LadybugDB plans this statement with {', '.join(found)}, "
                "which a read does not need; refused"
            )
        return self._execute(query, params, write=False)

    def _execute(self, query: str, params: dict[str, Any] | None, write: bool) -> list[dict[str, Any]]:
        try:
            result = self.conn.execute(query, params or {})
        except RuntimeError as e:
            raise StoreError(f"embedded store {self.spec}: {e}") from e
        results = result if isinstance(result, list) else [result]
        rows: list[dict[str, Any]] = []
        for r in results:
            cols = r.get_column_names()
            while r.has_next():
                rows.append(dict(zip(cols, r.get_next(), strict=True)))
        return rows

    def _write_batch(self, query: str, rows: list[dict[str, Any]]) -> None:
        self.write("BEGIN TRANSACTION")
        try:
            self.write(query, {"rows": rows})
            self.write("COMMIT")
        except Exception:
            self.write("ROLLBACK")
            raise

    def bulk(self, name: str, table: pa.Table, batch_size: int, progress: bool = False) -> None:
        """One ``COPY name FROM`` the Arrow table (relationships: first two columns are from, to).

        One COPY per table: each further COPY into a relationship table rebuilds its storage
        (measured: 1M edges in 10 chunks take 3× as long as in one).
        """
        if table.num_rows == 0:
            return
        with tqdm(total=table.num_rows, desc=name, disable=not progress, unit="row") as bar:
            self.write(f"COPY {name} FROM $data", {"data": table})
            bar.update(table.num_rows)

    def ensure_schema(self) -> None:
        for statement in schema.embedded_ddl():
            self.write(statement)

    def close(self) -> None:
        self.conn.close()
        self.db.close()


def local_servers() -> Path:
    """The registry of local servers `graphkit neo4j start` ran: URI → data directory (whose
    ``password`` file clients read)."""
    return Path(os.environ.get("GRAPHKIT_HOME", Path.home() / ".graphkit")) / "local-servers.json"


def _local_password(uri: str) -> str:
    """The password of a local server `graphkit neo4j start` made for `uri` (its registry), or ""."""
    parts = urlsplit(uri)
    key = f"bolt://{parts.hostname}:{parts.port or 7687}"
    try:
        directory = json.loads(local_servers().read_text()).get(key)
        return (Path(directory) / "password").read_text().strip() if directory else ""
    except (OSError, ValueError):
        return ""


class Neo4jStore(_StoreBase):
    """Neo4j 5 over Bolt with the official driver."""

    kind = "neo4j"

    def __init__(self, uri: str, read_only: bool = False):
        from neo4j import GraphDatabase
        from neo4j.exceptions import AuthError, ServiceUnavailable

        parts = urlsplit(uri)
        user = parts.username or os.environ.get("NEO4J_USER", "neo4j")
        password = parts.password or os.environ.get("NEO4J_PASSWORD", "") or _local_password(uri)
        netloc = parts.hostname or "localhost"
        if parts.port:
            netloc += f":{parts.port}"
        self.uri = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self.spec, self.read_only = self.uri, read_only
        self.database = parts.path.strip("/") or None
        self.driver = GraphDatabase.driver(self.uri, auth=(user, password), notifications_min_severity="OFF")
        try:
            self.driver.verify_connectivity()
        except AuthError as e:
            self.driver.close()
            raise StoreError(
                f"Neo4j at {self.uri} refused the credentials of user {user!r}; set NEO4J_USER and "
                "NEO4J_PASSWORD (or put them in the URI: bolt://user:password@host:port)"
            ) from e
        except (ServiceUnavailable, OSError, ValueError) as e:
            self.driver.close()
            raise StoreError(
                f"cannot reach Neo4j at {self.uri}: {e}. Is the server running? "
                "Start a local one with `graphkit neo4j start`."
            ) from e

    def _execute(self, query: str, params: dict[str, Any] | None, write: bool) -> list[dict[str, Any]]:
        from neo4j.exceptions import Neo4jError

        def work(tx: Any) -> list[dict[str, Any]]:
            return [record.data() for record in tx.run(query, params or {})]

        try:
            with self.driver.session(database=self.database) as session:
                return session.execute_write(work) if write else session.execute_read(work)
        except Neo4jError as e:
            raise StoreError(f"Neo4j at {self.uri}: {e.message or e}") from e

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A read, checked three ways: the keyword guard, Neo4j's own plan (EXPLAIN's query type
        must be ``r``: read only), and a READ-mode session."""
        from neo4j.exceptions import Neo4jError

        check_read_only(query)
        query = translate(query, self.kind)
        try:
            with self.driver.session(database=self.database, default_access_mode="READ") as session:
                kind = session.run("EXPLAIN " + query, params or {}).consume().query_type
        except Neo4jError as e:
            raise StoreError(f"Neo4j at {self.uri}: {e.message or e}") from e
        if kind != "r":
            raise StoreError(f"read-only: Neo4j plans this statement as {kind!r}, not a read; refused")
        return self._execute(query, params, write=False)

    def bulk(self, name: str, table: pa.Table, batch_size: int, progress: bool = False) -> None:
        self.write_rows(cypher(f"load_{name.lower()}"), table.to_pylist(), batch_size, desc=name, progress=progress)

    def ensure_schema(self) -> None:
        for statement in schema.neo4j_ddl():
            self.write(statement)

    def close(self) -> None:
        self.driver.close()


def open_store(spec: str | Path, read_only: bool = False, must_exist: bool = False) -> EmbeddedStore | Neo4jStore:
    """A directory → the embedded store; a bolt:// or neo4j:// URI → Neo4j.

    A writable embedded store is created where none is, unless `must_exist` (a typo in
    ``--store`` should not make an empty store).
    """
    text = str(spec)
    if re.match(r"^(bolt|neo4j)(\+s|\+ssc)?://", text):
        return Neo4jStore(text, read_only=read_only)
    if "://" in text:
        raise StoreError(f"unknown store {text!r}: give a directory or a bolt:// / neo4j:// URI")
    return EmbeddedStore(Path(text), read_only=read_only or (must_exist and not (Path(text) / "graph.lbug").exists()))

"""A local Neo4j 5 Community server without Docker (``graphkit neo4j start|stop|status``).

`docker/neo4j-local` holds a small Java program (embedded DBMS + Bolt connector bound to
127.0.0.1, HTTP off, ``LOAD CSV`` from file URLs off) and its Maven build. `start` builds it on
first use (Maven Central) and launches it in the background:

- the data directory is created 0700; the password is ``NEO4J_PASSWORD`` when set (≥ 8
  characters), else one generated on first start and kept in ``DIR/password`` (0600);
  clients (`loaders.graph.store`) find it for that server's URI through the registry
  ``~/.graphkit/local-servers.json`` (``GRAPHKIT_HOME``), so start-then-load needs no setup;
- ``neo4j.pid`` is written as soon as the process exists, so an interrupted start leaves a
  server that `status` and `stop` see; a pid is trusted only while that process is this
  server (its command line names the launcher and this data directory), so a stale or
  reused pid, or an empty pid file, reads as "not running" and is never signalled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from loaders.errors import GraphkitError


def _project() -> Path:
    """docker/neo4j-local of the source tree, or its copy inside an installed wheel."""
    packaged = Path(__file__).resolve().parent / "neo4j_project"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "docker" / "neo4j-local"


PROJECT = _project()
BUILD_CACHE = Path(os.environ.get("GRAPHKIT_CACHE", Path.home() / ".cache" / "graphkit")) / "neo4j-local"
DEFAULT_DIR = Path(os.environ.get("GRAPHKIT_NEO4J_DIR", Path.home() / ".graphkit" / "neo4j"))
MIN_PASSWORD = 8
"""Neo4j refuses shorter passwords."""


class Neo4jLocalError(GraphkitError, RuntimeError):
    """The local server could not be built, started or reached."""


@dataclass(frozen=True)
class ServerInfo:
    """A running local server."""

    uri: str
    pid: int
    directory: Path


def _build_dir() -> Path:
    """Where the launcher is built: in place in a source tree, else (an installed wheel, maybe
    read-only) a copy of its sources under the user's cache."""
    if os.access(PROJECT, os.W_OK) and PROJECT.name != "neo4j_project":
        return PROJECT
    BUILD_CACHE.mkdir(parents=True, exist_ok=True)
    for rel in ("pom.xml", "src/main/java/graphkit/LocalNeo4j.java"):
        src, dst = PROJECT / rel, BUILD_CACHE / rel
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    return BUILD_CACHE


def build() -> Path:
    """Compile the launcher and fetch its jars (once); return the classpath root."""
    project = _build_dir()
    classes, lib = project / "target" / "classes", project / "target" / "lib"
    built = classes / "graphkit" / "LocalNeo4j.class"
    source = project / "src" / "main" / "java" / "graphkit" / "LocalNeo4j.java"
    if built.exists() and lib.is_dir() and built.stat().st_mtime >= source.stat().st_mtime:
        return project / "target"
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise Neo4jLocalError(
            "the local Neo4j needs Java 17 and Maven (mvn) on PATH: install them "
            "(Debian: apt-get install openjdk-17-jdk-headless maven) or point --store at a running Neo4j"
        )
    proc = subprocess.run(["mvn", "-q", "-B", "-DskipTests", "package"], cwd=project, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Neo4jLocalError(f"building {project} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return project / "target"


def _is_our_server(pid: int, directory: Path) -> bool:
    """Whether process `pid` is the launcher serving `directory` (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True  # no /proc (macOS): alive is all we can tell
    args = [a.decode(errors="replace") for a in cmdline]
    return "graphkit.LocalNeo4j" in args and str(Path(directory).resolve() / "data") in args


def status(directory: Path = DEFAULT_DIR) -> ServerInfo | None:
    """The server running from `directory`, or None (a stale, foreign or empty pid file is removed)."""
    pid_file = Path(directory) / "neo4j.pid"
    if not pid_file.exists():
        return None
    parts = pid_file.read_text(errors="replace").split()
    if len(parts) != 2 or not parts[0].isdigit() or not _is_our_server(int(parts[0]), Path(directory)):
        pid_file.unlink(missing_ok=True)
        return None
    return ServerInfo(parts[1], int(parts[0]), Path(directory))


def _register(uri: str, directory: Path) -> None:
    from loaders.graph.store import local_servers

    path = local_servers()
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.exists() else {}
    known[uri] = str(directory)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2))
    os.replace(tmp, path)


def password_for(directory: Path, given: str | None = None) -> str:
    """The server's password: `given` or ``NEO4J_PASSWORD``, else DIR/password (made on first use)."""
    password = given or os.environ.get("NEO4J_PASSWORD") or ""
    stored = Path(directory) / "password"
    if not password and stored.exists():
        password = stored.read_text().strip()
    if not password:
        password = secrets.token_urlsafe(18)
        fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    if len(password) < MIN_PASSWORD:
        raise Neo4jLocalError(
            f"the Neo4j password must have at least {MIN_PASSWORD} characters (Neo4j refuses shorter ones); "
            "set a longer NEO4J_PASSWORD, or unset it to use a generated one"
        )
    return password


def start(
    directory: Path = DEFAULT_DIR, port: int = 7687, password: str | None = None, timeout: float = 120.0
) -> ServerInfo:
    """Start (or find running) the server on 127.0.0.1:`port`; wait until Bolt answers."""
    directory = Path(directory).resolve()
    running = status(directory)
    if running is not None:
        return running
    target = build()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    password = password_for(directory, password)
    log = (directory / "neo4j.log").open("w")
    classpath = f"{target / 'classes'}{os.pathsep}{target / 'lib' / '*'}"
    proc = subprocess.Popen(
        [
            "java",
            "-Xmx1g",
            "-cp",
            classpath,
            "graphkit.LocalNeo4j",
            "--dir",
            str(directory / "data"),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NEO4J_PASSWORD": password},
        start_new_session=True,
    )
    uri = f"bolt://127.0.0.1:{port}"
    (directory / "neo4j.pid").write_text(f"{proc.pid} {uri}\n")  # before waiting: Ctrl-C leaves it findable
    _register(uri, directory)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            (directory / "neo4j.pid").unlink(missing_ok=True)
            tail = (directory / "neo4j.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise Neo4jLocalError(
                f"Neo4j exited with code {proc.returncode}: {' / '.join(tail)} (full log: {directory / 'neo4j.log'})"
            )
        if "ready bolt://" in (directory / "neo4j.log").read_text(errors="replace") and _answers(uri, password):
            return ServerInfo(uri, proc.pid, directory)
        time.sleep(0.5)
    stop(directory)
    raise Neo4jLocalError(f"Neo4j did not answer on {uri} within {timeout:.0f} s; see {directory / 'neo4j.log'}")


def _answers(uri: str, password: str) -> bool:
    from neo4j import GraphDatabase

    try:
        with GraphDatabase.driver(uri, auth=("neo4j", password)) as driver:
            driver.verify_connectivity()
        return True
    except Exception:
        return False


def stop(directory: Path = DEFAULT_DIR, timeout: float = 60.0) -> bool:
    """Stop the server running from `directory`; False when none was running."""
    info = status(directory)
    if info is None:
        return False
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if os.waitpid(info.pid, os.WNOHANG)[0] == info.pid:  # our own child: reap it
                break
        except ChildProcessError:
            pass
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(info.pid, signal.SIGKILL)
    (Path(directory) / "neo4j.pid").unlink(missing_ok=True)
    return True


def admin(directory: Path, args: list[str], timeout: float = 3600.0) -> str:
    """Run ``neo4j-admin ARGS`` (Neo4j's own AdminTool, from the launcher's jars) on the
    server's store in `directory`; the server must be stopped. Returns its output."""
    directory = Path(directory).resolve()
    target = build()
    home = directory / "data"  # the embedded DBMS's home: `start` passes it as --dir
    conf = directory / "admin-conf"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "neo4j.conf").write_text("")  # the defaults: data under $NEO4J_HOME/data, as the DBMS has it
    classpath = f"{target / 'classes'}{os.pathsep}{target / 'lib' / '*'}"
    proc = subprocess.run(
        ["java", "-Xmx1g", "-cp", classpath, "org.neo4j.cli.AdminTool", *args],
        env={**os.environ, "NEO4J_HOME": str(home), "NEO4J_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise Neo4jLocalError(f"neo4j-admin {' '.join(args[:3])} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


@dataclass(frozen=True)
class BulkResult:
    """What `bulk_load` imported, and how long the importer took."""

    dictionary: str
    features: int
    edges: int
    rows: int
    """Nodes and relationships in all."""
    import_seconds: float
    uri: str


def bulk_load(
    run: Path,
    directory: Path = DEFAULT_DIR,
    name: str | None = None,
    port: int = 7687,
    password: str | None = None,
    rule=None,
) -> BulkResult:
    """Load `run` into a fresh local Neo4j with its offline importer.

    1. start the server in `directory` (or find it running) and check the database is empty:
       the importer rebuilds the database whole, so it never runs over loaded data;
    2. write the run's tables as the importer's CSV files (`loaders.graph.bulk`), stop the
       server, run ``neo4j-admin database import full``;
    3. start the server again, create constraints and indexes, write the Dictionary node last.
    """
    import tempfile

    from loaders.graph.bulk import write_import_files
    from loaders.graph.load import read_manifest, run_tables, short_name
    from loaders.graph.store import cypher, open_store
    from loaders.motor import MotorRule

    run = Path(run)
    manifest = read_manifest(run)
    dictionary = name or short_name(manifest["dictionary"])
    model = short_name(manifest["model"])
    info = start(directory, port=port, password=password)
    password = password_for(Path(directory).resolve(), password)
    uri = info.uri.replace("bolt://", f"bolt://neo4j:{password}@")
    store = open_store(uri)
    try:
        held = store.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
    finally:
        store.close()
    if held:
        raise Neo4jLocalError(
            f"the database in {directory} holds {held} nodes; --bulk imports into a fresh database only. "
            "Load over Bolt (without --bulk) to add to it, or give another --neo4j-dir"
        )
    tables = run_tables(run, manifest, dictionary, model, rule or MotorRule(), set())
    with tempfile.TemporaryDirectory(prefix="graphkit-import-") as tmp:
        files = write_import_files(tables.tables, Path(tmp))
        port = int(info.uri.rsplit(":", 1)[1])
        stop(directory)
        t0 = time.perf_counter()
        admin(directory, [*files.args(), "--max-off-heap-memory=50%", f"--report-file={Path(tmp) / 'import.report'}"])
        seconds = time.perf_counter() - t0
    info = start(directory, port=port, password=password)
    store = open_store(uri)
    try:
        store.ensure_schema()
        store.write(cypher("fill_empty_lists"), {"dictionary": dictionary})
        store.write(cypher("upsert_dictionary"), tables.dictionary)
    finally:
        store.close()
    t = tables.tables
    return BulkResult(
        dictionary,
        t["Feature"].num_rows,
        t["FEEDS"].num_rows,
        sum(x.num_rows for x in t.values()),
        seconds,
        info.uri,
    )

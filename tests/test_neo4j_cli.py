"""``graphkit neo4j start|status|stop`` start a real server, print its Bolt URI, and stop it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphkit.cli import main
from loaders.graph.store import open_store
from tests.conftest import _free_port

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="Java 17 and Maven are needed to run the local Neo4j server",
)


@pytest.mark.slow  # ≥ 15 s: `pytest -m slow` (CI runs it)
def test_neo4j_start_status_stop(tmp_path: Path) -> None:
    runner, port, env = CliRunner(), _free_port(), {"NEO4J_PASSWORD": "cli-test-password"}
    directory = str(tmp_path / "neo4j")
    assert runner.invoke(main, ["neo4j", "status", "--dir", directory]).output.strip() == "not running"
    started = runner.invoke(main, ["neo4j", "start", "--dir", directory, "--port", str(port)], env=env)
    try:
        assert started.exit_code == 0, started.output
        uri = started.output.strip().splitlines()[-1]
        assert uri == f"bolt://127.0.0.1:{port}"
        store = open_store(uri.replace("bolt://", "bolt://neo4j:cli-test-password@"))
        assert store.read("RETURN 1 AS one") == [{"one": 1}]
        store.close()
        assert runner.invoke(main, ["neo4j", "status", "--dir", directory]).output.startswith(f"running {uri}")
    finally:
        stopped = runner.invoke(main, ["neo4j", "stop", "--dir", directory])
    assert stopped.output.strip() == "stopped"
    assert runner.invoke(main, ["neo4j", "status", "--dir", directory]).output.strip() == "not running"


@pytest.mark.slow  # ≥ 15 s: `pytest -m slow` (CI runs it)
def test_a_local_server_restarts_with_a_generated_password_and_trusts_only_its_own_pid(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat
    import subprocess

    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    monkeypatch.setenv("GRAPHKIT_HOME", str(tmp_path / "home"))
    runner, port, directory = CliRunner(), _free_port(), tmp_path / "neo4j"
    args = ["--dir", str(directory)]
    try:
        for cycle in range(3):  # stop → start any number of times, same generated password
            started = runner.invoke(main, ["neo4j", "start", *args, "--port", str(port)])
            assert started.exit_code == 0, started.output
            uri = started.stdout.strip().splitlines()[-1]
            password = (directory / "password").read_text().strip()
            assert len(password) >= 16 and stat.S_IMODE((directory / "password").stat().st_mode) == 0o600
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            if cycle == 0:  # no password given anywhere: the client finds this server's
                loaded = runner.invoke(main, ["load", str(tiny_run), "--store", uri])
                assert loaded.exit_code == 0, loaded.output
            store = open_store(uri)
            assert store.read("MATCH (d:Dictionary) RETURN count(d) AS n") == [{"n": 1}]
            with pytest.raises(Exception, match=r"(?i)file"):  # the server itself: file URLs are off
                store.write("LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l LIMIT 1")
            store.close()
            assert runner.invoke(main, ["neo4j", "stop", *args]).stdout.strip() == "stopped"
    finally:
        runner.invoke(main, ["neo4j", "stop", *args])
    # a pid file naming another live process (a reused pid) or nothing is not trusted
    other = subprocess.Popen(["sleep", "30"])
    try:
        (directory / "neo4j.pid").write_text(f"{other.pid} bolt://127.0.0.1:{port}\n")
        assert runner.invoke(main, ["neo4j", "status", *args]).stdout.strip() == "not running"
        (directory / "neo4j.pid").write_text(f"{other.pid} bolt://127.0.0.1:{port}\n")
        assert runner.invoke(main, ["neo4j", "stop", *args]).stdout.strip() == "not running"
        assert other.poll() is None, "stop must not signal a process that is not the server"
    finally:
        other.kill()
    (directory / "neo4j.pid").write_text("")
    assert runner.invoke(main, ["neo4j", "status", *args]).stdout.strip() == "not running"


def test_a_short_password_is_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_PASSWORD", "short")
    res = CliRunner().invoke(main, ["neo4j", "start", "--dir", str(tmp_path / "n"), "--port", str(_free_port())])
    assert res.exit_code == 1 and "at least 8 characters" in res.output

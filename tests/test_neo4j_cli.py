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

"""Shared fixtures: a real Neo4j 5 server (started here, once per session) and a loaded run."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

NEO4J_PASSWORD = "graphkit-test-pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def neo4j_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Neo4j server started by `graphkit.neo4j_local`; skipped only where Java is missing."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("Java 17 and Maven are needed to run the local Neo4j server")
    from graphkit import neo4j_local

    directory = tmp_path_factory.mktemp("neo4j")
    info = neo4j_local.start(directory, port=_free_port(), password=NEO4J_PASSWORD, timeout=240)
    try:
        yield info.uri.replace("bolt://", f"bolt://neo4j:{NEO4J_PASSWORD}@")
    finally:
        neo4j_local.stop(directory)


def clear_neo4j(uri: str) -> None:
    from loaders.graph.store import open_store

    store = open_store(uri)
    store.write("MATCH (n) DETACH DELETE n")
    store.close()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collected run of a random CLT on a random llama, with one planted motor feature."""
    import torch

    from loaders.collect import CollectConfig, collect
    from tests.factories import random_dictionary, save_dictionary, tiny_model, write_corpus

    root = tmp_path_factory.mktemp("run")
    model = tiny_model("llama", d_model=48)  # wide enough for one word to stand out (z ≈ √d)
    green = model.tokenizer.convert_tokens_to_ids("green")
    model.model.save_pretrained(root / "model")
    model.tokenizer.save_pretrained(root / "model")
    d = random_dictionary(model, "clt", n_features=24)
    last = d.layers[-1]
    gain = model.final_norm().gain
    W_U = model.unembed().double()
    centred = W_U - W_U.mean(0)
    # the direction that best singles out "green" (whitened, as in LDA): feature last/3 says it
    best = torch.linalg.solve(centred.T @ centred / len(W_U), centred[green])
    with torch.no_grad():
        d.W_dec[last][3, 0] = (best / best.norm() * 3.0 / gain.double()).float()
        d.b_enc[last][3] = 0.5
    save_dictionary(d, root / "clt")
    write_corpus(root / "corpus.txt", n_docs=40)
    collect(
        str(root / "model"),
        str(root / "clt"),
        root / "corpus.txt",
        root / "run",
        CollectConfig(top_k=6),
        progress=False,
    )
    return root / "run"


def loaded_store(kind: str, request: pytest.FixtureRequest, run: Path, tmp_path: Path, **load: object) -> str:
    """A store of `kind` ("embedded": under tmp_path; "neo4j": the session server, cleared)
    with `run` loaded (keyword arguments go to `load_run`); returns its spec."""
    from loaders.graph.load import load_run
    from loaders.graph.store import open_store

    if kind == "embedded":
        spec = str(tmp_path / "graph")
    else:
        spec = request.getfixturevalue("neo4j_uri")
        clear_neo4j(spec)
    store = open_store(spec)
    load_run(run, store, progress=False, **load)  # type: ignore[arg-type]
    store.close()
    return spec

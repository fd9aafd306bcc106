"""`graphkit describe` end to end: the prompt shows what a researcher reads (examples, unembeds,
TWERA downstream), a local endpoint answers through the real SDKs, the sentence is stored on
the Feature node on either store, replies are cached, and a dry run calls and writes nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphkit.cli import main
from graphkit.explorer import Backend
from graphkit.graph import FeatureGraph
from loaders.graph.store import open_store
from tests.conftest import loaded_store
from tests.fake_llm import Server
from tests.test_explorer import Client, text


def first_unembed(text: str) -> str:
    """Malformed on the first try; then a sentence naming the feature's first top unembed
    (or NEVER a valid line for a prompt about a feature of layer 0)."""
    if "(layer 0)" in text or "Attempt" not in text:
        return "It is hard to say."
    found = re.search(r"top unembeds: '([^']*)'", text)
    return f"Thinking.\nDESCRIPTION: Promotes {found.group(1) if found else '?'!r} after colour words."


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(first_unembed)
    yield s
    s.httpd.shutdown()


@pytest.fixture(params=["embedded", "neo4j"])
def store(request: pytest.FixtureRequest, tiny_run: Path, tmp_path: Path) -> str:
    return loaded_store(request.param, request, tiny_run, tmp_path)


def invoke(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def test_a_dry_run_shows_the_exact_prompt_and_touches_nothing(store: str) -> None:
    g = FeatureGraph(open_store(store, read_only=True))
    source = next(f for f in (g.id(0, i) for i in range(24)) if g.downstream(*g.resolve(f), k=8))
    feature, down = g.feature(*g.resolve(source)), g.downstream(*g.resolve(source), k=8)
    g.store.close()
    out = invoke("describe", source, "--store", store, "--dry-run")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["id"] == source and row["text"] is None
    assert "DESCRIPTION:" in row["system"]
    user = row["user"]
    assert "«" in user.split("top unembeds")[0], "examples with their peak marked"
    assert "top unembeds: " + ", ".join(repr(t) for t in feature.top_tokens[:10]) in user
    for e in down:
        assert (
            f"{e.twera:+.3g}: a feature whose top unembeds are " + ", ".join(repr(t) for t in e.top_tokens[:6]) in user
        )
    g = FeatureGraph(open_store(store, read_only=True))
    assert g.feature(*g.resolve(source)).description is None
    g.store.close()


@pytest.mark.parametrize("provider,base", [("anthropic", ""), ("openai", "/v1")])
def test_descriptions_are_written_stored_and_cached(
    store: str, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, base: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the reply cache (.graphkit-cache/judge) lives here
    g = FeatureGraph(open_store(store, read_only=True))
    last = g.info["n_layers"] - 1
    ids = [g.id(last, 3), g.id(last, 5)]
    tops = {i: g.feature(*g.resolve(i)).top_tokens[0] for i in ids}
    g.store.close()
    args = ["describe", *ids, "--store", store, "--provider", provider, "--base-url", server.url + base]
    args += ["--judge-model", "test-writer"]
    monkeypatch.setenv("ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY", "test-key")
    out = invoke(*args)
    assert len(server.requests) == 4, "each feature: one malformed reply, then one retry"
    g = FeatureGraph(open_store(store, read_only=True))
    for i in ids:
        expected = f"Promotes {tops[i]!r} after colour words."
        assert f"{i}: {expected}" in out
        assert g.feature(*g.resolve(i)).description == expected
    assert {r["id"]: r["description"] for r in g.run("features_by_id", ids=ids)} == {
        i: f"Promotes {tops[i]!r} after colour words." for i in ids
    }
    g.store.close()
    page = Client(Backend(store)).page("/feature", f"?id={ids[0]}")  # the explorer shows it
    assert f"Promotes {tops[ids[0]]!r} after colour words." in text(page)
    invoke(*args)
    assert len(server.requests) == 4, "a rerun is served from the cache"


def test_a_feature_without_a_valid_reply_keeps_no_description(
    store: str, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    out = invoke("describe", "0/1", "--store", store, "--provider", "openai", "--base-url", server.url + "/v1")
    assert "no description" in out and len(server.requests) == 3, "1 + 2 retries, then given up"
    g = FeatureGraph(open_store(store, read_only=True))
    assert g.feature(0, 1).description is None
    g.store.close()

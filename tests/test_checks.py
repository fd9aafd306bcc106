"""Prompt analysis and steering checks from graph selections, written to and read back from
both stores; an empty selection is an error, not an empty success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphkit.checks import Workspace
from graphkit.cli import main
from tests.conftest import NEO4J_PASSWORD, loaded_store

PROMPT = "What is the color of grass? Answer in one word within <answer></answer>"
ENV = {"NEO4J_USER": "neo4j", "NEO4J_PASSWORD": NEO4J_PASSWORD}


@pytest.fixture(params=["embedded", "neo4j"])
def store_spec(request, tiny_run: Path, tmp_path: Path) -> str:
    return loaded_store(request.param, request, tiny_run, tmp_path)


def test_analyze_writes_activations_that_queries_select(store_spec: str) -> None:
    ws = Workspace.open(store_spec)
    analysis = ws.analyze(PROMPT, k=3)
    assert analysis.n_active > 0 and len(analysis.positions) == len(analysis.tokens) - 1
    rows = ws.graph.run("prompt_features", prompt=analysis.prompt_id, dictionary=ws.graph.dictionary, word="", k=500)
    n_features = len({(f.layer, f.index) for t in analysis.positions for f in t.features})
    assert len(rows) >= n_features
    best = max(f.activation for t in analysis.positions for f in t.features)
    assert rows[0]["activation"] == pytest.approx(best)
    again = ws.analyze(PROMPT, k=3)  # idempotent: rewriting gives the same rows
    assert (
        ws.graph.run("prompt_features", prompt=again.prompt_id, dictionary=ws.graph.dictionary, word="", k=500) == rows
    )


def test_steering_from_a_selection_is_recorded_and_read_back(store_spec: str) -> None:
    ws = Workspace.open(store_spec)
    analysis = ws.analyze(PROMPT)
    results = ws.steer_selection(
        "prompt_features",
        {"prompt": analysis.prompt_id, "dictionary": ws.graph.dictionary, "word": "", "k": 3},
        PROMPT,
        "mul",
        -2.0,
        max_new_tokens=4,
    )
    assert len(results) == 3
    selected = ws.graph.run("prompt_features", prompt=analysis.prompt_id, dictionary=ws.graph.dictionary, word="", k=3)
    for row, result in zip(selected, results, strict=True):
        back = ws.graph.run("feature_steering", id=row["id"])
        assert len(back) == 1
        b = back[0]
        assert (b["mode"], b["value"], b["changed"]) == ("mul", -2.0, result.changed)
        assert (b["baseline_answer"], b["steered_answer"]) == (result.baseline_answer, result.steered_answer)
        assert b["prob_after"] == pytest.approx(result.prob_after)
        assert b["prompt"] == PROMPT
    ws.steer_selection(
        "prompt_features",
        {"prompt": analysis.prompt_id, "dictionary": ws.graph.dictionary, "word": "", "k": 3},
        PROMPT,
        "mul",
        -2.0,
        max_new_tokens=4,
    )
    assert len(ws.graph.run("feature_steering", id=selected[0]["id"])) == 1, "re-running does not duplicate"


def test_cli_steer_and_empty_selection(store_spec: str) -> None:
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "steer",
            "--store",
            store_spec,
            "--select",
            "features_by_unembed",
            "--param",
            "dictionary=clt",
            "--param",
            "word=no-such-word",
            "--param",
            "k=5",
            "--prompt",
            PROMPT,
        ],
        env=ENV,
    )
    assert res.exit_code != 0 and "returned no features; nothing was done" in res.output
    res = runner.invoke(
        main,
        [
            "steer",
            "0/1",
            "1/2",
            "--store",
            store_spec,
            "--prompt",
            PROMPT,
            "--mode",
            "add",
            "--value",
            "3",
            "--max-new-tokens",
            "4",
            "--json",
        ],
        env=ENV,
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["interventions"][0]["layer"] for r in out] == [0, 1]
    res = runner.invoke(main, ["analyze", PROMPT, "--store", store_spec, "--k", "2"], env=ENV)
    assert res.exit_code == 0 and "wrote prompt" in res.output

"""End to end on the bundled model and CLT: collect → load into both stores → the same
downstream lists as connections.parquet; benchmark groups whose ground truth re-verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from graphkit.answers import extract_answer
from graphkit.bench.groups import BuildConfig, build_groups
from graphkit.checks import Workspace
from graphkit.cli import main
from graphkit.steering import Intervention, Positions, steer
from loaders.collect import CollectConfig, collect
from loaders.graph.load import load_run
from loaders.graph.store import open_store
from loaders.zoo.corpus import build_corpus, read_jsonl
from tests.conftest import NEO4J_PASSWORD, clear_neo4j


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundled")
    build_corpus(root / "corpus")
    run = collect(
        "tiny", "tiny-clt", root / "corpus" / "heldout.jsonl", root / "run", CollectConfig(top_k=16), progress=False
    ).root
    store = open_store(run / "graph")
    load_run(run, store, progress=False)
    store.close()
    return root


def test_downstream_json_is_the_same_from_both_stores_and_parquet(bundled: Path, neo4j_uri: str) -> None:
    run = bundled / "run"
    clear_neo4j(neo4j_uri)
    neo = open_store(neo4j_uri)
    load_run(run, neo, progress=False)
    neo.close()
    conn = pq.read_table(run / "connections.parquet").to_pydict()
    sources = sorted({(conn["source_layer"][i], conn["source_index"][i]) for i in range(len(conn["twera"]))})
    for src in sources[:: max(1, len(sources) // 5)][:5]:
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
        ][:10]
        outputs = []
        for spec in (str(run / "graph"), neo4j_uri):
            res = CliRunner().invoke(
                main,
                ["downstream", f"{src[0]}/{src[1]}", "--store", spec, "--k", "10", "--json"],
                env={"NEO4J_PASSWORD": NEO4J_PASSWORD},
            )
            assert res.exit_code == 0, res.output
            edges = json.loads(res.stdout)["edges"]  # source → target, with the target's node row
            nodes = {n["id"]: n for n in json.loads(res.stdout)["nodes"]}
            rows = [{"layer": nodes[e["target"]]["layer"], "index": nodes[e["target"]]["index"], **e} for e in edges]
            outputs.append([{k: r[k] for k in expected[0]} for r in rows])
        assert outputs[0] == outputs[1] == expected


@pytest.mark.slow  # ≥ 15 s: `pytest -m slow` (CI runs it)
def test_group_discovery_ground_truth_reverifies(bundled: Path) -> None:
    ws = Workspace.open(bundled / "run" / "graph")
    questions = [q for q in read_jsonl(bundled / "corpus" / "questions.jsonl") if q["relation"] in ("color", "hex")]
    cfg = BuildConfig(max_prompts=40)
    groups = list(build_groups(ws, [(q["prompt"], q["answer"]) for q in questions], cfg, progress=False))
    assert groups, "the bundled model yields look-alike groups"
    for g in groups[:3]:
        assert 3 <= len(g.candidates) <= 5
        assert sum(c.changed for c in g.candidates) == 1 and g.candidates[g.truth].changed
        for i, c in enumerate(g.candidates):
            r = steer(
                ws.model,
                ws.dictionary,
                g.prompt,
                [Intervention(c.layer, c.index, "mul", cfg.value)],
                Positions(),
                max_new_tokens=cfg.max_new_tokens,
                on_generated=True,
            )
            assert r.changed == (i == g.truth), f"{g.id} candidate {i} does not re-verify"
            assert r.baseline_answer == g.answer


@pytest.mark.slow  # ≥ 15 s: `pytest -m slow` (CI runs it)
def test_make_it_say_x_groups_reverify(bundled: Path) -> None:
    """Add groups: the model answers the question itself, the group's answer is another answer
    of the relation, and re-steering each candidate alone reaches it for the truth only."""
    from graphkit.bench.build import with_targets
    from graphkit.bench.groups import build_add_groups

    ws = Workspace.open(bundled / "run" / "graph")
    rows = read_jsonl(bundled / "corpus" / "questions.jsonl")
    triples = with_targets(rows, "color")
    assert triples == with_targets(rows, "color"), "targets are drawn with a seed"
    assert all(extract_answer(a) != t for _, a, t in triples)
    cfg = BuildConfig(mode="add", value=5.0, max_prompts=30)
    groups = list(build_add_groups(ws, triples, cfg, progress=False))
    assert groups, "the bundled model yields add groups"
    for g in groups[:3]:
        assert g.steering.mode == "add" and g.answer != g.baseline_answer
        assert sum(c.changed for c in g.candidates) == 1 and g.candidates[g.truth].changed
        for i, c in enumerate(g.candidates):
            r = steer(
                ws.model, ws.dictionary, g.prompt, [Intervention(c.layer, c.index, "add", 5.0)], Positions(),
                max_new_tokens=cfg.max_new_tokens, on_generated=True,
            )  # fmt: skip
            assert r.baseline_answer == g.baseline_answer
            assert (r.steered_answer == g.answer) == (i == g.truth), f"{g.id} candidate {i} does not re-verify"


@pytest.mark.slow  # ≥ 15 s: `pytest -m slow` (CI runs it)
def test_dense_blocks_keep_the_exact_edges_on_the_bundled_model(bundled: Path, tmp_path: Path) -> None:
    """The bundled CLT's edges from dense blocks (in two passes) equal --exact-pairs' (float32 aside)."""
    import dataclasses

    import numpy as np

    from loaders.stats import StatsConfig

    corpus = bundled / "corpus" / "heldout.jsonl"
    cfg = CollectConfig(top_k=16, stats=dataclasses.replace(StatsConfig(), max_tokens=30_000))
    exact = collect(
        "tiny", "tiny-clt", corpus, tmp_path / "exact", dataclasses.replace(cfg, exact_pairs=True), progress=False
    )
    dense = collect(
        "tiny", "tiny-clt", corpus, tmp_path / "dense", dataclasses.replace(cfg, memory_budget=3 << 23), progress=False
    )
    assert json.loads(dense.manifest.read_text())["pairs"]["passes"] == 2  # 6 blocks of 8 MiB, 3 a pass
    a, b = (pq.read_table(r.connections).to_pydict() for r in (exact, dense))
    keys = ("source_layer", "source_index", "target_layer", "target_index")
    assert len(a["twera"]) > 10_000
    assert [a[k] for k in keys] == [b[k] for k in keys]
    for col in ("virtual_weight", "era", "twera"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-5)


def test_the_readme_recipe_reproduces_the_demo(bundled: Path) -> None:
    """README step 4: analyze the answer context, steer the look-alikes of "green" selected
    from it; exactly the demo's feature changes the answer."""
    store = str(bundled / "run" / "graph")
    prompt = "What is the color of grass? Answer in one word within <answer></answer>"
    runner = CliRunner()
    res = runner.invoke(main, ["analyze", prompt, "--answer-context", "--json", "--store", store])
    assert res.exit_code == 0, res.output
    analysis = json.loads(res.stdout)
    assert analysis["prompt"].startswith(prompt) and len(analysis["prompt"]) > len(prompt)
    args = ["steer", "--select", "prompt_features", "--param", f"prompt={analysis['prompt_id']}"]
    args += ["--param", "word=green", "--param", "k=6", "--prompt", prompt, "--mode", "mul", "--value", "-1"]
    res = runner.invoke(main, [*args, "--json", "--store", store])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)
    assert len(results) == 6
    assert [r["ids"] for r in results if r["changed"]] == [["tiny-clt/0/166"]]
    res = runner.invoke(main, [*args, "--prompt-only", "--json", "--store", store])
    assert not any(r["changed"] for r in json.loads(res.stdout)), "the prompt alone is not enough (the old default)"


def test_motor_features_say_words_not_special_tokens(bundled: Path) -> None:
    from loaders.graph.schema import normalize_token
    from loaders.model import HookedModel

    res = CliRunner().invoke(main, ["motor", "--k", "0", "--json", "--store", str(bundled / "run" / "graph")])
    assert res.exit_code == 0, res.output
    words = {r["word"] for r in json.loads(res.stdout)}
    tok = HookedModel.load("tiny").tokenizer
    special = {normalize_token(t) for t in tok.all_special_tokens}
    assert words and not words & special, words & special


def test_bench_build_reuses_a_run_and_says_how_long_it_takes(bundled: Path, tmp_path: Path) -> None:
    run = bundled / "run"
    before = {p.name: p.stat().st_mtime_ns for p in run.glob("*.parquet")}
    out = tmp_path / "groups.jsonl"
    res = CliRunner().invoke(main, ["bench", "build", "--run", str(run), "--max-prompts", "6", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "6 prompts: about" in res.output.splitlines()[0]
    assert before == {p.name: p.stat().st_mtime_ns for p in run.glob("*.parquet")}, "the run is reused, not redone"
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["run"] == str(run) and meta["prompts_tried"] == 6
    assert not (tmp_path / "groups.jsonl.work" / "run").exists()

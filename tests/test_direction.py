"""Residual directions as nodes: a direction with a feature's weights gets exactly that feature's
edges and statistics, on both stores; steering one is the same intervention as adding its
vector by hand; diff-means is the mean difference the model computes; bad vectors are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import save_file

from graphkit.cli import main
from graphkit.graph import FeatureGraph
from loaders.dictionary import load_dictionary
from loaders.graph.store import open_store
from loaders.model import HookedModel, tokenize_prompt
from tests.conftest import loaded_store


@pytest.fixture(params=["embedded", "neo4j"])
def store(request: pytest.FixtureRequest, tiny_run: Path, tmp_path: Path) -> str:
    return loaded_store(request.param, request, tiny_run, tmp_path)


def invoke(*args: str, ok: bool = True) -> Result:
    res = CliRunner().invoke(main, list(args))
    if ok:
        assert res.exit_code == 0, res.output
    return res


def inputs(run: Path) -> tuple[HookedModel, object]:
    m = json.loads((run / "manifest.json").read_text())
    return HookedModel.load(m["model"]), load_dictionary(m["dictionary"])


def test_a_direction_with_a_features_weights_gets_its_edges(store: str, tiny_run: Path, tmp_path: Path) -> None:
    _, d = inputs(tiny_run)
    L = d.layers[-2]  # its edges to the last layer come from its layer-L decoder alone
    conn = pq.read_table(tiny_run / "connections.parquet").to_pylist()
    counts: dict[int, int] = {}
    for r in conn:
        if r["source_layer"] == L and r["target_layer"] == L + 1:
            counts[r["source_index"]] = counts.get(r["source_index"], 0) + 1
    s = max(counts, key=lambda i: counts[i])
    save_file({"v": d.W_dec[L][s, 0].contiguous()}, tmp_path / "v.safetensors")
    save_file({"r": d.W_enc[L][s].contiguous()}, tmp_path / "r.safetensors")
    bias = repr(float(d.b_enc[L][s]))
    invoke("direction", "add", "same", "--vector", str(tmp_path / "v.safetensors"), "--layer", str(L),
           "--read-vector", str(tmp_path / "r.safetensors"), "--bias", bias, "--store", store)  # fmt: skip
    shown = json.loads(invoke("direction", "show", "same", "--k", "100", "--json", "--store", store).stdout)
    feature = next(
        r for r in pq.read_table(tiny_run / "features.parquet").to_pylist() if (r["layer"], r["index"]) == (L, s)
    )
    assert shown["count"] == feature["count"]
    np.testing.assert_allclose([shown["mean"], shown["max"]], [feature["mean"], feature["max"]], rtol=1e-5)
    mine = {(e["layer"], e["index"]): e for e in shown["downstream"]}
    theirs = sorted(
        (r for r in conn if (r["source_layer"], r["source_index"], r["target_layer"]) == (L, s, L + 1)),
        key=lambda r: -abs(r["twera"]),
    )
    top = theirs[: json.loads((tiny_run / "manifest.json").read_text())["options"]["top_k"]]
    assert top and all((r["target_layer"], r["target_index"]) in mine for r in top)
    for r in top:
        e = mine[(r["target_layer"], r["target_index"])]
        np.testing.assert_allclose(
            [e["twera"], e["era"], e["virtual_weight"]], [r["twera"], r["era"], r["virtual_weight"]], rtol=1e-4
        )
    listed = invoke("direction", "list", "--store", store).stdout
    assert "same" in listed
    from graphkit.explorer import Backend
    from tests.test_explorer import Client, body, feature_links, text

    c = Client(Backend(store))
    page = c.page("/direction", "?name=same")
    assert feature_links(body(page, "downstream-table")) == [e["id"] for e in shown["downstream"][:10]]
    (found,) = c.call(["search-results.children"], [("search-go", "n_clicks", 1), ("search-text", "value", "sam")],
                      [("search-by", "value", "direction")])  # fmt: skip
    assert "same" in text(found)
    res = invoke("drop", FeatureGraph(open_store(store, read_only=True)).dictionary, "--store", store, "--yes")
    assert "dropped" in res.output
    g = open_store(store, read_only=True)
    assert g.read("MATCH (d:Direction) RETURN count(d) AS n")[0]["n"] == 0


def test_steering_a_direction_adds_its_vector(tiny_run: Path, tmp_path: Path) -> None:
    from graphkit.steering import greedy

    spec = loaded_store("embedded", None, tiny_run, tmp_path)  # type: ignore[arg-type]
    model, d = inputs(tiny_run)
    L = d.layers[1]
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1)) * 3
    save_file({"v": v.float()}, tmp_path / "v.safetensors")
    invoke("direction", "add", "push", "--vector", str(tmp_path / "v.safetensors"), "--layer", str(L), "--store", spec)
    prompt = "the grass is"
    out = json.loads(
        invoke("direction", "steer", "push", "--prompt", prompt, "--mode", "add", "--value", "2.0", "--json",
               "--store", spec).stdout
    )  # fmt: skip
    ids = tokenize_prompt(model.tokenizer, prompt)
    edit = {(L, d.write_site): lambda x: x + 2.0 * v.float()}  # every position, generated ones too
    with model.hooks(edits=edit):
        by_hand = greedy(model, ids, 12)
    assert (
        out["steered"] == model.tokenizer.decode(by_hand)
        or out["steered"].strip() == model.tokenizer.decode(by_hand).strip()
    )
    g = open_store(spec, read_only=True)
    rows = g.read("MATCH (:Direction {id: $id})-[:DIRECTION_STEERED]->(s:Steering) RETURN s.mode AS m, s.value AS v",
                  {"id": FeatureGraph(g).dictionary + "/direction/push"})  # fmt: skip
    assert rows == [{"m": "add", "v": 2.0}]


def test_diff_means_is_the_mean_difference(tiny_run: Path, tmp_path: Path) -> None:
    spec = loaded_store("embedded", None, tiny_run, tmp_path)  # type: ignore[arg-type]
    model, d = inputs(tiny_run)
    pos, neg = ["green grass grows", "a green leaf"], ["blue sky", "the blue sea is wide"]
    (tmp_path / "pos.txt").write_text("\n".join(pos))
    (tmp_path / "neg.txt").write_text("\n".join(neg))
    L = d.layers[1]
    invoke("direction", "diff-means", "--positive", str(tmp_path / "pos.txt"), "--negative", str(tmp_path / "neg.txt"),
           "--layer", str(L), "--out", str(tmp_path / "dm.safetensors"), "--store", spec)  # fmt: skip
    from safetensors.torch import load_file

    got = load_file(str(tmp_path / "dm.safetensors"))["direction"].double()

    def mean(prompts: list[str]) -> torch.Tensor:
        xs = []
        for p in prompts:  # one position at a time: nothing shared with the batched code
            ids = tokenize_prompt(model.tokenizer, p)
            _, sites = model.run(ids, [(L, d.read_site)])
            xs += [sites[(L, d.read_site)][0, i].double() for i in range(1, ids.shape[1])]
        return torch.stack(xs).mean(0)

    torch.testing.assert_close(got, (mean(pos) - mean(neg)).float().double(), rtol=1e-5, atol=1e-6)


def test_a_vector_of_the_wrong_size_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    spec = loaded_store("embedded", None, tiny_run, tmp_path)  # type: ignore[arg-type]
    save_file({"v": torch.ones(7)}, tmp_path / "v.safetensors")
    res = invoke("direction", "add", "x", "--vector", str(tmp_path / "v.safetensors"), "--layer", "1", "--store", spec,
                 ok=False)  # fmt: skip
    assert res.exit_code == 1 and "has 7 values" in res.output and "Traceback" not in res.output
    save_file({"a": torch.ones(7), "b": torch.ones(7)}, tmp_path / "two.safetensors")
    res = invoke("direction", "add", "x", "--vector", str(tmp_path / "two.safetensors"), "--layer", "1", "--store",
                 spec, ok=False)  # fmt: skip
    assert res.exit_code == 1 and "name one with --key" in res.output
    res = invoke("direction", "show", "nope", "--store", spec, ok=False)
    assert res.exit_code == 1 and "no direction 'nope'" in res.output


def test_a_directions_activation_reads_where_it_is_told(tiny_run: Path, tmp_path: Path) -> None:
    """--read-site hook_resid_pre (a TransformerLens name) with the default read vector (v/|v|): count and mean equal a
    window-by-window recomputation of max(0, x·v/|v|) over the run's corpus windows."""
    from loaders.corpus import Corpus, chunks

    spec = loaded_store("embedded", None, tiny_run, tmp_path)  # type: ignore[arg-type]
    model, d = inputs(tiny_run)
    L = d.layers[1]
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(2))
    save_file({"v": v.float()}, tmp_path / "v.safetensors")
    invoke("direction", "add", "probe", "--vector", str(tmp_path / "v.safetensors"), "--layer", str(L),
           "--read-site", "hook_resid_pre", "--store", spec)  # fmt: skip
    shown = json.loads(invoke("direction", "show", "probe", "--json", "--store", spec).stdout)
    m = json.loads((tiny_run / "manifest.json").read_text())
    r = (v.float() / v.float().norm()).double()
    acts = []
    for chunk in chunks(Corpus(m["corpus"]["path"]), model.tokenizer, model.context, 10**9):
        for w in chunk.windows:
            _, sites = model.run(torch.tensor([w.ids]), [(L, "resid_pre")])
            acts.append((sites[(L, "resid_pre")][0, 1:].double() @ r).clamp(min=0))
    a = torch.cat(acts)
    assert shown["count"] == int((a > 0).sum())
    np.testing.assert_allclose(shown["mean"], float(a.mean()), rtol=1e-5)
    g = open_store(spec, read_only=True)
    assert g.read("MATCH (d:Direction) RETURN d.read_site AS s")[0]["s"] == "resid_pre"

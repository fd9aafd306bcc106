"""The bundled artifacts: offline loading, model-card accuracy, dictionary files, corpus determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from loaders.dictionary import DictionaryError, load_dictionary
from loaders.model import HookedModel, ModelLoadError
from loaders.zoo import zoo_path
from loaders.zoo.corpus import CorpusConfig, build_corpus, read_jsonl
from loaders.zoo.evaluate import question_accuracy


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out)
    return out


def test_corpus_is_deterministic(tmp_path: Path) -> None:
    a = build_corpus(tmp_path / "a")
    b = build_corpus(tmp_path / "b")
    c = build_corpus(tmp_path / "c", CorpusConfig(seed=1))
    assert a["sha256"] == b["sha256"]
    for name in ("train.jsonl", "questions.jsonl", "heldout.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["sha256"]["questions.jsonl"] != c["sha256"]["questions.jsonl"]


def test_heldout_questions_never_in_train(corpus: Path) -> None:
    train = {r["text"] for r in read_jsonl(corpus / "train.jsonl")}
    questions = read_jsonl(corpus / "questions.jsonl")
    assert {q["split"] for q in questions} == {"instance", "template"}
    for q in questions:
        assert f"{q['prompt']} {q['answer']}" not in train
        assert not any(t.startswith(q["prompt"]) for t in train if t.startswith(q["prompt"][:12]))


def test_model_loads_offline_with_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = zoo_path("tiny")
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama"
    ids = tok("What is the color of grass?").input_ids
    assert ids[0] == tok.bos_token_id
    cfg = model.config
    assert 2 <= cfg.num_hidden_layers <= 4 and 128 <= cfg.hidden_size <= 256
    assert 4096 <= len(tok) <= 8192 and cfg.max_position_embeddings >= 128


def test_model_reproduces_card_accuracy(corpus: Path) -> None:
    card = json.loads((zoo_path("tiny") / "eval.json").read_text())["accuracy"]
    model = AutoModelForCausalLM.from_pretrained(zoo_path("tiny"))
    tok = AutoTokenizer.from_pretrained(zoo_path("tiny"))
    questions = [q for q in read_jsonl(corpus / "questions.jsonl") if q["relation"] in ("color", "hex")]
    measured = question_accuracy(model, tok, questions)
    for relation in ("color", "hex"):
        assert card[relation]["all"] >= 0.9
        assert abs(measured[relation]["all"] - card[relation]["all"]) <= 0.02


@pytest.mark.parametrize("name", ["tiny-clt", "tiny-plt"])
def test_dictionaries_load_and_match_model(name: str) -> None:
    model = HookedModel.load("tiny")
    d = load_dictionary(name)
    d.check_model(model.d_model, model.n_layers)
    assert d.layers == tuple(range(model.n_layers))
    assert d.n_features >= 8 * model.d_model
    path = zoo_path(name)
    L, D = model.n_layers, model.d_model
    for i in range(L):
        if name == "tiny-clt":
            enc = load_file(path / f"W_enc_{i}.safetensors")
            dec = load_file(path / f"W_dec_{i}.safetensors")
            assert enc[f"W_enc_{i}"].shape == (d.n_features, D)
            assert enc[f"b_enc_{i}"].shape == (d.n_features,)
            assert enc[f"b_dec_{i}"].shape == (D,)
            assert dec[f"W_dec_{i}"].shape == (d.n_features, L - i, D)
            assert torch.equal(dec[f"W_dec_{i}"], d.W_dec[i])
        else:
            data = load_file(path / f"layer_{i}.safetensors")
            assert data["W_enc"].shape == data["W_dec"].shape == (d.n_features, D)
            assert data["b_enc"].shape == (d.n_features,) and data["b_dec"].shape == (D,)
            assert torch.equal(data["W_dec"], d.W_dec[i][:, 0])


def test_truncated_dictionary_file_names_the_file(tmp_path: Path) -> None:
    copy = tmp_path / "clt"
    shutil.copytree(zoo_path("tiny-clt"), copy)
    bad = copy / "W_dec_1.safetensors"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(DictionaryError, match=r"W_dec_1\.safetensors"):
        load_dictionary(copy)
    (copy / "W_dec_1.safetensors").unlink()
    with pytest.raises(DictionaryError, match=r"missing dictionary file .*W_dec_1\.safetensors"):
        load_dictionary(copy)


def test_truncated_model_file_names_the_file(tmp_path: Path) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(zoo_path("tiny"), copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 16])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        HookedModel.load(copy)


def test_zoo_cli_lists_and_resolves() -> None:
    from click.testing import CliRunner

    from graphkit.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["zoo", "list"])
    assert listed.exit_code == 0
    assert all(n in listed.output for n in ("tiny", "tiny-clt", "tiny-plt"))
    path = runner.invoke(main, ["zoo", "path", "tiny-plt"])
    assert path.exit_code == 0 and Path(path.output.strip()) == zoo_path("tiny-plt")
    unknown = runner.invoke(main, ["zoo", "path", "huge"])
    assert unknown.exit_code != 0 and "unknown zoo artifact" in unknown.output


def test_artifacts_fit_the_size_budget() -> None:
    total = sum(p.stat().st_size for p in zoo_path("tiny").parent.rglob("*") if p.is_file())
    assert total <= 40 * 2**20, f"bundled artifacts are {total / 2**20:.1f} MiB"

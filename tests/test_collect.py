"""``graphkit collect`` end to end on a tiny random model: files, columns, skipping, errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from graphkit.cli import main
from loaders.dictionary import DictionaryError, load_dictionary
from tests.factories import random_dictionary, save_dictionary, tiny_model, write_corpus


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("collect")
    model = tiny_model("llama")
    model.model.save_pretrained(root / "model")
    model.tokenizer.save_pretrained(root / "model")
    save_dictionary(random_dictionary(model, "clt"), root / "clt")
    save_dictionary(random_dictionary(model, "plt"), root / "plt")
    save_dictionary(random_dictionary(tiny_model("llama", d_model=24), "clt"), root / "wide-clt")
    write_corpus(root / "corpus.txt", n_docs=25)
    return {
        "root": root,
        "model": root / "model",
        "clt": root / "clt",
        "plt": root / "plt",
        "other": root / "wide-clt",
        "corpus": root / "corpus.txt",
    }


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_collect_writes_run_directory(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = invoke(
        "collect",
        "--model",
        setup["model"],
        "--dictionary",
        setup["clt"],
        "--corpus",
        setup["corpus"],
        "--out",
        out,
        "--top-k",
        "4",
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tokens_seen"] > 0 and manifest["corpus"]["sha256"]
    assert set(manifest["stages"]) == {"stats", "pairs-0", "features", "examples", "connections"}
    assert manifest["documents_seen"] == 25 and manifest["windows_seen"] >= 25
    assert manifest["pairs"]["passes"] == 1 and manifest["pairs"]["blocks"] == 3
    peaks = manifest["peak_rss_mib"]  # after each stage, in order
    assert list(peaks) == ["pass-0", "edges-0", "files"]
    if sys.platform == "linux":  # the process's peak so far: it rises, but for the kernel's lag in counting
        assert all(v > 0 for v in peaks.values()) and peaks["files"] >= 0.99 * peaks["pass-0"]
    features = pq.read_table(out / "features.parquet")
    d = load_dictionary(setup["clt"])
    assert features.num_rows == len(d.layers) * d.n_features
    for col in (
        "layer",
        "index",
        "count",
        "density",
        "mean",
        "max",
        "top_tokens",
        "top_values",
        "bottom_tokens",
        "bottom_values",
    ):
        assert col in features.column_names
    conn = pq.read_table(out / "connections.parquet")
    expected = {
        "source_layer": "int64",
        "source_index": "int64",
        "target_layer": "int64",
        "target_index": "int64",
        "virtual_weight": "double",
        "era": "double",
        "twera": "double",
    }
    assert {f.name: str(f.type) for f in conn.schema} == expected
    keys = list(
        zip(
            *(conn.column(c).to_pylist() for c in ("source_layer", "source_index", "target_layer", "target_index")),
            strict=True,
        )
    )
    assert len(keys) == len(set(keys)) > 0
    assert all(s < t for s, _, t, _ in keys)
    examples = pq.read_table(out / "examples.parquet")
    row = examples.slice(0, 1).to_pylist()[0]
    assert len(row["tokens"]) == len(row["activations"]) == len(row["token_ids"])
    assert row["activations"][row["center"]] == pytest.approx(row["activation"])

    # same inputs: every stage is skipped (files untouched)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    res = invoke(
        "collect",
        "--model",
        setup["model"],
        "--dictionary",
        setup["clt"],
        "--corpus",
        setup["corpus"],
        "--out",
        out,
        "--top-k",
        "4",
    )
    assert res.exit_code == 0
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    # other inputs: refused without --overwrite
    res = CliRunner().invoke(
        main,
        [
            "collect",
            "--model",
            str(setup["model"]),
            "--dictionary",
            str(setup["plt"]),
            "--corpus",
            str(setup["corpus"]),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code != 0 and "--overwrite" in res.output


def test_collect_top_edges_match_downstream_ranking(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    invoke(
        "collect",
        "--model",
        setup["model"],
        "--dictionary",
        setup["plt"],
        "--corpus",
        setup["corpus"],
        "--out",
        out,
        "--top-k",
        "3",
    )
    conn = pq.read_table(out / "connections.parquet").to_pydict()
    by_source: dict[tuple[int, int], list[float]] = {}
    for sl, si, tw in zip(conn["source_layer"], conn["source_index"], conn["twera"], strict=True):
        by_source.setdefault((sl, si), []).append(abs(tw))
    for values in by_source.values():
        assert values == sorted(values, reverse=True)


def test_collect_bad_inputs(setup: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    res = runner.invoke(
        main,
        [
            "collect",
            "--model",
            str(setup["model"]),
            "--dictionary",
            str(setup["clt"]),
            "--corpus",
            str(empty),
            "--out",
            str(tmp_path / "r1"),
        ],
    )
    assert res.exit_code != 0 and "no documents" in res.output
    res = runner.invoke(
        main,
        [
            "collect",
            "--model",
            str(setup["model"]),
            "--dictionary",
            str(setup["other"]),
            "--corpus",
            str(setup["corpus"]),
            "--out",
            str(tmp_path / "r2"),
        ],
    )
    assert res.exit_code != 0 and "d_model" in res.output
    broken = tmp_path / "broken-plt"
    broken.mkdir()
    for p in setup["plt"].iterdir():
        if p.name != "layer_1.safetensors":
            (broken / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DictionaryError, match=r"layer_1\.safetensors"):
        load_dictionary(broken)
    res = runner.invoke(
        main,
        [
            "collect",
            "--model",
            str(setup["model"]),
            "--dictionary",
            str(broken),
            "--corpus",
            str(setup["corpus"]),
            "--out",
            str(tmp_path / "r3"),
        ],
    )
    assert res.exit_code != 0 and "layer_1.safetensors" in res.output


def _edges(run: Path) -> dict[str, list]:
    return pq.read_table(run / "connections.parquet").to_pydict()


def test_dense_passes_equal_exact_pairs(setup: dict[str, Path], tmp_path: Path) -> None:
    """Dense blocks of C and I in one pass, of C alone in two passes (then the I pass) or in one
    (then the I pass), and exact pairs keep the same edges."""
    common = ["--model", setup["model"], "--dictionary", setup["clt"], "--corpus", setup["corpus"], "--top-k", "3"]
    common += ["--context", "10", "--batch-tokens", "64"]
    runs = {
        "exact": ["--exact-pairs"],
        "one": [],
        "three": ["--memory-budget", str(24 * 24 * 8)],  # two 24 × 24 blocks of C a pass, then the I pass
        "c-then-i": ["--memory-budget", str(3 * 24 * 24 * 4)],  # all three blocks' C, then the I pass
    }
    for name, extra in runs.items():
        res = invoke("collect", *common, "--out", tmp_path / name, *extra)
        assert res.exit_code == 0, res.output
    three = json.loads((tmp_path / "three" / "manifest.json").read_text())
    assert three["pairs"]["passes"] == 3 and three["pairs"]["bytes_per_pass"] == [2 * 24 * 24 * 4, 24 * 24 * 4]
    assert set(three["stages"]) >= {"pairs-0", "pairs-1", "pairs-i"}
    left = {p.name for p in (tmp_path / "three" / "pairs").glob("pass-*")}
    assert left == {"pass-i"}, "block pass states are freed once reduced; the I pass's is its result"
    c_then_i = json.loads((tmp_path / "c-then-i" / "manifest.json").read_text())
    assert c_then_i["pairs"]["i_pass"] and c_then_i["pairs"]["passes"] == 2
    assert c_then_i["pairs"]["bytes_per_pass"] == [3 * 24 * 24 * 4] and c_then_i["kept_pairs"] > 0
    assert set(c_then_i["stages"]) >= {"pairs-0", "pairs-i"} and "pairs-1" not in c_then_i["stages"]
    exact = _edges(tmp_path / "exact")
    keys = ("source_layer", "source_index", "target_layer", "target_index")
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert one["pairs"]["passes"] == 1 and not one["pairs"]["i_pass"] and "kept_pairs" not in one
    for name in ("one", "three", "c-then-i"):
        got = _edges(tmp_path / name)
        assert [got[k] for k in keys] == [exact[k] for k in keys]
        for col in ("virtual_weight", "era", "twera"):
            np.testing.assert_allclose(got[col], exact[col], rtol=1e-5)
    # C alone then I sum in token order in float32, as C and I together do: the same bits
    assert _edges(tmp_path / "c-then-i") == _edges(tmp_path / "one") == _edges(tmp_path / "three")


@pytest.mark.parametrize("plan", ["C and I", "C, then I"])
def test_changing_an_option_reruns_only_the_stages_it_reaches(
    setup: dict[str, Path], tmp_path: Path, plan: str
) -> None:
    budget = [] if plan == "C and I" else ["--memory-budget", str(3 * 24 * 24 * 4)]  # the I pass's kept pairs

    def collect_into(out: Path, top_k: int, *more: str) -> None:
        res = invoke(
            "collect", "--model", setup["model"], "--dictionary", setup["clt"], "--corpus", setup["corpus"],
            "--out", out, "--top-k", str(top_k), *budget, *more,
        )  # fmt: skip
        assert res.exit_code == 0, res.output

    def mtimes(out: Path) -> dict[str, int]:
        files = [*out.glob("*.parquet"), *(out / "stats").glob("*")]
        return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}

    def edges(out: Path) -> list[dict]:
        return pq.read_table(out / "connections.parquet").to_pylist()

    out = tmp_path / "run"
    collect_into(out, 6)
    first = mtimes(out)
    for k in (3, 8):  # shrinking re-prunes the kept candidates; growing reruns the pair passes
        collect_into(out, k)
        fresh = tmp_path / f"fresh-{k}"
        collect_into(fresh, k)
        assert edges(out) == edges(fresh)
        now = mtimes(out)
        unchanged = {n for n in first if first[n] == now[n]}
        assert unchanged == set(first) - {"connections.parquet"}, "statistics, features and examples are kept"
    collect_into(out, 8, "--batch-tokens", "64")  # a statistics option: everything reruns
    assert all(mtimes(out)[n] != first[n] for n in first)


def _collect_cfg(budget: int, replay: bool = True):
    from loaders.config import CollectConfig, StatsConfig

    stats = StatsConfig(batch_tokens=64, chunk_tokens=40, context=10, checkpoint_every=1)
    return CollectConfig(top_k=3, stats=stats, memory_budget=budget, device="cpu", replay=replay)


@pytest.mark.parametrize("replay", [True, False], ids=["replayed", "run again"])
def test_an_interrupted_i_pass_resumes_to_the_same_edges(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replay: bool
) -> None:
    """Killed halfway through the I pass (over kept chunks of non-zeros, or running the model
    again), collect resumes it from its checkpoint (the block pass is not run again) and writes
    the edges an uninterrupted run writes, bit for bit."""
    from loaders.collect import collect
    from loaders.pairs import KeptPairs
    from loaders.stats import PassState

    cfg = _collect_cfg(3 * 24 * 24 * 4, replay)  # one pass of C, then the I pass
    args = (str(setup["model"]), str(setup["clt"]), setup["corpus"])
    whole = collect(*args, tmp_path / "whole", cfg, progress=False)

    class Killed(Exception):
        pass

    original, chunks = KeptPairs.add, {"n": 0}

    def dying_add(self, nz, backend: str = "auto") -> None:
        chunks["n"] += 1
        if chunks["n"] == 4:
            raise Killed
        original(self, nz, backend)

    monkeypatch.setattr(KeptPairs, "add", dying_add)
    with pytest.raises(Killed):
        collect(*args, tmp_path / "resumed", cfg, progress=False)
    saved = PassState.load(tmp_path / "resumed" / "pairs" / "pass-i")
    assert isinstance(saved.pairs, KeptPairs) and not saved.done and saved.cursor.record > 0
    assert any((tmp_path / "resumed" / "pairs").glob("nonzeros-*")) == replay, "kept until the last pass ends"
    candidates = (tmp_path / "resumed" / "pairs" / "candidates-0.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(KeptPairs, "add", original)
    resumed = collect(*args, tmp_path / "resumed", cfg, progress=False)
    assert (tmp_path / "resumed" / "pairs" / "candidates-0.safetensors").stat().st_mtime_ns == candidates
    assert _edges(resumed.root) == _edges(whole.root)
    assert not any((tmp_path / "resumed" / "pairs").glob("nonzeros-*")), "dropped once every pass is done"


def test_later_passes_replay_the_first_pass_non_zeros(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the first pass's non-zeros kept, later passes (two more block passes and the I
    pass) do not run the model, and every file is the same as when they do; a disk too full to
    keep them falls back to running the model, with the same files again."""
    import loaders.stats
    from loaders.collect import collect
    from loaders.stats import _Accumulator

    model_batches = {"n": 0}
    original = _Accumulator.add

    def counted(self, batch) -> None:
        model_batches["n"] += 1
        original(self, batch)

    monkeypatch.setattr(_Accumulator, "add", counted)
    args = (str(setup["model"]), str(setup["clt"]), setup["corpus"])
    runs, batches = {}, {}
    for name, replay in (("replayed", True), ("run again", False), ("disk full", True)):
        if name == "disk full":
            full = shutil.disk_usage(tmp_path)._replace(free=0)
            monkeypatch.setattr(loaders.stats.shutil, "disk_usage", lambda _path, full=full: full)
        model_batches["n"] = 0
        runs[name] = collect(*args, tmp_path / name, _collect_cfg(24 * 24 * 4, replay), progress=False)
        batches[name] = model_batches["n"]
    assert json.loads(runs["replayed"].manifest.read_text())["pairs"]["passes"] == 4  # 3 blocks of C, then I
    # the model runs in every pass, or only in the first
    assert batches["run again"] == batches["disk full"] == 4 * batches["replayed"] > 0
    for f in ("features.parquet", "examples.parquet", "connections.parquet"):
        tables = [pq.read_table(r.root / f) for r in runs.values()]
        assert tables[0].equals(tables[1]) and tables[0].equals(tables[2]), f


def test_the_example_window_is_chosen_at_collect_time(setup: dict[str, Path], tmp_path: Path) -> None:
    lengths = {}
    for w in (3, 16):
        out = tmp_path / f"w{w}"
        res = invoke(
            "collect", "--model", setup["model"], "--dictionary", setup["plt"], "--corpus", setup["corpus"],
            "--out", out, "--window", str(w), "--context", "64",
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        rows = pq.read_table(out / "examples.parquet").to_pylist()
        lengths[w] = max(len(r["tokens"]) for r in rows)
    assert lengths[3] == 7 and lengths[16] > 7


def test_a_dictionary_fixed_in_place_is_another_run(setup: dict[str, Path], tmp_path: Path) -> None:
    """Runs are keyed by content: rerunning after editing a dictionary file at the same path
    does not report the stale run as done, and a load of the new run is not "already held"."""
    import shutil

    from safetensors.torch import load_file, save_file

    dictionary = tmp_path / "clt"
    shutil.copytree(setup["clt"], dictionary)
    out = tmp_path / "run"
    args = ["collect", "--model", setup["model"], "--dictionary", dictionary, "--corpus", setup["corpus"]]
    assert invoke(*args, "--out", out).exit_code == 0
    key = json.loads((out / "manifest.json").read_text())["inputs_key"]
    store = str(tmp_path / "store")
    assert invoke("load", out, "--store", store).exit_code == 0
    data = load_file(dictionary / "W_enc_0.safetensors")
    data["b_enc_0"] = data["b_enc_0"] + 0.5
    save_file(data, dictionary / "W_enc_0.safetensors")
    res = CliRunner().invoke(main, [str(a) for a in (*args, "--out", out)])
    assert res.exit_code == 1 and "earlier contents" in res.output
    assert invoke(*args, "--out", out, "--overwrite").exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["inputs_key"] != key
    res = CliRunner().invoke(main, ["load", str(out), "--store", store])
    assert res.exit_code == 1 and "from another run" in res.output, "not the stale 'already held'"
    res = CliRunner().invoke(main, ["load", str(out), "--store", store, "--replace"])
    assert res.exit_code == 0 and "loaded clt" in res.stdout


def test_options_land_in_the_config_field_they_name() -> None:
    from loaders.collect import CollectConfig

    cfg = CollectConfig.from_options(top_k=5, window=3, memory_budget="2GB", dtype=None, device="cpu")
    assert (cfg.top_k, cfg.stats.top_k) == (5, CollectConfig().stats.top_k)  # edges, not examples
    assert cfg.stats.window == 3 and cfg.memory_budget == 2 * 1024**3 and cfg.dtype == CollectConfig().dtype


@pytest.mark.parametrize("clean_up", [False, True])
def test_decode_many_is_decode_one_by_one(clean_up: bool) -> None:
    """The examples' texts come from one batched Rust decode when the tokenizer allows; they
    must equal `decode` of each window, special tokens and odd bytes included (with clean-up
    on, it decodes one by one)."""
    from loaders.model import decode, decode_many
    from tests.factories import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.clean_up_tokenization_spaces = clean_up
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, len(tok), size=n).tolist() for n in (0, 1, 5, 33, 33)]
    seqs.append(tok("def f(x):\n    return x , ü  # ok .", add_special_tokens=False).input_ids)
    seqs.append([tok.bos_token_id or 0, *seqs[-1]])
    assert decode_many(tok, seqs) == [decode(tok, s) for s in seqs]

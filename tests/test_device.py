"""``collect`` on a GPU, checked without one: placement and transfers on a simulated CUDA device.

No GPU is lent to the tests. `tests.simcuda` makes ``cuda`` a CPU tensor that says it is on
``cuda:0`` and fails wherever real CUDA would refuse (a device tensor mixed with a host tensor,
``.numpy()`` of a device tensor). A run on it takes the device's route through collect — the
model, the encoders, statistics and top-k windows as torch operations on the device, the pair
sums as sparse × dense products there, V and the picks there, the logit lens where W_U is —
while computing on the CPU's kernels. So its files must be those of the CPU's run: the same
bytes for the features and examples, the same edges for the connections (their pair sums are
added in another order in float32).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from loaders.collect import collect
from loaders.config import CollectConfig
from loaders.stats import StatsConfig
from tests.factories import random_dictionary, save_dictionary, tiny_model, write_corpus
from tests.simcuda import SimTensor, simulated_cuda

KEYS = ("source_layer", "source_index", "target_layer", "target_index")
LENS = ["top_values", "bottom_values", "top_word_z", "word_gap"]


def test_the_simulated_device_refuses_what_cuda_refuses() -> None:
    """The harness can fail: the mistakes it is here to catch raise inside it."""
    with simulated_cuda():
        x = torch.arange(6.0).reshape(2, 3).to("cuda")
        assert isinstance(x, SimTensor) and x.device == torch.device("cuda", 0)
        with pytest.raises(RuntimeError, match="same device"):
            x * torch.ones(3)  # a host tensor in a device op
        with pytest.raises(RuntimeError):
            x.numpy()  # device memory read as host memory
        assert (x * torch.tensor(2.0)).device.type == "cuda"  # a 0-dim host tensor is a scalar, as on CUDA
        y = (x * 2 + 1).cpu()
        assert type(y) is torch.Tensor and y.tolist() == [[1.0, 3.0, 5.0], [7.0, 9.0, 11.0]]
        nz = (x > 2).nonzero()  # a shape that depends on values
        assert nz.device.type == "cuda" and nz.cpu().tolist() == [[1, 0], [1, 1], [1, 2]]
        layer = torch.nn.Linear(3, 2).to("cuda")
        assert isinstance(layer.weight, torch.nn.Parameter) and layer(x).device.type == "cuda"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("device")
    for family, read, write in (("llama", "mlp_in", "mlp_out"), ("gemma2", "ln2_normalized", "mlp_module_out")):
        model = tiny_model(family)
        model.model.save_pretrained(root / family)
        model.tokenizer.save_pretrained(root / family)
        save_dictionary(random_dictionary(model, "clt", read_site=read, write_site=write), root / f"{family}-clt")  # type: ignore[arg-type]
    write_corpus(root / "corpus.txt", n_docs=25)
    return {"root": root}


def _run(setup: dict[str, Path], family: str, out: Path, cfg: CollectConfig) -> Path:
    root = setup["root"]
    collect(str(root / family), str(root / f"{family}-clt"), root / "corpus.txt", out, cfg, progress=False)
    return out


@pytest.mark.parametrize(
    "family,budget,dtype",
    [
        ("llama", None, "fp32"),  # C and I in one pass
        ("llama", 24 * 24 * 4, "fp32"),  # C alone, a block a pass, the later passes from the replay, then the I pass
        ("gemma2", None, "fp32"),  # writes through the post-MLP norm; a normalized read
        ("llama", None, "bf16"),  # the model in its own dtype, encoders and statistics in fp32
    ],
)
def test_collect_on_a_device_writes_what_the_cpu_writes(
    setup: dict[str, Path], tmp_path: Path, family: str, budget: int | None, dtype: str
) -> None:
    cfg = CollectConfig(
        top_k=3,
        dtype=dtype,  # type: ignore[arg-type]
        memory_budget=budget,
        stats=StatsConfig(context=10, batch_tokens=64, chunk_tokens=128),
    )
    host = _run(setup, family, tmp_path / "cpu", cfg)
    with simulated_cuda():
        device = _run(setup, family, tmp_path / "cuda", dataclasses.replace(cfg, device="cuda"))
    assert pq.read_table(device / "examples.parquet").equals(pq.read_table(host / "examples.parquet"))
    got, want = (pq.read_table(run / "features.parquet") for run in (device, host))
    assert got.drop_columns(LENS).equals(want.drop_columns(LENS))  # statistics, σ, top tokens
    for col in LENS:  # the logit lens's float64 GEMMs: rounding as for V below
        np.testing.assert_allclose(_flat(got[col]), _flat(want[col]), rtol=1e-12, atol=1e-12)
    got, want = (pq.read_table(run / "connections.parquet").to_pydict() for run in (device, host))
    assert len(want["twera"]) > 0
    assert [got[k] for k in KEYS] == [want[k] for k in KEYS]
    # float64 GEMMs of the same operands: MKL's rounding may follow the copies' memory alignment
    np.testing.assert_allclose(got["virtual_weight"], want["virtual_weight"], rtol=1e-12)
    for col in ("era", "twera"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-5)


def _flat(column) -> np.ndarray:
    values = column.to_pylist()
    return np.asarray([v for row in values for v in row] if isinstance(values[0], list) else values, float)


def test_an_interrupted_run_on_a_device_resumes_there(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in the first pass, after checkpoints of the device's statistics, top-k windows and
    pair blocks, collect resumes from them onto the device and writes what an uninterrupted
    run writes, bit for bit."""
    from loaders.pairs import DenseBlocks
    from loaders.stats import PassState

    cfg = CollectConfig(
        top_k=3, device="cuda", stats=StatsConfig(context=10, batch_tokens=64, chunk_tokens=128, checkpoint_every=1)
    )

    class Killed(Exception):
        pass

    original, chunks = DenseBlocks.add, {"n": 0, "die_at": 0}

    def counted_add(self, nz, backend: str = "auto") -> None:
        assert self.C.device.type == "cuda"
        chunks["n"] += 1
        if chunks["n"] == chunks["die_at"]:
            raise Killed
        original(self, nz, backend)

    monkeypatch.setattr(DenseBlocks, "add", counted_add)
    with simulated_cuda():
        whole = _run(setup, "llama", tmp_path / "whole", cfg)
        total, chunks["n"], chunks["die_at"] = chunks["n"], 0, 4
        with pytest.raises(Killed):
            _run(setup, "llama", tmp_path / "resumed", cfg)
        saved = PassState.load(tmp_path / "resumed" / "stats")
        assert not saved.done and saved.chunks == 3 and saved.stats is not None and saved.stats.tokens > 0
        chunks["n"], chunks["die_at"] = 0, 0
        resumed = _run(setup, "llama", tmp_path / "resumed", cfg)
    assert chunks["n"] == total - 3 > 0, "the resumed pass starts at the checkpoint"
    for name in ("features", "examples", "connections"):
        assert pq.read_table(resumed / f"{name}.parquet").equals(pq.read_table(whole / f"{name}.parquet")), name


def test_a_device_state_comes_to_the_host_as_the_cpu_makes_it(tmp_path: Path) -> None:
    """A Ray worker on a GPU hands its state to the driver with `cpu()`: statistics and top-k
    windows pulled from the device, pair blocks copied block by block into the CPU's layout
    (C and I side by side), which then merges with a state made on the CPU."""
    from loaders.corpus import Corpus
    from loaders.pairs import DenseBlocks
    from loaders.stats import FeatureStats, PassState, stream_pass

    corpus = Corpus(write_corpus(tmp_path / "c.txt", n_docs=20))
    cfg = StatsConfig(batch_tokens=48, chunk_tokens=60, context=10, top_k=3, window=2)
    states = {}
    for device in ("cpu", "cuda"):
        model = tiny_model("llama")
        d = random_dictionary(model, "clt")
        L, F = len(d.layers), d.n_features
        blocks = tuple((i, j) for i in range(L) for j in range(i + 1, L))
        with simulated_cuda() if device == "cuda" else contextlib.nullcontext():
            model.model.to(device)
            state = PassState(FeatureStats(L, F, cfg.top_k, cfg.window), DenseBlocks(L, F, blocks, device=device))
            state = stream_pass(model, d.encoders_to(device), corpus, cfg, state)
            assert isinstance(state.pairs, DenseBlocks) and state.pairs.C.device.type == device
            states[device] = state.pairs.cpu() and state
    host, moved = states["cpu"], states["cuda"]
    assert isinstance(moved.pairs, DenseBlocks) and isinstance(host.pairs, DenseBlocks)
    assert isinstance(moved.pairs._sums, np.ndarray) and moved.pairs._sums.shape == host.pairs._sums.shape
    _same_state(moved, host)
    want_c = 2 * host.pairs.C
    host.pairs.merge(moved.pairs)
    torch.testing.assert_close(host.pairs.C, want_c, rtol=1e-5, atol=1e-6)


def test_steering_on_a_device_is_steering_on_the_cpu() -> None:
    """`steer` with the model and dictionary on the device (`Workspace.open(device=...)`):
    prompt masks, greedy decoding and the teacher-forced logits stay where the model is."""
    from graphkit.steering import Intervention, steer

    results = {}
    for device in ("cpu", "cuda"):
        model = tiny_model("llama")
        d = random_dictionary(model, "clt")
        with simulated_cuda() if device == "cuda" else contextlib.nullcontext():
            model.model.to(device)
            ivs = [Intervention(1, 3, "add", 4.0), Intervention(0, 5, "mul", -1.0)]
            results[device] = steer(model, d.to(device), "The sky is blue and grass is", ivs, max_new_tokens=4)
    assert results["cuda"] == results["cpu"]
    assert results["cpu"].logit_after != results["cpu"].logit_before


def test_a_ray_worker_on_a_gpu_returns_a_host_state(setup: dict[str, Path]) -> None:
    """The Ray actor's work in process (`loaders.distributed._Worker`, without Ray): on the
    device it loads the model in its dtype and the encoders there, streams a shard, and returns
    a state with nothing left on the device (pickled for the driver, it loads outside the
    simulation, where a device tensor could not) that equals the CPU worker's."""
    import pickle

    from loaders.distributed import WorkerSpec, _Worker
    from loaders.pairs import DenseBlocks
    from loaders.stats import PassSpec

    root = setup["root"]
    stats = StatsConfig(context=10, batch_tokens=64, chunk_tokens=128)
    spec = WorkerSpec(str(root / "llama"), str(root / "llama-clt"), str(root / "corpus.txt"), stats, "fp32")
    blocks = ((0, 1), (0, 2), (1, 2))
    pass_spec = PassSpec(3, 24, stats.top_k, stats.window, stats=True, blocks=blocks)

    class Board:  # what `board.report.remote(...)` reaches
        class report:
            @staticmethod
            def remote(shard: int, n: int, fraction: float) -> None:
                assert n > 0 and 0 < fraction <= 1

    states = {}
    for use_gpu in (False, True):
        with simulated_cuda() if use_gpu else contextlib.nullcontext():
            worker = _Worker(spec, use_gpu, threads=2)
            assert worker.model.device.type == ("cuda" if use_gpu else "cpu")
            states[use_gpu] = pickle.dumps(worker.run(0, pass_spec, None, Board))
    host, moved = (pickle.loads(states[g]) for g in (False, True))
    assert isinstance(moved.pairs, DenseBlocks) and isinstance(moved.pairs._sums, np.ndarray)
    _same_state(moved, host)


def test_the_workspace_on_a_device_does_what_it_does_on_the_cpu(
    request: pytest.FixtureRequest, tiny_run: Path, tmp_path: Path
) -> None:
    """`Workspace.open(device=...)` (the explorer's `Backend(device=...)`): a prompt's analysis,
    steering a selection, and a residual direction's pass, edges, unembeds, steering and
    difference of means, on the device, give the CPU's results."""
    from graphkit.checks import Workspace
    from graphkit.directions import add_direction, steer_direction
    from loaders.direction import Direction, diff_means
    from tests.conftest import loaded_store

    prompt = "What is the color of grass? Answer in one word within <answer></answer>"
    out = {}
    for device in ("cpu", "cuda"):
        spec = loaded_store("embedded", request, tiny_run, tmp_path / device)
        with simulated_cuda() if device == "cuda" else contextlib.nullcontext():
            ws = Workspace.open(spec, device=device)
            assert ws.model.device.type == device
            analysis = ws.analyze(prompt, k=3)
            selection = {"prompt": analysis.prompt_id, "dictionary": ws.graph.dictionary, "word": "", "k": 2}
            steered = ws.steer_selection("prompt_features", selection, prompt, "mul", -2.0, max_new_tokens=3)
            L = ws.dictionary.layers[0]
            vector = ws.dictionary.W_dec[L][0, 0].cpu()
            added = add_direction(ws, Direction.of("d0", L, vector))
            moved = steer_direction(ws, "d0", prompt, "add", 3.0, max_new_tokens=3)
            means = diff_means(ws.model, ws.dictionary, ["grass is green"], ["the sky is blue"], L)
            assert means.device.type == "cpu"
            out[device] = (analysis, steered, added, moved, means)
    (a, s, d, m, means), (a_dev, s_dev, d_dev, m_dev, means_dev) = out["cpu"], out["cuda"]
    assert a_dev == a and s_dev == s and m_dev == m
    assert d.count > 0 and (d_dev.count, d_dev.hist, d_dev.top_tokens) == (d.count, d.hist, d.top_tokens)
    assert [(e["target_layer"], e["target_index"]) for e in d_dev.edges] == [
        (e["target_layer"], e["target_index"]) for e in d.edges
    ]
    for key in ("virtual_weight", "era", "twera"):
        np.testing.assert_allclose([e[key] for e in d_dev.edges], [e[key] for e in d.edges], rtol=1e-12)
    torch.testing.assert_close(means_dev, means, rtol=0, atol=0)


def test_the_cli_runs_the_model_where_device_says(
    request: pytest.FixtureRequest, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--device` (or GRAPHKIT_DEVICE) on the commands that run the model: analyze and steer
    print on the device what they print on the CPU."""
    from click.testing import CliRunner

    from graphkit.checks import Workspace
    from graphkit.cli import main
    from tests.conftest import loaded_store

    prompt = "What is the color of grass? Answer in one word within <answer></answer>"
    seen, opened = [], Workspace.open.__func__  # type: ignore[attr-defined]

    def recording_open(cls, *args, **kwargs):
        ws = opened(cls, *args, **kwargs)
        seen.append(ws.model.device.type)
        return ws

    monkeypatch.setattr(Workspace, "open", classmethod(recording_open))
    printed = {}
    for device in ("cpu", "cuda"):
        spec = loaded_store("embedded", request, tiny_run, tmp_path / device)
        with simulated_cuda() if device == "cuda" else contextlib.nullcontext():
            analyzed = CliRunner().invoke(main, ["analyze", prompt, "--store", spec, "--device", device, "--json"])
            assert analyzed.exit_code == 0, analyzed.output
            monkeypatch.setenv("GRAPHKIT_DEVICE", device)
            args = ["steer", "--store", spec, "--select", "prompt_features", "--param", "word=", "--param", "k=2"]
            args += ["--param", f"prompt={json.loads(analyzed.output)['prompt_id']}", "--prompt", prompt, "--json"]
            steered = CliRunner().invoke(main, args)
            assert steered.exit_code == 0, steered.output
        printed[device] = (analyzed.output, json.loads(steered.output))
    assert seen == ["cpu", "cpu", "cuda", "cuda"]
    assert printed["cuda"] == printed["cpu"] and printed["cpu"][1]


def _same_state(moved, host) -> None:
    """A pass state made on the device and brought to the host against the CPU's: statistics
    and top-k windows the same bits, σ and the pair sums to their summation order."""
    from loaders.stats import TOP_FIELDS

    assert moved.stats is not None and host.stats is not None and moved.stats.tokens == host.stats.tokens > 0
    for name in ("count", "sum", "max", "hist", *TOP_FIELDS):
        np.testing.assert_array_equal(getattr(moved.stats, name), getattr(host.stats, name), err_msg=name)
    # σ's float64 sums: torch's reduction there, the CPU's kernel here (other orders)
    np.testing.assert_allclose(moved.stats.sigma_mlp, host.stats.sigma_mlp, rtol=1e-13)
    # the device adds C and I by sparse × dense products, the CPU by its scatter: float32 order
    torch.testing.assert_close(moved.pairs.C, host.pairs.C, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(moved.pairs.I, host.pairs.I, rtol=1e-5, atol=1e-6)

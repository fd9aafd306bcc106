"""What SAELens, circuit-tracer and TransformerLens saved and computed, read by graphkit.

Every file under tests/golden was written by those libraries' own code (tests/golden/make.py,
versions in each directory's VERSION file). graphkit loads the unmodified directories and
must reproduce the libraries' own encodings and reconstructions on the same inputs, and read
at each hook name what TransformerLens caches under it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from graphkit.steering import Intervention, steering
from loaders.dictionary import Dictionary, DictionaryError, load_dictionary
from loaders.model import HookedModel, site_from_hook

GOLDEN = Path(__file__).parent / "golden"
RTOL = 1e-5


def references(library: str) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (GOLDEN / library).glob("*.reference.safetensors"))


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal within RTOL of the reference's scale (max |want|)."""
    err = (got.float() - want.float()).abs().max().item()
    assert err <= RTOL * want.abs().max().item(), f"max error {err:.3g} on a scale of {want.abs().max().item():.3g}"


# -- SAELens -----------------------------------------------------------------------------------

SAELENS_SITES = {
    "transcoder": ("plt", "ln2_normalized", "mlp_module_out"),
    "skip-transcoder": ("plt", "ln2_normalized", "mlp_module_out"),
    "jumprelu-transcoder": ("plt", "ln2_normalized", "mlp_module_out"),
    "jumprelu-skip-transcoder": ("plt", "ln2_normalized", "mlp_module_out"),
}


@pytest.mark.parametrize(
    "library,variant",
    [("saelens", v) for v in references("saelens")] + [("saelens5", v) for v in references("saelens5")],
)
def test_saelens_files_match_saelens(library: str, variant: str) -> None:
    d = load_dictionary(GOLDEN / library / variant)
    ref = load_file(GOLDEN / library / f"{variant}.reference.safetensors")
    (layer,) = d.layers
    assert layer == 1
    default = ("sae", "resid_post", "resid_post") if library == "saelens" else ("sae", "resid_pre", "resid_pre")
    assert (d.kind, d.read_site, d.write_site) == SAELENS_SITES.get(variant, default)
    acts = d.encode(layer, ref["x"])
    assert_close(acts, ref["acts"])
    assert ((acts > 0) == (ref["acts"] > 0)).all()  # the same features fire
    assert_close(d.reconstruct({layer: acts}, {layer: ref["x"]})[layer], ref["out"])


def test_golden_saelens_files_exercise_what_they_are_for() -> None:
    """The references would catch each semantics graphkit once got wrong."""
    cfg = json.loads((GOLDEN / "saelens/standard/cfg.json").read_text())
    assert "hook_name" in cfg["metadata"] and "hook_name" not in cfg  # SAELens 6's layout
    jump = load_file(GOLDEN / "saelens/jumprelu/sae_weights.safetensors")
    x = load_file(GOLDEN / "saelens/jumprelu.reference.safetensors")
    d = load_dictionary(GOLDEN / "saelens/jumprelu")
    pre = d.pre_activation(1, x["x"])
    below = (pre <= 0) & (pre > jump["threshold"])  # where ReLU-then-jump and a bare jump differ
    assert below.sum() > 0
    no_relu = pre * (pre > jump["threshold"])
    assert (no_relu - x["acts"]).abs().max() > 0.05
    skip = load_dictionary(GOLDEN / "saelens/skip-transcoder")
    ref = load_file(GOLDEN / "saelens/skip-transcoder.reference.safetensors")
    acts = skip.encode(1, ref["x"])
    without = acts @ skip.W_dec[1][:, 0] + skip.b_dec[1]
    assert (without - ref["out"]).abs().max() > 0.1
    rescale = load_file(GOLDEN / "saelens/topk-rescale/sae_weights.safetensors")
    assert (rescale["W_dec"].norm(dim=-1) - 1).abs().max() > 0.4


def test_steering_an_sae_with_input_normalization_moves_its_output_as_saelens_decodes() -> None:
    """Zeroing a feature of a ``layer_norm``-normalized SAE changes resid_post by
    reconstruct(a') − reconstruct(a): the change is scaled back by the token's std."""
    model = golden_model("llama")
    d = load_dictionary(GOLDEN / "saelens/standard-layer-norm")
    ids = load_file(GOLDEN / "hooks/llama.reference.safetensors")["input_ids"][:1]
    _, clean = model.run(ids, [(1, "resid_post")])
    x = clean[(1, "resid_post")][0]
    acts = d.encode(1, x)
    feature = int((acts > 0).sum(0).argmax())
    zeroed = acts.clone()
    zeroed[:, feature] = 0
    want = x + d.reconstruct({1: zeroed}, {1: x})[1] - d.reconstruct({1: acts}, {1: x})[1]
    iv = Intervention(1, feature, "mul", 0.0)
    with steering(model, d, [iv], lambda n: torch.ones(n, dtype=torch.bool)):
        _, steered = model.run(ids, [(1, "resid_post")])
    torch.testing.assert_close(steered[(1, "resid_post")][0], want, atol=1e-5, rtol=1e-5)
    assert (want - x).abs().max() > 1e-2


SAELENS_REFUSED = [
    ({"architecture": "matryoshka_batchtopk"}, "architecture = 'matryoshka_batchtopk'"),
    ({"reshape_activations": "hook_z"}, "reshape_activations = 'hook_z'"),
    ({"normalize_activations": "whitened_twice"}, "normalize_activations = 'whitened_twice'"),
    ({"metadata": {"hook_name": "blocks.1.ln2.hook_scale"}}, r"ln2\.hook_scale' is the MLP norm's scale"),
    ({"metadata": {"model_name": "x"}}, "no 'hook_name'"),
    ({"k": None}, "'topk' without 'k'"),
]


@pytest.mark.parametrize("change,message", SAELENS_REFUSED)
def test_unsupported_saelens_options_are_refused_by_name(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "sae"
    shutil.copytree(GOLDEN / "saelens/topk", path)
    cfg = json.loads((path / "cfg.json").read_text())
    if "metadata" in change:
        cfg["metadata"] = change["metadata"]
    else:
        cfg |= change
    (path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(DictionaryError, match=message):
        load_dictionary(path)


def test_a_saelens_transcoder_without_its_output_hook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tc"
    shutil.copytree(GOLDEN / "saelens/transcoder", path)
    cfg = json.loads((path / "cfg.json").read_text())
    del cfg["metadata"]["hook_name_out"]
    (path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(DictionaryError, match=r"needs metadata\.hook_name_out"):
        load_dictionary(path)


# -- circuit-tracer ----------------------------------------------------------------------------

CT_SITES = {
    "clt-jumprelu": ("clt", "mlp_in", "mlp_module_out"),
    "clt-relu-default-hooks": ("clt", "resid_mid", "mlp_out"),  # circuit-tracer's load_clt defaults
    "plt-relu": ("plt", "resid_mid", "mlp_out"),
    "plt-skip-listed": ("plt", "resid_mid", "mlp_out"),
}


@pytest.mark.parametrize("variant", references("circuit_tracer"))
def test_circuit_tracer_files_match_circuit_tracer(variant: str) -> None:
    d = load_dictionary(GOLDEN / "circuit_tracer" / variant)
    ref = load_file(GOLDEN / "circuit_tracer" / f"{variant}.reference.safetensors")
    assert (d.kind, d.read_site, d.write_site) == CT_SITES[variant]
    assert d.layers == (0, 1, 2)
    acts = {l: d.encode(l, ref["x"][l]) for l in d.layers}
    out = d.reconstruct(acts, {l: ref["x"][l] for l in d.layers})
    for l in d.layers:
        assert_close(acts[l], ref["acts"][l])
        assert_close(out[l], ref["out"][l])
    if "skip" in variant:
        assert d.W_skip and all(w.abs().max() > 0 for w in d.W_skip.values())


def test_hf_addresses_in_a_transcoder_list_are_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    import yaml

    src = GOLDEN / "circuit_tracer/plt-skip-listed"
    asked = []

    def fake_download(repo_id: str, filename: str, revision: str | None = None, **_: object) -> str:
        asked.append((repo_id, filename, revision))
        return str(src / Path(filename).name)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = tmp_path / "listed"
    path.mkdir()
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    cfg["transcoders"] = [f"hf://org/repo/sub/dir/layer_{i}.safetensors?revision=v2" for i in range(3)]
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    d = load_dictionary(path)
    assert asked == [("org/repo", f"sub/dir/layer_{i}.safetensors", "v2") for i in range(3)]
    want = load_dictionary(src)
    for l in d.layers:
        torch.testing.assert_close(d.W_enc[l], want.W_enc[l])
        torch.testing.assert_close(d.W_skip[l], want.W_skip[l])
    cfg["transcoders"][1] = "hf://org"
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(DictionaryError, match="cannot parse 'hf://org'"):
        load_dictionary(path)


def test_a_write_hook_that_is_no_output_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clt"
    shutil.copytree(GOLDEN / "circuit_tracer/clt-jumprelu", path)
    text = (
        (path / "config.yaml")
        .read_text()
        .replace("feature_output_hook: mlp.hook_out", "feature_output_hook: mlp.hook_in")
    )
    (path / "config.yaml").write_text(text)
    with pytest.raises(DictionaryError, match=r"feature_output_hook = 'mlp\.hook_in' is not supported"):
        load_dictionary(path)


# -- hook names --------------------------------------------------------------------------------


def golden_model(family: str) -> HookedModel:
    model = AutoModelForCausalLM.from_pretrained(GOLDEN / "hooks" / family, attn_implementation="eager")
    return HookedModel(model.eval(), None, name=family)  # type: ignore[arg-type]


@pytest.mark.parametrize("family", ["gpt2", "llama", "mistral", "gemma2", "qwen2", "qwen3"])
def test_hook_names_read_what_transformerlens_caches(family: str) -> None:
    model = golden_model(family)
    ref = load_file(GOLDEN / "hooks" / f"{family}.reference.safetensors")
    hooks = [k for k in ref if k.startswith("blocks.")]
    readable = [k for k in hooks if not k.endswith("hook_scale")]
    assert len(readable) == 8
    logits, got = model.run(ref["input_ids"], [site_from_hook(k) for k in readable])  # type: ignore[misc]
    assert_close(logits, ref["logits"])
    for k in readable:
        assert_close(got[site_from_hook(k)], ref[k])  # type: ignore[index]
    for k in set(hooks) - set(readable):
        with pytest.raises(ValueError, match="not a d_model activation"):
            site_from_hook(k)


def test_gemma2_hooks_that_look_alike_differ() -> None:
    """On Gemma-2 the names graphkit once conflated hold different tensors."""
    ref = load_file(GOLDEN / "hooks/gemma2.reference.safetensors")
    for a, b in [("mlp.hook_out", "hook_mlp_out"), ("ln2.hook_normalized", "mlp.hook_in")]:
        assert (ref[f"blocks.1.{a}"] - ref[f"blocks.1.{b}"]).abs().max() > 0.1


def test_a_transcoder_reading_before_the_gain_encodes_what_saelens_would() -> None:
    """A SAELens transcoder on ln2.hook_normalized of Gemma-2: graphkit feeds it the site
    TransformerLens caches there, so its activations are SAELens's on that cache."""
    model = golden_model("gemma2")
    ref = load_file(GOLDEN / "hooks/gemma2.reference.safetensors")
    d: Dictionary = load_dictionary(GOLDEN / "saelens/transcoder")
    _, got = model.run(ref["input_ids"], [(1, d.read_site)])
    torch.testing.assert_close(d.encode(1, got[(1, d.read_site)]), d.encode(1, ref["blocks.1.ln2.hook_normalized"]))


@pytest.mark.parametrize(
    "variant,file,tensor",
    [
        ("saelens/standard", "sae_weights.safetensors", "W_enc"),
        ("circuit_tracer/clt-jumprelu", "W_dec_1.safetensors", "W_dec_1"),
        ("circuit_tracer/clt-jumprelu", "W_enc_2.safetensors", "threshold_2"),
        ("circuit_tracer/plt-skip-listed", "layer_0.safetensors", "W_skip"),
    ],
)
def test_non_finite_weights_are_refused_naming_file_tensor_and_count(
    tmp_path: Path, variant: str, file: str, tensor: str
) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "d"
    shutil.copytree(GOLDEN / variant, path)
    data = load_file(path / file)
    data[tensor] = data[tensor].clone()
    data[tensor].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    save_file(data, path / file)
    with pytest.raises(DictionaryError, match=rf"{file}: tensor '{tensor}' holds 3 non-finite values"):
        load_dictionary(path)

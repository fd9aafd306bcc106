"""One dictionary interface over circuit-tracer CLT/PLT and SAELens files; hook names; errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from loaders.dictionary import DictionaryError, load_dictionary
from loaders.model import site_from_hook
from tests.factories import random_dictionary, save_dictionary, tiny_model


@pytest.mark.parametrize(
    "kind,activation",
    [("clt", "relu"), ("clt", "jumprelu"), ("clt", "topk"), ("plt", "relu"), ("plt", "jumprelu"), ("plt", "topk")],
)
def test_round_trip_preserves_encoding_and_decoders(tmp_path: Path, kind: str, activation: str) -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, kind, read_site="mlp_in", activation=activation)  # type: ignore[arg-type]
    back = load_dictionary(save_dictionary(d, tmp_path / kind))
    assert (back.kind, back.layers, back.read_site, back.write_site) == (d.kind, d.layers, d.read_site, d.write_site)
    x = torch.randn(5, model.d_model)
    for layer in d.layers:
        torch.testing.assert_close(back.encode(layer, x), d.encode(layer, x))
        for target in d.write_targets(layer):
            torch.testing.assert_close(back.decoder(layer, target), d.decoder(layer, target))


def test_topk_from_the_k_tensor(tmp_path: Path) -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, "plt")
    path = save_dictionary(d, tmp_path / "plt")
    for f in path.glob("layer_*.safetensors"):
        data = load_file(f)
        data["k"] = torch.tensor(3)
        save_file(data, f)
    topk = load_dictionary(path)
    acts = topk.encode(0, torch.randn(4, model.d_model) * 3)
    assert ((acts > 0).sum(-1) <= 3).all() and ((acts > 0).sum(-1) >= 1).all()


def test_shape_errors_name_the_file_tensor_and_shape(tmp_path: Path) -> None:
    model = tiny_model("llama")
    path = save_dictionary(random_dictionary(model, "clt"), tmp_path / "clt")
    data = load_file(path / "W_dec_1.safetensors")
    data["W_dec_1"] = data["W_dec_1"][:, :1].contiguous()
    save_file(data, path / "W_dec_1.safetensors")
    with pytest.raises(
        DictionaryError,
        match=r"W_dec_1\.safetensors: tensor 'W_dec_1' has shape \(24, 1, 16\), "
        r"expected \(24, 2, 16\)",
    ):
        load_dictionary(path)
    wide = load_dictionary(save_dictionary(random_dictionary(tiny_model("llama", d_model=24), "plt"), tmp_path / "w"))
    with pytest.raises(DictionaryError, match=r"d_model=16; expected \(24, 16\)"):
        wide.check_model(model.d_model, model.n_layers)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DictionaryError, match=r"no config\.yaml"):
        load_dictionary(tmp_path / "empty")


def test_hook_names_map_to_sites() -> None:
    assert site_from_hook("hook_resid_mid") == (None, "resid_mid")
    assert site_from_hook("mlp.hook_in") == (None, "mlp_in")
    assert site_from_hook("blocks.7.hook_mlp_out") == (7, "mlp_out")
    assert site_from_hook("mlp.hook_out") == (None, "mlp_module_out")
    assert site_from_hook("blocks.2.ln2.hook_normalized") == (2, "ln2_normalized")
    assert site_from_hook("hook_mlp_in") == (None, "resid_mid")  # HookedTransformer hooks resid_mid there
    with pytest.raises(ValueError, match="unknown hook or site 'hook_attn_out'"):
        site_from_hook("hook_attn_out")
    with pytest.raises(ValueError, match=r"ln2\.hook_scale' is the MLP norm's scale"):
        site_from_hook("blocks.0.ln2.hook_scale")


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2", "qwen2", "qwen3"])
def test_every_family_exposes_its_sites(family: str) -> None:
    model = tiny_model(family)
    ids = model.tokenizer("What is green?", return_tensors="pt").input_ids
    sites = [
        (l, s) for l in range(model.n_layers) for s in ("resid_pre", "resid_mid", "mlp_in", "mlp_out", "resid_post")
    ]
    _, acts = model.run(ids, sites)  # type: ignore[arg-type]
    for l in range(model.n_layers):
        # the residual after the layer is the residual after attention plus what the MLP adds
        torch.testing.assert_close(
            acts[(l, "resid_post")], acts[(l, "resid_mid")] + acts[(l, "mlp_out")], atol=1e-5, rtol=1e-5
        )
        if l + 1 < model.n_layers:
            torch.testing.assert_close(acts[(l + 1, "resid_pre")], acts[(l, "resid_post")])
        norm = model.mlp_norm(l)
        sigma = norm.denominator(acts[(l, "resid_mid")])[..., None].float()
        expected = norm.apply(acts[(l, "resid_mid")], sigma) + (norm.bias if norm.bias is not None else 0)
        torch.testing.assert_close(acts[(l, "mlp_in")], expected, atol=1e-4, rtol=1e-4)


def test_clt_decoders_stay_on_disk_until_read(tmp_path: Path) -> None:
    """The pass reads only encoders: a CLT's decoders are read from their files when asked for."""
    from loaders.dictionary import DiskTensors

    model = tiny_model("llama")
    d = random_dictionary(model, "clt")
    save_dictionary(d, tmp_path / "clt")
    lazy = load_dictionary(tmp_path / "clt")
    assert isinstance(lazy.W_dec, DiskTensors) and lazy.W_dec._last is None
    on_device = lazy.encoders_to("cpu")
    assert on_device.W_dec is lazy.W_dec and lazy.W_dec._last is None
    for layer in d.layers:
        assert torch.equal(lazy.W_dec[layer], d.W_dec[layer])
    assert lazy.W_dec._last is not None and lazy.W_dec._last[0] == d.layers[-1]  # only the last one is held


@pytest.mark.parametrize("kind", ["relu", "jumprelu", "topk"])
def test_support_gives_the_activations(kind: str) -> None:
    """The streaming pass reads non-zeros from (pre, support) instead of the activations:
    where(support, pre, 0) must be them exactly, JumpReLU thresholds below zero and TopK ties
    included, and support must cover every positive one (be them, with thresholds ≥ 0)."""
    from loaders.dictionary import Activation

    g = torch.Generator().manual_seed(0)
    pre = torch.randn(3, 7, 64, generator=g).round(decimals=1)  # rounding makes ties for TopK
    threshold = torch.randn(64, generator=g) * 0.5  # some below zero
    act = {"relu": Activation("relu"), "jumprelu": Activation("jumprelu", threshold), "topk": Activation("topk", k=5)}[
        kind
    ]
    a = act(pre.clone())
    on = act.support(pre)
    assert on.dtype == torch.bool and torch.equal(torch.where(on, pre, 0.0), a)
    assert bool((on | (a <= 0)).all()) and bool((a[~on] == 0).all())
    v, theta = act.gate(pre.clone())  # the kernels' form: a threshold per feature, no mask
    assert theta.shape == (64,) and torch.equal(torch.where(v > theta, v, 0.0), a)
    if kind != "jumprelu":
        assert torch.equal(on, a > 0)
    else:
        assert bool((a[on] < 0).any())  # the negative thresholds did let negatives through
        positive = Activation("jumprelu", threshold.abs())
        assert torch.equal(positive.support(pre), positive(pre.clone()) > 0)

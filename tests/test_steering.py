"""Steering changes exactly what it says: identity steering is a no-op, ablation removes the
feature's reconstruction, additive steering writes α·d_s, and the model runs on."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from graphkit.steering import Intervention, Positions, steer, steering
from loaders.replacement import replaced
from tests.factories import random_dictionary, tiny_model

PROMPT = "What is the color of grass? Answer in one word within <answer></answer>"


def logits_with(model, d, interventions, mask=None, ids=None):
    ids = ids if ids is not None else model.tokenizer(PROMPT, return_tensors="pt").input_ids
    m = mask if mask is not None else (lambda length: torch.arange(length) >= 1)
    with torch.no_grad(), steering(model, d, interventions, m):
        return model.model(input_ids=ids).logits[0]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_identity_steering_leaves_logits_unchanged(family: str) -> None:
    model = tiny_model(family)
    d = random_dictionary(model, "clt")
    clean = logits_with(model, d, [])
    for iv in (
        Intervention(1, 3, "mul", 1.0),
        Intervention(0, 5, "add", 0.0),
        Intervention(2, 7, "mul", 1.0),
    ):
        torch.testing.assert_close(logits_with(model, d, [iv]), clean, atol=1e-6, rtol=0)
    changed = logits_with(model, d, [Intervention(0, 5, "add", 3.0)])
    assert (changed - clean).abs().max() > 1e-3


def test_ablation_equals_removing_the_reconstruction() -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, "clt")
    ids = model.tokenizer(PROMPT, return_tensors="pt").input_ids
    layer, index = 0, 4
    # reference 1: subtract a_s · d_s^(m) from every MLP output the feature writes to
    reads = {(layer, d.read_site): []}

    def remove(m):
        def fn(out):
            a = d.encode(layer, reads[(layer, d.read_site)][-1])[..., index].clone()
            a[:, 0] = 0  # position 0 is never steered
            return out - a[..., None] * d.decoder(layer, m)[index]

        return fn

    with (
        torch.no_grad(),
        model.hooks(capture=reads, edits={(m, d.write_site): remove(m) for m in d.write_targets(layer)}),
    ):
        reference = model.model(input_ids=ids).logits[0]
    steered = logits_with(model, d, [Intervention(layer, index, "mul", 0.0)], ids=ids)
    torch.testing.assert_close(steered, reference, atol=1e-5, rtol=1e-5)

    # reference 2: in the replacement model, ablating s equals a dictionary where s never fires
    never = dataclasses.replace(d, b_enc={**d.b_enc, layer: d.b_enc[layer].clone()})
    never.b_enc[layer][index] = -1e9
    with torch.no_grad(), replaced(model, never):
        ref2 = model.model(input_ids=ids).logits[0]
    with (
        torch.no_grad(),
        replaced(model, d),
        steering(model, d, [Intervention(layer, index, "mul", 0.0)], lambda n: torch.ones(n, dtype=torch.bool)),
    ):
        got2 = model.model(input_ids=ids).logits[0]
    torch.testing.assert_close(got2, ref2, atol=1e-5, rtol=1e-5)


def test_additive_writes_alpha_times_decoder_where_the_feature_is_off() -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, "plt")
    ids = model.tokenizer(PROMPT, return_tensors="pt").input_ids
    layer = 1
    _, sites = model.run(ids, [(layer, d.read_site)])
    acts = d.encode(layer, sites[(layer, d.read_site)])[0]
    index = int((acts[3] == 0).nonzero()[0])  # a feature that is off at position 3
    captured = []
    mlp = model.module(layer, model.family.mlp)
    pos3 = lambda n: torch.arange(n) == 3  # noqa: E731
    with torch.no_grad():
        h = mlp.register_forward_hook(lambda _m, _a, out: captured.append(out.clone()))
        model.model(input_ids=ids)
        h.remove()
        with steering(model, d, [Intervention(layer, index, "add", 2.5)], pos3):
            h = mlp.register_forward_hook(lambda _m, _a, out: captured.append(out.clone()))
            model.model(input_ids=ids)
            h.remove()
    diff = captured[1] - captured[0]
    torch.testing.assert_close(diff[0, 3], 2.5 * d.decoder(layer, layer)[index], atol=1e-5, rtol=1e-5)
    assert diff[0, :3].abs().max() == 0


def test_steering_check_result_is_consistent() -> None:
    model = tiny_model("llama")
    d = random_dictionary(model, "clt")
    r = steer(model, d, PROMPT, [Intervention(0, 2, "mul", 1.0)], max_new_tokens=6)
    assert r.baseline == r.steered and not r.changed
    assert r.logit_before == pytest.approx(r.logit_after, abs=1e-5)
    strong = steer(
        model,
        d,
        PROMPT,
        [Intervention(l, i, "add", 40.0) for l in d.layers for i in range(6)],
        max_new_tokens=6,
        on_generated=True,
    )
    assert strong.prob_before != pytest.approx(strong.prob_after)
    assert 0 <= strong.prob_after <= 1


def test_positions_and_bad_features() -> None:
    toks = ["<|bos|>", "What", " is", " green", "?"]
    assert Positions.parse("all").mask(toks).tolist() == [False, True, True, True, True]
    assert Positions.parse("last").mask(toks).tolist() == [False, False, False, False, True]
    assert Positions.parse("match:green").mask(toks).tolist() == [False, False, False, True, False]
    assert Positions.parse("1,3").mask(toks).tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="select no token"):
        Positions.parse("match:blue").mask(toks)
    with pytest.raises(ValueError, match="use all, last"):
        Positions.parse("first")
    model = tiny_model("llama")
    d = random_dictionary(model, "clt")
    with pytest.raises(ValueError, match="no feature 7/0"):
        steer(model, d, PROMPT, [Intervention(7, 0, "mul", 0.0)])

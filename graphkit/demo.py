"""The demo on the bundled model (grows into collect → load → analyze → steer).

Today it asks the bundled model the research note's two questions, prints its greedy
answers, and lists the cross-layer-transcoder features most active at the last prompt
token, each with its layer, index and activation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from loaders.dictionary import load_dictionary
from loaders.model import HookedModel
from loaders.zoo.evaluate import extract_answer, greedy_continuations

PROMPTS = (
    "What is the color of grass? Answer in one word within <answer></answer>",
    "What is the hex value of green?",
)


@dataclass(frozen=True)
class ActiveFeature:
    """A dictionary feature active at one token."""

    layer: int
    """Model layer the feature reads from."""
    index: int
    """Index of the feature within its layer."""
    activation: float
    """Its activation at the token."""


@dataclass(frozen=True)
class PromptReport:
    """What the demo found for one prompt."""

    prompt: str
    continuation: str
    """Greedy continuation of the prompt."""
    answer: str
    """`extract_answer` of the continuation."""
    top_features: tuple[ActiveFeature, ...]
    """Most active features at the last prompt token, strongest first."""


@torch.no_grad()
def run_demo(model_name: str = "tiny", dictionary_name: str = "tiny-clt", k: int = 5) -> list[PromptReport]:
    model = HookedModel.load(model_name)
    d = load_dictionary(dictionary_name)
    d.check_model(model.d_model, model.n_layers, where=dictionary_name)
    reports = []
    for prompt, cont in zip(
        PROMPTS, greedy_continuations(model.model, model.tokenizer, PROMPTS), strict=True
    ):
        ids = model.tokenizer(prompt, return_tensors="pt").input_ids
        _, sites = model.run(ids, [(layer, d.read_site) for layer in d.layers])
        acts = torch.stack([d.encode(layer, sites[(layer, d.read_site)][0, -1]) for layer in d.layers])
        top = acts.flatten().topk(k)
        feats = tuple(
            ActiveFeature(d.layers[i // d.n_features], i % d.n_features, v)
            for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            if v > 0
        )
        reports.append(PromptReport(prompt, cont, extract_answer(cont), feats))
    return reports

"""Prompt analysis and steering checks on what the graph selects, written back into it.

- `Workspace.open(store, dictionary)`: the store, its `FeatureGraph`, and the model and
  dictionary the loaded run was collected with (read from the run's manifest);
- `analyze`: the features active at each prompt token, strongest first, written into the
  graph as a Prompt node and ACTIVE_ON edges (every active feature at every position);
- `steer_features` / `steer_selection`: one steering check per feature (or one for all of
  them together), each written as a Steering node linked to its features and prompt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graphkit.answers import answer_context as context_of_answer
from graphkit.config import ANALYZE_K, SteerConfig
from graphkit.graph import FeatureGraph
from graphkit.steering import Intervention, Mode, Positions, SteeringResult, steer
from loaders.dictionary import Dictionary, load_dictionary
from loaders.graph.store import EmbeddedStore, Neo4jStore, StoreError, cypher, open_store
from loaders.model import HookedModel, decode, prompt_ids, tokenize_prompt


@dataclass(frozen=True)
class ActiveFeature:
    """A feature active at one token."""

    layer: int
    index: int
    activation: float


@dataclass(frozen=True)
class TokenFeatures:
    """The active features at one prompt position, strongest first."""

    position: int
    token: str
    features: tuple[ActiveFeature, ...]


@dataclass(frozen=True)
class PromptAnalysis:
    """What `analyze` found for one prompt."""

    prompt: str
    prompt_id: str
    tokens: tuple[str, ...]
    positions: tuple[TokenFeatures, ...]
    """Per position (BOS excluded) its top-k features."""
    n_active: int
    """Active (feature, position) pairs written to the graph."""


def prompt_id(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()[:16]


@dataclass
class Workspace:
    """A store with one dictionary, and the model and dictionary its run was collected with."""

    store: EmbeddedStore | Neo4jStore
    graph: FeatureGraph
    model: HookedModel
    dictionary: Dictionary
    model_name: str

    @classmethod
    def open(cls, store: str | Path, dictionary: str | None = None, device: str = "cpu") -> Workspace:
        s = open_store(store, must_exist=True)
        s.ensure_schema()  # properties added since the store was made (schema.ADDED)
        graph = FeatureGraph(s, dictionary)
        manifest_path = Path(graph.info["run"]) / "manifest.json"
        if not manifest_path.exists():
            raise StoreError(
                f"the run this store was loaded from is gone ({manifest_path}); steering needs its model and dictionary"
            )
        manifest = json.loads(manifest_path.read_text())
        model = HookedModel.load(manifest["model"], device=device)
        d = load_dictionary(manifest["dictionary"]).to(model.device)
        return cls(s, graph, model, d, graph.info["model"])

    def id(self, layer: int, index: int) -> str:
        return self.graph.id(layer, index)

    # -- analysis --------------------------------------------------------------------------
    @torch.no_grad()
    def activations(self, prompt: str) -> tuple[tuple[str, ...], torch.Tensor]:
        """The prompt's tokens and its activations (pos, layer, feature); BOS zeroed."""
        tok, d = self.model.tokenizer, self.dictionary
        ids = tokenize_prompt(tok, prompt).to(self.model.device)
        _, sites = self.model.run(ids, [(l, d.read_site) for l in d.layers])
        acts = torch.stack([d.encode(l, sites[(l, d.read_site)][0]) for l in d.layers], 1)  # (pos, layer, feature)
        acts[0] = 0
        return tuple(decode(tok, [t]) for t in ids[0].tolist()), acts

    def active_features(self, prompt: str) -> list[tuple[int, int, float]]:
        """(layer, index, max activation over positions) of every feature active on `prompt`."""
        _, acts = self.activations(prompt)
        best = acts.amax(0)  # (layer, feature)
        layer_i, feat = (best > 0).nonzero(as_tuple=True)
        d = self.dictionary
        return [(d.layers[li], fi, float(best[li, fi])) for li, fi in zip(layer_i.tolist(), feat.tolist(), strict=True)]

    def analyze(
        self, prompt: str, k: int = ANALYZE_K, write: bool = True, answer_context: bool = False
    ) -> PromptAnalysis:
        """Top-k features per position of `prompt` (or, with `answer_context`, of the prompt
        followed by the model's own continuation up to its answer, where "say X" features
        fire), and every active (feature, position) written to the graph."""
        if answer_context:
            prompt, _ = context_of_answer(self.model, prompt)
        d = self.dictionary
        tokens, acts = self.activations(prompt)
        pid = prompt_id(self.model_name, prompt)
        per_position = []
        for p in range(1, len(tokens)):
            flat = acts[p].flatten()
            top = flat.topk(min(k, int((flat > 0).sum())))
            per_position.append(
                TokenFeatures(
                    p,
                    tokens[p],
                    tuple(
                        ActiveFeature(d.layers[i // d.n_features], i % d.n_features, v)
                        for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                    ),
                )
            )
        pos, layer_i, feat = (acts > 0).nonzero(as_tuple=True)
        rows = [
            {
                "feature": self.id(d.layers[li], fi),
                "prompt": pid,
                "position": p,
                "token": tokens[p],
                "activation": float(acts[p, li, fi]),
            }
            for p, li, fi in zip(pos.tolist(), layer_i.tolist(), feat.tolist(), strict=True)
        ]
        if write:
            self._write_prompt(prompt)
            self.store.write(cypher("delete_prompt_activations"), {"prompt": pid, "dictionary": self.graph.dictionary})
            self.store.write_rows(cypher("write_activations"), rows, batch_size=5000)
        return PromptAnalysis(prompt, pid, tokens, tuple(per_position), len(rows))

    def top_tokens(self, ids: Sequence[str]) -> dict[str, list[str]]:
        rows = self.store.read(cypher("features_by_id"), {"ids": list(ids)})
        return {r["id"]: list(r["top_tokens"] or []) for r in rows}

    # -- steering --------------------------------------------------------------------------
    def steer_features(
        self,
        features: Sequence[tuple[int, int]],
        prompt: str,
        mode: Mode,
        value: float,
        positions: Positions | None = None,
        together: bool = False,
        max_new_tokens: int = SteerConfig.max_new_tokens,
        on_generated: bool = SteerConfig.on_generated,
        write: bool = True,
    ) -> list[SteeringResult]:
        """One check per feature (or one with all of them when `together`), written back."""
        if not features:
            raise ValueError("no features to steer")
        groups = [list(features)] if together else [[f] for f in features]
        results = [
            steer(
                self.model,
                self.dictionary,
                prompt,
                [Intervention(l, i, mode, value) for l, i in group],
                positions or Positions(),
                max_new_tokens=max_new_tokens,
                on_generated=on_generated,
            )
            for group in groups
        ]
        if write:
            self.write_steering(results)
        return results

    def select(self, query: str, params: dict[str, Any]) -> list[tuple[int, int]]:
        """`FeatureGraph.select` on this workspace's graph."""
        return self.graph.select(query, params)

    def steer_selection(
        self, query: str, params: dict[str, Any], prompt: str, mode: Mode, value: float, **options: Any
    ) -> list[SteeringResult]:
        """Steer every feature that ``cypher/QUERY.cypher`` returns (rows with ``id``)."""
        return self.steer_features(self.select(query, params), prompt, mode, value, **options)

    def write_steering(self, results: Sequence[SteeringResult], source: dict[str, str] | None = None) -> None:
        """Write steering checks, linked to the features they steered or, with
        ``source={"direction": ID}``, to that Direction node."""
        links = []
        for r in results:
            pid = self._write_prompt(r.prompt)
            steered = [(iv.layer, iv.index, iv.mode, iv.value) for iv in r.interventions]
            key = json.dumps(  # every option that changes the result
                [self.graph.dictionary, pid, steered, r.positions, r.on_generated, r.max_new_tokens]
                + ([source["direction"]] if source else [])
            )
            sid = hashlib.sha256(key.encode()).hexdigest()[:16]
            iv = r.interventions[0]
            self.store.write(
                cypher("write_steering"),
                {
                    "id": sid,
                    "prompt": pid,
                    "mode": iv.mode,
                    "value": iv.value,
                    "positions": r.positions,
                    "baseline": r.baseline,
                    "steered": r.steered,
                    "baseline_answer": r.baseline_answer,
                    "steered_answer": r.steered_answer,
                    "changed": r.changed,
                    "answer_token": r.answer_token,
                    "logit_before": r.logit_before,
                    "logit_after": r.logit_after,
                    "prob_before": r.prob_before,
                    "prob_after": r.prob_after,
                    "on_generated": r.on_generated,
                    "max_new_tokens": r.max_new_tokens,
                },
            )
            if source:
                self.store.write(cypher("link_direction_steering"), {"direction": source["direction"], "steering": sid})
            else:
                links += [{"feature": self.id(i.layer, i.index), "steering": sid} for i in r.interventions]
        if links:
            self.store.write_rows(cypher("link_steering"), links, batch_size=5000)

    def _write_prompt(self, prompt: str) -> str:
        pid = prompt_id(self.model_name, prompt)
        held = self.store.read(cypher("prompt"), {"id": pid})
        if held and held[0]["text"] != prompt:
            raise StoreError(
                f"prompt id {pid} in {self.store.spec} belongs to another prompt ({held[0]['text']!r}); "
                f"refusing to file results for {prompt!r} under it"
            )
        ids = prompt_ids(self.model.tokenizer, prompt)
        tokens = [decode(self.model.tokenizer, [t]) for t in ids]
        self.store.write(
            cypher("write_prompt"), {"id": pid, "model": self.model_name, "text": prompt, "tokens": tokens}
        )
        return pid

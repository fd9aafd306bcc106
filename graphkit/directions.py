"""Residual directions as graph nodes: add one (its statistics on the run's corpus, its top
unembeds and its TWERA-ranked downstream features, `loaders.direction`), read it back, and
steer it like a feature, with the check written to the graph.

A Direction node's id is ``DICTIONARY/direction/NAME``; its downstream edges are ``DIRECTS``
relationships to the dictionary's features (the run's top-k, by |TWERA|), and its steering
checks hang off ``DIRECTION_STEERED``. Adding a direction again with the same name replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graphkit.checks import Workspace
from graphkit.config import SteerConfig
from graphkit.graph import Edge, FeatureGraph
from graphkit.steering import Intervention, Mode, Positions, SteeringResult, steer
from loaders.direction import Direction, DirectionError, DirectionResult, as_record, compute_direction
from loaders.graph.store import cypher


def direction_id(dictionary: str, name: str) -> str:
    return f"{dictionary}/direction/{name}"


def read_vector(path: Path, key: str | None = None) -> torch.Tensor:
    """The one tensor of a safetensors file (or the one named `key`), as float64."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own types for a file that is not one
        raise DirectionError(f"{path}: not a safetensors file ({e})") from e
    if key is None and len(tensors) != 1:
        raise DirectionError(f"{path} holds {len(tensors)} tensors ({', '.join(tensors)}); name one with --key")
    name = key or next(iter(tensors))
    if name not in tensors:
        raise DirectionError(f"{path} has no tensor {name!r} (it has {', '.join(tensors)})")
    return tensors[name].double().flatten()


@dataclass(frozen=True)
class DirectionNode:
    """A Direction node as the graph holds it: the direction and its statistics."""

    id: str
    direction: Direction
    count: int
    density: float
    mean: float
    max: float
    top_tokens: tuple[str, ...]
    bottom_tokens: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.direction.name

    @property
    def layer(self) -> int:
        return self.direction.layer


def add_direction(ws: Workspace, direction: Direction, k: int | None = None) -> DirectionResult:
    """Compute `direction` on the workspace's run and write it (replacing one of that name)."""
    run = Path(ws.graph.info["run"])
    result = compute_direction(ws.model, ws.dictionary, direction, run, top_k=k or _run_top_k(run))
    did = direction_id(ws.graph.dictionary, direction.name)
    top = max((abs(e["twera"]) for e in result.edges), default=0.0) or 1.0
    ws.store.write(cypher("write_direction"), {"id": did, "dictionary": ws.graph.dictionary, **as_record(result)})
    ws.store.write(cypher("delete_direction_edges"), {"id": did})
    rows = [
        {"source": did, "target": ws.id(e["target_layer"], e["target_index"]), "twera": e["twera"], "era": e["era"],
         "virtual_weight": e["virtual_weight"], "twera_norm": e["twera"] / top}
        for e in result.edges
    ]  # fmt: skip
    ws.store.write_rows(cypher("write_direction_edges"), rows, batch_size=5000)
    return result


def _run_top_k(run: Path) -> int:
    import json

    return int(json.loads((run / "manifest.json").read_text())["options"]["top_k"])


def get_direction(graph: FeatureGraph, name: str) -> DirectionNode:
    rows = graph.run("direction", id=direction_id(graph.dictionary, name))
    if not rows:
        held = [r["name"] for r in graph.run("directions", dictionary=graph.dictionary)]
        raise DirectionError(
            f"no direction {name!r} on dictionary {graph.dictionary!r} (it has: {', '.join(held) or 'none'}); "
            "add one with `graphkit direction add`"
        )
    r = rows[0]
    vector, read = torch.tensor(r["vector"], dtype=torch.float64), torch.tensor(r["read_vector"], dtype=torch.float64)
    return DirectionNode(
        r["id"], Direction(r["name"], r["layer"], vector, read, r["bias"], r["read_site"]),
        r["count"], r["density"], r["mean"], r["max"], tuple(r["top_tokens"] or ()), tuple(r["bottom_tokens"] or ()),
    )  # fmt: skip


def direction_downstream(graph: FeatureGraph, name: str, k: int = 10) -> list[Edge]:
    rows = graph.run("direction_downstream", id=direction_id(graph.dictionary, name), k=k)
    return [Edge.from_row(r) for r in rows]


def steer_direction(
    ws: Workspace,
    name: str,
    prompt: str,
    mode: Mode,
    value: float,
    positions: Positions | None = None,
    max_new_tokens: int = SteerConfig.max_new_tokens,
    on_generated: bool = SteerConfig.on_generated,
) -> SteeringResult:
    """Steer the direction as a feature (its activation a ← mode(a, value), the change times its
    vector added where it writes) and write the check, linked to the Direction node."""
    node = get_direction(ws.graph, name)
    one = node.direction.as_dictionary(ws.dictionary).to(ws.model.device)
    result = steer(
        ws.model, one, prompt, [Intervention(node.layer, 0, mode, value)], positions or Positions(),
        max_new_tokens=max_new_tokens, on_generated=on_generated,
    )  # fmt: skip
    ws.write_steering([result], source={"direction": node.id})
    return result


def direction_json(node: DirectionNode, down: list[Edge]) -> dict[str, Any]:
    return {
        "id": node.id, "name": node.name, "layer": node.layer, "count": node.count, "density": node.density,
        "mean": node.mean, "max": node.max, "top_tokens": list(node.top_tokens),
        "bottom_tokens": list(node.bottom_tokens), "downstream": [e.as_json() for e in down],
    }  # fmt: skip

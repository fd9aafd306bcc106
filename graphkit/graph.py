"""Query modules: the Cypher files of ``cypher/`` run by name against either store.

`FeatureGraph` binds a store to one dictionary and answers the questions researchers ask:
where does this feature's output go (`downstream`, multi-hop as a ``networkx.DiGraph`` via
`neighbourhood`), what feeds it (`upstream`), which motor features it reaches and how
strongly (`motor_paths`), which features say or fire on a word, and which look alike.
Rows come back as frozen dataclasses; every value travels as a query parameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import networkx as nx

from loaders.errors import GraphkitError
from loaders.graph.schema import MEASURES, Measure, feature_id, normalize_token
from loaders.graph.store import EmbeddedStore, Neo4jStore, StoreError, cypher

Sign = Literal["any", "positive", "negative"]
_SIGN = {"any": 0.0, "positive": 1.0, "negative": -1.0}
_ALL_LAYERS = (-1, 1 << 30)


@dataclass(frozen=True)
class Edge:
    """One FEEDS edge seen from a feature: the neighbour and the edge's weights."""

    id: str
    """Neighbour feature id ("dictionary/layer/index")."""
    layer: int
    index: int
    twera: float
    """Target-weighted expected residual attribution (sign kept)."""
    era: float
    virtual_weight: float
    twera_norm: float
    """TWERA over the largest |TWERA| among the source's kept edges."""
    top_tokens: tuple[str, ...]
    """The neighbour's top unembeds."""
    motor_word: str | None
    """The word the neighbour says, if it is a motor feature."""

    @staticmethod
    def from_row(r: dict[str, Any]) -> Edge:
        """An edge from a row of the downstream / upstream / direction_downstream queries."""
        return Edge(
            r["id"], r["layer"], r["idx"], r["twera"], r["era"], r["virtual_weight"], r["twera_norm"],
            tuple(r["top_tokens"] or ()), r["motor_word"],
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "layer": self.layer,
            "index": self.index,
            "twera": self.twera,
            "era": self.era,
            "virtual_weight": self.virtual_weight,
            "top_tokens": list(self.top_tokens),
            "motor_word": self.motor_word,
        }


@dataclass(frozen=True)
class Feature:
    """One feature as the graph holds it (docs/schema.md)."""

    id: str
    dictionary: str
    layer: int
    index: int
    count: int
    """Counted positions where it is active."""
    density: float
    mean: float
    max: float
    top_tokens: tuple[str, ...]
    """Top logit-lens tokens, best first."""
    bottom_tokens: tuple[str, ...]
    example_tokens: tuple[str, ...]
    """Tokens where its top examples peak."""
    example_summary: str
    motor_word: str | None
    """The word it says, if it is a motor feature."""
    motor_score: float | None
    description: str | None = None
    """One sentence on what it does (`graphkit describe`), if written."""

    @staticmethod
    def from_row(r: dict[str, Any]) -> Feature:
        return Feature(
            r["id"], r["dictionary"], r["layer"], r["idx"], r["count"], r["density"], r["mean"], r["max"],
            tuple(r["top_tokens"] or ()), tuple(r["bottom_tokens"] or ()), tuple(r["example_tokens"] or ()),
            r["example_summary"] or "", r["motor_word"], r["motor_score"], r.get("description"),
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MotorFeature:
    """A motor ("say X") feature."""

    id: str
    layer: int
    index: int
    word: str
    score: float
    """The motor rule's margin: z of the word − z of the next word (`loaders.motor`)."""


@dataclass(frozen=True)
class Lookalike:
    """A feature that shares top-unembed or top-example words with another."""

    id: str
    layer: int
    index: int
    shared: int
    """How many words they share."""
    words: tuple[str, ...]
    top_tokens: tuple[str, ...]
    motor_word: str | None


@dataclass(frozen=True)
class MotorPath:
    """A path of FEEDS edges from a feature to a motor feature."""

    id: str
    layer: int
    index: int
    word: str
    hops: int
    score: float
    """Product of twera_norm along the path."""
    via: tuple[str, ...]
    """Feature ids along the path, source first."""


class FeatureIdError(GraphkitError, ValueError):
    """Text that is not a feature id of the dictionary at hand."""


def parse_feature(text: str) -> tuple[str | None, int, int]:
    """A feature id → (dictionary or None, layer, index).

    The one grammar every command accepts: ``DICTIONARY/LAYER/INDEX`` (what graphkit prints,
    e.g. ``tiny-clt/1/517``; the dictionary may itself hold slashes) or ``LAYER/INDEX`` for the
    store's dictionary (``1/517``).
    """
    parts = str(text).rsplit("/", 2)
    try:
        layer, index = int(parts[-2]), int(parts[-1])
    except (ValueError, IndexError):
        raise FeatureIdError(
            f"{text!r} is not a feature id: DICTIONARY/LAYER/INDEX (e.g. tiny-clt/1/517) or LAYER/INDEX (1/517)"
        ) from None
    if layer < 0 or index < 0:
        raise FeatureIdError(f"{text!r}: layer and index are ≥ 0")
    return (parts[0] if len(parts) == 3 else None), layer, index


def neighbourhood_json(root: str, g: nx.DiGraph) -> dict[str, Any]:
    """A neighbourhood as JSON: {root, nodes: [{id, …}], edges: [{source, target, …}]}."""
    return {
        "root": root,
        "nodes": [{"id": n, **a} for n, a in g.nodes(data=True)],
        "edges": [{"source": u, "target": v, **a} for u, v, a in g.edges(data=True)],
    }


def _looks_like_feature(value: object) -> bool:
    try:
        parse_feature(str(value))
    except FeatureIdError:
        return False
    return True


class FeatureGraph:
    """One dictionary in one store."""

    def __init__(self, store: EmbeddedStore | Neo4jStore, dictionary: str | None = None):
        self.store = store
        loaded = {r["id"]: r for r in store.read(cypher("dictionaries"))}
        if not loaded:
            raise StoreError(f"store {store.spec} holds no dictionary; load a run with `graphkit load RUN`")
        if dictionary is None:
            if len(loaded) > 1:
                raise StoreError(
                    f"store {store.spec} holds several dictionaries ({', '.join(loaded)}); choose one with --dictionary"
                )
            dictionary = next(iter(loaded))
        if dictionary not in loaded:
            raise StoreError(
                f"store {store.spec} holds no dictionary {dictionary!r} (it holds: "
                f"{', '.join(loaded)}); was it built from another dictionary?"
            )
        self.dictionary = dictionary
        self.info = loaded[dictionary]

    def id(self, layer: int, index: int) -> str:
        """The feature's id as graphkit prints it: DICTIONARY/LAYER/INDEX."""
        return feature_id(self.dictionary, layer, index)

    def resolve(self, text: str) -> tuple[int, int]:
        """(layer, index) of a feature id in either form of `parse_feature`, of this dictionary."""
        dictionary, layer, index = parse_feature(text)
        if dictionary is not None and dictionary != self.dictionary:
            raise FeatureIdError(f"{text!r} is a feature of {dictionary!r}, not of {self.dictionary!r} (--dictionary)")
        return layer, index

    def full_ids(self, params: dict[str, Any]) -> dict[str, Any]:
        """Query parameters with short feature ids (``1/517``) in ``id`` / ``ids`` made full."""
        out = dict(params)
        for key in ("id", "ids"):
            value = out.get(key)
            if isinstance(value, str):
                out[key] = self.id(*self.resolve(value)) if _looks_like_feature(value) else value
            elif isinstance(value, list):
                out[key] = [self.id(*self.resolve(v)) if _looks_like_feature(v) else v for v in value]
        return out

    def select(self, query: str, params: dict[str, Any]) -> list[tuple[int, int]]:
        """(layer, index) of every feature ``cypher/QUERY.cypher`` returns (rows with ``id``).

        A query that takes ``$dictionary`` gets this graph's unless `params` name one; feature
        ids in ``id`` / ``ids`` may be short (``1/517``).
        """
        params = self.full_ids(params)
        if "$dictionary" in cypher(query) and "dictionary" not in params:
            params = {**params, "dictionary": self.dictionary}
        rows = self.run(query, **params)
        if rows and "id" not in rows[0]:
            raise StoreError(
                f"the selection {query!r} returns columns {', '.join(rows[0])} but no 'id': "
                "--select needs a query whose rows have an id column of feature ids (e.g. lookalikes, downstream)"
            )
        ids = [r["id"] for r in rows if isinstance(r.get("id"), str)]
        if not ids:
            raise ValueError(f"the selection {query!r} with {params} returned no features; nothing was done")
        return [self.resolve(fid) for fid in ids]

    def feature(self, layer: int, index: int) -> Feature:
        rows = self.store.read(cypher("feature"), {"id": self.id(layer, index)})
        if not rows:
            raise StoreError(
                f"no feature {layer}/{index} in dictionary {self.dictionary!r} "
                f"({self.info['n_layers']} layers × {self.info['n_features']} features)"
            )
        return Feature.from_row(rows[0])

    def run(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run ``cypher/NAME.cypher`` with `params`."""
        return self.store.read(cypher(name), params)

    def _hop(
        self, name: str, fid: str, k: int, sign: Sign, layers: tuple[int, int], by: Measure = "twera"
    ) -> list[Edge]:
        if by not in MEASURES:
            raise ValueError(f"rank edges by one of {', '.join(MEASURES)}, not {by!r}")
        rows = self.run(name, id=fid, k=k, sign=_SIGN[sign], min_layer=layers[0], max_layer=layers[1], by=by)
        return [Edge.from_row(r) for r in rows]

    def downstream(
        self, layer: int, index: int, k: int = 10, sign: Sign = "any", layers: tuple[int, int] = _ALL_LAYERS,
        by: Measure = "twera",
    ) -> list[Edge]:  # fmt: skip
        """The feature's top-k downstream targets by |TWERA| (or `by`; `MEASURES`), one hop."""
        self.feature(layer, index)
        return self._hop("downstream", self.id(layer, index), k, sign, layers, by)

    def upstream(
        self, layer: int, index: int, k: int = 10, sign: Sign = "any", layers: tuple[int, int] = _ALL_LAYERS,
        by: Measure = "twera",
    ) -> list[Edge]:  # fmt: skip
        """The feature's top-k upstream sources by |TWERA| (or `by`), one hop."""
        self.feature(layer, index)
        return self._hop("upstream", self.id(layer, index), k, sign, layers, by)

    def neighbourhood(
        self,
        layer: int,
        index: int,
        hops: int = 2,
        k: int = 5,
        direction: str = "down",
        sign: Sign = "any",
        layers: tuple[int, int] = _ALL_LAYERS,
        by: Measure = "twera",
    ) -> nx.DiGraph:
        """Top-k per hop, `hops` hops out: nodes carry layer, index, top_tokens, motor_word;
        edges (always source → target) carry twera, era, virtual_weight, twera_norm, hop."""
        root = self.feature(layer, index)
        g = nx.DiGraph()
        g.add_node(
            root.id,
            layer=root.layer,
            index=root.index,
            top_tokens=list(root.top_tokens),
            motor_word=root.motor_word,
            hop=0,
        )
        frontier = [root.id]
        name = "downstream" if direction == "down" else "upstream"
        for hop in range(1, hops + 1):
            nxt = []
            for fid in frontier:
                for e in self._hop(name, fid, k, sign, layers, by):
                    if e.id not in g:
                        g.add_node(
                            e.id,
                            layer=e.layer,
                            index=e.index,
                            top_tokens=list(e.top_tokens),
                            motor_word=e.motor_word,
                            hop=hop,
                        )
                        nxt.append(e.id)
                    src, tgt = (fid, e.id) if direction == "down" else (e.id, fid)
                    g.add_edge(
                        src,
                        tgt,
                        twera=e.twera,
                        era=e.era,
                        virtual_weight=e.virtual_weight,
                        twera_norm=e.twera_norm,
                        hop=hop,
                    )
            frontier = nxt
        return g

    def motor_paths(self, layer: int, index: int, k: int = 10) -> list[MotorPath]:
        """Strongest paths (1–3 hops) to motor features, by |product of twera_norm|."""
        self.feature(layer, index)
        rows = self.run("motor_paths", id=self.id(layer, index), k=k)
        return [
            MotorPath(r["id"], r["layer"], r["idx"], r["word"], r["hops"], r["score"], tuple(r["via"])) for r in rows
        ]

    def motor_features(self, word: str = "") -> list[MotorFeature]:
        """Motor features, of `word` or of any word, by margin."""
        rows = self.run("motor_features", dictionary=self.dictionary, word=normalize_token(word))
        return [MotorFeature(r["id"], r["layer"], r["idx"], r["word"], r["score"]) for r in rows]

    def by_unembed(self, word: str, k: int = 20) -> list[dict[str, Any]]:
        return self.run("features_by_unembed", dictionary=self.dictionary, word=normalize_token(word), k=k)

    def by_example_token(self, word: str, k: int = 20) -> list[dict[str, Any]]:
        return self.run("features_by_example_token", dictionary=self.dictionary, word=normalize_token(word), k=k)

    def lookalikes(self, layer: int, index: int, window: int = 1, k: int = 10) -> list[Lookalike]:
        """Features within `window` layers sharing the most words with this one."""
        self.feature(layer, index)
        rows = self.run("lookalikes", id=self.id(layer, index), window=window, k=k)
        return [
            Lookalike(
                r["id"],
                r["layer"],
                r["idx"],
                r["shared"],
                tuple(r["words"] or ()),
                tuple(r["top_tokens"] or ()),
                r["motor_word"],
            )
            for r in rows
        ]

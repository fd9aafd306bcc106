"""Names that resolve to directories: the bundled model and dictionaries.

A small registry, the one place a name like ``tiny`` or ``tiny-clt`` becomes a path
(`loaders.model.resolve_model`, `loaders.dictionary.resolve_dictionary`). The artifacts ship
inside the package (``loaders/zoo/artifacts``); `loaders.zoo` holds the code that trains them.
"""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "zoo" / "artifacts"
NAMES: dict[str, str] = {
    "tiny": "Llama-family causal LM, 4 layers, d_model 128, trained on stdlib code + facts",
    "tiny-clt": "cross-layer transcoder for tiny (circuit-tracer CLT layout)",
    "tiny-plt": "per-layer transcoders for tiny (circuit-tracer PLT layout)",
}


def zoo_path(name: str) -> Path:
    """Directory of bundled artifact `name`; a clear error when unknown or not built."""
    if name not in NAMES:
        raise KeyError(f"unknown zoo artifact {name!r}; known: {', '.join(NAMES)}")
    path = ARTIFACTS / name
    if not path.is_dir():
        raise FileNotFoundError(f"zoo artifact {name!r} is missing at {path}; rebuild with `graphkit zoo build`")
    return path


def zoo_list() -> list[tuple[str, str, Path]]:
    """(name, description, directory) of every bundled artifact."""
    return [(name, desc, ARTIFACTS / name) for name, desc in NAMES.items()]

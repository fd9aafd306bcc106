"""The options of ``graphkit collect``, one frozen dataclass per stage.

They import nothing heavy, so the command line reads its defaults, choices and help from
them (`graphkit.cli.options`) without loading torch: each default is stated here only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Dtype = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class StatsConfig:
    """Options of the streaming pass (`loaders.stats`)."""

    batch_tokens: int = 4096
    """Padded tokens per model batch (rows × longest window)."""
    chunk_tokens: int = 16384
    """Tokens per chunk: the unit of length bucketing, pair-sum updates and checkpoints."""
    context: int | None = None
    """Window length including BOS (default: the model's context)."""
    top_k: int = 10
    """Top activating examples kept per feature (one per window)."""
    window: int = 16
    """Tokens kept on each side of a top example's peak: enough to show a feature's subject,
    not just its peak. Costs top_k × (2·window + 1) × 12 bytes per feature on the device
    (33 tokens: 4 KB; 1.7 GB for 426k features)."""
    max_tokens: int | None = None
    """Stop after the chunk that reaches this many tokens."""
    checkpoint_every: int = 16
    """Chunks between checkpoints."""

    def __post_init__(self) -> None:
        if self.batch_tokens < 2 or self.chunk_tokens < 1 or self.top_k < 1 or self.window < 0:
            raise ValueError("StatsConfig: batch_tokens ≥ 2, chunk_tokens and top_k ≥ 1, window ≥ 0")
        if self.context is not None and self.context < 2:
            raise ValueError("StatsConfig: context must be ≥ 2 (BOS + one token)")


@dataclass(frozen=True)
class CollectConfig:
    """Options of ``graphkit collect`` (`loaders.collect`)."""

    top_k: int = 32
    """Edges kept per feature, each direction."""
    n_unembeds: int = 10
    """Logit-lens top and bottom tokens kept per feature."""
    stats: StatsConfig = field(default_factory=StatsConfig)
    device: str = "cpu"
    """torch device (from the command line: cuda when available, else cpu)."""
    dtype: Dtype = "fp32"
    """The model's dtype for the pass; encoders and statistics stay fp32."""
    exact_pairs: bool = False
    """Keep every co-active pair exactly (sparse float64): small dictionaries, the test oracle."""
    replay: bool = True
    """When pairs take several passes, keep the first pass's non-zeros on disk (in the run
    directory, until the last pass ends) and read them in the later passes instead of running
    the model again; off with --ray, and given up when the disk runs short."""
    memory_budget: int | None = None
    """Bytes for dense pair blocks per pass, e.g. 16GB (default: half the device's memory)."""
    ray: str | None = None
    """Run each pass on Ray workers: 'auto', 'local' or a cluster address (default: in process)."""
    workers: int | None = None
    """Ray workers (default: one per GPU, else one per CPU slot)."""

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.n_unembeds < 1:
            raise ValueError("CollectConfig: top_k and n_unembeds must be ≥ 1")
        if self.dtype not in get_args(Dtype):
            raise ValueError(f"CollectConfig: dtype {self.dtype!r} is not one of {', '.join(get_args(Dtype))}")

    @classmethod
    def from_options(cls, **given: Any) -> CollectConfig:
        """The defaults with the options given (None: not given), StatsConfig's fields included
        where the name is not one of CollectConfig's own;
        ``memory_budget`` may be text ("16GB"), ``device`` None means cuda when available."""
        given = {k: v for k, v in given.items() if v is not None}
        own = {f.name for f in dataclasses.fields(cls)}  # top_k is the edges' here, not the examples'
        stats_fields = {f.name for f in dataclasses.fields(StatsConfig)} - own
        stats = {k: given.pop(k) for k in list(given) if k in stats_fields}
        if isinstance(given.get("memory_budget"), str):
            given["memory_budget"] = parse_bytes(given["memory_budget"])
        if "device" not in given:
            import torch

            given["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(stats=StatsConfig(**stats), **given)


def parse_bytes(text: str) -> int:
    """'16GB', '4GiB', '512M', '1e9' → bytes (powers of 1024 for G/M/K)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if t and t[-1] in scale:
            return int(float(t[:-1]) * scale[t[-1]])
        return int(float(t))
    except ValueError as e:
        raise ValueError(f"memory budget {text!r}: give bytes or a size like 16GB, 512MB") from e

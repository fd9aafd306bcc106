"""How graphkit's checks run: small frozen dataclasses, one per stage.

They import nothing heavy, so the command line reads its defaults, choices and help from
them (`graphkit.cli.options`) without loading torch: each default is stated here only.
`loaders.config` holds the options of ``collect``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["mul", "add", "clamp"]
"""Steering: a ← c·a (mul), a ← a + α (add), a ← v (clamp); DESIGN.md, "Steering modes"."""

ANALYZE_K = 8
"""Features `Workspace.analyze` lists per prompt position."""


@dataclass(frozen=True)
class SteerConfig:
    """How a steering check runs (`graphkit steer`, `Workspace.steer_features`, `steer_direction`)."""

    mode: Mode = "mul"
    value: float = -1.0
    """c (mul), α (add) or v (clamp); the default, c = −1, is the research note's."""
    max_new_tokens: int = 12
    """Tokens generated after the prompt, in which the answer is looked for."""
    on_generated: bool = True
    """Steer the generated tokens too (as the research note and the benchmark do), or only the
    prompt's."""


@dataclass(frozen=True)
class BuildConfig:
    """How look-alike groups are discovered (`graphkit bench build`, `graphkit.bench.groups`)."""

    mode: Mode = SteerConfig.mode
    value: float = SteerConfig.value
    """c (mul), α (add: try 5) or v (clamp); negative multiplicative ("stop saying X") by default."""
    pool: int = 8
    min_candidates: int = 3
    max_candidates: int = 5
    max_prompts: int | None = None
    """Prompts to try (default: all held-out questions, which takes hours)."""
    n_examples: int = 5
    n_downstream: int = 8
    max_new_tokens: int = SteerConfig.max_new_tokens
    seed: int = 0
    """Order in which `bench build` draws prompts (a seeded shuffle)."""

    def __post_init__(self) -> None:
        if not 3 <= self.min_candidates <= self.max_candidates:
            raise ValueError("BuildConfig: need 3 ≤ min_candidates ≤ max_candidates")

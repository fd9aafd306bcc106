"""The benchmark's records: a look-alike group, its candidates and their downstream features,
and the JSON-lines file `bench build` writes them to.

Everything a predictor may see about a candidate is here; nothing else is read. Descriptor
fields default to empty so that a predictor that does not use one can be tested without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from loaders.errors import GraphkitError
from loaders.graph.schema import MEASURES


class GroupsError(GraphkitError):
    """A groups file that `bench build` did not write."""


@dataclass(frozen=True)
class Downstream:
    """One of a candidate's downstream features (ranked by TWERA unless it sits in a list
    ranked by another measure, `Candidate.downstream_by`)."""

    twera: float
    top_unembeds: tuple[str, ...] = ()
    answer_logit: float = 0.0
    """The downstream feature's own logit-lens value for the answer token."""
    feature: str = ""
    layer: int = 0
    index: int = 0
    motor_word: str | None = None
    era: float = 0.0
    virtual_weight: float = 0.0


@dataclass(frozen=True)
class Candidate:
    """A look-alike feature: what a researcher sees of it, and what steering it did."""

    feature: str = ""
    layer: int = 0
    index: int = 0
    activation: float = 0.0
    """Its strongest activation on the answer context."""
    top_examples: tuple[str, ...] = ()
    """Top activating examples, the peak token marked «»."""
    top_unembeds: tuple[str, ...] = ()
    example_tokens: tuple[str, ...] = ()
    motor_word: str | None = None
    answer_logit: float = 0.0
    answer_rank: int = 0
    """How many vocabulary tokens its logit lens ranks above the answer token."""
    downstream: tuple[Downstream, ...] = ()
    downstream_era: tuple[Downstream, ...] = ()
    """The kept downstream edges ranked by |ERA| instead (groups built before this have none)."""
    downstream_virtual_weight: tuple[Downstream, ...] = ()
    changed: bool = False
    steered_answer: str = ""
    """`changed`: in mul/clamp groups, the answer changed; in add groups, it became the target."""

    def downstream_by(self, by: str) -> tuple[Downstream, ...]:
        """The downstream list ranked by `by` (one of `MEASURES`)."""
        if by not in MEASURES:
            raise ValueError(f"downstream lists are ranked by one of {', '.join(MEASURES)}, not {by!r}")
        return self.downstream if by == "twera" else getattr(self, f"downstream_{by}")


@dataclass(frozen=True)
class Steering:
    mode: str
    value: float


@dataclass(frozen=True)
class Group:
    """Candidates that look alike, of which exactly one (`truth`) changes the answer."""

    prompt: str
    answer: str
    truth: int
    candidates: tuple[Candidate, ...]
    steering: Steering
    id: str = ""
    answer_words: tuple[str, ...] = ()
    answer_token: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    baseline_answer: str = ""
    """The model's own answer. In "stop saying X" groups (mul, clamp) it is `answer`; in
    "make it say X" groups (add) `answer` is the target and this what the model says instead."""

    def __post_init__(self) -> None:
        if not 0 <= self.truth < len(self.candidates):
            raise ValueError(
                f"group {self.id or self.prompt!r}: truth {self.truth} of {len(self.candidates)} candidates"
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Group:
        """A group from its JSON object; raises KeyError/TypeError/ValueError when malformed."""
        lists = ("downstream", "downstream_era", "downstream_virtual_weight")
        candidates = tuple(
            _make(Candidate, c, **{n: tuple(_make(Downstream, d) for d in c.get(n, ())) for n in lists})
            for c in row["candidates"]
        )
        return _make(cls, row, candidates=candidates, steering=_make(Steering, row["steering"]))


def _make(cls: Any, row: dict[str, Any], **given: Any) -> Any:
    """`cls` from the known keys of `row`, lists as tuples, `given` taking precedence."""
    known = {f.name for f in fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in row.items() if k in known}
    return cls(**(values | given))


def write_groups(groups: Iterable[Group], path: Path) -> int:
    """Write groups as JSON lines atomically; return how many."""
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w") as f:
        for g in groups:
            f.write(json.dumps(g.to_json()) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_groups(path: Path) -> list[Group]:
    """The groups of a JSONL file `bench build` wrote; anything else is a clear error."""
    groups = []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise GroupsError(f"{path}, line {n}: not JSON ({e.msg}); give a groups file from `bench build`") from e
            try:
                groups.append(Group.from_json(row))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise GroupsError(
                    f"{path}, line {n}: not a look-alike group ({type(e).__name__}: {e}); "
                    "give a groups file from `graphkit bench build`"
                ) from e
    if not groups:
        raise GroupsError(f"{path} holds no groups")
    return groups

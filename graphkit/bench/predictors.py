"""Predictors that rank a group's candidates, and the runner that scores them.

Offline predictors (no LLM) score each candidate from what the group file holds; higher is
"more likely to change the answer when steered negatively". Ties keep the presented order.

- ``random``: a seeded shuffle (the 0.5 baseline);
- ``logit``: the candidate's direct logit-lens effect on the answer token (VocabProj-like:
  what the feature's output direction says about the answer);
- ``logit-rank``: the answer token's rank in the candidate's vocabulary projection
  (lower rank scores higher; TokenChange/VocabProj in spirit, insensitive to scale);
- ``activation``: how strongly the candidate fires on the prompt;
- ``twera``: the effect propagated one step through its TWERA downstream list, Σ_t TWERA_st ·
  logit-lens_t(answer): what the features it feeds say about the answer;
- ``twera+logit``: the two summed after scaling each to unit maximum within the group.

`run_predictor` applies the protocol (`protocol.evaluate`); the LLM judge plugs in the same way,
and so does ``learned`` (`graphkit.bench.learned`): a ranker fit on what one judge condition
shows, scored out of sample by grouped cross-validation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from graphkit.bench.protocol import Score, evaluate
from graphkit.bench.records import Candidate, Group


def _twera(c: Candidate) -> float:
    return float(sum(d.twera * d.answer_logit for d in c.downstream))


def _scaled(values: Sequence[float]) -> list[float]:
    top = max((abs(v) for v in values), default=0.0) or 1.0
    return [v / top for v in values]


SCORERS: dict[str, Callable[[Sequence[Candidate]], list[float]]] = {
    "logit": lambda cs: [c.answer_logit for c in cs],
    "logit-rank": lambda cs: [-float(c.answer_rank) for c in cs],
    "activation": lambda cs: [c.activation for c in cs],
    "twera": lambda cs: [_twera(c) for c in cs],
    "twera+logit": lambda cs: [
        a + b for a, b in zip(_scaled([_twera(c) for c in cs]), _scaled([c.answer_logit for c in cs]), strict=True)
    ],
}
OFFLINE = ("random", *SCORERS)


def offline_ranker(name: str, groups: Sequence[Group], seed: int = 0) -> Callable[[int, Sequence[int]], list[int]]:
    """`rank(group_index, presented_order)` for an offline predictor."""
    if name == "random":
        rng = random.Random(seed)

        def shuffle(_g: int, order: Sequence[int]) -> list[int]:
            out = list(order)
            rng.shuffle(out)
            return out

        return shuffle
    if name not in SCORERS:
        raise ValueError(f"unknown predictor {name!r}; offline: {', '.join(OFFLINE)}; or judge")
    scores = [SCORERS[name](g.candidates) for g in groups]

    def rank(g: int, order: Sequence[int]) -> list[int]:
        return sorted(order, key=lambda i: -scores[g][i])  # stable: ties keep presented order

    return rank


def run_predictor(
    groups: Sequence[Group], rank: Callable[[int, Sequence[int]], Sequence[int] | None], seed: int = 0
) -> Score:
    return evaluate([(len(g.candidates), g.truth) for g in groups], rank, seed=seed)


def score_predictor(
    groups: Sequence[Group], predictor: str, condition: str = "", judge: Any = None, seed: int = 0, by: str = "twera"
) -> tuple[str, Score]:
    """(the result's name, its score) for an offline predictor, or for ``judge`` (a
    `graphkit.bench.judge.JudgeConfig`) under `condition`."""
    if predictor == "learned":
        from graphkit.bench.learned import out_of_sample_scores

        if by != "twera" and not any(c.downstream_by(by) for g in groups for c in g.candidates):
            raise ValueError(f"these groups hold no downstream lists ranked by {by}; build them again with bench build")
        scores, _ = out_of_sample_scores(groups, condition, seed=seed, by=by)

        def rank(g: int, order: Sequence[int]) -> list[int]:
            return sorted(order, key=lambda i: -scores[g][i])  # stable: ties keep presented order

        return "learned" if by == "twera" else f"learned-by-{by}", run_predictor(groups, rank, seed=seed)
    if predictor != "judge":
        return predictor, run_predictor(groups, offline_ranker(predictor, groups, seed), seed=seed)
    from graphkit.bench.judge import CONDITIONS, Judge, JudgeConfig

    if condition not in CONDITIONS:
        raise ValueError(f"--condition must be one of {', '.join(CONDITIONS)} for the judge")
    j = Judge(judge or JudgeConfig())
    return f"judge:{j.cfg.model}", run_predictor(
        groups, lambda g, order: j.rank(groups[g], order, condition), seed=seed
    )

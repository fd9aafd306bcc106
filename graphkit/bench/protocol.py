"""The benchmark protocol of DESIGN.md: 2·n presentations per group, normalized rank.

A group has n candidates, exactly one of which (``truth``) changes the answer when steered.
For each group the candidates are presented 2·n times: the true feature at every position
twice, the others shuffled (seeded). A predictor ranks each presentation (best first); the
true feature's normalized rank is (rank − 1)/(n − 1): 0 perfect, 1 last, 0.5 random.

The score is the mean over all presentations of all groups; its 95% interval resamples
groups with replacement (a cluster bootstrap: presentations of one group are not
independent), 2000 times by default.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Ranker = Callable[[Sequence[int]], Sequence[int]]
"""Given candidate indices in presented order, return them ranked best first."""


@dataclass(frozen=True)
class Score:
    """A predictor's result over a set of groups."""

    mean: float
    """Mean normalized rank over all presentations of all groups."""
    low: float
    high: float
    """95% bootstrap interval (groups resampled)."""
    groups: int
    presentations: int
    failures: int
    """Presentations the predictor could not rank; each counts as the worst rank (1.0)."""
    per_group: tuple[float, ...] = ()
    """Each group's mean normalized rank, in the groups' order (for paired comparisons)."""


def presentations(n: int, truth: int, seed: int) -> list[list[int]]:
    """The 2·n orders of candidates 0..n−1: `truth` twice at every position, others shuffled."""
    rng = random.Random(seed)
    others = [i for i in range(n) if i != truth]
    orders = []
    for position in range(n):
        for _ in range(2):
            rest = others[:]
            rng.shuffle(rest)
            orders.append([*rest[:position], truth, *rest[position:]])
    return orders


def normalized_rank(ranking: Sequence[int], truth: int, n: int) -> float:
    ranking = list(ranking)
    if sorted(ranking) != list(range(n)):
        raise ValueError(f"a ranking must order every candidate once, got {ranking} for {n} candidates")
    return ranking.index(truth) / (n - 1)


def score(per_group: Sequence[Sequence[float]], failures: int = 0, n_boot: int = 2000, seed: int = 0) -> Score:
    """Aggregate the normalized ranks of each group's presentations (module docstring)."""
    if not per_group:
        raise ValueError("no groups to score")
    sums = np.array([sum(g) for g in per_group], dtype=np.float64)
    counts = np.array([len(g) for g in per_group], dtype=np.float64)
    mean = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_group), size=(n_boot, len(per_group)))
    boot = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = np.quantile(boot, [0.025, 0.975])
    means = tuple(float(x) for x in sums / counts)
    return Score(mean, float(low), float(high), len(per_group), int(counts.sum()), failures, means)


def paired_difference(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0) -> Score:
    """mean(a − b) over the same groups (per-group means), with a 95% interval resampling groups."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(d) == 0:
        raise ValueError("no groups to compare")
    boot = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return Score(float(d.mean()), float(low), float(high), len(d), len(d), 0)


def evaluate(
    groups: Sequence[tuple[int, int]], rank: Callable[[int, Sequence[int]], Sequence[int] | None], seed: int = 0
) -> Score:
    """Score `rank(group_index, presented_order)` over groups given as (n, truth).

    A `rank` that returns None for a presentation (e.g. a judge whose answer could not be
    parsed) counts as a failure, scored as the worst rank (1.0), never dropped.
    """
    per_group, failures = [], 0
    for g, (n, truth) in enumerate(groups):
        ranks = []
        for order in presentations(n, truth, seed=seed * 100_003 + g):
            ranking = rank(g, order)
            if ranking is None:
                failures += 1
                ranks.append(1.0)
            else:
                ranks.append(normalized_rank(ranking, truth, n))
        per_group.append(ranks)
    return score(per_group, failures=failures, seed=seed)

"""The protocol's arithmetic on hand-made groups."""

from __future__ import annotations

import random

import pytest

from graphkit.bench.protocol import evaluate, normalized_rank, presentations

GROUPS = [(3, 0), (4, 2), (5, 4), (3, 1), (5, 0), (4, 3)] * 5  # (n, truth)


def test_presentations_put_the_truth_twice_at_every_position() -> None:
    for n, truth in GROUPS[:6]:
        orders = presentations(n, truth, seed=3)
        assert len(orders) == 2 * n
        assert sorted(o.index(truth) for o in orders) == sorted(list(range(n)) * 2)
        assert all(sorted(o) == list(range(n)) for o in orders)


def test_perfect_scores_zero_and_always_last_scores_one() -> None:
    truth = {g: t for g, (_, t) in enumerate(GROUPS)}
    perfect = evaluate(GROUPS, lambda g, order: [truth[g]] + [i for i in order if i != truth[g]])
    assert perfect.mean == 0 and perfect.low == 0 and perfect.high == 0
    last = evaluate(GROUPS, lambda g, order: [i for i in order if i != truth[g]] + [truth[g]])
    assert last.mean == 1
    assert perfect.presentations == sum(2 * n for n, _ in GROUPS)


def test_random_is_about_half_within_its_interval() -> None:
    rng = random.Random(0)

    def shuffle(_g, order):
        out = list(order)
        rng.shuffle(out)
        return out

    s = evaluate(GROUPS * 4, shuffle)
    assert s.low < 0.5 < s.high
    assert abs(s.mean - 0.5) < 0.06


def test_position_bias_cancels_by_design() -> None:
    # a predictor that always prefers the first presented candidate is exactly random on average
    s = evaluate(GROUPS, lambda _g, order: list(order))
    assert s.mean == pytest.approx(0.5)


def test_failures_count_as_worst_rank() -> None:
    s = evaluate([(3, 0)], lambda _g, order: None)
    assert s.failures == 6 and s.mean == 1.0
    with pytest.raises(ValueError, match="every candidate once"):
        normalized_rank([0, 0, 1], 0, 3)

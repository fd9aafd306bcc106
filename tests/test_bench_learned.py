"""The learned offline predictor: it sees only what its condition shows the judge, it is scored
out of sample with folds that never split a question, and it finds a planted signal."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from graphkit.bench.learned import FEATURES, design, folds_by_question, out_of_sample_scores
from graphkit.bench.predictors import score_predictor
from graphkit.bench.records import Candidate, Downstream, Group, Steering, read_groups, write_groups


def synthetic_groups(n_questions: int = 30, per_question: int = 2, seed: int = 0) -> list[Group]:
    """Groups where the steering candidate's downstream says the answer and its examples and
    unembeds look like everyone else's (so only downstream information can find it)."""
    rng = random.Random(seed)
    groups = []
    for q in range(n_questions):
        answer = f"word{q}"
        for r in range(per_question):
            n = 5
            truth = rng.randrange(n)
            cands = []
            for i in range(n):
                says = i == truth
                cands.append(
                    Candidate(
                        top_examples=(f"the «{answer}» is here {rng.random():.3f}",) * 5,
                        top_unembeds=(f" {answer}", " a", " b"),
                        downstream=(
                            Downstream(0.5, (f" {answer}" if says else " other", " x")),
                            Downstream(-0.2, (" y",)),
                        ),
                    )
                )
            groups.append(
                Group(
                    prompt=f"What is thing {q}?",
                    answer=answer,
                    answer_words=(answer,),
                    truth=truth,
                    candidates=tuple(cands),
                    steering=Steering("mul", -1.0),
                    id=f"g{q}-{r}",
                )
            )
    return groups


def test_folds_never_split_a_question() -> None:
    groups = synthetic_groups()
    folds = folds_by_question(groups, k=5)
    by_prompt: dict[str, set[int]] = {}
    for g, f in zip(groups, folds, strict=True):
        by_prompt.setdefault(g.prompt, set()).add(f)
    assert all(len(fs) == 1 for fs in by_prompt.values()) and len(set(folds)) == 5


def test_each_condition_reads_only_what_it_shows() -> None:
    groups = synthetic_groups(n_questions=4)
    other = (Downstream(1.0, (" zzz",)),)
    changed = [
        replace(g, candidates=tuple(replace(c, top_unembeds=(" zzz",), downstream=other) for c in g.candidates))
        for g in groups
    ]
    for a, b in zip(design(groups, "examples"), design(changed, "examples"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(design(groups, "all"), design(changed, "all"), strict=True))
    assert [len(FEATURES[c]) for c in FEATURES] == [3, 5, 6, 8]


def test_a_groups_score_does_not_depend_on_its_own_label() -> None:
    groups = synthetic_groups()
    scores, _ = out_of_sample_scores(groups, "all")
    flipped = [replace(groups[0], truth=(groups[0].truth + 1) % 5), *groups[1:]]
    again, _ = out_of_sample_scores(flipped, "all")
    np.testing.assert_allclose(scores[0], again[0])


@pytest.mark.parametrize(
    "condition,expect", [("examples", "chance"), ("examples+downstream", "found"), ("all", "found")]
)
def test_the_planted_downstream_signal_is_found_only_where_shown(condition: str, expect: str) -> None:
    name, score = score_predictor(synthetic_groups(), "learned", condition)
    assert name == "learned"
    if expect == "found":
        assert score.mean < 0.05
    else:
        assert 0.3 < score.mean < 0.7  # the examples do not tell the candidates apart


def test_the_report_has_the_notes_table_and_says_whether_downstream_adds(tmp_path) -> None:
    from click.testing import CliRunner

    from graphkit.cli import main

    path = tmp_path / "groups.jsonl"
    write_groups(synthetic_groups(), path)
    for condition in FEATURES:
        res = CliRunner().invoke(main, ["bench", "run", str(path), "--predictor", "learned", "--condition", condition])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["bench", "report", str(path)])
    assert res.exit_code == 0, res.output
    assert "| + TWERA downstream features |" in res.output and "| 0.381 |" in res.output
    assert "Downstream information adds to the others on this model" in res.output


def test_groups_round_trip_and_bad_lines_are_named(tmp_path) -> None:
    import json

    from graphkit.bench.records import GroupsError

    groups = synthetic_groups(n_questions=3)
    path = tmp_path / "groups.jsonl"
    assert write_groups(groups, path) == len(groups)
    assert read_groups(path) == groups
    row = groups[0].to_json() | {"truth": 7}  # out of range
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(GroupsError, match=r"line 1: .*truth 7 of 5 candidates"):
        read_groups(path)


def test_each_measure_is_scored_on_its_own_downstream_list(tmp_path) -> None:
    """The planted signal moved from the TWERA-ranked lists to the ERA-ranked ones: only the
    ERA predictor finds it, and the report puts the measures side by side."""
    from click.testing import CliRunner

    from graphkit.cli import main

    other = (Downstream(0.5, (" other", " x"), era=0.1, virtual_weight=0.2),)
    moved = [
        replace(
            g,
            candidates=tuple(
                replace(
                    c,
                    downstream=other,
                    downstream_era=tuple(replace(d, era=d.twera) for d in c.downstream),
                    downstream_virtual_weight=other,
                )
                for c in g.candidates
            ),
        )
        for g in synthetic_groups()
    ]
    _, by_twera = score_predictor(moved, "learned", "examples+downstream")
    name, by_era = score_predictor(moved, "learned", "examples+downstream", by="era")
    assert name == "learned-by-era" and by_era.mean < 0.05 and 0.3 < by_twera.mean < 0.7
    with pytest.raises(ValueError, match="no downstream lists ranked by era"):
        score_predictor(synthetic_groups(), "learned", "all", by="era")  # built before the lists existed
    path = tmp_path / "groups.jsonl"
    write_groups(moved, path)
    assert read_groups(path) == moved
    for by in ("twera", "era", "virtual_weight"):
        for condition in ("examples+downstream", "all"):
            args = ["bench", "run", str(path), "--predictor", "learned", "--condition", condition, "--by", by]
            res = CliRunner().invoke(main, args)
            assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["bench", "report", str(path)])
    assert res.exit_code == 0 and "| ERA | examples+downstream |" in res.output and "| TWERA | all |" in res.output

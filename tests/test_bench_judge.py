"""The LLM-judge path end to end through the real SDKs, against a local HTTP server that
speaks the Messages API (and the OpenAI chat API), including malformed answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphkit.bench.judge import Judge, JudgeConfig, parse_ranking, render
from graphkit.bench.protocol import evaluate, presentations
from graphkit.bench.records import Candidate, Downstream, Group, Steering
from tests.fake_llm import Server


def group(
    n: int, truth: int, prompt: str = "What is the color of grass? Answer in one word within <answer></answer>"
) -> Group:
    return Group(
        prompt=prompt,
        answer="green",
        steering=Steering("mul", -1.0),
        truth=truth,
        candidates=tuple(
            Candidate(
                top_examples=(f"«green» {i}",),
                top_unembeds=("green", f"t{i}"),
                downstream=(Downstream(1.5, ("say-green" if i == truth else "hex",)),),
            )
            for i in range(n)
        ),
    )


def rank_truth_first(text: str) -> str:
    """The true candidate (the one whose downstream says green) first; the first reply to each
    new prompt is malformed, and prompts containing 'NEVER' are always malformed."""
    letters = re.findall(r"^Candidate ([A-Z]):", text, re.M)
    blocks = re.split(r"^Candidate [A-Z]:", text, flags=re.M)[1:]
    truth_letter = next((l for l, b in zip(letters, blocks, strict=False) if "say-green" in b), letters[0])
    ranking = " > ".join([truth_letter] + [l for l in letters if l != truth_letter])
    first_try = "Attempt" not in text
    return "I am not sure." if ("NEVER" in text or first_try) else f"Because.\nRANKING: {ranking}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(rank_truth_first)
    yield s
    s.httpd.shutdown()


@pytest.mark.parametrize("provider,base", [("anthropic", ""), ("openai", "/v1")])
def test_judge_through_the_real_sdk(server: Server, tmp_path: Path, provider: str, base: str) -> None:
    cfg = JudgeConfig(
        provider=provider,
        model="test-judge",
        base_url=server.url + base,
        api_key="test-key",  # type: ignore[arg-type]
        cache_dir=tmp_path / "cache",
        retries=1,
    )
    groups = [group(3, 1), group(4, 3)]
    judge = Judge(cfg)
    score = evaluate(
        [(len(g.candidates), g.truth) for g in groups], lambda i, order: judge.rank(groups[i], order, "all")
    )
    assert score.mean == 0 and score.failures == 0
    distinct = sum(
        len({tuple(o) for o in presentations(len(g.candidates), g.truth, seed=i)}) for i, g in enumerate(groups)
    )
    assert judge.calls == 2 * distinct, "each distinct presentation: one malformed reply, one retry; repeats cached"
    assert server.requests[0]["path"].endswith("/messages" if provider == "anthropic" else "/chat/completions")
    # a rerun is served from the cache: no request reaches the server
    before = len(server.requests)
    again = Judge(cfg)
    evaluate([(len(g.candidates), g.truth) for g in groups], lambda i, order: again.rank(groups[i], order, "all"))
    assert len(server.requests) == before and again.calls == 0


def test_malformed_answers_are_counted_as_failures(server: Server, tmp_path: Path) -> None:
    cfg = JudgeConfig(model="test-judge", base_url=server.url, api_key="k", cache_dir=tmp_path / "c", retries=2)
    g = group(3, 0, prompt="NEVER answered properly")
    judge = Judge(cfg)
    score = evaluate([(3, 0)], lambda _i, order: judge.rank(g, order, "examples"))
    assert score.failures == 6 and score.mean == 1.0
    distinct = len({tuple(o) for o in presentations(3, 0, seed=0)})
    assert judge.calls == distinct * 3, "every distinct presentation tried 1 + retries times"


def test_conditions_show_what_they_say() -> None:
    g = group(3, 2)
    _, ex = render(g, [0, 1, 2], "examples")
    _, un = render(g, [0, 1, 2], "examples+unembeds")
    _, down = render(g, [0, 1, 2], "examples+downstream")
    assert "top unembeds" not in ex and "downstream" not in ex.split("Candidates:")[1]
    assert "top unembeds" in un and "say-green" not in un
    assert "say-green" in down and "top unembeds:" not in down
    assert parse_ranking("x\nRANKING: B > A > C", 3) == [1, 0, 2]
    assert parse_ranking("RANKING: B > B > C", 3) is None and parse_ranking("B > A > C", 3) is None


def test_add_groups_ask_which_addition_makes_the_model_say_the_target() -> None:
    from dataclasses import replace

    g = replace(group(3, 1), answer="blue", baseline_answer="green", steering=Steering("add", 5.0))
    _, user = render(g, [0, 1, 2], "all")
    assert "own answer: green" in user and "makes the model answer blue" in user and "add +5" in user
    _, stop = render(group(3, 1), [0, 1, 2], "all")
    assert "changes the answer" in stop and "own answer" not in stop


def test_bench_build_add_needs_a_relation() -> None:
    from click.testing import CliRunner

    from graphkit.cli import main

    res = CliRunner().invoke(main, ["bench", "build", "--mode", "add", "--value", "5", "--out", "x.jsonl"])
    assert res.exit_code == 2 and "--target-from" in res.output

"""``graphkit bench run`` and ``report`` on hand-made groups: offline predictors and the table."""

from __future__ import annotations

import json
import random
from pathlib import Path

from click.testing import CliRunner

from graphkit.cli import main


def make_groups(path: Path, n_groups: int = 12) -> Path:
    rng = random.Random(0)
    lines = []
    for g in range(n_groups):
        n = rng.randint(3, 5)
        truth = rng.randrange(n)
        candidates = []
        for i in range(n):
            strong = i == truth
            candidates.append(
                {
                    "activation": rng.random(),
                    "answer_logit": 5.0 if strong else rng.random(),
                    "answer_rank": 0 if strong else rng.randint(5, 50),
                    "downstream": [{"twera": 1.0, "answer_logit": -2.0 if strong else 1.0}],
                    "top_examples": ["«x»"],
                    "top_unembeds": ["x"],
                }
            )
        lines.append(
            json.dumps(
                {
                    "id": f"g{g}",
                    "prompt": "p",
                    "answer": "a",
                    "truth": truth,
                    "steering": {"mode": "mul", "value": -1.0},
                    "candidates": candidates,
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_run_and_report(tmp_path: Path) -> None:
    groups = make_groups(tmp_path / "groups.jsonl")
    runner = CliRunner()
    for predictor in ("random", "logit", "logit-rank", "activation", "twera", "twera+logit"):
        res = runner.invoke(main, ["bench", "run", str(groups), "--predictor", predictor])
        assert res.exit_code == 0, res.output
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "groups.jsonl.results").glob("*.json")}
    assert results["logit__none"]["mean"] == 0.0  # the planted signal ranks the truth first every time
    assert results["twera__none"]["mean"] == 1.0  # and this planted downstream signal points the other way
    assert 0.2 < results["random__none"]["mean"] < 0.8
    res = runner.invoke(main, ["bench", "report", str(groups)])
    assert res.exit_code == 0
    first = res.output.splitlines()[2]
    assert first.startswith(("| logit ", "| logit-rank ")) and "**0.000**" in first  # best first
    assert (tmp_path / "groups.jsonl.results" / "report.md").exists()
    bad = runner.invoke(main, ["bench", "run", str(groups), "--predictor", "astrology"])
    assert bad.exit_code != 0 and "unknown predictor" in bad.output

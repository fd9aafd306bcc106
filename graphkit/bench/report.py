"""Benchmark results: one JSON file per (predictor, condition), and the table over them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from graphkit.bench.protocol import Score


def results_dir(groups: Path) -> Path:
    return Path(str(groups) + ".results")


def save(groups: Path, predictor: str, condition: str, score: Score, extra: dict[str, Any] | None = None) -> Path:
    out = results_dir(groups)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{predictor}__{condition or 'none'}.json".replace("/", "_")
    path.write_text(
        json.dumps(
            {"predictor": predictor, "condition": condition, **dataclasses.asdict(score), **(extra or {})}, indent=2
        )
        + "\n"
    )
    return path


def table(groups: Path) -> tuple[str, list[dict[str, Any]]]:
    """(Markdown table, rows) of every saved result, best mean first."""
    rows = [json.loads(p.read_text()) for p in sorted(results_dir(groups).glob("*.json")) if p.name != "report.json"]
    if not rows:
        raise ValueError(f"no results for {groups}; run `graphkit bench run {groups} --predictor P` first")
    rows.sort(key=lambda r: r["mean"])
    lines = [
        "| predictor | condition | normalized rank ↓ | 95% interval | groups | presentations | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['predictor']} | {r['condition'] or '—'} | **{r['mean']:.3f}** | "
            f"[{r['low']:.3f}, {r['high']:.3f}] | {r['groups']} | {r['presentations']} | {r['failures']} |"
        )
    return "\n".join(lines) + "\n", rows

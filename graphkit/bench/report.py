"""Benchmark results: one JSON file per (predictor, condition), and the table over them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from graphkit.bench.protocol import Score, paired_difference


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
    note = note_table([r for r in rows if r["predictor"] == "learned"]) + measure_table(rows)
    return "\n".join(lines) + "\n" + note, [{k: v for k, v in r.items() if k != "per_group"} for r in rows]


NOTE = {  # the research note's LLM-judge results (shared/reference/downstream-features-note.txt)
    "examples": ("top activating examples", 0.457),
    "examples+unembeds": ("+ top unembeds", 0.446),
    "examples+downstream": ("+ TWERA downstream features", 0.381),
    "all": ("all three", 0.355),
}


def note_table(learned: list[dict[str, Any]]) -> str:
    """The note's table with the learned offline predictor, and whether downstream adds."""
    by = {r["condition"]: r for r in learned}
    if not all(c in by for c in NOTE):
        return ""
    lines = [
        "",
        "The research note's four conditions, offline (a ranker learned on what each condition shows the judge,",
        "out of sample by grouped cross-validation; normalized rank of the steering feature, 0 is perfect):",
        "",
        "| condition | learned offline ↓ | 95% interval | LLM judge in the note |",
        "|---|---|---|---|",
    ]
    for c, (label, judge) in NOTE.items():
        r = by[c]
        lines.append(f"| {label} | **{r['mean']:.3f}** | [{r['low']:.3f}, {r['high']:.3f}] | {judge:.3f} |")
    pairs = [("examples+downstream", "examples"), ("all", "examples+unembeds")]
    diffs = {p: paired_difference(by[p[0]]["per_group"], by[p[1]]["per_group"]) for p in pairs}
    adds = all(d.high < 0 for d in diffs.values())
    hurts = any(d.low > 0 for d in diffs.values())
    verdict = "adds to the others" if adds else ("does worse than without it" if hurts else "does not clearly add")
    lines += [
        "",
        f"Downstream information {verdict} on this model: "
        + "; ".join(f"{a} − {b} = {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" for (a, b), d in diffs.items())
        + " (paired over the same groups; below 0 is better).",
        "",
    ]
    return "\n".join(lines)


MEASURE_PREDICTORS = {"learned": "TWERA", "learned-by-era": "ERA", "learned-by-virtual_weight": "virtual weight"}


def measure_table(rows: list[dict[str, Any]]) -> str:
    """The learned predictor with downstream lists ranked and weighted by each edge measure,
    side by side, with each measure's paired difference from TWERA (below 0: better)."""
    by = {(r["predictor"], r["condition"]): r for r in rows if r["predictor"] in MEASURE_PREDICTORS}
    conditions = [c for c in ("examples+downstream", "all") if all((p, c) in by for p in MEASURE_PREDICTORS)]
    if not conditions:
        return ""
    lines = [
        "",
        "Downstream features ranked and weighted by each edge measure (learned predictor, out of sample):",
        "",
        "| measure | condition | normalized rank ↓ | 95% interval | − TWERA, paired |",
        "|---|---|---|---|---|",
    ]
    for c in conditions:
        base = by[("learned", c)]
        for p, label in MEASURE_PREDICTORS.items():
            r = by[(p, c)]
            diff = "—"
            if p != "learned":
                d = paired_difference(r["per_group"], base["per_group"])
                diff = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
            lines.append(f"| {label} | {c} | **{r['mean']:.3f}** | [{r['low']:.3f}, {r['high']:.3f}] | {diff} |")
    return "\n".join(lines) + "\n"

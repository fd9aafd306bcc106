"""What the command line prints: plain text and JSON of the library's typed results.

Each function turns one result into the text a command shows, so `graphkit.cli` only wires
options to library calls and prints what these return. Feature ids are printed in full
(``DICTIONARY/LAYER/INDEX``), as every command accepts them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import networkx as nx

from graphkit.checks import PromptAnalysis
from graphkit.demo import DemoReport
from graphkit.graph import Edge, MotorFeature, MotorPath
from graphkit.steering import SteeringResult
from loaders.errors import GraphkitError


class ParamError(GraphkitError, ValueError):
    """A --param that is not key=value."""


def parse_param(text: str) -> tuple[str, object]:
    """``key=value`` → (key, value): an int, a float, JSON (lists, objects, strings, booleans), else the text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ParamError(f"--param {text!r} is not key=value")
    for convert in (int, float):
        try:
            return key, convert(raw)
        except ValueError:
            pass
    if raw.startswith(("[", "{", '"')) or raw in ("true", "false"):
        try:
            return key, json.loads(raw)
        except json.JSONDecodeError:
            pass
    return key, raw


def as_json(value: Any) -> str:
    """Dataclasses (and lists of them) and plain data as indented JSON."""

    def plain(o: Any) -> Any:
        return dataclasses.asdict(o) if dataclasses.is_dataclass(o) and not isinstance(o, type) else str(o)

    return json.dumps(value, indent=2, default=plain)


def rows(table: Sequence[dict[str, Any]]) -> str:
    """Query rows as ``key=value`` lines and a count."""
    lines = ["  " + "  ".join(f"{k}={v}" for k, v in r.items()) for r in table]
    return "\n".join([*lines, f"({len(table)} rows)"])


def edges(root: str, direction: str, found: Sequence[Edge]) -> str:
    """One hop of downstream or upstream edges, strongest first."""
    lines = [f"{'downstream' if direction == 'down' else 'upstream'} of {root}:"]
    for e in found:
        motor = f"  [says {e.motor_word!r}]" if e.motor_word else ""
        lines.append(
            f"  {e.id:<20s} twera {e.twera:+.4g}  era {e.era:+.4g}  "
            f"V {e.virtual_weight:+.4g}  {' '.join(map(repr, e.top_tokens[:5]))}{motor}"
        )
    return "\n".join(lines)


def neighbourhood(nb: nx.DiGraph) -> str:
    """A multi-hop neighbourhood's edges by hop, strongest first."""
    lines = []
    for u, v, a in sorted(nb.edges(data=True), key=lambda t: (t[2]["hop"], -abs(t[2]["twera"]))):
        motor = nb.nodes[v].get("motor_word")
        lines.append(f"  hop {a['hop']}  {u} → {v}  twera {a['twera']:+.4g}" + (f"  [says {motor!r}]" if motor else ""))
    return "\n".join(lines)


def motor(found: Sequence[MotorFeature | MotorPath], reachable: bool) -> str:
    if not found:
        return "no motor features" + (" reachable" if reachable else "")
    lines = []
    for m in found:
        via = "  " + " → ".join(m.via) if isinstance(m, MotorPath) else ""
        lines.append(f"  {m.id}  says {m.word!r}  score {m.score:+.4g}{via}")
    return "\n".join(lines)


def analysis(result: PromptAnalysis, ids: dict[tuple[int, int], str], unembeds: dict[str, list[str]]) -> str:
    """Each position's top features with their top unembeds."""
    lines = [f"analyzed: {result.prompt!r}"]
    for t in result.positions:
        lines.append(f"{t.position:3d} {t.token!r}")
        for f in t.features:
            fid = ids[(f.layer, f.index)]
            top = " ".join(repr(x) for x in unembeds.get(fid, [])[:5])
            lines.append(f"      {fid:<20s} {f.activation:7.3f}  {top}")
    lines.append(f"wrote prompt {result.prompt_id} with {result.n_active} active (feature, position) pairs")
    return "\n".join(lines)


def analysis_json(result: PromptAnalysis, ids: dict[tuple[int, int], str]) -> str:
    data = dataclasses.asdict(result)
    for t, pos in zip(result.positions, data["positions"], strict=True):
        for f, row in zip(t.features, pos["features"], strict=True):
            row["id"] = ids[(f.layer, f.index)]
    return json.dumps(data, indent=2)


def steering(results: Sequence[SteeringResult], ids: dict[tuple[int, int], str], where: str) -> str:
    """The baseline, then one line per check: changed or not, the answer, p(answer) before → after."""
    first = results[0]
    lines = [f"prompt: {first.prompt}", f"baseline: {first.baseline!r} → answer {first.baseline_answer!r}"]
    for r in results:
        names = "+".join(ids[(i.layer, i.index)] for i in r.interventions)
        iv = r.interventions[0]
        lines.append(
            f"  {names:20s} {iv.mode} {iv.value:+g}: {'CHANGED' if r.changed else 'same':7s} "
            f"answer {r.steered_answer!r:14s} p({r.answer_token!r}) {r.prob_before:.3f} → {r.prob_after:.3f}"
        )
    lines.append(f"recorded {len(results)} steering result(s) in {where}")
    return "\n".join(lines)


def steering_json(results: Sequence[SteeringResult], ids: dict[tuple[int, int], str]) -> str:
    out = [
        dataclasses.asdict(r) | {"changed": r.changed, "ids": [ids[(i.layer, i.index)] for i in r.interventions]}
        for r in results
    ]
    return json.dumps(out, indent=2)


def demo(result: DemoReport) -> str:
    lines = []
    for f in result.findings:
        lines.append(f"\n{f.prompt}\n  model answers {f.baseline_answer!r}  ({f.baseline.strip()!r})")
        if not f.candidates:
            lines.append("  no active feature has 'green' among its top unembeds on this prompt")
        for c in f.candidates:
            r = c.result
            verdict = f"CHANGES the answer to {r.steered_answer!r}" if r.changed else "does not change the answer"
            lines.append(
                f"  feature {c.layer}/{c.index}  act {c.activation:.2f}  top unembeds "
                f"{' '.join(repr(t) for t in c.top_tokens[:4])}"
            )
            lines += [f"      example: {ex[:90]}" for ex in c.top_examples[:2]]
            lines.append(f"      downstream: {', '.join(c.downstream[:4]) or '—'}")
            lines.append(f"      motor features reached: {'; '.join(c.motor) or 'none'}")
            lines.append(
                f"      steered (c = {r.interventions[0].value:g}): {verdict}; "
                f"p({r.answer_token!r}) {r.prob_before:.3f} → {r.prob_after:.3f}"
            )
    lines.append(f"\nreport: {result.report.resolve()}\n(run {result.run}, {result.seconds:.0f} s)")
    return "\n".join(lines)

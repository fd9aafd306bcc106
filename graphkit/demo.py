"""The demo: the research note's green example, in miniature, on the bundled model.

1. Build the held-out analysis corpus with the corpus builder (no download).
2. ``collect`` the bundled model and cross-layer transcoder over it; ``load`` the run into an
   embedded store.
3. For each prompt (the note's two questions): analyze its answer context — the prompt and the
   model's own continuation up to the answer, where the features that say the answer fire —
   and write it to the graph; select the active features whose top unembeds or top-example
   peaks include the concept word ("green"): the look-alikes; show each one's top examples,
   top unembeds, TWERA downstream and the motor features it reaches.
4. Steer each candidate with negative multiplicative steering (a ← c·a, c < 0, at every prompt
   position and on generated tokens) and report which change the answer, and to what;
   every result is written into the graph.
5. Write an HTML report (plotly neighbourhoods and feature cards) and return its path.

It reports what it finds, including when no candidate changes the answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from graphkit.answers import answer_context
from graphkit.checks import Workspace
from graphkit.report import examples, feature_sections, marked
from graphkit.steering import Positions, SteeringResult
from graphkit.views import write_report
from loaders.collect import CollectConfig, collect
from loaders.graph.load import load_run
from loaders.graph.store import open_store
from loaders.zoo.corpus import build_corpus

PROMPTS = (
    "What is the color of grass? Answer in one word within <answer></answer>",
    "What is the hex value of green?",
)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs."""

    model: str = "tiny"
    dictionary: str = "tiny-clt"
    word: str = "green"
    """The concept whose look-alike features are compared."""
    prompts: tuple[str, ...] = PROMPTS
    value: float = -1.0
    """c of the negative multiplicative steering."""
    max_candidates: int = 6
    collect: CollectConfig = field(default_factory=CollectConfig)


@dataclass(frozen=True)
class Candidate:
    """A look-alike feature on one prompt, with what steering it did."""

    layer: int
    index: int
    activation: float
    top_tokens: tuple[str, ...]
    top_examples: tuple[str, ...]
    """Its top activating examples, the peak token marked «like this»."""
    downstream: tuple[str, ...]
    """Its top downstream features by |TWERA|, as "layer/index (twera)"."""
    motor: tuple[str, ...]
    """Motor features it reaches, as "layer/index says WORD (score)"."""
    result: SteeringResult


@dataclass(frozen=True)
class PromptFindings:
    prompt: str
    baseline: str
    baseline_answer: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class DemoReport:
    findings: tuple[PromptFindings, ...]
    report: Path
    run: Path
    seconds: float


def run_demo(out: Path, cfg: DemoConfig = DemoConfig(), progress: bool = True) -> DemoReport:
    t0 = time.time()
    out = Path(out)
    corpus = out / "corpus"
    if not (corpus / "heldout.jsonl").exists():
        build_corpus(corpus)
    run = collect(cfg.model, cfg.dictionary, corpus / "heldout.jsonl", out / "run", cfg.collect, progress=progress).root
    store_path = run / "graph"
    store = open_store(store_path)
    load_run(run, store, progress=progress)
    store.close()
    ws = Workspace.open(store_path)
    findings, sections = [], []
    for prompt in cfg.prompts:
        context, _ = answer_context(ws.model, prompt)
        analysis = ws.analyze(context)
        rows = ws.graph.run(
            "prompt_features",
            prompt=analysis.prompt_id,
            dictionary=ws.graph.dictionary,
            word=cfg.word,
            k=cfg.max_candidates,
        )
        candidates = []
        results = (
            ws.steer_features(
                [(r["layer"], r["idx"]) for r in rows],
                prompt,
                "mul",
                cfg.value,
                positions=Positions(),
                on_generated=True,
            )
            if rows
            else []
        )
        for r, res in zip(rows, results, strict=True):
            down = ws.graph.downstream(r["layer"], r["idx"], k=5)
            motor = ws.graph.motor_paths(r["layer"], r["idx"], k=3)
            candidates.append(
                Candidate(
                    r["layer"],
                    r["idx"],
                    r["activation"],
                    tuple(r["top_tokens"] or ()),
                    tuple(marked(ex) for ex in examples(ws.graph, r["layer"], r["idx"], k=3)),
                    tuple(
                        f"{e.layer}/{e.index} ({e.twera:+.3g})" + (f" says {e.motor_word!r}" if e.motor_word else "")
                        for e in down
                    ),
                    tuple(
                        f"{p.layer}/{p.index} says {p.word!r} ({p.score:+.3g}, {p.hops} hop{'s' * (p.hops > 1)})"
                        for p in motor
                    ),
                    res,
                )
            )
        baseline = results[0] if results else None
        if baseline is None:
            from graphkit.steering import steer

            baseline = steer(ws.model, ws.dictionary, prompt, [])
        findings.append(PromptFindings(prompt, baseline.baseline, baseline.baseline_answer, tuple(candidates)))
        sections.append(_prompt_html(findings[-1], cfg))
        for c in candidates:
            sections += feature_sections(ws.graph, c.layer, c.index, hops=2, k=4)
    report = write_report(out / "report.html", "graphkit demo: look-alike features of 'green'", sections)
    return DemoReport(tuple(findings), report, run, time.time() - t0)


def _prompt_html(f: PromptFindings, cfg: DemoConfig) -> str:
    import html

    rows = "".join(
        f"<tr><td><a href='#card-{html.escape(cfg.dictionary)}/{c.layer}/{c.index}'>{c.layer}/{c.index}</a></td>"
        f"<td>{c.activation:.3f}</td><td>{html.escape(' '.join(repr(t) for t in c.top_tokens[:5]))}</td>"
        f"<td>{html.escape('; '.join(c.motor) or '—')}</td>"
        f"<td>{'<b>yes</b>' if c.result.changed else 'no'}</td><td>{html.escape(c.result.steered_answer)}</td>"
        f"<td>{c.result.prob_before:.3f} → {c.result.prob_after:.3f}</td></tr>"
        for c in f.candidates
    )
    head = (
        f"<h2>{html.escape(f.prompt)}</h2><p>model answers <b>{html.escape(f.baseline_answer)}</b> "
        f"({html.escape(f.baseline.strip())!s}); negative multiplicative steering, c = {cfg.value:g}</p>"
    )
    if not f.candidates:
        return head + f"<p>No active feature has {cfg.word!r} among its top unembeds on this prompt.</p>"
    return head + (
        "<table><tr><th>feature</th><th>activation</th><th>top unembeds</th><th>motor features reached</th>"
        "<th>answer changed</th><th>steered answer</th><th>p(answer) before → after</th></tr>"
        f"{rows}</table>"
    )

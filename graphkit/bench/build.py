"""``graphkit bench build``: collect → load → discover groups, from a model and a dictionary."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from graphkit.answers import extract_answer
from graphkit.bench.groups import BuildConfig, build_add_groups, build_groups
from graphkit.bench.records import write_groups
from graphkit.checks import Workspace
from loaders.collect import collect
from loaders.corpus import CorpusError
from loaders.graph.load import load_run
from loaders.graph.store import open_store
from loaders.zoo.corpus import build_corpus, read_jsonl


def read_prompts(path: Path) -> list[dict]:
    """Rows with string ``prompt`` and ``answer`` (and ``relation``, for target groups)."""
    rows = read_jsonl(path)
    bad = [
        i for i, r in enumerate(rows, 1) if not isinstance(r.get("prompt"), str) or not isinstance(r.get("answer"), str)
    ]
    if bad:
        raise CorpusError(f"{path}:{bad[0]}: each line needs string fields 'prompt' and 'answer'")
    return rows


def with_targets(rows: Sequence[dict], relation: str, seed: int = 0) -> list[tuple[str, str, str]]:
    """(prompt, answer, target) for the questions of `relation`: the target is another answer
    of the same relation (grass → blue), drawn with a seed per question."""
    chosen = [r for r in rows if r.get("relation") == relation]
    if not chosen:
        known = sorted({str(r.get("relation")) for r in rows})
        raise CorpusError(f"no questions of relation {relation!r} (known: {', '.join(known)}); --target-from needs one")
    answers = sorted({extract_answer(r["answer"]) for r in chosen})
    out = []
    for r in chosen:
        others = [a for a in answers if a != extract_answer(r["answer"])]
        if others:
            out.append((r["prompt"], r["answer"], random.Random(f"{seed}|{r['prompt']}").choice(others)))
    return out


SECONDS_PER_PROMPT = 1.3
"""Measured on the bundled model on a 2-core CPU (`graphkit bench build --run RUN
--max-prompts 400`, docs/benchmarks.md): answer context, active features, and up to `pool`
steering checks of two greedy generations each, for the prompts the model answers right.
Larger models scale it by their forward time."""

SECONDS_PER_TARGET_PROMPT = 0.8
"""The same for "make it say X" groups (`--target-from color --max-prompts 250`: 3 min 9 s):
every pooled candidate is steered, but nothing is analyzed beyond the answer context."""


def estimate(n_prompts: int, seconds_per_prompt: float = SECONDS_PER_PROMPT) -> str:
    """What `bench build` says before it starts."""
    minutes = n_prompts * seconds_per_prompt / 60
    return (
        f"{n_prompts} prompts: about {max(minutes, 0.1):.1f} min on the bundled model's scale "
        f"(~{seconds_per_prompt:g} s per prompt on 2 CPU cores; --max-prompts caps it)"
    )


def build_benchmark(
    model: str,
    dictionary: str,
    prompts: Path | None,
    out: Path,
    work: Path,
    cfg: BuildConfig | None = None,
    progress: bool = True,
    run: Path | None = None,
    say: Callable[[str], None] = print,
    target_from: str | None = None,
) -> int:
    """Groups from a collected run (`run`, loaded into RUN/graph if it is not yet) or, without
    one, from a fresh collect of `model` and `dictionary` over the bundled held-out corpus.
    With `target_from` (a relation), "make it say X" groups (`groups.build_add_groups`)."""
    cfg = cfg or BuildConfig()
    corpus = work / "corpus"
    if (run is None or prompts is None) and not (corpus / "questions.jsonl").exists():
        build_corpus(corpus)
    if run is None:
        run = collect(model, dictionary, corpus / "heldout.jsonl", work / "run", progress=progress).root
    store = open_store(run / "graph")
    load_run(run, store, progress=progress)  # a no-op when this run is loaded already
    store.close()
    ws = Workspace.open(run / "graph")
    rows = read_prompts(prompts) if prompts else read_jsonl(corpus / "questions.jsonl")
    pairs: list = [(q["prompt"], q["answer"]) for q in rows] if target_from is None else with_targets(rows, target_from)
    random.Random(cfg.seed).shuffle(pairs)  # relations are stored in blocks; sample across them
    n_tried = min(len(pairs), cfg.max_prompts or len(pairs))
    say(estimate(n_tried, SECONDS_PER_PROMPT if target_from is None else SECONDS_PER_TARGET_PROMPT))
    groups = (
        build_groups(ws, pairs, cfg, progress) if target_from is None else build_add_groups(ws, pairs, cfg, progress)
    )
    n = write_groups(groups, out)
    (out.with_name(out.name + ".meta.json")).write_text(
        json.dumps(
            {
                "model": model,
                "dictionary": dictionary,
                "run": str(run),
                "prompts": str(prompts or corpus / "questions.jsonl"),
                "prompts_tried": n_tried,
                "target_from": target_from,
                "groups": n,
            },
            indent=2,
        )
        + "\n"
    )
    return n

"""Group discovery: look-alike candidates of which exactly one changes the answer when steered.

For each prompt with an expected answer (bundled: the corpus builder's held-out questions):

1. the model's greedy answer must equal the expected one (otherwise there is nothing to stop
   it saying); the answer's words are its tokens, normalized (casing, leading space folded);
2. candidates: features active on the answer context (the prompt and the model's continuation
   up to the answer, where the features that say it fire) whose top unembeds or top-example
   peak tokens include an answer word — they look alike by descriptors — strongest
   activation first, at most `pool` of them;
3. each candidate is steered alone (`mode`, `value`; every prompt position and the generated
   tokens); a group keeps the strongest candidate that changes the answer and up to
   `max_candidates − 1` of those that do not, most answer-like first; it needs at least
   `min_candidates`, with exactly one that changes the answer;
4. everything a predictor may see per candidate is saved beside the ground truth: top
   examples, top unembeds, the answer token's logit-lens value and vocabulary rank, and the
   TWERA downstream list with each downstream feature's own top unembeds and answer logit.

Groups are `records.Group`s, saved as JSON lines (`records.write_groups`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from graphkit.answers import answer_context, extract_answer
from graphkit.bench.records import Candidate, Downstream, Group, Steering
from graphkit.checks import Workspace
from graphkit.config import BuildConfig
from graphkit.graph import Measure
from graphkit.steering import Intervention, Positions, SteeringResult, steer
from loaders.graph.schema import mark_peak, normalize_token
from loaders.logit_lens import unembed_directions
from loaders.model import decode


def answer_words(ws: Workspace, answer: str) -> set[str]:
    tok = ws.model.tokenizer
    ids = tok(answer, add_special_tokens=False).input_ids + tok(" " + answer, add_special_tokens=False).input_ids
    return {w for w in (normalize_token(decode(tok, [i])) for i in ids) if w} | {normalize_token(answer)}


class _Describer:
    """Per-candidate descriptors from the graph, the run's examples and the logit lens."""

    def __init__(self, ws: Workspace, cfg: BuildConfig):
        self.ws, self.cfg = ws, cfg
        run = Path(ws.graph.info["run"])
        self.examples = pq.read_table(
            run / "examples.parquet", columns=["layer", "index", "rank", "text", "tokens", "center"]
        )
        self.dirs = unembed_directions(ws.model, ws.dictionary, sigma_final=1.0)  # ranking is scale-free
        self.W_U = ws.model.unembed().double()

    def logit_lens(self, layer: int, index: int) -> torch.Tensor:
        return self.W_U @ self.dirs[layer][index]  # (vocab,)

    def top_examples(self, layer: int, index: int) -> list[str]:
        ex = self.examples
        t = ex.filter(pc.and_(pc.equal(ex["layer"], layer), pc.equal(ex["index"], index)))
        rows = sorted(t.to_pylist(), key=lambda r: r["rank"])[: self.cfg.n_examples]
        return [mark_peak(r["tokens"], r["center"]) for r in rows]

    def describe(
        self, layer: int, index: int, answer_token: int, activation: float, outcome: SteeringResult
    ) -> Candidate:
        g = self.ws.graph
        feature = g.feature(layer, index)
        lens = self.logit_lens(layer, index)

        def ranked(by: Measure) -> tuple[Downstream, ...]:
            return tuple(
                Downstream(
                    twera=e.twera,
                    top_unembeds=tuple(e.top_tokens),
                    answer_logit=float(self.logit_lens(e.layer, e.index)[answer_token]),
                    feature=e.id,
                    layer=e.layer,
                    index=e.index,
                    motor_word=e.motor_word,
                    era=e.era,
                    virtual_weight=e.virtual_weight,
                )
                for e in g.downstream(layer, index, k=self.cfg.n_downstream, by=by)
            )

        return Candidate(
            feature=g.id(layer, index),
            layer=layer,
            index=index,
            activation=activation,
            top_examples=tuple(self.top_examples(layer, index)),
            top_unembeds=tuple(feature.top_tokens),
            example_tokens=tuple(feature.example_tokens),
            motor_word=feature.motor_word,
            answer_logit=float(lens[answer_token]),
            answer_rank=int((lens > lens[answer_token]).sum()),
            downstream=ranked("twera"),
            downstream_era=ranked("era"),
            downstream_virtual_weight=ranked("virtual_weight"),
            changed=outcome.changed,
            steered_answer=outcome.steered_answer,
        )


def build_groups(
    ws: Workspace, prompts: Sequence[tuple[str, str]], cfg: BuildConfig = BuildConfig(), progress: bool = True
) -> Iterator[Group]:
    """Yield groups (module docstring) from (prompt, expected answer) pairs."""
    from tqdm import tqdm

    describer = _Describer(ws, cfg)
    for n, (prompt, expected) in enumerate(tqdm(prompts[: cfg.max_prompts], disable=not progress, desc="groups")):
        context, answer = answer_context(ws.model, prompt, cfg.max_new_tokens)
        if answer != extract_answer(expected):
            continue
        words = answer_words(ws, answer)
        active = ws.active_features(context)
        info = {r["id"]: r for r in ws.graph.run("features_by_id", ids=[ws.id(l, i) for l, i, _ in active])}
        pool = []
        for layer, index, act in active:
            r = info.get(ws.id(layer, index))
            if r is None:
                continue
            looks = {normalize_token(t) for t in (r["top_tokens"] or [])} | set(r["example_tokens"] or [])
            shared = len(looks & words)
            if shared:
                pool.append((layer, index, act, shared))
        pool.sort(key=lambda p: -p[2])
        pool = pool[: cfg.pool]
        if len(pool) < cfg.min_candidates:
            continue
        group = _assemble(ws, cfg, describer, f"g{n:04d}", prompt, answer, answer, words, pool, lambda o: o.changed)
        if group is not None:
            yield group


Pooled = tuple[int, int, float, int]
"""(layer, index, activation on the answer context, answer words shared)."""


def _assemble(
    ws: Workspace,
    cfg: BuildConfig,
    describer: _Describer,
    gid: str,
    prompt: str,
    answer: str,
    baseline: str,
    words: set[str],
    pool: Sequence[Pooled],
    success: Callable[[SteeringResult], bool],
) -> Group | None:
    """Steer each pooled candidate alone; a group of one that succeeds and the most
    answer-like that do not, or None when the pool does not make one."""
    outcomes = [
        steer(
            ws.model,
            ws.dictionary,
            prompt,
            [Intervention(l, i, cfg.mode, cfg.value)],
            Positions(),
            max_new_tokens=cfg.max_new_tokens,
            on_generated=True,
        )
        for l, i, _, _ in pool
    ]
    hits = [p for p, o in zip(pool, outcomes, strict=True) if success(o)]
    misses = [p for p, o in zip(pool, outcomes, strict=True) if not success(o)]
    if not hits or len(misses) < cfg.min_candidates - 1:
        return None
    # stop groups: the strongest that changes the answer (activation order); add groups: a
    # seeded draw among those that reach the target, so no descriptor picks the truth
    truth = hits[0] if cfg.mode != "add" else random.Random(f"{gid}|{prompt}").choice(hits)
    distractors = sorted(misses, key=lambda p: (-p[3], -p[2]))[: cfg.max_candidates - 1]
    members = sorted([truth, *distractors], key=lambda p: (p[0], p[1]))
    tok = ws.model.tokenizer
    answer_token = tok(answer, add_special_tokens=False).input_ids[0]
    outcome = {(l, i): o for (l, i, _, _), o in zip(pool, outcomes, strict=True)}
    return Group(
        id=gid,
        prompt=prompt,
        answer=answer,
        answer_words=tuple(sorted(words)),
        answer_token=decode(tok, [answer_token]),
        steering=Steering(cfg.mode, cfg.value),
        truth=members.index(truth),
        candidates=tuple(
            replace(describer.describe(l, i, answer_token, act, outcome[(l, i)]), changed=success(outcome[(l, i)]))
            for l, i, act, _ in members
        ),
        config=asdict(cfg),
        baseline_answer=baseline,
    )


def _says(goal: str, outcome: SteeringResult) -> bool:
    return outcome.steered_answer == goal


def build_add_groups(
    ws: Workspace,
    questions: Sequence[tuple[str, str, str]],
    cfg: BuildConfig = BuildConfig(mode="add", value=5.0),
    progress: bool = True,
) -> Iterator[Group]:
    """ "Make it say X" groups from (prompt, expected answer, target) triples: the model must
    answer the expected one; candidates are features whose top unembeds or top-example peaks
    include a word of the target (active on the prompt or not: adding writes the feature's
    decoder either way), most target-like first; each is added (`cfg.mode` "add", α =
    `cfg.value`) alone; a group keeps one that makes the model answer the target (a seeded
    draw among them) and up to `max_candidates − 1` that do not. `answer` is the target."""
    from tqdm import tqdm

    if cfg.mode != "add":
        raise ValueError(f"target groups steer by adding; mode is {cfg.mode!r}")
    describer = _Describer(ws, cfg)
    for n, (prompt, expected, target) in enumerate(
        tqdm(questions[: cfg.max_prompts], disable=not progress, desc="groups")
    ):
        context, answer = answer_context(ws.model, prompt, cfg.max_new_tokens)
        goal = extract_answer(target)
        if answer != extract_answer(expected) or goal == answer:
            continue
        words = answer_words(ws, goal)
        activation = {(l, i): a for l, i, a in ws.active_features(context)}
        shared: dict[str, int] = {}
        for word in sorted(words):
            for r in ws.graph.by_unembed(word, k=cfg.pool) + ws.graph.by_example_token(word, k=cfg.pool):
                shared[r["id"]] = shared.get(r["id"], 0) + 1
        ranked = sorted(shared, key=lambda fid: -shared[fid])[: cfg.pool]
        pool = [(*ws.graph.resolve(fid), 0.0, shared[fid]) for fid in ranked]
        pool = [(l, i, activation.get((l, i), 0.0), k) for l, i, _, k in pool]
        if len(pool) < cfg.min_candidates:
            continue
        reaches = partial(_says, goal)
        group = _assemble(ws, cfg, describer, f"a{n:04d}", prompt, goal, answer, words, pool, reaches)
        if group is not None:
            yield group

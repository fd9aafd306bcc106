"""The research note's four conditions without an LLM: a ranker learned from exactly what each
condition shows the judge, scored out of sample.

For each candidate, features computed only from what the judge sees under a condition
(`judge.describe`), and from the question and the answer (which the judge always sees):

- ``examples`` (five top examples, the peak token marked «»):
  ``ex_peak``: share of the examples whose peak token is an answer word;
  ``ex_context``: share of the examples that hold an answer word anywhere;
  ``ex_prompt``: mean word overlap (Jaccard) of an example with the question;
- ``+ unembeds`` (the ten top unembeds, in order):
  ``un_has``: an answer word is among them; ``un_rank``: (10 − its best rank) / 10, 0 when absent;
- ``+ downstream`` (eight downstream features: TWERA with its sign, and their six top unembeds):
  ``dn_share``: Σ|TWERA| of those saying an answer word / Σ|TWERA|;
  ``dn_signed``: the same with TWERA's sign (promoting the answer > 0);
  ``dn_first``: how many have an answer word as their first unembed.

The judge sees neither the candidate's layer nor its activation, so neither is used.

Within a group, candidate i's score is w·x_i. w is fit by conditional logistic regression:
softmax over the group's candidates, likelihood of the one that steers, L2 penalty `l2`. The
model has as many parameters as the condition has features (3, 5, 6 or 8). Features are
standardized within each group, so a group's scale does not matter.

Out of sample: grouped k-fold cross-validation. Folds are formed by question, so no question's
groups are split across folds. Each group is ranked by the model fit on the other folds, then
scored under the usual protocol (`protocol.evaluate`) with its bootstrap interval.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from graphkit.bench.judge import CONDITIONS
from graphkit.bench.records import Candidate, Group
from loaders.graph.schema import normalize_token

FEATURES: dict[str, tuple[str, ...]] = {
    "examples": ("ex_peak", "ex_context", "ex_prompt"),
    "examples+unembeds": ("ex_peak", "ex_context", "ex_prompt", "un_has", "un_rank"),
    "examples+downstream": ("ex_peak", "ex_context", "ex_prompt", "dn_share", "dn_signed", "dn_first"),
    "all": ("ex_peak", "ex_context", "ex_prompt", "un_has", "un_rank", "dn_share", "dn_signed", "dn_first"),
}
_WORD = re.compile(r"[A-Za-z0-9]+")
_PEAK = re.compile(r"«(.*?)»", re.S)


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def candidate_features(group: Group, c: Candidate, by: str = "twera") -> dict[str, float]:
    """Every feature of the module docstring for candidate `c` of `group`; with `by` the
    downstream list is the one ranked by that measure and weighted by it (``era``,
    ``virtual_weight``) instead of TWERA."""
    answer = {w.lower() for w in group.answer_words} | {normalize_token(group.answer)}
    answer.discard("")
    examples = c.top_examples[:5]
    prompt = _words(group.prompt)
    peaks = [normalize_token(m.group(1)) for e in examples if (m := _PEAK.search(e))]
    f = {
        "ex_peak": sum(p in answer for p in peaks) / max(len(examples), 1),
        "ex_context": sum(bool(_words(e.replace("«", " ").replace("»", " ")) & answer) for e in examples)
        / max(len(examples), 1),
        "ex_prompt": float(np.mean([len(_words(e) & prompt) / max(len(_words(e) | prompt), 1) for e in examples]))
        if examples
        else 0.0,
    }
    unembeds = [normalize_token(t) for t in c.top_unembeds[:10]]
    ranks = [r for r, t in enumerate(unembeds) if t in answer]
    f["un_has"] = float(bool(ranks))
    f["un_rank"] = (10 - ranks[0]) / 10 if ranks else 0.0
    down = c.downstream_by(by)[:8]
    weight = [float(getattr(d, by)) for d in down]
    says = [any(normalize_token(t) in answer for t in d.top_unembeds[:6]) for d in down]
    mass = sum(abs(w) for w in weight) or 1.0
    f["dn_share"] = sum(abs(w) for w, s in zip(weight, says, strict=True) if s) / mass
    f["dn_signed"] = sum(w for w, s in zip(weight, says, strict=True) if s) / mass
    f["dn_first"] = float(sum(bool(d.top_unembeds) and normalize_token(d.top_unembeds[0]) in answer for d in down))
    return f


def design(groups: Sequence[Group], condition: str, by: str = "twera") -> list[np.ndarray]:
    """Per group, its candidates' features under `condition`, standardized within the group."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r}: one of {', '.join(CONDITIONS)}")
    names = FEATURES[condition]
    out = []
    for g in groups:
        x = np.array([[candidate_features(g, c, by)[n] for n in names] for c in g.candidates], dtype=np.float64)
        sd = x.std(0)
        out.append((x - x.mean(0)) / np.where(sd > 0, sd, 1.0))
    return out


def fit(xs: Sequence[np.ndarray], truths: Sequence[int], l2: float = 0.1, steps: int = 300) -> np.ndarray:
    """Conditional-logit weights: maximize mean_g log softmax(X_g w)[truth_g] − l2·|w|².

    Groups are padded to the largest (padding masked out of the softmax), so the likelihood
    is one tensor expression, not a loop over groups."""
    n = max(len(x) for x in xs)
    X = torch.zeros(len(xs), n, xs[0].shape[1], dtype=torch.float64)  # (group, candidate, feature)
    pad = torch.ones(len(xs), n, dtype=torch.bool)
    for g, x in enumerate(xs):
        X[g, : len(x)] = torch.from_numpy(x)
        pad[g, : len(x)] = False
    truth = torch.as_tensor(list(truths)).unsqueeze(1)  # (group, 1)
    w = torch.zeros(X.shape[2], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        logp = torch.log_softmax((X @ w).masked_fill(pad, -torch.inf), 1)  # (group, candidate)
        total = -logp.gather(1, truth).mean() + l2 * (w @ w)
        total.backward()  # type: ignore[no-untyped-call]
        return total

    opt.step(loss)  # type: ignore[no-untyped-call]
    return w.detach().numpy()


def folds_by_question(groups: Sequence[Group], k: int, seed: int = 0) -> list[int]:
    """A fold per group; all groups of one question share a fold."""
    questions = sorted({g.prompt for g in groups})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(questions))
    fold_of = {questions[q]: i % k for i, q in enumerate(order)}
    return [fold_of[g.prompt] for g in groups]


def out_of_sample_scores(
    groups: Sequence[Group], condition: str, k: int = 5, l2: float = 0.1, seed: int = 0, by: str = "twera"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(per group the candidates' scores from the model fit without its fold, each fold's weights)."""
    xs = design(groups, condition, by)
    truths = [g.truth for g in groups]
    folds = folds_by_question(groups, k, seed)
    scores: list[np.ndarray] = [np.zeros(0)] * len(groups)
    weights = []
    for f in range(k):
        train = [i for i in range(len(groups)) if folds[i] != f]
        test = [i for i in range(len(groups)) if folds[i] == f]
        if not test:
            continue
        w = fit([xs[i] for i in train], [truths[i] for i in train], l2=l2)
        weights.append(w)
        for i in test:
            scores[i] = xs[i] @ w
    return scores, weights

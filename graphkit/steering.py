"""Steering: change features' activations and let the real model run on (DESIGN.md).

For a steered feature s at layer l_s, during every forward pass:

1. its activation a_s is encoded from the read site of the *running* model (so steering an
   earlier feature changes what later features see);
2. the new activation is c·a_s (``mul``; c < 0 is negative multiplicative steering, c = 0
   ablates), a_s + α (``add``; writes α·d_s even where the feature is off) or v (``clamp``);
3. (a_new − a_old)·d_s^(m) is added to the write site (MLP output) of every layer m the
   feature writes to, at the chosen positions, and the forward pass continues.

Generation is greedy and recomputes the whole sequence each step (no KV cache), so positions
are absolute: prompt positions by `Positions`, and generated positions too unless
``on_generated=False`` (the research note and the benchmark steer every position, generated
tokens included).
A `SteeringResult` holds both continuations, the extracted answers, and the logit and
probability of the baseline answer's first token with and without steering.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from graphkit.answers import answer_start, extract_answer, greedy
from graphkit.config import Mode
from loaders.dictionary import Dictionary
from loaders.model import HookedModel, Site, decode, tokenize_prompt


@dataclass(frozen=True)
class Intervention:
    """Set feature (layer, index) by `mode` with `value` (c, α or v)."""

    layer: int
    index: int
    mode: Mode
    value: float

    def __post_init__(self) -> None:
        if self.mode not in ("mul", "add", "clamp"):
            raise ValueError(f"steering mode must be mul, add or clamp, not {self.mode!r}")

    def new(self, a: Tensor) -> Tensor:
        if self.mode == "mul":
            return a * self.value
        if self.mode == "add":
            return a + self.value
        return torch.full_like(a, self.value)


@dataclass(frozen=True)
class Positions:
    """Where interventions apply: "all", "last", the tokens containing `match`, or `indices`."""

    kind: Literal["all", "last", "match", "indices"] = "all"
    match: str = ""
    indices: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Positions:
        """``all`` | ``last`` | ``match:WORD`` | ``3,5,7``."""
        if text in ("all", "last"):
            return cls(text)  # type: ignore[arg-type]
        if text.startswith("match:"):
            return cls("match", match=text[6:])
        if re.fullmatch(r"-?\d+(,-?\d+)*", text):
            return cls("indices", indices=tuple(int(x) for x in text.split(",")))
        raise ValueError(f"positions {text!r}: use all, last, match:WORD or a list like 3,5")

    def __str__(self) -> str:
        if self.kind == "match":
            return f"match:{self.match}"
        if self.kind == "indices":
            return ",".join(map(str, self.indices))
        return self.kind

    def mask(self, token_strings: Sequence[str]) -> Tensor:
        """(pos,) bool over the prompt's tokens (BOS included as position 0)."""
        n = len(token_strings)
        m = torch.zeros(n, dtype=torch.bool)
        if self.kind == "all":
            m[1:] = True  # position 0 (BOS) is never steered, as it is never counted
        elif self.kind == "last":
            m[-1] = True
        elif self.kind == "match":
            needle = self.match.strip().lower()
            m = torch.tensor([needle in t.strip().lower() and bool(t.strip()) for t in token_strings])
        else:
            for i in self.indices:
                if not -n <= i < n:
                    raise ValueError(f"position {i} is outside the prompt's {n} tokens")
                m[i] = True
        if not m.any():
            raise ValueError(f"positions {self} select no token of the prompt {list(token_strings)}")
        return m


@dataclass(frozen=True)
class SteeringResult:
    """The outcome of one steering check."""

    prompt: str
    interventions: tuple[Intervention, ...]
    positions: str
    baseline: str
    """Greedy continuation without steering."""
    steered: str
    """Greedy continuation with steering."""
    baseline_answer: str
    steered_answer: str
    answer_token: str
    """The baseline answer's first token (the one whose logit and probability are tracked)."""
    logit_before: float
    logit_after: float
    prob_before: float
    prob_after: float
    on_generated: bool = True
    """Whether generated tokens were steered too."""
    max_new_tokens: int = 12

    @property
    def changed(self) -> bool:
        """Whether steering changed the extracted answer."""
        return self.baseline_answer != self.steered_answer


@contextmanager
def steering(
    model: HookedModel, d: Dictionary, interventions: Sequence[Intervention], mask: Callable[[int], Tensor]
) -> Iterator[None]:
    """Apply `interventions` to every forward pass while open; `mask(seq_len)` → (pos,) bool."""
    if not interventions:
        yield
        return
    for iv in interventions:
        if iv.layer not in d.layers or not 0 <= iv.index < d.n_features:
            raise ValueError(
                f"no feature {iv.layer}/{iv.index} in the dictionary "
                f"(layers {list(d.layers)}, {d.n_features} features per layer)"
            )
    by_layer: dict[int, list[Intervention]] = {}
    for iv in interventions:
        by_layer.setdefault(iv.layer, []).append(iv)
    reads: dict[tuple[int, Site], list[Tensor]] = {(l, d.read_site): [] for l in by_layer}
    deltas: dict[int, list[tuple[Tensor, int]]] = {}  # source layer → (delta (b, pos, 1), index)

    def edit(layer: int) -> Callable[[Tensor], Tensor]:
        def fn(out: Tensor) -> Tensor:
            if layer in by_layer:
                x = reads[(layer, d.read_site)][-1]  # (batch, pos, d_model)
                pre = d.pre_activation(layer, x)
                acts = d.activation[layer](pre)  # (batch, pos, feature)
                m = mask(out.shape[1]).to(out.device)[None, :]  # (1, pos)
                scale = d.output_scale(x)  # (batch, pos, 1) for SAEs that normalize their input
                if scale is not None:
                    m = m * scale[..., 0]
                deltas[layer] = [
                    ((iv.new(acts[..., iv.index]) - acts[..., iv.index]) * m, iv.index) for iv in by_layer[layer]
                ]
            for source, items in deltas.items():
                dec = d.decoder(source, layer)
                if dec is None:
                    continue
                for delta, index in items:
                    out = out + delta[..., None].to(out.dtype) * dec[index].to(out.dtype)
            return out

        return fn

    targets = {m for l in by_layer for m in d.write_targets(l)}
    with model.hooks(capture=reads, edits={(m, d.write_site): edit(m) for m in sorted(targets)}):
        try:
            yield
        finally:
            deltas.clear()


def steer(
    model: HookedModel,
    d: Dictionary,
    prompt: str,
    interventions: Sequence[Intervention],
    positions: Positions = Positions(),
    max_new_tokens: int = 12,
    on_generated: bool = True,
) -> SteeringResult:
    """Run one steering check (module docstring)."""
    tok = model.tokenizer
    ids = tokenize_prompt(tok, prompt).to(model.device)
    n = ids.shape[1]
    prompt_mask = positions.mask([decode(tok, [t]) for t in ids[0].tolist()])

    def mask(length: int) -> Tensor:
        m = torch.zeros(length, dtype=torch.bool)
        m[: min(n, length)] = prompt_mask[: min(n, length)]
        if on_generated and length > n:
            m[n:] = True
        return m

    base = greedy(model, ids, max_new_tokens)
    with steering(model, d, interventions, mask):
        steered = greedy(model, ids, max_new_tokens)
    # logit and probability of the baseline answer's first token, teacher-forced on the baseline
    k = answer_start(tok, n, base) if base else 0
    prefix = torch.cat([ids, torch.tensor([base[:k]], dtype=ids.dtype, device=ids.device)], dim=1)
    answer_tok = base[k] if base else int(tok.eos_token_id or 0)
    with torch.no_grad():
        before = model.model(input_ids=prefix, use_cache=False).logits[0, -1].float()
        with steering(model, d, interventions, mask):
            after = model.model(input_ids=prefix, use_cache=False).logits[0, -1].float()
    b_text, s_text = decode(tok, base), decode(tok, steered)
    return SteeringResult(
        prompt=prompt,
        interventions=tuple(interventions),
        positions=str(positions),
        baseline=b_text,
        steered=s_text,
        baseline_answer=extract_answer(b_text),
        steered_answer=extract_answer(s_text),
        answer_token=decode(tok, [answer_tok]),
        logit_before=float(before[answer_tok]),
        logit_after=float(after[answer_tok]),
        prob_before=float(before.softmax(-1)[answer_tok]),
        prob_after=float(after.softmax(-1)[answer_tok]),
        on_generated=on_generated,
        max_new_tokens=max_new_tokens,
    )

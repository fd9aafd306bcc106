"""Answers: what the model says, and where in its continuation it says it.

The bundled model and the benchmark's questions ask for "… within <answer></answer>"; a
continuation's answer is the text between the first ``<answer>`` tags, else its first word
(`extract_answer`). `answer_context` is the prompt plus the model's own greedy continuation
up to the answer's first token, where "say X" features fire. Generation is greedy and
recomputes the whole sequence each step (no KV cache), so positions stay absolute.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from loaders.model import HookedModel, decode, tokenize_prompt

_TAGGED = re.compile(r"<answer>(.*?)</answer>", re.S)


def extract_answer(text: str) -> str:
    """The answer in `text`: between the first ``<answer>`` tags, else the first word."""
    m = _TAGGED.search(text)
    if m:
        return m.group(1).strip()
    words = text.strip().split()
    return words[0].strip(".,;:!?") if words else ""


def greedy(model: HookedModel, ids: Tensor, max_new_tokens: int) -> list[int]:
    """Token ids the model generates greedily after `ids` (1, pos), up to EOS."""
    out: list[int] = []
    seq = ids
    eos = model.tokenizer.eos_token_id
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model.model(input_ids=seq, use_cache=False).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt == eos:
                break
            out.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]], device=seq.device)], dim=1)
    return out


def answer_start(tokenizer, prompt_len: int, generated: list[int]) -> int:
    """Index into `generated` of the answer's first token (after ``<answer>`` when present)."""
    text = ""
    for i, t in enumerate(generated):
        text += tokenizer.decode([t])
        if "<answer>" in text:
            return min(i + 1, len(generated) - 1)
        if text.strip() and "<" not in text:
            return i
    return 0


def answer_context(model: HookedModel, prompt: str, max_new_tokens: int = 12) -> tuple[str, str]:
    """(prompt + the model's greedy continuation up to its answer, the answer).

    The features that make a model say its answer fire where the answer is produced: for
    "… <answer></answer>" that is the generated "<answer>" before the word, not the prompt.
    """
    tok = model.tokenizer
    ids = tokenize_prompt(tok, prompt).to(model.device)
    generated = greedy(model, ids, max_new_tokens)
    k = answer_start(tok, ids.shape[1], generated) if generated else 0
    return prompt + decode(tok, generated[:k]), extract_answer(decode(tok, generated))

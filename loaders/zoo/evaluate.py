"""Quality measures for the bundled model: held-out question accuracy and code loss.

- ``question_accuracy``: greedy decoding of each held-out question prompt; the answer is
  extracted with ``extract_answer`` (text between ``<answer>`` tags when present, else the
  first word) from both the continuation and the expected answer, and compared exactly.
- ``code_loss``: mean next-token cross-entropy (nats/token) over held-out standard-library
  files cut into BOS-prefixed windows of the model's context, beside the loss of a unigram
  model fitted on the train split (add-one smoothing) over the same predicted tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from graphkit.answers import extract_answer


@torch.no_grad()
def greedy_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int = 12,
    batch_size: int = 64,
) -> list[str]:
    """Greedy continuation (decoded, special tokens dropped) of each prompt."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[i : i + batch_size]), return_tensors="pt", padding=True)
            gen = model.generate(  # type: ignore[operator]
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]  # (batch, new_pos)
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out


def question_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, questions: Sequence[dict[str, str]]
) -> dict[str, dict[str, float]]:
    """Accuracy per relation and split: {relation: {split: acc, "all": acc, "n": count}}."""
    conts = greedy_continuations(model, tokenizer, [q["prompt"] for q in questions])
    hits: dict[tuple[str, str], list[bool]] = {}
    for q, cont in zip(questions, conts, strict=True):
        ok = extract_answer(cont) == extract_answer(q["answer"])
        hits.setdefault((q["relation"], q["split"]), []).append(ok)
        hits.setdefault((q["relation"], "all"), []).append(ok)
    report: dict[str, dict[str, float]] = {}
    for (relation, split), oks in sorted(hits.items()):
        report.setdefault(relation, {})[split] = sum(oks) / len(oks)
        if split == "all":
            report[relation]["n"] = len(oks)
    return report


@torch.no_grad()
def code_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    heldout_texts: Sequence[str],
    train_texts: Sequence[str],
    max_windows: int = 400,
) -> dict[str, float]:
    """Held-out code loss of the model and of a train-fitted unigram, nats per token."""
    ctx = model.config.max_position_embeddings
    bos = tokenizer.bos_token_id
    windows: list[list[int]] = []
    for text in heldout_texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        for i in range(0, len(ids), ctx - 1):
            chunk = ids[i : i + ctx - 1]
            if len(chunk) > 1:
                windows.append([bos, *chunk])
    windows = windows[:max_windows]
    counts: Counter[int] = Counter()
    for text in train_texts:
        counts.update(tokenizer(text, add_special_tokens=False).input_ids)
    total = sum(counts.values()) + len(tokenizer)
    nll_model = nll_unigram = 0.0
    n = 0
    for w in windows:
        x = torch.tensor([w])
        logits = model(input_ids=x).logits[0, :-1]  # (pos, vocab)
        target = x[0, 1:]
        nll_model += torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum").item()
        nll_unigram += sum(-math.log((counts[t] + 1) / total) for t in target.tolist())
        n += len(target)
    return {"model": nll_model / n, "unigram": nll_unigram / n, "tokens": float(n)}

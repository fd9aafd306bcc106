"""Train the bundled model: a small Llama-family causal LM on the offline corpus.

1. Tokenize the train split: code files become one BOS…EOS stream, fact lines a list of
   BOS…EOS documents.
2. Each step draws a batch of rows of ``context + 1`` tokens: a `fact_fraction` of rows are
   fact documents packed whole (the rest of the row padded, padding masked from the loss),
   the others are windows at random offsets of the code stream.
3. AdamW with linear warm-up and cosine decay; every `eval_every` steps the held-out
   question accuracy is logged. The model is saved in Hugging Face format.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from loaders.zoo.corpus import read_jsonl
from loaders.zoo.evaluate import question_accuracy


@dataclass(frozen=True)
class LMConfig:
    """Architecture and optimisation of the bundled model."""

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_mlp: int = 512
    context: int = 128
    steps: int = 3500
    batch_rows: int = 48
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.1
    fact_fraction: float = 0.6
    """Fraction of each batch's rows drawn from fact documents."""
    eval_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.fact_fraction <= 1.0:
            raise ValueError(f"fact_fraction must be in [0, 1], got {self.fact_fraction}")


class _Batches:
    """Draws training rows (step 2 of the module docstring)."""

    def __init__(self, tok: PreTrainedTokenizerFast, rows: list[dict[str, str]], cfg: LMConfig):
        eos = tok.eos_token_id
        code_docs = [r["text"] for r in rows if r["source"] == "code"]
        fact_docs = [r["text"] for r in rows if r["source"] == "fact"]
        code = tok(code_docs).input_ids
        self.code = np.fromiter((t for ids in code for t in (*ids, eos)), dtype=np.int64)
        self.facts = [[*ids, eos] for ids in tok(fact_docs).input_ids]
        self.cfg, self.pad = cfg, tok.pad_token_id
        self.rng = random.Random(cfg.seed)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.cfg.context + 1
        x = np.full((self.cfg.batch_rows, n), self.pad, dtype=np.int64)  # (batch, pos)
        mask = np.zeros_like(x, dtype=bool)
        n_fact = round(self.cfg.batch_rows * self.cfg.fact_fraction)
        for b in range(self.cfg.batch_rows):
            if b < n_fact:
                pos = 0
                while True:
                    doc = self.facts[self.rng.randrange(len(self.facts))]
                    if pos + len(doc) > n:
                        break
                    x[b, pos : pos + len(doc)] = doc
                    pos += len(doc)
                mask[b, :pos] = True
            else:
                start = self.rng.randrange(len(self.code) - n)
                x[b] = self.code[start : start + n]
                mask[b] = True
        inputs = torch.from_numpy(x[:, :-1])
        labels = torch.from_numpy(np.where(mask[:, 1:], x[:, 1:], -100))
        return inputs, labels


def train_lm(corpus: Path, tokenizer_dir: Path, out: Path, cfg: LMConfig = LMConfig()) -> Path:
    """Train the model on `corpus` (a `build_corpus` directory) and save it into `out`."""
    torch.manual_seed(cfg.seed)
    tok = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    batches = _Batches(tok, read_jsonl(corpus / "train.jsonl"), cfg)
    questions = read_jsonl(corpus / "questions.jsonl")
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=cfg.d_model,
            intermediate_size=cfg.d_mlp,
            num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_heads,
            max_position_embeddings=cfg.context,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=False,
        )
    )
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    log: list[dict] = []
    t0 = time.time()
    model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        inputs, labels = batches()
        logits = model(input_ids=inputs).logits  # (batch, pos, vocab)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            model.eval()
            acc = question_accuracy(model, tok, questions)
            model.train()
            entry = {"step": step + 1, "loss": loss.item(), "seconds": time.time() - t0, "accuracy": acc}
            print(json.dumps(entry), flush=True)
            log.append(entry)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "training.json").write_text(json.dumps({"config": asdict(cfg), "log": log}, indent=2) + "\n")
    return out

"""Corpus reading under DESIGN.md's convention.

A document is one line of a text file, one JSONL record's ``text`` field, or one value of a
Parquet file's ``text`` column. It is tokenized with BOS prepended when the tokenizer has
one and truncated to the model's context. Position 0 (BOS) is excluded from every statistic
downstream; `Batch.mask` marks the positions that count.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase


class CorpusError(ValueError):
    """A corpus file that cannot be read, naming the file, the line and what to do."""


def read_documents(path: Path) -> list[str]:
    """All documents of a text / JSONL / Parquet corpus, in file order."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise CorpusError(f"{path}: Parquet corpus needs a 'text' column (has {table.column_names})")
        docs = [t for t in table.column("text").to_pylist() if t]
    else:
        docs = []
        jsonl = path.suffix in (".jsonl", ".json")
        with path.open("rb") as f:
            for n, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise CorpusError(
                        f"{path}:{n}: not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r}); "
                        "re-encode the file as UTF-8"
                    ) from e
                if not line.strip():
                    continue
                if jsonl:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise CorpusError(f"{path}:{n}: not a JSON record ({e.msg})") from e
                    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                        raise CorpusError(f"{path}:{n}: JSONL record needs a string 'text' field")
                    line = record["text"]
                    if not line.strip():
                        continue
                docs.append(line)
    if not docs:
        raise CorpusError(f"{path}: the corpus holds no documents (empty file or only blank lines)")
    return docs


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode(tokenizer: PreTrainedTokenizerBase, text: str, context: int) -> list[int]:
    """Token ids of one document: BOS prepended (when the tokenizer has one), truncated."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    bos = tokenizer.bos_token_id
    if bos is not None:
        ids = [bos, *ids]
    return ids[:context]


@dataclass(frozen=True)
class Batch:
    """A batch of documents as padded rows."""

    doc_ids: Tensor  # (batch,) index of each row's document in the corpus
    input_ids: Tensor  # (batch, pos)
    attention_mask: Tensor  # (batch, pos) 1 on real tokens
    mask: Tensor  # (batch, pos) bool: real tokens that count in statistics (position 0 excluded)


def batches(
    tokenizer: PreTrainedTokenizerBase, docs: list[str], context: int, batch_size: int, start: int = 0
) -> Iterator[Batch]:
    """Batches of `batch_size` documents from document `start` on (right padding)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for i in range(start, len(docs), batch_size):
        ids = [encode(tokenizer, d, context) for d in docs[i : i + batch_size]]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        attn = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = torch.tensor(x)
            attn[r, : len(x)] = 1
        mask = attn.bool().clone()
        mask[:, 0] = False
        yield Batch(torch.arange(i, i + len(ids)), input_ids, attn, mask)

"""Corpora read as a stream, split into context windows, packed into token-budget batches.

DESIGN.md's convention: a document is one line of a text file, one JSONL record's ``text``
field, or one value of a Parquet file's ``text`` column. It is tokenized once, then split into
consecutive windows of at most ``context − 1`` tokens; each window gets BOS prepended when the
tokenizer has one, and its position 0 is excluded from every statistic (`Batch.mask`).
Nothing is truncated, and nothing is read whole:

1. `Corpus` resolves a file, a directory of shards or a glob into an ordered tuple of shards
   and streams their records from a `Cursor` (shard, record, byte offset), so a resumed
   pass seeks straight to where it stopped;
2. `chunks` tokenizes records in groups and cuts the stream into chunks of about
   `chunk_tokens` tokens that end at a record boundary and never span two shards (so a shard
   is batched the same way whether it is read alone or after another, see `loaders.stats`);
3. `pack` sorts a chunk's windows by length and packs them into batches of at most
   `batch_tokens` padded tokens (length bucketing keeps padding small).

Every window has a location key, `window_key(shard, record, window)`, one int64 that orders
windows as the stream does; top-example ties are broken by it.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from loaders.errors import GraphkitError
from loaders.files import file_hash

SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
SHARD_BITS, RECORD_BITS, WINDOW_BITS = 15, 32, 16
"""Bits of a window key: shard (high), record, window (low); the sign bit stays 0."""
NO_KEY = np.iinfo(np.int64).max
"""Key of an empty top-example slot (sorts after every real window)."""


class CorpusError(GraphkitError, ValueError):
    """A corpus that cannot be read, naming the file, the line and what to do."""


def window_key(shard: int, record: int, window: int) -> int:
    """The int64 location key of a window (stream order)."""
    if shard >> SHARD_BITS or record >> RECORD_BITS or window >> WINDOW_BITS:
        raise CorpusError(
            f"window (shard {shard}, record {record}, window {window}) exceeds the location key's range "
            f"(< {1 << SHARD_BITS} shards, < {1 << RECORD_BITS} records per shard, < {1 << WINDOW_BITS} windows "
            "per document); split the corpus into more, smaller shards"
        )
    return (shard << (RECORD_BITS + WINDOW_BITS)) | (record << WINDOW_BITS) | window


def split_key(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shard, record, window) arrays of location keys."""
    key = np.asarray(key, np.int64)
    return (
        key >> (RECORD_BITS + WINDOW_BITS),
        (key >> WINDOW_BITS) & ((1 << RECORD_BITS) - 1),
        key & ((1 << WINDOW_BITS) - 1),
    )


@dataclass(frozen=True, order=True)
class Cursor:
    """Where a stream stands: the next record to read."""

    shard: int = 0
    record: int = 0
    offset: int = 0
    """Byte offset of `record` in a text or JSONL shard (unused for Parquet)."""
    window: int = 0
    """First window of `record` still to read (a chunk may end inside a long document)."""


class Corpus:
    """A corpus of one or more shards, in sorted path order."""

    def __init__(self, spec: str | Path):
        self.spec = str(spec)
        path = Path(spec)
        if path.is_dir():
            shards = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
            if not shards:
                raise CorpusError(f"corpus directory {path} holds no {'/'.join(SUFFIXES)} files")
        elif path.is_file():
            shards = [path]
        elif any(c in self.spec for c in "*?["):
            shards = sorted(Path(p) for p in glob.glob(self.spec, recursive=True) if Path(p).is_file())
            if not shards:
                raise CorpusError(f"corpus glob {self.spec!r} matches no file")
        else:
            raise CorpusError(f"corpus {path} does not exist (give a file, a directory of shards or a glob)")
        if len(shards) >> SHARD_BITS:
            raise CorpusError(f"corpus {self.spec}: {len(shards)} shards; at most {(1 << SHARD_BITS) - 1}")
        self.shards: tuple[Path, ...] = tuple(shards)
        self.sizes = [p.stat().st_size for p in self.shards]
        self._rows: dict[int, int] = {}

    def fingerprint(self) -> dict:
        """Shard names, sizes and SHA-256 digests (identifies the corpus's content)."""
        h = hashlib.sha256()
        for p in self.shards:
            h.update(p.name.encode() + b"\0" + file_hash(p).encode())
        path = str(Path(self.spec).resolve())
        return {"path": path, "shards": len(self.shards), "bytes": sum(self.sizes), "sha256": h.hexdigest()}

    def fraction(self, cursor: Cursor) -> float:
        """Share of the corpus before `cursor`, by bytes."""
        done = float(sum(self.sizes[: cursor.shard]))
        if cursor.shard < len(self.shards):
            done += self.sizes[cursor.shard] * self.shard_fraction(cursor)
        return done / max(sum(self.sizes), 1)

    def shard_fraction(self, cursor: Cursor) -> float:
        """Share of its shard before `cursor` (by bytes; a Parquet shard by rows)."""
        if self.shards[cursor.shard].suffix != ".parquet":
            return cursor.offset / max(self.sizes[cursor.shard], 1)
        if cursor.shard not in self._rows:
            import pyarrow.parquet as pq

            self._rows[cursor.shard] = pq.ParquetFile(self.shards[cursor.shard]).metadata.num_rows
        return min(cursor.record / max(self._rows[cursor.shard], 1), 1.0)

    def records(self, start: Cursor = Cursor(), stop_shard: int | None = None) -> Iterator[tuple[Cursor, Cursor, str]]:
        """(cursor of the record, cursor after it, text) of every non-empty document from `start`.

        Blank documents are skipped but keep their record number, so record numbers are
        positions in the shard. Stops before shard `stop_shard` (default: the end).
        """
        end = len(self.shards) if stop_shard is None else stop_shard
        for s in range(start.shard, end):
            first = start if s == start.shard else Cursor(s)
            path = self.shards[s]
            reader = _parquet_records if path.suffix == ".parquet" else _text_records
            yield from reader(path, s, first)


def _text_records(path: Path, shard: int, start: Cursor) -> Iterator[tuple[Cursor, Cursor, str]]:
    jsonl = path.suffix in (".jsonl", ".json")
    with path.open("rb") as raw:
        raw.seek(start.offset)
        f = io.BufferedReader(raw, 1 << 20)  # type: ignore[arg-type]
        record, offset = start.record, start.offset
        for line_bytes in f:
            here = Cursor(shard, record, offset)
            record, offset = record + 1, offset + len(line_bytes)
            try:
                line = line_bytes.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{path}:{record}: not valid UTF-8 (byte {e.start}: {line_bytes[e.start : e.start + 1]!r}); "
                    "re-encode the file as UTF-8"
                ) from e
            if not line.strip():
                continue
            if jsonl:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{path}:{record}: not a JSON record ({e.msg})") from e
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise CorpusError(f"{path}:{record}: JSONL record needs a string 'text' field")
                line = obj["text"]
                if not line.strip():
                    continue
            yield here, Cursor(shard, record, offset), line


def _parquet_records(path: Path, shard: int, start: Cursor) -> Iterator[tuple[Cursor, Cursor, str]]:
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise CorpusError(f"{path}: not a readable Parquet file ({e})") from e
    if "text" not in f.schema_arrow.names:
        raise CorpusError(f"{path}: Parquet corpus needs a 'text' column (has {f.schema_arrow.names})")
    first_row, groups = 0, []
    for g in range(f.num_row_groups):
        n = f.metadata.row_group(g).num_rows
        if first_row + n > start.record:
            groups.append(g)
        elif not groups:
            first_row += n
    record = first_row
    for batch in f.iter_batches(batch_size=4096, row_groups=groups, columns=["text"]):
        for text in batch.column(0).to_pylist():
            record += 1
            if record <= start.record or not text or not str(text).strip():
                continue
            yield Cursor(shard, record - 1), Cursor(shard, record), str(text)


def read_documents(path: str | Path) -> list[str]:
    """Every document of a small corpus as a list (tests and tools; `collect` streams)."""
    docs = [text for _, _, text in Corpus(path).records()]
    if not docs:
        raise CorpusError(f"{path}: the corpus holds no documents (empty file or only blank lines)")
    return docs


def windows(tokenizer: PreTrainedTokenizerBase, ids: list[int], context: int) -> list[list[int]]:
    """A document's token ids (no BOS) as consecutive windows of ≤ context − 1 tokens, BOS-prefixed."""
    if context < 2:
        raise CorpusError(f"context {context} is too small: windows hold context − 1 ≥ 1 tokens")
    w = context - 1
    bos = tokenizer.bos_token_id
    prefix = [] if bos is None else [bos]
    return [prefix + ids[i : i + w] for i in range(0, len(ids), w)]


@dataclass(frozen=True)
class Window:
    key: int
    """Location key (`window_key`)."""
    ids: list[int]
    """Token ids, BOS first when the tokenizer has one."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive documents of one shard, cut into windows."""

    windows: list[Window]
    end: Cursor
    """Cursor after the chunk's last window (where a resumed stream starts)."""
    documents: int
    """Documents whose first window is in the chunk."""


def chunks(
    corpus: Corpus,
    tokenizer: PreTrainedTokenizerBase,
    context: int,
    chunk_tokens: int,
    start: Cursor = Cursor(),
    stop_shard: int | None = None,
    group: int = 256,
) -> Iterator[Chunk]:
    """Chunks of about `chunk_tokens` tokens from `start`: a chunk ends after the window that
    reaches `chunk_tokens` (inside a document, if need be) or at the end of a shard. Records
    are tokenized `group` at a time."""
    out: list[Window] = []
    tokens = docs = 0
    end = start
    for here, after, ids in _tokenized(corpus.records(start, stop_shard), tokenizer, group):
        if out and here.shard != end.shard:
            yield Chunk(out, end, docs)
            out, tokens, docs = [], 0, 0
        end = after
        ws = windows(tokenizer, ids, context) if ids else []
        first = start.window if (here.shard, here.record) == (start.shard, start.record) else 0
        for n in range(first, len(ws)):
            out.append(Window(window_key(here.shard, here.record, n), ws[n]))
            tokens += len(ws[n])
            docs += n == 0
            if tokens >= chunk_tokens:
                end = after if n + 1 == len(ws) else dataclasses.replace(here, window=n + 1)
                yield Chunk(out, end, docs)
                out, tokens, docs = [], 0, 0
                end = after
    if out:
        yield Chunk(out, end, docs)


def _tokenized(
    records: Iterator[tuple[Cursor, Cursor, str]], tokenizer: PreTrainedTokenizerBase, group: int
) -> Iterator[tuple[Cursor, Cursor, list[int]]]:
    """(cursor, cursor after, token ids without BOS) per record; tokenizes `group` texts per call."""
    pending: list[tuple[Cursor, Cursor, str]] = []

    def flush() -> Iterator[tuple[Cursor, Cursor, list[int]]]:
        ids = tokenizer([t for _, _, t in pending], add_special_tokens=False, verbose=False).input_ids
        yield from ((here, after, x) for (here, after, _), x in zip(pending, ids, strict=True))
        pending.clear()

    for rec in records:
        pending.append(rec)
        if len(pending) >= group:
            yield from flush()
    if pending:
        yield from flush()


@dataclass(frozen=True)
class Batch:
    """Windows as padded rows."""

    keys: Tensor  # (batch,) int64 location key of each row
    input_ids: Tensor  # (batch, pos)
    attention_mask: Tensor  # (batch, pos) 1 on real tokens
    mask: Tensor  # (batch, pos) bool: real tokens that count in statistics (position 0 excluded)


def pack(wins: list[Window], batch_tokens: int, pad_id: int) -> list[Batch]:
    """Windows sorted by length (longest first, then stream order), packed into batches whose
    rows × longest row stays within `batch_tokens` (a longer single window is its own batch)."""
    order = sorted(range(len(wins)), key=lambda n: (-len(wins[n].ids), wins[n].key))
    out: list[Batch] = []
    i = 0
    while i < len(order):
        width = len(wins[order[i]].ids)
        rows = max(1, batch_tokens // width)
        sel = [wins[n] for n in order[i : i + rows]]
        i += len(sel)
        input_ids = torch.full((len(sel), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(sel), width), dtype=torch.long)
        for r, w in enumerate(sel):
            input_ids[r, : len(w.ids)] = torch.tensor(w.ids)
            attn[r, : len(w.ids)] = 1
        mask = attn.bool()
        mask[:, 0] = False
        out.append(Batch(torch.tensor([w.key for w in sel], dtype=torch.long), input_ids, attn, mask))
    return out


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else 0


def batches(tokenizer: PreTrainedTokenizerBase, docs: list[str], context: int, batch_tokens: int) -> Iterator[Batch]:
    """Batches of an in-memory list of documents (shard 0, record = list index): tests and benchmarks."""
    wins = []
    for r, ids in enumerate(tokenizer(docs, add_special_tokens=False).input_ids):
        wins += [Window(window_key(0, r, n), w) for n, w in enumerate(windows(tokenizer, ids, context))] if ids else []
    yield from pack(wins, batch_tokens, pad_id(tokenizer))

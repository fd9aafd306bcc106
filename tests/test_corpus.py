"""Corpora stream from files, shard directories and globs; cursors resume; windows cover every token."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loaders.corpus import Corpus, CorpusError, Cursor, chunks, read_documents, split_key, window_key, windows
from tests.factories import tiny_tokenizer

TEXTS = ["first doc", "second doc with more words", "", "third", "  ", "fourth and last document here"]


def _write_all(root: Path) -> dict[str, Path]:
    root.mkdir(exist_ok=True)
    (root / "c.txt").write_text("\n".join(TEXTS) + "\n")
    (root / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    pq.write_table(pa.table({"text": TEXTS}), root / "c.parquet", row_group_size=2)
    return {s: root / f"c.{s}" for s in ("txt", "jsonl", "parquet")}


def test_formats_agree_and_cursors_resume(tmp_path: Path) -> None:
    files = _write_all(tmp_path)
    wanted = [t for t in TEXTS if t.strip()]
    for path in files.values():
        recs = list(Corpus(path).records())
        assert [t for _, _, t in recs] == wanted
        assert [c.record for c, _, _ in recs] == [0, 1, 3, 5]  # blank records keep their numbers
        # resuming from any record's end cursor yields exactly the records after it
        for n, (_, after, _) in enumerate(recs):
            assert [t for _, _, t in Corpus(path).records(after)] == wanted[n + 1 :]
    assert read_documents(files["txt"]) == wanted


def test_shards_and_globs(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "b.txt").write_text("bee\n")
    (shards / "a.jsonl").write_text(json.dumps({"text": "ay"}) + "\n")
    (shards / "notes.md").write_text("ignored\n")
    for spec in (shards, f"{shards}/*.*"):
        corpus = Corpus(spec)
        got = [(c.shard, t) for c, _, t in corpus.records()]
        assert got[:2] == [(0, "ay"), (1, "bee")]
    assert len(Corpus(shards).shards) == 2
    assert [t for _, _, t in Corpus(shards).records(Cursor(1))] == ["bee"]
    with pytest.raises(CorpusError, match="matches no file"):
        Corpus(f"{tmp_path}/*.nothing")


def test_windows_cover_every_token_and_chunks_stay_in_shard(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    ids = list(range(10, 33))  # 23 tokens
    ws = windows(tok, ids, context=8)
    assert [len(w) for w in ws] == [8, 8, 8, 3]
    assert all(w[0] == tok.bos_token_id for w in ws)
    assert [t for w in ws for t in w[1:]] == ids
    shards = tmp_path / "s"
    shards.mkdir()
    (shards / "a.txt").write_text("one two three four five six seven\n" * 5)
    (shards / "b.txt").write_text("eight nine\n" * 3)
    got = list(chunks(Corpus(shards), tok, context=6, chunk_tokens=10, group=2))
    assert all(len({split_key(w.key)[0].item() for w in c.windows}) == 1 for c in got)
    assert [c.end.shard for c in got][-1] == 1 and sum(c.documents for c in got) == 8
    assert any(c.end.window > 0 for c in got), "some chunk ends inside a document"
    # every chunk's end cursor resumes the stream at the next chunk, mid-document or not
    for n, c in enumerate(got):
        rest = list(chunks(Corpus(shards), tok, context=6, chunk_tokens=10, start=c.end, group=2))
        assert [[w.key for w in r.windows] for r in rest] == [[w.key for w in r.windows] for r in got[n + 1 :]]


def test_window_keys_order_and_bounds() -> None:
    keys = [window_key(0, 5, 1), window_key(0, 5, 2), window_key(0, 6, 0), window_key(1, 0, 0)]
    assert keys == sorted(keys)
    shard, record, window = split_key(keys)
    assert shard.tolist() == [0, 0, 0, 1] and record.tolist() == [5, 5, 6, 0] and window.tolist() == [1, 2, 0, 0]
    with pytest.raises(CorpusError, match="split the corpus"):
        window_key(0, 0, 1 << 16)


def test_bad_corpora_give_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="no documents"):
        read_documents(empty)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(CorpusError, match=r"bad.txt:2: not valid UTF-8"):
        read_documents(bad)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(CorpusError, match=r"c.jsonl:2: JSONL record needs a string 'text'"):
        read_documents(jsonl)
    with pytest.raises(CorpusError, match="does not exist"):
        read_documents(tmp_path / "missing.txt")
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(CorpusError, match="needs a 'text' column"):
        read_documents(tmp_path / "p.parquet")

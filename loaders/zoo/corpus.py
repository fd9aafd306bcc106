"""Offline corpus builder: Python standard library code plus generated fact text.

Steps, all deterministic given the seed and the running interpreter:

1. Collect the standard library's own ``.py`` files (tests and site-packages excluded) and
   split them by file into train and held-out (a seeded hash of the relative path).
2. Render every fact of every relation (`facts.py`) with every statement template, and
   every train question template, except held-out (subject, template) pairs chosen with the
   seed; the held-out question templates are never rendered into train.
3. Write ``train.jsonl`` (code files and fact lines, one record each), the evaluation set
   ``questions.jsonl`` (held-out questions with their expected answers and split), the
   held-out analysis corpus ``heldout.jsonl`` (short held-out code chunks and fact lines,
   one document per record, the corpus convention of DESIGN.md), and ``manifest.json``.

Records are ``{"text": ..., "source": ...}``; a fact record also names its relation.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from loaders.zoo.facts import relations, render

# Question instances pinned to train: the demo's prompts must be ones the model was taught.
PINNED_TRAIN = {("color", "grass", "what-is-the-color"), ("hex", "green", "what-is-the-hex")}
EXCLUDED_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class CorpusConfig:
    """How the corpus is built."""

    seed: int = 0
    """Seeds every split; the same seed gives the same bytes."""
    code_heldout_fraction: float = 0.1
    """Fraction of standard-library files held out."""
    question_heldout_fraction: float = 0.2
    """Fraction of (subject, train template) question pairs held out."""
    heldout_code_chunks: int = 600
    """Number of held-out code chunks in the analysis corpus."""
    chunk_lines: int = 12
    """Lines per held-out code chunk."""

    def __post_init__(self) -> None:
        for name in ("code_heldout_fraction", "question_heldout_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"CorpusConfig.{name} must be in (0, 1), got {value}")


def _unit(seed: int, key: str) -> float:
    """A deterministic number in [0, 1) for `key` under `seed` (no PYTHONHASHSEED effect)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def stdlib_files() -> list[Path]:
    """The interpreter's standard-library ``.py`` files, sorted, tests excluded."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not EXCLUDED_DIRS.intersection(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _read_code(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def build_corpus(out: Path, config: CorpusConfig = CorpusConfig()) -> dict[str, object]:
    """Write the corpus files into `out` and return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    root = Path(sysconfig.get_paths()["stdlib"])
    train: list[dict[str, str]] = []
    heldout_code: list[str] = []
    n_files = {"train": 0, "heldout": 0}
    for path in stdlib_files():
        rel_path = path.relative_to(root).as_posix()
        text = _read_code(path)
        if not text or not text.strip():
            continue
        if _unit(config.seed, "code:" + rel_path) < config.code_heldout_fraction:
            heldout_code.append(text)
            n_files["heldout"] += 1
        else:
            train.append({"text": text, "source": "code", "path": rel_path})
            n_files["train"] += 1

    questions: list[dict[str, str]] = []
    heldout_facts: list[str] = []
    for rel in relations():
        for subject, answer in rel.facts:
            for template in rel.statements:
                line = render(template, rel.name, subject, answer)
                train.append({"text": line, "source": "fact", "relation": rel.name})
            for split, templates in (("instance", rel.questions), ("template", rel.held_out_questions)):
                for q in templates:
                    prompt, expected = q.render(rel.name, subject, answer)
                    held = split == "template" or (
                        (rel.name, subject, q.name) not in PINNED_TRAIN
                        and _unit(config.seed, f"q:{rel.name}:{subject}:{q.name}") < config.question_heldout_fraction
                    )
                    if held:
                        questions.append(
                            {
                                "relation": rel.name,
                                "template": q.name,
                                "split": split,
                                "subject": subject,
                                "prompt": prompt,
                                "answer": expected,
                            }
                        )
                        heldout_facts.append(f"{prompt} {expected}")
                    else:
                        train.append({"text": f"{prompt} {expected}", "source": "fact", "relation": rel.name})

    chunks: list[str] = []
    for text in heldout_code:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        for i in range(0, len(lines), config.chunk_lines):
            chunks.append("\n".join(lines[i : i + config.chunk_lines]))
    rng.shuffle(chunks)
    heldout_docs = [{"text": c, "source": "code"} for c in chunks[: config.heldout_code_chunks]]
    heldout_docs += [{"text": t, "source": "fact"} for t in heldout_facts]
    rng.shuffle(heldout_docs)

    files = {
        "train.jsonl": train,
        "heldout_code.jsonl": [{"text": t, "source": "code"} for t in heldout_code],
        "heldout.jsonl": heldout_docs,
        "questions.jsonl": questions,
    }
    manifest: dict[str, object] = {
        "seed": config.seed,
        "python": sys.version.split()[0],
        "stdlib_files": n_files,
        "records": {name: len(rows) for name, rows in files.items()},
        "sha256": {},
    }
    for name, rows in files.items():
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        (out / name).write_bytes(data)
        manifest["sha256"][name] = hashlib.sha256(data).hexdigest()  # type: ignore[index]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

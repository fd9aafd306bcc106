"""Rebuild the bundled artifacts from scratch: corpus → tokenizer → model → dictionaries.

``python -m loaders.zoo.build [--work DIR] [--out DIR] [--force]`` runs every stage; a stage
whose output exists is skipped unless ``--force``. Each stage's wall time is appended to
``build.json`` in the work directory so the model card can state the total.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from loaders.zoo import ARTIFACTS
from loaders.zoo.corpus import build_corpus, read_jsonl

VOCAB_SIZE = 4096
TOKENIZER_FACT_REPEATS = 30
"""Fact lines are repeated in the tokenizer's training text so answer words get whole tokens."""


def _stage(work: Path, name: str, output: Path, force: bool, fn: Callable[[], object]) -> None:
    log_path = work / "build.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    if output.exists() and not force:
        print(f"[build] {name}: {output} exists, skipped", flush=True)
        return
    if output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    t0 = time.time()
    print(f"[build] {name} ...", flush=True)
    fn()
    log[name] = {"seconds": round(time.time() - t0, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    log_path.write_text(json.dumps(log, indent=2) + "\n")
    print(f"[build] {name}: {log[name]['seconds']} s", flush=True)


def build(work: Path, out: Path = ARTIFACTS, force: bool = False, stages: tuple[str, ...] = ()) -> None:
    """Run the build stages (all when `stages` is empty)."""
    from loaders.zoo.tokenizer import train_tokenizer
    from loaders.zoo.train_lm import train_lm

    work.mkdir(parents=True, exist_ok=True)
    corpus, tok_dir, model_dir = work / "corpus", work / "tokenizer", out / "tiny"

    def tokenizer() -> None:
        rows = read_jsonl(corpus / "train.jsonl")
        texts = [r["text"] for r in rows if r["source"] == "code"]
        texts += [r["text"] for r in rows if r["source"] == "fact"] * TOKENIZER_FACT_REPEATS
        train_tokenizer(texts, VOCAB_SIZE, tok_dir)

    def dictionary(kind: str, target: Path) -> None:
        from loaders.dictionary import save_clt, save_plt
        from loaders.model import HookedModel
        from loaders.zoo.train_dictionary import DictConfig, collect_sites, train_dictionary, train_rows

        cfg = DictConfig(kind=kind)
        model = HookedModel.load(model_dir)
        x, y = collect_sites(model, train_rows(model, corpus, cfg.tokens, seed=cfg.seed + 1))
        d = train_dictionary(model, x, y, cfg)
        (save_clt if kind == "clt" else save_plt)(d, target)

    def card() -> None:
        from loaders.zoo.card import CARD, evaluate_zoo, render_card

        result = evaluate_zoo(work, out)
        training = json.loads((model_dir / "training.json").read_text())
        CARD.write_text(render_card(result, json.loads((work / "build.json").read_text()), training))

    plan: list[tuple[str, Path, Callable[[], object]]] = [
        ("corpus", corpus, lambda: build_corpus(corpus)),
        ("tokenizer", tok_dir, tokenizer),
        ("model", model_dir, lambda: train_lm(corpus, tok_dir, model_dir)),
        ("clt", out / "tiny-clt", lambda: dictionary("clt", out / "tiny-clt")),
        ("plt", out / "tiny-plt", lambda: dictionary("plt", out / "tiny-plt")),
        ("card", model_dir / "eval.json", card),
    ]
    for name, output, fn in plan:
        if not stages or name in stages:
            _stage(work, name, output, force, fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/zoo"), help="corpus and logs")
    parser.add_argument("--out", type=Path, default=ARTIFACTS, help="where the artifacts go")
    parser.add_argument("--force", action="store_true", help="rebuild stages whose output exists")
    parser.add_argument("--stage", action="append", default=[], help="run only these stages")
    args = parser.parse_args()
    build(args.work, args.out, args.force, tuple(args.stage))


if __name__ == "__main__":
    main()

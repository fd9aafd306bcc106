"""Measure the bundled artifacts and write the model card.

``python -m loaders.zoo.card [--work DIR]`` evaluates the model (held-out question accuracy
per relation and split, held-out code loss beside a unigram baseline) and both dictionaries
(`evaluate_dictionary`), writes ``eval.json`` beside the model weights, and renders
``docs/model-card.md`` with the build times from ``build.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from loaders.dictionary import load_dictionary
from loaders.model import HookedModel
from loaders.zoo import ARTIFACTS
from loaders.zoo.corpus import read_jsonl
from loaders.zoo.evaluate import code_loss, question_accuracy
from loaders.zoo.train_dictionary import evaluate_dictionary, heldout_rows

CARD = Path(__file__).resolve().parents[2] / "docs" / "model-card.md"


def evaluate_zoo(work: Path, out: Path = ARTIFACTS) -> dict[str, object]:
    """All model-card numbers, written to ``out/tiny/eval.json``."""
    torch.manual_seed(0)
    corpus = work / "corpus"
    model = HookedModel.load(out / "tiny")
    questions = read_jsonl(corpus / "questions.jsonl")
    train_code = [r["text"] for r in read_jsonl(corpus / "train.jsonl") if r["source"] == "code"]
    heldout_code = [r["text"] for r in read_jsonl(corpus / "heldout_code.jsonl")]
    rows = heldout_rows(model, corpus)
    result: dict[str, object] = {
        "accuracy": question_accuracy(model.model, model.tokenizer, questions),
        "code_loss": code_loss(model.model, model.tokenizer, heldout_code, train_code),
        "dictionaries": {
            name: evaluate_dictionary(model, load_dictionary(out / name), rows) for name in ("tiny-clt", "tiny-plt")
        },
    }
    (out / "tiny" / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_card(result: dict, build_log: dict, training: dict | None = None) -> str:
    acc, loss = result["accuracy"], result["code_loss"]
    cfg = (training or {}).get("config", {})
    fact_pct = f"{100 * cfg.get('fact_fraction', 0.6):.0f}%"
    steps, rows, context = cfg.get("steps", "?"), cfg.get("batch_rows", "?"), cfg.get("context", "?")
    lines = [
        "# Model card: `tiny`, `tiny-clt`, `tiny-plt`",
        "",
        "The bundled model and dictionaries, built by graphkit with no download. Reproduce "
        "everything with `python -m loaders.zoo.build --force` (or `graphkit zoo build --force`); "
        "re-measure every number below with `python -m loaders.zoo.card`.",
        "",
        "## Model `tiny`",
        "",
        "Llama-family causal LM (`LlamaForCausalLM`): 4 layers, d_model 128, 4 heads, MLP 512, "
        "context 128, byte-level BPE vocabulary of 4096 with `<|bos|>` prepended. Trained by "
        "`loaders/zoo/train_lm.py` on the offline corpus (`loaders/zoo/corpus.py`): the Python "
        "standard library's own files (train/held-out split by file) and fact text generated from "
        "`loaders/zoo/facts.py` (object colors, hex values, color words in 5 languages, capitals, "
        f"opposites); {fact_pct} of each batch's rows are fact documents, the rest code windows "
        f"({steps} steps of {rows} rows × {context} tokens).",
        "",
        "### Held-out question accuracy (greedy)",
        "",
        "`instance`: train templates, (subject, template) pairs never seen in training; "
        "`template`: templates never seen in training.",
        "",
        "| relation | n | instance | template | all |",
        "|---|---|---|---|---|",
    ]
    for rel, r in acc.items():
        lines.append(f"| {rel} | {int(r['n'])} | {_pct(r['instance'])} | {_pct(r['template'])} | {_pct(r['all'])} |")
    lines += [
        "",
        "### Held-out standard-library code",
        "",
        f"Mean next-token loss over {int(loss['tokens'])} held-out tokens: **{loss['model']:.3f} nats** "
        f"(unigram baseline fitted on the train split: {loss['unigram']:.3f} nats).",
        "",
        "## Dictionaries",
        "",
        "Both read the normalized MLP input (`mlp.hook_in`) and write the MLP output "
        "(`hook_mlp_out`), ReLU, 1024 features per layer (8 × d_model); trained by "
        "`loaders/zoo/train_dictionary.py`. Measured on the held-out analysis corpus "
        "(`heldout.jsonl`, BOS and padding excluded).",
        "",
        "| dictionary | layer | FVU | mean L0 | dead |",
        "|---|---|---|---|---|",
    ]
    for name, ev in result["dictionaries"].items():
        for layer in ev["fvu"]:
            lines.append(
                f"| {name} | {layer} | {ev['fvu'][layer]:.3f} | {ev['l0'][layer]:.1f} | "
                f"{_pct(ev['dead_fraction'][layer])} |"
            )
    lines += [
        "",
        "| dictionary | CE clean | CE replacement | CE zero-ablated MLPs | CE recovered |",
        "|---|---|---|---|---|",
    ]
    for name, ev in result["dictionaries"].items():
        lines.append(
            f"| {name} | {ev['ce_clean']:.3f} | {ev['ce_replacement']:.3f} | "
            f"{ev['ce_zero_ablation']:.3f} | **{_pct(ev['ce_recovered'])}** |"
        )
    note = build_log.pop("note", "")
    total = sum(v["seconds"] for v in build_log.values())
    lines += [
        "",
        "## Build time",
        "",
        f"`python -m loaders.zoo.build --force` on this project's machine ({platform.machine()}, "
        f"2 CPU cores, no GPU), per stage:",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v['seconds']:.0f} |" for k, v in build_log.items()],
        f"| **total** | **{total:.0f}** ({total / 60:.0f} min) |",
        "",
        note,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/zoo"))
    parser.add_argument("--out", type=Path, default=ARTIFACTS)
    args = parser.parse_args()
    result = evaluate_zoo(args.work, args.out)
    log_path = args.work / "build.json"
    build_log = json.loads(log_path.read_text()) if log_path.exists() else {}
    training_path = args.out / "tiny" / "training.json"
    training = json.loads(training_path.read_text()) if training_path.exists() else None
    CARD.write_text(render_card(result, build_log, training))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

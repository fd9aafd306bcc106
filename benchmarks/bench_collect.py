"""Throughput of the collect pass against the bare forward pass and forward + encode.

    python benchmarks/bench_collect.py [--model tiny] [--dictionary tiny-clt] [--corpus FILE] [--docs 800]

Over the same documents and batches (corpus convention: BOS-prefixed, one document a row):

1. ``forward``: the model's forward pass (logits included), nothing else;
2. ``forward+encode``: the forward pass capturing every read site, encoding all features;
3. ``collect``: the full streaming pass (`loaders.stats.stream_statistics`: statistics,
   histograms, top-k examples, sparse pair sums, norm denominators).

Each runs in its own subprocess, so peak resident memory is measured per mode. Prints
tokens/s, peak RSS, and the ratio collect / (forward+encode) (goal ≥ 0.7). The default
corpus is the corpus builder's held-out analysis corpus (built into a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(mode: str, model_name: str, dictionary: str, corpus: Path, docs: int, batch: int) -> dict:
    import torch

    from loaders.corpus import batches, read_documents
    from loaders.dictionary import load_dictionary
    from loaders.model import HookedModel
    from loaders.stats import StatsConfig, stream_statistics

    torch.set_num_threads(torch.get_num_threads())
    model = HookedModel.load(model_name)
    d = load_dictionary(dictionary)
    texts = read_documents(corpus)[:docs]
    context = model.model.config.max_position_embeddings
    counted = sum(int(b.mask.sum()) for b in batches(model.tokenizer, texts, context, batch))
    t0 = time.perf_counter()
    if mode == "collect":
        stream_statistics(model, d, texts, StatsConfig(batch_size=batch), progress=False)
    else:
        sites = [(l, d.read_site) for l in d.layers]
        with torch.no_grad():
            for b in batches(model.tokenizer, texts, context, batch):
                if mode == "forward":
                    model.model(input_ids=b.input_ids, attention_mask=b.attention_mask)
                else:
                    store: dict = {k: [] for k in sites}
                    with model.hooks(capture=store):
                        model.model(input_ids=b.input_ids, attention_mask=b.attention_mask)
                    for l in d.layers:
                        d.encode(l, store[(l, d.read_site)][0])
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode,
        "tokens": counted,
        "seconds": seconds,
        "tokens_per_s": counted / seconds,
        "peak_rss_mib": peak_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dictionary", default="tiny-clt")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--docs", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.model, args.dictionary, args.corpus, args.docs, args.batch_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            from loaders.zoo.corpus import build_corpus

            build_corpus(Path(tmp))
            corpus = Path(tmp) / "heldout.jsonl"
        results = {}
        for mode in ("forward", "forward+encode", "collect"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--mode",
                    mode,
                    "--model",
                    args.model,
                    "--dictionary",
                    args.dictionary,
                    "--corpus",
                    str(corpus),
                    "--docs",
                    str(args.docs),
                    "--batch-size",
                    str(args.batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    for r in results.values():
        print(
            f"{r['mode']:15s} {r['tokens']} tokens in {r['seconds']:.2f} s = {r['tokens_per_s']:,.0f} tok/s, "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    ratio = results["collect"]["tokens_per_s"] / results["forward+encode"]["tokens_per_s"]
    print(
        f"collect / (forward+encode) = {ratio:.2f} (goal ≥ 0.7); "
        f"collect / forward = {results['collect']['tokens_per_s'] / results['forward']['tokens_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()

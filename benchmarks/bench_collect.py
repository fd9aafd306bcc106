"""Whole-process ``graphkit collect`` against the bare forward pass over the same tokens.

    python benchmarks/bench_collect.py [--model tiny] [--dictionary tiny-clt] [--corpus FILE]

Over the same windows and length-bucketed batches (`loaders.corpus.chunks` and `pack`, the
defaults of `loaders.stats.StatsConfig`), each in its own subprocess:

1. ``forward``: the causal LM's forward pass (logits included), nothing else, timed from the
   first batch to the last;
2. ``forward+encode``: the forward pass capturing every read site, all features encoded;
   both with glibc's default malloc, as a plain script runs them, and again with freed memory
   kept for reuse as collect keeps it (`loaders.heap`) and without the KV cache that collect
   does not build: the stricter baseline, since both make the model itself faster too;
3. ``collect``: the ``graphkit collect`` command as a user runs it, timed from process start
   to exit: imports, model and dictionary loading, the streaming pass, unembeds, examples,
   TWERA edges and every file written.

Prints tokens/s and peak RSS of each and collect / forward against both baselines (goal
≥ 0.5). With ``--repeat N`` the five runs are repeated N times in turn and each ratio is taken
within one round, then the median over rounds: on a shared machine one round can land in a busy
minute. The default corpus is the corpus builder's held-out analysis corpus (built into a
temporary directory).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(mode: str, model_name: str, dictionary: str, corpus: Path, kept_heap: bool) -> dict:
    import torch

    from loaders.heap import keep_freed_memory

    if kept_heap:
        keep_freed_memory()
    from loaders.corpus import Corpus, chunks, pack, pad_id
    from loaders.dictionary import load_dictionary
    from loaders.model import HookedModel
    from loaders.stats import StatsConfig

    cfg = StatsConfig()
    model = HookedModel.load(model_name)
    d = load_dictionary(dictionary)
    batches = [
        b
        for c in chunks(Corpus(corpus), model.tokenizer, model.context, cfg.chunk_tokens)
        for b in pack(c.windows, cfg.batch_tokens, pad_id(model.tokenizer))
    ]
    counted = sum(int(b.mask.sum()) for b in batches)
    sites = [(l, d.read_site) for l in d.layers]
    t0 = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            # the stricter baseline runs the model as collect does, without a KV cache
            if mode == "forward":
                model.model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=not kept_heap)
            else:
                store: dict = {k: [] for k in sites}
                with model.hooks(capture=store):
                    model.model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=not kept_heap)
                for l in d.layers:
                    d.encode(l, store[(l, d.read_site)][0])
    return {"tokens": counted, "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dictionary", default="tiny-clt")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the five runs (median ratio)")
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kept-heap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        result = measure(args.mode, args.model, args.dictionary, args.corpus, args.kept_heap)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            from loaders.zoo.corpus import build_corpus

            build_corpus(Path(tmp))
            corpus = Path(tmp) / "heldout.jsonl"
        rounds = [one_round(args, corpus, Path(tmp)) for _ in range(args.repeat)]
    ratios: dict[str, list[float]] = {}
    for k, results in enumerate(rounds, 1):
        if args.repeat > 1:
            print(f"round {k}")
        for mode, r in results.items():
            rss = f", peak RSS {r['peak_rss_mib']:,.0f} MiB" if "peak_rss_mib" in r else ""
            rate = r["tokens"] / r["seconds"]
            print(f"{mode:26s} {r['tokens']:,} tokens in {r['seconds']:.1f} s = {rate:,.0f} tok/s{rss}")
        whole = results["collect (whole process)"]
        for base in ("forward", "forward (kept heap)"):
            fwd = results[base]["tokens"] / results[base]["seconds"]
            ratio = whole["tokens"] / whole["seconds"] / fwd
            ratios.setdefault(base, []).append(ratio)
            print(f"whole-process collect / {base} = {ratio:.2f} (goal ≥ 0.5)")
    if args.repeat > 1:
        for base, r in ratios.items():
            each = ", ".join(f"{x:.2f}" for x in r)
            print(f"median whole-process collect / {base} = {statistics.median(r):.2f} (rounds: {each})")


def one_round(args: argparse.Namespace, corpus: Path, tmp: Path) -> dict[str, dict]:
    """The four baselines, then collect, each in its own subprocess."""
    results = {}
    for kept_heap in (False, True):
        for mode in ("forward", "forward+encode"):
            child = [sys.executable, __file__, "--mode", mode, "--model", args.model]
            child += ["--dictionary", args.dictionary, "--corpus", str(corpus)] + ["--kept-heap"] * kept_heap
            out = subprocess.run(child, capture_output=True, text=True, check=True)
            results[mode + " (kept heap)" * kept_heap] = json.loads(out.stdout.strip().splitlines()[-1])
    graphkit = Path(sys.executable).with_name("graphkit")
    run = tmp / "run"
    shutil.rmtree(run, ignore_errors=True)
    cmd = [str(graphkit), "collect", "--model", args.model, "--dictionary", args.dictionary]
    cmd += ["--corpus", str(corpus), "--out", str(run)]
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    manifest = json.loads((run / "manifest.json").read_text())
    results["collect (whole process)"] = {"tokens": manifest["tokens_seen"], "seconds": seconds}
    results["collect (pass 0)"] = {"tokens": manifest["tokens_seen"], "seconds": manifest["seconds"]["pass-0"]}
    return results


if __name__ == "__main__":
    main()

"""Collect at scale on the synthetic setup: throughput, peak memory and pair-state bytes.

    python benchmarks/synthetic.py --out build/synthetic          # once (≈ 30 s)
    python benchmarks/bench_scale.py [--setup build/synthetic] [--tokens 20000 80000 160000]
        [--budgets 16GB 4GB] [--device cuda --dtype bf16]

For each token count N, each in its own subprocess (so peak RSS is per run):

1. ``forward+encode``: the model over the same windows and batches collect uses (streamed
   chunks, length-bucketed batches of `batch_tokens`), every layer's read site encoded; with
   glibc's default malloc, as a plain script runs it, and with freed memory kept for reuse as
   collect keeps it (`loaders.heap`) and without the KV cache collect does not build, the
   stricter baseline (both speed up the model too);
2. ``collect`` at each memory budget: `loaders.collect.collect` with ``max_tokens=N``, dense
   pair blocks in as many passes as the budget needs: C and I (8 B per pair) when they fit in
   one, else C alone (4 B) and then the I pass for the kept edges ("2 + I").

Prints tokens/s of each, the first pass's streaming throughput over forward+encode, against
both baselines (goal ≥ 0.5;
checkpoint writes and the one-time mapping of the pair blocks' pages are listed apart, and the
ratio with that mapping included is printed too), the
peak RSS and its growth from the smallest to the largest N (goal ≤ 15%), and the bytes of
pair state per pass.

With ``--device cuda`` both run on the GPU (the model in ``--dtype``, the encoders in fp32, as
collect runs them), timed with the device synchronized, and each run also reports its peak GPU
memory; the memory budget is then the GPU's.
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


def forward_encode(setup: Path, tokens: int, kept_heap: bool, device: str, dtype: str) -> dict:
    import torch

    from loaders.heap import keep_freed_memory

    if kept_heap:
        keep_freed_memory()
    from loaders.collect import DTYPES
    from loaders.corpus import Corpus, chunks, pack, pad_id
    from loaders.dictionary import load_dictionary
    from loaders.model import HookedModel
    from loaders.stats import StatsConfig

    cfg = StatsConfig()
    model = HookedModel.load(setup / "model", device=device, dtype=DTYPES[dtype])
    d = load_dictionary(setup / "clt").encoders_to(model.device)
    sites = [(l, d.read_site) for l in d.layers]
    seen = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for chunk in chunks(Corpus(setup / "corpus"), model.tokenizer, model.context, cfg.chunk_tokens):
            for b in pack(chunk.windows, cfg.batch_tokens, pad_id(model.tokenizer)):
                store: dict = {k: [] for k in sites}
                with model.hooks(capture=store):
                    # the stricter baseline runs the model as collect does, without a KV cache
                    model.model.base_model(
                        input_ids=b.input_ids.to(model.device),
                        attention_mask=b.attention_mask.to(model.device),
                        use_cache=not kept_heap,
                    )
                for l in d.layers:
                    d.encode(l, store[(l, d.read_site)][0])
                seen += int(b.mask.sum())
            if seen >= tokens:
                break
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return {"tokens": seen, "seconds": time.perf_counter() - t0} | _gpu_peak(device)


def _gpu_peak(device: str) -> dict:
    import torch

    return {"gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20} if device.startswith("cuda") else {}


def run_collect(setup: Path, tokens: int, budget: str, device: str, dtype: str) -> dict:
    import dataclasses

    from loaders.collect import CollectConfig, collect
    from loaders.config import parse_bytes

    base = CollectConfig()
    cfg = dataclasses.replace(
        base,
        device=device,
        dtype=dtype,
        memory_budget=parse_bytes(budget),
        stats=dataclasses.replace(base.stats, max_tokens=tokens),
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = collect(
            str(setup / "model"), str(setup / "clt"), setup / "corpus", Path(tmp) / "run", cfg, progress=False
        )
        wall = time.perf_counter() - t0
        m = json.loads(run.manifest.read_text())
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        f = pq.read_table(run.features, columns=["layer", "density"])
        l0 = [pc.sum(f.filter(pc.equal(f["layer"], l))["density"]).as_py() for l in sorted(set(f["layer"].to_pylist()))]
    return {
        "tokens": m["tokens_seen"],
        "seconds": wall,
        "pass_seconds": m["seconds"],
        "pairs": m["pairs"],
        "l0": l0,
        "stage_peaks": m.get("peak_rss_mib", {}),
    } | _gpu_peak(device)


def _gpu(r: dict) -> str:
    return f", GPU peak {r['gpu_peak_mib']:,.0f} MiB" if "gpu_peak_mib" in r else ""


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", type=Path, default=Path("build/synthetic"))
    p.add_argument("--tokens", type=int, nargs="+", default=[20_000, 80_000, 160_000])
    p.add_argument("--budgets", nargs="+", default=["16GB", "4GB"])
    p.add_argument("--device", default="cpu", help="cpu or cuda (collect's --device)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="the model's dtype")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        mode, setup, tokens, device, dtype, *rest = a.child
        result = (
            forward_encode(Path(setup), int(tokens), mode == "fe-kept", device, dtype)
            if mode.startswith("fe")
            else run_collect(Path(setup), int(tokens), rest[0], device, dtype)
        )
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    rows = []
    for n in a.tokens:
        on = [a.device, a.dtype]
        plain = child(["fe", str(a.setup), str(n), *on])
        fe = child(["fe-kept", str(a.setup), str(n), *on])
        plain_rate, fe_rate = (r["tokens"] / r["seconds"] for r in (plain, fe))
        for name, r in (("plain", plain), ("kept heap", fe)):
            print(
                f"{n:>7} forward+encode ({name}): {r['tokens']:,} tokens, {r['tokens'] / r['seconds']:,.0f} tok/s, "
                f"{r['peak_rss_mib']:,.0f} MiB{_gpu(r)}",
                flush=True,
            )
        for budget in a.budgets:
            c = child(["collect", str(a.setup), str(n), *on, budget])
            passes = c["pairs"]["passes"]
            if c["pairs"].get("i_pass"):  # blocks of C alone, then I for the kept edges
                passes = f"{passes - 1} + I"
            secs = c["pass_seconds"]
            alloc = secs.get("allocate-0", 0.0)  # mapping the blocks' pages: the state's size, not tokens
            first = c["tokens"] / (secs["pass-0"] - secs["checkpoints-0"] - alloc)  # streaming rate
            with_alloc = c["tokens"] / (secs["pass-0"] - secs["checkpoints-0"])
            all_passes = sum(v for k, v in secs.items() if k.startswith("pass-"))
            saving = sum(v for k, v in secs.items() if k.startswith("checkpoints-"))
            edges = sum(v for k, v in secs.items() if k.startswith("edges-"))
            row = {
                "tokens": c["tokens"],
                "budget": budget,
                "passes": passes,
                "pass0_tok_s": first,
                "ratio": first / fe_rate,
                "ratio_plain": first / plain_rate,
                "ratio_with_alloc": with_alloc / fe_rate,
                "alloc_s": alloc,
                "all_passes_s": all_passes,
                "checkpoint_s": saving,
                "edges_s": edges,
                "i_pass_s": secs.get("pass-i", 0.0),
                "wall_s": c["seconds"],
                "peak_rss_mib": c["peak_rss_mib"],
                "pair_bytes": max(c["pairs"]["bytes_per_pass"]),
                "fe_tok_s": fe_rate,
                "plain_tok_s": plain_rate,
            }
            row["l0"] = sum(c["l0"]) / len(c["l0"])
            rows.append(row)
            print(
                f"{n:>7} collect {budget:>5}: {passes} pass(es), pass 0 {first:,.0f} tok/s = {first / fe_rate:.2f} × "
                f"forward+encode ({with_alloc / fe_rate:.2f} with the blocks' allocation, {alloc:.1f} s; "
                f"{first / plain_rate:.2f} × plain forward+encode); "
                f"passes {all_passes:.0f} s (checkpoints {saving:.0f} s; the I pass {row['i_pass_s']:.0f} s), "
                f"edges {edges:.0f} s, "
                f"whole {c['seconds']:.0f} s; "
                f"peak RSS {c['peak_rss_mib']:,.0f} MiB{_gpu(c)}; pair state {row['pair_bytes'] / 2**30:.2f} GiB; "
                f"mean L0 {row['l0']:.0f} per layer",
                flush=True,
            )
            # the manifest's peak after each stage (it only rises): where the peak was reached
            stages = " → ".join(f"{k} {v:,.0f}" for k, v in c["stage_peaks"].items() if v is not None)
            print(f"{'':>7} peak RSS MiB after each stage: {stages}", flush=True)
    print(
        "\n| tokens | budget | passes | pass-0 tok/s | forward+encode tok/s | ratio | ratio with allocation "
        "| plain forward+encode tok/s | ratio to plain "
        "| allocation s | all passes s | I pass s | checkpoints s | edges s | peak RSS MiB | pair state GiB | mean L0 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['tokens']:,} | {r['budget']} | {r['passes']} | {r['pass0_tok_s']:,.0f} | {r['fe_tok_s']:,.0f} | "
            f"**{r['ratio']:.2f}** | {r['ratio_with_alloc']:.2f} | {r['plain_tok_s']:,.0f} | {r['ratio_plain']:.2f} | "
            f"{r['alloc_s']:.1f} | "
            f"{r['all_passes_s']:.0f} | {r['i_pass_s']:.0f} | {r['checkpoint_s']:.0f} | {r['edges_s']:.0f} | "
            f"{r['peak_rss_mib']:,.0f} | {r['pair_bytes'] / 2**30:.2f} | {r['l0']:.0f} |"
        )
    for budget in a.budgets:
        mine = [r for r in rows if r["budget"] == budget]
        if len(mine) > 1:
            growth = mine[-1]["peak_rss_mib"] / mine[0]["peak_rss_mib"] - 1
            print(
                f"peak RSS growth {mine[0]['tokens']:,} → {mine[-1]['tokens']:,} tokens at {budget}: **{growth:+.1%}**"
            )


if __name__ == "__main__":
    main()

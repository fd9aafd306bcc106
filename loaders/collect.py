"""``graphkit collect``: model + dictionary + corpus → a run directory.

Stages meet at files (STYLE.md item 9). Each stage is keyed by its own inputs (`_stage_keys`);
a stage whose output exists under the same key is skipped, so changing an option reruns only
the stages it reaches (``top_k`` re-prunes the kept candidates when it shrinks and reruns the
pair passes, not the statistics, when it grows; ``n_unembeds`` rewrites features.parquet). A
directory holding a run of another model, dictionary or corpus is refused without
``overwrite``. A pass resumes from its checkpoint:

1. passes over the corpus (`loaders.stats`). The first computes the per-feature statistics
   (``stats/``) and the first group of pair blocks; each further pass accumulates the next
   group (`loaders.pairs.BlockPlan`, sized by ``memory_budget``) over the same windows (from
   the first pass's non-zeros kept on disk, ``pairs/nonzeros-*``, when ``replay``). After
   each pass its blocks are reduced to top-k edge candidates (``pairs/candidates-P``) and
   freed, so memory holds one group at a time. When C and I do not fit one pass, the blocks
   hold C alone (`BlockPlan.i_pass`) and one more pass sums I for the kept edges only
   (``pairs/pass-i``); ERA comes from it. ``exact_pairs`` keeps every co-active pair instead, in one pass;
2. ``features.parquet``: per feature layer, index, count, density, mean, max, histogram,
   logit-lens top/bottom tokens and values;
3. ``examples.parquet``: per feature its top activating examples (token ids, tokens,
   per-token activations, decoded window);
4. ``connections.parquet``: kept edges (`loaders.connections.edges`);
5. ``manifest.json``: model, dictionary, corpus path and hash, the content hashes of model and
   dictionary, documents, windows and tokens seen, the block plan (blocks, passes, bytes, whether
   an I pass follows) and the pairs that I pass summed (``kept_pairs``),
   options, versions, and the SHA-256 of each output file (``outputs``: `graphkit load`
   checks that the files are the ones this manifest describes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from loaders.config import CollectConfig
from loaders.connections import Candidates, candidates, edge_table, residual_writes, with_era
from loaders.corpus import Corpus, CorpusError, Cursor, split_key
from loaders.dictionary import Dictionary, load_dictionary, resolve_dictionary
from loaders.errors import GraphkitError
from loaders.files import content_hash, file_hash
from loaders.heap import keep_freed_memory, peak_rss_mib, release_freed_memory
from loaders.logit_lens import top_unembeds
from loaders.model import HookedModel, decode_many, resolve_model, token_strings
from loaders.pairs import BlockPlan, KeptPairs, default_budget
from loaders.stats import HIST_EDGES, FeatureStats, PassSpec, PassState, Replay, stream_pass

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The model dtypes of `CollectConfig.dtype`."""


@dataclass(frozen=True)
class RunFiles:
    """Paths of a run directory."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    def pass_state(self, p: int | str) -> Path:
        """Pass p's checkpoint; ``pass-i``, the I pass's, is kept as its result."""
        return self.root / "pairs" / f"pass-{p}"

    def nonzeros(self, key: str) -> Path:
        """The first pass's chunks of non-zeros (`loaders.stats.Replay`), for statistics key `key`."""
        return self.root / "pairs" / f"nonzeros-{key}"

    def candidates(self, p: int) -> Path:
        return self.root / "pairs" / f"candidates-{p}.safetensors"

    @property
    def features(self) -> Path:
        return self.root / "features.parquet"

    @property
    def examples(self) -> Path:
        return self.root / "examples.parquet"

    @property
    def connections(self) -> Path:
        return self.root / "connections.parquet"


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _write_json(data: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class Progress:
    """tokens/s and ETA (by corpus bytes) over the passes of a run."""

    def __init__(self, passes: int, enabled: bool):
        self.passes = passes
        self.bar = tqdm(total=1000 * passes, unit="‰", disable=not enabled, desc="collect", bar_format=_BAR)
        self.start, self.tokens, self.pass_ = time.monotonic(), 0, 0

    def __call__(self, n: int, fraction: float) -> None:
        """`n` more tokens; `fraction` of this pass's corpus done."""
        self.tokens += n
        done = 1000 * self.pass_ + int(1000 * fraction)
        self.bar.update(done - self.bar.n)
        rate = self.tokens / max(time.monotonic() - self.start, 1e-9)
        self.bar.set_postfix_str(f"pass {self.pass_ + 1}/{self.passes}, {rate:,.0f} tok/s", refresh=True)

    def next_pass(self) -> None:
        self.pass_ += 1


_BAR = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"


def collect(
    model_name: str,
    dictionary_name: str,
    corpus: str | Path,
    out: Path,
    cfg: CollectConfig = CollectConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> RunFiles:
    """Run every stage into `out` (module docstring) and return its paths."""
    keep_freed_memory()  # the pass's batches and the edges stage's chunks reuse freed memory (a Ray driver too)
    run = RunFiles(Path(out))
    source = Corpus(corpus)
    if next(source.records(), None) is None:
        raise CorpusError(f"{corpus}: the corpus holds no documents (empty files or only blank lines)")
    manifest = json.loads(run.manifest.read_text()) if run.manifest.exists() else None
    known = (manifest or {}).get("content_files", {})
    model_hash, known_model = content_hash(Path(resolve_model(model_name)), known.get("model"))
    dict_hash, known_dict = content_hash(resolve_dictionary(dictionary_name), known.get("dictionary"))
    identity = {
        "model": model_name,
        "dictionary": dictionary_name,
        "corpus": source.fingerprint(),
        "content": {"model": model_hash, "dictionary": dict_hash},  # a file fixed in place is another run
    }
    inputs = identity | {"options": asdict(cfg) | {"device": None, "ray": None, "workers": None, "replay": None}}
    if manifest is not None and "identity_key" not in manifest:  # written before stage keys
        manifest["identity_key"] = _hash({k: manifest.get(k) for k in identity})
    if manifest is not None and manifest.get("identity_key") != _hash(identity):
        if not overwrite:
            raise RunExistsError(
                f"{run.root} holds a run of another model, dictionary or corpus (or of their earlier contents); "
                "pass --overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(run.root)
        manifest = None
    run.root.mkdir(parents=True, exist_ok=True)
    if manifest is None:
        manifest = {"identity_key": _hash(identity), "stages": {}}
    manifest |= {"inputs_key": _hash(inputs), **inputs}
    manifest["content_files"] = {"model": known_model, "dictionary": known_dict}
    _write_json(manifest, run.manifest)

    model = HookedModel.load(model_name, device=cfg.device, dtype=DTYPES[cfg.dtype])
    d = load_dictionary(dictionary_name).encoders_to(model.device)
    d.check_model(model.d_model, model.n_layers, where=dictionary_name)
    L, F = len(d.layers), d.n_features
    budget = cfg.memory_budget or default_budget(cfg.device)
    plan = None if cfg.exact_pairs else BlockPlan.make(L, F, budget)
    passes = 1 if plan is None else max(len(plan.groups), 1)  # block passes; the I pass comes after them
    i_pass = plan is not None and plan.i_pass
    manifest["pairs"] = {"exact": True} if plan is None else plan.describe() | {"budget": budget}
    if not i_pass:  # an I pass of an earlier plan is of no use to this one
        manifest.pop("kept_pairs", None)
        shutil.rmtree(run.pass_state("i"), ignore_errors=True)

    keys = _stage_keys(identity, cfg, manifest["pairs"], passes, manifest.get("candidates_top_k"))

    def done(stage: str, path: Path) -> bool:
        return manifest["stages"].get(stage) == keys[stage.split("-")[0]] and path.exists()

    def mark(stage: str, output: Path | None = None) -> None:
        """`stage` done under its key; an output file's SHA-256 recorded for `graphkit load`."""
        manifest["stages"][stage] = keys[stage.split("-")[0]]
        if output is not None:
            manifest.setdefault("outputs", {})[output.name] = file_hash(output)
        _write_json(manifest, run.manifest)

    def record_peak(stage: str) -> None:
        """The process's peak RSS so far, after `stage`: it shows which stage reached the peak."""
        manifest.setdefault("peak_rss_mib", {})[stage] = peak_rss_mib()

    stats_done = done("stats", run.stats)
    if not stats_done:  # statistics to redo: nothing downstream of them stands
        manifest["stages"] = {}

    def begin(stage: str, checkpoint: Path) -> None:
        """Resume `stage` from its checkpoint only if the checkpoint was made with its key."""
        started = manifest.setdefault("started", {})
        if started.get(stage) != keys[stage.split("-")[0]]:
            shutil.rmtree(checkpoint, ignore_errors=True)
            started[stage] = keys[stage.split("-")[0]]
            _write_json(manifest, run.manifest)

    bar = Progress(passes + i_pass, progress)
    names = (model_name, dictionary_name)
    (run.root / "pairs").mkdir(exist_ok=True)
    # the first pass's non-zeros, for the passes after it to read (not on Ray: workers may share no disk)
    replay = Replay(run.nonzeros(keys["stats"])) if cfg.replay and cfg.ray is None and passes + i_pass > 1 else None
    for stale in run.root.glob("pairs/nonzeros-*"):
        if replay is None or stale != replay.root:
            shutil.rmtree(stale, ignore_errors=True)
    for p in range(passes):
        if not done(f"pairs-{p}", run.candidates(p)):
            t0 = time.perf_counter()
            with_stats = p == 0 and not stats_done
            begin("stats" if with_stats else f"pairs-{p}", run.stats if with_stats else run.pass_state(p))
            spec = PassSpec(
                L,
                F,
                cfg.stats.top_k,
                cfg.stats.window,
                stats=with_stats,
                exact=plan is None,
                blocks=() if plan is None or not plan.groups else plan.groups[p],
                with_i=not i_pass,
            )
            path = run.stats if with_stats else run.pass_state(p)
            state = _pass(spec, path, model, d, source, cfg, manifest, bar, names, replay)
            stats = state.stats if with_stats else FeatureStats.load(run.stats)
            assert stats is not None
            record_peak(f"pass-{p}")
            release_freed_memory()  # the pass's batch temporaries, not needed by the edges stage
            t1 = time.perf_counter()
            cands = Candidates.empty() if state.pairs is None else candidates(model, d, stats, state.pairs, cfg.top_k)
            cands.save(run.candidates(p))
            record_peak(f"edges-{p}")
            timings = manifest.setdefault("seconds", {})
            timings |= {
                f"pass-{p}": round(t1 - t0, 3),
                f"checkpoints-{p}": round(state.save_seconds, 3),
                f"allocate-{p}": round(getattr(state.pairs, "alloc_seconds", 0.0), 3),
                f"edges-{p}": round(time.perf_counter() - t1, 3),
            }
            manifest["candidates_top_k"] = cfg.top_k
            mark(f"pairs-{p}")
            if with_stats:  # keep the statistics, drop the pass's pair sums
                PassState(stats, None, state.cursor, done=True).save(run.stats)
                mark("stats")
            else:
                shutil.rmtree(run.pass_state(p), ignore_errors=True)
            del state, cands  # free this group's blocks before the next pass allocates its own
        bar.next_pass()
    if i_pass and not done("pairs-i", run.pass_state("i")):
        # ERA's I for the kept edges only, at the k the candidates were pruned to (a smaller
        # top_k later re-prunes to a subset of these pairs)
        t0 = time.perf_counter()
        kept = _all_candidates(run, passes).prune(manifest["candidates_top_k"])
        begin("pairs-i", run.pass_state("i"))
        spec = PassSpec(L, F, cfg.stats.top_k, cfg.stats.window, stats=False, kept=(kept.src, kept.tgt))
        state = _pass(spec, run.pass_state("i"), model, d, source, cfg, manifest, bar, names, replay)
        timings = manifest.setdefault("seconds", {})
        timings |= {"pass-i": round(time.perf_counter() - t0, 3), "checkpoints-i": round(state.save_seconds, 3)}
        manifest["kept_pairs"] = len(kept)  # outside "pairs", which keys the stages
        record_peak("pass-i")
        mark("pairs-i")
        del state
    if replay is not None:  # every pass is done: the kept chunks are of no more use
        replay.drop()
    bar.bar.close()
    stats = FeatureStats.load(run.stats)

    vocab = token_strings(model)
    if not done("features", run.features):
        _write_parquet(_features_table(model, d, stats, vocab, cfg.n_unembeds), run.features)
        mark("features", run.features)
    if not done("examples", run.examples):
        _write_parquet(_examples_table(d.layers, stats, vocab, model.tokenizer), run.examples)
        mark("examples", run.examples)
    if not done("connections", run.connections):
        cands = _all_candidates(run, passes).prune(cfg.top_k)
        if i_pass:
            kept_sums = PassState.load(run.pass_state("i")).pairs
            assert isinstance(kept_sums, KeptPairs)
            cands = with_era(cands, kept_sums, stats.tokens)
        _write_parquet(pa.table(edge_table(cands, d.layers, F)), run.connections)
        record_peak("files")
        mark("connections", run.connections)
    return run


def _all_candidates(run: RunFiles, passes: int) -> Candidates:
    """The candidates of every block pass, together."""
    return Candidates.concat_all([Candidates.load(run.candidates(p)) for p in range(passes)])


class RunExistsError(GraphkitError, FileExistsError):
    """The output directory holds a run of other inputs."""


def _hash(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stage_keys(
    identity: dict, cfg: CollectConfig, plan: dict, passes: int, candidates_top_k: int | None
) -> dict[str, str]:
    """Each stage's key: a hash of exactly the inputs that change its output.

    The pair passes keep top-k candidates; any smaller top_k is re-pruned from them exactly
    (`Candidates.prune` under one total order), so they rerun only when top_k grows.
    """
    stats = _hash([identity, asdict(cfg.stats), cfg.dtype])
    k = cfg.top_k if candidates_top_k is None or candidates_top_k < cfg.top_k else candidates_top_k
    pairs = _hash([stats, cfg.exact_pairs, plan, passes, k])
    return {
        "stats": stats,
        "pairs": pairs,
        "features": _hash([stats, cfg.n_unembeds]),
        "examples": stats,
        "connections": _hash([pairs, cfg.top_k]),
    }


def _pass(
    spec: PassSpec,
    path: Path,
    model: HookedModel,
    d: Dictionary,
    source: Corpus,
    cfg: CollectConfig,
    manifest: dict,
    bar: Progress,
    names: tuple[str, str],
    replay: Replay | None = None,
) -> PassState:
    """One pass over the corpus, as `spec` says, checkpointed in `path` (and resumed from it).

    The pass with statistics (the first, unless they are kept from before) sets where the
    corpus ends (``max_tokens``) and records what it saw in the manifest; the others stop
    where it stopped."""
    dev = str(model.device)
    stop_at = None if spec.stats else Cursor(*manifest["end_cursor"])
    if cfg.ray is not None:
        from loaders import distributed

        if cfg.stats.max_tokens is not None:
            raise ValueError("--max-tokens stops a single stream; with --ray choose the shards instead")
        distributed.init(cfg.ray)
        worker = distributed.WorkerSpec(*names, source.spec, cfg.stats, cfg.dtype)
        workers = cfg.workers or distributed.default_workers()
        state = distributed.distributed_pass(worker, spec, workers, path, stop_at, bar)
    else:
        state = PassState.load(path, dev) if PassState.exists(path) else spec.fresh(dev)
        if state.shards_done is not None:
            raise ValueError(f"checkpoint {path} was written by a --ray run; resume it with --ray or delete it")
        s = state.stats
        if (s is not None) != spec.stats or (s is not None and (s.k, s.window) != (spec.top_k, spec.window)):
            raise ValueError(f"checkpoint {path} was made with other options; delete it to start over")

        def report(n: int, cursor: Cursor) -> None:
            bar(n, source.fraction(cursor))

        state = stream_pass(model, d, source, cfg.stats, state, path, stop_at=stop_at, progress=report, replay=replay)
    stats = state.stats
    if stats is None:
        return state
    c = state.cursor
    manifest |= {
        "tokens_seen": stats.tokens,
        "documents_seen": stats.documents,
        "windows_seen": stats.windows,
        "context": cfg.stats.context or model.context,
        "end_cursor": list(dataclasses.astuple(c)),
        "versions": {name: version(name) for name in ("graphkit", "torch", "transformers")},
        "dictionary_kind": d.kind,
        "read_site": d.read_site,
        "write_site": d.write_site,
    }
    return state


def _features_table(model: HookedModel, d, stats: FeatureStats, vocab: list[str], n: int) -> pa.Table:
    F = d.n_features
    writes = residual_writes(model, d, stats.sigma_post_mean)
    special = frozenset(model.tokenizer.all_special_ids)
    u = top_unembeds(model, d, stats.sigma_final_mean, k=n, token_strings=vocab, writes=writes, special=special)
    layers = np.repeat(np.asarray(d.layers, np.int64), F)
    names = np.asarray(vocab, dtype=object)
    assert u.words is not None and u.top_word is not None and u.top_word_z is not None and u.word_gap is not None
    return pa.table(
        {
            "layer": layers,
            "index": np.tile(np.arange(F, dtype=np.int64), len(d.layers)),
            "count": stats.count,
            "density": stats.density,
            "mean": stats.mean,
            "max": stats.max.astype(np.float64),
            "hist": pa.array(list(stats.hist), type=pa.list_(pa.int64())),
            "top_token_ids": pa.array(list(u.top_ids.astype(np.int64)), type=pa.list_(pa.int64())),
            "top_tokens": pa.array([list(names[r]) for r in u.top_ids], type=pa.list_(pa.string())),
            "top_values": pa.array(list(u.top_values.astype(np.float64)), type=pa.list_(pa.float64())),
            "bottom_token_ids": pa.array(list(u.bottom_ids.astype(np.int64)), type=pa.list_(pa.int64())),
            "bottom_tokens": pa.array([list(names[r]) for r in u.bottom_ids], type=pa.list_(pa.string())),
            "bottom_values": pa.array(list(u.bottom_values.astype(np.float64)), type=pa.list_(pa.float64())),
            "top_word": u.words[u.top_word].astype(str),
            "top_word_z": u.top_word_z.astype(np.float64),
            "word_gap": u.word_gap.astype(np.float64),
        }
    ).replace_schema_metadata({"hist_edges": json.dumps(HIST_EDGES.tolist())})


def _examples_table(layers: tuple[int, ...], stats: FeatureStats, vocab: list[str], tokenizer) -> pa.Table:
    F = stats.n_features
    slot, g = np.nonzero(np.isfinite(stats.top_val))
    order = np.lexsort((slot, g))
    slot, g = slot[order], g[order]
    shard, record, window = split_key(stats.top_key[slot, g])
    toks = stats.top_tok[slot, g]  # (example, 2·window + 1); −1 outside the document
    valid = toks >= 0
    bounds = np.r_[0, np.cumsum(valid.sum(1))].astype(np.int32)  # example e: entries bounds[e] … bounds[e + 1]

    def lists(values: np.ndarray) -> pa.ListArray:
        """One list per example: its window's valid entries, in order."""
        return pa.ListArray.from_arrays(pa.array(bounds), pa.array(values))

    ids = toks[valid].astype(np.int64)
    flat = ids.tolist()
    return pa.table(
        {
            "layer": np.asarray(layers, np.int64)[g // F],
            "index": (g % F).astype(np.int64),
            "rank": slot.astype(np.int64),
            "activation": stats.top_val[slot, g].astype(np.float64),
            "shard": shard,
            "record": record,
            "window": window,
            "position": stats.top_pos[slot, g],
            "center": (stats.window - (~valid[:, : stats.window]).sum(1)).astype(np.int64),
            "token_ids": lists(ids),
            "tokens": lists(np.asarray(vocab, dtype=object)[ids]),
            "activations": lists(stats.top_act[slot, g][valid].astype(np.float64)),
            "text": decode_many(tokenizer, [flat[a:b] for a, b in itertools.pairwise(bounds.tolist())]),
        }
    )

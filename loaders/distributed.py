"""A pass over the corpus on a Ray cluster: one worker per GPU (or CPU slot), shards as units.

1. The driver starts `workers` Ray actors; each loads the model and the dictionary's
   encoders once, on its own device.
2. Each corpus shard is a unit of work. A free worker streams its shard with
   `loaders.stats.stream_pass` (the same code as in process) into a fresh state made from
   the pass's `PassSpec` on its own device, and returns it. The driver merges states as
   they come (`PassState.merge`: exact for counts, maxima and top examples; to float
   rounding for sums) and checkpoints the merged state with the shards done, so an
   interrupted run resumes at the shards still missing.
3. A unit whose worker dies or raises is retried on a fresh worker (`attempts` in all).
   Workers report tokens after every chunk; the driver shows tokens/s and an ETA by corpus
   bytes across all of them.

The result equals the in-process pass over the same shards, but for the order in which sums
are added. Ray is an optional extra: ``pip install 'graphkit[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loaders.corpus import Corpus, Cursor
from loaders.stats import PassSpec, PassState, StatsConfig

FAULT_ENV = "GRAPHKIT_FAULT_SHARD"
"""Fault injection for tests: 'N:DIR' kills the worker that first starts shard N (once; marked in DIR)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What each worker loads: the driver's model, dictionary, corpus and pass options."""

    model: str
    dictionary: str
    corpus: str
    stats: StatsConfig
    dtype: str


def _ray():
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("--ray needs Ray: pip install 'graphkit[ray]'") from e
    return ray


def init(address: str, num_cpus: int | None = None) -> None:
    """Connect to a cluster ('auto' or an address) or start a local one ('local')."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def default_workers() -> int:
    """One per GPU of the cluster, else one per CPU."""
    res = _ray().cluster_resources()
    return max(int(res.get("GPU", 0)) or int(res.get("CPU", 1)), 1)


class _Worker:
    """A model and a dictionary, loaded once; streams one shard per call."""

    def __init__(self, spec: WorkerSpec, use_gpu: bool, threads: int):
        import numba
        import torch

        from loaders.collect import DTYPES
        from loaders.dictionary import load_dictionary
        from loaders.model import HookedModel

        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        self.spec = spec
        self.model = HookedModel.load(spec.model, device="cuda" if use_gpu else "cpu", dtype=DTYPES[spec.dtype])
        self.d = load_dictionary(spec.dictionary).encoders_to(self.model.device)
        self.corpus = Corpus(spec.corpus)

    def run(self, shard: int, pass_spec: PassSpec, stop_at: Cursor | None, board) -> PassState:
        from loaders.pairs import DenseBlocks, KeptPairs
        from loaders.stats import stream_pass

        _maybe_fail(shard)
        state = pass_spec.fresh(str(self.model.device))
        state.cursor = Cursor(shard)

        def report(n: int, cursor: Cursor) -> None:
            board.report.remote(shard, n, self.corpus.shard_fraction(cursor))

        state = stream_pass(self.model, self.d, self.corpus, self.spec.stats, state, None, shard + 1, stop_at, report)
        if isinstance(state.pairs, DenseBlocks | KeptPairs):
            state.pairs.cpu()
        return state


def _maybe_fail(shard: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    n, marks = spec.split(":", 1)
    mark = Path(marks) / f"failed-{shard}"
    if int(n) == shard and not mark.exists():
        mark.touch()
        os._exit(1)  # the worker process dies mid-unit, as on a lost node


class _Board:
    """Tokens and per-shard progress reported by the workers, read by the driver."""

    def __init__(self) -> None:
        self.tokens = 0
        self.fraction: dict[int, float] = {}

    def report(self, shard: int, n: int, fraction: float) -> None:
        self.tokens += n
        self.fraction[shard] = fraction

    def read(self) -> tuple[int, dict[int, float]]:
        return self.tokens, dict(self.fraction)


def distributed_pass(
    worker: WorkerSpec,
    spec: PassSpec,
    workers: int,
    checkpoint: Path,
    stop_at: Cursor | None = None,
    progress: Callable[[int, float], None] | None = None,
    attempts: int = 3,
) -> PassState:
    """One pass over every shard (up to `stop_at`) on `workers` Ray actors; the merged state."""
    ray = _ray()
    corpus = Corpus(worker.corpus)
    last = len(corpus.shards) if stop_at is None else stop_at.shard + (stop_at != Cursor(stop_at.shard))
    if PassState.exists(checkpoint):
        merged = PassState.load(checkpoint)
        if merged.shards_done is None:
            raise ValueError(f"checkpoint {checkpoint} was written in process; resume it without --ray or delete it")
    else:
        merged = spec.fresh()
        merged.shards_done = []
    done = set(merged.shards_done or [])
    queue = [s for s in range(last) if s not in done]
    gpus = float(ray.cluster_resources().get("GPU", 0))
    use_gpu = gpus > 0
    threads = 1 if use_gpu else max(int(ray.cluster_resources().get("CPU", 1)) // max(workers, 1), 1)
    Actor = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=1 if use_gpu else threads)(_Worker)
    board = ray.remote(num_cpus=0)(_Board).remote()
    actors = [Actor.remote(worker, use_gpu, threads) for _ in range(min(workers, len(queue)))]
    tries = dict.fromkeys(queue, 0)
    pending: dict = {}  # object ref → (shard, actor)
    spec_ref = ray.put(spec)  # once, not per unit: an I pass's spec holds its kept pairs

    def submit(shard: int, actor) -> None:
        tries[shard] += 1
        stop = stop_at if stop_at is not None and shard == stop_at.shard else None
        pending[actor.run.remote(shard, spec_ref, stop, board)] = (shard, actor)

    for actor in actors:
        submit(queue.pop(0), actor)
    seen = 0
    total = max(sum(corpus.sizes[:last]), 1)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if progress is not None:
                tokens, fractions = ray.get(board.read.remote())
                share = sum(corpus.sizes[s] * (1.0 if s in done else fractions.get(s, 0.0)) for s in range(last))
                progress(tokens - seen, share / total)
                seen = tokens
            for ref in ready:
                shard, actor = pending.pop(ref)
                try:
                    state = ray.get(ref)
                except ray.exceptions.RayError as e:
                    if tries[shard] >= attempts:
                        raise RuntimeError(f"shard {corpus.shards[shard]} failed {attempts} times: {e}") from e
                    ray.kill(actor)
                    actors = [a for a in actors if a is not actor]
                    actor = Actor.remote(worker, use_gpu, threads)
                    actors.append(actor)
                    submit(shard, actor)
                    continue
                merged.merge(state)
                done.add(shard)
                merged.shards_done = sorted(done)
                merged.save(checkpoint)
                if queue:
                    submit(queue.pop(0), actor)
    finally:
        for actor in actors:
            ray.kill(actor)
        ray.kill(board)
    merged.done = True
    merged.cursor = stop_at or Cursor(len(corpus.shards))
    merged.save(checkpoint)
    return merged

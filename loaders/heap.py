"""Keep freed tensor memory in the process for the next batch (glibc's malloc).

A pass makes the same large temporaries every batch: the read sites, the dictionary's
(batch, pos, feature) pre-activations (and on a GPU their support mask), the model's own
activations. glibc serves a block above its mmap threshold (dynamic, at most 32 MiB on 64-bit)
with a fresh mapping and unmaps it on free, and it trims the heap's top above the trim
threshold. So every batch faulted in and zeroed its temporaries anew: a 128 MiB encode of
the synthetic CLT's shape took 119 ms instead of 82–97 (a throwaway timing).
`benchmarks/bench_scale.py` and `benchmarks/bench_collect.py` time forward + encode both ways
(docs/benchmarks.md).

`keep_freed_memory` raises both thresholds (`mallopt`), so blocks up to `MMAP_THRESHOLD` come
from the heap and freed ones are reused (tests/test_heap.py: a freed 64 MiB block serves the
next without a page fault). torch's own allocations of 64 MiB and more were reused in some
repeats and not in others of a throwaway check; the benchmarks measure the net effect. The
live set is the same each batch, so peak memory does not grow with the corpus; it is higher
by what the heap cannot give back under live arrays (+4–13% on the synthetic CLT, reached in
the edges stage, which the setting makes 42% faster: docs/benchmarks.md). Between stages
whose temporaries differ (a pass, then its edges), `release_freed_memory` hands the free heap
back, so the edges stage does not run on top of the pass's freed blocks (1 GB there).
Larger blocks, the pair sums among them, are mapped as before. `loaders.stats.stream_pass`
and `loaders.collect.collect` call these. Elsewhere than glibc (macOS, musl) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

MMAP_THRESHOLD = 1 << 30
"""Blocks up to 1 GiB come from the heap: a batch of 4,096 tokens makes (4,096 × features)
float32 temporaries of 256 MiB per layer for Gemma-2-2B's CLT (16,384 features a layer) and
512 MiB for Llama-3.2-1B's (32,768)."""

TRIM_THRESHOLD = 2**31 - 1
"""The heap's free top is returned to the system only above 2 GiB (mallopt takes an int)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); False where there is no glibc."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> None:
    """Return the heap's free memory to the system (glibc's ``malloc_trim``); nothing elsewhere."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
        trim(0)


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far in MiB (Linux's VmHWM), or None elsewhere.
    It rises (but for the kernel's lag in counting each thread's pages, a few hundred KiB), so
    reading it after each stage shows which stage reached the peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None

"""`loaders.heap`: after `keep_freed_memory`, a freed large block's memory serves the next one;
after `release_freed_memory`, it is the system's again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import ctypes, resource
    from loaders.heap import keep_freed_memory, release_freed_memory

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def block():
        # 64 MiB written and freed, as a batch's temporary is
        p = libc.malloc(1 << 26)
        ctypes.memset(p, 1, 1 << 26)
        libc.free(p)

    def faults_of_second_allocation():
        block()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block()  # the same size again
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    def faults_after_release():
        block()
        release_freed_memory()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    plain = faults_of_second_allocation()
    kept = keep_freed_memory()
    print(plain, kept, faults_of_second_allocation(), faults_after_release())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_until_released():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    plain, kept, faults, released = int(out[0]), out[1] == "True", int(out[2]), int(out[3])
    pages = (1 << 26) // 4096
    assert plain >= pages // 2, "without the setting a 64 MiB block is mapped afresh (glibc's default)"
    assert kept
    assert faults < pages // 20, f"{faults} page faults: the freed block was not reused"
    assert released >= pages // 2, "after release_freed_memory the block is the system's again"

"""Writing run files: safetensors without a copy in memory, and atomic replacement.

`save_arrays` writes the safetensors format (an 8-byte little-endian header length, a JSON
header of dtype, shape and byte offsets per tensor, then the raw bytes) straight from each
array's buffer. The `safetensors` package's writer first copies every tensor into one bytes
object, which doubles peak memory for the dense pair blocks (gigabytes). Files it writes
read back with `safetensors.numpy.load_file` and any other safetensors reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

_DTYPES = {
    np.dtype(np.float64): "F64",
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
    np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
}


def save_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write `arrays` as one safetensors file, atomically (temporary file, then rename)."""
    header: dict[str, dict] = {}
    offset = 0
    for name, a in arrays.items():
        if a.dtype not in _DTYPES:
            raise TypeError(f"save_arrays: {name} has dtype {a.dtype}, not one safetensors stores here")
        header[name] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays.values():
            # a strided view (C of C and I side by side) is copied one slice at a time, not whole
            for part in [a] if a.flags.c_contiguous or a.ndim < 2 else a:
                np.ascontiguousarray(part).tofile(f)
    os.replace(tmp, path)


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 4 MB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def content_hash(path: Path, known: dict[str, list] | None = None) -> tuple[str, dict[str, list]]:
    """SHA-256 over every file under `path` (relative name and content), so a run is keyed by
    what a model or dictionary *is*, not where it lives: fixing a file in place changes it.

    `known` maps file → [size, mtime_ns, sha256] from an earlier call (a run's manifest); a
    file whose size and mtime are unchanged is not read again (a 53 GB CLT is hashed once).
    Returns the digest and the updated `known`.
    """
    root = Path(path)
    files = (
        sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.is_dir() else [root]
    )
    known = dict(known or {})
    total = hashlib.sha256()
    for f in files:
        name = str(f.relative_to(root)) if root.is_dir() else f.name
        st = f.stat()
        cached = known.get(name)
        if cached is None or cached[:2] != [st.st_size, st.st_mtime_ns]:
            known[name] = [st.st_size, st.st_mtime_ns, file_hash(f)]
        total.update(name.encode() + b"\0" + known[name][2].encode())
    return total.hexdigest(), known

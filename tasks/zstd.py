"""zstd contexts, one pair per thread: python-zstandard's compressor and decompressor objects
are not thread-safe (one shared decompressor used from 16 threads crashed the process with a
segmentation fault in most runs), and a web server shares one producer among its threads."""

from __future__ import annotations

import threading

import zstandard

LEVEL = 1  # vector bytes gain little from harder levels; speed matters more
_local = threading.local()


def compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor."""
    found: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if found is None:
        found = _local.compressor = zstandard.ZstdCompressor(level=LEVEL)
    return found


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor."""
    found: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if found is None:
        found = _local.decompressor = zstandard.ZstdDecompressor()
    return found

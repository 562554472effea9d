"""The vector codecs from many threads at once, as a threaded web server uses one producer.

One zstd context shared by every thread crashed the process (segmentation fault) or returned
corrupt data; each thread has its own now.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from embedq.tasks.cache_codec import CachedVector, as_stored, decode_entry, encode_entry
from embedq.tasks.codec import decode_vectors, encode_vectors


def test_vectors_round_trip_from_16_threads_20000_times():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((int(rng.integers(1, 40)), 384)).astype(np.float32)
              for _ in range(64)]
    blobs = [encode_vectors(a) for a in arrays]

    def work(worker: int) -> int:
        good = 0
        for k in range(1250):
            index = (worker * 7 + k) % 64
            if k % 10 == 0:  # encode too, from every thread
                assert encode_vectors(arrays[index]) == blobs[index]
            decoded = decode_vectors(blobs[index], "float32", arrays[index].shape)
            good += bool(np.array_equal(decoded, arrays[index]))
        return good

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(work, range(16))) == 20_000


def test_cache_values_round_trip_from_16_threads():
    rng = np.random.default_rng(1)
    entries = [as_stored(CachedVector(rng.standard_normal(384).astype(np.float32), 9, False),
                         "float16") for _ in range(32)]

    def work(worker: int) -> int:
        return sum(np.array_equal(decode_entry(encode_entry(entries[(worker + k) % 32]),
                                               384).vector, entries[(worker + k) % 32].vector)
                   for k in range(500))

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(work, range(16))) == 8_000

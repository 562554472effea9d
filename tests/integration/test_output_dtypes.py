"""Output dtypes int8 (calibrated) and binary: pure functions, the wire, the cache, the service."""

from __future__ import annotations

import numpy as np
import pytest

from embedq.config.errors import ConfigError
from embedq.config.precisions import OutputDtype
from embedq.tasks.cache_codec import CachedVector, as_stored, decode_entry, encode_entry, restore
from embedq.tasks.codec import decode_vectors, empty_vectors, encode_vectors, vector_width
from embedq.tasks.schema import EmbedRequest
from embedq.worker.embedder import postprocess
from embedq.worker.models.quantize import int8_ranges, to_binary, to_int8
from tests.support import HASHING_MODEL, write_config

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "stocks fell on monday"]


def test_int8_maps_the_calibrated_range_and_clips_outside_it():
    calibration = np.array([[-1.0, 0.0], [1.0, 2.0]], dtype=np.float32)
    ranges = int8_ranges(calibration)
    got = to_int8(np.array([[-1.0, 0.0], [1.0, 2.0], [5.0, -5.0]], dtype=np.float32), ranges)
    np.testing.assert_array_equal(got, [[-128, -128], [127, 127], [127, -128]])
    assert got.dtype == np.int8


def test_binary_packs_one_sign_bit_per_dimension():
    vectors = np.array([[1.0, -1.0, 0.5, 0, 0, 0, 0, 0, 2.0]], dtype=np.float32)
    assert to_binary(vectors).tolist() == [[0b10100000, 0b10000000]]
    assert vector_width(9, "binary") == 2
    assert vector_width(9, "int8") == 9


def test_the_output_dtype_names_its_array_and_the_wire_keeps_its_string():
    arrays = {kind: empty_vectors(1, 9, kind) for kind in OutputDtype}
    assert {k.value: (a.dtype.name, a.shape[1]) for k, a in arrays.items()} == {
        "float32": ("float32", 9), "float16": ("float16", 9), "int8": ("int8", 9),
        "binary": ("uint8", 2)}
    assert [k.value for k in OutputDtype if k.quantized] == ["int8", "binary"]
    for kind in OutputDtype:  # what a request carries (a string) means the same as the enum
        assert empty_vectors(1, 9, kind.value).dtype == arrays[kind].dtype


@pytest.mark.parametrize("dtype", ["int8", "binary"])
def test_integer_vectors_cross_the_wire_and_the_cache_exactly(dtype):
    rows = empty_vectors(2, 16, dtype)
    assert (rows == 0).all()  # integers have no NaN: unfilled rows are zeros
    rows[:] = np.arange(rows.size).reshape(rows.shape) % 100
    assert (decode_vectors(encode_vectors(rows), rows.dtype.name, rows.shape) == rows).all()
    stored = as_stored(CachedVector(rows[1], 5, False), "float16")
    assert stored.vector.dtype == rows.dtype  # not squeezed into the float storage dtype
    entry = decode_entry(encode_entry(stored), rows.shape[1])
    np.testing.assert_array_equal(entry.vector, rows[1])
    back = restore([entry.vector], normalize=True, dtype=rows.dtype.name)
    np.testing.assert_array_equal(back[0], rows[1])  # never re-normalised


@pytest.fixture
def services(service_maker, tmp_path):
    config = write_config(tmp_path / "config", {"hash": HASHING_MODEL},
                          {"r": {"model": "hash"}}, default="r")
    return lambda **overrides: service_maker(config, model_cache_dir=tmp_path / "models",
                                             **overrides)


def _request(dtype: str, dim: int = 64) -> EmbedRequest:
    return EmbedRequest(texts=TEXTS, route="r", model="hash", precision="fp32", dim=dim,
                        normalize=True, output_dtype=dtype)


def test_int8_vectors_agree_across_workers_and_come_back_from_the_cache(services, tmp_path):
    first = services(cache_enabled=False).handle([_request("int8", 48)]).outcomes[0]
    other = services(cache_enabled=False).handle(  # another process
        [_request("int8", 48)]).outcomes[0]
    assert first.vectors.dtype == np.int8
    assert first.vectors.shape == (3, 48)
    np.testing.assert_array_equal(first.vectors, other.vectors)
    assert len(list((tmp_path / "models" / "calibration").glob("hash-*-fp32.npy"))) == 1

    cached = services()
    cold = cached.handle([_request("int8", 48)]).outcomes[0]
    warm = cached.handle([_request("int8", 48)]).outcomes[0]
    assert warm.cached == [True] * 3
    np.testing.assert_array_equal(warm.vectors, cold.vectors)
    np.testing.assert_array_equal(cold.vectors, first.vectors)


def test_binary_vectors_are_the_signs_of_the_float_ones(services):
    service = services()
    floats = service.handle([_request("float32")]).outcomes[0]
    binary = service.handle([_request("binary")]).outcomes[0]
    assert binary.cached == [False] * 3  # another dtype is another vector space
    assert binary.vectors.dtype == np.uint8
    assert binary.vectors.shape == (3, 8)
    np.testing.assert_array_equal(binary.vectors, np.packbits(floats.vectors > 0, axis=1))
    again = service.handle([_request("binary")]).outcomes[0]
    assert again.cached == [True] * 3
    np.testing.assert_array_equal(again.vectors, binary.vectors)


def test_postprocess_needs_ranges_for_int8():
    with pytest.raises(ConfigError, match="calibration ranges"):
        postprocess(np.ones((1, 4), dtype=np.float32), dim=4, normalize=True,
                    output_dtype=OutputDtype.INT8)

"""Interoperability with zarr-python 3 and tensorstore: the contract of the project.

What zarr-python and tensorstore write, gpuzarr reads equal; what gpuzarr writes, they
read equal. Every case runs in both directions:

* ``peer_writes``: the peer creates the array and writes part of it (chunks it never
  touches, and the untouched parts of chunks it does, must read back as the fill value);
  gpuzarr reads it whole and through selections (steps, negative steps, integers).
* ``gpuzarr_writes``: gpuzarr creates the array and writes overlapping regions (partial
  chunks, negative steps, single elements); the peer reads it whole and in part.

Comparisons are exact, floating point ones bit for bit (NaN payloads included). Lossy
codecs (quantize, bitround, fixedscaleoffset, astype, float delta) compare against what
the peer decodes from the same bytes, and loosely against the original data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import tensorstore as ts
import zarr
from zarr.dtype import VariableLengthBytes

import gpuzarr
from gpuzarr.codecs import BloscCodec, BytesCodec, GzipCodec, TransposeCodec, ZstdCodec

pytestmark = pytest.mark.filterwarnings(
    "ignore:Numcodecs codecs are not in the Zarr version 3 specification:UserWarning",
    "ignore:Consolidated metadata is currently not part in the Zarr format 3:UserWarning",
)

SHAPE = (20, 13)
CHUNKS = (6, 5)
DIRECTIONS = ["peer_writes", "gpuzarr_writes"]

NUMERIC = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]
#: Data types both formats share: numeric, variable-length, fixed-length bytes/text.
COMMON_DTYPES = [*NUMERIC, "string", "bytes", "S5", "U5", "V3"]
#: v2 stores byte order in the dtype string.
V2_BIG_ENDIAN = [">i2", ">i4", ">u8", ">f4", ">f8", ">c8", ">c16"]

Selection = tuple[Any, ...]

# --------------------------------------------------------------------------------------
# data, fill values, comparisons


def make_data(key: str, shape: Sequence[int], seed: int = 0, *, specials: bool = True) -> np.ndarray:
    """Test data of data type ``key`` covering the type's range.

    ``specials`` puts NaN, +-Infinity and -0.0 into float and complex data.
    """
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    if key == "string":
        words = ["", "a", "héllo", "日本語", "x" * 17, "tab\tnew\nline"]
        values = [words[i % len(words)] + (str(i) if i % 3 else "") for i in range(n)]
        return np.array([*values, ""], dtype=object)[:n].reshape(shape)
    if key == "bytes":
        values = [bytes(rng.integers(0, 256, i % 7, dtype=np.uint8)) for i in range(n)]
        return np.array([*values, b""], dtype=object)[:n].reshape(shape)
    dtype = np.dtype(key)
    native = dtype.newbyteorder("=")
    if dtype.kind == "S":
        # Letters only: NumPy drops trailing NULs, which would make the round trip unfair.
        letters = rng.integers(ord("a"), ord("z") + 1, (n, dtype.itemsize), dtype=np.uint8)
        values = [bytes(row[: i % (dtype.itemsize + 1)]) for i, row in enumerate(letters)]
        return np.array(values, dtype=dtype).reshape(shape)
    if dtype.kind == "U":
        chars = "aé日z🙂"
        width = dtype.itemsize // 4
        values = ["".join(chars[(i + j) % len(chars)] for j in range(i % (width + 1))) for i in range(n)]
        return np.array(values, dtype=dtype).reshape(shape)
    if dtype.kind == "V":
        return rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype).reshape(shape)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(native)
        return rng.integers(info.min, info.max, size=shape, dtype=native, endpoint=True).astype(dtype)
    if dtype.kind == "f":
        arr = (rng.standard_normal(shape) * 1000).astype(native)
        if specials and n >= 5:
            arr.reshape(-1)[1:5] = [np.nan, np.inf, -np.inf, -0.0]
        return arr.astype(dtype)
    if dtype.kind == "c":
        arr = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * 1000
        arr = arr.astype(native)
        if specials and n >= 4:
            arr.reshape(-1)[1:4] = [complex(np.nan, 1), complex(-np.inf, 0), complex(0, np.inf)]
        return arr.astype(dtype)
    raise AssertionError(f"no test data for {key!r}")


def fill_for(key: str) -> Any:
    """A non-default fill value of data type ``key`` (so fill and zero differ)."""
    if key == "string":
        return "fill✓"
    if key == "bytes":
        return b"\x00fb"  # a NUL inside (trailing NULs: see test_vlen_bytes_fill_keeps_trailing_nul)
    dtype = np.dtype(key)
    return {
        "b": True,
        "i": -7,
        "u": 7,
        "f": -1.5,
        "c": complex(1.5, -2),
        "S": b"ab",
        "U": "zé",
        "V": np.frombuffer(b"\x01\x00\xff"[: dtype.itemsize].ljust(dtype.itemsize, b"\x02"), dtype=dtype)[0],
    }[dtype.kind]


def fill_json(key: str, fill: Any) -> Any:
    """``fill`` as metadata JSON (for tensorstore, which takes metadata documents)."""
    kind = np.dtype(key).kind
    if kind == "c":
        return [_float_json(fill.real), _float_json(fill.imag)]
    if kind == "f":
        return _float_json(fill)
    if kind == "b":
        return bool(fill)
    return int(fill)


def _float_json(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


def zarr_dtype(key: str) -> Any:
    """How zarr-python is asked for data type ``key``."""
    return {"string": str, "bytes": VariableLengthBytes()}.get(key, key)


def gpuzarr_dtype(key: str) -> Any:
    """How gpuzarr is asked for data type ``key``."""
    return {"string": str, "bytes": bytes}.get(key, key)


def filled(shape: Sequence[int], key: str, fill: Any) -> np.ndarray:
    """An array of the fill value, in the dtype :func:`make_data` uses for ``key``."""
    if key in ("string", "bytes"):
        arr = np.empty(tuple(shape), dtype=object)
        arr.fill(fill)  # np.full would go through NumPy's S dtype and drop trailing NULs
        return arr
    return np.full(tuple(shape), fill, dtype=np.dtype(key))


def _bits(arr: np.ndarray) -> np.ndarray:
    """Float/complex elements as unsigned integers of their bit patterns."""
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="))).reshape(-1)
    size = arr.dtype.itemsize if arr.dtype.kind == "f" else arr.dtype.itemsize // 2
    return arr.view(f"u{size}")


def assert_same(actual: Any, expected: Any) -> None:
    """Equal shape, data type and values; floats and complex compared bit for bit."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if actual.dtype.kind in "OT" or expected.dtype.kind in "OT":  # vlen strings / bytes
        np.testing.assert_array_equal(actual.astype(object), expected.astype(object))
        return
    if expected.dtype.kind in "biufc":
        want = expected.dtype.newbyteorder("=")
        assert actual.dtype.newbyteorder("=") == want, f"dtype {actual.dtype} != {expected.dtype}"
        if want.kind in "fc":
            np.testing.assert_array_equal(_bits(actual), _bits(expected))
            return
    else:
        assert actual.dtype.kind == expected.dtype.kind, f"dtype {actual.dtype} != {expected.dtype}"
    np.testing.assert_array_equal(actual, expected)


# --------------------------------------------------------------------------------------
# selections and writes


def read_selections(shape: Sequence[int], *, negative_steps: bool = True) -> list[Selection]:
    """Selections to read: steps, negative steps, integers (negative too), Ellipsis."""
    ndim = len(shape)
    if ndim == 0:
        return [(), (Ellipsis,)]
    sels: list[Selection] = [
        tuple(slice(None, None, 3) for _ in shape),
        (slice(1, None, 2), *(slice(s // 4, s - s // 5) for s in shape[1:])),
        (Ellipsis, slice(None, None, 4)),
    ]
    if negative_steps:
        sels += [
            tuple(slice(None, None, -2) for _ in shape),
            (slice(None, 1, -3), *(slice(None, None, -1) for _ in shape[1:])),
        ]
    if 0 not in shape:
        sels += [
            (shape[0] // 2,),
            tuple(-1 for _ in shape),
            (-min(2, shape[0]), *(slice(None, None, -2 if negative_steps else 2) for _ in shape[1:])),
        ]
        if ndim > 1:
            sels.append((slice(None), *(s // 3 for s in shape[1:])))
    return sels


def peer_regions(shape: Sequence[int]) -> list[Selection]:
    """Regions a peer writes: positive steps only (zarr-python rejects negative ones).

    The last quarter of the first dimension is never written, so whole chunks (and the
    unwritten parts of partially written ones) must read back as the fill value.
    """
    if not shape:
        return [()]
    if 0 in shape:
        return []
    stop0 = shape[0] - shape[0] // 4
    return [
        (slice(shape[0] // 8, stop0), *(slice(s // 4, s) for s in shape[1:])),
        (slice(0, max(1, stop0 // 2), 2), *(slice(None, None, 3) for _ in shape[1:])),
    ]


def gpuzarr_regions(shape: Sequence[int]) -> list[Selection]:
    """Regions gpuzarr writes: partial chunks, negative steps, one element.

    As in :func:`peer_regions`, the last quarter of the first dimension stays unwritten.
    """
    if not shape:
        return [()]
    if 0 in shape:
        return []
    stop0 = shape[0] - shape[0] // 4
    return [
        (slice(shape[0] // 8, stop0), *(slice(s // 4, s - s // 8) for s in shape[1:])),
        (slice(stop0 - 1, None, -3), *(slice(None, None, -2) for _ in shape[1:])),
        (stop0 - 1, *(-1 for _ in shape[1:])),
    ]


def write_regions(target: Any, data: np.ndarray, regions: list[Selection]) -> None:
    """Write ``data[region]`` into ``target[region]`` for each region, in order."""
    for region in regions:
        target[region] = data[region]


def expected_after(shape: Sequence[int], key: str, fill: Any, data: np.ndarray, regions: list[Selection]) -> np.ndarray:
    """What an array holds after :func:`write_regions` into a fresh array."""
    expected = filled(shape, key, fill)
    write_regions(expected, data, regions)
    return expected


# --------------------------------------------------------------------------------------
# readers


def check_gpuzarr_reads(path: Path, expected: np.ndarray, **open_kwargs: Any) -> gpuzarr.Array:
    """gpuzarr reads ``path`` whole and through :func:`read_selections` as ``expected``."""
    a = gpuzarr.open_array(str(path), **open_kwargs)
    assert a.shape == expected.shape
    assert_same(a[...], expected)
    for sel in read_selections(expected.shape):
        assert_same(a[sel], expected[sel])
    return a


def check_zarr_reads(path: Path, expected: np.ndarray) -> None:
    """zarr-python reads ``path`` whole and through positive-step selections."""
    z = zarr.open_array(str(path), mode="r")
    assert z.shape == expected.shape
    assert_same(z[...], expected)
    for sel in read_selections(expected.shape, negative_steps=False):
        assert_same(z[sel], expected[sel])


def ts_spec(path: Path, fmt: int) -> dict[str, Any]:
    """A tensorstore spec for the array at ``path`` (driver zarr3 or zarr)."""
    return {"driver": "zarr3" if fmt == 3 else "zarr", "kvstore": {"driver": "file", "path": str(path)}}


def check_ts_reads(path: Path, fmt: int, expected: np.ndarray) -> None:
    """tensorstore reads ``path`` whole and through selections as ``expected``."""
    t = ts.open(ts_spec(path, fmt), open=True, read=True).result()
    assert tuple(t.shape) == expected.shape
    assert_same(t.read().result(), expected)
    if expected.size == 0:
        return  # tensorstore rejects steps over empty intervals (NumPy yields empty results)
    for sel in read_selections(expected.shape):
        if Ellipsis in sel or expected[sel].size == 0:
            continue  # tensorstore spells Ellipsis differently, and rejects some empty intervals
        # tensorstore takes negative indices literally (its domains may start below 0).
        ts_sel = tuple(i + n if isinstance(i, int) and i < 0 else i for i, n in zip(sel, expected.shape, strict=False))
        assert_same(t[ts_sel].read().result(), expected[sel])


# --------------------------------------------------------------------------------------
# data types, both formats, zarr-python


def _dtype_params() -> list[Any]:
    params = [pytest.param(3, key, "C", id=f"v3-{key}") for key in COMMON_DTYPES]
    params += [pytest.param(2, key, "C", id=f"v2-{key}") for key in COMMON_DTYPES + V2_BIG_ENDIAN]
    params += [
        pytest.param(2, key, "F", id=f"v2-F-{key}")
        for key in ("bool", "int16", "uint64", "float32", ">f8", "complex64", ">c16", "string", "bytes", "S5", "U5")
    ]
    return params


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(("fmt", "key", "order"), _dtype_params())
def test_dtypes_zarr(tmp_path: Path, fmt: int, key: str, order: str, direction: str) -> None:
    """Every data type, with a non-default fill value, through zarr-python."""
    path = tmp_path / "a.zarr"
    fill = fill_for(key)
    data = make_data(key, SHAPE)
    order_kw = {"order": order} if fmt == 2 else {}
    if direction == "peer_writes":
        z = zarr.create_array(
            str(path), shape=SHAPE, chunks=CHUNKS, dtype=zarr_dtype(key), fill_value=fill, zarr_format=fmt, **order_kw
        )
        regions = peer_regions(SHAPE)
        write_regions(z, data, regions)
        expected = expected_after(SHAPE, key, fill, data, regions)
        assert_same(z[...], expected)  # the peer agrees with the test's model
        a = check_gpuzarr_reads(path, expected)
        assert a.zarr_format == fmt
        assert a.order == order
    else:
        a = gpuzarr.create_array(
            str(path),
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=gpuzarr_dtype(key),
            fill_value=fill,
            zarr_format=fmt,
            **order_kw,
        )
        regions = gpuzarr_regions(SHAPE)
        write_regions(a, data, regions)
        expected = expected_after(SHAPE, key, fill, data, regions)
        check_gpuzarr_reads(path, expected)  # a fresh handle reads back what gpuzarr wrote
        check_zarr_reads(path, expected)


@pytest.mark.parametrize("fill", [-np.float32("nan"), np.frombuffer(b"\x01\x00\xc0\x7f", "<f4")[0]])
def test_v2_nan_fill_with_a_payload_is_written_as_nan(tmp_path: Path, fill: Any) -> None:
    """v2 metadata has no bit-pattern fill values: a NaN of any payload is "NaN" there
    (a hex string made zarr-python refuse the array and tensorstore read 2.1e9)."""
    path = tmp_path / "a.zarr"
    a = gpuzarr.create_array(str(path), shape=(4,), chunks=(2,), dtype="<f4", zarr_format=2, fill_value=fill)
    a[:2] = 1.0
    assert json.loads((path / ".zarray").read_text())["fill_value"] == "NaN"
    expected = [1.0, 1.0, np.nan, np.nan]
    np.testing.assert_array_equal(zarr.open_array(str(path), mode="r")[...], expected)
    opened = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}}).result()
    np.testing.assert_array_equal(opened.read().result(), expected)
    # The handle's fill is the stored one from the start: a chunk written full of the
    # payload NaN is stored (it is not the fill), so it reads back with its bits.
    payload = np.full(2, fill, dtype="<f4") if not isinstance(fill, str) else np.full(2, np.nan, dtype="<f4")
    a[2:] = payload
    assert a.fill_value.tobytes() == np.float32("nan").tobytes()
    reread = gpuzarr.open_array(str(path), mode="r")[2:]
    assert reread.tobytes() == payload.tobytes()


@pytest.mark.parametrize("key", [">i4", ">f8", ">c16"])
def test_v2_big_endian_dtype_is_stored_big_endian(tmp_path: Path, key: str) -> None:
    """Asked for a big-endian v2 dtype, gpuzarr stores it big-endian, as zarr-python does."""
    gpuzarr.create_array(str(tmp_path / "g"), shape=(4,), chunks=(3,), dtype=key, zarr_format=2)
    zarr.create_array(str(tmp_path / "z"), shape=(4,), chunks=(3,), dtype=key, zarr_format=2)
    z_doc = json.loads((tmp_path / "z" / ".zarray").read_text())
    g_doc = json.loads((tmp_path / "g" / ".zarray").read_text())
    assert g_doc["dtype"] == z_doc["dtype"] == key


# --------------------------------------------------------------------------------------
# codecs, zarr-python

_AUTO = object()  # leave the argument out: the writer's default


def c3(name: str, **configuration: Any) -> dict[str, Any]:
    """A v3 codec entry."""
    return {"name": name, "configuration": configuration}


@dataclass
class CodecCase:
    """One codec configuration, spelled for zarr-python (and, optionally, otherwise for gpuzarr).

    ``gpuzarr`` overrides keyword arguments for gpuzarr, to exercise the other spellings
    it accepts (codec objects, v2 ``{"id": ...}`` dicts, numcodecs objects, v3 JSON).
    """

    id: str
    dtype: str
    filters: Any = _AUTO
    serializer: Any = _AUTO
    compressors: Any = _AUTO
    order: str = "C"
    lossy: bool = False
    gpuzarr: dict[str, Any] = field(default_factory=dict)
    directions: tuple[str, ...] = tuple(DIRECTIONS)

    def kwargs(self, *, for_gpuzarr: bool) -> dict[str, Any]:
        """The codec keyword arguments of create_array."""
        kw = {
            k: v
            for k, v in (("filters", self.filters), ("serializer", self.serializer), ("compressors", self.compressors))
            if v is not _AUTO
        }
        if for_gpuzarr:
            kw.update(self.gpuzarr)
        return kw


def _blosc3(cname: str, shuffle: str, clevel: int = 5) -> dict[str, Any]:
    return c3("blosc", cname=cname, clevel=clevel, shuffle=shuffle)


V3_CODEC_CASES = [
    CodecCase("none", "int32", compressors=None),
    CodecCase("bytes-little", "float64", serializer=c3("bytes", endian="little"), compressors=None),
    CodecCase("bytes-big", "int16", serializer=c3("bytes", endian="big"), compressors=None),
    CodecCase(
        "bytes-big-gzip",
        "complex128",
        serializer=c3("bytes", endian="big"),
        compressors=[c3("gzip", level=1)],
        gpuzarr={"serializer": BytesCodec("big"), "compressors": [GzipCodec(1)]},
    ),
    CodecCase("bytes-big-zstd-u8", "uint64", serializer=c3("bytes", endian="big"), compressors=[c3("zstd", level=3)]),
    CodecCase("bytes-big-f2", "float16", serializer=c3("bytes", endian="big"), compressors=None),
    CodecCase("transpose", "float32", filters=[c3("transpose", order=[1, 0])], compressors=None),
    CodecCase(
        "transpose-big-zstd",
        "int64",
        filters=[c3("transpose", order=[1, 0])],
        serializer=c3("bytes", endian="big"),
        compressors=[c3("zstd", level=1, checksum=False)],
        gpuzarr={"filters": [TransposeCodec((1, 0))]},
    ),
    # zarr-python 3.1 encodes transposed vlen strings in the wrong order (it decodes them right)
    CodecCase("transpose-string", "string", filters=[c3("transpose", order=[1, 0])], directions=("gpuzarr_writes",)),
    CodecCase("gzip-1", "uint8", compressors=[c3("gzip", level=1)]),
    CodecCase("gzip-9", "float64", compressors=[c3("gzip", level=9)]),
    CodecCase("gzip-bytes", "bytes", compressors=[c3("gzip", level=6)]),
    CodecCase("zstd-checksum", "int32", compressors=[c3("zstd", level=3, checksum=True)]),
    CodecCase(
        "zstd-no-checksum",
        "float16",
        compressors=[c3("zstd", level=5, checksum=False)],
        gpuzarr={"compressors": ZstdCodec(5, False)},
    ),
    CodecCase("zstd-negative-level", "complex64", compressors=[c3("zstd", level=-1, checksum=True)]),
    CodecCase("zstd-22", "uint32", compressors=[c3("zstd", level=22, checksum=True)]),
    # blosc: every cname and every shuffle, over several dtypes
    CodecCase("blosc-lz4-noshuffle", "int8", compressors=[_blosc3("lz4", "noshuffle")]),
    CodecCase("blosc-lz4hc-shuffle", "float64", compressors=[_blosc3("lz4hc", "shuffle", 9)]),
    CodecCase("blosc-zstd-bitshuffle", "uint16", compressors=[_blosc3("zstd", "bitshuffle", 3)]),
    CodecCase("blosc-zlib-shuffle", "int32", compressors=[_blosc3("zlib", "shuffle")]),
    CodecCase(
        "blosc-blosclz-bitshuffle",
        "float32",
        compressors=[_blosc3("blosclz", "bitshuffle")],
        gpuzarr={"compressors": [BloscCodec("blosclz", 5, "bitshuffle")]},
    ),
    CodecCase("blosc-lz4-bitshuffle", "complex64", compressors=[_blosc3("lz4", "bitshuffle", 1)]),
    CodecCase("blosc-zstd-noshuffle", "bool", compressors=[_blosc3("zstd", "noshuffle")]),
    CodecCase("blosc-blosclz-shuffle", "uint64", compressors=[_blosc3("blosclz", "shuffle")]),
    CodecCase("blosc-zlib-noshuffle", "float16", compressors=[_blosc3("zlib", "noshuffle")]),
    CodecCase("blosc-lz4-shuffle-string", "string", compressors=[_blosc3("lz4", "shuffle")]),
    CodecCase(
        "blosc-zstd-bitshuffle-big",
        "complex128",
        serializer=c3("bytes", endian="big"),
        compressors=[_blosc3("zstd", "bitshuffle")],
    ),
    CodecCase("crc32c", "int16", compressors=[c3("crc32c")]),
    CodecCase("zstd-crc32c", "float64", compressors=[c3("zstd", level=0, checksum=False), c3("crc32c")]),
    CodecCase("gzip-crc32c-string", "string", compressors=[c3("gzip", level=5), c3("crc32c")]),
    # numcodecs.* codecs (zarr-python's numcodecs.zarr3 classes)
    CodecCase("numcodecs.lz4", "float32", compressors=[c3("numcodecs.lz4", acceleration=1)]),
    CodecCase("numcodecs.zlib", "int64", compressors=[c3("numcodecs.zlib", level=1)]),
    CodecCase("numcodecs.bz2", "uint32", compressors=[c3("numcodecs.bz2", level=9)]),
    CodecCase("numcodecs.lzma", "float64", compressors=[c3("numcodecs.lzma")]),
    CodecCase("numcodecs.gzip", "int8", compressors=[c3("numcodecs.gzip", level=3)]),
    CodecCase("numcodecs.zstd", "uint16", compressors=[c3("numcodecs.zstd", level=2)]),
    CodecCase(
        "numcodecs.shuffle-zlib",
        "int32",
        compressors=[c3("numcodecs.shuffle", elementsize=4), c3("numcodecs.zlib", level=5)],
    ),
    CodecCase("numcodecs.delta-int", "int32", filters=[c3("numcodecs.delta", dtype="<i4")]),
    CodecCase("numcodecs.delta-float", "float64", filters=[c3("numcodecs.delta", dtype="<f8")], lossy=True),
    # No numcodecs filter next to transpose or a big-endian bytes codec: zarr-python 3.1
    # decodes (and encodes) those combinations wrongly.
    CodecCase("numcodecs.delta-gzip", "int16", filters=[c3("numcodecs.delta", dtype="<i2")], compressors=[c3("gzip")]),
    CodecCase(
        "numcodecs.fixedscaleoffset",
        "float64",
        filters=[c3("numcodecs.fixedscaleoffset", offset=1000, scale=10, dtype="<f8", astype="<i4")],
        lossy=True,
    ),
    CodecCase("numcodecs.bitround", "float32", filters=[c3("numcodecs.bitround", keepbits=10)], lossy=True),
    CodecCase("numcodecs.quantize", "float64", filters=[c3("numcodecs.quantize", digits=3, dtype="<f8")], lossy=True),
    CodecCase(
        "numcodecs.astype",
        "float64",
        filters=[c3("numcodecs.astype", encode_dtype="<f4", decode_dtype="<f8")],
        compressors=[c3("numcodecs.lz4")],
        lossy=True,
    ),
    CodecCase("numcodecs.packbits", "bool", filters=[c3("numcodecs.packbits")], compressors=None),
    CodecCase(
        "numcodecs.packbits-zstd",
        "bool",
        filters=[c3("numcodecs.packbits")],
        compressors=[c3("zstd", level=1)],
        gpuzarr={"filters": [numcodecs.PackBits()]},
    ),
]

V2_CODEC_CASES = [
    CodecCase("none", "int32", compressors=None),
    CodecCase(
        "zlib", "float64", compressors=numcodecs.Zlib(level=3), gpuzarr={"compressors": {"id": "zlib", "level": 3}}
    ),
    CodecCase("gzip", "int16", compressors=numcodecs.GZip(level=5), gpuzarr={"compressors": c3("gzip", level=5)}),
    CodecCase(
        "zstd-checksum",
        "float32",
        compressors=numcodecs.Zstd(level=1, checksum=True),
        gpuzarr={"compressors": ZstdCodec(1, True)},
    ),
    CodecCase("zstd", "uint16", compressors=numcodecs.Zstd(level=3)),
    CodecCase("zstd-negative", "complex128", compressors=numcodecs.Zstd(level=-3)),
    CodecCase("blosc-lz4-noshuffle", "float64", compressors=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.NOSHUFFLE)),
    CodecCase("blosc-lz4hc-bitshuffle", "int32", compressors=numcodecs.Blosc("lz4hc", 9, numcodecs.Blosc.BITSHUFFLE)),
    CodecCase("blosc-zstd-shuffle", "int16", compressors=numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE)),
    CodecCase("blosc-zlib-bitshuffle", "complex64", compressors=numcodecs.Blosc("zlib", 5, numcodecs.Blosc.BITSHUFFLE)),
    CodecCase(
        "blosc-blosclz-noshuffle",
        "uint8",
        compressors=numcodecs.Blosc("blosclz", 5, numcodecs.Blosc.NOSHUFFLE),
        gpuzarr={"compressors": {"id": "blosc", "cname": "blosclz", "clevel": 5, "shuffle": 0}},
    ),
    CodecCase("blosc-zstd-bitshuffle-bool", "bool", compressors=numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE)),
    CodecCase("blosc-lz4-shuffle-string", "string", compressors=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)),
    CodecCase(
        "blosc-shuffle-F-big",
        ">f8",
        order="F",
        compressors=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
        gpuzarr={"compressors": _blosc3("lz4", "shuffle")},
    ),
    CodecCase("lz4", "float32", compressors=numcodecs.LZ4()),
    CodecCase("bz2", "uint64", compressors=numcodecs.BZ2(level=9)),
    CodecCase("lzma", "int64", compressors=numcodecs.LZMA()),
    CodecCase("crc32c", "int32", compressors=numcodecs.CRC32C()),
    CodecCase("zlib-bytes", "bytes", compressors=numcodecs.Zlib(level=1)),
    CodecCase("shuffle-filter", "float64", filters=[numcodecs.Shuffle(elementsize=8)], compressors=numcodecs.Zlib(1)),
    CodecCase(
        "delta",
        "int32",
        filters=[numcodecs.Delta("<i4")],
        compressors=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
        gpuzarr={"filters": [{"id": "delta", "dtype": "<i4"}]},
    ),
    CodecCase("delta-F", "int64", order="F", filters=[numcodecs.Delta("<i8")], compressors=numcodecs.Zstd(1)),
    CodecCase(
        "fixedscaleoffset",
        "float64",
        filters=[numcodecs.FixedScaleOffset(offset=1000, scale=10, dtype="<f8", astype="<i4")],
        compressors=numcodecs.Zstd(level=1),
        lossy=True,
    ),
    CodecCase("bitround", "float32", filters=[numcodecs.BitRound(keepbits=10)], lossy=True),
    CodecCase("quantize", "float64", filters=[numcodecs.Quantize(digits=3, dtype="<f8")], lossy=True),
    CodecCase("astype", "float64", filters=[numcodecs.AsType(encode_dtype="<f4", decode_dtype="<f8")], lossy=True),
    CodecCase("packbits", "bool", filters=[numcodecs.PackBits()], compressors=None),
    CodecCase(
        "delta-fixedscaleoffset",
        "float64",
        filters=[numcodecs.Delta("<f8"), numcodecs.FixedScaleOffset(offset=0, scale=100, dtype="<f8", astype="<i8")],
        compressors=numcodecs.BZ2(1),
        lossy=True,
    ),
    CodecCase("zlib-big-c16", ">c16", compressors=numcodecs.Zlib(level=9)),
]


def _run_codec_case(tmp_path: Path, fmt: int, case: CodecCase, direction: str) -> None:
    path = tmp_path / "a.zarr"
    fill = fill_for(case.dtype)
    data = make_data(case.dtype, SHAPE, specials=not case.lossy)
    order_kw = {"order": case.order} if fmt == 2 else {}
    common = {"shape": SHAPE, "chunks": CHUNKS, "fill_value": fill, "zarr_format": fmt, **order_kw}
    if direction == "peer_writes":
        z = zarr.create_array(str(path), dtype=zarr_dtype(case.dtype), **common, **case.kwargs(for_gpuzarr=False))
        regions = peer_regions(SHAPE)
        write_regions(z, data, regions)
        model = expected_after(SHAPE, case.dtype, fill, data, regions)
        peer_view = z[...]
        if case.lossy:  # gpuzarr must decode exactly what the peer decodes
            np.testing.assert_allclose(peer_view, model, rtol=2e-3, atol=0.1)
            check_gpuzarr_reads(path, np.asarray(peer_view))
        else:
            assert_same(peer_view, model)
            check_gpuzarr_reads(path, model)
    else:
        a = gpuzarr.create_array(str(path), dtype=gpuzarr_dtype(case.dtype), **common, **case.kwargs(for_gpuzarr=True))
        regions = gpuzarr_regions(SHAPE)
        write_regions(a, data, regions)
        model = expected_after(SHAPE, case.dtype, fill, data, regions)
        own_view = gpuzarr.open_array(str(path))[...]
        if case.lossy:
            np.testing.assert_allclose(own_view, model, rtol=2e-3, atol=0.1)
            check_zarr_reads(path, own_view)
        else:
            assert_same(own_view, model)
            check_zarr_reads(path, model)


def _codec_params(cases: list[CodecCase]) -> list[Any]:
    return [
        pytest.param(case, direction, id=f"{case.id}-{case.dtype}-{direction}")
        for case in cases
        for direction in DIRECTIONS
        if direction in case.directions
    ]


@pytest.mark.parametrize(("case", "direction"), _codec_params(V3_CODEC_CASES))
def test_codecs_v3_zarr(tmp_path: Path, case: CodecCase, direction: str) -> None:
    """v3 codec chains (core codecs and numcodecs.*) through zarr-python."""
    _run_codec_case(tmp_path, 3, case, direction)


@pytest.mark.parametrize(("case", "direction"), _codec_params(V2_CODEC_CASES))
def test_codecs_v2_zarr(tmp_path: Path, case: CodecCase, direction: str) -> None:
    """v2 compressors and filters through zarr-python."""
    _run_codec_case(tmp_path, 2, case, direction)


# --------------------------------------------------------------------------------------
# fill values in every JSON encoding


def _from_hex(dtype: str, pattern: str) -> np.generic:
    """The value of the big-endian bit pattern ``0x...`` as a ``dtype`` scalar."""
    raw = bytes.fromhex(pattern[2:])
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder(">"))[0].astype(dtype)


@dataclass
class FillCase:
    """A fill value: a JSON encoding of it, the value it denotes, what gpuzarr is given
    for it (None: that JSON encoding) and the encodings gpuzarr may write for it (None:
    that JSON encoding)."""

    id: str
    fmt: int
    dtype: str
    json: Any
    value: Any
    given: Any = None
    written: tuple[Any, ...] | None = None
    #: zarr-python 3.1 keeps this fill value (it drops float16 NaN payloads).
    zarr_ok: bool = True

    @property
    def user_value(self) -> Any:
        return self.json if self.given is None else self.given

    @property
    def accepted_json(self) -> tuple[Any, ...]:
        return (self.json,) if self.written is None else self.written


_NAN_F32 = _from_hex("float32", "0x7fc00001")
_NAN_F64 = _from_hex("float64", "0x7ff8000000000123")

FILL_CASES = [
    FillCase("v3-f8-nan", 3, "float64", "NaN", np.float64(np.nan)),
    FillCase("v3-f8-inf", 3, "float64", "Infinity", np.float64(np.inf)),
    FillCase("v3-f4-neginf", 3, "float32", "-Infinity", np.float32(-np.inf)),
    FillCase("v3-f2-nan", 3, "float16", "NaN", np.float16(np.nan)),
    FillCase("v3-f8-number", 3, "float64", 1.0e300, np.float64(1.0e300), given=1.0e300),
    FillCase("v3-f8-negzero", 3, "float64", -0.0, np.float64(-0.0), given=-0.0),
    FillCase("v3-f4-hex-nan-payload", 3, "float32", "0x7fc00001", _NAN_F32),
    FillCase("v3-f8-hex-nan-payload", 3, "float64", "0x7ff8000000000123", _NAN_F64),
    FillCase("v3-f2-hex-nan-payload", 3, "float16", "0x7e01", _from_hex("float16", "0x7e01"), zarr_ok=False),
    FillCase("v3-f4-hex-number", 3, "float32", "0x3fc00000", np.float32(1.5), written=(1.5,)),
    FillCase(
        "v3-c8-hex-string-pair", 3, "complex64", ["0x7fc00001", "Infinity"], np.complex64(complex(_NAN_F32, np.inf))
    ),
    FillCase("v3-c8-nan-neginf", 3, "complex64", ["NaN", "-Infinity"], np.complex64(complex(np.nan, -np.inf))),
    FillCase("v3-c16-numbers", 3, "complex128", [1.5, -2.25], np.complex128(1.5 - 2.25j)),
    FillCase("v3-c8-given-real", 3, "complex64", [1.5, 0.0], np.complex64(1.5), given=1.5),
    FillCase(
        "v3-c16-hex",
        3,
        "complex128",
        ["0x7ff8000000000123", 2.0],
        np.complex128(complex(_NAN_F64, 2.0)),
        given=np.frombuffer(_NAN_F64.tobytes() + np.float64(2.0).tobytes(), dtype=np.complex128)[0],
    ),
    FillCase("v3-i8-min", 3, "int64", -(2**63), np.int64(-(2**63))),
    FillCase("v3-u8-max", 3, "uint64", 2**64 - 1, np.uint64(2**64 - 1)),
    FillCase("v3-i1-min", 3, "int8", -128, np.int8(-128)),
    FillCase("v3-bool", 3, "bool", True, np.bool_(True)),
    FillCase("v3-string", 3, "string", "héllo wörld", "héllo wörld"),
    # zarr-python drops trailing NULs from the base64 bytes; both forms denote b"ab"
    FillCase("v3-fixed-bytes", 3, "S5", "YWI=", np.bytes_(b"ab"), given=b"ab", written=("YWI=", "YWIAAAA=")),
    FillCase("v3-fixed-utf32", 3, "U5", "zé日", np.str_("zé日")),
    FillCase("v2-f8-nan", 2, "float64", "NaN", np.float64(np.nan)),
    FillCase("v2-f4-inf", 2, "float32", "Infinity", np.float32(np.inf)),
    FillCase("v2-f8-neginf", 2, "float64", "-Infinity", np.float64(-np.inf)),
    FillCase("v2-f8-number", 2, "float64", 2.5, np.float64(2.5), given=2.5),
    FillCase(
        "v2-c16-nan-neginf",
        2,
        "complex128",
        ["NaN", "-Infinity"],
        np.complex128(complex(np.nan, -np.inf)),
        given=complex(np.nan, -np.inf),
    ),
    FillCase("v2-c8-numbers", 2, "complex64", [1.5, -2.0], np.complex64(1.5 - 2j), given=complex(1.5, -2)),
    FillCase("v2-i8-min", 2, "int64", -(2**63), np.int64(-(2**63))),
    FillCase("v2-u8-max", 2, "uint64", 2**64 - 1, np.uint64(2**64 - 1)),
    FillCase("v2-bool", 2, "bool", True, np.bool_(True)),
    FillCase("v2-string", 2, "string", "héllo", "héllo"),
    FillCase("v2-fixed-bytes", 2, "S5", "YWI=", np.bytes_(b"ab"), given=b"ab", written=("YWI=", "YWIAAAA=")),
    FillCase("v2-fixed-utf32", 2, "U5", "zé", np.str_("zé")),
    FillCase("v2-bytes", 2, "bytes", "AGZi", b"\x00fb", given=b"\x00fb"),
]


def _patch_fill(path: Path, fmt: int, fill: Any) -> None:
    """Set the stored fill_value JSON (zarr-python cannot express every encoding)."""
    doc_path = path / ("zarr.json" if fmt == 3 else ".zarray")
    doc = json.loads(doc_path.read_text())
    doc["fill_value"] = fill
    doc_path.write_text(json.dumps(doc))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in FILL_CASES if c.zarr_ok])
def test_fill_values_zarr(tmp_path: Path, case: FillCase, direction: str) -> None:
    """Fill values in each JSON encoding; unwritten elements read back bit-exact."""
    path = tmp_path / "a.zarr"
    data = make_data(case.dtype, SHAPE, seed=3)
    if direction == "peer_writes":
        zarr.create_array(str(path), shape=SHAPE, chunks=CHUNKS, dtype=zarr_dtype(case.dtype), zarr_format=case.fmt)
        _patch_fill(path, case.fmt, case.json)
        z = zarr.open_array(str(path), mode="r+")
        regions = peer_regions(SHAPE)
        write_regions(z, data, regions)
        expected = expected_after(SHAPE, case.dtype, case.value, data, regions)
        assert_same(z[...], expected)
        a = check_gpuzarr_reads(path, expected)
        assert_same(a.fill_value, case.value)
    else:
        a = gpuzarr.create_array(
            str(path),
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=gpuzarr_dtype(case.dtype),
            fill_value=case.user_value,
            zarr_format=case.fmt,
        )
        doc = json.loads((path / ("zarr.json" if case.fmt == 3 else ".zarray")).read_text())
        assert doc["fill_value"] in case.accepted_json
        regions = gpuzarr_regions(SHAPE)
        write_regions(a, data, regions)
        expected = expected_after(SHAPE, case.dtype, case.value, data, regions)
        check_gpuzarr_reads(path, expected)  # a fresh handle reads back what gpuzarr wrote
        check_zarr_reads(path, expected)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id) for c in FILL_CASES if c.dtype in NUMERIC and c.dtype != "bool"]
)
def test_fill_values_tensorstore(tmp_path: Path, case: FillCase, direction: str) -> None:
    """Numeric fill values in each JSON encoding, with tensorstore (which keeps every NaN payload)."""
    path = tmp_path / "a.zarr"
    data = make_data(case.dtype, SHAPE, seed=4)
    if direction == "peer_writes":
        if case.fmt == 3:
            metadata: dict[str, Any] = {
                "shape": list(SHAPE),
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(CHUNKS)}},
                "data_type": case.dtype,
                "codecs": [c3("bytes", endian="little")],
            }
        else:
            metadata = {"shape": list(SHAPE), "chunks": list(CHUNKS), "dtype": np.dtype(case.dtype).str}
        t = ts.open(
            {**ts_spec(path, case.fmt), "metadata": {**metadata, "fill_value": case.json}}, create=True
        ).result()
        regions = peer_regions(SHAPE)
        for region in regions:
            t[region].write(data[region]).result()
        expected = expected_after(SHAPE, case.dtype, case.value, data, regions)
        assert_same(t.read().result(), expected)
        check_gpuzarr_reads(path, expected)
    else:
        a = gpuzarr.create_array(
            str(path),
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=case.dtype,
            fill_value=case.user_value,
            zarr_format=case.fmt,
            compressors=None,
        )
        regions = gpuzarr_regions(SHAPE)
        write_regions(a, data, regions)
        expected = expected_after(SHAPE, case.dtype, case.value, data, regions)
        check_gpuzarr_reads(path, expected)  # a fresh handle reads back what gpuzarr wrote
        check_ts_reads(path, case.fmt, expected)


@pytest.mark.parametrize("fmt", [2, 3])
def test_vlen_bytes_fill_keeps_trailing_nul(tmp_path: Path, fmt: int) -> None:
    """A vlen-bytes fill value ending in NUL reads back whole in partially written chunks.

    (zarr-python 3.1 has the same flaw, so this checks gpuzarr alone.)
    """
    fill = b"fb\x00"
    a = gpuzarr.create_array(
        str(tmp_path / "a.zarr"), shape=(4,), chunks=(2,), dtype=bytes, fill_value=fill, zarr_format=fmt
    )
    a[0] = b"x"
    assert a[...].tolist() == [b"x", fill, fill, fill]


@pytest.mark.parametrize("key", ["float64", "int32", "complex64", "bool", "string", "bytes", "S5"])
def test_v2_null_fill_value_zarr(tmp_path: Path, key: str) -> None:
    """zarr-python's v2 ``fill_value: null``: unwritten elements read as zarr-python reads them."""
    path = tmp_path / "a.zarr"
    z = zarr.create_array(str(path), shape=SHAPE, chunks=CHUNKS, dtype=zarr_dtype(key), fill_value=None, zarr_format=2)
    assert json.loads((path / ".zarray").read_text())["fill_value"] is None
    data = make_data(key, SHAPE)
    write_regions(z, data, peer_regions(SHAPE))
    check_gpuzarr_reads(path, np.asarray(z[...]))


def test_v2_default_fill_value_is_stored_not_null(tmp_path: Path) -> None:
    """gpuzarr's v2 ``fill_value=None`` stores the type's default, not zarr-python 3's
    ``null`` (which zarr-python 2 reads as "no fill value", leaving unwritten chunks
    uninitialised): every reader then fills unwritten chunks alike; a ``null`` written by
    zarr-python survives gpuzarr's rewrites of the document."""
    a = gpuzarr.create_array(str(tmp_path / "g.zarr"), shape=(4,), chunks=(2,), dtype="f4", zarr_format=2)
    assert json.loads((tmp_path / "g.zarr" / ".zarray").read_text())["fill_value"] == 0.0
    a[:2] = 1
    assert zarr.open_array(str(tmp_path / "g.zarr"), mode="r").fill_value == 0
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr"), mode="r")[:], [1, 1, 0, 0])
    zarr.create_array(str(tmp_path / "z.zarr"), shape=(4,), chunks=(2,), dtype="f4", fill_value=None, zarr_format=2)
    b = gpuzarr.open_array(str(tmp_path / "z.zarr"), mode="r+")
    b.attrs["edited"] = True
    b.resize((6,))
    assert json.loads((tmp_path / "z.zarr" / ".zarray").read_text())["fill_value"] is None


# --------------------------------------------------------------------------------------
# chunk key encodings

KEY_ENCODINGS = [
    pytest.param(3, {"name": "default", "separator": "/"}, "c/2/2", id="v3-default-slash"),
    pytest.param(3, {"name": "default", "separator": "."}, "c.2.2", id="v3-default-dot"),
    pytest.param(3, {"name": "v2", "separator": "."}, "2.2", id="v3-v2-dot"),
    pytest.param(3, {"name": "v2", "separator": "/"}, "2/2", id="v3-v2-slash"),
    pytest.param(2, {"name": "v2", "separator": "."}, "2.2", id="v2-dot"),
    pytest.param(2, {"name": "v2", "separator": "/"}, "2/2", id="v2-slash"),
]


def _chunk_files(path: Path) -> set[str]:
    names = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name not in names}


@pytest.mark.parametrize(("fmt", "encoding", "last_key"), KEY_ENCODINGS)
def test_chunk_key_encodings(tmp_path: Path, fmt: int, encoding: dict[str, str], last_key: str) -> None:
    """Both writers put the same chunks under the same keys; each reads the other's;
    tensorstore reads gpuzarr's."""
    data = make_data("int16", SHAPE)
    fill = fill_for("int16")
    kw = {"shape": SHAPE, "chunks": CHUNKS, "dtype": "int16", "fill_value": fill, "zarr_format": fmt}
    z = zarr.create_array(str(tmp_path / "z"), chunk_key_encoding=encoding, **kw)
    a = gpuzarr.create_array(str(tmp_path / "g"), chunk_key_encoding=encoding, **kw)
    regions = peer_regions(SHAPE)
    write_regions(z, data, regions)
    write_regions(a, data, regions)
    expected = expected_after(SHAPE, "int16", fill, data, regions)
    written = _chunk_files(tmp_path / "z")
    assert last_key in written
    assert _chunk_files(tmp_path / "g") == written
    check_gpuzarr_reads(tmp_path / "z", expected)
    check_zarr_reads(tmp_path / "g", expected)
    check_ts_reads(tmp_path / "g", fmt, expected)


# --------------------------------------------------------------------------------------
# shapes

SHAPES = [
    pytest.param((), (), id="0d"),
    pytest.param((0,), (4,), id="zero-length"),
    pytest.param((0, 7), (3, 4), id="zero-rows"),
    pytest.param((5, 0), (2, 3), id="zero-cols"),
    pytest.param((17,), (5,), id="1d-edge"),
    pytest.param((20, 13), (6, 5), id="2d-edge"),
    pytest.param((3, 4), (10, 10), id="chunk-larger-than-array"),
    pytest.param((12, 10), (4, 5), id="2d-exact"),
    pytest.param((7, 6, 5), (3, 4, 2), id="3d-edge"),
    pytest.param((5, 4, 6, 3), (2, 3, 4, 2), id="4d-edge"),
    pytest.param((1, 1, 9), (1, 1, 4), id="3d-singletons"),
]


def _shape_params() -> list[Any]:
    params = []
    for shape_param in SHAPES:
        shape, chunks = shape_param.values
        for fmt in (2, 3):
            for direction in DIRECTIONS:
                params.append(
                    pytest.param(shape, chunks, fmt, direction, id=f"{shape_param.id}-v{fmt}-{direction}")
                )
    return params


@pytest.mark.parametrize(("shape", "chunks", "fmt", "direction"), _shape_params())
def test_shapes_zarr(tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], fmt: int, direction: str) -> None:
    """0-d arrays, zero-length dimensions, edge chunks, 1-d to 4-d."""
    path = tmp_path / "a.zarr"
    key = "float32"
    fill = fill_for(key)
    data = make_data(key, shape)
    kw = {"shape": shape, "chunks": chunks, "dtype": key, "fill_value": fill, "zarr_format": fmt}
    if direction == "peer_writes":
        z = zarr.create_array(str(path), **kw)
        check_gpuzarr_reads(path, filled(shape, key, fill))  # nothing written yet
        regions = peer_regions(shape)
        write_regions(z, data, regions)
        check_gpuzarr_reads(path, expected_after(shape, key, fill, data, regions))
    else:
        a = gpuzarr.create_array(str(path), **kw)
        check_zarr_reads(path, filled(shape, key, fill))
        regions = gpuzarr_regions(shape)
        write_regions(a, data, regions)
        expected = expected_after(shape, key, fill, data, regions)
        check_gpuzarr_reads(path, expected)  # a fresh handle reads back what gpuzarr wrote
        check_zarr_reads(path, expected)
        if fmt == 3:
            check_ts_reads(path, fmt, expected)


# --------------------------------------------------------------------------------------
# groups, attributes, consolidated metadata

ROOT_ATTRS = {"title": "interop", "answer": 42, "ratio": 0.5, "nested": {"list": [1, "two", None, True]}}
SUB_ATTRS = {"unicode": "héllo 日本", "empty": {}, "numbers": [1.5, -2, 3]}
ARRAY_ATTRS = {"units": "m/s", "scale": [0.1, 0.2]}
MEMBERS = ["empty", "sub", "sub/deep", "sub/deep/arr", "sub/values", "top"]


def _build_tree(make_root: Callable[[], Any], fmt: int) -> dict[str, np.ndarray]:
    """Build the same tree with zarr-python or gpuzarr; returns each array's content."""
    root = make_root()
    root.attrs.update(ROOT_ATTRS)
    root.create_group("empty")
    sub = root.create_group("sub", attributes=SUB_ATTRS)
    deep = sub.create_group("deep")
    contents = {}
    top = root.create_array("top", shape=(7,), chunks=(3,), dtype="int32", fill_value=-1)
    top[1:5] = np.arange(4, dtype="int32")
    contents["top"] = np.array([-1, 0, 1, 2, 3, -1, -1], dtype="int32")
    values = sub.create_array("values", shape=SHAPE, chunks=CHUNKS, dtype="float64", fill_value=0.0)
    values.attrs.update(ARRAY_ATTRS)
    data = make_data("float64", SHAPE)
    values[:] = data
    contents["sub/values"] = data
    arr = deep.create_array("arr", shape=(4, 3), chunks=(2, 2), dtype=str, fill_value="")
    strings = make_data("string", (4, 3))
    arr[:] = strings
    contents["sub/deep/arr"] = strings
    return contents


def _check_tree_gpuzarr(group: gpuzarr.Group, contents: dict[str, np.ndarray], *, listing: bool = True) -> None:
    """Attributes and array contents by path; with ``listing``, the member lists too."""
    assert dict(group.attrs) == ROOT_ATTRS
    if listing:
        assert sorted(name for name, _ in group.members(max_depth=None)) == MEMBERS
        assert sorted(group.keys()) == ["empty", "sub", "top"]
        assert sorted(group["sub"].keys()) == ["deep", "values"]
    assert dict(group["sub"].attrs) == SUB_ATTRS
    assert dict(group["sub/deep"].attrs) == {}
    assert dict(group["sub/values"].attrs) == ARRAY_ATTRS
    assert dict(group["empty"].attrs) == {}
    for name, expected in contents.items():
        node = group[name]
        assert isinstance(node, gpuzarr.Array)
        assert_same(node[...], expected)


def _check_tree_zarr(group: Any, contents: dict[str, np.ndarray]) -> None:
    assert group.attrs.asdict() == ROOT_ATTRS
    assert sorted(name for name, _ in group.members(max_depth=None)) == MEMBERS
    assert group["sub"].attrs.asdict() == SUB_ATTRS
    assert group["sub/values"].attrs.asdict() == ARRAY_ATTRS
    for name, expected in contents.items():
        assert_same(group[name][...], expected)


@pytest.mark.parametrize("fmt", [2, 3])
def test_groups_zarr_to_gpuzarr(tmp_path: Path, fmt: int) -> None:
    """A zarr-python hierarchy with attributes reads the same in gpuzarr."""
    path = str(tmp_path / "tree.zarr")
    contents = _build_tree(lambda: zarr.open_group(path, mode="w", zarr_format=fmt), fmt)
    group = gpuzarr.open_group(path, mode="r")
    assert group.zarr_format == fmt
    _check_tree_gpuzarr(group, contents)


@pytest.mark.parametrize("fmt", [2, 3])
def test_groups_gpuzarr_to_zarr(tmp_path: Path, fmt: int) -> None:
    """A gpuzarr hierarchy with attributes reads the same in zarr-python."""
    path = str(tmp_path / "tree.zarr")
    contents = _build_tree(lambda: gpuzarr.open_group(path, mode="w", zarr_format=fmt), fmt)
    group = zarr.open_group(path, mode="r", use_consolidated=False)
    assert group.metadata.zarr_format == fmt
    _check_tree_zarr(group, contents)


def _delete_member_metadata(root: Path) -> None:
    """Remove every member's own metadata documents, keeping the root's."""
    names = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
    removed = 0
    for p in root.rglob("*"):
        if p.is_file() and p.name in names and p.parent != root:
            p.unlink()
            removed += 1
    assert removed


@pytest.mark.parametrize("fmt", [2, 3])
def test_consolidated_zarr_to_gpuzarr(tmp_path: Path, fmt: int) -> None:
    """zarr.consolidate_metadata -> gpuzarr finds members in it (their own metadata deleted)."""
    root = tmp_path / "tree.zarr"
    contents = _build_tree(lambda: zarr.open_group(str(root), mode="w", zarr_format=fmt), fmt)
    zarr.consolidate_metadata(str(root), zarr_format=fmt)
    if fmt == 2:
        assert (root / ".zmetadata").is_file()
    _delete_member_metadata(root)
    group = gpuzarr.open_group(str(root), mode="r", use_consolidated=True)
    assert group.metadata.consolidated is not None
    _check_tree_gpuzarr(group, contents, listing=False)


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("writer", ["zarr", "gpuzarr"])
def test_consolidated_members_listing(tmp_path: Path, writer: str, fmt: int) -> None:
    """Member lists of nested groups come from consolidated metadata (members' metadata deleted)."""
    root = str(tmp_path / "tree.zarr")
    opener = zarr.open_group if writer == "zarr" else gpuzarr.open_group
    contents = _build_tree(lambda: opener(root, mode="w", zarr_format=fmt), fmt)
    if writer == "zarr":
        zarr.consolidate_metadata(root, zarr_format=fmt)
    else:
        gpuzarr.consolidate_metadata(root)
    _delete_member_metadata(Path(root))
    _check_tree_gpuzarr(gpuzarr.open_group(root, mode="r"), contents)


@pytest.mark.parametrize("fmt", [2, 3])
def test_consolidated_gpuzarr_to_zarr(tmp_path: Path, fmt: int) -> None:
    """gpuzarr.consolidate_metadata -> zarr.open_consolidated reads it (members' metadata deleted)."""
    root = tmp_path / "tree.zarr"
    contents = _build_tree(lambda: gpuzarr.open_group(str(root), mode="w", zarr_format=fmt), fmt)
    gpuzarr.consolidate_metadata(str(root))
    if fmt == 2:
        doc = json.loads((root / ".zmetadata").read_text())
        assert doc["zarr_consolidated_format"] == 1
        assert "sub/values/.zarray" in doc["metadata"]
    else:
        doc = json.loads((root / "zarr.json").read_text())
        assert doc["consolidated_metadata"]["kind"] == "inline"
    _delete_member_metadata(root)
    group = zarr.open_consolidated(str(root), zarr_format=fmt)
    _check_tree_zarr(group, contents)


@pytest.mark.parametrize("fmt", [2, 3])
def test_consolidated_gpuzarr_to_gpuzarr(tmp_path: Path, fmt: int) -> None:
    """gpuzarr reads the consolidated metadata it wrote (members' metadata deleted)."""
    root = tmp_path / "tree.zarr"
    contents = _build_tree(lambda: gpuzarr.open_group(str(root), mode="w", zarr_format=fmt), fmt)
    gpuzarr.consolidate_metadata(str(root))
    _delete_member_metadata(root)
    _check_tree_gpuzarr(gpuzarr.open_group(str(root), mode="r"), contents, listing=False)


def test_consolidated_v3_attribute_update_keeps_document(tmp_path: Path) -> None:
    """gpuzarr changing a zarr-consolidated group's attributes rewrites zarr-python's
    consolidated document unchanged otherwise, and zarr-python still reads the tree."""
    root = tmp_path / "tree.zarr"
    contents = _build_tree(lambda: zarr.open_group(str(root), mode="w", zarr_format=3), 3)
    zarr.consolidate_metadata(str(root), zarr_format=3)
    before = json.loads((root / "zarr.json").read_text())
    group = gpuzarr.open_group(str(root), mode="r+")
    group.attrs["added"] = [1, 2]
    after = json.loads((root / "zarr.json").read_text())
    assert after["consolidated_metadata"] == before["consolidated_metadata"]
    assert after["attributes"] == {**ROOT_ATTRS, "added": [1, 2]}
    _delete_member_metadata(root)
    zgroup = zarr.open_consolidated(str(root), zarr_format=3)
    assert zgroup.attrs.asdict() == {**ROOT_ATTRS, "added": [1, 2]}
    for name, expected in contents.items():
        assert_same(zgroup[name][...], expected)


# --------------------------------------------------------------------------------------
# tensorstore

TS_V3_CHAINS: dict[str, list[dict[str, Any]]] = {
    "bytes": [c3("bytes", endian="little")],
    "big-gzip": [c3("bytes", endian="big"), c3("gzip", level=5)],
    "transpose-zstd": [c3("transpose", order=[1, 0]), c3("bytes", endian="little"), c3("zstd", level=3, checksum=True)],
    "blosc-lz4-shuffle": [c3("bytes", endian="little"), _blosc3("lz4", "shuffle")],
    "big-crc32c": [c3("bytes", endian="big"), c3("crc32c")],
    "transpose-big-blosc-crc32c": [
        c3("transpose", order=[1, 0]),
        c3("bytes", endian="big"),
        _blosc3("zstd", "bitshuffle", 3),
        c3("crc32c"),
    ],
    "zstd": [c3("bytes", endian="little"), c3("zstd", level=1, checksum=False)],
    "blosc-blosclz-noshuffle": [c3("bytes", endian="little"), _blosc3("blosclz", "noshuffle")],
}


def _ts_v3_params() -> list[Any]:
    names = list(TS_V3_CHAINS)
    params = [
        pytest.param(key, names[i % len(names)], id=f"{key}-{names[i % len(names)]}") for i, key in enumerate(NUMERIC)
    ]
    params += [pytest.param("float32", name, id=f"float32-{name}") for name in names]
    return params


def _ts_fill(key: str, index: int) -> Any:
    """The fill value of a tensorstore case: NaN for some float cases, else :func:`fill_for`."""
    if np.dtype(key).kind in "fc" and index % 2 == 0:
        return np.dtype(key).type(np.nan)
    return fill_for(key)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(("key", "chain_name"), _ts_v3_params())
def test_tensorstore_v3(tmp_path: Path, key: str, chain_name: str, direction: str) -> None:
    """zarr3 driver: numeric data types over tensorstore's codecs."""
    path = tmp_path / "a.zarr"
    chain = TS_V3_CHAINS[chain_name]
    fill = _ts_fill(key, list(TS_V3_CHAINS).index(chain_name) + NUMERIC.index(key))
    data = make_data(key, SHAPE)
    if direction == "peer_writes":
        metadata = {
            "shape": list(SHAPE),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(CHUNKS)}},
            "chunk_key_encoding": {"name": "default"},
            "data_type": key,
            "fill_value": fill_json(key, fill),
            "codecs": chain,
        }
        t = ts.open({**ts_spec(path, 3), "metadata": metadata}, create=True).result()
        regions = peer_regions(SHAPE)
        for region in regions:
            t[region].write(data[region]).result()
        expected = expected_after(SHAPE, key, fill, data, regions)
        assert_same(t.read().result(), expected)
        check_gpuzarr_reads(path, expected)
    else:
        filters = [c for c in chain if c["name"] == "transpose"]
        serializer = next(c for c in chain if c["name"] == "bytes")
        compressors = [c for c in chain if c["name"] not in ("transpose", "bytes")]
        a = gpuzarr.create_array(
            str(path),
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=key,
            fill_value=fill,
            filters=filters,
            serializer=serializer,
            compressors=compressors,
        )
        regions = gpuzarr_regions(SHAPE)
        write_regions(a, data, regions)
        expected = expected_after(SHAPE, key, fill, data, regions)
        check_gpuzarr_reads(path, expected)  # a fresh handle reads back what gpuzarr wrote
        check_ts_reads(path, 3, expected)


TS_V2_COMPRESSORS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "zlib": {"id": "zlib", "level": 3},
    "gzip": {"id": "gzip", "level": 5},
    "blosc-lz4-shuffle": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
    "blosc-zstd-bitshuffle": {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2},
    "blosc-zlib-noshuffle": {"id": "blosc", "cname": "zlib", "clevel": 5, "shuffle": 0},
    "zstd": {"id": "zstd", "level": 3},
    "bz2": {"id": "bz2", "level": 9},
}


def _ts_v2_params() -> list[Any]:
    names = list(TS_V2_COMPRESSORS)
    keys = [*NUMERIC, ">i4", ">f8", ">c16"]
    params = []
    for i, key in enumerate(keys):
        name = names[i % len(names)]
        order = "F" if i % 3 == 1 else "C"
        sep = "/" if i % 2 else "."
        params.append(pytest.param(key, name, order, sep, id=f"{key}-{name}-{order}-{sep}"))
    params += [pytest.param("int16", name, "C", ".", id=f"int16-{name}") for name in names]
    return params


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(("key", "compressor", "order", "sep"), _ts_v2_params())
def test_tensorstore_v2(tmp_path: Path, key: str, compressor: str, order: str, sep: str, direction: str) -> None:
    """zarr (v2) driver: numeric dtypes (big-endian too), order C/F, both separators."""
    path = tmp_path / "a.zarr"
    config = TS_V2_COMPRESSORS[compressor]
    fill = _ts_fill(key, len(key))
    data = make_data(key, SHAPE)
    if direction == "peer_writes":
        metadata = {
            "shape": list(SHAPE),
            "chunks": list(CHUNKS),
            "dtype": np.dtype(key).str,
            "fill_value": fill_json(key, fill),
            "order": order,
            "compressor": config,
            "filters": None,
            "dimension_separator": sep,
        }
        t = ts.open({**ts_spec(path, 2), "metadata": metadata}, create=True).result()
        regions = peer_regions(SHAPE)
        for region in regions:
            t[region].write(data[region]).result()
        expected = expected_after(SHAPE, key, fill, data, regions)
        assert_same(t.read().result(), expected)
        a = check_gpuzarr_reads(path, expected)
        assert a.order == order
    else:
        a = gpuzarr.create_array(
            str(path),
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=key,
            fill_value=fill,
            compressors=config,
            order=order,
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": sep},
        )
        regions = gpuzarr_regions(SHAPE)
        write_regions(a, data, regions)
        expected = expected_after(SHAPE, key, fill, data, regions)
        check_gpuzarr_reads(path, expected)  # a fresh handle reads back what gpuzarr wrote
        check_ts_reads(path, 2, expected)

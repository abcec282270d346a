"""Public API behaviour, mirroring zarr-python 3's semantics.

Covers opening and creating arrays and groups over every kind of store argument, the
access modes, overwrite rules, array properties, attributes, hierarchy navigation,
reads into caller buffers, resize, empty-chunk handling, settings, devices, and that
``import gpuzarr`` stays CPU-only and fork-safe.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import os
import pathlib
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from typing import Any

import numcodecs
import numpy as np
import pytest

import gpuzarr
from gpuzarr import Array, Group
from gpuzarr.errors import (
    ArrayNotFoundError,
    ContainsArrayError,
    ContainsGroupError,
    DeviceUnavailableError,
    GroupNotFoundError,
    NodeNotFoundError,
    ReadOnlyError,
)
from gpuzarr.stores import LocalStore, MemoryStore, Store, ZipStore

REPO = pathlib.Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------
# store arguments: every form create_array/open_array accept, over one location each

STORE_KINDS = ["dir", "zip", "dict", "memory", "local"]


class StoreArg:
    """Hands out the store argument of one kind, pointing at the same data each time."""

    def __init__(self, kind: str, tmp_path: pathlib.Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.shared: dict[str, bytes] = {}

    def __call__(self) -> Any:
        if self.kind == "dir":
            return str(self.tmp_path / "data.zarr")
        if self.kind == "zip":
            return str(self.tmp_path / "data.zip")
        if self.kind == "dict":
            return self.shared
        if self.kind == "memory":
            return MemoryStore(self.shared)
        return LocalStore(self.tmp_path / "local.zarr")

    def finish(self, node: Array | Group) -> None:
        """Make what was written visible to a later open (a zip is complete on close)."""
        if self.kind == "zip":
            node.store.close()


@pytest.fixture(params=STORE_KINDS)
def store_arg(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> StoreArg:
    return StoreArg(request.param, tmp_path)


def _data(shape: tuple[int, ...] = (20, 30), dtype: str = "int32") -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


# --------------------------------------------------------------------------------------
# store arguments


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_create_write_reopen_read(store_arg: StoreArg, zarr_format: int) -> None:
    data = _data()
    a = gpuzarr.create_array(store_arg(), shape=data.shape, chunks=(7, 8), dtype="int32", zarr_format=zarr_format)
    a[...] = data
    store_arg.finish(a)
    b = gpuzarr.open_array(store_arg())
    assert b.read_only
    assert b.zarr_format == zarr_format
    np.testing.assert_array_equal(b[...], data)
    np.testing.assert_array_equal(b[3:17:2, ::-4], data[3:17:2, ::-4])
    with pytest.raises(ReadOnlyError):
        b[0, 0] = 1
    with pytest.raises(ReadOnlyError):
        b.attrs["x"] = 1
    with pytest.raises(ReadOnlyError):
        b.resize((5, 5))
    np.testing.assert_array_equal(b[...], data)  # the refused writes changed nothing
    if store_arg.kind == "zip":
        b.store.close()


def test_group_hierarchy_roundtrip(store_arg: StoreArg) -> None:
    g = gpuzarr.open_group(store_arg(), mode="w")
    g.attrs["title"] = "root"
    g.create_array("x/y/arr", shape=(4, 4), chunks=(2, 2), dtype="f8")[...] = np.eye(4)
    store_arg.finish(g)
    h = gpuzarr.open_group(store_arg(), mode="r")
    assert h.attrs["title"] == "root"
    np.testing.assert_array_equal(h["x/y/arr"][...], np.eye(4))
    assert isinstance(h["x"], Group)
    assert h["x/y"].read_only
    if store_arg.kind == "zip":
        h.store.close()


def test_zip_store_is_a_valid_zip_after_close(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.zip"
    a = gpuzarr.create_array(str(path), shape=(10,), chunks=(4,), dtype="u2", compressors=None)
    a[...] = np.arange(10)
    a.store.close()
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert zf.testzip() is None
    assert {"zarr.json", "c/0", "c/1", "c/2"} <= names
    b = gpuzarr.open_array(ZipStore(path, "r"))
    np.testing.assert_array_equal(b[...], np.arange(10))
    b.store.close()


def test_open_array_on_explicit_writable_store_in_mode_r_is_read_only() -> None:
    store = MemoryStore()
    gpuzarr.create_array(store, shape=(3,), dtype="i1")
    a = gpuzarr.open_array(store, mode="r")
    assert a.read_only
    with pytest.raises(ReadOnlyError):
        a[0] = 1


def test_read_only_store_refuses_creation(tmp_path: pathlib.Path) -> None:
    store = LocalStore(tmp_path / "ro", read_only=True)
    with pytest.raises(ReadOnlyError):
        gpuzarr.create_array(store, shape=(3,), dtype="i1")
    with pytest.raises(ReadOnlyError):
        gpuzarr.create_group(store)


def test_store_none_is_a_fresh_memory_store() -> None:
    g = gpuzarr.open_group(None, mode="a")
    assert isinstance(g.store, MemoryStore)
    g.create_array("a", shape=(2,), dtype="i1")
    assert "a" in g


def test_bad_store_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        gpuzarr.create_array(42, shape=(3,), dtype="i1")


def test_path_argument(tmp_path: pathlib.Path) -> None:
    root = str(tmp_path / "p.zarr")
    a = gpuzarr.create_array(root, name="deep/er/arr", shape=(3,), dtype="i2")
    a[...] = [1, 2, 3]
    assert a.path == "deep/er/arr"
    assert a.name == "/deep/er/arr"
    assert a.basename == "arr"
    b = gpuzarr.open_array(root, path="/deep/er/arr/")
    np.testing.assert_array_equal(b[...], [1, 2, 3])
    with pytest.raises(ValueError):
        gpuzarr.open_array(root, path="deep/../x")


# --------------------------------------------------------------------------------------
# access modes


def test_mode_validation() -> None:
    for fn in (gpuzarr.open_array, gpuzarr.open_group, gpuzarr.open):
        with pytest.raises(ValueError, match="mode"):
            fn({}, mode="x")  # type: ignore[operator]
    with pytest.raises(ValueError):
        gpuzarr.open_array({}, mode="w")


def test_open_array_modes(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "m.zarr")
    with pytest.raises(ArrayNotFoundError):
        gpuzarr.open_array(path, mode="r")
    with pytest.raises(ArrayNotFoundError):
        gpuzarr.open_array(path, mode="r+")
    gpuzarr.create_array(path, shape=(4,), chunks=(2,), dtype="i4")
    for mode in ("r+", "a"):
        a = gpuzarr.open_array(path, mode=mode)
        assert not a.read_only
        a[...] = [1, 2, 3, 4]
    np.testing.assert_array_equal(gpuzarr.open_array(path)[...], [1, 2, 3, 4])


def test_open_array_on_group_and_wrong_format() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.create_group(store)
    with pytest.raises(ArrayNotFoundError):
        gpuzarr.open_array(store)
    gpuzarr.create_array(store, name="a", shape=(2,), dtype="i1")
    with pytest.raises(ArrayNotFoundError):
        gpuzarr.open_array(store, path="a", zarr_format=2)
    assert gpuzarr.open_array(store, path="a", zarr_format=3).zarr_format == 3


def test_open_group_modes(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "g.zarr")
    for mode in ("r", "r+"):
        with pytest.raises(GroupNotFoundError):
            gpuzarr.open_group(path, mode=mode)
    g = gpuzarr.open_group(path, mode="a", attributes={"k": 1})
    assert g.attrs.asdict() == {"k": 1}
    g.create_array("child", shape=(2,), dtype="i1")
    # "a" and "r+" open what exists, unchanged
    assert "child" in gpuzarr.open_group(path, mode="a")
    assert gpuzarr.open_group(path, mode="r+").attrs["k"] == 1
    # "w-" refuses an existing node
    with pytest.raises(ContainsGroupError):
        gpuzarr.open_group(path, mode="w-")
    with pytest.raises(ContainsGroupError):
        gpuzarr.create_group(path)
    # "w" replaces the group and everything below it
    w = gpuzarr.open_group(path, mode="w")
    assert list(w.keys()) == []
    assert w.attrs.asdict() == {}
    assert list(gpuzarr.open_group(path, mode="r").keys()) == []


def test_open_group_on_array_refuses() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.create_array(store, shape=(2,), dtype="i1")
    with pytest.raises(ContainsArrayError):
        gpuzarr.open_group(store, mode="a")
    with pytest.raises(ContainsArrayError):
        gpuzarr.open_group(store, mode="w-")
    with pytest.raises(FileExistsError):  # both Contains* errors are FileExistsErrors
        gpuzarr.create_group(store)


def test_open_group_below_array_refuses() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.create_array(store, name="a", shape=(2,), dtype="i1")
    with pytest.raises(ContainsArrayError):
        gpuzarr.open_group(store, mode="a", path="a/sub")
    assert "a/sub/zarr.json" not in store


def test_open_group_creates_at_path_with_implicit_parents() -> None:
    store: dict[str, bytes] = {}
    g = gpuzarr.open_group(store, mode="a", path="p/q", zarr_format=2)
    assert g.zarr_format == 2
    assert {"p/q/.zgroup", "p/.zgroup", ".zgroup"} <= set(store)


def test_open_group_mode_w_at_path_keeps_siblings(tmp_path: pathlib.Path) -> None:
    for where in (str(tmp_path / "s.zarr"), str(tmp_path / "s.zip")):
        g = gpuzarr.open_group(where, mode="w")
        g.create_array("keep", shape=(2,), dtype="i1")[...] = 5
        g.create_group("replace").create_group("old")
        g.store.close()
        w = gpuzarr.open_group(where, mode="w", path="replace")
        assert list(w.keys()) == []
        w.store.close()
        r = gpuzarr.open_group(where, mode="r")
        np.testing.assert_array_equal(r["keep"][...], [5, 5])
        assert "replace/old" not in r
        r.store.close()


def test_open_modes() -> None:
    store: dict[str, bytes] = {}
    with pytest.raises(NodeNotFoundError):
        gpuzarr.open(store, mode="r")
    with pytest.raises(KeyError):  # NodeNotFoundError is a KeyError, as in zarr-python
        gpuzarr.open(store, mode="r+")
    g = gpuzarr.open(store, mode="a")
    assert isinstance(g, Group)
    a = gpuzarr.open(store, mode="a", path="arr", shape=(3,), dtype="i2")
    assert isinstance(a, Array)
    a[...] = [1, 2, 3]
    # an existing array is opened, not recreated
    same = gpuzarr.open(store, mode="a", path="arr", shape=(3,), dtype="i2")
    np.testing.assert_array_equal(same[...], [1, 2, 3])
    ro = gpuzarr.open(store, mode="r", path="arr")
    assert isinstance(ro, Array) and ro.read_only
    assert isinstance(gpuzarr.open(store, mode="r"), Group)
    # r+ opens what exists and creates nothing, shape or not; a group is not an array
    with pytest.raises(NodeNotFoundError):
        gpuzarr.open(store, mode="r+", path="other", shape=(3,), dtype="i2")
    assert "other/zarr.json" not in store
    for mode in ("r", "r+", "a"):
        with pytest.raises(ContainsGroupError):
            gpuzarr.open(store, mode=mode, shape=(3,), dtype="i2")  # the root is a group


def test_open_mode_w_replaces() -> None:
    store: dict[str, bytes] = {}
    a = gpuzarr.open(store, mode="w", shape=(3,), dtype="i2")
    a[...] = 7
    b = gpuzarr.open(store, mode="w", shape=(5,), dtype="f4")
    assert isinstance(b, Array) and b.shape == (5,) and b.dtype == np.float32
    np.testing.assert_array_equal(b[...], np.zeros(5))
    g = gpuzarr.open(store, mode="w")  # no shape: a fresh group replaces the array
    assert isinstance(g, Group)
    assert list(g.keys()) == []
    assert not any(k.startswith("c/") for k in store)


def test_open_mode_w_minus_refuses_existing() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.open(store, mode="w-", shape=(3,), dtype="i2")
    with pytest.raises(ContainsArrayError):
        gpuzarr.open(store, mode="w-", shape=(3,), dtype="i2")
    with pytest.raises(ContainsArrayError):
        gpuzarr.open(store, mode="w-")
    other: dict[str, bytes] = {}
    gpuzarr.open(other, mode="w-")
    with pytest.raises(ContainsGroupError):
        gpuzarr.open(other, mode="w-")


# --------------------------------------------------------------------------------------
# overwrite and data=


def test_create_array_refuses_existing_nodes() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.create_array(store, name="a", shape=(4,), chunks=(2,), dtype="i4")[...] = 1
    with pytest.raises(ContainsArrayError):
        gpuzarr.create_array(store, name="a", shape=(4,), dtype="i4")
    gpuzarr.create_group(store, path="g")
    with pytest.raises(ContainsGroupError):
        gpuzarr.create_array(store, name="g", shape=(4,), dtype="i4")
    with pytest.raises(ContainsArrayError):  # nothing may be created below an array
        gpuzarr.create_array(store, name="a/b", shape=(4,), dtype="i4")


def test_create_array_overwrite_replaces_and_drops_old_chunks() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.create_array(store, name="a", shape=(10,), chunks=(2,), dtype="i4")[...] = 1
    assert sum(k.startswith("a/c/") for k in store) == 5
    b = gpuzarr.create_array(store, name="a", shape=(3,), chunks=(3,), dtype="f8", overwrite=True, zarr_format=2)
    assert b.zarr_format == 2
    assert not any(k.startswith("a/c/") for k in store)
    assert "a/zarr.json" not in store
    np.testing.assert_array_equal(gpuzarr.open_array(store, path="a")[...], np.zeros(3))
    # overwrite also replaces a group (and its members)
    gpuzarr.create_group(store, path="g").create_array("m", shape=(1,), dtype="i1")
    gpuzarr.create_array(store, name="g", shape=(1,), dtype="i1", overwrite=True)
    assert not any(k.startswith("g/m") for k in store)


def test_create_array_overwrite_in_zip_keeps_siblings(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "o.zip")
    gpuzarr.create_array(path, name="keep", shape=(2,), dtype="i1", data=None).store.close()
    a = gpuzarr.create_array(path, name="keep2", shape=(2,), dtype="i1")
    a[...] = 3
    a.store.close()
    gpuzarr.create_array(path, name="keep2", shape=(4,), dtype="i1", overwrite=True).store.close()
    g = gpuzarr.open_group(path, mode="r")
    assert sorted(g.keys()) == ["keep", "keep2"]
    assert g["keep2"].shape == (4,)
    g.store.close()


def test_chunk_shape_forms() -> None:
    assert gpuzarr.create_array({}, shape=(12, 10), chunks=5, dtype="i4").chunks == (5, 5)
    assert gpuzarr.create_array({}, shape=(12, 10), chunks=(None, -1), dtype="i4").chunks == (12, 10)
    assert gpuzarr.create_array({}, shape=(12, 0), chunks=(4, -1), dtype="i4").chunks == (4, 1)
    assert gpuzarr.create_array({}, shape=(12,), chunks=np.array([4]), dtype="i4").chunks == (4,)
    auto = gpuzarr.create_array({}, shape=(4000, 4000), dtype="f8").chunks
    assert np.prod(auto) * 8 <= 2**20 and all(c >= 1 for c in auto)
    assert gpuzarr.create_array({}, shape=(3, 4), dtype="f8", chunks="auto").chunks == (3, 4)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_create_array_with_data(zarr_format: int) -> None:
    data = _data((5, 6), "float32")
    a = gpuzarr.create_array({}, data=data, chunks=(2, 4), zarr_format=zarr_format)
    assert a.shape == (5, 6) and a.dtype == np.float32
    np.testing.assert_array_equal(a[...], data)
    # explicit dtype wins over the data's
    b = gpuzarr.create_array({}, data=data, dtype="float64", zarr_format=zarr_format)
    assert b.dtype == np.float64
    np.testing.assert_array_equal(b[...], data)
    strings = np.array(["a", "bcd", ""], dtype=np.dtypes.StringDType())
    s = gpuzarr.create_array({}, data=strings, zarr_format=zarr_format)
    assert list(s[...]) == ["a", "bcd", ""]


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        ([2**63 + 12345, 1], "uint64"),
        (300, "uint8"),
        (-1, "uint8"),
        (2**40, "int32"),
        (float("nan"), "int32"),
        (np.float64("nan"), "int32"),
        (1 + 2j, "float64"),
        (np.array([300, 1]), "uint8"),
        ([1.5, 2.5], "int32"),
        ("2020-01-01", "datetime64[s]"),
        (None, "float32"),
        (b"abc", "V3"),
    ],
)
def test_assignment_follows_numpy(value: Any, dtype: str) -> None:
    """``a[...] = value`` stores what NumPy's ``ndarray[...] = value`` stores (exact
    Python ints in a list, arrays cast unsafely), and raises what it raises (300 into
    uint8, NaN into int32), never a silently wrapped or rounded value."""
    expected = np.zeros(2, dtype=dtype)
    a = gpuzarr.create_array({}, shape=(2,), chunks=(2,), dtype=dtype)
    try:
        expected[...] = value
    except Exception as exc:  # (whatever NumPy raises, gpuzarr raises)
        with pytest.raises(type(exc)):
            a[...] = value
        np.testing.assert_array_equal(a[...], np.zeros(2, dtype=dtype))  # (a refused value writes nothing)
        return
    a[...] = value
    np.testing.assert_array_equal(a[...], expected)
    assert a[...].tobytes() == expected.tobytes()


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", ["M8[s]", "m8[ms]"])
def test_times_default_to_nat_as_in_zarr_python(zarr_format: int, dtype: str) -> None:
    a = gpuzarr.create_array({}, shape=(2,), chunks=(2,), dtype=dtype, zarr_format=zarr_format)
    assert np.isnat(a.fill_value) and np.isnat(a[...]).all()
    assert a.fill_value.dtype == np.dtype(dtype), "NaT of the array's unit"
    if zarr_format == 2:  # a null fill_value (as zarr-python writes it) means the same
        store: dict[str, bytes] = {}
        gpuzarr.create_array(store, shape=(2,), chunks=(2,), dtype=dtype, zarr_format=2)
        doc = json.loads(store[".zarray"])
        doc["fill_value"] = None
        store[".zarray"] = json.dumps(doc).encode()
        assert np.isnat(gpuzarr.open_array(store)[...]).all()


def test_raw_types_are_written_as_zarr_python_names_and_read_in_both() -> None:
    """NumPy ``V3`` is stored as zarr-python's ``raw_bytes`` (it reads no ``r24``); the
    spec's ``r24`` is read, and accepted as a dtype."""
    a = gpuzarr.create_array({}, shape=(3,), chunks=(2,), dtype="V3", fill_value=b"abc")
    doc = a.metadata.to_json()
    assert doc["data_type"] == {"name": "raw_bytes", "configuration": {"length_bytes": 3}}
    assert doc["fill_value"] == "YWJj"  # base64, as zarr-python writes it
    r = gpuzarr.create_array({}, shape=(3,), chunks=(2,), dtype="r24")
    assert r.dtype == np.dtype("V3") and r.metadata.to_json()["data_type"] == "r24"


@pytest.mark.parametrize("dtype", [">i4", ">f8", ">c16", "<i2", "=u8", "S3", "u1"])
def test_v2_keeps_requested_byte_order(dtype: str) -> None:
    """As in zarr-python, a v2 array stores the byte order asked for; memory stays native."""
    store: dict[str, bytes] = {}
    data = np.arange(5).astype(dtype)
    a = gpuzarr.create_array(store, data=data, zarr_format=2, compressors=None)
    stored = json.loads(store[".zarray"])["dtype"]
    assert stored == np.dtype(dtype).str  # same kind, size and byte order as asked
    assert a.dtype.isnative
    assert store["0"] == data.tobytes()  # the chunk holds the bytes in that order
    np.testing.assert_array_equal(gpuzarr.open_array(store)[...], data)
    v3 = gpuzarr.create_array({}, data=data, compressors=None)  # v3: the bytes codec decides
    np.testing.assert_array_equal(v3[...], data)


def test_create_array_needs_shape_and_dtype() -> None:
    with pytest.raises(TypeError):
        gpuzarr.create_array({}, shape=(3,))
    with pytest.raises(TypeError):
        gpuzarr.create_array({}, dtype="i4")


def test_create_array_argument_errors() -> None:
    with pytest.raises(ValueError):
        gpuzarr.create_array({}, shape=(-1,), dtype="i4")
    with pytest.raises(ValueError):
        gpuzarr.create_array({}, shape=(4, 4), chunks=(2,), dtype="i4")
    with pytest.raises(ValueError):
        gpuzarr.create_array({}, shape=(4,), chunks=(0,), dtype="i4")
    with pytest.raises(ValueError):
        gpuzarr.create_array({}, shape=(4,), dtype="i4", zarr_format=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        gpuzarr.create_array({}, shape=(4,), dtype="u1", fill_value=300)
    with pytest.raises(ValueError):
        gpuzarr.create_array({}, shape=(4,), dtype="i4", dimension_names=["a", "b"])
    with pytest.raises(ValueError):
        gpuzarr.create_array({}, shape=(4,), dtype="i4", order="K")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# properties


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_array_properties(zarr_format: int) -> None:
    store: dict[str, bytes] = {}
    a = gpuzarr.create_array(
        store,
        name="grp/arr",
        shape=(10, 7),
        chunks=(4, 3),
        dtype="float32",
        fill_value=1.5,
        zarr_format=zarr_format,
        attributes={"units": "m"},
    )
    assert a.shape == (10, 7)
    assert a.dtype == np.dtype("float32")
    assert a.chunks == (4, 3)
    assert a.shards is None
    assert a.fill_value == np.float32(1.5)
    assert a.attrs.asdict() == {"units": "m"}
    assert a.metadata.zarr_format == zarr_format
    assert a.metadata.shape == (10, 7)
    assert a.nbytes == 10 * 7 * 4
    assert a.nchunks == 3 * 3
    assert a.cdata_shape == (3, 3)
    assert a.nchunks_initialized == 0
    assert a.ndim == 2
    assert a.size == 70
    assert a.name == "/grp/arr"
    assert a.path == "grp/arr"
    assert a.zarr_format == zarr_format
    assert a.store is not None and isinstance(a.store, Store)
    assert repr(a).startswith("<gpuzarr.Array '/grp/arr'")
    np.testing.assert_array_equal(a[...], np.full((10, 7), 1.5, dtype="f4"))
    a[:4, :3] = 0
    a[9, 6] = 2
    assert a.nchunks_initialized == 2
    assert sorted(a.stored_chunk_keys()) == sorted([a._layout.key((0, 0)), a._layout.key((2, 2))])
    assert a.nbytes_stored() > 0


def test_array_codec_properties() -> None:
    a = gpuzarr.create_array(
        {},
        shape=(4, 4),
        dtype="i4",
        filters=[{"name": "transpose", "configuration": {"order": [1, 0]}}],
        compressors=[{"name": "gzip", "configuration": {"level": 1}}, {"name": "crc32c"}],
    )
    assert [c.name for c in a.filters] == ["transpose"]
    assert a.serializer.name == "bytes"
    assert [c.name for c in a.compressors] == ["gzip", "crc32c"]
    assert len(a.codecs) == 4


def test_create_array_with_unfit_data_stores_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.zarr"
    with pytest.raises(ValueError, match=r"data of shape \(4,\) does not fit shape \(5,\)"):
        gpuzarr.create_array(path, shape=(5,), dtype="i4", data=np.arange(4))
    with pytest.raises(OverflowError):
        gpuzarr.create_array(path, shape=(2,), dtype="u1", data=[300, 1])
    assert not path.exists()
    # (and the next call is not refused by a half-made array)
    a = gpuzarr.create_array(path, shape=(2,), dtype="u8", data=[2**63 + 12345, 1])
    assert a[...].tolist() == [2**63 + 12345, 1]
    assert gpuzarr.create_array({}, shape=(2, 3), dtype="f4", data=7)[...].tolist() == [[7.0] * 3] * 2


def test_create_array_with_torch_data_infers_its_type() -> None:
    torch = pytest.importorskip("torch")
    a = gpuzarr.create_array({}, data=torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert a.dtype == np.float32 and a[...].tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_append_mask_writes_and_attribute_updates_as_zarr_python(zarr_format: int) -> None:
    import zarr

    results = []
    for lib in (gpuzarr, zarr):
        a = lib.create_array({}, shape=(2, 3), chunks=(2, 2), dtype="i4", zarr_format=zarr_format)
        a[:] = 1
        shapes = [a.append(np.full((1, 3), 5)), a.append(np.full((3, 2), 7), axis=1)]
        a.set_mask_selection(a[:] == 5, 9)
        assert dict(a.update_attributes({"k": 1}).attrs) == {"k": 1}
        results.append((shapes, a[:].tolist(), dict(a.attrs)))
    assert results[0] == results[1]
    a = gpuzarr.create_array({}, shape=(2, 3), chunks=(2, 2), dtype="i4")
    with pytest.raises(ValueError, match="does not fit shape"):
        a.append(np.zeros((1, 4)))
    assert a.shape == (2, 3), "a refused append changes nothing"


def test_info_and_tree() -> None:
    g = gpuzarr.open_group({}, mode="w")
    a = g.create_array("images/raw", shape=(10, 8), chunks=(5, 8), dtype="uint16")
    g.create_array("labels", shape=(10,), chunks=(5,), shards=(10,), dtype="i4")
    info = dict(line.split(" : ", 1) for line in a.info.splitlines())
    assert {k.strip(): v for k, v in info.items()} == {
        "Type": "Array", "Zarr format": "3", "Data type": "uint16", "Fill value": "0", "Shape": "(10, 8)",
        "Chunk shape": "(5, 8)", "Order": "C", "Read-only": "False", "Store type": "MemoryStore",
        "Filters": "()", "Serializer": "bytes", "Compressors": "('zstd',)", "No. bytes": "160",
    }
    assert "Shard shape        : (10,)" in g["labels"].info
    a[:5] = 1
    complete = a.info_complete().splitlines()
    assert complete[: len(a.info.splitlines())] == a.info.splitlines()
    stored = a.nbytes_stored()
    assert complete[-3:] == [f"No. bytes stored   : {stored}", f"Storage ratio      : {round(160 / stored, 1)}",
                             "Chunks Initialized : 1"]
    assert g.tree().splitlines() == ["/", "  images", "    raw (10, 8) uint16", "  labels (10,) int32"]


def test_require_array() -> None:
    g = gpuzarr.open_group({}, mode="w")
    x = g.require_array("x", shape=(4,), dtype="i4")
    x[:] = 3
    assert g.require_array("x", shape=4, dtype="int32")[:].tolist() == [3] * 4
    with pytest.raises(TypeError, match="shape"):
        g.require_array("x", shape=(5,), dtype="i4")
    with pytest.raises(TypeError, match="dtype"):
        g.require_array("x", shape=(4,), dtype="f8")
    g.create_group("sub")
    with pytest.raises(ContainsGroupError):
        g.require_array("sub", shape=(4,), dtype="i4")


def test_sizes_of_huge_arrays_are_exact() -> None:
    # (int64 products wrapped to 0 for 2**64 elements.)
    a = gpuzarr.create_array({}, shape=(2**32, 2**32), chunks=(2**16, 2**16), dtype="f4")
    assert (a.size, a.nbytes, a.nchunks) == (2**64, 2**66, 2**32)


def test_zero_size_and_zero_dim_arrays() -> None:
    empty = gpuzarr.create_array({}, shape=(0, 5), chunks=(2, 2), dtype="i2")
    assert empty.size == 0 and empty.nchunks == 0
    assert empty[...].shape == (0, 5)
    empty[...] = np.zeros((0, 5))
    scalar = gpuzarr.create_array({}, shape=(), dtype="f8", fill_value=2.5)
    assert scalar.ndim == 0 and scalar.size == 1 and scalar.nchunks == 1
    assert scalar[()] == 2.5
    scalar[()] = 4.0
    assert scalar[...] == 4.0
    with pytest.raises(TypeError):
        len(scalar)
    with pytest.raises(TypeError):
        iter(scalar).__next__()


# --------------------------------------------------------------------------------------
# attributes


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("node", ["array", "group"])
def test_attributes_persist(tmp_path: pathlib.Path, zarr_format: int, node: str) -> None:
    path = str(tmp_path / "attrs.zarr")
    if node == "array":
        obj: Array | Group = gpuzarr.create_array(path, shape=(2,), dtype="i1", zarr_format=zarr_format)
        reopen: Callable[[], Array | Group] = lambda: gpuzarr.open_array(path)  # noqa: E731
    else:
        obj = gpuzarr.open_group(path, mode="w", zarr_format=zarr_format)
        reopen = lambda: gpuzarr.open_group(path, mode="r")  # noqa: E731
    obj.attrs["a"] = 1
    obj.attrs["nested"] = {"x": [1, 2.5, None], "s": "text"}
    assert reopen().attrs.asdict() == {"a": 1, "nested": {"x": [1, 2.5, None], "s": "text"}}
    obj.attrs.update({"b": True, "a": 2})
    assert reopen().attrs.asdict() == {"a": 2, "nested": {"x": [1, 2.5, None], "s": "text"}, "b": True}
    del obj.attrs["nested"]
    got = reopen().attrs
    assert dict(got) == {"a": 2, "b": True}
    assert "a" in got and "nested" not in got and len(got) == 2
    with pytest.raises(KeyError):
        del obj.attrs["missing"]
    obj.attrs.put({})
    assert reopen().attrs.asdict() == {}
    if zarr_format == 2:  # cleared attributes remove .zattrs, as zarr-python does
        assert not os.path.exists(os.path.join(path, ".zattrs"))


def test_attributes_with_numpy_and_nonfinite_values() -> None:
    store: dict[str, bytes] = {}
    g = gpuzarr.open_group(store, mode="w")
    g.attrs.update({"i": np.int64(3), "f": np.float32(0.5), "nan": float("nan")})
    back = gpuzarr.open_group(store, mode="r").attrs
    assert back["i"] == 3 and back["f"] == 0.5
    assert back["nan"] == "NaN"  # the spec forbids bare NaN in JSON



@pytest.mark.parametrize("zarr_format", [2, 3])
def test_reopening_unchanged_metadata_reuses_its_parse(tmp_path: pathlib.Path, zarr_format: int) -> None:
    path = str(tmp_path / "memo.zarr")
    a = gpuzarr.create_array(path, shape=(4,), chunks=(2,), dtype="i2", zarr_format=zarr_format)
    a[:] = np.arange(4, dtype="i2")
    a.attrs["kept"] = [1, 2]
    first, second = gpuzarr.open_array(path, mode="r+"), gpuzarr.open_array(path)
    # The same documents: the metadata parsed once, and its codec chain built once.
    assert second.metadata is first.metadata
    assert second._chain is first._chain
    np.testing.assert_array_equal(second[:], np.arange(4, dtype="i2"))
    # Changed documents are parsed anew, whoever changed them.
    first.attrs["kept"] = [3]
    third = gpuzarr.open_array(path)
    assert third.metadata is not first.metadata and third.attrs.asdict() == {"kept": [3]}
    gpuzarr.create_array(path, shape=(6,), chunks=(3,), dtype="i2", zarr_format=zarr_format, overwrite=True)
    assert gpuzarr.open_array(path).shape == (6,)
    # Attributes changed in place (which frozen metadata does not invite) are not handed
    # to the next handle: its metadata is parsed from the documents again.
    reopened = gpuzarr.open_array(path)
    reopened.metadata.attributes["stray"] = 1
    assert gpuzarr.open_array(path).attrs.asdict() == {}


def test_large_metadata_documents_are_parsed_each_time(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "large.zarr")
    a = gpuzarr.create_array(path, shape=(2,), dtype="i1")
    a.attrs["bulk"] = "x" * 100_000
    first, second = gpuzarr.open_array(path), gpuzarr.open_array(path)
    assert second.metadata == first.metadata and second.metadata is not first.metadata

# --------------------------------------------------------------------------------------
# groups


def _tree() -> Group:
    g = gpuzarr.open_group({}, mode="w")
    g.create_array("a1", shape=(2,), dtype="i1")
    g.create_group("g1").create_array("inner", shape=(3,), dtype="f4")
    g.create_group("g1/sub")
    g.create_array("g2/deep/arr", shape=(1, 1), dtype="u2")
    return g


def test_group_members() -> None:
    g = _tree()
    assert list(g.keys()) == ["a1", "g1", "g2"]
    assert list(g) == ["a1", "g1", "g2"]
    assert len(g) == 3
    assert [n for n, _ in g.arrays()] == ["a1"]
    assert [n for n, _ in g.groups()] == ["g1", "g2"]
    assert list(g.array_keys()) == ["a1"]
    assert list(g.group_keys()) == ["g1", "g2"]
    deep = dict(g.members(max_depth=None))
    assert sorted(deep) == ["a1", "g1", "g1/inner", "g1/sub", "g2", "g2/deep", "g2/deep/arr"]
    assert isinstance(deep["g2/deep/arr"], Array) and deep["g2/deep/arr"].name == "/g2/deep/arr"
    assert sorted(dict(g.members(max_depth=1))) == ["a1", "g1", "g1/inner", "g1/sub", "g2", "g2/deep"]


def test_group_getitem_and_contains() -> None:
    g = _tree()
    assert isinstance(g["a1"], Array)
    assert isinstance(g["g1"], Group)
    assert g["g1/inner"].shape == (3,)
    assert g["g2/deep/arr"].path == "g2/deep/arr"
    assert g["/g1/"].path == "g1"
    assert g["g1"]["sub"].name == "/g1/sub"
    for name in ("g1/inner", "g2/deep", "a1"):
        assert name in g
    for bad in ("nope", "g1/nope", "a1/c", "", 3):
        assert bad not in g
    with pytest.raises(KeyError):
        g["nope"]
    with pytest.raises(NodeNotFoundError):
        g["g1/nope"]


def test_group_create_and_require() -> None:
    g = _tree()
    with pytest.raises(ContainsGroupError):
        g.create_group("g1")
    with pytest.raises(ContainsArrayError):
        g.create_group("a1")
    replaced = g.create_group("g1", overwrite=True, attributes={"new": True})
    assert list(replaced.keys()) == []
    assert g["g1"].attrs["new"] is True
    assert g.require_group("g1").path == "g1"
    new = g.require_group("fresh/nested")
    assert new.path == "fresh/nested" and "fresh" in g
    with pytest.raises(ContainsArrayError):
        g.require_group("a1")
    with pytest.raises(ContainsArrayError):
        g.create_group("a1/below")


def test_group_create_array_inherits_format() -> None:
    g = gpuzarr.open_group({}, mode="w", zarr_format=2)
    a = g.create_array("x", shape=(3,), dtype="i4", data=None)
    assert a.zarr_format == 2
    b = g.create_array("y", data=np.arange(3))
    np.testing.assert_array_equal(b[...], np.arange(3))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_implicit_parent_groups(zarr_format: int) -> None:
    store: dict[str, bytes] = {}
    gpuzarr.create_array(store, name="a/b/c", shape=(2,), dtype="i1", zarr_format=zarr_format)
    key = "zarr.json" if zarr_format == 3 else ".zgroup"
    for parent in ("", "a/", "a/b/"):
        assert parent + key in store
    g = gpuzarr.open_group(store, mode="r")
    assert g.zarr_format == zarr_format
    assert [n for n, _ in g.members(max_depth=None)] == ["a", "a/b", "a/b/c"]


def test_group_read_only_refuses_changes() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.open_group(store, mode="w").create_group("sub")
    g = gpuzarr.open_group(store, mode="r")
    with pytest.raises(ReadOnlyError):
        g.attrs["x"] = 1
    with pytest.raises(ReadOnlyError):
        g.create_group("other")
    with pytest.raises(ReadOnlyError):
        g.create_array("arr", shape=(1,), dtype="i1")
    assert g["sub"].read_only


# --------------------------------------------------------------------------------------
# consolidated metadata


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_consolidate_metadata(tmp_path: pathlib.Path, zarr_format: int) -> None:
    path = str(tmp_path / "cons.zarr")
    g = gpuzarr.open_group(path, mode="w", zarr_format=zarr_format, attributes={"top": 1})
    g.create_array("a/b", shape=(4,), chunks=(2,), dtype="i2", attributes={"u": "x"})[...] = [1, 2, 3, 4]
    g.create_group("e")
    c = gpuzarr.consolidate_metadata(path)
    assert c.metadata.consolidated is not None
    r = gpuzarr.open_group(path, mode="r")
    assert r.metadata.consolidated is not None
    assert r.attrs["top"] == 1
    assert list(r.keys()) == ["a", "e"]
    assert [n for n, _ in r.members(max_depth=None)] == ["a", "a/b", "e"]
    assert r["a/b"].attrs["u"] == "x"
    np.testing.assert_array_equal(r["a/b"][...], [1, 2, 3, 4])
    plain = gpuzarr.open_group(path, mode="r", use_consolidated=False)
    assert plain.metadata.consolidated is None
    assert list(plain.keys()) == ["a", "e"]


def test_consolidated_metadata_is_used_without_store_metadata() -> None:
    store: dict[str, bytes] = {}
    g = gpuzarr.open_group(store, mode="w")
    g.create_array("x", shape=(3,), dtype="i1")[...] = [1, 2, 3]
    gpuzarr.consolidate_metadata(store)
    del store["x/zarr.json"]  # only the consolidated copy remains
    r = gpuzarr.open_group(store, mode="r")
    np.testing.assert_array_equal(r["x"][...], [1, 2, 3])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_consolidated_navigation_needs_no_member_metadata(zarr_format: int) -> None:
    store: dict[str, bytes] = {}
    g = gpuzarr.open_group(store, mode="w", zarr_format=zarr_format)
    g.create_array("a/b/arr", shape=(3,), dtype="i1", attributes={"deep": True})[...] = [1, 2, 3]
    g.create_group("a/c")
    gpuzarr.consolidate_metadata(store)
    member_docs = [k for k in store if k.startswith("a/") and k.rsplit("/", 1)[-1] in ("zarr.json", ".zarray",
                                                                                        ".zgroup", ".zattrs")]
    assert member_docs
    for key in member_docs:  # only the consolidated copies remain
        del store[key]
    r = gpuzarr.open_group(store, mode="r")
    assert [n for n, _ in r.members(max_depth=None)] == ["a", "a/b", "a/b/arr", "a/c"]
    arr = r["a"]["b"]["arr"]
    assert arr.attrs["deep"] is True
    np.testing.assert_array_equal(arr[...], [1, 2, 3])
    assert list(r["a"].keys()) == ["b", "c"]
    assert "a/c" in r and "a/x" not in r


def test_new_member_of_consolidated_group_is_listed() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.open_group(store, mode="w").create_group("old")
    gpuzarr.consolidate_metadata(store)
    g = gpuzarr.open_group(store, mode="a")
    g.create_array("new", shape=(1,), dtype="i1")
    assert list(g.keys()) == ["new", "old"]
    g.attrs["x"] = 1  # attribute writes keep the stored consolidated metadata
    assert gpuzarr.open_group(store, mode="r").metadata.consolidated is not None


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_member_changes_through_a_consolidated_group_are_kept(tmp_path: pathlib.Path, zarr_format: int) -> None:
    """Each lookup through a writable group opened from consolidated metadata took the
    member from the snapshot, whose next write dropped what an earlier handle wrote."""
    path = tmp_path / "g.zarr"
    gpuzarr.open_group(path, mode="w", zarr_format=zarr_format).create_array("arr", shape=(4,), chunks=(2,), dtype="i4")
    gpuzarr.consolidate_metadata(path)
    g = gpuzarr.open_group(path, mode="a")
    g["arr"].attrs["x"] = 1
    g["arr"].attrs["y"] = 2
    g["arr"].resize((6,))
    assert dict(g["arr"].attrs) == {"x": 1, "y": 2} and g["arr"].shape == (6,)
    fresh = gpuzarr.open_array(path / "arr")
    assert dict(fresh.attrs) == {"x": 1, "y": 2} and fresh.shape == (6,)
    assert gpuzarr.open_group(path, mode="r")["arr"].shape == (4,), "read-only: the snapshot, as consolidated"


def test_use_consolidated_true_requires_it() -> None:
    store: dict[str, bytes] = {}
    gpuzarr.open_group(store, mode="w")
    with pytest.raises(GroupNotFoundError):
        gpuzarr.open_group(store, mode="r", use_consolidated=True)
    gpuzarr.consolidate_metadata(store)
    assert gpuzarr.open_group(store, mode="r", use_consolidated=True).metadata.consolidated is not None


def test_consolidate_v2_below_root() -> None:
    store: dict[str, bytes] = {}
    root = gpuzarr.open_group(store, mode="w", zarr_format=2)
    root.create_array("sub/arr", shape=(2,), dtype="i1")[...] = [4, 5]
    gpuzarr.consolidate_metadata(store, path="sub")
    assert "sub/.zmetadata" in store
    sub = gpuzarr.open_group(store, mode="r", path="sub", use_consolidated=True)
    np.testing.assert_array_equal(sub["arr"][...], [4, 5])


@pytest.mark.parametrize("root_format", [2, 3])
def test_consolidate_leaves_out_members_of_the_other_format(tmp_path: pathlib.Path, root_format: int) -> None:
    """A node of the other format (and what lies below it) has no place in a group's
    consolidated metadata: it is left out, so that both gpuzarr and zarr-python still
    read the consolidated group; the node itself stays readable by its path."""
    path = str(tmp_path / "mixed.zarr")
    root = gpuzarr.open_group(path, mode="w", zarr_format=root_format)
    root.create_array("same", shape=(2,), dtype="i4")[:] = [1, 2]
    other = gpuzarr.open_group(path, mode="w", path="other", zarr_format=5 - root_format)
    other.create_array("arr", shape=(3,), dtype="i4")[:] = [7, 8, 9]
    assert [name for name, _ in gpuzarr.open_group(path, mode="r").members(max_depth=None)] == [
        "other",
        "other/arr",
        "same",
    ]
    gpuzarr.consolidate_metadata(path)
    consolidated = gpuzarr.open_group(path, mode="r")
    assert consolidated.metadata.consolidated is not None
    assert [name for name, _ in consolidated.members(max_depth=None)] == ["same"]
    np.testing.assert_array_equal(consolidated["same"][:], [1, 2])
    np.testing.assert_array_equal(gpuzarr.open_array(path, path="other/arr")[:], [7, 8, 9])
    zarr = pytest.importorskip("zarr")
    np.testing.assert_array_equal(zarr.open_consolidated(path, zarr_format=root_format)["same"][:], [1, 2])


def test_open_with_zarr_format_of_another_node_is_refused(tmp_path: pathlib.Path) -> None:
    """zarr_format names the format to open: a node of the other format is not found in
    the modes that only open, and is not shadowed by a second node in the modes that create."""
    path = str(tmp_path / "v3.zarr")
    gpuzarr.open_group(path, mode="w", zarr_format=3).create_array("a", shape=(2,), dtype="i4")
    with pytest.raises(GroupNotFoundError, match="zarr_format 3 group"):
        gpuzarr.open_group(path, mode="r", zarr_format=2)
    with pytest.raises(NodeNotFoundError, match="zarr_format 3 array"):
        gpuzarr.open(path, mode="r", path="a", zarr_format=2)
    with pytest.raises(ContainsGroupError, match="holds a zarr_format 3 group"):
        gpuzarr.open_group(path, mode="a", zarr_format=2)
    with pytest.raises(ContainsArrayError, match="holds a zarr_format 3 array"):
        gpuzarr.open(path, mode="a", path="a", zarr_format=2)
    assert gpuzarr.open_group(path, mode="r", zarr_format=3).zarr_format == 3
    assert gpuzarr.open_group(path, mode="w", zarr_format=2).zarr_format == 2  # "w" replaces


def test_consolidate_errors(tmp_path: pathlib.Path) -> None:
    store: dict[str, bytes] = {}
    with pytest.raises(GroupNotFoundError):
        gpuzarr.consolidate_metadata(store)
    gpuzarr.create_array(store, shape=(1,), dtype="i1")
    with pytest.raises(GroupNotFoundError):
        gpuzarr.consolidate_metadata(store)
    with pytest.raises(ReadOnlyError):
        gpuzarr.consolidate_metadata(MemoryStore(read_only=True))


def test_consolidated_zip_roundtrip(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "c.zip")
    g = gpuzarr.open_group(path, mode="w")
    g.create_array("a", shape=(2,), dtype="i1")[...] = [1, 2]
    g.store.close()
    gpuzarr.consolidate_metadata(path).store.close()
    r = gpuzarr.open_group(path, mode="r")
    assert r.metadata.consolidated is not None
    np.testing.assert_array_equal(r["a"][...], [1, 2])
    r.store.close()


# --------------------------------------------------------------------------------------
# reading


@pytest.mark.parametrize("compressors", [None, "auto"])
def test_read_into_out(compressors: Any) -> None:
    data = _data((12, 10), "float64")
    a = gpuzarr.create_array({}, shape=data.shape, chunks=(4, 5), dtype="f8", compressors=compressors)
    a[...] = data
    out = np.empty((12, 10))
    assert a.read(out=out) is out
    np.testing.assert_array_equal(out, data)
    # non-contiguous out: a strided view of a bigger buffer
    big = np.full((12, 30), -1.0)
    view = big[:, ::3]
    assert a.read(np.s_[...], out=view) is view
    np.testing.assert_array_equal(view, data)
    assert (big[:, 1::3] == -1).all()  # nothing outside the view was touched
    # Fortran-ordered out and a partial selection
    fout = np.empty((5, 4), order="F")
    a.read(np.s_[2:12:2, 1:9:2], out=fout)
    np.testing.assert_array_equal(fout, data[2:12:2, 1:9:2])
    # orthogonal and coordinate selections into out
    oout = np.empty((2, 3))
    a.read(([1, 7], [0, 4, 9]), out=oout, mode="orthogonal")
    np.testing.assert_array_equal(oout, data[np.ix_([1, 7], [0, 4, 9])])
    vout = np.empty(3)
    a.get_coordinate_selection(([1, 7, 11], [0, 4, 9]), out=vout)
    np.testing.assert_array_equal(vout, data[[1, 7, 11], [0, 4, 9]])


def test_read_into_a_dlpack_tensor() -> None:
    """A torch tensor as ``out``: decoded into through DLPack, and handed back as itself."""
    torch = pytest.importorskip("torch")
    data = _data((12, 10), "float32")
    a = gpuzarr.create_array({}, shape=data.shape, chunks=(4, 10), dtype="f4")
    a[...] = data
    whole = torch.empty(12, 10)
    assert a.read(out=whole) is whole
    np.testing.assert_array_equal(whole.numpy(), data)
    strided = torch.full((6, 20), -1.0)[:, ::2]  # a view: filled through a copy
    assert a.read(np.s_[::2], out=strided) is strided
    np.testing.assert_array_equal(strided.numpy(), data[::2])
    windows = [torch.empty(4, 10), torch.empty(4, 10)]
    got = a.read_batch([np.s_[8:12], np.s_[0:4]], out=windows)
    assert got[0] is windows[0] and got[1] is windows[1]
    np.testing.assert_array_equal(torch.cat(windows).numpy(), np.concatenate([data[8:12], data[0:4]]))
    with pytest.raises(TypeError, match="cannot read into this Tensor through DLPack"):
        a.read(out=torch.empty(12, 10, requires_grad=True))
    # Views whose writes would not land as written: negated, or elements sharing memory.
    with pytest.raises(TypeError, match="is_neg"):
        a.read(np.s_[0], out=torch.zeros(10, dtype=torch.complex64).conj().imag)
    with pytest.raises(ValueError, match="share memory"):
        a.read(np.s_[0], out=torch.zeros(1).expand(10))
    with pytest.raises(ValueError, match="share memory"):
        a.read(np.s_[0], out=torch.zeros(5).as_strided((10,), (0,)))
    with pytest.raises(ValueError, match="share memory"):  # (interleaved: no stride is 0)
        a.read(np.s_[:2, :5], out=torch.zeros(40).as_strided((2, 5), (3, 2)))
    # A tensor written in place through DLPack is marked so: autograd sees the change.
    seen = torch.empty(12, 10)
    version = seen._version
    a.read(out=seen)
    assert seen._version > version
    with pytest.raises(ValueError, match="dtype"):
        a.read(out=torch.empty(12, 10, dtype=torch.float64))


def test_read_out_errors() -> None:
    a = gpuzarr.create_array({}, shape=(4, 4), dtype="i4")
    with pytest.raises(ValueError, match="shape"):
        a.read(out=np.empty((4, 5), dtype="i4"))
    with pytest.raises(ValueError, match="shape"):
        a.read(np.s_[:2], out=np.empty((4, 4), dtype="i4"))
    with pytest.raises(ValueError, match="dtype"):
        a.read(out=np.empty((4, 4), dtype="i8"))
    with pytest.raises(TypeError, match="ndarray"):
        a.read((0, 0), out=np.int32(0))
    with pytest.raises(TypeError, match="ndarray"):
        a.read(out=[[0] * 4] * 4)
    a[...] = np.arange(16, dtype="i4").reshape(4, 4)  # a stored zstd chunk to decode
    frozen = bytes(64)
    with pytest.raises(ValueError, match="out is read-only"):  # not a misleading decode error
        a.read(out=np.frombuffer(frozen, dtype="i4").reshape(4, 4))
    assert frozen == bytes(64)


def test_array_protocol_len_and_iteration() -> None:
    data = _data((5, 3), "int16")
    a = gpuzarr.create_array({}, data=data, chunks=(2, 2))
    np.testing.assert_array_equal(np.asarray(a), data)
    assert np.asarray(a, dtype="f8").dtype == np.float64
    assert np.array(a).shape == (5, 3)
    with pytest.raises(ValueError, match="copy"):
        np.asarray(a, copy=False)
    assert len(a) == 5
    rows = list(a)
    assert len(rows) == 5
    for got, want in zip(rows, data, strict=True):
        np.testing.assert_array_equal(got, want)
    assert (np.add(a, 1) == data + 1).all()


def test_selection_spellings() -> None:
    data = _data((6, 7))
    a = gpuzarr.create_array({}, data=data, chunks=(4, 3))
    np.testing.assert_array_equal(a.get_basic_selection(np.s_[1:5, ::2]), data[1:5, ::2])
    np.testing.assert_array_equal(a.oindex[[0, 5], [1, 6]], data[np.ix_([0, 5], [1, 6])])
    np.testing.assert_array_equal(a.get_orthogonal_selection(([0, 5], slice(None))), data[[0, 5]])
    np.testing.assert_array_equal(a.vindex[[0, 5], [1, 6]], data[[0, 5], [1, 6]])
    mask = data % 3 == 0
    np.testing.assert_array_equal(a.get_mask_selection(mask), data[mask])
    assert a[2, 3] == data[2, 3]
    assert isinstance(a[2, 3], np.integer)


def test_write_spellings() -> None:
    ref = np.zeros((6, 7), dtype="i4")
    a = gpuzarr.create_array({}, shape=ref.shape, chunks=(4, 3), dtype="i4")
    a.set_basic_selection(np.s_[1:3], 1)
    ref[1:3] = 1
    a.oindex[[0, 5], [2, 4]] = 2
    ref[np.ix_([0, 5], [2, 4])] = 2
    a.set_orthogonal_selection(([4], slice(None)), 3)
    ref[[4]] = 3
    a.vindex[[0, 1], [0, 6]] = [4, 5]
    ref[[0, 1], [0, 6]] = [4, 5]
    a.set_coordinate_selection(([5], [6]), 6)
    ref[5, 6] = 6
    a.write(np.s_[3, ::2], 7)
    ref[3, ::2] = 7
    a[2, :] = gpuzarr.create_array({}, data=np.arange(7, dtype="i4"))  # an Array as value
    ref[2, :] = np.arange(7)
    np.testing.assert_array_equal(a[...], ref)


# --------------------------------------------------------------------------------------
# resize


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_resize(tmp_path: pathlib.Path, zarr_format: int) -> None:
    path = str(tmp_path / "r.zarr")
    data = _data((10, 10))
    a = gpuzarr.create_array(path, shape=(10, 10), chunks=(3, 3), dtype="i4", fill_value=-1, zarr_format=zarr_format)
    a[...] = data
    assert a.nchunks_initialized == 16
    a.resize((6, 3))  # chunk-aligned shrink
    assert a.shape == (6, 3)
    assert a.nchunks_initialized == 2
    stored = {k for k in a.store.list_prefix("") if k not in (".zarray", "zarr.json")}
    assert stored == {a._layout.key((0, 0)), a._layout.key((1, 0))}
    np.testing.assert_array_equal(a[...], data[:6, :3])
    a.resize((8, 7))  # grow: the new region reads as the fill value
    want = np.full((8, 7), -1, dtype="i4")
    want[:6, :3] = data[:6, :3]
    np.testing.assert_array_equal(a[...], want)
    reopened = gpuzarr.open_array(path)
    assert reopened.shape == (8, 7)
    np.testing.assert_array_equal(reopened[...], want)
    with pytest.raises(ValueError):
        a.resize((3,))
    with pytest.raises(ValueError):
        a.resize((-1, 2))


# --------------------------------------------------------------------------------------
# empty chunks and settings


def _chunk_keys(store: dict[str, bytes]) -> list[str]:
    return sorted(k for k in store if k.startswith("c/"))


@pytest.mark.parametrize("fill_value", [0, 7, float("nan")])
def test_write_empty_chunks_false_skips_and_deletes(fill_value: float) -> None:
    store: dict[str, bytes] = {}
    a = gpuzarr.create_array(store, shape=(6,), chunks=(2,), dtype="f4", fill_value=fill_value)
    a[...] = np.array([fill_value, fill_value, 1, 1, fill_value, 2], dtype="f4")
    assert _chunk_keys(store) == ["c/1", "c/2"]  # chunk 0 equals the fill value: not stored
    a[2:4] = fill_value  # overwriting with the fill value deletes the chunk
    assert _chunk_keys(store) == ["c/2"]
    a[...] = fill_value
    assert _chunk_keys(store) == []
    np.testing.assert_array_equal(a[...], np.full(6, fill_value, dtype="f4"))


def test_write_empty_chunks_negative_zero_is_stored() -> None:
    store: dict[str, bytes] = {}
    a = gpuzarr.create_array(store, shape=(2,), chunks=(2,), dtype="f4", fill_value=0.0)
    a[...] = -0.0  # differs from the fill value in its bits: must read back as -0.0
    assert _chunk_keys(store) == ["c/0"]
    assert np.signbit(a[...]).all()


@pytest.mark.parametrize("shards", [None, (4,)])
def test_write_empty_chunks_tells_equal_fills_apart_by_their_bits(shards: tuple[int, ...] | None) -> None:
    """Arrays whose fill values are equal but differ in bits (0.0 and -0.0), written one
    after the other: each skips exactly the chunks holding its own fill's bits."""
    written = []
    for fill in (0.0, -0.0, 0.0, -0.0):
        store: dict[str, bytes] = {}
        a = gpuzarr.create_array(store, shape=(8,), chunks=(2,), shards=shards, dtype="f4", fill_value=fill)
        a[...] = np.array([0.0, 0.0, -0.0, -0.0, 1, 1, 0.0, -0.0], dtype="f4")
        written.append((fill, a, store))
    for fill, a, store in written:
        got = a[...]
        np.testing.assert_array_equal(np.signbit(got), [0, 0, 1, 1, 0, 0, 0, 1])
        if shards is None:  # chunk 0 holds +0.0s, chunk 1 -0.0s: the fill's twin is stored
            assert _chunk_keys(store) == (["c/1", "c/2", "c/3"] if not np.signbit(fill) else ["c/0", "c/2", "c/3"])


def test_write_empty_chunks_true_stores_fill_chunks() -> None:
    store: dict[str, bytes] = {}
    a = gpuzarr.create_array(store, shape=(6,), chunks=(2,), dtype="i2")
    with gpuzarr.config.set(write_empty_chunks=True):
        assert gpuzarr.config.write_empty_chunks is True
        a[...] = 0
        assert _chunk_keys(store) == ["c/0", "c/1", "c/2"]
    assert gpuzarr.config.write_empty_chunks is False
    a[:2] = 0
    assert _chunk_keys(store) == ["c/1", "c/2"]


def test_config_set_restores() -> None:
    before = gpuzarr.config.get()
    with gpuzarr.config.set(threads=3, wave_bytes=1234):
        assert gpuzarr.config.threads == 3
        assert gpuzarr.config.wave_bytes == 1234
        with gpuzarr.config.set(threads=1):
            assert gpuzarr.config.threads == 1
        assert gpuzarr.config.threads == 3
    assert gpuzarr.config.get() == before
    with pytest.raises(RuntimeError), gpuzarr.config.set(write_empty_chunks=True):
        raise RuntimeError("restored even on error")
    assert gpuzarr.config.get() == before


def test_config_set_global_and_validation() -> None:
    before = gpuzarr.config.get()
    try:
        gpuzarr.config.set(threads=2)  # without `with`: a global change
        assert gpuzarr.config.threads == 2
        assert gpuzarr.config.get().threads == 2
    finally:
        gpuzarr.config.set(**dataclasses.asdict(before))
    assert gpuzarr.config.get() == before
    with pytest.raises(KeyError, match="bogus"):
        gpuzarr.config.set(bogus=1)
    for bad in ({"threads": 0}, {"threads": 1.5}, {"threads": True}, {"wave_bytes": 0}, {"gpu_fallback": "x"}):
        with pytest.raises(ValueError):
            gpuzarr.config.set(**bad)
    with pytest.raises(ValueError):
        gpuzarr.config.set(write_empty_chunks="no")
    assert gpuzarr.config.get() == before
    assert "threads" in repr(gpuzarr.config)


def test_config_attribute_assignment_is_a_global_set() -> None:
    """``config.threads = 1`` changes what the pipeline uses (it once shadowed it), validated."""
    before = gpuzarr.config.get()
    try:
        gpuzarr.config.threads = 1
        assert gpuzarr.config.get().threads == 1 == gpuzarr.config.threads
        with pytest.raises(ValueError, match="threads"):
            gpuzarr.config.threads = 0
        with pytest.raises(AttributeError, match="thread"):
            gpuzarr.config.thread = 2  # a typo is not silently kept
        assert gpuzarr.config.get().threads == 1
    finally:
        gpuzarr.config.set(**dataclasses.asdict(before))
    assert gpuzarr.config.get() == before


@pytest.mark.parametrize("compressors", [None, "auto", {"name": "blosc", "configuration": {"cname": "lz4"}}])
def test_threads_give_same_results(compressors: Any) -> None:
    rng = np.random.default_rng(1)
    data = rng.standard_normal((60, 50)).astype("f4")
    results = []
    for threads in (1, 4):
        with gpuzarr.config.set(threads=threads, wave_bytes=4096):  # several waves
            store: dict[str, bytes] = {}
            a = gpuzarr.create_array(store, shape=data.shape, chunks=(7, 9), dtype="f4", compressors=compressors)
            a[...] = data
            a[5:40:3, ::-2] = -data[5:40:3, ::-2]
            results.append((a[...], a.oindex[[3, 50, 1], 5:45], a.vindex[[0, 59, 30], [49, 0, 25]], dict(store)))
    (r1, o1, v1, s1), (r4, o4, v4, s4) = results
    np.testing.assert_array_equal(r1, r4)
    np.testing.assert_array_equal(o1, o4)
    np.testing.assert_array_equal(v1, v4)
    assert s1 == s4  # byte-identical stores


# --------------------------------------------------------------------------------------
# devices


def test_devices(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "d.zarr")
    gpuzarr.create_array(path, shape=(3,), dtype="i1")
    from gpuzarr.device import gpu_path_available

    gpu = gpu_path_available()
    for dev in ("cpu", "auto", None):
        a = gpuzarr.open_array(path, device=dev)  # type: ignore[arg-type]
        assert str(a.device) == ("cuda:0" if gpu and dev != "cpu" else "cpu")
    np.testing.assert_array_equal(gpuzarr.open_array(path, device="cpu")[...], [0, 0, 0])
    for dev in () if gpu else ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(DeviceUnavailableError):
            gpuzarr.open_array(path, device=dev)
        with pytest.raises(DeviceUnavailableError):
            gpuzarr.open_group(path + "g", device=dev)
        with pytest.raises(DeviceUnavailableError):
            gpuzarr.create_array({}, shape=(1,), dtype="i1", device=dev)
    for dev in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(ValueError):
            gpuzarr.open_array(path, device=dev)
    with pytest.raises(TypeError):
        gpuzarr.open_array(path, device=0)  # type: ignore[arg-type]
    assert gpuzarr.Device("cuda", 1).__str__() == "cuda:1"


def test_group_device_propagates() -> None:
    g = gpuzarr.open_group({}, mode="w", device="cpu")
    assert str(g.create_array("a", shape=(1,), dtype="i1").device) == "cpu"


# --------------------------------------------------------------------------------------
# import hygiene and fork


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_import_is_cpu_only() -> None:
    code = (
        "import sys, numpy as np, gpuzarr\n"
        "a = gpuzarr.create_array({}, shape=(8,), chunks=(2,), dtype='f4', device='auto')\n"
        "a[...] = 1; a[...]\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('cupy', 'cupyx', 'kvikio', 'nvidia', 'numba',"
        " 'nvcomp', 'cuda', 'pynvml', 'torch'))\n"
        "print('BAD', bad)\n"
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "BAD []" in proc.stdout


def _child_read(path: str, queue: Any) -> None:
    a = gpuzarr.open_array(path)
    with gpuzarr.config.set(threads=4):
        queue.put(float(a[...].sum()))


class _WaveStore(MemoryStore):
    """A memory store that writes in waves (as stores without cheap reads do)."""

    cheap_reads = False


@pytest.mark.parametrize("store_kind", ["memory", "local", "waves"])
@pytest.mark.parametrize("shards", [None, (64, 64)])
def test_threads_writing_parts_of_one_object_lose_nothing(
    tmp_path: pathlib.Path, store_kind: str, shards: tuple[int, int] | None
) -> None:
    """Two threads write disjoint rows of one chunk (or shard): each write is a
    read-modify-write of the whole object, so without a lock per key the later put
    dropped the other's rows (lost in most runs before)."""
    import threading

    store: Any = {"memory": lambda: MemoryStore(), "local": lambda: str(tmp_path / "a.zarr"),
                  "waves": lambda: _WaveStore()}[store_kind]()
    chunks = (8, 8) if shards else (64, 64)
    a = gpuzarr.create_array(store, shape=(64, 64), chunks=chunks, shards=shards, dtype="i4")
    for attempt in range(5):
        barrier = threading.Barrier(2)

        def write(first: int, value: int, attempt: int = attempt, barrier: Any = barrier) -> None:
            barrier.wait()
            for row in range(first, first + 32, 4):
                a[row : row + 4, :] = value + attempt

        threads = [threading.Thread(target=write, args=(0, 10)), threading.Thread(target=write, args=(32, 20))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = np.empty((64, 64), "i4")
        expected[:32], expected[32:] = 10 + attempt, 20 + attempt
        np.testing.assert_array_equal(a[...], expected)


def test_whole_writes_through_several_handles_serialize_without_deadlock() -> None:
    """A wave writer holds its keys' locks while its chunks encode on the pool, and
    writers through another handle on the same storage queue pool work for the same
    keys: nothing may wait in a cycle, and whole-array writes apply one after another
    (the array ends up all one writer's value)."""
    import threading

    from gpuzarr.pipeline import locks

    shared: dict[str, bytes] = {}
    gpuzarr.create_array(MemoryStore(shared), shape=(64, 64), chunks=(8, 8), dtype="i4")
    handles = [gpuzarr.open_array(_WaveStore(shared), mode="r+")]
    handles += [gpuzarr.open_array(MemoryStore(shared), mode="r+") for _ in range(3)]
    with gpuzarr.config.set(threads=2):
        for attempt in range(3):
            values = [10 * attempt + i for i in range(len(handles))]
            threads = [
                threading.Thread(target=h.__setitem__, args=(Ellipsis, v), daemon=True)
                for h, v in zip(handles, values, strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "deadlocked"
            result = handles[1][...]
            assert result[0, 0] in values and (result == result[0, 0]).all()
    assert not locks._in_use, "no lock outlives the writes that used it"


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_fork_after_thread_pool_use(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "fork.zarr")
    with gpuzarr.config.set(threads=4):
        a = gpuzarr.create_array(path, shape=(64, 64), chunks=(8, 8), dtype="f4")
        a[...] = 1.0
        assert float(a[...].sum()) == 64 * 64  # the parent's pool now has live threads
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_read, args=(path, queue))
    proc.start()
    try:
        assert queue.get(timeout=30) == 64 * 64
    finally:
        proc.join(timeout=30)
        if proc.is_alive():  # pragma: no cover - a hung child is the failure we test for
            proc.kill()
    assert proc.exitcode == 0


def _child_writes(path: str, queue: Any) -> None:
    a = gpuzarr.open_array(path, mode="r+")
    a[4:] = 3  # the key the parent's other thread holds locked
    queue.put(a[...].tolist())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_fork_while_another_thread_holds_a_write_lock(tmp_path: pathlib.Path) -> None:
    """The child has only the forking thread: a key locked by another parent thread
    would never be released there (its next write of that key hung)."""
    import threading

    from gpuzarr.pipeline.locks import write_locks

    path = str(tmp_path / "a.zarr")
    a = gpuzarr.create_array(path, shape=(8,), chunks=(8,), dtype="i4")
    a[:] = 1
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_locks(a.store, ["c/0"]):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    held.wait(10)
    try:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child_writes, args=(path, queue))
        proc.start()
        try:
            assert queue.get(timeout=30) == [1, 1, 1, 1, 3, 3, 3, 3]
        finally:
            proc.join(timeout=30)
            if proc.is_alive():  # pragma: no cover - a hung child is the failure we test for
                proc.kill()
    finally:
        release.set()
        holder.join(10)


def test_changing_threads_while_others_read_fails_nothing() -> None:
    """A resized pool used to be shut down under callers on other threads, whose next
    submit raised RuntimeError."""
    import sys
    import threading

    from gpuzarr.pipeline.pool import parallel_map

    errors: list[BaseException] = []
    stop = threading.Event()

    def use() -> None:
        while not stop.is_set():
            try:
                parallel_map(lambda x: x, [1, 2, 3])
            except BaseException as exc:  # (collected; the test fails on any)
                errors.append(exc)

    before = gpuzarr.config.get()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    users = [threading.Thread(target=use) for _ in range(2)]
    try:
        for t in users:
            t.start()
        deadline = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < deadline:
            gpuzarr.config.threads = 2 + i % 3
            i += 1
    finally:
        stop.set()
        for t in users:
            t.join(10)
        sys.setswitchinterval(interval)
        gpuzarr.config.set(**dataclasses.asdict(before))
    assert not errors, errors[:1]


def test_scratch_for_chunks_beyond_the_arena_bound_is_not_kept() -> None:
    from gpuzarr.pipeline import pool, read

    side = 2 * int((pool.ARENA_KEEP_BYTES // 4) ** 0.5)  # a float32 chunk 4x the bound
    a = gpuzarr.create_array({}, shape=(side, side), chunks=(side, side), dtype="f4")
    a[:] = 1.0
    read._scratch.buf = None
    assert a[:, 5:7].sum() == 2 * side  # a partial read: the chunk decodes into scratch
    kept = getattr(read._scratch, "buf", None)
    assert kept is None or kept.nbytes <= pool.ARENA_KEEP_BYTES


@pytest.mark.parametrize("shards", [None, (8, 10)])
def test_read_batch_equals_single_reads(shards: tuple[int, int] | None) -> None:
    data = np.arange(24 * 30, dtype="f4").reshape(24, 30)
    a = gpuzarr.create_array({}, shape=data.shape, dtype="f4", chunks=(4, 5), shards=shards, fill_value=-1)
    a[:20] = data[:20]  # the last rows stay missing: fill value
    expected_data = data.copy()
    expected_data[20:] = -1
    selections = [np.s_[0:4, 0:5], np.s_[3:9, ::-2], np.s_[20:, 7], np.s_[5, 5], np.s_[0:4, 0:5], np.s_[...]]
    results = a.read_batch(selections)
    assert len(results) == len(selections)
    for sel, got in zip(selections, results, strict=True):
        np.testing.assert_array_equal(got, expected_data[sel])
    # other modes
    (ortho,) = a.read_batch([([1, 7, 22], [0, 29])], mode="orthogonal")
    np.testing.assert_array_equal(ortho, expected_data[np.ix_([1, 7, 22], [0, 29])])
    (points,) = a.read_batch([([1, 7, 22], [0, 29, 3])], mode="vectorized")
    np.testing.assert_array_equal(points, expected_data[[1, 7, 22], [0, 29, 3]])


def test_read_batch_into_out() -> None:
    data = np.arange(100, dtype="i8").reshape(10, 10)
    a = gpuzarr.create_array({}, data=data, chunks=(3, 3))
    outs = [np.empty((3, 3), "i8"), np.empty((10, 10), "i8")[:, ::2]]  # contiguous and not
    results = a.read_batch([np.s_[0:3, 0:3], np.s_[:, 0:5]], out=outs)
    assert results[0] is outs[0] and results[1] is outs[1]
    np.testing.assert_array_equal(outs[0], data[0:3, 0:3])
    np.testing.assert_array_equal(outs[1], data[:, 0:5])
    with pytest.raises(ValueError, match="2 selections"):
        a.read_batch([np.s_[0], np.s_[1]], out=[np.empty(10, "i8")])
    assert a.read_batch([]) == []


@pytest.mark.parametrize("use_caller", [False, True])
def test_parallel_map_keeps_order_and_finishes_every_task_before_raising(use_caller: bool) -> None:
    import threading
    import time

    from gpuzarr.pipeline.pool import parallel_map

    with gpuzarr.config.set(threads=3):
        caller = threading.get_ident()
        ran_on: dict[int, int] = {}

        def record(i: int) -> int:
            ran_on[i] = threading.get_ident()
            time.sleep(0.01)
            return i * i

        assert parallel_map(record, list(range(7)), use_caller=use_caller) == [i * i for i in range(7)]
        # The caller takes items too (it starts at once; each item outlasts a worker's
        # wake-up, so it always gets one).
        assert (caller in ran_on.values()) == use_caller
        assert parallel_map(record, list(range(5)), use_caller=use_caller, max_threads=1) == [i * i for i in range(5)]

        finished: list[int] = []

        def fail_first(i: int) -> int:
            if i == 0:
                raise KeyError("first")
            time.sleep(0.02)
            finished.append(i)
            return i

        with pytest.raises(KeyError, match="first"):
            parallel_map(fail_first, [0, 1, 2], use_caller=use_caller)
        assert sorted(finished) == [1, 2]  # the others ran to the end before the error came


def test_a_large_batch_of_results_shares_one_buffer(tmp_path: pathlib.Path) -> None:
    """Results of one read_batch that reach 4 MiB together are views of one buffer,
    each on a cache line, of the right shape and values; smaller batches, single reads,
    results read into ``out`` and variable-length results get arrays of their own."""
    from gpuzarr.memory import CACHE_LINE

    data = np.arange(2048 * 1024, dtype="i4").reshape(2048, 1024)  # 8 MiB
    a = gpuzarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(256, 256), dtype="i4")
    a[...] = data
    selections = [np.s_[0:256, 0:256], np.s_[5:999, 3:1000:3], np.s_[7], np.s_[2000:2000], np.s_[1000:2047, 1:]]
    results = a.read_batch(selections)
    for sel, got in zip(selections, results, strict=True):
        np.testing.assert_array_equal(got, data[sel])
    shared = [r for r in results if r.size]
    base = shared[0].base
    assert all(r.base is base for r in shared) and base.nbytes >= 4 * 2**20
    assert all(r.ctypes.data % CACHE_LINE == 0 for r in shared)
    ends = sorted((r.ctypes.data, r.ctypes.data + r.nbytes) for r in shared)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(ends))  # no overlap
    def owner(array: np.ndarray) -> np.ndarray:
        while isinstance(array.base, np.ndarray):
            array = array.base
        return array

    small = a.read_batch([np.s_[0:10, 0:10], np.s_[20:30, 0:10]])
    assert owner(small[0]) is not owner(small[1])  # arrays of their own
    out = np.empty((256, 256), "i4")
    into = a.read_batch([np.s_[0:256, 0:256], np.s_[0:1024, 0:1024]], out=[out, None])
    assert into[0] is out and into[1].base is not out.base
    np.testing.assert_array_equal(into[1], data[:1024, :1024])
    words = np.array([f"w{i % 977}" for i in range(600_000)])
    strings = gpuzarr.create_array({}, shape=words.shape, chunks=(100_000,), dtype=str)
    strings[...] = words
    parts = strings.read_batch([np.s_[:300_000], np.s_[300_000:]])
    np.testing.assert_array_equal(np.concatenate(parts), words)


def test_large_results_are_cache_line_aligned(tmp_path: pathlib.Path) -> None:
    # NumPy puts large arrays 16 bytes off a cache line; gpuzarr's own large results
    # start on one, so chunks stored as is are read straight into them.
    from gpuzarr.memory import CACHE_LINE, aligned_empty

    with pytest.raises(ValueError, match="negative"):
        aligned_empty((-1,), np.dtype("f4"))
    with pytest.raises(TypeError, match="object"):
        aligned_empty(3, np.dtype(object))
    assert aligned_empty(np.int64(5)).shape == (5,)
    for shape, dtype in (((3, 5), "f4"), (7, "u1"), ((0, 4), "i8"), ((2, 3), "V6")):
        buf = aligned_empty(shape, np.dtype(dtype))
        assert (buf.size == 0 or buf.ctypes.data % CACHE_LINE == 0) and buf.flags.c_contiguous
        assert buf.shape == ((shape,) if isinstance(shape, int) else shape) and buf.dtype == np.dtype(dtype)
    data = np.arange(512 * 1024, dtype="f4").reshape(512, 1024)  # 2 MiB
    path = str(tmp_path / "a.zarr")
    a = gpuzarr.create_array(path, shape=data.shape, chunks=(64, 1024), dtype="f4", compressors=None)
    a[...] = data
    result = a[...]
    assert result.ctypes.data % CACHE_LINE == 0
    np.testing.assert_array_equal(result, data)
    np.testing.assert_array_equal(a[:2], data[:2])
    strings = gpuzarr.create_array({}, shape=(300_000,), chunks=(100_000,), dtype=str)
    assert strings[...].shape == (300_000,)  # variable-length results are never byte views


def test_block_selection_errors_name_the_dimension() -> None:
    a = gpuzarr.create_array({}, shape=(10, 7), chunks=(4, 3), dtype="i4")
    assert a.blocks[-1].shape == (2, 7) and a.blocks[..., 2].shape == (10, 1)
    with pytest.raises(IndexError, match="block index 3 is out of bounds for dimension 0 with 3 blocks"):
        a.blocks[3]
    with pytest.raises(IndexError, match="step 1, got step 2 for dimension 1"):
        a.blocks[:, ::2]
    with pytest.raises(IndexError, match="got list for dimension 0"):
        a.blocks[[0, 1]]
    with pytest.raises(IndexError, match="got ndarray for dimension 0"):  # (was NumPy's ambiguous-truth ValueError)
        a.blocks[np.array([0, 1]), ...]
    with pytest.raises(IndexError, match="too many indices"):
        a.blocks[0, 0, 0]
    with pytest.raises(ValueError):
        a.set_block_selection((0, 0), np.ones((3, 3)))  # the block is 4 x 3


def test_block_slices_clamp_like_python() -> None:
    # zarr-python raises for a slice starting past the last block; a slice of blocks
    # clamps like any Python slice (an empty selection), as dask's blocks do.
    a = gpuzarr.create_array({}, shape=(10, 7), chunks=(4, 3), dtype="i4")
    assert a.blocks[5:].shape == (0, 7) and a.blocks[-9:1].shape == (4, 7)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_one_value_arrays_as_zarr_python(zarr_format: int) -> None:
    import zarr

    for make in ("zeros", "ones", "empty"):
        ours = getattr(gpuzarr, make)((3, 4), chunks=(2, 2), zarr_format=zarr_format)
        theirs = getattr(zarr, make)((3, 4), chunks=(2, 2), zarr_format=zarr_format)
        assert ours.dtype == theirs.dtype == np.float64
        np.testing.assert_array_equal(ours[...], theirs[...])
        assert ours.stored_chunk_keys() == []  # nothing written
    a = gpuzarr.full((5,), 7, dtype="i2", chunks=(2,))
    assert a[...].tolist() == [7] * 5 and a.fill_value == 7


def test_like_arrays_copy_layout_and_encoding() -> None:
    source = gpuzarr.create_array(
        {}, shape=(8, 6), chunks=(2, 3), shards={"shape": (4, 6), "index_location": "start"}, dtype=">f4",
        compressors={"name": "gzip", "configuration": {"level": 2}}, fill_value=-1.5, dimension_names=["y", "x"],
    )
    for make, fill in (("zeros_like", 0), ("ones_like", 1), ("empty_like", -1.5), ("full_like", -1.5)):
        made = getattr(gpuzarr, make)(source)
        assert made.metadata.to_json() | {"fill_value": None} == source.metadata.to_json() | {"fill_value": None}
        assert made[...].tolist() == np.full((8, 6), fill, dtype="f4").tolist()
    assert gpuzarr.full_like(source, fill_value=3)[0, 0] == 3
    v2 = gpuzarr.create_array({}, shape=(5,), chunks=(2,), dtype=">i4", zarr_format=2,
                              compressors=numcodecs.Zlib(level=1), chunk_key_encoding={"name": "v2", "separator": "/"})
    assert gpuzarr.zeros_like(v2).metadata.to_json() == v2.metadata.to_json()
    from_numpy = gpuzarr.ones_like(np.zeros((3, 2), dtype="u2"), chunks=(1, 2))
    assert (from_numpy.shape, from_numpy.dtype, from_numpy.chunks) == ((3, 2), np.uint16, (1, 2))
    g = gpuzarr.open_group({}, mode="w")
    assert g.zeros_like(name="z", data=source).metadata.to_json()["codecs"] == source.metadata.to_json()["codecs"]
    assert g.full(name="f", shape=(2,), fill_value=4, dtype="i1")[...].tolist() == [4, 4]


@pytest.mark.parametrize("zarr_format", [None, 2])
def test_from_array_keeps_settings_and_copies_the_data(tmp_path: pathlib.Path, zarr_format: int | None) -> None:
    import zarr

    data = np.arange(7 * 300, dtype="i4").reshape(7, 300)
    zstd = {"name": "zstd", "configuration": {"level": 3}}
    source = gpuzarr.create_array(tmp_path / "s", shape=data.shape, chunks=(2, 100), dtype="i4", fill_value=5,
                                  attributes={"units": "m"}, compressors=zstd)
    source[...] = data
    copy = gpuzarr.from_array(tmp_path / "c", data=source, zarr_format=zarr_format)
    np.testing.assert_array_equal(copy[...], data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "c", mode="r")[...], data)
    assert (copy.chunks, copy.fill_value, dict(copy.attrs)) == ((2, 100), 5, {"units": "m"})
    if zarr_format is None:
        assert copy.metadata.to_json()["codecs"] == source.metadata.to_json()["codecs"]
    else:
        assert copy.metadata.zarr_format == 2
    numpy_copy = gpuzarr.from_array({}, data=data, chunks=(3, 300), write_data=True)
    np.testing.assert_array_equal(numpy_copy[...], data)
    assert gpuzarr.from_array({}, data=data, write_data=False).stored_chunk_keys() == []
    listed = gpuzarr.from_array({}, data=[[1, 2], [3, 4]])
    assert listed[...].tolist() == [[1, 2], [3, 4]]


def test_copy_into_goes_slab_by_slab(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuzarr import convenience

    monkeypatch.setattr(convenience, "_COPY_STEP_BYTES", 1000)
    target = gpuzarr.create_array({}, shape=(40, 10), chunks=(3, 10), dtype="f8")
    seen: list[slice] = []

    class Source:
        shape = (40, 10)
        dtype = np.dtype("f8")

        def __getitem__(self, window: slice) -> np.ndarray:
            seen.append(window)
            return np.full((window.stop - window.start, 10), window.start, dtype="f8")

    convenience.copy_into(target, Source())
    assert [(w.start, w.stop) for w in seen] == [(0, 12), (12, 24), (24, 36), (36, 40)]  # 4 chunk rows of 80 B each
    assert target[13, 0] == 12


def test_group_conveniences_as_zarr_python() -> None:
    import zarr

    results = []
    for lib in (gpuzarr, zarr):
        g = lib.open_group({}, mode="w")
        g.create_array("x", shape=(2,), dtype="i4")
        g.create_group("sub").create_group("deep")
        results.append((
            sorted(a.name for a in g.array_values()),
            sorted(s.name for s in g.group_values()),
            g.nmembers(), g.nmembers(max_depth=None),
            g.get("missing", "default"), g.get("sub/deep").name,
            dict(g.update_attributes({"k": 1}).attrs),
            [s.name for s in g.require_groups("sub", "new")],
            # the member counts info_complete() prints (every depth)
            [line for line in str(g.info_complete()).splitlines() if line.startswith("No.")],
        ))
        # zarr-python's field names and layout; info lists nothing in the store
        assert str(g.info).splitlines()[1:3] == ["Type        : Group", "Zarr format : 3"]
        with pytest.raises(Exception):  # noqa: B017 - the classes differ (TypeError, ContainsArrayError)
            g.require_groups("x", "after")
        assert "after" in g  # the other names are still created, as zarr-python does
    assert results[0] == results[1]


def test_open_consolidated_needs_consolidated_metadata() -> None:
    store = gpuzarr.stores.MemoryStore()
    g = gpuzarr.open_group(store, mode="w")
    g.create_array("x", shape=(2,), dtype="i4")
    with pytest.raises(gpuzarr.errors.GroupNotFoundError, match="consolidated"):
        gpuzarr.open_consolidated(store)
    gpuzarr.consolidate_metadata(store)
    assert list(gpuzarr.open_consolidated(store, mode="r").keys()) == ["x"]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_deleting_members_as_zarr_python(tmp_path: pathlib.Path, zarr_format: int) -> None:
    import zarr

    g = gpuzarr.open_group(tmp_path / "g", mode="w", zarr_format=zarr_format)
    g.create_array("x", shape=(4,), chunks=(2,), dtype="i4")[...] = 1
    g.create_array("xy", shape=(2,), dtype="i4")[...] = 3  # a name that starts like the deleted one
    g.create_group("sub").create_array("y", shape=(2,), dtype="i4")[...] = 2
    del g["x"]
    del g["sub/y"]
    assert list(g.keys()) == ["sub", "xy"] and list(g["sub"].keys()) == []
    assert sorted(zarr.open_group(tmp_path / "g", mode="r").keys()) == ["sub", "xy"]
    assert g["xy"][...].tolist() == [3, 3]
    assert not any(p.name == "x" for p in (tmp_path / "g").iterdir())  # its chunks are gone too
    with pytest.raises(gpuzarr.errors.NodeNotFoundError, match="'nope'"):
        del g["nope"]
    with pytest.raises(gpuzarr.errors.ReadOnlyError):
        del gpuzarr.open_group(tmp_path / "g", mode="r")["xy"]


def test_like_arrays_keep_uncommon_sharding_encodings() -> None:
    """Index codecs other than the default, and codecs outside the sharding codec, have
    no create_array(chunks=, shards=) spelling: the whole sharding codec is copied."""
    serializer = {"name": "sharding_indexed", "configuration": {
        "chunk_shape": [2, 2],
        "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}, {"name": "gzip"}],
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}], "index_location": "start"}}
    a = gpuzarr.create_array({}, shape=(8, 8), chunks=(4, 4), serializer=serializer, compressors=None, dtype="f4")
    b = gpuzarr.create_array({}, shape=(8, 8), chunks=(4, 4), serializer=serializer, dtype="f4",
                             compressors={"name": "zstd", "configuration": {"level": 1, "checksum": False}})
    for source in (a, b):
        assert gpuzarr.zeros_like(source).metadata.to_json() == source.metadata.to_json() | {"fill_value": 0.0}


def test_conveniences_take_zarr_python_create_spellings(tmp_path: pathlib.Path) -> None:
    a = gpuzarr.zeros((3,), store=tmp_path / "s", path="a/b", dtype="i4")
    assert a.name == "/a/b" and a[...].tolist() == [0, 0, 0]
    with pytest.raises(gpuzarr.errors.ContainsArrayError):
        gpuzarr.ones((3,), store=tmp_path / "s", path="a/b")
    assert gpuzarr.ones((2,), store=tmp_path / "s", path="a/b", mode="w")[...].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="mode 'r'"):
        gpuzarr.zeros((3,), store=tmp_path / "s", path="c", mode="r")
    with pytest.raises(TypeError, match="path= or name="):
        gpuzarr.zeros((3,), path="x", name="y")
    with pytest.raises(TypeError, match="no NumPy equivalent"):
        gpuzarr.array.like_arguments(type("T", (), {"shape": (2,), "dtype": "torch.quint4x2"})())


def test_from_array_none_fill_keeps_the_source_fill() -> None:
    source = gpuzarr.create_array({}, shape=(4,), chunks=(2,), dtype="i2", fill_value=-7)
    assert gpuzarr.from_array({}, data=source, fill_value=None).fill_value == -7
    assert gpuzarr.from_array({}, data=source, fill_value=3, write_data=False)[...].tolist() == [3] * 4


def test_consolidated_groups_stay_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default device is "cpu" everywhere: consolidate_metadata's group (and what
    is reached through it) used to resolve "auto", a GPU where one is present."""
    from gpuzarr import device as device_module

    monkeypatch.setattr(device_module, "gpu_path_available", lambda: True)
    store = gpuzarr.stores.MemoryStore()
    gpuzarr.open_group(store, mode="w").create_array("x", shape=(2,), dtype="i4")
    g = gpuzarr.consolidate_metadata(store)
    assert g.device.kind == "cpu" and g["x"].device.kind == "cpu"


def test_attribute_edits_from_threads_through_one_handle_are_all_kept(tmp_path: pathlib.Path) -> None:
    """Each edit reads, changes and writes the whole attribute document: threads editing
    one handle's attributes must not lose each other's keys."""
    import threading

    a = gpuzarr.create_array(tmp_path / "a", shape=(4,), chunks=(2,), dtype="i4")

    def edit(thread: int) -> None:
        for k in range(30):
            a.attrs[f"t{thread}_{k}"] = k
        a.attrs.update({f"u{thread}": thread})
        del a.attrs[f"t{thread}_0"]

    threads = [threading.Thread(target=edit, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"t{t}_{k}": k for t in range(6) for k in range(1, 30)} | {f"u{t}": t for t in range(6)}
    assert a.attrs.asdict() == expected
    assert gpuzarr.open_array(tmp_path / "a").attrs.asdict() == expected


def test_resize_and_attribute_edits_through_one_handle_keep_both(tmp_path: pathlib.Path) -> None:
    """A resize and an attribute edit each rewrite the whole metadata document from the
    handle's copy: on one handle from two threads neither loses the other's change."""
    import threading

    a = gpuzarr.create_array(tmp_path / "a", shape=(4,), chunks=(2,), dtype="i4")
    start = threading.Barrier(2)

    def grow() -> None:
        start.wait()
        for n in range(5, 205):
            a.resize((n,))

    def annotate() -> None:
        start.wait()
        for k in range(200):
            a.attrs[f"k{k}"] = k

    threads = [threading.Thread(target=grow), threading.Thread(target=annotate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = gpuzarr.open_array(tmp_path / "a")
    assert stored.shape == a.shape == (204,)
    assert stored.attrs.asdict() == a.attrs.asdict() == {f"k{k}": k for k in range(200)}


@pytest.mark.parametrize("cheap", [True, False])
def test_v2_open_reads_the_documents_it_needs(tmp_path: pathlib.Path, cheap: bool) -> None:
    """A store with cheap reads is asked for v2 documents one at a time, only those the
    node needs (an array: no ``.zgroup`` or ``.zmetadata``); other stores get the four
    in one batch. Either way the node and its attributes come back."""
    path = tmp_path / "v2.zarr"
    root = gpuzarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["kind"] = "root"
    arr = root.create_array("arr", shape=(3,), dtype="i2")
    arr[...] = [1, 2, 3]
    arr.attrs["unit"] = "m"
    gpuzarr.consolidate_metadata(str(path))

    class Recording(LocalStore):
        cheap_reads = cheap

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.asked: list[str] = []
            self.batches: list[list[str]] = []

        def get(self, key: str, **kwargs: Any) -> Any:
            self.asked.append(key)
            return super().get(key, **kwargs)

        def get_many(self, keys: Any) -> Any:
            self.batches.append(list(keys))
            return super().get_many(keys)

    store = Recording(path, read_only=True)
    opened = gpuzarr.open_array(store, path="arr", mode="r")
    np.testing.assert_array_equal(opened[...], [1, 2, 3])
    assert opened.attrs["unit"] == "m"
    names = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")
    documents = [key for key in store.asked if key.rpartition("/")[2] in names]
    if cheap:
        assert documents == ["arr/zarr.json", "arr/.zarray", "arr/.zattrs"]
    else:
        assert store.batches[0] == ["arr/.zarray", "arr/.zgroup", "arr/.zattrs", "arr/.zmetadata"]

    store = Recording(path, read_only=True)
    group = gpuzarr.open_group(store, mode="r")
    assert group.attrs["kind"] == "root" and group.metadata.consolidated is not None
    if cheap:
        assert store.asked[:5] == ["zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"]

"""gpuzarr's optional native helper (gpuzarr/_native): loading, and its loop's contract."""

from __future__ import annotations

import ctypes
import importlib.metadata
import shutil

import numpy as np
import pytest

from gpuzarr import _native


def test_helper_is_built_by_an_install_where_a_compiler_is() -> None:
    """The build hook (hatch_build.py) must not fall back silently where it could build."""
    try:
        importlib.metadata.distribution("gpuzarr")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gpuzarr runs from a source checkout here, not installed")
    if not any(shutil.which(name) for name in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler here: gpuzarr loops in Python")
    assert _native.call_shared is not None, "native helper not built: reinstall (pip install -e .) and see the warning"


def test_load_is_none_when_disabled_or_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUZARR_NO_NATIVE", "1")
    assert _native._load() is None
    monkeypatch.setenv("GPUZARR_NO_NATIVE", "0")  # (off, as when unset)
    assert (_native._load() is None) == (_native.call_shared is None)
    monkeypatch.delenv("GPUZARR_NO_NATIVE")
    monkeypatch.setattr(_native, "LIBRARY_NAME", "_no_such_helper.so")
    assert _native._load() is None


def test_call_shared_on_one_thread_stops_at_the_first_call_that_does_not_fill_its_output() -> None:
    """The loop's contract on a thread alone, with a stand-in decoder that copies its
    source and returns the bytes copied (a short source fills its output only partly):
    the calls in order, up to the first bad one."""
    if _native.call_shared is None:
        pytest.skip("gpuzarr's native helper is not built here")
    decode_type = ctypes.CFUNCTYPE(
        ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t
    )

    @decode_type
    def copy(context: int, dst: int, dst_nbytes: int, src: int, src_nbytes: int) -> int:
        ctypes.memmove(dst, src, min(dst_nbytes, src_nbytes))
        return min(dst_nbytes, src_nbytes)

    sources = [np.full(8, i, dtype=np.uint8) for i in range(4)]
    sources[2] = sources[2][:5]  # fills only 5 of 8 bytes
    outputs = [np.zeros(8, dtype=np.uint8) for _ in range(4)]
    table = np.array(
        [[o.ctypes.data for o in outputs], [8] * 4, [s.ctypes.data for s in sources], [s.nbytes for s in sources]],
        dtype=np.uintp,
    )
    row = table.strides[0]
    failed = ctypes.c_size_t(12345)
    address = ctypes.cast(copy, ctypes.c_void_p).value
    args = (table.ctypes.data, table.ctypes.data + row, table.ctypes.data + 2 * row, table.ctypes.data + 3 * row)

    def call(n: int) -> int:
        next_call = ctypes.c_size_t(0)
        return _native.call_shared(address, None, n, *args, ctypes.addressof(next_call), ctypes.addressof(failed))

    assert call(4) == 2
    assert failed.value == 5
    assert [o.tolist() for o in outputs[:2]] == [[0] * 8, [1] * 8]
    assert outputs[3].tolist() == [0] * 8  # not reached
    assert call(2) == 2  # all filled: n
    assert call(0) == 0


def test_call_shared_hands_each_call_to_exactly_one_thread_and_reports_the_first_bad_one() -> None:
    """Threads sharing one batch (one counter) make every call once between them; a call
    that does not fill its output stops them, and the least index the threads return
    is the first bad call, with every call before it made."""
    if _native.call_shared is None:
        pytest.skip("gpuzarr's native helper is not built here")
    import threading

    decode_type = ctypes.CFUNCTYPE(
        ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t
    )
    n = 200
    made = np.zeros(n, dtype=np.int64)
    lock = threading.Lock()

    @decode_type
    def copy(context: int, dst: int, dst_nbytes: int, src: int, src_nbytes: int) -> int:
        ctypes.memmove(dst, src, min(dst_nbytes, src_nbytes))
        with lock:
            made[ctypes.cast(src, ctypes.POINTER(ctypes.c_uint8))[0]] += 1
        return min(dst_nbytes, src_nbytes)

    address = ctypes.cast(copy, ctypes.c_void_p).value

    def run(bad: int | None, threads: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        made[:] = 0
        sources = [np.full(8, i % 256, dtype=np.uint8) for i in range(n)]
        if bad is not None:
            sources[bad] = sources[bad][:3]
        outputs = [np.zeros(8, dtype=np.uint8) for _ in range(n)]
        table = np.array(
            [[o.ctypes.data for o in outputs], [8] * n, [s.ctypes.data for s in sources], [s.nbytes for s in sources]],
            dtype=np.uintp,
        )
        row = table.strides[0]
        args = [table.ctypes.data + k * row for k in range(4)]
        next_call = ctypes.c_size_t(0)
        returned: list[tuple[int, int]] = []
        start = threading.Barrier(threads, timeout=10)  # (all threads call in at once)

        def work() -> None:
            start.wait()
            failed = ctypes.c_size_t(12345)
            index = _native.call_shared(address, None, n, *args, ctypes.addressof(next_call), ctypes.addressof(failed))
            returned.append((index, failed.value))

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return outputs, returned

    for threads in (1, 4):
        outputs, returned = run(None, threads)
        assert [index for index, _ in returned] == [n] * threads
        assert made.tolist() == [1] * n  # every call made once
        assert all(o.tolist() == [i % 256] * 8 for i, o in enumerate(outputs))
        outputs, returned = run(150, threads)
        assert min(returned) == (150, 3)  # the first bad call, and what it returned
        assert all(outputs[i].tolist() == [i] * 8 for i in range(150))  # every call before it made
        assert made.max() == 1

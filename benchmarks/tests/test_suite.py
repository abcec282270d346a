"""Tests of the benchmark code itself (not of gpuzarr): ``pytest benchmarks/tests``.

Small datasets (1-2 MiB) in a temporary directory; a few seconds in all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import suite
from benchmarks import writers as writers_module
from benchmarks.datasets import DatasetSpec, ensure_dataset, ensure_source, select_datasets, universe
from benchmarks.patterns import PATTERNS, make_task
from benchmarks.readers import FileBytesCeiling, FileBytesOutputCeiling, Reader, ZarrPythonReader
from benchmarks.report import load_records, markdown_report, target_rows
from benchmarks.timing import run_round_robin
from benchmarks.writers import GpuzarrWriter, TensorstoreWriter, Trash, Writer, ZarrPythonWriter, trash_path

SMALL = {"size_mib": 2, "seed": 0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-data")


def test_ids_round_trip_and_geometry() -> None:
    for spec in universe(size_mib=128):
        assert DatasetSpec.parse(spec.id, size_mib=128) == spec
        rows, cols = spec.shape
        assert rows % spec.chunks[0] == 0 and cols % spec.chunks[1] == 0
        assert spec.chunks[0] * spec.chunks[1] * spec.dtype.itemsize == spec.chunk_bytes
    index = DatasetSpec.parse("f32-zstd-64k-s4m-v3")
    assert index.shape == (8192, 4096) and index.chunks == (4, 4096) and index.shards == (256, 4096)
    with pytest.raises(ValueError, match="v3 only"):
        DatasetSpec.parse("f32-zstd-64k-s4m-v2")


def test_select_datasets_aliases_globs_filters() -> None:
    assert [s.id for s in select_datasets("sharded-64k")] == ["f32-zstd-64k-s4m-v3"]
    zstd_v3 = select_datasets("all", codecs=["zstd"], formats=["v3"])
    assert zstd_v3 and all(s.codec == "zstd" and s.zarr_format == 3 for s in zstd_v3)
    sharded = select_datasets("i16-*", sharded=True)
    assert sharded and all(s.kind == "i16" and s.shards for s in sharded)
    with pytest.raises(ValueError):
        select_datasets("nope-*")


def test_windows_are_aligned_distinct_and_seeded() -> None:
    spec = DatasetSpec.parse("i16-zstd-64k-v3", **SMALL)
    a, b = make_task("windows", spec, seed=1), make_task("windows", spec, seed=1)
    assert a.selections == b.selections
    assert len({(r.start, c.start) for r, c in a.selections}) == len(a.selections)
    for r, c in a.selections:
        assert r.start % spec.chunks[0] == 0 and r.stop - r.start == spec.chunks[0]
        assert c.start % spec.chunks[1] == 0 and c.stop - c.start == spec.chunks[1]
    assert make_task("windows", spec, seed=2).selections != a.selections


def test_write_partial_expected_changes_only_the_box() -> None:
    spec = DatasetSpec.parse("f32-zstd-64k-v3", **SMALL)
    task = make_task("write-partial", spec)
    source = np.arange(spec.shape[0] * spec.shape[1], dtype=np.float32).reshape(spec.shape)
    after = task.expected(source)
    changed = after != source
    box = np.zeros_like(changed)
    box[task.selection] = True
    assert not changed[~box].any() and changed[box].mean() > 0.9
    assert any(s.start % c for s, c in zip(task.selection, spec.chunks, strict=True))  # unaligned


class _WrongReader(ZarrPythonReader):
    name = "wrong"

    def run(self, handle: Any, ds: Any, task: Any) -> Any:
        result = super().run(handle, ds, task)
        if isinstance(result, list):
            return [*result[:-1], result[-1] + 1]  # only the last window is wrong
        return result + 1


class _BrokenReader(ZarrPythonReader):
    name = "broken"

    def run(self, handle: Any, ds: Any, task: Any) -> Any:
        raise RuntimeError("boom")


def test_round_robin_verifies_before_timing(data_dir: Path) -> None:
    ds = ensure_dataset(DatasetSpec.parse("f32-zstd-64k-s4m-v3", size_mib=8), data_dir, log=lambda _m: None)
    readers: list[Reader] = [
        ZarrPythonReader(),
        _WrongReader(),
        _BrokenReader(),
        FileBytesCeiling(),
        FileBytesOutputCeiling(),
    ]
    for pattern in ("full", "windows", "strided"):
        outcomes = run_round_robin(readers, ds, make_task(pattern, ds.spec), 2, log=lambda _m: None)
        assert outcomes["zarr-python"].status == "ok" and len(outcomes["zarr-python"].samples) == 2
        assert outcomes["wrong"].status == "mismatch" and not outcomes["wrong"].samples
        assert outcomes["broken"].status == "error" and "boom" in (outcomes["broken"].note or "")
        ceiling = "ok" if pattern == "full" else "unsupported"
        assert outcomes["file-bytes"].status == outcomes["file-bytes+output"].status == ceiling
    for reader in readers:
        reader.close()


class _WrongWriter(ZarrPythonWriter):
    name = "wrong-writer"

    def write(self, handle: Any, task: Any, value: np.ndarray) -> None:
        handle[task.selection] = value * 0


@pytest.mark.parametrize("dataset", ["f32-zstd-64k-v2", "i16-blosc-zstd-bitshuffle-64k-v3", "f32-gzip-64k-s4m-v3"])
def test_writers_verified_by_another_library(data_dir: Path, dataset: str) -> None:
    size = 8 if "-s4m-" in dataset else 2
    ds = ensure_dataset(DatasetSpec.parse(dataset, size_mib=size), data_dir, log=lambda _m: None)
    scratch = data_dir / "scratch"
    writers: list[Writer] = [
        GpuzarrWriter(None, scratch),
        TensorstoreWriter(None, scratch),
        ZarrPythonWriter(None, scratch),
        _WrongWriter(None, scratch),
    ]
    for pattern in ("write-full", "write-partial"):
        outcomes = run_round_robin(writers, ds, make_task(pattern, ds.spec), 1, log=lambda _m: None)
        for name in ("gpuzarr", "tensorstore", "zarr-python"):
            assert outcomes[name].status == "ok", outcomes[name].note
            assert outcomes[name].extra["stored_bytes"] > 0
        assert outcomes["wrong-writer"].status == "mismatch"
    # Cleaned up: the outputs, and the ones moved aside, wait in the trash until it is emptied.
    assert [p.name for p in scratch.iterdir()] == [".trash"]
    assert Trash(scratch).empty()
    assert not any(scratch.iterdir())


def test_earlier_write_outputs_wait_aside_until_cleanup(data_dir: Path) -> None:
    """A writer's earlier output is moved aside before the next write, not deleted
    (deleting thousands of files slows the next file creations on ext4), and deleted
    with the rest at cleanup."""
    ds = ensure_dataset(DatasetSpec.parse("f32-zstd-64k-v2", size_mib=2), data_dir, log=lambda _m: None)
    task = make_task("write-full", ds.spec)
    writer = GpuzarrWriter(None, data_dir / "aside")
    writer.set_value(ds, task, task.value(np.load(ensure_source(ds.spec, data_dir, log=lambda _m: None))))
    for _ in range(2):
        writer.prepare(ds, task)
        writer.run(writer.open(ds, task), ds, task)
    (aside,) = writer.retired.iterdir()  # (the first write's output, moved by the second's prepare)
    assert (aside / "zarr.json").exists() or (aside / ".zarray").exists()
    assert writer.dest(ds, task).exists()
    writer.cleanup(ds, task)
    assert not writer.retired.exists() and not writer.dest(ds, task).exists()
    assert len(list(trash_path(writer.scratch).iterdir())) == 2  # (both outputs, not deleted yet)


def test_trash_waits_for_its_last_deletion_to_settle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(writers_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(writers_module.time, "sleep", slept.append)
    trash = Trash(tmp_path, settle_s=70)
    assert trash.settle() == 0 and not trash.empty()  # (nothing deleted yet: no wait)
    (trash.path / "output.zarr").mkdir(parents=True)
    assert trash.empty() and not trash.path.exists()
    clock[0] += 50
    assert trash.settle() == pytest.approx(20) and slept == [pytest.approx(20)]
    clock[0] += 20
    assert trash.settle() == 0 and len(slept) == 1


def _args(**kw: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser, suite.CPU)
    return parser.parse_args(
        [f"--{k.replace('_', '-')}={v}" if v is not True else f"--{k.replace('_', '-')}" for k, v in kw.items()]
    )


def test_cpu_suite_end_to_end(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite, "RESULTS_DIR", tmp_path)
    out = tmp_path / "r.jsonl"
    args = _args(
        datasets="f32-zstd-64k-s4m-v3",
        size_mib=8,
        repeats=1,
        peers="gpuzarr,zarr-python,tensorstore",
        quiet_wait=0,
        data_dir=data_dir,
        out=out,
    )
    assert suite.main(args, suite.CPU) == 0
    records = load_records([out])
    patterns = {r["pattern"] for r in records}
    assert patterns == {*PATTERNS, "memory"}
    assert all(r["status"] == "ok" for r in records if r["subject"] in ("gpuzarr", "tensorstore"))
    mem = [r for r in records if r["pattern"] == "memory" and r["status"] == "ok"]
    assert {r["subject"] for r in mem} == {"gpuzarr", "zarr-python", "tensorstore"}
    assert all(r["peak_bytes"] >= r["baseline_bytes"] for r in mem)
    rows = target_rows(records)
    assert {(r.pattern, r.rival) for r in rows if r.pattern in ("full", "write-full")} == {
        ("full", "tensorstore"),
        ("write-full", "tensorstore"),
    }
    text = markdown_report(records)
    assert "## Target" in text and "f32-zstd-64k-s4m-v3" in text
    json.dumps(records)  # every record is plain JSON


def test_gpu_suite_skips_cleanly_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.gpu import gpu_unavailable

    reason = gpu_unavailable()
    if reason is None:
        pytest.skip("a GPU is present")
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser, suite.GPU)
    assert suite.main(parser.parse_args([]), suite.GPU) == 0
    assert "gpu suite SKIPPED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "dataset", ["f32-zstd-64k-s4m-v3", "i16-gzip-64k-s4m-v3", "i16-gzip-64k-v2", "f32-zstd-64k-v3"]
)
def test_nvcomp_ceiling_staging_without_a_gpu(data_dir: Path, dataset: str) -> None:
    """The GPU decode ceiling's host-side staging (shard index parsing, gzip stripping), checked on the CPU."""
    import zlib

    import numcodecs

    from benchmarks.gpu import NvcompDecodeCeiling, gzip_to_deflate

    size = (32 if dataset.startswith("i16") else 8) if "-s4m-" in dataset else 2
    ds = ensure_dataset(DatasetSpec.parse(dataset, size_mib=size), data_dir, log=lambda _m: None)
    units = NvcompDecodeCeiling()._units(ds)
    assert len(units) == ds.spec.n_units
    source = np.asarray(ds.load_source())
    ch, cw = ds.spec.chunks
    for (i, j), blob in units:
        if ds.codec == "gzip":
            raw = zlib.decompressobj(-15).decompress(gzip_to_deflate(blob))
        else:
            raw = numcodecs.Zstd().decode(blob)
        want = source[i * ch : (i + 1) * ch, j * cw : (j + 1) * cw]
        assert np.array_equal(np.frombuffer(raw, dtype=ds.dtype).reshape(want.shape), want)


def test_target_rows_count_rounds_won_against_the_rival() -> None:
    """Repetition i of every subject is round i: gpuzarr's wins are counted round by
    round against the rival the median picked (here zarrs, faster than tensorstore)."""

    def record(subject: str, times: list[float]) -> dict[str, Any]:
        ordered = sorted(times)
        return {
            "pattern": "windows",
            "dataset": {"id": "f32-zstd-64k-v3"},
            "subject": subject,
            "status": "ok",
            "total_s": times,
            "median_total_s": ordered[len(ordered) // 2],
            "min_total_s": ordered[0],
        }

    records = [
        record("gpuzarr", [1.0, 3.0, 2.0, 5.0, 1.0]),
        record("zarrs", [2.0, 2.0, 2.0, 2.0, 2.0]),
        record("tensorstore", [9.0, 9.0, 9.0, 9.0, 9.0]),
    ]
    (row,) = target_rows(records)
    assert row.rival == "zarrs"
    assert row.rounds_won == (3, 5)  # rounds 0, 2 (a tie counts) and 4
    assert "| 3/5 |" in markdown_report(
        [{**r, "env": {}, "params": {}, "suite": "cpu", "run_id": "x"} for r in records]
    )


def test_remote_bench_checks_reads_and_counts_requests() -> None:
    """The object-store benchmark reads right (it checks before timing) and counts what
    each library asks of the store: gpuzarr batches a sharded read's indexes and ranges."""
    from benchmarks import remote_bench

    records = remote_bench.run(latency_ms=1.0, repeats=1)
    by = {(r["layout"], r["pattern"], r["subject"]): r for r in records}
    assert len(records) == 2 * 2 * 3
    assert by[("sharded", "windows", "gpuzarr")]["requests"] < by[("sharded", "windows", "zarr-python")]["requests"]
    assert all(r["median_s"] > 0 for r in records)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_round_orders_balance_positions_and_predecessors(n: int) -> None:
    import itertools
    from collections import Counter

    from benchmarks.timing import round_orders

    cycle = n if n % 2 == 0 else 2 * n
    orders = round_orders(n, 3 * cycle + 1)
    assert len(orders) == 3 * cycle + 1 and all(sorted(order) == list(range(n)) for order in orders)
    full = orders[:cycle]
    for position in range(n):  # every subject in every position equally often
        assert Counter(order[position] for order in full) == Counter({s: cycle // n for s in range(n)})
    pairs = Counter((a, b) for order in full for a, b in itertools.pairwise(order))
    if n > 1:  # every subject directly after every other equally often
        assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
        assert len(set(pairs.values())) == 1
    assert round_orders(0, 5) == []

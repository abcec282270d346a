"""The ``gpuzarr`` command: ``info`` on every kind of hierarchy and store, ``demo``, errors."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import gpuzarr
from gpuzarr.cli import main

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _hierarchy(path: str, zarr_format: int = 3) -> None:
    g = gpuzarr.open_group(path, mode="w", zarr_format=zarr_format, attributes={"title": "demo", "n": 1})
    arr = g.create_array(
        "x/y/arr",
        shape=(10, 10),
        chunks=(5, 5),
        dtype="f4",
        fill_value=-1,
        compressors={"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}},
        dimension_names=["row", "col"] if zarr_format == 3 else None,
    )
    arr[:5, :] = 1.0  # 2 of 4 chunks stored
    g.create_group("x/empty")
    g.create_array("strings", shape=(3,), dtype=str)[...] = ["a", "bb", "c"]


def test_info_array(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "a.zarr")
    a = gpuzarr.create_array(path, shape=(100, 50), chunks=(30, 50), dtype="int16", compressors=None)
    a[:30] = 7
    code, out, err = run_main(capsys, "info", path)
    assert code == 0, err
    assert "array" in out and "v3" in out
    assert "(100, 50)" in out
    assert "int16" in out
    assert "(30, 50)" in out
    assert "4 in grid, 1 stored" in out
    assert "bytes" in out  # the codec chain
    assert "10000 B" in out or "9.8 KiB" in out  # logical size: 100*50*2 bytes
    assert err == ""


def test_info_nested_hierarchy(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "h.zarr")
    _hierarchy(path)
    code, out, err = run_main(capsys, "info", path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("/") and "group" in lines[0] and "v3" in lines[0]
    assert "attributes: ['n', 'title']" in out
    for name in ("/x", "/x/y", "/x/empty", "/x/y/arr", "/strings"):
        assert any(line.strip().startswith(name + " ") for line in lines), name
    # nesting shows as indentation
    indent = {line.strip().split()[0]: len(line) - len(line.lstrip()) for line in lines if line.strip().startswith("/")}
    assert indent["/x"] < indent["/x/y"] < indent["/x/y/arr"]
    assert "blosc" in out and "cname=lz4" in out
    assert "4 in grid, 2 stored" in out
    assert "fill     -1.0" in out  # the value, not a NumPy scalar's repr
    assert "('row', 'col')" in out
    assert "string" in out and "vlen-utf8" in out
    # an array inside the hierarchy, addressed by its directory
    code, out, _ = run_main(capsys, "info", os.path.join(path, "x", "y", "arr"))
    assert code == 0 and "(10, 10)" in out


def test_info_v2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "v2.zarr")
    _hierarchy(path, zarr_format=2)
    code, out, err = run_main(capsys, "info", path)
    assert code == 0, err
    assert "v2" in out
    assert "/x/y/arr" in out and "zarr-v2" in out and "blosc" in out
    a = gpuzarr.create_array(str(tmp_path / "v2a.zarr"), shape=(4,), dtype=">i4", zarr_format=2, compressors=None)
    a[...] = 1
    code, out, _ = run_main(capsys, "info", str(tmp_path / "v2a.zarr"))
    assert code == 0 and "array  v2" in out and "int32" in out


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_info_consolidated(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], zarr_format: int) -> None:
    path = str(tmp_path / "c.zarr")
    _hierarchy(path, zarr_format)
    gpuzarr.consolidate_metadata(path)
    code, out, err = run_main(capsys, "info", path)
    assert code == 0, err
    assert "(consolidated)" in out.splitlines()[0]
    assert "/x/y/arr" in out and "/x/empty" in out


def test_info_lists_the_store_when_consolidated_metadata_is_stale(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "c.zarr")
    _hierarchy(path, 3)
    gpuzarr.consolidate_metadata(path)
    gpuzarr.open_group(path, mode="a").create_array("added", shape=(3,), chunks=(2,), dtype="i4")
    code, out, err = run_main(capsys, "info", path)
    assert code == 0, err
    assert "consolidated metadata is stale" in out.splitlines()[0]
    assert "/added" in out and "/x/y/arr" in out


def test_info_consolidated_by_zarr_python_is_not_called_stale(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """zarr-python's consolidated entry for a v3 subgroup carries an empty consolidated
    metadata object its own zarr.json lacks; a v2 subgroup consolidated on its own has a
    .zmetadata of its own: neither makes the root's consolidated metadata stale."""
    zarr = pytest.importorskip("zarr")
    v3 = str(tmp_path / "v3.zarr")
    zarr.open_group(v3, mode="w", zarr_format=3).create_group("sub").create_array("a", shape=(2,), dtype="i4")
    zarr.consolidate_metadata(v3)
    v2 = str(tmp_path / "v2.zarr")
    zarr.open_group(v2, mode="w", zarr_format=2).create_group("s").create_array("a", shape=(2,), dtype="i4")
    zarr.consolidate_metadata(v2, path="s")
    zarr.consolidate_metadata(v2)
    for path in (v3, v2):
        code, out, err = run_main(capsys, "info", path)
        assert code == 0, err
        assert out.splitlines()[0].endswith("(consolidated)"), out


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_info_notices_changed_attributes(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], zarr_format: int
) -> None:
    """An attribute edit after consolidating makes the consolidated metadata stale (v2
    keeps attributes out of the .zarray document it compared before)."""
    path = str(tmp_path / "c.zarr")
    _hierarchy(path, zarr_format)
    gpuzarr.consolidate_metadata(path)
    gpuzarr.open_array(path, mode="r+", path="x/y/arr").attrs["units"] = "m"
    code, out, err = run_main(capsys, "info", path)
    assert code == 0, err
    assert "consolidated metadata is stale" in out.splitlines()[0]


def test_info_zip(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "h.zip")
    _hierarchy(path)
    gpuzarr.open_group(path, mode="r+").store.close()  # nothing pending: a no-op flush
    g = gpuzarr.open_group(path, mode="a")
    g.store.close()
    code, out, err = run_main(capsys, "info", path)
    assert code == 0, err
    assert "/x/y/arr" in out and "4 in grid, 2 stored" in out
    assert os.path.getsize(path) > 0


def test_info_missing_path(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    for missing in (tmp_path / "nothing.zarr", tmp_path / "nothing.zip"):
        code, out, err = run_main(capsys, "info", str(missing))
        assert code == 1
        assert out == ""
        assert err.startswith("gpuzarr: error:")
        assert "nothing" in err
        assert not missing.exists()  # info never creates what it looks at


def test_info_empty_directory_and_corrupt_metadata(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_main(capsys, "info", str(empty))
    assert code == 1 and "no array or group" in err
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{ not json")
    code, _, err = run_main(capsys, "info", str(bad))
    assert code == 1 and "zarr.json" in err


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "demo", "--size-mib", "4")
    assert code == 0, err
    assert "gpuzarr demo: 1024x1024 float32 (4.0 MiB)" in out
    assert "zstd" in out and "blosc-lz4" in out
    assert out.count("GB/s") == 4  # write and read for each codec
    assert "/zstd  array" in out and "/blosc-lz4  array" in out


@pytest.mark.parametrize("size", ["0", "-3", "abc"])
def test_demo_bad_size(capsys: pytest.CaptureFixture[str], size: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--size-mib", size])
    assert info.value.code == 2  # argparse's usage error
    assert "size-mib" in capsys.readouterr().err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "info" in capsys.readouterr().out


def test_subprocess(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "sub.zarr")
    gpuzarr.create_array(path, shape=(8, 8), chunks=(4, 4), dtype="u1")[...] = np.ones((8, 8))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "gpuzarr.cli", "info", path], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "(8, 8)" in proc.stdout and "uint8" in proc.stdout and "4 in grid, 4 stored" in proc.stdout
    proc = subprocess.run(  # (python -m gpuzarr: the command where no script is installed)
        [sys.executable, "-m", "gpuzarr", "info", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "gpuzarr: error:" in proc.stderr


def test_info_sharded_shows_shards_and_inner_codecs(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.zarr"
    a = gpuzarr.create_array(path, shape=(100, 100), chunks=(10, 10), shards=(50, 50), dtype="f4")
    a[:60, :60] = 1
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "chunks   (10, 10)  (100 in grid, inside shards)" in out
    assert "shards   (50, 50)  (4 in grid, 4 stored)" in out
    assert "sharding_indexed(inner: bytes(endian=little) -> zstd(" in out
    assert "index: bytes(endian=little) -> crc32c at end" in out


def test_a_reader_that_stops_early_is_not_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gpuzarr info ... | head` closes the pipe under the command: no error message
    (it printed "gpuzarr: error: [Errno 32] Broken pipe"), and stdout is pointed at
    devnull so the interpreter's last flush does not fail again."""
    from gpuzarr import cli

    def closed_pipe(path: str) -> str:
        raise BrokenPipeError(32, "Broken pipe")

    redirected: list[int] = []
    monkeypatch.setattr(cli, "info", closed_pipe)
    monkeypatch.setattr(cli.os, "dup2", lambda fd, target: redirected.append(target))
    monkeypatch.setattr(cli.sys, "stdout", type("Out", (), {"fileno": lambda self: 1})())
    assert cli.main(["info", "anything"]) == 1
    assert redirected == [1]
    assert capsys.readouterr().err == ""

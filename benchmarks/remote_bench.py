"""Reads from an object store with round-trip latency: gpuzarr's ``FsspecStore`` against
zarr-python 3's ``FsspecStore`` on the same simulated store.

The store is an fsspec *async* filesystem over bytes held in memory, which waits
``--latency-ms`` before answering each request (as s3fs, gcsfs and HTTP do, requests run
concurrently, without limit). The time of a read is then its round trips one after
another (how deep its requests are chained: metadata, shard indexes, ranges) plus the
work around them; ``--latency-ms 0`` leaves the work alone. The request counts show what
each asks of the store, which object stores bill and throttle by.

zarr-python runs at its defaults (``async.concurrency`` 10: at most 10 requests in
flight) and, as ``zarr-python-c1024``, with that limit raised past any request count here.

Data: a float32 array of ``(1024, 4096)`` (16 MiB), zstd, in two layouts written by
gpuzarr: 64 KiB inner chunks in 4 MiB shards (``sharded``), and 64 KiB chunks
(``chunks``). Patterns: ``windows`` (32 random chunk-aligned windows, one inner chunk
each, as a data loader asks; gpuzarr through ``read_batch``, zarr-python one selection
after another, as it has no batch call, and ``asyncio``-concurrent through its async
API) and ``full``. Each reader's result is checked against the source first; each
timing is open + read, subjects alternating, median of ``--repeats``.

tensorstore reads object stores through its own drivers (no fsspec), so it cannot be
given this store; zarrs-python reads through zarr-python's store and is left out too.

    python -m benchmarks.remote_bench                   # ~1 min
    python -m benchmarks.remote_bench --latency-ms 20 --repeats 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LatencyFileSystem", "main"]

SHAPE = (1024, 4096)
INNER = (4, 4096)  # 64 KiB of float32
SHARD = (256, 4096)  # 4 MiB
WINDOWS = 32


def _latency_filesystem_class() -> type:
    from fsspec.asyn import AsyncFileSystem

    class LatencyFileSystem(AsyncFileSystem):
        """Objects in a dict; each request waits ``latency`` seconds, then answers."""

        protocol = "latency"
        cachable = False

        def __init__(self, objects: Objects, latency: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.objects = objects.data
            self.latency = latency
            self.requests = 0

        async def _answer(self) -> None:
            self.requests += 1
            await asyncio.sleep(self.latency)

        async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
            await self._answer()
            data = self.objects.get(self._strip_protocol(path))
            if data is None:
                raise FileNotFoundError(path)
            return data[start:end]

        async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
            await self._answer()
            path = self._strip_protocol(path)
            if path in self.objects:
                return {"name": path, "size": len(self.objects[path]), "type": "file"}
            if any(k.startswith(path + "/") for k in self.objects):
                return {"name": path, "size": 0, "type": "directory"}
            raise FileNotFoundError(path)

        async def _exists(self, path: str, **kwargs: Any) -> bool:
            try:
                await self._info(path)
            except FileNotFoundError:
                return False
            return True

        async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
            await self._answer()
            path = self._strip_protocol(path).rstrip("/")
            names = sorted({path + "/" + k[len(path) + 1 :].split("/")[0] for k in self.objects
                            if k.startswith(path + "/")})
            if not detail:
                return names
            return [{"name": n, "size": len(self.objects.get(n, b"")), "type": "file" if n in self.objects
                     else "directory"} for n in names]

    return LatencyFileSystem


LatencyFileSystem: Any = None  # (the class, made on first use: fsspec is imported only then)


class Objects:
    """The stored objects, passed to the filesystem in a holder: fsspec hashes the text
    of its constructor's arguments, which for the dict itself takes most of a second."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Objects({id(self)})"


def _write_layouts() -> tuple[np.ndarray, Objects]:
    """The source values and the stored objects of both layouts (keys "<layout>/...")."""
    import gpuzarr

    rng = np.random.default_rng(0)
    source = np.cumsum(rng.standard_normal(SHAPE, dtype=np.float32), axis=1, dtype=np.float32)
    objects: dict[str, bytes] = {}
    for layout, kwargs in (("sharded", {"chunks": INNER, "shards": SHARD}), ("chunks", {"chunks": INNER})):
        data: dict[str, bytes] = {}
        array = gpuzarr.create_array(data, shape=SHAPE, dtype="float32", **kwargs)
        array[...] = source
        objects.update({f"{layout}/{key}": value for key, value in data.items()})
    return source, Objects(objects)


def _windows(seed: int) -> list[tuple[slice, slice]]:
    rows = np.random.default_rng(seed).choice(SHAPE[0] // INNER[0], size=WINDOWS, replace=False)
    return [(slice(int(r) * INNER[0], (int(r) + 1) * INNER[0]), slice(None)) for r in rows]


def _readers(objects: Objects, latency: float, layout: str) -> dict[str, Callable[[Any], Any]]:
    """Each subject: a function of the selections (None: the whole array) that opens the
    array on a fresh filesystem handle and reads."""
    import zarr
    from zarr.storage import FsspecStore as ZarrFsspecStore

    import gpuzarr
    from gpuzarr.stores import FsspecStore

    def gpuzarr_read(selections: Any) -> Any:
        fs = LatencyFileSystem(objects, latency)
        array = gpuzarr.open_array(FsspecStore(fs, layout), mode="r")
        return array[...] if selections is None else array.read_batch(selections)

    def zarr_reader(concurrency: int | None) -> Callable[[Any], Any]:
        def read(selections: Any) -> Any:
            async def run() -> Any:
                fs = LatencyFileSystem(objects, latency, asynchronous=True)
                store = ZarrFsspecStore(fs, read_only=True, path=layout)
                array = await zarr.api.asynchronous.open_array(store=store, mode="r")
                if selections is None:
                    return await array.getitem(...)
                return await asyncio.gather(*(array.getitem(s) for s in selections))

            if concurrency is None:
                return asyncio.run(run())
            with zarr.config.set({"async.concurrency": concurrency}):
                return asyncio.run(run())

        return read

    # zarr-python at its defaults (async.concurrency 10: at most 10 requests in flight),
    # and with the limit raised past any request count here.
    return {"gpuzarr": gpuzarr_read, "zarr-python": zarr_reader(None), "zarr-python-c1024": zarr_reader(1024)}


def run(latency_ms: float, repeats: int) -> list[dict[str, Any]]:
    """Time every (layout, pattern, subject); a list of result records."""
    global LatencyFileSystem
    LatencyFileSystem = _latency_filesystem_class()
    source, objects = _write_layouts()
    latency = latency_ms / 1000
    selections = _windows(1)
    records = []
    for layout in ("sharded", "chunks"):
        readers = _readers(objects, latency, layout)
        for pattern, sel in (("windows", selections), ("full", None)):
            expected = source if sel is None else [source[s] for s in sel]
            for name, read in readers.items():  # (checked before timing)
                got = read(sel)
                same = np.array_equal(got, expected) if sel is None else all(
                    np.array_equal(g, e) for g, e in zip(got, expected, strict=True))
                if not same:
                    raise SystemExit(f"{name} read {layout}/{pattern} wrongly")
            times: dict[str, list[float]] = {name: [] for name in readers}
            requests: dict[str, int] = {}
            for rep in range(repeats):
                order = list(readers) if rep % 2 == 0 else list(reversed(readers))
                for name in order:
                    before = time.perf_counter()
                    readers[name](sel)
                    times[name].append(time.perf_counter() - before)
            for name in readers:  # requests of one read, counted apart from the timing
                requests[name] = _count_requests(objects, latency, layout, name, sel)
            for name, values in times.items():
                records.append({
                    "layout": layout, "pattern": pattern, "subject": name, "latency_ms": latency_ms,
                    "median_s": statistics.median(values), "min_s": min(values), "requests": requests[name],
                })
    return records


def _count_requests(objects: Objects, latency: float, layout: str, name: str, sel: Any) -> int:
    """Requests one open + read makes (the filesystem counts what it answers)."""
    made: list[Any] = []
    original = LatencyFileSystem.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    LatencyFileSystem.__init__ = counting_init
    try:
        _readers(objects, latency, layout)[name](sel)
    finally:
        LatencyFileSystem.__init__ = original
    return sum(fs.requests for fs in made)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.remote_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=10.0, help="wait before each answer (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed reads per subject (default 5)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "remote.jsonl",
                        help="JSON-lines file the records are appended to")
    args = parser.parse_args(argv)
    records = run(args.latency_ms, args.repeats)
    import fsspec
    import zarr

    import gpuzarr

    stamp = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.platform(),
             "python": platform.python_version(), "versions": {"gpuzarr": gpuzarr.__version__,
                                                               "zarr": zarr.__version__, "fsspec": fsspec.__version__}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        for record in records:
            f.write(json.dumps({**stamp, **record}) + "\n")
    print(f"latency {args.latency_ms} ms per request; median of {args.repeats} (open + read)")
    print("ratio: gpuzarr's median over the faster zarr-python configuration's")
    print(f"{'layout':8} {'pattern':8} {'subject':18} {'median':>9} {'requests':>9} {'ratio':>6}")
    for record in records:
        rivals = [r["median_s"] for r in records if r["layout"] == record["layout"]
                  and r["pattern"] == record["pattern"] and r["subject"].startswith("zarr-python")]
        print(f"{record['layout']:8} {record['pattern']:8} {record['subject']:18} {record['median_s'] * 1e3:7.1f}ms "
              f"{record['requests']:9d} {record['median_s'] / min(rivals):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

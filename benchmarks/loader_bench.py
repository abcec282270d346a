"""Training-loader throughput: ``gpuzarr.loader.Loader`` against a torch DataLoader over zarr-python.

The case: ``N`` float32 samples of 256 x 256 stored as an ``(N, 256, 256)`` array,
zstd-compressed, one sample per inner chunk, 16 samples per shard (``--layout chunks``:
unsharded chunks of 4 samples instead). Batches of 64, shuffled, consumed by a dummy
training step that touches every batch. Written by zarr-python, so both readers decode
the same bytes.

Peers, all yielding torch tensors from the same array in the same process tree:

* ``gpuzarr``: ``Loader(array, 64, shuffle=True, output="torch")`` at its defaults (one
  prefetch thread, decode on gpuzarr's thread pool); also with NumPy output.
* ``torch DataLoader + zarr-python``: a map-style Dataset whose ``__getitem__(i)`` is
  ``torch.from_numpy(zarr_array[i])`` (the array opened lazily in each worker),
  ``DataLoader(ds, batch_size=64, shuffle=True, num_workers=w)`` for each ``w`` of
  ``--workers``, with ``persistent_workers=True`` so worker start-up is paid once, in the
  warm-up, not per measured epoch (torch's best case).

Configurations take turns one epoch at a time: ``--warmup`` untimed rounds (page cache,
worker start-up, pool allocation), then ``--epochs`` timed rounds, so load from elsewhere
on the machine hits all of them alike. Reported samples/s are the median (and min/max)
over a configuration's timed epochs; the ratio is over the best DataLoader median. The
load average before and after is printed: compare runs only on a quiet machine.

    python -m benchmarks.loader_bench            # 2048 samples (512 MiB): ~1.5 min on 2 cores, +40 s for the data
    python -m benchmarks.loader_bench --samples 1024 --workers 0,2 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchParams", "Result", "ensure_data", "main", "run"]

#: Bump when the generated values or the write procedure change: old data is then regenerated.
GENERATOR_VERSION = 1
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class BenchParams:
    """What the data set is and how it is stored."""

    samples: int = 2048
    side: int = 256
    layout: str = "shards"  # "shards": 1 sample per inner chunk, shard_samples per shard; "chunks": 4 per chunk
    shard_samples: int = 16
    seed: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(samples, side, side)``."""
        return (self.samples, self.side, self.side)

    @property
    def nbytes(self) -> int:
        """Decoded size."""
        return self.samples * self.side * self.side * 4

    @property
    def name(self) -> str:
        """Directory name encoding every parameter that affects the stored bytes."""
        store = f"s{self.shard_samples}x1" if self.layout == "shards" else "c4"
        shape = f"{self.samples}x{self.side}x{self.side}"
        return f"loader-v{GENERATOR_VERSION}-zstd-float32-{shape}-{store}-seed{self.seed}.zarr"


def _sample_values(i: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth image plus measurement noise, rounded to 3 decimals: compresses like real data (~2x)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    f = 2 + (i % 7)
    wave = np.sin(2 * np.pi * (f * x + 0.3 * i)) * np.cos(2 * np.pi * (3 * y - 0.1 * i))
    return np.round(wave + rng.normal(0.0, 1e-3, (side, side)), 3).astype(np.float32)


def ensure_data(params: BenchParams, data_dir: Path) -> Path:
    """The benchmark array (written by zarr-python once, reused while its manifest matches)."""
    import zarr

    path = data_dir / params.name
    manifest = path / "manifest.json"
    wanted = {"generator": GENERATOR_VERSION, **asdict(params)}
    if manifest.exists() and json.loads(manifest.read_text()) == wanted:
        return path
    if path.exists():
        shutil.rmtree(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"chunks": (4, params.side, params.side)}
    if params.layout == "shards":
        kwargs = {"chunks": (1, params.side, params.side), "shards": (params.shard_samples, params.side, params.side)}
    z = zarr.create_array(path, shape=params.shape, dtype="float32", compressors=zarr.codecs.ZstdCodec(), **kwargs)
    rng = np.random.default_rng(params.seed)
    step = params.shard_samples if params.layout == "shards" else 4
    step *= max(1, 64 // step)  # whole shards/chunks per write
    for start in range(0, params.samples, step):
        stop = min(start + step, params.samples)
        z[start:stop] = np.stack([_sample_values(i, params.side, rng) for i in range(start, stop)])
    manifest.write_text(json.dumps(wanted))  # last: an interrupted write is redone
    return path


def _stored_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def consume(batch: Any) -> float:
    """The dummy training step: touch every sample of the batch (a strided sum)."""
    return float(batch[:, ::32, ::32].sum())


@dataclass
class Result:
    """One configuration's throughput."""

    reader: str
    config: str
    epoch_rates: list[float]

    @property
    def median(self) -> float:
        """Median samples/s over the timed epochs."""
        return statistics.median(self.epoch_rates)


def _timed_epoch(loader: Iterable[Any], samples_per_epoch: int) -> float:
    """One pass over ``loader`` with the dummy consumer: samples per second."""
    start = time.perf_counter()
    n = 0
    for batch in loader:
        consume(batch)
        n += len(batch)
    elapsed = time.perf_counter() - start
    if n != samples_per_epoch:
        raise RuntimeError(f"epoch yielded {n} samples, expected {samples_per_epoch}")
    return n / elapsed


class ZarrDataset:
    """Map-style torch Dataset over zarr-python: one ``zarr_array[i]`` per sample.

    The array is opened lazily in each process (DataLoader workers), as a user would.
    """

    def __init__(self, path: Path, length: int) -> None:
        self.path = str(path)
        self.length = length
        self._array: Any = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        import torch
        import zarr

        if self._array is None:
            self._array = zarr.open_array(self.path, mode="r")
        return torch.from_numpy(self._array[i])


@dataclass
class _Config:
    reader: str
    config: str
    loader: Any
    check: Any = None


def _gpuzarr_config(path: Path, batch: int, output: str) -> _Config:
    import gpuzarr
    from gpuzarr.loader import Loader

    array = gpuzarr.open_array(path, mode="r", device="cpu")
    loader = Loader(array, batch, shuffle=True, seed=0, output=output)

    def check() -> None:
        # What was timed is right: a batch against zarr-python's reading of the same samples.
        import zarr

        epoch = loader.epoch
        loader.set_epoch(0)
        first = np.asarray(next(iter(loader)))
        loader.set_epoch(epoch)
        ids = loader.sample_order(0)[:batch]
        expected = zarr.open_array(path, mode="r").oindex[np.sort(ids)]
        np.testing.assert_array_equal(first, expected[np.argsort(np.argsort(ids))])

    config = f"output={output}, {loader.block_samples}-sample blocks, buffer {loader.shuffle_buffer} blocks"
    return _Config("gpuzarr Loader", config, loader, check)


def _torch_config(path: Path, samples: int, batch: int, workers: int) -> _Config:
    import torch

    dl = torch.utils.data.DataLoader(
        ZarrDataset(path, samples),  # type: ignore[arg-type]
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    return _Config("torch DataLoader + zarr-python", f"num_workers={workers}", dl)


def run(
    params: BenchParams,
    *,
    data_dir: Path,
    batch: int,
    workers: Sequence[int],
    warmup: int,
    epochs: int,
    outputs: Sequence[str] = ("torch", "numpy"),
) -> list[Result]:
    """Generate (or reuse) the data and time every configuration.

    Configurations take turns, one epoch each per round (``warmup`` untimed rounds, then
    ``epochs`` timed ones), so a burst of load from elsewhere on the machine hits them
    alike rather than one configuration's whole measurement.
    """
    path = ensure_data(params, data_dir)
    configs = [_gpuzarr_config(path, batch, output) for output in outputs]
    with warnings.catch_warnings():
        # More workers than CPUs is deliberate (zarr-python waits on I/O): no advice needed.
        warnings.filterwarnings("ignore", message=".*worker processes in total.*")
        configs += [_torch_config(path, params.samples, batch, w) for w in workers]
        rates: list[list[float]] = [[] for _ in configs]
        for round_ in range(warmup + epochs):
            for config, r in zip(configs, rates, strict=True):
                rate = _timed_epoch(config.loader, params.samples)
                if round_ >= warmup:
                    r.append(rate)
    for config in configs:
        if config.check is not None:
            config.check()
    results = [Result(c.reader, c.config, r) for c, r in zip(configs, rates, strict=True)]
    del configs  # persistent DataLoader workers stop with their DataLoaders
    return results


def _table(results: list[Result], params: BenchParams) -> str:
    best_torch = max((r.median for r in results if r.reader.startswith("torch")), default=float("nan"))
    sample_mib = params.side * params.side * 4 / 2**20
    lines = [
        "| reader | configuration | samples/s (median) | min - max | MiB/s | vs best DataLoader |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.reader} | {r.config} | {r.median:,.0f} | {min(r.epoch_rates):,.0f} - {max(r.epoch_rates):,.0f} "
            f"| {r.median * sample_mib:,.0f} | {r.median / best_torch:.2f}x |"
        )
    return "\n".join(lines)


def _environment() -> dict[str, Any]:
    import torch
    import zarr

    import gpuzarr

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "gpuzarr_threads": gpuzarr.config.threads,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "zarr": zarr.__version__,
        "machine": platform.platform(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m benchmarks.loader_bench``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loader_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2048, help="samples of 256x256 float32 (default 2048 = 512 MiB)")
    parser.add_argument("--side", type=int, default=256, help="sample side (default 256)")
    parser.add_argument("--layout", choices=["shards", "chunks"], default="shards",
                        help="shards: 1 sample per inner chunk, --shard-samples per shard; chunks: 4 samples per chunk")
    parser.add_argument("--shard-samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", default="0,2,4", help="DataLoader num_workers values (default 0,2,4)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per configuration (default 1)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration (default 3)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=None, help="append results as JSON lines to this file")
    args = parser.parse_args(argv)

    params = BenchParams(samples=args.samples, side=args.side, layout=args.layout, shard_samples=args.shard_samples)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    path = ensure_data(params, args.data_dir)
    env = _environment()
    stored = _stored_bytes(path)
    print(f"data: {path} ({params.nbytes / 2**20:.0f} MiB decoded, {stored / 2**20:.0f} MiB stored, "
          f"ratio {params.nbytes / stored:.2f}); batch {args.batch}; {args.warmup} warm-up + {args.epochs} timed "
          "epochs per configuration", file=sys.stderr)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), file=sys.stderr)
    load_before = os.getloadavg()[0]
    results = run(params, data_dir=args.data_dir, batch=args.batch, workers=workers, warmup=args.warmup,
                  epochs=args.epochs)
    env["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(_table(results, params))
    if args.out is not None:
        with args.out.open("a") as f:
            for r in results:
                f.write(json.dumps({"benchmark": "loader", "params": asdict(params), "batch": args.batch,
                                    "reader": r.reader, "config": r.config, "epoch_rates": r.epoch_rates,
                                    "median": r.median, "environment": env}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

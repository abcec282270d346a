"""Host-side planning of the GPU write path (gpuzarr.gpu.encode_plan), checked on the host.

The plans are run with the CPU compressors and the NumPy kernel references
(``frame_batch_on_host``, ``encode_blosc_batch_on_host``) and the output is decoded by
the libraries that will read it: zlib, gzip, numcodecs, gpuzarr's own codecs, and for
blosc also gpuzarr's GPU read-side plan (``plan_blosc_batch`` + ``decode_blosc_batch_on_host``).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any

import numcodecs
import numcodecs.blosc
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuzarr.codecs import GzipCodec, ZlibCodec, v2_compressor
from gpuzarr.codecs.base import ChunkSpec
from gpuzarr.codecs.zstd import ZstdCodec
from gpuzarr.gpu import encode_plan as ep
from gpuzarr.gpu import plan as rp
from gpuzarr.metadata import data_type_from_user

SIZES = [0, 1, 7, 100, 1000, 4099, 65536 + 3, 300_001]


def _payload(n: int, kind: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed + n)
    if kind == "random":
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    if kind == "zeros":
        return bytes(n)
    return (rng.integers(0, 8, n, dtype=np.uint8) * 3).tobytes()  # compressible, not trivially


def _spec(nbytes: int) -> ChunkSpec:
    data_type = data_type_from_user("uint8")
    return ChunkSpec((nbytes,), data_type, data_type.cast_fill_value(None))


def _assert_tiles(assembly: ep.Assembly) -> None:
    """The four copy batches write every byte of every chunk exactly once, nothing else."""
    covered = np.zeros(assembly.nbytes, np.int64)
    for b in (assembly.meta_copies, assembly.payload, assembly.raw, assembly.trailers):
        for d, n in zip(b.dst_offsets.tolist(), b.sizes.tolist(), strict=True):
            covered[d : d + n] += 1
    inside = np.zeros(assembly.nbytes, bool)
    for o, n in zip(assembly.offsets.tolist(), assembly.sizes.tolist(), strict=True):
        inside[o : o + n] = True
    assert np.all(covered[inside] == 1) and np.all(covered[~inside] == 0)


# ======================================================================================
# single-stream containers


def _chunks(seed: int = 0) -> list[bytes]:
    return [_payload(n, kind, seed) for n in SIZES for kind in ("small", "random")] + [b"", _payload(5000, "zeros")]


@pytest.mark.parametrize("level", [1, 5, 9])
def test_gzip_frames_decode(level: int) -> None:
    chunks = _chunks()
    framed = ep.encode_frames_on_host("gzip", chunks, level)
    for data, out in zip(chunks, framed, strict=True):
        assert out[:10] == ep.GZIP_HEADER
        assert zlib.decompress(out, wbits=31) == data
        assert gzip.decompress(out) == data
        assert bytes(numcodecs.GZip(level).decode(out)) == data
        assert bytes(GzipCodec(level).cpu_decode(out, _spec(len(data)))) == data
        assert int.from_bytes(out[-4:], "little") == len(data)
        assert int.from_bytes(out[-8:-4], "little") == zlib.crc32(data)


@pytest.mark.parametrize("level", [None, -1, 0, 1, 2, 6, 9])
def test_zlib_frames_decode(level: int | None) -> None:
    chunks = _chunks(1)
    framed = ep.encode_frames_on_host("zlib", chunks, level)
    for data, out in zip(chunks, framed, strict=True):
        assert out[:2] == zlib.compress(b"", -1 if level is None else level)[:2]
        assert zlib.decompress(out, wbits=15) == data
        assert bytes(numcodecs.Zlib(max(level or 1, 0)).decode(out)) == data
        assert bytes(ZlibCodec(level if level is not None else 1).cpu_decode(out, _spec(len(data)))) == data
        assert int.from_bytes(out[-4:], "big") == zlib.adler32(data)


def test_lz4_frames_decode() -> None:
    chunks = _chunks(2)
    framed = ep.encode_frames_on_host("lz4", chunks)
    v2 = v2_compressor({"id": "lz4"})
    assert v2 is not None
    for data, out in zip(chunks, framed, strict=True):
        assert int.from_bytes(out[:4], "little") == len(data)
        if not data:
            # numcodecs cannot decode the empty chunk it writes itself; ours is the same bytes.
            assert out == numcodecs.LZ4().encode(b"")
            continue
        assert bytes(numcodecs.LZ4().decode(out)) == data
        assert bytes(v2.cpu_decode(out, _spec(len(data)))) == data


def test_zstd_frames_pass_through() -> None:
    chunks = _chunks(3)
    framed = ep.encode_frames_on_host("zstd", chunks, 3)
    for data, out in zip(chunks, framed, strict=True):
        assert zstandard.ZstdDecompressor().decompress(out) == data
        if not data:
            continue  # numcodecs (and so gpuzarr's zstd codec) cannot decode an empty frame, not even its own
        assert bytes(numcodecs.Zstd().decode(out)) == data
        assert bytes(ZstdCodec(3).cpu_decode(out, _spec(len(data)))) == data
    sizes = np.array([len(c) for c in chunks], dtype=np.int64)
    batch = rp.CompressBatch("zstd", rp.aligned_slots(0, sizes, 8), sizes, 3)
    compressed, coff, csize = ep.compress_batch_on_host(batch, np.zeros(int(batch.offsets[-1] + sizes[-1]), np.uint8))
    plan = ep.plan_frames("zstd", batch, coff, csize)
    assert plan.passthrough  # the writer can keep Backend.compress's buffer as the output
    assert plan.nbytes <= compressed.size
    assert not ep.plan_frames("gzip", rp.CompressBatch("deflate", batch.offsets, sizes), coff, csize).passthrough
    described = ep.plan_frames("zstd", batch, coff, csize, zstd_descriptors=compressed[coff + 4])
    assert not described.passthrough  # a checksum appended, a flag set
    flagged = compressed[coff + 4] | 0x04  # frames the compressor wrote with a checksum: kept as they are
    assert ep.plan_frames("zstd", batch, coff, csize, zstd_descriptors=flagged).passthrough


def test_zstd_frames_given_a_content_checksum() -> None:
    chunks = _chunks(3)
    for data, out in zip(chunks, ep.encode_frames_on_host("zstd", chunks, 3, zstd_checksum=True), strict=True):
        assert out[4] & 0x04  # the header's checksum flag
        assert out[-4:] == zstandard.ZstdCompressor(write_checksum=True).compress(data)[-4:]  # libzstd's checksum
        assert zstandard.ZstdDecompressor().decompress(out) == data  # (checks the checksum)


@pytest.mark.parametrize("codec", ["gzip", "zlib", "lz4", "zstd"])
def test_frame_plan_layout(codec: str) -> None:
    """Offsets packed and 8-aligned; the four copy batches tile each framed chunk exactly
    once; checksums given explicitly give the same bytes as computed ones."""
    chunks = [_payload(n, "small") for n in (0, 3, 1000, 70001)]
    sizes = np.array([len(c) for c in chunks], dtype=np.int64)
    offsets = rp.aligned_slots(0, sizes, 16) + 8  # any source layout
    source = np.zeros(int(offsets[-1] + sizes[-1]), np.uint8)
    for c, o in zip(chunks, offsets.tolist(), strict=True):
        source[o : o + len(c)] = np.frombuffer(c, np.uint8)
    batch = rp.CompressBatch(ep.FRAME_COMPRESSORS[codec], offsets, sizes, 4)
    compressed, coff, csize = ep.compress_batch_on_host(batch, source)
    plan = ep.plan_frames(codec, batch, coff, csize)
    assert np.all(plan.offsets % 8 == 0)
    assert np.all(plan.offsets[1:] >= plan.offsets[:-1] + plan.sizes[:-1])
    _assert_tiles(plan)
    out = ep.frame_batch_on_host(plan, compressed, source=source)
    if plan.checksum is not None:
        checks = ep.host_checksums(plan.checksum, source, plan.checksum_offsets, plan.checksum_sizes)
        np.testing.assert_array_equal(ep.frame_batch_on_host(plan, compressed, checks), out)
        with pytest.raises(ValueError, match="checksums"):
            ep.frame_batch_on_host(plan, compressed)
    decode = {"gzip": gzip.decompress, "zlib": zlib.decompress, "zstd": zstandard.ZstdDecompressor().decompress,
              "lz4": lambda b: numcodecs.LZ4().decode(b) if len(b) > 5 else b""}[codec]
    assert [bytes(decode(c)) for c in plan.split(out)] == chunks


def test_frame_plan_rejects_mismatches() -> None:
    batch = rp.CompressBatch("deflate", np.zeros(2, np.int64), np.ones(2, np.int64))
    with pytest.raises(ValueError, match="no framing"):
        ep.plan_frames("bz2", batch, [0, 8], [3, 3])
    with pytest.raises(ValueError, match="wrap lz4"):
        ep.plan_frames("lz4", batch, [0, 8], [3, 3])
    with pytest.raises(ValueError, match="2 chunks"):
        ep.plan_frames("gzip", batch, [0], [3])


def test_empty_batch_frames() -> None:
    batch = rp.CompressBatch("deflate", np.zeros(0, np.int64), np.zeros(0, np.int64))
    plan = ep.plan_frames("gzip", batch, [], [])
    empty = np.zeros(0, np.uint8)
    assert plan.nbytes == 0 and plan.split(ep.frame_batch_on_host(plan, empty, source=empty)) == []


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_checksum_bytes(byteorder: Any) -> None:
    values = np.array([0, 1, 0xDEADBEEF, 2**32 - 1], dtype=np.uint32)
    expected = b"".join(int(v).to_bytes(4, byteorder) for v in values)
    assert ep.checksum_bytes(values, byteorder).tobytes() == expected


@pytest.mark.parametrize("kind", ["crc32", "adler32"])
def test_host_checksums_match_zlib(kind: str) -> None:
    data = np.frombuffer(_payload(10000, "random"), np.uint8).copy()
    offsets, sizes = np.array([0, 5, 100, 9999]), np.array([0, 17, 9000, 1])
    fn = getattr(zlib, kind)
    expected = [fn(data[o : o + n].tobytes()) for o, n in zip(offsets, sizes, strict=True)]
    assert ep.host_checksums(kind, data, offsets, sizes).tolist() == expected
    assert ep.host_checksums(kind, data, offsets, sizes, rp.reference).tolist() == expected


# ======================================================================================
# blosc


def _blosc_data(n: int, typesize: int, kind: str, seed: int = 0) -> bytes:
    """Chunk contents: small integers (compressible after shuffling), random (raw blocks,
    memcpy-ed chunks), zeros, or half zeros then random (raw blocks in a compressed chunk)."""
    rng = np.random.default_rng(seed * 7919 + n * 31 + typesize)
    if kind == "random":
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    if kind == "zeros":
        return bytes(n)
    if kind == "half":
        return bytes(n // 2) + rng.integers(0, 256, n - n // 2, dtype=np.uint8).tobytes()
    elems = np.zeros((n // typesize + 1, typesize), dtype=np.uint8)
    elems[:, 0] = rng.integers(0, 16, len(elems))
    return elems.reshape(-1)[:n].tobytes()


def _check_blosc(chunks: list[bytes], typesize: int, shuffle: Any, cname: str, clevel: int = 5,
                 blocksize: int = 0, kernels: Any = rp.reference, **options: Any) -> tuple[ep.BloscEncodePlan,
                                                                                       ep.BloscEncodeLayout]:
    """Encode on the host; decode with numcodecs and with the GPU read side's plan."""
    plan = ep.plan_blosc_encode([len(c) for c in chunks], typesize, shuffle, cname, clevel, blocksize, **options)
    encoded = ep.encode_blosc_batch_on_host(plan, chunks, kernels)
    assert len(encoded) == len(chunks)
    for i, (data, out) in enumerate(zip(chunks, encoded, strict=True)):
        header = rp.parse_blosc_header(out)
        assert (header.nbytes, header.typesize, header.shuffle, header.split) == (
            len(data), plan.typesize, shuffle, False), f"chunk {i}"
        assert header.codec == ("lz4" if cname == "lz4hc" else cname)
        if data:  # numcodecs cannot decode an empty blosc chunk, not even its own
            assert bytes(numcodecs.Blosc().decode(out)) == data, f"chunk {i}: {header}"
    read = rp.plan_blosc_batch(encoded, input_alignment=8, output_alignment=8)
    assert not len(read.cpu_chunks)
    work = rp.decode_blosc_batch_on_host(read, encoded)
    for i, data in enumerate(chunks):
        off = int(read.decoded_offsets[i])
        assert work[off : off + len(data)].tobytes() == data, f"chunk {i} through the read-side plan"
    # What the layout reports agrees with what was written.
    sizes = [len(e) for e in encoded]
    _, coff, csize = ep.compress_batch_on_host(plan.compress, _shuffled_workspace(plan, chunks))
    layout = ep.layout_blosc_encode(plan, csize, coff)
    assert layout.sizes.tolist() == sizes
    _assert_tiles(layout)
    assert [rp.parse_blosc_header(e).memcpyed for e in encoded] == layout.memcpyed.tolist()
    return plan, layout


def _shuffled_workspace(plan: ep.BloscEncodePlan, chunks: list[bytes]) -> np.ndarray:
    work = ep.pack_encode_input(chunks, plan)
    for sb in plan.shuffles:
        (rp.reference.shuffle if sb.kind == "shuffle" else rp.reference.bitshuffle)(
            work, work, sb.src_offsets, sb.dst_offsets, sb.sizes, sb.typesize)
    rp.reference.copy_ranges(work, work, plan.gather.src_offsets, plan.gather.dst_offsets, plan.gather.sizes)
    return work


def _blosc_chunks(typesize: int, seed: int = 0) -> list[bytes]:
    """Empty, tiny (< typesize), under c-blosc's 128-byte minimum, sizes that are not
    multiples of the typesize, single-block, multi-block with a leftover block,
    incompressible (memcpy-ed), partly incompressible (raw blocks), constant."""
    t = typesize
    spec = [(0, "small"), (max(t - 1, 1), "small"), (100, "small"), (128, "small"), (1001, "small"),
            (7 * t + 3, "small"), (70_001, "small"), (40_000 * t, "small"), (50_000, "random"), (60_000, "half"),
            (33_000, "zeros")]
    return [_blosc_data(n, t, kind, seed) for n, kind in spec]


TYPESIZES = [1, 2, 4, 8, 3, 12]


@pytest.mark.parametrize("cname", ["lz4", "lz4hc", "zstd", "zlib"])
@pytest.mark.parametrize("shuffle", ["noshuffle", "shuffle", "bitshuffle"])
@pytest.mark.parametrize("typesize", TYPESIZES)
def test_blosc_round_trip(typesize: int, shuffle: str, cname: str) -> None:
    chunks = _blosc_chunks(typesize)
    plan, layout = _check_blosc(chunks, typesize, shuffle, cname, blocksize=8192)
    assert int(np.diff(plan.chunk_blocks).max()) > 1  # multi-block chunks
    assert (plan.nbytes % plan.blocksizes).any()  # leftover blocks
    assert layout.memcpyed.any() and not layout.memcpyed.all()
    kept = ~layout.memcpyed[plan.block_chunk]
    assert (layout.block_raw & kept).any() and (~layout.block_raw & kept).any()  # raw and compressed blocks


@pytest.mark.parametrize("cname", ["lz4", "zstd", "zlib"])
@pytest.mark.parametrize("shuffle", ["noshuffle", "shuffle", "bitshuffle"])
def test_blosc_automatic_blocksize(shuffle: str, cname: str) -> None:
    chunks = [_blosc_data(n, 4, kind) for n, kind in [(1 << 20, "small"), (300_000, "small"), (2_000_003, "half")]]
    for clevel in (1, 9):
        _check_blosc(chunks, 4, shuffle, cname, clevel)


@pytest.mark.parametrize("blocksize", [1, 128, 200, 1000, 4097, 10**6])
def test_blosc_explicit_blocksizes(blocksize: int) -> None:
    chunks = [_blosc_data(n, 3, "small") for n in (5000, 65_537, 200)]
    plan, _ = _check_blosc(chunks, 3, "bitshuffle", "zstd", blocksize=blocksize)
    # As c-blosc: at least 128, at most the chunk, rounded down to the typesize.
    expected = [min(max(blocksize, 128), n) for n in (5000, 65_537, 200)]
    expected = [b // 3 * 3 if b > 3 else b for b in expected]
    assert plan.blocksizes.tolist() == expected


@pytest.mark.parametrize("typesize", [1, 3, 8])
def test_blosc_max_blocksize(typesize: int) -> None:
    chunks = [_blosc_data(n, typesize, "small") for n in (1 << 20, 200_001, 1000)]
    plan, _ = _check_blosc(chunks, typesize, "shuffle", "zlib", clevel=9, max_blocksize=65536)
    assert plan.blocksizes.max() <= 65536 and np.all(plan.blocksizes[:2] % typesize == 0)
    assert plan.blocksizes[2] == 1000 // typesize * typesize  # the whole chunk, as c-blosc
    plan, _ = _check_blosc(chunks[:1], typesize, "bitshuffle", "lz4", blocksize=300_000, max_blocksize=10_000)
    assert plan.blocksizes[0] == 10_000 // typesize * typesize


def test_blosc_level_zero_and_huge_typesize() -> None:
    chunks = [_blosc_data(n, 4, "small") for n in (0, 1000, 50_000)]
    plan, _ = _check_blosc(chunks, 4, "shuffle", "lz4", clevel=0)
    assert plan.memcpyed.all() and not len(plan.compress)
    # typesize over 255: c-blosc writes 1 (and numcodecs too)
    plan, _ = _check_blosc([_blosc_data(3000, 1, "small")], 300, "shuffle", "zstd")
    assert plan.typesize == 1


def test_blosc_misaligned_blocks_are_gathered() -> None:
    # Unshuffled blocks of 999 bytes start misaligned: gathered to aligned scratch slots.
    chunks = [_blosc_data(10_000, 3, "small"), _blosc_data(5000, 3, "small")]
    plan, _ = _check_blosc(chunks, 3, "noshuffle", "lz4", blocksize=1000)
    assert len(plan.gather) > 0 and not plan.shuffles
    assert np.all(plan.compress.offsets % 8 == 0)
    plan, _ = _check_blosc(chunks, 3, "noshuffle", "lz4", blocksize=1000, input_alignment=1)
    assert not len(plan.gather) and plan.workspace_nbytes == plan.input_nbytes


def test_blosc_plan_stages() -> None:
    chunks = _blosc_chunks(4)
    plan = ep.plan_blosc_encode([len(c) for c in chunks], 4, "bitshuffle", "zlib", 5, 4096)
    assert plan.compress.codec == "deflate" and plan.compress.level == 5
    (sb,) = plan.shuffles
    assert sb.kind == "bitshuffle" and sb.typesize == 4
    # Only blocks whose element count is a multiple of 8 are bitshuffled (c-blosc's rule).
    assert np.all((sb.sizes // 4) % 8 == 0)
    assert np.all(plan.input_offsets % 256 == 0)
    assert np.all(sb.dst_offsets >= plan.input_nbytes) and np.all(plan.compress.offsets % 8 == 0)
    assert plan.workspace_nbytes >= int((plan.compress.offsets + plan.compress.sizes).max())
    assert np.array_equal(plan.chunk_blocks, np.concatenate([[0], np.cumsum(np.bincount(plan.block_chunk,
                                                                                        minlength=len(chunks)))]))


def test_blosc_layout_tiles_the_output() -> None:
    chunks = _blosc_chunks(2)
    plan = ep.plan_blosc_encode([len(c) for c in chunks], 2, "shuffle", "zlib", 5, 4096)
    _, coff, csize = ep.compress_batch_on_host(plan.compress, _shuffled_workspace(plan, chunks))
    layout = ep.layout_blosc_encode(plan, csize, coff)
    assert np.all(layout.offsets % 8 == 0)
    _assert_tiles(layout)
    assert layout.checksum == "adler32" and len(layout.trailers) == len(layout.payload)
    with pytest.raises(ValueError, match="streams"):
        ep.layout_blosc_encode(plan, csize[:-1], coff)


@pytest.mark.parametrize("cname", ["lz4", "zlib"])
def test_blosc_raw_block_threshold(cname: str) -> None:
    """A stream is kept only when smaller than its block: a csize equal to the block size
    means "stored raw" to the decoder. zlib streams count their 6 bytes of wrapper."""
    plan = ep.plan_blosc_encode([4 * 4096], 1, "noshuffle", cname, 5, 4096)
    wrap = 6 if cname == "zlib" else 0
    csize = np.array([10, 4096 - wrap, 4095 - wrap, 5000])
    layout = ep.layout_blosc_encode(plan, csize, rp.aligned_slots(0, csize, 8))
    assert layout.block_raw.tolist() == [False, True, False, True]
    assert not layout.memcpyed[0]
    assert layout.sizes.tolist() == [16 + 16 + (4 + 10 + wrap) + (4 + 4096) + (4 + 4095) + (4 + 4096)]
    assert len(layout.payload) == 2 and layout.raw.sizes.tolist() == [4096, 4096]
    # Every block raw: more than nbytes + 16, so the chunk is memcpy-ed (as c-blosc does).
    layout = ep.layout_blosc_encode(plan, np.full(4, 4096), rp.aligned_slots(0, np.full(4, 4096), 8))
    assert layout.memcpyed[0] and layout.sizes.tolist() == [4 * 4096 + 16]
    assert layout.raw.src_offsets.tolist() == plan.input_offsets.tolist() and not len(layout.payload)


@pytest.fixture
def blosc_never_split(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """c-blosc's global API in never-split mode, restored to its default afterwards.

    The global API reads ``BLOSC_SPLITMODE`` and keeps the mode process-wide after the
    variable is gone: without the reset, later tests in the same process (any order
    xdist picks) would see blosc chunks that are never split.
    """
    monkeypatch.setattr(numcodecs.blosc, "use_threads", True)  # the global API reads the environment
    monkeypatch.setenv("BLOSC_SPLITMODE", "NEVER")
    try:
        yield
    finally:
        monkeypatch.setenv("BLOSC_SPLITMODE", "FORWARD_COMPAT")  # c-blosc's default
        numcodecs.Blosc("lz4").encode(np.zeros(64, dtype="u4"))


@pytest.mark.usefixtures("blosc_never_split")
def test_blosc_blocksize_matches_c_blosc() -> None:
    """Headers equal c-blosc's in never-split mode (block size choice, flags, typesize)."""
    for cname in ep.BLOSC_ENCODE_CNAMES:
        for clevel in range(10):
            for typesize in (1, 2, 4, 8):
                for n in (0, 64, 128, 1000, 32_760, 32_768, 100_000, 1 << 20, 3 << 20):
                    for blocksize in (0, 100, 5000) if n <= 100_000 else (0, 300_000):
                        data = np.zeros(n // typesize, dtype=f"u{typesize}")
                        ref = rp.parse_blosc_header(
                            numcodecs.Blosc(cname, clevel, numcodecs.Blosc.BITSHUFFLE, blocksize).encode(data))
                        plan = ep.plan_blosc_encode([data.nbytes], typesize, "bitshuffle", cname, clevel, blocksize)
                        ours = (plan.flags | (rp.BLOSC_MEMCPYED if plan.memcpyed[0] else 0), plan.typesize,
                                int(plan.blocksizes[0]))
                        assert ours == (ref.flags, ref.typesize, ref.blocksize), (cname, clevel, typesize, n, blocksize)
    # and the whole header, through the encoder
    data = np.arange(300_000, dtype="<u4") % 1000
    for cname in ep.BLOSC_ENCODE_CNAMES:
        ref = numcodecs.Blosc(cname, 5, numcodecs.Blosc.SHUFFLE).encode(data)
        plan = ep.plan_blosc_encode([data.nbytes], 4, "shuffle", cname, 5)
        assert ep.encode_blosc_batch_on_host(plan, [data.tobytes()])[0][:12] == ref[:12]


def test_blosc_rejects_what_it_cannot_encode() -> None:
    for bad in [dict(cname="blosclz"), dict(cname="snappy"), dict(shuffle="auto"), dict(clevel=10),
                dict(typesize=0), dict(max_blocksize=0), dict(sizes=[-1]), dict(sizes=[2**31])]:
        args: dict[str, Any] = dict(sizes=[10], typesize=4, shuffle="shuffle", cname="lz4", clevel=5)
        args.update(bad)
        with pytest.raises(ValueError):
            ep.plan_blosc_encode(**args)
    plan = ep.plan_blosc_encode([10, 20], 4, "shuffle", "lz4", 5)
    with pytest.raises(ValueError, match="2 chunks"):
        ep.pack_encode_input([b"x" * 10], plan)
    with pytest.raises(ValueError, match="holds 11 bytes"):
        ep.pack_encode_input([b"x" * 10, b"y" * 11], plan)


def test_blosc_packed_input_and_empty_batch() -> None:
    chunks = _blosc_chunks(8)
    plan = ep.plan_blosc_encode([len(c) for c in chunks], 8, "shuffle", "zstd", 3)
    packed = ep.pack_encode_input(chunks, plan)[: plan.input_nbytes]
    assert ep.encode_blosc_batch_on_host(plan, packed) == ep.encode_blosc_batch_on_host(plan, chunks)
    empty = ep.plan_blosc_encode([], 4, "shuffle", "lz4", 5)
    assert len(empty) == 0 and ep.encode_blosc_batch_on_host(empty, []) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 40_000), min_size=1, max_size=4),
    typesize=st.sampled_from([1, 2, 3, 4, 5, 8, 12, 16]),
    shuffle=st.sampled_from(["noshuffle", "shuffle", "bitshuffle"]),
    cname=st.sampled_from(list(ep.BLOSC_ENCODE_CNAMES)),
    clevel=st.integers(0, 9),
    blocksize=st.sampled_from([0, 0, 128, 300, 1024, 4096]),
    kinds=st.lists(st.sampled_from(["small", "random", "zeros", "half"]), min_size=4, max_size=4),
    seed=st.integers(0, 1000),
)
def test_blosc_property(sizes: list[int], typesize: int, shuffle: str, cname: str, clevel: int, blocksize: int,
                        kinds: list[str], seed: int) -> None:
    chunks = [_blosc_data(n, typesize, kind, seed) for n, kind in zip(sizes, kinds, strict=False)]
    _check_blosc(chunks, typesize, shuffle, cname, clevel, blocksize)


def test_zstd_checksums_only_for_frames_written_without_one() -> None:
    """Trailer j belongs to the j-th frame that gets one: in a batch where the
    compressor flagged frame 1 itself, frames 0 and 2 get checksums, frame 1 is kept."""
    chunks = [bytes(range(200)) * 3, b"xyz" * 50, bytes(1000)]
    sizes = np.array([len(c) for c in chunks], dtype=np.int64)
    offsets = rp.aligned_slots(0, sizes, 8)
    source = np.zeros(int(offsets[-1] + sizes[-1]), np.uint8)
    for chunk, off in zip(chunks, offsets.tolist(), strict=True):
        source[off : off + len(chunk)] = np.frombuffer(chunk, np.uint8)
    batch = rp.CompressBatch("zstd", offsets, sizes, 3)
    compressed, coff, csize = ep.compress_batch_on_host(batch, source)
    descriptors = compressed[coff + 4].copy()
    descriptors[1] |= 0x04
    plan = ep.plan_frames("zstd", batch, coff, csize, zstd_descriptors=descriptors)
    assert plan.sizes.tolist() == [csize[0] + 4, csize[1], csize[2] + 4]
    framed = plan.split(ep.frame_batch_on_host(plan, compressed, source=source))
    for i in (0, 2):
        assert zstandard.ZstdDecompressor().decompress(framed[i]) == chunks[i]  # (checks the checksum)
        assert framed[i][-4:] == zstandard.ZstdCompressor(write_checksum=True).compress(chunks[i])[-4:]
    assert framed[1] == compressed[coff[1] : coff[1] + csize[1]].tobytes()  # the compressor's frame, as it was

// CRC-32C (Castagnoli) and CRC-32 (zlib/gzip) of every buffer of a batch, one thread
// block per buffer.
//
// crc32c_batch: the checksum of the v3 `crc32c` codec and of sharding indexes: reflected
// polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF (the `crc32c` package's
// crc32c()). crc32_batch: the CRC of gzip and zlib's crc32() (the v2 `crc32` codec):
// reflected polynomial 0xEDB88320, same initial value and final xor. The two differ only
// in the polynomial, a template parameter of the code below.
//
// Within a block each thread checksums one contiguous segment with slicing-by-8 tables
// (built in shared memory by the block), then the segments are combined with the identity
//     crc(A || B) = crc(A) * x^(8 |B|)  xor  crc(B)     (products mod the polynomial)
// (zlib's crc32_combine). Unrolled over all segments, segment t contributes
// crc(segment t) * x^(8 * bytes after it), so contributions are xor-ed together in any
// order (one shared atomicXor each) and no thread waits on another's result.
// Reference: gpuzarr.gpu.reference.crc32c / crc32 (which follow the same segmentation).
//
// Batch layout: buffer b is data[offsets[b] : offsets[b] + sizes[b]]; out[b] receives its
// CRC. Launch: 1-d grid of any size (blocks take buffers grid-stride), any block size up
// to 1024. Every thread of a block must reach the __syncthreads() calls, so the loops
// below are uniform per block.
//
// gz_crc_tables / gz_crc_block are also used by shard_index.cu, which is compiled
// together with this file.

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#define GZ_CRC32C_POLY 0x82F63B78u  // reflected Castagnoli polynomial
#define GZ_CRC32_POLY 0xEDB88320u   // reflected IEEE 802.3 polynomial (zlib, gzip)

// a * b modulo the polynomial, both in reflected representation (x^0 is the top bit).
template <u32 POLY>
static __device__ __forceinline__ u32 gz_crc_mulmod(u32 a, u32 b) {
    u32 product = 0;
    for (u32 m = 0x80000000u; m != 0; m >>= 1) {
        if (a & m) product ^= b;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
    }
    return product;
}

// crc * x^(8 * nbytes) modulo the polynomial: what appending nbytes zero bytes does to a
// raw CRC register. Square-and-multiply over the bits of nbytes.
template <u32 POLY>
static __device__ u32 gz_crc_shift(u32 crc, u64 nbytes) {
    u32 power = 0x00800000u;  // x^8: one byte
    while (nbytes != 0 && crc != 0) {
        if (nbytes & 1) crc = gz_crc_mulmod<POLY>(power, crc);
        nbytes >>= 1;
        if (nbytes != 0) power = gz_crc_mulmod<POLY>(power, power);
    }
    return crc;
}

// Fill tables[k][v] = CRC register after byte v followed by k zero bytes (slicing-by-8).
// Called by every thread of the block; ends with a barrier.
template <u32 POLY>
static __device__ void gz_crc_tables(u32 (*tables)[256]) {
    for (u32 v = threadIdx.x; v < 256; v += blockDim.x) {
        u32 c = v;
        for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        tables[0][v] = c;
    }
    __syncthreads();
    for (int k = 1; k < 8; ++k) {
        for (u32 v = threadIdx.x; v < 256; v += blockDim.x) {
            const u32 prev = tables[k - 1][v];
            tables[k][v] = (prev >> 8) ^ tables[0][prev & 0xff];
        }
        __syncthreads();
    }
}

// Standard CRC of p[0:n] (initial value and final xor applied) with the given tables:
// the polynomial is in the tables, so this needs no template parameter.
static __device__ u32 gz_crc_segment(const u32 (*tables)[256], const u8* p, u64 n) {
    u32 crc = 0xFFFFFFFFu;
    // Bytes up to an 8-byte boundary one at a time, then 8 per step with aligned loads.
    while (n != 0 && ((unsigned long long)p & 7) != 0) {
        crc = tables[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        --n;
    }
    for (; n >= 8; n -= 8, p += 8) {
        const u64 word = *(const u64*)p;  // little-endian, like the byte order of the data
        const u32 lo = crc ^ (u32)word;
        const u32 hi = (u32)(word >> 32);
        crc = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^
              tables[4][lo >> 24] ^ tables[3][hi & 0xff] ^ tables[2][(hi >> 8) & 0xff] ^
              tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
    }
    while (n != 0) {
        crc = tables[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        --n;
    }
    return ~crc;
}

// Bytes per thread segment for a buffer of n bytes: a multiple of 8 so that segments
// keep the 8-byte alignment of the buffer. Must match reference._crc_segment_bytes.
static __device__ __forceinline__ u64 gz_crc_segment_bytes(u64 n, u32 threads) {
    const u64 per_thread = (n + threads - 1) / threads;
    return (per_thread + 7) & ~(u64)7;
}

// CRC of p[0:n] computed by the whole block; every thread gets the result.
// `acc` is a __shared__ word owned by the caller; tables come from gz_crc_tables<POLY>.
template <u32 POLY>
static __device__ u32 gz_crc_block(const u32 (*tables)[256], u32* acc, const u8* p, u64 n) {
    if (threadIdx.x == 0) *acc = 0;
    __syncthreads();
    const u64 seg = gz_crc_segment_bytes(n, blockDim.x);
    const u64 start = (u64)threadIdx.x * seg;
    if (start < n) {
        const u64 end = start + seg < n ? start + seg : n;
        const u32 part = gz_crc_shift<POLY>(gz_crc_segment(tables, p + start, end - start), n - end);
        if (part != 0) atomicXor(acc, part);
    }
    __syncthreads();
    const u32 crc = *acc;
    __syncthreads();  // all threads read acc before the next call resets it
    return crc;
}

// The body of the batch kernels: one block per buffer, grid-stride.
template <u32 POLY>
static __device__ void gz_crc_batch(const u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u32* out) {
    __shared__ u32 tables[8][256];
    __shared__ u32 acc;
    gz_crc_tables<POLY>(tables);
    for (u32 b = blockIdx.x; b < nbuf; b += gridDim.x) {
        const u32 crc = gz_crc_block<POLY>(tables, &acc, data + offsets[b], sizes[b]);
        if (threadIdx.x == 0) out[b] = crc;
    }
}

extern "C" __global__ void crc32c_batch(const u8* data, const u64* offsets, const u64* sizes, u32 nbuf,
                                        u32* out) {
    gz_crc_batch<GZ_CRC32C_POLY>(data, offsets, sizes, nbuf, out);
}

extern "C" __global__ void crc32_batch(const u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u32* out) {
    gz_crc_batch<GZ_CRC32_POLY>(data, offsets, sizes, nbuf, out);
}

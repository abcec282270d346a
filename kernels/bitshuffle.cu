// Blosc bitshuffle and bit-unshuffle over a batch of blosc blocks.
//
// c-blosc bitshuffles each block with the bitshuffle library's bshuf_trans_bit_elem over
// the block's first n8 elements, n8 = (size / typesize) rounded down to a multiple of 8;
// the bytes after them are copied as they are. (Whether a block with a count of elements
// that is not a multiple of 8 is bitshuffled at all is the planner's decision: it plans
// such blocks as plain copies when c-blosc leaves them unshuffled.)
//
// Layout of a shuffled block: bit k of byte j of element i sits at bit position
// (j * 8 + k) * n8 + i of the block, bits packed least significant first within a byte.
// Equivalently: for byte plane j and bit k, a row of n8 bits, rows in (j, k) order.
// Reference: gpuzarr.gpu.reference.bitshuffle / bitunshuffle.
//
// Batch layout: item b reads src[src_offsets[b] : + sizes[b]] and writes
// dst[dst_offsets[b] : + sizes[b]] (not in place); `typesize` is uniform over a launch.
//
// Launch: grid (gx, gy), any block size. Items over blockIdx.y (grid-stride); within an
// item, one thread step handles one (byte plane j, group g of 8 elements): it transposes
// the 8x8 bit matrix formed by byte j of elements 8g..8g+7 and the 8 bit rows of plane j.

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

// Transpose the 8x8 bit matrix held in x (byte r = row r, bit c = column c): afterwards
// bit c of byte r is what bit r of byte c was. The bitshuffle library's TRANS_BIT_8X8;
// it is its own inverse.
static __device__ __forceinline__ u64 gz_transpose_8x8(u64 x) {
    u64 t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
    x = x ^ t ^ (t << 28);
    return x;
}

template <bool UNSHUFFLE>
static __device__ void gz_bitshuffle_block(const u8* __restrict__ src, u8* __restrict__ dst, u64 size,
                                           u32 typesize, u64 first, u64 stride) {
    const u64 n8 = (size / typesize) & ~(u64)7;
    const u64 groups = n8 / 8;  // bytes per bit row
    const u64 work = groups * typesize;
    // Work index w = j * groups + g: adjacent threads take adjacent groups of one plane,
    // so the bit-row side of the transpose (8 rows of `groups` bytes) reads or writes
    // adjacent bytes.
    for (u64 w = first; w < work; w += stride) {
        const u64 j = w / groups;
        const u64 g = w - j * groups;
        const u8* rows = (UNSHUFFLE ? src : dst) + j * 8 * groups + g;  // row k at rows[k * groups]
        u64 x = 0;
        if (UNSHUFFLE) {
            for (u32 k = 0; k < 8; ++k) x |= (u64)rows[k * groups] << (8 * k);
            x = gz_transpose_8x8(x);
            u8* out = dst + 8 * g * typesize + j;  // byte j of element 8g + m at out[m * typesize]
            for (u32 m = 0; m < 8; ++m) out[m * typesize] = (u8)(x >> (8 * m));
        } else {
            const u8* in = src + 8 * g * typesize + j;
            for (u32 m = 0; m < 8; ++m) x |= (u64)in[m * typesize] << (8 * m);
            x = gz_transpose_8x8(x);
            u8* out_rows = dst + j * 8 * groups + g;
            for (u32 k = 0; k < 8; ++k) out_rows[k * groups] = (u8)(x >> (8 * k));
        }
    }
    // Elements past the last multiple of 8 and any partial element are copied as is.
    for (u64 k = n8 * typesize + first; k < size; k += stride) dst[k] = src[k];
}

template <bool UNSHUFFLE>
static __device__ void gz_bitshuffle_batch(const u8* __restrict__ src, u8* __restrict__ dst,
                                           const u64* src_offsets, const u64* dst_offsets, const u64* sizes,
                                           u32 nitems, u32 typesize) {
    if (typesize == 0) return;
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u32 b = blockIdx.y; b < nitems; b += gridDim.y) {
        gz_bitshuffle_block<UNSHUFFLE>(src + src_offsets[b], dst + dst_offsets[b], sizes[b], typesize, first,
                                       stride);
    }
}

extern "C" __global__ void bitunshuffle_batch(const u8* __restrict__ src, u8* __restrict__ dst,
                                              const u64* src_offsets, const u64* dst_offsets, const u64* sizes,
                                              u32 nitems, u32 typesize) {
    gz_bitshuffle_batch<true>(src, dst, src_offsets, dst_offsets, sizes, nitems, typesize);
}

extern "C" __global__ void bitshuffle_batch(const u8* __restrict__ src, u8* __restrict__ dst,
                                            const u64* src_offsets, const u64* dst_offsets, const u64* sizes,
                                            u32 nitems, u32 typesize) {
    gz_bitshuffle_batch<false>(src, dst, src_offsets, dst_offsets, sizes, nitems, typesize);
}

// Blosc byte shuffle and unshuffle over a batch of blosc blocks.
//
// c-blosc shuffles each block on its own (blocks are `blocksize` bytes; the last block of
// a chunk may be shorter). Within a block of `size` bytes holding n = size / typesize
// whole elements, byte j of element i goes to position j * n + i; the size % typesize
// trailing bytes are copied as they are. Reference: gpuzarr.gpu.reference.shuffle /
// unshuffle.
//
// Batch layout: item b reads src[src_offsets[b] : + sizes[b]] and writes
// dst[dst_offsets[b] : + sizes[b]]; the two ranges must not overlap (not in place).
// `typesize` is uniform over a launch (the planner groups blocks by it).
//
// Launch: grid (gx, gy), any block size: items over blockIdx.y (grid-stride), each item's
// elements over blockIdx.x * blockDim.x + threadIdx.x (grid-stride).

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

// One element per thread step: the thread gathers the typesize bytes of element i from
// the typesize byte planes (adjacent threads read adjacent bytes of a plane, so the reads
// coalesce) and writes them as one word when the destination allows it.
template <bool UNSHUFFLE>
static __device__ void gz_shuffle_block(const u8* __restrict__ src, u8* __restrict__ dst, u64 size,
                                        u32 typesize, u64 first, u64 stride) {
    const u64 n = size / typesize;
    for (u64 i = first; i < n; i += stride) {
        if (UNSHUFFLE) {
            u8* out = dst + i * typesize;
            if (typesize <= 8 && (((unsigned long long)out & (typesize - 1)) == 0) &&
                (typesize & (typesize - 1)) == 0) {
                u64 word = 0;
                for (u32 j = 0; j < typesize; ++j) word |= (u64)src[(u64)j * n + i] << (8 * j);
                switch (typesize) {  // little-endian word = bytes in element order
                    case 1: *out = (u8)word; break;
                    case 2: *(u16*)out = (u16)word; break;
                    case 4: *(u32*)out = (u32)word; break;
                    default: *(u64*)out = word; break;
                }
            } else {
                for (u32 j = 0; j < typesize; ++j) out[j] = src[(u64)j * n + i];
            }
        } else {
            const u8* in = src + i * typesize;
            for (u32 j = 0; j < typesize; ++j) dst[(u64)j * n + i] = in[j];
        }
    }
    // Trailing bytes that do not fill an element are stored unshuffled.
    const u64 tail = n * typesize;
    for (u64 k = tail + first; k < size; k += stride) dst[k] = src[k];
}

template <bool UNSHUFFLE>
static __device__ void gz_shuffle_batch(const u8* __restrict__ src, u8* __restrict__ dst,
                                        const u64* src_offsets, const u64* dst_offsets, const u64* sizes,
                                        u32 nitems, u32 typesize) {
    if (typesize == 0) return;
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u32 b = blockIdx.y; b < nitems; b += gridDim.y) {
        gz_shuffle_block<UNSHUFFLE>(src + src_offsets[b], dst + dst_offsets[b], sizes[b], typesize, first,
                                    stride);
    }
}

extern "C" __global__ void blosc_unshuffle_batch(const u8* __restrict__ src, u8* __restrict__ dst,
                                                 const u64* src_offsets, const u64* dst_offsets,
                                                 const u64* sizes, u32 nitems, u32 typesize) {
    gz_shuffle_batch<true>(src, dst, src_offsets, dst_offsets, sizes, nitems, typesize);
}

extern "C" __global__ void blosc_shuffle_batch(const u8* __restrict__ src, u8* __restrict__ dst,
                                               const u64* src_offsets, const u64* dst_offsets,
                                               const u64* sizes, u32 nitems, u32 typesize) {
    gz_shuffle_batch<false>(src, dst, src_offsets, dst_offsets, sizes, nitems, typesize);
}

// Byte-order swap of fixed-size elements, in place, over a batch of buffers.
//
// Used when a chunk was stored big-endian (the v3 `bytes` codec with endian "big", or a
// v2 ">" dtype). Complex numbers are swapped per component: the caller passes the
// component's size (4 for complex64, 8 for complex128).
//
// Batch layout: buffer b occupies data[offsets[b] : offsets[b] + sizes[b]]; sizes must be
// multiples of `itemsize`. Reference: gpuzarr.gpu.reference.byteswap.
//
// Launch: grid (gx, gy), any block size. Buffers are spread over blockIdx.y (grid-stride,
// so any number of buffers fits in gridDim.y <= 65535) and each buffer's elements over
// blockIdx.x * blockDim.x + threadIdx.x (grid-stride), so one launch covers the batch.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

static __device__ __forceinline__ u32 gz_bswap32(u32 v) {
    // Plain shifts: nvcc turns this into a single PRMT, and it runs unchanged on the host.
    return (v >> 24) | ((v >> 8) & 0x0000ff00u) | ((v << 8) & 0x00ff0000u) | (v << 24);
}

static __device__ __forceinline__ u64 gz_bswap64(u64 v) {
    return ((u64)gz_bswap32((u32)v) << 32) | (u64)gz_bswap32((u32)(v >> 32));
}

// Overloads rather than a template, so the element type picks the swap.
static __device__ __forceinline__ u16 gz_bswap(u16 v) { return (u16)((v >> 8) | (v << 8)); }
static __device__ __forceinline__ u32 gz_bswap(u32 v) { return gz_bswap32(v); }
static __device__ __forceinline__ u64 gz_bswap(u64 v) { return gz_bswap64(v); }

// Swap n elements of T at p: whole-word loads when p is aligned to sizeof(T) (the usual
// case: the planner aligns every buffer), byte by byte otherwise.
template <typename T>
static __device__ void gz_swap_elements(u8* p, u64 n, u64 first, u64 stride) {
    if (((unsigned long long)p & (sizeof(T) - 1)) == 0) {
        T* words = (T*)p;
        for (u64 i = first; i < n; i += stride) words[i] = gz_bswap(words[i]);
    } else {
        for (u64 i = first; i < n; i += stride) {
            u8* e = p + i * sizeof(T);
            for (unsigned k = 0; k < sizeof(T) / 2; ++k) {
                u8 t = e[k];
                e[k] = e[sizeof(T) - 1 - k];
                e[sizeof(T) - 1 - k] = t;
            }
        }
    }
}

extern "C" __global__ void byteswap_batch(u8* data, const u64* offsets, const u64* sizes, u32 nbuf,
                                          u32 itemsize) {
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u32 b = blockIdx.y; b < nbuf; b += gridDim.y) {
        u8* p = data + offsets[b];
        const u64 n = sizes[b] / itemsize;
        // `itemsize` is uniform over the launch, so this switch never diverges.
        switch (itemsize) {
            case 2: gz_swap_elements<u16>(p, n, first, stride); break;
            case 4: gz_swap_elements<u32>(p, n, first, stride); break;
            case 8: gz_swap_elements<u64>(p, n, first, stride); break;
            default: break;  // 1-byte elements have no byte order
        }
    }
}

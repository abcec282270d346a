// Host build of kernels/bitshuffle.cu for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "bitshuffle.cu"

SHIM_EXPORT(bitunshuffle_batch,
            (const u8* src, u8* dst, const u64* src_offsets, const u64* dst_offsets, const u64* sizes, u32 nitems,
             u32 typesize),
            (src, dst, src_offsets, dst_offsets, sizes, nitems, typesize))
SHIM_EXPORT(bitshuffle_batch,
            (const u8* src, u8* dst, const u64* src_offsets, const u64* dst_offsets, const u64* sizes, u32 nitems,
             u32 typesize),
            (src, dst, src_offsets, dst_offsets, sizes, nitems, typesize))

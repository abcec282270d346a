// Host build of kernels/shuffle.cu for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "shuffle.cu"

SHIM_EXPORT(blosc_unshuffle_batch,
            (const u8* src, u8* dst, const u64* src_offsets, const u64* dst_offsets, const u64* sizes, u32 nitems,
             u32 typesize),
            (src, dst, src_offsets, dst_offsets, sizes, nitems, typesize))
SHIM_EXPORT(blosc_shuffle_batch,
            (const u8* src, u8* dst, const u64* src_offsets, const u64* dst_offsets, const u64* sizes, u32 nitems,
             u32 typesize),
            (src, dst, src_offsets, dst_offsets, sizes, nitems, typesize))

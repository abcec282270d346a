// Host build of kernels/scatter.cu for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "scatter.cu"

SHIM_EXPORT(scatter_chunks,
            (const u8* src, const u64* src_offsets, u8* dst, u32 nchunks, u32 ndim, u32 itemsize,
             const i64* chunk_shape, const i64* dst_shape, const i64* boxes),
            (src, src_offsets, dst, nchunks, ndim, itemsize, chunk_shape, dst_shape, boxes))
SHIM_EXPORT(gather_chunks,
            (const u8* src, u8* dst, const u64* dst_offsets, u32 nchunks, u32 ndim, u32 itemsize,
             const i64* chunk_shape, const i64* src_shape, const i64* boxes),
            (src, dst, dst_offsets, nchunks, ndim, itemsize, chunk_shape, src_shape, boxes))
SHIM_EXPORT(fill_regions,
            (u8* dst, u32 nregions, u32 ndim, u32 itemsize, const i64* dst_shape, const i64* boxes,
             const u8* fill_value),
            (dst, nregions, ndim, itemsize, dst_shape, boxes, fill_value))
SHIM_EXPORT(copy_ranges,
            (const u8* src, u8* dst, const u64* src_offsets, const u64* dst_offsets, const u64* sizes, u32 n),
            (src, dst, src_offsets, dst_offsets, sizes, n))

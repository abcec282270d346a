// Host build of kernels/xxh64.cu for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "xxh64.cu"

SHIM_EXPORT(xxh64_batch, (const u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u64* out),
            (data, offsets, sizes, nbuf, out))

// Host build of kernels/fill_check.cu for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "fill_check.cu"

SHIM_EXPORT(equals_fill_batch,
            (const u8* data, const u64* offsets, const u64* sizes, u32 n, u32 itemsize, const u8* fill_value,
             u32* flags),
            (data, offsets, sizes, n, itemsize, fill_value, flags))

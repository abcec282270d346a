// Host build of kernels/adler32.cu for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "adler32.cu"

SHIM_EXPORT(adler32_batch, (const u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u32* out),
            (data, offsets, sizes, nbuf, out))

// Host build of kernels/byteswap.cu for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "byteswap.cu"

SHIM_EXPORT(byteswap_batch, (u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u32 itemsize),
            (data, offsets, sizes, nbuf, itemsize))

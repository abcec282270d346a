// Host build of kernels/crc32c.cu and kernels/shard_index.cu (one module, as on the GPU)
// for the CPU tests (see cuda_shim.h).
#include "cuda_shim.h"
#include "crc32c.cu"
#include "shard_index.cu"

SHIM_EXPORT(crc32c_batch, (const u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u32* out),
            (data, offsets, sizes, nbuf, out))
SHIM_EXPORT(crc32_batch, (const u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u32* out),
            (data, offsets, sizes, nbuf, out))
SHIM_EXPORT(shard_index_parse,
            (const u8* data, const u64* offsets, u32 nshards, u32 nentries, u32 has_crc, const u64* shard_nbytes,
             u64* entry_offsets, u64* entry_lengths, u8* stored, u32* status),
            (data, offsets, nshards, nentries, has_crc, shard_nbytes, entry_offsets, entry_lengths, stored, status))

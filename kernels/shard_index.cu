// Parse a batch of shard indexes (sharding_indexed codec) into per-entry offsets and
// lengths, one thread block per shard. Compiled together with crc32c.cu (whose block CRC
// it uses): gpuzarr.gpu.kernels loads the two sources as one module.
//
// An index is nentries little-endian (offset, nbytes) uint64 pairs in C order of the inner
// chunk grid, followed, when has_crc is set, by the little-endian CRC-32C of those pairs
// (index_codecs [bytes little-endian, crc32c]; other index codecs are planned on the CPU).
// Entry (2^64-1, 2^64-1) marks an inner chunk that is not stored.
//
// Outputs, for shard s and entry e at s * nentries + e: entry_offsets, entry_lengths (the
// raw values, empty entries included), stored (1 when the inner chunk is stored). Per
// shard, status[s] is a bit set (0 = fine):
//     1  the CRC-32C trailer does not match the entries
//     2  an entry is half empty (one of offset/nbytes is 2^64-1, the other is not)
//     4  a stored entry reaches past the end of its shard (shard_nbytes[s], when given)
// Reference: gpuzarr.gpu.reference.parse_shard_indexes, checked against
// gpuzarr.codecs.sharding.ShardingCodec.decode_index.
//
// Batch layout: shard s's index is data[offsets[s] : offsets[s] + 16 * nentries (+ 4)].
// shard_nbytes may be null (no bounds check). Launch: 1-d grid of any size (blocks take
// shards grid-stride), any block size up to 1024.

#define GZ_EMPTY 0xFFFFFFFFFFFFFFFFull
#define GZ_STATUS_CRC 1u
#define GZ_STATUS_HALF_EMPTY 2u
#define GZ_STATUS_OUT_OF_BOUNDS 4u

static __device__ __forceinline__ u64 gz_load_le64(const u8* p) {
    if (((unsigned long long)p & 7) == 0) return *(const u64*)p;
    u64 v = 0;
    for (int k = 0; k < 8; ++k) v |= (u64)p[k] << (8 * k);
    return v;
}

extern "C" __global__ void shard_index_parse(const u8* data, const u64* offsets, u32 nshards, u32 nentries,
                                             u32 has_crc, const u64* shard_nbytes, u64* entry_offsets,
                                             u64* entry_lengths, u8* stored, u32* status) {
    __shared__ u32 tables[8][256];
    __shared__ u32 acc;
    __shared__ u32 flags;
    if (has_crc) gz_crc_tables<GZ_CRC32C_POLY>(tables);  // has_crc is uniform, so every thread syncs
    for (u32 s = blockIdx.x; s < nshards; s += gridDim.x) {
        const u8* index = data + offsets[s];
        const u64 payload = (u64)nentries * 16;
        if (threadIdx.x == 0) flags = 0;
        __syncthreads();
        if (has_crc) {
            const u32 crc = gz_crc_block<GZ_CRC32C_POLY>(tables, &acc, index, payload);
            if (threadIdx.x == 0) {
                const u8* t = index + payload;
                const u32 trailer = (u32)t[0] | ((u32)t[1] << 8) | ((u32)t[2] << 16) | ((u32)t[3] << 24);
                if (trailer != crc) atomicOr(&flags, GZ_STATUS_CRC);
            }
        }
        const bool check_bounds = shard_nbytes != 0;
        const u64 limit = check_bounds ? shard_nbytes[s] : 0;
        u32 local = 0;
        for (u32 e = threadIdx.x; e < nentries; e += blockDim.x) {
            const u64 off = gz_load_le64(index + 16 * (u64)e);
            const u64 len = gz_load_le64(index + 16 * (u64)e + 8);
            const u64 out = (u64)s * nentries + e;
            entry_offsets[out] = off;
            entry_lengths[out] = len;
            const bool off_empty = off == GZ_EMPTY;
            const bool len_empty = len == GZ_EMPTY;
            stored[out] = (u8)(!off_empty && !len_empty);
            if (off_empty != len_empty) local |= GZ_STATUS_HALF_EMPTY;
            // Overflow-safe form of off + len > limit.
            if (check_bounds && !off_empty && !len_empty && (off > limit || len > limit - off)) {
                local |= GZ_STATUS_OUT_OF_BOUNDS;
            }
        }
        if (local != 0) atomicOr(&flags, local);
        __syncthreads();
        // Thread 0 both reads flags here and resets it for the next shard, and no other
        // thread touches it before the next shard's first barrier: no barrier needed.
        if (threadIdx.x == 0) status[s] = flags;
    }
}

// XXH64 (seed 0) of every buffer of a batch: the hash whose low 32 bits a zstd frame
// with its Content_Checksum flag stores after its last block.
//
// XXH64 keeps four accumulators ("lanes") over 32-byte stripes: lane k takes the 8-byte
// word k of every stripe, and the lanes never look at each other until they are merged.
// So four threads hash a buffer, one lane each, and the first of the four merges the
// lanes and hashes the tail (the last n % 32 bytes) as the specification does. There is
// no finer parallelism in the hash: a buffer of n bytes costs n / 32 dependent rounds.
// Reference: gpuzarr.gpu.reference.xxh64 (checked against the checksums libzstd writes).
//
// Batch layout: buffer b is data[offsets[b] : offsets[b] + sizes[b]]; out[b] receives its
// hash. Launch: 1-d grid of any size, a block size that is a multiple of 4, at most 1024;
// a block hashes blockDim.x / 4 buffers at a time, grid-stride. Every thread of a block
// reaches the __syncthreads() calls (uniform loops).

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#define GZ_XXH_P1 0x9E3779B185EBCA87ull
#define GZ_XXH_P2 0xC2B2AE3D27D4EB4Full
#define GZ_XXH_P3 0x165667B19E3779F9ull
#define GZ_XXH_P4 0x85EBCA77C2B2AE63ull
#define GZ_XXH_P5 0x27D4EB2F165667C5ull

static __device__ __forceinline__ u64 gz_rotl64(u64 x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian loads that do not assume alignment (the buffers of a batch start anywhere).
static __device__ __forceinline__ u64 gz_read64(const u8* p) {
    if (((unsigned long long)p & 7) == 0) return *(const u64*)p;
    u64 v = 0;
    for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
    return v;
}

static __device__ __forceinline__ u64 gz_read32(const u8* p) {
    return (u64)p[0] | ((u64)p[1] << 8) | ((u64)p[2] << 16) | ((u64)p[3] << 24);
}

static __device__ __forceinline__ u64 gz_xxh_round(u64 acc, u64 input) {
    acc += input * GZ_XXH_P2;
    acc = gz_rotl64(acc, 31);
    return acc * GZ_XXH_P1;
}

static __device__ __forceinline__ u64 gz_xxh_merge(u64 h, u64 lane) {
    h ^= gz_xxh_round(0, lane);
    return h * GZ_XXH_P1 + GZ_XXH_P4;
}

extern "C" __global__ void xxh64_batch(const u8* data, const u64* offsets, const u64* sizes, u32 nbuf, u64* out) {
    __shared__ u64 lanes[1024];
    const u32 per_block = blockDim.x / 4;
    const u32 slot = threadIdx.x / 4;
    const u32 lane = threadIdx.x % 4;
    for (u64 base = (u64)blockIdx.x * per_block; base < nbuf; base += (u64)gridDim.x * per_block) {
        const u64 buf = base + slot;
        const bool active = slot < per_block && buf < nbuf;
        const u8* p = active ? data + offsets[buf] : data;
        const u64 n = active ? sizes[buf] : 0;
        const u64 stripes = n / 32;
        if (active && stripes != 0) {
            // Initial values, seed 0: P1 + P2, P2, 0, -P1.
            u64 acc = lane == 0 ? GZ_XXH_P1 + GZ_XXH_P2 : lane == 1 ? GZ_XXH_P2 : lane == 2 ? 0 : 0 - GZ_XXH_P1;
            const u8* q = p + 8 * lane;
            for (u64 s = 0; s < stripes; ++s, q += 32) acc = gz_xxh_round(acc, gz_read64(q));
            lanes[threadIdx.x] = acc;
        }
        __syncthreads();
        if (active && lane == 0) {
            u64 h;
            if (stripes != 0) {
                const u64 v1 = lanes[threadIdx.x], v2 = lanes[threadIdx.x + 1];
                const u64 v3 = lanes[threadIdx.x + 2], v4 = lanes[threadIdx.x + 3];
                h = gz_rotl64(v1, 1) + gz_rotl64(v2, 7) + gz_rotl64(v3, 12) + gz_rotl64(v4, 18);
                h = gz_xxh_merge(h, v1);
                h = gz_xxh_merge(h, v2);
                h = gz_xxh_merge(h, v3);
                h = gz_xxh_merge(h, v4);
            } else {
                h = GZ_XXH_P5;
            }
            h += n;
            const u8* t = p + 32 * stripes;
            u64 rest = n % 32;
            for (; rest >= 8; rest -= 8, t += 8) {
                h ^= gz_xxh_round(0, gz_read64(t));
                h = gz_rotl64(h, 27) * GZ_XXH_P1 + GZ_XXH_P4;
            }
            if (rest >= 4) {
                h ^= gz_read32(t) * GZ_XXH_P1;
                h = gz_rotl64(h, 23) * GZ_XXH_P2 + GZ_XXH_P3;
                rest -= 4;
                t += 4;
            }
            for (; rest != 0; --rest, ++t) {
                h ^= (u64)*t * GZ_XXH_P5;
                h = gz_rotl64(h, 11) * GZ_XXH_P1;
            }
            h ^= h >> 33;
            h *= GZ_XXH_P2;
            h ^= h >> 29;
            h *= GZ_XXH_P3;
            h ^= h >> 32;
            out[buf] = h;
        }
        __syncthreads();  // the lanes are reused by the next buffers
    }
}

// Adler-32 of every buffer of a batch, one thread block per buffer.
//
// zlib's adler32() with initial value 1 (the trailer of zlib streams): for n bytes d_i,
//     s1 = 1 + sum(d_i)            mod 65521
//     s2 = n + sum((n - i) * d_i)  mod 65521      (i = 0 .. n-1)
//     adler = s2 << 16 | s1
// Each thread sums one contiguous segment [a, b) of the buffer into S = sum(d_i) and
// W = sum((b - i) * d_i) (zlib's two running sums, started at 0), both mod 65521. The
// segment's share of the whole is S in s1 and W + (n - b) * S in s2, so threads add their
// shares in any order (one shared atomicAdd each) and nobody waits on another's result.
// Reference: gpuzarr.gpu.reference.adler32 (checked against zlib.adler32).
//
// No overflow: within a segment the running sums start below 65521 and are reduced every
// GZ_ADLER_NMAX bytes (zlib's NMAX, the most bytes after which the second sum still fits
// in 32 bits); a share is below 65521 once reduced (its product is formed in 64 bits), so
// the block's sums of at most 1024 shares stay below 2^27.
//
// Batch layout: buffer b is data[offsets[b] : offsets[b] + sizes[b]]; out[b] receives its
// checksum. Launch: 1-d grid of any size (blocks take buffers grid-stride), any block size
// up to 1024. Every thread of a block reaches the __syncthreads() calls (uniform loops).

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#define GZ_ADLER_BASE 65521u  // largest prime below 2^16
#define GZ_ADLER_NMAX 5552u   // a multiple of 8: runs after the aligned head stay aligned

// S and W (see above) of p[0:n], each reduced mod GZ_ADLER_BASE.
static __device__ void gz_adler_segment(const u8* p, u64 n, u32* s_out, u32* w_out) {
    u32 a = 0;
    u32 b = 0;
    // Bytes up to an 8-byte boundary first (fewer than 8: the sums stay below the base).
    for (; n != 0 && ((unsigned long long)p & 7) != 0; --n) {
        a += *p++;
        b += a;
    }
    while (n != 0) {
        u64 run = n < GZ_ADLER_NMAX ? n : GZ_ADLER_NMAX;
        n -= run;
        for (; run >= 8; run -= 8, p += 8) {
            const u64 word = *(const u64*)p;  // aligned load; little-endian: byte k is bits 8k..8k+7
            for (int k = 0; k < 8; ++k) {
                a += (u32)(word >> (8 * k)) & 0xffu;
                b += a;
            }
        }
        for (; run != 0; --run) {  // only the last run has a tail
            a += *p++;
            b += a;
        }
        a %= GZ_ADLER_BASE;
        b %= GZ_ADLER_BASE;
    }
    *s_out = a;
    *w_out = b;
}

extern "C" __global__ void adler32_batch(const u8* data, const u64* offsets, const u64* sizes, u32 nbuf,
                                         u32* out) {
    __shared__ u32 sum1;
    __shared__ u32 sum2;
    for (u32 buf = blockIdx.x; buf < nbuf; buf += gridDim.x) {
        if (threadIdx.x == 0) {
            sum1 = 0;
            sum2 = 0;
        }
        __syncthreads();
        const u8* p = data + offsets[buf];
        const u64 n = sizes[buf];
        // Segments of a multiple of 8 bytes keep the buffer's alignment.
        const u64 seg = ((n + blockDim.x - 1) / blockDim.x + 7) & ~(u64)7;
        const u64 start = (u64)threadIdx.x * seg;
        if (start < n) {
            const u64 end = start + seg < n ? start + seg : n;
            u32 s, w;
            gz_adler_segment(p + start, end - start, &s, &w);
            atomicAdd(&sum1, s);
            atomicAdd(&sum2, (u32)((w + (n - end) % GZ_ADLER_BASE * s) % GZ_ADLER_BASE));
        }
        __syncthreads();
        // Thread 0 reads the sums here and resets them for the next buffer before that
        // buffer's first barrier, which no other thread passes earlier: no barrier needed.
        if (threadIdx.x == 0) {
            const u32 s1 = (1u + sum1) % GZ_ADLER_BASE;
            const u32 s2 = (u32)((n % GZ_ADLER_BASE + sum2) % GZ_ADLER_BASE);
            out[buf] = (s2 << 16) | s1;
        }
    }
}

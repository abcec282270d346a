/* gpuzarr's native helper, part two: blosc bit-unshuffle with AVX2.
 *
 * The c-blosc 1 that numcodecs ships is built without AVX2: it undoes a bitshuffle with
 * SSE2 code (tensorstore's does too for 2-byte elements), a quarter of the decode time
 * of 1 MiB int16 chunks of zstd. gpuzarr_blosc_decompress decodes a bit-shuffled blosc 1
 * buffer with c-blosc itself (its blosc_decompress_ctx, passed in by address), told not
 * to unshuffle, and then undoes the bitshuffle here. Every buffer this does not cover (other shuffles,
 * element sizes, block sizes; CPUs or compilers without AVX2) goes to c-blosc unchanged,
 * so the result is c-blosc's, byte for byte.
 *
 * Bitshuffle's layout, for a block of n elements of E bytes (n a multiple of 8): bit-row
 * r = 8 * b + k holds bit k of byte b of every element, element j at bit j % 8 of the
 * row's byte j / 8. Undoing it takes, for each group of 8 elements and each byte b, the
 * 8 bytes at one column of bit-rows 8b..8b+7 (an 8x8 bit matrix) and transposes it.
 * Here in tiles of 32 columns: eight 32-byte rows are transposed bitwise in registers
 * (three rounds of masked shifts), then the tile's 8E rows of results are transposed
 * bytewise into the elements (16x16 byte transposes by unpacking).
 */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpuzarr_export.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define GPUZARR_HAVE_AVX2_CODE 1
#include <immintrin.h>
#define AVX2_FUNCTION __attribute__((target("avx2")))
/* (Fully unrolled, the register arrays below stay in registers: 1.4x faster at -O2.) */
#define UNROLL _Pragma("GCC unroll 16")
#else
#define GPUZARR_HAVE_AVX2_CODE 0
#endif

/* c-blosc 1's blosc_decompress_ctx. */
typedef int (*blosc_decompress_ctx_fn)(const void *src, void *dest, size_t destsize, int numinternalthreads);

/* The c-blosc 1 header: version, versionlz, flags, typesize, then nbytes, blocksize and
 * cbytes as little-endian 32-bit integers. */
enum { BLOSC_HEADER_BYTES = 16, BLOSC_FORMAT_VERSION = 2 };
enum { BLOSC_DOSHUFFLE = 0x1, BLOSC_MEMCPYED = 0x2, BLOSC_DOBITSHUFFLE = 0x4, BLOSC_DODELTA = 0x8 };

static uint32_t read_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Bitshuffle undone for columns [first, n_columns) one bit at a time: the reference the
 * vector code is tested against, and the columns it leaves over. */
static void untranspose_columns_scalar(const uint8_t *in, uint8_t *out, size_t n_columns, size_t first,
                                       size_t elem_size) {
    for (size_t column = first; column < n_columns; column++) {
        for (size_t b = 0; b < elem_size; b++) {
            uint8_t rows[8];
            for (size_t k = 0; k < 8; k++) rows[k] = in[(8 * b + k) * n_columns + column];
            for (size_t i = 0; i < 8; i++) {
                unsigned value = 0;
                for (size_t k = 0; k < 8; k++) value |= (unsigned)((rows[k] >> i) & 1u) << k;
                out[(8 * column + i) * elem_size + b] = (uint8_t)value;
            }
        }
    }
}

#if GPUZARR_HAVE_AVX2_CODE

/* Swap the bits of a selected by mask << shift with those of b selected by mask. */
#define SWAP_BITS(a, b, shift, mask)                                                            \
    do {                                                                                         \
        __m256i t_ = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi64(a, shift), b), mask); \
        b = _mm256_xor_si256(b, t_);                                                             \
        a = _mm256_xor_si256(a, _mm256_slli_epi64(t_, shift));                                   \
    } while (0)

/* Transpose the 16x16 byte matrix in each 128-bit lane of rows[0..15]: afterwards
 * rows[c] holds column c of the lane (its 16 rows' bytes, in row order). */
AVX2_FUNCTION static void transpose_16x16_lanes(__m256i rows[16]) {
    __m256i pairs[16], quads[16], octets[16];
    UNROLL
    for (int j = 0; j < 8; j++) {  /* rows 2j, 2j+1: byte pairs of columns 0-7, then 8-15 */
        pairs[j] = _mm256_unpacklo_epi8(rows[2 * j], rows[2 * j + 1]);
        pairs[j + 8] = _mm256_unpackhi_epi8(rows[2 * j], rows[2 * j + 1]);
    }
    UNROLL
    for (int half = 0; half < 2; half++) {  /* rows 4j..4j+3 of columns 0-3, 4-7 (8-11, 12-15) */
        UNROLL
        for (int j = 0; j < 4; j++) {
            const __m256i a = pairs[8 * half + 2 * j], b = pairs[8 * half + 2 * j + 1];
            quads[8 * half + j] = _mm256_unpacklo_epi16(a, b);
            quads[8 * half + 4 + j] = _mm256_unpackhi_epi16(a, b);
        }
    }
    UNROLL
    for (int m = 0; m < 4; m++) {  /* columns 4m..4m+3: rows 0-7 and 8-15 of two columns each */
        octets[4 * m + 0] = _mm256_unpacklo_epi32(quads[4 * m + 0], quads[4 * m + 1]);
        octets[4 * m + 1] = _mm256_unpackhi_epi32(quads[4 * m + 0], quads[4 * m + 1]);
        octets[4 * m + 2] = _mm256_unpacklo_epi32(quads[4 * m + 2], quads[4 * m + 3]);
        octets[4 * m + 3] = _mm256_unpackhi_epi32(quads[4 * m + 2], quads[4 * m + 3]);
    }
    UNROLL
    for (int m = 0; m < 4; m++) {
        rows[4 * m + 0] = _mm256_unpacklo_epi64(octets[4 * m + 0], octets[4 * m + 2]);
        rows[4 * m + 1] = _mm256_unpackhi_epi64(octets[4 * m + 0], octets[4 * m + 2]);
        rows[4 * m + 2] = _mm256_unpacklo_epi64(octets[4 * m + 1], octets[4 * m + 3]);
        rows[4 * m + 3] = _mm256_unpackhi_epi64(octets[4 * m + 1], octets[4 * m + 3]);
    }
}

/* Transpose bitwise the 8x8 bit matrices of 32 columns of bit-rows 8b..8b+7 (the first
 * at first, each n_columns after the one before), and put the results in tile row
 * i * elem_size + b: byte b of element 8c+i for each of the 32 columns c. */
AVX2_FUNCTION static void transpose_bits(const uint8_t *first, size_t n_columns, size_t elem_size, size_t b,
                                         __m256i *tile) {
    __m256i x[8];
    UNROLL
    for (int k = 0; k < 8; k++) x[k] = _mm256_loadu_si256((const __m256i *)(first + (size_t)k * n_columns));
    /* x[k] bit i is bit k of byte b of element 8c+i: transposed, x[i] bit k is. Three
     * rounds swap blocks of bits between rows 4, 2 and 1 apart: the 4x4 blocks off the
     * diagonal, then the 2x2 blocks within them, then single bits. */
    const __m256i masks[3] = {_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x33), _mm256_set1_epi8(0x55)};
    UNROLL
    for (int round = 0; round < 3; round++) {
        const int distance = 4 >> round;
        UNROLL
        for (int k = 0; k < 8; k++)
            if (!(k & distance)) SWAP_BITS(x[k], x[k + distance], distance, masks[round]);
    }
    UNROLL
    for (int i = 0; i < 8; i++) tile[(size_t)i * elem_size + b] = x[i];
}

/* Write a tile's 8E rows of 32 columns out as 32 columns of 8E bytes, each column's
 * 8 elements in order at out + column * 8E. */
AVX2_FUNCTION static void store_tile(const __m256i *tile, uint8_t *out, size_t elem_size) {
    const size_t column_bytes = 8 * elem_size;
    for (size_t h = 0; h < column_bytes / 16; h++) {
        __m256i rows[16];
        UNROLL
        for (int j = 0; j < 16; j++) rows[j] = tile[16 * h + (size_t)j];
        transpose_16x16_lanes(rows);
        UNROLL
        for (int c = 0; c < 16; c++) {
            _mm_storeu_si128((__m128i *)(out + (size_t)c * column_bytes + 16 * h), _mm256_castsi256_si128(rows[c]));
            _mm_storeu_si128((__m128i *)(out + (size_t)(c + 16) * column_bytes + 16 * h),
                             _mm256_extracti128_si256(rows[c], 1));
        }
    }
}

/* Undo the bitshuffle of n_columns * 8 elements of elem_size (2, 4 or 8) bytes. */
AVX2_FUNCTION static void untranspose_avx2(const uint8_t *in, uint8_t *out, size_t n_columns, size_t elem_size) {
    const size_t column_bytes = 8 * elem_size;
    __m256i low_tile[64], high_tile[64];
    size_t column = 0;
    /* 64 columns at a time: every bit-row's cache line is read once, whole. (With 32,
     * the 16 or more rows, often a multiple of 4 KiB apart, evicted each other from L1
     * before their second half was read.) */
    for (; column + 64 <= n_columns; column += 64) {
        for (size_t b = 0; b < elem_size; b++) {
            transpose_bits(in + 8 * b * n_columns + column, n_columns, elem_size, b, low_tile);
            transpose_bits(in + 8 * b * n_columns + column + 32, n_columns, elem_size, b, high_tile);
        }
        store_tile(low_tile, out + column * column_bytes, elem_size);
        store_tile(high_tile, out + (column + 32) * column_bytes, elem_size);
    }
    for (; column + 32 <= n_columns; column += 32) {
        for (size_t b = 0; b < elem_size; b++)
            transpose_bits(in + 8 * b * n_columns + column, n_columns, elem_size, b, low_tile);
        store_tile(low_tile, out + column * column_bytes, elem_size);
    }
    untranspose_columns_scalar(in, out, n_columns, column, elem_size);
}

static int cpu_has_avx2(void) {
    static int known = -1; /* (threads that race here all find the same answer) */
    int found = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (found < 0) {
        __builtin_cpu_init();
        found = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&known, found, __ATOMIC_RELAXED);
    }
    return found;
}

#else

static int cpu_has_avx2(void) { return 0; }

#endif

/* Whether gpuzarr_bitunshuffle and the fast path of gpuzarr_blosc_decompress run here
 * (an x86 CPU with AVX2, and a compiler that built the code). */
GPUZARR_EXPORT int gpuzarr_bitunshuffle_available(void) { return cpu_has_avx2(); }

/* Undo blosc's bitshuffle of n_elements (a multiple of 8) elements of elem_size bytes
 * from in into out (not overlapping): 0 when done; -1 where not covered here (another
 * element size or count, or no AVX2), with out untouched. With scalar nonzero, the
 * one-bit-at-a-time reference does it (for tests). */
GPUZARR_EXPORT int gpuzarr_bitunshuffle(const void *in, void *out, size_t n_elements, size_t elem_size, int scalar) {
    if (n_elements % 8 != 0 || !(elem_size == 2 || elem_size == 4 || elem_size == 8)) return -1;
    if (scalar) {
        untranspose_columns_scalar(in, out, n_elements / 8, 0, elem_size);
        return 0;
    }
#if GPUZARR_HAVE_AVX2_CODE
    if (cpu_has_avx2()) {
        untranspose_avx2(in, out, n_elements / 8, elem_size);
        return 0;
    }
#endif
    return -1;
}

/* Whether gpuzarr_blosc_decompress undoes the bitshuffle of the blosc 1 buffer src
 * (srcsize bytes, decoded into destsize) itself: a bit-shuffled buffer (no other shuffle,
 * no delta, not stored as is) of 2-, 4- or 8-byte elements whose blocks all hold a
 * multiple of 8 elements, on a CPU with AVX2. Anything else goes to c-blosc whole. */
GPUZARR_EXPORT int gpuzarr_blosc_unshuffles_here(const void *src, size_t srcsize, size_t destsize) {
    const uint8_t *header = (const uint8_t *)src;
    if (srcsize < BLOSC_HEADER_BYTES || !cpu_has_avx2()) return 0;
    const unsigned flags = header[2];
    const size_t elem_size = header[3], group_bytes = 8 * elem_size;
    const size_t nbytes = read_le32(header + 4), blocksize = read_le32(header + 8);
    return header[0] == BLOSC_FORMAT_VERSION && (flags & BLOSC_DOBITSHUFFLE) &&
           !(flags & (BLOSC_DOSHUFFLE | BLOSC_MEMCPYED | BLOSC_DODELTA)) &&
           (elem_size == 2 || elem_size == 4 || elem_size == 8) && read_le32(header + 12) == srcsize && nbytes > 0 &&
           nbytes <= destsize && blocksize > 0 && blocksize % group_bytes == 0 && nbytes % group_bytes == 0;
}

/* Decode the blosc 1 buffer src (srcsize bytes) into dest as c-blosc's
 * blosc_decompress_ctx(src, dest, destsize, 1) (passed as call) would, and return
 * what it would: the decoded size, or c-blosc's error (zero or negative). Bit-shuffled
 * buffers of 2-, 4- or 8-byte elements, whose blocks all hold a multiple of 8 elements,
 * are decoded unshuffled by c-blosc (a copy of src with the bitshuffle flag cleared,
 * into a scratch buffer) and unshuffled here; -2 when that scratch cannot be allocated,
 * as c-blosc's own allocation failures. */
GPUZARR_EXPORT int gpuzarr_blosc_decompress(blosc_decompress_ctx_fn call, const void *src, size_t srcsize,
                                            void *dest, size_t destsize) {
    if (!gpuzarr_blosc_unshuffles_here(src, srcsize, destsize)) return call(src, dest, destsize, 1);
    const uint8_t *header = (const uint8_t *)src;
    const size_t elem_size = header[3];
    const size_t nbytes = read_le32(header + 4), blocksize = read_le32(header + 8);
    uint8_t *scratch = (uint8_t *)malloc(srcsize + nbytes);
    if (scratch == NULL) return -2;
    uint8_t *unshuffled_copy = scratch, *shuffled = scratch + srcsize;
    memcpy(unshuffled_copy, src, srcsize);
    unshuffled_copy[2] = (uint8_t)(header[2] & ~(unsigned)BLOSC_DOBITSHUFFLE);
    const int decoded = call(unshuffled_copy, shuffled, nbytes, 1);
    if (decoded > 0 && (size_t)decoded == nbytes) {
        /* Every block, the last one's leftover too, is a multiple of 8 elements: c-blosc
         * bit-shuffled each whole block (a block of any other size it stores as is). */
        uint8_t *target = (uint8_t *)dest;
        for (size_t start = 0; start < nbytes; start += blocksize) {
            const size_t block = nbytes - start < blocksize ? nbytes - start : blocksize;
            gpuzarr_bitunshuffle(shuffled + start, target + start, block / elem_size, elem_size, 0);
        }
    }
    free(scratch);
    return decoded;
}

// Which items of a batch hold nothing but the fill value: the write path's check before
// storing a chunk (a chunk equal to the fill value everywhere is not stored, or is erased).
//
// equals_fill_batch: flags[i] is cleared to 0 unless every byte k of item i equals
// fill_value[k % itemsize]. The comparison is bitwise, as zarr's is on the encoded bytes:
// a NaN fill value matches NaNs with the same bits, and 0.0 does not match -0.0. The
// caller sets every flag to 1 before the launch: the kernel only ever clears flags (an
// empty item keeps its 1). sizes are multiples of itemsize.
// Reference: gpuzarr.gpu.reference.equals_fill.
//
// Batch layout: item i is data[offsets[i] : offsets[i] + sizes[i]]. Launch: grid (gx, gy),
// any block size; items over blockIdx.y (grid-stride), an item's words over
// blockIdx.x * blockDim.x + threadIdx.x (grid-stride).
//
// Clear-only flags and a block vote: a thread stops at its first mismatch and votes in a
// shared word, then one thread per block clears the item's flag with one global atomic.
// Letting every thread clear the flag itself would cost, on data that is not fill (the
// common case: every thread mismatches at its first word), thousands of atomics on one
// address, which the memory system serializes. A block skips an item that another block
// has already cleared.
//
// Words: the block writes the fill value repeated over lcm(itemsize, 8) bytes to shared
// memory once, so an item aligned to 8 bytes is compared 8 bytes at a time against pattern
// word (w mod period); less aligned items use 4-, 2- or 1-byte words. A pattern that does
// not fit (lcm(itemsize, 8) > GZ_FILL_PATTERN_BYTES, i.e. itemsize > 256 and not a
// multiple of 8, or larger still) is read from fill_value with the widest word its
// alignment and itemsize allow.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define GZ_FILL_PATTERN_BYTES 2048

// Does this thread's share of the words p[0:nwords] repeat pattern[0:period]?
// Stops at the first mismatch.
template <typename U>
static __device__ bool gz_words_match(const U* p, u64 nwords, const U* pattern, u64 period, u64 first, u64 stride) {
    const bool pow2 = (period & (period - 1)) == 0;  // the usual periods 1 and 2 need no division
    for (u64 w = first; w < nwords; w += stride) {
        if (p[w] != pattern[pow2 ? w & (period - 1) : w % period]) return false;
    }
    return true;
}

// Does this thread's share of item[0:size] repeat the period bytes at pattern?
static __device__ bool gz_item_matches(const u8* item, u64 size, const u8* pattern, u64 period, u64 first,
                                       u64 stride) {
    // Widest word dividing the item's address, the pattern's address and the period, so
    // word w of the item lines up with pattern word w mod (period / unit). Uniform per
    // item, so the dispatch never diverges within a block.
    const u64 bits = (unsigned long long)item | (unsigned long long)pattern | period;
    const u32 unit = (bits & 1) ? 1 : (bits & 2) ? 2 : (bits & 4) ? 4 : 8;
    const u64 nwords = size / unit;
    bool ok;
    switch (unit) {
        case 8: ok = gz_words_match((const u64*)item, nwords, (const u64*)pattern, period / 8, first, stride); break;
        case 4: ok = gz_words_match((const u32*)item, nwords, (const u32*)pattern, period / 4, first, stride); break;
        case 2: ok = gz_words_match((const u16*)item, nwords, (const u16*)pattern, period / 2, first, stride); break;
        default: ok = gz_words_match(item, nwords, pattern, period, first, stride); break;
    }
    // The last size % unit bytes (fewer than a word).
    for (u64 k = nwords * unit + first; ok && k < size; k += stride) ok = item[k] == pattern[k % period];
    return ok;
}

extern "C" __global__ void equals_fill_batch(const u8* data, const u64* offsets, const u64* sizes, u32 n,
                                             u32 itemsize, const u8* fill_value, u32* flags) {
    __shared__ u64 pattern_words[GZ_FILL_PATTERN_BYTES / 8];  // u64: 8-byte aligned
    __shared__ u32 skip;
    __shared__ u32 mismatch;
    if (itemsize == 0) return;  // uniform: no thread reaches a barrier
    const u32 low_bit = itemsize & (~itemsize + 1);  // gcd(itemsize, 8) is min(low_bit, 8)
    const u64 lcm = (u64)itemsize / (low_bit < 8 ? low_bit : 8) * 8;
    const bool in_shared = lcm <= GZ_FILL_PATTERN_BYTES;
    u8* shared_pattern = (u8*)pattern_words;
    if (in_shared) {
        for (u32 j = threadIdx.x; j < lcm; j += blockDim.x) shared_pattern[j] = fill_value[j % itemsize];
    }
    __syncthreads();
    const u8* pattern = in_shared ? shared_pattern : fill_value;
    const u64 period = in_shared ? lcm : itemsize;
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u32 i = blockIdx.y; i < n; i += gridDim.y) {
        // skip is written only here and mismatch only by atomics between the two barriers,
        // so no thread reads a word another thread may be writing. The volatile load sees
        // clears made by other blocks (a stale 1 only costs a scan).
        if (threadIdx.x == 0) {
            skip = *(volatile const u32*)(flags + i) == 0;
            mismatch = 0;
        }
        __syncthreads();
        if (!skip && !gz_item_matches(data + offsets[i], sizes[i], pattern, period, first, stride)) {
            atomicOr(&mismatch, 1u);
        }
        __syncthreads();
        // Thread 0 reads mismatch here and resets it for the next item before the next
        // item's first barrier, which no other thread passes earlier: no barrier needed.
        if (threadIdx.x == 0 && mismatch != 0) atomicAnd(flags + i, 0u);
    }
}

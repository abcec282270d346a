// Data movement between chunks and arrays: scatter decoded chunks into the output array
// (read path), gather the boxes of a value array into chunk buffers (write path), fill
// the regions of missing chunks with the fill value, and batched byte-range copies.
//
// scatter_chunks: chunk c is C-contiguous with shape chunk_shape at src + src_offsets[c].
// The output is C-contiguous with shape dst_shape. boxes holds, per chunk c and dimension
// d, five int64 (layout [nchunks][ndim][5]):
//     chunk_start, chunk_step (>= 1), out_start, out_step (any sign, not 0), count
// and element k_d along d (0 <= k_d < count) is copied from chunk index
// chunk_start + k_d * chunk_step to output index out_start + k_d * out_step. For a
// basic selection this is the projection of the selection onto the chunk; edge chunks
// simply have a smaller count (their out-of-bounds part is never read).
// Reference: gpuzarr.gpu.reference.scatter, checked against gpuzarr's CPU reads.
//
// gather_chunks: the inverse. The "out" side of the boxes indexes the C-contiguous source
// array of shape src_shape (the value being written); chunk c is C-contiguous with shape
// chunk_shape at dst + dst_offsets[c], and element k_d along d is copied from source index
// out_start + k_d * out_step to chunk index chunk_start + k_d * chunk_step. Chunk elements
// outside the box (an edge chunk's out-of-bounds part, the unselected part of a partial
// write) are left as they are: the caller fills or decodes the chunk beforehand.
// Reference: gpuzarr.gpu.reference.gather.
//
// fill_regions: the same boxes (chunk fields ignored) get the fill value, whose itemsize
// bytes are given in fill_value (any data type: the bit pattern is what is stored).
// Reference: gpuzarr.gpu.reference.fill.
//
// copy_ranges: dst[dst_offsets[i] : + sizes[i]] = src[src_offsets[i] : + sizes[i]] for
// every i (blosc streams stored raw, memcpy-ed blosc chunks). Reference:
// gpuzarr.gpu.reference.copy_ranges.
//
// Launch (all four): grid (gx, gy), any block size; items over blockIdx.y (grid-stride).
// scatter/gather/fill: rows of an item (all dimensions but the last) over blockIdx.x
// (grid-stride), the last dimension over threadIdx.x; when the last dimension is shorter
// than the block, a block covers several rows at once so threads do not idle. ndim >= 1
// (a 0-d array is passed as shape (1,)).

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

// Largest power of two <= 8 dividing every address an item touches, so elements move as
// whole words. Uniform per item, so the dispatch on it never diverges within a block.
static __device__ __forceinline__ u32 gz_unit_size(u64 bits) {
    if (bits & 1) return 1;
    if (bits & 2) return 2;
    if (bits & 4) return 4;
    return 8;
}

// What a box operation does: the direction of the copy, or a fill.
//     GZ_SCATTER  chunk side -> array side (src is the chunk, dst the array)
//     GZ_GATHER   array side -> chunk side (src is the array, dst the chunk)
//     GZ_FILL     fill value -> array side (dst is the array)
// One template covers all three so the index arithmetic exists once.
enum GzBoxOp { GZ_SCATTER, GZ_GATHER, GZ_FILL };

// Copy (or fill) the box of one item. U is the word type, units = itemsize / sizeof(U)
// words per element. array_shape is the shape of the array side (the output of scatter
// and fill, the source of gather).
template <typename U, GzBoxOp OP>
static __device__ void gz_box(const u8* src, u8* dst, const i64* box, u32 ndim, const i64* chunk_shape,
                              const i64* array_shape, u32 units, const u8* fill_value) {
    const i64* last = box + 5 * (ndim - 1);
    const u64 n_last = (u64)last[4];
    u64 nrows = 1;
    for (u32 d = 0; d + 1 < ndim; ++d) nrows *= (u64)box[5 * d + 4];
    if (n_last == 0 || nrows == 0) return;
    // Thread layout inside the block: several rows at once when rows are short.
    const u64 threads = blockDim.x;
    const u64 rows_at_once = n_last >= threads ? 1 : threads / n_last;
    const u64 sub_row = n_last >= threads ? 0 : threadIdx.x / n_last;
    const u64 k_first = n_last >= threads ? threadIdx.x : threadIdx.x % n_last;
    const u64 k_step = n_last >= threads ? threads : n_last;
    if (sub_row >= rows_at_once) return;  // leftover threads of a block (no barriers here)
    const U* fill_words = (const U*)fill_value;
    for (u64 row = (u64)blockIdx.x * rows_at_once + sub_row; row < nrows; row += (u64)gridDim.x * rows_at_once) {
        // Element offsets (in elements) of the row's first element, innermost dim first.
        i64 chunk_index = last[0];
        i64 array_index = last[2];
        i64 chunk_stride = chunk_shape[ndim - 1];
        i64 array_stride = array_shape[ndim - 1];
        u64 rem = row;
        for (int d = (int)ndim - 2; d >= 0; --d) {
            const i64* b = box + 5 * d;
            const u64 count = (u64)b[4];
            const i64 k = (i64)(rem % count);
            rem /= count;
            chunk_index += (b[0] + k * b[1]) * chunk_stride;
            array_index += (b[2] + k * b[3]) * array_stride;
            chunk_stride *= chunk_shape[d];
            array_stride *= array_shape[d];
        }
        for (u64 k = k_first; k < n_last; k += k_step) {
            const i64 chunk_k = chunk_index + (i64)k * last[1];
            const i64 array_k = array_index + (i64)k * last[3];
            U* out = (U*)dst + (OP == GZ_GATHER ? chunk_k : array_k) * units;
            if (OP == GZ_FILL) {
                for (u32 u = 0; u < units; ++u) out[u] = fill_words[u];
            } else {
                const U* in = (const U*)src + (OP == GZ_GATHER ? array_k : chunk_k) * units;
                for (u32 u = 0; u < units; ++u) out[u] = in[u];
            }
        }
    }
}

// Item c's chunk is at src + offsets[c] (scatter) or dst + offsets[c] (gather); the other
// pointer is the whole array. fill reads fill_value instead of a chunk.
template <GzBoxOp OP>
static __device__ void gz_boxes(const u8* src, u8* dst, const u64* offsets, u32 nitems, u32 ndim, u32 itemsize,
                                const i64* chunk_shape, const i64* array_shape, const i64* boxes,
                                const u8* fill_value) {
    if (ndim == 0 || itemsize == 0) return;
    for (u32 c = blockIdx.y; c < nitems; c += gridDim.y) {
        const u8* from = OP == GZ_FILL ? fill_value : (OP == GZ_SCATTER ? src + offsets[c] : src);
        u8* to = OP == GZ_GATHER ? dst + offsets[c] : dst;
        const u32 unit = gz_unit_size((u64)itemsize | (unsigned long long)from | (unsigned long long)to);
        const i64* box = boxes + (u64)c * ndim * 5;
        switch (unit) {
            case 8: gz_box<u64, OP>(from, to, box, ndim, chunk_shape, array_shape, itemsize / 8, fill_value); break;
            case 4: gz_box<u32, OP>(from, to, box, ndim, chunk_shape, array_shape, itemsize / 4, fill_value); break;
            case 2: gz_box<u16, OP>(from, to, box, ndim, chunk_shape, array_shape, itemsize / 2, fill_value); break;
            default: gz_box<u8, OP>(from, to, box, ndim, chunk_shape, array_shape, itemsize, fill_value); break;
        }
    }
}

extern "C" __global__ void scatter_chunks(const u8* src, const u64* src_offsets, u8* dst, u32 nchunks, u32 ndim,
                                          u32 itemsize, const i64* chunk_shape, const i64* dst_shape,
                                          const i64* boxes) {
    gz_boxes<GZ_SCATTER>(src, dst, src_offsets, nchunks, ndim, itemsize, chunk_shape, dst_shape, boxes, 0);
}

extern "C" __global__ void gather_chunks(const u8* src, u8* dst, const u64* dst_offsets, u32 nchunks, u32 ndim,
                                         u32 itemsize, const i64* chunk_shape, const i64* src_shape,
                                         const i64* boxes) {
    gz_boxes<GZ_GATHER>(src, dst, dst_offsets, nchunks, ndim, itemsize, chunk_shape, src_shape, boxes, 0);
}

extern "C" __global__ void fill_regions(u8* dst, u32 nregions, u32 ndim, u32 itemsize, const i64* dst_shape,
                                        const i64* boxes, const u8* fill_value) {
    // The chunk shape is not used when filling; dst_shape stands in for it.
    gz_boxes<GZ_FILL>(0, dst, 0, nregions, ndim, itemsize, dst_shape, dst_shape, boxes, fill_value);
}

extern "C" __global__ void copy_ranges(const u8* src, u8* dst, const u64* src_offsets, const u64* dst_offsets,
                                       const u64* sizes, u32 n) {
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u32 i = blockIdx.y; i < n; i += gridDim.y) {
        const u8* s = src + src_offsets[i];
        u8* d = dst + dst_offsets[i];
        const u64 size = sizes[i];
        u64 done = 0;
        if ((((unsigned long long)s | (unsigned long long)d) & 7) == 0) {
            const u64 words = size / 8;
            for (u64 w = first; w < words; w += stride) ((u64*)d)[w] = ((const u64*)s)[w];
            done = words * 8;
        }
        for (u64 k = done + first; k < size; k += stride) d[k] = s[k];
    }
}

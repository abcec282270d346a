/* gpuzarr's native helper: one C loop over a batch of decoder calls.
 *
 * Python calls a decoder once per chunk through ctypes, and every call releases the
 * GIL and takes it back. For 64 KiB chunks those handoffs (and the Python between the
 * calls, run on caches the decoder has just evicted) cost a noticeable part of a read
 * on the worker threads, which contend for the GIL after every chunk. This loop makes
 * a whole batch of calls in one GIL-free ctypes call instead.
 *
 * It knows nothing of any codec: it calls a function pointer of libzstd's
 * ZSTD_decompressDCtx shape, taken from the library already loaded. Built with the
 * package where a C compiler is found (hatch_build.py); without it gpuzarr loops in
 * Python.
 */
#include <stddef.h>

#if defined(_WIN32)
#define GPUZARR_EXPORT __declspec(dllexport)
#else
#define GPUZARR_EXPORT
#endif

typedef size_t (*gpuzarr_decode_fn)(void *context, void *dst, size_t dst_nbytes, const void *src,
                                    size_t src_nbytes);

/* Call fn(context, dst[i], dst_nbytes[i], src[i], src_nbytes[i]) for i in [0, n), in
 * order, until one returns anything but dst_nbytes[i] (a libzstd error code, or a
 * chunk that does not fill its output exactly). Returns the index of that call, with
 * its result in *failed_result, or n when every call filled its output. */
GPUZARR_EXPORT size_t gpuzarr_call_each(gpuzarr_decode_fn fn, void *context, size_t n, void *const *dst,
                         const size_t *dst_nbytes, const void *const *src, const size_t *src_nbytes,
                         size_t *failed_result) {
    for (size_t i = 0; i < n; i++) {
        size_t result = fn(context, dst[i], dst_nbytes[i], src[i], src_nbytes[i]);
        if (result != dst_nbytes[i]) {
            *failed_result = result;
            return i;
        }
    }
    return n;
}

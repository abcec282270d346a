/* gpuzarr's native helper: a C loop over a batch of decoder calls.
 *
 * Python calls a decoder once per chunk through ctypes, and every call releases the
 * GIL and takes it back. For 64 KiB chunks those handoffs (and the Python between the
 * calls, run on caches the decoder has just evicted) cost a noticeable part of a read
 * on the worker threads, which contend for the GIL after every chunk. This loop makes
 * a whole batch of calls in one GIL-free ctypes call instead, on one thread or on
 * several threads sharing the batch.
 *
 * It knows nothing of any codec: it calls a function pointer of libzstd's
 * ZSTD_decompressDCtx shape, taken from the library already loaded. Built with the
 * package where a C compiler is found (hatch_build.py); without it gpuzarr loops in
 * Python.
 */
#include <stddef.h>

#if defined(_MSC_VER)
#include <intrin.h>
#endif

#if defined(_WIN32)
#define GPUZARR_EXPORT __declspec(dllexport)
#else
#define GPUZARR_EXPORT
#endif

typedef size_t (*gpuzarr_decode_fn)(void *context, void *dst, size_t dst_nbytes, const void *src,
                                    size_t src_nbytes);

/* The next index of a shared batch for this thread to take (atomic: several threads
 * take from one counter). */
static size_t take_next(size_t *next) {
#if defined(_MSC_VER) && defined(_WIN64)
    return (size_t)_InterlockedExchangeAdd64((volatile long long *)next, 1);
#elif defined(_MSC_VER)
    return (size_t)_InterlockedExchangeAdd((volatile long *)next, 1);
#else
    return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
#endif
}

/* Make every later take_next of a shared batch return at least n. */
static void take_none(size_t *next, size_t n) {
#if defined(_MSC_VER) && defined(_WIN64)
    _InterlockedExchange64((volatile long long *)next, (long long)n);
#elif defined(_MSC_VER)
    _InterlockedExchange((volatile long *)next, (long)n);
#else
    __atomic_store_n(next, n, __ATOMIC_RELAXED);
#endif
}

/* Call fn(context, dst[i], dst_nbytes[i], src[i], src_nbytes[i]) for the calls of a
 * batch, until one returns anything but dst_nbytes[i] (a libzstd error code, or a chunk
 * that does not fill its output exactly). Calls are taken in order from *next (start
 * it at 0): one thread alone makes them all, in order; several threads calling this
 * with the same arrays and *next, each with its own context (a decoder context is not
 * shareable), share the batch, each taking the next call not yet taken until none is
 * left. So threads balance the work among themselves without returning to Python in
 * between (on the GIL, a thread returning from a call can wait for the other threads'
 * Python far longer than a chunk takes to decode).
 *
 * A call that does not fill its output stops every thread from taking more (the calls
 * already taken still run), and this thread returns its index, with its result in
 * *failed_result; a thread returns n when every call it made filled its output. So the
 * least index any thread returns is the batch's first bad call: every call before it
 * was taken, by one thread or another, and ran. */
GPUZARR_EXPORT size_t gpuzarr_call_shared(gpuzarr_decode_fn fn, void *context, size_t n, void *const *dst,
                           const size_t *dst_nbytes, const void *const *src, const size_t *src_nbytes,
                           size_t *next, size_t *failed_result) {
    for (;;) {
        size_t i = take_next(next);
        if (i >= n) {
            return n;
        }
        size_t result = fn(context, dst[i], dst_nbytes[i], src[i], src_nbytes[i]);
        if (result != dst_nbytes[i]) {
            *failed_result = result;
            take_none(next, n);
            return i;
        }
    }
}

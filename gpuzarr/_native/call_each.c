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
 *
 * Outside Windows it also reads inner chunks of local shard files in a batch (open,
 * index, planned ranges, close: gpuzarr_open_shards and gpuzarr_read_shards), so a read
 * touching many shards runs no Python per shard between its file reads, and reads whole
 * local files and decodes each at once, threads sharing the batch
 * (gpuzarr_read_call_shared). And it writes a batch of local files, each to a temp file
 * renamed over the object's, or on Linux a new object to an unnamed file linked at its
 * path (gpuzarr_put_files): a worker storing its chunks takes the GIL back once for the
 * batch, not after each of four system calls per file.
 */
#if !defined(_WIN32)
/* (Before any header: 64-bit file offsets on 32-bit platforms too, and POSIX's pread
 * and O_CLOEXEC declared under a strict -std= in CFLAGS; on Linux also O_TMPFILE.) */
#define _FILE_OFFSET_BITS 64
#define _POSIX_C_SOURCE 200809L
#if defined(__linux__)
#define _GNU_SOURCE
#endif
#endif
#include <stddef.h>

#if defined(_MSC_VER)
#include <intrin.h>
#endif

#include "gpuzarr_export.h"

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

#if !defined(_WIN32)
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One shard file of a batched shard read (gpuzarr_open_shards, gpuzarr_read_shards). */
typedef struct {
    const char *path;        /* in: the file */
    size_t first_unit;       /* in: this shard's units are units[first_unit .. first_unit + n_units) */
    size_t n_units;          /* in */
    long long fd;            /* the open file, or -1 */
    unsigned long long size; /* out: the file's size */
    int error;               /* out: 0, or the errno of the step that failed */
    int failed_step;         /* out: that step, a GPUZARR_STEP_* (only an open can find a shard missing) */
    int truncated;           /* out: 1 when the file is shorter than its index */
    int bad_entry_kind;      /* out: 0, or the GPUZARR_UNIT_* state of the index's first bad entry */
    unsigned long long bad_entry; /* out: that entry's position in the index */
} gpuzarr_shard;

enum { GPUZARR_STEP_NONE = 0, GPUZARR_STEP_OPEN = 1, GPUZARR_STEP_STAT = 2, GPUZARR_STEP_READ = 3 };

/* One inner chunk to read. */
typedef struct {
    unsigned long long inner;  /* in: its position among the shard's index entries (C order) */
    unsigned long long offset; /* out: where its bytes start in the shard, then (after
                                * gpuzarr_read_shards) in the arena */
    unsigned long long nbytes; /* out */
    unsigned long long range;  /* out: the coalesced range it is read with */
    int state;                 /* out: one of the GPUZARR_UNIT_* below */
} gpuzarr_unit;

/* One coalesced read. */
typedef struct {
    unsigned long long shard;  /* which shard */
    unsigned long long offset; /* where in the shard */
    unsigned long long nbytes;
    unsigned long long at;     /* where in the arena */
} gpuzarr_range;

enum {
    GPUZARR_UNIT_STORED = 0,
    GPUZARR_UNIT_EMPTY = 1,      /* not stored (the empty entry, or the shard is missing) */
    GPUZARR_UNIT_PAST_END = 2,   /* the entry reaches past the end of the shard */
    GPUZARR_UNIT_HALF_EMPTY = 3, /* one of offset and length is the empty marker, not both */
    GPUZARR_UNIT_HUGE = 4,       /* offset + length at or past 2**63 */
};

/* Read n bytes at offset (retrying short reads and interrupts, at most 1 GiB a call:
 * macOS refuses reads over INT_MAX bytes), counting the bytes read in *done: 0, an
 * errno, or -1 when the file ends first. */
static int read_counted(int fd, unsigned char *into, size_t n, unsigned long long offset, size_t *done) {
    *done = 0;
    while (*done < n) {
        size_t left = n - *done;
        size_t step = left < ((size_t)1 << 30) ? left : ((size_t)1 << 30);
        ssize_t got = pread(fd, into + *done, step, (off_t)(offset + *done));
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (got == 0) {
            return -1;
        }
        *done += (size_t)got;
    }
    return 0;
}

/* read_counted for callers that need all n bytes or nothing. */
static int read_fully(int fd, unsigned char *into, size_t n, unsigned long long offset) {
    size_t done;
    return read_counted(fd, into, n, offset, &done);
}

/* Where the next block of an arena whose first used bytes go at position used starts,
 * so that it is congruent to skew modulo align (the kernel copies into memory aligned
 * like the file fastest). */
static unsigned long long aligned_at(unsigned long long used, unsigned long long skew, unsigned long long align) {
    return align ? used + (skew % align + align - used % align) % align : used;
}

static unsigned long long little_u64(const unsigned char *p) {
    unsigned long long value = 0;
    for (int k = 7; k >= 0; k--) {
        value = (value << 8) | p[k];
    }
    return value;
}

/* What an index entry says by itself (the shard's size aside): empty, half empty, past
 * any possible end (2**63), or stored. */
static int entry_state(unsigned long long offset, unsigned long long nbytes) {
    const unsigned long long empty = ~0ull, huge = 1ull << 63;
    if (offset == empty || nbytes == empty) {
        return offset == nbytes ? GPUZARR_UNIT_EMPTY : GPUZARR_UNIT_HALF_EMPTY;
    }
    return offset >= huge || nbytes >= huge - offset ? GPUZARR_UNIT_HUGE : GPUZARR_UNIT_STORED;
}

/* The units by_offset compares (qsort takes no context; one per thread, as threads
 * plan their own reads at once). */
static __thread const gpuzarr_unit *sort_units_base;

static int by_offset(const void *a, const void *b) {
    unsigned long long x = sort_units_base[*(const size_t *)a].offset;
    unsigned long long y = sort_units_base[*(const size_t *)b].offset;
    return (x > y) - (x < y);
}

/* Open file->path and take its size (retrying interrupts): the descriptor (also kept in
 * file->fd), or -1 with file->error and file->failed_step set. A path that is not a
 * regular file (a directory, which Linux opens) fails its open with ENOENT: no object. */
static int open_file(gpuzarr_shard *file) {
    file->fd = -1;
    file->size = 0;
    file->error = 0;
    file->failed_step = GPUZARR_STEP_NONE;
    int fd;
    do {
        fd = open(file->path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        file->error = errno;
        file->failed_step = GPUZARR_STEP_OPEN;
        return -1;
    }
    file->fd = fd;
    struct stat st;
    int stat_result;
    do {
        stat_result = fstat(fd, &st);
    } while (stat_result != 0 && errno == EINTR);
    if (stat_result != 0 || !S_ISREG(st.st_mode)) {
        file->error = stat_result != 0 ? errno : ENOENT;
        file->failed_step = stat_result != 0 ? GPUZARR_STEP_STAT : GPUZARR_STEP_OPEN;
        close(fd);
        file->fd = -1;
        return -1;
    }
    file->size = (unsigned long long)st.st_size;
    return fd;
}

/* Close every shard file still open. */
GPUZARR_EXPORT void gpuzarr_close_shards(gpuzarr_shard *shards, size_t n_shards) {
    for (size_t s = 0; s < n_shards; s++) {
        if (shards[s].fd >= 0) {
            close((int)shards[s].fd);
            shards[s].fd = -1;
        }
    }
}

/* The first step of a batched read of inner chunks from local shard files: open each
 * shard, read its index (index_nbytes bytes at its start, or at its end with
 * index_at_end) into indexes + s * index_nbytes, find each unit's entry there, and plan
 * the coalesced reads (units of a shard less than max_gap bytes apart are read
 * together) into ranges, laid out in an arena (each range at an address congruent to
 * its file offset modulo align: the kernel copies aligned memory fastest). Returns the
 * number of ranges, and the arena bytes they need in *arena_nbytes; order (n_units
 * entries) is scratch space.
 *
 * Index entries are read as they are: a shard whose index carries a checksum must be
 * checked by the caller before gpuzarr_read_shards reads anything with it. Files stay
 * open for gpuzarr_read_shards (or gpuzarr_close_shards); a shard that could not be
 * opened or read says why in its error, and its units read as empty. All of this runs
 * without the GIL, and without any Python between the files. */
GPUZARR_EXPORT size_t gpuzarr_open_shards(gpuzarr_shard *shards, size_t n_shards, gpuzarr_unit *units,
                                          size_t *order, unsigned char *indexes, size_t index_nbytes,
                                          int index_at_end, unsigned long long max_gap, unsigned long long align,
                                          gpuzarr_range *ranges, unsigned long long *arena_nbytes) {
    size_t n_ranges = 0;
    unsigned long long used = 0;
    for (size_t s = 0; s < n_shards; s++) {
        gpuzarr_shard *shard = &shards[s];
        gpuzarr_unit *own = units + shard->first_unit;
        shard->truncated = 0;
        shard->bad_entry_kind = 0;
        shard->bad_entry = 0;
        for (size_t u = 0; u < shard->n_units; u++) {
            own[u].state = GPUZARR_UNIT_EMPTY;
        }
        int fd = open_file(shard);
        if (fd < 0) {
            continue;
        }
        if (shard->size < index_nbytes) {
            shard->truncated = 1;
            continue;
        }
        unsigned char *index = indexes + s * index_nbytes;
        int failed = read_fully(fd, index, index_nbytes, index_at_end ? shard->size - index_nbytes : 0);
        if (failed) {
            if (failed < 0) {
                shard->truncated = 1; /* (shortened since the fstat) */
            } else {
                shard->error = failed;
                shard->failed_step = GPUZARR_STEP_READ;
            }
            continue;
        }
        /* Every entry is checked, not only those read: a corrupt index is an error
         * whichever of its chunks a read asks for. */
        for (size_t e = 0; e < index_nbytes / 16; e++) {
            int state = entry_state(little_u64(index + 16 * e), little_u64(index + 16 * e + 8));
            if (state == GPUZARR_UNIT_HALF_EMPTY || state == GPUZARR_UNIT_HUGE) {
                shard->bad_entry_kind = state;
                shard->bad_entry = e;
                break;
            }
        }
        size_t n_stored = 0;
        for (size_t u = 0; u < shard->n_units; u++) {
            if (own[u].inner >= index_nbytes / 16) { /* (no such entry: a caller's bug, never read past) */
                own[u].state = GPUZARR_UNIT_HUGE;
                continue;
            }
            const unsigned char *entry = index + 16 * own[u].inner;
            unsigned long long offset = little_u64(entry), nbytes = little_u64(entry + 8);
            own[u].offset = offset;
            own[u].nbytes = nbytes;
            own[u].state = entry_state(offset, nbytes);
            if (own[u].state == GPUZARR_UNIT_STORED && offset + nbytes > shard->size) {
                own[u].state = GPUZARR_UNIT_PAST_END;
            } else if (own[u].state == GPUZARR_UNIT_STORED) {
                order[n_stored++] = shard->first_unit + u;
            }
        }
        sort_units_base = units;
        qsort(order, n_stored, sizeof(size_t), by_offset);
        unsigned long long end = 0;
        for (size_t k = 0; k < n_stored; k++) {
            gpuzarr_unit *unit = &units[order[k]];
            if (k == 0 || unit->offset > end + max_gap) {
                gpuzarr_range *range = &ranges[n_ranges++];
                range->shard = s;
                range->offset = unit->offset;
                range->nbytes = 0;
                end = unit->offset;
            }
            gpuzarr_range *range = &ranges[n_ranges - 1];
            if (unit->offset + unit->nbytes > end) {
                end = unit->offset + unit->nbytes;
            }
            range->nbytes = end - range->offset;
            unit->range = n_ranges - 1;
        }
    }
    for (size_t r = 0; r < n_ranges; r++) {
        ranges[r].at = aligned_at(used, ranges[r].offset, align);
        used = ranges[r].at + ranges[r].nbytes;
    }
    *arena_nbytes = used;
    return n_ranges;
}

/* The second step (after gpuzarr_open_shards, and after the caller has checked the
 * indexes): read the planned ranges into arena, point each stored unit's offset into
 * the arena, and close every file. A range the file no longer holds (cut short since
 * its size was taken) marks its units past the end; a failed read sets its shard's
 * error. Runs without the GIL. */
GPUZARR_EXPORT void gpuzarr_read_shards(gpuzarr_shard *shards, size_t n_shards, gpuzarr_unit *units,
                                        size_t n_units, const gpuzarr_range *ranges, size_t n_ranges,
                                        unsigned char *arena) {
    for (size_t r = 0; r < n_ranges; r++) {
        gpuzarr_shard *shard = &shards[ranges[r].shard];
        if (shard->error) {
            continue;
        }
        int failed = read_fully((int)shard->fd, arena + ranges[r].at, (size_t)ranges[r].nbytes, ranges[r].offset);
        if (failed > 0) {
            shard->error = failed;
            shard->failed_step = GPUZARR_STEP_READ;
        } else if (failed < 0) {
            for (size_t u = 0; u < n_units; u++) {
                if (units[u].state == GPUZARR_UNIT_STORED && units[u].range == r) {
                    units[u].state = GPUZARR_UNIT_PAST_END;
                }
            }
        }
    }
    for (size_t u = 0; u < n_units; u++) {
        if (units[u].state == GPUZARR_UNIT_STORED) {
            const gpuzarr_range *range = &ranges[units[u].range];
            units[u].offset = range->at + (units[u].offset - range->offset);
        }
    }
    gpuzarr_close_shards(shards, n_shards);
}

/* Read whole files and decode each straight into its target, threads sharing the
 * batch: for each file taken from *next (as gpuzarr_call_shared takes its calls), open
 * it, take its size, read it whole into buffer (this thread's own, buffer_nbytes long),
 * close it, and call fn(context, dst[f], dst_nbytes[f], buffer, size), its result in
 * results[f]. Each thread reads a file and decodes it at once, while its bytes are hot in
 * cache, and no thread waits for a fetch before decoding starts: a thread that joins
 * late finds less work left, not a wait.
 *
 * Nothing stops the batch: a file that cannot be opened, sized or read says so in its
 * record's error and failed_step (results[f] untouched), one larger than buffer is left
 * unread with truncated set, and a decode that does not fill its target leaves its
 * result in results[f] (the caller compares with dst_nbytes, and redoes any unit that
 * is not done through its general path, which names what is wrong). Runs without the
 * GIL. */
GPUZARR_EXPORT void gpuzarr_read_call_shared(gpuzarr_decode_fn fn, void *context, size_t n, gpuzarr_shard *files,
                                             void *const *dst, const size_t *dst_nbytes, unsigned char *buffer,
                                             size_t buffer_nbytes, size_t *next, size_t *results) {
    for (;;) {
        size_t f = take_next(next);
        if (f >= n) {
            return;
        }
        gpuzarr_shard *file = &files[f];
        int fd = open_file(file);
        if (fd < 0) {
            continue;
        }
        if (file->size > buffer_nbytes) {
            file->truncated = 1;
        } else {
            size_t got;
            int failed = read_counted(fd, buffer, (size_t)file->size, 0, &got);
            if (failed > 0) {
                file->error = failed;
                file->failed_step = GPUZARR_STEP_READ;
            } else {
                file->size = got; /* (fewer where the file was cut short since its fstat) */
                results[f] = fn(context, dst[f], dst_nbytes[f], buffer, got);
            }
        }
        close(fd);
        file->fd = -1;
    }
}

/* Read inner chunks of shard files gpuzarr_open_shards opened (the caller has checked
 * their indexes and the units' entries since) and decode each straight into its target,
 * threads sharing the batch: for each stored unit taken from *next (as
 * gpuzarr_call_shared takes its calls), read its bytes from its shard's file
 * (shards[unit_shard[u]]) into buffer (this thread's own, buffer_nbytes long) and call
 * fn(context, dst[u], dst_nbytes, buffer, nbytes), its result in results[u]. Each thread
 * reads a unit and decodes it at once, while its bytes are hot in cache, and no thread
 * waits for the others' reads before decoding starts (gpuzarr_read_shards reads every
 * range first, on one thread).
 *
 * Units not stored are skipped. Nothing stops the batch: a unit larger than buffer, or
 * whose read fails or finds the file cut short, is left with results[u] untouched, and a
 * decode that does not fill its target leaves its result there; the caller redoes any
 * unit whose result is not dst_nbytes through its general path, which names what is
 * wrong. The files stay open (gpuzarr_close_shards closes them). Runs without the GIL. */
GPUZARR_EXPORT void gpuzarr_read_shards_call_shared(gpuzarr_decode_fn fn, void *context, const gpuzarr_shard *shards,
                                                    const size_t *unit_shard, const gpuzarr_unit *units, size_t n,
                                                    void *const *dst, size_t dst_nbytes, unsigned char *buffer,
                                                    size_t buffer_nbytes, size_t *next, size_t *results) {
    for (;;) {
        size_t u = take_next(next);
        if (u >= n) {
            return;
        }
        const gpuzarr_unit *unit = &units[u];
        const gpuzarr_shard *shard = &shards[unit_shard[u]];
        if (unit->state != GPUZARR_UNIT_STORED || shard->fd < 0 || unit->nbytes > buffer_nbytes) {
            continue;
        }
        if (read_fully((int)shard->fd, buffer, (size_t)unit->nbytes, unit->offset) == 0) {
            results[u] = fn(context, dst[u], dst_nbytes, buffer, (size_t)unit->nbytes);
        }
    }
}

/* The first step of reading whole files into an arena: open each of n files and take
 * its size, and lay them out in an arena (at[f], each at a multiple of align: the kernel
 * copies into aligned memory fastest). Returns the arena bytes they need. Files stay
 * open for gpuzarr_read_files (or gpuzarr_close_shards); one that could not be opened
 * says why in its error and failed_step. Runs without the GIL. */
GPUZARR_EXPORT unsigned long long gpuzarr_open_files(gpuzarr_shard *files, size_t n, unsigned long long align,
                                                     unsigned long long *at) {
    unsigned long long used = 0;
    for (size_t f = 0; f < n; f++) {
        if (open_file(&files[f]) < 0) {
            at[f] = used;
            continue;
        }
        at[f] = aligned_at(used, 0, align);
        used = at[f] + files[f].size;
    }
    return used;
}

/* The second step: read each open file whole into arena + at[f] (its size becomes the
 * bytes read: fewer where the file was cut short since), then close every file. A failed
 * read sets the file's error. Runs without the GIL. */
GPUZARR_EXPORT void gpuzarr_read_files(gpuzarr_shard *files, size_t n, const unsigned long long *at,
                                       unsigned char *arena) {
    for (size_t f = 0; f < n; f++) {
        if (files[f].fd < 0) {
            continue;
        }
        size_t got;
        int failed = read_counted((int)files[f].fd, arena + at[f], (size_t)files[f].size, 0, &got);
        if (failed > 0) {
            files[f].error = failed;
            files[f].failed_step = GPUZARR_STEP_READ;
        }
        files[f].size = got;
    }
    gpuzarr_close_shards(files, n);
}

/* One object of a batched write (gpuzarr_put_files). */
typedef struct {
    const char *path;   /* in: the object's file */
    const char *temp;   /* in: a fresh name beside it, written first, then renamed to path */
    size_t first_part;  /* in: the object is parts[first_part .. first_part + n_parts) */
    size_t n_parts;     /* in */
    int error;          /* out: 0, or the errno of the step that failed */
    int failed_step;    /* out: that step, a GPUZARR_PUT_* */
    int hold;           /* in: 1 to hold the file the rename replaces open (see held) */
    int held;           /* out: the replaced file, open read-only, for the caller to close; or -1 */
} gpuzarr_put;

enum {
    GPUZARR_PUT_NONE = 0,
    GPUZARR_PUT_CREATE = 1, /* creating the temp file (ENOENT: its directory is missing) */
    GPUZARR_PUT_WRITE = 2,
    GPUZARR_PUT_SYNC = 3,
    GPUZARR_PUT_CLOSE = 4,
    GPUZARR_PUT_RENAME = 5,
};

/* Write n bytes (retrying short writes and interrupts, at most 1 GiB a call): 0 or an
 * errno. */
static int write_fully(int fd, const unsigned char *from, size_t n) {
    size_t done = 0;
    while (done < n) {
        size_t left = n - done;
        size_t step = left < ((size_t)1 << 30) ? left : ((size_t)1 << 30);
        ssize_t put = write(fd, from + done, step);
        if (put < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        done += (size_t)put;
    }
    return 0;
}

/* Write the object's parts to fd, and fsync it if sync: 0, or an errno with *step set
 * to the step that failed. */
static int fill_file(int fd, const gpuzarr_put *put, const unsigned char *const *parts, const size_t *part_nbytes,
                     int sync, int *step) {
    for (size_t p = put->first_part; p < put->first_part + put->n_parts; p++) {
        int failed = write_fully(fd, parts[p], part_nbytes[p]);
        if (failed) {
            *step = GPUZARR_PUT_WRITE;
            return failed;
        }
    }
    if (sync && fsync(fd) != 0) {
        *step = GPUZARR_PUT_SYNC;
        return errno;
    }
    return 0;
}

static void record_failure(gpuzarr_put *put, int error, int step) {
    put->error = error;
    put->failed_step = step;
}

/* Close fd, the object's file written in full at put->temp (unless failed says what
 * went wrong in step), and rename it over the object's path. A failure leaves no temp
 * file and says which step failed.
 *
 * With hold, the file at the object's path is opened just before the rename and handed
 * back open (held): a rename that drops the last link of a file otherwise frees its
 * blocks on the spot, and on a file system mounted with discard it waits for the
 * device to discard them (about 0.4 ms per MiB measured), while the caller's thread
 * could be encoding the next object. The caller closes held on another thread. */
static void rename_into_place(gpuzarr_put *put, int fd, int failed, int step) {
    /* (No retry of an interrupted close: on Linux the descriptor is gone either way.) */
    if (close(fd) != 0 && !failed && errno != EINTR) {
        failed = errno;
        step = GPUZARR_PUT_CLOSE;
    }
    int held = -1;
    if (!failed && put->hold) {
        /* (-1: no object there yet. Non-blocking: never wait on a FIFO in its place.) */
        held = open(put->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    }
    if (!failed && rename(put->temp, put->path) != 0) {
        failed = errno;
        step = GPUZARR_PUT_RENAME;
    }
    if (failed && held >= 0) {
        close(held);
        held = -1;
    }
    put->held = held;
    if (failed) {
        unlink(put->temp);
        record_failure(put, failed, step);
    }
}

#if defined(O_TMPFILE)
/* An unnamed file (O_TMPFILE) in the folder of path, open for writing: its fd, -1 with
 * errno where that fails, or -2 where the file system or kernel has no unnamed files. */
static int open_unnamed(const char *path) {
    char folder[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);
    if (n >= sizeof(folder)) {
        return -2;
    }
    if (slash == NULL) {
        folder[0] = '.';
        n = 1;
    } else if (n == 0) {
        folder[0] = '/'; /* a file in the root folder */
        n = 1;
    } else {
        memcpy(folder, path, n);
    }
    folder[n] = '\0';
    int fd;
    do {
        fd = open(folder, O_WRONLY | O_TMPFILE | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    /* (EISDIR: a kernel older than O_TMPFILE; EOPNOTSUPP/EINVAL: a file system without.) */
    if (fd < 0 && (errno == EISDIR || errno == EOPNOTSUPP || errno == EINVAL)) {
        return -2;
    }
    return fd;
}

/* Give the unnamed file fd the name path: 0, or an errno (EEXIST where path is taken). */
static int link_unnamed(int fd, const char *path) {
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
}

/* Write one object as an unnamed file linked at its path once written: 1 where that
 * is done (or its failure recorded), 0 where the caller is to write the object as a
 * named temp file instead, *unnamed then cleared for the rest of the batch: a file
 * system without unnamed files, or a link refused for another reason than its path
 * being taken or its folder missing.
 *
 * A link cannot replace a file: an object that exists already is linked at its temp
 * name and renamed over its path (rename_into_place), and *unnamed is cleared too (a
 * batch that overwrites one object mostly overwrites them all). */
static int put_unnamed(gpuzarr_put *put, const unsigned char *const *parts, const size_t *part_nbytes, int sync,
                       int *unnamed) {
    int fd = open_unnamed(put->path);
    if (fd == -2) {
        *unnamed = 0;
        return 0;
    }
    if (fd < 0) {
        record_failure(put, errno, GPUZARR_PUT_CREATE); /* (ENOENT: the folder is missing) */
        return 1;
    }
    int step = GPUZARR_PUT_NONE;
    int failed = fill_file(fd, put, parts, part_nbytes, sync, &step);
    if (failed) {
        close(fd); /* (nothing to remove: the file has no name) */
        record_failure(put, failed, step);
        return 1;
    }
    failed = link_unnamed(fd, put->path);
    if (failed == 0) {
        if (close(fd) != 0 && errno != EINTR) {
            record_failure(put, errno, GPUZARR_PUT_CLOSE);
            unlink(put->path); /* (its own object: no other was there) */
        }
        return 1;
    }
    if (failed == EEXIST) {
        *unnamed = 0;
        failed = link_unnamed(fd, put->temp);
        if (failed == 0) {
            rename_into_place(put, fd, 0, GPUZARR_PUT_NONE);
            return 1;
        }
    }
    close(fd);
    if (failed == ENOENT || failed == EEXIST) {
        /* (The folder went meanwhile, or the temp name is taken: redone by the caller,
         * as when creating a named temp file fails so.) */
        record_failure(put, failed, GPUZARR_PUT_CREATE);
        return 1;
    }
    *unnamed = 0;
    return 0;
}
#endif

/* Write one object so that a reader sees the old object or the whole new one: a new
 * file (mode 0666 less the umask, like any file) holding its parts, fsynced if sync,
 * put at its path. A failure leaves no temp file and says which step failed.
 *
 * Where *unnamed is set (Linux), the file starts unnamed and is linked at the object's
 * path once written (put_unnamed): one new folder entry for a new object, where a
 * named temp file renamed into place makes three changes to the folder (measured on
 * ext4, 2048 files of 4 KiB: 36 us of CPU time a file against 48 us), and a process
 * killed meanwhile leaves nothing behind. Otherwise, or where put_unnamed declines, it
 * is written to its temp name and renamed over the path (rename_into_place). */
static void write_one(gpuzarr_put *put, const unsigned char *const *parts, const size_t *part_nbytes, int sync,
                      int *unnamed) {
    put->error = 0;
    put->failed_step = GPUZARR_PUT_NONE;
    put->held = -1;
#if defined(O_TMPFILE)
    if (*unnamed && put_unnamed(put, parts, part_nbytes, sync, unnamed)) {
        return;
    }
#else
    (void)unnamed;
#endif
    int fd;
    do {
        fd = open(put->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        record_failure(put, errno, GPUZARR_PUT_CREATE);
        return;
    }
    int step = GPUZARR_PUT_NONE;
    int failed = fill_file(fd, put, parts, part_nbytes, sync, &step);
    rename_into_place(put, fd, failed, step);
}

/* Write n objects one after another (write_one), each whatever became of the others:
 * the caller redoes or reports the ones that failed. parts[i] holds part_nbytes[i]
 * bytes. With unnamed, new objects start as unnamed files (see write_one; the caller
 * asks for it only where /proc/self/fd exists, which linking them needs). Runs
 * without the GIL. */
GPUZARR_EXPORT void gpuzarr_put_files(gpuzarr_put *puts, size_t n, const unsigned char *const *parts,
                                      const size_t *part_nbytes, int sync, int unnamed) {
    for (size_t i = 0; i < n; i++) {
        write_one(&puts[i], parts, part_nbytes, sync, &unnamed);
    }
}
#endif

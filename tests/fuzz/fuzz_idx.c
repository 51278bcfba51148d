/*  fuzz_idx.c — libFuzzer target: the IDX reader (ud_dataset_load_idx) on an images file and a
 *  labels file (either may be gzip-compressed). The first two bytes (big-endian) say how many of
 *  the remaining bytes are the images file; the rest is the labels file. Both are handed over as
 *  memory files (memfd) under /proc/self/fd, so the reader's real file path runs.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zlib.h>

#include "updraft/ud_data.h"

#include "fuzz.h"

/* The reader asks zlib for 128 KiB buffers (fast on a 47 MB file); under ASan each of those is
 * mapped and unmapped for every input, which made this target run at ~500 inputs/s. Here the
 * call is passed on with zlib's default size instead: the same code runs, ten times faster. */
int gzbuffer(gzFile file, unsigned size)
{
    static int (*real)(gzFile, unsigned);
    if (!real)
        real = (int (*)(gzFile, unsigned))dlsym(RTLD_NEXT, "gzbuffer");
    return real(file, size > 8192 ? 8192 : size);
}

static int memfile(const uint8_t *p, size_t n, char *path, size_t cap)
{
    int fd = memfd_create("fuzz-idx", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0)
            abort();
        done += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t ni = (size_t)data[0] << 8 | data[1];
    data += 2;
    size -= 2;
    if (ni > size)
        ni = size;
    char pi[64], pl[64];
    int fi = memfile(data, ni, pi, sizeof pi), fl = memfile(data + ni, size - ni, pl, sizeof pl);
    struct ud_err e = {0};
    ud_dataset_t *ds = ud_dataset_load_idx(pi, pl, NULL, &e);
    if (ds) {
        size_t n = ud_dataset_count(ds);
        for (size_t i = 0; i < n; i++)
            if (ud_dataset_label(ds, i) < 0 ||
                ud_dataset_label(ds, i) >= ud_dataset_num_classes(ds))
                fuzz_fail(&e);
    }
    ud_dataset_destroy(&ds);
    close(fi);
    close(fl);
    return 0;
}

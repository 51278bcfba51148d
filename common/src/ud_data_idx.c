/*  ud_data_idx.c — IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.
 *
 *  Format: a big-endian header, magic 0x00000803 (unsigned bytes, 3 dimensions) then n, rows,
 *  cols for images; magic 0x00000801 then n for labels; then the bytes. Both files are read
 *  through zlib's gzread, which also reads uncompressed files as they are.
 *
 *  A header can claim anything, so the pixel buffer grows with the data actually read (doubling
 *  up to the declared size): a forged n × rows × cols costs at most twice what the file really
 *  holds. Pixels are kept as bytes, so the 60000-image training set takes 47 MB.
 */
#include "ud_data_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_CHUNK        ((size_t)1 << 22)

static const char *const fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int gz_open(const char *path, gzFile *out, struct ud_err *e)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return ud__data_errno(e, errno, "stat", path);
    if (!S_ISREG(st.st_mode))
        return ud_err_set(e, UD_EIO, "%s: not a regular file", path);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return errno ? ud__data_errno(e, errno, "open", path)
                     : ud_err_set(e, UD_ENOMEM, "%s: out of memory opening", path);
    gzbuffer(f, 1u << 17);
    *out = f;
    return 0;
}

/* Reads up to want bytes into buf; *got is how many there were before the end of the data. */
static int gz_read(gzFile f, const char *path, void *buf, size_t want, size_t *got,
                   struct ud_err *e)
{
    size_t done = 0;
    while (done < want) {
        size_t ask = want - done;
        if (ask > ((size_t)1 << 30))
            ask = (size_t)1 << 30;
        int r = gzread(f, (char *)buf + done, (unsigned)ask);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr == Z_ERRNO)
                return ud_err_set(e, UD_EIO, "%s: read error: %s", path, strerror(errno));
            if (zerr == Z_BUF_ERROR)
                return ud_err_set(e, UD_ETRUNCATED, "%s: compressed data ends early", path);
            return ud_err_set(e, UD_EFORMAT, "%s: corrupt gzip data: %s", path, msg);
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    /* gzread hides a truncated gzip stream as a short read; gzerror tells. */
    if (done < want) {
        int zerr;
        gzerror(f, &zerr);
        if (zerr == Z_BUF_ERROR)
            return ud_err_set(e, UD_ETRUNCATED, "%s: compressed data ends early", path);
        if (zerr != Z_OK && zerr != Z_STREAM_END)
            return ud_err_set(e, UD_EFORMAT, "%s: corrupt gzip data", path);
    }
    *got = done;
    return 0;
}

/* Reads exactly want bytes into a buffer that grows with the data actually present. */
static int gz_read_grow(gzFile f, const char *path, size_t want, const char *what,
                        unsigned char **out, struct ud_err *e)
{
    int rc = 0;
    size_t cap = want < IDX_CHUNK ? want : IDX_CHUNK;
    size_t have = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory for %zu bytes", path, cap);
    for (;;) {
        size_t got;
        rc = gz_read(f, path, buf + have, cap - have, &got, e);
        if (rc)
            goto out_free;
        have += got;
        if (have < cap) {
            rc = ud_err_set(e, UD_ETRUNCATED, "%s: truncated: expected %zu bytes of %s, got %zu",
                            path, want, what, have);
            goto out_free;
        }
        if (have == want)
            break;
        size_t ncap = cap > want / 2 ? want : cap * 2;
        unsigned char *nb = realloc(buf, ncap);
        if (!nb) {
            rc = ud_err_set(e, UD_ENOMEM, "%s: out of memory for %zu bytes", path, ncap);
            goto out_free;
        }
        buf = nb;
        cap = ncap;
    }
    *out = buf;
    return 0;

out_free:
    free(buf);
    return rc;
}

/* Fails when f has data after what its header declared. */
static int gz_expect_end(gzFile f, const char *path, const char *what, struct ud_err *e)
{
    unsigned char extra[1];
    size_t got;
    int rc = gz_read(f, path, extra, 1, &got, e);
    if (rc)
        return rc;
    if (got)
        return ud_err_set(e, UD_EFORMAT, "%s: data after the %s its header declares", path, what);
    return 0;
}

/* "…images-idx3…" -> "…labels-idx1…" (the last occurrence). NULL when the name does not fit. */
static char *derive_labels_path(const char *images)
{
    const char *key = "images-idx3", *rep = "labels-idx1";
    const char *hit = NULL;
    for (const char *p = strstr(images, key); p; p = strstr(p + 1, key))
        hit = p;
    if (!hit)
        return NULL;
    char *out = strdup(images);
    if (out)
        memcpy(out + (hit - images), rep, strlen(rep));
    return out;
}

/* Opens path and reads its header (hsize bytes, starting with magic) into h: data of another
 * magic (as soon as 4 bytes are there) or a short header fails. kind names the content. */
static int open_header(const char *path, uint32_t magic, const char *kind, unsigned char *h,
                       size_t hsize, gzFile *f, struct ud_err *e)
{
    size_t got;
    int rc = gz_open(path, f, e);
    if (rc || (rc = gz_read(*f, path, h, hsize, &got, e)))
        return rc;
    if (got >= 4 && be32(h) != magic)
        return ud_err_set(e, UD_EFORMAT,
                          "%s: bad magic 0x%08x (IDX %s of unsigned bytes have 0x%08x)", path,
                          be32(h), kind, magic);
    if (got < hsize)
        return ud_err_set(e, UD_ETRUNCATED,
                          "%s: truncated: expected a %zu-byte header, got %zu bytes", path, hsize,
                          got);
    return 0;
}

/* The images file's header: n images of rows x cols, each within the limits. */
static int images_header(const char *path, gzFile *f, uint32_t *n, uint32_t *rows, uint32_t *cols,
                         struct ud_err *e)
{
    unsigned char h[16];
    int rc = open_header(path, IDX_MAGIC_IMAGES, "images", h, sizeof h, f, e);
    if (rc)
        return rc;
    *n = be32(h + 4), *rows = be32(h + 8), *cols = be32(h + 12);
    if (*n == 0 || *rows == 0 || *cols == 0)
        return ud_err_set(e, UD_EFORMAT, "%s: zero dimension in the header (%u images of %u x %u)",
                          path, *n, *rows, *cols);
    if (*rows > UD_MAX_DIM || *cols > UD_MAX_DIM || *n > UD_DATA_MAX_SAMPLES)
        return ud_err_set(e, UD_ELIMIT,
                          "%s: %u images of %u x %u: over the limits (%d x %d, %zu images)", path,
                          *n, *rows, *cols, UD_MAX_DIM, UD_MAX_DIM, (size_t)UD_DATA_MAX_SAMPLES);
    return 0;
}

/* The labels file's header, which must count the n images. */
static int labels_header(const char *path, const char *images_path, uint32_t n, gzFile *f,
                         struct ud_err *e)
{
    unsigned char h[8];
    int rc = open_header(path, IDX_MAGIC_LABELS, "labels", h, sizeof h, f, e);
    if (rc)
        return rc;
    uint32_t nl = be32(h + 4);
    if (nl != n)
        return ud_err_set(e, UD_ESHAPE, "%s has %u images but %s has %u labels", images_path, n,
                          path, nl);
    return 0;
}

/* Reads ds->n labels from f into ds->label; *maxl is the largest. */
static int read_labels(gzFile f, const char *path, ud_dataset_t *ds, int *maxl, struct ud_err *e)
{
    unsigned char *lab;
    int rc = gz_read_grow(f, path, ds->n, "labels", &lab, e);
    if (rc)
        return rc;
    ds->label = malloc(ds->n * sizeof *ds->label);
    if (!ds->label) {
        free(lab);
        return ud_err_set(e, UD_ENOMEM, "out of memory for %zu labels", ds->n);
    }
    *maxl = 0;
    for (size_t i = 0; i < ds->n; i++) {
        ds->label[i] = lab[i];
        if (lab[i] > *maxl)
            *maxl = lab[i];
    }
    free(lab);
    return 0;
}

/* Classes "0".."k-1", or the Fashion-MNIST names. */
static int set_classes(ud_dataset_t *ds, int k, int fashion, struct ud_err *e)
{
    ds->classes = calloc((size_t)k, sizeof *ds->classes);
    if (!ds->classes)
        return ud_err_set(e, UD_ENOMEM, "out of memory for class names");
    ds->nclasses = k;
    for (int c = 0; c < k; c++) {
        char num[16];
        snprintf(num, sizeof num, "%d", c);
        ds->classes[c] = strdup(fashion ? fashion_names[c] : num);
        if (!ds->classes[c])
            return ud_err_set(e, UD_ENOMEM, "out of memory for class names");
    }
    return 0;
}

/* Reads the first ds->n samples (of n in the files, the headers already read) into ds. */
static int read_samples(gzFile fi, const char *images_path, gzFile fl, const char *labels_path,
                        uint32_t n, ud_dataset_t *ds, struct ud_err *e)
{
    int maxl = 0;
    int rc = gz_read_grow(fi, images_path, ds->n * ds->isize, "pixel data", &ds->px, e);
    if (rc == 0 && ds->n == n)
        rc = gz_expect_end(fi, images_path, "images", e);
    if (rc == 0)
        rc = read_labels(fl, labels_path, ds, &maxl, e);
    if (rc == 0 && ds->n == n)
        rc = gz_expect_end(fl, labels_path, "labels", e);
    if (rc)
        return rc;
    /* Labels are bytes, so K <= 256 <= UD_MAX_CLASSES. */
    int k = maxl + 1;
    int fashion = k == 10 && (strcasestr(images_path, "fashion") != NULL ||
                              strcasestr(labels_path, "fashion") != NULL);
    return set_classes(ds, k, fashion, e);
}

ud_dataset_t *ud_dataset_load_idx(const char *images_path, const char *labels_path,
                                  const struct ud_load_opts *opts, struct ud_err *e)
{
    static const struct ud_load_opts no_opts;
    if (!opts)
        opts = &no_opts;
    ud_dataset_t *ds = NULL;
    gzFile fi = NULL, fl = NULL;
    char *derived = NULL;
    uint32_t n, rows, cols;

    if (!labels_path) {
        derived = derive_labels_path(images_path);
        if (!derived) {
            ud_err_set(e, UD_EINVAL,
                       "%s: cannot tell where the labels are (the name has no "
                       "\"images-idx3\" to turn into \"labels-idx1\"); name the labels file",
                       images_path);
            return NULL;
        }
        labels_path = derived;
    }
    if (images_header(images_path, &fi, &n, &rows, &cols, e) ||
        labels_header(labels_path, images_path, n, &fl, e))
        goto out_fail;
    size_t keep = n;
    if (opts->max_samples && opts->max_samples < keep)
        keep = opts->max_samples;
    size_t isize = (size_t)rows * cols;
    if ((uint64_t)keep * isize > UD_DATA_MAX_BYTES) {
        ud_err_set(e, UD_ELIMIT, "%s: %zu images of %u x %u are over the %llu-byte limit",
                   images_path, keep, rows, cols, (unsigned long long)UD_DATA_MAX_BYTES);
        goto out_fail;
    }
    ds = ud__dataset_alloc(e);
    if (!ds)
        goto out_fail;
    ds->u8 = 1;
    ds->shape = (struct ud_shape){1, (int)rows, (int)cols};
    ds->isize = isize;
    ds->n = keep;
    if (read_samples(fi, images_path, fl, labels_path, n, ds, e))
        goto out_fail;
    ds->src_pool = strdup(images_path);
    if (!ds->src_pool) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        goto out_fail;
    }
    gzclose(fl);
    gzclose(fi);
    free(derived);
    return ds;

out_fail:
    ud_dataset_destroy(&ds);
    if (fl)
        gzclose(fl);
    if (fi)
        gzclose(fi);
    free(derived);
    return NULL;
}

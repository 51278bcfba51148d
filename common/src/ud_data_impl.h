/*  ud_data_impl.h — private to the data module (ud_data*.c, ud_split.c): the dataset struct,
 *  the limits on what a file may ask for, and small helpers the loaders share.
 *
 *  Every loader builds a struct ud_dataset directly and hands it back; on failure it calls
 *  ud_dataset_destroy, which frees whatever fields are set.
 */
#ifndef UD_DATA_IMPL_H
#define UD_DATA_IMPL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_data.h"

/* ---- Limits: checked against what a file declares before anything is allocated ---- */

/* Width or height of an image file (before resizing). */
#define UD_DATA_MAX_IMAGE_SIDE 16384
/* Pixels of an image file (before resizing): a 100-byte PNG may declare 16384 x 16384, and the
 * decoded pixels are allocated before the rows are read. */
#define UD_DATA_MAX_IMAGE_PIXELS ((uint64_t)1 << 26) /* 64 Mi pixels, e.g. 8192 x 8192 */
/* Size of one image file read into memory. */
#define UD_DATA_MAX_IMAGE_FILE ((size_t)1 << 28) /* 256 MiB */
/* Size of a CSV file (read whole). */
#define UD_DATA_MAX_CSV_FILE ((size_t)1 << 31) /* 2 GiB */
/* CSV columns: UD_MAX_DIM features plus the label. */
#define UD_DATA_MAX_CSV_COLUMNS (UD_MAX_DIM + 1)
/* Sample data of one dataset in bytes (pixels or floats). */
#define UD_DATA_MAX_BYTES ((uint64_t)1 << 34) /* 16 GiB */
/* Samples of one dataset: indices are uint32_t, labels int32_t. */
#define UD_DATA_MAX_SAMPLES ((size_t)INT32_MAX)

/* A provider over a subset of a dataset. Owned by the dataset (a list freed with it), so that
 * ud_dataset_provider needs no destroy call. */
struct ud__data_view {
    struct ud__data_view *next;
    ud_dataset_t *ds;
    const uint32_t *idx;
    size_t n;
};

struct ud_dataset {
    size_t n;              /* samples */
    struct ud_shape shape; /* per sample (C, H, W) */
    size_t isize;          /* ud_shape_size(shape) */
    int u8;                /* pixels as bytes (scaled by 1/255 on get) or floats */
    uint8_t *px;           /* u8: (n, isize) */
    float *fx;             /* !u8: (n, isize) */
    int32_t *label;        /* (n), each in [0, nclasses) */
    int nclasses;
    char **classes; /* nclasses owned strings, no duplicates */
    size_t skipped; /* samples left out under skip_bad */
    /* Where samples came from: src_off[i] is sample i's offset into src_pool; src_off NULL
     * means src_pool (possibly NULL) for every sample. */
    char *src_pool;
    size_t *src_off;
    struct ud__data_view *views;
};

/* A growable byte string (for source pools). */
struct ud__sbuf {
    char *p;
    size_t len, cap;
};
/* Appends s and its NUL; *off receives the offset it starts at. Returns 0 or UD_ENOMEM. */
int ud__sbuf_add(struct ud__sbuf *b, const char *s, size_t *off);
/* Appends a printf-formatted string and its NUL. Returns 0 or UD_ENOMEM. */
int ud__sbuf_addf(struct ud__sbuf *b, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A fresh empty dataset shell (all fields zero). Returns NULL with e set on no memory. */
ud_dataset_t *ud__dataset_alloc(struct ud_err *e);
/* Checks that shape is a valid sample shape (each of C, H, W in 1..UD_MAX_DIM). */
int ud__shape_valid(struct ud_shape s);

/* Calls opts->warn (when set) with a formatted line. opts may be NULL. */
void ud__data_warn(const struct ud_load_opts *opts, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reads the whole regular file at path into a fresh NUL-terminated buffer (caller frees):
 * ud_file_read after checking that path is a regular file. Errors: UD_ENOTFOUND, UD_EIO (also
 * for anything but a regular file), UD_ELIMIT (over max bytes), UD_ENOMEM, each naming path. */
int ud__data_read_file(const char *path, size_t max, char **out, size_t *len, struct ud_err *e);

/* ud_dataset_load_csv from the file's bytes data[0..len) (copied; name stands for the path in
 * messages and sources). The file reader parses through the same code. */
ud_dataset_t *ud__dataset_csv_mem(const void *data, size_t len, const char *name,
                                  const struct ud_load_opts *opts, struct ud_err *e);
/* Decodes a PNG or JPEG file's bytes data[0..len) and converts it to one sample of shape
 * (1 or 3 channels, sides 1..UD_MAX_DIM) in out (ud_shape_size(shape) bytes, planar).
 * Returns 0 or a UD_E* code with the reason (not naming a file) in msg. The file loaders
 * decode through the same code. */
int ud__image_decode_mem(const void *data, size_t len, struct ud_shape shape, uint8_t *out,
                         char *msg, size_t msz);

/* malloc'ed "a/b" (NULL on no memory). */
char *ud__path_join(const char *a, const char *b);

/* Maps an errno value from opening path to a UD_E* code with a message naming path. */
int ud__data_errno(struct ud_err *e, int err, const char *what, const char *path);

#endif

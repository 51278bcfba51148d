/*  ud_data.h — labeled data: Create ML's data sources, the batch provider, validation splits.
 *
 *  Sources (ud_dataset_load picks by what the path is):
 *    - a directory of class folders, DIR/<label>/<name>.png|.jpg|.jpeg (libpng, libjpeg-turbo),
 *      grey or RGB, resized (bilinear) to the requested (C, H, W);
 *    - IDX files (MNIST, Fashion-MNIST), optionally gzip-compressed: given
 *      ".../train-images-idx3-ubyte[.gz]", the labels are ".../train-labels-idx1-ubyte[.gz]";
 *    - CSV with a header row and a label column (default: "label", else the last column); a
 *      directory that holds a file data.csv (a partition's client, docs/federated.md) is that CSV.
 *  Pixel data is kept as bytes (a quarter of the memory of floats) and scaled to [0, 1] as it
 *  is read; CSV features are kept as floats.
 *
 *  Bad input (unreadable or corrupt image, empty class folder, labels that do not match their
 *  images, a CSV row with the wrong number of fields) fails with an error naming the file and
 *  line; with skip_bad the sample is left out, counted, and reported through warn.
 *
 *  Details the loaders settle:
 *    - Images: classes are the folder names sorted with strcmp, files in a class likewise;
 *      a folder name carries "%2F" for '/', "%25" for '%' and a leading "%2E" for '.'
 *      (ud_class_dir_name), so that any class name survives a round trip through folders;
 *      hidden entries and other extensions (compared case-insensitively) are ignored. The
 *      decoder is chosen by the file's first bytes. RGB -> grey by luminance (0.299, 0.587,
 *      0.114), grey -> RGB by replication, alpha dropped, palettes and 16-bit samples brought
 *      to 8 bits; bilinear with half-pixel centres (PyTorch's align_corners=False). Under
 *      skip_bad a class folder that yields no image (empty, or every image bad) is left out
 *      with a warning and the remaining classes keep their order; max_samples never drops a
 *      class. Image files may be at most 16384 pixels a side (checked before decoding).
 *    - IDX: classes "0".."K-1" for K = largest label + 1, or the Fashion-MNIST names when the
 *      path contains "fashion" (any case) and K = 10. Data after what the header declares is
 *      an error.
 *    - CSV: RFC 4180 quoting, LF or CRLF, optional UTF-8 BOM, blank lines ignored; at most
 *      UD_MAX_DIM feature columns; numbers in the C locale whatever the program's locale;
 *      NaN and infinities are errors; classes are the distinct labels sorted with strcmp.
 *  Limits are checked before allocating: the IDX buffer grows with the data actually read, so a
 *  forged header cannot make it allocate more than twice what the file holds.
 *
 *  Thread-safety: loading, ud_dataset_set_*, ud_dataset_map_classes and ud_dataset_provider
 *  change the dataset and need it to themselves; the read-only calls (ud_dataset_get, a
 *  provider's count and get) may run on several threads at once.
 */
#ifndef UD_DATA_H
#define UD_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The batch provider: MLBatchProvider (count, features(at:)) ---- */

struct ud_batch_provider_ops {
    size_t (*count)(void *self);
    /* Writes sample i's input (input_size floats, scaled for the model) to x and its class index
     * to *label. Returns 0 or a UD_E* code with e set. */
    int (*get)(void *self, size_t i, float *x, int32_t *label, struct ud_err *e);
};
struct ud_batch_provider {
    const struct ud_batch_provider_ops *ops;
    void *self;
};
static inline size_t ud_batch_provider_count(const struct ud_batch_provider *p)
{
    return p->ops->count(p->self);
}
static inline int ud_batch_provider_get(const struct ud_batch_provider *p, size_t i, float *x,
                                        int32_t *label, struct ud_err *e)
{
    return p->ops->get(p->self, i, x, label, e);
}

/* ---- Datasets held in memory ---- */

typedef struct ud_dataset ud_dataset_t;

struct ud_load_opts {
    struct ud_shape shape;    /* images: target (C, H, W); zeros: take it from the first image */
    int skip_bad;             /* leave bad samples out (counted) instead of failing */
    const char *label_column; /* CSV: name of the label column (NULL: "label", else last) */
    size_t max_samples;       /* 0: no limit; else keep the first max_samples */
    /* Receives one line per skipped sample when skip_bad is set; may be NULL. */
    void (*warn)(void *user, const char *msg);
    void *warn_user;
};

/* Loads src by what it is (see above): a directory of class folders (or one holding data.csv),
 * a file ending in .csv (any case), else an IDX images file. opts may be NULL (defaults).
 * Returns a fresh dataset (caller destroys with ud_dataset_destroy), or NULL with e set:
 * UD_ENOTFOUND, UD_EIO, UD_EFORMAT, UD_ETRUNCATED, UD_ENONFINITE, UD_EUNSUPPORTED, UD_ESHAPE,
 * UD_EEMPTY, UD_ELIMIT, UD_EINVAL or UD_ENOMEM, the message naming the file (and line).
 * Reentrant: loads of different datasets may run on several threads at once. */
ud_dataset_t *ud_dataset_load(const char *src, const struct ud_load_opts *opts, struct ud_err *e);
/* Loads the class folders of dir (images, see above); returns and fails as ud_dataset_load.
 * With opts->shape zero the first good image fixes the shape; a shape that is not 1 or 3
 * channels with sides in 1..UD_MAX_DIM is UD_ESHAPE before anything is read. */
ud_dataset_t *ud_dataset_load_images(const char *dir, const struct ud_load_opts *opts,
                                     struct ud_err *e);
/* Loads an IDX images file and its labels file (labels_path NULL: derived from images_path by
 * the usual naming, UD_EINVAL when the name does not allow it); returns and fails as
 * ud_dataset_load. opts->shape and skip_bad are ignored: IDX samples are (1, rows, cols). */
ud_dataset_t *ud_dataset_load_idx(const char *images_path, const char *labels_path,
                                  const struct ud_load_opts *opts, struct ud_err *e);
/* Loads a CSV file (see above); returns and fails as ud_dataset_load. opts->shape is ignored:
 * samples are (features, 1, 1). A missing opts->label_column is UD_ENOTFOUND. */
ud_dataset_t *ud_dataset_load_csv(const char *path, const struct ud_load_opts *opts,
                                  struct ud_err *e);

/* An empty dataset of byte pixels (u8 != 0, scaled by 1/255) or float features, for
 * n samples of the given shape and class names (copied; NULL: "0".."nclasses-1"). Samples start
 * zeroed with label 0. Returns a fresh dataset (caller destroys), or NULL with e set: UD_ESHAPE
 * (a side outside 1..UD_MAX_DIM), UD_ERANGE (nclasses outside 1..UD_MAX_CLASSES), UD_EINVAL (a
 * NULL or duplicate class name), UD_ELIMIT (over the dataset limits) or UD_ENOMEM. */
ud_dataset_t *ud_dataset_new(size_t n, struct ud_shape shape, int u8, const char *const *classes,
                             int nclasses, struct ud_err *e);
/* Sets sample i of a byte-pixel dataset: input_size bytes copied from pixels, and its label.
 * Returns 0, UD_ERANGE (i or label out of range) or UD_EINVAL (a float dataset); on error the
 * sample is unchanged. */
int ud_dataset_set_u8(ud_dataset_t *ds, size_t i, const uint8_t *pixels, int32_t label);
/* Sets sample i of a float dataset: input_size floats copied from x, and its label. Returns 0,
 * UD_ERANGE (i or label out of range), UD_EINVAL (a byte-pixel dataset) or UD_ENONFINITE (x
 * holds a NaN or an infinity); on error the sample is unchanged. */
int ud_dataset_set_f32(ud_dataset_t *ds, size_t i, const float *x, int32_t label);
/* Frees *ds with everything it owns (its providers' state too, so no provider over it may be
 * used afterwards) and sets *ds to NULL. ds or *ds NULL: nothing happens. */
void ud_dataset_destroy(ud_dataset_t **ds);

/* Samples in ds. */
size_t ud_dataset_count(const ud_dataset_t *ds);
/* The shape (C, H, W) of every sample. */
struct ud_shape ud_dataset_shape(const ud_dataset_t *ds);
/* Values per sample: C * H * W of the shape (the floats ud_dataset_get writes). */
size_t ud_dataset_input_size(const ud_dataset_t *ds);
/* Classes (labels run over 0..num_classes-1). */
int ud_dataset_num_classes(const ud_dataset_t *ds);
/* Class c's name; borrowed (valid while ds and its classes are); NULL when there is no c. */
const char *ud_dataset_class_name(const ud_dataset_t *ds, int c);
/* Sample i's class index, or -1 if i >= count. */
int32_t ud_dataset_label(const ud_dataset_t *ds, size_t i);
/* All class names in class order (nclasses strings); borrowed, valid until the classes change
 * (ud_dataset_map_classes) or ds is destroyed. Ready for ud_model_set_labels. */
const char *const *ud_dataset_classes(const ud_dataset_t *ds);
/* Sample i's raw bytes (input_size of them, (C, H, W) order) of a byte-pixel dataset
 * (images, IDX); NULL for a float dataset (CSV) or i >= count. Borrowed. */
const uint8_t *ud_dataset_pixels(const ud_dataset_t *ds, size_t i);
/* Writes sample i as floats (scaled) to x (input_size floats). Returns 0 or UD_ERANGE
 * (i >= count, x untouched). */
int ud_dataset_get(const ud_dataset_t *ds, size_t i, float *x);
/* Samples left out under skip_bad while loading (0 for a dataset made with ud_dataset_new). */
size_t ud_dataset_skipped(const ud_dataset_t *ds);
/* The file (or file:line) sample i came from, when known; borrowed (valid while ds is); NULL
 * for i >= count or a dataset made with ud_dataset_new. */
const char *ud_dataset_source(const ud_dataset_t *ds, size_t i);

/* Renumbers the labels to follow `classes` (e.g. a model's labels), so that a test set with
 * the same class names in another order, or a subset of them, scores correctly. A class name
 * of ds that is not in classes is UD_ENOTFOUND naming it; duplicates in classes are UD_EINVAL.
 * On error ds is unchanged; on success its class list is a copy of classes. */
int ud_dataset_map_classes(ud_dataset_t *ds, const char *const *classes, int nclasses,
                           struct ud_err *e);

/* A batch provider over ds, or over the subset idx[0..n) of it (idx NULL: all of ds, n
 * ignored). The provider borrows ds and idx; they must outlive it. Its small state is owned by
 * ds (freed with it), so there is nothing to destroy. get() returns UD_ERANGE with a message
 * for a position >= n or an idx entry outside ds. Should that state not be allocatable, the
 * provider counts 0 and its get() returns UD_ENOMEM. */
void ud_dataset_provider(ud_dataset_t *ds, const uint32_t *idx, size_t n,
                         struct ud_batch_provider *out);

/* Decodes one image file (PNG or JPEG, by content) to the given (C, H, W): channels converted,
 * bilinear resize, values scaled to [0, 1] into x (C*H*W floats, (C, H, W) order). For
 * `updraft predict` and anything else that meets images one at a time. Returns 0, or with e
 * set (naming the file): UD_ESHAPE (not 1 or 3 channels, or a side outside 1..UD_MAX_DIM),
 * UD_ENOTFOUND, UD_EIO, UD_EFORMAT (not a PNG or JPEG, or corrupt), UD_EUNSUPPORTED (e.g. CMYK),
 * UD_ELIMIT (an image file or its pixels over the limits) or UD_ENOMEM. Thread-safe. */
int ud_image_load(const char *path, struct ud_shape shape, float *x, struct ud_err *e);

/* A class name as the name of its class folder, so that the image loader reads the same class
 * name back: '/' is written "%2F", '%' "%25", and a leading '.' (hidden entries are skipped)
 * "%2E"; the loader decodes exactly these. Returns a fresh string (caller frees), NULL on no
 * memory. An empty name gives "" (no folder can carry it). Thread-safe. */
char *ud_class_dir_name(const char *name);

/* ---- Validation splits: Create ML's MLSplitStrategy ---- */

enum ud_split_kind {
    UD_SPLIT_NONE = 0,
    UD_SPLIT_AUTOMATIC = 1, /* < 50 samples: none; 50-199: 10 %; >= 200: 5 % */
    UD_SPLIT_FIXED = 2,     /* ratio in [0, 1] */
};
struct ud_split {
    enum ud_split_kind kind;
    double ratio;  /* UD_SPLIT_FIXED */
    uint64_t seed; /* which samples go to validation */
};
/* Splits n samples; *train and *val are fresh arrays (caller frees) of indices, each ascending.
 * *val may be NULL with *nval 0; *train is never NULL on success. s NULL: automatic, seed 0.
 * The validation set is the first round(n * ratio) entries of the permutation drawn from
 * (seed, UD_RNG_SPLIT). Errors: UD_ERANGE (fixed ratio outside [0, 1] or NaN), UD_EINVAL,
 * UD_ELIMIT (n > UINT32_MAX), UD_ENOMEM; then *train and *val are NULL. Thread-safe. */
int ud_split_indices(size_t n, const struct ud_split *s, uint32_t **train, size_t *ntrain,
                     uint32_t **val, size_t *nval, struct ud_err *e);
/* The validation fraction the automatic strategy picks for n samples (0, 0.10 or 0.05).
 * Thread-safe. */
double ud_split_automatic_ratio(size_t n);

#ifdef __cplusplus
}
#endif
#endif

/*  ud_data.h — labeled data: Create ML's data sources, the batch provider, validation splits.
 *
 *  Sources (ud_dataset_load picks by what the path is):
 *    - a directory of class folders, DIR/<label>/<name>.png|.jpg|.jpeg (libpng, libjpeg-turbo),
 *      grey or RGB, resized (bilinear) to the requested (C, H, W);
 *    - IDX files (MNIST, Fashion-MNIST), optionally gzip-compressed: given
 *      ".../train-images-idx3-ubyte[.gz]", the labels are ".../train-labels-idx1-ubyte[.gz]";
 *    - CSV with a header row and a label column (default: "label", else the last column).
 *  Pixel data is kept as bytes (a quarter of the memory of floats) and scaled to [0, 1] as it
 *  is read; CSV features are kept as floats.
 *
 *  Bad input (unreadable or corrupt image, empty class folder, labels that do not match their
 *  images, a CSV row with the wrong number of fields) fails with an error naming the file and
 *  line; with skip_bad the sample is left out, counted, and reported through warn.
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
    struct ud_shape shape; /* images: target (C, H, W); zeros: take it from the first image */
    int skip_bad;          /* leave bad samples out (counted) instead of failing */
    const char *label_column; /* CSV: name of the label column (NULL: "label", else last) */
    size_t max_samples;    /* 0: no limit; else keep the first max_samples */
    /* Receives one line per skipped sample when skip_bad is set; may be NULL. */
    void (*warn)(void *user, const char *msg);
    void *warn_user;
};

/* Loads src (directory, IDX or CSV, see above). opts may be NULL. Returns NULL with e set. */
ud_dataset_t *ud_dataset_load(const char *src, const struct ud_load_opts *opts, struct ud_err *e);
ud_dataset_t *ud_dataset_load_images(const char *dir, const struct ud_load_opts *opts,
                                     struct ud_err *e);
/* labels_path NULL: derived from images_path by the usual naming. */
ud_dataset_t *ud_dataset_load_idx(const char *images_path, const char *labels_path,
                                  const struct ud_load_opts *opts, struct ud_err *e);
ud_dataset_t *ud_dataset_load_csv(const char *path, const struct ud_load_opts *opts,
                                  struct ud_err *e);

/* An empty dataset of byte pixels (u8 != 0, scaled by 1/255) or float features, for
 * n samples of the given shape and class names (copied). Fill with ud_dataset_set_*. */
ud_dataset_t *ud_dataset_new(size_t n, struct ud_shape shape, int u8, const char *const *classes,
                             int nclasses, struct ud_err *e);
int ud_dataset_set_u8(ud_dataset_t *ds, size_t i, const uint8_t *pixels, int32_t label);
int ud_dataset_set_f32(ud_dataset_t *ds, size_t i, const float *x, int32_t label);
void ud_dataset_destroy(ud_dataset_t **ds);

size_t ud_dataset_count(const ud_dataset_t *ds);
struct ud_shape ud_dataset_shape(const ud_dataset_t *ds);
size_t ud_dataset_input_size(const ud_dataset_t *ds);
int ud_dataset_num_classes(const ud_dataset_t *ds);
const char *ud_dataset_class_name(const ud_dataset_t *ds, int c); /* borrowed */
int32_t ud_dataset_label(const ud_dataset_t *ds, size_t i);
/* Writes sample i as floats (scaled) to x. */
int ud_dataset_get(const ud_dataset_t *ds, size_t i, float *x);
/* Samples left out under skip_bad while loading. */
size_t ud_dataset_skipped(const ud_dataset_t *ds);
/* The file (or file:line) sample i came from, when known; borrowed, may be NULL. */
const char *ud_dataset_source(const ud_dataset_t *ds, size_t i);

/* Renumbers the labels to follow `classes` (e.g. a model's labels), so that a test set with
 * the same class names in another order, or a subset of them, scores correctly. A class name
 * of ds that is not in classes is UD_ENOTFOUND naming it. */
int ud_dataset_map_classes(ud_dataset_t *ds, const char *const *classes, int nclasses,
                           struct ud_err *e);

/* A batch provider over ds, or over the subset idx[0..n) of it (idx NULL: all of ds).
 * The provider borrows ds and idx; they must outlive it. */
void ud_dataset_provider(ud_dataset_t *ds, const uint32_t *idx, size_t n,
                         struct ud_batch_provider *out);

/* Decodes one image file (PNG or JPEG, by content) to the given (C, H, W): channels converted,
 * bilinear resize, values scaled to [0, 1] into x (C*H*W floats, (C, H, W) order). For
 * `updraft predict` and anything else that meets images one at a time. Errors name the file. */
int ud_image_load(const char *path, struct ud_shape shape, float *x, struct ud_err *e);

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
 * *val may be NULL with *nval 0. */
int ud_split_indices(size_t n, const struct ud_split *s, uint32_t **train, size_t *ntrain,
                     uint32_t **val, size_t *nval, struct ud_err *e);
/* The validation fraction the automatic strategy picks for n samples. */
double ud_split_automatic_ratio(size_t n);

#ifdef __cplusplus
}
#endif
#endif

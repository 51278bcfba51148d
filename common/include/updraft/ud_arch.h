/*  ud_arch.h — architectures: the layer kinds, a network's layer list and input shape, the
 *  presets ("mlp", "cnn"), the text spec format (docs/model-format.md, "Architecture spec
 *  files"), shape inference and the checks a model's architecture must pass. A model
 *  (ud_model.h) is built from one with ud_model_new.
 *
 *  Plain data and pure functions: no state, any thread.
 */
#ifndef UD_ARCH_H
#define UD_ARCH_H

#include <stddef.h>

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_MAX_LAYERS  64
#define UD_MAX_CLASSES 4096
#define UD_MAX_DIM     4096       /* any one of C, H, W, units */
#define UD_MAX_PARAMS  (1u << 28) /* 268M parameters, 1 GiB of f32 */

enum ud_layer_kind {
    UD_LAYER_DENSE = 1,
    UD_LAYER_CONV2D = 2,
    UD_LAYER_MAXPOOL2D = 3,
    UD_LAYER_RELU = 4,
    UD_LAYER_FLATTEN = 5,
    UD_LAYER_DROPOUT = 6,
    UD_LAYER_SOFTMAX = 7,
};
const char *ud_layer_kind_name(enum ud_layer_kind k); /* "dense", "conv2d", ... */
int ud_layer_kind_parse(const char *s, enum ud_layer_kind *out);

struct ud_layer_spec {
    enum ud_layer_kind kind;
    int units;                        /* dense: output units */
    int filters, kernel, stride, pad; /* conv2d (stride >= 1) */
    int pool;                         /* maxpool2d: window and stride */
    float rate;                       /* dropout: probability of zeroing, [0, 1) */
    int updatable;                    /* dense, conv2d: Core ML's isUpdatable (default 1) */
};

struct ud_shape {
    int c, h, w; /* per sample; a flat vector of n is (n, 1, 1) */
};
static inline size_t ud_shape_size(struct ud_shape s)
{
    return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

struct ud_arch {
    struct ud_shape input;
    int nlayers;
    struct ud_layer_spec layer[UD_MAX_LAYERS];
};

/* Fills a with a preset: "mlp" (784-512-256-N, ReLU) or "cnn" (conv3x3 32, pool, conv3x3 64,
 * pool, dense 128, dense N), both for (1, 28, 28) inputs unless input is given, with nclasses
 * outputs and a final softmax. Returns 0 or UD_ENOTFOUND for an unknown name. */
int ud_arch_preset(const char *name, struct ud_shape input, int nclasses, struct ud_arch *a,
                   struct ud_err *e);
/* The first half of `--arch NAME|SPECFILE` (updraft-worker, `updraft init`): a preset name sets
 * *preset and leaves a alone; anything else is read as a spec file into a (whose input shape
 * then sizes the images to load). Returns 0, or UD_ENOTFOUND ("neither a preset nor an existing
 * spec file") or the spec's parse error. */
int ud_arch_from_option(const char *name, struct ud_arch *a, int *preset, struct ud_err *e);
/* The second half, once the data is loaded: a preset is built for the data's sample shape and
 * nclasses; a spec file's network is checked against nclasses and the sample size. Errors
 * start with name and say what the data (named data in messages) holds. */
int ud_arch_fit_data(const char *name, int preset, const char *data, struct ud_shape shape,
                     int nclasses, struct ud_arch *a, struct ud_err *e);
/* Parses the text spec format (docs/model-format.md, "Architecture spec files"). */
int ud_arch_parse(const char *text, struct ud_arch *a, struct ud_err *e);
/* Reads and parses a spec file; errors name the file and line. */
int ud_arch_load(const char *path, struct ud_arch *a, struct ud_err *e);
/* Checks a: shapes chain, sizes within limits, softmax last and only last, a dense layer of
 * nclasses before it (nclasses <= 0: any). Returns 0 or UD_ESHAPE/UD_EINVAL naming the layer. */
int ud_arch_check(const struct ud_arch *a, int nclasses, struct ud_err *e);
/* Writes a into buf in the spec text format (round-trips through ud_arch_parse). */
int ud_arch_format(const struct ud_arch *a, char *buf, size_t len);
/* The output shape of layer i (i = -1: the input). */
struct ud_shape ud_arch_shape(const struct ud_arch *a, int i);

#ifdef __cplusplus
}
#endif
#endif

/*  ud_model.h — the network: architecture, one parameter buffer, forward and backward.
 *
 *  A model is a sequential network ending in softmax (the loss is softmax cross-entropy).
 *  All parameters live in one contiguous float buffer and all gradients in another of the same
 *  size, in layer order, each layer's weights then its bias; allreduce and model deltas are one
 *  buffer each. Layouts are PyTorch's: activations (B, C, H, W) row-major, dense weights
 *  (out, in), conv weights (F, C, K, K), flatten in (C, H, W) order.
 *
 *  Besides the network a model carries what its file carries: class labels, metadata
 *  (MLModelMetadata), the input description, update defaults with allowed ranges, and the
 *  metrics of the training that produced it.
 *
 *  Thread-safety: a model is used by one thread at a time.
 */
#ifndef UD_MODEL_H
#define UD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_error.h"
#include "updraft/ud_update_params.h"
#include "updraft/ud_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ud_kv {
    char *key, *value;
};
/* MLModelMetadata. Strings are owned by the model; NULL means unset. */
struct ud_metadata {
    char *author, *short_description, *license, *version;
    size_t nadditional;
    struct ud_kv *additional;
};

enum ud_input_kind { UD_INPUT_IMAGE = 1, UD_INPUT_TABULAR = 2 };
/* How raw input becomes the model's input: x = raw * scale + offset. */
struct ud_input_desc {
    enum ud_input_kind kind;
    float scale, offset;
};

typedef struct ud_model ud_model_t;

/* Compute backends: the fast one (OpenBLAS, blocked kernels) and the naive reference the fast
 * one is tested against. Both give the same results up to float summation order. */
enum ud_backend { UD_BACKEND_FAST = 0, UD_BACKEND_REFERENCE = 1 };

/* Creates a model for a (checked with ud_arch_check), parameters zeroed, labels "0".."N-1",
 * default metadata and update defaults. Returns NULL with e set on a bad architecture. */
ud_model_t *ud_model_new(const struct ud_arch *a, struct ud_err *e);
void ud_model_destroy(ud_model_t **m);
/* A deep copy (parameters, labels, metadata, defaults, metrics; not gradients). */
ud_model_t *ud_model_clone(const ud_model_t *m, struct ud_err *e);

/* Initialises parameters like PyTorch (Kaiming-uniform weights, uniform bias in ±1/sqrt(fan_in))
 * from the seed's UD_RNG_INIT stream, and seeds the dropout stream. */
void ud_model_init_params(ud_model_t *m, uint64_t seed);

const struct ud_arch *ud_model_arch(const ud_model_t *m);
int ud_model_num_classes(const ud_model_t *m);
size_t ud_model_input_size(const ud_model_t *m); /* floats per sample */
size_t ud_model_param_count(const ud_model_t *m);
float *ud_model_params(ud_model_t *m); /* borrowed: the one contiguous buffer */
const float *ud_model_params_const(const ud_model_t *m);
float *ud_model_grads(ud_model_t *m); /* borrowed: same size as params */

/* Layer i's weights and bias as spans of the parameter buffer (count 0 for layers without). */
void ud_model_layer_params(const ud_model_t *m, int i, struct ud_span *w, struct ud_span *b);
bool ud_model_layer_updatable(const ud_model_t *m, int i);
int ud_model_set_layer_updatable(ud_model_t *m, int i, bool updatable);
/* The spans of all updatable parameters, in order; returns their number (<= 2 * nlayers).
 * The array is borrowed and stays valid until the updatable flags change. */
size_t ud_model_updatable_spans(const ud_model_t *m, const struct ud_span **spans);

void ud_model_set_backend(ud_model_t *m, enum ud_backend b);
enum ud_backend ud_model_backend(const ud_model_t *m);
/* The dropout stream (saved by checkpoints). */
struct ud_rng *ud_model_rng(ud_model_t *m);

/* Forward pass over B samples x (B, input_size). training enables dropout. x is never written,
 * but it is borrowed: backward reads it again, so it must stay unchanged until the following
 * backward (or the next forward). Returns 0, or UD_ENOMEM when the workspace for B cannot be
 * had. The outputs are the class probabilities, borrowed from the model until the next
 * forward: */
int ud_model_forward(ud_model_t *m, const float *x, int B, bool training);
const float *ud_model_output(const ud_model_t *m); /* (B, nclasses) softmax probabilities */

/* Mean softmax cross-entropy of the last forward against labels (B), and the number of correct
 * arg-max predictions in *correct (may be NULL). A label outside [0, nclasses) is UD_ERANGE. */
int ud_model_loss(const ud_model_t *m, const int32_t *labels, int B, double *loss, int *correct,
                  struct ud_err *e);

/* Called during backward when layer i's gradients are final (layers run from last to first);
 * span is that layer's part of the gradient buffer (weights and bias adjoin). The data-parallel
 * worker starts an allreduce of it here, overlapping communication with the rest of backward. */
typedef void (*ud_grad_ready_fn)(void *user, int layer, struct ud_span span);

/* Backward pass for the last forward (which must have had the same B) of softmax cross-entropy
 * against labels, the loss scaled by `scale` (1/B gives the batch mean; a data-parallel rank
 * holding b of a global batch G passes 1/G so that summing across ranks gives the mean).
 * Writes (overwrites) gradients of updatable layers only, and stops at the lowest layer below
 * which nothing is updatable. ready may be NULL. Returns 0, or UD_ESTATE without a matching
 * forward, or UD_ERANGE for a label outside [0, nclasses). */
int ud_model_backward(ud_model_t *m, const int32_t *labels, int B, float scale,
                      ud_grad_ready_fn ready, void *user);

/* Class labels: nclasses strings, owned by the model. */
const char *ud_model_label(const ud_model_t *m, int i);
/* All labels, in class order; borrowed, valid until the labels change. */
const char *const *ud_model_labels(const ud_model_t *m);
/* Replaces the labels (copied); n must equal the number of classes. */
int ud_model_set_labels(ud_model_t *m, const char *const *labels, int n, struct ud_err *e);
/* Index of a label, or -1. */
int ud_model_label_index(const ud_model_t *m, const char *label);

struct ud_metadata *ud_model_metadata(ud_model_t *m);
const struct ud_metadata *ud_model_metadata_const(const ud_model_t *m);
/* Replaces *field (one of metadata's strings) by a copy of value (NULL clears). */
int ud_metadata_set(char **field, const char *value);
/* Sets (adds or replaces) a free key/value. */
int ud_metadata_set_additional(struct ud_metadata *md, const char *key, const char *value);

struct ud_input_desc *ud_model_input_desc(ud_model_t *m);
const struct ud_input_desc *ud_model_input_desc_const(const ud_model_t *m);
struct ud_update_defaults *ud_model_update_defaults(ud_model_t *m);
const struct ud_update_defaults *ud_model_update_defaults_const(const ud_model_t *m);

/* Training metrics carried in the model file (e.g. "train_loss", "test_accuracy"). */
int ud_model_set_metric(ud_model_t *m, const char *key, double value);
size_t ud_model_metric_count(const ud_model_t *m);
/* The i-th metric; key borrowed. Returns 0 or UD_ERANGE. */
int ud_model_metric_at(const ud_model_t *m, size_t i, const char **key, double *value);
/* Looks a metric up; returns 0 or UD_ENOTFOUND. */
int ud_model_metric_get(const ud_model_t *m, const char *key, double *value);

/* SHA-256 of the parameter blob as f32 little-endian, as 64 lowercase hex digits + NUL. */
void ud_model_params_sha256(const ud_model_t *m, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif

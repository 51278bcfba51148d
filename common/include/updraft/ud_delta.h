/*  ud_delta.h — model deltas for federated updates, and the update message that carries one.
 *
 *  A delta is what an on-device update changed: updated - base over the model's updatable
 *  parameters only (ud_model_updatable_spans), the spans concatenated in span order (layer
 *  order, each layer's weights then bias). Parameters of layers not marked updatable are not in
 *  it, so a delta is as small as the part of the model a device may change. The device agent
 *  computes and checks it; the coordinator checks it again, scales and applies it.
 *
 *  The update message (docs/agent.md, "The update message") is one msgpack map with string
 *  keys: "v" (1), "round", "base_version", "key", "samples", "loss", "accuracy" and "delta"
 *  (bin of n float32 little-endian). Decoding trusts nothing: every declared length is bounded
 *  by the bytes present and the delta by the caller's max_floats before anything is allocated.
 *
 *  Thread-safety: the functions keep no state; a model is used by one thread at a time.
 */
#ifndef UD_DELTA_H
#define UD_DELTA_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of floats in a delta of m: the summed lengths of its updatable spans. */
size_t ud_delta_size(const ud_model_t *m);

/* out[0..ud_delta_size(base)) = updated - base over the updatable spans, in span order.
 * Returns 0, or UD_ESHAPE when the two models differ in architecture (input, layers, sizes) or
 * in which layers are updatable, saying where. Neither model is changed. */
int ud_delta_compute(const ud_model_t *base, const ud_model_t *updated, float *out,
                     struct ud_err *e);

/* params += scale * delta over m's updatable spans, in span order. n must be ud_delta_size(m)
 * (else UD_ESHAPE, nothing changed); scale must be finite (else UD_EINVAL). */
int ud_delta_apply(ud_model_t *m, const float *delta, size_t n, float scale, struct ud_err *e);

/* Checks d[0..n): UD_ENONFINITE naming the first NaN/infinite index, else its L2 norm
 * (computed in double) into *norm (may be NULL) and UD_ERANGE when it exceeds max_norm
 * (max_norm <= 0: no bound). Returns 0 when the delta is acceptable. */
int ud_delta_check(const float *d, size_t n, double max_norm, double *norm, struct ud_err *e);

/* ---- The update message ---- */

#define UD_UPDATE_MSG_VERSION 1
#define UD_UPDATE_KEY_MAX     128 /* bytes of an idempotency key */

/* One device's contribution to a round. Plain data; `delta` is borrowed (encode) or points
 * at the decoder's fresh copy (decode). */
struct ud_update_msg {
    int64_t round;                   /* >= 0 */
    int64_t base_version;            /* the model version the delta is against, >= 0 */
    char key[UD_UPDATE_KEY_MAX + 1]; /* idempotency key: 1..128 printable ASCII (0x20..0x7e) */
    int64_t samples;                 /* training samples behind the update, > 0 */
    double loss, accuracy;           /* the final epoch's; finite */
    const float *delta;              /* n floats */
    size_t n;
};

/* Encodes msg into a fresh buffer (*buf, caller frees with free()), exactly sized. Checks what
 * the decoder checks (key, samples, finite loss/accuracy, non-negative round and version) and
 * refuses with UD_EINVAL naming the field. UD_ENOMEM when out of memory. */
int ud_update_msg_encode(const struct ud_update_msg *msg, char **buf, size_t *len,
                         struct ud_err *e);

/* Decodes buf[0..len) into *out. The delta is always copied (and converted from little-endian)
 * into a fresh, aligned array handed to the caller in *delta (free with free()); out->delta
 * points at it and out->n is its length. delta NULL: every field is checked, out->n is set, but
 * nothing is copied (out->delta stays NULL), e.g. to look at round and key before allocating. A bin
 * of more than max_floats floats is UD_ELIMIT, checked before allocating; every declared length and
 * count is bounded by the bytes present before msgpack-c unpacks. Unknown keys are ignored. Errors,
 * all naming the key: UD_EVERSION ("v" not 1), UD_EFORMAT (not a map, missing key, wrong type,
 * repeated key, bad key string, samples <= 0, a bin whose length is not a multiple of 4, non-finite
 * loss or accuracy, truncated or trailing bytes), UD_ELIMIT, UD_ENOMEM. On error *out is zeroed and
 * *delta (if given) is NULL. Never reads outside buf[0..len). */
int ud_update_msg_decode(const void *buf, size_t len, size_t max_floats, struct ud_update_msg *out,
                         float **delta, struct ud_err *e);

/* True when key is 1..UD_UPDATE_KEY_MAX printable ASCII characters (0x20..0x7e). */
int ud_update_key_valid(const char *key, size_t len);

#ifdef __cplusplus
}
#endif
#endif

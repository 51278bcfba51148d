/*  ud_delta.h — model deltas for federated updates (the message that carries one:
 *  ud_update_msg.h).
 *
 *  A delta is what an on-device update changed: updated - base over the model's updatable
 *  parameters only (ud_model_updatable_spans), the spans concatenated in span order (layer
 *  order, each layer's weights then bias). Parameters of layers not marked updatable are not in
 *  it, so a delta is as small as the part of the model a device may change. The device agent
 *  computes and checks it; the coordinator checks it again, scales and applies it.
 *
 *  Thread-safety: the functions keep no state; a model is used by one thread at a time.
 */
#ifndef UD_DELTA_H
#define UD_DELTA_H

#include <stddef.h>

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

#ifdef __cplusplus
}
#endif
#endif

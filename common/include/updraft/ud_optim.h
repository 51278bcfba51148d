/*  ud_optim.h — the optimizers (SGD, Adam) and the learning-rate schedules: the maths of one
 *  update step. The hyper-parameters they take (struct ud_update_params) and a model's allowed
 *  ranges for them are in updraft/ud_update_params.h.
 *
 *  The optimizer works on the model's one contiguous parameter buffer and one gradient buffer,
 *  touching only the ranges of updatable layers. Its state (momentum or Adam moments, step count)
 *  is one buffer too, so checkpoints save it whole.
 */
#ifndef UD_OPTIM_H
#define UD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ud_optimizer { UD_OPT_SGD = 1, UD_OPT_ADAM = 2 };
enum ud_lr_schedule { UD_LR_CONSTANT = 0, UD_LR_STEP = 1, UD_LR_COSINE = 2 };

const char *ud_optimizer_name(enum ud_optimizer o);            /* "sgd", "adam" */
int ud_optimizer_parse(const char *s, enum ud_optimizer *out); /* 0 or UD_EINVAL */
const char *ud_lr_schedule_name(enum ud_lr_schedule s);        /* "constant", "step", "cosine" */
int ud_lr_schedule_parse(const char *s, enum ud_lr_schedule *out);

/* The effective hyper-parameters of one run: updraft/ud_update_params.h. */
struct ud_update_params;

/* The learning rate for a step under p's schedule. epoch counts from 0; step is the global
 * step; total_steps is epochs * steps_per_epoch (cosine anneals to 0 over it). */
double ud_lr_at(const struct ud_update_params *p, double base_lr, int64_t epoch, int64_t step,
                int64_t total_steps);

typedef struct ud_optim ud_optim_t;

/* A parameter range the optimizer may touch (an updatable layer's weights or bias). */
struct ud_span {
    size_t offset, count;
};

/* Creates an optimizer for nparams parameters. Returns NULL on bad params (e says why). */
ud_optim_t *ud_optim_new(const struct ud_update_params *p, size_t nparams, struct ud_err *e);
void ud_optim_destroy(ud_optim_t **o);

/* One step: params[s] -= update(grads[s]) for every span, with learning rate lr.
 * Hyper-parameters other than lr come from the params given to ud_optim_new / set_params. */
void ud_optim_step(ud_optim_t *o, float *params, const float *grads, const struct ud_span *spans,
                   size_t nspans, double lr);
/* The same step, one span at a time: call ud_optim_step_span for each span (in any order, each
 * once) and then ud_optim_end_step. The standalone trainer applies each layer's update this way
 * as soon as backward has finished that layer's gradients, while they are still in cache. The
 * result is bitwise that of ud_optim_step over the same spans. ud_optim_step_span returns 0,
 * or UD_ENONFINITE when a gradient in the span was NaN or infinite, found in the same pass as
 * the update (the span has then taken a poisoned step: the caller fails the run). */
int ud_optim_step_span(ud_optim_t *o, float *params, const float *grads, struct ud_span span,
                       double lr);
void ud_optim_end_step(ud_optim_t *o);
/* Replaces the hyper-parameters (momentum, betas, ...) without touching the state. */
int ud_optim_set_params(ud_optim_t *o, const struct ud_update_params *p, struct ud_err *e);

/* The optimizer's whole state, for checkpoints: a float buffer and the step count.
 * state_floats is 0 (plain SGD), nparams (momentum) or 2 * nparams (Adam). */
float *ud_optim_state(ud_optim_t *o, size_t *state_floats);
int64_t ud_optim_steps(const ud_optim_t *o);
void ud_optim_set_steps(ud_optim_t *o, int64_t steps);

/* Reference implementation of the same step, element by element in double precision where it
 * matters; tests compare the fast path against it. */
void ud_optim_step_reference(ud_optim_t *o, float *params, const float *grads,
                             const struct ud_span *spans, size_t nspans, double lr);

#ifdef __cplusplus
}
#endif
#endif

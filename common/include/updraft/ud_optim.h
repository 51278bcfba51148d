/*  ud_optim.h — update hyper-parameters (Core ML's MLParameterKey set) and the optimizers.
 *
 *  struct ud_update_params is the effective set a run uses; struct ud_update_defaults is what a
 *  model file carries: a default per key plus its allowed range (Core ML's MLParameterDescription
 *  with an MLNumericConstraint). Overrides are validated against the ranges before a run starts.
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

/* The effective hyper-parameters of one run. Names follow MLParameterKey. */
struct ud_update_params {
    enum ud_optimizer optimizer;
    double learning_rate;     /* learningRate: adjustable in progress */
    double momentum;          /* SGD momentum (PyTorch convention: v = m v + g; p -= lr v) */
    int nesterov;             /* SGD Nesterov momentum */
    double weight_decay;      /* L2, added to the gradient (SGD and Adam) */
    double beta1, beta2, eps; /* Adam */
    int64_t mini_batch_size;  /* miniBatchSize: the global batch */
    int64_t epochs;
    int shuffle;   /* reshuffle every epoch */
    uint64_t seed; /* init, shuffle and dropout streams derive from it */
    enum ud_lr_schedule schedule;
    int64_t step_epochs; /* UD_LR_STEP: multiply by gamma every step_epochs epochs */
    double gamma;
};

/* PyTorch-like defaults: SGD, lr 0.01, momentum 0, batch 32, 1 epoch, shuffle, seed 0. */
void ud_update_params_default(struct ud_update_params *p);
/* updraft-worker's defaults, which it also writes into the models it makes (and `updraft init`
 * into an untrained one): the above with 10 epochs, batch 128, lr 0.05, momentum 0.9. */
void ud_update_params_trainer_default(struct ud_update_params *p);

struct ud_param_double {
    double value, min, max; /* min <= value <= max */
};
struct ud_param_int {
    int64_t value, min, max;
};

/* What a model file says about updating it: defaults and allowed ranges. */
struct ud_update_defaults {
    enum ud_optimizer optimizer;
    struct ud_param_double learning_rate, momentum, weight_decay, beta1, beta2, eps;
    struct ud_param_int mini_batch_size, epochs, seed;
    int shuffle, nesterov;
};

/* Fills d from p with wide but sane ranges (lr [0,1], momentum [0,1), batch [1,65536], ...). */
void ud_update_defaults_from_params(struct ud_update_defaults *d, const struct ud_update_params *p);
/* Writes the defaults' values into p (schedule left constant). */
void ud_update_defaults_to_params(const struct ud_update_defaults *d, struct ud_update_params *p);
/* Checks that every value of p lies within d's ranges and that d itself is consistent.
 * Returns 0 or UD_ERANGE naming the key, its value and the allowed range. */
int ud_update_params_check(const struct ud_update_params *p, const struct ud_update_defaults *d,
                           struct ud_err *e);
/* Checks p alone (positive batch and epochs, finite lr >= 0, betas in [0,1), ...). */
int ud_update_params_validate(const struct ud_update_params *p, struct ud_err *e);

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

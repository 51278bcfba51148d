/*  ud_update_params.h — the hyper-parameters the update engine trains with (Core ML's
 *  MLParameterKey set), and what a model says about them.
 *
 *  struct ud_update_params is the effective set a run uses; struct ud_update_defaults is what a
 *  model file carries: a default per key plus its allowed range (Core ML's MLParameterDescription
 *  with an MLNumericConstraint). Two checks, for two questions: can a run use these values at
 *  all (ud_update_params_check_runnable), and does the model allow them
 *  (ud_update_params_check_model_ranges). Overrides pass both before a run starts.
 *
 *  Plain values and pure functions: reentrant, no state.
 */
#ifndef UD_UPDATE_PARAMS_H
#define UD_UPDATE_PARAMS_H

#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_optim.h"

#ifdef __cplusplus
extern "C" {
#endif

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
/* Checks p against a model's allowed ranges: that every value of p lies within d's ranges and
 * that d itself is consistent (each default inside its own range). Returns 0 or UD_ERANGE
 * naming the key, its value and the allowed range. Says nothing about whether a run can use p:
 * see ud_update_params_check_runnable. */
int ud_update_params_check_model_ranges(const struct ud_update_params *p,
                                        const struct ud_update_defaults *d, struct ud_err *e);
/* Checks p alone, whatever the model: that the engine and the optimizers can run with it
 * (a known optimizer and schedule, positive batch and epochs, finite lr >= 0, betas in [0,1),
 * ...). Returns 0, UD_EINVAL or UD_ERANGE naming the key. */
int ud_update_params_check_runnable(const struct ud_update_params *p, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif

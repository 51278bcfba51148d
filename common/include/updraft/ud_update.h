/*  ud_update.h — the update engine, modelled on Core ML's MLUpdateTask.
 *
 *  A task is built from (model, batch provider, parameters, progress handlers). It runs epochs
 *  of mini-batches, calls the progress handler on the events the caller subscribed to (same bit
 *  values as MLUpdateProgressEvent), hands it a context (task, model, event, metrics,
 *  parameters), accepts new parameters from inside a handler (resume_with_parameters: the
 *  learning rate, applied from the next mini-batch), can be cancelled from any thread, and ends
 *  by calling the completion handler with a completion context.
 *
 *  Every trainer drives this one engine: the standalone trainer, the MPI worker (through the
 *  hooks: gradient-ready for overlapped allreduce, grad_sync before each step, metric_sync for
 *  global metrics) and the device agent.
 *
 *  Data order: each epoch draws a permutation of the provider's samples from (seed, epoch)
 *  (identity when shuffle is off). Step s of an epoch covers permutation entries
 *  [s*G, min((s+1)*G, n)) for the global batch G, the last batch possibly smaller; rank r of W
 *  takes the r-th of W near-equal contiguous slices of that batch. Every rank runs the same
 *  number of steps, each sample is used once per epoch, and the result does not depend on W
 *  beyond float summation order.
 *
 *  States (MLTaskState values): SUSPENDED (created, or inside a handler), RUNNING, CANCELLING,
 *  COMPLETED, FAILED. A cancelled task ends FAILED with error UD_ECANCELLED, and its completion
 *  handler is called.
 */
#ifndef UD_UPDATE_H
#define UD_UPDATE_H

#include <stdint.h>

#include "updraft/ud_data.h"
#include "updraft/ud_error.h"
#include "updraft/ud_model.h"
#include "updraft/ud_optim.h"
#include "updraft/ud_update_params.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ud_task_state {
    UD_TASK_SUSPENDED = 1,
    UD_TASK_RUNNING = 2,
    UD_TASK_CANCELLING = 3,
    UD_TASK_COMPLETED = 4,
    UD_TASK_FAILED = 5,
};
const char *ud_task_state_name(enum ud_task_state s);

enum ud_update_event {
    UD_EVENT_TRAINING_BEGIN = 1 << 0,
    UD_EVENT_EPOCH_END = 1 << 1,
    UD_EVENT_MINIBATCH_END = 1 << 2,
};

typedef struct ud_update_task ud_update_task_t;

/* MLMetricKey's three (loss, epochIndex, miniBatchIndex) plus what a trainer wants to show.
 * Loss and accuracy are global (summed across ranks through metric_sync). */
struct ud_update_metrics {
    double loss;             /* mini-batch end: this batch's; epoch end: the epoch's mean */
    int64_t epoch_index;     /* from 0 */
    int64_t minibatch_index; /* within the epoch, from 0 */
    double accuracy;         /* training accuracy over the epoch so far */
    int64_t samples;         /* samples seen this epoch so far (all ranks) */
    int64_t step;            /* global step count since the start of training */
    int64_t steps_per_epoch;
    double epoch_seconds;          /* time in this epoch so far */
    double seconds;                /* since training began */
    double samples_per_sec;        /* this epoch so far */
    double learning_rate;          /* the rate used for the last step */
    double val_loss, val_accuracy; /* epoch end with a validation provider; else NaN */
};

struct ud_update_context {
    ud_update_task_t *task;
    ud_model_t *model; /* the model being updated (usable for evaluation) */
    unsigned event;    /* one ud_update_event; 0 in the completion context */
    struct ud_update_metrics metrics;
    const struct ud_update_params *parameters; /* snapshot of the effective parameters */
};

typedef void (*ud_update_handler_fn)(struct ud_update_context *ctx, void *user);
typedef int (*ud_span_apply_fn)(void *ctx, struct ud_span span);

/* MLUpdateProgressHandlers: an event mask, an optional progress handler, a required completion
 * handler. Handlers run on the task's thread; the task is SUSPENDED while they run. */
struct ud_update_handlers {
    unsigned events;
    ud_update_handler_fn progress;
    ud_update_handler_fn completion;
    void *user;
};

/* For distributed drivers. All optional; zeroed means standalone (rank 0 of 1). */
struct ud_update_hooks {
    int rank, world;
    /* Called during backward as each layer's gradients become final. */
    ud_grad_ready_fn grad_ready;
    /* Called after backward, before the optimizer step: must leave in grads the sum over all
     * ranks (each rank's gradient is already scaled by 1/global batch). It may call
     * apply(apply_ctx, span) for each of the model's updatable spans (ud_model_updatable_spans)
     * (or parts of them) as soon as they hold the global sum: the engine then takes the optimizer
     * step for that span at once, overlapping it with the communication of the others. Either the
     * spans it applies cover every updatable parameter exactly once (the layer spans that
     * grad_ready gave do), or it never calls apply (the engine steps after it returns).
     * apply returns UD_ENONFINITE for a span with NaN/infinite gradients (the hook should keep
     * going: every rank sees the same sums, so all fail at the same step). */
    int (*grad_sync)(void *user, float *grads, size_t n, ud_span_apply_fn apply, void *apply_ctx,
                     struct ud_err *e);
    /* Sums n doubles across ranks in place (loss sums, correct counts). */
    int (*metric_sync)(void *user, double *v, size_t n, struct ud_err *e);
    /* Called after every step with the global step count; may write checkpoints. A non-zero
     * return stops training with that error. */
    int (*after_step)(void *user, ud_update_task_t *t, struct ud_err *e);
    void *user;
    /* Optional: the order in which epoch `epoch` visits the provider's positions, perm[0..n)
     * (n = the provider's count); NULL: ud_update_epoch_order(seed, epoch, shuffle). The
     * coordinator's shard plans use it (ud_plan_epoch_order). */
    void (*epoch_order)(void *user, int64_t epoch, uint32_t *perm, size_t n);
};

struct ud_update_config {
    struct ud_update_params params; /* effective parameters (see ud_update_params_check_runnable) */
    const struct ud_batch_provider *validation; /* optional, scored at every epoch end */
    struct ud_update_hooks hooks;
    /* Where to start: a resumed run continues at (start_epoch, start_minibatch), with the
     * epoch's sums so far (loss sum, correct count, samples; from ud_update_task_epoch_sums
     * at the checkpoint) so that its epoch-end metrics match an uninterrupted run. */
    int64_t start_epoch, start_minibatch;
    double start_sums[3];
};

/* Creates a task on model (borrowed: it must outlive the task) and data (borrowed). Validates
 * the parameters and that the provider is non-empty and its samples fit the model.
 * Returns NULL with e set. handlers->completion is required. */
ud_update_task_t *ud_update_task_new(ud_model_t *model, const struct ud_batch_provider *data,
                                     const struct ud_update_config *cfg,
                                     const struct ud_update_handlers *handlers, struct ud_err *e);
/* Joins the thread if one runs (cancelling it first). Accepts NULL; NULLs *t. */
void ud_update_task_destroy(ud_update_task_t **t);

/* Starts training on a new thread (MLTask.resume()). Returns 0 or UD_ESTATE if already started. */
int ud_update_task_resume(ud_update_task_t *t);
/* Runs training on the calling thread and returns when it ends: 0 on completion, else the
 * error (UD_ECANCELLED after a cancel). The MPI worker uses this. */
int ud_update_task_run(ud_update_task_t *t);
/* Waits for a task started with resume to end; returns as ud_update_task_run does. */
int ud_update_task_wait(ud_update_task_t *t);
/* Requests cancellation; safe from any thread and from handlers. Takes effect at the next
 * mini-batch boundary. */
int ud_update_task_cancel(ud_update_task_t *t);

/* Parameter keys accepted by resume_with_parameters (Core ML's "adjustable in progress"). */
enum ud_param_key { UD_PARAM_LEARNING_RATE = 1 };
struct ud_param_value {
    enum ud_param_key key;
    double value;
};
/* Replaces parameters from the next mini-batch on; meant to be called inside a progress
 * handler (legal anywhere). A key that cannot change in progress is UD_EPARAMETERS; a value
 * outside the model's allowed range is UD_ERANGE; nothing changes then. */
int ud_update_task_resume_with_parameters(ud_update_task_t *t, const struct ud_param_value *kv,
                                          size_t n);

enum ud_task_state ud_update_task_state(const ud_update_task_t *t);
/* The task's unique identifier ("update-<pid>-<n>"); borrowed. */
const char *ud_update_task_identifier(const ud_update_task_t *t);
/* The last error (code 0 if none); borrowed. */
const struct ud_err *ud_update_task_error(const ud_update_task_t *t);
ud_model_t *ud_update_task_model(ud_update_task_t *t);
/* The optimizer (its state is what checkpoints save); borrowed, valid while the task lives. */
ud_optim_t *ud_update_task_optim(ud_update_task_t *t);
/* Position of the next step: epoch and mini-batch within it. */
void ud_update_task_position(const ud_update_task_t *t, int64_t *epoch, int64_t *minibatch);
/* The current epoch's global sums so far: loss sum, correct count, samples. For checkpoints;
 * call from the task's thread (an after_step hook). */
void ud_update_task_epoch_sums(const ud_update_task_t *t, double sums[3]);
/* The effective parameters (after any resume_with_parameters); borrowed. Call from the task's
 * thread. */
const struct ud_update_params *ud_update_task_parameters(const ud_update_task_t *t);
/* The latest metrics (a copy). */
struct ud_update_metrics ud_update_task_metrics(const ud_update_task_t *t);

/* The sample indices of provider positions for (seed, epoch, shuffle): perm[0..n). Exposed so
 * that tests and the coordinator's shard planner can reproduce the engine's order. */
void ud_update_epoch_order(uint64_t seed, int64_t epoch, int shuffle, uint32_t *perm, size_t n);
/* The slice [*lo, *hi) of a batch of size bsz that rank r of w takes. */
void ud_update_rank_slice(size_t bsz, int r, int w, size_t *lo, size_t *hi);

#ifdef __cplusplus
}
#endif
#endif

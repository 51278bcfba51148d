/*  ud_update.c — the update engine: Core ML's MLUpdateTask on a sequential model.
 *
 *  One loop, readable top to bottom (train -> train_step -> score_validation): for every epoch
 *  a permutation of the provider's samples, for every mini-batch of the global size G this
 *  rank's contiguous slice of it, forward, loss, backward scaled by 1/G, the distributed hooks,
 *  one optimizer step over the updatable spans, metrics, and the progress events.
 *
 *  Threads. The training loop runs on one thread: the caller's (ud_update_task_run) or one the
 *  task starts (ud_update_task_resume). Other threads may call cancel, resume_with_parameters,
 *  state, position and metrics at any time: the state, the cancel request and the "started"
 *  latch are atomics; the metrics, the position and a pending learning rate sit behind `mu`,
 *  which is never held while a handler runs, so handlers may call back into the task. The
 *  error is written by the training thread only: read it once the task has ended (run or
 *  wait returned, or in the completion handler). A handler must not destroy its own task.
 *
 *  States. A new task is SUSPENDED. Starting makes it RUNNING; while a progress handler runs it
 *  is SUSPENDED again and returns to RUNNING (or CANCELLING) after. A cancel request sets an
 *  atomic flag, moves RUNNING to CANCELLING, and is acted on at the next mini-batch boundary
 *  (or, if training has already run its last step, before completion): the task ends FAILED
 *  with UD_ECANCELLED. The final state is set before the completion handler runs, so the
 *  handler sees COMPLETED or FAILED, and the error.
 *
 *  What is not checked. A batch provider has no shape: its get() must write exactly the model's
 *  input_size floats per sample (ud_dataset_provider over a dataset of the model's input shape
 *  does). Labels outside the model's classes are caught by ud_model_loss (UD_ERANGE).
 *
 *  Distributed use. Every rank must make the same calls to grad_sync and metric_sync: each
 *  step calls grad_sync once (when set) and metric_sync once (when set), and validation calls
 *  metric_sync once per epoch. A rank whose slice of a small last batch is empty still takes
 *  part with zero gradients. An error on one rank (a provider failure) is local: the driver
 *  must abort the others (the MPI worker aborts the communicator).
 */
#include "updraft/ud_update.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "updraft/ud_clock.h"

/* Validation is scored in chunks of at least this many samples (when it has that many). */
#define UD_UPDATE_VAL_CHUNK 256

/* Multiplier that spreads epochs over the shuffle streams (2^64 / golden ratio, odd). */
#define UD_UPDATE_EPOCH_MIX 0x9e3779b97f4a7c15ULL

/* Epoch accumulators, global (summed over ranks). */
struct epoch_acc {
    double loss_sum; /* sum of per-sample losses */
    double correct;
    double samples;
    double start;    /* CLOCK_MONOTONIC at the epoch's start (or the resume) */
    double samples0; /* samples counted before that start (a resumed epoch) */
};

struct ud_update_task {
    ud_model_t *model;                    /* borrowed */
    const struct ud_batch_provider *data; /* borrowed */
    struct ud_update_config cfg;          /* a copy; cfg.params is the live effective set */
    struct ud_update_handlers h;
    ud_optim_t *opt;
    char id[64];

    int rank, world;
    size_t n;    /* samples in the provider */
    size_t insz; /* floats per sample */
    size_t G;    /* global mini-batch */
    int64_t spe; /* steps per epoch */
    int64_t total_steps;
    int64_t step;    /* global steps done, counting those before a resume */
    uint32_t *order; /* (n) this epoch's sample order */
    float *x;        /* (bufcap, insz) one rank-batch of inputs */
    int32_t *labels; /* (bufcap) */
    size_t bufcap;
    double t0; /* CLOCK_MONOTONIC at start */

    atomic_int state;  /* enum ud_task_state */
    atomic_int cancel; /* a cancel was requested */
    atomic_int started;
    int threaded, joined;
    pthread_t thread;
    pthread_mutex_t join_mu;

    pthread_mutex_t mu; /* guards metrics, pos_*, lr_* */
    struct ud_update_metrics metrics;
    int64_t pos_epoch, pos_minibatch;
    int lr_pending;
    double lr_new;

    int result;
    struct ud_err err;

    /* This step's optimizer step, taken span by span through step_span in every mode. */
    double step_lr;   /* this step's learning rate (the training thread's own) */
    size_t stepped;   /* parameters stepped so far this step */
    size_t updatable; /* parameters in the model's updatable spans */
    int bad;          /* a stepped span had NaN or infinite gradients */
    int bad_layer;    /* the first such span's layer, or -1 when not known (grad_sync's apply) */
    struct epoch_acc *acc; /* the current epoch's sums (train's) */
};

const char *ud_task_state_name(enum ud_task_state s)
{
    static const char *const names[] = {[UD_TASK_SUSPENDED] = "suspended",
                                        [UD_TASK_RUNNING] = "running",
                                        [UD_TASK_CANCELLING] = "cancelling",
                                        [UD_TASK_COMPLETED] = "completed",
                                        [UD_TASK_FAILED] = "failed"};
    size_t i = (size_t)s; /* a negative value wraps past the end */
    return i < sizeof names / sizeof *names && names[i] ? names[i] : "unknown";
}

/* ---- data order and rank slices ---- */

/* The stream for epoch e is UD_RNG_SHUFFLE ^ (e * K), K = 0x9e3779b97f4a7c15 (2^64 divided
 * by the golden ratio, odd):
 *  - epoch 0 is the plain shuffle stream;
 *  - multiplying by an odd K is a bijection modulo 2^64, and so is the XOR, so no two epochs
 *    share a stream;
 *  - the stream equals another purpose's (UD_RNG_INIT 1, DROPOUT 3, SPLIT 4) only when
 *    e * K is 3, 1 or 6 modulo 2^64, i.e. e = 3/K, 1/K or 6/K modulo 2^64; those are
 *    1.54e19, 1.74e19 and 1.23e19, all at or above 2^63, which no int64 epoch >= 0 reaches;
 *  - ud_rng_seed multiplies the stream by another odd constant and mixes it with the seed
 *    through splitmix64, so neighbouring epochs give unrelated permutations.
 * Changing K changes every shuffled run: it is part of the data-order contract. */
void ud_update_epoch_order(uint64_t seed, int64_t epoch, int shuffle, uint32_t *perm, size_t n)
{
    if (!shuffle) {
        for (size_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        return;
    }
    struct ud_rng r;
    ud_rng_seed(&r, seed, (uint64_t)UD_RNG_SHUFFLE ^ ((uint64_t)epoch * UD_UPDATE_EPOCH_MIX));
    ud_rng_permutation(&r, perm, n);
}

void ud_update_rank_slice(size_t bsz, int r, int w, size_t *lo, size_t *hi)
{
    if (w < 1) {
        w = 1;
        r = 0;
    }
    *lo = bsz * (size_t)r / (size_t)w;
    *hi = bsz * (size_t)(r + 1) / (size_t)w;
}

/* ---- state ---- */

static void state_set(ud_update_task_t *t, enum ud_task_state s)
{
    atomic_store(&t->state, (int)s);
}

static int state_cas(ud_update_task_t *t, enum ud_task_state from, enum ud_task_state to)
{
    int expected = (int)from;
    return atomic_compare_exchange_strong(&t->state, &expected, (int)to);
}

/* After a cancel request: RUNNING becomes CANCELLING (SUSPENDED inside a handler becomes it
 * when the handler returns). */
static void note_cancel(ud_update_task_t *t)
{
    if (atomic_load(&t->cancel))
        state_cas(t, UD_TASK_RUNNING, UD_TASK_CANCELLING);
}

static void publish(ud_update_task_t *t, const struct ud_update_metrics *m)
{
    pthread_mutex_lock(&t->mu);
    t->metrics = *m;
    pthread_mutex_unlock(&t->mu);
}

/* Delivers ev to the progress handler if subscribed; the task is SUSPENDED meanwhile. */
static void emit(ud_update_task_t *t, unsigned ev, const struct ud_update_metrics *m)
{
    publish(t, m);
    if (!(t->h.events & ev) || !t->h.progress)
        return;
    int suspended = state_cas(t, UD_TASK_RUNNING, UD_TASK_SUSPENDED);
    struct ud_update_context ctx = {
        .task = t,
        .model = t->model,
        .event = ev,
        .metrics = *m,
        .parameters = &t->cfg.params,
    };
    t->h.progress(&ctx, t->h.user);
    if (suspended)
        state_cas(t, UD_TASK_SUSPENDED, UD_TASK_RUNNING);
    note_cancel(t);
}

static int cancelled(ud_update_task_t *t, int64_t epoch, int64_t minibatch)
{
    state_cas(t, UD_TASK_RUNNING, UD_TASK_CANCELLING);
    return ud_err_set(&t->err, UD_ECANCELLED,
                      "update task %s cancelled at epoch %lld mini-batch %lld", t->id,
                      (long long)epoch, (long long)minibatch);
}

/* Takes a learning rate set by resume_with_parameters: it applies from this mini-batch on. */
static void take_pending(ud_update_task_t *t)
{
    pthread_mutex_lock(&t->mu);
    if (t->lr_pending) {
        t->cfg.params.learning_rate = t->lr_new;
        t->lr_pending = 0;
    }
    pthread_mutex_unlock(&t->mu);
}

static void set_position(ud_update_task_t *t, int64_t epoch, int64_t minibatch)
{
    pthread_mutex_lock(&t->mu);
    if (minibatch >= t->spe) {
        epoch++;
        minibatch = 0;
    }
    t->pos_epoch = epoch;
    t->pos_minibatch = minibatch;
    pthread_mutex_unlock(&t->mu);
}

/* ---- one step ---- */

/* A rank with no samples in this batch contributes zero gradients, and reports them ready
 * layer by layer from the top as ud_model_backward would, so overlapped allreduces match. */
static void zero_grads(ud_update_task_t *t)
{
    const struct ud_arch *a = ud_model_arch(t->model);
    float *g = ud_model_grads(t->model);
    for (int i = a->nlayers - 1; i >= 0; i--) {
        struct ud_span w, b;
        ud_model_layer_params(t->model, i, &w, &b);
        if (!ud_model_layer_updatable(t->model, i) || w.count == 0)
            continue;
        struct ud_span all = {w.offset, w.count + b.count};
        memset(g + all.offset, 0, all.count * sizeof *g);
        if (t->cfg.hooks.grad_ready)
            t->cfg.hooks.grad_ready(t->cfg.hooks.user, i, all);
    }
}

/* 1 when no element of x is NaN or infinite: an exponent of all ones. Integer maths, so the
 * loop vectorises (a float test would not, without -ffast-math). */
static int all_finite(const float *restrict x, size_t n)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

static int grads_finite(ud_update_task_t *t)
{
    const float *g = ud_model_grads(t->model);
    const struct ud_span *spans;
    size_t nspans = ud_model_updatable_spans(t->model, &spans);
    for (size_t s = 0; s < nspans; s++)
        if (!all_finite(g + spans[s].offset, spans[s].count))
            return 0;
    return 1;
}

/* Applies the optimizer to one span of parameters at this step's learning rate: the one way
 * every mode takes its step (fused into backward, through grad_sync's apply, or after both).
 * The finite check rides in the optimizer's own pass over the gradients; the first bad span is
 * remembered (layer: its layer, or -1 when not known) for nonfinite_error. */
static int step_span(ud_update_task_t *t, struct ud_span span, int layer)
{
    int rc = ud_optim_step_span(t->opt, ud_model_params(t->model), ud_model_grads(t->model), span,
                                t->step_lr);
    t->stepped += span.count;
    if (rc && !t->bad) {
        t->bad = 1;
        t->bad_layer = layer;
    }
    return rc;
}

/* The one error for a step that met NaN or infinity: in the loss when `loss` is not finite,
 * else in the gradients (of `layer` when it is known, >= 0). */
static int nonfinite_error(ud_update_task_t *t, int64_t e, int64_t s, double loss, int layer)
{
    char what[64];
    if (!isfinite(loss))
        snprintf(what, sizeof what, "loss became %s", isnan(loss) ? "NaN" : "infinite");
    else if (layer >= 0)
        snprintf(what, sizeof what, "gradients of layer %d became NaN or infinite", layer);
    else
        snprintf(what, sizeof what, "gradients became NaN or infinite");
    return ud_err_set(&t->err, UD_ENONFINITE,
                      "%s at epoch %lld step %lld; lower the learning rate (or check the data "
                      "for non-finite values)",
                      what, (long long)e, (long long)s);
}

/* grad_ready in standalone runs: the layer's gradients are final and still in cache, so take
 * the optimizer step for that layer now, instead of in more passes over the whole parameter
 * buffer after backward. The layers below do not read this layer's weights, so updating them
 * early changes nothing else; the result is bitwise that of one step after backward. After a
 * bad layer the layers below are left alone (the task fails). The caller's own grad_ready, if
 * any, still runs. */
static void fused_ready(void *user, int layer, struct ud_span span)
{
    ud_update_task_t *t = user;
    if (!t->bad)
        step_span(t, span, layer);
    if (t->cfg.hooks.grad_ready)
        t->cfg.hooks.grad_ready(t->cfg.hooks.user, layer, span);
}

/* grad_sync's apply callback: the span holds the global sum, so step it now. */
static int apply_span(void *ctx, struct ud_span span)
{
    return step_span(ctx, span, -1);
}

/* Reads samples order[first .. first + b) into the batch buffers. */
static int gather(ud_update_task_t *t, const struct ud_batch_provider *p, const uint32_t *idx,
                  size_t first, size_t b)
{
    for (size_t j = 0; j < b; j++) {
        size_t i = idx ? idx[first + j] : first + j;
        int rc = ud_batch_provider_get(p, i, t->x + j * t->insz, &t->labels[j], &t->err);
        if (rc) {
            if (!t->err.code)
                ud_err_set(&t->err, rc, "%s", ud_strerror(rc));
            return ud_err_prefix(&t->err, "sample %zu", i);
        }
    }
    return 0;
}

/* Forward, loss and backward of this rank's b samples of a global batch of bsz. Fused: the
 * optimizer step rides in backward (fused_ready), so a non-finite loss stops it first. */
static int forward_backward(ud_update_task_t *t, int64_t e, int64_t s, size_t b, size_t bsz,
                            int fused, double *loss, int *correct)
{
    const struct ud_update_hooks *hk = &t->cfg.hooks;
    int rc;
    if ((rc = ud_model_forward(t->model, t->x, (int)b, true)))
        return ud_err_set(&t->err, rc, "forward pass of %zu samples: %s", b, ud_strerror(rc));
    if ((rc = ud_model_loss(t->model, t->labels, (int)b, loss, correct, &t->err)))
        return ud_err_prefix(&t->err, "epoch %lld step %lld", (long long)e, (long long)s);
    /* ud_model_loss clamps the probability before the log, which turns a NaN output into a
     * finite loss; a non-finite output is what a NaN loss means here. */
    if (!all_finite(ud_model_output(t->model), b * (size_t)ud_model_num_classes(t->model)))
        *loss = NAN;
    if (fused && !isfinite(*loss))
        return nonfinite_error(t, e, s, *loss, -1);
    rc = ud_model_backward(t->model, t->labels, (int)b, (float)(1.0 / (double)bsz),
                           fused ? fused_ready : hk->grad_ready, fused ? (void *)t : hk->user);
    if (rc)
        return ud_err_set(&t->err, rc, "backward pass at epoch %lld step %lld: %s", (long long)e,
                          (long long)s, ud_strerror(rc));
    return 0;
}

/* Ends the optimizer step once the gradients are summed and the loss is known to be finite.
 * Spans stepped already (fused into backward, or by grad_sync's apply) only close the step;
 * otherwise every updatable span is stepped now, after checking the gradients, so that a bad
 * step leaves the parameters alone. A finite loss can still come with overflowing gradients:
 * the fused and apply paths find them while applying them (those spans have taken the step). */
static int finish_step(ud_update_task_t *t, int64_t e, int64_t s, int fused)
{
    if (!fused && t->stepped && t->stepped != t->updatable)
        return ud_err_set(&t->err, UD_EINTERNAL,
                          "grad_sync stepped %zu of the model's %zu updatable parameters at "
                          "epoch %lld step %lld",
                          t->stepped, t->updatable, (long long)e, (long long)s);
    if (!fused && !t->stepped) {
        if (!grads_finite(t))
            return nonfinite_error(t, e, s, 0, -1);
        const struct ud_span *spans;
        size_t nspans = ud_model_updatable_spans(t->model, &spans);
        for (size_t i = 0; i < nspans; i++)
            step_span(t, spans[i], -1);
    }
    ud_optim_end_step(t->opt);
    return t->bad ? nonfinite_error(t, e, s, 0, t->bad_layer) : 0;
}

/* Adds the step's global sums v (loss sum, correct, samples) to the epoch's, publishes the
 * metrics and runs after_step and the mini-batch event. */
static int end_minibatch(ud_update_task_t *t, int64_t e, int64_t s, const double v[3],
                         struct epoch_acc *acc)
{
    const struct ud_update_hooks *hk = &t->cfg.hooks;
    acc->loss_sum += v[0];
    acc->correct += v[1];
    acc->samples += v[2];
    double now = ud_clock_mono();
    struct ud_update_metrics m = {
        .loss = v[2] > 0 ? v[0] / v[2] : NAN,
        .epoch_index = e,
        .minibatch_index = s,
        .accuracy = acc->samples > 0 ? acc->correct / acc->samples : NAN,
        .samples = (int64_t)acc->samples,
        .step = t->step,
        .steps_per_epoch = t->spe,
        .epoch_seconds = now - acc->start,
        .seconds = now - t->t0,
        .learning_rate = t->step_lr,
        .val_loss = NAN,
        .val_accuracy = NAN,
    };
    m.samples_per_sec = m.epoch_seconds > 0 ? (acc->samples - acc->samples0) / m.epoch_seconds : 0;
    set_position(t, e, s + 1);
    publish(t, &m);
    int rc;
    if (hk->after_step && (rc = hk->after_step(hk->user, t, &t->err))) {
        if (!t->err.code)
            ud_err_set(&t->err, rc, "after_step hook failed at step %lld", (long long)t->step);
        return t->err.code;
    }
    emit(t, UD_EVENT_MINIBATCH_END, &m);
    return 0;
}

/* One mini-batch: this rank's slice of it forward and backward, the distributed sums, one
 * optimizer step, the metrics. */
static int train_step(ud_update_task_t *t, int64_t e, int64_t s, struct epoch_acc *acc)
{
    const struct ud_update_hooks *hk = &t->cfg.hooks;
    struct ud_update_params *P = &t->cfg.params;
    size_t lo_g = (size_t)s * t->G;
    size_t hi_g = lo_g + t->G < t->n ? lo_g + t->G : t->n;
    size_t bsz = hi_g - lo_g, lo, hi;
    ud_update_rank_slice(bsz, t->rank, t->world, &lo, &hi);
    size_t b = hi - lo;
    int rc;

    if ((rc = gather(t, t->data, t->order, lo_g + lo, b)))
        return ud_err_prefix(&t->err, "epoch %lld step %lld", (long long)e, (long long)s);

    t->step_lr = ud_lr_at(P, P->learning_rate, e, t->step, t->total_steps);
    t->stepped = 0;
    t->bad = 0;
    t->bad_layer = -1;
    /* Standalone (nothing to sum across ranks): the step is fused into backward. */
    int fused = !hk->grad_sync && !hk->metric_sync && b > 0;
    double loss = 0;
    int correct = 0;
    if (b > 0 && (rc = forward_backward(t, e, s, b, bsz, fused, &loss, &correct)))
        return rc;
    if (b == 0)
        zero_grads(t);
    if (hk->grad_sync &&
        (rc = hk->grad_sync(hk->user, ud_model_grads(t->model), ud_model_param_count(t->model),
                            apply_span, t, &t->err)))
        return rc;
    double v[3] = {loss * (double)b, (double)correct, (double)b};
    if (hk->metric_sync && (rc = hk->metric_sync(hk->user, v, 3, &t->err)))
        return rc;
    /* Checked on the global sum, so every rank stops at the same step, before the update. */
    if (!isfinite(v[0]))
        return nonfinite_error(t, e, s, v[0], -1);
    if ((rc = finish_step(t, e, s, fused)))
        return rc;
    t->step++;
    return end_minibatch(t, e, s, v, acc);
}

/* Scores the validation provider (this rank's share, summed across ranks). */
static int score_validation(ud_update_task_t *t, double *vloss, double *vacc)
{
    const struct ud_batch_provider *p = t->cfg.validation;
    size_t n = ud_batch_provider_count(p), lo, hi;
    ud_update_rank_slice(n, t->rank, t->world, &lo, &hi);
    double v[3] = {0, 0, 0};
    int rc;
    for (size_t first = lo; first < hi; first += t->bufcap) {
        size_t b = hi - first < t->bufcap ? hi - first : t->bufcap;
        if ((rc = gather(t, p, NULL, first, b)))
            return ud_err_prefix(&t->err, "validation");
        if ((rc = ud_model_forward(t->model, t->x, (int)b, false)))
            return ud_err_set(&t->err, rc, "validation forward pass: %s", ud_strerror(rc));
        double loss;
        int correct;
        if ((rc = ud_model_loss(t->model, t->labels, (int)b, &loss, &correct, &t->err)))
            return ud_err_prefix(&t->err, "validation");
        v[0] += loss * (double)b;
        v[1] += correct;
        v[2] += (double)b;
    }
    const struct ud_update_hooks *hk = &t->cfg.hooks;
    if (hk->metric_sync && (rc = hk->metric_sync(hk->user, v, 3, &t->err)))
        return rc;
    *vloss = v[2] > 0 ? v[0] / v[2] : NAN;
    *vacc = v[2] > 0 ? v[1] / v[2] : NAN;
    return 0;
}

static int train(ud_update_task_t *t)
{
    struct ud_update_params *P = &t->cfg.params;
    int64_t e0 = t->cfg.start_epoch, s0 = t->cfg.start_minibatch;
    t->t0 = ud_clock_mono();
    t->step = e0 * t->spe + s0;
    struct ud_update_metrics m = {
        .loss = NAN,
        .epoch_index = e0,
        .minibatch_index = s0,
        .accuracy = NAN,
        .step = t->step,
        .steps_per_epoch = t->spe,
        .learning_rate = ud_lr_at(P, P->learning_rate, e0, t->step, t->total_steps),
        .val_loss = NAN,
        .val_accuracy = NAN,
    };
    emit(t, UD_EVENT_TRAINING_BEGIN, &m);

    for (int64_t e = e0; e < P->epochs; e++) {
        if (t->cfg.hooks.epoch_order)
            t->cfg.hooks.epoch_order(t->cfg.hooks.user, e, t->order, t->n);
        else
            ud_update_epoch_order(P->seed, e, P->shuffle, t->order, t->n);
        struct epoch_acc acc = {.start = ud_clock_mono()};
        if (e == e0 && s0 > 0) {
            acc.loss_sum = t->cfg.start_sums[0];
            acc.correct = t->cfg.start_sums[1];
            acc.samples = acc.samples0 = t->cfg.start_sums[2];
        }
        t->acc = &acc;
        for (int64_t s = e == e0 ? s0 : 0; s < t->spe; s++) {
            if (atomic_load(&t->cancel))
                return cancelled(t, e, s);
            take_pending(t);
            int rc = train_step(t, e, s, &acc);
            if (rc)
                return rc;
        }
        pthread_mutex_lock(&t->mu);
        m = t->metrics;
        pthread_mutex_unlock(&t->mu);
        m.loss = acc.samples > 0 ? acc.loss_sum / acc.samples : NAN;
        m.accuracy = acc.samples > 0 ? acc.correct / acc.samples : NAN;
        if (t->cfg.validation) {
            int rc = score_validation(t, &m.val_loss, &m.val_accuracy);
            if (rc)
                return ud_err_prefix(&t->err, "epoch %lld", (long long)e);
        }
        double now = ud_clock_mono();
        m.epoch_seconds = now - acc.start;
        m.seconds = now - t->t0;
        m.samples_per_sec =
            m.epoch_seconds > 0 ? (acc.samples - acc.samples0) / m.epoch_seconds : 0;
        emit(t, UD_EVENT_EPOCH_END, &m);
        t->acc = NULL;
    }
    if (atomic_load(&t->cancel))
        return cancelled(t, P->epochs, 0);
    return 0;
}

/* Runs training on this thread, sets the final state, calls the completion handler. */
static int run_body(ud_update_task_t *t)
{
    state_set(t, UD_TASK_RUNNING);
    note_cancel(t);
    int rc = train(t);
    t->acc = NULL;
    if (rc && !t->err.code)
        ud_err_set(&t->err, rc, "%s", ud_strerror(rc));
    if (rc && t->err.code != rc)
        t->err.code = rc;
    t->result = rc;
    state_set(t, rc ? UD_TASK_FAILED : UD_TASK_COMPLETED);

    struct ud_update_context ctx = {
        .task = t,
        .model = t->model,
        .event = 0,
        .parameters = &t->cfg.params,
    };
    pthread_mutex_lock(&t->mu);
    ctx.metrics = t->metrics;
    pthread_mutex_unlock(&t->mu);
    t->h.completion(&ctx, t->h.user);
    return rc;
}

static void *thread_main(void *arg)
{
    run_body(arg);
    return NULL;
}

/* ---- lifecycle ---- */

/* The sizes a task works with, settled before anything is allocated. */
struct task_sizes {
    int rank, world;
    size_t n;      /* samples in the provider */
    size_t G;      /* global mini-batch */
    int64_t spe;   /* steps per epoch */
    size_t insz;   /* floats per sample */
    size_t bufcap; /* samples the batch buffers hold */
};

/* Checks the arguments, the rank and the data, and works out the run's sizes into z. */
static int check_run(const ud_model_t *model, const struct ud_batch_provider *data,
                     const struct ud_update_config *cfg, const struct ud_update_handlers *handlers,
                     struct task_sizes *z, struct ud_err *e)
{
    if (!model || !data || !data->ops || !cfg || !handlers)
        return ud_err_set(e, UD_EINVAL,
                          "update task: model, data, configuration and handlers are required");
    if (!handlers->completion)
        return ud_err_set(e, UD_EINVAL, "update task: a completion handler is required");
    int rc;
    if ((rc = ud_update_params_check_runnable(&cfg->params, e)))
        return rc;
    z->world = cfg->hooks.world > 0 ? cfg->hooks.world : 1;
    z->rank = cfg->hooks.world > 0 ? cfg->hooks.rank : 0;
    if (z->rank < 0 || z->rank >= z->world)
        return ud_err_set(e, UD_EINVAL, "update task: rank %d is not in [0, %d)", z->rank,
                          z->world);
    z->n = ud_batch_provider_count(data);
    if (z->n == 0)
        return ud_err_set(e, UD_EEMPTY, "update task: the training data has no samples");
    if (z->n > UINT32_MAX)
        return ud_err_set(e, UD_ELIMIT, "update task: %zu samples is over the limit of %lu", z->n,
                          (unsigned long)UINT32_MAX);
    z->G = (size_t)cfg->params.mini_batch_size;
    z->spe = (int64_t)((z->n + z->G - 1) / z->G);
    return 0;
}

/* Checks that the start position lies inside the run (a resumed run starts past 0). */
static int check_start(const struct ud_update_config *cfg, int64_t spe, struct ud_err *e)
{
    int64_t epochs = cfg->params.epochs;
    if (cfg->start_epoch < 0 || cfg->start_epoch > epochs || cfg->start_minibatch < 0 ||
        cfg->start_minibatch >= spe || (cfg->start_epoch == epochs && cfg->start_minibatch))
        return ud_err_set(e, UD_ERANGE,
                          "update task: start position epoch %lld mini-batch %lld is outside the "
                          "run (%lld epochs of %lld mini-batches)",
                          (long long)cfg->start_epoch, (long long)cfg->start_minibatch,
                          (long long)epochs, (long long)spe);
    return 0;
}

/* Sizes the batch buffers: the largest rank slice, ceil(min(G, n) / world), or a validation
 * chunk if that is larger (validation reuses the buffers in chunks). */
static int size_buffers(const ud_model_t *model, const struct ud_update_config *cfg,
                        struct task_sizes *z, struct ud_err *e)
{
    z->insz = ud_model_input_size(model);
    size_t maxb = z->G < z->n ? z->G : z->n;
    size_t bufcap = (maxb + (size_t)z->world - 1) / (size_t)z->world;
    if (cfg->validation) {
        size_t nv = ud_batch_provider_count(cfg->validation);
        size_t vc = nv < UD_UPDATE_VAL_CHUNK ? nv : UD_UPDATE_VAL_CHUNK;
        if (vc > bufcap)
            bufcap = vc;
    }
    if (bufcap == 0)
        bufcap = 1;
    z->bufcap = bufcap;
    if (z->insz == 0 || bufcap > SIZE_MAX / sizeof(float) / z->insz)
        return ud_err_set(e, UD_ELIMIT,
                          "update task: a batch of %zu samples of %zu floats is too large", bufcap,
                          z->insz);
    return 0;
}

/* The task's starting state: suspended, at the start position, no metrics yet. */
static void init_state(ud_update_task_t *t)
{
    /* Task identifiers are unique within the process: a counter is the one piece of state
     * that has to outlive every task object. */
    static atomic_ullong counter;
    const struct ud_update_config *cfg = &t->cfg;
    atomic_init(&t->state, UD_TASK_SUSPENDED);
    atomic_init(&t->cancel, 0);
    atomic_init(&t->started, 0);
    t->pos_epoch = cfg->start_epoch;
    t->pos_minibatch = cfg->start_minibatch;
    t->metrics = (struct ud_update_metrics){
        .loss = NAN,
        .epoch_index = cfg->start_epoch,
        .minibatch_index = cfg->start_minibatch,
        .accuracy = NAN,
        .step = cfg->start_epoch * t->spe + cfg->start_minibatch,
        .steps_per_epoch = t->spe,
        .learning_rate = NAN,
        .val_loss = NAN,
        .val_accuracy = NAN,
    };
    snprintf(t->id, sizeof t->id, "update-%ld-%llu", (long)getpid(),
             (unsigned long long)atomic_fetch_add(&counter, 1) + 1);
}

ud_update_task_t *ud_update_task_new(ud_model_t *model, const struct ud_batch_provider *data,
                                     const struct ud_update_config *cfg,
                                     const struct ud_update_handlers *handlers, struct ud_err *e)
{
    struct task_sizes z = {0};
    if (check_run(model, data, cfg, handlers, &z, e) || check_start(cfg, z.spe, e) ||
        size_buffers(model, cfg, &z, e))
        return NULL;

    ud_update_task_t *t = calloc(1, sizeof *t);
    if (!t) {
        ud_err_set(e, UD_ENOMEM, "update task: out of memory");
        return NULL;
    }
    t->model = model;
    t->data = data;
    t->cfg = *cfg;
    t->h = *handlers;
    t->rank = z.rank;
    t->world = z.world;
    t->n = z.n;
    t->insz = z.insz;
    t->G = z.G;
    t->spe = z.spe;
    t->total_steps = cfg->params.epochs * z.spe;
    t->bufcap = z.bufcap;
    t->order = malloc(z.n * sizeof *t->order);
    t->x = malloc(z.bufcap * z.insz * sizeof *t->x);
    t->labels = malloc(z.bufcap * sizeof *t->labels);
    if (!t->order || !t->x || !t->labels) {
        ud_err_set(e, UD_ENOMEM, "update task: cannot allocate batch buffers of %zu samples",
                   z.bufcap);
        goto out_free_buffers;
    }
    if (!(t->opt = ud_optim_new(&cfg->params, ud_model_param_count(model), e)))
        goto out_free_buffers;
    const struct ud_span *sp;
    size_t ns = ud_model_updatable_spans(model, &sp);
    for (size_t i = 0; i < ns; i++)
        t->updatable += sp[i].count;
    if (pthread_mutex_init(&t->mu, NULL) || pthread_mutex_init(&t->join_mu, NULL)) {
        /* glibc's default mutexes cannot fail to initialise; others may, for memory. */
        ud_err_set(e, UD_ENOMEM, "update task: cannot create a mutex");
        goto out_destroy_optim;
    }
    init_state(t);
    return t;

out_destroy_optim:
    ud_optim_destroy(&t->opt);
out_free_buffers:
    free(t->labels);
    free(t->x);
    free(t->order);
    free(t);
    return NULL;
}

void ud_update_task_destroy(ud_update_task_t **tp)
{
    if (!tp || !*tp)
        return;
    ud_update_task_t *t = *tp;
    if (t->threaded) {
        ud_update_task_cancel(t);
        ud_update_task_wait(t);
    }
    pthread_mutex_destroy(&t->join_mu);
    pthread_mutex_destroy(&t->mu);
    ud_optim_destroy(&t->opt);
    free(t->labels);
    free(t->x);
    free(t->order);
    free(t);
    *tp = NULL;
}

int ud_update_task_resume(ud_update_task_t *t)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&t->started, &expected, 1))
        return UD_ESTATE;
    t->threaded = 1;
    int rc = pthread_create(&t->thread, NULL, thread_main, t);
    if (rc) {
        t->threaded = 0;
        atomic_store(&t->started, 0);
        return ud_err_set(&t->err, UD_ENOMEM, "update task: cannot start a thread: %s",
                          strerror(rc));
    }
    return 0;
}

int ud_update_task_run(ud_update_task_t *t)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&t->started, &expected, 1))
        return UD_ESTATE;
    return run_body(t);
}

int ud_update_task_wait(ud_update_task_t *t)
{
    if (!t->threaded)
        return UD_ESTATE;
    pthread_mutex_lock(&t->join_mu);
    if (!t->joined) {
        pthread_join(t->thread, NULL);
        t->joined = 1;
    }
    pthread_mutex_unlock(&t->join_mu);
    return t->result;
}

int ud_update_task_cancel(ud_update_task_t *t)
{
    int s = atomic_load(&t->state);
    if (s == UD_TASK_COMPLETED || s == UD_TASK_FAILED)
        return UD_ESTATE;
    atomic_store(&t->cancel, 1);
    note_cancel(t);
    return 0;
}

int ud_update_task_resume_with_parameters(ud_update_task_t *t, const struct ud_param_value *kv,
                                          size_t n)
{
    int s = atomic_load(&t->state);
    if (s == UD_TASK_COMPLETED || s == UD_TASK_FAILED)
        return UD_ESTATE;
    const struct ud_update_defaults *d = ud_model_update_defaults_const(t->model);
    double lr = NAN;
    /* All or nothing: check every pair before changing anything. */
    for (size_t i = 0; i < n; i++) {
        if (kv[i].key != UD_PARAM_LEARNING_RATE)
            return UD_EPARAMETERS;
        if (!(kv[i].value >= d->learning_rate.min && kv[i].value <= d->learning_rate.max))
            return UD_ERANGE;
        lr = kv[i].value;
    }
    if (n) {
        pthread_mutex_lock(&t->mu);
        t->lr_pending = 1;
        t->lr_new = lr;
        pthread_mutex_unlock(&t->mu);
    }
    return 0;
}

/* ---- accessors ---- */

enum ud_task_state ud_update_task_state(const ud_update_task_t *t)
{
    return (enum ud_task_state)atomic_load(&((ud_update_task_t *)t)->state);
}

const char *ud_update_task_identifier(const ud_update_task_t *t)
{
    return t->id;
}

const struct ud_err *ud_update_task_error(const ud_update_task_t *t)
{
    return &t->err;
}

ud_model_t *ud_update_task_model(ud_update_task_t *t)
{
    return t->model;
}

ud_optim_t *ud_update_task_optim(ud_update_task_t *t)
{
    return t->opt;
}

const struct ud_update_params *ud_update_task_parameters(const ud_update_task_t *t)
{
    return &t->cfg.params;
}

void ud_update_task_epoch_sums(const ud_update_task_t *t, double sums[3])
{
    sums[0] = t->acc ? t->acc->loss_sum : 0;
    sums[1] = t->acc ? t->acc->correct : 0;
    sums[2] = t->acc ? t->acc->samples : 0;
}

void ud_update_task_position(const ud_update_task_t *t, int64_t *epoch, int64_t *minibatch)
{
    ud_update_task_t *mt = (ud_update_task_t *)t; /* the mutex is not part of the value */
    pthread_mutex_lock(&mt->mu);
    if (epoch)
        *epoch = t->pos_epoch;
    if (minibatch)
        *minibatch = t->pos_minibatch;
    pthread_mutex_unlock(&mt->mu);
}

struct ud_update_metrics ud_update_task_metrics(const ud_update_task_t *t)
{
    ud_update_task_t *mt = (ud_update_task_t *)t;
    pthread_mutex_lock(&mt->mu);
    struct ud_update_metrics m = t->metrics;
    pthread_mutex_unlock(&mt->mu);
    return m;
}

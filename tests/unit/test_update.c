/*  test_update.c — the MLUpdateTask engine on a small dense net and synthetic separable data:
 *  learning, event delivery per mask, metrics order, resume_with_parameters, cancel (from a
 *  handler and from another thread), frozen layers, determinism, data order and rank slices,
 *  resuming from a position, a two-rank run on two threads, and failures. */
#include "ud_test.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_data.h"
#include "updraft/ud_model.h"
#include "updraft/ud_update.h"

#define D     8   /* features */
#define K     3   /* classes */
#define NSAMP 150 /* samples */
#define BATCH 16  /* -> 10 steps per epoch, the last of 6 samples */
#define SPE   ((NSAMP + BATCH - 1) / BATCH)

/* ---- fixtures ---- */

/* Three well-separated Gaussian blobs in D dimensions: class c is centred at +3 on feature c
 * and -3 on feature c + K. Deterministic from seed. */
static ud_dataset_t *make_data(size_t n, uint64_t seed)
{
    static const char *const classes[K] = {"a", "b", "c"};
    struct ud_err e = {0};
    ud_dataset_t *ds = ud_dataset_new(n, (struct ud_shape){D, 1, 1}, 0, classes, K, &e);
    if (!ds)
        fail_msg("ud_dataset_new: %s", e.msg);
    struct ud_rng r;
    ud_rng_seed(&r, seed, 1234);
    for (size_t i = 0; i < n; i++) {
        int32_t c = (int32_t)(i % K);
        float x[D];
        for (int k = 0; k < D; k++)
            x[k] = 0.7f * ud_rng_normal(&r);
        x[c] += 3.0f;
        x[c + K] -= 3.0f;
        assert_int_equal(ud_dataset_set_f32(ds, i, x, c), 0);
    }
    return ds;
}

static ud_model_t *make_model(uint64_t seed)
{
    return ud_test_model("input 8 1 1\ndense 16\nrelu\ndense 3\nsoftmax\n", seed);
}

static struct ud_update_config make_cfg(int epochs)
{
    struct ud_update_config c;
    memset(&c, 0, sizeof c);
    ud_update_params_default(&c.params);
    c.params.learning_rate = 0.05;
    c.params.momentum = 0.9;
    c.params.mini_batch_size = BATCH;
    c.params.epochs = epochs;
    c.params.seed = 11;
    return c;
}

/* What the handlers saw. */
#define LOG_MAX 4096
struct seen {
    int begin, epoch_end, minibatch_end, completion, other;
    int n;
    struct {
        unsigned event;
        int state;
        struct ud_update_metrics m;
        double param_lr;
    } log[LOG_MAX];
    int completion_state, completion_event, completion_err;
    /* Actions. */
    int cancel_at_step;        /* cancel in the MINIBATCH_END of this global step (1-based) */
    int lr_zero_at_epoch_end;  /* set lr 0 in EPOCH_END of this epoch (-1: never) */
    char sha_at_epoch_end[65]; /* params after that epoch's last step */
    int rwp_rc_range, rwp_rc_key, rwp_rc_nan;
    atomic_int minibatches;   /* for the thread that cancels */
    double sums_at_cancel[3]; /* the epoch sums where it cancelled (a checkpoint's) */
    double epoch_end_loss[4], epoch_end_acc[4];
};

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof *s);
    s->lr_zero_at_epoch_end = -1;
    atomic_init(&s->minibatches, 0);
}

static void on_progress(struct ud_update_context *ctx, void *user)
{
    struct seen *s = user;
    if (s->n < LOG_MAX) {
        s->log[s->n].event = ctx->event;
        s->log[s->n].state = ud_update_task_state(ctx->task);
        s->log[s->n].m = ctx->metrics;
        s->log[s->n].param_lr = ctx->parameters->learning_rate;
        s->n++;
    }
    switch (ctx->event) {
    case UD_EVENT_TRAINING_BEGIN:
        s->begin++;
        break;
    case UD_EVENT_EPOCH_END:
        if (ctx->metrics.epoch_index >= 0 && ctx->metrics.epoch_index < 4) {
            s->epoch_end_loss[ctx->metrics.epoch_index] = ctx->metrics.loss;
            s->epoch_end_acc[ctx->metrics.epoch_index] = ctx->metrics.accuracy;
        }
        s->epoch_end++;
        if (ctx->metrics.epoch_index == s->lr_zero_at_epoch_end) {
            ud_model_params_sha256(ctx->model, s->sha_at_epoch_end);
            /* Refused changes first: they must leave the rate alone. */
            struct ud_param_value bad = {UD_PARAM_LEARNING_RATE, 2.0};
            s->rwp_rc_range = ud_update_task_resume_with_parameters(ctx->task, &bad, 1);
            bad.value = NAN;
            s->rwp_rc_nan = ud_update_task_resume_with_parameters(ctx->task, &bad, 1);
            struct ud_param_value two[2] = {{UD_PARAM_LEARNING_RATE, 0.0},
                                            {(enum ud_param_key)99, 0.5}};
            s->rwp_rc_key = ud_update_task_resume_with_parameters(ctx->task, two, 2);
            struct ud_param_value zero = {UD_PARAM_LEARNING_RATE, 0.0};
            assert_int_equal(ud_update_task_resume_with_parameters(ctx->task, &zero, 1), 0);
        }
        break;
    case UD_EVENT_MINIBATCH_END:
        s->minibatch_end++;
        atomic_fetch_add(&s->minibatches, 1);
        if (ctx->metrics.step == s->cancel_at_step) {
            ud_update_task_epoch_sums(ctx->task, s->sums_at_cancel);
            assert_int_equal(ud_update_task_cancel(ctx->task), 0);
        }
        break;
    default:
        s->other++;
    }
}

static void on_completion(struct ud_update_context *ctx, void *user)
{
    struct seen *s = user;
    s->completion++;
    s->completion_event = (int)ctx->event;
    s->completion_state = ud_update_task_state(ctx->task);
    s->completion_err = ud_update_task_error(ctx->task)->code;
}

static ud_update_task_t *task_or_fail(ud_model_t *m, const struct ud_batch_provider *p,
                                      const struct ud_update_config *c, unsigned events,
                                      struct seen *s)
{
    struct ud_update_handlers h = {events, on_progress, on_completion, s};
    struct ud_err e = {0};
    ud_update_task_t *t = ud_update_task_new(m, p, c, &h, &e);
    if (!t)
        fail_msg("ud_update_task_new: %s", e.msg);
    assert_int_equal(ud_update_task_state(t), UD_TASK_SUSPENDED);
    return t;
}

/* Accuracy of m on every sample of ds. */
static double accuracy(ud_model_t *m, ud_dataset_t *ds)
{
    size_t n = ud_dataset_count(ds);
    float *x = malloc(n * D * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ud_dataset_get(ds, i, x + i * D), 0);
        y[i] = ud_dataset_label(ds, i);
    }
    assert_int_equal(ud_model_forward(m, x, (int)n, false), 0);
    int correct;
    double loss;
    assert_int_equal(ud_model_loss(m, y, (int)n, &loss, &correct, NULL), 0);
    free(x);
    free(y);
    return (double)correct / (double)n;
}

static const unsigned ALL = UD_EVENT_TRAINING_BEGIN | UD_EVENT_EPOCH_END | UD_EVENT_MINIBATCH_END;

/* ---- tests ---- */

static void test_training_learns(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    ud_model_t *m = make_model(3);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    double before = accuracy(m, ds);
    struct ud_update_config c = make_cfg(8);
    static struct seen s;
    seen_init(&s);
    ud_update_task_t *t = task_or_fail(m, &p, &c, UD_EVENT_EPOCH_END, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    assert_int_equal(ud_update_task_state(t), UD_TASK_COMPLETED);
    assert_int_equal(ud_update_task_error(t)->code, 0);
    assert_int_equal(s.completion, 1);
    assert_int_equal(s.completion_event, 0);
    assert_int_equal(s.completion_state, UD_TASK_COMPLETED);
    assert_int_equal(s.epoch_end, 8);
    double first = s.log[0].m.loss, last = s.log[7].m.loss;
    if (!(last < 0.3 * first))
        fail_msg("loss went from %g to %g", first, last);
    assert_true(s.log[7].m.accuracy > 0.95);
    double after = accuracy(m, ds);
    if (!(after > 0.97 && after > before))
        fail_msg("accuracy %g -> %g", before, after);
    /* Running again is refused: a task runs once. */
    assert_int_equal(ud_update_task_run(t), UD_ESTATE);
    assert_int_equal(ud_update_task_resume(t), UD_ESTATE);
    assert_int_equal(ud_update_task_cancel(t), UD_ESTATE);
    ud_update_task_destroy(&t);
    assert_null(t);
    ud_update_task_destroy(&t);
    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

static void test_events_and_metrics(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    ud_model_t *m = make_model(3);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    static struct seen s;
    seen_init(&s);
    struct ud_update_config c = make_cfg(3);
    c.validation = &p;
    ud_update_task_t *t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    assert_int_equal(s.begin, 1);
    assert_int_equal(s.epoch_end, 3);
    assert_int_equal(s.minibatch_end, 3 * SPE);
    assert_int_equal(s.other, 0);
    assert_int_equal(s.completion, 1);
    assert_int_equal(s.n, 1 + 3 + 3 * SPE);

    /* The exact sequence: begin, then per epoch SPE mini-batches then the epoch end. */
    assert_int_equal(s.log[0].event, UD_EVENT_TRAINING_BEGIN);
    assert_int_equal(s.log[0].m.epoch_index, 0);
    assert_int_equal(s.log[0].m.step, 0);
    int k = 1;
    for (int e = 0; e < 3; e++) {
        for (int b = 0; b < SPE; b++, k++) {
            const struct ud_update_metrics *mm = &s.log[k].m;
            assert_int_equal(s.log[k].event, UD_EVENT_MINIBATCH_END);
            assert_int_equal(s.log[k].state, UD_TASK_SUSPENDED);
            assert_int_equal(mm->epoch_index, e);
            assert_int_equal(mm->minibatch_index, b);
            assert_int_equal(mm->step, e * SPE + b + 1);
            assert_int_equal(mm->steps_per_epoch, SPE);
            int64_t seen_samples = b == SPE - 1 ? NSAMP : (int64_t)(b + 1) * BATCH;
            assert_int_equal(mm->samples, seen_samples);
            assert_true(isfinite(mm->loss) && mm->loss > 0);
            assert_true(mm->accuracy >= 0 && mm->accuracy <= 1);
            assert_true(mm->seconds >= mm->epoch_seconds && mm->epoch_seconds >= 0);
            assert_near(mm->learning_rate, 0.05, 0);
            assert_true(isnan(mm->val_loss));
        }
        const struct ud_update_metrics *mm = &s.log[k].m;
        assert_int_equal(s.log[k].event, UD_EVENT_EPOCH_END);
        assert_int_equal(mm->epoch_index, e);
        assert_int_equal(mm->minibatch_index, SPE - 1);
        assert_int_equal(mm->samples, NSAMP);
        assert_true(mm->samples_per_sec > 0);
        /* Validation on the training data itself: a real number, and a decent one late on. */
        assert_true(mm->val_loss > 0 && isfinite(mm->val_loss));
        assert_true(mm->val_accuracy >= 0 && mm->val_accuracy <= 1);
        k++;
    }
    assert_true(s.log[k - 1].m.val_accuracy > 0.9);
    int64_t pe, pm;
    ud_update_task_position(t, &pe, &pm);
    assert_int_equal(pe, 3);
    assert_int_equal(pm, 0);
    struct ud_update_metrics last = ud_update_task_metrics(t);
    assert_int_equal(last.epoch_index, 2);
    assert_int_equal(last.step, 3 * SPE);
    ud_update_task_destroy(&t);

    /* Epoch ends only. */
    seen_init(&s);
    c.validation = NULL;
    t = task_or_fail(m, &p, &c, UD_EVENT_EPOCH_END, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    assert_int_equal(s.begin, 0);
    assert_int_equal(s.minibatch_end, 0);
    assert_int_equal(s.epoch_end, 3);
    assert_true(isnan(s.log[0].m.val_loss)); /* no validation provider */
    ud_update_task_destroy(&t);

    /* Begin and mini-batch ends only. */
    seen_init(&s);
    t = task_or_fail(m, &p, &c, UD_EVENT_TRAINING_BEGIN | UD_EVENT_MINIBATCH_END, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    assert_int_equal(s.begin, 1);
    assert_int_equal(s.minibatch_end, 3 * SPE);
    assert_int_equal(s.epoch_end, 0);
    ud_update_task_destroy(&t);

    /* Nothing subscribed: only the completion handler. */
    seen_init(&s);
    t = task_or_fail(m, &p, &c, 0, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.completion, 1);
    ud_update_task_destroy(&t);
    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

static void test_resume_with_parameters(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_update_config c = make_cfg(3);
    c.params.momentum = 0; /* plain SGD: lr 0 means no change at all */
    static struct seen s;

    /* Control: without the change, training goes on moving the parameters. */
    ud_model_t *m = make_model(3);
    seen_init(&s);
    s.lr_zero_at_epoch_end = 99; /* never: but record the sha at epoch 0 ourselves below */
    ud_update_task_t *t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    ud_update_task_destroy(&t);
    char control[65];
    ud_model_params_sha256(m, control);
    ud_model_destroy(&m);

    m = make_model(3);
    seen_init(&s);
    s.lr_zero_at_epoch_end = 0;
    t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    assert_int_equal(s.rwp_rc_range, UD_ERANGE);
    assert_int_equal(s.rwp_rc_nan, UD_ERANGE);
    assert_int_equal(s.rwp_rc_key, UD_EPARAMETERS);
    char final[65];
    ud_model_params_sha256(m, final);
    assert_string_equal(final, s.sha_at_epoch_end); /* nothing moved after epoch 0 */
    assert_string_not_equal(final, control);        /* ... which is not what plain runs do */
    /* Epoch 0 ran at 0.05 and its epoch-end snapshot still says so; the next mini-batch used
     * 0 (the refused 2.0 never took effect) and the parameters snapshot shows it. */
    for (int i = 0; i < s.n; i++) {
        if (s.log[i].event != UD_EVENT_MINIBATCH_END)
            continue;
        double want = s.log[i].m.epoch_index == 0 ? 0.05 : 0.0;
        assert_near(s.log[i].m.learning_rate, want, 0);
        assert_near(s.log[i].param_lr, want, 0);
    }
    /* After the task ends, parameters cannot be changed. */
    struct ud_param_value v = {UD_PARAM_LEARNING_RATE, 0.1};
    assert_int_equal(ud_update_task_resume_with_parameters(t, &v, 1), UD_ESTATE);
    ud_update_task_destroy(&t);
    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

static void test_cancel_in_handler(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    ud_model_t *m = make_model(3);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_update_config c = make_cfg(3);
    static struct seen s;
    seen_init(&s);
    s.cancel_at_step = 3;
    ud_update_task_t *t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_run(t), UD_ECANCELLED);
    assert_int_equal(ud_update_task_state(t), UD_TASK_FAILED);
    assert_int_equal(ud_update_task_error(t)->code, UD_ECANCELLED);
    assert_non_null(strstr(ud_update_task_error(t)->msg, "cancelled"));
    assert_int_equal(s.minibatch_end, 3); /* no step after the boundary */
    assert_int_equal(s.epoch_end, 0);
    assert_int_equal(s.completion, 1);
    assert_int_equal(s.completion_state, UD_TASK_FAILED);
    assert_int_equal(s.completion_err, UD_ECANCELLED);
    int64_t pe, pm;
    ud_update_task_position(t, &pe, &pm);
    assert_int_equal(pe, 0);
    assert_int_equal(pm, 3);
    ud_update_task_destroy(&t);

    /* Cancelled before it starts: fails at the first boundary, completion still called. */
    seen_init(&s);
    t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_cancel(t), 0);
    assert_int_equal(ud_update_task_run(t), UD_ECANCELLED);
    assert_int_equal(s.minibatch_end, 0);
    assert_int_equal(s.completion, 1);
    ud_update_task_destroy(&t);
    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_cancel_from_another_thread(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    ud_model_t *m = make_model(3);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_update_config c = make_cfg(1000000); /* would run for a very long time */
    static struct seen s;
    seen_init(&s);
    ud_update_task_t *t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_wait(t), UD_ESTATE); /* not started */
    assert_int_equal(ud_update_task_resume(t), 0);
    assert_int_equal(ud_update_task_resume(t), UD_ESTATE);
    for (int i = 0; i < 10000 && atomic_load(&s.minibatches) < 5; i++)
        sleep_ms(1);
    assert_true(atomic_load(&s.minibatches) >= 5);
    int st = ud_update_task_state(t);
    assert_true(st == UD_TASK_RUNNING || st == UD_TASK_SUSPENDED);
    struct ud_update_metrics live = ud_update_task_metrics(t);
    assert_true(live.step >= 5);
    assert_int_equal(ud_update_task_cancel(t), 0);
    assert_int_equal(ud_update_task_wait(t), UD_ECANCELLED);
    assert_int_equal(ud_update_task_wait(t), UD_ECANCELLED); /* idempotent */
    assert_int_equal(ud_update_task_state(t), UD_TASK_FAILED);
    assert_int_equal(ud_update_task_error(t)->code, UD_ECANCELLED);
    assert_int_equal(s.completion, 1);
    assert_int_equal(s.completion_err, UD_ECANCELLED);
    assert_true(s.epoch_end < 1000000);
    ud_update_task_destroy(&t);

    /* Destroying a running task cancels and joins it. */
    seen_init(&s);
    t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_resume(t), 0);
    for (int i = 0; i < 10000 && atomic_load(&s.minibatches) < 2; i++)
        sleep_ms(1);
    ud_update_task_destroy(&t);
    assert_null(t);
    assert_int_equal(s.completion, 1);
    assert_int_equal(s.completion_err, UD_ECANCELLED);

    /* An asynchronous run that completes. */
    seen_init(&s);
    struct ud_update_config c2 = make_cfg(2);
    t = task_or_fail(m, &p, &c2, ALL, &s);
    assert_int_equal(ud_update_task_resume(t), 0);
    assert_int_equal(ud_update_task_wait(t), 0);
    assert_int_equal(ud_update_task_state(t), UD_TASK_COMPLETED);
    assert_int_equal(s.epoch_end, 2);
    assert_int_equal(s.completion, 1);
    ud_update_task_destroy(&t);
    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

static void test_frozen_layer(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    ud_model_t *m = make_model(3);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    assert_int_equal(ud_model_set_layer_updatable(m, 0, false), 0);
    struct ud_span w0, b0, w2, b2;
    ud_model_layer_params(m, 0, &w0, &b0);
    ud_model_layer_params(m, 2, &w2, &b2);
    size_t np = ud_model_param_count(m);
    float *before = malloc(np * sizeof *before);
    assert_non_null(before);
    memcpy(before, ud_model_params(m), np * sizeof *before);
    struct ud_update_config c = make_cfg(2);
    static struct seen s;
    seen_init(&s);
    ud_update_task_t *t = task_or_fail(m, &p, &c, 0, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    const float *after = ud_model_params(m);
    assert_memory_equal(after + w0.offset, before + w0.offset, w0.count * sizeof(float));
    assert_memory_equal(after + b0.offset, before + b0.offset, b0.count * sizeof(float));
    assert_true(memcmp(after + w2.offset, before + w2.offset, w2.count * sizeof(float)) != 0);
    assert_true(memcmp(after + b2.offset, before + b2.offset, b2.count * sizeof(float)) != 0);
    ud_update_task_destroy(&t);
    free(before);
    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

/* Trains a fresh model (init seed 3) with c and returns its parameter hash. */
static void train_sha(const struct ud_update_config *c, ud_dataset_t *ds, char sha[65])
{
    ud_model_t *m = make_model(3);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    static struct seen s;
    seen_init(&s);
    struct ud_update_config cc = *c;
    if (!cc.hooks.user)
        cc.hooks.user = m; /* for applying_grad_sync */
    ud_update_task_t *t = task_or_fail(m, &p, &cc, 0, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    ud_model_params_sha256(m, sha);
    ud_update_task_destroy(&t);
    ud_model_destroy(&m);
}

static void test_determinism(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    struct ud_update_config c = make_cfg(3);
    char a[65], b[65], other[65], noshuffle[65];
    train_sha(&c, ds, a);
    train_sha(&c, ds, b);
    assert_string_equal(a, b);
    c.params.seed = 12; /* another shuffle */
    train_sha(&c, ds, other);
    assert_string_not_equal(a, other);
    c.params.shuffle = 0;
    train_sha(&c, ds, noshuffle);
    assert_string_not_equal(other, noshuffle);
    c.params.seed = 11; /* without shuffling the seed does not matter */
    train_sha(&c, ds, a);
    assert_string_equal(a, noshuffle);
    ud_dataset_destroy(&ds);
}

static int noop_grad_sync(void *user, float *g, size_t n, ud_span_apply_fn apply, void *actx,
                          struct ud_err *e)
{
    (void)user, (void)g, (void)n, (void)apply, (void)actx, (void)e;
    return 0;
}

/* A grad_sync that leaves a NaN in the summed gradients at step 1, then steps every span
 * through apply (user->apply) or leaves the step to the engine. */
struct poison {
    ud_model_t *m;
    int apply, calls;
};

static int poisoning_grad_sync(void *user, float *g, size_t n, ud_span_apply_fn apply, void *actx,
                               struct ud_err *e)
{
    struct poison *ps = user;
    (void)n, (void)e;
    if (ps->calls++ == 1)
        g[0] = NAN;
    const struct ud_span *spans;
    size_t ns = ud_model_updatable_spans(ps->m, &spans);
    for (size_t i = 0; ps->apply && i < ns; i++)
        apply(actx, spans[i]);
    return 0;
}

/* Gradients that are not finite under a finite loss stop the run at that step with the one
 * message, whether grad_sync steps the spans through apply or the engine steps after it; the
 * engine checks before it steps, so then the parameters stay finite. */
static void test_nonfinite_gradients(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    for (int apply = 0; apply < 2; apply++) {
        ud_model_t *m = make_model(3);
        struct poison ps = {m, apply, 0};
        struct ud_update_config c = make_cfg(1);
        c.hooks.grad_sync = poisoning_grad_sync;
        c.hooks.user = &ps;
        static struct seen s;
        seen_init(&s);
        ud_update_task_t *t = task_or_fail(m, &p, &c, 0, &s);
        assert_int_equal(ud_update_task_run(t), UD_ENONFINITE);
        const char *msg = ud_update_task_error(t)->msg;
        if (strcmp(msg, "gradients became NaN or infinite at epoch 0 step 1; lower the learning "
                        "rate (or check the data for non-finite values)") != 0)
            fail_msg("message: %s", msg);
        size_t np = ud_model_param_count(m);
        const float *pp = ud_model_params(m);
        for (size_t i = 0; !apply && i < np; i++)
            assert_true(isfinite(pp[i]));
        ud_update_task_destroy(&t);
        ud_model_destroy(&m);
    }
    ud_dataset_destroy(&ds);
}

/* Steps every span through apply, top layer first, as the MPI worker does when each bucket's
 * sum arrives. */
static int applying_grad_sync(void *user, float *g, size_t n, ud_span_apply_fn apply, void *actx,
                              struct ud_err *e)
{
    ud_model_t *m = user;
    const struct ud_span *spans;
    size_t ns = ud_model_updatable_spans(m, &spans);
    (void)g, (void)n, (void)e;
    for (size_t i = ns; i-- > 0;)
        if (apply(actx, spans[i]))
            return UD_ENONFINITE;
    return 0;
}

/* Standalone runs apply each layer's step inside backward (fused); a run with a grad_sync hook
 * steps after backward, or span by span through apply. All must give bitwise the same parameters,
 * for SGD with momentum, Nesterov and weight decay, and for Adam. */
static void test_fused_step_matches_unfused(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    for (int variant = 0; variant < 2; variant++) {
        struct ud_update_config c = make_cfg(2);
        if (variant == 1) {
            c.params.optimizer = UD_OPT_ADAM;
            c.params.learning_rate = 0.01;
        } else {
            c.params.nesterov = 1;
            c.params.weight_decay = 1e-3;
        }
        char fused[65], unfused[65], applied[65];
        train_sha(&c, ds, fused);
        c.hooks.grad_sync = noop_grad_sync;
        train_sha(&c, ds, unfused);
        assert_string_equal(fused, unfused);
        c.hooks.grad_sync = applying_grad_sync;
        train_sha(&c, ds, applied);
        assert_string_equal(fused, applied);
    }
    ud_dataset_destroy(&ds);
}

static void test_epoch_order_and_rank_slices(void **state)
{
    (void)state;
    enum { n = 1000 };
    static uint32_t perm[n], again[n], next[n];
    static unsigned char hit[n];
    ud_update_epoch_order(5, 0, 0, perm, n);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(perm[i], i);
    for (int64_t epoch = 0; epoch < 4; epoch++) {
        ud_update_epoch_order(5, epoch, 1, perm, n);
        memset(hit, 0, sizeof hit);
        for (size_t i = 0; i < n; i++) {
            assert_true(perm[i] < n);
            assert_int_equal(hit[perm[i]], 0);
            hit[perm[i]] = 1;
        }
        ud_update_epoch_order(5, epoch, 1, again, n);
        assert_memory_equal(perm, again, sizeof perm); /* reproducible from (seed, epoch) */
        ud_update_epoch_order(5, epoch + 1, 1, next, n);
        assert_true(memcmp(perm, next, sizeof perm) != 0); /* a new order every epoch */
        ud_update_epoch_order(6, epoch, 1, next, n);
        assert_true(memcmp(perm, next, sizeof perm) != 0); /* and per seed */
    }

    /* Rank slices: for any n, G and w, the ranks' slices of every batch are disjoint,
     * contiguous, in rank order, cover the batch, and differ in size by at most one; every
     * rank runs ceil(n / G) steps. */
    for (size_t nn = 1; nn <= 40; nn++) {
        for (size_t G = 1; G <= 17; G++) {
            size_t steps = (nn + G - 1) / G;
            for (int w = 1; w <= 7; w++) {
                size_t covered = 0;
                for (size_t s = 0; s < steps; s++) {
                    size_t lo_g = s * G, bsz = lo_g + G < nn ? G : nn - lo_g;
                    size_t expect_lo = 0, minb = SIZE_MAX, maxb = 0;
                    for (int r = 0; r < w; r++) {
                        size_t lo, hi;
                        ud_update_rank_slice(bsz, r, w, &lo, &hi);
                        assert_int_equal(lo, expect_lo);
                        assert_true(hi >= lo);
                        expect_lo = hi;
                        minb = hi - lo < minb ? hi - lo : minb;
                        maxb = hi - lo > maxb ? hi - lo : maxb;
                    }
                    assert_int_equal(expect_lo, bsz);
                    assert_true(maxb - minb <= 1);
                    covered += bsz;
                }
                assert_int_equal(covered, nn);
            }
        }
    }
    size_t lo, hi;
    ud_update_rank_slice(10, 0, 0, &lo, &hi); /* world 0 means standalone */
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 10);
}

static void test_resume_position(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_update_config c = make_cfg(2);
    c.params.optimizer = UD_OPT_ADAM; /* state and step count both matter */
    c.params.learning_rate = 0.01;
    c.params.schedule = UD_LR_COSINE; /* and so does the global step */
    static struct seen s;

    /* Straight: 2 epochs. */
    ud_model_t *ref = make_model(3);
    seen_init(&s);
    ud_update_task_t *t = task_or_fail(ref, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    ud_update_task_destroy(&t);
    double ref_loss[2] = {s.epoch_end_loss[0], s.epoch_end_loss[1]};
    double ref_acc[2] = {s.epoch_end_acc[0], s.epoch_end_acc[1]};

    for (int variant = 0; variant < 2; variant++) {
        ud_model_t *m = make_model(3);
        seen_init(&s);
        int64_t pe, pm;
        if (variant == 0) {
            /* First half: a 2-epoch run cancelled after the last step of epoch 0. */
            s.cancel_at_step = SPE;
        } else {
            /* Stop in the middle of epoch 0. */
            s.cancel_at_step = 4;
        }
        t = task_or_fail(m, &p, &c, ALL, &s);
        assert_int_equal(ud_update_task_run(t), UD_ECANCELLED);
        ud_update_task_position(t, &pe, &pm);
        assert_int_equal(pe, variant == 0 ? 1 : 0);
        assert_int_equal(pm, variant == 0 ? 0 : 4);
        /* The checkpoint: optimizer state and step count. */
        size_t ns;
        float *st = ud_optim_state(ud_update_task_optim(t), &ns);
        float *saved = malloc(ns * sizeof *saved);
        assert_non_null(saved);
        memcpy(saved, st, ns * sizeof *saved);
        int64_t steps = ud_optim_steps(ud_update_task_optim(t));
        assert_int_equal(steps, s.cancel_at_step);
        ud_update_task_destroy(&t);

        struct ud_update_config c2 = c;
        c2.start_epoch = pe;
        c2.start_minibatch = pm;
        if (pm > 0)
            memcpy(c2.start_sums, s.sums_at_cancel, sizeof c2.start_sums);
        seen_init(&s);
        t = task_or_fail(m, &p, &c2, ALL, &s);
        size_t ns2;
        float *st2 = ud_optim_state(ud_update_task_optim(t), &ns2);
        assert_int_equal(ns2, ns);
        memcpy(st2, saved, ns * sizeof *saved);
        ud_optim_set_steps(ud_update_task_optim(t), steps);
        assert_int_equal(ud_update_task_run(t), 0);
        /* The resumed run reports its own first step where the first run stopped. */
        assert_int_equal(s.log[0].event, UD_EVENT_TRAINING_BEGIN);
        assert_int_equal(s.log[0].m.epoch_index, pe);
        assert_int_equal(s.log[0].m.minibatch_index, pm);
        assert_int_equal(s.log[1].m.step, steps + 1);
        assert_int_equal(s.minibatch_end, 2 * SPE - steps);
        assert_memory_equal(ud_model_params(m), ud_model_params(ref),
                            ud_model_param_count(m) * sizeof(float));
        /* With the epoch's sums carried over, the resumed epoch reports what the straight run
         * did, exactly. */
        assert_true(s.epoch_end_loss[pe] == ref_loss[pe]);
        assert_true(s.epoch_end_acc[pe] == ref_acc[pe]);
        ud_update_task_destroy(&t);
        free(saved);
        ud_model_destroy(&m);
    }
    ud_model_destroy(&ref);
    ud_dataset_destroy(&ds);
}

/* ---- a provider that injects faults ---- */

struct faulty {
    struct ud_batch_provider inner;
    size_t nan_at, fail_at; /* SIZE_MAX: never */
};

static size_t faulty_count(void *self)
{
    struct faulty *f = self;
    return ud_batch_provider_count(&f->inner);
}

static int faulty_get(void *self, size_t i, float *x, int32_t *label, struct ud_err *e)
{
    struct faulty *f = self;
    if (i == f->fail_at)
        return ud_err_set(e, UD_EIO, "disk on fire reading sample %zu", i);
    int rc = ud_batch_provider_get(&f->inner, i, x, label, e);
    if (!rc && i == f->nan_at)
        x[2] = NAN;
    return rc;
}

static const struct ud_batch_provider_ops faulty_ops = {faulty_count, faulty_get};

static void test_failures(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    ud_model_t *m = make_model(3);
    struct faulty f = {.nan_at = 37, .fail_at = SIZE_MAX};
    ud_dataset_provider(ds, NULL, 0, &f.inner);
    struct ud_batch_provider p = {&faulty_ops, &f};
    struct ud_update_config c = make_cfg(2);
    static struct seen s;

    /* A NaN feature: the run fails before the bad step changes anything. */
    seen_init(&s);
    ud_update_task_t *t = task_or_fail(m, &p, &c, ALL, &s);
    assert_int_equal(ud_update_task_run(t), UD_ENONFINITE);
    assert_int_equal(ud_update_task_state(t), UD_TASK_FAILED);
    const struct ud_err *err = ud_update_task_error(t);
    assert_int_equal(err->code, UD_ENONFINITE);
    assert_msg_has(err, "epoch 0");
    assert_msg_has(err, "lower the learning rate");
    assert_int_equal(s.completion, 1);
    assert_int_equal(s.completion_err, UD_ENONFINITE);
    assert_true(s.minibatch_end < SPE);
    size_t np = ud_model_param_count(m);
    const float *pp = ud_model_params(m);
    for (size_t i = 0; i < np; i++)
        assert_true(isfinite(pp[i]));
    ud_update_task_destroy(&t);

    /* Without a ReLU to turn NaN into 0, the NaN reaches the output and the loss. */
    {
        struct ud_arch a;
        struct ud_err pe = {0};
        assert_int_equal(ud_arch_parse("input 8 1 1\ndense 3\nsoftmax\n", &a, &pe), 0);
        ud_model_t *lin = ud_model_new(&a, &pe);
        assert_non_null(lin);
        ud_model_init_params(lin, 1);
        seen_init(&s);
        t = task_or_fail(lin, &p, &c, 0, &s);
        assert_int_equal(ud_update_task_run(t), UD_ENONFINITE);
        if (!strstr(ud_update_task_error(t)->msg, "loss became NaN at epoch 0 step "))
            fail_msg("message: %s", ud_update_task_error(t)->msg);
        ud_update_task_destroy(&t);
        ud_model_destroy(&lin);
    }

    /* The provider fails: its error and message come through, with the sample index. */
    f.nan_at = SIZE_MAX;
    f.fail_at = 5;
    seen_init(&s);
    t = task_or_fail(m, &p, &c, 0, &s);
    assert_int_equal(ud_update_task_run(t), UD_EIO);
    err = ud_update_task_error(t);
    assert_int_equal(err->code, UD_EIO);
    assert_msg_has(err, "disk on fire");
    assert_msg_has(err, "sample 5");
    assert_int_equal(s.completion, 1);
    assert_int_equal(s.completion_state, UD_TASK_FAILED);
    ud_update_task_destroy(&t);

    /* Creation refuses what cannot work. */
    f.fail_at = SIZE_MAX;
    struct ud_update_handlers h = {ALL, on_progress, on_completion, &s};
    struct ud_err e = {0};
    struct ud_update_handlers nocomp = {ALL, on_progress, NULL, &s};
    assert_null(ud_update_task_new(m, &p, &c, &nocomp, &e));
    assert_int_equal(e.code, UD_EINVAL);
    assert_msg_has(&e, "completion");

    struct ud_update_config bad = c;
    bad.params.learning_rate = -1;
    assert_null(ud_update_task_new(m, &p, &bad, &h, &e));
    assert_int_equal(e.code, UD_ERANGE);
    assert_msg_has(&e, "learningRate");

    bad = c;
    bad.start_epoch = 2;
    bad.start_minibatch = 1;
    assert_null(ud_update_task_new(m, &p, &bad, &h, &e));
    assert_int_equal(e.code, UD_ERANGE);
    bad = c;
    bad.start_minibatch = SPE;
    assert_null(ud_update_task_new(m, &p, &bad, &h, &e));
    assert_int_equal(e.code, UD_ERANGE);

    bad = c;
    bad.hooks.world = 2;
    bad.hooks.rank = 2;
    assert_null(ud_update_task_new(m, &p, &bad, &h, &e));
    assert_int_equal(e.code, UD_EINVAL);

    uint32_t none[1] = {0};
    struct ud_batch_provider empty;
    ud_dataset_provider(ds, none, 0, &empty);
    assert_null(ud_update_task_new(m, &empty, &c, &h, &e));
    assert_int_equal(e.code, UD_EEMPTY);

    /* A start at the very end is legal and does nothing. */
    bad = c;
    bad.start_epoch = 2;
    seen_init(&s);
    t = task_or_fail(m, &p, &bad, ALL, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    assert_int_equal(s.minibatch_end, 0);
    assert_int_equal(s.completion, 1);
    ud_update_task_destroy(&t);

    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

static void test_identity_and_names(void **state)
{
    (void)state;
    ud_dataset_t *ds = make_data(NSAMP, 1);
    ud_model_t *m = make_model(3);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_update_config c = make_cfg(1);
    static struct seen s;
    seen_init(&s);
    ud_update_task_t *a = task_or_fail(m, &p, &c, 0, &s), *b = task_or_fail(m, &p, &c, 0, &s);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "update-%ld-", (long)getpid());
    assert_true(strncmp(ud_update_task_identifier(a), prefix, strlen(prefix)) == 0);
    assert_string_not_equal(ud_update_task_identifier(a), ud_update_task_identifier(b));
    assert_ptr_equal(ud_update_task_model(a), m);
    assert_non_null(ud_update_task_optim(a));
    assert_int_equal(ud_update_task_error(a)->code, 0);
    int64_t pe = -1, pm = -1;
    ud_update_task_position(a, &pe, &pm);
    assert_int_equal(pe, 0);
    assert_int_equal(pm, 0);
    ud_update_task_destroy(&a);
    ud_update_task_destroy(&b);
    assert_string_equal(ud_task_state_name(UD_TASK_SUSPENDED), "suspended");
    assert_string_equal(ud_task_state_name(UD_TASK_RUNNING), "running");
    assert_string_equal(ud_task_state_name(UD_TASK_CANCELLING), "cancelling");
    assert_string_equal(ud_task_state_name(UD_TASK_COMPLETED), "completed");
    assert_string_equal(ud_task_state_name(UD_TASK_FAILED), "failed");
    /* Core ML's raw values. */
    assert_int_equal(UD_TASK_SUSPENDED, 1);
    assert_int_equal(UD_TASK_FAILED, 5);
    assert_int_equal(UD_EVENT_TRAINING_BEGIN | UD_EVENT_EPOCH_END | UD_EVENT_MINIBATCH_END, 7);
    ud_model_destroy(&m);
    ud_dataset_destroy(&ds);
}

/* ---- two ranks on two threads, summing through the hooks ---- */

struct sim_shared {
    pthread_barrier_t bar;
    float *g[2];
    double *v[2];
    int grad_ready_calls[2], grad_syncs[2], after_steps[2];
};
struct sim_rank {
    struct sim_shared *sh;
    int rank;
    ud_model_t *m;
    const struct ud_batch_provider *p;
    struct ud_update_config c;
    int rc;
};

static void sim_ready(void *user, int layer, struct ud_span span)
{
    struct sim_rank *r = user;
    (void)layer;
    (void)span;
    r->sh->grad_ready_calls[r->rank]++;
}

/* Both ranks compute the same sum in the same order, then each copies it into its own
 * buffer once neither still reads the other's. */
static int sim_grad_sync(void *user, float *g, size_t n, ud_span_apply_fn apply, void *actx,
                         struct ud_err *e)
{
    (void)apply, (void)actx;
    struct sim_rank *r = user;
    struct sim_shared *sh = r->sh;
    float *sum = malloc(n * sizeof *sum);
    if (!sum)
        return ud_err_set(e, UD_ENOMEM, "sim");
    sh->g[r->rank] = g;
    pthread_barrier_wait(&sh->bar);
    for (size_t i = 0; i < n; i++)
        sum[i] = sh->g[0][i] + sh->g[1][i];
    pthread_barrier_wait(&sh->bar);
    memcpy(g, sum, n * sizeof *sum);
    free(sum);
    sh->grad_syncs[r->rank]++;
    return 0;
}

static int sim_metric_sync(void *user, double *v, size_t n, struct ud_err *e)
{
    struct sim_rank *r = user;
    struct sim_shared *sh = r->sh;
    double sum[8];
    (void)e;
    assert_true(n <= 8);
    sh->v[r->rank] = v;
    pthread_barrier_wait(&sh->bar);
    for (size_t i = 0; i < n; i++)
        sum[i] = sh->v[0][i] + sh->v[1][i];
    pthread_barrier_wait(&sh->bar);
    memcpy(v, sum, n * sizeof *sum);
    return 0;
}

static int sim_after_step(void *user, ud_update_task_t *t, struct ud_err *e)
{
    struct sim_rank *r = user;
    (void)t;
    (void)e;
    r->sh->after_steps[r->rank]++;
    return 0;
}

static void sim_completion(struct ud_update_context *ctx, void *user)
{
    (void)ctx;
    (void)user;
}

static void *sim_thread(void *arg)
{
    struct sim_rank *r = arg;
    struct ud_update_handlers h = {0, NULL, sim_completion, NULL};
    struct ud_err e = {0};
    ud_update_task_t *t = ud_update_task_new(r->m, r->p, &r->c, &h, &e);
    r->rc = t ? ud_update_task_run(t) : e.code;
    ud_update_task_destroy(&t);
    return NULL;
}

static void test_two_ranks(void **state)
{
    (void)state;
    /* 97 samples in batches of 16: the last batch has 1 sample, so rank 1 gets none there. */
    ud_dataset_t *ds = make_data(97, 2);
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_update_config c = make_cfg(2);

    ud_model_t *single = make_model(3);
    static struct seen s;
    seen_init(&s);
    ud_update_task_t *t = task_or_fail(single, &p, &c, 0, &s);
    assert_int_equal(ud_update_task_run(t), 0);
    ud_update_task_destroy(&t);

    struct sim_shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_barrier_init(&sh.bar, NULL, 2);
    struct sim_rank r[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        r[i] = (struct sim_rank){&sh, i, make_model(3), &p, c, -1};
        r[i].c.hooks = (struct ud_update_hooks){
            i, 2, sim_ready, sim_grad_sync, sim_metric_sync, sim_after_step, &r[i], NULL};
        assert_int_equal(pthread_create(&th[i], NULL, sim_thread, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&sh.bar);
    assert_int_equal(r[0].rc, 0);
    assert_int_equal(r[1].rc, 0);
    int steps = 2 * 7;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sh.grad_syncs[i], steps);
        assert_int_equal(sh.after_steps[i], steps);
        assert_int_equal(sh.grad_ready_calls[i], 2 * steps); /* two dense layers per step */
    }
    size_t np = ud_model_param_count(single);
    /* Both ranks applied the same summed gradients: identical models. */
    assert_memory_equal(ud_model_params(r[0].m), ud_model_params(r[1].m), np * sizeof(float));
    /* And the same model as one process, up to float summation order. */
    const float *a = ud_model_params(single), *b = ud_model_params(r[0].m);
    double worst = 0;
    /* A compare, not fmax(): GCC 12's aarch64 vectorizer crashes on an fmax reduction at -O3
     * (internal compiler error in vect_transform_reduction; docs/cross.md). */
    for (size_t i = 0; i < np; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > worst)
            worst = d;
    }
    if (worst > 1e-4)
        fail_msg("two ranks differ from one process by %g", worst);
    for (int i = 0; i < 2; i++)
        ud_model_destroy(&r[i].m);
    ud_model_destroy(&single);
    ud_dataset_destroy(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_learns),
        cmocka_unit_test(test_events_and_metrics),
        cmocka_unit_test(test_resume_with_parameters),
        cmocka_unit_test(test_cancel_in_handler),
        cmocka_unit_test(test_cancel_from_another_thread),
        cmocka_unit_test(test_frozen_layer),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_fused_step_matches_unfused),
        cmocka_unit_test(test_epoch_order_and_rank_slices),
        cmocka_unit_test(test_resume_position),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_nonfinite_gradients),
        cmocka_unit_test(test_identity_and_names),
        cmocka_unit_test(test_two_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

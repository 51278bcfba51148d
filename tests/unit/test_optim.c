/*  test_optim.c — the optimizers against their double-precision reference and hand-computed
 *  steps, span confinement, schedules, parameter ranges and checkpointable state. */
#include "ud_test.h"

#include <math.h>

#include "updraft/ud_optim.h"
#include "updraft/ud_update_params.h"
#include "updraft/ud_rng.h"

#define N 1037 /* odd and over one Adam block (512), so remainders and blocks are exercised */

static void fill(float *x, size_t n, struct ud_rng *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = ud_rng_normal(r) * scale;
}

static ud_optim_t *optim_or_fail(const struct ud_update_params *p, size_t n)
{
    struct ud_err e = {0};
    ud_optim_t *o = ud_optim_new(p, n, &e);
    if (!o)
        fail_msg("ud_optim_new: %s", e.msg);
    return o;
}

struct variant {
    const char *name;
    enum ud_optimizer opt;
    double momentum, wd;
    int nesterov;
};

static const struct variant variants[] = {
    {"sgd", UD_OPT_SGD, 0, 0, 0},        {"sgd+wd", UD_OPT_SGD, 0, 0.01, 0},
    {"momentum", UD_OPT_SGD, 0.9, 0, 0}, {"momentum+wd", UD_OPT_SGD, 0.9, 0.05, 0},
    {"nesterov", UD_OPT_SGD, 0.8, 0, 1}, {"nesterov+wd", UD_OPT_SGD, 0.8, 0.05, 1},
    {"adam", UD_OPT_ADAM, 0, 0, 0},      {"adam+wd", UD_OPT_ADAM, 0, 0.01, 0},
};

static struct ud_update_params params_for(const struct variant *v)
{
    struct ud_update_params p;
    ud_update_params_default(&p);
    p.optimizer = v->opt;
    p.momentum = v->momentum;
    p.weight_decay = v->wd;
    p.nesterov = v->nesterov;
    return p;
}

/* Two spans with a gap and an untouched tail; the second crosses a block boundary. */
static const struct ud_span spans[] = {{0, 300}, {400, 600}};

static void test_fast_matches_reference(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++) {
        const struct variant *v = &variants[k];
        struct ud_update_params p = params_for(v);
        ud_optim_t *fast = optim_or_fail(&p, N), *ref = optim_or_fail(&p, N);
        static float pf[N], pr[N], p0[N], g[N];
        struct ud_rng r;
        ud_rng_seed(&r, 42 + k, 7);
        fill(p0, N, &r, 1.0f);
        memcpy(pf, p0, sizeof pf);
        memcpy(pr, p0, sizeof pr);
        for (int step = 0; step < 6; step++) {
            fill(g, N, &r, 0.5f);
            double lr = 0.05 / (1 + step); /* a changing rate, as schedules give */
            ud_optim_step(fast, pf, g, spans, 2, lr);
            ud_optim_step_reference(ref, pr, g, spans, 2, lr);
        }
        size_t nf, nr;
        float *sf = ud_optim_state(fast, &nf), *sr = ud_optim_state(ref, &nr);
        assert_int_equal(nf, nr);
        assert_int_equal(nf, v->opt == UD_OPT_ADAM ? 2 * N : v->momentum ? N : 0);
        double worst = 0;
        for (size_t i = 0; i < N; i++) {
            double d = fabs((double)pf[i] - pr[i]) / (1.0 + fabs(pr[i]));
            if (d > worst)
                worst = d;
        }
        for (size_t i = 0; i < nf; i++) {
            double d = fabs((double)sf[i] - sr[i]) / (1.0 + fabs(sr[i]));
            if (d > worst)
                worst = d;
        }
        if (worst > 2e-6)
            fail_msg("%s: fast and reference differ by %g (relative)", v->name, worst);
        /* The updates are not trivially zero: parameters moved by much more than the error. */
        double moved = 0;
        for (size_t i = 0; i < 300; i++)
            moved += fabs((double)pf[i] - p0[i]) / 300;
        if (moved < 1e-3)
            fail_msg("%s: parameters moved by only %g on average", v->name, moved);
        /* Outside the spans nothing moved, in either implementation. */
        for (size_t i = 300; i < 400; i++) {
            assert_true(pf[i] == p0[i]);
            assert_true(pr[i] == p0[i]);
        }
        for (size_t i = 1000; i < N; i++)
            assert_true(pf[i] == p0[i]);
        assert_int_equal(ud_optim_steps(fast), 6);
        assert_int_equal(ud_optim_steps(ref), 6);
        ud_optim_destroy(&fast);
        ud_optim_destroy(&ref);
        assert_null(fast);
    }
}

static void test_sgd_momentum_by_hand(void **state)
{
    (void)state;
    struct ud_update_params p;
    ud_update_params_default(&p);
    p.momentum = 0.9;
    ud_optim_t *o = optim_or_fail(&p, 2);
    float x[2] = {1.0f, -2.0f};
    const float g1[2] = {0.5f, 1.0f}, g2[2] = {0.25f, -1.0f};
    const struct ud_span all = {0, 2};
    /* Step 1 (lr 0.1): v = g1 = (0.5, 1.0); p = (1 - 0.05, -2 - 0.1) = (0.95, -2.1). */
    ud_optim_step(o, x, g1, &all, 1, 0.1);
    assert_near(x[0], 0.95, 1e-6);
    assert_near(x[1], -2.1, 1e-6);
    /* Step 2: v = 0.9 (0.5, 1.0) + (0.25, -1.0) = (0.7, -0.1);
     *         p = (0.95 - 0.07, -2.1 + 0.01) = (0.88, -2.09). */
    ud_optim_step(o, x, g2, &all, 1, 0.1);
    assert_near(x[0], 0.88, 1e-6);
    assert_near(x[1], -2.09, 1e-6);
    size_t ns;
    float *v = ud_optim_state(o, &ns);
    assert_int_equal(ns, 2);
    assert_near(v[0], 0.7, 1e-6);
    assert_near(v[1], -0.1, 1e-6);
    ud_optim_destroy(&o);

    /* Nesterov, one step: v = g1; p = 1 - 0.1 (0.5 + 0.9 * 0.5) = 1 - 0.095 = 0.905. */
    p.nesterov = 1;
    o = optim_or_fail(&p, 2);
    x[0] = 1.0f;
    x[1] = -2.0f;
    ud_optim_step(o, x, g1, &all, 1, 0.1);
    assert_near(x[0], 0.905, 1e-6);
    ud_optim_destroy(&o);

    /* Plain SGD with weight decay: g' = 0.5 + 0.1 * 1 = 0.6; p = 1 - 0.1 * 0.6 = 0.94. */
    ud_update_params_default(&p);
    p.weight_decay = 0.1;
    o = optim_or_fail(&p, 2);
    x[0] = 1.0f;
    ud_optim_step(o, x, g1, &all, 1, 0.1);
    assert_near(x[0], 0.94, 1e-6);
    assert_null(ud_optim_state(o, &ns));
    assert_int_equal(ns, 0);
    ud_optim_destroy(&o);
}

static void test_adam_by_hand(void **state)
{
    (void)state;
    struct ud_update_params p;
    ud_update_params_default(&p);
    p.optimizer = UD_OPT_ADAM; /* beta1 0.9, beta2 0.999, eps 1e-8 */
    ud_optim_t *o = optim_or_fail(&p, 1);
    float x = 1.0f, g = 0.5f;
    const struct ud_span all = {0, 1};
    /* Step 1 (lr 0.1), g = 0.5:
     *   m = 0.1 * 0.5 = 0.05;  v = 0.001 * 0.25 = 0.00025
     *   mhat = 0.05 / (1 - 0.9) = 0.5;  vhat = 0.00025 / (1 - 0.999) = 0.25;  sqrt = 0.5
     *   p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.900000002 */
    ud_optim_step(o, &x, &g, &all, 1, 0.1);
    assert_near(x, 0.900000002, 1e-6);
    /* Step 2, g = -0.25:
     *   m = 0.9 * 0.05 + 0.1 * -0.25 = 0.02;  v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225
     *   mhat = 0.02 / (1 - 0.81) = 0.1052631579;  vhat = 0.00031225 / (1 - 0.998001)
     *        = 0.1562031016;  sqrt = 0.3952253807
     *   p = 0.900000002 - 0.1 * 0.1052631579 / 0.3952253907 = 0.8733662987 */
    g = -0.25f;
    ud_optim_step(o, &x, &g, &all, 1, 0.1);
    assert_near(x, 0.8733662987, 1e-6);
    size_t ns;
    float *s = ud_optim_state(o, &ns);
    assert_int_equal(ns, 2);
    assert_near(s[0], 0.02, 1e-7);
    assert_near(s[1], 0.00031225, 1e-10);
    assert_int_equal(ud_optim_steps(o), 2);
    ud_optim_destroy(&o);
}

static void test_spans_respected(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++) {
        struct ud_update_params p = params_for(&variants[k]);
        ud_optim_t *o = optim_or_fail(&p, 100);
        float x[100], x0[100], g[100];
        for (int i = 0; i < 100; i++) {
            x[i] = x0[i] = 1.0f + (float)i;
            g[i] = 1.0f;
        }
        const struct ud_span sp[] = {{10, 5}, {50, 20}};
        ud_optim_step(o, x, g, sp, 2, 0.1);
        ud_optim_step(o, x, g, sp, 2, 0.1);
        for (int i = 0; i < 100; i++) {
            int inside = (i >= 10 && i < 15) || (i >= 50 && i < 70);
            if (inside)
                assert_true(x[i] != x0[i]);
            else
                assert_memory_equal(&x[i], &x0[i], sizeof(float));
        }
        /* No spans: nothing changes. */
        memcpy(x0, x, sizeof x);
        ud_optim_step(o, x, g, NULL, 0, 0.1);
        assert_memory_equal(x, x0, sizeof x);
        ud_optim_destroy(&o);
    }
}

static void test_schedules(void **state)
{
    (void)state;
    struct ud_update_params p;
    ud_update_params_default(&p);
    assert_near(ud_lr_at(&p, 0.2, 7, 123, 1000), 0.2, 0);

    p.schedule = UD_LR_STEP;
    p.step_epochs = 2;
    p.gamma = 0.1;
    assert_near(ud_lr_at(&p, 0.2, 0, 0, 100), 0.2, 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 1, 50, 100), 0.2, 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 2, 0, 100), 0.02, 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 3, 0, 100), 0.02, 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 5, 0, 100), 0.002, 1e-15);

    p.schedule = UD_LR_COSINE;
    assert_near(ud_lr_at(&p, 0.2, 0, 0, 100), 0.2, 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 0, 50, 100), 0.1, 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 0, 25, 100), 0.1 * (1 + sqrt(0.5)), 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 0, 100, 100), 0.0, 1e-15);
    assert_near(ud_lr_at(&p, 0.2, 0, 10, 0), 0.2, 0); /* no total: constant */

    /* Every name parses to its value and back. */
    const struct {
        const char *name;
        enum ud_lr_schedule v;
    } scheds[] = {{"cosine", UD_LR_COSINE}, {"step", UD_LR_STEP}, {"constant", UD_LR_CONSTANT}};
    for (size_t i = 0; i < sizeof scheds / sizeof *scheds; i++) {
        enum ud_lr_schedule s;
        assert_int_equal(ud_lr_schedule_parse(scheds[i].name, &s), 0);
        assert_int_equal(s, scheds[i].v);
        assert_string_equal(ud_lr_schedule_name(s), scheds[i].name);
    }
    enum ud_lr_schedule s;
    assert_int_equal(ud_lr_schedule_parse("linear", &s), UD_EINVAL);
    assert_string_equal(ud_lr_schedule_name(UD_LR_STEP), "step");
    const struct {
        const char *name;
        enum ud_optimizer v;
    } opts[] = {{"adam", UD_OPT_ADAM}, {"sgd", UD_OPT_SGD}};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        enum ud_optimizer o;
        assert_int_equal(ud_optimizer_parse(opts[i].name, &o), 0);
        assert_int_equal(o, opts[i].v);
    }
    enum ud_optimizer o;
    assert_int_equal(ud_optimizer_parse("rmsprop", &o), UD_EINVAL);
    assert_string_equal(ud_optimizer_name(UD_OPT_ADAM), "adam");
    assert_string_equal(ud_optimizer_name(UD_OPT_SGD), "sgd");
}

static void test_defaults(void **state)
{
    (void)state;
    struct ud_update_params p, q;
    ud_update_params_default(&p);
    assert_int_equal(p.optimizer, UD_OPT_SGD);
    assert_near(p.learning_rate, 0.01, 0);
    assert_near(p.momentum, 0, 0);
    assert_int_equal(p.mini_batch_size, 32);
    assert_int_equal(p.epochs, 1);
    assert_int_equal(p.shuffle, 1);
    assert_int_equal(p.seed, 0);
    assert_near(p.beta1, 0.9, 0);
    assert_near(p.beta2, 0.999, 0);
    assert_near(p.eps, 1e-8, 0);
    assert_int_equal(p.schedule, UD_LR_CONSTANT);
    assert_near(p.gamma, 0.1, 0);
    assert_int_equal(p.step_epochs, 1);
    struct ud_err e = {0};
    assert_int_equal(ud_update_params_check_runnable(&p, &e), 0);

    /* Round trip through a model's defaults. */
    p.optimizer = UD_OPT_ADAM;
    p.learning_rate = 0.003;
    p.mini_batch_size = 64;
    p.epochs = 5;
    p.seed = 77;
    p.weight_decay = 1e-4;
    struct ud_update_defaults d;
    ud_update_defaults_from_params(&d, &p);
    assert_near(d.learning_rate.min, 0, 0);
    assert_near(d.learning_rate.max, 1, 0);
    assert_int_equal(d.mini_batch_size.max, 65536);
    assert_int_equal(ud_update_params_check_model_ranges(&p, &d, &e), 0);
    ud_update_params_default(&q);
    q.schedule = UD_LR_COSINE;
    ud_update_defaults_to_params(&d, &q);
    assert_int_equal(q.optimizer, UD_OPT_ADAM);
    assert_near(q.learning_rate, 0.003, 0);
    assert_int_equal(q.mini_batch_size, 64);
    assert_int_equal(q.epochs, 5);
    assert_int_equal(q.seed, 77);
    assert_near(q.weight_decay, 1e-4, 0);
    assert_int_equal(q.schedule, UD_LR_CONSTANT);

    /* A value beyond the usual range widens it, so defaults from a valid run are consistent. */
    p.learning_rate = 2;
    ud_update_defaults_from_params(&d, &p);
    assert_near(d.learning_rate.max, 2, 0);
    assert_int_equal(ud_update_params_check_model_ranges(&p, &d, &e), 0);
}

static void expect_range(const struct ud_update_params *p, const struct ud_update_defaults *d,
                         const char *key, const char *also)
{
    struct ud_err e = {0};
    assert_int_equal(ud_update_params_check_model_ranges(p, d, &e), UD_ERANGE);
    assert_int_equal(e.code, UD_ERANGE);
    if (!strstr(e.msg, key) || (also && !strstr(e.msg, also)))
        fail_msg("message \"%s\" should name %s%s%s", e.msg, key, also ? " and " : "",
                 also ? also : "");
}

static void test_params_check(void **state)
{
    (void)state;
    struct ud_update_params base, p;
    ud_update_params_default(&base);
    struct ud_update_defaults d;
    ud_update_defaults_from_params(&d, &base);
    struct ud_err e = {0};
    assert_int_equal(ud_update_params_check_model_ranges(&base, &d, &e), 0);

#define RANGE(stmt, key, also)                                                                     \
    do {                                                                                           \
        p = base;                                                                                  \
        stmt;                                                                                      \
        expect_range(&p, &d, key, also);                                                           \
    } while (0)
    RANGE(p.learning_rate = 2, "learningRate 2 is outside the model's allowed range [0, 1]", NULL);
    RANGE(p.learning_rate = -0.5, "learningRate", "-0.5");
    RANGE(p.momentum = 1.5, "momentum", "1.5");
    RANGE(p.mini_batch_size = 100000, "miniBatchSize", "[1, 65536]");
    RANGE(p.mini_batch_size = 0, "miniBatchSize", NULL);
    RANGE(p.epochs = 0, "epochs", NULL);
    RANGE(p.beta1 = 1.5, "beta1", NULL);
    RANGE(p.beta2 = -1, "beta2", NULL);
    RANGE(p.eps = 3, "eps", NULL);
    RANGE(p.weight_decay = 7, "weightDecay", NULL);
    RANGE(p.learning_rate = NAN, "learningRate", NULL);
#undef RANGE

    /* A model that narrows a range: a seed set of exactly {5}. */
    struct ud_update_defaults narrow = d;
    narrow.seed = (struct ud_param_int){5, 5, 5};
    p = base;
    p.seed = 6;
    expect_range(&p, &narrow, "seed", "[5, 5]");
    p.seed = 5;
    assert_int_equal(ud_update_params_check_model_ranges(&p, &narrow, &e), 0);

    /* Inconsistent defaults (default outside their own range) are refused too. */
    narrow = d;
    narrow.learning_rate = (struct ud_param_double){0.5, 0, 0.1};
    expect_range(&base, &narrow, "learningRate", "default");
}

static void test_params_validate(void **state)
{
    (void)state;
    struct ud_update_params base, p;
    ud_update_params_default(&base);
    struct ud_err e = {0};
#define BAD(stmt, code, word)                                                                      \
    do {                                                                                           \
        p = base;                                                                                  \
        stmt;                                                                                      \
        ud_err_clear(&e);                                                                          \
        assert_int_equal(ud_update_params_check_runnable(&p, &e), code);                           \
        assert_non_null(strstr(e.msg, word));                                                      \
        assert_null(ud_optim_new(&p, 10, &e));                                                     \
    } while (0)
    BAD(p.learning_rate = -1, UD_ERANGE, "learningRate");
    BAD(p.learning_rate = INFINITY, UD_ERANGE, "learningRate");
    BAD(p.momentum = 1, UD_ERANGE, "momentum");
    BAD(p.nesterov = 1, UD_EINVAL, "Nesterov");
    BAD(p.weight_decay = -1, UD_ERANGE, "weightDecay");
    BAD(p.beta1 = 1, UD_ERANGE, "beta1");
    BAD(p.beta2 = NAN, UD_ERANGE, "beta2");
    BAD(p.eps = 0, UD_ERANGE, "eps");
    BAD(p.mini_batch_size = 0, UD_ERANGE, "miniBatchSize");
    BAD(p.epochs = 0, UD_ERANGE, "epochs");
    BAD(p.optimizer = (enum ud_optimizer)9, UD_EINVAL, "optimizer");
    BAD((p.schedule = UD_LR_STEP, p.step_epochs = 0), UD_ERANGE, "step_epochs");
    BAD((p.schedule = UD_LR_STEP, p.gamma = 0), UD_ERANGE, "gamma");
    BAD(p.schedule = (enum ud_lr_schedule)7, UD_EINVAL, "schedule");
#undef BAD
    p = base;
    p.nesterov = 1;
    p.momentum = 0.5;
    assert_int_equal(ud_update_params_check_runnable(&p, &e), 0);
}

/* Runs `steps` steps of a fresh optimizer on x with grads drawn from r. */
static void run_steps(ud_optim_t *o, float *x, size_t n, struct ud_rng *r, int steps)
{
    float *g = malloc(n * sizeof *g);
    assert_non_null(g);
    const struct ud_span all = {0, n};
    for (int s = 0; s < steps; s++) {
        fill(g, n, r, 0.3f);
        ud_optim_step(o, x, g, &all, 1, 0.01);
    }
    free(g);
}

static void test_state_save_restore(void **state)
{
    (void)state;
    const struct variant *vs[] = {&variants[3], &variants[5], &variants[7]};
    for (size_t k = 0; k < 3; k++) {
        struct ud_update_params p = params_for(vs[k]);
        enum { n = 777 };
        static float xa[n], xb[n], xc[n];
        struct ud_rng r, ra, rb;
        ud_rng_seed(&r, 5, 1);
        fill(xa, n, &r, 1.0f);
        ud_optim_t *a = optim_or_fail(&p, n);
        run_steps(a, xa, n, &r, 3);

        /* "Checkpoint": the parameters, the state buffer and the step count. */
        memcpy(xb, xa, sizeof xb);
        memcpy(xc, xa, sizeof xc);
        ud_optim_t *b = optim_or_fail(&p, n), *c = optim_or_fail(&p, n);
        size_t na, nb, nc;
        float *sa = ud_optim_state(a, &na), *sb = ud_optim_state(b, &nb);
        float *sc = ud_optim_state(c, &nc);
        assert_int_equal(na, nb);
        assert_true(na > 0);
        memcpy(sb, sa, na * sizeof *sa);
        ud_optim_set_steps(b, ud_optim_steps(a));
        memcpy(sc, sa, na * sizeof *sa); /* c forgets the step count */

        ra = r;
        rb = r;
        run_steps(a, xa, n, &ra, 4);
        run_steps(b, xb, n, &rb, 4);
        run_steps(c, xc, n, &r, 4);
        assert_memory_equal(xa, xb, sizeof xa);
        assert_memory_equal(sa, sb, na * sizeof *sa);
        assert_int_equal(ud_optim_steps(a), ud_optim_steps(b));
        /* Without the step count a restore is wrong (bias correction for Adam, the first-step
         * rule for momentum), so the comparison above can fail. */
        assert_true(memcmp(xa, xc, sizeof xa) != 0);
        ud_optim_destroy(&a);
        ud_optim_destroy(&b);
        ud_optim_destroy(&c);
    }
}

static void test_set_params(void **state)
{
    (void)state;
    struct ud_update_params p;
    ud_update_params_default(&p);
    p.momentum = 0.9;
    struct ud_err e = {0};
    ud_optim_t *o = optim_or_fail(&p, 4);
    float x[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1};
    const struct ud_span all = {0, 4};
    ud_optim_step(o, x, g, &all, 1, 0.1);
    size_t ns;
    float *s = ud_optim_state(o, &ns);
    assert_int_equal(ns, 4);
    assert_near(s[0], 1.0, 0);

    /* Same layout: state kept, new momentum used. */
    p.momentum = 0.5;
    assert_int_equal(ud_optim_set_params(o, &p, &e), 0);
    s = ud_optim_state(o, &ns);
    assert_near(s[0], 1.0, 0);
    ud_optim_step(o, x, g, &all, 1, 0.1);
    assert_near(s[0], 1.5, 1e-7); /* 0.5 * 1 + 1 */

    /* New layout (Adam): fresh zeroed state of twice the size, steps reset. */
    p.optimizer = UD_OPT_ADAM;
    assert_int_equal(ud_optim_set_params(o, &p, &e), 0);
    s = ud_optim_state(o, &ns);
    assert_int_equal(ns, 8);
    for (size_t i = 0; i < ns; i++)
        assert_near(s[i], 0, 0);
    assert_int_equal(ud_optim_steps(o), 0);

    /* Invalid parameters are refused and change nothing. */
    p.beta1 = 2;
    assert_int_equal(ud_optim_set_params(o, &p, &e), UD_ERANGE);
    ud_optim_state(o, &ns);
    assert_int_equal(ns, 8);
    ud_optim_destroy(&o);
    ud_optim_destroy(&o); /* NULL is fine */
}

/* ud_optim_step_span finds a NaN or infinite gradient in the same pass as the update, for
 * every optimizer variant, anywhere in the span. */
static void test_step_span_reports_nonfinite(void **state)
{
    (void)state;
    static float p[N], g[N]; /* N: odd and over one Adam block */
    for (int variant = 0; variant < 3; variant++) {
        struct ud_update_params hp;
        ud_update_params_default(&hp);
        if (variant == 1)
            hp.momentum = 0.9;
        if (variant == 2)
            hp.optimizer = UD_OPT_ADAM;
        ud_optim_t *o = ud_optim_new(&hp, N, NULL);
        assert_non_null(o);
        for (int i = 0; i < N; i++)
            p[i] = 0.5f, g[i] = 0.01f * (float)(i % 7);
        struct ud_span all = {0, N};
        assert_int_equal(ud_optim_step_span(o, p, g, all, 0.1), 0);
        g[N - 2] = INFINITY; /* in the last, partial Adam block */
        assert_int_equal(ud_optim_step_span(o, p, g, all, 0.1), UD_ENONFINITE);
        g[N - 2] = 0.0f;
        g[3] = NAN;
        assert_int_equal(ud_optim_step_span(o, p, g, (struct ud_span){0, 10}, 0.1), UD_ENONFINITE);
        /* Outside the span it is not looked at. */
        assert_int_equal(ud_optim_step_span(o, p, g, (struct ud_span){4, 900}, 0.1), 0);
        ud_optim_end_step(o);
        ud_optim_destroy(&o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_sgd_momentum_by_hand),
        cmocka_unit_test(test_adam_by_hand),
        cmocka_unit_test(test_spans_respected),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_params_validate),
        cmocka_unit_test(test_state_save_restore),
        cmocka_unit_test(test_set_params),
        cmocka_unit_test(test_step_span_reports_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

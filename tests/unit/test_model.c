/*  test_model.c — architectures, parameter layout, and every layer's forward/backward:
 *  finite differences against the analytic gradient, and the fast backend against the
 *  reference one. */
#include "ud_test.h"

#include <math.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_model.h"

static ud_model_t *model_from(const char *spec)
{
    return ud_test_model_new(spec);
}

static void fill_random(float *x, size_t n, uint64_t seed, float scale)
{
    struct ud_rng r;
    ud_rng_seed(&r, seed, 99);
    for (size_t i = 0; i < n; i++)
        x[i] = (2.0f * ud_rng_uniform(&r) - 1.0f) * scale;
}

static void test_presets_param_counts(void **state)
{
    (void)state;
    struct ud_arch a;
    struct ud_err e = {0};
    assert_int_equal(ud_arch_preset("mlp", (struct ud_shape){0}, 10, &a, &e), 0);
    ud_model_t *m = ud_model_new(&a, &e);
    assert_non_null(m);
    assert_int_equal(ud_model_param_count(m), 535818); /* the peer's reference MLP */
    assert_int_equal(ud_model_num_classes(m), 10);
    assert_int_equal(ud_model_input_size(m), 784);
    ud_model_destroy(&m);
    assert_null(m);
    assert_int_equal(ud_arch_preset("cnn", (struct ud_shape){0}, 10, &a, &e), 0);
    m = ud_model_new(&a, &e);
    assert_non_null(m);
    assert_int_equal(ud_model_param_count(m), 421642); /* the peer's reference CNN */
    ud_model_destroy(&m);
    assert_int_equal(ud_arch_preset("resnet", (struct ud_shape){0}, 10, &a, &e), UD_ENOTFOUND);
    assert_msg_has(&e, "resnet");
}

static void test_arch_parse_format_roundtrip(void **state)
{
    (void)state;
    const char *spec = "# a comment\n"
                       "input 3 12 10\n"
                       "conv2d 4 3 pad=1 stride=2 frozen\n"
                       "relu\n"
                       "maxpool 2\n"
                       "flatten\n"
                       "dropout 0.25\n"
                       "dense 7\n"
                       "softmax\n";
    struct ud_arch a, b;
    struct ud_err e = {0};
    assert_int_equal(ud_arch_parse(spec, &a, &e), 0);
    assert_int_equal(a.nlayers, 7);
    assert_int_equal(a.layer[0].stride, 2);
    assert_int_equal(a.layer[0].updatable, 0);
    assert_int_equal(a.layer[5].updatable, 1);
    struct ud_shape s = ud_arch_shape(&a, 0);
    assert_int_equal(s.c, 4);
    assert_int_equal(s.h, 6);
    assert_int_equal(s.w, 5);
    char buf[1024];
    assert_int_equal(ud_arch_format(&a, buf, sizeof buf), 0);
    assert_int_equal(ud_arch_parse(buf, &b, &e), 0);
    assert_memory_equal(&a, &b, sizeof a);
}

static void expect_parse_error(const char *spec, int code, const char *needle)
{
    struct ud_arch a;
    struct ud_err e = {0};
    assert_refused(spec, ud_arch_parse(spec, &a, &e), code, &e, needle);
}

static void test_arch_errors(void **state)
{
    (void)state;
    expect_parse_error("dense 10\nsoftmax\n", UD_EFORMAT, "line 1");
    expect_parse_error("input 1 4 4\nfoo 3\nsoftmax\n", UD_EFORMAT, "line 2: unknown layer 'foo'");
    expect_parse_error("input 1 4 4\ndense\ndense 3\nsoftmax\n", UD_EFORMAT, "line 2");
    expect_parse_error("input 1 4 4\ndense 3\nrelu\n", UD_EINVAL, "last layer must be softmax");
    expect_parse_error("input 1 4 4\nsoftmax\ndense 3\nsoftmax\n", UD_EINVAL, "softmax must be");
    expect_parse_error("input 1 4 4\nconv2d 2 3\ndense 3\nsoftmax\n", UD_ESHAPE, "add flatten");
    expect_parse_error("input 1 2 2\nconv2d 2 5\nflatten\ndense 3\nsoftmax\n", UD_ESHAPE,
                       "larger than input");
    expect_parse_error("input 1 4 4\ndropout 1.5\ndense 3\nsoftmax\n", UD_EFORMAT, "[0, 1)");
    expect_parse_error("input 1 4 4\nflatten\nrelu\nsoftmax\n", UD_EINVAL, "must be dense");
    struct ud_arch a;
    struct ud_err e = {0};
    assert_int_equal(ud_arch_preset("mlp", (struct ud_shape){0}, 1, &a, &e), UD_ESHAPE);
    assert_int_equal(ud_arch_load("/nonexistent/spec.txt", &a, &e), UD_ENOTFOUND);
    assert_msg_has(&e, "/nonexistent/spec.txt");
}

/* Loss at the current parameters; dropout masks are made reproducible by restoring the RNG. */
static double loss_at(ud_model_t *m, const float *x, const int32_t *y, int B, bool training,
                      const struct ud_rng *rng0)
{
    *ud_model_rng(m) = *rng0;
    assert_int_equal(ud_model_forward(m, x, B, training), 0);
    double loss;
    struct ud_err e = {0};
    assert_int_equal(ud_model_loss(m, y, B, &loss, NULL, &e), 0);
    return loss;
}

/* Checks the analytic gradient of every parameter (or a sample of them) against central
 * differences, in double-checked float. */
static void gradcheck(const char *spec, int B, enum ud_backend be, bool training)
{
    ud_model_t *m = model_from(spec);
    ud_model_set_backend(m, be);
    ud_model_init_params(m, 7);
    size_t nin = ud_model_input_size(m), np = ud_model_param_count(m);
    float *x = malloc(sizeof(float) * nin * B);
    int32_t *y = malloc(sizeof(int32_t) * B);
    fill_random(x, nin * B, 11, 1.0f);
    for (int b = 0; b < B; b++)
        y[b] = b % ud_model_num_classes(m);
    struct ud_rng rng0 = *ud_model_rng(m);
    loss_at(m, x, y, B, training, &rng0);
    assert_int_equal(ud_model_backward(m, y, B, 1.0f / B, NULL, NULL), 0);
    float *g = malloc(sizeof(float) * np);
    memcpy(g, ud_model_grads(m), sizeof(float) * np);
    float *p = ud_model_params(m);
    size_t stride = np > 400 ? np / 200 : 1, checked = 0, bad = 0, kinks = 0;
    for (size_t i = 0; i < np; i += stride) {
        float keep = p[i];
        const float h = 2e-3f;
        p[i] = keep + h;
        double lp = loss_at(m, x, y, B, training, &rng0);
        p[i] = keep - h;
        double lm = loss_at(m, x, y, B, training, &rng0);
        p[i] = keep;
        double l0 = loss_at(m, x, y, B, training, &rng0);
        /* A ReLU or max-pool kink within +-h makes the two one-sided slopes disagree: the
         * central difference means nothing there, so skip that entry (counted). */
        double right = (lp - l0) / h, left = (l0 - lm) / h;
        if (fabs(right - left) > 0.05 * fmax(1e-2, fabs(right) + fabs(left))) {
            kinks++;
            continue;
        }
        double num = (lp - lm) / (2.0 * h);
        /* float loss differences carry ~1e-4 of noise at this h: relative, with an absolute floor
         */
        double err = fabs(num - g[i]) / fmax(1e-2, fabs(num) + fabs(g[i]));
        checked++;
        if (err > 3e-2) {
            bad++;
            print_message("%s param %zu: analytic %g numeric %g\n", spec, i, (double)g[i], num);
        }
    }
    /* Kinks are rare; if most entries were skipped the check proved nothing. */
    if (kinks * 4 > checked + kinks)
        fail_msg("%zu of %zu entries sat on kinks for:\n%s", kinks, checked + kinks, spec);
    if (bad > 0)
        fail_msg("%zu of %zu gradients wrong for:\n%s", bad, checked, spec);
    free(x);
    free(y);
    free(g);
    ud_model_destroy(&m);
}

static const char *const specs[] = {
    "input 6 1 1\ndense 5\nrelu\ndense 4\nsoftmax\n",
    "input 2 6 6\nconv2d 3 3 pad=1\nrelu\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
    "input 3 7 7\nconv2d 4 3 stride=2\nrelu\nflatten\ndense 5\nrelu\ndense 3\nsoftmax\n",
    "input 1 8 8\nconv2d 2 3 pad=1\nrelu\nmaxpool 2\nconv2d 3 3 pad=1\nrelu\nmaxpool 2\n"
    "flatten\ndense 4\nsoftmax\n",
    "input 10 1 1\ndense 8\nrelu\ndropout 0.3\ndense 3\nsoftmax\n",
    "input 1 4 4\ndense 6\nrelu\ndense 3\nsoftmax\n", /* dense directly on an image */
    /* A 2x2 pool as the first layer, below a conv that runs the next pool itself: the fusion
     * plan must not take the first pool for one a conv runs. */
    "input 2 12 12\nmaxpool 2\nconv2d 4 3\nrelu\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
    /* A pool with no conv anywhere: flatten gets (B, C, H, W) data and must not transpose it. */
    "input 2 4 4\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
};

static void test_gradcheck_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        gradcheck(specs[i], 3, UD_BACKEND_REFERENCE, true);
}

static void test_gradcheck_fast(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        gradcheck(specs[i], 3, UD_BACKEND_FAST, true);
}

/* The fast backend must agree with the reference on outputs and on every gradient. Each runs on
 * a model of its own (the same parameters and dropout stream), so that a fast layer that skipped
 * its work cannot read the reference's result from a shared activation buffer. */
static void compare_backends(const char *spec, int B)
{
    ud_model_t *ref = model_from(spec), *m = model_from(spec);
    ud_model_init_params(ref, 3);
    ud_model_init_params(m, 3);
    size_t nin = ud_model_input_size(m), np = ud_model_param_count(m);
    int C = ud_model_num_classes(m);
    float *x = malloc(sizeof(float) * nin * B);
    int32_t *y = malloc(sizeof(int32_t) * B);
    fill_random(x, nin * B, 5, 1.0f);
    for (int b = 0; b < B; b++)
        y[b] = (b * 7) % C;
    *ud_model_rng(m) = *ud_model_rng(ref);
    ud_model_set_backend(ref, UD_BACKEND_REFERENCE);
    assert_int_equal(ud_model_forward(ref, x, B, true), 0);
    assert_int_equal(ud_model_backward(ref, y, B, 1.0f / B, NULL, NULL), 0);
    ud_model_set_backend(m, UD_BACKEND_FAST);
    assert_int_equal(ud_model_forward(m, x, B, true), 0);
    const float *out = ud_model_output(m), *out_ref = ud_model_output(ref);
    for (int i = 0; i < B * C; i++)
        assert_float_equal(out[i], out_ref[i], 1e-5);
    assert_int_equal(ud_model_backward(m, y, B, 1.0f / B, NULL, NULL), 0);
    const float *g = ud_model_grads(m), *g_ref = ud_model_grads(ref);
    for (size_t i = 0; i < np; i++)
        if (fabsf(g[i] - g_ref[i]) > 1e-5f + 1e-3f * fabsf(g_ref[i]))
            fail_msg("%s: grad %zu fast %g reference %g", spec, i, (double)g[i], (double)g_ref[i]);
    free(x);
    free(y);
    ud_model_destroy(&ref);
    ud_model_destroy(&m);
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        compare_backends(specs[i], 5);
    /* The reference architectures themselves, at a small batch. */
    struct ud_arch a;
    char buf[1024];
    assert_int_equal(ud_arch_preset("cnn", (struct ud_shape){0}, 10, &a, NULL), 0);
    assert_int_equal(ud_arch_format(&a, buf, sizeof buf), 0);
    compare_backends(buf, 3);
    assert_int_equal(ud_arch_preset("mlp", (struct ud_shape){0}, 10, &a, NULL), 0);
    assert_int_equal(ud_arch_format(&a, buf, sizeof buf), 0);
    compare_backends(buf, 4);
    /* Past the batch where the fast dense forward switches GEMM shape. */
    compare_backends(buf, 67);
    /* The fast conv works in chunks of samples (4 for the cnn's first conv, 3 for its second):
     * a batch that is not a multiple of either, so the last chunks are partial. */
    assert_int_equal(ud_arch_preset("cnn", (struct ud_shape){0}, 10, &a, NULL), 0);
    assert_int_equal(ud_arch_format(&a, buf, sizeof buf), 0);
    compare_backends(buf, 25);
    /* Chunked conv with stride 2, C = 3, no pool, and a batch of 1. */
    compare_backends("input 3 9 9\nconv2d 4 3 stride=2 pad=1\nrelu\nconv2d 5 3 pad=1\nrelu\n"
                     "flatten\ndense 3\nsoftmax\n",
                     1);
}

/* The fast backend's Winograd conv (3x3, stride 1, pad 1, at least 4 input channels): odd
 * sizes whose tiles hang over the edge, several channel counts, batch 1 and partial chunks, a
 * frozen conv that still passes dX down, and a conv as the lowest updatable layer (no dX). */
static const char *const wino_specs[] = {
    "input 4 7 7\nconv2d 3 3 pad=1\nrelu\nflatten\ndense 3\nsoftmax\n",
    "input 5 5 9\nconv2d 6 3 pad=1\nrelu\nmaxpool 2\nflatten\ndense 4\nsoftmax\n",
    "input 4 7 7\nconv2d 4 3 pad=1\nrelu\nconv2d 5 3 pad=1 frozen\nrelu\nflatten\ndense 3\n"
    "softmax\n",
    "input 2 6 5\nconv2d 4 3 pad=1\nrelu\nconv2d 7 3 pad=1\nrelu\nmaxpool 2\nflatten\n"
    "dense 3\nsoftmax\n",
    "input 6 1 3\nconv2d 4 3 pad=1\nrelu\nflatten\ndense 3\nsoftmax\n",
    /* wider than 14: the transforms' general path */
    "input 4 5 17\nconv2d 3 3 pad=1\nrelu\nconv2d 4 3 pad=1\nrelu\nflatten\ndense 3\nsoftmax\n",
};

/* A Winograd conv with a 2x2 max pool right above it (past a ReLU or not) runs fused: the
 * pool's windows are the output tiles. Odd sizes whose last row or column no window covers,
 * pool sizes other than 2 and dropout in between (not fused), a frozen fused conv passing dX
 * down, a fused conv as the lowest updatable layer (no dX). */
static const char *const wino_pool_specs[] = {
    "input 4 7 7\nconv2d 5 3 pad=1\nrelu\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
    "input 4 6 8\nconv2d 5 3 pad=1\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
    "input 5 5 7\nconv2d 3 3 pad=1\nmaxpool 2\nrelu\nflatten\ndense 3\nsoftmax\n",
    "input 4 6 6\nconv2d 5 3 pad=1\nrelu\nmaxpool 3\nflatten\ndense 3\nsoftmax\n",
    "input 4 6 6\nconv2d 5 3 pad=1\nrelu\ndropout 0.3\nmaxpool 2\nflatten\ndense 3\n"
    "softmax\n",
    "input 2 6 7\nconv2d 4 3 pad=1\nrelu\nconv2d 5 3 pad=1 frozen\nrelu\nmaxpool 2\n"
    "flatten\ndense 3\nsoftmax\n",
    "input 2 9 9\nconv2d 4 3 pad=1\nrelu\nmaxpool 2\nconv2d 6 3 pad=1\nrelu\nmaxpool 2\n"
    "flatten\ndense 3\nsoftmax\n",
};

static void test_winograd_pool_fused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof wino_pool_specs / sizeof *wino_pool_specs; i++) {
        if (!strstr(wino_pool_specs[i], "frozen"))
            gradcheck(wino_pool_specs[i], 3, UD_BACKEND_FAST, true);
        compare_backends(wino_pool_specs[i], 1);
        /* Dropout draws its mask in memory order, and the backends lay conv outputs out
         * differently ((B, C, ..) vs (C, B, ..)) unless B = 1: masks only agree there. */
        if (!strstr(wino_pool_specs[i], "dropout"))
            compare_backends(wino_pool_specs[i], 4);
    }
    /* Chunks of 8 samples (40 + 40 channels of 9x9 or 10x10): 10 leaves a partial one. */
    compare_backends("input 40 9 9\nconv2d 40 3 pad=1\nrelu\nmaxpool 2\nflatten\ndense 3\n"
                     "softmax\n",
                     10);
    compare_backends("input 40 10 10\nconv2d 40 3 pad=1\nrelu\nmaxpool 2\nflatten\ndense 3\n"
                     "softmax\n",
                     10);
    compare_backends("input 8 10 10\nconv2d 40 3 pad=1 frozen\nrelu\nmaxpool 2\nflatten\n"
                     "dense 3\nsoftmax\n",
                     30);
}

/* The im2col conv (fewer than 4 input channels, or not 3x3/stride 1) with a 2x2 max pool right
 * above it runs fused when its output is even-sized: stride 2, no ReLU, odd output (not fused),
 * a frozen fused conv passing dX down, a fused conv as the lowest updatable layer. */
static const char *const im2col_pool_specs[] = {
    "input 2 6 8\nconv2d 3 3 pad=1\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
    "input 3 12 12\nconv2d 4 3 stride=2 pad=1\nrelu\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
    "input 2 7 7\nconv2d 3 3 pad=1\nrelu\nmaxpool 2\nflatten\ndense 3\nsoftmax\n",
    "input 2 6 6\nconv2d 3 3 pad=1\nrelu\nconv2d 3 3 pad=1 frozen\nrelu\nmaxpool 2\n"
    "flatten\ndense 3\nsoftmax\n",
    "input 1 10 10\nconv2d 3 5\nrelu\nmaxpool 2\nconv2d 2 3 pad=1\nrelu\nmaxpool 2\n"
    "flatten\ndense 3\nsoftmax\n",
};

static void test_im2col_pool_fused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof im2col_pool_specs / sizeof *im2col_pool_specs; i++) {
        if (!strstr(im2col_pool_specs[i], "frozen"))
            gradcheck(im2col_pool_specs[i], 3, UD_BACKEND_FAST, true);
        compare_backends(im2col_pool_specs[i], 1);
        compare_backends(im2col_pool_specs[i], 4);
    }
    /* 28x28 with one channel and 32 filters makes chunks of 5 samples: 13 leaves a partial one
     * (the cnn's first conv). */
    compare_backends("input 1 28 28\nconv2d 32 3 pad=1\nrelu\nmaxpool 2\nflatten\ndense 3\n"
                     "softmax\n",
                     13);
}

static void test_winograd_conv(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof wino_specs / sizeof *wino_specs; i++) {
        /* Finite differences see frozen parameters move the loss; their gradients are unset. */
        if (!strstr(wino_specs[i], "frozen"))
            gradcheck(wino_specs[i], 3, UD_BACKEND_FAST, true);
        compare_backends(wino_specs[i], 1);
        compare_backends(wino_specs[i], 4);
    }
    /* 40 + 40 channels of 9x9 make chunks of 8 samples: 10 leaves a partial one. */
    compare_backends("input 40 9 9\nconv2d 40 3 pad=1\nrelu\nflatten\ndense 3\nsoftmax\n", 10);
    compare_backends("input 40 9 9\nconv2d 8 3 pad=1\nrelu\nconv2d 40 3 pad=1 frozen\nrelu\n"
                     "flatten\ndense 3\nsoftmax\n",
                     10);
}

struct ready_log {
    int n;
    int layers[8];
    struct ud_span spans[8];
};

static void on_ready(void *user, int layer, struct ud_span span)
{
    struct ready_log *r = user;
    if (r->n < 8) {
        r->layers[r->n] = layer;
        r->spans[r->n] = span;
    }
    r->n++;
}

static void test_frozen_layers_and_ready_hook(void **state)
{
    (void)state;
    ud_model_t *m = model_from("input 1 6 6\nconv2d 2 3 frozen\nrelu\nflatten\ndense 5 frozen\n"
                               "relu\ndense 4\nrelu\ndense 3\nsoftmax\n");
    ud_model_init_params(m, 1);
    const struct ud_span *spans;
    assert_int_equal(ud_model_updatable_spans(m, &spans), 4); /* two dense layers: w and b */
    assert_false(ud_model_layer_updatable(m, 0));
    assert_true(ud_model_layer_updatable(m, 5));
    size_t np = ud_model_param_count(m);
    float *g = ud_model_grads(m);
    for (size_t i = 0; i < np; i++)
        g[i] = NAN;
    float x[2 * 36];
    fill_random(x, 72, 2, 1.0f);
    int32_t y[2] = {0, 2};
    assert_int_equal(ud_model_forward(m, x, 2, true), 0);
    struct ready_log log = {0};
    assert_int_equal(ud_model_backward(m, y, 2, 0.5f, on_ready, &log), 0);
    /* Ready fires for the updatable layers only, last first, covering weights and bias. */
    assert_int_equal(log.n, 2);
    assert_int_equal(log.layers[0], 7);
    assert_int_equal(log.layers[1], 5);
    struct ud_span w, b;
    ud_model_layer_params(m, 5, &w, &b);
    assert_int_equal(log.spans[1].offset, w.offset);
    assert_int_equal(log.spans[1].count, w.count + b.count);
    /* Frozen layers' gradients are never written (backward stopped above them). */
    ud_model_layer_params(m, 0, &w, &b);
    for (size_t i = w.offset; i < b.offset + b.count; i++)
        assert_true(isnan(g[i]));
    ud_model_layer_params(m, 3, &w, &b);
    for (size_t i = w.offset; i < b.offset + b.count; i++)
        assert_true(isnan(g[i]));
    ud_model_layer_params(m, 5, &w, &b);
    for (size_t i = w.offset; i < b.offset + b.count; i++)
        assert_false(isnan(g[i]));
    /* Unfreezing changes the spans. */
    assert_int_equal(ud_model_set_layer_updatable(m, 0, true), 0);
    assert_int_equal(ud_model_updatable_spans(m, &spans), 6);
    assert_int_equal(ud_model_set_layer_updatable(m, 1, true), UD_EINVAL); /* relu */
    ud_model_destroy(&m);
}

static void test_loss_and_labels(void **state)
{
    (void)state;
    ud_model_t *m = model_from("input 4 1 1\ndense 3\nsoftmax\n");
    /* Zero parameters: uniform probabilities, loss log(3). */
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t y[2] = {0, 2};
    assert_int_equal(ud_model_forward(m, x, 2, false), 0);
    double loss;
    int correct;
    struct ud_err e = {0};
    assert_int_equal(ud_model_loss(m, y, 2, &loss, &correct, &e), 0);
    assert_float_equal(loss, log(3.0), 1e-6);
    int32_t bad[2] = {0, 3};
    assert_int_equal(ud_model_loss(m, bad, 2, &loss, NULL, &e), UD_ERANGE);
    assert_msg_has(&e, "label 3");
    assert_int_equal(ud_model_backward(m, bad, 2, 0.5f, NULL, NULL), UD_ERANGE);
    assert_int_equal(ud_model_backward(m, y, 3, 0.5f, NULL, NULL), UD_ESTATE);
    /* Labels. */
    const char *names[3] = {"cat", "dog", "owl"};
    assert_int_equal(ud_model_set_labels(m, names, 3, &e), 0);
    assert_string_equal(ud_model_label(m, 2), "owl");
    assert_int_equal(ud_model_label_index(m, "dog"), 1);
    assert_int_equal(ud_model_label_index(m, "cow"), -1);
    assert_int_equal(ud_model_set_labels(m, names, 2, &e), UD_ESHAPE);
    ud_model_destroy(&m);
}

static void test_init_clone_sha(void **state)
{
    (void)state;
    ud_model_t *a = model_from("input 5 1 1\ndense 4\nrelu\ndense 3\nsoftmax\n");
    ud_model_t *b = model_from("input 5 1 1\ndense 4\nrelu\ndense 3\nsoftmax\n");
    ud_model_init_params(a, 42);
    ud_model_init_params(b, 42);
    size_t np = ud_model_param_count(a);
    assert_memory_equal(ud_model_params(a), ud_model_params(b), np * sizeof(float));
    /* Weights of the first layer lie within PyTorch's bound 1/sqrt(fan_in). */
    for (size_t i = 0; i < 20; i++)
        assert_true(fabsf(ud_model_params(a)[i]) <= 1.0f / sqrtf(5.0f));
    ud_model_init_params(b, 43);
    assert_memory_not_equal(ud_model_params(a), ud_model_params(b), np * sizeof(float));
    char h1[65], h2[65], h3[65];
    ud_model_params_sha256(a, h1);
    assert_int_equal(strlen(h1), 64);
    ud_model_set_metric(a, "train_loss", 0.5);
    ud_metadata_set_additional(ud_model_metadata(a), "k", "v");
    ud_model_t *c = ud_model_clone(a, NULL);
    assert_non_null(c);
    ud_model_params_sha256(c, h2);
    assert_string_equal(h1, h2);
    double v;
    assert_int_equal(ud_model_metric_get(c, "train_loss", &v), 0);
    assert_float_equal(v, 0.5, 0);
    assert_string_equal(ud_model_metadata(c)->additional[0].value, "v");
    ud_model_params(c)[np - 1] += 1e-3f;
    ud_model_params_sha256(c, h3);
    assert_string_not_equal(h1, h3);
    ud_model_destroy(&a);
    ud_model_destroy(&b);
    ud_model_destroy(&c);
}

/* A NaN input must show up as a NaN loss (not be clamped by the loss or zeroed by ReLU). */
static void test_nan_propagates(void **state)
{
    (void)state;
    ud_model_t *m = model_from("input 4 1 1\ndense 5\nrelu\ndense 3\nsoftmax\n");
    ud_model_init_params(m, 2);
    float x[8] = {1, 2, 3, 4, 0.5f, NAN, 0.25f, 1};
    int32_t y[2] = {0, 1};
    for (int be = 0; be < 2; be++) {
        ud_model_set_backend(m, be ? UD_BACKEND_REFERENCE : UD_BACKEND_FAST);
        assert_int_equal(ud_model_forward(m, x, 2, false), 0);
        double loss;
        assert_int_equal(ud_model_loss(m, y, 2, &loss, NULL, NULL), 0);
        assert_true(isnan(loss));
    }
    ud_model_destroy(&m);
}

/* forward borrows x and must never write it, also when the first layer works in place. */
static void test_forward_leaves_input_alone(void **state)
{
    (void)state;
    const char *specs_[] = {"input 4 1 1\nrelu\ndense 3\nsoftmax\n",
                            "input 4 1 1\ndropout 0.5\ndense 3\nsoftmax\n",
                            "input 4 1 1\ndense 5\nrelu\ndense 3\nsoftmax\n"};
    for (int k = 0; k < 3; k++) {
        ud_model_t *m = model_from(specs_[k]);
        ud_model_init_params(m, 4);
        float x[8] = {-1, 2, -3, 4, 5, -6, 7, -8}, keep[8];
        memcpy(keep, x, sizeof x);
        int32_t y[2] = {0, 2};
        for (int be = 0; be < 2; be++) {
            ud_model_set_backend(m, be ? UD_BACKEND_REFERENCE : UD_BACKEND_FAST);
            assert_int_equal(ud_model_forward(m, x, 2, true), 0);
            assert_int_equal(ud_model_backward(m, y, 2, 0.5f, NULL, NULL), 0);
            assert_memory_equal(x, keep, sizeof x);
        }
        ud_model_destroy(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_param_counts),
        cmocka_unit_test(test_arch_parse_format_roundtrip),
        cmocka_unit_test(test_arch_errors),
        cmocka_unit_test(test_gradcheck_reference),
        cmocka_unit_test(test_gradcheck_fast),
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_winograd_conv),
        cmocka_unit_test(test_winograd_pool_fused),
        cmocka_unit_test(test_im2col_pool_fused),
        cmocka_unit_test(test_frozen_layers_and_ready_hook),
        cmocka_unit_test(test_loss_and_labels),
        cmocka_unit_test(test_init_clone_sha),
        cmocka_unit_test(test_nan_propagates),
        cmocka_unit_test(test_forward_leaves_input_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

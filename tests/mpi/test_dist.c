/*  test_dist.c — the worker's MPI layer (worker/worker_dist.c), run under mpirun with 3 ranks.
 *
 *  The ring allreduce against exact sums for sizes that do and do not divide by the world,
 *  bitwise-identical results on every rank, gradient buckets reported layer by layer and
 *  stepped through apply exactly once each, and agreement on failures.
 *  Every rank runs every test in the same order (they are collective).
 */
#include "../unit/ud_test.h"

#include <math.h>

#include "updraft/ud_arch.h"
#include "worker_dist.h"
#include "updraft/ud_model.h"

static worker_dist_t *D;
static int R, W;

static float value(int rank, size_t i)
{
    return (float)((double)((i * 7919u + (size_t)rank * 104729u) % 1000u) / 997.0 - 0.5);
}

/* Every rank holds the same bytes as rank 0. */
static void assert_same_everywhere(const void *p, size_t bytes)
{
    struct ud_err e = {0};
    char *ref = malloc(bytes + 1);
    assert_non_null(ref);
    memcpy(ref, p, bytes);
    assert_int_equal(worker_dist_bcast(D, ref, bytes, 0, "test", &e), 0);
    assert_memory_equal(ref, p, bytes);
    free(ref);
}

static void test_sum_f32_sizes(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 1000, 262147};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *x = malloc((n + 1) * sizeof *x);
        assert_non_null(x);
        for (size_t i = 0; i < n; i++)
            x[i] = value(R, i);
        struct ud_err e = {0};
        assert_int_equal(worker_dist_sum_f32(D, x, n, "test", &e), 0);
        for (size_t i = 0; i < n; i++) {
            double want = 0;
            for (int r = 0; r < W; r++)
                want += value(r, i);
            assert_true(fabs(x[i] - want) <= 1e-5 * (1 + fabs(want)));
        }
        assert_same_everywhere(x, n * sizeof *x);
        free(x);
    }
}

struct applied {
    int calls;
    unsigned char *hit; /* per parameter */
    size_t n;
};

static int record_apply(void *ctx, struct ud_span s)
{
    struct applied *a = ctx;
    a->calls++;
    for (size_t i = s.offset; i < s.offset + s.count && i < a->n; i++)
        a->hit[i]++;
    return 0;
}

/* Reports every updatable layer ready from the top, as backward does, then syncs. */
static void run_buckets(size_t bucket_bytes, int want_buckets)
{
    struct ud_err e = {0};
    ud_model_t *m = ud_test_model_new("input 1 6 6\nconv2d 4 3\nrelu\nflatten\ndense 33\nrelu\n"
                                      "dense 20\nrelu\ndense 5\nsoftmax\n");
    worker_dist_set_bucket_bytes(D, bucket_bytes);
    size_t n = ud_model_param_count(m);
    float *g = ud_model_grads(m);
    for (size_t i = 0; i < n; i++)
        g[i] = value(R, i);
    assert_int_equal(worker_dist_grad_setup(D, m, &e), 0);
    struct worker_dist_stats st;
    worker_dist_stats(D, &st);
    if (want_buckets)
        assert_int_equal(st.nbuckets, want_buckets);
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < n; i++)
            g[i] = value(R, i + (size_t)step);
        for (int i = ud_model_arch(m)->nlayers - 1; i >= 0; i--) {
            struct ud_span w, b;
            ud_model_layer_params(m, i, &w, &b);
            if (w.count)
                worker_dist_grad_ready(D, i, (struct ud_span){w.offset, w.count + b.count});
        }
        struct applied ap = {0, calloc(n, 1), n};
        assert_non_null(ap.hit);
        assert_int_equal(worker_dist_grad_sync(D, g, n, record_apply, &ap, &e), 0);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ap.hit[i], 1); /* every parameter stepped exactly once */
            double want = 0;
            for (int r = 0; r < W; r++)
                want += value(r, i + (size_t)step);
            assert_true(fabs(g[i] - want) <= 1e-5 * (1 + fabs(want)));
        }
        assert_int_equal(ap.calls, st.nbuckets);
        assert_same_everywhere(g, n * sizeof *g);
        free(ap.hit);
    }
    ud_model_destroy(&m);
}

static void test_buckets_default(void **state)
{
    (void)state;
    run_buckets(0, 1); /* 1 MiB: the whole small model is one bucket */
}

static void test_buckets_per_layer(void **state)
{
    (void)state;
    run_buckets(1024, 4); /* every layer its own bucket; 4 allreduces in flight at once */
}

static void test_buckets_grouped(void **state)
{
    (void)state;
    /* 20x5+5 and 33x20+20 fit 4 KiB together; the conv layer and dense 33 do not. */
    run_buckets(4096, 0);
}

static void test_agree(void **state)
{
    (void)state;
    struct ud_err e = {0};
    assert_int_equal(worker_dist_agree(D, 0, "", "test", &e), 0);
    /* Rank 1 fails: everyone learns its code and message. */
    int rc = worker_dist_agree(D, R == 1 ? UD_EIO : 0, R == 1 ? "shard.bin: read error" : "",
                               "test", &e);
    assert_int_equal(rc, UD_EIO);
    assert_msg_has(&e, "rank 1: shard.bin: read error");
    /* Ranks 1 and 2 fail: the lowest is quoted, the other counted. */
    memset(&e, 0, sizeof e);
    rc = worker_dist_agree(D, R >= 1 ? UD_EFORMAT : 0, R >= 1 ? "bad" : "", "test", &e);
    assert_int_equal(rc, UD_EFORMAT);
    assert_msg_has(&e, "rank 1 (and 1 other rank): bad");
}

static void test_small_collectives(void **state)
{
    (void)state;
    struct ud_err e = {0};
    double v[3] = {1, (double)R, 0.5};
    assert_int_equal(worker_dist_sum_f64(D, v, 3, "test", &e), 0);
    assert_true(v[0] == W && v[1] == W * (W - 1) / 2.0 && v[2] == 0.5 * W);
    int64_t m[2] = {R, -R};
    assert_int_equal(worker_dist_max_i64(D, m, 2, "test", &e), 0);
    assert_true(m[0] == W - 1 && m[1] == 0);
    char big[100003];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = R == 2 ? (char)(i * 31) : 0;
    assert_int_equal(worker_dist_bcast(D, big, sizeof big, 2, "test", &e), 0);
    for (size_t i = 0; i < sizeof big; i++)
        assert_int_equal(big[i], (char)(i * 31));
    assert_int_equal(worker_dist_barrier(D, "test", &e), 0);
}

int main(int argc, char **argv)
{
    struct ud_err e = {0};
    struct worker_dist_opts o = {.timeout_s = 20};
    if (!(D = worker_dist_init(&argc, &argv, &o, &e))) {
        fprintf(stderr, "test_dist: %s\n", e.msg);
        return 1;
    }
    R = worker_dist_rank(D);
    W = worker_dist_world(D);
    if (W < 2) {
        fprintf(stderr, "test_dist: run under mpirun with 2 or more ranks\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_f32_sizes),
        cmocka_unit_test(test_buckets_default),
        cmocka_unit_test(test_buckets_per_layer),
        cmocka_unit_test(test_buckets_grouped),
        cmocka_unit_test(test_agree),
        cmocka_unit_test(test_small_collectives),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    worker_dist_finalize(&D);
    return failed ? 1 : 0;
}

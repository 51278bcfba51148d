/*  test_partition.c — client partitions (ud_partition.h): every scheme assigns each sample to
 *  exactly one client; iid sizes differ by at most one; a seed gives the same partition and
 *  another seed another; Dirichlet with a large alpha is near-uniform per client and with a
 *  small one skewed; shards:2 leaves most clients with at most two classes; the minimum size is
 *  honoured or refused; bad arguments are refused with messages; ud_rng_gamma has the right
 *  mean; class folder names round-trip through ud_class_dir_name.
 */
#include "ud_test.h"

#include <math.h>
#include <png.h>

#include "updraft/ud_data.h"
#include "updraft/ud_partition.h"
#include "updraft/ud_rng.h"

/* n labels of C balanced classes, in a scrambled order (as a real file would hold them). */
static int32_t *balanced_labels(size_t n, int C)
{
    int32_t *l = malloc(sizeof *l * n);
    assert_non_null(l);
    for (size_t i = 0; i < n; i++)
        l[i] = (int32_t)((i * 7919u) % (size_t)C);
    return l;
}

static struct ud_partition_scheme scheme(const char *s)
{
    struct ud_partition_scheme sc;
    struct ud_err e = {0};
    if (ud_partition_scheme_parse(s, &sc, &e))
        fail_msg("%s: %s", s, e.msg);
    return sc;
}

/* Assigns and checks it is a partition (each sample once, every client in range); returns the
 * assignment (caller frees) and fills sizes (K entries) and counts (K*C) when given. */
static uint32_t *assign_checked(const int32_t *labels, size_t n, int C, uint32_t K, const char *s,
                                uint64_t seed, size_t min_size, size_t *sizes, size_t *counts)
{
    struct ud_partition_scheme sc = scheme(s);
    struct ud_err e = {0};
    uint32_t *client = malloc(sizeof *client * n);
    assert_non_null(client);
    memset(client, 0xff, sizeof *client * n);
    if (ud_partition_assign(labels, n, C, K, &sc, seed, min_size, client, &e))
        fail_msg("%s, K %u: %s", s, (unsigned)K, e.msg);
    size_t *off = malloc(sizeof *off * (K + 1));
    uint32_t *idx;
    assert_int_equal(ud_partition_group(client, n, K, off, &idx, &e), 0);
    assert_int_equal(off[0], 0);
    assert_int_equal(off[K], n);
    /* Each index exactly once: the grouped lists are a permutation of 0..n-1. */
    unsigned char *seen = calloc(n, 1);
    for (uint32_t k = 0; k < K; k++)
        for (size_t j = off[k]; j < off[k + 1]; j++) {
            assert_true(idx[j] < n);
            assert_int_equal(seen[idx[j]], 0);
            seen[idx[j]] = 1;
            assert_int_equal(client[idx[j]], k);
            if (j > off[k])
                assert_true(idx[j] > idx[j - 1]); /* ascending */
        }
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    if (sizes)
        for (uint32_t k = 0; k < K; k++)
            sizes[k] = off[k + 1] - off[k];
    if (counts) {
        memset(counts, 0, sizeof *counts * K * (size_t)C);
        for (size_t i = 0; i < n; i++)
            counts[(size_t)client[i] * (size_t)C + (size_t)labels[i]]++;
    }
    free(seen);
    free(idx);
    free(off);
    return client;
}

/* The number of classes (fewest first... i.e. the largest first) needed to hold 90 % of a
 * client's samples, averaged over clients: 1 for a one-class client, ~0.9 C for a uniform one. */
static double mean_classes_for_90(const size_t *counts, uint32_t K, int C)
{
    double total = 0;
    size_t *row = malloc(sizeof *row * (size_t)C);
    for (uint32_t k = 0; k < K; k++) {
        size_t n = 0;
        for (int c = 0; c < C; c++)
            n += (row[c] = counts[(size_t)k * (size_t)C + (size_t)c]);
        /* Take the largest classes until 90 %. */
        size_t got = 0;
        int used = 0;
        while ((double)got < 0.9 * (double)n) {
            int best = 0;
            for (int c = 1; c < C; c++)
                if (row[c] > row[best])
                    best = c;
            got += row[best];
            row[best] = 0;
            used++;
        }
        total += used;
    }
    free(row);
    return total / K;
}

static void test_iid_sizes_and_cover(void **state)
{
    (void)state;
    const size_t n = 1003;
    int32_t *labels = balanced_labels(n, 10);
    for (uint32_t K = 1; K <= 40; K += 13) {
        size_t sizes[40];
        uint32_t *c = assign_checked(labels, n, 10, K, "iid", 5, 0, sizes, NULL);
        size_t lo = n, hi = 0;
        for (uint32_t k = 0; k < K; k++) {
            lo = sizes[k] < lo ? sizes[k] : lo;
            hi = sizes[k] > hi ? sizes[k] : hi;
        }
        assert_true(hi - lo <= 1);
        free(c);
    }
    /* K == n: one sample each. */
    size_t *sizes = malloc(sizeof *sizes * n);
    free(assign_checked(labels, n, 10, (uint32_t)n, "iid", 1, 1, sizes, NULL));
    for (size_t k = 0; k < n; k++)
        assert_int_equal(sizes[k], 1);
    free(sizes);
    free(labels);
}

static void test_every_scheme_is_a_partition(void **state)
{
    (void)state;
    const size_t n = 5000;
    int32_t *labels = balanced_labels(n, 10);
    const char *schemes[] = {"iid",      "dirichlet:0.1", "dirichlet:1", "dirichlet:100",
                             "shards:1", "shards:2",      "shards:7"};
    for (size_t s = 0; s < sizeof schemes / sizeof *schemes; s++)
        for (uint32_t K = 1; K <= 50; K += 7)
            free(assign_checked(labels, n, 10, K, schemes[s], 11, 0, NULL, NULL));
    free(labels);
}

static void test_determinism(void **state)
{
    (void)state;
    const size_t n = 3000;
    int32_t *labels = balanced_labels(n, 10);
    const char *schemes[] = {"iid", "dirichlet:0.5", "shards:2"};
    for (size_t s = 0; s < 3; s++) {
        uint32_t *a = assign_checked(labels, n, 10, 12, schemes[s], 42, 10, NULL, NULL);
        uint32_t *b = assign_checked(labels, n, 10, 12, schemes[s], 42, 10, NULL, NULL);
        uint32_t *c = assign_checked(labels, n, 10, 12, schemes[s], 43, 10, NULL, NULL);
        assert_memory_equal(a, b, n * sizeof *a);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++)
            diff += a[i] != c[i];
        if (diff < n / 2)
            fail_msg("%s: seeds 42 and 43 agree on %zu of %zu samples", schemes[s], n - diff, n);
        free(a);
        free(b);
        free(c);
    }
    free(labels);
}

static void test_dirichlet_skew(void **state)
{
    (void)state;
    const size_t n = 20000;
    const int C = 10;
    const uint32_t K = 20;
    int32_t *labels = balanced_labels(n, C);
    size_t counts[20 * 10];
    free(assign_checked(labels, n, C, K, "dirichlet:100", 3, 10, NULL, counts));
    double uniform = mean_classes_for_90(counts, K, C);
    /* Near-uniform: each class close to its share of each client. */
    for (uint32_t k = 0; k < K; k++) {
        size_t sz = 0;
        for (int c = 0; c < C; c++)
            sz += counts[k * C + c];
        for (int c = 0; c < C; c++) {
            double share = (double)counts[k * C + c] / (double)sz;
            if (fabs(share - 0.1) > 0.06)
                fail_msg("alpha 100: client %u has %.3f of class %d", (unsigned)k, share, c);
        }
    }
    free(assign_checked(labels, n, C, K, "dirichlet:0.1", 3, 10, NULL, counts));
    double skewed = mean_classes_for_90(counts, K, C);
    print_message("classes holding 90%% of a client: alpha 100 %.2f, alpha 0.1 %.2f\n", uniform,
                  skewed);
    assert_true(uniform >= 8.5);
    assert_true(skewed <= 4.0);
    free(labels);
}

static void test_shards_few_classes(void **state)
{
    (void)state;
    const size_t n = 6000;
    const int C = 10;
    const uint32_t K = 100;
    int32_t *labels = balanced_labels(n, C);
    size_t sizes[100], counts[100 * 10];
    free(assign_checked(labels, n, C, K, "shards:2", 9, 0, sizes, counts));
    int at_most_two = 0;
    for (uint32_t k = 0; k < K; k++) {
        int held = 0;
        for (int c = 0; c < C; c++)
            held += counts[k * C + c] > 0;
        assert_true(held <= 2 * 2); /* a shard spans at most two classes */
        at_most_two += held <= 2;
        assert_int_equal(sizes[k], 60); /* 200 shards of 30 */
    }
    if (at_most_two < 90)
        fail_msg("shards:2: only %d of 100 clients hold at most two classes", at_most_two);
    free(labels);
}

static void test_min_size(void **state)
{
    (void)state;
    const size_t n = 2000;
    int32_t *labels = balanced_labels(n, 10);
    size_t sizes[20];
    /* A seed whose first draw leaves some client under 40 samples; with the minimum, the same
     * seed redraws until none is. */
    uint64_t seed;
    size_t smallest = n;
    for (seed = 1; seed < 100 && smallest >= 40; seed++) {
        free(assign_checked(labels, n, 10, 20, "dirichlet:0.5", seed, 0, sizes, NULL));
        smallest = n;
        for (int k = 0; k < 20; k++)
            smallest = sizes[k] < smallest ? sizes[k] : smallest;
    }
    assert_true(smallest < 40);
    free(assign_checked(labels, n, 10, 20, "dirichlet:0.5", seed - 1, 40, sizes, NULL));
    for (int k = 0; k < 20; k++)
        assert_true(sizes[k] >= 40);
    /* Impossible minimums are refused. */
    struct ud_partition_scheme sc = scheme("dirichlet:0.05");
    struct ud_err e = {0};
    uint32_t *client = malloc(sizeof *client * n);
    assert_int_equal(ud_partition_assign(labels, n, 10, 50, &sc, 1, 39, client, &e), UD_EEMPTY);
    assert_msg_has(&e, "tries");
    assert_int_equal(ud_partition_assign(labels, n, 10, 50, &sc, 1, 41, client, &e), UD_EINVAL);
    assert_msg_has(&e, "at least 41");
    sc = scheme("iid");
    assert_int_equal(ud_partition_assign(labels, n, 10, 100, &sc, 1, 20, client, &e), 0);
    assert_int_equal(ud_partition_assign(labels, 1999, 10, 100, &sc, 1, 20, client, &e), UD_EINVAL);
    free(client);
    free(labels);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct ud_partition_scheme sc;
    struct ud_err e = {0};
    assert_int_equal(ud_partition_scheme_parse("random", &sc, &e), UD_EINVAL);
    assert_msg_has(&e, "unknown scheme");
    assert_int_equal(ud_partition_scheme_parse("dirichlet:0", &sc, &e), UD_EINVAL);
    assert_msg_has(&e, "ALPHA");
    assert_int_equal(ud_partition_scheme_parse("dirichlet:-1", &sc, &e), UD_EINVAL);
    assert_int_equal(ud_partition_scheme_parse("dirichlet:nan", &sc, &e), UD_EINVAL);
    assert_int_equal(ud_partition_scheme_parse("dirichlet:", &sc, &e), UD_EINVAL);
    assert_int_equal(ud_partition_scheme_parse("shards:0", &sc, &e), UD_EINVAL);
    assert_int_equal(ud_partition_scheme_parse("shards:2x", &sc, &e), UD_EINVAL);
    assert_int_equal(ud_partition_scheme_parse("dirichlet:0.25", &sc, &e), 0);
    char buf[64];
    ud_partition_scheme_format(&sc, buf, sizeof buf);
    assert_string_equal(buf, "dirichlet:0.25");

    const size_t n = 100;
    int32_t *labels = balanced_labels(n, 4);
    uint32_t client[100];
    sc = scheme("iid");
    assert_int_equal(ud_partition_assign(labels, n, 4, 0, &sc, 1, 0, client, &e), UD_EINVAL);
    assert_int_equal(ud_partition_assign(labels, n, 4, 100001, &sc, 1, 0, client, &e), UD_EINVAL);
    assert_int_equal(ud_partition_assign(labels, n, 4, 101, &sc, 1, 0, client, &e), UD_EINVAL);
    assert_msg_has(&e, "only 100 samples");
    sc = scheme("shards:3");
    assert_int_equal(ud_partition_assign(labels, n, 4, 34, &sc, 1, 0, client, &e), UD_EINVAL);
    assert_msg_has(&e, "shards");
    assert_int_equal(ud_partition_assign(labels, n, 4, 33, &sc, 1, 0, client, &e), 0);
    sc.kind = UD_PARTITION_DIRICHLET;
    sc.alpha = 0;
    assert_int_equal(ud_partition_assign(labels, n, 4, 3, &sc, 1, 0, client, &e), UD_EINVAL);
    assert_msg_has(&e, "alpha");
    labels[7] = 4;
    sc = scheme("iid");
    assert_int_equal(ud_partition_assign(labels, n, 4, 3, &sc, 1, 0, client, &e), UD_ERANGE);
    assert_msg_has(&e, "sample 7");
    free(labels);
}

static void test_gamma_mean(void **state)
{
    (void)state;
    const double alphas[] = {0.1, 0.5, 1.0, 3.0, 100.0};
    for (size_t a = 0; a < 5; a++) {
        struct ud_rng r;
        ud_rng_seed(&r, 7, UD_RNG_PARTITION);
        const int N = 200000;
        double sum = 0, sq = 0;
        for (int i = 0; i < N; i++) {
            double g = ud_rng_gamma(&r, alphas[a]);
            assert_true(g >= 0 && isfinite(g));
            sum += g;
            sq += g * g;
        }
        double mean = sum / N, var = sq / N - mean * mean;
        /* Gamma(a, 1): mean a, variance a; 5 standard errors. */
        double se = sqrt(alphas[a] / N);
        if (fabs(mean - alphas[a]) > 5 * se || fabs(var / alphas[a] - 1) > 0.05)
            fail_msg("Gamma(%g): mean %g, variance %g", alphas[a], mean, var);
    }
}

static void test_class_dir_names(void **state)
{
    (void)state;
    const char *names[] = {"T-shirt/top", "100%", ".hidden", "a/b/c", "plain", "%2F"};
    const char *want[] = {"T-shirt%2Ftop", "100%25", "%2Ehidden", "a%2Fb%2Fc", "plain", "%252F"};
    char root[700];
    snprintf(root, sizeof root, "%s/classdirs", ud_test_scratch());
    assert_int_equal(mkdir(root, 0777), 0);
    for (int i = 0; i < 6; i++) {
        char *d = ud_class_dir_name(names[i]);
        assert_string_equal(d, want[i]);
        /* A folder of that name with one grey 2x2 PNG. */
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", root, d);
        assert_int_equal(mkdir(p, 0777), 0);
        snprintf(p, sizeof p, "%s/%s/0.png", root, d);
        static const unsigned char px[4] = {0, 64, 128, 255};
        png_image im;
        memset(&im, 0, sizeof im);
        im.version = PNG_IMAGE_VERSION;
        im.width = im.height = 2;
        im.format = PNG_FORMAT_GRAY;
        assert_true(png_image_write_to_file(&im, p, 0, px, 0, NULL));
        free(d);
    }
    struct ud_err e = {0};
    ud_dataset_t *ds = ud_dataset_load(root, NULL, &e);
    if (!ds)
        fail_msg("%s", e.msg);
    assert_int_equal(ud_dataset_num_classes(ds), 6);
    for (int i = 0; i < 6; i++) {
        int found = 0;
        for (int c = 0; c < 6; c++)
            found += strcmp(ud_dataset_class_name(ds, c), names[i]) == 0;
        if (found != 1)
            fail_msg("class \"%s\" not read back from its folder", names[i]);
    }
    ud_dataset_destroy(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iid_sizes_and_cover),
        cmocka_unit_test(test_every_scheme_is_a_partition),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_dirichlet_skew),
        cmocka_unit_test(test_shards_few_classes),
        cmocka_unit_test(test_min_size),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_gamma_mean),
        cmocka_unit_test(test_class_dir_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*  test_plan.c — shard plans (ud_plan.h): shards disjoint, covering the training set, with the
 *  specified lengths for many (T, B, W) shapes (T % B != 0, B % W != 0, W = 1, B == W, T < B);
 *  epoch orders that are permutations in which every rank slice the engine takes
 *  (ud_update_rank_slice) lies in the rank's own shard; shuffled epochs that differ, unshuffled
 *  ones that keep shard order; determinism from the seed; manifest checks; and the
 *  validation of plans that came over the network.
 */
#include "ud_test.h"

#include "updraft/ud_data.h"
#include "updraft/ud_plan.h"
#include "updraft/ud_rng.h"
#include "updraft/ud_update.h"

/* ------------------------------------------------------------------------------------------ */
/* Fixtures                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static const char *const CLASSES[] = {"cat", "dog", "owl"};

/* n samples of 2 features, label i % 3 (or labels[i] when given). */
static ud_dataset_t *make_data(size_t n)
{
    struct ud_err e = {0};
    ud_dataset_t *ds = ud_dataset_new(n, (struct ud_shape){2, 1, 1}, 0, CLASSES, 3, &e);
    if (!ds)
        fail_msg("ud_dataset_new: %s", e.msg);
    for (size_t i = 0; i < n; i++) {
        float x[2] = {(float)i, -(float)i};
        assert_int_equal(ud_dataset_set_f32(ds, i, x, (int32_t)(i % 3)), 0);
    }
    return ds;
}

/* A manifest for `samples` samples (no dataset needed). */
static struct ud_manifest fake_manifest(uint64_t samples)
{
    static char *names[] = {"cat", "dog", "owl"};
    return (struct ud_manifest){
        .samples = samples, .nclasses = 3, .classes = names, .labels_hash = 0x1234};
}

/* A plan over T training samples: the dataset has T + nva + 3 samples; validation takes every
 * 4th index up to nva of them, training the rest (first T), so indices are not 0..T-1. */
static void make_plan(size_t T, int64_t B, int W, int shuffle, uint64_t seed, struct ud_plan *p)
{
    size_t nva = T / 5, n = T + nva + 3;
    uint32_t *tr = malloc(T * sizeof *tr), *va = malloc((nva ? nva : 1) * sizeof *va);
    assert_non_null(tr);
    assert_non_null(va);
    size_t it = 0, iv = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 4 == 1 && iv < nva)
            va[iv++] = (uint32_t)i;
        else if (it < T)
            tr[it++] = (uint32_t)i;
    }
    assert_int_equal(it, T);
    assert_int_equal(iv, nva);
    struct ud_manifest m = fake_manifest(n);
    struct ud_err e = {0};
    if (ud_plan_make(&m, tr, T, va, nva, seed, B, shuffle, W, p, &e) != 0)
        fail_msg("ud_plan_make(T=%zu, B=%lld, W=%d): %s", T, (long long)B, W, e.msg);
    free(tr);
    free(va);
}

/* The shapes every property is checked on: {T, B, W}. */
static const struct {
    size_t T;
    int64_t B;
    int W;
} SHAPES[] = {
    {100, 16, 3},  /* T % B != 0, B % W != 0 */
    {96, 16, 4},   /* T % B == 0, B % W == 0 */
    {100, 10, 1},  /* one rank */
    {37, 8, 8},    /* B == W, partial batch smaller than W */
    {10, 7, 3},    /* R = 3 = W */
    {5, 8, 2},     /* T < B: only the partial batch */
    {1, 1, 1},     /* the smallest plan */
    {1000, 33, 7}, /* nothing divides */
    {64, 64, 64},  /* one sample per rank per step */
};
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])

/* rank r's expected shard length, from the engine's slicing (independent of ud_plan.c). */
static size_t want_len(size_t T, int64_t B, int W, int r)
{
    size_t lo, hi, qlo, qhi;
    ud_update_rank_slice((size_t)B, r, W, &lo, &hi);
    ud_update_rank_slice(T % (size_t)B, r, W, &qlo, &qhi);
    return (T / (size_t)B) * (hi - lo) + (qhi - qlo);
}

/* ------------------------------------------------------------------------------------------ */
/* Shards                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void test_shards_disjoint_cover_and_lengths(void **state)
{
    (void)state;
    for (size_t c = 0; c < NSHAPES; c++) {
        size_t T = SHAPES[c].T;
        int64_t B = SHAPES[c].B;
        int W = SHAPES[c].W;
        struct ud_plan p;
        make_plan(T, B, W, 1, 42, &p);
        struct ud_err e = {0};
        assert_int_equal(ud_plan_validate(&p, &e), 0);
        assert_int_equal(p.world, W);
        assert_int_equal(p.batch, B);
        assert_int_equal(ud_plan_train_count(&p), T);

        /* Every training index (i not in validation, i < T + nva + 3, first T) exactly once,
         * no validation index in any shard. */
        size_t n = (size_t)p.manifest.samples;
        int *count = calloc(n, sizeof *count);
        assert_non_null(count);
        for (size_t i = 0; i < p.nvalidation; i++) {
            if (i)
                assert_true(p.validation[i] > p.validation[i - 1]);
            count[p.validation[i]] += 100;
        }
        for (int r = 0; r < W; r++) {
            if (p.shard_len[r] != want_len(T, B, W, r))
                fail_msg("T=%zu B=%lld W=%d: shard %d has %zu, expected %zu", T, (long long)B, W, r,
                         p.shard_len[r], want_len(T, B, W, r));
            for (size_t i = 0; i < p.shard_len[r]; i++) {
                assert_true(p.shards[r][i] < n);
                count[p.shards[r][i]]++;
            }
        }
        size_t covered = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(count[i] == 0 || count[i] == 1 || count[i] == 100);
            covered += count[i] == 1;
        }
        assert_int_equal(covered, T);

        /* train_indices is the concatenation. */
        uint32_t *all = malloc(T * sizeof *all);
        assert_non_null(all);
        ud_plan_train_indices(&p, all);
        size_t k = 0;
        for (int r = 0; r < W; r++)
            for (size_t i = 0; i < p.shard_len[r]; i++)
                assert_int_equal(all[k++], p.shards[r][i]);
        free(all);
        free(count);
        ud_plan_deinit(&p);
        assert_null(p.shards);
    }
}

/* The assignment is a seeded shuffle: same seed same plan, another seed another. */
static void test_same_seed_same_plan(void **state)
{
    (void)state;
    struct ud_plan a, b, c;
    make_plan(500, 32, 3, 1, 7, &a);
    make_plan(500, 32, 3, 1, 7, &b);
    make_plan(500, 32, 3, 1, 8, &c);
    assert_int_equal(ud_plan_hash(&a), ud_plan_hash(&b));
    for (int r = 0; r < 3; r++)
        assert_memory_equal(a.shards[r], b.shards[r], a.shard_len[r] * sizeof(uint32_t));
    assert_true(ud_plan_hash(&a) != ud_plan_hash(&c));
    assert_true(memcmp(a.shards[0], c.shards[0], a.shard_len[0] * sizeof(uint32_t)) != 0);
    /* The shards are not just consecutive runs of the training indices. */
    int ascending = 1;
    for (size_t i = 1; i < a.shard_len[0]; i++)
        ascending &= a.shards[0][i] > a.shards[0][i - 1];
    assert_false(ascending);
    /* The hash covers the flags too. */
    b.shuffle = 0;
    assert_true(ud_plan_hash(&a) != ud_plan_hash(&b));
    ud_plan_deinit(&a);
    ud_plan_deinit(&b);
    ud_plan_deinit(&c);
}

/* ------------------------------------------------------------------------------------------ */
/* Epoch orders                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* perm is a permutation of 0..n-1, and every step's rank slices (as the engine cuts them) stay
 * inside their rank's shard. Returns rank r's positions in visiting order in seq[r] (if seq). */
static void check_order(const struct ud_plan *p, const uint32_t *perm, size_t n, uint32_t **seq)
{
    char *seen = calloc(n, 1);
    assert_non_null(seen);
    for (size_t i = 0; i < n; i++) {
        assert_true(perm[i] < n);
        assert_false(seen[perm[i]]);
        seen[perm[i]] = 1;
    }
    free(seen);
    size_t *off = calloc((size_t)p->world + 1, sizeof *off), *got = NULL;
    got = calloc((size_t)p->world, sizeof *got);
    assert_non_null(off);
    assert_non_null(got);
    for (int r = 0; r < p->world; r++)
        off[r + 1] = off[r] + p->shard_len[r];
    size_t G = (size_t)p->batch, spe = (n + G - 1) / G;
    for (size_t s = 0; s < spe; s++) {
        size_t lo_g = s * G, hi_g = lo_g + G < n ? lo_g + G : n;
        for (int r = 0; r < p->world; r++) {
            size_t lo, hi;
            ud_update_rank_slice(hi_g - lo_g, r, p->world, &lo, &hi);
            for (size_t i = lo_g + lo; i < lo_g + hi; i++) {
                if (perm[i] < off[r] || perm[i] >= off[r + 1])
                    fail_msg("step %zu rank %d: position %u is outside shard [%zu, %zu)", s, r,
                             perm[i], off[r], off[r + 1]);
                if (seq)
                    seq[r][got[r]] = perm[i];
                got[r]++;
            }
        }
    }
    for (int r = 0; r < p->world; r++)
        assert_int_equal(got[r], p->shard_len[r]);
    free(off);
    free(got);
}

static void test_epoch_order_slices_in_shard(void **state)
{
    (void)state;
    for (size_t c = 0; c < NSHAPES; c++)
        for (int shuffle = 0; shuffle <= 1; shuffle++) {
            struct ud_plan p;
            make_plan(SHAPES[c].T, SHAPES[c].B, SHAPES[c].W, shuffle, 3, &p);
            size_t n = ud_plan_train_count(&p);
            uint32_t *perm = malloc(n * sizeof *perm);
            assert_non_null(perm);
            for (int64_t ep = 0; ep < 3; ep++) {
                ud_plan_epoch_order(&p, ep, perm, n);
                check_order(&p, perm, n, NULL);
            }
            free(perm);
            ud_plan_deinit(&p);
        }
}

/* Shuffled: epochs differ, every rank's order changes, the same epoch repeats exactly.
 * Unshuffled: each rank visits its shard in shard order, every epoch the same. */
static void test_epoch_order_shuffle(void **state)
{
    (void)state;
    struct ud_plan p;
    make_plan(1000, 33, 7, 1, 11, &p);
    size_t n = ud_plan_train_count(&p);
    uint32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    uint32_t *seq_a[7], *seq_b[7];
    for (int r = 0; r < 7; r++) {
        seq_a[r] = malloc(p.shard_len[r] * sizeof(uint32_t));
        seq_b[r] = malloc(p.shard_len[r] * sizeof(uint32_t));
    }
    ud_plan_epoch_order(&p, 0, a, n);
    ud_plan_epoch_order(&p, 1, b, n);
    ud_plan_epoch_order(&p, 0, c, n);
    assert_memory_equal(a, c, n * sizeof *a);
    check_order(&p, a, n, seq_a);
    check_order(&p, b, n, seq_b);
    for (int r = 0; r < 7; r++)
        if (memcmp(seq_a[r], seq_b[r], p.shard_len[r] * sizeof(uint32_t)) == 0)
            fail_msg("rank %d visits its shard in the same order in epochs 0 and 1", r);
    /* Rank 0's epoch order is ud_rng_permutation's from the plan's stream for (0, 0). */
    struct ud_rng rng;
    ud_rng_seed(&rng, 11, UD_PLAN_RNG_STREAM ^ (1ull * 0x9e3779b97f4a7c15ull));
    uint32_t *o = malloc(p.shard_len[0] * sizeof *o);
    ud_rng_permutation(&rng, o, p.shard_len[0]);
    assert_memory_equal(o, seq_a[0], p.shard_len[0] * sizeof *o);
    free(o);

    /* Without shuffle: shard order, every epoch. */
    p.shuffle = 0;
    ud_plan_epoch_order(&p, 0, a, n);
    ud_plan_epoch_order(&p, 5, b, n);
    assert_memory_equal(a, b, n * sizeof *a);
    check_order(&p, a, n, seq_a);
    size_t off = 0;
    for (int r = 0; r < 7; r++) {
        for (size_t j = 0; j < p.shard_len[r]; j++)
            assert_int_equal(seq_a[r][j], off + j);
        off += p.shard_len[r];
    }
    for (int r = 0; r < 7; r++) {
        free(seq_a[r]);
        free(seq_b[r]);
    }
    free(a);
    free(b);
    free(c);
    ud_plan_deinit(&p);
}

/* One rank of one, shuffle off: the order is the identity, as the standalone engine's. */
static void test_epoch_order_single_rank_identity(void **state)
{
    (void)state;
    struct ud_plan p;
    make_plan(50, 8, 1, 0, 1, &p);
    uint32_t perm[50];
    ud_plan_epoch_order(&p, 2, perm, 50);
    for (uint32_t i = 0; i < 50; i++)
        assert_int_equal(perm[i], i);
    ud_plan_deinit(&p);
}

/* ------------------------------------------------------------------------------------------ */
/* Manifests                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static void test_manifest(void **state)
{
    (void)state;
    struct ud_err e = {0};
    ud_dataset_t *ds = make_data(30);
    struct ud_manifest m;
    assert_int_equal(ud_manifest_from_dataset(ds, &m, &e), 0);
    assert_int_equal(m.samples, 30);
    assert_int_equal(m.nclasses, 3);
    assert_string_equal(m.classes[2], "owl");
    /* FNV-1a over the int32 labels, little-endian, computed here by hand. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 30; i++) {
        uint32_t v = (uint32_t)(i % 3);
        for (int k = 0; k < 4; k++) {
            h ^= (v >> (8 * k)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    assert_int_equal(m.labels_hash, h);
    assert_int_equal(ud_manifest_labels_hash(ds), h);
    assert_int_equal(ud_manifest_check(&m, ds, &e), 0);

    /* A changed label. */
    float x[2] = {0, 0};
    assert_int_equal(ud_dataset_set_f32(ds, 17, x, 0), 0);
    assert_int_equal(ud_manifest_check(&m, ds, &e), UD_ECONFLICT);
    assert_msg_has(&e, "labels hash");
    ud_dataset_destroy(&ds);

    /* Another sample count. */
    ds = make_data(31);
    assert_int_equal(ud_manifest_check(&m, ds, &e), UD_ECONFLICT);
    assert_msg_has(&e, "31 samples");
    ud_dataset_destroy(&ds);

    /* A renamed class. */
    ds = make_data(30);
    free(m.classes[1]);
    m.classes[1] = strdup("wolf");
    assert_int_equal(ud_manifest_check(&m, ds, &e), UD_ECONFLICT);
    assert_msg_has(&e, "class 1");
    assert_msg_has(&e, "wolf");

    /* Another class count. */
    m.nclasses = 2;
    assert_int_equal(ud_manifest_check(&m, ds, &e), UD_ECONFLICT);
    assert_msg_has(&e, "3 classes");
    m.nclasses = 3;
    ud_dataset_destroy(&ds);
    ud_manifest_deinit(&m);
    assert_null(m.classes);
}

/* A plan from a real dataset and split, as the coordinator makes one. */
static void test_plan_from_dataset_split(void **state)
{
    (void)state;
    struct ud_err e = {0};
    ud_dataset_t *ds = make_data(300);
    struct ud_manifest m;
    assert_int_equal(ud_manifest_from_dataset(ds, &m, &e), 0);
    uint32_t *tr, *va;
    size_t ntr, nva;
    struct ud_split sp = {.kind = UD_SPLIT_FIXED, .ratio = 0.1, .seed = 5};
    assert_int_equal(ud_split_indices(300, &sp, &tr, &ntr, &va, &nva, &e), 0);
    struct ud_plan p;
    assert_int_equal(ud_plan_make(&m, tr, ntr, va, nva, 5, 32, 1, 2, &p, &e), 0);
    assert_int_equal(p.nvalidation, nva);
    assert_memory_equal(p.validation, va, nva * sizeof *va);
    assert_int_equal(ud_plan_train_count(&p), ntr);
    assert_int_equal(ud_manifest_check(&p.manifest, ds, &e), 0);
    free(tr);
    free(va);
    ud_plan_deinit(&p);
    ud_manifest_deinit(&m);
    ud_dataset_destroy(&ds);
}

/* ------------------------------------------------------------------------------------------ */
/* Refusals                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void test_make_refuses(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_manifest m = fake_manifest(10);
    uint32_t tr[8] = {0, 1, 2, 3, 4, 5, 6, 7}, va[2] = {9, 8};
    struct ud_plan p;
    assert_int_equal(ud_plan_make(&m, tr, 8, va, 2, 1, 2, 1, 3, &p, &e), UD_EINVAL);
    assert_msg_has(&e, "batch 2");
    assert_null(p.shards);
    assert_int_equal(ud_plan_make(&m, tr, 8, va, 2, 1, 4, 1, 0, &p, &e), UD_EINVAL);
    assert_int_equal(ud_plan_make(&m, tr, 0, va, 2, 1, 4, 1, 2, &p, &e), UD_EINVAL);
    assert_msg_has(&e, "no training samples");
    tr[3] = 10; /* out of range */
    assert_int_equal(ud_plan_make(&m, tr, 8, va, 2, 1, 4, 1, 2, &p, &e), UD_EINVAL);
    assert_msg_has(&e, "is 10");
    assert_null(p.shards);
    tr[3] = 9; /* also in validation */
    assert_int_equal(ud_plan_make(&m, tr, 8, va, 2, 1, 4, 1, 2, &p, &e), UD_EINVAL);
    assert_msg_has(&e, "twice");
    tr[3] = 3;
    /* Validation given out of order comes back ascending. */
    assert_int_equal(ud_plan_make(&m, tr, 8, va, 2, 1, 4, 1, 2, &p, &e), 0);
    assert_int_equal(p.validation[0], 8);
    assert_int_equal(p.validation[1], 9);
    ud_plan_deinit(&p);
}

static void test_validate_refuses(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_plan p;
    make_plan(100, 16, 3, 1, 9, &p);
    assert_int_equal(ud_plan_validate(&p, &e), 0);

    /* A duplicated index (across shards). */
    uint32_t keep = p.shards[1][4];
    p.shards[1][4] = p.shards[0][0];
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "twice");
    /* A training index that is also a validation index. */
    p.shards[1][4] = p.validation[2];
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "twice");
    /* Out of range. */
    p.shards[1][4] = (uint32_t)p.manifest.samples;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "shard 1 index 4");
    p.shards[1][4] = keep;
    assert_int_equal(ud_plan_validate(&p, &e), 0);

    /* A wrong shard length (the array is longer than that, so nothing is read out of it).
     * (Shortening shard 2 would not do: 31 + 31 + 37 is the right split of 99.) */
    p.shard_len[0]--;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "shard 0 has 30 indices, expected 31");
    p.shard_len[0]++;
    /* Lengths moved between shards: same total, wrong split. */
    p.shard_len[0]--;
    p.shard_len[2]++;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "shard 0");
    p.shard_len[0]++;
    p.shard_len[2]--;

    /* Validation out of order, out of range. */
    uint32_t v0 = p.validation[0];
    p.validation[0] = p.validation[1];
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "ascending");
    p.validation[0] = v0;
    uint32_t vl = p.validation[p.nvalidation - 1];
    p.validation[p.nvalidation - 1] = 1u << 31;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "validation index");
    p.validation[p.nvalidation - 1] = vl;

    /* World and batch. */
    p.batch = 2;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "batch 2");
    p.batch = 16;
    int w = p.world;
    p.world = UD_PLAN_MAX_WORLD + 1;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    p.world = 0;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    p.world = w;
    /* Too few samples for the indices. */
    uint64_t ns = p.manifest.samples;
    p.manifest.samples = 50;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    assert_msg_has(&e, "only 50 samples");
    p.manifest.samples = (uint64_t)UD_PLAN_MAX_SAMPLES + 1;
    assert_int_equal(ud_plan_validate(&p, &e), UD_EFORMAT);
    p.manifest.samples = ns;
    assert_int_equal(ud_plan_validate(&p, &e), 0);
    ud_plan_deinit(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_disjoint_cover_and_lengths),
        cmocka_unit_test(test_same_seed_same_plan),
        cmocka_unit_test(test_epoch_order_slices_in_shard),
        cmocka_unit_test(test_epoch_order_shuffle),
        cmocka_unit_test(test_epoch_order_single_rank_identity),
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_plan_from_dataset_split),
        cmocka_unit_test(test_make_refuses),
        cmocka_unit_test(test_validate_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*  test_ckpt.c — training-session checkpoints: round trip of every field (state, rank files,
 *  model), completeness (DONE missing, every file corrupted, truncated or missing), the choice
 *  of the newest complete checkpoint, begin and prune, world mismatches, hand-made state files
 *  read against docs/checkpoints.md, and the `updraft checkpoints` / `updraft export` commands
 *  run on a session written here.
 */
#include "ud_test.h"

#include <dirent.h>
#include <math.h>
#include <sys/wait.h>

#include <msgpack.h>
#include <sodium.h>

#include "ud_envelope_impl.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_ckpt.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

/* ------------------------------------------------------------------------------------------ */
/* Fixtures                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static const char *const SPEC = "input 1 4 4\n"
                                "conv2d 2 3 pad=1\n"
                                "relu\n"
                                "flatten\n"
                                "dense 3\n"
                                "softmax\n";

static ud_model_t *make_model(uint64_t seed)
{
    ud_model_t *m = ud_test_model(SPEC, seed);
    struct ud_err e = {0};
    const char *labels[] = {"a", "b", "c"};
    assert_int_equal(ud_model_set_labels(m, labels, 3, &e), 0);
    return m;
}

/* A state with every field set to something recognisable, NaN metrics included. */
static void fill_state(struct ud_ckpt_state *st, int64_t iteration, int world, size_t nf)
{
    memset(st, 0, sizeof *st);
    snprintf(st->phase, sizeof st->phase, "training");
    st->iteration = iteration;
    st->date = 1700000000 + iteration;
    st->metrics.loss = 0.693147;
    st->metrics.accuracy = NAN;
    st->metrics.val_loss = NAN;
    st->metrics.val_accuracy = 0.8125;
    st->metrics.learning_rate = 0.00390625;
    st->epoch = iteration / 7;
    st->minibatch = iteration % 7;
    st->steps_per_epoch = 7;
    st->total_steps = 70;
    st->epoch_sums[0] = 12.5;
    st->epoch_sums[1] = 9;
    st->epoch_sums[2] = 16;
    st->world = world;
    st->threads = 3;
    ud_update_params_default(&st->params);
    st->params.optimizer = UD_OPT_ADAM;
    st->params.learning_rate = 0.003;
    st->params.momentum = 0.25;
    st->params.nesterov = 1;
    st->params.weight_decay = 1e-4;
    st->params.beta1 = 0.85;
    st->params.beta2 = 0.995;
    st->params.eps = 1e-7;
    st->params.mini_batch_size = 48;
    st->params.epochs = 10;
    st->params.shuffle = 0;
    st->params.seed = 0xfedcba9876543210ull; /* above INT64_MAX */
    st->params.schedule = UD_LR_STEP;
    st->params.step_epochs = 3;
    st->params.gamma = 0.5;
    snprintf(st->fingerprint, sizeof st->fingerprint,
             "arch tiny\ndata /d/\xc3\xa9t\xc3\xa9.csv\nepochs 10\n");
    st->optim_floats = nf;
    st->optim_state = nf ? malloc(nf * sizeof(float)) : NULL;
    for (size_t i = 0; i < nf; i++)
        st->optim_state[i] = (float)sin((double)i) * 1e-3f;
    if (nf > 2) {
        st->optim_state[1] = -0.0f;
        st->optim_state[2] = 1e-40f; /* subnormal */
    }
    st->optim_steps = iteration;
}

static void rank_rng(struct ud_rng *r, int64_t iteration, int rank)
{
    ud_rng_seed(r, 1000 + (uint64_t)iteration, 100 + (uint64_t)rank);
}

/* Writes checkpoint `it` of session with `world` ranks; commits it when asked. */
static void write_ckpt(const char *session, int64_t it, int world, bool commit)
{
    char dir[4096];
    struct ud_err e = {0};
    assert_int_equal(ud_ckpt_dir(session, it, dir, sizeof dir, &e), 0);
    if (ud_ckpt_begin(dir, &e) != 0)
        fail_msg("begin: %s", e.msg);
    ud_model_t *m = make_model((uint64_t)it);
    if (ud_ckpt_write_model(dir, m, &e) != 0)
        fail_msg("write_model: %s", e.msg);
    struct ud_ckpt_state st;
    fill_state(&st, it, world, 2 * ud_model_param_count(m));
    if (ud_ckpt_write_state(dir, &st, &e) != 0)
        fail_msg("write_state: %s", e.msg);
    ud_ckpt_state_deinit(&st);
    for (int r = 0; r < world; r++) {
        struct ud_rng rng;
        rank_rng(&rng, it, r);
        if (ud_ckpt_write_rank(dir, r, world, &rng, &e) != 0)
            fail_msg("write_rank %d: %s", r, e.msg);
    }
    if (commit && ud_ckpt_commit(dir, world, &e) != 0)
        fail_msg("commit: %s", e.msg);
    ud_model_destroy(&m);
}

static void ckpt_file(const char *session, int64_t it, const char *name, char *out, size_t cap)
{
    char dir[4096];
    assert_int_equal(ud_ckpt_dir(session, it, dir, sizeof dir, NULL), 0);
    snprintf(out, cap, "%s/%s", dir, name);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Rewrites dir/DONE from docs/checkpoints.md for the files as they are now, so a test can
 * change a file and still have a DONE that matches it. */
static void rewrite_done(const char *dir, int world)
{
    char path[4200], text[8192];
    size_t at = (size_t)snprintf(text, sizeof text, "updraft-checkpoint-done 1\nworld %d\n", world);
    for (int i = 0; i < world + 2; i++) {
        char name[32];
        if (i == 0)
            snprintf(name, sizeof name, "model.udm");
        else if (i == 1)
            snprintf(name, sizeof name, "state.ckpt");
        else
            snprintf(name, sizeof name, "rank-%05d.ckpt", i - 2);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        size_t len;
        char *buf = ud_test_read(path, &len);
        unsigned char sha[32];
        char hex[65];
        crypto_hash_sha256(sha, (const unsigned char *)buf, len);
        sodium_bin2hex(hex, sizeof hex, sha, sizeof sha);
        free(buf);
        at += (size_t)snprintf(text + at, sizeof text - at, "file %s %zu %s\n", name, len, hex);
    }
    at += (size_t)snprintf(text + at, sizeof text - at, "end\n");
    snprintf(path, sizeof path, "%s/DONE", dir);
    ud_test_write_file(path, text, at);
}

static void assert_double_same(double a, double b)
{
    if (isnan(a) || isnan(b))
        assert_true(isnan(a) && isnan(b));
    else
        assert_true(a == b);
}

static void assert_states_equal(const struct ud_ckpt_state *a, const struct ud_ckpt_state *b,
                                bool optim)
{
    assert_string_equal(a->phase, b->phase);
    assert_int_equal(a->iteration, b->iteration);
    assert_int_equal(a->date, b->date);
    assert_double_same(a->metrics.loss, b->metrics.loss);
    assert_double_same(a->metrics.accuracy, b->metrics.accuracy);
    assert_double_same(a->metrics.val_loss, b->metrics.val_loss);
    assert_double_same(a->metrics.val_accuracy, b->metrics.val_accuracy);
    assert_double_same(a->metrics.learning_rate, b->metrics.learning_rate);
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->minibatch, b->minibatch);
    assert_int_equal(a->steps_per_epoch, b->steps_per_epoch);
    assert_int_equal(a->total_steps, b->total_steps);
    for (int i = 0; i < 3; i++)
        assert_true(a->epoch_sums[i] == b->epoch_sums[i]);
    assert_int_equal(a->world, b->world);
    assert_int_equal(a->threads, b->threads);
    const struct ud_update_params *p = &a->params, *q = &b->params;
    assert_int_equal(p->optimizer, q->optimizer);
    assert_true(p->learning_rate == q->learning_rate);
    assert_true(p->momentum == q->momentum);
    assert_int_equal(p->nesterov, q->nesterov);
    assert_true(p->weight_decay == q->weight_decay);
    assert_true(p->beta1 == q->beta1 && p->beta2 == q->beta2 && p->eps == q->eps);
    assert_int_equal(p->mini_batch_size, q->mini_batch_size);
    assert_int_equal(p->epochs, q->epochs);
    assert_int_equal(p->shuffle, q->shuffle);
    assert_true(p->seed == q->seed);
    assert_int_equal(p->schedule, q->schedule);
    assert_int_equal(p->step_epochs, q->step_epochs);
    assert_true(p->gamma == q->gamma);
    assert_string_equal(a->fingerprint, b->fingerprint);
    assert_int_equal(a->optim_steps, b->optim_steps);
    if (optim) {
        assert_int_equal(a->optim_floats, b->optim_floats);
        if (a->optim_floats)
            assert_memory_equal(a->optim_state, b->optim_state, a->optim_floats * sizeof(float));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Round trip                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static void test_dir_names(void **unused)
{
    (void)unused;
    char dir[64];
    struct ud_err e = {0};
    assert_int_equal(ud_ckpt_dir("s", 120, dir, sizeof dir, &e), 0);
    assert_string_equal(dir, "s/checkpoints/ckpt-000000000120");
    assert_int_equal(ud_ckpt_dir("s", 120, dir, 20, &e), UD_ELIMIT);
    assert_int_equal(ud_ckpt_dir("s", -1, dir, sizeof dir, &e), UD_EINVAL);
}

static void test_roundtrip(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("roundtrip");
    write_ckpt(session, 42, 3, true);

    char dir[4096];
    struct ud_err e = {0};
    assert_int_equal(ud_ckpt_dir(session, 42, dir, sizeof dir, &e), 0);
    struct ud_ckpt_state st;
    ud_model_t *m = NULL;
    if (ud_ckpt_read(dir, &st, &m, &e) != 0)
        fail_msg("read: %s", e.msg);
    assert_true(st.complete);
    assert_string_equal(st.problem, "");
    assert_string_equal(st.path, dir);

    ud_model_t *want = make_model(42);
    struct ud_ckpt_state ref;
    fill_state(&ref, 42, 3, 2 * ud_model_param_count(want));
    assert_states_equal(&st, &ref, true);
    assert_true(signbit(st.optim_state[1]) && st.optim_state[2] == 1e-40f);

    /* The model: parameters bit for bit. */
    assert_non_null(m);
    assert_same_params(m, want);

    /* Every rank's stream, and the world it was written with. */
    for (int r = 0; r < 3; r++) {
        struct ud_rng got, ref_rng;
        int world = 0;
        if (ud_ckpt_read_rank(dir, r, &world, &got, &e) != 0)
            fail_msg("read_rank %d: %s", r, e.msg);
        rank_rng(&ref_rng, 42, r);
        assert_int_equal(world, 3);
        assert_memory_equal(&got, &ref_rng, sizeof got);
    }
    struct ud_rng rng;
    int world = 0;
    assert_int_equal(ud_ckpt_read_rank(dir, 3, &world, &rng, &e), UD_ENOTFOUND);
    assert_msg_has(&e, "written by 3 ranks");

    /* Reading without a model; a state with no optimizer state (plain SGD). */
    ud_ckpt_state_deinit(&st);
    assert_null(st.optim_state);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), 0);
    ud_ckpt_state_deinit(&st);

    ud_ckpt_state_deinit(&ref);
    fill_state(&ref, 42, 3, 0);
    ref.params.optimizer = UD_OPT_SGD;
    ref.params.nesterov = 0;
    ref.params.schedule = UD_LR_COSINE;
    assert_int_equal(ud_ckpt_write_state(dir, &ref, &e), 0);
    assert_int_equal(ud_ckpt_commit(dir, 3, &e), 0);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), 0);
    assert_states_equal(&st, &ref, true);
    assert_null(st.optim_state);
    ud_ckpt_state_deinit(&st);
    ud_ckpt_state_deinit(&ref);
    ud_model_destroy(&want);
    ud_model_destroy(&m);
}

/* The writer refuses what would not read back. */
static void test_write_refuses(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("refuses");
    char dir[4096];
    struct ud_err e = {0};
    assert_int_equal(ud_ckpt_dir(session, 1, dir, sizeof dir, &e), 0);
    assert_int_equal(ud_ckpt_begin(dir, &e), 0);
    struct ud_ckpt_state st;
    fill_state(&st, 1, 1, 4);

    st.optim_state[3] = NAN;
    assert_int_equal(ud_ckpt_write_state(dir, &st, &e), UD_ENONFINITE);
    assert_msg_has(&e, "optim_state[3]");
    assert_msg_has(&e, "state.ckpt");
    st.optim_state[3] = 0;

    st.world = 0;
    assert_int_equal(ud_ckpt_write_state(dir, &st, &e), UD_ERANGE);
    assert_msg_has(&e, "world");
    st.world = 1;

    st.params.epochs = 0;
    assert_int_equal(ud_ckpt_write_state(dir, &st, &e), UD_ERANGE);
    assert_msg_has(&e, "params");
    st.params.epochs = 10;

    st.params.optimizer = (enum ud_optimizer)7;
    assert_int_equal(ud_ckpt_write_state(dir, &st, &e), UD_EINVAL);
    st.params.optimizer = UD_OPT_SGD;

    memset(st.phase, 'x', sizeof st.phase);
    assert_true(ud_ckpt_write_state(dir, &st, &e) < 0);
    assert_msg_has(&e, "phase");
    snprintf(st.phase, sizeof st.phase, "training");

    st.epoch_sums[0] = INFINITY;
    assert_int_equal(ud_ckpt_write_state(dir, &st, &e), UD_ENONFINITE);
    assert_msg_has(&e, "epoch_sums[0]");
    st.epoch_sums[0] = 1;
    ud_ckpt_state_deinit(&st);

    struct ud_rng zero = {{0, 0, 0, 0}};
    assert_int_equal(ud_ckpt_write_rank(dir, 0, 1, &zero, &e), UD_EINVAL);
    assert_int_equal(ud_ckpt_write_rank(dir, 1, 1, &zero, &e), UD_EINVAL);
    assert_msg_has(&e, "rank 1 of world 1");
    /* Nothing was written, so there is nothing to commit. */
    assert_int_equal(ud_ckpt_commit(dir, 1, &e), UD_ENOTFOUND);
    assert_msg_has(&e, "model.udm: missing");
}

/* ------------------------------------------------------------------------------------------ */
/* Completeness, listing, the newest complete one                                             */
/* ------------------------------------------------------------------------------------------ */

static void test_list_and_latest(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("list");
    struct ud_err e = {0};
    struct ud_ckpt_state *list = NULL;
    size_t n = 99;
    char dir[4096];

    /* A missing session: nothing, not an error. */
    assert_int_equal(ud_ckpt_list(session, &list, &n, &e), 0);
    assert_int_equal(n, 0);
    assert_null(list);
    assert_int_equal(ud_ckpt_latest(session, dir, sizeof dir, &e), UD_ENOTFOUND);
    assert_msg_has(&e, "no checkpoint");

    write_ckpt(session, 1000, 2, true);
    write_ckpt(session, 20, 2, true);
    write_ckpt(session, 3000, 2, false); /* a rank died before DONE */

    /* Other names are ignored. */
    char other[4200];
    snprintf(other, sizeof other, "%s/checkpoints/notes.txt", session);
    ud_test_write_file(other, "x", 1);
    snprintf(other, sizeof other, "%s/checkpoints/ckpt-abc", session);
    assert_int_equal(mkdir(other, 0777), 0);
    snprintf(other, sizeof other, "%s/checkpoints/ckpt-000000000005.tmp", session);
    assert_int_equal(mkdir(other, 0777), 0);
    snprintf(other, sizeof other, "%s/checkpoints/ckpt-000000000006", session);
    ud_test_write_file(other, "not a directory", 15);

    assert_int_equal(ud_ckpt_list(session, &list, &n, &e), 0);
    assert_int_equal(n, 3);
    const int64_t its[] = {20, 1000, 3000};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(list[i].iteration, its[i]);
        assert_string_equal(list[i].phase, "training");
        assert_int_equal(list[i].world, 2);
        assert_null(list[i].optim_state); /* not loaded by list */
        assert_true(isnan(list[i].metrics.accuracy));
        assert_true(list[i].metrics.val_accuracy == 0.8125);
        assert_int_equal(ud_ckpt_dir(session, its[i], dir, sizeof dir, &e), 0);
        assert_string_equal(list[i].path, dir);
    }
    assert_true(list[0].complete && list[1].complete);
    assert_false(list[2].complete);
    assert_str_has(list[2].problem, "no DONE marker");
    assert_str_has(list[2].problem, "incomplete");
    assert_string_equal(list[0].problem, "");
    ud_ckpt_list_free(&list, n);
    assert_null(list);

    assert_int_equal(ud_ckpt_latest(session, dir, sizeof dir, &e), 0);
    assert_str_has(dir, "ckpt-000000001000");
    char small[8];
    assert_int_equal(ud_ckpt_latest(session, small, sizeof small, &e), UD_ELIMIT);

    /* The incomplete one is refused by read, with the reason. */
    struct ud_ckpt_state st;
    assert_int_equal(ud_ckpt_dir(session, 3000, dir, sizeof dir, &e), 0);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), UD_ESTATE);
    assert_msg_has(&e, dir);
    assert_msg_has(&e, "no DONE marker");
    struct ud_rng rng;
    int world;
    assert_int_equal(ud_ckpt_read_rank(dir, 0, &world, &rng, &e), UD_ESTATE);

    /* Only incomplete ones: latest says none, and why. */
    const char *s2 = ud_test_fresh_path("list-none");
    write_ckpt(s2, 7, 1, false);
    assert_int_equal(ud_ckpt_latest(s2, dir, sizeof dir, &e), UD_ENOTFOUND);
    assert_msg_has(&e, "no complete checkpoint");
    assert_msg_has(&e, "no DONE marker");
}

enum damage { FLIP, TRUNCATE, REMOVE };

static void damage_file(const char *path, enum damage d)
{
    size_t len;
    char *buf = ud_test_read(path, &len);
    switch (d) {
    case FLIP:
        buf[len / 2] ^= 0x10;
        ud_test_write_file(path, buf, len);
        break;
    case TRUNCATE:
        ud_test_write_file(path, buf, len / 2);
        break;
    case REMOVE:
        assert_int_equal(unlink(path), 0);
        break;
    }
    free(buf);
}

/* Every file of the newest checkpoint damaged in turn: it is listed with a problem naming the
 * file, read refuses it, and latest falls back to the older complete one. */
static void test_damaged_files(void **unused)
{
    (void)unused;
    const char *files[] = {"model.udm", "state.ckpt", "rank-00000.ckpt", "rank-00001.ckpt", "DONE"};
    const char *dname[] = {"flipped", "truncated", "removed"};
    for (size_t f = 0; f < 5; f++) {
        for (int d = FLIP; d <= REMOVE; d++) {
            const char *session = ud_test_fresh_path("damaged");
            struct ud_err e = {0};
            write_ckpt(session, 10, 2, true);
            write_ckpt(session, 20, 2, true);
            char path[4200], dir[4096];
            ckpt_file(session, 20, files[f], path, sizeof path);
            damage_file(path, (enum damage)d);
            assert_int_equal(ud_ckpt_dir(session, 20, dir, sizeof dir, &e), 0);

            struct ud_ckpt_state *list = NULL;
            size_t n = 0;
            assert_int_equal(ud_ckpt_list(session, &list, &n, &e), 0);
            assert_int_equal(n, 2);
            assert_true(list[0].complete);
            if (list[1].complete)
                fail_msg("%s %s: still listed complete", files[f], dname[d]);
            /* A damaged DONE may name the file whose line the damage hit instead. */
            if (f < 4)
                assert_str_has(list[1].problem, files[f]);
            if (f == 4 && d == REMOVE)
                assert_str_has(list[1].problem, "no DONE marker");
            if (f < 4 && d == FLIP)
                assert_str_has(list[1].problem, "checksum mismatch");
            if (f < 4 && d == TRUNCATE)
                assert_str_has(list[1].problem, "truncated");
            if (f < 4 && d == REMOVE)
                assert_str_has(list[1].problem, "missing");
            /* Without its state.ckpt, the iteration comes from the directory's name. */
            assert_int_equal(list[1].iteration, 20);
            if (f == 1 && d != FLIP) {
                assert_string_equal(list[1].phase, "");
                assert_true(isnan(list[1].metrics.loss));
            }
            ud_ckpt_list_free(&list, n);

            struct ud_ckpt_state st;
            ud_model_t *m = NULL;
            int rc = ud_ckpt_read(dir, &st, &m, &e);
            assert_true(rc < 0);
            assert_null(m);
            assert_null(st.optim_state);
            assert_msg_has(&e, dir);
            if (f < 4)
                assert_msg_has(&e, files[f]);
            if (f >= 2 && f < 4) {
                struct ud_rng rng;
                int world;
                assert_true(ud_ckpt_read_rank(dir, (int)f - 2, &world, &rng, &e) < 0);
                assert_msg_has(&e, files[f]);
            }

            assert_int_equal(ud_ckpt_latest(session, dir, sizeof dir, &e), 0);
            assert_str_has(dir, "ckpt-000000000010");
        }
    }
}

/* DONE itself, hand-made against docs/checkpoints.md: what is accepted and what is not. */
static void test_done_format(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("done");
    struct ud_err e = {0};
    write_ckpt(session, 5, 1, true);
    char dir[4096], path[4200];
    assert_int_equal(ud_ckpt_dir(session, 5, dir, sizeof dir, &e), 0);
    snprintf(path, sizeof path, "%s/DONE", dir);

    /* The one the spec describes, written by the test: accepted. */
    rewrite_done(dir, 1);
    struct ud_ckpt_state st;
    if (ud_ckpt_read(dir, &st, NULL, &e) != 0)
        fail_msg("hand-made DONE refused: %s", e.msg);
    ud_ckpt_state_deinit(&st);
    size_t len;
    char *good = ud_test_read(path, &len);

    struct {
        const char *from, *to, *want;
    } cases[] = {
        {"updraft-checkpoint-done 1", "updraft-checkpoint-done 2", "newer updraft"},
        {"updraft-checkpoint-done 1", "something else", "not an updraft checkpoint marker"},
        {"world 1", "world 2", "does not list rank-00001.ckpt"},
        {"world 1", "world 0", "world N"},
        {"world 1", "world  1", "world N"},
        {"end\n", "", "no \"end\""},
        {"end\n", "end\nmore\n", "after \"end\""},
        {"end\n", "end", "does not end"},
        {"file model.udm", "file  model.udm", "expected \"file NAME SIZE SHA256\""},
        {"file model.udm", "file other.udm", "not a file of a checkpoint"},
        {"file rank-00000.ckpt", "file rank-00001.ckpt", "not a file of a checkpoint"},
        {"file state.ckpt", "file model.udm", "listed twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *at = strstr(good, cases[i].from);
        assert_non_null(at);
        char bad[8192];
        int n = snprintf(bad, sizeof bad, "%.*s%s%s", (int)(at - good), good, cases[i].to,
                         at + strlen(cases[i].from));
        ud_test_write_file(path, bad, (size_t)n);
        ud_err_clear(&e);
        assert_true(ud_ckpt_read(dir, &st, NULL, &e) < 0);
        assert_msg_has(&e, "DONE");
        assert_msg_has(&e, cases[i].want);
    }
    /* A size the checkpoint cannot have, and a hash that is not hex. */
    char *at = strstr(good, "file state.ckpt ");
    assert_non_null(at);
    char bad[8192];
    int n = snprintf(bad, sizeof bad, "%.*sfile state.ckpt 99999999999 %s", (int)(at - good), good,
                     strchr(at + 16, ' ') + 1);
    ud_test_write_file(path, bad, (size_t)n);
    assert_true(ud_ckpt_read(dir, &st, NULL, &e) < 0);
    assert_msg_has(&e, "the limit is");
    memcpy(bad, good, len);
    at = bad + (strstr(good, "file state.ckpt ") - good);
    char *hex = strchr(at + 16, ' ') + 1;
    hex[5] = 'g';
    ud_test_write_file(path, bad, len);
    assert_true(ud_ckpt_read(dir, &st, NULL, &e) < 0);
    assert_msg_has(&e, "64 hex digits");
    ud_test_write_file(path, good, len);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), 0);
    ud_ckpt_state_deinit(&st);
    free(good);
}

/* ------------------------------------------------------------------------------------------ */
/* begin, commit and prune                                                                    */
/* ------------------------------------------------------------------------------------------ */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void test_begin(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("begin/nested/session");
    struct ud_err e = {0};
    char dir[4096], path[4200];

    /* Creates the session and checkpoints directories. */
    assert_int_equal(ud_ckpt_dir(session, 3, dir, sizeof dir, &e), 0);
    assert_int_equal(ud_ckpt_begin(dir, &e), 0);
    assert_int_equal(count_entries(dir), 0);

    /* A complete one is never touched. */
    write_ckpt(session, 3, 2, true);
    assert_int_equal(ud_ckpt_begin(dir, &e), UD_ECONFLICT);
    assert_msg_has(&e, dir);
    assert_msg_has(&e, "complete");
    struct ud_ckpt_state st;
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), 0);
    ud_ckpt_state_deinit(&st);

    /* A damaged one, or one without DONE, is emptied (DONE and leftovers included). */
    snprintf(path, sizeof path, "%s/rank-00001.ckpt", dir);
    damage_file(path, FLIP);
    snprintf(path, sizeof path, "%s/junk.tmp.123.abc", dir);
    ud_test_write_file(path, "x", 1);
    snprintf(path, sizeof path, "%s/subdir", dir);
    assert_int_equal(mkdir(path, 0777), 0);
    snprintf(path, sizeof path, "%s/subdir/f", dir);
    ud_test_write_file(path, "y", 1);
    assert_int_equal(ud_ckpt_begin(dir, &e), 0);
    assert_int_equal(count_entries(dir), 0);

    /* A file where the directory should be. */
    snprintf(path, sizeof path, "%s/checkpoints/ckpt-000000000009", session);
    ud_test_write_file(path, "x", 1);
    assert_int_equal(ud_ckpt_begin(path, &e), UD_EIO);
    assert_msg_has(&e, "not a directory");
}

static void test_commit_checks_world(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("world");
    struct ud_err e = {0};
    char dir[4096];
    write_ckpt(session, 8, 2, false);
    assert_int_equal(ud_ckpt_dir(session, 8, dir, sizeof dir, &e), 0);

    /* Committing another world than the state's and the rank files'. */
    assert_int_equal(ud_ckpt_commit(dir, 3, &e), UD_ECONFLICT);
    assert_msg_has(&e, "state.ckpt: world 2, committing 3");
    assert_int_equal(ud_ckpt_commit(dir, 0, &e), UD_EINVAL);

    /* A rank file of another world. */
    struct ud_rng rng;
    rank_rng(&rng, 8, 1);
    assert_int_equal(ud_ckpt_write_rank(dir, 1, 3, &rng, &e), 0);
    assert_int_equal(ud_ckpt_commit(dir, 2, &e), UD_ECONFLICT);
    assert_msg_has(&e, "rank-00001.ckpt: written by rank 1 of a world of 3");

    /* The same, with a DONE that matches the files (a buggy writer): listed incomplete, refused
     * by read and read_rank. */
    rewrite_done(dir, 2);
    struct ud_ckpt_state *list = NULL;
    size_t n = 0;
    assert_int_equal(ud_ckpt_list(session, &list, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_false(list[0].complete);
    assert_str_has(list[0].problem, "rank-00001.ckpt: written by rank 1 of a world of 3, DONE "
                                    "lists 2 ranks");
    ud_ckpt_list_free(&list, n);
    int world = 0;
    assert_int_equal(ud_ckpt_read_rank(dir, 1, &world, &rng, &e), UD_EFORMAT);
    assert_msg_has(&e, "world of 3");
    assert_int_equal(ud_ckpt_read_rank(dir, 0, &world, &rng, &e), 0);
    assert_int_equal(world, 2);
    struct ud_ckpt_state st;
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), UD_EFORMAT);

    /* A state of another world under a DONE that matches it. */
    rank_rng(&rng, 8, 1);
    assert_int_equal(ud_ckpt_write_rank(dir, 1, 2, &rng, &e), 0);
    struct ud_ckpt_state other;
    fill_state(&other, 8, 5, 0);
    assert_int_equal(ud_ckpt_write_state(dir, &other, &e), 0);
    rewrite_done(dir, 2);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), UD_EFORMAT);
    assert_msg_has(&e, "state.ckpt: world 5, DONE lists 2 ranks");

    /* A state of another iteration than its directory's name. */
    fill_state(&other, 9, 2, 0);
    assert_int_equal(ud_ckpt_write_state(dir, &other, &e), 0);
    assert_int_equal(ud_ckpt_commit(dir, 2, &e), UD_ECONFLICT);
    assert_msg_has(&e, "iteration 9, the directory name says 8");
    rewrite_done(dir, 2);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), UD_EFORMAT);
    assert_msg_has(&e, "iteration 9");
}

static bool ckpt_exists(const char *session, int64_t it)
{
    char dir[4096];
    assert_int_equal(ud_ckpt_dir(session, it, dir, sizeof dir, NULL), 0);
    return exists(dir);
}

static void test_prune(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("prune");
    struct ud_err e = {0};
    assert_int_equal(ud_ckpt_prune(session, 1, &e), 0); /* nothing there */
    assert_int_equal(ud_ckpt_prune(session, 0, &e), UD_EINVAL);

    write_ckpt(session, 10, 1, true);
    write_ckpt(session, 20, 1, false); /* stale: older than the newest complete one */
    write_ckpt(session, 30, 1, true);
    write_ckpt(session, 40, 1, true);
    write_ckpt(session, 50, 1, false); /* newer than any complete one: maybe being written */

    assert_int_equal(ud_ckpt_prune(session, 2, &e), 0);
    assert_false(ckpt_exists(session, 10));
    assert_false(ckpt_exists(session, 20));
    assert_true(ckpt_exists(session, 30));
    assert_true(ckpt_exists(session, 40));
    assert_true(ckpt_exists(session, 50));
    assert_int_equal(ud_ckpt_prune(session, 1, &e), 0);
    assert_false(ckpt_exists(session, 30));
    assert_true(ckpt_exists(session, 40));
    assert_true(ckpt_exists(session, 50));

    /* The newest "complete" one is damaged: the older complete one is the newest complete and
     * stays; the damaged one is newer than it and stays too. */
    const char *s2 = ud_test_fresh_path("prune-damaged");
    write_ckpt(s2, 1, 1, true);
    write_ckpt(s2, 2, 1, true);
    char path[4200];
    ckpt_file(s2, 2, "model.udm", path, sizeof path);
    damage_file(path, FLIP);
    assert_int_equal(ud_ckpt_prune(s2, 1, &e), 0);
    assert_true(ckpt_exists(s2, 1));
    assert_true(ckpt_exists(s2, 2));
    char dir[4096];
    assert_int_equal(ud_ckpt_latest(s2, dir, sizeof dir, &e), 0);
    assert_str_has(dir, "ckpt-000000000001");

    /* A later complete one makes both older ones go. */
    write_ckpt(s2, 3, 1, true);
    assert_int_equal(ud_ckpt_prune(s2, 1, &e), 0);
    assert_false(ckpt_exists(s2, 1));
    assert_false(ckpt_exists(s2, 2));
    assert_true(ckpt_exists(s2, 3));
    char root[4200];
    snprintf(root, sizeof root, "%s/checkpoints", s2);
    assert_int_equal(count_entries(root), 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Hand-made state files (docs/checkpoints.md)                                                */
/* ------------------------------------------------------------------------------------------ */

static const struct ud__env_format STATE_FORMAT = {"UDCK", 1, "updraft checkpoint state file",
                                                   "checkpoint state", (size_t)3 << 30};

/* What a hand-made state body may get wrong. */
struct mutation {
    const char *drop;  /* a key left out */
    const char *extra; /* an unknown key added */
    int64_t floats;    /* optim_floats as declared (-1: the true count) */
    size_t bin_bytes;  /* optim_state's length (SIZE_MAX: 4 * floats) */
    const char *optim; /* params.optimizer */
    double sum0;       /* epoch_sums[0] */
};

/* Packs the top-level key k unless mu drops it; returns whether its value is to follow. */
static bool pk_key(msgpack_packer *pk, const struct mutation *mu, const char *k)
{
    if (mu->drop && strcmp(mu->drop, k) == 0)
        return false;
    pk_str(pk, k);
    return true;
}

/* The top-level key k and the integer v, unless mu drops k. */
static void pk_field_int(msgpack_packer *pk, const struct mutation *mu, const char *k, int64_t v)
{
    if (pk_key(pk, mu, k))
        msgpack_pack_int64(pk, v);
}

static void pk_kd(msgpack_packer *pk, const char *k, double v)
{
    pk_str(pk, k);
    msgpack_pack_double(pk, v);
}

static void pk_ki(msgpack_packer *pk, const char *k, int64_t v)
{
    pk_str(pk, k);
    msgpack_pack_int64(pk, v);
}

static void pk_kb(msgpack_packer *pk, const char *k, bool v)
{
    pk_str(pk, k);
    v ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

/* The "params" map: every field of the spec's table. */
static void pack_params(msgpack_packer *pk, const struct ud_update_params *p, const char *optim)
{
    msgpack_pack_map(pk, 15);
    pk_str(pk, "optimizer");
    pk_str(pk, optim);
    pk_kd(pk, "learning_rate", p->learning_rate);
    pk_kd(pk, "momentum", p->momentum);
    pk_kb(pk, "nesterov", p->nesterov);
    pk_kd(pk, "weight_decay", p->weight_decay);
    pk_kd(pk, "beta1", p->beta1);
    pk_kd(pk, "beta2", p->beta2);
    pk_kd(pk, "eps", p->eps);
    pk_ki(pk, "mini_batch_size", p->mini_batch_size);
    pk_ki(pk, "epochs", p->epochs);
    pk_kb(pk, "shuffle", p->shuffle);
    pk_str(pk, "seed");
    msgpack_pack_uint64(pk, p->seed);
    pk_str(pk, "schedule");
    pk_str(pk, ud_lr_schedule_name(p->schedule));
    pk_ki(pk, "step_epochs", p->step_epochs);
    pk_kd(pk, "gamma", p->gamma);
}

/* Packs a state body from the spec's field table, not from the library's encoder. */
static void pack_state(msgpack_sbuffer *sb, const struct ud_ckpt_state *st,
                       const struct mutation *mu)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 16 - (mu->drop ? 1 : 0) + (mu->extra ? 1 : 0));
    if (mu->extra)
        pk_ki(&pk, mu->extra, 1);
    if (pk_key(&pk, mu, "phase"))
        pk_str(&pk, st->phase);
    pk_field_int(&pk, mu, "iteration", st->iteration);
    pk_field_int(&pk, mu, "date", st->date);
    if (pk_key(&pk, mu, "metrics")) {
        msgpack_pack_map(&pk, 5);
        pk_kd(&pk, "learning_rate", st->metrics.learning_rate); /* any order */
        pk_kd(&pk, "loss", st->metrics.loss);
        pk_kd(&pk, "accuracy", st->metrics.accuracy);
        pk_str(&pk, "val_loss");
        msgpack_pack_float(&pk, (float)st->metrics.val_loss); /* float 32 is accepted */
        pk_kd(&pk, "val_accuracy", st->metrics.val_accuracy);
    }
    pk_field_int(&pk, mu, "epoch", st->epoch);
    pk_field_int(&pk, mu, "minibatch", st->minibatch);
    pk_field_int(&pk, mu, "steps_per_epoch", st->steps_per_epoch);
    pk_field_int(&pk, mu, "total_steps", st->total_steps);
    if (pk_key(&pk, mu, "epoch_sums")) {
        msgpack_pack_array(&pk, 3);
        msgpack_pack_double(&pk, mu->sum0);
        msgpack_pack_int64(&pk, (int64_t)st->epoch_sums[1]); /* integers are accepted */
        msgpack_pack_double(&pk, st->epoch_sums[2]);
    }
    pk_field_int(&pk, mu, "world", st->world);
    pk_field_int(&pk, mu, "threads", st->threads);
    if (pk_key(&pk, mu, "params"))
        pack_params(&pk, &st->params, mu->optim);
    if (pk_key(&pk, mu, "fingerprint"))
        pk_str(&pk, st->fingerprint);
    if (pk_key(&pk, mu, "optim_floats"))
        msgpack_pack_uint64(&pk, mu->floats >= 0 ? (uint64_t)mu->floats : st->optim_floats);
    if (pk_key(&pk, mu, "optim_state")) {
        size_t bytes = mu->bin_bytes != SIZE_MAX ? mu->bin_bytes : 4 * st->optim_floats;
        msgpack_pack_bin(&pk, bytes);
        for (size_t i = 0; i < bytes; i++) {
            uint32_t u;
            memcpy(&u, &st->optim_state[i / 4 % st->optim_floats], 4);
            unsigned char c = (unsigned char)(u >> (8 * (i % 4))); /* little-endian */
            msgpack_pack_bin_body(&pk, &c, 1);
        }
    }
    pk_field_int(&pk, mu, "optim_steps", st->optim_steps);
}

/* Seals a hand-made body, installs it as state.ckpt of dir under a matching DONE, and reads
 * the checkpoint. Returns read's code; *st is filled on success. */
static int read_handmade(const char *dir, const struct ud_ckpt_state *ref,
                         const struct mutation *mu, uint64_t version, struct ud_ckpt_state *st,
                         struct ud_err *e)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_state(&sb, ref, mu);
    char *buf = NULL, path[4200];
    size_t len = 0;
    assert_int_equal(
        ud__env_seal(&STATE_FORMAT, version, NULL, NULL, sb.data, sb.size, &buf, &len, e), 0);
    msgpack_sbuffer_destroy(&sb);
    snprintf(path, sizeof path, "%s/state.ckpt", dir);
    ud_test_write_file(path, buf, len);
    free(buf);
    rewrite_done(dir, ref->world);
    ud_err_clear(e);
    return ud_ckpt_read(dir, st, NULL, e);
}

static void test_handmade_state(void **unused)
{
    (void)unused;
    const char *session = ud_test_fresh_path("handmade");
    struct ud_err e = {0};
    char dir[4096];
    write_ckpt(session, 14, 1, true);
    assert_int_equal(ud_ckpt_dir(session, 14, dir, sizeof dir, &e), 0);
    struct ud_ckpt_state ref, st;
    fill_state(&ref, 14, 1, 6);
    const struct mutation ok = {NULL, NULL, -1, SIZE_MAX, "adam", 12.5};

    /* Written from the spec (other key order, float 32 and integers where doubles go): read
     * back field for field. */
    if (read_handmade(dir, &ref, &ok, 1, &st, &e) != 0)
        fail_msg("hand-made state refused: %s", e.msg);
    ref.metrics.val_loss = (float)ref.metrics.val_loss;
    assert_states_equal(&st, &ref, true);
    ud_ckpt_state_deinit(&st);

    struct {
        struct mutation mu;
        uint64_t version;
        int code;
        const char *want;
    } cases[] = {
        {{"fingerprint", NULL, -1, SIZE_MAX, "adam", 12.5},
         1,
         UD_EFORMAT,
         "missing key \"fingerprint\""},
        {{"optim_state", NULL, -1, SIZE_MAX, "adam", 12.5},
         1,
         UD_EFORMAT,
         "missing key \"optim_state\""},
        {{NULL, "colour", -1, SIZE_MAX, "adam", 12.5}, 1, UD_EFORMAT, "unknown key \"colour\""},
        {{NULL, NULL, -1, SIZE_MAX, "rmsprop", 12.5}, 1, UD_EFORMAT, "params.optimizer"},
        {{NULL, NULL, -1, SIZE_MAX, "adam", -1.0}, 1, UD_EFORMAT, "epoch_sums[0]"},
        {{NULL, NULL, -1, SIZE_MAX, "adam", NAN}, 1, UD_ENONFINITE, "epoch_sums[0]"},
        {{NULL, NULL, -1, 20, "adam", 12.5}, 1, UD_ESHAPE, "optim_state: 20 bytes"},
        /* Declared sizes far beyond the bytes present: refused before anything is allocated. */
        {{NULL, NULL, (int64_t)1 << 40, 24, "adam", 12.5}, 1, UD_EFORMAT, "optim_floats"},
        {{NULL, NULL, (int64_t)UD_CKPT_MAX_OPTIM_FLOATS + 1, 24, "adam", 12.5},
         1,
         UD_EFORMAT,
         "optim_floats"},
        {{NULL, NULL, (int64_t)UD_CKPT_MAX_OPTIM_FLOATS, 24, "adam", 12.5},
         1,
         UD_ESHAPE,
         "optim_floats says 536870912 floats"},
        {{NULL, NULL, -1, SIZE_MAX, "adam", 12.5}, 2, UD_EVERSION, "newer updraft"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = read_handmade(dir, &ref, &cases[i].mu, cases[i].version, &st, &e);
        if (rc != cases[i].code)
            fail_msg("case %zu: %s (%s), expected %s", i, ud_err_name(rc), e.msg,
                     ud_err_name(cases[i].code));
        assert_msg_has(&e, "state.ckpt");
        assert_msg_has(&e, cases[i].want);
        assert_null(st.optim_state);
    }

    /* A bin header declaring 4 GiB inside a small file: the envelope or the scanner refuses. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "optim_state");
    msgpack_pack_bin(&pk, 0xffffffffu);
    char *buf = NULL, path[4200];
    size_t len = 0;
    assert_int_equal(ud__env_seal(&STATE_FORMAT, 1, NULL, NULL, sb.data, sb.size, &buf, &len, &e),
                     0);
    msgpack_sbuffer_destroy(&sb);
    snprintf(path, sizeof path, "%s/state.ckpt", dir);
    ud_test_write_file(path, buf, len);
    free(buf);
    rewrite_done(dir, 1);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), UD_EFORMAT);
    assert_msg_has(&e, "declares 4294967295 bytes");

    /* A foreign file in its place. */
    ud_test_write_file(path, "\x89PNG\r\n\x1a\n", 8);
    rewrite_done(dir, 1);
    assert_int_equal(ud_ckpt_read(dir, &st, NULL, &e), UD_EFOREIGN);
    assert_msg_has(&e, "not an updraft checkpoint state file");
    ud_ckpt_state_deinit(&ref);
}

/* ------------------------------------------------------------------------------------------ */
/* The CLI: updraft checkpoints and updraft export                                           */
/* ------------------------------------------------------------------------------------------ */

/* Runs a shell command; stdout into out (cap bytes), stderr into err. Returns the exit code. */
static int run(const char *cmd, char *out, size_t cap, char *err, size_t ecap)
{
    char full[8192], errpath[700];
    snprintf(errpath, sizeof errpath, "%s/cli.err", ud_test_scratch());
    snprintf(full, sizeof full, "%s 2>'%s'", cmd, errpath);
    int rc = ud_test_run(full, out, cap);
    FILE *f = fopen(errpath, "r");
    size_t n = f ? fread(err, 1, ecap - 1, f) : 0;
    err[n] = '\0';
    if (f)
        fclose(f);
    return rc;
}

static void test_cli(void **unused)
{
    (void)unused;
    char updraft[700];
    ud_test_bin("updraft", updraft, sizeof updraft);
    const char *session = ud_test_fresh_path("cli");
    write_ckpt(session, 7, 2, true);
    write_ckpt(session, 14, 2, true);
    write_ckpt(session, 21, 2, false);
    static char out[65536], err[8192];
    char cmd[4096], dir[4096];
    struct ud_err e = {0};

    /* Listing: one line each, oldest first. */
    snprintf(cmd, sizeof cmd, "'%s' checkpoints '%s'", updraft, session);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 0);
    char *l7 = strstr(out, "ckpt-000000000007"), *l21 = strstr(out, "ckpt-000000000021");
    assert_non_null(l7);
    assert_non_null(l21);
    assert_true(l7 < strstr(out, "ckpt-000000000014") && strstr(out, "ckpt-000000000014") < l21);
    assert_str_has(out, "complete");
    assert_str_has(out, "no DONE marker");
    assert_str_has(out, "training");
    assert_str_has(out, "Z"); /* the ISO 8601 UTC date */

    snprintf(cmd, sizeof cmd, "'%s' checkpoints '%s' --json", updraft, session);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 0);
    assert_true(out[0] == '[');
    assert_str_has(out, "\"iteration\":7,");
    assert_str_has(out, "\"phase\":\"training\"");
    assert_str_has(out, "\"complete\":true");
    assert_str_has(out, "\"complete\":false");
    assert_str_has(out, "\"problem\":\"no DONE marker");
    assert_str_has(out, "\"metrics\":{");
    assert_str_has(out, "\"accuracy\":null"); /* NaN */
    assert_str_has(out, "\"world\":2");

    /* Export of the newest complete one, given the session: its parameters. */
    char model[700];
    snprintf(model, sizeof model, "%s/exported.udm", ud_test_scratch());
    snprintf(cmd, sizeof cmd, "'%s' export '%s' --out '%s'", updraft, session, model);
    if (run(cmd, out, sizeof out, err, sizeof err) != 0)
        fail_msg("export failed: %s", err);
    assert_str_has(out, model);
    assert_str_has(out, "ckpt-000000000014");
    ud_model_t *want = make_model(14), *got = ud_udm_read(model, &e);
    assert_non_null(got);
    assert_same_params(got, want);
    char h1[65];
    ud_model_params_sha256(want, h1);
    double v = 0;
    assert_int_equal(ud_model_metric_get(got, "checkpoint_iteration", &v), 0);
    assert_true(v == 14);
    assert_int_equal(ud_model_metric_get(got, "train_loss", &v), 0);
    assert_true(v == 0.693147);
    assert_int_equal(ud_model_metric_get(got, "validation_accuracy", &v), 0);
    assert_int_equal(ud_model_metric_get(got, "validation_loss", &v), UD_ENOTFOUND); /* NaN */
    ud_model_destroy(&got);

    /* `updraft info --json` agrees. */
    snprintf(cmd, sizeof cmd, "'%s' info '%s' --json", updraft, model);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 0);
    char field[100];
    snprintf(field, sizeof field, "\"params_sha256\":\"%s\"", h1);
    assert_str_has(out, field);

    /* A checkpoint directory given directly. */
    assert_int_equal(ud_ckpt_dir(session, 7, dir, sizeof dir, &e), 0);
    snprintf(cmd, sizeof cmd, "'%s' export '%s' --out '%s'", updraft, dir, model);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 0);
    got = ud_udm_read(model, &e);
    assert_non_null(got);
    ud_model_destroy(&want);
    want = make_model(7);
    assert_same_params(got, want);
    ud_model_destroy(&got);
    ud_model_destroy(&want);

    /* An incomplete one: exit 1, the reason, nothing written. */
    char model2[700];
    snprintf(model2, sizeof model2, "%s/never.udm", ud_test_scratch());
    assert_int_equal(ud_ckpt_dir(session, 21, dir, sizeof dir, &e), 0);
    snprintf(cmd, sizeof cmd, "'%s' export '%s' --out '%s'", updraft, dir, model2);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 1);
    assert_str_has(err, "no DONE marker");
    assert_false(exists(model2));

    /* A corrupt one. */
    char path[4200];
    ckpt_file(session, 7, "model.udm", path, sizeof path);
    damage_file(path, FLIP);
    snprintf(cmd, sizeof cmd, "'%s' export '%s/checkpoints/ckpt-000000000007' --out '%s'", updraft,
             session, model2);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 1);
    assert_str_has(err, "model.udm: checksum mismatch");
    assert_false(exists(model2));

    /* Usage errors: exit 2. */
    snprintf(cmd, sizeof cmd, "'%s' export '%s'", updraft, session);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 2);
    assert_str_has(err, "--out");
    snprintf(cmd, sizeof cmd, "'%s' checkpoints", updraft);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 2);

    /* A session with none. */
    snprintf(cmd, sizeof cmd, "'%s' export '%s/none' --out '%s'", updraft, ud_test_scratch(),
             model2);
    assert_int_equal(run(cmd, out, sizeof out, err, sizeof err), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dir_names),     cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_write_refuses), cmocka_unit_test(test_list_and_latest),
        cmocka_unit_test(test_damaged_files), cmocka_unit_test(test_done_format),
        cmocka_unit_test(test_begin),         cmocka_unit_test(test_commit_checks_world),
        cmocka_unit_test(test_prune),         cmocka_unit_test(test_handmade_state),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

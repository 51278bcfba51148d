/*  test_coord_jobs.c — the coordinator core without sockets: the model store (paths refuse
 *  anything but a digest; puts are content-addressed), the shard planner against the worker's
 *  own split and plan packing, and the job state machine driven through the protocol
 *  functions and the monitor tick with a chosen clock: register -> RUNNING, progress and
 *  checkpoints, model registration (checksum, versions, idempotent re-upload), done, silence
 *  -> RESTARTING -> FAILED, and transitions the machine does not have. */
#include "ud_test.h"

#include <math.h>
#include <sodium.h>
#include <sqlite3.h>

#include "coord_db.h"
#include "coord_jobs_impl.h"
#include "coord_log.h"
#include "coord_store.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_model.h"
#include "updraft/ud_udm.h"

/* An uncompressed IDX pair scratch/<prefix>-{images-idx3,labels-idx1}-ubyte of n 2x2 images,
 * labels i % 3; returns the images path. */
static const char *write_idx(const char *prefix, int n)
{
    uint8_t *img = calloc(16 + (size_t)n * 4, 1), *lab = calloc(8 + (size_t)n, 1);
    uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2};
    uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, 0};
    ih[6] = lh[6] = (uint8_t)(n >> 8);
    ih[7] = lh[7] = (uint8_t)n;
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < n; i++) {
        img[16 + 4 * i] = (uint8_t)i;
        lab[8 + i] = (uint8_t)(i % 3);
    }
    char name[128];
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    ud_test_write(name, lab, 8 + (size_t)n);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    const char *p = ud_test_write(name, img, 16 + (size_t)n * 4);
    free(img);
    free(lab);
    return p;
}

/* ---- the model store ---- */

static void test_store(void **state)
{
    (void)state;
    const char *dir = ud_test_scratch();
    char path[1024], sha[65];
    struct ud_err e = {0};
    const char *bad[] = {"../../etc/passwd", "ABCDEF", "", "0123",
                         "E760241616C0F59E323CD5EB28A938E0A5994FA686657724534F24FB287EBE25"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(coord_store_path(dir, bad[i], path, sizeof path, &e), UD_EINVAL);
    assert_int_equal(coord_store_has(dir, "../x"), 0);

    static const char bytes[] = "model bytes";
    assert_int_equal(coord_store_put(dir, bytes, sizeof bytes, sha, &e), 0);
    unsigned char d[crypto_hash_sha256_BYTES];
    char want[65];
    crypto_hash_sha256(d, (const unsigned char *)bytes, sizeof bytes);
    sodium_bin2hex(want, sizeof want, d, sizeof d);
    assert_string_equal(sha, want);
    assert_true(coord_store_has(dir, sha));
    assert_int_equal(coord_store_path(dir, sha, path, sizeof path, &e), 0);
    char expect[1024];
    snprintf(expect, sizeof expect, "%s/models/sha256/%.2s/%s", dir, sha, sha);
    assert_string_equal(path, expect);
    /* Again: the same name, nothing new. */
    char sha2[65];
    assert_int_equal(coord_store_put(dir, bytes, sizeof bytes, sha2, &e), 0);
    assert_string_equal(sha, sha2);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((size_t)st.st_size, sizeof bytes);
}

/* ---- the planner ---- */

static void test_plan(void **state)
{
    (void)state;
    const char *data = write_idx("plan", 50);
    struct coord_spec s;
    struct ud_err e = {0};
    char json[1024];
    snprintf(json, sizeof json,
             "{\"name\":\"p\",\"data\":\"%s\",\"arch\":\"mlp\",\"batch\":6,\"validation\":0.2,"
             "\"seed\":5}",
             data);
    assert_int_equal(coord_spec_parse(json, strlen(json), &s, &e), 0);
    struct ud_plan p, q;
    assert_int_equal(coord_plan_make(&s, 3, &p, &e), 0);
    assert_int_equal(p.world, 3);
    assert_int_equal(p.manifest.samples, 50);
    assert_int_equal(p.manifest.nclasses, 3);
    /* The validation set is the worker's own split (same ratio and seed). */
    struct ud_split split = {.kind = UD_SPLIT_FIXED, .ratio = 0.2, .seed = 5};
    uint32_t *tr = NULL, *va = NULL;
    size_t ntr = 0, nva = 0;
    assert_int_equal(ud_split_indices(50, &split, &tr, &ntr, &va, &nva, &e), 0);
    assert_int_equal(p.nvalidation, nva);
    assert_memory_equal(p.validation, va, nva * sizeof *va);
    assert_int_equal(ud_plan_train_count(&p), ntr);
    free(tr);
    free(va);
    assert_int_equal(ud_plan_validate(&p, &e), 0);

    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(coord_plan_pack(&p, &buf, &len, &e), 0);
    assert_int_equal(coord_plan_unpack(buf, len, &q, &e), 0);
    assert_true(ud_plan_hash(&p) == ud_plan_hash(&q));
    ud_plan_deinit(&q);
    assert_int_not_equal(coord_plan_unpack(buf, len / 2, &q, &e), 0);
    free(buf);
    ud_plan_deinit(&p);

    /* A missing dataset is an error naming it; a world over the batch is refused. */
    struct coord_spec t = s;
    t.data = "/nonexistent/train-images-idx3-ubyte";
    assert_int_not_equal(coord_plan_make(&t, 2, &p, &e), 0);
    assert_msg_has(&e, "nonexistent");
    assert_int_equal(coord_plan_make(&s, 7, &p, &e), UD_EINVAL);
    coord_spec_deinit(&s);
}

/* ---- the state machine ---- */

struct fixture {
    sqlite3 *db;
    coord_jobs_t *j;
    struct coord_config cfg;
    char state[600], data[700];
    int seq;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    static int n;
    snprintf(f->state, sizeof f->state, "%s/state%d", ud_test_scratch(), n++);
    snprintf(f->data, sizeof f->data, "%s", write_idx("jobs", 40));
    struct ud_err e = {0};
    assert_int_equal(coord_db_open(f->state, 0, &f->db, &e), 0);
    f->cfg = (struct coord_config){.state_dir = f->state,
                                   .advertise = "tcp://127.0.0.1:1",
                                   .worker_path = "/bin/true",
                                   .mpirun_path = "/bin/false",
                                   .heartbeat_timeout = 10,
                                   .restart_timeout = 30,
                                   .cancel_grace = 5,
                                   .started = 1.0};
    f->j = coord_jobs_new(&f->cfg, f->db, &e);
    assert_non_null(f->j);
    coord_log_set_level(COORD_LOG_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    coord_jobs_destroy(&f->j);
    assert_null(f->j);
    coord_db_close(&f->db);
    free(f);
    return 0;
}

/* Inserts a PENDING job as POST /v1/jobs does; returns its id (static buffer). */
static const char *add_job(struct fixture *f, const char *name)
{
    static char id[32];
    char spec[1024];
    snprintf(id, sizeof id, "job-%06d", ++f->seq);
    snprintf(spec, sizeof spec, "{\"arch\":\"mlp\",\"batch\":4,\"data\":\"%s\",\"name\":\"%s\"}",
             f->data, name);
    struct ud_err e = {0};
    assert_int_equal(coord_db_run(f->db, &e,
                                  "INSERT INTO jobs (id, seq, name, state, spec, launch, created)"
                                  " VALUES (?, ?, ?, 'PENDING', ?, 0, 1.0)",
                                  "siss", id, (int64_t)f->seq, name, spec),
                     1);
    return id;
}

static const char *state_of(struct fixture *f, const char *id)
{
    static char s[16];
    struct job_row r;
    struct ud_err e = {0};
    assert_int_equal(job_load(f->j, id, &r, &e), 0);
    snprintf(s, sizeof s, "%s", r.state);
    job_row_deinit(&r);
    return s;
}

static struct ud_msg req_of(enum ud_msg_type t, const char *job)
{
    struct ud_msg m;
    memset(&m, 0, sizeof m);
    m.type = t;
    m.id = 1;
    ud_msg_set_str(&m.job, job);
    ud_msg_set_str(&m.host, "h");
    m.pid = 42;
    m.world = 2;
    return m;
}

static void do_register(struct fixture *f, const char *id, int want)
{
    struct ud_msg m = req_of(UD_MSG_REGISTER, id), reply;
    struct ud_err e = {0};
    assert_int_equal(coord_jobs_register(f->j, &m, &reply, &e), want);
    if (want == 0) {
        assert_int_equal(reply.type, UD_MSG_JOB);
        assert_int_equal(reply.plan.world, 2);
    }
    ud_msg_deinit(&reply);
    ud_msg_deinit(&m);
}

static void tiny_model(uint64_t seed, struct ud_msg *m)
{
    struct ud_err e = {0};
    ud_model_t *model = ud_test_preset("mlp", (struct ud_shape){1, 2, 2}, 3, seed);
    char *buf = NULL;
    assert_int_equal(ud_udm_encode(model, &buf, &m->udm_len, &e), 0);
    m->udm = (uint8_t *)buf;
    ud_model_destroy(&model);
    unsigned char d[crypto_hash_sha256_BYTES];
    char hex[65];
    crypto_hash_sha256(d, m->udm, m->udm_len);
    sodium_bin2hex(hex, sizeof hex, d, sizeof d);
    ud_msg_set_str(&m->sha256, hex);
}

static void test_lifecycle(void **state)
{
    struct fixture *f = *state;
    struct ud_err e = {0};
    char id[32];
    snprintf(id, sizeof id, "%s", add_job(f, "life"));
    do_register(f, "job-999999", UD_ENOTFOUND);
    do_register(f, "", 0); /* the oldest job waiting for workers */
    assert_string_equal(state_of(f, id), "RUNNING");

    int cancel = -1;
    struct ud_msg hb = req_of(UD_MSG_HEARTBEAT, id);
    hb.rank = 1;
    assert_int_equal(coord_jobs_heartbeat(f->j, &hb, &cancel, &e), 0);
    assert_int_equal(cancel, 0);
    hb.rank = 2; /* outside the 2 ranks */
    assert_int_equal(coord_jobs_heartbeat(f->j, &hb, &cancel, &e), UD_EINVAL);
    ud_msg_deinit(&hb);

    struct ud_msg pr = req_of(UD_MSG_PROGRESS, id);
    pr.step = 7;
    pr.total_steps = 20;
    ud_msg_add_metric(&pr, "loss", 0.5);
    ud_msg_add_metric(&pr, "val_loss", NAN);
    assert_int_equal(coord_jobs_progress(f->j, &pr, &cancel, &e), 0);
    ud_msg_deinit(&pr);
    struct ud_msg ck = req_of(UD_MSG_CHECKPOINT, id);
    ck.step = 7;
    ud_msg_set_str(&ck.path, "/ck/7");
    assert_int_equal(coord_jobs_checkpoint(f->j, &ck, &cancel, &e), 0);
    ud_msg_deinit(&ck);
    struct job_row r;
    assert_int_equal(job_load(f->j, id, &r, &e), 0);
    assert_int_equal(r.iteration, 7);
    assert_string_equal(r.resume_from, "/ck/7");
    job_row_deinit(&r);

    /* Model: a wrong checksum is refused; the right one registers version 1 and SUCCEEDED. */
    struct ud_msg mo = req_of(UD_MSG_MODEL, id);
    ud_msg_set_str(&mo.name, "life");
    tiny_model(1, &mo);
    int64_t version = 0;
    char good[65];
    snprintf(good, sizeof good, "%s", mo.sha256);
    mo.sha256[0] = mo.sha256[0] == '0' ? '1' : '0';
    assert_int_equal(coord_jobs_model(f->j, &mo, &version, &e), UD_ECHECKSUM);
    assert_string_equal(state_of(f, id), "RUNNING");
    snprintf(mo.sha256, 65, "%s", good);
    assert_int_equal(coord_jobs_model(f->j, &mo, &version, &e), 0);
    assert_int_equal(version, 1);
    assert_string_equal(state_of(f, id), "SUCCEEDED");
    version = 0;
    assert_int_equal(coord_jobs_model(f->j, &mo, &version, &e), 0); /* re-sent */
    assert_int_equal(version, 1);
    assert_true(coord_store_has(f->state, good));

    /* A finished job: heartbeats ack without cancel, register is refused. */
    hb = req_of(UD_MSG_HEARTBEAT, id);
    assert_int_equal(coord_jobs_heartbeat(f->j, &hb, &cancel, &e), 0);
    assert_int_equal(cancel, 0);
    ud_msg_deinit(&hb);
    do_register(f, id, UD_ESTATE);

    /* The next job of the same name gets version 2. */
    snprintf(id, sizeof id, "%s", add_job(f, "life"));
    do_register(f, id, 0);
    ud_msg_deinit(&mo);
    mo = req_of(UD_MSG_MODEL, id);
    ud_msg_set_str(&mo.name, "life");
    tiny_model(2, &mo);
    assert_int_equal(coord_jobs_model(f->j, &mo, &version, &e), 0);
    assert_int_equal(version, 2);
    ud_msg_deinit(&mo);

    /* No way back from a terminal state. */
    assert_int_equal(job_load(f->j, id, &r, &e), 0);
    assert_int_equal(job_transition(f->j, &r, "RUNNING", 5.0, "no", 0, &e), UD_EINTERNAL);
    job_row_deinit(&r);
}

static void test_done(void **state)
{
    struct fixture *f = *state;
    struct ud_err e = {0};
    char id[32];
    int cancel;
    snprintf(id, sizeof id, "%s", add_job(f, "done"));
    do_register(f, id, 0);
    struct ud_msg d = req_of(UD_MSG_DONE, id);
    ud_msg_set_str(&d.status, "failed");
    d.code = UD_EMPI;
    assert_int_equal(coord_jobs_done(f->j, &d, &cancel, &e), 0);
    assert_string_equal(state_of(f, id), "RESTARTING");
    do_register(f, id, 0); /* workers relaunched with --resume */
    assert_string_equal(state_of(f, id), "RUNNING");
    /* After a cancel request, a retryable failure ends the job instead. */
    assert_int_equal(
        coord_db_run(f->db, &e, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?", "s", id), 1);
    d.code = UD_ENET;
    assert_int_equal(coord_jobs_done(f->j, &d, &cancel, &e), 0);
    assert_int_equal(cancel, 1);
    assert_string_equal(state_of(f, id), "CANCELLED");
    ud_msg_deinit(&d);

    snprintf(id, sizeof id, "%s", add_job(f, "fatal"));
    do_register(f, id, 0);
    d = req_of(UD_MSG_DONE, id);
    ud_msg_set_str(&d.status, "failed");
    d.code = UD_EFORMAT;
    ud_msg_set_str(&d.msg, "bad data");
    assert_int_equal(coord_jobs_done(f->j, &d, &cancel, &e), 0);
    assert_string_equal(state_of(f, id), "FAILED");
    struct job_row r;
    assert_int_equal(job_load(f->j, id, &r, &e), 0);
    assert_non_null(strstr(r.message, "bad data"));
    job_row_deinit(&r);
    ud_msg_deinit(&d);
}

static void test_silence(void **state)
{
    struct fixture *f = *state;
    char id[32];
    snprintf(id, sizeof id, "%s", add_job(f, "quiet"));
    do_register(f, id, 0);
    double now = ud_clock_wall();
    coord_jobs_tick(f->j, now + 5); /* within the heartbeat timeout */
    assert_string_equal(state_of(f, id), "RUNNING");
    coord_jobs_tick(f->j, now + 11); /* rank 1 never spoke, rank 0 not since registering */
    assert_string_equal(state_of(f, id), "RESTARTING");
    struct job_row r;
    struct ud_err e = {0};
    assert_int_equal(job_load(f->j, id, &r, &e), 0);
    assert_non_null(strstr(r.message, "ranks 0, 1 silent"));
    job_row_deinit(&r);
    coord_jobs_tick(f->j, now + 20);
    assert_string_equal(state_of(f, id), "RESTARTING");
    coord_jobs_tick(f->j, now + 11 + 31); /* past --restart-timeout */
    assert_string_equal(state_of(f, id), "FAILED");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_plan),
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silence, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

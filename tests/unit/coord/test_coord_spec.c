/*  test_coord_spec.c — job specs: a good one becomes the worker's options in order; unknown
 *  keys, wrong types, out-of-range values, duplicate keys, malformed JSON, non-objects and
 *  oversized bodies are refused naming what is wrong; paths the coordinator cannot read (data,
 *  test, an arch spec file) are refused naming the key and the path; the Slurm launch keys. Also
 *  the database's schema version. */
#include "ud_test.h"

#include "coord_db.h"
#include "coord_spec.h"

static int parse(const char *json, struct coord_spec *s, struct ud_err *e)
{
    return coord_spec_parse(json, strlen(json), s, e);
}

/* args joined with spaces, for readable comparisons. */
static const char *joined(const struct coord_spec *s)
{
    static char buf[4096];
    buf[0] = '\0';
    for (int i = 0; i < s->nargs; i++) {
        if (i)
            strcat(buf, " ");
        strcat(buf, s->args[i]);
    }
    return buf;
}

static void test_good_spec(void **state)
{
    const char *json = "{\"name\":\"fashion-mlp\",\"data\":\"/d/train.gz\",\"test\":\"/d/test.gz\","
                       "\"arch\":\"mlp\",\"epochs\":3,\"batch\":64,\"lr\":0.05,\"momentum\":0.9,"
                       "\"nesterov\":true,\"validation\":\"none\",\"seed\":7,\"shuffle\":false,"
                       "\"max_samples\":2000,\"input\":\"1,28,28\",\"report_every\":5,"
                       "\"launch\":{\"np\":2,\"max_restarts\":1},\"session\":\"/s\"}";
    struct coord_spec s;
    struct ud_err e = {0};
    assert_int_equal(parse(json, &s, &e), 0);
    assert_string_equal(s.name, "fashion-mlp");
    assert_string_equal(s.data, "/d/train.gz");
    assert_string_equal(s.test, "/d/test.gz");
    assert_string_equal(s.arch, "mlp");
    assert_string_equal(s.session, "/s");
    assert_int_equal(s.np, 2);
    assert_int_equal(s.max_restarts, 1);
    assert_int_equal(s.epochs, 3);
    assert_int_equal(s.batch, 64);
    assert_int_equal(s.max_samples, 2000);
    assert_int_equal(s.seed, 7);
    assert_int_equal(s.shuffle, 0);
    assert_string_equal(s.validation, "none");
    assert_string_equal(s.input, "1,28,28");
    assert_string_equal(joined(&s),
                        "--data /d/train.gz --test /d/test.gz --arch mlp --epochs 3 --batch 64 "
                        "--lr 0.05 --momentum 0.9 --nesterov --validation none --seed 7 "
                        "--no-shuffle --input 1,28,28 --max-samples 2000 --report-every 5");
    /* Canonical: compact, sorted keys, numbers as short as they read back exactly. */
    assert_string_equal(s.canonical,
                        "{\"arch\":\"mlp\",\"batch\":64,\"data\":\"/d/train.gz\",\"epochs\":3,"
                        "\"input\":\"1,28,28\",\"launch\":{\"max_restarts\":1,\"np\":2},"
                        "\"lr\":0.05,\"max_samples\":2000,\"momentum\":0.9,\"name\":\"fashion-"
                        "mlp\",\"nesterov\":true,\"report_every\":5,\"seed\":7,\"session\":\"/"
                        "s\",\"shuffle\":false,\"test\":\"/d/test.gz\",\"validation\":\"none\"}");
    /* The canonical form parses to the same thing. */
    struct coord_spec s2;
    assert_int_equal(parse(s.canonical, &s2, &e), 0);
    assert_string_equal(joined(&s2),
                        "--data /d/train.gz --test /d/test.gz --arch mlp --epochs 3 --batch 64 "
                        "--lr 0.05 --momentum 0.9 --nesterov --validation none --seed 7 "
                        "--no-shuffle --input 1,28,28 --max-samples 2000 --report-every 5");
    coord_spec_deinit(&s2);
    coord_spec_deinit(&s);
    assert_null(s.canonical);
    coord_spec_deinit(&s); /* twice is fine */
}

static void test_minimal_spec_defaults(void **state)
{
    struct coord_spec s;
    struct ud_err e = {0};
    assert_int_equal(parse("{\"name\":\"m\",\"data\":\"d\",\"arch\":\"cnn\"}", &s, &e), 0);
    assert_string_equal(joined(&s), "--data d --arch cnn");
    assert_null(s.test);
    assert_null(s.session);
    assert_int_equal(s.np, 0);
    assert_int_equal(s.max_restarts, 3);
    assert_int_equal(s.epochs, 10);
    assert_int_equal(s.batch, 128);
    assert_int_equal(s.shuffle, 1);
    assert_string_equal(s.validation, "auto");
    assert_string_equal(s.input, "");
    coord_spec_deinit(&s);

    /* Every other key, including the optimizer's and the schedule's. */
    const char *json = "{\"name\":\"a.b_c-1\",\"data\":\"d\",\"arch\":\"a\",\"optimizer\":\"adam\","
                       "\"beta1\":0.8,\"beta2\":0.99,\"eps\":1e-07,\"weight_decay\":0.0001,"
                       "\"schedule\":\"step\",\"step_epochs\":2,\"gamma\":0.5,\"validation\":0.25,"
                       "\"threads\":2,\"skip_bad\":true,\"checkpoint_every\":100,"
                       "\"keep_checkpoints\":2,\"bucket_mb\":0.5,\"peer_timeout\":30}";
    assert_int_equal(parse(json, &s, &e), 0);
    assert_string_equal(joined(&s), "--data d --arch a --weight-decay 0.0001 --optimizer adam "
                                    "--beta1 0.8 --beta2 0.99 --eps 1e-07 --schedule step "
                                    "--step-epochs 2 --gamma 0.5 --validation 0.25 --threads 2 "
                                    "--skip-bad --checkpoint-every 100 --keep-checkpoints 2 "
                                    "--bucket-mb 0.5 --peer-timeout 30");
    assert_string_equal(s.validation, "0.25");
    assert_int_equal(s.skip_bad, 1);
    coord_spec_deinit(&s);
}

/* Each refused spec: the code, and a word the message must hold. */
static void expect_refused(const char *json, int code, const char *word)
{
    struct coord_spec s;
    struct ud_err e = {0};
    assert_refused(json, parse(json, &s, &e), code, &e, word);
    assert_null(s.canonical);
    assert_int_equal(s.nargs, 0);
}

#define BASE "\"name\":\"m\",\"data\":\"d\",\"arch\":\"mlp\""

static void test_refused(void **state)
{
    expect_refused("{" BASE ",\"epoch\":3}", UD_EINVAL, "unknown key 'epoch'");
    expect_refused("{" BASE ",\"launch\":{\"np\":2,\"gpus\":1}}", UD_EINVAL, "launch.gpus");
    expect_refused("{" BASE ",\"launch\":{}}", UD_EINVAL, "np");
    expect_refused("{" BASE ",\"launch\":2}", UD_EINVAL, "'launch' must be an object");
    expect_refused("{" BASE ",\"epochs\":\"3\"}", UD_EINVAL, "'epochs' must be a whole number");
    expect_refused("{" BASE ",\"epochs\":3.5}", UD_EINVAL, "'epochs'");
    expect_refused("{" BASE ",\"epochs\":0}", UD_EINVAL, "'epochs' is 0");
    expect_refused("{" BASE ",\"epochs\":1000001}", UD_EINVAL, "'epochs'");
    expect_refused("{" BASE ",\"batch\":65537}", UD_EINVAL, "'batch'");
    expect_refused("{" BASE ",\"batch\":1,\"launch\":{\"np\":2}}", UD_EINVAL, "launch.np");
    expect_refused("{" BASE ",\"launch\":{\"np\":257}}", UD_EINVAL, "launch.np");
    expect_refused("{" BASE ",\"launch\":{\"np\":2,\"max_restarts\":-1}}", UD_EINVAL,
                   "max_restarts");
    expect_refused("{" BASE ",\"lr\":0}", UD_EINVAL, "'lr'");
    expect_refused("{" BASE ",\"lr\":-1}", UD_EINVAL, "'lr'");
    expect_refused("{" BASE ",\"lr\":\"fast\"}", UD_EINVAL, "'lr' must be a number");
    expect_refused("{" BASE ",\"momentum\":1}", UD_EINVAL, "'momentum'");
    expect_refused("{" BASE ",\"momentum\":0,\"nesterov\":true}", UD_EINVAL, "Nesterov");
    expect_refused("{" BASE ",\"nesterov\":1}", UD_EINVAL, "'nesterov' must be true or false");
    expect_refused("{" BASE ",\"optimizer\":\"rmsprop\"}", UD_EINVAL, "'optimizer'");
    expect_refused("{" BASE ",\"schedule\":\"linear\"}", UD_EINVAL, "'schedule'");
    expect_refused("{" BASE ",\"validation\":1.5}", UD_EINVAL, "'validation'");
    expect_refused("{" BASE ",\"validation\":\"0.1\"}", UD_EINVAL, "'validation'");
    expect_refused("{" BASE ",\"seed\":-1}", UD_EINVAL, "'seed'");
    expect_refused("{" BASE ",\"seed\":4611686018427387905}", UD_EINVAL, "'seed'");
    expect_refused("{" BASE ",\"input\":\"1,28\"}", UD_EINVAL, "'input'");
    expect_refused("{" BASE ",\"input\":\"5,28,28\"}", UD_EINVAL, "'input'");
    expect_refused("{" BASE ",\"input\":\"1,28,28x\"}", UD_EINVAL, "'input'");
    expect_refused("{" BASE ",\"bucket_mb\":0}", UD_EINVAL, "'bucket_mb'");
    expect_refused("{" BASE ",\"peer_timeout\":0.1}", UD_EINVAL, "'peer_timeout'");
    expect_refused("{" BASE ",\"report_every\":0}", UD_EINVAL, "'report_every'");
    expect_refused("{" BASE ",\"test\":null}", UD_EINVAL, "'test' must be a string");
    expect_refused("{" BASE ",\"test\":\"\"}", UD_EINVAL, "'test'");
    expect_refused("{\"data\":\"d\",\"arch\":\"mlp\"}", UD_EINVAL, "'name' is required");
    expect_refused("{\"name\":\"m\",\"arch\":\"mlp\"}", UD_EINVAL, "'data' is required");
    expect_refused("{\"name\":\"m\",\"data\":\"d\"}", UD_EINVAL, "'arch' is required");
    expect_refused("{\"name\":\"a/b\",\"data\":\"d\",\"arch\":\"mlp\"}", UD_EINVAL, "'name'");
    expect_refused("{\"name\":\"..\",\"data\":\"d\",\"arch\":\"mlp\"}", UD_EINVAL, "'name'");
    expect_refused("{\"name\":\"m\",\"data\":\"d\",\"arch\":\"mlp\",\"name\":\"n\"}", UD_EFORMAT,
                   "duplicate");
    expect_refused("{\"name\":\"m\",\n \"data\": }", UD_EFORMAT, "line 2, column");
    expect_refused("", UD_EFORMAT, "malformed JSON");
    expect_refused("{" BASE "} trailing", UD_EFORMAT, "malformed JSON");
    expect_refused("{\"name\":\"m\xff\"}", UD_EFORMAT, "malformed JSON"); /* bad UTF-8 */
    expect_refused("[1,2]", UD_EFORMAT, "object");
    expect_refused("\"spec\"", UD_EFORMAT, "object");
}

static void test_size_limit(void **state)
{
    size_t n = COORD_SPEC_MAX_BYTES + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, "{" BASE "}", strlen("{" BASE "}"));
    struct coord_spec s;
    struct ud_err e = {0};
    assert_int_equal(coord_spec_parse(big, n, &s, &e), UD_ELIMIT);
    assert_msg_has(&e, "limit");
    /* Exactly at the limit is fine (trailing white space is allowed). */
    assert_int_equal(coord_spec_parse(big, n - 1, &s, &e), 0);
    coord_spec_deinit(&s);
    free(big);
}

/* coord_spec_check_paths: data and test readable (a file or a directory), arch a preset or a
 * spec file that reads and parses. */
static void test_paths(void **state)
{
    const char *data = ud_test_write("train.csv", "label,a\n1,2\n", 12);
    const char *dir = ud_test_path("images");
    ud_test_mkdirs(dir);
    const char *good = ud_test_write("net.arch", "input 1 2 2\nflatten\ndense 3\nsoftmax\n", 36);
    const char *broken = ud_test_write("broken.arch", "dense\n", 6);
    struct {
        const char *data, *test, *arch;
        int code;
        const char *word;
    } cases[] = {
        {data, NULL, "mlp", 0, NULL},
        {dir, data, "cnn", 0, NULL},
        {data, NULL, good, 0, NULL},
        {"/nonexistent/x.csv", NULL, "mlp", UD_ENOTFOUND, "'data': /nonexistent/x.csv"},
        {data, "/nonexistent/t.csv", "mlp", UD_ENOTFOUND, "'test': /nonexistent/t.csv"},
        {data, NULL, "resnet9000", UD_ENOTFOUND, "'arch': 'resnet9000' is neither a preset"},
        {data, NULL, broken, UD_EFORMAT, "'arch': "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[4096], test[1100] = "";
        if (cases[i].test)
            snprintf(test, sizeof test, ",\"test\":\"%s\"", cases[i].test);
        snprintf(json, sizeof json, "{\"name\":\"m\",\"data\":\"%s\",\"arch\":\"%s\"%s}",
                 cases[i].data, cases[i].arch, test);
        struct coord_spec s;
        struct ud_err e = {0};
        assert_int_equal(parse(json, &s, &e), 0);
        int rc = coord_spec_check_paths(&s, &e);
        if (cases[i].code == 0 && rc != 0)
            fail_msg("%s: %s", json, e.msg);
        if (cases[i].code != 0 && (rc == 0 || !strstr(e.msg, cases[i].word)))
            fail_msg("%s: %d '%s', wanted \"%s\"", json, rc, e.msg, cases[i].word);
        coord_spec_deinit(&s);
    }
    struct ud_err e = {0};
    assert_int_equal(coord_spec_check_path("eval", dir, &e), 0);
    assert_int_equal(coord_spec_check_path("eval", "/nonexistent", &e), UD_ENOTFOUND);
    assert_msg_has(&e, "'eval': /nonexistent cannot be read on the coordinator");
}

/* launch.scheduler "slurm" and its keys; Slurm keys without it, bad names and bad times are
 * refused naming the key. */
static void test_slurm_launch(void **state)
{
    struct coord_spec s;
    struct ud_err e = {0};
    const char *json = "{" BASE ",\"launch\":{\"scheduler\":\"slurm\",\"np\":4,"
                       "\"partition\":\"gpu-a100\",\"account\":\"ml.team_1\","
                       "\"time\":\"1-02:30:00\",\"max_restarts\":0}}";
    assert_int_equal(parse(json, &s, &e), 0);
    assert_int_equal(s.scheduler, COORD_SCHED_SLURM);
    assert_int_equal(s.np, 4);
    assert_int_equal(s.max_restarts, 0);
    assert_string_equal(s.partition, "gpu-a100");
    assert_string_equal(s.account, "ml.team_1");
    assert_string_equal(s.time, "1-02:30:00");
    coord_spec_deinit(&s);
    /* Minutes as an integer; a default scheduler is local, with no Slurm keys. */
    json = "{" BASE ",\"launch\":{\"scheduler\":\"slurm\",\"np\":1,\"time\":90}}";
    assert_int_equal(parse(json, &s, &e), 0);
    assert_string_equal(s.time, "90");
    assert_string_equal(s.partition, "");
    coord_spec_deinit(&s);
    assert_int_equal(parse("{" BASE ",\"launch\":{\"np\":1}}", &s, &e), 0);
    assert_int_equal(s.scheduler, COORD_SCHED_LOCAL);
    coord_spec_deinit(&s);
    const char *good_times[] = {"10", "0:10", "1:00:00", "2-0", "2-12:30", "2-12:30:15"};
    for (size_t i = 0; i < sizeof good_times / sizeof good_times[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf,
                 "{" BASE ",\"launch\":{\"scheduler\":\"slurm\",\"np\":1,\"time\":\"%s\"}}",
                 good_times[i]);
        assert_int_equal(parse(buf, &s, &e), 0);
        assert_string_equal(s.time, good_times[i]);
        coord_spec_deinit(&s);
    }

#define SL "\"scheduler\":\"slurm\",\"np\":1"
    expect_refused("{" BASE ",\"launch\":{\"np\":1,\"partition\":\"p\"}}", UD_EINVAL,
                   "'launch.partition' needs \"scheduler\": \"slurm\"");
    expect_refused("{" BASE ",\"launch\":{\"np\":1,\"scheduler\":\"local\",\"time\":5}}", UD_EINVAL,
                   "'launch.time' needs");
    expect_refused("{" BASE ",\"launch\":{\"np\":1,\"scheduler\":\"pbs\"}}", UD_EINVAL,
                   "launch.scheduler");
    expect_refused("{" BASE ",\"launch\":{\"np\":1,\"scheduler\":1}}", UD_EINVAL,
                   "launch.scheduler");
    expect_refused("{" BASE ",\"launch\":{\"scheduler\":\"slurm\"}}", UD_EINVAL, "needs 'np'");
    expect_refused("{" BASE ",\"launch\":{" SL ",\"partition\":\"a b\"}}", UD_EINVAL,
                   "launch.partition");
    expect_refused("{" BASE ",\"launch\":{" SL ",\"account\":\"x;rm\"}}", UD_EINVAL,
                   "launch.account");
    expect_refused("{" BASE ",\"launch\":{" SL ",\"partition\":\"\"}}", UD_EINVAL,
                   "launch.partition");
    expect_refused("{" BASE ",\"launch\":{" SL ",\"partition\":7}}", UD_EINVAL,
                   "'launch.partition' must be a string");
    const char *bad_times[] = {"", ":10", "10:", "1:2:3:4", "1-2-3", "1:2-3", "ten", "1 0", "-5"};
    for (size_t i = 0; i < sizeof bad_times / sizeof bad_times[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "{" BASE ",\"launch\":{" SL ",\"time\":\"%s\"}}", bad_times[i]);
        expect_refused(buf, UD_EINVAL, "'launch.time'");
    }
    expect_refused("{" BASE ",\"launch\":{" SL ",\"time\":0}}", UD_EINVAL, "launch.time");
    expect_refused("{" BASE ",\"launch\":{" SL ",\"time\":1.5}}", UD_EINVAL, "launch.time");
    expect_refused("{" BASE ",\"launch\":{" SL ",\"time\":true}}", UD_EINVAL, "launch.time");
#undef SL
}

static void test_db_schema(void **state)
{
    const char *dir = ud_test_path("db");
    sqlite3 *db = NULL, *ro = NULL;
    struct ud_err e = {0};
    /* Read-only before the database exists: an error, not a crash. */
    assert_int_equal(coord_db_open(dir, 1, &ro, &e), UD_EIO);
    assert_null(ro);
    assert_int_equal(coord_db_open(dir, 0, &db, &e), 0);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO jobs (id, seq, name, state, spec, launch, created)"
                                  " VALUES ('job-000001', 1, 'm', 'PENDING', '{}', 0, 1.0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    /* A state outside the six is refused by the schema. */
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO jobs (id, seq, name, state, spec, launch)"
                                      " VALUES ('job-000002', 2, 'm', 'DONE', '{}', 0)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    /* Reopening keeps the rows. */
    coord_db_close(&db);
    assert_null(db);
    assert_int_equal(coord_db_open(dir, 0, &db, &e), 0);
    assert_int_equal(coord_db_open(dir, 1, &ro, &e), 0);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(ro, "SELECT count(*) FROM jobs", -1, &st, NULL), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    /* WAL, and the read-only connection cannot write. */
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_not_equal(sqlite3_exec(ro, "DELETE FROM jobs", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(coord_db_err(ro, &e, "delete"), UD_EIO);
    assert_msg_has(&e, "delete: ");
    coord_db_close(&ro);
    /* A version 1 database (the federation tables missing) is migrated in place. */
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE rejections; DROP TABLE updates;"
                                  " DROP TABLE participants; DROP TABLE rounds;"
                                  " DROP TABLE federations; DROP TABLE devices;"
                                  " DROP TABLE slurm_jobs;"
                                  " PRAGMA user_version = 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    coord_db_close(&db);
    assert_int_equal(coord_db_open(dir, 0, &db, &e), 0);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM jobs, devices, slurm_jobs", -1, &st, NULL), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_finalize(st);
    /* A newer schema is refused. */
    char newer[64];
    snprintf(newer, sizeof newer, "PRAGMA user_version = %d", COORD_DB_SCHEMA_VERSION + 1);
    assert_int_equal(sqlite3_exec(db, newer, NULL, NULL, NULL), SQLITE_OK);
    coord_db_close(&db);
    assert_int_equal(coord_db_open(dir, 0, &db, &e), UD_EVERSION);
    assert_msg_has(&e, "newer");
    assert_int_equal(coord_db_open(dir, 1, &ro, &e), UD_EVERSION);
    coord_db_close(&db); /* NULL is fine */

    assert_true(coord_job_state_terminal("SUCCEEDED"));
    assert_true(coord_job_state_terminal("FAILED"));
    assert_true(coord_job_state_terminal("CANCELLED"));
    assert_false(coord_job_state_terminal("RUNNING"));
    assert_false(coord_job_state_terminal(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_spec),    cmocka_unit_test(test_minimal_spec_defaults),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_db_schema),    cmocka_unit_test(test_paths),
        cmocka_unit_test(test_slurm_launch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

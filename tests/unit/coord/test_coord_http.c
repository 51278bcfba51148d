/*  test_coord_http.c — the REST API end to end over loopback: a state directory filled with
 *  rows written straight into the database (jobs, ranks, metrics, checkpoints, events, models
 *  and a model file in the store), the server on a free port, and libcurl asking every endpoint:
 *  JSON shapes, status codes (200 201 202 206 304 400 401 403 404 405 409 413 416), the
 *  Prometheus text, job submission and cancel semantics, who may call what (the admin and
 *  reader tokens, a device's token), and inputs meant to break it. */
#include "ud_test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <sodium.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "coord_db.h"
#include "coord_http.h"
#include "coord_http_impl.h"
#include "coord_store.h"
#include "updraft/ud_clock.h"

#define TOKEN     "0123456789abcdef-test-token"
#define READER    "fedcba9876543210-reader-token"
#define FILE_SIZE 1000

static coord_http_t *g_http;
static sqlite3 *g_db;
static char g_base[64], g_sha[65];
static unsigned char g_file[FILE_SIZE];
static char g_data[1024]; /* a readable file for the specs' "data" */
static CURL *g_curl;
static long g_fresh; /* 1: every request on a new connection */
/* Sent with every GET and HEAD that names no Authorization of its own (NULL: none). */
static const char *g_read_auth = "Authorization: Bearer " READER;

static void exec(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(g_db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static void execf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void execf(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    exec(sql);
}

static long long query_int(const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(g_db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ------------------------------------------------------------------ HTTP client */

struct resp {
    long code;
    char *body;
    size_t len;
    char headers[8192];
    json_t *json; /* parsed body when it is JSON */
};

static size_t on_body(char *p, size_t sz, size_t n, void *user)
{
    struct resp *r = user;
    char *b = realloc(r->body, r->len + sz * n + 1);
    assert_non_null(b);
    memcpy(b + r->len, p, sz * n);
    r->body = b;
    r->len += sz * n;
    b[r->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *user)
{
    struct resp *r = user;
    size_t have = strlen(r->headers);
    if (have + sz * n < sizeof r->headers) {
        memcpy(r->headers + have, p, sz * n);
        r->headers[have + sz * n] = '\0';
    }
    return sz * n;
}

/* A chunked upload of `left` bytes of '{'. */
static size_t on_read(char *p, size_t sz, size_t n, void *user)
{
    size_t *left = user, k = sz * n < *left ? sz * n : *left;
    memset(p, ' ', k);
    *left -= k;
    return k;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* method path [body] with extra header lines (NULL-terminated). chunked_len > 0: send that many
 * bytes chunked instead of body. */
static void request(struct resp *r, const char *method, const char *path, const char *body,
                    size_t body_len, size_t chunked_len, const char **hdrs)
{
    memset(r, 0, sizeof *r);
    char url[16384];
    snprintf(url, sizeof url, "%s%s", g_base, path);
    CURL *c = g_curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, g_fresh);
    struct curl_slist *sl = NULL;
    int has_auth = 0;
    for (const char **h = hdrs; h && *h; h++) {
        sl = curl_slist_append(sl, *h);
        has_auth |= strncasecmp(*h, "Authorization:", 14) == 0;
    }
    int read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (read && !has_auth && g_read_auth)
        sl = curl_slist_append(sl, g_read_auth);
    size_t left = chunked_len;
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (chunked_len) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &left);
        sl = curl_slist_append(sl, "Transfer-Encoding: chunked");
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(sl);
    if (rc != CURLE_OK && rc != CURLE_SEND_ERROR && rc != CURLE_RECV_ERROR &&
        rc != CURLE_GOT_NOTHING)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    if (r->body) {
        json_error_t je;
        r->json = json_loads(r->body, 0, &je);
    }
}

/* GET with the reader token. */
static void get(struct resp *r, const char *path)
{
    request(r, "GET", path, NULL, 0, 0, NULL);
}

/* GET with no token at all. */
static void get_anon(struct resp *r, const char *path)
{
    const char *keep = g_read_auth;
    g_read_auth = NULL;
    request(r, "GET", path, NULL, 0, 0, NULL);
    g_read_auth = keep;
}

/* The response must be code with a JSON body (and an error body for >= 400). */
static json_t *expect(struct resp *r, long code)
{
    if (r->code != code)
        fail_msg("expected %ld, got %ld: %s", code, r->code, r->body ? r->body : "");
    if (!r->json)
        fail_msg("not JSON: %s", r->body ? r->body : "(none)");
    if (code >= 400) {
        json_t *err = json_object_get(r->json, "error");
        assert_non_null(err);
        assert_int_equal(json_integer_value(json_object_get(err, "status")), code);
        assert_true(json_is_string(json_object_get(err, "message")));
    }
    return r->json;
}

static const char *message_of(struct resp *r)
{
    return json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
}

static json_t *jget(json_t *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = o;
    for (char *k = strtok(buf, "."); k && v; k = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k)) : json_object_get(v, k);
    if (!v)
        fail_msg("no '%s' in %s", path, json_dumps(o, JSON_COMPACT));
    return v;
}

static long long jint(json_t *o, const char *path)
{
    json_t *v = jget(o, path);
    if (!json_is_integer(v))
        fail_msg("'%s' is not an integer", path);
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *path)
{
    json_t *v = jget(o, path);
    if (!json_is_string(v))
        fail_msg("'%s' is not a string", path);
    return json_string_value(v);
}

static int has_header(const struct resp *r, const char *line)
{
    return strcasestr(r->headers, line) != NULL;
}

/* ------------------------------------------------------------------ fixture */

static int setup(void **state)
{
    const char *dir = ud_test_path("state");
    struct ud_err e = {0};
    if (coord_db_open(dir, 0, &g_db, &e) != 0)
        fail_msg("%s", e.msg);
    double t = ud_clock_wall();
    execf("INSERT INTO jobs (id, seq, name, state, spec, np, launch, created, started, updated,"
          " epochs, epoch, iteration, steps_per_epoch, total_steps, resume_from, session)"
          " VALUES ('job-000001', 1, 'fashion-mlp', 'RUNNING', '{\"name\":\"fashion-mlp\"}', 2, 1,"
          " %f, %f, %f, 3, 1, 50, 40, 120, '/s/ckpt-40', '/s')",
          t - 20, t - 10, t - 1);
    execf("INSERT INTO jobs (id, seq, name, state, spec, np, launch, created, started, updated,"
          " finished, epochs, epoch, iteration, steps_per_epoch, total_steps, model_version)"
          " VALUES ('job-000002', 2, 'fashion-mlp', 'SUCCEEDED', '{}', 2, 0, %f, %f, %f, %f,"
          " 1, 0, 40, 40, 40, 1)",
          t - 10, t - 9, t - 8, t - 8);
    execf("INSERT INTO jobs (id, seq, name, state, spec, launch, created, updated)"
          " VALUES ('job-000003', 3, 'other', 'PENDING', '{}', 0, %f, %f)",
          t - 5, t - 5);
    execf("INSERT INTO ranks VALUES ('job-000001', 0, 'hostA', 100, 50, %f),"
          " ('job-000001', 1, 'hostA', 101, 50, %f)",
          t, t - 0.5);
    for (int s = 10; s <= 50; s += 10)
        execf("INSERT INTO metrics VALUES ('job-000001', 'loss', %d, %f, %f),"
              " ('job-000001', 'accuracy', %d, %f, %f)",
              s, 1.0 / s, t - 10 + s / 10.0, s, 0.5 + s / 200.0, t - 10 + s / 10.0);
    execf("INSERT INTO checkpoints VALUES ('job-000001', 40, 1, 0, '/s/ckpt-40', %f)", t - 2);
    for (int i = 0; i < 60; i++)
        execf("INSERT INTO events (job, time, kind, message) VALUES ('job-000001', %f, 'progress',"
              " 'event %d')",
              t - 60 + i, i);

    snprintf(g_data, sizeof g_data, "%s", ud_test_write("train.gz", "x", 1));

    /* A model file in the store, under its SHA-256. */
    for (int i = 0; i < FILE_SIZE; i++)
        g_file[i] = (unsigned char)(i * 7 + 3);
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, g_file, FILE_SIZE);
    sodium_bin2hex(g_sha, sizeof g_sha, h, sizeof h);
    char path[1024], parent[1024];
    assert_int_equal(coord_store_path(dir, g_sha, path, sizeof path, &e), 0);
    snprintf(parent, sizeof parent, "%s", path);
    *strrchr(parent, '/') = '\0';
    ud_test_mkdirs(parent);
    ud_test_write_file(path, g_file, FILE_SIZE);
    const char *lineage = "{\"job\":\"job-000002\",\"dataset\":\"fashion\",\"architecture\":"
                          "\"mlp\",\"base\":null}";
    execf("INSERT INTO models VALUES ('fashion-mlp', 1, '%s', %d, %f, 'job-000002',"
          " '{\"test_accuracy\":0.85}', '%s', '{\"author\":\"t\"}')",
          g_sha, FILE_SIZE, t - 8, lineage);
    execf("INSERT INTO models VALUES ('fashion-mlp', 2, '%s', %d, %f, NULL,"
          " '{\"test_accuracy\":0.87}', '%s', '{}')",
          g_sha, FILE_SIZE, t - 4, lineage);
    execf("INSERT INTO models VALUES ('other', 1, '%s', %d, %f, NULL, 'not json', '{}', '{}')",
          g_sha, FILE_SIZE, t - 3);

    struct coord_http_config cfg = {.state_dir = dir,
                                    .listen = "127.0.0.1:0",
                                    .admin_token = TOKEN,
                                    .reader_token = READER,
                                    .heartbeat_timeout = 10,
                                    .started = t - 5,
                                    .threads = 2};
    g_http = coord_http_start(&cfg, &e);
    if (!g_http)
        fail_msg("coord_http_start: %s", e.msg);
    assert_true(coord_http_port(g_http) > 0);
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", coord_http_port(g_http));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_curl = curl_easy_init();
    return 0;
}

static int teardown(void **state)
{
    curl_easy_cleanup(g_curl);
    curl_global_cleanup();
    coord_http_stop(&g_http);
    assert_null(g_http);
    coord_http_stop(&g_http); /* NULL is fine */
    coord_db_close(&g_db);
    return 0;
}

/* ------------------------------------------------------------------ tests */

static void test_healthz_and_status(void **state)
{
    struct resp r;
    get(&r, "/healthz");
    json_t *j = expect(&r, 200);
    assert_string_equal(jstr(j, "status"), "ok");
    assert_true(has_header(&r, "Content-Type: application/json"));
    resp_free(&r);

    get(&r, "/v1/status");
    j = expect(&r, 200);
    assert_string_equal(jstr(j, "version"), UD_VERSION_STRING);
    assert_int_equal(jint(j, "protocol"), 1);
    double up = json_number_value(jget(j, "uptime_seconds"));
    assert_true(up >= 4.9 && up < 60);
    assert_int_equal(jint(j, "jobs.PENDING"), 1);
    assert_int_equal(jint(j, "jobs.RUNNING"), 1);
    assert_int_equal(jint(j, "jobs.RESTARTING"), 0);
    assert_int_equal(jint(j, "jobs.SUCCEEDED"), 1);
    assert_int_equal(jint(j, "jobs.FAILED"), 0);
    assert_int_equal(jint(j, "jobs.CANCELLED"), 0);
    assert_int_equal(jint(j, "workers"), 2);
    assert_int_equal(jint(j, "models"), 3);
    assert_int_equal(jint(j, "model_names"), 2);
    resp_free(&r);

    /* A commit by another connection shows at once (data_version). Every server thread has
     * its own cache: ask several times over fresh connections. */
    execf("INSERT INTO jobs (id, seq, name, state, spec, launch, created) VALUES"
          " ('job-000099', 99, 'x', 'FAILED', '{}', 0, %f)",
          ud_clock_wall());
    for (int i = 0; i < 6; i++) {
        g_fresh = 1;
        get(&r, "/v1/status");
        assert_int_equal(jint(expect(&r, 200), "jobs.FAILED"), 1);
        resp_free(&r);
    }
    g_fresh = 0;
    /* Workers go silent: within 100 ms the count drops. */
    execf("UPDATE ranks SET last_heartbeat = %f", ud_clock_wall() - 60);
    usleep(150 * 1000);
    for (int i = 0; i < 4; i++) {
        get(&r, "/v1/status");
        assert_int_equal(jint(expect(&r, 200), "workers"), 0);
        resp_free(&r);
    }
    execf("UPDATE ranks SET last_heartbeat = %f", ud_clock_wall());
    exec("DELETE FROM jobs WHERE id = 'job-000099'");

    request(&r, "HEAD", "/v1/status", NULL, 0, 0, NULL);
    assert_int_equal(r.code, 200);
    assert_null(r.body);
    resp_free(&r);
}

static void test_jobs(void **state)
{
    struct resp r;
    get(&r, "/v1/jobs");
    json_t *j = expect(&r, 200);
    json_t *jobs = jget(j, "jobs");
    assert_int_equal(json_array_size(jobs), 3);
    assert_string_equal(jstr(jobs, "0.id"), "job-000003"); /* newest first */
    assert_string_equal(jstr(jobs, "2.id"), "job-000001");
    assert_string_equal(jstr(jobs, "2.state"), "RUNNING");
    assert_string_equal(jstr(jobs, "2.name"), "fashion-mlp");
    assert_int_equal(jint(jobs, "2.iteration"), 50);
    assert_int_equal(jint(jobs, "2.total_steps"), 120);
    assert_int_equal(jint(jobs, "2.epoch"), 1);
    assert_int_equal(jint(jobs, "2.epochs"), 3);
    assert_true(fabs(json_number_value(jget(jobs, "2.progress")) - 50.0 / 120) < 1e-9);
    assert_true(json_number_value(jget(jobs, "1.progress")) == 1.0);
    assert_true(json_is_number(jget(jobs, "2.created")));
    assert_true(json_is_number(jget(jobs, "2.updated")));
    resp_free(&r);

    get(&r, "/v1/jobs?state=RUNNING");
    j = expect(&r, 200);
    assert_int_equal(json_array_size(jget(j, "jobs")), 1);
    resp_free(&r);
    get(&r, "/v1/jobs?state=running");
    expect(&r, 400);
    resp_free(&r);

    get(&r, "/v1/jobs/job-000001");
    j = expect(&r, 200);
    assert_string_equal(jstr(j, "id"), "job-000001");
    assert_string_equal(jstr(j, "spec.name"), "fashion-mlp");
    assert_true(json_is_true(jget(j, "launch")));
    assert_int_equal(jint(j, "np"), 2);
    assert_true(json_is_null(jget(j, "message")));
    assert_true(json_is_null(jget(j, "finished")));
    assert_int_equal(jint(j, "steps_per_epoch"), 40);
    assert_true(json_is_false(jget(j, "cancel_requested")));
    assert_int_equal(jint(j, "restarts"), 0);
    assert_string_equal(jstr(j, "resume_from"), "/s/ckpt-40");
    double eta = json_number_value(jget(j, "eta_seconds"));
    assert_true(eta > 0 && eta < 100); /* 70 steps at 5 steps/s, less the second since */
    assert_int_equal(json_array_size(jget(j, "ranks")), 2);
    assert_int_equal(jint(j, "ranks.1.rank"), 1);
    assert_string_equal(jstr(j, "ranks.1.host"), "hostA");
    assert_int_equal(jint(j, "ranks.1.pid"), 101);
    assert_int_equal(jint(j, "ranks.1.step"), 50);
    assert_true(json_number_value(jget(j, "ranks.1.seconds_since_heartbeat")) >= 0);
    assert_int_equal(jint(j, "metrics.loss.step"), 50);
    assert_true(fabs(json_number_value(jget(j, "metrics.loss.value")) - 0.02) < 1e-9);
    assert_true(fabs(json_number_value(jget(j, "metrics.accuracy.value")) - 0.75) < 1e-9);
    assert_int_equal(jint(j, "checkpoints.0.iteration"), 40);
    assert_string_equal(jstr(j, "checkpoints.0.path"), "/s/ckpt-40");
    assert_int_equal(json_array_size(jget(j, "events")), 50); /* the last 50 of 60 */
    assert_string_equal(jstr(j, "events.49.message"), "event 59");
    assert_string_equal(jstr(j, "events.0.message"), "event 10");
    assert_true(json_is_null(jget(j, "model")));
    resp_free(&r);

    get(&r, "/v1/jobs/job-000002");
    j = expect(&r, 200);
    assert_string_equal(jstr(j, "model.name"), "fashion-mlp");
    assert_int_equal(jint(j, "model.version"), 1);
    assert_true(json_is_null(jget(j, "eta_seconds")));
    assert_true(json_number_value(jget(j, "progress")) == 1.0);
    resp_free(&r);

    get(&r, "/v1/jobs/job-000009");
    expect(&r, 404);
    assert_string_equal(message_of(&r), "no job 'job-000009'");
    resp_free(&r);
}

static void test_metrics_history(void **state)
{
    struct resp r;
    get(&r, "/v1/jobs/job-000001/metrics");
    json_t *j = expect(&r, 200);
    assert_string_equal(jstr(j, "job"), "job-000001");
    assert_int_equal(json_array_size(jget(j, "keys")), 2);
    assert_string_equal(jstr(j, "keys.0"), "accuracy");
    assert_string_equal(jstr(j, "keys.1"), "loss");
    resp_free(&r);

    get(&r, "/v1/jobs/job-000001/metrics?key=loss");
    j = expect(&r, 200);
    assert_string_equal(jstr(j, "key"), "loss");
    assert_int_equal(json_array_size(jget(j, "metrics")), 5);
    assert_int_equal(jint(j, "metrics.0.step"), 10);
    assert_int_equal(jint(j, "metrics.4.step"), 50);
    assert_true(json_is_number(jget(j, "metrics.4.time")));
    assert_true(json_is_null(jget(j, "next_since")));
    resp_free(&r);

    get(&r, "/v1/jobs/job-000001/metrics?key=loss&since=20");
    j = expect(&r, 200);
    assert_int_equal(json_array_size(jget(j, "metrics")), 3);
    assert_int_equal(jint(j, "metrics.0.step"), 30);
    resp_free(&r);

    /* Paging: limit 2 says where to go on; the last page says null. */
    get(&r, "/v1/jobs/job-000001/metrics?key=loss&limit=2");
    j = expect(&r, 200);
    assert_int_equal(json_array_size(jget(j, "metrics")), 2);
    assert_int_equal(jint(j, "next_since"), 20);
    resp_free(&r);
    get(&r, "/v1/jobs/job-000001/metrics?key=loss&since=30&limit=2");
    j = expect(&r, 200);
    assert_int_equal(json_array_size(jget(j, "metrics")), 2);
    assert_true(json_is_null(jget(j, "next_since")));
    resp_free(&r);

    get(&r, "/v1/jobs/job-000001/metrics?key=loss&since=-5");
    assert_int_equal(json_array_size(jget(expect(&r, 200), "metrics")), 5);
    resp_free(&r);
    get(&r, "/v1/jobs/job-000001/metrics?key=nope");
    assert_int_equal(json_array_size(jget(expect(&r, 200), "metrics")), 0);
    resp_free(&r);

    const char *bad[] = {"since=abc", "since=",      "since=1x", "since=99999999999999999999",
                         "limit=0",   "limit=10001", "limit=-1", "limit=ten"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/job-000001/metrics?key=loss&%s", bad[i]);
        get(&r, path);
        expect(&r, 400);
        resp_free(&r);
    }
    get(&r, "/v1/jobs/job-000009/metrics?key=loss");
    expect(&r, 404);
    resp_free(&r);
}

static void test_models(void **state)
{
    struct resp r;
    get(&r, "/v1/models");
    json_t *j = expect(&r, 200);
    assert_int_equal(json_array_size(jget(j, "models")), 2);
    assert_string_equal(jstr(j, "models.0.name"), "fashion-mlp");
    assert_int_equal(jint(j, "models.0.versions"), 2);
    assert_int_equal(jint(j, "models.0.latest.version"), 2);
    assert_string_equal(jstr(j, "models.0.latest.sha256"), g_sha);
    assert_int_equal(jint(j, "models.0.latest.size"), FILE_SIZE);
    assert_true(json_number_value(jget(j, "models.0.latest.metrics.test_accuracy")) == 0.87);
    assert_true(json_is_null(jget(j, "models.1.latest.metrics"))); /* a damaged row: null */
    resp_free(&r);

    get(&r, "/v1/models/fashion-mlp/versions");
    j = expect(&r, 200);
    assert_string_equal(jstr(j, "name"), "fashion-mlp");
    assert_int_equal(json_array_size(jget(j, "versions")), 2);
    assert_int_equal(jint(j, "versions.0.version"), 1);
    assert_string_equal(jstr(j, "versions.0.job"), "job-000002");
    resp_free(&r);
    get(&r, "/v1/models/nope/versions");
    expect(&r, 404);
    resp_free(&r);

    get(&r, "/v1/models/fashion-mlp/versions/1");
    j = expect(&r, 200);
    assert_string_equal(jstr(j, "name"), "fashion-mlp");
    assert_int_equal(jint(j, "version"), 1);
    assert_string_equal(jstr(j, "sha256"), g_sha);
    assert_int_equal(jint(j, "size"), FILE_SIZE);
    assert_string_equal(jstr(j, "job"), "job-000002");
    assert_string_equal(jstr(j, "lineage.dataset"), "fashion");
    assert_true(json_is_null(jget(j, "lineage.base")));
    assert_string_equal(jstr(j, "metadata.author"), "t");
    assert_string_equal(jstr(j, "file"), "/v1/models/fashion-mlp/versions/1/file");
    resp_free(&r);
    get(&r, "/v1/models/fashion-mlp/versions/latest");
    j = expect(&r, 200);
    assert_int_equal(jint(j, "version"), 2);
    assert_string_equal(jstr(j, "file"), "/v1/models/fashion-mlp/versions/2/file");
    resp_free(&r);
    get(&r, "/v1/models/fashion-mlp/versions/abc");
    expect(&r, 400);
    resp_free(&r);
    get(&r, "/v1/models/fashion-mlp/versions/0");
    expect(&r, 400);
    resp_free(&r);
    get(&r, "/v1/models/fashion-mlp/versions/9");
    expect(&r, 404);
    assert_non_null(strstr(message_of(&r), "no version 9"));
    resp_free(&r);
    get(&r, "/v1/models/nope/versions/latest");
    expect(&r, 404);
    resp_free(&r);
}

static void test_model_file(void **state)
{
    struct resp r;
    char etag[128], hdr[160];
    snprintf(etag, sizeof etag, "ETag: \"%s\"", g_sha);
    get(&r, "/v1/models/fashion-mlp/versions/1/file");
    assert_int_equal(r.code, 200);
    assert_int_equal(r.len, FILE_SIZE);
    assert_memory_equal(r.body, g_file, FILE_SIZE);
    assert_true(has_header(&r, etag));
    assert_true(has_header(&r, "Accept-Ranges: bytes"));
    assert_true(has_header(&r, "Content-Type: application/octet-stream"));
    resp_free(&r);

    /* If-None-Match: the same tag (strong or weak, or in a list) → 304, another → 200. */
    const char *same[] = {"If-None-Match: \"%s\"", "If-None-Match: W/\"%s\"",
                          "If-None-Match: \"x\", \"%s\"", "If-None-Match: *"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(hdr, sizeof hdr, same[i], g_sha);
        const char *h[] = {hdr, NULL};
        request(&r, "GET", "/v1/models/fashion-mlp/versions/latest/file", NULL, 0, 0, h);
        assert_int_equal(r.code, 304);
        assert_int_equal(r.len, 0);
        assert_true(has_header(&r, etag));
        resp_free(&r);
    }
    {
        const char *h[] = {"If-None-Match: \"0000\"", NULL};
        request(&r, "GET", "/v1/models/fashion-mlp/versions/1/file", NULL, 0, 0, h);
        assert_int_equal(r.code, 200);
        assert_int_equal(r.len, FILE_SIZE);
        resp_free(&r);
    }

    /* Ranges. */
    struct {
        const char *range;
        long code;
        size_t off, len;
        const char *content_range;
    } cases[] = {
        {"Range: bytes=0-9", 206, 0, 10, "Content-Range: bytes 0-9/1000"},
        {"Range: bytes=990-", 206, 990, 10, "Content-Range: bytes 990-999/1000"},
        {"Range: bytes=-5", 206, 995, 5, "Content-Range: bytes 995-999/1000"},
        {"Range: bytes=500-5000", 206, 500, 500, "Content-Range: bytes 500-999/1000"},
        {"Range: bytes=-5000", 206, 0, 1000, "Content-Range: bytes 0-999/1000"},
        {"Range: bytes=1000-", 416, 0, 0, "Content-Range: bytes */1000"},
        {"Range: bytes=99999999999999999999999-", 416, 0, 0, "Content-Range: bytes */1000"},
        {"Range: bytes=-0", 416, 0, 0, "Content-Range: bytes */1000"},
        {"Range: bytes=0-1,5-6", 200, 0, 1000, NULL},
        {"Range: bytes=abc", 200, 0, 1000, NULL},
        {"Range: bytes=9-3", 200, 0, 1000, NULL},
        {"Range: lines=1-2", 200, 0, 1000, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *h[] = {cases[i].range, NULL};
        request(&r, "GET", "/v1/models/fashion-mlp/versions/1/file", NULL, 0, 0, h);
        if (r.code != cases[i].code)
            fail_msg("%s: %ld, expected %ld", cases[i].range, r.code, cases[i].code);
        if (cases[i].code == 416) {
            expect(&r, 416);
        } else {
            assert_int_equal(r.len, cases[i].len);
            assert_memory_equal(r.body, g_file + cases[i].off, cases[i].len);
        }
        if (cases[i].content_range && !has_header(&r, cases[i].content_range))
            fail_msg("%s: no '%s' in\n%s", cases[i].range, cases[i].content_range, r.headers);
        resp_free(&r);
    }
    get(&r, "/v1/models/fashion-mlp/versions/7/file");
    expect(&r, 404);
    resp_free(&r);
}

static void test_prometheus(void **state)
{
    struct resp r;
    get(&r, "/metrics");
    assert_int_equal(r.code, 200);
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    const char *want[] = {"# TYPE updraft_up gauge\nupdraft_up 1\n",
                          "\nupdraft_uptime_seconds ",
                          "\nupdraft_jobs{state=\"RUNNING\"} 1\n",
                          "\nupdraft_jobs{state=\"PENDING\"} 1\n",
                          "\nupdraft_jobs{state=\"FAILED\"} 0\n",
                          "\nupdraft_workers 2\n",
                          "\nupdraft_model_versions 3\n",
                          "\nupdraft_job_progress{job=\"job-000001\"} 0.41666666666666",
                          "\nupdraft_job_progress{job=\"job-000003\"} 0\n",
                          "\nupdraft_job_iteration{job=\"job-000001\"} 50\n",
                          "\nupdraft_job_metric{job=\"job-000001\",key=\"loss\"} 0.02\n",
                          "\nupdraft_job_metric{job=\"job-000001\",key=\"accuracy\"} 0.75\n",
                          "# TYPE updraft_http_requests_total counter\n",
                          "\nupdraft_http_requests_total{code=\"200\"} "};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(r.body, want[i]))
            fail_msg("no '%s' in\n%s", want[i], r.body);
    assert_null(strstr(r.body, "job-000002")); /* finished jobs are not exported */
    /* Every non-comment line is "name{labels} value" or "name value". */
    char *copy = strdup(r.body);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        strtod(sp + 1, &end);
        if (*end)
            fail_msg("bad sample line '%s'", line);
    }
    free(copy);
    resp_free(&r);
}

static void test_routing_errors(void **state)
{
    struct resp r;
    const char *missing[] = {"/",
                             "/v1",
                             "/v1/",
                             "/v2/status",
                             "/v1/status/",
                             "/v1/jobs/job-000001/nope",
                             "/v1/jobs//metrics",
                             "/v1/models/x/y",
                             "/v1/models/fashion-mlp/versions/1/file/more",
                             "/healthz/x"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        get(&r, missing[i]);
        if (r.code != 404)
            fail_msg("%s: %ld", missing[i], r.code);
        expect(&r, 404);
        resp_free(&r);
    }
    request(&r, "DELETE", "/v1/jobs", NULL, 0, 0, NULL);
    expect(&r, 405);
    assert_true(has_header(&r, "Allow: GET, HEAD, POST"));
    resp_free(&r);
    get(&r, "/v1/jobs/job-000001/cancel");
    expect(&r, 405);
    assert_true(has_header(&r, "Allow: POST"));
    resp_free(&r);
    request(&r, "POST", "/v1/status", "{}", 2, 0, NULL);
    expect(&r, 405);
    assert_true(has_header(&r, "Allow: GET, HEAD"));
    resp_free(&r);
    request(&r, "PUT", "/v1/models", "x", 1, 0, NULL);
    expect(&r, 405);
    resp_free(&r);
}

static void test_hostile_input(void **state)
{
    struct resp r;
    /* Ids that try to escape: always looked up as data, never as a path or as SQL. */
    const char *ids[] = {"/v1/jobs/..%2F..%2Fetc%2Fpasswd",
                         "/v1/jobs/%27%3B%20DROP%20TABLE%20jobs%3B--",
                         "/v1/jobs/job-000001%27%20OR%20%271%27%3D%271",
                         "/v1/jobs/%FF%FE%80",
                         "/v1/jobs/a%00b",
                         "/v1/jobs/%22%5C%0A%01",
                         "/v1/models/..%2F..%2Fsecret/versions/1/file",
                         "/v1/models/%27%20OR%201%3D1--/versions/latest",
                         "/v1/models/fashion-mlp/versions/1%20OR%201%3D1/file",
                         "/v1/jobs/job-000001/metrics?key=%27%20OR%201%3D1--&since=0",
                         "/v1/jobs/job-000001/metrics?key=%FF&since=-9223372036854775808",
                         "/v1/jobs/job-000001/metrics?since=9223372036854775807&key=loss",
                         "/v1/jobs?state=%27%20OR%201%3D1--"};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        get(&r, ids[i]);
        if (r.code != 404 && r.code != 400 && r.code != 200)
            fail_msg("%s: %ld", ids[i], r.code);
        if (!r.json)
            fail_msg("%s: not JSON: %s", ids[i], r.body ? r.body : "");
        if (r.code == 200) /* only the metrics lookups may succeed, with nothing in them */
            assert_int_equal(json_array_size(jget(r.json, "metrics")), 0);
        resp_free(&r);
    }
    assert_int_equal(query_int("SELECT count(*) FROM jobs"), 3);

    /* A huge query string and a huge path: refused, and the server goes on. */
    char *big = malloc(70000);
    assert_non_null(big);
    strcpy(big, "/v1/jobs?state=");
    memset(big + strlen(big), 'A', 60000);
    big[60015] = '\0';
    get(&r, big);
    assert_true(r.code >= 400 || r.code == 0);
    resp_free(&r);
    memset(big, 'a', 10000);
    big[0] = '/';
    big[10000] = '\0';
    get(&r, big);
    assert_true(r.code >= 400 || r.code == 0);
    resp_free(&r);
    free(big);

    /* Raw garbage on a socket. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(coord_http_port(g_http))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char junk[] = "\x01\x02GARBAGE /\xff\xfe HTTP/9.9\r\nX: \x00\x01\r\n\r\n";
    assert_true(write(fd, junk, sizeof junk) > 0);
    char rbuf[512];
    (void)!read(fd, rbuf, sizeof rbuf);
    close(fd);

    get(&r, "/healthz");
    expect(&r, 200);
    resp_free(&r);
}

static void test_submit(void **state)
{
    struct resp r;
    char spec[2048], nolaunch[2048], bad[2048];
    snprintf(spec, sizeof spec,
             "{\"name\":\"fashion-mlp\",\"data\":\"%s\",\"arch\":\"mlp\",\"epochs\":2,"
             "\"launch\":{\"np\":2}}",
             g_data);
    const char *auth[] = {"Authorization: Bearer " TOKEN, "Content-Type: application/json", NULL};
    const char *wrong[] = {"Authorization: Bearer nope", NULL};
    const char *basic[] = {"Authorization: Basic " TOKEN, NULL};
    const char *prefix[] = {"Authorization: Bearer " TOKEN "x", NULL};

    request(&r, "POST", "/v1/jobs", spec, strlen(spec), 0, NULL);
    expect(&r, 401);
    assert_true(has_header(&r, "WWW-Authenticate: Bearer"));
    resp_free(&r);
    const char **bad_auth[] = {wrong, basic, prefix};
    for (int i = 0; i < 3; i++) {
        request(&r, "POST", "/v1/jobs", spec, strlen(spec), 0, bad_auth[i]);
        expect(&r, 401);
        resp_free(&r);
    }
    assert_int_equal(query_int("SELECT count(*) FROM jobs"), 3);

    request(&r, "POST", "/v1/jobs", spec, strlen(spec), 0, auth);
    json_t *j = expect(&r, 201);
    assert_string_equal(jstr(j, "id"), "job-000004");
    assert_string_equal(jstr(j, "state"), "PENDING");
    assert_string_equal(jstr(j, "url"), "/v1/jobs/job-000004");
    assert_true(has_header(&r, "Location: /v1/jobs/job-000004"));
    resp_free(&r);
    get(&r, "/v1/jobs/job-000004");
    j = expect(&r, 200);
    assert_string_equal(jstr(j, "state"), "PENDING");
    assert_true(json_is_true(jget(j, "launch")));
    assert_int_equal(jint(j, "np"), 2);
    assert_int_equal(jint(j, "epochs"), 2);
    assert_int_equal(jint(j, "spec.launch.np"), 2);
    assert_string_equal(jstr(j, "events.0.kind"), "submitted");
    resp_free(&r);
    /* The session defaults to STATE/jobs/ID/session, absolute. */
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(g_db,
                                        "SELECT session, launch, np FROM jobs WHERE id ="
                                        " 'job-000004'",
                                        -1, &st, NULL),
                     0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *sess = (const char *)sqlite3_column_text(st, 0);
    assert_true(sess[0] == '/');
    assert_non_null(strstr(sess, "/state/jobs/job-000004/session"));
    sqlite3_finalize(st);

    /* Without launch: np NULL, launch false. */
    snprintf(nolaunch, sizeof nolaunch, "{\"name\":\"m\",\"data\":\"%s\",\"arch\":\"cnn\"}",
             g_data);
    request(&r, "POST", "/v1/jobs", nolaunch, strlen(nolaunch), 0, auth);
    assert_string_equal(jstr(expect(&r, 201), "id"), "job-000005");
    resp_free(&r);
    assert_int_equal(query_int("SELECT count(*) FROM jobs WHERE id = 'job-000005' AND np IS NULL"
                               " AND launch = 0"),
                     1);

    /* Paths the coordinator cannot read: 400 naming the key and the path, nothing stored. */
    const char *garbage = ud_test_write("garbage.arch", "not a layer\n", 12);
    const char *dir = ud_test_path("");
    struct {
        const char *data, *test, *arch, *want;
    } paths[] = {
        {"/nonexistent/train.gz", NULL, "mlp", "'data': /nonexistent/train.gz cannot be read"},
        {g_data, "/nonexistent/t10k.gz", "mlp", "'test': /nonexistent/t10k.gz cannot be read"},
        {g_data, NULL, "resnet9000", "'arch': 'resnet9000' is neither a preset"},
        {g_data, NULL, "/nonexistent/net.arch", "'arch': '/nonexistent/net.arch'"},
        {g_data, NULL, dir, "'arch': "},
        {g_data, NULL, garbage, "'arch': "},
    };
    long long jobs_before = query_int("SELECT count(*) FROM jobs");
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        char test[1100] = "";
        if (paths[i].test)
            snprintf(test, sizeof test, ",\"test\":\"%s\"", paths[i].test);
        snprintf(bad, sizeof bad, "{\"name\":\"m\",\"data\":\"%s\",\"arch\":\"%s\"%s}",
                 paths[i].data, paths[i].arch, test);
        request(&r, "POST", "/v1/jobs", bad, strlen(bad), 0, auth);
        expect(&r, 400);
        if (!strstr(message_of(&r), paths[i].want))
            fail_msg("%s: '%s' does not say \"%s\"", bad, message_of(&r), paths[i].want);
        resp_free(&r);
    }
    assert_int_equal(query_int("SELECT count(*) FROM jobs"), jobs_before);

    /* Refusals. */
    const char *malformed = "{\"name\":\"m\",\n\"data\": }";
    request(&r, "POST", "/v1/jobs", malformed, strlen(malformed), 0, auth);
    expect(&r, 400);
    assert_non_null(strstr(message_of(&r), "line 2, column"));
    resp_free(&r);
    const char *unknown = "{\"name\":\"m\",\"data\":\"d\",\"arch\":\"cnn\",\"epoch\":3}";
    request(&r, "POST", "/v1/jobs", unknown, strlen(unknown), 0, auth);
    expect(&r, 400);
    assert_non_null(strstr(message_of(&r), "'epoch'"));
    resp_free(&r);
    request(&r, "POST", "/v1/jobs", "", 0, 0, auth);
    expect(&r, 400);
    resp_free(&r);
    request(&r, "POST", "/v1/jobs", "{\"name\":\"\xff\"}", 11, 0, auth);
    expect(&r, 400);
    resp_free(&r);

    /* Over 1 MiB: by Content-Length (refused before the body is read), and chunked. */
    size_t n = (1u << 20) + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    request(&r, "POST", "/v1/jobs", big, n, 0, auth);
    expect(&r, 413);
    resp_free(&r);
    free(big);
    request(&r, "POST", "/v1/jobs", NULL, 0, (1u << 20) + 4096, auth);
    expect(&r, 413);
    resp_free(&r);
    /* Exactly the limit is read (and then refused as a spec, being only spaces). */
    request(&r, "POST", "/v1/jobs", NULL, 0, 1u << 20, auth);
    expect(&r, 400);
    resp_free(&r);
    assert_int_equal(query_int("SELECT count(*) FROM jobs"), 5);
}

static void test_cancel(void **state)
{
    struct resp r;
    const char *auth[] = {"Authorization: Bearer " TOKEN, NULL};
    request(&r, "POST", "/v1/jobs/job-000003/cancel", "", 0, 0, NULL);
    expect(&r, 401);
    resp_free(&r);

    /* PENDING: cancelled at once. */
    request(&r, "POST", "/v1/jobs/job-000003/cancel", "", 0, 0, auth);
    json_t *j = expect(&r, 202);
    assert_string_equal(jstr(j, "id"), "job-000003");
    assert_string_equal(jstr(j, "state"), "CANCELLED");
    assert_true(json_is_true(jget(j, "cancel_requested")));
    resp_free(&r);
    assert_int_equal(query_int("SELECT count(*) FROM jobs WHERE id = 'job-000003' AND state ="
                               " 'CANCELLED' AND finished IS NOT NULL"),
                     1);

    /* RUNNING: asked to stop; the state stays until the workers say done. */
    request(&r, "POST", "/v1/jobs/job-000001/cancel", NULL, 0, 0, auth);
    j = expect(&r, 202);
    assert_string_equal(jstr(j, "state"), "RUNNING");
    assert_true(json_is_true(jget(j, "cancel_requested")));
    resp_free(&r);
    assert_int_equal(query_int("SELECT cancel_requested FROM jobs WHERE id = 'job-000001'"), 1);
    get(&r, "/v1/jobs/job-000001");
    assert_true(json_is_true(jget(expect(&r, 200), "cancel_requested")));
    resp_free(&r);

    /* Terminal: conflict. Unknown: not found. */
    request(&r, "POST", "/v1/jobs/job-000002/cancel", "", 0, 0, auth);
    expect(&r, 409);
    assert_non_null(strstr(message_of(&r), "SUCCEEDED"));
    resp_free(&r);
    request(&r, "POST", "/v1/jobs/job-000003/cancel", "", 0, 0, auth);
    expect(&r, 409);
    resp_free(&r);
    request(&r, "POST", "/v1/jobs/job-000042/cancel", "", 0, 0, auth);
    expect(&r, 404);
    resp_free(&r);
    request(&r, "POST", "/v1/jobs/%27%3B--/cancel", "", 0, 0, auth);
    expect(&r, 404);
    resp_free(&r);

    /* Counters went up for every code the tests caused. */
    get(&r, "/metrics");
    const char *codes[] = {"{code=\"201\"}", "{code=\"202\"}", "{code=\"206\"}", "{code=\"304\"}",
                           "{code=\"400\"}", "{code=\"401\"}", "{code=\"404\"}", "{code=\"405\"}",
                           "{code=\"409\"}", "{code=\"413\"}", "{code=\"416\"}"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (!strstr(r.body, codes[i]))
            fail_msg("no %s in\n%s", codes[i], r.body);
    resp_free(&r);
}

/* Runs `updraft ARGS` (the built CLI) against the server; returns its exit code and its stdout
 * in out (static). */
static int cli(const char *args, const char **out)
{
    static char buf[65536];
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/updraft' --url %s %s 2>/dev/null", getenv("UD_BIN_DIR"), g_base,
             args);
    *out = buf;
    return ud_test_run(cmd, buf, sizeof buf);
}

static void test_cli(void **state)
{
    char path[1024];
    ud_test_bin("updraft", path, sizeof path);
    const char *out;
    /* reads need a token: none is refused, the reader token reads */
    unsetenv("UPDRAFT_TOKEN");
    assert_int_equal(cli("status", &out), 1);
    assert_int_equal(setenv("UPDRAFT_TOKEN", READER, 1), 0);
    assert_int_equal(cli("status", &out), 0);
    assert_non_null(strstr(out, "1 running"));
    assert_non_null(strstr(out, "2 live"));
    assert_int_equal(cli("--json status", &out), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_int_equal(jint(j, "jobs.RUNNING"), 1);
    json_decref(j);
    assert_int_equal(cli("jobs", &out), 0);
    assert_non_null(strstr(out, "job-000001"));
    assert_non_null(strstr(out, "41.7%"));
    assert_int_equal(cli("jobs --state CANCELLED", &out), 0);
    assert_non_null(strstr(out, "job-000003"));
    assert_null(strstr(out, "job-000001"));
    assert_int_equal(cli("job show job-000001", &out), 0);
    assert_non_null(strstr(out, "hostA"));
    assert_non_null(strstr(out, "cancel     requested"));
    assert_int_equal(cli("job show job-000404", &out), 1);
    assert_int_equal(cli("models", &out), 0);
    assert_non_null(strstr(out, "fashion-mlp"));
    assert_int_equal(cli("model show fashion-mlp@1", &out), 0);
    assert_non_null(strstr(out, g_sha));
    assert_int_equal(cli("model show fashion-mlp@7", &out), 1);

    /* pull: the bytes, checked against the registry's hash. */
    char args[1024];
    snprintf(args, sizeof args, "model pull fashion-mlp --out '%s'", ud_test_path("pulled.udm"));
    assert_int_equal(cli(args, &out), 0);
    FILE *f = fopen(ud_test_path("pulled.udm"), "rb");
    assert_non_null(f);
    unsigned char got[FILE_SIZE + 1];
    assert_int_equal(fread(got, 1, sizeof got, f), FILE_SIZE);
    fclose(f);
    assert_memory_equal(got, g_file, FILE_SIZE);
    assert_int_equal(cli("model pull fashion-mlp", &out), 2); /* no --out */

    /* submit and cancel, with the token from a file. */
    const char *tok = ud_test_write("token", TOKEN "\n", strlen(TOKEN) + 1);
    char text[2048];
    snprintf(text, sizeof text, "{\"name\":\"c\",\"data\":\"%s\",\"arch\":\"mlp\"}", g_data);
    const char *spec = ud_test_write("spec.json", text, strlen(text));
    snprintf(args, sizeof args, "job submit '%s'", spec);
    assert_int_equal(cli(args, &out), 1); /* the reader token does not submit */
    snprintf(args, sizeof args, "--token-file '%s' job submit '%s'", tok, spec);
    assert_int_equal(cli(args, &out), 0);
    assert_non_null(strstr(out, "submitted"));
    snprintf(args, sizeof args, "--token-file '%s' job cancel job-000404", tok);
    assert_int_equal(cli(args, &out), 1);
    assert_int_equal(cli("--token " TOKEN " job cancel job-000002", &out), 1); /* terminal */

    /* wait: 0 only for SUCCEEDED. */
    assert_int_equal(cli("job wait job-000002 --timeout 5", &out), 0);
    assert_int_equal(cli("job wait job-000003 --timeout 5", &out), 1);
    assert_int_equal(cli("job wait job-000001 --timeout 1", &out), 1); /* still running */

    /* usage errors */
    assert_int_equal(cli("job frob x", &out), 2);
    assert_int_equal(cli("status extra", &out), 2);
    assert_int_equal(cli("jobs --bogus", &out), 2);
    assert_int_equal(cli("job wait x --timeout -1", &out), 2);
    unsetenv("UPDRAFT_TOKEN");
}

/* Roles: /healthz open; every other GET needs the reader or the admin token (401 without, 403
 * for a device's token); a device reads only the model file of its own open task; the reader
 * token changes nothing (403). */
/* Does path match a route pattern ("/v1/jobs/{id}": a {...} segment matches any one segment)? */
static int path_matches(const char *pattern, const char *path)
{
    while (*pattern && *path) {
        if (*pattern == '{') {
            pattern = strchr(pattern, '}');
            if (!pattern)
                return 0;
            pattern++;
            path += strcspn(path, "/");
            continue;
        }
        if (*pattern++ != *path++)
            return 0;
    }
    return *pattern == '\0' && *path == '\0';
}

static void test_roles(void **state)
{
    static const char *reads[] = {"/metrics",
                                  "/v1/status",
                                  "/v1/jobs",
                                  "/v1/jobs/job-000001",
                                  "/v1/jobs/job-000001/metrics",
                                  "/v1/models",
                                  "/v1/models/fashion-mlp/versions",
                                  "/v1/models/fashion-mlp/versions/1",
                                  "/v1/models/fashion-mlp/versions/1/file",
                                  "/v1/devices",
                                  "/v1/devices/1",
                                  "/v1/federations",
                                  "/v1/federations/1",
                                  "/v1/rounds/1"};
    /* device 9 with a known token, in round 1 (OPEN, base fashion-mlp v1) of federation 1 */
    const char *secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    unsigned char hash[32];
    char hex[65], dev_auth[160];
    crypto_generichash(hash, sizeof hash, (const unsigned char *)secret, 64, NULL, 0);
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    snprintf(dev_auth, sizeof dev_auth, "Authorization: Bearer 9.%s", secret);
    double t = ud_clock_wall();
    execf("INSERT INTO devices (id, name, token_hash, created, updates, revoked)"
          " VALUES (9, 'phone-9', X'%s', %f, 0, 0)",
          hex, t);
    execf("INSERT INTO federations (id, name, state, spec, model, base_version, current_version,"
          " rounds, round, created, updated) VALUES (1, 'f', 'RUNNING', '{}', 'fashion-mlp', 1,"
          " 1, 3, 1, %f, %f)",
          t, t);
    execf("INSERT INTO rounds (id, federation, number, state, base_version, delta_floats,"
          " created, opened, deadline) VALUES (1, 1, 1, 'OPEN', 1, 10, %f, %f, %f)",
          t, t, t + 600);
    exec("INSERT INTO participants VALUES (1, 9)");

    /* The paths above cover every GET row of the route table that needs a reader: a new one
     * must be added here, so that its "who" is tried too. */
    size_t nroutes;
    const struct coord_route *rt = coord_http_routes(&nroutes);
    for (size_t k = 0; k < nroutes; k++) {
        if (strcmp(rt[k].method, "GET") != 0 ||
            (rt[k].who != COORD_WHO_READER && rt[k].who != COORD_WHO_READER_OR_TASK_MODEL))
            continue;
        int covered = 0;
        for (size_t i = 0; i < sizeof reads / sizeof *reads && !covered; i++)
            covered = path_matches(rt[k].pattern, reads[i]);
        if (!covered)
            fail_msg("GET %s needs a reader, and test_roles tries no path of it", rt[k].pattern);
    }

    struct resp r;
    const char *admin[] = {"Authorization: Bearer " TOKEN, NULL};
    const char *wrong[] = {"Authorization: Bearer not-a-token", NULL};
    const char *dev[] = {dev_auth, NULL};
    for (size_t i = 0; i < sizeof reads / sizeof *reads; i++) {
        get_anon(&r, reads[i]);
        if (r.code != 401)
            fail_msg("GET %s with no token: %ld, not 401", reads[i], r.code);
        assert_true(has_header(&r, "WWW-Authenticate: Bearer realm=\"updraft\""));
        resp_free(&r);
        request(&r, "GET", reads[i], NULL, 0, 0, wrong);
        assert_int_equal(r.code, 401);
        resp_free(&r);
        get(&r, reads[i]); /* the reader token */
        if (r.code >= 400 && r.code != 404)
            fail_msg("GET %s with the reader token: %ld", reads[i], r.code);
        resp_free(&r);
        request(&r, "GET", reads[i], NULL, 0, 0, admin);
        if (r.code >= 400 && r.code != 404)
            fail_msg("GET %s with the admin token: %ld", reads[i], r.code);
        resp_free(&r);
        request(&r, "HEAD", reads[i], NULL, 0, 0, dev);
        int own = strcmp(reads[i], "/v1/models/fashion-mlp/versions/1/file") == 0;
        if (r.code != (own ? 200 : 403))
            fail_msg("HEAD %s with the device's token: %ld", reads[i], r.code);
        resp_free(&r);
    }
    get_anon(&r, "/healthz");
    expect(&r, 200);
    resp_free(&r);

    /* the device: its task's base version, and nothing else */
    request(&r, "GET", "/v1/models/fashion-mlp/versions/1/file", NULL, 0, 0, dev);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.len, FILE_SIZE);
    resp_free(&r);
    static const char *not_own[] = {"/v1/models/fashion-mlp/versions/2/file",
                                    "/v1/models/fashion-mlp/versions/latest/file",
                                    "/v1/models/other/versions/1/file"};
    for (size_t i = 0; i < 3; i++) {
        request(&r, "GET", not_own[i], NULL, 0, 0, dev);
        expect(&r, 403);
        assert_non_null(strstr(message_of(&r), "its own open task"));
        resp_free(&r);
    }
    request(&r, "GET", "/v1/jobs", NULL, 0, 0, dev);
    expect(&r, 403);
    assert_non_null(strstr(message_of(&r), "reader or the admin token"));
    resp_free(&r);
    /* once it has uploaded, the task is done: no more reads */
    exec("INSERT INTO updates (round, device, key, samples, path) VALUES (1, 9, 'k', 1, 'p')");
    request(&r, "GET", "/v1/models/fashion-mlp/versions/1/file", NULL, 0, 0, dev);
    expect(&r, 403);
    resp_free(&r);
    exec("DELETE FROM updates");
    /* a revoked device is nobody: 401 */
    exec("UPDATE devices SET revoked = 1 WHERE id = 9");
    request(&r, "GET", "/v1/models/fashion-mlp/versions/1/file", NULL, 0, 0, dev);
    expect(&r, 401);
    resp_free(&r);

    /* the reader token changes nothing */
    const char *reader[] = {"Authorization: Bearer " READER, NULL};
    long long was = query_int("SELECT cancel_requested FROM jobs WHERE id = 'job-000001'");
    exec("UPDATE jobs SET cancel_requested = 0 WHERE id = 'job-000001'");
    request(&r, "POST", "/v1/jobs/job-000001/cancel", "", 0, 0, reader);
    expect(&r, 403);
    assert_non_null(strstr(message_of(&r), "needs the admin token"));
    resp_free(&r);
    request(&r, "POST", "/v1/devices", "{\"count\":1}", 12, 0, reader);
    expect(&r, 403);
    resp_free(&r);
    assert_int_equal(query_int("SELECT count(*) FROM devices"), 1);
    assert_int_equal(query_int("SELECT cancel_requested FROM jobs WHERE id = 'job-000001'"), 0);
    execf("UPDATE jobs SET cancel_requested = %lld WHERE id = 'job-000001'", was);

    exec("DELETE FROM participants; DELETE FROM rounds; DELETE FROM federations;"
         " DELETE FROM devices");
}

/* GET /v1/devices/{id}: one enrolled device for a reader, as in the list; 404 otherwise. */
static void test_device_one(void **state)
{
    struct resp r;
    const char *auth[] = {"Authorization: Bearer " TOKEN, NULL};
    exec("INSERT INTO devices (id, name, token_hash, created, last_seen, updates, revoked)"
         " VALUES (7, 'phone-7', zeroblob(32), 1700000000.5, NULL, 3, 1)");
    get_anon(&r, "/v1/devices/7");
    expect(&r, 401);
    assert_true(has_header(&r, "WWW-Authenticate: Bearer realm=\"updraft\""));
    resp_free(&r);
    request(&r, "GET", "/v1/devices/7", NULL, 0, 0, auth);
    json_t *j = expect(&r, 200);
    assert_int_equal(jint(j, "id"), 7);
    assert_string_equal(jstr(j, "name"), "phone-7");
    assert_true(json_real_value(jget(j, "created")) == 1700000000.5);
    assert_true(json_is_null(jget(j, "last_seen")));
    assert_int_equal(jint(j, "updates"), 3);
    assert_true(json_is_true(jget(j, "revoked")));
    assert_int_equal(json_object_size(j), 6); /* the list's fields, no token hash */
    resp_free(&r);
    request(&r, "GET", "/v1/devices/8", NULL, 0, 0, auth);
    expect(&r, 404);
    assert_string_equal(message_of(&r), "no device '8'");
    resp_free(&r);
    request(&r, "GET", "/v1/devices/x%27%20OR%201", NULL, 0, 0, auth);
    expect(&r, 404);
    resp_free(&r);
    request(&r, "POST", "/v1/devices/7", "{}", 2, 0, auth);
    expect(&r, 405);
    assert_true(has_header(&r, "Allow: GET, HEAD"));
    resp_free(&r);
    exec("DELETE FROM devices WHERE id = 7");
}

/* docs/rest.md and the route table name the same routes: every "METHOD /path" in a heading's
 * backticks (a query or "[...]" after the path dropped) is a row, and every row is documented. */
#define MAX_DOC_ROUTES 64
static int doc_routes(char routes[][160])
{
    FILE *f = fopen(UD_REST_MD, "r");
    if (!f)
        fail_msg("%s: %s", UD_REST_MD, strerror(errno));
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] != '#')
            continue;
        for (char *p = strchr(line, '`'); p; p = strchr(p, '`')) {
            char *end = strchr(++p, '`');
            if (!end)
                break;
            size_t len = strcspn(p, "`[?");
            if ((strncmp(p, "GET /", 5) == 0 || strncmp(p, "POST /", 6) == 0) && len < 160) {
                assert_true(n < MAX_DOC_ROUTES);
                snprintf(routes[n++], 160, "%.*s", (int)len, p);
            }
            p = end + 1;
        }
    }
    fclose(f);
    return n;
}

static void test_routes_documented(void **state)
{
    static char doc[MAX_DOC_ROUTES][160];
    int ndoc = doc_routes(doc), bad = 0;
    size_t n;
    const struct coord_route *rt = coord_http_routes(&n);
    assert_true(n > 0 && ndoc > 0);
    for (size_t i = 0; i < n; i++) {
        char want[160];
        snprintf(want, sizeof want, "%s %s", rt[i].method, rt[i].pattern);
        int found = 0;
        for (int j = 0; j < ndoc; j++)
            found |= strcmp(doc[j], want) == 0;
        if (!found) {
            print_error("in the route table, not in docs/rest.md: %s\n", want);
            bad++;
        }
    }
    for (int j = 0; j < ndoc; j++) {
        int found = 0;
        for (size_t i = 0; i < n; i++) {
            char have[160];
            snprintf(have, sizeof have, "%s %s", rt[i].method, rt[i].pattern);
            found |= strcmp(doc[j], have) == 0;
        }
        if (!found) {
            print_error("in docs/rest.md, not in the route table: %s\n", doc[j]);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_start_errors(void **state)
{
    struct ud_err e = {0};
    struct coord_http_config cfg = {.state_dir = ud_test_path("state"), .listen = "nonsense"};
    assert_null(coord_http_start(&cfg, &e));
    assert_int_equal(e.code, UD_EINVAL);
    cfg.listen = "127.0.0.1:99999";
    assert_null(coord_http_start(&cfg, &e));
    assert_int_equal(e.code, UD_EINVAL);
    char busy[64];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", coord_http_port(g_http));
    cfg.listen = busy;
    assert_null(coord_http_start(&cfg, &e));
    assert_int_equal(e.code, UD_ENET);
    assert_msg_has(&e, "in use");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_and_status),
        cmocka_unit_test(test_jobs),
        cmocka_unit_test(test_metrics_history),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_model_file),
        cmocka_unit_test(test_prometheus),
        cmocka_unit_test(test_routing_errors),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_submit),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_device_one),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_routes_documented),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

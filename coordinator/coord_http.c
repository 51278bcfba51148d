/*  coord_http.c — the REST API on libmicrohttpd (docs/rest.md is the reference).
 *
 *  libmicrohttpd runs a pool of threads, each with its own epoll loop; a connection stays on one
 *  thread. Each thread lazily opens its own SQLite connections (read-only for GETs, read-write
 *  for the two mutating calls) and keeps its prepared statements, in a thread-specific slot
 *  freed when the thread ends, so no lock is shared on the read path.
 *
 *  GET /v1/status is the hot path (thousands a second): each thread keeps the body rendered and
 *  only patches in the uptime. The job and model counts are recounted when PRAGMA data_version
 *  says another connection committed, the live workers at most every 100 ms (they also change
 *  with time alone). No JSON library on that path.
 *
 *  Responses are built in a growable buffer with a small JSON writer that always emits valid
 *  JSON: strings from clients or the database are escaped, and bytes that are not UTF-8 become
 *  U+FFFD. Every SQL value is bound, never pasted.
 *
 *  Routing is one table, ROUTES (near the end): a row per method and path pattern with its
 *  handler, body limit and who may call. 404, 405 (with Allow), 401 and 413 come from the table
 *  alone. A POST body over its row's limit is refused by Content-Length before it is read; a
 *  chunked one is counted and dropped past the limit (and the connection closed if the client
 *  keeps sending), never buffered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coord_db.h"
#include "coord_http.h"
#include "coord_http_impl.h"
#include "coord_spec.h"
#include "coord_store.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_limits.h"
#include "updraft/ud_msg.h"
#include "updraft/ud_num.h"

#define DISCARD_CAP      (16u << 20) /* a chunked body this far past the cap: hang up */
#define MAX_URL          2048        /* longer paths name nothing we have */
#define MAX_SEGS         7
#define METRICS_LIMIT    1000
#define METRICS_MAX      10000
#define EVENTS_SHOWN     50
#define CKPTS_SHOWN      100
#define WORKERS_EVERY_S  0.1
#define CONN_LIMIT       512
#define CONN_TIMEOUT_S   30
#define PROM_TYPE        "text/plain; version=0.0.4; charset=utf-8"
#define ACTIVE_STATES_IN "('PENDING','RUNNING','RESTARTING')"
#define STR_(x)          #x
#define STR(x)           STR_(x)
/* The fraction of a job done, in [0, 1]: iteration / total_steps, 1 once SUCCEEDED. */
#define PROGRESS_SQL                                                                               \
    "CASE WHEN state = 'SUCCEEDED' THEN 1.0 WHEN total_steps > 0 AND iteration > 0 THEN"           \
    " min(1.0, CAST(iteration AS REAL) / total_steps) ELSE 0.0 END"

pthread_mutex_t http_write_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

/* ------------------------------------------------------------------ JSON into a buffer */

/* A number that reads back exactly, in as few digits as %.15g allows; NaN/inf: null. */
static void fmt_num(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, n, "%.17g", v);
}

void http_json_num(struct ud_buf *b, double v)
{
    if (!isfinite(v)) {
        ud_buf_puts(b, "null");
        return;
    }
    char buf[40];
    fmt_num(buf, sizeof buf, v);
    ud_buf_puts(b, buf);
}

/* Column i of st as a JSON value. */
void http_json_col(struct ud_buf *b, sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        ud_buf_printf(b, "%lld", (long long)sqlite3_column_int64(st, i));
        break;
    case SQLITE_FLOAT:
        http_json_num(b, sqlite3_column_double(st, i));
        break;
    case SQLITE_TEXT:
        ud_json_str_buf(b, (const char *)sqlite3_column_text(st, i));
        break;
    default:
        ud_buf_puts(b, "null");
    }
}

static void http_json_col_bool(struct ud_buf *b, sqlite3_stmt *st, int i)
{
    ud_buf_puts(b, sqlite3_column_int(st, i) ? "true" : "false");
}

/* Column i holds JSON text we stored: embedded as is when it parses, else null (a damaged
 * row must not make the whole answer invalid JSON). */
static void http_json_col_json(struct ud_buf *b, sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    json_error_t je;
    json_t *v = s ? json_loadb(s, (size_t)n, JSON_DECODE_ANY, &je) : NULL;
    if (v)
        ud_buf_put(b, s, (size_t)n);
    else
        ud_buf_puts(b, "null");
    json_decref(v);
}

/* Appends "name":value pairs (comma-separated, no braces) for the space-separated names, from
 * st's columns col, col + 1, ...: "!name" is a 0/1 column shown as a boolean, "@name" a column
 * holding stored JSON. */
void http_json_cols(struct ud_buf *b, sqlite3_stmt *st, int col, const char *names)
{
    int k = 0;
    for (const char *p = names; *p; col++) {
        char kind = *p == '!' || *p == '@' ? *p++ : 0;
        size_t n = strcspn(p, " ");
        ud_buf_puts(b, k++ ? ",\"" : "\"");
        ud_buf_put(b, p, n);
        ud_buf_puts(b, "\":");
        if (kind == '!')
            http_json_col_bool(b, st, col);
        else if (kind == '@')
            http_json_col_json(b, st, col);
        else
            http_json_col(b, st, col);
        p += n;
        while (*p == ' ')
            p++;
    }
}

/* Steps st to its end, appending a JSON array with one object (sb_cols' names) per row.
 * Returns SQLite's last code (SQLITE_DONE when all went well); *count: the rows. */
int http_json_rows(struct ud_buf *b, sqlite3_stmt *st, const char *names, int *count)
{
    int rc, n = 0;
    ud_buf_puts(b, "[");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ud_buf_puts(b, n++ ? ",{" : "{");
        http_json_cols(b, st, 0, names);
        ud_buf_puts(b, "}");
    }
    ud_buf_puts(b, "]");
    if (count)
        *count = n;
    return rc;
}

/* ------------------------------------------------------------------ server and threads */

enum stmt_id {
    ST_DATA_VERSION,
    ST_JOB_COUNTS,
    ST_MODEL_COUNTS,
    ST_WORKERS,
    ST_JOBS_ALL,
    ST_JOBS_STATE,
    ST_JOB,
    ST_JOB_RANKS,
    ST_JOB_LATEST,
    ST_JOB_CKPTS,
    ST_JOB_EVENTS,
    ST_JOB_EXISTS,
    ST_METRIC_KEYS,
    ST_METRIC_HIST,
    ST_MODELS,
    ST_MODEL_VERSIONS,
    ST_MODEL_VERSION,
    ST_MODEL_LATEST,
    ST_PROM_JOBS,
    ST_PROM_METRICS,
    N_STMTS
};

static const char *const SQL[N_STMTS] = {
    [ST_DATA_VERSION] = "PRAGMA data_version",
    [ST_JOB_COUNTS] = "SELECT state, count(*) FROM jobs GROUP BY state",
    [ST_MODEL_COUNTS] = "SELECT count(*), count(DISTINCT name) FROM models",
    [ST_WORKERS] = "SELECT count(*) FROM ranks r JOIN jobs j ON j.id = r.job"
                   " WHERE j.state IN " ACTIVE_STATES_IN " AND r.last_heartbeat >= ?1",
    [ST_JOBS_ALL] = "SELECT id, name, state, created, updated, epoch, epochs, iteration,"
                    " total_steps, " PROGRESS_SQL " FROM jobs ORDER BY seq DESC",
    [ST_JOBS_STATE] = "SELECT id, name, state, created, updated, epoch, epochs, iteration,"
                      " total_steps, " PROGRESS_SQL " FROM jobs WHERE state = ?1"
                      " ORDER BY seq DESC",
    [ST_JOB] = "SELECT id, name, state, message, spec, np, launch, created, started, updated,"
               " finished, epoch, epochs, iteration, steps_per_epoch, total_steps, " PROGRESS_SQL
               ", cancel_requested, restarts, resume_from, model_version,"
               " (SELECT slurm_id FROM slurm_jobs WHERE job = ?1),"
               " (SELECT state FROM slurm_jobs WHERE job = ?1) FROM jobs WHERE id = ?1",
    [ST_JOB_RANKS] = "SELECT rank, host, pid, step, last_heartbeat, ?2 - last_heartbeat"
                     " FROM ranks WHERE job = ?1 ORDER BY rank",
    /* SQLite: with max(), the bare columns come from the row holding the maximum. */
    [ST_JOB_LATEST] = "SELECT key, max(step), value, time FROM metrics WHERE job = ?1"
                      " GROUP BY key ORDER BY key",
    [ST_JOB_CKPTS] = "SELECT iteration, epoch, minibatch, path, time FROM (SELECT * FROM"
                     " checkpoints WHERE job = ?1 ORDER BY iteration DESC LIMIT " STR(
                         CKPTS_SHOWN) ")"
                                      " ORDER BY iteration",
    [ST_JOB_EVENTS] =
        "SELECT time, kind, message FROM (SELECT seq, time, kind, message FROM"
        " events WHERE job = ?1 ORDER BY seq DESC LIMIT " STR(EVENTS_SHOWN) ") ORDER BY seq",
    [ST_JOB_EXISTS] = "SELECT 1 FROM jobs WHERE id = ?1",
    [ST_METRIC_KEYS] = "SELECT DISTINCT key FROM metrics WHERE job = ?1 ORDER BY key",
    [ST_METRIC_HIST] = "SELECT step, value, time FROM metrics WHERE job = ?1 AND key = ?2"
                       " AND step > ?3 ORDER BY step LIMIT ?4",
    [ST_MODELS] = "SELECT m.name, c.n, m.version, m.sha256, m.size, m.created, m.metrics"
                  " FROM models m JOIN (SELECT name, count(*) AS n, max(version) AS v"
                  " FROM models GROUP BY name) c ON m.name = c.name AND m.version = c.v"
                  " ORDER BY m.name",
    [ST_MODEL_VERSIONS] = "SELECT version, sha256, size, created, job, metrics FROM models"
                          " WHERE name = ?1 ORDER BY version",
    [ST_MODEL_VERSION] = "SELECT name, version, sha256, size, created, job, metrics, lineage,"
                         " metadata FROM models WHERE name = ?1 AND version = ?2",
    [ST_MODEL_LATEST] = "SELECT name, version, sha256, size, created, job, metrics, lineage,"
                        " metadata FROM models WHERE name = ?1 ORDER BY version DESC LIMIT 1",
    [ST_PROM_JOBS] = "SELECT id, iteration, " PROGRESS_SQL
                     " FROM jobs WHERE state IN " ACTIVE_STATES_IN " ORDER BY seq",
    [ST_PROM_METRICS] = "SELECT m.job, m.key, max(m.step), m.value FROM metrics m JOIN jobs j"
                        " ON j.id = m.job WHERE j.state IN " ACTIVE_STATES_IN
                        " GROUP BY m.job, m.key ORDER BY j.seq, m.key",
};

#define NSTATES 6
static const char *const STATES[NSTATES] = {
#define X(s) #s,
    COORD_JOB_STATES(X)
#undef X
};

/* What one thread keeps. */
struct coord_http_thread {
    sqlite3 *ro, *rw;
    sqlite3_stmt *st[N_STMTS];
    /* GET /v1/status */
    int status_valid;
    int64_t data_version;
    double workers_at; /* monotonic seconds of the last live-worker count */
    int64_t counts[NSTATES], workers, models, model_names;
    char status_tail[512]; /* everything after "uptime_seconds": */
    size_t status_tail_len;
};

struct coord_http {
    struct MHD_Daemon *d;
    pthread_key_t key;
    int key_made;
    char *state_dir, *state_abs;
    unsigned char token_hash[crypto_generichash_BYTES], reader_hash[crypto_generichash_BYTES];
    int have_token, have_reader;
    double heartbeat_timeout, started;
    int port;
    const struct coord_model_keys *keys; /* borrowed */
    _Atomic uint64_t replies[600];       /* by status code, for /metrics */
};

static void tls_free(void *p)
{
    struct coord_http_thread *t = p;
    if (!t)
        return;
    for (int i = 0; i < N_STMTS; i++)
        sqlite3_finalize(t->st[i]);
    coord_db_close(&t->ro);
    coord_db_close(&t->rw);
    free(t);
}

static struct coord_http_thread *tls_get(struct coord_http *h)
{
    struct coord_http_thread *t = pthread_getspecific(h->key);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (t && pthread_setspecific(h->key, t) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

/* This thread's read-only (ro) or read-write connection, opened on first use. */
static sqlite3 *thread_db(struct coord_http *h, int ro, struct ud_err *e)
{
    struct coord_http_thread *t = tls_get(h);
    if (!t) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        return NULL;
    }
    sqlite3 **db = ro ? &t->ro : &t->rw;
    if (!*db && coord_db_open(h->state_dir, ro, db, e) != 0)
        return NULL;
    return *db;
}

sqlite3 *http_db_ro(struct coord_http *h, struct ud_err *e)
{
    return thread_db(h, 1, e);
}

sqlite3 *http_db_rw(struct coord_http *h, struct ud_err *e)
{
    return thread_db(h, 0, e);
}

const char *http_state_dir(const struct coord_http *h)
{
    return h->state_abs;
}

const struct coord_model_keys *http_keys(const struct coord_http *h)
{
    return h->keys;
}

/* This thread's prepared statement id, reset and ready to bind; NULL with e set. */
static sqlite3_stmt *stmt(struct coord_http *h, struct coord_http_thread *t, enum stmt_id id,
                          struct ud_err *e)
{
    if (!t->ro && coord_db_open(h->state_dir, 1, &t->ro, e) != 0)
        return NULL;
    if (!t->st[id] && sqlite3_prepare_v3(t->ro, SQL[id], -1, SQLITE_PREPARE_PERSISTENT, &t->st[id],
                                         NULL) != SQLITE_OK) {
        coord_db_err(t->ro, e, "prepare");
        return NULL;
    }
    return t->st[id];
}

/* Ends a statement's use: its read transaction must not outlive the request (WAL checkpoints
 * wait for readers). */
static void done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* ------------------------------------------------------------------ replies */

static void count_reply(struct coord_http *h, unsigned code)
{
    if (code < 600)
        atomic_fetch_add_explicit(&h->replies[code], 1, memory_order_relaxed);
}

/* Queues a response (takes it over). Extra headers come as name, value pairs ending in NULL. */
enum MHD_Result http_queue(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                           struct MHD_Response *r, const char *ctype, ...)
{
    if (!r)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    va_list ap;
    va_start(ap, ctype);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        MHD_add_response_header(r, name, value);
    }
    va_end(ap);
    count_reply(h, code);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

struct MHD_Response *http_mem_response(const char *body, size_t len)
{
    return MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
}

/* The error body, with a header pair (name NULL: none). */
static enum MHD_Result reply_error_msg(struct coord_http *h, struct MHD_Connection *c,
                                       unsigned code, const char *hname, const char *hvalue,
                                       const char *reason, const char *msg)
{
    struct ud_buf b = {0};
    ud_buf_printf(&b, "{\"error\":{\"status\":%u,\"message\":", code);
    ud_json_str_buf(&b, msg);
    if (reason) { /* machine-readable, inside the error and beside it */
        ud_buf_puts(&b, ",\"reason\":");
        ud_json_str_buf(&b, reason);
        ud_buf_puts(&b, "},\"reason\":");
        ud_json_str_buf(&b, reason);
        ud_buf_puts(&b, "}\n");
    } else {
        ud_buf_puts(&b, "}}\n");
    }
    enum MHD_Result ret;
    if (b.oom)
        ret = MHD_NO;
    else
        ret = http_queue(h, c, code, http_mem_response(b.p, b.len), JSON_TYPE, hname, hvalue, NULL);
    ud_buf_free(&b);
    return ret;
}

enum MHD_Result http_reply_errorf(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                  const char *hname, const char *hvalue, const char *reason,
                                  const char *fmt, ...)
{
    char msg[UD_ERRMSG_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return reply_error_msg(h, c, code, hname, hvalue, reason, msg);
}

/* A failure on our side (the database): 503 when it is busy or missing, else 500. */
sqlite3_stmt *http_select(struct coord_http *h, struct MHD_Connection *c, const char *sql,
                          const char *what, enum MHD_Result *ret)
{
    struct ud_err e = {0};
    sqlite3 *db = http_db_ro(h, &e);
    if (!db) {
        *ret = http_reply_db_error(h, c, &e);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        *ret = http_db_fail(h, c, db, what);
        return NULL;
    }
    return st;
}

enum MHD_Result http_reply_db_error(struct coord_http *h, struct MHD_Connection *c,
                                    const struct ud_err *e)
{
    return http_reply_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database unavailable: %s", e->msg);
}

/* b with a newline, code and a Location header (NULL: none); frees b. */
static enum MHD_Result reply_json_at(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                     struct ud_buf *b, const char *location)
{
    enum MHD_Result ret;
    if (b->oom) {
        ud_buf_free(b);
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    }
    ud_buf_put(b, "\n", 1);
    ret = http_queue(h, c, code, http_mem_response(b->p, b->len), JSON_TYPE,
                     location ? MHD_HTTP_HEADER_LOCATION : NULL, location, NULL);
    ud_buf_free(b);
    return ret;
}

enum MHD_Result http_reply_json(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                struct ud_buf *b)
{
    return reply_json_at(h, c, code, b, NULL);
}

enum MHD_Result http_reply_created(struct coord_http *h, struct MHD_Connection *c, struct ud_buf *b,
                                   const char *location)
{
    return reply_json_at(h, c, MHD_HTTP_CREATED, b, location);
}

/* ------------------------------------------------------------------ parsing helpers */

/* A whole decimal number, nothing else (no spaces, no "+"). */
int http_parse_i64(const char *s, int64_t *out)
{
    long long v;
    if (!s || !(*s == '-' || (*s >= '0' && *s <= '9')) ||
        ud_num_ll("", s, INT64_MIN, INT64_MAX, &v, NULL) < 0)
        return -1;
    *out = v;
    return 0;
}

static int state_index(const char *s)
{
    for (int i = 0; i < NSTATES; i++)
        if (strcmp(STATES[i], s) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------ GET handlers */

static const char STATUS_HEAD[] =
    "{\"version\":\"" UD_VERSION_STRING "\",\"protocol\":%d,\"uptime_seconds\":%.3f";

/* Brings this thread's status numbers up to date; re-renders the tail when they changed. */
static int status_refresh(struct coord_http *h, struct coord_http_thread *t, struct ud_err *e)
{
    int changed = !t->status_valid;
    sqlite3_stmt *st = stmt(h, t, ST_DATA_VERSION, e);
    if (!st)
        return -1;
    int64_t dv = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    done(st);
    if (dv < 0)
        return coord_db_err(t->ro, e, "data_version");
    if (!t->status_valid || dv != t->data_version) {
        if (!(st = stmt(h, t, ST_JOB_COUNTS, e)))
            return -1;
        int64_t counts[NSTATES] = {0};
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int i = state_index((const char *)sqlite3_column_text(st, 0));
            if (i >= 0)
                counts[i] = sqlite3_column_int64(st, 1);
        }
        done(st);
        if (rc != SQLITE_DONE)
            return coord_db_err(t->ro, e, "count jobs");
        if (!(st = stmt(h, t, ST_MODEL_COUNTS, e)))
            return -1;
        if (sqlite3_step(st) != SQLITE_ROW) {
            done(st);
            return coord_db_err(t->ro, e, "count models");
        }
        int64_t models = sqlite3_column_int64(st, 0), names = sqlite3_column_int64(st, 1);
        done(st);
        changed |= memcmp(counts, t->counts, sizeof counts) != 0 || models != t->models ||
                   names != t->model_names;
        memcpy(t->counts, counts, sizeof counts);
        t->models = models;
        t->model_names = names;
        t->data_version = dv;
    }
    double now = ud_clock_mono();
    if (!t->status_valid || now - t->workers_at >= WORKERS_EVERY_S) {
        if (!(st = stmt(h, t, ST_WORKERS, e)))
            return -1;
        sqlite3_bind_double(st, 1, ud_clock_wall() - h->heartbeat_timeout);
        if (sqlite3_step(st) != SQLITE_ROW) {
            done(st);
            return coord_db_err(t->ro, e, "count workers");
        }
        int64_t w = sqlite3_column_int64(st, 0);
        done(st);
        changed |= w != t->workers;
        t->workers = w;
        t->workers_at = now;
    }
    if (changed) {
        int n = snprintf(t->status_tail, sizeof t->status_tail,
                         ",\"jobs\":{\"PENDING\":%" PRId64 ",\"RUNNING\":%" PRId64
                         ",\"RESTARTING\":%" PRId64 ",\"SUCCEEDED\":%" PRId64 ",\"FAILED\":%" PRId64
                         ",\"CANCELLED\":%" PRId64 "},\"workers\":%" PRId64 ",\"models\":%" PRId64
                         ",\"model_names\":%" PRId64 "}\n",
                         t->counts[0], t->counts[1], t->counts[2], t->counts[3], t->counts[4],
                         t->counts[5], t->workers, t->models, t->model_names);
        t->status_tail_len = (size_t)n < sizeof t->status_tail ? (size_t)n : 0;
    }
    t->status_valid = 1;
    return 0;
}

static enum MHD_Result get_status(struct coord_http *h, struct MHD_Connection *c,
                                  const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    struct ud_err e = {0};
    if (status_refresh(h, t, &e) != 0) {
        t->status_valid = 0;
        return http_reply_db_error(h, c, &e);
    }
    char body[768];
    int n =
        snprintf(body, sizeof body, STATUS_HEAD, UD_PROTO_VERSION, ud_clock_wall() - h->started);
    if (n < 0 || (size_t)n + t->status_tail_len >= sizeof body)
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "status does not fit");
    memcpy(body + n, t->status_tail, t->status_tail_len);
    return http_queue(h, c, MHD_HTTP_OK, http_mem_response(body, (size_t)n + t->status_tail_len),
                      JSON_TYPE, NULL);
}

static enum MHD_Result get_jobs(struct coord_http *h, struct MHD_Connection *c,
                                const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    struct ud_err e = {0};
    const char *state = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
    if (state && state_index(state) < 0)
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST,
                                "state must be one of PENDING, RUNNING, RESTARTING, SUCCEEDED, "
                                "FAILED, CANCELLED (not '%.64s')",
                                state);
    sqlite3_stmt *st = stmt(h, t, state ? ST_JOBS_STATE : ST_JOBS_ALL, &e);
    if (!st)
        return http_reply_db_error(h, c, &e);
    if (state)
        sqlite3_bind_text(st, 1, state, -1, SQLITE_TRANSIENT);
    struct ud_buf b = {0};
    ud_buf_puts(&b, "{\"jobs\":");
    int rc = http_json_rows(&b, st,
                            "id name state created updated epoch epochs iteration total_steps"
                            " progress",
                            NULL);
    done(st);
    if (rc != SQLITE_DONE) {
        ud_buf_free(&b);
        coord_db_err(t->ro, &e, "list jobs");
        return http_reply_db_error(h, c, &e);
    }
    ud_buf_puts(&b, "}");
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* Appends ,"key":[...] with the rows of statement sid for job id (?2, if the statement has it,
 * is the time now). Returns 0 or -1 with e set. */
static int job_rows(struct coord_http *h, struct coord_http_thread *t, struct ud_buf *b,
                    enum stmt_id sid, const char *id, const char *key, const char *names,
                    struct ud_err *e)
{
    sqlite3_stmt *st = stmt(h, t, sid, e);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_double(st, 2, ud_clock_wall());
    ud_buf_printf(b, ",\"%s\":", key);
    int rc = http_json_rows(b, st, names, NULL);
    done(st);
    return rc == SQLITE_DONE ? 0 : (coord_db_err(t->ro, e, key), -1);
}

/* Appends job id's detail object to b. Returns 0, 1 when there is no such job, or -1 with e
 * set. */
static int job_detail(struct coord_http *h, struct coord_http_thread *t, const char *id,
                      struct ud_buf *b, struct ud_err *e)
{
    sqlite3_stmt *st = stmt(h, t, ST_JOB, e);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        done(st);
        return rc == SQLITE_DONE ? 1 : (coord_db_err(t->ro, e, "read job"), -1);
    }
    ud_buf_puts(b, "{");
    http_json_cols(
        b, st, 0,
        "id name state message @spec np !launch created started updated finished epoch epochs"
        " iteration steps_per_epoch total_steps progress");
    /* ETA: the rate from the start to the last report, less the time since that report. */
    ud_buf_puts(b, ",\"eta_seconds\":");
    const char *state = (const char *)sqlite3_column_text(st, 2);
    int64_t it = sqlite3_column_int64(st, 13), total = sqlite3_column_int64(st, 15);
    double started = sqlite3_column_double(st, 8), updated = sqlite3_column_double(st, 9);
    if (state && strcmp(state, "RUNNING") == 0 && it > 0 && total > it &&
        sqlite3_column_type(st, 8) != SQLITE_NULL && updated > started) {
        double eta =
            (double)(total - it) * (updated - started) / (double)it - (ud_clock_wall() - updated);
        http_json_num(b, eta > 0 ? eta : 0);
    } else {
        ud_buf_puts(b, "null");
    }
    ud_buf_puts(b, ",");
    http_json_cols(b, st, 17, "!cancel_requested restarts resume_from");
    struct ud_buf model = {0}; /* shown after the checkpoints */
    if (sqlite3_column_type(st, 20) != SQLITE_NULL) {
        ud_buf_puts(&model, "{\"name\":");
        http_json_col(&model, st, 1);
        ud_buf_printf(&model, ",\"version\":%lld}", (long long)sqlite3_column_int64(st, 20));
    }
    ud_buf_puts(b, ",\"slurm\":"); /* the Slurm job of a job launched through Slurm */
    if (sqlite3_column_type(st, 21) != SQLITE_NULL) {
        ud_buf_puts(b, "{");
        http_json_cols(b, st, 21, "id state");
        ud_buf_puts(b, "}");
    } else {
        ud_buf_puts(b, "null");
    }
    done(st);

    int ret = job_rows(h, t, b, ST_JOB_RANKS, id, "ranks",
                       "rank host pid step last_heartbeat seconds_since_heartbeat", e);
    /* The latest value of each metric, keyed by name. */
    if (ret == 0 && (st = stmt(h, t, ST_JOB_LATEST, e)) != NULL) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        ud_buf_puts(b, ",\"metrics\":{");
        for (int n = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; n++) {
            if (n)
                ud_buf_puts(b, ",");
            http_json_col(b, st, 0);
            ud_buf_puts(b, ":{");
            http_json_cols(b, st, 1, "step value time");
            ud_buf_puts(b, "}");
        }
        ud_buf_puts(b, "}");
        done(st);
        if (rc != SQLITE_DONE)
            ret = coord_db_err(t->ro, e, "read metrics");
    } else if (ret == 0) {
        ret = -1;
    }
    if (ret == 0)
        ret = job_rows(h, t, b, ST_JOB_CKPTS, id, "checkpoints",
                       "iteration epoch minibatch path time", e);
    ud_buf_puts(b, ",\"model\":");
    ud_buf_puts(b, model.p ? model.p : "null");
    ud_buf_free(&model);
    if (ret == 0)
        ret = job_rows(h, t, b, ST_JOB_EVENTS, id, "events", "time kind message", e);
    ud_buf_puts(b, "}");
    return ret == 0 ? 0 : -1;
}

static enum MHD_Result get_job(struct coord_http *h, struct MHD_Connection *c,
                               const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    const char *id = q->arg[0];
    struct ud_err e = {0};
    struct ud_buf b = {0};
    int rc = job_detail(h, t, id, &b, &e);
    if (rc == 0)
        return http_reply_json(h, c, MHD_HTTP_OK, &b);
    ud_buf_free(&b);
    if (rc > 0)
        return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no job '%.128s'", id);
    return http_reply_db_error(h, c, &e);
}

/* 1 if job id exists, 0 if not, -1 on a database error. */
static int job_exists(struct coord_http *h, struct coord_http_thread *t, const char *id,
                      struct ud_err *e)
{
    sqlite3_stmt *st = stmt(h, t, ST_JOB_EXISTS, e);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    done(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return coord_db_err(t->ro, e, "find job"), -1;
}

static enum MHD_Result get_job_metrics(struct coord_http *h, struct MHD_Connection *c,
                                       const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    const char *id = q->arg[0];
    struct ud_err e = {0};
    const char *key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "key");
    const char *since_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
    const char *limit_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    int64_t since = INT64_MIN, limit = METRICS_LIMIT;
    if (since_s && http_parse_i64(since_s, &since) != 0)
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST,
                                "since must be a whole number (a step), not '%.64s'", since_s);
    if (limit_s && (http_parse_i64(limit_s, &limit) != 0 || limit < 1 || limit > METRICS_MAX))
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST,
                                "limit must be a whole number in [1, %d], not '%.64s'", METRICS_MAX,
                                limit_s);
    int ex = job_exists(h, t, id, &e);
    if (ex < 0)
        return http_reply_db_error(h, c, &e);
    if (!ex)
        return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no job '%.128s'", id);

    struct ud_buf b = {0};
    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    ud_buf_puts(&b, "{\"job\":");
    ud_json_str_buf(&b, id);
    if (!key) {
        if (!(st = stmt(h, t, ST_METRIC_KEYS, &e))) {
            ud_buf_free(&b);
            return http_reply_db_error(h, c, &e);
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        ud_buf_puts(&b, ",\"keys\":[");
        for (int n = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; n++) {
            if (n)
                ud_buf_puts(&b, ",");
            http_json_col(&b, st, 0);
        }
        ud_buf_puts(&b, "]}");
    } else {
        if (!(st = stmt(h, t, ST_METRIC_HIST, &e))) {
            ud_buf_free(&b);
            return http_reply_db_error(h, c, &e);
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, since);
        sqlite3_bind_int64(st, 4, limit + 1); /* one more: is there a next page? */
        ud_buf_puts(&b, ",\"key\":");
        ud_json_str_buf(&b, key);
        ud_buf_puts(&b, ",\"metrics\":[");
        int64_t n = 0, last = 0;
        while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            ud_buf_puts(&b, n++ ? ",{" : "{");
            http_json_cols(&b, st, 0, "step value time");
            ud_buf_puts(&b, "}");
            last = sqlite3_column_int64(st, 0);
        }
        if (n == limit) /* the page is full: look for one more row */
            rc = sqlite3_step(st);
        ud_buf_puts(&b, "],\"next_since\":");
        if (n == limit && rc == SQLITE_ROW) {
            ud_buf_printf(&b, "%" PRId64, last);
            rc = SQLITE_DONE;
        } else {
            ud_buf_puts(&b, "null");
        }
        ud_buf_puts(&b, "}");
    }
    done(st);
    if (rc != SQLITE_DONE) {
        ud_buf_free(&b);
        coord_db_err(t->ro, &e, "read metrics");
        return http_reply_db_error(h, c, &e);
    }
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

static enum MHD_Result get_models(struct coord_http *h, struct MHD_Connection *c,
                                  const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    struct ud_err e = {0};
    sqlite3_stmt *st = stmt(h, t, ST_MODELS, &e);
    if (!st)
        return http_reply_db_error(h, c, &e);
    struct ud_buf b = {0};
    int rc;
    ud_buf_puts(&b, "{\"models\":[");
    for (int n = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; n++) {
        ud_buf_puts(&b, n ? ",{" : "{");
        http_json_cols(&b, st, 0, "name versions");
        ud_buf_puts(&b, ",\"latest\":{");
        http_json_cols(&b, st, 2, "version sha256 size created @metrics");
        ud_buf_puts(&b, "}}");
    }
    done(st);
    if (rc != SQLITE_DONE) {
        ud_buf_free(&b);
        coord_db_err(t->ro, &e, "list models");
        return http_reply_db_error(h, c, &e);
    }
    ud_buf_puts(&b, "]}");
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

static enum MHD_Result get_model_versions(struct coord_http *h, struct MHD_Connection *c,
                                          const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    const char *name = q->arg[0];
    struct ud_err e = {0};
    sqlite3_stmt *st = stmt(h, t, ST_MODEL_VERSIONS, &e);
    if (!st)
        return http_reply_db_error(h, c, &e);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    struct ud_buf b = {0};
    int n = 0;
    ud_buf_puts(&b, "{\"name\":");
    ud_json_str_buf(&b, name);
    ud_buf_puts(&b, ",\"versions\":");
    int rc = http_json_rows(&b, st, "version sha256 size created job @metrics", &n);
    done(st);
    if (rc != SQLITE_DONE) {
        ud_buf_free(&b);
        coord_db_err(t->ro, &e, "list versions");
        return http_reply_db_error(h, c, &e);
    }
    if (n == 0) {
        ud_buf_free(&b);
        return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no model '%.128s'", name);
    }
    ud_buf_puts(&b, "}");
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* Looks up version v ("latest" or a number) of model name; on success st is positioned on the
 * row (columns as ST_MODEL_VERSION) and the caller calls done(st). Returns 0, or a response
 * already queued through *ret. */
static int find_version(struct coord_http *h, struct MHD_Connection *c, const struct coord_call *q,
                        sqlite3_stmt **out, enum MHD_Result *ret)
{
    struct coord_http_thread *t = q->t;
    const char *name = q->arg[0], *v = q->arg[1];
    struct ud_err e = {0};
    int64_t ver = 0;
    int latest = strcmp(v, "latest") == 0;
    if (!latest && (http_parse_i64(v, &ver) != 0 || ver < 1)) {
        *ret = http_reply_error(h, c, MHD_HTTP_BAD_REQUEST,
                                "version must be a whole number >= 1 or 'latest', not '%.64s'", v);
        return -1;
    }
    sqlite3_stmt *st = stmt(h, t, latest ? ST_MODEL_LATEST : ST_MODEL_VERSION, &e);
    if (!st) {
        *ret = http_reply_db_error(h, c, &e);
        return -1;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    if (!latest)
        sqlite3_bind_int64(st, 2, ver);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = st;
        return 0;
    }
    done(st);
    if (rc != SQLITE_DONE) {
        coord_db_err(t->ro, &e, "read model");
        *ret = http_reply_db_error(h, c, &e);
    } else if (latest) {
        *ret = http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no model '%.128s'", name);
    } else {
        *ret = http_reply_error(h, c, MHD_HTTP_NOT_FOUND,
                                "no version %" PRId64 " of model '%.128s'", ver, name);
    }
    return -1;
}

static enum MHD_Result get_model_version(struct coord_http *h, struct MHD_Connection *c,
                                         const struct coord_call *q)
{
    sqlite3_stmt *st;
    enum MHD_Result ret;
    if (find_version(h, c, q, &st, &ret) != 0)
        return ret;
    struct ud_buf b = {0};
    ud_buf_puts(&b, "{");
    http_json_cols(&b, st, 0, "name version sha256 size created job @metrics @lineage @metadata");
    /* Where to download it, with the actual version number. */
    char url[512];
    snprintf(url, sizeof url, "/v1/models/%.300s/versions/%lld/file",
             (const char *)sqlite3_column_text(st, 0), (long long)sqlite3_column_int64(st, 1));
    done(st);
    ud_buf_puts(&b, ",\"file\":");
    ud_json_str_buf(&b, url);
    ud_buf_puts(&b, "}");
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* Does an If-None-Match list name etag (quoted) or "*"? */
static int etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1;
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

/* Digits to a saturating unsigned number; returns the end or NULL if there were none. */
static const char *parse_u64(const char *p, uint64_t *v)
{
    const char *s = p;
    uint64_t x = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p++ - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    }
    *v = x;
    return p > s ? p : NULL;
}

/* A Range header against a file of size bytes: 0 ignore it (absent, malformed, several
 * ranges: the whole file), 1 serve [*off, *off + *len), -1 unsatisfiable (416). */
static int parse_range(const char *hv, uint64_t size, uint64_t *off, uint64_t *len)
{
    if (!hv || strncasecmp(hv, "bytes=", 6) != 0)
        return 0;
    const char *p = hv + 6;
    while (*p == ' ')
        p++;
    if (strchr(p, ','))
        return 0;
    uint64_t a, b;
    if (*p == '-') {
        if (!(p = parse_u64(p + 1, &b)))
            return 0;
        while (*p == ' ')
            p++;
        if (*p)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *len = b < size ? b : size;
        *off = size - *len;
        return 1;
    }
    if (!(p = parse_u64(p, &a)) || *p++ != '-')
        return 0;
    b = UINT64_MAX;
    if (*p >= '0' && *p <= '9')
        p = parse_u64(p, &b);
    while (*p == ' ')
        p++;
    if (*p || a > b)
        return 0;
    if (a >= size)
        return -1;
    if (b >= size)
        b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

static enum MHD_Result get_model_file(struct coord_http *h, struct MHD_Connection *c,
                                      const struct coord_call *q)
{
    sqlite3_stmt *st;
    enum MHD_Result ret;
    if (find_version(h, c, q, &st, &ret) != 0)
        return ret;
    char sha[80], etag[96], path[4096 + 128];
    snprintf(sha, sizeof sha, "%s",
             sqlite3_column_text(st, 2) ? (const char *)sqlite3_column_text(st, 2) : "");
    done(st);
    struct ud_err e = {0};
    if (coord_store_path(h->state_dir, sha, path, sizeof path, &e) != 0)
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "the registry holds a bad hash for this model: %s", e.msg);
    snprintf(etag, sizeof etag, "\"%s\"", sha);
    const char *inm =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && etag_matches(inm, etag)) {
        return http_queue(h, c, MHD_HTTP_NOT_MODIFIED,
                          MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT), NULL,
                          MHD_HTTP_HEADER_ETAG, etag, NULL);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "model file %s: %s", sha,
                                strerror(err));
    }
    uint64_t size = (uint64_t)sb.st_size, off = 0, len = size;
    int r = parse_range(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE),
                        size, &off, &len);
    char crange[96];
    if (r < 0) {
        close(fd);
        snprintf(crange, sizeof crange, "bytes */%" PRIu64, size);
        return http_reply_error_h(h, c, MHD_HTTP_RANGE_NOT_SATISFIABLE,
                                  MHD_HTTP_HEADER_CONTENT_RANGE, crange,
                                  "range not satisfiable: the file has %" PRIu64 " bytes", size);
    }
    /* MHD owns fd from here and closes it with the response. */
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
    if (!resp) {
        close(fd);
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot serve %s", sha);
    }
    if (r > 0) {
        snprintf(crange, sizeof crange, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
                 off + len - 1, size);
        return http_queue(h, c, MHD_HTTP_PARTIAL_CONTENT, resp, "application/octet-stream",
                          MHD_HTTP_HEADER_ETAG, etag, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes",
                          MHD_HTTP_HEADER_CONTENT_RANGE, crange, NULL);
    }
    return http_queue(h, c, MHD_HTTP_OK, resp, "application/octet-stream", MHD_HTTP_HEADER_ETAG,
                      etag, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes", NULL);
}

/* Prometheus label value: \\, \" and \n escaped; bytes that are not UTF-8 become '?'. */
static void http_prom_label(struct ud_buf *b, const char *s)
{
    ud_buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
        if (*p == '\\' || *p == '"') {
            char esc[2] = {'\\', (char)*p++};
            ud_buf_put(b, esc, 2);
        } else if (*p == '\n') {
            ud_buf_put(b, "\\n", 2);
            p++;
        } else {
            size_t n = ud_json_utf8_len(p);
            ud_buf_put(b, n ? (const char *)p : "?", n ? n : 1);
            p += n ? n : 1;
        }
    }
    ud_buf_put(b, "\"", 1);
}

static void http_prom_num(struct ud_buf *b, double v)
{
    if (isnan(v))
        ud_buf_puts(b, "NaN");
    else if (isinf(v))
        ud_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else {
        char buf[40];
        fmt_num(buf, sizeof buf, v);
        ud_buf_puts(b, buf);
    }
}

static enum MHD_Result get_prometheus(struct coord_http *h, struct MHD_Connection *c,
                                      const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    struct ud_err e = {0};
    t->status_valid = 0; /* count afresh */
    if (status_refresh(h, t, &e) != 0)
        return http_reply_db_error(h, c, &e);
    struct ud_buf b = {0};
    ud_buf_puts(&b, "# HELP updraft_up Whether the coordinator is serving.\n"
                    "# TYPE updraft_up gauge\nupdraft_up 1\n"
                    "# HELP updraft_uptime_seconds Seconds since the coordinator started.\n"
                    "# TYPE updraft_uptime_seconds gauge\n");
    ud_buf_printf(&b, "updraft_uptime_seconds %.3f\n", ud_clock_wall() - h->started);
    ud_buf_puts(&b, "# HELP updraft_jobs Jobs by state.\n# TYPE updraft_jobs gauge\n");
    for (int i = 0; i < NSTATES; i++)
        ud_buf_printf(&b, "updraft_jobs{state=\"%s\"} %" PRId64 "\n", STATES[i], t->counts[i]);
    ud_buf_printf(&b,
                  "# HELP updraft_workers Ranks of unfinished jobs heard from within the heartbeat "
                  "timeout.\n# TYPE updraft_workers gauge\nupdraft_workers %" PRId64 "\n"
                  "# HELP updraft_model_versions Model versions in the registry.\n"
                  "# TYPE updraft_model_versions gauge\nupdraft_model_versions %" PRId64 "\n",
                  t->workers, t->models);

    sqlite3_stmt *st = stmt(h, t, ST_PROM_JOBS, &e);
    if (!st) {
        ud_buf_free(&b);
        return http_reply_db_error(h, c, &e);
    }
    struct ud_buf it = {0};
    int rc;
    ud_buf_puts(&b, "# HELP updraft_job_progress Fraction of an unfinished job's steps done.\n"
                    "# TYPE updraft_job_progress gauge\n");
    ud_buf_puts(&it, "# HELP updraft_job_iteration Steps an unfinished job has taken.\n"
                     "# TYPE updraft_job_iteration gauge\n");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        ud_buf_puts(&b, "updraft_job_progress{job=");
        http_prom_label(&b, id);
        ud_buf_puts(&b, "} ");
        http_prom_num(&b, sqlite3_column_double(st, 2));
        ud_buf_puts(&it, "updraft_job_iteration{job=");
        http_prom_label(&it, id);
        ud_buf_printf(&it, "} %lld\n", (long long)sqlite3_column_int64(st, 1));
        ud_buf_puts(&b, "\n");
    }
    done(st);
    if (it.p)
        ud_buf_put(&b, it.p, it.len);
    ud_buf_free(&it);
    if (rc == SQLITE_DONE && (st = stmt(h, t, ST_PROM_METRICS, &e)) != NULL) {
        ud_buf_puts(&b, "# HELP updraft_job_metric Latest reported value of an unfinished job's "
                        "metric.\n# TYPE updraft_job_metric gauge\n");
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            ud_buf_puts(&b, "updraft_job_metric{job=");
            http_prom_label(&b, (const char *)sqlite3_column_text(st, 0));
            ud_buf_puts(&b, ",key=");
            http_prom_label(&b, (const char *)sqlite3_column_text(st, 1));
            ud_buf_puts(&b, "} ");
            http_prom_num(
                &b, sqlite3_column_type(st, 3) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 3));
            ud_buf_puts(&b, "\n");
        }
        done(st);
    } else if (!st) {
        ud_buf_free(&b);
        return http_reply_db_error(h, c, &e);
    }
    if (rc != SQLITE_DONE) {
        ud_buf_free(&b);
        coord_db_err(t->ro, &e, "metrics");
        return http_reply_db_error(h, c, &e);
    }
    ud_buf_puts(&b, "# HELP updraft_http_requests_total HTTP responses by status code.\n"
                    "# TYPE updraft_http_requests_total counter\n");
    for (unsigned code = 100; code < 600; code++) {
        uint64_t n = atomic_load_explicit(&h->replies[code], memory_order_relaxed);
        if (n)
            ud_buf_printf(&b, "updraft_http_requests_total{code=\"%u\"} %" PRIu64 "\n", code, n);
    }
    if (b.oom) {
        ud_buf_free(&b);
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    }
    enum MHD_Result ret =
        http_queue(h, c, MHD_HTTP_OK, http_mem_response(b.p, b.len), PROM_TYPE, NULL);
    ud_buf_free(&b);
    return ret;
}

/* ------------------------------------------------------------------ POST handlers */

/* Runs sql with binds given by types, one argument each: 's' text, 'i' int64_t, 'N' int64_t
 * bound as NULL when 0, 'b' a blob (pointer, size_t), 'd' double. */
int http_exec(sqlite3 *db, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        switch (types[i]) {
        case 's':
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
            break;
        case 'i':
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
            break;
        case 'N': {
            int64_t v = va_arg(ap, int64_t);
            if (v)
                sqlite3_bind_int64(st, i + 1, v);
            else
                sqlite3_bind_null(st, i + 1);
            break;
        }
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            sqlite3_bind_blob(st, i + 1, p, (int)n, SQLITE_TRANSIENT);
            break;
        }
        default: /* 'd' */
            sqlite3_bind_double(st, i + 1, va_arg(ap, double));
        }
    }
    va_end(ap);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

enum MHD_Result http_db_fail(struct coord_http *h, struct MHD_Connection *c, sqlite3 *db,
                             const char *what)
{
    struct ud_err e = {0};
    int busy = (sqlite3_errcode(db) & 0xff) == SQLITE_BUSY;
    coord_db_err(db, &e, what);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return http_reply_error(
        h, c, busy ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", e.msg);
}

static enum MHD_Result post_job(struct coord_http *h, struct MHD_Connection *c,
                                const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    struct coord_spec s;
    struct ud_err e = {0};
    int rc = coord_spec_parse(q->body ? q->body : "", q->len, &s, &e);
    if (rc == UD_ELIMIT)
        return http_reply_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "%s", e.msg);
    if (rc == UD_ENOMEM)
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", e.msg);
    if (rc)
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST, "%s", e.msg);
    if (coord_spec_check_paths(&s, &e) != 0) {
        coord_spec_deinit(&s);
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST, "%s", e.msg);
    }
    if (!http_db_rw(h, &e)) {
        coord_spec_deinit(&s);
        return http_reply_db_error(h, c, &e);
    }
    enum MHD_Result ret;
    double now = ud_clock_wall();
    char id[32], session[4096 + 64], msg[256];
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(t->rw, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        ret = http_db_fail(h, c, t->rw, "begin");
        goto out;
    }
    int64_t seq = 0;
    if (sqlite3_prepare_v2(t->rw, "SELECT coalesce(max(seq), 0) + 1 FROM jobs", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (seq <= 0) {
        ret = http_db_fail(h, c, t->rw, "next job number");
        goto out;
    }
    snprintf(id, sizeof id, "job-%06" PRId64, seq);
    if (s.session)
        snprintf(session, sizeof session, "%s", s.session);
    else
        snprintf(session, sizeof session, "%s/jobs/%s/session", h->state_abs, id);
    rc = http_exec(t->rw,
                   "INSERT INTO jobs (id, seq, name, state, spec, np, launch, created, updated,"
                   " epochs, cancel_requested, restarts, session)"
                   " VALUES (?1, ?2, ?3, 'PENDING', ?4, ?5, ?6, ?7, ?7, ?8, 0, 0, ?9)",
                   "sissNidis", id, seq, s.name, s.canonical, (int64_t)s.np,
                   (int64_t)(s.np > 0 ? s.scheduler : 0), now, (int64_t)s.epochs, session);
    if (rc != SQLITE_OK) {
        ret = http_db_fail(h, c, t->rw, "insert job");
        goto out;
    }
    if (s.np > 0)
        snprintf(msg, sizeof msg, "submitted over REST: model '%s', launch np %d%s", s.name, s.np,
                 s.scheduler == COORD_SCHED_SLURM ? " through Slurm" : "");
    else
        snprintf(msg, sizeof msg, "submitted over REST: model '%s', waiting for workers", s.name);
    if (http_exec(t->rw,
                  "INSERT INTO events (job, time, kind, message) VALUES (?1, ?2, 'submitted', ?3)",
                  "sds", id, now, msg) != SQLITE_OK ||
        sqlite3_exec(t->rw, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ret = http_db_fail(h, c, t->rw, "insert job");
        goto out;
    }
    struct ud_buf b = {0};
    char url[64];
    snprintf(url, sizeof url, "/v1/jobs/%s", id);
    ud_buf_printf(&b, "{\"id\":\"%s\",\"state\":\"PENDING\",\"url\":\"%s\"}", id, url);
    ret = http_reply_created(h, c, &b, url);
out:
    coord_spec_deinit(&s);
    return ret;
}

static enum MHD_Result post_cancel(struct coord_http *h, struct MHD_Connection *c,
                                   const struct coord_call *q)
{
    struct coord_http_thread *t = q->t;
    const char *id = q->arg[0];
    struct ud_err e = {0};
    if (!http_db_rw(h, &e))
        return http_reply_db_error(h, c, &e);
    if (sqlite3_exec(t->rw, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, t->rw, "begin");
    sqlite3_stmt *st = NULL;
    char state[16] = "";
    int rc = sqlite3_prepare_v2(t->rw, "SELECT state FROM jobs WHERE id = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return http_db_fail(h, c, t->rw, "read job");
    if (rc == SQLITE_DONE) {
        sqlite3_exec(t->rw, "ROLLBACK", NULL, NULL, NULL);
        return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no job '%.128s'", id);
    }
    if (coord_job_state_terminal(state)) {
        sqlite3_exec(t->rw, "ROLLBACK", NULL, NULL, NULL);
        return http_reply_error(h, c, MHD_HTTP_CONFLICT, "job '%.128s' is already %s", id, state);
    }
    double now = ud_clock_wall();
    /* No workers to tell: a PENDING job (none registered) and a RESTARTING one (they are
     * gone) end at once; a RUNNING one stops at its next step after a checkpoint. */
    int direct = strcmp(state, "PENDING") == 0 || strcmp(state, "RESTARTING") == 0;
    if (direct)
        rc = http_exec(t->rw,
                       "UPDATE jobs SET state = 'CANCELLED', cancel_requested = 1, updated = ?2,"
                       " finished = ?2, message = ?3 WHERE id = ?1",
                       "sds", id, now, "cancelled by request before its workers ran");
    else
        rc = http_exec(t->rw, "UPDATE jobs SET cancel_requested = 1, updated = ?2 WHERE id = ?1",
                       "sd", id, now);
    if (rc == SQLITE_OK)
        rc = http_exec(
            t->rw, "INSERT INTO events (job, time, kind, message) VALUES (?1, ?2, 'cancel', ?3)",
            "sds", id, now,
            direct ? "cancel requested over REST: cancelled"
                   : "cancel requested over REST: the workers stop at their next step");
    if (rc != SQLITE_OK || sqlite3_exec(t->rw, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, t->rw, "cancel job");
    struct ud_buf b = {0};
    ud_buf_puts(&b, "{\"id\":");
    ud_json_str_buf(&b, id);
    ud_buf_printf(&b, ",\"state\":\"%s\",\"cancel_requested\":true}", direct ? "CANCELLED" : state);
    return http_reply_json(h, c, MHD_HTTP_ACCEPTED, &b);
}

/* ------------------------------------------------------------------ routing */

static enum MHD_Result get_healthz(struct coord_http *h, struct MHD_Connection *c,
                                   const struct coord_call *q);

/* The REST API, one row a route (docs/rest.md lists the same; test_coord_http checks it). */
static const struct coord_route ROUTES[] = {
    {"GET", "/healthz", get_healthz, 0, COORD_WHO_ANYONE, 0, NULL},
    {"GET", "/metrics", get_prometheus, 0, COORD_WHO_READER, 0, NULL},
    {"GET", "/v1/status", get_status, 0, COORD_WHO_READER, 0, NULL},
    /* jobs */
    {"GET", "/v1/jobs", get_jobs, 0, COORD_WHO_READER, 0, NULL},
    {"POST", "/v1/jobs", post_job, UD_LIMIT_JOB_SPEC_BYTES, COORD_WHO_ADMIN, 0, NULL},
    {"GET", "/v1/jobs/{id}", get_job, 0, COORD_WHO_READER, 0, NULL},
    {"GET", "/v1/jobs/{id}/metrics", get_job_metrics, 0, COORD_WHO_READER, 0, NULL},
    {"POST", "/v1/jobs/{id}/cancel", post_cancel, UD_LIMIT_JOB_SPEC_BYTES, COORD_WHO_ADMIN, 0,
     NULL},
    /* the model registry */
    {"GET", "/v1/models", get_models, 0, COORD_WHO_READER, 0, NULL},
    {"GET", "/v1/models/{name}/versions", get_model_versions, 0, COORD_WHO_READER, 0, NULL},
    {"POST", "/v1/models/{name}/versions", fed_post_model, UD_LIMIT_MODEL_PUSH_BYTES,
     COORD_WHO_ADMIN, 1, NULL},
    {"GET", "/v1/models/{name}/versions/{v}", get_model_version, 0, COORD_WHO_READER, 0, NULL},
    {"GET", "/v1/models/{name}/versions/{v}/file", get_model_file, 0,
     COORD_WHO_READER_OR_TASK_MODEL, 0, NULL},
    /* devices (coord_fed_http.c) */
    {"GET", "/v1/devices", fed_get_devices, 0, COORD_WHO_READER, 0, NULL},
    {"POST", "/v1/devices", fed_post_devices, UD_LIMIT_SMALL_BODY_BYTES, COORD_WHO_ADMIN, 1, NULL},
    {"GET", "/v1/devices/{id}", fed_get_device, 0, COORD_WHO_READER, 0, NULL},
    {"GET", "/v1/devices/{id}/task", fed_get_task, 0, COORD_WHO_DEVICE, 0, NULL},
    {"POST", "/v1/devices/{id}/revoke", fed_post_revoke, UD_LIMIT_SMALL_BODY_BYTES, COORD_WHO_ADMIN,
     1, NULL},
    /* federations and their rounds (coord_fed_http.c) */
    {"GET", "/v1/federations", fed_get_federations, 0, COORD_WHO_READER, 0, NULL},
    {"POST", "/v1/federations", fed_post_federation, UD_LIMIT_FED_SPEC_BYTES, COORD_WHO_ADMIN, 1,
     NULL},
    {"GET", "/v1/federations/{id}", fed_get_federations, 0, COORD_WHO_READER, 0, NULL},
    {"POST", "/v1/federations/{id}/cancel", fed_post_cancel, UD_LIMIT_SMALL_BODY_BYTES,
     COORD_WHO_ADMIN, 1, NULL},
    {"GET", "/v1/rounds/{id}", fed_get_round, 0, COORD_WHO_READER, 0, NULL},
    {"POST", "/v1/rounds/{id}/updates", fed_post_update, UD_LIMIT_UPDATE_BYTES, COORD_WHO_DEVICE, 0,
     fed_update_cap},
    {"POST", "/v1/rounds/{id}/failures", fed_post_failure, UD_LIMIT_SMALL_BODY_BYTES,
     COORD_WHO_DEVICE, 0, NULL},
};
#define N_ROUTES (sizeof ROUTES / sizeof *ROUTES)

const struct coord_route *coord_http_routes(size_t *n)
{
    *n = N_ROUTES;
    return ROUTES;
}

/* A POST being received. */
struct req {
    const struct coord_route *route;
    struct coord_call q; /* its arg[] point into url */
    char url[MAX_URL];   /* the path, split */
    size_t cap;          /* the body limit */
    struct ud_buf body;
    size_t seen; /* body bytes received */
    int too_big;
};

/* Splits url (copied into buf) into segs; returns their count, or -1 when it cannot name
 * anything we serve (too long, too many or empty segments). */
static int split_url(const char *url, char *buf, size_t n, char **segs)
{
    size_t len = strlen(url);
    if (len >= n || url[0] != '/')
        return -1;
    memcpy(buf, url + 1, len);
    if (!buf[0])
        return 0;
    int k = 0;
    for (char *p = buf;;) {
        if (k == MAX_SEGS)
            return -1;
        segs[k++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    for (int i = 0; i < k; i++)
        if (!segs[i][0])
            return -1;
    return k;
}

/* Does pattern match the k segments? Sets arg[] to the {...} ones. */
static int pattern_match(const char *pattern, int k, char **segs, const char **arg)
{
    const char *p = pattern;
    int nargs = 0;
    for (int i = 0; i < k; i++) {
        if (*p++ != '/')
            return 0;
        size_t n = strcspn(p, "/");
        if (*p == '{') {
            if (nargs == COORD_ROUTE_ARGS)
                return 0;
            arg[nargs++] = segs[i];
        } else if (strlen(segs[i]) != n || memcmp(segs[i], p, n) != 0) {
            return 0;
        }
        p += n;
    }
    return *p == '\0';
}

static int is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* The row for the path and method, with q->arg set; NULL when there is none, *allow then
 * saying the methods the path takes ("" for an unknown path), as an Allow header does. */
static const struct coord_route *route_find(const char *url, char *buf, const char *method,
                                            struct coord_call *q, const char **allow)
{
    char *segs[MAX_SEGS];
    int k = split_url(url, buf, MAX_URL, segs), get = 0, post = 0;
    for (size_t i = 0; k >= 0 && i < N_ROUTES; i++) {
        const struct coord_route *rt = &ROUTES[i];
        const char *arg[COORD_ROUTE_ARGS] = {NULL};
        if (!pattern_match(rt->pattern, k, segs, arg))
            continue;
        int rt_get = strcmp(rt->method, MHD_HTTP_METHOD_GET) == 0;
        if (rt_get ? is_get(method) : strcmp(rt->method, method) == 0) {
            memcpy(q->arg, arg, sizeof arg);
            return rt;
        }
        get |= rt_get;
        post |= !rt_get;
    }
    *allow = get && post ? "GET, HEAD, POST" : get ? "GET, HEAD" : post ? "POST" : "";
    return NULL;
}

/* Runs the row's handler (under the write lock when the row says so). */
static enum MHD_Result route_call(struct coord_http *h, struct MHD_Connection *c,
                                  const struct coord_route *rt, struct coord_call *q)
{
    if (!(q->t = tls_get(h)))
        return MHD_NO;
    if (rt->serial)
        pthread_mutex_lock(&http_write_lock);
    enum MHD_Result ret = rt->handler(h, c, q);
    if (rt->serial)
        pthread_mutex_unlock(&http_write_lock);
    return ret;
}

/* Which operator token a request carries (bearer_role). */
enum { BEARER_NONE, BEARER_READER, BEARER_ADMIN };
static int bearer_role(const struct coord_http *h, struct MHD_Connection *c);

/* A read (COORD_WHO_READER, COORD_WHO_READER_OR_TASK_MODEL): 0 when the request may go on
 * (the reader or admin token; a device's own task model, its id into q), else 1 with 401 (no
 * token we know) or 403 (a device's token where devices may not read) queued in *ret. */
static int read_refuse(struct coord_http *h, struct MHD_Connection *c, const struct coord_route *rt,
                       struct coord_call *q, enum MHD_Result *ret)
{
    if (http_reader_authorized(h, c))
        return 0;
    int64_t dev = fed_device_auth(h, c);
    if (!dev) {
        *ret = http_reply_error_h(
            h, c, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
            "Bearer realm=\"updraft\"",
            "this call needs the reader or the admin token: Authorization: Bearer TOKEN");
        return 1;
    }
    if (rt->who == COORD_WHO_READER_OR_TASK_MODEL &&
        fed_device_task_model(h, dev, q->arg[0], q->arg[1])) {
        q->device = dev;
        return 0;
    }
    *ret = http_reply_error(
        h, c, MHD_HTTP_FORBIDDEN, "%s",
        rt->who == COORD_WHO_READER_OR_TASK_MODEL
            ? "a device may read only the model version of its own open task (GET "
              "/v1/devices/ID/task says which)"
            : "a device's token cannot read this: it needs the reader or the admin token");
    return 1;
}

/* 401 (or 403) unless the request carries what the row's "who" asks for (a device's id into
 * q). */
static int route_refuse(struct coord_http *h, struct MHD_Connection *c,
                        const struct coord_route *rt, struct coord_call *q, enum MHD_Result *ret)
{
    if (rt->who == COORD_WHO_READER || rt->who == COORD_WHO_READER_OR_TASK_MODEL)
        return read_refuse(h, c, rt, q, ret);
    int role = rt->who == COORD_WHO_ADMIN ? bearer_role(h, c) : BEARER_ADMIN;
    if (role == BEARER_READER) {
        *ret = http_reply_error(h, c, MHD_HTTP_FORBIDDEN,
                                "the reader token only reads: this call needs the admin token");
        return 1;
    }
    if (role == BEARER_NONE) {
        *ret = http_reply_error_h(h, c, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                  "Bearer realm=\"updraft\"",
                                  "this call needs the admin token: Authorization: Bearer TOKEN");
        return 1;
    }
    if (rt->who == COORD_WHO_DEVICE && !(q->device = fed_device_auth(h, c))) {
        *ret = http_reply_error_h(
            h, c, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
            "Bearer realm=\"updraft-device\"",
            "this call needs the device's token: Authorization: Bearer ID.SECRET");
        return 1;
    }
    return 0;
}

/* A POST's first call: refuses a Content-Length over the limit, else starts receiving. */
static enum MHD_Result post_begin(struct coord_http *h, struct MHD_Connection *c,
                                  const struct coord_route *rt, struct coord_call *q,
                                  const char *buf, void **con_cls)
{
    size_t cap = rt->body_cap ? rt->body_cap(h, q) : rt->body_max;
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t clen = -1;
    if (cl && http_parse_i64(cl, &clen) == 0 && (uint64_t)clen > cap) {
        if (!rt->body_cap)
            return http_reply_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE,
                                    "request body of %" PRId64 " bytes is over the limit of %zu",
                                    clen, cap);
        q->too_big = 1;
        return route_call(h, c, rt, q);
    }
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return MHD_NO;
    r->route = rt;
    r->q = *q;
    memcpy(r->url, buf, MAX_URL);
    for (int i = 0; i < COORD_ROUTE_ARGS; i++)
        if (q->arg[i])
            r->q.arg[i] = r->url + (q->arg[i] - buf);
    r->cap = cap;
    if (clen > 0) /* one allocation for the body */
        ud_buf_reserve(&r->body, (size_t)clen);
    *con_cls = r;
    return MHD_YES;
}

/* A POST's later calls: more body (kept up to the limit, counted past it), or its end. */
static enum MHD_Result post_more(struct coord_http *h, struct MHD_Connection *c, struct req *r,
                                 const char *data, size_t *size)
{
    if (*size) {
        size_t n = *size;
        *size = 0;
        r->seen += n;
        if (r->too_big || r->seen > r->cap) { /* count it, keep none of it */
            r->too_big = 1;
            ud_buf_free(&r->body);
            return r->seen > r->cap + DISCARD_CAP ? MHD_NO : MHD_YES;
        }
        ud_buf_put(&r->body, data, n);
        return r->body.oom ? MHD_NO : MHD_YES;
    }
    if (r->too_big && !r->route->body_cap)
        return http_reply_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE,
                                "request body over the limit of %zu bytes", r->cap);
    r->q.body = r->body.p;
    r->q.len = r->body.len;
    r->q.too_big = r->too_big;
    return route_call(h, c, r->route, &r->q);
}

/* Which of the two tokens the request carries: BEARER_ADMIN, BEARER_READER or BEARER_NONE.
 * Digests are compared in constant time: neither the content nor the length leaks. */
static int bearer_role(const struct coord_http *h, struct MHD_Connection *c)
{
    size_t n;
    const char *a = http_bearer(c, &n);
    if (!a)
        return 0;
    unsigned char d[crypto_generichash_BYTES];
    crypto_generichash(d, sizeof d, (const unsigned char *)a, n, NULL, 0);
    int admin = h->have_token && sodium_memcmp(d, h->token_hash, sizeof d) == 0;
    int reader = h->have_reader && sodium_memcmp(d, h->reader_hash, sizeof d) == 0;
    return admin ? BEARER_ADMIN : reader ? BEARER_READER : BEARER_NONE;
}

int http_reader_authorized(const struct coord_http *h, struct MHD_Connection *c)
{
    return bearer_role(h, c) != BEARER_NONE;
}

const char *http_bearer(struct MHD_Connection *c, size_t *n)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return NULL;
    a += 7;
    while (*a == ' ')
        a++;
    *n = strlen(a);
    while (*n && (a[*n - 1] == ' ' || a[*n - 1] == '\t'))
        (*n)--;
    return a;
}

static const char HEALTHZ_BODY[] = "{\"status\":\"ok\"}\n";
static char NOT_POST; /* *con_cls of a request that is not a POST, until its last call */

static enum MHD_Result get_healthz(struct coord_http *h, struct MHD_Connection *c,
                                   const struct coord_call *q)
{
    return http_queue(h, c, MHD_HTTP_OK,
                      MHD_create_response_from_buffer(sizeof HEALTHZ_BODY - 1, (void *)HEALTHZ_BODY,
                                                      MHD_RESPMEM_PERSISTENT),
                      JSON_TYPE, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct coord_http *h = cls;
    /* Everything but a POST is answered on the second call, once the request is complete:
     * answering on the first makes libmicrohttpd close the connection (no keep-alive). */
    if (!*con_cls && strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
        *con_cls = &NOT_POST;
        return MHD_YES;
    }
    if (*con_cls == &NOT_POST) {
        if (*upload_data_size) { /* a body nobody asked for */
            *upload_data_size = 0;
            return MHD_YES;
        }
        *con_cls = NULL;
    }
    if (*con_cls) /* a POST in progress: more body, or its end */
        return post_more(h, c, *con_cls, upload_data, upload_data_size);

    char buf[MAX_URL];
    const char *allow = "";
    struct coord_call q = {.method = method};
    const struct coord_route *rt = route_find(url, buf, method, &q, &allow);
    if (!rt && !allow[0])
        return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no such resource: %.200s", url);
    if (!rt)
        return http_reply_error_h(h, c, MHD_HTTP_METHOD_NOT_ALLOWED, MHD_HTTP_HEADER_ALLOW, allow,
                                  "%.16s is not allowed here (use %s)", method, allow);
    enum MHD_Result ret;
    if (route_refuse(h, c, rt, &q, &ret))
        return ret;
    if (strcmp(rt->method, MHD_HTTP_METHOD_POST) == 0)
        return post_begin(h, c, rt, &q, buf, con_cls);
    return route_call(h, c, rt, &q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *r = *con_cls;
    if (r && *con_cls != (void *)&NOT_POST) {
        ud_buf_free(&r->body);
        free(r);
        *con_cls = NULL;
    }
}

/* ------------------------------------------------------------------ start and stop */

/* "HOST:PORT" ("[v6]:PORT" too) into a socket address. */
static int resolve(const char *listen, struct sockaddr_storage *ss, socklen_t *sl, struct ud_err *e)
{
    char host[256];
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
        return ud_err_set(e, UD_EINVAL, "--http '%s': expected HOST:PORT, e.g. 127.0.0.1:8470",
                          listen ? listen : "");
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *hp = host;
    size_t hl = strlen(hp);
    if (hp[0] == '[' && hl > 2 && hp[hl - 1] == ']') {
        hp[hl - 1] = '\0';
        hp++;
    }
    int64_t port;
    if (http_parse_i64(colon + 1, &port) != 0 || port < 0 || port > 65535)
        return ud_err_set(e, UD_EINVAL, "--http '%s': the port must be 0..65535", listen);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(strcmp(hp, "*") == 0 ? "0.0.0.0" : hp, colon + 1, &hints, &ai);
    if (rc != 0 || !ai)
        return ud_err_set(e, UD_EINVAL, "--http '%s': cannot resolve '%s': %s", listen, hp,
                          gai_strerror(rc));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sl = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

coord_http_t *coord_http_start(const struct coord_http_config *cfg, struct ud_err *e)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (!cfg || !cfg->state_dir) {
        ud_err_set(e, UD_EINVAL, "coord_http_start: no state directory");
        return NULL;
    }
    if (resolve(cfg->listen, &ss, &sl, e) != 0)
        return NULL;
    if (sodium_init() < 0) {
        ud_err_set(e, UD_EINTERNAL, "libsodium failed to initialise");
        return NULL;
    }
    coord_http_t *h = calloc(1, sizeof *h);
    if (!h) {
        ud_err_set(e, UD_ENOMEM, "coord_http_start: out of memory");
        return NULL;
    }
    char abs[PATH_MAX];
    h->state_dir = strdup(cfg->state_dir);
    h->state_abs = strdup(realpath(cfg->state_dir, abs) ? abs : cfg->state_dir);
    h->heartbeat_timeout = cfg->heartbeat_timeout > 0 ? cfg->heartbeat_timeout : 10.0;
    h->started = cfg->started > 0 ? cfg->started : ud_clock_wall();
    h->keys = cfg->keys;
    if (cfg->admin_token && cfg->admin_token[0]) {
        crypto_generichash(h->token_hash, sizeof h->token_hash,
                           (const unsigned char *)cfg->admin_token, strlen(cfg->admin_token), NULL,
                           0);
        h->have_token = 1;
    }
    if (cfg->reader_token && cfg->reader_token[0]) {
        crypto_generichash(h->reader_hash, sizeof h->reader_hash,
                           (const unsigned char *)cfg->reader_token, strlen(cfg->reader_token),
                           NULL, 0);
        h->have_reader = 1;
    }
    if (!h->state_dir || !h->state_abs) {
        ud_err_set(e, UD_ENOMEM, "coord_http_start: out of memory");
        goto out_free;
    }
    if (pthread_key_create(&h->key, tls_free) != 0) {
        ud_err_set(e, UD_EINTERNAL, "coord_http_start: no thread-specific key left");
        goto out_free;
    }
    h->key_made = 1;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TURBO;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned threads = cfg->threads > 0 ? (unsigned)cfg->threads : 2;
    /* HTTPS: the same options, and the certificate and key as the first two (with no TLS they
     * are MHD_OPTION_ARRAY entries that end the list at once: nothing extra is passed). */
    int tls = cfg->tls_cert_pem && cfg->tls_key_pem;
    if (tls)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls_opts[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cfg->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, tls_opts,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)CONN_TIMEOUT_S, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    if (!h->d) {
        /* libmicrohttpd does not say why: bind a probe socket to find out. */
        int err = 0, fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) != 0)
            err = errno;
        if (fd >= 0)
            close(fd);
        ud_err_set(e, UD_ENET, "--http %s: cannot serve: %s", cfg->listen,
                   err   ? strerror(err)
                   : tls ? "libmicrohttpd refused to start HTTPS (GnuTLS refused the certificate?)"
                         : "libmicrohttpd refused to start");
        goto out_free;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &bl) == 0)
        h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    return h;

out_free:
    if (h->key_made)
        pthread_key_delete(h->key);
    free(h->state_dir);
    free(h->state_abs);
    free(h);
    return NULL;
}

int coord_http_port(const coord_http_t *h)
{
    return h ? h->port : 0;
}

void coord_http_stop(coord_http_t **hp)
{
    if (!hp || !*hp)
        return;
    coord_http_t *h = *hp;
    if (h->d)
        MHD_stop_daemon(h->d); /* joins the threads: their tls_free runs */
    if (h->key_made)
        pthread_key_delete(h->key);
    free(h->state_dir);
    free(h->state_abs);
    free(h);
    *hp = NULL;
}

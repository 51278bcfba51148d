/*  coord_http_impl.h — what coord_http.c shares with the handlers of coord_fed_http.c: the
 *  JSON writers, the reply helpers, the token checks, this thread's database connections and
 *  the route table (struct coord_route; its rows are in coord_http.c). Private to the REST
 *  server: its functions are http_*, the handlers of coord_fed_http.c fed_*.
 */
#ifndef COORD_HTTP_IMPL_H
#define COORD_HTTP_IMPL_H

#include <microhttpd.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "coord_http.h"
#include "updraft/ud_buf.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_error.h"
#include "updraft/ud_jsonw.h"

#define JSON_TYPE "application/json"

/* JSON into a struct ud_buf (ud_buf.h); strings go through ud_json_str_buf (ud_jsonw.h).
 * A number that reads back exactly; NaN/inf: null. */
void http_json_num(struct ud_buf *b, double v);
/* Column i of st as a JSON value. */
void http_json_col(struct ud_buf *b, sqlite3_stmt *st, int i);
/* "name":value pairs for st's columns from col ("!name": a boolean column, "@name": stored
 * JSON text). */
void http_json_cols(struct ud_buf *b, sqlite3_stmt *st, int col, const char *names);
/* Steps st to its end appending a JSON array of objects; returns SQLite's last code. */
int http_json_rows(struct ud_buf *b, sqlite3_stmt *st, const char *names, int *count);

/* A whole decimal number, nothing else: 0, or -1. */
int http_parse_i64(const char *s, int64_t *out);

/* Queues a response (takes it over); extra headers as name, value pairs ending in NULL. */
enum MHD_Result http_queue(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                           struct MHD_Response *r, const char *ctype, ...);
struct MHD_Response *http_mem_response(const char *body, size_t len);
/* {"error":{"status":code,"message":...}} with one extra header (hname NULL: none) and a
 * machine-readable reason (NULL: none), added as "reason" inside "error" and beside it. */
enum MHD_Result http_reply_errorf(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                  const char *hname, const char *hvalue, const char *reason,
                                  const char *fmt, ...) __attribute__((format(printf, 7, 8)));
#define http_reply_error(h, c, code, ...)                                                          \
    http_reply_errorf(h, c, code, NULL, NULL, NULL, __VA_ARGS__)
#define http_reply_error_h(h, c, code, hname, hvalue, ...)                                         \
    http_reply_errorf(h, c, code, hname, hvalue, NULL, __VA_ARGS__)
#define http_reply_reason(h, c, code, reason, ...)                                                 \
    http_reply_errorf(h, c, code, NULL, NULL, reason, __VA_ARGS__)
/* 503: the database is busy or missing. */
enum MHD_Result http_reply_db_error(struct coord_http *h, struct MHD_Connection *c,
                                    const struct ud_err *e);
/* Sends b (a JSON document; a newline is added) with code and frees it. */
enum MHD_Result http_reply_json(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                struct ud_buf *b);
/* The same with 201 and a Location header. */
enum MHD_Result http_reply_created(struct coord_http *h, struct MHD_Connection *c, struct ud_buf *b,
                                   const char *location);
/* Does it carry the reader token or the admin token (constant-time compares)? */
int http_reader_authorized(const struct coord_http *h, struct MHD_Connection *c);
/* The request's bearer token (after "Bearer ", spaces trimmed) and its length in *n; NULL when
 * there is none. Borrowed from the connection. */
const char *http_bearer(struct MHD_Connection *c, size_t *n);

/* The REST threads' writes take turns here instead of in SQLite's busy handler, which sleeps
 * in steps of up to 100 ms when connections of one process contend for the write lock.
 * Recursive: a refusal counted inside an upload's transaction takes it again. */
extern pthread_mutex_t http_write_lock;

/* Runs one SQL statement with binds given by types, one argument each: 's' text, 'i' int64_t,
 * 'N' int64_t bound as NULL when 0, 'b' a blob (const void *, size_t), 'd' double. Returns
 * SQLITE_OK or SQLite's error code. */
int http_exec(sqlite3 *db, const char *sql, const char *types, ...);
/* A failed write on db: rolls back, then 503 when the database was busy, else 500. */
enum MHD_Result http_db_fail(struct coord_http *h, struct MHD_Connection *c, sqlite3 *db,
                             const char *what);

/* This thread's read-only / read-write connection, opened on first use; NULL with e set. */
sqlite3 *http_db_ro(struct coord_http *h, struct ud_err *e);
/* A GET handler's statement, prepared on this thread's read-only connection: NULL when the
 * database cannot be opened (503) or sql not prepared (500, naming what), with *ret the reply
 * already queued. The caller finalizes the statement; sqlite3_db_handle(st) is the connection. */
sqlite3_stmt *http_select(struct coord_http *h, struct MHD_Connection *c, const char *sql,
                          const char *what, enum MHD_Result *ret);
sqlite3 *http_db_rw(struct coord_http *h, struct ud_err *e);
/* The state directory (as given, and absolute). */
const char *http_state_dir(const struct coord_http *h);
const struct coord_model_keys *http_keys(const struct coord_http *h);

/* ---- the route table (coord_http.c), docs/rest.md lists the same routes ---- */

/* Who may call a route: anyone; the reader or the admin token holder (else 401, realm
 * "updraft", or 403 when the token is a device's); the admin token holder (else 401, realm
 * "updraft"); an enrolled, unrevoked device (else 401, realm "updraft-device"); or the
 * model-file rule: the reader or admin token, or a device whose open task's base version is
 * the {name}/{v} asked for (any other device: 403). */
enum coord_who {
    COORD_WHO_ANYONE,
    COORD_WHO_READER,
    COORD_WHO_ADMIN,
    COORD_WHO_DEVICE,
    COORD_WHO_READER_OR_TASK_MODEL,
};

#define COORD_ROUTE_ARGS 2 /* {...} segments in a pattern, at most */

/* One request as a handler sees it. */
struct coord_call {
    struct coord_http_thread *t;       /* this thread's state (coord_http.c's) */
    const char *method;                /* "GET", "HEAD" or "POST" */
    const char *arg[COORD_ROUTE_ARGS]; /* the path's {...} segments in order; NULL past them */
    int64_t device;   /* COORD_WHO_DEVICE (and a device on the model-file rule): the caller's id */
    const char *body; /* POST: the body (NULL when empty) */
    size_t len;
    int too_big; /* the body went over the row's body_cap and was dropped (body_cap rows only) */
};

typedef enum MHD_Result coord_route_fn(struct coord_http *h, struct MHD_Connection *c,
                                       const struct coord_call *q);

/* One row of the REST API: the router answers 404 (no pattern matches the path), 405 with an
 * Allow header (the path's rows take other methods), 401 (who) and 413 (body_max) from these
 * rows alone, then calls the handler. */
struct coord_route {
    const char *method;  /* "GET" (answers HEAD too) or "POST" */
    const char *pattern; /* "/v1/rounds/{id}/updates": a {...} segment matches any one segment */
    coord_route_fn *handler;
    size_t body_max; /* POST: the largest body (ud_limits.h), 413 past it; GET: 0 */
    enum coord_who who;
    int serial; /* 1: the handler runs holding http_write_lock */
    /* NULL, or this request's own limit (at most body_max): a body over it reaches the handler
     * with too_big set, and the handler answers (a 413 that says more). */
    size_t (*body_cap)(struct coord_http *h, const struct coord_call *q);
};

/* The route table, read-only, in its *n rows. */
const struct coord_route *coord_http_routes(size_t *n);

/* ---- coord_fed_http.c: devices, federations, rounds, model uploads ---- */

/* The device whose token the request carries: its id (> 0), 0 when the token is missing, wrong
 * or revoked. */
int64_t fed_device_auth(struct coord_http *h, struct MHD_Connection *c);
/* Is version v (a whole number) of model name the base version of an open task of device
 * dev (a participant of an OPEN round of a RUNNING federation that has neither uploaded nor
 * reported a failure)? 1 yes, 0 no (or the database could not say). */
int fed_device_task_model(struct coord_http *h, int64_t dev, const char *name, const char *v);
/* POST /v1/rounds/{id}/updates: the round's own limit (its delta's bytes and some slack). */
size_t fed_update_cap(struct coord_http *h, const struct coord_call *q);

coord_route_fn fed_post_model, fed_post_devices, fed_get_devices, fed_get_device, fed_post_revoke,
    fed_get_task, fed_post_federation, fed_get_federations, fed_post_cancel, fed_get_round,
    fed_post_update, fed_post_failure;

#endif

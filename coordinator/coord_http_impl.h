/*  coord_http_impl.h — what coord_http.c shares with the modules that add routes to the REST
 *  server (coord_fed_http.c): the response buffer and JSON writer, the reply helpers, the
 *  admin check and this thread's database connections. Private to the coordinator.
 */
#ifndef COORD_HTTP_IMPL_H
#define COORD_HTTP_IMPL_H

#include <microhttpd.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "coord_http.h"
#include "updraft/ud_error.h"

#define JSON_TYPE "application/json"

/* A growable buffer; oom set on the first failed allocation (later writes are dropped). */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};
void sb_put(struct sbuf *b, const char *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(struct sbuf *b);
/* s as a JSON string (escaped; bytes that are not UTF-8 become U+FFFD; NULL: null). */
void sb_json_str(struct sbuf *b, const char *s);
/* A number that reads back exactly; NaN/inf: null. */
void sb_json_num(struct sbuf *b, double v);
/* Column i of st as a JSON value. */
void sb_col(struct sbuf *b, sqlite3_stmt *st, int i);
/* "name":value pairs for st's columns from col ("!name": a boolean column, "@name": stored
 * JSON text). */
void sb_cols(struct sbuf *b, sqlite3_stmt *st, int col, const char *names);
/* Steps st to its end appending a JSON array of objects; returns SQLite's last code. */
int sb_rows(struct sbuf *b, sqlite3_stmt *st, const char *names, int *count);

double wall_now(void);
/* A whole decimal number, nothing else: 0, or -1. */
int parse_i64(const char *s, int64_t *out);

/* Queues a response (takes it over); extra headers as name, value pairs ending in NULL. */
enum MHD_Result queue(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                      struct MHD_Response *r, const char *ctype, ...);
struct MHD_Response *mem_response(const char *body, size_t len);
/* {"error":{"status":code,"message":...}} with one extra header (hname NULL: none). */
enum MHD_Result reply_error_h(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                              const char *hname, const char *hvalue, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define reply_error(h, c, code, ...) reply_error_h(h, c, code, NULL, NULL, __VA_ARGS__)
/* The same with the message made, and a machine-readable reason (NULL: none) added as
 * "reason" inside "error" and beside it. */
enum MHD_Result reply_error_msg(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                const char *hname, const char *hvalue, const char *reason,
                                const char *msg);
/* 503: the database is busy or missing. */
enum MHD_Result reply_db_error(struct coord_http *h, struct MHD_Connection *c,
                               const struct ud_err *e);
/* Sends b (a JSON document; a newline is added) with code and frees it. */
enum MHD_Result reply_json(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                           struct sbuf *b);
/* Does the request carry the admin token (constant-time compare)? */
int authorized(const struct coord_http *h, struct MHD_Connection *c);

/* This thread's read-only / read-write connection, opened on first use; NULL with e set. */
sqlite3 *ch_db_ro(struct coord_http *h, struct ud_err *e);
sqlite3 *ch_db_rw(struct coord_http *h, struct ud_err *e);
/* The state directory (as given, and absolute). */
const char *ch_state_dir(const struct coord_http *h);
const struct coord_model_keys *ch_keys(const struct coord_http *h);

/* ---- coord_fed_http.c: devices, federations, rounds, model uploads ---- */

/* Does this path belong to coord_fed_http (segs[0] is "v1")? */
int fed_route(int k, char **segs, const char *method);
/* The largest body a POST to this path may carry; 0 if the method takes none. Called on a
 * request's first call, before any body is read. */
size_t fed_body_cap(struct coord_http *h, int k, char **segs, const char *method);
/* Answers the request once its body (POST) has been read; too_big: the body went over
 * fed_body_cap and was dropped. */
enum MHD_Result fed_serve(struct coord_http *h, struct MHD_Connection *c, const char *method, int k,
                          char **segs, const char *body, size_t len, int too_big);

#endif

/*  coord_fed_http.c — the REST routes of federations (docs/rest.md, "Federations"):
 *
 *    POST /v1/devices                    admin: enrol one device (or {"count": K}) -> tokens
 *    GET  /v1/devices                    list, with last-seen time and updates contributed
 *    GET  /v1/devices/{id}/task          device: the current assignment, or 204
 *    POST /v1/devices/{id}/revoke        admin: the device's token stops working
 *    POST /v1/federations                admin: start one
 *    GET  /v1/federations[/{id}]         state, current round, per-round figures
 *    POST /v1/federations/{id}/cancel    admin
 *    GET  /v1/rounds/{id}                one round
 *    POST /v1/rounds/{id}/updates        device: a delta (msgpack, docs/agent.md)
 *    POST /v1/rounds/{id}/failures       device: it cannot contribute ({"reason": ...})
 *    POST /v1/models/{name}/versions     admin: register a .udm (e.g. a federation's start)
 *
 *  Device tokens are "<id>.<64 hex>"; the database keeps BLAKE2b of the secret and the
 *  comparison is constant-time. An update is checked completely (token, round, selection,
 *  state, base version, idempotency, shape, finiteness, norm) before its delta file is written
 *  and fsynced, and acknowledged only after its row committed; a refusal changes nothing but
 *  the round's rejection counter.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord_db.h"
#include "coord_fed.h"
#include "coord_http_impl.h"
#include "coord_store.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_seal.h"
#include "updraft/ud_udm.h"

#define MODEL_BODY_CAP     UD_LIMIT_MODEL_PUSH_BYTES
#define UPDATE_SLACK       (64u << 10) /* an update's bytes beyond its delta */
#define UPDATE_CAP         UD_LIMIT_UPDATE_BYTES
#define SMALL_BODY_CAP     UD_LIMIT_SMALL_BODY_BYTES
#define MSGPACK_TYPE       "application/msgpack"
#define HTTP_UNPROCESSABLE 422 /* libmicrohttpd renamed its constant across versions */

/* The REST threads' writes take turns here instead of in SQLite's busy handler, which sleeps
 * in steps of up to 100 ms when connections of one process contend for the write lock.
 * Recursive: a refusal counted inside an upload's transaction takes it again. */
static pthread_mutex_t write_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

int fed_route(int k, char **s, const char *method)
{
    if (strcmp(s[1], "devices") == 0 || strcmp(s[1], "federations") == 0 ||
        strcmp(s[1], "rounds") == 0)
        return 1;
    return k == 4 && strcmp(s[1], "models") == 0 && strcmp(s[3], "versions") == 0 &&
           strcmp(method, "POST") == 0;
}

/* ------------------------------------------------------------------ helpers */

static int is_post(const char *m)
{
    return strcmp(m, "POST") == 0;
}

static int is_get(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

static enum MHD_Result not_allowed(struct coord_http *h, struct MHD_Connection *c,
                                   const char *method, const char *allow)
{
    return reply_error_h(h, c, MHD_HTTP_METHOD_NOT_ALLOWED, MHD_HTTP_HEADER_ALLOW, allow,
                         "%.16s is not allowed here (use %s)", method, allow);
}

static enum MHD_Result need_admin(struct coord_http *h, struct MHD_Connection *c)
{
    return reply_error_h(h, c, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                         "Bearer realm=\"updraft\"",
                         "this call needs the admin token: Authorization: Bearer TOKEN");
}

/* A refusal with a machine-readable reason: {"error":{...},"reason":"stale"}. */
static enum MHD_Result reply_reason(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                    const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result reply_reason(struct coord_http *h, struct MHD_Connection *c, unsigned code,
                                    const char *reason, const char *fmt, ...)
{
    char msg[UD_ERRMSG_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return reply_error_msg(h, c, code, NULL, NULL, reason, msg);
}

static int64_t seg_id(const char *s)
{
    int64_t v;
    return parse_i64(s, &v) == 0 && v > 0 ? v : 0;
}

static int rw_exec(sqlite3 *db, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return -1;
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 's')
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else if (types[i] == 'i')
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        else if (types[i] == 'b') {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            sqlite3_bind_blob(st, i + 1, p, (int)n, SQLITE_TRANSIENT);
        } else
            sqlite3_bind_double(st, i + 1, va_arg(ap, double));
    }
    va_end(ap);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static enum MHD_Result db_fail(struct coord_http *h, struct MHD_Connection *c, sqlite3 *db,
                               const char *what)
{
    struct ud_err e = {0};
    int busy = (sqlite3_errcode(db) & 0xff) == SQLITE_BUSY;
    coord_db_err(db, &e, what);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return reply_error(h, c, busy ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR,
                       "%s", e.msg);
}

/* The device a request's bearer token belongs to: its id (> 0), 0 when the token is missing
 * or wrong. Records the call as the device's last sign of life when touch is set. */
static int64_t device_auth(struct coord_http *h, struct MHD_Connection *c, int touch)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return 0;
    a += 7;
    while (*a == ' ')
        a++;
    size_t n = strlen(a);
    while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
        n--;
    int64_t id;
    unsigned char hash[32];
    if (coord_device_token_parse(a, n, &id, hash) != 0)
        return 0;
    struct ud_err e = {0};
    sqlite3 *db = ch_db_ro(h, &e);
    if (!db)
        return 0;
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "SELECT token_hash FROM devices WHERE id = ? AND revoked = 0", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32)
            ok = sodium_memcmp(sqlite3_column_blob(st, 0), hash, 32) == 0;
    }
    sqlite3_finalize(st);
    if (!ok)
        return 0;
    if (touch) {
        sqlite3 *rw = ch_db_rw(h, &e);
        if (rw) {
            pthread_mutex_lock(&write_lock);
            rw_exec(rw, "UPDATE devices SET last_seen = ? WHERE id = ?", "di", wall_now(), id);
            pthread_mutex_unlock(&write_lock);
        }
    }
    return id;
}

static enum MHD_Result bad_token(struct coord_http *h, struct MHD_Connection *c)
{
    return reply_error_h(h, c, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                         "Bearer realm=\"updraft-device\"",
                         "this call needs the device's token: Authorization: Bearer ID.SECRET");
}

/* ------------------------------------------------------------------ devices */

static enum MHD_Result post_devices(struct coord_http *h, struct MHD_Connection *c,
                                    const char *body, size_t len)
{
    char name[COORD_FED_NAME_MAX] = "";
    int64_t count = 0;
    struct ud_err pe = {0};
    if (coord_fed_enrol_parse(body, len, name, &count, &pe) != 0)
        return reply_error(h, c, MHD_HTTP_BAD_REQUEST, "%s", pe.msg);
    struct ud_err e = {0};
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    int64_t k = count ? count : 1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "begin");
    struct sbuf b = {0};
    sb_puts(&b, count ? "{\"devices\":[" : "");
    double now = wall_now();
    for (int64_t i = 0; i < k; i++) {
        unsigned char secret[32], hash[32];
        char hex[65], token[COORD_DEVICE_TOKEN_MAX], dname[COORD_FED_NAME_MAX + 32];
        randombytes_buf(secret, sizeof secret);
        sodium_bin2hex(hex, sizeof hex, secret, sizeof secret);
        sodium_memzero(secret, sizeof secret);
        crypto_generichash(hash, sizeof hash, (const unsigned char *)hex, 64, NULL, 0);
        if (rw_exec(db,
                    "INSERT INTO devices (name, token_hash, created, updates, revoked)"
                    " VALUES ('', ?, ?, 0, 0)",
                    "bd", hash, sizeof hash, now) != 0) {
            sb_free(&b);
            return db_fail(h, c, db, "enrol device");
        }
        int64_t id = sqlite3_last_insert_rowid(db);
        if (count)
            snprintf(dname, sizeof dname, "%s-%" PRId64, name[0] ? name : "device", id);
        else if (name[0])
            snprintf(dname, sizeof dname, "%s", name);
        else
            snprintf(dname, sizeof dname, "device-%" PRId64, id);
        if (rw_exec(db, "UPDATE devices SET name = ? WHERE id = ?", "si", dname, id) != 0) {
            sb_free(&b);
            return db_fail(h, c, db, "enrol device");
        }
        snprintf(token, sizeof token, "%" PRId64 ".%s", id, hex);
        sodium_memzero(hex, sizeof hex);
        sb_printf(&b, "%s{\"id\":%" PRId64 ",\"name\":", i ? "," : "", id);
        sb_json_str(&b, dname);
        sb_puts(&b, ",\"token\":");
        sb_json_str(&b, token);
        sb_puts(&b, "}");
        sodium_memzero(token, sizeof token);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sb_free(&b);
        return db_fail(h, c, db, "enrol device");
    }
    if (count)
        sb_puts(&b, "]}");
    return reply_json(h, c, MHD_HTTP_CREATED, &b);
}

static enum MHD_Result get_devices(struct coord_http *h, struct MHD_Connection *c)
{
    struct ud_err e = {0};
    sqlite3 *db = ch_db_ro(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, name, created, last_seen, updates, revoked FROM devices"
                           " ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "reading devices");
    struct sbuf b = {0};
    int n = 0;
    sb_puts(&b, "{\"devices\":");
    int rc = sb_rows(&b, st, "id name created last_seen updates !revoked", &n);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        sb_free(&b);
        return db_fail(h, c, db, "reading devices");
    }
    sb_printf(&b, ",\"count\":%d}", n);
    return reply_json(h, c, MHD_HTTP_OK, &b);
}

/* POST /v1/devices/{id}/revoke: its token stops working at once (401 on every device call);
 * updates it already sent stay counted. Revoking twice is no error. */
static enum MHD_Result post_revoke(struct coord_http *h, struct MHD_Connection *c, const char *sid)
{
    int64_t id = seg_id(sid);
    struct ud_err e = {0};
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    if (rw_exec(db, "UPDATE devices SET revoked = 1 WHERE id = ?", "i", id) != 0)
        return db_fail(h, c, db, "revoke device");
    if (sqlite3_changes(db) == 0)
        return reply_error(h, c, MHD_HTTP_NOT_FOUND, "no device '%.32s'", sid);
    struct sbuf b = {0};
    sb_printf(&b, "{\"id\":%" PRId64 ",\"revoked\":true}", id);
    return reply_json(h, c, MHD_HTTP_OK, &b);
}

/* GET /v1/devices/{id}/task */
static enum MHD_Result get_task(struct coord_http *h, struct MHD_Connection *c, const char *sid)
{
    int64_t dev = device_auth(h, c, 1);
    if (!dev)
        return bad_token(h, c);
    int64_t want = seg_id(sid);
    if (want != dev)
        return reply_error(h, c, MHD_HTTP_FORBIDDEN,
                           "this token belongs to device %" PRId64 ", not to '%.32s'", dev, sid);
    struct ud_err e = {0};
    sqlite3 *db = ch_db_ro(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT r.id, r.number, r.federation, r.base_version, r.deadline, f.spec, m.sha256,"
            " m.size FROM participants p JOIN rounds r ON r.id = p.round JOIN federations f ON"
            " f.id = r.federation JOIN models m ON m.name = f.model AND m.version ="
            " r.base_version WHERE p.device = ?1 AND r.state = 'OPEN' AND f.state = 'RUNNING'"
            " AND NOT EXISTS (SELECT 1 FROM updates u WHERE u.round = r.id AND u.device = ?1)"
            " AND NOT EXISTS (SELECT 1 FROM failures x WHERE x.round = r.id AND x.device = ?1)"
            " ORDER BY r.id LIMIT 1",
            -1, &st, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "reading tasks");
    sqlite3_bind_int64(st, 1, dev);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return queue(h, c, MHD_HTTP_NO_CONTENT, mem_response("", 0), NULL, NULL);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_fail(h, c, db, "reading tasks");
    }
    int64_t round = sqlite3_column_int64(st, 0), number = sqlite3_column_int64(st, 1),
            fed = sqlite3_column_int64(st, 2), base = sqlite3_column_int64(st, 3);
    double deadline = sqlite3_column_double(st, 4);
    const char *spec_text = (const char *)sqlite3_column_text(st, 5);
    char sha[65];
    snprintf(sha, sizeof sha, "%s", (const char *)sqlite3_column_text(st, 6));
    int64_t size = sqlite3_column_int64(st, 7);
    struct coord_fed_spec s;
    int prc = coord_fed_spec_parse(spec_text, strlen(spec_text), &s, &e);
    sqlite3_finalize(st);
    if (prc)
        return reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "federation %" PRId64 ": %s", fed,
                           e.msg);
    struct sbuf b = {0};
    sb_printf(&b,
              "{\"federation\":%" PRId64 ",\"round\":%" PRId64 ",\"number\":%" PRId64
              ",\"model\":{\"name\":",
              fed, round, number);
    sb_json_str(&b, s.model);
    sb_printf(&b, ",\"version\":%" PRId64 ",\"sha256\":\"%s\",\"size\":%" PRId64 ",\"url\":", base,
              sha, size);
    char url[512];
    snprintf(url, sizeof url, "/v1/models/%s/versions/%" PRId64 "/file", s.model, base);
    sb_json_str(&b, url);
    sb_printf(&b, "},\"epochs\":%" PRId64 ",\"batch\":%" PRId64 ",\"lr\":", s.epochs, s.batch);
    sb_json_num(&b, s.lr);
    sb_puts(&b, ",\"max_norm\":");
    sb_json_num(&b, s.max_norm);
    sb_puts(&b, ",\"deadline\":");
    sb_json_num(&b, deadline);
    sb_printf(&b, ",\"upload\":\"/v1/rounds/%" PRId64 "/updates\"}", round);
    return reply_json(h, c, MHD_HTTP_OK, &b);
}

/* ------------------------------------------------------------------ models */

static enum MHD_Result post_model(struct coord_http *h, struct MHD_Connection *c, const char *name,
                                  const char *body, size_t len)
{
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.') ||
            p - name >= COORD_FED_NAME_MAX - 1)
            return reply_error(h, c, MHD_HTTP_BAD_REQUEST,
                               "model names hold letters, digits, '-', '_' and '.' (at most %d)",
                               COORD_FED_NAME_MAX - 1);
    struct ud_err e = {0};
    /* A plain .udm, or a sealed one: an encrypted upload must be under the coordinator's own
     * model key; the stored version is sealed with the coordinator's keys either way. */
    const struct coord_model_keys *k = ch_keys(h);
    struct ud_seal_keys sk = {NULL, k && k->has_model ? &k->model : NULL};
    ud_model_t *m = ud_seal_decode_model(body ? body : "", len, &sk, NULL, &e);
    if (!m && e.code == UD_EWRONGKEY)
        return reply_error(h, c, HTTP_UNPROCESSABLE, "%s%s", e.msg,
                           sk.decrypt ? "" : " (start the coordinator with --model-key)");
    if (!m)
        return reply_error(h, c, HTTP_UNPROCESSABLE, "not a valid .udm: %s", e.msg);
    char sha[65];
    char *meta = coord_model_metadata_json(m);
    ud_model_destroy(&m);
    if (!meta)
        return reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    size_t stored_len = 0;
    if (coord_store_put_model(ch_state_dir(h), k, body, len, sha, &stored_len, &e) != 0) {
        free(meta);
        return reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", e.msg);
    }
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db) {
        free(meta);
        return reply_db_error(h, c, &e);
    }
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        free(meta);
        return db_fail(h, c, db, "begin");
    }
    int64_t v = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    int rc = v > 0 ? rw_exec(db,
                             "INSERT INTO models (name, version, sha256, size, created, job,"
                             " metrics, lineage, metadata) VALUES (?, ?, ?, ?, ?, NULL, '{}',"
                             " '{\"base\":null,\"job\":null,\"uploaded\":true}', ?)",
                             "sisids", name, v, sha, (int64_t)stored_len, wall_now(), meta)
                   : -1;
    free(meta);
    if (rc != 0 || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "register model");
    struct sbuf b = {0};
    sb_puts(&b, "{\"name\":");
    sb_json_str(&b, name);
    sb_printf(&b, ",\"version\":%" PRId64 ",\"sha256\":\"%s\",\"size\":%zu}", v, sha, len);
    return reply_json(h, c, MHD_HTTP_CREATED, &b);
}

/* ------------------------------------------------------------------ federations */

static enum MHD_Result post_federation(struct coord_http *h, struct MHD_Connection *c,
                                       const char *body, size_t len)
{
    struct coord_fed_spec s;
    struct ud_err e = {0};
    int rc = coord_fed_spec_parse(body ? body : "", len, &s, &e);
    if (rc == UD_ELIMIT)
        return reply_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "%s", e.msg);
    if (rc)
        return reply_error(h, c, MHD_HTTP_BAD_REQUEST, "%s", e.msg);
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    /* The base version and its file: the update parameters are checked against the model's
     * allowed ranges now, not by every device later. */
    sqlite3_stmt *st = NULL;
    char sha[65] = "";
    int64_t version = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT version, sha256 FROM models WHERE name = ?1 AND (?2 = 0 OR"
                           " version = ?2) ORDER BY version DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, s.model, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, s.version);
        if (sqlite3_step(st) == SQLITE_ROW) {
            version = sqlite3_column_int64(st, 0);
            snprintf(sha, sizeof sha, "%s", (const char *)sqlite3_column_text(st, 1));
        }
    }
    sqlite3_finalize(st);
    if (!version) {
        if (s.version)
            return reply_error(h, c, MHD_HTTP_NOT_FOUND,
                               "model %s version %" PRId64 " is not registered", s.model,
                               s.version);
        return reply_error(h, c, MHD_HTTP_NOT_FOUND,
                           "model '%s' has no registered version (train one with a job, or "
                           "POST /v1/models/%s/versions)",
                           s.model, s.model);
    }
    ud_model_t *m = coord_store_read_model(ch_state_dir(h), ch_keys(h), sha, &e);
    if (!m)
        return reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "model %s version %" PRId64 ": %s",
                           s.model, version, e.msg);
    if (ud_delta_size(m) == 0) {
        ud_model_destroy(&m);
        return reply_error(h, c, HTTP_UNPROCESSABLE,
                           "model %s version %" PRId64 " has no updatable layer: devices could "
                           "not change it",
                           s.model, version);
    }
    const struct ud_update_defaults *d = ud_model_update_defaults_const(m);
    struct ud_update_params p;
    ud_update_params_default(&p);
    ud_update_defaults_to_params(d, &p);
    if (s.epochs)
        p.epochs = s.epochs;
    if (s.batch)
        p.mini_batch_size = s.batch;
    if (s.lr >= 0)
        p.learning_rate = s.lr;
    rc = ud_update_params_check(&p, d, &e);
    ud_model_destroy(&m);
    if (rc)
        return reply_error(h, c, HTTP_UNPROCESSABLE,
                           "the model's update parameters do not allow this: %s", e.msg);
    if (coord_fed_spec_fill(&s, p.epochs, p.mini_batch_size, p.learning_rate, version, &e) != 0)
        return reply_error(h, c, HTTP_UNPROCESSABLE,
                           "with the model's update defaults filled in, the spec is refused: %s "
                           "(give the key in the spec)",
                           e.msg);
    if (s.eval[0] && access(s.eval, R_OK) != 0)
        return reply_error(h, c, HTTP_UNPROCESSABLE,
                           "'eval': %s cannot be read on the coordinator: %s", s.eval,
                           strerror(errno));
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "begin");
    int64_t id = 0;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) + 1 FROM federations", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (!s.name[0])
        snprintf(s.name, sizeof s.name, "federation-%" PRId64, id);
    char *spec = coord_fed_spec_json(&s);
    double now = wall_now();
    rc = spec && id > 0
             ? rw_exec(db,
                       "INSERT INTO federations (id, name, state, spec, model,"
                       " base_version, current_version, rounds, round, created,"
                       " updated) VALUES (?, ?, 'RUNNING', ?, ?, ?, ?, ?, 0, ?, ?)",
                       "isssiiidd", id, s.name, spec, s.model, version, version, s.rounds, now, now)
             : -1;
    free(spec);
    if (rc != 0 || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "create federation");
    struct sbuf b = {0};
    char url[64];
    snprintf(url, sizeof url, "/v1/federations/%" PRId64, id);
    sb_printf(&b, "{\"id\":%" PRId64 ",\"name\":", id);
    sb_json_str(&b, s.name);
    sb_printf(&b, ",\"state\":\"RUNNING\",\"model\":");
    sb_json_str(&b, s.model);
    sb_printf(&b, ",\"base_version\":%" PRId64 ",\"url\":\"%s\"}\n", version, url);
    if (b.oom) {
        sb_free(&b);
        return MHD_NO;
    }
    enum MHD_Result ret = queue(h, c, MHD_HTTP_CREATED, mem_response(b.p, b.len), JSON_TYPE,
                                MHD_HTTP_HEADER_LOCATION, url, NULL);
    sb_free(&b);
    return ret;
}

static enum MHD_Result post_fed_cancel(struct coord_http *h, struct MHD_Connection *c, int64_t id)
{
    struct ud_err e = {0};
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "begin");
    double now = wall_now();
    if (rw_exec(db,
                "UPDATE federations SET state = 'CANCELLED', message = 'cancelled over REST',"
                " updated = ?, finished = ? WHERE id = ? AND state = 'RUNNING'",
                "ddi", now, now, id) != 0)
        return db_fail(h, c, db, "cancel");
    int changed = sqlite3_changes(db);
    if (changed &&
        rw_exec(db,
                "UPDATE rounds SET state = 'CANCELLED', closed = coalesce(closed, ?), message ="
                " 'federation cancelled' WHERE federation = ? AND state IN ('WAITING', 'OPEN',"
                " 'CLOSING')",
                "di", now, id) != 0)
        return db_fail(h, c, db, "cancel");
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "cancel");
    if (!changed) {
        sqlite3_stmt *st = NULL;
        char state[16] = "";
        if (sqlite3_prepare_v2(db, "SELECT state FROM federations WHERE id = ?", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_int64(st, 1, id);
            if (sqlite3_step(st) == SQLITE_ROW)
                snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
        if (!state[0])
            return reply_error(h, c, MHD_HTTP_NOT_FOUND, "no federation %" PRId64, id);
        return reply_error(h, c, MHD_HTTP_CONFLICT, "federation %" PRId64 " is already %s", id,
                           state);
    }
    struct sbuf b = {0};
    sb_printf(&b, "{\"id\":%" PRId64 ",\"state\":\"CANCELLED\"}", id);
    return reply_json(h, c, MHD_HTTP_ACCEPTED, &b);
}

#define ROUND_COLS                                                                                 \
    "id, number, state, base_version, delta_floats, created, opened, deadline, closed, accepted,"  \
    " samples,"                                                                                    \
    " published_version, eval_accuracy, eval_loss, message"
#define ROUND_NAMES                                                                                \
    "id number state base_version delta_floats created opened deadline closed accepted samples "   \
    "published_version eval_accuracy eval_loss message"

/* A JSON array of the integers sql (one '?': id) yields. 0, or -1 on a database error. */
static int id_array(sqlite3 *db, const char *sql, int64_t id, struct sbuf *b)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
    sb_puts(b, "[");
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, id);
        for (int k = 0; (rc = sqlite3_step(q)) == SQLITE_ROW; k++)
            sb_printf(b, "%s%lld", k ? "," : "", (long long)sqlite3_column_int64(q, 0));
    }
    sqlite3_finalize(q);
    sb_puts(b, "]");
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The round object at st's current row (ROUND_COLS), with participants and rejections. */
static int round_json(sqlite3 *db, sqlite3_stmt *st, struct sbuf *b)
{
    int64_t id = sqlite3_column_int64(st, 0);
    sb_puts(b, "{");
    sb_cols(b, st, 0, ROUND_NAMES);
    sb_puts(b, ",\"participants\":");
    if (id_array(db, "SELECT device FROM participants WHERE round = ? ORDER BY device", id, b))
        return -1;
    sb_puts(b, ",\"contributors\":");
    if (id_array(db, "SELECT device FROM updates WHERE round = ? ORDER BY device", id, b))
        return -1;
    sb_puts(b, ",\"failed\":");
    if (id_array(db, "SELECT device FROM failures WHERE round = ? ORDER BY device", id, b))
        return -1;
    sqlite3_stmt *q = NULL;
    int rc;
    sb_puts(b, ",\"rejected\":{");
    rc = sqlite3_prepare_v2(
        db, "SELECT reason, count FROM rejections WHERE round = ? ORDER BY reason", -1, &q, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, id);
        for (int k = 0; (rc = sqlite3_step(q)) == SQLITE_ROW; k++) {
            sb_puts(b, k ? "," : "");
            sb_json_str(b, (const char *)sqlite3_column_text(q, 0));
            sb_printf(b, ":%lld", (long long)sqlite3_column_int64(q, 1));
        }
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return -1;
    sb_puts(b, "}}");
    return 0;
}

#define FED_COLS                                                                                   \
    "id, name, state, model, base_version, current_version, rounds, round, message, created,"      \
    " updated, finished, spec"
#define FED_NAMES                                                                                  \
    "id name state model base_version current_version rounds round message created updated "       \
    "finished @spec"

static enum MHD_Result get_federations(struct coord_http *h, struct MHD_Connection *c,
                                       const char *sid)
{
    struct ud_err e = {0};
    sqlite3 *db = ch_db_ro(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    sqlite3_stmt *st = NULL;
    struct sbuf b = {0};
    if (!sid) {
        if (sqlite3_prepare_v2(db, "SELECT " FED_COLS " FROM federations ORDER BY id", -1, &st,
                               NULL) != SQLITE_OK)
            return db_fail(h, c, db, "reading federations");
        sb_puts(&b, "{\"federations\":");
        int rc = sb_rows(&b, st, FED_NAMES, NULL);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            sb_free(&b);
            return db_fail(h, c, db, "reading federations");
        }
        sb_puts(&b, "}");
        return reply_json(h, c, MHD_HTTP_OK, &b);
    }
    int64_t id = seg_id(sid);
    if (sqlite3_prepare_v2(db, "SELECT " FED_COLS " FROM federations WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(h, c, db, "reading federations");
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE)
            return reply_error(h, c, MHD_HTTP_NOT_FOUND, "no federation '%.32s'", sid);
        return db_fail(h, c, db, "reading federations");
    }
    sb_puts(&b, "{");
    sb_cols(&b, st, 0, FED_NAMES);
    sqlite3_finalize(st);
    sb_puts(&b, ",\"rounds_detail\":[");
    if (sqlite3_prepare_v2(db,
                           "SELECT " ROUND_COLS " FROM rounds WHERE federation = ? ORDER BY number",
                           -1, &st, NULL) != SQLITE_OK) {
        sb_free(&b);
        return db_fail(h, c, db, "reading rounds");
    }
    sqlite3_bind_int64(st, 1, id);
    for (int k = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; k++) {
        sb_puts(&b, k ? "," : "");
        if (round_json(db, st, &b) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        sb_free(&b);
        return db_fail(h, c, db, "reading rounds");
    }
    sb_puts(&b, "]}");
    return reply_json(h, c, MHD_HTTP_OK, &b);
}

static enum MHD_Result get_round(struct coord_http *h, struct MHD_Connection *c, const char *sid)
{
    struct ud_err e = {0};
    sqlite3 *db = ch_db_ro(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT " ROUND_COLS ", federation FROM rounds WHERE id = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return db_fail(h, c, db, "reading rounds");
    sqlite3_bind_int64(st, 1, seg_id(sid));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? reply_error(h, c, MHD_HTTP_NOT_FOUND, "no round '%.32s'", sid)
                                 : db_fail(h, c, db, "reading rounds");
    }
    struct sbuf b = {0};
    rc = round_json(db, st, &b);
    if (rc == 0) { /* add the federation inside the object */
        b.len--;
        sb_printf(&b, ",\"federation\":%lld}", (long long)sqlite3_column_int64(st, 15));
    }
    sqlite3_finalize(st);
    if (rc != 0) {
        sb_free(&b);
        return db_fail(h, c, db, "reading rounds");
    }
    return reply_json(h, c, MHD_HTTP_OK, &b);
}

/* ------------------------------------------------------------------ updates */

/* What an upload is checked against. */
struct round_info {
    int64_t id, federation, base_version, delta_floats;
    char state[16];
    double max_norm;
};

static int round_info(sqlite3 *db, int64_t id, struct round_info *ri)
{
    memset(ri, 0, sizeof *ri);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT r.federation, r.base_version, r.delta_floats, r.state, f.spec"
                           " FROM rounds r JOIN federations f ON f.id = r.federation WHERE"
                           " r.id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        ri->id = id;
        ri->federation = sqlite3_column_int64(st, 0);
        ri->base_version = sqlite3_column_int64(st, 1);
        ri->delta_floats = sqlite3_column_int64(st, 2);
        snprintf(ri->state, sizeof ri->state, "%s", (const char *)sqlite3_column_text(st, 3));
        const char *spec = (const char *)sqlite3_column_text(st, 4);
        struct coord_fed_spec s;
        struct ud_err e = {0};
        ri->max_norm =
            spec && coord_fed_spec_parse(spec, strlen(spec), &s, &e) == 0 ? s.max_norm : 0;
        ret = 1;
    } else if (rc != SQLITE_DONE)
        ret = -1;
    sqlite3_finalize(st);
    return ret;
}

/* Counts a refusal against a round (best effort: a busy database must not turn a clean
 * refusal into an error). */
static void count_rejection(struct coord_http *h, int64_t round, const char *reason)
{
    struct ud_err e = {0};
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db || round <= 0)
        return;
    pthread_mutex_lock(&write_lock);
    rw_exec(db,
            "INSERT INTO rejections (round, reason, count) SELECT ?1, ?2, 1 WHERE EXISTS"
            " (SELECT 1 FROM rounds WHERE id = ?1) ON CONFLICT (round, reason) DO UPDATE"
            " SET count = count + 1",
            "is", round, reason);
    pthread_mutex_unlock(&write_lock);
}

size_t fed_body_cap(struct coord_http *h, int k, char **s, const char *method)
{
    if (!is_post(method))
        return 0;
    if (strcmp(s[1], "models") == 0)
        return MODEL_BODY_CAP;
    if (k == 4 && strcmp(s[1], "rounds") == 0 && strcmp(s[3], "updates") == 0) {
        struct ud_err e = {0};
        sqlite3 *db = ch_db_ro(h, &e);
        struct round_info ri;
        if (db && round_info(db, seg_id(s[2]), &ri) == 1 && ri.delta_floats > 0 &&
            (uint64_t)ri.delta_floats < (UPDATE_CAP - UPDATE_SLACK) / 4)
            return (size_t)ri.delta_floats * 4 + UPDATE_SLACK;
        return UPDATE_CAP;
    }
    return SMALL_BODY_CAP;
}

/* fsyncs the directory at path. */
static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Writes the delta to STATE/<rel> durably (temp, fsync, rename, fsync the directory). */
static int write_delta(const char *state, int64_t round, const char *rel, const float *d, size_t n,
                       struct ud_err *e)
{
    char dir[4096 + 64], path[4096 + 256], tmp[4096 + 300];
    snprintf(dir, sizeof dir, "%s/rounds", state);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ud_err_set(e, UD_EIO, "%s: %s", dir, strerror(errno));
    snprintf(dir, sizeof dir, "%s/rounds/%" PRId64, state, round);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ud_err_set(e, UD_EIO, "%s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/%s", state, rel);
    snprintf(tmp, sizeof tmp, "%s.tmp.%lx", path, (unsigned long)randombytes_random());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ud_err_set(e, UD_EIO, "%s: %s", tmp, strerror(errno));
    /* Little-endian on disk: this host is (x86-64, aarch64); ud_delta decoded to host floats. */
    const char *p = (const char *)d;
    size_t left = n * 4;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return ud_err_set(e, UD_EIO, "%s: %s", tmp, strerror(err));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0 || fsync_dir(dir) != 0) {
        int err = errno;
        unlink(tmp);
        return ud_err_set(e, UD_EIO, "%s: %s", path, strerror(err));
    }
    return 0;
}

/* The existing update of (round, device): 1 with its key and path, 0 none, -1 error. */
static int existing_update(sqlite3 *db, int64_t round, int64_t dev, char *key, size_t kn,
                           char *path, size_t pn)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT key, path FROM updates WHERE round = ? AND device = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, round);
    sqlite3_bind_int64(st, 2, dev);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        snprintf(key, kn, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(path, pn, "%s", (const char *)sqlite3_column_text(st, 1));
        ret = 1;
    } else if (rc != SQLITE_DONE)
        ret = -1;
    sqlite3_finalize(st);
    return ret;
}

/* The device that sent the update with this idempotency key in any round, or 0 for none: a
 * key is made fresh per device and round, so finding it under another device or round means
 * the bytes were captured and replayed. Returns -1 on a database error. */
static int64_t key_owner(sqlite3 *db, const char *key, int64_t *round_out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT device, round FROM updates WHERE key = ? LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int64_t dev = 0;
    if (rc == SQLITE_ROW) {
        dev = sqlite3_column_int64(st, 0);
        *round_out = sqlite3_column_int64(st, 1);
    } else if (rc != SQLITE_DONE)
        dev = -1;
    sqlite3_finalize(st);
    return dev;
}

static enum MHD_Result answer_existing(struct coord_http *h, struct MHD_Connection *c,
                                       int64_t round, const char *have_key, const char *key)
{
    if (strcmp(have_key, key) == 0) {
        count_rejection(h, round, "duplicate");
        struct sbuf b = {0};
        sb_printf(&b, "{\"status\":\"duplicate\",\"round\":%" PRId64 ",\"key\":", round);
        sb_json_str(&b, key);
        sb_puts(&b, "}");
        return reply_json(h, c, MHD_HTTP_OK, &b);
    }
    count_rejection(h, round, "conflict");
    return reply_reason(
        h, c, MHD_HTTP_CONFLICT, "conflict",
        "this device already contributed to round %" PRId64 " with another idempotency key", round);
}

static enum MHD_Result post_update(struct coord_http *h, struct MHD_Connection *c, const char *sid,
                                   const char *body, size_t len, int too_big)
{
    int64_t round = seg_id(sid);
    int64_t dev = device_auth(h, c, 0); /* last_seen is set with the update */
    if (!dev)
        return bad_token(h, c);
    struct ud_err e = {0};
    sqlite3 *ro = ch_db_ro(h, &e);
    if (!ro)
        return reply_db_error(h, c, &e);
    struct round_info ri;
    int have = round_info(ro, round, &ri);
    if (have < 0)
        return db_fail(h, c, ro, "reading rounds");
    if (!have)
        return reply_reason(h, c, MHD_HTTP_NOT_FOUND, "unknown_round", "no round '%.32s'", sid);
    if (too_big) {
        count_rejection(h, round, "too_large");
        return reply_reason(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                            "an update of round %" PRId64 " is at most %zu bytes (%" PRId64
                            " floats)",
                            round, (size_t)ri.delta_floats * 4 + UPDATE_SLACK, ri.delta_floats);
    }
    struct ud_update_msg msg;
    float *delta = NULL;
    int rc = ud_update_msg_decode(body ? body : "", len, (size_t)ri.delta_floats, &msg, &delta, &e);
    if (rc == UD_ELIMIT) {
        count_rejection(h, round, "shape");
        return reply_reason(h, c, HTTP_UNPROCESSABLE, "shape",
                            "round %" PRId64 " takes deltas of %" PRId64 " floats: %s", round,
                            ri.delta_floats, e.msg);
    }
    if (rc) {
        count_rejection(h, round, "malformed");
        return reply_reason(h, c, HTTP_UNPROCESSABLE, "malformed", "not an update message: %s",
                            e.msg);
    }
    enum MHD_Result ret;
    int locked = 0;
    char have_key[UD_UPDATE_KEY_MAX + 1], have_path[512], rel[512];
    if (msg.round != round) {
        count_rejection(h, round, "malformed");
        ret = reply_reason(h, c, HTTP_UNPROCESSABLE, "malformed",
                           "the message is for round %" PRId64 ", posted to round %" PRId64,
                           msg.round, round);
        goto out;
    }
    /* Selected for this round? */
    sqlite3_stmt *st = NULL;
    int selected = 0;
    if (sqlite3_prepare_v2(ro, "SELECT 1 FROM participants WHERE round = ? AND device = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, round);
        sqlite3_bind_int64(st, 2, dev);
        selected = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    if (!selected) {
        count_rejection(h, round, "not_selected");
        ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "not_selected",
                           "device %" PRId64 " was not sampled for round %" PRId64, dev, round);
        goto out;
    }
    /* Another device's upload (its key), replayed under this device's token. */
    int64_t key_round = 0, owner = key_owner(ro, msg.key, &key_round);
    if (owner < 0) {
        ret = db_fail(h, c, ro, "reading updates");
        goto out;
    }
    if (owner && (owner != dev || key_round != round)) {
        count_rejection(h, round, "replayed");
        ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "replayed",
                           "key '%s' was already used by device %" PRId64 " in round %" PRId64
                           ": a replayed upload",
                           msg.key, owner, key_round);
        goto out;
    }
    /* A re-sent upload is answered the same whatever the round's state now. */
    int ex =
        existing_update(ro, round, dev, have_key, sizeof have_key, have_path, sizeof have_path);
    if (ex < 0) {
        ret = db_fail(h, c, ro, "reading updates");
        goto out;
    }
    if (ex) {
        ret = answer_existing(h, c, round, have_key, msg.key);
        goto out;
    }
    if (strcmp(ri.state, "OPEN") != 0) {
        count_rejection(h, round, "closed");
        ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "closed",
                           "round %" PRId64 " is %s: it takes no more updates", round, ri.state);
        goto out;
    }
    if (msg.base_version != ri.base_version) {
        count_rejection(h, round, "stale");
        ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "stale",
                           "the update is against version %" PRId64 "; round %" PRId64
                           " is based on version %" PRId64,
                           msg.base_version, round, ri.base_version);
        goto out;
    }
    if ((int64_t)msg.n != ri.delta_floats) {
        count_rejection(h, round, "shape");
        ret = reply_reason(h, c, HTTP_UNPROCESSABLE, "shape",
                           "the delta has %zu floats; round %" PRId64 " takes %" PRId64, msg.n,
                           round, ri.delta_floats);
        goto out;
    }
    double norm = 0;
    rc = ud_delta_check(delta, msg.n, ri.max_norm, &norm, &e);
    if (rc) {
        const char *reason = rc == UD_ENONFINITE ? "nonfinite" : "norm";
        count_rejection(h, round, reason);
        ret = reply_reason(h, c, HTTP_UNPROCESSABLE, reason, "%s", e.msg);
        goto out;
    }
    /* Durable first, then the row: an acknowledged update survives a crash. The file name
     * carries a hash of the key, so two different uploads never share a file. */
    unsigned char kh[8];
    char khex[17];
    crypto_generichash(kh, sizeof kh, (const unsigned char *)msg.key, strlen(msg.key), NULL, 0);
    sodium_bin2hex(khex, sizeof khex, kh, sizeof kh);
    snprintf(rel, sizeof rel, "rounds/%" PRId64 "/%" PRId64 "-%s.delta", round, dev, khex);
    if (write_delta(ch_state_dir(h), round, rel, delta, msg.n, &e) != 0) {
        ret = reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", e.msg);
        goto out;
    }
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db) {
        ret = reply_db_error(h, c, &e);
        goto out;
    }
    pthread_mutex_lock(&write_lock);
    locked = 1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        ret = db_fail(h, c, db, "begin");
        goto out;
    }
    /* Again under the write lock: the round may have closed, or a twin upload committed. */
    char state[16] = "";
    if (sqlite3_prepare_v2(db, "SELECT state FROM rounds WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, round);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    ex = existing_update(db, round, dev, have_key, sizeof have_key, have_path, sizeof have_path);
    if (ex != 0 || strcmp(state, "OPEN") != 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        if (ex < 0) {
            ret = reply_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database: try again");
            goto out;
        }
        if (ex == 0 || strcmp(have_path, rel) != 0) {
            char p[4096 + 600];
            snprintf(p, sizeof p, "%s/%s", ch_state_dir(h), rel);
            unlink(p);
        }
        if (ex) {
            ret = answer_existing(h, c, round, have_key, msg.key);
            goto out;
        }
        count_rejection(h, round, "closed");
        ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "closed",
                           "round %" PRId64 " closed while the update arrived", round);
        goto out;
    }
    double now = wall_now();
    int64_t accepted = 0;
    if (rw_exec(db,
                "INSERT INTO updates (round, device, key, samples, loss, accuracy, norm, path,"
                " received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "iisidddsd", round, dev, msg.key, msg.samples, msg.loss, msg.accuracy, norm, rel,
                now) != 0 ||
        rw_exec(db, "UPDATE rounds SET accepted = accepted + 1, samples = samples + ? WHERE id = ?",
                "ii", msg.samples, round) != 0 ||
        rw_exec(db, "UPDATE devices SET updates = updates + 1, last_seen = ? WHERE id = ?", "di",
                now, dev) != 0) {
        ret = db_fail(h, c, db, "record update");
        goto out;
    }
    if (sqlite3_prepare_v2(db, "SELECT accepted FROM rounds WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, round);
        if (sqlite3_step(st) == SQLITE_ROW)
            accepted = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ret = db_fail(h, c, db, "record update");
        goto out;
    }
    struct sbuf b = {0};
    sb_printf(&b,
              "{\"status\":\"accepted\",\"round\":%" PRId64 ",\"accepted\":%" PRId64 ",\"norm\":",
              round, accepted);
    sb_json_num(&b, norm);
    sb_puts(&b, "}");
    if (locked) {
        pthread_mutex_unlock(&write_lock);
        locked = 0;
    }
    ret = reply_json(h, c, MHD_HTTP_OK, &b);
out:
    if (locked)
        pthread_mutex_unlock(&write_lock);
    free(delta);
    return ret;
}

/* POST /v1/rounds/{id}/failures: a sampled device says it cannot contribute (its update
 * failed: bad local data, a parameter it cannot use). The round stops waiting for it: it
 * closes once every sampled device has sent an update or such a report. */
static enum MHD_Result post_failure(struct coord_http *h, struct MHD_Connection *c, const char *sid,
                                    const char *body, size_t len)
{
    int64_t round = seg_id(sid);
    int64_t dev = device_auth(h, c, 1);
    if (!dev)
        return bad_token(h, c);
    char reason[COORD_FED_REASON_MAX + 1] = "";
    struct ud_err pe = {0};
    if (coord_fed_failure_parse(body, len, reason, &pe) != 0)
        return reply_reason(h, c, HTTP_UNPROCESSABLE, "malformed", "%s", pe.msg);
    struct ud_err e = {0};
    sqlite3 *db = ch_db_rw(h, &e);
    if (!db)
        return reply_db_error(h, c, &e);
    pthread_mutex_lock(&write_lock);
    enum MHD_Result ret;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        ret = db_fail(h, c, db, "begin");
        goto out;
    }
    sqlite3_stmt *st = NULL;
    char state[16] = "";
    int selected = 0, contributed = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT state, EXISTS (SELECT 1 FROM participants WHERE round = ?1 AND"
                           " device = ?2), EXISTS (SELECT 1 FROM updates WHERE round = ?1 AND"
                           " device = ?2) FROM rounds WHERE id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, round);
        sqlite3_bind_int64(st, 2, dev);
        if (sqlite3_step(st) == SQLITE_ROW) {
            snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(st, 0));
            selected = sqlite3_column_int(st, 1);
            contributed = sqlite3_column_int(st, 2);
        }
    }
    sqlite3_finalize(st);
    if (!state[0] || !selected || contributed || strcmp(state, "OPEN") != 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        if (!state[0])
            ret = reply_reason(h, c, MHD_HTTP_NOT_FOUND, "unknown_round", "no round '%.32s'", sid);
        else if (!selected)
            ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "not_selected",
                               "device %" PRId64 " was not sampled for round %" PRId64, dev, round);
        else if (contributed)
            ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "conflict",
                               "device %" PRId64 " already contributed to round %" PRId64, dev,
                               round);
        else
            ret = reply_reason(h, c, MHD_HTTP_CONFLICT, "closed", "round %" PRId64 " is %s", round,
                               state);
        goto out;
    }
    if (rw_exec(db,
                "INSERT OR IGNORE INTO failures (round, device, reason, time) VALUES (?, ?, ?, ?)",
                "iisd", round, dev, reason, wall_now()) != 0 ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ret = db_fail(h, c, db, "record failure");
        goto out;
    }
    struct sbuf b = {0};
    sb_printf(&b, "{\"status\":\"recorded\",\"round\":%" PRId64 "}", round);
    ret = reply_json(h, c, MHD_HTTP_OK, &b);
out:
    pthread_mutex_unlock(&write_lock);
    return ret;
}

/* ------------------------------------------------------------------ dispatch */

enum MHD_Result fed_serve(struct coord_http *h, struct MHD_Connection *c, const char *method, int k,
                          char **s, const char *body, size_t len, int too_big)
{
    int get = is_get(method), post = is_post(method);
    const char *what = s[1];
    /* Uploads answer 413 themselves (with the round's limit and a rejection count). */
    if (too_big && !(k == 4 && strcmp(what, "rounds") == 0))
        return reply_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE,
                           "request body over the limit of %zu bytes",
                           fed_body_cap(h, k, s, method));
    if (strcmp(what, "models") == 0) { /* POST /v1/models/{name}/versions */
        if (!authorized(h, c))
            return need_admin(h, c);
        {
            pthread_mutex_lock(&write_lock);
            enum MHD_Result r = post_model(h, c, s[2], body, len);
            pthread_mutex_unlock(&write_lock);
            return r;
        }
    }
    if (strcmp(what, "devices") == 0) {
        if (k == 2) {
            if (get)
                return get_devices(h, c);
            if (!post)
                return not_allowed(h, c, method, "GET, HEAD, POST");
            if (!authorized(h, c))
                return need_admin(h, c);
            {
                pthread_mutex_lock(&write_lock);
                enum MHD_Result r = post_devices(h, c, body, len);
                pthread_mutex_unlock(&write_lock);
                return r;
            }
        }
        if (k == 4 && strcmp(s[3], "revoke") == 0) {
            if (!post)
                return not_allowed(h, c, method, "POST");
            if (!authorized(h, c))
                return need_admin(h, c);
            pthread_mutex_lock(&write_lock);
            enum MHD_Result r = post_revoke(h, c, s[2]);
            pthread_mutex_unlock(&write_lock);
            return r;
        }
        if (k == 4 && strcmp(s[3], "task") == 0) {
            if (!get)
                return not_allowed(h, c, method, "GET, HEAD");
            return get_task(h, c, s[2]);
        }
    } else if (strcmp(what, "federations") == 0) {
        if (k == 2) {
            if (get)
                return get_federations(h, c, NULL);
            if (!post)
                return not_allowed(h, c, method, "GET, HEAD, POST");
            if (!authorized(h, c))
                return need_admin(h, c);
            {
                pthread_mutex_lock(&write_lock);
                enum MHD_Result r = post_federation(h, c, body, len);
                pthread_mutex_unlock(&write_lock);
                return r;
            }
        }
        if (k == 3) {
            if (!get)
                return not_allowed(h, c, method, "GET, HEAD");
            return get_federations(h, c, s[2]);
        }
        if (k == 4 && strcmp(s[3], "cancel") == 0) {
            if (!post)
                return not_allowed(h, c, method, "POST");
            if (!authorized(h, c))
                return need_admin(h, c);
            {
                pthread_mutex_lock(&write_lock);
                enum MHD_Result r = post_fed_cancel(h, c, seg_id(s[2]));
                pthread_mutex_unlock(&write_lock);
                return r;
            }
        }
    } else if (strcmp(what, "rounds") == 0) {
        if (k == 3) {
            if (!get)
                return not_allowed(h, c, method, "GET, HEAD");
            return get_round(h, c, s[2]);
        }
        if (k == 4 && strcmp(s[3], "updates") == 0) {
            if (!post)
                return not_allowed(h, c, method, "POST");
            return post_update(h, c, s[2], body, len, too_big);
        }
        if (k == 4 && strcmp(s[3], "failures") == 0) {
            if (!post)
                return not_allowed(h, c, method, "POST");
            if (too_big)
                return reply_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE,
                                   "request body over the limit of %u bytes", SMALL_BODY_CAP);
            return post_failure(h, c, s[2], body, len);
        }
    }
    return reply_error(h, c, MHD_HTTP_NOT_FOUND, "no such resource");
}

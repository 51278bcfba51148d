/*  coord_fed_http.c — the handlers of the federation routes (docs/rest.md, "Federations"):
 *  devices (enrol, list, one device, revoke, a device's task), federations (start, list, cancel),
 * rounds (one round, a device's update or failure report) and POST /v1/models/{name}/versions
 *  (register a .udm). Their rows, with who may call and the body limits, are in coord_http.c's
 *  route table.
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
#include "coord_spec.h"
#include "coord_store.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_file.h"
#include "updraft/ud_update_msg.h"
#include "updraft/ud_seal.h"
#include "updraft/ud_udm.h"

#define UPDATE_SLACK       (64u << 10) /* an update's bytes beyond its delta */
#define UPDATE_CAP         UD_LIMIT_UPDATE_BYTES
#define MSGPACK_TYPE       "application/msgpack"
#define HTTP_UNPROCESSABLE 422 /* libmicrohttpd renamed its constant across versions */

/* ------------------------------------------------------------------ helpers */

static int64_t seg_id(const char *s)
{
    int64_t v;
    return http_parse_i64(s, &v) == 0 && v > 0 ? v : 0;
}

/* Device ?1's open tasks: the rounds (r) of running federations (f) it was sampled in (p)
 * that are OPEN and that it has neither uploaded to nor reported a failure for. A task's
 * query and the model-file rule share it, so a device may read exactly what its task names. */
#define OPEN_TASKS_FROM                                                                            \
    " FROM participants p JOIN rounds r ON r.id = p.round JOIN federations f ON"                   \
    " f.id = r.federation"
#define OPEN_TASKS_WHERE                                                                           \
    " WHERE p.device = ?1 AND r.state = 'OPEN' AND f.state = 'RUNNING'"                            \
    " AND NOT EXISTS (SELECT 1 FROM updates u WHERE u.round = r.id AND u.device = ?1)"             \
    " AND NOT EXISTS (SELECT 1 FROM failures x WHERE x.round = r.id AND x.device = ?1)"

/* sql prepared on this thread's read-only connection (the caller finalizes it); NULL when the
 * database cannot be opened or sql not prepared: the router's checks then refuse. */
static sqlite3_stmt *ro_prepare(struct coord_http *h, const char *sql)
{
    struct ud_err e = {0};
    sqlite3 *db = http_db_ro(h, &e);
    sqlite3_stmt *st = NULL;
    if (db && sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        st = NULL;
    }
    return st;
}

int64_t fed_device_auth(struct coord_http *h, struct MHD_Connection *c)
{
    size_t n;
    const char *a = http_bearer(c, &n);
    int64_t id;
    if (!a)
        return 0;
    unsigned char hash[32];
    if (coord_device_token_parse(a, n, &id, hash) != 0)
        return 0;
    sqlite3_stmt *st = ro_prepare(h, "SELECT token_hash FROM devices WHERE id = ? AND revoked = 0");
    int ok = 0;
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32)
            ok = sodium_memcmp(sqlite3_column_blob(st, 0), hash, 32) == 0;
    }
    sqlite3_finalize(st);
    return ok ? id : 0;
}

int fed_device_task_model(struct coord_http *h, int64_t dev, const char *name, const char *v)
{
    int64_t version;
    if (!name || !v || http_parse_i64(v, &version) != 0 || version < 1)
        return 0;
    sqlite3_stmt *st = ro_prepare(h, "SELECT 1" OPEN_TASKS_FROM OPEN_TASKS_WHERE
                                     " AND f.model = ?2 AND r.base_version = ?3");
    int ok = 0;
    if (st) {
        sqlite3_bind_int64(st, 1, dev);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, version);
        ok = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return ok;
}

/* Records a device's call as its last sign of life. */
static void device_touch(struct coord_http *h, int64_t id)
{
    struct ud_err e = {0};
    sqlite3 *rw = http_db_rw(h, &e);
    if (rw) {
        pthread_mutex_lock(&http_write_lock);
        http_exec(rw, "UPDATE devices SET last_seen = ? WHERE id = ?", "di", ud_clock_wall(), id);
        pthread_mutex_unlock(&http_write_lock);
    }
}

/* ------------------------------------------------------------------ devices */

enum MHD_Result fed_post_devices(struct coord_http *h, struct MHD_Connection *c,
                                 const struct coord_call *q)
{
    const char *body = q->body;
    size_t len = q->len;
    char name[COORD_FED_NAME_MAX] = "";
    int64_t count = 0;
    struct ud_err pe = {0};
    if (coord_fed_enrol_parse(body, len, name, &count, &pe) != 0)
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST, "%s", pe.msg);
    struct ud_err e = {0};
    sqlite3 *db = http_db_rw(h, &e);
    if (!db)
        return http_reply_db_error(h, c, &e);
    int64_t k = count ? count : 1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, db, "begin");
    struct ud_buf b = {0};
    ud_buf_puts(&b, count ? "{\"devices\":[" : "");
    double now = ud_clock_wall();
    for (int64_t i = 0; i < k; i++) {
        unsigned char secret[32], hash[32];
        char hex[65], token[COORD_DEVICE_TOKEN_MAX], dname[COORD_FED_NAME_MAX + 32];
        randombytes_buf(secret, sizeof secret);
        sodium_bin2hex(hex, sizeof hex, secret, sizeof secret);
        sodium_memzero(secret, sizeof secret);
        crypto_generichash(hash, sizeof hash, (const unsigned char *)hex, 64, NULL, 0);
        if (http_exec(db,
                      "INSERT INTO devices (name, token_hash, created, updates, revoked)"
                      " VALUES ('', ?, ?, 0, 0)",
                      "bd", hash, sizeof hash, now) != 0) {
            ud_buf_free(&b);
            return http_db_fail(h, c, db, "enrol device");
        }
        int64_t id = sqlite3_last_insert_rowid(db);
        if (count)
            snprintf(dname, sizeof dname, "%s-%" PRId64, name[0] ? name : "device", id);
        else if (name[0])
            snprintf(dname, sizeof dname, "%s", name);
        else
            snprintf(dname, sizeof dname, "device-%" PRId64, id);
        if (http_exec(db, "UPDATE devices SET name = ? WHERE id = ?", "si", dname, id) != 0) {
            ud_buf_free(&b);
            return http_db_fail(h, c, db, "enrol device");
        }
        snprintf(token, sizeof token, "%" PRId64 ".%s", id, hex);
        sodium_memzero(hex, sizeof hex);
        ud_buf_printf(&b, "%s{\"id\":%" PRId64 ",\"name\":", i ? "," : "", id);
        ud_json_str_buf(&b, dname);
        ud_buf_puts(&b, ",\"token\":");
        ud_json_str_buf(&b, token);
        ud_buf_puts(&b, "}");
        sodium_memzero(token, sizeof token);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ud_buf_free(&b);
        return http_db_fail(h, c, db, "enrol device");
    }
    if (count)
        ud_buf_puts(&b, "]}");
    return http_reply_json(h, c, MHD_HTTP_CREATED, &b);
}

/* One device as GET /v1/devices and GET /v1/devices/{id} show it. */
#define DEVICE_SELECT "SELECT id, name, created, last_seen, updates, revoked FROM devices"
#define DEVICE_NAMES  "id name created last_seen updates !revoked"

enum MHD_Result fed_get_devices(struct coord_http *h, struct MHD_Connection *c,
                                const struct coord_call *q)
{
    enum MHD_Result ret;
    sqlite3_stmt *st = http_select(h, c, DEVICE_SELECT " ORDER BY id", "reading devices", &ret);
    if (!st)
        return ret;
    sqlite3 *db = sqlite3_db_handle(st);
    struct ud_buf b = {0};
    int n = 0;
    ud_buf_puts(&b, "{\"devices\":");
    int rc = http_json_rows(&b, st, DEVICE_NAMES, &n);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        ud_buf_free(&b);
        return http_db_fail(h, c, db, "reading devices");
    }
    ud_buf_printf(&b, ",\"count\":%d}", n);
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* GET /v1/devices/{id} (reader): one device, as in the list; 404 for an unknown id. */
enum MHD_Result fed_get_device(struct coord_http *h, struct MHD_Connection *c,
                               const struct coord_call *q)
{
    enum MHD_Result ret;
    sqlite3_stmt *st = http_select(h, c, DEVICE_SELECT " WHERE id = ?", "reading devices", &ret);
    if (!st)
        return ret;
    sqlite3 *db = sqlite3_db_handle(st);
    sqlite3_bind_int64(st, 1, seg_id(q->arg[0]));
    int rc = sqlite3_step(st);
    struct ud_buf b = {0};
    if (rc == SQLITE_ROW) {
        ud_buf_puts(&b, "{");
        http_json_cols(&b, st, 0, DEVICE_NAMES);
        ud_buf_puts(&b, "}");
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no device '%.32s'", q->arg[0]);
    if (rc != SQLITE_ROW)
        return http_db_fail(h, c, db, "reading devices");
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* POST /v1/devices/{id}/revoke: its token stops working at once (401 on every device call);
 * updates it already sent stay counted. Revoking twice is no error. */
enum MHD_Result fed_post_revoke(struct coord_http *h, struct MHD_Connection *c,
                                const struct coord_call *q)
{
    const char *sid = q->arg[0];
    int64_t id = seg_id(sid);
    struct ud_err e = {0};
    sqlite3 *db = http_db_rw(h, &e);
    if (!db)
        return http_reply_db_error(h, c, &e);
    if (http_exec(db, "UPDATE devices SET revoked = 1 WHERE id = ?", "i", id) != 0)
        return http_db_fail(h, c, db, "revoke device");
    if (sqlite3_changes(db) == 0)
        return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no device '%.32s'", sid);
    struct ud_buf b = {0};
    ud_buf_printf(&b, "{\"id\":%" PRId64 ",\"revoked\":true}", id);
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* GET /v1/devices/{id}/task */
enum MHD_Result fed_get_task(struct coord_http *h, struct MHD_Connection *c,
                             const struct coord_call *q)
{
    const char *sid = q->arg[0];
    int64_t dev = q->device;
    device_touch(h, dev);
    int64_t want = seg_id(sid);
    if (want != dev)
        return http_reply_error(h, c, MHD_HTTP_FORBIDDEN,
                                "this token belongs to device %" PRId64 ", not to '%.32s'", dev,
                                sid);
    enum MHD_Result ret;
    sqlite3_stmt *st = http_select(
        h, c,
        "SELECT r.id, r.number, r.federation, r.base_version, r.deadline, f.spec, m.sha256,"
        " m.size" OPEN_TASKS_FROM " JOIN models m ON m.name = f.model AND m.version ="
        " r.base_version" OPEN_TASKS_WHERE " ORDER BY r.id LIMIT 1",
        "reading tasks", &ret);
    if (!st)
        return ret;
    sqlite3 *db = sqlite3_db_handle(st);
    sqlite3_bind_int64(st, 1, dev);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return http_queue(h, c, MHD_HTTP_NO_CONTENT, http_mem_response("", 0), NULL, NULL);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return http_db_fail(h, c, db, "reading tasks");
    }
    int64_t round = sqlite3_column_int64(st, 0), number = sqlite3_column_int64(st, 1),
            fed = sqlite3_column_int64(st, 2), base = sqlite3_column_int64(st, 3);
    double deadline = sqlite3_column_double(st, 4);
    const char *spec_text = (const char *)sqlite3_column_text(st, 5);
    char sha[65];
    snprintf(sha, sizeof sha, "%s", (const char *)sqlite3_column_text(st, 6));
    int64_t size = sqlite3_column_int64(st, 7);
    struct coord_fed_spec s;
    struct ud_err e = {0};
    int prc = coord_fed_spec_parse(spec_text, strlen(spec_text), &s, &e);
    sqlite3_finalize(st);
    if (prc)
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "federation %" PRId64 ": %s",
                                fed, e.msg);
    struct ud_buf b = {0};
    ud_buf_printf(&b,
                  "{\"federation\":%" PRId64 ",\"round\":%" PRId64 ",\"number\":%" PRId64
                  ",\"model\":{\"name\":",
                  fed, round, number);
    ud_json_str_buf(&b, s.model);
    ud_buf_printf(&b,
                  ",\"version\":%" PRId64 ",\"sha256\":\"%s\",\"size\":%" PRId64 ",\"url\":", base,
                  sha, size);
    char url[512];
    snprintf(url, sizeof url, "/v1/models/%s/versions/%" PRId64 "/file", s.model, base);
    ud_json_str_buf(&b, url);
    ud_buf_printf(&b, "},\"epochs\":%" PRId64 ",\"batch\":%" PRId64 ",\"lr\":", s.epochs, s.batch);
    http_json_num(&b, s.lr);
    ud_buf_puts(&b, ",\"max_norm\":");
    http_json_num(&b, s.max_norm);
    ud_buf_puts(&b, ",\"deadline\":");
    http_json_num(&b, deadline);
    ud_buf_printf(&b, ",\"upload\":\"/v1/rounds/%" PRId64 "/updates\"}", round);
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* ------------------------------------------------------------------ models */

enum MHD_Result fed_post_model(struct coord_http *h, struct MHD_Connection *c,
                               const struct coord_call *q)
{
    const char *name = q->arg[0], *body = q->body;
    size_t len = q->len;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.') ||
            p - name >= COORD_FED_NAME_MAX - 1)
            return http_reply_error(
                h, c, MHD_HTTP_BAD_REQUEST,
                "model names hold letters, digits, '-', '_' and '.' (at most %d)",
                COORD_FED_NAME_MAX - 1);
    struct ud_err e = {0};
    /* A plain .udm, or a sealed one: an encrypted upload must be under the coordinator's own
     * model key; the stored version is sealed with the coordinator's keys either way. */
    const struct coord_model_keys *k = http_keys(h);
    struct ud_seal_keys sk = {NULL, k && k->has_model ? &k->model : NULL};
    ud_model_t *m = ud_seal_decode_model(body ? body : "", len, &sk, NULL, &e);
    if (!m && e.code == UD_EWRONGKEY)
        return http_reply_error(h, c, HTTP_UNPROCESSABLE, "%s%s", e.msg,
                                sk.decrypt ? "" : " (start the coordinator with --model-key)");
    if (!m)
        return http_reply_error(h, c, HTTP_UNPROCESSABLE, "not a valid .udm: %s", e.msg);
    char sha[65];
    char *meta = coord_model_metadata_json(m);
    ud_model_destroy(&m);
    if (!meta)
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    size_t stored_len = 0;
    if (coord_store_put_model(http_state_dir(h), k, body, len, sha, &stored_len, &e) != 0) {
        free(meta);
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", e.msg);
    }
    sqlite3 *db = http_db_rw(h, &e);
    if (!db) {
        free(meta);
        return http_reply_db_error(h, c, &e);
    }
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        free(meta);
        return http_db_fail(h, c, db, "begin");
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
    int rc = v > 0 ? http_exec(db,
                               "INSERT INTO models (name, version, sha256, size, created, job,"
                               " metrics, lineage, metadata) VALUES (?, ?, ?, ?, ?, NULL, '{}',"
                               " '{\"base\":null,\"job\":null,\"uploaded\":true}', ?)",
                               "sisids", name, v, sha, (int64_t)stored_len, ud_clock_wall(), meta)
                   : -1;
    free(meta);
    if (rc != 0 || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, db, "register model");
    struct ud_buf b = {0};
    ud_buf_puts(&b, "{\"name\":");
    ud_json_str_buf(&b, name);
    ud_buf_printf(&b, ",\"version\":%" PRId64 ",\"sha256\":\"%s\",\"size\":%zu}", v, sha, len);
    return http_reply_json(h, c, MHD_HTTP_CREATED, &b);
}

/* ------------------------------------------------------------------ federations */

/* The federation's base model: the spec's version (or the latest), its file read to check
 * the update parameters against the model's allowed ranges now, not by every device later,
 * and the spec filled with the model's defaults. 0 with *version; 1: *ret refuses. */
static int fed_base_model(struct coord_http *h, struct MHD_Connection *c, sqlite3 *db,
                          struct coord_fed_spec *s, int64_t *version, enum MHD_Result *ret)
{
    struct ud_err e = {0};
    sqlite3_stmt *st = NULL;
    char sha[65] = "";
    if (sqlite3_prepare_v2(db,
                           "SELECT version, sha256 FROM models WHERE name = ?1 AND (?2 = 0 OR"
                           " version = ?2) ORDER BY version DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, s->model, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, s->version);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *version = sqlite3_column_int64(st, 0);
            snprintf(sha, sizeof sha, "%s", (const char *)sqlite3_column_text(st, 1));
        }
    }
    sqlite3_finalize(st);
    if (!*version) {
        if (s->version)
            *ret = http_reply_error(h, c, MHD_HTTP_NOT_FOUND,
                                    "model %s version %" PRId64 " is not registered", s->model,
                                    s->version);
        else
            *ret =
                http_reply_error(h, c, MHD_HTTP_NOT_FOUND,
                                 "model '%s' has no registered version (train one with a job, or "
                                 "POST /v1/models/%s/versions)",
                                 s->model, s->model);
        return 1;
    }
    ud_model_t *m = coord_store_read_model(http_state_dir(h), http_keys(h), sha, &e);
    if (!m) {
        *ret = http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "model %s version %" PRId64 ": %s", s->model, *version, e.msg);
        return 1;
    }
    if (ud_delta_size(m) == 0) {
        ud_model_destroy(&m);
        *ret = http_reply_error(h, c, HTTP_UNPROCESSABLE,
                                "model %s version %" PRId64
                                " has no updatable layer: devices could not change it",
                                s->model, *version);
        return 1;
    }
    const struct ud_update_defaults *d = ud_model_update_defaults_const(m);
    struct ud_update_params p;
    ud_update_params_default(&p);
    ud_update_defaults_to_params(d, &p);
    if (s->epochs)
        p.epochs = s->epochs;
    if (s->batch)
        p.mini_batch_size = s->batch;
    if (s->lr >= 0)
        p.learning_rate = s->lr;
    int rc = ud_update_params_check_model_ranges(&p, d, &e);
    ud_model_destroy(&m);
    if (rc) {
        *ret = http_reply_error(h, c, HTTP_UNPROCESSABLE,
                                "the model's update parameters do not allow this: %s", e.msg);
        return 1;
    }
    if (coord_fed_spec_fill(s, p.epochs, p.mini_batch_size, p.learning_rate, *version, &e) != 0) {
        *ret =
            http_reply_error(h, c, HTTP_UNPROCESSABLE,
                             "with the model's update defaults filled in, the spec is refused: %s "
                             "(give the key in the spec)",
                             e.msg);
        return 1;
    }
    return 0;
}

enum MHD_Result fed_post_federation(struct coord_http *h, struct MHD_Connection *c,
                                    const struct coord_call *q)
{
    struct coord_fed_spec s;
    struct ud_err e = {0};
    int rc = coord_fed_spec_parse(q->body ? q->body : "", q->len, &s, &e);
    if (rc == UD_ELIMIT)
        return http_reply_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "%s", e.msg);
    if (rc)
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST, "%s", e.msg);
    sqlite3 *db = http_db_rw(h, &e);
    if (!db)
        return http_reply_db_error(h, c, &e);
    int64_t version = 0;
    enum MHD_Result ret;
    if (fed_base_model(h, c, db, &s, &version, &ret) != 0)
        return ret;
    if (s.eval[0] && coord_spec_check_path("eval", s.eval, &e) != 0)
        return http_reply_error(h, c, MHD_HTTP_BAD_REQUEST, "%s", e.msg);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, db, "begin");
    int64_t id = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) + 1 FROM federations", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (!s.name[0])
        snprintf(s.name, sizeof s.name, "federation-%" PRId64, id);
    char *spec = coord_fed_spec_json(&s);
    double now = ud_clock_wall();
    rc = spec && id > 0 ? http_exec(db,
                                    "INSERT INTO federations (id, name, state, spec, model,"
                                    " base_version, current_version, rounds, round, created,"
                                    " updated) VALUES (?, ?, 'RUNNING', ?, ?, ?, ?, ?, 0, ?, ?)",
                                    "isssiiidd", id, s.name, spec, s.model, version, version,
                                    s.rounds, now, now)
                        : -1;
    free(spec);
    if (rc != 0 || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, db, "create federation");
    struct ud_buf b = {0};
    char url[64];
    snprintf(url, sizeof url, "/v1/federations/%" PRId64, id);
    ud_buf_printf(&b, "{\"id\":%" PRId64 ",\"name\":", id);
    ud_json_str_buf(&b, s.name);
    ud_buf_printf(&b, ",\"state\":\"RUNNING\",\"model\":");
    ud_json_str_buf(&b, s.model);
    ud_buf_printf(&b, ",\"base_version\":%" PRId64 ",\"url\":\"%s\"}", version, url);
    return http_reply_created(h, c, &b, url);
}

enum MHD_Result fed_post_cancel(struct coord_http *h, struct MHD_Connection *c,
                                const struct coord_call *q)
{
    int64_t id = seg_id(q->arg[0]);
    struct ud_err e = {0};
    sqlite3 *db = http_db_rw(h, &e);
    if (!db)
        return http_reply_db_error(h, c, &e);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, db, "begin");
    double now = ud_clock_wall();
    if (http_exec(db,
                  "UPDATE federations SET state = 'CANCELLED', message = 'cancelled over REST',"
                  " updated = ?, finished = ? WHERE id = ? AND state = 'RUNNING'",
                  "ddi", now, now, id) != 0)
        return http_db_fail(h, c, db, "cancel");
    int changed = sqlite3_changes(db);
    if (changed &&
        http_exec(db,
                  "UPDATE rounds SET state = 'CANCELLED', closed = coalesce(closed, ?), message ="
                  " 'federation cancelled' WHERE federation = ? AND state IN ('WAITING', 'OPEN',"
                  " 'CLOSING')",
                  "di", now, id) != 0)
        return http_db_fail(h, c, db, "cancel");
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return http_db_fail(h, c, db, "cancel");
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
            return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no federation %" PRId64, id);
        return http_reply_error(h, c, MHD_HTTP_CONFLICT, "federation %" PRId64 " is already %s", id,
                                state);
    }
    struct ud_buf b = {0};
    ud_buf_printf(&b, "{\"id\":%" PRId64 ",\"state\":\"CANCELLED\"}", id);
    return http_reply_json(h, c, MHD_HTTP_ACCEPTED, &b);
}

#define ROUND_COLS                                                                                 \
    "id, number, state, base_version, delta_floats, created, opened, deadline, closed, accepted,"  \
    " samples,"                                                                                    \
    " published_version, eval_accuracy, eval_loss, message"
#define ROUND_NAMES                                                                                \
    "id number state base_version delta_floats created opened deadline closed accepted samples "   \
    "published_version eval_accuracy eval_loss message"

/* A JSON array of the integers sql (one '?': id) yields. 0, or -1 on a database error. */
static int id_array(sqlite3 *db, const char *sql, int64_t id, struct ud_buf *b)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
    ud_buf_puts(b, "[");
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, id);
        for (int k = 0; (rc = sqlite3_step(q)) == SQLITE_ROW; k++)
            ud_buf_printf(b, "%s%lld", k ? "," : "", (long long)sqlite3_column_int64(q, 0));
    }
    sqlite3_finalize(q);
    ud_buf_puts(b, "]");
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The round object at st's current row (ROUND_COLS), with participants and rejections. */
static int round_json(sqlite3 *db, sqlite3_stmt *st, struct ud_buf *b)
{
    int64_t id = sqlite3_column_int64(st, 0);
    ud_buf_puts(b, "{");
    http_json_cols(b, st, 0, ROUND_NAMES);
    ud_buf_puts(b, ",\"participants\":");
    if (id_array(db, "SELECT device FROM participants WHERE round = ? ORDER BY device", id, b))
        return -1;
    ud_buf_puts(b, ",\"contributors\":");
    if (id_array(db, "SELECT device FROM updates WHERE round = ? ORDER BY device", id, b))
        return -1;
    ud_buf_puts(b, ",\"failed\":");
    if (id_array(db, "SELECT device FROM failures WHERE round = ? ORDER BY device", id, b))
        return -1;
    sqlite3_stmt *q = NULL;
    int rc;
    ud_buf_puts(b, ",\"rejected\":{");
    rc = sqlite3_prepare_v2(
        db, "SELECT reason, count FROM rejections WHERE round = ? ORDER BY reason", -1, &q, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, id);
        for (int k = 0; (rc = sqlite3_step(q)) == SQLITE_ROW; k++) {
            ud_buf_puts(b, k ? "," : "");
            ud_json_str_buf(b, (const char *)sqlite3_column_text(q, 0));
            ud_buf_printf(b, ":%lld", (long long)sqlite3_column_int64(q, 1));
        }
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return -1;
    ud_buf_puts(b, "}}");
    return 0;
}

#define FED_COLS                                                                                   \
    "id, name, state, model, base_version, current_version, rounds, round, message, created,"      \
    " updated, finished, spec"
#define FED_NAMES                                                                                  \
    "id name state model base_version current_version rounds round message created updated "       \
    "finished @spec"

enum MHD_Result fed_get_federations(struct coord_http *h, struct MHD_Connection *c,
                                    const struct coord_call *q)
{
    struct ud_err e = {0};
    sqlite3 *db = http_db_ro(h, &e);
    if (!db)
        return http_reply_db_error(h, c, &e);
    sqlite3_stmt *st = NULL;
    struct ud_buf b = {0};
    if (!q->arg[0]) {
        if (sqlite3_prepare_v2(db, "SELECT " FED_COLS " FROM federations ORDER BY id", -1, &st,
                               NULL) != SQLITE_OK)
            return http_db_fail(h, c, db, "reading federations");
        ud_buf_puts(&b, "{\"federations\":");
        int rc = http_json_rows(&b, st, FED_NAMES, NULL);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            ud_buf_free(&b);
            return http_db_fail(h, c, db, "reading federations");
        }
        ud_buf_puts(&b, "}");
        return http_reply_json(h, c, MHD_HTTP_OK, &b);
    }
    int64_t id = seg_id(q->arg[0]);
    if (sqlite3_prepare_v2(db, "SELECT " FED_COLS " FROM federations WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return http_db_fail(h, c, db, "reading federations");
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE)
            return http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no federation '%.32s'", q->arg[0]);
        return http_db_fail(h, c, db, "reading federations");
    }
    ud_buf_puts(&b, "{");
    http_json_cols(&b, st, 0, FED_NAMES);
    sqlite3_finalize(st);
    ud_buf_puts(&b, ",\"rounds_detail\":[");
    if (sqlite3_prepare_v2(db,
                           "SELECT " ROUND_COLS " FROM rounds WHERE federation = ? ORDER BY number",
                           -1, &st, NULL) != SQLITE_OK) {
        ud_buf_free(&b);
        return http_db_fail(h, c, db, "reading rounds");
    }
    sqlite3_bind_int64(st, 1, id);
    for (int k = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; k++) {
        ud_buf_puts(&b, k ? "," : "");
        if (round_json(db, st, &b) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        ud_buf_free(&b);
        return http_db_fail(h, c, db, "reading rounds");
    }
    ud_buf_puts(&b, "]}");
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

enum MHD_Result fed_get_round(struct coord_http *h, struct MHD_Connection *c,
                              const struct coord_call *q)
{
    enum MHD_Result ret;
    sqlite3_stmt *st = http_select(
        h, c, "SELECT " ROUND_COLS ", federation FROM rounds WHERE id = ?", "reading rounds", &ret);
    if (!st)
        return ret;
    sqlite3 *db = sqlite3_db_handle(st);
    sqlite3_bind_int64(st, 1, seg_id(q->arg[0]));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return rc == SQLITE_DONE
                   ? http_reply_error(h, c, MHD_HTTP_NOT_FOUND, "no round '%.32s'", q->arg[0])
                   : http_db_fail(h, c, db, "reading rounds");
    }
    struct ud_buf b = {0};
    rc = round_json(db, st, &b);
    if (rc == 0) { /* add the federation inside the object */
        b.len--;
        ud_buf_printf(&b, ",\"federation\":%lld}", (long long)sqlite3_column_int64(st, 15));
    }
    sqlite3_finalize(st);
    if (rc != 0) {
        ud_buf_free(&b);
        return http_db_fail(h, c, db, "reading rounds");
    }
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
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
    sqlite3 *db = http_db_rw(h, &e);
    if (!db || round <= 0)
        return;
    pthread_mutex_lock(&http_write_lock);
    http_exec(db,
              "INSERT INTO rejections (round, reason, count) SELECT ?1, ?2, 1 WHERE EXISTS"
              " (SELECT 1 FROM rounds WHERE id = ?1) ON CONFLICT (round, reason) DO UPDATE"
              " SET count = count + 1",
              "is", round, reason);
    pthread_mutex_unlock(&http_write_lock);
}

size_t fed_update_cap(struct coord_http *h, const struct coord_call *q)
{
    struct ud_err e = {0};
    sqlite3 *db = http_db_ro(h, &e);
    struct round_info ri;
    if (db && round_info(db, seg_id(q->arg[0]), &ri) == 1 && ri.delta_floats > 0 &&
        (uint64_t)ri.delta_floats < (UPDATE_CAP - UPDATE_SLACK) / 4)
        return (size_t)ri.delta_floats * 4 + UPDATE_SLACK;
    return UPDATE_CAP;
}

/* Writes the delta to STATE/<rel> durably (ud_file_write_atomic), making STATE/rounds/<round>
 * first. Little-endian on disk: this host is (x86-64, aarch64); ud_delta decoded to host
 * floats. */
static int write_delta(const char *state, int64_t round, const char *rel, const float *d, size_t n,
                       struct ud_err *e)
{
    char dir[4096 + 64], path[4096 + 256];
    snprintf(dir, sizeof dir, "%s/rounds/%" PRId64, state, round);
    snprintf(path, sizeof path, "%s/%s", state, rel);
    if (ud_file_mkdirs(dir, NULL, e) != 0)
        return e->code;
    return ud_file_write_atomic(path, d, n * sizeof *d, e);
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

/* A refusal of an upload, counted against the round under its reason. */
#define refuse_update(h, c, round, code, reason, ...)                                              \
    (count_rejection(h, round, reason), http_reply_reason(h, c, code, reason, __VA_ARGS__))

static enum MHD_Result answer_existing(struct coord_http *h, struct MHD_Connection *c,
                                       int64_t round, const char *have_key, const char *key)
{
    if (strcmp(have_key, key) == 0) {
        count_rejection(h, round, "duplicate");
        struct ud_buf b = {0};
        ud_buf_printf(&b, "{\"status\":\"duplicate\",\"round\":%" PRId64 ",\"key\":", round);
        ud_json_str_buf(&b, key);
        ud_buf_puts(&b, "}");
        return http_reply_json(h, c, MHD_HTTP_OK, &b);
    }
    return refuse_update(
        h, c, round, MHD_HTTP_CONFLICT, "conflict",
        "this device already contributed to round %" PRId64 " with another idempotency key", round);
}

/* An upload on its way in: what its checks, its file and its row share. */
struct upload {
    int64_t round, dev;
    struct round_info ri;
    struct ud_update_msg msg;
    float *delta; /* decoded: msg.n floats */
    double norm;
    char rel[512]; /* its delta file, under the state directory */
};

/* Is the device sampled for the round? */
static int selected_for(sqlite3 *db, int64_t round, int64_t dev)
{
    sqlite3_stmt *st = NULL;
    int selected = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM participants WHERE round = ? AND device = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, round);
        sqlite3_bind_int64(st, 2, dev);
        selected = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return selected;
}

/* The upload against the round's state and figures: open, same base version, the delta's
 * length, finite and within the norm bound (u->norm set). 0: fine; 1: *ret refuses it. */
static int update_check_content(struct coord_http *h, struct MHD_Connection *c, struct upload *u,
                                enum MHD_Result *ret)
{
    int64_t round = u->round;
    const struct round_info *ri = &u->ri;
    if (strcmp(ri->state, "OPEN") != 0) {
        *ret = refuse_update(h, c, round, MHD_HTTP_CONFLICT, "closed",
                             "round %" PRId64 " is %s: it takes no more updates", round, ri->state);
        return 1;
    }
    if (u->msg.base_version != ri->base_version) {
        *ret = refuse_update(h, c, round, MHD_HTTP_CONFLICT, "stale",
                             "the update is against version %" PRId64 "; round %" PRId64
                             " is based on version %" PRId64,
                             u->msg.base_version, round, ri->base_version);
        return 1;
    }
    if ((int64_t)u->msg.n != ri->delta_floats) {
        *ret = refuse_update(h, c, round, HTTP_UNPROCESSABLE, "shape",
                             "the delta has %zu floats; round %" PRId64 " takes %" PRId64, u->msg.n,
                             round, ri->delta_floats);
        return 1;
    }
    struct ud_err e = {0};
    int rc = ud_delta_check(u->delta, u->msg.n, ri->max_norm, &u->norm, &e);
    if (rc) {
        const char *reason = rc == UD_ENONFINITE ? "nonfinite" : "norm";
        *ret = refuse_update(h, c, round, HTTP_UNPROCESSABLE, reason, "%s", e.msg);
        return 1;
    }
    return 0;
}

/* Checks a decoded upload against its round: sender, selection, replay, a re-sent upload,
 * state, base version, shape, norm (u->norm set). 0: it may be stored; 1: *ret answers it. */
static int update_check(struct coord_http *h, struct MHD_Connection *c, sqlite3 *ro,
                        struct upload *u, enum MHD_Result *ret)
{
    int64_t round = u->round, dev = u->dev;
    const struct ud_update_msg *m = &u->msg;
    char have_key[UD_UPDATE_KEY_MAX + 1], have_path[512];
    *ret = MHD_NO;
    if (m->round != round) {
        *ret = refuse_update(h, c, round, HTTP_UNPROCESSABLE, "malformed",
                             "the message is for round %" PRId64 ", posted to round %" PRId64,
                             m->round, round);
        return 1;
    }
    if (!selected_for(ro, round, dev)) {
        *ret = refuse_update(h, c, round, MHD_HTTP_CONFLICT, "not_selected",
                             "device %" PRId64 " was not sampled for round %" PRId64, dev, round);
        return 1;
    }
    /* Another device's upload (its key), replayed under this device's token. */
    int64_t key_round = 0, owner = key_owner(ro, m->key, &key_round);
    if (owner < 0) {
        *ret = http_db_fail(h, c, ro, "reading updates");
        return 1;
    }
    if (owner && (owner != dev || key_round != round)) {
        *ret = refuse_update(h, c, round, MHD_HTTP_CONFLICT, "replayed",
                             "key '%s' was already used by device %" PRId64 " in round %" PRId64
                             ": a replayed upload",
                             m->key, owner, key_round);
        return 1;
    }
    /* A re-sent upload is answered the same whatever the round's state now. */
    int ex =
        existing_update(ro, round, dev, have_key, sizeof have_key, have_path, sizeof have_path);
    if (ex) {
        *ret = ex < 0 ? http_db_fail(h, c, ro, "reading updates")
                      : answer_existing(h, c, round, have_key, m->key);
        return 1;
    }
    return update_check_content(h, c, u, ret);
}

/* Under the write lock, before the row: is the round still open, and did no twin upload of
 * this device commit meanwhile? 0: go on; 1: rolled back, *ret answers (and the delta file
 * goes unless a committed row names it). */
static int update_recheck(struct coord_http *h, struct MHD_Connection *c, sqlite3 *db,
                          const struct upload *u, enum MHD_Result *ret)
{
    char state[16] = "", have_key[UD_UPDATE_KEY_MAX + 1], have_path[512];
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT state FROM rounds WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, u->round);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    int ex = existing_update(db, u->round, u->dev, have_key, sizeof have_key, have_path,
                             sizeof have_path);
    if (ex == 0 && strcmp(state, "OPEN") == 0)
        return 0;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (ex < 0) {
        *ret = http_reply_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database: try again");
        return 1;
    }
    if (ex == 0 || strcmp(have_path, u->rel) != 0) {
        char p[4096 + 600];
        snprintf(p, sizeof p, "%s/%s", http_state_dir(h), u->rel);
        unlink(p);
    }
    if (ex)
        *ret = answer_existing(h, c, u->round, have_key, u->msg.key);
    else
        *ret = refuse_update(h, c, u->round, MHD_HTTP_CONFLICT, "closed",
                             "round %" PRId64 " closed while the update arrived", u->round);
    return 1;
}

/* Under the write lock: the update's row and the round's and device's counters in one
 * transaction. 0 with *accepted (the round's count now); 1: *ret answers. */
static int update_commit(struct coord_http *h, struct MHD_Connection *c, sqlite3 *db,
                         const struct upload *u, int64_t *accepted, enum MHD_Result *ret)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        *ret = http_db_fail(h, c, db, "begin");
        return 1;
    }
    if (update_recheck(h, c, db, u, ret))
        return 1;
    const struct ud_update_msg *m = &u->msg;
    double now = ud_clock_wall();
    if (http_exec(db,
                  "INSERT INTO updates (round, device, key, samples, loss, accuracy, norm, path,"
                  " received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  "iisidddsd", u->round, u->dev, m->key, m->samples, m->loss, m->accuracy, u->norm,
                  u->rel, now) != 0 ||
        http_exec(db,
                  "UPDATE rounds SET accepted = accepted + 1, samples = samples + ? WHERE id = ?",
                  "ii", m->samples, u->round) != 0 ||
        http_exec(db, "UPDATE devices SET updates = updates + 1, last_seen = ? WHERE id = ?", "di",
                  now, u->dev) != 0) {
        *ret = http_db_fail(h, c, db, "record update");
        return 1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT accepted FROM rounds WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, u->round);
        if (sqlite3_step(st) == SQLITE_ROW)
            *accepted = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        *ret = http_db_fail(h, c, db, "record update");
        return 1;
    }
    return 0;
}

/* Stores a checked upload: durable first, then the row, so an acknowledged update survives a
 * crash. The file name carries a hash of the key, so two different uploads never share one. */
static enum MHD_Result update_store(struct coord_http *h, struct MHD_Connection *c,
                                    struct upload *u)
{
    struct ud_err e = {0};
    unsigned char kh[8];
    char khex[17];
    crypto_generichash(kh, sizeof kh, (const unsigned char *)u->msg.key, strlen(u->msg.key), NULL,
                       0);
    sodium_bin2hex(khex, sizeof khex, kh, sizeof kh);
    snprintf(u->rel, sizeof u->rel, "rounds/%" PRId64 "/%" PRId64 "-%s.delta", u->round, u->dev,
             khex);
    if (write_delta(http_state_dir(h), u->round, u->rel, u->delta, u->msg.n, &e) != 0)
        return http_reply_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", e.msg);
    sqlite3 *db = http_db_rw(h, &e);
    if (!db)
        return http_reply_db_error(h, c, &e);
    enum MHD_Result ret = MHD_NO;
    int64_t accepted = 0;
    pthread_mutex_lock(&http_write_lock);
    int refused = update_commit(h, c, db, u, &accepted, &ret);
    pthread_mutex_unlock(&http_write_lock);
    if (refused)
        return ret;
    struct ud_buf b = {0};
    ud_buf_printf(
        &b, "{\"status\":\"accepted\",\"round\":%" PRId64 ",\"accepted\":%" PRId64 ",\"norm\":",
        u->round, accepted);
    http_json_num(&b, u->norm);
    ud_buf_puts(&b, "}");
    return http_reply_json(h, c, MHD_HTTP_OK, &b);
}

/* POST /v1/rounds/{id}/updates (a device's token): a delta for a round it was sampled for. */
enum MHD_Result fed_post_update(struct coord_http *h, struct MHD_Connection *c,
                                const struct coord_call *q)
{
    struct upload u = {.round = seg_id(q->arg[0]), .dev = q->device}; /* last_seen: with it */
    struct ud_err e = {0};
    sqlite3 *ro = http_db_ro(h, &e);
    if (!ro)
        return http_reply_db_error(h, c, &e);
    int have = round_info(ro, u.round, &u.ri);
    if (have < 0)
        return http_db_fail(h, c, ro, "reading rounds");
    if (!have)
        return http_reply_reason(h, c, MHD_HTTP_NOT_FOUND, "unknown_round", "no round '%.32s'",
                                 q->arg[0]);
    if (q->too_big)
        return refuse_update(
            h, c, u.round, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
            "an update of round %" PRId64 " is at most %zu bytes (%" PRId64 " floats)", u.round,
            (size_t)u.ri.delta_floats * 4 + UPDATE_SLACK, u.ri.delta_floats);
    int rc = ud_update_msg_decode(q->body ? q->body : "", q->len, (size_t)u.ri.delta_floats, &u.msg,
                                  &u.delta, &e);
    if (rc == UD_ELIMIT)
        return refuse_update(h, c, u.round, HTTP_UNPROCESSABLE, "shape",
                             "round %" PRId64 " takes deltas of %" PRId64 " floats: %s", u.round,
                             u.ri.delta_floats, e.msg);
    if (rc)
        return refuse_update(h, c, u.round, HTTP_UNPROCESSABLE, "malformed",
                             "not an update message: %s", e.msg);
    enum MHD_Result ret;
    if (update_check(h, c, ro, &u, &ret) == 0)
        ret = update_store(h, c, &u);
    free(u.delta);
    return ret;
}

/* POST /v1/rounds/{id}/failures: a sampled device says it cannot contribute (its update
 * failed: bad local data, a parameter it cannot use). The round stops waiting for it: it
 * closes once every sampled device has sent an update or such a report. */
enum MHD_Result fed_post_failure(struct coord_http *h, struct MHD_Connection *c,
                                 const struct coord_call *q)
{
    const char *sid = q->arg[0], *body = q->body;
    size_t len = q->len;
    int64_t round = seg_id(sid);
    int64_t dev = q->device;
    device_touch(h, dev);
    char reason[COORD_FED_REASON_MAX + 1] = "";
    struct ud_err pe = {0};
    if (coord_fed_failure_parse(body, len, reason, &pe) != 0)
        return http_reply_reason(h, c, HTTP_UNPROCESSABLE, "malformed", "%s", pe.msg);
    struct ud_err e = {0};
    sqlite3 *db = http_db_rw(h, &e);
    if (!db)
        return http_reply_db_error(h, c, &e);
    pthread_mutex_lock(&http_write_lock);
    enum MHD_Result ret;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        ret = http_db_fail(h, c, db, "begin");
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
            ret = http_reply_reason(h, c, MHD_HTTP_NOT_FOUND, "unknown_round", "no round '%.32s'",
                                    sid);
        else if (!selected)
            ret = http_reply_reason(h, c, MHD_HTTP_CONFLICT, "not_selected",
                                    "device %" PRId64 " was not sampled for round %" PRId64, dev,
                                    round);
        else if (contributed)
            ret = http_reply_reason(h, c, MHD_HTTP_CONFLICT, "conflict",
                                    "device %" PRId64 " already contributed to round %" PRId64, dev,
                                    round);
        else
            ret = http_reply_reason(h, c, MHD_HTTP_CONFLICT, "closed", "round %" PRId64 " is %s",
                                    round, state);
        goto out;
    }
    if (http_exec(
            db, "INSERT OR IGNORE INTO failures (round, device, reason, time) VALUES (?, ?, ?, ?)",
            "iisd", round, dev, reason, ud_clock_wall()) != 0 ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ret = http_db_fail(h, c, db, "record failure");
        goto out;
    }
    struct ud_buf b = {0};
    ud_buf_printf(&b, "{\"status\":\"recorded\",\"round\":%" PRId64 "}", round);
    ret = http_reply_json(h, c, MHD_HTTP_OK, &b);
out:
    pthread_mutex_unlock(&http_write_lock);
    return ret;
}

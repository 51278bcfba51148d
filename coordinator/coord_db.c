/*  coord_db.c — opening (and creating, and migrating) the coordinator's SQLite database, the
 *  statement and transaction helpers every module writes with, and the model registry's rows.
 *
 *  The schema is the one coord_db.h describes, created with CREATE ... IF NOT EXISTS inside one
 *  transaction that also sets PRAGMA user_version, so a half-created database never exists.
 *  Connections are opened in SQLite's multi-thread mode (NOMUTEX): each belongs to one thread,
 *  as the header says, so SQLite's own per-call mutex would only cost time.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coord_db.h"

/* Version 1. Every table a job owns references it; events may name no job (coordinator-wide
 * ones) or a job id a peer made up (a dropped message), so they do not. */
static const char SCHEMA_V1[] =
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id TEXT PRIMARY KEY,"
    " seq INTEGER UNIQUE NOT NULL,"
    " name TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('PENDING','RUNNING','RESTARTING','SUCCEEDED',"
    "'FAILED','CANCELLED')),"
    " spec TEXT NOT NULL,"
    " np INTEGER,"
    " launch INTEGER NOT NULL,"
    " message TEXT,"
    " created REAL, started REAL, updated REAL, finished REAL,"
    " epochs INTEGER, epoch INTEGER, iteration INTEGER, steps_per_epoch INTEGER,"
    " total_steps INTEGER,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " restarts INTEGER NOT NULL DEFAULT 0,"
    " pid INTEGER,"
    " session TEXT,"
    " resume_from TEXT,"
    " restarting_since REAL,"
    " model_version INTEGER,"
    " plan BLOB);"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);"
    "CREATE TABLE IF NOT EXISTS ranks ("
    " job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
    " rank INTEGER NOT NULL, host TEXT, pid INTEGER, step INTEGER, last_heartbeat REAL,"
    " PRIMARY KEY (job, rank)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS metrics ("
    " job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
    " key TEXT NOT NULL, step INTEGER NOT NULL, value REAL, time REAL,"
    " PRIMARY KEY (job, key, step)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS checkpoints ("
    " job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
    " iteration INTEGER NOT NULL, epoch INTEGER, minibatch INTEGER, path TEXT, time REAL,"
    " PRIMARY KEY (job, iteration)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS models ("
    " name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,"
    " created REAL, job TEXT REFERENCES jobs (id) ON DELETE SET NULL,"
    " metrics TEXT, lineage TEXT, metadata TEXT,"
    " PRIMARY KEY (name, version)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS models_job ON models (job);"
    "CREATE TABLE IF NOT EXISTS events ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " job TEXT, time REAL, kind TEXT, message TEXT);"
    "CREATE INDEX IF NOT EXISTS events_job ON events (job, seq);"
    /* Version 2: federations. */
    "CREATE TABLE IF NOT EXISTS devices ("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " token_hash BLOB NOT NULL,"
    " created REAL, last_seen REAL,"
    " updates INTEGER NOT NULL DEFAULT 0,"
    " revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS federations ("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('RUNNING','SUCCEEDED','FAILED','CANCELLED')),"
    " spec TEXT NOT NULL,"
    " model TEXT NOT NULL, base_version INTEGER NOT NULL, current_version INTEGER NOT NULL,"
    " rounds INTEGER NOT NULL, round INTEGER NOT NULL DEFAULT 0,"
    " message TEXT, created REAL, updated REAL, finished REAL);"
    "CREATE TABLE IF NOT EXISTS rounds ("
    " id INTEGER PRIMARY KEY,"
    " federation INTEGER NOT NULL REFERENCES federations (id) ON DELETE CASCADE,"
    " number INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('WAITING','OPEN','CLOSING','PUBLISHED','FAILED',"
    "'CANCELLED')),"
    " base_version INTEGER NOT NULL, delta_floats INTEGER NOT NULL,"
    " created REAL, opened REAL, deadline REAL, closed REAL,"
    " accepted INTEGER NOT NULL DEFAULT 0, samples INTEGER NOT NULL DEFAULT 0,"
    " published_version INTEGER, eval_accuracy REAL, eval_loss REAL, message TEXT,"
    " UNIQUE (federation, number));"
    "CREATE TABLE IF NOT EXISTS participants ("
    " round INTEGER NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,"
    " device INTEGER NOT NULL REFERENCES devices (id),"
    " PRIMARY KEY (round, device)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS updates ("
    " round INTEGER NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,"
    " device INTEGER NOT NULL REFERENCES devices (id),"
    " key TEXT NOT NULL, samples INTEGER NOT NULL, loss REAL, accuracy REAL, norm REAL,"
    " path TEXT NOT NULL, received REAL,"
    " PRIMARY KEY (round, device)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS updates_key ON updates (key);"
    "CREATE TABLE IF NOT EXISTS failures ("
    " round INTEGER NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,"
    " device INTEGER NOT NULL REFERENCES devices (id),"
    " reason TEXT, time REAL,"
    " PRIMARY KEY (round, device)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS rejections ("
    " round INTEGER NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,"
    " reason TEXT NOT NULL, count INTEGER NOT NULL,"
    " PRIMARY KEY (round, reason)) WITHOUT ROWID;"
    /* Version 4: the Slurm job of a job launched through Slurm. */
    "CREATE TABLE IF NOT EXISTS slurm_jobs ("
    " job TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,"
    " slurm_id TEXT NOT NULL, state TEXT NOT NULL, script TEXT,"
    " submitted REAL, updated REAL, scancelled INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;";

int coord_db_err(sqlite3 *db, struct ud_err *e, const char *what)
{
    return ud_err_set(e, UD_EIO, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

/* One integer from a statement that yields one row (a PRAGMA). */
static int query_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int create_schema(sqlite3 *db, const char *path, struct ud_err *e)
{
    char *msg = NULL;
    char sql[sizeof SCHEMA_V1 + 128];
    snprintf(sql, sizeof sql, "BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;", SCHEMA_V1,
             COORD_DB_SCHEMA_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ud_err_set(e, UD_EIO, "%s: cannot create the schema: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return UD_EIO;
    }
    return 0;
}

int coord_db_open(const char *state_dir, int readonly, sqlite3 **db, struct ud_err *e)
{
    *db = NULL;
    char path[4096];
    if (!state_dir || !*state_dir)
        return ud_err_set(e, UD_EINVAL, "coord_db_open: no state directory");
    if ((size_t)snprintf(path, sizeof path, "%s/%s", state_dir, COORD_DB_FILE) >= sizeof path)
        return ud_err_set(e, UD_EINVAL, "%s: state directory path too long", state_dir);
    if (!readonly && mkdir(state_dir, 0700) != 0 && errno != EEXIST)
        return ud_err_set(e, UD_EIO, "%s: cannot create the state directory: %s", state_dir,
                          strerror(errno));

    int flags = SQLITE_OPEN_NOMUTEX |
                (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite3 *h = NULL;
    int rc = sqlite3_open_v2(path, &h, flags, NULL);
    if (rc != SQLITE_OK) {
        ud_err_set(e, UD_EIO, "%s: cannot open: %s", path,
                   h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
        sqlite3_close(h);
        return UD_EIO;
    }
    sqlite3_extended_result_codes(h, 1);
    sqlite3_busy_timeout(h, 5000);

    int ret = 0, version = 0;
    /* A read-only connection cannot switch the journal mode; the writer set WAL already. */
    const char *pragmas = readonly ? "PRAGMA foreign_keys = ON;"
                                   : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                                     " PRAGMA foreign_keys = ON;";
    char *msg = NULL;
    if (sqlite3_exec(h, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        ret = ud_err_set(e, UD_EIO, "%s: %s", path, msg ? msg : sqlite3_errmsg(h));
        sqlite3_free(msg);
        goto out_close;
    }
    if (query_int(h, "PRAGMA user_version", &version) != SQLITE_OK) {
        ret = ud_err_set(e, UD_EIO, "%s: cannot read the schema version: %s", path,
                         sqlite3_errmsg(h));
        goto out_close;
    }
    if (version > COORD_DB_SCHEMA_VERSION) {
        ret = ud_err_set(e, UD_EVERSION,
                         "%s: schema version %d is newer than this coordinator's (%d): run a "
                         "newer updraft-coordinator",
                         path, version, COORD_DB_SCHEMA_VERSION);
        goto out_close;
    }
    if (version < COORD_DB_SCHEMA_VERSION) {
        if (readonly) {
            ret = ud_err_set(e, UD_EIO, "%s: no schema yet (the coordinator creates it)", path);
            goto out_close;
        }
        if ((ret = create_schema(h, path, e)) != 0)
            goto out_close;
    }
    *db = h;
    return 0;

out_close:
    sqlite3_close(h);
    return ret;
}

void coord_db_close(sqlite3 **db)
{
    if (!db || !*db)
        return;
    sqlite3_close_v2(*db);
    *db = NULL;
}

int coord_job_state_terminal(const char *state)
{
    return state && (strcmp(state, "SUCCEEDED") == 0 || strcmp(state, "FAILED") == 0 ||
                     strcmp(state, "CANCELLED") == 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Statements and transactions                                                                 */
/* ------------------------------------------------------------------------------------------ */

int coord_db_run(sqlite3 *db, struct ud_err *e, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(db, e, "database");
    va_list ap;
    va_start(ap, types);
    int i = 1, rc = SQLITE_OK;
    for (const char *t = types; *t && rc == SQLITE_OK; t++, i++) {
        switch (*t) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
            break;
        case 'd':
            rc = sqlite3_bind_double(st, i, va_arg(ap, double));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            rc = sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)n, SQLITE_TRANSIENT);
            break;
        }
        default:
            rc = sqlite3_bind_null(st, i);
            break;
        }
    }
    va_end(ap);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
    }
    int ret = (rc == SQLITE_DONE) ? sqlite3_changes(db) : coord_db_err(db, e, "database");
    sqlite3_finalize(st);
    return ret;
}

int coord_db_begin(sqlite3 *db, struct ud_err *e)
{
    return coord_db_run(db, e, "BEGIN IMMEDIATE", "") < 0 ? UD_EIO : 0;
}

int coord_db_commit(sqlite3 *db, struct ud_err *e)
{
    if (coord_db_run(db, e, "COMMIT", "") < 0) {
        coord_db_rollback(db);
        return UD_EIO;
    }
    return 0;
}

void coord_db_rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int coord_db_end(sqlite3 *db, int rc, struct ud_err *e)
{
    if (rc < 0) {
        coord_db_rollback(db);
        return rc;
    }
    return coord_db_commit(db, e) ? UD_EIO : rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The model registry                                                                          */
/* ------------------------------------------------------------------------------------------ */

int coord_db_model_sha(sqlite3 *db, const char *name, int64_t version, char sha256[65],
                       struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT sha256 FROM models WHERE name = ? AND version = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return coord_db_err(db, e, "reading the registry");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, version);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW)
        snprintf(sha256, 65, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (rc == SQLITE_DONE)
        ret = ud_err_set(e, UD_ENOTFOUND, "model %s version %lld is not registered", name,
                         (long long)version);
    else
        ret = coord_db_err(db, e, "reading the registry");
    sqlite3_finalize(st);
    return ret;
}

int64_t coord_db_model_next_version(sqlite3 *db, const char *name, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(db, e, "reading the registry");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0)
                                               : coord_db_err(db, e, "reading the registry");
    sqlite3_finalize(st);
    return v;
}

int coord_db_model_insert(sqlite3 *db, const struct coord_db_model_row *row, struct ud_err *e)
{
    return coord_db_run(db, e,
                        "INSERT INTO models (name, version, sha256, size, created, job, metrics,"
                        " lineage, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "sisidssss", row->name, row->version, row->sha256, row->size, row->created,
                        row->job, row->metrics, row->lineage, row->metadata);
}

static void json_set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

char *coord_model_metadata_json(const ud_model_t *m)
{
    json_t *o = json_object();
    const struct ud_metadata *md = ud_model_metadata_const(m);
    json_set_str(o, "description", md->short_description);
    json_set_str(o, "author", md->author);
    json_set_str(o, "license", md->license);
    json_set_str(o, "version", md->version);
    json_t *labels = json_array();
    for (int i = 0; i < ud_model_num_classes(m); i++)
        json_array_append_new(labels, json_string(ud_model_label(m, i)));
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "parameters", json_integer((json_int_t)ud_model_param_count(m)));
    if (md->nadditional) {
        json_t *add = json_object();
        for (size_t i = 0; i < md->nadditional; i++)
            json_set_str(add, md->additional[i].key, md->additional[i].value);
        json_object_set_new(o, "additional", add);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

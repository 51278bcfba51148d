/*  coord_fed.c — federations on the coordinator's main thread: the round state machine,
 *  client sampling, streaming FedAvg aggregation, publishing and scoring (coord_fed.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord_db.h"
#include "coord_fed.h"
#include "coord_log.h"
#include "coord_store.h"
#include "updraft/ud_data.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_eval.h"
#include "updraft/ud_rng.h"
#include "updraft/ud_udm.h"

/* ------------------------------------------------------------------------------------------ */
/* Specs                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static int spec_int(json_t *v, const char *k, int64_t lo, int64_t hi, int64_t *out,
                    struct ud_err *e)
{
    if (!json_is_integer(v))
        return ud_err_set(e, UD_EINVAL, "'%s' must be an integer", k);
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return ud_err_set(e, UD_EINVAL,
                          "'%s' is %" PRId64 ": must be in [%" PRId64 ", %" PRId64 "]", k, x, lo,
                          hi);
    *out = x;
    return 0;
}

static int spec_num(json_t *v, const char *k, double lo, double hi, double *out, struct ud_err *e)
{
    if (!json_is_number(v))
        return ud_err_set(e, UD_EINVAL, "'%s' must be a number", k);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return ud_err_set(e, UD_EINVAL, "'%s' is %g: must be in [%g, %g]", k, x, lo, hi);
    *out = x;
    return 0;
}

static int spec_str(json_t *v, const char *k, char *out, size_t n, struct ud_err *e)
{
    if (!json_is_string(v))
        return ud_err_set(e, UD_EINVAL, "'%s' must be a string", k);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len >= n || strlen(s) != len)
        return ud_err_set(e, UD_EINVAL, "'%s' must be a string of at most %zu bytes", k, n - 1);
    memcpy(out, s, len + 1);
    return 0;
}

/* Registry names: what the model routes accept in a URL segment. */
static int name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

int coord_fed_enrol_parse(const char *body, size_t len, char name[COORD_FED_NAME_MAX],
                          int64_t *count, struct ud_err *e)
{
    name[0] = '\0';
    *count = 0;
    if (!len)
        return 0;
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return ud_err_set(e, UD_EINVAL, "expected a JSON object like {\"name\": \"phone-17\"}");
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "name") == 0 && json_is_string(v) &&
            json_string_length(v) < COORD_FED_NAME_MAX && json_string_length(v) > 0)
            snprintf(name, COORD_FED_NAME_MAX, "%s", json_string_value(v));
        else if (strcmp(k, "count") == 0 && json_is_integer(v) && json_integer_value(v) >= 1 &&
                 json_integer_value(v) <= COORD_FED_ENROL_MAX)
            *count = json_integer_value(v);
        else {
            ud_err_set(e, UD_EINVAL,
                       "'%.64s': expected \"name\" (a string of 1..%d bytes) or \"count\" "
                       "(1..%d)",
                       k, COORD_FED_NAME_MAX - 1, COORD_FED_ENROL_MAX);
            json_decref(o);
            name[0] = '\0';
            *count = 0;
            return UD_EINVAL;
        }
    }
    json_decref(o);
    return 0;
}

int coord_fed_failure_parse(const char *body, size_t len, char reason[COORD_FED_REASON_MAX + 1],
                            struct ud_err *e)
{
    reason[0] = '\0';
    if (!len)
        return 0;
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je),
           *v = json_is_object(o) ? json_object_get(o, "reason") : NULL;
    if (!v || !json_is_string(v)) {
        json_decref(o);
        return ud_err_set(e, UD_EINVAL, "expected {\"reason\": \"...\"}");
    }
    snprintf(reason, COORD_FED_REASON_MAX + 1, "%s", json_string_value(v));
    json_decref(o);
    return 0;
}

/* One key of a federation spec into s (min_clients also sets *have_min). */
static int fed_spec_key(const char *k, json_t *v, struct coord_fed_spec *s, int *have_min,
                        struct ud_err *e)
{
    int64_t i = 0;
    int rc;
    if (strcmp(k, "name") == 0)
        return spec_str(v, k, s->name, sizeof s->name, e);
    if (strcmp(k, "model") == 0)
        return spec_str(v, k, s->model, sizeof s->model, e);
    if (strcmp(k, "version") == 0) {
        if (json_is_string(v) && strcmp(json_string_value(v), "latest") == 0) {
            s->version = 0;
            return 0;
        }
        return spec_int(v, k, 1, INT64_MAX, &s->version, e);
    }
    if (strcmp(k, "strategy") == 0) {
        if ((rc = spec_str(v, k, s->strategy, sizeof s->strategy, e)) != 0)
            return rc;
        if (strcmp(s->strategy, "fedavg") != 0)
            return ud_err_set(e, UD_EINVAL, "'strategy' is '%s': the strategy offered is 'fedavg'",
                              s->strategy);
        return 0;
    }
    if (strcmp(k, "rounds") == 0)
        return spec_int(v, k, 1, COORD_FED_MAX_ROUNDS, &s->rounds, e);
    if (strcmp(k, "clients_per_round") == 0)
        return spec_int(v, k, 1, COORD_FED_MAX_CLIENTS, &s->clients_per_round, e);
    if (strcmp(k, "min_clients") == 0) {
        *have_min = 1;
        return spec_int(v, k, 1, COORD_FED_MAX_CLIENTS, &s->min_clients, e);
    }
    if (strcmp(k, "round_deadline") == 0)
        return spec_num(v, k, 0.1, 7 * 86400, &s->round_deadline, e);
    if (strcmp(k, "availability") == 0)
        return spec_num(v, k, 1, 30 * 86400, &s->availability, e);
    if (strcmp(k, "epochs") == 0)
        return spec_int(v, k, 1, 10000, &s->epochs, e);
    if (strcmp(k, "batch") == 0)
        return spec_int(v, k, 1, 65536, &s->batch, e);
    if (strcmp(k, "lr") == 0)
        return spec_num(v, k, 0, 10, &s->lr, e);
    if (strcmp(k, "max_norm") == 0)
        return spec_num(v, k, 0, 1e30, &s->max_norm, e);
    if (strcmp(k, "server_lr") == 0)
        return spec_num(v, k, 1e-6, 100, &s->server_lr, e);
    if (strcmp(k, "seed") == 0) {
        rc = spec_int(v, k, 0, INT64_MAX, &i, e);
        s->seed = (uint64_t)i;
        return rc;
    }
    if (strcmp(k, "eval") == 0)
        return json_is_null(v) ? 0 : spec_str(v, k, s->eval, sizeof s->eval, e);
    return ud_err_set(e, UD_EINVAL, "unknown key '%.64s' (see docs/rest.md)", k);
}

int coord_fed_spec_parse(const char *json, size_t len, struct coord_fed_spec *s, struct ud_err *e)
{
    memset(s, 0, sizeof *s);
    snprintf(s->strategy, sizeof s->strategy, "fedavg");
    s->rounds = 10;
    s->clients_per_round = 10;
    s->round_deadline = 300;
    s->availability = 60;
    s->lr = -1;
    s->max_norm = 100;
    s->server_lr = 1;
    if (len > COORD_FED_SPEC_MAX)
        return ud_err_set(e, UD_ELIMIT, "federation spec of %zu bytes is over the limit of %u", len,
                          COORD_FED_SPEC_MAX);
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return ud_err_set(e, UD_EINVAL, "federation spec: not JSON: %s (line %d)", je.text,
                          je.line);
    int rc = 0, have_min = 0;
    if (!json_is_object(o)) {
        rc = ud_err_set(e, UD_EINVAL, "federation spec: expected a JSON object");
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if ((rc = fed_spec_key(k, v, s, &have_min, e)) != 0)
            goto out;
    }
    if (!s->model[0]) {
        rc = ud_err_set(e, UD_EINVAL, "'model' is required: the registry name to federate");
        goto out;
    }
    if (!name_ok(s->model)) {
        rc = ud_err_set(e, UD_EINVAL, "'model' may hold letters, digits, '-', '_' and '.'");
        goto out;
    }
    if (!have_min)
        s->min_clients = (s->clients_per_round + 1) / 2;
    if (s->min_clients > s->clients_per_round) {
        rc =
            ud_err_set(e, UD_EINVAL,
                       "'min_clients' (%" PRId64 ") is more than 'clients_per_round' (%" PRId64 ")",
                       s->min_clients, s->clients_per_round);
        goto out;
    }
out:
    json_decref(o);
    return rc;
}

int coord_fed_spec_fill(struct coord_fed_spec *s, int64_t epochs, int64_t batch, double lr,
                        int64_t version, struct ud_err *e)
{
    s->epochs = epochs;
    s->batch = batch;
    s->lr = lr;
    s->version = version;
    /* A model's update defaults may lie outside the spec's ranges (a .udm may say 20000
     * epochs, a spec allows 1..10000): what is stored must parse again, or the federation
     * could not be read back. */
    struct coord_fed_spec t = *s;
    if (!t.name[0])
        snprintf(t.name, sizeof t.name, "federation-1");
    char *j = coord_fed_spec_json(&t);
    int rc = j ? coord_fed_spec_parse(j, strlen(j), &t, e) : ud_err_set(e, UD_ENOMEM, "no memory");
    free(j);
    return rc;
}

char *coord_fed_spec_json(const struct coord_fed_spec *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "model", json_string(s->model));
    json_object_set_new(o, "version", json_integer(s->version));
    json_object_set_new(o, "strategy", json_string(s->strategy));
    json_object_set_new(o, "rounds", json_integer(s->rounds));
    json_object_set_new(o, "clients_per_round", json_integer(s->clients_per_round));
    json_object_set_new(o, "min_clients", json_integer(s->min_clients));
    json_object_set_new(o, "round_deadline", json_real(s->round_deadline));
    json_object_set_new(o, "availability", json_real(s->availability));
    json_object_set_new(o, "epochs", json_integer(s->epochs));
    json_object_set_new(o, "batch", json_integer(s->batch));
    json_object_set_new(o, "lr", json_real(s->lr));
    json_object_set_new(o, "max_norm", json_real(s->max_norm));
    json_object_set_new(o, "server_lr", json_real(s->server_lr));
    json_object_set_new(o, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(o, "eval", s->eval[0] ? json_string(s->eval) : json_null());
    char *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return out;
}

int coord_device_token_parse(const char *token, size_t len, int64_t *id, unsigned char hash[32])
{
    const char *dot = memchr(token, '.', len);
    if (!dot || dot == token || dot - token > 18 || len - (size_t)(dot - token) - 1 != 64)
        return UD_EAUTH;
    int64_t v = 0;
    for (const char *p = token; p < dot; p++) {
        if (*p < '0' || *p > '9')
            return UD_EAUTH;
        v = v * 10 + (*p - '0');
    }
    for (const char *p = dot + 1; p < token + len; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return UD_EAUTH;
    if (v <= 0)
        return UD_EAUTH;
    *id = v;
    crypto_generichash(hash, 32, (const unsigned char *)dot + 1, 64, NULL, 0);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The engine                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* What the engine keeps about a federation between ticks (rebuilt after a restart). */
struct fed_mem {
    int64_t id;
    int64_t version; /* the version `base` holds */
    ud_model_t *base;
    ud_dataset_t *eval;
    int eval_tried;
    double waiting_logged; /* when "waiting for devices" was last logged */
};

struct coord_fed {
    char *state_dir;
    const struct coord_model_keys *keys; /* borrowed: seal published versions */
    sqlite3 *db;
    struct fed_mem *mem;
    size_t nmem;
};

coord_fed_t *coord_fed_new(const char *state_dir, const struct coord_model_keys *keys, sqlite3 *db,
                           struct ud_err *e)
{
    coord_fed_t *f = calloc(1, sizeof *f);
    if (!f || !(f->state_dir = strdup(state_dir))) {
        free(f);
        ud_err_set(e, UD_ENOMEM, "out of memory");
        return NULL;
    }
    f->db = db;
    f->keys = keys;
    return f;
}

static void mem_clear(struct fed_mem *m)
{
    ud_model_destroy(&m->base);
    ud_dataset_destroy(&m->eval);
}

void coord_fed_destroy(coord_fed_t **fp)
{
    if (!fp || !*fp)
        return;
    coord_fed_t *f = *fp;
    for (size_t i = 0; i < f->nmem; i++)
        mem_clear(&f->mem[i]);
    free(f->mem);
    free(f->state_dir);
    free(f);
    *fp = NULL;
}

static struct fed_mem *mem_get(coord_fed_t *f, int64_t id)
{
    for (size_t i = 0; i < f->nmem; i++)
        if (f->mem[i].id == id)
            return &f->mem[i];
    struct fed_mem *m = realloc(f->mem, (f->nmem + 1) * sizeof *m);
    if (!m)
        return NULL;
    f->mem = m;
    m = &f->mem[f->nmem++];
    memset(m, 0, sizeof *m);
    m->id = id;
    return m;
}

static void mem_drop(coord_fed_t *f, int64_t id)
{
    for (size_t i = 0; i < f->nmem; i++)
        if (f->mem[i].id == id) {
            mem_clear(&f->mem[i]);
            f->mem[i] = f->mem[--f->nmem];
            return;
        }
}

/* One row of a federation as the tick needs it. */
struct fed_row {
    int64_t id, base_version, current_version, rounds, round;
    char name[COORD_FED_NAME_MAX];
    struct coord_fed_spec spec;
};

/* The model file of a registered version, decoded. */
static ud_model_t *load_version(coord_fed_t *f, const char *name, int64_t version, struct ud_err *e)
{
    char sha[65];
    if (coord_db_model_sha(f->db, name, version, sha, e) != 0)
        return NULL;
    return coord_store_read_model(f->state_dir, f->keys, sha, e);
}

/* The base model of the federation's current version (cached). */
static ud_model_t *fed_base(coord_fed_t *f, struct fed_mem *m, const struct fed_row *r,
                            struct ud_err *e)
{
    if (m->base && m->version == r->current_version)
        return m->base;
    ud_model_destroy(&m->base);
    m->base = load_version(f, r->spec.model, r->current_version, e);
    m->version = r->current_version;
    return m->base;
}

/* The evaluation dataset, mapped onto the model's labels (loaded once; NULL: none or broken,
 * which is logged once). */
static ud_dataset_t *fed_eval(struct fed_mem *m, const struct fed_row *r, ud_model_t *model)
{
    if (m->eval || m->eval_tried || !r->spec.eval[0])
        return m->eval;
    m->eval_tried = 1;
    struct ud_err e = {0};
    struct ud_load_opts lo = {.shape = ud_model_arch(model)->input};
    ud_dataset_t *ds = ud_dataset_load(r->spec.eval, &lo, &e);
    if (ds && ud_dataset_input_size(ds) != ud_model_input_size(model)) {
        ud_err_set(&e, UD_ESHAPE, "%s: samples have %zu values but the model takes %zu",
                   r->spec.eval, ud_dataset_input_size(ds), ud_model_input_size(model));
        ud_dataset_destroy(&ds);
    }
    if (ds) {
        int C = ud_model_num_classes(model);
        if (ud_dataset_map_classes(ds, ud_model_labels(model), C, &e) != 0)
            ud_dataset_destroy(&ds);
    }
    if (!ds)
        coord_log(COORD_LOG_ERROR,
                  "federation %" PRId64 ": evaluation dataset: %s (versions are "
                  "published unscored)",
                  r->id, e.msg);
    m->eval = ds;
    return ds;
}

/* Fills r from a statement whose columns are FED_ROW_COLUMNS. */
#define FED_ROW_COLUMNS "id, name, spec, base_version, current_version, rounds, round"
static int read_fed(sqlite3_stmt *st, struct fed_row *r, struct ud_err *e)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    snprintf(r->name, sizeof r->name, "%s", (const char *)sqlite3_column_text(st, 1));
    const char *spec = (const char *)sqlite3_column_text(st, 2);
    r->base_version = sqlite3_column_int64(st, 3);
    r->current_version = sqlite3_column_int64(st, 4);
    r->rounds = sqlite3_column_int64(st, 5);
    r->round = sqlite3_column_int64(st, 6);
    int rc = coord_fed_spec_parse(spec ? spec : "", spec ? strlen(spec) : 0, &r->spec, e);
    if (rc)
        ud_err_prefix(e, "federation %" PRId64 ": stored spec", r->id);
    return rc;
}

/* The latest round of a federation: fills id/number/state; 0 when there is none yet. */
struct round_row {
    int64_t id, number, base_version, delta_floats, accepted, samples, participants, failed;
    char state[16];
    double deadline, created;
};

static int latest_round(coord_fed_t *f, int64_t fed, struct round_row *rr, struct ud_err *e)
{
    memset(rr, 0, sizeof *rr);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(f->db,
                           "SELECT id, number, state, base_version, delta_floats, accepted,"
                           " samples, deadline, created, (SELECT count(*) FROM participants p WHERE"
                           " p.round = rounds.id), (SELECT count(*) FROM failures x WHERE"
                           " x.round = rounds.id) FROM rounds WHERE federation = ?"
                           " ORDER BY number DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(f->db, e, "reading rounds");
    sqlite3_bind_int64(st, 1, fed);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        rr->id = sqlite3_column_int64(st, 0);
        rr->number = sqlite3_column_int64(st, 1);
        snprintf(rr->state, sizeof rr->state, "%s", (const char *)sqlite3_column_text(st, 2));
        rr->base_version = sqlite3_column_int64(st, 3);
        rr->delta_floats = sqlite3_column_int64(st, 4);
        rr->accepted = sqlite3_column_int64(st, 5);
        rr->samples = sqlite3_column_int64(st, 6);
        rr->deadline = sqlite3_column_double(st, 7);
        rr->created = sqlite3_column_double(st, 8);
        rr->participants = sqlite3_column_int64(st, 9);
        rr->failed = sqlite3_column_int64(st, 10);
        ret = 1;
    } else if (rc != SQLITE_DONE)
        ret = coord_db_err(f->db, e, "reading rounds");
    sqlite3_finalize(st);
    return ret;
}

static int fed_finish(coord_fed_t *f, const struct fed_row *r, const char *state, const char *msg,
                      double now, struct ud_err *e)
{
    int rc = coord_db_run(f->db, e,
                          "UPDATE federations SET state = ?, message = ?, updated = ?, finished = ?"
                          " WHERE id = ? AND state = 'RUNNING'",
                          "ssddi", state, msg, now, now, r->id);
    if (rc >= 0)
        coord_log(COORD_LOG_WARN, "federation %" PRId64 " (%s) %s: %s", r->id, r->name, state, msg);
    mem_drop(f, r->id);
    return rc < 0 ? rc : 0;
}

/* Starts round number `number` in WAITING. */
static int round_create(coord_fed_t *f, struct fed_mem *m, const struct fed_row *r, int64_t number,
                        double now, struct ud_err *e)
{
    ud_model_t *base = fed_base(f, m, r, e);
    if (!base)
        return e->code ? e->code : UD_EIO;
    if (coord_db_begin(f->db, e) != 0)
        return UD_EIO;
    int rc =
        coord_db_run(f->db, e,
                     "INSERT INTO rounds (federation, number, state, base_version,"
                     " delta_floats, created) VALUES (?, ?, 'WAITING', ?, ?, ?)",
                     "iiiid", r->id, number, r->current_version, (int64_t)ud_delta_size(base), now);
    if (rc >= 0)
        rc = coord_db_run(f->db, e, "UPDATE federations SET round = ?, updated = ? WHERE id = ?",
                          "idi", number, now, r->id);
    rc = coord_db_end(f->db, rc, e);
    return rc < 0 ? rc : 0;
}

/* WAITING -> OPEN when enough devices are available: samples the participants. */
static int round_open(coord_fed_t *f, struct fed_mem *m, const struct fed_row *r,
                      const struct round_row *rr, double now, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(f->db,
                           "SELECT id FROM devices WHERE revoked = 0 AND last_seen >= ?"
                           " ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(f->db, e, "reading devices");
    sqlite3_bind_double(st, 1, now - r->spec.availability);
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            int64_t *p = realloc(ids, cap * sizeof *p);
            if (!p) {
                sqlite3_finalize(st);
                free(ids);
                return ud_err_set(e, UD_ENOMEM, "out of memory");
            }
            ids = p;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(ids);
        return coord_db_err(f->db, e, "reading devices");
    }
    /* Enough for a full round, or enough for a valid one after waiting a deadline's length. */
    if ((int64_t)n < r->spec.clients_per_round &&
        ((int64_t)n < r->spec.min_clients || now - rr->created < r->spec.round_deadline)) {
        if (now - m->waiting_logged >= 30) {
            coord_log(COORD_LOG_INFO,
                      "federation %" PRId64 " round %" PRId64 ": %zu device%s available, waiting "
                      "for %" PRId64 " (or %" PRId64 " after %.0f s)",
                      r->id, rr->number, n, n == 1 ? "" : "s", r->spec.clients_per_round,
                      r->spec.min_clients, r->spec.round_deadline);
            m->waiting_logged = now;
        }
        free(ids);
        return 0;
    }
    /* A partial Fisher-Yates shuffle, seeded by (seed, round number): reproducible. */
    size_t k = (size_t)r->spec.clients_per_round < n ? (size_t)r->spec.clients_per_round : n;
    struct ud_rng rng;
    ud_rng_seed(&rng, r->spec.seed, (uint64_t)rr->number);
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)ud_rng_below(&rng, n - i);
        int64_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    if (coord_db_begin(f->db, e) != 0) {
        free(ids);
        return UD_EIO;
    }
    rc = coord_db_run(f->db, e,
                      "UPDATE rounds SET state = 'OPEN', opened = ?, deadline = ? WHERE id = ? AND"
                      " state = 'WAITING'",
                      "ddi", now, now + r->spec.round_deadline, rr->id);
    for (size_t i = 0; i < k && rc >= 0; i++)
        rc = coord_db_run(f->db, e,
                          "INSERT OR IGNORE INTO participants (round, device) VALUES (?, ?)", "ii",
                          rr->id, ids[i]);
    free(ids);
    if (coord_db_end(f->db, rc, e) < 0)
        return UD_EIO;
    coord_log(COORD_LOG_INFO,
              "federation %" PRId64 " round %" PRId64 " (id %" PRId64 ") open: %zu of %zu "
              "available devices sampled, deadline in %.0f s",
              r->id, rr->number, rr->id, k, n, r->spec.round_deadline);
    return 0;
}

/* acc[0..n) += w * the delta in the file at path (n float32, little-endian), streamed through
 * a buffer. Returns 0, or UD_EIO / UD_ESHAPE (the file is not n floats). */
static int delta_accumulate(const char *path, size_t n, double w, double *acc, struct ud_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ud_err_set(e, UD_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != (uint64_t)n * 4) {
        close(fd);
        return ud_err_set(e, UD_ESHAPE, "%s: %lld bytes, expected %zu floats", path,
                          (long long)sb.st_size, n);
    }
    float buf[16384];
    size_t done = 0;
    while (done < n) {
        size_t want = n - done < 16384 ? n - done : 16384;
        ssize_t got = read(fd, buf, want * 4);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || got % 4) {
            close(fd);
            return ud_err_set(e, UD_EIO, "%s: read failed at float %zu: %s", path, done,
                              got < 0 ? strerror(errno) : "short read");
        }
        size_t k = (size_t)got / 4;
        for (size_t i = 0; i < k; i++)
            acc[done + i] += w * (double)buf[i];
        done += k;
    }
    close(fd);
    return 0;
}

/* Removes STATE/rounds/<id>/ and the files in it (best effort: a leftover is only disk). */
static void round_files_remove(coord_fed_t *f, int64_t round)
{
    char dir[4096 + 64];
    snprintf(dir, sizeof dir, "%s/rounds/%" PRId64, f->state_dir, round);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(f->db, "SELECT path FROM updates WHERE round = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, round);
        while (sqlite3_step(st) == SQLITE_ROW) {
            char p[4096 + 512];
            snprintf(p, sizeof p, "%s/%s", f->state_dir, (const char *)sqlite3_column_text(st, 0));
            unlink(p);
        }
    }
    sqlite3_finalize(st);
    rmdir(dir); /* fails harmlessly while refused uploads' leftovers remain */
}

/* What a closing round turns into on its way to the registry. */
struct round_result {
    ud_model_t *next;           /* the base plus the weighted mean of the deltas */
    json_t *parts;              /* the devices whose updates went in */
    int64_t total, used;        /* samples over all updates, and over those that read back */
    double loss_sum, acc_sum;   /* sample-weighted training loss and accuracy, summed */
    double eval_acc, eval_loss; /* on the evaluation dataset; NAN: not scored */
    int64_t version;            /* the version it is published as */
    char sha[65];               /* the stored object */
    size_t stored_len;
    char *meta, *metrics, *lineage; /* the registry row's JSON columns */
};

static void round_result_deinit(struct round_result *res)
{
    ud_model_destroy(&res->next);
    json_decref(res->parts);
    free(res->meta);
    free(res->metrics);
    free(res->lineage);
    memset(res, 0, sizeof *res);
}

/* The base model a round's deltas apply to, checked against the round's row. */
static int round_base(coord_fed_t *f, struct fed_mem *m, const struct fed_row *r,
                      const struct round_row *rr, ud_model_t **base, struct ud_err *e)
{
    if (!(*base = fed_base(f, m, r, e)))
        return e->code ? e->code : UD_EIO;
    if (m->version != rr->base_version)
        return ud_err_set(e, UD_EINTERNAL,
                          "round %" PRId64 " is based on version %" PRId64 " but the federation is "
                          "at %" PRId64,
                          rr->id, rr->base_version, m->version);
    size_t n = ud_delta_size(*base);
    if ((int64_t)n != rr->delta_floats)
        return ud_err_set(e, UD_ESHAPE,
                          "round %" PRId64 ": %" PRId64 " floats per delta, the "
                          "base model has %zu",
                          rr->id, rr->delta_floats, n);
    return 0;
}

/* acc[0..n) = the sample-weighted sum of the round's deltas, each weighted by its samples over
 * the total of all rows; a file that cannot be read (the disk lost it) is left out, and the
 * caller renormalises by res->used. Returns 0, UD_EEMPTY (fewer readable updates than
 * min_clients) or UD_EIO. */
static int round_accumulate(coord_fed_t *f, const struct fed_row *r, const struct round_row *rr,
                            size_t n, double *acc, struct round_result *res, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(f->db,
                           "SELECT device, samples, path, loss, accuracy FROM updates WHERE"
                           " round = ? ORDER BY device",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(f->db, e, "reading updates");
    sqlite3_bind_int64(st, 1, rr->id);
    while (sqlite3_step(st) == SQLITE_ROW)
        res->total += sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    while (res->total > 0 && sqlite3_step(st) == SQLITE_ROW) {
        int64_t dev = sqlite3_column_int64(st, 0), ns = sqlite3_column_int64(st, 1);
        char path[4096 + 512];
        snprintf(path, sizeof path, "%s/%s", f->state_dir,
                 (const char *)sqlite3_column_text(st, 2));
        struct ud_err fe = {0};
        if (delta_accumulate(path, n, (double)ns / (double)res->total, acc, &fe) != 0) {
            coord_log(COORD_LOG_ERROR,
                      "round %" PRId64 ": update of device %" PRId64 " left out: %s", rr->id, dev,
                      fe.msg);
            continue;
        }
        res->used += ns;
        res->loss_sum += (double)ns * sqlite3_column_double(st, 3);
        res->acc_sum += (double)ns * sqlite3_column_double(st, 4);
        json_array_append_new(res->parts, json_integer(dev));
    }
    sqlite3_finalize(st);
    if (res->used <= 0 || (int64_t)json_array_size(res->parts) < r->spec.min_clients)
        return ud_err_set(e, UD_EEMPTY,
                          "round %" PRId64 ": %zu readable updates, %" PRId64 " needed", rr->id,
                          json_array_size(res->parts), r->spec.min_clients);
    return 0;
}

/* res->next = base + server_lr * the mean delta (acc renormalised to the updates used). */
static int round_apply(const ud_model_t *base, const struct fed_row *r, const struct round_row *rr,
                       const double *acc, struct round_result *res, struct ud_err *e)
{
    double scale = r->spec.server_lr * (double)res->total / (double)res->used;
    if (!(res->next = ud_model_clone(base, e)))
        return e->code ? e->code : UD_ENOMEM;
    float *p = ud_model_params(res->next);
    const struct ud_span *sp;
    size_t ns = ud_model_updatable_spans(res->next, &sp), k = 0;
    for (size_t s = 0; s < ns; s++)
        for (size_t i = 0; i < sp[s].count; i++, k++) {
            float v = p[sp[s].offset + i] + (float)(scale * acc[k]);
            if (!isfinite(v))
                return ud_err_set(e, UD_ENONFINITE,
                                  "round %" PRId64 ": the aggregate is not "
                                  "finite at parameter %zu",
                                  rr->id, sp[s].offset + i);
            p[sp[s].offset + i] = v;
        }
    return 0;
}

/* Scores res->next on the federation's evaluation dataset, when it has one. */
static void round_score(struct fed_mem *m, const struct fed_row *r, const struct round_row *rr,
                        struct round_result *res)
{
    res->eval_acc = NAN;
    res->eval_loss = NAN;
    ud_dataset_t *ds = fed_eval(m, r, res->next);
    if (!ds)
        return;
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_eval_result er;
    struct ud_err ee = {0};
    if (ud_model_evaluate(res->next, &p, 256, &er, &ee) == 0) {
        res->eval_acc = er.accuracy;
        res->eval_loss = er.loss;
        ud_eval_result_deinit(&er);
    } else
        coord_log(COORD_LOG_ERROR, "round %" PRId64 ": evaluation: %s", rr->id, ee.msg);
}

/* Numbers res->next as the model's next version, records where it came from in its metadata,
 * seals and stores it. */
static int round_store(coord_fed_t *f, const struct fed_row *r, const struct round_row *rr,
                       struct round_result *res, struct ud_err *e)
{
    res->version = coord_db_model_next_version(f->db, r->spec.model, e);
    if (res->version <= 0)
        return coord_db_err(f->db, e, "reading the registry");
    char vbuf[64];
    snprintf(vbuf, sizeof vbuf, "%" PRId64, res->version);
    struct ud_metadata *md = ud_model_metadata(res->next);
    ud_metadata_set(&md->version, vbuf);
    snprintf(vbuf, sizeof vbuf, "%" PRId64, r->id);
    ud_metadata_set_additional(md, "federation", vbuf);
    snprintf(vbuf, sizeof vbuf, "%" PRId64, rr->number);
    ud_metadata_set_additional(md, "round", vbuf);
    if (isfinite(res->eval_acc))
        ud_model_set_metric(res->next, "eval_accuracy", res->eval_acc);
    char *buf = NULL;
    size_t len = 0;
    int rc = ud_udm_encode(res->next, &buf, &len, e);
    if (rc == 0)
        rc = coord_store_put_model(f->state_dir, f->keys, buf, len, res->sha, &res->stored_len, e);
    free(buf);
    return rc;
}

/* The registry row's JSON columns: metadata, metrics (evaluation and training) and lineage
 * (the base version, the round and its participants). */
static int round_registry_json(const struct fed_row *r, const struct round_row *rr,
                               struct round_result *res, struct ud_err *e)
{
    res->meta = coord_model_metadata_json(res->next);
    json_t *mo = json_object(), *lo = json_object(), *bo = json_object();
    if (isfinite(res->eval_acc)) {
        json_object_set_new(mo, "eval_accuracy", json_real(res->eval_acc));
        json_object_set_new(mo, "eval_loss", json_real(res->eval_loss));
    }
    json_object_set_new(mo, "train_loss", json_real(res->loss_sum / (double)res->used));
    json_object_set_new(mo, "train_accuracy", json_real(res->acc_sum / (double)res->used));
    json_object_set_new(mo, "samples", json_integer(res->used));
    res->metrics = json_dumps(mo, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(mo);
    json_object_set_new(bo, "name", json_string(r->spec.model));
    json_object_set_new(bo, "version", json_integer(rr->base_version));
    json_object_set_new(lo, "base", bo);
    json_object_set_new(lo, "federation", json_integer(r->id));
    json_object_set_new(lo, "round", json_integer(rr->number));
    json_object_set_new(lo, "round_id", json_integer(rr->id));
    json_object_set_new(lo, "strategy", json_string(r->spec.strategy));
    json_object_set_new(lo, "participants", json_incref(res->parts));
    json_object_set_new(lo, "job", json_null());
    res->lineage = json_dumps(lo, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(lo);
    if (!res->meta || !res->metrics || !res->lineage)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    return 0;
}

/* One transaction: the version registered, the round PUBLISHED (msg), the federation moved on. */
static int round_commit(coord_fed_t *f, const struct fed_row *r, const struct round_row *rr,
                        const struct round_result *res, const char *msg, double now,
                        struct ud_err *e)
{
    if (coord_db_begin(f->db, e) != 0)
        return UD_EIO;
    struct coord_db_model_row row = {.name = r->spec.model,
                                     .sha256 = res->sha,
                                     .job = NULL,
                                     .version = res->version,
                                     .size = (int64_t)res->stored_len,
                                     .created = now,
                                     .metrics = res->metrics,
                                     .lineage = res->lineage,
                                     .metadata = res->meta};
    int rc = coord_db_model_insert(f->db, &row, e);
    if (rc >= 0)
        rc = coord_db_run(f->db, e,
                          "UPDATE rounds SET state = 'PUBLISHED', closed = coalesce(closed, ?),"
                          " published_version = ?, eval_accuracy = ?, eval_loss = ?, message = ?"
                          " WHERE id = ? AND state = 'CLOSING'",
                          "diddsi", now, res->version, res->eval_acc, res->eval_loss, msg, rr->id);
    if (rc == 0)
        rc = ud_err_set(e, UD_ESTATE, "round %" PRId64 " left CLOSING", rr->id);
    if (rc >= 0)
        rc = coord_db_run(f->db, e,
                          "UPDATE federations SET current_version = ?, updated = ? WHERE id = ?",
                          "idi", res->version, now, r->id);
    rc = coord_db_end(f->db, rc, e);
    return rc < 0 ? rc : 0;
}

/* CLOSING -> PUBLISHED: aggregates the round's accepted deltas into the next version. */
static int round_publish(coord_fed_t *f, struct fed_mem *m, const struct fed_row *r,
                         const struct round_row *rr, double now, struct ud_err *e)
{
    ud_model_t *base = NULL;
    int rc = round_base(f, m, r, rr, &base, e);
    if (rc)
        return rc;
    size_t n = ud_delta_size(base);
    struct round_result res = {.parts = json_array()};
    double *acc = calloc(n ? n : 1, sizeof *acc);
    if (!acc || !res.parts)
        rc = ud_err_set(e, UD_ENOMEM, "out of memory");
    if (rc == 0)
        rc = round_accumulate(f, r, rr, n, acc, &res, e);
    if (rc == 0)
        rc = round_apply(base, r, rr, acc, &res, e);
    free(acc);
    if (rc == 0) {
        round_score(m, r, rr, &res);
        rc = round_store(f, r, rr, &res, e);
    }
    if (rc == 0)
        rc = round_registry_json(r, rr, &res, e);
    char msg[256];
    snprintf(msg, sizeof msg,
             "published version %" PRId64 " from %zu updates (%" PRId64 " samples)", res.version,
             res.parts ? json_array_size(res.parts) : 0, res.used);
    if (rc == 0)
        rc = round_commit(f, r, rr, &res, msg, now, e);
    if (rc == 0) {
        if (isfinite(res.eval_acc))
            coord_log(COORD_LOG_WARN,
                      "federation %" PRId64 " round %" PRId64 ": %s; eval accuracy %.4f loss %.4f",
                      r->id, rr->number, msg, res.eval_acc, res.eval_loss);
        else
            coord_log(COORD_LOG_WARN, "federation %" PRId64 " round %" PRId64 ": %s", r->id,
                      rr->number, msg);
        /* The new base is the published model (the cache moves on without re-reading it). */
        ud_model_destroy(&m->base);
        m->base = res.next;
        m->version = res.version;
        res.next = NULL;
        round_files_remove(f, rr->id);
    }
    round_result_deinit(&res);
    return rc;
}

static int round_fail(coord_fed_t *f, const struct fed_row *r, const struct round_row *rr,
                      double now, struct ud_err *e)
{
    char msg[256];
    if (rr->failed)
        snprintf(msg, sizeof msg,
                 "%" PRId64 " update%s and %" PRId64 " failure report%s, %" PRId64
                 " updates needed: nothing published",
                 rr->accepted, rr->accepted == 1 ? "" : "s", rr->failed, rr->failed == 1 ? "" : "s",
                 r->spec.min_clients);
    else
        snprintf(msg, sizeof msg,
                 "%" PRId64 " update%s by the deadline, %" PRId64 " needed: nothing published",
                 rr->accepted, rr->accepted == 1 ? "" : "s", r->spec.min_clients);
    int rc =
        coord_db_run(f->db, e,
                     "UPDATE rounds SET state = 'FAILED', closed = coalesce(closed, ?), message = ?"
                     " WHERE id = ? AND state = 'CLOSING'",
                     "dsi", now, msg, rr->id);
    if (rc < 0)
        return rc;
    coord_log(COORD_LOG_WARN, "federation %" PRId64 " round %" PRId64 " failed: %s", r->id,
              rr->number, msg);
    round_files_remove(f, rr->id);
    return 0;
}

/* One federation's step. Returns 0 or an error (logged by the caller). */
static int fed_step(coord_fed_t *f, const struct fed_row *r, double now, struct ud_err *e)
{
    struct fed_mem *m = mem_get(f, r->id);
    if (!m)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    struct round_row rr;
    int have = latest_round(f, r->id, &rr, e);
    if (have < 0)
        return have;
    if (!have || strcmp(rr.state, "PUBLISHED") == 0 || strcmp(rr.state, "FAILED") == 0) {
        int64_t number = have ? rr.number : 0;
        if (number >= r->rounds) {
            sqlite3_stmt *st = NULL;
            int64_t published = 0;
            if (sqlite3_prepare_v2(f->db,
                                   "SELECT count(*) FROM rounds WHERE federation = ? AND"
                                   " state = 'PUBLISHED'",
                                   -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, r->id);
                if (sqlite3_step(st) == SQLITE_ROW)
                    published = sqlite3_column_int64(st, 0);
            }
            sqlite3_finalize(st);
            char msg[256];
            snprintf(msg, sizeof msg,
                     "%" PRId64 " of %" PRId64 " rounds published; model %s is at version %" PRId64,
                     published, r->rounds, r->spec.model, r->current_version);
            return fed_finish(f, r, published ? "SUCCEEDED" : "FAILED", msg, now, e);
        }
        return round_create(f, m, r, number + 1, now, e);
    }
    if (strcmp(rr.state, "WAITING") == 0)
        return round_open(f, m, r, &rr, now, e);
    if (strcmp(rr.state, "OPEN") == 0) {
        /* Every sampled device answered: with an update, or a report that it could not. */
        int full = rr.participants > 0 && rr.accepted + rr.failed >= rr.participants;
        if (!full && now < rr.deadline)
            return 0;
        int rc = coord_db_run(f->db, e,
                              "UPDATE rounds SET state = 'CLOSING', closed = ? WHERE id = ? AND"
                              " state = 'OPEN'",
                              "di", now, rr.id);
        if (rc <= 0)
            return rc;
        /* Re-read: uploads committed up to the close are all counted. */
        if ((have = latest_round(f, r->id, &rr, e)) <= 0)
            return have;
        coord_log(COORD_LOG_INFO,
                  "federation %" PRId64 " round %" PRId64 " closed (%s): %" PRId64 " of %" PRId64
                  " updates",
                  r->id, rr.number, full ? "all sampled devices reported" : "deadline", rr.accepted,
                  rr.participants);
    }
    if (strcmp(rr.state, "CLOSING") == 0) {
        if (rr.accepted < r->spec.min_clients)
            return round_fail(f, r, &rr, now, e);
        int rc = round_publish(f, m, r, &rr, now, e);
        if (rc == UD_EEMPTY) { /* files lost: the round cannot publish */
            coord_log(COORD_LOG_ERROR, "%s", e->msg);
            rr.accepted = 0;
            return round_fail(f, r, &rr, now, e);
        }
        return rc;
    }
    return 0;
}

/* Reads federation r->id again (a step may have moved it). 1 while it is RUNNING, else 0. */
static int fed_reload(coord_fed_t *f, struct fed_row *r, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    int alive = 0;
    int64_t id = r->id;
    if (sqlite3_prepare_v2(f->db,
                           "SELECT " FED_ROW_COLUMNS " FROM federations WHERE id = ? AND"
                           " state = 'RUNNING'",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW && read_fed(st, r, e) == 0)
            alive = 1;
    }
    sqlite3_finalize(st);
    return alive;
}

void coord_fed_tick(coord_fed_t *f, double now)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(f->db,
                           "SELECT " FED_ROW_COLUMNS " FROM federations WHERE state = 'RUNNING'"
                           " ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        struct ud_err e = {0};
        coord_db_err(f->db, &e, "reading federations");
        coord_log(COORD_LOG_ERROR, "%s", e.msg);
        return;
    }
    /* Collect first: the steps write, and a statement must not stay open across them. */
    struct fed_row *rows = NULL;
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct fed_row *p = realloc(rows, (n + 1) * sizeof *p);
        if (!p)
            break;
        rows = p;
        struct ud_err e = {0};
        if (read_fed(st, &rows[n], &e) != 0) {
            coord_log(COORD_LOG_ERROR, "%s", e.msg);
            continue;
        }
        n++;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        struct ud_err e = {0};
        /* A few steps per tick: a round can be created, opened, closed and published at once. */
        for (int k = 0; k < 4; k++) {
            if (fed_step(f, &rows[i], now, &e) != 0) {
                coord_log(COORD_LOG_ERROR, "federation %" PRId64 ": %s", rows[i].id, e.msg);
                break;
            }
            if (!fed_reload(f, &rows[i], &e))
                break;
        }
    }
    free(rows);
}

int coord_fed_recover(coord_fed_t *f, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(f->db,
                           "SELECT f.id, f.name, f.round, f.rounds, f.current_version,"
                           " r.state, r.accepted FROM federations f LEFT JOIN rounds r ON"
                           " r.federation = f.id AND r.number = f.round WHERE f.state = 'RUNNING'"
                           " ORDER BY f.id",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(f->db, e, "reading federations");
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        coord_log(COORD_LOG_INFO,
                  "recovered federation %lld (%s): round %lld of %lld %s with %lld accepted "
                  "update(s), model at version %lld",
                  (long long)sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                  (long long)sqlite3_column_int64(st, 2), (long long)sqlite3_column_int64(st, 3),
                  sqlite3_column_text(st, 5) ? (const char *)sqlite3_column_text(st, 5) : "-",
                  (long long)sqlite3_column_int64(st, 6), (long long)sqlite3_column_int64(st, 4));
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

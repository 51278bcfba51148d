/*  coord_jobs.c — the job state machine, what each worker request does to the database, the
 *  model registry and the shard planner (coord_jobs.h). The launcher and the monitor tick are
 *  in coord_monitor.c.
 *
 *  Every request is one write transaction (BEGIN IMMEDIATE ... COMMIT) on the main thread's
 *  connection; the reply is built only after the commit, so what a worker is told was
 *  acknowledged survives a kill -9 of the coordinator. State changes are conditional on the
 *  state that was read ("UPDATE ... WHERE state = ?"), because the REST threads may cancel a
 *  job between the read and the write.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord_db.h"
#include "coord_jobs_impl.h"
#include "coord_log.h"
#include "coord_store.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_data.h"
#include "updraft/ud_file.h"
#include "updraft/ud_model.h"
#include "updraft/ud_udm.h"

/* ------------------------------------------------------------------------------------------ */
/* Rows and events                                                                             */
/* ------------------------------------------------------------------------------------------ */

int job_event(coord_jobs_t *j, const char *id, double now, const char *kind, const char *msg,
              struct ud_err *e)
{
    int rc =
        coord_db_run(j->db, e, "INSERT INTO events (job, time, kind, message) VALUES (?, ?, ?, ?)",
                     "sdss", id, now, kind, msg);
    return rc < 0 ? rc : 0;
}

static char *col_strdup(sqlite3_stmt *st, int i, int *oom)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    if (!s)
        return NULL;
    char *d = strdup((const char *)s);
    if (!d)
        *oom = 1;
    return d;
}

int job_row_read(sqlite3_stmt *st, struct job_row *r)
{
    memset(r, 0, sizeof *r);
    int oom = 0;
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(r->name, sizeof r->name, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(r->state, sizeof r->state, "%s", (const char *)sqlite3_column_text(st, 2));
    r->spec = col_strdup(st, 3, &oom);
    r->session = col_strdup(st, 4, &oom);
    r->resume_from = col_strdup(st, 5, &oom);
    r->message = col_strdup(st, 6, &oom);
    r->np = sqlite3_column_int(st, 7);
    r->launch = sqlite3_column_int(st, 8);
    r->cancel_requested = sqlite3_column_int(st, 9);
    r->restarts = sqlite3_column_int(st, 10);
    r->has_plan = sqlite3_column_int(st, 11);
    r->pid = sqlite3_column_int64(st, 12);
    r->model_version = sqlite3_column_int64(st, 13);
    r->epochs = sqlite3_column_int64(st, 14);
    r->epoch = sqlite3_column_int64(st, 15);
    r->iteration = sqlite3_column_int64(st, 16);
    r->created = sqlite3_column_double(st, 17);
    r->started = sqlite3_column_double(st, 18);
    r->restarting_since = sqlite3_column_double(st, 19);
    if (oom || !r->spec) {
        job_row_deinit(r);
        return UD_ENOMEM;
    }
    return 0;
}

void job_row_deinit(struct job_row *r)
{
    if (!r)
        return;
    free(r->spec);
    free(r->session);
    free(r->resume_from);
    free(r->message);
    memset(r, 0, sizeof *r);
}

int job_load(coord_jobs_t *j, const char *id, struct job_row *r, struct ud_err *e)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db, "SELECT " JOB_ROW_COLUMNS " FROM jobs WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return coord_db_err(j->db, e, "loading a job");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW)
        ret = job_row_read(st, r) ? ud_err_set(e, UD_ENOMEM, "%s: out of memory", id) : 0;
    else if (rc == SQLITE_DONE)
        ret = ud_err_set(e, UD_ENOTFOUND, "no job '%.64s'", id);
    else
        ret = coord_db_err(j->db, e, "loading a job");
    sqlite3_finalize(st);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Lifecycle and memory                                                                        */
/* ------------------------------------------------------------------------------------------ */

coord_jobs_t *coord_jobs_new(const struct coord_config *cfg, sqlite3 *db, struct ud_err *e)
{
    coord_jobs_t *j = calloc(1, sizeof *j);
    if (!j) {
        ud_err_set(e, UD_ENOMEM, "coord_jobs_new: out of memory");
        return NULL;
    }
    j->cfg = *cfg;
    j->db = db;
    return j;
}

void coord_jobs_destroy(coord_jobs_t **j)
{
    if (!j || !*j)
        return;
    free((*j)->mem);
    free(*j);
    *j = NULL;
}

struct job_mem *job_mem_get(coord_jobs_t *j, const char *id)
{
    for (size_t i = 0; i < j->nmem; i++)
        if (strcmp(j->mem[i].id, id) == 0)
            return &j->mem[i];
    if (j->nmem == j->capmem) {
        size_t cap = j->capmem ? j->capmem * 2 : 16;
        struct job_mem *m = realloc(j->mem, cap * sizeof *m);
        if (!m)
            return NULL;
        j->mem = m;
        j->capmem = cap;
    }
    struct job_mem *m = &j->mem[j->nmem++];
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", id);
    return m;
}

/* ------------------------------------------------------------------------------------------ */
/* The state machine                                                                           */
/* ------------------------------------------------------------------------------------------ */

static int transition_allowed(const char *from, const char *to)
{
    static const char *const T[][2] = {
        {"PENDING", "RUNNING"},      {"PENDING", "FAILED"},       {"PENDING", "CANCELLED"},
        {"RUNNING", "RESTARTING"},   {"RUNNING", "SUCCEEDED"},    {"RUNNING", "FAILED"},
        {"RUNNING", "CANCELLED"},    {"RESTARTING", "RUNNING"},   {"RESTARTING", "FAILED"},
        {"RESTARTING", "CANCELLED"}, {"RESTARTING", "SUCCEEDED"},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (strcmp(T[i][0], from) == 0 && strcmp(T[i][1], to) == 0)
            return 1;
    return 0;
}

int job_transition(coord_jobs_t *j, struct job_row *r, const char *to, double now, const char *msg,
                   int tx, struct ud_err *e)
{
    if (!transition_allowed(r->state, to)) {
        coord_log(COORD_LOG_ERROR, "%s: no transition %s -> %s (%s)", r->id, r->state, to, msg);
        return ud_err_set(e, UD_EINTERNAL, "%s: no transition %s -> %s", r->id, r->state, to);
    }
    int rc;
    if (!tx && (rc = coord_db_begin(j->db, e)) != 0)
        return rc;
    int terminal = coord_job_state_terminal(to);
    int restarting = strcmp(to, "RESTARTING") == 0, running = strcmp(to, "RUNNING") == 0;
    rc = coord_db_run(j->db, e,
                      "UPDATE jobs SET state = ?1, message = ?2, updated = ?3,"
                      " started = CASE WHEN ?4 THEN COALESCE(started, ?3) ELSE started END,"
                      " finished = CASE WHEN ?5 THEN ?3 ELSE finished END,"
                      " restarting_since = CASE WHEN ?6 THEN ?3 WHEN ?4 THEN NULL"
                      " ELSE restarting_since END"
                      " WHERE id = ?7 AND state = ?8",
                      "ssdiiiss", to, msg, now, (int64_t)running, (int64_t)terminal,
                      (int64_t)restarting, r->id, r->state);
    if (rc == 1) {
        char ev[1024];
        snprintf(ev, sizeof ev, "%s -> %s: %s", r->state, to, msg);
        int erc = job_event(j, r->id, now, "state", ev, e);
        if (erc < 0)
            rc = erc;
    }
    if (!tx)
        rc = coord_db_end(j->db, rc, e);
    if (rc == 1) {
        coord_log(COORD_LOG_INFO, "%s: %s -> %s: %s", r->id, r->state, to, msg);
        snprintf(r->state, sizeof r->state, "%s", to);
        if (restarting)
            r->restarting_since = now;
    }
    return rc;
}

/* What a restart resumes from, for messages. */
static void resume_note(const struct job_row *r, char *buf, size_t n)
{
    if (r->resume_from)
        snprintf(buf, n, "resume from %s", r->resume_from);
    else
        snprintf(buf, n, "no checkpoint yet: a restart begins again");
}

int job_to_restarting(coord_jobs_t *j, struct job_row *r, double now, const char *why,
                      struct ud_err *e)
{
    char msg[1024], note[600];
    int rc;
    if (r->cancel_requested) {
        snprintf(msg, sizeof msg, "%s (after a cancel request)", why);
        rc = job_transition(j, r, "CANCELLED", now, msg, 0, e);
    } else {
        resume_note(r, note, sizeof note);
        snprintf(msg, sizeof msg, "%s; %s", why, note);
        rc = job_transition(j, r, "RESTARTING", now, msg, 0, e);
    }
    if (rc == 1 && r->launch && r->pid > 1) {
        struct job_mem *m = job_mem_get(j, r->id);
        if (m)
            job_stop_mpirun(j, m, r->pid, now, "its job is no longer RUNNING");
    }
    return rc;
}

void job_stop_mpirun(coord_jobs_t *j, struct job_mem *m, int64_t pid, double now, const char *why)
{
    (void)j;
    if (pid <= 1 || m->killed_pid == pid)
        return;
    /* mpirun leads its own session (setsid), so its process group holds the whole job. */
    if (kill(-(pid_t)pid, SIGTERM) != 0 && errno == ESRCH)
        kill((pid_t)pid, SIGTERM);
    m->killed_pid = pid;
    m->killed_at = now;
    m->sigkilled = 0;
    coord_log(COORD_LOG_INFO, "%s: sent SIGTERM to mpirun (pid %lld): %s", m->id, (long long)pid,
              why);
}

/* ------------------------------------------------------------------------------------------ */
/* The shard planner                                                                           */
/* ------------------------------------------------------------------------------------------ */

int coord_plan_make(const struct coord_spec *s, int world, struct ud_plan *p, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    memset(p, 0, sizeof *p);
    struct ud_load_opts lo = {.skip_bad = s->skip_bad, .max_samples = (size_t)s->max_samples};
    if (s->input[0]) {
        if (sscanf(s->input, "%d,%d,%d", &lo.shape.c, &lo.shape.h, &lo.shape.w) != 3)
            return ud_err_set(e, UD_EINVAL, "job spec: bad input '%s'", s->input);
    } else if (strcmp(s->arch, "mlp") != 0 && strcmp(s->arch, "cnn") != 0) {
        /* An architecture file sizes the images, as in the worker. */
        struct ud_arch arch;
        int rc = ud_arch_load(s->arch, &arch, e);
        if (rc) {
            ud_err_prefix(e, "architecture '%s'", s->arch);
            return rc;
        }
        lo.shape = arch.input;
    }
    ud_dataset_t *ds = ud_dataset_load(s->data, &lo, e);
    if (!ds)
        return e->code ? e->code : UD_EIO;

    struct ud_split split = {.kind = UD_SPLIT_AUTOMATIC, .seed = s->seed};
    if (strcmp(s->validation, "none") == 0) {
        split.kind = UD_SPLIT_NONE;
    } else if (s->validation[0] && strcmp(s->validation, "auto") != 0) {
        split.kind = UD_SPLIT_FIXED;
        split.ratio = strtod(s->validation, NULL);
    }
    uint32_t *tr = NULL, *va = NULL;
    size_t ntr = 0, nva = 0;
    struct ud_manifest man = {0};
    int rc = ud_split_indices(ud_dataset_count(ds), &split, &tr, &ntr, &va, &nva, e);
    if (rc)
        goto out_free_ds;
    if (ntr == 0) {
        rc = ud_err_set(e, UD_EINVAL, "%s: no training samples left after the validation split",
                        s->data);
        goto out_free_idx;
    }
    if ((rc = ud_manifest_from_dataset(ds, &man, e)) != 0)
        goto out_free_idx;
    rc = ud_plan_make(&man, tr, ntr, va, nva, s->seed, s->batch, s->shuffle, world, p, e);
    ud_manifest_deinit(&man);
out_free_idx:
    free(tr);
    free(va);
out_free_ds:
    ud_dataset_destroy(&ds);
    return rc;
}

int coord_plan_pack(const struct ud_plan *p, void **buf, size_t *len, struct ud_err *e)
{
    /* A job message carrying only the plan: ud_msg.c already encodes and checks plans. */
    struct ud_msg m;
    memset(&m, 0, sizeof m);
    m.type = UD_MSG_JOB;
    m.id = 1;
    m.job = "plan";
    m.name = "plan";
    m.session = "";
    m.out = "";
    m.heartbeat_s = 1.0;
    m.plan = *p;
    m.has_plan = 1;
    return ud_msg_encode(&m, buf, len, e); /* m borrows everything: nothing to deinit */
}

int coord_plan_unpack(const void *buf, size_t len, struct ud_plan *p, struct ud_err *e)
{
    memset(p, 0, sizeof *p);
    struct ud_msg m;
    int rc = ud_msg_decode(buf, len, &m, e);
    if (rc) {
        ud_err_prefix(e, "stored plan");
        return rc;
    }
    if (m.type != UD_MSG_JOB || !m.has_plan) {
        ud_msg_deinit(&m);
        return ud_err_set(e, UD_EFORMAT, "stored plan: not a plan");
    }
    *p = m.plan;
    memset(&m.plan, 0, sizeof m.plan);
    m.has_plan = 0;
    ud_msg_deinit(&m);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* register                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* The oldest PENDING job that waits for workers started by someone else. */
static int find_waiting_job(coord_jobs_t *j, char *id, size_t n, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db,
                           "SELECT id FROM jobs WHERE state = 'PENDING' AND launch = 0 AND"
                           " cancel_requested = 0 ORDER BY seq LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(j->db, e, "finding a job");
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW)
        snprintf(id, n, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (rc == SQLITE_DONE)
        ret = ud_err_set(e, UD_ENOTFOUND,
                         "no job is waiting for workers (submit one without \"launch\", or "
                         "name the job with --job)");
    else
        ret = coord_db_err(j->db, e, "finding a job");
    sqlite3_finalize(st);
    return ret;
}

/* UD_ECONFLICT when another set of ranks is alive in this job: some rank was heard within the
 * heartbeat timeout and the registering rank 0 is not the one the job knows (same pid and
 * host: a worker reconnecting, e.g. after a coordinator restart, which is fine). */
static int check_live_ranks(coord_jobs_t *j, const struct job_row *r, const struct ud_msg *req,
                            double now, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            j->db, "SELECT 1 FROM ranks WHERE job = ? AND rank = 0 AND pid = ? AND host = ?", -1,
            &st, NULL) != SQLITE_OK)
        return coord_db_err(j->db, e, "reading ranks");
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, req->pid);
    sqlite3_bind_text(st, 3, req->host, -1, SQLITE_TRANSIENT);
    int same = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    st = NULL;
    if (same)
        return 0;
    if (sqlite3_prepare_v2(j->db,
                           "SELECT rank, host, pid, last_heartbeat FROM ranks WHERE job = ? AND"
                           " last_heartbeat >= ? ORDER BY rank",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(j->db, e, "reading ranks");
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 2, now - j->cfg.heartbeat_timeout);
    int ret = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int rank = sqlite3_column_int(st, 0);
        const char *host = (const char *)sqlite3_column_text(st, 1);
        int64_t pid = sqlite3_column_int64(st, 2);
        double hb = sqlite3_column_double(st, 3);
        ret = ud_err_set(e, UD_ECONFLICT,
                         "job %s is RUNNING with live ranks (rank %d, pid %lld on %s, heard %.1f s "
                         "ago): stop them first, or wait %.0f s for them to time out",
                         r->id, rank, (long long)pid, host ? host : "?", now - hb,
                         j->cfg.heartbeat_timeout);
        break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = coord_db_err(j->db, e, "reading ranks");
    sqlite3_finalize(st);
    return ret;
}

int job_dir_make(coord_jobs_t *j, const char *id, struct ud_err *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/jobs/%s", j->cfg.state_dir, id);
    return ud_file_mkdirs(path, NULL, e);
}

/* The stored plan, or a new one (stored with the registration). */
static int load_plan(coord_jobs_t *j, const char *id, struct ud_plan *p, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db, "SELECT plan FROM jobs WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(j->db, e, "reading the plan");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB)
        ret = coord_plan_unpack(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), p,
                                e);
    else
        ret = ud_err_set(e, UD_ENOTFOUND, "%s: no stored plan", id);
    sqlite3_finalize(st);
    return ret;
}

static int has_option(const struct coord_spec *s, const char *opt)
{
    for (int i = 0; i < s->nargs; i++)
        if (strcmp(s->args[i], opt) == 0)
            return 1;
    return 0;
}

/* The job rank 0 registers for: the one it names, or the oldest waiting one. */
static int register_job_id(coord_jobs_t *j, const struct ud_msg *req, char *id, size_t n,
                           struct ud_err *e)
{
    if (req->rank != 0)
        return ud_err_set(e, UD_EINVAL, "register comes from rank 0, not rank %d", req->rank);
    if (!req->job[0])
        return find_waiting_job(j, id, n, e);
    if (strlen(req->job) >= n)
        return ud_err_set(e, UD_ENOTFOUND, "no job '%.40s...' (ids are like job-000001)", req->job);
    snprintf(id, n, "%s", req->job);
    return 0;
}

/* Whether job r takes this registration: not finished, the world it runs, no other live
 * set of ranks. */
static int register_check(coord_jobs_t *j, const struct job_row *r, const struct ud_msg *req,
                          double now, struct ud_err *e)
{
    if (coord_job_state_terminal(r->state))
        return ud_err_set(e, UD_ESTATE, "job %s is %s%s%s", r->id, r->state, r->message ? ": " : "",
                          r->message ? r->message : "");
    if (r->np > 0 && r->np != req->world)
        return ud_err_set(e, UD_ECONFLICT,
                          "job %s runs %d ranks (np %d) but the worker was started with %d (mpirun "
                          "-np %d)",
                          r->id, r->np, r->np, req->world, r->np);
    if (strcmp(r->state, "RUNNING") == 0)
        return check_live_ranks(j, r, req, now, e);
    return 0;
}

/* What a registration stores and hands the worker. */
struct registration {
    struct coord_spec spec;
    struct ud_plan plan;
    void *packed; /* a plan made now, packed for jobs.plan; NULL: it was stored already */
    size_t packed_len;
    char session[4096], out[4096]; /* the job's checkpoint directory and model file */
    char msg[1024];                /* "rank 0 of N registered from HOST (pid P)" */
};

static void registration_deinit(struct registration *g)
{
    free(g->packed);
    ud_plan_deinit(&g->plan);
    coord_spec_deinit(&g->spec);
}

/* The plan: made once, on the first registration, for the world that registered. A job
 * whose plan cannot be made fails when its np is fixed (other workers cannot help it);
 * one that takes any world stays PENDING for workers that fit, with the reason as message. */
static int register_plan(coord_jobs_t *j, struct job_row *r, int world, double now,
                         struct registration *g, struct ud_err *e)
{
    if (r->has_plan)
        return load_plan(j, r->id, &g->plan, e);
    coord_log(COORD_LOG_INFO, "%s: computing the shard plan for %d ranks from %s", r->id, world,
              g->spec.data);
    int rc = coord_plan_make(&g->spec, world, &g->plan, e);
    if (rc != 0) {
        ud_err_prefix(e, "%s: shard plan", r->id);
        struct ud_err te = {0};
        if (r->np > 0 || r->launch)
            job_transition(j, r, "FAILED", now, e->msg, 0, &te);
        else
            coord_db_run(j->db, &te, "UPDATE jobs SET message = ?, updated = ? WHERE id = ?", "sds",
                         e->msg, now, r->id);
        return rc;
    }
    return coord_plan_pack(&g->plan, &g->packed, &g->packed_len, e);
}

/* One transaction: the job's np, session and plan, rank 0's row, and RUNNING (or, for a job
 * RUNNING already, a register event). */
static int register_commit(coord_jobs_t *j, struct job_row *r, const struct ud_msg *req,
                           const struct registration *g, double now, struct ud_err *e)
{
    int rc = coord_db_begin(j->db, e);
    if (rc != 0)
        return rc;
    rc = coord_db_run(
        j->db, e,
        "UPDATE jobs SET np = COALESCE(np, ?1), session = ?2, epochs = COALESCE(epochs,"
        " ?3), updated = ?4 WHERE id = ?5",
        "isids", (int64_t)req->world, g->session, (int64_t)g->spec.epochs, now, r->id);
    if (rc >= 0 && g->packed)
        rc = coord_db_run(j->db, e, "UPDATE jobs SET plan = ? WHERE id = ? AND plan IS NULL", "bs",
                          g->packed, g->packed_len, r->id);
    if (rc >= 0)
        rc = coord_db_run(j->db, e,
                          "INSERT INTO ranks (job, rank, host, pid, step, last_heartbeat)"
                          " VALUES (?1, 0, ?2, ?3, COALESCE((SELECT step FROM ranks WHERE job = ?1"
                          " AND rank = 0), 0), ?4) ON CONFLICT (job, rank) DO UPDATE SET host = ?2,"
                          " pid = ?3, last_heartbeat = ?4",
                          "ssid", r->id, req->host, req->pid, now);
    if (rc >= 0 && strcmp(r->state, "RUNNING") != 0) {
        rc = job_transition(j, r, "RUNNING", now, g->msg, 1, e);
        if (rc == 0)
            rc = ud_err_set(e, UD_ESTATE, "job %s changed state while registering: try again",
                            r->id);
    } else if (rc >= 0) {
        rc = job_event(j, r->id, now, "register", g->msg, e);
    }
    return coord_db_end(j->db, rc, e);
}

/* The job message rank 0 is answered with: the job, where to write, the spec's worker
 * options (with --report-every 20 unless it sets one) and the plan (moved out of g). */
static int register_reply(const struct job_row *r, const struct ud_msg *req, struct registration *g,
                          struct ud_msg *reply, struct ud_err *e)
{
    reply->type = UD_MSG_JOB;
    reply->id = req->id;
    reply->heartbeat_s = 1.0;
    reply->resume = req->resume || r->resume_from != NULL;
    int rc;
    if ((rc = ud_msg_set_str(&reply->job, r->id)) || (rc = ud_msg_set_str(&reply->name, r->name)) ||
        (rc = ud_msg_set_str(&reply->session, g->session)) ||
        (rc = ud_msg_set_str(&reply->out, g->out)))
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    for (int i = 0; i < g->spec.nargs && rc == 0; i++)
        rc = ud_msg_add_arg(reply, g->spec.args[i]);
    if (rc == 0 && !has_option(&g->spec, "--report-every")) {
        rc = ud_msg_add_arg(reply, "--report-every");
        if (rc == 0)
            rc = ud_msg_add_arg(reply, "20");
    }
    if (rc)
        return ud_err_set(e, rc, "job %s: building the reply: %s", r->id, ud_strerror(rc));
    reply->plan = g->plan;
    reply->has_plan = 1;
    memset(&g->plan, 0, sizeof g->plan);
    return 0;
}

int coord_jobs_register(coord_jobs_t *j, const struct ud_msg *req, struct ud_msg *reply,
                        struct ud_err *e)
{
    memset(reply, 0, sizeof *reply);
    double now = ud_clock_wall();
    char id[32];
    int rc = register_job_id(j, req, id, sizeof id, e);
    if (rc != 0)
        return rc;
    struct job_row r;
    if ((rc = job_load(j, id, &r, e)) != 0)
        return rc;
    struct registration g;
    memset(&g, 0, sizeof g);
    if ((rc = register_check(j, &r, req, now, e)) != 0)
        goto out;
    if ((rc = coord_spec_parse(r.spec, strlen(r.spec), &g.spec, e)) != 0) {
        ud_err_prefix(e, "%s: stored spec", r.id);
        goto out;
    }
    if ((rc = job_dir_make(j, r.id, e)) != 0 || (rc = register_plan(j, &r, req->world, now, &g, e)))
        goto out;
    if (g.spec.session)
        snprintf(g.session, sizeof g.session, "%s", g.spec.session);
    else
        snprintf(g.session, sizeof g.session, "%s/jobs/%s/session", j->cfg.state_dir, r.id);
    snprintf(g.out, sizeof g.out, "%s/jobs/%s/model.udm", j->cfg.state_dir, r.id);
    snprintf(g.msg, sizeof g.msg, "rank 0 of %d registered from %s (pid %lld)%s", req->world,
             req->host, (long long)req->pid, req->resume ? " with --resume" : "");
    int was_running = strcmp(r.state, "RUNNING") == 0;
    if ((rc = register_commit(j, &r, req, &g, now, e)) < 0)
        goto out;
    struct job_mem *m = job_mem_get(j, r.id);
    if (m) {
        m->registered_at = now;
        m->cancel_seen = 0;
    }
    if (was_running)
        coord_log(COORD_LOG_INFO, "%s: %s (again, while RUNNING)", r.id, g.msg);
    if ((rc = register_reply(&r, req, &g, reply, e)) != 0)
        ud_msg_deinit(reply);
out:
    registration_deinit(&g);
    job_row_deinit(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* heartbeat, progress, checkpoint, done                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Loads the job of a request from a rank and checks it may report: 1 when it is finished (the
 * caller writes nothing and answers with *cancel), 0 when it is live, or an error. */
static int load_for_report(coord_jobs_t *j, const struct ud_msg *req, struct job_row *r,
                           int *cancel, struct ud_err *e)
{
    int rc = job_load(j, req->job, r, e);
    if (rc)
        return rc;
    *cancel = r->cancel_requested;
    if (coord_job_state_terminal(r->state)) {
        /* Workers of a failed or cancelled job should stop; a finished one is winding down. */
        *cancel = strcmp(r->state, "SUCCEEDED") != 0;
        return 1;
    }
    if (r->np > 0 && req->rank >= r->np) {
        rc = ud_err_set(e, UD_EINVAL, "job %s has %d ranks: there is no rank %d", r->id, r->np,
                        req->rank);
    } else if (strcmp(r->state, "PENDING") == 0) {
        rc = ud_err_set(e, UD_ESTATE, "job %s is PENDING: rank 0 must register first", r->id);
    }
    if (rc)
        job_row_deinit(r);
    return rc;
}

int coord_jobs_heartbeat(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e)
{
    struct job_row r;
    int rc = load_for_report(j, req, &r, cancel, e);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        rc = coord_db_run(j->db, e,
                          "INSERT INTO ranks (job, rank, host, pid, step, last_heartbeat)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (job, rank) DO UPDATE SET"
                          " host = ?3, pid = ?4, step = ?5, last_heartbeat = ?6",
                          "sisiid", r.id, (int64_t)req->rank, req->host, req->pid, req->step,
                          ud_clock_wall());
    }
    job_row_deinit(&r);
    return rc < 0 ? rc : 0;
}

/* What a report writes, inside the transaction report_write opened. */
typedef int (*report_fn)(coord_jobs_t *j, const struct job_row *r, const struct ud_msg *req,
                         double now, struct ud_err *e);

/* A report from a rank of a live job, written in one transaction (a finished job's reports
 * write nothing: the answer is *cancel). Returns 0 or an error. */
static int report_write(coord_jobs_t *j, const struct ud_msg *req, int *cancel, report_fn write,
                        struct ud_err *e)
{
    struct job_row r;
    int rc = load_for_report(j, req, &r, cancel, e);
    if (rc)
        return rc < 0 ? rc : 0;
    double now = ud_clock_wall();
    if ((rc = coord_db_begin(j->db, e)) == 0)
        rc = coord_db_end(j->db, write(j, &r, req, now, e), e);
    job_row_deinit(&r);
    return rc < 0 ? rc : 0;
}

/* progress: the metrics (finite ones: JSON cannot carry NaN, and a missing value says the
 * same), the job's position, and the rank's step. */
static int write_progress(coord_jobs_t *j, const struct job_row *r, const struct ud_msg *req,
                          double now, struct ud_err *e)
{
    int rc = 0;
    for (int i = 0; i < req->nmetrics && rc >= 0; i++) {
        if (!isfinite(req->metrics[i].value))
            continue;
        rc = coord_db_run(j->db, e,
                          "INSERT OR REPLACE INTO metrics (job, key, step, value, time)"
                          " VALUES (?, ?, ?, ?, ?)",
                          "ssidd", r->id, req->metrics[i].key, req->step, req->metrics[i].value,
                          now);
    }
    if (rc >= 0)
        rc = coord_db_run(j->db, e,
                          "UPDATE jobs SET epoch = ?, iteration = ?, steps_per_epoch = ?,"
                          " total_steps = ?, updated = ? WHERE id = ?",
                          "iiiids", req->epoch, req->step, req->steps_per_epoch, req->total_steps,
                          now, r->id);
    if (rc >= 0)
        rc = coord_db_run(
            j->db, e, "UPDATE ranks SET step = ?, last_heartbeat = ? WHERE job = ? AND rank = ?",
            "idsi", req->step, now, r->id, (int64_t)req->rank);
    return rc;
}

/* checkpoint: the checkpoint's row, what a restart resumes from, and an event. */
static int write_checkpoint(coord_jobs_t *j, const struct job_row *r, const struct ud_msg *req,
                            double now, struct ud_err *e)
{
    char msg[4200];
    snprintf(msg, sizeof msg, "checkpoint at iteration %lld (epoch %lld, minibatch %lld): %s",
             (long long)req->step, (long long)req->epoch, (long long)req->minibatch, req->path);
    int rc = coord_db_run(j->db, e,
                          "INSERT OR REPLACE INTO checkpoints (job, iteration, epoch, minibatch,"
                          " path, time) VALUES (?, ?, ?, ?, ?, ?)",
                          "siiisd", r->id, req->step, req->epoch, req->minibatch, req->path, now);
    if (rc >= 0)
        rc = coord_db_run(j->db, e, "UPDATE jobs SET resume_from = ?, updated = ? WHERE id = ?",
                          "sds", req->path, now, r->id);
    if (rc >= 0)
        rc = job_event(j, r->id, now, "checkpoint", msg, e);
    return rc;
}

int coord_jobs_progress(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e)
{
    return report_write(j, req, cancel, write_progress, e);
}

int coord_jobs_checkpoint(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e)
{
    return report_write(j, req, cancel, write_checkpoint, e);
}

int coord_jobs_done(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e)
{
    struct job_row r;
    int rc = job_load(j, req->job, &r, e);
    if (rc)
        return rc;
    double now = ud_clock_wall();
    *cancel = r.cancel_requested;
    char msg[1024];
    const char *what = req->msg && req->msg[0] ? req->msg : "no message";
    if (coord_job_state_terminal(r.state)) {
        *cancel = strcmp(r.state, "SUCCEEDED") != 0;
        rc = 0; /* a repeated or late done changes nothing */
    } else if (strcmp(req->status, "cancelled") == 0 && !r.cancel_requested &&
               r.launch == COORD_SCHED_SLURM) {
        /* Nobody here asked: Slurm's signal (a time limit, scancel). The Slurm job's end
         * decides what follows (coord_slurm.c). */
        snprintf(msg, sizeof msg, "rank %d was stopped by a signal from outside: %s", req->rank,
                 what);
        if (strcmp(r.state, "RUNNING") == 0)
            rc = job_to_restarting(j, &r, now, msg, e);
        else
            rc = job_event(j, r.id, now, "done", msg, e);
    } else if (strcmp(req->status, "cancelled") == 0) {
        snprintf(msg, sizeof msg, "rank %d stopped after the cancel: %s", req->rank, what);
        rc = job_transition(j, &r, "CANCELLED", now, msg, 0, e);
    } else if (strcmp(req->status, "failed") == 0) {
        int retry = req->code == UD_EMPI || req->code == UD_ETIMEOUT || req->code == UD_ENET;
        snprintf(msg, sizeof msg, "rank %d failed (%s): %s", req->rank, ud_err_name(req->code),
                 what);
        if (retry && strcmp(r.state, "RUNNING") == 0)
            rc = job_to_restarting(j, &r, now, msg, e);
        else if (retry) /* already RESTARTING (or not yet started): say so, nothing more */
            rc = job_event(j, r.id, now, "done", msg, e);
        else
            rc = job_transition(j, &r, "FAILED", now, msg, 0, e);
    } else {
        snprintf(msg, sizeof msg, "rank %d says it finished (%s)", req->rank, what);
        rc = job_event(j, r.id, now, "done", msg, e);
    }
    job_row_deinit(&r);
    return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* model: the registry                                                                         */
/* ------------------------------------------------------------------------------------------ */

static void json_set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

static char *metrics_json(const struct ud_msg *req, const ud_model_t *m)
{
    json_t *o = json_object();
    for (int i = 0; i < req->nmetrics; i++)
        if (isfinite(req->metrics[i].value))
            json_object_set_new(o, req->metrics[i].key, json_real(req->metrics[i].value));
    if (req->nmetrics == 0) { /* none sent: the model file's own */
        for (size_t i = 0; i < ud_model_metric_count(m); i++) {
            const char *k;
            double v;
            if (ud_model_metric_at(m, i, &k, &v) == 0 && isfinite(v))
                json_object_set_new(o, k, json_real(v));
        }
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static char *lineage_json(const char *job, const struct coord_spec *s)
{
    json_t *o = json_object();
    json_set_str(o, "job", job);
    json_set_str(o, "dataset", s->data);
    json_set_str(o, "architecture", s->arch);
    json_object_set_new(o, "base", json_null());
    char *str = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return str;
}

/* An upload for a job that is SUCCEEDED already: the same bytes again (a re-sent upload) get
 * the same version; others are UD_ECONFLICT. */
static int model_resent(coord_jobs_t *j, const struct job_row *r, const struct ud_msg *req,
                        const char *hex, int64_t *version, struct ud_err *e)
{
    char stored[65], plain[65];
    int rc;
    if ((rc = coord_db_model_sha(j->db, r->name, r->model_version, stored, e)) != 0 ||
        (rc = coord_store_plain_sha256(j->cfg.state_dir, j->cfg.keys, stored, plain, e)) != 0)
        return rc;
    if (strcmp(plain, req->sha256) == 0 && strcmp(hex, req->sha256) == 0) {
        *version = r->model_version;
        return 0;
    }
    return ud_err_set(e, UD_ECONFLICT,
                      "job %s already registered %s version %lld (sha256 %.12s...), not this "
                      "model (%.12s...)",
                      r->id, r->name, (long long)r->model_version, plain, req->sha256);
}

/* Whether job r takes this upload: a live job, its model name, bytes that hash to what the
 * message says (hex). */
static int model_check(const struct job_row *r, const struct ud_msg *req, const char *hex,
                       struct ud_err *e)
{
    if (coord_job_state_terminal(r->state) || strcmp(r->state, "PENDING") == 0)
        return ud_err_set(e, UD_ESTATE, "job %s is %s: it takes no model", r->id, r->state);
    if (strcmp(req->name, r->name) != 0)
        return ud_err_set(e, UD_EINVAL, "job %s registers its model as '%s', not '%s'", r->id,
                          r->name, req->name);
    if (strcmp(hex, req->sha256) != 0)
        return ud_err_set(e, UD_ECHECKSUM,
                          "model upload for %s: the message says sha256 %.16s..., the %zu bytes "
                          "hash to %.16s...",
                          r->id, req->sha256, req->udm_len, hex);
    return 0;
}

/* One transaction: the new version (row, numbered here) and the job's success, or neither. */
static int model_commit(coord_jobs_t *j, struct job_row *r, struct coord_db_model_row *row,
                        struct ud_err *e)
{
    int rc = coord_db_begin(j->db, e);
    if (rc != 0)
        return rc;
    int64_t v = coord_db_model_next_version(j->db, r->name, e);
    rc = v < 0 ? (int)v : 0;
    row->version = v;
    if (rc == 0)
        rc = coord_db_model_insert(j->db, row, e);
    char msg[512];
    snprintf(msg, sizeof msg, "registered model %s version %lld (sha256 %.12s..., %zu bytes)",
             r->name, (long long)v, row->sha256, (size_t)row->size);
    if (rc >= 0)
        rc = job_transition(j, r, "SUCCEEDED", row->created, msg, 1, e);
    if (rc == 0)
        rc = ud_err_set(e, UD_ESTATE, "job %s changed state during the upload: try again", r->id);
    if (rc >= 0)
        rc = coord_db_run(j->db, e, "UPDATE jobs SET model_version = ? WHERE id = ?", "is", v,
                          r->id);
    rc = coord_db_end(j->db, rc, e);
    return rc < 0 ? rc : 0;
}

int coord_jobs_model(coord_jobs_t *j, const struct ud_msg *req, int64_t *version, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    struct job_row r;
    int rc = job_load(j, req->job, &r, e);
    if (rc)
        return rc;
    struct coord_spec spec;
    memset(&spec, 0, sizeof spec);
    ud_model_t *model = NULL;
    char *meta = NULL, *metrics = NULL, *lineage = NULL;
    double now = ud_clock_wall();

    /* The bytes must be what the worker says they are. */
    unsigned char sha[crypto_hash_sha256_BYTES];
    char hex[65], stored[65];
    crypto_hash_sha256(sha, req->udm, (unsigned long long)req->udm_len);
    sodium_bin2hex(hex, sizeof hex, sha, sizeof sha);
    if (strcmp(r.state, "SUCCEEDED") == 0 && r.model_version > 0) {
        rc = model_resent(j, &r, req, hex, version, e);
        goto out;
    }
    if ((rc = model_check(&r, req, hex, e)) != 0)
        goto out;
    if (!(model = ud_udm_decode(req->udm, req->udm_len, e))) {
        rc = e->code ? e->code : UD_EFORMAT;
        ud_err_prefix(e, "model upload for %s: not a valid .udm", r.id);
        goto out;
    }
    if ((rc = coord_spec_parse(r.spec, strlen(r.spec), &spec, e)) != 0) {
        ud_err_prefix(e, "%s: stored spec", r.id);
        goto out;
    }
    size_t stored_len = 0;
    if ((rc = coord_store_put_model(j->cfg.state_dir, j->cfg.keys, req->udm, req->udm_len, stored,
                                    &stored_len, e)) != 0)
        goto out;
    meta = coord_model_metadata_json(model);
    metrics = metrics_json(req, model);
    lineage = lineage_json(r.id, &spec);
    if (!meta || !metrics || !lineage) {
        rc = ud_err_set(e, UD_ENOMEM, "model upload: out of memory");
        goto out;
    }
    struct coord_db_model_row row = {.name = r.name,
                                     .sha256 = stored,
                                     .job = r.id,
                                     .size = (int64_t)stored_len,
                                     .created = now,
                                     .metrics = metrics,
                                     .lineage = lineage,
                                     .metadata = meta};
    if ((rc = model_commit(j, &r, &row, e)) == 0)
        *version = row.version;
out:
    free(meta);
    free(metrics);
    free(lineage);
    ud_model_destroy(&model);
    coord_spec_deinit(&spec);
    job_row_deinit(&r);
    return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Start-up                                                                                    */
/* ------------------------------------------------------------------------------------------ */

int coord_jobs_recover(coord_jobs_t *j, struct ud_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db,
                           "SELECT " JOB_ROW_COLUMNS " FROM jobs WHERE state IN ('PENDING',"
                           " 'RUNNING', 'RESTARTING') ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(j->db, e, "reading jobs");
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct job_row r;
        if (job_row_read(st, &r) != 0)
            continue;
        char pid[96] = "";
        if (r.pid > 0)
            snprintf(pid, sizeof pid, ", mpirun pid %lld (%s)", (long long)r.pid,
                     kill((pid_t)r.pid, 0) == 0 || errno == EPERM ? "still running" : "gone");
        char where[96] = "";
        if (r.iteration > 0)
            snprintf(where, sizeof where, ": iteration %lld, epoch %lld of %lld",
                     (long long)r.iteration, (long long)r.epoch + 1, (long long)r.epochs);
        coord_log(COORD_LOG_INFO, "recovered %s (%s) %s%s, %d restart%s%s%s%s", r.id, r.name,
                  r.state, where, r.restarts, r.restarts == 1 ? "" : "s", pid,
                  r.message ? "; " : "", r.message ? r.message : "");
        job_row_deinit(&r);
        n++;
    }
    int ret = rc == SQLITE_DONE ? n : coord_db_err(j->db, e, "reading jobs");
    sqlite3_finalize(st);
    return ret;
}

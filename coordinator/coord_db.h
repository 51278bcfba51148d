/*  coord_db.h — the coordinator's state: one SQLite database (WAL) in the state directory.
 *
 *  STATE/updraft.db holds everything the coordinator knows; STATE/models/ holds the model files
 *  (coord_store.h). A write is acknowledged (to a worker or a REST client) only after its
 *  transaction committed: with WAL and synchronous=NORMAL a committed transaction survives the
 *  process being killed (kill -9); a power cut may lose the last ones, never corrupt the file.
 *
 *  Connections: the coordinator's main thread (worker protocol, job monitor) has the one
 *  read-write connection it keeps. The REST threads open their own connections: read-only ones
 *  for GETs, and short write transactions for the few mutating calls (job submit, cancel),
 *  which SQLite serialises with the main thread's (busy_timeout 5 s). Time columns are unix
 *  seconds (REAL).
 *
 *  The schema (version 1 below, versions 2 to 4 after it; `PRAGMA user_version` holds it):
 *
 *  jobs        one row per job
 *    id TEXT PRIMARY KEY            "job-000001" (seq, zero-padded to 6)
 *    seq INTEGER UNIQUE NOT NULL    creation order, from 1
 *    name TEXT NOT NULL             model name the result is registered under
 *    state TEXT NOT NULL            PENDING | RUNNING | RESTARTING | SUCCEEDED | FAILED | CANCELLED
 *    spec TEXT NOT NULL             the accepted JSON spec, canonical (coord_spec.h)
 *    np INTEGER                     ranks: the spec's launch.np, or the world that registered
 *    launch INTEGER NOT NULL        1: the coordinator starts mpirun on this host; 2: it submits
 *                                   the workers to Slurm (sbatch); 0: workers come on their own
 *    message TEXT                   why the job is in its state ("rank 1 silent for 10.0 s", ...)
 *    created, started, updated, finished REAL   (started/finished NULL until then)
 *    epochs INTEGER, epoch INTEGER, iteration INTEGER, steps_per_epoch INTEGER,
 *    total_steps INTEGER            progress as last reported (epoch is 0-based)
 *    cancel_requested INTEGER NOT NULL DEFAULT 0
 *    restarts INTEGER NOT NULL DEFAULT 0        launches after the first
 *    pid INTEGER                    mpirun's pid (local launch), else NULL
 *    session TEXT                   checkpoint directory of the job
 *    resume_from TEXT               newest announced checkpoint (what a restart resumes from)
 *    restarting_since REAL          when it went RESTARTING (FAILED after --restart-timeout)
 *    model_version INTEGER          the version registered on success
 *    plan BLOB                      the shard plan, msgpack (coord_plan_pack), NULL until made
 *  ranks       a job's ranks as last heard of
 *    job TEXT, rank INTEGER, host TEXT, pid INTEGER, step INTEGER, last_heartbeat REAL,
 *    PRIMARY KEY (job, rank)
 *  metrics     history of reported values
 *    job TEXT, key TEXT, step INTEGER, value REAL, time REAL, PRIMARY KEY (job, key, step)
 *    keys: loss, accuracy, samples_per_sec, learning_rate (every report), and at epoch ends
 *    epoch_loss, epoch_accuracy, val_loss, val_accuracy; test_accuracy, test_loss at the end
 *  checkpoints announced checkpoints
 *    job TEXT, iteration INTEGER, epoch INTEGER, minibatch INTEGER, path TEXT, time REAL,
 *    PRIMARY KEY (job, iteration)
 *  models      the registry: one row per version
 *    name TEXT, version INTEGER (1, 2, ... per name), sha256 TEXT, size INTEGER, created REAL,
 *    job TEXT (NULL if not from a job), metrics TEXT (JSON object), lineage TEXT (JSON object:
 *    {"job":..., "dataset":..., "architecture":..., "base": {"name":..,"version":..} | null}),
 *    metadata TEXT (JSON object: the .udm's description, author, license, version, labels,
 *    parameters), PRIMARY KEY (name, version)
 *  events      what happened, for GET /v1/jobs/{id} "events" and the log
 *    seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT, time REAL, kind TEXT, message TEXT
 *
 *
 *  Version 2 adds federations (coord_fed.h); a version 1 database is migrated in place (the
 *  schema is all CREATE ... IF NOT EXISTS):
 *
 *  devices     enrolled devices
 *    id INTEGER PRIMARY KEY, name TEXT, token_hash BLOB (BLAKE2b of the token's secret; the
 *    token itself is never stored), created REAL, last_seen REAL (its last authenticated
 *    call), updates INTEGER (accepted updates), revoked INTEGER
 *  federations one row per federation
 *    id INTEGER PRIMARY KEY, name TEXT, state TEXT (RUNNING | SUCCEEDED | FAILED | CANCELLED),
 *    spec TEXT (the accepted JSON spec, canonical), model TEXT (registry name),
 *    base_version INTEGER (the version it started from), current_version INTEGER (the newest
 *    published, or base_version), rounds INTEGER (how many to run), round INTEGER (number of the
 *    current or last round, from 1), message TEXT, created, updated, finished REAL
 *  rounds      one row per round
 *    id INTEGER PRIMARY KEY (what devices name in POST /v1/rounds/{id}/updates), federation,
 *    number INTEGER (1..rounds), state TEXT (WAITING: not enough devices available yet |
 *    OPEN: collecting | CLOSING: closed to updates, aggregation pending or under way |
 *    PUBLISHED | FAILED | CANCELLED), base_version INTEGER (the model version updates must be
 *    computed against), delta_floats INTEGER (updatable parameters: the length of a delta),
 *    created, opened, deadline, closed REAL, accepted INTEGER, samples INTEGER (sum over accepted
 *    updates), published_version INTEGER, eval_accuracy, eval_loss REAL, message TEXT
 *  participants the devices sampled for a round: round, device, PRIMARY KEY (round, device)
 *  updates     accepted updates: round, device, key TEXT (the idempotency key), samples,
 *    loss, accuracy, norm REAL, path TEXT (the delta file, relative to STATE), received REAL,
 *    PRIMARY KEY (round, device): one update per device per round; index updates_key (key),
 *    so that a key seen before (a replayed upload) is found at once (schema version 3)
 *  failures    sampled devices that reported they could not update: round, device, reason
 *    TEXT, time REAL, PRIMARY KEY (round, device)
 *  rejections  refused updates by reason: round, reason TEXT (duplicate, stale, closed,
 *    not_selected, shape, nonfinite, norm, malformed, too_large, conflict, replayed),
 *    count INTEGER
 *
 *  Version 4 adds the Slurm job of a job whose spec says "launch": {"scheduler": "slurm"}
 *  (coord_slurm.c; one row per job, replaced when a restart submits again):
 *
 *  slurm_jobs  job TEXT PRIMARY KEY, slurm_id TEXT (sbatch --parsable's id), state TEXT (Slurm's
 *    state as squeue last reported it: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED,
 *    CANCELLED, TIMEOUT, NODE_FAIL, ...; GONE when squeue no longer knows the id), script TEXT
 *    (the batch script's path), submitted, updated REAL, scancelled INTEGER (1: we ran scancel)
 *
 *  Thread-safety: a connection belongs to one thread at a time.
 */
#ifndef COORD_DB_H
#define COORD_DB_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"

#define COORD_DB_FILE           "updraft.db"
#define COORD_DB_SCHEMA_VERSION 4

/* Job states, as stored. */
#define COORD_JOB_STATES(X) X(PENDING) X(RUNNING) X(RESTARTING) X(SUCCEEDED) X(FAILED) X(CANCELLED)

/* Opens (creating and migrating when writable) STATE/updraft.db. readonly: a read-only
 * connection for REST GETs (the database must exist). Sets WAL, synchronous=NORMAL,
 * foreign_keys, busy_timeout 5000. Returns 0, UD_EIO (e names the file and SQLite's message)
 * or UD_EVERSION (a newer schema: say which). *db is the caller's: close with
 * coord_db_close. */
int coord_db_open(const char *state_dir, int readonly, sqlite3 **db, struct ud_err *e);
void coord_db_close(sqlite3 **db);

/* Maps a SQLite failure into e: UD_EIO with "what: <sqlite message>"; returns UD_EIO. */
int coord_db_err(sqlite3 *db, struct ud_err *e, const char *what);

/* Terminal states: SUCCEEDED, FAILED, CANCELLED. */
int coord_job_state_terminal(const char *state);

/* ---- Statements and transactions, on any connection (the caller's thread owns it) ---- */

/* Runs one statement to its end (rows a SELECT returns are skipped). types names the arguments
 * that follow, one letter each: 's' text (const char *; NULL binds null), 'i' int64_t, 'd'
 * double, 'b' blob (const void *, then size_t), 'n' null (takes no argument). Returns the
 * number of rows changed (>= 0), or UD_EIO with e set ("database: <SQLite's message>"). */
int coord_db_run(sqlite3 *db, struct ud_err *e, const char *sql, const char *types, ...);
/* BEGIN IMMEDIATE: the write lock is taken now (waiting up to busy_timeout), so the reads
 * that follow see what the writes will be checked against. Returns 0 or UD_EIO. */
int coord_db_begin(sqlite3 *db, struct ud_err *e);
/* COMMIT. Returns 0, or UD_EIO after rolling back. */
int coord_db_commit(sqlite3 *db, struct ud_err *e);
/* ROLLBACK when a transaction is open; nothing otherwise. */
void coord_db_rollback(sqlite3 *db);
/* Ends the transaction coord_db_begin opened: rolls back when rc < 0 (returning rc), else
 * commits (returning rc, or UD_EIO when the commit fails). */
int coord_db_end(sqlite3 *db, int rc, struct ud_err *e);

/* ---- The model registry (table models): jobs and federations add versions to it ---- */

/* The stored object (coord_store.h) of version `version` of model name, into sha256. Returns
 * 0, UD_ENOTFOUND ("model x version n is not registered") or UD_EIO. */
int coord_db_model_sha(sqlite3 *db, const char *name, int64_t version, char sha256[65],
                       struct ud_err *e);
/* The number the next version of name gets (1 for a new name), or UD_EIO. Call it inside the
 * transaction that inserts the version, so that no one else takes the number. */
int64_t coord_db_model_next_version(sqlite3 *db, const char *name, struct ud_err *e);

/* One row of table models; strings are borrowed. job NULL: not from a job (a federation). */
struct coord_db_model_row {
    const char *name, *sha256, *job;
    int64_t version, size;
    double created;
    const char *metrics, *lineage, *metadata; /* JSON objects, as text */
};
/* Inserts a version (inside the caller's transaction). Returns 1, or UD_EIO (also when the
 * version exists). */
int coord_db_model_insert(sqlite3 *db, const struct coord_db_model_row *row, struct ud_err *e);
/* The metadata column for a decoded model: the .udm's description, author, license, version,
 * labels, parameter count and additional keys, as compact JSON with sorted keys. The caller
 * frees it; NULL: out of memory. */
char *coord_model_metadata_json(const ud_model_t *m);

#endif

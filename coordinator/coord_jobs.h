/*  coord_jobs.h — jobs: the state machine, the shard planner, the worker protocol's effects on
 *  the database, the model registry, and the monitor that launches and watches local mpiruns
 *  and Slurm jobs.
 *
 *  States and the transitions this module makes (each one a conditional UPDATE on the state
 *  read, so a concurrent REST cancel is never overwritten; each records jobs.message and an
 *  events row of kind "state"):
 *
 *    PENDING    -> RUNNING     rank 0 registered (the plan is made on first registration)
 *    PENDING    -> FAILED      the plan cannot be made (launched job), mpirun cannot start or
 *                              exits before rank 0 registered
 *    RUNNING    -> RESTARTING  ranks silent for the heartbeat timeout, mpirun exited non-zero,
 *                              done failed with UD_EMPI / UD_ETIMEOUT / UD_ENET
 *    RUNNING    -> SUCCEEDED   the model upload was registered (same transaction)
 *    RUNNING    -> FAILED      done failed with another code; mpirun exited 0 with no model
 *    RUNNING    -> CANCELLED   done cancelled; a launched job still running cancel_grace after the
 *                              cancel (SIGTERM); silence or an exit after a cancel request
 *    RESTARTING -> RUNNING     rank 0 registered again (a relaunch, or workers started by hand)
 *    RESTARTING -> FAILED      restart timeout, or launch.max_restarts relaunches used up
 *    RESTARTING -> SUCCEEDED   a model upload from workers that were only thought lost
 *  A job launched through Slurm (coord_slurm.c, docs/slurm.md) moves the same ways, with its
 *  Slurm job's end (squeue) standing in for mpirun's exit: PENDING -> FAILED (sbatch fails, or
 *  the Slurm job ends before rank 0 registered), RUNNING -> RESTARTING (it ends early, or a
 *  rank reports "cancelled" without a cancel request: Slurm's signal), RUNNING -> FAILED (it
 *  COMPLETED without a model); a RESTARTING one is submitted again.
 *  The REST side makes PENDING/RESTARTING -> CANCELLED and sets cancel_requested.
 *
 *  Thread-safety: a coord_jobs_t belongs to the coordinator's main thread (it uses the one
 *  read-write connection it was given, and forks).
 */
#ifndef COORD_JOBS_H
#define COORD_JOBS_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "coord_spec.h"
#include "coord_store.h"
#include "updraft/ud_error.h"
#include "updraft/ud_plan.h"
#include "updraft/ud_msg.h"

struct coord_config {
    const char *state_dir;   /* absolute path */
    const char *advertise;   /* the ZeroMQ endpoint handed to locally launched workers */
    const char *worker_path; /* updraft-worker (absolute) */
    const char *mpirun_path; /* mpirun: a path, or a name looked up in PATH at launch */
    /* Slurm's sbatch, squeue, scancel: paths, or names looked up in PATH when used */
    const char *sbatch_path, *squeue_path, *scancel_path;
    double heartbeat_timeout;            /* seconds of silence before RUNNING -> RESTARTING */
    double restart_timeout;              /* seconds in RESTARTING before FAILED */
    double cancel_grace;                 /* seconds a launched job has to stop after a cancel */
    double started;                      /* unix time the coordinator started */
    const struct coord_model_keys *keys; /* seal registered versions (NULL: as given) */
    /* CURVE for launched workers: both set (absolute paths: the coordinator's public key file
     * and the workers' keypair file), passed as --curve-server-key and --curve-secret; or NULL */
    const char *curve_server_pub, *curve_worker_secret;
};

typedef struct coord_jobs coord_jobs_t;

/* Creates the job manager over db (borrowed: must outlive it) and cfg (strings borrowed).
 * Returns NULL with e set (UD_ENOMEM). */
coord_jobs_t *coord_jobs_new(const struct coord_config *cfg, sqlite3 *db, struct ud_err *e);
/* Frees it; running mpiruns are left alone (they outlive the coordinator on purpose). Accepts
 * NULL; NULLs *j. */
void coord_jobs_destroy(coord_jobs_t **j);

/* Logs one line per job that is not finished (start-up after a restart). Returns the number
 * of such jobs, or UD_EIO. */
int coord_jobs_recover(coord_jobs_t *j, struct ud_err *e);
/* The monitor, every ~200 ms: launches PENDING jobs with launch.np, reaps mpirun children and
 * watches a previous coordinator's with kill(pid, 0), moves silent RUNNING jobs to RESTARTING,
 * relaunches or fails RESTARTING ones, enforces the cancel grace, stops leftover mpiruns of
 * finished jobs. now: unix seconds. Errors are logged; the next tick tries again. */
void coord_jobs_tick(coord_jobs_t *j, double now);

/* ---- The worker protocol's requests (coord_workers.c answers with these) ----
 * Each returns 0 or a negative UD_E* code with e saying why (the text of the error reply):
 * UD_ENOTFOUND (no such job), UD_ESTATE (a finished job, or one that never registered),
 * UD_ECONFLICT, UD_EINVAL, UD_ECHECKSUM, UD_EIO (the database). Every write is committed
 * before the function returns, so a reply acknowledges only what is durable. */

/* register: fills reply (a UD_MSG_JOB message with req's id; the caller deinits it). */
int coord_jobs_register(coord_jobs_t *j, const struct ud_msg *req, struct ud_msg *reply,
                        struct ud_err *e);
/* heartbeat, progress, checkpoint, done: *cancel says whether the job should stop. */
int coord_jobs_heartbeat(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e);
int coord_jobs_progress(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e);
int coord_jobs_checkpoint(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e);
int coord_jobs_done(coord_jobs_t *j, const struct ud_msg *req, int *cancel, struct ud_err *e);
/* model: registers the upload as the next version of the job's model name and sets the job
 * SUCCEEDED, in one transaction; *version is that version. A re-sent upload of the same bytes
 * for a job already SUCCEEDED gets the same version. */
int coord_jobs_model(coord_jobs_t *j, const struct ud_msg *req, int64_t *version, struct ud_err *e);

/* ---- The shard planner ---- */

/* Computes the plan of spec s for world ranks: loads the training data as the worker does
 * (ud_dataset_load with the spec's input, max_samples, skip_bad; an architecture file's input
 * shape when the spec gives none), applies the validation split (ud_split_indices with the
 * spec's validation and seed) and calls ud_plan_make. Returns 0 or the loader's / planner's
 * error with e naming the file or the reason; p is the caller's to ud_plan_deinit. */
int coord_plan_make(const struct coord_spec *s, int world, struct ud_plan *p, struct ud_err *e);
/* The plan as stored in jobs.plan: msgpack (the "plan" value of a job message, wrapped in
 * that message). *buf is malloc'd, the caller's. Returns 0, UD_EINVAL, UD_ELIMIT, UD_ENOMEM. */
int coord_plan_pack(const struct ud_plan *p, void **buf, size_t *len, struct ud_err *e);
/* Reverses coord_plan_pack (the plan is checked with ud_plan_validate). Returns 0 or
 * UD_EFORMAT / UD_ENOMEM; p is the caller's to ud_plan_deinit. */
int coord_plan_unpack(const void *buf, size_t len, struct ud_plan *p, struct ud_err *e);

#endif

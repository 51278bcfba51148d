/*  coord_jobs_impl.h — what coord_jobs.c (state machine, protocol effects, registry, planner)
 *  and coord_monitor.c (launcher and monitor) share. Not for other modules: coord_jobs.h is
 *  the interface.
 */
#ifndef COORD_JOBS_IMPL_H
#define COORD_JOBS_IMPL_H

#include <sqlite3.h>
#include <stdint.h>

#include "coord_jobs.h"

/* What the coordinator remembers about a job between ticks, in memory only: after a restart
 * it starts empty, and every use falls back to something safe (the coordinator's start time,
 * "not ours"). */
struct job_mem {
    char id[32];
    double registered_at; /* rank 0's last registration (silence is measured from it) */
    int64_t child_pid;    /* the mpirun we forked (reaped with waitpid), 0 none */
    double cancel_seen;   /* first tick that saw cancel_requested (cancel grace) */
    double leftover_seen; /* first tick that saw a finished job's mpirun still alive */
    int64_t killed_pid;   /* the mpirun we sent SIGTERM to, and when */
    double killed_at;
    int sigkilled;
    double slurm_polled; /* last squeue of its Slurm job (coord_slurm.c) */
    double slurm_warned; /* last warning that squeue failed (one per 30 s) */
    double scancel_at;   /* last scancel we ran (retried every few seconds while it runs) */
};

struct coord_jobs {
    struct coord_config cfg;
    sqlite3 *db;
    struct job_mem *mem;
    size_t nmem, capmem;
    double slurm_quiet_until; /* after a Slurm command missed its deadline: none until then */
};

/* A jobs row as the coordinator reads it. Strings are owned (job_row_deinit). */
struct job_row {
    char id[32], name[72], state[16];
    char *spec, *session, *resume_from, *message;
    int np, launch, cancel_requested, restarts, has_plan;
    int64_t pid, model_version, epochs, epoch, iteration;
    double created, started, restarting_since;
};
#define JOB_ROW_COLUMNS                                                                            \
    "id, name, state, spec, session, resume_from, message, np, launch, cancel_requested, "         \
    "restarts, plan IS NOT NULL, pid, model_version, epochs, epoch, iteration, created, started, " \
    "restarting_since"

/* Fills r from a statement whose columns start with JOB_ROW_COLUMNS. Returns 0 or UD_ENOMEM. */
int job_row_read(sqlite3_stmt *st, struct job_row *r);
void job_row_deinit(struct job_row *r);
/* Loads job id. Returns 0, UD_ENOTFOUND ("no job 'x'") or UD_EIO. */
int job_load(coord_jobs_t *j, const char *id, struct job_row *r, struct ud_err *e);

/* Adds an events row (inside the caller's transaction, or on its own). */
int job_event(coord_jobs_t *j, const char *id, double now, const char *kind, const char *msg,
              struct ud_err *e);

/* Makes STATE/jobs/<id>/ (and STATE/jobs/) when missing: what the job's session, model and
 * worker.log go in. Returns 0 or ud_file_mkdirs' error. */
int job_dir_make(coord_jobs_t *j, const char *id, struct ud_err *e);

/* The job's memory (created on first use; NULL only when out of memory). */
struct job_mem *job_mem_get(coord_jobs_t *j, const char *id);

/* Moves job r from r->state to `to` with message msg: one conditional UPDATE plus an events
 * row, inside the caller's transaction (tx: 0 makes its own). Returns 1 when the job moved,
 * 0 when its state was no longer r->state (someone else moved it first), UD_EINTERNAL for a
 * transition the state machine does not have, UD_EIO. On success r->state is `to`. */
int job_transition(coord_jobs_t *j, struct job_row *r, const char *to, double now, const char *msg,
                   int tx, struct ud_err *e);
/* RUNNING -> RESTARTING because of why (or CANCELLED when a cancel was requested); the
 * message adds what the restart resumes from; a launched job's mpirun is sent SIGTERM. */
int job_to_restarting(coord_jobs_t *j, struct job_row *r, double now, const char *why,
                      struct ud_err *e);
/* Sends SIGTERM to the process group of mpirun pid (once; coord_monitor escalates). */
void job_stop_mpirun(coord_jobs_t *j, struct job_mem *m, int64_t pid, double now, const char *why);

/* ---- Shared by the monitor (coord_monitor.c) and the Slurm launcher (coord_slurm.c) ---- */

/* name with a '/' as is; else the first executable PATH entry, into out. Returns 0 or -1. */
int job_resolve_exe(const char *name, char *out, size_t n);
/* STATE/jobs/ID/worker.log, where the workers' output goes. */
void job_log_path(coord_jobs_t *j, const char *id, char *buf, size_t n);
/* The line of a worker.log that best says why it ended (at most n-1 bytes; "" if none). */
void job_log_last_line(const char *path, char *buf, size_t n);
/* RUNNING job r: ranks silent for the heartbeat timeout move it to RESTARTING. */
void job_check_silence(coord_jobs_t *j, struct job_row *r, struct job_mem *m, double now);
/* The spec's launch.max_restarts (0 when the stored spec does not parse). */
int job_max_restarts(const struct job_row *r);

/* The monitor's step for a job whose launch is COORD_SCHED_SLURM, in any state, and for a
 * finished one whose Slurm job has not ended yet: submits it (sbatch), follows the Slurm job
 * (squeue at most once a second, each call with a short deadline), records the Slurm job's
 * state changes as "slurm" events, moves the job when the Slurm job ends before the workers
 * finished, and scancels a Slurm job whose job is over. Errors are logged. */
void slurm_tick_job(coord_jobs_t *j, struct job_row *r, struct job_mem *m, double now);
/* SQL: the job ids whose Slurm job has not ended (the monitor looks at them every tick). */
#define SLURM_LIVE_JOBS_SQL                                                                        \
    "SELECT job FROM slurm_jobs WHERE state NOT IN ('COMPLETED', 'FAILED', 'CANCELLED',"           \
    " 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE', 'OUT_OF_MEMORY',"              \
    " 'SPECIAL_EXIT', 'REVOKED', 'GONE')"

#endif

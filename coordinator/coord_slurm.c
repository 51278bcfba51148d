/*  coord_slurm.c — jobs launched through Slurm: the batch script, sbatch, following the Slurm
 *  job with squeue, scancel.
 *
 *  A job whose spec says "launch": {"scheduler": "slurm", "np": N, ...} is submitted by the
 *  monitor: it writes STATE/jobs/ID/slurm.sh (#SBATCH lines for the job name, ntasks,
 *  partition, time and account, then `mpirun -np N updraft-worker --coordinator ADVERTISE --job
 *  ID` inside the allocation), runs `sbatch --parsable` and records the Slurm job's id in table
 *  slurm_jobs. From then on it asks squeue for the Slurm job's state at most once a second,
 *  records each change as a "slurm" event, and acts when the Slurm job ends before the workers
 *  finished (docs/slurm.md has the table). The workers' own reports (registration, heartbeats,
 *  done) move the job as for a local launch; Slurm's state adds what the workers cannot say
 *  (they never started, a time limit or scancel killed them).
 *
 *  sbatch, squeue and scancel run in the main loop's thread, each with a deadline
 *  (SBATCH_DEADLINE_S, QUERY_DEADLINE_S): a slurmctld that does not answer costs the loop that
 *  long once, then the command is killed, and no squeue or scancel runs for QUIET_AFTER_MISS_S
 *  (for any job), so a hung slurmctld blocks the loop at most 3 s in 18. Their children are
 *  waited for here by pid, before the monitor's waitpid(-1) could see them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_db.h"
#include "coord_jobs_impl.h"
#include "coord_log.h"
#include "updraft/ud_buf.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_file.h"

extern char **environ;

#define SBATCH_DEADLINE_S  10.0 /* sbatch answers at once unless slurmctld is down */
#define QUERY_DEADLINE_S   3.0  /* squeue, scancel */
#define POLL_EVERY_S       1.0  /* squeue per job at most this often */
#define SCANCEL_RETRY_S    5.0
#define WARN_EVERY_S       30.0
#define QUIET_AFTER_MISS_S 15.0 /* after a deadline miss, squeue and scancel wait this long */

/* Slurm's states after which nothing of the job runs, and GONE (squeue no longer knows the
 * id). The same list as SLURM_LIVE_JOBS_SQL. */
static int slurm_state_ended(const char *s)
{
    static const char *const ENDED[] = {"COMPLETED",    "FAILED",    "CANCELLED", "TIMEOUT",
                                        "NODE_FAIL",    "PREEMPTED", "BOOT_FAIL", "OUT_OF_MEMORY",
                                        "SPECIAL_EXIT", "REVOKED",   "DEADLINE",  "GONE"};
    for (size_t i = 0; i < sizeof ENDED / sizeof ENDED[0]; i++)
        if (strcmp(s, ENDED[i]) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Running Slurm's commands                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define RUN_FAILED   (-1) /* could not start it (errno) */
#define RUN_DEADLINE (-2) /* killed at the deadline */

/* Runs argv[0] (an absolute path) with stdin from /dev/null and stdout and stderr into out (the
 * first n-1 bytes, NUL-terminated), for at most deadline seconds, after which its process
 * group is killed. Returns the exit status (0..255), 256 + the signal that killed it,
 * RUN_FAILED or RUN_DEADLINE. */
static int run_cmd(const char *const argv[], double deadline, char *out, size_t n)
{
    out[0] = '\0';
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return RUN_FAILED;
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t pid = nullfd >= 0 ? fork() : -1;
    if (pid == 0) {
        /* The child: async-signal-safe calls only (the coordinator has threads). */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        setpgid(0, 0);
        dup2(nullfd, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
#ifdef SYS_close_range
        if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
#endif
            for (long fd = 3; fd < maxfd; fd++)
                close((int)fd);
        execve(argv[0], (char *const *)argv, environ);
        _exit(127);
    }
    close(fds[1]);
    if (nullfd >= 0)
        close(nullfd);
    if (pid < 0) {
        close(fds[0]);
        return RUN_FAILED;
    }
    size_t len = 0;
    int late = 0;
    double end = ud_clock_mono() + deadline;
    for (;;) {
        double left = end - ud_clock_mono();
        if (left <= 0) {
            late = 1;
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr <= 0)
            continue; /* EINTR, or the deadline (seen above) */
        char tmp[1024];
        ssize_t got = read(fds[0], tmp, sizeof tmp);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        size_t keep = (size_t)got < n - 1 - len ? (size_t)got : n - 1 - len;
        memcpy(out + len, tmp, keep);
        len += keep;
        out[len] = '\0';
    }
    close(fds[0]);
    if (late) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (late)
        return RUN_DEADLINE;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 256 + WTERMSIG(status);
}

/* The first line of out, without trailing blanks, in place. */
static char *first_line(char *out)
{
    out[strcspn(out, "\n")] = '\0';
    size_t len = strlen(out);
    while (len && (out[len - 1] == ' ' || out[len - 1] == '\r' || out[len - 1] == '\t'))
        out[--len] = '\0';
    return out;
}

/* Why a command did not do its job, for messages: "exited with status 1: <its first line>". */
static void run_failure(int rc, double deadline, char *out, char *buf, size_t n)
{
    if (rc == RUN_FAILED)
        snprintf(buf, n, "could not be started: %s", strerror(errno));
    else if (rc == RUN_DEADLINE)
        snprintf(buf, n, "did not answer within %.0f s", deadline);
    else if (rc >= 256)
        snprintf(buf, n, "was killed by signal %d", rc - 256);
    else
        snprintf(buf, n, "exited with status %d%s%s", rc, out[0] ? ": " : "", first_line(out));
}

/* ------------------------------------------------------------------------------------------ */
/* The Slurm job of a job                                                                      */
/* ------------------------------------------------------------------------------------------ */

struct slurm_row {
    int present; /* 0: not submitted yet */
    char id[32], state[24];
    int scancelled;
    double submitted;
};

static int slurm_row_load(coord_jobs_t *j, const char *job, struct slurm_row *s, struct ud_err *e)
{
    memset(s, 0, sizeof *s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            j->db, "SELECT slurm_id, state, scancelled, submitted FROM slurm_jobs WHERE job = ?",
            -1, &st, NULL) != SQLITE_OK)
        return coord_db_err(j->db, e, "read slurm_jobs");
    sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        s->present = 1;
        snprintf(s->id, sizeof s->id, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(s->state, sizeof s->state, "%s", (const char *)sqlite3_column_text(st, 1));
        s->scancelled = sqlite3_column_int(st, 2);
        s->submitted = sqlite3_column_double(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return coord_db_err(j->db, e, "read slurm_jobs");
    return 0;
}

/* One change to the Slurm job's row (a new state, or NULL to keep it; scancelled 1 to mark
 * the scancel) and a "slurm" event saying msg, in one transaction; logged. Returns 0 or < 0. */
static int slurm_row_update(coord_jobs_t *j, const char *job, const struct slurm_row *s,
                            const char *state, int scancelled, double now, const char *msg)
{
    struct ud_err e = {0};
    int rc = coord_db_begin(j->db, &e);
    if (rc == 0) {
        rc = coord_db_run(j->db, &e,
                          "UPDATE slurm_jobs SET state = coalesce(?, state), updated = ?,"
                          " scancelled = max(scancelled, ?) WHERE job = ? AND slurm_id = ?",
                          "sdiss", state, now, (int64_t)scancelled, job, s->id);
        if (rc >= 0)
            rc = job_event(j, job, now, "slurm", msg, &e);
        rc = coord_db_end(j->db, rc, &e);
    }
    if (rc < 0)
        coord_log(COORD_LOG_ERROR, "%s: %s: not recorded: %s", job, msg, e.msg);
    else
        coord_log(COORD_LOG_INFO, "%s: %s", job, msg);
    return rc < 0 ? rc : 0;
}

/* Records the Slurm job's new state and a "slurm" event. */
static void slurm_state_set(coord_jobs_t *j, const char *job, struct slurm_row *s, const char *to,
                            double now)
{
    char msg[256];
    snprintf(msg, sizeof msg, "Slurm job %s: %s -> %s%s", s->id, s->state, to,
             strcmp(to, "GONE") == 0 ? " (squeue no longer knows it)" : "");
    if (slurm_row_update(j, job, s, to, 0, now, msg) == 0)
        snprintf(s->state, sizeof s->state, "%s", to);
}

static void warn_limited(struct job_mem *m, double now, const char *job, const char *what)
{
    if (now - m->slurm_warned < WARN_EVERY_S)
        return;
    m->slurm_warned = now;
    coord_log(COORD_LOG_WARN, "%s: %s (this warning: at most every %.0f s)", job, what,
              WARN_EVERY_S);
}

/* Asks squeue for the Slurm job's state (at most every POLL_EVERY_S) and records a change. */
static void slurm_poll(coord_jobs_t *j, const char *job, struct slurm_row *s, struct job_mem *m,
                       double now)
{
    if (slurm_state_ended(s->state) || now - m->slurm_polled < POLL_EVERY_S ||
        now < j->slurm_quiet_until)
        return;
    m->slurm_polled = now;
    char exe[4096], out[1024], why[1200];
    if (job_resolve_exe(j->cfg.squeue_path, exe, sizeof exe) != 0) {
        snprintf(why, sizeof why, "squeue '%s' not found or not executable (--squeue)",
                 j->cfg.squeue_path);
        warn_limited(m, now, job, why);
        return;
    }
    const char *argv[] = {exe, "--noheader", "--states=all", "--jobs", s->id, "--format=%T", NULL};
    int rc = run_cmd(argv, QUERY_DEADLINE_S, out, sizeof out);
    if (rc == RUN_DEADLINE)
        j->slurm_quiet_until = now + QUERY_DEADLINE_S + QUIET_AFTER_MISS_S;
    const char *state = NULL;
    if (rc == 0) {
        char *line = first_line(out);
        line[strcspn(line, " ")] = '\0';
        state = line[0] ? line : "GONE";
    } else if (rc > 0 && rc < 256 && strstr(out, "Invalid job id")) {
        state = "GONE";
    }
    if (!state || strspn(state, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != strlen(state) ||
        strlen(state) >= sizeof s->state) {
        char fail[1024];
        run_failure(rc, QUERY_DEADLINE_S, out, fail, sizeof fail);
        snprintf(why, sizeof why, "squeue for Slurm job %s %s%s", s->id, fail,
                 rc == RUN_DEADLINE ? ": no Slurm queries for a while" : "");
        warn_limited(m, now, job, why);
        return;
    }
    if (strcmp(state, s->state) != 0)
        slurm_state_set(j, job, s, state, now);
}

/* scancel of the Slurm job (again after SCANCEL_RETRY_S while it has not ended); the first
 * one that works is recorded with why. */
static void slurm_scancel(coord_jobs_t *j, const char *job, struct slurm_row *s, struct job_mem *m,
                          double now, const char *why)
{
    if (now - m->scancel_at < SCANCEL_RETRY_S || now < j->slurm_quiet_until)
        return;
    m->scancel_at = now;
    char exe[4096], out[1024], fail[1200];
    if (job_resolve_exe(j->cfg.scancel_path, exe, sizeof exe) != 0) {
        coord_log(COORD_LOG_ERROR, "%s: cannot scancel Slurm job %s: scancel '%s' not found", job,
                  s->id, j->cfg.scancel_path);
        return;
    }
    const char *argv[] = {exe, s->id, NULL};
    int rc = run_cmd(argv, QUERY_DEADLINE_S, out, sizeof out);
    if (rc == RUN_DEADLINE)
        j->slurm_quiet_until = now + QUERY_DEADLINE_S + QUIET_AFTER_MISS_S;
    if (rc != 0) {
        run_failure(rc, QUERY_DEADLINE_S, out, fail, sizeof fail);
        coord_log(COORD_LOG_ERROR, "%s: scancel %s %s", job, s->id, fail);
        return;
    }
    m->slurm_polled = 0; /* see the end at the next tick */
    if (s->scancelled)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "scancel of Slurm job %s: %s", s->id, why);
    slurm_row_update(j, job, s, NULL, 1, now, msg);
    s->scancelled = 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Submitting                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* s in single quotes for sh ('\'' for each quote). */
static void sh_quote(struct ud_buf *b, const char *s)
{
    ud_buf_puts(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            ud_buf_puts(b, "'\\''");
        else
            ud_buf_put(b, s, 1);
    }
    ud_buf_puts(b, "'");
}

/* The batch script of job r (spec: its parsed spec). */
static void slurm_script(coord_jobs_t *j, const struct job_row *r, const struct coord_spec *spec,
                         const char *mpirun, int resume, struct ud_buf *b)
{
    ud_buf_printf(
        b,
        "#!/bin/sh\n"
        "# Written by updraft-coordinator for %s and submitted with sbatch. mpirun takes\n"
        "# the hosts and the slots from the allocation and starts one worker per task.\n"
        "#SBATCH --job-name=updraft-%s\n"
        "#SBATCH --ntasks=%d\n",
        r->id, r->id, spec->np);
    if (spec->partition[0])
        ud_buf_printf(b, "#SBATCH --partition=%s\n", spec->partition);
    if (spec->time[0])
        ud_buf_printf(b, "#SBATCH --time=%s\n", spec->time);
    if (spec->account[0])
        ud_buf_printf(b, "#SBATCH --account=%s\n", spec->account);
    ud_buf_puts(b, "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
                   " OMPI_MCA_btl=self,vader,tcp\n"
                   "echo \"=== Slurm job $SLURM_JOB_ID: $SLURM_NTASKS tasks on"
                   " $SLURM_JOB_NODELIST\"\n"
                   "exec ");
    sh_quote(b, mpirun);
    ud_buf_printf(b, " -np %d ", spec->np);
    sh_quote(b, j->cfg.worker_path);
    ud_buf_puts(b, " --coordinator ");
    sh_quote(b, j->cfg.advertise);
    ud_buf_printf(b, " --job %s", r->id);
    if (j->cfg.curve_server_pub && j->cfg.curve_worker_secret) {
        ud_buf_puts(b, " --curve-server-key ");
        sh_quote(b, j->cfg.curve_server_pub);
        ud_buf_puts(b, " --curve-secret ");
        sh_quote(b, j->cfg.curve_worker_secret);
    }
    ud_buf_puts(b, resume ? " --resume\n" : "\n");
}

/* Records a submitted Slurm job: the slurm_jobs row (replacing an earlier launch's), the
 * restart count and the events. */
static void slurm_record(coord_jobs_t *j, struct job_row *r, struct job_mem *m, const char *sid,
                         const char *script, const char *logpath, int relaunch, double now)
{
    char msg[1024], ev[128];
    snprintf(msg, sizeof msg, "%s to Slurm: job %s (%s); output in %s",
             relaunch ? "resubmitted" : "submitted", sid, script, logpath);
    snprintf(ev, sizeof ev, "Slurm job %s submitted: PENDING", sid);
    struct ud_err e = {0};
    int d = coord_db_begin(j->db, &e);
    if (d == 0) {
        d = coord_db_run(j->db, &e,
                         "INSERT OR REPLACE INTO slurm_jobs (job, slurm_id, state, script,"
                         " submitted, updated, scancelled) VALUES (?, ?, 'PENDING', ?, ?, ?, 0)",
                         "sssdd", r->id, sid, script, now, now);
        if (d >= 0)
            d = coord_db_run(j->db, &e,
                             "UPDATE jobs SET restarts = restarts + ?, updated = ?,"
                             " message = CASE WHEN state = 'PENDING' THEN ? ELSE message END"
                             " WHERE id = ?",
                             "idss", (int64_t)(relaunch ? 1 : 0), now, msg, r->id);
        if (d >= 0)
            d = job_event(j, r->id, now, "launch", msg, &e);
        if (d >= 0)
            d = job_event(j, r->id, now, "slurm", ev, &e);
        coord_db_end(j->db, d, &e);
    }
    if (e.code)
        coord_log(COORD_LOG_ERROR, "%s: Slurm job %s submitted but not recorded: %s", r->id, sid,
                  e.msg);
    coord_log(COORD_LOG_INFO, "%s: %s", r->id, msg);
    if (relaunch)
        r->restarts++;
    m->slurm_polled = now;
    m->scancel_at = 0;
}

/* Writes the batch script and runs sbatch. Returns 0, or an error after which the job cannot
 * be submitted (e says why: the caller fails the job). */
static int slurm_submit(coord_jobs_t *j, struct job_row *r, struct job_mem *m, int relaunch,
                        double now, struct ud_err *e)
{
    char sbatch[4096], mpirun[4096], dir[4096], script[4200], logpath[4096];
    if (job_resolve_exe(j->cfg.sbatch_path, sbatch, sizeof sbatch) != 0)
        return ud_err_set(e, UD_ENOTFOUND,
                          "cannot submit to Slurm: sbatch '%s' not found or not executable "
                          "(--sbatch)",
                          j->cfg.sbatch_path);
    if (job_resolve_exe(j->cfg.mpirun_path, mpirun, sizeof mpirun) != 0)
        return ud_err_set(e, UD_ENOTFOUND,
                          "cannot submit to Slurm: mpirun '%s' not found or not executable",
                          j->cfg.mpirun_path);
    if (access(j->cfg.worker_path, X_OK) != 0)
        return ud_err_set(e, UD_ENOTFOUND, "cannot submit to Slurm: worker '%s' is not executable",
                          j->cfg.worker_path);
    struct coord_spec spec;
    int rc = coord_spec_parse(r->spec, strlen(r->spec), &spec, e);
    if (rc)
        return ud_err_prefix(e, "cannot submit to Slurm: stored spec");
    if ((rc = job_dir_make(j, r->id, e)) != 0) {
        coord_spec_deinit(&spec);
        return ud_err_prefix(e, "cannot submit to Slurm");
    }
    snprintf(dir, sizeof dir, "%s/jobs/%s", j->cfg.state_dir, r->id);
    snprintf(script, sizeof script, "%s/slurm.sh", dir);
    job_log_path(j, r->id, logpath, sizeof logpath);
    struct ud_buf b = {0};
    slurm_script(j, r, &spec, mpirun, relaunch && r->resume_from != NULL, &b);
    coord_spec_deinit(&spec);
    if (b.oom) {
        ud_buf_free(&b);
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    }
    rc = ud_file_write_atomic(script, b.p, b.len, e);
    ud_buf_free(&b);
    if (rc)
        return ud_err_prefix(e, "cannot submit to Slurm");

    char chdir_opt[4200], output_opt[4200], out[2048], fail[2100];
    snprintf(chdir_opt, sizeof chdir_opt, "--chdir=%s", dir);
    snprintf(output_opt, sizeof output_opt, "--output=%s", logpath);
    const char *argv[] = {sbatch, "--parsable", chdir_opt, output_opt, "--open-mode=append",
                          script, NULL};
    rc = run_cmd(argv, SBATCH_DEADLINE_S, out, sizeof out);
    size_t digits = strspn(out, "0123456789");
    if (rc != 0 || digits == 0 || digits >= 20 || (out[digits] && !strchr(";\n", out[digits]))) {
        if (rc == 0)
            snprintf(fail, sizeof fail, "answered '%.200s', not a job id", first_line(out));
        else
            run_failure(rc, SBATCH_DEADLINE_S, out, fail, sizeof fail);
        return ud_err_set(e, UD_EIO, "cannot submit to Slurm: sbatch %s", fail);
    }
    out[digits] = '\0';
    slurm_record(j, r, m, out, script, logpath, relaunch, now);
    return 0;
}

/* "Slurm job 12 ended TIMEOUT" and worker.log's last line (slurmstepd says why there). */
static void ended_msg(coord_jobs_t *j, const struct job_row *r, const struct slurm_row *s,
                      const char *tail, char *buf, size_t n)
{
    char logpath[4096], last[512];
    job_log_path(j, r->id, logpath, sizeof logpath);
    job_log_last_line(logpath, last, sizeof last);
    snprintf(buf, n, "Slurm job %s ended %s%s%s%s", s->id, s->state, tail,
             last[0] ? "; worker.log ends: " : "", last);
}

/* ------------------------------------------------------------------------------------------ */
/* The monitor's step                                                                          */
/* ------------------------------------------------------------------------------------------ */

static void tick_running(coord_jobs_t *j, struct job_row *r, struct job_mem *m, struct slurm_row *s,
                         double now, struct ud_err *e)
{
    char msg[1400];
    if (s->present && slurm_state_ended(s->state)) {
        if (r->cancel_requested) {
            ended_msg(j, r, s, " after the cancel request", msg, sizeof msg);
            job_transition(j, r, "CANCELLED", now, msg, 0, e);
        } else if (strcmp(s->state, "COMPLETED") == 0) {
            ended_msg(j, r, s, " but no model was uploaded", msg, sizeof msg);
            job_transition(j, r, "FAILED", now, msg, 0, e);
        } else {
            ended_msg(j, r, s, "", msg, sizeof msg);
            job_to_restarting(j, r, now, msg, e);
        }
        return;
    }
    if (r->cancel_requested && s->present) {
        if (!m->cancel_seen)
            m->cancel_seen = now;
        if (now - m->cancel_seen >= j->cfg.cancel_grace) {
            snprintf(msg, sizeof msg,
                     "workers did not stop within %.0f s of the cancel: scancel of Slurm job %s",
                     j->cfg.cancel_grace, s->id);
            if (job_transition(j, r, "CANCELLED", now, msg, 0, e) == 1)
                slurm_scancel(j, r->id, s, m, now, "cancel grace over");
            return;
        }
    }
    job_check_silence(j, r, m, now);
}

static void tick_restarting(coord_jobs_t *j, struct job_row *r, struct job_mem *m,
                            struct slurm_row *s, double now, struct ud_err *e)
{
    char msg[1600], ended[64] = "", was[64];
    int live = s->present && !slurm_state_ended(s->state);
    if (s->present && !live)
        snprintf(ended, sizeof ended, "; Slurm job %s ended %s", s->id, s->state);
    double since = r->restarting_since > j->cfg.started ? r->restarting_since : j->cfg.started;
    if (now - since >= j->cfg.restart_timeout) {
        snprintf(msg, sizeof msg, "no workers registered within %.0f s of going RESTARTING (%s)%s",
                 j->cfg.restart_timeout, r->message ? r->message : "", ended);
        if (job_transition(j, r, "FAILED", now, msg, 0, e) == 1 && live)
            slurm_scancel(j, r->id, s, m, now, "the job failed");
    } else if (live && s->submitted >= r->restarting_since) {
        /* submitted again: its workers have until the restart timeout to register */
    } else if (live) {
        slurm_scancel(j, r->id, s, m, now, "the job is RESTARTING: its old allocation ends first");
    } else {
        int limit = job_max_restarts(r);
        if (r->restarts >= limit) {
            /* The Slurm state is in the message already when it was the reason. */
            snprintf(was, sizeof was, "Slurm job %s ended", s->id);
            int named = r->message && s->present && strstr(r->message, was);
            snprintf(msg, sizeof msg, "gave up after %d relaunch%s (launch.max_restarts %d): %s%s",
                     r->restarts, r->restarts == 1 ? "" : "es", limit, r->message ? r->message : "",
                     named ? "" : ended);
            job_transition(j, r, "FAILED", now, msg, 0, e);
        } else if (slurm_submit(j, r, m, 1, now, e) != 0) {
            job_transition(j, r, "FAILED", now, e->msg, 0, e);
        }
    }
}

void slurm_tick_job(coord_jobs_t *j, struct job_row *r, struct job_mem *m, double now)
{
    struct ud_err e = {0};
    struct slurm_row s;
    if (slurm_row_load(j, r->id, &s, &e) != 0) {
        coord_log(COORD_LOG_ERROR, "%s: %s", r->id, e.msg);
        return;
    }
    if (s.present)
        slurm_poll(j, r->id, &s, m, now);
    int live = s.present && !slurm_state_ended(s.state);
    char msg[1400];
    if (strcmp(r->state, "PENDING") == 0) {
        if (!s.present) {
            if (!r->cancel_requested && slurm_submit(j, r, m, 0, now, &e) != 0)
                job_transition(j, r, "FAILED", now, e.msg, 0, &e);
        } else if (!live) {
            ended_msg(j, r, &s, " before rank 0 registered", msg, sizeof msg);
            job_transition(j, r, "FAILED", now, msg, 0, &e);
        }
    } else if (strcmp(r->state, "RUNNING") == 0) {
        tick_running(j, r, m, &s, now, &e);
    } else if (strcmp(r->state, "RESTARTING") == 0) {
        tick_restarting(j, r, m, &s, now, &e);
    } else if (live) {
        /* Finished: a Slurm job that succeeded ends by itself (after the cancel grace it is
         * cancelled); one whose job failed or was cancelled is cancelled now. */
        if (strcmp(r->state, "SUCCEEDED") != 0) {
            snprintf(msg, sizeof msg, "the job is %s", r->state);
            slurm_scancel(j, r->id, &s, m, now, msg);
        } else {
            if (!m->leftover_seen)
                m->leftover_seen = now;
            if (now - m->leftover_seen >= j->cfg.cancel_grace)
                slurm_scancel(j, r->id, &s, m, now, "the job succeeded but its workers still run");
        }
    }
    if (e.code)
        coord_log(COORD_LOG_ERROR, "%s: %s", r->id, e.msg);
}

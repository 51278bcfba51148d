/*  coord_monitor.c — the job monitor (coord_jobs_tick) and the local launcher.
 *
 *  A launched job runs `mpirun --oversubscribe -np N WORKER --coordinator ADVERTISE --job ID
 *  [--resume]` in its own session (setsid), with stdout and stderr appended to
 *  STATE/jobs/ID/worker.log. The coordinator never kills it for leaving: a job outlives a
 *  coordinator crash, and the next coordinator finds its pid in the database and watches it
 *  with kill(pid, 0) (it is no longer our child, so there is no exit status).
 *
 *  Jobs whose launch is COORD_SCHED_SLURM are handed to coord_slurm.c (slurm_tick_job).
 *
 *  The coordinator runs REST threads, so the child only calls async-signal-safe functions
 *  between fork and exec: everything (argv, envp, the resolved mpirun path, the log file) is
 *  prepared before the fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coord_db.h"
#include "coord_jobs_impl.h"
#include "coord_log.h"

extern char **environ;

#define KILL_ESCALATE_S 5.0 /* SIGTERM, then SIGKILL this long after */

/* ------------------------------------------------------------------------------------------ */
/* Launching                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* name with a '/' as is; else the first executable PATH entry. */
int job_resolve_exe(const char *name, char *out, size_t n)
{
    if (strchr(name, '/')) {
        snprintf(out, n, "%s", name);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(out, n, "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(out, X_OK) == 0)
            return 0;
        path += len + (end ? 1 : 0);
    }
    return -1;
}

/* The line of the job's worker.log that best says why it ended, at most n-1 bytes: the last
 * line a worker wrote ("updraft-worker: ..."), else the last line that is not blank or one of
 * mpirun's rules of dashes. Only the last 8 KiB are read. */
void job_log_last_line(const char *path, char *buf, size_t n)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char tail[8192];
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)sizeof tail - 1 ? size - (off_t)sizeof tail + 1 : 0;
    ssize_t got = pread(fd, tail, sizeof tail - 1, from);
    close(fd);
    if (got <= 0)
        return;
    tail[got] = '\0';
    const char *worker = NULL, *other = NULL;
    for (char *line = strtok(tail, "\n"); line; line = strtok(NULL, "\n")) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (strspn(line, "- \t") == len)
            continue; /* blank, or a rule */
        if (strstr(line, "updraft-worker:"))
            worker = line;
        other = line;
    }
    snprintf(buf, n, "%s", worker ? worker : other ? other : "");
}

void job_log_path(coord_jobs_t *j, const char *id, char *buf, size_t n)
{
    snprintf(buf, n, "%s/jobs/%s/worker.log", j->cfg.state_dir, id);
}

/* The ranks job r runs: its np, or the spec's launch.np. Returns > 0, or an error. */
static int launch_ranks(const struct job_row *r, struct ud_err *e)
{
    if (r->np > 0)
        return r->np;
    struct coord_spec spec;
    int rc = coord_spec_parse(r->spec, strlen(r->spec), &spec, e);
    if (rc) {
        ud_err_prefix(e, "stored spec");
        return rc;
    }
    int n = spec.np;
    coord_spec_deinit(&spec);
    if (n <= 0)
        return ud_err_set(e, UD_EINVAL, "cannot launch: the spec has no launch.np");
    return n;
}

/* What a launch runs: mpirun's path, the rank count and the command line (argv borrows them,
 * the job's id and the configuration). */
struct launch_cmd {
    char mpirun[4096], np[16], logpath[4096];
    const char *argv[16];
    int curve, resume;
};

static void launch_argv(coord_jobs_t *j, const struct job_row *r, struct launch_cmd *c)
{
    const char *head[] = {c->mpirun,       "--oversubscribe", "-np",   c->np, j->cfg.worker_path,
                          "--coordinator", j->cfg.advertise,  "--job", r->id};
    int argc = 0;
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
        c->argv[argc++] = head[i];
    if (c->curve) {
        c->argv[argc++] = "--curve-server-key";
        c->argv[argc++] = j->cfg.curve_server_pub;
        c->argv[argc++] = "--curve-secret";
        c->argv[argc++] = j->cfg.curve_worker_secret;
    }
    if (c->resume)
        c->argv[argc++] = "--resume";
    c->argv[argc] = NULL;
}

/* The child's environment: ours, with mpirun allowed as root and shared memory / TCP only.
 * The array is the caller's to free (its strings are borrowed); NULL when out of memory. */
static const char **launch_envp(void)
{
    static const char *const SET[] = {"OMPI_ALLOW_RUN_AS_ROOT=1",
                                      "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                      "OMPI_MCA_btl=self,vader,tcp"};
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    const char **envp = calloc(nenv + 4, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        int overridden = 0;
        for (size_t s = 0; s < 3; s++) {
            size_t eq = (size_t)(strchr(SET[s], '=') - SET[s]);
            if (strncmp(environ[i], SET[s], eq + 1) == 0)
                overridden = 1;
        }
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (size_t s = 0; s < 3; s++)
        envp[k++] = SET[s];
    envp[k] = NULL;
    return envp;
}

/* The "=== updraft-coordinator TIME: launch ..." line that opens each run in worker.log. */
static void launch_log_head(coord_jobs_t *j, const struct job_row *r, const struct launch_cmd *c,
                            int relaunch, double now, int logfd)
{
    char head[8192];
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int hn =
        snprintf(head, sizeof head,
                 "=== updraft-coordinator %s: %s %s --oversubscribe -np %s %s --coordinator %s "
                 "--job %s%s%s%s%s%s\n",
                 stamp, relaunch ? "relaunch" : "launch", c->mpirun, c->np, j->cfg.worker_path,
                 j->cfg.advertise, r->id, c->curve ? " --curve-server-key " : "",
                 c->curve ? j->cfg.curve_server_pub : "", c->curve ? " --curve-secret " : "",
                 c->curve ? j->cfg.curve_worker_secret : "", c->resume ? " --resume" : "");
    if (hn > 0 && write(logfd, head, (size_t)hn < sizeof head ? (size_t)hn : sizeof head - 1) < 0)
        coord_log(COORD_LOG_WARN, "%s: cannot write %s: %s", r->id, c->logpath, strerror(errno));
}

/* fork + exec of mpirun in a session of its own, stdin from nullfd, stdout and stderr to
 * logfd. Returns the child's pid, or -1 (errno: fork's). */
static pid_t launch_spawn(const struct launch_cmd *c, const char **envp, int nullfd, int logfd)
{
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The child: async-signal-safe calls only. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    dup2(nullfd, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
#endif
        for (long fd = 3; fd < maxfd; fd++)
            close((int)fd);
    execve(c->mpirun, (char *const *)c->argv, (char *const *)envp);
    static const char msg[] = "updraft-coordinator: exec of mpirun failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
}

/* Records a started mpirun: its pid, the restart count and a launch event (a failure to
 * record is logged: the job runs anyway, and the monitor finds it by its registration). */
static void launch_record(coord_jobs_t *j, struct job_row *r, const struct launch_cmd *c, pid_t pid,
                          int relaunch, double now)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s mpirun (pid %lld, np %s)%s; output in %s",
             relaunch ? "relaunched" : "launched", (long long)pid, c->np,
             c->resume ? " with --resume" : "", c->logpath);
    struct ud_err de = {0};
    if (coord_db_begin(j->db, &de) == 0) {
        int d = coord_db_run(j->db, &de,
                             "UPDATE jobs SET pid = ?, restarts = restarts + ?, updated = ?,"
                             " message = CASE WHEN state = 'PENDING' THEN ? ELSE message END"
                             " WHERE id = ?",
                             "iidss", (int64_t)pid, (int64_t)(relaunch ? 1 : 0), now, msg, r->id);
        if (d >= 0)
            d = job_event(j, r->id, now, "launch", msg, &de);
        coord_db_end(j->db, d, &de);
    }
    if (de.code)
        coord_log(COORD_LOG_ERROR, "%s: launched pid %lld but could not record it: %s", r->id,
                  (long long)pid, de.msg);
    coord_log(COORD_LOG_INFO, "%s: %s", r->id, msg);
    r->pid = pid;
    if (relaunch)
        r->restarts++;
}

/* Starts mpirun for job r. Returns 0, or an error (e says why) after which the job cannot be
 * launched at all (the caller fails it). */
static int launch(coord_jobs_t *j, struct job_row *r, int relaunch, double now, struct ud_err *e)
{
    struct job_mem *mem = job_mem_get(j, r->id);
    if (!mem)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    struct launch_cmd c = {0};
    if (job_resolve_exe(j->cfg.mpirun_path, c.mpirun, sizeof c.mpirun) != 0)
        return ud_err_set(e, UD_ENOTFOUND, "cannot launch: mpirun '%s' not found or not executable",
                          j->cfg.mpirun_path);
    if (access(j->cfg.worker_path, X_OK) != 0)
        return ud_err_set(e, UD_ENOTFOUND, "cannot launch: worker '%s' is not executable: %s",
                          j->cfg.worker_path, strerror(errno));
    int nranks = launch_ranks(r, e);
    if (nranks < 0)
        return nranks;
    snprintf(c.np, sizeof c.np, "%d", nranks);
    if (job_dir_make(j, r->id, e) != 0)
        return ud_err_prefix(e, "cannot launch");
    job_log_path(j, r->id, c.logpath, sizeof c.logpath);
    c.resume = relaunch && r->resume_from != NULL;
    c.curve = j->cfg.curve_server_pub && j->cfg.curve_worker_secret;
    launch_argv(j, r, &c);
    const char **envp = launch_envp();
    if (!envp)
        return ud_err_set(e, UD_ENOMEM, "out of memory");

    int rc = 0;
    int logfd = open(c.logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0) {
        rc = ud_err_set(e, UD_EIO, "cannot launch: %s: %s", c.logpath, strerror(errno));
        goto out_close;
    }
    launch_log_head(j, r, &c, relaunch, now, logfd);
    pid_t pid = launch_spawn(&c, envp, nullfd, logfd);
    if (pid < 0) {
        rc = ud_err_set(e, UD_EIO, "cannot launch: fork: %s", strerror(errno));
        goto out_close;
    }
    mem->child_pid = pid;
    mem->killed_pid = 0;
    mem->sigkilled = 0;
    mem->leftover_seen = 0;
    launch_record(j, r, &c, pid, relaunch, now);
out_close:
    if (logfd >= 0)
        close(logfd);
    if (nullfd >= 0)
        close(nullfd);
    free(envp);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* mpirun's end                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* mpirun pid of job id is gone; status is waitpid's, or -1 when unknown (not our child). */
static void mpirun_gone(coord_jobs_t *j, const char *id, int64_t pid, int status, double now)
{
    struct ud_err e = {0};
    struct job_row r;
    if (job_load(j, id, &r, &e) != 0) {
        coord_log(COORD_LOG_ERROR, "mpirun pid %lld exited: %s", (long long)pid, e.msg);
        return;
    }
    char how[128], last[512], logpath[4096], msg[1024];
    int clean = 0;
    if (status < 0)
        snprintf(how, sizeof how,
                 "is gone (started by an earlier coordinator: exit status unknown)");
    else if (WIFEXITED(status)) {
        clean = WEXITSTATUS(status) == 0;
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(how, sizeof how, "ended (status %#x)", status);
    job_log_path(j, id, logpath, sizeof logpath);
    job_log_last_line(logpath, last, sizeof last);

    coord_db_run(j->db, &e, "UPDATE jobs SET pid = NULL WHERE id = ? AND pid = ?", "si", id, pid);
    snprintf(msg, sizeof msg, "mpirun (pid %lld) %s%s%s", (long long)pid, how,
             last[0] ? "; worker.log ends: " : "", last);
    job_event(j, id, now, "exit", msg, &e);
    coord_log(COORD_LOG_INFO, "%s: %s", id, msg);

    if (strcmp(r.state, "PENDING") == 0) {
        snprintf(msg, sizeof msg, "mpirun (pid %lld) %s before rank 0 registered%s%s",
                 (long long)pid, how, last[0] ? ": " : "", last);
        job_transition(j, &r, "FAILED", now, msg, 0, &e);
    } else if (strcmp(r.state, "RUNNING") == 0) {
        if (r.cancel_requested) {
            snprintf(msg, sizeof msg, "mpirun %s after the cancel request", how);
            job_transition(j, &r, "CANCELLED", now, msg, 0, &e);
        } else if (clean) {
            snprintf(msg, sizeof msg, "mpirun %s but no model was uploaded%s%s", how,
                     last[0] ? ": " : "", last);
            job_transition(j, &r, "FAILED", now, msg, 0, &e);
        } else {
            r.pid = 0; /* nothing left to stop */
            snprintf(msg, sizeof msg, "mpirun (pid %lld) %s%s%s", (long long)pid, how,
                     last[0] ? ": " : "", last);
            job_to_restarting(j, &r, now, msg, &e);
        }
    }
    if (e.code)
        coord_log(COORD_LOG_ERROR, "%s: %s", id, e.msg);
    job_row_deinit(&r);
}

static void reap_children(coord_jobs_t *j, double now)
{
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (size_t i = 0; i < j->nmem; i++) {
            if (j->mem[i].child_pid == pid) {
                char id[32];
                snprintf(id, sizeof id, "%s", j->mem[i].id);
                j->mem[i].child_pid = 0;
                mpirun_gone(j, id, pid, status, now); /* may grow j->mem */
                break;
            }
        }
    }
}

/* 1 when pid (a job's mpirun) still runs. Our children are known alive until reaped. */
static int mpirun_alive(coord_jobs_t *j, struct job_mem *m, int64_t pid)
{
    if (pid <= 1)
        return 0;
    if (m && m->child_pid == pid)
        return 1;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* After SIGTERM, SIGKILL once KILL_ESCALATE_S has passed. */
static void escalate(struct job_mem *m, int64_t pid, double now)
{
    if (m->killed_pid == pid && !m->sigkilled && now - m->killed_at >= KILL_ESCALATE_S) {
        if (kill(-(pid_t)pid, SIGKILL) != 0 && errno == ESRCH)
            kill((pid_t)pid, SIGKILL);
        m->sigkilled = 1;
        coord_log(COORD_LOG_INFO, "%s: mpirun (pid %lld) ignored SIGTERM for %.0f s: SIGKILL",
                  m->id, (long long)pid, KILL_ESCALATE_S);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The tick                                                                                    */
/* ------------------------------------------------------------------------------------------ */

void job_check_silence(coord_jobs_t *j, struct job_row *r, struct job_mem *m, double now)
{
    double base = j->cfg.started;
    if (m && m->registered_at > base)
        base = m->registered_at;
    int np = r->np > 0 ? r->np : 1;
    double *last = calloc((size_t)np, sizeof *last);
    if (!last)
        return;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db, "SELECT rank, last_heartbeat FROM ranks WHERE job = ?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, r->id, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(st) == SQLITE_ROW) {
            int rank = sqlite3_column_int(st, 0);
            if (rank >= 0 && rank < np)
                last[rank] = sqlite3_column_double(st, 1);
        }
    }
    sqlite3_finalize(st);
    char ranks[256] = "";
    int nsilent = 0;
    double worst = 0;
    for (int i = 0; i < np; i++) {
        double since = now - (last[i] > base ? last[i] : base);
        if (since < j->cfg.heartbeat_timeout)
            continue;
        size_t len = strlen(ranks);
        if (len < sizeof ranks - 16)
            snprintf(ranks + len, sizeof ranks - len, "%s%d", nsilent ? ", " : "", i);
        nsilent++;
        worst = since > worst ? since : worst;
    }
    free(last);
    if (!nsilent)
        return;
    char why[512];
    snprintf(why, sizeof why, "rank%s %s silent for %.1f s (heartbeat timeout %.0f s)",
             nsilent > 1 ? "s" : "", ranks, worst, j->cfg.heartbeat_timeout);
    struct ud_err e = {0};
    if (job_to_restarting(j, r, now, why, &e) < 0)
        coord_log(COORD_LOG_ERROR, "%s: %s", r->id, e.msg);
}

int job_max_restarts(const struct job_row *r)
{
    struct coord_spec spec;
    if (coord_spec_parse(r->spec, strlen(r->spec), &spec, NULL) != 0)
        return 0;
    int n = spec.max_restarts;
    coord_spec_deinit(&spec);
    return n;
}

static void tick_restarting(coord_jobs_t *j, struct job_row *r, struct job_mem *m, double now)
{
    struct ud_err e = {0};
    char msg[1200];
    int alive = mpirun_alive(j, m, r->pid);
    /* Like silence, measured from the coordinator's start at the latest: workers relaunched
     * while it was down get the whole restart timeout to register. */
    double since = r->restarting_since > j->cfg.started ? r->restarting_since : j->cfg.started;
    if (now - since >= j->cfg.restart_timeout) {
        snprintf(msg, sizeof msg, "no workers registered within %.0f s of going RESTARTING (%s)",
                 j->cfg.restart_timeout, r->message ? r->message : "");
        if (job_transition(j, r, "FAILED", now, msg, 0, &e) == 1 && r->launch && alive)
            job_stop_mpirun(j, m, r->pid, now, "the job failed");
    } else if (r->launch) {
        if (alive) {
            escalate(m, r->pid, now); /* the old mpirun on its way out, or the new one waiting */
        } else {
            int limit = job_max_restarts(r);
            if (r->restarts >= limit) {
                snprintf(msg, sizeof msg,
                         "gave up after %d relaunch%s (launch.max_restarts %d): %s", r->restarts,
                         r->restarts == 1 ? "" : "es", limit, r->message ? r->message : "");
                job_transition(j, r, "FAILED", now, msg, 0, &e);
            } else if (launch(j, r, 1, now, &e) != 0) {
                job_transition(j, r, "FAILED", now, e.msg, 0, &e);
            }
        }
    }
    if (e.code)
        coord_log(COORD_LOG_ERROR, "%s: %s", r->id, e.msg);
}

static void tick_job(coord_jobs_t *j, struct job_row *r, double now)
{
    struct job_mem *m = job_mem_get(j, r->id);
    if (!m)
        return;
    if (r->launch == COORD_SCHED_SLURM) {
        slurm_tick_job(j, r, m, now);
        return;
    }
    struct ud_err e = {0};
    /* A previous coordinator's mpirun: no SIGCHLD for us, so look. */
    if (r->pid > 1 && m->child_pid != r->pid && !mpirun_alive(j, m, r->pid)) {
        mpirun_gone(j, r->id, r->pid, -1, now);
        return; /* the rest next tick, on the new state */
    }
    if (strcmp(r->state, "PENDING") == 0) {
        if (r->launch && r->pid <= 0 && !r->cancel_requested && launch(j, r, 0, now, &e) != 0)
            job_transition(j, r, "FAILED", now, e.msg, 0, &e);
    } else if (strcmp(r->state, "RUNNING") == 0) {
        if (r->cancel_requested && r->launch && mpirun_alive(j, m, r->pid)) {
            if (!m->cancel_seen)
                m->cancel_seen = now;
            if (now - m->cancel_seen >= j->cfg.cancel_grace) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "workers did not stop within %.0f s of the cancel: SIGTERM to mpirun "
                         "(pid %lld)",
                         j->cfg.cancel_grace, (long long)r->pid);
                if (job_transition(j, r, "CANCELLED", now, msg, 0, &e) == 1)
                    job_stop_mpirun(j, m, r->pid, now, "cancel grace over");
                goto out;
            }
        }
        job_check_silence(j, r, m, now);
    } else if (strcmp(r->state, "RESTARTING") == 0) {
        tick_restarting(j, r, m, now);
    } else if (r->pid > 1 && mpirun_alive(j, m, r->pid)) {
        /* A finished job's mpirun: it should end by itself; after the grace, it is stopped. */
        if (m->killed_pid == r->pid) {
            escalate(m, r->pid, now);
        } else {
            if (!m->leftover_seen)
                m->leftover_seen = now;
            if (now - m->leftover_seen >= j->cfg.cancel_grace)
                job_stop_mpirun(j, m, r->pid, now, "the job is finished but mpirun still runs");
        }
    }
out:
    if (e.code)
        coord_log(COORD_LOG_ERROR, "%s: %s", r->id, e.msg);
}

void coord_jobs_tick(coord_jobs_t *j, double now)
{
    reap_children(j, now);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            j->db,
            "SELECT " JOB_ROW_COLUMNS " FROM jobs WHERE state IN ('PENDING',"
            " 'RUNNING', 'RESTARTING') OR pid IS NOT NULL OR id IN (" SLURM_LIVE_JOBS_SQL
            ") ORDER BY seq",
            -1, &st, NULL) != SQLITE_OK) {
        coord_log(COORD_LOG_ERROR, "monitor: %s", sqlite3_errmsg(j->db));
        return;
    }
    /* Read them all first, then act (acting writes). */
    struct job_row *rows = NULL;
    size_t n = 0, cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct job_row *g = realloc(rows, nc * sizeof *g);
            if (!g)
                break;
            rows = g;
            cap = nc;
        }
        if (job_row_read(st, &rows[n]) == 0)
            n++;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        tick_job(j, &rows[i], now);
        job_row_deinit(&rows[i]);
    }
    free(rows);
}

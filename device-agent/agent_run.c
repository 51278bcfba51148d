/*  agent_run.c — `updraft-agent run`: the device daemon of federated rounds.
 *
 *  Loop: ask the coordinator for a task (GET /v1/devices/<id>/task; 204 means nothing now: ask
 *  again after --poll seconds ±20 %); for a round not yet done, make sure the round's model is
 *  here and verified (resumable download, SHA-256), run the same update as `updraft-agent
 *  update` with the task's epochs, batch and learning rate, take the delta against the
 *  downloaded model, encode it as an update message, store it, and POST it with its
 *  idempotency key, retrying what may pass (5xx, 429, no connection) with exponential backoff
 *  and full jitter until the task's deadline. Every step that must survive a kill -9 is a file
 *  in --state written atomically before the step that depends on it (agent_state.h), so a
 *  restart re-sends a stored upload with the same key, resumes a partial download, or reruns
 *  the update. docs/agent.md describes the contract with the coordinator.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "agent.h"
#include "agent_http.h"
#include "agent_log.h"
#include "agent_state.h"
#include "agent_task.h"
#include "agent_update.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_file.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_net.h"
#include "updraft/ud_udm.h"
#include "updraft/ud_update_msg.h"

#define RESP_MAX_BYTES    (64 * 1024) /* an upload's JSON answer */
#define BACKOFF_BASE_S    0.5
#define BACKOFF_CAP_S     30.0
#define MISMATCH_ATTEMPTS 3 /* downloads whose SHA-256 does not match, per round attempt */
#define PATH_CAP          4200

struct run_opts {
    const char *url, *token, *token_file, *data, *state;
    int allow_unsigned;
    struct agent_http_tls tls; /* --cacert, --pin */
    double poll;
    int threads;
    int64_t max_rounds; /* 0: no limit */
    struct agent_common_opts common;
};

struct daemon {
    struct run_opts o;
    const struct agent_log *log;
    char device[128];
    char token[1024];
    agent_http_t *http;
    struct agent_keys keys;
    struct agent_state st;
    int64_t contributed;
    int64_t skipped_round;              /* the last already-done round we said so about */
    char last_fetch_err[UD_ERRMSG_MAX]; /* the last failure to ask for a task, said once */
};

/* Outcome of a round attempt. */
enum { ROUND_FINISHED = 0, ROUND_LATER = 1 };

/* ------------------------------------------------------------------------------- helpers */

/* Uniform in [0, 1). */
static double uniform(void)
{
    return (double)randombytes_uniform(1000000) / 1e6;
}

/* Sleeps s seconds, waking early when a signal asks to stop. */
static void nap(double s)
{
    double end = ud_clock_mono() + s;
    while (!agent_update_stopping()) {
        double left = end - ud_clock_mono();
        if (left <= 0)
            break;
        if (left > 0.05)
            left = 0.05;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static double poll_jitter(double poll)
{
    return poll * (0.8 + 0.4 * uniform());
}

static void spath(char *buf, const struct daemon *d, const char *fmt, const char *arg)
{
    char name[256];
    snprintf(name, sizeof name, fmt, arg);
    snprintf(buf, PATH_CAP, "%s/%s", d->o.state, name);
}

static void upload_path(char *buf, const struct daemon *d, int64_t round)
{
    char r[32];
    snprintf(r, sizeof r, "%" PRId64, round);
    spath(buf, d, "upload-%s.msgpack", r);
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void die_token_refused(const char *what)
{
    agent_die(2, "token refused by the coordinator (%s answered 401): check --token/--token-file",
              what);
}

/* A server that fails TLS verification will not pass on a retry, and talking on would hand
 * a token to whoever it is: exit 2 naming the server, the CA file or pin, and curl's reason. */
static void die_if_tls(struct daemon *d, int rc, const struct ud_err *e)
{
    if (rc != UD_EAUTH)
        return;
    agent_error(d->log, "%s", e->msg);
    agent_http_destroy(&d->http);
    curl_global_cleanup();
    exit(2);
}

static void exit_stopped(struct daemon *d)
{
    agent_json_open(d->log, "stopped");
    agent_json_close(d->log);
    agent_say(d->log, "stopped by a signal; the state directory keeps what was done");
    agent_http_destroy(&d->http);
    curl_global_cleanup();
    exit(0);
}

/* "status" or "reason"/"error" of a JSON answer, into out (empty when absent). */
static void answer_field(const struct agent_http_resp *r, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *root = json_loadb(r->body, r->len, 0, NULL);
    json_t *v = json_object_get(root, key);
    if (json_is_string(v))
        snprintf(out, cap, "%s", json_string_value(v));
    json_decref(root);
}

/* ------------------------------------------------------------------------------- options */

static void check_run_opts(const struct run_opts *o);

static void parse_run(int argc, char **argv, struct run_opts *o)
{
    enum {
        O_COORD = 256,
        O_TOKEN,
        O_TOKEN_FILE,
        O_DATA,
        O_STATE,
        O_POLL,
        O_THREADS,
        O_MAX,
        O_UNSIGNED
    };
    enum { O_CACERT = 300, O_PIN };
    static const struct option longopts[] = {{"coordinator", required_argument, 0, O_COORD},
                                             {"token", required_argument, 0, O_TOKEN},
                                             {"token-file", required_argument, 0, O_TOKEN_FILE},
                                             {"data", required_argument, 0, O_DATA},
                                             {"state", required_argument, 0, O_STATE},
                                             {"poll", required_argument, 0, O_POLL},
                                             {"threads", required_argument, 0, O_THREADS},
                                             {"max-rounds", required_argument, 0, O_MAX},
                                             {"allow-unsigned", no_argument, 0, O_UNSIGNED},
                                             {"cacert", required_argument, 0, O_CACERT},
                                             {"pin", required_argument, 0, O_PIN},
                                             AGENT_COMMON_LONGOPTS};
    memset(o, 0, sizeof *o);
    o->poll = 5;
    o->threads = 1;
    int c;
    optind = 1;
    while ((c = agent_next_option(argc, argv, longopts, &o->common)) != -1) {
        switch (c) {
        case O_COORD:
            o->url = optarg;
            break;
        case O_TOKEN:
            o->token = optarg;
            break;
        case O_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case O_DATA:
            o->data = optarg;
            break;
        case O_STATE:
            o->state = optarg;
            break;
        case O_POLL:
            o->poll = agent_parse_double("--poll", optarg, 0.05, 86400);
            break;
        case O_THREADS:
            o->threads = (int)agent_parse_int("--threads", optarg, 1, 256);
            break;
        case O_MAX:
            o->max_rounds = agent_parse_int("--max-rounds", optarg, 1, INT64_MAX);
            break;
        case O_UNSIGNED:
            o->allow_unsigned = 1;
            break;
        case O_CACERT:
            o->tls.cacert = optarg;
            break;
        case O_PIN:
            o->tls.pin = optarg;
            break;
        case 'h':
            printf("usage: " AGENT_PROG " run --coordinator URL (--token T | --token-file F) "
                   "--data SRC --state DIR\n"
                   "       (--model-pubkey SIGN.pub | --allow-unsigned) [--model-key MODEL.key]\n"
                   "       [--poll SEC] [--threads T] [--max-rounds N] [--cacert F] [--pin P]\n"
                   "       [--json] [--quiet]\n"
                   "(docs/agent.md)\n");
            exit(0);
        default:
            exit(2);
        }
    }
    if (optind < argc)
        agent_die(2, "run: unexpected argument '%s' (try --help)", argv[optind]);
    check_run_opts(o);
}

/* What the options must say together; dies (exit 2) naming what is missing or contradicts. */
static void check_run_opts(const struct run_opts *o)
{
    if (!o->url || !o->data || !o->state)
        agent_die(2, "run: --coordinator, --data and --state are required (try --help)");
    if (!o->token == !o->token_file)
        agent_die(2, "run: give exactly one of --token and --token-file");
    if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0)
        agent_die(2, "--coordinator: '%s' must start with http:// or https://", o->url);
    if (!o->common.pubkey && !o->allow_unsigned)
        agent_die(2, "run: give --model-pubkey (the coordinator's signing key, STATE/signing.pub "
                     "on its host) so that models are verified, or --allow-unsigned to accept "
                     "them unverified");
    if (o->common.pubkey && o->allow_unsigned)
        agent_die(2, "run: --model-pubkey and --allow-unsigned contradict each other");
    if ((o->tls.cacert || o->tls.pin) && strncmp(o->url, "https://", 8) != 0)
        agent_die(2, "--cacert and --pin verify an https:// coordinator; '%s' is plain HTTP",
                  o->url);
    if (o->tls.cacert && access(o->tls.cacert, R_OK) != 0)
        agent_die(2, "--cacert %s: %s", o->tls.cacert, strerror(errno));
    if (o->tls.pin && strncmp(o->tls.pin, "sha256//", 8) != 0 && access(o->tls.pin, R_OK) != 0)
        agent_die(2, "--pin '%s': neither sha256//BASE64 nor a readable public key file (%s)",
                  o->tls.pin, strerror(errno));
}

/* "<device id>.<hex secret>": the device id is what precedes the last '.'. */
static void load_token(struct daemon *d)
{
    const struct run_opts *o = &d->o;
    if (o->token_file) {
        struct ud_err e = {0};
        char *data;
        size_t len;
        if (ud_file_read(o->token_file, sizeof d->token - 1, &data, &len, &e) < 0)
            agent_die(2, "--token-file: %s", e.msg);
        while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ' ||
                           data[len - 1] == '\t'))
            len--;
        memcpy(d->token, data, len);
        d->token[len] = '\0';
        free(data);
    } else {
        if (strlen(o->token) >= sizeof d->token)
            agent_die(2, "--token: too long");
        snprintf(d->token, sizeof d->token, "%s", o->token);
    }
    const char *dot = strrchr(d->token, '.');
    const char *what = o->token_file ? o->token_file : "--token";
    if (!dot || dot == d->token || !dot[1])
        agent_die(2, "%s: a token is \"<device id>.<hex secret>\"", what);
    for (const char *p = dot + 1; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            agent_die(2, "%s: the secret after the last '.' must be hexadecimal", what);
    size_t n = (size_t)(dot - d->token);
    if (n >= sizeof d->device)
        agent_die(2, "%s: the device id is longer than %zu characters", what, sizeof d->device - 1);
    for (size_t i = 0; i < n; i++) {
        char ch = d->token[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '-' || ch == '_' || ch == '.'))
            agent_die(2, "%s: the device id may hold letters, digits, '-', '_' and '.' only", what);
    }
    memcpy(d->device, d->token, n);
    d->device[n] = '\0';
}

/* ----------------------------------------------------------------------------------- task */

/* Returns 0 with a task, 1 for "nothing now" (204) or a failure worth only a log line. */
static int fetch_task(struct daemon *d, struct agent_task *t)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/devices/%s/task", d->device);
    struct agent_http_resp r;
    struct ud_err e = {0};
    int rc = agent_http_get(d->http, path, AGENT_TASK_MAX_BYTES, &r, &e);
    if (rc == UD_ECANCELLED)
        exit_stopped(d);
    die_if_tls(d, rc, &e);
    if (rc < 0) {
        /* Once per distinct failure: a coordinator down for an hour is one line, not 700. */
        if (strcmp(e.msg, d->last_fetch_err) != 0) {
            agent_warn(d->log, "asking for a task: %s (asking again every %g s)", e.msg, d->o.poll);
            snprintf(d->last_fetch_err, sizeof d->last_fetch_err, "%s", e.msg);
        }
        return 1;
    }
    long st = r.status;
    if (st == 401)
        die_token_refused(path);
    if (st == 204) {
        d->last_fetch_err[0] = '\0';
        agent_http_resp_deinit(&r);
        return 1;
    }
    if (st != 200) {
        char msg[sizeof d->last_fetch_err];
        snprintf(msg, sizeof msg, "GET %s answered %ld: %.200s", path, st, r.body);
        if (strcmp(msg, d->last_fetch_err) != 0) {
            agent_warn(d->log, "asking for a task: %s (asking again every %g s)", msg, d->o.poll);
            snprintf(d->last_fetch_err, sizeof d->last_fetch_err, "%s", msg);
        }
        agent_http_resp_deinit(&r);
        return 1;
    }
    d->last_fetch_err[0] = '\0';
    rc = agent_task_parse(r.body, r.len, t, &e);
    agent_http_resp_deinit(&r);
    if (rc < 0) {
        if (strcmp(e.msg, d->last_fetch_err) != 0)
            agent_error(d->log, "%s (asking again every %g s)", e.msg, d->o.poll);
        snprintf(d->last_fetch_err, sizeof d->last_fetch_err, "%s", e.msg);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------- download */

/* Deletes every model-*.udm in the state directory except keep (a file name). */
static void prune_models(struct daemon *d, const char *keep)
{
    DIR *dir = opendir(d->o.state);
    if (!dir)
        return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        size_t n = strlen(de->d_name);
        if (strncmp(de->d_name, "model-", 6) != 0 || n < 10 ||
            strcmp(de->d_name + n - 4, ".udm") != 0 || strcmp(de->d_name, keep) == 0)
            continue;
        char p[PATH_CAP];
        snprintf(p, sizeof p, "%s/%s", d->o.state, de->d_name);
        if (unlink(p) == 0)
            agent_say(d->log, "removed the older model %s", de->d_name);
    }
    closedir(dir);
}

/* Makes STATE/model-<sha256>.udm exist and verified. Returns 0 (path in out), UD_ECANCELLED,
 * or an error for which the round is tried again later. */
static void model_ready_event(const struct agent_log *log, const struct agent_task *t,
                              const char *source)
{
    agent_json_open(log, "model_ready");
    agent_json_str(log, "sha256", t->sha256);
    agent_json_int(log, "bytes", (long long)t->size);
    agent_json_str(log, "source", source);
    agent_json_close(log);
}

static void download_event(const struct agent_log *log, const struct agent_task *t,
                           const struct agent_download *dl)
{
    agent_json_open(log, "download");
    agent_json_int(log, "round", (long long)t->round);
    agent_json_int(log, "from", (long long)dl->from);
    agent_json_int(log, "received", (long long)dl->received);
    agent_json_int(log, "total", (long long)dl->total);
    agent_json_int(log, "size", (long long)t->size);
    agent_json_int(log, "status", dl->status);
    agent_json_int(log, "resumed", dl->from > 0 && dl->status == 206);
    agent_json_close(log);
    agent_say(
        log, "download: HTTP %ld, %" PRIu64 " bytes received, %" PRIu64 " of %" PRIu64 " on disk%s",
        dl->status, dl->received, dl->total, t->size,
        dl->restarted ? " (the server sent the whole file again)" : "");
}

/* Fetches what part lacks of the task's model (resuming from its length), then syncs it.
 * Returns 0 once part holds t->size bytes (not yet hashed), or the error: UD_ENET for what a
 * retry may fix, UD_ECANCELLED, UD_EIO, ... A 401 exits through die_token_refused. */
static int download_part(struct daemon *d, const struct agent_task *t, const char *part,
                         struct ud_err *e)
{
    const struct agent_log *log = d->log;
    int fd = open(part, O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        return ud_err_set(e, UD_EIO, "%s: %s", part, strerror(errno));
    off_t have_bytes = lseek(fd, 0, SEEK_END);
    if (have_bytes < 0 || (uint64_t)have_bytes > t->size) {
        if (ftruncate(fd, 0) < 0) {
            close(fd);
            return ud_err_set(e, UD_EIO, "%s: %s", part, strerror(errno));
        }
        have_bytes = 0;
    }
    int rc = 0;
    struct agent_download dl = {
        .fd = fd, .from = (uint64_t)have_bytes, .etag = t->sha256, .max_total = t->size};
    if ((uint64_t)have_bytes < t->size) {
        agent_say(log, "downloading %s v%" PRId64 " (%" PRIu64 " bytes)%s", t->model_name,
                  t->model_version, t->size, have_bytes ? ", resuming" : "");
        if (have_bytes)
            agent_say(log, "resuming the download at byte %lld of %" PRIu64, (long long)have_bytes,
                      t->size);
        rc = agent_http_download(d->http, t->model_url, &dl, e);
        die_if_tls(d, rc, e);
        download_event(log, t, &dl);
    } else {
        dl.status = 206;
        dl.total = t->size;
    }
    if (rc == 0 && dl.status != 200 && dl.status != 206) {
        if (dl.status == 401) {
            close(fd);
            die_token_refused(t->model_url);
        }
        rc = ud_err_set(e, dl.status >= 500 || dl.status == 429 ? UD_ENET : UD_ENOTFOUND,
                        "GET %s answered %ld: %.200s", t->model_url, dl.status, dl.err_body);
        if (dl.status == 416) /* our range is past the end: start over */
            rc = ftruncate(fd, 0) < 0 ? UD_EIO : UD_ENET;
    }
    if (rc == 0 && dl.total < t->size)
        rc =
            ud_err_set(e, UD_ENET, "GET %s: the transfer ended at %" PRIu64 " of %" PRIu64 " bytes",
                       t->model_url, dl.total, t->size);
    if (rc == 0 && fsync(fd) < 0)
        rc = ud_err_set(e, UD_EIO, "%s: fsync: %s", part, strerror(errno));
    close(fd);
    return rc;
}

/* Waits before the next download attempt (exponential backoff with jitter), unless the error
 * is not one a retry may fix or the round's deadline would pass first: then returns the error. */
static int download_backoff(struct daemon *d, const struct agent_task *t, const char *part, int rc,
                            int *attempt, struct ud_err *e)
{
    if (rc != UD_ENET && rc != UD_ETIMEOUT && rc != UD_ELIMIT && rc != UD_EFORMAT)
        return rc;
    if (rc == UD_ELIMIT || rc == UD_EFORMAT) {
        agent_error(d->log, "%s; starting over", e->msg);
        unlink(part);
    }
    double cap = BACKOFF_BASE_S * pow(2.0, *attempt < 16 ? *attempt : 16);
    double wait = uniform() * (cap < BACKOFF_CAP_S ? cap : BACKOFF_CAP_S);
    (*attempt)++;
    if (ud_clock_wall() + wait > t->deadline)
        return ud_err_set(e, UD_ETIMEOUT, "%s; the round's deadline has passed", e->msg);
    agent_warn(d->log, "%s; retrying in %.1f s", e->msg, wait);
    nap(wait);
    return 0;
}

/* The task's model at out (STATE/model-<sha256>.udm): kept from an earlier round, or downloaded
 * (resuming a partial download of the same file) and checked against its SHA-256, with retries
 * until the round's deadline. A file that never matches its hash is given up after
 * MISMATCH_ATTEMPTS downloads (UD_ECHECKSUM). */
static int ensure_model(struct daemon *d, const struct agent_task *t, char *out, struct ud_err *e)
{
    const struct agent_log *log = d->log;
    spath(out, d, "model-%s.udm", t->sha256);
    char name[128];
    snprintf(name, sizeof name, "model-%s.udm", t->sha256);
    struct stat st;
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == t->size) {
        model_ready_event(log, t, "state");
        agent_say(log, "model %s v%" PRId64 " already verified (%s)", t->model_name,
                  t->model_version, name);
        prune_models(d, name);
        return 0;
    }
    char part[PATH_CAP], djson[PATH_CAP];
    spath(part, d, "%s", "model.part");
    spath(djson, d, "%s", "download.json");
    /* A partial download of the same file is resumed; of another, discarded. */
    char psha[65] = "";
    uint64_t psize = 0;
    struct ud_err le = {0};
    int have = agent_download_load(d->o.state, psha, &psize, &le) == 0 &&
               strcmp(psha, t->sha256) == 0 && psize == t->size;
    if (!have) {
        unlink(part);
        if (agent_download_save(d->o.state, t->sha256, t->size, e) < 0)
            return e->code;
    }
    int mismatches = 0, attempt = 0;
    for (;;) {
        if (agent_update_stopping())
            return ud_err_set(e, UD_ECANCELLED, "stopped");
        int rc = download_part(d, t, part, e);
        if (rc == UD_ECANCELLED)
            return rc;
        if (rc < 0) {
            /* The transfer failed: retry what may pass, with backoff, until the deadline. */
            if ((rc = download_backoff(d, t, part, rc, &attempt, e)) < 0)
                return rc;
            continue;
        }
        char hex[65];
        if ((rc = ud_file_sha256(part, hex, e)) < 0)
            return rc;
        if (strcmp(hex, t->sha256) != 0) {
            mismatches++;
            agent_error(log,
                        "the downloaded model's SHA-256 is %s, the task says %s: deleted "
                        "(attempt %d of %d)",
                        hex, t->sha256, mismatches, MISMATCH_ATTEMPTS);
            unlink(part);
            if (mismatches >= MISMATCH_ATTEMPTS)
                return ud_err_set(e, UD_ECHECKSUM, "the model from %s never matched its SHA-256 %s",
                                  t->model_url, t->sha256);
            continue;
        }
        if (rename(part, out) < 0)
            return ud_err_set(e, UD_EIO, "rename %s to %s: %s", part, out, strerror(errno));
        fsync_path(out, 0);
        fsync_path(d->o.state, 1);
        unlink(djson);
        model_ready_event(log, t, "download");
        agent_say(log, "model verified (SHA-256 %s): %s", t->sha256, name);
        prune_models(d, name);
        return 0;
    }
}

/* ---------------------------------------------------------------------------------- upload */

/* What an answer to an upload means for good ("accepted", "duplicate", "stale", "shape", ...),
 * or NULL when it is worth sending again (no answer, 429, 5xx). 401 is the caller's. */
static const char *upload_outcome(long st, const char *status, const char *reason)
{
    if (st == 200)
        return strcmp(status, "duplicate") == 0 ? "duplicate" : "accepted";
    if (st == 409)
        return strcmp(reason, "stale") == 0 || strcmp(reason, "closed") == 0 ? reason : "conflict";
    if (st == 422)
        return strcmp(reason, "shape") == 0 || strcmp(reason, "nonfinite") == 0 ||
                       strcmp(reason, "norm") == 0 || strcmp(reason, "malformed") == 0
                   ? reason
                   : "rejected";
    if (st == 404)
        return "not_found";
    if (st == 413)
        return "too_large";
    if (st >= 400 && st < 500 && st != 429)
        return "rejected";
    return NULL;
}

static void retry_event(const struct agent_log *log, int64_t round, int attempt, double wait,
                        const char *why)
{
    agent_json_open(log, "retry");
    agent_json_int(log, "round", (long long)round);
    agent_json_int(log, "attempt", attempt + 1);
    agent_json_num(log, "wait", wait);
    agent_json_str(log, "reason", why);
    agent_json_close(log);
    agent_warn(log, "round %" PRId64 ": %s; retrying in %.2f s", round, why, wait);
}

/* Sends the stored upload until it is answered for good or the deadline passes. Writes the
 * result ("accepted", "duplicate", "stale", ...) into result. Exits on 401 and on a stop. */
static void send_upload(struct daemon *d, int64_t round, const char *upload, const char *key,
                        double deadline, char *result, size_t cap)
{
    const struct agent_log *log = d->log;
    char path[PATH_CAP];
    upload_path(path, d, round);
    char *body;
    size_t len;
    struct ud_err e = {0};
    if (ud_file_read(path, (size_t)1 << 31, &body, &len, &e) < 0) {
        agent_error(log, "round %" PRId64 ": cannot read the stored update: %s", round, e.msg);
        snprintf(result, cap, "failed");
        return;
    }
    for (int attempt = 0;; attempt++) {
        struct agent_http_resp r;
        int rc = agent_http_post(d->http, upload, "application/msgpack", key, body, len,
                                 RESP_MAX_BYTES, &r, &e);
        if (rc == UD_ECANCELLED) {
            free(body);
            exit_stopped(d);
        }
        die_if_tls(d, rc, &e);
        char reason[64] = "", status[64] = "";
        long st = rc < 0 ? 0 : r.status;
        if (rc == 0) {
            answer_field(&r, "status", status, sizeof status);
            answer_field(&r, "reason", reason, sizeof reason);
            if (!reason[0])
                answer_field(&r, "error", reason, sizeof reason);
        }
        if (st == 401) {
            free(body);
            die_token_refused(upload);
        }
        if (st == 200 && strcmp(status, "accepted") != 0 && strcmp(status, "duplicate") != 0)
            agent_warn(log, "round %" PRId64 ": 200 with status \"%s\": taken as accepted", round,
                       status);
        const char *final = upload_outcome(st, status, reason);
        agent_json_open(log, "upload");
        agent_json_int(log, "round", (long long)round);
        agent_json_int(log, "attempt", attempt + 1);
        agent_json_int(log, "status", st);
        agent_json_int(log, "bytes", (long long)len);
        agent_json_str(log, "key", key);
        if (final)
            agent_json_str(log, "result", final);
        if (reason[0])
            agent_json_str(log, "reason", reason);
        agent_json_close(log);
        if (final) {
            if (st == 200)
                agent_say(log, "round %" PRId64 ": update %s (%zu bytes, key %s)", round, final,
                          len, key);
            else
                agent_error(log,
                            "round %" PRId64 ": the coordinator refused the update: HTTP %ld%s%s; "
                            "giving up this round",
                            round, st, reason[0] ? ", reason " : "", reason);
            snprintf(result, cap, "%s", final);
            if (rc == 0)
                agent_http_resp_deinit(&r);
            break;
        }
        char why[300];
        if (rc < 0)
            snprintf(why, sizeof why, "%s", e.msg);
        else
            snprintf(why, sizeof why, "POST %s answered %ld", upload, st);
        if (rc == 0)
            agent_http_resp_deinit(&r);
        double cap_s = BACKOFF_BASE_S * pow(2.0, attempt < 16 ? attempt : 16);
        double wait = uniform() * (cap_s < BACKOFF_CAP_S ? cap_s : BACKOFF_CAP_S);
        if (ud_clock_wall() + wait > deadline) {
            agent_error(log, "round %" PRId64 ": %s; the deadline has passed, giving up", round,
                        why);
            snprintf(result, cap, "deadline");
            break;
        }
        retry_event(log, round, attempt, wait, why);
        nap(wait);
        if (agent_update_stopping()) {
            free(body);
            exit_stopped(d);
        }
    }
    free(body);
}

/* Records the round as finished, deletes its upload file, counts a contribution. */
static void finish_round(struct daemon *d, int64_t round, const char *result)
{
    struct ud_err e = {0};
    agent_state_finish(&d->st, round, result);
    if (agent_state_save(d->o.state, &d->st, &e) < 0)
        agent_die(1, "%s", e.msg);
    char path[PATH_CAP];
    upload_path(path, d, round);
    unlink(path);
    if (strcmp(result, "accepted") == 0 || strcmp(result, "duplicate") == 0)
        d->contributed++;
    agent_json_open(d->log, "round_done");
    agent_json_int(d->log, "round", (long long)round);
    agent_json_str(d->log, "result", result);
    agent_json_int(d->log, "contributed", (long long)d->contributed);
    agent_json_close(d->log);
    agent_say(d->log, "round %" PRId64 " done: %s", round, result);
}

/* ---------------------------------------------------------------------------------- a round */

/* The round's model, verified and decrypted with the device's keys, into *model. Returns 0; a
 * model this device does not trust (unsigned, another key, altered) is deleted and the round
 * given up (its code, result "model_refused"); bytes that do not decode are deleted to be
 * fetched again (ROUND_LATER). */
static int open_round_model(struct daemon *d, const struct agent_task *t, const char *model_path,
                            ud_model_t **model, char *result, size_t cap)
{
    const struct agent_log *log = d->log;
    struct ud_err e = {0};
    struct ud_seal_info seal;
    *model = agent_open_model(&d->keys, model_path, &seal, &e);
    if (!*model && (e.code == UD_EUNSIGNED || e.code == UD_EWRONGKEY || e.code == UD_ETAMPERED)) {
        /* The bytes are the ones the coordinator announced, but they are not a model this
         * device trusts: never train on them; give the round up and say why. */
        agent_json_open(log, "model_refused");
        agent_json_int(log, "round", (long long)t->round);
        agent_json_str(log, "reason", ud_err_name(e.code));
        agent_json_str(log, "message", e.msg);
        agent_json_close(log);
        agent_error(log, "round %" PRId64 ": refusing the model: %s; giving up this round",
                    t->round, e.msg);
        unlink(model_path);
        snprintf(result, cap, "model_refused");
        return e.code;
    }
    if (!*model) {
        agent_error(log, "round %" PRId64 ": %s", t->round, e.msg);
        unlink(model_path); /* verified bytes that do not decode: fetch again next time */
        return ROUND_LATER;
    }
    if (seal.is_signed && d->keys.have_verify) {
        agent_json_open(log, "model_verified");
        agent_json_int(log, "round", (long long)t->round);
        agent_json_str(log, "signed_by", seal.sign_key_id);
        agent_json_int(log, "encrypted", seal.encrypted ? 1 : 0);
        agent_json_close(log);
        agent_say(log, "round %" PRId64 ": model signed by key %s: the signature verifies%s",
                  t->round, seal.sign_key_id, seal.encrypted ? "; decrypted in memory" : "");
    }
    return 0;
}

/* Encodes the update message (the delta and the training's figures) and stores it atomically
 * in STATE/upload-<round>.msgpack. Returns 0, ROUND_LATER when it could not be written, or the
 * encoder's code with result "failed". */
static int store_upload(struct daemon *d, const struct agent_task *t,
                        const struct agent_update_result *res, float *delta, size_t n, char *result,
                        size_t cap)
{
    struct ud_err e = {0};
    struct ud_update_msg msg = {.round = t->round,
                                .base_version = t->model_version,
                                .samples = res->samples,
                                .loss = res->loss,
                                .accuracy = res->accuracy,
                                .delta = delta,
                                .n = n};
    snprintf(msg.key, sizeof msg.key, "%s", d->st.key);
    char *buf = NULL;
    size_t len;
    int rc = ud_update_msg_encode(&msg, &buf, &len, &e);
    if (rc < 0) {
        agent_error(d->log, "round %" PRId64 ": %s", t->round, e.msg);
        snprintf(result, cap, "failed");
        return rc;
    }
    char path[PATH_CAP];
    upload_path(path, d, t->round);
    if ((rc = ud_file_write_atomic(path, buf, len, &e)) < 0) {
        agent_error(d->log, "%s", e.msg);
        rc = ROUND_LATER;
    }
    free(buf);
    return rc;
}

/* Trains on the verified model and stores the encoded update in STATE/upload-<round>.msgpack.
 * Returns 0, or a negative code with result set to what to record (ROUND_LATER as positive:
 * try again later, nothing recorded). */
static int build_upload(struct daemon *d, const struct agent_task *t, const char *model_path,
                        char *result, size_t cap)
{
    const struct agent_log *log = d->log;
    struct ud_err e = {0};
    ud_model_t *model = NULL, *base = NULL;
    float *delta = NULL;
    int rc = open_round_model(d, t, model_path, &model, result, cap);
    if (rc != 0)
        return rc;
    if (!(base = ud_model_clone(model, &e))) {
        agent_error(log, "%s", e.msg);
        rc = ROUND_LATER;
        goto out_free_model;
    }
    struct agent_update_req req = {.data = d->o.data,
                                   .have_epochs = 1,
                                   .epochs = t->epochs,
                                   .have_batch = 1,
                                   .batch = t->batch,
                                   .have_lr = 1,
                                   .lr = t->lr,
                                   .threads = d->o.threads};
    struct agent_update_result res;
    rc = agent_update_run(model, &req, log, &res, &e);
    if (rc == UD_ECANCELLED || agent_update_stopping()) {
        ud_model_destroy(&base);
        ud_model_destroy(&model);
        exit_stopped(d);
    }
    if (rc < 0) {
        agent_error(log, "round %" PRId64 ": the update failed: %s; giving up this round", t->round,
                    e.msg);
        snprintf(result, cap, res.bad_params ? "bad_params" : "failed");
        goto out_free_base;
    }
    size_t n = ud_delta_size(base);
    if (!(delta = malloc((n + 1) * sizeof *delta))) {
        rc = ud_err_set(&e, UD_ENOMEM, "out of memory for the delta");
        snprintf(result, cap, "failed");
        goto out_free_base;
    }
    if ((rc = ud_delta_compute(base, model, delta, &e)) < 0) {
        agent_error(log, "round %" PRId64 ": %s", t->round, e.msg);
        snprintf(result, cap, "failed");
        goto out_free_delta;
    }
    double norm = 0;
    rc = ud_delta_check(delta, n, t->max_norm, &norm, &e);
    agent_json_open(log, "delta");
    agent_json_int(log, "round", (long long)t->round);
    agent_json_int(log, "floats", (long long)n);
    agent_json_num(log, "norm", norm);
    agent_json_num(log, "max_norm", t->max_norm);
    agent_json_close(log);
    agent_say(log, "round %" PRId64 ": delta of %zu values, L2 norm %.4g (limit %g)", t->round, n,
              norm, t->max_norm);
    if (rc == UD_ENONFINITE) {
        agent_error(log, "round %" PRId64 ": %s; giving up this round", t->round, e.msg);
        snprintf(result, cap, "nonfinite");
        goto out_free_delta;
    }
    if (rc == UD_ERANGE) /* clipping is the coordinator's call: send it, say so */
        agent_warn(log, "round %" PRId64 ": %s; sending it anyway", t->round, e.msg);
    rc = store_upload(d, t, &res, delta, n, result, cap);
out_free_delta:
    free(delta);
out_free_base:
    ud_model_destroy(&base);
out_free_model:
    ud_model_destroy(&model);
    return rc;
}

static void make_key(const struct daemon *d, int64_t round, char *key, size_t cap)
{
    unsigned char r[8];
    char hex[17];
    randombytes_buf(r, sizeof r);
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    snprintf(key, cap, "%s-%" PRId64 "-%s", d->device, round, hex);
}

/* Tells the coordinator, once and best effort, that this device cannot contribute to the
 * round (POST /v1/rounds/{id}/failures), so that the round need not wait for its deadline. */
static void report_failure(struct daemon *d, int64_t round, const char *result)
{
    char path[96], body[160];
    snprintf(path, sizeof path, "/v1/rounds/%" PRId64 "/failures", round);
    snprintf(body, sizeof body, "{\"reason\":\"%s\"}", result); /* result: a plain word */
    struct agent_http_resp r;
    struct ud_err e = {0};
    int rc = agent_http_post(d->http, path, "application/json", NULL, body, strlen(body),
                             RESP_MAX_BYTES, &r, &e);
    die_if_tls(d, rc, &e);
    agent_json_open(d->log, "failure_report");
    agent_json_int(d->log, "round", (long long)round);
    agent_json_str(d->log, "reason", result);
    agent_json_int(d->log, "status", rc < 0 ? 0 : (long long)r.status);
    agent_json_close(d->log);
    if (rc < 0 || r.status != 200)
        agent_warn(d->log, "round %" PRId64 ": could not report the failure (%s)", round,
                   rc < 0 ? e.msg : "the coordinator refused it");
    if (rc == 0)
        agent_http_resp_deinit(&r);
}

static int do_round(struct daemon *d, const struct agent_task *t)
{
    const struct agent_log *log = d->log;
    struct ud_err e = {0};
    char path[PATH_CAP], result[32] = "";
    agent_json_open(log, "task");
    agent_json_int(log, "federation", (long long)t->federation);
    agent_json_int(log, "round", (long long)t->round);
    agent_json_int(log, "number", (long long)t->number);
    agent_json_str(log, "model", t->model_name);
    agent_json_int(log, "version", (long long)t->model_version);
    agent_json_int(log, "epochs", (long long)t->epochs);
    agent_json_int(log, "batch", (long long)t->batch);
    agent_json_num(log, "lr", t->lr);
    agent_json_num(log, "deadline", t->deadline);
    agent_json_close(log);
    agent_say(log,
              "task: round %" PRId64 " (federation %" PRId64 ", number %" PRId64
              "), model %s v%" PRId64 ", %" PRId64 " epochs, batch %" PRId64 ", lr %g",
              t->round, t->federation, t->number, t->model_name, t->model_version, t->epochs,
              t->batch, t->lr);

    /* A round left unfinished for another one is given up. */
    if (d->st.round >= 0 && d->st.round != t->round) {
        agent_warn(log, "round %" PRId64 " was left unfinished; moving on to round %" PRId64,
                   d->st.round, t->round);
        finish_round(d, d->st.round, "abandoned");
    }
    /* The key is made once per (device, round) and stored before any training. */
    if (d->st.round != t->round || !d->st.key[0])
        make_key(d, t->round, d->st.key, sizeof d->st.key);
    d->st.round = t->round;
    snprintf(d->st.upload, sizeof d->st.upload, "%s", t->upload);
    d->st.deadline = t->deadline;
    d->st.base_version = t->model_version;
    snprintf(d->st.model_sha256, sizeof d->st.model_sha256, "%s", t->sha256);
    if (agent_state_save(d->o.state, &d->st, &e) < 0)
        agent_die(1, "%s", e.msg);

    upload_path(path, d, t->round);
    if (access(path, F_OK) != 0) {
        char model_path[PATH_CAP];
        int rc = ensure_model(d, t, model_path, &e);
        if (rc == UD_ECANCELLED)
            exit_stopped(d);
        if (rc < 0) {
            agent_error(log, "round %" PRId64 ": no model: %s; asking again later", t->round,
                        e.msg);
            return ROUND_LATER;
        }
        rc = build_upload(d, t, model_path, result, sizeof result);
        if (rc == ROUND_LATER)
            return ROUND_LATER;
        if (rc < 0) {
            report_failure(d, t->round, result);
            finish_round(d, t->round, result);
            return ROUND_FINISHED;
        }
    } else {
        agent_say(log, "round %" PRId64 ": the update is already stored; sending it", t->round);
    }
    send_upload(d, t->round, t->upload, d->st.key, t->deadline, result, sizeof result);
    finish_round(d, t->round, result);
    return ROUND_FINISHED;
}

/* --------------------------------------------------------------------------------- main */

/* The daemon's start: keys, libraries, signals, the state directory, the HTTP client, and the
 * state kept from an earlier run. Dies with a message on anything it cannot start with. */
static void daemon_start(struct daemon *d)
{
    d->log = &d->o.common.log;
    d->skipped_round = -1;
    load_token(d);
    agent_keys_load(&d->keys, d->o.common.pubkey, d->o.common.model_key);
    if (d->o.allow_unsigned)
        agent_warn(d->log, "--allow-unsigned: models are not verified; anyone who can answer for "
                           "the coordinator can make this device train on any model");
    else
        agent_say(d->log, "models must be signed by key %s (%s)", d->keys.verify.id,
                  d->o.common.pubkey);
    if (sodium_init() < 0)
        agent_die(1, "libsodium cannot initialise");
    ud_kernels_set_threads(d->o.threads);
    agent_update_handle_signals();
    if (mkdir(d->o.state, 0700) != 0 && errno != EEXIST)
        agent_die(1, "--state %s: %s", d->o.state, strerror(errno));
    struct stat sst;
    if (stat(d->o.state, &sst) != 0 || !S_ISDIR(sst.st_mode) || access(d->o.state, W_OK) != 0)
        agent_die(1, "--state %s: not a writable directory", d->o.state);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        agent_die(1, "libcurl cannot initialise");
    struct ud_err e = {0};
    if (!(d->http = agent_http_new(d->o.url, d->token, agent_update_stopping, &d->o.tls, &e)))
        agent_die(1, "%s", e.msg);
    if (ud_net_url_is_plain_remote(d->o.url))
        agent_warn(d->log,
                   "%s is plain HTTP to a host that is not loopback: the device token and the "
                   "updates cross the network unencrypted; use https:// (and --cacert)",
                   d->o.url);

    int rc = agent_state_load(d->o.state, &d->st, &e);
    if (rc < 0 && rc != UD_ENOTFOUND)
        agent_warn(d->log, "%s; starting with a fresh state", e.msg);
    agent_json_open(d->log, "started");
    agent_json_str(d->log, "device", d->device);
    agent_json_str(d->log, "coordinator", d->o.url);
    agent_json_str(d->log, "state", d->o.state);
    agent_json_int(d->log, "rounds_done", d->st.ndone);
    agent_json_close(d->log);
    agent_say(d->log, "device %s, coordinator %s, state %s", d->device, d->o.url, d->o.state);
}

/* Restart: an update stored but not answered is sent again, with the same key. */
static void resend_stored_upload(struct daemon *d)
{
    if (d->st.round < 0 || agent_state_is_done(&d->st, d->st.round))
        return;
    char path[PATH_CAP];
    upload_path(path, d, d->st.round);
    if (access(path, F_OK) != 0)
        return;
    char result[32];
    agent_json_open(d->log, "resend");
    agent_json_int(d->log, "round", (long long)d->st.round);
    agent_json_str(d->log, "key", d->st.key);
    agent_json_close(d->log);
    agent_say(d->log, "round %" PRId64 ": sending the stored update again (key %s)", d->st.round,
              d->st.key);
    int64_t round = d->st.round;
    char key[sizeof d->st.key], upload[sizeof d->st.upload];
    snprintf(key, sizeof key, "%s", d->st.key);
    snprintf(upload, sizeof upload, "%s", d->st.upload);
    send_upload(d, round, upload, key, d->st.deadline, result, sizeof result);
    finish_round(d, round, result);
}

static int enough_rounds(const struct daemon *d)
{
    return d->o.max_rounds && d->contributed >= d->o.max_rounds;
}

int agent_cmd_run(int argc, char **argv)
{
    static struct daemon D;
    struct daemon *d = &D;
    parse_run(argc, argv, &d->o);
    daemon_start(d);
    resend_stored_upload(d);
    int said_idle = 0;
    while (!enough_rounds(d)) {
        if (agent_update_stopping())
            exit_stopped(d);
        struct agent_task t;
        if (fetch_task(d, &t) != 0) {
            if (!said_idle) {
                agent_say(d->log, "no task now; asking every %g s", d->o.poll);
                said_idle = 1;
            }
            nap(poll_jitter(d->o.poll));
            continue;
        }
        said_idle = 0;
        if (agent_state_is_done(&d->st, t.round)) {
            if (d->skipped_round != t.round) {
                agent_say(d->log, "round %" PRId64 " is already done; waiting for the next",
                          t.round);
                d->skipped_round = t.round;
            }
            nap(poll_jitter(d->o.poll));
            continue;
        }
        if (do_round(d, &t) == ROUND_LATER)
            nap(poll_jitter(d->o.poll));
    }
    agent_say(d->log, "contributed to %" PRId64 " round%s; exiting", d->contributed,
              d->contributed == 1 ? "" : "s");
    agent_http_destroy(&d->http);
    curl_global_cleanup();
    return 0;
}

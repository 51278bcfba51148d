/*  cli_remote.c — `updraft status|jobs|job ...|models|model ...|devices ...|fed ...`: the
 *  coordinator's REST API for people (libcurl to ask, jansson to read the answers).
 *
 *  Every command is one or two requests and a table. Errors print the server's own message
 *  (the REST API's {"error":{"status","message"}}) and exit 1; usage errors exit 2. `job wait`
 *  and `fed wait` keep polling through a coordinator restart (connection refused, 5xx) until
 *  their timeout, so they can watch a job or a federation across a crash of the coordinator.
 *  Device tokens are secrets the coordinator shows once (it keeps only their hash): `devices
 *  add --out F` writes them to a 0600 file made before the devices are enrolled and renamed
 *  into place once complete, and never prints them.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_error.h"
#include "updraft/ud_file.h"
#include "updraft/ud_limits.h"
#include "updraft/ud_net.h"
#include "updraft/ud_net_curl.h"
#include "updraft/ud_num.h"

#define DEFAULT_URL   "http://127.0.0.1:8470"
#define MAX_REPLY     (64u << 20) /* JSON answers; model files go to disk */
#define WAIT_INTERVAL 1.0
struct cli_remote {
    char url[1024];
    char token[1024];
    const char *cacert, *pin; /* --cacert/$UPDRAFT_CACERT, --pin/$UPDRAFT_PIN; NULL: none */
    int json;
    const char *state, *out, *name;
    long long count; /* devices add --count; 0: not given */
    int progress;    /* fed wait --progress */
    double timeout;
};

struct reply {
    long code;
    char *body;
    size_t len;
    int too_big;
    FILE *file; /* a 200's body goes here when set */
    CURL *curl;
    json_t *json;
};

static void reply_free(struct reply *r)
{
    free(r->body);
    json_decref(r->json);
    r->body = NULL;
    r->json = NULL;
    r->len = 0;
}

static size_t on_data(char *p, size_t sz, size_t n, void *user)
{
    struct reply *r = user;
    size_t k = sz * n;
    long code = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
    if (r->file && code / 100 == 2)
        return fwrite(p, 1, k, r->file);
    if (r->len + k > MAX_REPLY) {
        r->too_big = 1;
        return 0;
    }
    char *b = realloc(r->body, r->len + k + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, k);
    r->body = b;
    r->len += k;
    b[r->len] = '\0';
    return k;
}

#define HTTP_TLS_REFUSED 3 /* http_ct: the server failed TLS verification */

/* 1 (with the message of ud_net_tls_message in msg) when cc is a TLS verification failure. */
static int tls_refused(const struct cli_remote *o, CURLcode cc, const char *reason, char *msg,
                       size_t n)
{
    enum ud_tls_failure why;
    if (!ud_net_curl_tls_failure(cc, &why))
        return 0;
    ud_net_tls_message(msg, n, why, o->url, o->cacert, o->pin, reason);
    return 1;
}

/* One request to o->url + path, with a body of Content-Type ctype when body is set. Returns 0
 * with r->code and the body (parsed into r->json when it is JSON), 1 when the server could not
 * be reached (printed unless quiet), or HTTP_TLS_REFUSED when it failed TLS verification
 * (always printed: waiting will not mend it). */
static int http_ct(const struct cli_remote *o, const char *method, const char *path,
                   const char *ctype, const char *body, size_t len, FILE *file, struct reply *r,
                   int quiet)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "updraft: cannot initialise libcurl\n");
        return 1;
    }
    char url[4096], errbuf[CURL_ERROR_SIZE] = "", authz[1100];
    snprintf(url, sizeof url, "%s%s", o->url, path);
    struct curl_slist *hdrs = NULL;
    if (o->token[0]) { /* every call: reads need the reader or admin token too */
        snprintf(authz, sizeof authz, "Authorization: Bearer %s", o->token);
        hdrs = curl_slist_append(hdrs, authz);
    }
    if (body) {
        char ct[128];
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, "GET") != 0 && !body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
    r->file = file;
    r->curl = c;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "updraft/" UD_VERSION_STRING);
    if (o->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
    if (o->pin)
        curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, o->pin);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    r->curl = NULL;
    char tls[UD_ERRMSG_MAX];
    if (rc != CURLE_OK &&
        tls_refused(o, rc, errbuf[0] ? errbuf : curl_easy_strerror(rc), tls, sizeof tls)) {
        fprintf(stderr, "updraft: %s\n", tls);
        reply_free(r);
        return HTTP_TLS_REFUSED;
    }
    if (rc != CURLE_OK) {
        if (!quiet)
            fprintf(stderr, "updraft: %s %s: %s\n", method, url,
                    r->too_big  ? "answer too large"
                    : errbuf[0] ? errbuf
                                : curl_easy_strerror(rc));
        reply_free(r);
        return 1;
    }
    if (r->body) {
        json_error_t je;
        r->json = json_loadb(r->body, r->len, 0, &je);
    }
    return 0;
}

/* http_ct with a JSON body (or none). */
static int http(const struct cli_remote *o, const char *method, const char *path, const char *body,
                size_t len, FILE *file, struct reply *r, int quiet)
{
    return http_ct(o, method, path, "application/json", body, len, file, r, quiet);
}

/* The server said no: its message (and with --json its body), exit code 1. */
static int server_error(const struct cli_remote *o, const struct reply *r, const char *what)
{
    const char *msg =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    if (o->json && r->body)
        fputs(r->body, stdout);
    fprintf(stderr, "updraft: %s: %s (HTTP %ld)\n", what,
            msg                       ? msg
            : r->body && r->len < 200 ? r->body
                                      : "unexpected answer",
            r->code);
    if (r->code == 401)
        fprintf(stderr, "updraft: pass a token with --token, --token-file or $UPDRAFT_TOKEN: "
                        "the admin token (STATE/admin.token), or for reads the reader token "
                        "(STATE/reader.token); the coordinator's log says where they are\n");
    else if (r->code == 403)
        fprintf(stderr, "updraft: this token may not do that: reads need the reader or the admin "
                        "token, changes the admin token\n");
    return 1;
}

/* Prints the body as is for --json; returns 0. */
static int print_json(const struct reply *r)
{
    if (r->body)
        fwrite(r->body, 1, r->len, stdout);
    if (!r->len || r->body[r->len - 1] != '\n')
        putchar('\n');
    return 0;
}

/* One request for call_and_print: ok is the status that means success; list, when set, the
 * key of the array the answer must hold; body of Content-Type ctype (JSON when NULL). Every
 * request carries the token: a GET the reader or admin token, the rest the admin token. */
struct call {
    const char *method, *path;
    long ok;
    const char *list;
    const char *body, *ctype;
    size_t len;
};

/* Makes the request; then the server's error (what names the request in it), or with --json
 * the answer as it is, or print(o, answer) for people. Returns the exit code. */
static int call_and_print(const struct cli_remote *o, const struct call *c, const char *what,
                          void (*print)(const struct cli_remote *, json_t *))
{
    struct reply r;
    if (http_ct(o, c->method, c->path, c->ctype ? c->ctype : "application/json", c->body, c->len,
                NULL, &r, 0))
        return 1;
    int ret = 0;
    int ok = r.code == c->ok &&
             (c->list ? json_is_array(json_object_get(r.json, c->list)) : json_is_object(r.json));
    if (!ok)
        ret = server_error(o, &r, what);
    else if (o->json)
        ret = print_json(&r);
    else
        print(o, r.json);
    reply_free(&r);
    return ret;
}

/* ------------------------------------------------------------------ formatting */

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static long long integer(json_t *o, const char *key, long long dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static const char *fmt_time(double t, char *buf, size_t n)
{
    if (!isfinite(t) || t <= 0)
        return "-";
    time_t s = (time_t)t;
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

static const char *fmt_duration(double s, char *buf, size_t n)
{
    if (!isfinite(s) || s < 0)
        return "-";
    long long t = (long long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%lldh%02lldm%02llds", t / 3600, t / 60 % 60, t % 60);
    else if (t >= 60)
        snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
    else
        snprintf(buf, n, "%llds", t);
    return buf;
}

static const char *fmt_size(double b, char *buf, size_t n)
{
    if (!isfinite(b))
        return "-";
    if (b >= 1 << 20)
        snprintf(buf, n, "%.1f MiB", b / (1 << 20));
    else if (b >= 1 << 10)
        snprintf(buf, n, "%.1f KiB", b / (1 << 10));
    else
        snprintf(buf, n, "%.0f B", b);
    return buf;
}

/* "epoch 2/10  step 940/4690  20.0%" from a job object (the epoch shown counts from 1). */
static const char *fmt_progress(json_t *j, char *buf, size_t n)
{
    long long ep = integer(j, "epoch", -1), eps = integer(j, "epochs", -1);
    long long it = integer(j, "iteration", -1), tot = integer(j, "total_steps", -1);
    char e[48] = "-", s[64] = "-";
    if (ep >= 0 && eps > 0)
        snprintf(e, sizeof e, "%lld/%lld", ep + 1 > eps ? eps : ep + 1, eps);
    if (it >= 0 && tot > 0)
        snprintf(s, sizeof s, "%lld/%lld", it, tot);
    else if (it >= 0)
        snprintf(s, sizeof s, "%lld", it);
    double p = num(j, "progress");
    snprintf(buf, n, "%-9s %-13s %5.1f%%", e, s, isfinite(p) ? p * 100 : 0.0);
    return buf;
}

/* Appends "/" + s percent-escaped (an id or name as one path segment). */
static void path_seg(char *path, size_t n, const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    size_t have = strlen(path);
    snprintf(path + have, n - have, "/%s", e ? e : "");
    curl_free(e);
}

/* ------------------------------------------------------------------ commands */

static void print_status(const struct cli_remote *o, json_t *j)
{
    char d[32];
    json_t *jobs = json_object_get(j, "jobs");
    printf("coordinator %s at %s (protocol %lld), up %s\n", str(j, "version"), o->url,
           integer(j, "protocol", 0), fmt_duration(num(j, "uptime_seconds"), d, sizeof d));
    printf("jobs      %lld pending, %lld running, %lld restarting, %lld succeeded, "
           "%lld failed, %lld cancelled\n",
           integer(jobs, "PENDING", 0), integer(jobs, "RUNNING", 0), integer(jobs, "RESTARTING", 0),
           integer(jobs, "SUCCEEDED", 0), integer(jobs, "FAILED", 0),
           integer(jobs, "CANCELLED", 0));
    printf("workers   %lld live\n", integer(j, "workers", 0));
    printf("models    %lld versions of %lld models\n", integer(j, "models", 0),
           integer(j, "model_names", 0));
}

int cli_status(const struct cli_remote *o, const char *arg)
{
    (void)arg;
    return call_and_print(o, &(struct call){.method = "GET", .path = "/v1/status", .ok = 200},
                          "status", print_status);
}

static void print_jobs(const struct cli_remote *o, json_t *answer)
{
    json_t *jobs = json_object_get(answer, "jobs");
    if (json_array_size(jobs) == 0) {
        printf("no jobs%s%s\n", o->state ? " in state " : "", o->state ? o->state : "");
        return;
    }
    printf("%-11s %-20s %-10s %-9s %-13s %6s  %s\n", "ID", "NAME", "STATE", "EPOCH", "STEP", "DONE",
           "UPDATED");
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        char p[96], t[32];
        printf("%-11s %-20.20s %-10s %s  %s\n", str(j, "id"), str(j, "name"), str(j, "state"),
               fmt_progress(j, p, sizeof p), fmt_time(num(j, "updated"), t, sizeof t));
    }
}

int cli_jobs(const struct cli_remote *o, const char *arg)
{
    (void)arg;
    char path[512] = "/v1/jobs";
    if (o->state) {
        char *e = curl_easy_escape(NULL, o->state, 0);
        snprintf(path, sizeof path, "/v1/jobs?state=%s", e ? e : "");
        curl_free(e);
    }
    return call_and_print(o,
                          &(struct call){.method = "GET", .path = path, .ok = 200, .list = "jobs"},
                          "jobs", print_jobs);
}

static void show_job(const struct cli_remote *o, json_t *j)
{
    (void)o;
    char b1[96], b2[32], b3[32], b4[32];
    printf("%s  %s  %s\n", str(j, "id"), str(j, "name"), str(j, "state"));
    if (json_is_string(json_object_get(j, "message")))
        printf("message    %s\n", str(j, "message"));
    printf("progress   %s", fmt_progress(j, b1, sizeof b1));
    if (isfinite(num(j, "eta_seconds")))
        printf("  ETA %s", fmt_duration(num(j, "eta_seconds"), b2, sizeof b2));
    printf("\n");
    if (json_is_true(json_object_get(j, "launch")))
        printf("launch     mpirun -np %lld on the coordinator's host, %lld restart(s)\n",
               integer(j, "np", 0), integer(j, "restarts", 0));
    else
        printf("launch     by the user (%lld rank(s) registered), %lld restart(s)\n",
               integer(j, "np", 0), integer(j, "restarts", 0));
    printf("times      created %s, started %s, updated %s, finished %s\n",
           fmt_time(num(j, "created"), b2, sizeof b2), fmt_time(num(j, "started"), b3, sizeof b3),
           fmt_time(num(j, "updated"), b4, sizeof b4), fmt_time(num(j, "finished"), b1, sizeof b1));
    if (json_is_true(json_object_get(j, "cancel_requested")))
        printf("cancel     requested\n");
    if (json_is_string(json_object_get(j, "resume_from")))
        printf("resume     %s\n", str(j, "resume_from"));
    json_t *model = json_object_get(j, "model");
    if (json_is_object(model))
        printf("model      %s@%lld\n", str(model, "name"), integer(model, "version", 0));

    size_t i;
    json_t *x;
    json_t *ranks = json_object_get(j, "ranks");
    if (json_array_size(ranks)) {
        printf("ranks      %-5s %-20s %-8s %-8s %s\n", "RANK", "HOST", "PID", "STEP", "HEARD");
        json_array_foreach(ranks, i, x)
        {
            printf("           %-5lld %-20.20s %-8lld %-8lld %.1f s ago\n", integer(x, "rank", -1),
                   str(x, "host"), integer(x, "pid", -1), integer(x, "step", -1),
                   num(x, "seconds_since_heartbeat"));
        }
    }
    json_t *metrics = json_object_get(j, "metrics");
    if (json_object_size(metrics)) {
        const char *k;
        printf("metrics    (latest)\n");
        json_object_foreach(metrics, k, x)
        {
            printf("           %-18s %-12.6g step %lld\n", k, num(x, "value"),
                   integer(x, "step", -1));
        }
    }
    json_t *ckpts = json_object_get(j, "checkpoints");
    size_t nc = json_array_size(ckpts);
    if (nc) {
        printf("checkpoints %zu, newest:\n", nc);
        for (i = nc > 3 ? nc - 3 : 0; i < nc; i++) {
            x = json_array_get(ckpts, i);
            printf("           iteration %-8lld epoch %-4lld %s\n", integer(x, "iteration", -1),
                   integer(x, "epoch", -1), str(x, "path"));
        }
    }
    json_t *events = json_object_get(j, "events");
    size_t ne = json_array_size(events);
    if (ne) {
        printf("events     (last %zu)\n", ne > 10 ? (size_t)10 : ne);
        for (i = ne > 10 ? ne - 10 : 0; i < ne; i++) {
            x = json_array_get(events, i);
            printf("           %s %-10s %s\n", fmt_time(num(x, "time"), b2, sizeof b2),
                   str(x, "kind"), str(x, "message"));
        }
    }
    char *spec = json_dumps(json_object_get(j, "spec"), JSON_COMPACT | JSON_SORT_KEYS);
    if (spec)
        printf("spec       %s\n", spec);
    free(spec);
}

int cli_job_show(const struct cli_remote *o, const char *id)
{
    char path[1024] = "/v1/jobs";
    path_seg(path, sizeof path, id);
    return call_and_print(o, &(struct call){.method = "GET", .path = path, .ok = 200}, id,
                          show_job);
}

/* The whole of a file (or stdin for "-"), at most limit bytes (the coordinator's, ud_limits.h);
 * NULL (printed) when it cannot be read or is larger. The caller frees. */
static char *read_body(const char *file, size_t limit, size_t *len)
{
    struct ud_err e = {0};
    char *buf = NULL;
    int rc = ud_file_read(strcmp(file, "-") == 0 ? "/dev/stdin" : file, limit, &buf, len, &e);
    if (rc == UD_ELIMIT)
        fprintf(stderr, "updraft: %s: over the coordinator's limit of %zu bytes\n", file, limit);
    else if (rc)
        fprintf(stderr, "updraft: %s\n", e.msg);
    return rc ? NULL : buf;
}

static void print_submitted(const struct cli_remote *o, json_t *j)
{
    (void)o;
    printf("%s submitted: %s (see updraft job show %s)\n", str(j, "id"), str(j, "state"),
           str(j, "id"));
}

int cli_job_submit(const struct cli_remote *o, const char *file)
{
    size_t len;
    char *spec = read_body(file, UD_LIMIT_JOB_SPEC_BYTES, &len);
    if (!spec)
        return 1;
    int ret = call_and_print(
        o,
        &(struct call){.method = "POST", .path = "/v1/jobs", .ok = 201, .body = spec, .len = len},
        "job submit", print_submitted);
    free(spec);
    return ret;
}

static void print_job_cancelled(const struct cli_remote *o, json_t *j)
{
    (void)o;
    if (strcmp(str(j, "state"), "CANCELLED") == 0)
        printf("%s: CANCELLED\n", str(j, "id"));
    else
        printf("%s: cancel requested; the workers stop at their next step (state %s)\n",
               str(j, "id"), str(j, "state"));
}

int cli_job_cancel(const struct cli_remote *o, const char *id)
{
    char path[1024] = "/v1/jobs";
    path_seg(path, sizeof path, id);
    strncat(path, "/cancel", sizeof path - strlen(path) - 1);
    return call_and_print(o, &(struct call){.method = "POST", .path = path, .ok = 202},
                          "job cancel", print_job_cancelled);
}

static int terminal(const char *state)
{
    return strcmp(state, "SUCCEEDED") == 0 || strcmp(state, "FAILED") == 0 ||
           strcmp(state, "CANCELLED") == 0;
}

/* What waiting for a job or a federation does with each answer of a GET of it. */
struct waiter {
    const char *noun; /* names the id in messages: "" (a job) or "federation " */
    /* Shows the progress in j; 1 when j's state is final. */
    int (*step)(const struct cli_remote *o, const char *id, json_t *j, void *state);
    /* The last line for people once it is. */
    void (*done)(const struct cli_remote *o, const char *id, json_t *j);
    void *state;
};

/* GETs path every WAIT_INTERVAL until w->step says the state is final, through a coordinator
 * that does not answer or answers 5xx, until --timeout. Returns 0 only for SUCCEEDED. */
static int wait_until_final(const struct cli_remote *o, const char *path, const char *id,
                            const struct waiter *w)
{
    double deadline = o->timeout > 0 ? ud_clock_mono() + o->timeout : INFINITY;
    int unreachable = 0;
    for (;;) {
        struct reply r;
        int hr = http(o, "GET", path, NULL, 0, NULL, &r, 1);
        if (hr == HTTP_TLS_REFUSED)
            return 1;
        if (hr != 0) {
            if (!unreachable++)
                fprintf(stderr, "updraft: %s does not answer; still waiting\n", o->url);
        } else if (r.code == 200 && json_is_object(r.json)) {
            unreachable = 0;
            const char *state = str(r.json, "state");
            if (w->step(o, id, r.json, w->state)) {
                int ok = strcmp(state, "SUCCEEDED") == 0;
                if (o->json)
                    print_json(&r);
                else
                    w->done(o, id, r.json);
                if (!ok)
                    fprintf(stderr, "updraft: %s%s ended %s\n", w->noun, id, state);
                reply_free(&r);
                return ok ? 0 : 1;
            }
        } else if (r.code / 100 != 5) { /* 404 and the like: waiting will not help */
            int ret = server_error(o, &r, id);
            reply_free(&r);
            return ret;
        }
        reply_free(&r);
        double left = deadline - ud_clock_mono();
        if (left <= 0) {
            fprintf(stderr, "updraft: timed out after %g s waiting for %s%s\n", o->timeout, w->noun,
                    id);
            return 1;
        }
        usleep((useconds_t)((left < WAIT_INTERVAL ? left : WAIT_INTERVAL) * 1e6));
    }
}

/* A line per change of the job's state or progress (last: the line printed before). */
static int job_step(const struct cli_remote *o, const char *id, json_t *j, void *last)
{
    const char *state = str(j, "state");
    char line[256], p[96];
    snprintf(line, sizeof line, "%s %-10s %s", id, state, fmt_progress(j, p, sizeof p));
    if (!o->json && strcmp(line, last) != 0) {
        printf("%s\n", line);
        fflush(stdout);
        snprintf(last, 256, "%s", line);
    }
    return terminal(state);
}

static void job_done(const struct cli_remote *o, const char *id, json_t *j)
{
    (void)o;
    if (json_is_string(json_object_get(j, "message")))
        printf("%s: %s\n", id, str(j, "message"));
}

int cli_job_wait(const struct cli_remote *o, const char *id)
{
    char path[1024] = "/v1/jobs", last[256] = "";
    path_seg(path, sizeof path, id);
    return wait_until_final(o, path, id, &(struct waiter){"", job_step, job_done, last});
}

static void print_models(const struct cli_remote *o, json_t *answer)
{
    (void)o;
    json_t *models = json_object_get(answer, "models");
    if (json_array_size(models) == 0) {
        printf("no models yet\n");
        return;
    }
    printf("%-24s %8s %6s %10s  %-19s  %s\n", "NAME", "VERSIONS", "LATEST", "SIZE", "CREATED",
           "TEST ACCURACY");
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m)
    {
        json_t *l = json_object_get(m, "latest");
        char sz[32], t[32], acc[32] = "-";
        double a = num(json_object_get(l, "metrics"), "test_accuracy");
        if (isfinite(a))
            snprintf(acc, sizeof acc, "%.4f", a);
        printf("%-24.24s %8lld %6lld %10s  %-19s  %s\n", str(m, "name"), integer(m, "versions", 0),
               integer(l, "version", 0), fmt_size(num(l, "size"), sz, sizeof sz),
               fmt_time(num(l, "created"), t, sizeof t), acc);
    }
}

int cli_models(const struct cli_remote *o, const char *arg)
{
    (void)arg;
    return call_and_print(
        o, &(struct call){.method = "GET", .path = "/v1/models", .ok = 200, .list = "models"},
        "models", print_models);
}

/* NAME[@V] → /v1/models/NAME/versions/V (V "latest" when absent). */
static int model_path(const char *ref, char *path, size_t n)
{
    char name[256];
    const char *at = strrchr(ref, '@');
    const char *v = at ? at + 1 : "latest";
    size_t nl = at ? (size_t)(at - ref) : strlen(ref);
    if (nl == 0 || nl >= sizeof name || !*v) {
        fprintf(stderr, "updraft: '%s': expected NAME or NAME@VERSION\n", ref);
        return 2;
    }
    memcpy(name, ref, nl);
    name[nl] = '\0';
    snprintf(path, n, "/v1/models");
    path_seg(path, n, name);
    strncat(path, "/versions", n - strlen(path) - 1);
    path_seg(path, n, v);
    return 0;
}

static void print_model(const struct cli_remote *o, json_t *j)
{
    char sz[32], t[32];
    printf("%s@%lld  %s  created %s\n", str(j, "name"), integer(j, "version", 0),
           fmt_size(num(j, "size"), sz, sizeof sz), fmt_time(num(j, "created"), t, sizeof t));
    printf("sha256     %s\n", str(j, "sha256"));
    printf("job        %s\n", str(j, "job"));
    printf("file       %s%s\n", o->url, str(j, "file"));
    const char *keys[] = {"metrics", "lineage", "metadata"};
    for (int i = 0; i < 3; i++) {
        char *s =
            json_dumps(json_object_get(j, keys[i]),
                       JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6) | JSON_ENCODE_ANY);
        printf("%-10s %s\n", keys[i], s ? s : "null");
        free(s);
    }
}

int cli_model_show(const struct cli_remote *o, const char *ref)
{
    char path[1024];
    int ret = model_path(ref, path, sizeof path);
    if (ret)
        return ret;
    return call_and_print(o, &(struct call){.method = "GET", .path = path, .ok = 200}, ref,
                          print_model);
}

/* Hex SHA-256 of a file; 0 or -1. */
int cli_model_pull(const struct cli_remote *o, const char *ref)
{
    if (!o->out) {
        fprintf(stderr, "updraft: model pull needs --out FILE\n");
        return 2;
    }
    char path[1024];
    int ret = model_path(ref, path, sizeof path);
    if (ret)
        return ret;
    /* The metadata first: it pins "latest" to a version and gives the hash to check. */
    struct reply meta;
    if (http(o, "GET", path, NULL, 0, NULL, &meta, 0))
        return 1;
    if (meta.code != 200 || !json_is_object(meta.json)) {
        ret = server_error(o, &meta, ref);
        reply_free(&meta);
        return ret;
    }
    const char *want = str(meta.json, "sha256");
    char tmp[4096 + 16], got[65];
    snprintf(tmp, sizeof tmp, "%s.part", o->out);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "updraft: %s: %s\n", tmp, strerror(errno));
        reply_free(&meta);
        return 1;
    }
    struct reply r;
    int fail = http(o, "GET", str(meta.json, "file"), NULL, 0, f, &r, 0);
    int werr = fclose(f) != 0;
    if (fail || r.code != 200) {
        ret = fail ? 1 : server_error(o, &r, ref);
    } else if (werr || ud_file_sha256(tmp, got, NULL) != 0) {
        fprintf(stderr, "updraft: %s: cannot write\n", tmp);
        ret = 1;
    } else if (strcmp(got, want) != 0) {
        fprintf(stderr, "updraft: %s: downloaded bytes hash to %s, the registry says %s\n", ref,
                got, want);
        ret = 1;
    } else if (rename(tmp, o->out) != 0) {
        fprintf(stderr, "updraft: %s: %s\n", o->out, strerror(errno));
        ret = 1;
    }
    if (ret)
        unlink(tmp);
    else if (o->json)
        print_json(&meta);
    else {
        char sz[32];
        printf("%s@%lld (%s, sha256 %.16s... verified) -> %s\n", str(meta.json, "name"),
               integer(meta.json, "version", 0), fmt_size(num(meta.json, "size"), sz, sizeof sz),
               want, o->out);
    }
    reply_free(&r);
    reply_free(&meta);
    return ret;
}

/* ------------------------------------------------------------------ federations */

static void print_pushed(const struct cli_remote *o, json_t *j)
{
    (void)o;
    printf("registered %s version %lld (sha256 %s)\n", str(j, "name"), integer(j, "version", 0),
           str(j, "sha256"));
}

int cli_model_push(const struct cli_remote *o, const char *file)
{
    if (!o->name || !*o->name) {
        fprintf(stderr, "updraft: model push needs --name NAME (the registry name)\n");
        return 2;
    }
    size_t len;
    char *bytes = read_body(file, UD_LIMIT_MODEL_PUSH_BYTES, &len);
    if (!bytes)
        return 1;
    char path[1024] = "/v1/models";
    path_seg(path, sizeof path, o->name);
    strncat(path, "/versions", sizeof path - strlen(path) - 1);
    struct call c = {.method = "POST",
                     .path = path,
                     .ok = 201,
                     .body = bytes,
                     .ctype = "application/octet-stream",
                     .len = len};
    int ret = call_and_print(o, &c, "model push", print_pushed);
    free(bytes);
    return ret;
}

/* "12s ago", "3m05s ago", or "never" for a device not heard from. */
static const char *fmt_age(double t, char *buf, size_t n)
{
    if (!isfinite(t) || t <= 0)
        return "never";
    char d[32];
    double age = ud_clock_wall() - t; /* t: the server's wall clock */
    snprintf(buf, n, "%s ago", fmt_duration(age < 0 ? 0 : age, d, sizeof d));
    return buf;
}

static void print_devices(const struct cli_remote *o, json_t *answer)
{
    (void)o;
    json_t *devs = json_object_get(answer, "devices");
    if (json_array_size(devs) == 0) {
        printf("no devices enrolled (updraft devices add)\n");
        return;
    }
    printf("%-6s %-24s %-14s %8s  %s\n", "ID", "NAME", "LAST SEEN", "UPDATES", "REVOKED");
    size_t i;
    json_t *d;
    json_array_foreach(devs, i, d)
    {
        char a[48];
        printf("%-6lld %-24.24s %-14s %8lld  %s\n", integer(d, "id", 0), str(d, "name"),
               fmt_age(num(d, "last_seen"), a, sizeof a), integer(d, "updates", 0),
               json_is_true(json_object_get(d, "revoked")) ? "yes" : "no");
    }
}

int cli_devices(const struct cli_remote *o, const char *arg)
{
    (void)arg;
    return call_and_print(
        o, &(struct call){.method = "GET", .path = "/v1/devices", .ok = 200, .list = "devices"},
        "devices", print_devices);
}

/* A secrets file made beside its final name: created 0600 before any device is enrolled (so
 * that a directory we cannot write to fails before the tokens exist), renamed into place once
 * complete and flushed. */
struct secret_file {
    char tmp[4096 + 16];
    const char *path;
    FILE *f;
};

static int secret_open(struct secret_file *s, const char *path)
{
    s->path = path;
    snprintf(s->tmp, sizeof s->tmp, "%s.XXXXXX", path);
    int fd = mkstemp(s->tmp); /* 0600 whatever the umask */
    if (fd < 0 || fchmod(fd, 0600) != 0 || !(s->f = fdopen(fd, "w"))) {
        fprintf(stderr, "updraft: --out %s: %s\n", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(s->tmp);
        }
        return -1;
    }
    return 0;
}

/* Drops the file (NULL-safe after a close). */
static void secret_abort(struct secret_file *s)
{
    if (s->f)
        fclose(s->f);
    s->f = NULL;
    unlink(s->tmp);
}

static int secret_commit(struct secret_file *s)
{
    int bad = fflush(s->f) != 0 || fsync(fileno(s->f)) != 0;
    bad = fclose(s->f) != 0 || bad;
    s->f = NULL;
    if (bad || rename(s->tmp, s->path) != 0) {
        int err = errno;
        unlink(s->tmp);
        errno = err;
        return -1;
    }
    return 0;
}

/* The enrolled devices of a POST /v1/devices answer: its "devices" array, or the answer
 * itself (one device, enrolled without "count") as an array of one; the caller decrefs. */
static json_t *enrolled(json_t *answer)
{
    json_t *a = json_object_get(answer, "devices");
    if (json_is_array(a))
        return json_incref(a);
    if (json_is_object(answer) && json_is_string(json_object_get(answer, "token"))) {
        a = json_array();
        json_array_append(a, answer);
        return a;
    }
    return NULL;
}

int cli_devices_add(const struct cli_remote *o, const char *arg)
{
    (void)arg;
    json_t *req = json_object();
    if (o->name)
        json_object_set_new(req, "name", json_string(o->name));
    if (o->count)
        json_object_set_new(req, "count", json_integer(o->count));
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!body) {
        fprintf(stderr, "updraft: out of memory\n");
        return 1;
    }
    struct secret_file sf = {0};
    if (o->out && secret_open(&sf, o->out) != 0) {
        free(body);
        return 1;
    }
    struct reply r;
    int fail = http(o, "POST", "/v1/devices", body, strlen(body), NULL, &r, 0);
    free(body);
    if (fail) {
        if (o->out)
            secret_abort(&sf);
        return 1;
    }
    int ret = 0;
    json_t *devs = r.code == 201 ? enrolled(r.json) : NULL;
    size_t i;
    json_t *d;
    if (!devs) {
        if (o->out)
            secret_abort(&sf);
        ret = server_error(o, &r, "devices add");
    } else if (o->out) {
        json_array_foreach(devs, i, d)
        {
            fprintf(sf.f, "%lld %s\n", integer(d, "id", 0), str(d, "token"));
        }
        if (secret_commit(&sf) != 0) {
            fprintf(stderr,
                    "updraft: %s: %s: the %zu device(s) were enrolled but their tokens are "
                    "lost; enrol new ones\n",
                    o->out, strerror(errno), json_array_size(devs));
            ret = 1;
        } else if (o->json) { /* the answer without its secrets */
            json_array_foreach(devs, i, d)
            {
                json_object_del(d, "token");
            }
            char *s = json_dumps(r.json, JSON_COMPACT);
            printf("%s\n", s ? s : "{}");
            free(s);
        } else {
            json_array_foreach(devs, i, d)
            {
                printf("enrolled device %lld (%s)\n", integer(d, "id", 0), str(d, "name"));
            }
            printf("%zu token(s) written to %s (ID TOKEN per line, mode 0600)\n",
                   json_array_size(devs), o->out);
        }
    } else if (o->json)
        ret = print_json(&r);
    else {
        printf("%-6s %-24s %s\n", "ID", "NAME", "TOKEN (shown once: the coordinator keeps a hash)");
        json_array_foreach(devs, i, d)
        {
            printf("%-6lld %-24s %s\n", integer(d, "id", 0), str(d, "name"), str(d, "token"));
        }
    }
    json_decref(devs);
    reply_free(&r);
    return ret;
}

static void print_revoked(const struct cli_remote *o, json_t *j)
{
    (void)o;
    printf("device %lld revoked: its token is refused from now on\n", integer(j, "id", 0));
}

int cli_devices_revoke(const struct cli_remote *o, const char *id)
{
    char path[1024] = "/v1/devices";
    path_seg(path, sizeof path, id);
    strncat(path, "/revoke", sizeof path - strlen(path) - 1);
    return call_and_print(o, &(struct call){.method = "POST", .path = path, .ok = 200},
                          "devices revoke", print_revoked);
}

static void print_fed_started(const struct cli_remote *o, json_t *j)
{
    (void)o;
    long long id = integer(j, "id", 0);
    printf("%lld started: %s, model %s from version %lld (see updraft fed show %lld)\n", id,
           str(j, "name"), str(j, "model"), integer(j, "base_version", 0), id);
}

int cli_fed_start(const struct cli_remote *o, const char *file)
{
    size_t len;
    char *spec = read_body(file, UD_LIMIT_FED_SPEC_BYTES, &len);
    if (!spec)
        return 1;
    int ret = call_and_print(
        o,
        &(struct call){
            .method = "POST", .path = "/v1/federations", .ok = 201, .body = spec, .len = len},
        "fed start", print_fed_started);
    free(spec);
    return ret;
}

static void print_feds(const struct cli_remote *o, json_t *answer)
{
    (void)o;
    json_t *feds = json_object_get(answer, "federations");
    if (json_array_size(feds) == 0) {
        printf("no federations\n");
        return;
    }
    printf("%-5s %-20s %-10s %-20s %-13s %-11s %s\n", "ID", "NAME", "STATE", "MODEL", "VERSION",
           "ROUND", "UPDATED");
    size_t i;
    json_t *f;
    json_array_foreach(feds, i, f)
    {
        char v[48], k[48], t[32];
        snprintf(v, sizeof v, "%lld -> %lld", integer(f, "base_version", 0),
                 integer(f, "current_version", 0));
        snprintf(k, sizeof k, "%lld/%lld", integer(f, "round", 0), integer(f, "rounds", 0));
        printf("%-5lld %-20.20s %-10s %-20.20s %-13s %-11s %s\n", integer(f, "id", 0),
               str(f, "name"), str(f, "state"), str(f, "model"), v, k,
               fmt_time(num(f, "updated"), t, sizeof t));
    }
}

int cli_fed_list(const struct cli_remote *o, const char *arg)
{
    (void)arg;
    return call_and_print(
        o,
        &(struct call){
            .method = "GET", .path = "/v1/federations", .ok = 200, .list = "federations"},
        "fed list", print_feds);
}

/* "closed=1,stale=2" from a round's "rejected" object; "-" when none. */
static const char *fmt_rejected(json_t *rej, char *buf, size_t n)
{
    const char *k;
    json_t *v;
    size_t have = 0;
    buf[0] = '\0';
    json_object_foreach(rej, k, v)
    {
        if (have < n)
            have += (size_t)snprintf(buf + have, n - have, "%s%s=%lld", have ? "," : "", k,
                                     (long long)json_integer_value(v));
    }
    return buf[0] ? buf : "-";
}

static const char *fmt_version(json_t *o, const char *key, char *buf, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    return buf;
}

static const char *fmt_acc(json_t *o, const char *key, char *buf, size_t n)
{
    double a = num(o, key);
    if (!isfinite(a))
        return "-";
    snprintf(buf, n, "%.4f", a);
    return buf;
}

static int round_done(const char *state)
{
    return strcmp(state, "PUBLISHED") == 0 || strcmp(state, "FAILED") == 0 ||
           strcmp(state, "CANCELLED") == 0;
}

static void show_federation(const struct cli_remote *o, json_t *f)
{
    (void)o;
    char b1[32], b2[32], b3[32], b4[32];
    json_t *spec = json_object_get(f, "spec");
    printf("%lld  %s  %s\n", integer(f, "id", 0), str(f, "name"), str(f, "state"));
    if (json_is_string(json_object_get(f, "message")))
        printf("message    %s\n", str(f, "message"));
    printf("model      %s  version %lld -> %lld\n", str(f, "model"), integer(f, "base_version", 0),
           integer(f, "current_version", 0));
    printf("round      %lld of %lld  (%lld per round, at least %lld, deadline %s)\n",
           integer(f, "round", 0), integer(f, "rounds", 0), integer(spec, "clients_per_round", 0),
           integer(spec, "min_clients", 0),
           fmt_duration(num(spec, "round_deadline"), b1, sizeof b1));
    printf("times      created %s, updated %s, finished %s\n",
           fmt_time(num(f, "created"), b2, sizeof b2), fmt_time(num(f, "updated"), b3, sizeof b3),
           fmt_time(num(f, "finished"), b4, sizeof b4));
    char *s = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    if (s)
        printf("spec       %s\n", s);
    free(s);
    json_t *rounds = json_object_get(f, "rounds_detail");
    if (!json_array_size(rounds)) {
        printf("no round yet\n");
        return;
    }
    printf("%5s %-10s %7s %8s %-24s %7s %8s  %s\n", "ROUND", "STATE", "SAMPLED", "ACCEPTED",
           "REJECTED", "VERSION", "EVAL ACC", "MESSAGE");
    size_t i;
    json_t *r;
    json_array_foreach(rounds, i, r)
    {
        char rej[256], v[32], a[32];
        const char *state = str(r, "state");
        const char *msg = str(r, "message");
        char open[96];
        if (strcmp(state, "OPEN") == 0 && !json_is_string(json_object_get(r, "message"))) {
            double left = num(r, "deadline") - ud_clock_wall();
            snprintf(open, sizeof open, "deadline in %s",
                     fmt_duration(left < 0 ? 0 : left, b1, sizeof b1));
            msg = open;
        } else if (strcmp(state, "WAITING") == 0 && !json_is_string(json_object_get(r, "message")))
            msg = "waiting for available devices";
        printf("%5lld %-10s %7zu %8lld %-24s %7s %8s  %s\n", integer(r, "number", 0), state,
               json_array_size(json_object_get(r, "participants")), integer(r, "accepted", 0),
               fmt_rejected(json_object_get(r, "rejected"), rej, sizeof rej),
               fmt_version(r, "published_version", v, sizeof v),
               fmt_acc(r, "eval_accuracy", a, sizeof a), msg);
    }
}

static void fed_path(char *path, size_t n, const char *id, const char *tail)
{
    snprintf(path, n, "/v1/federations");
    path_seg(path, n, id);
    if (tail)
        strncat(path, tail, n - strlen(path) - 1);
}

int cli_fed_show(const struct cli_remote *o, const char *id)
{
    char path[1024];
    fed_path(path, sizeof path, id, NULL);
    return call_and_print(o, &(struct call){.method = "GET", .path = path, .ok = 200}, id,
                          show_federation);
}

static void print_fed_cancelled(const struct cli_remote *o, json_t *j)
{
    (void)o;
    printf("%lld: %s\n", integer(j, "id", 0), str(j, "state"));
}

int cli_fed_cancel(const struct cli_remote *o, const char *id)
{
    char path[1024];
    fed_path(path, sizeof path, id, "/cancel");
    return call_and_print(o, &(struct call){.method = "POST", .path = path, .ok = 202},
                          "fed cancel", print_fed_cancelled);
}

/* Prints the rounds of f that finished after round *done (they finish in order), moving
 * *done on: each finished round once, those that finished before the wait began first. */
static void fed_progress(json_t *f, long long *done)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(f, "rounds_detail"), i, r)
    {
        long long k = integer(r, "number", 0);
        if (k <= *done || !round_done(str(r, "state")))
            continue;
        char v[32], a[32];
        printf("%lld round %lld/%lld %-10s version %-6s eval accuracy %s\n", integer(f, "id", 0), k,
               integer(f, "rounds", 0), str(r, "state"),
               fmt_version(r, "published_version", v, sizeof v),
               fmt_acc(r, "eval_accuracy", a, sizeof a));
        fflush(stdout);
        *done = k;
    }
}

/* With --progress, a line per round finished since the last answer (done: the last one). */
static int fed_step(const struct cli_remote *o, const char *id, json_t *f, void *done)
{
    (void)id;
    if (o->progress && !o->json)
        fed_progress(f, done);
    return strcmp(str(f, "state"), "RUNNING") != 0;
}

static void fed_done(const struct cli_remote *o, const char *id, json_t *f)
{
    (void)o;
    int has = json_is_string(json_object_get(f, "message"));
    printf("%s: %s%s%s\n", id, str(f, "state"), has ? ": " : "", has ? str(f, "message") : "");
}

int cli_fed_wait(const struct cli_remote *o, const char *id)
{
    char path[1024];
    fed_path(path, sizeof path, id, NULL);
    long long done = 0;
    return wait_until_final(o, path, id,
                            &(struct waiter){"federation ", fed_step, fed_done, &done});
}

/* ------------------------------------------------------------------ entry */

static int read_token_file(const char *file, char *buf, size_t n)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "updraft: --token-file %s: %s\n", file, strerror(errno));
        return 2;
    }
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = '\0';
    return 0;
}

/* Leading and trailing white space off, in place. */
static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t'))
        s[--n] = '\0';
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
        i++;
    memmove(s, s + i, n - i + 1);
}

/* Whether opt takes a value: 1, 0, or -1 when no remote command knows it. */
static int remote_opt_takes(const char *opt)
{
    int takes;
    if (cli_opt_in(CLI_REMOTE_OPTS, opt, &takes))
        return takes;
    for (const struct cli_cmd *c = cli_commands; c->name || c->help; c++)
        if (c->remote && cli_opt_in(c->opts, opt, &takes))
            return takes;
    return -1;
}

/* "fed" -> "fed start SPEC.json, fed list, fed show ID, ...": a command's forms; NULL -> the
 * remote command words, "status, jobs, job, ...". For messages. */
static void forms_of(const char *name, char *buf, size_t n)
{
    size_t have = 0;
    const char *last = "";
    buf[0] = '\0';
    for (const struct cli_cmd *c = cli_commands; c->name || c->help; c++) {
        if (!c->remote || have >= n || (name && strcmp(c->name, name) != 0) ||
            (!name && strcmp(c->name, last) == 0))
            continue;
        last = c->name;
        if (!name)
            have += (size_t)snprintf(buf + have, n - have, "%s%s", have ? ", " : "", c->name);
        else
            have += (size_t)snprintf(buf + have, n - have, "%s%s%s%s%s%s", have ? ", " : "",
                                     c->name, c->sub ? " " : "", c->sub ? c->sub : "",
                                     c->arg ? " " : "", c->arg ? c->arg : "");
    }
}

/* 1 if name is a remote command's word. */
static int remote_command(const char *name)
{
    for (const struct cli_cmd *c = cli_commands; c->name || c->help; c++)
        if (c->remote && strcmp(c->name, name) == 0)
            return 1;
    return 0;
}

/* The row of the command in words[0..n), or NULL (message printed). */
static const struct cli_cmd *find_row(const char **words, int n)
{
    char forms[512];
    const struct cli_cmd *bare = NULL;
    int known = 0;
    for (const struct cli_cmd *c = cli_commands; c->name || c->help; c++) {
        if (!c->remote || strcmp(c->name, words[0]) != 0)
            continue;
        known = 1;
        if (c->sub && n > 1 && strcmp(c->sub, words[1]) == 0)
            return c;
        if (!c->sub)
            bare = c;
    }
    if (bare)
        return bare;
    if (!known) {
        cli_usage_error("unknown command '%s'", words[0]);
        return NULL;
    }
    forms_of(words[0], forms, sizeof forms);
    cli_usage_error("%s%s%s: use %s", words[0], n > 1 ? " " : "", n > 1 ? words[1] : "", forms);
    return NULL;
}

/* One option of the command's row (or of every remote command) into o. Returns 0 or 2. */
static int set_option(struct cli_remote *o, const char *a, const char *v, const char **url,
                      const char **token, const char **token_file)
{
    struct ud_err e = {0};
    if (strcmp(a, "--json") == 0)
        o->json = 1;
    else if (strcmp(a, "--url") == 0)
        *url = v;
    else if (strncmp(a, "--url=", 6) == 0)
        *url = a + 6;
    else if (strcmp(a, "--token") == 0) {
        *token = v;
        *token_file = NULL;
    } else if (strcmp(a, "--token-file") == 0)
        *token_file = v;
    else if (strcmp(a, "--cacert") == 0)
        o->cacert = v;
    else if (strcmp(a, "--pin") == 0)
        o->pin = v;
    else if (strcmp(a, "--state") == 0)
        o->state = v;
    else if (strcmp(a, "--out") == 0)
        o->out = v;
    else if (strcmp(a, "--name") == 0)
        o->name = v;
    else if (strcmp(a, "--progress") == 0)
        o->progress = 1;
    else if (strcmp(a, "--count") == 0) {
        if (ud_num_ll("--count", v, 1, INT_MAX, &o->count, &e))
            return cli_usage_error("%s", e.msg);
    } else if (strcmp(a, "--timeout") == 0) {
        if (ud_num_double("--timeout", v, 0.001, 1e9, &o->timeout, &e))
            return cli_usage_error("%s (seconds)", e.msg);
    }
    return 0;
}

/* The URL, the token and the TLS options from the options and the environment. Returns 0 or
 * 2. */
static int connect_setup(struct cli_remote *o, const char *url, const char *token,
                         const char *token_file)
{
    snprintf(o->url, sizeof o->url, "%s", url && *url ? url : DEFAULT_URL);
    for (size_t n = strlen(o->url); n && o->url[n - 1] == '/';)
        o->url[--n] = '\0';
    if (token_file) {
        int rc = read_token_file(token_file, o->token, sizeof o->token);
        if (rc)
            return rc;
    } else if (token) {
        snprintf(o->token, sizeof o->token, "%s", token);
    }
    trim(o->token);
    if (o->cacert && !*o->cacert)
        o->cacert = NULL;
    if (o->pin && !*o->pin)
        o->pin = NULL;
    if ((o->cacert || o->pin) && strncasecmp(o->url, "https://", 8) != 0)
        return cli_usage_error(
            "--cacert and --pin verify an https:// coordinator; %s is plain HTTP", o->url);
    if (o->cacert && access(o->cacert, R_OK) != 0)
        return cli_usage_error("--cacert %s: not a readable file", o->cacert);
    if (ud_net_url_is_plain_remote(o->url))
        fprintf(stderr,
                "updraft: warning: %s is plain HTTP to a host that is not loopback: the token "
                "crosses the network unencrypted; use https://\n",
                o->url);
    return 0;
}

int cli_remote_main(int argc, char **argv)
{
    /* The command's words first (skipping the values of the options that take one), so that
     * its row says which options it takes. */
    const char *words[4];
    int nwords = 0, help = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int takes = a[0] == '-' && a[1] ? remote_opt_takes(a) : 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            help = 1;
        else if (takes > 0 && i + 1 >= argc)
            return cli_usage_error("%s needs a value", a);
        else if (a[0] == '-' && a[1])
            i += takes > 0;
        else if (nwords < 4)
            words[nwords++] = a;
        else
            return cli_usage_error("unexpected argument '%s'", a);
    }
    char forms[512];
    if (nwords == 0) {
        forms_of(NULL, forms, sizeof forms);
        return cli_usage_error("which command? %s", forms);
    }
    if (help && nwords == 1 && remote_command(words[0])) {
        printf("usage: updraft [--url URL] [--token T | --token-file F] [--cacert F] [--pin P] "
               "[--json]\n");
        cli_usage_of(stdout, words[0]);
        return 0;
    }
    const struct cli_cmd *cmd = find_row(words, nwords);
    if (!cmd)
        return 2;
    char cmdname[64];
    snprintf(cmdname, sizeof cmdname, "%s%s%s", cmd->name, cmd->sub ? " " : "",
             cmd->sub ? cmd->sub : "");
    if (help) {
        printf("usage: updraft [--url URL] [--token T | --token-file F] [--cacert F] [--pin P] "
               "[--json]\n");
        fputs(cmd->help, stdout);
        return 0;
    }

    struct cli_remote o = {0};
    const char *url = getenv("UPDRAFT_URL"), *token = getenv("UPDRAFT_TOKEN");
    /* $UPDRAFT_TOKEN_FILE when neither the token nor a file is given otherwise. */
    const char *token_file = token ? NULL : getenv("UPDRAFT_TOKEN_FILE");
    o.cacert = getenv("UPDRAFT_CACERT");
    o.pin = getenv("UPDRAFT_PIN");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1])
            continue;
        int takes = 0;
        if (!cli_opt_in(CLI_REMOTE_OPTS, a, &takes) && strncmp(a, "--url=", 6) != 0 &&
            !cli_opt_in(cmd->opts, a, &takes)) {
            fprintf(stderr, "updraft %s: unknown option %s (try updraft %s --help)\n", cmdname, a,
                    cmdname);
            return 2;
        }
        int rc = set_option(&o, a, takes ? argv[i + 1] : NULL, &url, &token, &token_file);
        if (rc)
            return rc;
        i += takes;
    }
    int fixed = cmd->sub ? 2 : 1; /* the command's own words */
    if (nwords != fixed + (cmd->arg != NULL)) {
        if (cmd->arg)
            return cli_usage_error("%s needs one argument, %s", cmdname, cmd->arg);
        return cli_usage_error("%s takes no argument", cmdname);
    }
    int rc = connect_setup(&o, url, token, token_file);
    if (rc)
        return rc;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sodium_init() < 0) {
        fprintf(stderr, "updraft: libsodium failed to initialise\n");
        return 1;
    }
    int ret = cmd->remote(&o, cmd->arg ? words[fixed] : NULL);
    curl_global_cleanup();
    return ret;
}

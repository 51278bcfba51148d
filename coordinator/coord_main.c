/*  coord_main.c — updraft-coordinator: the service workers and operators talk to.
 *
 *  One main thread owns the ZeroMQ ROUTER (the worker protocol, coord_workers.h), the one
 *  read-write SQLite connection and the job monitor (coord_jobs.h), ticked every 200 ms from
 *  the zmq_poll timeout. The REST API (coord_http.h) runs on libmicrohttpd's threads with
 *  connections of its own. SIGINT/SIGTERM stop the loop; the HTTP server is stopped and the
 *  database closed. Jobs' mpiruns are left running on purpose: they outlive the coordinator,
 *  and a restarted coordinator picks them up from the database.
 */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "coord_db.h"
#include "coord_fed.h"
#include "coord_http.h"
#include "coord_jobs.h"
#include "coord_log.h"
#include "coord_tls.h"
#include "coord_workers.h"
#include "coord_zap.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_net.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

#define PROG         "updraft-coordinator"
#define TICK_SECONDS 0.2

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

struct options {
    const char *state, *http, *zmq, *advertise, *token_file, *worker, *mpirun;
    const char *signing_key, *model_key;
    const char *tls_cert, *tls_key, *curve_secret, *curve_clients, *curve_worker_key;
    double heartbeat_timeout, restart_timeout, cancel_grace;
    int quiet, http_threads;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --state DIR [--http HOST:PORT|none] [--zmq ENDPOINT]\n"
            "       [--advertise ENDPOINT] [--token-file F] [--heartbeat-timeout S]\n"
            "       [--restart-timeout S] [--cancel-grace S] [--worker PATH] [--mpirun PATH]\n"
            "       [--http-threads N] [--signing-key F] [--model-key F]\n"
            "       [--tls-cert F --tls-key F] [--curve-secret F\n"
            "       [--curve-clients F|DIR] [--curve-worker-key F]] [--quiet]\n"
            "\n"
            "The updraft coordinator: workers register over ZeroMQ, operators use the REST API.\n"
            "  --state DIR            database (updraft.db), model store, job directories\n"
            "  --http HOST:PORT       REST API (default 127.0.0.1:8470; 'none': no REST API)\n"
            "  --zmq ENDPOINT         worker protocol (default tcp://*:8471)\n"
            "  --advertise ENDPOINT   what locally launched workers connect to (default: the\n"
            "                         bound --zmq endpoint with * as 127.0.0.1)\n"
            "  --token-file F         admin token for mutating REST calls (default: made once\n"
            "                         as DIR/admin.token)\n"
            "  --heartbeat-timeout S  silence before a RUNNING job is RESTARTING (default 10)\n"
            "  --restart-timeout S    RESTARTING this long becomes FAILED (default 300)\n"
            "  --cancel-grace S       a launched job has this long to stop after a cancel (30)\n"
            "  --worker PATH          updraft-worker for local launches (default: next to this\n"
            "                         program)\n"
            "  --mpirun PATH          mpirun for local launches (default: mpirun in PATH)\n"
            "  --signing-key F        Ed25519 key that signs every model version (default:\n"
            "                         DIR/signing.key, made on first start with signing.pub)\n"
            "  --model-key F          also encrypt every model version with this key\n"
            "                         (updraft keys generate --type model)\n"
            "  --tls-cert F, --tls-key F  serve the REST API over HTTPS (PEM certificate chain\n"
            "                         and its unencrypted private key)\n"
            "  --curve-secret F       CURVE-encrypt the worker link with this keypair\n"
            "                         (curve-secret key file; its public half is written to\n"
            "                         DIR/curve-server.pub for workers' --curve-server-key)\n"
            "  --curve-clients F|DIR  the workers' public keys allowed to connect (key lines,\n"
            "                         or a directory of *.pub files); others are refused\n"
            "  --curve-worker-key F   the keypair handed to the workers this coordinator\n"
            "                         launches (allowed implicitly)\n"
            "  --quiet                log warnings and errors only\n");
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, PROG ": %s\n", msg);
    exit(code);
}

static double parse_seconds(const char *opt, const char *s, double lo)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || v > 1e7)
        die(2, "%s: expected seconds >= %g, got '%s'", opt, lo, s);
    return v;
}

static void parse_args(int argc, char **argv, struct options *o)
{
    enum {
        O_STATE = 256,
        O_HTTP,
        O_ZMQ,
        O_ADV,
        O_TOKEN,
        O_HB,
        O_RESTART,
        O_GRACE,
        O_WORKER,
        O_MPIRUN,
        O_QUIET,
        O_THREADS,
        O_SIGNKEY,
        O_MODELKEY,
        O_HELP,
        O_TLS_CERT,
        O_TLS_KEY,
        O_CURVE_SECRET,
        O_CURVE_CLIENTS,
        O_CURVE_WORKER
    };
    static const struct option longs[] = {
        {"state", required_argument, 0, O_STATE},
        {"http", required_argument, 0, O_HTTP},
        {"zmq", required_argument, 0, O_ZMQ},
        {"advertise", required_argument, 0, O_ADV},
        {"token-file", required_argument, 0, O_TOKEN},
        {"heartbeat-timeout", required_argument, 0, O_HB},
        {"restart-timeout", required_argument, 0, O_RESTART},
        {"cancel-grace", required_argument, 0, O_GRACE},
        {"worker", required_argument, 0, O_WORKER},
        {"mpirun", required_argument, 0, O_MPIRUN},
        {"http-threads", required_argument, 0, O_THREADS},
        {"signing-key", required_argument, 0, O_SIGNKEY},
        {"model-key", required_argument, 0, O_MODELKEY},
        {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP},
        {"tls-cert", required_argument, 0, O_TLS_CERT},
        {"tls-key", required_argument, 0, O_TLS_KEY},
        {"curve-secret", required_argument, 0, O_CURVE_SECRET},
        {"curve-clients", required_argument, 0, O_CURVE_CLIENTS},
        {"curve-worker-key", required_argument, 0, O_CURVE_WORKER},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->http = "127.0.0.1:8470";
    o->zmq = "tcp://*:8471";
    o->mpirun = "mpirun";
    o->heartbeat_timeout = 10;
    o->restart_timeout = 300;
    o->cancel_grace = 30;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case O_STATE:
            o->state = optarg;
            break;
        case O_HTTP:
            o->http = optarg;
            break;
        case O_ZMQ:
            o->zmq = optarg;
            break;
        case O_ADV:
            o->advertise = optarg;
            break;
        case O_TOKEN:
            o->token_file = optarg;
            break;
        case O_HB:
            o->heartbeat_timeout = parse_seconds("--heartbeat-timeout", optarg, 0.1);
            break;
        case O_RESTART:
            o->restart_timeout = parse_seconds("--restart-timeout", optarg, 0.1);
            break;
        case O_GRACE:
            o->cancel_grace = parse_seconds("--cancel-grace", optarg, 0);
            break;
        case O_WORKER:
            o->worker = optarg;
            break;
        case O_MPIRUN:
            o->mpirun = optarg;
            break;
        case O_THREADS:
            o->http_threads = (int)parse_seconds("--http-threads", optarg, 1);
            break;
        case O_SIGNKEY:
            o->signing_key = optarg;
            break;
        case O_MODELKEY:
            o->model_key = optarg;
            break;
        case O_QUIET:
            o->quiet = 1;
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        case O_TLS_CERT:
            o->tls_cert = optarg;
            break;
        case O_TLS_KEY:
            o->tls_key = optarg;
            break;
        case O_CURVE_SECRET:
            o->curve_secret = optarg;
            break;
        case O_CURVE_CLIENTS:
            o->curve_clients = optarg;
            break;
        case O_CURVE_WORKER:
            o->curve_worker_key = optarg;
            break;
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        die(2, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->state || !*o->state)
        die(2, "--state DIR is required (the coordinator's database and model store)");
    if (!o->tls_cert != !o->tls_key)
        die(2, "give both --tls-cert and --tls-key (or neither, for plain HTTP)");
    if ((o->curve_clients || o->curve_worker_key) && !o->curve_secret)
        die(2, "--curve-clients and --curve-worker-key need --curve-secret (the coordinator's "
               "own CURVE keypair)");
}

/* Trims whitespace at both ends, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* The admin token: --token-file's content, or STATE/admin.token (made on first start). */
static char *load_token(const char *state, const char *token_file, char *path, size_t n)
{
    struct ud_err e = {0};
    char *data = NULL;
    size_t len = 0;
    if (token_file) {
        snprintf(path, n, "%s", token_file);
        if (ud_file_read(token_file, 4096, &data, &len, &e) != 0)
            die(1, "--token-file: %s", e.msg);
        char *t = trim(data);
        if (!*t)
            die(1, "--token-file %s is empty", token_file);
        char *tok = strdup(t);
        free(data);
        return tok;
    }
    snprintf(path, n, "%s/admin.token", state);
    if (ud_file_read(path, 4096, &data, &len, &e) == 0) {
        char *t = trim(data);
        if (*t) {
            char *tok = strdup(t);
            free(data);
            return tok;
        }
        free(data);
        die(1, "%s is empty: delete it to have a new token made", path);
    }
    if (e.code != UD_ENOTFOUND)
        die(1, "%s", e.msg);
    unsigned char raw[32];
    char hex[65];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        die(1, "%s: cannot create: %s", path, strerror(errno));
    char line[70];
    int w = snprintf(line, sizeof line, "%s\n", hex);
    if (write(fd, line, (size_t)w) != w || fsync(fd) != 0)
        die(1, "%s: cannot write: %s", path, strerror(errno));
    close(fd);
    return strdup(hex);
}

/* CURVE keys: the coordinator's keypair (its public half written to STATE/curve-server.pub
 * for workers) and the keypair handed to launched workers (an absolute path). */
struct curve_setup {
    struct ud_key server, worker;
    char server_id[UD_KEY_ID_LEN + 1];
    char server_pub[PATH_MAX], worker_key[PATH_MAX]; /* worker_key "": none */
};

static void curve_setup(const struct options *o, const char *state, struct curve_setup *c)
{
    struct ud_err e = {0};
    if (!o->curve_secret)
        return;
    if (ud_key_read(o->curve_secret, UD_KEY_CURVE_SECRET, &c->server, &e) != 0)
        die(1, "--curve-secret: %s", e.msg);
    snprintf(c->server_id, sizeof c->server_id, "%s", c->server.id);
    struct ud_key pub;
    snprintf(c->server_pub, sizeof c->server_pub, "%s/curve-server.pub", state);
    if (ud_key_public(&c->server, &pub, &e) != 0 || ud_key_write(c->server_pub, &pub, true, &e))
        die(1, "%s", e.msg);
    if (!o->curve_worker_key)
        return;
    if (ud_key_read(o->curve_worker_key, UD_KEY_CURVE_SECRET, &c->worker, &e) != 0)
        die(1, "--curve-worker-key: %s", e.msg);
    if (!realpath(o->curve_worker_key, c->worker_key))
        die(1, "--curve-worker-key %s: %s", o->curve_worker_key, strerror(errno));
}

/* The endpoint workers on this host can reach: * and 0.0.0.0 become 127.0.0.1. */
static void advertise_from(const char *bound, char *out, size_t n)
{
    const char *p = strstr(bound, "://");
    if (!p) {
        snprintf(out, n, "%s", bound);
        return;
    }
    p += 3;
    const char *host_end = strrchr(p, ':');
    size_t hlen = host_end ? (size_t)(host_end - p) : strlen(p);
    if ((hlen == 1 && p[0] == '*') || (hlen == 7 && strncmp(p, "0.0.0.0", 7) == 0))
        snprintf(out, n, "%.*s127.0.0.1%s", (int)(p - bound), bound, host_end ? host_end : "");
    else if (hlen == 4 && strncmp(p, "[::]", 4) == 0)
        snprintf(out, n, "%.*s[::1]%s", (int)(p - bound), bound, host_end ? host_end : "");
    else
        snprintf(out, n, "%s", bound);
}

int main(int argc, char **argv)
{
    struct options o;
    parse_args(argc, argv, &o);
    coord_log_set_level(o.quiet ? COORD_LOG_WARN : COORD_LOG_INFO);
    if (sodium_init() < 0)
        die(1, "libsodium failed to initialise");
    double started = 0;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        started = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }

    /* The state directory, as an absolute path (workers and mpirun get paths inside it). */
    if (mkdir(o.state, 0700) != 0 && errno != EEXIST)
        die(1, "--state %s: cannot create: %s", o.state, strerror(errno));
    char state[PATH_MAX];
    if (!realpath(o.state, state))
        die(1, "--state %s: %s", o.state, strerror(errno));

    char worker[PATH_MAX];
    if (o.worker) {
        snprintf(worker, sizeof worker, "%s", o.worker);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            die(1, "cannot find this program's path (/proc/self/exe): pass --worker PATH");
        self[n] = '\0';
        snprintf(worker, sizeof worker, "%s/updraft-worker", dirname(self));
    }
    if (worker[0] != '/') {
        char abs[PATH_MAX];
        if (realpath(worker, abs))
            snprintf(worker, sizeof worker, "%s", abs);
    }

    struct ud_err e = {0};
    sqlite3 *db = NULL;
    if (coord_db_open(state, 0, &db, &e) != 0)
        die(1, "%s", e.msg);
    char token_path[PATH_MAX];
    char *token = load_token(state, o.token_file, token_path, sizeof token_path);
    if (!token)
        die(1, "out of memory");
    static struct coord_model_keys keys; /* every registered version is sealed with these */
    if (coord_model_keys_load(state, o.signing_key, o.model_key, &keys, &e) != 0)
        die(1, "%s", e.msg);

    /* Signals: SIGINT/SIGTERM stop the loop. They are blocked while the REST threads start,
     * so those threads never take them and the main thread's zmq_poll is interrupted. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);

    void *ctx = zmq_ctx_new();
    if (!ctx)
        die(1, "ZeroMQ: %s", zmq_strerror(zmq_errno()));
    struct coord_tls_creds tls = {0};
    if (o.tls_cert && coord_tls_creds_load(o.tls_cert, o.tls_key, &tls, &e) != 0)
        die(1, "%s", e.msg);
    struct curve_setup curve = {0};
    curve_setup(&o, state, &curve);
    char advertise[512] = ""; /* filled in once the ROUTER is bound (cfg borrows it) */
    struct coord_config cfg = {
        .state_dir = state,
        .advertise = advertise,
        .worker_path = worker,
        .mpirun_path = o.mpirun,
        .heartbeat_timeout = o.heartbeat_timeout,
        .restart_timeout = o.restart_timeout,
        .cancel_grace = o.cancel_grace,
        .started = started,
        .keys = &keys,
        .curve_server_pub = curve.worker_key[0] ? curve.server_pub : NULL,
        .curve_worker_secret = curve.worker_key[0] ? curve.worker_key : NULL,
    };
    coord_jobs_t *jobs = coord_jobs_new(&cfg, db, &e);
    if (!jobs)
        die(1, "%s", e.msg);
    coord_fed_t *fed = coord_fed_new(state, &keys, db, &e);
    if (!fed)
        die(1, "%s", e.msg);
    /* The ZeroMQ background threads start here: keep the signals for the main thread. */
    pthread_sigmask(SIG_BLOCK, &block, &old);
    /* The ZAP handler answers for the ROUTER's CURVE handshakes: it is up before the bind. */
    coord_zap_t *zap = NULL;
    if (o.curve_secret && (o.curve_clients || curve.worker_key[0]) &&
        !(zap = coord_zap_new(ctx, o.curve_clients, curve.worker_key[0] ? curve.worker.pub : NULL,
                              &e)))
        die(1, "%s", e.msg);
    coord_workers_t *workers =
        coord_workers_new(ctx, o.zmq, jobs, o.curve_secret ? &curve.server : NULL, &e);
    ud_key_wipe(&curve.server);
    ud_key_wipe(&curve.worker);
    if (!workers)
        die(1, "%s", e.msg);
    if (o.advertise)
        snprintf(advertise, sizeof advertise, "%s", o.advertise);
    else
        advertise_from(coord_workers_endpoint(workers), advertise, sizeof advertise);

    coord_http_t *http = NULL;
    if (strcmp(o.http, "none") != 0) {
        struct coord_http_config hc = {
            .state_dir = state,
            .listen = o.http,
            .admin_token = token,
            .heartbeat_timeout = o.heartbeat_timeout,
            .started = started,
            .threads = o.http_threads,
            .keys = &keys,
            .tls_cert_pem = tls.cert_pem,
            .tls_key_pem = tls.key_pem,
        };
        if (!(http = coord_http_start(&hc, &e)))
            die(1, "%s", e.msg);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (http) {
        char host[256];
        snprintf(host, sizeof host, "%s", o.http);
        char *colon = strrchr(host, ':');
        if (colon)
            *colon = '\0';
        if (tls.cert_pem) {
            char until[32] = "?";
            time_t t = (time_t)tls.not_after;
            struct tm tm;
            if (t > 0 && gmtime_r(&t, &tm))
                strftime(until, sizeof until, "%Y-%m-%d", &tm);
            coord_log(COORD_LOG_WARN,
                      "serving HTTPS on https://%s:%d (certificate %s, valid until %s)", host,
                      coord_http_port(http), tls.subject, until);
            if (t > 0 && (double)t < started)
                coord_log(COORD_LOG_WARN, "warning: the --tls-cert certificate expired on %s",
                          until);
        } else {
            coord_log(COORD_LOG_WARN, "REST API at http://%s:%d", host, coord_http_port(http));
            if (!ud_net_host_is_loopback(host))
                coord_log(COORD_LOG_WARN,
                          "warning: plain HTTP on %s, which is not loopback: tokens and models "
                          "cross the network unencrypted; use --tls-cert/--tls-key",
                          host);
        }
    } else {
        coord_log(COORD_LOG_WARN, "REST API off (--http none)");
    }
    coord_log(COORD_LOG_WARN, "workers connect to %s (bound %s)", advertise,
              coord_workers_endpoint(workers));
    if (o.curve_secret)
        coord_log(COORD_LOG_WARN,
                  "worker link encrypted with CURVE (server key %s, public half in %s); %s",
                  curve.server_id, curve.server_pub,
                  zap ? "only listed worker keys are accepted"
                      : "no --curve-clients: any worker that knows the server's public key "
                        "is accepted");
    if (zap)
        coord_log(COORD_LOG_INFO, "%zu worker CURVE key(s) allowed", coord_zap_count(zap));
    coord_log(COORD_LOG_WARN, "admin token in %s", token_path);
    coord_log(COORD_LOG_WARN,
              "model versions are signed with key %s (%s; devices verify with its "
              "public half, updraft keys generate/show)%s%s",
              keys.sign.id, keys.sign_path, keys.has_model ? " and encrypted with model key " : "",
              keys.has_model ? keys.model.id : "");
    coord_log(COORD_LOG_INFO,
              "state in %s; worker %s; heartbeat timeout %.1f s, restart timeout "
              "%.0f s",
              state, worker, o.heartbeat_timeout, o.restart_timeout);
    int recovered = coord_jobs_recover(jobs, &e);
    if (recovered < 0)
        coord_log(COORD_LOG_ERROR, "%s", e.msg);
    if (coord_fed_recover(fed, &e) < 0)
        coord_log(COORD_LOG_ERROR, "%s", e.msg);

    double next_tick = 0, next_trim = 0;
    while (!stop_signal) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        if (now >= next_tick) {
            coord_jobs_tick(jobs, now);
            coord_fed_tick(fed, now);
            next_tick = now + TICK_SECONDS;
            /* Device updates are megabytes each; the REST threads' malloc arenas keep what
             * a burst of them used. Hand the idle part back every second, so the resident
             * memory follows what is in flight, not the largest burst seen (measured with
             * tests/bench/fed_ingest.sh: +38 MB over a 500-update round without this). */
            if (now >= next_trim) {
                malloc_trim(0);
                next_trim = now + 1.0;
            }
        }
        long wait_ms = (long)((next_tick - now) * 1000.0) + 1;
        if (wait_ms < 0)
            wait_ms = 0;
        zmq_pollitem_t items[2] = {
            {coord_workers_socket(workers), 0, ZMQ_POLLIN, 0},
            {coord_workers_events(workers), 0, ZMQ_POLLIN, 0},
        };
        int rc = zmq_poll(items, 2, wait_ms);
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            coord_log(COORD_LOG_ERROR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            coord_workers_serve(workers, 64);
        if (items[1].revents & ZMQ_POLLIN)
            coord_workers_drain_events(workers);
    }

    coord_log(COORD_LOG_WARN, "stopping (%s); running jobs keep running",
              stop_signal == SIGINT    ? "SIGINT"
              : stop_signal == SIGTERM ? "SIGTERM"
                                       : "error");
    coord_http_stop(&http);
    coord_tls_creds_deinit(&tls);
    coord_workers_destroy(&workers);
    coord_zap_destroy(&zap);
    zmq_ctx_term(ctx);
    coord_jobs_destroy(&jobs);
    coord_fed_destroy(&fed);
    coord_db_close(&db);
    ud_key_wipe(&keys.sign);
    ud_key_wipe(&keys.model);
    sodium_memzero(token, strlen(token));
    free(token);
    return stop_signal ? 0 : 1;
}

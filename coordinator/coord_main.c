/*  coord_main.c — updraft-coordinator: the service workers and operators talk to.
 *
 *  One main thread owns the ZeroMQ ROUTER (the worker protocol, coord_workers.h), the one
 *  read-write SQLite connection, the job monitor (coord_jobs.h) and the federations
 *  (coord_fed.h), ticked every 200 ms from the zmq_poll timeout. The REST API (coord_http.h)
 *  runs on libmicrohttpd's threads with connections of its own. SIGINT/SIGTERM stop the loop;
 *  the HTTP server is stopped and the database closed. Jobs' mpiruns are left running on
 *  purpose: they outlive the coordinator, and a restarted coordinator picks them up from the
 *  database. main() reads as its phases: setup, the loop (serve), teardown.
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
#include "updraft/ud_clock.h"
#include "updraft/ud_file.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_net.h"
#include "updraft/ud_num.h"
#include "updraft/ud_signal.h"

#define PROG             "updraft-coordinator"
#define TICK_SECONDS     0.2
#define HTTP_THREADS_MAX 1024 /* --http-threads: libmicrohttpd's pool */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

struct options {
    const char *state, *http, *zmq, *advertise, *token_file, *worker, *mpirun;
    const char *sbatch, *squeue, *scancel;
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
            "       [--sbatch PATH] [--squeue PATH] [--scancel PATH]\n"
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
            "  --token-file F         admin token for every REST call (default: made once as\n"
            "                         DIR/admin.token); reads take DIR/reader.token too\n"
            "  --heartbeat-timeout S  silence before a RUNNING job is RESTARTING (default 10)\n"
            "  --restart-timeout S    RESTARTING this long becomes FAILED (default 300)\n"
            "  --cancel-grace S       a launched job has this long to stop after a cancel (30)\n"
            "  --worker PATH          updraft-worker for local launches (default: next to this\n"
            "                         program)\n"
            "  --mpirun PATH          mpirun for local launches and in Slurm batch scripts\n"
            "                         (default: mpirun in PATH)\n"
            "  --sbatch PATH, --squeue PATH, --scancel PATH  Slurm's commands, for jobs with\n"
            "                         \"launch\": {\"scheduler\": \"slurm\"} (default: in PATH)\n"
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
    O_CURVE_WORKER,
    O_SBATCH,
    O_SQUEUE,
    O_SCANCEL
};

static const struct option LONG_OPTIONS[] = {
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
    {"sbatch", required_argument, 0, O_SBATCH},
    {"squeue", required_argument, 0, O_SQUEUE},
    {"scancel", required_argument, 0, O_SCANCEL},
    {0, 0, 0, 0},
};

/* Seconds in [lo, 1e7], or exit 2 saying what the option takes. */
static double seconds_arg(const char *opt, const char *text, double lo)
{
    struct ud_err e = {0};
    double v = 0;
    if (ud_num_double(opt, text, lo, 1e7, &v, &e) != 0)
        die(2, "%s", e.msg);
    return v;
}

/* The text option c points at in o, or NULL when c takes no text. */
static const char **text_option(struct options *o, int c)
{
    switch (c) {
    case O_STATE:
        return &o->state;
    case O_HTTP:
        return &o->http;
    case O_ZMQ:
        return &o->zmq;
    case O_ADV:
        return &o->advertise;
    case O_TOKEN:
        return &o->token_file;
    case O_WORKER:
        return &o->worker;
    case O_MPIRUN:
        return &o->mpirun;
    case O_SIGNKEY:
        return &o->signing_key;
    case O_MODELKEY:
        return &o->model_key;
    case O_TLS_CERT:
        return &o->tls_cert;
    case O_TLS_KEY:
        return &o->tls_key;
    case O_CURVE_SECRET:
        return &o->curve_secret;
    case O_CURVE_CLIENTS:
        return &o->curve_clients;
    case O_CURVE_WORKER:
        return &o->curve_worker_key;
    case O_SBATCH:
        return &o->sbatch;
    case O_SQUEUE:
        return &o->squeue;
    case O_SCANCEL:
        return &o->scancel;
    default:
        return NULL;
    }
}

/* One option from getopt_long: stored in o, or --help / a bad option (which exit). */
static void set_option(struct options *o, int c, const char *arg)
{
    const char **text = text_option(o, c);
    struct ud_err e = {0};
    if (text) {
        *text = arg;
        return;
    }
    switch (c) {
    case O_HB:
        o->heartbeat_timeout = seconds_arg("--heartbeat-timeout", arg, 0.1);
        break;
    case O_RESTART:
        o->restart_timeout = seconds_arg("--restart-timeout", arg, 0.1);
        break;
    case O_GRACE:
        o->cancel_grace = seconds_arg("--cancel-grace", arg, 0);
        break;
    case O_THREADS:
        if (ud_num_int("--http-threads", arg, 1, HTTP_THREADS_MAX, &o->http_threads, &e) != 0)
            die(2, "%s", e.msg);
        break;
    case O_QUIET:
        o->quiet = 1;
        break;
    case O_HELP:
        usage(stdout);
        exit(0);
    default:
        usage(stderr);
        exit(2);
    }
}

static void parse_args(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    o->http = "127.0.0.1:8470";
    o->zmq = "tcp://*:8471";
    o->mpirun = "mpirun";
    o->sbatch = "sbatch";
    o->squeue = "squeue";
    o->scancel = "scancel";
    o->heartbeat_timeout = 10;
    o->restart_timeout = 300;
    o->cancel_grace = 30;
    int c;
    while ((c = getopt_long(argc, argv, "", LONG_OPTIONS, NULL)) != -1)
        set_option(o, c, optarg);
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

/* A token: token_file's content, or STATE/name (made on first start, mode 0600): the admin
 * token (--token-file or admin.token) and the reader token (reader.token). */
static char *load_token(const char *state, const char *name, const char *token_file, char *path,
                        size_t n)
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
    snprintf(path, n, "%s/%s", state, name);
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

/* The one server: what main sets up, the loop runs on, and the teardown undoes. Static
 * because the jobs' and the REST API's configurations borrow its strings and keys. */
static struct server {
    struct options o;
    char state[PATH_MAX];         /* --state, absolute */
    char worker[PATH_MAX];        /* updraft-worker for local launches, absolute when found */
    char token_path[PATH_MAX];    /* where the admin token came from (for the log) */
    char reader_path[PATH_MAX];   /* the reader token's file */
    char advertise[512];          /* what launched workers connect to */
    double started;               /* unix time of the start */
    char *token;                  /* the admin token */
    char *reader;                 /* the read-only operator token */
    sqlite3 *db;                  /* the main thread's read-write connection */
    struct coord_model_keys keys; /* every registered version is sealed with these */
    struct coord_tls_creds tls;
    struct curve_setup curve;
    void *ctx; /* ZeroMQ */
    coord_jobs_t *jobs;
    coord_fed_t *fed;
    coord_zap_t *zap;
    coord_workers_t *workers;
    coord_http_t *http;
} server;

/* The state directory, as an absolute path (workers and mpirun get paths inside it), and the
 * worker program: --worker, or updraft-worker next to this program. */
static void setup_paths(struct server *s)
{
    if (mkdir(s->o.state, 0700) != 0 && errno != EEXIST)
        die(1, "--state %s: cannot create: %s", s->o.state, strerror(errno));
    if (!realpath(s->o.state, s->state))
        die(1, "--state %s: %s", s->o.state, strerror(errno));
    if (s->o.worker) {
        snprintf(s->worker, sizeof s->worker, "%s", s->o.worker);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            die(1, "cannot find this program's path (/proc/self/exe): pass --worker PATH");
        self[n] = '\0';
        snprintf(s->worker, sizeof s->worker, "%s/updraft-worker", dirname(self));
    }
    if (s->worker[0] != '/') {
        char abs[PATH_MAX];
        if (realpath(s->worker, abs))
            snprintf(s->worker, sizeof s->worker, "%s", abs);
    }
}

/* The database, the admin and reader tokens and the model keys. */
static void setup_state(struct server *s)
{
    struct ud_err e = {0};
    if (coord_db_open(s->state, 0, &s->db, &e) != 0)
        die(1, "%s", e.msg);
    s->token =
        load_token(s->state, "admin.token", s->o.token_file, s->token_path, sizeof s->token_path);
    s->reader = load_token(s->state, "reader.token", NULL, s->reader_path, sizeof s->reader_path);
    if (!s->token || !s->reader)
        die(1, "out of memory");
    if (strcmp(s->token, s->reader) == 0)
        die(1,
            "%s holds the admin token: the reader token must differ (delete %s to have a new "
            "one made)",
            s->reader_path, s->reader_path);
    if (coord_model_keys_load(s->state, s->o.signing_key, s->o.model_key, &s->keys, &e) != 0)
        die(1, "%s", e.msg);
}

/* SIGINT/SIGTERM stop the loop; a closed peer is an error return, not SIGPIPE. */
static void setup_signals(void)
{
    ud_signal_on_stop(on_signal);
    signal(SIGPIPE, SIG_IGN);
}

/* The job manager and the federation engine over the database, and what they need first:
 * the ZeroMQ context, the HTTPS credentials and the CURVE keys. */
static void setup_engines(struct server *s)
{
    struct ud_err e = {0};
    if (!(s->ctx = zmq_ctx_new()))
        die(1, "ZeroMQ: %s", zmq_strerror(zmq_errno()));
    if (s->o.tls_cert && coord_tls_creds_load(s->o.tls_cert, s->o.tls_key, &s->tls, &e) != 0)
        die(1, "%s", e.msg);
    curve_setup(&s->o, s->state, &s->curve);
    int curve_workers = s->curve.worker_key[0] != '\0';
    struct coord_config cfg = {
        .state_dir = s->state,
        .advertise = s->advertise, /* filled in once the ROUTER is bound */
        .worker_path = s->worker,
        .mpirun_path = s->o.mpirun,
        .sbatch_path = s->o.sbatch,
        .squeue_path = s->o.squeue,
        .scancel_path = s->o.scancel,
        .heartbeat_timeout = s->o.heartbeat_timeout,
        .restart_timeout = s->o.restart_timeout,
        .cancel_grace = s->o.cancel_grace,
        .started = s->started,
        .keys = &s->keys,
        .curve_server_pub = curve_workers ? s->curve.server_pub : NULL,
        .curve_worker_secret = curve_workers ? s->curve.worker_key : NULL,
    };
    if (!(s->jobs = coord_jobs_new(&cfg, s->db, &e)))
        die(1, "%s", e.msg);
    if (!(s->fed = coord_fed_new(s->state, &s->keys, s->db, &e)))
        die(1, "%s", e.msg);
}

/* The threads: the ZAP handler (up before the bind, it answers the ROUTER's CURVE
 * handshakes), the worker protocol's ROUTER and the REST API. SIGINT/SIGTERM are blocked
 * while they start, so that only the main thread takes them and its zmq_poll is
 * interrupted. */
static void setup_listeners(struct server *s)
{
    struct ud_err e = {0};
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    const char *curve_secret = s->o.curve_secret;
    int curve_workers = s->curve.worker_key[0] != '\0';
    if (curve_secret && (s->o.curve_clients || curve_workers) &&
        !(s->zap = coord_zap_new(s->ctx, s->o.curve_clients,
                                 curve_workers ? s->curve.worker.pub : NULL, &e)))
        die(1, "%s", e.msg);
    s->workers =
        coord_workers_new(s->ctx, s->o.zmq, s->jobs, curve_secret ? &s->curve.server : NULL, &e);
    ud_key_wipe(&s->curve.server);
    ud_key_wipe(&s->curve.worker);
    if (!s->workers)
        die(1, "%s", e.msg);
    if (s->o.advertise)
        snprintf(s->advertise, sizeof s->advertise, "%s", s->o.advertise);
    else
        advertise_from(coord_workers_endpoint(s->workers), s->advertise, sizeof s->advertise);
    if (strcmp(s->o.http, "none") != 0) {
        struct coord_http_config hc = {
            .state_dir = s->state,
            .listen = s->o.http,
            .admin_token = s->token,
            .reader_token = s->reader,
            .heartbeat_timeout = s->o.heartbeat_timeout,
            .started = s->started,
            .threads = s->o.http_threads,
            .keys = &s->keys,
            .tls_cert_pem = s->tls.cert_pem,
            .tls_key_pem = s->tls.key_pem,
        };
        if (!(s->http = coord_http_start(&hc, &e)))
            die(1, "%s", e.msg);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Where the REST API is, and a warning when it is plain HTTP off loopback or its
 * certificate has expired. */
static void log_rest_api(const struct server *s)
{
    if (!s->http) {
        coord_log(COORD_LOG_WARN, "REST API off (--http none)");
        return;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", s->o.http);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    if (s->tls.cert_pem) {
        char until[32] = "?";
        time_t t = (time_t)s->tls.not_after;
        struct tm tm;
        if (t > 0 && gmtime_r(&t, &tm))
            strftime(until, sizeof until, "%Y-%m-%d", &tm);
        coord_log(COORD_LOG_WARN, "serving HTTPS on https://%s:%d (certificate %s, valid until %s)",
                  host, coord_http_port(s->http), s->tls.subject, until);
        if (t > 0 && (double)t < s->started)
            coord_log(COORD_LOG_WARN, "warning: the --tls-cert certificate expired on %s", until);
    } else {
        coord_log(COORD_LOG_WARN, "REST API at http://%s:%d", host, coord_http_port(s->http));
        if (!ud_net_host_is_loopback(host))
            coord_log(COORD_LOG_WARN,
                      "warning: plain HTTP on %s, which is not loopback: tokens and models "
                      "cross the network unencrypted; use --tls-cert/--tls-key",
                      host);
    }
}

/* What the operator needs to know at start: endpoints, keys, the token's file, the state. */
static void log_startup(const struct server *s)
{
    log_rest_api(s);
    coord_log(COORD_LOG_WARN, "workers connect to %s (bound %s)", s->advertise,
              coord_workers_endpoint(s->workers));
    if (s->o.curve_secret)
        coord_log(COORD_LOG_WARN,
                  "worker link encrypted with CURVE (server key %s, public half in %s); %s",
                  s->curve.server_id, s->curve.server_pub,
                  s->zap ? "only listed worker keys are accepted"
                         : "no --curve-clients: any worker that knows the server's public key "
                           "is accepted");
    if (s->zap)
        coord_log(COORD_LOG_INFO, "%zu worker CURVE key(s) allowed", coord_zap_count(s->zap));
    coord_log(COORD_LOG_WARN, "admin token in %s; read-only (reader) token in %s", s->token_path,
              s->reader_path);
    coord_log(COORD_LOG_WARN,
              "model versions are signed with key %s (%s; devices verify with its "
              "public half, updraft keys generate/show)%s%s",
              s->keys.sign.id, s->keys.sign_path,
              s->keys.has_model ? " and encrypted with model key " : "",
              s->keys.has_model ? s->keys.model.id : "");
    coord_log(COORD_LOG_INFO,
              "state in %s; worker %s; heartbeat timeout %.1f s, restart timeout "
              "%.0f s",
              s->state, s->worker, s->o.heartbeat_timeout, s->o.restart_timeout);
}

/* Logs the jobs and federations a previous run left unfinished. */
static void recover(struct server *s)
{
    struct ud_err e = {0};
    if (coord_jobs_recover(s->jobs, &e) < 0)
        coord_log(COORD_LOG_ERROR, "%s", e.msg);
    if (coord_fed_recover(s->fed, &e) < 0)
        coord_log(COORD_LOG_ERROR, "%s", e.msg);
}

/* The loop, until a signal: worker messages as they come, and every TICK_SECONDS the job
 * monitor and the federations (with the wall-clock time: they compare it with stored
 * times). The schedule runs on the monotonic clock, so setting the clock never stalls it. */
static void serve(struct server *s)
{
    double next_tick = 0, next_trim = 0;
    while (!stop_signal) {
        double mono = ud_clock_mono();
        if (mono >= next_tick) {
            double now = ud_clock_wall();
            coord_jobs_tick(s->jobs, now);
            coord_fed_tick(s->fed, now);
            next_tick = mono + TICK_SECONDS;
            /* Device updates are megabytes each; the REST threads' malloc arenas keep what
             * a burst of them used. Hand the idle part back every second, so the resident
             * memory follows what is in flight, not the largest burst seen (measured with
             * tests/bench/fed_ingest.sh: +38 MB over a 500-update round without this). */
            if (mono >= next_trim) {
                malloc_trim(0);
                next_trim = mono + 1.0;
            }
        }
        long wait_ms = (long)((next_tick - mono) * 1000.0) + 1;
        if (wait_ms < 0)
            wait_ms = 0;
        zmq_pollitem_t items[2] = {
            {coord_workers_socket(s->workers), 0, ZMQ_POLLIN, 0},
            {coord_workers_events(s->workers), 0, ZMQ_POLLIN, 0},
        };
        if (zmq_poll(items, 2, wait_ms) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            coord_log(COORD_LOG_ERROR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            return;
        }
        if (items[0].revents & ZMQ_POLLIN)
            coord_workers_serve(s->workers, 64);
        if (items[1].revents & ZMQ_POLLIN)
            coord_workers_drain_events(s->workers);
    }
}

/* Stops the threads and frees everything, in the reverse order of the setup. Launched jobs'
 * mpiruns keep running. */
static void teardown(struct server *s)
{
    coord_log(COORD_LOG_WARN, "stopping (%s); running jobs keep running",
              stop_signal == SIGINT    ? "SIGINT"
              : stop_signal == SIGTERM ? "SIGTERM"
                                       : "error");
    coord_http_stop(&s->http);
    coord_tls_creds_deinit(&s->tls);
    coord_workers_destroy(&s->workers);
    coord_zap_destroy(&s->zap);
    zmq_ctx_term(s->ctx);
    coord_jobs_destroy(&s->jobs);
    coord_fed_destroy(&s->fed);
    coord_db_close(&s->db);
    ud_key_wipe(&s->keys.sign);
    ud_key_wipe(&s->keys.model);
    sodium_memzero(s->token, strlen(s->token));
    free(s->token);
    sodium_memzero(s->reader, strlen(s->reader));
    free(s->reader);
}

int main(int argc, char **argv)
{
    struct server *s = &server;
    parse_args(argc, argv, &s->o);
    coord_log_set_level(s->o.quiet ? COORD_LOG_WARN : COORD_LOG_INFO);
    if (sodium_init() < 0)
        die(1, "libsodium failed to initialise");
    s->started = ud_clock_wall();
    setup_paths(s);
    setup_state(s);
    setup_signals();
    setup_engines(s);
    setup_listeners(s);
    log_startup(s);
    recover(s);
    serve(s);
    teardown(s);
    return stop_signal ? 0 : 1;
}

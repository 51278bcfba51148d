/*  worker_main.c — updraft-worker: train a classifier from labeled data.
 *
 *  Standalone, like Create ML's MLImageClassifier training from folders: load the data (image
 *  folders, IDX or CSV), split off validation, build the network (preset or spec file), run the
 *  update engine, score the test set, write the .udm. On a terminal it draws a progress bar per
 *  epoch; with --json it prints one JSON object per line, the last a summary.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <sodium.h>
#include <unistd.h>

#include "coord_client.h"
#include "session.h"
#include "ud_dist.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_ckpt.h"
#include "updraft/ud_data.h"
#include "updraft/ud_eval.h"
#include "updraft/ud_jsonw.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_model.h"
#include "updraft/ud_plan.h"
#include "updraft/ud_msg.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"
#include "updraft/ud_update.h"

#define PROG "updraft-worker"

struct options {
    const char *data, *test, *arch, *out, *validation;
    const char *author, *description, *license, *model_version;
    struct ud_update_params params;
    int threads, threads_set, json, skip_bad, quiet;
    size_t max_samples;
    const char *session; /* --session DIR */
    int resume, keep;
    int64_t checkpoint_every, report_every;
    double bucket_mb, peer_timeout;
    struct ud_shape input; /* --input C,H,W for image folders with a preset */
    /* --coordinator: the job's options come from the coordinator */
    const char *coordinator, *job;
    double coord_timeout;
    const char *curve_server_key, *curve_secret; /* CURVE for the coordinator link */
    const char *spec_opt;                        /* the first option given that a job spec sets */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --data SRC [--test SRC] --arch mlp|cnn|SPECFILE --out MODEL.udm\n"
            "       [--epochs N] [--batch B] [--lr X] [--momentum M] [--nesterov]\n"
            "       [--weight-decay W] [--optimizer sgd|adam] [--beta1 B1] [--beta2 B2] [--eps E]\n"
            "       [--schedule constant|step|cosine] [--step-epochs N] [--gamma G]\n"
            "       [--validation auto|none|RATIO] [--seed S] [--no-shuffle] [--threads T]\n"
            "       [--input C,H,W] [--max-samples N] [--skip-bad] [--json] [--quiet]\n"
            "       [--author A] [--description D] [--license L] [--model-version V]\n"
            "       [--session DIR [--resume] [--checkpoint-every N] [--keep-checkpoints K]]\n"
            "       [--report-every N] [--bucket-mb MB] [--peer-timeout SEC]\n"
            "   or: " PROG " --coordinator tcp://HOST:8471 [--job ID] [--resume]\n"
            "       [--coordinator-timeout SEC] [--curve-server-key F --curve-secret F]\n"
            "       [--threads T] [--json] [--quiet]\n"
            "\n"
            "With --coordinator, rank 0 registers with updraft-coordinator (for job ID, or the\n"
            "oldest job waiting for workers) and every rank trains with the job's options on the\n"
            "shard the coordinator planned for it, reporting progress, checkpoints and the model.\n"
            "--curve-server-key (the coordinator's public key file) and --curve-secret (this\n"
            "worker's curve-secret keypair) encrypt and authenticate that link with CURVE.\n"
            "\n"
            "Under mpirun every rank runs this same command: --batch is the global batch, each\n"
            "rank trains on its slice of every batch, gradients are summed across ranks.\n"
            "--session DIR keeps checkpoints (every N steps; default: each epoch end, and the\n"
            "last step; the newest K=3 complete ones are kept); --resume continues from the\n"
            "newest complete one. --report-every N prints progress every N steps. --bucket-mb\n"
            "sets the gradient bucket size (default 1). --peer-timeout (default 60 s): how long\n"
            "a rank waits for the others before it stops and names the ones missing.\n"
            "\n"
            "SRC is a folder of class folders (DIR/<label>/<image>.png|.jpg), an IDX images file\n"
            "(its labels file is found by the usual name; .gz is fine), or a CSV with a 'label'\n"
            "column. Defaults: 10 epochs, batch 128, sgd, lr 0.05, momentum 0.9, seed 0,\n"
            "automatic validation split (Create ML's), threads = cores / ranks on this host.\n");
}

static int g_rank = -1; /* set under mpirun with more than one rank: messages name the rank */

/* Under a coordinator (this program's one link to it, and the job it joined). */
static coord_client_t *g_cc;
static struct ud_msg g_job;            /* the coordinator's job message: args, plan, session, out */
static int g_cc_rank = -1;             /* this process's rank once it joined the job */
static int g_fail_code = UD_EINTERNAL; /* the UD_E* code die() reports as the failure's */
static int64_t g_epochs;               /* the job's --epochs, for total_steps */
static int64_t g_job_epochs(void)
{
    return g_epochs;
}

/* Rank 0 tells the coordinator how the job ended badly (within a couple of seconds). */
static void coord_report_end(int exit_code, const char *msg)
{
    coord_client_t *cc = g_cc;
    g_cc = NULL; /* once */
    if (!cc)
        return;
    if (g_cc_rank == 0 && g_job.job) {
        struct ud_err e = {0};
        struct ud_msg m = {.type = UD_MSG_DONE,
                           .job = g_job.job,
                           .rank = 0,
                           .status = exit_code == 130 ? "cancelled" : "failed",
                           .code = exit_code == 130 ? UD_ECANCELLED : g_fail_code,
                           .msg = (char *)msg};
        coord_client_post(cc, &m, 1, &e);
    }
    coord_client_destroy(&cc, g_cc_rank == 0 ? 2.0 : 0.0);
}

/* Posts a progress message (rank 0 under a coordinator) with the given metrics; NaNs left out. */
static void coord_progress(const struct ud_update_metrics *m, int64_t step, int n,
                           const char *const *keys, const double *vals)
{
    if (!g_cc || g_cc_rank != 0)
        return;
    struct ud_err e = {0};
    struct ud_msg msg = {.type = UD_MSG_PROGRESS,
                         .job = g_job.job,
                         .rank = 0,
                         .step = step,
                         .epoch = m->epoch_index,
                         .minibatch = m->minibatch_index,
                         .steps_per_epoch = m->steps_per_epoch,
                         .total_steps = m->steps_per_epoch * g_job_epochs()};
    for (int i = 0; i < n; i++)
        if (isfinite(vals[i]))
            ud_msg_add_metric(&msg, keys[i], vals[i]);
    if (coord_client_post(g_cc, &msg, 0, &e))
        fprintf(stderr, PROG ": warning: progress not sent: %s\n", e.msg);
    free(msg.metrics);
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_rank >= 0)
        fprintf(stderr, PROG ": rank %d: %s\n", g_rank, msg);
    else
        fprintf(stderr, PROG ": %s\n", msg);
    coord_report_end(code, msg);
    exit(code);
}

static double parse_double(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        die(2, "%s: '%s' is not a number", opt, s);
    return v;
}

static long long parse_int(const char *opt, const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die(2, "%s: '%s' must be a whole number in [%lld, %lld]", opt, s, lo, hi);
    return v;
}

static void parse_args(int argc, char **argv, struct options *o)
{
    enum {
        O_LR = 256,
        O_MOMENTUM,
        O_NESTEROV,
        O_WD,
        O_OPT,
        O_B1,
        O_B2,
        O_EPS,
        O_SCHED,
        O_STEP,
        O_GAMMA,
        O_VAL,
        O_NOSHUF,
        O_INPUT,
        O_MAX,
        O_SKIP,
        O_AUTHOR,
        O_DESC,
        O_LIC,
        O_MVER,
        O_QUIET,
        O_THREADS,
        O_SEED,
        O_SESSION,
        O_RESUME,
        O_CKPT_EVERY,
        O_KEEP,
        O_REPORT,
        O_BUCKET,
        O_PEER_TIMEOUT,
        O_COORD,
        O_JOB,
        O_COORD_TIMEOUT,
        O_CURVE_SERVER,
        O_CURVE_SECRET
    };
    static const struct option longopts[] = {
        {"data", required_argument, 0, 'd'},
        {"test", required_argument, 0, 't'},
        {"arch", required_argument, 0, 'a'},
        {"out", required_argument, 0, 'o'},
        {"epochs", required_argument, 0, 'e'},
        {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, O_LR},
        {"momentum", required_argument, 0, O_MOMENTUM},
        {"nesterov", no_argument, 0, O_NESTEROV},
        {"weight-decay", required_argument, 0, O_WD},
        {"optimizer", required_argument, 0, O_OPT},
        {"beta1", required_argument, 0, O_B1},
        {"beta2", required_argument, 0, O_B2},
        {"eps", required_argument, 0, O_EPS},
        {"schedule", required_argument, 0, O_SCHED},
        {"step-epochs", required_argument, 0, O_STEP},
        {"gamma", required_argument, 0, O_GAMMA},
        {"validation", required_argument, 0, O_VAL},
        {"seed", required_argument, 0, O_SEED},
        {"no-shuffle", no_argument, 0, O_NOSHUF},
        {"threads", required_argument, 0, O_THREADS},
        {"input", required_argument, 0, O_INPUT},
        {"max-samples", required_argument, 0, O_MAX},
        {"skip-bad", no_argument, 0, O_SKIP},
        {"json", no_argument, 0, 'j'},
        {"quiet", no_argument, 0, O_QUIET},
        {"author", required_argument, 0, O_AUTHOR},
        {"description", required_argument, 0, O_DESC},
        {"license", required_argument, 0, O_LIC},
        {"model-version", required_argument, 0, O_MVER},
        {"session", required_argument, 0, O_SESSION},
        {"resume", no_argument, 0, O_RESUME},
        {"checkpoint-every", required_argument, 0, O_CKPT_EVERY},
        {"keep-checkpoints", required_argument, 0, O_KEEP},
        {"report-every", required_argument, 0, O_REPORT},
        {"bucket-mb", required_argument, 0, O_BUCKET},
        {"peer-timeout", required_argument, 0, O_PEER_TIMEOUT},
        {"coordinator", required_argument, 0, O_COORD},
        {"job", required_argument, 0, O_JOB},
        {"coordinator-timeout", required_argument, 0, O_COORD_TIMEOUT},
        {"curve-server-key", required_argument, 0, O_CURVE_SERVER},
        {"curve-secret", required_argument, 0, O_CURVE_SECRET},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    ud_update_params_trainer_default(&o->params);
    o->validation = "auto";
    o->keep = 3;
    o->bucket_mb = 1;
    o->peer_timeout = 60;
    o->coord_timeout = 600;
    int c;
    opterr = 0;
    optind = 0; /* parse_args runs twice under a coordinator: start afresh */
    /* The leading ':' makes a missing value ':' rather than '?', so it is named as such. */
    while ((c = getopt_long(argc, argv, ":d:t:a:o:e:b:jh", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->data = optarg;
            break;
        case 't':
            o->test = optarg;
            break;
        case 'a':
            o->arch = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'e':
            o->params.epochs = parse_int("--epochs", optarg, 1, 1000000);
            break;
        case 'b':
            o->params.mini_batch_size = parse_int("--batch", optarg, 1, 65536);
            break;
        case 'j':
            o->json = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case O_LR:
            o->params.learning_rate = parse_double("--lr", optarg);
            break;
        case O_MOMENTUM:
            o->params.momentum = parse_double("--momentum", optarg);
            break;
        case O_NESTEROV:
            o->params.nesterov = 1;
            break;
        case O_WD:
            o->params.weight_decay = parse_double("--weight-decay", optarg);
            break;
        case O_OPT:
            if (ud_optimizer_parse(optarg, &o->params.optimizer))
                die(2, "--optimizer: '%s' is not sgd or adam", optarg);
            break;
        case O_B1:
            o->params.beta1 = parse_double("--beta1", optarg);
            break;
        case O_B2:
            o->params.beta2 = parse_double("--beta2", optarg);
            break;
        case O_EPS:
            o->params.eps = parse_double("--eps", optarg);
            break;
        case O_SCHED:
            if (ud_lr_schedule_parse(optarg, &o->params.schedule))
                die(2, "--schedule: '%s' is not constant, step or cosine", optarg);
            break;
        case O_STEP:
            o->params.step_epochs = parse_int("--step-epochs", optarg, 1, 1000000);
            break;
        case O_GAMMA:
            o->params.gamma = parse_double("--gamma", optarg);
            break;
        case O_VAL:
            o->validation = optarg;
            break;
        case O_SEED:
            o->params.seed = (uint64_t)parse_int("--seed", optarg, 0, (1LL << 62));
            break;
        case O_NOSHUF:
            o->params.shuffle = 0;
            break;
        case O_THREADS:
            o->threads = (int)parse_int("--threads", optarg, 1, 1024);
            o->threads_set = 1;
            break;
        case O_SESSION:
            o->session = optarg;
            break;
        case O_RESUME:
            o->resume = 1;
            break;
        case O_CKPT_EVERY:
            o->checkpoint_every = parse_int("--checkpoint-every", optarg, 1, 1LL << 40);
            break;
        case O_KEEP:
            o->keep = (int)parse_int("--keep-checkpoints", optarg, 1, 1000000);
            break;
        case O_REPORT:
            o->report_every = parse_int("--report-every", optarg, 1, 1LL << 40);
            break;
        case O_BUCKET:
            o->bucket_mb = parse_double("--bucket-mb", optarg);
            if (!(o->bucket_mb > 0 && o->bucket_mb <= 4096))
                die(2, "--bucket-mb: '%s' must be in (0, 4096]", optarg);
            break;
        case O_COORD:
            o->coordinator = optarg;
            break;
        case O_JOB:
            o->job = optarg;
            break;
        case O_CURVE_SERVER:
            o->curve_server_key = optarg;
            break;
        case O_CURVE_SECRET:
            o->curve_secret = optarg;
            break;
        case O_COORD_TIMEOUT:
            o->coord_timeout = parse_double("--coordinator-timeout", optarg);
            if (!(o->coord_timeout >= 1 && o->coord_timeout <= 86400))
                die(2, "--coordinator-timeout: '%s' must be in [1, 86400] seconds", optarg);
            break;
        case O_PEER_TIMEOUT:
            o->peer_timeout = parse_double("--peer-timeout", optarg);
            if (!(o->peer_timeout >= 0.5 && o->peer_timeout <= 86400))
                die(2, "--peer-timeout: '%s' must be in [0.5, 86400] seconds", optarg);
            break;
        case O_INPUT:
            if (sscanf(optarg, "%d,%d,%d", &o->input.c, &o->input.h, &o->input.w) != 3 ||
                o->input.c <= 0 || o->input.h <= 0 || o->input.w <= 0 || o->input.c > 4 ||
                o->input.h > UD_MAX_DIM || o->input.w > UD_MAX_DIM)
                die(2, "--input: expected C,H,W (C 1..4), e.g. 1,28,28 or 3,64,64");
            break;
        case O_MAX:
            o->max_samples = (size_t)parse_int("--max-samples", optarg, 1, 1LL << 40);
            break;
        case O_SKIP:
            o->skip_bad = 1;
            break;
        case O_QUIET:
            o->quiet = 1;
            break;
        case O_AUTHOR:
            o->author = optarg;
            break;
        case O_DESC:
            o->description = optarg;
            break;
        case O_LIC:
            o->license = optarg;
            break;
        case O_MVER:
            o->model_version = optarg;
            break;
        case ':':
            die(2, "%s needs a value (see --help)", argv[optind - 1]);
        default:
            die(2, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
        if (!o->spec_opt && c != O_COORD && c != O_JOB && c != O_COORD_TIMEOUT && c != O_RESUME &&
            c != O_THREADS && c != 'j' && c != O_QUIET && c != O_CURVE_SERVER &&
            c != O_CURVE_SECRET)
            o->spec_opt = argv[optind - 1];
    }
    if (optind < argc)
        die(2, "unexpected argument '%s' (see --help)", argv[optind]);
    if (o->job && !o->coordinator)
        die(2, "--job needs --coordinator tcp://HOST:PORT");
    if ((o->curve_server_key || o->curve_secret) && !o->coordinator)
        die(2, "--curve-server-key and --curve-secret secure the --coordinator link");
    if (!o->curve_server_key != !o->curve_secret)
        die(2, "CURVE needs both --curve-server-key (the coordinator's public key) and "
               "--curve-secret (this worker's keypair)");
    if (o->coordinator) {
        if (o->spec_opt)
            die(2,
                "%s: with --coordinator the job spec sets the training options (only --job, "
                "--resume, --coordinator-timeout, --curve-server-key, --curve-secret, --threads, "
                "--json and --quiet may be given)",
                o->spec_opt);
        return;
    }
    if (!o->data)
        die(2, "--data is required (see --help)");
    if (!o->arch)
        die(2, "--arch is required: mlp, cnn or a spec file (see --help)");
    if (!o->out)
        die(2, "--out is required: where to write the trained model (.udm)");
    if ((o->resume || o->checkpoint_every) && !o->session)
        die(2, "%s needs --session DIR", o->resume ? "--resume" : "--checkpoint-every");
    struct ud_err e = {0};
    if (ud_update_params_validate(&o->params, &e))
        die(2, "%s", e.msg);
}

/* ------------------------------------------------------------------ progress reporting */

struct progress {
    const struct options *o;
    int rank, world; /* only rank 0 reports */
    struct session *sess;
    int tty;
    double last_draw;
    double best_rate; /* samples/s of the fastest epoch (steady state, as the peers report) */
    struct ud_update_metrics last;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void draw_bar(struct progress *p, const struct ud_update_metrics *m, int final)
{
    int64_t total = m->steps_per_epoch;
    double frac = total > 0 ? (double)(m->minibatch_index + 1) / (double)total : 1.0;
    int width = 24, fill = (int)(frac * width + 0.5);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = '\0';
    double eta = frac > 0 ? m->epoch_seconds * (1.0 - frac) / frac : 0;
    fprintf(stderr,
            "\r\033[Kepoch %lld/%lld [%s] %3.0f%%  %.0f samples/s  loss %.4f  acc %.3f  %s %.0fs",
            (long long)m->epoch_index + 1, (long long)p->o->params.epochs, bar, frac * 100,
            m->samples_per_sec, m->loss, m->accuracy, final ? "took" : "ETA",
            final ? m->epoch_seconds : eta);
    fflush(stderr);
}

static void on_progress(struct ud_update_context *ctx, void *user)
{
    struct progress *p = user;
    const struct ud_update_metrics *m = &ctx->metrics;
    const struct options *o = p->o;
    p->last = *m;
    if (ctx->event == UD_EVENT_EPOCH_END && !isnan(m->val_accuracy) && p->sess) {
        p->sess->val_loss = m->val_loss;
        p->sess->val_accuracy = m->val_accuracy;
    }
    if (p->rank != 0)
        return;
    if (ctx->event == UD_EVENT_TRAINING_BEGIN) {
        if (o->json) {
            printf("{\"event\":\"training_begin\",\"task\":");
            ud_json_str(stdout, ud_update_task_identifier(ctx->task));
            printf(",\"epochs\":%lld,\"batch\":%lld,\"steps_per_epoch\":%lld,\"params\":%zu,"
                   "\"world\":%d,\"threads\":%d,\"start_epoch\":%lld,\"start_minibatch\":%lld}\n",
                   (long long)o->params.epochs, (long long)o->params.mini_batch_size,
                   (long long)m->steps_per_epoch, ud_model_param_count(ctx->model), p->world,
                   o->threads, (long long)m->epoch_index, (long long)m->minibatch_index);
            fflush(stdout);
        }
        return;
    }
    if (ctx->event == UD_EVENT_MINIBATCH_END) {
        if (p->tty && !o->json && !o->quiet) {
            double t = now_s();
            if (t - p->last_draw > 0.1) {
                p->last_draw = t;
                draw_bar(p, m, 0);
            }
        }
        return;
    }
    /* epoch end: the epoch's throughput excludes validation scoring, which came after. */
    if (m->samples_per_sec > p->best_rate)
        p->best_rate = m->samples_per_sec;
    {
        static const char *const keys[] = {"epoch_loss", "epoch_accuracy", "val_loss",
                                           "val_accuracy"};
        double vals[] = {m->loss, m->accuracy, m->val_loss, m->val_accuracy};
        coord_progress(m, m->step, 4, keys, vals);
    }
    if (o->json) {
        printf("{\"event\":\"epoch_end\",\"epoch\":%lld", (long long)m->epoch_index);
        ud_json_field(stdout, "loss", m->loss);
        ud_json_field(stdout, "accuracy", m->accuracy);
        ud_json_field(stdout, "val_loss", m->val_loss);
        ud_json_field(stdout, "val_accuracy", m->val_accuracy);
        ud_json_field(stdout, "samples_per_sec", m->samples_per_sec);
        ud_json_field(stdout, "learning_rate", m->learning_rate);
        ud_json_field(stdout, "seconds", m->seconds);
        printf("}\n");
        fflush(stdout);
    } else if (!o->quiet) {
        if (p->tty)
            draw_bar(p, m, 1);
        else
            fprintf(stderr, "epoch %lld/%lld  %.0f samples/s  loss %.4f  acc %.4f",
                    (long long)m->epoch_index + 1, (long long)o->params.epochs, m->samples_per_sec,
                    m->loss, m->accuracy);
        if (!isnan(m->val_accuracy))
            fprintf(stderr, "  val_loss %.4f  val_acc %.4f", m->val_loss, m->val_accuracy);
        fputc('\n', stderr);
    }
}

static void on_complete(struct ud_update_context *ctx, void *user)
{
    struct progress *p = user;
    p->last = ctx->metrics;
}

static ud_update_task_t *volatile g_task; /* for the signal handler: cancel cleanly */
static void on_signal(int sig)
{
    (void)sig;
    if (g_task)
        ud_update_task_cancel(g_task);
}

static void warn_cb(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, PROG ": warning: %s\n", msg);
}

/* ------------------------------------------------------------------------------- main */

static void json_eval(const char *what, const ud_model_t *m, const struct ud_eval_result *r)
{
    int C = r->nclasses;
    printf("{\"event\":\"evaluation\",\"set\":\"%s\",\"samples\":%zu", what, r->n);
    ud_json_field(stdout, "accuracy", r->accuracy);
    ud_json_field(stdout, "loss", r->loss);
    printf(",\"labels\":");
    ud_json_str_array(stdout, ud_model_labels(m), C);
    printf(",\"precision\":");
    ud_json_num_array(stdout, r->precision, C);
    printf(",\"recall\":");
    ud_json_num_array(stdout, r->recall, C);
    printf(",\"confusion\":[");
    for (int t = 0; t < C; t++) {
        printf("%s[", t ? "," : "");
        for (int p = 0; p < C; p++)
            printf("%s%llu", p ? "," : "", (unsigned long long)r->confusion[(size_t)t * C + p]);
        putchar(']');
    }
    printf("]}\n");
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* Fails now, not after an hour of training, when the model could not be written. */
static void check_out_dir(const char *out)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        die(1, "--out %s: directory %s does not exist", out, dir);
    if (access(dir, W_OK) != 0)
        die(1, "--out %s: cannot write to %s: %s", out, dir, strerror(errno));
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        die(1, "--out %s: is a directory; give a file name such as %s/model.udm", out, out);
}

/* ------------------------------------------------------------------------------- a run */

struct run {
    const struct options *o;
    ud_dist_t *d; /* NULL standalone (or a world of one) */
    int rank, world;
    struct session sess;
    int have_session;
    struct progress *prog;
    int64_t total_steps;
    const struct ud_plan *plan; /* under a coordinator: which samples each rank trains on */
};

static void hook_ready(void *user, int layer, struct ud_span span)
{
    ud_dist_grad_ready(((struct run *)user)->d, layer, span);
}
static int hook_grad_sync(void *user, float *g, size_t n, ud_span_apply_fn apply, void *actx,
                          struct ud_err *e)
{
    return ud_dist_grad_sync(((struct run *)user)->d, g, n, apply, actx, e);
}
static int hook_metric_sync(void *user, double *v, size_t n, struct ud_err *e)
{
    return ud_dist_metric_sync(((struct run *)user)->d, v, n, e);
}

static void json_checkpoint(const struct run *R, int64_t step, double seconds)
{
    printf("{\"event\":\"checkpoint\",\"iteration\":%lld,\"path\":", (long long)step);
    ud_json_str(stdout, R->sess.last);
    ud_json_field(stdout, "seconds", seconds);
    printf("}\n");
    fflush(stdout);
}

/* Writes a checkpoint now; rank 0 announces it (JSON line, the coordinator). */
static int checkpoint_now(struct run *R, ud_update_task_t *t, const struct ud_update_metrics *m,
                          struct ud_err *e)
{
    double before = R->sess.write_seconds;
    int rc = session_checkpoint(&R->sess, t, e);
    if (rc || R->rank != 0)
        return rc;
    if (R->o->json)
        json_checkpoint(R, m->step, R->sess.write_seconds - before);
    if (g_cc) {
        int64_t epoch, minibatch;
        ud_update_task_position(t, &epoch, &minibatch);
        struct ud_err pe = {0};
        struct ud_msg msg = {.type = UD_MSG_CHECKPOINT,
                             .job = g_job.job,
                             .rank = 0,
                             .step = m->step,
                             .epoch = epoch,
                             .minibatch = minibatch,
                             .path = R->sess.last};
        if (coord_client_post(g_cc, &msg, 1, &pe))
            fprintf(stderr, PROG ": warning: checkpoint not announced: %s\n", pe.msg);
    }
    return 0;
}

static void hook_epoch_order(void *user, int64_t epoch, uint32_t *perm, size_t n)
{
    ud_plan_epoch_order(((struct run *)user)->plan, epoch, perm, n);
}

/* After every step: progress reports, checkpoints, a coordinator's cancel. */
static int hook_after_step(void *user, ud_update_task_t *t, struct ud_err *e)
{
    struct run *R = user;
    const struct options *o = R->o;
    struct ud_update_metrics m = ud_update_task_metrics(t);
    if (R->d)
        ud_dist_set_step(R->d, m.step);
    if (g_cc)
        coord_client_set_step(g_cc, m.step);
    if (g_cc && o->report_every && m.step % o->report_every == 0) {
        static const char *const keys[] = {"loss", "accuracy", "samples_per_sec", "learning_rate"};
        double vals[] = {m.loss, m.accuracy, m.samples_per_sec, m.learning_rate};
        coord_progress(&m, m.step, 4, keys, vals);
    }
    if (o->report_every && m.step % o->report_every == 0 && R->rank == 0) {
        if (o->json) {
            printf("{\"event\":\"progress\",\"step\":%lld,\"epoch\":%lld,\"minibatch\":%lld",
                   (long long)m.step, (long long)m.epoch_index, (long long)m.minibatch_index);
            ud_json_field(stdout, "loss", m.loss);
            ud_json_field(stdout, "accuracy", m.accuracy);
            ud_json_field(stdout, "samples_per_sec", m.samples_per_sec);
            ud_json_field(stdout, "learning_rate", m.learning_rate);
            printf("}\n");
            fflush(stdout);
        } else if (!o->quiet && !R->prog->tty) {
            fprintf(
                stderr, "step %lld (epoch %lld, %lld/%lld)  loss %.4f  acc %.4f  %.0f samples/s\n",
                (long long)m.step, (long long)m.epoch_index + 1, (long long)m.minibatch_index + 1,
                (long long)m.steps_per_epoch, m.loss, m.accuracy, m.samples_per_sec);
        }
    }
    int due = o->checkpoint_every ? m.step % o->checkpoint_every == 0
                                  : m.minibatch_index + 1 == m.steps_per_epoch;
    int written = 0;
    if (R->have_session && (due || m.step == R->total_steps)) {
        int rc = checkpoint_now(R, t, &m, e);
        if (rc)
            return rc;
        written = 1;
    }
    /* A cancel from the coordinator: every rank stops at the same step, after a checkpoint. */
    if (g_cc) {
        int64_t flag = coord_client_cancelled(g_cc);
        if (R->d && R->world > 1 &&
            ud_dist_max_i64(R->d, &flag, 1, "agreeing on a cancel from the coordinator", e))
            return e->code;
        if (flag) {
            int rc = R->have_session && !written ? checkpoint_now(R, t, &m, e) : 0;
            if (rc)
                return rc;
            return ud_err_set(e, UD_ECANCELLED, "cancelled by the coordinator at step %lld",
                              (long long)m.step);
        }
    }
    return 0;
}

/* A 64-bit FNV-1a, for fingerprints. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* The run's identity: what must be equal on every rank, and in a checkpoint to resume from.
 * One fact per line; the epochs line may differ on resume. */
static char *fingerprint(const struct options *o, const struct ud_arch *a, const ud_dataset_t *ds,
                         size_t ntr, size_t nva, const struct ud_plan *plan)
{
    static char fp[2048];
    size_t at = 0;
    struct ud_shape sh = ud_dataset_shape(ds);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < ud_dataset_count(ds); i++) {
        int32_t l = ud_dataset_label(ds, i);
        h = fnv(h, &l, sizeof l);
    }
    uint64_t ch = 0xcbf29ce484222325ull;
    for (int c = 0; c < ud_dataset_num_classes(ds); c++) {
        const char *n = ud_dataset_class_name(ds, c);
        ch = fnv(ch, n, strlen(n) + 1);
    }
    char arch[8192];
    ud_arch_format(a, arch, sizeof arch);
    uint64_t ah = fnv(0xcbf29ce484222325ull, arch, strlen(arch));
    const struct ud_update_params *p = &o->params;
#define FP(...) at += (size_t)snprintf(fp + at, at < sizeof fp ? sizeof fp - at : 0, __VA_ARGS__)
    FP("architecture %016llx\n", (unsigned long long)ah);
    FP("data %zu samples of (%d,%d,%d), %d classes %016llx, labels %016llx\n", ud_dataset_count(ds),
       sh.c, sh.h, sh.w, ud_dataset_num_classes(ds), (unsigned long long)ch, (unsigned long long)h);
    FP("split %zu training, %zu validation\n", ntr, nva);
    if (plan)
        FP("plan %016llx\n", (unsigned long long)ud_plan_hash(plan));
    FP("optimizer %s lr %.17g momentum %.17g nesterov %d weight_decay %.17g\n",
       ud_optimizer_name(p->optimizer), p->learning_rate, p->momentum, p->nesterov,
       p->weight_decay);
    FP("adam %.17g %.17g %.17g\n", p->beta1, p->beta2, p->eps);
    FP("batch %lld shuffle %d seed %llu\n", (long long)p->mini_batch_size, p->shuffle,
       (unsigned long long)p->seed);
    FP("schedule %s step_epochs %lld gamma %.17g\n", ud_lr_schedule_name(p->schedule),
       (long long)p->step_epochs, p->gamma);
    FP("epochs %lld\n", (long long)p->epochs);
#undef FP
    return fp;
}

/* Scores this rank's slice of the test set and sums the counts over ranks. */
static int evaluate_sharded(struct run *R, ud_model_t *m, ud_dataset_t *test,
                            struct ud_eval_result *ev, struct ud_err *e)
{
    size_t n = ud_dataset_count(test), lo, hi;
    ud_update_rank_slice(n, R->rank, R->world, &lo, &hi);
    uint32_t *idx = malloc((hi - lo + 1) * sizeof *idx);
    if (!idx)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    for (size_t i = lo; i < hi; i++)
        idx[i - lo] = (uint32_t)i;
    struct ud_batch_provider p;
    ud_dataset_provider(test, idx, hi - lo, &p);
    int rc = 0;
    if (hi > lo) {
        rc = ud_model_evaluate(m, &p, 256, ev, e);
    } else {
        /* An empty slice scores nothing but still takes part in the sums. */
        int C = ud_model_num_classes(m);
        ev->nclasses = C;
        ev->confusion = calloc((size_t)C * C, sizeof *ev->confusion);
        ev->precision = calloc((size_t)C, sizeof *ev->precision);
        ev->recall = calloc((size_t)C, sizeof *ev->recall);
        if (!ev->confusion || !ev->precision || !ev->recall)
            rc = ud_err_set(e, UD_ENOMEM, "out of memory");
    }
    free(idx);
    struct ud_err le = *e;
    if ((rc = session_agree(R->d, rc, &le, "evaluating the test set", e)) || !R->d)
        return rc;
    int C = ev->nclasses;
    size_t k = (size_t)C * C;
    double *v = malloc((k + 2) * sizeof *v);
    if (!v)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    for (size_t i = 0; i < k; i++)
        v[i] = (double)ev->confusion[i];
    v[k] = ev->n ? ev->loss * (double)ev->n : 0;
    v[k + 1] = (double)ev->n;
    rc = ud_dist_sum_f64(R->d, v, k + 2, "summing the test scores", e);
    if (!rc) {
        for (size_t i = 0; i < k; i++)
            ev->confusion[i] = (uint64_t)v[i];
        ev->n = (size_t)v[k + 1];
        ev->loss = ev->n ? v[k] / (double)ev->n : NAN;
        ud_eval_result_finish(ev);
    }
    free(v);
    return rc;
}

static ud_dataset_t *load_agreed(struct run *R, const char *what, const char *src,
                                 const struct ud_load_opts *lo)
{
    struct ud_err le = {0}, e = {0};
    ud_dataset_t *ds = ud_dataset_load(src, lo, &le);
    if (session_agree(R->d, ds ? 0 : (le.code ? le.code : UD_EIO), &le, what, &e))
        die(1, "cannot load the %s: %s", what, e.msg);
    return ds;
}

/* Under a coordinator: rank 0 registers and receives the job; every rank gets the reply's
 * bytes, decodes them, and re-reads its options from the job's. */
static void join_job(struct run *R, struct options *o)
{
    struct ud_err e = {0}, le = {0};
    void *raw = NULL;
    size_t rawlen = 0;
    int rc = 0;
    struct coord_client_curve curve;
    memset(&curve, 0, sizeof curve);
    if (o->curve_secret) {
        struct ud_key server, self;
        if (ud_key_read(o->curve_server_key, UD_KEY_CURVE_PUBLIC, &server, &le) != 0)
            ud_err_prefix(&le, "--curve-server-key");
        else if (ud_key_read(o->curve_secret, UD_KEY_CURVE_SECRET, &self, &le) != 0)
            ud_err_prefix(&le, "--curve-secret");
        if (!le.code) {
            memcpy(curve.server_pub, server.pub, 32);
            memcpy(curve.pub, self.pub, 32);
            memcpy(curve.sec, self.sec, 32);
            snprintf(curve.id, sizeof curve.id, "%s", self.id);
        }
        ud_key_wipe(&self);
        rc = le.code;
    }
    if (!rc &&
        !(g_cc = coord_client_new(o->coordinator, R->rank, o->curve_secret ? &curve : NULL, &le)))
        rc = le.code;
    sodium_memzero(&curve, sizeof curve);
    if (!rc && R->rank == 0) {
        char host[256] = "unknown";
        gethostname(host, sizeof host - 1);
        struct ud_msg m = {.type = UD_MSG_REGISTER,
                           .job = (char *)(o->job ? o->job : ""),
                           .rank = 0,
                           .world = R->world,
                           .host = host,
                           .pid = getpid(),
                           .resume = o->resume};
        struct ud_msg reply;
        rc = coord_client_request(g_cc, &m, &reply, &raw, &rawlen, o->coord_timeout, &le);
        if (!rc && reply.type != UD_MSG_JOB)
            rc = ud_err_set(&le, UD_EFORMAT, "the coordinator answered register with '%s'",
                            ud_msg_type_name(reply.type));
        if (!rc)
            ud_msg_deinit(&reply);
    }
    if (session_agree(R->d, rc, &le, "registering with the coordinator", &e))
        die(1, "%s: %s", o->coordinator, e.msg);
    if (R->d && R->world > 1) {
        uint64_t n = rawlen;
        if (ud_dist_bcast(R->d, &n, sizeof n, 0, "sharing the job", &e))
            die(1, "%s", e.msg);
        if (R->rank != 0 && !(raw = malloc(n ? n : 1)))
            die(1, "out of memory");
        rawlen = n;
        if (ud_dist_bcast(R->d, raw, rawlen, 0, "sharing the job", &e))
            die(1, "%s", e.msg);
    }
    rc = ud_msg_decode(raw, rawlen, &g_job, &e);
    free(raw);
    if (rc)
        die(1, "%s: the job message does not decode: %s", o->coordinator, e.msg);
    g_cc_rank = R->rank;
    if (g_job.plan.world != R->world)
        die(1, "job %s was planned for %d rank%s, this run has %d: start it with mpirun -np %d",
            g_job.job, g_job.plan.world, g_job.plan.world == 1 ? "" : "s", R->world,
            g_job.plan.world);
    /* The job's options, then where its session and model go. The session is the job's own:
     * whatever checkpoint it holds is this job's, so a relaunch always resumes from it. */
    int n = 0;
    char **av = calloc((size_t)g_job.nargs + 12, sizeof *av);
    if (!av)
        die(1, "out of memory");
    av[n++] = PROG;
    for (int i = 0; i < g_job.nargs; i++)
        av[n++] = g_job.args[i];
    av[n++] = "--session";
    av[n++] = g_job.session;
    av[n++] = "--out";
    av[n++] = g_job.out;
    av[n++] = "--resume";
    char threads[16];
    if (o->threads_set) {
        snprintf(threads, sizeof threads, "%d", o->threads);
        av[n++] = "--threads";
        av[n++] = threads;
    }
    if (o->json)
        av[n++] = "--json";
    if (o->quiet)
        av[n++] = "--quiet";
    struct options keep = *o;
    parse_args(n, av, o); /* o points into g_job's strings, which live as long as the process */
    free(av);
    o->coordinator = keep.coordinator;
    o->job = g_job.job;
    o->coord_timeout = keep.coord_timeout;
    g_epochs = o->params.epochs;
    if (R->d) {
        ud_dist_set_timeout(R->d, o->peer_timeout);
        ud_dist_set_bucket_bytes(R->d, (size_t)(o->bucket_mb * 1048576.0));
    }
    R->plan = &g_job.plan;
    if (coord_client_start(g_cc, g_job.job, g_job.heartbeat_s, &e))
        fprintf(stderr, PROG ": warning: no heartbeats to the coordinator: %s\n", e.msg);
    if (R->rank == 0 && !o->quiet)
        fprintf(stderr, PROG ": joined %s (%s) at %s: %d rank%s, %zu training samples in shards\n",
                g_job.job, g_job.name, keep.coordinator, R->world, R->world == 1 ? "" : "s",
                ud_plan_train_count(&g_job.plan));
}

/* Rank 0 hands the finished model to the coordinator, which registers it as a new version. */
static void upload_model(const struct options *o, const struct ud_update_metrics *fin,
                         const struct ud_eval_result *ev, int have_test)
{
    struct ud_err e = {0};
    char *bytes = NULL;
    size_t len = 0;
    if (ud_file_read(o->out, UD_PROTO_MAX_MESSAGE - 4096, &bytes, &len, &e))
        die(1, "cannot upload the model: %s", e.msg);
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)bytes, len);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    struct ud_msg m = {.type = UD_MSG_MODEL,
                       .job = g_job.job,
                       .rank = 0,
                       .name = g_job.name,
                       .sha256 = hex,
                       .udm = (uint8_t *)bytes,
                       .udm_len = len};
    const char *keys[] = {"train_loss", "train_accuracy", "validation_accuracy", "test_accuracy",
                          "test_loss"};
    double vals[] = {fin->loss, fin->accuracy, fin->val_accuracy, have_test ? ev->accuracy : NAN,
                     have_test ? ev->loss : NAN};
    for (int i = 0; i < 5; i++)
        if (isfinite(vals[i]))
            ud_msg_add_metric(&m, keys[i], vals[i]);
    struct ud_msg reply;
    if (have_test) {
        /* Into the job's metrics before the upload ends the job: on the request socket, so
         * that it arrives first. */
        struct ud_msg pm = {.type = UD_MSG_PROGRESS,
                            .job = g_job.job,
                            .rank = 0,
                            .step = fin->step,
                            .epoch = fin->epoch_index,
                            .minibatch = fin->minibatch_index,
                            .steps_per_epoch = fin->steps_per_epoch,
                            .total_steps = fin->steps_per_epoch * g_epochs};
        ud_msg_add_metric(&pm, "test_accuracy", ev->accuracy);
        ud_msg_add_metric(&pm, "test_loss", ev->loss);
        if (coord_client_request(g_cc, &pm, &reply, NULL, NULL, 30, &e) == 0)
            ud_msg_deinit(&reply);
        else
            fprintf(stderr, PROG ": warning: test metrics not reported: %s\n", e.msg);
        free(pm.metrics);
    }
    int rc = coord_client_request(g_cc, &m, &reply, NULL, NULL, o->coord_timeout, &e);
    free(m.metrics);
    free(bytes);
    if (rc) {
        g_fail_code = rc;
        die(1, "the model (kept in %s) was not registered: %s", o->out, e.msg);
    }
    if (!o->quiet && !o->json)
        fprintf(stderr, PROG ": registered %s version %lld (sha256 %.12s)\n", g_job.name,
                (long long)reply.version, hex);
    if (o->json) {
        printf("{\"event\":\"registered\",\"name\":");
        ud_json_str(stdout, g_job.name);
        printf(",\"version\":%lld,\"sha256\":\"%s\"}\n", (long long)reply.version, hex);
        fflush(stdout);
    }
    ud_msg_deinit(&reply);
}

int main(int argc, char **argv)
{
    struct options o;
    parse_args(argc, argv, &o);
    double t_start = now_s();
    struct ud_err e = {0}, le = {0};
    struct run R = {.o = &o, .rank = 0, .world = 1};

    if (ud_dist_launched()) {
        struct ud_dist_opts dopt = {.bucket_bytes = (size_t)(o.bucket_mb * 1048576.0),
                                    .timeout_s = o.peer_timeout};
        if (!(R.d = ud_dist_init(&argc, &argv, &dopt, &e)))
            die(1, "%s", e.msg);
        R.rank = ud_dist_rank(R.d);
        R.world = ud_dist_world(R.d);
        if (R.world > 1) {
            g_rank = R.rank;
            ud_dist_handle_signals(R.d, PROG);
        }
    }
    if (o.coordinator)
        join_job(&R, &o);
    if (!o.threads_set) {
        long nproc = sysconf(_SC_NPROCESSORS_ONLN);
        int local = R.d ? ud_dist_local_size(R.d) : 1;
        o.threads = nproc > local ? (int)(nproc / local) : 1;
    }
    ud_kernels_set_threads(o.threads);
    if (R.rank == 0)
        check_out_dir(o.out);

    /* The architecture first when it is a spec file: its input shape sizes the images. */
    struct ud_arch arch;
    int preset;
    {
        int rc = ud_arch_from_option(o.arch, &arch, &preset, &le);
        if (session_agree(R.d, rc, &le, "--arch", &e))
            die(1, "%s", e.msg);
        if (!preset && o.input.c == 0)
            o.input = arch.input;
    }
    struct ud_load_opts lo = {
        .shape = o.input, .skip_bad = o.skip_bad, .max_samples = o.max_samples, .warn = warn_cb};
    ud_dataset_t *train = load_agreed(&R, "training data", o.data, &lo);
    if (ud_dataset_skipped(train) && R.rank == 0)
        fprintf(stderr, PROG ": skipped %zu bad samples in %s\n", ud_dataset_skipped(train),
                o.data);
    struct ud_shape shape = ud_dataset_shape(train);
    int nclasses = ud_dataset_num_classes(train);
    if (ud_arch_fit_data(o.arch, preset, o.data, shape, nclasses, &arch, &e))
        die(1, "%s", e.msg);
    ud_dataset_t *test = NULL;
    if (o.test) {
        struct ud_load_opts tlo = lo;
        tlo.shape = shape;
        tlo.max_samples = 0;
        test = load_agreed(&R, "test data", o.test, &tlo);
        int rc = ud_dataset_map_classes(test, ud_dataset_classes(train), nclasses, &e);
        if (rc)
            die(1, "%s: %s (classes must match the training data's)", o.test, e.msg);
        if (ud_dataset_input_size(test) != ud_dataset_input_size(train))
            die(1, "%s: samples have %zu values, the training data %zu", o.test,
                ud_dataset_input_size(test), ud_dataset_input_size(train));
    }

    /* Validation split (Create ML's automatic strategy by default). */
    struct ud_split split = {.kind = UD_SPLIT_AUTOMATIC, .seed = o.params.seed};
    if (strcmp(o.validation, "none") == 0)
        split.kind = UD_SPLIT_NONE;
    else if (strcmp(o.validation, "auto") != 0) {
        split.kind = UD_SPLIT_FIXED;
        split.ratio = parse_double("--validation", o.validation);
    }
    uint32_t *tr_idx = NULL, *va_idx = NULL;
    size_t ntr = 0, nva = 0;
    if (R.plan) {
        /* The coordinator's plan: its manifest must be this data, its indices then mean the
         * same samples on every rank. */
        int rc = ud_manifest_check(&R.plan->manifest, train, &le);
        if (session_agree(R.d, rc, &le, "checking the data against the job's manifest", &e))
            die(1, "%s: %s (the coordinator planned the job on other data)", o.data, e.msg);
        ntr = ud_plan_train_count(R.plan);
        nva = R.plan->nvalidation;
        tr_idx = malloc((ntr + 1) * sizeof *tr_idx);
        va_idx = malloc((nva + 1) * sizeof *va_idx);
        if (!tr_idx || !va_idx)
            die(1, "out of memory");
        ud_plan_train_indices(R.plan, tr_idx);
        if (nva)
            memcpy(va_idx, R.plan->validation, nva * sizeof *va_idx);
    } else if (ud_split_indices(ud_dataset_count(train), &split, &tr_idx, &ntr, &va_idx, &nva,
                                &e)) {
        die(2, "--validation: %s", e.msg);
    }
    if (ntr == 0)
        die(1, "%s: no training samples left after the validation split", o.data);

    /* Every rank must be training the same thing. */
    const char *fp = fingerprint(&o, &arch, train, ntr, nva, R.plan);
    if (R.d && R.world > 1) {
        char ref[2048];
        snprintf(ref, sizeof ref, "%s", fp);
        if (ud_dist_bcast(R.d, ref, sizeof ref, 0, "comparing settings", &e))
            die(1, "%s", e.msg);
        int rc = 0;
        if (strcmp(ref, fp) != 0) {
            const char *a = ref, *b = fp;
            while (*a && *a == *b)
                a++, b++;
            while (a > ref && a[-1] != '\n')
                a--, b--;
            rc = ud_err_set(&le, UD_ECONFLICT,
                            "its settings or data differ from rank 0's: rank 0 has '%.*s', this "
                            "rank '%.*s'",
                            (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
        }
        if (session_agree(R.d, rc, &le, "comparing settings", &e))
            die(1, "the ranks disagree: %s", e.msg);
    }

    ud_model_t *model = ud_model_new(&arch, &e);
    if (!model)
        die(1, "%s", e.msg);
    ud_model_init_params(model, o.params.seed);
    /* Each rank its own dropout stream (rank 0 keeps the standalone one). */
    if (R.rank > 0)
        ud_rng_seed(ud_model_rng(model), o.params.seed,
                    (uint64_t)UD_RNG_DROPOUT + 0x100u * (uint64_t)R.rank);
    if (ud_model_set_labels(model, ud_dataset_classes(train), nclasses, &e))
        die(1, "%s", e.msg);
    if (R.d && R.world > 1 &&
        ud_dist_bcast(R.d, ud_model_params(model), ud_model_param_count(model) * sizeof(float), 0,
                      "broadcasting the initial parameters", &e))
        die(1, "%s", e.msg);

    if (R.d && R.world > 1) {
        if (o.session)
            ud_dist_set_hint("no checkpoint in %s was complete yet", o.session);
        else
            ud_dist_set_hint("nothing to resume from (run with --session DIR to keep checkpoints)");
    }
    /* The session: resume, or refuse to mix a new run into an old one. */
    struct progress prog = {
        .o = &o, .rank = R.rank, .world = R.world, .tty = isatty(STDERR_FILENO)};
    struct ud_update_config cfg = {.params = o.params};
    struct resume rs;
    int resumed = 0;
    R.sess = (struct session){.dir = o.session,
                              .keep = o.keep,
                              .d = R.d,
                              .rank = R.rank,
                              .world = R.world,
                              .threads = o.threads,
                              .fingerprint = fp,
                              .val_loss = NAN,
                              .val_accuracy = NAN};
    if (o.session) {
        R.have_session = 1;
        prog.sess = &R.sess;
        int rc = 0;
        if (R.rank == 0 && mkdir(o.session, 0777) != 0 && errno != EEXIST)
            rc = ud_err_set(&le, UD_EIO, "--session %s: %s", o.session, strerror(errno));
        if (session_agree(R.d, rc, &le, "--session", &e))
            die(1, "%s", e.msg);
        /* Absolute, so that messages say where to resume from wherever they are read. */
        static char session_abs[4096];
        if (realpath(o.session, session_abs))
            R.sess.dir = o.session = session_abs;
        rc = session_resume(&R.sess, model, &rs, &e);
        if (rc == 0 && !o.resume)
            die(1,
                "--session %s already holds checkpoints of a run (newest: %s); add --resume to "
                "continue it, or choose a new directory",
                o.session, R.sess.last);
        if (rc == UD_ENOTFOUND) {
            if (o.resume && R.rank == 0)
                fprintf(stderr, PROG ": no complete checkpoint in %s; training from the start\n",
                        o.session);
        } else if (rc) {
            die(1, "cannot resume: %s", e.msg);
        } else {
            resumed = 1;
            if (rs.st.epoch > o.params.epochs ||
                (rs.st.epoch == o.params.epochs && rs.st.minibatch > 0))
                die(1, "cannot resume: %s is at epoch %lld, past --epochs %lld", R.sess.last,
                    (long long)rs.st.epoch + 1, (long long)o.params.epochs);
            cfg.start_epoch = rs.st.epoch;
            cfg.start_minibatch = rs.st.minibatch;
            memcpy(cfg.start_sums, rs.st.epoch_sums, sizeof cfg.start_sums);
            *ud_model_rng(model) = rs.dropout;
            if (R.rank == 0 && !o.quiet) {
                fprintf(stderr, PROG ": resuming from %s (iteration %lld, epoch %lld step %lld)\n",
                        R.sess.last, (long long)rs.st.iteration, (long long)rs.st.epoch + 1,
                        (long long)rs.st.minibatch + 1);
                if (!rs.same_world)
                    fprintf(stderr,
                            PROG ": the checkpoint was written by %d ranks, this run has %d: "
                                 "training continues with the same global batch and sample order "
                                 "but is not bitwise the run it would have been\n",
                            (int)rs.st.world, R.world);
                else if (rs.st.threads != o.threads)
                    fprintf(stderr,
                            PROG ": the checkpoint was written with %d threads per rank, this run "
                                 "uses %d: sums change order, so the result will not be bitwise "
                                 "that of an uninterrupted run (use --threads %d)\n",
                            (int)rs.st.threads, o.threads, (int)rs.st.threads);
            }
        }
    }

    struct ud_batch_provider trp, vap, tep;
    ud_dataset_provider(train, tr_idx, ntr, &trp);
    ud_dataset_provider(train, va_idx, nva, &vap);
    cfg.validation = nva ? &vap : NULL;
    cfg.hooks.rank = R.rank;
    cfg.hooks.world = R.world;
    cfg.hooks.user = &R;
    cfg.hooks.after_step = hook_after_step;
    if (R.plan)
        cfg.hooks.epoch_order = hook_epoch_order;
    if (R.d && R.world > 1) {
        if (ud_dist_grad_setup(R.d, model, &e))
            die(1, "%s", e.msg);
        cfg.hooks.grad_ready = hook_ready;
        cfg.hooks.grad_sync = hook_grad_sync;
        cfg.hooks.metric_sync = hook_metric_sync;
    }
    R.prog = &prog;
    struct ud_update_handlers handlers = {
        .events = UD_EVENT_TRAINING_BEGIN | UD_EVENT_EPOCH_END | UD_EVENT_MINIBATCH_END,
        .progress = on_progress,
        .completion = on_complete,
        .user = &prog,
    };
    ud_update_task_t *task = ud_update_task_new(model, &trp, &cfg, &handlers, &e);
    if (!task)
        die(1, "%s", e.msg);
    R.total_steps =
        (int64_t)((ntr + (size_t)o.params.mini_batch_size - 1) / (size_t)o.params.mini_batch_size) *
        o.params.epochs;
    if (resumed) {
        size_t nst;
        ud_optim_t *opt = ud_update_task_optim(task);
        float *st = ud_optim_state(opt, &nst);
        if (nst != rs.st.optim_floats)
            die(1, "cannot resume: %s holds %zu optimizer values, this run needs %zu", R.sess.last,
                rs.st.optim_floats, nst);
        if (nst)
            memcpy(st, rs.st.optim_state, nst * sizeof *st);
        ud_optim_set_steps(opt, rs.st.optim_steps);
        ud_ckpt_state_deinit(&rs.st);
    }
    if (!o.json && !o.quiet && R.rank == 0)
        fprintf(stderr,
                "training %s (%zu parameters) on %zu samples (%zu for validation), %d classes, "
                "%lld epochs, batch %lld, %s lr %g, %d rank%s x %d thread%s\n",
                o.arch, ud_model_param_count(model), ntr, nva, nclasses, (long long)o.params.epochs,
                (long long)o.params.mini_batch_size, ud_optimizer_name(o.params.optimizer),
                o.params.learning_rate, R.world, R.world == 1 ? "" : "s", o.threads,
                o.threads == 1 ? "" : "s");
    if (R.world == 1) {
        g_task = task;
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    int rc = ud_update_task_run(task);
    g_task = NULL;
    if (rc) {
        const struct ud_err *te = ud_update_task_error(task);
        char hint[4200];
        if (R.sess.last[0])
            snprintf(hint, sizeof hint, "; resume from %s with --resume", R.sess.last);
        else if (o.session)
            snprintf(hint, sizeof hint, "; no checkpoint was completed yet");
        else
            hint[0] = '\0';
        g_fail_code = te->code ? te->code : rc;
        if (rc == UD_ECANCELLED)
            die(130, "training cancelled at epoch %lld; no model written%s",
                (long long)prog.last.epoch_index + 1, hint);
        die(1, "training failed: %s%s", te->msg[0] ? te->msg : ud_strerror(rc), hint);
    }
    struct ud_update_metrics fin = prog.last;
    ud_update_task_destroy(&task);

    /* Score the test set: each rank its slice, every sample once. */
    struct ud_eval_result ev = {0};
    int have_test = 0;
    if (test) {
        ud_dataset_provider(test, NULL, 0, &tep);
        if (evaluate_sharded(&R, model, test, &ev, &e))
            die(1, "%s: evaluation failed: %s", o.test, e.msg);
        have_test = 1;
    }
    struct ud_dist_stats ds = {0};
    if (R.d)
        ud_dist_stats(R.d, &ds);

    if (R.rank == 0) {
        /* Describe and write the model. */
        struct ud_metadata *md = ud_model_metadata(model);
        char desc[512];
        snprintf(desc, sizeof desc, "%s classifier trained by updraft-worker on %s for %lld epochs",
                 o.arch, o.data, (long long)o.params.epochs);
        ud_metadata_set(&md->short_description, o.description ? o.description : desc);
        if (o.author)
            ud_metadata_set(&md->author, o.author);
        if (o.license)
            ud_metadata_set(&md->license, o.license);
        if (o.model_version)
            ud_metadata_set(&md->version, o.model_version);
        ud_metadata_set_additional(md, "dataset", o.data);
        ud_metadata_set_additional(md, "architecture", o.arch);
        ud_metadata_set_additional(md, "trained_by", "updraft-worker " UD_VERSION_STRING);
        ud_update_defaults_from_params(ud_model_update_defaults(model), &o.params);
        ud_model_set_metric(model, "train_loss", fin.loss);
        ud_model_set_metric(model, "train_accuracy", fin.accuracy);
        if (!isnan(fin.val_accuracy)) {
            ud_model_set_metric(model, "validation_loss", fin.val_loss);
            ud_model_set_metric(model, "validation_accuracy", fin.val_accuracy);
        }
        if (have_test) {
            ud_model_set_metric(model, "test_loss", ev.loss);
            ud_model_set_metric(model, "test_accuracy", ev.accuracy);
        }
        ud_model_set_metric(model, "epochs", (double)o.params.epochs);
        ud_model_set_metric(model, "training_samples", (double)ntr);
        ud_model_set_metric(model, "ranks", (double)R.world);
        if (ud_udm_write(model, o.out, &e))
            die(1, "%s", e.msg);

        double seconds = now_s() - t_start;
        if (o.json) {
            if (have_test)
                json_eval("test", model, &ev);
            printf("{\"event\":\"summary\"");
            ud_json_field(stdout, "samples_per_sec", prog.best_rate);
            ud_json_field(stdout, "train_loss", fin.loss);
            ud_json_field(stdout, "train_accuracy", fin.accuracy);
            ud_json_field(stdout, "validation_accuracy", fin.val_accuracy);
            ud_json_field(stdout, "test_accuracy", have_test ? ev.accuracy : NAN);
            ud_json_field(stdout, "test_loss", have_test ? ev.loss : NAN);
            ud_json_field(stdout, "peak_rss_mb", peak_rss_mb());
            ud_json_field(stdout, "seconds", seconds);
            ud_json_field(stdout, "grad_sync_seconds", ds.wait_seconds);
            ud_json_field(stdout, "grad_bytes_per_step",
                          ds.steps ? ds.bytes / (double)ds.steps : 0);
            ud_json_field(stdout, "checkpoint_seconds", R.sess.write_seconds);
            printf(",\"epochs\":%lld,\"params\":%zu,\"world\":%d,\"threads\":%d,\"buckets\":%d,"
                   "\"checkpoints\":%d,\"out\":",
                   (long long)o.params.epochs, ud_model_param_count(model), R.world, o.threads,
                   ds.nbuckets, R.sess.written);
            ud_json_str(stdout, o.out);
            printf("}\n");
            fflush(stdout);
        } else {
            if (have_test) {
                printf("test accuracy %.4f  loss %.4f  (%zu samples)\n", ev.accuracy, ev.loss,
                       ev.n);
                ud_eval_write_confusion(stdout, model, &ev);
            }
            if (!o.quiet)
                fprintf(stderr, "wrote %s  (%.1f s, best %.0f samples/s, peak RSS %.0f MB)\n",
                        o.out, seconds, prog.best_rate, peak_rss_mb());
        }
        if (g_cc)
            upload_model(&o, &fin, &ev, have_test);
    }
    if (g_cc) {
        /* The other ranks wait for the upload, heartbeating, so that the job never looks
         * half-gone while rank 0 waits out a coordinator restart. */
        if (R.d && R.world > 1) {
            ud_dist_set_timeout(R.d, o.coord_timeout + 60);
            if (ud_dist_barrier(R.d, "waiting for the model upload", &e))
                die(1, "%s", e.msg);
        }
        coord_client_destroy(&g_cc, R.rank == 0 ? 5.0 : 0.0);
        ud_msg_deinit(&g_job);
    }
    ud_eval_result_deinit(&ev);
    ud_model_destroy(&model);
    ud_dataset_destroy(&train);
    ud_dataset_destroy(&test);
    free(tr_idx);
    free(va_idx);
    if (R.d)
        ud_dist_finalize(&R.d);
    return 0;
}

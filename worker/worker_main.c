/*  worker_main.c — updraft-worker: train a classifier from labeled data.
 *
 *  Standalone, like Create ML's MLImageClassifier training from folders: load the data (image
 *  folders, IDX or CSV), split off validation, build the network (preset or spec file), run the
 *  update engine, score the test set, write the .udm. On a terminal it draws a progress bar per
 *  epoch; with --json it prints one JSON object per line, the last a summary.
 *
 *  main reads top to bottom as the phases of one run (struct run): parse the options, start the
 *  ranks, join the coordinator's job, load the data, split it, agree the settings across ranks,
 *  build the model, resume the session, train, score the test set, write the model, print the
 *  summary, hand the model to the coordinator, clean up. Under mpirun every rank runs the same
 *  phases; a phase that fails ends the process through die(), which also tells the coordinator.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_ckpt.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_data.h"
#include "updraft/ud_eval.h"
#include "updraft/ud_file.h"
#include "updraft/ud_jsonw.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_model.h"
#include "updraft/ud_num.h"
#include "updraft/ud_plan.h"
#include "updraft/ud_msg.h"
#include "updraft/ud_udm.h"
#include "updraft/ud_update.h"
#include "worker_coord.h"
#include "worker_dist.h"
#include "worker_options.h"
#include "worker_session.h"

#define PROG "updraft-worker"

/* ------------------------------------------------------------------------------- a run */

/* What the progress handler needs (the update engine calls it with this as user). */
struct progress {
    const struct worker_options *o;
    int rank, world; /* only rank 0 reports */
    struct worker_session *sess;
    int tty;
    double last_draw;
    double best_rate; /* samples/s of the fastest epoch (steady state, as the peers report) */
    struct ud_update_metrics last;
};

/* Everything one run of the worker holds, from the options to the results. */
struct run {
    struct worker_options o;
    double t_start;
    /* The ranks: d is NULL standalone (or a world of one). */
    worker_dist_t *d;
    int rank, world;
    int named_rank; /* >= 0 under mpirun with more than one rank: messages name the rank */
    /* Under a coordinator: the link, the job it gave us, the plan of which samples each rank
     * trains on. */
    worker_coord_t *cc;
    int joined;                 /* the job message arrived and decoded */
    struct ud_msg job;          /* args, plan, session, out */
    int fail_code;              /* the UD_E* code die() reports as the failure's */
    const struct ud_plan *plan; /* &job.plan, or NULL */
    /* The data. */
    struct ud_arch arch;
    int preset;
    ud_dataset_t *train, *test;
    int nclasses;
    uint32_t *tr_idx, *va_idx; /* the training and validation samples */
    size_t ntr, nva;
    char fingerprint[2048]; /* what every rank and a resumed checkpoint must agree on */
    /* Training. */
    ud_model_t *model;
    struct worker_session sess;
    int have_session;
    char session_abs[4096];
    struct worker_resume rs;
    int resumed;
    struct ud_update_config cfg;
    struct progress prog;
    int64_t total_steps;
    /* Results. */
    struct ud_update_metrics fin;
    struct ud_eval_result ev;
    int have_test;
};

/* The one file-level variable: a SIGINT handler reaches nothing but globals, and cancelling
 * the task is all it does. Set while a standalone run trains. */
static ud_update_task_t *volatile g_cancel_task;

static void on_signal(int sig)
{
    (void)sig;
    if (g_cancel_task)
        ud_update_task_cancel(g_cancel_task);
}

/* ------------------------------------------------------------------ the coordinator link */

/* Rank 0 tells the coordinator how the job ended badly (within a couple of seconds). */
static void coord_report_end(struct run *R, int exit_code, const char *msg)
{
    worker_coord_t *cc = R->cc;
    R->cc = NULL; /* once */
    if (!cc)
        return;
    int rank0 = R->joined && R->rank == 0;
    if (rank0 && R->job.job) {
        struct ud_err e = {0};
        struct ud_msg m = {.type = UD_MSG_DONE,
                           .job = R->job.job,
                           .rank = 0,
                           .status = exit_code == 130 ? "cancelled" : "failed",
                           .code = exit_code == 130 ? UD_ECANCELLED : R->fail_code,
                           .msg = (char *)msg};
        worker_coord_post(cc, &m, 1, &e);
    }
    worker_coord_destroy(&cc, rank0 ? 2.0 : 0.0);
}

/* A progress message for the job at m's position, without metrics yet. */
static struct ud_msg progress_msg(const struct run *R, const struct ud_update_metrics *m)
{
    return (struct ud_msg){.type = UD_MSG_PROGRESS,
                           .job = R->job.job,
                           .rank = 0,
                           .step = m->step,
                           .epoch = m->epoch_index,
                           .minibatch = m->minibatch_index,
                           .steps_per_epoch = m->steps_per_epoch,
                           .total_steps = m->steps_per_epoch * R->o.params.epochs};
}

/* Posts a progress message (rank 0 under a coordinator) with the given metrics; NaNs left out. */
static void coord_progress(struct run *R, const struct ud_update_metrics *m, int n,
                           const char *const *keys, const double *vals)
{
    if (!R->cc || !R->joined || R->rank != 0)
        return;
    struct ud_err e = {0};
    struct ud_msg msg = progress_msg(R, m);
    for (int i = 0; i < n; i++)
        if (isfinite(vals[i]))
            ud_msg_add_metric(&msg, keys[i], vals[i]);
    if (worker_coord_post(R->cc, &msg, 0, &e))
        fprintf(stderr, PROG ": warning: progress not sent: %s\n", e.msg);
    free(msg.metrics);
}

/* Prints the error (naming the rank under mpirun), tells the coordinator, exits with code. */
static void die(struct run *R, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
static void die(struct run *R, int code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (R->named_rank >= 0)
        fprintf(stderr, PROG ": rank %d: %s\n", R->named_rank, msg);
    else
        fprintf(stderr, PROG ": %s\n", msg);
    coord_report_end(R, code, msg);
    exit(code);
}

/* Parses argv into R->o; --help prints the usage and exits 0, a bad option exits 2. */
static void parse_options(struct run *R, int argc, char **argv)
{
    struct ud_err e = {0};
    int rc = worker_options_parse(&R->o, argc, argv, &e);
    if (rc == WORKER_OPTIONS_HELP) {
        worker_options_usage(stdout);
        exit(0);
    }
    if (rc)
        die(R, 2, "%s", e.msg);
}

/* ------------------------------------------------------------------ progress reporting */

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

static void json_training_begin(const struct progress *p, struct ud_update_context *ctx)
{
    const struct worker_options *o = p->o;
    const struct ud_update_metrics *m = &ctx->metrics;
    printf("{\"event\":\"training_begin\",\"task\":");
    ud_json_str(stdout, ud_update_task_identifier(ctx->task));
    printf(",\"epochs\":%lld,\"batch\":%lld,\"steps_per_epoch\":%lld,\"params\":%zu,"
           "\"world\":%d,\"threads\":%d,\"start_epoch\":%lld,\"start_minibatch\":%lld}\n",
           (long long)o->params.epochs, (long long)o->params.mini_batch_size,
           (long long)m->steps_per_epoch, ud_model_param_count(ctx->model), p->world, o->threads,
           (long long)m->epoch_index, (long long)m->minibatch_index);
    fflush(stdout);
}

/* The metrics of a JSON progress or epoch_end line, in the --json format's order (the
 * validation scores on epoch_end lines only). */
static void json_metrics(const struct ud_update_metrics *m, int with_validation)
{
    ud_json_field(stdout, "loss", m->loss);
    ud_json_field(stdout, "accuracy", m->accuracy);
    if (with_validation) {
        ud_json_field(stdout, "val_loss", m->val_loss);
        ud_json_field(stdout, "val_accuracy", m->val_accuracy);
    }
    ud_json_field(stdout, "samples_per_sec", m->samples_per_sec);
    ud_json_field(stdout, "learning_rate", m->learning_rate);
}

/* An epoch's end: a JSON line, or the finished bar (a plain line when not on a terminal). */
static void print_epoch_end(struct progress *p, const struct ud_update_metrics *m)
{
    const struct worker_options *o = p->o;
    if (o->json) {
        printf("{\"event\":\"epoch_end\",\"epoch\":%lld", (long long)m->epoch_index);
        json_metrics(m, 1);
        ud_json_field(stdout, "seconds", m->seconds);
        printf("}\n");
        fflush(stdout);
        return;
    }
    if (o->quiet)
        return;
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

/* The update engine's progress handler (user: the run). */
static void on_progress(struct ud_update_context *ctx, void *user)
{
    struct run *R = user;
    struct progress *p = &R->prog;
    const struct ud_update_metrics *m = &ctx->metrics;
    const struct worker_options *o = p->o;
    p->last = *m;
    if (ctx->event == UD_EVENT_EPOCH_END && !isnan(m->val_accuracy) && p->sess) {
        p->sess->val_loss = m->val_loss;
        p->sess->val_accuracy = m->val_accuracy;
    }
    if (p->rank != 0)
        return;
    if (ctx->event == UD_EVENT_TRAINING_BEGIN) {
        if (o->json)
            json_training_begin(p, ctx);
        return;
    }
    if (ctx->event == UD_EVENT_MINIBATCH_END) {
        if (p->tty && !o->json && !o->quiet) {
            double t = ud_clock_mono();
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
    static const char *const keys[] = {"epoch_loss", "epoch_accuracy", "val_loss", "val_accuracy"};
    double vals[] = {m->loss, m->accuracy, m->val_loss, m->val_accuracy};
    coord_progress(R, m, 4, keys, vals);
    print_epoch_end(p, m);
}

static void on_complete(struct ud_update_context *ctx, void *user)
{
    struct run *R = user;
    R->prog.last = ctx->metrics;
}

static void warn_cb(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, PROG ": warning: %s\n", msg);
}

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

/* ----------------------------------------------------------------- the engine's hooks */

static void hook_ready(void *user, int layer, struct ud_span span)
{
    worker_dist_grad_ready(((struct run *)user)->d, layer, span);
}
static int hook_grad_sync(void *user, float *g, size_t n, ud_span_apply_fn apply, void *actx,
                          struct ud_err *e)
{
    return worker_dist_grad_sync(((struct run *)user)->d, g, n, apply, actx, e);
}
static int hook_metric_sync(void *user, double *v, size_t n, struct ud_err *e)
{
    return worker_dist_metric_sync(((struct run *)user)->d, v, n, e);
}
static void hook_epoch_order(void *user, int64_t epoch, uint32_t *perm, size_t n)
{
    ud_plan_epoch_order(((struct run *)user)->plan, epoch, perm, n);
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
    int rc = worker_session_checkpoint(&R->sess, t, e);
    if (rc || R->rank != 0)
        return rc;
    if (R->o.json)
        json_checkpoint(R, m->step, R->sess.write_seconds - before);
    if (R->cc) {
        int64_t epoch, minibatch;
        ud_update_task_position(t, &epoch, &minibatch);
        struct ud_err pe = {0};
        struct ud_msg msg = {.type = UD_MSG_CHECKPOINT,
                             .job = R->job.job,
                             .rank = 0,
                             .step = m->step,
                             .epoch = epoch,
                             .minibatch = minibatch,
                             .path = R->sess.last};
        if (worker_coord_post(R->cc, &msg, 1, &pe))
            fprintf(stderr, PROG ": warning: checkpoint not announced: %s\n", pe.msg);
    }
    return 0;
}

/* Every --report-every steps: to the coordinator, and rank 0's JSON or text line. */
static void report_step(struct run *R, const struct ud_update_metrics *m)
{
    const struct worker_options *o = &R->o;
    if (R->cc) {
        static const char *const keys[] = {"loss", "accuracy", "samples_per_sec", "learning_rate"};
        double vals[] = {m->loss, m->accuracy, m->samples_per_sec, m->learning_rate};
        coord_progress(R, m, 4, keys, vals);
    }
    if (R->rank != 0)
        return;
    if (o->json) {
        printf("{\"event\":\"progress\",\"step\":%lld,\"epoch\":%lld,\"minibatch\":%lld",
               (long long)m->step, (long long)m->epoch_index, (long long)m->minibatch_index);
        json_metrics(m, 0);
        printf("}\n");
        fflush(stdout);
    } else if (!o->quiet && !R->prog.tty) {
        fprintf(stderr, "step %lld (epoch %lld, %lld/%lld)  loss %.4f  acc %.4f  %.0f samples/s\n",
                (long long)m->step, (long long)m->epoch_index + 1,
                (long long)m->minibatch_index + 1, (long long)m->steps_per_epoch, m->loss,
                m->accuracy, m->samples_per_sec);
    }
}

/* A cancel from the coordinator: every rank stops at the same step, after a checkpoint. */
static int check_cancel(struct run *R, ud_update_task_t *t, const struct ud_update_metrics *m,
                        int written, struct ud_err *e)
{
    int64_t flag = worker_coord_cancelled(R->cc);
    if (R->d && R->world > 1 &&
        worker_dist_max_i64(R->d, &flag, 1, "agreeing on a cancel from the coordinator", e))
        return e->code;
    if (!flag)
        return 0;
    int rc = R->have_session && !written ? checkpoint_now(R, t, m, e) : 0;
    if (rc)
        return rc;
    return ud_err_set(e, UD_ECANCELLED, "cancelled by the coordinator at step %lld",
                      (long long)m->step);
}

/* After every step: progress reports, checkpoints, a coordinator's cancel. */
static int hook_after_step(void *user, ud_update_task_t *t, struct ud_err *e)
{
    struct run *R = user;
    const struct worker_options *o = &R->o;
    struct ud_update_metrics m = ud_update_task_metrics(t);
    if (R->d)
        worker_dist_set_step(R->d, m.step);
    if (R->cc)
        worker_coord_set_step(R->cc, m.step);
    if (o->report_every && m.step % o->report_every == 0)
        report_step(R, &m);
    int due = o->checkpoint_every ? m.step % o->checkpoint_every == 0
                                  : m.minibatch_index + 1 == m.steps_per_epoch;
    int written = 0;
    if (R->have_session && (due || m.step == R->total_steps)) {
        int rc = checkpoint_now(R, t, &m, e);
        if (rc)
            return rc;
        written = 1;
    }
    return R->cc ? check_cancel(R, t, &m, written, e) : 0;
}

/* ----------------------------------------------------------------- the run's identity */

/* A 64-bit FNV-1a, for fingerprints. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* The run's identity into R->fingerprint: what must be equal on every rank, and in a
 * checkpoint to resume from. One fact per line; the epochs line may differ on resume. */
static void fingerprint(struct run *R)
{
    const ud_dataset_t *ds = R->train;
    char *fp = R->fingerprint;
    size_t at = 0, cap = sizeof R->fingerprint;
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
    ud_arch_format(&R->arch, arch, sizeof arch);
    uint64_t ah = fnv(0xcbf29ce484222325ull, arch, strlen(arch));
    const struct ud_update_params *p = &R->o.params;
#define FP(...) at += (size_t)snprintf(fp + at, at < cap ? cap - at : 0, __VA_ARGS__)
    FP("architecture %016llx\n", (unsigned long long)ah);
    FP("data %zu samples of (%d,%d,%d), %d classes %016llx, labels %016llx\n", ud_dataset_count(ds),
       sh.c, sh.h, sh.w, ud_dataset_num_classes(ds), (unsigned long long)ch, (unsigned long long)h);
    FP("split %zu training, %zu validation\n", R->ntr, R->nva);
    if (R->plan)
        FP("plan %016llx\n", (unsigned long long)ud_plan_hash(R->plan));
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
    if ((rc = worker_dist_agree_err(R->d, rc, &le, "evaluating the test set", e)) || !R->d)
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
    rc = worker_dist_sum_f64(R->d, v, k + 2, "summing the test scores", e);
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

/* ------------------------------------------------------------------ joining a job */

/* The CURVE keys for the coordinator link from the two key files. Returns 0 or an error. */
static int read_curve_keys(const struct worker_options *o, struct worker_coord_curve *curve,
                           struct ud_err *e)
{
    struct ud_key server, self;
    memset(&self, 0, sizeof self);
    if (ud_key_read(o->curve_server_key, UD_KEY_CURVE_PUBLIC, &server, e) != 0)
        ud_err_prefix(e, "--curve-server-key");
    else if (ud_key_read(o->curve_secret, UD_KEY_CURVE_SECRET, &self, e) != 0)
        ud_err_prefix(e, "--curve-secret");
    if (!e->code) {
        memcpy(curve->server_pub, server.pub, 32);
        memcpy(curve->pub, self.pub, 32);
        memcpy(curve->sec, self.sec, 32);
        snprintf(curve->id, sizeof curve->id, "%s", self.id);
    }
    ud_key_wipe(&self);
    return e->code;
}

/* Rank 0 registers (for --job, or the oldest job waiting) and receives the job message's
 * bytes in *raw. Returns 0 or an error. */
static int register_job(struct run *R, void **raw, size_t *rawlen, struct ud_err *e)
{
    const struct worker_options *o = &R->o;
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
    int rc = worker_coord_request(R->cc, &m, &reply, raw, rawlen, o->coord_timeout, e);
    if (!rc && reply.type != UD_MSG_JOB)
        rc = ud_err_set(e, UD_EFORMAT, "the coordinator answered register with '%s'",
                        ud_msg_type_name(reply.type));
    if (!rc)
        ud_msg_deinit(&reply);
    return rc;
}

/* Connects every rank to the coordinator; rank 0 registers. All ranks agree it worked. Returns
 * rank 0's copy of the job message's bytes (malloc'd; NULL elsewhere). */
static void *connect_and_register(struct run *R, size_t *rawlen)
{
    const struct worker_options *o = &R->o;
    struct ud_err e = {0}, le = {0};
    void *raw = NULL;
    struct worker_coord_curve curve;
    memset(&curve, 0, sizeof curve);
    int rc = o->curve_secret ? read_curve_keys(o, &curve, &le) : 0;
    if (!rc &&
        !(R->cc = worker_coord_new(o->coordinator, R->rank, o->curve_secret ? &curve : NULL, &le)))
        rc = le.code;
    sodium_memzero(&curve, sizeof curve);
    if (!rc && R->rank == 0)
        rc = register_job(R, &raw, rawlen, &le);
    if (worker_dist_agree_err(R->d, rc, &le, "registering with the coordinator", &e))
        die(R, 1, "%s: %s", o->coordinator, e.msg);
    return raw;
}

/* Rank 0's copy of the job message's bytes, to every rank. */
static void *share_job(struct run *R, void *raw, size_t *rawlen)
{
    struct ud_err e = {0};
    if (!R->d || R->world == 1)
        return raw;
    uint64_t n = *rawlen;
    if (worker_dist_bcast(R->d, &n, sizeof n, 0, "sharing the job", &e))
        die(R, 1, "%s", e.msg);
    if (R->rank != 0 && !(raw = malloc(n ? n : 1)))
        die(R, 1, "out of memory");
    *rawlen = n;
    if (worker_dist_bcast(R->d, raw, *rawlen, 0, "sharing the job", &e))
        die(R, 1, "%s", e.msg);
    return raw;
}

/* Re-reads the options from the job's: its args, then where its session and model go. The
 * session is the job's own: whatever checkpoint it holds is this job's, so a relaunch always
 * resumes from it. The link's own options (and --threads, --json, --quiet) are kept. */
static void take_job_options(struct run *R)
{
    struct worker_options keep = R->o;
    const struct ud_msg *job = &R->job;
    int n = 0;
    char **av = calloc((size_t)job->nargs + 12, sizeof *av);
    if (!av)
        die(R, 1, "out of memory");
    av[n++] = PROG;
    for (int i = 0; i < job->nargs; i++)
        av[n++] = job->args[i];
    av[n++] = "--session";
    av[n++] = job->session;
    av[n++] = "--out";
    av[n++] = job->out;
    av[n++] = "--resume";
    char threads[16];
    if (keep.threads_set) {
        snprintf(threads, sizeof threads, "%d", keep.threads);
        av[n++] = "--threads";
        av[n++] = threads;
    }
    if (keep.json)
        av[n++] = "--json";
    if (keep.quiet)
        av[n++] = "--quiet";
    parse_options(R, n, av); /* R->o points into R->job's strings, which live as long as R */
    free(av);
    R->o.coordinator = keep.coordinator;
    R->o.job = job->job;
    R->o.coord_timeout = keep.coord_timeout;
}

/* Under a coordinator: rank 0 registers and receives the job; every rank gets the reply's
 * bytes, decodes them, and re-reads its options from the job's. */
static void join_job(struct run *R)
{
    struct ud_err e = {0};
    const char *coordinator = R->o.coordinator;
    size_t rawlen = 0;
    void *raw = connect_and_register(R, &rawlen);
    raw = share_job(R, raw, &rawlen);
    int rc = ud_msg_decode(raw, rawlen, &R->job, &e);
    free(raw);
    if (rc)
        die(R, 1, "%s: the job message does not decode: %s", coordinator, e.msg);
    R->joined = 1;
    if (R->job.plan.world != R->world)
        die(R, 1, "job %s was planned for %d rank%s, this run has %d: start it with mpirun -np %d",
            R->job.job, R->job.plan.world, R->job.plan.world == 1 ? "" : "s", R->world,
            R->job.plan.world);
    take_job_options(R);
    if (R->d) {
        worker_dist_set_timeout(R->d, R->o.peer_timeout);
        worker_dist_set_bucket_bytes(R->d, (size_t)(R->o.bucket_mb * 1048576.0));
    }
    R->plan = &R->job.plan;
    if (worker_coord_start(R->cc, R->job.job, R->job.heartbeat_s, &e))
        fprintf(stderr, PROG ": warning: no heartbeats to the coordinator: %s\n", e.msg);
    if (R->rank == 0 && !R->o.quiet)
        fprintf(stderr, PROG ": joined %s (%s) at %s: %d rank%s, %zu training samples in shards\n",
                R->job.job, R->job.name, coordinator, R->world, R->world == 1 ? "" : "s",
                ud_plan_train_count(&R->job.plan));
}

/* Before the upload ends the job, the test metrics go into the job's metrics: on the request
 * socket, so that they arrive first. */
static void report_test_metrics(struct run *R)
{
    struct ud_err e = {0};
    struct ud_msg reply;
    struct ud_msg pm = progress_msg(R, &R->fin);
    ud_msg_add_metric(&pm, "test_accuracy", R->ev.accuracy);
    ud_msg_add_metric(&pm, "test_loss", R->ev.loss);
    if (worker_coord_request(R->cc, &pm, &reply, NULL, NULL, 30, &e) == 0)
        ud_msg_deinit(&reply);
    else
        fprintf(stderr, PROG ": warning: test metrics not reported: %s\n", e.msg);
    free(pm.metrics);
}

/* Rank 0 hands the finished model to the coordinator, which registers it as a new version. */
static void upload_model(struct run *R)
{
    const struct worker_options *o = &R->o;
    const struct ud_update_metrics *fin = &R->fin;
    struct ud_err e = {0};
    char *bytes = NULL;
    size_t len = 0;
    if (ud_file_read(o->out, UD_PROTO_MAX_MESSAGE - 4096, &bytes, &len, &e))
        die(R, 1, "cannot upload the model: %s", e.msg);
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)bytes, len);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    struct ud_msg m = {.type = UD_MSG_MODEL,
                       .job = R->job.job,
                       .rank = 0,
                       .name = R->job.name,
                       .sha256 = hex,
                       .udm = (uint8_t *)bytes,
                       .udm_len = len};
    const char *keys[] = {"train_loss", "train_accuracy", "validation_accuracy", "test_accuracy",
                          "test_loss"};
    double vals[] = {fin->loss, fin->accuracy, fin->val_accuracy,
                     R->have_test ? R->ev.accuracy : NAN, R->have_test ? R->ev.loss : NAN};
    for (int i = 0; i < 5; i++)
        if (isfinite(vals[i]))
            ud_msg_add_metric(&m, keys[i], vals[i]);
    if (R->have_test)
        report_test_metrics(R);
    struct ud_msg reply;
    int rc = worker_coord_request(R->cc, &m, &reply, NULL, NULL, o->coord_timeout, &e);
    free(m.metrics);
    free(bytes);
    if (rc) {
        R->fail_code = rc;
        die(R, 1, "the model (kept in %s) was not registered: %s", o->out, e.msg);
    }
    if (!o->quiet && !o->json)
        fprintf(stderr, PROG ": registered %s version %lld (sha256 %.12s)\n", R->job.name,
                (long long)reply.version, hex);
    if (o->json) {
        printf("{\"event\":\"registered\",\"name\":");
        ud_json_str(stdout, R->job.name);
        printf(",\"version\":%lld,\"sha256\":\"%s\"}\n", (long long)reply.version, hex);
        fflush(stdout);
    }
    ud_msg_deinit(&reply);
}

/* ------------------------------------------------------------------------- the phases */

/* MPI when launched by mpirun: the rank, the world, the signal handlers. */
static void start_ranks(struct run *R, int *argc, char ***argv)
{
    struct ud_err e = {0};
    if (!worker_dist_launched())
        return;
    struct worker_dist_opts dopt = {.bucket_bytes = (size_t)(R->o.bucket_mb * 1048576.0),
                                    .timeout_s = R->o.peer_timeout};
    if (!(R->d = worker_dist_init(argc, argv, &dopt, &e)))
        die(R, 1, "%s", e.msg);
    R->rank = worker_dist_rank(R->d);
    R->world = worker_dist_world(R->d);
    if (R->world > 1) {
        R->named_rank = R->rank;
        worker_dist_handle_signals(R->d, PROG);
    }
}

/* The threads per rank (default: this host's cores shared by its ranks), and a check that the
 * model can be written, now rather than after an hour of training. */
static void prepare(struct run *R)
{
    struct worker_options *o = &R->o;
    if (!o->threads_set) {
        long nproc = sysconf(_SC_NPROCESSORS_ONLN);
        int local = R->d ? worker_dist_local_size(R->d) : 1;
        o->threads = nproc > local ? (int)(nproc / local) : 1;
    }
    ud_kernels_set_threads(o->threads);
    struct ud_err e = {0};
    if (R->rank == 0 && ud_file_check_writable(o->out, &e)) {
        struct stat st;
        if (stat(o->out, &st) == 0 && S_ISDIR(st.st_mode))
            die(R, 1, "--out %s; give a file name such as %s/model.udm", e.msg, o->out);
        die(R, 1, "--out %s", e.msg);
    }
}

/* Loads a data set on every rank; all fail together when any rank could not. */
static ud_dataset_t *load_agreed(struct run *R, const char *what, const char *src,
                                 const struct ud_load_opts *lo)
{
    struct ud_err le = {0}, e = {0};
    ud_dataset_t *ds = ud_dataset_load(src, lo, &le);
    if (worker_dist_agree_err(R->d, ds ? 0 : (le.code ? le.code : UD_EIO), &le, what, &e))
        die(R, 1, "cannot load the %s: %s", what, e.msg);
    return ds;
}

/* The architecture (first, when a spec file: its input shape sizes the images), the training
 * data, the architecture fitted to it, and the test data with the training data's classes. */
static void load_data(struct run *R)
{
    struct worker_options *o = &R->o;
    struct ud_err e = {0}, le = {0};
    int rc = ud_arch_from_option(o->arch, &R->arch, &R->preset, &le);
    if (worker_dist_agree_err(R->d, rc, &le, "--arch", &e))
        die(R, 1, "%s", e.msg);
    if (!R->preset && o->input.c == 0)
        o->input = R->arch.input;
    struct ud_load_opts lo = {
        .shape = o->input, .skip_bad = o->skip_bad, .max_samples = o->max_samples, .warn = warn_cb};
    R->train = load_agreed(R, "training data", o->data, &lo);
    if (ud_dataset_skipped(R->train) && R->rank == 0)
        fprintf(stderr, PROG ": skipped %zu bad samples in %s\n", ud_dataset_skipped(R->train),
                o->data);
    struct ud_shape shape = ud_dataset_shape(R->train);
    R->nclasses = ud_dataset_num_classes(R->train);
    if (ud_arch_fit_data(o->arch, R->preset, o->data, shape, R->nclasses, &R->arch, &e))
        die(R, 1, "%s", e.msg);
    if (!o->test)
        return;
    struct ud_load_opts tlo = lo;
    tlo.shape = shape;
    tlo.max_samples = 0;
    R->test = load_agreed(R, "test data", o->test, &tlo);
    if (ud_dataset_map_classes(R->test, ud_dataset_classes(R->train), R->nclasses, &e))
        die(R, 1, "%s: %s (classes must match the training data's)", o->test, e.msg);
    if (ud_dataset_input_size(R->test) != ud_dataset_input_size(R->train))
        die(R, 1, "%s: samples have %zu values, the training data %zu", o->test,
            ud_dataset_input_size(R->test), ud_dataset_input_size(R->train));
}

/* The coordinator's plan: its manifest must be this data, its indices then mean the same
 * samples on every rank. */
static void split_by_plan(struct run *R)
{
    struct ud_err e = {0}, le = {0};
    int rc = ud_manifest_check(&R->plan->manifest, R->train, &le);
    if (worker_dist_agree_err(R->d, rc, &le, "checking the data against the job's manifest", &e))
        die(R, 1, "%s: %s (the coordinator planned the job on other data)", R->o.data, e.msg);
    R->ntr = ud_plan_train_count(R->plan);
    R->nva = R->plan->nvalidation;
    R->tr_idx = malloc((R->ntr + 1) * sizeof *R->tr_idx);
    R->va_idx = malloc((R->nva + 1) * sizeof *R->va_idx);
    if (!R->tr_idx || !R->va_idx)
        die(R, 1, "out of memory");
    ud_plan_train_indices(R->plan, R->tr_idx);
    if (R->nva)
        memcpy(R->va_idx, R->plan->validation, R->nva * sizeof *R->va_idx);
}

/* The training and validation samples: the plan's, or a validation split (Create ML's
 * automatic strategy by default). */
static void split_data(struct run *R)
{
    const struct worker_options *o = &R->o;
    struct ud_err e = {0};
    struct ud_split split = {.kind = UD_SPLIT_AUTOMATIC, .seed = o->params.seed};
    if (strcmp(o->validation, "none") == 0) {
        split.kind = UD_SPLIT_NONE;
    } else if (strcmp(o->validation, "auto") != 0) {
        split.kind = UD_SPLIT_FIXED;
        if (ud_num_double("--validation", o->validation, 0, 1, &split.ratio, &e))
            die(R, 2, "%s", e.msg);
    }
    if (R->plan)
        split_by_plan(R);
    else if (ud_split_indices(ud_dataset_count(R->train), &split, &R->tr_idx, &R->ntr, &R->va_idx,
                              &R->nva, &e))
        die(R, 2, "--validation: %s", e.msg);
    if (R->ntr == 0)
        die(R, 1, "%s: no training samples left after the validation split", o->data);
}

/* Every rank must be training the same thing: rank 0's fingerprint against each rank's. */
static void agree_settings(struct run *R)
{
    fingerprint(R);
    if (!R->d || R->world == 1)
        return;
    struct ud_err e = {0}, le = {0};
    const char *fp = R->fingerprint;
    char ref[sizeof R->fingerprint];
    snprintf(ref, sizeof ref, "%s", fp);
    if (worker_dist_bcast(R->d, ref, sizeof ref, 0, "comparing settings", &e))
        die(R, 1, "%s", e.msg);
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
    if (worker_dist_agree_err(R->d, rc, &le, "comparing settings", &e))
        die(R, 1, "the ranks disagree: %s", e.msg);
}

/* The model with its initial parameters (rank 0's on every rank) and its labels. */
static void build_model(struct run *R)
{
    const struct worker_options *o = &R->o;
    struct ud_err e = {0};
    if (!(R->model = ud_model_new(&R->arch, &e)))
        die(R, 1, "%s", e.msg);
    ud_model_init_params(R->model, o->params.seed);
    /* Each rank its own dropout stream (rank 0 keeps the standalone one). */
    if (R->rank > 0)
        ud_rng_seed(ud_model_rng(R->model), o->params.seed,
                    (uint64_t)UD_RNG_DROPOUT + 0x100u * (uint64_t)R->rank);
    if (ud_model_set_labels(R->model, ud_dataset_classes(R->train), R->nclasses, &e))
        die(R, 1, "%s", e.msg);
    if (R->d && R->world > 1 &&
        worker_dist_bcast(R->d, ud_model_params(R->model),
                          ud_model_param_count(R->model) * sizeof(float), 0,
                          "broadcasting the initial parameters", &e))
        die(R, 1, "%s", e.msg);
}

/* What a resume says on rank 0: where it continues, and why the result may not be bitwise
 * that of an uninterrupted run. */
static void say_resuming(const struct run *R)
{
    const struct worker_resume *rs = &R->rs;
    const struct worker_options *o = &R->o;
    if (R->rank != 0 || o->quiet)
        return;
    fprintf(stderr, PROG ": resuming from %s (iteration %lld, epoch %lld step %lld)\n",
            R->sess.last, (long long)rs->st.iteration, (long long)rs->st.epoch + 1,
            (long long)rs->st.minibatch + 1);
    if (!rs->same_world)
        fprintf(stderr,
                PROG ": the checkpoint was written by %d ranks, this run has %d: training "
                     "continues with the same global batch and sample order but is not bitwise "
                     "the run it would have been\n",
                (int)rs->st.world, R->world);
    else if (rs->st.threads != o->threads)
        fprintf(stderr,
                PROG ": the checkpoint was written with %d threads per rank, this run uses %d: "
                     "sums change order, so the result will not be bitwise that of an "
                     "uninterrupted run (use --threads %d)\n",
                (int)rs->st.threads, o->threads, (int)rs->st.threads);
}

/* The session directory: made by rank 0 and named absolutely (so that messages say where to
 * resume from wherever they are read). */
static void open_session(struct run *R)
{
    struct worker_options *o = &R->o;
    struct ud_err e = {0}, le = {0};
    R->have_session = 1;
    R->prog.sess = &R->sess;
    int rc = 0;
    if (R->rank == 0 && mkdir(o->session, 0777) != 0 && errno != EEXIST)
        rc = ud_err_set(&le, UD_EIO, "--session %s: %s", o->session, strerror(errno));
    if (worker_dist_agree_err(R->d, rc, &le, "--session", &e))
        die(R, 1, "%s", e.msg);
    if (realpath(o->session, R->session_abs))
        R->sess.dir = o->session = R->session_abs;
}

/* The session: resume from its newest complete checkpoint, or refuse to mix a new run into an
 * old one. Sets where training starts (R->cfg) and the dropout stream. */
static void resume_session(struct run *R)
{
    struct worker_options *o = &R->o;
    struct ud_err e = {0};
    if (R->d && R->world > 1) {
        if (o->session)
            worker_dist_set_hint(R->d, "no checkpoint in %s was complete yet", o->session);
        else
            worker_dist_set_hint(
                R->d, "nothing to resume from (run with --session DIR to keep checkpoints)");
    }
    R->sess = (struct worker_session){.dir = o->session,
                                      .keep = o->keep,
                                      .d = R->d,
                                      .rank = R->rank,
                                      .world = R->world,
                                      .threads = o->threads,
                                      .fingerprint = R->fingerprint,
                                      .val_loss = NAN,
                                      .val_accuracy = NAN};
    if (!o->session)
        return;
    open_session(R);
    int rc = worker_session_resume(&R->sess, R->model, &R->rs, &e);
    if (rc == 0 && !o->resume)
        die(R, 1,
            "--session %s already holds checkpoints of a run (newest: %s); add --resume to "
            "continue it, or choose a new directory",
            o->session, R->sess.last);
    if (rc == UD_ENOTFOUND) {
        if (o->resume && R->rank == 0)
            fprintf(stderr, PROG ": no complete checkpoint in %s; training from the start\n",
                    o->session);
        return;
    }
    if (rc)
        die(R, 1, "cannot resume: %s", e.msg);
    const struct ud_ckpt_state *st = &R->rs.st;
    R->resumed = 1;
    if (st->epoch > o->params.epochs || (st->epoch == o->params.epochs && st->minibatch > 0))
        die(R, 1, "cannot resume: %s is at epoch %lld, past --epochs %lld", R->sess.last,
            (long long)st->epoch + 1, (long long)o->params.epochs);
    R->cfg.start_epoch = st->epoch;
    R->cfg.start_minibatch = st->minibatch;
    memcpy(R->cfg.start_sums, st->epoch_sums, sizeof R->cfg.start_sums);
    *ud_model_rng(R->model) = R->rs.dropout;
    say_resuming(R);
}

/* The resumed optimizer state, into the task's optimizer. */
static void resume_optimizer(struct run *R, ud_update_task_t *task)
{
    size_t nst;
    ud_optim_t *opt = ud_update_task_optim(task);
    float *st = ud_optim_state(opt, &nst);
    if (nst != R->rs.st.optim_floats)
        die(R, 1, "cannot resume: %s holds %zu optimizer values, this run needs %zu", R->sess.last,
            R->rs.st.optim_floats, nst);
    if (nst)
        memcpy(st, R->rs.st.optim_state, nst * sizeof *st);
    ud_optim_set_steps(opt, R->rs.st.optim_steps);
    ud_ckpt_state_deinit(&R->rs.st);
}

/* The update task over this run's data, with the hooks that tie it to the other ranks, the
 * session and the coordinator. */
static ud_update_task_t *new_task(struct run *R, struct ud_batch_provider *trp,
                                  struct ud_batch_provider *vap)
{
    const struct worker_options *o = &R->o;
    struct ud_err e = {0};
    struct ud_update_config *cfg = &R->cfg;
    ud_dataset_provider(R->train, R->tr_idx, R->ntr, trp);
    ud_dataset_provider(R->train, R->va_idx, R->nva, vap);
    cfg->validation = R->nva ? vap : NULL;
    cfg->hooks.rank = R->rank;
    cfg->hooks.world = R->world;
    cfg->hooks.user = R;
    cfg->hooks.after_step = hook_after_step;
    if (R->plan)
        cfg->hooks.epoch_order = hook_epoch_order;
    if (R->d && R->world > 1) {
        if (worker_dist_grad_setup(R->d, R->model, &e))
            die(R, 1, "%s", e.msg);
        cfg->hooks.grad_ready = hook_ready;
        cfg->hooks.grad_sync = hook_grad_sync;
        cfg->hooks.metric_sync = hook_metric_sync;
    }
    struct ud_update_handlers handlers = {
        .events = UD_EVENT_TRAINING_BEGIN | UD_EVENT_EPOCH_END | UD_EVENT_MINIBATCH_END,
        .progress = on_progress,
        .completion = on_complete,
        .user = R,
    };
    ud_update_task_t *task = ud_update_task_new(R->model, trp, cfg, &handlers, &e);
    if (!task)
        die(R, 1, "%s", e.msg);
    R->total_steps = (int64_t)((R->ntr + (size_t)o->params.mini_batch_size - 1) /
                               (size_t)o->params.mini_batch_size) *
                     o->params.epochs;
    if (R->resumed)
        resume_optimizer(R, task);
    return task;
}

/* A failed or cancelled run: the reason, and where to resume from. */
static void die_training(struct run *R, ud_update_task_t *task, int rc)
{
    const struct ud_err *te = ud_update_task_error(task);
    char hint[4200];
    if (R->sess.last[0])
        snprintf(hint, sizeof hint, "; resume from %s with --resume", R->sess.last);
    else if (R->o.session)
        snprintf(hint, sizeof hint, "; no checkpoint was completed yet");
    else
        hint[0] = '\0';
    R->fail_code = te->code ? te->code : rc;
    if (rc == UD_ECANCELLED)
        die(R, 130, "training cancelled at epoch %lld; no model written%s",
            (long long)R->prog.last.epoch_index + 1, hint);
    die(R, 1, "training failed: %s%s", te->msg[0] ? te->msg : ud_strerror(rc), hint);
}

/* Trains to the end (or dies saying why not); R->fin holds the last metrics. */
static void train(struct run *R)
{
    const struct worker_options *o = &R->o;
    R->cfg.params = o->params;
    R->prog.o = o;
    R->prog.rank = R->rank;
    R->prog.world = R->world;
    R->prog.tty = isatty(STDERR_FILENO);
    struct ud_batch_provider trp, vap;
    ud_update_task_t *task = new_task(R, &trp, &vap);
    if (!o->json && !o->quiet && R->rank == 0)
        fprintf(stderr,
                "training %s (%zu parameters) on %zu samples (%zu for validation), %d classes, "
                "%lld epochs, batch %lld, %s lr %g, %d rank%s x %d thread%s\n",
                o->arch, ud_model_param_count(R->model), R->ntr, R->nva, R->nclasses,
                (long long)o->params.epochs, (long long)o->params.mini_batch_size,
                ud_optimizer_name(o->params.optimizer), o->params.learning_rate, R->world,
                R->world == 1 ? "" : "s", o->threads, o->threads == 1 ? "" : "s");
    if (R->world == 1) {
        g_cancel_task = task;
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    int rc = ud_update_task_run(task);
    g_cancel_task = NULL;
    if (rc)
        die_training(R, task, rc);
    R->fin = R->prog.last;
    ud_update_task_destroy(&task);
}

/* Scores the test set: each rank its slice, every sample once. */
static void evaluate_test(struct run *R)
{
    struct ud_err e = {0};
    if (!R->test)
        return;
    if (evaluate_sharded(R, R->model, R->test, &R->ev, &e))
        die(R, 1, "%s: evaluation failed: %s", R->o.test, e.msg);
    R->have_test = 1;
}

/* Rank 0 describes the model (metadata, update defaults, metrics) and writes it to --out. */
static void write_model(struct run *R)
{
    const struct worker_options *o = &R->o;
    const struct ud_update_metrics *fin = &R->fin;
    ud_model_t *model = R->model;
    struct ud_err e = {0};
    struct ud_metadata *md = ud_model_metadata(model);
    char desc[512];
    snprintf(desc, sizeof desc, "%s classifier trained by updraft-worker on %s for %lld epochs",
             o->arch, o->data, (long long)o->params.epochs);
    ud_metadata_set(&md->short_description, o->description ? o->description : desc);
    if (o->author)
        ud_metadata_set(&md->author, o->author);
    if (o->license)
        ud_metadata_set(&md->license, o->license);
    if (o->model_version)
        ud_metadata_set(&md->version, o->model_version);
    ud_metadata_set_additional(md, "dataset", o->data);
    ud_metadata_set_additional(md, "architecture", o->arch);
    ud_metadata_set_additional(md, "trained_by", "updraft-worker " UD_VERSION_STRING);
    ud_update_defaults_from_params(ud_model_update_defaults(model), &o->params);
    ud_model_set_metric(model, "train_loss", fin->loss);
    ud_model_set_metric(model, "train_accuracy", fin->accuracy);
    if (!isnan(fin->val_accuracy)) {
        ud_model_set_metric(model, "validation_loss", fin->val_loss);
        ud_model_set_metric(model, "validation_accuracy", fin->val_accuracy);
    }
    if (R->have_test) {
        ud_model_set_metric(model, "test_loss", R->ev.loss);
        ud_model_set_metric(model, "test_accuracy", R->ev.accuracy);
    }
    ud_model_set_metric(model, "epochs", (double)o->params.epochs);
    ud_model_set_metric(model, "training_samples", (double)R->ntr);
    ud_model_set_metric(model, "ranks", (double)R->world);
    if (ud_udm_write(model, o->out, &e))
        die(R, 1, "%s", e.msg);
}

/* The --json summary line (after the test set's evaluation line). */
static void json_summary(const struct run *R, const struct worker_dist_stats *ds, double seconds)
{
    const struct worker_options *o = &R->o;
    const struct ud_update_metrics *fin = &R->fin;
    int have_test = R->have_test;
    if (have_test)
        json_eval("test", R->model, &R->ev);
    printf("{\"event\":\"summary\"");
    ud_json_field(stdout, "samples_per_sec", R->prog.best_rate);
    ud_json_field(stdout, "train_loss", fin->loss);
    ud_json_field(stdout, "train_accuracy", fin->accuracy);
    ud_json_field(stdout, "validation_accuracy", fin->val_accuracy);
    ud_json_field(stdout, "test_accuracy", have_test ? R->ev.accuracy : NAN);
    ud_json_field(stdout, "test_loss", have_test ? R->ev.loss : NAN);
    ud_json_field(stdout, "peak_rss_mb", peak_rss_mb());
    ud_json_field(stdout, "seconds", seconds);
    ud_json_field(stdout, "grad_sync_seconds", ds->wait_seconds);
    ud_json_field(stdout, "grad_bytes_per_step", ds->steps ? ds->bytes / (double)ds->steps : 0);
    ud_json_field(stdout, "checkpoint_seconds", R->sess.write_seconds);
    printf(",\"epochs\":%lld,\"params\":%zu,\"world\":%d,\"threads\":%d,\"buckets\":%d,"
           "\"checkpoints\":%d,\"out\":",
           (long long)o->params.epochs, ud_model_param_count(R->model), R->world, o->threads,
           ds->nbuckets, R->sess.written);
    ud_json_str(stdout, o->out);
    printf("}\n");
    fflush(stdout);
}

/* Rank 0's last words: the JSON summary, or the test scores and a line on stderr. */
static void print_summary(const struct run *R, const struct worker_dist_stats *ds)
{
    const struct worker_options *o = &R->o;
    double seconds = ud_clock_mono() - R->t_start;
    if (o->json) {
        json_summary(R, ds, seconds);
        return;
    }
    if (R->have_test) {
        printf("test accuracy %.4f  loss %.4f  (%zu samples)\n", R->ev.accuracy, R->ev.loss,
               R->ev.n);
        ud_eval_write_confusion(stdout, R->model, &R->ev);
    }
    if (!o->quiet)
        fprintf(stderr, "wrote %s  (%.1f s, best %.0f samples/s, peak RSS %.0f MB)\n", o->out,
                seconds, R->prog.best_rate, peak_rss_mb());
}

/* Under a coordinator: the other ranks wait for rank 0's upload, heartbeating, so that the job
 * never looks half-gone while rank 0 waits out a coordinator restart; then the link closes. */
static void leave_job(struct run *R)
{
    struct ud_err e = {0};
    if (!R->cc)
        return;
    if (R->d && R->world > 1) {
        worker_dist_set_timeout(R->d, R->o.coord_timeout + 60);
        if (worker_dist_barrier(R->d, "waiting for the model upload", &e))
            die(R, 1, "%s", e.msg);
    }
    worker_coord_destroy(&R->cc, R->rank == 0 ? 5.0 : 0.0);
    ud_msg_deinit(&R->job);
}

static void cleanup(struct run *R)
{
    ud_eval_result_deinit(&R->ev);
    ud_model_destroy(&R->model);
    ud_dataset_destroy(&R->train);
    ud_dataset_destroy(&R->test);
    free(R->tr_idx);
    free(R->va_idx);
    if (R->d)
        worker_dist_finalize(&R->d);
}

int main(int argc, char **argv)
{
    struct run R = {.rank = 0, .world = 1, .named_rank = -1, .fail_code = UD_EINTERNAL};
    parse_options(&R, argc, argv);
    R.t_start = ud_clock_mono();
    start_ranks(&R, &argc, &argv);
    if (R.o.coordinator)
        join_job(&R);
    prepare(&R);
    load_data(&R);
    split_data(&R);
    agree_settings(&R);
    build_model(&R);
    resume_session(&R);
    train(&R);
    evaluate_test(&R);
    struct worker_dist_stats ds = {0};
    if (R.d)
        worker_dist_stats(R.d, &ds);
    if (R.rank == 0) {
        write_model(&R);
        print_summary(&R, &ds);
        if (R.cc)
            upload_model(&R);
    }
    leave_job(&R);
    cleanup(&R);
    return 0;
}

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
#include <unistd.h>

#include "updraft/ud_data.h"
#include "updraft/ud_eval.h"
#include "updraft/ud_jsonw.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_model.h"
#include "updraft/ud_udm.h"
#include "updraft/ud_update.h"

#define PROG "updraft-worker"

struct options {
    const char *data, *test, *arch, *out, *validation;
    const char *author, *description, *license, *model_version;
    struct ud_update_params params;
    int threads, json, skip_bad, quiet;
    size_t max_samples;
    struct ud_shape input; /* --input C,H,W for image folders with a preset */
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
            "\n"
            "SRC is a folder of class folders (DIR/<label>/<image>.png|.jpg), an IDX images file\n"
            "(its labels file is found by the usual name; .gz is fine), or a CSV with a 'label'\n"
            "column. Defaults: 10 epochs, batch 128, sgd, lr 0.05, momentum 0.9, seed 0,\n"
            "automatic validation split (Create ML's), threads = number of cores.\n");
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
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
        O_SEED
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
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    ud_update_params_default(&o->params);
    o->params.epochs = 10;
    o->params.mini_batch_size = 128;
    o->params.learning_rate = 0.05;
    o->params.momentum = 0.9;
    o->validation = "auto";
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = nproc > 0 ? (int)nproc : 1;
    int c;
    opterr = 0;
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
    }
    if (optind < argc)
        die(2, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->data)
        die(2, "--data is required (see --help)");
    if (!o->arch)
        die(2, "--arch is required: mlp, cnn or a spec file (see --help)");
    if (!o->out)
        die(2, "--out is required: where to write the trained model (.udm)");
    struct ud_err e = {0};
    if (ud_update_params_validate(&o->params, &e))
        die(2, "%s", e.msg);
}

/* ------------------------------------------------------------------ progress reporting */

struct progress {
    const struct options *o;
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
    if (ctx->event == UD_EVENT_TRAINING_BEGIN) {
        if (o->json) {
            printf("{\"event\":\"training_begin\",\"task\":");
            ud_json_str(stdout, ud_update_task_identifier(ctx->task));
            printf(",\"epochs\":%lld,\"batch\":%lld,\"steps_per_epoch\":%lld,\"params\":%zu}\n",
                   (long long)o->params.epochs, (long long)o->params.mini_batch_size,
                   (long long)m->steps_per_epoch, ud_model_param_count(ctx->model));
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

int main(int argc, char **argv)
{
    struct options o;
    parse_args(argc, argv, &o);
    ud_kernels_set_threads(o.threads);
    double t_start = now_s();
    check_out_dir(o.out);
    struct ud_err e = {0};

    /* The architecture first when it is a spec file: its input shape sizes the images. */
    struct ud_arch arch;
    int preset = strcmp(o.arch, "mlp") == 0 || strcmp(o.arch, "cnn") == 0;
    if (!preset) {
        int rc = ud_arch_load(o.arch, &arch, &e);
        if (rc == UD_ENOTFOUND)
            die(1, "--arch: '%s' is neither a preset (mlp, cnn) nor an existing spec file", o.arch);
        if (rc)
            die(1, "%s", e.msg);
        if (o.input.c == 0)
            o.input = arch.input;
    }
    struct ud_load_opts lo = {
        .shape = o.input, .skip_bad = o.skip_bad, .max_samples = o.max_samples, .warn = warn_cb};
    ud_dataset_t *train = ud_dataset_load(o.data, &lo, &e);
    if (!train)
        die(1, "%s", e.msg);
    if (ud_dataset_skipped(train))
        fprintf(stderr, PROG ": skipped %zu bad samples in %s\n", ud_dataset_skipped(train),
                o.data);
    struct ud_shape shape = ud_dataset_shape(train);
    int nclasses = ud_dataset_num_classes(train);
    if (preset) {
        if (ud_arch_preset(o.arch, shape, nclasses, &arch, &e))
            die(1, "%s", e.msg);
    } else {
        if (ud_arch_check(&arch, nclasses, &e))
            die(1, "%s: %s (the data has %d classes)", o.arch, e.msg, nclasses);
        if (ud_shape_size(arch.input) != ud_shape_size(shape))
            die(1, "%s: the network takes (%d, %d, %d) inputs but %s holds (%d, %d, %d)", o.arch,
                arch.input.c, arch.input.h, arch.input.w, o.data, shape.c, shape.h, shape.w);
    }
    ud_dataset_t *test = NULL;
    if (o.test) {
        struct ud_load_opts tlo = lo;
        tlo.shape = shape;
        tlo.max_samples = 0;
        if (!(test = ud_dataset_load(o.test, &tlo, &e)))
            die(1, "%s", e.msg);
        const char **names = malloc(sizeof(char *) * (size_t)nclasses);
        for (int c = 0; c < nclasses; c++)
            names[c] = ud_dataset_class_name(train, c);
        int rc = ud_dataset_map_classes(test, names, nclasses, &e);
        free(names);
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
    if (ud_split_indices(ud_dataset_count(train), &split, &tr_idx, &ntr, &va_idx, &nva, &e))
        die(2, "--validation: %s", e.msg);
    if (ntr == 0)
        die(1, "%s: no training samples left after the validation split", o.data);

    ud_model_t *model = ud_model_new(&arch, &e);
    if (!model)
        die(1, "%s", e.msg);
    ud_model_init_params(model, o.params.seed);
    {
        const char **names = malloc(sizeof(char *) * (size_t)nclasses);
        for (int c = 0; c < nclasses; c++)
            names[c] = ud_dataset_class_name(train, c);
        if (ud_model_set_labels(model, names, nclasses, &e))
            die(1, "%s", e.msg);
        free(names);
    }

    struct ud_batch_provider trp, vap, tep;
    ud_dataset_provider(train, tr_idx, ntr, &trp);
    ud_dataset_provider(train, va_idx, nva, &vap);
    struct ud_update_config cfg = {.params = o.params, .validation = nva ? &vap : NULL};
    struct progress prog = {.o = &o, .tty = isatty(STDERR_FILENO)};
    struct ud_update_handlers handlers = {
        .events = UD_EVENT_TRAINING_BEGIN | UD_EVENT_EPOCH_END | UD_EVENT_MINIBATCH_END,
        .progress = on_progress,
        .completion = on_complete,
        .user = &prog,
    };
    ud_update_task_t *task = ud_update_task_new(model, &trp, &cfg, &handlers, &e);
    if (!task)
        die(1, "%s", e.msg);
    if (!o.json && !o.quiet)
        fprintf(stderr,
                "training %s (%zu parameters) on %zu samples (%zu for validation), %d classes, "
                "%lld epochs, batch %lld, %s lr %g, %d thread%s\n",
                o.arch, ud_model_param_count(model), ntr, nva, nclasses, (long long)o.params.epochs,
                (long long)o.params.mini_batch_size, ud_optimizer_name(o.params.optimizer),
                o.params.learning_rate, o.threads, o.threads == 1 ? "" : "s");
    g_task = task;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int rc = ud_update_task_run(task);
    g_task = NULL;
    if (rc) {
        const struct ud_err *te = ud_update_task_error(task);
        if (rc == UD_ECANCELLED)
            die(130, "training cancelled at epoch %lld; no model written",
                (long long)prog.last.epoch_index + 1);
        die(1, "training failed: %s", te->msg[0] ? te->msg : ud_strerror(rc));
    }
    struct ud_update_metrics fin = prog.last;
    ud_update_task_destroy(&task);

    /* Score the test set. */
    struct ud_eval_result ev = {0};
    int have_test = 0;
    if (test) {
        ud_dataset_provider(test, NULL, 0, &tep);
        if (ud_model_evaluate(model, &tep, 256, &ev, &e))
            die(1, "%s: evaluation failed: %s", o.test, e.msg);
        have_test = 1;
    }

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
        printf(",\"epochs\":%lld,\"params\":%zu,\"threads\":%d,\"out\":",
               (long long)o.params.epochs, ud_model_param_count(model), o.threads);
        ud_json_str(stdout, o.out);
        printf("}\n");
    } else {
        if (have_test) {
            printf("test accuracy %.4f  loss %.4f  (%zu samples)\n", ev.accuracy, ev.loss, ev.n);
            ud_eval_write_confusion(stdout, model, &ev);
        }
        if (!o.quiet)
            fprintf(stderr, "wrote %s  (%.1f s, best %.0f samples/s, peak RSS %.0f MB)\n", o.out,
                    seconds, prog.best_rate, peak_rss_mb());
    }
    ud_eval_result_deinit(&ev);
    ud_model_destroy(&model);
    ud_dataset_destroy(&train);
    ud_dataset_destroy(&test);
    free(tr_idx);
    free(va_idx);
    return 0;
}

/*  updraft_cli.c — `updraft`, the user's tool.
 *
 *    updraft info MODEL [--json]               what a .udm holds
 *    updraft eval MODEL --data SRC [--json]    accuracy, loss, precision/recall, confusion
 *    updraft predict MODEL FILE... [--json]    one line per input: path, label, confidence
 *    updraft checkpoints SESSION [--json]      a training session's checkpoints (MLCheckpoint):
 *                                              position, phase, date, complete or why not,
 *                                              metrics, path
 *    updraft export CHECKPOINT --out MODEL     a checkpoint's model as a .udm (Create ML's
 *                                              init(checkpoint:)); CHECKPOINT is a checkpoint
 *                                              directory or a session (its newest complete one)
 *    updraft init --arch A --data SRC --out M  an untrained model for SRC's classes (cli_init.c)
 *    updraft dataset partition ...             SRC split among simulated clients (cli_dataset.c)
 *    updraft status|jobs|job|models|model|devices|fed ...
 *                                              a coordinator's REST API (cli_remote.c)
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli_local.h"
#include "cli_remote.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_ckpt.h"
#include "updraft/ud_data.h"
#include "updraft/ud_eval.h"
#include "updraft/ud_jsonw.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_model.h"
#include "updraft/ud_seal.h"
#include "updraft/ud_udm.h"

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("updraft: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void usage(FILE *f)
{
    fputs(
        "usage: updraft <command> [options]\n"
        "\n"
        "  info MODEL [--json]                 layers, parameters, labels, metadata, update\n"
        "                                      defaults, metrics and params_sha256 of a .udm\n"
        "  eval MODEL --data SRC [--json] [--skip-bad]\n"
        "                                      accuracy, loss, per-class precision/recall and\n"
        "                                      the confusion matrix on labeled data\n"
        "  predict MODEL FILE... [--json]      one line per image: path, label, confidence\n"
        "  checkpoints SESSION [--json]        the checkpoints of a training session: iteration,\n"
        "                                      epoch.minibatch, phase, date, complete or why not,\n"
        "                                      loss, accuracy, validation accuracy, learning rate\n"
        "  export CHECKPOINT --out MODEL.udm   writes a checkpoint's model (with its metrics);\n"
        "                                      CHECKPOINT is a checkpoint directory, or a session\n"
        "                                      directory for its newest complete checkpoint\n"
        "\n"
        "SRC is a folder of class folders, an IDX images file, or a CSV with a label column.\n"
        "\n"
        "Federated simulations:\n",
        f);
    cli_local_usage(f);
    fputs("\nSigned and encrypted models:\n", f);
    cli_keys_usage(f);
    fputs("\n"
          "Talking to a coordinator (updraft-coordinator):\n",
          f);
    cli_remote_usage(f);
}

/* A plain or sealed model. A signature is reported, not checked (`updraft keys verify` checks
   it); an encrypted model needs UPDRAFT_MODEL_KEY, the path of its model-key file. */
static struct ud_seal_info g_seal;

static ud_model_t *load_model(const char *path)
{
    struct ud_err e = {0};
    struct ud_key k;
    struct ud_seal_keys keys = {NULL, NULL};
    const char *key_path = getenv("UPDRAFT_MODEL_KEY");
    if (key_path && *key_path) {
        if (ud_key_read(key_path, UD_KEY_MODEL, &k, &e))
            die(1, "UPDRAFT_MODEL_KEY: %s", e.msg);
        keys.decrypt = &k;
    }
    ud_model_t *m = ud_seal_read_model(path, &keys, &g_seal, &e);
    if (keys.decrypt)
        ud_key_wipe(&k);
    if (!m) {
        if (e.code == UD_EWRONGKEY && !keys.decrypt)
            die(4, "%s (set UPDRAFT_MODEL_KEY to the model-key file)", e.msg);
        die(cli_seal_exit_code(e.code), "%s", e.msg);
    }
    return m;
}

/* ---------------------------------------------------------------------------------- info */

/* ,"key":{"value":v,"min":lo,"max":hi}: one update default and its allowed range. */
static void json_range_d(const char *key, const struct ud_param_double *p)
{
    printf(",\"%s\":{\"value\":", key);
    ud_json_num(stdout, p->value);
    ud_json_field(stdout, "min", p->min);
    ud_json_field(stdout, "max", p->max);
    printf("}");
}

static void json_range_i(const char *key, const struct ud_param_int *p)
{
    printf(",\"%s\":{\"value\":%lld,\"min\":%lld,\"max\":%lld}", key, (long long)p->value,
           (long long)p->min, (long long)p->max);
}

static void layer_desc(const struct ud_layer_spec *L, char *buf, size_t len)
{
    switch (L->kind) {
    case UD_LAYER_DENSE:
        snprintf(buf, len, "dense %d", L->units);
        break;
    case UD_LAYER_CONV2D:
        snprintf(buf, len, "conv2d %d %dx%d stride %d pad %d", L->filters, L->kernel, L->kernel,
                 L->stride, L->pad);
        break;
    case UD_LAYER_MAXPOOL2D:
        snprintf(buf, len, "maxpool %d", L->pool);
        break;
    case UD_LAYER_DROPOUT:
        snprintf(buf, len, "dropout %g", (double)L->rate);
        break;
    default:
        snprintf(buf, len, "%s", ud_layer_kind_name(L->kind));
    }
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (argv[i][0] == '-')
            die(2, "info: unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            die(2, "info: one model at a time ('%s')", argv[i]);
    }
    if (!path)
        die(2, "info: which model? (updraft info MODEL [--json])");
    ud_model_t *m = load_model(path);
    struct stat st;
    long long fsize = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    const struct ud_arch *a = ud_model_arch(m);
    const struct ud_metadata *md = ud_model_metadata_const(m);
    const struct ud_update_defaults *d = ud_model_update_defaults_const(m);
    const struct ud_input_desc *in = ud_model_input_desc_const(m);
    char sha[65], desc[128];
    ud_model_params_sha256(m, sha);
    int C = ud_model_num_classes(m);
    if (json) {
        printf("{\"path\":");
        ud_json_str(stdout, path);
        printf(",\"format_version\":%d,\"file_bytes\":%lld,\"params\":%zu,\"params_sha256\":\"%s\"",
               UD_UDM_VERSION, fsize, ud_model_param_count(m), sha);
        printf(",\"signed_by\":");
        ud_json_str(stdout, g_seal.is_signed ? g_seal.sign_key_id : NULL);
        printf(",\"encrypted_with\":");
        ud_json_str(stdout, g_seal.encrypted ? g_seal.enc_key_id : NULL);
        printf(",\"input\":{\"shape\":[%d,%d,%d],\"kind\":\"%s\"", a->input.c, a->input.h,
               a->input.w, in->kind == UD_INPUT_IMAGE ? "image" : "tabular");
        ud_json_field(stdout, "scale", in->scale);
        ud_json_field(stdout, "offset", in->offset);
        printf("},\"layers\":[");
        for (int i = 0; i < a->nlayers; i++) {
            struct ud_span w, b;
            ud_model_layer_params(m, i, &w, &b);
            struct ud_shape s = ud_arch_shape(a, i);
            layer_desc(&a->layer[i], desc, sizeof desc);
            printf("%s{\"index\":%d,\"kind\":\"%s\",\"description\":", i ? "," : "", i,
                   ud_layer_kind_name(a->layer[i].kind));
            ud_json_str(stdout, desc);
            printf(",\"output\":[%d,%d,%d],\"params\":%zu", s.c, s.h, s.w, w.count + b.count);
            if (w.count)
                printf(",\"updatable\":%s", ud_model_layer_updatable(m, i) ? "true" : "false");
            printf("}");
        }
        printf("],\"labels\":");
        ud_json_str_array(stdout, ud_model_labels(m), C);
        printf(",\"metadata\":{\"author\":");
        ud_json_str(stdout, md->author);
        printf(",\"short_description\":");
        ud_json_str(stdout, md->short_description);
        printf(",\"license\":");
        ud_json_str(stdout, md->license);
        printf(",\"version\":");
        ud_json_str(stdout, md->version);
        printf(",\"additional\":{");
        for (size_t i = 0; i < md->nadditional; i++) {
            if (i)
                putchar(',');
            ud_json_str(stdout, md->additional[i].key);
            putchar(':');
            ud_json_str(stdout, md->additional[i].value);
        }
        printf("}},\"update_defaults\":{\"optimizer\":\"%s\",\"shuffle\":%s,\"nesterov\":%s",
               ud_optimizer_name(d->optimizer), d->shuffle ? "true" : "false",
               d->nesterov ? "true" : "false");
        json_range_d("learningRate", &d->learning_rate);
        json_range_d("momentum", &d->momentum);
        json_range_d("weightDecay", &d->weight_decay);
        json_range_d("beta1", &d->beta1);
        json_range_d("beta2", &d->beta2);
        json_range_d("eps", &d->eps);
        json_range_i("miniBatchSize", &d->mini_batch_size);
        json_range_i("epochs", &d->epochs);
        json_range_i("seed", &d->seed);
        printf("},\"metrics\":{");
        for (size_t i = 0; i < ud_model_metric_count(m); i++) {
            const char *k;
            double v;
            ud_model_metric_at(m, i, &k, &v);
            if (i)
                putchar(',');
            ud_json_str(stdout, k);
            putchar(':');
            ud_json_num(stdout, v);
        }
        printf("}}\n");
    } else {
        printf("%s: updraft model, format version %d, %lld bytes\n", path, UD_UDM_VERSION, fsize);
        printf("  description  %s\n", md->short_description ? md->short_description : "");
        printf("  author       %s\n", md->author ? md->author : "");
        printf("  version      %s\n", md->version ? md->version : "");
        printf("  license      %s\n", md->license ? md->license : "(none)");
        for (size_t i = 0; i < md->nadditional; i++)
            printf("  %-12s %s\n", md->additional[i].key, md->additional[i].value);
        printf("input (%d, %d, %d) %s, x = raw * %g + %g\n", a->input.c, a->input.h, a->input.w,
               in->kind == UD_INPUT_IMAGE ? "image" : "tabular", (double)in->scale,
               (double)in->offset);
        printf("layers:\n");
        for (int i = 0; i < a->nlayers; i++) {
            struct ud_span w, b;
            ud_model_layer_params(m, i, &w, &b);
            struct ud_shape s = ud_arch_shape(a, i);
            layer_desc(&a->layer[i], desc, sizeof desc);
            printf("  %2d  %-32s -> (%d, %d, %d)", i, desc, s.c, s.h, s.w);
            if (w.count)
                printf("  %9zu params  %s", w.count + b.count,
                       ud_model_layer_updatable(m, i) ? "updatable" : "frozen");
            printf("\n");
        }
        printf("parameters     %zu\nparams_sha256  %s\n", ud_model_param_count(m), sha);
        if (g_seal.is_signed || g_seal.encrypted)
            printf("sealed         %s%s%s%s%s\n", g_seal.is_signed ? "signed by key " : "",
                   g_seal.sign_key_id, g_seal.is_signed ? " (not verified here)" : "",
                   g_seal.encrypted ? (g_seal.is_signed ? "; encrypted with model key "
                                                        : "encrypted with model key ")
                                    : "",
                   g_seal.enc_key_id);
        printf("labels (%d):   ", C);
        for (int c = 0; c < C; c++)
            printf("%s%s", c ? ", " : "", ud_model_label(m, c));
        printf("\nupdate defaults: %s, learningRate %g [%g, %g], momentum %g%s, miniBatchSize %lld "
               "[%lld, %lld], epochs %lld [%lld, %lld], shuffle %s\n",
               ud_optimizer_name(d->optimizer), d->learning_rate.value, d->learning_rate.min,
               d->learning_rate.max, d->momentum.value, d->nesterov ? " (nesterov)" : "",
               (long long)d->mini_batch_size.value, (long long)d->mini_batch_size.min,
               (long long)d->mini_batch_size.max, (long long)d->epochs.value,
               (long long)d->epochs.min, (long long)d->epochs.max, d->shuffle ? "on" : "off");
        if (ud_model_metric_count(m)) {
            printf("metrics:");
            for (size_t i = 0; i < ud_model_metric_count(m); i++) {
                const char *k;
                double v;
                ud_model_metric_at(m, i, &k, &v);
                printf(" %s=%g", k, v);
            }
            printf("\n");
        }
    }
    ud_model_destroy(&m);
    return 0;
}

/* ---------------------------------------------------------------------------------- eval */

static void warn_cb(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "updraft: warning: %s\n", msg);
}

static int cmd_eval(int argc, char **argv)
{
    const char *path = NULL, *data = NULL;
    int json = 0, skip_bad = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--skip-bad") == 0)
            skip_bad = 1;
        else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (argv[i][0] == '-')
            die(2, "eval: unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            die(2, "eval: unexpected '%s'", argv[i]);
    }
    if (!path || !data)
        die(2, "eval: usage: updraft eval MODEL --data SRC [--json] [--skip-bad]");
    ud_model_t *m = load_model(path);
    struct ud_err e = {0};
    struct ud_load_opts lo = {
        .shape = ud_model_arch(m)->input, .skip_bad = skip_bad, .warn = warn_cb};
    ud_dataset_t *ds = ud_dataset_load(data, &lo, &e);
    if (!ds)
        die(1, "%s", e.msg);
    if (ud_dataset_input_size(ds) != ud_model_input_size(m))
        die(1, "%s: samples have %zu values but %s takes %zu", data, ud_dataset_input_size(ds),
            path, ud_model_input_size(m));
    int C = ud_model_num_classes(m);
    const char **names = malloc(sizeof(char *) * (size_t)C);
    for (int c = 0; c < C; c++)
        names[c] = ud_model_label(m, c);
    int mapped = ud_dataset_map_classes(ds, names, C, &e);
    free(names); /* before die(): LeakSanitizer builds count it otherwise */
    if (mapped)
        die(1, "%s: %s (the model knows: %s ...)", data, e.msg, ud_model_label(m, 0));
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_eval_result r;
    if (ud_model_evaluate(m, &p, 256, &r, &e))
        die(1, "%s: %s", data, e.msg);
    if (json) {
        printf("{\"model\":");
        ud_json_str(stdout, path);
        printf(",\"data\":");
        ud_json_str(stdout, data);
        printf(",\"samples\":%zu,\"skipped\":%zu", r.n, ud_dataset_skipped(ds));
        ud_json_field(stdout, "accuracy", r.accuracy);
        ud_json_field(stdout, "classification_error", 1.0 - r.accuracy);
        ud_json_field(stdout, "loss", r.loss);
        printf(",\"classes\":[");
        for (int c = 0; c < C; c++) {
            printf("%s{\"label\":", c ? "," : "");
            ud_json_str(stdout, ud_model_label(m, c));
            ud_json_field(stdout, "precision", r.precision[c]);
            ud_json_field(stdout, "recall", r.recall[c]);
            printf("}");
        }
        /* MLClassifierMetrics' confusion in long format: (true, predicted, count). */
        printf("],\"confusion\":[");
        int first = 1;
        for (int t = 0; t < C; t++)
            for (int q = 0; q < C; q++) {
                uint64_t n = r.confusion[(size_t)t * C + q];
                if (!n)
                    continue;
                printf("%s{\"true\":", first ? "" : ",");
                ud_json_str(stdout, ud_model_label(m, t));
                printf(",\"predicted\":");
                ud_json_str(stdout, ud_model_label(m, q));
                printf(",\"count\":%llu}", (unsigned long long)n);
                first = 0;
            }
        printf("]}\n");
    } else {
        printf("%s on %s: accuracy %.4f  loss %.4f  (%zu samples", path, data, r.accuracy, r.loss,
               r.n);
        if (ud_dataset_skipped(ds))
            printf(", %zu skipped", ud_dataset_skipped(ds));
        printf(")\n\n%-16s %9s %9s\n", "label", "precision", "recall");
        for (int c = 0; c < C; c++)
            printf("%-16.16s %9.4f %9.4f\n", ud_model_label(m, c), r.precision[c], r.recall[c]);
        ud_eval_write_confusion(stdout, m, &r);
    }
    ud_eval_result_deinit(&r);
    ud_dataset_destroy(&ds);
    ud_model_destroy(&m);
    return 0;
}

/* ------------------------------------------------------------------------------- predict */

static int cmd_predict(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, nfiles = 0, failures = 0;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            die(2, "predict: unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            files[nfiles++] = argv[i];
    }
    if (!path || nfiles == 0)
        die(2, "predict: usage: updraft predict MODEL FILE... [--json]");
    ud_model_t *m = load_model(path);
    const struct ud_arch *a = ud_model_arch(m);
    size_t in = ud_model_input_size(m);
    float *x = malloc(sizeof(float) * in);
    for (int i = 0; i < nfiles; i++) {
        struct ud_err e = {0};
        if (ud_image_load(files[i], a->input, x, &e)) {
            fprintf(stderr, "updraft: %s\n", e.msg);
            failures++;
            continue;
        }
        const struct ud_input_desc *d = ud_model_input_desc_const(m);
        /* ud_image_load gives [0, 1]; a model whose input is not raw/255 says how to map. */
        if (d->kind == UD_INPUT_IMAGE && (d->scale != 1.0f / 255.0f || d->offset != 0.0f))
            for (size_t k = 0; k < in; k++)
                x[k] = x[k] * 255.0f * d->scale + d->offset;
        int32_t cls;
        float conf;
        if (ud_model_predict(m, x, 1, &cls, &conf))
            die(1, "out of memory predicting %s", files[i]);
        if (json) {
            printf("{\"path\":");
            ud_json_str(stdout, files[i]);
            printf(",\"label\":");
            ud_json_str(stdout, ud_model_label(m, cls));
            ud_json_field(stdout, "confidence", conf);
            printf("}\n");
        } else {
            printf("%s\t%s\t%.4f\n", files[i], ud_model_label(m, cls), conf);
        }
    }
    free(x);
    free(files);
    ud_model_destroy(&m);
    return failures ? 1 : 0;
}

/* --------------------------------------------------------------------------- checkpoints */

/* ISO 8601 UTC ("2024-05-01T12:00:00Z") of a Unix time. */
static void iso_date(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "?");
}

/* A file: URL for a path (absolute when it can be made so), bytes outside RFC 3986's unreserved
 * set and '/' percent-encoded. */
static void json_file_url(const char *path)
{
    char *abs = realpath(path, NULL);
    const char *p = abs ? abs : path;
    fputs("\"file://", stdout);
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("-._~/", *c))
            putchar(*c);
        else
            printf("%%%02X", *c);
    }
    putchar('"');
    free(abs);
}

/* A metric for the text listing: "-" when unknown. */
static void text_metric(char *buf, size_t cap, const char *fmt, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, fmt, v);
    else
        snprintf(buf, cap, "-");
}

static int cmd_checkpoints(int argc, char **argv)
{
    const char *session = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (argv[i][0] == '-')
            die(2, "checkpoints: unknown option '%s'", argv[i]);
        else if (!session)
            session = argv[i];
        else
            die(2, "checkpoints: one session at a time ('%s')", argv[i]);
    }
    if (!session)
        die(2, "checkpoints: which session? (updraft checkpoints SESSION [--json])");
    struct stat sb;
    if (stat(session, &sb) != 0 || !S_ISDIR(sb.st_mode))
        die(1, "%s: no such session directory", session);
    struct ud_err e = {0};
    struct ud_ckpt_state *list = NULL;
    size_t n = 0;
    if (ud_ckpt_list(session, &list, &n, &e))
        die(1, "%s", e.msg);
    if (json)
        putchar('[');
    else if (n == 0)
        fprintf(stderr, "updraft: %s has no checkpoints\n", session);
    else
        printf("%12s  %-12s  %-8s  %-20s  %-8s  %-8s  %-8s  %-10s  %-10s  %s\n", "iteration",
               "epoch.batch", "phase", "date (UTC)", "loss", "accuracy", "val_acc", "lr", "status",
               "path");
    for (size_t i = 0; i < n; i++) {
        const struct ud_ckpt_state *c = &list[i];
        int known = c->phase[0] != '\0'; /* state.ckpt was readable */
        char date[32];
        iso_date(c->date, date, sizeof date);
        if (json) {
            printf("%s{\"phase\":", i ? "," : "");
            ud_json_str(stdout, known ? c->phase : NULL);
            printf(",\"iteration\":%lld,\"date\":", (long long)c->iteration);
            ud_json_str(stdout, known ? date : NULL);
            printf(",\"url\":");
            json_file_url(c->path);
            printf(",\"path\":");
            ud_json_str(stdout, c->path);
            printf(",\"metrics\":{\"loss\":");
            ud_json_num(stdout, c->metrics.loss);
            ud_json_field(stdout, "accuracy", c->metrics.accuracy);
            ud_json_field(stdout, "val_loss", c->metrics.val_loss);
            ud_json_field(stdout, "val_accuracy", c->metrics.val_accuracy);
            ud_json_field(stdout, "learning_rate", c->metrics.learning_rate);
            printf("}");
            if (known)
                printf(",\"epoch\":%lld,\"minibatch\":%lld,\"world\":%d", (long long)c->epoch,
                       (long long)c->minibatch, (int)c->world);
            else
                printf(",\"epoch\":null,\"minibatch\":null,\"world\":null");
            printf(",\"complete\":%s,\"problem\":", c->complete ? "true" : "false");
            ud_json_str(stdout, c->complete ? NULL : c->problem);
            printf("}");
            continue;
        }
        char pos[32], loss[16], acc[16], vacc[16], lr[16];
        if (known)
            snprintf(pos, sizeof pos, "%lld.%lld", (long long)c->epoch, (long long)c->minibatch);
        else
            snprintf(pos, sizeof pos, "-");
        text_metric(loss, sizeof loss, "%.4f", c->metrics.loss);
        text_metric(acc, sizeof acc, "%.4f", c->metrics.accuracy);
        text_metric(vacc, sizeof vacc, "%.4f", c->metrics.val_accuracy);
        text_metric(lr, sizeof lr, "%.4g", c->metrics.learning_rate);
        printf("%12lld  %-12s  %-8s  %-20s  %-8s  %-8s  %-8s  %-10s  %-10s  %s",
               (long long)c->iteration, pos, known ? c->phase : "-", known ? date : "-", loss, acc,
               vacc, lr, c->complete ? "complete" : "incomplete", c->path);
        if (!c->complete)
            printf("  (%s)", c->problem);
        putchar('\n');
    }
    if (json)
        printf("]\n");
    ud_ckpt_list_free(&list, n);
    return 0;
}

/* -------------------------------------------------------------------------------- export */

static int cmd_export(int argc, char **argv)
{
    const char *from = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] == '-')
            die(2, "export: unknown option '%s'", argv[i]);
        else if (!from)
            from = argv[i];
        else
            die(2, "export: one checkpoint at a time ('%s')", argv[i]);
    }
    if (!from || !out)
        die(2, "export: usage: updraft export CHECKPOINT --out MODEL.udm (CHECKPOINT: a "
               "checkpoint directory, or a session directory for its newest complete one)");
    struct ud_err e = {0};
    struct stat sb;
    if (stat(from, &sb) != 0 || !S_ISDIR(sb.st_mode))
        die(1, "export: %s: no such checkpoint or session directory", from);

    /* A session holds checkpoints/; anything else is taken for a checkpoint directory. */
    char dir[4096], sub[4200];
    snprintf(sub, sizeof sub, "%s/checkpoints", from);
    if (stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (ud_ckpt_latest(from, dir, sizeof dir, &e))
            die(1, "export: %s", e.msg);
    } else {
        snprintf(dir, sizeof dir, "%s", from);
    }

    struct ud_ckpt_state st;
    ud_model_t *m = NULL;
    if (ud_ckpt_read(dir, &st, &m, &e))
        die(1, "export: %s", e.msg);
    if (strcmp(st.phase, "training") != 0) {
        ud_ckpt_state_deinit(&st);
        ud_model_destroy(&m);
        die(1,
            "export: %s is a checkpoint of phase \"%s\"; only \"training\" checkpoints can "
            "be exported",
            dir, st.phase);
    }
    const struct {
        const char *key;
        double v;
    } metrics[] = {
        {"train_loss", st.metrics.loss},
        {"train_accuracy", st.metrics.accuracy},
        {"validation_loss", st.metrics.val_loss},
        {"validation_accuracy", st.metrics.val_accuracy},
        {"checkpoint_iteration", (double)st.iteration},
        {"checkpoint_epoch", (double)st.epoch},
    };
    for (size_t i = 0; i < sizeof metrics / sizeof *metrics; i++)
        if (isfinite(metrics[i].v) && ud_model_set_metric(m, metrics[i].key, metrics[i].v))
            die(1, "export: out of memory");
    int rc = ud_udm_write(m, out, &e);
    char sha[65];
    ud_model_params_sha256(m, sha);
    ud_model_destroy(&m);
    if (rc) {
        ud_ckpt_state_deinit(&st);
        die(1, "export: %s", e.msg);
    }
    printf("wrote %s: the model of %s (iteration %lld, epoch %lld.%lld", out, dir,
           (long long)st.iteration, (long long)st.epoch, (long long)st.minibatch);
    if (isfinite(st.metrics.loss))
        printf(", loss %.4f", st.metrics.loss);
    printf("), params_sha256 %s\n", sha);
    ud_ckpt_state_deinit(&st);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("updraft %s (%s)\n", UD_VERSION_STRING, ud_kernels_describe());
        return 0;
    }
    if (cli_remote_is_command(argv[1]))
        return cli_remote_main(argc - 1, argv + 1);
    ud_kernels_set_threads(1);
    if (strcmp(argv[1], "init") == 0)
        return cli_init_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "dataset") == 0)
        return cli_dataset_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "keys") == 0)
        return cli_keys_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "encrypt") == 0)
        return cli_encrypt_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "decrypt") == 0)
        return cli_decrypt_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "info") == 0)
        return cmd_info(argc - 2, argv + 2);
    if (strcmp(argv[1], "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(argv[1], "predict") == 0)
        return cmd_predict(argc - 2, argv + 2);
    if (strcmp(argv[1], "checkpoints") == 0)
        return cmd_checkpoints(argc - 2, argv + 2);
    if (strcmp(argv[1], "export") == 0)
        return cmd_export(argc - 2, argv + 2);
    fprintf(stderr, "updraft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

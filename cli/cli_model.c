/*  cli_model.c — `updraft info|eval|predict|checkpoints|export`: the commands that read a
 *  model or a training session's checkpoints on local files.
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
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "updraft/ud_ckpt.h"
#include "updraft/ud_data.h"
#include "updraft/ud_eval.h"
#include "updraft/ud_jsonw.h"
#include "updraft/ud_model.h"
#include "updraft/ud_seal.h"
#include "updraft/ud_udm.h"

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
            cli_die(NULL, 1, "UPDRAFT_MODEL_KEY: %s", e.msg);
        keys.decrypt = &k;
    }
    ud_model_t *m = ud_seal_read_model(path, &keys, &g_seal, &e);
    if (keys.decrypt)
        ud_key_wipe(&k);
    if (!m) {
        if (e.code == UD_EWRONGKEY && !keys.decrypt)
            cli_die(NULL, 4, "%s (set UPDRAFT_MODEL_KEY to the model-key file)", e.msg);
        cli_die(NULL, ud_seal_exit_status(e.code), "%s", e.msg);
    }
    return m;
}

/* The one PATH of `updraft CMD PATH [--json]` (a noun: "model"), and *json. */
static const char *one_path(const char *cmd, const char *noun, const char *meta, int argc,
                            char **argv, int *json)
{
    struct cli_args a;
    cli_parse(cmd, argc, argv, &a);
    *json = cli_arg(&a, "--json") != NULL;
    if (a.nwords > 1)
        cli_die(NULL, 2, "%s: one %s at a time ('%s')", cmd, noun, argv[1]);
    if (a.nwords < 1)
        cli_die(NULL, 2, "%s: which %s? (updraft %s %s [--json])", cmd, noun, cmd, meta);
    return argv[0];
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

/* What info shows of a model, read once for either form. */
struct info {
    const ud_model_t *m;
    const char *path, *sha;
    long long fsize; /* -1: unknown */
    const struct ud_arch *a;
    const struct ud_metadata *md;
    const struct ud_update_defaults *d;
    const struct ud_input_desc *in;
    int C;
};

/* `info --json`: one JSON object. */
static void info_json(const struct info *v)
{
    const ud_model_t *m = v->m;
    char desc[128];
    printf("{\"path\":");
    ud_json_str(stdout, v->path);
    printf(",\"format_version\":%d,\"file_bytes\":%lld,\"params\":%zu,\"params_sha256\":\"%s\"",
           UD_UDM_VERSION, v->fsize, ud_model_param_count(m), v->sha);
    printf(",\"signed_by\":");
    ud_json_str(stdout, g_seal.is_signed ? g_seal.sign_key_id : NULL);
    printf(",\"encrypted_with\":");
    ud_json_str(stdout, g_seal.encrypted ? g_seal.enc_key_id : NULL);
    printf(",\"input\":{\"shape\":[%d,%d,%d],\"kind\":\"%s\"", v->a->input.c, v->a->input.h,
           v->a->input.w, v->in->kind == UD_INPUT_IMAGE ? "image" : "tabular");
    ud_json_field(stdout, "scale", v->in->scale);
    ud_json_field(stdout, "offset", v->in->offset);
    printf("},\"layers\":[");
    for (int i = 0; i < v->a->nlayers; i++) {
        struct ud_span w, b;
        ud_model_layer_params(m, i, &w, &b);
        struct ud_shape s = ud_arch_shape(v->a, i);
        layer_desc(&v->a->layer[i], desc, sizeof desc);
        printf("%s{\"index\":%d,\"kind\":\"%s\",\"description\":", i ? "," : "", i,
               ud_layer_kind_name(v->a->layer[i].kind));
        ud_json_str(stdout, desc);
        printf(",\"output\":[%d,%d,%d],\"params\":%zu", s.c, s.h, s.w, w.count + b.count);
        if (w.count)
            printf(",\"updatable\":%s", ud_model_layer_updatable(m, i) ? "true" : "false");
        printf("}");
    }
    printf("],\"labels\":");
    ud_json_str_array(stdout, ud_model_labels(m), v->C);
    printf(",\"metadata\":{\"author\":");
    ud_json_str(stdout, v->md->author);
    printf(",\"short_description\":");
    ud_json_str(stdout, v->md->short_description);
    printf(",\"license\":");
    ud_json_str(stdout, v->md->license);
    printf(",\"version\":");
    ud_json_str(stdout, v->md->version);
    printf(",\"additional\":{");
    for (size_t i = 0; i < v->md->nadditional; i++) {
        if (i)
            putchar(',');
        ud_json_str(stdout, v->md->additional[i].key);
        putchar(':');
        ud_json_str(stdout, v->md->additional[i].value);
    }
    printf("}},\"update_defaults\":{\"optimizer\":\"%s\",\"shuffle\":%s,\"nesterov\":%s",
           ud_optimizer_name(v->d->optimizer), v->d->shuffle ? "true" : "false",
           v->d->nesterov ? "true" : "false");
    json_range_d("learningRate", &v->d->learning_rate);
    json_range_d("momentum", &v->d->momentum);
    json_range_d("weightDecay", &v->d->weight_decay);
    json_range_d("beta1", &v->d->beta1);
    json_range_d("beta2", &v->d->beta2);
    json_range_d("eps", &v->d->eps);
    json_range_i("miniBatchSize", &v->d->mini_batch_size);
    json_range_i("epochs", &v->d->epochs);
    json_range_i("seed", &v->d->seed);
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
}

/* `info` for people. */
static void info_text(const struct info *v)
{
    const ud_model_t *m = v->m;
    char desc[128];
    printf("%s: updraft model, format version %d, %lld bytes\n", v->path, UD_UDM_VERSION, v->fsize);
    printf("  description  %s\n", v->md->short_description ? v->md->short_description : "");
    printf("  author       %s\n", v->md->author ? v->md->author : "");
    printf("  version      %s\n", v->md->version ? v->md->version : "");
    printf("  license      %s\n", v->md->license ? v->md->license : "(none)");
    for (size_t i = 0; i < v->md->nadditional; i++)
        printf("  %-12s %s\n", v->md->additional[i].key, v->md->additional[i].value);
    printf("input (%d, %d, %d) %s, x = raw * %g + %g\n", v->a->input.c, v->a->input.h,
           v->a->input.w, v->in->kind == UD_INPUT_IMAGE ? "image" : "tabular", (double)v->in->scale,
           (double)v->in->offset);
    printf("layers:\n");
    for (int i = 0; i < v->a->nlayers; i++) {
        struct ud_span w, b;
        ud_model_layer_params(m, i, &w, &b);
        struct ud_shape s = ud_arch_shape(v->a, i);
        layer_desc(&v->a->layer[i], desc, sizeof desc);
        printf("  %2d  %-32s -> (%d, %d, %d)", i, desc, s.c, s.h, s.w);
        if (w.count)
            printf("  %9zu params  %s", w.count + b.count,
                   ud_model_layer_updatable(m, i) ? "updatable" : "frozen");
        printf("\n");
    }
    printf("parameters     %zu\nparams_sha256  %s\n", ud_model_param_count(m), v->sha);
    if (g_seal.is_signed || g_seal.encrypted)
        printf("sealed         %s%s%s%s%s\n", g_seal.is_signed ? "signed by key " : "",
               g_seal.sign_key_id, g_seal.is_signed ? " (not verified here)" : "",
               g_seal.encrypted ? (g_seal.is_signed ? "; encrypted with model key "
                                                    : "encrypted with model key ")
                                : "",
               g_seal.enc_key_id);
    printf("labels (%d):   ", v->C);
    for (int c = 0; c < v->C; c++)
        printf("%s%s", c ? ", " : "", ud_model_label(m, c));
    printf("\nupdate defaults: %s, learningRate %g [%g, %g], momentum %g%s, miniBatchSize %lld "
           "[%lld, %lld], epochs %lld [%lld, %lld], shuffle %s\n",
           ud_optimizer_name(v->d->optimizer), v->d->learning_rate.value, v->d->learning_rate.min,
           v->d->learning_rate.max, v->d->momentum.value, v->d->nesterov ? " (nesterov)" : "",
           (long long)v->d->mini_batch_size.value, (long long)v->d->mini_batch_size.min,
           (long long)v->d->mini_batch_size.max, (long long)v->d->epochs.value,
           (long long)v->d->epochs.min, (long long)v->d->epochs.max, v->d->shuffle ? "on" : "off");
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

int cli_info_main(int argc, char **argv)
{
    int json;
    const char *path = one_path("info", "model", "MODEL", argc, argv, &json);
    ud_model_t *m = load_model(path);
    struct stat st;
    long long fsize = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    char sha[65];
    ud_model_params_sha256(m, sha);
    struct info v = {m,
                     path,
                     sha,
                     fsize,
                     ud_model_arch(m),
                     ud_model_metadata_const(m),
                     ud_model_update_defaults_const(m),
                     ud_model_input_desc_const(m),
                     ud_model_num_classes(m)};
    if (json)
        info_json(&v);
    else
        info_text(&v);
    ud_model_destroy(&m);
    return 0;
}

/* ---------------------------------------------------------------------------------- eval */

int cli_eval_main(int argc, char **argv)
{
    struct cli_args args;
    cli_parse("eval", argc, argv, &args);
    const char *path = args.nwords ? argv[0] : NULL, *data = cli_arg(&args, "--data");
    int json = cli_arg(&args, "--json") != NULL, skip_bad = cli_arg(&args, "--skip-bad") != NULL;
    if (args.nwords > 1)
        cli_die(NULL, 2, "eval: unexpected '%s'", argv[1]);
    if (!path || !data)
        cli_die(NULL, 2, "eval: usage: updraft eval MODEL --data SRC [--json] [--skip-bad]");
    ud_model_t *m = load_model(path);
    struct ud_err e = {0};
    struct ud_load_opts lo = {
        .shape = ud_model_arch(m)->input, .skip_bad = skip_bad, .warn = cli_warn};
    ud_dataset_t *ds = ud_dataset_load(data, &lo, &e);
    if (!ds)
        cli_die(NULL, 1, "%s", e.msg);
    if (ud_dataset_input_size(ds) != ud_model_input_size(m))
        cli_die(NULL, 1, "%s: samples have %zu values but %s takes %zu", data,
                ud_dataset_input_size(ds), path, ud_model_input_size(m));
    int C = ud_model_num_classes(m);
    const char **names = malloc(sizeof(char *) * (size_t)C);
    for (int c = 0; c < C; c++)
        names[c] = ud_model_label(m, c);
    int mapped = ud_dataset_map_classes(ds, names, C, &e);
    free(names); /* before cli_die(NULL, ): LeakSanitizer builds count it otherwise */
    if (mapped)
        cli_die(NULL, 1, "%s: %s (the model knows: %s ...)", data, e.msg, ud_model_label(m, 0));
    struct ud_batch_provider p;
    ud_dataset_provider(ds, NULL, 0, &p);
    struct ud_eval_result r;
    if (ud_model_evaluate(m, &p, 256, &r, &e))
        cli_die(NULL, 1, "%s: %s", data, e.msg);
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

int cli_predict_main(int argc, char **argv)
{
    struct cli_args args;
    cli_parse("predict", argc, argv, &args);
    int json = cli_arg(&args, "--json") != NULL, failures = 0;
    const char *path = args.nwords ? argv[0] : NULL;
    int nfiles = args.nwords - 1;
    char **files = argv + 1;
    if (!path || nfiles == 0)
        cli_die(NULL, 2, "predict: usage: updraft predict MODEL FILE... [--json]");
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
            cli_die(NULL, 1, "out of memory predicting %s", files[i]);
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

int cli_checkpoints_main(int argc, char **argv)
{
    int json;
    const char *session = one_path("checkpoints", "session", "SESSION", argc, argv, &json);
    struct stat sb;
    if (stat(session, &sb) != 0 || !S_ISDIR(sb.st_mode))
        cli_die(NULL, 1, "%s: no such session directory", session);
    struct ud_err e = {0};
    struct ud_ckpt_state *list = NULL;
    size_t n = 0;
    if (ud_ckpt_list(session, &list, &n, &e))
        cli_die(NULL, 1, "%s", e.msg);
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

int cli_export_main(int argc, char **argv)
{
    struct cli_args args;
    cli_parse("export", argc, argv, &args);
    const char *from = args.nwords ? argv[0] : NULL, *out = cli_arg(&args, "--out");
    if (args.nwords > 1)
        cli_die(NULL, 2, "export: one checkpoint at a time ('%s')", argv[1]);
    if (!from || !out)
        cli_die(NULL, 2,
                "export: usage: updraft export CHECKPOINT --out MODEL.udm (CHECKPOINT: a "
                "checkpoint directory, or a session directory for its newest complete one)");
    struct ud_err e = {0};
    struct stat sb;
    if (stat(from, &sb) != 0 || !S_ISDIR(sb.st_mode))
        cli_die(NULL, 1, "export: %s: no such checkpoint or session directory", from);

    /* A session holds checkpoints/; anything else is taken for a checkpoint directory. */
    char dir[4096], sub[4200];
    snprintf(sub, sizeof sub, "%s/checkpoints", from);
    if (stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (ud_ckpt_latest(from, dir, sizeof dir, &e))
            cli_die(NULL, 1, "export: %s", e.msg);
    } else {
        snprintf(dir, sizeof dir, "%s", from);
    }

    struct ud_ckpt_state st;
    ud_model_t *m = NULL;
    if (ud_ckpt_read(dir, &st, &m, &e))
        cli_die(NULL, 1, "export: %s", e.msg);
    if (strcmp(st.phase, "training") != 0) {
        ud_ckpt_state_deinit(&st);
        ud_model_destroy(&m);
        cli_die(NULL, 1,
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
            cli_die(NULL, 1, "export: out of memory");
    int rc = ud_udm_write(m, out, &e);
    char sha[65];
    ud_model_params_sha256(m, sha);
    ud_model_destroy(&m);
    if (rc) {
        ud_ckpt_state_deinit(&st);
        cli_die(NULL, 1, "export: %s", e.msg);
    }
    printf("wrote %s: the model of %s (iteration %lld, epoch %lld.%lld", out, dir,
           (long long)st.iteration, (long long)st.epoch, (long long)st.minibatch);
    if (isfinite(st.metrics.loss))
        printf(", loss %.4f", st.metrics.loss);
    printf("), params_sha256 %s\n", sha);
    ud_ckpt_state_deinit(&st);
    return 0;
}

/*  cli_init.c — `updraft init`: an untrained model for a dataset's classes.
 *
 *  The start of a federation "from scratch": the network updraft-worker would build for this
 *  --arch and data (ud_arch_from_option, ud_arch_fit_data), initialised from --seed exactly as
 *  the worker initialises it, the dataset's class names as labels, and the worker's update
 *  defaults. The same arguments give the same parameters (params_sha256).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_local.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_data.h"
#include "updraft/ud_model.h"
#include "updraft/ud_optim.h"
#include "updraft/ud_udm.h"

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("updraft init: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void warn_cb(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "updraft init: warning: %s\n", msg);
}

#define INIT_USAGE                                                                                 \
    "updraft init --arch mlp|cnn|SPEC --data SRC --out MODEL.udm [--input C,H,W] [--seed N]\n"     \
    "       [--updatable all|last|none] [--name S] [--skip-bad]"

int cli_init_main(int argc, char **argv)
{
    const char *arch_opt = NULL, *data = NULL, *out = NULL, *name = NULL, *updatable = "all";
    struct ud_shape input = {0, 0, 0};
    uint64_t seed = 0;
    int skip_bad = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: " INIT_USAGE "\n");
            return 0;
        } else if (strcmp(a, "--arch") == 0 && has) {
            arch_opt = argv[++i];
        } else if (strcmp(a, "--data") == 0 && has) {
            data = argv[++i];
        } else if (strcmp(a, "--out") == 0 && has) {
            out = argv[++i];
        } else if (strcmp(a, "--name") == 0 && has) {
            name = argv[++i];
        } else if (strcmp(a, "--updatable") == 0 && has) {
            updatable = argv[++i];
            if (strcmp(updatable, "all") && strcmp(updatable, "last") && strcmp(updatable, "none"))
                die(2, "--updatable: '%s' is not all, last or none", updatable);
        } else if (strcmp(a, "--seed") == 0 && has) {
            const char *s = argv[++i];
            char *end;
            errno = 0;
            long long v = strtoll(s, &end, 10);
            if (errno || end == s || *end || v < 0 || v > (1LL << 62))
                die(2, "--seed: '%s' must be a whole number in [0, 2^62]", s);
            seed = (uint64_t)v;
        } else if (strcmp(a, "--input") == 0 && has) {
            const char *s = argv[++i];
            if (sscanf(s, "%d,%d,%d", &input.c, &input.h, &input.w) != 3 || input.c <= 0 ||
                input.h <= 0 || input.w <= 0 || input.c > 4 || input.h > UD_MAX_DIM ||
                input.w > UD_MAX_DIM)
                die(2, "--input: expected C,H,W (C 1..4), e.g. 1,28,28 or 3,64,64");
        } else if (strcmp(a, "--skip-bad") == 0) {
            skip_bad = 1;
        } else if (a[0] == '-' && !has && strncmp(a, "--", 2) == 0 &&
                   (strcmp(a, "--arch") == 0 || strcmp(a, "--data") == 0 ||
                    strcmp(a, "--out") == 0 || strcmp(a, "--name") == 0 ||
                    strcmp(a, "--updatable") == 0 || strcmp(a, "--seed") == 0 ||
                    strcmp(a, "--input") == 0)) {
            die(2, "%s needs a value\nusage: " INIT_USAGE, a);
        } else {
            die(2, "unknown argument '%s'\nusage: " INIT_USAGE, a);
        }
    }
    if (!arch_opt || !data || !out)
        die(2, "--arch, --data and --out are required\nusage: " INIT_USAGE);

    struct ud_err e = {0};
    struct ud_arch arch;
    int preset;
    if (ud_arch_from_option(arch_opt, &arch, &preset, &e))
        die(1, "%s", e.msg);
    if (!preset && input.c == 0)
        input = arch.input; /* the spec's input shape sizes the images */
    struct ud_load_opts lo = {.shape = input, .skip_bad = skip_bad, .warn = warn_cb};
    ud_dataset_t *ds = ud_dataset_load(data, &lo, &e);
    if (!ds)
        die(1, "%s", e.msg);
    int nclasses = ud_dataset_num_classes(ds);
    if (ud_arch_fit_data(arch_opt, preset, data, ud_dataset_shape(ds), nclasses, &arch, &e))
        die(1, "%s", e.msg);
    ud_model_t *m = ud_model_new(&arch, &e);
    if (!m)
        die(1, "%s", e.msg);
    ud_model_init_params(m, seed);
    if (ud_model_set_labels(m, ud_dataset_classes(ds), nclasses, &e))
        die(1, "%s", e.msg);

    /* Which layers a device may update (Core ML's isUpdatable). */
    int last = -1;
    for (int i = 0; i < arch.nlayers; i++) {
        struct ud_span w, b;
        ud_model_layer_params(m, i, &w, &b);
        if (w.count)
            last = i;
    }
    for (int i = 0; i <= last; i++) {
        struct ud_span w, b;
        ud_model_layer_params(m, i, &w, &b);
        if (!w.count)
            continue;
        int on = strcmp(updatable, "all") == 0 || (strcmp(updatable, "last") == 0 && i == last);
        ud_model_set_layer_updatable(m, i, on);
    }

    struct ud_update_params p;
    ud_update_params_trainer_default(&p);
    p.seed = seed;
    ud_update_defaults_from_params(ud_model_update_defaults(m), &p);

    struct ud_metadata *md = ud_model_metadata(m);
    char desc[1024], seedbuf[32];
    snprintf(desc, sizeof desc, "%s%suntrained %s classifier for the %d classes of %s (seed %llu)",
             name ? name : "", name ? ": " : "", arch_opt, nclasses, data,
             (unsigned long long)seed);
    snprintf(seedbuf, sizeof seedbuf, "%llu", (unsigned long long)seed);
    if (ud_metadata_set(&md->short_description, desc) ||
        (name && ud_metadata_set_additional(md, "name", name)) ||
        ud_metadata_set_additional(md, "dataset", data) ||
        ud_metadata_set_additional(md, "architecture", arch_opt) ||
        ud_metadata_set_additional(md, "seed", seedbuf) ||
        ud_metadata_set_additional(md, "updatable", updatable) ||
        ud_metadata_set_additional(md, "created_by", "updraft init " UD_VERSION_STRING))
        die(1, "out of memory");
    ud_dataset_destroy(&ds);

    int rc = ud_udm_write(m, out, &e);
    char sha[65];
    ud_model_params_sha256(m, sha);
    size_t nparams = ud_model_param_count(m);
    ud_model_destroy(&m);
    if (rc)
        die(1, "%s", e.msg);
    printf("wrote %s: untrained %s, %zu parameters, %d classes, seed %llu, params_sha256 %s\n", out,
           arch_opt, nparams, nclasses, (unsigned long long)seed, sha);
    return 0;
}

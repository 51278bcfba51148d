/*  cli_init.c — `updraft init`: an untrained model for a dataset's classes.
 *
 *  The start of a federation "from scratch": the network updraft-worker would build for this
 *  --arch and data (ud_arch_from_option, ud_arch_fit_data), initialised from --seed exactly as
 *  the worker initialises it, the dataset's class names as labels, and the worker's update
 *  defaults. The same arguments give the same parameters (params_sha256).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "updraft/ud_data.h"
#include "updraft/ud_model.h"
#include "updraft/ud_optim.h"
#include "updraft/ud_udm.h"

/* Which layers a device may update (Core ML's isUpdatable): all, the last with parameters,
 * or none. */
static void set_updatable(ud_model_t *m, int nlayers, const char *updatable)
{
    int last = -1;
    for (int i = 0; i < nlayers; i++) {
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
}

/* The description and the additional metadata that say how the model was made. */
static void set_metadata(ud_model_t *m, const char *name, const char *arch_opt, int nclasses,
                         const char *data, uint64_t seed, const char *updatable)
{
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
        cli_die("init", 1, "out of memory");
}

int cli_init_main(int argc, char **argv)
{
    struct cli_args args;
    cli_parse("init", argc, argv, &args);
    if (args.nwords)
        cli_die("init", 2, "unexpected argument '%s' (try updraft init --help)", argv[0]);
    const char *arch_opt = cli_arg(&args, "--arch"), *data = cli_arg(&args, "--data");
    const char *out = cli_arg(&args, "--out"), *name = cli_arg(&args, "--name");
    const char *updatable = cli_arg(&args, "--updatable"), *v;
    if (!updatable)
        updatable = "all";
    else if (strcmp(updatable, "all") && strcmp(updatable, "last") && strcmp(updatable, "none"))
        cli_die("init", 2, "--updatable: '%s' is not all, last or none", updatable);
    uint64_t seed = 0;
    if ((v = cli_arg(&args, "--seed")))
        seed = (uint64_t)cli_parse_ll("init", "--seed", v, 0, 1LL << 62);
    struct ud_shape input = {0, 0, 0};
    if ((v = cli_arg(&args, "--input")))
        cli_parse_shape("init", v, &input);
    int skip_bad = cli_arg(&args, "--skip-bad") != NULL;
    if (!arch_opt || !data || !out)
        cli_die("init", 2, "--arch, --data and --out are required (try updraft init --help)");

    struct ud_err e = {0};
    struct ud_arch arch;
    int preset;
    if (ud_arch_from_option(arch_opt, &arch, &preset, &e))
        cli_die("init", 1, "%s", e.msg);
    if (!preset && input.c == 0)
        input = arch.input; /* the spec's input shape sizes the images */
    struct ud_load_opts lo = {
        .shape = input, .skip_bad = skip_bad, .warn = cli_warn, .warn_user = (void *)"init"};
    ud_dataset_t *ds = ud_dataset_load(data, &lo, &e);
    if (!ds)
        cli_die("init", 1, "%s", e.msg);
    int nclasses = ud_dataset_num_classes(ds);
    if (ud_arch_fit_data(arch_opt, preset, data, ud_dataset_shape(ds), nclasses, &arch, &e))
        cli_die("init", 1, "%s", e.msg);
    ud_model_t *m = ud_model_new(&arch, &e);
    if (!m)
        cli_die("init", 1, "%s", e.msg);
    ud_model_init_params(m, seed);
    if (ud_model_set_labels(m, ud_dataset_classes(ds), nclasses, &e))
        cli_die("init", 1, "%s", e.msg);

    set_updatable(m, arch.nlayers, updatable);

    struct ud_update_params p;
    ud_update_params_trainer_default(&p);
    p.seed = seed;
    ud_update_defaults_from_params(ud_model_update_defaults(m), &p);

    set_metadata(m, name, arch_opt, nclasses, data, seed, updatable);
    ud_dataset_destroy(&ds);

    int rc = ud_udm_write(m, out, &e);
    char sha[65];
    ud_model_params_sha256(m, sha);
    size_t nparams = ud_model_param_count(m);
    ud_model_destroy(&m);
    if (rc)
        cli_die("init", 1, "%s", e.msg);
    printf("wrote %s: untrained %s, %zu parameters, %d classes, seed %llu, params_sha256 %s\n", out,
           arch_opt, nparams, nclasses, (unsigned long long)seed, sha);
    return 0;
}

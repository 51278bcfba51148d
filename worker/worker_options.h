/*  worker_options.h — updraft-worker's command line: one table of options (name, value, where
 *  it goes, how it is checked), parsed into struct worker_options, and the --help text.
 *
 *  Under a coordinator the same parser reads the job's options a second time (the job spec is
 *  turned into the same command line), so a job trains exactly as the command would.
 */
#ifndef WORKER_OPTIONS_H
#define WORKER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"
#include "updraft/ud_optim.h"

struct worker_options {
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

/* What worker_options_parse returns besides 0 and a UD_E* code: --help was given. */
#define WORKER_OPTIONS_HELP 1

/* Parses argv[1..argc-1] into o, starting from the defaults (o is overwritten). Returns 0;
 * WORKER_OPTIONS_HELP for --help (the caller prints worker_options_usage(stdout), exits 0); or
 * UD_EINVAL with e naming the option and what it takes (the caller exits 2). The strings in o
 * point into argv, which must outlive o. Not thread-safe (getopt's state). */
int worker_options_parse(struct worker_options *o, int argc, char **argv, struct ud_err *e);

/* Writes the --help text to f. */
void worker_options_usage(FILE *f);

#endif

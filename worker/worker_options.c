/*  worker_options.c — updraft-worker's options: the table, the parser, --help (see
 *  worker_options.h).
 */
#include "worker_options.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "updraft/ud_num.h"

#define PROG "updraft-worker"

void worker_options_usage(FILE *f)
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

/* ------------------------------------------------------------------------- the options */

/* How an option's value is stored. */
enum kind {
    K_STR,  /* const char *: the text itself */
    K_ON,   /* int: set to 1 (no value) */
    K_OFF,  /* int: set to 0 (no value) */
    K_I64,  /* int64_t: a whole number in [lo, hi] */
    K_INT,  /* int: a whole number in [lo, hi] */
    K_U64,  /* uint64_t: a whole number in [lo, hi] */
    K_SIZE, /* size_t: a whole number in [lo, hi] */
    K_DBL,  /* double: a number in [lo, hi] (open ends are the validation's to refuse) */
    K_FN,   /* parsed by fn */
    K_HELP, /* --help */
};

typedef int (*opt_fn)(struct worker_options *o, const char *name, const char *v, struct ud_err *e);

struct opt {
    const char *name;
    char letter; /* the short option, or 0 */
    int has_arg; /* no_argument or required_argument */
    enum kind kind;
    size_t off;    /* where it goes in struct worker_options */
    double lo, hi; /* the range of a number (whole numbers up to 2^62: exact in a double) */
    opt_fn fn;     /* K_FN */
    int in_spec;   /* 1: a coordinator's job spec sets it (so it is refused beside --coordinator) */
};

static int parse_optimizer(struct worker_options *o, const char *name, const char *v,
                           struct ud_err *e)
{
    if (ud_optimizer_parse(v, &o->params.optimizer))
        return ud_err_set(e, UD_EINVAL, "%s: '%s' is not sgd or adam", name, v);
    return 0;
}

static int parse_schedule(struct worker_options *o, const char *name, const char *v,
                          struct ud_err *e)
{
    if (ud_lr_schedule_parse(v, &o->params.schedule))
        return ud_err_set(e, UD_EINVAL, "%s: '%s' is not constant, step or cosine", name, v);
    return 0;
}

static int parse_threads(struct worker_options *o, const char *name, const char *v,
                         struct ud_err *e)
{
    int rc = ud_num_int(name, v, 1, 1024, &o->threads, e);
    if (!rc)
        o->threads_set = 1;
    return rc;
}

static int parse_bucket_mb(struct worker_options *o, const char *name, const char *v,
                           struct ud_err *e)
{
    int rc = ud_num_double(name, v, 0, 4096, &o->bucket_mb, e);
    if (!rc && !(o->bucket_mb > 0))
        rc = ud_err_set(e, UD_EINVAL, "%s: '%s' must be in (0, 4096]", name, v);
    return rc;
}

static int parse_input(struct worker_options *o, const char *name, const char *v, struct ud_err *e)
{
    struct ud_shape *s = &o->input;
    if (sscanf(v, "%d,%d,%d", &s->c, &s->h, &s->w) != 3 || s->c <= 0 || s->h <= 0 || s->w <= 0 ||
        s->c > 4 || s->h > UD_MAX_DIM || s->w > UD_MAX_DIM)
        return ud_err_set(e, UD_EINVAL, "%s: expected C,H,W (C 1..4), e.g. 1,28,28 or 3,64,64",
                          name);
    return 0;
}

#define AT(field) offsetof(struct worker_options, field)
#define I40       1099511627776.0       /* 2^40 */
#define I62       4611686018427387904.0 /* 2^62 */
#define REQ       required_argument
#define NOARG     no_argument

/* Every option: name, short letter, value, kind, where, range, parser, set by a job spec. */
static const struct opt OPTS[] = {
    {"data", 'd', REQ, K_STR, AT(data), 0, 0, NULL, 1},
    {"test", 't', REQ, K_STR, AT(test), 0, 0, NULL, 1},
    {"arch", 'a', REQ, K_STR, AT(arch), 0, 0, NULL, 1},
    {"out", 'o', REQ, K_STR, AT(out), 0, 0, NULL, 1},
    {"epochs", 'e', REQ, K_I64, AT(params.epochs), 1, 1e6, NULL, 1},
    {"batch", 'b', REQ, K_I64, AT(params.mini_batch_size), 1, 65536, NULL, 1},
    {"lr", 0, REQ, K_DBL, AT(params.learning_rate), 0, INFINITY, NULL, 1},
    {"momentum", 0, REQ, K_DBL, AT(params.momentum), 0, 1, NULL, 1},
    {"nesterov", 0, NOARG, K_ON, AT(params.nesterov), 0, 0, NULL, 1},
    {"weight-decay", 0, REQ, K_DBL, AT(params.weight_decay), 0, INFINITY, NULL, 1},
    {"optimizer", 0, REQ, K_FN, 0, 0, 0, parse_optimizer, 1},
    {"beta1", 0, REQ, K_DBL, AT(params.beta1), 0, 1, NULL, 1},
    {"beta2", 0, REQ, K_DBL, AT(params.beta2), 0, 1, NULL, 1},
    {"eps", 0, REQ, K_DBL, AT(params.eps), 0, INFINITY, NULL, 1},
    {"schedule", 0, REQ, K_FN, 0, 0, 0, parse_schedule, 1},
    {"step-epochs", 0, REQ, K_I64, AT(params.step_epochs), 1, 1e6, NULL, 1},
    {"gamma", 0, REQ, K_DBL, AT(params.gamma), 0, INFINITY, NULL, 1},
    {"validation", 0, REQ, K_STR, AT(validation), 0, 0, NULL, 1}, /* checked with the data */
    {"seed", 0, REQ, K_U64, AT(params.seed), 0, I62, NULL, 1},
    {"no-shuffle", 0, NOARG, K_OFF, AT(params.shuffle), 0, 0, NULL, 1},
    {"threads", 0, REQ, K_FN, 0, 0, 0, parse_threads, 0},
    {"input", 0, REQ, K_FN, 0, 0, 0, parse_input, 1},
    {"max-samples", 0, REQ, K_SIZE, AT(max_samples), 1, I40, NULL, 1},
    {"skip-bad", 0, NOARG, K_ON, AT(skip_bad), 0, 0, NULL, 1},
    {"json", 'j', NOARG, K_ON, AT(json), 0, 0, NULL, 0},
    {"quiet", 0, NOARG, K_ON, AT(quiet), 0, 0, NULL, 0},
    {"author", 0, REQ, K_STR, AT(author), 0, 0, NULL, 1},
    {"description", 0, REQ, K_STR, AT(description), 0, 0, NULL, 1},
    {"license", 0, REQ, K_STR, AT(license), 0, 0, NULL, 1},
    {"model-version", 0, REQ, K_STR, AT(model_version), 0, 0, NULL, 1},
    {"session", 0, REQ, K_STR, AT(session), 0, 0, NULL, 1},
    {"resume", 0, NOARG, K_ON, AT(resume), 0, 0, NULL, 0},
    {"checkpoint-every", 0, REQ, K_I64, AT(checkpoint_every), 1, I40, NULL, 1},
    {"keep-checkpoints", 0, REQ, K_INT, AT(keep), 1, 1e6, NULL, 1},
    {"report-every", 0, REQ, K_I64, AT(report_every), 1, I40, NULL, 1},
    {"bucket-mb", 0, REQ, K_FN, 0, 0, 0, parse_bucket_mb, 1},
    {"peer-timeout", 0, REQ, K_DBL, AT(peer_timeout), 0.5, 86400, NULL, 1},
    {"coordinator", 0, REQ, K_STR, AT(coordinator), 0, 0, NULL, 0},
    {"job", 0, REQ, K_STR, AT(job), 0, 0, NULL, 0},
    {"coordinator-timeout", 0, REQ, K_DBL, AT(coord_timeout), 1, 86400, NULL, 0},
    {"curve-server-key", 0, REQ, K_STR, AT(curve_server_key), 0, 0, NULL, 0},
    {"curve-secret", 0, REQ, K_STR, AT(curve_secret), 0, 0, NULL, 0},
    {"help", 'h', NOARG, K_HELP, 0, 0, 0, NULL, 0},
};
#define NOPTS (sizeof OPTS / sizeof OPTS[0])

static void options_default(struct worker_options *o)
{
    memset(o, 0, sizeof *o);
    ud_update_params_trainer_default(&o->params);
    o->validation = "auto";
    o->keep = 3;
    o->bucket_mb = 1;
    o->peer_timeout = 60;
    o->coord_timeout = 600;
}

/* Stores v as op says. Returns 0 or UD_EINVAL naming the option. */
static int apply(struct worker_options *o, const struct opt *op, const char *v, struct ud_err *e)
{
    char name[64];
    snprintf(name, sizeof name, "--%s", op->name);
    void *at = (char *)o + op->off;
    long long ll = 0;
    int rc = 0;
    switch (op->kind) {
    case K_STR:
        *(const char **)at = v;
        return 0;
    case K_ON:
    case K_OFF:
        *(int *)at = op->kind == K_ON;
        return 0;
    case K_DBL:
        return ud_num_double(name, v, op->lo, op->hi, (double *)at, e);
    case K_FN:
        return op->fn(o, name, v, e);
    default:
        break;
    }
    if ((rc = ud_num_ll(name, v, (long long)op->lo, (long long)op->hi, &ll, e)))
        return rc;
    if (op->kind == K_I64)
        *(int64_t *)at = ll;
    else if (op->kind == K_INT)
        *(int *)at = (int)ll;
    else if (op->kind == K_U64)
        *(uint64_t *)at = (uint64_t)ll;
    else
        *(size_t *)at = (size_t)ll;
    return 0;
}

/* What getopt_long returned, as a row of the table (NULL: not an option of ours). */
static const struct opt *opt_of(int c)
{
    if (c >= 256 && (size_t)(c - 256) < NOPTS)
        return &OPTS[c - 256];
    for (size_t i = 0; c > 0 && c < 256 && i < NOPTS; i++)
        if (OPTS[i].letter == c)
            return &OPTS[i];
    return NULL;
}

/* The rules between options, once all are read. */
static int check_combination(struct worker_options *o, struct ud_err *e)
{
    if (o->job && !o->coordinator)
        return ud_err_set(e, UD_EINVAL, "--job needs --coordinator tcp://HOST:PORT");
    if ((o->curve_server_key || o->curve_secret) && !o->coordinator)
        return ud_err_set(e, UD_EINVAL,
                          "--curve-server-key and --curve-secret secure the --coordinator link");
    if (!o->curve_server_key != !o->curve_secret)
        return ud_err_set(e, UD_EINVAL,
                          "CURVE needs both --curve-server-key (the coordinator's public key) "
                          "and --curve-secret (this worker's keypair)");
    if (o->coordinator) {
        if (o->spec_opt)
            return ud_err_set(e, UD_EINVAL,
                              "%s: with --coordinator the job spec sets the training options "
                              "(only --job, --resume, --coordinator-timeout, --curve-server-key, "
                              "--curve-secret, --threads, --json and --quiet may be given)",
                              o->spec_opt);
        return 0;
    }
    if (!o->data)
        return ud_err_set(e, UD_EINVAL, "--data is required (see --help)");
    if (!o->arch)
        return ud_err_set(e, UD_EINVAL, "--arch is required: mlp, cnn or a spec file (see --help)");
    if (!o->out)
        return ud_err_set(e, UD_EINVAL,
                          "--out is required: where to write the trained model (.udm)");
    if ((o->resume || o->checkpoint_every) && !o->session)
        return ud_err_set(e, UD_EINVAL, "%s needs --session DIR",
                          o->resume ? "--resume" : "--checkpoint-every");
    return ud_update_params_check_runnable(&o->params, e);
}

int worker_options_parse(struct worker_options *o, int argc, char **argv, struct ud_err *e)
{
    struct option longopts[NOPTS + 1];
    char shortopts[2 * NOPTS + 2] = ":"; /* ':' first: a missing value is ':', not '?' */
    size_t ns = 1;
    for (size_t i = 0; i < NOPTS; i++) {
        longopts[i] = (struct option){OPTS[i].name, OPTS[i].has_arg, NULL,
                                      OPTS[i].letter ? OPTS[i].letter : (int)(256 + i)};
        if (OPTS[i].letter) {
            shortopts[ns++] = OPTS[i].letter;
            if (OPTS[i].has_arg == required_argument)
                shortopts[ns++] = ':';
        }
    }
    shortopts[ns] = '\0';
    longopts[NOPTS] = (struct option){0, 0, 0, 0};
    options_default(o);
    opterr = 0;
    optind = 0; /* parsed twice under a coordinator: start afresh */
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const struct opt *op = opt_of(c);
        if (c == ':')
            return ud_err_set(e, UD_EINVAL, "%s needs a value (see --help)", argv[optind - 1]);
        if (!op)
            return ud_err_set(e, UD_EINVAL, "unknown option '%s' (see --help)", argv[optind - 1]);
        if (op->kind == K_HELP)
            return WORKER_OPTIONS_HELP;
        int rc = apply(o, op, optarg, e);
        if (rc)
            return rc;
        if (!o->spec_opt && op->in_spec)
            o->spec_opt = argv[optind - 1];
    }
    if (optind < argc)
        return ud_err_set(e, UD_EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
    return check_combination(o, e);
}

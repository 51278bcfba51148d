/*  cli_main.c — `updraft`, the operator's tool: main, which hands each command word to its
 *  file (cli.h lists them), and `updraft --help`.
 *
 *    updraft info|eval|predict|checkpoints|export ...   local models and checkpoints (cli_model.c)
 *    updraft init --arch A --data SRC --out M  an untrained model for SRC's classes (cli_init.c)
 *    updraft dataset partition ...             SRC split among simulated clients (cli_dataset.c)
 *    updraft keys|encrypt|decrypt ...          signed and encrypted models (cli_keys.c)
 *    updraft status|jobs|job|models|model|devices|fed ...
 *                                              a coordinator's REST API (cli_remote.c)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_model.h"
#include "updraft/ud_num.h"

void cli_die(const char *cmd, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "updraft%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("updraft: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see updraft --help)\n", stderr);
    va_end(ap);
    return 2;
}

void cli_warn(void *cmd, const char *msg)
{
    const char *c = cmd;
    fprintf(stderr, "updraft%s%s: warning: %s\n", c ? " " : "", c ? c : "", msg);
}

void cli_parse_shape(const char *cmd, const char *text, struct ud_shape *s)
{
    if (sscanf(text, "%d,%d,%d", &s->c, &s->h, &s->w) != 3 || s->c <= 0 || s->h <= 0 || s->w <= 0 ||
        s->c > 4 || s->h > UD_MAX_DIM || s->w > UD_MAX_DIM)
        cli_die(cmd, 2, "--input: expected C,H,W (C 1..4), e.g. 1,28,28 or 3,64,64");
}

long long cli_parse_ll(const char *cmd, const char *opt, const char *text, long long lo,
                       long long hi)
{
    struct ud_err e = {0};
    long long v = 0;
    if (ud_num_ll(opt, text, lo, hi, &v, &e))
        cli_die(cmd, 2, "%s", e.msg);
    return v;
}

/* ---------------------------------------------------------------------- the command table */

#define KEYS_HELP                                                                                  \
    "  keys generate --type sign|model|curve --out PATH [--force]\n"                               \
    "                                      a new key: sign (Ed25519: PATH and PATH.pub),\n"        \
    "                                      model (XChaCha20-Poly1305) or curve (ZeroMQ\n"          \
    "                                      CURVE: PATH and PATH.pub); secrets are mode 0600\n"     \
    "  keys show KEYFILE                   a key file's type and id (and public key)\n"            \
    "  keys sign --key SIGN.key MODEL [--out OUT]\n"                                               \
    "                                      signs a .udm (or a sealed file) with Ed25519\n"         \
    "  keys verify --key SIGN.pub MODEL    checks MODEL's signature: exit 0 verified,\n"           \
    "                                      3 unsigned, 4 another key, 5 altered\n"

const struct cli_cmd cli_commands[] = {
    {.help = "usage: updraft <command> [options]\n\n"},
    {"info", .opts = "--json", .local = cli_info_main,
     .help =
         "  info MODEL [--json]                 layers, parameters, labels, metadata, update\n"
         "                                      defaults, metrics and params_sha256 of a .udm\n"},
    {"eval", .opts = "--data= --json --skip-bad", .local = cli_eval_main,
     .help =
         "  eval MODEL --data SRC [--json] [--skip-bad]\n"
         "                                      accuracy, loss, per-class precision/recall and\n"
         "                                      the confusion matrix on labeled data\n"},
    {"predict", .opts = "--json", .local = cli_predict_main,
     .help = "  predict MODEL FILE... [--json]      one line per image: path, label, confidence\n"},
    {"checkpoints", .opts = "--json", .local = cli_checkpoints_main,
     .help =
         "  checkpoints SESSION [--json]        the checkpoints of a training session: iteration,\n"
         "                                      epoch.minibatch, phase, date, complete or why "
         "not,\n"
         "                                      loss, accuracy, validation accuracy, learning "
         "rate\n"},
    {"export", .opts = "--out=", .local = cli_export_main,
     .help =
         "  export CHECKPOINT --out MODEL.udm   writes a checkpoint's model (with its metrics);\n"
         "                                      CHECKPOINT is a checkpoint directory, or a "
         "session\n"
         "                                      directory for its newest complete checkpoint\n"},
    {.help =
         "\nSRC is a folder of class folders, an IDX images file, or a CSV with a label column.\n"
         "\nFederated simulations:\n"},
    {"init", .opts = "--arch= --data= --out= --input= --seed= --updatable= --name= --skip-bad",
     .local = cli_init_main,
     .help = "  init --arch mlp|cnn|SPEC --data SRC --out MODEL.udm [--input C,H,W] [--seed N]\n"
             "       [--updatable all|last|none] [--name S] [--skip-bad]\n"
             "                                      an untrained model (seeded) whose labels are\n"
             "                                      SRC's classes: the start of a federation\n"},
    {"dataset",
     .opts = "--data= --clients= --scheme= --seed= --out= --format= --min-size= --json --input= "
             "--label-column= --skip-bad --skip=",
     .local = cli_dataset_main,
     .help =
         "  dataset partition --data SRC --clients K --scheme iid|dirichlet:ALPHA|shards:S\n"
         "       --seed N --out DIR [--format png|csv] [--min-size M] [--json] [--input C,H,W]\n"
         "       [--label-column NAME] [--skip-bad] [--skip N]\n"
         "                                      splits SRC into K labeled client directories\n"
         "                                      DIR/client-NNN/ and DIR/partition.json\n"},
    {.help = "\nSigned and encrypted models:\n"},
    {"keys", .local = cli_keys_main, .help = KEYS_HELP},
    {"encrypt", .local = cli_encrypt_main,
     .help = "  encrypt --key MODEL.key MODEL --out OUT\n"
             "                                      encrypts a .udm (XChaCha20-Poly1305)\n"},
    {"decrypt", .local = cli_decrypt_main,
     .help = "  decrypt --key MODEL.key MODEL --out OUT\n"
             "                                      the plain .udm back: exit 4 another key,\n"
             "                                      5 altered\n"},
    {.help = "  (info, eval and predict read an encrypted model with UPDRAFT_MODEL_KEY=KEYFILE)\n"
             "\nTalking to a coordinator (updraft-coordinator):\n"
             "  [--url URL] [--token T | --token-file F] [--cacert F] [--pin P] [--json] COMMAND\n"
             "                                      the coordinator:\n"},
    {"status", .remote = cli_status,
     .help =
         "  status                              version, uptime, jobs by state, workers, models\n"},
    {"jobs", .opts = "--state=", .remote = cli_jobs,
     .help = "  jobs [--state S]                    jobs, newest first\n"},
    {"job", "show", "ID", .remote = cli_job_show,
     .help =
         "  job show ID                         a job: progress, ETA, ranks, metrics, events\n"},
    {"job", "submit", "SPEC.json", .remote = cli_job_submit,
     .help = "  job submit SPEC.json                submits a job spec (- for stdin); needs the "
             "admin token\n"},
    {"job", "cancel", "ID", .remote = cli_job_cancel,
     .help = "  job cancel ID                       cancels a job; needs the admin token\n"},
    {"job", "wait", "ID", "--timeout=", .remote = cli_job_wait,
     .help = "  job wait ID [--timeout S]           waits until the job ends; exit 0 only on "
             "success\n"},
    {"models", .remote = cli_models,
     .help = "  models                              the registry: names, versions, latest\n"},
    {"model", "show", "NAME[@V]", .remote = cli_model_show,
     .help = "  model show NAME[@V]                 a version's metadata, metrics and lineage\n"},
    {"model", "pull", "NAME[@V]", "--out=", .remote = cli_model_pull,
     .help =
         "  model pull NAME[@V] --out F         downloads a version's .udm and checks its hash\n"},
    {"model", "push", "FILE.udm", "--name=", .remote = cli_model_push,
     .help =
         "  model push FILE.udm --name NAME     registers a .udm as NAME's next version; needs\n"
         "                                      the admin token\n"},
    {"devices", .remote = cli_devices,
     .help =
         "  devices                             enrolled devices: last seen, updates, revoked\n"},
    {"devices", "add", .opts = "--name= --count= --out=", .remote = cli_devices_add,
     .help = "  devices add [--name N] [--count K] [--out F]\n"
             "                                      enrols devices; needs the admin token. Prints\n"
             "                                      each id and token, or with --out writes\n"
             "                                      \"ID TOKEN\" lines to F (mode 0600) and no "
             "token\n"},
    {"devices", "revoke", "ID", .remote = cli_devices_revoke,
     .help =
         "  devices revoke ID                   revokes a device: its token is refused from now\n"
         "                                      on; needs the admin token\n"},
    {"fed", "start", "SPEC.json", .remote = cli_fed_start,
     .help = "  fed start SPEC.json                 starts a federation (- for stdin); needs the "
             "admin token\n"},
    {"fed", "list", .remote = cli_fed_list,
     .help = "  fed list                            federations: state, model versions, round\n"},
    {"fed", "show", "ID", .remote = cli_fed_show,
     .help = "  fed show ID                         a federation and each of its rounds\n"},
    {"fed", "cancel", "ID", .remote = cli_fed_cancel,
     .help = "  fed cancel ID                       cancels a federation; needs the admin token\n"},
    {"fed", "wait", "ID", "--timeout= --progress", .remote = cli_fed_wait,
     .help = "  fed wait ID [--timeout S] [--progress]\n"
             "                                      waits until it ends (--progress: a line per\n"
             "                                      finished round); exit 0 only on success\n"},
    {.help =
         "                                      URL: --url, $UPDRAFT_URL or http://127.0.0.1:8470\n"
         "                                      token: --token, --token-file, $UPDRAFT_TOKEN,\n"
         "                                      $UPDRAFT_TOKEN_FILE; every command sends it:\n"
         "                                      reads take the reader token (the coordinator's\n"
         "                                      STATE/reader.token) or the admin token\n"
         "                                      https: --cacert F or $UPDRAFT_CACERT (a CA file;\n"
         "                                      default: the system store), --pin P or\n"
         "                                      $UPDRAFT_PIN (sha256//BASE64 or a key file)\n"},
    {0},
};

static int is_end(const struct cli_cmd *c)
{
    return !c->name && !c->help;
}

void cli_usage_of(FILE *f, const char *name)
{
    for (const struct cli_cmd *c = cli_commands; !is_end(c); c++)
        if (c->name && strcmp(c->name, name) == 0)
            fputs(c->help, f);
}

/* The index of opt in the option list, or -1. */
static int opt_index(const char *list, const char *opt, int *takes)
{
    size_t n = strlen(opt);
    int k = 0;
    for (const char *p = list; p && *p; k++) {
        size_t len = strcspn(p, " ");
        int valued = len > 0 && p[len - 1] == '=';
        if (len - (size_t)valued == n && strncmp(p, opt, n) == 0) {
            if (takes)
                *takes = valued;
            return k;
        }
        p += len;
        p += *p == ' ';
    }
    return -1;
}

int cli_opt_in(const char *list, const char *opt, int *takes)
{
    return opt_index(list, opt, takes) >= 0;
}

void cli_parse(const char *name, int argc, char **argv, struct cli_args *a)
{
    memset(a, 0, sizeof *a);
    size_t word = strcspn(name, " "); /* "dataset partition": the row of "dataset" */
    for (a->cmd = cli_commands; a->cmd->name == NULL || strlen(a->cmd->name) != word ||
                                strncmp(a->cmd->name, name, word) != 0;)
        a->cmd++; /* the caller's own row: always there */
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (o[0] != '-' || !o[1]) {
            argv[a->nwords++] = argv[i];
            continue;
        }
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            printf("usage:\n%s", a->cmd->help);
            exit(0);
        }
        int takes = 0, k = opt_index(a->cmd->opts, o, &takes);
        if (k < 0 || k >= CLI_MAX_OPTS) {
            fprintf(stderr, "updraft %s: unknown option %s (try updraft %s --help)\n", name, o,
                    name);
            exit(2);
        }
        if (takes && i + 1 >= argc)
            cli_die(name, 2, "%s needs a value", o);
        a->val[k] = takes ? argv[++i] : "";
    }
}

const char *cli_arg(const struct cli_args *a, const char *opt)
{
    int k = opt_index(a->cmd->opts, opt, NULL);
    return k >= 0 && k < CLI_MAX_OPTS ? a->val[k] : NULL;
}

static void usage(FILE *f)
{
    for (const struct cli_cmd *c = cli_commands; !is_end(c); c++)
        fputs(c->help, f);
}

/* The row of a command word; a remote command's rows start the same way, so its first. */
static const struct cli_cmd *find_command(const char *word)
{
    for (const struct cli_cmd *c = cli_commands; !is_end(c); c++)
        if (c->name && strcmp(c->name, word) == 0)
            return c;
    return NULL;
}

/* A remote command starts with its word or with one of the options every remote one takes. */
static int starts_remote(const char *word)
{
    const struct cli_cmd *c = find_command(word);
    if (c)
        return c->remote != NULL;
    return word[0] == '-' &&
           (cli_opt_in(CLI_REMOTE_OPTS, word, NULL) || strncmp(word, "--url=", 6) == 0);
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
    if (starts_remote(argv[1]))
        return cli_remote_main(argc - 1, argv + 1);
    const struct cli_cmd *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "updraft: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    ud_kernels_set_threads(1);
    return c->local(argc - 2, argv + 2);
}

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
        return cli_info_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "eval") == 0)
        return cli_eval_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "predict") == 0)
        return cli_predict_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "checkpoints") == 0)
        return cli_checkpoints_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "export") == 0)
        return cli_export_main(argc - 2, argv + 2);
    fprintf(stderr, "updraft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

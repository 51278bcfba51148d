/*  cli.h — the parts of `updraft`, the operator's tool, and what they share.
 *
 *    cli_main.c      main: the command table, dispatch and `updraft --help`
 *    cli_model.c     info, eval, predict, checkpoints, export (local models and checkpoints)
 *    cli_init.c      init: an untrained model for a dataset's classes
 *    cli_dataset.c   dataset partition: a dataset split among simulated clients
 *    cli_keys.c      keys generate|show|sign|verify, encrypt, decrypt
 *    cli_remote.c    status, jobs, job, models, model, devices, fed: a coordinator's REST API
 *
 *  Each command takes the arguments after its command word and returns the exit code: 0
 *  success, 1 a failure (message printed), 2 a usage error; keys and the model readers also 3
 *  unsigned, 4 another key, 5 altered.
 */
#ifndef CLI_H
#define CLI_H

#include <stdio.h>

/* Prints "updraft[ CMD]: message" on stderr and exits with code. cmd (may be NULL) names the
 * command ("init", "dataset partition"). */
void cli_die(const char *cmd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Prints "updraft: message (see updraft --help)" on stderr; returns 2, a usage error's exit
 * code. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A ud_load_opts.warn callback: "updraft[ CMD]: warning: msg", cmd being the user pointer (a
 * const char *, may be NULL). */
void cli_warn(void *cmd, const char *msg);
/* --input C,H,W into *s (C 1..4, H and W 1..UD_MAX_DIM); dies with a usage error otherwise. */
struct ud_shape;
void cli_parse_shape(const char *cmd, const char *text, struct ud_shape *s);
/* A whole number option in [lo, hi] (ud_num_ll's message); dies with a usage error otherwise. */
long long cli_parse_ll(const char *cmd, const char *opt, const char *text, long long lo,
                       long long hi);

/* Local files only (no coordinator). */
int cli_info_main(int argc, char **argv);
int cli_eval_main(int argc, char **argv);
int cli_predict_main(int argc, char **argv);
int cli_checkpoints_main(int argc, char **argv);
int cli_export_main(int argc, char **argv);
int cli_init_main(int argc, char **argv);
int cli_dataset_main(int argc, char **argv);
/* updraft keys generate|show|sign|verify, updraft encrypt|decrypt (cli_keys.c): exit 3 unsigned,
   4 another key, 5 altered, besides 0/1/2. */
int cli_keys_main(int argc, char **argv);
int cli_encrypt_main(int argc, char **argv);
int cli_decrypt_main(int argc, char **argv);
void cli_keys_usage(FILE *f);
/* The exit code for a ud_seal error code (0, 3, 4, 5, else 1). */
int cli_seal_exit_code(int rc);
/* The lines of init and dataset partition for `updraft --help`. */
void cli_local_usage(FILE *f);

/* The commands that talk to a coordinator's REST API (docs/rest.md):
 *
 *    updraft [--url URL] [--token T | --token-file F] [--json] COMMAND
 *      status | jobs [--state S] | job show ID | job submit SPEC.json | job cancel ID |
 *      job wait ID [--timeout S] | models | model show NAME[@V] | model pull NAME[@V] --out F |
 *      model push FILE.udm --name NAME |
 *      devices | devices add [--name N] [--count K] [--out F] |
 *      fed start SPEC.json | fed list | fed show ID | fed cancel ID |
 *      fed wait ID [--timeout S] [--progress]
 *
 *  URL: --url, else $UPDRAFT_URL, else http://127.0.0.1:8470. Token (job submit/cancel, model
 *  push, devices add, fed start/cancel): --token, --token-file, else $UPDRAFT_TOKEN, else
 *  $UPDRAFT_TOKEN_FILE. Human tables by default; --json prints the server's JSON (`devices add
 *  --out` leaves the tokens out of it: they go to the file only, mode 0600). */
/* 1 if word (the first argument after the program name) starts a remote command: one of the
 * command names above or a global option (--url, --token, --token-file, --json). */
int cli_remote_is_command(const char *word);
/* Runs the remote command in argv[0..argc) (the arguments after the program name). Returns the
 * exit code: 0 success, 1 the server said no or could not be reached (its message printed),
 * 2 a usage error. `job wait` returns 0 only when the job SUCCEEDED, `fed wait` only when the
 * federation SUCCEEDED. */
int cli_remote_main(int argc, char **argv);
/* The remote commands' lines for `updraft --help`. */
void cli_remote_usage(FILE *f);

#endif

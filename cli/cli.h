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

/* ---- The command table (cli_main.c): one row per command, in the order of `updraft --help`.
 *
 * A row is a command word and, for a remote command, its subcommand (NULL: none); the one
 * argument it takes after them (NULL: none); the options it takes, space-separated, with a '='
 * after those that take a value ("--timeout= --progress"); its handler; and its lines of
 * `updraft --help`. A local row's handler is given the arguments after its word: it reads them
 * with cli_parse against its row's options, or (opts NULL: keys, encrypt, decrypt, whose
 * getopt parser is theirs) parses them itself. A remote row's are parsed by cli_remote_main. Either
 * way an option the row does not list is refused. A row with no name is a heading of --help only.
 * Adding a command is a row plus its handler. */
struct cli_remote; /* a remote command's options, URL and token (cli_remote.c) */
struct cli_cmd {
    const char *name, *sub, *arg, *opts;
    int (*local)(int argc, char **argv);
    int (*remote)(const struct cli_remote *o, const char *arg);
    const char *help;
};
/* The table; ends with a row of all NULLs. */
extern const struct cli_cmd cli_commands[];
/* The options every remote command takes (before or after its words). */
#define CLI_REMOTE_OPTS "--url= --token= --token-file= --cacert= --pin= --json"
/* 1 if opt is in an option list of the table's form; *takes (may be NULL) then says whether it
 * takes a value. */
int cli_opt_in(const char *list, const char *opt, int *takes);
/* The --help lines of every row named name. */
void cli_usage_of(FILE *f, const char *name);
/* The arguments of a local command whose row lists its options: cli_parse moves the words
 * (the arguments that are not options or their values) to argv[0..nwords), in order, and keeps
 * each option's value (a flag's is ""). It prints the row's --help lines and exits 0 for --help
 * or -h, and dies with a usage error (2) naming the command for an option the row does not
 * list or one without its value. */
#define CLI_MAX_OPTS 16
struct cli_args {
    const struct cli_cmd *cmd;
    const char *val[CLI_MAX_OPTS]; /* by position in cmd->opts; NULL: not given */
    int nwords;
};
void cli_parse(const char *name, int argc, char **argv, struct cli_args *a); /* name: "info",
                                                                            "dataset partition" */
/* The value of opt ("--data"; "" for a flag), or NULL when it was not given. */
const char *cli_arg(const struct cli_args *a, const char *opt);

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

/* The commands that talk to a coordinator's REST API (cli_remote.c, docs/rest.md). URL:
 * --url, else $UPDRAFT_URL, else http://127.0.0.1:8470. Token (every request but a GET):
 * --token, --token-file, else $UPDRAFT_TOKEN, else $UPDRAFT_TOKEN_FILE. Human tables by default;
 * --json prints the server's JSON (`devices add --out` leaves the tokens out of it: they go to
 * the file only, mode 0600). Each returns the exit code: 0 success, 1 the server said no or
 * could not be reached (its message printed), 2 a usage error. `job wait` returns 0 only when
 * the job SUCCEEDED, `fed wait` only when the federation SUCCEEDED. */
int cli_status(const struct cli_remote *o, const char *arg);
int cli_jobs(const struct cli_remote *o, const char *arg);
int cli_job_show(const struct cli_remote *o, const char *id);
int cli_job_submit(const struct cli_remote *o, const char *file);
int cli_job_cancel(const struct cli_remote *o, const char *id);
int cli_job_wait(const struct cli_remote *o, const char *id);
int cli_models(const struct cli_remote *o, const char *arg);
int cli_model_show(const struct cli_remote *o, const char *ref);
int cli_model_pull(const struct cli_remote *o, const char *ref);
int cli_model_push(const struct cli_remote *o, const char *file);
int cli_devices(const struct cli_remote *o, const char *arg);
int cli_devices_add(const struct cli_remote *o, const char *arg);
int cli_devices_revoke(const struct cli_remote *o, const char *id);
int cli_fed_start(const struct cli_remote *o, const char *file);
int cli_fed_list(const struct cli_remote *o, const char *arg);
int cli_fed_show(const struct cli_remote *o, const char *id);
int cli_fed_cancel(const struct cli_remote *o, const char *id);
int cli_fed_wait(const struct cli_remote *o, const char *id);
/* Runs the remote command in argv[0..argc) (the arguments after the program name; its row
 * found from its words), with the options of CLI_REMOTE_OPTS and of its row. */
int cli_remote_main(int argc, char **argv);

#endif

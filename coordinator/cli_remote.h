/*  cli_remote.h — the `updraft` commands that talk to a coordinator's REST API (docs/rest.md):
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
 *  --out` leaves the tokens out of it: they go to the file only, mode 0600).
 */
#ifndef CLI_REMOTE_H
#define CLI_REMOTE_H

#include <stdio.h>

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

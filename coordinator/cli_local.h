/*  cli_local.h — `updraft` commands that work on local files only (no coordinator):
 *
 *    updraft init --arch mlp|cnn|SPEC --data SRC --out M.udm ...      cli_init.c
 *    updraft dataset partition --data SRC --clients K --scheme S ...   cli_dataset.c
 *    updraft keys generate|show|sign|verify, updraft encrypt|decrypt     cli_keys.c
 *
 *  Each takes the arguments after its command word and returns the exit code: 0 success,
 *  1 a failure (message printed), 2 a usage error.
 */
#ifndef CLI_LOCAL_H
#define CLI_LOCAL_H

#include <stdio.h>

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
/* Their lines for `updraft --help`. */
void cli_local_usage(FILE *f);

#endif

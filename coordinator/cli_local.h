/*  cli_local.h — `updraft` commands that work on local files only (no coordinator):
 *
 *    updraft init --arch mlp|cnn|SPEC --data SRC --out M.udm ...      cli_init.c
 *    updraft dataset partition --data SRC --clients K --scheme S ...   cli_dataset.c
 *
 *  Each takes the arguments after its command word and returns the exit code: 0 success,
 *  1 a failure (message printed), 2 a usage error.
 */
#ifndef CLI_LOCAL_H
#define CLI_LOCAL_H

#include <stdio.h>

int cli_init_main(int argc, char **argv);
int cli_dataset_main(int argc, char **argv);
/* Their lines for `updraft --help`. */
void cli_local_usage(FILE *f);

#endif

/*  agent.h — what the parts of updraft-agent share: option parsing and fatal errors (in
 *  agent_main.c), and the daemon's entry point (agent_run.c). */
#ifndef AGENT_H
#define AGENT_H

#include <stddef.h>

#include "updraft/ud_error.h"

/* Prints "updraft-agent: <message>" on stderr and exits with code. For main-side setup only. */
void agent_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
/* Option values; a bad one is agent_die(2) naming the option. */
double agent_parse_double(const char *opt, const char *s);
long long agent_parse_int(const char *opt, const char *s, long long lo, long long hi);
/* Dies (exit 1) unless path's directory exists and is writable and path is not a directory. */
void agent_check_out_path(const char *opt, const char *path);
/* Writes n floats as float32 little-endian to path atomically. d is converted in place (its
 * bytes are little-endian afterwards: no longer floats on a big-endian host). Returns 0 or the
 * UD_E* code. */
int agent_write_delta_file(const char *path, float *d, size_t n, struct ud_err *e);

/* `updraft-agent run ...` (argv[0] is "run"). Returns the exit code. */
int agent_cmd_run(int argc, char **argv);

#endif

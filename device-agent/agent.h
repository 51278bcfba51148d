/*  agent.h — what the parts of updraft-agent share: option parsing and fatal errors (in
 *  agent_main.c), and the daemon's entry point (agent_run.c). */
#ifndef AGENT_H
#define AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include <getopt.h>

#include "agent_log.h"
#include "updraft/ud_error.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_model.h"
#include "updraft/ud_seal.h"

/* Prints "updraft-agent: <message>" on stderr and exits with code. For main-side setup only. */
void agent_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
/* Option values; a bad one is agent_die(2) naming the option. */
double agent_parse_double(const char *opt, const char *s, double lo, double hi);
long long agent_parse_int(const char *opt, const char *s, long long lo, long long hi);
/* The options both commands take: the keys models are checked with, and how the agent reports.
 * AGENT_COMMON_LONGOPTS closes a command's getopt_long table with them (and --help, 'h'). */
struct agent_common_opts {
    const char *pubkey, *model_key; /* --model-pubkey, --model-key */
    struct agent_log log;           /* --json, --quiet */
};
enum { AGENT_O_PUBKEY = 400, AGENT_O_MODELKEY, AGENT_O_JSON, AGENT_O_QUIET };
#define AGENT_COMMON_LONGOPTS                                                                      \
    {"model-pubkey", required_argument, 0, AGENT_O_PUBKEY},                                        \
        {"model-key", required_argument, 0, AGENT_O_MODELKEY},                                     \
        {"json", no_argument, 0, AGENT_O_JSON}, {"quiet", no_argument, 0, AGENT_O_QUIET},          \
        {"help", no_argument, 0, 'h'},                                                             \
    {                                                                                              \
        0, 0, 0, 0                                                                                 \
    }
/* getopt_long over argv (set optind = 1 before the first call) that handles the common options
 * itself, into *common: returns the next other option's value (optarg set), '?' for an unknown
 * one, or -1 at the end. */
int agent_next_option(int argc, char **argv, const struct option *longopts,
                      struct agent_common_opts *common);
/* Dies (exit 1) unless path's directory exists and is writable and path is not a directory. */
void agent_check_out_path(const char *opt, const char *path);
/* Writes n floats as float32 little-endian to path atomically. d is converted in place (its
 * bytes are little-endian afterwards: no longer floats on a big-endian host). Returns 0 or the
 * UD_E* code. */
int agent_write_delta_file(const char *path, float *d, size_t n, struct ud_err *e);

/* The keys a device holds for the models it is sent (docs/security.md): the coordinator's
 * signing public key (--model-pubkey), and the model key of encrypted models (--model-key). */
struct agent_keys {
    struct ud_key verify, decrypt;
    bool have_verify, have_decrypt;
};
/* Loads --model-pubkey / --model-key (either may be NULL); dies (exit 2) naming a bad file. */
void agent_keys_load(struct agent_keys *k, const char *pubkey_path, const char *model_key_path);
/* Reads a model file: checks the signature first when a public key is held (nothing but the
 * sealed envelope is read before that), then decrypts in memory, then parses. Returns the model
 * or NULL with e set: UD_EUNSIGNED, UD_EWRONGKEY, UD_ETAMPERED for a refused model. */
ud_model_t *agent_open_model(const struct agent_keys *k, const char *path,
                             struct ud_seal_info *info, struct ud_err *e);
/* Exit code for a refused model: 3 unsigned, 4 another key, 5 altered; else 1. */
int agent_refusal_exit(int code);

/* `updraft-agent run ...` (argv[0] is "run"). Returns the exit code. */
int agent_cmd_run(int argc, char **argv);

#endif

/*  coord_fed.h — federations: rounds of on-device updates aggregated into model versions.
 *
 *  A federation starts from a registered model version and runs `rounds` rounds. Each round
 *  (coord_db.h, table rounds) moves through:
 *
 *    WAITING  -> OPEN       clients_per_round devices are available (seen within
 *                           `availability` seconds), or at least min_clients are and the round
 *                           has waited round_deadline seconds; clients_per_round of them (or
 *                           all, if fewer) are sampled, seeded by (seed, round number)
 *    OPEN     -> CLOSING    every sampled device answered (an accepted update, or a failure
 *                           report), or the deadline passed
 *    CLOSING  -> PUBLISHED  at least min_clients updates: they are aggregated (FedAvg: the
 *                           base plus the sample-weighted mean of the deltas, times server_lr)
 *                           into the model's next version, scored on the evaluation dataset
 *    CLOSING  -> FAILED     fewer than min_clients: nothing is published, the next round
 *                           starts from the same version
 *    any      -> CANCELLED  the federation was cancelled
 *  After the last round the federation is SUCCEEDED (FAILED if no round published anything).
 *
 *  Updates are accepted by the REST threads (coord_fed_http.c): the delta file is written and
 *  fsynced under STATE/rounds/<round>/ before its row commits, and only a committed row is
 *  acknowledged. Closing is a conditional UPDATE from OPEN, so the set of updates a round
 *  aggregates is exactly the rows committed before it: a late upload finds the round CLOSING
 *  and is refused. A coordinator killed at any point resumes from the rows: an OPEN round
 *  keeps collecting, a CLOSING one is aggregated again (the same inputs give the same bytes),
 *  and a version is published in the same transaction that marks its round PUBLISHED.
 *  Aggregation streams each delta file through a buffer: memory is O(model size) whatever
 *  the number of updates. The delta files of a finished round are deleted.
 *
 *  Thread-safety: a coord_fed_t belongs to the coordinator's main thread (it uses the
 *  read-write connection it was given).
 */
#ifndef COORD_FED_H
#define COORD_FED_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "coord_store.h"
#include "updraft/ud_error.h"
#include "updraft/ud_limits.h"
#include "updraft/ud_model.h"

#define COORD_FED_NAME_MAX    128
#define COORD_FED_SPEC_MAX    UD_LIMIT_FED_SPEC_BYTES
#define COORD_FED_MAX_ROUNDS  100000
#define COORD_FED_MAX_CLIENTS 100000
#define COORD_FED_ENROL_MAX   10000 /* devices enrolled by one POST /v1/devices */
#define COORD_FED_REASON_MAX  256   /* bytes of a failure report's reason kept (longer: cut) */

/* A federation's spec (POST /v1/federations; docs/rest.md lists the keys and defaults). */
struct coord_fed_spec {
    char name[COORD_FED_NAME_MAX];  /* "" : "federation-<id>" */
    char model[COORD_FED_NAME_MAX]; /* registry name */
    int64_t version;                /* 0: the latest */
    char strategy[16];              /* "fedavg" */
    int64_t rounds, clients_per_round, min_clients;
    double round_deadline; /* seconds a round collects */
    double availability;   /* seconds since a device's last call that it counts as available */
    int64_t epochs, batch; /* 0: the model's update defaults */
    double lr;             /* < 0: the model's update default */
    double max_norm;       /* L2 bound on a delta; 0: none */
    double server_lr;      /* FedAvg's server step (1: plain averaging) */
    uint64_t seed;         /* client sampling */
    char eval[4096];       /* an evaluation dataset on the coordinator; "" none */
};

/* Parses a JSON spec: unknown keys, wrong types and out-of-range values are UD_EINVAL naming
 * the key; over COORD_FED_SPEC_MAX bytes UD_ELIMIT. Fills defaults. Does not look at the
 * registry or the file system. */
int coord_fed_spec_parse(const char *json, size_t len, struct coord_fed_spec *s, struct ud_err *e);
/* The body of POST /v1/devices: empty, or {"name": 1..COORD_FED_NAME_MAX-1 bytes,
 * "count": 1..COORD_FED_ENROL_MAX}. name "" and count 0 when absent. UD_EINVAL with the
 * message the client sees. */
int coord_fed_enrol_parse(const char *body, size_t len, char name[COORD_FED_NAME_MAX],
                          int64_t *count, struct ud_err *e);
/* The body of POST /v1/rounds/{id}/failures: empty, or {"reason": string} (cut to
 * COORD_FED_REASON_MAX bytes). UD_EINVAL with the message the client sees. */
int coord_fed_failure_parse(const char *body, size_t len, char reason[COORD_FED_REASON_MAX + 1],
                            struct ud_err *e);
/* Fills what the spec left to the model (epochs, batch, lr: the values the update will use;
 * version: the base version) and checks that the spec as stored parses again. Returns 0, or
 * UD_EINVAL naming the key that is out of the spec's range. */
int coord_fed_spec_fill(struct coord_fed_spec *s, int64_t epochs, int64_t batch, double lr,
                        int64_t version, struct ud_err *e);
/* The spec as canonical JSON (every key, sorted); the caller frees. NULL: out of memory. */
char *coord_fed_spec_json(const struct coord_fed_spec *s);

/* Enrolled device tokens: "<id>.<64 hex>". The database keeps BLAKE2b(secret) only. */
#define COORD_DEVICE_TOKEN_MAX 96
/* Splits a token into the device id and hashes its secret into hash (32 bytes). 0, or
 * UD_EAUTH when it is not a token's shape. */
int coord_device_token_parse(const char *token, size_t len, int64_t *id, unsigned char hash[32]);

typedef struct coord_fed coord_fed_t;

/* Creates the federation engine over db (borrowed) for state_dir (absolute; borrowed). */
coord_fed_t *coord_fed_new(const char *state_dir, const struct coord_model_keys *keys, sqlite3 *db,
                           struct ud_err *e);
/* Frees it. Accepts NULL; NULLs *f. */
void coord_fed_destroy(coord_fed_t **f);
/* Logs the federations that are not finished (start-up). Returns their number or UD_EIO. */
int coord_fed_recover(coord_fed_t *f, struct ud_err *e);
/* Moves every running federation's rounds along (see above); now: unix seconds. Errors are
 * logged and retried at the next tick. */
void coord_fed_tick(coord_fed_t *f, double now);

#endif

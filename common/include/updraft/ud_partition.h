/*  ud_partition.h — splitting a labeled dataset among simulated clients (federated learning).
 *
 *  Pure algorithm, no I/O: given the labels of n samples, a number of clients K, a scheme and
 *  a seed, says which client each sample goes to. Every scheme is a partition (each sample to
 *  exactly one client) and deterministic for a seed, on every machine (ud_rng, stream
 *  UD_RNG_PARTITION). `updraft dataset partition` writes the result out as per-client folders.
 *
 *  Schemes:
 *    - iid:            a random permutation cut into K parts whose sizes differ by at most 1;
 *    - dirichlet:ALPHA for each class, proportions p ~ Dir(ALPHA, ..., ALPHA) over the K clients
 *                      split the class's shuffled samples; small ALPHA skews each client towards
 *                      few classes, large ALPHA approaches iid. The whole draw is repeated (at
 *                      most UD_PARTITION_MAX_TRIES times) until every client has min_size samples;
 *    - shards:S        McMahan et al. (2017): samples sorted by label (shuffled within a class)
 *                      cut into K*S near-equal shards, each client gets S random shards, so that
 *                      with small S most clients see only a few classes.
 *
 *  Thread-safety: the functions keep no state; distinct arguments, distinct threads.
 */
#ifndef UD_PARTITION_H
#define UD_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_PARTITION_MAX_CLIENTS 100000
#define UD_PARTITION_MAX_TRIES   1000 /* dirichlet draws before giving up on min_size */

enum ud_partition_kind {
    UD_PARTITION_IID = 1,
    UD_PARTITION_DIRICHLET = 2,
    UD_PARTITION_SHARDS = 3,
};

struct ud_partition_scheme {
    enum ud_partition_kind kind;
    double alpha; /* dirichlet: concentration, > 0 */
    int shards;   /* shards: per client, >= 1 */
};

/* Parses "iid", "dirichlet:ALPHA" or "shards:S". Returns 0 or UD_EINVAL with a message saying
 * what was expected (unknown scheme, ALPHA not a number > 0, S not a whole number >= 1). */
int ud_partition_scheme_parse(const char *s, struct ud_partition_scheme *out, struct ud_err *e);
/* Writes the scheme back in the syntax ud_partition_scheme_parse reads ("dirichlet:0.5"). */
void ud_partition_scheme_format(const struct ud_partition_scheme *s, char *buf, size_t len);

/* Assigns each of the n samples (labels[i] in [0, nclasses)) to one of nclients clients:
 * client[i] in [0, nclients) (out: n entries, caller's buffer). Every client ends with at least
 * min_size samples (0: no minimum). Deterministic for (labels, nclasses, nclients, scheme,
 * seed, min_size).
 * Returns 0 or, with a message in e and client[] unspecified:
 *   UD_EINVAL  nclients outside [1, UD_PARTITION_MAX_CLIENTS], nclients > n, alpha <= 0 or not
 *              finite, shards < 1, shards * nclients > n, nclasses < 1, min_size * nclients > n;
 *   UD_ERANGE  a label outside [0, nclasses);
 *   UD_ELIMIT  n > UINT32_MAX;
 *   UD_EEMPTY  dirichlet: no draw in UD_PARTITION_MAX_TRIES gave every client min_size samples;
 *              iid / shards: the fixed sizes are below min_size;
 *   UD_ENOMEM. */
int ud_partition_assign(const int32_t *labels, size_t n, int nclasses, uint32_t nclients,
                        const struct ud_partition_scheme *s, uint64_t seed, size_t min_size,
                        uint32_t *client, struct ud_err *e);

/* Groups an assignment by client: *idx (fresh, n entries, caller frees) holds the samples of
 * client k at idx[off[k] .. off[k+1]), ascending; off is the caller's (nclients + 1 entries).
 * Returns 0, UD_ERANGE (a client[i] >= nclients) or UD_ENOMEM. */
int ud_partition_group(const uint32_t *client, size_t n, uint32_t nclients, size_t *off,
                       uint32_t **idx, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif

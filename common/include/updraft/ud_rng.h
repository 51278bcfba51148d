/*  ud_rng.h — the one deterministic random number generator (xoshiro256**, seeded by splitmix64).
 *
 *  Plain data: the whole state is 32 bytes, so checkpoints save it and resume bit for bit.
 *  Initialisation, shuffling, dropout and data splits each take their own stream derived from
 *  (seed, purpose), so that changing one never shifts another.
 */
#ifndef UD_RNG_H
#define UD_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ud_rng {
    uint64_t s[4];
};

/* Streams: the `purpose` argument of ud_rng_seed, so each use has its own sequence. */
enum ud_rng_stream {
    UD_RNG_INIT = 1,      /* parameter initialisation */
    UD_RNG_SHUFFLE = 2,   /* epoch permutations (combined with the epoch number) */
    UD_RNG_DROPOUT = 3,   /* dropout masks */
    UD_RNG_SPLIT = 4,     /* validation split */
    UD_RNG_PARTITION = 5, /* splitting a dataset among simulated clients */
};

/* Seeds r from (seed, stream). Same arguments, same sequence, on every machine. */
void ud_rng_seed(struct ud_rng *r, uint64_t seed, uint64_t stream);
uint64_t ud_rng_next(struct ud_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float ud_rng_uniform(struct ud_rng *r);
/* Uniform integer in [0, n), unbiased. n must be > 0. */
uint64_t ud_rng_below(struct ud_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
float ud_rng_normal(struct ud_rng *r);
/* Gamma(alpha, 1) for alpha > 0 (Marsaglia and Tsang 2000; alpha < 1 through
 * Gamma(alpha + 1) * U^(1/alpha)). May underflow to 0 for very small alpha. */
double ud_rng_gamma(struct ud_rng *r, double alpha);
/* Fills perm[0..n) with a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void ud_rng_permutation(struct ud_rng *r, uint32_t *perm, size_t n);

#ifdef __cplusplus
}
#endif
#endif

/*  ud_rng.c — xoshiro256** (Blackman & Vigna), seeded through splitmix64. */
#include "updraft/ud_rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void ud_rng_seed(struct ud_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t ud_rng_next(struct ud_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float ud_rng_uniform(struct ud_rng *r)
{
    return (float)(ud_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t ud_rng_below(struct ud_rng *r, uint64_t n)
{
    /* Lemire's rejection method would need 128-bit multiply; a simple threshold is enough. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = ud_rng_next(r);
        if (x >= threshold)
            return x % n;
    }
}

float ud_rng_normal(struct ud_rng *r)
{
    double u1 = ((double)(ud_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(ud_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void ud_rng_permutation(struct ud_rng *r, uint32_t *perm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ud_rng_below(r, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* Uniform in (0, 1): 53 random bits, never 0 (log and pow take it). */
static double uniform_open(struct ud_rng *r)
{
    return ((double)(ud_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double ud_rng_gamma(struct ud_rng *r, double alpha)
{
    if (alpha < 1.0) {
        /* Gamma(a) = Gamma(a + 1) * U^(1/a): Marsaglia and Tsang's boost for a < 1. */
        double g = ud_rng_gamma(r, alpha + 1.0);
        return g * pow(uniform_open(r), 1.0 / alpha);
    }
    const double d = alpha - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            /* Box-Muller in double precision (ud_rng_normal is float). */
            double u1 = uniform_open(r), u2 = uniform_open(r);
            x = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = uniform_open(r);
        if (u < 1.0 - 0.0331 * (x * x) * (x * x))
            return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

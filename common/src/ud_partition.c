/*  ud_partition.c — which simulated client each sample goes to (iid, Dirichlet, shards).
 *
 *  Everything is drawn from one ud_rng stream (seed, UD_RNG_PARTITION) in a fixed order, so
 *  a seed gives the same partition on every machine. Work is O(n + K * nclasses) per draw.
 */
#include "updraft/ud_partition.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_rng.h"

int ud_partition_scheme_parse(const char *s, struct ud_partition_scheme *out, struct ud_err *e)
{
    memset(out, 0, sizeof *out);
    if (!s)
        return ud_err_set(e, UD_EINVAL, "no scheme (iid, dirichlet:ALPHA or shards:S)");
    if (strcmp(s, "iid") == 0) {
        out->kind = UD_PARTITION_IID;
        return 0;
    }
    if (strncmp(s, "dirichlet:", 10) == 0) {
        char *end;
        errno = 0;
        double a = strtod(s + 10, &end);
        if (errno || end == s + 10 || *end || !isfinite(a) || !(a > 0))
            return ud_err_set(e, UD_EINVAL,
                              "scheme '%s': ALPHA must be a number > 0 (e.g. dirichlet:0.5)", s);
        out->kind = UD_PARTITION_DIRICHLET;
        out->alpha = a;
        return 0;
    }
    if (strncmp(s, "shards:", 7) == 0) {
        char *end;
        errno = 0;
        long v = strtol(s + 7, &end, 10);
        if (errno || end == s + 7 || *end || v < 1 || v > 1000000)
            return ud_err_set(e, UD_EINVAL,
                              "scheme '%s': S must be a whole number in [1, 1000000] (e.g. "
                              "shards:2)",
                              s);
        out->kind = UD_PARTITION_SHARDS;
        out->shards = (int)v;
        return 0;
    }
    return ud_err_set(e, UD_EINVAL,
                      "unknown scheme '%s' (expected iid, dirichlet:ALPHA or shards:S)", s);
}

void ud_partition_scheme_format(const struct ud_partition_scheme *s, char *buf, size_t len)
{
    switch (s->kind) {
    case UD_PARTITION_IID:
        snprintf(buf, len, "iid");
        break;
    case UD_PARTITION_DIRICHLET:
        snprintf(buf, len, "dirichlet:%.17g", s->alpha);
        break;
    case UD_PARTITION_SHARDS:
        snprintf(buf, len, "shards:%d", s->shards);
        break;
    default:
        snprintf(buf, len, "?");
    }
}

/* Samples of each class, shuffled: the members of class c are cls[coff[c] .. coff[c+1]). */
static void shuffled_by_class(const int32_t *labels, size_t n, int nclasses, const uint32_t *perm,
                              size_t *coff, uint32_t *cls)
{
    memset(coff, 0, sizeof *coff * ((size_t)nclasses + 1));
    for (size_t i = 0; i < n; i++)
        coff[labels[i] + 1]++;
    for (int c = 0; c < nclasses; c++)
        coff[c + 1] += coff[c];
    size_t *fill = coff + nclasses + 1; /* scratch: nclasses entries after coff */
    memcpy(fill, coff, sizeof *fill * (size_t)nclasses);
    /* perm is a random permutation: taking samples in its order shuffles each class. */
    for (size_t k = 0; k < n; k++) {
        uint32_t i = perm[k];
        cls[fill[labels[i]]++] = i;
    }
}

/* The size of the smallest client of an assignment (size: K entries of scratch). */
static size_t smallest_client(const uint32_t *client, size_t n, uint32_t K, size_t *size)
{
    memset(size, 0, sizeof *size * K);
    for (size_t i = 0; i < n; i++)
        size[client[i]]++;
    size_t min = SIZE_MAX;
    for (uint32_t k = 0; k < K; k++)
        if (size[k] < min)
            min = size[k];
    return min;
}

static void assign_iid(const uint32_t *perm, size_t n, uint32_t K, uint32_t *client)
{
    for (uint32_t k = 0; k < K; k++) {
        size_t lo = (size_t)((uint64_t)n * k / K), hi = (size_t)((uint64_t)n * (k + 1) / K);
        for (size_t j = lo; j < hi; j++)
            client[perm[j]] = k;
    }
}

/* One Dirichlet draw over K clients for every class; returns the smallest client size. */
static size_t assign_dirichlet(struct ud_rng *r, double alpha, const size_t *coff,
                               const uint32_t *cls, int nclasses, uint32_t K, double *p,
                               size_t *size, uint32_t *client)
{
    memset(size, 0, sizeof *size * K);
    for (int c = 0; c < nclasses; c++) {
        double sum = 0;
        for (uint32_t k = 0; k < K; k++)
            sum += (p[k] = ud_rng_gamma(r, alpha));
        if (!(sum > 0) || !isfinite(sum)) {
            /* Every gamma underflowed (tiny alpha): the limit of Dir is one client taking all. */
            memset(p, 0, sizeof *p * K);
            p[ud_rng_below(r, K)] = 1;
            sum = 1;
        }
        size_t nc = coff[c + 1] - coff[c], lo = 0;
        double cum = 0;
        for (uint32_t k = 0; k < K; k++) {
            cum += p[k];
            size_t hi = k + 1 == K ? nc : (size_t)llround((double)nc * (cum / sum));
            if (hi > nc)
                hi = nc;
            if (hi < lo)
                hi = lo;
            for (size_t j = lo; j < hi; j++)
                client[cls[coff[c] + j]] = k;
            size[k] += hi - lo;
            lo = hi;
        }
    }
    size_t min = SIZE_MAX;
    for (uint32_t k = 0; k < K; k++)
        if (size[k] < min)
            min = size[k];
    return min;
}

/* McMahan's shards: classes in order (each shuffled), K*S shards, S random ones per client. */
static int assign_shards(struct ud_rng *r, const uint32_t *cls, size_t n, uint32_t K, int S,
                         uint32_t *client)
{
    size_t nshards = (size_t)K * (size_t)S;
    uint32_t *sp = malloc(sizeof *sp * nshards);
    if (!sp)
        return UD_ENOMEM;
    ud_rng_permutation(r, sp, nshards);
    for (size_t j = 0; j < nshards; j++) {
        /* Shard sp[j] goes to client j / S. */
        size_t s = sp[j];
        size_t lo = (size_t)((uint64_t)n * s / nshards),
               hi = (size_t)((uint64_t)n * (s + 1) / nshards);
        for (size_t t = lo; t < hi; t++)
            client[cls[t]] = (uint32_t)(j / (size_t)S);
    }
    free(sp);
    return 0;
}

/* ud_partition_assign's arguments, checked before anything is drawn. */
static int check_args(const int32_t *labels, size_t n, int nclasses, uint32_t K,
                      const struct ud_partition_scheme *s, size_t min_size, struct ud_err *e)
{
    if (n > UINT32_MAX)
        return ud_err_set(e, UD_ELIMIT, "%zu samples: at most %u can be partitioned", n,
                          (unsigned)UINT32_MAX);
    if (K < 1 || K > UD_PARTITION_MAX_CLIENTS)
        return ud_err_set(e, UD_EINVAL, "%u clients: must be between 1 and %d", (unsigned)K,
                          UD_PARTITION_MAX_CLIENTS);
    if (K > n)
        return ud_err_set(e, UD_EINVAL, "%u clients but only %zu samples: each client needs one",
                          (unsigned)K, n);
    if (nclasses < 1)
        return ud_err_set(e, UD_EINVAL, "%d classes: need at least one", nclasses);
    if (s->kind == UD_PARTITION_DIRICHLET && !(s->alpha > 0 && isfinite(s->alpha)))
        return ud_err_set(e, UD_EINVAL, "dirichlet: alpha %g must be a finite number > 0",
                          s->alpha);
    if (s->kind == UD_PARTITION_SHARDS && (s->shards < 1 || (uint64_t)s->shards * K > (uint64_t)n))
        return ud_err_set(e, UD_EINVAL,
                          "shards:%d with %u clients needs %llu shards but there are only %zu "
                          "samples",
                          s->shards, (unsigned)K, (unsigned long long)s->shards * K, n);
    if (s->kind != UD_PARTITION_IID && s->kind != UD_PARTITION_DIRICHLET &&
        s->kind != UD_PARTITION_SHARDS)
        return ud_err_set(e, UD_EINVAL, "unknown partition scheme %d", (int)s->kind);
    if (min_size && (uint64_t)min_size * K > (uint64_t)n)
        return ud_err_set(e, UD_EINVAL,
                          "%u clients of at least %zu samples need %llu samples; there are %zu",
                          (unsigned)K, min_size, (unsigned long long)min_size * K, n);
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= nclasses)
            return ud_err_set(e, UD_ERANGE, "sample %zu has label %d, outside [0, %d)", i,
                              (int)labels[i], nclasses);
    return 0;
}

int ud_partition_assign(const int32_t *labels, size_t n, int nclasses, uint32_t K,
                        const struct ud_partition_scheme *s, uint64_t seed, size_t min_size,
                        uint32_t *client, struct ud_err *e)
{
    int rc = check_args(labels, n, nclasses, K, s, min_size, e);
    if (rc)
        return rc;
    struct ud_rng r;
    ud_rng_seed(&r, seed, UD_RNG_PARTITION);
    uint32_t *perm = malloc(sizeof *perm * (n ? n : 1));
    if (!perm)
        return ud_err_set(e, UD_ENOMEM, "out of memory partitioning %zu samples", n);
    ud_rng_permutation(&r, perm, n);

    if (s->kind == UD_PARTITION_IID) {
        assign_iid(perm, n, K, client);
        size_t smallest = n / K;
        if (smallest < min_size)
            rc = ud_err_set(e, UD_EEMPTY,
                            "iid: %u clients of %zu samples get %zu each, below the minimum %zu",
                            (unsigned)K, n, smallest, min_size);
        free(perm);
        return rc;
    }

    size_t *coff = malloc(sizeof *coff * (2 * (size_t)nclasses + 1));
    uint32_t *cls = malloc(sizeof *cls * (n ? n : 1));
    double *p = malloc(sizeof *p * K);
    size_t *size = malloc(sizeof *size * K);
    if (!coff || !cls || !p || !size) {
        rc = ud_err_set(e, UD_ENOMEM, "out of memory partitioning %zu samples", n);
        goto out_free;
    }
    shuffled_by_class(labels, n, nclasses, perm, coff, cls);

    if (s->kind == UD_PARTITION_SHARDS) {
        if (assign_shards(&r, cls, n, K, s->shards, client)) {
            rc = ud_err_set(e, UD_ENOMEM, "out of memory partitioning %zu samples", n);
            goto out_free;
        }
        size_t smallest = smallest_client(client, n, K, size);
        if (smallest < min_size)
            rc = ud_err_set(e, UD_EEMPTY,
                            "shards:%d: the smallest of %u clients gets %zu samples, below the "
                            "minimum %zu",
                            s->shards, (unsigned)K, smallest, min_size);
        goto out_free;
    }

    size_t best = 0;
    int tries;
    for (tries = 0; tries < UD_PARTITION_MAX_TRIES; tries++) {
        best = assign_dirichlet(&r, s->alpha, coff, cls, nclasses, K, p, size, client);
        if (best >= min_size)
            break;
    }
    if (tries == UD_PARTITION_MAX_TRIES)
        rc = ud_err_set(e, UD_EEMPTY,
                        "dirichlet:%g: no draw in %d tries gave each of the %u clients at least "
                        "%zu samples (the last left one with %zu); lower the minimum size, raise "
                        "alpha or use fewer clients",
                        s->alpha, UD_PARTITION_MAX_TRIES, (unsigned)K, min_size, best);
out_free:
    free(size);
    free(p);
    free(cls);
    free(coff);
    free(perm);
    return rc;
}

int ud_partition_group(const uint32_t *client, size_t n, uint32_t K, size_t *off, uint32_t **idx,
                       struct ud_err *e)
{
    *idx = NULL;
    memset(off, 0, sizeof *off * ((size_t)K + 1));
    for (size_t i = 0; i < n; i++) {
        if (client[i] >= K)
            return ud_err_set(e, UD_ERANGE, "sample %zu is assigned to client %u of %u", i,
                              (unsigned)client[i], (unsigned)K);
        off[client[i] + 1]++;
    }
    for (uint32_t k = 0; k < K; k++)
        off[k + 1] += off[k];
    uint32_t *out = malloc(sizeof *out * (n ? n : 1));
    size_t *fill = malloc(sizeof *fill * ((size_t)K + 1));
    if (!out || !fill) {
        free(out);
        free(fill);
        return ud_err_set(e, UD_ENOMEM, "out of memory grouping %zu samples", n);
    }
    memcpy(fill, off, sizeof *fill * K);
    for (size_t i = 0; i < n; i++)
        out[fill[client[i]]++] = (uint32_t)i;
    free(fill);
    *idx = out;
    return 0;
}

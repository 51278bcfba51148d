/*  ud_split.c — validation splits after Create ML's MLSplitStrategy.
 *
 *  Which samples go to validation is a seeded permutation from the UD_RNG_SPLIT stream: the
 *  first round(n * ratio) entries of it. The same (n, ratio, seed) gives the same split on
 *  every machine, and both index lists come back ascending so that data order is unchanged.
 */
#include "ud_data_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_rng.h"

double ud_split_automatic_ratio(size_t n)
{
    if (n < 50)
        return 0.0;
    if (n < 200)
        return 0.10;
    return 0.05;
}

int ud_split_indices(size_t n, const struct ud_split *s, uint32_t **train, size_t *ntrain,
                     uint32_t **val, size_t *nval, struct ud_err *e)
{
    *train = NULL;
    *val = NULL;
    *ntrain = 0;
    *nval = 0;
    if (n > (size_t)UINT32_MAX)
        return ud_err_set(e, UD_ELIMIT, "%zu samples, over the split limit of %u", n, UINT32_MAX);
    double ratio;
    enum ud_split_kind kind = s ? s->kind : UD_SPLIT_AUTOMATIC;
    switch (kind) {
    case UD_SPLIT_NONE:
        ratio = 0.0;
        break;
    case UD_SPLIT_AUTOMATIC:
        ratio = ud_split_automatic_ratio(n);
        break;
    case UD_SPLIT_FIXED:
        ratio = s->ratio;
        if (!(ratio >= 0.0 && ratio <= 1.0)) /* also catches NaN */
            return ud_err_set(e, UD_ERANGE, "validation ratio %g outside [0, 1]", ratio);
        break;
    default:
        return ud_err_set(e, UD_EINVAL, "unknown split kind %d", (int)kind);
    }
    uint64_t seed = s ? s->seed : 0;
    size_t nv = (size_t)llround((double)n * ratio);
    if (nv > n)
        nv = n;

    int rc = 0;
    uint32_t *tr = malloc((n - nv ? n - nv : 1) * sizeof *tr);
    uint32_t *va = nv ? malloc(nv * sizeof *va) : NULL;
    uint32_t *perm = nv ? malloc(n * sizeof *perm) : NULL;
    unsigned char *in_val = nv ? calloc(n, 1) : NULL;
    if (!tr || (nv && (!va || !perm || !in_val))) {
        rc = ud_err_set(e, UD_ENOMEM, "out of memory splitting %zu samples", n);
        goto out_free;
    }
    if (nv) {
        struct ud_rng r;
        ud_rng_seed(&r, seed, UD_RNG_SPLIT);
        ud_rng_permutation(&r, perm, n);
        for (size_t k = 0; k < nv; k++)
            in_val[perm[k]] = 1;
    }
    size_t it = 0, iv = 0;
    for (size_t i = 0; i < n; i++) {
        if (nv && in_val[i])
            va[iv++] = (uint32_t)i;
        else
            tr[it++] = (uint32_t)i;
    }
    free(perm);
    free(in_val);
    *train = tr;
    *ntrain = it;
    *val = va;
    *nval = iv;
    return 0;

out_free:
    free(tr);
    free(va);
    free(perm);
    free(in_val);
    return rc;
}

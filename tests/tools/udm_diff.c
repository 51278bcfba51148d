/*  udm_diff.c — prints how model B differs from model A over A's updatable parameters, as one
 *  JSON line: {"floats":N,"min":..,"max":..,"mean":..,"frozen_equal":true|false}. The
 *  federation tests use it to check what an aggregate added to its base.
 *
 *    udm_diff A.udm B.udm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_delta.h"
#include "updraft/ud_udm.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: udm_diff A.udm B.udm\n");
        return 2;
    }
    struct ud_err e = {0};
    ud_model_t *a = ud_udm_read(argv[1], &e);
    if (!a) {
        fprintf(stderr, "udm_diff: %s\n", e.msg);
        return 1;
    }
    ud_model_t *b = ud_udm_read(argv[2], &e);
    if (!b) {
        fprintf(stderr, "udm_diff: %s\n", e.msg);
        return 1;
    }
    size_t n = ud_delta_size(a);
    float *d = malloc((n ? n : 1) * sizeof *d);
    if (!d || ud_delta_compute(a, b, d, &e) != 0) {
        fprintf(stderr, "udm_diff: %s\n", d ? e.msg : "out of memory");
        return 1;
    }
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    for (size_t i = 0; i < n; i++) {
        lo = d[i] < lo ? d[i] : lo;
        hi = d[i] > hi ? d[i] : hi;
        sum += d[i];
    }
    /* Parameters outside the updatable spans must be bit-identical. */
    size_t np = ud_model_param_count(a);
    const float *pa = ud_model_params_const(a), *pb = ud_model_params_const(b);
    unsigned char *upd = calloc(np ? np : 1, 1);
    const struct ud_span *sp;
    size_t ns = ud_model_updatable_spans(a, &sp);
    for (size_t s = 0; s < ns; s++)
        memset(upd + sp[s].offset, 1, sp[s].count);
    int frozen_equal = np == ud_model_param_count(b);
    for (size_t i = 0; frozen_equal && i < np; i++)
        if (!upd[i] && memcmp(&pa[i], &pb[i], sizeof(float)) != 0)
            frozen_equal = 0;
    printf("{\"floats\":%zu,\"min\":%.9g,\"max\":%.9g,\"mean\":%.9g,\"frozen_equal\":%s}\n", n, lo,
           hi, n ? sum / (double)n : 0.0, frozen_equal ? "true" : "false");
    free(upd);
    free(d);
    ud_model_destroy(&a);
    ud_model_destroy(&b);
    return 0;
}

/*  ud_num.c — numbers from people's text (contract: ud_num.h). */
#include "updraft/ud_num.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

int ud_num_ll(const char *name, const char *text, long long lo, long long hi, long long *v,
              struct ud_err *e)
{
    char *end = NULL;
    errno = 0;
    long long x = text ? strtoll(text, &end, 10) : 0;
    if (!text || errno || end == text || *end || x < lo || x > hi)
        return ud_err_set(e, UD_EINVAL, "%s: '%s' must be a whole number between %lld and %lld",
                          name, text ? text : "", lo, hi);
    *v = x;
    return 0;
}

int ud_num_int(const char *name, const char *text, int lo, int hi, int *v, struct ud_err *e)
{
    long long x = 0;
    int rc = ud_num_ll(name, text, lo, hi, &x, e);
    if (rc == 0)
        *v = (int)x;
    return rc;
}

int ud_num_double(const char *name, const char *text, double lo, double hi, double *v,
                  struct ud_err *e)
{
    char *end = NULL;
    errno = 0;
    double x = text ? strtod(text, &end) : NAN;
    if (!text || errno || end == text || *end || !isfinite(x))
        return ud_err_set(e, UD_EINVAL, "%s: '%s' is not a number", name, text ? text : "");
    if (x < lo || x > hi)
        return ud_err_set(e, UD_EINVAL, "%s: '%s' must be a number between %g and %g", name, text,
                          lo, hi);
    *v = x;
    return 0;
}

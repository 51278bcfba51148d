/*  ud_strv.c — arrays of owned strings (contract: ud_strv.h). */
#include "updraft/ud_strv.h"

#include <stdlib.h>
#include <string.h>

#include "updraft/ud_error.h"

int ud_strv_dup(const char *const *v, size_t n, char ***out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    char **c = calloc(n, sizeof *c);
    if (!c)
        return UD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        c[i] = strdup(v && v[i] ? v[i] : "");
        if (!c[i]) {
            ud_strv_free(c, i);
            return UD_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void ud_strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/*  ud_strv.h — arrays of owned strings (class names, labels): a deep copy and the matching
 *  free, so that every holder of such an array copies and frees it the same way.
 */
#ifndef UD_STRV_H
#define UD_STRV_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A fresh array of n fresh strings copied from v[0..n) (v NULL or a NULL entry: ""). *out is
 * NULL when n is 0. Returns 0 or UD_ENOMEM (then *out is NULL and nothing is left allocated).
 * Free with ud_strv_free. Thread-safe. */
int ud_strv_dup(const char *const *v, size_t n, char ***out);

/* Frees v[0..n) and v itself; v may be NULL (then n is ignored). Entries may be NULL. */
void ud_strv_free(char **v, size_t n);

#ifdef __cplusplus
}
#endif
#endif

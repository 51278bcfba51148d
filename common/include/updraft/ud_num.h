/*  ud_num.h — numbers from text given by people (command-line options, environment variables,
 *  spec fields): the whole text must be the number, in range, or the error says which option,
 *  what it got and what it takes. Every program parses its numbers here, so that "--epochs x"
 *  reads the same everywhere.
 */
#ifndef UD_NUM_H
#define UD_NUM_H

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A whole number (decimal) in [lo, hi] into *v. name names the value in the message
 * ("--epochs: 'x' must be a whole number between 1 and 1000000"). Returns 0 or UD_EINVAL
 * (not a number, trailing text, out of range); *v is untouched on error. */
int ud_num_ll(const char *name, const char *text, long long lo, long long hi, long long *v,
              struct ud_err *e);
/* The same for an int-sized whole number. */
int ud_num_int(const char *name, const char *text, int lo, int hi, int *v, struct ud_err *e);
/* A finite number in [lo, hi] into *v: "--lr: 'abc' is not a number", "--lr: '20' must be a
 * number between 0 and 10" (for no bounds, pass -DBL_MAX and DBL_MAX). Returns 0 or UD_EINVAL;
 * *v is untouched on error. */
int ud_num_double(const char *name, const char *text, double lo, double hi, double *v,
                  struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif

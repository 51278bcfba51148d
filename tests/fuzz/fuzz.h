/*  fuzz.h — what the libFuzzer targets in tests/fuzz/ share. */
#ifndef UD_FUZZ_H
#define UD_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#include "updraft/ud_error.h"

/* A broken invariant: say which, then crash so that libFuzzer keeps the input. */
static inline void fuzz_fail(const struct ud_err *e)
{
    fprintf(stderr, "fuzz invariant broken; last error: %s\n", e->msg);
    abort();
}

#endif /* UD_FUZZ_H */

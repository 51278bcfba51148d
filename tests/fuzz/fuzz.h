/*  fuzz.h — what the libFuzzer targets in tests/fuzz/ share. */
#ifndef UD_FUZZ_H
#define UD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "updraft/ud_error.h"

/* A broken invariant: say which, then crash so that libFuzzer keeps the input. */
static inline void fuzz_fail(const struct ud_err *e)
{
    fprintf(stderr, "fuzz invariant broken; last error: %s\n", e->msg);
    abort();
}

/* An input of the targets that fuzz several text parsers: the first byte (mod n) picks the
 * parser, the rest (*body, *len) is its text. Returns the parser's number, or -1 for an empty
 * input (nothing to pick with). */
static inline int fuzz_pick(const uint8_t *data, size_t size, int n, const char **body, size_t *len)
{
    if (size < 1)
        return -1;
    *body = (const char *)data + 1;
    *len = size - 1;
    return data[0] % n;
}

#endif /* UD_FUZZ_H */

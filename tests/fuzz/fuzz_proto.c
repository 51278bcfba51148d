/*  fuzz_proto.c — libFuzzer target: the worker protocol's decoder (ud_msg_decode), which reads
 *  every message type (the type is the message's own "t" key). A message that decodes is
 *  encoded again and must decode again to the same type and id.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "updraft/ud_proto.h"

/* A broken invariant: say which, then crash so that libFuzzer keeps the input. */
static void fuzz_fail(const struct ud_err *e)
{
    fprintf(stderr, "fuzz invariant broken; last error: %s\n", e->msg);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ud_err e = {0};
    struct ud_msg m;
    if (ud_msg_decode(data, size, &m, &e) < 0) {
        ud_msg_deinit(&m);
        return 0;
    }
    void *out = NULL;
    size_t len = 0;
    if (ud_msg_encode(&m, &out, &len, &e) == 0) {
        struct ud_msg m2;
        if (ud_msg_decode(out, len, &m2, &e) < 0 || m2.type != m.type || m2.id != m.id)
            fuzz_fail(&e); /* the encoder wrote what the decoder refuses (or reads differently) */
        ud_msg_deinit(&m2);
    }
    free(out);
    ud_msg_deinit(&m);
    return 0;
}

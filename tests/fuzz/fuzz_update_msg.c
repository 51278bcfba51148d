/*  fuzz_update_msg.c — libFuzzer target: a device's update message (ud_update_msg_decode),
 *  validated only (delta NULL, as the coordinator does before allocating) and decoded with
 *  its delta. Both must agree on whether the message is valid, and a valid one re-encodes to
 *  something that decodes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "updraft/ud_delta.h"
#include "updraft/ud_update_msg.h"

#include "fuzz.h"

#define MAX_FLOATS ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ud_err e = {0};
    struct ud_update_msg m;
    int rc0 = ud_update_msg_decode(data, size, MAX_FLOATS, &m, NULL, &e);
    float *delta = NULL;
    int rc1 = ud_update_msg_decode(data, size, MAX_FLOATS, &m, &delta, &e);
    if ((rc0 == 0) != (rc1 == 0) && rc1 != UD_ENOMEM)
        fuzz_fail(&e); /* validation and decoding disagree */
    if (rc1 == 0) {
        double norm;
        ud_delta_check(delta, m.n, 10.0, &norm, &e); /* what the coordinator does next */
        char *out = NULL;
        size_t len = 0;
        struct ud_update_msg m2;
        float *d2 = NULL;
        if (ud_update_msg_encode(&m, &out, &len, &e) != 0 ||
            ud_update_msg_decode(out, len, MAX_FLOATS, &m2, &d2, &e) != 0 || m2.n != m.n)
            fuzz_fail(&e);
        free(d2);
        free(out);
    }
    free(delta);
    return 0;
}

/*  fuzz_proto.c — libFuzzer target: the worker protocol's decoder (ud_msg_decode), which reads
 *  every message type (the type is the message's own "t" key). A message that decodes is
 *  encoded again and must decode again to the same type and id; a job's plan is used as a
 *  worker would.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "updraft/ud_msg.h"

#include "fuzz.h"

/* A plan that passed validation is what a worker trains from: its indices and an epoch's order
 * must come out without reading outside the shards (a hostile coordinator is in the model). */
static void use_plan(const struct ud_plan *p)
{
    size_t n = ud_plan_train_count(p);
    if (n > ((size_t)1 << 20))
        return;
    uint32_t *idx = malloc((n ? n : 1) * sizeof *idx), *perm = malloc((n ? n : 1) * sizeof *perm);
    if (idx && perm) {
        ud_plan_train_indices(p, idx);
        ud_plan_epoch_order(p, 1, perm, n);
        for (size_t i = 0; i < n; i++)
            if (perm[i] >= n || idx[i] >= p->manifest.samples)
                abort();
        (void)ud_plan_hash(p);
    }
    free(idx);
    free(perm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ud_err e = {0};
    struct ud_msg m;
    if (ud_msg_decode(data, size, &m, &e) < 0) {
        ud_msg_deinit(&m);
        return 0;
    }
    if (m.type == UD_MSG_JOB && m.has_plan)
        use_plan(&m.plan);
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

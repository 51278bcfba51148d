/*  fuzz_udm.c — libFuzzer target: the .udm model decoder (ud_udm_decode).
 *
 *  The first byte picks how the rest is used: even, as a whole file; odd, as the msgpack body
 *  of a file that is sealed here (magic, version and a correct SHA-256), so that the fuzzer
 *  reaches the body's parser instead of stopping at the checksum. A model that decodes runs a
 *  forward and backward pass, and is encoded again and must decode again: the encoder and the
 *  decoder agree on what is valid.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ud_udm_impl.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_model.h"
#include "updraft/ud_udm.h"

#include "fuzz.h"

/* A model that decodes must also run: a hostile .udm (the agent downloads one from the
 * coordinator) must not crash forward or backward. Two samples of zeros, through every layer,
 * when each layer's output is small enough to keep the target fast. */
static void exercise(ud_model_t *m)
{
    const struct ud_arch *a = ud_model_arch(m);
    for (int i = 0; i < a->nlayers; i++)
        if (ud_shape_size(ud_arch_shape(a, i)) > 65536)
            return;
    size_t in = ud_model_input_size(m);
    if (in > 65536)
        return;
    float *x = calloc(2 * in, sizeof *x);
    int32_t labels[2] = {0, ud_model_num_classes(m) - 1};
    struct ud_err e = {0};
    double loss;
    if (x && ud_model_forward(m, x, 2, true) == 0 &&
        ud_model_loss(m, labels, 2, &loss, NULL, &e) == 0)
        ud_model_backward(m, labels, 2, 0.5f, NULL, NULL);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct ud_err e = {0};
    char *sealed = NULL;
    const void *buf = data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        if (ud__udm_wrap(data + 1, size - 1, 1, &sealed, &len, &e) < 0)
            return 0;
        buf = sealed;
    }
    ud_model_t *m = ud_udm_decode(buf, len, &e);
    free(sealed);
    if (!m)
        return 0;
    exercise(m);
    char *again = NULL;
    size_t alen = 0;
    if (ud_udm_encode(m, &again, &alen, &e) == 0) {
        ud_model_t *m2 = ud_udm_decode(again, alen, &e);
        if (!m2)
            fuzz_fail(&e); /* the encoder wrote what the decoder refuses: e.msg says why */
        ud_model_destroy(&m2);
    }
    free(again);
    ud_model_destroy(&m);
    return 0;
}

/*  fuzz_ckpt.c — libFuzzer target: the checkpoint files' decoders (state.ckpt, rank-N.ckpt and
 *  DONE) through ud__ckpt_decode_mem, the code ud_ckpt_read runs after reading each file.
 *
 *  First byte: bits 0-1 pick the file (0 state, 1 rank, 2 DONE, 3 state again); bit 2 set
 *  seals the rest as an envelope body here (correct magic, version and SHA-256) so that the
 *  body's parser is reached, clear feeds the rest as the whole file.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ud_ckpt_impl.h"
#include "ud_envelope_impl.h"

static const struct ud__env_format state_fmt = {
    .magic = "UDCK", .version = 1, .what = "state", .noun = "state", .max_bytes = (size_t)1 << 30};
static const struct ud__env_format rank_fmt = {
    .magic = "UDCR", .version = 1, .what = "rank", .noun = "rank", .max_bytes = (size_t)1 << 30};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct ud_err e = {0};
    int which = data[0] & 3;
    enum ud__ckpt_file kind = which == 1   ? UD__CKPT_RANK
                              : which == 2 ? UD__CKPT_DONE
                                           : UD__CKPT_STATE;
    char *sealed = NULL;
    const void *buf = data + 1;
    size_t len = size - 1;
    if ((data[0] & 4) && kind != UD__CKPT_DONE) {
        const struct ud__env_format *f = kind == UD__CKPT_RANK ? &rank_fmt : &state_fmt;
        if (ud__env_seal(f, 1, NULL, NULL, data + 1, size - 1, &sealed, &len, &e) < 0)
            return 0;
        buf = sealed;
    }
    ud__ckpt_decode_mem(kind, buf, len, &e);
    free(sealed);
    return 0;
}

/*  fuzz_image.c — libFuzzer target: the PNG and JPEG decoders and the conversion to a sample
 *  (ud__image_decode_mem, the code the image loaders run on a file's bytes). First byte: bit 0
 *  picks 1 or 3 channels, bits 1-7 the target side (1..128); the rest is the file.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ud_data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int side = 1 + (data[0] >> 1);
    struct ud_shape s = {(data[0] & 1) ? 3 : 1, side, side};
    uint8_t *out = malloc(ud_shape_size(s));
    if (!out)
        return 0;
    char msg[UD_ERRMSG_MAX];
    ud__image_decode_mem(data + 1, size - 1, s, out, msg, sizeof msg);
    free(out);
    return 0;
}

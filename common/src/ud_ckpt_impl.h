/*  ud_ckpt_impl.h — private to libupdraft and its tests and fuzz targets: the checkpoint
 *  files' decoders on memory, without a directory around them.
 *
 *  ud_ckpt_read and the listing functions decode through the same code after reading a file;
 *  these entry points let tests/fuzz/fuzz_ckpt.c feed them arbitrary bytes.
 */
#ifndef UD_CKPT_IMPL_H
#define UD_CKPT_IMPL_H

#include <stddef.h>

#include "updraft/ud_ckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ud__ckpt_file {
    UD__CKPT_STATE, /* state.ckpt ("UDCK" envelope) */
    UD__CKPT_RANK,  /* rank-NNNNN.ckpt ("UDCR" envelope) */
    UD__CKPT_DONE,  /* DONE (text) */
};

/* Decodes buf[0..len) as the given file (the state with its optimizer floats), checks it as
 * reading a checkpoint would, and frees what it decoded. Returns 0 or the reader's UD_E* code
 * with e set. Never reads outside buf[0..len). */
int ud__ckpt_decode_mem(enum ud__ckpt_file kind, const void *buf, size_t len, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif

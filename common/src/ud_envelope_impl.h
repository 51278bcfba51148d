/*  ud_envelope_impl.h — the versioned msgpack envelope and the structural scan shared by
 *  updraft's binary files (private to libupdraft and its unit tests; not installed).
 *
 *  Every binary artefact is one msgpack array  [ magic: fixstr 4, version: uint, body: bin,
 *  sha256: bin 32 ]  where the checksum covers every byte before its own element
 *  (docs/model-format.md, section 2, is the normative description; the .udm model file, the
 *  checkpoint state and the checkpoint rank files differ only in magic, version and body).
 *
 *  Reading goes in an order that lets each failure be named: the envelope is parsed by hand, so
 *  a foreign file, a future version and a truncated file are told apart before anything else;
 *  then the checksum; then one structural scan bounds nesting, object count and every declared
 *  length by the bytes actually present, so msgpack's unpacker never allocates from a size the
 *  file cannot back. The bodies are then read with the strict field readers of ud_mpk_impl.h.
 */
#ifndef UD_ENVELOPE_IMPL_H
#define UD_ENVELOPE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "updraft/ud_error.h"

#include "ud_mpk_impl.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD__ENV_MAGIC_LEN   4
#define UD__ENV_SUM_LEN     32      /* SHA-256 */
#define UD__ENV_MAX_DEPTH   8       /* nesting of a body */
#define UD__ENV_MAX_OBJECTS 1000000 /* msgpack objects in a body */

/* One file family: what its envelope says and how its messages name it. */
struct ud__env_format {
    const char *magic; /* exactly 4 ASCII bytes: "UDM1", "UDCK", "UDCR" */
    uint64_t version;  /* the newest format version this build reads (and writes) */
    const char *what;  /* "updraft model": "not an updraft model (no "UDM1" magic ...)" */
    const char *noun;  /* "model": "the encoded model would be N bytes, the limit is M" */
    size_t max_bytes;  /* the whole file's limit */
};

/* libsodium's one-time initialisation. Returns 0 or UD_EINTERNAL. */
int ud__env_sodium(struct ud_err *e);

/* Builds a whole file, [magic, version, body, sha256], into a fresh, exactly sized buffer
 * (*buf, caller frees with free()). The body is what pack(ctx) produces or, when pack is NULL,
 * the raw_len bytes at raw (not checked: tests craft bodies). `version` is stamped as given.
 * Returns 0, UD_ELIMIT (over f->max_bytes), UD_ENOMEM or UD_EINTERNAL. */
int ud__env_seal(const struct ud__env_format *f, uint64_t version, ud__mpk_pack_fn pack,
                 const void *ctx, const void *raw, size_t raw_len, char **buf, size_t *len,
                 struct ud_err *e);

/* Checks the envelope of p[0..len) and its checksum and finds the body. Returns 0 or
 * UD_EFOREIGN, UD_ETRUNCATED, UD_EVERSION, UD_EFORMAT, UD_ECHECKSUM (docs/model-format.md,
 * section 5, steps 1-4). Never reads outside p[0..len). */
int ud__env_open(const struct ud__env_format *f, const unsigned char *p, size_t len,
                 const unsigned char **body, size_t *body_len, struct ud_err *e);

/* Scans the body (bounded nesting, object count and lengths; exactly one msgpack value) and
 * unpacks it into up, which the caller has initialised and destroys whatever this returns.
 * Returns 0, UD_EFORMAT or UD_ENOMEM. */
int ud__env_unpack(const unsigned char *body, size_t body_len, msgpack_unpacked *up,
                   struct ud_err *e);
/* The same for any msgpack value (a protocol message): `what` names it in messages ("message:
 * msgpack data ends early at byte 12"). */
int ud__env_unpack_as(const unsigned char *body, size_t body_len, const char *what,
                      msgpack_unpacked *up, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif

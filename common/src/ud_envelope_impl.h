/*  ud_envelope_impl.h — the versioned msgpack envelope and the strict field readers shared by
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
 *  file cannot back. The field readers check every object's type and range and name the field
 *  in their messages ("params.epochs: -1 is out of range [1, ...]").
 */
#ifndef UD_ENVELOPE_IMPL_H
#define UD_ENVELOPE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "updraft/ud_error.h"

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

/* Packs a body into pk (called twice: once counting, once writing). */
/* A msgpack packer's sink that only counts (data NULL) or writes into an exactly sized buffer
 * (a write past cap sets overflow and fails): pack once to size, once to fill. */
struct ud__env_out {
    char *data;
    size_t len, cap;
    bool overflow;
};
int ud__env_out_write(void *user, const char *buf, size_t n);

typedef void (*ud__env_pack_fn)(msgpack_packer *pk, const void *ctx);

/* Builds a whole file, [magic, version, body, sha256], into a fresh, exactly sized buffer
 * (*buf, caller frees with free()). The body is what pack(ctx) produces or, when pack is NULL,
 * the raw_len bytes at raw (not checked: tests craft bodies). `version` is stamped as given.
 * Returns 0, UD_ELIMIT (over f->max_bytes), UD_ENOMEM or UD_EINTERNAL. */
int ud__env_seal(const struct ud__env_format *f, uint64_t version, ud__env_pack_fn pack,
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

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF) and no NUL byte. */
bool ud__env_utf8_ok(const unsigned char *s, size_t n);

/* f32 arrays as little-endian bytes, whatever the host. */
void ud__env_pack_f32_bin(msgpack_packer *pk, const float *v, size_t n);
void ud__env_f32_from_le(float *dst, const unsigned char *src, size_t n);

/* ---- Field readers. All return 0 or UD_EFORMAT (UD_ENOMEM for get_str) naming `field`. ---- */

const char *ud__env_type_name(const msgpack_object *o); /* "an integer", "a map", ... */
int ud__env_type_err(const msgpack_object *o, const char *field, const char *want,
                     struct ud_err *e);
/* True when k is the string s. */
bool ud__env_key_is(const msgpack_object *k, const char *s);
/* Matches a map against a fixed key set: every key a string from keys[], none repeated, all
 * present ("missing key", "unknown key", "appears twice"). vals[i] gets the value of keys[i]. */
int ud__env_fields(const msgpack_object *map, const char *field, const char *const *keys,
                   size_t nkeys, const msgpack_object **vals, struct ud_err *e);
/* The index of the first key of a map (keys: strings) that repeats an earlier one, or -1. */
long ud__env_dup_key(const msgpack_object *map);
/* o must be one of the n strings names[]; *idx gets its index. */
int ud__env_get_choice(const msgpack_object *o, const char *field, const char *const *names, int n,
                       int *idx, struct ud_err *e);
int ud__env_get_int(const msgpack_object *o, const char *field, int64_t lo, int64_t hi,
                    int64_t *out, struct ud_err *e);
int ud__env_get_u64(const msgpack_object *o, const char *field, uint64_t *out, struct ud_err *e);
/* Any msgpack number as a double (NaN and infinities pass: callers decide). */
int ud__env_get_double(const msgpack_object *o, const char *field, double *out, struct ud_err *e);
/* A finite number representable as f32. */
int ud__env_get_float(const msgpack_object *o, const char *field, float *out, struct ud_err *e);
int ud__env_get_bool(const msgpack_object *o, const char *field, int *out, struct ud_err *e);
/* A string as a fresh C string (*out, caller frees); nil gives NULL when nullable. Length
 * (<= max) and UTF-8 are checked before allocating. */
int ud__env_get_str(const msgpack_object *o, const char *field, size_t max, bool nullable,
                    char **out, struct ud_err *e);
/* A string into buf (cap bytes, NUL included): at most cap - 1 bytes, valid UTF-8. */
int ud__env_get_strbuf(const msgpack_object *o, const char *field, char *buf, size_t cap,
                       struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif

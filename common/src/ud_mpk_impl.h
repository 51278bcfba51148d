/*  ud_mpk_impl.h — the msgpack helpers every binary format of updraft shares (private to
 *  libupdraft and its unit tests; not installed).
 *
 *  One set for all: the .udm model (ud_udm.c), the checkpoint files (ud_ckpt.c), the worker
 *  protocol (ud_msg.c), the federated update message (ud_update_msg.c) and the envelope around
 *  the files (ud_envelope.c). Packing writes deterministic bytes (minimal integers, strings by
 *  length, f32 arrays as little-endian bins); the two-pass packer counts first and then writes
 *  into an exactly sized buffer. Reading is strict: every reader checks the object's type and
 *  range before it copies anything, and every refusal is UD_EFORMAT (UD_ENOMEM, UD_ELIMIT where
 *  said) naming the field in one wording: "params.epochs: -1 is out of range [1, ...]",
 *  "input.kind: expected a string, found an integer", "body: missing key \"params\"".
 *
 *  Thread-safety: no state; the functions may be called from any thread.
 */
#ifndef UD_MPK_IMPL_H
#define UD_MPK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Packing ---- */

/* A msgpack packer's sink that only counts (data NULL) or writes into an exactly sized buffer
 * (a write past cap sets overflow and fails): pack once to size, once to fill. */
struct ud__mpk_out {
    char *data;
    size_t len, cap;
    bool overflow;
};
int ud__mpk_out_write(void *user, const char *buf, size_t n);

/* Packs one value into pk; called twice by the two-pass packers (must pack the same bytes). */
typedef void (*ud__mpk_pack_fn)(msgpack_packer *pk, const void *ctx);

/* Packs pack(ctx) once to count and once into a fresh, exactly sized buffer (*buf, caller frees
 * with free(); *len its size). Returns 0; UD_ELIMIT when the packed size is over max (nothing is
 * allocated; the message is "<what>: the <noun> would be N bytes, the limit is M"); UD_ENOMEM;
 * UD_EINTERNAL when the two passes disagree. */
int ud__mpk_pack_alloc(ud__mpk_pack_fn pack, const void *ctx, size_t max, const char *what,
                       const char *noun, char **buf, size_t *len, struct ud_err *e);

/* A string (strlen bytes); NULL packs nil. */
void ud__mpk_pack_str(msgpack_packer *pk, const char *s);
void ud__mpk_pack_bool(msgpack_packer *pk, int b);
/* f32 (u32) arrays as one bin of little-endian bytes, whatever the host. */
void ud__mpk_pack_f32_bin(msgpack_packer *pk, const float *v, size_t n);
void ud__mpk_pack_u32_bin(msgpack_packer *pk, const uint32_t *v, size_t n);

/* A map entry: the key as a string, then the value. */
void ud__mpk_pack_key_str(msgpack_packer *pk, const char *key, const char *s);
void ud__mpk_pack_key_int(msgpack_packer *pk, const char *key, int64_t v);
void ud__mpk_pack_key_uint(msgpack_packer *pk, const char *key, uint64_t v);
void ud__mpk_pack_key_double(msgpack_packer *pk, const char *key, double v);
void ud__mpk_pack_key_float(msgpack_packer *pk, const char *key, float v); /* as float32 */
void ud__mpk_pack_key_bool(msgpack_packer *pk, const char *key, int v);
void ud__mpk_pack_key_f32_bin(msgpack_packer *pk, const char *key, const float *v, size_t n);

/* ---- Bytes ---- */

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF) and no NUL byte. */
bool ud__mpk_utf8_ok(const unsigned char *s, size_t n);
/* n little-endian f32 (u32) values at src into dst. */
void ud__mpk_f32_from_le(float *dst, const unsigned char *src, size_t n);
void ud__mpk_u32_from_le(uint32_t *dst, const unsigned char *src, size_t n);

/* ---- Reading. All return 0 or UD_EFORMAT (UD_ENOMEM for get_str) naming `field`. ---- */

const char *ud__mpk_type_name(const msgpack_object *o); /* "an integer", "a map", ... */
/* "<field>: expected <want>, found <type>" (UD_EFORMAT). */
int ud__mpk_type_err(const msgpack_object *o, const char *field, const char *want,
                     struct ud_err *e);
/* True when k is the string s. */
bool ud__mpk_key_is(const msgpack_object *k, const char *s);
/* Matches a map against a fixed key set: every key a string from keys[], none repeated, all
 * present ("missing key", "unknown key", "appears twice"). vals[i] gets the value of keys[i]. */
int ud__mpk_fields(const msgpack_object *map, const char *field, const char *const *keys,
                   size_t nkeys, const msgpack_object **vals, struct ud_err *e);
/* The value of key in a map whose other keys are not looked at (*val NULL when absent). A key
 * given twice is UD_EFORMAT: which of the two a reader takes would otherwise be up to it.
 * require: absent is UD_EFORMAT "<field>: missing key". */
int ud__mpk_lookup(const msgpack_object *map, const char *field, const char *key,
                   const msgpack_object **val, struct ud_err *e);
int ud__mpk_require(const msgpack_object *map, const char *field, const char *key,
                    const msgpack_object **val, struct ud_err *e);
/* What ud__mpk_read_map reads a key's value as, and what `out` points at. */
enum ud__mpk_as {
    UD__MPK_AS_I64,    /* int64_t, in [lo, hi] (ud__mpk_get_int) */
    UD__MPK_AS_U64,    /* uint64_t (ud__mpk_get_u64) */
    UD__MPK_AS_DOUBLE, /* double, any number (ud__mpk_get_double) */
    UD__MPK_AS_BOOL,   /* int, 0 or 1 (ud__mpk_get_bool) */
    UD__MPK_AS_STRBUF, /* char[cap] (ud__mpk_get_strbuf) */
    UD__MPK_AS_OBJ,    /* const msgpack_object *: the value, for the caller to read */
};
/* One key of a map read by ud__mpk_read_map. */
struct ud__mpk_field {
    const char *key;
    enum ud__mpk_as as;
    void *out;
    int64_t lo, hi; /* UD__MPK_I64 */
    size_t cap;     /* UD__MPK_STRBUF */
};
/* Rows of a field table: UD__MPK_INT("epochs", &p->epochs, 0, INT64_MAX). */
#define UD__MPK_INT(k, p, min, max)                                                                \
    {                                                                                              \
        .key = (k), .as = UD__MPK_AS_I64, .out = (p), .lo = (min), .hi = (max)                     \
    }
#define UD__MPK_U64(k, p)                                                                          \
    {                                                                                              \
        .key = (k), .as = UD__MPK_AS_U64, .out = (p)                                               \
    }
#define UD__MPK_DOUBLE(k, p)                                                                       \
    {                                                                                              \
        .key = (k), .as = UD__MPK_AS_DOUBLE, .out = (p)                                            \
    }
#define UD__MPK_BOOL(k, p)                                                                         \
    {                                                                                              \
        .key = (k), .as = UD__MPK_AS_BOOL, .out = (p)                                              \
    }
#define UD__MPK_STRBUF(k, buf, size)                                                               \
    {                                                                                              \
        .key = (k), .as = UD__MPK_AS_STRBUF, .out = (buf), .cap = (size)                           \
    }
#define UD__MPK_OBJ(k, p)                                                                          \
    {                                                                                              \
        .key = (k), .as = UD__MPK_AS_OBJ, .out = (p)                                               \
    }

/* Expects a map with exactly the keys of f[0..n) (ud__mpk_fields' rules; `field` names the
 * map) and reads each value, in f's order, into its out. A value is named "<prefix>.<key>" in
 * messages, or "<key>" when prefix is NULL. */
int ud__mpk_read_map(const msgpack_object *map, const char *field, const char *prefix,
                     const struct ud__mpk_field *f, size_t n, struct ud_err *e);
/* The index of the first key of a map (keys: strings) that repeats an earlier one, or -1. */
long ud__mpk_dup_key(const msgpack_object *map);
/* o must be one of the n strings names[]; *idx gets its index. */
int ud__mpk_get_choice(const msgpack_object *o, const char *field, const char *const *names, int n,
                       int *idx, struct ud_err *e);
int ud__mpk_get_int(const msgpack_object *o, const char *field, int64_t lo, int64_t hi,
                    int64_t *out, struct ud_err *e);
int ud__mpk_get_u64(const msgpack_object *o, const char *field, uint64_t *out, struct ud_err *e);
/* Any msgpack number as a double (NaN and infinities pass: callers decide). */
int ud__mpk_get_double(const msgpack_object *o, const char *field, double *out, struct ud_err *e);
/* A finite number representable as f32. */
int ud__mpk_get_float(const msgpack_object *o, const char *field, float *out, struct ud_err *e);
int ud__mpk_get_bool(const msgpack_object *o, const char *field, int *out, struct ud_err *e);
/* A string as a fresh C string (*out, caller frees); nil gives NULL when nullable. Length
 * (<= max) and UTF-8 are checked before allocating. */
int ud__mpk_get_str(const msgpack_object *o, const char *field, size_t max, bool nullable,
                    char **out, struct ud_err *e);
/* A string into buf (cap bytes, NUL included): at most cap - 1 bytes, valid UTF-8. */
int ud__mpk_get_strbuf(const msgpack_object *o, const char *field, char *buf, size_t cap,
                       struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif

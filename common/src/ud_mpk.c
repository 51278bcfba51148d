/*  ud_mpk.c — the msgpack helpers every binary format shares: packing (map entries, strings,
 *  little-endian arrays, the two-pass exactly sized packer) and the strict readers. Contracts
 *  in ud_mpk_impl.h.
 */
#include "ud_mpk_impl.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MPK_LE_CHUNK 4096 /* values converted per bin_body call */

/* ------------------------------------------------------------------------------------------ */
/* Bytes                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static uint32_t mpk_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float mpk_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t mpk_le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void ud__mpk_f32_from_le(float *dst, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++, b += 4)
        dst[i] = mpk_f32_from_bits(mpk_le32(b));
}

void ud__mpk_u32_from_le(uint32_t *dst, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++, b += 4)
        dst[i] = mpk_le32(b);
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF) and no NUL byte, since
 * the strings become C strings. */
bool ud__mpk_utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (k > n - i - 1)
            return false;
        for (size_t j = 1; j <= k; j++) {
            unsigned cc = s[i + j];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Packing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

int ud__mpk_out_write(void *user, const char *buf, size_t n)
{
    struct ud__mpk_out *o = user;
    if (o->data) {
        if (n > o->cap - o->len) {
            o->overflow = true;
            return -1;
        }
        memcpy(o->data + o->len, buf, n);
    }
    o->len += n;
    return 0;
}

int ud__mpk_pack_alloc(ud__mpk_pack_fn pack, const void *ctx, size_t max, const char *what,
                       const char *noun, char **buf, size_t *len, struct ud_err *e)
{
    *buf = NULL;
    *len = 0;
    /* Counting pass: the exact size, so the buffer is allocated once. */
    struct ud__mpk_out o = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o, ud__mpk_out_write);
    pack(&pk, ctx);
    if (o.len > max)
        return ud_err_set(e, UD_ELIMIT, "%s: the %s would be %zu bytes, the limit is %zu", what,
                          noun, o.len, max);
    size_t total = o.len;
    o = (struct ud__mpk_out){.data = malloc(total ? total : 1), .cap = total};
    if (!o.data)
        return ud_err_set(e, UD_ENOMEM, "%s: cannot allocate %zu bytes for the %s", what, total,
                          noun);
    pack(&pk, ctx);
    if (o.overflow || o.len != total) {
        free(o.data);
        return ud_err_set(e, UD_EINTERNAL, "%s: encoder size mismatch (%zu bytes, expected %zu)",
                          what, o.len, total);
    }
    *buf = o.data;
    *len = total;
    return 0;
}

void ud__mpk_pack_str(msgpack_packer *pk, const char *s)
{
    if (s)
        msgpack_pack_str_with_body(pk, s, strlen(s));
    else
        msgpack_pack_nil(pk);
}

void ud__mpk_pack_bool(msgpack_packer *pk, int b)
{
    if (b)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* 32-bit values as one bin of little-endian bytes, converted a chunk at a time. f32 is true:
 * v holds floats (their bits are written), else uint32_t. */
static void mpk_pack_le32_bin(msgpack_packer *pk, const void *v, size_t n, bool f32)
{
    msgpack_pack_bin(pk, n * 4);
    unsigned char chunk[MPK_LE_CHUNK * 4];
    for (size_t i = 0; i < n; i += MPK_LE_CHUNK) {
        size_t c = n - i < MPK_LE_CHUNK ? n - i : MPK_LE_CHUNK;
        for (size_t j = 0; j < c; j++) {
            uint32_t u =
                f32 ? mpk_f32_bits(((const float *)v)[i + j]) : ((const uint32_t *)v)[i + j];
            chunk[4 * j + 0] = (unsigned char)(u);
            chunk[4 * j + 1] = (unsigned char)(u >> 8);
            chunk[4 * j + 2] = (unsigned char)(u >> 16);
            chunk[4 * j + 3] = (unsigned char)(u >> 24);
        }
        msgpack_pack_bin_body(pk, chunk, c * 4);
    }
}

void ud__mpk_pack_f32_bin(msgpack_packer *pk, const float *v, size_t n)
{
    mpk_pack_le32_bin(pk, v, n, true);
}

void ud__mpk_pack_u32_bin(msgpack_packer *pk, const uint32_t *v, size_t n)
{
    mpk_pack_le32_bin(pk, v, n, false);
}

void ud__mpk_pack_key_str(msgpack_packer *pk, const char *key, const char *s)
{
    ud__mpk_pack_str(pk, key);
    ud__mpk_pack_str(pk, s);
}

void ud__mpk_pack_key_int(msgpack_packer *pk, const char *key, int64_t v)
{
    ud__mpk_pack_str(pk, key);
    msgpack_pack_int64(pk, v);
}

void ud__mpk_pack_key_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    ud__mpk_pack_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

void ud__mpk_pack_key_double(msgpack_packer *pk, const char *key, double v)
{
    ud__mpk_pack_str(pk, key);
    msgpack_pack_double(pk, v);
}

void ud__mpk_pack_key_float(msgpack_packer *pk, const char *key, float v)
{
    ud__mpk_pack_str(pk, key);
    msgpack_pack_float(pk, v);
}

void ud__mpk_pack_key_bool(msgpack_packer *pk, const char *key, int v)
{
    ud__mpk_pack_str(pk, key);
    ud__mpk_pack_bool(pk, v);
}

void ud__mpk_pack_key_f32_bin(msgpack_packer *pk, const char *key, const float *v, size_t n)
{
    ud__mpk_pack_str(pk, key);
    ud__mpk_pack_f32_bin(pk, v, n);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                    */
/* ------------------------------------------------------------------------------------------ */

const char *ud__mpk_type_name(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "a float";
    case MSGPACK_OBJECT_STR:
        return "a string";
    case MSGPACK_OBJECT_ARRAY:
        return "an array";
    case MSGPACK_OBJECT_MAP:
        return "a map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "an unknown type";
}

int ud__mpk_type_err(const msgpack_object *o, const char *field, const char *want, struct ud_err *e)
{
    return ud_err_set(e, UD_EFORMAT, "%s: expected %s, found %s", field, want,
                      ud__mpk_type_name(o));
}

bool ud__mpk_key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

/* o must be one of the n strings names[]: *idx gets its index. Anything else is UD_EFORMAT
 * naming the field, what was found and what is allowed. */
int ud__mpk_get_choice(const msgpack_object *o, const char *field, const char *const *names, int n,
                       int *idx, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return ud__mpk_type_err(o, field, "a string", e);
    for (int i = 0; i < n; i++)
        if (ud__mpk_key_is(o, names[i])) {
            *idx = i;
            return 0;
        }
    char allowed[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s", i ? ", " : "",
                 names[i]);
    return ud_err_set(e, UD_EFORMAT, "%s: unknown value \"%.*s\" (allowed: %s)", field,
                      o->via.str.size > 32 ? 32 : (int)o->via.str.size, o->via.str.ptr, allowed);
}

/* Matches a map against a fixed key set: every key a string from keys[], none repeated, all
 * present. vals[i] receives the value of keys[i]. */
int ud__mpk_fields(const msgpack_object *map, const char *field, const char *const *keys,
                   size_t nkeys, const msgpack_object **vals, struct ud_err *e)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return ud__mpk_type_err(map, field, "a map", e);
    for (size_t i = 0; i < nkeys; i++)
        vals[i] = NULL;
    for (uint32_t j = 0; j < map->via.map.size; j++) {
        const msgpack_object *k = &map->via.map.ptr[j].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return ud_err_set(e, UD_EFORMAT, "%s: a key is %s, keys are strings", field,
                              ud__mpk_type_name(k));
        size_t i = 0;
        while (i < nkeys && !ud__mpk_key_is(k, keys[i]))
            i++;
        int shown = k->via.str.size > 64 ? 64 : (int)k->via.str.size;
        if (i == nkeys)
            return ud_err_set(e, UD_EFORMAT, "%s: unknown key \"%.*s\"", field, shown,
                              k->via.str.ptr);
        if (vals[i])
            return ud_err_set(e, UD_EFORMAT, "%s: key \"%s\" appears twice", field, keys[i]);
        vals[i] = &map->via.map.ptr[j].val;
    }
    for (size_t i = 0; i < nkeys; i++)
        if (!vals[i])
            return ud_err_set(e, UD_EFORMAT, "%s: missing key \"%s\"", field, keys[i]);
    return 0;
}

int ud__mpk_lookup(const msgpack_object *map, const char *field, const char *key,
                   const msgpack_object **val, struct ud_err *e)
{
    *val = NULL;
    for (uint32_t j = 0; j < map->via.map.size; j++)
        if (ud__mpk_key_is(&map->via.map.ptr[j].key, key)) {
            if (*val)
                return ud_err_set(e, UD_EFORMAT, "%s: key \"%s\" appears twice", field, key);
            *val = &map->via.map.ptr[j].val;
        }
    return 0;
}

int ud__mpk_require(const msgpack_object *map, const char *field, const char *key,
                    const msgpack_object **val, struct ud_err *e)
{
    int rc = ud__mpk_lookup(map, field, key, val, e);
    if (rc == 0 && !*val)
        rc = ud_err_set(e, UD_EFORMAT, "%s: missing key \"%s\"", field, key);
    return rc;
}

/* The first key of a free-form map that repeats an earlier one, or -1. */
long ud__mpk_dup_key(const msgpack_object *map)
{
    const msgpack_object_kv *kv = map->via.map.ptr;
    for (uint32_t j = 1; j < map->via.map.size; j++)
        for (uint32_t i = 0; i < j; i++)
            if (kv[i].key.via.str.size == kv[j].key.via.str.size &&
                memcmp(kv[i].key.via.str.ptr, kv[j].key.via.str.ptr, kv[j].key.via.str.size) == 0)
                return (long)j;
    return -1;
}

int ud__mpk_get_int(const msgpack_object *o, const char *field, int64_t lo, int64_t hi,
                    int64_t *out, struct ud_err *e)
{
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return ud_err_set(e, UD_EFORMAT, "%s: %llu is out of range [%lld, %lld]", field,
                              (unsigned long long)o->via.u64, (long long)lo, (long long)hi);
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = o->via.i64;
    } else {
        return ud__mpk_type_err(o, field, "an integer", e);
    }
    if (v < lo || v > hi)
        return ud_err_set(e, UD_EFORMAT, "%s: %lld is out of range [%lld, %lld]", field,
                          (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

/* Any msgpack number as a double (hand-made files may write 1 for 1.0). */
int ud__mpk_get_double(const msgpack_object *o, const char *field, double *out, struct ud_err *e)
{
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = o->via.f64;
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)o->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)o->via.i64;
        return 0;
    default:
        return ud__mpk_type_err(o, field, "a number", e);
    }
}

int ud__mpk_get_float(const msgpack_object *o, const char *field, float *out, struct ud_err *e)
{
    double d = 0;
    int rc = ud__mpk_get_double(o, field, &d, e);
    if (rc < 0)
        return rc;
    if (!isfinite(d) || fabs(d) > FLT_MAX)
        return ud_err_set(e, UD_EFORMAT, "%s: %g is not a finite float32", field, d);
    *out = (float)d;
    return 0;
}

int ud__mpk_get_bool(const msgpack_object *o, const char *field, int *out, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return ud__mpk_type_err(o, field, "a boolean", e);
    *out = o->via.boolean ? 1 : 0;
    return 0;
}

/* A string as a fresh C string (caller frees). nil gives NULL when nullable. The length is
 * checked before allocating; invalid UTF-8 and NUL bytes are refused. */
int ud__mpk_get_str(const msgpack_object *o, const char *field, size_t max, bool nullable,
                    char **out, struct ud_err *e)
{
    *out = NULL;
    if (nullable && o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return ud__mpk_type_err(o, field, nullable ? "a string or nil" : "a string", e);
    size_t n = o->via.str.size;
    if (n > max)
        return ud_err_set(e, UD_EFORMAT, "%s: %zu bytes, the limit is %zu", field, n, max);
    if (!ud__mpk_utf8_ok((const unsigned char *)o->via.str.ptr, n))
        return ud_err_set(e, UD_EFORMAT, "%s: not valid UTF-8 (or contains a NUL byte)", field);
    char *s = malloc(n + 1);
    if (!s)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", field);
    memcpy(s, o->via.str.ptr, n);
    s[n] = '\0';
    *out = s;
    return 0;
}
int ud__mpk_get_strbuf(const msgpack_object *o, const char *field, char *buf, size_t cap,
                       struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return ud__mpk_type_err(o, field, "a string", e);
    size_t n = o->via.str.size;
    if (n >= cap)
        return ud_err_set(e, UD_EFORMAT, "%s: %zu bytes, the limit is %zu", field, n, cap - 1);
    if (!ud__mpk_utf8_ok((const unsigned char *)o->via.str.ptr, n))
        return ud_err_set(e, UD_EFORMAT, "%s: not valid UTF-8 (or contains a NUL byte)", field);
    memcpy(buf, o->via.str.ptr, n);
    buf[n] = '\0';
    return 0;
}

int ud__mpk_get_u64(const msgpack_object *o, const char *field, uint64_t *out, struct ud_err *e)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return ud_err_set(e, UD_EFORMAT, "%s: %lld is negative, expected an unsigned integer",
                          field, (long long)o->via.i64);
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return ud__mpk_type_err(o, field, "an unsigned integer", e);
    *out = o->via.u64;
    return 0;
}

/* One value as f says. */
static int mpk_read_value(const msgpack_object *o, const char *name, const struct ud__mpk_field *f,
                          struct ud_err *e)
{
    switch (f->as) {
    case UD__MPK_AS_I64:
        return ud__mpk_get_int(o, name, f->lo, f->hi, f->out, e);
    case UD__MPK_AS_U64:
        return ud__mpk_get_u64(o, name, f->out, e);
    case UD__MPK_AS_DOUBLE:
        return ud__mpk_get_double(o, name, f->out, e);
    case UD__MPK_AS_BOOL:
        return ud__mpk_get_bool(o, name, f->out, e);
    case UD__MPK_AS_STRBUF:
        return ud__mpk_get_strbuf(o, name, f->out, f->cap, e);
    case UD__MPK_AS_OBJ:
        *(const msgpack_object **)f->out = o;
        return 0;
    }
    return ud_err_set(e, UD_EINTERNAL, "%s: unknown field kind", name);
}

int ud__mpk_read_map(const msgpack_object *map, const char *field, const char *prefix,
                     const struct ud__mpk_field *f, size_t n, struct ud_err *e)
{
    enum { MAX_KEYS = 32 };
    const char *keys[MAX_KEYS] = {0};
    const msgpack_object *vals[MAX_KEYS];
    if (n > MAX_KEYS)
        return ud_err_set(e, UD_EINTERNAL, "%s: %zu keys, the reader takes %d", field, n, MAX_KEYS);
    for (size_t i = 0; i < n; i++)
        keys[i] = f[i].key;
    int rc = ud__mpk_fields(map, field, keys, n, vals, e);
    char name[128];
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (prefix)
            snprintf(name, sizeof name, "%s.%s", prefix, f[i].key);
        else
            snprintf(name, sizeof name, "%s", f[i].key);
        rc = mpk_read_value(vals[i], name, &f[i], e);
    }
    return rc;
}

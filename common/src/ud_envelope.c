/*  ud_envelope.c — the versioned msgpack envelope and strict field readers shared by updraft's
 *  binary files: the .udm model (ud_udm.c) and the checkpoint files (ud_ckpt.c). Contracts in
 *  ud_envelope_impl.h; the envelope is specified in docs/model-format.md, section 2.
 */
#include "ud_envelope_impl.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* The envelope every version starts with: a fixarray header, then the magic as a fixstr. */
#define ENV_PREFIX_LEN   (1 + 1 + UD__ENV_MAGIC_LEN)
#define ENV_V1_ARRAY     0x94 /* fixarray of 4 */
#define ENV_SUM_HEAD_LEN 2    /* bin8 header of the checksum: c4 20 */
#define ENV_F32_CHUNK    4096 /* floats converted per bin_body call */

int ud__env_sodium(struct ud_err *e)
{
    if (sodium_init() < 0)
        return ud_err_set(e, UD_EINTERNAL, "libsodium failed to initialise");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                              */
/* ------------------------------------------------------------------------------------------ */

static uint32_t env_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float env_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF) and no NUL byte, since
 * the strings become C strings. */
bool ud__env_utf8_ok(const unsigned char *s, size_t n)
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

void ud__env_pack_f32_bin(msgpack_packer *pk, const float *v, size_t n)
{
    msgpack_pack_bin(pk, n * 4);
    unsigned char chunk[ENV_F32_CHUNK * 4];
    for (size_t i = 0; i < n; i += ENV_F32_CHUNK) {
        size_t c = n - i < ENV_F32_CHUNK ? n - i : ENV_F32_CHUNK;
        for (size_t j = 0; j < c; j++) {
            uint32_t u = env_f32_bits(v[i + j]);
            chunk[4 * j + 0] = (unsigned char)(u);
            chunk[4 * j + 1] = (unsigned char)(u >> 8);
            chunk[4 * j + 2] = (unsigned char)(u >> 16);
            chunk[4 * j + 3] = (unsigned char)(u >> 24);
        }
        msgpack_pack_bin_body(pk, chunk, c * 4);
    }
}

void ud__env_f32_from_le(float *dst, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++, b += 4)
        dst[i] = env_f32_from_bits((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                                   (uint32_t)b[3] << 24);
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                   */
/* ------------------------------------------------------------------------------------------ */

int ud__env_out_write(void *user, const char *buf, size_t n)
{
    struct ud__env_out *o = user;
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

static void env_pack_head(msgpack_packer *pk, const struct ud__env_format *f, uint64_t version,
                          size_t body_len)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_str_with_body(pk, f->magic, UD__ENV_MAGIC_LEN);
    msgpack_pack_uint64(pk, version);
    msgpack_pack_bin(pk, body_len);
}

int ud__env_seal(const struct ud__env_format *f, uint64_t version, ud__env_pack_fn pack,
                 const void *ctx, const void *raw, size_t raw_len, char **buf, size_t *len,
                 struct ud_err *e)
{
    *buf = NULL;
    *len = 0;
    int rc = ud__env_sodium(e);
    if (rc < 0)
        return rc;
    struct ud__env_out out = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, ud__env_out_write);

    /* Counting pass: the body's exact size, so the file is allocated once. */
    size_t body_len = raw_len;
    if (pack) {
        pack(&pk, ctx);
        body_len = out.len;
        out.len = 0;
    }
    env_pack_head(&pk, f, version, body_len);
    size_t head = out.len;
    if (body_len > f->max_bytes - head - ENV_SUM_HEAD_LEN - UD__ENV_SUM_LEN)
        return ud_err_set(e, UD_ELIMIT, "the encoded %s would be %zu bytes, the limit is %zu",
                          f->noun, body_len + head + ENV_SUM_HEAD_LEN + UD__ENV_SUM_LEN,
                          f->max_bytes);
    size_t total = head + body_len + ENV_SUM_HEAD_LEN + UD__ENV_SUM_LEN;

    out = (struct ud__env_out){.data = malloc(total), .cap = total};
    if (!out.data)
        return ud_err_set(e, UD_ENOMEM, "cannot allocate %zu bytes for the encoded %s", total,
                          f->noun);
    env_pack_head(&pk, f, version, body_len);
    if (pack)
        pack(&pk, ctx);
    else
        msgpack_pack_bin_body(&pk, raw ? raw : "", body_len);
    if (out.overflow || out.len != head + body_len) {
        free(out.data);
        return ud_err_set(e, UD_EINTERNAL, "encoder size mismatch (%zu bytes, expected %zu)",
                          out.len, head + body_len);
    }
    unsigned char *sum = (unsigned char *)out.data + out.len;
    sum[0] = 0xc4;
    sum[1] = UD__ENV_SUM_LEN;
    crypto_hash_sha256(sum + ENV_SUM_HEAD_LEN, (const unsigned char *)out.data, out.len);
    *buf = out.data;
    *len = total;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding: the envelope                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Reads a big-endian unsigned of k bytes at p[*off]; false when the data ends first. */
static bool env_be(const unsigned char *p, size_t len, size_t *off, size_t k, uint64_t *v)
{
    if (k > len - *off)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < k; i++)
        x = (x << 8) | p[*off + i];
    *off += k;
    *v = x;
    return true;
}

/* Finds the body and verifies the checksum. */
int ud__env_open(const struct ud__env_format *f, const unsigned char *p, size_t len,
                 const unsigned char **body, size_t *body_len, struct ud_err *e)
{
    unsigned char magic[1 + UD__ENV_MAGIC_LEN]; /* fixstr of 4, then the magic */
    magic[0] = 0xa4;
    memcpy(magic + 1, f->magic, UD__ENV_MAGIC_LEN);
    if (len == 0)
        return ud_err_set(e, UD_EFOREIGN, "empty file (0 bytes): not an %s", f->what);
    /* Any fixarray of 2+ elements, then the magic: the one thing every version keeps. */
    size_t have = len < ENV_PREFIX_LEN ? len : ENV_PREFIX_LEN;
    if (p[0] < 0x92 || p[0] > 0x9f || memcmp(p + 1, magic, have - 1) != 0)
        return ud_err_set(e, UD_EFOREIGN,
                          "not an %s (no \"%.4s\" magic; the file "
                          "starts with bytes %02x %02x %02x %02x)",
                          f->what, f->magic, p[0], len > 1 ? p[1] : 0, len > 2 ? p[2] : 0,
                          len > 3 ? p[3] : 0);
    if (len < ENV_PREFIX_LEN)
        return ud_err_set(e, UD_ETRUNCATED,
                          "truncated: the file ends after %zu bytes, inside "
                          "the header",
                          len);

    /* The format version: a msgpack unsigned integer. */
    size_t off = ENV_PREFIX_LEN;
    uint64_t version = 0;
    if (off >= len)
        return ud_err_set(e, UD_ETRUNCATED, "truncated: the file ends before the format version");
    unsigned char t = p[off++];
    size_t k = t <= 0x7f ? 0 : t == 0xcc ? 1 : t == 0xcd ? 2 : t == 0xce ? 4 : t == 0xcf ? 8 : 9;
    if (k == 9)
        return ud_err_set(e, UD_EFORMAT,
                          "format version: expected an unsigned integer, found "
                          "msgpack type byte 0x%02x",
                          t);
    if (k == 0)
        version = t;
    else if (!env_be(p, len, &off, k, &version))
        return ud_err_set(e, UD_ETRUNCATED, "truncated: the file ends inside the format version");
    if (version > f->version)
        return ud_err_set(e, UD_EVERSION,
                          "written by a newer updraft (format version %llu, this build reads "
                          "%llu): upgrade updraft",
                          (unsigned long long)version, (unsigned long long)f->version);
    if (version < 1)
        return ud_err_set(e, UD_EVERSION,
                          "format version 0 is not a valid version (this build "
                          "reads %llu)",
                          (unsigned long long)f->version);

    /* Every version so far: [magic, version, body, checksum]. */
    if (p[0] != ENV_V1_ARRAY)
        return ud_err_set(e, UD_EFORMAT,
                          "format version %llu has 4 top-level elements, this file "
                          "has %d",
                          (unsigned long long)version, p[0] & 0x0f);
    if (off >= len)
        return ud_err_set(e, UD_ETRUNCATED, "truncated: the file ends before the body");
    t = p[off++];
    k = t == 0xc4 ? 1 : t == 0xc5 ? 2 : t == 0xc6 ? 4 : 0;
    if (k == 0)
        return ud_err_set(e, UD_EFORMAT, "body: expected msgpack bin, found type byte 0x%02x", t);
    uint64_t blen;
    if (!env_be(p, len, &off, k, &blen))
        return ud_err_set(e, UD_ETRUNCATED, "truncated: the file ends inside the body header");
    /* off <= len and blen < 2^32, so this cannot overflow a 64-bit size_t. */
    uint64_t need = (uint64_t)off + blen + ENV_SUM_HEAD_LEN + UD__ENV_SUM_LEN;
    if (len < need)
        return ud_err_set(e, UD_ETRUNCATED,
                          "truncated: the file is %zu bytes, its header "
                          "says %llu (interrupted copy or download?)",
                          len, (unsigned long long)need);
    if (len > need)
        return ud_err_set(e, UD_EFORMAT, "%llu bytes of trailing data after the checksum",
                          (unsigned long long)(len - need));
    size_t sum_at = off + (size_t)blen;
    if (p[sum_at] != 0xc4 || p[sum_at + 1] != UD__ENV_SUM_LEN)
        return ud_err_set(e, UD_EFORMAT,
                          "checksum: expected a 32-byte msgpack bin, found "
                          "bytes %02x %02x",
                          p[sum_at], p[sum_at + 1]);

    unsigned char sum[UD__ENV_SUM_LEN];
    crypto_hash_sha256(sum, p, sum_at);
    if (sodium_memcmp(sum, p + sum_at + ENV_SUM_HEAD_LEN, UD__ENV_SUM_LEN) != 0) {
        char want[2 * 8 + 1], got[2 * 8 + 1];
        sodium_bin2hex(want, sizeof want, p + sum_at + ENV_SUM_HEAD_LEN, 8);
        sodium_bin2hex(got, sizeof got, sum, 8);
        return ud_err_set(e, UD_ECHECKSUM,
                          "checksum mismatch: the file is corrupt (stored "
                          "sha256 %s..., contents hash to %s...)",
                          want, got);
    }
    *body = p + off;
    *body_len = (size_t)blen;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding: the structural scan                                                              */
/* ------------------------------------------------------------------------------------------ */

struct env_scan {
    const unsigned char *p;
    size_t len, off, objects;
    const char *what; /* names the data in messages: "body", "message" */
};

/* Walks one msgpack object. Every declared length is checked against the bytes left (each
 * element of a container takes at least one byte), nesting is bounded by UD__ENV_MAX_DEPTH and the
 * number of objects by UD__ENV_MAX_OBJECTS, so what msgpack later allocates is bounded by the
 * body's size. Returns 0 or UD_EFORMAT. */
static int env_scan_obj(struct env_scan *s, int depth, struct ud_err *e)
{
    if (s->off >= s->len)
        return ud_err_set(e, UD_EFORMAT, "%s: msgpack data ends early at byte %zu", s->what,
                          s->off);
    if (++s->objects > UD__ENV_MAX_OBJECTS)
        return ud_err_set(e, UD_EFORMAT, "%s: more than %d msgpack objects", s->what,
                          UD__ENV_MAX_OBJECTS);
    size_t at = s->off;
    unsigned char b = s->p[s->off++];
    uint64_t n = 0, items = 0;
    int container = 0; /* 1 array, 2 map */
    bool ok = true;

    if (b <= 0x7f || b >= 0xe0)
        return 0;
    if (b <= 0x8f) {
        container = 2, items = b & 0x0f;
    } else if (b <= 0x9f) {
        container = 1, items = b & 0x0f;
    } else if (b <= 0xbf) {
        n = b & 0x1f;
    } else {
        switch (b) {
        case 0xc0: /* nil, false, true */
        case 0xc2:
        case 0xc3:
            return 0;
        case 0xc4: /* bin 8/16/32 */
        case 0xd9: /* str 8/16/32 */
            ok = env_be(s->p, s->len, &s->off, 1, &n);
            break;
        case 0xc5:
        case 0xda:
            ok = env_be(s->p, s->len, &s->off, 2, &n);
            break;
        case 0xc6:
        case 0xdb:
            ok = env_be(s->p, s->len, &s->off, 4, &n);
            break;
        case 0xc7: /* ext 8/16/32: length, then a type byte */
            ok = env_be(s->p, s->len, &s->off, 1, &n), n += 1;
            break;
        case 0xc8:
            ok = env_be(s->p, s->len, &s->off, 2, &n), n += 1;
            break;
        case 0xc9:
            ok = env_be(s->p, s->len, &s->off, 4, &n), n += 1;
            break;
        case 0xcc: /* uint, int, float: fixed sizes */
        case 0xd0:
            n = 1;
            break;
        case 0xcd:
        case 0xd1:
            n = 2;
            break;
        case 0xca:
        case 0xce:
        case 0xd2:
            n = 4;
            break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            n = 8;
            break;
        case 0xd4: /* fixext 1/2/4/8/16 with their type byte */
            n = 2;
            break;
        case 0xd5:
            n = 3;
            break;
        case 0xd6:
            n = 5;
            break;
        case 0xd7:
            n = 9;
            break;
        case 0xd8:
            n = 17;
            break;
        case 0xdc:
            container = 1, ok = env_be(s->p, s->len, &s->off, 2, &items);
            break;
        case 0xdd:
            container = 1, ok = env_be(s->p, s->len, &s->off, 4, &items);
            break;
        case 0xde:
            container = 2, ok = env_be(s->p, s->len, &s->off, 2, &items);
            break;
        case 0xdf:
            container = 2, ok = env_be(s->p, s->len, &s->off, 4, &items);
            break;
        default: /* 0xc1: never used */
            return ud_err_set(e, UD_EFORMAT, "%s: invalid msgpack type byte 0x%02x at byte %zu",
                              s->what, b, at);
        }
    }
    if (!ok)
        return ud_err_set(e, UD_EFORMAT, "%s: msgpack header at byte %zu ends early", s->what, at);
    if (container) {
        if (container == 2)
            items *= 2;
        if (items > s->len - s->off)
            return ud_err_set(e, UD_EFORMAT,
                              "%s: container at byte %zu declares %llu "
                              "elements, more than the %zu bytes left",
                              s->what, at, (unsigned long long)items, s->len - s->off);
        if (depth >= UD__ENV_MAX_DEPTH)
            return ud_err_set(e, UD_EFORMAT, "%s: nested deeper than %d at byte %zu", s->what,
                              UD__ENV_MAX_DEPTH, at);
        for (uint64_t i = 0; i < items; i++) {
            int rc = env_scan_obj(s, depth + 1, e);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (n > s->len - s->off)
        return ud_err_set(e, UD_EFORMAT,
                          "%s: msgpack value at byte %zu declares %llu bytes, "
                          "only %zu are left",
                          s->what, at, (unsigned long long)n, s->len - s->off);
    s->off += (size_t)n;
    return 0;
}

int ud__env_unpack_as(const unsigned char *body, size_t body_len, const char *what,
                      msgpack_unpacked *up, struct ud_err *e)
{
    struct env_scan s = {.p = body, .len = body_len, .what = what};
    int rc = env_scan_obj(&s, 0, e);
    if (rc < 0)
        return rc;
    if (s.off != body_len)
        return ud_err_set(e, UD_EFORMAT, "%s: %zu bytes after the %s's msgpack value", what,
                          body_len - s.off, what);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(up, (const char *)body, body_len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory unpacking %zu bytes", what, body_len);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != body_len)
        return ud_err_set(e, UD_EFORMAT, "%s: not valid msgpack (msgpack-c says %d)", what,
                          (int)ur);
    return 0;
}

int ud__env_unpack(const unsigned char *body, size_t body_len, msgpack_unpacked *up,
                   struct ud_err *e)
{
    return ud__env_unpack_as(body, body_len, "body", up, e);
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding: fields                                                                           */
/* ------------------------------------------------------------------------------------------ */

const char *ud__env_type_name(const msgpack_object *o)
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

int ud__env_type_err(const msgpack_object *o, const char *field, const char *want, struct ud_err *e)
{
    return ud_err_set(e, UD_EFORMAT, "%s: expected %s, found %s", field, want,
                      ud__env_type_name(o));
}

bool ud__env_key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

/* o must be one of the n strings names[]: *idx gets its index. Anything else is UD_EFORMAT
 * naming the field, what was found and what is allowed. */
int ud__env_get_choice(const msgpack_object *o, const char *field, const char *const *names, int n,
                       int *idx, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return ud__env_type_err(o, field, "a string", e);
    for (int i = 0; i < n; i++)
        if (ud__env_key_is(o, names[i])) {
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
int ud__env_fields(const msgpack_object *map, const char *field, const char *const *keys,
                   size_t nkeys, const msgpack_object **vals, struct ud_err *e)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return ud__env_type_err(map, field, "a map", e);
    for (size_t i = 0; i < nkeys; i++)
        vals[i] = NULL;
    for (uint32_t j = 0; j < map->via.map.size; j++) {
        const msgpack_object *k = &map->via.map.ptr[j].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return ud_err_set(e, UD_EFORMAT, "%s: a key is %s, keys are strings", field,
                              ud__env_type_name(k));
        size_t i = 0;
        while (i < nkeys && !ud__env_key_is(k, keys[i]))
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

/* The first key of a free-form map that repeats an earlier one, or -1. */
long ud__env_dup_key(const msgpack_object *map)
{
    const msgpack_object_kv *kv = map->via.map.ptr;
    for (uint32_t j = 1; j < map->via.map.size; j++)
        for (uint32_t i = 0; i < j; i++)
            if (kv[i].key.via.str.size == kv[j].key.via.str.size &&
                memcmp(kv[i].key.via.str.ptr, kv[j].key.via.str.ptr, kv[j].key.via.str.size) == 0)
                return (long)j;
    return -1;
}

int ud__env_get_int(const msgpack_object *o, const char *field, int64_t lo, int64_t hi,
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
        return ud__env_type_err(o, field, "an integer", e);
    }
    if (v < lo || v > hi)
        return ud_err_set(e, UD_EFORMAT, "%s: %lld is out of range [%lld, %lld]", field,
                          (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

/* Any msgpack number as a double (hand-made files may write 1 for 1.0). */
int ud__env_get_double(const msgpack_object *o, const char *field, double *out, struct ud_err *e)
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
        return ud__env_type_err(o, field, "a number", e);
    }
}

int ud__env_get_float(const msgpack_object *o, const char *field, float *out, struct ud_err *e)
{
    double d = 0;
    int rc = ud__env_get_double(o, field, &d, e);
    if (rc < 0)
        return rc;
    if (!isfinite(d) || fabs(d) > FLT_MAX)
        return ud_err_set(e, UD_EFORMAT, "%s: %g is not a finite float32", field, d);
    *out = (float)d;
    return 0;
}

int ud__env_get_bool(const msgpack_object *o, const char *field, int *out, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return ud__env_type_err(o, field, "a boolean", e);
    *out = o->via.boolean ? 1 : 0;
    return 0;
}

/* A string as a fresh C string (caller frees). nil gives NULL when nullable. The length is
 * checked before allocating; invalid UTF-8 and NUL bytes are refused. */
int ud__env_get_str(const msgpack_object *o, const char *field, size_t max, bool nullable,
                    char **out, struct ud_err *e)
{
    *out = NULL;
    if (nullable && o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return ud__env_type_err(o, field, nullable ? "a string or nil" : "a string", e);
    size_t n = o->via.str.size;
    if (n > max)
        return ud_err_set(e, UD_EFORMAT, "%s: %zu bytes, the limit is %zu", field, n, max);
    if (!ud__env_utf8_ok((const unsigned char *)o->via.str.ptr, n))
        return ud_err_set(e, UD_EFORMAT, "%s: not valid UTF-8 (or contains a NUL byte)", field);
    char *s = malloc(n + 1);
    if (!s)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", field);
    memcpy(s, o->via.str.ptr, n);
    s[n] = '\0';
    *out = s;
    return 0;
}
int ud__env_get_strbuf(const msgpack_object *o, const char *field, char *buf, size_t cap,
                       struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return ud__env_type_err(o, field, "a string", e);
    size_t n = o->via.str.size;
    if (n >= cap)
        return ud_err_set(e, UD_EFORMAT, "%s: %zu bytes, the limit is %zu", field, n, cap - 1);
    if (!ud__env_utf8_ok((const unsigned char *)o->via.str.ptr, n))
        return ud_err_set(e, UD_EFORMAT, "%s: not valid UTF-8 (or contains a NUL byte)", field);
    memcpy(buf, o->via.str.ptr, n);
    buf[n] = '\0';
    return 0;
}

int ud__env_get_u64(const msgpack_object *o, const char *field, uint64_t *out, struct ud_err *e)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return ud_err_set(e, UD_EFORMAT, "%s: %lld is negative, expected an unsigned integer",
                          field, (long long)o->via.i64);
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return ud__env_type_err(o, field, "an unsigned integer", e);
    *out = o->via.u64;
    return 0;
}

/*  ud_envelope.c — the versioned msgpack envelope and the structural scan shared by updraft's
 *  binary files: the .udm model (ud_udm.c) and the checkpoint files (ud_ckpt.c); the scan also
 *  bounds the protocol messages. Contracts in ud_envelope_impl.h; the envelope is specified in
 *  docs/model-format.md, section 2. The field readers it used to hold are in ud_mpk.c.
 */
#include "ud_envelope_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* The envelope every version starts with: a fixarray header, then the magic as a fixstr. */
#define ENV_PREFIX_LEN   (1 + 1 + UD__ENV_MAGIC_LEN)
#define ENV_V1_ARRAY     0x94 /* fixarray of 4 */
#define ENV_SUM_HEAD_LEN 2    /* bin8 header of the checksum: c4 20 */

int ud__env_sodium(struct ud_err *e)
{
    if (sodium_init() < 0)
        return ud_err_set(e, UD_EINTERNAL, "libsodium failed to initialise");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void env_pack_head(msgpack_packer *pk, const struct ud__env_format *f, uint64_t version,
                          size_t body_len)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_str_with_body(pk, f->magic, UD__ENV_MAGIC_LEN);
    msgpack_pack_uint64(pk, version);
    msgpack_pack_bin(pk, body_len);
}

int ud__env_seal(const struct ud__env_format *f, uint64_t version, ud__mpk_pack_fn pack,
                 const void *ctx, const void *raw, size_t raw_len, char **buf, size_t *len,
                 struct ud_err *e)
{
    *buf = NULL;
    *len = 0;
    int rc = ud__env_sodium(e);
    if (rc < 0)
        return rc;
    struct ud__mpk_out out = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, ud__mpk_out_write);

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

    out = (struct ud__mpk_out){.data = malloc(total), .cap = total};
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

/* What a type byte from 0xc0 to 0xdf says follows it: a big-endian length of len_bytes bytes,
 * or a fixed payload; ext types add their type byte (extra). container: 1 array, 2 map (the
 * length counts elements). valid is false for 0xc1, which msgpack never uses. */
struct env_head {
    unsigned char valid, len_bytes, fixed, extra, container;
};

static const struct env_head ENV_HEADS[32] = {
    [0x00] = {1, 0, 0, 0, 0},  /* c0 nil */
    [0x02] = {1, 0, 0, 0, 0},  /* c2 false */
    [0x03] = {1, 0, 0, 0, 0},  /* c3 true */
    [0x04] = {1, 1, 0, 0, 0},  /* c4 bin 8 */
    [0x05] = {1, 2, 0, 0, 0},  /* c5 bin 16 */
    [0x06] = {1, 4, 0, 0, 0},  /* c6 bin 32 */
    [0x07] = {1, 1, 0, 1, 0},  /* c7 ext 8 */
    [0x08] = {1, 2, 0, 1, 0},  /* c8 ext 16 */
    [0x09] = {1, 4, 0, 1, 0},  /* c9 ext 32 */
    [0x0a] = {1, 0, 4, 0, 0},  /* ca float 32 */
    [0x0b] = {1, 0, 8, 0, 0},  /* cb float 64 */
    [0x0c] = {1, 0, 1, 0, 0},  /* cc uint 8 */
    [0x0d] = {1, 0, 2, 0, 0},  /* cd uint 16 */
    [0x0e] = {1, 0, 4, 0, 0},  /* ce uint 32 */
    [0x0f] = {1, 0, 8, 0, 0},  /* cf uint 64 */
    [0x10] = {1, 0, 1, 0, 0},  /* d0 int 8 */
    [0x11] = {1, 0, 2, 0, 0},  /* d1 int 16 */
    [0x12] = {1, 0, 4, 0, 0},  /* d2 int 32 */
    [0x13] = {1, 0, 8, 0, 0},  /* d3 int 64 */
    [0x14] = {1, 0, 2, 0, 0},  /* d4 fixext 1, with its type byte */
    [0x15] = {1, 0, 3, 0, 0},  /* d5 fixext 2 */
    [0x16] = {1, 0, 5, 0, 0},  /* d6 fixext 4 */
    [0x17] = {1, 0, 9, 0, 0},  /* d7 fixext 8 */
    [0x18] = {1, 0, 17, 0, 0}, /* d8 fixext 16 */
    [0x19] = {1, 1, 0, 0, 0},  /* d9 str 8 */
    [0x1a] = {1, 2, 0, 0, 0},  /* da str 16 */
    [0x1b] = {1, 4, 0, 0, 0},  /* db str 32 */
    [0x1c] = {1, 2, 0, 0, 1},  /* dc array 16 */
    [0x1d] = {1, 4, 0, 0, 1},  /* dd array 32 */
    [0x1e] = {1, 2, 0, 0, 2},  /* de map 16 */
    [0x1f] = {1, 4, 0, 0, 2},  /* df map 32 */
};

static int env_scan_obj(struct env_scan *s, int depth, struct ud_err *e);

/* The items of a container whose header started at byte `at` (a map's count doubled). */
static int env_scan_items(struct env_scan *s, int depth, size_t at, uint64_t items,
                          struct ud_err *e)
{
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
    uint64_t n = 0;    /* payload bytes, or elements of a container */
    int container = 0; /* 1 array, 2 map */

    if (b <= 0x7f || b >= 0xe0) /* positive and negative fixint */
        return 0;
    if (b <= 0x8f) {
        container = 2, n = b & 0x0f;
    } else if (b <= 0x9f) {
        container = 1, n = b & 0x0f;
    } else if (b <= 0xbf) {
        n = b & 0x1f; /* fixstr */
    } else {
        const struct env_head *h = &ENV_HEADS[b - 0xc0];
        if (!h->valid)
            return ud_err_set(e, UD_EFORMAT, "%s: invalid msgpack type byte 0x%02x at byte %zu",
                              s->what, b, at);
        n = h->fixed;
        if (h->len_bytes && !env_be(s->p, s->len, &s->off, h->len_bytes, &n))
            return ud_err_set(e, UD_EFORMAT, "%s: msgpack header at byte %zu ends early", s->what,
                              at);
        n += h->extra;
        container = h->container;
    }
    if (container)
        return env_scan_items(s, depth, at, container == 2 ? n * 2 : n, e);
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

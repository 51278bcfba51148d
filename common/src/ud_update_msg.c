/*  ud_update_msg.c — the update message codec: one device's delta and its round, as one
 *  msgpack map (contract: ud_update_msg.h; for people: docs/agent.md, "The update message").
 *
 *  The message is decoded in an order that lets each refusal be named: the envelope module's
 *  structural scan (ud__env_unpack_as) first bounds every declared length and count by the
 *  bytes present, so msgpack-c never allocates from a forged size; then "v"; then each key's
 *  type and range; the delta's length against max_floats before its copy is allocated.
 */
#include "updraft/ud_update_msg.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "ud_envelope_impl.h"
#include "ud_mpk_impl.h"

int ud_update_key_valid(const char *key, size_t len)
{
    if (len < 1 || len > UD_UPDATE_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return 0;
    return 1;
}

static void pack_msg(msgpack_packer *pk, const void *ctx)
{
    const struct ud_update_msg *m = ctx;
    msgpack_pack_map(pk, 8);
    ud__mpk_pack_key_int(pk, "v", UD_UPDATE_MSG_VERSION);
    ud__mpk_pack_key_int(pk, "round", m->round);
    ud__mpk_pack_key_int(pk, "base_version", m->base_version);
    ud__mpk_pack_key_str(pk, "key", m->key);
    ud__mpk_pack_key_int(pk, "samples", m->samples);
    ud__mpk_pack_key_double(pk, "loss", m->loss);
    ud__mpk_pack_key_double(pk, "accuracy", m->accuracy);
    ud__mpk_pack_key_f32_bin(pk, "delta", m->delta, m->n);
}

int ud_update_msg_encode(const struct ud_update_msg *msg, char **buf, size_t *len, struct ud_err *e)
{
    *buf = NULL;
    *len = 0;
    size_t klen = strnlen(msg->key, sizeof msg->key);
    if (!ud_update_key_valid(msg->key, klen))
        return ud_err_set(e, UD_EINVAL,
                          "update message: key must be 1 to %d printable ASCII characters",
                          UD_UPDATE_KEY_MAX);
    if (msg->round < 0 || msg->base_version < 0)
        return ud_err_set(e, UD_EINVAL, "update message: %s %lld is negative",
                          msg->round < 0 ? "round" : "base_version",
                          (long long)(msg->round < 0 ? msg->round : msg->base_version));
    if (msg->samples <= 0)
        return ud_err_set(e, UD_EINVAL, "update message: samples %lld must be positive",
                          (long long)msg->samples);
    if (!isfinite(msg->loss) || !isfinite(msg->accuracy))
        return ud_err_set(e, UD_EINVAL, "update message: %s is not finite",
                          isfinite(msg->loss) ? "accuracy" : "loss");
    if (msg->n > (size_t)UINT32_MAX / 4 || (msg->n && !msg->delta))
        return ud_err_set(e, UD_EINVAL, "update message: delta of %zu floats cannot be sent",
                          msg->n);
    return ud__mpk_pack_alloc(pack_msg, msg, SIZE_MAX, "update message", "message", buf, len, e);
}

static const char *const MSG_KEYS[] = {"v",       "round", "base_version", "key",
                                       "samples", "loss",  "accuracy",     "delta"};
enum { K_V, K_ROUND, K_BASE, K_KEY, K_SAMPLES, K_LOSS, K_ACC, K_DELTA, NKEYS };

/* Finds every known key of the top map (unknown keys ignored); a repeated known key or a
 * non-string key is refused. */
static int find_keys(const msgpack_object *top, const msgpack_object **vals, struct ud_err *e)
{
    if (top->type != MSGPACK_OBJECT_MAP)
        return ud__mpk_type_err(top, "update message", "a map", e);
    /* Linear in the map's size: only known keys are checked for repeats (a forged map of many
     * unknown keys costs one pass). */
    for (uint32_t i = 0; i < top->via.map.size; i++) {
        const msgpack_object_kv *kv = &top->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            return ud__mpk_type_err(&kv->key, "update message: a key", "a string", e);
        for (int k = 0; k < NKEYS; k++)
            if (ud__mpk_key_is(&kv->key, MSG_KEYS[k])) {
                if (vals[k])
                    return ud_err_set(e, UD_EFORMAT, "update message: key \"%s\" appears twice",
                                      MSG_KEYS[k]);
                vals[k] = &kv->val;
            }
    }
    for (int k = 0; k < NKEYS; k++)
        if (!vals[k])
            return ud_err_set(e, UD_EFORMAT, "update message: missing key \"%s\"", MSG_KEYS[k]);
    return 0;
}

static int get_finite(const msgpack_object *o, const char *field, double *out, struct ud_err *e)
{
    int rc = ud__mpk_get_double(o, field, out, e);
    if (rc < 0)
        return rc;
    if (!isfinite(*out))
        return ud_err_set(e, UD_EFORMAT, "%s: %g is not finite", field, *out);
    return 0;
}

static int decode_top(const msgpack_object *top, size_t max_floats, struct ud_update_msg *m,
                      float **delta, struct ud_err *e)
{
    const msgpack_object *v[NKEYS] = {0};
    int rc;
    if ((rc = find_keys(top, v, e)) < 0)
        return rc;
    /* The version first, so that a newer sender hears what to do. */
    if (v[K_V]->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
        v[K_V]->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return ud__mpk_type_err(v[K_V], "update message.v", "an integer", e);
    if (v[K_V]->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || v[K_V]->via.u64 != UD_UPDATE_MSG_VERSION)
        return ud_err_set(e, UD_EVERSION,
                          "update message.v: version %lld, this side reads %d: run the same "
                          "updraft release on the device and the coordinator",
                          (long long)v[K_V]->via.i64, UD_UPDATE_MSG_VERSION);
    if ((rc = ud__mpk_get_int(v[K_ROUND], "update message.round", 0, INT64_MAX, &m->round, e)) <
            0 ||
        (rc = ud__mpk_get_int(v[K_BASE], "update message.base_version", 0, INT64_MAX,
                              &m->base_version, e)) < 0 ||
        (rc = ud__mpk_get_int(v[K_SAMPLES], "update message.samples", 1, INT64_MAX, &m->samples,
                              e)) < 0 ||
        (rc = get_finite(v[K_LOSS], "update message.loss", &m->loss, e)) < 0 ||
        (rc = get_finite(v[K_ACC], "update message.accuracy", &m->accuracy, e)) < 0)
        return rc;
    const msgpack_object *k = v[K_KEY];
    if (k->type != MSGPACK_OBJECT_STR)
        return ud__mpk_type_err(k, "update message.key", "a string", e);
    if (!ud_update_key_valid(k->via.str.ptr, k->via.str.size))
        return ud_err_set(e, UD_EFORMAT,
                          "update message.key: %u bytes; it must be 1 to %d printable ASCII "
                          "characters",
                          k->via.str.size, UD_UPDATE_KEY_MAX);
    memcpy(m->key, k->via.str.ptr, k->via.str.size);
    m->key[k->via.str.size] = '\0';
    const msgpack_object *d = v[K_DELTA];
    if (d->type != MSGPACK_OBJECT_BIN)
        return ud__mpk_type_err(d, "update message.delta", "bin (float32 little-endian)", e);
    size_t bytes = d->via.bin.size;
    if (bytes % 4)
        return ud_err_set(e, UD_EFORMAT,
                          "update message.delta: %zu bytes is not a whole number of float32",
                          bytes);
    size_t n = bytes / 4;
    if (n > max_floats)
        return ud_err_set(e, UD_ELIMIT, "update message.delta: %zu floats, the limit is %zu", n,
                          max_floats);
    m->n = n;
    if (!delta) /* the caller wants the fields only */
        return 0;
    float *copy = malloc(n ? n * sizeof *copy : 1);
    if (!copy)
        return ud_err_set(e, UD_ENOMEM, "update message.delta: out of memory for %zu floats", n);
    ud__mpk_f32_from_le(copy, (const unsigned char *)d->via.bin.ptr, n);
    *delta = copy;
    m->delta = copy;
    return 0;
}

int ud_update_msg_decode(const void *buf, size_t len, size_t max_floats, struct ud_update_msg *out,
                         float **delta, struct ud_err *e)
{
    memset(out, 0, sizeof *out);
    if (delta)
        *delta = NULL;
    if (len == 0)
        return ud_err_set(e, UD_EFORMAT, "update message: empty (0 bytes)");
    /* The whole message cannot be larger than its delta allows, plus the small fields. */
    if (max_floats < ((size_t)-1 - 4096) / 4 && len > max_floats * 4 + 4096)
        return ud_err_set(e, UD_ELIMIT,
                          "update message: %zu bytes, more than a delta of at most %zu floats "
                          "needs",
                          len, max_floats);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = ud__env_unpack_as(buf, len, "update message", &up, e);
    if (rc == 0)
        rc = decode_top(&up.data, max_floats, out, delta, e);
    msgpack_unpacked_destroy(&up);
    if (rc < 0) {
        if (delta) {
            free(*delta);
            *delta = NULL;
        }
        memset(out, 0, sizeof *out);
    }
    return rc;
}

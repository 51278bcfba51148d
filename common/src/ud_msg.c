/*  ud_msg.c — the worker protocol's messages as msgpack maps (contract: ud_msg.h; for
 *  people: docs/protocol.md, which lists the same fields as the tables below).
 *
 *  One table per message type says which keys it has, their kinds, where they live in struct
 *  ud_msg, their ranges and whether they are required; encoding and decoding both walk it, so
 *  the two cannot drift apart. The encoder checks what the decoder will check (required
 *  fields, ranges, limits, formats), so a message this side sends is one the other side reads.
 *
 *  Decoding trusts nothing: a message over UD_PROTO_MAX_MESSAGE is refused unread; one
 *  structural scan (ud__env_unpack_as) bounds every declared length and count by the bytes
 *  actually present before msgpack-c unpacks (its unpacker allocates an array's or a map's
 *  declared element count up front, so a forged count in a tiny buffer would otherwise be an
 *  allocation of gigabytes); then "v" is checked first (so a newer peer hears "protocol
 *  version X"), then every field's type, range and size, against the limits, before anything
 *  is copied out. Strings and bins in the unpacked object point into the caller's buffer; the
 *  message gets its own copies.
 */
#include "updraft/ud_msg.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "ud_envelope_impl.h"

/* ------------------------------------------------------------------------------------------ */
/* Message tables                                                                             */
/* ------------------------------------------------------------------------------------------ */

static const char *const TYPE_NAMES[] = {
    [UD_MSG_REGISTER] = "register",
    [UD_MSG_JOB] = "job",
    [UD_MSG_HEARTBEAT] = "heartbeat",
    [UD_MSG_PROGRESS] = "progress",
    [UD_MSG_CHECKPOINT] = "checkpoint",
    [UD_MSG_MODEL] = "model",
    [UD_MSG_MODEL_ACK] = "model_ack",
    [UD_MSG_DONE] = "done",
    [UD_MSG_ACK] = "ack",
    [UD_MSG_ERROR] = "error",
};
#define NTYPES ((int)(sizeof TYPE_NAMES / sizeof TYPE_NAMES[0]))

const char *ud_msg_type_name(enum ud_msg_type t)
{
    if ((int)t <= 0 || (int)t >= NTYPES)
        return "?";
    return TYPE_NAMES[t];
}

enum kind {
    K_STR,     /* char *: any string up to UD_PROTO_MAX_STRING bytes, UTF-8, no NUL */
    K_SHA256,  /* char *: 64 lowercase hex digits */
    K_STATUS,  /* char *: "succeeded", "failed" or "cancelled" */
    K_I32,     /* int32_t in [lo, hi] */
    K_I64,     /* int64_t in [lo, hi] */
    K_BOOL,    /* int: 0 or 1 */
    K_SECONDS, /* double: finite and > 0 */
    K_METRICS, /* metrics/nmetrics: map of string -> number */
    K_UDM,     /* udm/udm_len: bin */
    K_ARGS,    /* args/nargs: array of strings */
    K_PLAN,    /* plan/has_plan: map (ud_plan.h) */
};

struct field {
    const char *key;
    enum kind kind;
    size_t off; /* of the value in struct ud_msg (the scalar kinds and strings) */
    bool required;
    int64_t lo, hi; /* K_I32, K_I64 */
};

#define OFF(f) offsetof(struct ud_msg, f)
#define STR(k, f)                                                                                  \
    {                                                                                              \
        k, K_STR, OFF(f), true, 0, 0                                                               \
    }
#define OPT_STR(k, f)                                                                              \
    {                                                                                              \
        k, K_STR, OFF(f), false, 0, 0                                                              \
    }
#define I32(k, f, a, b)                                                                            \
    {                                                                                              \
        k, K_I32, OFF(f), true, (a), (b)                                                           \
    }
#define I64(k, f, a, b)                                                                            \
    {                                                                                              \
        k, K_I64, OFF(f), true, (a), (b)                                                           \
    }
#define NONNEG(k, f) I64(k, f, 0, INT64_MAX)
#define BOOL(k, f)                                                                                 \
    {                                                                                              \
        k, K_BOOL, OFF(f), true, 0, 0                                                              \
    }
#define RANK I32("rank", rank, 0, UD_PLAN_MAX_WORLD - 1)
#define JOB  STR("job", job)
#define OPT_METRICS                                                                                \
    {                                                                                              \
        "metrics", K_METRICS, 0, false, 0, 0                                                       \
    }
#define END                                                                                        \
    {                                                                                              \
        NULL, K_STR, 0, false, 0, 0                                                                \
    }

static const struct field F_REGISTER[] = {
    JOB,
    RANK,
    I32("world", world, 1, UD_PLAN_MAX_WORLD),
    STR("host", host),
    NONNEG("pid", pid),
    BOOL("resume", resume),
    END,
};
static const struct field F_JOB[] = {
    JOB,
    STR("name", name),
    {"args", K_ARGS, 0, true, 0, 0},
    {"plan", K_PLAN, 0, true, 0, 0},
    STR("session", session),
    STR("out", out),
    {"heartbeat_s", K_SECONDS, OFF(heartbeat_s), true, 0, 0},
    BOOL("resume", resume),
    END,
};
static const struct field F_HEARTBEAT[] = {
    JOB, RANK, STR("host", host), NONNEG("pid", pid), NONNEG("step", step), END,
};
static const struct field F_PROGRESS[] = {
    JOB,
    RANK,
    NONNEG("step", step),
    NONNEG("epoch", epoch),
    NONNEG("minibatch", minibatch),
    NONNEG("steps_per_epoch", steps_per_epoch),
    NONNEG("total_steps", total_steps),
    OPT_METRICS,
    END,
};
static const struct field F_CHECKPOINT[] = {
    JOB,
    RANK,
    NONNEG("step", step),
    NONNEG("epoch", epoch),
    NONNEG("minibatch", minibatch),
    STR("path", path),
    END,
};
static const struct field F_MODEL[] = {
    JOB,
    RANK,
    STR("name", name),
    {"sha256", K_SHA256, OFF(sha256), true, 0, 0},
    {"udm", K_UDM, 0, true, 0, 0},
    OPT_METRICS,
    END,
};
static const struct field F_MODEL_ACK[] = {
    NONNEG("version", version),
    {"sha256", K_SHA256, OFF(sha256), true, 0, 0},
    END,
};
static const struct field F_DONE[] = {
    JOB,
    RANK,
    {"status", K_STATUS, OFF(status), true, 0, 0},
    I32("code", code, INT32_MIN, INT32_MAX),
    OPT_STR("msg", msg),
    END,
};
static const struct field F_ACK[] = {BOOL("cancel", cancel), END};
static const struct field F_ERROR[] = {
    I32("code", code, INT32_MIN, INT32_MAX),
    STR("msg", msg),
    END,
};

static const struct field *const FIELDS[] = {
    [UD_MSG_REGISTER] = F_REGISTER,
    [UD_MSG_JOB] = F_JOB,
    [UD_MSG_HEARTBEAT] = F_HEARTBEAT,
    [UD_MSG_PROGRESS] = F_PROGRESS,
    [UD_MSG_CHECKPOINT] = F_CHECKPOINT,
    [UD_MSG_MODEL] = F_MODEL,
    [UD_MSG_MODEL_ACK] = F_MODEL_ACK,
    [UD_MSG_DONE] = F_DONE,
    [UD_MSG_ACK] = F_ACK,
    [UD_MSG_ERROR] = F_ERROR,
};

static const char *const STATUSES[] = {"succeeded", "failed", "cancelled"};

/* The plan's keys, in encoding order. */
enum {
    P_SAMPLES,
    P_CLASSES,
    P_LABELS_HASH,
    P_SEED,
    P_BATCH,
    P_SHUFFLE,
    P_WORLD,
    P_VALIDATION,
    P_SHARDS,
    P_NKEYS
};
static const char *const PLAN_KEYS[P_NKEYS] = {
    "samples", "classes", "labels_hash", "seed",   "batch",
    "shuffle", "world",   "validation",  "shards",
};

#define FIELD_PTR(m, f, T)  ((T *)((char *)(m) + (f)->off))
#define FIELD_CPTR(m, f, T) ((const T *)((const char *)(m) + (f)->off))

/* ------------------------------------------------------------------------------------------ */
/* Building messages                                                                          */
/* ------------------------------------------------------------------------------------------ */

int ud_msg_set_str(char **field, const char *s)
{
    char *c = NULL;
    if (s && !(c = strdup(s)))
        return UD_ENOMEM;
    free(*field);
    *field = c;
    return 0;
}

int ud_msg_add_metric(struct ud_msg *m, const char *key, double value)
{
    if (m->nmetrics >= UD_PROTO_MAX_METRICS)
        return UD_ELIMIT;
    struct ud_msg_metric *v = realloc(m->metrics, (size_t)(m->nmetrics + 1) * sizeof *v);
    if (!v)
        return UD_ENOMEM;
    m->metrics = v;
    struct ud_msg_metric *x = &v[m->nmetrics++];
    size_t n = strlen(key);
    if (n > UD_PROTO_MAX_KEY - 1) {
        n = UD_PROTO_MAX_KEY - 1;
        while (n > 0 && ((unsigned char)key[n] & 0xc0) == 0x80) /* not inside a UTF-8 char */
            n--;
    }
    memcpy(x->key, key, n);
    x->key[n] = '\0';
    x->value = value;
    return 0;
}

int ud_msg_add_arg(struct ud_msg *m, const char *arg)
{
    if (m->nargs >= UD_PROTO_MAX_ARGS)
        return UD_ELIMIT;
    char **v = realloc(m->args, (size_t)(m->nargs + 1) * sizeof *v);
    if (!v)
        return UD_ENOMEM;
    m->args = v;
    if (!(v[m->nargs] = strdup(arg ? arg : "")))
        return UD_ENOMEM;
    m->nargs++;
    return 0;
}

void ud_msg_deinit(struct ud_msg *m)
{
    if (!m)
        return;
    char **strs[] = {&m->job,    &m->host, &m->path,    &m->name, &m->sha256,
                     &m->status, &m->msg,  &m->session, &m->out};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
    free(m->metrics);
    free(m->udm);
    if (m->args)
        for (int i = 0; i < m->nargs; i++)
            free(m->args[i]);
    free(m->args);
    ud_plan_deinit(&m->plan);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------------------------ */
/* Checks shared by both directions                                                           */
/* ------------------------------------------------------------------------------------------ */

static bool sha256_ok(const char *s, size_t n)
{
    if (n != 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* The format of a string field's value (the length limit and UTF-8 are checked apart).
 * `bad` is the code to return: UD_EFORMAT decoding, UD_EINVAL encoding. */
static int str_value_ok(const struct field *f, const char *where, const char *s, size_t n, int bad,
                        struct ud_err *e)
{
    if (f->kind == K_SHA256 && !sha256_ok(s, n))
        return ud_err_set(e, bad, "%s.%s: expected 64 lowercase hex digits, found \"%.*s\"", where,
                          f->key, n > 80 ? 80 : (int)n, s);
    if (f->kind == K_STATUS) {
        for (size_t i = 0; i < sizeof STATUSES / sizeof STATUSES[0]; i++)
            if (strlen(STATUSES[i]) == n && memcmp(STATUSES[i], s, n) == 0)
                return 0;
        return ud_err_set(e, bad, "%s.%s: \"%.*s\" is not a status (succeeded, failed, cancelled)",
                          where, f->key, n > 32 ? 32 : (int)n, s);
    }
    return 0;
}

/* Structural checks beyond single fields. */
static int msg_cross_check(const struct ud_msg *m, int bad, struct ud_err *e)
{
    if (m->type == UD_MSG_REGISTER && m->rank >= m->world)
        return ud_err_set(e, bad, "register: rank %d is not below world %d", (int)m->rank,
                          (int)m->world);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void pack_plan(msgpack_packer *pk, const struct ud_plan *p)
{
    msgpack_pack_map(pk, P_NKEYS);
    for (int k = 0; k < P_NKEYS; k++) {
        ud__mpk_pack_str(pk, PLAN_KEYS[k]);
        switch (k) {
        case P_SAMPLES:
            msgpack_pack_uint64(pk, p->manifest.samples);
            break;
        case P_CLASSES:
            msgpack_pack_array(pk, (size_t)p->manifest.nclasses);
            for (int c = 0; c < p->manifest.nclasses; c++)
                ud__mpk_pack_str(pk, p->manifest.classes[c]);
            break;
        case P_LABELS_HASH:
            msgpack_pack_uint64(pk, p->manifest.labels_hash);
            break;
        case P_SEED:
            msgpack_pack_uint64(pk, p->seed);
            break;
        case P_BATCH:
            msgpack_pack_int64(pk, p->batch);
            break;
        case P_SHUFFLE:
            ud__mpk_pack_bool(pk, p->shuffle);
            break;
        case P_WORLD:
            msgpack_pack_int(pk, p->world);
            break;
        case P_VALIDATION:
            ud__mpk_pack_u32_bin(pk, p->validation, p->nvalidation);
            break;
        case P_SHARDS:
            msgpack_pack_array(pk, (size_t)p->world);
            for (int r = 0; r < p->world; r++)
                ud__mpk_pack_u32_bin(pk, p->shards[r], p->shard_len[r]);
            break;
        }
    }
}

/* Is field f present in m (the optional ones may be absent)? */
static bool field_present(const struct ud_msg *m, const struct field *f)
{
    switch (f->kind) {
    case K_STR:
    case K_SHA256:
    case K_STATUS:
        return *FIELD_CPTR(m, f, char *) != NULL;
    default: /* metrics: always sent, empty or not */
        return true;
    }
}

static void pack_fields(msgpack_packer *pk, const struct ud_msg *m, const struct field *fs)
{
    size_t n = 3;
    for (const struct field *f = fs; f->key; f++)
        n += field_present(m, f);
    msgpack_pack_map(pk, n);
    ud__mpk_pack_key_uint(pk, "v", UD_PROTO_VERSION);
    ud__mpk_pack_key_str(pk, "t", ud_msg_type_name(m->type));
    ud__mpk_pack_key_uint(pk, "id", m->id);
    for (const struct field *f = fs; f->key; f++) {
        if (!field_present(m, f))
            continue;
        ud__mpk_pack_str(pk, f->key);
        switch (f->kind) {
        case K_STR:
        case K_SHA256:
        case K_STATUS:
            ud__mpk_pack_str(pk, *FIELD_CPTR(m, f, char *));
            break;
        case K_I32:
            msgpack_pack_int64(pk, *FIELD_CPTR(m, f, int32_t));
            break;
        case K_I64:
            msgpack_pack_int64(pk, *FIELD_CPTR(m, f, int64_t));
            break;
        case K_BOOL:
            ud__mpk_pack_bool(pk, *FIELD_CPTR(m, f, int));
            break;
        case K_SECONDS:
            msgpack_pack_double(pk, *FIELD_CPTR(m, f, double));
            break;
        case K_METRICS:
            msgpack_pack_map(pk, (size_t)m->nmetrics);
            for (int i = 0; i < m->nmetrics; i++) {
                ud__mpk_pack_str(pk, m->metrics[i].key);
                msgpack_pack_double(pk, m->metrics[i].value);
            }
            break;
        case K_UDM:
            msgpack_pack_bin_with_body(pk, m->udm, m->udm_len);
            break;
        case K_ARGS:
            msgpack_pack_array(pk, (size_t)m->nargs);
            for (int i = 0; i < m->nargs; i++)
                ud__mpk_pack_str(pk, m->args[i]);
            break;
        case K_PLAN:
            pack_plan(pk, &m->plan);
            break;
        }
    }
}

/* The message as ud__mpk_pack_alloc packs it. */
struct msg_body {
    const struct ud_msg *m;
    const struct field *fs;
};

static void pack_body(msgpack_packer *pk, const void *ctx)
{
    const struct msg_body *b = ctx;
    pack_fields(pk, b->m, b->fs);
}

/* A string the decoder will accept: at most max bytes of UTF-8 (and C strings hold no NUL). */
static int enc_str_ok(const char *where, const char *key, const char *s, size_t max,
                      struct ud_err *e)
{
    size_t n = strlen(s);
    if (n > max)
        return ud_err_set(e, UD_ELIMIT, "%s.%s: %zu bytes, the limit is %zu", where, key, n, max);
    if (!ud__mpk_utf8_ok((const unsigned char *)s, n))
        return ud_err_set(e, UD_EINVAL, "%s.%s: not valid UTF-8", where, key);
    return 0;
}

/* n items of a list field (metrics, args), held in arr when n > 0: at most max. */
static int enc_count(const char *where, const char *key, int n, int max, const char *noun,
                     const void *arr, struct ud_err *e)
{
    if (n < 0 || n > max)
        return ud_err_set(e, UD_ELIMIT, "%s.%s: %d %s, the limit is %d", where, key, n, noun, max);
    if (n && !arr)
        return ud_err_set(e, UD_EINVAL, "%s.%s: %d %s but no array", where, key, n, noun);
    return 0;
}

/* Everything the decoder checks, before anything is packed. */
static int enc_check(const struct ud_msg *m, const struct field *fs, const char *where,
                     struct ud_err *e)
{
    int rc;
    for (const struct field *f = fs; f->key; f++) {
        switch (f->kind) {
        case K_STR:
        case K_SHA256:
        case K_STATUS: {
            const char *s = *FIELD_CPTR(m, f, char *);
            if (!s) {
                if (f->required)
                    return ud_err_set(e, UD_EINVAL, "%s: required field \"%s\" is not set", where,
                                      f->key);
                break;
            }
            if ((rc = enc_str_ok(where, f->key, s, UD_PROTO_MAX_STRING, e)) < 0 ||
                (rc = str_value_ok(f, where, s, strlen(s), UD_EINVAL, e)) < 0)
                return rc;
            break;
        }
        case K_I32:
        case K_I64: {
            int64_t v = f->kind == K_I32 ? *FIELD_CPTR(m, f, int32_t) : *FIELD_CPTR(m, f, int64_t);
            if (v < f->lo || v > f->hi)
                return ud_err_set(e, UD_EINVAL, "%s.%s: %lld is out of range [%lld, %lld]", where,
                                  f->key, (long long)v, (long long)f->lo, (long long)f->hi);
            break;
        }
        case K_BOOL:
            break;
        case K_SECONDS: {
            double v = *FIELD_CPTR(m, f, double);
            if (!(isfinite(v) && v > 0))
                return ud_err_set(e, UD_EINVAL, "%s.%s: %g is not a positive number of seconds",
                                  where, f->key, v);
            break;
        }
        case K_METRICS:
            if ((rc = enc_count(where, "metrics", m->nmetrics, UD_PROTO_MAX_METRICS, "metrics",
                                m->metrics, e)) < 0)
                return rc;
            for (int i = 0; i < m->nmetrics; i++) {
                const char *k = m->metrics[i].key;
                if (!memchr(k, '\0', UD_PROTO_MAX_KEY) || !k[0])
                    return ud_err_set(e, UD_EINVAL, "%s.metrics[%d]: empty or unterminated key",
                                      where, i);
                if ((rc = enc_str_ok(where, "metrics", k, UD_PROTO_MAX_KEY - 1, e)) < 0)
                    return rc;
                for (int j = 0; j < i; j++)
                    if (strcmp(m->metrics[j].key, k) == 0)
                        return ud_err_set(e, UD_EINVAL, "%s.metrics: \"%s\" appears twice", where,
                                          k);
            }
            break;
        case K_UDM:
            if (!m->udm)
                return ud_err_set(e, UD_EINVAL, "%s: required field \"udm\" is not set", where);
            break;
        case K_ARGS:
            if ((rc = enc_count(where, "args", m->nargs, UD_PROTO_MAX_ARGS, "arguments", m->args,
                                e)) < 0)
                return rc;
            for (int i = 0; i < m->nargs; i++) {
                if (!m->args[i])
                    return ud_err_set(e, UD_EINVAL, "%s.args[%d] is not set", where, i);
                if ((rc = enc_str_ok(where, "args", m->args[i], UD_PROTO_MAX_STRING, e)) < 0)
                    return rc;
            }
            break;
        case K_PLAN: {
            if (!m->has_plan)
                return ud_err_set(e, UD_EINVAL, "%s: required field \"plan\" is not set", where);
            const struct ud_manifest *mf = &m->plan.manifest;
            for (int c = 0; c < mf->nclasses && mf->classes; c++)
                if (mf->classes[c] && (rc = enc_str_ok(where, "plan.classes", mf->classes[c],
                                                       UD_PROTO_MAX_STRING, e)) < 0)
                    return rc;
            struct ud_err pe = {0};
            if ((rc = ud_plan_validate(&m->plan, &pe)) < 0)
                return ud_err_set(e, rc == UD_ENOMEM ? UD_ENOMEM : UD_EINVAL, "%s.%s", where,
                                  pe.msg);
            break;
        }
        }
    }
    return msg_cross_check(m, UD_EINVAL, e);
}

int ud_msg_encode(const struct ud_msg *m, void **out, size_t *len, struct ud_err *e)
{
    *out = NULL;
    *len = 0;
    if ((int)m->type <= 0 || (int)m->type >= NTYPES)
        return ud_err_set(e, UD_EINVAL, "encoding a message: unknown type %d", (int)m->type);
    const char *where = ud_msg_type_name(m->type);
    const struct field *fs = FIELDS[m->type];
    int rc = enc_check(m, fs, where, e);
    if (rc < 0)
        return rc;

    struct msg_body body = {m, fs};
    char *buf = NULL;
    rc = ud__mpk_pack_alloc(pack_body, &body, UD_PROTO_MAX_MESSAGE, where, "message", &buf, len, e);
    *out = buf;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* A string of at most max bytes (UD_ELIMIT beyond, checked before allocating), valid UTF-8
 * without NUL, copied into *out. */
static int dec_str(const msgpack_object *o, const char *field, size_t max, char **out,
                   struct ud_err *e)
{
    *out = NULL;
    if (o->type != MSGPACK_OBJECT_STR)
        return ud__mpk_type_err(o, field, "a string", e);
    if (o->via.str.size > max)
        return ud_err_set(e, UD_ELIMIT, "%s: %u bytes, the limit is %zu", field,
                          (unsigned)o->via.str.size, max);
    int rc = ud__mpk_get_str(o, field, max, false, out, e);
    return rc;
}

/* o must be a map (map true) or an array of at most max elements, *n gets how many; more is
 * UD_ELIMIT "<field>: N <noun>, the limit is M". */
static int dec_sized(const msgpack_object *o, const char *field, bool map, uint32_t max,
                     const char *noun, uint32_t *n, struct ud_err *e)
{
    *n = 0;
    if (o->type != (map ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY))
        return ud__mpk_type_err(o, field, map ? "a map" : "an array", e);
    *n = map ? o->via.map.size : o->via.array.size;
    if (*n > max)
        return ud_err_set(e, UD_ELIMIT, "%s: %u %s, the limit is %u", field, (unsigned)*n, noun,
                          (unsigned)max);
    return 0;
}

/* A bin of uint32 little-endian values, copied into *out (never NULL on success). */
static int dec_u32_bin(const msgpack_object *o, const char *field, uint32_t **out, size_t *n,
                       struct ud_err *e)
{
    *out = NULL;
    *n = 0;
    if (o->type != MSGPACK_OBJECT_BIN)
        return ud__mpk_type_err(o, field, "bin", e);
    size_t bytes = o->via.bin.size;
    if (bytes % 4)
        return ud_err_set(e, UD_EFORMAT, "%s: %zu bytes, not a whole number of uint32 values",
                          field, bytes);
    if (bytes / 4 > UD_PLAN_MAX_SAMPLES)
        return ud_err_set(e, UD_ELIMIT, "%s: %zu indices, the limit is %u", field, bytes / 4,
                          UD_PLAN_MAX_SAMPLES);
    uint32_t *v = malloc(bytes ? bytes : 1);
    if (!v)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory for %zu indices", field, bytes / 4);
    ud__mpk_u32_from_le(v, (const unsigned char *)o->via.bin.ptr, bytes / 4);
    *out = v;
    *n = bytes / 4;
    return 0;
}

static int dec_plan(const msgpack_object *o, const char *where, struct ud_plan *p, struct ud_err *e)
{
    char field[96], name[128];
    snprintf(field, sizeof field, "%s.plan", where);
    if (o->type != MSGPACK_OBJECT_MAP)
        return ud__mpk_type_err(o, field, "a map", e);
    const msgpack_object *v[P_NKEYS];
    int rc;
    for (int k = 0; k < P_NKEYS; k++)
        if ((rc = ud__mpk_require(o, field, PLAN_KEYS[k], &v[k], e)) < 0)
            return rc;
#define NAME(k) (snprintf(name, sizeof name, "%s.%s", field, PLAN_KEYS[k]), name)
    int64_t i64;
    int b;
    /* Scalars first: they bound what the arrays may hold. */
    if ((rc = ud__mpk_get_u64(v[P_SAMPLES], NAME(P_SAMPLES), &p->manifest.samples, e)) < 0)
        return rc;
    if (p->manifest.samples > UD_PLAN_MAX_SAMPLES)
        return ud_err_set(e, UD_ELIMIT, "%s: %llu samples, the limit is %u", NAME(P_SAMPLES),
                          (unsigned long long)p->manifest.samples, UD_PLAN_MAX_SAMPLES);
    if ((rc = ud__mpk_get_u64(v[P_LABELS_HASH], NAME(P_LABELS_HASH), &p->manifest.labels_hash, e)) <
            0 ||
        (rc = ud__mpk_get_u64(v[P_SEED], NAME(P_SEED), &p->seed, e)) < 0 ||
        (rc = ud__mpk_get_int(v[P_BATCH], NAME(P_BATCH), 1, INT64_MAX, &p->batch, e)) < 0 ||
        (rc = ud__mpk_get_bool(v[P_SHUFFLE], NAME(P_SHUFFLE), &b, e)) < 0)
        return rc;
    p->shuffle = b;
    if ((rc = ud__mpk_get_int(v[P_WORLD], NAME(P_WORLD), 1, INT64_MAX, &i64, e)) < 0)
        return rc;
    if (i64 > UD_PLAN_MAX_WORLD)
        return ud_err_set(e, UD_ELIMIT, "%s: %lld ranks, the limit is %d", NAME(P_WORLD),
                          (long long)i64, UD_PLAN_MAX_WORLD);
    int world = (int)i64;

    /* Class names. */
    const msgpack_object *cl = v[P_CLASSES];
    uint32_t ncl;
    if ((rc = dec_sized(cl, NAME(P_CLASSES), false, UD_PLAN_MAX_CLASSES, "classes", &ncl, e)) < 0)
        return rc;
    if (ncl) {
        p->manifest.classes = calloc(ncl, sizeof *p->manifest.classes);
        if (!p->manifest.classes)
            return ud_err_set(e, UD_ENOMEM, "%s: out of memory", NAME(P_CLASSES));
        p->manifest.nclasses = (int)ncl;
        for (uint32_t c = 0; c < ncl; c++) {
            snprintf(name, sizeof name, "%s.classes[%u]", field, (unsigned)c);
            if ((rc = dec_str(&cl->via.array.ptr[c], name, UD_PROTO_MAX_STRING,
                              &p->manifest.classes[c], e)) < 0)
                return rc;
        }
    }

    /* Indices. */
    if ((rc = dec_u32_bin(v[P_VALIDATION], NAME(P_VALIDATION), &p->validation, &p->nvalidation,
                          e)) < 0)
        return rc;
    const msgpack_object *sh = v[P_SHARDS];
    if (sh->type != MSGPACK_OBJECT_ARRAY)
        return ud__mpk_type_err(sh, NAME(P_SHARDS), "an array", e);
    if (sh->via.array.size != (uint32_t)world)
        return ud_err_set(e, UD_EFORMAT, "%s: %u shards for a world of %d ranks", NAME(P_SHARDS),
                          (unsigned)sh->via.array.size, world);
    p->shards = calloc((size_t)world, sizeof *p->shards);
    p->shard_len = calloc((size_t)world, sizeof *p->shard_len);
    p->world = world; /* after the arrays exist: ud_plan_deinit walks world of them */
    if (!p->shards || !p->shard_len)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", NAME(P_SHARDS));
    for (int r = 0; r < world; r++) {
        snprintf(name, sizeof name, "%s.shards[%d]", field, r);
        if ((rc = dec_u32_bin(&sh->via.array.ptr[r], name, &p->shards[r], &p->shard_len[r], e)) < 0)
            return rc;
    }
#undef NAME

    struct ud_err pe = {0};
    if ((rc = ud_plan_validate(p, &pe)) < 0)
        return ud_err_set(e, rc, "%s.%s", where, pe.msg);
    return 0;
}

static int dec_metrics(const msgpack_object *o, const char *where, struct ud_msg *m,
                       struct ud_err *e)
{
    char field[96];
    snprintf(field, sizeof field, "%s.metrics", where);
    uint32_t n;
    int rc = dec_sized(o, field, true, UD_PROTO_MAX_METRICS, "metrics", &n, e);
    if (rc < 0 || n == 0)
        return rc;
    m->metrics = calloc(n, sizeof *m->metrics);
    if (!m->metrics)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", field);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *val = &o->via.map.ptr[i].val;
        struct ud_msg_metric *x = &m->metrics[i];
        if (k->type != MSGPACK_OBJECT_STR)
            return ud_err_set(e, UD_EFORMAT, "%s: a key is %s, keys are strings", field,
                              ud__mpk_type_name(k));
        if (k->via.str.size >= UD_PROTO_MAX_KEY)
            return ud_err_set(e, UD_ELIMIT, "%s: a key of %u bytes, the limit is %d", field,
                              (unsigned)k->via.str.size, UD_PROTO_MAX_KEY - 1);
        if (k->via.str.size == 0)
            return ud_err_set(e, UD_EFORMAT, "%s: an empty key", field);
        if ((rc = ud__mpk_get_strbuf(k, field, x->key, sizeof x->key, e)) < 0)
            return rc;
        char vf[96 + UD_PROTO_MAX_KEY];
        snprintf(vf, sizeof vf, "%s.%s", field, x->key);
        if ((rc = ud__mpk_get_double(val, vf, &x->value, e)) < 0)
            return rc;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(m->metrics[j].key, x->key) == 0)
                return ud_err_set(e, UD_EFORMAT, "%s: \"%s\" appears twice", field, x->key);
        m->nmetrics = (int)i + 1;
    }
    return 0;
}

static int dec_args(const msgpack_object *o, const char *where, struct ud_msg *m, struct ud_err *e)
{
    char field[96];
    snprintf(field, sizeof field, "%s.args", where);
    uint32_t n;
    int rc = dec_sized(o, field, false, UD_PROTO_MAX_ARGS, "arguments", &n, e);
    if (rc < 0 || n == 0)
        return rc;
    m->args = calloc(n, sizeof *m->args);
    if (!m->args)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", field);
    m->nargs = (int)n; /* the entries are NULL until read: ud_msg_deinit frees what is there */
    for (uint32_t i = 0; i < n; i++) {
        char af[128];
        snprintf(af, sizeof af, "%s[%u]", field, (unsigned)i);
        if ((rc = dec_str(&o->via.array.ptr[i], af, UD_PROTO_MAX_STRING, &m->args[i], e)) < 0)
            return rc;
    }
    return 0;
}

static int dec_field(const msgpack_object *o, const struct field *f, const char *where,
                     struct ud_msg *m, struct ud_err *e)
{
    char field[96];
    snprintf(field, sizeof field, "%s.%s", where, f->key);
    int64_t v;
    int rc;
    switch (f->kind) {
    case K_STR:
    case K_SHA256:
    case K_STATUS: {
        if ((rc = dec_str(o, field, UD_PROTO_MAX_STRING, FIELD_PTR(m, f, char *), e)) < 0)
            return rc;
        const char *s = *FIELD_PTR(m, f, char *);
        return str_value_ok(f, where, s, strlen(s), UD_EFORMAT, e);
    }
    case K_I32:
        if ((rc = ud__mpk_get_int(o, field, f->lo, f->hi, &v, e)) < 0)
            return rc;
        *FIELD_PTR(m, f, int32_t) = (int32_t)v;
        return 0;
    case K_I64:
        return ud__mpk_get_int(o, field, f->lo, f->hi, FIELD_PTR(m, f, int64_t), e);
    case K_BOOL:
        return ud__mpk_get_bool(o, field, FIELD_PTR(m, f, int), e);
    case K_SECONDS: {
        double d;
        if ((rc = ud__mpk_get_double(o, field, &d, e)) < 0)
            return rc;
        if (!(isfinite(d) && d > 0))
            return ud_err_set(e, UD_EFORMAT, "%s: %g is not a positive number of seconds", field,
                              d);
        *FIELD_PTR(m, f, double) = d;
        return 0;
    }
    case K_METRICS:
        return dec_metrics(o, where, m, e);
    case K_UDM:
        if (o->type != MSGPACK_OBJECT_BIN)
            return ud__mpk_type_err(o, field, "bin", e);
        /* Bounded by the message, itself bounded by UD_PROTO_MAX_MESSAGE. */
        if (!(m->udm = malloc(o->via.bin.size ? o->via.bin.size : 1)))
            return ud_err_set(e, UD_ENOMEM, "%s: out of memory for %u bytes", field,
                              (unsigned)o->via.bin.size);
        if (o->via.bin.size)
            memcpy(m->udm, o->via.bin.ptr, o->via.bin.size);
        m->udm_len = o->via.bin.size;
        return 0;
    case K_ARGS:
        return dec_args(o, where, m, e);
    case K_PLAN:
        m->has_plan = 1;
        return dec_plan(o, where, &m->plan, e);
    }
    return ud_err_set(e, UD_EINTERNAL, "%s: unknown field kind", field);
}

static int dec_message(const msgpack_object *top, struct ud_msg *m, struct ud_err *e)
{
    if (top->type != MSGPACK_OBJECT_MAP)
        return ud__mpk_type_err(top, "message", "a map", e);
    const msgpack_object *v, *t, *id;
    int rc;
    uint64_t ver;
    /* The id, if it reads as one, so that even a message of another version can be answered
     * (every version keeps "id"); then the version: a newer peer may have changed the rest. */
    for (uint32_t i = 0; i < top->via.map.size; i++) {
        const msgpack_object_kv *kv = &top->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2 &&
            memcmp(kv->key.via.str.ptr, "id", 2) == 0 &&
            kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            m->id = kv->val.via.u64;
    }
    if ((rc = ud__mpk_require(top, "message", "v", &v, e)) < 0)
        return rc;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER && v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return ud__mpk_type_err(v, "message.v", "an integer", e);
    ver = v->via.u64;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || ver != UD_PROTO_VERSION)
        return ud_err_set(e, UD_EVERSION,
                          "protocol version %lld, this side speaks %d: run the same updraft "
                          "release on workers and coordinator",
                          v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? (long long)v->via.i64
                                                                     : (long long)ver,
                          UD_PROTO_VERSION);
    /* The id next, so that a receiver can answer even a message it refuses. */
    if ((rc = ud__mpk_require(top, "message", "id", &id, e)) < 0 ||
        (rc = ud__mpk_get_u64(id, "message.id", &m->id, e)) < 0)
        return rc;
    if ((rc = ud__mpk_require(top, "message", "t", &t, e)) < 0)
        return rc;
    if (t->type != MSGPACK_OBJECT_STR)
        return ud__mpk_type_err(t, "message.t", "a string", e);
    for (int k = 1; k < NTYPES; k++)
        if (ud__mpk_key_is(t, TYPE_NAMES[k]))
            m->type = (enum ud_msg_type)k;
    if (m->type == UD_MSG_NONE)
        return ud_err_set(e, UD_EFORMAT, "message.t: unknown message type \"%.*s\"",
                          t->via.str.size > 32 ? 32 : (int)t->via.str.size, t->via.str.ptr);

    const char *where = TYPE_NAMES[m->type];
    for (const struct field *f = FIELDS[m->type]; f->key; f++) {
        const msgpack_object *o;
        if ((rc = f->required ? ud__mpk_require(top, where, f->key, &o, e)
                              : ud__mpk_lookup(top, where, f->key, &o, e)) < 0)
            return rc;
        if (o && (rc = dec_field(o, f, where, m, e)) < 0)
            return rc;
    }
    return msg_cross_check(m, UD_EFORMAT, e);
}

int ud_msg_decode(const void *buf, size_t len, struct ud_msg *m, struct ud_err *e)
{
    memset(m, 0, sizeof *m);
    if (len > UD_PROTO_MAX_MESSAGE)
        return ud_err_set(e, UD_ELIMIT, "message: %zu bytes, the limit is %u", len,
                          UD_PROTO_MAX_MESSAGE);
    if (len == 0)
        return ud_err_set(e, UD_EFORMAT, "message: empty (0 bytes)");
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = ud__env_unpack_as(buf, len, "message", &up, e);
    if (rc == 0)
        rc = dec_message(&up.data, m, e);
    msgpack_unpacked_destroy(&up);
    if (rc < 0) {
        /* Nothing to free on error; the id and type stay when they were read. */
        uint64_t id = m->id;
        enum ud_msg_type type = m->type;
        ud_msg_deinit(m);
        m->id = id;
        m->type = type;
    }
    return rc;
}

/*  test_msg.c — the worker protocol's codec (ud_msg.h): a round trip of every message type
 *  (metrics with NaN, args, a plan, a model blob), and refusals: every truncation of every
 *  message, other protocol versions, unknown types, wrong field types, missing and repeated
 *  keys, forged huge lengths, sizes over the limits, bins that are not whole uint32 arrays,
 *  plans with bad indices, and random corruption. Hand-made messages are packed here with
 *  msgpack directly, as docs/protocol.md describes them, not with ud_msg.c.
 */
#include "ud_test.h"

#include <math.h>

#include <msgpack.h>

#include "updraft/ud_msg.h"
#include "updraft/ud_rng.h"

static const char *const SHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* ------------------------------------------------------------------------------------------ */
/* Fixtures                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void set(char **field, const char *s)
{
    assert_int_equal(ud_msg_set_str(field, s), 0);
}

static void make_test_plan(struct ud_plan *p, int world)
{
    static char *names[] = {"T-shirt", "Trouser", "Pullover"};
    struct ud_manifest m = {
        .samples = 120, .nclasses = 3, .classes = names, .labels_hash = 0xfedcba9876543210ull};
    uint32_t tr[100], va[20];
    for (uint32_t i = 0; i < 100; i++)
        tr[i] = i < 50 ? i : i + 20;
    for (uint32_t i = 0; i < 20; i++)
        va[i] = 50 + i;
    struct ud_err e = {0};
    if (ud_plan_make(&m, tr, 100, va, 20, 0xdeadbeefcafef00dull, 16, 1, world, p, &e))
        fail_msg("ud_plan_make: %s", e.msg);
}

/* One message of type t with every field it has set to something recognisable. */
static void fill(struct ud_msg *m, enum ud_msg_type t, size_t udm_len)
{
    memset(m, 0, sizeof *m);
    m->type = t;
    m->id = 1000 + (uint64_t)t;
    switch (t) {
    case UD_MSG_REGISTER:
        set(&m->job, "");
        m->rank = 0;
        m->world = 3;
        set(&m->host, "node-1.example");
        m->pid = 4242;
        m->resume = 1;
        break;
    case UD_MSG_JOB:
        set(&m->job, "job-000001");
        set(&m->name, "fashion");
        assert_int_equal(ud_msg_add_arg(m, "--epochs"), 0);
        assert_int_equal(ud_msg_add_arg(m, "3"), 0);
        assert_int_equal(ud_msg_add_arg(m, "--input"), 0);
        assert_int_equal(ud_msg_add_arg(m, "/data/fashion mnist/ü"), 0);
        make_test_plan(&m->plan, 3);
        m->has_plan = 1;
        set(&m->session, "/state/jobs/job-000001/session");
        set(&m->out, "/state/jobs/job-000001/model.udm");
        m->heartbeat_s = 1.0;
        m->resume = 1;
        break;
    case UD_MSG_HEARTBEAT:
        set(&m->job, "job-000001");
        m->rank = 2;
        set(&m->host, "node-2");
        m->pid = 77;
        m->step = 123456789012ll;
        break;
    case UD_MSG_PROGRESS:
        set(&m->job, "job-000001");
        m->step = 40;
        m->epoch = 1;
        m->minibatch = 5;
        m->steps_per_epoch = 35;
        m->total_steps = 105;
        assert_int_equal(ud_msg_add_metric(m, "loss", 0.6931), 0);
        assert_int_equal(ud_msg_add_metric(m, "accuracy", 0.75), 0);
        assert_int_equal(ud_msg_add_metric(m, "val_loss", NAN), 0);
        assert_int_equal(ud_msg_add_metric(m, "learning_rate", 1e-3), 0);
        break;
    case UD_MSG_CHECKPOINT:
        set(&m->job, "job-000001");
        m->step = 70;
        m->epoch = 2;
        m->minibatch = 0;
        set(&m->path, "/state/jobs/job-000001/session/ckpt-000070");
        break;
    case UD_MSG_MODEL: {
        set(&m->job, "job-000001");
        set(&m->name, "fashion");
        set(&m->sha256, SHA);
        m->udm = malloc(udm_len ? udm_len : 1);
        assert_non_null(m->udm);
        struct ud_rng r;
        ud_rng_seed(&r, 1, 2);
        for (size_t i = 0; i < udm_len; i++)
            m->udm[i] = (uint8_t)ud_rng_next(&r);
        m->udm_len = udm_len;
        assert_int_equal(ud_msg_add_metric(m, "test_accuracy", 0.875), 0);
        break;
    }
    case UD_MSG_MODEL_ACK:
        m->version = 7;
        set(&m->sha256, SHA);
        break;
    case UD_MSG_DONE:
        set(&m->job, "job-000001");
        m->rank = 1;
        set(&m->status, "failed");
        m->code = UD_EMPI;
        set(&m->msg, "rank 2 died");
        break;
    case UD_MSG_ACK:
        m->cancel = 1;
        break;
    case UD_MSG_ERROR:
        m->code = UD_ECONFLICT;
        set(&m->msg, "job-000001 already has live ranks");
        break;
    default:
        fail_msg("no fixture for type %d", (int)t);
    }
}

static void encode_ok(const struct ud_msg *m, void **buf, size_t *len)
{
    struct ud_err e = {0};
    if (ud_msg_encode(m, buf, len, &e) != 0)
        fail_msg("encode %s: %s", ud_msg_type_name(m->type), e.msg);
}

static void assert_plan_equal(const struct ud_plan *a, const struct ud_plan *b)
{
    assert_int_equal(ud_plan_hash(a), ud_plan_hash(b));
    assert_int_equal(a->manifest.samples, b->manifest.samples);
    assert_int_equal(a->manifest.nclasses, b->manifest.nclasses);
    for (int c = 0; c < a->manifest.nclasses; c++)
        assert_string_equal(a->manifest.classes[c], b->manifest.classes[c]);
    assert_int_equal(a->manifest.labels_hash, b->manifest.labels_hash);
    assert_int_equal(a->seed, b->seed);
    assert_int_equal(a->batch, b->batch);
    assert_int_equal(a->shuffle, b->shuffle);
    assert_int_equal(a->world, b->world);
    assert_int_equal(a->nvalidation, b->nvalidation);
    assert_memory_equal(a->validation, b->validation, a->nvalidation * 4);
    for (int r = 0; r < a->world; r++) {
        assert_int_equal(a->shard_len[r], b->shard_len[r]);
        assert_memory_equal(a->shards[r], b->shards[r], a->shard_len[r] * 4);
    }
}

static void assert_msg_equal(const struct ud_msg *a, const struct ud_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->id, b->id);
    assert_str_eq_or_null(a->job, b->job);
    assert_int_equal(a->rank, b->rank);
    assert_int_equal(a->world, b->world);
    assert_str_eq_or_null(a->host, b->host);
    assert_int_equal(a->pid, b->pid);
    assert_int_equal(a->resume, b->resume);
    assert_int_equal(a->step, b->step);
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->minibatch, b->minibatch);
    assert_int_equal(a->steps_per_epoch, b->steps_per_epoch);
    assert_int_equal(a->total_steps, b->total_steps);
    assert_int_equal(a->nmetrics, b->nmetrics);
    for (int i = 0; i < a->nmetrics; i++) {
        assert_string_equal(a->metrics[i].key, b->metrics[i].key);
        if (isnan(a->metrics[i].value))
            assert_true(isnan(b->metrics[i].value));
        else
            assert_true(a->metrics[i].value == b->metrics[i].value);
    }
    assert_str_eq_or_null(a->path, b->path);
    assert_str_eq_or_null(a->name, b->name);
    assert_str_eq_or_null(a->sha256, b->sha256);
    assert_int_equal(a->udm_len, b->udm_len);
    if (a->udm_len)
        assert_memory_equal(a->udm, b->udm, a->udm_len);
    assert_int_equal(a->version, b->version);
    assert_str_eq_or_null(a->status, b->status);
    assert_str_eq_or_null(a->msg, b->msg);
    assert_int_equal(a->code, b->code);
    assert_int_equal(a->cancel, b->cancel);
    assert_int_equal(a->nargs, b->nargs);
    for (int i = 0; i < a->nargs; i++)
        assert_string_equal(a->args[i], b->args[i]);
    assert_int_equal(a->has_plan, b->has_plan);
    if (a->has_plan)
        assert_plan_equal(&a->plan, &b->plan);
    assert_str_eq_or_null(a->session, b->session);
    assert_str_eq_or_null(a->out, b->out);
    assert_true(a->heartbeat_s == b->heartbeat_s);
}

/* Hand-made messages: a msgpack buffer and a packer writing to it. */
struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mp_init(struct mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_str(struct mp *m, const char *s)
{
    msgpack_pack_str_with_body(&m->pk, s, strlen(s));
}

/* The message header: a map of 3 + extra entries, then v, t, id. */
static void mp_head(struct mp *m, size_t extra, uint64_t v, const char *t, uint64_t id)
{
    msgpack_pack_map(&m->pk, 3 + extra);
    mp_str(m, "v");
    msgpack_pack_uint64(&m->pk, v);
    mp_str(m, "t");
    mp_str(m, t);
    mp_str(m, "id");
    msgpack_pack_uint64(&m->pk, id);
}

/* Decodes m's buffer and expects rc, with e's message containing `has`. */
static void expect_decode(struct mp *m, int rc, const char *has)
{
    struct ud_msg d;
    struct ud_err e = {0};
    int got = ud_msg_decode(m->sb.data, m->sb.size, &d, &e);
    if (got != rc)
        fail_msg("decode gave %s (%s), expected %s", ud_err_name(got), e.msg, ud_err_name(rc));
    if (has)
        assert_msg_has(&e, has);
    if (rc == 0)
        ud_msg_deinit(&d);
    msgpack_sbuffer_destroy(&m->sb);
}

/* A heartbeat by hand, each field replaceable: skip names a key to leave out; bad names a key
 * whose value becomes the string "x". */
static void mp_heartbeat(struct mp *m, const char *skip, const char *bad)
{
    static const char *const keys[] = {"job", "rank", "host", "pid", "step"};
    mp_init(m);
    mp_head(m, skip ? 4 : 5, UD_PROTO_VERSION, "heartbeat", 42);
    for (int i = 0; i < 5; i++) {
        if (skip && strcmp(skip, keys[i]) == 0)
            continue;
        mp_str(m, keys[i]);
        if (bad && strcmp(bad, keys[i]) == 0)
            mp_str(m, "x");
        else if (i == 0)
            mp_str(m, "job-000001");
        else if (i == 2)
            mp_str(m, "h");
        else
            msgpack_pack_int(&m->pk, 1);
    }
}

/* A job message by hand around plan p (packed as given, no checks): va_extra bytes are added
 * to the validation bin, shard_delta shards to (or taken from) the shards array. */
static void mp_job(struct mp *m, const struct ud_plan *p, size_t va_extra, int shard_delta)
{
    mp_init(m);
    mp_head(m, 8, UD_PROTO_VERSION, "job", 5);
    mp_str(m, "job");
    mp_str(m, "job-000001");
    mp_str(m, "name");
    mp_str(m, "n");
    mp_str(m, "args");
    msgpack_pack_array(&m->pk, 0);
    mp_str(m, "session");
    mp_str(m, "/s");
    mp_str(m, "out");
    mp_str(m, "/o");
    mp_str(m, "heartbeat_s");
    msgpack_pack_double(&m->pk, 1.0);
    mp_str(m, "resume");
    msgpack_pack_false(&m->pk);
    mp_str(m, "plan");
    msgpack_pack_map(&m->pk, 9);
    mp_str(m, "samples");
    msgpack_pack_uint64(&m->pk, p->manifest.samples);
    mp_str(m, "classes");
    msgpack_pack_array(&m->pk, (size_t)p->manifest.nclasses);
    for (int c = 0; c < p->manifest.nclasses; c++)
        mp_str(m, p->manifest.classes[c]);
    mp_str(m, "labels_hash");
    msgpack_pack_uint64(&m->pk, p->manifest.labels_hash);
    mp_str(m, "seed");
    msgpack_pack_uint64(&m->pk, p->seed);
    mp_str(m, "batch");
    msgpack_pack_int64(&m->pk, p->batch);
    mp_str(m, "shuffle");
    if (p->shuffle)
        msgpack_pack_true(&m->pk);
    else
        msgpack_pack_false(&m->pk);
    mp_str(m, "world");
    msgpack_pack_int(&m->pk, p->world);
    mp_str(m, "validation");
    msgpack_pack_bin(&m->pk, p->nvalidation * 4 + va_extra);
    for (size_t i = 0; i < p->nvalidation; i++) {
        uint32_t v = p->validation[i];
        unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                              (unsigned char)(v >> 24)};
        msgpack_pack_bin_body(&m->pk, b, 4);
    }
    for (size_t i = 0; i < va_extra; i++)
        msgpack_pack_bin_body(&m->pk, "", 1);
    mp_str(m, "shards");
    int ns = p->world + shard_delta;
    msgpack_pack_array(&m->pk, (size_t)ns);
    for (int r = 0; r < ns; r++) {
        size_t n = r < p->world ? p->shard_len[r] : 0;
        msgpack_pack_bin(&m->pk, n * 4);
        for (size_t i = 0; i < n; i++) {
            uint32_t v = p->shards[r][i];
            unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                                  (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
            msgpack_pack_bin_body(&m->pk, b, 4);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Round trips                                                                                */
/* ------------------------------------------------------------------------------------------ */

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(ud_msg_type_name(UD_MSG_REGISTER), "register");
    assert_string_equal(ud_msg_type_name(UD_MSG_MODEL_ACK), "model_ack");
    assert_string_equal(ud_msg_type_name(UD_MSG_ERROR), "error");
    assert_string_equal(ud_msg_type_name(UD_MSG_NONE), "?");
    assert_string_equal(ud_msg_type_name((enum ud_msg_type)99), "?");
}

static void test_round_trip_every_type(void **state)
{
    (void)state;
    for (int t = UD_MSG_REGISTER; t <= UD_MSG_ERROR; t++) {
        struct ud_msg m, d;
        fill(&m, (enum ud_msg_type)t, 100000);
        void *buf;
        size_t len;
        encode_ok(&m, &buf, &len);
        struct ud_err e = {0};
        if (ud_msg_decode(buf, len, &d, &e) != 0)
            fail_msg("decode %s: %s", ud_msg_type_name((enum ud_msg_type)t), e.msg);
        assert_msg_equal(&m, &d);
        /* Encoding the decoded message gives the same bytes. */
        void *buf2;
        size_t len2;
        encode_ok(&d, &buf2, &len2);
        assert_int_equal(len2, len);
        assert_memory_equal(buf2, buf, len);
        free(buf2);
        free(buf);
        ud_msg_deinit(&m);
        ud_msg_deinit(&d);
        assert_null(d.job);
        assert_int_equal(d.type, UD_MSG_NONE);
    }
}

/* Optional fields: done without msg, progress without metrics (an empty map is sent), a model
 * of 0 bytes; and unknown keys are ignored. */
static void test_optional_and_unknown_keys(void **state)
{
    (void)state;
    struct ud_msg m, d;
    struct ud_err e = {0};
    void *buf;
    size_t len;
    fill(&m, UD_MSG_DONE, 0);
    set(&m.msg, NULL);
    set(&m.status, "cancelled");
    m.code = 0;
    encode_ok(&m, &buf, &len);
    assert_int_equal(ud_msg_decode(buf, len, &d, &e), 0);
    assert_null(d.msg);
    assert_string_equal(d.status, "cancelled");
    free(buf);
    ud_msg_deinit(&d);
    ud_msg_deinit(&m);

    fill(&m, UD_MSG_MODEL, 0);
    encode_ok(&m, &buf, &len);
    assert_int_equal(ud_msg_decode(buf, len, &d, &e), 0);
    assert_int_equal(d.udm_len, 0);
    assert_non_null(d.udm);
    free(buf);
    ud_msg_deinit(&d);
    ud_msg_deinit(&m);

    /* A progress without "metrics" at all, with unknown keys of every kind. */
    struct mp h;
    mp_init(&h);
    mp_head(&h, 10, 1, "progress", 9);
    const char *keys[] = {"job",        "rank", "step", "epoch", "minibatch", "steps_per_epoch",
                          "total_steps"};
    for (int i = 0; i < 7; i++) {
        mp_str(&h, keys[i]);
        if (i == 0)
            mp_str(&h, "job-1");
        else
            msgpack_pack_int(&h.pk, i);
    }
    mp_str(&h, "future_field");
    msgpack_pack_array(&h.pk, 2);
    msgpack_pack_nil(&h.pk);
    msgpack_pack_map(&h.pk, 0);
    msgpack_pack_int(&h.pk, 5); /* a non-string key */
    msgpack_pack_int(&h.pk, 6);
    mp_str(&h, "metricz");
    msgpack_pack_bin(&h.pk, 0);
    assert_int_equal(ud_msg_decode(h.sb.data, h.sb.size, &d, &e), 0);
    assert_int_equal(d.type, UD_MSG_PROGRESS);
    assert_int_equal(d.id, 9);
    assert_int_equal(d.total_steps, 6);
    assert_int_equal(d.nmetrics, 0);
    assert_null(d.metrics);
    ud_msg_deinit(&d);
    msgpack_sbuffer_destroy(&h.sb);

    /* A hand-made plan, packed here from the documented layout, decodes to the same plan. */
    struct ud_plan p;
    make_test_plan(&p, 4);
    mp_job(&h, &p, 0, 0);
    assert_int_equal(ud_msg_decode(h.sb.data, h.sb.size, &d, &e), 0);
    assert_plan_equal(&p, &d.plan);
    ud_msg_deinit(&d);
    msgpack_sbuffer_destroy(&h.sb);
    ud_plan_deinit(&p);
}

static void test_builders(void **state)
{
    (void)state;
    struct ud_msg m = {0};
    char key[100];
    memset(key, 'k', sizeof key);
    key[99] = '\0';
    assert_int_equal(ud_msg_add_metric(&m, key, 1.0), 0);
    assert_int_equal(strlen(m.metrics[0].key), UD_PROTO_MAX_KEY - 1);
    /* Truncation never splits a UTF-8 character: 62 ASCII bytes, then a 2-byte "é". */
    memset(key, 'a', 62);
    memcpy(key + 62, "\xc3\xa9", 3);
    assert_int_equal(ud_msg_add_metric(&m, key, 2.0), 0);
    assert_int_equal(strlen(m.metrics[1].key), 62);
    for (int i = 2; i < UD_PROTO_MAX_METRICS; i++) {
        snprintf(key, sizeof key, "m%d", i);
        assert_int_equal(ud_msg_add_metric(&m, key, i), 0);
    }
    assert_int_equal(ud_msg_add_metric(&m, "one-too-many", 0), UD_ELIMIT);
    for (int i = 0; i < UD_PROTO_MAX_ARGS; i++)
        assert_int_equal(ud_msg_add_arg(&m, "a"), 0);
    assert_int_equal(ud_msg_add_arg(&m, "a"), UD_ELIMIT);
    set(&m.host, "x");
    set(&m.host, NULL);
    assert_null(m.host);
    ud_msg_deinit(&m);
    assert_null(m.metrics);
    assert_int_equal(m.nargs, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Refusals                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Every prefix of every message fails cleanly (ASan in CI checks nothing leaks or overreads:
 * each prefix is copied into a buffer of exactly its size). */
static void test_truncated_everywhere(void **state)
{
    (void)state;
    for (int t = UD_MSG_REGISTER; t <= UD_MSG_ERROR; t++) {
        struct ud_msg m, d;
        fill(&m, (enum ud_msg_type)t, 300);
        void *buf;
        size_t len;
        encode_ok(&m, &buf, &len);
        for (size_t n = 0; n < len; n++) {
            unsigned char *cut = malloc(n ? n : 1);
            assert_non_null(cut);
            memcpy(cut, buf, n);
            struct ud_err e = {0};
            int rc = ud_msg_decode(cut, n, &d, &e);
            if (rc != UD_EFORMAT)
                fail_msg("%s cut at %zu of %zu: %s (%s)", ud_msg_type_name(m.type), n, len,
                         ud_err_name(rc), e.msg);
            assert_null(d.job);
            assert_null(d.udm);
            assert_null(d.plan.shards);
            free(cut);
        }
        free(buf);
        ud_msg_deinit(&m);
    }
}

static void test_version(void **state)
{
    (void)state;
    struct mp h;
    mp_init(&h);
    mp_head(&h, 1, 2, "ack", 3);
    mp_str(&h, "cancel");
    msgpack_pack_false(&h.pk);
    expect_decode(&h, UD_EVERSION, "protocol version 2, this side speaks 1");

    /* ... but the id is kept, so that the refusal can be answered. */
    mp_init(&h);
    mp_head(&h, 1, 2, "ack", 3);
    mp_str(&h, "cancel");
    msgpack_pack_false(&h.pk);
    struct ud_msg d;
    struct ud_err e = {0};
    assert_int_equal(ud_msg_decode(h.sb.data, h.sb.size, &d, &e), UD_EVERSION);
    assert_int_equal(d.id, 3);
    msgpack_sbuffer_destroy(&h.sb);

    /* The version is checked before anything else: a v2 message of an unknown shape. */
    mp_init(&h);
    msgpack_pack_map(&h.pk, 2);
    mp_str(&h, "t");
    msgpack_pack_int(&h.pk, 17);
    mp_str(&h, "v");
    msgpack_pack_uint64(&h.pk, 9);
    expect_decode(&h, UD_EVERSION, "protocol version 9");

    mp_init(&h);
    mp_head(&h, 1, 0, "ack", 3);
    mp_str(&h, "cancel");
    msgpack_pack_false(&h.pk);
    expect_decode(&h, UD_EVERSION, "protocol version 0");

    mp_init(&h);
    msgpack_pack_map(&h.pk, 2);
    mp_str(&h, "t");
    mp_str(&h, "ack");
    mp_str(&h, "id");
    msgpack_pack_int(&h.pk, 1);
    expect_decode(&h, UD_EFORMAT, "missing key \"v\"");

    mp_init(&h);
    msgpack_pack_map(&h.pk, 1);
    mp_str(&h, "v");
    mp_str(&h, "1");
    expect_decode(&h, UD_EFORMAT, "message.v: expected an integer, found a string");
}

static void test_unknown_type_and_shapes(void **state)
{
    (void)state;
    struct mp h;
    struct ud_msg d;
    struct ud_err e = {0};
    mp_init(&h);
    mp_head(&h, 0, 1, "shutdown", 12);
    assert_int_equal(ud_msg_decode(h.sb.data, h.sb.size, &d, &e), UD_EFORMAT);
    assert_msg_has(&e, "unknown message type \"shutdown\"");
    assert_int_equal(d.id, 12); /* kept, so the receiver can answer */
    assert_int_equal(d.type, UD_MSG_NONE);
    msgpack_sbuffer_destroy(&h.sb);

    mp_init(&h);
    msgpack_pack_array(&h.pk, 1);
    msgpack_pack_int(&h.pk, 1);
    expect_decode(&h, UD_EFORMAT, "message: expected a map, found an array");

    mp_init(&h);
    mp_head(&h, 0, 1, "ack", 1);
    msgpack_pack_int(&h.pk, 0); /* a second top-level object */
    expect_decode(&h, UD_EFORMAT, "after the message");

    mp_init(&h);
    mp_head(&h, 0, 1, "ack", 1);
    expect_decode(&h, UD_EFORMAT, "ack: missing key \"cancel\"");

    mp_init(&h);
    mp_head(&h, 0, 1, "ack", 1);
    h.sb.size = 0;
    expect_decode(&h, UD_EFORMAT, "empty");

    /* The id must be an unsigned integer. */
    mp_init(&h);
    msgpack_pack_map(&h.pk, 3);
    mp_str(&h, "v");
    msgpack_pack_int(&h.pk, 1);
    mp_str(&h, "t");
    mp_str(&h, "ack");
    mp_str(&h, "id");
    msgpack_pack_int(&h.pk, -1);
    expect_decode(&h, UD_EFORMAT, "message.id");
}

static void test_wrong_field_types(void **state)
{
    (void)state;
    struct mp h;
    struct ud_msg d;
    struct ud_err e = {0};

    mp_heartbeat(&h, NULL, NULL);
    expect_decode(&h, 0, NULL);
    static const char *const keys[] = {"rank", "pid", "step"};
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "heartbeat.%s: expected an integer, found a string", keys[i]);
        mp_heartbeat(&h, NULL, keys[i]);
        expect_decode(&h, UD_EFORMAT, want);
    }
    mp_heartbeat(&h, "host", NULL);
    assert_int_equal(ud_msg_decode(h.sb.data, h.sb.size, &d, &e), UD_EFORMAT);
    assert_msg_has(&e, "heartbeat: missing key \"host\"");
    assert_int_equal(d.id, 42);
    assert_int_equal(d.type, UD_MSG_HEARTBEAT);
    assert_null(d.job);
    msgpack_sbuffer_destroy(&h.sb);

    /* A key twice. */
    mp_init(&h);
    mp_head(&h, 2, 1, "ack", 1);
    mp_str(&h, "cancel");
    msgpack_pack_false(&h.pk);
    mp_str(&h, "cancel");
    msgpack_pack_true(&h.pk);
    expect_decode(&h, UD_EFORMAT, "\"cancel\" appears twice");

    /* Booleans are booleans, not 0/1. */
    mp_init(&h);
    mp_head(&h, 1, 1, "ack", 1);
    mp_str(&h, "cancel");
    msgpack_pack_int(&h.pk, 1);
    expect_decode(&h, UD_EFORMAT, "ack.cancel: expected a boolean");

    /* Ranges. */
    mp_init(&h);
    mp_head(&h, 2, 1, "error", 1);
    mp_str(&h, "code");
    msgpack_pack_int64(&h.pk, (int64_t)INT32_MAX + 1);
    mp_str(&h, "msg");
    mp_str(&h, "m");
    expect_decode(&h, UD_EFORMAT, "error.code");

    /* Strings: NUL bytes and bad UTF-8, hex digests, statuses. */
    mp_init(&h);
    mp_head(&h, 2, 1, "error", 1);
    mp_str(&h, "code");
    msgpack_pack_int(&h.pk, -4);
    mp_str(&h, "msg");
    msgpack_pack_str_with_body(&h.pk, "a\0b", 3);
    expect_decode(&h, UD_EFORMAT, "error.msg: not valid UTF-8");

    mp_init(&h);
    mp_head(&h, 2, 1, "model_ack", 1);
    mp_str(&h, "version");
    msgpack_pack_int(&h.pk, 1);
    mp_str(&h, "sha256");
    mp_str(&h, "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef");
    expect_decode(&h, UD_EFORMAT, "model_ack.sha256: expected 64 lowercase hex digits");

    struct ud_msg m;
    void *buf;
    size_t len;
    fill(&m, UD_MSG_DONE, 0);
    set(&m.status, "exploded");
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "not a status");
    assert_null(buf);
    ud_msg_deinit(&m);

    /* Metrics: values are numbers. */
    fill(&m, UD_MSG_PROGRESS, 0);
    encode_ok(&m, &buf, &len);
    /* Turn the "loss" value (a float64 after "loss") into nil: find it in the bytes. */
    unsigned char *b = buf;
    size_t at = 0;
    for (size_t i = 0; i + 5 < len; i++)
        if (memcmp(b + i, "\xa4loss\xcb", 6) == 0)
            at = i + 5;
    assert_true(at > 0);
    b[at] = 0xc0;                                  /* nil ... */
    memmove(b + at + 1, b + at + 9, len - at - 9); /* ... without the 8 float bytes */
    assert_int_equal(ud_msg_decode(buf, len - 8, &d, &e), UD_EFORMAT);
    assert_msg_has(&e, "progress.metrics.loss: expected a number, found nil");
    free(buf);
    ud_msg_deinit(&m);

    /* register: rank must be below world. */
    fill(&m, UD_MSG_REGISTER, 0);
    m.rank = 3;
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "rank 3 is not below world 3");
    ud_msg_deinit(&m);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    struct ud_msg m;
    struct ud_err e = {0};
    void *buf;
    size_t len;
    fill(&m, UD_MSG_HEARTBEAT, 0);
    set(&m.host, NULL);
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "\"host\"");
    ud_msg_deinit(&m);

    fill(&m, UD_MSG_JOB, 0);
    m.has_plan = 0;
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "\"plan\"");
    m.has_plan = 1;
    m.heartbeat_s = 0;
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "heartbeat_s");
    m.heartbeat_s = 1;
    m.plan.shards[0][0] = 1000; /* out of range: refused before sending */
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "job.plan: shard 0 index 0 is 1000");
    ud_msg_deinit(&m);

    fill(&m, UD_MSG_MODEL, 10);
    set(&m.sha256, "abc");
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "sha256");
    set(&m.sha256, SHA);
    free(m.udm);
    m.udm = NULL;
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "\"udm\"");
    ud_msg_deinit(&m);

    fill(&m, UD_MSG_ERROR, 0);
    char *big = malloc(UD_PROTO_MAX_STRING + 2);
    memset(big, 'x', UD_PROTO_MAX_STRING + 1);
    big[UD_PROTO_MAX_STRING + 1] = '\0';
    set(&m.msg, big);
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_ELIMIT);
    assert_msg_has(&e, "error.msg");
    big[UD_PROTO_MAX_STRING] = '\0'; /* exactly the limit is fine */
    set(&m.msg, big);
    encode_ok(&m, &buf, &len);
    free(buf);
    free(big);
    ud_msg_deinit(&m);

    m = (struct ud_msg){.type = UD_MSG_NONE};
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    m.type = (enum ud_msg_type)42;
    assert_int_equal(ud_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
}

/* Declared lengths far beyond the bytes present: refused by the structural scan before
 * msgpack-c would allocate the declared element count. */
static void test_forged_lengths(void **state)
{
    (void)state;
    const struct ud_test_bytes cases[] = {
        {"array32 of 2^32-1", "\xdd\xff\xff\xff\xff\x01", 6, "declares 4294967295 elements"},
        {"map32 of 2^28", "\xdf\x10\x00\x00\x00\x01\x01", 7, "declares"},
        {"str32 of 4 GiB", "\xdb\xff\xff\xff\xf0\x61", 6, "only 1 are left"},
        {"bin32 of 4 GiB", "\xc6\xff\xff\xff\xff", 5, "only 0 are left"},
        /* Inside a valid-looking message: {"v":1,"t":"ack","id":1,"x": array32 2^31} */
        {"nested array32",
         "\x84\xa1v\x01\xa1t\xa3"
         "ack\xa2id\x01\xa1x\xdd\x80\x00\x00\x00",
         21, "declares 2147483648 elements"},
        {"reserved byte", "\xc1", 1, "0xc1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ud_msg d;
        struct ud_err e = {0};
        assert_refused(cases[i].what, ud_msg_decode(cases[i].bytes, cases[i].n, &d, &e), UD_EFORMAT,
                       &e, cases[i].has);
    }
    /* Nested deeper than any message needs. */
    unsigned char deep[64];
    memset(deep, 0x91, sizeof deep);
    deep[63] = 0x01;
    struct ud_msg d;
    struct ud_err e = {0};
    assert_int_equal(ud_msg_decode(deep, sizeof deep, &d, &e), UD_EFORMAT);
    assert_msg_has(&e, "nested deeper");
    /* Over the message limit: refused without reading a byte. */
    assert_int_equal(ud_msg_decode(deep, (size_t)UD_PROTO_MAX_MESSAGE + 1, &d, &e), UD_ELIMIT);
}

static void test_limits(void **state)
{
    (void)state;
    struct mp h;
    /* 65 metrics. */
    mp_init(&h);
    mp_head(&h, 6, 1, "model", 1);
    mp_str(&h, "job");
    mp_str(&h, "j");
    mp_str(&h, "rank");
    msgpack_pack_int(&h.pk, 0);
    mp_str(&h, "name");
    mp_str(&h, "n");
    mp_str(&h, "sha256");
    mp_str(&h, SHA);
    mp_str(&h, "udm");
    msgpack_pack_bin_with_body(&h.pk, "abc", 3);
    mp_str(&h, "metrics");
    msgpack_pack_map(&h.pk, UD_PROTO_MAX_METRICS + 1);
    for (int i = 0; i <= UD_PROTO_MAX_METRICS; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        mp_str(&h, k);
        msgpack_pack_double(&h.pk, i);
    }
    expect_decode(&h, UD_ELIMIT, "model.metrics: 65 metrics, the limit is 64");

    /* A metric key of 64 bytes. */
    mp_init(&h);
    mp_head(&h, 8, 1, "progress", 1);
    mp_str(&h, "job");
    mp_str(&h, "j");
    const char *ints[] = {"rank", "step", "epoch", "minibatch", "steps_per_epoch", "total_steps"};
    for (int i = 0; i < 6; i++) {
        mp_str(&h, ints[i]);
        msgpack_pack_int(&h.pk, 0);
    }
    mp_str(&h, "metrics");
    msgpack_pack_map(&h.pk, 1);
    char k[UD_PROTO_MAX_KEY + 1];
    memset(k, 'a', UD_PROTO_MAX_KEY);
    k[UD_PROTO_MAX_KEY] = '\0';
    mp_str(&h, k);
    msgpack_pack_double(&h.pk, 1);
    expect_decode(&h, UD_ELIMIT, "a key of 64 bytes");

    /* A string over UD_PROTO_MAX_STRING. */
    mp_init(&h);
    mp_head(&h, 2, 1, "error", 1);
    mp_str(&h, "code");
    msgpack_pack_int(&h.pk, -1);
    mp_str(&h, "msg");
    char *big = malloc(UD_PROTO_MAX_STRING + 2);
    memset(big, 'x', UD_PROTO_MAX_STRING + 1);
    big[UD_PROTO_MAX_STRING + 1] = '\0';
    mp_str(&h, big);
    free(big);
    expect_decode(&h, UD_ELIMIT, "error.msg: 4097 bytes, the limit is 4096");

    /* 257 args ("job" and "name" come before "args" in the table, so they are present). */
    mp_init(&h);
    mp_head(&h, 2, 1, "job", 1);
    mp_str(&h, "job");
    mp_str(&h, "j");
    mp_str(&h, "name");
    mp_str(&h, "n");
    expect_decode(&h, UD_EFORMAT, "job: missing key \"args\"");
    mp_init(&h);
    mp_head(&h, 3, 1, "job", 1);
    mp_str(&h, "job");
    mp_str(&h, "j");
    mp_str(&h, "name");
    mp_str(&h, "n");
    mp_str(&h, "args");
    msgpack_pack_array(&h.pk, UD_PROTO_MAX_ARGS + 1);
    for (int i = 0; i <= UD_PROTO_MAX_ARGS; i++)
        mp_str(&h, "a");
    expect_decode(&h, UD_ELIMIT, "job.args: 257 arguments, the limit is 256");
}

static void test_plan_refusals(void **state)
{
    (void)state;
    struct mp h;
    struct ud_plan p;
    make_test_plan(&p, 3);

    mp_job(&h, &p, 0, 0);
    expect_decode(&h, 0, NULL);

    mp_job(&h, &p, 5, 0);
    expect_decode(&h, UD_EFORMAT, "job.plan.validation: 85 bytes, not a whole number");
    mp_job(&h, &p, 4, 0); /* one more index: more indices than samples */
    expect_decode(&h, UD_EFORMAT, "21 validation indices, but the dataset has only 120");
    p.manifest.samples++; /* room for it: then index 0 after 69 is out of order */
    mp_job(&h, &p, 4, 0);
    expect_decode(&h, UD_EFORMAT, "validation indices are not ascending (0 after 69");
    p.manifest.samples--;

    mp_job(&h, &p, 0, 1);
    expect_decode(&h, UD_EFORMAT, "job.plan.shards: 4 shards for a world of 3 ranks");
    mp_job(&h, &p, 0, -1);
    expect_decode(&h, UD_EFORMAT, "job.plan.shards: 2 shards");

    /* Bad indices. */
    uint32_t keep = p.shards[1][3];
    p.shards[1][3] = 120; /* == samples: out of range */
    mp_job(&h, &p, 0, 0);
    expect_decode(&h, UD_EFORMAT, "job.plan: shard 1 index 3 is 120");
    p.shards[1][3] = p.shards[0][0];
    mp_job(&h, &p, 0, 0);
    expect_decode(&h, UD_EFORMAT, "appears twice");
    p.shards[1][3] = keep;

    p.shard_len[0]--; /* 30 + 31 + 38: not how 99 samples split */
    mp_job(&h, &p, 0, 0);
    expect_decode(&h, UD_EFORMAT, "job.plan: shard 0 has 30 indices, expected 31");
    p.shard_len[0]++;

    int64_t keep_batch = p.batch;
    p.batch = 2;
    mp_job(&h, &p, 0, 0);
    expect_decode(&h, UD_EFORMAT, "batch 2 is smaller than the world");
    p.batch = keep_batch;

    uint64_t keep_samples = p.manifest.samples;
    p.manifest.samples = (uint64_t)UD_PLAN_MAX_SAMPLES + 1;
    mp_job(&h, &p, 0, 0);
    expect_decode(&h, UD_ELIMIT, "job.plan.samples");
    p.manifest.samples = keep_samples;

    /* A shard bin whose length is not a multiple of 4: the encoded job with a byte patched. */
    mp_job(&h, &p, 0, 0);
    /* Shard 0 is packed as bin8 (c4 LEN) of shard_len[0]*4 bytes; find its header. */
    unsigned char *b = (unsigned char *)h.sb.data;
    size_t n0 = p.shard_len[0] * 4, at = 0;
    for (size_t i = 0; i + 1 < h.sb.size; i++)
        if (b[i] == 0xc4 && b[i + 1] == n0 && i > 10 && b[i - 1] == (0x90 | 3))
            at = i;
    assert_true(at > 0);
    b[at + 1] = (unsigned char)(n0 - 1);
    /* The bytes no longer line up: the stray byte becomes part of the next bin's header.
     * Either way it must fail as a format error, never crash. */
    struct ud_msg d;
    struct ud_err e = {0};
    assert_int_equal(ud_msg_decode(h.sb.data, h.sb.size, &d, &e), UD_EFORMAT);
    msgpack_sbuffer_destroy(&h.sb);

    ud_plan_deinit(&p);

    /* A shard bin of 3 bytes with nothing else wrong (a plan of one rank). */
    struct ud_plan q;
    make_test_plan(&q, 1);
    q.shard_len[0] = 0; /* packed as an empty bin, then fixed up to 3 bytes below */
    mp_job(&h, &q, 0, 0);
    /* The last bytes are the shards array: 91 c4 00. Make it 91 c4 03 'a' 'b' 'c'. */
    b = (unsigned char *)h.sb.data;
    assert_int_equal(b[h.sb.size - 3], 0x91);
    assert_int_equal(b[h.sb.size - 2], 0xc4);
    b[h.sb.size - 1] = 3;
    msgpack_sbuffer_write(&h.sb, "abc", 3);
    expect_decode(&h, UD_EFORMAT, "job.plan.shards[0]: 3 bytes, not a whole number");
    q.shard_len[0] = 100;
    ud_plan_deinit(&q);
}

/* Random corruption of valid messages: decoding must fail cleanly or succeed; never crash. */
static void test_random_corruption(void **state)
{
    (void)state;
    struct ud_rng r;
    ud_rng_seed(&r, 2024, 7);
    int ok = 0, refused = 0;
    for (int t = UD_MSG_REGISTER; t <= UD_MSG_ERROR; t++) {
        struct ud_msg m;
        fill(&m, (enum ud_msg_type)t, 64);
        void *buf;
        size_t len;
        encode_ok(&m, &buf, &len);
        unsigned char *c = malloc(len);
        assert_non_null(c);
        for (int it = 0; it < 400; it++) {
            memcpy(c, buf, len);
            int flips = 1 + (int)ud_rng_below(&r, 4);
            for (int k = 0; k < flips; k++)
                c[ud_rng_below(&r, len)] = (unsigned char)ud_rng_next(&r);
            size_t n = ud_rng_below(&r, 8) == 0 ? ud_rng_below(&r, len + 1) : len;
            struct ud_msg d;
            struct ud_err e = {0};
            int rc = ud_msg_decode(c, n, &d, &e);
            if (rc == 0) {
                ok++;
                /* What decodes re-encodes. */
                void *b2;
                size_t l2;
                if (ud_msg_encode(&d, &b2, &l2, &e) != 0)
                    fail_msg("decoded %s does not re-encode: %s", ud_msg_type_name(d.type), e.msg);
                free(b2);
                ud_msg_deinit(&d);
            } else {
                refused++;
                assert_true(rc == UD_EFORMAT || rc == UD_EVERSION || rc == UD_ELIMIT);
                assert_true(e.msg[0] != '\0');
                assert_null(d.job);
            }
        }
        free(c);
        free(buf);
        ud_msg_deinit(&m);
    }
    assert_true(ok > 0);
    assert_true(refused > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_optional_and_unknown_keys),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_unknown_type_and_shapes),
        cmocka_unit_test(test_wrong_field_types),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_forged_lengths),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_plan_refusals),
        cmocka_unit_test(test_random_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

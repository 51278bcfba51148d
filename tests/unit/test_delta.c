/*  test_delta.c — model deltas and the update message (ud_delta.h): compute/apply round trip,
 *  frozen layers left out, models that differ refused, NaN/infinity/norm checks; the message's
 *  round trip, unknown keys ignored, every truncation refused, forged huge sizes refused before
 *  allocating, wrong types, missing and repeated keys, other versions, bad keys. Hand-made
 *  messages are packed here with msgpack directly, as docs/agent.md describes them.
 */
#include "ud_test.h"

#include <math.h>

#include <msgpack.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_update_msg.h"
#include "updraft/ud_model.h"

/* A tiny network whose first dense layer is frozen: 16 -> 8 (frozen) -> 3. */
static const char *SPEC = "input 1 4 4\nflatten\ndense 8 frozen\nrelu\ndense 3\nsoftmax\n";
#define FROZEN_N  (8 * 16 + 8)
#define UPDATE_N  (3 * 8 + 3)
#define UPDATE_AT FROZEN_N /* the updatable layer's offset in the parameter buffer */

static void test_size_excludes_frozen(void **state)
{
    (void)state;
    ud_model_t *m = ud_test_model(SPEC, 1);
    assert_int_equal(ud_model_param_count(m), FROZEN_N + UPDATE_N);
    assert_int_equal(ud_delta_size(m), UPDATE_N);
    ud_model_destroy(&m);
}

static void test_compute_apply_round_trip(void **state)
{
    (void)state;
    struct ud_err e = {0};
    ud_model_t *base = ud_test_model(SPEC, 1);
    ud_model_t *upd = ud_model_clone(base, &e);
    assert_non_null(upd);
    float *p = ud_model_params(upd);
    size_t np = ud_model_param_count(upd);
    for (size_t i = 0; i < np; i++)
        p[i] += 0.001f * (float)(i % 17) - 0.005f; /* frozen ones too: they must not count */
    float d[UPDATE_N];
    assert_int_equal(ud_delta_compute(base, upd, d, &e), 0);
    const float *b = ud_model_params_const(base);
    for (size_t k = 0; k < UPDATE_N; k++)
        assert_true(d[k] == p[UPDATE_AT + k] - b[UPDATE_AT + k]);

    /* base + delta: the updatable layer becomes the updated one, the frozen stays the base's. */
    ud_model_t *back = ud_model_clone(base, &e);
    assert_int_equal(ud_delta_apply(back, d, UPDATE_N, 1.0f, &e), 0);
    const float *q = ud_model_params_const(back);
    for (size_t k = 0; k < UPDATE_N; k++)
        assert_float_equal(q[UPDATE_AT + k], p[UPDATE_AT + k], 1e-6);
    assert_memory_equal(q, b, FROZEN_N * sizeof(float));

    /* scale: base + 0.5 delta is half way. */
    ud_model_t *half = ud_model_clone(base, &e);
    assert_int_equal(ud_delta_apply(half, d, UPDATE_N, 0.5f, &e), 0);
    for (size_t k = 0; k < UPDATE_N; k++)
        assert_float_equal(ud_model_params_const(half)[UPDATE_AT + k],
                           b[UPDATE_AT + k] + 0.5f * d[k], 1e-7);

    /* wrong length and bad scale: refused, nothing changed */
    assert_int_equal(ud_delta_apply(half, d, UPDATE_N - 1, 1.0f, &e), UD_ESHAPE);
    assert_msg_has(&e, "26 values");
    assert_int_equal(ud_delta_apply(half, d, UPDATE_N, NAN, &e), UD_EINVAL);
    ud_model_destroy(&half);
    ud_model_destroy(&back);
    ud_model_destroy(&upd);
    ud_model_destroy(&base);
}

static void test_compute_refuses_other_shapes(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *has;
    } other[] = {
        {"input 1 4 4\nflatten\ndense 9 frozen\nrelu\ndense 3\nsoftmax\n", "layer 1"},
        {"input 1 4 4\nflatten\ndense 8\nrelu\ndense 3\nsoftmax\n", "updatable"},
        {"input 1 2 8\nflatten\ndense 8 frozen\nrelu\ndense 3\nsoftmax\n", "inputs differ"},
    };
    struct ud_err e = {0};
    ud_model_t *a = ud_test_model(SPEC, 1);
    float out[1024];
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        ud_model_t *b = ud_test_model(other[i].spec, 1);
        assert_int_equal(ud_delta_compute(a, b, out, &e), UD_ESHAPE);
        assert_msg_has(&e, other[i].has);
        ud_model_destroy(&b);
    }
    ud_model_destroy(&a);
}

static void test_check(void **state)
{
    (void)state;
    struct ud_err e = {0};
    float d[10] = {3, 4, 0, 0, 0, 0, 0, 0, 0, 0};
    double norm = 0;
    assert_int_equal(ud_delta_check(d, 10, 0, &norm, &e), 0);
    assert_float_equal(norm, 5.0, 1e-12);
    assert_int_equal(ud_delta_check(d, 10, 5.0, &norm, &e), 0);
    assert_int_equal(ud_delta_check(d, 10, 4.99, &norm, &e), UD_ERANGE);
    assert_msg_has(&e, "norm");
    assert_int_equal(ud_delta_check(d, 10, -1, NULL, &e), 0);
    d[7] = NAN;
    assert_int_equal(ud_delta_check(d, 10, 100, &norm, &e), UD_ENONFINITE);
    assert_msg_has(&e, "value 7 of 10 is NaN");
    d[7] = 0;
    d[2] = -INFINITY;
    assert_int_equal(ud_delta_check(d, 10, 0, &norm, &e), UD_ENONFINITE);
    assert_msg_has(&e, "value 2 of 10 is infinite");
    /* The norm in double: float squares would overflow. */
    float big[2] = {3e30f, 4e30f};
    assert_int_equal(ud_delta_check(big, 2, 0, &norm, &e), 0);
    assert_float_equal(norm / 5e30, 1.0, 1e-6);
}

/* ------------------------------------------------------------------------------------------ */
/* The message                                                                                */
/* ------------------------------------------------------------------------------------------ */

static const float DELTA[5] = {0.5f, -1.25f, 3e-8f, 0.0f, -0.0f};

static struct ud_update_msg sample_msg(void)
{
    struct ud_update_msg m = {.round = 42,
                              .base_version = 4,
                              .samples = 600,
                              .loss = 0.6931471805599453,
                              .accuracy = 0.8125,
                              .delta = DELTA,
                              .n = 5};
    snprintf(m.key, sizeof m.key, "dev7-42-0123456789abcdef");
    return m;
}

static void test_msg_round_trip(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_update_msg m = sample_msg(), out;
    char *buf;
    size_t len;
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), 0);
    float *copy;
    assert_int_equal(ud_update_msg_decode(buf, len, 5, &out, &copy, &e), 0);
    assert_int_equal(out.round, 42);
    assert_int_equal(out.base_version, 4);
    assert_string_equal(out.key, m.key);
    assert_int_equal(out.samples, 600);
    assert_true(out.loss == m.loss);
    assert_true(out.accuracy == m.accuracy);
    assert_int_equal(out.n, 5);
    assert_ptr_equal(out.delta, copy);
    assert_memory_equal(copy, DELTA, sizeof DELTA); /* bitwise, -0.0 included */
    free(copy);
    /* fields only: nothing copied */
    assert_int_equal(ud_update_msg_decode(buf, len, 5, &out, NULL, &e), 0);
    assert_int_equal(out.n, 5);
    assert_null(out.delta);
    assert_string_equal(out.key, m.key);
    /* max_floats below the delta's length: UD_ELIMIT */
    assert_int_equal(ud_update_msg_decode(buf, len, 4, &out, &copy, &e), UD_ELIMIT);
    assert_null(copy);
    free(buf);

    /* an empty delta is a valid message */
    m.n = 0;
    m.delta = NULL;
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), 0);
    assert_int_equal(ud_update_msg_decode(buf, len, 5, &out, &copy, &e), 0);
    assert_int_equal(out.n, 0);
    free(copy);
    free(buf);
}

static void test_msg_encode_refuses(void **state)
{
    (void)state;
    struct ud_err e = {0};
    char *buf;
    size_t len;
    struct ud_update_msg m = sample_msg();
    m.key[0] = '\0';
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "key");
    m = sample_msg();
    m.key[3] = '\n';
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    m = sample_msg();
    m.samples = 0;
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "samples");
    m = sample_msg();
    m.loss = NAN;
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "loss");
    m = sample_msg();
    m.round = -1;
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), UD_EINVAL);
    assert_null(buf);
}

static void test_msg_truncated(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_update_msg m = sample_msg(), out;
    char *buf;
    size_t len;
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), 0);
    for (size_t l = 0; l < len; l++) {
        /* A copy of exactly l bytes, so that ASan sees any read past it. */
        char *cut = malloc(l ? l : 1);
        memcpy(cut, buf, l);
        float *copy = (float *)1;
        int rc = ud_update_msg_decode(cut, l, 1000, &out, &copy, &e);
        if (rc == 0)
            fail_msg("a message cut to %zu of %zu bytes was accepted", l, len);
        assert_null(copy);
        assert_int_equal(out.n, 0);
        free(cut);
    }
    /* trailing bytes are refused too */
    char *more = malloc(len + 1);
    memcpy(more, buf, len);
    more[len] = 0;
    float *copy;
    assert_int_equal(ud_update_msg_decode(more, len + 1, 1000, &out, &copy, &e), UD_EFORMAT);
    free(more);
    free(buf);
}

/* ---- hand-made messages ---- */

struct outbuf {
    char data[4096];
    size_t len;
};
static int out_write(void *user, const char *b, size_t n)
{
    struct outbuf *o = user;
    assert_true(o->len + n <= sizeof o->data);
    memcpy(o->data + o->len, b, n);
    o->len += n;
    return 0;
}
enum { H_V, H_ROUND, H_BASE, H_KEY, H_SAMPLES, H_LOSS, H_ACC, H_DELTA, H_N };
static const char *const HKEYS[H_N] = {"v",       "round", "base_version", "key",
                                       "samples", "loss",  "accuracy",     "delta"};

/* Packs a message field by field: `skip` leaves a key out, `wrong` packs that key's value as
 * a boolean, `extra` adds an unknown key first; -1 for none. */
static void hand_pack(struct outbuf *o, int skip, int wrong, int extra)
{
    msgpack_packer pk;
    o->len = 0;
    msgpack_packer_init(&pk, o, out_write);
    msgpack_pack_map(&pk, (size_t)(H_N - (skip >= 0) + (extra >= 0)));
    if (extra >= 0) {
        pk_str(&pk, "future_field");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_int(&pk, 1);
        pk_str(&pk, "x");
    }
    for (int k = 0; k < H_N; k++) {
        if (k == skip)
            continue;
        pk_str(&pk, HKEYS[k]);
        if (k == wrong) {
            msgpack_pack_true(&pk);
            continue;
        }
        switch (k) {
        case H_V:
            msgpack_pack_int(&pk, 1);
            break;
        case H_ROUND:
            msgpack_pack_int(&pk, 7);
            break;
        case H_BASE:
            msgpack_pack_int(&pk, 3);
            break;
        case H_KEY:
            pk_str(&pk, "k-1");
            break;
        case H_SAMPLES:
            msgpack_pack_int(&pk, 10);
            break;
        case H_LOSS:
            msgpack_pack_float(&pk, 1.5f);
            break;
        case H_ACC:
            msgpack_pack_int(&pk, 1); /* an integer is a number too */
            break;
        case H_DELTA: {
            unsigned char le[8] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}; /* 1.0f, -2.0f */
            msgpack_pack_bin(&pk, 8);
            msgpack_pack_bin_body(&pk, le, 8);
            break;
        }
        }
    }
}

static void test_msg_hand_made(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct outbuf o;
    struct ud_update_msg out;
    float *copy;
    /* as the format describes it, with an unknown key: accepted */
    hand_pack(&o, -1, -1, 1);
    assert_int_equal(ud_update_msg_decode(o.data, o.len, 2, &out, &copy, &e), 0);
    assert_int_equal(out.round, 7);
    assert_string_equal(out.key, "k-1");
    assert_int_equal(out.n, 2);
    assert_true(copy[0] == 1.0f && copy[1] == -2.0f);
    assert_true(out.loss == 1.5 && out.accuracy == 1.0);
    free(copy);
    /* every key missing, every key mistyped: refused naming it */
    for (int k = 0; k < H_N; k++) {
        char want[64];
        hand_pack(&o, k, -1, -1);
        assert_int_equal(ud_update_msg_decode(o.data, o.len, 2, &out, &copy, &e), UD_EFORMAT);
        snprintf(want, sizeof want, "missing key \"%s\"", HKEYS[k]);
        assert_msg_has(&e, want);
        assert_null(copy);
        hand_pack(&o, -1, k, -1);
        assert_int_equal(ud_update_msg_decode(o.data, o.len, 2, &out, &copy, &e), UD_EFORMAT);
        snprintf(want, sizeof want, "update message.%s: expected", HKEYS[k]);
        assert_msg_has(&e, want);
        assert_msg_has(&e, "found a boolean");
        assert_null(copy);
    }
}

/* Builds a message with one field's value replaced by raw msgpack bytes. */
static size_t with_raw(char *dst, const char *key, const unsigned char *raw, size_t rawlen)
{
    struct outbuf o = {.len = 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o, out_write);
    msgpack_pack_map(&pk, H_N);
    for (int k = 0; k < H_N; k++) {
        pk_str(&pk, HKEYS[k]);
        if (strcmp(HKEYS[k], key) == 0) {
            out_write(&o, (const char *)raw, rawlen);
            continue;
        }
        switch (k) {
        case H_KEY:
            pk_str(&pk, "k");
            break;
        case H_LOSS:
        case H_ACC:
            msgpack_pack_double(&pk, 0.5);
            break;
        case H_DELTA:
            msgpack_pack_bin(&pk, 0);
            break;
        default:
            msgpack_pack_int(&pk, 1);
        }
    }
    memcpy(dst, o.data, o.len);
    return o.len;
}

static void expect_refused(const char *key, const unsigned char *raw, size_t rawlen, int code,
                           const char *text)
{
    char buf[4096];
    size_t len = with_raw(buf, key, raw, rawlen);
    struct ud_err e = {0};
    struct ud_update_msg out;
    float *copy = (float *)1;
    int rc = ud_update_msg_decode(buf, len, 1u << 20, &out, &copy, &e);
    if (rc != code)
        fail_msg("%s: expected %s, got %s (%s)", key, ud_err_name(code), ud_err_name(rc), e.msg);
    assert_null(copy);
    if (text)
        assert_msg_has(&e, text);
}

static void test_msg_bad_values(void **state)
{
    (void)state;
    /* v = 2, v = -1 */
    expect_refused("v", (const unsigned char *)"\x02", 1, UD_EVERSION, "version 2");
    expect_refused("v", (const unsigned char *)"\xff", 1, UD_EVERSION, NULL);
    /* samples 0, negative round */
    expect_refused("samples", (const unsigned char *)"\x00", 1, UD_EFORMAT, "samples");
    expect_refused("round", (const unsigned char *)"\xff", 1, UD_EFORMAT, "round");
    /* delta of 6 bytes: not whole floats */
    expect_refused("delta", (const unsigned char *)"\xc4\x06\0\0\0\0\0\0", 8, UD_EFORMAT,
                   "whole number");
    /* keys: empty, a control character, 129 characters */
    expect_refused("key", (const unsigned char *)"\xa0", 1, UD_EFORMAT, "key");
    expect_refused("key", (const unsigned char *)"\xa2\x61\x07", 3, UD_EFORMAT, "key");
    unsigned char long_key[2 + 129];
    long_key[0] = 0xd9;
    long_key[1] = 129;
    memset(long_key + 2, 'a', 129);
    expect_refused("key", long_key, sizeof long_key, UD_EFORMAT, "129 bytes");
    /* loss NaN (float64) */
    unsigned char nan64[9] = {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    expect_refused("loss", nan64, 9, UD_EFORMAT, "not finite");
    /* a delta that is a string */
    expect_refused("delta", (const unsigned char *)"\xa4\0\0\0\0", 5, UD_EFORMAT, "bin");
}

static void test_msg_forged_sizes(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_update_msg out;
    float *copy = (float *)1;
    /* bin32 declaring 2 GiB with 4 bytes behind it: refused by the scan (no allocation) */
    expect_refused("delta", (const unsigned char *)"\xc6\x7f\xff\xff\xf0\0\0\0\0", 9, UD_EFORMAT,
                   "declares 2147483632 bytes");
    /* a map declaring 4 billion entries */
    const unsigned char map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01};
    assert_true(ud_update_msg_decode(map32, sizeof map32, 100, &out, &copy, &e) < 0);
    assert_null(copy);
    /* an array of 4 billion nils as an unknown key's value */
    const unsigned char arr32[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    assert_true(ud_update_msg_decode(arr32, sizeof arr32, 100, &out, &copy, &e) < 0);
    /* a message over what max_floats allows is refused unread */
    static unsigned char big[70000];
    memset(big, 0xc0, sizeof big);
    assert_int_equal(ud_update_msg_decode(big, sizeof big, 10, &out, &copy, &e), UD_ELIMIT);
    /* a well-formed delta of 1000 floats against max_floats 999 */
    float *d = calloc(1000, sizeof *d);
    struct ud_update_msg m = sample_msg();
    m.delta = d;
    m.n = 1000;
    char *buf;
    size_t len;
    assert_int_equal(ud_update_msg_encode(&m, &buf, &len, &e), 0);
    assert_int_equal(ud_update_msg_decode(buf, len, 999, &out, &copy, &e), UD_ELIMIT);
    assert_msg_has(&e, "1000 floats, the limit is 999");
    assert_null(copy);
    /* not a map; a repeated key; a non-string key */
    assert_int_equal(ud_update_msg_decode("\x93\x01\x02\x03", 4, 10, &out, &copy, &e), UD_EFORMAT);
    assert_msg_has(&e, "expected a map");
    assert_int_equal(ud_update_msg_decode("\x82\xa1v\x01\xa1v\x01", 7, 10, &out, &copy, &e),
                     UD_EFORMAT);
    assert_msg_has(&e, "appears twice");
    assert_int_equal(ud_update_msg_decode("\x81\x01\x01", 3, 10, &out, &copy, &e), UD_EFORMAT);
    free(buf);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_excludes_frozen),
        cmocka_unit_test(test_compute_apply_round_trip),
        cmocka_unit_test(test_compute_refuses_other_shapes),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_msg_round_trip),
        cmocka_unit_test(test_msg_encode_refuses),
        cmocka_unit_test(test_msg_truncated),
        cmocka_unit_test(test_msg_hand_made),
        cmocka_unit_test(test_msg_bad_values),
        cmocka_unit_test(test_msg_forged_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

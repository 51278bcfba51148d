/*  test_udm.c — the .udm model file: round trip, deterministic bytes, atomic writes, and every
 *  class of bad file (foreign, future version, truncated, corrupt, hand-made with a valid
 *  checksum but wrong contents) refused with its code and a message that names the problem.
 *
 *  The hand-made files are built here from docs/model-format.md with msgpack directly, so they
 *  check the decoder against the spec rather than against the encoder.
 */
#include "ud_test.h"

#include <dirent.h>
#include <math.h>

#include <msgpack.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"
#include "ud_udm_impl.h"

/* ------------------------------------------------------------------------------------------ */
/* Fixtures                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static const char *const SPEC = "input 1 6 6\n"
                                "conv2d 2 3 pad=1 frozen\n"
                                "relu\n"
                                "maxpool 2\n"
                                "flatten\n"
                                "dropout 0.25\n"
                                "dense 4\n"
                                "softmax\n";

/* A model with every part set. reversed adds the free-form entries in the other order. */
static ud_model_t *make_model_ordered(bool reversed)
{
    ud_model_t *m = ud_test_model(SPEC, 42);
    struct ud_err e = {0};
    const char *labels[] = {"cat", "dog",
                            "\xc3\xa9"
                            "clair",
                            "fish"};
    assert_int_equal(ud_model_set_labels(m, labels, 4, &e), 0);

    struct ud_metadata *md = ud_model_metadata(m);
    assert_int_equal(ud_metadata_set(&md->author, "Ada Lovelace"), 0);
    assert_int_equal(ud_metadata_set(&md->short_description, "A tiny test model."), 0);
    assert_int_equal(ud_metadata_set(&md->license, NULL), 0);
    assert_int_equal(ud_metadata_set(&md->version, "2.1"), 0);
    const char *keys[] = {"zeta", "alpha", "dataset"}, *vals[] = {"last", "first", ""};
    for (int i = 0; i < 3; i++) {
        int k = reversed ? 2 - i : i;
        assert_int_equal(ud_metadata_set_additional(md, keys[k], vals[k]), 0);
    }

    struct ud_input_desc *in = ud_model_input_desc(m);
    in->kind = UD_INPUT_IMAGE;
    in->scale = 1.0f / 255.0f;
    in->offset = -0.5f;

    struct ud_update_defaults *d = ud_model_update_defaults(m);
    d->optimizer = UD_OPT_ADAM;
    d->learning_rate = (struct ud_param_double){0.001, 1e-5, 0.1};
    d->momentum = (struct ud_param_double){0.0, 0.0, 0.99};
    d->weight_decay = (struct ud_param_double){1e-4, 0.0, 1.0};
    d->beta1 = (struct ud_param_double){0.9, 0.0, 0.999};
    d->beta2 = (struct ud_param_double){0.999, 0.0, 0.9999};
    d->eps = (struct ud_param_double){1e-8, 1e-12, 1e-3};
    d->mini_batch_size = (struct ud_param_int){64, 1, 1024};
    d->epochs = (struct ud_param_int){5, 1, 100};
    d->seed = (struct ud_param_int){-7, INT64_MIN, INT64_MAX};
    d->shuffle = 0;
    d->nesterov = 1;

    const char *mk[] = {"train_loss", "test_accuracy"};
    const double mv[] = {0.123, 0.97};
    for (int i = 0; i < 2; i++) {
        int k = reversed ? 1 - i : i;
        assert_int_equal(ud_model_set_metric(m, mk[k], mv[k]), 0);
    }
    return m;
}

static ud_model_t *make_model(void)
{
    return make_model_ordered(false);
}

static char *encode(const ud_model_t *m, size_t *len)
{
    char *buf = NULL;
    struct ud_err e = {0};
    int rc = ud_udm_encode(m, &buf, len, &e);
    if (rc != 0)
        fail_msg("encode: %s (%s)", e.msg, ud_err_name(rc));
    assert_non_null(buf);
    return buf;
}

/* Fails unless m encodes to exactly the len bytes at buf. */
static void assert_encodes_to(const ud_model_t *m, const char *buf, size_t len)
{
    size_t len2;
    char *buf2 = encode(m, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    free(buf2);
}

/* Decodes from an exactly sized heap copy (so valgrind/ASan see any over-read) and expects
 * refusal; returns the code. */
static int decode_fails(const void *buf, size_t len, struct ud_err *e)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    ud_err_clear(e);
    ud_model_t *m = ud_udm_decode(copy, len, e);
    free(copy);
    if (m) {
        ud_model_destroy(&m);
        fail_msg("decode accepted a bad buffer of %zu bytes", len);
    }
    assert_true(e->code < 0);
    assert_true(e->msg[0] != '\0');
    return e->code;
}

static void assert_pd_equal(struct ud_param_double a, struct ud_param_double b)
{
    assert_true(a.value == b.value && a.min == b.min && a.max == b.max);
}

static void assert_pi_equal(struct ud_param_int a, struct ud_param_int b)
{
    assert_true(a.value == b.value && a.min == b.min && a.max == b.max);
}

static void assert_models_equal(const ud_model_t *a, const ud_model_t *b)
{
    const struct ud_arch *x = ud_model_arch(a), *y = ud_model_arch(b);
    assert_int_equal(x->input.c, y->input.c);
    assert_int_equal(x->input.h, y->input.h);
    assert_int_equal(x->input.w, y->input.w);
    assert_int_equal(x->nlayers, y->nlayers);
    for (int i = 0; i < x->nlayers; i++) {
        const struct ud_layer_spec *p = &x->layer[i], *q = &y->layer[i];
        assert_int_equal(p->kind, q->kind);
        assert_int_equal(p->units, q->units);
        assert_int_equal(p->filters, q->filters);
        assert_int_equal(p->kernel, q->kernel);
        assert_int_equal(p->stride, q->stride);
        assert_int_equal(p->pad, q->pad);
        assert_int_equal(p->pool, q->pool);
        assert_true(p->rate == q->rate);
        assert_int_equal(ud_model_layer_updatable(a, i), ud_model_layer_updatable(b, i));
    }

    assert_int_equal(ud_model_num_classes(a), ud_model_num_classes(b));
    for (int i = 0; i < ud_model_num_classes(a); i++)
        assert_string_equal(ud_model_label(a, i), ud_model_label(b, i));

    const struct ud_metadata *ma = ud_model_metadata_const(a), *mb = ud_model_metadata_const(b);
    assert_str_eq_or_null(ma->author, mb->author);
    assert_str_eq_or_null(ma->short_description, mb->short_description);
    assert_str_eq_or_null(ma->license, mb->license);
    assert_str_eq_or_null(ma->version, mb->version);
    assert_int_equal(ma->nadditional, mb->nadditional);
    for (size_t i = 0; i < ma->nadditional; i++) {
        size_t j = 0;
        while (j < mb->nadditional && strcmp(ma->additional[i].key, mb->additional[j].key))
            j++;
        assert_true(j < mb->nadditional);
        assert_string_equal(ma->additional[i].value, mb->additional[j].value);
    }

    const struct ud_input_desc *ia = ud_model_input_desc_const(a),
                               *ib = ud_model_input_desc_const(b);
    assert_int_equal(ia->kind, ib->kind);
    assert_true(ia->scale == ib->scale && ia->offset == ib->offset);

    const struct ud_update_defaults *da = ud_model_update_defaults_const(a),
                                    *db = ud_model_update_defaults_const(b);
    assert_int_equal(da->optimizer, db->optimizer);
    assert_pd_equal(da->learning_rate, db->learning_rate);
    assert_pd_equal(da->momentum, db->momentum);
    assert_pd_equal(da->weight_decay, db->weight_decay);
    assert_pd_equal(da->beta1, db->beta1);
    assert_pd_equal(da->beta2, db->beta2);
    assert_pd_equal(da->eps, db->eps);
    assert_pi_equal(da->mini_batch_size, db->mini_batch_size);
    assert_pi_equal(da->epochs, db->epochs);
    assert_pi_equal(da->seed, db->seed);
    assert_int_equal(da->shuffle, db->shuffle);
    assert_int_equal(da->nesterov, db->nesterov);

    assert_int_equal(ud_model_metric_count(a), ud_model_metric_count(b));
    for (size_t i = 0; i < ud_model_metric_count(a); i++) {
        const char *key;
        double va, vb;
        assert_int_equal(ud_model_metric_at(a, i, &key, &va), 0);
        assert_int_equal(ud_model_metric_get(b, key, &vb), 0);
        assert_true(va == vb);
    }

    assert_same_params(a, b);
}

/* Entries of the scratch directory whose name contains ".tmp.". */
static int count_temp_files(void)
{
    DIR *d = opendir(ud_test_scratch());
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (strstr(de->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Round trip and determinism                                                                 */
/* ------------------------------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
    (void)state;
    ud_model_t *m = make_model();
    size_t len;
    char *buf = encode(m, &len);

    struct ud_err e = {0};
    ud_model_t *back = ud_udm_decode(buf, len, &e);
    if (!back)
        fail_msg("decode: %s", e.msg);
    assert_models_equal(m, back);
    assert_false(ud_model_layer_updatable(back, 0)); /* conv2d ... frozen */
    assert_true(ud_model_layer_updatable(back, 5));  /* dense 4 */
    assert_null(ud_model_metadata_const(back)->license);
    double v;
    assert_int_equal(ud_model_metric_get(back, "train_loss", &v), 0);
    assert_true(v == 0.123);

    /* Decoding then encoding reproduces the bytes. */
    assert_encodes_to(back, buf, len);

    free(buf);
    ud_model_destroy(&back);
    ud_model_destroy(&m);
}

static void test_roundtrip_defaults_of_new_model(void **state)
{
    (void)state;
    struct ud_err e = {0};
    ud_model_t *m = ud_test_preset("mlp", (struct ud_shape){0}, 10, 7);
    size_t len;
    char *buf = encode(m, &len);
    assert_true(len > ud_model_param_count(m) * 4);
    ud_model_t *back = ud_udm_decode(buf, len, &e);
    if (!back)
        fail_msg("decode: %s", e.msg);
    assert_models_equal(m, back);
    free(buf);
    ud_model_destroy(&back);
    ud_model_destroy(&m);
}

static void test_deterministic(void **state)
{
    (void)state;
    ud_model_t *m = make_model();
    size_t l1;
    char *b1 = encode(m, &l1);
    assert_encodes_to(m, b1, l1);

    /* The same content added in another order encodes to the same bytes. */
    ud_model_t *n = make_model_ordered(true);
    assert_string_equal(ud_model_metadata_const(n)->additional[0].key, "dataset");
    assert_encodes_to(n, b1, l1);

    /* A one-ulp change of one parameter changes the bytes. */
    ud_model_params(n)[3] = nextafterf(ud_model_params(n)[3], 1e9f);
    size_t l3;
    char *b3 = encode(n, &l3);
    assert_int_equal(l1, l3);
    assert_true(memcmp(b1, b3, l1) != 0);

    free(b1);
    free(b3);
    ud_model_destroy(&n);
    ud_model_destroy(&m);
}

static void test_layout_starts_with_magic_and_version(void **state)
{
    (void)state;
    ud_model_t *m = make_model();
    size_t len;
    unsigned char *buf = (unsigned char *)encode(m, &len);
    /* fixarray 4, fixstr "UDM1", positive fixint 1, then the body as bin 16 */
    static const unsigned char head[] = {0x94, 0xa4, 'U', 'D', 'M', '1', 0x01, 0xc5};
    assert_memory_equal(buf, head, sizeof head);
    size_t body = ((size_t)buf[8] << 8) | buf[9];
    assert_int_equal(len, 10 + body + 34);
    assert_int_equal(buf[len - 34], 0xc4);
    assert_int_equal(buf[len - 33], 32);
    free(buf);
    ud_model_destroy(&m);
}

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_write_read_overwrite(void **state)
{
    (void)state;
    struct ud_err e = {0};
    const char *path = ud_test_path("model.udm");
    ud_model_t *m = make_model();
    assert_int_equal(ud_udm_write(m, path, &e), 0);
    assert_int_equal(count_temp_files(), 0);

    /* The file holds exactly the encoding. */
    char *data;
    size_t len, elen;
    assert_int_equal(ud_file_read(path, UD_UDM_MAX_BYTES, &data, &len, &e), 0);
    char *enc = encode(m, &elen);
    assert_int_equal(len, elen);
    assert_memory_equal(data, enc, len);
    assert_int_equal(data[len], '\0');
    free(data);
    free(enc);

    ud_model_t *back = ud_udm_read(path, &e);
    if (!back)
        fail_msg("read: %s", e.msg);
    assert_models_equal(m, back);
    ud_model_destroy(&back);

    /* Overwrite with a different model: the reader sees the new one, no temp file remains. */
    assert_int_equal(ud_model_set_metric(m, "test_accuracy", 0.5), 0);
    ud_model_params(m)[0] = 1.5f;
    assert_int_equal(ud_udm_write(m, path, &e), 0);
    assert_int_equal(count_temp_files(), 0);
    back = ud_udm_read(path, &e);
    assert_non_null(back);
    double v;
    assert_int_equal(ud_model_metric_get(back, "test_accuracy", &v), 0);
    assert_true(v == 0.5);
    assert_true(ud_model_params(back)[0] == 1.5f);
    assert_models_equal(m, back);
    ud_model_destroy(&back);
    ud_model_destroy(&m);
}

static void test_write_errors(void **state)
{
    (void)state;
    struct ud_err e = {0};
    ud_model_t *m = make_model();
    const char *path = ud_test_path("no-such-dir/model.udm");
    assert_int_equal(ud_udm_write(m, path, &e), UD_EIO);
    assert_msg_has(&e, path);
    assert_msg_has(&e, "No such file");
    assert_int_equal(count_temp_files(), 0);

    /* Renaming onto a directory fails after the temp file exists: it must be removed. */
    const char *dir = ud_test_path("a-directory");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(ud_file_write_atomic(dir, "x", 1, &e), UD_EIO);
    assert_msg_has(&e, dir);
    assert_msg_has(&e, "rename");
    assert_int_equal(count_temp_files(), 0);
    ud_model_destroy(&m);
}

static void test_read_file_errors(void **state)
{
    (void)state;
    struct ud_err e = {0};
    char *data = (char *)1;
    size_t len = 99;

    const char *missing = ud_test_path("missing.udm");
    assert_int_equal(ud_file_read(missing, 100, &data, &len, &e), UD_ENOTFOUND);
    assert_null(data);
    assert_msg_has(&e, missing);
    assert_null(ud_udm_read(missing, &e));
    assert_int_equal(e.code, UD_ENOTFOUND);
    assert_msg_has(&e, missing);

    char blob[100];
    memset(blob, 'x', sizeof blob);
    const char *p = ud_test_write("hundred.bin", blob, sizeof blob);
    assert_int_equal(ud_file_read(p, 99, &data, &len, &e), UD_ELIMIT);
    assert_msg_has(&e, "100 bytes");
    assert_msg_has(&e, "limit is 99");
    assert_int_equal(ud_file_read(p, 100, &data, &len, &e), 0);
    assert_int_equal(len, 100);
    assert_int_equal(data[100], '\0');
    free(data);

    p = ud_test_write("empty.bin", "", 0);
    assert_int_equal(ud_file_read(p, 100, &data, &len, &e), 0);
    assert_int_equal(len, 0);
    assert_int_equal(data[0], '\0');
    free(data);

    assert_int_equal(ud_file_read(ud_test_scratch(), 100, &data, &len, &e), UD_EIO);
    assert_msg_has(&e, "directory");
}

/* ------------------------------------------------------------------------------------------ */
/* Foreign, future, truncated, corrupt                                                        */
/* ------------------------------------------------------------------------------------------ */

static void test_foreign(void **state)
{
    (void)state;
    struct ud_err e;
    static const unsigned char png[] = {0x89, 'P', 'N', 'G',  '\r', '\n', 0x1a, '\n',
                                        0,    0,   0,   0x0d, 'I',  'H',  'D',  'R'};
    static const char text[] = "hello, this is a text file\n";
    static const char json[] = "{\"model\": \"UDM1\"}";
    /* msgpack, but another magic: ["UDM2", 1] and [1, "UDM1"] */
    static const unsigned char other[] = {0x92, 0xa4, 'U', 'D', 'M', '2', 0x01};
    static const unsigned char swapped[] = {0x92, 0x01, 0xa4, 'U', 'D', 'M', '1'};

    assert_int_equal(decode_fails("", 0, &e), UD_EFOREIGN);
    assert_msg_has(&e, "empty");
    assert_int_equal(decode_fails(png, sizeof png, &e), UD_EFOREIGN);
    assert_msg_has(&e, "not an updraft model");
    assert_msg_has(&e, "89 50 4e 47");
    assert_int_equal(decode_fails(text, strlen(text), &e), UD_EFOREIGN);
    assert_int_equal(decode_fails(json, strlen(json), &e), UD_EFOREIGN);
    assert_int_equal(decode_fails(other, sizeof other, &e), UD_EFOREIGN);
    assert_int_equal(decode_fails(swapped, sizeof swapped, &e), UD_EFOREIGN);

    /* Through a file: the message starts with the path. */
    const char *p = ud_test_write("picture.png", png, sizeof png);
    assert_null(ud_udm_read(p, &e));
    assert_int_equal(e.code, UD_EFOREIGN);
    assert_true(strncmp(e.msg, p, strlen(p)) == 0);
    p = ud_test_write("empty.udm", "", 0);
    assert_null(ud_udm_read(p, &e));
    assert_int_equal(e.code, UD_EFOREIGN);
    assert_true(strncmp(e.msg, p, strlen(p)) == 0);
}

static void test_future_version(void **state)
{
    (void)state;
    ud_model_t *m = make_model();
    struct ud_err e = {0};
    const uint64_t versions[] = {2, 300, 70000, UINT64_MAX};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        char *buf;
        size_t len;
        assert_int_equal(ud__udm_encode_version(m, versions[i], &buf, &len, &e), 0);
        assert_int_equal(decode_fails(buf, len, &e), UD_EVERSION);
        char want[64];
        snprintf(want, sizeof want, "format version %llu, this build reads 1",
                 (unsigned long long)versions[i]);
        assert_msg_has(&e, want);
        assert_msg_has(&e, "written by a newer updraft");
        assert_msg_has(&e, "upgrade updraft");
        /* Even a truncated future file says "upgrade", not "truncated". */
        assert_int_equal(decode_fails(buf, 16, &e), UD_EVERSION);
        if (i == 0) {
            const char *p = ud_test_write("future.udm", buf, len);
            assert_null(ud_udm_read(p, &e));
            assert_int_equal(e.code, UD_EVERSION);
            assert_true(strncmp(e.msg, p, strlen(p)) == 0);
        }
        free(buf);
    }
    char *buf;
    size_t len;
    assert_int_equal(ud__udm_encode_version(m, 0, &buf, &len, &e), 0);
    assert_int_equal(decode_fails(buf, len, &e), UD_EVERSION);
    assert_msg_has(&e, "version 0");
    free(buf);
    ud_model_destroy(&m);
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    ud_model_t *m = make_model();
    size_t len;
    char *buf = encode(m, &len);
    struct ud_err e;
    for (size_t cut = 1; cut < len; cut++) {
        int rc = decode_fails(buf, cut, &e);
        if (rc != UD_ETRUNCATED)
            fail_msg("cut at %zu of %zu: %s (%s)", cut, len, ud_err_name(rc), e.msg);
        assert_msg_has(&e, "truncated");
    }
    /* Through a file: the message names the path. */
    const char *p = ud_test_write("half.udm", buf, len / 2);
    assert_null(ud_udm_read(p, &e));
    assert_int_equal(e.code, UD_ETRUNCATED);
    assert_true(strncmp(e.msg, p, strlen(p)) == 0);
    /* Data after the checksum is not silently ignored. */
    char *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(decode_fails(longer, len + 1, &e), UD_EFORMAT);
    assert_msg_has(&e, "trailing");
    free(longer);
    free(buf);
    ud_model_destroy(&m);
}

static void test_bit_flips_everywhere(void **state)
{
    (void)state;
    ud_model_t *m = make_model();
    size_t len;
    unsigned char *buf = (unsigned char *)encode(m, &len);
    size_t body_start = 10; /* 94 a4 U D M 1 01 c5 hi lo */
    size_t sum_head = len - 34;
    struct ud_err e;
    int checksum_hits = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[pos] ^= (unsigned char)(1u << bit);
            int rc = decode_fails(buf, len, &e);
            buf[pos] ^= (unsigned char)(1u << bit);
            bool covered = pos >= body_start && (pos < sum_head || pos >= sum_head + 2);
            if (covered && rc != UD_ECHECKSUM)
                fail_msg("flip %zu.%d: %s (%s)", pos, bit, ud_err_name(rc), e.msg);
            if (covered) {
                assert_msg_has(&e, "checksum mismatch");
                checksum_hits++;
            }
        }
    }
    assert_true(checksum_hits > 8 * 100);
    /* Untouched, it still decodes. */
    ud_model_t *back = ud_udm_decode(buf, len, &e);
    assert_non_null(back);
    ud_model_destroy(&back);

    /* Through a file. */
    buf[len / 2] ^= 0x10;
    const char *p = ud_test_write("flipped.udm", buf, len);
    assert_null(ud_udm_read(p, &e));
    assert_int_equal(e.code, UD_ECHECKSUM);
    assert_true(strncmp(e.msg, p, strlen(p)) == 0);
    free(buf);
    ud_model_destroy(&m);
}

/* ------------------------------------------------------------------------------------------ */
/* Hand-made files: valid checksum, contents built here from the spec                         */
/* ------------------------------------------------------------------------------------------ */

/* input (4,1,1) tabular; dense 3; relu; dense 2 frozen; softmax: 4*3+3 + 3*2+2 = 23 params. */
#define HAND_PARAMS 23

struct hand {
    int param_delta;        /* floats more or fewer than the architecture implies */
    const char *kind1;      /* layers[1].kind */
    int nlabels;            /* labels written */
    const char *label1;     /* labels[1] */
    double lr_value;        /* update_defaults.learning_rate.value (range [0, 1]) */
    float param0;           /* params[0] */
    bool author_int;        /* metadata.author as an integer */
    bool extra_key;         /* an unknown top-level key */
    bool no_metrics;        /* leave "metrics" out */
    bool dup_metric;        /* "loss" twice */
    int units2;             /* layers[2].units */
    const char *input_kind; /* input.kind */
    const char *optimizer;  /* update_defaults.optimizer */
};

static struct hand hand_default(void)
{
    return (struct hand){.kind1 = "relu",
                         .nlabels = 2,
                         .label1 = "yes",
                         .lr_value = 0.01,
                         .param0 = 0.5f,
                         .units2 = 2,
                         .input_kind = "tabular",
                         .optimizer = "sgd"};
}

static void pk_pd(msgpack_packer *pk, const char *k, double v, double lo, double hi)
{
    pk_str(pk, k);
    msgpack_pack_map(pk, 3);
    pk_str(pk, "value");
    msgpack_pack_double(pk, v);
    pk_str(pk, "min");
    msgpack_pack_double(pk, lo);
    pk_str(pk, "max");
    msgpack_pack_double(pk, hi);
}

static void pk_pi(msgpack_packer *pk, const char *k, int64_t v, int64_t lo, int64_t hi)
{
    pk_str(pk, k);
    msgpack_pack_map(pk, 3);
    pk_str(pk, "value");
    msgpack_pack_int64(pk, v);
    pk_str(pk, "min");
    msgpack_pack_int64(pk, lo);
    pk_str(pk, "max");
    msgpack_pack_int64(pk, hi);
}

/* "metadata": every entry, author an integer when the hand says so. */
static void hand_metadata(msgpack_packer *pk, const struct hand *h)
{
    pk_str(pk, "metadata");
    msgpack_pack_map(pk, 5);
    pk_str(pk, "author");
    if (h->author_int)
        msgpack_pack_int(pk, 7);
    else
        pk_str(pk, "hand");
    pk_str(pk, "short_description");
    pk_str(pk, "made by test_udm");
    pk_str(pk, "license");
    msgpack_pack_nil(pk);
    pk_str(pk, "version");
    msgpack_pack_nil(pk);
    pk_str(pk, "additional");
    msgpack_pack_map(pk, 1);
    pk_str(pk, "origin");
    pk_str(pk, "spec");
}

/* "input": a 4x1x1 vector of the hand's kind. */
static void hand_input(msgpack_packer *pk, const struct hand *h)
{
    pk_str(pk, "input");
    msgpack_pack_map(pk, 4);
    pk_str(pk, "shape");
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, 4);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 1);
    pk_str(pk, "kind");
    pk_str(pk, h->input_kind);
    pk_str(pk, "scale");
    msgpack_pack_float(pk, 1.0f);
    pk_str(pk, "offset");
    msgpack_pack_float(pk, 0.0f);
}

/* "labels" and "layers": dense 3, the hand's activation, dense (frozen), softmax. */
static void hand_layers(msgpack_packer *pk, const struct hand *h)
{
    pk_str(pk, "labels");
    msgpack_pack_array(pk, (size_t)h->nlabels);
    for (int i = 0; i < h->nlabels; i++) {
        char l[16];
        snprintf(l, sizeof l, "c%d", i);
        pk_str(pk, i == 0 ? "no" : i == 1 ? h->label1 : l);
    }

    pk_str(pk, "layers");
    msgpack_pack_array(pk, 4);
    msgpack_pack_map(pk, 3);
    pk_str(pk, "kind");
    pk_str(pk, "dense");
    pk_str(pk, "units");
    msgpack_pack_int(pk, 3);
    pk_str(pk, "updatable");
    msgpack_pack_true(pk);
    msgpack_pack_map(pk, 1);
    pk_str(pk, "kind");
    pk_str(pk, h->kind1);
    msgpack_pack_map(pk, 3);
    pk_str(pk, "kind");
    pk_str(pk, "dense");
    pk_str(pk, "units");
    msgpack_pack_int(pk, h->units2);
    pk_str(pk, "updatable");
    msgpack_pack_false(pk);
    msgpack_pack_map(pk, 1);
    pk_str(pk, "kind");
    pk_str(pk, "softmax");
}

/* "update_defaults": every optimizer parameter with its range. */
static void hand_update_defaults(msgpack_packer *pk, const struct hand *h)
{
    pk_str(pk, "update_defaults");
    msgpack_pack_map(pk, 12);
    pk_str(pk, "optimizer");
    pk_str(pk, h->optimizer);
    pk_pd(pk, "learning_rate", h->lr_value, 0.0, 1.0);
    pk_pd(pk, "momentum", 0.9, 0.0, 1.0);
    pk_pd(pk, "weight_decay", 0.0, 0.0, 1.0);
    pk_pd(pk, "beta1", 0.9, 0.0, 1.0);
    pk_pd(pk, "beta2", 0.999, 0.0, 1.0);
    pk_pd(pk, "eps", 1e-8, 0.0, 1.0);
    pk_pi(pk, "mini_batch_size", 16, 1, 256);
    pk_pi(pk, "epochs", 2, 1, 10);
    pk_pi(pk, "seed", 1234, 0, INT64_MAX);
    pk_str(pk, "shuffle");
    msgpack_pack_true(pk);
    pk_str(pk, "nesterov");
    msgpack_pack_false(pk);
}

/* "params": HAND_PARAMS + param_delta floats, f32 little-endian. */
static void hand_params(msgpack_packer *pk, const struct hand *h)
{
    /* f32 little-endian, written byte by byte */
    int np = HAND_PARAMS + h->param_delta;
    pk_str(pk, "params");
    msgpack_pack_bin(pk, (size_t)np * 4);
    for (int i = 0; i < np; i++) {
        float f = i == 0 ? h->param0 : (float)i * 0.25f - 2.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        msgpack_pack_bin_body(pk, b, 4);
    }
}

/* The body in canonical form (docs/model-format.md), then wrapped with a valid checksum. */
static char *hand_file(const struct hand *h, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    msgpack_pack_map(&pk, 7 + (h->extra_key ? 1 : 0) - (h->no_metrics ? 1 : 0));
    hand_metadata(&pk, h);
    hand_input(&pk, h);
    hand_layers(&pk, h);
    hand_update_defaults(&pk, h);
    hand_params(&pk, h);
    if (!h->no_metrics) {
        pk_str(&pk, "metrics");
        msgpack_pack_map(&pk, h->dup_metric ? 2 : 1);
        pk_str(&pk, "loss");
        msgpack_pack_double(&pk, 0.25);
        if (h->dup_metric) {
            pk_str(&pk, "loss");
            msgpack_pack_double(&pk, 0.5);
        }
    }
    if (h->extra_key) {
        pk_str(&pk, "colour");
        pk_str(&pk, "blue");
    }

    char *buf;
    struct ud_err e = {0};
    assert_int_equal(ud__udm_wrap(sb.data, sb.size, 1, &buf, len, &e), 0);
    msgpack_sbuffer_destroy(&sb);
    return buf;
}

static int hand_fails(const struct hand *h, struct ud_err *e)
{
    size_t len;
    char *buf = hand_file(h, &len);
    int rc = decode_fails(buf, len, e);
    free(buf);
    return rc;
}

static void test_handmade_valid_is_canonical(void **state)
{
    (void)state;
    struct hand h = hand_default();
    size_t len;
    char *buf = hand_file(&h, &len);
    struct ud_err e = {0};
    ud_model_t *m = ud_udm_decode(buf, len, &e);
    if (!m)
        fail_msg("hand-made file refused: %s", e.msg);
    assert_int_equal(ud_model_param_count(m), HAND_PARAMS);
    assert_int_equal(ud_model_num_classes(m), 2);
    assert_string_equal(ud_model_label(m, 1), "yes");
    assert_true(ud_model_params(m)[0] == 0.5f);
    assert_true(ud_model_params(m)[22] == 22 * 0.25f - 2.0f);
    assert_true(ud_model_layer_updatable(m, 0));
    assert_false(ud_model_layer_updatable(m, 2));
    assert_int_equal(ud_model_input_desc_const(m)->kind, UD_INPUT_TABULAR);
    assert_true(ud_model_update_defaults_const(m)->momentum.value == 0.9);
    assert_int_equal(ud_model_update_defaults_const(m)->seed.value, 1234);
    assert_string_equal(ud_model_metadata_const(m)->additional[0].value, "spec");
    double v;
    assert_int_equal(ud_model_metric_get(m, "loss", &v), 0);
    assert_true(v == 0.25);

    /* The spec's canonical form is what the encoder writes, byte for byte. */
    assert_encodes_to(m, buf, len);
    free(buf);
    ud_model_destroy(&m);
}

/* The hand-made file h (what names the change) is refused with code and a message that holds
 * each of words (NULL-terminated). */
static void hand_refused(const char *what, struct hand h, int code, const char *const *words)
{
    struct ud_err e;
    int rc = hand_fails(&h, &e);
    if (rc != code)
        fail_msg("%s: %s (%s), expected %s", what, ud_err_name(rc), e.msg, ud_err_name(code));
    for (; *words; words++)
        if (!strstr(e.msg, *words))
            fail_msg("%s: message \"%s\" lacks \"%s\"", what, e.msg, *words);
}

/* hand_default() with field = value, refused with code and a message holding the words. */
#define HAND_REFUSED(field, value, code, ...)                                                      \
    do {                                                                                           \
        struct hand h_ = hand_default();                                                           \
        h_.field = (value);                                                                        \
        hand_refused(#field " = " #value, h_, code, (const char *const[]){__VA_ARGS__, NULL});     \
    } while (0)

static void test_handmade_wrong_contents(void **state)
{
    (void)state;
    HAND_REFUSED(param_delta, -1, UD_ESHAPE, "params", "22 floats", "implies 23");
    HAND_REFUSED(param_delta, 1, UD_ESHAPE, "24 floats");
    HAND_REFUSED(kind1, "swish", UD_EFORMAT, "layers[1].kind", "swish");
    HAND_REFUSED(input_kind, "audio", UD_EFORMAT, "input.kind", "audio", "image, tabular");
    HAND_REFUSED(optimizer, "rmsprop", UD_EFORMAT, "update_defaults.optimizer", "rmsprop",
                 "sgd, adam");
    HAND_REFUSED(nlabels, 3, UD_ESHAPE, "labels", "3 labels for the 2 classes");
    HAND_REFUSED(nlabels, UD_MAX_CLASSES + 1, UD_EFORMAT,
                 "labels: 4097 entries, the limit is 4096");
    HAND_REFUSED(label1, "no", UD_EFORMAT, "labels[1]", "repeats");
    HAND_REFUSED(label1, "bad\xff", UD_EFORMAT, "labels[1]", "UTF-8");
    HAND_REFUSED(lr_value, 2.0, UD_EFORMAT, "update_defaults.learning_rate", "range");
    HAND_REFUSED(param0, NAN, UD_ENONFINITE, "params[0]");
    HAND_REFUSED(author_int, true, UD_EFORMAT,
                 "metadata.author: expected a string or nil, found an integer");
    HAND_REFUSED(extra_key, true, UD_EFORMAT, "unknown key \"colour\"");
    HAND_REFUSED(no_metrics, true, UD_EFORMAT, "missing key \"metrics\"");
    HAND_REFUSED(dup_metric, true, UD_EFORMAT, "metrics", "twice");
    /* The architecture is checked by ud_arch_check; its complaint comes through. */
    HAND_REFUSED(units2, 1, UD_ESHAPE, "layers");          /* one class */
    HAND_REFUSED(kind1, "softmax", UD_EFORMAT, "softmax"); /* softmax not last */
}

/* Bodies no writer produces: the scanner must refuse them before msgpack allocates. */
static void test_hostile_bodies(void **state)
{
    (void)state;
    struct ud_err e;
    char *buf;
    size_t len;
    const struct ud_test_bytes cases[] = {
        {"array32 of 4 billion", "\xdd\xff\xff\xff\xff\x00", 6, "declares 4294967295"},
        {"map32 of 4 billion", "\xdf\xff\xff\xff\xff\x00\x00", 7, "declares"},
        {"str32 of 4 GiB", "\xdb\xff\xff\xff\xf0", 5, "only 0 are left"},
        {"reserved byte", "\xc1", 1, "0xc1"},
        {"an integer", "\x05", 1, "body: expected a map, found an integer"},
        {"empty body", "", 0, "ends early"},
        {"two objects", "\x80\x80", 2, "after the body"},
        {"ext where a map goes", "\xd4\x01\x02", 3, "found ext"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ud__udm_wrap(cases[i].bytes, cases[i].n, 1, &buf, &len, &e), 0);
        assert_refused(cases[i].what, decode_fails(buf, len, &e), UD_EFORMAT, &e, cases[i].has);
        free(buf);
    }
    /* Nesting 100 deep: [[[[...]]]] */
    char deep[100];
    memset(deep, 0x91, sizeof deep);
    deep[99] = (char)0x90;
    assert_int_equal(ud__udm_wrap(deep, sizeof deep, 1, &buf, &len, &e), 0);
    assert_int_equal(decode_fails(buf, len, &e), UD_EFORMAT);
    assert_msg_has(&e, "nested deeper");
    free(buf);
}

/* Random damage to a real body behind a valid checksum: the parser alone stands between the
 * bytes and the model. Nothing may crash or leak; whatever is accepted must re-encode. */
static void test_mutated_bodies_with_valid_checksum(void **state)
{
    (void)state;
    ud_model_t *m = make_model();
    size_t len;
    unsigned char *file = (unsigned char *)encode(m, &len);
    const unsigned char *body = file + 10;
    size_t body_len = ((size_t)file[8] << 8) | file[9];
    unsigned char *mut = malloc(body_len);
    assert_non_null(mut);
    struct ud_rng r;
    ud_rng_seed(&r, 2024, 1);
    int accepted = 0, refused = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(mut, body, body_len);
        size_t n = body_len;
        int edits = 1 + (int)ud_rng_below(&r, 3);
        for (int k = 0; k < edits; k++) {
            size_t at = (size_t)ud_rng_below(&r, body_len);
            /* Mostly edits before the parameter blob, where the structure is. */
            if (ud_rng_below(&r, 4))
                at = (size_t)ud_rng_below(&r, body_len < 700 ? body_len : 700);
            mut[at] = (unsigned char)ud_rng_next(&r);
        }
        if (ud_rng_below(&r, 8) == 0)
            n = (size_t)ud_rng_below(&r, body_len);
        char *buf;
        size_t blen;
        struct ud_err e = {0};
        assert_int_equal(ud__udm_wrap(mut, n, 1, &buf, &blen, &e), 0);
        ud_model_t *got = ud_udm_decode(buf, blen, &e);
        free(buf);
        if (got) {
            accepted++;
            size_t l2;
            char *again = encode(got, &l2);
            free(again);
            ud_model_destroy(&got);
        } else {
            refused++;
            assert_true(e.code == UD_EFORMAT || e.code == UD_ESHAPE || e.code == UD_ENONFINITE);
            assert_true(e.msg[0] != '\0');
        }
    }
    assert_true(refused > 1000);
    free(mut);
    free(file);
    ud_model_destroy(&m);
}

static void test_encode_refuses_what_it_cannot_read_back(void **state)
{
    (void)state;
    struct ud_err e = {0};
    char *buf = NULL;
    size_t len;

    ud_model_t *m = make_model();
    ud_model_params(m)[5] = INFINITY;
    assert_int_equal(ud_udm_encode(m, &buf, &len, &e), UD_ENONFINITE);
    assert_msg_has(&e, "params[5]");
    assert_null(buf);
    /* ud_udm_write names the path and leaves nothing behind. */
    const char *path = ud_test_path("diverged.udm");
    assert_int_equal(ud_udm_write(m, path, &e), UD_ENONFINITE);
    assert_msg_has(&e, path);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_temp_files(), 0);
    ud_model_destroy(&m);

    m = make_model();
    const char *dup[] = {"a", "b", "a", "c"};
    assert_int_equal(ud_model_set_labels(m, dup, 4, &e), 0);
    assert_int_equal(ud_udm_encode(m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "labels[2]");
    assert_msg_has(&e, "repeats labels[0]");
    ud_model_destroy(&m);

    m = make_model();
    char *big = malloc(UD_UDM_MAX_STRING + 2);
    assert_non_null(big);
    memset(big, 'x', UD_UDM_MAX_STRING + 1);
    big[UD_UDM_MAX_STRING + 1] = '\0';
    assert_int_equal(ud_metadata_set(&ud_model_metadata(m)->short_description, big), 0);
    free(big);
    assert_int_equal(ud_udm_encode(m, &buf, &len, &e), UD_ELIMIT);
    assert_msg_has(&e, "metadata.short_description");
    ud_model_destroy(&m);

    m = make_model();
    ud_model_update_defaults(m)->epochs.value = 1000; /* range [1, 100] */
    assert_int_equal(ud_udm_encode(m, &buf, &len, &e), UD_ERANGE);
    assert_msg_has(&e, "update_defaults.epochs");
    ud_model_destroy(&m);

    m = make_model();
    assert_int_equal(ud_model_set_metric(m, "", 1.0), 0);
    assert_int_equal(ud_udm_encode(m, &buf, &len, &e), UD_EINVAL);
    assert_msg_has(&e, "metrics");
    ud_model_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_defaults_of_new_model),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_layout_starts_with_magic_and_version),
        cmocka_unit_test(test_write_read_overwrite),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_read_file_errors),
        cmocka_unit_test(test_foreign),
        cmocka_unit_test(test_future_version),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_bit_flips_everywhere),
        cmocka_unit_test(test_handmade_valid_is_canonical),
        cmocka_unit_test(test_handmade_wrong_contents),
        cmocka_unit_test(test_hostile_bodies),
        cmocka_unit_test(test_mutated_bodies_with_valid_checksum),
        cmocka_unit_test(test_encode_refuses_what_it_cannot_read_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

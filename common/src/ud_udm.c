/*  ud_udm.c — the .udm model file, format version 1 (normative spec: docs/model-format.md).
 *
 *  A file is one msgpack array   [ "UDM1", 1, body: bin, sha256: bin 32 ]
 *  where body is a msgpack map (metadata, input, labels, layers, update_defaults, params,
 *  metrics) and the SHA-256 covers every byte of the file before the checksum element.
 *
 *  Reading goes in an order that lets each failure be named: the envelope is parsed by hand,
 *  byte by byte, so that a foreign file, a future version and a truncated file are told apart
 *  before anything else; then the checksum (corruption); then the body is walked once by a
 *  small structural scanner that bounds nesting, object count and every declared length by the
 *  bytes actually present, so msgpack's unpacker never allocates from a size the file cannot
 *  back; only then does msgpack build objects, and every object's type is checked before use.
 *  The model is built by ud_model_new from the parsed architecture and then checked as a whole
 *  by the same function the encoder uses, so whatever can be written can be read and nothing
 *  else can. The envelope, the scanner and the field readers live in ud_envelope.c, shared with
 *  the checkpoint files.
 *
 *  Encoding is deterministic: fixed key order, free-form maps sorted by key, minimal msgpack
 *  integer encodings, floats as float32 and doubles as float64. It runs the packer twice, once
 *  counting and once into an exactly sized buffer, so a 1 GiB parameter blob is copied once.
 */
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"
#include "updraft/ud_seal.h"

#include "ud_envelope_impl.h"
#include "ud_udm_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>

static const struct ud__env_format udm_format = {
    .magic = UD_UDM_MAGIC,
    .version = UD_UDM_VERSION,
    .what = "updraft model",
    .noun = "model",
    .max_bytes = UD_UDM_MAX_BYTES,
};

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* A C string the model holds, checked against the format's rules. NULL is allowed only when
 * nullable. Codes are the encoder's (UD_ELIMIT, UD_EINVAL); the decoder maps them. */
static int udm_check_cstr(const char *s, size_t max, bool nullable, bool nonempty,
                          const char *field, struct ud_err *e)
{
    if (!s) {
        if (nullable)
            return 0;
        return ud_err_set(e, UD_EINVAL, "%s: missing (NULL)", field);
    }
    size_t n = strlen(s);
    if (n > max)
        return ud_err_set(e, UD_ELIMIT, "%s: %zu bytes, the limit is %zu", field, n, max);
    if (nonempty && n == 0)
        return ud_err_set(e, UD_EINVAL, "%s: empty", field);
    if (!ud__mpk_utf8_ok((const unsigned char *)s, n))
        return ud_err_set(e, UD_EINVAL, "%s: not valid UTF-8", field);
    return 0;
}

/* Names sorted by strcmp, remembering where each came from. */
struct udm_name {
    const char *s;
    size_t i;
};

static int udm_name_cmp(const void *a, const void *b)
{
    const struct udm_name *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    if (c)
        return c;
    return (x->i > y->i) - (x->i < y->i);
}

/* Sorts names[0..n) into a fresh array (*out, caller frees; NULL when n == 0). Reports the first
 * duplicate as UD_EINVAL naming both positions. */
static int udm_sort_names(const char *const *names, size_t n, const char *field,
                          struct udm_name **out, struct ud_err *e)
{
    *out = NULL;
    if (n == 0)
        return 0;
    struct udm_name *v = malloc(n * sizeof *v);
    if (!v)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", field);
    for (size_t i = 0; i < n; i++)
        v[i] = (struct udm_name){names[i], i};
    qsort(v, n, sizeof *v, udm_name_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(v[i - 1].s, v[i].s) == 0) {
            int rc = ud_err_set(e, UD_EINVAL, "%s[%zu]: \"%.64s\" repeats %s[%zu]", field, v[i].i,
                                v[i].s, field, v[i - 1].i);
            free(v);
            return rc;
        }
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The model check shared by encoder and decoder                                              */
/* ------------------------------------------------------------------------------------------ */

/* Orders the encoder writes free-form maps in (sorted by key, so equal models give equal bytes
 * whatever order their entries were added in). */
struct udm_order {
    struct udm_name *additional; /* metadata.additional */
    size_t nadditional;
    struct udm_name *metrics;
    size_t nmetrics;
};

static void udm_order_deinit(struct udm_order *o)
{
    free(o->additional);
    free(o->metrics);
    memset(o, 0, sizeof *o);
}

static const char *udm_input_kind_name(enum ud_input_kind k)
{
    switch (k) {
    case UD_INPUT_IMAGE:
        return "image";
    case UD_INPUT_TABULAR:
        return "tabular";
    }
    return NULL;
}

static int udm_check_pd(const char *key, const struct ud_param_double *p, struct ud_err *e)
{
    if (!isfinite(p->value) || !isfinite(p->min) || !isfinite(p->max))
        return ud_err_set(e, UD_ENONFINITE,
                          "update_defaults.%s: value %g, range [%g, %g]: "
                          "not finite",
                          key, p->value, p->min, p->max);
    if (!(p->min <= p->value && p->value <= p->max))
        return ud_err_set(e, UD_ERANGE, "update_defaults.%s: value %g outside its range [%g, %g]",
                          key, p->value, p->min, p->max);
    return 0;
}

static int udm_check_pi(const char *key, const struct ud_param_int *p, struct ud_err *e)
{
    if (!(p->min <= p->value && p->value <= p->max))
        return ud_err_set(e, UD_ERANGE,
                          "update_defaults.%s: value %lld outside its range [%lld, %lld]", key,
                          (long long)p->value, (long long)p->min, (long long)p->max);
    return 0;
}

/* The names of a free-form section, checked (non-empty, within max, UTF-8) and sorted into
 * *sorted (caller frees). get(m, i) gives name i. */
typedef const char *(*udm_name_fn)(const ud_model_t *m, size_t i);

static int udm_check_names(const ud_model_t *m, size_t n, udm_name_fn get, const char *section,
                           struct udm_name **sorted, struct ud_err *e)
{
    *sorted = NULL;
    if (n == 0)
        return 0;
    const char **names = malloc(n * sizeof *names);
    if (!names)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", section);
    int rc = 0;
    char field[64];
    for (size_t i = 0; i < n && rc == 0; i++) {
        names[i] = get(m, i);
        snprintf(field, sizeof field, "%s[%zu]", section, i);
        rc = udm_check_cstr(names[i], UD_UDM_MAX_NAME, false, true, field, e);
    }
    if (rc == 0)
        rc = udm_sort_names(names, n, section, sorted, e);
    free(names);
    return rc;
}

static const char *udm_label_at(const ud_model_t *m, size_t i)
{
    return ud_model_label(m, (int)i);
}

static const char *udm_additional_key_at(const ud_model_t *m, size_t i)
{
    return ud_model_metadata_const(m)->additional[i].key;
}

static const char *udm_metric_name_at(const ud_model_t *m, size_t i)
{
    const char *key = NULL;
    double v;
    return ud_model_metric_at(m, i, &key, &v) == 0 ? key : NULL;
}

static int udm_check_metadata(const ud_model_t *m, struct udm_name **sorted, struct ud_err *e)
{
    const struct ud_metadata *md = ud_model_metadata_const(m);
    const char *const values[] = {md->author, md->short_description, md->license, md->version};
    const char *const keys[] = {"author", "short_description", "license", "version"};
    char field[64];
    int rc;
    for (int i = 0; i < 4; i++) {
        snprintf(field, sizeof field, "metadata.%s", keys[i]);
        if ((rc = udm_check_cstr(values[i], UD_UDM_MAX_STRING, true, false, field, e)) < 0)
            return rc;
    }
    if (md->nadditional > UD_UDM_MAX_ENTRIES)
        return ud_err_set(e, UD_ELIMIT, "metadata.additional: %zu entries, the limit is %d",
                          md->nadditional, UD_UDM_MAX_ENTRIES);
    for (size_t i = 0; i < md->nadditional; i++) {
        snprintf(field, sizeof field, "metadata.additional[\"%.24s\"]",
                 md->additional[i].key ? md->additional[i].key : "(null)");
        if ((rc = udm_check_cstr(md->additional[i].value, UD_UDM_MAX_STRING, false, false, field,
                                 e)) < 0)
            return rc;
    }
    return udm_check_names(m, md->nadditional, udm_additional_key_at, "metadata.additional", sorted,
                           e);
}

static int udm_check_defaults(const struct ud_update_defaults *d, struct ud_err *e)
{
    int rc;
    if (d->optimizer != UD_OPT_SGD && d->optimizer != UD_OPT_ADAM)
        return ud_err_set(e, UD_EINVAL, "update_defaults.optimizer: unknown optimizer %d",
                          (int)d->optimizer);
    if ((rc = udm_check_pd("learning_rate", &d->learning_rate, e)) < 0 ||
        (rc = udm_check_pd("momentum", &d->momentum, e)) < 0 ||
        (rc = udm_check_pd("weight_decay", &d->weight_decay, e)) < 0 ||
        (rc = udm_check_pd("beta1", &d->beta1, e)) < 0 ||
        (rc = udm_check_pd("beta2", &d->beta2, e)) < 0 ||
        (rc = udm_check_pd("eps", &d->eps, e)) < 0 ||
        (rc = udm_check_pi("mini_batch_size", &d->mini_batch_size, e)) < 0 ||
        (rc = udm_check_pi("epochs", &d->epochs, e)) < 0 ||
        (rc = udm_check_pi("seed", &d->seed, e)) < 0)
        return rc;
    return 0;
}

/* The architecture (ud_model_new checked it; the format needs every kind nameable), the input
 * description, and the parameters. */
static int udm_check_network(const ud_model_t *m, struct ud_err *e)
{
    const struct ud_arch *a = ud_model_arch(m);
    if (a->nlayers < 2 || a->nlayers > UD_MAX_LAYERS)
        return ud_err_set(e, UD_ELIMIT, "layers: %d layers, the format allows 2 to %d", a->nlayers,
                          UD_MAX_LAYERS);
    for (int i = 0; i < a->nlayers; i++) {
        const char *kn = ud_layer_kind_name(a->layer[i].kind);
        enum ud_layer_kind back;
        if (!kn || ud_layer_kind_parse(kn, &back) < 0 || back != a->layer[i].kind)
            return ud_err_set(e, UD_EINVAL, "layers[%d].kind: unknown kind %d", i,
                              (int)a->layer[i].kind);
    }
    int nclasses = ud_model_num_classes(m);
    if (nclasses < 2 || nclasses > UD_MAX_CLASSES)
        return ud_err_set(e, UD_ELIMIT, "labels: %d classes, the format allows 2 to %d", nclasses,
                          UD_MAX_CLASSES);

    const struct ud_input_desc *in = ud_model_input_desc_const(m);
    if (!udm_input_kind_name(in->kind))
        return ud_err_set(e, UD_EINVAL, "input.kind: unknown kind %d", (int)in->kind);
    if (!isfinite(in->scale) || !isfinite(in->offset))
        return ud_err_set(e, UD_ENONFINITE, "input: scale %g, offset %g: not finite",
                          (double)in->scale, (double)in->offset);

    size_t np = ud_model_param_count(m);
    const float *p = ud_model_params_const(m);
    if (np > UD_MAX_PARAMS)
        return ud_err_set(e, UD_ELIMIT, "params: %zu floats, the limit is %u", np, UD_MAX_PARAMS);
    for (size_t i = 0; i < np; i++)
        if (!isfinite(p[i]))
            return ud_err_set(e, UD_ENONFINITE,
                              "params[%zu] is %g: the model holds a non-finite parameter "
                              "(diverged training?)",
                              i, (double)p[i]);
    return 0;
}

/* Checks everything the format requires of a model (docs/model-format.md, sections 3 and 6).
 * On success fills o (may be NULL) with the sorted orders of the free-form maps. Returns 0 or
 * UD_EINVAL / UD_ELIMIT / UD_ERANGE / UD_ENONFINITE / UD_ENOMEM naming the file's field. */
static int udm_check_model(const ud_model_t *m, struct udm_order *o, struct ud_err *e)
{
    struct udm_order tmp = {0};
    struct udm_name *labels = NULL;
    int rc;

    if ((rc = udm_check_network(m, e)) < 0)
        return rc;
    /* Labels: one per class, non-empty, unique. The sorted copy only proves uniqueness. */
    rc = udm_check_names(m, (size_t)ud_model_num_classes(m), udm_label_at, "labels", &labels, e);
    free(labels);
    if (rc < 0)
        return rc;
    if ((rc = udm_check_metadata(m, &tmp.additional, e)) < 0)
        goto out_free_order;
    tmp.nadditional = ud_model_metadata_const(m)->nadditional;
    if ((rc = udm_check_defaults(ud_model_update_defaults_const(m), e)) < 0)
        goto out_free_order;
    /* Metrics: names non-empty and unique; values any double (NaN: not computable). */
    tmp.nmetrics = ud_model_metric_count(m);
    if (tmp.nmetrics > UD_UDM_MAX_ENTRIES) {
        rc = ud_err_set(e, UD_ELIMIT, "metrics: %zu entries, the limit is %d", tmp.nmetrics,
                        UD_UDM_MAX_ENTRIES);
        goto out_free_order;
    }
    if ((rc = udm_check_names(m, tmp.nmetrics, udm_metric_name_at, "metrics", &tmp.metrics, e)) < 0)
        goto out_free_order;
    if (o)
        *o = tmp;
    else
        udm_order_deinit(&tmp);
    return 0;

out_free_order:
    udm_order_deinit(&tmp);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void udm_pack_pd(msgpack_packer *pk, const char *key, const struct ud_param_double *p)
{
    ud__mpk_pack_str(pk, key);
    msgpack_pack_map(pk, 3);
    ud__mpk_pack_key_double(pk, "value", p->value);
    ud__mpk_pack_key_double(pk, "min", p->min);
    ud__mpk_pack_key_double(pk, "max", p->max);
}

static void udm_pack_pi(msgpack_packer *pk, const char *key, const struct ud_param_int *p)
{
    ud__mpk_pack_str(pk, key);
    msgpack_pack_map(pk, 3);
    ud__mpk_pack_key_int(pk, "value", p->value);
    ud__mpk_pack_key_int(pk, "min", p->min);
    ud__mpk_pack_key_int(pk, "max", p->max);
}

static void udm_pack_layer(msgpack_packer *pk, const ud_model_t *m, int i)
{
    const struct ud_layer_spec *l = &ud_model_arch(m)->layer[i];
    bool upd = ud_model_layer_updatable(m, i);
    switch (l->kind) {
    case UD_LAYER_DENSE:
        msgpack_pack_map(pk, 3);
        break;
    case UD_LAYER_CONV2D:
        msgpack_pack_map(pk, 6);
        break;
    case UD_LAYER_MAXPOOL2D:
    case UD_LAYER_DROPOUT:
        msgpack_pack_map(pk, 2);
        break;
    default:
        msgpack_pack_map(pk, 1);
        break;
    }
    ud__mpk_pack_key_str(pk, "kind", ud_layer_kind_name(l->kind));
    switch (l->kind) {
    case UD_LAYER_DENSE:
        ud__mpk_pack_key_int(pk, "units", l->units);
        ud__mpk_pack_key_bool(pk, "updatable", upd);
        break;
    case UD_LAYER_CONV2D:
        ud__mpk_pack_key_int(pk, "filters", l->filters);
        ud__mpk_pack_key_int(pk, "kernel", l->kernel);
        ud__mpk_pack_key_int(pk, "stride", l->stride);
        ud__mpk_pack_key_int(pk, "pad", l->pad);
        ud__mpk_pack_key_bool(pk, "updatable", upd);
        break;
    case UD_LAYER_MAXPOOL2D:
        ud__mpk_pack_key_int(pk, "pool", l->pool);
        break;
    case UD_LAYER_DROPOUT:
        ud__mpk_pack_key_float(pk, "rate", l->rate);
        break;
    default:
        break;
    }
}

/* Packs the body map. m has passed udm_check_model, which filled o. */
static void udm_pack_body(msgpack_packer *pk, const ud_model_t *m, const struct udm_order *o)
{
    const struct ud_arch *a = ud_model_arch(m);
    const struct ud_metadata *md = ud_model_metadata_const(m);
    const struct ud_input_desc *in = ud_model_input_desc_const(m);
    const struct ud_update_defaults *d = ud_model_update_defaults_const(m);

    msgpack_pack_map(pk, 7);

    ud__mpk_pack_str(pk, "metadata");
    msgpack_pack_map(pk, 5);
    ud__mpk_pack_key_str(pk, "author", md->author);
    ud__mpk_pack_key_str(pk, "short_description", md->short_description);
    ud__mpk_pack_key_str(pk, "license", md->license);
    ud__mpk_pack_key_str(pk, "version", md->version);
    ud__mpk_pack_str(pk, "additional");
    msgpack_pack_map(pk, o->nadditional);
    for (size_t k = 0; k < o->nadditional; k++) {
        size_t i = o->additional[k].i;
        ud__mpk_pack_str(pk, md->additional[i].key);
        ud__mpk_pack_str(pk, md->additional[i].value);
    }

    ud__mpk_pack_str(pk, "input");
    msgpack_pack_map(pk, 4);
    ud__mpk_pack_str(pk, "shape");
    msgpack_pack_array(pk, 3);
    msgpack_pack_int64(pk, a->input.c);
    msgpack_pack_int64(pk, a->input.h);
    msgpack_pack_int64(pk, a->input.w);
    ud__mpk_pack_key_str(pk, "kind", udm_input_kind_name(in->kind));
    ud__mpk_pack_key_float(pk, "scale", in->scale);
    ud__mpk_pack_key_float(pk, "offset", in->offset);

    int nclasses = ud_model_num_classes(m);
    ud__mpk_pack_str(pk, "labels");
    msgpack_pack_array(pk, (size_t)nclasses);
    for (int i = 0; i < nclasses; i++)
        ud__mpk_pack_str(pk, ud_model_label(m, i));

    ud__mpk_pack_str(pk, "layers");
    msgpack_pack_array(pk, (size_t)a->nlayers);
    for (int i = 0; i < a->nlayers; i++)
        udm_pack_layer(pk, m, i);

    ud__mpk_pack_str(pk, "update_defaults");
    msgpack_pack_map(pk, 12);
    ud__mpk_pack_key_str(pk, "optimizer", ud_optimizer_name(d->optimizer));
    udm_pack_pd(pk, "learning_rate", &d->learning_rate);
    udm_pack_pd(pk, "momentum", &d->momentum);
    udm_pack_pd(pk, "weight_decay", &d->weight_decay);
    udm_pack_pd(pk, "beta1", &d->beta1);
    udm_pack_pd(pk, "beta2", &d->beta2);
    udm_pack_pd(pk, "eps", &d->eps);
    udm_pack_pi(pk, "mini_batch_size", &d->mini_batch_size);
    udm_pack_pi(pk, "epochs", &d->epochs);
    udm_pack_pi(pk, "seed", &d->seed);
    ud__mpk_pack_key_bool(pk, "shuffle", d->shuffle);
    ud__mpk_pack_key_bool(pk, "nesterov", d->nesterov);

    /* params: f32 little-endian whatever the host, converted a chunk at a time. */
    ud__mpk_pack_key_f32_bin(pk, "params", ud_model_params_const(m), ud_model_param_count(m));

    ud__mpk_pack_str(pk, "metrics");
    msgpack_pack_map(pk, o->nmetrics);
    for (size_t k = 0; k < o->nmetrics; k++) {
        const char *key;
        double v = 0;
        ud_model_metric_at(m, o->metrics[k].i, &key, &v);
        ud__mpk_pack_str(pk, key);
        msgpack_pack_double(pk, v);
    }
}

/* The body packer as ud__env_seal calls it. */
struct udm_body {
    const ud_model_t *m;
    const struct udm_order *o;
};

static void udm_pack_body_fn(msgpack_packer *pk, const void *ctx)
{
    const struct udm_body *b = ctx;
    udm_pack_body(pk, b->m, b->o);
}

static int udm_encode(const ud_model_t *m, uint64_t version, char **buf, size_t *len,
                      struct ud_err *e)
{
    if (!m || !buf || !len)
        return ud_err_set(e, UD_EINVAL, "ud_udm_encode: NULL argument");
    *buf = NULL;
    *len = 0;
    int rc = ud__env_sodium(e);
    if (rc < 0)
        return rc;
    struct udm_order o = {0};
    if ((rc = udm_check_model(m, &o, e)) < 0)
        return rc;

    struct udm_body body = {m, &o};
    rc = ud__env_seal(&udm_format, version, udm_pack_body_fn, &body, NULL, 0, buf, len, e);
    udm_order_deinit(&o);
    return rc;
}

int ud_udm_encode(const ud_model_t *m, char **buf, size_t *len, struct ud_err *e)
{
    return udm_encode(m, UD_UDM_VERSION, buf, len, e);
}

int ud__udm_encode_version(const ud_model_t *m, uint64_t version, char **buf, size_t *len,
                           struct ud_err *e)
{
    return udm_encode(m, version, buf, len, e);
}

int ud__udm_wrap(const void *body, size_t body_len, uint64_t version, char **buf, size_t *len,
                 struct ud_err *e)
{
    return ud__env_seal(&udm_format, version, NULL, NULL, body, body_len, buf, len, e);
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding: fields                                                                           */
/* ------------------------------------------------------------------------------------------ */

static int udm_get_dim(const msgpack_object *o, const char *field, int lo, int *out,
                       struct ud_err *e)
{
    int64_t v;
    int rc = ud__mpk_get_int(o, field, lo, UD_MAX_DIM, &v, e);
    if (rc == 0)
        *out = (int)v;
    return rc;
}

static int udm_parse_input(const msgpack_object *o, struct ud_arch *a, struct ud_input_desc *in,
                           struct ud_err *e)
{
    static const char *const keys[] = {"shape", "kind", "scale", "offset"};
    const msgpack_object *v[4];
    int rc = ud__mpk_fields(o, "input", keys, 4, v, e);
    if (rc < 0)
        return rc;
    if (v[0]->type != MSGPACK_OBJECT_ARRAY || v[0]->via.array.size != 3)
        return ud_err_set(e, UD_EFORMAT, "input.shape: expected an array [C, H, W]");
    if ((rc = udm_get_dim(&v[0]->via.array.ptr[0], "input.shape[0] (C)", 1, &a->input.c, e)) < 0 ||
        (rc = udm_get_dim(&v[0]->via.array.ptr[1], "input.shape[1] (H)", 1, &a->input.h, e)) < 0 ||
        (rc = udm_get_dim(&v[0]->via.array.ptr[2], "input.shape[2] (W)", 1, &a->input.w, e)) < 0)
        return rc;
    static const char *const kinds[] = {"image", "tabular"};
    int k = 0;
    if ((rc = ud__mpk_get_choice(v[1], "input.kind", kinds, 2, &k, e)) < 0)
        return rc;
    in->kind = k == 0 ? UD_INPUT_IMAGE : UD_INPUT_TABULAR;
    if ((rc = ud__mpk_get_float(v[2], "input.scale", &in->scale, e)) < 0 ||
        (rc = ud__mpk_get_float(v[3], "input.offset", &in->offset, e)) < 0)
        return rc;
    return 0;
}

static int udm_parse_layer(const msgpack_object *o, int i, struct ud_layer_spec *l,
                           struct ud_err *e)
{
    char field[48], sub[64];
    snprintf(field, sizeof field, "layers[%d]", i);
    if (o->type != MSGPACK_OBJECT_MAP)
        return ud__mpk_type_err(o, field, "a map", e);

    /* The kind decides which other keys the layer has. */
    const msgpack_object *kind = NULL;
    for (uint32_t j = 0; j < o->via.map.size; j++)
        if (ud__mpk_key_is(&o->via.map.ptr[j].key, "kind"))
            kind = &o->via.map.ptr[j].val;
    snprintf(sub, sizeof sub, "%s.kind", field);
    if (!kind)
        return ud_err_set(e, UD_EFORMAT, "%s: missing key \"kind\"", field);
    if (kind->type != MSGPACK_OBJECT_STR)
        return ud__mpk_type_err(kind, sub, "a string", e);
    char name[32];
    size_t n = kind->via.str.size;
    enum ud_layer_kind k;
    if (n >= sizeof name || memchr(kind->via.str.ptr, 0, n))
        return ud_err_set(e, UD_EFORMAT, "%s: unknown layer kind \"%.*s\"", sub,
                          n > 32 ? 32 : (int)n, kind->via.str.ptr);
    memcpy(name, kind->via.str.ptr, n);
    name[n] = '\0';
    if (ud_layer_kind_parse(name, &k) < 0)
        return ud_err_set(e, UD_EFORMAT, "%s: unknown layer kind \"%s\"", sub, name);

    memset(l, 0, sizeof *l);
    l->kind = k;
    const msgpack_object *v[6];
    int rc;
    switch (k) {
    case UD_LAYER_DENSE: {
        static const char *const keys[] = {"kind", "units", "updatable"};
        if ((rc = ud__mpk_fields(o, field, keys, 3, v, e)) < 0)
            return rc;
        snprintf(sub, sizeof sub, "%s.units", field);
        if ((rc = udm_get_dim(v[1], sub, 1, &l->units, e)) < 0)
            return rc;
        snprintf(sub, sizeof sub, "%s.updatable", field);
        return ud__mpk_get_bool(v[2], sub, &l->updatable, e);
    }
    case UD_LAYER_CONV2D: {
        static const char *const keys[] = {"kind",   "filters", "kernel",
                                           "stride", "pad",     "updatable"};
        if ((rc = ud__mpk_fields(o, field, keys, 6, v, e)) < 0)
            return rc;
        int *dst[] = {&l->filters, &l->kernel, &l->stride, &l->pad};
        for (int j = 0; j < 4; j++) {
            snprintf(sub, sizeof sub, "%s.%s", field, keys[j + 1]);
            if ((rc = udm_get_dim(v[j + 1], sub, j == 3 ? 0 : 1, dst[j], e)) < 0)
                return rc;
        }
        snprintf(sub, sizeof sub, "%s.updatable", field);
        return ud__mpk_get_bool(v[5], sub, &l->updatable, e);
    }
    case UD_LAYER_MAXPOOL2D: {
        static const char *const keys[] = {"kind", "pool"};
        if ((rc = ud__mpk_fields(o, field, keys, 2, v, e)) < 0)
            return rc;
        snprintf(sub, sizeof sub, "%s.pool", field);
        return udm_get_dim(v[1], sub, 1, &l->pool, e);
    }
    case UD_LAYER_DROPOUT: {
        static const char *const keys[] = {"kind", "rate"};
        if ((rc = ud__mpk_fields(o, field, keys, 2, v, e)) < 0)
            return rc;
        snprintf(sub, sizeof sub, "%s.rate", field);
        if ((rc = ud__mpk_get_float(v[1], sub, &l->rate, e)) < 0)
            return rc;
        if (!(l->rate >= 0.0f && l->rate < 1.0f))
            return ud_err_set(e, UD_EFORMAT, "%s: %g is outside [0, 1)", sub, (double)l->rate);
        return 0;
    }
    case UD_LAYER_RELU:
    case UD_LAYER_FLATTEN:
    case UD_LAYER_SOFTMAX: {
        static const char *const keys[] = {"kind"};
        return ud__mpk_fields(o, field, keys, 1, v, e);
    }
    }
    return ud_err_set(e, UD_EFORMAT, "%s: layer kind \"%s\" is not part of format version 1", sub,
                      name);
}

static int udm_parse_layers(const msgpack_object *o, struct ud_arch *a, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return ud__mpk_type_err(o, "layers", "an array", e);
    if (o->via.array.size < 2 || o->via.array.size > UD_MAX_LAYERS)
        return ud_err_set(e, UD_EFORMAT, "layers: %u layers, the format allows 2 to %d",
                          o->via.array.size, UD_MAX_LAYERS);
    a->nlayers = (int)o->via.array.size;
    for (int i = 0; i < a->nlayers; i++) {
        int rc = udm_parse_layer(&o->via.array.ptr[i], i, &a->layer[i], e);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int udm_parse_labels(const msgpack_object *o, ud_model_t *m, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return ud__mpk_type_err(o, "labels", "an array", e);
    uint32_t n = o->via.array.size;
    if (n > UD_MAX_CLASSES)
        return ud_err_set(e, UD_EFORMAT, "labels: %u entries, the limit is %d", n, UD_MAX_CLASSES);
    int nclasses = ud_model_num_classes(m);
    if ((int)n != nclasses)
        return ud_err_set(e, UD_ESHAPE,
                          "labels: %u labels for the %d classes of the last "
                          "dense layer",
                          n, nclasses);
    char **labels = calloc(n ? n : 1, sizeof *labels);
    if (!labels)
        return ud_err_set(e, UD_ENOMEM, "labels: out of memory");
    int rc = 0;
    char field[32];
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        snprintf(field, sizeof field, "labels[%u]", i);
        rc = ud__mpk_get_str(&o->via.array.ptr[i], field, UD_UDM_MAX_NAME, false, &labels[i], e);
    }
    if (rc == 0)
        rc = ud_model_set_labels(m, (const char *const *)labels, (int)n, e);
    for (uint32_t i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
    return rc;
}

/* A free-form map of name -> value (metadata.additional, metrics): at most UD_UDM_MAX_ENTRIES
 * entries, each key a string of at most UD_UDM_MAX_NAME bytes, no key twice. take() reads and
 * stores each value; field names it ("metrics[\"loss\"]"). */
typedef int (*udm_entry_fn)(ud_model_t *m, const char *key, const msgpack_object *val,
                            const char *field, struct ud_err *e);

static int udm_parse_entries(const msgpack_object *o, const char *section, ud_model_t *m,
                             udm_entry_fn take, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return ud__mpk_type_err(o, section, "a map", e);
    if (o->via.map.size > UD_UDM_MAX_ENTRIES)
        return ud_err_set(e, UD_EFORMAT, "%s: %u entries, the limit is %d", section,
                          o->via.map.size, UD_UDM_MAX_ENTRIES);
    char field[64];
    for (uint32_t j = 0; j < o->via.map.size; j++) {
        char *key = NULL;
        snprintf(field, sizeof field, "%s key %u", section, j);
        int rc = ud__mpk_get_str(&o->via.map.ptr[j].key, field, UD_UDM_MAX_NAME, false, &key, e);
        if (rc < 0)
            return rc;
        snprintf(field, sizeof field, "%s[\"%.24s\"]", section, key);
        rc = take(m, key, &o->via.map.ptr[j].val, field, e);
        free(key);
        if (rc < 0)
            return rc;
    }
    long dup = ud__mpk_dup_key(o);
    if (dup >= 0) {
        const msgpack_object *k = &o->via.map.ptr[dup].key;
        return ud_err_set(e, UD_EFORMAT, "%s: key \"%.*s\" appears twice", section,
                          k->via.str.size > 64 ? 64 : (int)k->via.str.size, k->via.str.ptr);
    }
    return 0;
}

static int udm_take_additional(ud_model_t *m, const char *key, const msgpack_object *val,
                               const char *field, struct ud_err *e)
{
    char *s = NULL;
    int rc = ud__mpk_get_str(val, field, UD_UDM_MAX_STRING, false, &s, e);
    if (rc == 0 && (rc = ud_metadata_set_additional(ud_model_metadata(m), key, s)) < 0)
        ud_err_set(e, rc, "%s: cannot set", field);
    free(s);
    return rc;
}

static int udm_take_metric(ud_model_t *m, const char *key, const msgpack_object *val,
                           const char *field, struct ud_err *e)
{
    double v = 0;
    int rc = ud__mpk_get_double(val, field, &v, e);
    if (rc == 0 && (rc = ud_model_set_metric(m, key, v)) < 0)
        ud_err_set(e, rc, "%s: cannot set", field);
    return rc;
}

static int udm_parse_metadata(const msgpack_object *o, ud_model_t *m, struct ud_err *e)
{
    static const char *const keys[] = {"author", "short_description", "license", "version",
                                       "additional"};
    const msgpack_object *v[5];
    int rc = ud__mpk_fields(o, "metadata", keys, 5, v, e);
    if (rc < 0)
        return rc;
    struct ud_metadata *md = ud_model_metadata(m);
    char **dst[] = {&md->author, &md->short_description, &md->license, &md->version};
    char field[64];
    for (int i = 0; i < 4; i++) {
        char *s;
        snprintf(field, sizeof field, "metadata.%s", keys[i]);
        if ((rc = ud__mpk_get_str(v[i], field, UD_UDM_MAX_STRING, true, &s, e)) < 0)
            return rc;
        rc = ud_metadata_set(dst[i], s);
        free(s);
        if (rc < 0)
            return ud_err_set(e, rc, "%s: cannot set", field);
    }

    return udm_parse_entries(v[4], "metadata.additional", m, udm_take_additional, e);
}

static int udm_parse_pd(const msgpack_object *o, const char *key, struct ud_param_double *p,
                        struct ud_err *e)
{
    char field[64];
    snprintf(field, sizeof field, "update_defaults.%s", key);
    const struct ud__mpk_field f[] = {
        UD__MPK_DOUBLE("value", &p->value),
        UD__MPK_DOUBLE("min", &p->min),
        UD__MPK_DOUBLE("max", &p->max),
    };
    return ud__mpk_read_map(o, field, field, f, 3, e);
}

static int udm_parse_pi(const msgpack_object *o, const char *key, struct ud_param_int *p,
                        struct ud_err *e)
{
    char field[64];
    snprintf(field, sizeof field, "update_defaults.%s", key);
    const struct ud__mpk_field f[] = {
        UD__MPK_INT("value", &p->value, INT64_MIN, INT64_MAX),
        UD__MPK_INT("min", &p->min, INT64_MIN, INT64_MAX),
        UD__MPK_INT("max", &p->max, INT64_MIN, INT64_MAX),
    };
    return ud__mpk_read_map(o, field, field, f, 3, e);
}

static int udm_parse_defaults(const msgpack_object *o, struct ud_update_defaults *d,
                              struct ud_err *e)
{
    static const char *const keys[] = {"optimizer", "learning_rate", "momentum", "weight_decay",
                                       "beta1",     "beta2",         "eps",      "mini_batch_size",
                                       "epochs",    "seed",          "shuffle",  "nesterov"};
    const msgpack_object *v[12];
    int rc = ud__mpk_fields(o, "update_defaults", keys, 12, v, e);
    if (rc < 0)
        return rc;
    memset(d, 0, sizeof *d);
    static const char *const optimizers[] = {"sgd", "adam"};
    int k = 0;
    if ((rc = ud__mpk_get_choice(v[0], "update_defaults.optimizer", optimizers, 2, &k, e)) < 0)
        return rc;
    d->optimizer = k == 0 ? UD_OPT_SGD : UD_OPT_ADAM;
    struct ud_param_double *pd[] = {&d->learning_rate, &d->momentum, &d->weight_decay,
                                    &d->beta1,         &d->beta2,    &d->eps};
    for (int i = 0; i < 6; i++)
        if ((rc = udm_parse_pd(v[1 + i], keys[1 + i], pd[i], e)) < 0)
            return rc;
    struct ud_param_int *pi[] = {&d->mini_batch_size, &d->epochs, &d->seed};
    for (int i = 0; i < 3; i++)
        if ((rc = udm_parse_pi(v[7 + i], keys[7 + i], pi[i], e)) < 0)
            return rc;
    if ((rc = ud__mpk_get_bool(v[10], "update_defaults.shuffle", &d->shuffle, e)) < 0 ||
        (rc = ud__mpk_get_bool(v[11], "update_defaults.nesterov", &d->nesterov, e)) < 0)
        return rc;
    return 0;
}

static int udm_parse_params(const msgpack_object *o, ud_model_t *m, struct ud_err *e)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return ud__mpk_type_err(o, "params", "bin (f32 little-endian)", e);
    size_t bytes = o->via.bin.size, np = ud_model_param_count(m);
    if (bytes % 4)
        return ud_err_set(e, UD_EFORMAT, "params: %zu bytes is not a whole number of f32", bytes);
    if (bytes / 4 != np)
        return ud_err_set(e, UD_ESHAPE,
                          "params: the file holds %zu floats, the architecture "
                          "implies %zu",
                          bytes / 4, np);
    ud__mpk_f32_from_le(ud_model_params(m), (const unsigned char *)o->via.bin.ptr, np);
    return 0;
}

static int udm_parse_metrics(const msgpack_object *o, ud_model_t *m, struct ud_err *e)
{
    return udm_parse_entries(o, "metrics", m, udm_take_metric, e);
}

/* Builds the model from the body map. */
static ud_model_t *udm_parse_body(const msgpack_object *body, struct ud_err *e)
{
    static const char *const keys[] = {"metadata",        "input",  "labels", "layers",
                                       "update_defaults", "params", "metrics"};
    enum { K_METADATA, K_INPUT, K_LABELS, K_LAYERS, K_DEFAULTS, K_PARAMS, K_METRICS, K_N };
    const msgpack_object *v[K_N];
    struct ud_arch arch;
    struct ud_input_desc in;
    struct ud_update_defaults d;
    ud_model_t *m = NULL;
    int rc;

    memset(&arch, 0, sizeof arch);
    memset(&in, 0, sizeof in);
    memset(&d, 0, sizeof d);
    if ((rc = ud__mpk_fields(body, "body", keys, K_N, v, e)) < 0 ||
        (rc = udm_parse_input(v[K_INPUT], &arch, &in, e)) < 0 ||
        (rc = udm_parse_layers(v[K_LAYERS], &arch, e)) < 0 ||
        (rc = udm_parse_defaults(v[K_DEFAULTS], &d, e)) < 0)
        return NULL;

    m = ud_model_new(&arch, e);
    if (!m) {
        if (e->code != UD_ESHAPE && e->code != UD_ENOMEM)
            e->code = UD_EFORMAT;
        ud_err_prefix(e, "layers");
        return NULL;
    }
    for (int i = 0; i < arch.nlayers; i++) {
        enum ud_layer_kind k = arch.layer[i].kind;
        if ((k == UD_LAYER_DENSE || k == UD_LAYER_CONV2D) &&
            (rc = ud_model_set_layer_updatable(m, i, arch.layer[i].updatable != 0)) < 0) {
            ud_err_set(e, rc, "layers[%d].updatable: cannot set", i);
            goto out_destroy;
        }
    }
    *ud_model_input_desc(m) = in;
    *ud_model_update_defaults(m) = d;
    if ((rc = udm_parse_labels(v[K_LABELS], m, e)) < 0 ||
        (rc = udm_parse_metadata(v[K_METADATA], m, e)) < 0 ||
        (rc = udm_parse_params(v[K_PARAMS], m, e)) < 0 ||
        (rc = udm_parse_metrics(v[K_METRICS], m, e)) < 0)
        goto out_destroy;

    /* The rules the encoder enforces (ranges, uniqueness, finiteness) hold for what was read. */
    if ((rc = udm_check_model(m, NULL, e)) < 0) {
        if (rc != UD_ENONFINITE && rc != UD_ENOMEM)
            e->code = UD_EFORMAT;
        goto out_destroy;
    }
    return m;

out_destroy:
    ud_model_destroy(&m);
    return NULL;
}

ud_model_t *ud_udm_decode(const void *buf, size_t len, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    ud_err_clear(e);
    if (!buf && len) {
        ud_err_set(e, UD_EINVAL, "ud_udm_decode: NULL buffer");
        return NULL;
    }
    if (ud__env_sodium(e) < 0)
        return NULL;
    if (ud_seal_detect(buf, len)) {
        ud_err_set(e, UD_EFOREIGN,
                   "a sealed (signed or encrypted) updraft model, not a plain "
                   ".udm: open it with its keys (ud_seal_open)");
        return NULL;
    }

    const unsigned char *body = NULL;
    size_t body_len = 0;
    if (ud__env_open(&udm_format, buf, len, &body, &body_len, e) < 0)
        return NULL;

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    ud_model_t *m = NULL;
    if (ud__env_unpack(body, body_len, &up, e) == 0)
        m = udm_parse_body(&up.data, e);
    msgpack_unpacked_destroy(&up);
    return m;
}

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                      */
/* ------------------------------------------------------------------------------------------ */

int ud_udm_write(const ud_model_t *m, const char *path, struct ud_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = ud_udm_encode(m, &buf, &len, e);
    if (rc < 0) {
        ud_err_prefix(e, "%s", path ? path : "(null)");
        return rc;
    }
    rc = ud_file_write_atomic(path, buf, len, e);
    free(buf);
    return rc;
}

ud_model_t *ud_udm_read(const char *path, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    char *buf = NULL;
    size_t len = 0;
    if (ud_file_read(path, UD_UDM_MAX_BYTES + UD_SEAL_HEADER_BYTES + UD_SEAL_SIG_BYTES, &buf, &len,
                     e) < 0)
        return NULL; /* the message already starts with the path */
    /* A signed file from a trusted place reads like a plain one (its signature is not checked
     * here: readers that must check it use ud_seal_read_model with a key). */
    ud_model_t *m = ud_seal_detect(buf, len) ? ud_seal_decode_model(buf, len, NULL, NULL, e)
                                             : ud_udm_decode(buf, len, e);
    free(buf);
    if (!m)
        ud_err_prefix(e, "%s", path);
    return m;
}

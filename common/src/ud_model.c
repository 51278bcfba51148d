/*  ud_model.c — the model object: construction, parameters, labels, metadata, metrics.
 *  The compute (forward, backward, workspace) is in ud_layers.c. */
#include "ud_model_impl.h"

#include <math.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *alloc_floats(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) != 0)
        return NULL;
    memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

/* The current user's full name (the GECOS field up to the first comma), else the login name,
 * else $USER: Create ML's MLModelMetadata default. Reentrant: writes into out. */
static void default_author(char *out, size_t len)
{
    struct passwd pw, *res = NULL;
    char buf[1024];
    snprintf(out, len, "%s", getenv("USER") ? getenv("USER") : "unknown");
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) != 0 || !res)
        return;
    if (pw.pw_gecos && pw.pw_gecos[0] && pw.pw_gecos[0] != ',') {
        snprintf(out, len, "%s", pw.pw_gecos);
        char *comma = strchr(out, ',');
        if (comma)
            *comma = '\0';
    } else if (pw.pw_name && pw.pw_name[0]) {
        snprintf(out, len, "%s", pw.pw_name);
    }
}

ud_model_t *ud_model_new(const struct ud_arch *a, struct ud_err *e)
{
    if (ud_arch_check(a, 0, e) != 0)
        return NULL;
    struct ud_model *m = calloc(1, sizeof *m);
    if (!m)
        goto out_nomem;
    m->arch = *a;
    ud__model_layout(m);
    m->params = alloc_floats(m->nparams);
    m->grads = alloc_floats(m->nparams);
    m->labels = calloc((size_t)m->nclasses, sizeof *m->labels);
    if (!m->params || !m->grads || !m->labels)
        goto out_free;
    for (int i = 0; i < m->nclasses; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        if (!(m->labels[i] = strdup(buf)))
            goto out_free;
    }
    char author[256];
    default_author(author, sizeof author);
    if (ud_metadata_set(&m->meta.author, author) ||
        ud_metadata_set(&m->meta.short_description, "A model trained using updraft.") ||
        ud_metadata_set(&m->meta.version, "1"))
        goto out_free;
    int image = a->input.h > 1 || a->input.w > 1;
    m->input = (struct ud_input_desc){image ? UD_INPUT_IMAGE : UD_INPUT_TABULAR,
                                      image ? 1.0f / 255.0f : 1.0f, 0.0f};
    struct ud_update_params p;
    ud_update_params_default(&p);
    ud_update_defaults_from_params(&m->defaults, &p);
    m->backend = UD_BACKEND_FAST;
    ud_rng_seed(&m->rng, 0, UD_RNG_DROPOUT);
    return m;
out_free:
    ud_err_set(e, UD_ENOMEM, "cannot allocate a model of %zu parameters", m->nparams);
    ud_model_destroy(&m);
    return NULL;
out_nomem:
    ud_err_set(e, UD_ENOMEM, "out of memory creating a model");
    return NULL;
}

static void metadata_deinit(struct ud_metadata *md)
{
    free(md->author);
    free(md->short_description);
    free(md->license);
    free(md->version);
    for (size_t i = 0; i < md->nadditional; i++) {
        free(md->additional[i].key);
        free(md->additional[i].value);
    }
    free(md->additional);
    memset(md, 0, sizeof *md);
}

void ud_model_destroy(ud_model_t **mp)
{
    if (!mp || !*mp)
        return;
    struct ud_model *m = *mp;
    ud__model_free_workspace(m);
    free(m->params);
    free(m->grads);
    if (m->labels)
        for (int i = 0; i < m->nclasses; i++)
            free(m->labels[i]);
    free(m->labels);
    metadata_deinit(&m->meta);
    for (size_t i = 0; i < m->nmetrics; i++)
        free(m->metrics[i].key);
    free(m->metrics);
    free(m);
    *mp = NULL;
}

ud_model_t *ud_model_clone(const ud_model_t *src, struct ud_err *e)
{
    struct ud_model *m = ud_model_new(&src->arch, e);
    if (!m)
        return NULL;
    memcpy(m->params, src->params, src->nparams * sizeof(float));
    if (ud_model_set_labels(m, (const char *const *)src->labels, src->nclasses, e))
        goto out_free;
    const struct ud_metadata *s = &src->meta;
    if (ud_metadata_set(&m->meta.author, s->author) ||
        ud_metadata_set(&m->meta.short_description, s->short_description) ||
        ud_metadata_set(&m->meta.license, s->license) ||
        ud_metadata_set(&m->meta.version, s->version))
        goto out_nomem;
    for (size_t i = 0; i < s->nadditional; i++)
        if (ud_metadata_set_additional(&m->meta, s->additional[i].key, s->additional[i].value))
            goto out_nomem;
    for (size_t i = 0; i < src->nmetrics; i++)
        if (ud_model_set_metric(m, src->metrics[i].key, src->metrics[i].value))
            goto out_nomem;
    m->input = src->input;
    m->defaults = src->defaults;
    m->backend = src->backend;
    m->rng = src->rng;
    return m;
out_nomem:
    ud_err_set(e, UD_ENOMEM, "out of memory copying a model");
out_free:
    ud_model_destroy(&m);
    return NULL;
}

void ud_model_init_params(ud_model_t *m, uint64_t seed)
{
    struct ud_rng r;
    ud_rng_seed(&r, seed, UD_RNG_INIT);
    for (int i = 0; i < m->arch.nlayers; i++) {
        const struct ud_layer_rt *L = &m->L[i];
        if (!L->w.count)
            continue;
        /* PyTorch's default: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), +); the bias
         * takes the same bound. */
        size_t fan_in = L->w.count / (L->b.count ? L->b.count : 1);
        float bound = 1.0f / sqrtf((float)fan_in);
        for (size_t k = 0; k < L->w.count; k++)
            m->params[L->w.offset + k] = (2.0f * ud_rng_uniform(&r) - 1.0f) * bound;
        for (size_t k = 0; k < L->b.count; k++)
            m->params[L->b.offset + k] = (2.0f * ud_rng_uniform(&r) - 1.0f) * bound;
    }
    ud_rng_seed(&m->rng, seed, UD_RNG_DROPOUT);
}

const struct ud_arch *ud_model_arch(const ud_model_t *m)
{
    return &m->arch;
}
int ud_model_num_classes(const ud_model_t *m)
{
    return m->nclasses;
}
size_t ud_model_input_size(const ud_model_t *m)
{
    return m->input_size;
}
size_t ud_model_param_count(const ud_model_t *m)
{
    return m->nparams;
}
float *ud_model_params(ud_model_t *m)
{
    return m->params;
}
const float *ud_model_params_const(const ud_model_t *m)
{
    return m->params;
}
float *ud_model_grads(ud_model_t *m)
{
    return m->grads;
}

void ud_model_layer_params(const ud_model_t *m, int i, struct ud_span *w, struct ud_span *b)
{
    static const struct ud_span none = {0, 0};
    int ok = i >= 0 && i < m->arch.nlayers;
    if (w)
        *w = ok ? m->L[i].w : none;
    if (b)
        *b = ok ? m->L[i].b : none;
}

bool ud_model_layer_updatable(const ud_model_t *m, int i)
{
    return i >= 0 && i < m->arch.nlayers && m->L[i].w.count && m->arch.layer[i].updatable;
}

int ud_model_set_layer_updatable(ud_model_t *m, int i, bool updatable)
{
    if (i < 0 || i >= m->arch.nlayers || !m->L[i].w.count)
        return UD_EINVAL;
    m->arch.layer[i].updatable = updatable ? 1 : 0;
    ud__model_layout(m);
    return 0;
}

size_t ud_model_updatable_spans(const ud_model_t *m, const struct ud_span **spans)
{
    if (spans)
        *spans = m->spans;
    return m->nspans;
}

void ud_model_set_backend(ud_model_t *m, enum ud_backend b)
{
    m->backend = b;
}
enum ud_backend ud_model_backend(const ud_model_t *m)
{
    return m->backend;
}
struct ud_rng *ud_model_rng(ud_model_t *m)
{
    return &m->rng;
}

const char *ud_model_label(const ud_model_t *m, int i)
{
    return i >= 0 && i < m->nclasses ? m->labels[i] : NULL;
}

const char *const *ud_model_labels(const ud_model_t *m)
{
    return (const char *const *)m->labels;
}

int ud_model_set_labels(ud_model_t *m, const char *const *labels, int n, struct ud_err *e)
{
    if (n != m->nclasses)
        return ud_err_set(e, UD_ESHAPE, "%d labels given for a model with %d classes", n,
                          m->nclasses);
    char **copy = calloc((size_t)n, sizeof *copy);
    if (!copy)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        if (!labels[i] || !(copy[i] = strdup(labels[i]))) {
            for (int j = 0; j < i; j++)
                free(copy[j]);
            free(copy);
            return ud_err_set(e, labels[i] ? UD_ENOMEM : UD_EINVAL, "label %d: %s", i,
                              labels[i] ? "out of memory" : "missing");
        }
    }
    for (int i = 0; i < m->nclasses; i++)
        free(m->labels[i]);
    free(m->labels);
    m->labels = copy;
    return 0;
}

int ud_model_label_index(const ud_model_t *m, const char *label)
{
    for (int i = 0; i < m->nclasses; i++)
        if (strcmp(m->labels[i], label) == 0)
            return i;
    return -1;
}

struct ud_metadata *ud_model_metadata(ud_model_t *m)
{
    return &m->meta;
}
const struct ud_metadata *ud_model_metadata_const(const ud_model_t *m)
{
    return &m->meta;
}

int ud_metadata_set(char **field, const char *value)
{
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return UD_ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

int ud_metadata_set_additional(struct ud_metadata *md, const char *key, const char *value)
{
    for (size_t i = 0; i < md->nadditional; i++)
        if (strcmp(md->additional[i].key, key) == 0)
            return ud_metadata_set(&md->additional[i].value, value ? value : "");
    struct ud_kv *grown = realloc(md->additional, (md->nadditional + 1) * sizeof *grown);
    if (!grown)
        return UD_ENOMEM;
    md->additional = grown;
    struct ud_kv kv = {strdup(key), strdup(value ? value : "")};
    if (!kv.key || !kv.value) {
        free(kv.key);
        free(kv.value);
        return UD_ENOMEM;
    }
    md->additional[md->nadditional++] = kv;
    return 0;
}

struct ud_input_desc *ud_model_input_desc(ud_model_t *m)
{
    return &m->input;
}
const struct ud_input_desc *ud_model_input_desc_const(const ud_model_t *m)
{
    return &m->input;
}
struct ud_update_defaults *ud_model_update_defaults(ud_model_t *m)
{
    return &m->defaults;
}
const struct ud_update_defaults *ud_model_update_defaults_const(const ud_model_t *m)
{
    return &m->defaults;
}

int ud_model_set_metric(ud_model_t *m, const char *key, double value)
{
    for (size_t i = 0; i < m->nmetrics; i++)
        if (strcmp(m->metrics[i].key, key) == 0) {
            m->metrics[i].value = value;
            return 0;
        }
    struct ud_metric *grown = realloc(m->metrics, (m->nmetrics + 1) * sizeof *grown);
    if (!grown)
        return UD_ENOMEM;
    m->metrics = grown;
    if (!(m->metrics[m->nmetrics].key = strdup(key)))
        return UD_ENOMEM;
    m->metrics[m->nmetrics++].value = value;
    return 0;
}

size_t ud_model_metric_count(const ud_model_t *m)
{
    return m->nmetrics;
}

int ud_model_metric_at(const ud_model_t *m, size_t i, const char **key, double *value)
{
    if (i >= m->nmetrics)
        return UD_ERANGE;
    *key = m->metrics[i].key;
    *value = m->metrics[i].value;
    return 0;
}

int ud_model_metric_get(const ud_model_t *m, const char *key, double *value)
{
    for (size_t i = 0; i < m->nmetrics; i++)
        if (strcmp(m->metrics[i].key, key) == 0) {
            *value = m->metrics[i].value;
            return 0;
        }
    return UD_ENOTFOUND;
}

void ud_model_params_sha256(const ud_model_t *m, char hex[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    if (sodium_init() < 0) {
        hex[0] = '\0';
        return;
    }
    crypto_hash_sha256_init(&st);
    /* Hash the little-endian bytes, 4 KiB at a time, so the digest is the same everywhere. */
    unsigned char buf[4096];
    size_t used = 0;
    for (size_t i = 0; i < m->nparams; i++) {
        uint32_t u;
        memcpy(&u, &m->params[i], 4);
        buf[used++] = (unsigned char)u;
        buf[used++] = (unsigned char)(u >> 8);
        buf[used++] = (unsigned char)(u >> 16);
        buf[used++] = (unsigned char)(u >> 24);
        if (used == sizeof buf) {
            crypto_hash_sha256_update(&st, buf, used);
            used = 0;
        }
    }
    crypto_hash_sha256_update(&st, buf, used);
    crypto_hash_sha256_final(&st, digest);
    sodium_bin2hex(hex, 65, digest, sizeof digest);
}

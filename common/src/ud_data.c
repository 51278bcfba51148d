/*  ud_data.c — the in-memory dataset: construction, access, class renumbering, the batch
 *  provider, and ud_dataset_load's choice of loader. The loaders themselves live in
 *  ud_data_idx.c, ud_data_image.c and ud_data_csv.c; splits in ud_split.c.
 */
#include "ud_data_impl.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "updraft/ud_file.h"
#include "updraft/ud_strv.h"

/* ---- Shared helpers ---- */

static int sbuf_reserve(struct ud__sbuf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return UD_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return UD_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int ud__sbuf_add(struct ud__sbuf *b, const char *s, size_t *off)
{
    size_t len = strlen(s);
    if (sbuf_reserve(b, len + 1))
        return UD_ENOMEM;
    memcpy(b->p + b->len, s, len + 1);
    if (off)
        *off = b->len;
    b->len += len + 1;
    return 0;
}

int ud__sbuf_addf(struct ud__sbuf *b, size_t *off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0 || sbuf_reserve(b, (size_t)len + 1))
        return UD_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)len + 1, fmt, ap);
    va_end(ap);
    if (off)
        *off = b->len;
    b->len += (size_t)len + 1;
    return 0;
}

ud_dataset_t *ud__dataset_alloc(struct ud_err *e)
{
    ud_dataset_t *ds = calloc(1, sizeof *ds);
    if (!ds)
        ud_err_set(e, UD_ENOMEM, "out of memory for a dataset");
    return ds;
}

int ud__shape_valid(struct ud_shape s)
{
    return s.c >= 1 && s.c <= UD_MAX_DIM && s.h >= 1 && s.h <= UD_MAX_DIM && s.w >= 1 &&
           s.w <= UD_MAX_DIM;
}

void ud__data_warn(const struct ud_load_opts *opts, const char *fmt, ...)
{
    if (!opts || !opts->warn)
        return;
    char msg[UD_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    opts->warn(opts->warn_user, msg);
}

int ud__data_errno(struct ud_err *e, int err, const char *what, const char *path)
{
    if (err == ENOENT || err == ENOTDIR)
        return ud_err_set(e, UD_ENOTFOUND, "%s: no such file or directory", path);
    return ud_err_set(e, UD_EIO, "%s: cannot %s: %s", path, what, strerror(err));
}

int ud__data_read_file(const char *path, size_t max, char **out, size_t *len, struct ud_err *e)
{
    /* ud_file_read would also read a pipe or a device up to max; a dataset file must be a
     * regular file, and a missing one is reported as the other loaders report it. */
    struct stat st;
    *out = NULL;
    *len = 0;
    if (stat(path, &st) != 0)
        return ud__data_errno(e, errno, "stat", path);
    if (!S_ISREG(st.st_mode))
        return ud_err_set(e, UD_EIO, "%s: not a regular file", path);
    return ud_file_read(path, max, out, len, e);
}

char *ud__path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] == '/';
    char *p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    if (!slash)
        p[la++] = '/';
    memcpy(p + la, b, lb + 1);
    return p;
}

/* ---- Construction and access ---- */

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copies n class names into a fresh array (NULL names: "0".."n-1"); rejects duplicates. */
static int classes_copy(const char *const *names, int n, char ***out, struct ud_err *e)
{
    int rc = 0;
    char **c = calloc((size_t)n, sizeof *c);
    char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!c || !sorted) {
        rc = ud_err_set(e, UD_ENOMEM, "out of memory for %d class names", n);
        goto out_free;
    }
    for (int i = 0; i < n; i++) {
        if (names && !names[i]) {
            rc = ud_err_set(e, UD_EINVAL, "class name %d is NULL", i);
            goto out_free;
        }
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        c[i] = strdup(names ? names[i] : num);
        if (!c[i]) {
            rc = ud_err_set(e, UD_ENOMEM, "out of memory for class names");
            goto out_free;
        }
        sorted[i] = c[i];
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_strp);
    for (int i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            rc = ud_err_set(e, UD_EINVAL, "class \"%s\" is listed twice", sorted[i]);
            goto out_free;
        }
    }
    free(sorted);
    *out = c;
    return 0;

out_free:
    ud_strv_free(c, (size_t)n);
    free(sorted);
    return rc;
}

ud_dataset_t *ud_dataset_new(size_t n, struct ud_shape shape, int u8, const char *const *classes,
                             int nclasses, struct ud_err *e)
{
    if (!ud__shape_valid(shape)) {
        ud_err_set(e, UD_ESHAPE, "sample shape (%d, %d, %d) outside 1..%d", shape.c, shape.h,
                   shape.w, UD_MAX_DIM);
        return NULL;
    }
    if (nclasses < 1 || nclasses > UD_MAX_CLASSES) {
        ud_err_set(e, UD_ERANGE, "%d classes, expected 1..%d", nclasses, UD_MAX_CLASSES);
        return NULL;
    }
    size_t isize = ud_shape_size(shape);
    size_t esize = u8 ? 1 : sizeof(float);
    if (n > UD_DATA_MAX_SAMPLES || (uint64_t)n * isize * esize > UD_DATA_MAX_BYTES) {
        ud_err_set(e, UD_ELIMIT, "%zu samples of %zu values are over the dataset limit", n, isize);
        return NULL;
    }
    ud_dataset_t *ds = ud__dataset_alloc(e);
    if (!ds)
        return NULL;
    ds->n = n;
    ds->shape = shape;
    ds->isize = isize;
    ds->u8 = u8 != 0;
    /* At least one element, so that an empty dataset still has non-NULL arrays. */
    size_t cnt = n ? n : 1;
    if (ds->u8)
        ds->px = calloc(cnt * isize, 1);
    else
        ds->fx = calloc(cnt * isize, sizeof(float));
    ds->label = calloc(cnt, sizeof *ds->label);
    if ((ds->u8 ? (void *)ds->px : (void *)ds->fx) == NULL || !ds->label) {
        ud_err_set(e, UD_ENOMEM, "out of memory for %zu samples", n);
        goto out_destroy;
    }
    if (classes_copy(classes, nclasses, &ds->classes, e))
        goto out_destroy;
    ds->nclasses = nclasses;
    return ds;

out_destroy:
    ud_dataset_destroy(&ds);
    return NULL;
}

int ud_dataset_set_u8(ud_dataset_t *ds, size_t i, const uint8_t *pixels, int32_t label)
{
    assert(ds && pixels);
    if (!ds->u8)
        return UD_EINVAL;
    if (i >= ds->n || label < 0 || label >= ds->nclasses)
        return UD_ERANGE;
    memcpy(ds->px + i * ds->isize, pixels, ds->isize);
    ds->label[i] = label;
    return 0;
}

int ud_dataset_set_f32(ud_dataset_t *ds, size_t i, const float *x, int32_t label)
{
    assert(ds && x);
    if (ds->u8)
        return UD_EINVAL;
    if (i >= ds->n || label < 0 || label >= ds->nclasses)
        return UD_ERANGE;
    for (size_t k = 0; k < ds->isize; k++)
        if (!isfinite(x[k]))
            return UD_ENONFINITE;
    memcpy(ds->fx + i * ds->isize, x, ds->isize * sizeof *x);
    ds->label[i] = label;
    return 0;
}

void ud_dataset_destroy(ud_dataset_t **pds)
{
    if (!pds || !*pds)
        return;
    ud_dataset_t *ds = *pds;
    free(ds->px);
    free(ds->fx);
    free(ds->label);
    ud_strv_free(ds->classes, (size_t)ds->nclasses);
    free(ds->src_pool);
    free(ds->src_off);
    while (ds->views) {
        struct ud__data_view *v = ds->views;
        ds->views = v->next;
        free(v);
    }
    free(ds);
    *pds = NULL;
}

size_t ud_dataset_count(const ud_dataset_t *ds)
{
    return ds->n;
}

struct ud_shape ud_dataset_shape(const ud_dataset_t *ds)
{
    return ds->shape;
}

size_t ud_dataset_input_size(const ud_dataset_t *ds)
{
    return ds->isize;
}

int ud_dataset_num_classes(const ud_dataset_t *ds)
{
    return ds->nclasses;
}

const char *const *ud_dataset_classes(const ud_dataset_t *ds)
{
    return (const char *const *)ds->classes;
}

const uint8_t *ud_dataset_pixels(const ud_dataset_t *ds, size_t i)
{
    if (!ds->u8 || i >= ds->n)
        return NULL;
    return ds->px + i * ds->isize;
}

const char *ud_dataset_class_name(const ud_dataset_t *ds, int c)
{
    if (c < 0 || c >= ds->nclasses)
        return NULL;
    return ds->classes[c];
}

int32_t ud_dataset_label(const ud_dataset_t *ds, size_t i)
{
    if (i >= ds->n)
        return -1;
    return ds->label[i];
}

/* x[k] = p[k] / 255: the hot loop of every batch gather; an AVX2 clone where the CPU has it. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
static void
u8_to_unit_float(const uint8_t *restrict p, float *restrict x, size_t m)
{
    const float s = 1.0f / 255.0f;
    for (size_t k = 0; k < m; k++)
        x[k] = (float)p[k] * s;
}

int ud_dataset_get(const ud_dataset_t *ds, size_t i, float *x)
{
    if (i >= ds->n)
        return UD_ERANGE;
    size_t m = ds->isize;
    if (ds->u8) {
        u8_to_unit_float(ds->px + i * m, x, m);
    } else {
        memcpy(x, ds->fx + i * m, m * sizeof *x);
    }
    return 0;
}

size_t ud_dataset_skipped(const ud_dataset_t *ds)
{
    return ds->skipped;
}

const char *ud_dataset_source(const ud_dataset_t *ds, size_t i)
{
    if (i >= ds->n || !ds->src_pool)
        return NULL;
    return ds->src_off ? ds->src_pool + ds->src_off[i] : ds->src_pool;
}

/* ---- Class renumbering ---- */

int ud_dataset_map_classes(ud_dataset_t *ds, const char *const *classes, int nclasses,
                           struct ud_err *e)
{
    assert(ds && classes);
    if (nclasses < 1 || nclasses > UD_MAX_CLASSES)
        return ud_err_set(e, UD_ERANGE, "%d classes, expected 1..%d", nclasses, UD_MAX_CLASSES);
    int rc = 0;
    char **copy = NULL;
    int32_t *map = malloc((size_t)ds->nclasses * sizeof *map);
    if (!map)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    /* Copy first: it also rejects NULL and duplicate names. */
    rc = classes_copy(classes, nclasses, &copy, e);
    if (rc)
        goto out_free_map;
    for (int c = 0; c < ds->nclasses; c++) {
        map[c] = -1;
        for (int k = 0; k < nclasses; k++) {
            if (strcmp(ds->classes[c], copy[k]) == 0) {
                map[c] = k;
                break;
            }
        }
        if (map[c] < 0) {
            rc = ud_err_set(e, UD_ENOTFOUND,
                            "class \"%s\" of the data is not among the %d given classes",
                            ds->classes[c], nclasses);
            goto out_free_copy;
        }
    }
    for (size_t i = 0; i < ds->n; i++)
        ds->label[i] = map[ds->label[i]];
    ud_strv_free(ds->classes, (size_t)ds->nclasses);
    ds->classes = copy;
    ds->nclasses = nclasses;
    free(map);
    return 0;

out_free_copy:
    ud_strv_free(copy, (size_t)nclasses);
out_free_map:
    free(map);
    return rc;
}

/* ---- Batch provider ---- */

static size_t full_count(void *self)
{
    return ((ud_dataset_t *)self)->n;
}

static int full_get(void *self, size_t i, float *x, int32_t *label, struct ud_err *e)
{
    ud_dataset_t *ds = self;
    if (i >= ds->n)
        return ud_err_set(e, UD_ERANGE, "sample %zu out of range (the dataset has %zu)", i, ds->n);
    ud_dataset_get(ds, i, x);
    *label = ds->label[i];
    return 0;
}

static size_t view_count(void *self)
{
    return ((struct ud__data_view *)self)->n;
}

static int view_get(void *self, size_t i, float *x, int32_t *label, struct ud_err *e)
{
    struct ud__data_view *v = self;
    if (i >= v->n)
        return ud_err_set(e, UD_ERANGE, "sample %zu out of range (the provider has %zu)", i, v->n);
    size_t j = v->idx[i];
    if (j >= v->ds->n)
        return ud_err_set(e, UD_ERANGE, "index %zu at position %zu is outside the dataset (%zu)", j,
                          i, v->ds->n);
    ud_dataset_get(v->ds, j, x);
    *label = v->ds->label[j];
    return 0;
}

static size_t nomem_count(void *self)
{
    return 0;
}

static int nomem_get(void *self, size_t i, float *x, int32_t *label, struct ud_err *e)
{
    return ud_err_set(e, UD_ENOMEM, "the batch provider could not be set up (out of memory)");
}

static const struct ud_batch_provider_ops full_ops = {full_count, full_get};
static const struct ud_batch_provider_ops view_ops = {view_count, view_get};
static const struct ud_batch_provider_ops nomem_ops = {nomem_count, nomem_get};

void ud_dataset_provider(ud_dataset_t *ds, const uint32_t *idx, size_t n,
                         struct ud_batch_provider *out)
{
    assert(ds && out);
    if (!idx) {
        out->ops = &full_ops;
        out->self = ds;
        return;
    }
    struct ud__data_view *v;
    for (v = ds->views; v; v = v->next)
        if (v->idx == idx && v->n == n)
            break;
    if (!v) {
        v = malloc(sizeof *v);
        if (!v) {
            out->ops = &nomem_ops;
            out->self = NULL;
            return;
        }
        v->ds = ds;
        v->idx = idx;
        v->n = n;
        v->next = ds->views;
        ds->views = v;
    }
    out->ops = &view_ops;
    out->self = v;
}

/* ---- Loading: pick the loader by what src is ---- */

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcasecmp(s + ls - lx, suffix) == 0;
}

ud_dataset_t *ud_dataset_load(const char *src, const struct ud_load_opts *opts, struct ud_err *e)
{
    assert(src);
    struct stat st;
    if (stat(src, &st) != 0) {
        ud__data_errno(e, errno, "stat", src);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        /* A directory holding data.csv (what `updraft dataset partition` writes for tabular
         * data) is that CSV; any other directory holds class folders of images. */
        char csv[4096 + 16];
        struct stat cs;
        if ((size_t)snprintf(csv, sizeof csv, "%s/data.csv", src) < sizeof csv &&
            stat(csv, &cs) == 0 && S_ISREG(cs.st_mode))
            return ud_dataset_load_csv(csv, opts, e);
        return ud_dataset_load_images(src, opts, e);
    }
    if (ends_with_ci(src, ".csv"))
        return ud_dataset_load_csv(src, opts, e);
    return ud_dataset_load_idx(src, NULL, opts, e);
}

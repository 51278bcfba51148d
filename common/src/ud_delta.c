/*  ud_delta.c — model deltas over the updatable spans: compute, apply, check (contract:
 *  ud_delta.h; for people: docs/agent.md). The message that carries a delta is ud_update_msg.c.
 */
#include "updraft/ud_delta.h"

#include <math.h>

size_t ud_delta_size(const ud_model_t *m)
{
    const struct ud_span *sp;
    size_t ns = ud_model_updatable_spans(m, &sp), n = 0;
    for (size_t i = 0; i < ns; i++)
        n += sp[i].count;
    return n;
}

/* Same input, layers, sizes and updatable flags: then the spans and the buffers match too. */
static int same_shape(const ud_model_t *a, const ud_model_t *b, struct ud_err *e)
{
    const struct ud_arch *x = ud_model_arch(a), *y = ud_model_arch(b);
    if (x->input.c != y->input.c || x->input.h != y->input.h || x->input.w != y->input.w)
        return ud_err_set(e, UD_ESHAPE, "inputs differ: (%d, %d, %d) and (%d, %d, %d)", x->input.c,
                          x->input.h, x->input.w, y->input.c, y->input.h, y->input.w);
    if (x->nlayers != y->nlayers)
        return ud_err_set(e, UD_ESHAPE, "%d layers and %d layers", x->nlayers, y->nlayers);
    for (int i = 0; i < x->nlayers; i++) {
        const struct ud_layer_spec *p = &x->layer[i], *q = &y->layer[i];
        if (p->kind != q->kind || p->units != q->units || p->filters != q->filters ||
            p->kernel != q->kernel || p->stride != q->stride || p->pad != q->pad ||
            p->pool != q->pool)
            return ud_err_set(e, UD_ESHAPE, "layer %d differs (%s and %s)", i,
                              ud_layer_kind_name(p->kind), ud_layer_kind_name(q->kind));
        if (ud_model_layer_updatable(a, i) != ud_model_layer_updatable(b, i))
            return ud_err_set(e, UD_ESHAPE, "layer %d (%s) is updatable in one model only", i,
                              ud_layer_kind_name(p->kind));
    }
    if (ud_model_param_count(a) != ud_model_param_count(b))
        return ud_err_set(e, UD_ESHAPE, "%zu and %zu parameters", ud_model_param_count(a),
                          ud_model_param_count(b));
    return 0;
}

int ud_delta_compute(const ud_model_t *base, const ud_model_t *updated, float *out,
                     struct ud_err *e)
{
    int rc = same_shape(base, updated, e);
    if (rc < 0)
        return ud_err_prefix(e, "delta: the models differ");
    const struct ud_span *sp;
    size_t ns = ud_model_updatable_spans(base, &sp), k = 0;
    const float *b = ud_model_params_const(base), *u = ud_model_params_const(updated);
    for (size_t i = 0; i < ns; i++)
        for (size_t j = sp[i].offset; j < sp[i].offset + sp[i].count; j++)
            out[k++] = u[j] - b[j];
    return 0;
}

int ud_delta_apply(ud_model_t *m, const float *delta, size_t n, float scale, struct ud_err *e)
{
    size_t want = ud_delta_size(m);
    if (n != want)
        return ud_err_set(e, UD_ESHAPE, "delta: %zu values, the model's updatable layers hold %zu",
                          n, want);
    if (!isfinite(scale))
        return ud_err_set(e, UD_EINVAL, "delta: scale %g is not finite", (double)scale);
    const struct ud_span *sp;
    size_t ns = ud_model_updatable_spans(m, &sp), k = 0;
    float *p = ud_model_params(m);
    for (size_t i = 0; i < ns; i++)
        for (size_t j = sp[i].offset; j < sp[i].offset + sp[i].count; j++)
            p[j] += scale * delta[k++];
    return 0;
}

int ud_delta_check(const float *d, size_t n, double max_norm, double *norm, struct ud_err *e)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(d[i]))
            return ud_err_set(e, UD_ENONFINITE, "delta: value %zu of %zu is %s", i, n,
                              isnan(d[i]) ? "NaN" : "infinite");
        s += (double)d[i] * (double)d[i];
    }
    double l2 = sqrt(s);
    if (norm)
        *norm = l2;
    if (max_norm > 0 && l2 > max_norm)
        return ud_err_set(e, UD_ERANGE, "delta: L2 norm %.6g is over the limit %.6g", l2, max_norm);
    return 0;
}

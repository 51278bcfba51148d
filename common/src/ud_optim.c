/*  ud_optim.c — learning-rate schedules and the SGD / Adam optimizers (the hyper-parameters
 *  and their checks are in ud_update_params.c).
 *
 *  The optimizers follow PyTorch's torch.optim.SGD and torch.optim.Adam exactly, so that a
 *  model trained here and one trained in PyTorch from the same start agree up to float
 *  rounding:
 *    SGD:  g' = g + wd p;  v = m v + g' (first step: v = g');
 *          p -= lr (g' + m v) with Nesterov, else p -= lr v;  momentum 0 keeps no state.
 *    Adam: g' = g + wd p;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
 *          p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
 *
 *  The fast step is a set of straight loops over restrict-qualified float arrays that the
 *  compiler vectorises; ud_optim_step_reference does the same maths one element at a time in
 *  double precision and is what the unit tests hold the fast path to.
 */
#include "updraft/ud_optim.h"
#include "updraft/ud_update_params.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE__)
#include <immintrin.h>
#endif

struct ud_optim {
    struct ud_update_params p;
    size_t nparams;
    float *state; /* momentum: v (nparams); Adam: m then v (2 * nparams); plain SGD: NULL */
    size_t state_floats;
    int64_t steps; /* completed steps (Adam's t before this step; SGD: first-step test) */
};

/* ---- names ---- */

static const char *const optimizer_names[] = {[UD_OPT_SGD] = "sgd", [UD_OPT_ADAM] = "adam"};
static const char *const schedule_names[] = {
    [UD_LR_CONSTANT] = "constant", [UD_LR_STEP] = "step", [UD_LR_COSINE] = "cosine"};

/* names[v], or "unknown" for a value the table does not name. */
static const char *name_of(const char *const *names, size_t n, int v)
{
    return v >= 0 && (size_t)v < n && names[v] ? names[v] : "unknown";
}

/* The value names gives s, into *out; UD_EINVAL (and *out untouched) for any other s. */
static int value_of(const char *const *names, size_t n, const char *s, int *out)
{
    for (size_t v = 0; s && v < n; v++)
        if (names[v] && strcmp(s, names[v]) == 0) {
            *out = (int)v;
            return 0;
        }
    return UD_EINVAL;
}

#define NNAMES(a) (sizeof(a) / sizeof *(a))

const char *ud_optimizer_name(enum ud_optimizer o)
{
    return name_of(optimizer_names, NNAMES(optimizer_names), (int)o);
}

int ud_optimizer_parse(const char *s, enum ud_optimizer *out)
{
    int v, rc = value_of(optimizer_names, NNAMES(optimizer_names), s, &v);
    if (!rc)
        *out = (enum ud_optimizer)v;
    return rc;
}

const char *ud_lr_schedule_name(enum ud_lr_schedule s)
{
    return name_of(schedule_names, NNAMES(schedule_names), (int)s);
}

int ud_lr_schedule_parse(const char *s, enum ud_lr_schedule *out)
{
    int v, rc = value_of(schedule_names, NNAMES(schedule_names), s, &v);
    if (!rc)
        *out = (enum ud_lr_schedule)v;
    return rc;
}

double ud_lr_at(const struct ud_update_params *p, double base_lr, int64_t epoch, int64_t step,
                int64_t total_steps)
{
    switch (p->schedule) {
    case UD_LR_STEP: {
        int64_t every = p->step_epochs > 0 ? p->step_epochs : 1;
        int64_t k = epoch > 0 ? epoch / every : 0;
        return base_lr * pow(p->gamma, (double)k);
    }
    case UD_LR_COSINE: {
        if (total_steps <= 0)
            return base_lr;
        double t = (double)(step < 0 ? 0 : step > total_steps ? total_steps : step);
        return 0.5 * base_lr * (1.0 + cos(M_PI * t / (double)total_steps));
    }
    case UD_LR_CONSTANT:
        break;
    }
    return base_lr;
}

/* ---- the optimizer object ---- */

static size_t state_floats_for(const struct ud_update_params *p, size_t nparams)
{
    if (p->optimizer == UD_OPT_ADAM)
        return 2 * nparams;
    return p->momentum != 0 ? nparams : 0;
}

ud_optim_t *ud_optim_new(const struct ud_update_params *p, size_t nparams, struct ud_err *e)
{
    if (ud_update_params_check_runnable(p, e))
        return NULL;
    ud_optim_t *o = calloc(1, sizeof *o);
    if (!o) {
        ud_err_set(e, UD_ENOMEM, "optimizer: out of memory");
        return NULL;
    }
    o->p = *p;
    o->nparams = nparams;
    o->state_floats = state_floats_for(p, nparams);
    if (o->state_floats) {
        o->state = calloc(o->state_floats, sizeof *o->state);
        if (!o->state) {
            ud_err_set(e, UD_ENOMEM, "optimizer: cannot allocate %zu floats of state",
                       o->state_floats);
            free(o);
            return NULL;
        }
    }
    return o;
}

void ud_optim_destroy(ud_optim_t **o)
{
    if (!o || !*o)
        return;
    free((*o)->state);
    free(*o);
    *o = NULL;
}

int ud_optim_set_params(ud_optim_t *o, const struct ud_update_params *p, struct ud_err *e)
{
    int rc = ud_update_params_check_runnable(p, e);
    if (rc)
        return rc;
    size_t need = state_floats_for(p, o->nparams);
    int same_layout = need == o->state_floats && p->optimizer == o->p.optimizer;
    if (!same_layout) {
        /* A different state layout (SGD <-> Adam, momentum on or off) cannot carry the old
         * state over: start it afresh, like a new optimizer would. */
        float *s = NULL;
        if (need) {
            s = calloc(need, sizeof *s);
            if (!s)
                return ud_err_set(e, UD_ENOMEM, "optimizer: cannot allocate %zu floats of state",
                                  need);
        }
        free(o->state);
        o->state = s;
        o->state_floats = need;
        o->steps = 0;
    }
    o->p = *p;
    return 0;
}

float *ud_optim_state(ud_optim_t *o, size_t *state_floats)
{
    if (state_floats)
        *state_floats = o->state_floats;
    return o->state;
}

int64_t ud_optim_steps(const ud_optim_t *o)
{
    return o->steps;
}

void ud_optim_set_steps(ud_optim_t *o, int64_t steps)
{
    o->steps = steps;
}

/* ---- the fast step: one tight loop per variant, float maths, no aliasing ---- */

/* Each step loop also reports whether any gradient it read was NaN or infinite (an exponent
 * of all ones), in the same pass: integer maths on the float's bits, so the loops still
 * vectorise. */
static inline uint32_t nonfinite_bit(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

static uint32_t sgd_plain(float *restrict p, const float *restrict g, size_t n, float lr, float wd)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= nonfinite_bit(g[i]);
        p[i] -= lr * (g[i] + wd * p[i]);
    }
    return bad;
}

static uint32_t sgd_momentum(float *restrict p, const float *restrict g, float *restrict v,
                             size_t n, float lr, float wd, float m, int first, int nesterov)
{
    uint32_t bad = 0;
    /* The flags are loop-invariant: the compiler unswitches them into four plain loops. */
    for (size_t i = 0; i < n; i++) {
        bad |= nonfinite_bit(g[i]);
        float gi = g[i] + wd * p[i];
        float vi = first ? gi : m * v[i] + gi;
        v[i] = vi;
        p[i] -= lr * (nesterov ? gi + m * vi : vi);
    }
    return bad;
}

/* x[i] = sqrt(x[i]). sqrtf may set errno, which stops GCC vectorising any loop that calls it
 * unless the whole build has -fno-math-errno (the optimize attribute and pragma do not reach
 * it), so on x86 the square roots are done with the SSE/AVX instruction, which rounds exactly
 * as sqrtf does. */
static void sqrt_inplace(float *x, size_t n)
{
    size_t i = 0;
#if defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#endif
#if defined(__SSE__)
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        x[i] = sqrtf(x[i]);
}

#define UD_ADAM_BLOCK 512

/* Adam in blocks: moments (vectorised), square roots, then the parameter update
 * (vectorised). Same arithmetic, in the same order per element, as one fused loop. */
static uint32_t adam(float *restrict p, const float *restrict g, float *restrict m,
                     float *restrict v, size_t n, float wd, float b1, float c1, float b2, float c2,
                     float eps, float step_size, float inv_sqrt_bc2)
{
    uint32_t bad = 0;
    float d[UD_ADAM_BLOCK];
    for (size_t base = 0; base < n; base += UD_ADAM_BLOCK) {
        size_t len = n - base < UD_ADAM_BLOCK ? n - base : UD_ADAM_BLOCK;
        float *restrict pb = p + base, *restrict mb = m + base, *restrict vb = v + base;
        const float *restrict gb = g + base;
        for (size_t i = 0; i < len; i++) {
            bad |= nonfinite_bit(gb[i]);
            float gi = gb[i] + wd * pb[i];
            float mi = b1 * mb[i] + c1 * gi;
            float vi = b2 * vb[i] + c2 * gi * gi;
            mb[i] = mi;
            vb[i] = vi;
            d[i] = vi;
        }
        sqrt_inplace(d, len);
        for (size_t i = 0; i < len; i++)
            pb[i] -= step_size * mb[i] / (d[i] * inv_sqrt_bc2 + eps);
    }
    return bad;
}

static void check_spans(const ud_optim_t *o, const struct ud_span *spans, size_t nspans)
{
    for (size_t s = 0; s < nspans; s++)
        assert(spans[s].offset <= o->nparams && spans[s].count <= o->nparams - spans[s].offset);
    (void)o;
    (void)spans;
    (void)nspans;
}

/* One span of a step; the step count (Adam's bias correction) is o->steps + 1 throughout. */
static uint32_t step_span(ud_optim_t *o, float *params, const float *grads, struct ud_span sp,
                          double lr)
{
    const struct ud_update_params *hp = &o->p;
    const float wd = (float)hp->weight_decay;
    size_t off = sp.offset;
    if (hp->optimizer == UD_OPT_ADAM) {
        double t = (double)(o->steps + 1);
        double bc1 = 1.0 - pow(hp->beta1, t), bc2 = 1.0 - pow(hp->beta2, t);
        float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        /* 1 - beta in double: 1.0f - 0.999f is off by 1e-5 relative. */
        return adam(params + off, grads + off, o->state + off, o->state + o->nparams + off,
                    sp.count, wd, (float)hp->beta1, (float)(1.0 - hp->beta1), (float)hp->beta2,
                    (float)(1.0 - hp->beta2), (float)hp->eps, step_size, inv_sqrt_bc2);
    } else if (o->state) {
        return sgd_momentum(params + off, grads + off, o->state + off, sp.count, (float)lr, wd,
                            (float)hp->momentum, o->steps == 0, hp->nesterov);
    }
    return sgd_plain(params + off, grads + off, sp.count, (float)lr, wd);
}

void ud_optim_step(ud_optim_t *o, float *params, const float *grads, const struct ud_span *spans,
                   size_t nspans, double lr)
{
    check_spans(o, spans, nspans);
    for (size_t s = 0; s < nspans; s++)
        step_span(o, params, grads, spans[s], lr);
    o->steps++;
}

int ud_optim_step_span(ud_optim_t *o, float *params, const float *grads, struct ud_span span,
                       double lr)
{
    check_spans(o, &span, 1);
    return step_span(o, params, grads, span, lr) ? UD_ENONFINITE : 0;
}

void ud_optim_end_step(ud_optim_t *o)
{
    o->steps++;
}

/* ---- the reference step: element by element, double precision ---- */

void ud_optim_step_reference(ud_optim_t *o, float *params, const float *grads,
                             const struct ud_span *spans, size_t nspans, double lr)
{
    check_spans(o, spans, nspans);
    const struct ud_update_params *hp = &o->p;
    const double wd = hp->weight_decay;
    const double t = (double)(o->steps + 1);
    for (size_t s = 0; s < nspans; s++) {
        for (size_t k = 0; k < spans[s].count; k++) {
            size_t i = spans[s].offset + k;
            double p = params[i];
            double g = (double)grads[i] + wd * p;
            if (hp->optimizer == UD_OPT_ADAM) {
                double m = hp->beta1 * (double)o->state[i] + (1.0 - hp->beta1) * g;
                double v = hp->beta2 * (double)o->state[o->nparams + i] + (1.0 - hp->beta2) * g * g;
                o->state[i] = (float)m;
                o->state[o->nparams + i] = (float)v;
                double mhat = m / (1.0 - pow(hp->beta1, t));
                double vhat = v / (1.0 - pow(hp->beta2, t));
                p -= lr * mhat / (sqrt(vhat) + hp->eps);
            } else if (o->state) {
                double v = o->steps == 0 ? g : hp->momentum * (double)o->state[i] + g;
                o->state[i] = (float)v;
                p -= lr * (hp->nesterov ? g + hp->momentum * v : v);
            } else {
                p -= lr * g;
            }
            params[i] = (float)p;
        }
    }
    o->steps++;
}

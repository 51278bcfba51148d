/*  ud_optim.c — update hyper-parameters (MLParameterKey set), their validation against a
 *  model's allowed ranges, learning-rate schedules, and the SGD / Adam optimizers.
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

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE__)
#include <immintrin.h>
#endif

/* Largest global mini-batch we accept: the model's forward takes an int batch and the engine
 * allocates its batch buffers up front. */
#define UD_OPTIM_MAX_BATCH ((int64_t)1 << 20)
/* Upper ends of the ranges ud_update_defaults_from_params writes when the value is smaller. */
#define UD_DEFAULT_MAX_BATCH  65536
#define UD_DEFAULT_MAX_EPOCHS 1000000

struct ud_optim {
    struct ud_update_params p;
    size_t nparams;
    float *state; /* momentum: v (nparams); Adam: m then v (2 * nparams); plain SGD: NULL */
    size_t state_floats;
    int64_t steps; /* completed steps (Adam's t before this step; SGD: first-step test) */
};

/* ---- names ---- */

const char *ud_optimizer_name(enum ud_optimizer o)
{
    switch (o) {
    case UD_OPT_SGD:
        return "sgd";
    case UD_OPT_ADAM:
        return "adam";
    }
    return "unknown";
}

int ud_optimizer_parse(const char *s, enum ud_optimizer *out)
{
    if (!s)
        return UD_EINVAL;
    if (strcmp(s, "sgd") == 0)
        *out = UD_OPT_SGD;
    else if (strcmp(s, "adam") == 0)
        *out = UD_OPT_ADAM;
    else
        return UD_EINVAL;
    return 0;
}

const char *ud_lr_schedule_name(enum ud_lr_schedule s)
{
    switch (s) {
    case UD_LR_CONSTANT:
        return "constant";
    case UD_LR_STEP:
        return "step";
    case UD_LR_COSINE:
        return "cosine";
    }
    return "unknown";
}

int ud_lr_schedule_parse(const char *s, enum ud_lr_schedule *out)
{
    if (!s)
        return UD_EINVAL;
    if (strcmp(s, "constant") == 0)
        *out = UD_LR_CONSTANT;
    else if (strcmp(s, "step") == 0)
        *out = UD_LR_STEP;
    else if (strcmp(s, "cosine") == 0)
        *out = UD_LR_COSINE;
    else
        return UD_EINVAL;
    return 0;
}

/* ---- parameters ---- */

void ud_update_params_default(struct ud_update_params *p)
{
    memset(p, 0, sizeof *p);
    p->optimizer = UD_OPT_SGD;
    p->learning_rate = 0.01;
    p->momentum = 0.0;
    p->nesterov = 0;
    p->weight_decay = 0.0;
    p->beta1 = 0.9;
    p->beta2 = 0.999;
    p->eps = 1e-8;
    p->mini_batch_size = 32;
    p->epochs = 1;
    p->shuffle = 1;
    p->seed = 0;
    p->schedule = UD_LR_CONSTANT;
    p->step_epochs = 1;
    p->gamma = 0.1;
}

void ud_update_params_trainer_default(struct ud_update_params *p)
{
    ud_update_params_default(p);
    p->epochs = 10;
    p->mini_batch_size = 128;
    p->learning_rate = 0.05;
    p->momentum = 0.9;
}

static struct ud_param_double dparam(double v, double min, double max)
{
    /* Widen the range to hold the value, so that defaults made from any valid run are
     * consistent (a server run at lr 2 still writes a loadable model). */
    struct ud_param_double d = {v, min, max};
    if (v > d.max)
        d.max = v;
    if (v < d.min)
        d.min = v;
    return d;
}

static struct ud_param_int iparam(int64_t v, int64_t min, int64_t max)
{
    struct ud_param_int d = {v, min, max};
    if (v > d.max)
        d.max = v;
    if (v < d.min)
        d.min = v;
    return d;
}

void ud_update_defaults_from_params(struct ud_update_defaults *d, const struct ud_update_params *p)
{
    memset(d, 0, sizeof *d);
    d->optimizer = p->optimizer;
    d->learning_rate = dparam(p->learning_rate, 0.0, 1.0);
    d->momentum = dparam(p->momentum, 0.0, 1.0);
    d->weight_decay = dparam(p->weight_decay, 0.0, 1.0);
    d->beta1 = dparam(p->beta1, 0.0, 1.0);
    d->beta2 = dparam(p->beta2, 0.0, 1.0);
    d->eps = dparam(p->eps, 0.0, 1.0);
    d->mini_batch_size = iparam(p->mini_batch_size, 1, UD_DEFAULT_MAX_BATCH);
    d->epochs = iparam(p->epochs, 1, UD_DEFAULT_MAX_EPOCHS);
    /* Core ML's seed is an Int64; ours is the same 64 bits read as unsigned. Any seed is fine. */
    d->seed = iparam((int64_t)p->seed, INT64_MIN, INT64_MAX);
    d->shuffle = p->shuffle;
    d->nesterov = p->nesterov;
}

void ud_update_defaults_to_params(const struct ud_update_defaults *d, struct ud_update_params *p)
{
    p->optimizer = d->optimizer;
    p->learning_rate = d->learning_rate.value;
    p->momentum = d->momentum.value;
    p->weight_decay = d->weight_decay.value;
    p->beta1 = d->beta1.value;
    p->beta2 = d->beta2.value;
    p->eps = d->eps.value;
    p->mini_batch_size = d->mini_batch_size.value;
    p->epochs = d->epochs.value;
    p->seed = (uint64_t)d->seed.value;
    p->shuffle = d->shuffle;
    p->nesterov = d->nesterov;
    p->schedule = UD_LR_CONSTANT;
}

static int check_double(const char *key, double v, const struct ud_param_double *r,
                        struct ud_err *e)
{
    /* NaN fails every comparison, so test for "inside" rather than "outside". */
    if (!(r->min <= r->value && r->value <= r->max))
        return ud_err_set(e, UD_ERANGE,
                          "the model's default %s %.9g is outside its own allowed range "
                          "[%.9g, %.9g]",
                          key, r->value, r->min, r->max);
    if (!(r->min <= v && v <= r->max))
        return ud_err_set(e, UD_ERANGE, "%s %.9g is outside the model's allowed range [%.9g, %.9g]",
                          key, v, r->min, r->max);
    return 0;
}

static int check_int(const char *key, int64_t v, const struct ud_param_int *r, struct ud_err *e)
{
    if (!(r->min <= r->value && r->value <= r->max))
        return ud_err_set(e, UD_ERANGE,
                          "the model's default %s %lld is outside its own allowed range "
                          "[%lld, %lld]",
                          key, (long long)r->value, (long long)r->min, (long long)r->max);
    if (!(r->min <= v && v <= r->max))
        return ud_err_set(e, UD_ERANGE, "%s %lld is outside the model's allowed range [%lld, %lld]",
                          key, (long long)v, (long long)r->min, (long long)r->max);
    return 0;
}

int ud_update_params_check(const struct ud_update_params *p, const struct ud_update_defaults *d,
                           struct ud_err *e)
{
    int rc;
    if ((rc = check_double("learningRate", p->learning_rate, &d->learning_rate, e)) ||
        (rc = check_double("momentum", p->momentum, &d->momentum, e)) ||
        (rc = check_int("miniBatchSize", p->mini_batch_size, &d->mini_batch_size, e)) ||
        (rc = check_int("epochs", p->epochs, &d->epochs, e)) ||
        (rc = check_double("beta1", p->beta1, &d->beta1, e)) ||
        (rc = check_double("beta2", p->beta2, &d->beta2, e)) ||
        (rc = check_double("eps", p->eps, &d->eps, e)) ||
        (rc = check_int("seed", (int64_t)p->seed, &d->seed, e)) ||
        (rc = check_double("weightDecay", p->weight_decay, &d->weight_decay, e)))
        return rc;
    return 0;
}

int ud_update_params_validate(const struct ud_update_params *p, struct ud_err *e)
{
    if (p->optimizer != UD_OPT_SGD && p->optimizer != UD_OPT_ADAM)
        return ud_err_set(e, UD_EINVAL, "unknown optimizer %d (use sgd or adam)",
                          (int)p->optimizer);
    if (!isfinite(p->learning_rate) || p->learning_rate < 0)
        return ud_err_set(e, UD_ERANGE, "learningRate %g must be finite and >= 0",
                          p->learning_rate);
    if (!(p->momentum >= 0 && p->momentum < 1))
        return ud_err_set(e, UD_ERANGE, "momentum %g must be in [0, 1)", p->momentum);
    if (p->nesterov && p->optimizer == UD_OPT_SGD && p->momentum == 0)
        return ud_err_set(e, UD_EINVAL, "Nesterov momentum needs a momentum > 0");
    if (!isfinite(p->weight_decay) || p->weight_decay < 0)
        return ud_err_set(e, UD_ERANGE, "weightDecay %g must be finite and >= 0", p->weight_decay);
    if (!(p->beta1 >= 0 && p->beta1 < 1))
        return ud_err_set(e, UD_ERANGE, "beta1 %g must be in [0, 1)", p->beta1);
    if (!(p->beta2 >= 0 && p->beta2 < 1))
        return ud_err_set(e, UD_ERANGE, "beta2 %g must be in [0, 1)", p->beta2);
    if (!isfinite(p->eps) || p->eps <= 0)
        return ud_err_set(e, UD_ERANGE, "eps %g must be finite and > 0", p->eps);
    if (p->mini_batch_size < 1 || p->mini_batch_size > UD_OPTIM_MAX_BATCH)
        return ud_err_set(e, UD_ERANGE, "miniBatchSize %lld must be in [1, %lld]",
                          (long long)p->mini_batch_size, (long long)UD_OPTIM_MAX_BATCH);
    if (p->epochs < 1)
        return ud_err_set(e, UD_ERANGE, "epochs %lld must be >= 1", (long long)p->epochs);
    switch (p->schedule) {
    case UD_LR_CONSTANT:
    case UD_LR_COSINE:
        break;
    case UD_LR_STEP:
        if (p->step_epochs < 1)
            return ud_err_set(e, UD_ERANGE, "step schedule: step_epochs %lld must be >= 1",
                              (long long)p->step_epochs);
        if (!isfinite(p->gamma) || p->gamma <= 0)
            return ud_err_set(e, UD_ERANGE, "step schedule: gamma %g must be finite and > 0",
                              p->gamma);
        break;
    default:
        return ud_err_set(e, UD_EINVAL, "unknown learning-rate schedule %d", (int)p->schedule);
    }
    return 0;
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
    if (ud_update_params_validate(p, e))
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
    int rc = ud_update_params_validate(p, e);
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

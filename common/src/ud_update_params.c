/*  ud_update_params.c — the update engine's hyper-parameters (MLParameterKey set): defaults,
 *  a model's defaults and allowed ranges, and the two checks (can a run use them; does the
 *  model allow them).
 */
#include "updraft/ud_update_params.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Largest global mini-batch we accept: the model's forward takes an int batch and the engine
 * allocates its batch buffers up front. */
#define UD_MAX_MINI_BATCH ((int64_t)1 << 20)
/* Upper ends of the ranges ud_update_defaults_from_params writes when the value is smaller. */
#define UD_DEFAULT_MAX_BATCH  65536
#define UD_DEFAULT_MAX_EPOCHS 1000000

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

/* A default of type T (struct ud_param_double or ud_param_int) with the range [lo, hi], widened
 * to hold the value, so that defaults made from any valid run are consistent (a server run at
 * lr 2 still writes a loadable model). A NaN value leaves the range alone. */
#define WIDENED(T, v, lo, hi) ((T){(v), (v) < (lo) ? (v) : (lo), (v) > (hi) ? (v) : (hi)})
#define dparam(v, lo, hi)     WIDENED(struct ud_param_double, v, lo, hi)
#define iparam(v, lo, hi)     WIDENED(struct ud_param_int, v, lo, hi)

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

int ud_update_params_check_model_ranges(const struct ud_update_params *p,
                                        const struct ud_update_defaults *d, struct ud_err *e)
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

int ud_update_params_check_runnable(const struct ud_update_params *p, struct ud_err *e)
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
    if (p->mini_batch_size < 1 || p->mini_batch_size > UD_MAX_MINI_BATCH)
        return ud_err_set(e, UD_ERANGE, "miniBatchSize %lld must be in [1, %lld]",
                          (long long)p->mini_batch_size, (long long)UD_MAX_MINI_BATCH);
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

/*  ud_eval.c — scoring (MLClassifierMetrics: accuracy, loss, confusion, precision, recall) and
 *  prediction. */
#include "updraft/ud_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Index of the largest of p[0..n). */
static int argmax(const float *p, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (p[k] > p[best])
            best = k;
    return best;
}

static int result_init(struct ud_eval_result *r, int nclasses)
{
    memset(r, 0, sizeof *r);
    r->nclasses = nclasses;
    r->confusion = calloc((size_t)nclasses * nclasses, sizeof *r->confusion);
    r->precision = calloc((size_t)nclasses, sizeof *r->precision);
    r->recall = calloc((size_t)nclasses, sizeof *r->recall);
    if (!r->confusion || !r->precision || !r->recall) {
        ud_eval_result_deinit(r);
        return UD_ENOMEM;
    }
    return 0;
}

void ud_eval_result_finish(struct ud_eval_result *r)
{
    int C = r->nclasses;
    uint64_t diag = 0, total = 0;
    for (int t = 0; t < C; t++)
        for (int p = 0; p < C; p++) {
            total += r->confusion[(size_t)t * C + p];
            if (t == p)
                diag += r->confusion[(size_t)t * C + p];
        }
    r->accuracy = total ? (double)diag / (double)total : NAN;
    for (int c = 0; c < C; c++) {
        uint64_t tp = r->confusion[(size_t)c * C + c], predicted = 0, actual = 0;
        for (int k = 0; k < C; k++) {
            predicted += r->confusion[(size_t)k * C + c];
            actual += r->confusion[(size_t)c * C + k];
        }
        r->precision[c] = predicted ? (double)tp / (double)predicted : NAN;
        r->recall[c] = actual ? (double)tp / (double)actual : NAN;
    }
}

int ud_model_evaluate(ud_model_t *m, const struct ud_batch_provider *p, int batch,
                      struct ud_eval_result *r, struct ud_err *e)
{
    int C = ud_model_num_classes(m);
    size_t n = ud_batch_provider_count(p), in = ud_model_input_size(m);
    if (batch <= 0)
        batch = 256;
    if (result_init(r, C))
        return ud_err_set(e, UD_ENOMEM, "out of memory for a %d-class confusion matrix", C);
    float *x = malloc(sizeof(float) * in * (size_t)batch);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    int rc = 0;
    double loss_sum = 0.0;
    if (!x || !y) {
        rc = ud_err_set(e, UD_ENOMEM, "out of memory for an evaluation batch of %d", batch);
        goto out;
    }
    for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
        int B = (int)(n - i0 < (size_t)batch ? n - i0 : (size_t)batch);
        for (int b = 0; b < B; b++)
            if ((rc = ud_batch_provider_get(p, i0 + b, x + (size_t)b * in, &y[b], e)))
                goto out;
        for (int b = 0; b < B; b++)
            if (y[b] < 0 || y[b] >= C) {
                rc = ud_err_set(e, UD_ERANGE, "sample %zu has label %d; the model has %d classes",
                                i0 + b, (int)y[b], C);
                goto out;
            }
        if ((rc = ud_model_forward(m, x, B, false))) {
            ud_err_set(e, rc, "forward pass of %d samples failed", B);
            goto out;
        }
        const float *prob = ud_model_output(m);
        for (int b = 0; b < B; b++) {
            const float *pr = prob + (size_t)b * C;
            int best = argmax(pr, C);
            r->confusion[(size_t)y[b] * C + best]++;
            float pt = pr[y[b]];
            loss_sum += -log(pt > 1e-30f ? (double)pt : 1e-30);
        }
    }
    r->n = n;
    r->loss = n ? loss_sum / (double)n : NAN;
    ud_eval_result_finish(r);
out:
    free(x);
    free(y);
    if (rc)
        ud_eval_result_deinit(r);
    return rc;
}

int ud_eval_result_merge(struct ud_eval_result *a, const struct ud_eval_result *b)
{
    if (a->nclasses != b->nclasses)
        return UD_ESHAPE;
    size_t cc = (size_t)a->nclasses * a->nclasses;
    for (size_t i = 0; i < cc; i++)
        a->confusion[i] += b->confusion[i];
    size_t n = a->n + b->n;
    a->loss = n ? (a->loss * (double)a->n + b->loss * (double)b->n) / (double)n : NAN;
    if (a->n == 0)
        a->loss = b->loss;
    else if (b->n == 0)
        a->loss = a->loss;
    a->n = n;
    ud_eval_result_finish(a);
    return 0;
}

void ud_eval_result_deinit(struct ud_eval_result *r)
{
    free(r->confusion);
    free(r->precision);
    free(r->recall);
    r->confusion = NULL;
    r->precision = r->recall = NULL;
}

int ud_model_predict(ud_model_t *m, const float *x, int B, int32_t *cls, float *confidence)
{
    int rc = ud_model_forward(m, x, B, false);
    if (rc)
        return rc;
    int C = ud_model_num_classes(m);
    const float *prob = ud_model_output(m);
    for (int b = 0; b < B; b++) {
        const float *pr = prob + (size_t)b * C;
        int best = argmax(pr, C);
        cls[b] = best;
        if (confidence)
            confidence[b] = pr[best];
    }
    return 0;
}

void ud_eval_write_confusion(FILE *f, const ud_model_t *m, const struct ud_eval_result *r)
{
    int C = r->nclasses;
    fprintf(f, "\nconfusion matrix (rows: true label, columns: predicted)\n%14s", "");
    for (int p = 0; p < C; p++)
        fprintf(f, " %6d", p);
    fprintf(f, "   recall\n");
    for (int t = 0; t < C; t++) {
        fprintf(f, "%2d %-11.11s", t, ud_model_label(m, t));
        for (int p = 0; p < C; p++)
            fprintf(f, " %6llu", (unsigned long long)r->confusion[(size_t)t * C + p]);
        fprintf(f, "   %.3f\n", r->recall[t]);
    }
    fprintf(f, "%14s", "precision");
    for (int p = 0; p < C; p++)
        fprintf(f, " %6.3f", r->precision[p]);
    fprintf(f, "\n");
}

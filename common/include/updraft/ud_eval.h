/*  ud_eval.h — scoring a model: Create ML's MLClassifierMetrics, and predictions. */
#ifndef UD_EVAL_H
#define UD_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "updraft/ud_data.h"
#include "updraft/ud_model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ud_eval_result {
    size_t n; /* samples scored */
    int nclasses;
    double accuracy;     /* 1 - classificationError */
    double loss;         /* mean cross-entropy */
    uint64_t *confusion; /* (nclasses, nclasses): [true][predicted] counts; owned */
    double *precision;   /* per class; NaN where nothing was predicted as that class; owned */
    double *recall;      /* per class; NaN where the class has no samples; owned */
};

/* Scores m on every sample of p, batch samples at a time (0: 256). r is filled and must be
 * released with ud_eval_result_deinit. */
int ud_model_evaluate(ud_model_t *m, const struct ud_batch_provider *p, int batch,
                      struct ud_eval_result *r, struct ud_err *e);
/* Adds the counts of b into a (same nclasses): for sharded evaluation, then recomputes the
 * derived fields with ud_eval_result_finish. loss is combined weighted by n. */
int ud_eval_result_merge(struct ud_eval_result *a, const struct ud_eval_result *b);
/* Recomputes accuracy, precision and recall from the confusion matrix. */
void ud_eval_result_finish(struct ud_eval_result *r);
void ud_eval_result_deinit(struct ud_eval_result *r);

/* Writes r's confusion matrix as a table to f: a row per true label (index, label, counts,
 * recall), a precision row under it. For programs' human-readable output. */
void ud_eval_write_confusion(FILE *f, const ud_model_t *m, const struct ud_eval_result *r);

/* Predicts B samples x (B, input_size): class index and its probability for each. */
int ud_model_predict(ud_model_t *m, const float *x, int B, int32_t *cls, float *confidence);

#ifdef __cplusplus
}
#endif
#endif

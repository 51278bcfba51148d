/*  bench_step.c — the training step alone, and the machine's sgemm peak.
 *
 *  Times forward + backward + SGD-momentum step of the reference models on random data
 *  (one BLAS thread unless UD_THREADS says otherwise), and a large single-thread sgemm, and
 *  prints samples/s, achieved GFLOP/s and the fraction of the sgemm peak. The FLOP count is the
 *  GEMM work a step must do (forward 2*MACs, weight gradients 2*MACs, input gradients 2*MACs
 *  except for the first layer), the same count for us and for PyTorch.
 *
 *  usage: bench_step [mlp|cnn] [batch] [seconds]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_clock.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_model.h"
#include "updraft/ud_optim.h"

static double sgemm_peak(double seconds)
{
    int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++)
        a[i] = b[i] = (float)(i % 7) * 0.1f;
    ud_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 0;
    double t_end = ud_clock_mono() + seconds;
    while (ud_clock_mono() < t_end) {
        double t0 = ud_clock_mono();
        ud_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * n / (ud_clock_mono() - t0) / 1e9;
        best = g > best ? g : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* GEMM FLOPs of one training sample (see the box above). */
static double step_flops(const ud_model_t *m)
{
    const struct ud_arch *a = ud_model_arch(m);
    double f = 0;
    int first = 1;
    for (int i = 0; i < a->nlayers; i++) {
        const struct ud_layer_spec *L = &a->layer[i];
        struct ud_shape in = ud_arch_shape(a, i - 1), out = ud_arch_shape(a, i);
        double macs = 0;
        if (L->kind == UD_LAYER_DENSE)
            macs = (double)ud_shape_size(in) * L->units;
        else if (L->kind == UD_LAYER_CONV2D)
            macs = (double)out.c * out.h * out.w * in.c * L->kernel * L->kernel;
        else
            continue;
        f += 2 * macs * (first ? 2 : 3);
        first = 0;
    }
    return f;
}

int main(int argc, char **argv)
{
    const char *kind = argc > 1 ? argv[1] : "mlp";
    int B = argc > 2 ? atoi(argv[2]) : 128;
    double seconds = argc > 3 ? atof(argv[3]) : 3.0;
    const char *th = getenv("UD_THREADS");
    ud_kernels_set_threads(th ? atoi(th) : 1);
    struct ud_arch a;
    struct ud_err e = {0};
    if (ud_arch_preset(kind, (struct ud_shape){0}, 10, &a, &e)) {
        fprintf(stderr, "bench_step: %s\n", e.msg);
        return 2;
    }
    ud_model_t *m = ud_model_new(&a, &e);
    ud_model_init_params(m, 1);
    size_t in = ud_model_input_size(m), np = ud_model_param_count(m);
    float *x = malloc(sizeof(float) * in * B);
    int32_t *y = malloc(sizeof(int32_t) * B);
    for (size_t i = 0; i < in * (size_t)B; i++)
        x[i] = (float)((i * 2654435761u) % 256) / 255.0f;
    for (int b = 0; b < B; b++)
        y[b] = b % 10;
    struct ud_update_params p;
    ud_update_params_default(&p);
    p.momentum = 0.9;
    ud_optim_t *o = ud_optim_new(&p, np, &e);
    const struct ud_span *spans;
    size_t nspans = ud_model_updatable_spans(m, &spans);
    /* warm up, then time whole steps */
    long steps = 0;
    double t0 = ud_clock_mono(), warm = t0 + 0.3, t_end = warm + seconds, tw = 0;
    while (ud_clock_mono() < t_end) {
        if (steps == 0 && ud_clock_mono() >= warm) {
            tw = ud_clock_mono();
        }
        ud_model_forward(m, x, B, true);
        ud_model_backward(m, y, B, 1.0f / B, NULL, NULL);
        ud_optim_step(o, ud_model_params(m), ud_model_grads(m), spans, nspans, 0.01);
        if (tw > 0)
            steps++;
    }
    double dt = ud_clock_mono() - tw;
    double sps = steps * B / dt;
    double gflops = sps * step_flops(m) / 1e9;
    double peak = sgemm_peak(1.0);
    printf("RESULT bench_step kind=%s batch=%d samples_per_s=%.0f step_gflops=%.1f "
           "sgemm_peak_gflops=%.1f fraction_of_peak=%.3f blas=\"%s\"\n",
           kind, B, sps, gflops, peak, gflops / peak, ud_kernels_describe());
    ud_optim_destroy(&o);
    ud_model_destroy(&m);
    free(x);
    free(y);
    return 0;
}

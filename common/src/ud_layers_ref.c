/*  ud_layers_ref.c — the reference backend: every layer with weights, and max pooling, as
 *  naive loops over (B, C, H, W) tensors, summing in double precision.
 *
 *  Easy to read and to trust, and slow: this is what the fast backend (ud_layers.c) is tested
 *  against (test_model's fast-vs-reference checks), and what UD_BACKEND_REFERENCE runs. The
 *  layers without weights (ReLU, dropout, flatten, softmax) are the same plain loops in both
 *  backends and live in ud_layers.c. Max pooling of any window size is here too: the fast
 *  backend falls back to it when its 2x2 kernels do not apply.
 */
#include "ud_model_impl.h"

#include <stdlib.h>
#include <string.h>

void ud__ref_dense_forward(const float *x, const float *W, const float *bias, float *y, int B,
                           int in, int out)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < out; o++) {
            double s = bias[o];
            for (int k = 0; k < in; k++)
                s += (double)x[(size_t)b * in + k] * W[(size_t)o * in + k];
            y[(size_t)b * out + o] = (float)s;
        }
}

void ud__ref_dense_backward(const float *x, const float *W, const float *dy, float *dW, float *db,
                            float *dx, int B, int in, int out)
{
    for (int o = 0; o < out; o++) {
        double sb = 0;
        for (int b = 0; b < B; b++)
            sb += dy[(size_t)b * out + o];
        db[o] = (float)sb;
        for (int k = 0; k < in; k++) {
            double s = 0;
            for (int b = 0; b < B; b++)
                s += (double)dy[(size_t)b * out + o] * x[(size_t)b * in + k];
            dW[(size_t)o * in + k] = (float)s;
        }
    }
    if (dx)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < in; k++) {
                double s = 0;
                for (int o = 0; o < out; o++)
                    s += (double)dy[(size_t)b * out + o] * W[(size_t)o * in + k];
                dx[(size_t)b * in + k] = (float)s;
            }
}

/* Visits every tap of a convolution: output element yi (of filter f) takes x[xi] * W[wi].
 * Outputs in (b, f, oy, ox) order, each one's taps in (c, ky, kx) order; taps that fall in the
 * padding are skipped. Forward and backward walk the same taps, so they cannot disagree. */
struct conv_tap_fn {
    void (*tap)(struct conv_tap_fn *fn, size_t yi, size_t xi, size_t wi);
};

static void conv_taps(int B, struct ud_shape in, struct ud_shape out, const struct ud_layer_spec *A,
                      struct conv_tap_fn *fn)
{
    int K = A->kernel, S = A->stride, P = A->pad;
    size_t yi = 0;
    for (int b = 0; b < B; b++)
        for (int f = 0; f < out.c; f++)
            for (int oy = 0; oy < out.h; oy++)
                for (int ox = 0; ox < out.w; ox++, yi++)
                    for (int c = 0; c < in.c; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int iy = oy * S - P + ky, ix = ox * S - P + kx;
                                if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w)
                                    continue;
                                fn->tap(fn, yi, (((size_t)b * in.c + c) * in.h + iy) * in.w + ix,
                                        (((size_t)f * in.c + c) * K + ky) * K + kx);
                            }
}

struct conv_fwd {
    struct conv_tap_fn fn;
    const float *x, *W;
    double *y;
};

static void conv_fwd_tap(struct conv_tap_fn *fn, size_t yi, size_t xi, size_t wi)
{
    struct conv_fwd *c = (struct conv_fwd *)fn;
    c->y[yi] += (double)c->x[xi] * c->W[wi];
}

int ud__ref_conv_forward(const float *x, const float *W, const float *bias, float *y, int B,
                         struct ud_shape in, struct ud_shape out, const struct ud_layer_spec *A)
{
    size_t hw = (size_t)out.h * out.w, n = (size_t)B * out.c * hw;
    struct conv_fwd c = {{conv_fwd_tap}, x, W, malloc(n * sizeof(double))};
    if (!c.y)
        return UD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        c.y[i] = bias[i / hw % (size_t)out.c];
    conv_taps(B, in, out, A, &c.fn);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)c.y[i];
    free(c.y);
    return 0;
}

struct conv_bwd {
    struct conv_tap_fn fn;
    const float *x, *W, *dy;
    double *gw;
    float *dx;
};

static void conv_bwd_tap(struct conv_tap_fn *fn, size_t yi, size_t xi, size_t wi)
{
    struct conv_bwd *c = (struct conv_bwd *)fn;
    float g = c->dy[yi];
    c->gw[wi] += (double)g * c->x[xi];
    if (c->dx)
        c->dx[xi] += g * c->W[wi];
}

int ud__ref_conv_backward(const float *x, const float *W, const float *dy, float *dW, float *db,
                          float *dx, int B, struct ud_shape in, struct ud_shape out,
                          const struct ud_layer_spec *A)
{
    size_t nw = (size_t)out.c * in.c * A->kernel * A->kernel, hw = (size_t)out.h * out.w;
    struct conv_bwd c = {{conv_bwd_tap}, x, W, dy, calloc(nw + (size_t)out.c, sizeof(double)), dx};
    if (!c.gw)
        return UD_ENOMEM;
    double *gb = c.gw + nw;
    if (dx)
        memset(dx, 0, (size_t)B * ud_shape_size(in) * sizeof(float));
    for (size_t i = 0; i < (size_t)B * out.c * hw; i++)
        gb[i / hw % (size_t)out.c] += dy[i];
    conv_taps(B, in, out, A, &c.fn);
    if (dW) {
        for (size_t i = 0; i < nw; i++)
            dW[i] = (float)c.gw[i];
        for (int f = 0; f < out.c; f++)
            db[f] = (float)gb[f];
    }
    free(c.gw);
    return 0;
}

void ud__ref_maxpool_forward(const float *in, float *out, int32_t *argmax, size_t planes, int H,
                             int W, int P)
{
    int Ho = H / P, Wo = W / P;
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * (size_t)H * W;
        float *y = out + p * (size_t)Ho * Wo;
        int32_t *am = argmax + p * (size_t)Ho * Wo;
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                int best = (oy * P) * W + ox * P;
                float bv = x[best];
                for (int dy = 0; dy < P; dy++)
                    for (int dx = 0; dx < P; dx++) {
                        int idx = (oy * P + dy) * W + ox * P + dx;
                        if (x[idx] > bv) {
                            bv = x[idx];
                            best = idx;
                        }
                    }
                y[oy * Wo + ox] = bv;
                am[oy * Wo + ox] = best;
            }
    }
}

void ud__ref_maxpool_backward(const float *dout, float *din, const int32_t *argmax, size_t planes,
                              int H, int W, int P)
{
    int Ho = H / P, Wo = W / P;
    memset(din, 0, planes * (size_t)H * W * sizeof(float));
    for (size_t p = 0; p < planes; p++) {
        const float *d = dout + p * (size_t)Ho * Wo;
        const int32_t *am = argmax + p * (size_t)Ho * Wo;
        float *g = din + p * (size_t)H * W;
        for (int k = 0; k < Ho * Wo; k++)
            g[am[k]] += d[k];
    }
}

/*  ud_layers.c — forward and backward passes of every layer, the fast backend's kernels, and
 *  the per-layer plan that picks a kernel (and a fusion) for each layer.
 *
 *  The fast backend uses GEMM (ud_sgemm) for dense and conv layers, im2col over the whole batch
 *  (or Winograd, ud_conv_wino.c), and keeps conv/pool activations channel-major (C, B, H, W) so
 *  that no transposes are needed until flatten. The reference backend's naive kernels are in
 *  ud_layers_ref.c; the layers without weights (ReLU, dropout, flatten, softmax) are the same
 *  loops in both. ud__model_reserve plans every layer for both backends once (struct
 *  ud_layer_plan); forward_layer and backward_layer only follow the plan. Tests check the two
 *  backends against each other and against finite differences.
 */
#include "ud_model_impl.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_kernels.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ud__model_layout(struct ud_model *m)
{
    struct ud_shape s = m->arch.input;
    size_t off = 0;
    m->input_size = ud_shape_size(s);
    m->nspans = 0;
    m->lowest_updatable = -1;
    for (int i = 0; i < m->arch.nlayers; i++) {
        const struct ud_layer_spec *A = &m->arch.layer[i];
        struct ud_layer_rt *L = &m->L[i];
        L->in = s;
        L->out = s = ud_arch_shape(&m->arch, i);
        L->in_size = ud_shape_size(L->in);
        L->out_size = ud_shape_size(L->out);
        L->w = L->b = (struct ud_span){0, 0};
        if (A->kind == UD_LAYER_DENSE) {
            L->w = (struct ud_span){off, L->in_size * (size_t)A->units};
            L->b = (struct ud_span){off + L->w.count, (size_t)A->units};
        } else if (A->kind == UD_LAYER_CONV2D) {
            L->w = (struct ud_span){off, (size_t)A->filters * L->in.c * A->kernel * A->kernel};
            L->b = (struct ud_span){off + L->w.count, (size_t)A->filters};
        }
        off += L->w.count + L->b.count;
        if (L->w.count && A->updatable) {
            m->spans[m->nspans++] = L->w;
            m->spans[m->nspans++] = L->b;
            if (m->lowest_updatable < 0)
                m->lowest_updatable = i;
        }
        if (A->kind == UD_LAYER_DENSE)
            m->nclasses = A->units; /* the last dense layer wins */
    }
    m->nparams = off;
}

void ud__model_free_workspace(struct ud_model *m)
{
    free(m->x_in);
    free(m->probs);
    free(m->delta[0]);
    free(m->delta[1]);
    for (int i = 0; i < UD_MAX_LAYERS; i++) {
        struct ud_layer_rt *L = &m->L[i];
        free(m->bufs[i]);
        free(L->col);
        free(L->argmax);
        free(L->mask);
        m->bufs[i] = L->col = L->mask = NULL;
        L->argmax = NULL;
    }
    m->x_in = m->probs = m->delta[0] = m->delta[1] = NULL;
    m->cap = 0;
    m->last_B = 0;
}

static void *walloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return NULL;
    return p;
}

/* The fast conv works on chunks of samples so that the im2col columns of a chunk (and the
 * GEMM's output block) stay in L2 instead of streaming a (C*K*K, B*Ho*Wo) matrix through
 * memory: for the cnn's second conv at B = 128 that matrix is 29 MB. */
#define UD_CONV_CHUNK_FLOATS (160u * 1024u) /* 640 KB of columns per chunk */

static int conv_chunk(const struct ud_layer_rt *L, const struct ud_layer_spec *A)
{
    /* The chunk's output block counts too: with few input channels (the cnn's first conv: 9
     * rows of columns, 32 filters) it is the larger part. */
    size_t per =
        ((size_t)L->in.c * A->kernel * A->kernel + (size_t)A->filters) * L->out.h * L->out.w;
    size_t n = per >= UD_CONV_CHUNK_FLOATS ? 1 : UD_CONV_CHUNK_FLOATS / per;
    return n > 4096 ? 4096 : (int)n;
}

/* ---------------------------------------------------------------------- the plan */

static enum ud_layer_kind kind_at(const struct ud_model *m, int i)
{
    return i >= 0 && i < m->arch.nlayers ? m->arch.layer[i].kind : (enum ud_layer_kind)0;
}

/* Fast backend: the index of the max pool that conv i runs in its own forward, or 0. A 2x2 pool
 * right above it (past a ReLU) whose windows are the Winograd output tiles (any H, W), or tile
 * an even im2col output: the conv's output then need not be stored at all. */
static int conv_fused_pool(const struct ud_model *m, int i)
{
    if (kind_at(m, i) != UD_LAYER_CONV2D)
        return 0;
    const struct ud_layer_rt *L = &m->L[i];
    int j = i + 1 + (kind_at(m, i + 1) == UD_LAYER_RELU);
    if (kind_at(m, j) != UD_LAYER_MAXPOOL2D || m->arch.layer[j].pool != 2)
        return 0;
    int even = L->out.h % 2 == 0 && L->out.w % 2 == 0;
    return ud__wino_applies(L, &m->arch.layer[i]) || even ? j : 0;
}

/* Fast backend: max pool i runs the 2x2 tiling kernels (when no conv below runs it). */
static int pool2_applies(const struct ud_model *m, int i)
{
    const struct ud_layer_rt *L = &m->L[i];
    return m->arch.layer[i].pool == 2 && L->in.h % 2 == 0 && L->in.w % 2 == 0;
}

/* Fast backend: max pool i is run by the conv below it (conv_fused_pool). */
static int pool_fused_below(const struct ud_model *m, int i)
{
    return i > 0 && (conv_fused_pool(m, i - 1) == i || conv_fused_pool(m, i - 2) == i);
}

/* Plans layer i for the fast backend: the fusions (dense+ReLU, conv+ReLU(+2x2 pool) through
 * im2col or Winograd, pool2 gating the ReLU below) and the layouts (conv and pool outputs
 * channel-major, so that one GEMM covers the whole batch; flatten turns them back). */
static void plan_fast(const struct ud_model *m, int i, int layout, struct ud_layer_plan *p)
{
    const struct ud_layer_spec *A = &m->arch.layer[i];
    const struct ud_layer_rt *L = &m->L[i];
    switch (A->kind) {
    case UD_LAYER_DENSE:
        p->op = UD_OP_DENSE;
        p->relu = kind_at(m, i + 1) == UD_LAYER_RELU;
        break;
    case UD_LAYER_CONV2D: {
        int wino = ud__wino_applies(L, A);
        p->relu = kind_at(m, i + 1) == UD_LAYER_RELU;
        p->pool = conv_fused_pool(m, i);
        p->op = wino ? (p->pool ? UD_OP_WINO_POOL : UD_OP_WINO)
                     : (p->pool ? UD_OP_CONV_POOL : UD_OP_CONV);
        p->chunk = wino ? ud__wino_chunk(L, A) : conv_chunk(L, A);
        layout = UD_LAYOUT_CBHW;
        break;
    }
    case UD_LAYER_MAXPOOL2D:
        p->op = pool_fused_below(m, i) ? UD_OP_NONE
                : pool2_applies(m, i)  ? UD_OP_MAXPOOL2
                                       : UD_OP_MAXPOOL;
        p->gate = p->op == UD_OP_MAXPOOL2 && kind_at(m, i - 1) == UD_LAYER_RELU;
        break;
    case UD_LAYER_RELU: {
        enum ud_layer_kind below = kind_at(m, i - 1);
        p->op = UD_OP_RELU;
        p->skip_fwd = below == UD_LAYER_DENSE || below == UD_LAYER_CONV2D;
        p->skip_bwd = kind_at(m, i + 1) == UD_LAYER_MAXPOOL2D &&
                      (pool_fused_below(m, i + 1) || pool2_applies(m, i + 1));
        break;
    }
    case UD_LAYER_DROPOUT:
        p->op = UD_OP_DROPOUT;
        break;
    case UD_LAYER_FLATTEN:
        p->op = UD_OP_FLATTEN;
        layout = UD_LAYOUT_BCHW;
        break;
    case UD_LAYER_SOFTMAX:
        p->op = UD_OP_SOFTMAX;
        break;
    }
    p->layout_out = layout;
}

/* Plans layer i for the reference backend: one plain kernel per layer, no fusion, (B, C, H, W)
 * throughout. */
static void plan_reference(const struct ud_model *m, int i, struct ud_layer_plan *p)
{
    static const enum ud_op ops[] = {
        [UD_LAYER_DENSE] = UD_OP_DENSE_REF,   [UD_LAYER_CONV2D] = UD_OP_CONV_REF,
        [UD_LAYER_MAXPOOL2D] = UD_OP_MAXPOOL, [UD_LAYER_RELU] = UD_OP_RELU,
        [UD_LAYER_FLATTEN] = UD_OP_FLATTEN,   [UD_LAYER_DROPOUT] = UD_OP_DROPOUT,
        [UD_LAYER_SOFTMAX] = UD_OP_SOFTMAX,
    };
    p->op = ops[m->arch.layer[i].kind];
    p->layout_out = UD_LAYOUT_BCHW;
}

static void plan_layers(struct ud_model *m)
{
    int layout[2] = {UD_LAYOUT_BCHW, UD_LAYOUT_BCHW};
    for (int i = 0; i < m->arch.nlayers; i++)
        for (int be = 0; be < 2; be++) {
            struct ud_layer_plan *p = &m->L[i].plan[be];
            *p = (struct ud_layer_plan){.layout_in = layout[be]};
            if (be == UD_BACKEND_FAST)
                plan_fast(m, i, layout[be], p);
            else
                plan_reference(m, i, p);
            /* ReLU and dropout work in place, and so does a flatten of (B, C, H, W) data: only
             * a channel-major input needs the transpose. */
            enum ud_layer_kind k = m->arch.layer[i].kind;
            p->inplace = k == UD_LAYER_RELU || k == UD_LAYER_DROPOUT ||
                         (k == UD_LAYER_FLATTEN && p->layout_in == UD_LAYOUT_BCHW);
            layout[be] = p->layout_out;
        }
}

int ud__model_reserve(struct ud_model *m, int B)
{
    if (B <= m->cap)
        return 0;
    ud__model_free_workspace(m);
    plan_layers(m);
    size_t b = (size_t)B, maxact = m->input_size;
    int ok = 1;
    ok &= !!(m->x_in = walloc(b * m->input_size * sizeof(float)));
    ok &= !!(m->probs = walloc(b * (size_t)m->nclasses * sizeof(float)));
    for (int i = 0; ok && i < m->arch.nlayers; i++) {
        const struct ud_layer_spec *A = &m->arch.layer[i];
        struct ud_layer_rt *L = &m->L[i];
        const struct ud_layer_plan *p = &L->plan[UD_BACKEND_FAST];
        if (L->out_size > maxact)
            maxact = L->out_size;
        /* Both backends may run on the same model: size for the larger need. */
        if (!p->inplace || A->kind == UD_LAYER_FLATTEN)
            ok &= !!(m->bufs[i] = walloc(b * L->out_size * sizeof(float)));
        if (A->kind == UD_LAYER_CONV2D) {
            size_t rows = (size_t)L->in.c * A->kernel * A->kernel, need;
            size_t cols = (size_t)(p->chunk < B ? p->chunk : B) * L->out.h * L->out.w;
            need = (rows + (size_t)A->filters) * cols; /* + the chunk's output when fused */
            if (p->op == UD_OP_WINO || p->op == UD_OP_WINO_POOL)
                need = ud__wino_floats(L, A, p->chunk < B ? p->chunk : B);
            ok &= !!(L->col = walloc(need * sizeof(float)));
        } else if (A->kind == UD_LAYER_MAXPOOL2D) {
            ok &= !!(L->argmax = walloc(b * L->out_size * sizeof(int32_t)));
        } else if (A->kind == UD_LAYER_DROPOUT) {
            ok &= !!(L->mask = walloc(b * L->out_size * sizeof(float)));
        }
    }
    if (ok) {
        ok &= !!(m->delta[0] = walloc(b * maxact * sizeof(float)));
        ok &= !!(m->delta[1] = walloc(b * maxact * sizeof(float)));
    }
    if (!ok) {
        ud__model_free_workspace(m);
        return UD_ENOMEM;
    }
    m->cap = B;
    return 0;
}

/* ---------------------------------------------------------------- shared elementwise parts */

static void relu_forward(float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] < 0.0f ? 0.0f : x[i]; /* NaN passes through, as in PyTorch */
}

static void relu_backward(float *restrict d, const float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = y[i] > 0.0f ? d[i] : 0.0f;
}

static void softmax_rows(const float *in, float *out, int B, int n)
{
    for (int b = 0; b < B; b++) {
        const float *x = in + (size_t)b * n;
        float *y = out + (size_t)b * n;
        float mx = x[0];
        for (int j = 1; j < n; j++)
            mx = x[j] > mx ? x[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < n; j++)
            sum += (y[j] = expf(x[j] - mx));
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++)
            y[j] *= inv;
    }
}

/* The common case of maxpool_forward: 2x2 windows tiling the plane. Same ties rule (the first
 * maximum in row-major window order wins). */
static void maxpool2_forward(const float *in, float *out, int32_t *argmax, size_t planes, int H,
                             int W)
{
    int Ho = H / 2, Wo = W / 2;
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * (size_t)H * W;
        float *restrict y = out + p * (size_t)Ho * Wo;
        int32_t *restrict am = argmax + p * (size_t)Ho * Wo;
        for (int oy = 0; oy < Ho; oy++) {
            const float *r0 = x + (size_t)(2 * oy) * W, *r1 = r0 + W;
            for (int ox = 0; ox < Wo; ox++) {
                int i0 = 2 * oy * W + 2 * ox;
                float v = r0[2 * ox];
                int best = i0;
                if (r0[2 * ox + 1] > v) {
                    v = r0[2 * ox + 1];
                    best = i0 + 1;
                }
                if (r1[2 * ox] > v) {
                    v = r1[2 * ox];
                    best = i0 + W;
                }
                if (r1[2 * ox + 1] > v) {
                    v = r1[2 * ox + 1];
                    best = i0 + W + 1;
                }
                y[oy * Wo + ox] = v;
                am[oy * Wo + ox] = best;
            }
        }
    }
}

/* maxpool_backward for 2x2 windows tiling the plane: every input belongs to exactly one window,
 * so each window is written whole (no memset, no scatter). gate (the pool's output, or NULL):
 * the pool's input came from a ReLU, so an output <= 0 means the ReLU blocked the gradient at
 * the arg-max; applying that here lets the ReLU's own backward pass be skipped. */
static void maxpool2_backward(const float *dout, float *din, const int32_t *argmax,
                              const float *gate, size_t planes, int H, int W)
{
    int Ho = H / 2, Wo = W / 2;
    for (size_t p = 0; p < planes; p++) {
        const float *d = dout + p * (size_t)Ho * Wo;
        const float *gt = gate ? gate + p * (size_t)Ho * Wo : NULL;
        const int32_t *am = argmax + p * (size_t)Ho * Wo;
        float *g = din + p * (size_t)H * W;
        for (int oy = 0; oy < Ho; oy++) {
            float *restrict r0 = g + (size_t)(2 * oy) * W, *restrict r1 = r0 + W;
            /* Branch-free (bit masks): the gate is a coin flip for the branch predictor. */
            for (int ox = 0; ox < Wo; ox++) {
                int k = oy * Wo + ox;
                uint32_t v;
                memcpy(&v, &d[k], sizeof v);
                v &= gt ? -(uint32_t)(gt[k] > 0.0f) : ~0u;
                int rel = am[k] - (2 * oy * W + 2 * ox); /* 0, 1, W or W + 1 */
                uint32_t e[4] = {v & -(uint32_t)(rel == 0), v & -(uint32_t)(rel == 1),
                                 v & -(uint32_t)(rel == W), v & -(uint32_t)(rel == W + 1)};
                memcpy(&r0[2 * ox], &e[0], 2 * sizeof(float));
                memcpy(&r1[2 * ox], &e[2], 2 * sizeof(float));
            }
        }
    }
}

static void dropout_forward(struct ud_model *m, float *x, float *mask, size_t n, float rate)
{
    float keep = 1.0f / (1.0f - rate);
    for (size_t i = 0; i < n; i++) {
        mask[i] = ud_rng_uniform(&m->rng) < rate ? 0.0f : keep;
        x[i] *= mask[i];
    }
}

/* ------------------------------------------------------------------------ fast backend */

/* Strides of element (c, b) of a (B, C, H, W) or (C, B, H, W) tensor with planes of hw. */
static inline void layout_strides(int layout, int B, int C, size_t hw, size_t *cs, size_t *bs)
{
    if (layout == UD_LAYOUT_CBHW) {
        *cs = (size_t)B * hw;
        *bs = hw;
    } else {
        *cs = hw;
        *bs = (size_t)C * hw;
    }
}

/* col (C*K*K, nb*Ho*Wo) for samples [b0, b0 + nb) of the B in x: row (c, ky, kx), column
 * (b - b0, oy, ox). */
static void im2col(const float *x, float *col, int layout, int B, int b0, int nb,
                   struct ud_shape in, struct ud_shape out, int K, int S, int P)
{
    size_t cs, bs, N = (size_t)nb * out.h * out.w;
    layout_strides(layout, B, in.c, (size_t)in.h * in.w, &cs, &bs);
    for (int c = 0; c < in.c; c++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++) {
                float *row = col + ((size_t)(c * K + ky) * K + kx) * N;
                for (int b = 0; b < nb; b++) {
                    const float *plane = x + c * cs + (size_t)(b0 + b) * bs;
                    for (int oy = 0; oy < out.h; oy++) {
                        float *dst = row + ((size_t)b * out.h + oy) * out.w;
                        int iy = oy * S - P + ky;
                        if (iy < 0 || iy >= in.h) {
                            memset(dst, 0, (size_t)out.w * sizeof(float));
                            continue;
                        }
                        const float *src = plane + (size_t)iy * in.w;
                        if (S == 1) {
                            int lo = P - kx, hi = in.w + P - kx; /* ox range with ix in [0, W) */
                            lo = lo < 0 ? 0 : lo;
                            hi = hi > out.w ? out.w : hi;
                            for (int ox = 0; ox < lo; ox++)
                                dst[ox] = 0.0f;
                            /* rows are short (a memcpy call costs more than the copy) */
                            const float *restrict s0 = src - P + kx;
                            for (int ox = lo; ox < hi; ox++)
                                dst[ox] = s0[ox];
                            for (int ox = hi > lo ? hi : lo; ox < out.w; ox++)
                                dst[ox] = 0.0f;
                        } else {
                            for (int ox = 0; ox < out.w; ox++) {
                                int ix = ox * S - P + kx;
                                dst[ox] = ix >= 0 && ix < in.w ? src[ix] : 0.0f;
                            }
                        }
                    }
                }
            }
}

/* The adjoint of im2col: dx of samples [b0, b0 + nb) (overwritten) from their columns. */
static void col2im(const float *col, float *dx, int layout, int B, int b0, int nb,
                   struct ud_shape in, struct ud_shape out, int K, int S, int P)
{
    size_t cs, bs, hw = (size_t)in.h * in.w, N = (size_t)nb * out.h * out.w;
    layout_strides(layout, B, in.c, hw, &cs, &bs);
    for (int c = 0; c < in.c; c++)
        for (int b = 0; b < nb; b++)
            memset(dx + c * cs + (size_t)(b0 + b) * bs, 0, hw * sizeof(float));
    for (int c = 0; c < in.c; c++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++) {
                const float *row = col + ((size_t)(c * K + ky) * K + kx) * N;
                for (int b = 0; b < nb; b++) {
                    float *plane = dx + c * cs + (size_t)(b0 + b) * bs;
                    for (int oy = 0; oy < out.h; oy++) {
                        int iy = oy * S - P + ky;
                        if (iy < 0 || iy >= in.h)
                            continue;
                        const float *restrict src = row + ((size_t)b * out.h + oy) * out.w;
                        float *restrict dst = plane + (size_t)iy * in.w;
                        if (S == 1) {
                            int lo = P - kx, hi = in.w + P - kx; /* ox with ix in [0, W) */
                            lo = lo < 0 ? 0 : lo;
                            hi = hi > out.w ? out.w : hi;
                            float *restrict d0 = dst - P + kx;
                            for (int ox = lo; ox < hi; ox++)
                                d0[ox] += src[ox];
                            continue;
                        }
                        for (int ox = 0; ox < out.w; ox++) {
                            int ix = ox * S - P + kx;
                            if (ix >= 0 && ix < in.w)
                                dst[ix] += src[ox];
                        }
                    }
                }
            }
}

/* y (F, B*Ho*Wo) channel-major = W (F, C*K*K) * columns + bias, then ReLU if relu, one chunk
 * of samples at a time; col holds one chunk's columns. */
static void fast_conv_forward(const float *x, const float *W, const float *bias, float *y,
                              float *col, int layout, int B, struct ud_shape in,
                              struct ud_shape out, const struct ud_layer_spec *A, int chunk,
                              int relu)
{
    size_t hw = (size_t)out.h * out.w, N = (size_t)B * hw;
    int F = A->filters, KK = in.c * A->kernel * A->kernel;
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t Nc = (size_t)nb * hw;
        im2col(x, col, layout, B, b0, nb, in, out, A->kernel, A->stride, A->pad);
        /* Bias as the GEMM's C (beta = 1): OpenBLAS would clear C for beta = 0 anyway. */
        for (int f = 0; f < F; f++) {
            float *restrict row = y + (size_t)f * N + (size_t)b0 * hw;
            for (size_t k = 0; k < Nc; k++)
                row[k] = bias[f];
        }
        ud_sgemm(false, false, F, (int)Nc, KK, 1.0f, W, KK, col, (int)Nc, 1.0f, y + (size_t)b0 * hw,
                 (int)N);
        if (relu)
            for (int f = 0; f < F; f++)
                relu_forward(y + (size_t)f * N + (size_t)b0 * hw, Nc);
    }
}

/* fast_conv_forward with the 2x2 max pool above it (and the ReLU between, if relu) fused in,
 * for even Ho and Wo: each chunk's output (F, nb*Ho*Wo) stays in L2 (after the chunk's columns
 * in col) and only the pooled planes (F, B, Ho/2, Wo/2) and their argmax reach memory. The ReLU
 * goes after the max: the same values, and where the two orders pick different winners the
 * output is <= 0 and the gate blocks the gradient anyway. */
static void fast_conv_pool_forward(const float *x, const float *W, const float *bias, float *pooled,
                                   int32_t *argmax, float *col, int layout, int B,
                                   struct ud_shape in, struct ud_shape out,
                                   const struct ud_layer_spec *A, int chunk, int relu)
{
    size_t hw = (size_t)out.h * out.w, hwo = hw / 4;
    int F = A->filters, KK = in.c * A->kernel * A->kernel;
    float *yc = col + (size_t)KK * (size_t)(chunk < B ? chunk : B) * hw;
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t Nc = (size_t)nb * hw;
        im2col(x, col, layout, B, b0, nb, in, out, A->kernel, A->stride, A->pad);
        for (int f = 0; f < F; f++) {
            float *restrict row = yc + (size_t)f * Nc;
            for (size_t k = 0; k < Nc; k++)
                row[k] = bias[f];
        }
        ud_sgemm(false, false, F, (int)Nc, KK, 1.0f, W, KK, col, (int)Nc, 1.0f, yc, (int)Nc);
        for (int f = 0; f < F; f++) {
            size_t o = ((size_t)f * B + b0) * hwo;
            maxpool2_forward(yc + (size_t)f * Nc, pooled + o, argmax + o, (size_t)nb, out.h, out.w);
            if (relu)
                relu_forward(pooled + o, (size_t)nb * hwo);
        }
    }
}

/* The gradients of one chunk of an im2col conv, samples [b0, b0 + nb), from its output
 * gradient d (F rows of nb*Ho*Wo, row stride ldd): db and dW accumulate (dW NULL: frozen; the
 * first chunk overwrites dW), dx gets the chunk's input gradient (NULL: not needed). The
 * columns are recomputed into col rather than kept from forward. */
static void conv_chunk_grads(const float *x, const float *W, const float *d, size_t ldd, float *dW,
                             float *db, float *dx, float *col, int layout_in, int B, int b0, int nb,
                             struct ud_shape in, struct ud_shape out, const struct ud_layer_spec *A)
{
    int F = A->filters, KK = in.c * A->kernel * A->kernel;
    size_t Nc = (size_t)nb * out.h * out.w;
    if (dW) {
        for (int f = 0; f < F; f++)
            db[f] += ud__sum_floats(d + (size_t)f * ldd, Nc);
        im2col(x, col, layout_in, B, b0, nb, in, out, A->kernel, A->stride, A->pad);
        ud_sgemm(false, true, F, KK, (int)Nc, 1.0f, d, (int)ldd, col, (int)Nc, b0 ? 1.0f : 0.0f, dW,
                 KK);
    }
    if (dx) {
        ud_sgemm(true, false, KK, (int)Nc, F, 1.0f, W, KK, d, (int)ldd, 0.0f, col, (int)Nc);
        col2im(col, dx, layout_in, B, b0, nb, in, out, A->kernel, A->stride, A->pad);
    }
}

/* The backward of fast_conv_pool_forward from the pooled gradient (F, B, Ho/2, Wo/2): each
 * chunk's dy is rebuilt in L2 from it, the argmax and (if relu) the pooled output as the gate. */
static void fast_conv_pool_backward(const float *x, const float *W, const float *dpooled,
                                    const int32_t *argmax, const float *gate, float *dW, float *db,
                                    float *dx, float *col, int layout_in, int B, struct ud_shape in,
                                    struct ud_shape out, const struct ud_layer_spec *A, int chunk)
{
    size_t hw = (size_t)out.h * out.w, hwo = hw / 4;
    int F = A->filters, KK = in.c * A->kernel * A->kernel;
    float *dc = col + (size_t)KK * (size_t)(chunk < B ? chunk : B) * hw;
    if (db)
        memset(db, 0, (size_t)F * sizeof(float));
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t Nc = (size_t)nb * hw;
        for (int f = 0; f < F; f++) {
            size_t o = ((size_t)f * B + b0) * hwo;
            maxpool2_backward(dpooled + o, dc + (size_t)f * Nc, argmax + o, gate ? gate + o : NULL,
                              (size_t)nb, out.h, out.w);
        }
        conv_chunk_grads(x, W, dc, Nc, dW, db, dx, col, layout_in, B, b0, nb, in, out, A);
    }
}

/* Gradients of a conv from dy (F, B*Ho*Wo): dW and db (NULL: frozen) and dx (NULL: not
 * needed), chunk by chunk; the columns are recomputed per chunk rather than kept from forward. */
static void fast_conv_backward(const float *x, const float *W, const float *dy, float *dW,
                               float *db, float *dx, float *col, int layout_in, int B,
                               struct ud_shape in, struct ud_shape out,
                               const struct ud_layer_spec *A, int chunk)
{
    size_t hw = (size_t)out.h * out.w, N = (size_t)B * hw;
    if (db)
        memset(db, 0, (size_t)A->filters * sizeof(float));
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        conv_chunk_grads(x, W, dy + (size_t)b0 * hw, N, dW, db, dx, col, layout_in, B, b0, nb, in,
                         out, A);
    }
}

/* Below this batch OpenBLAS does better on y^T = W x^T (M = units, N = B) than on y = x W^T
 * (M = B): 84 vs 76 GFLOP/s for 512 x 32 x 784, 88 vs 75 for 256 x 32 x 512 on Zen4. */
#define UD_DENSE_TRANSPOSED_MAX_B 64

/* y (B, out) = x (B, in) W^T + bias, then ReLU if relu. scratch: (out, B) floats or NULL. */
static void fast_dense_forward(const float *x, const float *W, const float *bias, float *y, int B,
                               int in, int out, float *scratch, int relu)
{
    if (scratch && B <= UD_DENSE_TRANSPOSED_MAX_B) {
        ud_sgemm(false, true, out, B, in, 1.0f, W, in, x, in, 0.0f, scratch, B);
        /* Transpose back, adding the bias (and the ReLU), in tiles of 64 units. */
        for (int o0 = 0; o0 < out; o0 += 64) {
            int o1 = o0 + 64 < out ? o0 + 64 : out;
            for (int b = 0; b < B; b++) {
                float *restrict yb = y + (size_t)b * out;
                const float *restrict sb = scratch + b;
                for (int o = o0; o < o1; o++) {
                    float v = sb[(size_t)o * B] + bias[o];
                    yb[o] = relu && v < 0.0f ? 0.0f : v; /* NaN passes through */
                }
            }
        }
        return;
    }
    for (int b = 0; b < B; b++)
        memcpy(y + (size_t)b * out, bias, (size_t)out * sizeof(float));
    ud_sgemm(false, true, B, out, in, 1.0f, x, in, W, in, 1.0f, y, out);
    if (relu)
        relu_forward(y, (size_t)B * out);
}

static void fast_dense_backward(const float *x, const float *W, const float *dy, float *dW,
                                float *db, float *dx, int B, int in, int out)
{
    ud_sgemm(true, false, out, in, B, 1.0f, dy, out, x, in, 0.0f, dW, in);
    memset(db, 0, (size_t)out * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *restrict d = dy + (size_t)b * out;
        for (int o = 0; o < out; o++)
            db[o] += d[o];
    }
    if (dx)
        ud_sgemm(false, false, B, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in);
}

/* (C, B, hw) <-> (B, C, hw) */
static void transpose_cb(const float *src, float *dst, int C, int B, size_t hw, int to_bchw)
{
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++) {
            const float *s =
                to_bchw ? src + ((size_t)c * B + b) * hw : src + ((size_t)b * C + c) * hw;
            float *d = to_bchw ? dst + ((size_t)b * C + c) * hw : dst + ((size_t)c * B + b) * hw;
            memcpy(d, s, hw * sizeof(float));
        }
}

/* --------------------------------------------------------------------------- passes */

/* Runs layer i forward as its plan says, from cur into out (the same buffer when in place). */
static int forward_layer(struct ud_model *m, int i, const struct ud_layer_plan *p, const float *cur,
                         float *out, int B, bool training)
{
    const struct ud_layer_spec *A = &m->arch.layer[i];
    struct ud_layer_rt *L = &m->L[i];
    const float *W = m->params + L->w.offset, *bias = m->params + L->b.offset;
    size_t n = (size_t)B * L->out_size, planes = (size_t)B * L->in.c;
    int lay = p->layout_in, F = A->filters;
    switch (p->op) {
    case UD_OP_NONE:
        break;
    case UD_OP_DENSE_REF:
        ud__ref_dense_forward(cur, W, bias, out, B, (int)L->in_size, A->units);
        break;
    case UD_OP_DENSE: /* the backward scratch is free during forward */
        fast_dense_forward(cur, W, bias, out, B, (int)L->in_size, A->units, m->delta[1], p->relu);
        break;
    case UD_OP_CONV_REF:
        return ud__ref_conv_forward(cur, W, bias, out, B, L->in, L->out, A);
    case UD_OP_CONV:
        fast_conv_forward(cur, W, bias, out, L->col, lay, B, L->in, L->out, A, p->chunk, p->relu);
        break;
    case UD_OP_CONV_POOL:
        fast_conv_pool_forward(cur, W, bias, m->bufs[p->pool], m->L[p->pool].argmax, L->col, lay, B,
                               L->in, L->out, A, p->chunk, p->relu);
        break;
    case UD_OP_WINO:
        ud__wino_forward(cur, lay, W, bias, out, L->col, B, L->in, F, p->chunk, p->relu);
        break;
    case UD_OP_WINO_POOL:
        ud__wino_forward_pool(cur, lay, W, bias, m->bufs[p->pool], m->L[p->pool].argmax, L->col, B,
                              L->in, F, p->chunk, p->relu);
        break;
    case UD_OP_MAXPOOL:
        ud__ref_maxpool_forward(cur, out, L->argmax, planes, L->in.h, L->in.w, A->pool);
        break;
    case UD_OP_MAXPOOL2:
        maxpool2_forward(cur, out, L->argmax, planes, L->in.h, L->in.w);
        break;
    case UD_OP_RELU:
        if (!p->skip_fwd)
            relu_forward(out, n);
        break;
    case UD_OP_DROPOUT:
        if (training && A->rate > 0.0f)
            dropout_forward(m, out, L->mask, n, A->rate);
        else
            for (size_t k = 0; k < n; k++)
                L->mask[k] = 1.0f;
        break;
    case UD_OP_FLATTEN:
        if (!p->inplace)
            transpose_cb(cur, out, L->in.c, B, (size_t)L->in.h * L->in.w, 1);
        break;
    case UD_OP_SOFTMAX:
        softmax_rows(cur, out, B, m->nclasses);
        break;
    }
    return 0;
}

int ud_model_forward(ud_model_t *m, const float *x, int B, bool training)
{
    if (B <= 0)
        return UD_EINVAL;
    int rc = ud__model_reserve(m, B);
    if (rc)
        return rc;
    enum ud_backend be = m->backend;
    /* The first layer only reads its input unless it works in place (relu, dropout, flatten
     * as its own buffer): then it gets a copy, so that the caller's batch is never written. */
    float *cur;
    if (m->L[0].plan[be].inplace) {
        memcpy(m->x_in, x, (size_t)B * m->input_size * sizeof(float));
        cur = m->x_in;
    } else {
        cur = (float *)x; /* read only: layer 0 writes its own buffer */
    }
    m->x_last = cur;
    for (int i = 0; i < m->arch.nlayers; i++) {
        const struct ud_layer_plan *p = &m->L[i].plan[be];
        float *out = p->op == UD_OP_SOFTMAX ? m->probs : p->inplace ? cur : m->bufs[i];
        if ((rc = forward_layer(m, i, p, cur, out, B, training)))
            return rc;
        m->L[i].act = out;
        cur = out;
    }
    m->last_B = B;
    m->last_training = training;
    m->last_backend = be;
    return 0;
}

const float *ud_model_output(const ud_model_t *m)
{
    return m->probs;
}

int ud_model_loss(const ud_model_t *m, const int32_t *labels, int B, double *loss, int *correct,
                  struct ud_err *e)
{
    if (B != m->last_B || B <= 0)
        return ud_err_set(e, UD_ESTATE, "loss for %d samples without a matching forward", B);
    double sum = 0.0;
    int ok = 0, C = m->nclasses;
    for (int b = 0; b < B; b++) {
        if (labels[b] < 0 || labels[b] >= C)
            return ud_err_set(e, UD_ERANGE, "label %d of sample %d is outside [0, %d)",
                              (int)labels[b], b, C);
        const float *p = m->probs + (size_t)b * C;
        float pt = p[labels[b]];
        /* A NaN probability must surface as a NaN loss, not be clamped away. */
        sum += isnan(pt) ? (double)NAN : -log(pt > 1e-30f ? (double)pt : 1e-30);
        int best = 0;
        for (int j = 1; j < C; j++)
            if (p[j] > p[best])
                best = j;
        ok += best == labels[b];
    }
    if (loss)
        *loss = sum / B;
    if (correct)
        *correct = ok;
    return 0;
}

/* Runs layer i backward as its plan says: from d, the gradient at its output, into its
 * parameters' gradients (if updatable) and dx, the gradient at its input (NULL: not needed).
 * Returns 1 when the result is in dx, 0 when the layer worked on d in place (or did nothing:
 * a fused pool), or a negative error. */
static int backward_layer(struct ud_model *m, int i, const struct ud_layer_plan *p, float *d,
                          float *dx, int B)
{
    const struct ud_layer_spec *A = &m->arch.layer[i];
    const struct ud_layer_rt *L = &m->L[i];
    const float *in = i > 0 ? m->L[i - 1].act : m->x_last;
    const float *W = m->params + L->w.offset;
    float *dW = A->updatable ? m->grads + L->w.offset : NULL;
    float *db = A->updatable ? m->grads + L->b.offset : NULL;
    size_t planes = (size_t)B * L->in.c;
    int lay = p->layout_in, F = A->filters, in_size = (int)L->in_size;
    switch (p->op) {
    case UD_OP_NONE:
        return 0; /* the conv below takes the pooled gradient */
    case UD_OP_DENSE_REF:
    case UD_OP_DENSE:
        if (!dW && dx) /* frozen: the input's gradient only */
            ud_sgemm(false, false, B, in_size, A->units, 1.0f, d, A->units, W, in_size, 0.0f, dx,
                     in_size);
        else if (dW && p->op == UD_OP_DENSE_REF)
            ud__ref_dense_backward(in, W, d, dW, db, dx, B, in_size, A->units);
        else if (dW)
            fast_dense_backward(in, W, d, dW, db, dx, B, in_size, A->units);
        return 1;
    case UD_OP_CONV_REF: {
        int rc = ud__ref_conv_backward(in, W, d, dW, db, dx, B, L->in, L->out, A);
        return rc ? rc : 1;
    }
    case UD_OP_CONV:
        fast_conv_backward(in, W, d, dW, db, dx, L->col, lay, B, L->in, L->out, A, p->chunk);
        return 1;
    case UD_OP_CONV_POOL: {
        const struct ud_layer_rt *P = &m->L[p->pool];
        fast_conv_pool_backward(in, W, d, P->argmax, p->relu ? P->act : NULL, dW, db, dx, L->col,
                                lay, B, L->in, L->out, A, p->chunk);
        return 1;
    }
    case UD_OP_WINO:
        ud__wino_backward(in, lay, d, dW, db, dx, L->col, B, L->in, F, p->chunk);
        return 1;
    case UD_OP_WINO_POOL:
        ud__wino_backward_pool(in, lay, d, m->L[p->pool].argmax, dW, db, dx, L->col, B, L->in, F,
                               p->chunk);
        return 1;
    case UD_OP_MAXPOOL:
        if (dx)
            ud__ref_maxpool_backward(d, dx, L->argmax, planes, L->in.h, L->in.w, A->pool);
        return 1;
    case UD_OP_MAXPOOL2:
        if (dx)
            maxpool2_backward(d, dx, L->argmax, p->gate ? L->act : NULL, planes, L->in.h, L->in.w);
        return 1;
    case UD_OP_RELU:
        if (!p->skip_bwd)
            relu_backward(d, L->act, (size_t)B * L->out_size);
        return 0;
    case UD_OP_DROPOUT:
        for (size_t k = 0, n = (size_t)B * L->out_size; k < n; k++)
            d[k] *= L->mask[k];
        return 0;
    case UD_OP_FLATTEN:
        if (p->inplace)
            return 0;
        if (dx)
            transpose_cb(d, dx, L->in.c, B, (size_t)L->in.h * L->in.w, 0);
        return 1;
    case UD_OP_SOFTMAX:
        break;
    }
    return 1;
}

int ud_model_backward(ud_model_t *m, const int32_t *labels, int B, float scale,
                      ud_grad_ready_fn ready, void *user)
{
    if (B != m->last_B || B <= 0)
        return UD_ESTATE;
    if (m->lowest_updatable < 0)
        return 0;
    int C = m->nclasses, nl = m->arch.nlayers;
    enum ud_backend be = m->last_backend;
    /* d: gradient of the loss with respect to the current layer's output. */
    float *d = m->delta[0], *spare = m->delta[1];
    for (int b = 0; b < B; b++) {
        if (labels[b] < 0 || labels[b] >= C)
            return UD_ERANGE;
        const float *p = m->probs + (size_t)b * C;
        float *g = d + (size_t)b * C;
        for (int j = 0; j < C; j++)
            g[j] = p[j] * scale;
        g[labels[b]] -= scale;
    }
    for (int i = nl - 2; i >= m->lowest_updatable; i--) {
        const struct ud_layer_rt *L = &m->L[i];
        int need_dx = i > m->lowest_updatable;
        int rc = backward_layer(m, i, &L->plan[be], d, need_dx ? spare : NULL, B);
        if (rc < 0)
            return rc;
        if (m->arch.layer[i].updatable && L->w.count && ready)
            ready(user, i, (struct ud_span){L->w.offset, L->w.count + L->b.count});
        if (rc) {
            float *t = d;
            d = spare;
            spare = t;
        }
    }
    return 0;
}

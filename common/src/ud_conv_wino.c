/*  ud_conv_wino.c — the fast backend's 3x3, stride 1, pad 1 convolution by Winograd F(2x2, 3x3).
 *
 *  Each 2x2 block of outputs ("tile") is A^T [ sum_c U_fc (.) V_ct ] A, where U = G g G^T is the
 *  4x4 transform of a 3x3 filter and V = B^T d B the transform of the 4x4 input patch around
 *  the tile. For every one of the 16 transform positions xi that sum is a GEMM, M[xi] (F, T) =
 *  U[xi] (F, C) V[xi] (C, T), over the T tiles of a chunk of samples: 2.25x fewer multiplications
 *  than im2col's (F, 9C) x (9C, 4T). Backward uses the exact adjoints of the same transforms:
 *  dM = A dY A^T per tile, dV[xi] = U[xi]^T dM[xi] then dX += B dV B^T (tiles overlap by two
 *  rows and columns), and dU[xi] = dM[xi] V[xi]^T summed over chunks, then dg = G^T dU G.
 *
 *  Any H and W work: tiles cover ceil(H/2) x ceil(W/2) blocks and read zeros past the edges
 *  (input patches live in a zero-padded copy of the plane); outputs past the edge are dropped
 *  and their gradients are zero. Chunks are sized so that V and M (the GEMMs' operands) stay
 *  in L2.
 */
#include "ud_model_impl.h"
#include "updraft/ud_kernels.h"

#include <string.h>

/* V and M of one chunk: 16 (C + F) floats per tile. 1 MB, half of a Zen4 core's L2. */
#define UD_WINO_CHUNK_FLOATS (256u * 1024u)

int ud__wino_applies(const struct ud_layer_rt *L, const struct ud_layer_spec *A)
{
    return A->kind == UD_LAYER_CONV2D && A->kernel == 3 && A->stride == 1 && A->pad == 1 &&
           L->in.c >= UD_WINO_MIN_C && L->out.h == L->in.h && L->out.w == L->in.w;
}

static size_t tiles_per_sample(struct ud_shape in)
{
    return (size_t)((in.h + 1) / 2) * ((in.w + 1) / 2);
}

int ud__wino_chunk(const struct ud_layer_rt *L, const struct ud_layer_spec *A)
{
    size_t per = 16u * (size_t)(L->in.c + A->filters) * tiles_per_sample(L->in);
    size_t n = per >= UD_WINO_CHUNK_FLOATS ? 1 : UD_WINO_CHUNK_FLOATS / per;
    return n > 4096 ? 4096 : (int)n;
}

/* Padded plane: (2*th + 2) x (2*tw + 2), the input at row iy + 1, column ix + 1. */
static size_t pad_floats(struct ud_shape in)
{
    return (size_t)(2 * ((in.h + 1) / 2) + 2) * (2 * ((in.w + 1) / 2) + 2);
}

size_t ud__wino_floats(const struct ud_layer_rt *L, const struct ud_layer_spec *A, int chunk)
{
    size_t F = (size_t)A->filters, C = (size_t)L->in.c, T = (size_t)chunk * tiles_per_sample(L->in);
    return 2 * 16 * F * C + 16 * (C + F) * T + pad_floats(L->in) + 64;
}

struct wino_ws {
    float *U, *dU, *V, *M, *pad;
};

static struct wino_ws ws_split(float *ws, int C, int F, size_t T)
{
    struct wino_ws w;
    size_t fc = 16u * (size_t)F * C;
    w.U = ws;
    w.dU = w.U + fc;
    w.V = w.dU + fc;
    w.M = w.V + 16u * (size_t)C * T;
    w.pad = w.M + 16u * (size_t)F * T;
    return w;
}

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

/* U[xi] (F, C) = G g G^T for every filter g (F, C, 3, 3). */
static void filter_transform(const float *W, float *U, int F, int C)
{
    size_t FC = (size_t)F * C;
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++) {
            const float *g = W + ((size_t)f * C + c) * 9;
            float t[4][3]; /* G g */
            for (int k = 0; k < 3; k++) {
                t[0][k] = g[k];
                t[1][k] = 0.5f * (g[k] + g[3 + k] + g[6 + k]);
                t[2][k] = 0.5f * (g[k] - g[3 + k] + g[6 + k]);
                t[3][k] = g[6 + k];
            }
            for (int r = 0; r < 4; r++) {
                float *u = U + (size_t)(r * 4) * FC + (size_t)f * C + c;
                u[0] = t[r][0];
                u[FC] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
                u[2 * FC] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
                u[3 * FC] = t[r][2];
            }
        }
}

/* dW (F, C, 3, 3) = G^T dU G, the adjoint of filter_transform. */
static void filter_transform_adjoint(const float *dU, float *dW, int F, int C)
{
    size_t FC = (size_t)F * C;
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++) {
            float u[4][4];
            for (int xi = 0; xi < 16; xi++)
                u[xi / 4][xi % 4] = dU[(size_t)xi * FC + (size_t)f * C + c];
            float t[4][3]; /* dU G */
            for (int r = 0; r < 4; r++) {
                t[r][0] = u[r][0] + 0.5f * (u[r][1] + u[r][2]);
                t[r][1] = 0.5f * (u[r][1] - u[r][2]);
                t[r][2] = 0.5f * (u[r][1] + u[r][2]) + u[r][3];
            }
            float *g = dW + ((size_t)f * C + c) * 9;
            for (int k = 0; k < 3; k++) {
                g[k] = t[0][k] + 0.5f * (t[1][k] + t[2][k]);
                g[3 + k] = 0.5f * (t[1][k] - t[2][k]);
                g[6 + k] = 0.5f * (t[1][k] + t[2][k]) + t[3][k];
            }
        }
}

/* V[xi][c][t0 + t] = (B^T d B)[xi] for the tiles of one plane (H, W) with row stride W.
 * ldv: floats between consecutive xi (C*T). */
static void input_transform(const float *plane, float *pad, struct ud_shape in, float *V,
                            size_t ldv)
{
    int th = (in.h + 1) / 2, tw = (in.w + 1) / 2, pw = 2 * tw + 2, ph = 2 * th + 2;
    memset(pad, 0, (size_t)pw * ph * sizeof(float));
    for (int iy = 0; iy < in.h; iy++) {
        const float *restrict s = plane + (size_t)iy * in.w;
        float *restrict d = pad + (size_t)(iy + 1) * pw + 1;
        for (int ix = 0; ix < in.w; ix++)
            d[ix] = s[ix];
    }
    for (int ty = 0; ty < th; ty++) {
        const float *r0 = pad + (size_t)(2 * ty) * pw, *r1 = r0 + pw, *r2 = r1 + pw, *r3 = r2 + pw;
        float ee[4][64 + 2];
        /* B^T d: row combinations over the whole padded width, in pieces of 64 columns. */
        for (int x0 = 0; x0 < pw - 2; x0 += 64) {
            int x1 = x0 + 66 < pw ? x0 + 66 : pw;
            for (int x = x0; x < x1; x++) {
                ee[0][x - x0] = r0[x] - r2[x];
                ee[1][x - x0] = r1[x] + r2[x];
                ee[2][x - x0] = r2[x] - r1[x];
                ee[3][x - x0] = r1[x] - r3[x];
            }
            int txa = x0 / 2, txb = (x1 - 2) / 2;
            for (int tx = txa; tx < txb; tx++) {
                size_t t = (size_t)ty * tw + tx;
                int p = 2 * tx - x0;
                for (int r = 0; r < 4; r++) {
                    const float *q = ee[r] + p;
                    float *v = V + (size_t)(r * 4) * ldv + t;
                    v[0] = q[0] - q[2];
                    v[ldv] = q[1] + q[2];
                    v[2 * ldv] = q[2] - q[1];
                    v[3 * ldv] = q[1] - q[3];
                }
            }
        }
    }
}

/* The adjoint of input_transform: plane (H, W) = the sum of B dV B^T over the tiles. */
static void input_transform_adjoint(const float *V, size_t ldv, float *pad, struct ud_shape in,
                                    float *plane)
{
    int th = (in.h + 1) / 2, tw = (in.w + 1) / 2, pw = 2 * tw + 2, ph = 2 * th + 2;
    memset(pad, 0, (size_t)pw * ph * sizeof(float));
    for (int ty = 0; ty < th; ty++) {
        float *r0 = pad + (size_t)(2 * ty) * pw, *r1 = r0 + pw, *r2 = r1 + pw, *r3 = r2 + pw;
        for (int tx = 0; tx < tw; tx++) {
            size_t t = (size_t)ty * tw + tx;
            float q[4][4]; /* dV B^T, row by row */
            for (int r = 0; r < 4; r++) {
                const float *v = V + (size_t)(r * 4) * ldv + t;
                float v0 = v[0], v1 = v[ldv], v2 = v[2 * ldv], v3 = v[3 * ldv];
                q[r][0] = v0;
                q[r][1] = v1 - v2 + v3;
                q[r][2] = v1 + v2 - v0;
                q[r][3] = -v3;
            }
            int p = 2 * tx;
            for (int k = 0; k < 4; k++) {
                r0[p + k] += q[0][k];
                r1[p + k] += q[1][k] - q[2][k] + q[3][k];
                r2[p + k] += q[1][k] + q[2][k] - q[0][k];
                r3[p + k] -= q[3][k];
            }
        }
    }
    for (int iy = 0; iy < in.h; iy++) {
        const float *restrict s = pad + (size_t)(iy + 1) * pw + 1;
        float *restrict d = plane + (size_t)iy * in.w;
        for (int ix = 0; ix < in.w; ix++)
            d[ix] = s[ix];
    }
}

/* plane (H, W) = A^T M A over the tiles of one output plane, + bias, then ReLU if relu. */
static void output_transform(const float *M, size_t ldm, float bias, int relu, struct ud_shape out,
                             float *plane)
{
    int th = (out.h + 1) / 2, tw = (out.w + 1) / 2;
    for (int ty = 0; ty < th; ty++) {
        float *y0 = plane + (size_t)(2 * ty) * out.w;
        float *y1 = 2 * ty + 1 < out.h ? y0 + out.w : NULL;
        for (int tx = 0; tx < tw; tx++) {
            size_t t = (size_t)ty * tw + tx;
            float s0[4], s1[4];
            for (int k = 0; k < 4; k++) {
                float m0 = M[(size_t)k * ldm + t], m1 = M[(size_t)(4 + k) * ldm + t];
                float m2 = M[(size_t)(8 + k) * ldm + t], m3 = M[(size_t)(12 + k) * ldm + t];
                s0[k] = m0 + m1 + m2;
                s1[k] = m1 - m2 - m3;
            }
            float v[4] = {s0[0] + s0[1] + s0[2] + bias, s0[1] - s0[2] - s0[3] + bias,
                          s1[0] + s1[1] + s1[2] + bias, s1[1] - s1[2] - s1[3] + bias};
            if (relu)
                for (int k = 0; k < 4; k++)
                    v[k] = v[k] < 0.0f ? 0.0f : v[k]; /* NaN passes through */
            int x = 2 * tx;
            y0[x] = v[0];
            if (x + 1 < out.w)
                y0[x + 1] = v[1];
            if (y1) {
                y1[x] = v[2];
                if (x + 1 < out.w)
                    y1[x + 1] = v[3];
            }
        }
    }
}

/* dM[xi][t] = (A dY A^T)[xi] for the tiles of one output-gradient plane (H, W). */
static void output_transform_adjoint(const float *plane, struct ud_shape out, float *M, size_t ldm)
{
    int th = (out.h + 1) / 2, tw = (out.w + 1) / 2;
    for (int ty = 0; ty < th; ty++) {
        const float *d0 = plane + (size_t)(2 * ty) * out.w;
        const float *d1 = 2 * ty + 1 < out.h ? d0 + out.w : NULL;
        for (int tx = 0; tx < tw; tx++) {
            size_t t = (size_t)ty * tw + tx;
            int x = 2 * tx, in1 = x + 1 < out.w;
            float a = d0[x], b = in1 ? d0[x + 1] : 0.0f;
            float c = d1 ? d1[x] : 0.0f, d = d1 && in1 ? d1[x + 1] : 0.0f;
            float row[4][2] = {{a, b}, {a + c, b + d}, {a - c, b - d}, {-c, -d}};
            for (int r = 0; r < 4; r++) {
                float *m = M + (size_t)(r * 4) * ldm + t;
                float p = row[r][0], q = row[r][1];
                m[0] = p;
                m[ldm] = p + q;
                m[2 * ldm] = p - q;
                m[3 * ldm] = -q;
            }
        }
    }
}

void ud__wino_forward(const float *x, int layout, const float *W, const float *bias, float *y,
                      float *ws, int B, struct ud_shape in, int F, int chunk, int relu)
{
    int C = in.c;
    size_t hw = (size_t)in.h * in.w, tps = tiles_per_sample(in), cs, bs;
    size_t Tmax = (size_t)(chunk < B ? chunk : B) * tps; /* as ud__wino_floats was sized */
    struct wino_ws w = ws_split(ws, C, F, Tmax);
    layout_strides(layout, B, C, hw, &cs, &bs);
    filter_transform(W, w.U, F, C);
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t T = (size_t)nb * tps;
        for (int c = 0; c < C; c++)
            for (int b = 0; b < nb; b++)
                input_transform(x + c * cs + (size_t)(b0 + b) * bs, w.pad, in,
                                w.V + (size_t)c * T + b * tps, (size_t)C * T);
        for (int xi = 0; xi < 16; xi++)
            ud_sgemm(false, false, F, (int)T, C, 1.0f, w.U + (size_t)xi * F * C, C,
                     w.V + (size_t)xi * C * T, (int)T, 0.0f, w.M + (size_t)xi * F * T, (int)T);
        for (int f = 0; f < F; f++)
            for (int b = 0; b < nb; b++)
                output_transform(w.M + (size_t)f * T + b * tps, (size_t)F * T, bias[f], relu, in,
                                 y + ((size_t)f * B + b0 + b) * hw);
    }
}

void ud__wino_backward(const float *x, int layout, const float *dy, float *dW, float *db, float *dx,
                       float *ws, int B, struct ud_shape in, int F, int chunk)
{
    int C = in.c;
    size_t hw = (size_t)in.h * in.w, tps = tiles_per_sample(in), cs, bs;
    size_t Tmax = (size_t)(chunk < B ? chunk : B) * tps; /* as ud__wino_floats was sized */
    struct wino_ws w = ws_split(ws, C, F, Tmax);
    layout_strides(layout, B, C, hw, &cs, &bs);
    if (db)
        for (int f = 0; f < F; f++) {
            const float *restrict d = dy + (size_t)f * B * hw;
            float acc[16] = {0};
            size_t n = (size_t)B * hw, k = 0;
            for (; k + 16 <= n; k += 16)
                for (int j = 0; j < 16; j++)
                    acc[j] += d[k + j];
            float s = 0.0f;
            for (; k < n; k++)
                s += d[k];
            for (int j = 0; j < 16; j++)
                s += acc[j];
            db[f] = s;
        }
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t T = (size_t)nb * tps;
        for (int f = 0; f < F; f++)
            for (int b = 0; b < nb; b++)
                output_transform_adjoint(dy + ((size_t)f * B + b0 + b) * hw, in,
                                         w.M + (size_t)f * T + b * tps, (size_t)F * T);
        if (dW) {
            for (int c = 0; c < C; c++)
                for (int b = 0; b < nb; b++)
                    input_transform(x + c * cs + (size_t)(b0 + b) * bs, w.pad, in,
                                    w.V + (size_t)c * T + b * tps, (size_t)C * T);
            for (int xi = 0; xi < 16; xi++)
                ud_sgemm(false, true, F, C, (int)T, 1.0f, w.M + (size_t)xi * F * T, (int)T,
                         w.V + (size_t)xi * C * T, (int)T, b0 ? 1.0f : 0.0f,
                         w.dU + (size_t)xi * F * C, C);
        }
        if (dx) {
            for (int xi = 0; xi < 16; xi++)
                ud_sgemm(true, false, C, (int)T, F, 1.0f, w.U + (size_t)xi * F * C, C,
                         w.M + (size_t)xi * F * T, (int)T, 0.0f, w.V + (size_t)xi * C * T, (int)T);
            for (int c = 0; c < C; c++)
                for (int b = 0; b < nb; b++)
                    input_transform_adjoint(w.V + (size_t)c * T + b * tps, (size_t)C * T, w.pad, in,
                                            dx + c * cs + (size_t)(b0 + b) * bs);
        }
    }
    if (dW)
        filter_transform_adjoint(w.dU, dW, F, C);
}

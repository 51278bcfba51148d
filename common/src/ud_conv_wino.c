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
    size_t w = (size_t)(2 * ((in.w + 1) / 2) + 2);
    return (size_t)(2 * ((in.h + 1) / 2) + 2) * (w < 16 ? 16 : w);
}

size_t ud__wino_floats(const struct ud_layer_rt *L, const struct ud_layer_spec *A, int chunk)
{
    size_t F = (size_t)A->filters, C = (size_t)L->in.c, T = (size_t)chunk * tiles_per_sample(L->in);
    return 2 * 16 * F * C + 16 * (C * T + 16) + 16 * F * T + pad_floats(L->in) +
           17 * tiles_per_sample(L->in) + 80;
}

struct wino_ws {
    float *U, *dU, *V, *M, *pad, *D; /* D: 16 floats per tile of one plane */
    int32_t *code;                   /* one per tile of one plane; only ever used as int32 */
};

static struct wino_ws ws_split(float *ws, int C, int F, size_t T, struct ud_shape in)
{
    struct wino_ws w;
    size_t fc = 16u * (size_t)F * C;
    w.U = ws;
    w.dU = w.U + fc;
    w.V = w.dU + fc;
    w.M = w.V + 16u * ((size_t)C * T + 16);
    w.pad = w.M + 16u * (size_t)F * T;
    w.D = w.pad + pad_floats(in);
    w.code = (int32_t *)(w.D + 16 * tiles_per_sample(in) + 16);
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

/* The per-tile arithmetic runs over all the tiles of a plane at once (t contiguous, so it
 * vectorises); gathering patches from the plane and scattering results back are plain copies.
 * On x86-64 the hot loops are also built for AVX2 and AVX-512, picked at load time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define UD_WINO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define UD_WINO_CLONES
#endif

/* D[r*4 + k][t] = the 4x4 patch of tile t, from the zero-padded plane. */
static void gather_patches(const float *plane, float *pad, struct ud_shape in, float *D, size_t tps)
{
    int th = (in.h + 1) / 2, tw = (in.w + 1) / 2, pw = 2 * tw + 2, ph = 2 * th + 2;
    memset(pad, 0, (size_t)pw * ph * sizeof(float));
    for (int iy = 0; iy < in.h; iy++) {
        const float *restrict s = plane + (size_t)iy * in.w;
        float *restrict d = pad + (size_t)(iy + 1) * pw + 1;
        for (int ix = 0; ix < in.w; ix++)
            d[ix] = s[ix];
    }
    for (int ty = 0; ty < th; ty++)
        for (int r = 0; r < 4; r++) {
            const float *restrict row = pad + (size_t)(2 * ty + r) * pw;
            for (int k = 0; k < 4; k++) {
                float *restrict d = D + (size_t)(r * 4 + k) * tps + (size_t)ty * tw;
                for (int tx = 0; tx < tw; tx++)
                    d[tx] = row[2 * tx + k];
            }
        }
}

/* The tile kernels below are written once as macros over a value type: 16-float vectors (GCC's
 * generic vectors: one zmm with AVX-512, four xmm without) for full groups of tiles, plain floats
 * for the rest. The auto-vectoriser gives up on these 16-stream loops. */
#if defined(__GNUC__)
typedef float vf16 __attribute__((vector_size(64), aligned(4)));
typedef int vi16 __attribute__((vector_size(64), aligned(4)));
typedef float vf8 __attribute__((vector_size(32), aligned(4)));
#define VLD(p)      (*(const vf16 *)(p))
#define VST(p, v)   (*(vf16 *)(p) = (v))
#define VRELU(v)    ((vf16)((vi16)(v) & ~((v) < 0.0f)))
#define VSPLAT(x)   ((vf16){0} + (x))
#define UD_WINO_VEC 16
#else
#define UD_WINO_VEC 0
#endif
#define SLD(p)    (*(p))
#define SST(p, v) (*(p) = (v))
#define SRELU(v)  ((v) < 0.0f ? 0.0f : (v)) /* NaN passes through */
#define SSPLAT(x) (x)

/* Runs a tile kernel over tiles t in [0, n): VEC (the kernel on vf16) for full groups of
 * UD_WINO_VEC tiles, then SCALAR (the same kernel on float) for the rest. */
#if UD_WINO_VEC
#define FOR_EACH_TILE(n, VEC, SCALAR)                                                              \
    do {                                                                                           \
        size_t t = 0;                                                                              \
        for (; t + UD_WINO_VEC <= (n); t += UD_WINO_VEC)                                           \
            VEC;                                                                                   \
        for (; t < (n); t++)                                                                       \
            SCALAR;                                                                                \
    } while (0)
#else
#define FOR_EACH_TILE(n, VEC, SCALAR)                                                              \
    do {                                                                                           \
        for (size_t t = 0; t < (n); t++)                                                           \
            SCALAR;                                                                                \
    } while (0)
#endif

#define INPUT_TILES(TY, LD, ST)                                                                    \
    do {                                                                                           \
        TY e[4][4];                                                                                \
        for (int k = 0; k < 4; k++) {                                                              \
            TY a0 = LD(D + (size_t)k * tps + t), a1 = LD(D + (size_t)(4 + k) * tps + t);           \
            TY a2 = LD(D + (size_t)(8 + k) * tps + t), a3 = LD(D + (size_t)(12 + k) * tps + t);    \
            e[0][k] = a0 - a2;                                                                     \
            e[1][k] = a1 + a2;                                                                     \
            e[2][k] = a2 - a1;                                                                     \
            e[3][k] = a1 - a3;                                                                     \
        }                                                                                          \
        for (int r = 0; r < 4; r++) {                                                              \
            ST(V + (size_t)(r * 4) * ldv + t, e[r][0] - e[r][2]);                                  \
            ST(V + (size_t)(r * 4 + 1) * ldv + t, e[r][1] + e[r][2]);                              \
            ST(V + (size_t)(r * 4 + 2) * ldv + t, e[r][2] - e[r][1]);                              \
            ST(V + (size_t)(r * 4 + 3) * ldv + t, e[r][1] - e[r][3]);                              \
        }                                                                                          \
    } while (0)

/* V[xi][t] = (B^T d B)[xi], xi-th row at V + xi * ldv. */
UD_WINO_CLONES
static void input_transform_tiles(const float *restrict D, size_t tps, float *restrict V,
                                  size_t ldv)
{
    FOR_EACH_TILE(tps, INPUT_TILES(vf16, VLD, VST), INPUT_TILES(float, SLD, SST));
}

#if UD_WINO_VEC
/* input_transform for planes at most 14 wide, straight from the padded rows (stride 16, one
 * vector each): B^T over rows as whole vectors, then B over columns by splitting even and odd
 * columns. Writes 8 tiles per tile row, up to 8 - tw floats past each row's end: callers
 * transform tiles in increasing t (later tiles overwrite the spill) and keep 16 floats of slack
 * after each xi block. */
UD_WINO_CLONES
static void input_transform_rows16(const float *pad, int th, int tw, float *V, size_t ldv)
{
    for (int ty = 0; ty < th; ty++) {
        const float *p = pad + (size_t)(2 * ty) * 16;
        vf16 p0 = VLD(p), p1 = VLD(p + 16), p2 = VLD(p + 32), p3 = VLD(p + 48);
        vf16 e[4] = {p0 - p2, p1 + p2, p2 - p1, p1 - p3};
        for (int r = 0; r < 4; r++) {
            vf8 ev0 = __builtin_shufflevector(e[r], e[r], 0, 2, 4, 6, 8, 10, 12, 14);
            vf8 od0 = __builtin_shufflevector(e[r], e[r], 1, 3, 5, 7, 9, 11, 13, 15);
            vf8 ev1 = __builtin_shufflevector(e[r], e[r], 2, 4, 6, 8, 10, 12, 14, 14);
            vf8 od1 = __builtin_shufflevector(e[r], e[r], 3, 5, 7, 9, 11, 13, 15, 15);
            float *v = V + (size_t)(r * 4) * ldv + (size_t)ty * tw;
            *(vf8 *)v = ev0 - ev1;
            *(vf8 *)(v + ldv) = od0 + ev1;
            *(vf8 *)(v + 2 * ldv) = ev1 - od0;
            *(vf8 *)(v + 3 * ldv) = od0 - od1;
        }
    }
}
#endif

/* V[xi][t] for the tiles of one plane (H, W) with row stride W. D: 16 * tps floats scratch. */
static void input_transform(const float *plane, float *pad, float *D, struct ud_shape in, float *V,
                            size_t ldv)
{
    size_t tps = tiles_per_sample(in);
#if UD_WINO_VEC
    int th = (in.h + 1) / 2, tw = (in.w + 1) / 2;
    if (tw <= 7) {
        memset(pad, 0, (size_t)(2 * th + 2) * 16 * sizeof(float));
        for (int iy = 0; iy < in.h; iy++) {
            const float *restrict s = plane + (size_t)iy * in.w;
            float *restrict d = pad + (size_t)(iy + 1) * 16 + 1;
            for (int ix = 0; ix < in.w; ix++)
                d[ix] = s[ix];
        }
        input_transform_rows16(pad, th, tw, V, ldv);
        return;
    }
#endif
    gather_patches(plane, pad, in, D, tps);
    input_transform_tiles(D, tps, V, ldv);
}

#define INPUT_ADJOINT_TILES(TY, LD, ST)                                                            \
    do {                                                                                           \
        TY q[4][4]; /* dV B^T, row by row */                                                       \
        for (int r = 0; r < 4; r++) {                                                              \
            TY v0 = LD(V + (size_t)(r * 4) * ldv + t), v1 = LD(V + (size_t)(r * 4 + 1) * ldv + t); \
            TY v2 = LD(V + (size_t)(r * 4 + 2) * ldv + t);                                         \
            TY v3 = LD(V + (size_t)(r * 4 + 3) * ldv + t);                                         \
            q[r][0] = v0;                                                                          \
            q[r][1] = v1 - v2 + v3;                                                                \
            q[r][2] = v1 + v2 - v0;                                                                \
            q[r][3] = -v3;                                                                         \
        }                                                                                          \
        for (int k = 0; k < 4; k++) {                                                              \
            ST(D + (size_t)k * tps + t, q[0][k]);                                                  \
            ST(D + (size_t)(4 + k) * tps + t, q[1][k] - q[2][k] + q[3][k]);                        \
            ST(D + (size_t)(8 + k) * tps + t, q[1][k] + q[2][k] - q[0][k]);                        \
            ST(D + (size_t)(12 + k) * tps + t, -q[3][k]);                                          \
        }                                                                                          \
    } while (0)

/* D[r*4 + k][t] = (B dV B^T)[r][k] from dV[xi][t] at V + xi * ldv. */
UD_WINO_CLONES
static void input_adjoint_tiles(const float *restrict V, size_t ldv, float *restrict D, size_t tps)
{
    FOR_EACH_TILE(tps, INPUT_ADJOINT_TILES(vf16, VLD, VST), INPUT_ADJOINT_TILES(float, SLD, SST));
}

#if UD_WINO_VEC
/* input_transform_adjoint for planes at most 14 wide, into padded rows of stride 16 (zeroed
 * by the caller): the adjoint of input_transform_rows16. Reads 8 tiles per tile row (up to
 * 8 - tw past its end, masked off). */
UD_WINO_CLONES
static void input_adjoint_rows16(const float *V, size_t ldv, int th, int tw, float *pad)
{
    typedef int vi8 __attribute__((vector_size(32), aligned(4)));
    vi8 lane = {0, 1, 2, 3, 4, 5, 6, 7}, keep = lane < tw;
    vf8 zero = {0};
    for (int ty = 0; ty < th; ty++) {
        vf16 R[4];
        for (int r = 0; r < 4; r++) {
            const float *v = V + (size_t)(r * 4) * ldv + (size_t)ty * tw;
            vf8 v0 = (vf8)(*(const vi8 *)v & keep), v1 = (vf8)(*(const vi8 *)(v + ldv) & keep);
            vf8 v2 = (vf8)(*(const vi8 *)(v + 2 * ldv) & keep);
            vf8 v3 = (vf8)(*(const vi8 *)(v + 3 * ldv) & keep);
            vf8 q0 = v0, q1 = v1 - v2 + v3, q2 = v1 + v2 - v0, q3 = -v3;
            /* column 2m gets q0[m] + q2[m - 1], column 2m + 1 gets q1[m] + q3[m - 1] */
            vf8 ev = q0 + __builtin_shufflevector(q2, zero, 8, 0, 1, 2, 3, 4, 5, 6);
            vf8 od = q1 + __builtin_shufflevector(q3, zero, 8, 0, 1, 2, 3, 4, 5, 6);
            R[r] = __builtin_shufflevector(ev, od, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7,
                                           15);
        }
        float *p = pad + (size_t)(2 * ty) * 16;
        VST(p, VLD(p) + R[0]);
        VST(p + 16, VLD(p + 16) + R[1] - R[2] + R[3]);
        VST(p + 32, VLD(p + 32) + R[1] + R[2] - R[0]);
        VST(p + 48, VLD(p + 48) - R[3]);
    }
}
#endif

/* The adjoint of input_transform: plane (H, W) = the sum of B dV B^T over the tiles. */
static void input_transform_adjoint(const float *V, size_t ldv, float *pad, float *D,
                                    struct ud_shape in, float *plane)
{
    int th = (in.h + 1) / 2, tw = (in.w + 1) / 2, pw = 2 * tw + 2, ph = 2 * th + 2;
    size_t tps = (size_t)th * tw;
#if UD_WINO_VEC
    if (tw <= 7) {
        memset(pad, 0, (size_t)ph * 16 * sizeof(float));
        input_adjoint_rows16(V, ldv, th, tw, pad);
        for (int iy = 0; iy < in.h; iy++) {
            const float *restrict s = pad + (size_t)(iy + 1) * 16 + 1;
            float *restrict d = plane + (size_t)iy * in.w;
            for (int ix = 0; ix < in.w; ix++)
                d[ix] = s[ix];
        }
        return;
    }
#endif
    input_adjoint_tiles(V, ldv, D, tps);
    memset(pad, 0, (size_t)pw * ph * sizeof(float));
    /* Tiles overlap by two rows and columns: one (r, k) at a time, the writes of a row of
     * tiles do not alias. */
    for (int ty = 0; ty < th; ty++)
        for (int r = 0; r < 4; r++) {
            float *restrict row = pad + (size_t)(2 * ty + r) * pw;
            for (int k = 0; k < 4; k++) {
                const float *restrict d = D + (size_t)(r * 4 + k) * tps + (size_t)ty * tw;
                for (int tx = 0; tx < tw; tx++)
                    row[2 * tx + k] += d[tx];
            }
        }
    for (int iy = 0; iy < in.h; iy++) {
        const float *restrict s = pad + (size_t)(iy + 1) * pw + 1;
        float *restrict d = plane + (size_t)iy * in.w;
        for (int ix = 0; ix < in.w; ix++)
            d[ix] = s[ix];
    }
}

#define OUTPUT_TILES(TY, LD, ST, RELU, SPLAT)                                                      \
    do {                                                                                           \
        TY s0[4], s1[4], bv = SPLAT(bias);                                                         \
        for (int k = 0; k < 4; k++) {                                                              \
            TY m0 = LD(M + (size_t)k * ldm + t), m1 = LD(M + (size_t)(4 + k) * ldm + t);           \
            TY m2 = LD(M + (size_t)(8 + k) * ldm + t), m3 = LD(M + (size_t)(12 + k) * ldm + t);    \
            s0[k] = m0 + m1 + m2;                                                                  \
            s1[k] = m1 - m2 - m3;                                                                  \
        }                                                                                          \
        TY v0 = s0[0] + s0[1] + s0[2] + bv, v1 = s0[1] - s0[2] - s0[3] + bv;                       \
        TY v2 = s1[0] + s1[1] + s1[2] + bv, v3 = s1[1] - s1[2] - s1[3] + bv;                       \
        if (relu) {                                                                                \
            v0 = RELU(v0);                                                                         \
            v1 = RELU(v1);                                                                         \
            v2 = RELU(v2);                                                                         \
            v3 = RELU(v3);                                                                         \
        }                                                                                          \
        ST(Yq + t, v0);                                                                            \
        ST(Yq + tps + t, v1);                                                                      \
        ST(Yq + 2 * tps + t, v2);                                                                  \
        ST(Yq + 3 * tps + t, v3);                                                                  \
    } while (0)

/* Yq[i*2 + j][t] = (A^T M A)[i][j] + bias (then ReLU, NaN passing) from M[xi][t] at
 * M + xi * ldm. */
UD_WINO_CLONES
static void output_transform_tiles(const float *restrict M, size_t ldm, float bias, int relu,
                                   float *restrict Yq, size_t tps)
{
    FOR_EACH_TILE(tps, OUTPUT_TILES(vf16, VLD, VST, VRELU, VSPLAT),
                  OUTPUT_TILES(float, SLD, SST, SRELU, SSPLAT));
}

/* plane (H, W) = A^T M A over the tiles of one output plane, + bias, then ReLU if relu. */
static void output_transform(const float *M, size_t ldm, float bias, int relu, float *Yq,
                             struct ud_shape out, float *plane)
{
    int th = (out.h + 1) / 2, tw = (out.w + 1) / 2;
    size_t tps = (size_t)th * tw;
    output_transform_tiles(M, ldm, bias, relu, Yq, tps);
    for (int y = 0; y < out.h; y++) {
        const float *restrict q = Yq + (size_t)(y & 1) * 2 * tps + (size_t)(y / 2) * tw;
        float *restrict dst = plane + (size_t)y * out.w;
        int x = 0;
        for (; x + 1 < out.w; x += 2) {
            dst[x] = q[x / 2];
            dst[x + 1] = q[tps + x / 2];
        }
        if (x < out.w)
            dst[x] = q[x / 2];
    }
}

#define OUTPUT_ADJOINT_TILES(TY, LD, ST)                                                           \
    do {                                                                                           \
        TY a = LD(Yq + t), b = LD(Yq + tps + t), c = LD(Yq + 2 * tps + t);                         \
        TY d = LD(Yq + 3 * tps + t);                                                               \
        TY row[4][2] = {{a, b}, {a + c, b + d}, {a - c, b - d}, {-c, -d}};                         \
        for (int r = 0; r < 4; r++) {                                                              \
            TY p = row[r][0], q = row[r][1];                                                       \
            ST(M + (size_t)(r * 4) * ldm + t, p);                                                  \
            ST(M + (size_t)(r * 4 + 1) * ldm + t, p + q);                                          \
            ST(M + (size_t)(r * 4 + 2) * ldm + t, p - q);                                          \
            ST(M + (size_t)(r * 4 + 3) * ldm + t, -q);                                             \
        }                                                                                          \
    } while (0)

/* dM[xi][t] = (A dY A^T)[xi] from the tiles' 2x2 output gradients Yq[i*2 + j][t]. */
UD_WINO_CLONES
static void output_adjoint_tiles(const float *restrict Yq, size_t tps, float *restrict M,
                                 size_t ldm)
{
    FOR_EACH_TILE(tps, OUTPUT_ADJOINT_TILES(vf16, VLD, VST), OUTPUT_ADJOINT_TILES(float, SLD, SST));
}

/* dM for the tiles of one output-gradient plane (H, W). Yq: 4 * tps floats scratch. */
static void output_transform_adjoint(const float *plane, float *Yq, struct ud_shape out, float *M,
                                     size_t ldm)
{
    int th = (out.h + 1) / 2, tw = (out.w + 1) / 2;
    size_t tps = (size_t)th * tw;
    for (int y = 0; y < 2 * th; y++) {
        float *restrict q = Yq + (size_t)(y & 1) * 2 * tps + (size_t)(y / 2) * tw;
        if (y >= out.h) {
            for (int tx = 0; tx < tw; tx++)
                q[tx] = q[tps + tx] = 0.0f;
            continue;
        }
        const float *restrict src = plane + (size_t)y * out.w;
        int x = 0;
        for (; x + 1 < out.w; x += 2) {
            q[x / 2] = src[x];
            q[tps + x / 2] = src[x + 1];
        }
        if (x < out.w) {
            q[x / 2] = src[x];
            q[tps + x / 2] = 0.0f;
        }
    }
    output_adjoint_tiles(Yq, tps, M, ldm);
}

/* The 2x2 max pool over each tile's four outputs, for the fused conv + (ReLU) + pool: the tile
 * is exactly one pool window. P[t] = the window's max (after the ReLU if relu; NaN as in
 * maxpool then relu), code[t] = which output won (row-major, the first maximum on ties, as the
 * plain pool), or 4 where relu and the max is not > 0 (the ReLU blocks its gradient). */
UD_WINO_CLONES
static void output_pool_tiles(const float *restrict M, size_t ldm, float bias, int relu,
                              float *restrict P, int32_t *restrict code, size_t n)
{
    size_t t = 0;
#if UD_WINO_VEC
    for (; t + UD_WINO_VEC <= n; t += UD_WINO_VEC) {
        vf16 s0[4], s1[4], bv = VSPLAT(bias);
        for (int k = 0; k < 4; k++) {
            vf16 m0 = VLD(M + (size_t)k * ldm + t), m1 = VLD(M + (size_t)(4 + k) * ldm + t);
            vf16 m2 = VLD(M + (size_t)(8 + k) * ldm + t), m3 = VLD(M + (size_t)(12 + k) * ldm + t);
            s0[k] = m0 + m1 + m2;
            s1[k] = m1 - m2 - m3;
        }
        vf16 v[4] = {s0[0] + s0[1] + s0[2] + bv, s0[1] - s0[2] - s0[3] + bv,
                     s1[0] + s1[1] + s1[2] + bv, s1[1] - s1[2] - s1[3] + bv};
        if (relu)
            for (int k = 0; k < 4; k++)
                v[k] = VRELU(v[k]);
        vf16 best = v[0];
        vi16 c = {0};
        for (int k = 1; k < 4; k++) {
            vi16 gt = v[k] > best;
            best = (vf16)(((vi16)v[k] & gt) | ((vi16)best & ~gt));
            c = (c & ~gt) | (gt & k);
        }
        if (relu) {
            vi16 blocked = ~(best > 0.0f);
            c = (c & ~blocked) | (blocked & 4);
        }
        VST(P + t, best);
        *(vi16 *)(code + t) = c;
    }
#endif
    for (; t < n; t++) {
        float s0[4], s1[4];
        for (int k = 0; k < 4; k++) {
            float m0 = M[(size_t)k * ldm + t], m1 = M[(size_t)(4 + k) * ldm + t];
            float m2 = M[(size_t)(8 + k) * ldm + t], m3 = M[(size_t)(12 + k) * ldm + t];
            s0[k] = m0 + m1 + m2;
            s1[k] = m1 - m2 - m3;
        }
        float v[4] = {s0[0] + s0[1] + s0[2] + bias, s0[1] - s0[2] - s0[3] + bias,
                      s1[0] + s1[1] + s1[2] + bias, s1[1] - s1[2] - s1[3] + bias};
        float best = relu ? SRELU(v[0]) : v[0];
        int32_t c = 0;
        for (int k = 1; k < 4; k++) {
            float vk = relu ? SRELU(v[k]) : v[k];
            if (vk > best) {
                best = vk;
                c = k;
            }
        }
        P[t] = best;
        code[t] = relu && !(best > 0.0f) ? 4 : c;
    }
}

/* dM[xi][t] = (A dY A^T)[xi] where the tile's output gradient dY is dP[t] at the output
 * code[t] names and zero elsewhere (all zero for code 4): the adjoint of output_pool_tiles.
 * Returns the sum of those dY (the bias gradient's share). */
UD_WINO_CLONES
static float pool_adjoint_tiles(const float *restrict dP, const int32_t *restrict code,
                                float *restrict M, size_t ldm, size_t n)
{
    size_t t = 0;
    float sum = 0.0f;
#if UD_WINO_VEC
    vf16 acc = {0};
    for (; t + UD_WINO_VEC <= n; t += UD_WINO_VEC) {
        vi16 g = *(const vi16 *)(dP + t), c = *(const vi16 *)(code + t);
        vf16 a = (vf16)(g & (c == 0)), b = (vf16)(g & (c == 1));
        vf16 cc = (vf16)(g & (c == 2)), d = (vf16)(g & (c == 3));
        acc += (a + b) + (cc + d);
        vf16 row[4][2] = {{a, b}, {a + cc, b + d}, {a - cc, b - d}, {-cc, -d}};
        for (int r = 0; r < 4; r++) {
            vf16 p = row[r][0], q = row[r][1];
            VST(M + (size_t)(r * 4) * ldm + t, p);
            VST(M + (size_t)(r * 4 + 1) * ldm + t, p + q);
            VST(M + (size_t)(r * 4 + 2) * ldm + t, p - q);
            VST(M + (size_t)(r * 4 + 3) * ldm + t, -q);
        }
    }
    for (int j = 0; j < UD_WINO_VEC; j++)
        sum += acc[j];
#endif
    for (; t < n; t++) {
        float g = dP[t];
        int32_t c = code[t];
        float a = c == 0 ? g : 0.0f, b = c == 1 ? g : 0.0f;
        float cc = c == 2 ? g : 0.0f, d = c == 3 ? g : 0.0f;
        sum += (a + b) + (cc + d);
        float row[4][2] = {{a, b}, {a + cc, b + d}, {a - cc, b - d}, {-cc, -d}};
        for (int r = 0; r < 4; r++) {
            float p = row[r][0], q = row[r][1];
            M[(size_t)(r * 4) * ldm + t] = p;
            M[(size_t)(r * 4 + 1) * ldm + t] = p + q;
            M[(size_t)(r * 4 + 2) * ldm + t] = p - q;
            M[(size_t)(r * 4 + 3) * ldm + t] = -q;
        }
    }
    return sum;
}

/* V and M[xi] (F, T) = U[xi] V[xi] for samples [b0, b0 + nb); U already in w. */
static void forward_gemms(const float *x, size_t cs, size_t bs, const struct wino_ws *w, int b0,
                          int nb, struct ud_shape in, int F)
{
    int C = in.c;
    size_t tps = tiles_per_sample(in), T = (size_t)nb * tps, ldv = (size_t)C * T + 16;
    for (int c = 0; c < C; c++)
        for (int b = 0; b < nb; b++)
            input_transform(x + c * cs + (size_t)(b0 + b) * bs, w->pad, w->D, in,
                            w->V + (size_t)c * T + b * tps, ldv);
    for (int xi = 0; xi < 16; xi++)
        ud_sgemm(false, false, F, (int)T, C, 1.0f, w->U + (size_t)xi * F * C, C,
                 w->V + (size_t)xi * ldv, (int)T, 0.0f, w->M + (size_t)xi * F * T, (int)T);
}

/* Given dM[xi] (F, T) of samples [b0, b0 + nb) in w: accumulates dU[xi] += dM[xi] V[xi]^T
 * (dU NULL: frozen; the first chunk overwrites) and scatters dx += B (U[xi]^T dM[xi]) B^T
 * (dx NULL: not needed). Shared by the plain and the pool-fused backward. */
static void backward_gemms(const float *x, size_t cs, size_t bs, const struct wino_ws *w, int b0,
                           int nb, struct ud_shape in, int F, float *dU, float *dx)
{
    int C = in.c;
    size_t tps = tiles_per_sample(in), T = (size_t)nb * tps, ldv = (size_t)C * T + 16;
    if (dU) {
        for (int c = 0; c < C; c++)
            for (int b = 0; b < nb; b++)
                input_transform(x + c * cs + (size_t)(b0 + b) * bs, w->pad, w->D, in,
                                w->V + (size_t)c * T + b * tps, ldv);
        for (int xi = 0; xi < 16; xi++)
            ud_sgemm(false, true, F, C, (int)T, 1.0f, w->M + (size_t)xi * F * T, (int)T,
                     w->V + (size_t)xi * ldv, (int)T, b0 ? 1.0f : 0.0f, dU + (size_t)xi * F * C, C);
    }
    if (dx) {
        for (int xi = 0; xi < 16; xi++)
            ud_sgemm(true, false, C, (int)T, F, 1.0f, w->U + (size_t)xi * F * C, C,
                     w->M + (size_t)xi * F * T, (int)T, 0.0f, w->V + (size_t)xi * ldv, (int)T);
        for (int c = 0; c < C; c++)
            for (int b = 0; b < nb; b++)
                input_transform_adjoint(w->V + (size_t)c * T + b * tps, ldv, w->pad, w->D, in,
                                        dx + c * cs + (size_t)(b0 + b) * bs);
    }
}

void ud__wino_forward_pool(const float *x, int layout, const float *W, const float *bias,
                           float *pooled, int32_t *code, float *ws, int B, struct ud_shape in,
                           int F, int chunk, int relu)
{
    int C = in.c, Ho = in.h / 2, Wo = in.w / 2, tw = (in.w + 1) / 2;
    size_t hw = (size_t)in.h * in.w, tps = tiles_per_sample(in), hwo = (size_t)Ho * Wo, cs, bs;
    size_t Tmax = (size_t)(chunk < B ? chunk : B) * tps; /* as ud__wino_floats was sized */
    struct wino_ws w = ws_split(ws, C, F, Tmax, in);
    layout_strides(layout, B, C, hw, &cs, &bs);
    filter_transform(W, w.U, F, C);
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t T = (size_t)nb * tps;
        forward_gemms(x, cs, bs, &w, b0, nb, in, F);
        for (int f = 0; f < F; f++) {
            size_t o = ((size_t)f * B + b0) * hwo;
            if (hwo == tps) { /* even H and W: the chunk's pooled planes are one run */
                output_pool_tiles(w.M + (size_t)f * T, (size_t)F * T, bias[f], relu, pooled + o,
                                  code + o, T);
                continue;
            }
            /* Odd: the last tile row or column has no pool window. */
            for (int b = 0; b < nb; b++, o += hwo) {
                output_pool_tiles(w.M + (size_t)f * T + b * tps, (size_t)F * T, bias[f], relu, w.D,
                                  w.code, tps);
                for (int oy = 0; oy < Ho; oy++)
                    for (int ox = 0; ox < Wo; ox++) {
                        pooled[o + (size_t)oy * Wo + ox] = w.D[oy * tw + ox];
                        code[o + (size_t)oy * Wo + ox] = w.code[oy * tw + ox];
                    }
            }
        }
    }
}

void ud__wino_backward_pool(const float *x, int layout, const float *dpooled, const int32_t *code,
                            float *dW, float *db, float *dx, float *ws, int B, struct ud_shape in,
                            int F, int chunk)
{
    int C = in.c, Ho = in.h / 2, Wo = in.w / 2, th = (in.h + 1) / 2, tw = (in.w + 1) / 2;
    size_t hw = (size_t)in.h * in.w, tps = tiles_per_sample(in), hwo = (size_t)Ho * Wo, cs, bs;
    size_t Tmax = (size_t)(chunk < B ? chunk : B) * tps; /* as ud__wino_floats was sized */
    struct wino_ws w = ws_split(ws, C, F, Tmax, in);
    layout_strides(layout, B, C, hw, &cs, &bs);
    if (db)
        memset(db, 0, (size_t)F * sizeof(float));
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t T = (size_t)nb * tps;
        for (int f = 0; f < F; f++) {
            size_t o = ((size_t)f * B + b0) * hwo;
            float s = 0.0f;
            if (hwo == tps) {
                s = pool_adjoint_tiles(dpooled + o, code + o, w.M + (size_t)f * T, (size_t)F * T,
                                       T);
            } else {
                for (int b = 0; b < nb; b++, o += hwo) {
                    for (int ty = 0; ty < th; ty++)
                        for (int tx = 0; tx < tw; tx++) {
                            int in_pool = ty < Ho && tx < Wo;
                            w.D[ty * tw + tx] = in_pool ? dpooled[o + (size_t)ty * Wo + tx] : 0.0f;
                            w.code[ty * tw + tx] = in_pool ? code[o + (size_t)ty * Wo + tx] : 4;
                        }
                    s += pool_adjoint_tiles(w.D, w.code, w.M + (size_t)f * T + b * tps,
                                            (size_t)F * T, tps);
                }
            }
            if (db)
                db[f] += s;
        }
        backward_gemms(x, cs, bs, &w, b0, nb, in, F, dW ? w.dU : NULL, dx);
    }
    if (dW)
        filter_transform_adjoint(w.dU, dW, F, C);
}

void ud__wino_forward(const float *x, int layout, const float *W, const float *bias, float *y,
                      float *ws, int B, struct ud_shape in, int F, int chunk, int relu)
{
    int C = in.c;
    size_t hw = (size_t)in.h * in.w, tps = tiles_per_sample(in), cs, bs;
    size_t Tmax = (size_t)(chunk < B ? chunk : B) * tps; /* as ud__wino_floats was sized */
    struct wino_ws w = ws_split(ws, C, F, Tmax, in);
    layout_strides(layout, B, C, hw, &cs, &bs);
    filter_transform(W, w.U, F, C);
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t T = (size_t)nb * tps;
        forward_gemms(x, cs, bs, &w, b0, nb, in, F);
        for (int f = 0; f < F; f++)
            for (int b = 0; b < nb; b++)
                output_transform(w.M + (size_t)f * T + b * tps, (size_t)F * T, bias[f], relu, w.D,
                                 in, y + ((size_t)f * B + b0 + b) * hw);
    }
}

void ud__wino_backward(const float *x, int layout, const float *dy, float *dW, float *db, float *dx,
                       float *ws, int B, struct ud_shape in, int F, int chunk)
{
    int C = in.c;
    size_t hw = (size_t)in.h * in.w, tps = tiles_per_sample(in), cs, bs;
    size_t Tmax = (size_t)(chunk < B ? chunk : B) * tps; /* as ud__wino_floats was sized */
    struct wino_ws w = ws_split(ws, C, F, Tmax, in);
    layout_strides(layout, B, C, hw, &cs, &bs);
    if (db)
        for (int f = 0; f < F; f++)
            db[f] = ud__sum_floats(dy + (size_t)f * B * hw, (size_t)B * hw);
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t T = (size_t)nb * tps;
        for (int f = 0; f < F; f++)
            for (int b = 0; b < nb; b++)
                output_transform_adjoint(dy + ((size_t)f * B + b0 + b) * hw, w.D, in,
                                         w.M + (size_t)f * T + b * tps, (size_t)F * T);
        backward_gemms(x, cs, bs, &w, b0, nb, in, F, dW ? w.dU : NULL, dx);
    }
    if (dW)
        filter_transform_adjoint(w.dU, dW, F, C);
}

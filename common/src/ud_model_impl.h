/*  ud_model_impl.h — the model's private layout, shared by ud_model.c (object, accessors) and
 *  ud_layers.c (forward and backward). Nothing outside common/src includes this. */
#ifndef UD_MODEL_IMPL_H
#define UD_MODEL_IMPL_H

#include "updraft/ud_model.h"

/* Activation layouts. The reference backend keeps everything (B, C, H, W). The fast backend
 * keeps conv and pool outputs channel-major, (C, B, H, W), so that one GEMM covers the whole
 * batch (im2col columns are (b, y, x)); flatten turns them back into (B, C*H*W). */
enum { UD_LAYOUT_BCHW = 0, UD_LAYOUT_CBHW = 1 };

/* What the passes run for a layer: one kernel per (layer kind, backend, fusion). */
enum ud_op {
    UD_OP_NONE = 0,  /* nothing: a max pool the conv below already ran (see ud_layer_plan.pool) */
    UD_OP_DENSE_REF, /* reference backend (ud_layers_ref.c) */
    UD_OP_CONV_REF,  /* reference backend */
    UD_OP_DENSE,     /* GEMM */
    UD_OP_CONV,      /* im2col + GEMM, chunk by chunk */
    UD_OP_CONV_POOL, /* the same with the 2x2 max pool above fused in */
    UD_OP_WINO,      /* Winograd F(2x2, 3x3) (ud_conv_wino.c) */
    UD_OP_WINO_POOL, /* the same with the 2x2 max pool above fused in */
    UD_OP_MAXPOOL,   /* any window (ud_layers_ref.c) */
    UD_OP_MAXPOOL2,  /* 2x2 windows tiling an even plane */
    UD_OP_RELU,
    UD_OP_DROPOUT,
    UD_OP_FLATTEN,
    UD_OP_SOFTMAX,
};

/* How one backend runs one layer, decided once by ud__model_reserve from the architecture
 * (the fusions look at the layers around it); forward and backward only follow it. A new
 * layer kind needs its ops here, a case in plan_fast (a row in plan_reference's table) and a
 * case in forward_layer and backward_layer. */
struct ud_layer_plan {
    enum ud_op op;
    int layout_in, layout_out; /* UD_LAYOUT_* of the layer's input and output */
    int inplace;  /* the output shares the input's buffer (relu, dropout, BCHW flatten) */
    int relu;     /* dense, conv: forward also applies the ReLU right above;
                     conv pool ops: that ReLU sits between the conv and the pool */
    int pool;     /* conv pool ops: index of the max pool its forward also runs */
    int chunk;    /* conv: samples per chunk (the col buffer's capacity) */
    int skip_fwd; /* relu: the layer below applied it */
    int skip_bwd; /* relu: the pool above, or the conv below, applies its gradient gate */
    int gate;     /* maxpool2: the ReLU below is gated here, from the pool's output */
};

struct ud_layer_rt {
    struct ud_shape in, out;
    size_t in_size, out_size; /* per sample */
    struct ud_span w, b;
    struct ud_layer_plan plan[2]; /* indexed by enum ud_backend */
    float *act;                   /* output, (B, out_size) floats; borrowed from the workspace */
    float *col;      /* conv (fast): im2col columns of one chunk, (C*K*K, chunk*Ho*Wo), or the
                        Winograd workspace (the filters' transform from forward, kept for backward) */
    int32_t *argmax; /* maxpool: index into the input of each output */
    float *mask;     /* dropout: 0 or 1/(1-rate) per output */
};

struct ud_metric {
    char *key;
    double value;
};

struct ud_model {
    struct ud_arch arch;
    int nclasses;
    size_t input_size;
    struct ud_layer_rt L[UD_MAX_LAYERS];
    size_t nparams;
    float *params, *grads;
    struct ud_span spans[2 * UD_MAX_LAYERS];
    size_t nspans;
    int lowest_updatable; /* -1: nothing updatable */
    enum ud_backend backend;
    struct ud_rng rng; /* dropout */

    char **labels;
    struct ud_metadata meta;
    struct ud_input_desc input;
    struct ud_update_defaults defaults;
    struct ud_metric *metrics;
    size_t nmetrics;

    /* Workspace, sized for `cap` samples; grown on demand by forward. */
    int cap;
    int last_B; /* batch of the last forward; 0: none yet */
    int last_training;
    enum ud_backend last_backend;
    float *x_in;                /* copy of the last input when layer 0 works in place */
    const float *x_last;        /* the last input: x_in, or the caller's (borrowed) batch */
    float *probs;               /* (B, nclasses) */
    float *delta[2];            /* backward scratch, each (B, max activation size) */
    float *bufs[UD_MAX_LAYERS]; /* owned activation buffers (NULL where in place) */
};

/* ud_layers.c. Reserve sizes the workspace for B samples and plans every layer for both
 * backends (struct ud_layer_plan). */
int ud__model_reserve(struct ud_model *m, int B);
void ud__model_free_workspace(struct ud_model *m);
/* Recomputes per-layer shapes, spans and the lowest updatable layer from m->arch. */
void ud__model_layout(struct ud_model *m);

/* Sum of n floats in 16 independent lanes, so that it vectorises without -ffast-math. */
static inline float ud__sum_floats(const float *restrict x, size_t n)
{
    float acc[16] = {0};
    size_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[k + j];
    float s = 0.0f;
    for (; k < n; k++)
        s += x[k];
    for (int j = 0; j < 16; j++)
        s += acc[j];
    return s;
}

/* ud_layers_ref.c: the reference backend, naive loops in double precision, what the fast one is
 * tested against. Activations (B, C, H, W). dx NULL: not needed. The conv's dW and db NULL: a
 * frozen layer. The conv functions return 0 or UD_ENOMEM (their double accumulators). */
void ud__ref_dense_forward(const float *x, const float *W, const float *bias, float *y, int B,
                           int in, int out);
void ud__ref_dense_backward(const float *x, const float *W, const float *dy, float *dW, float *db,
                            float *dx, int B, int in, int out);
int ud__ref_conv_forward(const float *x, const float *W, const float *bias, float *y, int B,
                         struct ud_shape in, struct ud_shape out, const struct ud_layer_spec *A);
int ud__ref_conv_backward(const float *x, const float *W, const float *dy, float *dW, float *db,
                          float *dx, int B, struct ud_shape in, struct ud_shape out,
                          const struct ud_layer_spec *A);
/* Max pool over planes of (H, W) with P x P windows (layout-agnostic: a plane is a plane);
 * ties go to the first maximum in row-major window order. Backward overwrites din. */
void ud__ref_maxpool_forward(const float *in, float *out, int32_t *argmax, size_t planes, int H,
                             int W, int P);
void ud__ref_maxpool_backward(const float *dout, float *din, const int32_t *argmax, size_t planes,
                              int H, int W, int P);

/* ud_conv_wino.c: Winograd F(2x2, 3x3) for 3x3, stride 1, pad 1 convolutions with at least
 * UD_WINO_MIN_C input channels (below that im2col's GEMM is cheap and the transforms are not).
 * Activations as in the fast backend: x in `layout`, y and dy channel-major (F, B, H, W). */
#define UD_WINO_MIN_C 4
int ud__wino_applies(const struct ud_layer_rt *L, const struct ud_layer_spec *A);
/* Samples per chunk, and the workspace (floats) a chunk of that many needs. */
int ud__wino_chunk(const struct ud_layer_rt *L, const struct ud_layer_spec *A);
size_t ud__wino_floats(const struct ud_layer_rt *L, const struct ud_layer_spec *A, int chunk);
/* y = conv(x) + bias, then ReLU if relu. Leaves the filters' transform in ws for backward. */
void ud__wino_forward(const float *x, int layout, const float *W, const float *bias, float *y,
                      float *ws, int B, struct ud_shape in, int F, int chunk, int relu);
/* dW, db (NULL: frozen) and dx (NULL: not needed; overwritten, in `layout`) from dy; ws as
 * left by the forward on the same x and weights. */
void ud__wino_backward(const float *x, int layout, const float *dy, float *dW, float *db, float *dx,
                       float *ws, int B, struct ud_shape in, int F, int chunk);
/* The same with the 2x2 max pool above the conv (and the ReLU between, if relu) fused in: the
 * conv's output is never stored, each Winograd output tile being one pool window; any H, W (an
 * odd last row or column has no window). pooled and dpooled: (F, B, H/2, W/2); code, per pooled
 * output: which of its window's inputs won (0..3, row-major), or 4 where the ReLU blocks the
 * gradient. */
void ud__wino_forward_pool(const float *x, int layout, const float *W, const float *bias,
                           float *pooled, int32_t *code, float *ws, int B, struct ud_shape in,
                           int F, int chunk, int relu);
void ud__wino_backward_pool(const float *x, int layout, const float *dpooled, const int32_t *code,
                            float *dW, float *db, float *dx, float *ws, int B, struct ud_shape in,
                            int F, int chunk);

#endif

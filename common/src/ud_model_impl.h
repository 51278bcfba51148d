/*  ud_model_impl.h — the model's private layout, shared by ud_model.c (object, accessors) and
 *  ud_layers.c (forward and backward). Nothing outside common/src includes this. */
#ifndef UD_MODEL_IMPL_H
#define UD_MODEL_IMPL_H

#include "updraft/ud_model.h"

/* Activation layouts. The reference backend keeps everything (B, C, H, W). The fast backend
 * keeps conv and pool outputs channel-major, (C, B, H, W), so that one GEMM covers the whole
 * batch (im2col columns are (b, y, x)); flatten turns them back into (B, C*H*W). */
enum { UD_LAYOUT_BCHW = 0, UD_LAYOUT_CBHW = 1 };

struct ud_layer_rt {
    struct ud_shape in, out;
    size_t in_size, out_size; /* per sample */
    struct ud_span w, b;
    int layout_in, layout_out; /* for the current forward's backend */
    int inplace;               /* output shares the input's buffer (relu, dropout, BCHW flatten) */
    float *act;                /* output, (B, out_size) floats; borrowed from the workspace */
    float *col;      /* conv (fast): im2col columns of one chunk, (C*K*K, chunk*Ho*Wo), or the
                        Winograd workspace (the filters' transform from forward, kept for backward) */
    int chunk;       /* conv (fast): samples per chunk (the buffer's capacity) */
    int wino;        /* conv (fast): forward ran Winograd F(2x2, 3x3) (ud_conv_wino.c) */
    int fused_fwd;   /* relu, maxpool (fast): already applied by the conv below it */
    int fused_bwd;   /* relu (fast): its gradient gate was applied by the pool above it or by
                        the conv below it */
    int fused_pool;  /* conv (fast): index of the maxpool its forward also ran (with the ReLU
                        between, if any; its argmax holds ud__wino_forward_pool's codes); 0: none */
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
    float *cols[UD_MAX_LAYERS]; /* owned im2col buffers */
    int32_t *argmaxes[UD_MAX_LAYERS];
    float *masks[UD_MAX_LAYERS];
};

/* ud_layers.c */
int ud__model_reserve(struct ud_model *m, int B);
void ud__model_free_workspace(struct ud_model *m);
/* Recomputes per-layer shapes, spans and the lowest updatable layer from m->arch. */
void ud__model_layout(struct ud_model *m);

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

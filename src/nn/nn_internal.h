/*
 * nn_internal.h: the model graph shared by the engine (model.c), the
 * architecture builders (arch.c), the layer geometry of the pruning
 * statistics (prune/geom.c, which only reads it) and the tests. A model is a
 * list of operations in execution order over "values" (per-sample tensors):
 * value 0 is the input and each operation produces one new value from one or
 * more earlier ones, so residual adds and concatenations are ordinary
 * operations.
 * Parameters, gradients and masks are single blocks sliced by the tensor
 * table; batch-norm running statistics live in a separate buffer block.
 */
#ifndef MIAGRID_NN_INTERNAL_H
#define MIAGRID_NN_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "miagrid/nn.h"

/* The most inputs one operation takes (concatenation). */
#define MG_OP_MAX_IN 4
/* No fused activation / no parameter. */
#define MG_NO_ACT (-1)
#define MG_NO_PARAM ((size_t)-1)

/* Batch-norm constants, torch's defaults. */
#define MG_BN_MOMENTUM 0.1f
#define MG_BN_EPS 1e-5f
#define MG_LN_EPS 1e-5f

typedef enum {
    MG_OP_LINEAR,   /* over the last dimension: (c,h,I) -> (c,h,O) */
    MG_OP_CONV,     /* (C,H,W) -> (OC,OH,OW), groups, optional bias */
    MG_OP_BN,       /* BatchNorm2d over (C,H,W), BatchNorm1d over (1,1,F); optional fused ReLU */
    MG_OP_LN,       /* LayerNorm over the last dimension */
    MG_OP_MAXPOOL,
    MG_OP_AVGPOOL,
    MG_OP_GAP,      /* global average pool, flattened: (C,H,W) -> (1,1,C) */
    MG_OP_ACT,
    MG_OP_DROPOUT,
    MG_OP_ADD,      /* a + b, optional fused ReLU */
    MG_OP_CONCAT,   /* along channels */
    MG_OP_FLATTEN,  /* (C,H,W) -> (1,1,C*H*W); with C == 1 it shares its input's buffers */
    MG_OP_MHA       /* self-attention over (1,L,E) */
} mg_op_kind;

/* Per-sample shape; size = c*h*w. Sequences are (1, L, E), feature vectors (1, 1, F). */
typedef struct {
    int c, h, w;
} mg_shape3;

typedef struct {
    mg_shape3 shape;
    size_t size;
    int root;        /* the value whose buffers this one uses (itself unless a flatten's output) */
} mg_value;

typedef struct {
    mg_op_kind kind;
    int n_in, in[MG_OP_MAX_IN], out;  /* value ids */
    int act;                /* ACT: the activation; BN and ADD: MG_ACT_RELU fused, or MG_NO_ACT; LINEAR
                             * and CONV: MG_ACT_RELU or MG_ACT_TANH fused (mg_g_fuse_act), or MG_NO_ACT */
    size_t w, b;            /* parameter offsets: weight and bias (gamma and beta; MHA in-projection) */
    size_t w2, b2;          /* MHA out-projection */
    size_t rm, rv;          /* BN running mean and variance: offsets into the buffer block */
    int I, O;               /* linear: features; rows per sample = size / I */
    mg_conv2d_shape conv;   /* N set per call */
    mg_pool2d_shape pool;   /* N set per call */
    int C, S;               /* BN and GAP: channels and spatial size; LN: E and rows per sample */
    int L, E, H;            /* MHA */
    float p;                /* dropout probability */
    size_t cache_ps;        /* float cache per sample */
    size_t cache_fixed;     /* float cache independent of the batch */
    int argmax;             /* needs an int32 argmax per output element */
    int defer;              /* BN: the ADD (op index) whose output gradient, through its ReLU, is this
                             * operation's output gradient, which that ADD then does not write; or -1
                             * (set by mg_graph_finish) */
    int skip;               /* ADD: bit j set when input j's gradient is left to its producer (defer) */
    int fuse_add;           /* BN: the ADD (op index) whose output this operation's forward writes, the
                             * ADD's other input added and its ReLU applied in the same pass; or -1 */
    int fused;              /* ADD: its output is written by a BN's forward (fuse_add) */
} mg_op;

/* How mg_model_init_params fills a tensor. */
typedef enum {
    MG_INIT_FAN_IN,       /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)); a weight unless bias is set */
    MG_INIT_XAVIER_UNIF,  /* U(+-sqrt(6/(fan_in+fan_out))): the MHA in-projection */
    MG_INIT_ONE,
    MG_INIT_ZERO
} mg_init_kind;

typedef struct {
    mg_init_kind kind;
    int fan_in, fan_out;
    int is_bias;          /* zero under xavier-normal */
} mg_init_info;

struct mg_model {
    char arch[32];
    int in_c, in_h, in_w, in_dim, n_classes;
    int xavier;             /* cfg->init == "xavier-normal" */
    float smoothing;
    mg_rng *rng;

    /* graph */
    mg_op *ops;
    int n_ops, cap_ops;
    mg_value *values;
    int n_values, cap_values;
    int logits;             /* value id of the logits */
    mg_status build_st;     /* first error while building */
    char build_msg[512];

    /* tensors: parameters first, buffers after (finalised by mg_graph_finish) */
    mg_tensor_info *tensors;
    mg_init_info *init;
    size_t n_tensors, cap_tensors;
    size_t n_params, n_buffers;
    float *params, *grads, *masks, *buffers;

    /* per-batch state: activations and caches for cap_batch samples, gradients for cap_grad */
    int cap_batch, cap_grad;
    float **act, **grad;    /* per value (NULL for non-root values); grad points into a slot */
    int *gslot;             /* per root value: its gradient's slot */
    size_t *slot_size;      /* per slot: floats per sample */
    float **slots;
    int n_slots;
    float **cache;          /* per op */
    int32_t **argmax;       /* per op */
    float **cols;           /* per op: a convolution's column buffers, for cap_cols samples */
    int cap_cols;
    int cols_batch;         /* the batch of the forward they hold, or 0 */
    double *bn_sums;        /* a training batch norm's statistics sums, made by the convolution before it */
    int bn_sums_op;         /* the batch norm they are for, or -1 */
    unsigned char *ready;   /* per value: gradient written during this backward */
    float *probs;
    float *dx;              /* input gradient, (N, C, H, W) */
    float *scratch;
    size_t scratch_size;

    int last_batch, last_train;
    int input_grad;
};

/* d where keep > 0, else 0, without a branch: the ReLU masks of the hot loops
 * are data-dependent coin flips that a branch mispredicts half the time, and
 * a select through bits also lets the loops vectorise. */
static inline float mg_mask_pos(float keep, float d)
{
    uint32_t u, m = 0u - (uint32_t)(keep > 0.0f);
    memcpy(&u, &d, sizeof u);
    u &= m;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* max(v, 0) with a NaN passing through (torch.relu), without a branch. */
static inline float mg_relu1(float v)
{
    uint32_t u, m = 0u - (uint32_t)!(v < 0.0f);
    memcpy(&u, &v, sizeof u);
    u &= m;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Sum of x[0..n) in float with eight independent partial sums, so that the
 * additions pipeline and vectorise instead of waiting on one another, added
 * up in double over blocks of 2048 so that a long row (a channel of a whole
 * batch) keeps its float sums short. */
static inline double mg_sum(const float *restrict x, size_t n)
{
    double t = 0.0;
    for (size_t b = 0; b < n; b += 2048) {
        const size_t e = n - b < 2048 ? n : b + 2048;
        float a[8] = {0};
        size_t i = b;
        for (; i + 8 <= e; i += 8)
            for (int j = 0; j < 8; j++)
                a[j] += x[i + j];
        float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        for (; i < e; i++)
            s += x[i];
        t += (double)s;
    }
    return t;
}

/* The element-wise loops of the hot layers run in blocks of eight with a
 * fixed inner trip count: GCC's -O2 vectoriser only takes loops whose count
 * it knows, and these blocks it turns into SIMD code. */
#define MG_BLOCK 8

/* o = a + b, or relu(a + b). */
static inline void mg_vec_add(float *restrict o, const float *restrict a, const float *restrict b, size_t n,
                              int relu)
{
    size_t i = 0;
    if (relu) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = mg_relu1(a[i + j] + b[i + j]);
        for (; i < n; i++)
            o[i] = mg_relu1(a[i] + b[i]);
    } else {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = a[i + j] + b[i + j];
        for (; i < n; i++)
            o[i] = a[i] + b[i];
    }
}

/* d (+)= g where g is dout, or dout masked by out > 0 (the gradient through a fused ReLU). */
static inline void mg_vec_grad(float *restrict d, const float *restrict dout, const float *restrict out, size_t n,
                               int accumulate)
{
    size_t i = 0;
    if (out && accumulate) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                d[i + j] += mg_mask_pos(out[i + j], dout[i + j]);
        for (; i < n; i++)
            d[i] += mg_mask_pos(out[i], dout[i]);
    } else if (out) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                d[i + j] = mg_mask_pos(out[i + j], dout[i + j]);
        for (; i < n; i++)
            d[i] = mg_mask_pos(out[i], dout[i]);
    } else if (accumulate) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                d[i + j] += dout[i + j];
        for (; i < n; i++)
            d[i] += dout[i];
    } else {
        memcpy(d, dout, n * sizeof(float));
    }
}

/* tanh(x) to within 1.5 ulp, branch-free so that its loops vectorise (glibc's
 * tanhf is a call per element and was a fifth of the Purchase MLP's step).
 * |x| < 0.625: x + x^3 P(x^2), P a degree-4 minimax fit of (tanh x - x)/x^3
 * (relative error 4e-9); above: (1 - e)/(1 + e) with e = exp(-2|x|) from
 * 2^k exp(r), |r| <= ln2/2, exp(r) = 1 + r + r^2 Q(r), Q a degree-4 minimax
 * fit (3e-9); |x| is clamped at 9.5, where tanh rounds to 1. The sign comes
 * back by bits and a NaN passes through. Plain IEEE operations in a fixed
 * order: the same input gives the same bits, on every machine where the
 * compiler does not contract them into FMAs (GCC's default in ISO C mode). */
static inline float mg_tanh1(float x)
{
    const float a = fabsf(x), z = a * a;
    float q = -0.005704991985112429f;
    q = q * z + 0.020639093592762947f;
    q = q * z - 0.05373971909284592f;
    q = q * z + 0.13331441581249237f;
    q = q * z - 0.3333328068256378f;
    const float tp = a + (a * z) * q;
    uint32_t ua, u95 = 0x41180000u, mc = 0u - (uint32_t)(a < 9.5f);   /* 9.5f */
    memcpy(&ua, &a, sizeof ua);
    ua = (ua & mc) | (u95 & ~mc);
    float ac;
    memcpy(&ac, &ua, sizeof ac);
    const float y = -2.0f * ac;
    const float k = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(y / ln 2) */
    const float r = (y - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
    float p = 0.0013814604608342052f;
    p = p * r + 0.008368710987269878f;
    p = p * r + 0.04166838899254799f;
    p = p * r + 0.1666652113199234f;
    p = p * r + 0.4999999403953552f;
    const float ex = 1.0f + (r + (r * r) * p);
    const uint32_t sbits = (uint32_t)((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    const float e = ex * scale, te = (1.0f - e) / (1.0f + e);
    uint32_t ut, up, ue, ux, m = 0u - (uint32_t)(a < 0.625f);
    memcpy(&up, &tp, sizeof up);
    memcpy(&ue, &te, sizeof ue);
    memcpy(&ux, &x, sizeof ux);
    ut = ((up & m) | (ue & ~m)) | (ux & 0x80000000u);
    m = 0u - (uint32_t)(x == x);
    ut = (ut & m) | (ux & ~m);
    float t;
    memcpy(&t, &ut, sizeof t);
    return t;
}

/* g *= the derivative of activation act at its output out, in place: the
 * gradient through an activation fused into the layer that produced out
 * (ReLU: g where out > 0; Tanh: g (1 - out^2)). */
static inline void mg_act_grad_inplace(int act, float *restrict g, const float *restrict out, size_t n)
{
    size_t i = 0;
    if (act == MG_ACT_RELU) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                g[i + j] = mg_mask_pos(out[i + j], g[i + j]);
        for (; i < n; i++)
            g[i] = mg_mask_pos(out[i], g[i]);
    } else if (act == MG_ACT_TANH) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                g[i + j] = g[i + j] * (1.0f - out[i + j] * out[i + j]);
        for (; i < n; i++)
            g[i] = g[i] * (1.0f - out[i] * out[i]);
    }
}

/* ---- graph building (arch.c, tests) ------------------------------------------------
 * Each builder returns the new value id, or -1 after recording the first error
 * in the model; an input of -1 is passed through, so a builder chain needs one
 * check at the end (mg_graph_finish). Names are the parameter-name prefixes
 * ("layer1.0.conv1"); NULL for operations without parameters. */

/* A model with only its input value (id 0) of shape (in_c, in_h, in_w). */
mg_status mg_graph_begin(mg_model **out, const char *arch, int in_c, int in_h, int in_w, int n_classes,
                         int xavier, mg_error *err);
int mg_g_linear(mg_model *m, const char *name, int x, int O, int bias);
int mg_g_conv(mg_model *m, const char *name, int x, int OC, int k, int stride, int pad, int groups, int bias);
int mg_g_bn(mg_model *m, const char *name, int x, int relu);
int mg_g_layernorm(mg_model *m, const char *name, int x);
int mg_g_act(mg_model *m, int x, mg_act act);
/* act(x) as mg_g_act, folded into the operation that produced x when that is
 * the last operation so far, a linear layer or a convolution without an
 * activation, and act is ReLU or Tanh: the layer then writes act of its
 * output, and its backward takes the activation's derivative from that
 * output, sparing a pass and a buffer each way. Returns the value holding
 * act(x) (x itself when folded): the pre-activation is no longer available,
 * so use only the returned id. Otherwise a separate activation operation. */
int mg_g_fuse_act(mg_model *m, int x, mg_act act);
int mg_g_maxpool(mg_model *m, int x, int k, int stride, int pad);
int mg_g_avgpool(mg_model *m, int x, int k, int stride, int pad);
int mg_g_gap(mg_model *m, int x);
int mg_g_dropout(mg_model *m, int x, float p);
int mg_g_add(mg_model *m, int a, int b, int relu);
int mg_g_concat(mg_model *m, int k, const int *xs);
int mg_g_flatten(mg_model *m, int x);
int mg_g_mha(mg_model *m, const char *name, int x, int heads);
/* Check the graph (logits must be the last operation's output, of size
 * n_classes), allocate the parameter, gradient, mask and buffer blocks. On
 * failure the model is destroyed. */
mg_status mg_graph_finish(mg_model **m, int logits, mg_error *err);

/* Per-sample shape of a value (tests). */
mg_shape3 mg_graph_shape(const mg_model *m, int v);

/* Build the graph of cfg->arch into a fresh model (arch.c). */
mg_status mg_arch_build(const mg_model_cfg *cfg, mg_model **out, mg_error *err);

/* ---- layout-general kernels ----------------------------------------------------------
 * The model keeps every value channel-major, (C, N, H, W): the samples of a
 * channel are contiguous, so one GEMM covers several samples and writes
 * straight into the output, and batch norm reads each channel as one block.
 * (For C == 1 this is the same memory as (N, H, W).) The kernels below take
 * the sample and channel strides of their tensors; the public NCHW kernels
 * are these with NCHW strides. */
typedef struct {
    size_t sn, sc;   /* floats between samples and between channels */
} mg_layout;

/* The conv kernels over any layout; scratch of mg_conv2d_scratch floats. */
void mg_conv2d_forward_lay(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w,
                           const float *b, const mg_conv2d_shape *s, float *scratch);
/* The forward followed by activation act (MG_NO_ACT, MG_ACT_RELU or
 * MG_ACT_TANH) in the pass that adds the bias. */
void mg_conv2d_forward_act(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w,
                           const float *b, const mg_conv2d_shape *s, float *scratch, int act);
/* out (N,O) = act(inp (N,I) @ w (O,I)^T + b (O)), act as above; b may be NULL. */
void mg_linear_forward_act(float *out, const float *inp, const float *w, const float *b, int N, int I, int O,
                           int act);
/* overwrite: dinp is written rather than added to. */
void mg_conv2d_backward_lay(float *dinp, mg_layout li, int overwrite, float *dw, float *db, const float *dout,
                            mg_layout lo, const float *inp, const float *w, const mg_conv2d_shape *s,
                            float *scratch);
/* Floats of the column buffers a forward keeps for its backward (the whole
 * batch of s->N): a strided convolution's gathered windows; 0 for the
 * others, which keep none. */
size_t mg_conv2d_cols_floats(const mg_conv2d_shape *s);
/* The two above with kept, NULL or mg_conv2d_cols_floats floats: the
 * forward writes its column buffers there, the backward reads them instead
 * of building them again from the same input. */
void mg_conv2d_forward_kept(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                            const mg_conv2d_shape *s, float *scratch, int act, float *kept);
void mg_conv2d_backward_kept(float *dinp, mg_layout li, int overwrite, float *dw, float *db, const float *dout,
                             mg_layout lo, const float *inp, const float *w, const mg_conv2d_shape *s, float *scratch,
                             const float *kept);
/* mg_conv2d_forward_kept that also sums each output plane into sums (3 per
 * output channel) for a training batch norm after it (mg_bn_plane_sums),
 * where its chunks are whole planes and the batch norm sums by plane:
 * returns 1 when it did, 0 when the batch norm must sum them itself. */
int mg_conv2d_forward_sums(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                           const mg_conv2d_shape *s, float *scratch, int act, float *kept, double *sums);

/* The input gradient of a 2x2, stride-2 max pool over (NC, H, W) with H and W
 * even, so that every input lies in exactly one window: written (overwrite)
 * or added. argmax as mg_maxpool_forward's. */
void mg_maxpool2_backward_cover(float *dinp, int overwrite, const float *dout, const int32_t *argmax, int NC,
                                int H, int W);

/* ---- fused kernels (layers_norm.c) --------------------------------------------------- */

/* mg_batchnorm_forward over (N,C,S) with layout l (rows of S contiguous),
 * followed, when res is given, by the addition of res (same shape and
 * layout) and, when relu is set, by a ReLU, in the same pass. With a ReLU,
 * keep (N * MG_BN_KEEP_FLOATS(C, S) floats, or NULL) receives its mask as
 * bits where the layout allows. A training forward takes its statistics
 * from sums (3 per channel, from mg_bn_plane_sums) when given, and gives
 * the same bits as it would summing them itself. */
void mg_bn_forward_fused(float *out, float *mean, float *rstd, const float *inp, mg_layout l, const float *gamma,
                         const float *beta, float *run_mean, float *run_var, int N, int C, int S, int train,
                         float momentum, float eps, const float *res, int relu, uint8_t *keep, const double *sums);
/* 1 where a batch norm over planes of S values sums its statistics plane by
 * plane, so that the producer of its input can (mg_bn_plane_sums). */
int mg_bn_sums_by_plane(int S);
/* Adds plane (S values of one channel of one sample) to that channel's
 * statistics sums (3 doubles), as the batch-norm forward sums them; first:
 * the channel's first plane (sample 0), which starts them. Planes are given
 * in the order of the samples. */
void mg_bn_plane_sums(double *sums, const float *plane, int S, int first);
/* mg_batchnorm_backward through a fused ReLU (out given: its output, and
 * keep, when not NULL, the bits the forward wrote with it) and, when
 * overwrite is set, writing dinp instead of adding to it. */
void mg_bn_backward_fused(float *dinp, int overwrite, float *dgamma, float *dbeta, const float *dout, const float *inp,
                          const float *out, const uint8_t *keep, mg_layout l, const float *mean, const float *rstd,
                          const float *gamma, int N, int C, int S, int train);
/* 1 where mg_bn_forward_fused writes the ReLU's bits for layout l over
 * (N,C,S). */
int mg_bn_keeps_bits(mg_layout l, int N, int S);
/* d (+)= dout where the bit of keep is set (as mg_bn_forward_fused wrote it),
 * +0 elsewhere: mg_vec_grad through a ReLU from its bits; n a multiple of 8. */
void mg_keep_grad(float *d, const float *dout, const uint8_t *keep, size_t n, int accumulate);
/* Floats per sample that hold the bits of a fused ReLU over C*S outputs. */
#define MG_BN_KEEP_FLOATS(C, S) (((size_t)(C) * (size_t)(S) + 31) / 32)

#endif

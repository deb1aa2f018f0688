/*
 * nn.h: the training engine. Layers with forward/backward over preallocated
 * buffers, models built from them (MLP, LeNet-5), optimisers and the training
 * loop. Parameters, gradients, optimiser state and masks each live in one
 * contiguous float block sliced by a tensor table, so one memcpy checkpoints,
 * one HDF5 dataset stores and one MPI message moves them.
 *
 * Data layout: inputs are (N, C, H, W) row-major float32; logits are (N, K).
 */
#ifndef MIAGRID_NN_H
#define MIAGRID_NN_H

#include <stddef.h>
#include <stdint.h>

#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- layer kernels (pure; shapes in comments; backward accumulates += ) ---- */

/* out (N,O) = inp (N,I) @ w(O,I)^T + b(O). b may be NULL. */
void mg_linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int I, int O);
/* dinp (N,I) += dout @ w; dw (O,I) += dout^T @ inp; db (O) += sum_n dout. Any of dinp, db may be NULL. */
void mg_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int N, int I, int O);

/* Conv2d geometry, stride and zero padding, no groups (issue 3 adds them). */
typedef struct {
    int N, C, H, W;   /* input */
    int OC, KH, KW;   /* filters */
    int stride, pad;
    int OH, OW;       /* derived by mg_conv2d_shape */
} mg_conv2d_shape;
/* Fill OH, OW; returns -1 if the geometry is impossible. */
int mg_conv2d_shape_init(mg_conv2d_shape *s);
/* Scratch floats the conv needs (im2col buffer). */
size_t mg_conv2d_scratch(const mg_conv2d_shape *s);
/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), w (OC,C,KH,KW)) + b(OC); b may be NULL. */
void mg_conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                       const mg_conv2d_shape *s, float *scratch);
/* dinp += ..., dw += ..., db += ...; dinp and db may be NULL. */
void mg_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const mg_conv2d_shape *s, float *scratch);

/* Max pool with a k x k window and stride k (floor). inp (N,C,H,W) -> out (N,C,H/k,W/k).
 * argmax (same size as out) caches the flat input index of each maximum. */
void mg_maxpool_forward(float *out, int32_t *argmax, const float *inp, int N, int C, int H, int W, int k);
void mg_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax, int n_out);

void mg_relu_forward(float *out, const float *inp, size_t n);
void mg_relu_backward(float *dinp, const float *dout, const float *out, size_t n);
void mg_tanh_forward(float *out, const float *inp, size_t n);
void mg_tanh_backward(float *dinp, const float *dout, const float *out, size_t n);

/* Mean softmax cross-entropy over the batch. logits (N,K), y (N). probs (N,K)
 * receives the softmax (cache for backward). Returns the mean loss. */
double mg_softmax_xent_forward(float *probs, const float *logits, const int32_t *y, int N, int K);
/* dlogits (N,K) += (probs - onehot(y)) / N. */
void mg_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *y, int N, int K);

/* ---- models ------------------------------------------------------------------- */

typedef enum { MG_ACT_RELU = 0, MG_ACT_TANH = 1 } mg_act;

/* One named slice of the parameter block. */
typedef struct {
    char name[64];     /* "conv1.weight", "fc3.bias", "layers.0.weight" */
    size_t offset;     /* into params, grads and masks */
    size_t count;
    int ndim;
    int shape[4];
    int prunable;      /* weights of linear and conv layers; biases are never pruned */
} mg_tensor_info;

typedef struct {
    const char *arch;      /* "mlp" or "lenet5" */
    const int *hidden;     /* mlp: widths of the hidden layers */
    int n_hidden;
    mg_act act;            /* mlp: activation between layers (lenet5 uses ReLU) */
    int in_c, in_h, in_w;  /* input shape; an mlp flattens it */
    int n_classes;
} mg_model_cfg;

typedef struct mg_model mg_model;

/* Build a model; parameters are zero until mg_model_init_params. Masks start
 * at 1. lenet5 on 1x28x28 with 10 classes has 61,706 parameters (conv1 pads 2,
 * as in the usual PyTorch definition). Unknown arch: MG_ERR_CONFIG. */
mg_status mg_model_create(const mg_model_cfg *cfg, mg_model **out, mg_error *err);
void mg_model_destroy(mg_model **m);

/* PyTorch's default initialisation: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void mg_model_init_params(mg_model *m, mg_rng *rng);

size_t mg_model_n_params(const mg_model *m);
float *mg_model_params(mg_model *m);
float *mg_model_grads(mg_model *m);
float *mg_model_masks(mg_model *m);   /* 1 keeps, 0 prunes; one per parameter */
size_t mg_model_n_tensors(const mg_model *m);
const mg_tensor_info *mg_model_tensor(const mg_model *m, size_t i);
int mg_model_n_classes(const mg_model *m);
int mg_model_in_dim(const mg_model *m);   /* C*H*W */

void mg_model_zero_grad(mg_model *m);
/* Forward a batch (any size; buffers grow as needed). *logits points into the
 * model's buffers, valid until the next call. `train` selects training mode
 * (no effect for the skeleton's layers; dropout and batch norm will use it). */
mg_status mg_model_forward(mg_model *m, const float *x, int batch, int train, const float **logits,
                           mg_error *err);
/* Loss of the last forward against y, and backward into the gradients
 * (accumulating). *loss receives the mean loss, *n_correct the count of
 * argmax(logits) == y (either may be NULL). */
mg_status mg_model_backward(mg_model *m, const int32_t *y, int batch, double *loss, int *n_correct,
                            mg_error *err);
/* Also compute the gradient of the mean loss w.r.t. the input in every
 * mg_model_backward (off by default: it costs an extra pass through the first
 * layer). Attacks that probe input sensitivity and the gradient tests use it. */
void mg_model_set_input_grad(mg_model *m, int enable);
/* d(mean loss)/dx of the last backward, (batch, in_dim), overwritten (not
 * accumulated) by each backward and valid until the next forward; NULL unless
 * enabled by mg_model_set_input_grad. */
const float *mg_model_input_grad(const mg_model *m);
/* Eval-mode logits for n samples, in batches; logits is (n, K). */
mg_status mg_model_predict(mg_model *m, const float *x, size_t n, float *logits, mg_error *err);

/* Fraction of argmax(logits) == y. */
double mg_accuracy(const float *logits, const int32_t *y, size_t n, int n_classes);

/* ---- optimisers ------------------------------------------------------------------ */

typedef enum { MG_OPT_SGD = 0, MG_OPT_ADAM = 1 } mg_opt_kind;

typedef struct {
    mg_opt_kind kind;
    double lr;
    double momentum;      /* SGD */
    double weight_decay;  /* L2 added to the gradient, PyTorch style, for SGD and Adam */
    double beta1, beta2, eps; /* Adam */
} mg_optim_cfg;

typedef struct {
    mg_optim_cfg cfg;
    size_t n;
    float *m1;   /* SGD momentum buffer or Adam first moment */
    float *m2;   /* Adam second moment */
    long step;
} mg_optim;

mg_status mg_optim_init(mg_optim *o, const mg_optim_cfg *cfg, size_t n, mg_error *err);
void mg_optim_free(mg_optim *o);
/* One step. Where masks[i] == 0 the gradient, the optimiser state and the
 * parameter are held at exactly zero (momentum and weight decay included).
 * masks may be NULL. */
void mg_optim_step(mg_optim *o, float *params, float *grads, const float *masks);

/* ---- training loop ---------------------------------------------------------------- */

typedef struct {
    int epochs;
    int batch;
    mg_optim_cfg optim;
} mg_train_cfg;

/* Per-epoch record. */
typedef struct {
    int n_epochs;
    double *loss;       /* mean training loss of each epoch */
    double *train_acc;  /* training accuracy measured during the epoch */
    double *seconds;    /* wall time of each epoch */
} mg_history;

void mg_history_free(mg_history *h);

/* Train for cfg->epochs over (x, y) of n samples, shuffling each epoch with
 * rng (the same rng gives the same bits). Masks are honoured throughout. A
 * non-finite loss stops training with MG_ERR_NUMERIC naming the epoch. hist may
 * be NULL; otherwise it is filled (caller frees with mg_history_free), and
 * left empty on failure. Each call starts a fresh optimiser (zero momentum). */
mg_status mg_train(mg_model *m, const float *x, const int32_t *y, size_t n, const mg_train_cfg *cfg,
                   mg_rng *rng, mg_history *hist, mg_error *err);

#ifdef __cplusplus
}
#endif
#endif

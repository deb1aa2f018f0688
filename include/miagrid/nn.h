/*
 * nn.h: the training engine. Layers with forward/backward over preallocated
 * buffers, models built from them (MLPs, LeNet-5, the CIFAR CNNs, ResNets,
 * VGG, MobileNetV2, DenseNet, Wide-ResNet), optimisers and the training
 * loop. Parameters, gradients, optimiser state and masks each live in one
 * contiguous float block sliced by a tensor table, so one memcpy checkpoints,
 * one HDF5 dataset stores and one MPI message moves them.
 *
 * Data layout: inputs are (N, C, H, W) row-major float32; logits are (N, K).
 */
#ifndef MIAGRID_NN_H
#define MIAGRID_NN_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- layer kernels (pure; shapes in comments; backward accumulates += ) ----
 *
 * Every backward adds into the gradients it is given (dinp, dw, ...), so the
 * caller zeroes them when it wants a fresh gradient. Shapes are row-major;
 * "S" is a spatial size H*W (1 for the 1-d forms). */

/* out (N,O) = inp (N,I) @ w(O,I)^T + b(O). b may be NULL. */
void mg_linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int I, int O);
/* dinp (N,I) += dout @ w; dw (O,I) += dout^T @ inp; db (O) += sum_n dout. Any of dinp, db may be NULL. */
void mg_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int N, int I, int O);

/* Conv2d geometry: square stride and zero padding, and channel groups as
 * torch.nn.Conv2d (C and OC divisible by groups; groups == C is depthwise). */
typedef struct {
    int N, C, H, W;   /* input */
    int OC, KH, KW;   /* filters: w is (OC, C/groups, KH, KW) */
    int stride, pad;
    int OH, OW;       /* derived by mg_conv2d_shape_init */
    int groups;       /* 0 or 1: a dense convolution */
} mg_conv2d_shape;
/* Fill OH, OW; returns -1 if the geometry is impossible. */
int mg_conv2d_shape_init(mg_conv2d_shape *s);
/* Scratch floats the conv needs (column buffer, independent of the batch). */
size_t mg_conv2d_scratch(const mg_conv2d_shape *s);
/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), w (OC,C/groups,KH,KW)) + b(OC); b may be NULL. */
void mg_conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                       const mg_conv2d_shape *s, float *scratch);
/* dinp += ..., dw += ..., db += ...; dinp and db may be NULL. */
void mg_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const mg_conv2d_shape *s, float *scratch);

/* Max pool with a k x k window and stride k (floor). inp (N,C,H,W) -> out (N,C,H/k,W/k).
 * argmax (same size as out) caches the flat input index of each maximum. */
void mg_maxpool_forward(float *out, int32_t *argmax, const float *inp, int N, int C, int H, int W, int k);
void mg_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax, int n_out);

/* General 2-d pooling geometry, torch.nn.MaxPool2d/AvgPool2d with square
 * kernel, stride and zero padding, floor mode (pad <= k/2). */
typedef struct {
    int N, C, H, W;
    int k, stride, pad;
    int OH, OW;       /* derived by mg_pool2d_shape_init */
} mg_pool2d_shape;
int mg_pool2d_shape_init(mg_pool2d_shape *s);
/* out (N,C,OH,OW); padding never wins; argmax (N,C,OH,OW) receives flat input
 * indices into inp (N*C*H*W must fit in int32). */
void mg_maxpool2d_forward(float *out, int32_t *argmax, const float *inp, const mg_pool2d_shape *s);
void mg_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, const mg_pool2d_shape *s);
/* Average over the window, zero padding counted (count_include_pad=True, the torch default). */
void mg_avgpool2d_forward(float *out, const float *inp, const mg_pool2d_shape *s);
void mg_avgpool2d_backward(float *dinp, const float *dout, const mg_pool2d_shape *s);
/* out (N,C) = mean over S of inp (N,C,S). */
void mg_global_avgpool_forward(float *out, const float *inp, int N, int C, int S);
void mg_global_avgpool_backward(float *dinp, const float *dout, int N, int C, int S);

/* Batch norm over (N,C,S): BatchNorm1d (S = 1 or a length) and BatchNorm2d (S = H*W).
 * train: normalise with the batch statistics (biased variance), store them in
 * mean (C) and rstd (C) = 1/sqrt(var + eps), and move run_mean/run_var toward
 * the batch mean and the unbiased variance by `momentum` (torch: 0.1);
 * run_mean/run_var may be NULL (no tracking). eval: normalise with
 * run_mean/run_var and store those in mean/rstd. gamma/beta (C). Needs N*S > 1 in train. */
void mg_batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, float *run_mean, float *run_var, int N, int C, int S, int train,
                          float momentum, float eps);
/* train selects the batch-statistics gradient (through mean and variance) or
 * the eval one (statistics constant). dinp may be NULL. */
void mg_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *gamma, int N, int C, int S,
                           int train);

/* Layer norm over the last dimension: inp (R,E), gamma/beta (E), mean/rstd (R) caches. */
void mg_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int R, int E, float eps);
void mg_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *gamma, int R, int E);

void mg_relu_forward(float *out, const float *inp, size_t n);
void mg_relu_backward(float *dinp, const float *dout, const float *out, size_t n);
/* min(max(x, 0), 6); the derivative, taken from the output, is 1 on (0, 6). */
void mg_relu6_forward(float *out, const float *inp, size_t n);
void mg_relu6_backward(float *dinp, const float *dout, const float *out, size_t n);
void mg_tanh_forward(float *out, const float *inp, size_t n);
void mg_tanh_backward(float *dinp, const float *dout, const float *out, size_t n);
/* x * Phi(x) with the exact erf form (torch's default approximate='none');
 * the backward needs the input. */
void mg_gelu_forward(float *out, const float *inp, size_t n);
void mg_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Inverted dropout. train: each element is zeroed with probability p (drawn
 * from rng in index order) and the survivors scaled by 1/(1-p); mask (n)
 * caches the factor (0 or 1/(1-p)). eval or p == 0: the identity, mask unused
 * and rng untouched. p must be in [0, 1). */
void mg_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p, int train, mg_rng *rng);
/* dinp += dout * mask; mask NULL means the identity (eval). */
void mg_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* Residual add out = a + b; the backward adds dout to both. */
void mg_add_forward(float *out, const float *a, const float *b, size_t n);
void mg_add_backward(float *da, float *db, const float *dout, size_t n);
/* Channel concatenation of k inputs: inp[i] (N, C[i], S) -> out (N, sum C, S)
 * in the order given; the backward splits dout back (dinp[i] may be NULL). */
void mg_concat_forward(float *out, const float *const *inp, const int *C, int k, int N, int S);
void mg_concat_backward(float *const *dinp, const float *dout, const int *C, int k, int N, int S);

/* Self-attention as torch.nn.MultiheadAttention(E, H, batch_first=True)
 * called as mha(x, x, x) without masks or dropout: x (N,L,E); in_w (3E,E) and
 * in_b (3E) project to q|k|v, each head h uses columns [h*E/H, (h+1)*E/H),
 * softmax(q k^T / sqrt(E/H)) v, and out = ctx @ out_w(E,E)^T + out_b(E).
 * Caches for backward: qkv (N,L,3E), att (N,H,L,L) probabilities, ctx (N,L,E).
 * The backward needs scratch of mg_mha_scratch floats. */
void mg_mha_forward(float *out, float *qkv, float *att, float *ctx, const float *x, const float *in_w,
                    const float *in_b, const float *out_w, const float *out_b, int N, int L, int E, int H);
size_t mg_mha_scratch(int N, int L, int E, int H);
void mg_mha_backward(float *dx, float *din_w, float *din_b, float *dout_w, float *dout_b, const float *dout,
                     const float *x, const float *qkv, const float *att, const float *ctx, const float *in_w,
                     const float *out_w, int N, int L, int E, int H, float *scratch);

/* Mean softmax cross-entropy over the batch. logits (N,K), y (N). probs (N,K)
 * receives the softmax (cache for backward). Returns the mean loss. */
double mg_softmax_xent_forward(float *probs, const float *logits, const int32_t *y, int N, int K);
/* dlogits (N,K) += (probs - onehot(y)) / N. */
void mg_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *y, int N, int K);
/* With label smoothing eps as torch's cross_entropy(label_smoothing=eps): the
 * target is (1-eps) onehot(y) + eps/K; eps 0 gives the plain forms above. */
double mg_softmax_xent_smooth_forward(float *probs, const float *logits, const int32_t *y, int N, int K,
                                      float eps);
void mg_softmax_xent_smooth_backward(float *dlogits, const float *probs, const int32_t *y, int N, int K,
                                     float eps);
/* With soft targets (N,K) (probability rows): mean of -sum_k t_k log p_k;
 * dlogits += (probs * sum_k t_k - targets) / N, i.e. probs - targets for rows summing to 1. */
double mg_softmax_xent_soft_forward(float *probs, const float *logits, const float *targets, int N, int K);
void mg_softmax_xent_soft_backward(float *dlogits, const float *probs, const float *targets, int N, int K);

/* ---- models ------------------------------------------------------------------- */

typedef enum { MG_ACT_RELU = 0, MG_ACT_TANH = 1, MG_ACT_RELU6 = 2, MG_ACT_GELU = 3 } mg_act;

/* One named slice of the parameter block. */
typedef struct {
    char name[64];     /* PyTorch state_dict keys: "conv1.weight", "layer1.0.bn1.running_mean" */
    size_t offset;     /* into params, grads and masks */
    size_t count;
    int ndim;
    int shape[4];
    int prunable;      /* weights of linear, conv and attention projections; biases and norms never */
    int buffer;        /* 1: a non-trained buffer (batch-norm running_mean and
                        * running_var; num_batches_tracked is not kept): offset and
                        * count index the block of mg_model_buffers, not
                        * params/grads/masks, and prunable is 0. Buffers follow all
                        * the parameters in the tensor table. */
} mg_tensor_info;

typedef struct {
    const char *arch;      /* one of mg_model_arch_list() */
    const int *hidden;     /* mlp: widths of the hidden layers */
    int n_hidden;
    mg_act act;            /* mlp: activation between layers (the others fix their own) */
    int in_c, in_h, in_w;  /* input shape; an mlp flattens it */
    int n_classes;
    const char *init;      /* NULL or "default": PyTorch's layer defaults; "xavier-normal":
                            * weights N(0, 2/(fan_in+fan_out)), biases 0. Batch-norm and
                            * layer-norm weights are 1 and biases 0 either way. */
} mg_model_cfg;

typedef struct mg_model mg_model;

/* Build a model; parameters are zero until mg_model_init_params, batch-norm
 * running means 0 and variances 1. Masks start at 1. The architectures follow
 * their usual PyTorch definitions (src/nn/arch.c states each reference); on
 * 3x32x32 with 10 classes: cnn4 1,832,266 parameters, vgg16_bn 14,728,266,
 * resnet18 11,173,962, resnet20 272,474, mobilenetv2 2,296,922, densenet121
 * 6,956,298, wrn28_2 1,467,610; lenet5 on 1x28x28 has 61,706. Unknown arch,
 * init or activation, or an input too small for the architecture: MG_ERR_CONFIG. */
mg_status mg_model_create(const mg_model_cfg *cfg, mg_model **out, mg_error *err);
void mg_model_destroy(mg_model **m);

/* 1 if mg_model_create knows the architecture `name`, else 0. */
int mg_model_arch_known(const char *name);
/* The known architectures, comma-separated, for error messages
 * ("mlp, lenet5, cnn4, ..."). A static string. */
const char *mg_model_arch_list(void);

/* Hidden widths and activation of the MLPs used for the tabular data sets
 * (hidden must hold at least 8 entries): "purchase" 600-1024-512-256-128-100,
 * "texas" 6169-1024-512-256-128-100, "location" 446-1024-512-256-128-30, all
 * Tanh; the input width and the class count come from the data. Unknown preset:
 * MG_ERR_CONFIG naming the known ones. */
mg_status mg_mlp_preset(const char *preset, int *hidden, int *n_hidden, mg_act *act, mg_error *err);

/* Initialise the parameters from rng, tensor by tensor in table order (the
 * same rng gives the same bits), and reset the buffers. Default (PyTorch's
 * layer defaults): linear and conv weights and biases U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) with fan_in = in_channels/groups * kh * kw; batch and layer
 * norm weight 1, bias 0; attention in-projection xavier-uniform with zero
 * bias, out-projection as a linear weight with zero bias. "xavier-normal":
 * every weight N(0, 2/(fan_in+fan_out)), every bias 0. */
void mg_model_init_params(mg_model *m, mg_rng *rng);

size_t mg_model_n_params(const mg_model *m);
float *mg_model_params(mg_model *m);
float *mg_model_grads(mg_model *m);
float *mg_model_masks(mg_model *m);   /* 1 keeps, 0 prunes; one per parameter */
/* Non-trained state (batch-norm running statistics), in one block sliced by
 * the tensor entries whose `buffer` is 1. 0 and NULL for models without any.
 * Checkpoints must save it alongside the parameters. */
size_t mg_model_n_buffers(const mg_model *m);
float *mg_model_buffers(mg_model *m);
size_t mg_model_n_tensors(const mg_model *m);
const mg_tensor_info *mg_model_tensor(const mg_model *m, size_t i);
int mg_model_n_classes(const mg_model *m);
int mg_model_in_dim(const mg_model *m);   /* C*H*W */

void mg_model_zero_grad(mg_model *m);
/* Forward a batch (any size; buffers grow as needed). *logits points into the
 * model's buffers, valid until the next call. `train` selects training mode:
 * batch norm normalises with the batch statistics and moves its running
 * statistics (momentum 0.1, unbiased variance, as torch), and dropout draws
 * from the generator of mg_model_set_rng; in eval mode batch norm uses the
 * running statistics and dropout is the identity. A training forward through
 * batch norm with one value per channel fails (MG_ERR_ARG), as in torch. */
mg_status mg_model_forward(mg_model *m, const float *x, int batch, int train, const float **logits,
                           mg_error *err);
/* Loss of the last forward against y, and backward into the gradients
 * (accumulating), in the mode of that forward. *loss receives the mean loss
 * (label-smoothed if set), *n_correct the count of argmax(logits) == y
 * (either may be NULL). */
mg_status mg_model_backward(mg_model *m, const int32_t *y, int batch, double *loss, int *n_correct,
                            mg_error *err);
/* As mg_model_backward with soft targets: targets (batch, K) are probability
 * rows (each non-negative, summing to 1), the loss is the batch mean of
 * -sum_k t_k log softmax(z)_k (label smoothing does not apply). */
mg_status mg_model_backward_soft(mg_model *m, const float *targets, int batch, double *loss, mg_error *err);
/* Label smoothing of mg_model_backward's cross-entropy, torch semantics: the
 * target is (1-eps) onehot(y) + eps/K. 0 (the default) disables it. */
void mg_model_set_label_smoothing(mg_model *m, float eps);
/* The generator dropout draws from in training-mode forwards (not owned; it
 * must outlive its use; NULL detaches it). A training-mode forward of a model
 * with dropout and no generator fails with MG_ERR_ARG. */
void mg_model_set_rng(mg_model *m, mg_rng *rng);
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

/* The first class of largest logit among K (a NaN never wins). */
int mg_argmax(const float *z, int K);
/* How many of n rows have argmax(logits) == y. */
size_t mg_count_correct(const float *logits, const int32_t *y, size_t n, int n_classes);
/* Fraction of argmax(logits) == y. */
double mg_accuracy(const float *logits, const int32_t *y, size_t n, int n_classes);

/* ---- optimisers ------------------------------------------------------------------ */

/* torch.optim.SGD, Adam and AdamW. */
typedef enum { MG_OPT_SGD = 0, MG_OPT_ADAM = 1, MG_OPT_ADAMW = 2 } mg_opt_kind;

typedef struct {
    mg_opt_kind kind;
    double lr;            /* read at every step: the training loop sets it from the schedule each epoch */
    double momentum;      /* SGD */
    double weight_decay;  /* SGD and Adam: L2 added to the gradient, PyTorch style; AdamW: decoupled,
                           * p *= 1 - lr*weight_decay before the update */
    double beta1, beta2, eps; /* Adam and AdamW */
    int nesterov;         /* SGD: Nesterov momentum (needs momentum > 0); ignored by Adam and AdamW */
} mg_optim_cfg;

typedef struct {
    mg_optim_cfg cfg;
    size_t n;
    float *m1;   /* SGD momentum buffer or Adam/AdamW first moment */
    float *m2;   /* Adam/AdamW second moment; NULL for SGD */
    long step;   /* steps taken; Adam's bias corrections use step + 1 */
} mg_optim;

/* "sgd", "adam", "adamw". */
const char *mg_opt_kind_str(mg_opt_kind k);
/* The kind named by mg_opt_kind_str; 0 on success, -1 for an unknown name. */
int mg_opt_kind_parse(const char *name, mg_opt_kind *out);

mg_status mg_optim_init(mg_optim *o, const mg_optim_cfg *cfg, size_t n, mg_error *err);
void mg_optim_free(mg_optim *o);
/* One step. Where masks[i] == 0 the gradient, the optimiser state and the
 * parameter are held at exactly zero (momentum and weight decay included).
 * masks may be NULL. */
void mg_optim_step(mg_optim *o, float *params, float *grads, const float *masks);

/* ---- learning-rate schedules (stepped once per epoch) --------------------------------- */

typedef enum { MG_LR_CONSTANT = 0, MG_LR_MULTISTEP = 1, MG_LR_COSINE = 2 } mg_lr_kind;

#define MG_LR_MAX_MILESTONES 16

/* All zero is the constant schedule. */
typedef struct {
    mg_lr_kind kind;
    int n_milestones;                        /* multistep */
    int milestones[MG_LR_MAX_MILESTONES];    /* multistep: strictly increasing epochs, 1 <= m < epochs */
    double gamma;                            /* multistep: factor applied at each milestone (> 0) */
    double eta_min;                          /* cosine: the rate reached at epoch T_max = epochs (>= 0) */
} mg_lr_schedule;

/* "constant", "multistep", "cosine". */
const char *mg_lr_kind_str(mg_lr_kind k);
/* MG_ERR_ARG naming the problem if the schedule is unusable for `epochs` epochs. */
mg_status mg_lr_schedule_check(const mg_lr_schedule *s, int epochs, mg_error *err);
/* The learning rate of (0-based) epoch `epoch` of `epochs`, torch's closed
 * forms: constant base_lr; multistep base_lr * gamma^(milestones <= epoch)
 * (MultiStepLR); cosine eta_min + (base_lr - eta_min)(1 + cos(pi epoch/epochs))/2
 * (CosineAnnealingLR with T_max = epochs). Epoch 0 always gets base_lr. */
double mg_lr_at(const mg_lr_schedule *s, double base_lr, int epoch, int epochs);

/* ---- image augmentation ------------------------------------------------------------------ */

/* Flags of mg_train_cfg.augment. */
enum { MG_AUGMENT_CROP = 1u, MG_AUGMENT_FLIP = 2u };
/* Zero padding of the random crop, as torchvision's RandomCrop(32, padding=4). */
#define MG_AUGMENT_PAD 4

/* One sample's transform: shift by (dy, dx), then mirror left-right if flip. */
typedef struct {
    int dy, dx;   /* in [-pad, pad] */
    int flip;
} mg_aug_draw;

/* Draw a transform as torchvision's RandomCrop(padding=pad) then
 * RandomHorizontalFlip(): with MG_AUGMENT_CROP the window's top row, then its
 * left column, uniform over the 2*pad+1 positions (dy, dx = position - pad);
 * with MG_AUGMENT_FLIP a flip with probability 1/2. Draws nothing for the
 * flags not set. */
mg_aug_draw mg_augment_draw(mg_rng *rng, unsigned flags, int pad);
/* out (C,H,W) = inp (C,H,W) cropped from its zero-padded version and mirrored:
 * out[c][r][q] = inp[c][r+dy][s+dx], s = W-1-q if flip else q, 0 outside.
 * out and inp must not overlap. */
void mg_augment_apply(float *out, const float *inp, int C, int H, int W, mg_aug_draw d);

/* ---- training loop ---------------------------------------------------------------- */

typedef struct {
    int epochs;
    int batch;
    mg_optim_cfg optim;
    mg_lr_schedule schedule;  /* all zero: constant */
    int patience;             /* early stopping: stop after this many epochs without a better dev
                               * accuracy and restore the best parameters; 0: off (needs a dev set) */
    unsigned augment;         /* MG_AUGMENT_* flags; 0: none (needs the sample's image shape) */
    double bn_l1;             /* network slimming's sparsity training (Liu et al. 2017): lambda of the L1
                               * penalty on batch-norm scales, added to the gradients by
                               * mg_prune_slim_penalty after each step (a regime's too) and before the
                               * optimiser's; 0: off. Finite and >= 0. */
} mg_train_cfg;

/* Per-epoch record. */
typedef struct {
    int n_epochs;
    double *loss;       /* mean training loss of each epoch */
    double *train_acc;  /* training accuracy measured during the epoch */
    double *seconds;    /* wall time of each epoch */
    double *lr;         /* learning rate of each epoch */
    double *dev_acc;    /* dev-set accuracy (eval mode) after each epoch; NaN without a dev set */
    int best_epoch;     /* 0-based epoch of the best dev accuracy (the first of ties), whose
                         * parameters early stopping restores; -1 without a dev set */
} mg_history;

void mg_history_free(mg_history *h);

/* Train for cfg->epochs over (x, y) of n samples, shuffling each epoch with
 * rng (the same rng gives the same bits; it advances past the permutations
 * drawn). Masks are honoured throughout. A non-finite loss stops training
 * with MG_ERR_NUMERIC naming the epoch. hist may be NULL; otherwise it is
 * filled (caller frees with mg_history_free), and left empty on failure. Each
 * call starts a fresh optimiser (zero momentum). There is no dev set and no
 * image shape here: cfg->patience and cfg->augment must be 0 (MG_ERR_ARG);
 * mg_train_run below has them. */
mg_status mg_train(mg_model *m, const float *x, const int32_t *y, size_t n, const mg_train_cfg *cfg,
                   mg_rng *rng, mg_history *hist, mg_error *err);

/* ---- resumable training: state, epoch hook, checkpoints ------------------------------------
 *
 * mg_train is a shortcut for the sequence below; a caller that needs a dev
 * set, augmentation, a hook at the end of every epoch or checkpoints uses it
 * directly:
 *
 *     mg_train_state s;
 *     mg_train_state_init(&s, m, &cfg, &rng, err);     // fresh optimiser, rng streams
 *     mg_train_checkpoint_load(path, m, &s, err);      // optional: resume where it stopped
 *     mg_train_run(m, &data, &s, hook, user, err);     // MG_ERR_INTERRUPTED if the hook stopped it
 *     ... s.hist is the record (mg_train_state_take_history keeps it) ...
 *     mg_train_state_free(&s);
 *
 * Training k epochs, saving, loading into a fresh model and state and running
 * the rest gives the same bits as training straight through. */

/* What to train on. */
typedef struct {
    const float *x;          /* (n, in_dim) */
    const int32_t *y;        /* (n) labels in [0, n_classes) */
    size_t n;
    int c, h, w;             /* a sample's image shape, c*h*w == in_dim; needed only by augmentation
                              * (0: unknown) */
    const float *dev_x;      /* optional dev set (dev_n 0: none): evaluated after every epoch */
    const int32_t *dev_y;
    size_t dev_n;
} mg_train_data;

/* Everything training carries from one epoch to the next besides the model's
 * parameters, masks and buffers. Fields are readable; change them only
 * through these functions (except reseeding `augment` or `dropout` right
 * after init). */
typedef struct {
    mg_train_cfg cfg;        /* the configuration, copied */
    int epochs_done;         /* completed epochs */
    int finished;            /* 1 once the last epoch ran or early stopping ended training (the
                              * best parameters are then already restored) */
    mg_optim opt;
    mg_rng shuffle;          /* draws each epoch's permutation */
    mg_rng augment;          /* draws the augmentation of each sample */
    mg_rng dropout;          /* the model's dropout generator during mg_train_run */
    mg_history hist;         /* arrays hold cfg.epochs entries; n_epochs == epochs_done */
    size_t n_params, n_buffers;
    float *best_params;      /* early stopping: parameters and buffers at hist.best_epoch; */
    float *best_buffers;     /* NULL when patience is 0 (best_buffers also without buffers) */
    const struct mg_train_plugin *plugin; /* a training regime (a defense), NULL: plain training;
                                           * set with mg_train_state_set_plugin */
} mg_train_state;

/* A training regime's hooks into mg_train_run: what the defenses change in
 * training. Every hook is optional (NULL: plain training's behaviour). The
 * regime owns `user` and whatever state it keeps there; save and load put
 * that state in checkpoints, so a resumed run gives the same bits. */
typedef struct mg_train_plugin {
    const char *name;        /* recorded in checkpoints; a checkpoint resumes only under the same name */
    void *user;
    /* Before epoch `epoch` (0-based): choose the rows of the training data
     * this epoch uses. rows has room for the n samples and holds 0..n-1 on
     * entry; write the chosen rows to its front and set *n_rows (1..n). The
     * epoch's shuffle then permutes them. */
    mg_status (*epoch_rows)(void *user, int epoch, uint32_t *rows, size_t *n_rows, mg_error *err);
    /* One minibatch in place of the plain forward and backward: xb (b,
     * in_dim) and yb (b) are the batch (augmented), rows (b) their rows in
     * the training data. Leave in the model's gradients (zeroed before the
     * call) what the optimiser should apply, and set *loss (the batch's mean
     * training loss) and *n_correct (argmax(logits) == y among the b). */
    mg_status (*step)(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows, int b,
                      int epoch, double *loss, int *n_correct, mg_error *err);
    /* Checkpoints: write the regime's state into group loc / read it back.
     * load must check everything before changing anything (MG_ERR_STATE). */
    mg_status (*save)(void *user, hid_t loc, mg_error *err);
    mg_status (*load)(void *user, hid_t loc, mg_error *err);
} mg_train_plugin;

/* Train s under plugin p (NULL: plain training), which must outlive the
 * state's use. Set it before loading a checkpoint or running. */
void mg_train_state_set_plugin(mg_train_state *s, const mg_train_plugin *p);

/* Check cfg and set up a state that trains model m from scratch: epoch 0, a fresh
 * optimiser (zero state), shuffle = *rng, and the augment and dropout
 * streams derived from *rng (which is not advanced), so turning augmentation
 * or dropout on leaves the shuffling order unchanged. *s is zeroed first;
 * free it with mg_train_state_free even on failure. */
mg_status mg_train_state_init(mg_train_state *s, const mg_model *m, const mg_train_cfg *cfg, const mg_rng *rng,
                              mg_error *err);
void mg_train_state_free(mg_train_state *s);
/* Move the record out of s into *out (the caller frees it with mg_history_free). */
void mg_train_state_take_history(mg_train_state *s, mg_history *out);

/* Called after every completed epoch with the state as a checkpoint would
 * save it (s->finished set, and the best parameters restored, after the last
 * one). Set *stop to 1 to stop training after this epoch; a status other than
 * MG_OK aborts training with it (the hook fills err). */
typedef mg_status (*mg_train_hook)(void *user, mg_model *m, const mg_train_state *s, int *stop,
                                   mg_error *err);

/* Run the epochs from s->epochs_done to the end (or until early stopping)
 * over data, calling hook (may be NULL) after each. Each epoch: the learning
 * rate from the schedule; a permutation from s->shuffle; minibatches of
 * cfg.batch, each sample augmented from s->augment when cfg.augment is set;
 * the model's dropout draws from s->dropout (attached with mg_model_set_rng
 * for the run and detached, NULL, after it); then, with a dev set, its
 * accuracy in eval mode, and with patience > 0 a copy of the parameters
 * whenever it improves and a stop after `patience` epochs without
 * improvement, restoring the best parameters and buffers. Returns MG_OK when
 * training is finished (at once if s->finished), MG_ERR_INTERRUPTED when the
 * hook asked to stop (the state is then consistent and can be saved and
 * resumed), MG_ERR_NUMERIC naming the epoch and step when the loss is not
 * finite, MG_ERR_ARG for data that do not fit the model or configuration
 * (labels out of range, patience without a dev set, augmentation without the
 * image shape). After a failure other than MG_ERR_INTERRUPTED the model and
 * state are mid-epoch: do not save them. */
mg_status mg_train_run(mg_model *m, const mg_train_data *data, mg_train_state *s, mg_train_hook hook,
                       void *user, mg_error *err);

/* Write the full training state into loc (an HDF5 file or group, empty of
 * these names): the model's parameters, masks and buffers; optimiser state;
 * the three rng streams; epochs done; best-so-far parameters, buffers and
 * epoch; the history so far; and fingerprints of the configuration and of
 * the model's tensor layout. */
mg_status mg_train_state_save(hid_t loc, mg_model *m, const mg_train_state *s, mg_error *err);
/* Read a state written by mg_train_state_save into m and s, which must have
 * been set up by mg_train_state_init with the same configuration for a model
 * of the same architecture (otherwise MG_ERR_STATE naming the difference;
 * MG_ERR_HDF5 for a damaged or foreign file). Everything is read and checked
 * before anything is changed, so on failure m and s are as they were. */
mg_status mg_train_state_load(hid_t loc, mg_model *m, mg_train_state *s, mg_error *err);
/* The same as whole files: save writes `path` atomically (the temporary
 * file "<path>.tmp.<pid>", flushed and renamed), so a crash leaves the
 * previous checkpoint or the new one. */
mg_status mg_train_checkpoint_save(const char *path, mg_model *m, const mg_train_state *s, mg_error *err);
mg_status mg_train_checkpoint_load(const char *path, mg_model *m, mg_train_state *s, mg_error *err);

/* ---- per-example gradients and DP-SGD (perex.c) ---------------------------------------------
 *
 * DP-SGD (Abadi et al. 2016, as Opacus) needs each sample's gradient norm to
 * clip it. These functions get the norms from each parameterised layer's
 * input activations and output gradients, without forming one gradient per
 * sample where the layer allows it, and weight the samples through a second
 * backward from scaled logit gradients ("ghost clipping").
 *
 * Norms are taken over the unmasked entries only (masks != 0): the optimiser
 * zeroes the masked entries' gradients, so they never reach an update and
 * must not use up the clipping budget. Masks are the 0/1 values of
 * mg_model_masks.
 *
 * Batch norm mixes the samples of a batch, so a sample's gradient is not
 * defined on its own: every function below refuses a model with batch norm
 * (MG_ERR_ARG), as Opacus does. Layer norm, dropout, pooling, residual adds,
 * concatenation and self-attention are per-sample and supported. */

/* Backward of the last forward given dlogits (batch, K), the gradient of some
 * loss with respect to the logits, in the mode of that forward: parameter
 * gradients accumulate (+=) as in mg_model_backward, whose backward is this
 * one with dlogits = (softmax - onehot(y)) / batch (without label
 * smoothing). The input gradient of
 * mg_model_set_input_grad is overwritten. batch must be the last forward's
 * (MG_ERR_ARG otherwise). */
mg_status mg_model_backward_from_dlogits(mg_model *m, const float *dlogits, int batch, mg_error *err);

/* Keep the output gradient of every parameterised layer (linear,
 * convolution, layer norm, self-attention) after each backward, which
 * mg_model_per_example_grad_norms reads: each gets a gradient buffer of its
 * own instead of one shared with other values (about one more activation of
 * those layers per sample). Stays on for the model's life; calling it again
 * does nothing. A model with batch norm: MG_ERR_ARG (see above). */
mg_status mg_model_enable_per_example(mg_model *m, mg_error *err);

/* norms (batch of the last backward) receives, for each sample i, the L2
 * norm over all unmasked parameters of sample i's contribution to the
 * gradient that the last backward accumulated: with mg_model_backward's mean
 * loss that is ||grad of loss_i|| / batch, with
 * mg_model_backward_from_dlogits the gradient of row i's part of the loss.
 * The last backward must have run after mg_model_enable_per_example and
 * after the last forward (MG_ERR_ARG when per-example gradients are not
 * enabled or no backward ran; the contract that it followed the last forward
 * is the caller's). Linear layers seeing one row per sample cost O(I + O) a
 * sample, or O(I O) with a pruned weight; layers over several positions (a
 * convolution's output pixels, a linear layer over a sequence) use, per
 * sample, whichever of the Gram form sum_{p,q} (a_p.a_q)(d_p.d_q) and the
 * sample's gradient d^T a is cheaper, and always the latter with a pruned
 * weight (the Gram form cannot apply a mask). Layer norm and self-attention
 * form each sample's gradient of their (small) parameters. */
mg_status mg_model_per_example_grad_norms(mg_model *m, double *norms, mg_error *err);

/* The DP-SGD gradient of the last forward (run it in training mode, before
 * this call) against labels y: with g_i the gradient of sample i's own
 * cross-entropy (not divided by the batch; label smoothing applies if set)
 * and c_i = min(1, clip / ||g_i||) (1 when g_i is 0), the parameter
 * gradients receive sum_i c_i g_i, accumulated (+=) and NOT divided by the
 * batch: the caller then adds N(0, sigma^2 clip^2) noise and divides by the
 * batch size (mg_dp_add_noise), as Abadi et al. and Opacus. Two backwards
 * run: the first finds the norms (its parameter gradients are discarded),
 * the second starts from the logit gradients scaled row by row by c_i; the
 * cost is about two plain backwards plus the norms. *loss receives the mean
 * (unclipped) loss and norms_out (batch) the norms ||g_i|| over the unmasked
 * parameters; either may be NULL. With mg_model_set_input_grad the input
 * gradient is that of sum_i c_i loss_i. Enables per-example gradients on
 * the model (mg_model_enable_per_example). clip must be positive and
 * finite, labels in [0, K), batch the last forward's (MG_ERR_ARG); a
 * non-finite norm gives MG_ERR_NUMERIC. On any failure the parameter
 * gradients are as on entry. */
mg_status mg_model_dp_backward(mg_model *m, const int32_t *y, int batch, double clip, double *loss,
                               double *norms_out, mg_error *err);

/* The noisy mean of DP-SGD over n gradient entries: grads[i] = (grads[i] +
 * sigma_times_clip * z_i) / batch with z_i standard normal, and grads[i] = 0
 * exactly where masks[i] == 0 (masks may be NULL: nothing masked). When
 * sigma_times_clip > 0 it draws n normals from rng in index order, masked
 * entries included, so the stream does not depend on the masks; with 0 it
 * draws nothing. batch must be positive. */
void mg_dp_add_noise(float *grads, const float *masks, size_t n, double sigma_times_clip, double batch,
                     mg_rng *rng);

#ifdef __cplusplus
}
#endif
#endif

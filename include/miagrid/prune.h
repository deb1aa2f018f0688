/*
 * prune.h: pruning methods. A pruning method sets a model's masks and zeros the
 * pruned parameters; fine-tuning then holds them at zero (see mg_optim_step).
 *
 * Besides the one-shot methods (mg_prune_apply) this module has what the
 * training-time methods need: the slimming penalty on batch-norm scales, the
 * schedules and weight rewinding of iterative pruning, the ADMM state of
 * Zhang et al. (ECCV 2018), butterfly supports (Gonon et al. 2023) and the
 * statistics of a pruned model (Wang et al., IJCAI 2021, Table 4).
 *
 * Counts follow torch.nn.utils.prune: a fraction s of n units prunes
 * round(s * n) of them, round() half to even as Python's. Unlike torch,
 * whose repeated pruning takes s of the units still unpruned, s here is the
 * target for the whole tensor (or model): units already masked count towards
 * it first and are never unmasked, so pruning to 0.5 and then to 0.8 ends at
 * 0.8, as pruning straight to 0.8 would.
 */
#ifndef MIAGRID_PRUNE_H
#define MIAGRID_PRUNE_H

#include "miagrid/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-layer L1-magnitude unstructured pruning: in every prunable tensor of
 * count n, the round(sparsity * n) entries of smallest |w| (ties broken by
 * lower index first, so the result is deterministic) get mask 0 and value 0.
 * Entries already masked count towards the pruned ones and stay masked (if
 * there are more of them than round(sparsity * n), none is unmasked).
 * round() is half to even, as Python's round() in torch.nn.utils.prune.
 * sparsity in [0, 1), else MG_ERR_ARG; a non-finite unmasked weight gives
 * MG_ERR_NUMERIC and leaves the model unchanged. */
mg_status mg_prune_l1_unstructured(mg_model *m, double sparsity, mg_error *err);

/* Fraction of prunable parameters whose mask is 0. */
double mg_model_mask_sparsity(const mg_model *m);

/* ---- one-shot methods by name ------------------------------------------------
 *
 * Methods and the tensors they act on ("eligible"):
 *
 *   l1-unstructured         per prunable tensor, as mg_prune_l1_unstructured.
 *   l1-unstructured-global  one ranking of |w| across all prunable tensors
 *                           together (torch's global_unstructured with
 *                           L1Unstructured): round(s * N) of the N entries go,
 *                           ties by table order then index, so layers end at
 *                           different sparsities.
 *   random-unstructured     per prunable tensor, round(s * n) entries drawn
 *                           uniformly from rng among the unmasked ones
 *                           (torch's RandomUnstructured).
 *   l1-structured,          per layer, whole filters of convolutions (output
 *   l2-structured           channels) and whole neurons (rows) of linear
 *                           layers by the L1 or L2 norm of their weights:
 *                           round(s * rows) rows go, smallest norm first, ties
 *                           by lower index, fully masked rows first (torch's
 *                           ln_structured with dim 0). The norm is taken over
 *                           the current weights (masked entries are 0). Biases
 *                           and following batch norms are left alone, as in
 *                           torch, so a pruned filter's channel still carries
 *                           its bias or batch-norm shift.
 *   butterfly               per layer, every entry outside a butterfly support
 *                           (mg_butterfly_mask) of the weight seen as a matrix
 *                           rows x (inputs per row) goes; see below.
 *   slim                    network slimming (Liu et al., ICCV 2017): one
 *                           ranking of |gamma| across the channels of all
 *                           batch-norm layers; round(s * C) of the C channels
 *                           go, smallest first, ties by table order then
 *                           channel, except that every batch norm keeps at
 *                           least one channel (its turn passes to the next
 *                           candidate). See mg_prune_slim_penalty.
 *
 * Structured and butterfly methods act on the weights of convolutions and
 * linear layers except the output layer (the last prunable tensor, whose rows
 * are the classes) and attention projections. Slim acts on batch norms: the
 * non-prunable "<p>.weight" (gamma) and "<p>.bias" (beta) with a
 * "<p>.running_mean" buffer. A pruned channel gets gamma = beta = 0 with mask
 * 0 on both (batch-norm parameters are not prunable, but masks cover every
 * parameter, so fine-tuning keeps them at 0 and the channel outputs exactly
 * 0), and the filter of the layer feeding that batch norm, when there is one
 * (mg_prune_bn_source), is masked and zeroed as well: that mask on the
 * filter is what mg_model_mask_sparsity and mg_prune_stats see. A batch norm
 * fed by an addition or a concatenation (pre-activation blocks) has no such
 * filter; its pruned channels are masked in gamma and beta only. */

typedef struct {
    /* Restrict the method to tensors whose name starts with one of these
     * prefixes ("L.6.c" matches "L.6.c1.weight"; for slim, batch norms by
     * their gamma's name). NULL or n_layers 0: every eligible tensor. Each
     * prefix must match at least one eligible tensor (else MG_ERR_ARG).
     * Gonon et al.'s butterfly ResNet-20 with S = 1 segment is {"L.6.c",
     * "L.7.c", "L.8.c"}: the six 3x3 convolutions, not the 1x1 shortcut. */
    const char *const *layers;
    size_t n_layers;
    /* butterfly: the number of factors K >= 1 of the support; the sparsity
     * argument must then be 0, since the support fixes it. 0: for each layer
     * the fewest factors whose support keeps at least (1 - sparsity) of its
     * entries. */
    int butterfly_factors;
} mg_prune_opts;

/* The method names above, comma-separated, for messages. A static string. */
const char *mg_prune_method_list(void);
/* 1 if mg_prune_apply knows `method`, else 0. */
int mg_prune_method_known(const char *method);

/* Prune m by `method` to `sparsity` in [0, 1). opts may be NULL (defaults);
 * rng is needed by random-unstructured only (it advances; the same rng gives
 * the same mask) and may be NULL for the others. Unknown method, sparsity out
 * of range, a prefix that matches nothing, a model without batch norms for
 * slim, or a sparsity slim cannot reach while keeping a channel per batch
 * norm: MG_ERR_ARG. A non-finite weight (or gamma) that the ranking needs:
 * MG_ERR_NUMERIC. On failure the model is unchanged. */
mg_status mg_prune_apply(mg_model *m, const char *method, double sparsity, const mg_prune_opts *opts,
                         mg_rng *rng, mg_error *err);

/* ---- network slimming: the batch-norm side -------------------------------------- */

/* Index (into the tensor table) of the prunable weight whose output channels
 * feed the batch norm whose gamma is tensor `bn_weight`, or -1 when there is
 * none or bn_weight is not a batch-norm gamma. Read off the tensor table: the
 * weight must directly precede the batch norm (its bias alone between them),
 * belong to the same parent module ("L.0.c1" and "L.0.b1", "features.0" and
 * "features.1", "layer2.0.shortcut.0" and "layer2.0.shortcut.1") and have as
 * many rows as the batch norm has channels. In every architecture of
 * mg_model_create such a pair is a conv (or linear) layer whose output goes
 * to that batch norm only; a batch norm after an addition or concatenation
 * (DenseNet, Wide-ResNet pre-activation) has -1. */
long mg_prune_bn_source(const mg_model *m, size_t bn_weight);

/* The L1 penalty of network slimming on batch-norm scales: adds
 * lambda * sign(gamma) to the gradient of every batch-norm gamma (sign(0) =
 * 0, as torch.sign), i.e. the subgradient of lambda * sum |gamma|. Call it
 * after each backward and before mg_optim_step during the sparsity training
 * that precedes slim pruning (Liu et al.: lambda 1e-4 for VGG, 1e-5 for
 * ResNets and DenseNets). Models without batch norm are left alone. */
void mg_prune_slim_penalty(mg_model *m, double lambda);

/* ---- iterative pruning: schedules and rewinding ------------------------------------- */

/* Fraction of each layer kept after `round` of `rounds` equal pruning steps
 * towards final_sparsity: (1 - final_sparsity)^(round / rounds), so round
 * `rounds` reaches the final sparsity and each round removes the same
 * fraction of what is left (WeMem, Shang et al.). The sparsity to prune to
 * at that round is 1 - the result. NaN unless 0 <= round <= rounds,
 * rounds >= 1 and final_sparsity is in [0, 1). */
double mg_prune_iter_keep(double final_sparsity, int round, int rounds);

/* Iterative magnitude pruning removing `rate` of the remaining weights per
 * round (Gonon et al.: rate 0.2, so r rounds leave 0.8^r): the sparsity after
 * `rounds` rounds, 1 - (1 - rate)^rounds. NaN for rounds < 0 or rate outside (0, 1). */
double mg_prune_imp_sparsity(int rounds, double rate);
/* The fewest rounds whose sparsity reaches `target` (within 1e-12, so 0.36
 * at rate 0.2 takes 2 rounds despite rounding): 0 for target 0, -1 for a
 * target outside [0, 1) or a rate outside (0, 1). */
int mg_prune_imp_rounds(double target, double rate);

/* Weight rewinding (Frankle et al.): every parameter with mask 1 takes its
 * value from rewind_params (mg_model_n_params floats, saved earlier with
 * memcpy from mg_model_params); every masked one becomes 0. Buffers (batch-norm
 * running statistics) are not touched: copy them separately if wanted. */
void mg_prune_rewind(mg_model *m, const float *rewind_params);

/* ---- ADMM pruning (Zhang et al., ECCV 2018) -------------------------------------------
 *
 * min f(W) subject to card(W_i) <= n_i per prunable tensor i, split as
 * W = Z with Z_i in the constraint set S_i and solved by ADMM on the
 * augmented Lagrangian f(W) + sum_i rho/2 ||W_i - Z_i + U_i||^2:
 *   W-step: the usual training steps with mg_admm_add_grad after each backward;
 *   every N steps (Zhang et al.: each epoch) mg_admm_update:
 *     Z <- projection of W + U onto S (keep the n_i largest |.| of each tensor),
 *     U <- U + W - Z;
 *   finally mg_admm_finalize hard-prunes W onto S and sets the masks, and
 *   masked retraining follows. */
typedef struct {
    double rho;        /* penalty; the caller may raise it between updates (Zhang et al. grow it) */
    size_t n;          /* mg_model_n_params */
    float *Z, *U;      /* (n) each, sliced by the tensor table; 0 outside the constrained tensors */
    size_t n_tensors;  /* mg_model_n_tensors */
    size_t *n_prune;   /* (n_tensors) entries each constrained tensor must drop; 0 for the others */
    mg_model *model;   /* the model mg_admm_plugin's hooks act on (set there; NULL before) */
} mg_admm;

/* Set up ADMM for m: each prunable tensor of count n drops
 * round(s * n) entries, s = tensor_sparsity[t] if tensor_sparsity (n_tensors
 * values, read for prunable tensors only) else `sparsity`, each in [0, 1)
 * (else MG_ERR_ARG). Z starts at the projection of W, U at 0 (Zhang et al.).
 * Entries already masked count as dropped first. *a is zeroed first; free it
 * with mg_admm_free even on failure. Non-finite weights: MG_ERR_NUMERIC. */
mg_status mg_admm_init(mg_admm *a, mg_model *m, double sparsity, const double *tensor_sparsity, double rho,
                       mg_error *err);
void mg_admm_free(mg_admm *a);
/* grads += rho * (W - Z + U) on the constrained tensors: the gradient of the
 * augmented term. Call after each backward, before mg_optim_step. */
void mg_admm_add_grad(const mg_admm *a, mg_model *m);
/* Z <- projection of W + U (ties by lower index; masked entries dropped
 * first), then U <- U + W - Z. A non-finite W + U: MG_ERR_NUMERIC, nothing changed. */
mg_status mg_admm_update(mg_admm *a, mg_model *m, mg_error *err);
/* ||W - Z|| / max(||W||, tiny) over the constrained tensors: the primal
 * residual that ADMM drives to 0. */
double mg_admm_residual(const mg_admm *a, const mg_model *m);
/* Hard pruning: in each constrained tensor the n_prune entries of smallest
 * |W| (ties by lower index, masked first) get mask 0 and value 0, as
 * mg_prune_l1_unstructured. */
mg_status mg_admm_finalize(const mg_admm *a, mg_model *m, mg_error *err);
/* The W-step as a training regime for mg_train_run (mg_train_state_set_plugin),
 * named "admm": each step is the plain forward and backward followed by
 * mg_admm_add_grad; before every epoch after the first, mg_admm_update (Z and
 * U once per epoch, as Zhang et al.), the epoch's rows left as they are; save
 * and load put rho, Z, U and the per-tensor counts in checkpoints (a
 * checkpoint of other counts, i.e. another sparsity, is MG_ERR_STATE), so a
 * run stopped and resumed gives the bits of one run straight through. Sets
 * a->model = m; a and m must outlive the plugin's use. */
void mg_admm_plugin(mg_admm *a, mg_model *m, mg_train_plugin *p);

/* ---- butterfly supports (Gonon et al. 2023; Lin et al., NeurIPS 2021) -----------------
 *
 * A butterfly factor's support is I_a (x) 1_{b x c} (x) I_d (Kronecker
 * products; 1_{b x c} all ones): an (a*b*d) x (a*c*d) matrix with c non-zeros
 * per row and b per column, a*b*c*d in all. The square butterfly of size
 * N = 2^L has the L factors (2^(l-1), 2, 2, N/2^l), l = 1..L, whose product
 * X1 X2 ... XL has a dense support. A chain of factors f_1 ... f_L is
 * chainable when a_{l+1} = a_l c_l and d_l = b_{l+1} d_{l+1}; its product
 * then has the support I_{a_1} (x) 1_{(prod b) x (prod c)} (x) I_{d_L}. */
typedef struct {
    int a, b, c, d;
} mg_bfly_factor;

/* The support of the product f[0] f[1] ... f[L-1], computed by boolean
 * matrix products of the factor supports, row-major into out
 * (rows = a_1 b_1 d_1, cols = a_L c_L d_L; *rows and *cols receive them).
 * out must hold rows * cols bytes (1: in the support). Non-positive entries or
 * a chain that is not chainable: MG_ERR_ARG. For tests and small sizes: it
 * costs rows * inner * cols per product. */
mg_status mg_butterfly_chain_support(const mg_bfly_factor *f, int L, unsigned char *out, int *rows, int *cols,
                                     mg_error *err);
/* Parameters of a factorisation with this chain: sum of a*b*c*d. */
size_t mg_butterfly_chain_params(const mg_bfly_factor *f, int L);
/* The chain Gonon et al. use for a rows x cols weight with L factors: the
 * chainable factors with a_1 = d_L = 1 (so the product is dense), monotone
 * (the inner sizes move from rows to cols without turning back: c_l >= b_l
 * for every l when rows <= cols, c_l <= b_l otherwise) and with at least two
 * non-zeros per row and column in every factor (b_l, c_l >= 2), of fewest
 * parameters; ties go to the first in lexicographic order of (b_1..b_L,
 * c_1..c_L). On ResNet-20 this gives the non-zero fractions of Gonon et al.'s
 * Table 1 (32.3, 15.9, 11.8 % for L = 2; 29.6 and 8.5 % for L = 3 with S = 1
 * and 3; their 12.9 % for L = 3, S = 2 is 12.7 % here). No such chain (e.g. a
 * prime size): MG_ERR_ARG. */
mg_status mg_butterfly_chain_best(int rows, int cols, int L, mg_bfly_factor *f, mg_error *err);

/* The fixed butterfly mask of the butterfly pruning method: pad the
 * rows x cols matrix into the square of side n = the next power of two of
 * max(rows, cols), take the support of the product of the first K standard
 * factors X1 ... XK of size n, which is 1_{2^K x 2^K} (x) I_{n/2^K} (entry
 * (i, j) kept iff i = j mod n/2^K), and crop it to the top-left rows x cols.
 * K >= log2(n) gives the dense support. Each row keeps about cols * 2^K / n
 * entries; when n/2^K > min(rows, cols) some columns (or rows) keep none.
 * out: rows * cols bytes, row-major, 1 = kept. A convolution's weight
 * (OC, C/groups, kh, kw) is the matrix OC x (C/groups*kh*kw) of its memory
 * layout, as Gonon et al. (following Lin et al.) reshape the kernels. */
void mg_butterfly_mask(int rows, int cols, int K, unsigned char *out);
/* Number of entries mg_butterfly_mask keeps, in closed form. */
size_t mg_butterfly_mask_count(int rows, int cols, int K);

/* ---- statistics of a pruned model -------------------------------------------------------- */

/* Where each layer sits, for counting multiply-accumulates (MACs). One entry
 * per tensor of the table (only those of prunable tensors are read). */
typedef struct {
    /* Output positions per sample of the layer owning the tensor: OH*OW for
     * a convolution, the rows a linear layer is applied to per sample (1 for
     * a feature vector); 0 leaves the tensor out of the MAC count. */
    long positions;
    /* The prunable tensor whose output channels are this layer's input
     * channels through channel-wise operations only (batch norm, activation,
     * dropout, pooling including global average pooling, flatten), or -1
     * (the model's input, or an addition or concatenation in between). It
     * comes before the layer in the tensor table. */
    long producer;
} mg_prune_geom;

/* Geometry of any model mg_model_create builds, read off its graph; geom
 * holds mg_model_n_tensors entries, those of tensors that are not prunable
 * {0, -1}.
 *   positions: a convolution's OH*OW; a linear layer's rows per sample (1 on
 *              a feature vector); L for both projections of self-attention
 *              (whose attention products are not counted).
 *   producer:  followed back from the layer's input through batch norm,
 *              activations, dropout, max and average pooling, global average
 *              pooling and flatten to the convolution or linear layer that
 *              made those channels. A convolution takes it only when the
 *              channels are still a map's channels, a linear layer only when
 *              they lie on its input's last axis (a flattened or globally
 *              pooled map, whose channels take consecutive runs of H*W
 *              features or one feature each, or another linear layer's
 *              outputs). -1 at the input, after an addition (a residual sum:
 *              a channel is dead only if every summand's is), a
 *              concatenation, a layer norm or an attention layer, and for
 *              an attention out-projection.
 * For a chain of linear layers this is mg_prune_geom_chain's. MG_ERR_NOMEM,
 * or MG_ERR_INTERNAL if a layer's weight is missing from the table. */
mg_status mg_prune_geom_model(const mg_model *m, mg_prune_geom *geom, mg_error *err);

/* Geometry of a model whose prunable tensors are linear layers in a chain
 * (the MLPs): positions 1, producer the previous one. MG_ERR_ARG naming the
 * first tensor that is not such a layer. geom holds mg_model_n_tensors
 * entries. It needs only the tensor table; mg_prune_geom_model covers every
 * architecture. */
mg_status mg_prune_geom_chain(const mg_model *m, mg_prune_geom *geom, mg_error *err);

/* Per prunable tensor and in total. "kept" counts mask 1, "nonzero" values
 * != 0 (a masked entry is 0, so nonzero <= kept).
 *
 * MACs (with a geometry): a dense layer costs positions * count. Pruned, it
 * costs positions * (weights with mask 1 whose input channel is alive), where
 * an input channel is dead when the producer's row (filter, neuron) for it is
 * dead, and a row is alive when one of its weights with mask 1 reads an alive
 * input channel (any weight with mask 1 when the layer has no producer).
 * Grouped convolutions map channels by group (a depthwise filter reads its
 * own channel only, so a dead channel kills the depthwise filter after it
 * and that one's channel in the layer after); a linear layer after a
 * flattened convolution maps inputs/channels consecutive inputs to a channel
 * (one after global average pooling). So removing a filter removes its own
 * MACs and the next layer's MACs on that channel, as if the network were
 * physically slimmed (a dead channel's constant bias or batch-norm shift is
 * taken as folded away), except across an addition or concatenation
 * (producer -1), and unstructured sparsity counts as ideal sparse kernels
 * would. Only convolutions and linear layers are counted: not batch norm,
 * activations, pooling, biases, additions or attention products. FLOPs are
 * 2 * MACs if one counts both. */
typedef struct {
    size_t n;                 /* prunable tensors */
    size_t *tensor;           /* (n) index into the tensor table */
    size_t *count;            /* (n) entries */
    size_t *kept;             /* (n) */
    size_t *nonzero;          /* (n) */
    uint64_t *macs_dense;     /* (n) 0 without a geometry */
    uint64_t *macs;           /* (n) 0 without a geometry */
    size_t total, total_kept, total_nonzero;  /* over the prunable tensors */
    double compression;       /* total / total_nonzero (Wang et al.'s "weights reduction ratio");
                               * infinity when nothing is left */
    size_t n_params;          /* every parameter (biases, norms included) */
    size_t n_params_masked;   /* parameters with mask 0, prunable or not (slim masks batch norms) */
    int has_macs;             /* 1 when a geometry was given */
    uint64_t macs_dense_total, macs_total;
    double macs_saved;        /* 1 - macs_total / macs_dense_total; NaN without a geometry */
} mg_prune_stats_t;

/* Fill *out for m (zeroed first; free with mg_prune_stats_free even on
 * failure). geom (mg_model_n_tensors entries, e.g. from mg_prune_geom_model)
 * may be NULL: then has_macs is 0. A geometry whose producer is not an
 * earlier prunable tensor, or whose producer's rows do not divide this
 * layer's input channels: MG_ERR_ARG. */
mg_status mg_prune_stats(const mg_model *m, const mg_prune_geom *geom, mg_prune_stats_t *out, mg_error *err);
void mg_prune_stats_free(mg_prune_stats_t *s);

#ifdef __cplusplus
}
#endif
#endif

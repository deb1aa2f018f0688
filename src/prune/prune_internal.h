/*
 * prune_internal.h: what the pruning methods in src/prune/ share: counting
 * rules, tensor eligibility and selection, order statistics, the batch-norm
 * table, and the methods mg_prune_apply dispatches to.
 */
#ifndef MIAGRID_PRUNE_INTERNAL_H
#define MIAGRID_PRUNE_INTERNAL_H

#include <stddef.h>

#include "miagrid/prune.h"

/* round(s * n), half to even as Python's round() in torch.nn.utils.prune. */
size_t mg_prune_round_count(double s, size_t n);

/* 1 if the tensor's name starts with one of opts' prefixes (or opts selects everything). */
int mg_prune_selected(const mg_prune_opts *opts, const char *name);

/* 1 for the weights of an attention layer (in_proj_weight, out_proj.weight). */
int mg_prune_is_attention(const char *name);

/* Which tensors a method may touch. */
typedef int (*mg_prune_eligible_fn)(const mg_model *m, size_t t);
/* Every prunable tensor. */
int mg_prune_eligible_any(const mg_model *m, size_t t);
/* Weights of convolutions (4-d) and linear layers (2-d) other than the output
 * layer (the last prunable tensor) and attention projections. */
int mg_prune_eligible_rows(const mg_model *m, size_t t);

/* MG_ERR_ARG unless every prefix of opts matches at least one tensor that is
 * eligible; `method` names the method in the message. */
mg_status mg_prune_check_prefixes(const mg_model *m, const mg_prune_opts *opts, mg_prune_eligible_fn eligible,
                                  const char *method, mg_error *err);

/* Rows of a weight seen as a matrix (shape[0]) and entries per row. */
void mg_prune_rows(const mg_tensor_info *ti, size_t *rows, size_t *per_row);

/* The k-th smallest (0-based) of v[0..n), k < n; reorders v. Deterministic. */
float mg_prune_kth_smallest(float *v, size_t n, size_t k);

/* Order statistics for "drop the r smallest scores among the unmasked
 * entries, ties by lower index": score(i) = |w[i] + (u ? u[i] : 0)| over the
 * entries with mask[i] != 0 (mask NULL: all). The r entries are exactly those
 * with score < *tau plus the first *ties (in index order) with score == *tau.
 * r must not exceed the unmasked entries; r == 0 gives *tau = -inf and no
 * ties. scratch holds n floats. Scores must be finite. */
void mg_prune_threshold(const float *w, const float *u, const float *mask, size_t n, size_t r, float *scratch,
                        float *tau, size_t *ties);

/* Per-layer L1 pruning of the tensors t with on[t] set (prunable ones):
 * max(n_prune[t], already masked) entries of tensor t go, those already
 * masked first, then smallest |w|, ties by lower index. `what` names the
 * caller in messages. Checks every weight before changing any. */
mg_status mg_prune_l1_counts(mg_model *m, const unsigned char *on, const size_t *n_prune, const char *what,
                             mg_error *err);

/* A batch norm found in the tensor table. */
typedef struct {
    size_t gamma, beta;  /* tensor indices */
    long source;         /* mg_prune_bn_source, or -1 */
    int channels;
} mg_prune_bn;

/* Every batch norm of m in table order (caller frees *out; *n may be 0). */
mg_status mg_prune_find_bns(const mg_model *m, mg_prune_bn **out, size_t *n, mg_error *err);

/* The methods of mg_prune_apply (arguments already checked: sparsity in [0, 1)). */
mg_status mg_prune_l1_layers(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err);
mg_status mg_prune_l1_global(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err);
mg_status mg_prune_random(mg_model *m, double s, const mg_prune_opts *opts, mg_rng *rng, mg_error *err);
mg_status mg_prune_ln_structured(mg_model *m, double s, int norm, const mg_prune_opts *opts, mg_error *err);
mg_status mg_prune_slim(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err);
mg_status mg_prune_butterfly(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err);

#endif

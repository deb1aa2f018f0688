/*
 * prune.h: pruning methods. A pruning method sets a model's masks and zeros the
 * pruned parameters; fine-tuning then holds them at zero (see mg_optim_step).
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

#ifdef __cplusplus
}
#endif
#endif

/*
 * prune.c: magnitude pruning. A method decides which entries of each prunable
 * tensor to drop, sets their mask to 0 and their value to exactly 0.0f;
 * mg_optim_step keeps them there while fine-tuning.
 */
#include "miagrid/prune.h"

#include <math.h>
#include <stdlib.h>

/* Sort key: already-pruned entries first (so they stay pruned), then |w|,
 * then the index, which makes the order total and the choice deterministic. */
typedef struct {
    float mag;
    uint32_t idx;
    int pruned;
} prune_key;

static int cmp_key(const void *pa, const void *pb)
{
    const prune_key *a = pa, *b = pb;
    if (a->pruned != b->pruned)
        return a->pruned ? -1 : 1;
    if (a->mag != b->mag)
        return a->mag < b->mag ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

mg_status mg_prune_l1_unstructured(mg_model *m, double sparsity, mg_error *err)
{
    mg_status st = MG_OK;
    prune_key *keys = NULL;
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        MG_FAIL(MG_ERR_ARG, "l1-unstructured pruning: sparsity %g must be in [0, 1)", sparsity);

    size_t max_count = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->prunable && ti->count > max_count)
            max_count = ti->count;
    }
    if (max_count > UINT32_MAX)
        MG_FAIL(MG_ERR_ARG, "l1-unstructured pruning: a tensor of %zu entries is too large", max_count);
    keys = mg_malloc(max_count ? max_count : 1, sizeof *keys, "pruning scratch", err);
    if (!keys)
        MG_FAIL(MG_ERR_NOMEM, "l1-unstructured pruning: out of memory for a tensor of %zu entries", max_count);

    float *params = mg_model_params(m), *masks = mg_model_masks(m);
    /* Check every tensor before touching any, so a failure leaves the model as it was. */
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        for (size_t i = 0; ti->prunable && i < ti->count; i++)
            if (masks[ti->offset + i] != 0.0f && !isfinite(params[ti->offset + i]))
                MG_FAIL(MG_ERR_NUMERIC, "l1-unstructured pruning: %s[%zu] is %g; the model has diverged",
                        ti->name, i, (double)params[ti->offset + i]);
    }
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        float *w = params + ti->offset, *mk = masks + ti->offset;
        size_t n = ti->count;
        for (size_t i = 0; i < n; i++) {
            keys[i].mag = fabsf(w[i]);
            keys[i].idx = (uint32_t)i;
            keys[i].pruned = mk[i] == 0.0f;
        }
        /* Round half to even, as Python's round() in torch.nn.utils.prune. */
        size_t k = (size_t)nearbyint(sparsity * (double)n);
        qsort(keys, n, sizeof *keys, cmp_key);
        /* Earlier prunings survive even when k is smaller than their number. */
        for (size_t j = 0; j < n && (j < k || keys[j].pruned); j++) {
            mk[keys[j].idx] = 0.0f;
            w[keys[j].idx] = 0.0f;
        }
    }
cleanup:
    free(keys);
    return st;
}

double mg_model_mask_sparsity(const mg_model *m)
{
    size_t total = 0, zero = 0;
    const float *masks = mg_model_masks((mg_model *)m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        const float *mk = masks + ti->offset;
        for (size_t i = 0; i < ti->count; i++)
            zero += mk[i] == 0.0f;
        total += ti->count;
    }
    return total ? (double)zero / (double)total : 0.0;
}

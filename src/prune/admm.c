/*
 * admm.c: ADMM weight pruning (Zhang et al., "A systematic DNN weight
 * pruning framework using alternating direction method of multipliers",
 * ECCV 2018), the solver Wang et al. (IJCAI 2021) adapt for MIA-Pruning. The
 * training loop does the W-step; this file holds Z and U, the gradient of
 * the augmented term, the Z- and U-updates and the final hard pruning.
 */
#include "miagrid/prune.h"
#include "prune/prune_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mg_admm_free(mg_admm *a)
{
    free(a->Z);
    free(a->U);
    free(a->n_prune);
    memset(a, 0, sizeof *a);
}

/* Z <- projection of W + U onto each tensor's constraint; U untouched. */
static mg_status project(mg_admm *a, mg_model *m, mg_error *err)
{
    mg_status st = MG_OK;
    float *scratch = NULL;
    const float *W = mg_model_params(m), *masks = mg_model_masks(m);
    size_t max_count = 0;
    for (size_t t = 0; t < a->n_tensors; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        if (ti->count > max_count)
            max_count = ti->count;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            if (masks[i] != 0.0f && !isfinite(W[i] + a->U[i]))
                MG_FAIL(MG_ERR_NUMERIC, "ADMM pruning: %s[%zu] + U is %g; the model has diverged", ti->name,
                        i - ti->offset, (double)(W[i] + a->U[i]));
    }
    scratch = mg_malloc(max_count ? max_count : 1, sizeof *scratch, "ADMM scratch", err);
    if (!scratch)
        MG_FAIL(MG_ERR_NOMEM, "ADMM pruning: out of memory for a tensor of %zu entries", max_count);
    for (size_t t = 0; t < a->n_tensors; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        const float *w = W + ti->offset, *u = a->U + ti->offset, *mk = masks + ti->offset;
        float *z = a->Z + ti->offset;
        size_t masked = 0;
        for (size_t i = 0; i < ti->count; i++)
            masked += mk[i] == 0.0f;
        size_t r = a->n_prune[t] > masked ? a->n_prune[t] - masked : 0;
        if (r > ti->count - masked)
            r = ti->count - masked;
        float tau;
        size_t ties;
        mg_prune_threshold(w, u, mk, ti->count, r, scratch, &tau, &ties);
        for (size_t i = 0; i < ti->count; i++) {
            float v = w[i] + u[i], s = fabsf(v);
            int drop = mk[i] == 0.0f || s < tau || (s == tau && ties > 0);
            if (mk[i] != 0.0f && s == tau && ties > 0)
                ties--;
            z[i] = drop ? 0.0f : v;
        }
    }
cleanup:
    free(scratch);
    return st;
}

mg_status mg_admm_init(mg_admm *a, mg_model *m, double sparsity, const double *tensor_sparsity, double rho,
                       mg_error *err)
{
    mg_status st = MG_OK;
    memset(a, 0, sizeof *a);
    if (!(rho >= 0.0) || !isfinite(rho))
        MG_FAIL(MG_ERR_ARG, "ADMM pruning: rho %g must be finite and >= 0", rho);
    a->rho = rho;
    a->n = mg_model_n_params(m);
    a->n_tensors = mg_model_n_tensors(m);
    for (size_t t = 0; t < a->n_tensors; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        double s = tensor_sparsity ? tensor_sparsity[t] : sparsity;
        if (ti->prunable && !(s >= 0.0 && s < 1.0))
            MG_FAIL(MG_ERR_ARG, "ADMM pruning: sparsity %g of %s must be in [0, 1)", s, ti->name);
    }
    a->Z = mg_calloc(a->n ? a->n : 1, sizeof *a->Z, "ADMM Z", err);
    a->U = mg_calloc(a->n ? a->n : 1, sizeof *a->U, "ADMM U", err);
    a->n_prune = mg_calloc(a->n_tensors ? a->n_tensors : 1, sizeof *a->n_prune, "ADMM counts", err);
    if (!a->Z || !a->U || !a->n_prune)
        MG_FAIL(MG_ERR_NOMEM, "ADMM pruning: out of memory for %zu parameters", a->n);
    for (size_t t = 0; t < a->n_tensors; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->prunable)
            a->n_prune[t] = mg_prune_round_count(tensor_sparsity ? tensor_sparsity[t] : sparsity, ti->count);
    }
    MG_CHECK(project(a, m, err));
cleanup:
    return st;
}

void mg_admm_add_grad(const mg_admm *a, mg_model *m)
{
    const float *W = mg_model_params(m);
    float *G = mg_model_grads(m);
    float rho = (float)a->rho;
    for (size_t t = 0; t < a->n_tensors; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            G[i] += rho * (W[i] - a->Z[i] + a->U[i]);
    }
}

mg_status mg_admm_update(mg_admm *a, mg_model *m, mg_error *err)
{
    mg_status st = project(a, m, err);
    if (st != MG_OK)
        return st;
    const float *W = mg_model_params(m);
    for (size_t t = 0; t < a->n_tensors; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            a->U[i] += W[i] - a->Z[i];
    }
    return MG_OK;
}

double mg_admm_residual(const mg_admm *a, const mg_model *m)
{
    const float *W = mg_model_params((mg_model *)m);
    double diff = 0.0, norm = 0.0;
    for (size_t t = 0; t < a->n_tensors; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            double d = (double)W[i] - (double)a->Z[i];
            diff += d * d;
            norm += (double)W[i] * (double)W[i];
        }
    }
    return sqrt(diff) / fmax(sqrt(norm), 1e-30);
}

mg_status mg_admm_finalize(const mg_admm *a, mg_model *m, mg_error *err)
{
    mg_status st = MG_OK;
    unsigned char *on = mg_malloc(a->n_tensors ? a->n_tensors : 1, 1, "ADMM flags", err);
    if (!on)
        return MG_ERR_NOMEM;
    for (size_t t = 0; t < a->n_tensors; t++)
        on[t] = mg_model_tensor(m, t)->prunable;
    st = mg_prune_l1_counts(m, on, a->n_prune, "ADMM hard pruning", err);
    free(on);
    return st;
}

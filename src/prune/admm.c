/*
 * admm.c: ADMM weight pruning (Zhang et al., "A systematic DNN weight
 * pruning framework using alternating direction method of multipliers",
 * ECCV 2018), the solver Wang et al. (IJCAI 2021) adapt for MIA-Pruning. The
 * training loop does the W-step; this file holds Z and U, the gradient of
 * the augmented term, the Z- and U-updates, the final hard pruning, and the
 * training-regime hooks (mg_admm_plugin) that run the W-step inside
 * mg_train_run with Z and U in its checkpoints.
 */
#include "miagrid/prune.h"
#include "miagrid/store.h"
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

/* ---- the W-step as a training regime ----------------------------------------------------- */

static mg_status admm_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows, int b,
                           int epoch, double *loss, int *n_correct, mg_error *err)
{
    (void)rows;
    (void)epoch;
    mg_status st = mg_model_forward(m, xb, b, 1, NULL, err);
    if (st == MG_OK)
        st = mg_model_backward(m, yb, b, loss, n_correct, err);
    if (st == MG_OK)
        mg_admm_add_grad(user, m);
    return st;
}

/* Zhang et al. update Z and U once per epoch: here at the start of each
 * epoch after the first, which is the end of the one before. Doing it
 * before the epoch rather than after keeps a checkpoint written between
 * epochs exact: the update reads the W that checkpoint holds. */
static mg_status admm_epoch(void *user, int epoch, uint32_t *rows, size_t *n_rows, mg_error *err)
{
    (void)rows;
    (void)n_rows;
    mg_admm *a = user;
    return epoch > 0 ? mg_admm_update(a, a->model, err) : MG_OK;
}

static mg_status admm_save(void *user, hid_t loc, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_admm *a = user;
    uint64_t *counts = mg_malloc(a->n_tensors ? a->n_tensors : 1, sizeof *counts, "ADMM counts", err);
    if (!counts)
        return MG_ERR_NOMEM;
    for (size_t t = 0; t < a->n_tensors; t++)
        counts[t] = a->n_prune[t];
    hsize_t n = a->n, nt = a->n_tensors;
    MG_CHECK(mg_h5_attr_f64(loc, "rho", a->rho, err));
    MG_CHECK(mg_h5_write(loc, "Z", H5T_NATIVE_FLOAT, 1, &n, a->Z, err));
    MG_CHECK(mg_h5_write(loc, "U", H5T_NATIVE_FLOAT, 1, &n, a->U, err));
    MG_CHECK(mg_h5_write(loc, "n_prune", H5T_NATIVE_UINT64, 1, &nt, counts, err));
cleanup:
    free(counts);
    return st;
}

/* Everything is read and checked before Z, U and rho change. */
static mg_status admm_load(void *user, hid_t loc, mg_error *err)
{
    mg_status st = MG_OK;
    mg_admm *a = user;
    void *z = NULL, *u = NULL, *counts = NULL;
    hsize_t d[4];
    int nd = 0;
    double rho = 0.0;
    MG_CHECK(mg_h5_get_attr_f64(loc, "rho", &rho, err));
    if (!(rho >= 0.0) || !isfinite(rho))
        MG_FAIL(MG_ERR_STATE, "ADMM checkpoint: rho %g is not a penalty", rho);
    MG_CHECK(mg_h5_read(loc, "n_prune", H5T_NATIVE_UINT64, &counts, d, &nd, err));
    if (nd != 1 || d[0] != a->n_tensors)
        MG_FAIL(MG_ERR_STATE, "ADMM checkpoint: counts for %llu tensors, the model has %zu",
                (unsigned long long)(nd == 1 ? d[0] : 0), a->n_tensors);
    for (size_t t = 0; t < a->n_tensors; t++)
        if (((const uint64_t *)counts)[t] != a->n_prune[t])
            MG_FAIL(MG_ERR_STATE, "ADMM checkpoint: tensor %zu drops %llu entries, this run %zu (another sparsity)",
                    t, (unsigned long long)((const uint64_t *)counts)[t], a->n_prune[t]);
    MG_CHECK(mg_h5_read(loc, "Z", H5T_NATIVE_FLOAT, &z, d, &nd, err));
    if (nd != 1 || d[0] != a->n)
        MG_FAIL(MG_ERR_STATE, "ADMM checkpoint: Z has %llu values, the model %zu parameters",
                (unsigned long long)(nd == 1 ? d[0] : 0), a->n);
    MG_CHECK(mg_h5_read(loc, "U", H5T_NATIVE_FLOAT, &u, d, &nd, err));
    if (nd != 1 || d[0] != a->n)
        MG_FAIL(MG_ERR_STATE, "ADMM checkpoint: U has %llu values, the model %zu parameters",
                (unsigned long long)(nd == 1 ? d[0] : 0), a->n);
    if (a->n) {
        memcpy(a->Z, z, a->n * sizeof *a->Z);
        memcpy(a->U, u, a->n * sizeof *a->U);
    }
    a->rho = rho;
cleanup:
    free(z);
    free(u);
    free(counts);
    return st;
}

void mg_admm_plugin(mg_admm *a, mg_model *m, mg_train_plugin *p)
{
    a->model = m;
    memset(p, 0, sizeof *p);
    p->name = "admm";
    p->user = a;
    p->step = admm_step;
    p->epoch_rows = admm_epoch;
    p->save = admm_save;
    p->load = admm_load;
}

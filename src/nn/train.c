/*
 * train.c: the mini-batch training loop. Each epoch draws a fresh permutation
 * from the caller's rng, so a (model, data, rng) triple always yields the same
 * bits; the loop itself adds no threads or reductions whose order could vary.
 */
#include "miagrid/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mg_history_free(mg_history *h)
{
    if (!h)
        return;
    free(h->loss);
    free(h->train_acc);
    free(h->seconds);
    h->loss = h->train_acc = h->seconds = NULL;
    h->n_epochs = 0;
}

mg_status mg_train(mg_model *m, const float *x, const int32_t *y, size_t n, const mg_train_cfg *cfg,
                   mg_rng *rng, mg_history *hist, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL;
    float *xb = NULL;
    int32_t *yb = NULL;
    mg_optim opt = {0};
    mg_history h = {0};

    if (hist)
        memset(hist, 0, sizeof *hist);
    if (cfg->epochs < 0 || cfg->batch < 1)
        MG_FAIL(MG_ERR_ARG, "training: epochs (%d) must be >= 0 and batch (%d) >= 1", cfg->epochs, cfg->batch);
    if (n == 0 || n > UINT32_MAX)
        MG_FAIL(MG_ERR_ARG, "training: %zu samples (need between 1 and %u)", n, (unsigned)UINT32_MAX);

    const int K = mg_model_n_classes(m);
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K)
            MG_FAIL(MG_ERR_ARG, "training: label %d of sample %zu is outside [0, %d)", (int)y[i], i, K);

    const size_t dim = (size_t)mg_model_in_dim(m);
    const int bmax = (size_t)cfg->batch < n ? cfg->batch : (int)n;
    perm = mg_malloc(n, sizeof *perm, "training permutation", err);
    xb = mg_malloc((size_t)bmax * dim, sizeof *xb, "training batch", err);
    yb = mg_malloc((size_t)bmax, sizeof *yb, "training batch", err);
    h.loss = mg_calloc((size_t)cfg->epochs + 1, sizeof(double), "training history", err);
    h.train_acc = mg_calloc((size_t)cfg->epochs + 1, sizeof(double), "training history", err);
    h.seconds = mg_calloc((size_t)cfg->epochs + 1, sizeof(double), "training history", err);
    if (!perm || !xb || !yb || !h.loss || !h.train_acc || !h.seconds)
        MG_FAIL(MG_ERR_NOMEM, "training: out of memory for %zu samples", n);
    MG_CHECK(mg_optim_init(&opt, &cfg->optim, mg_model_n_params(m), err));

    float *params = mg_model_params(m), *grads = mg_model_grads(m);
    const float *masks = mg_model_masks(m);
    for (int e = 0; e < cfg->epochs; e++) {
        double t0 = mg_now();
        for (size_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        mg_rng_shuffle_u32(rng, perm, n);
        double loss_sum = 0.0;
        size_t correct = 0;
        long step = 0;
        for (size_t start = 0; start < n; start += (size_t)bmax, step++) {
            int b = (int)(n - start < (size_t)bmax ? n - start : (size_t)bmax);
            for (int j = 0; j < b; j++) {
                uint32_t r = perm[start + (size_t)j];
                memcpy(xb + (size_t)j * dim, x + (size_t)r * dim, dim * sizeof(float));
                yb[j] = y[r];
            }
            double loss = 0.0;
            int nc = 0;
            mg_model_zero_grad(m);
            MG_CHECK(mg_model_forward(m, xb, b, 1, NULL, err));
            MG_CHECK(mg_model_backward(m, yb, b, &loss, &nc, err));
            if (!isfinite(loss))
                MG_FAIL(MG_ERR_NUMERIC, "training diverged: loss is %s at epoch %d, step %ld (lr %g)",
                        isnan(loss) ? "nan" : "inf", e + 1, step + 1, cfg->optim.lr);
            mg_optim_step(&opt, params, grads, masks);
            loss_sum += loss * b;
            correct += (size_t)nc;
        }
        h.loss[e] = loss_sum / (double)n;
        h.train_acc[e] = (double)correct / (double)n;
        h.seconds[e] = mg_now() - t0;
        h.n_epochs = e + 1;
    }
    if (hist) {
        *hist = h;
        memset(&h, 0, sizeof h);
    }
cleanup:
    mg_history_free(&h);
    mg_optim_free(&opt);
    free(perm);
    free(xb);
    free(yb);
    return st;
}

/*
 * sensitivity.c: the per-class sensitivity of a model's softmax to Gaussian
 * input noise, the extra feature of SAMIA (Yuan & Zhang's
 * predict_target_sensitivity: 10 draws, eps 0.001) and of Gonon et al.'s
 * discriminator (5 draws, eps 0.001). The caller evaluates it on the target
 * and on every shadow model, for their members and non-members.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"

/* Samples per chunk: the chunk's clean and noisy copies go through one
 * mg_model_predict call. */
#define SENS_CHUNK 64

static void softmax_d(double *p, const float *z, int K)
{
    double lse = mg_atk_lse(z, K);
    for (int k = 0; k < K; k++)
        p[k] = exp((double)z[k] - lse);
}

mg_status mg_attack_sensitivity(mg_model *m, const float *x, size_t n, int draws, double eps, mg_rng *rng,
                                float *out, mg_error *err)
{
    mg_status st = MG_OK;
    float *xb = NULL, *logits = NULL;
    double *acc = NULL, *p0 = NULL, *p1 = NULL;
    if (draws < 1 || !(eps > 0.0) || !isfinite(eps))
        MG_FAIL(MG_ERR_ARG, "sensitivity features: %d draws and eps %g (need draws >= 1 and eps > 0)", draws, eps);
    const size_t D = (size_t)mg_model_in_dim(m);
    const int K = mg_model_n_classes(m);
    const size_t rows = (size_t)SENS_CHUNK * (size_t)(draws + 1);
    xb = mg_malloc(rows * D, sizeof(float), "sensitivity inputs", err);
    logits = mg_malloc(rows * (size_t)K, sizeof(float), "sensitivity logits", err);
    p0 = mg_malloc((size_t)K, sizeof(double), "softmax", err);
    p1 = mg_malloc((size_t)K, sizeof(double), "softmax", err);
    acc = mg_malloc((size_t)K, sizeof(double), "sensitivity sums", err);
    if (!xb || !logits || !p0 || !p1 || !acc)
        MG_FAIL(MG_ERR_NOMEM, "sensitivity features: out of memory");
    for (size_t c0 = 0; c0 < n; c0 += SENS_CHUNK) {
        size_t c = n - c0 < SENS_CHUNK ? n - c0 : SENS_CHUNK;
        /* Row s*(draws+1) is sample s itself, the next `draws` rows its noisy
         * copies, drawn in sample, draw, element order. */
        for (size_t s = 0; s < c; s++) {
            const float *src = x + (c0 + s) * D;
            float *dst = xb + s * (size_t)(draws + 1) * D;
            memcpy(dst, src, D * sizeof(float));
            for (int j = 1; j <= draws; j++) {
                float *row = dst + (size_t)j * D;
                for (size_t e = 0; e < D; e++)
                    row[e] = (float)((double)src[e] + eps * mg_rng_normal(rng));
            }
        }
        MG_CHECK(mg_model_predict(m, xb, c * (size_t)(draws + 1), logits, err));
        for (size_t s = 0; s < c; s++) {
            const float *z = logits + s * (size_t)(draws + 1) * K;
            softmax_d(p0, z, K);
            for (int k = 0; k < K; k++)
                acc[k] = 0.0;
            for (int j = 1; j <= draws; j++) {
                softmax_d(p1, z + (size_t)j * K, K);
                for (int k = 0; k < K; k++)
                    acc[k] += fabs(p1[k] - p0[k]);
            }
            float *o = out + (c0 + s) * (size_t)K;
            for (int k = 0; k < K; k++) {
                o[k] = (float)(acc[k] / draws / eps);
                if (!isfinite(o[k]))
                    MG_FAIL(MG_ERR_NUMERIC, "sensitivity features: sample %zu class %d is %g", c0 + s, k,
                            (double)o[k]);
            }
        }
    }
cleanup:
    free(xb);
    free(logits);
    free(p0);
    free(p1);
    free(acc);
    return st;
}

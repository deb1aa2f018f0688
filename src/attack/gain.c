/*
 * gain.c: Wang et al.'s empirical gain of an inference model (their eq. 1),
 * the quantity MIA-Pruning minimises over candidate sparsities. The model's
 * owner knows which samples it trained on, so it fits the inference model on
 * half of its members and non-members and measures the gain on the other
 * half, where the fit has not seen them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"

/* log(sigmoid(s)), without overflow for either sign of s. */
static double log_sigmoid(double s)
{
    return s >= 0.0 ? -log1p(exp(-s)) : s - log1p(exp(s));
}

/* Rows idx[0..n) of one part, copied out. */
static mg_status take_rows(const mg_attack_split *src, const uint32_t *idx, size_t n, int K, float **logits,
                           int32_t **labels, mg_error *err)
{
    *logits = mg_malloc(n * (size_t)K, sizeof **logits, "gain halves", err);
    *labels = mg_malloc(n, sizeof **labels, "gain halves", err);
    if (!*logits || !*labels)
        return MG_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        memcpy(*logits + i * (size_t)K, src->logits + (size_t)idx[i] * (size_t)K, (size_t)K * sizeof **logits);
        (*labels)[i] = src->labels[idx[i]];
    }
    return MG_OK;
}

mg_status mg_attack_gain(const mg_attack_cfg *cfg, int n_classes, const mg_attack_outputs *out, double *gain,
                         double *balanced_acc, mg_error *err)
{
    mg_status st = MG_OK;
    mg_attack_cfg c = *cfg;
    const mg_attack_split *part[2] = {&out->member, &out->nonmember};
    uint32_t *idx[2] = {NULL, NULL};
    float *lg[2][2] = {{NULL, NULL}, {NULL, NULL}}; /* [part][half]: half 0 fits, half 1 measures */
    int32_t *lb[2][2] = {{NULL, NULL}, {NULL, NULL}};
    size_t nh[2][2];
    mg_attack_result res;
    memset(&res, 0, sizeof res);
    *gain = *balanced_acc = NAN;
    if (c.kind != MG_ATTACK_NN && c.kind != MG_ATTACK_TOP3_NN && c.kind != MG_ATTACK_NN_CLS)
        return mg_error_set(err, MG_ERR_ARG, "the gain needs a classifier attack (nn, top3-nn, nn-cls), not %s",
                            mg_attack_kind_str(c.kind));
    for (int p = 0; p < 2; p++) {
        size_t n = part[p]->n;
        if (n < 2)
            MG_FAIL(MG_ERR_ARG, "the gain needs at least 2 %s, got %zu", p ? "non-members" : "members", n);
        idx[p] = mg_malloc(n, sizeof *idx[p], "gain halves", err);
        if (!idx[p])
            MG_CHECK(MG_ERR_NOMEM);
        for (size_t i = 0; i < n; i++)
            idx[p][i] = (uint32_t)i;
        mg_rng_shuffle_u32(&c.rng, idx[p], n);
        nh[p][0] = n / 2;
        nh[p][1] = n - n / 2;
        MG_CHECK(take_rows(part[p], idx[p], nh[p][0], n_classes, &lg[p][0], &lb[p][0], err));
        MG_CHECK(take_rows(part[p], idx[p] + nh[p][0], nh[p][1], n_classes, &lg[p][1], &lb[p][1], err));
    }
    mg_attack_outputs fit = {{lg[0][0], lb[0][0], NULL, nh[0][0]}, {lg[1][0], lb[1][0], NULL, nh[1][0]}};
    mg_attack_inputs in;
    memset(&in, 0, sizeof in);
    in.n_classes = n_classes;
    in.target.member = (mg_attack_split){lg[0][1], lb[0][1], NULL, nh[0][1]};
    in.target.nonmember = (mg_attack_split){lg[1][1], lb[1][1], NULL, nh[1][1]};
    in.shadow = &fit;
    in.n_shadow = 1;
    MG_CHECK(mg_attack_run(&c, &in, &res, err));
    /* Scores are the member log-odds: f_A = sigmoid(score). */
    double sum[2] = {0.0, 0.0};
    for (size_t i = 0; i < res.n; i++)
        sum[!res.member[i]] += log_sigmoid(res.member[i] ? res.score[i] : -res.score[i]);
    *gain = sum[0] / (double)nh[0][1] + sum[1] / (double)nh[1][1];
    *balanced_acc = res.target.attack.balanced_acc;
cleanup:
    mg_attack_result_free(&res);
    for (int p = 0; p < 2; p++) {
        free(idx[p]);
        for (int h = 0; h < 2; h++) {
            free(lg[p][h]);
            free(lb[p][h]);
        }
    }
    return st;
}

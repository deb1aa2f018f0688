/*
 * classifier.c: the attacks that train a model on the shadow models'
 * outputs (nn, top3-nn, nn-cls after Yuan & Zhang's code, SAMIA, Gonon et
 * al.'s discriminator): the input features of each, the attack model and
 * its training settings, and gonon's grid with held-out selection.
 * attack.h states the variants and their references.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"

/* Rows of the attack model's input for each pooled sample:
 *   nn       softmax (K)
 *   top3-nn  the three largest probabilities, descending (3)
 *   nn-cls   softmax, one-hot label (2K)
 *   samia    softmax, sensitivity, one-hot label (3K), Yuan & Zhang's order
 *   gonon    one-hot class, softmax, sensitivity (3K) */
static mg_status features(mg_attack_kind kind, const mg_atk_pool *p, int K, float **out, int *dim, mg_error *err)
{
    int D = K;
    if (kind == MG_ATTACK_TOP3_NN)
        D = 3;
    else if (kind == MG_ATTACK_NN_CLS)
        D = 2 * K;
    else if (kind == MG_ATTACK_SAMIA || kind == MG_ATTACK_GONON)
        D = 3 * K;
    *dim = D;
    float *x = mg_calloc(p->n ? p->n * (size_t)D : 1, sizeof(float), "attack features", err);
    float *prob = mg_malloc((size_t)K, sizeof(float), "softmax row", err);
    if (!x || !prob) {
        free(x);
        free(prob);
        *out = NULL;
        return MG_ERR_NOMEM;
    }
    for (size_t i = 0; i < p->n; i++) {
        float *row = x + i * (size_t)D;
        const float *z = p->logits + i * (size_t)K;
        const float *s = p->sens ? p->sens + i * (size_t)K : NULL;
        int y = p->labels[i];
        mg_atk_softmax(prob, z, K);
        switch (kind) {
        case MG_ATTACK_TOP3_NN:
            /* Probabilities are >= 0, so -1 marks the ones already taken. */
            for (int j = 0; j < 3; j++) {
                int best = 0;
                for (int k = 1; k < K; k++)
                    if (prob[k] > prob[best])
                        best = k;
                row[j] = prob[best];
                prob[best] = -1.0f;
            }
            break;
        case MG_ATTACK_NN_CLS:
            memcpy(row, prob, (size_t)K * sizeof(float));
            row[K + y] = 1.0f;
            break;
        case MG_ATTACK_SAMIA:
            memcpy(row, prob, (size_t)K * sizeof(float));
            memcpy(row + K, s, (size_t)K * sizeof(float));
            row[2 * K + y] = 1.0f;
            break;
        case MG_ATTACK_GONON:
            row[y] = 1.0f;
            memcpy(row + K, prob, (size_t)K * sizeof(float));
            memcpy(row + 2 * K, s, (size_t)K * sizeof(float));
            break;
        default:
            memcpy(row, prob, (size_t)K * sizeof(float));
            break;
        }
    }
    free(prob);
    *out = x;
    return MG_OK;
}

/* Yuan & Zhang's MIAFC and training (MiaAttack/BaseModel defaults), or their
 * transformer for samia. */
static mg_status yuan_zhang(const mg_attack_cfg *cfg, const float *xs, const uint8_t *ys, size_t ns, const float *xt,
                            size_t nt, int D, int K, uint64_t seed, double *t_score, double *s_score, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atk_net *net = NULL;
    const char *name = mg_attack_kind_str(cfg->kind);
    if (cfg->kind == MG_ATTACK_SAMIA) {
        MG_CHECK(mg_atk_net_samia(K, &net, err));
    } else {
        mg_atk_mlp_cfg mc = {.in_dim = D,
                             .n_hidden = 3,
                             .hidden = {512, 256, 128},
                             .dropout = {0.2f, 0.2f, 0.0f},
                             .out_dim = 2,
                             .xavier = 1};
        MG_CHECK(mg_atk_net_mlp(&mc, &net, err));
    }
    mg_rng init, train;
    mg_rng_seed(&init, seed, "attack", "init");
    mg_rng_seed(&train, seed, "attack", "train");
    mg_atk_net_init(net, &init);
    mg_atk_train_cfg tc;
    memset(&tc, 0, sizeof tc);
    tc.epochs = cfg->epochs;
    tc.batch = cfg->batch;
    tc.optim.kind = MG_OPT_SGD;
    tc.optim.lr = cfg->lr;
    tc.optim.momentum = 0.9;
    tc.optim.weight_decay = 5e-4;
    tc.n_milestones = 2;
    tc.milestones[0] = cfg->epochs / 2;
    tc.milestones[1] = cfg->epochs * 3 / 4;
    tc.gamma = 0.1;
    MG_CHECK(mg_atk_net_train(net, xs, ys, ns, &tc, &train, name, err));
    MG_CHECK(mg_atk_net_score(net, xt, nt, t_score, err));
    MG_CHECK(mg_atk_net_score(net, xs, ns, s_score, err));
cleanup:
    mg_atk_net_destroy(&net);
    return st;
}

/* One of Gonon et al.'s perceptrons: depth 1, 2, 3 -> 1 x 30, 2 x 30, 3 x 100. */
static mg_status gonon_train(const mg_attack_cfg *cfg, int depth, double lr, const float *x, const uint8_t *y,
                             size_t n, int D, uint64_t seed, mg_atk_net **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atk_mlp_cfg mc;
    memset(&mc, 0, sizeof mc);
    mc.in_dim = D;
    mc.n_hidden = depth;
    for (int l = 0; l < depth; l++)
        mc.hidden[l] = depth == 3 ? 100 : 30;
    mc.out_dim = 1;
    mc.xavier = 0;
    MG_CHECK(mg_atk_net_mlp(&mc, out, err));
    char stream[64];
    snprintf(stream, sizeof stream, "gonon-%d-%g", depth, lr);
    mg_rng init, train;
    mg_rng_seed(&init, seed, stream, "init");
    mg_rng_seed(&train, seed, stream, "train");
    mg_atk_net_init(*out, &init);
    mg_atk_train_cfg tc;
    memset(&tc, 0, sizeof tc);
    tc.epochs = cfg->epochs;
    tc.batch = cfg->batch;
    tc.optim.kind = MG_OPT_ADAM;
    tc.optim.lr = lr;
    tc.optim.beta1 = 0.9;
    tc.optim.beta2 = 0.999;
    tc.optim.eps = 1e-8;
    MG_CHECK(mg_atk_net_train(*out, x, y, n, &tc, &train, "gonon", err));
cleanup:
    if (st != MG_OK)
        mg_atk_net_destroy(out);
    return st;
}

/* Standardise every column with the mean and deviation of rows `rows` of xs. */
static mg_status standardise(float *xs, size_t ns, float *xt, size_t nt, int D, const uint32_t *rows, size_t n_rows,
                             mg_error *err)
{
    double *mu = mg_calloc((size_t)D, sizeof(double), "feature means", err);
    double *sd = mg_calloc((size_t)D, sizeof(double), "feature deviations", err);
    if (!mu || !sd) {
        free(mu);
        free(sd);
        return MG_ERR_NOMEM;
    }
    for (size_t r = 0; r < n_rows; r++)
        for (int d = 0; d < D; d++)
            mu[d] += xs[(size_t)rows[r] * D + d];
    for (int d = 0; d < D; d++)
        mu[d] /= (double)n_rows;
    for (size_t r = 0; r < n_rows; r++)
        for (int d = 0; d < D; d++) {
            double v = xs[(size_t)rows[r] * D + d] - mu[d];
            sd[d] += v * v;
        }
    for (int d = 0; d < D; d++) {
        sd[d] = sqrt(sd[d] / (double)n_rows);
        if (!(sd[d] > 0.0))
            sd[d] = 1.0;
    }
    for (size_t i = 0; i < ns; i++)
        for (int d = 0; d < D; d++)
            xs[i * D + d] = (float)((xs[i * D + d] - mu[d]) / sd[d]);
    for (size_t i = 0; i < nt; i++)
        for (int d = 0; d < D; d++)
            xt[i * D + d] = (float)((xt[i * D + d] - mu[d]) / sd[d]);
    free(mu);
    free(sd);
    return MG_OK;
}

static mg_status gonon(const mg_attack_cfg *cfg, float *xs, const uint8_t *ys, size_t ns, float *xt, size_t nt,
                       int D, uint64_t seed, double *t_score, double *s_score, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atk_net *best = NULL, *cand = NULL;
    uint32_t *perm = NULL;
    float *xtr = NULL, *xho = NULL;
    uint8_t *ytr = NULL, *yho = NULL;
    double *sho = NULL;
    if (cfg->gonon_depth < 0 || cfg->gonon_depth > 3)
        MG_FAIL(MG_ERR_ARG, "attack gonon: gonon_depth is %d (0 for the grid, or 1, 2, 3)", cfg->gonon_depth);
    perm = mg_malloc(ns, sizeof *perm, "gonon split", err);
    if (!perm)
        MG_FAIL(MG_ERR_NOMEM, "attack gonon: out of memory");
    for (size_t i = 0; i < ns; i++)
        perm[i] = (uint32_t)i;
    if (cfg->gonon_depth > 0) {
        MG_CHECK(standardise(xs, ns, xt, nt, D, perm, ns, err));
        MG_CHECK(gonon_train(cfg, cfg->gonon_depth, cfg->lr, xs, ys, ns, D, seed, &best, err));
    } else {
        if (ns < 10)
            MG_FAIL(MG_ERR_ARG, "attack gonon: the held-out selection needs at least 10 shadow samples, got %zu", ns);
        mg_rng split;
        mg_rng_seed(&split, seed, "gonon", "split");
        mg_rng_shuffle_u32(&split, perm, ns);
        size_t n_ho = ns / 5, n_tr = ns - n_ho;
        const uint32_t *ho = perm, *tr = perm + n_ho;
        MG_CHECK(standardise(xs, ns, xt, nt, D, tr, n_tr, err));
        xtr = mg_malloc(n_tr * (size_t)D, sizeof(float), "gonon training rows", err);
        xho = mg_malloc(n_ho * (size_t)D, sizeof(float), "gonon held-out rows", err);
        ytr = mg_malloc(n_tr, 1, "gonon training labels", err);
        yho = mg_malloc(n_ho, 1, "gonon held-out labels", err);
        sho = mg_malloc(n_ho, sizeof(double), "gonon held-out scores", err);
        if (!xtr || !xho || !ytr || !yho || !sho)
            MG_FAIL(MG_ERR_NOMEM, "attack gonon: out of memory");
        for (size_t i = 0; i < n_tr; i++) {
            memcpy(xtr + i * D, xs + (size_t)tr[i] * D, (size_t)D * sizeof(float));
            ytr[i] = ys[tr[i]];
        }
        for (size_t i = 0; i < n_ho; i++) {
            memcpy(xho + i * D, xs + (size_t)ho[i] * D, (size_t)D * sizeof(float));
            yho[i] = ys[ho[i]];
        }
        double best_acc = -1.0;
        static const double lrs[3] = {0.01, 0.001, 0.0001};
        for (int depth = 1; depth <= 3; depth++) {
            for (int j = 0; j < 3; j++) {
                MG_CHECK(gonon_train(cfg, depth, lrs[j], xtr, ytr, n_tr, D, seed, &cand, err));
                MG_CHECK(mg_atk_net_score(cand, xho, n_ho, sho, err));
                mg_attack_metrics m;
                mg_attack_evaluate(sho, yho, n_ho, 0.0, &m);
                double acc = isnan(m.balanced_acc) ? 0.0 : m.balanced_acc;
                if (acc > best_acc) {
                    best_acc = acc;
                    mg_atk_net_destroy(&best);
                    best = cand;
                    cand = NULL;
                } else {
                    mg_atk_net_destroy(&cand);
                }
            }
        }
    }
    MG_CHECK(mg_atk_net_score(best, xt, nt, t_score, err));
    MG_CHECK(mg_atk_net_score(best, xs, ns, s_score, err));
cleanup:
    mg_atk_net_destroy(&best);
    mg_atk_net_destroy(&cand);
    free(perm);
    free(xtr);
    free(xho);
    free(ytr);
    free(yho);
    free(sho);
    return st;
}

mg_status mg_atk_run_classifier(const mg_attack_cfg *cfg, const mg_atk_pool *shd, const mg_atk_pool *tgt, int K,
                                double *t_score, double *s_score, mg_error *err)
{
    mg_status st = MG_OK;
    float *xs = NULL, *xt = NULL;
    int D = 0;
    if (cfg->epochs < 1 || cfg->batch < 1)
        MG_FAIL(MG_ERR_ARG, "attack %s: epochs (%d) and batch (%d) must be positive", mg_attack_kind_str(cfg->kind),
                cfg->epochs, cfg->batch);
    MG_CHECK(features(cfg->kind, shd, K, &xs, &D, err));
    MG_CHECK(features(cfg->kind, tgt, K, &xt, &D, err));
    mg_rng r = cfg->rng;
    uint64_t seed = mg_rng_next(&r);
    if (cfg->kind == MG_ATTACK_GONON)
        MG_CHECK(gonon(cfg, xs, shd->member, shd->n, xt, tgt->n, D, seed, t_score, s_score, err));
    else
        MG_CHECK(yuan_zhang(cfg, xs, shd->member, shd->n, xt, tgt->n, D, K, seed, t_score, s_score, err));
cleanup:
    free(xs);
    free(xt);
    return st;
}

/*
 * optim.c: SGD with momentum and Adam, written to follow torch.optim.SGD and
 * torch.optim.Adam step for step (float32 arithmetic on the tensors, bias
 * corrections in double), with pruning masks that pin parameters, gradients
 * and optimiser state at exactly zero.
 */
#include "miagrid/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int finite_nonneg(double v)
{
    return isfinite(v) && v >= 0.0;
}

mg_status mg_optim_init(mg_optim *o, const mg_optim_cfg *cfg, size_t n, mg_error *err)
{
    memset(o, 0, sizeof *o);
    if (!finite_nonneg(cfg->lr))
        return mg_error_set(err, MG_ERR_ARG, "optimiser: learning rate %g must be finite and >= 0", cfg->lr);
    if (!finite_nonneg(cfg->weight_decay))
        return mg_error_set(err, MG_ERR_ARG, "optimiser: weight decay %g must be finite and >= 0",
                            cfg->weight_decay);
    if (cfg->kind == MG_OPT_SGD) {
        if (!(cfg->momentum >= 0.0 && cfg->momentum < 1.0))
            return mg_error_set(err, MG_ERR_ARG, "optimiser sgd: momentum %g must be in [0, 1)", cfg->momentum);
    } else if (cfg->kind == MG_OPT_ADAM) {
        if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0) || !(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
            return mg_error_set(err, MG_ERR_ARG, "optimiser adam: betas (%g, %g) must be in [0, 1)", cfg->beta1,
                                cfg->beta2);
        if (!finite_nonneg(cfg->eps))
            return mg_error_set(err, MG_ERR_ARG, "optimiser adam: eps %g must be finite and >= 0", cfg->eps);
    } else {
        return mg_error_set(err, MG_ERR_ARG, "optimiser: unknown kind %d (sgd or adam)", (int)cfg->kind);
    }
    o->cfg = *cfg;
    o->n = n;
    o->m1 = mg_calloc(n ? n : 1, sizeof(float), "optimiser state", err);
    if (!o->m1)
        return MG_ERR_NOMEM;
    if (cfg->kind == MG_OPT_ADAM) {
        o->m2 = mg_calloc(n ? n : 1, sizeof(float), "optimiser state", err);
        if (!o->m2) {
            mg_optim_free(o);
            return MG_ERR_NOMEM;
        }
    }
    return MG_OK;
}

void mg_optim_free(mg_optim *o)
{
    if (!o)
        return;
    free(o->m1);
    free(o->m2);
    o->m1 = o->m2 = NULL;
    o->n = 0;
    o->step = 0;
}

/* torch.optim.SGD (dampening 0, no Nesterov): d = g + wd*p; buf = d on the
 * first step, else momentum*buf + d; p -= lr*buf. */
static void sgd_step(mg_optim *o, float *params, float *grads, const float *masks)
{
    const float lr = (float)o->cfg.lr, wd = (float)o->cfg.weight_decay, mom = (float)o->cfg.momentum;
    const int first = o->step == 0, use_mom = o->cfg.momentum != 0.0;
    float *buf = o->m1;
    for (size_t i = 0; i < o->n; i++) {
        if (masks && masks[i] == 0.0f) {
            grads[i] = 0.0f;
            buf[i] = 0.0f;
            params[i] = 0.0f;
            continue;
        }
        float d = grads[i];
        if (wd != 0.0f)
            d = d + wd * params[i];
        if (use_mom) {
            d = first ? d : mom * buf[i] + d;
            buf[i] = d;
        }
        params[i] = params[i] - lr * d;
    }
}

/* torch.optim.Adam (no AMSGrad): d = g + wd*p; m = lerp(m, d, 1-beta1);
 * v = beta2*v + (1-beta2)*d*d; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps). */
static void adam_step(mg_optim *o, float *params, float *grads, const float *masks)
{
    const float wd = (float)o->cfg.weight_decay;
    const float w1 = (float)(1.0 - o->cfg.beta1), b2 = (float)o->cfg.beta2, w2 = (float)(1.0 - o->cfg.beta2);
    const float eps = (float)o->cfg.eps;
    const double t = (double)o->step + 1.0;
    const double bc1 = 1.0 - pow(o->cfg.beta1, t), bc2 = 1.0 - pow(o->cfg.beta2, t);
    const float step_size = (float)(o->cfg.lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float *m = o->m1, *v = o->m2;
    for (size_t i = 0; i < o->n; i++) {
        if (masks && masks[i] == 0.0f) {
            grads[i] = 0.0f;
            m[i] = 0.0f;
            v[i] = 0.0f;
            params[i] = 0.0f;
            continue;
        }
        float d = grads[i];
        if (wd != 0.0f)
            d = d + wd * params[i];
        /* torch's lerp switches formula at weight 0.5 to stay exact at the ends. */
        float diff = d - m[i];
        m[i] = w1 < 0.5f ? m[i] + w1 * diff : d - diff * (1.0f - w1);
        v[i] = v[i] * b2 + w2 * d * d;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        params[i] = params[i] + (-step_size * m[i]) / denom;
    }
}

void mg_optim_step(mg_optim *o, float *params, float *grads, const float *masks)
{
    if (o->cfg.kind == MG_OPT_ADAM)
        adam_step(o, params, grads, masks);
    else
        sgd_step(o, params, grads, masks);
    o->step++;
}

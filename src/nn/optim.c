/*
 * optim.c: SGD (with momentum and Nesterov), Adam and AdamW, written to follow
 * torch.optim.SGD, Adam and AdamW step for step (float32 arithmetic on the
 * tensors, bias corrections in double), with pruning masks that pin
 * parameters, gradients and optimiser state at exactly zero.
 */
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int finite_nonneg(double v)
{
    return isfinite(v) && v >= 0.0;
}

const char *mg_opt_kind_str(mg_opt_kind k)
{
    switch (k) {
    case MG_OPT_SGD: return "sgd";
    case MG_OPT_ADAM: return "adam";
    case MG_OPT_ADAMW: return "adamw";
    }
    return "unknown";
}

int mg_opt_kind_parse(const char *name, mg_opt_kind *out)
{
    static const mg_opt_kind kinds[] = {MG_OPT_SGD, MG_OPT_ADAM, MG_OPT_ADAMW};
    for (size_t i = 0; name && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name, mg_opt_kind_str(kinds[i])) == 0) {
            *out = kinds[i];
            return 0;
        }
    return -1;
}

mg_status mg_optim_init(mg_optim *o, const mg_optim_cfg *cfg, size_t n, mg_error *err)
{
    memset(o, 0, sizeof *o);
    if (!finite_nonneg(cfg->lr))
        return mg_error_set(err, MG_ERR_ARG, "optimiser: learning rate %g must be finite and >= 0", cfg->lr);
    if (!finite_nonneg(cfg->weight_decay))
        return mg_error_set(err, MG_ERR_ARG, "optimiser: weight decay %g must be finite and >= 0",
                            cfg->weight_decay);
    int adam = cfg->kind == MG_OPT_ADAM || cfg->kind == MG_OPT_ADAMW;
    if (cfg->kind == MG_OPT_SGD) {
        if (!(cfg->momentum >= 0.0 && cfg->momentum < 1.0))
            return mg_error_set(err, MG_ERR_ARG, "optimiser sgd: momentum %g must be in [0, 1)", cfg->momentum);
        /* torch.optim.SGD refuses this too: Nesterov looks ahead along the momentum. */
        if (cfg->nesterov && cfg->momentum == 0.0)
            return mg_error_set(err, MG_ERR_ARG, "optimiser sgd: nesterov needs a momentum > 0");
    } else if (adam) {
        if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0) || !(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
            return mg_error_set(err, MG_ERR_ARG, "optimiser %s: betas (%g, %g) must be in [0, 1)",
                                mg_opt_kind_str(cfg->kind), cfg->beta1, cfg->beta2);
        if (!finite_nonneg(cfg->eps))
            return mg_error_set(err, MG_ERR_ARG, "optimiser %s: eps %g must be finite and >= 0",
                                mg_opt_kind_str(cfg->kind), cfg->eps);
    } else {
        return mg_error_set(err, MG_ERR_ARG, "optimiser: unknown kind %d (sgd, adam or adamw)", (int)cfg->kind);
    }
    o->cfg = *cfg;
    o->n = n;
    o->m1 = mg_calloc(n ? n : 1, sizeof(float), "optimiser state", err);
    if (!o->m1)
        return MG_ERR_NOMEM;
    if (adam) {
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

/* v where the mask keeps (mask != 0), else exactly 0, without a branch: the
 * masks of a pruned model are scattered, and a select through bits lets the
 * update loops vectorise. */
static inline float keep_nz(float mask, float v)
{
    uint32_t u, m = 0u - (uint32_t)(mask != 0.0f);
    memcpy(&u, &v, sizeof u);
    u &= m;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* The usual step (momentum and weight decay, not Nesterov, not the first
 * step) over elements [0, n), in blocks that vectorise; mk may be NULL. */
static void sgd_momentum_wd(float *restrict p, float *restrict g, float *restrict buf, const float *restrict mk,
                            size_t n, float lr, float wd, float mom)
{
    size_t i = 0;
    if (mk) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++) {
                const size_t k = i + (size_t)j;
                const float b = mom * buf[k] + (g[k] + wd * p[k]);
                buf[k] = keep_nz(mk[k], b);
                p[k] = keep_nz(mk[k], p[k] - lr * b);
                g[k] = keep_nz(mk[k], g[k]);
            }
    } else {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++) {
                const size_t k = i + (size_t)j;
                const float b = mom * buf[k] + (g[k] + wd * p[k]);
                buf[k] = b;
                p[k] = p[k] - lr * b;
            }
    }
    for (; i < n; i++) {
        const float b = mom * buf[i] + (g[i] + wd * p[i]);
        buf[i] = mk ? keep_nz(mk[i], b) : b;
        p[i] = mk ? keep_nz(mk[i], p[i] - lr * b) : p[i] - lr * b;
        if (mk)
            g[i] = keep_nz(mk[i], g[i]);
    }
}

/* torch.optim.SGD (dampening 0): d = g + wd*p; buf = d on the first step,
 * else momentum*buf + d; then p -= lr*(d + momentum*buf) with Nesterov,
 * p -= lr*buf without. The usual configuration has a loop of its own with the
 * same arithmetic. */
static void sgd_step(mg_optim *o, float *params, float *grads, const float *masks)
{
    const float lr = (float)o->cfg.lr, wd = (float)o->cfg.weight_decay, mom = (float)o->cfg.momentum;
    const int first = o->step == 0, use_mom = o->cfg.momentum != 0.0, nesterov = o->cfg.nesterov != 0;
    float *buf = o->m1;
    if (use_mom && wd != 0.0f && !nesterov && !first) {
        sgd_momentum_wd(params, grads, buf, masks, o->n, lr, wd, mom);
        return;
    }
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
            buf[i] = first ? d : mom * buf[i] + d;
            d = nesterov ? d + mom * buf[i] : buf[i];
        }
        params[i] = params[i] - lr * d;
    }
}

/* torch.optim.Adam (no AMSGrad): d = g + wd*p; m = lerp(m, d, 1-beta1);
 * v = beta2*v + (1-beta2)*d*d; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps).
 * torch.optim.AdamW decays the parameter instead, p *= 1 - lr*wd, before the
 * same update with d = g. */
static void adam_step(mg_optim *o, float *params, float *grads, const float *masks)
{
    const int decoupled = o->cfg.kind == MG_OPT_ADAMW;
    const float wd = decoupled ? 0.0f : (float)o->cfg.weight_decay;
    const float decay = (float)(1.0 - o->cfg.lr * o->cfg.weight_decay);
    const int use_decay = decoupled && o->cfg.weight_decay != 0.0;
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
        if (use_decay)
            params[i] = params[i] * decay;
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
    if (o->cfg.kind == MG_OPT_ADAM || o->cfg.kind == MG_OPT_ADAMW)
        adam_step(o, params, grads, masks);
    else
        sgd_step(o, params, grads, masks);
    o->step++;
}

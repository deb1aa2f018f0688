/*
 * run.c: mg_attack_run, one attack node's work. It checks and pools the
 * inputs, runs the named attack (threshold attacks and the label-only gap
 * attack here, the classifier attacks in classifier.c, LiRA and RMIA in
 * refmodels.c) and summarises the scores: metrics at the threshold,
 * Wang et al.'s d, the model's train/test accuracy, overall and per class.
 * attack.h documents every attack and its reference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"

static const char *const kind_names[MG_ATTACK_N_KINDS] = {
    "loss", "conf", "entropy", "mentropy", "hconf", "nn", "top3-nn", "nn-cls", "samia", "gonon", "lira", "rmia", "gap"};

const char *mg_attack_kind_str(mg_attack_kind k)
{
    return (int)k >= 0 && k < MG_ATTACK_N_KINDS ? kind_names[k] : "(unknown)";
}

int mg_attack_kind_parse(const char *name, mg_attack_kind *out)
{
    if (!name)
        return -1;
    for (int k = 0; k < MG_ATTACK_N_KINDS; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (mg_attack_kind)k;
            return 0;
        }
    }
    return -1;
}

const char *mg_attack_kind_list(void)
{
    return "loss, conf, entropy, mentropy, hconf, nn, top3-nn, nn-cls, samia, gonon, lira, rmia, gap";
}

unsigned mg_attack_needs(mg_attack_kind k)
{
    switch (k) {
    case MG_ATTACK_LOSS:
    case MG_ATTACK_CONF:
    case MG_ATTACK_ENTROPY:
    case MG_ATTACK_MENTROPY:
    case MG_ATTACK_HCONF:
    case MG_ATTACK_NN:
    case MG_ATTACK_TOP3_NN:
    case MG_ATTACK_NN_CLS:
        return MG_ATTACK_NEEDS_SHADOW;
    case MG_ATTACK_SAMIA:
    case MG_ATTACK_GONON:
        return MG_ATTACK_NEEDS_SHADOW | MG_ATTACK_NEEDS_SENS;
    case MG_ATTACK_LIRA:
        return MG_ATTACK_NEEDS_REF;
    case MG_ATTACK_RMIA:
        return MG_ATTACK_NEEDS_REF | MG_ATTACK_NEEDS_POP;
    default:
        return 0;
    }
}

mg_status mg_attack_cfg_init(mg_attack_cfg *cfg, const char *name, mg_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (mg_attack_kind_parse(name, &cfg->kind) != 0)
        return mg_error_set(err, MG_ERR_CONFIG, "unknown attack \"%s\" (known: %s)", name ? name : "(null)",
                            mg_attack_kind_list());
    mg_rng_seed(&cfg->rng, 0, "attack", name);
    switch (cfg->kind) {
    case MG_ATTACK_NN:
    case MG_ATTACK_TOP3_NN:
    case MG_ATTACK_NN_CLS:
    case MG_ATTACK_SAMIA:
        cfg->epochs = 100;
        cfg->batch = 128;
        cfg->lr = 0.001;
        break;
    case MG_ATTACK_GONON:
        cfg->epochs = 80;
        cfg->batch = 256;
        cfg->lr = 0.001;
        break;
    default:
        break;
    }
    if (cfg->kind == MG_ATTACK_SAMIA) {
        cfg->sens_draws = 10;
        cfg->sens_eps = 1e-3;
    } else if (cfg->kind == MG_ATTACK_GONON) {
        cfg->sens_draws = 5;
        cfg->sens_eps = 1e-3;
    }
    cfg->lira_online = 1;
    cfg->lira_global_var = -1;
    cfg->rmia_a = 0.33;
    cfg->rmia_gamma = 1.0;
    cfg->js_bins = 20;
    return MG_OK;
}

/* ---- inputs ------------------------------------------------------------------------ */

void mg_atk_pool_free(mg_atk_pool *p)
{
    free(p->logits);
    free(p->labels);
    free(p->sens);
    free(p->member);
    memset(p, 0, sizeof *p);
}

static mg_status check_split(const mg_attack_split *s, const char *what, int K, int need_sens, mg_error *err)
{
    if (s->n == 0)
        return MG_OK;
    if (!s->logits || !s->labels)
        return mg_error_set(err, MG_ERR_ARG, "%s: %zu samples but no %s", what, s->n, s->logits ? "labels" : "logits");
    if (need_sens && !s->sens)
        return mg_error_set(err, MG_ERR_ARG,
                            "%s: no sensitivity features (compute them with mg_attack_sensitivity)", what);
    for (size_t i = 0; i < s->n; i++) {
        if (s->labels[i] < 0 || s->labels[i] >= K)
            return mg_error_set(err, MG_ERR_ARG, "%s: label %d of sample %zu is outside 0..%d", what,
                                (int)s->labels[i], i, K - 1);
        for (int k = 0; k < K; k++) {
            float z = s->logits[i * (size_t)K + (size_t)k];
            if (!isfinite(z))
                return mg_error_set(err, MG_ERR_NUMERIC, "%s: logit %d of sample %zu is %g", what, k, i, (double)z);
            if (need_sens && !isfinite(s->sens[i * (size_t)K + (size_t)k]))
                return mg_error_set(err, MG_ERR_NUMERIC, "%s: sensitivity %d of sample %zu is %g", what, k, i,
                                    (double)s->sens[i * (size_t)K + (size_t)k]);
        }
    }
    return MG_OK;
}

/* Concatenate the member and non-member splits of `count` models. */
static mg_status pool_build(mg_atk_pool *p, const mg_attack_outputs *o, size_t count, int K, int with_sens,
                            mg_error *err)
{
    memset(p, 0, sizeof *p);
    size_t n = 0;
    for (size_t m = 0; m < count; m++)
        n += o[m].member.n + o[m].nonmember.n;
    p->n = n;
    p->logits = mg_malloc(n * (size_t)K, sizeof(float), "pooled logits", err);
    p->labels = mg_malloc(n, sizeof(int32_t), "pooled labels", err);
    p->member = mg_malloc(n, 1, "pooled membership", err);
    if (with_sens)
        p->sens = mg_malloc(n * (size_t)K, sizeof(float), "pooled sensitivity", err);
    if (n > 0 && (!p->logits || !p->labels || !p->member || (with_sens && !p->sens)))
        return MG_ERR_NOMEM;
    size_t off = 0;
    for (size_t m = 0; m < count; m++) {
        const mg_attack_split *sp[2] = {&o[m].member, &o[m].nonmember};
        for (int g = 0; g < 2; g++) {
            size_t c = sp[g]->n;
            if (c == 0)
                continue;
            memcpy(p->logits + off * K, sp[g]->logits, c * (size_t)K * sizeof(float));
            memcpy(p->labels + off, sp[g]->labels, c * sizeof(int32_t));
            memset(p->member + off, g == 0, c);
            if (with_sens)
                memcpy(p->sens + off * K, sp[g]->sens, c * (size_t)K * sizeof(float));
            off += c;
        }
    }
    return MG_OK;
}

static mg_status check_inputs(mg_attack_kind kind, const mg_attack_inputs *in, mg_error *err)
{
    const char *name = mg_attack_kind_str(kind);
    const int K = in->n_classes;
    const unsigned needs = mg_attack_needs(kind);
    const int sens = (needs & MG_ATTACK_NEEDS_SENS) != 0;
    char what[96];
    mg_status st;
    if (K < 1)
        return mg_error_set(err, MG_ERR_ARG, "attack %s: n_classes is %d", name, K);
    if (kind == MG_ATTACK_TOP3_NN && K < 3)
        return mg_error_set(err, MG_ERR_ARG, "attack top3-nn needs at least 3 classes, got %d", K);
    if ((kind == MG_ATTACK_LIRA || kind == MG_ATTACK_MENTROPY) && K < 2)
        return mg_error_set(err, MG_ERR_ARG, "attack %s needs at least 2 classes, got %d", name, K);
    if (in->target.member.n == 0 || in->target.nonmember.n == 0)
        return mg_error_set(err, MG_ERR_ARG, "attack %s: the target has %zu members and %zu non-members (needs both)",
                            name, in->target.member.n, in->target.nonmember.n);
    snprintf(what, sizeof what, "attack %s: target members", name);
    if ((st = check_split(&in->target.member, what, K, sens, err)) != MG_OK)
        return st;
    snprintf(what, sizeof what, "attack %s: target non-members", name);
    if ((st = check_split(&in->target.nonmember, what, K, sens, err)) != MG_OK)
        return st;
    if (needs & MG_ATTACK_NEEDS_SHADOW) {
        if (in->n_shadow == 0 || !in->shadow)
            return mg_error_set(err, MG_ERR_ARG, "attack %s needs at least one shadow model's outputs (n_shadow is 0)",
                                name);
    }
    if ((needs & MG_ATTACK_NEEDS_SHADOW) || kind == MG_ATTACK_GAP) {
        size_t n_mem = 0, n_non = 0;
        for (size_t m = 0; m < in->n_shadow && in->shadow; m++) {
            snprintf(what, sizeof what, "attack %s: shadow %zu members", name, m);
            if ((st = check_split(&in->shadow[m].member, what, K, sens, err)) != MG_OK)
                return st;
            snprintf(what, sizeof what, "attack %s: shadow %zu non-members", name, m);
            if ((st = check_split(&in->shadow[m].nonmember, what, K, sens, err)) != MG_OK)
                return st;
            n_mem += in->shadow[m].member.n;
            n_non += in->shadow[m].nonmember.n;
        }
        if ((needs & MG_ATTACK_NEEDS_SHADOW) && (n_mem == 0 || n_non == 0))
            return mg_error_set(err, MG_ERR_ARG,
                                "attack %s: the shadow models have %zu members and %zu non-members (needs both)", name,
                                n_mem, n_non);
    }
    size_t nt = in->target.member.n + in->target.nonmember.n;
    if (needs & MG_ATTACK_NEEDS_REF) {
        if (in->n_ref == 0 || !in->ref_logits || !in->ref_in)
            return mg_error_set(err, MG_ERR_ARG,
                                "attack %s needs reference models' logits on the target's samples and their "
                                "membership (n_ref is %zu, ref_logits %s, ref_in %s)",
                                name, in->n_ref, in->ref_logits ? "set" : "NULL", in->ref_in ? "set" : "NULL");
        for (size_t i = 0; i < in->n_ref * nt * (size_t)K; i++)
            if (!isfinite(in->ref_logits[i]))
                return mg_error_set(err, MG_ERR_NUMERIC, "attack %s: reference model %zu has logit %g on sample %zu",
                                    name, i / (nt * (size_t)K), (double)in->ref_logits[i], (i / (size_t)K) % nt);
    }
    if (needs & MG_ATTACK_NEEDS_POP) {
        if (in->n_pop == 0 || !in->pop_logits || !in->pop_labels || !in->pop_ref_logits)
            return mg_error_set(err, MG_ERR_ARG,
                                "attack %s needs population samples: the target's and every reference model's "
                                "logits and the labels (n_pop is %zu)",
                                name, in->n_pop);
        for (size_t j = 0; j < in->n_pop; j++) {
            if (in->pop_labels[j] < 0 || in->pop_labels[j] >= K)
                return mg_error_set(err, MG_ERR_ARG, "attack %s: population label %d of sample %zu is outside 0..%d",
                                    name, (int)in->pop_labels[j], j, K - 1);
            for (int k = 0; k < K; k++)
                if (!isfinite(in->pop_logits[j * (size_t)K + (size_t)k]))
                    return mg_error_set(err, MG_ERR_NUMERIC, "attack %s: target logit %d of population sample %zu is %g",
                                        name, k, j, (double)in->pop_logits[j * (size_t)K + (size_t)k]);
        }
        for (size_t i = 0; i < in->n_ref * in->n_pop * (size_t)K; i++)
            if (!isfinite(in->pop_ref_logits[i]))
                return mg_error_set(err, MG_ERR_NUMERIC,
                                    "attack %s: reference model %zu has logit %g on population sample %zu", name,
                                    i / (in->n_pop * (size_t)K), (double)in->pop_ref_logits[i],
                                    (i / (size_t)K) % in->n_pop);
    }
    return MG_OK;
}

/* ---- summaries ---------------------------------------------------------------------- */

static void summary_nan(mg_attack_summary *s)
{
    mg_attack_metrics *m = &s->attack;
    m->threshold = m->balanced_acc = m->tpr = m->fpr = m->auc = m->tpr_at_1fpr = m->tpr_at_01fpr = NAN;
    m->advantage = m->tpr_at_0fpr = m->precision = m->defense = NAN;
    s->js_divergence = s->train_acc = s->test_acc = s->acc_gap = NAN;
    s->n_member = s->n_nonmember = 0;
}

/* The summary of the samples whose label is cls (all when cls < 0). */
static mg_status summarize(const double *score, const uint8_t *member, const float *logits, const int32_t *labels,
                           size_t n, int K, double threshold, int bins, int cls, mg_attack_summary *out,
                           mg_error *err)
{
    mg_status st = MG_OK;
    double *s = mg_malloc(n ? n : 1, sizeof(double), "summary scores", err);
    double *phi = mg_malloc(n ? n : 1, sizeof(double), "summary log-odds", err);
    uint8_t *m = mg_malloc(n ? n : 1, 1, "summary membership", err);
    if (!s || !phi || !m)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for attack metrics");
    size_t c = 0, corr[2] = {0, 0}, cnt[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        if (cls >= 0 && labels[i] != cls)
            continue;
        const float *z = logits + i * (size_t)K;
        s[c] = score[i];
        m[c] = member[i] ? 1 : 0;
        phi[c] = K > 1 ? mg_atk_phi(z, K, labels[i]) : 0.0;
        int g = m[c] ? 0 : 1;
        cnt[g]++;
        corr[g] += mg_argmax(z, K) == labels[i];
        c++;
    }
    mg_attack_evaluate(s, m, c, threshold, &out->attack);
    out->js_divergence = mg_metric_js_divergence(phi, m, c, bins);
    out->n_member = cnt[0];
    out->n_nonmember = cnt[1];
    out->train_acc = cnt[0] ? (double)corr[0] / (double)cnt[0] : NAN;
    out->test_acc = cnt[1] ? (double)corr[1] / (double)cnt[1] : NAN;
    out->acc_gap = out->train_acc - out->test_acc;
cleanup:
    free(s);
    free(phi);
    free(m);
    return st;
}

void mg_attack_result_free(mg_attack_result *r)
{
    if (!r)
        return;
    free(r->score);
    free(r->member);
    free(r->label);
    free(r->per_class);
    memset(r, 0, sizeof *r);
}

/* ---- threshold attacks and gap -------------------------------------------------------------- */

static void signals(mg_attack_kind kind, const mg_atk_pool *p, int K, double *out)
{
    for (size_t i = 0; i < p->n; i++)
        out[i] = mg_atk_signal(kind, p->logits + i * (size_t)K, K, p->labels[i]);
}

/* Per-class (or, for hconf, global) thresholds fitted on the shadow pool;
 * fills the target's and the shadow's scores and the threshold. */
static mg_status run_threshold(mg_attack_kind kind, const mg_atk_pool *shd, const mg_atk_pool *tgt, int K,
                               double *t_score, double *s_score, double *threshold, mg_error *err)
{
    mg_status st = MG_OK;
    double *thr = NULL, *sub = NULL;
    uint8_t *subm = NULL;
    signals(kind, shd, K, s_score);
    signals(kind, tgt, K, t_score);
    double global = mg_attack_fit_threshold(s_score, shd->member, shd->n);
    if (kind == MG_ATTACK_HCONF) {
        *threshold = global;
        return MG_OK;
    }
    thr = mg_malloc((size_t)K, sizeof(double), "class thresholds", err);
    sub = mg_malloc(shd->n, sizeof(double), "class scores", err);
    subm = mg_malloc(shd->n, 1, "class membership", err);
    if (!thr || !sub || !subm)
        MG_FAIL(MG_ERR_NOMEM, "attack %s: out of memory for class thresholds", mg_attack_kind_str(kind));
    for (int c = 0; c < K; c++) {
        size_t cnt = 0, pos = 0;
        for (size_t i = 0; i < shd->n; i++) {
            if (shd->labels[i] != c)
                continue;
            sub[cnt] = s_score[i];
            subm[cnt] = shd->member[i];
            pos += shd->member[i] != 0;
            cnt++;
        }
        thr[c] = pos > 0 && pos < cnt ? mg_attack_fit_threshold(sub, subm, cnt) : global;
    }
    for (size_t i = 0; i < shd->n; i++)
        s_score[i] -= thr[shd->labels[i]];
    for (size_t i = 0; i < tgt->n; i++)
        t_score[i] -= thr[tgt->labels[i]];
    *threshold = 0.0;
cleanup:
    free(thr);
    free(sub);
    free(subm);
    return st;
}

/* ---- mg_attack_run ------------------------------------------------------------------------ */

mg_status mg_attack_run(const mg_attack_cfg *cfg, const mg_attack_inputs *in, mg_attack_result *res, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atk_pool tgt, shd;
    double *s_score = NULL;
    const float *shadow_logits = NULL;
    const int32_t *shadow_labels = NULL;
    const uint8_t *shadow_member = NULL;
    size_t shadow_n = 0;
    int have_shadow = 0;   /* 1: s_score holds the shadow pool's scores; 2: reference model 0's */
    memset(&tgt, 0, sizeof tgt);
    memset(&shd, 0, sizeof shd);
    memset(res, 0, sizeof *res);
    res->rmia_a = NAN;
    summary_nan(&res->target);
    summary_nan(&res->shadow);

    if ((int)cfg->kind < 0 || cfg->kind >= MG_ATTACK_N_KINDS)
        MG_FAIL(MG_ERR_CONFIG, "unknown attack %d (known: %s)", (int)cfg->kind, mg_attack_kind_list());
    const mg_attack_kind kind = cfg->kind;
    const char *name = mg_attack_kind_str(kind);
    const int K = in->n_classes;
    MG_CHECK(check_inputs(kind, in, err));
    const unsigned needs = mg_attack_needs(kind);
    const int with_sens = (needs & MG_ATTACK_NEEDS_SENS) != 0;

    MG_CHECK(pool_build(&tgt, &in->target, 1, K, with_sens, err));
    int use_shadow = (needs & MG_ATTACK_NEEDS_SHADOW) || (kind == MG_ATTACK_GAP && in->n_shadow > 0 && in->shadow);
    if (use_shadow)
        MG_CHECK(pool_build(&shd, in->shadow, in->n_shadow, K, with_sens, err));

    res->n = tgt.n;
    res->n_classes = K;
    res->score = mg_calloc(tgt.n, sizeof(double), "attack scores", err);
    res->member = mg_malloc(tgt.n, 1, "attack membership", err);
    res->label = mg_malloc(tgt.n, sizeof(int32_t), "attack labels", err);
    res->per_class = mg_calloc((size_t)K, sizeof(mg_attack_summary), "per-class metrics", err);
    s_score = mg_calloc(shd.n > tgt.n ? shd.n : tgt.n, sizeof(double), "shadow scores", err);
    if (!res->score || !res->member || !res->label || !res->per_class || !s_score)
        MG_FAIL(MG_ERR_NOMEM, "attack %s: out of memory for %zu scores", name, tgt.n);
    memcpy(res->member, tgt.member, tgt.n);
    memcpy(res->label, tgt.labels, tgt.n * sizeof(int32_t));

    switch (kind) {
    case MG_ATTACK_LOSS:
    case MG_ATTACK_CONF:
    case MG_ATTACK_ENTROPY:
    case MG_ATTACK_MENTROPY:
    case MG_ATTACK_HCONF:
        MG_CHECK(run_threshold(kind, &shd, &tgt, K, res->score, s_score, &res->threshold, err));
        have_shadow = 1;
        break;
    case MG_ATTACK_GAP:
        signals(kind, &tgt, K, res->score);
        if (use_shadow) {
            signals(kind, &shd, K, s_score);
            have_shadow = 1;
        }
        res->threshold = 1.0;
        break;
    case MG_ATTACK_NN:
    case MG_ATTACK_TOP3_NN:
    case MG_ATTACK_NN_CLS:
    case MG_ATTACK_SAMIA:
    case MG_ATTACK_GONON:
        MG_CHECK(mg_atk_run_classifier(cfg, &shd, &tgt, K, res->score, s_score, err));
        res->threshold = 0.0;
        have_shadow = 1;
        break;
    case MG_ATTACK_LIRA:
    case MG_ATTACK_RMIA: {
        int have_loo = 0;
        double natural = kind == MG_ATTACK_LIRA ? 0.0 : 0.5;
        if (kind == MG_ATTACK_LIRA)
            MG_CHECK(mg_atk_run_lira(cfg, in, tgt.logits, tgt.labels, tgt.n, res->score, s_score, &have_loo, err));
        else
            MG_CHECK(mg_atk_run_rmia(cfg, in, tgt.logits, tgt.labels, tgt.n, res->score, s_score, &have_loo,
                                     &res->rmia_a, err));
        res->threshold = natural;
        if (have_loo) {
            const uint8_t *mem0 = in->ref_in;
            size_t pos = 0;
            for (size_t i = 0; i < tgt.n; i++)
                pos += mem0[i] != 0;
            if (pos > 0 && pos < tgt.n) {
                res->threshold = mg_attack_fit_threshold(s_score, mem0, tgt.n);
                have_shadow = 2;
            }
        }
        break;
    }
    default:
        MG_FAIL(MG_ERR_CONFIG, "unknown attack %d (known: %s)", (int)kind, mg_attack_kind_list());
    }

    for (size_t i = 0; i < tgt.n; i++)
        if (isnan(res->score[i]))
            MG_FAIL(MG_ERR_NUMERIC, "attack %s: the score of target sample %zu is NaN", name, i);

    if (have_shadow == 1) {
        shadow_logits = shd.logits;
        shadow_labels = shd.labels;
        shadow_member = shd.member;
        shadow_n = shd.n;
    } else if (have_shadow == 2) {
        shadow_logits = in->ref_logits;
        shadow_labels = tgt.labels;
        shadow_member = in->ref_in;
        shadow_n = tgt.n;
    }
    MG_CHECK(summarize(res->score, res->member, tgt.logits, tgt.labels, tgt.n, K, res->threshold, cfg->js_bins, -1,
                       &res->target, err));
    if (have_shadow)
        MG_CHECK(summarize(s_score, shadow_member, shadow_logits, shadow_labels, shadow_n, K, res->threshold,
                           cfg->js_bins, -1, &res->shadow, err));
    for (int c = 0; c < K; c++)
        MG_CHECK(summarize(res->score, res->member, tgt.logits, tgt.labels, tgt.n, K, res->threshold, cfg->js_bins, c,
                           &res->per_class[c], err));
cleanup:
    if (st != MG_OK && err && cfg && (int)cfg->kind >= 0 && cfg->kind < MG_ATTACK_N_KINDS &&
        st != MG_ERR_CONFIG && strncmp(err->msg, "attack ", 7) != 0)
        mg_error_prefix(err, "attack %s: ", mg_attack_kind_str(cfg->kind));
    mg_atk_pool_free(&tgt);
    mg_atk_pool_free(&shd);
    free(s_score);
    return st;
}

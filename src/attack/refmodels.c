/*
 * refmodels.c: the attacks calibrated per sample by reference models
 * trained on random halves of a population pool: LiRA (Carlini et al., S&P
 * 2022), online and offline, per-example or global variance; and offline
 * RMIA (Zarifzadeh et al., ICML 2024) with its parameter a. attack.h states
 * the exact variants.
 *
 * Each attack is written for a "victim" (the target, or reference model 0
 * when the attacker calibrates a threshold or tunes a on a model whose
 * membership it knows) and a set of reference models (all of them, or all
 * but model 0).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"

/* Smallest deviation, as the reference code's "+ 1e-30": a spread of zero
 * (identical reference models) still gives a finite, ordered score. */
#define SIGMA_FLOOR 1e-30
#define LOG_SQRT_2PI 0.91893853320467274178
/* Carlini et al. find per-example variances pay off only with many
 * reference models; below 64 the global one does better. */
#define LIRA_GLOBAL_BELOW 64

/* ---- LiRA ------------------------------------------------------------------------ */

typedef struct {
    double mean, var;   /* over all examples: the fallback statistics */
    int have;           /* any value at all */
} global_stats;

/* For in (want = 1) or out (want = 0) values of phi (n_ref, nt), skipping
 * reference model `skip` (or none when skip < 0): per-example means (NAN
 * without values), per-example population variances (NAN below two values),
 * and the global mean and pooled within-example variance. */
static void lira_stats(const double *phi, const uint8_t *ref_in, size_t n_ref, size_t nt, long skip, int want,
                       double *mean, double *var, global_stats *g)
{
    double all_sum = 0.0, all_sq = 0.0, pooled_ss = 0.0;
    size_t all_n = 0, pooled_n = 0;
    for (size_t i = 0; i < nt; i++) {
        double s = 0.0;
        size_t c = 0;
        for (size_t r = 0; r < n_ref; r++) {
            if ((long)r == skip || (ref_in[r * nt + i] != 0) != want)
                continue;
            s += phi[r * nt + i];
            c++;
        }
        mean[i] = c ? s / (double)c : NAN;
        var[i] = NAN;
        if (c == 0)
            continue;
        double ss = 0.0;
        for (size_t r = 0; r < n_ref; r++) {
            if ((long)r == skip || (ref_in[r * nt + i] != 0) != want)
                continue;
            double d = phi[r * nt + i] - mean[i];
            ss += d * d;
            all_sum += phi[r * nt + i];
            all_sq += phi[r * nt + i] * phi[r * nt + i];
        }
        all_n += c;
        if (c >= 2) {
            var[i] = ss / (double)c;
            pooled_ss += ss;
            pooled_n += c;
        }
    }
    g->have = all_n > 0;
    g->mean = all_n ? all_sum / (double)all_n : NAN;
    if (pooled_n > 0) {
        g->var = pooled_ss / (double)pooled_n;
    } else if (all_n > 0) {
        /* No example has two values (a single reference model): the spread of
         * all values around their mean is all there is. */
        double v = all_sq / (double)all_n - g->mean * g->mean;
        g->var = v > 0.0 ? v : 0.0;
    } else {
        g->var = NAN;
    }
}

static double log_normal(double x, double mu, double sigma)
{
    double t = (x - mu) / sigma;
    return -0.5 * t * t - log(sigma) - LOG_SQRT_2PI;
}

/* Scores of the victim's phi (nt) against the reference models but `skip`. */
static mg_status lira_scores(const mg_attack_cfg *cfg, const double *phi_ref, const uint8_t *ref_in, size_t n_ref,
                             size_t nt, long skip, const double *phi_v, double *score, mg_error *err)
{
    mg_status st = MG_OK;
    double *mo = mg_malloc(nt, sizeof(double), "lira means", err);
    double *vo = mg_malloc(nt, sizeof(double), "lira variances", err);
    double *mi = mg_malloc(nt, sizeof(double), "lira means", err);
    double *vi = mg_malloc(nt, sizeof(double), "lira variances", err);
    if (!mo || !vo || !mi || !vi)
        MG_FAIL(MG_ERR_NOMEM, "attack lira: out of memory for %zu samples", nt);
    global_stats go, gi;
    lira_stats(phi_ref, ref_in, n_ref, nt, skip, 0, mo, vo, &go);
    lira_stats(phi_ref, ref_in, n_ref, nt, skip, 1, mi, vi, &gi);
    if (!go.have)
        MG_FAIL(MG_ERR_ARG, "attack lira: no reference model left out any target sample (every ref_in is 1)");
    const int global = cfg->lira_global_var < 0 ? n_ref < LIRA_GLOBAL_BELOW : cfg->lira_global_var != 0;
    if (cfg->lira_online && !gi.have)
        MG_FAIL(MG_ERR_ARG, "attack lira online: no reference model trained on any target sample (every ref_in is 0); "
                            "use the offline attack");
    for (size_t i = 0; i < nt; i++) {
        double mu_o = isnan(mo[i]) ? go.mean : mo[i];
        double var_o = global || isnan(vo[i]) ? go.var : vo[i];
        double s_o = sqrt(var_o) + SIGMA_FLOOR;
        if (!cfg->lira_online) {
            score[i] = (phi_v[i] - mu_o) / s_o;
            continue;
        }
        double mu_i = isnan(mi[i]) ? gi.mean : mi[i];
        double var_i = global || isnan(vi[i]) ? gi.var : vi[i];
        double s_i = sqrt(var_i) + SIGMA_FLOOR;
        score[i] = log_normal(phi_v[i], mu_i, s_i) - log_normal(phi_v[i], mu_o, s_o);
    }
cleanup:
    free(mo);
    free(vo);
    free(mi);
    free(vi);
    return st;
}

mg_status mg_atk_run_lira(const mg_attack_cfg *cfg, const mg_attack_inputs *in, const float *tlogits,
                          const int32_t *labels, size_t nt, double *score, double *loo_score, int *have_loo,
                          mg_error *err)
{
    mg_status st = MG_OK;
    const int K = in->n_classes;
    const size_t R = in->n_ref;
    double *phi_ref = mg_malloc(R * nt, sizeof(double), "reference log-odds", err);
    double *phi_t = mg_malloc(nt, sizeof(double), "target log-odds", err);
    *have_loo = 0;
    if (!phi_ref || !phi_t)
        MG_FAIL(MG_ERR_NOMEM, "attack lira: out of memory for %zu reference models x %zu samples", R, nt);
    for (size_t i = 0; i < nt; i++)
        phi_t[i] = mg_atk_phi(tlogits + i * (size_t)K, K, labels[i]);
    for (size_t r = 0; r < R; r++)
        for (size_t i = 0; i < nt; i++)
            phi_ref[r * nt + i] = mg_atk_phi(in->ref_logits + (r * nt + i) * (size_t)K, K, labels[i]);
    MG_CHECK(lira_scores(cfg, phi_ref, in->ref_in, R, nt, -1, phi_t, score, err));
    if (R >= 2) {
        mg_error loo_err;
        /* Reference model 0 may lack in or out samples among the others'
         * statistics; then there is simply no calibration. */
        if (lira_scores(cfg, phi_ref, in->ref_in, R, nt, 0, phi_ref, loo_score, &loo_err) == MG_OK)
            *have_loo = 1;
    }
cleanup:
    free(phi_ref);
    free(phi_t);
    return st;
}

/* ---- RMIA ------------------------------------------------------------------------- */

typedef struct {
    size_t nt, n_pop, n_ref;
    const uint8_t *ref_in;  /* (n_ref, nt) */
    const double *lp_ref;   /* (n_ref, nt) log Pr(x_i | reference r) */
    const double *lp_pop;   /* (n_ref, n_pop) log Pr(z_j | reference r) */
} rmia_data;

static double log_add_exp(double a, double b)
{
    if (a == -INFINITY)
        return b;
    if (b == -INFINITY)
        return a;
    double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

/* log of the mean of exp(v[r]) over the selected entries (-inf for none). */
static double log_mean_exp(const double *v, size_t stride, size_t count, const uint8_t *use)
{
    double m = -INFINITY;
    size_t c = 0;
    for (size_t r = 0; r < count; r++)
        if (use[r] && v[r * stride] > m)
            m = v[r * stride];
    if (m == -INFINITY)
        return -INFINITY;
    double s = 0.0;
    for (size_t r = 0; r < count; r++)
        if (use[r]) {
            s += exp(v[r * stride] - m);
            c++;
        }
    return m + log(s / (double)c);
}

/* log Pr(.) = log((1+a)/2 * Pr_out + (1-a)/2), from log Pr_out. */
static double log_marginal(double log_pout, double a)
{
    double t1 = (1.0 + a) / 2.0 > 0.0 ? log((1.0 + a) / 2.0) + log_pout : -INFINITY;
    double t2 = (1.0 - a) / 2.0 > 0.0 ? log((1.0 - a) / 2.0) : -INFINITY;
    return log_add_exp(t1, t2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Scores of the victim (log-probabilities lp_v on the target samples,
 * lp_vpop on the population) against every reference model but `skip`. */
static mg_status rmia_scores(const rmia_data *d, long skip, double a, double gamma, const double *lp_v,
                             const double *lp_vpop, double *score, mg_error *err)
{
    mg_status st = MG_OK;
    double *lrz = mg_malloc(d->n_pop, sizeof(double), "rmia population ratios", err);
    uint8_t *use = mg_malloc(d->n_ref, 1, "rmia model selection", err);
    if (!lrz || !use)
        MG_FAIL(MG_ERR_NOMEM, "attack rmia: out of memory for %zu population samples", d->n_pop);
    for (size_t r = 0; r < d->n_ref; r++)
        use[r] = (long)r != skip;
    for (size_t j = 0; j < d->n_pop; j++) {
        double lpo = log_mean_exp(d->lp_pop + j, d->n_pop, d->n_ref, use);
        lrz[j] = lp_vpop[j] - log_marginal(lpo, a);
    }
    qsort(lrz, d->n_pop, sizeof(double), cmp_double);
    const double log_gamma = log(gamma);
    for (size_t i = 0; i < d->nt; i++) {
        for (size_t r = 0; r < d->n_ref; r++)
            use[r] = (long)r != skip && !d->ref_in[r * d->nt + i];
        double lpo = log_mean_exp(d->lp_ref + i, d->nt, d->n_ref, use);
        if (lpo == -INFINITY) {
            /* No reference model left x out: take all of them. */
            for (size_t r = 0; r < d->n_ref; r++)
                use[r] = (long)r != skip;
            lpo = log_mean_exp(d->lp_ref + i, d->nt, d->n_ref, use);
        }
        /* ratio_x / ratio_z > gamma  <=>  log ratio_z < log ratio_x - log gamma */
        double bound = lp_v[i] - log_marginal(lpo, a) - log_gamma;
        size_t lo = 0, hi = d->n_pop;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (lrz[mid] < bound)
                lo = mid + 1;
            else
                hi = mid;
        }
        score[i] = (double)lo / (double)d->n_pop;
    }
cleanup:
    free(lrz);
    free(use);
    return st;
}

mg_status mg_atk_run_rmia(const mg_attack_cfg *cfg, const mg_attack_inputs *in, const float *tlogits,
                          const int32_t *labels, size_t nt, double *score, double *loo_score, int *have_loo,
                          double *a_used, mg_error *err)
{
    mg_status st = MG_OK;
    const int K = in->n_classes;
    const size_t R = in->n_ref, P = in->n_pop;
    double *lp_ref = mg_malloc(R * nt, sizeof(double), "rmia reference probabilities", err);
    double *lp_pop = mg_malloc(R * P, sizeof(double), "rmia population probabilities", err);
    double *lp_t = mg_malloc(nt, sizeof(double), "rmia target probabilities", err);
    double *lp_tpop = mg_malloc(P, sizeof(double), "rmia target population probabilities", err);
    *have_loo = 0;
    if (!lp_ref || !lp_pop || !lp_t || !lp_tpop)
        MG_FAIL(MG_ERR_NOMEM, "attack rmia: out of memory for %zu reference models", R);
    if (!(cfg->rmia_gamma > 0.0) || !isfinite(cfg->rmia_gamma))
        MG_FAIL(MG_ERR_ARG, "attack rmia: gamma is %g (must be positive)", cfg->rmia_gamma);
    if (!(cfg->rmia_a <= 1.0) || isnan(cfg->rmia_a))
        MG_FAIL(MG_ERR_ARG, "attack rmia: a is %g (must be in [0, 1], or negative to tune it)", cfg->rmia_a);
    for (size_t i = 0; i < nt; i++) {
        const float *z = tlogits + i * (size_t)K;
        lp_t[i] = mg_atk_log_softmax(z, K, labels[i]);
        for (size_t r = 0; r < R; r++) {
            const float *zr = in->ref_logits + (r * nt + i) * (size_t)K;
            lp_ref[r * nt + i] = mg_atk_log_softmax(zr, K, labels[i]);
        }
    }
    for (size_t j = 0; j < P; j++) {
        int y = in->pop_labels[j];
        const float *z = in->pop_logits + j * (size_t)K;
        lp_tpop[j] = mg_atk_log_softmax(z, K, y);
        for (size_t r = 0; r < R; r++) {
            const float *zr = in->pop_ref_logits + (r * P + j) * (size_t)K;
            lp_pop[r * P + j] = mg_atk_log_softmax(zr, K, y);
        }
    }
    rmia_data d = {.nt = nt, .n_pop = P, .n_ref = R, .ref_in = in->ref_in, .lp_ref = lp_ref, .lp_pop = lp_pop};
    double a = cfg->rmia_a;
    if (a < 0.0) {
        if (R < 2)
            MG_FAIL(MG_ERR_ARG, "attack rmia: tuning a (rmia_a < 0) needs at least two reference models, got %zu", R);
        size_t pos = 0;
        for (size_t i = 0; i < nt; i++)
            pos += in->ref_in[i] != 0;
        if (pos == 0 || pos == nt)
            MG_FAIL(MG_ERR_ARG, "attack rmia: tuning a needs reference model 0 to have trained on some target "
                                "samples and not on others (it trained on %zu of %zu)", pos, nt);
        double best_auc = -1.0;
        for (int step = 0; step <= 10; step++) {
            double try_a = step / 10.0;
            MG_CHECK(rmia_scores(&d, 0, try_a, cfg->rmia_gamma, lp_ref, lp_pop, loo_score, err));
            double auc = mg_metric_auc(loo_score, in->ref_in, nt);
            if (auc > best_auc) {
                best_auc = auc;
                a = try_a;
            }
        }
    }
    *a_used = a;
    MG_CHECK(rmia_scores(&d, -1, a, cfg->rmia_gamma, lp_t, lp_tpop, score, err));
    if (R >= 2) {
        MG_CHECK(rmia_scores(&d, 0, a, cfg->rmia_gamma, lp_ref, lp_pop, loo_score, err));
        *have_loo = 1;
    }
cleanup:
    free(lp_ref);
    free(lp_pop);
    free(lp_t);
    free(lp_tpop);
    return st;
}

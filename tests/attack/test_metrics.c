/*
 * test_metrics.c: threshold fitting and the attack metrics against closed
 * forms: separated, identical and reversed scores, a small case with ties
 * worked by hand, random tied scores against brute force, and two Gaussians
 * whose AUC, best balanced accuracy and TPR at low FPR are known; the
 * precision and defense level at a threshold; the Jensen-Shannon divergence
 * on separated, identical and hand-worked histograms and on two Gaussians
 * against the divergence of their binned distributions.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "miagrid/attack.h"
#include "mg_test.h"

static double phi(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

static void test_separated(void)
{
    double s[20];
    uint8_t m[20];
    for (int i = 0; i < 20; i++) {
        s[i] = i;
        m[i] = i >= 10;
    }
    double t = mg_attack_fit_threshold(s, m, 20);
    CHECK_NEAR(t, 9.5, 0.0);
    mg_attack_metrics r;
    mg_attack_evaluate(s, m, 20, t, &r);
    CHECK_NEAR(r.threshold, 9.5, 0.0);
    CHECK_NEAR(r.auc, 1.0, 0.0);
    CHECK_NEAR(r.balanced_acc, 1.0, 0.0);
    CHECK_NEAR(r.tpr, 1.0, 0.0);
    CHECK_NEAR(r.fpr, 0.0, 0.0);
    CHECK_NEAR(r.tpr_at_1fpr, 1.0, 0.0);
    CHECK_NEAR(r.tpr_at_01fpr, 1.0, 0.0);
    CHECK_NEAR(r.advantage, 1.0, 0.0);
    CHECK_NEAR(r.tpr_at_0fpr, 1.0, 0.0);
    CHECK_NEAR(r.precision, 1.0, 0.0);
    CHECK_NEAR(r.defense, 0.0, 1e-12);
    CHECK_NEAR(mg_metric_js_divergence(s, m, 20, 10), log(2.0), 1e-15);
    CHECK_NEAR(mg_metric_js_divergence(s, m, 20, 2), log(2.0), 1e-15);

    /* Reversed: members score lowest. */
    for (int i = 0; i < 20; i++)
        m[i] = i < 10;
    CHECK_NEAR(mg_metric_auc(s, m, 20), 0.0, 0.0);
    t = mg_attack_fit_threshold(s, m, 20);
    CHECK(t < 0.0);
    mg_attack_evaluate(s, m, 20, t, &r);
    CHECK_NEAR(r.balanced_acc, 0.5, 0.0);
    CHECK_NEAR(r.advantage, 0.0, 0.0);
    CHECK_NEAR(r.tpr_at_1fpr, 0.0, 0.0);
    CHECK_NEAR(r.tpr_at_0fpr, 0.0, 0.0);
    CHECK_NEAR(r.defense, 100.0, 1e-12);
    /* Divergence does not care which side is which. */
    CHECK_NEAR(mg_metric_js_divergence(s, m, 20, 10), log(2.0), 1e-15);
}

static void test_identical(void)
{
    double s[100];
    uint8_t m[100];
    for (int i = 0; i < 100; i++) {
        s[i] = -0.25;
        m[i] = i % 2;
    }
    double t = mg_attack_fit_threshold(s, m, 100);
    CHECK(t < -0.25);
    mg_attack_metrics r;
    mg_attack_evaluate(s, m, 100, t, &r);
    CHECK_NEAR(r.auc, 0.5, 0.0);
    CHECK_NEAR(r.balanced_acc, 0.5, 0.0);
    CHECK_NEAR(r.tpr_at_01fpr, 0.0, 0.0);
    CHECK_NEAR(r.tpr_at_1fpr, 0.0, 0.0);
    CHECK_NEAR(r.advantage, 0.0, 0.0);
    CHECK_NEAR(r.precision, 0.5, 0.0);
    CHECK_NEAR(r.defense, 100.0, 0.0);
    /* All tied: one bin holds everything, the histograms agree. */
    CHECK_NEAR(mg_metric_js_divergence(s, m, 100, 10), 0.0, 0.0);
    /* Ties stay together: at the tied score itself, everyone is a member. */
    mg_attack_evaluate(s, m, 100, -0.25, &r);
    CHECK_NEAR(r.tpr, 1.0, 0.0);
    CHECK_NEAR(r.fpr, 1.0, 0.0);
}

/* Members {0.9, 0.7, 0.5, 0.5}, non-members {0.5, 0.3, 0.3, 0.1}.
 * AUC: 0.9 and 0.7 beat all 4 (8), each 0.5 beats 3 and ties 1 (7): 15/16.
 * ROC from the top: (0,0) (0,.25) (0,.5) (.25,1) (.75,1) (1,1).
 * Best cut 0.4: TPR 1, TNR .75, balanced accuracy .875; advantage .75. */
static void test_hand_ties(void)
{
    const double s[8] = {0.5, 0.9, 0.3, 0.5, 0.7, 0.1, 0.5, 0.3};
    const uint8_t m[8] = {0, 1, 0, 1, 1, 0, 1, 0};
    CHECK_NEAR(mg_metric_auc(s, m, 8), 15.0 / 16.0, 1e-15);
    double t = mg_attack_fit_threshold(s, m, 8);
    CHECK_NEAR(t, 0.4, 1e-15);
    mg_attack_metrics r;
    mg_attack_evaluate(s, m, 8, t, &r);
    CHECK_NEAR(r.balanced_acc, 0.875, 1e-15);
    CHECK_NEAR(r.tpr, 1.0, 0.0);
    CHECK_NEAR(r.fpr, 0.25, 0.0);
    CHECK_NEAR(r.advantage, 0.75, 1e-15);
    CHECK_NEAR(r.tpr_at_1fpr, 0.5, 0.0);
    CHECK_NEAR(r.tpr_at_01fpr, 0.5, 0.0);
    CHECK_NEAR(r.tpr_at_0fpr, 0.5, 0.0);
    CHECK_NEAR(r.precision, 1.0 / 1.25, 1e-15);
    CHECK_NEAR(r.defense, 25.0, 1e-12);
    CHECK_NEAR(mg_metric_tpr_at_fpr(s, m, 8, 0.25), 1.0, 0.0);
    CHECK_NEAR(mg_metric_tpr_at_fpr(s, m, 8, 0.2), 0.5, 0.0);
    CHECK_NEAR(mg_metric_tpr_at_fpr(s, m, 8, 1.0), 1.0, 0.0);

    /* Applying the threshold at the tied score puts all three 0.5s on the member side. */
    mg_attack_evaluate(s, m, 8, 0.5, &r);
    CHECK_NEAR(r.tpr, 1.0, 0.0);
    CHECK_NEAR(r.fpr, 0.25, 0.0);
    mg_attack_evaluate(s, m, 8, nextafter(0.5, 1.0), &r);
    CHECK_NEAR(r.tpr, 0.5, 0.0);
    CHECK_NEAR(r.fpr, 0.0, 0.0);

    double *fpr = NULL, *tpr = NULL;
    size_t np = 0;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_metric_roc(s, m, 8, &fpr, &tpr, &np, e), e);
    CHECK_INT_EQ(np, 6);
    if (np == 6) {
        const double wf[6] = {0, 0, 0, 0.25, 0.75, 1}, wt[6] = {0, 0.25, 0.5, 1, 1, 1};
        CHECK_TENSOR_NEAR(fpr, wf, 6, 0.0);
        CHECK_TENSOR_NEAR(tpr, wt, 6, 0.0);
    }
    free(fpr);
    free(tpr);
}

/* Equal balanced accuracy at two cuts: the smaller threshold wins. */
static void test_fit_tie_break(void)
{
    const double s[4] = {2, 4, 1, 3};
    const uint8_t m[4] = {1, 1, 0, 0};
    CHECK_NEAR(mg_attack_fit_threshold(s, m, 4), 1.5, 0.0);
    /* Adjacent doubles: the threshold must still split them. */
    const double a = 1.0, b = nextafter(1.0, 2.0);
    const double s2[2] = {a, b};
    const uint8_t m2[2] = {0, 1};
    double t = mg_attack_fit_threshold(s2, m2, 2);
    CHECK(t > a && t <= b);
}

static void test_degenerate(void)
{
    const double s[3] = {1, 2, 3};
    const uint8_t m[3] = {1, 1, 1};
    CHECK(isnan(mg_metric_auc(s, m, 3)));
    mg_attack_metrics r;
    mg_attack_evaluate(s, m, 3, 2.5, &r);
    CHECK_NEAR(r.tpr, 1.0 / 3.0, 1e-15);
    CHECK(isnan(r.fpr) && isnan(r.auc) && isnan(r.advantage) && isnan(r.tpr_at_0fpr) && isnan(r.defense));
    CHECK(isnan(mg_metric_js_divergence(s, m, 3, 2)));
    /* Nothing predicted a member: precision is undefined. */
    const uint8_t mixed[3] = {1, 0, 1};
    mg_attack_evaluate(s, mixed, 3, 10.0, &r);
    CHECK(isnan(r.precision));
    CHECK_NEAR(r.defense, 100.0, 0.0);
    CHECK(isnan(mg_metric_js_divergence(s, mixed, 3, 0)));
    double *fpr = NULL, *tpr = NULL;
    size_t np = 0;
    mg_error err = {0};
    CHECK_INT_EQ(mg_metric_roc(s, m, 3, &fpr, &tpr, &np, &err), MG_ERR_ARG);
    CHECK(fpr == NULL && tpr == NULL && np == 0);
}

/* Heavily tied random scores against O(n^2) and all-threshold brute force. */
static void test_brute_force(void)
{
    enum { N = 400 };
    double s[N];
    uint8_t m[N];
    mg_rng rng;
    mg_rng_seed(&rng, 7, "test", "brute");
    for (int i = 0; i < N; i++) {
        m[i] = (uint8_t)mg_rng_below(&rng, 2);
        s[i] = (double)mg_rng_below(&rng, 12) + (m[i] ? 1.5 : 0.0);
    }
    double P = 0, Nn = 0, wins = 0;
    for (int i = 0; i < N; i++)
        *(m[i] ? &P : &Nn) += 1;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (m[i] && !m[j])
                wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
    CHECK_NEAR(mg_metric_auc(s, m, N), wins / (P * Nn), 1e-12);

    /* Every score (and one above all) as a threshold. */
    double best_bal = 0, best_adv = -1, best_tpr_1 = 0, best_tpr_10 = 0, best_tpr_0 = 0;
    for (int k = -1; k < N; k++) {
        double t = k < 0 ? 1e9 : s[k];
        double tp = 0, fp = 0;
        for (int i = 0; i < N; i++)
            if (s[i] >= t)
                *(m[i] ? &tp : &fp) += 1;
        double tpr = tp / P, fpr = fp / Nn;
        if ((tpr + 1 - fpr) / 2 > best_bal)
            best_bal = (tpr + 1 - fpr) / 2;
        if (tpr - fpr > best_adv)
            best_adv = tpr - fpr;
        if (fpr <= 0.01 && tpr > best_tpr_1)
            best_tpr_1 = tpr;
        if (fpr <= 0.10 && tpr > best_tpr_10)
            best_tpr_10 = tpr;
        if (fp == 0 && tpr > best_tpr_0)
            best_tpr_0 = tpr;
    }
    double t = mg_attack_fit_threshold(s, m, N);
    mg_attack_metrics r;
    mg_attack_evaluate(s, m, N, t, &r);
    CHECK_NEAR(r.balanced_acc, best_bal, 1e-12);
    CHECK_NEAR(r.advantage, best_adv, 1e-12);
    CHECK_NEAR(r.tpr_at_1fpr, best_tpr_1, 0.0);
    CHECK_NEAR(r.tpr_at_0fpr, best_tpr_0, 0.0);
    CHECK_NEAR(r.precision, r.tpr / (r.tpr + r.fpr), 1e-15);
    CHECK_NEAR(mg_metric_tpr_at_fpr(s, m, N, 0.10), best_tpr_10, 0.0);
    CHECK(best_tpr_10 > 0.0);

    /* ROC: monotone, ends at (0,0) and (1,1), one point per distinct score. */
    double *fpr = NULL, *tpr = NULL;
    size_t np = 0;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_metric_roc(s, m, N, &fpr, &tpr, &np, e), e);
    size_t distinct = 0;
    for (int i = 0; i < N; i++) {
        int first = 1;
        for (int j = 0; j < i; j++)
            if (s[j] == s[i])
                first = 0;
        distinct += (size_t)first;
    }
    CHECK_INT_EQ(np, distinct + 1);
    if (np > 1) {
        CHECK(fpr[0] == 0 && tpr[0] == 0 && fpr[np - 1] == 1 && tpr[np - 1] == 1);
        int mono = 1;
        for (size_t i = 1; i < np; i++)
            if (fpr[i] < fpr[i - 1] || tpr[i] < tpr[i - 1])
                mono = 0;
        CHECK(mono);
    }
    free(fpr);
    free(tpr);
}

/* Members N(d,1), non-members N(0,1): AUC = Phi(d/sqrt 2), the best balanced
 * accuracy is Phi(d/2) at t = d/2, and TPR at FPR a is 1 - Phi(z_{1-a} - d). */
static void gaussians(double d, uint64_t seed, double *s, uint8_t *m, size_t n_each)
{
    mg_rng rng;
    mg_rng_seed(&rng, seed, "test", "gaussians");
    for (size_t i = 0; i < n_each; i++) {
        s[i] = d + mg_rng_normal(&rng);
        m[i] = 1;
        s[n_each + i] = mg_rng_normal(&rng);
        m[n_each + i] = 0;
    }
}

static void test_gaussians(void)
{
    const size_t n_each = 200000, n = 2 * n_each;
    const double d = 1.0, z99 = 2.3263478740408408, z999 = 3.0902323061678132;
    double *s = malloc(n * sizeof *s), *s2 = malloc(n * sizeof *s2);
    uint8_t *m = malloc(n), *m2 = malloc(n);
    CHECK(s && s2 && m && m2);
    if (s && s2 && m && m2) {
        gaussians(d, 1, s, m, n_each);
        double t = mg_attack_fit_threshold(s, m, n);
        mg_attack_metrics r;
        mg_attack_evaluate(s, m, n, t, &r);
        CHECK_NEAR(r.auc, phi(d / sqrt(2.0)), 0.005);
        CHECK_NEAR(r.balanced_acc, phi(d / 2.0), 0.005);
        CHECK_NEAR(r.advantage, 2.0 * phi(d / 2.0) - 1.0, 0.01);
        CHECK_NEAR(r.tpr_at_1fpr, 1.0 - phi(z99 - d), 0.01);
        CHECK_NEAR(r.tpr_at_01fpr, 1.0 - phi(z999 - d), 0.01);
        CHECK_NEAR(t, d / 2.0, 0.1);

        /* Fit on a shadow sample, apply to an independent target sample. */
        gaussians(d, 2, s2, m2, n_each);
        mg_attack_evaluate(s2, m2, n, t, &r);
        CHECK_NEAR(r.threshold, t, 0.0);
        CHECK_NEAR(r.tpr, 1.0 - phi(t - d), 0.005);
        CHECK_NEAR(r.fpr, 1.0 - phi(t), 0.005);
        CHECK_NEAR(r.balanced_acc, phi(d / 2.0), 0.005);
        double tpr = 1.0 - phi(t - d), fpr = 1.0 - phi(t);
        CHECK_NEAR(r.precision, tpr / (tpr + fpr), 0.005);
        CHECK_NEAR(r.defense, 200.0 - 200.0 * phi(d / 2.0), 1.0);
    }
    free(s);
    free(s2);
    free(m);
    free(m2);
}

/* Eight distinct values, two bins of four ranks: members hold ranks {0, 4,
 * 5, 6}, so the histograms are (1/4, 3/4) and (3/4, 1/4) and the mixture
 * (1/2, 1/2): JS = 1/4 ln(1/2) + 3/4 ln(3/2). Any increasing transform of
 * the values gives the same. */
static void test_js_hand(void)
{
    const double s[8] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
    const uint8_t m[8] = {1, 0, 0, 0, 1, 1, 1, 0};
    double want = 0.25 * log(0.5) + 0.75 * log(1.5);
    CHECK_NEAR(mg_metric_js_divergence(s, m, 8, 2), want, 1e-15);
    double e[8];
    for (int i = 0; i < 8; i++)
        e[i] = exp(40.0 * s[i]);
    CHECK_NEAR(mg_metric_js_divergence(e, m, 8, 2), want, 1e-15);
    /* Alternating labels, one pair per bin: identical histograms. */
    const uint8_t alt[8] = {1, 0, 1, 0, 1, 0, 1, 0};
    CHECK_NEAR(mg_metric_js_divergence(s, alt, 8, 4), 0.0, 1e-15);
    /* Tied values share a bin even across the bin boundary: with {0.3,
     * 0.3, 0.3} at ranks 2-4 and 4 bins of two ranks, bin 1 takes ranks 2-4,
     * bin 2 only rank 5. */
    const double t[8] = {0.1, 0.2, 0.3, 0.3, 0.3, 0.6, 0.7, 0.8};
    const uint8_t mt[8] = {1, 1, 1, 1, 1, 0, 0, 0};
    CHECK_NEAR(mg_metric_js_divergence(t, mt, 8, 4), log(2.0), 1e-15);
}

/* Members N(d,1), non-members N(0,1), 20 bins at the quantiles of the
 * mixture: the estimate converges to the JS divergence of the two binned
 * distributions, computed here from the normal CDF. */
static double mixture_quantile(double q, double d)
{
    double lo = -20.0, hi = 20.0;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * phi(mid - d) + 0.5 * phi(mid) < q)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

static void test_js_gaussians(void)
{
    const size_t n_each = 200000, n = 2 * n_each;
    const double d = 1.0;
    const int B = 20;
    double *s = malloc(n * sizeof *s);
    uint8_t *m = malloc(n);
    CHECK(s && m);
    if (!s || !m) {
        free(s);
        free(m);
        return;
    }
    gaussians(d, 3, s, m, n_each);
    double want = 0.0, prev = -INFINITY;
    for (int b = 1; b <= B; b++) {
        double edge = b < B ? mixture_quantile((double)b / B, d) : INFINITY;
        double p = phi(edge - d) - phi(prev - d), q = phi(edge) - phi(prev);
        double mix = 0.5 * (p + q);
        want += 0.5 * p * log(p / mix) + 0.5 * q * log(q / mix);
        prev = edge;
    }
    CHECK(want > 0.05 && want < log(2.0));
    CHECK_NEAR(mg_metric_js_divergence(s, m, n, B), want, 2e-3);
    /* Same distributions: only the sampling bias, about (B-1)/(8 n_each) nats. */
    for (size_t i = 0; i < n_each; i++)
        s[i] -= d;
    CHECK_NEAR(mg_metric_js_divergence(s, m, n, B), 0.0, 1e-3);
    free(s);
    free(m);
}

int main(void)
{
    test_separated();
    test_identical();
    test_hand_ties();
    test_fit_tie_break();
    test_degenerate();
    test_brute_force();
    test_gaussians();
    test_js_hand();
    test_js_gaussians();
    MG_TEST_MAIN_END();
}
